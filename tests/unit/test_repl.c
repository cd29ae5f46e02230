/*
 * test_repl.c: unit tests of the replication layer with a real one-member
 * replica set: real raft (raft_uv on a temp dir, TCP on a free 127.0.0.1
 * port below the ephemeral range, see raft_port.h) over a real engine. Covers initiation and its
 * validation errors, status and config, 1,000 commits proposed from two
 * threads with group commit, every write-concern level (w:1, j:true,
 * majority, w:2 unsatisfiable, wtimeout), shutdown of pending waiters,
 * and restart: data kept, replayed entries skipped, writable again.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/op.h"
#include "raft_port.h"
#include "repl/repl.h"

/* Deadline for a callback or state that must come: generous for a loaded
 * 2-core machine (and ASan); a passing run returns as soon as it comes. */
#define WAIT_MS 30000

static char g_dir[64];
static char g_dbdir[96];
static char g_me[64];
static int g_port;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Picks the member port (its raft port free now) for the attempt'th try. */
static void choose_port(unsigned attempt)
{
    g_port = test_pick_member_port(attempt);
    ck_assert_msg(g_port != 0, "no free raft port in %d-%d", TEST_RAFT_PORT_LO, TEST_RAFT_PORT_HI);
    snprintf(g_me, sizeof g_me, "127.0.0.1:%d", g_port);
}

static void make_dirs(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cairn-test-repl-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_dbdir, sizeof g_dbdir, "%s/db", g_dir);
    ck_assert_int_eq(mkdir(g_dbdir, 0755), 0);
}

static void setup(void)
{
    make_dirs();
    choose_port(0);
}

static void teardown(void)
{
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static struct eng *open_eng(void)
{
    struct eng *e = NULL;
    struct cairn_error err = {0};
    ck_assert_msg(eng_open(g_dbdir, &e, &err) == 0, "eng_open: %s", err.msg);
    return e;
}

static struct repl_options repl_opts(struct eng *e, bool initiate)
{
    struct repl_options o = {
        .dbpath = g_dir,
        .set_name = "rs0",
        .me = g_me,
        .bind_ip = "127.0.0.1",
        .port = g_port,
        .initiate = initiate,
        .eng = e,
    };
    return o;
}

/* Opens repl on the directory as it is (a restart keeps the member port:
 * the stored config names it). */
static struct repl *open_repl(struct eng *e, bool initiate)
{
    struct repl *r = NULL;
    struct cairn_error err = {0};
    struct repl_options o = repl_opts(e, initiate);
    int rc = repl_open(&o, &r, &err);
    ck_assert_msg(rc == 0, "repl_open: %s", err.msg);
    return r;
}

/* Opens the engine and an initiated repl on the fresh test directory. If
 * raft cannot listen because its port was taken after setup checked it,
 * starts over on a fresh directory with another port (the failed initiate
 * stored a config naming the old one). */
static struct repl *open_fresh(struct eng **out)
{
    for (unsigned attempt = 0;; attempt++) {
        struct eng *e = open_eng();
        struct repl *r = NULL;
        struct cairn_error err = {0};
        struct repl_options o = repl_opts(e, true);
        if (repl_open(&o, &r, &err) == 0) {
            *out = e;
            return r;
        }
        eng_close(e);
        ck_assert_msg(test_err_addr_in_use(&err) && attempt + 1 < TEST_RAFT_OPEN_TRIES,
                      "repl_open: %s", err.msg);
        fprintf(stderr, "test_repl: raft port of %s taken (%s); trying another\n", g_me, err.msg);
        teardown();
        make_dirs();
        choose_port(attempt + 1);
    }
}

static uint64_t deadline_after(int ms)
{
    return cairn_mono_ns() + (uint64_t)ms * 1000000ull;
}

static void wait_writable(struct repl *r)
{
    uint64_t deadline = deadline_after(WAIT_MS);
    while (!repl_is_writable(r)) {
        ck_assert_msg(cairn_mono_ns() < deadline, "not writable after %d ms", WAIT_MS);
        usleep(2000);
    }
}

/* ---- Waiting for write-concern callbacks --------------------------------- */

struct waitres
{
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int status;
    int calls;
};

static void waitres_init(struct waitres *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = false;
    w->status = -1;
    w->calls = 0;
}

static void waitres_destroy(struct waitres *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void wait_cb(void *arg, int status)
{
    struct waitres *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->status = status;
    w->calls++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Returns the callback status, or -1 if it did not come within ms. */
static int waitres_get(struct waitres *w, int ms)
{
    struct timespec ts;
    int st;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) != 0) {
            break;
        }
    }
    st = w->done ? w->status : -1;
    pthread_mutex_unlock(&w->mu);
    return st;
}

/* Waits with `wc` for ts and returns the status (-1: no callback). */
static int wait_wc(struct repl *r, cairn_ts ts, int w, bool j, int64_t wtimeout, int ms)
{
    struct waitres res;
    struct repl_wc wc = {w, j, wtimeout};
    struct cairn_error err = {0};
    int rc, st;
    waitres_init(&res);
    rc = repl_wait(r, ts, &wc, wait_cb, &res, &err);
    ck_assert_msg(rc == 0, "repl_wait: %s", err.msg);
    st = waitres_get(&res, ms);
    if (st >= 0) {
        ck_assert_int_eq(res.calls, 1);
    }
    waitres_destroy(&res);
    return st;
}

/* ---- A tiny writer, as the txn layer will do it ------------------------ */

struct writer
{
    struct eng *e;
    struct repl *r;
    pthread_mutex_t lock; /* the txn write lock */
    cairn_ts last_ts;
    uint64_t coll_id;
};

static cairn_ts next_ts(struct writer *w)
{
    cairn_ts wall = CAIRN_TS((uint64_t)(cairn_wall_ms() / 1000), 1);
    w->last_ts = w->last_ts + 1 > wall ? w->last_ts + 1 : wall;
    return w->last_ts;
}

/* Commits ops under the write lock: overlay first, then propose. */
static cairn_ts commit_ops(struct writer *w, const struct eng_op *ops, size_t n)
{
    struct cairn_error err = {0};
    struct eng_commit c;
    int rc;

    pthread_mutex_lock(&w->lock);
    c.ts = next_ts(w);
    c.ops = ops;
    c.n_ops = n;
    ck_assert_int_eq(eng_overlay_add(w->e, &c), 0);
    rc = repl_propose(w->r, &c, &err);
    pthread_mutex_unlock(&w->lock);
    ck_assert_msg(rc == 0, "repl_propose: %s", err.msg);
    return c.ts;
}

static void make_key(char *buf, size_t cap, int i)
{
    snprintf(buf, cap, "k%06d", i); /* opaque key bytes incl. the NUL */
}

static cairn_ts put_doc(struct writer *w, int i)
{
    char key[16];
    bson_t doc;
    struct eng_op op;
    cairn_ts ts;

    make_key(key, sizeof key, i);
    bson_init(&doc);
    BSON_APPEND_INT32(&doc, "_id", i);
    BSON_APPEND_UTF8(&doc, "payload", "some document payload");
    op = (struct eng_op){ENG_OP_PUT,      w->coll_id,          NULL,   (const uint8_t *)key,
                         strlen(key) + 1, bson_get_data(&doc), doc.len};
    ts = commit_ops(w, &op, 1);
    bson_destroy(&doc);
    return ts;
}

