/*
 * catalog.c: the in-memory catalog of collections. Two views: committed
 * (what RocksDB holds, sorted by ns) and local (committed plus the
 * overlay's pending creates and drops, replayed in ts order). The
 * persistent form (catalog/<ns> keys) is written by eng_apply in engine.c.
 *
 * Renames: a ring of the last applied renames (eng_cat_alias_add), which
 * eng_catalog_lookup_at consults for reads below them; engine.c persists
 * and reloads them ("catalog_alias/NN").
 *
 * Ids: max_id is the largest id ever seen (loaded catalog, persisted
 * "catalog_next_id", overlay, applied ops) or handed out, so
 * eng_catalog_next_id never repeats one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

int eng_cat_init(struct eng_catalog *c)
{
    pthread_rwlockattr_t attr;
    int r;

    memset(c, 0, sizeof *c);
    if (pthread_rwlockattr_init(&attr) != 0) {
        return CAIRN_ENOMEM;
    }
    /* Lookups are frequent; do not let them starve the applying thread. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    r = pthread_rwlock_init(&c->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return r == 0 ? 0 : CAIRN_ENOMEM;
}

void eng_cat_destroy(struct eng_catalog *c)
{
    pthread_rwlock_destroy(&c->lock);
    free(c->ents);
    free(c->pend);
    c->ents = NULL;
    c->pend = NULL;
}

void eng_cat_reset(struct eng_catalog *c)
{
    c->n = 0;
    c->n_pend = 0;
    c->n_alias = 0;
    c->next_alias = 0;
    c->alias_seq = 0;
    /* Whatever is loaded next (a checkpoint install) is a new catalog:
     * writers' cached index sets must be revalidated. */
    atomic_fetch_add(&c->gen, 1);
}

/* Index of the first committed entry with ns >= `ns`. */
static size_t cat_lower(const struct eng_catalog *c, const char *ns)
{
    size_t lo = 0, hi = c->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(c->ents[mid].ns, ns) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int eng_cat_reserve(struct eng_catalog *c, size_t extra)
{
    size_t cap;
    struct cat_ent *p;

    if (c->n + extra <= c->cap) {
        return 0;
    }
    cap = c->cap ? c->cap : 16;
    while (cap < c->n + extra) {
        cap *= 2;
    }
    p = realloc(c->ents, cap * sizeof *p);
    if (p == NULL) {
        return CAIRN_ENOMEM;
    }
    c->ents = p;
    c->cap = cap;
    return 0;
}

void eng_cat_note_id(struct eng_catalog *c, uint64_t id)
{
    if (id > c->max_id) {
        c->max_id = id;
    }
}

int eng_cat_committed_create(struct eng_catalog *c, const char *ns, uint64_t id)
{
    size_t i = cat_lower(c, ns);

    eng_cat_note_id(c, id);
    atomic_fetch_add(&c->gen, 1);
    if (i < c->n && strcmp(c->ents[i].ns, ns) == 0) {
        c->ents[i].id = id;
        return 0;
    }
    if (eng_cat_reserve(c, 1) != 0) {
        return CAIRN_ENOMEM;
    }
    memmove(&c->ents[i + 1], &c->ents[i], (c->n - i) * sizeof c->ents[0]);
    c->ents[i].id = id;
    snprintf(c->ents[i].ns, sizeof c->ents[i].ns, "%s", ns);
    c->n++;
    return 0;
}

void eng_cat_committed_drop(struct eng_catalog *c, const char *ns)
{
    size_t i = cat_lower(c, ns);

    atomic_fetch_add(&c->gen, 1);
    if (i < c->n && strcmp(c->ents[i].ns, ns) == 0) {
        memmove(&c->ents[i], &c->ents[i + 1], (c->n - i - 1) * sizeof c->ents[0]);
        c->n--;
    }
}

bool eng_cat_committed_id(const struct eng_catalog *c, const char *ns, uint64_t *id)
{
    size_t i = cat_lower(c, ns);

    if (i < c->n && strcmp(c->ents[i].ns, ns) == 0) {
        *id = c->ents[i].id;
        return true;
    }
    return false;
}

bool eng_cat_committed_ns(const struct eng_catalog *c, uint64_t id, char *ns)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->ents[i].id == id) {
            memcpy(ns, c->ents[i].ns, ENG_NS_MAX + 1);
            return true;
        }
    }
    return false;
}

int eng_cat_pending_add(struct eng_catalog *c, int kind, cairn_ts ts, uint64_t id, const char *ns)
{
    struct cat_pending *p;

    if (c->n_pend == c->cap_pend) {
        size_t cap = c->cap_pend ? c->cap_pend * 2 : 8;
        p = realloc(c->pend, cap * sizeof *p);
        if (p == NULL) {
            return CAIRN_ENOMEM;
        }
        c->pend = p;
        c->cap_pend = cap;
    }
    atomic_fetch_add(&c->gen, 1);
    p = &c->pend[c->n_pend++];
    p->kind = kind;
    p->ts = ts;
    p->id = id;
    snprintf(p->ns, sizeof p->ns, "%s", ns);
    return 0;
}

