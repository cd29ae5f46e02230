/*
 * test_json.h: the unit tests' shorthand for documents, J("{'a': 1}"): JSON
 * written with single quotes (turned into double quotes) parsed by libbson.
 * Header-only; include it from a test program.
 */
#ifndef CAIRN_TEST_JSON_H
#define CAIRN_TEST_JSON_H

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A new document (caller frees with bson_destroy), or NULL with the parse
 * error printed for a malformed test string. */
static inline bson_t *J(const char *s)
{
    char *buf = strdup(s);
    bson_error_t e;
    bson_t *b;

    for (char *p = buf; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    b = bson_new_from_json((const uint8_t *)buf, -1, &e);
    if (b == NULL) {
        fprintf(stderr, "bad test JSON: %s: %s\n", s, e.message);
    }
    free(buf);
    return b;
}

#endif /* CAIRN_TEST_JSON_H */
