/*
 * sortbuf.c: the blocking sort of find and of the pipeline's $sort
 * (qry_sortbuf_* in query.h). Without a limit it holds every document and
 * merge-sorts them at the end; with a limit k (a $sort followed by $limit,
 * a find with sort and limit) it keeps only the k first in sort order in a
 * binary max-heap, so memory is O(k) and time O(n log k) however many
 * documents pass. Ties keep their arrival order (every document carries its
 * arrival number), so both paths give the same, stable, order.
 *
 * The bytes held are bounded by the cap given at creation: past it, add
 * fails with 292 QueryExceededMemoryLimitNoDiskUseAllowed (there is no
 * spilling to disk; see docs/decisions.md §31e). They are also charged to
 * the server-wide budget (membudget.c) while held.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"

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
};

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
                                 "%sSort exceeded memory limit of %zu bytes; allowDiskUse cannot "
                                 "lift it because Cairn does not spill sorts to disk: add a "
                                 "limit, an index on the sort key or a narrower filter.",
                                 b->what, b->max_bytes);
    }
    return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                             "%sSort exceeded memory limit of %zu bytes, but did not opt in to "
                             "external sorting.",
                             b->what, b->max_bytes);
}

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
        return over_limit(b, err);
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

int qry_sortbuf_finish(struct qry_sortbuf *b, bson_t ***docs, size_t *n, struct cairn_error *err)
{
    bson_t **out;
    *docs = NULL;
    *n = 0;
    if (b->n == 0) {
        return 0;
    }
    struct ent *tmp = malloc(b->n * sizeof *tmp);
    out = malloc(b->n * sizeof *out);
    if (tmp == NULL || out == NULL) {
        free(tmp);
        free(out);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    merge_sort(b, b->e, tmp, b->n);
    free(tmp);
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
        bson_destroy(b->e[i].doc);
    }
    uncharge(b);
    free(b->e);
    free(b);
}
