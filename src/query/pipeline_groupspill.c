/*
 * pipeline_groupspill.c: a $group larger than its memory limit, under
 * allowDiskUse (docs/decisions.md §39). Past qry_group_mem_limit the
 * table's groups are sorted by key (qry_cmp, so the groups' equality) and
 * written as a run of partial states (sortspill.c's anonymous files under
 * <dbpath>/_tmp), and the table starts empty. At the end what the table
 * still holds is spilled too and the runs are merged by key with a heap of
 * their heads: equal keys come together, earliest run first, and their
 * partial states are combined in that order ($first keeps the earliest,
 * $last the latest, $push concatenates in input order). Memory while
 * merging is one group plus one head per run. A spilled $group emits its
 * groups in key order (mongod's order is unspecified, and its spilled
 * $group is also key-ordered).
 */
#include <stdlib.h>
#include <string.h>

#include "query/pipeline_int.h"
#include "query/query.h"
#include "query/query_int.h"

/* Most runs one $group may spill: each is an open file until merged (with
 * the default 100 MB limit, 50 GB of partial groups). */
#define MAX_GROUP_RUNS 512

static int cmp_grp_ptr(const void *x, const void *y)
{
    const struct grp *a = *(const struct grp *const *)x;
    const struct grp *b = *(const struct grp *const *)y;
    return qry_cmp(&a->key, &b->key);
}

int pl_group_spill(const struct stage *s, struct gtab *t, struct cairn_error *err)
{
    struct grp **order = NULL;
    bson_t **docs = NULL;
    struct qry_run *run = NULL;
    size_t built = 0;
    int rv = 0;

    if (t->n == 0) {
        return 0;
    }
    if (t->nruns == MAX_GROUP_RUNS) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                                 "Exceeded memory limit for $group: more than %d spilled runs",
                                 MAX_GROUP_RUNS);
    }
    if (t->nruns == t->runcap) {
        size_t nc = t->runcap ? t->runcap * 2 : 8;
        struct qry_run **nr = realloc(t->runs, nc * sizeof *nr);
        if (nr == NULL) {
            return pl_oom(err);
        }
        t->runs = nr;
        t->runcap = nc;
    }
    order = malloc(t->n * sizeof *order);
    docs = calloc(t->n, sizeof *docs);
    if (order == NULL || docs == NULL) {
        rv = pl_oom(err);
        goto out;
    }
    for (size_t i = 0; i < t->n; i++) {
        order[i] = &t->g[i];
    }
    qsort(order, t->n, sizeof *order, cmp_grp_ptr);
    for (built = 0; built < t->n; built++) {
        docs[built] = bson_new();
        if (docs[built] == NULL) {
            rv = pl_oom(err);
            goto out;
        }
        pl_group_state_append(s, order[built], docs[built]);
    }
    rv = qry_run_write(&t->spill, docs, t->n, &run, err);
    if (rv == 0) {
        t->runs[t->nruns++] = run;
        pl_gtab_clear_groups(t, s->nacc);
    }
out:
    for (size_t i = 0; docs != NULL && i < built; i++) {
        bson_destroy(docs[i]);
    }
    free(docs);
    free(order);
    return rv;
}

/* The merge: each run's next partial group and its key (a view into it). */
struct merge
{
    size_t n;
    bson_t **head;     /* NULL: the run ended */
    bson_value_t *key; /* of head[i] */
    size_t *heap;      /* runs with a head, min-heap by (key, run) */
    size_t nheap;
};

static bool before(const struct merge *m, size_t a, size_t b)
{
    int c = qry_cmp(&m->key[a], &m->key[b]);
    return c < 0 || (c == 0 && a < b);
}

static void sift_down(struct merge *m, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, least = i;
        if (l < m->nheap && before(m, m->heap[l], m->heap[least])) {
            least = l;
        }
        if (r < m->nheap && before(m, m->heap[r], m->heap[least])) {
            least = r;
        }
        if (least == i) {
            return;
        }
        size_t tmp = m->heap[i];
        m->heap[i] = m->heap[least];
        m->heap[least] = tmp;
        i = least;
    }
}

