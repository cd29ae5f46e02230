/*
 * test_txn.c: the transaction layer over a real engine and a real
 * one-member raft group in a temporary directory: namespaces, staging,
 * duplicate keys, visibility of commits to local and majority reads, write
 * concern waits, the cluster clock, intents (first writer wins, statements
 * waiting for transactions, no lost updates under concurrent writers),
 * snapshot isolation of transactions, and the session state machine with
 * durable retryable-write records.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "lib/clock.h"
#include "raft_port.h"
#include "repl/repl.h"
#include "txn/txn.h"

/* ---- Fixture ----------------------------------------------------------- */

struct fixture
{
    char dir[64];
    int port; /* the member port; raft listens on port + CAIRN_RAFT_PORT_OFFSET */
    struct eng *eng;
    struct repl *repl;
    struct txn_mgr *txn;
};

static struct fixture *f;

static void remove_dir(const char *dir)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Opens the engine and an initiated one-member set in f->dir on f->port. */
static int open_stack(struct cairn_error *err)
{
    char dbdir[128];
    char me[64];
    int rc;

    snprintf(dbdir, sizeof dbdir, "%s/db", f->dir);
    snprintf(me, sizeof me, "127.0.0.1:%d", f->port);
    ck_assert_int_eq(eng_open(dbdir, &f->eng, err), 0);
    struct repl_options ro = {
        .dbpath = f->dir,
        .set_name = "rs0",
        .me = me,
        .bind_ip = "127.0.0.1",
        .port = f->port,
        .initiate = true,
        .eng = f->eng,
    };
    rc = repl_open(&ro, &f->repl, err);
    if (rc != 0) {
        eng_close(f->eng);
        f->eng = NULL;
    }
    return rc;
}

/* Waits (15 s at most) for the one member to become a writable primary. */
static void wait_writable(void)
{
    uint64_t deadline = cairn_mono_ns() + 15ull * 1000000000ull;
    while (!repl_is_writable(f->repl)) {
        ck_assert_msg(cairn_mono_ns() < deadline, "not writable after 15 s");
        usleep(10000);
    }
}

/* A fresh directory and a free raft port (see raft_port.h); if raft still
 * cannot listen because the port was taken after the check, starts over on
 * a fresh directory with another port. */
static void setup(void)
{
    struct cairn_error err = {0};

    f = calloc(1, sizeof *f);
    for (unsigned attempt = 0;; attempt++) {
        snprintf(f->dir, sizeof f->dir, "/tmp/cairn-txn-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(f->dir));
        f->port = test_pick_member_port(attempt);
        ck_assert_msg(f->port != 0, "no free raft port in %d-%d", TEST_RAFT_PORT_LO,
                      TEST_RAFT_PORT_HI);
        memset(&err, 0, sizeof err);
        if (open_stack(&err) == 0) {
            break;
        }
        remove_dir(f->dir);
        ck_assert_msg(test_err_addr_in_use(&err) && attempt + 1 < TEST_RAFT_OPEN_TRIES,
                      "repl_open: %s", err.msg);
        fprintf(stderr, "test_txn: raft port of member port %d taken (%s); another\n", f->port,
                err.msg);
    }
    ck_assert_int_eq(txn_mgr_open(f->eng, f->repl, &f->txn, &err), 0);
    wait_writable();
}

static void teardown(void)
{
    txn_mgr_close(f->txn);
    repl_close(f->repl);
    eng_close(f->eng);
    remove_dir(f->dir);
    free(f);
}

/* ---- Helpers ----------------------------------------------------------- */

struct waiter
{
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
};

static void wait_cb(void *arg, int status)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits for `ts` with write concern majority; returns the status. */
static int wait_majority(cairn_ts ts)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    struct repl_wc wc = {.w = 0, .j = false, .wtimeout_ms = 10000};
    struct cairn_error err = {0};

    ck_assert_int_eq(txn_wait(f->txn, ts, &wc, wait_cb, &w, &err), 0);
    pthread_mutex_lock(&w.mu);
    while (!w.done) {
        pthread_cond_wait(&w.cv, &w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    return w.status;
}

static bson_t *doc_json(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    ck_assert_msg(b != NULL, "bad json %s: %s", json, e.message);
    return b;
}

/* Inserts `json` into ns and commits; returns the commit ts. */
static cairn_ts insert_one(const char *ns, const char *json)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    uint64_t coll;
    cairn_ts ts;
    bson_t *d = doc_json(json);

    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, ns, true, &coll, NULL, &err), 0);
    ck_assert_msg(txn_write_insert(w, coll, d, &err) == 0, "insert: %s", err.msg);
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), 0);
    bson_destroy(d);
    return ts;
}

static int count_docs(int level, const char *ns)
{
    struct cairn_error err = {0};
    struct txn_read *rd;
    struct txn_scan *sc;
    uint64_t coll;
    bson_t doc;
    int n = 0;

    ck_assert_int_eq(txn_read_begin(f->txn, level, &rd, &err), 0);
    if (txn_read_coll(rd, ns, &coll) == 0) {
        ck_assert_int_eq(txn_scan_open(rd, coll, &sc, &err), 0);
        while (txn_scan_next(sc, &doc) == 1) {
            n++;
        }
        txn_scan_close(sc);
    }
    txn_read_end(rd);
    return n;
}

/* ---- Tests ------------------------------------------------------------- */