/* Commits one document of about `size` bytes with _id `i`. */
static cairn_ts put_big_doc(struct writer *w, int i, size_t size)
{
    char key[16];
    char *pad = malloc(size + 1);
    bson_t doc;
    struct eng_op op;
    cairn_ts ts;

    memset(pad, 'p', size);
    pad[size] = '\0';
    make_key(key, sizeof key, i);
    bson_init(&doc);
    BSON_APPEND_INT32(&doc, "_id", i);
    BSON_APPEND_UTF8(&doc, "pad", pad);
    op = (struct eng_op){ENG_OP_PUT,      w->coll_id,          NULL,   (const uint8_t *)key,
                         strlen(key) + 1, bson_get_data(&doc), doc.len};
    ts = commit_ops(w, &op, 1);
    bson_destroy(&doc);
    free(pad);
    return ts;
}

struct big_arg
{
    struct writer *w;
    int i;
    atomic_bool done;
};

static void *big_thread(void *p)
{
    struct big_arg *a = p;
    put_big_doc(a->w, a->i, 1 << 20);
    atomic_store(&a->done, true);
    return NULL;
}

static void create_coll(struct writer *w)
{
    struct eng_op op;
    pthread_mutex_lock(&w->lock);
    w->coll_id = eng_catalog_next_id(w->e);
    pthread_mutex_unlock(&w->lock);
    op = (struct eng_op){ENG_OP_CREATE, w->coll_id, "test.c", NULL, 0, NULL, 0};
    commit_ops(w, &op, 1);
}

struct load_arg
{
    struct writer *w;
    int first, n;
};

static void *load_thread(void *p)
{
    struct load_arg *a = p;
    for (int i = a->first; i < a->first + a->n; i++) {
        put_doc(a->w, i);
    }
    return NULL;
}

static void check_docs(struct eng *e, uint64_t coll_id, int n)
{
    struct eng_snap *s = NULL;
    struct cairn_error err = {0};
    struct cairn_buf doc = CAIRN_BUF_INIT;

    ck_assert_int_eq(eng_snap_acquire(e, false, CAIRN_TS_MAX, &s, &err), 0);
    for (int i = 0; i < n; i++) {
        char key[16];
        bson_t b;
        bson_iter_t it;
        make_key(key, sizeof key, i);
        cairn_buf_reset(&doc);
        ck_assert_msg(
            eng_snap_get(s, coll_id, (const uint8_t *)key, strlen(key) + 1, &doc, &err) == 0,
            "document %d missing", i);
        ck_assert(bson_init_static(&b, doc.data, doc.len));
        ck_assert(bson_iter_init_find(&it, &b, "_id"));
        ck_assert_int_eq(bson_iter_int32(&it), i);
    }
    eng_snap_release(s);
    cairn_buf_free(&doc);
}

/* ---- Tests ------------------------------------------------------------- */

struct bad_cfg
{
    const char *json;
    int mongo_code;
};

START_TEST(test_initiate_and_status)
{
    struct eng *e = open_eng();
    struct repl *r = open_repl(e, false);
    struct repl_status st;
    struct cairn_error err = {0};
    char json[512];

    /* Not initiated. */
    repl_status_get(r, &st);
    ck_assert(!st.initiated);
    ck_assert_int_eq(st.state, REPL_STATE_STARTUP);
    ck_assert(!st.writable);
    ck_assert(!repl_is_writable(r));
    ck_assert_str_eq(st.set_name, "rs0");
    ck_assert(st.start_wall_ms > 0);
    {
        bson_t out = BSON_INITIALIZER;
        ck_assert_int_eq(repl_config_append(r, &out, "config", &err), CAIRN_ENOTFOUND);
        ck_assert_int_eq(err.mongo_code, 94);
        bson_destroy(&out);
    }
    {
        const uint8_t key[] = {1};
        bson_t d = BSON_INITIALIZER;
        struct eng_op op = {ENG_OP_PUT, 1, NULL, key, 1, bson_get_data(&d), d.len};
        struct eng_commit c = {CAIRN_TS(10, 1), &op, 1};
        ck_assert_int_eq(repl_propose(r, &c, &err), CAIRN_ENOTLEADER);
        ck_assert_int_eq(err.mongo_code, 10107);
        bson_destroy(&d);
    }
    ck_assert_int_eq(wait_wc(r, 0, 0, false, 0, WAIT_MS), 0);
    ck_assert_int_eq(wait_wc(r, CAIRN_TS(10, 1), 1, false, 0, WAIT_MS), CAIRN_ENOTLEADER);
    {
        struct repl_wc wc = {2, false, 0};
        struct waitres res;
        waitres_init(&res);
        ck_assert_int_eq(repl_wait(r, CAIRN_TS(10, 1), &wc, wait_cb, &res, &err), CAIRN_EINVAL);
        ck_assert_int_eq(err.mongo_code, 100);
        ck_assert(!res.done);
        waitres_destroy(&res);
    }

    /* Invalid configurations. */
    {
        const struct bad_cfg bad[] = {
            {"{\"_id\": \"other\", \"members\": [{\"_id\": 0, \"host\": \"%s\"}]}", 93},
            {"{\"_id\": \"rs0\"}", 93},
            {"{\"_id\": \"rs0\", \"members\": []}", 93},
            {"{\"members\": [{\"_id\": 0, \"host\": \"%s\"}]}", 93},
            {"{\"_id\": 5, \"members\": [{\"_id\": 0, \"host\": \"%s\"}]}", 93},
            {"{\"_id\": \"rs0\", \"members\": {\"_id\": 0, \"host\": \"%s\"}}", 93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"10.9.9.9:27017\"}]}", 93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"%s\"}, {\"_id\": 0, "
             "\"host\": \"127.0.0.2:27017\"}]}",
             93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"%s\"}, {\"_id\": 1, "
             "\"host\": \"%s\"}]}",
             93},
            {"{\"_id\": \"rs0\", \"settings\": {\"electionTimeoutMillis\": 50}, \"members\": "
             "[{\"_id\": 0, \"host\": \"%s\"}]}",
             93},
            {"{\"_id\": \"rs0\", \"settings\": {\"electionTimeoutMillis\": 500, "
             "\"heartbeatIntervalMillis\": 500}, \"members\": [{\"_id\": 0, \"host\": \"%s\"}]}",
             93},
            /* a member that does not answer fails the quorum check */
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"%s\"}, {\"_id\": 1, "
             "\"host\": \"127.0.0.2:27017\"}]}",
             74},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"%s\", \"arbiterOnly\": "
             "true}]}",
             93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"%s\", \"votes\": 0, "
             "\"priority\": 0}]}",
             93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"%s\", \"bogus\": 1}]}", 93},
            {"{\"_id\": \"rs0\", \"bogus\": 1, \"members\": [{\"_id\": 0, \"host\": \"%s\"}]}", 93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": -1, \"host\": \"%s\"}]}", 93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": 7}]}", 93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0, \"host\": \"h:99999\"}]}", 93},
            {"{\"_id\": \"rs0\", \"members\": [{\"_id\": 0}]}", 93},
            {"{\"_id\": \"rs0\", \"members\": [5]}", 93},
            {"{\"_id\": \"rs0\", \"version\": 0, \"members\": [{\"_id\": 0, \"host\": \"%s\"}]}",
             93},
            {"{\"_id\": \"rs0\", \"protocolVersion\": 0, \"members\": [{\"_id\": 0, \"host\": "
             "\"%s\"}]}",
             93},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            bson_error_t berr;
            bson_t *cfg;
            snprintf(json, sizeof json, bad[i].json, g_me, g_me);
            cfg = bson_new_from_json((const uint8_t *)json, -1, &berr);
            ck_assert_msg(cfg != NULL, "bad test json %zu: %s", i, berr.message);
            memset(&err, 0, sizeof err);
            ck_assert_msg(repl_initiate(r, cfg, &err) != 0, "config %zu accepted", i);
            ck_assert_msg(err.mongo_code == bad[i].mongo_code, "config %zu: code %d (%s)", i,
                          err.mongo_code, err.msg);
            ck_assert(strlen(err.msg) > 0);
            bson_destroy(cfg);
        }
    }
    repl_status_get(r, &st);
    ck_assert(!st.initiated);

    /* A valid initiation. */
    {
        bson_error_t berr;
        bson_t *cfg;
        snprintf(json, sizeof json,
                 "{\"_id\": \"rs0\", \"version\": 1, \"members\": [{\"_id\": 0, \"host\": \"%s\", "
                 "\"priority\": 2, \"tags\": {}}]}",
                 g_me);
        cfg = bson_new_from_json((const uint8_t *)json, -1, &berr);
        ck_assert_ptr_nonnull(cfg);
        ck_assert_msg(repl_initiate(r, cfg, &err) == 0, "initiate: %s", err.msg);
        ck_assert_int_eq(repl_initiate(r, cfg, &err), CAIRN_EEXISTS);
        ck_assert_int_eq(err.mongo_code, 23);
        bson_destroy(cfg);
    }
    wait_writable(r);
    repl_status_get(r, &st);
    ck_assert(st.initiated);
    ck_assert(st.writable);
    ck_assert_int_eq(st.state, REPL_STATE_PRIMARY);
    ck_assert_uint_eq(st.n_members, 1);
    ck_assert_int_eq(st.self, 0);
    ck_assert_int_eq(st.primary, 0);
    ck_assert_str_eq(st.members[0].host, g_me);
    ck_assert_int_eq(st.members[0].votes, 1);
    ck_assert(st.members[0].priority == 2.0);
    ck_assert_uint_ge(st.term, 1);
    ck_assert(st.election_wall_ms >= st.start_wall_ms);
    ck_assert_int_eq(st.config_version, 1);

    /* replSetGetConfig's shape. */
    {
        bson_t out = BSON_INITIALIZER;
        bson_iter_t it, cfg;
        ck_assert_int_eq(repl_config_append(r, &out, "config", &err), 0);
        ck_assert(bson_iter_init_find(&it, &out, "config"));
        ck_assert(bson_iter_recurse(&it, &cfg));
        ck_assert(bson_iter_find(&cfg, "_id"));
        ck_assert_str_eq(bson_iter_utf8(&cfg, NULL), "rs0");
        ck_assert(bson_iter_find(&cfg, "version"));
        ck_assert_int_eq(bson_iter_int32(&cfg), 1);
        ck_assert(bson_iter_next(&cfg)); /* term follows version */
        ck_assert_str_eq(bson_iter_key(&cfg), "term");
        ck_assert_int_ge(bson_iter_int64(&cfg), 1);
        ck_assert(bson_iter_init(&it, &out));
        ck_assert(bson_iter_find_descendant(&it, "config.members.0.host", &cfg));
        ck_assert_str_eq(bson_iter_utf8(&cfg, NULL), g_me);
        ck_assert(bson_iter_init(&it, &out));
        ck_assert(bson_iter_find_descendant(&it, "config.members.0.secondaryDelaySecs", &cfg));
        ck_assert(BSON_ITER_HOLDS_INT64(&cfg));
        ck_assert(bson_iter_init(&it, &out));
        ck_assert(bson_iter_find_descendant(&it, "config.settings.replicaSetId", &cfg));
        ck_assert(BSON_ITER_HOLDS_OID(&cfg));
        ck_assert(bson_iter_init(&it, &out));
        ck_assert(bson_iter_find_descendant(&it, "config.protocolVersion", &cfg));
        ck_assert(BSON_ITER_HOLDS_INT64(&cfg));
        bson_destroy(&out);
    }
    repl_close(r);
    eng_close(e);
}
END_TEST

