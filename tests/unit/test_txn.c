/*
 * test_txn.c: the transaction layer over a real engine and a real
 * one-member raft group in a temporary directory: namespaces, staging,
 * duplicate keys, visibility of commits to local and majority reads, write
 * concern waits and the cluster clock.
 */
#include <check.h>
#include <pthread.h>
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

    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
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
    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
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
    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
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
    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
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
    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
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

    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
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

/* A flush proposes what is staged and keeps the write open: with a
 * refreshed view later inserts collide with flushed ones; without, the old
 * view (and a scan on it) stays as it was. Both parts commit. */
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

    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.f", true, &coll, NULL, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, a, &err), 0);
    ck_assert_uint_gt(txn_write_staged_bytes(w), 0);
    ck_assert_int_eq(txn_write_flush(w, true, &t1, &err), 0);
    ck_assert_uint_ne(t1, 0);
    ck_assert_uint_eq(txn_write_staged_bytes(w), 0);
    ck_assert_uint_eq(txn_write_n_ops(w), 0);
    /* the refreshed view sees the flushed insert */
    ck_assert_int_eq(txn_write_insert(w, coll, a, &err), CAIRN_EEXISTS);
    ck_assert_int_eq(txn_write_insert(w, coll, b, &err), 0);
    ck_assert_int_eq(txn_write_flush(w, false, &t2, &err), 0);
    ck_assert_uint_gt(t2, t1);
    /* the kept view does not see the second part... */
    id.value.v_int32 = 2;
    ck_assert_int_eq(txn_write_get(w, coll, &id, &got, &err), CAIRN_ENOTFOUND);
    /* ...and flushing nothing proposes nothing */
    ck_assert_int_eq(txn_write_flush(w, true, &t3, &err), 0);
    ck_assert_uint_eq(t3, 0);
    ck_assert_int_eq(txn_write_commit(w, &t3, &err), 0);
    ck_assert_uint_eq(t3, 0);
    ck_assert_int_eq(wait_majority(t2), 0);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.f"), 2);
    bson_destroy(a);
    bson_destroy(b);
}
END_TEST

/* A commit that replication refuses (over its entry size limit) discards
 * only its own overlay versions: commits accepted before it and not yet
 * applied stay visible to local reads and to the next writer, which would
 * otherwise resolve against stale data (lost updates, missed duplicate
 * _ids). Proposals are held so the earlier commit is surely unapplied. */
START_TEST(test_txn_refused_commit_keeps_earlier_overlay)
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
    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.big", true, &big, NULL, &err), 0);
    for (int i = 0; i < 2; i++) {
        bson_t *b = bson_new();
        BSON_APPEND_INT32(b, "_id", i);
        BSON_APPEND_UTF8(b, "p", pad);
        ck_assert_int_eq(txn_write_put(w, big, b, &err), 0);
        bson_destroy(b);
    }
    ck_assert_int_eq(txn_write_commit(w, &ts, &err), CAIRN_ETOOBIG);
    free(pad);

    /* The refused commit left nothing; the held one is still visible. */
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.c"), 2);
    ck_assert_int_eq(count_docs(TXN_READ_LOCAL, "t.big"), 0);
    ck_assert_int_eq(txn_write_begin(f->txn, &w, &err), 0);
    ck_assert_int_ne(txn_write_coll(w, "t.big", false, &big, NULL, &err), 0);
    ck_assert_int_eq(txn_write_coll(w, "t.c", false, &coll, NULL, &err), 0);
    ck_assert_int_eq(txn_write_insert(w, coll, d, &err), CAIRN_EEXISTS);
    txn_write_abort(w);
    bson_destroy(d);

    repl_debug_hold_proposals(f->repl, false);
    ck_assert_int_eq(wait_majority(ts2), 0);
    ck_assert_int_eq(count_docs(TXN_READ_MAJORITY, "t.c"), 2);
    {
        uint64_t deadline = cairn_mono_ns() + 15ull * 1000000000ull;
        while (eng_overlay_size(f->eng) != 0) {
            ck_assert_msg(cairn_mono_ns() < deadline, "overlay still holds %zu bytes after 15 s",
                          (size_t)eng_overlay_size(f->eng));
            usleep(10000);
        }
    }
    ck_assert_uint_eq(eng_overlay_size(f->eng), 0);
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
    tcase_add_test(tc, test_txn_refused_commit_keeps_earlier_overlay);
    tcase_add_test(tc, test_txn_ts_increase_across_restart);
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