/* Namespaces are validated like mongod's, with code 73. */
START_TEST(test_txn_check_ns)
{
    struct cairn_error err = {0};
    ck_assert_int_eq(txn_check_ns("db", "coll", &err), 0);
    ck_assert_int_eq(txn_check_ns("db", "a.b", &err), 0);
    ck_assert_int_ne(txn_check_ns("", "coll", &err), 0);
    ck_assert_int_eq(err.mongo_code, 73);
    ck_assert_int_ne(txn_check_ns("d b", "coll", &err), 0);
    ck_assert_int_ne(txn_check_ns("db", "", &err), 0);
    ck_assert_int_ne(txn_check_ns("db", "a$b", &err), 0);
    ck_assert_int_ne(txn_check_ns("db", "system.users", &err), 0);
}
END_TEST

/* A committed insert is visible at once to local reads and, after the
 * majority wait, to majority reads. */
START_TEST(test_txn_commit_visibility)
{
    cairn_ts ts = insert_one("t.c", "{\"_id\": 1, \"a\": 1}");
    ck_assert_uint_ne(ts, 0);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.c"), 1);
    ck_assert_int_eq(wait_majority(ts), 0);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.c"), 1);
}
END_TEST

/* A duplicate _id, committed or staged in the same write, is refused with
 * 11000 and mongod's message; numerically equal ids collide. */
START_TEST(test_txn_duplicate_key)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    uint64_t coll;
    cairn_ts ts;
    bson_t *a = doc_json("{\"_id\": 7}");
    bson_t *b = doc_json("{\"_id\": {\"$numberDouble\": \"7.0\"}}");
    bson_t *c = doc_json("{\"_id\": 8}");

    insert_one("t.d", "{\"_id\": 7}");
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.d", false, &coll, NULL, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, a, &err), CAIRN_EEXISTS);
    ck_assert_int_eq(err.mongo_code, 11000);
    ck_assert_msg(strstr(err.msg, "E11000 duplicate key error collection: t.d index: _id_") != NULL,
                  "%s", err.msg);
    ck_assert_int_eq(txn_write_insert(w, coll, b, &err), CAIRN_EEXISTS);
    ck_assert_int_eq(txn_write_insert(w, coll, c, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, c, &err), CAIRN_EEXISTS);
    ck_assert_uint_eq(txn_write_n_ops(w), 1);
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), 0);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.d"), 2);
    bson_destroy(a);
    bson_destroy(b);
    bson_destroy(c);
}
END_TEST

/* Staged writes are seen by txn_write_get; abort leaves nothing behind. */
START_TEST(test_txn_staged_and_abort)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    uint64_t coll;
    bool created = false;
    bson_t *d = doc_json("{\"_id\": \"x\", \"v\": 1}");
    bson_t got;
    bson_value_t id = {.value_type = BSON_TYPE_UTF8};

    id.value.v_utf8.str = (char *)"x";
    id.value.v_utf8.len = 1;
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.s", true, &coll, &created, &err), 0);
    ck_assert(created);
    ck_assert_int_eq(txn_write_put(w, coll, d, &err), 0);
    ck_assert_int_eq(txn_write_get(w, coll, &id, &got, &err), 0);
    bson_destroy(&got);
    ck_assert_int_eq(txn_write_delete(w, coll, &id, &err), 0);
    ck_assert_int_eq(txn_write_get(w, coll, &id, &got, &err), CAIRN_ENOTFOUND);
    txn_write_abort(w);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.s"), 0);
    bson_destroy(d);
}
END_TEST

/* create/drop: NamespaceExists and NamespaceNotFound, and a drop hides the
 * documents; a re-created collection starts empty. */
START_TEST(test_txn_create_drop)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    cairn_ts ts;

    insert_one("t.k", "{\"_id\": 1}");
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_create(w, "t.k", &err), CAIRN_EEXISTS);
    ck_assert_int_eq(err.mongo_code, 48);
    ck_assert_int_eq(txn_write_drop(w, "t.k", &err), 0);
    ck_assert_int_eq(txn_write_drop(w, "t.k", &err), CAIRN_ENOTFOUND);
    ck_assert_int_eq(err.mongo_code, 26);
    ck_assert_int_eq(txn_write_create(w, "t.k", &err), 0);
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), 0);
    ck_assert_int_eq(wait_majority(ts), 0);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.k"), 0);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.k"), 0);
}
END_TEST

/* Commit timestamps strictly increase and never fall below the cluster
 * time, which gossip can raise; absurd gossip is refused with 205. */
START_TEST(test_txn_clock)
{
    struct cairn_error err = {0};
    cairn_ts a = insert_one("t.t", "{\"_id\": 1}");
    cairn_ts b = insert_one("t.t", "{\"_id\": 2}");
    cairn_ts ahead = CAIRN_TS(CAIRN_TS_SECS(b) + 100, 5);

    ck_assert_uint_gt(b, a);
    ck_assert_uint_ge(txn_cluster_time(f->txn), b);
    ck_assert_int_eq(txn_cluster_time_advance(f->txn, ahead, &err), 0);
    ck_assert_uint_gt(insert_one("t.t", "{\"_id\": 3}"), ahead);
    ck_assert_int_ne(txn_cluster_time_advance(f->txn, CAIRN_TS(0xfffffff0u, 1), &err), 0);
    ck_assert_int_eq(err.mongo_code, 205);
}
END_TEST