static void do_load(struct writer *w, int n_total, double *rate)
{
    pthread_t th[2];
    struct load_arg a[2] = {{w, 0, n_total / 2}, {w, n_total / 2, n_total - n_total / 2}};
    uint64_t t0 = cairn_mono_ns();
    double secs;

    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, load_thread, &a[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    ck_assert_int_eq(wait_wc(w->r, w->last_ts, 0, false, 0, WAIT_MS), 0);
    secs = (double)(cairn_mono_ns() - t0) / 1e9;
    *rate = n_total / secs;
}

START_TEST(test_commits_and_restart)
{
    struct eng *e;
    struct repl *r = open_fresh(&e);
    struct writer w;
    struct repl_counters ctr;
    struct repl_status st;
    struct cairn_error err = {0};
    cairn_index idx_before;
    cairn_ts ts_before;
    double rate;
    enum { N = 1000 };

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    w.e = e;
    w.r = r;
    wait_writable(r);
    repl_status_get(r, &st);
    w.last_ts = st.last_ts;
    eng_applied(e, &idx_before, &ts_before);

    create_coll(&w);
    do_load(&w, N, &rate);
    fprintf(stderr, "test_repl: %d commits from 2 threads, majority-acknowledged: %.0f commits/s\n",
            N, rate);

    repl_counters_get(r, &ctr);
    ck_assert_uint_eq(ctr.commits_proposed, N + 1);
    ck_assert_uint_ge(ctr.entries_proposed, 1);
    ck_assert_uint_le(ctr.entries_proposed, N + 1);
    ck_assert_uint_eq(ctr.entries_applied, ctr.entries_proposed);
    fprintf(stderr, "test_repl: %llu raft entries for %d commits\n",
            (unsigned long long)ctr.entries_proposed, N + 1);
    {
        cairn_index idx;
        cairn_ts ts;
        eng_applied(e, &idx, &ts);
        ck_assert_uint_eq(ts, w.last_ts);
        ck_assert_uint_ge(idx, idx_before + ctr.entries_proposed);
    }
    ck_assert_uint_eq(eng_overlay_size(e), 0);
    check_docs(e, w.coll_id, N);
    repl_status_get(r, &st);
    ck_assert_uint_eq(st.applied_ts, w.last_ts);
    ck_assert_uint_eq(st.last_ts, w.last_ts);
    ck_assert_uint_ge(st.commit_index, st.applied_index);

    /* Every level on an already-satisfied ts completes (inline). */
    ck_assert_int_eq(wait_wc(r, w.last_ts, 1, false, 0, WAIT_MS), 0);
    ck_assert_int_eq(wait_wc(r, w.last_ts, 1, true, 0, WAIT_MS), 0);
    ck_assert_int_eq(wait_wc(r, w.last_ts, 0, false, 0, WAIT_MS), 0);
    ck_assert_int_eq(wait_wc(r, 1, 0, false, 0, WAIT_MS), 0);

    /* Fresh commits: w:1, j:true, majority each right after proposing. */
    for (int k = 0; k < 3; k++) {
        cairn_ts ts = put_doc(&w, N + k);
        int wv = k == 2 ? 0 : 1;
        ck_assert_int_eq(wait_wc(r, ts, wv, k == 1, 0, WAIT_MS), 0);
        ck_assert_int_eq(wait_wc(r, ts, 0, false, 0, WAIT_MS), 0);
    }

    /* Sequential commits, each acknowledged at w:majority (latency). */
    {
        enum { SEQ = 100 };
        uint64_t t0 = cairn_mono_ns();
        for (int k = 0; k < SEQ; k++) {
            cairn_ts ts = put_doc(&w, 10 * N + k);
            ck_assert_int_eq(wait_wc(r, ts, 0, false, 0, WAIT_MS), 0);
        }
        fprintf(stderr, "test_repl: sequential w:majority commit: %.3f ms average\n",
                (double)(cairn_mono_ns() - t0) / 1e6 / SEQ);
        t0 = cairn_mono_ns();
        for (int k = 0; k < SEQ; k++) {
            cairn_ts ts = put_doc(&w, 11 * N + k);
            ck_assert_int_eq(wait_wc(r, ts, 1, true, 0, WAIT_MS), 0);
        }
        fprintf(stderr, "test_repl: sequential w:1 j:true commit: %.3f ms average\n",
                (double)(cairn_mono_ns() - t0) / 1e6 / SEQ);
        t0 = cairn_mono_ns();
        for (int k = 0; k < SEQ; k++) {
            cairn_ts ts = put_doc(&w, 12 * N + k);
            ck_assert_int_eq(wait_wc(r, ts, 1, false, 0, WAIT_MS), 0);
        }
        fprintf(stderr, "test_repl: sequential w:1 commit: %.3f ms average\n",
                (double)(cairn_mono_ns() - t0) / 1e6 / SEQ);
    }

    /* w:2 with one member: UnsatisfiableWriteConcern up front. */
    {
        struct repl_wc wc = {2, false, 0};
        struct waitres res;
        waitres_init(&res);
        ck_assert_int_eq(repl_wait(r, w.last_ts, &wc, wait_cb, &res, &err), CAIRN_EINVAL);
        ck_assert_int_eq(err.mongo_code, 100);
        ck_assert(!res.done);
        waitres_destroy(&res);
    }

    /* wtimeout: a ts nobody will ever commit times out. */
    {
        uint64_t t0 = cairn_mono_ns();
        ck_assert_int_eq(wait_wc(r, w.last_ts + 1000, 0, false, 50, WAIT_MS), CAIRN_ETIMEOUT);
        ck_assert_uint_ge(cairn_mono_ns() - t0, 45ull * 1000000ull);
        ck_assert_int_eq(wait_wc(r, w.last_ts + 1000, 1, true, 20, WAIT_MS), CAIRN_ETIMEOUT);
    }

    /* A waiter still pending at shutdown gets CAIRN_ESHUTDOWN. */
    {
        struct waitres res;
        struct repl_wc wc = {0, false, 0};
        waitres_init(&res);
        ck_assert_int_eq(repl_wait(r, w.last_ts + 5000, &wc, wait_cb, &res, &err), 0);
        /* Not a wait for a condition: gives the raft thread the chance to take the
         * waiter before the close (nothing shows it); ESHUTDOWN is due either way. */
        usleep(20000);
        repl_close(r);
        ck_assert_int_eq(waitres_get(&res, WAIT_MS), CAIRN_ESHUTDOWN);
        waitres_destroy(&res);
    }
    {
        cairn_index idx;
        cairn_ts ts;
        eng_applied(e, &idx, &ts);
        idx_before = idx;
        ts_before = ts;
    }
    eng_close(e);

    /* Restart on the same directory: the stored config starts raft. */
    e = open_eng();
    r = open_repl(e, false);
    w.e = e;
    w.r = r;
    wait_writable(r);
    repl_counters_get(r, &ctr);
    ck_assert_uint_eq(ctr.entries_applied, 0); /* nothing applied twice */
    ck_assert_uint_ge(ctr.entries_skipped, 2); /* the log was replayed */
    {
        cairn_index idx;
        cairn_ts ts;
        eng_applied(e, &idx, &ts);
        ck_assert_uint_eq(idx, idx_before);
        ck_assert_uint_eq(ts, ts_before);
    }
    repl_status_get(r, &st);
    ck_assert(st.initiated);
    ck_assert_int_eq(st.state, REPL_STATE_PRIMARY);
    ck_assert_uint_eq(st.applied_ts, ts_before);
    ck_assert_uint_ge(st.last_ts, ts_before);
    {
        struct repl_wc wc = {0, false, 0};
        struct waitres res;
        waitres_init(&res);
        ck_assert_int_eq(repl_wait(r, ts_before, &wc, wait_cb, &res, &err), 0);
        ck_assert(res.done); /* already applied: inline */
        ck_assert_int_eq(res.status, 0);
        waitres_destroy(&res);
    }
    check_docs(e, w.coll_id, N + 3);

    /* New proposals work after the restart. */
    {
        cairn_ts ts = put_doc(&w, N + 3);
        ck_assert_uint_gt(ts, ts_before);
        ck_assert_int_eq(wait_wc(r, ts, 0, false, 0, WAIT_MS), 0);
        repl_counters_get(r, &ctr);
        ck_assert_uint_eq(ctr.entries_applied, 1);
        check_docs(e, w.coll_id, N + 4);
    }
    /* A second load round after restart. */
    {
        struct load_arg a = {&w, N + 4, 200};
        load_thread(&a);
        ck_assert_int_eq(wait_wc(r, w.last_ts, 0, false, 0, WAIT_MS), 0);
        check_docs(e, w.coll_id, N + 204);
    }
    repl_close(r);
    eng_close(e);
    pthread_mutex_destroy(&w.lock);
}
END_TEST

START_TEST(test_propose_checks)
{
    struct eng *e;
    struct repl *r = open_fresh(&e);
    struct writer w;
    struct cairn_error err = {0};
    struct repl_status st;

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    w.e = e;
    w.r = r;
    wait_writable(r);
    repl_status_get(r, &st);
    w.last_ts = st.last_ts;
    create_coll(&w);
    /* ts must increase. */
    {
        const uint8_t key[] = {'a', 0};
        bson_t d = BSON_INITIALIZER;
        struct eng_op op = {ENG_OP_PUT, w.coll_id, NULL, key, 2, bson_get_data(&d), d.len};
        struct eng_commit c = {w.last_ts, &op, 1};
        ck_assert_int_eq(repl_propose(r, &c, &err), CAIRN_EINVAL);
        /* A malformed op is refused, not proposed. */
        op.kind = 99;
        c.ts = w.last_ts + 10;
        ck_assert_int_eq(repl_propose(r, &c, &err), CAIRN_EINVAL);
        bson_destroy(&d);
    }
    ck_assert_int_eq(wait_wc(r, w.last_ts, 0, false, 0, WAIT_MS), 0);
    /* Invalid write concerns. */
    {
        struct repl_wc wc = {-1, false, 0};
        ck_assert_int_eq(repl_wait(r, w.last_ts, &wc, wait_cb, NULL, &err), CAIRN_EINVAL);
    }
    repl_close(r);
    eng_close(e);
    pthread_mutex_destroy(&w.lock);
}
END_TEST

/* What the leadership callback heard: the first calls in order. */
struct leader_calls
{
    pthread_mutex_t mu;
    int n;
    bool writable[8];
    uint64_t epoch[8];
    bool last_writable;
    uint64_t last_epoch;
};

static void leader_calls_init(struct leader_calls *lc)
{
    memset(lc, 0, sizeof *lc);
    pthread_mutex_init(&lc->mu, NULL);
}

static void leader_calls_destroy(struct leader_calls *lc)
{
    pthread_mutex_destroy(&lc->mu);
}

static void leader_cb(void *arg, bool writable, uint64_t epoch)
{
    struct leader_calls *lc = arg;
    pthread_mutex_lock(&lc->mu);
    if (lc->n < 8) {
        lc->writable[lc->n] = writable;
        lc->epoch[lc->n] = epoch;
    }
    lc->n++;
    lc->last_writable = writable;
    lc->last_epoch = epoch;
    pthread_mutex_unlock(&lc->mu);
}

/* Waits until the callback was called at least n times; returns the count. */
static int leader_calls_wait(struct leader_calls *lc, int n)
{
    uint64_t deadline = deadline_after(WAIT_MS);
    int got;
    pthread_mutex_lock(&lc->mu);
    while (lc->n < n && cairn_mono_ns() < deadline) {
        pthread_mutex_unlock(&lc->mu);
        usleep(2000);
        pthread_mutex_lock(&lc->mu);
    }
    got = lc->n;
    pthread_mutex_unlock(&lc->mu);
    return got;
}

/* A commit is proposed only in the write epoch it was resolved in; the
 * leadership callback hears when writes stop; applied waits are woken by
 * the apply path and bounded by their operation's deadline. */
START_TEST(test_epochs_and_applied_waits)
{
    struct eng *e;
    struct repl *r = open_fresh(&e);
    struct writer w;
    struct cairn_error err = {0};
    struct repl_status st;
    struct leader_calls lc;
    uint64_t epoch;

    leader_calls_init(&lc);
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    w.e = e;
    w.r = r;
    wait_writable(r);
    /* Writable already, so the change to writable took effect (and its
     * callback call, to no callback, has returned: set_leadership_cb waits
     * for it): lc hears only later changes. */
    repl_set_leadership_cb(r, leader_cb, &lc);
    epoch = repl_write_epoch(r);
    ck_assert_uint_ne(epoch, 0);
    repl_status_get(r, &st);
    w.last_ts = st.last_ts;
    create_coll(&w);
    {
        const uint8_t key[] = {'e', 0};
        bson_t d = BSON_INITIALIZER;
        struct eng_op op = {ENG_OP_PUT, w.coll_id, NULL, key, 2, bson_get_data(&d), d.len};
        struct eng_commit c = {0, &op, 1};
        struct cairn_buf enc = CAIRN_BUF_INIT;
        cairn_ts ts = w.last_ts + 100;

        ck_assert_int_eq(repl_oplog_encode(&c, &enc), 0);
        repl_oplog_patch_ts(enc.data, ts);
        /* Another epoch: refused, and nothing is proposed. */
        ck_assert_int_eq(repl_propose_encoded(r, epoch + 1, ts, enc.data, enc.len, &err),
                         CAIRN_ENOTLEADER);
        ck_assert_int_eq(err.mongo_code, MONGO_NotWritablePrimary);
        ck_assert_int_eq(repl_propose_encoded(r, 0, ts, enc.data, enc.len, &err), CAIRN_ENOTLEADER);
        /* Its own epoch: proposed (repl owns the bytes now), applied, and an
         * applied wait returns. */
        ck_assert_int_eq(repl_propose_encoded(r, epoch, ts, enc.data, enc.len, &err), 0);
        ck_assert_int_eq(repl_wait_applied(r, ts, NULL, &err), 0);
        ck_assert_uint_ge(repl_applied_ts(r), ts);
        bson_destroy(&d);
        w.last_ts = ts;
    }
    {
        /* A wait for a ts nothing reaches ends at its operation's deadline. */
        struct cairn_op op;
        memset(&op, 0, sizeof op);
        op.deadline_ns = cairn_mono_ns() + 50ull * 1000000ull;
        cairn_op_begin(&op);
        ck_assert_int_eq(repl_wait_applied(r, w.last_ts + 1000, &op, &err), CAIRN_ETIMEOUT);
        ck_assert_int_eq(err.mongo_code, MONGO_MaxTimeMSExpired);
        cairn_op_end(&op);
    }
    pthread_mutex_lock(&lc.mu);
    ck_assert_int_eq(lc.n, 0); /* still primary */
    pthread_mutex_unlock(&lc.mu);
    repl_close(r); /* stopping makes the member unwritable: the callback hears it */
    ck_assert_int_eq(lc.n, 1);
    ck_assert(!lc.last_writable);
    ck_assert_uint_eq(lc.last_epoch, 0);
    leader_calls_destroy(&lc);
    eng_close(e);
    pthread_mutex_destroy(&w.lock);
}
END_TEST

/* ---- The leadership callback's mutex -------------------------------------- */

/* A leadership callback that blocks until the test releases it. */
struct blocking_cb
{
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered;          /* calls begun */
    bool release;         /* the test lets the callback return */
    atomic_bool finished; /* set by the callback as it returns */
};

static void blocking_leader_cb(void *arg, bool writable, uint64_t epoch)
{
    struct blocking_cb *b = arg;
    (void)writable;
    (void)epoch;
    pthread_mutex_lock(&b->mu);
    b->entered++;
    pthread_cond_broadcast(&b->cv);
    while (!b->release) {
        pthread_cond_wait(&b->cv, &b->mu);
    }
    atomic_store(&b->finished, true);
    pthread_mutex_unlock(&b->mu);
}

struct unregister_arg
{
    struct repl *r;
    struct blocking_cb *b;
    atomic_bool calling;
    atomic_bool returned;
    bool saw_finished; /* the callback had returned when unregistering did */
};

static void *unregister_thread(void *p)
{
    struct unregister_arg *a = p;
    atomic_store(&a->calling, true);
    repl_set_leadership_cb(a->r, NULL, NULL);
    a->saw_finished = atomic_load(&a->b->finished);
    atomic_store(&a->returned, true);
    return NULL;
}

static void *close_thread(void *p)
{
    repl_close(p);
    return NULL;
}

/* repl_set_leadership_cb(r, NULL, NULL) returns only after a callback call
 * in progress has returned, so that its argument can be freed right after
 * (the transaction manager does). The call comes from repl_close here (it
 * makes the member unwritable); the callback blocks until released. */
START_TEST(test_unregister_waits_for_callback)
{
    struct eng *e;
    struct repl *r = open_fresh(&e);
    struct blocking_cb b;
    struct unregister_arg u;
    pthread_t closer, unreg;
    uint64_t deadline;

    memset(&b, 0, sizeof b);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    atomic_init(&b.finished, false);
    memset(&u, 0, sizeof u);
    u.r = r;
    u.b = &b;
    atomic_init(&u.calling, false);
    atomic_init(&u.returned, false);
    wait_writable(r);
    repl_set_leadership_cb(r, blocking_leader_cb, &b);

    ck_assert_int_eq(pthread_create(&closer, NULL, close_thread, r), 0);
    deadline = deadline_after(WAIT_MS);
    pthread_mutex_lock(&b.mu);
    while (b.entered == 0) {
        pthread_mutex_unlock(&b.mu);
        ck_assert_msg(cairn_mono_ns() < deadline, "the callback was not called at close");
        usleep(2000);
        pthread_mutex_lock(&b.mu);
    }
    pthread_mutex_unlock(&b.mu);

    /* The callback is running (and blocked): unregister from another thread. */
    ck_assert_int_eq(pthread_create(&unreg, NULL, unregister_thread, &u), 0);
    deadline = deadline_after(WAIT_MS);
    while (!atomic_load(&u.calling)) {
        ck_assert(cairn_mono_ns() < deadline);
        usleep(1000);
    }
    /* A window for what must not happen (unregistering returning while the
     * callback runs): no condition to await, so a fixed time. */
    usleep(100000);
    ck_assert_msg(!atomic_load(&u.returned), "unregistering did not wait for the callback");

    pthread_mutex_lock(&b.mu);
    b.release = true;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    pthread_join(unreg, NULL);
    ck_assert(atomic_load(&u.returned));
    ck_assert_msg(u.saw_finished, "unregistering returned before the callback did");
    pthread_join(closer, NULL);
    ck_assert_int_eq(b.entered, 1);
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
    eng_close(e);
}
END_TEST

/* ---- Topology counter ------------------------------------------------------- */

struct topo_rec
{
    struct repl *r;
    pthread_mutex_t mu;
    uint64_t last;
    int calls;
    bool out_of_order;    /* a counter not one above the previous call's */
    bool not_yet_visible; /* repl_topology_counter below the counter told */
};

static void topo_cb(void *arg, uint64_t counter)
{
    struct topo_rec *t = arg;

    pthread_mutex_lock(&t->mu);
    if (counter != t->last + 1) {
        t->out_of_order = true;
    }
    if (repl_topology_counter(t->r) < counter) {
        t->not_yet_visible = true;
    }
    t->last = counter;
    t->calls++;
    pthread_mutex_unlock(&t->mu);
}

/* The topology counter (hello's topologyVersion.counter) starts at 0, is
 * bumped by initiation and by becoming primary, each bump told to the
 * topology callback in order after it is visible; status copies carry the
 * counter of their fields; commits (progress) never bump it; after the
 * callback is unregistered, closing (which ends writability) bumps it
 * without calling it. */
START_TEST(test_topology_counter)
{
    struct eng *e = open_eng();
    struct repl *r = open_repl(e, false);
    struct cairn_error err = {0};
    struct repl_status st;
    struct topo_rec t;
    struct writer w;
    bson_t empty = BSON_INITIALIZER;
    uint64_t after_initiate;
    cairn_ts ts = 0;

    memset(&t, 0, sizeof t);
    t.r = r;
    pthread_mutex_init(&t.mu, NULL);
    ck_assert_uint_eq(repl_topology_counter(r), 0);
    repl_status_get(r, &st);
    ck_assert_uint_eq(st.topology_counter, 0);
    repl_set_topology_cb(r, topo_cb, &t);

    ck_assert_msg(repl_initiate(r, &empty, &err) == 0, "repl_initiate: %s", err.msg);
    wait_writable(r);
    after_initiate = repl_topology_counter(r);
    /* At least: initiated (config), then primary. */
    ck_assert_uint_ge(after_initiate, 2);
    repl_status_get(r, &st);
    ck_assert(st.writable);
    ck_assert_uint_eq(st.topology_counter, after_initiate);
    pthread_mutex_lock(&t.mu);
    ck_assert_int_eq(t.calls, (int)after_initiate);
    ck_assert_uint_eq(t.last, after_initiate);
    ck_assert(!t.out_of_order);
    ck_assert(!t.not_yet_visible);
    pthread_mutex_unlock(&t.mu);

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    w.e = e;
    w.r = r;
    create_coll(&w);
    for (int i = 0; i < 20; i++) {
        ts = put_doc(&w, i);
    }
    ck_assert_int_eq(wait_wc(r, ts, 0, false, 0, WAIT_MS), 0);
    ck_assert_uint_eq(repl_topology_counter(r), after_initiate);
    repl_status_get(r, &st);
    ck_assert_uint_eq(st.topology_counter, after_initiate);

    repl_set_topology_cb(r, NULL, NULL);
    repl_close(r);
    pthread_mutex_lock(&t.mu);
    ck_assert_int_eq(t.calls, (int)after_initiate);
    pthread_mutex_unlock(&t.mu);
    pthread_mutex_destroy(&t.mu);
    pthread_mutex_destroy(&w.lock);
    bson_destroy(&empty);
    eng_close(e);
}
END_TEST

/* ---- A proposal raft refuses ---------------------------------------------- */

/* True when the document with _id i is visible in a local read (overlay
 * included). */
static bool doc_visible(struct eng *e, uint64_t coll_id, int i)
{
    struct eng_snap *s = NULL;
    struct cairn_error err = {0};
    struct cairn_buf doc = CAIRN_BUF_INIT;
    char key[16];
    int rc;

    make_key(key, sizeof key, i);
    ck_assert_int_eq(eng_snap_acquire(e, true, CAIRN_TS_MAX, &s, &err), 0);
    rc = eng_snap_get(s, coll_id, (const uint8_t *)key, strlen(key) + 1, &doc, &err);
    ck_assert_msg(rc == 0 || rc == CAIRN_ENOTFOUND, "eng_snap_get: %s", err.msg);
    eng_snap_release(s);
    cairn_buf_free(&doc);
    return rc == 0;
}

/* When raft refuses an entry for another reason than "not leader" (out of
 * memory here, injected), its commits already had their ts and were
 * visible: the write epoch ends as at a step-down. Their waiters fail, any
 * later wait for them fails (w:1 too), they disappear from the overlay,
 * a commit resolved in the old epoch is refused, and the member becomes
 * writable again in a new epoch where commits go through. */
/* The _ids (int32) of the documents in the rollback files of namespace
 * `ns` under the test's dbpath, in file order; returns how many (at most
 * cap are stored). */
static int rollback_ids(const char *ns, int *ids, int cap)
{
    char dir[600];
    DIR *d;
    struct dirent *de;
    int n = 0;

    snprintf(dir, sizeof dir, "%s/rollback/%s", g_dir, ns);
    d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        char path[900];
        bson_reader_t *rd;
        const bson_t *doc;
        bool eof = false;
        bson_iter_t it;

        if (strncmp(de->d_name, "removed.", 8) != 0) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        rd = bson_reader_new_from_file(path, NULL);
        ck_assert_ptr_nonnull(rd);
        while ((doc = bson_reader_read(rd, &eof)) != NULL) {
            if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_INT32(&it) && n < cap) {
                ids[n] = bson_iter_int32(&it);
            }
            n++;
        }
        bson_reader_destroy(rd);
    }
    closedir(d);
    return n;
}

