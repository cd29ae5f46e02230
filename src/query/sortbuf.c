/*
 * sortbuf.c: the blocking sort of find and of the pipeline's $sort
 * (qry_sortbuf_* in query.h). Without a limit it holds every document and
 * merge-sorts them at the end; with a limit k (a $sort followed by $limit,
 * a find with sort and limit) it keeps only the k first in sort order in a
 * binary max-heap, so memory is O(k) and time O(n log k) however many
 * documents pass. Ties keep their arrival order (every document carries its
 * arrival number), so both paths give the same, stable, order.
 *
 * The bytes held are bounded by the cap given at creation. Past it, add
 * fails with 292 QueryExceededMemoryLimitNoDiskUseAllowed, unless the
 * client passed allowDiskUse and a spill directory is set: then the held
 * documents are sorted and written out as a run (sortspill.c), memory is
 * freed, and the input goes on (a top-k heap turns into a plain buffer:
 * the consumer applies the limit). Reading merges the runs with a heap of
 * their heads; ties go to the earlier run, whose documents arrived
 * earlier, so the order stays stable. Held bytes are also charged to the
 * server-wide budget (membudget.c). See docs/decisions.md §35.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

struct ent
{
    bson_t *doc;
    uint64_t seq;
};

struct qry_sortbuf
{
    const struct qry_sort *sort;
    uint64_t keep; /* 0 = all */
    size_t max_bytes;
    const char *what;
    bool disk_use; /* the client passed allowDiskUse: true */
    struct ent *e;
    size_t n, cap;
    size_t bytes;
    size_t charged; /* to the server-wide budget: >= bytes, in steps */
    uint64_t seq;

    struct qry_spill *spill; /* the file holding the runs */
    struct qry_run **runs;   /* spilled runs, in the order written */
    size_t nruns, runcap;
    bool done;      /* qry_sortbuf_done was called */
    size_t pos;     /* done, no runs: next entry of e[] to hand out */
    bson_t **heads; /* done, runs: each run's next document (NULL: ended) */
    size_t *heap;   /* done, runs: runs with a head, min-heap by (head, run) */
    size_t nheap;
};

/* Most runs one sort may spill: each is an open file until merged (with
 * the default 100 MB cap, 50 GB of sorted data). */
#define MAX_RUNS 512

/* The server-wide budget is charged in steps of this, not per document. */
#define CHARGE_STEP ((size_t)256 * 1024)

static atomic_size_t sort_mem_limit = QRY_SORT_MEM_DEFAULT;

size_t qry_sort_mem_limit(void)
{
    return atomic_load(&sort_mem_limit);
}

void qry_set_sort_mem_limit(size_t bytes)
{
    atomic_store(&sort_mem_limit, bytes);
}

static size_t doc_cost(const bson_t *d)
{
    return d->len + sizeof(bson_t) + sizeof(struct ent);
}

/* Order of two entries: the sort spec, then arrival. */
static int ecmp(const struct qry_sortbuf *b, const struct ent *x, const struct ent *y)
{
    int c = qry_sort_cmp(b->sort, x->doc, y->doc);
    if (c != 0) {
        return c;
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq ? 1 : 0);
}

int qry_sortbuf_new(const struct qry_sort *sort,
                    uint64_t keep,
                    size_t max_bytes,
                    const char *what,
                    struct qry_sortbuf **out,
                    struct cairn_error *err)
{
    struct qry_sortbuf *b = calloc(1, sizeof *b);
    *out = NULL;
    if (b == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    b->sort = sort;
    b->keep = keep;
    b->max_bytes = max_bytes;
    b->what = what != NULL ? what : "";
    *out = b;
    return 0;
}

static void sift_up(struct qry_sortbuf *b, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (ecmp(b, &b->e[p], &b->e[i]) >= 0) {
            break;
        }
        struct ent t = b->e[p];
        b->e[p] = b->e[i];
        b->e[i] = t;
        i = p;
    }
}

static void sift_down(struct qry_sortbuf *b, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < b->n && ecmp(b, &b->e[l], &b->e[m]) > 0) {
            m = l;
        }
        if (r < b->n && ecmp(b, &b->e[r], &b->e[m]) > 0) {
            m = r;
        }
        if (m == i) {
            return;
        }
        struct ent t = b->e[m];
        b->e[m] = b->e[i];
        b->e[i] = t;
        i = m;
    }
}

static int over_limit(const struct qry_sortbuf *b, struct cairn_error *err)
{
    if (b->disk_use) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                                 "%sSort exceeded memory limit of %zu bytes and this server has "
                                 "no directory to spill to, so allowDiskUse cannot lift it.",
                                 b->what, b->max_bytes);
    }
    return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                             "%sSort exceeded memory limit of %zu bytes, but did not opt in to "
                             "external sorting.",
                             b->what, b->max_bytes);
}

static int spill(struct qry_sortbuf *b, struct cairn_error *err);

void qry_sortbuf_set_disk_use(struct qry_sortbuf *b, bool requested)
{
    b->disk_use = requested;
}

