/*
 * index.c: secondary index specs (validation as mongod does it, the
 * normalised spec listIndexes shows) and index keys (the distinct,
 * order-preserving byte keys a document has in an index). Storage of specs
 * and entries belongs to the txn layer (txn/index.c); this file is pure.
 *
 * Key layout: for each field of the key pattern, qry_key_encode_any of the
 * value (bytes complemented for a descending field), concatenated. Each
 * part is self-delimiting, so the concatenation is too, and memcmp order
 * of keys is the index order (complementing a prefix-free code reverses its
 * order and keeps it prefix-free).
 *
 * Arrays (multikey): the values of a field are collected along its dotted
 * path, traversing arrays of documents; a leaf array contributes each
 * element ([] contributes undefined). As with mongod, an element of an
 * array met before the end of the path that does not lead to a value (a
 * document without the rest of the path, a scalar, a nested array)
 * contributes null, marked "not found": {m: [{k: 1}, {}]} has keys 1 and
 * null in {m.k: 1}. A sparse index skips a key whose every field is not
 * found (so there, that document has only the key 1). Two fields may both meet arrays only
 * along the same paths (the array paths of one among the other's); the keys
 * are then the cross product. Otherwise the document cannot be indexed
 * (171), as mongod's "cannot index parallel arrays".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

/* Largest number of keys one document may have in one index (guards the
 * cross product of two fields over one array). */
#define MAX_KEYS_PER_DOC 100000

struct ix_field
{
    char *path;
    bool desc;
};

struct qry_index
{
    bson_t spec; /* normalised */
    bson_t key;
    char *name;
    struct ix_field fields[QRY_INDEX_MAX_FIELDS];
    size_t n_fields;
    bool unique, sparse, hidden;
    bool has_ttl;
    int32_t ttl_secs; /* expireAfterSeconds */
    bool has_partial;
    bson_t partial;
    struct qry_matcher *filter;
};

/* ---- Spec validation --------------------------------------------------- */

static int spec_error(struct cairn_error *err, int mongo_code, const bson_t *spec, const char *why)
{
    char *json = bson_as_relaxed_extended_json(spec, NULL);
    int code = mongo_code == MONGO_NotImplemented ? CAIRN_EUNSUPPORTED : CAIRN_EINVAL;

    cairn_error_mongo(err, code, mongo_code, "Error in specification %s :: caused by :: %s",
                      json ? json : "{}", why);
    bson_free(json);
    return code;
}

static bool is_number(const bson_iter_t *it)
{
    return BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it) || BSON_ITER_HOLDS_DOUBLE(it) ||
           BSON_ITER_HOLDS_DECIMAL128(it);
}

