/*
 * rollback.c: what a member does with writes that never reached a
 * majority. Nothing uncommitted is ever in RocksDB (the FSM applies only
 * committed entries; the primary's own uncommitted writes live in the
 * overlay, discarded when leadership ends), so rolling back never undoes
 * anything on disk: it saves what the lost writes had written, as mongod
 * does, in rollback files, and logs it.
 *
 * The doubt list: every command entry in this member's raft log above the
 * applied index, in index order, with a copy of its payload (io.c adds
 * them as raft appends or loads them; fsm.c commits them as they apply).
 * When raft cuts entries (a truncate before the new leader's entries, an
 * installed snapshot replacing the log), io.c hands the cut ones here.
 * Commits that were queued but never handed to raft when leadership ended
 * (acknowledged w:1 writes) come here too (repl_rollback_queued), and so do
 * those of a group raft refused to append (repl_rollback_entry: leadership
 * lost between the queueing and the raft_apply).
 *
 * Files: <dbpath>/rollback/<db>.<collection>/removed.<UTC time>.<n>.bson
 * (MongoDB 4.0's layout, by namespace: Cairn has no collection UUIDs),
 * holding, for every _id the lost writes touched, the document as it was
 * on this member after them (inserts and updates; a lost delete leaves no
 * document, as in mongod). docs/decisions.md §24.
 *
 * It works on a struct repl_host (host.h), except repl_rollback_queued,
 * which reads struct repl's proposal queue.
 *
 * Invariants (raft thread):
 *   1. Doubt entries are in strictly increasing index order; an add at or
 *      below the tail's index first rolls back the tail from there (raft
 *      always truncates before it appends over entries).
 *   2. An entry leaves the list exactly once: committed (applied or
 *      covered by an installed snapshot) or rolled back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"

struct repl_doubt
{
    raft_index index;
    raft_term term;
    uint8_t *data;
    size_t len;
    struct repl_doubt *next;
};

/* One document version a lost write left behind. */
struct rb_doc
{
    uint64_t coll_id;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *doc; /* NULL: deleted */
    size_t doc_len;
    size_t seq; /* order of the write */
};

struct rb_ns
{
    uint64_t coll_id;
    char ns[ENG_NS_MAX + 1];
};

/* What a rollback gathers: decoded entries (kept alive for the pointers in
 * docs) and the document versions. */
struct rb_set
{
    struct repl_decoded *dec;
    size_t n_dec, cap_dec;
    struct rb_doc *docs;
    size_t n_docs, cap_docs;
    struct rb_ns *nss; /* namespaces created by the lost writes */
    size_t n_nss, cap_nss;
    size_t n_commits;
    cairn_ts first_ts, last_ts;
};

static void rb_free(struct rb_set *s)
{
    for (size_t i = 0; i < s->n_dec; i++) {
        repl_decoded_free(&s->dec[i]);
    }
    free(s->dec);
    free(s->docs);
    free(s->nss);
    memset(s, 0, sizeof *s);
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    void *q;
    size_t c;

    if (n < *cap) {
        return 0;
    }
    c = *cap == 0 ? 16 : *cap * 2;
    q = realloc(*p, c * size);
    if (q == NULL) {
        return CAIRN_ENOMEM;
    }
    *p = q;
    *cap = c;
    return 0;
}