START_TEST(test_refused_proposal_ends_epoch)
{
    struct eng *e;
    struct repl *r = open_fresh(&e);
    struct writer w;
    struct cairn_error err = {0};
    struct repl_status st;
    struct leader_calls lc;
    struct waitres res[2];
    uint64_t epoch0, epoch1, deadline;
    cairn_ts ts_a, ts_b, ts_c;

    leader_calls_init(&lc);
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    w.e = e;
    w.r = r;
    wait_writable(r);
    repl_set_leadership_cb(r, leader_cb, &lc);
    epoch0 = repl_write_epoch(r);
    ck_assert_uint_ne(epoch0, 0);
    repl_status_get(r, &st);
    w.last_ts = st.last_ts;
    create_coll(&w);
    ck_assert_int_eq(wait_wc(r, w.last_ts, 0, false, 0, WAIT_MS), 0);

    /* Two commits, held so that they go to raft together, then refused. */
    repl_debug_hold_proposals(r, true);
    ts_a = put_doc(&w, 1);
    ts_b = put_doc(&w, 2);
    ck_assert(doc_visible(e, w.coll_id, 1));
    ck_assert(doc_visible(e, w.coll_id, 2));
    for (int i = 0; i < 2; i++) {
        struct repl_wc wc = {i == 0 ? 0 : 1, i == 1, 0}; /* majority; w:1 j:true */
        waitres_init(&res[i]);
        ck_assert_int_eq(repl_wait(r, i == 0 ? ts_a : ts_b, &wc, wait_cb, &res[i], &err), 0);
    }
    repl_debug_fail_proposals(r, 1);
    repl_debug_hold_proposals(r, false);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(waitres_get(&res[i], WAIT_MS), CAIRN_ENOTLEADER);
        ck_assert_int_eq(res[i].calls, 1);
        waitres_destroy(&res[i]);
    }

    /* The epoch ended (the callback heard it) and a new one began. */
    ck_assert_int_ge(leader_calls_wait(&lc, 2), 2);
    ck_assert(!lc.writable[0]);
    ck_assert_uint_eq(lc.epoch[0], 0);
    ck_assert(lc.writable[1]);
    epoch1 = lc.epoch[1];
    ck_assert_uint_ne(epoch1, 0);
    ck_assert_uint_ne(epoch1, epoch0);
    deadline = deadline_after(WAIT_MS);
    while (repl_write_epoch(r) != epoch1) {
        ck_assert_msg(cairn_mono_ns() < deadline, "epoch %llu never current",
                      (unsigned long long)epoch1);
        usleep(2000);
    }

    /* The refused commits are gone, and waits for them fail. A w:1 j:false
     * writer was told "ok" when they were queued: what they wrote is in
     * the rollback files. */
    ck_assert(!doc_visible(e, w.coll_id, 1));
    ck_assert(!doc_visible(e, w.coll_id, 2));
    {
        int ids[4] = {0};
        ck_assert_int_eq(rollback_ids("test.c", ids, 4), 2);
        ck_assert_int_eq(ids[0] + ids[1], 3);
        ck_assert_int_ne(ids[0], ids[1]);
    }
    ck_assert_uint_eq(eng_overlay_size(e), 0);
    ck_assert_int_eq(wait_wc(r, ts_b, 1, false, 0, WAIT_MS), CAIRN_ENOTLEADER);
    ck_assert_int_eq(wait_wc(r, ts_b, 1, true, 0, WAIT_MS), CAIRN_ENOTLEADER);
    ck_assert_int_eq(wait_wc(r, ts_a, 0, false, 0, WAIT_MS), CAIRN_ENOTLEADER);
    ck_assert_uint_lt(repl_applied_ts(r), ts_a);

    /* A commit resolved in the old epoch is refused. */
    {
        const uint8_t key[] = {'o', 0};
        bson_t d = BSON_INITIALIZER;
        struct eng_op op = {ENG_OP_PUT, w.coll_id, NULL, key, 2, bson_get_data(&d), d.len};
        struct eng_commit c = {0, &op, 1};
        struct cairn_buf enc = CAIRN_BUF_INIT;
        ck_assert_int_eq(repl_oplog_encode(&c, &enc), 0);
        repl_oplog_patch_ts(enc.data, w.last_ts + 10);
        ck_assert_int_eq(repl_propose_encoded(r, epoch0, w.last_ts + 10, enc.data, enc.len, &err),
                         CAIRN_ENOTLEADER);
        cairn_buf_free(&enc);
        bson_destroy(&d);
    }

    /* The new epoch takes commits. */
    ts_c = put_doc(&w, 3);
    ck_assert_int_eq(wait_wc(r, ts_c, 0, false, 0, WAIT_MS), 0);
    ck_assert(doc_visible(e, w.coll_id, 3));
    ck_assert(!doc_visible(e, w.coll_id, 1));
    ck_assert(!doc_visible(e, w.coll_id, 2));
    repl_close(r);
    ck_assert_int_eq(lc.n, 3);
    ck_assert(!lc.last_writable);
    leader_calls_destroy(&lc);
    eng_close(e);
    pthread_mutex_destroy(&w.lock);
}
END_TEST