/* Checks the key pattern and fills ix->fields. */
static int parse_key(struct qry_index *ix, const bson_t *spec, struct cairn_error *err)
{
    bson_iter_t it;
    char why[256];

    if (bson_count_keys(&ix->key) == 0) {
        return spec_error(err, MONGO_CannotCreateIndex, spec, "Index keys cannot be empty.");
    }
    if (bson_count_keys(&ix->key) > QRY_INDEX_MAX_FIELDS) {
        snprintf(why, sizeof why, "Index key pattern has more than %d fields",
                 QRY_INDEX_MAX_FIELDS);
        return spec_error(err, MONGO_CannotCreateIndex, spec, why);
    }
    bson_iter_init(&it, &ix->key);
    while (bson_iter_next(&it)) {
        const char *f = bson_iter_key(&it);
        struct ix_field *fld = &ix->fields[ix->n_fields];
        if (f[0] == '\0') {
            return spec_error(err, MONGO_CannotCreateIndex, spec,
                              "Index keys cannot be an empty field.");
        }
        if (strcmp(f, "$**") == 0 || (strlen(f) > 4 && strcmp(f + strlen(f) - 4, ".$**") == 0)) {
            return spec_error(err, MONGO_NotImplemented, spec,
                              "wildcard indexes are not supported yet");
        }
        if (f[0] == '$') {
            return spec_error(err, MONGO_CannotCreateIndex, spec,
                              "Index key contains an illegal field name: field name starts "
                              "with '$'.");
        }
        if (f[strlen(f) - 1] == '.' || strstr(f, "..") != NULL || f[0] == '.') {
            return spec_error(err, MONGO_CannotCreateIndex, spec,
                              "Index keys cannot contain an empty field.");
        }
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            const char *kind = bson_iter_utf8(&it, NULL);
            if (strcmp(kind, "text") == 0 || strcmp(kind, "2dsphere") == 0 ||
                strcmp(kind, "2d") == 0 || strcmp(kind, "hashed") == 0 ||
                strcmp(kind, "geoHaystack") == 0 || strcmp(kind, "columnstore") == 0) {
                snprintf(why, sizeof why, "%s indexes are not supported yet", kind);
                return spec_error(err, MONGO_NotImplemented, spec, why);
            }
            snprintf(why, sizeof why, "Unknown index plugin '%s'", kind);
            return spec_error(err, MONGO_CannotCreateIndex, spec, why);
        }
        if (!is_number(&it)) {
            snprintf(why, sizeof why,
                     "Values in v:2 index key pattern cannot be of type %s. Only numbers > 0, "
                     "numbers < 0, and strings are allowed.",
                     qry_type_name(bson_iter_type(&it)));
            return spec_error(err, MONGO_CannotCreateIndex, spec, why);
        }
        double d = bson_iter_as_double(&it);
        if (BSON_ITER_HOLDS_DECIMAL128(&it)) {
            d = qry_number_as_double(bson_iter_value(&it));
        }
        if (d != d) {
            return spec_error(err, MONGO_CannotCreateIndex, spec,
                              "Values in the index key pattern cannot be NaN.");
        }
        if (d == 0.0) {
            return spec_error(err, MONGO_CannotCreateIndex, spec,
                              "Values in the index key pattern cannot be 0.");
        }
        for (size_t i = 0; i < ix->n_fields; i++) {
            if (strcmp(ix->fields[i].path, f) == 0) {
                return spec_error(err, MONGO_CannotCreateIndex, spec,
                                  "Index key pattern has a repeated field");
            }
        }
        fld->path = strdup(f);
        if (fld->path == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        fld->desc = d < 0;
        ix->n_fields++;
    }
    return 0;
}

static int want_bool(const bson_iter_t *it, const char *field, bool *out, struct cairn_error *err)
{
    if (BSON_ITER_HOLDS_BOOL(it) || is_number(it)) {
        *out = bson_iter_as_bool(it);
        return 0;
    }
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "The field '%s' must be a boolean, but got %s", field,
                             qry_type_name(bson_iter_type(it)));
}

