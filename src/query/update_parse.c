/*
 * update_parse.c: the checks and parsing behind qry_update_compile, one
 * piece of the update document at a time: each operator's argument
 * ($each/$slice/$position/$sort, $pull conditions, $rename targets,
 * $currentDate types, ...), replacement documents, the arrayFilters option,
 * and conflicts between the paths an update names. Messages and codes
 * follow mongod.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"
#include "query/update_int.h"

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

static int bad_arg_type(struct cairn_error *err,
                        const char *what,
                        const char *key,
                        const bson_value_t *v)
{
    char f[200];
    upd_fmt_field(f, sizeof f, key, v);
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "Cannot %s with non-numeric argument: {%s}", what, f);
}

bool upd_is_operator_doc(const bson_value_t *v)
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

    if (!upd_is_operator_doc(v) ||
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
            if (!upd_is_number(v->value_type)) {
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
            if (!upd_is_number(v->value_type)) {
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

/* $bit's argument: {and|or|xor: int32 or int64, ...}, at least one (mongod's messages). */
static int parse_bit(const bson_value_t *v, struct cairn_error *err)
{
    bson_t d;
    bson_iter_t it;
    bool any = false;
    char f[200];

    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The $bit modifier is not compatible with a %s. You must pass in "
                                 "an embedded document: {$bit: {field: {and/or/xor: #}}",
                                 qry_type_name(v->value_type));
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        upd_fmt_field(f, sizeof f, k, bson_iter_value(&it));
        if (strcmp(k, "and") != 0 && strcmp(k, "or") != 0 && strcmp(k, "xor") != 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "The $bit modifier only supports 'and', 'or', and 'xor', not "
                                     "'%s' which is an unknown operator: {%s}",
                                     k, f);
        }
        if (!BSON_ITER_HOLDS_INT32(&it) && !BSON_ITER_HOLDS_INT64(&it)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "The $bit modifier field must be an Integer(32/64 bit); a "
                                     "'%s' is not supported here: {%s}",
                                     qry_type_name(bson_iter_type(&it)), f);
        }
        any = true;
    }
    if (!any) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "You must pass in at least one bitwise operation. The format is: "
                                 "{$bit: {field: {and/or/xor: #}}");
    }
    return 0;
}

int upd_parse_op_arg(struct op *o, const char *key, struct af_set *afs, struct cairn_error *err)
{
    const bson_value_t *v = &o->arg;
    int64_t d;
    char f[200];

    switch (o->kind) {
        case OP_INC:
        case OP_MUL:
            if (!upd_is_number(v->value_type)) {
                return bad_arg_type(err, o->kind == OP_INC ? "increment" : "multiply", key, v);
            }
            return 0;
        case OP_BIT:
            return parse_bit(v, err);
        case OP_RENAME: {
            struct path *to = &o->to;
            int rv;
            if (v->value_type != BSON_TYPE_UTF8) {
                upd_fmt_field(f, sizeof f, key, v);
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The 'to' field for $rename must be a string: %s", f);
            }
            if (strlen(v->value.v_utf8.str) != v->value.v_utf8.len) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The 'to' field for $rename contains a NUL byte");
            }
            bool to_dynamic;
            rv = upd_path_parse(v->value.v_utf8.str, to, afs, &to_dynamic, err);
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
            upd_fmt_field(f, sizeof f, key, v);
            if (strcmp(to->full, o->path.full) == 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "The source and target field for $rename must differ: %s",
                                         f);
            }
            if (upd_path_is_prefix(to, &o->path) || upd_path_is_prefix(&o->path, to)) {
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
                if (upd_is_operator_doc(v)) {
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

struct pref
{
    const struct path *p;
    size_t seq; /* order of appearance in the update document */
};

static int pref_cmp(const void *a, const void *b, void *ctx)
{
    const struct pref *x = a, *y = b;
    int c = upd_path_order(x->p, y->p);
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
int upd_check_conflicts(const struct qry_update *u, struct cairn_error *err)
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
        if (upd_path_is_prefix(v[i].p, v[i + 1].p)) {
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
            upd_is_af_ident(v[i].p->parts[l]) != upd_is_af_ident(v[i + 1].p->parts[l])) {
            char at[512];
            upd_path_prefix_str(v[i].p, l, at, sizeof at);
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConflictingUpdateOperators,
                                   "Updating the path '%s' would create a conflict at '%s'",
                                   later->p->full, at);
            break;
        }
    }
    free(v);
    return rv;
}

int upd_compile_replacement(struct qry_update *u, struct cairn_error *err)
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
int upd_parse_array_filters(struct qry_update *u, const bson_t *afs, struct cairn_error *err)
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
        if (rv == 0 && upd_af_find(&u->afs, name, strlen(name)) != NULL) {
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
