/*
 * plan_hint.c: what a query's `hint` names, as mongod reads it: an index
 * name (string), an index key pattern (document, compared field by field
 * with numeric directions compared by value), {$natural: 1 or -1} (a
 * collection scan) or an empty document (no hint). Pure logic; resolving
 * the hint against a collection's indexes belongs to txn (txn/ixscan.c).
 */
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

bool qry_hint_given(const bson_value_t *hint)
{
    if (hint == NULL) {
        return false;
    }
    if (hint->value_type == BSON_TYPE_DOCUMENT) {
        return hint->value.v_doc.data_len > 5;
    }
    return hint->value_type == BSON_TYPE_UTF8;
}

bool qry_hint_natural(const bson_value_t *hint, int *dir)
{
    bson_t d;
    bson_iter_t it;

    if (hint == NULL || hint->value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&d, hint->value.v_doc.data, hint->value.v_doc.data_len) ||
        !bson_iter_init_find(&it, &d, "$natural")) {
        return false;
    }
    if (dir != NULL) {
        *dir = BSON_ITER_HOLDS_NUMBER(&it) && bson_iter_as_double(&it) < 0 ? -1 : 1;
    }
    return true;
}

/* True when two key-pattern values name the same direction or kind. */
static bool same_direction(const bson_value_t *a, const bson_value_t *b)
{
    if (qry_type_rank(a->value_type) == QRY_RANK_NUMBER &&
        qry_type_rank(b->value_type) == QRY_RANK_NUMBER) {
        return qry_number_as_double(a) == qry_number_as_double(b);
    }
    return qry_cmp(a, b) == 0;
}

bool qry_hint_matches(const bson_value_t *hint, const char *name, const bson_t *key_pattern)
{
    if (hint == NULL) {
        return false;
    }
    if (hint->value_type == BSON_TYPE_UTF8) {
        return strlen(name) == hint->value.v_utf8.len &&
               memcmp(name, hint->value.v_utf8.str, hint->value.v_utf8.len) == 0;
    }
    if (hint->value_type != BSON_TYPE_DOCUMENT) {
        return false;
    }
    bson_t d;
    bson_iter_t a, b;
    if (!bson_init_static(&d, hint->value.v_doc.data, hint->value.v_doc.data_len) ||
        !bson_iter_init(&a, &d) || !bson_iter_init(&b, key_pattern)) {
        return false;
    }
    for (;;) {
        bool na = bson_iter_next(&a), nb = bson_iter_next(&b);
        if (!na || !nb) {
            return na == nb;
        }
        if (strcmp(bson_iter_key(&a), bson_iter_key(&b)) != 0 ||
            !same_direction(bson_iter_value(&a), bson_iter_value(&b))) {
            return false;
        }
    }
}

bool qry_hint_is_id(const bson_value_t *hint)
{
    bson_t d;
    bson_iter_t it;

    if (hint != NULL && hint->value_type == BSON_TYPE_UTF8) {
        return hint->value.v_utf8.len == 4 && memcmp(hint->value.v_utf8.str, "_id_", 4) == 0;
    }
    if (hint == NULL || hint->value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&d, hint->value.v_doc.data, hint->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d) || !bson_iter_next(&it) ||
        strcmp(bson_iter_key(&it), "_id") != 0 || !BSON_ITER_HOLDS_NUMBER(&it)) {
        return false;
    }
    double v = bson_iter_as_double(&it);
    return (v == 1 || v == -1) && !bson_iter_next(&it);
}