int qry_index_compile(const bson_t *spec, struct qry_index **out, struct cairn_error *err)
{
    struct qry_index *ix = calloc(1, sizeof *ix);
    bson_iter_t it;
    bool have_key = false, have_name = false, have_sparse = false;
    int rv = 0;

    *out = NULL;
    if (ix == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    bson_init(&ix->spec);
    bson_init(&ix->key);
    bson_init(&ix->partial);
    bson_iter_init(&it, spec);
    while (rv == 0 && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "key") == 0) {
            uint32_t len;
            const uint8_t *data;
            bson_t view;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                       "The field 'key' must be an object, but got %s",
                                       qry_type_name(bson_iter_type(&it)));
                break;
            }
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&view, data, len)) {
                rv = spec_error(err, MONGO_CannotCreateIndex, spec, "invalid key pattern");
                break;
            }
            bson_destroy(&ix->key);
            bson_copy_to(&view, &ix->key);
            have_key = true;
        } else if (strcmp(k, "name") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                       "The field 'name' must be a string, but got %s",
                                       qry_type_name(bson_iter_type(&it)));
                break;
            }
            free(ix->name);
            ix->name = strdup(bson_iter_utf8(&it, NULL));
            if (ix->name == NULL) {
                rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            }
            have_name = true;
        } else if (strcmp(k, "unique") == 0) {
            rv = want_bool(&it, k, &ix->unique, err);
        } else if (strcmp(k, "sparse") == 0) {
            rv = want_bool(&it, k, &ix->sparse, err);
            have_sparse = true;
        } else if (strcmp(k, "hidden") == 0) {
            rv = want_bool(&it, k, &ix->hidden, err);
        } else if (strcmp(k, "partialFilterExpression") == 0) {
            uint32_t len;
            const uint8_t *data;
            bson_t view;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                       "The field 'partialFilterExpression' must be an object, "
                                       "but got %s",
                                       qry_type_name(bson_iter_type(&it)));
                break;
            }
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&view, data, len)) {
                rv = spec_error(err, MONGO_CannotCreateIndex, spec, "invalid filter");
                break;
            }
            bson_destroy(&ix->partial);
            bson_copy_to(&view, &ix->partial);
            ix->has_partial = true;
        } else if (strcmp(k, "v") == 0) {
            if (!is_number(&it) || bson_iter_as_int64(&it) < 1 || bson_iter_as_int64(&it) > 2) {
                rv = spec_error(err, MONGO_CannotCreateIndex, spec,
                                "Invalid index specification: index version must be 1 or 2");
            }
        } else if (strcmp(k, "background") == 0 || strcmp(k, "ns") == 0) {
            /* Accepted and ignored, as mongod does. */
        } else if (strcmp(k, "expireAfterSeconds") == 0) {
            double d = is_number(&it) ? bson_iter_as_double(&it) : 0;
            char why[160];
            if (!is_number(&it)) {
                snprintf(why, sizeof why,
                         "TTL index 'expireAfterSeconds' option must be numeric, but received a "
                         "type of '%s'.",
                         qry_type_name(bson_iter_type(&it)));
                rv = spec_error(err, MONGO_CannotCreateIndex, spec, why);
            } else if (d != d || d < 0 || d > (double)INT32_MAX) {
                rv = spec_error(err, MONGO_CannotCreateIndex, spec,
                                "TTL index 'expireAfterSeconds' option must be within an "
                                "acceptable range, try a lower number.");
            } else {
                ix->has_ttl = true;
                ix->ttl_secs = (int32_t)d;
            }
        } else if (strcmp(k, "collation") == 0 || strcmp(k, "weights") == 0 ||
                   strcmp(k, "default_language") == 0 || strcmp(k, "language_override") == 0 ||
                   strcmp(k, "textIndexVersion") == 0 || strcmp(k, "2dsphereIndexVersion") == 0 ||
                   strcmp(k, "bits") == 0 || strcmp(k, "min") == 0 || strcmp(k, "max") == 0 ||
                   strcmp(k, "wildcardProjection") == 0 || strcmp(k, "storageEngine") == 0 ||
                   strcmp(k, "prepareUnique") == 0 || strcmp(k, "clustered") == 0) {
            char why[160];
            snprintf(why, sizeof why, "the index option '%s' is not supported yet", k);
            rv = spec_error(err, MONGO_NotImplemented, spec, why);
        } else {
            char *json = bson_as_relaxed_extended_json(spec, NULL);
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidIndexSpecificationOption,
                                   "The field '%s' is not valid for an index specification. "
                                   "Specification: %s",
                                   k, json ? json : "{}");
            bson_free(json);
        }
    }
    if (rv == 0 && !have_key) {
        rv = spec_error(err, MONGO_FailedToParse, spec,
                        "The 'key' field is a required property of an index specification");
    }
    if (rv == 0 && !have_name) {
        rv = spec_error(err, MONGO_FailedToParse, spec,
                        "The 'name' field is a required property of an index specification");
    }
    if (rv == 0 && ix->name[0] == '\0') {
        rv = spec_error(err, MONGO_CannotCreateIndex, spec, "index name cannot be empty");
    }
    if (rv == 0) {
        rv = parse_key(ix, spec, err);
    }
    if (rv == 0 && ix->n_fields == 1 && strcmp(ix->fields[0].path, "_id") == 0 &&
        (ix->unique || ix->sparse || ix->has_partial || ix->hidden)) {
        rv = spec_error(err, MONGO_InvalidIndexSpecificationOption, spec,
                        "The _id index cannot carry unique, sparse, partialFilterExpression or "
                        "hidden options");
    }
    if (rv == 0 && ix->has_ttl && ix->n_fields != 1) {
        rv = spec_error(err, MONGO_CannotCreateIndex, spec,
                        "TTL indexes are single-field indexes, compound indexes do not support "
                        "TTL.");
    }
    if (rv == 0 && ix->has_ttl && strcmp(ix->fields[0].path, "_id") == 0) {
        rv = spec_error(err, MONGO_InvalidIndexSpecificationOption, spec,
                        "The field 'expireAfterSeconds' is not valid for an _id index "
                        "specification.");
    }
    if (rv == 0 && have_sparse && ix->has_partial) {
        rv = spec_error(err, MONGO_CannotCreateIndex, spec,
                        "cannot mix \"partialFilterExpression\" and \"sparse\" options");
    }
    if (rv == 0 && ix->has_partial) {
        rv = qry_matcher_compile(&ix->partial, &ix->filter, err);
    }
    if (rv == 0) {
        BSON_APPEND_INT32(&ix->spec, "v", 2);
        BSON_APPEND_DOCUMENT(&ix->spec, "key", &ix->key);
        BSON_APPEND_UTF8(&ix->spec, "name", ix->name);
        if (ix->unique) {
            BSON_APPEND_BOOL(&ix->spec, "unique", true);
        }
        if (have_sparse) {
            BSON_APPEND_BOOL(&ix->spec, "sparse", ix->sparse);
        }
        if (ix->has_partial) {
            BSON_APPEND_DOCUMENT(&ix->spec, "partialFilterExpression", &ix->partial);
        }
        if (ix->has_ttl) {
            BSON_APPEND_INT32(&ix->spec, "expireAfterSeconds", ix->ttl_secs);
        }
        if (ix->hidden) {
            BSON_APPEND_BOOL(&ix->spec, "hidden", true);
        }
        *out = ix;
        return 0;
    }
    qry_index_free(ix);
    return rv;
}

