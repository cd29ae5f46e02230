/*
 * matcher_eval.c: matching documents and values against a compiled query
 * filter (the tree of matcher_int.h) with MongoDB semantics: comparisons
 * with type bracketing, the array rules of dotted paths, $elemMatch; and
 * the array position a match went through (qry_matcher_match_pos).
 */
#include <math.h>
#include <string.h>

#include "query/matcher_int.h"
#include "query/query.h"
#include "query/query_int.h"

/* ---- matching -------------------------------------------------------------- */

static bool is_nan_value(const bson_value_t *v)
{
    return qry_is_number(v->value_type) && isnan(qry_number_as_double(v));
}

/* Comparison with MongoDB's type bracketing; v == NULL is a missing field. */
static bool cmp_match(enum cmp_op op, const bson_value_t *v, const bson_value_t *rhs)
{
    int rv = v ? qry_type_rank(v->value_type) : QRY_RANK_UNDEFINED;
    int rr = qry_type_rank(rhs->value_type);
    if (rv != rr) {
        if ((rv == QRY_RANK_UNDEFINED && rr == QRY_RANK_NULL) ||
            (rv == QRY_RANK_NULL && rr == QRY_RANK_UNDEFINED)) {
            return op == OP_EQ || op == OP_LTE || op == OP_GTE;
        }
        if (rhs->value_type == BSON_TYPE_MAXKEY) {
            return op == OP_LT || op == OP_LTE;
        }
        if (rhs->value_type == BSON_TYPE_MINKEY) {
            return op == OP_GT || op == OP_GTE;
        }
        return false;
    }
    if (!v) {
        return op == OP_EQ || op == OP_LTE || op == OP_GTE;
    }
    if (is_nan_value(v) || is_nan_value(rhs)) {
        bool both = is_nan_value(v) && is_nan_value(rhs);
        return (op == OP_EQ || op == OP_LTE || op == OP_GTE) && both;
    }
    int c = qry_cmp(v, rhs);
    switch (op) {
        case OP_EQ:
            return c == 0;
        case OP_LT:
            return c < 0;
        case OP_LTE:
            return c <= 0;
        case OP_GT:
            return c > 0;
        case OP_GTE:
            return c >= 0;
    }
    return false;
}

static uint32_t type_bit(bson_type_t t)
{
    if (t == BSON_TYPE_MINKEY) {
        return 1u << TYPE_BIT_MINKEY;
    }
    if (t == BSON_TYPE_MAXKEY) {
        return 1u << TYPE_BIT_MAXKEY;
    }
    if ((int)t >= 1 && (int)t <= 19) {
        return 1u << (int)t;
    }
    return 0;
}

struct ctx
{
    const uint8_t *doc; /* document context */
    uint32_t len;
    const bson_value_t *val; /* value context (NULL = missing) */
    bool expand;             /* value context: expand an array value */
};

static bool eval(const struct node *n, const struct ctx *c);

static bool match_doc_data(const struct node *n, const uint8_t *data, uint32_t len)
{
    struct ctx c = {data, len, NULL, false};
    return eval(n, &c);
}

static bool array_count(const bson_value_t *v, int64_t *count)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        return false;
    }
    int64_t k = 0;
    while (bson_iter_next(&it)) {
        k++;
    }
    *count = k;
    return true;
}

/* $elemMatch: the index of the first element of array `v` that matches, or
 * -1 (also when `v` is missing or not an array). */
static long elem_match_index(const struct node *n, const bson_value_t *v)
{
    if (!v || v->value_type != BSON_TYPE_ARRAY) {
        return -1;
    }
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        return -1;
    }
    long i = 0;
    for (; bson_iter_next(&it); i++) {
        const bson_value_t *e = bson_iter_value(&it);
        if (n->kind == K_ELEM_OBJ) {
            if (e->value_type != BSON_TYPE_DOCUMENT && e->value_type != BSON_TYPE_ARRAY) {
                continue;
            }
            if (match_doc_data(n->kids[0], e->value.v_doc.data, e->value.v_doc.data_len)) {
                return i;
            }
        } else {
            struct ctx c = {NULL, 0, e, false};
            if (eval(n->kids[0], &c)) {
                return i;
            }
        }
    }
    return -1;
}

