/*
 * fuzz_query.c: libFuzzer harness of the pure query layer (src/query):
 * matcher, update operators, upsert seeds, projection, sort, pipeline,
 * aggregation expressions, key encoding and BSON order.
 *
 * The input's first byte picks how documents are derived from the rest:
 *   even: raw BSON, a sequence of length-prefixed documents;
 *   odd:  a byte-code that builds documents from a dictionary of operator
 *         and field names (so the fuzzer reaches deep operators quickly).
 * Every derived document must pass the server's own client-document checks
 * (wire_parse_op_msg on an OP_MSG holding it: UTF-8, depth <= 200, libbson
 * validation), so only input a client can send is fed to the query layer.
 * Each document is then used in every role (filter, update, projection,
 * sort, pipeline, expressions) against fixed sample documents and the other
 * derived documents. Everything is freed: LeakSanitizer reports leaks.
 * Built as a fuzzer with -Dfuzz=true; otherwise tests/unit/test_fuzz_corpus.c
 * replays tests/fuzz/corpus/query.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/wire.h"
#include "query/expr.h"
#include "query/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DOCS 4
#define N_SAMPLES 8
#define FUZZ_MAX_INPUT 8192

/* ---- Sample documents --------------------------------------------------- */

static const char *const sample_json[N_SAMPLES] = {
    "{\"_id\": 1, \"a\": 1, \"b\": \"x\", \"c\": [1, 2, 3]}",
    "{\"_id\": 2, \"a\": [1, [2, 3], {\"b\": 4}], \"b\": {\"c\": {\"d\": [5, \"e\"]}}}",
    "{\"_id\": {\"$oid\": \"0123456789abcdef01234567\"}, \"a\": null, \"s\": \"Hello\"}",
    "{\"_id\": \"k\", \"a\": {\"b\": [{\"c\": 1, \"d\": 2}, {\"c\": 3}]}, \"n\": 2.5, "
    "\"l\": {\"$numberLong\": \"9223372036854775807\"}}",
    "{\"a\": [], \"b\": [[]], \"t\": true, \"d\": {\"$date\": 0}, \"r\": {\"$regularExpression\": "
    "{\"pattern\": \"^a\", \"options\": \"i\"}}}",
    "{\"_id\": 3, \"a\": {\"$numberDecimal\": \"1.5\"}, \"x\": -2147483648, \"y\": NaN, "
    "\"z\": {\"$minKey\": 1}, \"bin\": {\"$binary\": {\"base64\": \"AAEC\", \"subType\": \"00\"}}}",
    "{\"_id\": 4, \"a\": [{\"b\": 1}, {\"b\": [2, 3]}, 7, \"s\"], \"k\": \"a.b\", \"ts\": "
    "{\"$timestamp\": {\"t\": 1, \"i\": 2}}, \"m\": {\"$maxKey\": 1}}",
    "{}",
};

static bson_t *samples[N_SAMPLES];

static void init_samples(void)
{
    if (samples[0] != NULL) {
        return;
    }
    for (int i = 0; i < N_SAMPLES; i++) {
        samples[i] = bson_new_from_json((const uint8_t *)sample_json[i], -1, NULL);
        if (samples[i] == NULL) {
            abort(); /* a typo above */
        }
    }
}

/* ---- Byte reader and document builder ----------------------------------- */

struct rd
{
    const uint8_t *p;
    size_t n, i;
};

/* The next byte, or 0 past the end (the position still advances, so that
 * r->i-- always undoes one read). */
static unsigned rd_byte(struct rd *r)
{
    unsigned b = r->i < r->n ? r->p[r->i] : 0;
    r->i++;
    return b;
}

