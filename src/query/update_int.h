/*
 * update_int.h: the private interface between the files of the update
 * implementation, and the small value helpers they share with the rest of
 * src/query. Not for use outside src/query.
 *
 *   update.c            the public entry points: compile, apply, free;
 *                       replacement updates; upsert seeds
 *   update_parse.c      operator arguments, arrayFilters, replacement
 *                       documents, conflicts between the paths of an update
 *   update_path.c       dotted paths: split, validate, order, prefixes
 *   update_tree.c       the mutable document tree (struct node)
 *   update_apply.c      one operation on the tree: the path walk, the leaf,
 *                       the dispatch; $set, $setOnInsert, $unset, $currentDate
 *   update_fields.c     $inc, $mul, $bit, $min, $max, $rename
 *   update_array.c      $push, $addToSet, $pop, $pull, $pullAll
 *   update_positional.c $, $[] and $[<id>]: expansion against the document
 *   update_util.c       type names, value rendering, stable sort
 *
 * Unless a comment says otherwise: functions that take a struct
 * cairn_error report failures in it (mongod's code and message when there
 * is one) and return its code; the value helpers are reentrant and
 * allocate nothing the caller must free.
 */
#ifndef CAIRN_QUERY_UPDATE_INT_H
#define CAIRN_QUERY_UPDATE_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "query/query.h"

/* Nesting (and path length) beyond this is refused (mongod allows 100
 * levels in stored documents); it bounds the recursion of the tree code. */
#define UPD_MAX_DEPTH 200

/* ---- value helpers (update_util.c) ------------------------------------- */

/* Renders `v` the way mongod prints values in error messages (1, 1.5,
 * "x", { a: 1 }, [ 1, 2 ], ObjectId('...'), ...) into buf (NUL-terminated,
 * truncated with "..." when it does not fit; cap >= 4). */
void qry_fmt_value(const bson_value_t *v, char *buf, size_t cap);

/* Writes "key: value" into buf (NUL-terminated, truncated to cap), the
 * value rendered as qry_fmt_value does. */
void upd_fmt_field(char *buf, size_t cap, const char *key, const bson_value_t *v);

/* True for the number types: int32, int64, double, decimal128. */
bool upd_is_number(bson_type_t t);

/* Comparator for qry_stable_sort: <0, 0, >0. */
typedef int (*qry_cmp_fn)(const void *a, const void *b, void *ctx);

/* Sorts `n` elements of `size` bytes at `base` stably (equal elements keep
 * their order) with `cmp`. Returns 0 or CAIRN_ENOMEM (base unchanged). */
int qry_stable_sort(void *base, size_t n, size_t size, qry_cmp_fn cmp, void *ctx);

/* ---- the mutable document tree (update_tree.c) ------------------------- */

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

/* True when `nd` is a document or an array. */
bool upd_is_container(const struct node *nd);

/* A new node named `key` (copied) holding null, or NULL when out of memory. */
struct node *upd_node_new(const char *key);

/* Frees `nd` and everything below it; NULL is a no-op. */
void upd_node_free(struct node *nd);

/* Renames `nd` to a copy of `key`. Returns 0 or CAIRN_ENOMEM (nd unchanged). */
int upd_node_set_key(struct node *nd, const char *key);

/* Appends `kid` to `parent`, which owns it on success (`at` must be
 * parent->n: children are only ever appended). Returns 0 or CAIRN_ENOMEM
 * (the caller still owns kid). */
int upd_kid_insert(struct node *parent, size_t at, struct node *kid);

/* Removes the field at `at` of a document (the caller has freed or moved
 * the node): the slot becomes a hole that lookups and serialisation skip. */
void upd_kid_remove(struct node *parent, size_t at);

/* A new tree named `key` holding a deep copy of `v`, in *out. Returns 0,
 * CAIRN_ENOMEM, or CAIRN_EBADDOC when v is invalid BSON or nested beyond
 * UPD_MAX_DEPTH. Sets no error. */
