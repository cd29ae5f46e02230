/*
 * keydec.c: exact decoding of index keys back to BSON values, for covered
 * projections (documents built from index entries without fetching).
 *
 * The key encoding (keyenc.c) keeps order, not types: int32, int64, double
 * and decimal128 share one number encoding, strings and symbols share one,
 * -0.0 encodes as 0, a missing field and an explicit null both encode as
 * null. The "type bits" of a key (qry_key_typebits, stored beside _id in
 * the index entry's value by txn/index.c) say which: one byte per number
 * or string at any depth, in encoding order (the BSON type; 0x81 for a
 * double -0.0), and one per top-level null of a field (0x0A explicit null,
 * 0x00 missing). Decoding is exact when every such value finds its byte;
 * decimal128 never decodes (its encoding is the nearest double), nor does
 * a key whose type bits are missing or run short (an entry written before
 * type bits existed): the caller then fetches the document.
 */
#include <math.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

#define TB_NEG_ZERO 0x81
#define TB_MISSING 0x00
#define MAX_DEC_DEPTH 200


/* ---- Type bits ------------------------------------------------------------ */

static int tb_value(const bson_value_t *v, struct cairn_buf *out, int depth)
{
    bson_iter_t it;

    if (depth > MAX_DEC_DEPTH) {
        return 0;
    }
    switch (v->value_type) {
        case BSON_TYPE_DOUBLE:
            return cairn_buf_push(out, v->value.v_double == 0 && signbit(v->value.v_double)
                                           ? TB_NEG_ZERO
                                           : (uint8_t)BSON_TYPE_DOUBLE);
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DECIMAL128:
        case BSON_TYPE_UTF8:
        case BSON_TYPE_SYMBOL:
            return cairn_buf_push(out, (uint8_t)v->value_type);
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
                return 0;
            }
            break;
        case BSON_TYPE_CODEWSCOPE:
            if (!bson_iter_init_from_data(&it, v->value.v_codewscope.scope_data,
                                          v->value.v_codewscope.scope_len)) {
                return 0;
            }
            break;
        default:
            return 0;
    }
    int rc = 0;
    while (rc == 0 && bson_iter_next(&it)) {
        rc = tb_value(bson_iter_value(&it), out, depth + 1);
    }
    return rc;
}

int qry_key_typebits(const bson_value_t *v, bool missing, struct cairn_buf *out)
{
    if (v->value_type == BSON_TYPE_NULL) {
        return cairn_buf_push(out, missing ? TB_MISSING : (uint8_t)BSON_TYPE_NULL);
    }
    return tb_value(v, out, 0);
}

/* ---- Decoding --------------------------------------------------------------- */

struct rd
{
    const uint8_t *p;
    size_t n, pos;
    uint8_t x; /* 0xFF for a descending field's bytes */
    const uint8_t *tb;
    size_t tb_n, tb_pos;
    struct cairn_buf tmp;
};

static bool get(struct rd *r, uint8_t *b)
{
    if (r->pos >= r->n) {
        return false;
    }
    *b = r->p[r->pos++] ^ r->x;
    return true;
}

static bool get_n(struct rd *r, uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!get(r, &b[i])) {
            return false;
        }
    }
    return true;
}

static bool next_tb(struct rd *r, uint8_t *t)
{
    if (r->tb_pos >= r->tb_n) {
        return false;
    }
    *t = r->tb[r->tb_pos++];
    return true;
}