/* clang-format off */
static const char *const keys[] = {
    "a", "b", "c", "d", "_id", "a.b", "a.0", "a.1", "b.c.d", "0", "1", "2", "x", "a.$", "a.b.c",
    "k", "s", "n", "", "a..b", "$", "$a", "a.$[]", "10", "-1",
    /* query operators */
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type", "$and", "$or",
    "$nor", "$not", "$regex", "$options", "$elemMatch", "$size", "$all", "$mod", "$expr",
    "$alwaysTrue", "$alwaysFalse", "$bitsAllSet", "$bitsAnyClear", "$comment", "$where",
    /* update operators */
    "$set", "$unset", "$inc", "$mul", "$min", "$max", "$rename", "$push", "$each", "$slice",
    "$position", "$sort", "$pull", "$pullAll", "$addToSet", "$pop", "$currentDate",
    "$setOnInsert", "$bit", "and", "or", "xor",
    /* projection */
    "$meta",
    /* stages */
    "$match", "$group", "$count", "$project", "$addFields", "$unwind", "$skip", "$limit",
    "$replaceRoot", "$replaceWith", "$sortByCount", "$lookup", "$facet", "$bucket", "$sample",
    "path", "includeArrayIndex", "preserveNullAndEmptyArrays", "newRoot",
    /* expressions */
    "$add", "$subtract", "$multiply", "$divide", "$abs", "$ceil", "$floor", "$round", "$trunc",
    "$cmp", "$cond", "$ifNull", "$concat", "$toLower", "$toUpper", "$substr", "$substrBytes",
    "$strLenBytes", "$arrayElemAt", "$isArray", "$concatArrays", "$toString", "$toInt",
    "$toLong", "$toDouble", "$toBool", "$sum", "$avg", "$first", "$last", "$mergeObjects",
    "$literal", "if", "then", "else", "$date", "$timestamp",
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const char *const strings[] = {
    "$a", "$b", "$a.b", "$c", "$_id", "$$ROOT", "$$CURRENT", "$$REMOVE", "$$NOW", "$$x", "$",
    "$$", "$a.", "$.a", "x", "", "Hello", "a.b", "^a", "a*", "(", "\\", "[a-z]+", "\\d\\Q.\\E",
    "(?i)a", "int", "long", "double", "string", "number", "object", "array", "missing", "null",
    "bool", "date", "decimal", "regex", "objectId", "minKey", "maxKey", "i", "imsx", "q", "-1",
    "1.5", "1e400", "textScore", "$toString", "\xc3\xa9", "a\xe2\x82\xac"};
/* clang-format on */
#define N_STRINGS (sizeof strings / sizeof strings[0])

static void gen_doc(struct rd *r, bson_t *dst, int depth, bool array);

/* A short string spelled from the next bytes in an alphabet rich in regex
 * syntax, so the PCRE-to-ERE translation and regcomp see odd patterns. */
static void gen_string(struct rd *r, char *out, size_t cap)
{
    static const char alpha[] = "[]()*+?{}|^$\\.-:=,0129abcxyzADQEsSdwWZbBnx# \n\t";
    size_t n = rd_byte(r) % 24;

    if (n >= cap) {
        n = cap - 1;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = alpha[rd_byte(r) % (sizeof alpha - 1)];
    }
    out[n] = '\0';
}

/* Appends one value, chosen by the next bytes, under `key`. */
static void gen_value(struct rd *r, bson_t *dst, const char *key, int depth)
{
    unsigned t = rd_byte(r) % 20;
    unsigned b = rd_byte(r);
    bson_t sub;

    switch (t) {
        case 0: {
            static const int32_t specials[] = {INT32_MIN, INT32_MAX, -1, 0, 1, 2, 63, 64};
            int32_t v = (b & 0x80) ? specials[b & 7] : (int32_t)(b & 0x7f) - 8;
            bson_append_int32(dst, key, -1, v);
            break;
        }
        case 1: {
            static const int64_t specials[] = {INT64_MIN,
                                               INT64_MAX,
                                               -1,
                                               0,
                                               1,
                                               2147483648LL,
                                               -9007199254740993LL,
                                               4611686018427387904LL};
            int64_t v = (b & 0x80) ? specials[b & 7] : (int64_t)(b & 0x7f) - 8;
            bson_append_int64(dst, key, -1, v);
            break;
        }
        case 2: {
            static const double specials[] = {0.5, -0.0, 1e308, -1e308, 2.5, -3.5, 1e18, 0.1};
            double v;
            if (b == 0xff) {
                v = 0.0 / 0.0;
            } else if (b == 0xfe) {
                v = 1.0 / 0.0;
            } else if (b == 0xfd) {
                v = -1.0 / 0.0;
            } else if (b & 0x80) {
                v = specials[b & 7];
            } else {
                v = (double)(b & 0x7f) - 8.0;
            }
            bson_append_double(dst, key, -1, v);
            break;
        }
        case 3:
            bson_append_utf8(dst, key, -1, strings[b % N_STRINGS], -1);
            break;
        case 4:
            bson_append_utf8(dst, key, -1, keys[b % N_KEYS], -1);
            break;
        case 5:
            bson_append_bool(dst, key, -1, b & 1);
            break;
        case 6:
            bson_append_null(dst, key, -1);
            break;
        case 7:
        case 8:
        case 9:
            if (depth >= 12) {
                bson_append_int32(dst, key, -1, (int32_t)b);
                break;
            }
            r->i--; /* b is the element count */
            if (t == 9) {
                bson_append_array_begin(dst, key, -1, &sub);
                gen_doc(r, &sub, depth + 1, true);
                bson_append_array_end(dst, &sub);
            } else {
                bson_append_document_begin(dst, key, -1, &sub);
                gen_doc(r, &sub, depth + 1, false);
                bson_append_document_end(dst, &sub);
            }
            break;
        case 10: {
            static const char *const opts[] = {"", "i", "m", "s", "x", "imsx", "u", "ix"};
            bson_append_regex(dst, key, -1, strings[b % N_STRINGS], opts[rd_byte(r) & 7]);
            break;
        }
        case 11: {
            static const int64_t specials[] = {INT64_MIN,         INT64_MAX, INT64_MIN + 1,
                                               INT64_MAX - 1,     -1,        253402300800000LL,
                                               -62167219200001LL, 1};
            int64_t v = (b & 0x80) ? specials[b & 7] : (int64_t)(int8_t)(b << 1) * 86400000LL;
            bson_append_date_time(dst, key, -1, v);
            break;
        }
        case 12: {
            bson_oid_t oid;
            memset(&oid, (int)b, sizeof oid);
            bson_append_oid(dst, key, -1, &oid);
            break;
        }
        case 13: {
            static const char *const decs[] = {"1.5",     "-0", "NaN", "Infinity",
                                               "1E+6144", "2",  "0",   "-7"};
            bson_decimal128_t d;
            bson_decimal128_from_string(decs[b & 7], &d);
            bson_append_decimal128(dst, key, -1, &d);
            break;
        }
        case 14:
            if (b % 3 == 0) {
                bson_append_minkey(dst, key, -1);
            } else if (b % 3 == 1) {
                bson_append_maxkey(dst, key, -1);
            } else {
                bson_append_undefined(dst, key, -1);
            }
            break;
        case 15: {
            uint8_t bin[4] = {(uint8_t)b, 1, 2, 3};
            bson_append_binary(dst, key, -1, (bson_subtype_t)(b % 6 == 5 ? 0x80 : b % 5), bin,
                               b % 5);
            break;
        }
        case 16:
            bson_append_timestamp(dst, key, -1, b, rd_byte(r));
            break;
        case 17:
        case 18: {
            static const char *const opts[] = {"", "i", "m", "s", "x", "imsx", "u", "ix"};
            char str[32];
            r->i--; /* b is the length */
            gen_string(r, str, sizeof str);
            if (t == 17) {
                bson_append_regex(dst, key, -1, str, opts[rd_byte(r) & 7]);
            } else {
                bson_append_utf8(dst, key, -1, str, -1);
            }
            break;
        }
        default:
            /* a key as a field path string ("$a" style) or a small int */
            if (b & 1) {
                char path[64];
                const char *k = keys[(b >> 1) % N_KEYS];
                path[0] = '$';
                strncpy(path + 1, k, sizeof path - 2);
                path[sizeof path - 1] = '\0';
                bson_append_utf8(dst, key, -1, path, -1);
            } else {
                bson_append_int32(dst, key, -1, (int32_t)(b >> 1));
            }
            break;
    }
}

/* Fills `dst` with up to 7 elements; arrays get keys "0", "1", ... */
static void gen_doc(struct rd *r, bson_t *dst, int depth, bool array)
{
    unsigned n = rd_byte(r) % 8;

    for (unsigned i = 0; i < n && r->i < r->n; i++) {
        char idx[16];
        const char *key;
        if (array) {
            bson_uint32_to_string(i, &key, idx, sizeof idx);
        } else {
            key = keys[rd_byte(r) % N_KEYS];
        }
        gen_value(r, dst, key, depth);
    }
}

/* ---- Client-document check ---------------------------------------------- */

/* True when a client could send `len` bytes at `p` as a command document:
 * wraps them in an OP_MSG and runs the server's parser. */
static bool client_acceptable(const uint8_t *p, size_t len)
{
    size_t total = WIRE_HEADER_LEN + 4 + 1 + len;
    uint8_t *msg = malloc(total);
    struct wire_msg m;
    struct cairn_error err;
    bool fatal, ok;

    if (msg == NULL) {
        return false;
    }
    memset(msg, 0, WIRE_HEADER_LEN + 5);
    msg[0] = (uint8_t)total;
    msg[1] = (uint8_t)(total >> 8);
    msg[2] = (uint8_t)(total >> 16);
    msg[3] = (uint8_t)(total >> 24);
    msg[12] = WIRE_OP_MSG & 0xff;
    msg[13] = WIRE_OP_MSG >> 8;
    memcpy(msg + WIRE_HEADER_LEN + 5, p, len);
    ok = wire_parse_op_msg(msg, total, &m, &fatal, &err) == 0;
    free(msg);
    return ok;
}

/* ---- Roles --------------------------------------------------------------- */

struct docs
{
    bson_t *d[MAX_DOCS + N_SAMPLES];
    size_t n;
};

static void run_matcher(const bson_t *spec, const struct docs *all)
{
    struct qry_matcher *m = NULL;
    struct cairn_error err;
    bson_value_t id;

    if (qry_matcher_compile(spec, &m, &err) != 0) {
        return;
    }
    for (size_t i = 0; i < all->n; i++) {
        (void)qry_matcher_match(m, all->d[i]);
    }
    (void)qry_matcher_id_equality(m, &id);
    qry_matcher_free(m);
}

static void run_update(const bson_t *spec, const struct docs *all)
{
    struct qry_update *u = NULL;
    struct cairn_error err;
    bson_t out, seed, out2;
    bool modified;

    if (qry_update_compile(spec, &u, &err) != 0) {
        return;
    }
    (void)qry_update_is_replacement(u);
    for (size_t i = 0; i < all->n; i++) {
        if (qry_update_apply(u, all->d[i], false, 1700000000000LL, &out, &modified, &err) == 0) {
            /* apply again to the result: updates must be re-appliable */
            if (qry_update_apply(u, &out, false, 0, &out2, &modified, &err) == 0) {
                bson_destroy(&out2);
            }
        }
        bson_destroy(&out);
    }
    /* upserts: a seed from every document used as a filter */
    for (size_t i = 0; i < all->n; i++) {
        if (qry_upsert_seed(all->d[i], &seed, &err) == 0) {
            if (qry_update_apply(u, &seed, true, 0, &out, &modified, &err) == 0) {
                bson_destroy(&out);
            } else {
                bson_destroy(&out);
            }
        }
        bson_destroy(&seed);
    }
    qry_update_free(u);
}

/* Positional updates: every document in turn as the query (for the "$"
 * position) and as the one array filter, the spec as the update. */
static void run_update_positional(const bson_t *spec, const struct docs *all)
{
    struct cairn_error err;
    bson_t out;
    bool modified;

    for (size_t j = 0; j < all->n && j < 4; j++) {
        bson_t af = BSON_INITIALIZER;
        struct qry_update *u = NULL;
        struct qry_matcher *m = NULL;
        BSON_APPEND_DOCUMENT(&af, "0", all->d[j]);
        if (qry_update_compile_af(spec, &af, &u, &err) == 0) {
            if (qry_matcher_compile(all->d[j], &m, &err) != 0) {
                m = NULL;
            }
            for (size_t i = 0; i < all->n; i++) {
                long pos = -1;
                if (m != NULL) {
                    (void)qry_matcher_match_pos(m, all->d[i], &pos);
                }
                (void)qry_update_needs_match_pos(u);
                (void)qry_update_apply_pos(u, all->d[i], i % 2 == 0, 0, pos, &out, &modified, &err);
                bson_destroy(&out);
            }
            if (m != NULL) {
                qry_matcher_free(m);
            }
            qry_update_free(u);
        }
        bson_destroy(&af);
    }
}

static void run_projection(const bson_t *spec, const struct docs *all)
{
    struct qry_projection *p = NULL;
    struct cairn_error err;
    bson_t out;

    if (qry_projection_compile(spec, &p, &err) != 0) {
        return;
    }
    for (size_t i = 0; i < all->n; i++) {
        if (qry_projection_apply(p, all->d[i], &out, &err) == 0) {
            bson_destroy(&out);
        } else {
            bson_destroy(&out);
        }
    }
    qry_projection_free(p);
}

static void run_sort(const bson_t *spec, const struct docs *all)
{
    struct qry_sort *s = NULL;
    struct cairn_error err;

    if (qry_sort_compile(spec, &s, &err) != 0) {
        return;
    }
    for (size_t i = 0; i < all->n; i++) {
        for (size_t j = 0; j < all->n; j++) {
            int c1 = qry_sort_cmp(s, all->d[i], all->d[j]);
            int c2 = qry_sort_cmp(s, all->d[j], all->d[i]);
            if ((c1 < 0 && c2 <= 0) || (c1 > 0 && c2 >= 0) || (c1 == 0 && c2 != 0)) {
                abort(); /* not antisymmetric: qsort would misbehave */
            }
        }
    }
    qry_sort_free(s);
}

struct src
{
    const struct docs *all;
    size_t next;
};

static int src_next(void *arg, bson_t *doc, struct cairn_error *err)
{
    struct src *s = arg;
    (void)err;
    if (s->next >= s->all->n) {
        return 0;
    }
    const bson_t *d = s->all->d[s->next++];
    bson_init_static(doc, bson_get_data(d), d->len);
    return 1;
}

static void run_pipeline(const bson_t *spec, const struct docs *all)
{
    struct qry_pipeline *p = NULL;
    struct cairn_error err;
    bson_t **out = NULL;
    size_t n_out = 0;
    struct src s = {all, 0};

    if (qry_pipeline_compile(spec, &p, &err) != 0) {
        return;
    }
    (void)qry_pipeline_leading_match(p);
    (void)qry_pipeline_run(p, src_next, &s, &out, &n_out, &err);
    for (size_t i = 0; i < n_out; i++) {
        bson_destroy(out[i]);
    }
    free(out);
    qry_pipeline_free(p);
}

/* Every top-level value of `spec` as an expression, a key, and in order. */
static void run_values(const bson_t *spec, const struct docs *all)
{
    bson_iter_t it, it2;
    struct cairn_error err;

    if (!bson_iter_init(&it, spec)) {
        return;
    }
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        struct qry_expr *e = NULL;
        struct cairn_buf kb = CAIRN_BUF_INIT;
        bson_iter_t found;

        if (qry_expr_compile(v, &e, &err) == 0) {
            (void)qry_expr_is_field_path(e);
            for (size_t i = 0; i < all->n; i++) {
                bson_value_t out;
                bson_t dst = BSON_INITIALIZER;
                if (qry_expr_eval(e, all->d[i], &out, &err) == 0) {
                    (void)qry_value_truthy(&out);
                    if (out.value_type != BSON_TYPE_EOD) {
                        bson_value_destroy(&out);
                    }
                }
                (void)qry_expr_append(e, all->d[i], &dst, "x", -1, &err);
                bson_destroy(&dst);
            }
            qry_expr_free(e);
        }
        (void)qry_key_encode(v, &kb, &err);
        cairn_buf_free(&kb);
        (void)qry_type_name(v->value_type);
        (void)qry_path_find(all->d[0], bson_iter_key(&it), &found);
        for (size_t i = 0; i < all->n; i++) {
            (void)qry_path_find(all->d[i], bson_iter_key(&it), &found);
        }
        it2 = it;
        while (bson_iter_next(&it2)) {
            const bson_value_t *w = bson_iter_value(&it2);
            int c1 = qry_value_cmp(v, w), c2 = qry_value_cmp(w, v);
            if ((c1 < 0) != (c2 > 0) || (c1 == 0) != (c2 == 0)) {
                abort(); /* BSON order must be antisymmetric */
            }
        }
    }
}