/* An oversize document is refused with 10334 and nothing is staged. */
START_TEST(test_txn_too_large)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    uint64_t coll;
    size_t n = TXN_MAX_DOC_SIZE + 10;
    char *big = malloc(n);
    bson_t d = BSON_INITIALIZER;

    memset(big, 'x', n - 1);
    big[n - 1] = '\0';
    BSON_APPEND_INT32(&d, "_id", 1);
    BSON_APPEND_UTF8(&d, "s", big);
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.big", true, &coll, NULL, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, &d, &err), CAIRN_ETOOBIG);
    ck_assert_int_eq(err.mongo_code, 10334);
    txn_write_abort(w);
    bson_destroy(&d);
    free(big);
}
END_TEST

/* Many inserts in one write (one commit) all land, found by point reads. */
START_TEST(test_txn_large_batch)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    struct txn_read *rd;
    uint64_t coll;
    cairn_ts ts;
    bson_t got;

    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.batch", true, &coll, NULL, &err), 0);
    for (int i = 0; i < 20000; i++) {
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_INT32(&d, "v", i * 2);
        ck_assert_int_eq(txn_write_insert(w, coll, &d, &err), 0);
        bson_destroy(&d);
    }
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), 0);
    ck_assert_int_eq(wait_majority(ts), 0);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.batch"), 20000);
    ck_assert_int_eq(txn_read_begin(f->txn, TXN_READ_LOCAL, &rd, &err), 0);
    bson_value_t id = {.value_type = BSON_TYPE_INT64};
    id.value.v_int64 = 12345;
    ck_assert_int_eq(txn_read_get(rd, coll, &id, &got, &err), 0);
    bson_iter_t it;
    ck_assert(bson_iter_init_find(&it, &got, "v"));
    ck_assert_int_eq(bson_iter_int32(&it), 24690);
    bson_destroy(&got);
    txn_read_end(rd);
}
END_TEST

/* A flush proposes what is staged and keeps the write open: later inserts
 * collide with flushed ones (they check the newest state) while the view,
 * once taken (and a scan on it), stays as it was. Both parts commit. */
START_TEST(test_txn_flush)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    uint64_t coll;
    cairn_ts t1, t2, t3;
    bson_t *a = doc_json("{\"_id\": 1}");
    bson_t *b = doc_json("{\"_id\": 2}");
    bson_value_t id = {.value_type = BSON_TYPE_INT32};
    bson_t got;
    struct txn_read *view;

    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_reader(w, &view, &err), 0); /* the view is taken now */
    ck_assert_int_eq(txn_write_coll(w, "t.f", true, &coll, NULL, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, a, &err), 0);
    ck_assert_uint_gt(txn_write_staged_bytes(w), 0);
    ck_assert_int_eq(txn_write_flush(w, &t1, &err), 0);
    ck_assert_uint_ne(t1, 0);
    ck_assert_uint_eq(txn_write_staged_bytes(w), 0);
    ck_assert_uint_eq(txn_write_n_ops(w), 0);
    /* inserts check against the newest state, flushed part included */
    ck_assert_int_eq(txn_write_insert(w, coll, a, &err), CAIRN_EEXISTS);
    ck_assert_int_eq(txn_write_insert(w, coll, b, &err), 0);
    ck_assert_int_eq(txn_write_flush(w, &t2, &err), 0);
    ck_assert_uint_gt(t2, t1);
    /* the kept view does not see the second part... */
    id.value.v_int32 = 2;
    ck_assert_int_eq(txn_write_get(w, coll, &id, &got, &err), CAIRN_ENOTFOUND);
    /* ...and flushing nothing proposes nothing */
    ck_assert_int_eq(txn_write_flush(w, &t3, &err), 0);
    ck_assert_uint_eq(t3, 0);
    ck_assert_int_eq(txn_write_commit(w, &t3, &err), 0);
    ck_assert_uint_eq(t3, t2); /* the write's newest commit */
    ck_assert_int_eq(wait_majority(t2), 0);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.f"), 2);
    bson_destroy(a);
    bson_destroy(b);
}
END_TEST

/* A statement staging more than a raft entry holds commits it in parts
 * (each document goes into the next commit once the staging would pass
 * TXN_FLUSH_BYTES), so it is never refused for its size; commits accepted
 * before it and not yet applied stay visible to local reads and to the next
 * writer. Proposals are held so the earlier commit is surely unapplied. */
START_TEST(test_txn_large_statement_commits_in_parts)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    uint64_t coll, big;
    cairn_ts ts1, ts2, ts;
    size_t n = 13u << 20;
    char *pad = malloc(n + 1);
    bson_t *d = doc_json("{\"_id\": 2}");

    ts1 = insert_one("t.c", "{\"_id\": 1}");
    ck_assert_int_eq(wait_majority(ts1), 0);
    repl_debug_hold_proposals(f->repl, true);
    ts2 = insert_one("t.c", "{\"_id\": 2}");
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.c"), 2);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.c"), 1);

    memset(pad, 'x', n);
    pad[n] = '\0';
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.big", true, &big, NULL, &err), 0);
    for (int i = 0; i < 2; i++) {
        bson_t *b = bson_new();
        BSON_APPEND_INT32(b, "_id", i);
        BSON_APPEND_UTF8(b, "p", pad);
        ck_assert_int_eq(txn_write_put(w, big, b, &err), 0);
        bson_destroy(b);
    }
    /* The first document went out alone when the second was staged. */
    ck_assert_uint_lt(txn_write_staged_bytes(w), n + 1024);
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), 0);
    ck_assert_uint_gt(ts, ts2);
    free(pad);

    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.c"), 2);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.big"), 2);
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.c", false, &coll, NULL, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, d, &err), CAIRN_EEXISTS);
    txn_write_abort(w);
    bson_destroy(d);

    repl_debug_hold_proposals(f->repl, false);
    ck_assert_int_eq(wait_majority(ts), 0);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.c"), 2);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.big"), 2);
}
END_TEST

