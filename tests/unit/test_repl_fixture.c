/*
 * test_repl_fixture.c: unit tests of replication's FSM, raft_io wrapper and
 * rollback writer (src/repl/fsm.c, io.c, rollback.c) on libraft's
 * deterministic in-memory fixture (raft/fixture.h) instead of raft_uv:
 * every fixture server is a struct repl_host (host.h) with its own real
 * engine (RocksDB in a temp dir), our FSM, and our io wrapper around the
 * fixture's in-memory io; entries are built with the real oplog encoder.
 * Covers apply order and identical engines, leader changes, the rollback
 * of an isolated leader's uncommitted suffix, membership changes (spare,
 * voter, removal), snapshots with compaction and restart, and a snapshot
 * installed on a lagging follower through the host's checkpoint source.
 *
 * Deterministic: the fixture runs on simulated time, the election timeouts
 * are fixed per server, documents come from a seeded stream, and every wait
 * is a raft_fixture_step_until_* on a condition (no sleeps).
 */
#include <check.h>
#include <dirent.h>
#include <ftw.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "repl/host.h"

/* Simulated milliseconds a condition may take (the fixture's election
 * timeout is 1000 ms, its network and disk latencies 15 and 10 ms). */
#define STEP_MS 20000
#define MAX_MEMBERS 5
#define MAX_PROPS 256
#define COLL_ID 1
#define NS "test.c"

/* ---- The cluster: fixture servers hosting our FSM and io wrapper --------- */

struct member
{
    char dbpath[160]; /* rollback files: <dbpath>/rollback */
    char engdir[192];
    struct eng *eng;
    struct repl_host h;
    struct repl_io w;
    /* Seen by the applied callback (kept across restarts). */
    cairn_index last_index;
    cairn_ts last_ts;
    unsigned n_applied;
    unsigned n_checkpoints; /* install_checkpoint calls */
    raft_index ckpt_index;  /* the last installed descriptor's index */
    struct cluster *c;
};

struct prop
{
    struct raft_apply req;
    bool done;
    int status;
};

struct change
{
    struct raft_change req;
    bool done;
    int status;
};

struct cluster
{
    char root[128];
    struct raft_fixture f;
    unsigned n;
    struct member m[MAX_MEMBERS];
    struct prop props[MAX_PROPS]; /* outlive the fixture: raft_close fires them */
    unsigned n_props;
    uint32_t next_ts;
    /* Command entries proposed and committed, by raft index. */
    raft_index cmd_index[MAX_PROPS];
    unsigned n_cmd;
};

