/*
 * sort.c: compiled sort specifications and the document comparator used by
 * find, aggregation $sort and $push's $sort. A key's value in a document is
 * found with MongoDB's path rules (qry_path_walk): ascending uses the
 * smallest value found, descending the largest; an array at the leaf
 * contributes its elements, an empty one sorts as undefined (below null),
 * and a missing field sorts as null.
 */
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

struct sort_key
{
    char *path;
    int dir; /* 1 or -1 */
};

struct qry_sort
{
    struct sort_key *keys;
    size_t n;
};

void qry_sort_free(struct qry_sort *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->keys[i].path);
    }
    free(s->keys);
    free(s);
}

static int bad_order(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                             "$sort key ordering must be 1 (for ascending) or -1 (for descending)");
}

static int check_path(const char *k, struct cairn_error *err)
{
    const char *c = k;

    if (k[0] == '\0') {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmpty,
                                 "FieldPath cannot be constructed with empty string");
    }
    for (;;) {
        const char *dot = strchr(c, '.');
        size_t len = dot ? (size_t)(dot - c) : strlen(c);
        if (len == 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmptyComponent,
                                     "FieldPath field names may not be empty strings.");
        }
        if (c[0] == '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathDollarPrefix,
                                     "FieldPath field names may not start with '$'. Consider "
                                     "using $getField or $setField.");
        }
        if (dot == NULL) {
            return 0;
        }
        c = dot + 1;
    }
}

static int parse_dir(const bson_iter_t *it, int *dir, struct cairn_error *err)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    double d;

    switch (v->value_type) {
        case BSON_TYPE_INT32:
            d = v->value.v_int32;
            break;
        case BSON_TYPE_INT64:
            d = (double)v->value.v_int64;
            break;
        case BSON_TYPE_DOUBLE:
            d = v->value.v_double;
            break;
        case BSON_TYPE_DECIMAL128:
            d = qry_number_as_double(v);
            break;
        case BSON_TYPE_DOCUMENT: {
            bson_iter_t sub;
            if (bson_iter_recurse(it, &sub) && bson_iter_find(&sub, "$meta")) {
                return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                         "$meta sort keys ({$meta: ...}) are not supported");
            }
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Illegal key in $sort specification: %s: %s",
                                     bson_iter_key(it), "{ ... }");
        }
        default:
            return bad_order(err);
    }
    if (d == 1.0) {
        *dir = 1;
    } else if (d == -1.0) {
        *dir = -1;
    } else {
        return bad_order(err);
    }
    return 0;
}

int qry_sort_compile(const bson_t *spec, struct qry_sort **out, struct cairn_error *err)
{
    struct qry_sort *s;
    bson_iter_t it;
    uint32_t count = 0;
    int rv = 0;

    *out = NULL;
    if (!bson_iter_init(&it, spec)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid sort specification");
    }
    while (bson_iter_next(&it)) {
        count++;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (count > 0 && (s->keys = calloc(count, sizeof *s->keys)) == NULL)) {
        free(s);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        int dir = 0;
        rv = check_path(k, err);
        if (rv == 0) {
            rv = parse_dir(&it, &dir, err);
        }
        if (rv != 0) {
            break;
        }
        s->keys[s->n].path = strdup(k);
        if (s->keys[s->n].path == NULL) {
            rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            break;
        }
        s->keys[s->n].dir = dir;
        s->n++;
    }
    if (rv != 0) {
        qry_sort_free(s);
        return rv;
    }
    *out = s;
    return 0;
}

struct key_acc
{
    int dir;
    bool have;
    bson_value_t best;
};

static void consider(struct key_acc *a, const bson_value_t *v)
{
    if (!a->have) {
        a->best = *v;
        a->have = true;
        return;
    }
    if (a->dir * qry_cmp(v, &a->best) < 0) {
        a->best = *v;
    }
}

static bool key_visit(void *arg, const bson_iter_t *it, bool array_elem)
{
    struct key_acc *a = arg;
    bson_value_t v;

    if (it == NULL) {
        v.value_type = BSON_TYPE_NULL;
        consider(a, &v);
        return false;
    }
    if (!array_elem && BSON_ITER_HOLDS_ARRAY(it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_array(it, &len, &data);
        if (len <= 5) { /* empty array: its elements will not be visited */
            v.value_type = BSON_TYPE_UNDEFINED;
            consider(a, &v);
        }
        return false;
    }
    v = *bson_iter_value((bson_iter_t *)it);
    consider(a, &v);
    return false;
}

static void sort_key(const struct sort_key *k, const bson_t *doc, bson_value_t *out)
{
    struct key_acc a;

    memset(&a, 0, sizeof a);
    a.dir = k->dir;
    qry_path_walk(bson_get_data(doc), doc->len, k->path, true, key_visit, &a);
    if (!a.have) {
        out->value_type = BSON_TYPE_NULL;
    } else {
        *out = a.best;
    }
}

int qry_sort_cmp(const struct qry_sort *s, const bson_t *a, const bson_t *b)
{
    for (size_t i = 0; i < s->n; i++) {
        bson_value_t ka, kb;
        int c;
        sort_key(&s->keys[i], a, &ka);
        sort_key(&s->keys[i], b, &kb);
        c = qry_cmp(&ka, &kb);
        if (c != 0) {
            return s->keys[i].dir * (c < 0 ? -1 : 1);
        }
    }
    return 0;
}
