/*
 * update.c: update documents (operators and replacements), upsert seeds,
 * and the helpers declared in update_int.h.
 *
 * An operator update is compiled into a list of operations, one per
 * (operator, path), checked for conflicting paths and sorted by path the
 * way mongod 5.0+ applies them (component-wise; numeric components in
 * numeric order). Applying loads the document into a small mutable tree
 * (struct node), runs the operations on it and serialises it back, so
 * updated fields keep their place and new fields are appended. Array
 * operators work on value views of the serialised array and rebuild it.
 * `modified` is a byte comparison of input and output.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"
#include "query/update_int.h"

#define MAX_BACKFILL 1500000

/* Nesting (and path length) beyond this is refused (mongod allows 100
 * levels in stored documents); it bounds the recursion of the tree code. */
#define MAX_DEPTH 200

/* ---- helpers shared through update_int.h ------------------------------- */

const char *qry_type_name(bson_type_t t)
{
    switch (t) {
        case BSON_TYPE_DOUBLE:
            return "double";
        case BSON_TYPE_UTF8:
            return "string";
        case BSON_TYPE_DOCUMENT:
            return "object";
        case BSON_TYPE_ARRAY:
            return "array";
        case BSON_TYPE_BINARY:
            return "binData";
        case BSON_TYPE_UNDEFINED:
            return "undefined";
        case BSON_TYPE_OID:
            return "objectId";
        case BSON_TYPE_BOOL:
            return "bool";
        case BSON_TYPE_DATE_TIME:
            return "date";
        case BSON_TYPE_NULL:
            return "null";
        case BSON_TYPE_REGEX:
            return "regex";
        case BSON_TYPE_DBPOINTER:
            return "dbPointer";
        case BSON_TYPE_CODE:
            return "javascript";
        case BSON_TYPE_SYMBOL:
            return "symbol";
        case BSON_TYPE_CODEWSCOPE:
            return "javascriptWithScope";
        case BSON_TYPE_INT32:
            return "int";
        case BSON_TYPE_TIMESTAMP:
            return "timestamp";
        case BSON_TYPE_INT64:
            return "long";
        case BSON_TYPE_DECIMAL128:
            return "decimal";
        case BSON_TYPE_MINKEY:
            return "minKey";
        case BSON_TYPE_MAXKEY:
            return "maxKey";
        case BSON_TYPE_EOD:
        default:
            return "missing";
    }
}

struct sbuf
{
    char *p;
    size_t cap;
    size_t len;
    bool full;
};

static void sb_put(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_put(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (s->full) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= s->cap - s->len) {
        s->full = true;
        s->len = s->cap - 1;
        memcpy(s->p + s->cap - 4, "...", 4);
        return;
    }
    s->len += (size_t)n;
}

static void fmt_double(struct sbuf *s, double d)
{
    char tmp[40];

    if (isnan(d)) {
        sb_put(s, "nan.0");
        return;
    }
    if (isinf(d)) {
        sb_put(s, d > 0 ? "inf.0" : "-inf.0");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    if (strpbrk(tmp, ".e") == NULL) {
        sb_put(s, "%s.0", tmp);
    } else {
        sb_put(s, "%s", tmp);
    }
}

static void fmt_rec(struct sbuf *s, const bson_value_t *v, int depth);

static void fmt_container(struct sbuf *s, const bson_value_t *v, int depth)
{
    bson_t d;
    bson_iter_t it;
    bool arr = v->value_type == BSON_TYPE_ARRAY;
    bool first = true;

    if (!bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        sb_put(s, arr ? "[ ? ]" : "{ ? }");
        return;
    }
    if (bson_empty(&d)) {
        sb_put(s, arr ? "[]" : "{}");
        return;
    }
    sb_put(s, arr ? "[ " : "{ ");
    while (bson_iter_next(&it) && !s->full) {
        if (!first) {
            sb_put(s, ", ");
        }
        first = false;
        if (!arr) {
            sb_put(s, "%s: ", bson_iter_key(&it));
        }
        fmt_rec(s, bson_iter_value(&it), depth + 1);
    }
    sb_put(s, arr ? " ]" : " }");
}

static void fmt_rec(struct sbuf *s, const bson_value_t *v, int depth)
{
    char hex[25];

    if (depth > 20) {
        sb_put(s, "...");
        return;
    }
    switch (v->value_type) {
        case BSON_TYPE_DOUBLE:
            fmt_double(s, v->value.v_double);
            break;
        case BSON_TYPE_INT32:
            sb_put(s, "%d", (int)v->value.v_int32);
            break;
        case BSON_TYPE_INT64:
            sb_put(s, "%lld", (long long)v->value.v_int64);
            break;
        case BSON_TYPE_DECIMAL128: {
            char dec[BSON_DECIMAL128_STRING];
            bson_decimal128_to_string(&v->value.v_decimal128, dec);
            sb_put(s, "NumberDecimal(\"%s\")", dec);
            break;
        }
        case BSON_TYPE_UTF8:
            sb_put(s, "\"%.*s\"", (int)v->value.v_utf8.len, v->value.v_utf8.str);
            break;
        case BSON_TYPE_SYMBOL:
            sb_put(s, "\"%.*s\"", (int)v->value.v_symbol.len, v->value.v_symbol.symbol);
            break;
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            fmt_container(s, v, depth);
            break;
        case BSON_TYPE_OID:
            bson_oid_to_string(&v->value.v_oid, hex);
            sb_put(s, "ObjectId('%s')", hex);
            break;
        case BSON_TYPE_BOOL:
            sb_put(s, v->value.v_bool ? "true" : "false");
            break;
        case BSON_TYPE_NULL:
            sb_put(s, "null");
            break;
        case BSON_TYPE_UNDEFINED:
            sb_put(s, "undefined");
            break;
        case BSON_TYPE_DATE_TIME:
            sb_put(s, "new Date(%lld)", (long long)v->value.v_datetime);
            break;
        case BSON_TYPE_TIMESTAMP:
            sb_put(s, "Timestamp(%u, %u)", (unsigned)v->value.v_timestamp.timestamp,
                   (unsigned)v->value.v_timestamp.increment);
            break;
        case BSON_TYPE_REGEX:
            sb_put(s, "/%s/%s", v->value.v_regex.regex, v->value.v_regex.options);
            break;
        case BSON_TYPE_BINARY:
            sb_put(s, "BinData(%d, ...)", (int)v->value.v_binary.subtype);
            break;
        case BSON_TYPE_MINKEY:
            sb_put(s, "MinKey");
            break;
        case BSON_TYPE_MAXKEY:
            sb_put(s, "MaxKey");
            break;
        default:
            sb_put(s, "<%s>", qry_type_name(v->value_type));
            break;
    }
}

void qry_fmt_value(const bson_value_t *v, char *buf, size_t cap)
{
    struct sbuf s = {buf, cap, 0, false};

    buf[0] = '\0';
    fmt_rec(&s, v, 0);
}

static void
merge_pass(char *src, char *dst, size_t n, size_t size, size_t width, qry_cmp_fn cmp, void *ctx)
{
    for (size_t lo = 0; lo < n; lo += 2 * width) {
        size_t mid = lo + width < n ? lo + width : n;
        size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
        size_t i = lo, j = mid, k = lo;
        while (i < mid && j < hi) {
            if (cmp(src + j * size, src + i * size, ctx) < 0) {
                memcpy(dst + k++ * size, src + j++ * size, size);
            } else {
                memcpy(dst + k++ * size, src + i++ * size, size);
            }
        }
        while (i < mid) {
            memcpy(dst + k++ * size, src + i++ * size, size);
        }
        while (j < hi) {
            memcpy(dst + k++ * size, src + j++ * size, size);
        }
    }
}

int qry_stable_sort(void *base, size_t n, size_t size, qry_cmp_fn cmp, void *ctx)
{
    char *tmp, *src = base, *dst;

    if (n < 2) {
        return 0;
    }
    if (size != 0 && n > SIZE_MAX / size) {
        return CAIRN_ENOMEM;
    }
    tmp = malloc(n * size);
    if (tmp == NULL) {
        return CAIRN_ENOMEM;
    }
    dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        char *t;
        merge_pass(src, dst, n, size, width, cmp, ctx);
        t = src;
        src = dst;
        dst = t;
    }
    if (src != base) {
        memcpy(base, src, n * size);
    }
    free(tmp);
    return 0;
}

/* ---- the mutable document tree ----------------------------------------- */

struct node
{
    char *key;          /* owned; array elements carry their index */
    bson_value_t val;   /* scalars: owned copy; containers: only value_type */
    struct node **kids; /* NULL entries are removed fields (documents only) */
    size_t n;
    size_t cap;
    uint32_t *ht; /* name index of large documents: kid index + 1, 0 = free */
    size_t htcap; /* power of two, > 2 * n when ht is set */
};

/* Documents with at least this many fields get a name index. */
#define HASH_MIN 16

static bool is_container(const struct node *nd)
{
    return nd->val.value_type == BSON_TYPE_DOCUMENT || nd->val.value_type == BSON_TYPE_ARRAY;
}

static void node_free(struct node *nd)
{
    if (nd == NULL) {
        return;
    }
    for (size_t i = 0; i < nd->n; i++) {
        node_free(nd->kids[i]);
    }
    free(nd->kids);
    free(nd->ht);
    if (!is_container(nd)) {
        bson_value_destroy(&nd->val);
    }
    free(nd->key);
    free(nd);
}

static struct node *node_new(const char *key)
{
    struct node *nd = calloc(1, sizeof *nd);
    if (nd == NULL) {
        return NULL;
    }
    nd->key = strdup(key);
    if (nd->key == NULL) {
        free(nd);
        return NULL;
    }
    nd->val.value_type = BSON_TYPE_NULL;
    return nd;
}

static int node_set_key(struct node *nd, const char *key)
{
    char *k = strdup(key);
    if (k == NULL) {
        return CAIRN_ENOMEM;
    }
    free(nd->key);
    nd->key = k;
    return 0;
}

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603ULL & SIZE_MAX;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * (1099511628211ULL & SIZE_MAX);
    }
    return h;
}

static void ht_put(struct node *nd, size_t i)
{
    size_t m = nd->htcap - 1, h = name_hash(nd->kids[i]->key) & m;
    while (nd->ht[h] != 0) {
        h = (h + 1) & m;
    }
    nd->ht[h] = (uint32_t)(i + 1);
}