START_TEST(test_start_failure_then_recover)
{
    struct eng *e = open_eng();
    struct repl *r = NULL;
    struct cairn_error err = {0};
    struct repl_options o;
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    /* Occupy the raft port: raft cannot listen, repl_open fails cleanly.
     * Should another process have taken the port since setup, use another. */
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    for (unsigned attempt = 1;; attempt++) {
        a.sin_port = htons((uint16_t)(g_port + CAIRN_RAFT_PORT_OFFSET));
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            break;
        }
        ck_assert_msg(attempt < TEST_RAFT_OPEN_TRIES, "cannot bind a raft port");
        choose_port(attempt);
    }
    o = repl_opts(e, true);
    ck_assert_int_eq(listen(fd, 1), 0);
    ck_assert_int_ne(repl_open(&o, &r, &err), 0);
    ck_assert_ptr_null(r);
    ck_assert(strlen(err.msg) > 0);
    fprintf(stderr, "test_repl: expected start failure: %s\n", err.msg);
    /* the retries of open_fresh and test_txn depend on recognising this */
    ck_assert_msg(test_err_addr_in_use(&err), "not recognised as a port in use: %s", err.msg);
    close(fd);

    /* The member port is served before anything is stored: nothing was
     * initiated, and an open once the port is free initiates. */
    r = open_repl(e, false);
    {
        struct repl_status st;
        repl_status_get(r, &st);
        ck_assert(!st.initiated);
    }
    repl_close(r);
    r = open_repl(e, true);
    wait_writable(r);
    {
        struct repl_status st;
        repl_status_get(r, &st);
        ck_assert(st.initiated);
        ck_assert_int_eq(st.state, REPL_STATE_PRIMARY);
    }
    repl_close(r);

    /* Bad options are refused. */
    o.me = "no-port-here:";
    ck_assert_int_eq(repl_open(&o, &r, &err), CAIRN_EINVAL);
    o.me = g_me;
    o.set_name = "other";
    ck_assert_int_eq(repl_open(&o, &r, &err), CAIRN_EINVAL); /* stored set is rs0 */
    o.set_name = "";
    ck_assert_int_eq(repl_open(&o, &r, &err), CAIRN_EINVAL);
    eng_close(e);
}
END_TEST

