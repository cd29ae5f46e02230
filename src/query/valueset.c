/*
 * valueset.c: the canonical value hash and the hash set of BSON values
 * under MongoDB equality (valueset.h). The table is open-addressed with
 * linear probing over indexes into the insertion-ordered value array; it
 * grows to keep the load factor at or below one half.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/cairn.h"
#include "lib/hash.h"
#include "query/query.h"
#include "query/query_int.h"
#include "query/valueset.h"

static uint64_t vhash(uint64_t h, const bson_value_t *v)
{
    int rank = qry_type_rank(v->value_type);
    h = cairn_hash_bytes(h, &rank, sizeof rank);
    switch (v->value_type) {
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128: {
            double d = qry_number_as_double(v);
            uint64_t bits;
            if (isnan(d)) {
                bits = 0x7ff8000000000000ULL;
            } else {
                if (d == 0) {
                    d = 0.0;
                }
                memcpy(&bits, &d, sizeof bits);
            }
            return cairn_hash_bytes(h, &bits, sizeof bits);
        }
        case BSON_TYPE_UTF8:
            return cairn_hash_bytes(h, v->value.v_utf8.str, v->value.v_utf8.len);
        case BSON_TYPE_SYMBOL:
            return cairn_hash_bytes(h, v->value.v_symbol.symbol, v->value.v_symbol.len);
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY: {
            bson_t d;
            bson_iter_t it;
            if (bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) &&
                bson_iter_init(&it, &d)) {
                while (bson_iter_next(&it)) {
                    if (v->value_type == BSON_TYPE_DOCUMENT) {
                        const char *k = bson_iter_key(&it);
                        h = cairn_hash_bytes(h, k, strlen(k) + 1);
                    }
                    h = vhash(h, bson_iter_value(&it));
                }
            }
            return h;
        }
        case BSON_TYPE_BOOL:
            return cairn_hash_bytes(h, &v->value.v_bool, 1);
        case BSON_TYPE_DATE_TIME:
            return cairn_hash_bytes(h, &v->value.v_datetime, sizeof v->value.v_datetime);
        case BSON_TYPE_OID:
            return cairn_hash_bytes(h, v->value.v_oid.bytes, 12);
        case BSON_TYPE_TIMESTAMP:
            h = cairn_hash_bytes(h, &v->value.v_timestamp.timestamp, 4);
            return cairn_hash_bytes(h, &v->value.v_timestamp.increment, 4);
        case BSON_TYPE_BINARY:
            h = cairn_hash_bytes(h, &v->value.v_binary.subtype, sizeof v->value.v_binary.subtype);
            return cairn_hash_bytes(h, v->value.v_binary.data, v->value.v_binary.data_len);
        case BSON_TYPE_REGEX:
            h = cairn_hash_bytes(h, v->value.v_regex.regex, strlen(v->value.v_regex.regex));
            return cairn_hash_bytes(
                h, v->value.v_regex.options ? v->value.v_regex.options : "",
                v->value.v_regex.options ? strlen(v->value.v_regex.options) : 0);
        default:
            return h;
    }
}

uint64_t qry_value_hash(const bson_value_t *v)
{
    uint64_t h = vhash(CAIRN_HASH_SEED, v);
    /* Spread the FNV result so the low bits used as a slot are mixed. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void qry_valueset_init(struct qry_valueset *s, bool owns)
{
    memset(s, 0, sizeof *s);
    s->owns = owns;
}

/* The slot holding a value equal to `v` (hash h), or the empty slot where
 * it would go. nslots > 0. */
static size_t probe(const struct qry_valueset *s, const bson_value_t *v, uint64_t h)
{
    size_t mask = s->nslots - 1;
    size_t i = (size_t)h & mask;
    for (;;) {
        size_t e = s->slots[i];
        if (e == 0) {
            return i;
        }
        if (s->h[e - 1] == h && qry_cmp(&s->v[e - 1], v) == 0) {
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* Room for one more value: the arrays and, at load 1/2, a table twice as
 * large. */
static int reserve(struct qry_valueset *s)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        bson_value_t *nv = realloc(s->v, nc * sizeof *nv);
        if (nv == NULL) {
            return CAIRN_ENOMEM;
        }
        s->v = nv;
        uint64_t *nh = realloc(s->h, nc * sizeof *nh);
        if (nh == NULL) {
            return CAIRN_ENOMEM;
        }
        s->h = nh;
        s->cap = nc;
    }
    return cairn_slots_reserve(&s->slots, &s->nslots, s->h, s->n, 32);
}

static int insert(struct qry_valueset *s, const bson_value_t *v, bool copy, bool *added)
{
    uint64_t h = qry_value_hash(v);
    bool dummy;
    if (added == NULL) {
        added = &dummy;
    }
    *added = false;
    if (s->nslots > 0 && s->slots[probe(s, v, h)] != 0) {
        return 0;
    }
    if (reserve(s) != 0) {
        return CAIRN_ENOMEM;
    }
    size_t slot = probe(s, v, h);
    if (copy) {
        bson_value_copy(v, &s->v[s->n]);
    } else {
        s->v[s->n] = *v;
    }
    s->h[s->n] = h;
    s->slots[slot] = ++s->n;
    *added = true;
    return 0;
}

int qry_valueset_add(struct qry_valueset *s, const bson_value_t *v, bool *added)
{
    return insert(s, v, s->owns, added);
}

int qry_valueset_add_take(struct qry_valueset *s, bson_value_t *v, bool *added)
{
    return insert(s, v, false, added);
}

bool qry_valueset_has(const struct qry_valueset *s, const bson_value_t *v)
{
    if (s->n == 0) {
        return false;
    }
    return s->slots[probe(s, v, qry_value_hash(v))] != 0;
}

static int cmp_values(const void *a, const void *b)
{
    return qry_cmp(a, b);
}

void qry_valueset_sort(struct qry_valueset *s)
{
    if (s->n < 2) {
        return;
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_values);
    for (size_t k = 0; k < s->n; k++) {
        s->h[k] = qry_value_hash(&s->v[k]);
    }
    cairn_slots_rebuild(s->slots, s->nslots, s->h, s->n);
}

void qry_valueset_fini(struct qry_valueset *s)
{
    if (s == NULL) {
        return;
    }
    if (s->owns) {
        for (size_t i = 0; i < s->n; i++) {
            bson_value_destroy(&s->v[i]);
        }
    }
    free(s->v);
    free(s->h);
    free(s->slots);
    qry_valueset_init(s, s->owns);
}