/* Builds the name index; on allocation failure lookups stay linear. */
static void ht_build(struct node *nd)
{
    size_t cap = 64;
    while (cap <= 2 * nd->n) {
        cap *= 2;
    }
    free(nd->ht);
    nd->ht = calloc(cap, sizeof *nd->ht);
    nd->htcap = nd->ht ? cap : 0;
    for (size_t i = 0; nd->ht != NULL && i < nd->n; i++) {
        if (nd->kids[i] != NULL) {
            ht_put(nd, i);
        }
    }
}

/* Appends `kid` (at must be parent->n: children are only ever appended). */
static int kid_insert(struct node *parent, size_t at, struct node *kid)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        struct node **k = realloc(parent->kids, cap * sizeof *k);
        if (k == NULL) {
            return CAIRN_ENOMEM;
        }
        parent->kids = k;
        parent->cap = cap;
    }
    (void)at;
    parent->kids[parent->n++] = kid;
    if (parent->ht != NULL) {
        if (2 * parent->n < parent->htcap && parent->n <= UINT32_MAX - 1) {
            ht_put(parent, parent->n - 1);
        } else {
            free(parent->ht);
            parent->ht = NULL;
            parent->htcap = 0;
        }
    }
    return 0;
}

/* Removes a field of a document (the caller has freed or moved the node):
 * the slot becomes a hole that lookups and serialisation skip. */
static void kid_remove(struct node *parent, size_t at)
{
    parent->kids[at] = NULL;
}

static int node_load(struct node *nd, const uint8_t *data, uint32_t len, int depth);

/* A new node named `key` holding a copy of `v`. */
static int node_from_value_d(const char *key, const bson_value_t *v, struct node **out, int depth)
{
    struct node *nd = node_new(key);
    int rv;

    if (nd == NULL) {
        return CAIRN_ENOMEM;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) {
        nd->val.value_type = v->value_type;
        rv = depth > MAX_DEPTH ? CAIRN_EBADDOC
                               : node_load(nd, v->value.v_doc.data, v->value.v_doc.data_len, depth);
        if (rv != 0) {
            node_free(nd);
            return rv;
        }
    } else {
        bson_value_copy(v, &nd->val);
    }
    *out = nd;
    return 0;
}

static int node_from_value(const char *key, const bson_value_t *v, struct node **out)
{
    return node_from_value_d(key, v, out, 0);
}

static int node_load(struct node *nd, const uint8_t *data, uint32_t len, int depth)
{
    bson_t d;
    bson_iter_t it;

    if (!bson_init_static(&d, data, len) || !bson_iter_init(&it, &d)) {
        return CAIRN_EBADDOC;
    }
    while (bson_iter_next(&it)) {
        struct node *kid;
        int rv = node_from_value_d(bson_iter_key(&it), bson_iter_value(&it), &kid, depth + 1);
        if (rv != 0) {
            return rv;
        }
        rv = kid_insert(nd, nd->n, kid);
        if (rv != 0) {
            node_free(kid);
            return rv;
        }
    }
    return 0;
}

static void node_append_to(bson_t *b, const char *key, const struct node *nd);

/* Serialises the children of container `nd` into `b`. */
static void node_write_kids(bson_t *b, const struct node *nd)
{
    bool arr = nd->val.value_type == BSON_TYPE_ARRAY;
    char ibuf[16];

    for (size_t i = 0; i < nd->n; i++) {
        const char *key;
        if (nd->kids[i] == NULL) {
            continue;
        }
        key = nd->kids[i]->key;
        if (arr) {
            const char *k;
            bson_uint32_to_string((uint32_t)i, &k, ibuf, sizeof ibuf);
            key = k;
        }
        node_append_to(b, key, nd->kids[i]);
    }
}

static void node_append_to(bson_t *b, const char *key, const struct node *nd)
{
    bson_t child;

    if (nd->val.value_type == BSON_TYPE_DOCUMENT) {
        bson_append_document_begin(b, key, -1, &child);
        node_write_kids(&child, nd);
        bson_append_document_end(b, &child);
    } else if (nd->val.value_type == BSON_TYPE_ARRAY) {
        bson_append_array_begin(b, key, -1, &child);
        node_write_kids(&child, nd);
        bson_append_array_end(b, &child);
    } else {
        bson_append_value(b, key, -1, &nd->val);
    }
}

/* A value view of `nd`; containers are serialised into `tmp` (initialised
 * here, destroyed by the caller with bson_destroy). */
static void node_view(const struct node *nd, bson_t *tmp, bson_value_t *out)
{
    bson_init(tmp);
    if (is_container(nd)) {
        node_write_kids(tmp, nd);
        out->value_type = nd->val.value_type;
        out->value.v_doc.data = (uint8_t *)bson_get_data(tmp);
        out->value.v_doc.data_len = tmp->len;
    } else {
        *out = nd->val;
    }
}

static long kid_find(struct node *nd, const char *name)
{
    if (nd->n >= HASH_MIN && nd->ht == NULL) {
        ht_build(nd);
    }
    if (nd->ht != NULL) {
        size_t m = nd->htcap - 1, h = name_hash(name) & m;
        for (; nd->ht[h] != 0; h = (h + 1) & m) {
            struct node *k = nd->kids[nd->ht[h] - 1];
            if (k != NULL && strcmp(k->key, name) == 0) {
                return (long)(nd->ht[h] - 1);
            }
        }
        return -1;
    }
    for (size_t i = 0; i < nd->n; i++) {
        if (nd->kids[i] != NULL && strcmp(nd->kids[i]->key, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* Parses an array index component (digits only). -1 when not numeric. */
static long parse_index(const char *s)
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

/* ---- paths ------------------------------------------------------------- */

struct path
{
    char *full;
    char **parts;
    size_t n;
};

static void path_free(struct path *p)
{
    free(p->full);
    if (p->parts != NULL) {
        free(p->parts[0]);
    }
    free(p->parts);
    memset(p, 0, sizeof *p);
}

/* Splits `s` into components. Returns 0, or 1 when a component is empty. */
static int path_split(const char *s, struct path *out)
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
        path_free(out);
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
    return n > MAX_DEPTH ? -2 : 0;
}

/* True for an array filter component "$[]" or "$[<identifier>]". */
static bool is_af_ident(const char *c)
{
    size_t n = strlen(c);
    return n >= 2 + 1 && c[0] == '$' && c[1] == '[' && c[n - 1] == ']';
}

/* One parsed entry of the arrayFilters option. */
struct afilter
{
    char *id; /* the identifier (the filter's top-level field name) */
    struct qry_matcher *m;
    bool used;
};

struct af_set
{
    struct afilter *v;
    size_t n;
};

static struct afilter *af_find(const struct af_set *afs, const char *id, size_t len)
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
static int update_path(const char *s,
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
    rv = path_split(s, out);
    if (rv == CAIRN_ENOMEM) {
        return cairn_error_setf(err, rv, "out of memory");
    }
    if (rv == -2) {
        path_free(out);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The update path '%.60s...' has too many components", s);
    }
    if (rv != 0) {
        path_free(out);
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
        } else if (c[0] == '$' && !is_af_ident(c)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_DollarPrefixedFieldName,
                                   "The dollar ($) prefixed field '%s' in '%s' is not valid for "
                                   "storage.",
                                   c, s);
            path_free(out);
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
        if (!is_af_ident(c)) {
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
        af = af_find(afs, c + 2, idlen);
        if (af == NULL) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                   "No array filter found for identifier '%.*s' in path '%s'",
                                   (int)idlen, c + 2, s);
            break;
        }
        af->used = true;
    }
    if (rv != 0) {
        path_free(out);
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
static int path_order(const struct path *a, const struct path *b)
{
    size_t n = a->n < b->n ? a->n : b->n;

    for (size_t i = 0; i < n; i++) {
        long ia = parse_index(a->parts[i]), ib = parse_index(b->parts[i]);
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
static void path_prefix_str(const struct path *p, size_t n, char *buf, size_t cap)
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
static bool path_is_prefix(const struct path *a, const struct path *b)
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

/* ---- compiled update --------------------------------------------------- */

enum op_kind {
    OP_SET,
    OP_SETONINSERT,
    OP_UNSET,
    OP_INC,
    OP_MUL,
    OP_MIN,
    OP_MAX,
    OP_RENAME,
    OP_PUSH,
    OP_ADDTOSET,
    OP_PULL,
    OP_PULLALL,
    OP_POP,
    OP_CURDATE,
};

static const struct
{
    const char *name;
    enum op_kind kind;
} op_names[] = {
    {"$set", OP_SET},     {"$setOnInsert", OP_SETONINSERT},
    {"$unset", OP_UNSET}, {"$inc", OP_INC},
    {"$mul", OP_MUL},     {"$min", OP_MIN},
    {"$max", OP_MAX},     {"$rename", OP_RENAME},
    {"$push", OP_PUSH},   {"$addToSet", OP_ADDTOSET},
    {"$pull", OP_PULL},   {"$pullAll", OP_PULLALL},
    {"$pop", OP_POP},     {"$currentDate", OP_CURDATE},
};

enum pull_mode { PULL_EQ, PULL_VALUE, PULL_DOC };
enum sort_mode { PSORT_NONE, PSORT_WHOLE, PSORT_FIELDS };

struct op
{
    enum op_kind kind;
    const char *opname;
    struct path path; /* $rename: the source */
    struct path to;   /* $rename: the target */
    bson_value_t arg; /* view into qry_update.spec */
    /* $push / $addToSet */
    bson_value_t each; /* an array view when has_each */
    bool has_each;
    bool has_slice;
    int64_t slice;
    bool has_pos;
    int64_t pos;
    enum sort_mode sort;
    int sort_dir;
    struct qry_sort *sort_spec;
    /* $pull */
    enum pull_mode pull;
    struct qry_matcher *matcher;
    /* $pop */
    int pop_dir;
    /* $currentDate */
    bool timestamp;
    /* positional components in `path`: any ("$", "$[]", "$[<id>]"), and "$" */
    bool dynamic;
    bool dollar;
};

struct qry_update
{
    bson_t *spec;
    bool replacement;
    struct op *ops;
    size_t n_ops;
    struct af_set afs; /* the arrayFilters option, by identifier */
    bool dynamic;      /* some op path has a positional component */
    bool dollar;       /* some op path has "$" */
};

bool qry_update_is_replacement(const struct qry_update *u)
{
    return u->replacement;
}

static void op_clear(struct op *o)
{
    path_free(&o->path);
    path_free(&o->to);
    if (o->sort_spec != NULL) {
        qry_sort_free(o->sort_spec);
    }
    if (o->matcher != NULL) {
        qry_matcher_free(o->matcher);
    }
}

void qry_update_free(struct qry_update *u)
{
    if (u == NULL) {
        return;
    }
    for (size_t i = 0; i < u->n_ops; i++) {
        op_clear(&u->ops[i]);
    }
    free(u->ops);
    for (size_t i = 0; i < u->afs.n; i++) {
        free(u->afs.v[i].id);
        qry_matcher_free(u->afs.v[i].m);
    }
    free(u->afs.v);
    if (u->spec != NULL) {
        bson_destroy(u->spec);
    }
    free(u);
}

static bool is_number(bson_type_t t)
{
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
           t == BSON_TYPE_DECIMAL128;
}

/* An integral number that fits int64 (doubles must be whole). */
static bool as_int64(const bson_value_t *v, int64_t *out)
{
    switch (v->value_type) {
        case BSON_TYPE_INT32:
            *out = v->value.v_int32;
            return true;
        case BSON_TYPE_INT64:
            *out = v->value.v_int64;
            return true;
        case BSON_TYPE_DOUBLE: {
            double d = v->value.v_double;
            if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18) {
                return false;
            }
            *out = (int64_t)d;
            return true;
        }
        default:
            return false;
    }
}

static void fmt_field(char *buf, size_t cap, const char *key, const bson_value_t *v)
{
    char val[200];
    qry_fmt_value(v, val, sizeof val);
    snprintf(buf, cap, "%s: %s", key, val);
}

static int bad_arg_type(struct cairn_error *err,
                        const char *what,
                        const char *key,
                        const bson_value_t *v)
{
    char f[200];
    fmt_field(f, sizeof f, key, v);
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "Cannot %s with non-numeric argument: {%s}", what, f);
}

static bool is_operator_doc(const bson_value_t *v)
{
    bson_t d;
    bson_iter_t it;

    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d) || !bson_iter_next(&it)) {
        return false;
    }
    return bson_iter_key(&it)[0] == '$';
}

/* $pull: an operator document whose first key is a field operator (not a
 * logical one) tests elements as values; other documents are queries on
 * document elements. */
static bool pull_is_value_condition(const bson_value_t *v)
{
    bson_t d;
    bson_iter_t it;
    const char *k;

    if (!is_operator_doc(v) ||
        !bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d) || !bson_iter_next(&it)) {
        return false;
    }
    k = bson_iter_key(&it);
    return strcmp(k, "$and") != 0 && strcmp(k, "$or") != 0 && strcmp(k, "$nor") != 0 &&
           strcmp(k, "$where") != 0 && strcmp(k, "$expr") != 0 && strcmp(k, "$text") != 0 &&
           strcmp(k, "$comment") != 0;
}