/* Reads run `i`'s next head: 1, 0 at its end, -1 with err set. */
static int advance(struct merge *m, struct gtab *t, size_t i, struct cairn_error *err)
{
    bson_iter_t it;
    if (m->head[i] != NULL) {
        bson_destroy(m->head[i]);
        m->head[i] = NULL;
    }
    int got = qry_run_next(t->runs[i], &m->head[i], err);
    if (got <= 0) {
        return got;
    }
    if (!bson_iter_init_find(&it, m->head[i], "k")) {
        cairn_error_mongo(err, CAIRN_EIO, MONGO_InternalError,
                          "$group read back a malformed spilled group");
        return -1;
    }
    m->key[i] = *bson_iter_value(&it);
    return 1;
}

static int merge_runs(const struct stage *s,
                      struct gtab *t,
                      int (*emit)(void *arg, bson_t *doc, struct cairn_error *err),
                      void *arg,
                      struct cairn_error *err)
{
    struct merge m = {.n = t->nruns};
    struct grp cur = {.key = {.value_type = BSON_TYPE_EOD}};
    int rv = 0;

    m.head = calloc(m.n, sizeof *m.head);
    m.key = calloc(m.n, sizeof *m.key);
    m.heap = calloc(m.n, sizeof *m.heap);
    if (m.head == NULL || m.key == NULL || m.heap == NULL) {
        rv = pl_oom(err);
        goto out;
    }
    for (size_t i = 0; i < m.n; i++) {
        int got = advance(&m, t, i, err);
        if (got < 0) {
            rv = err->code ? err->code : CAIRN_EIO;
            goto out;
        }
        if (got > 0) {
            m.heap[m.nheap++] = i;
        }
    }
    for (size_t i = m.nheap; i-- > 0;) {
        sift_down(&m, i);
    }
    while (m.nheap > 0) {
        size_t r = m.heap[0];
        rv = qry_check_interrupt(err);
        if (rv != 0) {
            goto out;
        }
        if (cur.st != NULL && qry_cmp(&cur.key, &m.key[r]) != 0) {
            /* The least key left is another one: the current group is whole. */
            bson_t o = BSON_INITIALIZER;
            pl_group_output(s, &cur, &o);
            rv = emit(arg, &o, err);
            bson_destroy(&o);
            pl_accstates_free(s, cur.st);
            cur.st = NULL;
            bson_value_destroy(&cur.key);
            cur.key.value_type = BSON_TYPE_EOD;
            if (rv != 0) {
                goto out;
            }
        }
        if (cur.st == NULL) {
            cur.st = pl_accstates_new(s);
            if (cur.st == NULL) {
                rv = pl_oom(err);
                goto out;
            }
            /* The earliest run's key stands for the group (as the first
             * document's key does in memory). */
            bson_value_copy(&m.key[r], &cur.key);
        }
        rv = pl_group_state_merge(s, cur.st, m.head[r], err);
        if (rv != 0) {
            goto out;
        }
        int got = advance(&m, t, r, err);
        if (got < 0) {
            rv = err->code ? err->code : CAIRN_EIO;
            goto out;
        }
        if (got == 0) {
            m.heap[0] = m.heap[--m.nheap];
        }
        sift_down(&m, 0);
    }
    if (cur.st != NULL) {
        bson_t o = BSON_INITIALIZER;
        pl_group_output(s, &cur, &o);
        rv = emit(arg, &o, err);
        bson_destroy(&o);
    }
out:
    pl_accstates_free(s, cur.st);
    if (cur.key.value_type != BSON_TYPE_EOD) {
        bson_value_destroy(&cur.key);
    }
    for (size_t i = 0; m.head != NULL && i < m.n; i++) {
        if (m.head[i] != NULL) {
            bson_destroy(m.head[i]);
        }
    }
    free(m.head);
    free(m.key);
    free(m.heap);
    return rv;
}

int pl_group_flush(const struct stage *s,
                   struct gtab *t,
                   int (*emit)(void *arg, bson_t *doc, struct cairn_error *err),
                   void *arg,
                   struct cairn_error *err)
{
    int rv = 0;
    if (t->nruns == 0) {
        for (size_t k = 0; !rv && k < t->n; k++) {
            bson_t o = BSON_INITIALIZER;
            pl_group_output(s, &t->g[k], &o);
            rv = emit(arg, &o, err);
            bson_destroy(&o);
        }
        return rv;
    }
    rv = pl_group_spill(s, t, err);
    if (rv != 0) {
        return rv;
    }
    return merge_runs(s, t, emit, arg, err);
}
