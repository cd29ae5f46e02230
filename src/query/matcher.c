/*
 * matcher.c: query filter compilation with MongoDB semantics: implicit and
 * operator equality, comparisons, $in/$nin, $exists, $type, $size, $mod,
 * $regex, $elemMatch, $all, $not, $and/$or/$nor. A filter compiles into a
 * tree of struct node (matcher_int.h), which this file builds, inspects
 * (qry_matcher_id_equality) and frees. Matching the tree (type bracketing,
 * the array rules of dotted paths) is in matcher_eval.c; compiling and
 * running a $regex in matcher_regex.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "query/matcher_int.h"
#include "query/query.h"
#include "query/query_int.h"

#define MAX_DEPTH 100

/* ---- node construction --------------------------------------------------- */

static void node_free(struct node *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        node_free(n->kids[i]);
    }
    free(n->kids);
    free(n->path);
    if (n->has_val) {
        bson_value_destroy(&n->val);
    }
    for (size_t i = 0; i < n->nrx; i++) {
        regfree(&n->rxs[i].re);
        free(n->rxs[i].pattern);
        free(n->rxs[i].options);
    }
    free(n->rxs);
    qry_valueset_fini(&n->inset);
    free(n);
}

static struct node *node_new(enum kind k, const char *path)
{
    struct node *n = calloc(1, sizeof *n);
    if (!n) {
        return NULL;
    }
    n->kind = k;
    if (path) {
        n->path = strdup(path);
        if (!n->path) {
            free(n);
            return NULL;
        }
    }
    return n;
}

int mt_nomem(struct cairn_error *err)
{
    return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory compiling query filter");
}

static int bad(struct cairn_error *err, const char *msg)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "%s", msg);
}

static int add_kid(struct node *parent, struct node *kid, struct cairn_error *err)
{
    struct node **k = realloc(parent->kids, (parent->nkids + 1) * sizeof *k);
    if (!k) {
        node_free(kid);
        return mt_nomem(err);
    }
    parent->kids = k;
    k[parent->nkids++] = kid;
    return 0;
}

/* ---- compilation ------------------------------------------------------------ */

static int compile_doc(const uint8_t *data,
                       uint32_t len,
                       int depth,
                       struct node **out,
                       struct cairn_error *err);
static int compile_ops(const char *path,
                       const bson_iter_t *opdoc,
                       int depth,
                       struct node *and_node,
                       struct cairn_error *err);

static bool is_not_supported_path_op(const char *k)
{
    static const char *const ops[] = {
        "$near",        "$nearSphere", "$geoWithin",    "$geoIntersects", "$within",
        "$box",         "$center",     "$centerSphere", "$polygon",       "$maxDistance",
        "$minDistance", "$bitsAllSet", "$bitsAnySet",   "$bitsAllClear",  "$bitsAnyClear",
        "$geometry",    "$jsonSchema", "$text",         "$where",         "$expr"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(k, ops[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int not_supported(struct cairn_error *err, const char *op)
{
    return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                             "%s is not supported by cairn", op);
}

/* True when a document value is an operator document: its first key starts
 * with '$' and it is not a DBRef-like literal ($ref/$id/$db). */
static bool is_operator_doc(const bson_iter_t *it)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &c) || !bson_iter_next(&c)) {
        return false;
    }
    const char *k = bson_iter_key(&c);
    if (k[0] != '$') {
        return false;
    }
    return strcmp(k, "$ref") != 0 && strcmp(k, "$id") != 0 && strcmp(k, "$db") != 0;
}

static int check_operand(const char *op, const bson_value_t *v, struct cairn_error *err)
{
    if (v->value_type == BSON_TYPE_UNDEFINED) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "cannot compare to undefined");
    }
    (void)op;
    return 0;
}