static int parse_push_sort(struct op *o, const bson_value_t *v, struct cairn_error *err)
{
    int64_t d;

    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_t spec;
        bson_iter_t it;
        bool any = false;
        if (!bson_init_static(&spec, v->value.v_doc.data, v->value.v_doc.data_len) ||
            !bson_iter_init(&it, &spec)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "The $sort is invalid");
        }
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            any = true;
            if (k[0] == '\0' || k[0] == '.' || k[strlen(k) - 1] == '.' || strstr(k, "..")) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The $sort field is a dotted field but has an empty part: "
                                         "%s",
                                         k);
            }
            if (k[0] == '$') {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The $sort is invalid: use 1/-1 to sort the whole "
                                         "element, or {field:1/-1} to sort embedded fields");
            }
        }
        if (!any) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "The $sort pattern is empty when it should be a set of "
                                     "fields.");
        }
        if (qry_sort_compile(&spec, &o->sort_spec, err) != 0) {
            err->mongo_code = MONGO_BadValue;
            return err->code;
        }
        o->sort = PSORT_FIELDS;
        return 0;
    }
    if (!as_int64(v, &d) || (d != 1 && d != -1)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The $sort is invalid: use 1/-1 to sort the whole element, or "
                                 "{field:1/-1} to sort embedded fields");
    }
    o->sort = PSORT_WHOLE;
    o->sort_dir = (int)d;
    return 0;
}

static int parse_each_mods(struct op *o, struct cairn_error *err)
{
    bson_t d;
    bson_iter_t it;
    bool push = o->kind == OP_PUSH;

    if (!bson_init_static(&d, o->arg.value.v_doc.data, o->arg.value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "invalid %s argument",
                                 o->opname);
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "$each") == 0) {
            if (v->value_type != BSON_TYPE_ARRAY) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         push ? "The argument to $each in $push must be an array "
                                                "but it was of type: %s"
                                              : "The argument to $each in $addToSet must be an "
                                                "array but it was of type %s",
                                         qry_type_name(v->value_type));
            }
            o->has_each = true;
            o->each = *v;
        } else if (push && strcmp(k, "$slice") == 0) {
            if (!is_number(v->value_type)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The value for $slice must be an integer value but was "
                                         "given type: %s",
                                         qry_type_name(v->value_type));
            }
            if (!as_int64(v, &o->slice)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The $slice value in $push must be an integer value");
            }
            o->has_slice = true;
        } else if (push && strcmp(k, "$position") == 0) {
            if (!is_number(v->value_type)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The value for $position must be an integer value, not "
                                         "of type: %s",
                                         qry_type_name(v->value_type));
            }
            if (!as_int64(v, &o->pos)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The $position value in $push must be an integer value");
            }
            o->has_pos = true;
        } else if (push && strcmp(k, "$sort") == 0) {
            int rv = parse_push_sort(o, v, err);
            if (rv != 0) {
                return rv;
            }
        } else if (push) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Unrecognized clause in $push: %s", k);
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Found unexpected fields after $each in $addToSet: %s", k);
        }
    }
    return 0;
}

static int parse_op_arg(struct op *o, const char *key, struct af_set *afs, struct cairn_error *err)
{
    const bson_value_t *v = &o->arg;
    int64_t d;
    char f[200];

    switch (o->kind) {
        case OP_INC:
        case OP_MUL:
            if (!is_number(v->value_type)) {
                return bad_arg_type(err, o->kind == OP_INC ? "increment" : "multiply", key, v);
            }
            return 0;
        case OP_RENAME: {
            struct path *to = &o->to;
            int rv;
            if (v->value_type != BSON_TYPE_UTF8) {
                fmt_field(f, sizeof f, key, v);
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The 'to' field for $rename must be a string: %s", f);
            }
            if (strlen(v->value.v_utf8.str) != v->value.v_utf8.len) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The 'to' field for $rename contains a NUL byte");
            }
            bool to_dynamic;
            rv = update_path(v->value.v_utf8.str, to, afs, &to_dynamic, err);
            if (rv != 0) {
                return rv;
            }
            if (o->dynamic) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The source field for $rename may not be dynamic: %s",
                                         o->path.full);
            }
            if (to_dynamic) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The destination field for $rename may not be dynamic: %s",
                                         to->full);
            }
            fmt_field(f, sizeof f, key, v);
            if (strcmp(to->full, o->path.full) == 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The source and target field for $rename must differ: %s",
                                         f);
            }
            if (path_is_prefix(to, &o->path) || path_is_prefix(&o->path, to)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The source and target field for $rename must not be on "
                                         "the same path: %s",
                                         f);
            }
            return 0;
        }
        case OP_PUSH:
        case OP_ADDTOSET:
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t d2;
                bson_iter_t it;
                if (bson_init_static(&d2, v->value.v_doc.data, v->value.v_doc.data_len) &&
                    bson_iter_init_find(&it, &d2, "$each")) {
                    return parse_each_mods(o, err);
                }
                if (is_operator_doc(v)) {
                    bson_iter_init(&it, &d2);
                    bson_iter_next(&it);
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_DollarPrefixedFieldName,
                                             "The dollar ($) prefixed field '%s' in '%s.%s' is not "
                                             "valid for storage.",
                                             bson_iter_key(&it), key, bson_iter_key(&it));
                }
            }
            return 0;
        case OP_PULL:
            if (v->value_type == BSON_TYPE_DOCUMENT && !pull_is_value_condition(v)) {
                bson_t q;
                if (!bson_init_static(&q, v->value.v_doc.data, v->value.v_doc.data_len)) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                             "invalid $pull argument");
                }
                o->pull = PULL_DOC;
                return qry_matcher_compile(&q, &o->matcher, err);
            }
            if (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_REGEX) {
                o->pull = PULL_VALUE;
                return qry_matcher_compile_value(v, &o->matcher, err);
            }
            o->pull = PULL_EQ;
            return 0;
        case OP_PULLALL:
            if (v->value_type != BSON_TYPE_ARRAY) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "$pullAll requires an array argument but was given a %s",
                                         qry_type_name(v->value_type));
            }
            return 0;
        case OP_POP:
            if (!as_int64(v, &d) || (d != 1 && d != -1)) {
                qry_fmt_value(v, f, sizeof f);
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "$pop expects 1 or -1, found: %s", f);
            }
            o->pop_dir = (int)d;
            return 0;
        case OP_CURDATE:
            if (v->value_type == BSON_TYPE_BOOL) {
                return 0;
            }
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t d2;
                bson_iter_t it;
                if (bson_init_static(&d2, v->value.v_doc.data, v->value.v_doc.data_len) &&
                    bson_iter_init(&it, &d2)) {
                    bool ok = false;
                    while (bson_iter_next(&it)) {
                        const char *k = bson_iter_key(&it);
                        const char *s;
                        if (strcmp(k, "$type") != 0 || !BSON_ITER_HOLDS_UTF8(&it)) {
                            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                                     "The only valid field of the option is "
                                                     "'$type': {$type: 'date/timestamp'}");
                        }
                        s = bson_iter_utf8(&it, NULL);
                        if (strcmp(s, "timestamp") == 0) {
                            o->timestamp = true;
                        } else if (strcmp(s, "date") != 0) {
                            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                                     "The '$type' string field is required to be "
                                                     "'date' or 'timestamp': {$currentDate: "
                                                     "{field : {$type: 'date'}}}");
                        }
                        ok = true;
                    }
                    if (ok) {
                        return 0;
                    }
                }
            }
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "%s is not valid type for $currentDate. Please use a boolean "
                                     "('true') or a $type expression ({$type: 'timestamp/date'}).",
                                     qry_type_name(v->value_type));
        default:
            return 0;
    }
}

static int op_cmp(const void *a, const void *b, void *ctx)
{
    const struct op *x = a, *y = b;
    const struct path *px = x->kind == OP_RENAME ? &x->to : &x->path;
    const struct path *py = y->kind == OP_RENAME ? &y->to : &y->path;
    (void)ctx;
    return path_order(px, py);
}

struct pref
{
    const struct path *p;
    size_t seq; /* order of appearance in the update document */
};