const bson_t *qry_index_spec(const struct qry_index *ix)
{
    return &ix->spec;
}

const char *qry_index_name(const struct qry_index *ix)
{
    return ix->name;
}

const bson_t *qry_index_key_pattern(const struct qry_index *ix)
{
    return &ix->key;
}

bool qry_index_unique(const struct qry_index *ix)
{
    return ix->unique;
}

bool qry_index_hidden(const struct qry_index *ix)
{
    return ix->hidden;
}

bool qry_index_ttl(const struct qry_index *ix, int32_t *secs)
{
    if (ix->has_ttl && secs != NULL) {
        *secs = ix->ttl_secs;
    }
    return ix->has_ttl;
}

bool qry_index_sparse(const struct qry_index *ix)
{
    return ix->sparse;
}

bool qry_index_partial(const struct qry_index *ix)
{
    return ix->has_partial;
}

size_t qry_index_n_fields(const struct qry_index *ix)
{
    return ix->n_fields;
}

const char *qry_index_field(const struct qry_index *ix, size_t i, bool *desc)
{
    if (desc != NULL) {
        *desc = ix->fields[i].desc;
    }
    return ix->fields[i].path;
}

/* Key patterns are the same when their fields, in order, have the same
 * paths and directions ({a: 1} and {a: 1.0} are one pattern). */