int upd_node_from_value(const char *key, const bson_value_t *v, struct node **out);

/* Appends the fields of the BSON document data/len to the container `nd`,
 * at nesting level `depth`. Returns 0, CAIRN_EBADDOC (invalid or too deep)
 * or CAIRN_ENOMEM, and sets no error; after a failure nd may hold some of
 * the fields (the caller frees it). */
int upd_node_load(struct node *nd, const uint8_t *data, uint32_t len, int depth);

/* Serialises the children of the container `nd` into `b` (array elements
 * renumbered, holes skipped). */
void upd_node_write_kids(bson_t *b, const struct node *nd);

/* A value view of `nd` in *out; containers are serialised into `tmp`
 * (initialised here, destroyed by the caller with bson_destroy, which ends
 * the view). */
void upd_node_view(const struct node *nd, bson_t *tmp, bson_value_t *out);

/* The index in `nd` of the child named `name`, or -1. Documents with many
 * fields get a name index on first lookup (linear lookups when that
 * allocation fails). */
long upd_kid_find(struct node *nd, const char *name);

/* ---- paths (update_path.c) --------------------------------------------- */

struct path
{
    char *full;
    char **parts;
    size_t n;
};

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

/* The value of an array index component (digits only; values past any
 * backfill limit read as 100000000), or -1 when `s` is not one. */
long upd_parse_index(const char *s);

/* Frees the contents of `p` and zeroes it; a zeroed path is a no-op. */
void upd_path_free(struct path *p);

/* Splits `s` at its dots into `out`. Returns 0; CAIRN_ENOMEM (out zeroed);
 * -1 when a component is empty or -2 when there are more than
 * UPD_MAX_DEPTH components (out is filled and must still be freed). */
int upd_path_split(const char *s, struct path *out);

/* True for an array filter component "$[]" or "$[<identifier>]". */
bool upd_is_af_ident(const char *c);

/* The filter of `afs` (may be NULL) whose identifier is the `len` bytes at
 * `id`, or NULL. */
struct afilter *upd_af_find(const struct af_set *afs, const char *id, size_t len);

/* Validates and splits the update path `s` into `out` (the caller's to
 * free on success; freed and zeroed on failure). Positional components
 * ("$", "$[]", "$[<id>]") are checked as mongod's
 * UpdateObjectNode::parseAndMerge does; identifiers must have a filter in
 * `afs`, which records their use. *dynamic tells whether the path has any
 * positional component. */
int upd_path_parse(const char *s,
                   struct path *out,
                   struct af_set *afs,
                   bool *dynamic,
                   struct cairn_error *err);

/* Component-wise path order, numeric components numerically: <0, 0, >0. */
int upd_path_order(const struct path *a, const struct path *b);

/* Writes the first `n` components of `p`, dotted, into buf (NUL-terminated,
 * truncated to cap). */
void upd_path_prefix_str(const struct path *p, size_t n, char *buf, size_t cap);

/* True when `a` is a component-wise prefix of (or equal to) `b`. */
bool upd_path_is_prefix(const struct path *a, const struct path *b);

/* ---- the compiled update ----------------------------------------------- */

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
    OP_BIT,
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

/* ---- parsing the update document (update_parse.c) ---------------------- */

/* True for a document whose first field name starts with '$'. */
bool upd_is_operator_doc(const bson_value_t *v);

/* Checks the argument o->arg of the operation `o` (kind, opname, path,
 * arg and dynamic set; `key` is its path as written) and fills in what it
 * parses to ($each and its modifiers, the $pull matcher, the $rename
 * target, the $pop direction, the $currentDate type). On failure `o` may
 * hold allocations: the caller frees them with the op. */
int upd_parse_op_arg(struct op *o, const char *key, struct af_set *afs, struct cairn_error *err);

/* Rejects an update whose paths ($rename targets included) are equal or
 * prefixes of each other, or that mix array filter and other components
 * below a common prefix, with mongod's ConflictingUpdateOperators message. */
