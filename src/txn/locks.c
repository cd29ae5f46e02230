/*
 * locks.c: the intent lock table. An intent on (collection id, encoded _id)
 * says "this write set will write this document"; coll_id 0 with a
 * namespace as key is the intent to create or drop that collection (or, in
 * exclusive mode, to change its indexes). The
 * first writer wins: transactions that meet another holder fail at once
 * (write.c), statements wait for it here.
 *
 * Invariants:
 *  1. At most one write set holds an intent on a key; it holds it until it
 *     commits (the commit section has enqueued the new versions) or aborts.
 *  2. A waiter holds no intent of its own while it waits (write.c flushes
 *     first) but, for a unique index key, the pinned intents of the one
 *     document it resolves (write.c, 4); transactions never wait, so waits
 *     cannot form a cycle.
 *  An intent on (index id, key) says "this write set writes this unique
 *  index entry" (txn/index.c); its key is the index key, not an _id.
 *  3. Releasing an intent while anyone waits broadcasts `cv`; waiters
 *     re-check their key under `mu`, so no wake-up is lost.
 *
 * One mutex guards the whole table: every critical section is a hash probe
 * and a small allocation or free.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
#include "txn/txn_int.h"

#define LOCK_BUCKETS_INIT 1024

static uint64_t hash_key(uint64_t coll_id, const uint8_t *key, size_t len)
{
    uint64_t h = cairn_hash_bytes(CAIRN_HASH_SEED ^ (coll_id * 0x9E3779B97F4A7C15ULL), key, len);
    return h ^ (h >> 31);
}

int txn_locks_init(struct txn_locks *t)
{
    memset(t, 0, sizeof *t);
    t->buckets = calloc(LOCK_BUCKETS_INIT, sizeof *t->buckets);
    if (t->buckets == NULL) {
        return CAIRN_ENOMEM;
    }
    t->n_buckets = LOCK_BUCKETS_INIT;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    return 0;
}

void txn_locks_destroy(struct txn_locks *t)
{
    if (t->buckets == NULL) {
        return;
    }
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct txn_lock *l = t->buckets[i];
        while (l != NULL) {
            struct txn_lock *next = l->next;
            free(l);
            l = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
}

/* Whether `owner` may take the intent on the key (mu held): sets *mine to
 * its own entry, if any. */
static bool compatible(struct txn_locks *t,
                       uint64_t coll_id,
                       uint64_t h,
                       const uint8_t *key,
                       size_t len,
                       const struct txn_write *owner,
                       bool shared,
                       struct txn_lock **mine)
{
    bool others_shared = false, others_excl = false, others_queued = false;

    *mine = NULL;
    for (struct txn_lock *l = t->buckets[h & (t->n_buckets - 1)]; l != NULL; l = l->next) {
        if (l->hash != h || l->coll_id != coll_id || l->key_len != len ||
            memcmp(l->key, key, len) != 0) {
            continue;
        }
        if (l->owner == owner) {
            if (!l->waiting) {
                *mine = l;
            }
        } else if (l->waiting) {
            /* An exclusive request queued: new shared holders wait behind
             * it (or, transactions, fail), so that a drop is not starved. */
            others_queued = true;
        } else if (l->shared) {
            others_shared = true;
        } else {
            others_excl = true;
        }
    }
    if (*mine != NULL && (!(*mine)->shared || shared)) {
        return true; /* held already */
    }
    if (shared) {
        return !others_excl && !others_queued;
    }
    return !others_excl && !others_shared; /* a new one, or an upgrade */
}

/* Doubles the bucket array when the table is loaded (mu held). Failure to
 * grow only makes chains longer. */