static int pref_cmp(const void *a, const void *b, void *ctx)
{
    const struct pref *x = a, *y = b;
    int c = path_order(x->p, y->p);
    (void)ctx;
    if (c != 0) {
        return c;
    }
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Rejects paths that are equal or prefixes of each other. Sorting puts a
 * prefix right before the paths it prefixes, so adjacent pairs suffice:
 * O(n log n) however large the update. The message names the path that
 * came later in the update and the shorter path, as mongod does. */
static int check_conflicts(const struct qry_update *u, struct cairn_error *err)
{
    struct pref *v;
    size_t n = 0;
    int rv = 0;

    if (u->n_ops < 2) {
        return 0;
    }
    v = calloc(u->n_ops * 2, sizeof *v);
    if (v == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < u->n_ops; i++) {
        v[n].p = &u->ops[i].path;
        v[n].seq = n;
        n++;
        if (u->ops[i].kind == OP_RENAME) {
            v[n].p = &u->ops[i].to;
            v[n].seq = n;
            n++;
        }
    }
    rv = qry_stable_sort(v, n, sizeof *v, pref_cmp, NULL);
    if (rv != 0) {
        free(v);
        return cairn_error_setf(err, rv, "out of memory");
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const struct pref *later = v[i].seq > v[i + 1].seq ? &v[i] : &v[i + 1];
        size_t l = 0;
        if (path_is_prefix(v[i].p, v[i + 1].p)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConflictingUpdateOperators,
                                   "Updating the path '%s' would create a conflict at '%s'",
                                   later->p->full, v[i].p->full);
            break;
        }
        /* mongod's update tree: below a common prefix the next components
         * must all be array filters ("$[...]": an array node) or all not. */
        while (l < v[i].p->n && l < v[i + 1].p->n &&
               strcmp(v[i].p->parts[l], v[i + 1].p->parts[l]) == 0) {
            l++;
        }
        if (l > 0 && l < v[i].p->n && l < v[i + 1].p->n &&
            is_af_ident(v[i].p->parts[l]) != is_af_ident(v[i + 1].p->parts[l])) {
            char at[512];
            path_prefix_str(v[i].p, l, at, sizeof at);
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConflictingUpdateOperators,
                                   "Updating the path '%s' would create a conflict at '%s'",
                                   later->p->full, at);
            break;
        }
    }
    free(v);
    return rv;
}

static int compile_replacement(struct qry_update *u, struct cairn_error *err)
{
    bson_iter_t it;

    if (!bson_iter_init(&it, u->spec)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid update document");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                     "The dollar ($) prefixed field '%s' in '%s' is not allowed in "
                                     "the context of an update's replacement document. Consider "
                                     "using an aggregation pipeline with $replaceWith.",
                                     k, k);
        }
    }
    u->replacement = true;
    return 0;
}

/* Prefixes err's message as mongod's Status::withContext does. */
static int af_context(struct cairn_error *err)
{
    char tmp[sizeof err->msg];

    if (err == NULL) {
        return CAIRN_EINVAL;
    }
    memcpy(tmp, err->msg, sizeof tmp);
    tmp[sizeof tmp - 1] = '\0';
    return cairn_error_mongo(err, err->code, err->mongo_code,
                             "Error parsing array filter :: caused by :: %s", tmp);
}

/* Finds the single top-level field name of an array filter (through $and,
 * $or and $nor, as mongod's parseTopLevelFieldName). */
static int af_placeholder(const bson_t *f,
                          char *name,
                          size_t cap,
                          int depth,
                          struct cairn_error *err)
{
    bson_iter_t it;

    if (depth > 100 || !bson_iter_init(&it, f)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "array filter nested too deeply");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$') {
            bson_iter_t arr;
            if ((strcmp(k, "$and") != 0 && strcmp(k, "$or") != 0 && strcmp(k, "$nor") != 0) ||
                !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) {
                continue;
            }
            while (bson_iter_next(&arr)) {
                const uint8_t *data;
                uint32_t len;
                bson_t sub;
                int rv;
                if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
                    continue;
                }
                bson_iter_document(&arr, &len, &data);
                if (!bson_init_static(&sub, data, len)) {
                    continue;
                }
                rv = af_placeholder(&sub, name, cap, depth + 1, err);
                if (rv != 0) {
                    return rv;
                }
            }
            continue;
        }
        {
            const char *dot = strchr(k, '.');
            size_t n = dot ? (size_t)(dot - k) : strlen(k);
            if (name[0] == '\0') {
                snprintf(name, cap, "%.*s", (int)n, k);
            } else if (strlen(name) != n || memcmp(name, k, n) != 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "Error parsing array filter :: caused by :: Expected a "
                                         "single top-level field name, found '%s' and '%.*s'",
                                         name, (int)n, k);
            }
        }
    }
    return 0;
}

/* Parses the arrayFilters option (an array of documents) into u->afs, as
 * mongod's parsedUpdateArrayFilters. */
static int parse_array_filters(struct qry_update *u, const bson_t *afs, struct cairn_error *err)
{
    bson_iter_t it;
    size_t cap = 0;

    if (!bson_iter_init(&it, afs)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid arrayFilters");
    }
    while (bson_iter_next(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_t f;
        char name[256] = "";
        struct qry_matcher *m = NULL;
        int rv;
        bool ok = true;

        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field 'arrayFilters.%s' is the wrong type '%s', "
                                     "expected type 'object'",
                                     bson_iter_key(&it), qry_type_name(bson_iter_type(&it)));
        }
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&f, data, len)) {
            return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid array filter");
        }
        if (qry_matcher_compile(&f, &m, err) != 0) {
            return af_context(err);
        }
        rv = af_placeholder(&f, name, sizeof name, 0, err);
        if (rv == 0 && name[0] != '\0') {
            ok = name[0] >= 'a' && name[0] <= 'z';
            for (const char *c = name; ok && *c; c++) {
                ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9');
            }
            if (!ok) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                       "Error parsing array filter :: caused by :: The top-level "
                                       "field name must be an alphanumeric string beginning with "
                                       "a lowercase letter, found '%s'",
                                       name);
            }
        }
        if (rv == 0 && name[0] == '\0') {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                   "Cannot use an expression without a top-level field name in "
                                   "arrayFilters");
        }
        if (rv == 0 && af_find(&u->afs, name, strlen(name)) != NULL) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                   "Found multiple array filters with the same top-level field "
                                   "name %s",
                                   name);
        }
        if (rv == 0 && u->afs.n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            struct afilter *nv = realloc(u->afs.v, ncap * sizeof *nv);
            if (nv == NULL) {
                rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            } else {
                u->afs.v = nv;
                cap = ncap;
            }
        }
        if (rv == 0) {
            char *id = strdup(name);
            if (id == NULL) {
                rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            } else {
                u->afs.v[u->afs.n].id = id;
                u->afs.v[u->afs.n].m = m;
                u->afs.v[u->afs.n].used = false;
                u->afs.n++;
                m = NULL;
            }
        }
        if (m != NULL) {
            qry_matcher_free(m);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int qry_update_compile(const bson_t *update, struct qry_update **out, struct cairn_error *err)
{
    return qry_update_compile_af(update, NULL, out, err);
}

bool qry_update_needs_match_pos(const struct qry_update *u)
{
    return u->dollar;
}

int qry_update_compile_af(const bson_t *update,
                          const bson_t *array_filters,
                          struct qry_update **out,
                          struct cairn_error *err)
{
    struct qry_update *u;
    bson_iter_t top;
    int rv = 0;
    size_t cap = 0;

    *out = NULL;
    u = calloc(1, sizeof *u);
    if (u == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    if (array_filters != NULL) {
        rv = parse_array_filters(u, array_filters, err);
        if (rv != 0) {
            qry_update_free(u);
            return rv;
        }
    }
    u->spec = bson_copy(update);
    if (u->spec == NULL || !bson_iter_init(&top, u->spec)) {
        qry_update_free(u);
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid update document");
    }
    if (!bson_iter_next(&top) || bson_iter_key(&top)[0] != '$') {
        rv = compile_replacement(u, err);
        goto done;
    }
    bson_iter_init(&top, u->spec);
    while (rv == 0 && bson_iter_next(&top)) {
        const char *opname = bson_iter_key(&top);
        bson_iter_t fields;
        size_t k;
        char f[200];

        for (k = 0; k < sizeof op_names / sizeof op_names[0]; k++) {
            if (strcmp(op_names[k].name, opname) == 0) {
                break;
            }
        }
        if (k == sizeof op_names / sizeof op_names[0]) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                   "Unknown modifier: %s. Expected a valid update modifier or "
                                   "pipeline-style update specified as an array",
                                   opname);
            break;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&top)) {
            qry_fmt_value(bson_iter_value(&top), f, sizeof f);
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                   "Modifiers operate on fields but we found type %s instead. For "
                                   "example: {$mod: {<field>: ...}} not {%s: %s}",
                                   qry_type_name(bson_iter_type(&top)), opname, f);
            break;
        }
        if (!bson_iter_recurse(&top, &fields)) {
            rv = cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid update document");
            break;
        }
        while (bson_iter_next(&fields)) {
            struct op *o;
            if (u->n_ops == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                struct op *n = realloc(u->ops, ncap * sizeof *n);
                if (n == NULL) {
                    rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
                    break;
                }
                u->ops = n;
                cap = ncap;
            }
            o = &u->ops[u->n_ops];
            memset(o, 0, sizeof *o);
            o->kind = op_names[k].kind;
            o->opname = op_names[k].name;
            o->arg = *bson_iter_value(&fields);
            rv = update_path(bson_iter_key(&fields), &o->path, &u->afs, &o->dynamic, err);
            if (rv == 0) {
                for (size_t i = 0; i < o->path.n; i++) {
                    o->dollar = o->dollar || strcmp(o->path.parts[i], "$") == 0;
                }
                u->dynamic = u->dynamic || o->dynamic;
                u->dollar = u->dollar || o->dollar;
                rv = parse_op_arg(o, bson_iter_key(&fields), &u->afs, err);
            }
            if (rv != 0) {
                op_clear(o);
                break;
            }
            u->n_ops++;
        }
    }
    if (rv == 0) {
        rv = check_conflicts(u, err);
    }
    for (size_t i = 0; rv == 0 && i < u->afs.n; i++) {
        if (!u->afs.v[i].used) {
            char f[200];
            bson_value_t v;
            v.value_type = BSON_TYPE_DOCUMENT;
            v.value.v_doc.data = (uint8_t *)bson_get_data(u->spec);
            v.value.v_doc.data_len = u->spec->len;
            qry_fmt_value(&v, f, sizeof f);
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                   "The array filter for identifier '%s' was not used in the "
                                   "update %s",
                                   u->afs.v[i].id, f);
        }
    }
    if (rv == 0 && u->n_ops > 1) {
        rv = qry_stable_sort(u->ops, u->n_ops, sizeof *u->ops, op_cmp, NULL);
        if (rv != 0) {
            cairn_error_setf(err, rv, "out of memory");
        }
    }