/* Write-concern waiters while commits are held in the queue: wtimeout
 * expiry (the write stays), waiters registered out of ts order released in
 * order once the commits apply, waiters for already-applied ts answered
 * inline, and a shutdown with held commits failing every pending waiter
 * exactly once with CAIRN_ESHUTDOWN. */
START_TEST(test_waiters_with_held_proposals)
{
    struct eng *e;
    struct repl *r = open_fresh(&e);
    struct writer w;
    struct waitres res[6];
    struct cairn_error err = {0};
    struct repl_status st;
    cairn_ts ts[6];
    int order[6] = {5, 0, 3, 1, 4, 2};

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    w.e = e;
    w.r = r;
    wait_writable(r);
    repl_status_get(r, &st);
    w.last_ts = st.last_ts;
    create_coll(&w);

    repl_debug_hold_proposals(r, true);
    for (int i = 0; i < 6; i++) {
        ts[i] = put_doc(&w, i);
    }
    /* w:1 is satisfied once queued; majority and j:true time out. */
    ck_assert_int_eq(wait_wc(r, ts[5], 1, false, 0, WAIT_MS), 0);
    ck_assert_int_eq(wait_wc(r, ts[5], 0, false, 30, WAIT_MS), CAIRN_ETIMEOUT);
    ck_assert_int_eq(wait_wc(r, ts[0], 1, true, 30, WAIT_MS), CAIRN_ETIMEOUT);
    for (int k = 0; k < 6; k++) {
        struct repl_wc wc = {0, k % 2 == 1, 0};
        int i = order[k];
        waitres_init(&res[i]);
        if (k % 2 == 1) {
            wc.w = 1;
        }
        ck_assert_int_eq(repl_wait(r, ts[i], &wc, wait_cb, &res[i], &err), 0);
    }
    /* A window for what must not happen (a held commit's waiter released):
     * there is no condition to await, so it is a fixed time. */
    usleep(50000);
    for (int i = 0; i < 6; i++) {
        ck_assert(!res[i].done);
    }
    repl_debug_hold_proposals(r, false);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(waitres_get(&res[i], WAIT_MS), 0);
        ck_assert_int_eq(res[i].calls, 1);
        waitres_destroy(&res[i]);
    }
    /* Already applied: answered at once. */
    ck_assert_int_eq(wait_wc(r, ts[2], 0, false, 0, WAIT_MS), 0);
    ck_assert_uint_eq(eng_overlay_size(e), 0);

    /* Shutdown with held commits and pending waiters. */
    repl_debug_hold_proposals(r, true);
    for (int i = 0; i < 6; i++) {
        struct repl_wc wc = {i % 3 == 2 ? 1 : 0, i % 3 == 1, i == 0 ? 60000 : 0};
        ts[i] = put_doc(&w, 100 + i);
        waitres_init(&res[i]);
        ck_assert_int_eq(repl_wait(r, ts[i], &wc, wait_cb, &res[i], &err), 0);
    }
    repl_close(r);
    for (int i = 0; i < 6; i++) {
        int want = i % 3 == 2 ? 0 : CAIRN_ESHUTDOWN; /* w:1 was satisfied when queued */
        ck_assert_int_eq(waitres_get(&res[i], WAIT_MS), want);
        ck_assert_int_eq(res[i].calls, 1);
        waitres_destroy(&res[i]);
    }
    eng_close(e);
    pthread_mutex_destroy(&w.lock);
}
END_TEST