static bool same_pattern(const struct qry_index *a, const struct qry_index *b)
{
    if (a->n_fields != b->n_fields) {
        return false;
    }
    for (size_t i = 0; i < a->n_fields; i++) {
        if (strcmp(a->fields[i].path, b->fields[i].path) != 0 ||
            a->fields[i].desc != b->fields[i].desc) {
            return false;
        }
    }
    return true;
}

enum qry_index_cmp qry_index_compare(const struct qry_index *a, const struct qry_index *b)
{
    if (!same_pattern(a, b)) {
        return QRY_INDEX_DIFFERENT;
    }
    if (a->has_partial != b->has_partial ||
        (a->has_partial && !bson_equal(&a->partial, &b->partial))) {
        return QRY_INDEX_DIFFERENT; /* mongod: a distinct index */
    }
    if (a->unique != b->unique || a->sparse != b->sparse || a->hidden != b->hidden ||
        a->has_ttl != b->has_ttl || a->ttl_secs != b->ttl_secs) {
        return QRY_INDEX_EQUIVALENT;
    }
    return QRY_INDEX_SAME;
}

void qry_index_free(struct qry_index *ix)
{
    if (ix == NULL) {
        return;
    }
    for (size_t i = 0; i < ix->n_fields; i++) {
        free(ix->fields[i].path);
    }
    free(ix->name);
    bson_destroy(&ix->spec);
    bson_destroy(&ix->key);
    bson_destroy(&ix->partial);
    qry_matcher_free(ix->filter);
    free(ix);
}

/* ---- Keys -------------------------------------------------------------- */

/* Most distinct array paths remembered per field (deeper ones count as
 * the same for the parallel-array rule). */
#define MAX_ARRAY_PATHS 8

/* The values of one field of one document. */
struct fvals
{
    bson_value_t *v;
    size_t n, cap;
    bool present; /* the path reached a value (sparse) */
    /* Path prefixes at which arrays were met, distinct. */
    char arrs[MAX_ARRAY_PATHS][256];
    size_t n_arrs;
};

static const bson_value_t undefined_value = {.value_type = BSON_TYPE_UNDEFINED};
static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
/* "Not found": keyed as null; a sparse index skips a key made only of these. */
static const bson_value_t missing_value = {.value_type = BSON_TYPE_EOD};

/* The value a collected value stands for in a key. */
static const bson_value_t *key_value(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_EOD ? &null_value : v;
}

static int fv_push(struct fvals *f, const bson_value_t *v)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        bson_value_t *p = realloc(f->v, cap * sizeof *p);
        if (p == NULL) {
            return CAIRN_ENOMEM;
        }
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n++] = *v; /* a view into the document */
    return 0;
}

static void note_array(struct fvals *f, const char *path, size_t prefix_len)
{
    if (prefix_len >= sizeof f->arrs[0]) {
        prefix_len = sizeof f->arrs[0] - 1;
    }
    for (size_t i = 0; i < f->n_arrs; i++) {
        if (strlen(f->arrs[i]) == prefix_len && memcmp(f->arrs[i], path, prefix_len) == 0) {
            return;
        }
    }
    if (f->n_arrs < MAX_ARRAY_PATHS) {
        memcpy(f->arrs[f->n_arrs], path, prefix_len);
        f->arrs[f->n_arrs][prefix_len] = '\0';
        f->n_arrs++;
    }
}