/* An escaped string into r->tmp (NUL-terminated there too). */
static bool get_escaped(struct rd *r)
{
    uint8_t b, c;
    cairn_buf_reset(&r->tmp);
    for (;;) {
        if (!get(r, &b)) {
            return false;
        }
        if (b != 0) {
            if (cairn_buf_push(&r->tmp, b) != 0) {
                return false;
            }
            continue;
        }
        if (!get(r, &c)) {
            return false;
        }
        if (c == 0) {
            return cairn_buf_push(&r->tmp, 0) == 0 && (r->tmp.len--, true);
        }
        if (c != 0xFF || cairn_buf_push(&r->tmp, 0) != 0) {
            return false;
        }
    }
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* A number body with type bit `t` appended as `key` to `out`. */
static int dec_number(struct rd *r, uint8_t t, bson_t *out, const char *key)
{
    uint8_t cls, b[10];
    if (!get(r, &cls)) {
        return -1;
    }
    if (t == BSON_TYPE_DECIMAL128) {
        return 0; /* the encoding is the nearest double: not exact */
    }
    if (cls == NUM_NAN || cls == NUM_NEG_INF || cls == NUM_POS_INF) {
        double d = cls == NUM_NAN ? NAN : cls == NUM_NEG_INF ? -INFINITY : INFINITY;
        return t == BSON_TYPE_DOUBLE && bson_append_double(out, key, -1, d) ? 1 : 0;
    }
    if (cls == NUM_ZERO) {
        if (t == TB_NEG_ZERO) {
            return bson_append_double(out, key, -1, -0.0) ? 1 : -1;
        }
        return (t == BSON_TYPE_DOUBLE  ? bson_append_double(out, key, -1, 0.0)
                : t == BSON_TYPE_INT32 ? bson_append_int32(out, key, -1, 0)
                : t == BSON_TYPE_INT64 ? bson_append_int64(out, key, -1, 0)
                                       : false)
                   ? 1
                   : 0;
    }
    if ((cls != NUM_NEG && cls != NUM_POS) || !get_n(r, b, sizeof b)) {
        return -1;
    }
    bool neg = cls == NUM_NEG;
    if (neg) {
        for (size_t i = 0; i < sizeof b; i++) {
            b[i] = (uint8_t)~b[i];
        }
    }
    int e = (int)(((uint32_t)b[0] << 8) | b[1]) - EXP_BIAS;
    uint64_t m = 0;
    for (int i = 0; i < 8; i++) {
        m = (m << 8) | b[2 + i];
    }
    if (t == BSON_TYPE_DOUBLE) {
        /* 1.m * 2^e: a double's 53 significant bits (fewer when subnormal). */
        uint64_t sig = (UINT64_C(1) << 52) | (m >> 12);
        double d = ldexp((double)sig, e - 52);
        return bson_append_double(out, key, -1, neg ? -d : d) ? 1 : -1;
    }
    if ((t != BSON_TYPE_INT32 && t != BSON_TYPE_INT64) || e < 0 || e > 63) {
        return 0;
    }
    uint64_t u = e == 0 ? 1 : (UINT64_C(1) << e) | (m >> (64 - e));
    if (t == BSON_TYPE_INT32) {
        int64_t v = neg ? -(int64_t)u : (int64_t)u;
        return v >= INT32_MIN && v <= INT32_MAX && bson_append_int32(out, key, -1, (int32_t)v) ? 1
                                                                                               : 0;
    }
    int64_t v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return bson_append_int64(out, key, -1, v) ? 1 : -1;
}

static int dec_body(struct rd *r, uint8_t rank, bson_t *out, const char *key, bool top, int depth);

/* Elements up to the 0x00 terminator, appended to `doc`. */
static int dec_elems(struct rd *r, bson_t *doc, int depth)
{
    for (;;) {
        uint8_t rank;
        if (!get(r, &rank)) {
            return -1;
        }
        if (rank == 0) {
            return 1;
        }
        if (!get_escaped(r)) {
            return -1;
        }
        char name[256];
        if (r->tmp.len >= sizeof name) {
            return 0;
        }
        memcpy(name, r->tmp.data, r->tmp.len);
        name[r->tmp.len] = '\0';
        int rc = dec_body(r, rank, doc, name, false, depth + 1);
        if (rc <= 0) {
            return rc;
        }
    }
}

/* One value of rank `rank` appended as `key`: 1, 0 when not exact, -1 when
 * the key is malformed. `top`: a field's own value (nulls carry a bit). */
static int dec_body(struct rd *r, uint8_t rank, bson_t *out, const char *key, bool top, int depth)
{
    uint8_t t, b[12];
    bson_t sub;
    int rc;

    if (depth > MAX_DEC_DEPTH) {
        return 0;
    }
    switch (rank) {
        case QRY_RANK_MINKEY:
            return bson_append_minkey(out, key, -1) ? 1 : -1;
        case QRY_RANK_MAXKEY:
            return bson_append_maxkey(out, key, -1) ? 1 : -1;
        case QRY_RANK_UNDEFINED:
            return bson_append_undefined(out, key, -1) ? 1 : -1;
        case QRY_RANK_NULL:
            if (top) {
                if (!next_tb(r, &t) || (t != TB_MISSING && t != BSON_TYPE_NULL)) {
                    return 0;
                }
                if (t == TB_MISSING) {
                    return 1; /* the field is absent */
                }
            }
            return bson_append_null(out, key, -1) ? 1 : -1;
        case QRY_RANK_NUMBER:
            return next_tb(r, &t) ? dec_number(r, t, out, key) : 0;
        case QRY_RANK_STRING:
            if (!next_tb(r, &t) || (t != BSON_TYPE_UTF8 && t != BSON_TYPE_SYMBOL)) {
                return 0;
            }
            if (!get_escaped(r)) {
                return -1;
            }
            if (t == BSON_TYPE_SYMBOL) {
                return bson_append_symbol(out, key, -1, (const char *)r->tmp.data, (int)r->tmp.len)
                           ? 1
                           : -1;
            }
            return bson_append_utf8(out, key, -1, (const char *)r->tmp.data, (int)r->tmp.len) ? 1
                                                                                              : -1;
        case QRY_RANK_OBJECT:
        case QRY_RANK_ARRAY:
            if (rank == QRY_RANK_OBJECT ? !bson_append_document_begin(out, key, -1, &sub)
                                        : !bson_append_array_begin(out, key, -1, &sub)) {
                return -1;
            }
            rc = dec_elems(r, &sub, depth);
            if (rank == QRY_RANK_OBJECT ? !bson_append_document_end(out, &sub)
                                        : !bson_append_array_end(out, &sub)) {
                return -1;
            }
            return rc;
        case QRY_RANK_BINARY: {
            uint8_t sub_type;
            if (!get_n(r, b, 4) || !get(r, &sub_type)) {
                return -1;
            }
            uint32_t len = be32(b);
            if (len > r->n - r->pos) {
                return -1;
            }
            cairn_buf_reset(&r->tmp);
            if (cairn_buf_reserve(&r->tmp, len + 1) != 0) {
                return -1;
            }
            if (!get_n(r, r->tmp.data, len)) {
                return -1;
            }
            return bson_append_binary(out, key, -1, (bson_subtype_t)sub_type, r->tmp.data, len)
                       ? 1
                       : -1;
        }
        case QRY_RANK_OID: {
            bson_oid_t oid;
            if (!get_n(r, oid.bytes, 12)) {
                return -1;
            }
            return bson_append_oid(out, key, -1, &oid) ? 1 : -1;
        }
        case QRY_RANK_BOOL:
            if (!get(r, &t)) {
                return -1;
            }
            return bson_append_bool(out, key, -1, t != 0) ? 1 : -1;
        case QRY_RANK_DATE: {
            uint64_t u = 0;
            if (!get_n(r, b, 8)) {
                return -1;
            }
            for (int i = 0; i < 8; i++) {
                u = (u << 8) | b[i];
            }
            return bson_append_date_time(out, key, -1, (int64_t)(u ^ (UINT64_C(1) << 63))) ? 1 : -1;
        }
        case QRY_RANK_TIMESTAMP:
            if (!get_n(r, b, 8)) {
                return -1;
            }
            return bson_append_timestamp(out, key, -1, be32(b), be32(b + 4)) ? 1 : -1;
        case QRY_RANK_REGEX: {
            if (!get_escaped(r)) {
                return -1;
            }
            char *pat = bson_strndup((const char *)r->tmp.data, r->tmp.len);
            bool ok =
                get_escaped(r) && bson_append_regex(out, key, -1, pat, (const char *)r->tmp.data);
            bson_free(pat);
            return ok ? 1 : -1;
        }
        case QRY_RANK_CODE:
            if (!get_escaped(r)) {
                return -1;
            }
            return bson_append_code(out, key, -1, (const char *)r->tmp.data) ? 1 : -1;
        default:
            /* dbpointer, code with scope: rare; the caller fetches. */
            return 0;
    }
}

int qry_key_decode(const struct qry_index *ix,
                   const uint8_t *key,
                   size_t len,
                   const uint8_t *tb,
                   size_t tb_len,
                   bson_t *out)
{
    struct rd r = {key, len, 0, 0, tb, tb_len, 0, CAIRN_BUF_INIT};
    int rc = 1;

    for (size_t f = 0; f < qry_index_n_fields(ix) && rc > 0; f++) {
        bool desc;
        const char *path = qry_index_field(ix, f, &desc);
        uint8_t rank;
        r.x = desc ? 0xFF : 0;
        if (!get(&r, &rank)) {
            rc = -1;
            break;
        }
        rc = dec_body(&r, rank, out, path, true, 0);
    }
    if (rc > 0 && r.tb_pos != r.tb_n) {
        rc = 0; /* bytes after the fields are the entry's _id */
    }
    cairn_buf_free(&r.tmp);
    return rc;
}