/* Adds a decoded entry's writes. `buf` must outlive the set. */
static int rb_add(struct rb_set *s, const uint8_t *buf, size_t len, struct cairn_error *err)
{
    struct repl_decoded *d;
    int rc;

    rc = grow((void **)&s->dec, &s->cap_dec, s->n_dec, sizeof *s->dec);
    if (rc != 0) {
        return cairn_error_setf(err, rc, "rollback: out of memory");
    }
    d = &s->dec[s->n_dec];
    rc = repl_oplog_decode(buf, len, d, err);
    if (rc != 0) {
        return rc;
    }
    s->n_dec++;
    for (size_t c = 0; c < d->n_commits; c++) {
        const struct eng_commit *cm = &d->commits[c];
        if (s->n_commits++ == 0) {
            s->first_ts = cm->ts;
        }
        s->last_ts = cm->ts;
        for (size_t i = 0; i < cm->n_ops; i++) {
            const struct eng_op *op = &cm->ops[i];
            if (op->kind == ENG_OP_CREATE && op->ns != NULL) {
                rc = grow((void **)&s->nss, &s->cap_nss, s->n_nss, sizeof *s->nss);
                if (rc != 0) {
                    return cairn_error_setf(err, rc, "rollback: out of memory");
                }
                s->nss[s->n_nss].coll_id = op->coll_id;
                snprintf(s->nss[s->n_nss].ns, sizeof s->nss[s->n_nss].ns, "%s", op->ns);
                s->n_nss++;
                continue;
            }
            if (op->kind != ENG_OP_PUT && op->kind != ENG_OP_DELETE) {
                continue; /* drops and session records leave no document */
            }
            rc = grow((void **)&s->docs, &s->cap_docs, s->n_docs, sizeof *s->docs);
            if (rc != 0) {
                return cairn_error_setf(err, rc, "rollback: out of memory");
            }
            s->docs[s->n_docs] = (struct rb_doc){
                op->coll_id, op->key,  op->key_len, op->kind == ENG_OP_PUT ? op->doc : NULL,
                op->doc_len, s->n_docs};
            s->n_docs++;
        }
    }
    return 0;
}

static int doc_cmp(const void *a, const void *b)
{
    const struct rb_doc *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c;

    if (x->coll_id != y->coll_id) {
        return x->coll_id < y->coll_id ? -1 : 1;
    }
    c = memcmp(x->key, y->key, n);
    if (c != 0 || x->key_len != y->key_len) {
        return c != 0 ? c : (x->key_len < y->key_len ? -1 : 1);
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq ? 1 : 0);
}

static bool same_doc(const struct rb_doc *x, const struct rb_doc *y)
{
    return x->coll_id == y->coll_id && x->key_len == y->key_len &&
           memcmp(x->key, y->key, x->key_len) == 0;
}

/* The namespace of `coll_id`: created by the lost writes, else the
 * catalog's, else "unknown.<id>". */
