/*
 * update_path.c: dotted update paths (struct path, update_int.h): splitting
 * them into components, validating the paths an update names (positional
 * "$", "$[]" and "$[<id>]" components and their array filters), array
 * index components, and the component-wise order and prefix relation the
 * conflict checks and the application order are built on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/update_int.h"

/* Parses an array index component (digits only). -1 when not numeric. */
long upd_parse_index(const char *s)
{
    long v = 0;

    if (*s == '\0') {
        return -1;
    }
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        if (v > 100000000L) {
            return 100000000L; /* far past any backfill limit */
        }
        v = v * 10 + (*p - '0');
    }
    return v;
}

void upd_path_free(struct path *p)
{
    free(p->full);
    if (p->parts != NULL) {
        free(p->parts[0]);
    }
    free(p->parts);
    memset(p, 0, sizeof *p);
}

/* Splits `s` into components. Returns 0, CAIRN_ENOMEM, -1 when a component
 * is empty or -2 when there are too many (see update_int.h). */
int upd_path_split(const char *s, struct path *out)
{
    size_t n = 1;
    char *buf, *c;

    memset(out, 0, sizeof *out);
    for (const char *p = s; *p; p++) {
        n += *p == '.';
    }
    out->full = strdup(s);
    buf = strdup(s);
    out->parts = calloc(n, sizeof *out->parts);
    if (out->full == NULL || buf == NULL || out->parts == NULL) {
        free(buf);
        free(out->parts);
        out->parts = NULL;
        upd_path_free(out);
        return CAIRN_ENOMEM;
    }
    out->n = n;
    c = buf;
    for (size_t i = 0; i < n; i++) {
        char *dot = strchr(c, '.');
        out->parts[i] = c;
        if (dot != NULL) {
            *dot = '\0';
            c = dot + 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (out->parts[i][0] == '\0') {
            return -1;
        }
    }
    return n > UPD_MAX_DEPTH ? -2 : 0;
}

/* True for an array filter component "$[]" or "$[<identifier>]". */
bool upd_is_af_ident(const char *c)
{
    size_t n = strlen(c);
    return n >= 2 + 1 && c[0] == '$' && c[1] == '[' && c[n - 1] == ']';
}

struct afilter *upd_af_find(const struct af_set *afs, const char *id, size_t len)
{
    for (size_t i = 0; afs != NULL && i < afs->n; i++) {
        if (strlen(afs->v[i].id) == len && memcmp(afs->v[i].id, id, len) == 0) {
            return &afs->v[i];
        }
    }
    return NULL;
}

/* Validates and splits an update path. Positional components ("$",
 * "$[]", "$[<id>]") are checked as mongod's UpdateObjectNode::parseAndMerge
 * does; identifiers must have a filter in `afs` (which records their use).
 * *dynamic tells whether the path has any positional component. */
int upd_path_parse(const char *s,
                   struct path *out,
                   struct af_set *afs,
                   bool *dynamic,
                   struct cairn_error *err)
{
    int rv;
    size_t dollars = 0, first_dollar = 0;

    *dynamic = false;
    if (s[0] == '\0') {
        memset(out, 0, sizeof *out);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_EmptyFieldName,
                                 "An empty update path is not valid.");
    }
    rv = upd_path_split(s, out);
    if (rv == CAIRN_ENOMEM) {
        return cairn_error_setf(err, rv, "out of memory");
    }
    if (rv == -2) {
        upd_path_free(out);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The update path '%.60s...' has too many components", s);
    }
    if (rv != 0) {
        upd_path_free(out);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_EmptyFieldName,
                                 "The update path '%s' contains an empty field name, which is not "
                                 "allowed.",
                                 s);
    }
    for (size_t i = 0; i < out->n; i++) {
        const char *c = out->parts[i];
        if (strcmp(c, "$") == 0) {
            if (dollars++ == 0) {
                first_dollar = i;
            }
        } else if (c[0] == '$' && !upd_is_af_ident(c)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_DollarPrefixedFieldName,
                                   "The dollar ($) prefixed field '%s' in '%s' is not valid for "
                                   "storage.",
                                   c, s);
            upd_path_free(out);
            return rv;
        }
    }
    if (dollars > 1) {
        rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                               "Too many positional (i.e. '$') elements found in path '%s'", s);
    } else if (dollars == 1 && first_dollar == 0) {
        rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                               "Cannot have positional (i.e. '$') element in the first position "
                               "in path '%s'",
                               s);
    }
    for (size_t i = 0; rv == 0 && i < out->n; i++) {
        const char *c = out->parts[i];
        size_t idlen;
        struct afilter *af;
        if (!upd_is_af_ident(c)) {
            continue;
        }
        if (i == 0) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                   "Cannot have array filter identifier (i.e. '$[<id>]') element "
                                   "in the first position in path '%s'",
                                   s);
            break;
        }
        idlen = strlen(c) - 3;
        if (idlen == 0) {
            continue;
        }
        af = upd_af_find(afs, c + 2, idlen);
        if (af == NULL) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                   "No array filter found for identifier '%.*s' in path '%s'",
                                   (int)idlen, c + 2, s);
            break;
        }
        af->used = true;
    }
    if (rv != 0) {
        upd_path_free(out);
        return rv;
    }
    for (size_t i = 0; i < out->n; i++) {
        if (out->parts[i][0] == '$') {
            *dynamic = true;
        }
    }
    return 0;
}

/* Component-wise path order: numeric components numerically. */
int upd_path_order(const struct path *a, const struct path *b)
{
    size_t n = a->n < b->n ? a->n : b->n;

    for (size_t i = 0; i < n; i++) {
        long ia = upd_parse_index(a->parts[i]), ib = upd_parse_index(b->parts[i]);
        int c;
        if (ia >= 0 && ib >= 0 && ia != ib) {
            return ia < ib ? -1 : 1;
        }
        c = strcmp(a->parts[i], b->parts[i]);
        if (c != 0) {
            return c;
        }
    }
    return (a->n > b->n) - (a->n < b->n);
}

/* Writes the first `n` components of `p`, dotted, into buf. */
void upd_path_prefix_str(const struct path *p, size_t n, char *buf, size_t cap)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && i < p->n && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s", i ? "." : "", p->parts[i]);
        if (w < 0) {
            break;
        }
        len += (size_t)w;
    }
}

/* True when `a` is a component-wise prefix of (or equal to) `b`. */
bool upd_path_is_prefix(const struct path *a, const struct path *b)
{
    if (a->n > b->n) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->parts[i], b->parts[i]) != 0) {
            return false;
        }
    }
    return true;
}