static char g_root[64];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void suite_setup(void)
{
    snprintf(g_root, sizeof g_root, "/tmp/cairn-test-fixture-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_root));
}

static void suite_teardown(void)
{
    nftw(g_root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void quiet_emit(struct raft_tracer *t, int type, const void *info)
{
    (void)t;
    (void)type;
    (void)info;
}

static struct raft_tracer quiet_tracer = {.impl = NULL, .version = 2, .emit = quiet_emit};

/* Applied callback: entries reach the engine in log order, each once. */
static void t_applied(void *arg, cairn_index index, cairn_ts ts)
{
    struct member *m = arg;
    ck_assert_uint_gt(index, m->last_index);
    ck_assert_uint_gt(ts, m->last_ts);
    m->last_index = index;
    m->last_ts = ts;
    m->n_applied++;
}

static int t_install_checkpoint(void *arg,
                                struct repl_host *h,
                                const struct raft_buffer *desc,
                                struct cairn_error *err);

static const struct repl_host_ops test_ops = {
    .applied = t_applied,
    .install_checkpoint = t_install_checkpoint,
};

static struct raft *R(struct cluster *c, unsigned i)
{
    return raft_fixture_get(&c->f, i);
}

static void open_engine(struct member *m)
{
    struct cairn_error err = {0};
    ck_assert_msg(eng_open(m->engdir, &m->eng, &err) == 0, "eng_open: %s", err.msg);
}

/* Adds fixture server i (its engine opened already): our host and io
 * wrapper around the fixture's io, fixed tunables and election timeout. */
static void grow_member(struct cluster *c, unsigned i)
{
    struct member *m = &c->m[i];
    struct raft *raft;

    repl_host_init(&m->h, m->eng, m->dbpath, &test_ops, m);
    ck_assert_int_eq(raft_fixture_grow(&c->f, &m->h.fsm), 0);
    raft = R(c, i);
    repl_host_attach(&m->h, &m->w, raft);
    raft->tracer = &quiet_tracer;
    raft_set_pre_vote(raft, true);
    raft_set_capacity_threshold(raft, 0);
    /* Server 0 times out first, the others in a fixed order after it. */
    raft_fixture_set_randomized_election_timeout(&c->f, i, 1100 + 150 * i);
}

static void new_member(struct cluster *c, unsigned i)
{
    struct member *m = &c->m[i];
    char dbpath[sizeof m->dbpath], engdir[sizeof m->engdir];

    snprintf(dbpath, sizeof dbpath, "%s/m%u", c->root, i);
    snprintf(engdir, sizeof engdir, "%s/db", dbpath);
    memset(m, 0, sizeof *m);
    m->c = c;
    memcpy(m->dbpath, dbpath, sizeof dbpath);
    memcpy(m->engdir, engdir, sizeof engdir);
    ck_assert_int_eq(mkdir(m->dbpath, 0755), 0);
    ck_assert_int_eq(mkdir(m->engdir, 0755), 0);
    open_engine(m);
}

/* n servers, the first n_voting voters, bootstrapped and started; server 0
 * elected. */
static void cluster_open(struct cluster *c, const char *name, unsigned n, unsigned n_voting)
{
    struct raft_configuration conf;

    memset(c, 0, sizeof *c);
    snprintf(c->root, sizeof c->root, "%s/%s", g_root, name);
    ck_assert_int_eq(mkdir(c->root, 0755), 0);
    c->next_ts = 1;
    ck_assert_int_eq(raft_fixture_init(&c->f), 0);
    for (unsigned i = 0; i < n; i++) {
        new_member(c, i);
        grow_member(c, i);
    }
    c->n = n;
    ck_assert_int_eq(raft_fixture_configuration(&c->f, n_voting, &conf), 0);
    ck_assert_int_eq(raft_fixture_bootstrap(&c->f, &conf), 0);
    raft_configuration_close(&conf);
    ck_assert_int_eq(raft_fixture_start(&c->f), 0);
    ck_assert(raft_fixture_step_until_has_leader(&c->f, STEP_MS));
    ck_assert_uint_eq(raft_fixture_leader_index(&c->f), 0);
}

static void cluster_close(struct cluster *c)
{
    raft_fixture_close(&c->f);
    for (unsigned i = 0; i < c->n; i++) {
        repl_host_close(&c->m[i].h);
        eng_close(c->m[i].eng);
    }
    for (unsigned i = 0; i < c->n_props; i++) {
        ck_assert(c->props[i].done); /* raft_close completed every request */
    }
}

/* ---- Entries -------------------------------------------------------------- */

static uint64_t g_rng;

static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)g_rng;
}

static void make_key(int id, uint8_t key[5])
{
    key[0] = 0x10;
    key[1] = (uint8_t)(id >> 24);
    key[2] = (uint8_t)(id >> 16);
    key[3] = (uint8_t)(id >> 8);
    key[4] = (uint8_t)id;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct prop *p = req->data;
    (void)result;
    p->done = true;
    p->status = status;
}

/* Proposes one entry on server `i` (which must lead): header with its
 * term, then one commit of `n_ops` ops, padded as propose.c does. Returns
 * the entry's raft index. */
static raft_index propose(struct cluster *c, unsigned i, const struct eng_op *ops, size_t n_ops)
{
    struct raft *raft = R(c, i);
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct eng_commit commit = {CAIRN_TS(1700000000u, c->next_ts++), ops, n_ops};
    struct raft_buffer buf;
    struct prop *p;

    ck_assert_uint_lt(c->n_props, MAX_PROPS);
    ck_assert_int_eq(repl_oplog_encode_header(raft_current_term(raft), &b), 0);
    ck_assert_int_eq(repl_oplog_encode(&commit, &b), 0);
    while (b.len % REPL_OPLOG_ALIGN != 0) {
        ck_assert_int_eq(cairn_buf_push(&b, 0), 0);
    }
    buf.len = b.len;
    buf.base = raft_malloc(b.len);
    ck_assert_ptr_nonnull(buf.base);
    memcpy(buf.base, b.data, b.len);
    cairn_buf_free(&b);
    p = &c->props[c->n_props++];
    p->req.data = p;
    ck_assert_int_eq(raft_apply(raft, &p->req, &buf, 1, apply_cb), 0);
    return raft_last_index(raft);
}

static raft_index propose_create(struct cluster *c, unsigned i)
{
    struct eng_op op = {ENG_OP_CREATE, COLL_ID, NS, NULL, 0, NULL, 0};
    return propose(c, i, &op, 1);
}

/* Proposes one entry inserting documents first_id .. first_id + n - 1,
 * each {_id, v: <tag>, r: <seeded random>}. */
static raft_index propose_inserts(struct cluster *c,
                                  unsigned i,
                                  int first_id,
                                  int n,
                                  const char *tag)
{
    bson_t *docs[16];
    uint8_t keys[16][5];
    struct eng_op ops[16];
    raft_index index;

    ck_assert_int_le(n, 16);
    for (int k = 0; k < n; k++) {
        docs[k] = bson_new();
        BSON_APPEND_INT32(docs[k], "_id", first_id + k);
        BSON_APPEND_UTF8(docs[k], "v", tag);
        BSON_APPEND_INT64(docs[k], "r", (int64_t)rnd());
        make_key(first_id + k, keys[k]);
        ops[k] = (struct eng_op){ENG_OP_PUT,  COLL_ID, NULL, keys[k], 5, bson_get_data(docs[k]),
                                 docs[k]->len};
    }
    index = propose(c, i, ops, (size_t)n);
    for (int k = 0; k < n; k++) {
        bson_destroy(docs[k]);
    }
    return index;
}

/* Remembers a command entry that must end up committed. */
static void expect_committed(struct cluster *c, raft_index index)
{
    ck_assert_uint_lt(c->n_cmd, MAX_PROPS);
    c->cmd_index[c->n_cmd++] = index;
}

/* Command entries expected committed with index in (lo, hi]. */
static unsigned cmds_between(const struct cluster *c, raft_index lo, raft_index hi)
{
    unsigned n = 0;
    for (unsigned k = 0; k < c->n_cmd; k++) {
        n += c->cmd_index[k] > lo && c->cmd_index[k] <= hi;
    }
    return n;
}

/* ---- Engine contents ------------------------------------------------------ */

/* Every visible document of the collection, in key order, as
 * key-length, key, doc-length, doc. Returns the number of documents. */
static size_t dump(struct eng *e, struct cairn_buf *out)
{
    struct eng_snap *s = NULL;
    struct eng_iter *it = NULL;
    struct cairn_error err = {0};
    const uint8_t *key, *doc;
    size_t key_len, doc_len, n = 0;
    int rc;

    ck_assert_int_eq(eng_snap_acquire(e, false, CAIRN_TS_MAX, &s, &err), 0);
    ck_assert_int_eq(eng_iter_open(s, COLL_ID, NULL, 0, &it, &err), 0);
    while ((rc = eng_iter_next(it, &key, &key_len, &doc, &doc_len)) == 1) {
        ck_assert_int_eq(cairn_buf_put_be64(out, key_len), 0);
        ck_assert_int_eq(cairn_buf_append(out, key, key_len), 0);
        ck_assert_int_eq(cairn_buf_put_be64(out, doc_len), 0);
        ck_assert_int_eq(cairn_buf_append(out, doc, doc_len), 0);
        n++;
    }
    ck_assert_int_eq(rc, 0);
    eng_iter_close(it);
    eng_snap_release(s);
    return n;
}

/* The members in `mask` hold the same documents and watermark; returns
 * how many documents. */
static size_t assert_identical(struct cluster *c, unsigned mask)
{
    struct cairn_buf first = CAIRN_BUF_INIT;
    cairn_index first_index = 0;
    cairn_ts first_ts = 0;
    size_t n_first = 0;
    bool have = false;

    for (unsigned i = 0; i < c->n; i++) {
        struct cairn_buf b = CAIRN_BUF_INIT;
        cairn_index index;
        cairn_ts ts;
        size_t n;
        if (!(mask & (1u << i))) {
            continue;
        }
        n = dump(c->m[i].eng, &b);
        eng_applied(c->m[i].eng, &index, &ts);
        if (!have) {
            first = b;
            first_index = index;
            first_ts = ts;
            n_first = n;
            have = true;
            continue;
        }
        ck_assert_msg(index == first_index && ts == first_ts,
                      "member %u watermark %llu differs from %llu", i, (unsigned long long)index,
                      (unsigned long long)first_index);
        ck_assert_uint_eq(n, n_first);
        ck_assert_uint_eq(b.len, first.len);
        ck_assert_msg(memcmp(b.data, first.data, b.len) == 0, "member %u's documents differ", i);
        cairn_buf_free(&b);
    }
    cairn_buf_free(&first);
    return n_first;
}

/* Reads document `id` from member i: its "v" field into tag (or "" when
 * absent). Returns whether it exists. */
static bool doc_tag(struct cluster *c, unsigned i, int id, char *tag, size_t cap)
{
    struct cairn_buf doc = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    uint8_t key[5];
    cairn_ts ts;
    bson_t b;
    bson_iter_t it;
    int rc;

    make_key(id, key);
    tag[0] = '\0';
    rc = eng_latest(c->m[i].eng, COLL_ID, key, sizeof key, &doc, &ts, &err);
    if (rc == CAIRN_ENOTFOUND) {
        return false;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert(bson_init_static(&b, doc.data, doc.len));
    if (bson_iter_init_find(&it, &b, "v") && BSON_ITER_HOLDS_UTF8(&it)) {
        snprintf(tag, cap, "%s", bson_iter_utf8(&it, NULL));
    }
    cairn_buf_free(&doc);
    return true;
}

/* ---- Fixture conditions ----------------------------------------------------- */

struct applied_arg
{
    struct cluster *c;
    unsigned mask;
    raft_index index;
};

static bool all_applied(struct raft_fixture *f, void *arg)
{
    struct applied_arg *a = arg;
    (void)f;
    for (unsigned i = 0; i < a->c->n; i++) {
        if ((a->mask & (1u << i)) && raft_last_applied(R(a->c, i)) < a->index) {
            return false;
        }
    }
    return true;
}

/* Steps until every member in `mask` applied `index`. */
static void step_until_applied(struct cluster *c, unsigned mask, raft_index index)
{
    struct applied_arg a = {c, mask, index};
    ck_assert_msg(raft_fixture_step_until(&c->f, all_applied, &a, STEP_MS),
                  "entry %llu not applied in time", (unsigned long long)index);
}

static bool all_stored(struct raft_fixture *f, void *arg)
{
    struct cluster *c = arg;
    (void)f;
    for (unsigned i = 0; i < c->n; i++) {
        if (R(c, i)->last_stored != raft_last_index(R(c, i))) {
            return false;
        }
    }
    return true;
}

struct stored_arg
{
    struct cluster *c;
    unsigned i;
    raft_index index;
};

/* Member i's raft log holds `index` durably. (raft_fixture_step_until_
 * delivered cannot serve: it reads the fixture io through raft->io, which
 * is our wrapper.) */
static bool member_stored(struct raft_fixture *f, void *arg)
{
    struct stored_arg *a = arg;
    (void)f;
    return R(a->c, a->i)->last_stored >= a->index;
}

struct leader_arg
{
    struct cluster *c;
    unsigned mask;
    unsigned found;
};

static bool leader_among(struct raft_fixture *f, void *arg)
{
    struct leader_arg *a = arg;
    unsigned l = raft_fixture_leader_index(f);
    if (l < a->c->n && (a->mask & (1u << l))) {
        a->found = l;
        return true;
    }
    return false;
}

/* Steps until a stable leader among `mask` exists; returns it. */
static unsigned step_until_leader_among(struct cluster *c, unsigned mask)
{
    struct leader_arg a = {c, mask, c->n};
    ck_assert_msg(raft_fixture_step_until(&c->f, leader_among, &a, STEP_MS), "no leader in time");
    return a.found;
}

static void change_cb(struct raft_change *req, int status)
{
    struct change *ch = req->data;
    ch->done = true;
    ch->status = status;
}

static bool change_done(struct raft_fixture *f, void *arg)
{
    (void)f;
    return ((struct change *)arg)->done;
}

static unsigned all_mask(const struct cluster *c)
{
    return (1u << c->n) - 1;
}

/* ---- Rollback files --------------------------------------------------------- */

/* Collects the _ids of every document in member i's rollback files for NS
 * (in file order) into ids, checking that each has v: `tag`; returns how
 * many, or -1 when there is no rollback directory. */
static int rollback_ids(struct cluster *c, unsigned i, const char *tag, int *ids, int cap)
{
    char dir[256], path[512];
    DIR *d;
    struct dirent *de;
    int n = 0;

    snprintf(dir, sizeof dir, "%s/rollback/%s", c->m[i].dbpath, NS);
    d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        bson_reader_t *rd;
        const bson_t *b;
        bool eof = false;
        if (strncmp(de->d_name, "removed.", 8) != 0) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        rd = bson_reader_new_from_file(path, NULL);
        ck_assert_ptr_nonnull(rd);
        while ((b = bson_reader_read(rd, &eof)) != NULL) {
            bson_iter_t it;
            ck_assert(bson_iter_init_find(&it, b, "_id"));
            ck_assert_int_lt(n, cap);
            ids[n++] = bson_iter_int32(&it);
            ck_assert(bson_iter_init_find(&it, b, "v") && BSON_ITER_HOLDS_UTF8(&it));
            ck_assert_str_eq(bson_iter_utf8(&it, NULL), tag);
        }
        ck_assert(eof); /* the file holds whole documents only */
        bson_reader_destroy(rd);
    }
    closedir(d);
    return n;
}

static int int_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

/* ---- Checkpoint source (snapshot install on a lagging follower) ----------- */

/* The test's checkpoint source: makes the lagging member's engine a copy
 * of the leader's applied state (documents, collection, watermark), which
 * is at or above the snapshot's index. Production ships a RocksDB
 * checkpoint instead; what the FSM needs is the same: an engine whose
 * watermark covers the descriptor's index. */
static int t_install_checkpoint(void *arg,
                                struct repl_host *h,
                                const struct raft_buffer *desc,
                                struct cairn_error *err)
{
    struct member *m = arg;
    struct cluster *c = m->c;
    unsigned src = raft_fixture_leader_index(&c->f);
    struct cairn_buf from = CAIRN_BUF_INIT, to = CAIRN_BUF_INIT;
    struct eng_op *ops;
    size_t n_from, n_to, n_ops = 0, pos;
    cairn_index src_index, dst_index;
    cairn_ts src_ts;
    struct eng_commit commit;
    int rc;

    ck_assert_uint_ge(desc->len, 16);
    ck_assert_uint_lt(src, c->n);
    ck_assert_ptr_ne(&c->m[src], m);
    eng_applied(c->m[src].eng, &src_index, &src_ts);
    eng_applied(h->eng, &dst_index, NULL);
    m->ckpt_index = cairn_load_be64(desc->base);
    ck_assert_uint_gt(m->ckpt_index, dst_index); /* FSM calls only when it lags */
    ck_assert_uint_ge(src_index, m->ckpt_index);
    m->n_checkpoints++;

    n_from = dump(c->m[src].eng, &from);
    n_to = dump(h->eng, &to);
    ops = calloc(n_from + n_to + 1, sizeof *ops);
    ck_assert_ptr_nonnull(ops);
    ops[n_ops++] = (struct eng_op){ENG_OP_CREATE, COLL_ID, NS, NULL, 0, NULL, 0};
    /* Every source document, then tombstones for keys only the target has
     * (none in these tests, which only insert: kept for a faithful copy). */
    for (pos = 0; pos < from.len;) {
        struct eng_op *op = &ops[n_ops++];
        size_t kl = cairn_load_be64(from.data + pos);
        op->kind = ENG_OP_PUT;
        op->coll_id = COLL_ID;
        op->key = from.data + pos + 8;
        op->key_len = kl;
        pos += 8 + kl;
        op->doc_len = cairn_load_be64(from.data + pos);
        op->doc = from.data + pos + 8;
        pos += 8 + op->doc_len;
    }
    for (pos = 0; pos < to.len;) {
        size_t kl = cairn_load_be64(to.data + pos);
        const uint8_t *key = to.data + pos + 8;
        bool in_source = false;
        pos += 8 + kl;
        pos += 8 + cairn_load_be64(to.data + pos);
        for (size_t k = 1; k < n_ops && !in_source; k++) {
            in_source = ops[k].key_len == kl && memcmp(ops[k].key, key, kl) == 0;
        }
        if (!in_source) {
            ops[n_ops++] = (struct eng_op){ENG_OP_DELETE, COLL_ID, NULL, key, kl, NULL, 0};
        }
    }
    commit = (struct eng_commit){src_ts, ops, n_ops};
    rc = eng_apply(h->eng, &commit, 1, src_index, err);
    free(ops);
    cairn_buf_free(&from);
    cairn_buf_free(&to);
    return rc;
}

/* ---- Tests ------------------------------------------------------------------ */

/* 3 voters: 30 entries of 1-4 inserts each reach every engine in log order,
 * each applied once, and the engines end identical. */
START_TEST(test_entries_apply_in_log_order_on_every_member)
{
    struct cluster c;
    raft_index last;
    int id = 0;
    size_t n_docs;

    g_rng = 0x9E3779B97F4A7C15ull;
    cluster_open(&c, "order", 3, 3);
    last = propose_create(&c, 0);
    expect_committed(&c, last);
    for (int e = 0; e < 30; e++) {
        int n = 1 + (int)(rnd() % 4);
        last = propose_inserts(&c, 0, id, n, "a");
        expect_committed(&c, last);
        id += n;
    }
    step_until_applied(&c, all_mask(&c), last);
    n_docs = assert_identical(&c, all_mask(&c));
    ck_assert_uint_eq(n_docs, (size_t)id);
    for (unsigned i = 0; i < c.n; i++) {
        cairn_index wm;
        eng_applied(c.m[i].eng, &wm, NULL);
        ck_assert_uint_eq(wm, last);
        ck_assert_uint_eq(c.m[i].n_applied, 31);
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_entries_applied), 31);
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_entries_skipped), 0);
        ck_assert_uint_eq(c.m[i].h.n_doubt, 0); /* all committed */
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_rolled_back), 0);
        /* Followers apply what msgcheck decoded on receipt (decoded once);
         * the leader decodes its own entries. */
        ck_assert_uint_eq(repl_deccache_hits(c.m[i].h.dec), i == 0 ? 0 : 31);
    }
    cluster_close(&c);
}
END_TEST