done:
    if (rv != 0) {
        qry_update_free(u);
        return rv;
    }
    *out = u;
    return 0;
}

/* ---- applying ---------------------------------------------------------- */

struct apply_ctx
{
    const bson_t *doc;
    char id[160]; /* "{_id: ...}" of the original document */
    char id_val[160];
    int64_t now_ms;
    struct cairn_error *err;
};

enum { WALK_MISSING = -1, WALK_ARRAY = -2 };

/* Walks `p` to the parent of its last component. With `create`, missing
 * components become empty documents (and array indexes are backfilled with
 * nulls); without it, a missing or non-traversable component returns
 * WALK_MISSING. With `no_arrays`, meeting an array returns WALK_ARRAY and
 * *parent is that array. On success *parent is a container and *idx the
 * leaf's index in it, or -1 when the leaf is absent. */
static int walk(struct apply_ctx *c,
                struct node *root,
                const struct path *p,
                bool create,
                bool no_arrays,
                struct node **parent,
                long *idx)
{
    struct node *cur = root;
    char f[220];

    for (size_t i = 0;; i++) {
        const char *comp = p->parts[i];
        long at;
        bool arr = cur->val.value_type == BSON_TYPE_ARRAY;

        if (arr && no_arrays) {
            *parent = cur;
            return WALK_ARRAY;
        }
        if (arr) {
            at = parse_index(comp);
            if (at < 0) {
                if (!create) {
                    return WALK_MISSING;
                }
                bson_t tmp;
                bson_value_t v;
                node_view(cur, &tmp, &v);
                fmt_field(f, sizeof f, cur->key, &v);
                bson_destroy(&tmp);
                return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_PathNotViable,
                                         "Cannot create field '%s' in element {%s}", comp, f);
            }
            if ((size_t)at >= cur->n) {
                at = -1;
            }
        } else {
            at = kid_find(cur, comp);
        }
        if (i + 1 == p->n) {
            *parent = cur;
            *idx = at;
            return 0;
        }
        if (at < 0) {
            struct node *nd;
            int rv;
            if (!create) {
                return WALK_MISSING;
            }
            if (arr) {
                long want = parse_index(comp);
                if (want >= MAX_BACKFILL) {
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "can't backfill array to larger than %d elements",
                                             MAX_BACKFILL);
                }
                while ((long)cur->n < want) {
                    char ib[24];
                    snprintf(ib, sizeof ib, "%zu", cur->n);
                    nd = node_new(ib);
                    if (nd == NULL || kid_insert(cur, cur->n, nd) != 0) {
                        node_free(nd);
                        return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
                    }
                }
            }
            nd = node_new(comp);
            if (nd == NULL) {
                return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
            }
            nd->val.value_type = BSON_TYPE_DOCUMENT;
            rv = kid_insert(cur, cur->n, nd);
            if (rv != 0) {
                node_free(nd);
                return cairn_error_setf(c->err, rv, "out of memory");
            }
            cur = nd;
            continue;
        }
        if (!is_container(cur->kids[at])) {
            if (!create) {
                return WALK_MISSING;
            }
            fmt_field(f, sizeof f, cur->kids[at]->key, &cur->kids[at]->val);
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_PathNotViable,
                                     "Cannot create field '%s' in element {%s}", p->parts[i + 1],
                                     f);
        }
        cur = cur->kids[at];
    }
}

/* Puts `nd` at the leaf: replaces kids[idx] when idx >= 0, else appends
 * (documents) or backfills and appends (arrays). Takes ownership. */
static int put_leaf(struct apply_ctx *c,
                    struct node *parent,
                    long idx,
                    const char *name,
                    struct node *nd)
{
    int rv;

    if (idx >= 0) {
        rv = node_set_key(nd, parent->kids[idx]->key);
        if (rv != 0) {
            node_free(nd);
            return cairn_error_setf(c->err, rv, "out of memory");
        }
        node_free(parent->kids[idx]);
        parent->kids[idx] = nd;
        return 0;
    }
    if (parent->val.value_type == BSON_TYPE_ARRAY) {
        long want = parse_index(name);
        if (want >= MAX_BACKFILL) {
            node_free(nd);
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "can't backfill array to larger than %d elements",
                                     MAX_BACKFILL);
        }
        while ((long)parent->n < want) {
            char ib[24];
            struct node *pad;
            snprintf(ib, sizeof ib, "%zu", parent->n);
            pad = node_new(ib);
            if (pad == NULL || kid_insert(parent, parent->n, pad) != 0) {
                node_free(pad);
                node_free(nd);
                return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
            }
        }
    }
    rv = node_set_key(nd, name);
    if (rv == 0) {
        rv = kid_insert(parent, parent->n, nd);
    }
    if (rv != 0) {
        node_free(nd);
        return cairn_error_setf(c->err, rv, "out of memory");
    }
    return 0;
}

static int put_value(struct apply_ctx *c,
                     struct node *parent,
                     long idx,
                     const char *name,
                     const bson_value_t *v)
{
    struct node *nd;
    int rv = node_from_value(name, v, &nd);
    if (rv == CAIRN_EBADDOC) {
        return cairn_error_mongo(c->err, rv, 15, "value for '%s' is invalid or nested too deeply",
                                 name);
    }
    if (rv != 0) {
        return cairn_error_setf(c->err, rv, "out of memory");
    }
    return put_leaf(c, parent, idx, name, nd);
}

static const char *leaf_name(const struct path *p)
{
    return p->parts[p->n - 1];
}

/* Number arithmetic with mongod's promotion rules. */
static int arith(struct apply_ctx *c,
                 const struct op *o,
                 const bson_value_t *cur,
                 const bson_value_t *arg,
                 bson_value_t *res)
{
    bool mul = o->kind == OP_MUL;

    if (cur->value_type == BSON_TYPE_DECIMAL128 || arg->value_type == BSON_TYPE_DECIMAL128) {
        return cairn_error_mongo(c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                 "%s on decimal128 values is not supported", o->opname);
    }
    if (cur->value_type == BSON_TYPE_DOUBLE || arg->value_type == BSON_TYPE_DOUBLE) {
        double a = qry_number_as_double(cur), b = qry_number_as_double(arg);
        res->value_type = BSON_TYPE_DOUBLE;
        res->value.v_double = mul ? a * b : a + b;
        return 0;
    }
    {
        int64_t a = cur->value_type == BSON_TYPE_INT32 ? cur->value.v_int32 : cur->value.v_int64;
        int64_t b = arg->value_type == BSON_TYPE_INT32 ? arg->value.v_int32 : arg->value.v_int64;
        int64_t r;
        bool ovf = mul ? __builtin_mul_overflow(a, b, &r) : __builtin_add_overflow(a, b, &r);
        if (ovf) {
            char f[160];
            qry_fmt_value(cur, f, sizeof f);
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Failed to apply %s operations to current value (%s) for "
                                     "document %s",
                                     o->opname, f, c->id);
        }
        if (cur->value_type == BSON_TYPE_INT32 && arg->value_type == BSON_TYPE_INT32 &&
            r >= INT32_MIN && r <= INT32_MAX) {
            res->value_type = BSON_TYPE_INT32;
            res->value.v_int32 = (int32_t)r;
        } else {
            res->value_type = BSON_TYPE_INT64;
            res->value.v_int64 = r;
        }
    }
    return 0;
}

static int apply_arith(struct apply_ctx *c, const struct op *o, struct node *parent, long idx)
{
    bson_value_t res;
    int rv;

    if (idx < 0) {
        if (o->kind == OP_INC) {
            return put_value(c, parent, idx, leaf_name(&o->path), &o->arg);
        }
        res.value_type = o->arg.value_type;
        if (res.value_type == BSON_TYPE_INT32) {
            res.value.v_int32 = 0;
        } else if (res.value_type == BSON_TYPE_INT64) {
            res.value.v_int64 = 0;
        } else if (res.value_type == BSON_TYPE_DOUBLE) {
            res.value.v_double = 0.0;
        } else {
            return cairn_error_mongo(c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                     "$mul on decimal128 values is not supported");
        }
        return put_value(c, parent, idx, leaf_name(&o->path), &res);
    }
    {
        struct node *nd = parent->kids[idx];
        if (!is_number(nd->val.value_type)) {
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "Cannot apply %s to a value of non-numeric type. %s has the "
                                     "field '%s' of non-numeric type %s",
                                     o->opname, c->id, nd->key, qry_type_name(nd->val.value_type));
        }
        rv = arith(c, o, &nd->val, &o->arg, &res);
        if (rv != 0) {
            return rv;
        }
        nd->val = res; /* numbers own no memory */
    }
    return 0;
}

static int apply_minmax(struct apply_ctx *c, const struct op *o, struct node *parent, long idx)
{
    bson_t tmp;
    bson_value_t cur;
    int cmp;

    if (idx < 0) {
        return put_value(c, parent, idx, leaf_name(&o->path), &o->arg);
    }
    node_view(parent->kids[idx], &tmp, &cur);
    cmp = qry_cmp(&o->arg, &cur);
    bson_destroy(&tmp);
    if ((o->kind == OP_MIN && cmp < 0) || (o->kind == OP_MAX && cmp > 0)) {
        return put_value(c, parent, idx, leaf_name(&o->path), &o->arg);
    }
    return 0;
}

/* ---- array operators --------------------------------------------------- */

struct vlist
{
    bson_value_t *v;
    size_t n;
    size_t cap;
};

static int vl_push(struct vlist *l, const bson_value_t *v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        bson_value_t *n = realloc(l->v, cap * sizeof *n);
        if (n == NULL) {
            return CAIRN_ENOMEM;
        }
        l->v = n;
        l->cap = cap;
    }
    l->v[l->n++] = *v;
    return 0;
}