static int make_cmp(const char *path,
                    enum cmp_op op,
                    const bson_value_t *v,
                    struct node **out,
                    struct cairn_error *err)
{
    int rc = check_operand(NULL, v, err);
    if (rc) {
        return rc;
    }
    struct node *n = node_new(K_CMP, path);
    if (!n) {
        return mt_nomem(err);
    }
    n->op = op;
    bson_value_copy(v, &n->val);
    n->has_val = true;
    *out = n;
    return 0;
}

static int make_regex(const char *path,
                      const char *pattern,
                      const char *options,
                      struct node **out,
                      struct cairn_error *err)
{
    struct node *n = node_new(K_REGEX, path);
    if (!n) {
        return mt_nomem(err);
    }
    int rc = mt_node_add_rx(n, pattern, options, err);
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int wrap_not(struct node *kid, struct node **out, struct cairn_error *err)
{
    struct node *n = node_new(K_NOT, NULL);
    if (!n) {
        node_free(kid);
        return mt_nomem(err);
    }
    int rc = add_kid(n, kid, err);
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

/* Equality condition {path: value} (regex values match as regexes). */
static int compile_equality(const char *path,
                            const bson_iter_t *it,
                            struct node **out,
                            struct cairn_error *err)
{
    if (BSON_ITER_HOLDS_REGEX(it)) {
        const char *opts;
        const char *pat = bson_iter_regex(it, &opts);
        return make_regex(path, pat, opts ? opts : "", out, err);
    }
    return make_cmp(path, OP_EQ, bson_iter_value((bson_iter_t *)it), out, err);
}

static int compile_in(const char *path,
                      const bson_iter_t *it,
                      const char *name,
                      struct node **out,
                      struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "%s needs an array", name);
    }
    struct node *n = node_new(K_IN, path);
    if (!n) {
        return mt_nomem(err);
    }
    bson_iter_t c;
    int rc = 0;
    qry_valueset_init(&n->inset, true);
    if (!bson_iter_recurse(it, &c)) {
        node_free(n);
        return bad(err, "$in needs an array");
    }
    while (bson_iter_next(&c)) {
        if (BSON_ITER_HOLDS_REGEX(&c)) {
            const char *opts;
            const char *pat = bson_iter_regex(&c, &opts);
            rc = mt_node_add_rx(n, pat, opts, err);
            if (rc) {
                break;
            }
            continue;
        }
        if (is_operator_doc(&c)) {
            rc = bad(err, "cannot nest $ under $in");
            break;
        }
        const bson_value_t *v = bson_iter_value(&c);
        rc = check_operand(name, v, err);
        if (rc) {
            break;
        }
        if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
            n->in_null = true;
        }
        if (qry_valueset_add(&n->inset, v, NULL) != 0) {
            rc = mt_nomem(err);
            break;
        }
    }
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

struct type_alias
{
    const char *name;
    int code;
};

static const struct type_alias type_aliases[] = {
    {"double", 1},      {"string", 2},     {"object", 3},
    {"array", 4},       {"binData", 5},    {"undefined", 6},
    {"objectId", 7},    {"bool", 8},       {"date", 9},
    {"null", 10},       {"regex", 11},     {"dbPointer", 12},
    {"javascript", 13}, {"symbol", 14},    {"javascriptWithScope", 15},
    {"int", 16},        {"timestamp", 17}, {"long", 18},
    {"decimal", 19},    {"minKey", -1},    {"maxKey", 127},
};

static int type_code_bit(int code, uint32_t *bit)
{
    if (code >= 1 && code <= 19) {
        *bit = 1u << code;
    } else if (code == -1) {
        *bit = 1u << TYPE_BIT_MINKEY;
    } else if (code == 127) {
        *bit = 1u << TYPE_BIT_MAXKEY;
    } else {
        return -1;
    }
    return 0;
}