/* Timestamps keep increasing across a restart even when the wall clock is
 * behind the newest ts in the log (here: the clock was pushed a day ahead
 * by gossip before the last commits, one of them never waited for). */
START_TEST(test_txn_ts_increase_across_restart)
{
    struct cairn_error err = {0};
    cairn_ts ahead, ts1, ts2, ts3;

    ahead = CAIRN_TS((uint64_t)(cairn_wall_ms() / 1000) + 86400, 5);
    ck_assert_int_eq(txn_cluster_time_advance(f->txn, ahead, &err), 0);
    ts1 = insert_one("t.c", "{\"_id\": 1}");
    ck_assert_uint_gt(ts1, ahead);
    ck_assert_int_eq(wait_majority(ts1), 0);
    ts2 = insert_one("t.c", "{\"_id\": 2}"); /* w:1: may or may not survive */
    ck_assert_uint_gt(ts2, ts1);

    txn_mgr_close(f->txn);
    repl_close(f->repl);
    eng_close(f->eng);

    /* The same directory and member port: the stored config names it. */
    ck_assert_msg(open_stack(&err) == 0, "repl_open: %s", err.msg);
    ck_assert_int_eq(txn_mgr_open(f->eng, f->repl, &f->txn, &err), 0);
    wait_writable();
    ck_assert(repl_is_writable(f->repl));
    ck_assert_uint_ge(txn_cluster_time(f->txn), ts1);
    ts3 = insert_one("t.c", "{\"_id\": 3}");
    ck_assert_uint_gt(ts3, ts1);
    if (count_docs(TXN_READ_LOCAL, "t.c") == 3) {
        ck_assert_uint_gt(ts3, ts2);
    }
    ck_assert_int_eq(wait_majority(ts3), 0);
}
END_TEST

/* ---- Intents, transactions and sessions -------------------------------- */

static const uint8_t LSID_A[TXN_LSID_LEN] = {0xa, 1, 2,  3,  4,  5,  6,  7,
                                             8,   9, 10, 11, 12, 13, 14, 15};
static const uint8_t LSID_B[TXN_LSID_LEN] = {0xb, 1, 2,  3,  4,  5,  6,  7,
                                             8,   9, 10, 11, 12, 13, 14, 15};

static bson_value_t int_id(int32_t v)
{
    bson_value_t id = {.value_type = BSON_TYPE_INT32};
    id.value.v_int32 = v;
    return id;
}

/* The int32 field `field` of `ns`'s document `id` at `level` (-1 absent). */
static int read_field(int level, const char *ns, int32_t id, const char *field)
{
    struct cairn_error err = {0};
    struct txn_read *rd;
    uint64_t coll;
    bson_t got;
    bson_iter_t it;
    bson_value_t v = int_id(id);
    int out = -1;

    ck_assert_int_eq(txn_read_begin(f->txn, level, &rd, &err), 0);
    if (txn_read_coll(rd, ns, &coll) == 0 && txn_read_get(rd, coll, &v, &got, &err) == 0) {
        if (bson_iter_init_find(&it, &got, field)) {
            out = bson_iter_int32(&it);
        }
        bson_destroy(&got);
    }
    txn_read_end(rd);
    return out;
}

/* Starts transaction `n` on a checked-out session at read concern
 * `level`. */
static struct txn_session *begin_txn(const uint8_t *lsid, int64_t n, int level)
{
    struct cairn_error err = {0};
    struct txn_session *s;
    struct txn_read_concern rc = {level, false, 0, 0};

    ck_assert_int_eq(txn_session_checkout(f->txn, lsid, NULL, &s, &err), 0);
    ck_assert_msg(txn_session_txn_begin(s, n, &rc, NULL, &err) == 0, "begin: %s", err.msg);
    return s;
}

static void put_doc(struct txn_write *w, uint64_t coll, const char *json, int expect)
{
    struct cairn_error err = {0};
    bson_t *d = doc_json(json);
    int rv = txn_write_put(w, coll, d, &err);
    ck_assert_msg(rv == expect, "put %s: %d (%s), expected %d", json, rv, err.msg, expect);
    if (expect == CAIRN_ECONFLICT) {
        ck_assert_int_eq(err.mongo_code, 112);
    }
    bson_destroy(d);
}

/* First writer wins: a transaction writing a document another open
 * transaction wrote fails at once with WriteConflict; once the first
 * commits, the second (whose snapshot is older) still conflicts. */
START_TEST(test_txn_first_writer_wins)
{
    struct cairn_error err = {0};
    struct txn_session *a, *b;
    uint64_t coll;
    cairn_ts ts;

    ck_assert_int_eq(wait_majority(insert_one("t.w", "{\"_id\": 1, \"v\": 0}")), 0);
    a = begin_txn(LSID_A, 1, TXN_READ_MAJORITY);
    b = begin_txn(LSID_B, 1, TXN_READ_MAJORITY);
    ck_assert_int_eq(txn_write_coll(txn_session_txn(a), "t.w", false, &coll, NULL, &err), 0);
    put_doc(txn_session_txn(a), coll, "{\"_id\": 1, \"v\": 1}", 0);
    put_doc(txn_session_txn(b), coll, "{\"_id\": 1, \"v\": 2}", CAIRN_ECONFLICT);
    ck_assert_int_eq(txn_session_txn_commit(a, &ts, &err), 0);
    put_doc(txn_session_txn(b), coll, "{\"_id\": 1, \"v\": 2}", CAIRN_ECONFLICT);
    txn_session_txn_fail(b);
    txn_session_checkin(a);
    txn_session_checkin(b);
    ck_assert_int_eq(read_field(TXN_READ_LOCAL, "t.w", 1, "v"), 1);
}
END_TEST