/* The leader is killed, another is elected and commits go on; the old
 * leader comes back and catches up; then a deposed leader is replaced by a
 * chosen one. No entry is applied twice anywhere. */
START_TEST(test_leader_change_continues_commits_without_double_apply)
{
    struct cluster c;
    raft_index last;
    unsigned l1, l2;
    int id = 0;

    g_rng = 0x1234567ull;
    cluster_open(&c, "leader", 3, 3);
    last = propose_create(&c, 0);
    expect_committed(&c, last);
    for (int e = 0; e < 10; e++, id += 2) {
        last = propose_inserts(&c, 0, id, 2, "first");
        expect_committed(&c, last);
    }
    step_until_applied(&c, all_mask(&c), last);

    raft_fixture_kill(&c.f, 0);
    l1 = step_until_leader_among(&c, 0x6);
    ck_assert_uint_ne(l1, 0);
    for (int e = 0; e < 10; e++, id += 2) {
        last = propose_inserts(&c, l1, id, 2, "second");
        expect_committed(&c, last);
    }
    step_until_applied(&c, 0x6, last);
    ck_assert_uint_lt(raft_last_applied(R(&c, 0)), last);
    raft_fixture_revive(&c.f, 0);
    step_until_applied(&c, all_mask(&c), last);
    ck_assert_uint_eq(assert_identical(&c, all_mask(&c)), (size_t)id);

    /* Depose the leader and elect the third member on purpose. */
    raft_fixture_depose(&c.f);
    l2 = l1 == 1 ? 2 : 1;
    raft_fixture_elect(&c.f, l2);
    ck_assert_uint_eq(raft_fixture_leader_index(&c.f), l2);
    for (int e = 0; e < 5; e++, id += 2) {
        last = propose_inserts(&c, l2, id, 2, "third");
        expect_committed(&c, last);
    }
    step_until_applied(&c, all_mask(&c), last);
    ck_assert_uint_eq(assert_identical(&c, all_mask(&c)), (size_t)id);
    for (unsigned i = 0; i < c.n; i++) {
        /* t_applied checked strictly increasing indexes; every command
         * entry was applied exactly once. */
        ck_assert_uint_eq(c.m[i].n_applied, c.n_cmd);
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_entries_skipped), 0);
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_rolled_back), 0);
    }
    cluster_close(&c);
}
END_TEST