static int vl_from_array(struct vlist *l, const bson_value_t *arr)
{
    bson_t d;
    bson_iter_t it;

    if (!bson_init_static(&d, arr->value.v_doc.data, arr->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        return CAIRN_EBADDOC;
    }
    while (bson_iter_next(&it)) {
        int rv = vl_push(l, bson_iter_value(&it));
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Replaces the leaf with an array made of `l`'s values. */
static int put_array(struct apply_ctx *c,
                     struct node *parent,
                     long idx,
                     const char *name,
                     const struct vlist *l)
{
    bson_t arr;
    bson_value_t v;
    char ibuf[16];
    int rv;

    bson_init(&arr);
    for (size_t i = 0; i < l->n; i++) {
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, ibuf, sizeof ibuf);
        bson_append_value(&arr, k, -1, &l->v[i]);
    }
    v.value_type = BSON_TYPE_ARRAY;
    v.value.v_doc.data = (uint8_t *)bson_get_data(&arr);
    v.value.v_doc.data_len = arr.len;
    rv = put_value(c, parent, idx, name, &v);
    bson_destroy(&arr);
    return rv;
}

struct push_sort_ctx
{
    const struct op *o;
};

static int push_sort_cmp(const void *a, const void *b, void *ctx)
{
    const bson_value_t *x = a, *y = b;
    const struct op *o = ((struct push_sort_ctx *)ctx)->o;

    if (o->sort == PSORT_WHOLE) {
        return o->sort_dir * qry_cmp(x, y);
    }
    if (x->value_type == BSON_TYPE_DOCUMENT && y->value_type == BSON_TYPE_DOCUMENT) {
        bson_t dx, dy;
        if (bson_init_static(&dx, x->value.v_doc.data, x->value.v_doc.data_len) &&
            bson_init_static(&dy, y->value.v_doc.data, y->value.v_doc.data_len)) {
            return qry_sort_cmp(o->sort_spec, &dx, &dy);
        }
    }
    return qry_cmp(x, y);
}

static bool pull_matches(const struct op *o, const bson_value_t *elem)
{
    switch (o->pull) {
        case PULL_EQ:
            return qry_cmp(elem, &o->arg) == 0;
        case PULL_VALUE:
        case PULL_DOC:
        default:
            return qry_matcher_match_value(o->matcher, elem);
    }
}

static bool vl_contains(const struct vlist *l, const bson_value_t *v)
{
    for (size_t i = 0; i < l->n; i++) {
        if (qry_cmp(&l->v[i], v) == 0) {
            return true;
        }
    }
    return false;
}

static int apply_array(struct apply_ctx *c, const struct op *o, struct node *parent, long idx)
{
    struct vlist cur = {0}, add = {0}, res = {0};
    bson_t tmp;
    bson_value_t view;
    bool have = idx >= 0;
    int rv = 0;
    const char *name = leaf_name(&o->path);

    bson_init(&tmp);
    if (have) {
        struct node *nd = parent->kids[idx];
        if (nd->val.value_type != BSON_TYPE_ARRAY) {
            const char *tn = qry_type_name(nd->val.value_type);
            bson_destroy(&tmp);
            switch (o->kind) {
                case OP_POP:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                             "Path '%s' contains an element of non-array type '%s'",
                                             o->path.full, tn);
                case OP_PULL:
                case OP_PULLALL:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "Cannot apply %s to a non-array value", o->opname);
                case OP_ADDTOSET:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "Cannot apply $addToSet to non-array field. Field "
                                             "named '%s' has non-array type %s",
                                             nd->key, tn);
                default:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "The field '%s' must be an array but is of type %s "
                                             "in document %s",
                                             o->path.full, tn, c->id);
            }
        }
        bson_destroy(&tmp);
        node_view(nd, &tmp, &view);
        rv = vl_from_array(&cur, &view);
        if (rv != 0) {
            goto out;
        }
    } else if (o->kind == OP_POP || o->kind == OP_PULL || o->kind == OP_PULLALL) {
        goto out; /* nothing to remove from */
    }

    switch (o->kind) {
        case OP_PUSH: {
            size_t at;
            if (o->has_each) {
                rv = vl_from_array(&add, &o->each);
            } else {
                rv = vl_push(&add, &o->arg);
            }
            if (rv != 0) {
                goto out;
            }
            at = cur.n;
            if (o->has_pos) {
                if (o->pos >= 0) {
                    at = (uint64_t)o->pos < cur.n ? (size_t)o->pos : cur.n;
                } else {
                    uint64_t back = (uint64_t)(-(o->pos + 1)) + 1;
                    at = back >= cur.n ? 0 : cur.n - (size_t)back;
                }
            }
            for (size_t i = 0; i < at && rv == 0; i++) {
                rv = vl_push(&res, &cur.v[i]);
            }
            for (size_t i = 0; i < add.n && rv == 0; i++) {
                rv = vl_push(&res, &add.v[i]);
            }
            for (size_t i = at; i < cur.n && rv == 0; i++) {
                rv = vl_push(&res, &cur.v[i]);
            }
            if (rv != 0) {
                goto out;
            }
            if (o->sort != PSORT_NONE) {
                struct push_sort_ctx sc = {o};
                rv = qry_stable_sort(res.v, res.n, sizeof *res.v, push_sort_cmp, &sc);
                if (rv != 0) {
                    goto out;
                }
            }
            if (o->has_slice) {
                if (o->slice >= 0) {
                    if ((uint64_t)o->slice < res.n) {
                        res.n = (size_t)o->slice;
                    }
                } else {
                    uint64_t keep = (uint64_t)(-(o->slice + 1)) + 1;
                    if (keep < res.n) {
                        size_t drop = res.n - (size_t)keep;
                        memmove(res.v, res.v + drop, (size_t)keep * sizeof *res.v);
                        res.n = (size_t)keep;
                    }
                }
            }
            break;
        }
        case OP_ADDTOSET:
            if (o->has_each) {
                rv = vl_from_array(&add, &o->each);
            } else {
                rv = vl_push(&add, &o->arg);
            }
            for (size_t i = 0; i < cur.n && rv == 0; i++) {
                rv = vl_push(&res, &cur.v[i]);
            }
            for (size_t i = 0; i < add.n && rv == 0; i++) {
                if (!vl_contains(&res, &add.v[i])) {
                    rv = vl_push(&res, &add.v[i]);
                }
            }
            if (rv != 0) {
                goto out;
            }
            break;
        case OP_POP:
            if (cur.n == 0) {
                goto out;
            }
            {
                size_t from = o->pop_dir < 0 ? 1 : 0;
                size_t to = o->pop_dir < 0 ? cur.n : cur.n - 1;
                for (size_t i = from; i < to && rv == 0; i++) {
                    rv = vl_push(&res, &cur.v[i]);
                }
            }
            break;
        case OP_PULL:
        case OP_PULLALL:
            if (o->kind == OP_PULLALL) {
                rv = vl_from_array(&add, &o->arg);
            }
            for (size_t i = 0; i < cur.n && rv == 0; i++) {
                bool drop =
                    o->kind == OP_PULL ? pull_matches(o, &cur.v[i]) : vl_contains(&add, &cur.v[i]);
                if (!drop) {
                    rv = vl_push(&res, &cur.v[i]);
                }
            }
            if (rv == 0 && res.n == cur.n) {
                goto out; /* nothing pulled: keep the array as it is */
            }
            break;
        default:
            break;
    }
    if (rv == 0) {
        rv = put_array(c, parent, idx, name, &res);
    }
out:
    if (rv != 0 && c->err != NULL && c->err->code == 0) {
        cairn_error_setf(c->err, rv, "out of memory");
    }
    bson_destroy(&tmp);
    free(cur.v);
    free(add.v);
    free(res.v);
    return rv;
}

static void id_desc(struct apply_ctx *c)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, c->doc, "_id")) {
        qry_fmt_value(bson_iter_value(&it), c->id_val, sizeof c->id_val);
        snprintf(c->id, sizeof c->id, "{_id: %s}", c->id_val);
    } else {
        snprintf(c->id_val, sizeof c->id_val, "<none>");
        snprintf(c->id, sizeof c->id, "{}");
    }
}

static int apply_rename(struct apply_ctx *c, const struct op *o, struct node *root)
{
    struct node *parent, *moved, *tparent;
    long idx, tidx;
    int rv = walk(c, root, &o->path, false, true, &parent, &idx);

    if (rv == WALK_MISSING) {
        return 0;
    }
    if (rv == WALK_ARRAY) {
        return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The source field cannot be an array element, '%s' in doc with "
                                 "_id: %s has an array field called '%s'",
                                 o->path.full, c->id_val, parent->key);
    }
    if (rv != 0) {
        return rv;
    }
    if (idx < 0) {
        return 0;
    }
    /* check the destination before changing anything */
    rv = walk(c, root, &o->to, false, true, &tparent, &tidx);
    if (rv == WALK_ARRAY) {
        return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The destination field cannot be an array element, '%s' in doc "
                                 "with _id: %s has an array field called '%s'",
                                 o->to.full, c->id_val, tparent->key);
    }
    if (rv > 0) {
        return rv;
    }
    moved = parent->kids[idx];
    kid_remove(parent, (size_t)idx);
    rv = walk(c, root, &o->to, true, false, &tparent, &tidx);
    if (rv != 0) {
        node_free(moved);
        return rv;
    }
    return put_leaf(c, tparent, tidx, leaf_name(&o->to), moved);
}

static int apply_op(struct apply_ctx *c, const struct op *o, struct node *root)
{
    struct node *parent;
    long idx;
    bool create;
    int rv;

    if (o->kind == OP_RENAME) {
        return apply_rename(c, o, root);
    }
    create =
        !(o->kind == OP_UNSET || o->kind == OP_PULL || o->kind == OP_PULLALL || o->kind == OP_POP);
    rv = walk(c, root, &o->path, create, false, &parent, &idx);
    if (rv == WALK_MISSING) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    switch (o->kind) {
        case OP_SET:
        case OP_SETONINSERT:
            return put_value(c, parent, idx, leaf_name(&o->path), &o->arg);
        case OP_UNSET:
            if (idx < 0) {
                return 0;
            }
            if (parent->val.value_type == BSON_TYPE_ARRAY) {
                struct node *nd = node_new(parent->kids[idx]->key);
                if (nd == NULL) {
                    return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
                }
                node_free(parent->kids[idx]);
                parent->kids[idx] = nd;
            } else {
                node_free(parent->kids[idx]);
                kid_remove(parent, (size_t)idx);
            }
            return 0;
        case OP_INC:
        case OP_MUL:
            return apply_arith(c, o, parent, idx);
        case OP_MIN:
        case OP_MAX:
            return apply_minmax(c, o, parent, idx);
        case OP_CURDATE: {
            bson_value_t v;
            if (o->timestamp) {
                v.value_type = BSON_TYPE_TIMESTAMP;
                v.value.v_timestamp.timestamp = (uint32_t)(c->now_ms / 1000);
                v.value.v_timestamp.increment = 1;
            } else {
                v.value_type = BSON_TYPE_DATE_TIME;
                v.value.v_datetime = c->now_ms;
            }
            return put_value(c, parent, idx, leaf_name(&o->path), &v);
        }
        default:
            return apply_array(c, o, parent, idx);
    }
}