/* Tests one reached value (NULL = missing) against a leaf predicate. */
static bool single(const struct node *n, const bson_value_t *v)
{
    switch (n->kind) {
        case K_CMP:
            return cmp_match(n->op, v, &n->val);
        case K_REGEX:
            return v && mt_rx_match_value(&n->rxs[0], v);
        case K_IN:
            /* Hashed: equality is qry_cmp's within a type rank, except that
             * null, undefined and a missing field all equal one another. */
            if (!v || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
                if (n->in_null) {
                    return true;
                }
            } else if (qry_valueset_has(&n->inset, v)) {
                return true;
            }
            if (v) {
                for (size_t i = 0; i < n->nrx; i++) {
                    if (mt_rx_match_value(&n->rxs[i], v)) {
                        return true;
                    }
                }
            }
            return false;
        case K_EXISTS:
            return v != NULL;
        case K_TYPE:
            if (!v) {
                return false;
            }
            if ((n->type_mask & (1u << TYPE_BIT_NUMBER)) && qry_is_number(v->value_type)) {
                return true;
            }
            return (n->type_mask & type_bit(v->value_type)) != 0;
        case K_SIZE: {
            int64_t k;
            return v && v->value_type == BSON_TYPE_ARRAY && array_count(v, &k) && k == n->n;
        }
        case K_MOD: {
            if (!v || !qry_is_number(v->value_type)) {
                return false;
            }
            int64_t x;
            if (v->value_type == BSON_TYPE_INT32) {
                x = v->value.v_int32;
            } else if (v->value_type == BSON_TYPE_INT64) {
                x = v->value.v_int64;
            } else {
                double d = qry_number_as_double(v);
                if (!isfinite(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0) {
                    return false;
                }
                x = (int64_t)d;
            }
            if (n->divisor == -1) {
                return n->remainder == 0;
            }
            return x % n->divisor == n->remainder;
        }
        case K_ELEM_OBJ:
        case K_ELEM_VAL:
            return elem_match_index(n, v) >= 0;
        default:
            return false;
    }
}

static bool expands(enum kind k)
{
    return k == K_CMP || k == K_REGEX || k == K_IN || k == K_TYPE || k == K_MOD;
}

struct visit_arg
{
    const struct node *n;
    bool matched;
};

static bool visit_cb(void *arg, const bson_iter_t *it, bool array_elem)
{
    (void)array_elem;
    struct visit_arg *va = arg;
    if (single(va->n, it ? bson_iter_value((bson_iter_t *)it) : NULL)) {
        va->matched = true;
        return true;
    }
    return false;
}

static bool eval_leaf(const struct node *n, const struct ctx *c)
{
    if (n->path) {
        if (!c->doc) {
            return false;
        }
        struct visit_arg va = {n, false};
        qry_path_walk(c->doc, c->len, n->path, expands(n->kind), visit_cb, &va);
        return va.matched;
    }
    if (single(n, c->val)) {
        return true;
    }
    if (c->expand && expands(n->kind) && c->val && c->val->value_type == BSON_TYPE_ARRAY) {
        bson_iter_t it;
        if (bson_iter_init_from_data(&it, c->val->value.v_doc.data, c->val->value.v_doc.data_len)) {
            while (bson_iter_next(&it)) {
                if (single(n, bson_iter_value(&it))) {
                    return true;
                }
            }
        }
    }
    return false;
}

static bool eval(const struct node *n, const struct ctx *c)
{
    switch (n->kind) {
        case K_AND:
            for (size_t i = 0; i < n->nkids; i++) {
                if (!eval(n->kids[i], c)) {
                    return false;
                }
            }
            return true;
        case K_OR:
            for (size_t i = 0; i < n->nkids; i++) {
                if (eval(n->kids[i], c)) {
                    return true;
                }
            }
            return false;
        case K_NOR:
            for (size_t i = 0; i < n->nkids; i++) {
                if (eval(n->kids[i], c)) {
                    return false;
                }
            }
            return true;
        case K_NOT:
            return !eval(n->kids[0], c);
        case K_TRUE:
            return true;
        case K_FALSE:
            return false;
        default:
            return eval_leaf(n, c);
    }
}

/* ---- public API ---------------------------------------------------------- */

bool qry_matcher_match_data(const struct qry_matcher *m, const uint8_t *data, uint32_t len)
{
    return match_doc_data(m->root, data, len);
}

bool qry_matcher_match(const struct qry_matcher *m, const bson_t *doc)
{
    return match_doc_data(m->root, bson_get_data(doc), doc->len);
}

bool qry_matcher_match_value(const struct qry_matcher *m, const bson_value_t *v)
{
    if (m->value_mode) {
        struct ctx c = {NULL, 0, v, true};
        return eval(m->root, &c);
    }
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        return false;
    }
    return match_doc_data(m->root, v->value.v_doc.data, v->value.v_doc.data_len);
}

/* ---- the matched array position (mongod's "elemMatchKey") --------------- */

