/*
 * overlay.c: the primary's overlay of proposed-but-not-yet-applied
 * versions, as a list of skiplist segments; readers' views of it (point
 * lookups and merged walks); the public entry points eng_overlay_add,
 * eng_overlay_discard, eng_overlay_discard_from, eng_overlay_size; and the
 * trim eng_apply runs after publishing a new watermark.
 *
 * Structure
 * ---------
 * The overlay is a list of segments, oldest first; the newest may be the
 * "active" one, which takes new nodes. A segment is a skiplist of version
 * nodes ordered by (coll_id ascending, key ascending bytewise, ts
 * descending), so all versions of a key are adjacent, newest first, and the
 * first node at or after (coll, key, T) is the version a read at T sees.
 * Its nodes live in the segment's arena (chunks of CHUNK_BYTES) and are
 * freed only with the whole segment. All nodes of one commit go into one
 * segment: the active one, or a new one the add starts when the active one
 * holds seg_max_nodes nodes or SEG_MAX_BYTES bytes (the old one is then
 * sealed for good). A list of commit records (ts, number of versions), in
 * ts order, gives eng_overlay_size and what eng_overlay_discard_from keeps.
 *
 * Why segments: readers walk a skiplist without locks, so a node cannot be
 * freed while some reader may still be on it; instead of a per-node
 * reclamation scheme, whole segments are reclaimed by reference count once
 * everything in them is applied. Trim is then O(1) per segment, an add
 * touches only the active segment, and a reader's capture is a handful of
 * reference increments.
 *
 * Publication: one writer, lock-free readers
 * ------------------------------------------
 * eng_overlay_add (1) validates, sorts and deduplicates the commit's ops;
 * (2) under wmu, allocates everything it needs: its record, a new segment
 * when sealing, its nodes in the target segment's arena, its pending
 * catalog entries (so nothing can fail once the first node is linked);
 * (3) links each node: writes the node's own links, then stores each
 * predecessor's link with release, level 0 first; (4) under mu, appends the
 * record, raises the segment's max_ts and publishes the visible ts V = the
 * commit's ts. Readers load links with acquire and never lock a segment.
 * A reader captures a view (eng_ovl_capture): under mu, one reference per
 * listed segment and hi = V; the caller then sets lo (the applied ts it read
 * afterwards). A view shows only versions with lo < ts <= hi.
 *
 * Invariants
 * ----------
 *  O1. A linked node is never unlinked, moved or modified (except its
 *      links, which only ever point to newly inserted nodes), and never
 *      freed while its segment is referenced. The list holds one reference
 *      to each listed segment and each view one to each segment it
 *      captured; a segment is freed, arena and all, at zero.
 *  O2. Every link a reader loads points to a fully initialised node (its
 *      fields and links were written before the release store that
 *      published it), and every level stays sorted at every instant: a
 *      reader sees the old or the new successor, and both are correct.
 *  O3. Every node of every added commit with ts <= V is linked at level 0
 *      into a segment that was listed when V was published: V is stored,
 *      under mu, after the commit's last link, and the segment was listed
 *      (under mu) before its first node was linked.
 *  O4. Only the writer holding wmu links nodes, and only into the active
 *      segment, or into a new segment not yet listed (discard_from).
 *  O5. A node linked into a segment after a view captured it has a ts
 *      greater than the view's hi, unless the add repeats the ts of the
 *      newest commit (the precondition of eng_overlay_add: ts not below any
 *      commit still in the overlay; an equal ts extends that commit).
 *      discard_from, which lowers V, also replaces the active segment with
 *      a new one no earlier view holds, and discard empties the list so the
 *      next add starts a new one. So a view never sees part of a commit,
 *      and its walks skip concurrent inserts as "newer than hi".
 *  O6. Listed segments cover increasing ts ranges; the active one, if any,
 *      is the newest. A segment leaves the list (trim) only when its
 *      max_ts <= the ts of an entry whose batch was already written (and
 *      its P published), so each of its versions is in RocksDB, or
 *      superseded there, before a reader can miss it (snap.c S3); the
 *      active one leaves only while trim holds wmu, so an add never links
 *      into a segment that has left the list.
 *  O7. n_versions is the sum of the records' versions; trim drops the
 *      records with ts <= P, discard_from those with ts >= its bound.
 *
 * Costs: add O(k log s) for k changed keys (s = the active segment's size,
 * bounded by seg_max_nodes + k), independent of the pending versions; trim
 * O(records and segments retired + 1); capture O(segments) and never
 * copies versions; point lookup O(segments x log s); discard_from (rare)
 * O(n log n) for n pending versions.
 *
 * Threads and locks: see engine_int.h. wmu serialises add, discard and
 * discard_from; trim only try-locks it; mu is held for O(1) (O(segments)
 * for a capture, O(retired) for a trim).
 */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