void eng_cat_pending_trim(struct eng_catalog *c, cairn_ts ts)
{
    size_t m = 0;

    for (size_t i = 0; i < c->n_pend; i++) {
        if (ts != CAIRN_TS_MAX && c->pend[i].ts > ts) {
            c->pend[m++] = c->pend[i];
        }
    }
    if (m != c->n_pend) {
        atomic_fetch_add(&c->gen, 1);
    }
    c->n_pend = m;
}

void eng_cat_pending_cut(struct eng_catalog *c, cairn_ts ts)
{
    size_t m = 0;

    for (size_t i = 0; i < c->n_pend; i++) {
        if (c->pend[i].ts < ts) {
            c->pend[m++] = c->pend[i];
        }
    }
    if (m != c->n_pend) {
        atomic_fetch_add(&c->gen, 1);
    }
    c->n_pend = m;
}

void eng_cat_alias_add(struct eng_catalog *c,
                       cairn_ts ts,
                       uint64_t id,
                       const char *from,
                       const char *to,
                       cairn_ts floor)
{
    struct cat_alias *a;
    size_t m = 0;

    /* Compact away the ones no served read can need, oldest first. */
    for (size_t k = 0; k < c->n_alias; k++) {
        size_t i = (c->next_alias + CAT_ALIASES - c->n_alias + k) % CAT_ALIASES;
        if (c->aliases[i].ts > floor) {
            size_t j = (c->next_alias + CAT_ALIASES - c->n_alias + m) % CAT_ALIASES;
            if (j != i) {
                c->aliases[j] = c->aliases[i];
            }
            m++;
        }
    }
    c->next_alias = (c->next_alias + CAT_ALIASES - c->n_alias + m) % CAT_ALIASES;
    c->n_alias = m;
    a = &c->aliases[c->next_alias];
    a->ts = ts;
    a->id = id;
    snprintf(a->from, sizeof a->from, "%s", from);
    snprintf(a->to, sizeof a->to, "%s", to);
    c->next_alias = (c->next_alias + 1) % CAT_ALIASES;
    if (c->n_alias < CAT_ALIASES) {
        c->n_alias++;
    }
}

/* ---- Public entry points ------------------------------------------------ */

int eng_catalog_lookup(struct eng *e, const char *ns, bool local, uint64_t *id)
{
    struct eng_catalog *c = &e->cat;
    int rv = CAIRN_ENOTFOUND;
    size_t i;

    if (ns == NULL) {
        return CAIRN_ENOTFOUND;
    }
    pthread_rwlock_rdlock(&c->lock);
    if (local) {
        for (size_t k = c->n_pend; k-- > 0;) {
            if (strcmp(c->pend[k].ns, ns) == 0) {
                if (c->pend[k].kind == ENG_OP_CREATE) {
                    *id = c->pend[k].id;
                    rv = 0;
                }
                pthread_rwlock_unlock(&c->lock);
                return rv;
            }
        }
    }
    i = cat_lower(c, ns);
    if (i < c->n && strcmp(c->ents[i].ns, ns) == 0) {
        *id = c->ents[i].id;
        rv = 0;
    }
    pthread_rwlock_unlock(&c->lock);
    return rv;
}

/* The id `ns` names just before pending op `k`: the earlier pending ops,
 * else the committed view. Caller holds c->lock. */
static bool pending_id_before(const struct eng_catalog *c, size_t k, const char *ns, uint64_t *id)
{
    size_t i;

    while (k-- > 0) {
        if (strcmp(c->pend[k].ns, ns) == 0) {
            *id = c->pend[k].id;
            return c->pend[k].kind == ENG_OP_CREATE;
        }
    }
    i = cat_lower(c, ns);
    if (i < c->n && strcmp(c->ents[i].ns, ns) == 0) {
        *id = c->ents[i].id;
        return true;
    }
    return false;
}

/* Whether id `id` was in use before pending op `k` (so a create of it is
 * a rename's bind, not a new collection). Caller holds c->lock. */
static bool pending_id_known(const struct eng_catalog *c, size_t k, uint64_t id)
{
    for (size_t i = 0; i < k; i++) {
        if (c->pend[i].kind == ENG_OP_CREATE && c->pend[i].id == id) {
            return true;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->ents[i].id == id) {
            return true;
        }
    }
    return false;
}

/* As the applied renames, for the ones still in the overlay's pending
 * catalog (all newer than any applied one): the first pending unbind or
 * bind of `ns` after read_ts decides. Returns 1 when none does. Caller
 * holds c->lock. */