static void maybe_grow(struct txn_locks *t)
{
    size_t n = t->n_buckets * 2;
    struct txn_lock **b;

    if (t->n < t->n_buckets * 2) {
        return;
    }
    b = calloc(n, sizeof *b);
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct txn_lock *l = t->buckets[i];
        while (l != NULL) {
            struct txn_lock *next = l->next;
            l->next = b[l->hash & (n - 1)];
            b[l->hash & (n - 1)] = l;
            l = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

/* Adds an entry to the table (mu held). Returns it, or NULL without
 * memory. */
static struct txn_lock *entry_new(struct txn_locks *t,
                                  uint64_t coll_id,
                                  uint64_t h,
                                  const uint8_t *key,
                                  size_t key_len,
                                  struct txn_write *owner,
                                  bool shared)
{
    struct txn_lock *l = malloc(sizeof *l + key_len);

    if (l == NULL) {
        return NULL;
    }
    l->coll_id = coll_id;
    l->hash = h;
    l->owner = owner;
    l->shared = shared;
    l->waiting = false;
    l->pinned = false;
    l->key_len = key_len;
    memcpy(l->key, key, key_len);
    maybe_grow(t);
    l->next = t->buckets[h & (t->n_buckets - 1)];
    t->buckets[h & (t->n_buckets - 1)] = l;
    t->n++;
    return l;
}

/* Removes an entry from the table (mu held); the caller frees it. */
static void entry_unlink(struct txn_locks *t, struct txn_lock *l)
{
    struct txn_lock **pp = &t->buckets[l->hash & (t->n_buckets - 1)];

    while (*pp != NULL && *pp != l) {
        pp = &(*pp)->next;
    }
    if (*pp == l) {
        *pp = l->next;
        t->n--;
    }
}

int txn_locks_try(struct txn_locks *t,
                  uint64_t coll_id,
                  const uint8_t *key,
                  size_t key_len,
                  struct txn_write *owner,
                  bool shared,
                  struct txn_lock **lk)
{
    uint64_t h = hash_key(coll_id, key, key_len);
    struct txn_lock *l, *mine;
    int rv = 0;

    *lk = NULL;
    pthread_mutex_lock(&t->mu);
    if (!compatible(t, coll_id, h, key, key_len, owner, shared, &mine)) {
        rv = CAIRN_EBUSY;
        goto out;
    }
    if (mine != NULL) {
        mine->shared = mine->shared && shared; /* an upgrade, when alone */
        goto out;
    }
    l = entry_new(t, coll_id, h, key, key_len, owner, shared);
    if (l == NULL) {
        rv = CAIRN_ENOMEM;
        goto out;
    }
    *lk = l;
out:
    pthread_mutex_unlock(&t->mu);
    return rv;
}

int txn_locks_wait_free(struct txn_locks *t,
                        uint64_t coll_id,
                        const uint8_t *key,
                        size_t key_len,
                        struct txn_write *owner,
                        bool shared,
                        struct cairn_op *op,
                        struct txn_lock **lk,
                        struct cairn_error *err)
{
    uint64_t h = hash_key(coll_id, key, key_len);
    struct txn_lock *mine, *queued = NULL;
    int rv = 0;

    *lk = NULL;
    pthread_mutex_lock(&t->mu);
    if (coll_id == 0 && !shared && !compatible(t, coll_id, h, key, key_len, owner, shared, &mine)) {
        /* Queue the exclusive request (invariant 4); without memory it
         * only waits unqueued. */
        queued = entry_new(t, coll_id, h, key, key_len, owner, false);
        if (queued != NULL) {
            queued->waiting = true;
        }
    }
    while (!compatible(t, coll_id, h, key, key_len, owner, shared, &mine)) {
        t->n_waiters++;
        rv = cairn_op_wait(op, &t->mu, &t->cv, 0, err);
        t->n_waiters--;
        if (rv != 0) {
            break;
        }
    }
    if (queued != NULL && rv == 0) {
        /* Held from here, with no window for a writer to slip in. */
        queued->waiting = false;
        *lk = queued;
    } else if (queued != NULL) {
        entry_unlink(t, queued);
        free(queued);
        if (t->n_waiters > 0) {
            pthread_cond_broadcast(&t->cv); /* shared requests queued behind it */
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rv;
}

void txn_locks_downgrade(struct txn_locks *t, struct txn_lock *lk)
{
    pthread_mutex_lock(&t->mu);
    if (!lk->shared) {
        lk->shared = true;
        if (t->n_waiters > 0) {
            pthread_cond_broadcast(&t->cv);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void txn_locks_release(struct txn_locks *t, struct txn_lock **lks, size_t n)
{
    if (n == 0) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < n; i++) {
        entry_unlink(t, lks[i]);
        free(lks[i]);
    }
    if (t->n_waiters > 0) {
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
}
