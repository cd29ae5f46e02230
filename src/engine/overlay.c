/*
 * overlay.c: the overlay's immutable, refcounted data structure (see
 * engine_int.h) and the public overlay entry points eng_overlay_add,
 * eng_overlay_discard and eng_overlay_size.
 *
 * Invariants of a state: collections sorted by id and never empty; within
 * a collection versions sorted by key ascending, then ts descending, so the
 * first version of a key's run with ts <= T is the one a read at T sees.
 * Nothing reachable from a published state is ever modified; a writer
 * builds a new state sharing the unchanged collections and versions.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

int eng_key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static void ver_unref(struct ovl_ver *v)
{
    if (atomic_fetch_sub(&v->ref, 1) == 1) {
        free(v);
    }
}

static struct ovl_ver *ver_ref(struct ovl_ver *v)
{
    atomic_fetch_add(&v->ref, 1);
    return v;
}

static void coll_unref(struct ovl_coll *c)
{
    if (atomic_fetch_sub(&c->ref, 1) == 1) {
        for (size_t i = 0; i < c->n; i++) {
            ver_unref(c->v[i]);
        }
        free(c);
    }
}

static struct ovl_coll *coll_alloc(uint64_t coll_id, size_t n)
{
    struct ovl_coll *c = malloc(sizeof *c + n * sizeof c->v[0]);

    if (c != NULL) {
        atomic_init(&c->ref, 1);
        c->coll_id = coll_id;
        c->n = 0;
    }
    return c;
}

static struct ovl_state *state_alloc(size_t n_colls)
{
    struct ovl_state *s = malloc(sizeof *s + n_colls * sizeof s->c[0]);

    if (s != NULL) {
        atomic_init(&s->ref, 1);
        s->max_ts = 0;
        s->n_versions = 0;
        s->n_colls = 0;
    }
    return s;
}

/* Frees a state under construction (its colls are references). */
static void state_free_partial(struct ovl_state *s)
{
    for (size_t i = 0; i < s->n_colls; i++) {
        coll_unref(s->c[i]);
    }
    free(s);
}

/* Appends collection `c` (a reference) to the state under construction. */
static void state_push(struct ovl_state *s, struct ovl_coll *c)
{
    s->c[s->n_colls++] = c;
    s->n_versions += c->n;
    for (size_t i = 0; i < c->n; i++) {
        if (c->v[i]->ts > s->max_ts) {
            s->max_ts = c->v[i]->ts;
        }
    }
}

struct ovl_state *eng_ovl_state_ref(struct ovl_state *s)
{
    if (s != NULL) {
        atomic_fetch_add(&s->ref, 1);
    }
    return s;
}

void eng_ovl_state_unref(struct ovl_state *s)
{
    if (s != NULL && atomic_fetch_sub(&s->ref, 1) == 1) {
        state_free_partial(s);
    }
}

const struct ovl_coll *eng_ovl_coll(const struct ovl_state *s, uint64_t coll_id)
{
    size_t lo = 0, hi;

    if (s == NULL) {
        return NULL;
    }
    hi = s->n_colls;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->c[mid]->coll_id < coll_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->n_colls && s->c[lo]->coll_id == coll_id ? s->c[lo] : NULL;
}