/* Seal bounds of the active segment. */
#define SEG_MAX_NODES 8192
#define SEG_MAX_BYTES ((size_t)16 << 20)

/* Arena chunk size; allocations above a quarter of it get their own. */
#define CHUNK_BYTES ((size_t)64 << 10)

/* Node steps taken along level 0 before falling back to a search. */
#define STEPS_BEFORE_SEARCH 3

/* Ops sorted inline by an add before it allocates. */
#define ADD_INLINE_OPS 16

struct ovl_chunk
{
    struct ovl_chunk *next;
    size_t cap;
    size_t used;
    max_align_t data[];
};

int eng_key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* ---- Nodes and skiplist search ----------------------------------------- */

static inline struct ovl_node *link_load(_Atomic(struct ovl_node *) *l)
{
    return atomic_load_explicit(l, memory_order_acquire);
}

/* Orders (n->coll_id, n->key) against (coll, key). */
static int node_key_cmp(const struct ovl_node *n, uint64_t coll, const uint8_t *key, size_t key_len)
{
    if (n->coll_id != coll) {
        return n->coll_id < coll ? -1 : 1;
    }
    return eng_key_cmp(n->key, n->key_len, key, key_len);
}

static bool node_same_key(const struct ovl_node *a, const struct ovl_node *b)
{
    return node_key_cmp(a, b->coll_id, b->key, b->key_len) == 0;
}

/* Full order of two nodes: (coll, key) ascending, ts descending. */
static int node_order(const struct ovl_node *a, const struct ovl_node *b)
{
    int r = node_key_cmp(a, b->coll_id, b->key, b->key_len);

    if (r != 0) {
        return r;
    }
    return a->ts > b->ts ? -1 : a->ts < b->ts ? 1 : 0;
}

/* True when `n` comes before the position sought: before (coll, key, ts),
 * or, with past_key, at or before any version of (coll, key). */
static bool node_before(const struct ovl_node *n,
                        uint64_t coll,
                        const uint8_t *key,
                        size_t key_len,
                        cairn_ts ts,
                        bool past_key)
{
    int r = node_key_cmp(n, coll, key, key_len);

    if (r != 0) {
        return r < 0;
    }
    return past_key || n->ts > ts;
}

/* Returns the first node of `s` not before the position sought (see
 * node_before), or NULL. With `update`, records at each level the link
 * after which a node for that position goes. Adds the nodes visited to
 * *visited when not NULL. Safe against the concurrent writer (O2). */
static struct ovl_node *seg_search(struct ovl_seg *s,
                                   uint64_t coll,
                                   const uint8_t *key,
                                   size_t key_len,
                                   cairn_ts ts,
                                   bool past_key,
                                   _Atomic(struct ovl_node *) **update,
                                   uint64_t *visited)
{
    _Atomic(struct ovl_node *) *links = s->head;
    struct ovl_node *n = NULL;
    uint64_t steps = 0;

    for (int lvl = OVL_MAX_HEIGHT - 1; lvl >= 0; lvl--) {
        n = link_load(&links[lvl]);
        while (n != NULL && node_before(n, coll, key, key_len, ts, past_key)) {
            /* n is at least lvl + 1 high, so its links serve every lower level. */
            links = n->next;
            n = link_load(&links[lvl]);
            steps++;
        }
        if (update != NULL) {
            update[lvl] = &links[lvl];
        }
    }
    if (visited != NULL) {
        *visited += steps;
    }
    return n;
}

/* The first node after every version of n's key. */
static struct ovl_node *seg_skip_key(struct ovl_seg *s, struct ovl_node *n)
{
    struct ovl_node *x = n;

    for (int i = 0; i < STEPS_BEFORE_SEARCH; i++) {
        x = link_load(&x->next[0]);
        if (x == NULL || !node_same_key(x, n)) {
            return x;
        }
    }
    /* A long history: one search instead of a walk. */
    return seg_search(s, n->coll_id, n->key, n->key_len, 0, true, NULL, NULL);
}

/* ---- Segments (writer side) --------------------------------------------- */

static struct ovl_seg *seg_new(uint64_t seed)
{
    struct ovl_seg *s = calloc(1, sizeof *s);

    if (s == NULL) {
        return NULL;
    }
    atomic_init(&s->ref, 1);
    s->rng = seed | 1;
    for (int i = 0; i < OVL_MAX_HEIGHT; i++) {
        atomic_init(&s->head[i], NULL);
    }
    return s;
}