/* True when leaf `n` matches through `elem`: `rest` NULL means `elem` is the
 * reached value itself, else the rest of the path inside document `elem`. */
static bool leaf_matches_in(const struct node *n, const bson_value_t *elem, const char *rest)
{
    if (rest == NULL) {
        if (single(n, elem)) {
            return true;
        }
        if (expands(n->kind) && elem->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t it;
            if (bson_iter_init_from_data(&it, elem->value.v_doc.data, elem->value.v_doc.data_len)) {
                while (bson_iter_next(&it)) {
                    if (single(n, bson_iter_value(&it))) {
                        return true;
                    }
                }
            }
        }
        return false;
    }
    if (elem->value_type != BSON_TYPE_DOCUMENT) {
        return false;
    }
    struct visit_arg va = {n, false};
    qry_path_walk(elem->value.v_doc.data, elem->value.v_doc.data_len, rest, expands(n->kind),
                  visit_cb, &va);
    return va.matched;
}

/* A canonical array index component p[0..len), or -1. */
static long index_component(const char *p, size_t len)
{
    long v = 0;
    if (len == 0 || len > 9 || (len > 1 && p[0] == '0')) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* For a leaf that matched `data`: the index, in the first array met along
 * its path, of the element it matched through; -1 when no array is on the
 * path or only an array as a whole matched. Elements are tried in order,
 * as mongod's element iterator yields them. */
static long leaf_position(const struct node *n, const uint8_t *data, uint32_t len)
{
    const char *p = n->path;
    bson_iter_t it, child;

    if (!bson_iter_init_from_data(&it, data, len)) {
        return -1;
    }
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t clen = dot ? (size_t)(dot - p) : strlen(p);
        if (!bson_iter_find_w_len(&it, p, (int)clen)) {
            return -1;
        }
        const bson_value_t *v = bson_iter_value(&it);
        if (v->value_type == BSON_TYPE_DOCUMENT && dot) {
            if (!bson_iter_recurse(&it, &child)) {
                return -1;
            }
            it = child;
            p = dot + 1;
            continue;
        }
        if (v->value_type != BSON_TYPE_ARRAY || !bson_iter_recurse(&it, &child)) {
            return -1;
        }
        long i = 0;
        if (!dot) {
            if (n->kind == K_ELEM_OBJ || n->kind == K_ELEM_VAL) {
                return elem_match_index(n, v);
            }
            if (!expands(n->kind) && n->kind != K_EXISTS) {
                return -1;
            }
            for (; bson_iter_next(&child); i++) {
                if (single(n, bson_iter_value(&child))) {
                    return i;
                }
            }
            return -1;
        }
        const char *rest = dot + 1;
        const char *rdot = strchr(rest, '.');
        long want = index_component(rest, rdot ? (size_t)(rdot - rest) : strlen(rest));
        for (; bson_iter_next(&child); i++) {
            const bson_value_t *ev = bson_iter_value(&child);
            if (i == want && leaf_matches_in(n, ev, rdot ? rdot + 1 : NULL)) {
                return i;
            }
            if (ev->value_type == BSON_TYPE_DOCUMENT && leaf_matches_in(n, ev, rest)) {
                return i;
            }
        }
        return -1;
    }
}

/* eval() in document context that also reports the matched array position:
 * in an $and the last child that reports one wins (as mongod's MatchDetails);
 * $or (of more than one clause), $nor and $not report none. */
static bool eval_pos(const struct node *n, const uint8_t *data, uint32_t len, long *pos)
{
    struct ctx c = {data, len, NULL, false};

    switch (n->kind) {
        case K_AND:
            for (size_t i = 0; i < n->nkids; i++) {
                long kp = -1;
                if (!eval_pos(n->kids[i], data, len, &kp)) {
                    return false;
                }
                if (kp >= 0) {
                    *pos = kp;
                }
            }
            return true;
        case K_OR:
            if (n->nkids == 1) {
                return eval_pos(n->kids[0], data, len, pos);
            }
            return eval(n, &c);
        case K_NOR:
        case K_NOT:
        case K_TRUE:
        case K_FALSE:
            return eval(n, &c);
        default:
            if (!eval_leaf(n, &c)) {
                return false;
            }
            if (n->path) {
                long lp = leaf_position(n, data, len);
                if (lp >= 0) {
                    *pos = lp;
                }
            }
            return true;
    }
}

bool qry_matcher_match_pos(const struct qry_matcher *m, const bson_t *doc, long *pos)
{
    *pos = -1;
    if (m->value_mode) {
        return false;
    }
    return eval_pos(m->root, bson_get_data(doc), doc->len, pos);
}