size_t eng_ovl_lower_bound(const struct ovl_coll *c,
                           const uint8_t *key,
                           size_t key_len,
                           bool strict)
{
    size_t lo = 0, hi = c->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = eng_key_cmp(c->v[mid]->key, c->v[mid]->key_len, key, key_len);
        if (r < 0 || (strict && r == 0)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

const struct ovl_ver *eng_ovl_pick(const struct ovl_coll *c, size_t *i, cairn_ts read_ts)
{
    const struct ovl_ver *first = c->v[*i];
    const struct ovl_ver *pick = NULL;
    size_t j = *i;

    while (j < c->n &&
           eng_key_cmp(c->v[j]->key, c->v[j]->key_len, first->key, first->key_len) == 0) {
        if (pick == NULL && c->v[j]->ts <= read_ts) {
            pick = c->v[j];
        }
        j++;
    }
    *i = j;
    return pick;
}

/* A new version being added, with where it came from for ordering. */
struct staged
{
    uint64_t coll_id;
    size_t idx;
    struct ovl_ver *v;
};

static int staged_cmp(const void *pa, const void *pb)
{
    const struct staged *a = pa, *b = pb;
    int r;

    if (a->coll_id != b->coll_id) {
        return a->coll_id < b->coll_id ? -1 : 1;
    }
    r = eng_key_cmp(a->v->key, a->v->key_len, b->v->key, b->v->key_len);
    if (r != 0) {
        return r;
    }
    return a->idx < b->idx ? -1 : a->idx > b->idx ? 1 : 0;
}

/* Orders two versions of a collection: key ascending, ts descending. */
static int ver_order(const struct ovl_ver *a, const struct ovl_ver *b)
{
    int r = eng_key_cmp(a->key, a->key_len, b->key, b->key_len);

    if (r != 0) {
        return r;
    }
    return a->ts > b->ts ? -1 : a->ts < b->ts ? 1 : 0;
}

/* Merges collection `old` (may be NULL) with the new versions st[0..n)
 * (one collection, sorted by key, distinct keys; references moved in).
 * Returns the new collection or NULL on ENOMEM (st untouched then). */
static struct ovl_coll *coll_merge(const struct ovl_coll *old,
                                   uint64_t coll_id,
                                   struct staged *st,
                                   size_t n)
{
    size_t n_old = old ? old->n : 0;
    struct ovl_coll *c = coll_alloc(coll_id, n_old + n);
    size_t i = 0, j = 0;

    if (c == NULL) {
        return NULL;
    }
    while (i < n_old || j < n) {
        /* On equal keys and ts the new version goes first (it is the later op). */
        if (j < n && (i >= n_old || ver_order(st[j].v, old->v[i]) <= 0)) {
            c->v[c->n++] = st[j].v;
            st[j++].v = NULL;
        } else {
            c->v[c->n++] = ver_ref(old->v[i++]);
        }
    }
    return c;
}

int eng_ovl_state_add(struct ovl_state *old, const struct eng_commit *cm, struct ovl_state **out)
{
    struct staged *st = NULL;
    size_t n = 0, m, k;
    struct ovl_state *s = NULL;
    size_t n_new_colls = 0;
    size_t oi;
    int rv = CAIRN_ENOMEM;

    *out = NULL;
    for (size_t i = 0; i < cm->n_ops; i++) {
        const struct eng_op *op = &cm->ops[i];
        if (op->kind != ENG_OP_PUT && op->kind != ENG_OP_DELETE) {
            continue;
        }
        if (op->key == NULL || op->key_len == 0 ||
            (op->kind == ENG_OP_PUT && op->doc == NULL && op->doc_len > 0)) {
            return CAIRN_EINVAL;
        }
        n++;
    }
    if (n == 0) {
        *out = eng_ovl_state_ref(old);
        return 0;
    }
    st = calloc(n, sizeof *st);
    if (st == NULL) {
        return CAIRN_ENOMEM;
    }
    k = 0;
    for (size_t i = 0; i < cm->n_ops; i++) {
        const struct eng_op *op = &cm->ops[i];
        size_t doc_len = op->kind == ENG_OP_PUT ? op->doc_len : 0;
        struct ovl_ver *v;
        if (op->kind != ENG_OP_PUT && op->kind != ENG_OP_DELETE) {
            continue;
        }
        v = malloc(sizeof *v + op->key_len + doc_len);
        if (v == NULL) {
            goto out;
        }
        atomic_init(&v->ref, 1);
        v->ts = cm->ts;
        v->flag = op->kind == ENG_OP_PUT ? ENG_VERSION_DOC : ENG_VERSION_TOMBSTONE;
        v->key_len = op->key_len;
        v->doc_len = doc_len;
        memcpy(v->data, op->key, op->key_len);
        if (doc_len > 0) {
            memcpy(v->data + op->key_len, op->doc, doc_len);
        }
        v->key = v->data;
        v->doc = v->data + op->key_len;
        st[k].coll_id = op->coll_id;
        st[k].idx = i;
        st[k].v = v;
        k++;
    }
    qsort(st, n, sizeof *st, staged_cmp);
    /* Keep only the last op of each (collection, key). */
    m = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && st[i].coll_id == st[i + 1].coll_id &&
            eng_key_cmp(st[i].v->key, st[i].v->key_len, st[i + 1].v->key, st[i + 1].v->key_len) ==
                0) {
            ver_unref(st[i].v);
            st[i].v = NULL;
            continue;
        }
        st[m++] = st[i];
    }
    for (size_t i = m; i < n; i++) {
        st[i].v = NULL; /* stale copies of moved entries */
    }
    for (size_t i = 0; i < m; i++) {
        if (i == 0 || st[i].coll_id != st[i - 1].coll_id) {
            n_new_colls++;
        }
    }
    s = state_alloc((old ? old->n_colls : 0) + n_new_colls);
    if (s == NULL) {
        goto out;
    }
    oi = 0;
    for (size_t i = 0; i < m;) {
        uint64_t id = st[i].coll_id;
        size_t j = i;
        const struct ovl_coll *oc = NULL;
        struct ovl_coll *nc;
        while (j < m && st[j].coll_id == id) {
            j++;
        }
        /* Untouched old collections before this one are shared. */
        while (old != NULL && oi < old->n_colls && old->c[oi]->coll_id < id) {
            atomic_fetch_add(&old->c[oi]->ref, 1);
            state_push(s, old->c[oi++]);
        }
        if (old != NULL && oi < old->n_colls && old->c[oi]->coll_id == id) {
            oc = old->c[oi++];
        }
        nc = coll_merge(oc, id, st + i, j - i);
        if (nc == NULL) {
            goto out;
        }
        state_push(s, nc);
        i = j;
    }
    while (old != NULL && oi < old->n_colls) {
        atomic_fetch_add(&old->c[oi]->ref, 1);
        state_push(s, old->c[oi++]);
    }
    *out = s;
    s = NULL;
    rv = 0;
out:
    if (s != NULL) {
        state_free_partial(s);
    }
    for (size_t i = 0; i < n; i++) {
        if (st[i].v != NULL) {
            ver_unref(st[i].v);
        }
    }
    free(st);
    return rv;
}