static void seg_unref(struct eng_ovl *o, struct ovl_seg *s)
{
    struct ovl_chunk *c, *next;

    if (s == NULL || atomic_fetch_sub_explicit(&s->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (c = s->chunks; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(s);
    atomic_fetch_add_explicit(&o->n_segs_freed, 1, memory_order_relaxed);
}

/* Drops the list references of a chain of segments linked by `next`. */
static void seg_release_chain(struct eng_ovl *o, struct ovl_seg *s)
{
    while (s != NULL) {
        struct ovl_seg *next = s->next;
        seg_unref(o, s);
        s = next;
    }
}

static void *seg_arena_alloc(struct ovl_seg *s, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    struct ovl_chunk *c = s->chunks;
    void *p;

    n = (n + align - 1) & ~(align - 1);
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > CHUNK_BYTES / 4 ? n : CHUNK_BYTES;
        struct ovl_chunk *nc = malloc(sizeof *nc + cap);
        if (nc == NULL) {
            return NULL;
        }
        nc->cap = cap;
        nc->used = 0;
        if (c != NULL && cap == n) {
            /* A big one: keep filling the current chunk afterwards. */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            s->chunks = nc;
        }
        c = nc;
    }
    p = (unsigned char *)c->data + c->used;
    c->used += n;
    return p;
}

/* A tower height drawn with p = 1/4 per extra level (xorshift64). */
static uint8_t seg_height(struct ovl_seg *s)
{
    uint64_t x = s->rng;
    uint8_t h = 1;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    while (h < OVL_MAX_HEIGHT && (x & 3) == 0) {
        h++;
        x >>= 2;
    }
    return h;
}

/* Allocates an unlinked node in `s` holding copies of key and doc. */
static struct ovl_node *node_new(struct ovl_seg *s,
                                 uint64_t coll,
                                 const uint8_t *key,
                                 size_t key_len,
                                 const uint8_t *doc,
                                 size_t doc_len,
                                 uint8_t flag,
                                 cairn_ts ts)
{
    uint8_t h = seg_height(s);
    size_t head = offsetof(struct ovl_node, next) + (size_t)h * sizeof(_Atomic(struct ovl_node *));
    size_t size = head + key_len + doc_len;
    struct ovl_node *n = seg_arena_alloc(s, size);
    uint8_t *data;

    if (n == NULL) {
        return NULL;
    }
    data = (uint8_t *)n + head;
    n->coll_id = coll;
    n->ts = ts;
    n->flag = flag;
    n->height = h;
    n->key_len = key_len;
    n->doc_len = doc_len;
    memcpy(data, key, key_len);
    if (doc_len > 0) {
        memcpy(data + key_len, doc, doc_len);
    }
    n->key = data;
    n->doc = data + key_len;
    for (int i = 0; i < h; i++) {
        atomic_init(&n->next[i], NULL);
    }
    s->bytes += size;
    return n;
}

/* Links `n` into `s` before any node not ordered before it (so of two
 * equal versions the later insert is found first). Writer only (O4). */
static void seg_link(struct ovl_seg *s, struct ovl_node *n, uint64_t *visited)
{
    _Atomic(struct ovl_node *) *update[OVL_MAX_HEIGHT];

    seg_search(s, n->coll_id, n->key, n->key_len, n->ts, false, update, visited);
    for (int i = 0; i < n->height; i++) {
        atomic_store_explicit(&n->next[i], atomic_load_explicit(update[i], memory_order_relaxed),
                              memory_order_relaxed);
    }
    for (int i = 0; i < n->height; i++) {
        atomic_store_explicit(update[i], n, memory_order_release);
    }
    s->n_nodes++;
}

static void rec_free_chain(struct ovl_rec *r)
{
    while (r != NULL) {
        struct ovl_rec *next = r->next;
        free(r);
        r = next;
    }
}

/* ---- Life cycle ---------------------------------------------------------- */

int eng_ovl_init(struct eng_ovl *o)
{
    memset(o, 0, sizeof *o);
    if (pthread_mutex_init(&o->wmu, NULL) != 0) {
        return CAIRN_ENOMEM;
    }
    if (pthread_mutex_init(&o->mu, NULL) != 0) {
        pthread_mutex_destroy(&o->wmu);
        return CAIRN_ENOMEM;
    }
    atomic_init(&o->visible_ts, 0);
    atomic_init(&o->n_visited, 0);
    atomic_init(&o->n_allocated, 0);
    atomic_init(&o->n_trim_steps, 0);
    atomic_init(&o->n_segs_freed, 0);
    o->seg_max_nodes = SEG_MAX_NODES;
    return 0;
}

void eng_ovl_destroy(struct eng_ovl *o)
{
    seg_release_chain(o, o->oldest);
    o->oldest = o->newest = o->active = NULL;
    rec_free_chain(o->rec_head);
    o->rec_head = o->rec_tail = NULL;
    pthread_mutex_destroy(&o->mu);
    pthread_mutex_destroy(&o->wmu);
}

/* ---- Views (readers) ------------------------------------------------------ */

void eng_ovl_view_empty(struct eng_ovl *o, struct ovl_view *v)
{
    v->o = o;
    v->n = 0;
    v->segs = v->inl;
    v->lo = 0;
    v->hi = 0;
    v->discards = 0;
}

int eng_ovl_capture(struct eng_ovl *o, struct ovl_view *v)
{
    struct ovl_seg **big = NULL;
    size_t cap = 0;

    eng_ovl_view_empty(o, v);
    for (;;) {
        struct ovl_seg **segs;
        size_t n, i;

        pthread_mutex_lock(&o->mu);
        n = o->n_segs;
        if (n > OVL_VIEW_INLINE && n > cap) {
            /* Allocate outside the lock, then look again. */
            pthread_mutex_unlock(&o->mu);
            free(big);
            cap = n + 4;
            big = malloc(cap * sizeof *big);
            if (big == NULL) {
                return CAIRN_ENOMEM;
            }
            continue;
        }
        segs = n > OVL_VIEW_INLINE ? big : v->inl;
        i = n;
        for (struct ovl_seg *s = o->oldest; s != NULL; s = s->next) {
            atomic_fetch_add_explicit(&s->ref, 1, memory_order_relaxed);
            segs[--i] = s; /* newest first */
        }
        v->n = n;
        v->segs = segs;
        v->hi = atomic_load_explicit(&o->visible_ts, memory_order_relaxed);
        v->discards = atomic_load_explicit(&o->discards, memory_order_relaxed);
        pthread_mutex_unlock(&o->mu);
        if (segs != big) {
            free(big);
        }
        return 0;
    }
}

void eng_ovl_view_release(struct ovl_view *v)
{
    for (size_t i = 0; i < v->n; i++) {
        seg_unref(v->o, v->segs[i]);
    }
    if (v->segs != v->inl) {
        free(v->segs);
    }
    v->n = 0;
    v->segs = v->inl;
}

const struct ovl_node *eng_ovl_view_get(const struct ovl_view *v,
                                        uint64_t coll_id,
                                        const uint8_t *key,
                                        size_t key_len,
                                        cairn_ts bound)
{
    const struct ovl_node *best = NULL;

    if (bound > v->hi) {
        bound = v->hi;
    }
    if (bound <= v->lo) {
        return NULL;
    }
    for (size_t i = 0; i < v->n; i++) {
        /* The first node at or after (coll, key, bound): the newest version
         * of the key with ts <= bound, when it is of that key. */
        struct ovl_node *n =
            seg_search(v->segs[i], coll_id, key, key_len, bound, false, NULL, NULL);
        if (n != NULL && node_key_cmp(n, coll_id, key, key_len) == 0 && n->ts > v->lo &&
            (best == NULL || n->ts > best->ts)) {
            best = n;
        }
    }
    return best;
}

/* From `n` (the first node of a key, or a node preceded in its key only by
 * versions newer than hi), the newest shown version of the first key at or
 * after n's that has one, or NULL past the collection. */
static struct ovl_node *iter_settle(const struct ovl_iter *it,
                                    struct ovl_seg *s,
                                    struct ovl_node *n)
{
    int steps = 0;

    while (n != NULL && n->coll_id == it->coll) {
        if (n->ts > it->hi) {
            /* Newer than the read (or being added, O5). */
            if (++steps <= STEPS_BEFORE_SEARCH) {
                n = link_load(&n->next[0]);
            } else {
                steps = 0;
                n = seg_search(s, it->coll, n->key, n->key_len, it->hi, false, NULL, NULL);
            }
            continue;
        }
        if (n->ts > it->lo) {
            return n;
        }
        /* The newest version <= hi is already applied: RocksDB has it. */
        steps = 0;
        n = seg_skip_key(s, n);
    }
    return NULL;
}

/* Sets cur to the candidate with the smallest key (newest on a tie). */
static void iter_pick(struct ovl_iter *it)
{
    struct ovl_node *cur = NULL;

    for (size_t i = 0; i < it->v->n; i++) {
        struct ovl_node *c = it->cand[i];
        if (c == NULL) {
            continue;
        }
        if (cur == NULL) {
            cur = c;
        } else {
            int r = eng_key_cmp(c->key, c->key_len, cur->key, cur->key_len);
            if (r < 0 || (r == 0 && c->ts > cur->ts)) {
                cur = c;
            }
        }
    }
    it->cur = cur;
}

int eng_ovl_iter_init(struct ovl_iter *it,
                      const struct ovl_view *v,
                      uint64_t coll_id,
                      const uint8_t *after,
                      size_t after_len,
                      cairn_ts bound)
{
    it->v = v;
    it->coll = coll_id;
    it->lo = v->lo;
    it->hi = bound < v->hi ? bound : v->hi;
    it->cur = NULL;
    it->cand = it->inl;
    if (v->n > OVL_VIEW_INLINE) {
        it->cand = malloc(v->n * sizeof *it->cand);
        if (it->cand == NULL) {
            it->cand = it->inl;
            return CAIRN_ENOMEM;
        }
    }
    for (size_t i = 0; i < v->n; i++) {
        struct ovl_node *n = NULL;
        if (it->hi > it->lo) {
            n = after != NULL
                    ? seg_search(v->segs[i], coll_id, after, after_len, 0, true, NULL, NULL)
                    : seg_search(v->segs[i], coll_id, NULL, 0, CAIRN_TS_MAX, false, NULL, NULL);
            n = iter_settle(it, v->segs[i], n);
        }
        it->cand[i] = n;
    }
    iter_pick(it);
    return 0;
}

void eng_ovl_iter_next(struct ovl_iter *it)
{
    const struct ovl_node *cur = it->cur;

    if (cur == NULL) {
        return;
    }
    for (size_t i = 0; i < it->v->n; i++) {
        struct ovl_node *c = it->cand[i];
        if (c != NULL && node_same_key(c, cur)) {
            it->cand[i] = iter_settle(it, it->v->segs[i], seg_skip_key(it->v->segs[i], c));
        }
    }
    iter_pick(it);
}

void eng_ovl_iter_free(struct ovl_iter *it)
{
    if (it->cand != it->inl) {
        free(it->cand);
    }
    it->cand = it->inl;
    it->cur = NULL;
}

/* ---- Trim (eng_apply) ---------------------------------------------------- */

void eng_ovl_trim(struct eng_ovl *o, cairn_ts applied_ts)
{
    bool have_w = pthread_mutex_trylock(&o->wmu) == 0;
    struct ovl_seg *gone = NULL, **gone_tail = &gone;
    struct ovl_rec *recs = NULL, *r, *last = NULL;
    uint64_t steps = 0;

    pthread_mutex_lock(&o->mu);
    for (r = o->rec_head; r != NULL && r->ts <= applied_ts; r = r->next) {
        o->n_versions -= r->n_versions;
        last = r;
        steps++;
    }
    if (last != NULL) {
        recs = o->rec_head;
        last->next = NULL;
        o->rec_head = r;
        if (r == NULL) {
            o->rec_tail = NULL;
        }
    }
    while (o->oldest != NULL) {
        struct ovl_seg *s = o->oldest;
        steps++;
        /* O6: all applied; the active one only while no add runs. */
        if (s->max_ts > applied_ts || (s == o->active && !have_w)) {
            break;
        }
        o->oldest = s->next;
        if (o->oldest == NULL) {
            o->newest = NULL;
        }
        if (s == o->active) {
            o->active = NULL;
        }
        o->n_segs--;
        s->next = NULL;
        *gone_tail = s;
        gone_tail = &s->next;
    }
    pthread_mutex_unlock(&o->mu);
    if (have_w) {
        pthread_mutex_unlock(&o->wmu);
    }
    seg_release_chain(o, gone);
    rec_free_chain(recs);
    atomic_fetch_add_explicit(&o->n_trim_steps, steps, memory_order_relaxed);
}

/* ---- Public entry points ------------------------------------------------ */

/* One PUT/DELETE op of the commit being added. */
struct add_op
{
    const struct eng_op *op;
    size_t idx;
    struct ovl_node *node;
};

static int add_op_cmp(const void *pa, const void *pb)
{
    const struct add_op *a = pa, *b = pb;
    int r;

    if (a->op->coll_id != b->op->coll_id) {
        return a->op->coll_id < b->op->coll_id ? -1 : 1;
    }
    r = eng_key_cmp(a->op->key, a->op->key_len, b->op->key, b->op->key_len);
    if (r != 0) {
        return r;
    }
    return a->idx < b->idx ? -1 : a->idx > b->idx ? 1 : 0;
}

static bool add_op_same_key(const struct add_op *a, const struct add_op *b)
{
    return a->op->coll_id == b->op->coll_id &&
           eng_key_cmp(a->op->key, a->op->key_len, b->op->key, b->op->key_len) == 0;
}

/* Validates one op for the overlay. Returns 0 or CAIRN_EINVAL. */
static int check_op(const struct eng_op *op)
{
    switch (op->kind) {
        case ENG_OP_PUT:
        case ENG_OP_DELETE:
            if (op->key == NULL || op->key_len == 0 ||
                (op->kind == ENG_OP_PUT && op->doc == NULL && op->doc_len > 0)) {
                return CAIRN_EINVAL;
            }
            return 0;
        case ENG_OP_CREATE:
        case ENG_OP_DROP:
            return op->ns == NULL || strlen(op->ns) > ENG_NS_MAX ? CAIRN_EINVAL : 0;
        case ENG_OP_SESSION:
            if (op->key == NULL || op->key_len == 0 || op->key_len > ENG_SESSION_KEY_MAX ||
                (op->doc == NULL && op->doc_len > 0)) {
                return CAIRN_EINVAL;
            }
            return 0;
        case ENG_OP_CONFIG:
            return op->doc == NULL ? CAIRN_EINVAL : 0; /* not a document version */
        default:
            return CAIRN_EINVAL;
    }
}

/* Adds the commit's pending catalog changes. On ENOMEM removes the ones
 * it added. Caller holds wmu. */
static int add_catalog(struct eng *e, const struct eng_commit *cm)
{
    struct eng_catalog *c = &e->cat;
    size_t n_before;
    int rv = 0;

    pthread_rwlock_wrlock(&c->lock);
    n_before = c->n_pend;
    for (size_t i = 0; i < cm->n_ops && rv == 0; i++) {
        const struct eng_op *op = &cm->ops[i];
        if (op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) {
            rv = eng_cat_pending_add(c, op->kind, cm->ts, op->coll_id, op->ns);
            eng_cat_note_id(c, op->coll_id);
        }
    }
    if (rv != 0) {
        c->n_pend = n_before;
    }
    pthread_rwlock_unlock(&c->lock);
    return rv;
}

int eng_overlay_add(struct eng *e, const struct eng_commit *cm)
{
    struct eng_ovl *o = &e->ovl;
    struct add_op inl[ADD_INLINE_OPS], *ops = inl;
    struct ovl_seg *seg, *fresh = NULL;
    struct ovl_rec *rec;
    size_t n_ver = 0, m = 0, n_cat = 0;
    uint64_t visited = 0;
    int rv;

    if (cm == NULL || (cm->n_ops > 0 && cm->ops == NULL)) {
        return CAIRN_EINVAL;
    }
    for (size_t i = 0; i < cm->n_ops; i++) {
        const struct eng_op *op = &cm->ops[i];
        if ((rv = check_op(op)) != 0) {
            return rv;
        }
        n_ver += op->kind == ENG_OP_PUT || op->kind == ENG_OP_DELETE;
        n_cat += op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP;
    }
    if (n_ver > ADD_INLINE_OPS) {
        ops = malloc(n_ver * sizeof *ops);
        if (ops == NULL) {
            return CAIRN_ENOMEM;
        }
    }
    for (size_t i = 0; i < cm->n_ops; i++) {
        const struct eng_op *op = &cm->ops[i];
        if (op->kind == ENG_OP_PUT || op->kind == ENG_OP_DELETE) {
            ops[m++] = (struct add_op){op, i, NULL};
        }
    }
    if (n_ver > 1) {
        qsort(ops, n_ver, sizeof *ops, add_op_cmp);
    }
    /* A key written twice in the commit keeps its last op. */
    m = 0;
    for (size_t i = 0; i < n_ver; i++) {
        if (i + 1 < n_ver && add_op_same_key(&ops[i], &ops[i + 1])) {
            continue;
        }
        ops[m++] = ops[i];
    }
    rec = malloc(sizeof *rec);
    if (rec == NULL) {
        rv = CAIRN_ENOMEM;
        goto err_after_ops;
    }
    rec->ts = cm->ts;
    rec->n_versions = m;
    rec->next = NULL;

    pthread_mutex_lock(&o->wmu);
    /* Allocate everything first: nothing may fail once a node is linked. */
    seg = o->active;
    if (m > 0 && (seg == NULL || seg->n_nodes >= o->seg_max_nodes || seg->bytes >= SEG_MAX_BYTES)) {
        fresh = seg_new(0x9e3779b97f4a7c15ull ^ atomic_load(&o->n_allocated));
        if (fresh == NULL) {
            rv = CAIRN_ENOMEM;
            goto err_after_lock;
        }
        seg = fresh;
    }
    for (size_t k = 0; k < m; k++) {
        const struct eng_op *op = ops[k].op;
        bool put = op->kind == ENG_OP_PUT;
        ops[k].node =
            node_new(seg, op->coll_id, op->key, op->key_len, op->doc, put ? op->doc_len : 0,
                     put ? ENG_VERSION_DOC : ENG_VERSION_TOMBSTONE, cm->ts);
        if (ops[k].node == NULL) {
            /* Space taken in the active segment's arena goes with it. */
            rv = CAIRN_ENOMEM;
            goto err_after_seg;
        }
    }
    if (n_cat > 0 && (rv = add_catalog(e, cm)) != 0) {
        goto err_after_seg;
    }
    if (fresh != NULL) {
        /* O3: listed before its first node is linked; O6: newest. */
        pthread_mutex_lock(&o->mu);
        if (o->newest != NULL) {
            o->newest->next = fresh;
        } else {
            o->oldest = fresh;
        }
        o->newest = fresh;
        o->active = fresh;
        o->n_segs++;
        pthread_mutex_unlock(&o->mu);
    }
    eng_debug_point(e, ENG_DEBUG_ADD_LINKING);
    for (size_t k = 0; k < m; k++) {
        seg_link(seg, ops[k].node, &visited);
    }
    pthread_mutex_lock(&o->mu);
    if (m > 0 && cm->ts > seg->max_ts) {
        seg->max_ts = cm->ts;
    }
    if (o->rec_tail != NULL) {
        o->rec_tail->next = rec;
    } else {
        o->rec_head = rec;
    }
    o->rec_tail = rec;
    o->n_versions += m;
    if (cm->ts > atomic_load_explicit(&o->visible_ts, memory_order_relaxed)) {
        atomic_store_explicit(&o->visible_ts, cm->ts, memory_order_release);
    }
    pthread_mutex_unlock(&o->mu);
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add_explicit(&o->n_visited, visited, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->n_allocated, m, memory_order_relaxed);
    if (ops != inl) {
        free(ops);
    }
    return 0;

err_after_seg:
    seg_unref(o, fresh);
err_after_lock:
    pthread_mutex_unlock(&o->wmu);
    free(rec);
err_after_ops:
    if (ops != inl) {
        free(ops);
    }
    assert(rv != 0);
    return rv;
}

/* Empties the overlay and the pending catalog. Caller holds wmu. */
static void discard_locked(struct eng *e)
{
    struct eng_ovl *o = &e->ovl;
    struct ovl_seg *segs;
    struct ovl_rec *recs;

    pthread_mutex_lock(&o->mu);
    segs = o->oldest;
    recs = o->rec_head;
    o->oldest = o->newest = o->active = NULL;
    o->n_segs = 0;
    o->rec_head = o->rec_tail = NULL;
    o->n_versions = 0;
    atomic_store_explicit(&o->visible_ts, 0, memory_order_release);
    atomic_fetch_add_explicit(&o->discards, 1, memory_order_release);
    pthread_mutex_unlock(&o->mu);
    pthread_rwlock_wrlock(&e->cat.lock);
    eng_cat_pending_trim(&e->cat, CAIRN_TS_MAX);
    pthread_rwlock_unlock(&e->cat.lock);
    seg_release_chain(o, segs);
    rec_free_chain(recs);
}

void eng_overlay_discard(struct eng *e)
{
    pthread_mutex_lock(&e->ovl.wmu);
    discard_locked(e);
    pthread_mutex_unlock(&e->ovl.wmu);
}

/* A node kept by discard_from, with its rank for a stable order. */
struct kept
{
    struct ovl_node *n;
    size_t rank;
};

static int kept_cmp(const void *pa, const void *pb)
{
    const struct kept *a = pa, *b = pb;
    int r = node_order(a->n, b->n);

    if (r != 0) {
        return r;
    }
    return a->rank < b->rank ? -1 : a->rank > b->rank ? 1 : 0;
}

/* Builds one new, unlisted segment holding copies of the nodes of `v`
 * with lo < ts < from, in order. *out = NULL when none is kept. Returns 0
 * or CAIRN_ENOMEM. Caller holds wmu (so nothing is being linked). */
static int rebuild_kept(struct eng_ovl *o,
                        const struct ovl_view *v,
                        cairn_ts lo,
                        cairn_ts from,
                        struct ovl_seg **out)
{
    _Atomic(struct ovl_node *) *tail[OVL_MAX_HEIGHT];
    struct kept *all = NULL;
    struct ovl_seg *s = NULL;
    size_t n = 0, k = 0;
    uint64_t visited = 0;
    int rv = CAIRN_ENOMEM;

    *out = NULL;
    for (size_t i = 0; i < v->n; i++) {
        for (struct ovl_node *x = link_load(&v->segs[i]->head[0]); x != NULL;
             x = link_load(&x->next[0])) {
            n += x->ts > lo && x->ts < from;
            visited++;
        }
    }
    if (n == 0) {
        rv = 0;
        goto out;
    }
    all = malloc(n * sizeof *all);
    s = seg_new(0x9e3779b97f4a7c15ull ^ n);
    if (all == NULL || s == NULL) {
        goto out;
    }
    /* Newest segment first, level-0 order within: equal versions keep the
     * order in which readers found them. */
    for (size_t i = 0; i < v->n; i++) {
        for (struct ovl_node *x = link_load(&v->segs[i]->head[0]); x != NULL;
             x = link_load(&x->next[0])) {
            if (x->ts > lo && x->ts < from) {
                all[k].n = x;
                all[k].rank = k;
                k++;
            }
        }
    }
    qsort(all, n, sizeof *all, kept_cmp);
    for (int i = 0; i < OVL_MAX_HEIGHT; i++) {
        tail[i] = &s->head[i];
    }
    for (k = 0; k < n; k++) {
        const struct ovl_node *x = all[k].n;
        struct ovl_node *c =
            node_new(s, x->coll_id, x->key, x->key_len, x->doc, x->doc_len, x->flag, x->ts);
        if (c == NULL) {
            goto out;
        }
        /* Appended in order to an unlisted segment: no search needed. */
        for (int i = 0; i < c->height; i++) {
            atomic_store_explicit(tail[i], c, memory_order_relaxed);
            tail[i] = &c->next[i];
        }
        s->n_nodes++;
        if (c->ts > s->max_ts) {
            s->max_ts = c->ts;
        }
    }
    atomic_fetch_add_explicit(&o->n_allocated, n, memory_order_relaxed);
    *out = s;
    s = NULL;
    rv = 0;
out:
    atomic_fetch_add_explicit(&o->n_visited, visited, memory_order_relaxed);
    seg_unref(o, s);
    free(all);
    return rv;
}

void eng_overlay_discard_from(struct eng *e, cairn_ts from)
{
    struct eng_ovl *o = &e->ovl;
    struct ovl_view v;
    struct ovl_seg *kept = NULL, *old = NULL;
    struct ovl_rec *cut = NULL, **rp;
    cairn_ts new_v = 0;
    size_t n_versions = 0;

    pthread_mutex_lock(&o->wmu);
    if (atomic_load(&o->visible_ts) < from) {
        /* Nothing at or above `from` was added (no add is running). */
        goto cut_catalog;
    }
    if (eng_ovl_capture(o, &v) != 0) {
        goto fail;
    }
    if (rebuild_kept(o, &v, eng_gc_applied(e), from, &kept) != 0) {
        eng_ovl_view_release(&v);
        goto fail;
    }
    pthread_mutex_lock(&o->mu);
    old = o->oldest;
    o->oldest = o->newest = o->active = kept;
    o->n_segs = kept != NULL;
    /* Records stay for the commits below `from` (O7). */
    for (rp = &o->rec_head; *rp != NULL;) {
        struct ovl_rec *r = *rp;
        if (r->ts >= from) {
            *rp = r->next;
            r->next = cut;
            cut = r;
            continue;
        }
        n_versions += r->n_versions;
        new_v = r->ts > new_v ? r->ts : new_v;
        o->rec_tail = r;
        rp = &r->next;
    }
    if (o->rec_head == NULL) {
        o->rec_tail = NULL;
    }
    o->n_versions = n_versions;
    atomic_store_explicit(&o->visible_ts, new_v, memory_order_release);
    atomic_fetch_add_explicit(&o->discards, 1, memory_order_release);
    pthread_mutex_unlock(&o->mu);
    eng_ovl_view_release(&v);
    seg_release_chain(o, old);
    rec_free_chain(cut);
cut_catalog:
    pthread_rwlock_wrlock(&e->cat.lock);
    eng_cat_pending_cut(&e->cat, from);
    pthread_rwlock_unlock(&e->cat.lock);
    pthread_mutex_unlock(&o->wmu);
    return;

fail:
    /* Out of memory: hide everything, as eng_overlay_discard. */
    discard_locked(e);
    pthread_mutex_unlock(&o->wmu);
}

size_t eng_overlay_size(struct eng *e)
{
    size_t n;

    pthread_mutex_lock(&e->ovl.mu);
    n = e->ovl.n_versions;
    pthread_mutex_unlock(&e->ovl.mu);
    return n;
}

void eng_debug_overlay_stats(struct eng *e, struct eng_overlay_stats *st)
{
    struct eng_ovl *o = &e->ovl;

    pthread_mutex_lock(&o->mu);
    st->n_versions = o->n_versions;
    st->n_segments = o->n_segs;
    pthread_mutex_unlock(&o->mu);
    st->visited = atomic_load(&o->n_visited);
    st->allocated = atomic_load(&o->n_allocated);
    st->trim_steps = atomic_load(&o->n_trim_steps);
    st->segs_freed = atomic_load(&o->n_segs_freed);
}