static int pending_lookup_at(const struct eng_catalog *c,
                             const char *ns,
                             cairn_ts read_ts,
                             uint64_t *id)
{
    for (size_t k = 0; k < c->n_pend; k++) {
        const struct cat_pending *p = &c->pend[k];
        if (p->ts <= read_ts || strcmp(p->ns, ns) != 0) {
            continue;
        }
        if (p->kind == ENG_OP_DROP && p->id == ENG_UNBIND_ID) {
            return pending_id_before(c, k, ns, id) ? 0 : CAIRN_ENOTFOUND;
        }
        if (p->kind == ENG_OP_CREATE && pending_id_known(c, k, p->id)) {
            return CAIRN_ENOTFOUND;
        }
    }
    return 1;
}

int eng_catalog_lookup_at(struct eng *e, const char *ns, bool local, cairn_ts read_ts, uint64_t *id)
{
    struct eng_catalog *c = &e->cat;
    const struct cat_alias *first = NULL;

    if (ns == NULL) {
        return CAIRN_ENOTFOUND;
    }
    /* The first rename after read_ts that touched `ns` tells what the
     * name meant at read_ts: the renamed id when `ns` was its source,
     * nothing when `ns` was its target (the target that a dropTarget
     * replaced is gone with its data). */
    pthread_rwlock_rdlock(&c->lock);
    for (size_t k = 0; k < c->n_alias; k++) {
        const struct cat_alias *a =
            &c->aliases[(c->next_alias + CAT_ALIASES - c->n_alias + k) % CAT_ALIASES];
        if (a->ts > read_ts && (first == NULL || a->ts < first->ts) &&
            (strcmp(a->from, ns) == 0 || strcmp(a->to, ns) == 0)) {
            first = a;
        }
    }
    if (first != NULL) {
        int rv = strcmp(first->from, ns) == 0 ? 0 : CAIRN_ENOTFOUND;
        if (rv == 0) {
            *id = first->id;
        }
        pthread_rwlock_unlock(&c->lock);
        return rv;
    }
    if (local && read_ts != CAIRN_TS_MAX) {
        int rv = pending_lookup_at(c, ns, read_ts, id);
        if (rv != 1) {
            pthread_rwlock_unlock(&c->lock);
            return rv;
        }
    }
    pthread_rwlock_unlock(&c->lock);
    return eng_catalog_lookup(e, ns, local, id);
}

static int info_cmp(const void *pa, const void *pb)
{
    const struct eng_coll_info *a = pa, *b = pb;
    return strcmp(a->ns, b->ns);
}

static bool in_db(const char *ns, const char *db, size_t db_len)
{
    return db == NULL || (strncmp(ns, db, db_len) == 0 && ns[db_len] == '.');
}

int eng_catalog_list(struct eng *e,
                     const char *db,
                     bool local,
                     struct eng_coll_info **out,
                     size_t *n)
{
    struct eng_catalog *c = &e->cat;
    size_t db_len = db ? strlen(db) : 0;
    struct eng_coll_info *v;
    size_t cnt = 0, cap;

    *out = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&c->lock);
    cap = c->n + (local ? c->n_pend : 0);
    v = malloc((cap ? cap : 1) * sizeof *v);
    if (v == NULL) {
        pthread_rwlock_unlock(&c->lock);
        return CAIRN_ENOMEM;
    }
    for (size_t i = 0; i < c->n; i++) {
        v[cnt].id = c->ents[i].id;
        memcpy(v[cnt].ns, c->ents[i].ns, sizeof v[cnt].ns);
        cnt++;
    }
    for (size_t k = 0; local && k < c->n_pend; k++) {
        const struct cat_pending *p = &c->pend[k];
        size_t j;
        for (j = 0; j < cnt && strcmp(v[j].ns, p->ns) != 0; j++) {
        }
        if (p->kind == ENG_OP_CREATE) {
            if (j == cnt) {
                cnt++;
            }
            v[j].id = p->id;
            memcpy(v[j].ns, p->ns, sizeof v[j].ns);
        } else if (j < cnt) {
            v[j] = v[--cnt];
        }
    }
    pthread_rwlock_unlock(&c->lock);

    /* Keep the database's collections only. */
    {
        size_t m = 0;
        for (size_t i = 0; i < cnt; i++) {
            if (in_db(v[i].ns, db, db_len)) {
                v[m++] = v[i];
            }
        }
        cnt = m;
    }
    qsort(v, cnt, sizeof *v, info_cmp);
    *out = v;
    *n = cnt;
    return 0;
}

uint64_t eng_catalog_gen(struct eng *e)
{
    return atomic_load(&e->cat.gen);
}

uint64_t eng_catalog_next_id(struct eng *e)
{
    uint64_t id;

    pthread_rwlock_wrlock(&e->cat.lock);
    id = ++e->cat.max_id;
    pthread_rwlock_unlock(&e->cat.lock);
    return id;
}