/* Builds `old` (borrowed, not NULL) keeping only the versions with
 * lo < ts < hi; same result conventions as eng_ovl_state_trim. */
static int state_keep(struct ovl_state *old, cairn_ts lo, cairn_ts hi, struct ovl_state **out)
{
    struct ovl_state *s;
    bool changed = false;

    *out = NULL;
    s = state_alloc(old->n_colls);
    if (s == NULL) {
        return CAIRN_ENOMEM;
    }
    for (size_t i = 0; i < old->n_colls; i++) {
        struct ovl_coll *oc = old->c[i];
        struct ovl_coll *nc;
        size_t keep = 0;
        for (size_t j = 0; j < oc->n; j++) {
            keep += oc->v[j]->ts > lo && oc->v[j]->ts < hi;
        }
        if (keep == oc->n) {
            atomic_fetch_add(&oc->ref, 1);
            state_push(s, oc);
            continue;
        }
        changed = true;
        if (keep == 0) {
            continue;
        }
        nc = coll_alloc(oc->coll_id, keep);
        if (nc == NULL) {
            state_free_partial(s);
            return CAIRN_ENOMEM;
        }
        for (size_t j = 0; j < oc->n; j++) {
            if (oc->v[j]->ts > lo && oc->v[j]->ts < hi) {
                nc->v[nc->n++] = ver_ref(oc->v[j]);
            }
        }
        state_push(s, nc);
    }
    if (!changed) {
        state_free_partial(s);
        *out = eng_ovl_state_ref(old);
        return 0;
    }
    if (s->n_colls == 0) {
        state_free_partial(s);
        return 0;
    }
    *out = s;
    return 0;
}