static int parse_type_one(const bson_iter_t *it, uint32_t *mask, struct cairn_error *err)
{
    if (BSON_ITER_HOLDS_UTF8(it)) {
        const char *s = bson_iter_utf8(it, NULL);
        if (strcmp(s, "number") == 0) {
            *mask |= 1u << TYPE_BIT_NUMBER;
            return 0;
        }
        for (size_t i = 0; i < sizeof type_aliases / sizeof type_aliases[0]; i++) {
            if (strcmp(s, type_aliases[i].name) == 0) {
                uint32_t b = 0;
                (void)type_code_bit(type_aliases[i].code, &b);
                *mask |= b;
                return 0;
            }
        }
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "Unknown type name alias: %s",
                                 s);
    }
    if (BSON_ITER_HOLDS_NUMBER(it) || BSON_ITER_HOLDS_DECIMAL128(it)) {
        double d = qry_number_as_double(bson_iter_value((bson_iter_t *)it));
        uint32_t b;
        if (!isfinite(d) || d != floor(d) || d < -1 || d > 127 || type_code_bit((int)d, &b) != 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Invalid numerical type code: %g", d);
        }
        *mask |= b;
        return 0;
    }
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "type must be represented as a number or a string");
}

static int compile_type(const char *path,
                        const bson_iter_t *it,
                        struct node **out,
                        struct cairn_error *err)
{
    uint32_t mask = 0;
    int rc = 0;
    if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_t c;
        if (bson_iter_recurse(it, &c)) {
            while (rc == 0 && bson_iter_next(&c)) {
                rc = parse_type_one(&c, &mask, err);
            }
        }
    } else {
        rc = parse_type_one(it, &mask, err);
    }
    if (rc) {
        return rc;
    }
    struct node *n = node_new(K_TYPE, path);
    if (!n) {
        return mt_nomem(err);
    }
    n->type_mask = mask;
    *out = n;
    return 0;
}

static bool value_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_BOOL:
            return v->value.v_bool;
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128:
            return qry_number_as_double(v) != 0.0;
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            return false;
        default:
            return true;
    }
}

static bool iter_int64(const bson_iter_t *it, int64_t *out, bool *whole)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    *whole = true;
    if (v->value_type == BSON_TYPE_INT32) {
        *out = v->value.v_int32;
        return true;
    }
    if (v->value_type == BSON_TYPE_INT64) {
        *out = v->value.v_int64;
        return true;
    }
    if (v->value_type == BSON_TYPE_DOUBLE || v->value_type == BSON_TYPE_DECIMAL128) {
        double d = qry_number_as_double(v);
        if (!isfinite(d) || d != trunc(d) || d >= 9223372036854775808.0 ||
            d < -9223372036854775808.0) {
            *whole = false;
            *out = 0;
            if (isfinite(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
                *out = (int64_t)d;
            }
            return true;
        }
        *out = (int64_t)d;
        return true;
    }
    return false;
}

static int compile_size(const char *path,
                        const bson_iter_t *it,
                        struct node **out,
                        struct cairn_error *err)
{
    int64_t k;
    bool whole;
    if (!iter_int64(it, &k, &whole)) {
        return bad(err, "$size needs a number");
    }
    if (!whole) {
        return bad(err, "$size must be a whole number");
    }
    if (k < 0) {
        return bad(err, "$size may not be negative");
    }
    struct node *n = node_new(K_SIZE, path);
    if (!n) {
        return mt_nomem(err);
    }
    n->n = k;
    *out = n;
    return 0;
}

static int compile_mod(const char *path,
                       const bson_iter_t *it,
                       struct node **out,
                       struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return bad(err, "malformed mod, needs to be an array");
    }
    bson_iter_t c;
    int64_t parts[2];
    int k = 0;
    if (bson_iter_recurse(it, &c)) {
        while (bson_iter_next(&c)) {
            if (k == 2) {
                return bad(err, "malformed mod, too many elements");
            }
            bool whole;
            if (!iter_int64(&c, &parts[k], &whole)) {
                return bad(err, k == 0 ? "malformed mod, divisor not a number"
                                       : "malformed mod, remainder not a number");
            }
            k++;
        }
    }
    if (k < 2) {
        return bad(err, "malformed mod, not enough elements");
    }
    if (parts[0] == 0) {
        return bad(err, "divisor cannot be 0");
    }
    struct node *n = node_new(K_MOD, path);
    if (!n) {
        return mt_nomem(err);
    }
    n->divisor = parts[0];
    n->remainder = parts[1];
    *out = n;
    return 0;
}