/* Snapshot isolation: a transaction keeps reading its snapshot (no
 * non-repeatable read) and sees its own writes, which nobody else sees
 * until it commits; its commit becomes visible all at once. */
START_TEST(test_txn_snapshot_and_own_writes)
{
    struct cairn_error err = {0};
    struct txn_session *s;
    struct txn_write *w;
    struct txn_read *rd;
    struct txn_scan *sc;
    uint64_t c1, c2;
    bson_value_t one = int_id(1);
    bson_t got, doc;
    bson_iter_t it;
    cairn_ts ts;
    int n = 0;

    insert_one("t.a", "{\"_id\": 1, \"v\": 10}");
    ck_assert_int_eq(wait_majority(insert_one("t.b", "{\"_id\": 1, \"v\": 20}")), 0);
    s = begin_txn(LSID_A, 5, TXN_READ_LOCAL);
    w = txn_session_txn(s);
    ck_assert_int_eq(txn_write_coll(w, "t.a", false, &c1, NULL, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.b", false, &c2, NULL, &err), 0);

    /* Another writer commits after the snapshot: the txn does not see it. */
    {
        struct txn_write *o;
        bson_t *d = doc_json("{\"_id\": 1, \"v\": 11}");
        ck_assert_int_eq(txn_write_begin(f->txn, NULL, &o, &err), 0);
        ck_assert_int_eq(txn_write_put(o, c1, d, &err), 0);
        ck_assert_int_eq(txn_write_commit(o, &ts, &err), 0);
        bson_destroy(d);
    }
    ck_assert_int_eq(txn_write_get(w, c1, &one, &got, &err), 0);
    ck_assert(bson_iter_init_find(&it, &got, "v"));
    ck_assert_int_eq(bson_iter_int32(&it), 10);
    bson_destroy(&got);
    /* ...and writing that document now is a conflict. */
    put_doc(w, c1, "{\"_id\": 1, \"v\": 99}", CAIRN_ECONFLICT);

    /* Own writes: visible to the transaction's reads and scans only. */
    put_doc(w, c2, "{\"_id\": 1, \"v\": 21}", 0);
    put_doc(w, c2, "{\"_id\": 2, \"v\": 22}", 0);
    ck_assert_int_eq(txn_read_begin_txn(w, &rd, &err), 0);
    ck_assert_int_eq(txn_scan_open(rd, c2, &sc, &err), 0);
    while (txn_scan_next(sc, &doc) == 1) {
        ck_assert(bson_iter_init_find(&it, &doc, "v"));
        ck_assert_int_eq(bson_iter_int32(&it), 21 + n);
        n++;
    }
    txn_scan_close(sc);
    txn_read_end(rd);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.b"), 1);
    ck_assert_int_eq(read_field(TXN_READ_LOCAL, "t.b", 1, "v"), 20);

    ck_assert_int_eq(txn_session_txn_commit(s, &ts, &err), 0);
    ck_assert_uint_ne(ts, 0);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.b"), 2);
    ck_assert_int_eq(read_field(TXN_READ_LOCAL, "t.b", 1, "v"), 21);
    ck_assert_int_eq(wait_majority(ts), 0);
    ck_assert_int_eq(read_field(TXN_READ_MAJORITY, "t.b", 2, "v"), 22);
    txn_session_checkin(s);
}
END_TEST

struct blocked_put
{
    uint64_t coll;
    atomic_int started;
    atomic_int done;
    int rv;
    int32_t seen_v;
};

/* A statement that locks document 1 of t.q, then stages v = seen + 1. */
static void *statement_increment(void *arg)
{
    struct blocked_put *bp = arg;
    struct cairn_error err = {0};
    struct txn_write *w;
    bson_value_t id = int_id(1);
    bson_t cur;
    bson_iter_t it;
    cairn_ts ts;

    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    atomic_store(&bp->started, 1);
    bp->rv = txn_write_lock(w, bp->coll, &id, &cur, &err);
    if (bp->rv == 0) {
        bson_t *d = bson_new();
        ck_assert(bson_iter_init_find(&it, &cur, "v"));
        bp->seen_v = bson_iter_int32(&it);
        BSON_APPEND_INT32(d, "_id", 1);
        BSON_APPEND_INT32(d, "v", bp->seen_v + 1);
        ck_assert_int_eq(txn_write_put(w, bp->coll, d, &err), 0);
        bson_destroy(d);
        bson_destroy(&cur);
        bp->rv = txn_write_commit(w, &ts, &err);
    } else {
        txn_write_abort(w);
    }
    atomic_store(&bp->done, 1);
    return NULL;
}

/* A statement meeting a document held by an open transaction waits for it
 * and then builds on the transaction's committed version (no lost update). */
START_TEST(test_txn_statement_waits_for_transaction)
{
    struct cairn_error err = {0};
    struct txn_session *s;
    struct blocked_put bp = {0};
    pthread_t th;
    cairn_ts ts;
    uint64_t deadline;

    insert_one("t.q", "{\"_id\": 1, \"v\": 5}");
    s = begin_txn(LSID_A, 1, TXN_READ_LOCAL);
    ck_assert_int_eq(txn_write_coll(txn_session_txn(s), "t.q", false, &bp.coll, NULL, &err), 0);
    put_doc(txn_session_txn(s), bp.coll, "{\"_id\": 1, \"v\": 50}", 0);
    ck_assert_int_eq(pthread_create(&th, NULL, statement_increment, &bp), 0);
    deadline = cairn_mono_ns() + 15ull * 1000000000ull;
    while (!atomic_load(&bp.started)) {
        ck_assert_msg(cairn_mono_ns() < deadline, "the statement did not start");
        usleep(1000);
    }
    /* Nothing can tell "waiting" from "not yet there" except time: the
     * statement must not finish while the transaction holds the document. */
    usleep(100000);
    ck_assert_int_eq(atomic_load(&bp.done), 0);
    ck_assert_int_eq(txn_session_txn_commit(s, &ts, &err), 0);
    txn_session_checkin(s);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(bp.rv, 0);
    ck_assert_int_eq(bp.seen_v, 50);
    ck_assert_int_eq(read_field(TXN_READ_LOCAL, "t.q", 1, "v"), 51);
}
END_TEST

struct bg_drop
{
    const char *ns;
    atomic_int done;
    int rv;
};

static void *drop_statement(void *arg)
{
    struct bg_drop *d = arg;
    struct cairn_error err = {0};
    struct txn_write *w;
    cairn_ts ts;

    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    d->rv = txn_write_drop(w, d->ns, &err);
    if (d->rv == 0) {
        d->rv = txn_write_commit(w, &ts, &err);
    } else {
        txn_write_abort(w);
    }
    atomic_store(&d->done, 1);
    return NULL;
}

/* A write holds its collection (a shared namespace intent) until it ends:
 * a drop waits for it, and while the drop waits it is queued, so that a
 * transaction wanting to write there fails with WriteConflict instead of
 * starving it. The writer then commits without WriteConflict. */
START_TEST(test_txn_drop_waits_for_writers)
{
    struct cairn_error err = {0};
    struct txn_write *w;
    struct txn_session *s;
    struct bg_drop d = {"t.dw", 0, -1};
    pthread_t th;
    uint64_t coll, other, deadline;
    cairn_ts ts;
    int64_t n = 1;
    int rv;

    insert_one("t.dw", "{\"_id\": 1}");
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.dw", false, &coll, NULL, &err), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, drop_statement, &d), 0);
    deadline = cairn_mono_ns() + 15ull * 1000000000ull;
    for (;;) {
        s = begin_txn(LSID_A, n++, TXN_READ_LOCAL);
        rv = txn_write_coll(txn_session_txn(s), "t.dw", false, &other, NULL, &err);
        ck_assert_int_eq(txn_session_txn_abort(s, &err), 0);
        txn_session_checkin(s);
        if (rv != 0) {
            break;
        }
        ck_assert_msg(cairn_mono_ns() < deadline, "the drop was never queued");
        usleep(1000);
    }
    ck_assert_int_eq(rv, CAIRN_ECONFLICT);
    ck_assert_int_eq(err.mongo_code, MONGO_WriteConflict);
    ck_assert_int_eq(atomic_load(&d.done), 0);
    put_doc(w, coll, "{\"_id\": 2}", 0);
    ck_assert_msg(txn_write_commit(w, &ts, &err) == 0, "commit: %s", err.msg);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(d.rv, 0);
    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.dw", false, &coll, NULL, &err), CAIRN_ENOTFOUND);
    txn_write_abort(w);
}
END_TEST

struct waiting_checkout
{
    atomic_int started;
    int rv;
};

static void *checkout_and_in(void *arg)
{
    struct waiting_checkout *wc = arg;
    struct cairn_error err = {0};
    struct txn_session *s = NULL;

    atomic_store(&wc->started, 1);
    wc->rv = txn_session_checkout(f->txn, LSID_B, NULL, &s, &err);
    if (wc->rv == 0) {
        ck_assert_int_eq(txn_session_txn_number(s), -1);
        txn_session_checkin(s);
    }
    return NULL;
}

/* endSessions forgets an idle session, but never one that a checkout is
 * waiting for (it holds a pointer to it across the wait). Run under ASan,
 * a session freed under the waiter is a use-after-free. */
START_TEST(test_txn_ended_session_not_freed_under_a_waiter)
{
    for (int i = 0; i < 200; i++) {
        struct cairn_error err = {0};
        struct txn_session *s;
        struct waiting_checkout wc = {0, -1};
        pthread_t th;

        ck_assert_int_eq(txn_session_checkout(f->txn, LSID_B, NULL, &s, &err), 0);
        ck_assert_int_eq(pthread_create(&th, NULL, checkout_and_in, &wc), 0);
        while (!atomic_load(&wc.started)) {
            sched_yield();
        }
        txn_sessions_end(f->txn, (const uint8_t(*)[TXN_LSID_LEN])LSID_B, 1, false);
        txn_session_checkin(s);
        txn_sessions_end(f->txn, (const uint8_t(*)[TXN_LSID_LEN])LSID_B, 1, false);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(wc.rv, 0);
    }
}
END_TEST

enum { INC_THREADS = 8, INC_ROUNDS = 300 };

static void *incrementer(void *arg)
{
    uint64_t coll = *(uint64_t *)arg;

    for (int i = 0; i < INC_ROUNDS; i++) {
        struct cairn_error err = {0};
        struct txn_write *w;
        bson_value_t id = int_id(i % 3);
        bson_t cur;
        bson_iter_t it;
        cairn_ts ts;
        bson_t *d = bson_new();

        ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
        ck_assert_msg(txn_write_lock(w, coll, &id, &cur, &err) == 0, "lock: %s", err.msg);
        ck_assert(bson_iter_init_find(&it, &cur, "v"));
        BSON_APPEND_INT32(d, "_id", i % 3);
        BSON_APPEND_INT32(d, "v", bson_iter_int32(&it) + 1);
        ck_assert_int_eq(txn_write_put(w, coll, d, &err), 0);
        ck_assert_msg(txn_write_commit(w, &ts, &err) == 0, "commit: %s", err.msg);
        bson_destroy(d);
        bson_destroy(&cur);
    }
    return NULL;
}

/* Concurrent statements incrementing the same three counters lose no
 * update: each builds on the newest version under its intent. */
START_TEST(test_txn_concurrent_increments)
{
    struct cairn_error err = {0};
    pthread_t th[INC_THREADS];
    struct txn_write *w;
    uint64_t coll;
    cairn_ts ts;

    ck_assert_int_eq(txn_write_begin(f->txn, NULL, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.inc", true, &coll, NULL, &err), 0);
    for (int k = 0; k < 3; k++) {
        bson_t *d = bson_new();
        BSON_APPEND_INT32(d, "_id", k);
        BSON_APPEND_INT32(d, "v", 0);
        ck_assert_int_eq(txn_write_insert(w, coll, d, &err), 0);
        bson_destroy(d);
    }
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), 0);
    for (int i = 0; i < INC_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, incrementer, &coll), 0);
    }
    for (int i = 0; i < INC_THREADS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    }
    for (int k = 0; k < 3; k++) {
        int expect = INC_THREADS * (INC_ROUNDS / 3 + (k < INC_ROUNDS % 3 ? 1 : 0));
        ck_assert_int_eq(read_field(TXN_READ_LOCAL, "t.inc", k, "v"), expect);
    }
}
END_TEST