/* repl_close right after proposals, with several raft appends still in
 * flight: raft 0.15's raft_close cancels them and its cancel path walks off
 * the in-memory log (a crash under ASan, every time); repl waits for the
 * appends first. Each round reopens the same directory (restart works). */
START_TEST(test_close_with_entries_in_flight)
{
    for (int round = 0; round < 3; round++) {
        struct eng *e;
        struct repl *r;
        struct writer w;
        struct repl_status st;

        if (round == 0) {
            r = open_fresh(&e);
        } else {
            e = open_eng(); /* the same directory again: a restart */
            r = open_repl(e, true);
        }

        memset(&w, 0, sizeof w);
        pthread_mutex_init(&w.lock, NULL);
        w.e = e;
        w.r = r;
        wait_writable(r);
        repl_status_get(r, &st);
        w.last_ts = st.last_ts + 1000;
        create_coll(&w);
        for (int i = 0; i < 3 + round * 20; i++) {
            put_doc(&w, round * 100 + i);
        }
        repl_close(r);
        eng_close(e);
        pthread_mutex_destroy(&w.lock);
    }
}
END_TEST

/* Backpressure: while 64 MiB of commits wait for the raft thread (held
 * here), the next proposal waits for room instead of growing the queue;
 * once the raft thread drains the queue it goes through, and every commit
 * is applied. */