/* An isolated leader appends entries no one else gets; the majority elects
 * a new leader and commits other writes; when the old leader rejoins, its
 * suffix is cut and its rollback file holds exactly those documents. */
START_TEST(test_isolated_leader_suffix_is_rolled_back_to_a_file)
{
    struct cluster c;
    raft_index last, lost_first, lost_last;
    const struct prop *lost_props;
    unsigned l;
    int ids[64];
    int n;
    char tag[32];

    g_rng = 0xABCDEFull;
    cluster_open(&c, "rollback", 3, 3);
    last = propose_create(&c, 0);
    expect_committed(&c, last);
    last = propose_inserts(&c, 0, 0, 5, "committed");
    expect_committed(&c, last);
    step_until_applied(&c, all_mask(&c), last);

    /* Isolate the leader (every message to or from it is lost); it still
     * accepts entries in its term. */
    for (unsigned j = 1; j < 3; j++) {
        raft_fixture_saturate(&c.f, 0, j);
        raft_fixture_saturate(&c.f, j, 0);
    }
    lost_first = propose_inserts(&c, 0, 100, 3, "lost");
    propose_inserts(&c, 0, 103, 2, "lost");
    /* Also a new version of a committed document (id 2). */
    lost_last = propose_inserts(&c, 0, 2, 1, "lost");
    ck_assert_uint_eq(lost_last, lost_first + 2);
    lost_props = &c.props[c.n_props - 3];

    /* The majority moves on without it. */
    l = step_until_leader_among(&c, 0x6);
    for (int e = 0; e < 4; e++) {
        last = propose_inserts(&c, l, 200 + 2 * e, 2, "new");
        expect_committed(&c, last);
    }
    step_until_applied(&c, 0x6, last);
    ck_assert_uint_ge(last, lost_last); /* the new entries overwrite the lost indexes */
    ck_assert_uint_lt(raft_last_applied(R(&c, 0)), lost_first);
    ck_assert_uint_eq(c.m[0].h.n_doubt, 3);
    ck_assert_int_eq(rollback_ids(&c, 0, "lost", ids, 64), -1);
    for (int k = 0; k < 3; k++) {
        /* The old leader lost its leadership: the outcome is unknown to
         * the proposer. */
        ck_assert(lost_props[k].done);
        ck_assert_int_eq(lost_props[k].status, RAFT_LEADERSHIPLOST);
    }

    for (unsigned j = 1; j < 3; j++) {
        raft_fixture_desaturate(&c.f, 0, j);
        raft_fixture_desaturate(&c.f, j, 0);
    }
    step_until_applied(&c, all_mask(&c), last);

    /* Exactly the lost documents, each once (id 2 as the lost write left
     * it), and nothing the majority committed. */
    n = rollback_ids(&c, 0, "lost", ids, 64);
    ck_assert_int_eq(n, 6);
    qsort(ids, (size_t)n, sizeof ids[0], int_cmp);
    {
        const int want[] = {2, 100, 101, 102, 103, 104};
        for (int k = 0; k < n; k++) {
            ck_assert_int_eq(ids[k], want[k]);
        }
    }
    ck_assert_uint_eq(atomic_load(&c.m[0].h.n_rolled_back), 3);
    ck_assert_uint_eq(c.m[0].h.n_doubt, 0);
    ck_assert(!c.m[0].h.rolling_back);
    for (unsigned i = 1; i < 3; i++) {
        ck_assert_int_eq(rollback_ids(&c, i, "lost", ids, 64), -1);
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_rolled_back), 0);
    }
    /* The old leader now holds the majority's state. */
    ck_assert_uint_eq(assert_identical(&c, all_mask(&c)), 5 + 8);
    ck_assert(doc_tag(&c, 0, 2, tag, sizeof tag));
    ck_assert_str_eq(tag, "committed");
    ck_assert(!doc_tag(&c, 0, 100, tag, sizeof tag));
    ck_assert(doc_tag(&c, 0, 200, tag, sizeof tag));
    ck_assert_str_eq(tag, "new");
    ck_assert_uint_eq(c.m[0].n_applied, c.n_cmd);
    cluster_close(&c);
}
END_TEST