/* True for operators valid at the top level of a filter (so that an
 * $elemMatch whose first key is one of them is in object form). */
static bool is_top_level_op(const char *k)
{
    return strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0 ||
           strcmp(k, "$where") == 0 || strcmp(k, "$expr") == 0 || strcmp(k, "$text") == 0 ||
           strcmp(k, "$comment") == 0 || strcmp(k, "$jsonSchema") == 0 ||
           strcmp(k, "$alwaysTrue") == 0 || strcmp(k, "$alwaysFalse") == 0;
}

static int compile_elem_match(const char *path,
                              const bson_iter_t *it,
                              int depth,
                              struct node **out,
                              struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return bad(err, "$elemMatch needs an Object");
    }
    bool value_form = false;
    bson_iter_t c;
    if (bson_iter_recurse(it, &c) && bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        value_form = k[0] == '$' && !is_top_level_op(k) && strcmp(k, "$ref") != 0 &&
                     strcmp(k, "$id") != 0 && strcmp(k, "$db") != 0;
    }
    struct node *n = node_new(value_form ? K_ELEM_VAL : K_ELEM_OBJ, path);
    if (!n) {
        return mt_nomem(err);
    }
    struct node *kid = NULL;
    int rc;
    if (value_form) {
        kid = node_new(K_AND, NULL);
        if (!kid) {
            node_free(n);
            return mt_nomem(err);
        }
        rc = compile_ops(NULL, it, depth + 1, kid, err);
    } else {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(it, &len, &data);
        rc = compile_doc(data, len, depth + 1, &kid, err);
    }
    if (rc == 0) {
        rc = add_kid(n, kid, err);
        kid = NULL;
    }
    if (rc) {
        node_free(kid);
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int compile_all(const char *path,
                       const bson_iter_t *it,
                       int depth,
                       struct node **out,
                       struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return bad(err, "$all needs an array");
    }
    struct node *and_node = node_new(K_AND, NULL);
    if (!and_node) {
        return mt_nomem(err);
    }
    bson_iter_t c;
    int rc = 0;
    int n_elem = 0, n_other = 0;
    if (bson_iter_recurse(it, &c)) {
        while (rc == 0 && bson_iter_next(&c)) {
            struct node *kid = NULL;
            bson_iter_t first;
            bool em = false;
            if (BSON_ITER_HOLDS_DOCUMENT(&c) && bson_iter_recurse(&c, &first) &&
                bson_iter_next(&first) && strcmp(bson_iter_key(&first), "$elemMatch") == 0) {
                em = true;
            }
            if (em) {
                if (n_other) {
                    rc = bad(err, "$all/$elemMatch has to be consistent");
                    break;
                }
                n_elem++;
                rc = compile_elem_match(path, &first, depth, &kid, err);
            } else {
                if (n_elem) {
                    rc = bad(err, "$all/$elemMatch has to be consistent");
                    break;
                }
                n_other++;
                if (is_operator_doc(&c)) {
                    rc = bad(err, "no $ expressions in $all");
                    break;
                }
                rc = compile_equality(path, &c, &kid, err);
            }
            if (rc == 0) {
                rc = add_kid(and_node, kid, err);
            }
        }
    }
    if (rc) {
        node_free(and_node);
        return rc;
    }
    if (and_node->nkids == 0) {
        and_node->kind = K_FALSE; /* $all: [] matches nothing */
    }
    *out = and_node;
    return 0;
}