int upd_check_conflicts(const struct qry_update *u, struct cairn_error *err);

/* Makes `u` the replacement update u->spec, refusing '$' field names. */
int upd_compile_replacement(struct qry_update *u, struct cairn_error *err);

/* Parses the arrayFilters option `afs` (an array of documents) into
 * u->afs, as mongod's parsedUpdateArrayFilters. After a failure u->afs
 * holds the filters parsed so far (qry_update_free frees them). */
int upd_parse_array_filters(struct qry_update *u, const bson_t *afs, struct cairn_error *err);

/* ---- applying (update_apply.c, update_fields.c, update_array.c,
 *      update_positional.c) ---------------------------------------------- */

struct apply_ctx
{
    const bson_t *doc;
    char id[160]; /* "{_id: ...}" of the original document */
    char id_val[160];
    int64_t now_ms;
    struct cairn_error *err;
};

/* upd_walk's results besides 0 and the (positive) error codes. */
enum { WALK_MISSING = -1, WALK_ARRAY = -2 };

/* Walks `p` to the parent of its last component. With `create`, missing
 * components become empty documents (and array indexes are backfilled with
 * nulls); without it, a missing or non-traversable component returns
 * WALK_MISSING. With `no_arrays`, meeting an array returns WALK_ARRAY and
 * *parent is that array. On success *parent is a container and *idx the
 * leaf's index in it, or -1 when the leaf is absent. WALK_* set no error. */
int upd_walk(struct apply_ctx *c,
             struct node *root,
             const struct path *p,
             bool create,
             bool no_arrays,
             struct node **parent,
             long *idx);

/* Puts `nd` at the leaf: replaces kids[idx] when idx >= 0, else appends
 * (documents) or backfills and appends (arrays). Takes ownership of nd,
 * also on failure. */
int upd_put_leaf(struct apply_ctx *c,
                 struct node *parent,
                 long idx,
                 const char *name,
                 struct node *nd);

/* upd_put_leaf with a copy of `v`. */
int upd_put_value(struct apply_ctx *c,
                  struct node *parent,
                  long idx,
                  const char *name,
                  const bson_value_t *v);

/* The last component of `p` (which has at least one). */
const char *upd_leaf_name(const struct path *p);

/* Applies the operation `o` at its path, which has no positional
 * components, to the tree `root`. */
int upd_apply_op(struct apply_ctx *c, const struct op *o, struct node *root);

/* $inc and $mul at the leaf `idx` of `parent` (as upd_walk found it). */
int upd_apply_arith(struct apply_ctx *c, const struct op *o, struct node *parent, long idx);

/* $bit (and/or/xor, in the argument's order) at the leaf `idx` of `parent`. */
int upd_apply_bit(struct apply_ctx *c, const struct op *o, struct node *parent, long idx);

/* $min and $max at the leaf `idx` of `parent` (as upd_walk found it). */
int upd_apply_minmax(struct apply_ctx *c, const struct op *o, struct node *parent, long idx);

/* $rename of o->path to o->to in the tree `root`. */
int upd_apply_rename(struct apply_ctx *c, const struct op *o, struct node *root);

/* $push, $addToSet, $pop, $pull and $pullAll at the leaf `idx` of
 * `parent` (as upd_walk found it). */
int upd_apply_array(struct apply_ctx *c, const struct op *o, struct node *parent, long idx);

/* Applies the update `u`, which has positional paths, to the tree `root`:
 * expands them (the "$" to `match_pos`, "$[]" and "$[<id>]" to the
 * matching elements), checks the concrete paths for conflicts and applies
 * the operations in path order ($setOnInsert only when `inserting`). */
int upd_apply_dynamic(const struct qry_update *u,
                      struct apply_ctx *c,
                      struct node *root,
                      bool inserting,
                      long match_pos);

#endif /* CAIRN_QUERY_UPDATE_INT_H */