/* The txnNumber state machine (wire-protocol.md §4.3). */
START_TEST(test_txn_session_state_machine)
{
    struct cairn_error err = {0};
    struct txn_session *s;
    struct txn_read_concern rc = {TXN_READ_LOCAL, false, 0, 0};
    int state;
    cairn_ts ts;

    ck_assert_int_eq(txn_session_checkout(f->txn, LSID_A, NULL, &s, &err), 0);
    ck_assert_int_eq(txn_session_txn_number(s), -1);
    ck_assert_int_eq(txn_session_retryable_begin(s, 3, &err), 0);
    ck_assert_int_eq(txn_session_retryable_begin(s, 3, &err), 0); /* a retry */
    ck_assert_int_ne(txn_session_retryable_begin(s, 2, &err), 0);
    ck_assert_int_eq(err.mongo_code, 225);
    ck_assert_int_ne(txn_session_txn_continue(s, 3, false, &state, &err), 0);
    ck_assert_int_eq(err.mongo_code, 251);
    ck_assert_int_ne(txn_session_txn_begin(s, 3, &rc, NULL, &err), 0);
    ck_assert_int_eq(err.mongo_code, 117);
    ck_assert_int_eq(txn_session_txn_begin(s, 4, &rc, NULL, &err), 0);
    ck_assert_int_eq(txn_session_txn_continue(s, 4, false, &state, &err), 0);
    ck_assert_int_eq(state, TXN_STATE_OPEN);
    ck_assert_int_ne(txn_session_txn_begin(s, 2, &rc, NULL, &err), 0);
    ck_assert_int_eq(err.mongo_code, 225);
    ck_assert_int_ne(txn_session_retryable_begin(s, 4, &err), 0);
    ck_assert_int_eq(err.mongo_code, 217);
    ck_assert_int_eq(txn_session_txn_commit(s, &ts, &err), 0);
    ck_assert_int_ne(txn_session_txn_continue(s, 4, false, &state, &err), 0);
    ck_assert_int_eq(err.mongo_code, 256);
    ck_assert_int_eq(txn_session_txn_continue(s, 4, true, &state, &err), 0);
    ck_assert_int_eq(state, TXN_STATE_COMMITTED);
    ck_assert_int_eq(txn_session_txn_commit(s, &ts, &err), 0); /* committed again: ok */
    ck_assert_int_ne(txn_session_txn_abort(s, &err), 0);
    ck_assert_int_eq(err.mongo_code, 256);
    /* A new transaction, aborted: statements then get 251. */
    ck_assert_int_eq(txn_session_txn_begin(s, 5, &rc, NULL, &err), 0);
    ck_assert_int_eq(txn_session_txn_abort(s, &err), 0);
    ck_assert_int_ne(txn_session_txn_continue(s, 5, false, &state, &err), 0);
    ck_assert_int_eq(err.mongo_code, 251);
    ck_assert_ptr_nonnull(strstr(err.msg, "has been aborted"));
    /* A retryable write with a higher number aborts an open transaction. */
    ck_assert_int_eq(txn_session_txn_begin(s, 6, &rc, NULL, &err), 0);
    ck_assert_int_eq(txn_session_retryable_begin(s, 7, &err), 0);
    ck_assert_ptr_null(txn_session_txn(s));
    txn_session_checkin(s);
}
END_TEST