/* True when every array path of `a` is one of `b`'s. */
static bool arrays_within(const struct fvals *a, const struct fvals *b)
{
    for (size_t i = 0; i < a->n_arrs; i++) {
        bool found = false;
        for (size_t j = 0; j < b->n_arrs && !found; j++) {
            found = strcmp(a->arrs[i], b->arrs[j]) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

/* Collects the values at path[off..] inside the document (data, len);
 * `path` is the whole dotted path, for array prefixes. */
static int collect(const uint8_t *data,
                   uint32_t len,
                   const char *path,
                   size_t off,
                   struct fvals *f,
                   int depth)
{
    const char *comp = path + off;
    const char *dot = strchr(comp, '.');
    size_t clen = dot ? (size_t)(dot - comp) : strlen(comp);
    bson_t doc;
    bson_iter_t it;
    int rv = 0;

    if (depth > 200 || !bson_init_static(&doc, data, len) || !bson_iter_init(&it, &doc)) {
        return 0;
    }
    while (bson_iter_next(&it)) {
        if (bson_iter_key_len(&it) != clen || memcmp(bson_iter_key(&it), comp, clen) != 0) {
            continue;
        }
        const bson_value_t *v = bson_iter_value(&it);
        if (dot == NULL) {
            f->present = true;
            if (v->value_type != BSON_TYPE_ARRAY) {
                return fv_push(f, v);
            }
            note_array(f, path, off + clen);
            bson_iter_t ai;
            bool any = false;
            bson_iter_recurse(&it, &ai);
            while (rv == 0 && bson_iter_next(&ai)) {
                any = true;
                rv = fv_push(f, bson_iter_value(&ai));
            }
            return rv == 0 && !any ? fv_push(f, &undefined_value) : rv;
        }
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            return collect(v->value.v_doc.data, v->value.v_doc.data_len, path, off + clen + 1, f,
                           depth + 1);
        }
        if (v->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t ai;
            note_array(f, path, off + clen);
            bson_iter_recurse(&it, &ai);
            while (rv == 0 && bson_iter_next(&ai)) {
                const bson_value_t *e = bson_iter_value(&ai);
                size_t before = f->n;
                if (e->value_type == BSON_TYPE_DOCUMENT) {
                    rv = collect(e->value.v_doc.data, e->value.v_doc.data_len, path, off + clen + 1,
                                 f, depth + 1);
                }
                if (rv == 0 && f->n == before) {
                    rv = fv_push(f, &missing_value); /* no value down this element: null */
                }
            }
            return rv;
        }
        return 0;
    }
    return 0;
}

void qry_ixkeys_fini(struct qry_ixkeys *keys)
{
    for (size_t i = 0; i < keys->n; i++) {
        bson_destroy(keys->vals[i]);
    }
    free(keys->off);
    free(keys->len);
    free(keys->vals);
    free(keys->tb_off);
    free(keys->tb_len);
    cairn_buf_free(&keys->buf);
    cairn_buf_free(&keys->tb);
    memset(keys, 0, sizeof *keys);
}

static void keys_clear(struct qry_ixkeys *keys)
{
    for (size_t i = 0; i < keys->n; i++) {
        bson_destroy(keys->vals[i]);
    }
    keys->n = 0;
    keys->arrays = false;
    cairn_buf_reset(&keys->buf);
    cairn_buf_reset(&keys->tb);
}

/* memcmp order of two keys (a proper prefix first; none is one of another
 * since encodings are self-delimiting). */
static int key_cmp(const uint8_t *a, size_t la, const uint8_t *b, size_t lb)
{
    qry_probe_tick(QRY_PROBE_KEY_CMP);
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c != 0) {
        return c;
    }
    return la < lb ? -1 : (la > lb ? 1 : 0);
}

/* The position of `key` in `keys` (sorted and distinct), or -1. */
static long key_find(const struct qry_ixkeys *keys, const uint8_t *key, size_t len)
{
    size_t lo = 0, hi = keys->n; /* keys are sorted and distinct: binary search */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(keys->buf.data + keys->off[mid], keys->len[mid], key, len);
        if (c == 0) {
            return (long)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

bool qry_ixkeys_has(const struct qry_ixkeys *keys, const uint8_t *key, size_t len)
{
    return key_find(keys, key, len) >= 0;
}

bool qry_ixkeys_has_same(const struct qry_ixkeys *keys, const struct qry_ixkeys *other, size_t j)
{
    const uint8_t *t = other->tb.data + other->tb_off[j];
    long i = key_find(keys, other->buf.data + other->off[j], other->len[j]);
    if (i < 0) {
        return false;
    }
    return keys->tb_len[i] == other->tb_len[j] &&
           (other->tb_len[j] == 0 ||
            memcmp(keys->tb.data + keys->tb_off[i], t, other->tb_len[j]) == 0);
}

/* Appends the key for the choice `pick` (one value index per field). */
static int add_key(const struct qry_index *ix,
                   struct fvals *fv,
                   const size_t *pick,
                   struct qry_ixkeys *out,
                   struct cairn_error *err)
{
    size_t start = out->buf.len;
    bool found = false;
    int rv = 0;

    for (size_t i = 0; i < ix->n_fields; i++) {
        found = found || fv[i].v[pick[i]].value_type != BSON_TYPE_EOD;
    }
    if (ix->sparse && !found) {
        return 0; /* mongod: a sparse index has no key whose every field is not found */
    }
    for (size_t i = 0; i < ix->n_fields && rv == 0; i++) {
        size_t at = out->buf.len;
        rv = qry_key_encode_any(key_value(&fv[i].v[pick[i]]), &out->buf, err);
        if (rv == 0 && ix->fields[i].desc) {
            for (size_t b = at; b < out->buf.len; b++) {
                out->buf.data[b] = (uint8_t)~out->buf.data[b];
            }
        }
    }
    if (rv != 0) {
        out->buf.len = start;
        return rv;
    }
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 4;
        size_t *o = realloc(out->off, cap * sizeof *o);
        size_t *l = o ? realloc(out->len, cap * sizeof *l) : NULL;
        bson_t **v = l ? realloc(out->vals, cap * sizeof *v) : NULL;
        size_t *to = v ? realloc(out->tb_off, cap * sizeof *to) : NULL;
        size_t *tl = to ? realloc(out->tb_len, cap * sizeof *tl) : NULL;
        if (o != NULL) {
            out->off = o;
        }
        if (l != NULL) {
            out->len = l;
        }
        if (v != NULL) {
            out->vals = v;
        }
        if (to != NULL) {
            out->tb_off = to;
        }
        if (tl == NULL) {
            out->buf.len = start;
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        out->tb_len = tl;
        out->cap = cap;
    }
    size_t tb_start = out->tb.len;
    for (size_t i = 0; i < ix->n_fields && rv == 0; i++) {
        const bson_value_t *v = &fv[i].v[pick[i]];
        rv = qry_key_typebits(key_value(v), v->value_type == BSON_TYPE_EOD, &out->tb);
    }
    if (rv != 0) {
        out->buf.len = start;
        out->tb.len = tb_start;
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    out->tb_off[out->n] = tb_start;
    out->tb_len[out->n] = out->tb.len - tb_start;
    bson_t *vals = bson_new();
    for (size_t i = 0; i < ix->n_fields; i++) {
        bson_append_value(vals, ix->fields[i].path, -1, key_value(&fv[i].v[pick[i]]));
    }
    out->off[out->n] = start;
    out->len[out->n] = out->buf.len - start;
    out->vals[out->n] = vals;
    out->n++;
    return 0;
}

/* One key while sorting: where it is, and its position in the odometer
 * order (ties keep the first, so keyValue is the first value met). */
struct kref
{
    const uint8_t *p;
    size_t off, len, idx;
    size_t tb_off, tb_len;
    bson_t *val;
};

static int kref_cmp(const void *a, const void *b)
{
    const struct kref *x = a, *y = b;
    int c = key_cmp(x->p, x->len, y->p, y->len);
    if (c != 0) {
        return c;
    }
    return x->idx < y->idx ? -1 : (x->idx > y->idx ? 1 : 0);
}

/* Sorts the keys in memcmp order and drops duplicates (a document's array
 * may repeat a value): O(k log k) for k keys. */
static int keys_sort_unique(struct qry_ixkeys *k, struct cairn_error *err)
{
    if (k->n < 2) {
        return 0;
    }
    struct kref *r = malloc(k->n * sizeof *r);
    if (r == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < k->n; i++) {
        r[i] = (struct kref){k->buf.data + k->off[i],
                             k->off[i],
                             k->len[i],
                             i,
                             k->tb_off[i],
                             k->tb_len[i],
                             k->vals[i]};
    }
    qsort(r, k->n, sizeof *r, kref_cmp);
    size_t n = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (n > 0 && key_cmp(r[i].p, r[i].len, k->buf.data + k->off[n - 1], k->len[n - 1]) == 0) {
            bson_destroy(r[i].val);
            continue;
        }
        k->off[n] = r[i].off;
        k->len[n] = r[i].len;
        k->tb_off[n] = r[i].tb_off;
        k->tb_len[n] = r[i].tb_len;
        k->vals[n] = r[i].val;
        n++;
    }
    k->n = n;
    free(r);
    return 0;
}

int qry_index_keys(const struct qry_index *ix,
                   const bson_t *doc,
                   struct qry_ixkeys *out,
                   struct cairn_error *err)
{
    struct fvals fv[QRY_INDEX_MAX_FIELDS];
    size_t pick[QRY_INDEX_MAX_FIELDS];
    bool any_present = false;
    size_t total = 1;
    int rv = 0;

    keys_clear(out);
    if (ix->filter != NULL && !qry_matcher_match(ix->filter, doc)) {
        return 0;
    }
    memset(fv, 0, sizeof fv);
    for (size_t i = 0; i < ix->n_fields && rv == 0; i++) {
        rv = collect(bson_get_data(doc), doc->len, ix->fields[i].path, 0, &fv[i], 0);
        if (rv != 0) {
            rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            break;
        }
        any_present = any_present || fv[i].present;
        out->arrays = out->arrays || fv[i].n_arrs > 0;
        if (fv[i].n == 0) {
            rv = fv_push(&fv[i], &missing_value) == 0 ? 0
                                                      : cairn_error_setf(err, CAIRN_ENOMEM, "oom");
        }
        /* Two fields may meet arrays only along the same paths (one
         * field's array paths among the other's): else the arrays are
         * parallel and the cross product has no meaning. */
        for (size_t j = 0; j < i && rv == 0 && fv[i].n_arrs > 0; j++) {
            if (fv[j].n_arrs > 0 && !arrays_within(&fv[i], &fv[j]) &&
                !arrays_within(&fv[j], &fv[i])) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_CannotIndexParallelArrays,
                                       "cannot index parallel arrays [%s] [%s]", fv[i].arrs[0],
                                       fv[j].arrs[0]);
            }
        }
        if (rv != 0) {
            break;
        }
        total *= fv[i].n;
        if (total > MAX_KEYS_PER_DOC) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_CannotCreateIndex,
                                   "a document would have more than %d keys in index %s",
                                   MAX_KEYS_PER_DOC, ix->name);
            break;
        }
    }
    if (rv == 0 && ix->sparse && !any_present) {
        goto out;
    }
    /* Odometer over the cross product. */
    memset(pick, 0, sizeof pick);
    while (rv == 0) {
        size_t i;
        rv = add_key(ix, fv, pick, out, err);
        for (i = ix->n_fields; i-- > 0;) {
            if (++pick[i] < fv[i].n) {
                break;
            }
            pick[i] = 0;
        }
        if (i == (size_t)-1) {
            break;
        }
    }
    if (rv == 0) {
        rv = keys_sort_unique(out, err);
    }
out:
    for (size_t i = 0; i < ix->n_fields; i++) {
        free(fv[i].v);
    }
    if (rv != 0) {
        keys_clear(out);
    }
    return rv;
}