/* 5 voters split 2 (the leader and a follower) / 3: the leader's entries
 * reach its follower but no majority; the 3 elect a leader and commit;
 * after the heal both members of the minority cut the suffix and save
 * exactly the lost documents, and the majority saves nothing. */
START_TEST(test_minority_suffix_is_rolled_back_on_every_member_holding_it)
{
    struct cluster c;
    raft_index last, lost;
    unsigned l;
    int ids[64];
    int n;

    g_rng = 0xF00Dull;
    cluster_open(&c, "minority", 5, 5);
    last = propose_create(&c, 0);
    expect_committed(&c, last);
    last = propose_inserts(&c, 0, 0, 4, "committed");
    expect_committed(&c, last);
    step_until_applied(&c, all_mask(&c), last);

    for (unsigned i = 0; i < 2; i++) {
        for (unsigned j = 2; j < 5; j++) {
            raft_fixture_saturate(&c.f, i, j);
            raft_fixture_saturate(&c.f, j, i);
        }
    }
    propose_inserts(&c, 0, 300, 2, "lost");
    lost = propose_inserts(&c, 0, 302, 2, "lost");
    /* The follower on the leader's side stores them too. */
    {
        struct stored_arg a = {&c, 1, lost};
        ck_assert(raft_fixture_step_until(&c.f, member_stored, &a, STEP_MS));
    }
    l = step_until_leader_among(&c, 0x1C);
    for (int e = 0; e < 3; e++) {
        last = propose_inserts(&c, l, 400 + 2 * e, 2, "new");
        expect_committed(&c, last);
    }
    step_until_applied(&c, 0x1C, last);
    ck_assert_uint_eq(c.m[0].h.n_doubt, 2);
    ck_assert_uint_eq(c.m[1].h.n_doubt, 2);

    for (unsigned i = 0; i < 2; i++) {
        for (unsigned j = 2; j < 5; j++) {
            raft_fixture_desaturate(&c.f, i, j);
            raft_fixture_desaturate(&c.f, j, i);
        }
    }
    step_until_applied(&c, all_mask(&c), last);
    for (unsigned i = 0; i < 5; i++) {
        n = rollback_ids(&c, i, "lost", ids, 64);
        if (i >= 2) {
            ck_assert_int_eq(n, -1);
            continue;
        }
        ck_assert_int_eq(n, 4);
        qsort(ids, (size_t)n, sizeof ids[0], int_cmp);
        for (int k = 0; k < n; k++) {
            ck_assert_int_eq(ids[k], 300 + k);
        }
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_rolled_back), 2);
        ck_assert_uint_eq(c.m[i].h.n_doubt, 0);
    }
    ck_assert_uint_eq(assert_identical(&c, all_mask(&c)), 4 + 6);
    for (unsigned i = 0; i < 5; i++) {
        ck_assert_uint_eq(c.m[i].n_applied, c.n_cmd);
    }
    cluster_close(&c);
}
END_TEST