START_TEST(test_propose_waits_for_queue_room)
{
    struct eng *e;
    struct repl *r = open_fresh(&e);
    struct writer w;
    struct repl_status st;
    struct big_arg a;
    pthread_t t;
    cairn_ts last = 0;

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    w.e = e;
    w.r = r;
    wait_writable(r);
    repl_status_get(r, &st);
    w.last_ts = st.last_ts;
    create_coll(&w);

    repl_debug_hold_proposals(r, true);
    for (int i = 0; i < 63; i++) {
        last = put_big_doc(&w, i, 1 << 20);
    }
    a.w = &w;
    a.i = 1000;
    atomic_init(&a.done, false);
    ck_assert_int_eq(pthread_create(&t, NULL, big_thread, &a), 0);
    /* A window for what must not happen (the proposal passing the full
     * queue): no condition to await, so a fixed time. */
    usleep(200000);
    ck_assert_msg(!atomic_load(&a.done), "a proposal went past a full queue");
    repl_debug_hold_proposals(r, false);
    pthread_join(t, NULL);
    ck_assert(atomic_load(&a.done));
    ck_assert_int_eq(wait_wc(r, w.last_ts, 0, false, 0, WAIT_MS), 0);
    ck_assert_uint_gt(w.last_ts, last);
    ck_assert_uint_eq(eng_overlay_size(e), 0);
    repl_close(r);
    eng_close(e);
    pthread_mutex_destroy(&w.lock);
}
END_TEST

/* The free-space floor (disk.c): a floor above any disk's free space
 * refuses commits with 14031 and a start with our message; no floor
 * refuses nothing; closing a member whose apply may be waiting for space
 * ends the wait. */
START_TEST(test_disk_floor)
{
    struct eng *e = open_eng();
    struct repl *r = NULL;
    struct cairn_error err = {0};
    struct repl_options o = repl_opts(e, true);
    const long long huge_mb = 1ll << 30; /* 1 PiB */

    ck_assert_int_eq(repl_disk_startup_check(g_dir, 0, &err), 0);
    ck_assert_int_eq(repl_disk_startup_check(g_dir, huge_mb, &err), CAIRN_ENOSPC);
    ck_assert_int_eq(err.mongo_code, MONGO_OutOfDiskSpace);
    ck_assert_msg(strstr(err.msg, "not enough free disk space to start") != NULL, "%s", err.msg);

    o.disk_free_floor_mb = huge_mb;
    ck_assert_msg(repl_open(&o, &r, &err) == 0, "repl_open: %s", err.msg);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(repl_disk_check(r, 100, &err), CAIRN_ENOSPC);
    ck_assert_int_eq(err.mongo_code, MONGO_OutOfDiskSpace);
    ck_assert_msg(strstr(err.msg, "Out of disk space") != NULL, "%s", err.msg);
    repl_close(r);
    eng_close(e);

    e = open_eng();
    o = repl_opts(e, false);
    o.disk_free_floor_mb = 0;
    ck_assert_msg(repl_open(&o, &r, &err) == 0, "repl_open: %s", err.msg);
    ck_assert_int_eq(repl_disk_check(r, 100, &err), 0);
    repl_close(r);
    eng_close(e);
}
END_TEST

static Suite *repl_suite(void)
{
    Suite *s = suite_create("repl");
    TCase *tc = tcase_create("one_member");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_initiate_and_status);
    tcase_add_test(tc, test_commits_and_restart);
    tcase_add_test(tc, test_propose_checks);
    tcase_add_test(tc, test_epochs_and_applied_waits);
    tcase_add_test(tc, test_start_failure_then_recover);
    tcase_add_test(tc, test_waiters_with_held_proposals);
    tcase_add_test(tc, test_close_with_entries_in_flight);
    tcase_add_test(tc, test_propose_waits_for_queue_room);
    tcase_add_test(tc, test_unregister_waits_for_callback);
    tcase_add_test(tc, test_refused_proposal_ends_epoch);
    tcase_add_test(tc, test_topology_counter);
    tcase_add_test(tc, test_disk_floor);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(repl_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