/* ---- positional paths -------------------------------------------------- */

/* One operation on one concrete path: positional paths are expanded
 * against the document before anything is applied (no surviving op can
 * change an array another op expands: that would be a path conflict). */
struct centry
{
    const struct op *o;
    struct path p; /* concrete path; owned when `owned` */
    bool owned;
};

struct cvec
{
    struct centry *v;
    size_t n;
    size_t cap;
};

static void cvec_free(struct cvec *cv)
{
    for (size_t i = 0; i < cv->n; i++) {
        if (cv->v[i].owned) {
            path_free(&cv->v[i].p);
        }
    }
    free(cv->v);
    memset(cv, 0, sizeof *cv);
}

static int cvec_push(struct cvec *cv, const struct op *o, const struct path *p, bool owned)
{
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? cv->cap * 2 : 16;
        struct centry *n = realloc(cv->v, cap * sizeof *n);
        if (n == NULL) {
            return CAIRN_ENOMEM;
        }
        cv->v = n;
        cv->cap = cap;
    }
    cv->v[cv->n].o = o;
    cv->v[cv->n].p = *p;
    cv->v[cv->n].owned = owned;
    cv->n++;
    return 0;
}

struct expander
{
    struct apply_ctx *c;
    const struct qry_update *u;
    const struct op *o;
    long pos;
    char *buf; /* the concrete path so far */
    size_t len;
    size_t cap;
    struct cvec *out;
};

static int xp_append(struct expander *x, const char *comp)
{
    size_t need = x->len + strlen(comp) + 2;
    if (need > x->cap) {
        size_t cap = x->cap ? x->cap : 64;
        char *nb;
        while (cap < need) {
            cap *= 2;
        }
        nb = realloc(x->buf, cap);
        if (nb == NULL) {
            return cairn_error_setf(x->c->err, CAIRN_ENOMEM, "out of memory");
        }
        x->buf = nb;
        x->cap = cap;
    }
    if (x->len > 0) {
        x->buf[x->len++] = '.';
    }
    strcpy(x->buf + x->len, comp);
    x->len += strlen(comp);
    return 0;
}

/* The child of `cur` (NULL: missing) named `comp`, or NULL. */
static struct node *xp_child(struct node *cur, const char *comp)
{
    long at;

    if (cur == NULL) {
        return NULL;
    }
    if (cur->val.value_type == BSON_TYPE_DOCUMENT) {
        at = kid_find(cur, comp);
        return at >= 0 ? cur->kids[at] : NULL;
    }
    if (cur->val.value_type == BSON_TYPE_ARRAY) {
        at = parse_index(comp);
        return at >= 0 && (size_t)at < cur->n ? cur->kids[at] : NULL;
    }
    return NULL;
}

/* True when the array element `elem` passes the filter `af`. */
static bool af_match(const struct afilter *af, const struct node *elem)
{
    bson_t tmp, wrap;
    bson_value_t v;
    bool hit;

    node_view(elem, &tmp, &v);
    bson_init(&wrap);
    hit = bson_append_value(&wrap, af->id, -1, &v) && qry_matcher_match(af->m, &wrap);
    bson_destroy(&wrap);
    bson_destroy(&tmp);
    return hit;
}

static int expand_rec(struct expander *x, struct node *cur, size_t i)
{
    const struct path *p = &x->o->path;
    const char *comp;
    char ib[24];
    size_t save = x->len;
    int rv;

    if (i == p->n) {
        struct path cp;
        rv = path_split(x->buf, &cp);
        if (rv == 0 && cvec_push(x->out, x->o, &cp, true) == 0) {
            return 0;
        }
        path_free(&cp);
        return rv == 0 || rv == CAIRN_ENOMEM
                   ? cairn_error_setf(x->c->err, CAIRN_ENOMEM, "out of memory")
                   : cairn_error_mongo(x->c->err, CAIRN_EINVAL, MONGO_BadValue,
                                       "invalid update path");
    }
    comp = p->parts[i];
    if (strcmp(comp, "$") == 0) {
        snprintf(ib, sizeof ib, "%ld", x->pos);
        comp = ib;
    } else if (is_af_ident(comp)) {
        size_t idlen = strlen(comp) - 3;
        const struct afilter *af = idlen > 0 ? af_find(&x->u->afs, comp + 2, idlen) : NULL;
        if (cur == NULL) {
            return cairn_error_mongo(x->c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "The path '%s' must exist in the document in order to apply "
                                     "array updates.",
                                     x->buf);
        }
        if (cur->val.value_type != BSON_TYPE_ARRAY) {
            char f[220];
            bson_t tmp;
            bson_value_t v;
            node_view(cur, &tmp, &v);
            fmt_field(f, sizeof f, cur->key, &v);
            bson_destroy(&tmp);
            return cairn_error_mongo(x->c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Cannot apply array updates to non-array element %s", f);
        }
        for (size_t k = 0; k < cur->n; k++) {
            if (af != NULL && !af_match(af, cur->kids[k])) {
                continue;
            }
            snprintf(ib, sizeof ib, "%zu", k);
            rv = xp_append(x, ib);
            if (rv == 0) {
                rv = expand_rec(x, cur->kids[k], i + 1);
            }
            x->len = save;
            x->buf[save] = '\0';
            if (rv != 0) {
                return rv;
            }
        }
        return 0;
    }
    rv = xp_append(x, comp);
    if (rv == 0) {
        rv = expand_rec(x, xp_child(cur, comp), i + 1);
    }
    x->len = save;
    x->buf[save] = '\0';
    return rv;
}

struct cref
{
    const struct path *p;   /* concrete */
    const struct path *sym; /* as written in the update */
    size_t seq;
};

static int cref_cmp(const void *a, const void *b, void *ctx)
{
    const struct cref *x = a, *y = b;
    int c = path_order(x->p, y->p);
    (void)ctx;
    if (c != 0) {
        return c;
    }
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The path mongod names when merging the update nodes of two positional
 * paths fails: concrete components up to the first place their written
 * forms differ (where the nodes merge), then the written components they
 * share, concrete again where they differ; as long as the shorter one. */
static void merge_conflict_path(const struct cref *x, const struct cref *y, char *buf, size_t cap)
{
    size_t n = x->p->n < y->p->n ? x->p->n : y->p->n;
    size_t len = 0;
    bool merged = false;

    buf[0] = '\0';
    for (size_t k = 0; k < n && len < cap; k++) {
        const char *part;
        int w;
        if (k < x->sym->n && k < y->sym->n && strcmp(x->sym->parts[k], y->sym->parts[k]) == 0) {
            part = merged ? x->sym->parts[k] : x->p->parts[k];
        } else {
            part = x->p->parts[k];
            merged = true;
        }
        w = snprintf(buf + len, cap - len, "%s%s", k ? "." : "", part);
        if (w < 0) {
            break;
        }
        len += (size_t)w;
    }
}

/* Concrete paths must not be equal or prefixes of each other (mongod:
 * "Update created a conflict at ..."). */
static int check_concrete_conflicts(struct apply_ctx *c, const struct cvec *cv)
{
    struct cref *v;
    size_t n = 0;
    int rv;

    if (cv->n < 2) {
        return 0;
    }
    v = calloc(cv->n * 2, sizeof *v);
    if (v == NULL) {
        return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < cv->n; i++) {
        const struct op *o = cv->v[i].o;
        v[n].p = &cv->v[i].p;
        v[n].sym = &o->path;
        v[n].seq = n;
        n++;
        if (o->kind == OP_RENAME) {
            v[n].p = &o->to;
            v[n].sym = &o->to;
            v[n].seq = n;
            n++;
        }
    }
    rv = qry_stable_sort(v, n, sizeof *v, cref_cmp, NULL);
    if (rv != 0) {
        free(v);
        return cairn_error_setf(c->err, rv, "out of memory");
    }
    for (size_t i = 0; i + 1 < n; i++) {
        if (path_is_prefix(v[i].p, v[i + 1].p)) {
            char at[512];
            merge_conflict_path(&v[i], &v[i + 1], at, sizeof at);
            rv = cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_ConflictingUpdateOperators,
                                   "Update created a conflict at '%s'", at);
            break;
        }
    }
    free(v);
    return rv;
}

static int centry_cmp(const void *a, const void *b, void *ctx)
{
    const struct centry *x = a, *y = b;
    const struct path *px = x->o->kind == OP_RENAME ? &x->o->to : &x->p;
    const struct path *py = y->o->kind == OP_RENAME ? &y->o->to : &y->p;
    (void)ctx;
    return path_order(px, py);
}

/* Applies an update with positional paths: expands them (the `$` to
 * `match_pos`, `$[]` and `$[<id>]` to the matching elements), checks the
 * concrete paths for conflicts and applies the operations in path order. */
static int apply_dynamic(const struct qry_update *u,
                         struct apply_ctx *c,
                         struct node *root,
                         bool inserting,
                         long match_pos)
{
    struct cvec cv = {0};
    struct expander x;
    int rv = 0;

    memset(&x, 0, sizeof x);
    x.c = c;
    x.u = u;
    x.pos = match_pos;
    x.out = &cv;
    for (size_t i = 0; i < u->n_ops && rv == 0; i++) {
        const struct op *o = &u->ops[i];
        if (!o->dynamic) {
            rv = cvec_push(&cv, o, &o->path, false);
            if (rv != 0) {
                rv = cairn_error_setf(c->err, rv, "out of memory");
            }
            continue;
        }
        if (o->dollar && match_pos < 0) {
            rv = cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                   "The positional operator did not find the match needed from "
                                   "the query.");
            break;
        }
        x.o = o;
        x.len = 0;
        if (x.buf != NULL) {
            x.buf[0] = '\0';
        }
        rv = expand_rec(&x, root, 0);
    }
    free(x.buf);
    if (rv == 0) {
        rv = check_concrete_conflicts(c, &cv);
    }
    if (rv == 0 && cv.n > 1) {
        rv = qry_stable_sort(cv.v, cv.n, sizeof *cv.v, centry_cmp, NULL);
        if (rv != 0) {
            rv = cairn_error_setf(c->err, rv, "out of memory");
        }
    }
    for (size_t i = 0; i < cv.n && rv == 0; i++) {
        struct op tmp = *cv.v[i].o;
        if (tmp.kind == OP_SETONINSERT && !inserting) {
            continue;
        }
        tmp.path = cv.v[i].p;
        rv = apply_op(c, &tmp, root);
    }
    cvec_free(&cv);
    return rv;
}