/* ---- Entry point --------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct docs all = {{0}, 0};
    bson_t *own[MAX_DOCS];
    size_t n_own = 0;

    init_samples();
    if (size < 1 || size > FUZZ_MAX_INPUT) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        size_t off = 1;
        while (n_own < MAX_DOCS && size - off >= 5) {
            uint32_t len = (uint32_t)data[off] | (uint32_t)data[off + 1] << 8 |
                           (uint32_t)data[off + 2] << 16 | (uint32_t)data[off + 3] << 24;
            if (len < 5 || len > size - off) {
                break;
            }
            if (client_acceptable(data + off, len)) {
                own[n_own++] = bson_new_from_data(data + off, len);
            }
            off += len;
        }
    } else {
        struct rd r = {data, size, 1};
        while (n_own < MAX_DOCS && r.i < r.n) {
            bson_t *d = bson_new();
            gen_doc(&r, d, 0, false);
            if (client_acceptable(bson_get_data(d), d->len)) {
                own[n_own++] = d;
            } else {
                bson_destroy(d);
            }
        }
    }
    for (size_t i = 0; i < n_own; i++) {
        if (own[i] == NULL) { /* bson_new_from_data refused it */
            continue;
        }
        all.d[all.n++] = own[i];
    }
    size_t n_input = all.n;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        all.d[all.n++] = samples[i];
    }
    for (size_t i = 0; i < n_input; i++) {
        const bson_t *spec = all.d[i];
        run_matcher(spec, &all);
        run_update(spec, &all);
        run_update_positional(spec, &all);
        run_projection(spec, &all);
        run_sort(spec, &all);
        run_pipeline(spec, &all);
        run_values(spec, &all);
    }
    (void)qry_cmp_docs(all.d[0], all.d[all.n - 1]);
    for (size_t i = 0; i < n_own; i++) {
        bson_destroy(own[i]);
    }
    return 0;
}