/* A retryable write's statements are recorded with its commit, answered
 * from the record on retry, and still there after a restart. */
START_TEST(test_txn_retryable_record_durable)
{
    struct cairn_error err = {0};
    struct txn_session *s;
    struct txn_write *w;
    uint64_t coll;
    bson_t res, *d = doc_json("{\"_id\": 1}");
    bson_t *r = doc_json("{\"n\": {\"$numberLong\": \"1\"}}");
    bson_t empty = BSON_INITIALIZER;
    bson_iter_t it;
    cairn_ts ts, rts;

    ck_assert_int_eq(txn_session_checkout(f->txn, LSID_B, NULL, &s, &err), 0);
    ck_assert_int_eq(txn_session_retryable_begin(s, 9, &err), 0);
    ck_assert_int_eq(txn_write_begin(f->txn, s, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.r", true, &coll, NULL, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, d, &err), 0);
    ck_assert_int_eq(txn_write_record_stmt(w, 0, &empty), 0);
    ck_assert_int_eq(txn_write_record_stmt(w, 1, &empty), 0);
    ck_assert_int_eq(txn_write_record_stmt(w, 5, r), 0);
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), 0);
    ck_assert(txn_session_stmt_executed(s, 1, &res, &rts));
    ck_assert_uint_eq(rts, ts);
    ck_assert(!txn_session_stmt_executed(s, 2, &res, &rts));
    txn_session_checkin(s);
    ck_assert_int_eq(wait_majority(ts), 0);

    txn_mgr_close(f->txn);
    repl_close(f->repl);
    eng_close(f->eng);
    ck_assert_msg(open_stack(&err) == 0, "repl_open: %s", err.msg);
    ck_assert_int_eq(txn_mgr_open(f->eng, f->repl, &f->txn, &err), 0);
    wait_writable();

    ck_assert_int_eq(txn_session_checkout(f->txn, LSID_B, NULL, &s, &err), 0);
    ck_assert_int_eq(txn_session_retryable_begin(s, 9, &err), 0); /* the retry */
    ck_assert(txn_session_stmt_executed(s, 0, &res, &rts));
    ck_assert(txn_session_stmt_executed(s, 1, &res, &rts));
    ck_assert(!txn_session_stmt_executed(s, 2, &res, &rts));
    ck_assert(txn_session_stmt_executed(s, 5, &res, &rts));
    ck_assert(bson_iter_init_find(&it, &res, "n"));
    ck_assert_int_eq(bson_iter_int64(&it), 1);
    ck_assert_int_ne(txn_session_retryable_begin(s, 8, &err), 0);
    ck_assert_int_eq(err.mongo_code, 225);
    txn_session_checkin(s);
    bson_destroy(d);
    bson_destroy(r);
}
END_TEST

