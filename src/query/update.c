/*
 * update.c: the public entry points of update documents (operators and
 * replacements): compiling, applying and freeing them, and upsert seeds.
 * The work is shared with the files listed in update_int.h.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/update_int.h"

/* ---- compiling --------------------------------------------------------- */

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
    {"$bit", OP_BIT},
};

bool qry_update_is_replacement(const struct qry_update *u)
{
    return u->replacement;
}

static void op_clear(struct op *o)
{
    upd_path_free(&o->path);
    upd_path_free(&o->to);
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

static int op_cmp(const void *a, const void *b, void *ctx)
{
    const struct op *x = a, *y = b;
    const struct path *px = x->kind == OP_RENAME ? &x->to : &x->path;
    const struct path *py = y->kind == OP_RENAME ? &y->to : &y->path;
    (void)ctx;
    return upd_path_order(px, py);
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
        rv = upd_parse_array_filters(u, array_filters, err);
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
        rv = upd_compile_replacement(u, err);
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
            rv = upd_path_parse(bson_iter_key(&fields), &o->path, &u->afs, &o->dynamic, err);
            if (rv == 0) {
                for (size_t i = 0; i < o->path.n; i++) {
                    o->dollar = o->dollar || strcmp(o->path.parts[i], "$") == 0;
                }
                u->dynamic = u->dynamic || o->dynamic;
                u->dollar = u->dollar || o->dollar;
                rv = upd_parse_op_arg(o, bson_iter_key(&fields), &u->afs, err);
            }
            if (rv != 0) {
                op_clear(o);
                break;
            }
            u->n_ops++;
        }
    }
    if (rv == 0) {
        rv = upd_check_conflicts(u, err);
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

static void id_desc(struct apply_ctx *c)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, c->doc, "_id")) {
        qry_fmt_value(bson_iter_value(&it), c->id_val, sizeof c->id_val);
        /* A long value is cut short here, deliberately; testing the result
         * tells gcc so (-Wformat-truncation, which it raises once
         * qry_fmt_value is in another file). snprintf does not fail. */
        if (snprintf(c->id, sizeof c->id, "{_id: %s}", c->id_val) < 0) {
            c->id[0] = '\0';
        }
    } else {
        snprintf(c->id_val, sizeof c->id_val, "<none>");
        snprintf(c->id, sizeof c->id, "{}");
    }
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
    root = upd_node_new("");
    if (root == NULL) {
        bson_init(out);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    root->val.value_type = BSON_TYPE_DOCUMENT;
    rv = upd_node_load(root, bson_get_data(doc), doc->len, 0);
    if (rv != 0) {
        upd_node_free(root);
        bson_init(out);
        return rv == CAIRN_EBADDOC ? cairn_error_mongo(err, rv, MONGO_Overflow,
                                                       "document is invalid or nested too deeply")
                                   : cairn_error_setf(err, rv, "out of memory");
    }
    if (u->dynamic) {
        rv = upd_apply_dynamic(u, &c, root, inserting, match_pos);
    }
    for (size_t i = 0; !u->dynamic && i < u->n_ops && rv == 0; i++) {
        if (u->ops[i].kind == OP_SETONINSERT && !inserting) {
            continue;
        }
        rv = upd_apply_op(&c, &u->ops[i], root);
    }
    if (rv != 0) {
        upd_node_free(root);
        bson_init(out);
        return rv;
    }
    bson_init(&res);
    upd_node_write_kids(&res, root);
    upd_node_free(root);
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
    int rv = upd_path_split(key, &p);

    if (rv == CAIRN_ENOMEM) {
        return cairn_error_setf(err, rv, "out of memory");
    }
    if (rv == -2) {
        upd_path_free(&p);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "filter path '%.60s...' is too deep", key);
    }
    if (rv != 0) {
        upd_path_free(&p);
        return 0; /* not a usable path: contributes nothing */
    }
    for (size_t i = 0; i < p.n; i++) {
        if (p.parts[i][0] == '$') {
            upd_path_free(&p);
            return 0;
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->paths[i].full, p.full) == 0) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NotSingleValueField,
                                   "cannot infer query fields to set, path '%s' is matched twice",
                                   p.full);
        } else if (upd_path_is_prefix(&s->paths[i], &p) || upd_path_is_prefix(&p, &s->paths[i])) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NotSingleValueField,
                                   "cannot infer query fields to set, both paths '%s' and '%s' "
                                   "are matched",
                                   s->paths[i].full, p.full);
        }
        if (rv != 0) {
            upd_path_free(&p);
            return rv;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct path *np = realloc(s->paths, cap * sizeof *np);
        bson_value_t *nv;
        if (np == NULL) {
            upd_path_free(&p);
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        s->paths = np;
        nv = realloc(s->vals, cap * sizeof *nv);
        if (nv == NULL) {
            upd_path_free(&p);
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
        } else if (upd_is_operator_doc(v)) {
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
    struct node *root = upd_node_new("");
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
        rv = upd_walk(&c, root, &s.paths[i], true, false, &parent, &idx);
        if (rv == 0) {
            rv = upd_put_value(&c, parent, idx, upd_leaf_name(&s.paths[i]), &s.vals[i]);
        }
    }
    if (rv == 0) {
        bson_t tmp;
        bson_init(&tmp);
        upd_node_write_kids(&tmp, root);
        bson_destroy(out);
        id_first(&tmp, out);
        bson_destroy(&tmp);
    }
    for (size_t i = 0; i < s.n; i++) {
        upd_path_free(&s.paths[i]);
    }
    free(s.paths);
    free(s.vals);
    upd_node_free(root);
    return rv;
}
