/*
 * update_tree.c: the mutable document tree (struct node, update_int.h)
 * that an update is applied to: building it from BSON, looking children up
 * by name (with a hash index for large documents), appending and removing
 * children, and serialising it (or one node as a value view) back to BSON.
 * It knows nothing of operators or paths.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
#include "query/query.h"
#include "query/update_int.h"

/* Documents with at least this many fields get a name index. */
#define HASH_MIN 16

bool upd_is_container(const struct node *nd)
{
    return nd->val.value_type == BSON_TYPE_DOCUMENT || nd->val.value_type == BSON_TYPE_ARRAY;
}

void upd_node_free(struct node *nd)
{
    if (nd == NULL) {
        return;
    }
    for (size_t i = 0; i < nd->n; i++) {
        upd_node_free(nd->kids[i]);
    }
    free(nd->kids);
    free(nd->ht);
    if (!upd_is_container(nd)) {
        bson_value_destroy(&nd->val);
    }
    free(nd->key);
    free(nd);
}

struct node *upd_node_new(const char *key)
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

int upd_node_set_key(struct node *nd, const char *key)
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
    return (size_t)cairn_hash_bytes(CAIRN_HASH_SEED, s, strlen(s));
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
int upd_kid_insert(struct node *parent, size_t at, struct node *kid)
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
void upd_kid_remove(struct node *parent, size_t at)
{
    parent->kids[at] = NULL;
}

/* A new node named `key` holding a copy of `v`. */
static int node_from_value_d(const char *key, const bson_value_t *v, struct node **out, int depth)
{
    struct node *nd = upd_node_new(key);
    int rv;

    if (nd == NULL) {
        return CAIRN_ENOMEM;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) {
        nd->val.value_type = v->value_type;
        rv = depth > UPD_MAX_DEPTH
                 ? CAIRN_EBADDOC
                 : upd_node_load(nd, v->value.v_doc.data, v->value.v_doc.data_len, depth);
        if (rv != 0) {
            upd_node_free(nd);
            return rv;
        }
    } else {
        bson_value_copy(v, &nd->val);
    }
    *out = nd;
    return 0;
}

int upd_node_from_value(const char *key, const bson_value_t *v, struct node **out)
{
    return node_from_value_d(key, v, out, 0);
}

int upd_node_load(struct node *nd, const uint8_t *data, uint32_t len, int depth)
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
        rv = upd_kid_insert(nd, nd->n, kid);
        if (rv != 0) {
            upd_node_free(kid);
            return rv;
        }
    }
    return 0;
}

static void node_append_to(bson_t *b, const char *key, const struct node *nd);

/* Serialises the children of container `nd` into `b`. */
void upd_node_write_kids(bson_t *b, const struct node *nd)
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
        upd_node_write_kids(&child, nd);
        bson_append_document_end(b, &child);
    } else if (nd->val.value_type == BSON_TYPE_ARRAY) {
        bson_append_array_begin(b, key, -1, &child);
        upd_node_write_kids(&child, nd);
        bson_append_array_end(b, &child);
    } else {
        bson_append_value(b, key, -1, &nd->val);
    }
}

/* A value view of `nd`; containers are serialised into `tmp` (initialised
 * here, destroyed by the caller with bson_destroy). */
void upd_node_view(const struct node *nd, bson_t *tmp, bson_value_t *out)
{
    bson_init(tmp);
    if (upd_is_container(nd)) {
        upd_node_write_kids(tmp, nd);
        out->value_type = nd->val.value_type;
        out->value.v_doc.data = (uint8_t *)bson_get_data(tmp);
        out->value.v_doc.data_len = tmp->len;
    } else {
        *out = nd->val;
    }
}

long upd_kid_find(struct node *nd, const char *name)
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