/* A committed transaction's record survives a restart: committing it again
 * succeeds, and a retryable write at its number is 217. */
START_TEST(test_txn_committed_record_durable)
{
    struct cairn_error err = {0};
    struct txn_session *s;
    uint64_t coll;
    cairn_ts ts;
    int state;

    s = begin_txn(LSID_A, 4, TXN_READ_MAJORITY);
    ck_assert_int_eq(txn_write_coll(txn_session_txn(s), "t.cr", true, &coll, NULL, &err), 0);
    put_doc(txn_session_txn(s), coll, "{\"_id\": 1}", 0);
    ck_assert_int_eq(txn_session_txn_commit(s, &ts, &err), 0);
    txn_session_checkin(s);
    ck_assert_int_eq(wait_majority(ts), 0);

    txn_mgr_close(f->txn);
    repl_close(f->repl);
    eng_close(f->eng);
    ck_assert_msg(open_stack(&err) == 0, "repl_open: %s", err.msg);
    ck_assert_int_eq(txn_mgr_open(f->eng, f->repl, &f->txn, &err), 0);
    wait_writable();

    ck_assert_int_eq(txn_session_checkout(f->txn, LSID_A, NULL, &s, &err), 0);
    ck_assert_int_eq(txn_session_txn_continue(s, 4, true, &state, &err), 0);
    ck_assert_int_eq(state, TXN_STATE_COMMITTED);
    ck_assert_int_eq(txn_session_txn_commit(s, &ts, &err), 0);
    ck_assert_int_ne(txn_session_retryable_begin(s, 4, &err), 0);
    ck_assert_int_eq(err.mongo_code, 217);
    txn_session_checkin(s);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.cr"), 1);
}
END_TEST

static Suite *txn_suite(void)
{
    Suite *s = suite_create("txn");
    TCase *tc = tcase_create("txn");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_txn_check_ns);
    tcase_add_test(tc, test_txn_commit_visibility);
    tcase_add_test(tc, test_txn_duplicate_key);
    tcase_add_test(tc, test_txn_staged_and_abort);
    tcase_add_test(tc, test_txn_create_drop);
    tcase_add_test(tc, test_txn_clock);
    tcase_add_test(tc, test_txn_too_large);
    tcase_add_test(tc, test_txn_large_batch);
    tcase_add_test(tc, test_txn_flush);
    tcase_add_test(tc, test_txn_large_statement_commits_in_parts);
    tcase_add_test(tc, test_txn_ts_increase_across_restart);
    tcase_add_test(tc, test_txn_first_writer_wins);
    tcase_add_test(tc, test_txn_snapshot_and_own_writes);
    tcase_add_test(tc, test_txn_statement_waits_for_transaction);
    tcase_add_test(tc, test_txn_drop_waits_for_writers);
    tcase_add_test(tc, test_txn_ended_session_not_freed_under_a_waiter);
    tcase_add_test(tc, test_txn_concurrent_increments);
    tcase_add_test(tc, test_txn_session_state_machine);
    tcase_add_test(tc, test_txn_retryable_record_durable);
    tcase_add_test(tc, test_txn_committed_record_durable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(txn_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