/* A fourth server joins as a spare, is promoted to voter, catches up and
 * applies the same state; then a voter is removed and the rest go on. */
START_TEST(test_membership_add_promote_remove)
{
    struct cluster c;
    struct change ch = {0};
    raft_index last, first_after = 0;
    int id = 0;
    const struct raft_server *s;

    g_rng = 0x5151ull;
    cluster_open(&c, "members", 3, 3);
    last = propose_create(&c, 0);
    expect_committed(&c, last);
    for (int e = 0; e < 12; e++, id += 3) {
        last = propose_inserts(&c, 0, id, 3, "before");
        expect_committed(&c, last);
    }
    step_until_applied(&c, all_mask(&c), last);

    /* Server 3 (raft id 4) starts with an empty log and joins. */
    new_member(&c, 3);
    grow_member(&c, 3);
    c.n = 4;
    ck_assert_int_eq(raft_start(R(&c, 3)), 0);
    ch.req.data = &ch;
    ck_assert_int_eq(raft_add(R(&c, 0), &ch.req, 4, "4", change_cb), 0);
    ck_assert(raft_fixture_step_until(&c.f, change_done, &ch, STEP_MS));
    ck_assert_int_eq(ch.status, 0);
    s = NULL;
    for (unsigned k = 0; k < R(&c, 0)->configuration.n; k++) {
        if (R(&c, 0)->configuration.servers[k].id == 4) {
            s = &R(&c, 0)->configuration.servers[k];
        }
    }
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->role, RAFT_SPARE);
    ck_assert_uint_eq(c.m[3].n_applied, 0); /* spares get no entries */

    memset(&ch, 0, sizeof ch);
    ch.req.data = &ch;
    ck_assert_int_eq(raft_assign(R(&c, 0), &ch.req, 4, RAFT_VOTER, change_cb), 0);
    ck_assert(raft_fixture_step_until(&c.f, change_done, &ch, STEP_MS));
    ck_assert_int_eq(ch.status, 0);
    for (int e = 0; e < 3; e++, id += 3) {
        last = propose_inserts(&c, 0, id, 3, "four");
        expect_committed(&c, last);
    }
    step_until_applied(&c, all_mask(&c), last);
    ck_assert_uint_eq(assert_identical(&c, all_mask(&c)), (size_t)id);
    ck_assert_uint_eq(c.m[3].n_applied, c.n_cmd);

    /* Remove server 1 (raft id 2); writes go on without it. */
    memset(&ch, 0, sizeof ch);
    ch.req.data = &ch;
    ck_assert_int_eq(raft_remove(R(&c, 0), &ch.req, 2, change_cb), 0);
    ck_assert(raft_fixture_step_until(&c.f, change_done, &ch, STEP_MS));
    ck_assert_int_eq(ch.status, 0);
    raft_fixture_kill(&c.f, 1); /* it is gone: nothing reaches it any more */
    for (int e = 0; e < 3; e++, id += 3) {
        last = propose_inserts(&c, 0, id, 3, "after");
        expect_committed(&c, last);
        if (first_after == 0) {
            first_after = last;
        }
    }
    step_until_applied(&c, 0xD, last);
    ck_assert_uint_eq(assert_identical(&c, 0xD), (size_t)id);
    ck_assert_uint_lt(raft_last_applied(R(&c, 1)), first_after);
    ck_assert_uint_eq(R(&c, 0)->configuration.n, 3);
    cluster_close(&c);
}
END_TEST