int qry_sortbuf_add(struct qry_sortbuf *b, const bson_t *doc, struct cairn_error *err)
{
    struct ent ne = {NULL, b->seq++};
    bool heap = b->keep > 0;
    if (heap && b->n == b->keep) {
        /* Full: the new document (later than all held) enters only when it
         * sorts strictly before the largest held one. */
        ne.doc = (bson_t *)doc;
        if (ecmp(b, &ne, &b->e[0]) >= 0) {
            return 0;
        }
        bson_t *c = bson_copy(doc);
        if (c == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        b->bytes -= doc_cost(b->e[0].doc);
        bson_destroy(b->e[0].doc);
        b->e[0].doc = c;
        b->e[0].seq = ne.seq;
        b->bytes += doc_cost(c);
        sift_down(b, 0);
    } else {
        if (b->n == b->cap) {
            size_t nc = b->cap ? b->cap * 2 : 16;
            if (heap && nc > b->keep) {
                nc = (size_t)b->keep;
            }
            struct ent *na = realloc(b->e, nc * sizeof *na);
            if (na == NULL) {
                return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            }
            b->e = na;
            b->cap = nc;
        }
        ne.doc = bson_copy(doc);
        if (ne.doc == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        b->e[b->n++] = ne;
        b->bytes += doc_cost(ne.doc);
        if (heap) {
            sift_up(b, b->n - 1);
        }
    }
    if (b->max_bytes != 0 && b->bytes > b->max_bytes) {
        return b->disk_use && qry_spill_enabled() ? spill(b, err) : over_limit(b, err);
    }
    if (b->bytes > b->charged) {
        size_t step = b->bytes - b->charged;
        if (step < CHARGE_STEP) {
            step = CHARGE_STEP;
        }
        int rv = qry_mem_charge(step, err);
        if (rv) {
            return rv;
        }
        b->charged += step;
    }
    return 0;
}

static void uncharge(struct qry_sortbuf *b)
{
    qry_mem_release(b->charged);
    b->charged = 0;
}

static void merge_sort(const struct qry_sortbuf *b, struct ent *a, struct ent *tmp, size_t n)
{
    if (n < 2) {
        return;
    }
    size_t m = n / 2, i = 0, j = m, k = 0;
    merge_sort(b, a, tmp, m);
    merge_sort(b, a + m, tmp, n - m);
    if (ecmp(b, &a[m - 1], &a[m]) <= 0) {
        return; /* already in order */
    }
    while (i < m && j < n) {
        tmp[k++] = ecmp(b, &a[j], &a[i]) < 0 ? a[j++] : a[i++];
    }
    while (i < m) {
        tmp[k++] = a[i++];
    }
    while (j < n) {
        tmp[k++] = a[j++];
    }
    memcpy(a, tmp, n * sizeof *a);
}

/* Sorts the held entries in place. */
static int sort_held(struct qry_sortbuf *b, struct cairn_error *err)
{
    if (b->n < 2) {
        return 0;
    }
    struct ent *tmp = malloc(b->n * sizeof *tmp);
    if (tmp == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    merge_sort(b, b->e, tmp, b->n);
    free(tmp);
    return 0;
}

/* Writes the held documents out as a sorted run and frees them. */
static int spill(struct qry_sortbuf *b, struct cairn_error *err)
{
    int rv;
    struct qry_run *run = NULL;
    bson_t **docs = NULL;

    b->keep = 0; /* from now on every document is kept; the consumer limits */
    if (b->n == 0) {
        return 0;
    }
    if (b->nruns == MAX_RUNS) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                                 "%sSort spilled %d runs of up to %zu bytes, its most; raise "
                                 "internalQueryMaxBlockingSortMemoryUsageBytes or narrow the query",
                                 b->what, MAX_RUNS, b->max_bytes);
    }
    if (b->nruns == b->runcap) {
        size_t nc = b->runcap ? b->runcap * 2 : 8;
        struct qry_run **nr = realloc(b->runs, nc * sizeof *nr);
        if (nr == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        b->runs = nr;
        b->runcap = nc;
    }
    rv = sort_held(b, err);
    if (rv == 0 && (docs = malloc(b->n * sizeof *docs)) == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    if (rv == 0) {
        for (size_t i = 0; i < b->n; i++) {
            docs[i] = b->e[i].doc;
        }
        rv = qry_run_write(&b->spill, docs, b->n, &run, err);
    }
    free(docs);
    if (rv != 0) {
        return rv;
    }
    b->runs[b->nruns++] = run;
    for (size_t i = 0; i < b->n; i++) {
        bson_destroy(b->e[i].doc);
    }
    b->n = 0;
    b->bytes = 0;
    uncharge(b);
    return 0;
}

bool qry_sortbuf_spilled(const struct qry_sortbuf *b)
{
    return b->nruns > 0;
}

/* Order of two runs by their heads (both non-NULL), then by run. */
static int hcmp(const struct qry_sortbuf *b, size_t x, size_t y)
{
    int c = qry_sort_cmp(b->sort, b->heads[x], b->heads[y]);
    if (c != 0) {
        return c;
    }
    return x < y ? -1 : (x > y ? 1 : 0);
}

static void heap_down(struct qry_sortbuf *b, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < b->nheap && hcmp(b, b->heap[l], b->heap[m]) < 0) {
            m = l;
        }
        if (r < b->nheap && hcmp(b, b->heap[r], b->heap[m]) < 0) {
            m = r;
        }
        if (m == i) {
            return;
        }
        size_t t = b->heap[m];
        b->heap[m] = b->heap[i];
        b->heap[i] = t;
        i = m;
    }
}

int qry_sortbuf_done(struct qry_sortbuf *b, struct cairn_error *err)
{
    int rv;

    b->done = true;
    b->pos = 0;
    if (b->nruns == 0) {
        return sort_held(b, err);
    }
    rv = spill(b, err); /* the rest becomes the last run */
    if (rv != 0) {
        return rv;
    }
    b->heads = calloc(b->nruns, sizeof *b->heads);
    b->heap = malloc(b->nruns * sizeof *b->heap);
    if (b->heads == NULL || b->heap == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < b->nruns; i++) {
        int r = qry_run_next(b->runs[i], &b->heads[i], err);
        if (r < 0) {
            return err->code ? err->code : CAIRN_EIO;
        }
        if (r > 0) {
            b->heap[b->nheap++] = i;
        }
    }
    for (size_t i = b->nheap / 2; i-- > 0;) {
        heap_down(b, i);
    }
    return 0;
}

int qry_sortbuf_next(struct qry_sortbuf *b, bson_t **doc, struct cairn_error *err)
{
    *doc = NULL;
    if (qry_check_interrupt(err) != 0) {
        return -1;
    }
    if (b->nruns == 0) {
        if (b->pos >= b->n) {
            return 0;
        }
        *doc = b->e[b->pos].doc;
        b->e[b->pos++].doc = NULL;
        /* The consumer holds it now: release the charge as it goes. */
        b->bytes -= doc_cost(*doc);
        if (b->charged > b->bytes + CHARGE_STEP) {
            qry_mem_release(b->charged - b->bytes);
            b->charged = b->bytes;
        }
        return 1;
    }
    if (b->nheap == 0) {
        return 0;
    }
    size_t r = b->heap[0];
    *doc = b->heads[r];
    b->heads[r] = NULL;
    int got = qry_run_next(b->runs[r], &b->heads[r], err);
    if (got < 0) {
        bson_destroy(*doc);
        *doc = NULL;
        return -1;
    }
    if (got == 0) {
        b->heap[0] = b->heap[--b->nheap];
        qry_run_free(b->runs[r]);
        b->runs[r] = NULL;
    }
    heap_down(b, 0);
    return 1;
}

int qry_sortbuf_finish(struct qry_sortbuf *b, bson_t ***docs, size_t *n, struct cairn_error *err)
{
    bson_t **out = NULL;
    size_t k = 0, cap = 0;
    int rv = 0;
    *docs = NULL;
    *n = 0;
    if (b->nruns == 0) {
        /* All in memory: sort and hand the array over. */
        if (b->n == 0) {
            return 0;
        }
        out = malloc(b->n * sizeof *out);
        if (out == NULL || sort_held(b, err) != 0) {
            free(out);
            return err->code ? err->code : cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < b->n; i++) {
            out[i] = b->e[i].doc;
        }
        *docs = out;
        *n = b->n;
        b->n = 0;
        b->bytes = 0;
        uncharge(b);
        return 0;
    }
    rv = qry_sortbuf_done(b, err);
    for (;;) {
        bson_t *d = NULL;
        int got = rv == 0 ? qry_sortbuf_next(b, &d, err) : -1;
        if (got <= 0) {
            rv = got < 0 ? (err->code ? err->code : CAIRN_EIO) : 0;
            break;
        }
        if (k == cap) {
            size_t nc = cap ? cap * 2 : 64;
            bson_t **na = realloc(out, nc * sizeof *na);
            if (na == NULL) {
                bson_destroy(d);
                rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
                break;
            }
            out = na;
            cap = nc;
        }
        out[k++] = d;
    }
    if (rv != 0) {
        for (size_t i = 0; i < k; i++) {
            bson_destroy(out[i]);
        }
        free(out);
        return rv;
    }
    *docs = out;
    *n = k;
    return 0;
}

size_t qry_sortbuf_bytes(const struct qry_sortbuf *b)
{
    return b->bytes;
}

void qry_sortbuf_free(struct qry_sortbuf *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (b->e[i].doc != NULL) {
            bson_destroy(b->e[i].doc);
        }
    }
    for (size_t i = 0; i < b->nruns; i++) {
        qry_run_free(b->runs[i]);
        if (b->heads != NULL && b->heads[i] != NULL) {
            bson_destroy(b->heads[i]);
        }
    }
    qry_spill_free(b->spill);
    uncharge(b);
    free(b->runs);
    free(b->heads);
    free(b->heap);
    free(b->e);
    free(b);
}