int eng_ovl_state_trim(struct ovl_state *old, cairn_ts ts, struct ovl_state **out)
{
    *out = NULL;
    if (old == NULL || ts >= old->max_ts) {
        return 0; /* everything goes */
    }
    return state_keep(old, ts, CAIRN_TS_MAX, out);
}

/* ---- Public entry points ------------------------------------------------ */

int eng_overlay_add(struct eng *e, const struct eng_commit *commit)
{
    struct ovl_state *ns = NULL, *old;
    size_t n_cat = 0;
    int rv;

    for (size_t i = 0; i < commit->n_ops; i++) {
        const struct eng_op *op = &commit->ops[i];
        if (op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) {
            if (op->ns == NULL || strlen(op->ns) > ENG_NS_MAX) {
                return CAIRN_EINVAL;
            }
            n_cat++;
        } else if (op->kind != ENG_OP_PUT && op->kind != ENG_OP_DELETE) {
            return CAIRN_EINVAL;
        }
    }

    pthread_mutex_lock(&e->build_mu);
    rv = eng_ovl_state_add(e->ovl, commit, &ns);
    if (rv != 0) {
        pthread_mutex_unlock(&e->build_mu);
        return rv;
    }
    if (n_cat > 0) {
        pthread_rwlock_wrlock(&e->cat.lock);
        for (size_t i = 0; i < commit->n_ops && rv == 0; i++) {
            const struct eng_op *op = &commit->ops[i];
            if (op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) {
                rv = eng_cat_pending_add(&e->cat, op->kind, commit->ts, op->coll_id, op->ns);
                eng_cat_note_id(&e->cat, op->coll_id);
            }
        }
        pthread_rwlock_unlock(&e->cat.lock);
        /* On ENOMEM the catalog ops added so far stay; the caller will
         * discard the overlay since the commit failed. */
    }
    if (rv != 0) {
        pthread_mutex_unlock(&e->build_mu);
        eng_ovl_state_unref(ns);
        return rv;
    }
    pthread_mutex_lock(&e->mu);
    old = e->ovl;
    e->ovl = ns;
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&e->build_mu);
    eng_ovl_state_unref(old);
    return 0;
}

void eng_overlay_discard(struct eng *e)
{
    struct ovl_state *old;

    pthread_mutex_lock(&e->build_mu);
    pthread_mutex_lock(&e->mu);
    old = e->ovl;
    e->ovl = NULL;
    pthread_mutex_unlock(&e->mu);
    pthread_rwlock_wrlock(&e->cat.lock);
    eng_cat_pending_trim(&e->cat, CAIRN_TS_MAX);
    pthread_rwlock_unlock(&e->cat.lock);
    pthread_mutex_unlock(&e->build_mu);
    eng_ovl_state_unref(old);
}

void eng_overlay_discard_from(struct eng *e, cairn_ts ts)
{
    struct ovl_state *old, *kept = NULL;
    int rv = 0;

    pthread_mutex_lock(&e->build_mu);
    if (e->ovl != NULL && ts <= e->ovl->max_ts) {
        rv = state_keep(e->ovl, 0, ts, &kept);
    } else {
        kept = eng_ovl_state_ref(e->ovl);
    }
    if (rv != 0) {
        kept = NULL; /* out of memory: hide everything, as eng_overlay_discard */
        ts = 0;
    }
    pthread_mutex_lock(&e->mu);
    old = e->ovl;
    e->ovl = kept;
    pthread_mutex_unlock(&e->mu);
    pthread_rwlock_wrlock(&e->cat.lock);
    eng_cat_pending_cut(&e->cat, ts);
    pthread_rwlock_unlock(&e->cat.lock);
    pthread_mutex_unlock(&e->build_mu);
    eng_ovl_state_unref(old);
}

size_t eng_overlay_size(struct eng *e)
{
    size_t n;

    pthread_mutex_lock(&e->mu);
    n = e->ovl ? e->ovl->n_versions : 0;
    pthread_mutex_unlock(&e->mu);
    return n;
}