struct persisted
{
    raft_term term;
    struct raft_snapshot *snapshot;
    raft_index first; /* index of entries[0] */
    struct raft_entry *entries;
    size_t n;
};

/* Reads server i's persisted raft state from the fixture's in-memory io
 * (the inner io of our wrapper). The fixture keeps entries below a taken
 * snapshot, so entries[0]'s index is derived from the last stored index. */
static void read_persisted(struct cluster *c, unsigned i, struct persisted *p)
{
    struct raft_io *in = c->m[i].w.inner;
    raft_id voted_for;
    raft_index start;

    memset(p, 0, sizeof *p);
    ck_assert_int_eq(in->load(in, &p->term, &voted_for, &p->snapshot, &start, &p->entries, &p->n),
                     0);
    ck_assert_uint_eq(R(c, i)->last_stored, raft_last_index(R(c, i)));
    p->first = raft_last_index(R(c, i)) - p->n + 1;
}

/* Restarts every server from its persisted state: the fixture is closed,
 * the engines closed and reopened, and a new fixture loads each server's
 * term, snapshot and the entries after the snapshot (a compacted log). */
static void cluster_restart(struct cluster *c)
{
    struct persisted p[MAX_MEMBERS];
    unsigned n = c->n;

    ck_assert(raft_fixture_step_until(&c->f, all_stored, c, STEP_MS));
    for (unsigned i = 0; i < n; i++) {
        read_persisted(c, i, &p[i]);
    }
    raft_fixture_close(&c->f);
    for (unsigned i = 0; i < n; i++) {
        repl_host_close(&c->m[i].h);
        eng_close(c->m[i].eng);
        open_engine(&c->m[i]);
    }
    memset(&c->f, 0, sizeof c->f); /* raft_fixture_init leaves leader_id as it was */
    ck_assert_int_eq(raft_fixture_init(&c->f), 0);
    for (unsigned i = 0; i < n; i++) {
        raft_index after = p[i].snapshot != NULL ? p[i].snapshot->index : 0;
        grow_member(c, i);
        raft_fixture_set_term(&c->f, i, p[i].term);
        if (p[i].snapshot != NULL) {
            raft_fixture_set_snapshot(&c->f, i, p[i].snapshot); /* the fixture owns it now */
        }
        for (size_t k = 0; k < p[i].n; k++) {
            struct raft_entry e = p[i].entries[k];
            if (p[i].first + k <= after) {
                continue;
            }
            e.batch = NULL;
            e.buf.base = raft_malloc(e.buf.len);
            ck_assert_ptr_nonnull(e.buf.base);
            memcpy(e.buf.base, p[i].entries[k].buf.base, e.buf.len);
            raft_fixture_add_entry(&c->f, i, &e);
        }
        if (p[i].n > 0) {
            raft_free(p[i].entries[0].batch);
        }
        raft_free(p[i].entries);
    }
    ck_assert_int_eq(raft_fixture_start(&c->f), 0);
}

/* Server 0 takes snapshots and compacts its log; after a restart it
 * restores the snapshot (a no-op: the engine is at or past it) and replays
 * only the entries after it, skipping those the engine holds; the others
 * replay their whole log and skip everything; nothing is applied twice. */