static int compile_not(const char *path,
                       const bson_iter_t *it,
                       int depth,
                       struct node **out,
                       struct cairn_error *err)
{
    struct node *kid = NULL;
    int rc;
    if (BSON_ITER_HOLDS_REGEX(it)) {
        rc = compile_equality(path, it, &kid, err);
    } else if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_t c;
        if (!bson_iter_recurse(it, &c) || !bson_iter_next(&c)) {
            return bad(err, "$not cannot be empty");
        }
        if (bson_iter_key(&c)[0] != '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "unknown operator: %s",
                                     bson_iter_key(&c));
        }
        kid = node_new(K_AND, NULL);
        if (!kid) {
            return mt_nomem(err);
        }
        rc = compile_ops(path, it, depth + 1, kid, err);
    } else {
        return bad(err, "$not needs a regex or a document");
    }
    if (rc) {
        node_free(kid);
        return rc;
    }
    return wrap_not(kid, out, err);
}

/* Compiles the operator document `opdoc` ({$gt: 1, $lt: 5, ...}) for `path`
 * (NULL = value context), adding one node per operator to and_node. */
static int compile_ops(const char *path,
                       const bson_iter_t *opdoc,
                       int depth,
                       struct node *and_node,
                       struct cairn_error *err)
{
    if (depth > MAX_DEPTH) {
        return bad(err, "exceeded maximum query tree depth of 100");
    }
    bson_iter_t c;
    if (!bson_iter_recurse(opdoc, &c)) {
        return bad(err, "invalid operator document");
    }
    /* $regex and $options combine into one node. */
    bson_iter_t rx_it, opt_it;
    bool has_rx = false, has_opt = false;
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        if (strcmp(k, "$regex") == 0) {
            rx_it = c;
            has_rx = true;
        } else if (strcmp(k, "$options") == 0) {
            opt_it = c;
            has_opt = true;
        }
    }
    if (has_opt && !has_rx) {
        return bad(err, "$options needs a $regex");
    }
    bson_iter_recurse(opdoc, &c);
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        struct node *kid = NULL;
        int rc = 0;
        const bson_value_t *v = bson_iter_value(&c);
        if (k[0] != '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "unknown operator: %s", k);
        }
        if (strcmp(k, "$eq") == 0) {
            rc = make_cmp(path, OP_EQ, v, &kid, err);
        } else if (strcmp(k, "$ne") == 0) {
            if (v->value_type == BSON_TYPE_REGEX) {
                return bad(err, "Can't have regex as arg to $ne.");
            }
            rc = make_cmp(path, OP_EQ, v, &kid, err);
            if (rc == 0) {
                rc = wrap_not(kid, &kid, err);
            }
        } else if (strcmp(k, "$lt") == 0 || strcmp(k, "$lte") == 0 || strcmp(k, "$gt") == 0 ||
                   strcmp(k, "$gte") == 0) {
            enum cmp_op op =
                k[1] == 'l' ? (k[3] == 'e' ? OP_LTE : OP_LT) : (k[3] == 'e' ? OP_GTE : OP_GT);
            if (v->value_type == BSON_TYPE_REGEX) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "Can't have RegEx as arg to %s", k);
            }
            rc = make_cmp(path, op, v, &kid, err);
        } else if (strcmp(k, "$in") == 0) {
            rc = compile_in(path, &c, "$in", &kid, err);
        } else if (strcmp(k, "$nin") == 0) {
            rc = compile_in(path, &c, "$nin", &kid, err);
            if (rc == 0) {
                rc = wrap_not(kid, &kid, err);
            }
        } else if (strcmp(k, "$exists") == 0) {
            kid = node_new(K_EXISTS, path);
            if (!kid) {
                return mt_nomem(err);
            }
            if (!value_truthy(v)) {
                rc = wrap_not(kid, &kid, err);
            }
        } else if (strcmp(k, "$type") == 0) {
            rc = compile_type(path, &c, &kid, err);
        } else if (strcmp(k, "$size") == 0) {
            rc = compile_size(path, &c, &kid, err);
        } else if (strcmp(k, "$mod") == 0) {
            rc = compile_mod(path, &c, &kid, err);
        } else if (strcmp(k, "$regex") == 0) {
            const char *pat, *opts = "";
            if (BSON_ITER_HOLDS_REGEX(&rx_it)) {
                pat = bson_iter_regex(&rx_it, &opts);
                if (!opts) {
                    opts = "";
                }
                if (has_opt && opts[0]) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexOptionsTwice,
                                             "options set in both $regex and $options");
                }
            } else if (BSON_ITER_HOLDS_UTF8(&rx_it)) {
                uint32_t plen;
                pat = bson_iter_utf8(&rx_it, &plen);
                if (strlen(pat) != plen) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexInvalid,
                                             "Regular expression cannot contain an embedded null "
                                             "byte");
                }
            } else {
                return bad(err, "$regex has to be a string");
            }
            if (has_opt) {
                if (!BSON_ITER_HOLDS_UTF8(&opt_it)) {
                    return bad(err, "$options has to be a string");
                }
                opts = bson_iter_utf8(&opt_it, NULL);
            }
            rc = make_regex(path, pat, opts, &kid, err);
        } else if (strcmp(k, "$options") == 0) {
            continue; /* consumed with $regex */
        } else if (strcmp(k, "$elemMatch") == 0) {
            rc = compile_elem_match(path, &c, depth, &kid, err);
        } else if (strcmp(k, "$all") == 0) {
            rc = compile_all(path, &c, depth, &kid, err);
        } else if (strcmp(k, "$not") == 0) {
            rc = compile_not(path, &c, depth, &kid, err);
        } else if (is_not_supported_path_op(k)) {
            return not_supported(err, k);
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "unknown operator: %s", k);
        }
        if (rc) {
            return rc;
        }
        rc = add_kid(and_node, kid, err);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int compile_logical(const char *k,
                           const bson_iter_t *it,
                           int depth,
                           struct node **out,
                           struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return bad(err, "$and/$or/$nor must be a nonempty array");
    }
    enum kind kind = strcmp(k, "$and") == 0 ? K_AND : (strcmp(k, "$or") == 0 ? K_OR : K_NOR);
    struct node *n = node_new(kind, NULL);
    if (!n) {
        return mt_nomem(err);
    }
    bson_iter_t c;
    int rc = 0;
    if (bson_iter_recurse(it, &c)) {
        while (rc == 0 && bson_iter_next(&c)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&c)) {
                rc = bad(err, "$or/$and/$nor entries need to be full objects");
                break;
            }
            uint32_t len;
            const uint8_t *data;
            struct node *kid = NULL;
            bson_iter_document(&c, &len, &data);
            rc = compile_doc(data, len, depth + 1, &kid, err);
            if (rc == 0) {
                rc = add_kid(n, kid, err);
            }
        }
    }
    if (rc == 0 && n->nkids == 0) {
        rc = bad(err, "$and/$or/$nor must be a nonempty array");
    }
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int compile_doc(const uint8_t *data,
                       uint32_t len,
                       int depth,
                       struct node **out,
                       struct cairn_error *err)
{
    if (depth > MAX_DEPTH) {
        return bad(err, "exceeded maximum query tree depth of 100");
    }
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "invalid BSON in query filter");
    }
    struct node *root = node_new(K_AND, NULL);
    if (!root) {
        return mt_nomem(err);
    }
    int rc = 0;
    while (rc == 0 && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        struct node *kid = NULL;
        if (k[0] == '$') {
            if (strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0) {
                rc = compile_logical(k, &it, depth, &kid, err);
            } else if (strcmp(k, "$comment") == 0) {
                continue;
            } else if (strcmp(k, "$alwaysTrue") == 0 || strcmp(k, "$alwaysFalse") == 0) {
                const bson_value_t *v = bson_iter_value(&it);
                if (!qry_is_number(v->value_type) || qry_number_as_double(v) != 1.0) {
                    rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                           "%s must be an integer value of 1", k);
                    break;
                }
                kid = node_new(k[7] == 'T' ? K_TRUE : K_FALSE, NULL);
                if (!kid) {
                    rc = mt_nomem(err);
                }
            } else if (strcmp(k, "$where") == 0 || strcmp(k, "$expr") == 0 ||
                       strcmp(k, "$text") == 0 || strcmp(k, "$jsonSchema") == 0 ||
                       strcmp(k, "$sampleRate") == 0) {
                rc = not_supported(err, k);
            } else {
                rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                       "unknown top level operator: %s", k);
            }
        } else if (is_operator_doc(&it)) {
            struct node *and_node = node_new(K_AND, NULL);
            if (!and_node) {
                rc = mt_nomem(err);
                break;
            }
            rc = compile_ops(k, &it, depth + 1, and_node, err);
            if (rc) {
                node_free(and_node);
            } else if (and_node->nkids == 1) {
                kid = and_node->kids[0];
                and_node->nkids = 0;
                node_free(and_node);
            } else {
                kid = and_node;
            }
        } else {
            rc = compile_equality(k, &it, &kid, err);
        }
        if (rc == 0) {
            rc = add_kid(root, kid, err);
        }
    }
    if (rc) {
        node_free(root);
        return rc;
    }
    *out = root;
    return 0;
}