static bool same_value(const bson_iter_t *a, const bson_iter_t *b)
{
    uint32_t la, lb;
    const uint8_t *da, *db;

    if (bson_iter_type(a) != bson_iter_type(b)) {
        return false;
    }
    /* raw value bytes: from the value offset to the next element */
    da = a->raw + a->d1;
    db = b->raw + b->d1;
    la = a->next_off - a->d1;
    lb = b->next_off - b->d1;
    return la == lb && memcmp(da, db, la) == 0;
}

/* Writes `src` into `out` with its _id field first. */
static void id_first(const bson_t *src, bson_t *out)
{
    bson_iter_t it;

    bson_init(out);
    if (bson_iter_init_find(&it, src, "_id")) {
        bson_append_iter(out, "_id", 3, &it);
    }
    if (bson_iter_init(&it, src)) {
        while (bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), "_id") != 0) {
                bson_append_iter(out, NULL, 0, &it);
            }
        }
    }
}

static int apply_replacement(const struct qry_update *u, struct apply_ctx *c, bson_t *out)
{
    bson_iter_t oid, rid, it;
    bool has_old = bson_iter_init_find(&oid, c->doc, "_id");
    bool has_new = bson_iter_init_find(&rid, u->spec, "_id");

    if (has_old && has_new && !same_value(&oid, &rid)) {
        char f[160];
        qry_fmt_value(bson_iter_value(&rid), f, sizeof f);
        return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_ImmutableField,
                                 "After applying the update, the (immutable) field '_id' was found "
                                 "to have been altered to _id: %s",
                                 f);
    }
    bson_init(out);
    if (has_old) {
        bson_append_iter(out, "_id", 3, &oid);
    } else if (has_new) {
        bson_append_iter(out, "_id", 3, &rid);
    }
    if (bson_iter_init(&it, u->spec)) {
        while (bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), "_id") != 0) {
                bson_append_iter(out, NULL, 0, &it);
            }
        }
    }
    return 0;
}

int qry_update_apply(const struct qry_update *u,
                     const bson_t *doc,
                     bool inserting,
                     int64_t now_ms,
                     bson_t *out,
                     bool *modified,
                     struct cairn_error *err)
{
    return qry_update_apply_pos(u, doc, inserting, now_ms, -1, out, modified, err);
}

int qry_update_apply_pos(const struct qry_update *u,
                         const bson_t *doc,
                         bool inserting,
                         int64_t now_ms,
                         long match_pos,
                         bson_t *out,
                         bool *modified,
                         struct cairn_error *err)
{
    struct apply_ctx c;
    struct node *root;
    bson_t res;
    bson_iter_t oid, nid;
    int rv = 0;

    memset(&c, 0, sizeof c);
    c.doc = doc;
    c.now_ms = now_ms;
    c.err = err;
    if (err != NULL) {
        cairn_error_clear(err);
    }
    *modified = false;
    id_desc(&c);
    if (u->replacement) {
        rv = apply_replacement(u, &c, out);
        if (rv != 0) {
            bson_init(out);
            return rv;
        }
        *modified =
            out->len != doc->len || memcmp(bson_get_data(out), bson_get_data(doc), doc->len) != 0;
        return 0;
    }
    root = node_new("");
    if (root == NULL) {
        bson_init(out);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    root->val.value_type = BSON_TYPE_DOCUMENT;
    rv = node_load(root, bson_get_data(doc), doc->len, 0);
    if (rv != 0) {
        node_free(root);
        bson_init(out);
        return rv == CAIRN_EBADDOC
                   ? cairn_error_mongo(err, rv, 15, "document is invalid or nested too deeply")
                   : cairn_error_setf(err, rv, "out of memory");
    }
    if (u->dynamic) {
        rv = apply_dynamic(u, &c, root, inserting, match_pos);
    }
    for (size_t i = 0; !u->dynamic && i < u->n_ops && rv == 0; i++) {
        if (u->ops[i].kind == OP_SETONINSERT && !inserting) {
            continue;
        }
        rv = apply_op(&c, &u->ops[i], root);
    }
    if (rv != 0) {
        node_free(root);
        bson_init(out);
        return rv;
    }
    bson_init(&res);
    node_write_kids(&res, root);
    node_free(root);
    if (bson_iter_init_find(&oid, doc, "_id")) {
        if (!bson_iter_init_find(&nid, &res, "_id") || !same_value(&oid, &nid)) {
            bson_destroy(&res);
            bson_init(out);
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ImmutableField,
                                     "Performing an update on the path '_id' would modify the "
                                     "immutable field '_id'");
        }
    }
    if (inserting && bson_iter_init(&nid, &res) && bson_iter_next(&nid) &&
        strcmp(bson_iter_key(&nid), "_id") != 0 && bson_iter_init_find(&nid, &res, "_id")) {
        id_first(&res, out);
        bson_destroy(&res);
    } else {
        bson_init(out);
        bson_concat(out, &res);
        bson_destroy(&res);
    }
    *modified =
        out->len != doc->len || memcmp(bson_get_data(out), bson_get_data(doc), doc->len) != 0;
    return 0;
}

/* ---- upsert seed ------------------------------------------------------- */

struct seed
{
    struct path *paths;
    bson_value_t *vals;
    size_t n;
    size_t cap;
};

static int seed_add(struct seed *s, const char *key, const bson_value_t *v, struct cairn_error *err)
{
    struct path p;
    int rv = path_split(key, &p);

    if (rv == CAIRN_ENOMEM) {
        return cairn_error_setf(err, rv, "out of memory");
    }
    if (rv == -2) {
        path_free(&p);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "filter path '%.60s...' is too deep", key);
    }
    if (rv != 0) {
        path_free(&p);
        return 0; /* not a usable path: contributes nothing */
    }
    for (size_t i = 0; i < p.n; i++) {
        if (p.parts[i][0] == '$') {
            path_free(&p);
            return 0;
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->paths[i].full, p.full) == 0) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NotSingleValueField,
                                   "cannot infer query fields to set, path '%s' is matched twice",
                                   p.full);
        } else if (path_is_prefix(&s->paths[i], &p) || path_is_prefix(&p, &s->paths[i])) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NotSingleValueField,
                                   "cannot infer query fields to set, both paths '%s' and '%s' "
                                   "are matched",
                                   s->paths[i].full, p.full);
        }
        if (rv != 0) {
            path_free(&p);
            return rv;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct path *np = realloc(s->paths, cap * sizeof *np);
        bson_value_t *nv;
        if (np == NULL) {
            path_free(&p);
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        s->paths = np;
        nv = realloc(s->vals, cap * sizeof *nv);
        if (nv == NULL) {
            path_free(&p);
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        s->vals = nv;
        s->cap = cap;
    }
    s->paths[s->n] = p;
    s->vals[s->n] = *v;
    s->n++;
    return 0;
}

static int seed_collect(struct seed *s, const bson_t *filter, int depth, struct cairn_error *err);

static int seed_clauses(struct seed *s,
                        bson_iter_t *it,
                        bool single_only,
                        int depth,
                        struct cairn_error *err)
{
    bson_iter_t arr;
    uint32_t count = 0;

    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &arr)) {
        return 0;
    }
    while (bson_iter_next(&arr)) {
        count++;
    }
    if (single_only && count != 1) {
        return 0;
    }
    bson_iter_recurse(it, &arr);
    while (bson_iter_next(&arr)) {
        const uint8_t *data;
        uint32_t len;
        bson_t sub;
        int rv;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
            continue;
        }
        bson_iter_document(&arr, &len, &data);
        if (!bson_init_static(&sub, data, len)) {
            continue;
        }
        rv = seed_collect(s, &sub, depth + 1, err);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int seed_collect(struct seed *s, const bson_t *filter, int depth, struct cairn_error *err)
{
    bson_iter_t it;

    if (depth > 100) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "filter nested too deeply");
    }
    if (!bson_iter_init(&it, filter)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid filter document");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        int rv = 0;

        if (k[0] == '$') {
            if (strcmp(k, "$and") == 0) {
                rv = seed_clauses(s, &it, false, depth, err);
            } else if (strcmp(k, "$or") == 0) {
                rv = seed_clauses(s, &it, true, depth, err);
            }
        } else if (v->value_type == BSON_TYPE_REGEX) {
            /* a regex is not an equality */
        } else if (is_operator_doc(v)) {
            bson_t d;
            bson_iter_t op;
            if (bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) &&
                bson_iter_init(&op, &d)) {
                while (rv == 0 && bson_iter_next(&op)) {
                    const char *ok = bson_iter_key(&op);
                    if (strcmp(ok, "$eq") == 0) {
                        rv = seed_add(s, k, bson_iter_value(&op), err);
                    } else if (strcmp(ok, "$in") == 0 && BSON_ITER_HOLDS_ARRAY(&op)) {
                        bson_iter_t in;
                        int count = 0;
                        bson_value_t one = {0};
                        if (bson_iter_recurse(&op, &in)) {
                            while (bson_iter_next(&in)) {
                                count++;
                                one = *bson_iter_value(&in);
                            }
                        }
                        if (count == 1 && one.value_type != BSON_TYPE_REGEX) {
                            rv = seed_add(s, k, &one, err);
                        }
                    }
                }
            }
        } else {
            rv = seed_add(s, k, v, err);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int qry_upsert_seed(const bson_t *filter, bson_t *out, struct cairn_error *err)
{
    struct seed s = {0};
    struct apply_ctx c;
    struct node *root = node_new("");
    int rv;

    bson_init(out);
    if (root == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    root->val.value_type = BSON_TYPE_DOCUMENT;
    memset(&c, 0, sizeof c);
    c.doc = filter;
    c.err = err;
    rv = seed_collect(&s, filter, 0, err);
    for (size_t i = 0; i < s.n && rv == 0; i++) {
        struct node *parent;
        long idx;
        rv = walk(&c, root, &s.paths[i], true, false, &parent, &idx);
        if (rv == 0) {
            rv = put_value(&c, parent, idx, leaf_name(&s.paths[i]), &s.vals[i]);
        }
    }
    if (rv == 0) {
        bson_t tmp;
        bson_init(&tmp);
        node_write_kids(&tmp, root);
        bson_destroy(out);
        id_first(&tmp, out);
        bson_destroy(&tmp);
    }
    for (size_t i = 0; i < s.n; i++) {
        path_free(&s.paths[i]);
    }
    free(s.paths);
    free(s.vals);
    node_free(root);
    return rv;
}