START_TEST(test_snapshot_and_restart_replay_without_double_apply)
{
    struct cluster c;
    raft_index last, snap_index;
    cairn_index wm[3];
    struct persisted p;
    int id = 0;

    g_rng = 0x77ull;
    cluster_open(&c, "snapshot", 3, 3);
    raft_set_snapshot_threshold(R(&c, 0), 8);
    raft_set_snapshot_trailing(R(&c, 0), 2);
    last = propose_create(&c, 0);
    expect_committed(&c, last);
    for (int e = 0; e < 20; e++, id += 2) {
        last = propose_inserts(&c, 0, id, 2, "pre");
        expect_committed(&c, last);
    }
    step_until_applied(&c, all_mask(&c), last);
    ck_assert(raft_fixture_step_until(&c.f, all_stored, &c, STEP_MS));

    /* Server 0 has a snapshot whose descriptor is its engine watermark
     * there; the others have none. */
    read_persisted(&c, 0, &p);
    ck_assert_ptr_nonnull(p.snapshot);
    snap_index = p.snapshot->index;
    ck_assert_uint_ge(snap_index, 8);
    ck_assert_uint_eq(p.snapshot->n_bufs, 1);
    ck_assert_uint_eq(p.snapshot->bufs[0].len, 16);
    ck_assert_uint_eq(cairn_load_be64(p.snapshot->bufs[0].base), snap_index);
    raft_configuration_close(&p.snapshot->configuration);
    for (unsigned k = 0; k < p.snapshot->n_bufs; k++) {
        raft_free(p.snapshot->bufs[k].base);
    }
    raft_free(p.snapshot->bufs);
    raft_free(p.snapshot);
    if (p.n > 0) {
        raft_free(p.entries[0].batch);
    }
    raft_free(p.entries);
    for (unsigned i = 1; i < 3; i++) {
        read_persisted(&c, i, &p);
        ck_assert_ptr_null(p.snapshot);
        if (p.n > 0) {
            raft_free(p.entries[0].batch);
        }
        raft_free(p.entries);
    }
    for (unsigned i = 0; i < 3; i++) {
        eng_applied(c.m[i].eng, &wm[i], NULL);
        ck_assert_uint_eq(wm[i], last);
        c.m[i].n_applied = 0;
    }

    cluster_restart(&c);
    ck_assert_uint_eq(raft_last_applied(R(&c, 0)), snap_index);     /* restored, not replayed */
    ck_assert_uint_lt(raft_last_applied(R(&c, 1)), c.cmd_index[0]); /* nothing replayed yet */
    {
        unsigned l = step_until_leader_among(&c, all_mask(&c));
        for (int e = 0; e < 3; e++, id += 2) {
            last = propose_inserts(&c, l, id, 2, "post");
            expect_committed(&c, last);
        }
    }
    step_until_applied(&c, all_mask(&c), last);
    ck_assert_uint_eq(assert_identical(&c, all_mask(&c)), (size_t)id);
    ck_assert_uint_eq(atomic_load(&c.m[0].h.n_entries_skipped),
                      cmds_between(&c, snap_index, wm[0]));
    ck_assert_uint_lt(atomic_load(&c.m[0].h.n_entries_skipped), cmds_between(&c, 0, wm[0]));
    for (unsigned i = 1; i < 3; i++) {
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_entries_skipped), cmds_between(&c, 0, wm[i]));
    }
    for (unsigned i = 0; i < 3; i++) {
        ck_assert_uint_eq(c.m[i].n_applied, 3); /* only the new entries */
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_entries_applied), 3);
        ck_assert_uint_eq(atomic_load(&c.m[i].h.n_rolled_back), 0);
    }
    cluster_close(&c);
}
END_TEST

/* A follower down while the leader snapshots and compacts past it gets an
 * InstallSnapshot above its engine watermark: the host's checkpoint source
 * brings its engine up, and it then applies only what follows. */
START_TEST(test_lagging_follower_installs_snapshot_through_checkpoint_source)
{
    struct cluster c;
    raft_index last;
    cairn_index wm2_before, wm0_at_install;
    int id = 0;

    g_rng = 0x4242ull;
    cluster_open(&c, "install", 3, 3);
    raft_set_snapshot_threshold(R(&c, 0), 8);
    raft_set_snapshot_trailing(R(&c, 0), 2);
    last = propose_create(&c, 0);
    expect_committed(&c, last);
    for (int e = 0; e < 3; e++, id += 2) {
        last = propose_inserts(&c, 0, id, 2, "early");
        expect_committed(&c, last);
    }
    step_until_applied(&c, all_mask(&c), last);
    eng_applied(c.m[2].eng, &wm2_before, NULL);

    raft_fixture_kill(&c.f, 2);
    for (int e = 0; e < 24; e++, id += 2) {
        last = propose_inserts(&c, 0, id, 2, "missed");
        expect_committed(&c, last);
    }
    step_until_applied(&c, 0x3, last);
    eng_applied(c.m[0].eng, &wm0_at_install, NULL);
    ck_assert_uint_eq(wm0_at_install, last);

    raft_fixture_revive(&c.f, 2);
    step_until_applied(&c, all_mask(&c), last);
    ck_assert_uint_eq(c.m[2].n_checkpoints, 1);
    /* It applied none of the missed entries itself: they came with the
     * checkpoint, and their replays were skipped by the watermark. */
    ck_assert_uint_eq(c.m[2].n_applied, cmds_between(&c, 0, wm2_before));
    ck_assert_uint_gt(c.m[2].ckpt_index, wm2_before);
    ck_assert_uint_eq(atomic_load(&c.m[2].h.n_entries_skipped),
                      cmds_between(&c, c.m[2].ckpt_index, wm0_at_install));

    for (int e = 0; e < 3; e++, id += 2) {
        last = propose_inserts(&c, 0, id, 2, "late");
        expect_committed(&c, last);
    }
    step_until_applied(&c, all_mask(&c), last);
    ck_assert_uint_eq(assert_identical(&c, all_mask(&c)), (size_t)id);
    ck_assert_uint_eq(c.m[2].n_applied, cmds_between(&c, 0, wm2_before) + 3);
    ck_assert_uint_eq(c.m[0].n_checkpoints + c.m[1].n_checkpoints, 0);
    ck_assert_uint_eq(c.m[2].h.n_doubt, 0);
    ck_assert_uint_eq(atomic_load(&c.m[2].h.n_rolled_back), 0);
    cluster_close(&c);
}
END_TEST

static Suite *fixture_suite(void)
{
    Suite *s = suite_create("repl_fixture");
    TCase *tc = tcase_create("fixture");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_test(tc, test_entries_apply_in_log_order_on_every_member);
    tcase_add_test(tc, test_leader_change_continues_commits_without_double_apply);
    tcase_add_test(tc, test_isolated_leader_suffix_is_rolled_back_to_a_file);
    tcase_add_test(tc, test_minority_suffix_is_rolled_back_on_every_member_holding_it);
    tcase_add_test(tc, test_membership_add_promote_remove);
    tcase_add_test(tc, test_snapshot_and_restart_replay_without_double_apply);
    tcase_add_test(tc, test_lagging_follower_installs_snapshot_through_checkpoint_source);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fixture_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