/* ---- public API ------------------------------------------------------------ */

int qry_matcher_compile(const bson_t *filter, struct qry_matcher **out, struct cairn_error *err)
{
    struct qry_matcher *m = calloc(1, sizeof *m);
    if (!m) {
        return mt_nomem(err);
    }
    int rc = compile_doc(bson_get_data(filter), filter->len, 0, &m->root, err);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int qry_matcher_compile_value(const bson_value_t *spec,
                              struct qry_matcher **out,
                              struct cairn_error *err)
{
    struct qry_matcher *m = calloc(1, sizeof *m);
    if (!m) {
        return mt_nomem(err);
    }
    m->value_mode = true;
    /* Wrap the spec as {"": spec} to reuse the iterator-based compilers. */
    bson_t wrap = BSON_INITIALIZER;
    bson_iter_t it;
    int rc = 0;
    if (!bson_append_value(&wrap, "", 0, spec) || !bson_iter_init(&it, &wrap) ||
        !bson_iter_next(&it)) {
        rc = mt_nomem(err);
    } else if (is_operator_doc(&it)) {
        m->root = node_new(K_AND, NULL);
        if (!m->root) {
            rc = mt_nomem(err);
        } else {
            rc = compile_ops(NULL, &it, 1, m->root, err);
        }
    } else {
        rc = compile_equality(NULL, &it, &m->root, err);
    }
    bson_destroy(&wrap);
    if (rc) {
        node_free(m->root);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

static bool find_id_eq(const struct node *n, bson_value_t *id)
{
    if (n->kind == K_AND) {
        for (size_t i = 0; i < n->nkids; i++) {
            if (find_id_eq(n->kids[i], id)) {
                return true;
            }
        }
        return false;
    }
    if (n->kind == K_CMP && n->op == OP_EQ && n->path && strcmp(n->path, "_id") == 0) {
        bson_type_t t = n->val.value_type;
        if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX || t == BSON_TYPE_UNDEFINED) {
            return false;
        }
        *id = n->val;
        return true;
    }
    return false;
}

bool qry_matcher_id_equality(const struct qry_matcher *m, bson_value_t *id)
{
    if (m->value_mode) {
        return false;
    }
    return find_id_eq(m->root, id);
}

void qry_matcher_free(struct qry_matcher *m)
{
    if (!m) {
        return;
    }
    node_free(m->root);
    free(m);
}