static void ns_of(struct repl_host *h,
                  const struct rb_set *s,
                  const struct eng_coll_info *cat,
                  size_t n_cat,
                  uint64_t coll_id,
                  char *out,
                  size_t cap)
{
    for (size_t i = 0; i < s->n_nss; i++) {
        if (s->nss[i].coll_id == coll_id) {
            snprintf(out, cap, "%s", s->nss[i].ns);
            return;
        }
    }
    for (size_t i = 0; i < n_cat; i++) {
        if (cat[i].id == coll_id) {
            snprintf(out, cap, "%s", cat[i].ns);
            return;
        }
    }
    (void)h;
    snprintf(out, cap, "unknown.%llu", (unsigned long long)coll_id);
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

/* Opens a new rollback file for `ns`. Returns the fd or -1 (errno). */
static int open_file(struct repl_host *h, const char *ns, char *path, size_t cap)
{
    char stamp[32];
    time_t now = (time_t)(cairn_wall_ms() / 1000);
    struct tm tm;
    int fd;

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H-%M-%S", &tm);
    if ((size_t)snprintf(path, cap, "%s/rollback", h->dbpath) >= cap || mkdir_p(path) != 0) {
        return -1;
    }
    if ((size_t)snprintf(path, cap, "%s/rollback/%s", h->dbpath, ns) >= cap || mkdir_p(path) != 0) {
        return -1;
    }
    for (unsigned n = 0; n < 1000; n++) {
        if ((size_t)snprintf(path, cap, "%s/rollback/%s/removed.%s.%u.bson", h->dbpath, ns, stamp,
                             n) >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST) {
            return fd;
        }
    }
    errno = EEXIST;
    return -1;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes one file per namespace with the newest version of each document
 * the lost writes touched (deleted ones have none). Returns the number of
 * documents saved, or -1 when a file could not be written (logged). */
static long rb_write(struct repl_host *h, struct rb_set *s)
{
    struct eng_coll_info *cat = NULL;
    size_t n_cat = 0;
    long saved = 0;
    int fd = -1;
    uint64_t fd_coll = 0;
    char path[PATH_MAX + 128];
    char ns[ENG_NS_MAX + 32];

    if (s->n_docs == 0) {
        return 0;
    }
    qsort(s->docs, s->n_docs, sizeof *s->docs, doc_cmp);
    if (eng_catalog_list(h->eng, NULL, false, &cat, &n_cat) != 0) {
        cat = NULL;
        n_cat = 0;
    }
    for (size_t i = 0; i < s->n_docs; i++) {
        const struct rb_doc *d = &s->docs[i];
        if (i + 1 < s->n_docs && same_doc(d, &s->docs[i + 1])) {
            continue; /* a later write of the same document wins */
        }
        if (d->doc == NULL) {
            continue;
        }
        if (fd < 0 || fd_coll != d->coll_id) {
            ns_of(h, s, cat, n_cat, d->coll_id, ns, sizeof ns);
            if (strstr(ns, ".$") != NULL) {
                continue; /* index entries and specs (txn/index.c): not documents */
            }
            if (fd >= 0) {
                fsync(fd);
                close(fd);
            }
            fd = open_file(h, ns, path, sizeof path);
            if (fd < 0) {
                cairn_log(CAIRN_LOG_ERROR, "repl", "rollback file for %s: %s", ns, strerror(errno));
                saved = -1;
                break;
            }
            fd_coll = d->coll_id;
            cairn_log(CAIRN_LOG_INFO, "repl", "rollback: writing %s", path);
        }
        if (write_all(fd, d->doc, d->doc_len) != 0) {
            cairn_log(CAIRN_LOG_ERROR, "repl", "rollback file %s: %s", path, strerror(errno));
            saved = -1;
            break;
        }
        saved++;
    }
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(cat);
    return saved;
}

/* Saves a gathered set and logs the rollback. */
static void rb_finish(struct repl_host *h, struct rb_set *s, const char *what, const char *why)
{
    long saved;

    if (s->n_commits == 0) {
        return;
    }
    h->rolling_back = true;
    if (h->ops->rollback_changed != NULL) {
        h->ops->rollback_changed(h->ops_arg);
    }
    cairn_log(CAIRN_LOG_WARN, "repl",
              "ROLLBACK: %zu %s commit(s), ts %u:%u..%u:%u, %s; saving what they wrote under "
              "%s/rollback",
              s->n_commits, what, CAIRN_TS_SECS(s->first_ts), CAIRN_TS_INC(s->first_ts),
              CAIRN_TS_SECS(s->last_ts), CAIRN_TS_INC(s->last_ts), why, h->dbpath);
    saved = rb_write(h, s);
    atomic_fetch_add(&h->n_rolled_back, s->n_commits);
    if (saved >= 0) {
        cairn_log(CAIRN_LOG_WARN, "repl", "ROLLBACK done: %ld document(s) saved", saved);
    }
    h->rolling_back = false;
    if (h->ops->rollback_changed != NULL) {
        h->ops->rollback_changed(h->ops_arg);
    }
}

/* ---- The doubt list ------------------------------------------------------ */

void repl_doubt_add(struct repl_host *h, raft_index index, const struct raft_entry *e, bool loaded)
{
    struct repl_doubt *d;
    cairn_index wm_index;
    cairn_ts wm_ts;

    if (h->doubt_tail != NULL && index <= h->doubt_tail->index) {
        repl_doubt_rollback_from(h, index, "overwritten"); /* invariant 1 */
    }
    if (e->type != RAFT_COMMAND) {
        return;
    }
    if (loaded) {
        eng_applied(h->eng, &wm_index, &wm_ts);
        if (index <= wm_index) {
            return; /* applied before the restart */
        }
    }
    d = malloc(sizeof *d);
    if (d != NULL) {
        d->data = malloc(e->buf.len > 0 ? e->buf.len : 1);
    }
    if (d == NULL || d->data == NULL) {
        /* Without the copy a rollback of this entry cannot save its
         * documents; it is still committed or cut as usual. */
        if (d != NULL) {
            free(d);
        }
        cairn_log(CAIRN_LOG_WARN, "repl", "out of memory keeping raft entry %llu for rollback",
                  (unsigned long long)index);
        return;
    }
    memcpy(d->data, e->buf.base, e->buf.len);
    d->len = e->buf.len;
    d->index = index;
    d->term = e->term;
    d->next = NULL;
    if (h->doubt_tail != NULL) {
        h->doubt_tail->next = d;
    } else {
        h->doubt_head = d;
    }
    h->doubt_tail = d;
    h->n_doubt++;
}

void repl_doubt_commit_upto(struct repl_host *h, raft_index index)
{
    while (h->doubt_head != NULL && h->doubt_head->index <= index) {
        struct repl_doubt *d = h->doubt_head;
        h->doubt_head = d->next;
        free(d->data);
        free(d);
        h->n_doubt--;
    }
    if (h->doubt_head == NULL) {
        h->doubt_tail = NULL;
    }
}

void repl_doubt_rollback_from(struct repl_host *h, raft_index index, const char *why)
{
    struct repl_doubt **pp = &h->doubt_head, *cut, *d;
    struct rb_set s;
    struct cairn_error err;
    char what[64];

    while (*pp != NULL && (*pp)->index < index) {
        pp = &(*pp)->next;
    }
    cut = *pp;
    if (cut == NULL) {
        return;
    }
    *pp = NULL;
    h->doubt_tail = NULL;
    for (d = h->doubt_head; d != NULL; d = d->next) {
        h->doubt_tail = d;
    }
    memset(&s, 0, sizeof s);
    for (d = cut; d != NULL; d = d->next) {
        h->n_doubt--;
        if (rb_add(&s, d->data, d->len, &err) != 0) {
            cairn_log(CAIRN_LOG_ERROR, "repl", "rollback: raft entry %llu: %s",
                      (unsigned long long)d->index, err.msg);
        }
    }
    snprintf(what, sizeof what, "uncommitted (raft entries from %llu)",
             (unsigned long long)cut->index);
    rb_finish(h, &s, what, why);
    rb_free(&s);
    while (cut != NULL) {
        d = cut->next;
        free(cut->data);
        free(cut);
        cut = d;
    }
}

void repl_doubt_free(struct repl_host *h)
{
    struct repl_doubt *d = h->doubt_head;

    while (d != NULL) {
        struct repl_doubt *next = d->next;
        free(d->data);
        free(d);
        d = next;
    }
    h->doubt_head = h->doubt_tail = NULL;
    h->n_doubt = 0;
}

/* ---- Commits never handed to raft ---------------------------------------- */

void repl_rollback_queued(struct repl *r, struct repl_pcommit *list, const char *why)
{
    struct cairn_buf *bufs = NULL;
    size_t n = 0;
    struct rb_set s;
    struct cairn_error err;

    memset(&s, 0, sizeof s);
    for (struct repl_pcommit *p = list; p != NULL; p = p->next) {
        n++;
    }
    if (n == 0) {
        return;
    }
    bufs = calloc(n, sizeof *bufs);
    if (bufs == NULL) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "rollback of %zu queued commits: out of memory", n);
        return;
    }
    n = 0;
    for (struct repl_pcommit *p = list; p != NULL; p = p->next, n++) {
        /* A one-commit entry: header, the commit, padding. */
        struct cairn_buf *b = &bufs[n];
        int rc = repl_oplog_encode_header(r->leader_term, b);
        if (rc == 0) {
            rc = cairn_buf_append(b, p->data, p->len);
        }
        while (rc == 0 && b->len % REPL_OPLOG_ALIGN != 0) {
            rc = cairn_buf_push(b, 0);
        }
        if (rc == 0) {
            rc = rb_add(&s, b->data, b->len, &err);
        }
        if (rc != 0) {
            cairn_log(CAIRN_LOG_ERROR, "repl", "rollback of a queued commit: %s",
                      rc == CAIRN_ENOMEM ? "out of memory" : err.msg);
        }
    }
    rb_finish(&r->host, &s, "acknowledged w:1 but never proposed", why);
    rb_free(&s);
    for (size_t i = 0; i < n; i++) {
        cairn_buf_free(&bufs[i]);
    }
    free(bufs);
}

void repl_rollback_entry(struct repl *r, const uint8_t *data, size_t len, const char *why)
{
    struct rb_set s;
    struct cairn_error err;

    memset(&s, 0, sizeof s);
    if (rb_add(&s, data, len, &err) != 0) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "rollback of a refused entry: %s", err.msg);
    }
    rb_finish(&r->host, &s, "acknowledged w:1 but refused by raft", why);
    rb_free(&s);
}
