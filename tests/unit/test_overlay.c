/*
 * test_overlay.c: unit tests of the engine's overlay and of the views that
 * read it with RocksDB: local versus committed snapshots, read_ts filtering
 * of staged versions, pending catalog changes, trimming by eng_apply
 * without a visibility gap, discard and discard_from (across segments),
 * eng_latest and versions, readers racing an apply (through the engine's
 * debug hooks), zero-op commits, the cost of an add and a trim counted in
 * nodes visited (not time), a model-based random test, and multi-threaded
 * stress tests (one writer, one applier, several readers). White-box:
 * includes engine_int.h to shrink the overlay's segment bound.
 */
#include <check.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/engine_int.h"

#include "engine_fixture.h"

static void setup(void)
{
    engine_fixture_setup("overlay");
}

struct key
{
    uint8_t b[64];
    size_t n;
};

/* A self-delimiting key: the text plus its 0 terminator. */
static struct key K(const char *s)
{
    struct key k;
    k.n = strlen(s) + 1;
    memcpy(k.b, s, k.n);
    return k;
}

static struct eng_op
put_op(uint64_t coll, const struct key *k, const char *doc)
{
    struct eng_op op = {ENG_OP_PUT, coll, NULL, k->b, k->n, (const uint8_t *)doc, strlen(doc)};
    return op;
}

static struct eng_op del_op(uint64_t coll, const struct key *k)
{
    struct eng_op op = {ENG_OP_DELETE, coll, NULL, k->b, k->n, NULL, 0};
    return op;
}

/* Stages one op at ts. */
static void stage(cairn_ts ts, struct eng_op op)
{
    struct eng_commit c = {ts, &op, 1};
    ck_assert_int_eq(eng_overlay_add(g_e, &c), 0);
}

static void commit(cairn_index idx, cairn_ts ts, struct eng_op op)
{
    struct eng_commit c = {ts, &op, 1};
    struct cairn_error err = {0};
    ck_assert_msg(eng_apply(g_e, &c, 1, idx, &err) == 0, "apply: %s", err.msg);
}

static const char *snap_get(struct eng_snap *s, uint64_t coll, const char *key)
{
    static char out[256];
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    struct key k = K(key);
    int rv = eng_snap_get(s, coll, k.b, k.n, &b, &err);

    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_msg(rv == 0, "get: %s", err.msg);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

static const char *get(bool local, cairn_ts read_ts, uint64_t coll, const char *key)
{
    struct eng_snap *s;
    const char *v;

    ck_assert_int_eq(eng_snap_acquire(g_e, local, read_ts, &s, NULL), 0);
    v = snap_get(s, coll, key);
    eng_snap_release(s);
    return v;
}

/* "key=doc," for each visible document of coll in snapshot s. */
static int snap_scan(struct eng_snap *s, uint64_t coll, const char *after, char *out, size_t cap)
{
    struct eng_iter *it;
    struct key a;
    const uint8_t *k, *d;
    size_t kl, dl, len = 0;
    int n = 0, r;

    out[0] = '\0';
    if (after) {
        a = K(after);
    }
    ck_assert_int_eq(eng_iter_open(s, coll, after ? a.b : NULL, after ? a.n : 0, &it, NULL), 0);
    while ((r = eng_iter_next(it, &k, &kl, &d, &dl)) == 1) {
        len += (size_t)snprintf(out + len, cap - len, "%.*s=%.*s,", (int)(kl - 1), (const char *)k,
                                (int)dl, (const char *)d);
        ck_assert_uint_lt(len, cap);
        n++;
    }
    ck_assert_int_eq(r, 0);
    eng_iter_close(it);
    return n;
}

static int scan(bool local,
                cairn_ts read_ts,
                uint64_t coll,
                const char *after,
                char *out,
                size_t cap)
{
    struct eng_snap *s;
    int n;

    ck_assert_int_eq(eng_snap_acquire(g_e, local, read_ts, &s, NULL), 0);
    n = snap_scan(s, coll, after, out, cap);
    eng_snap_release(s);
    return n;
}

START_TEST(test_local_vs_committed)
{
    struct key a = K("a"), b = K("b"), c = K("c"), d = K("d");
    char got[512];
    struct eng_snap *s;

    commit(1, 10, put_op(1, &a, "a10"));
    commit(2, 10, put_op(1, &c, "c10"));
    commit(3, 10, put_op(1, &d, "d10"));
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);

    stage(20, put_op(1, &b, "b20")); /* new key between committed ones */
    stage(20, put_op(1, &c, "c20")); /* newer version of a committed key */
    stage(30, del_op(1, &d));        /* tombstone over a committed doc */
    stage(30, put_op(2, &a, "x"));   /* another collection */
    ck_assert_uint_eq(eng_overlay_size(g_e), 4);

    /* Committed reads see RocksDB only. */
    ck_assert_ptr_null(get(false, CAIRN_TS_MAX, 1, "b"));
    ck_assert_str_eq(get(false, CAIRN_TS_MAX, 1, "c"), "c10");
    ck_assert_str_eq(get(false, CAIRN_TS_MAX, 1, "d"), "d10");
    ck_assert_int_eq(scan(false, CAIRN_TS_MAX, 1, NULL, got, sizeof got), 3);
    ck_assert_str_eq(got, "a=a10,c=c10,d=d10,");
    ck_assert_int_eq(scan(false, CAIRN_TS_MAX, 2, NULL, got, sizeof got), 0);

    /* Local reads see the overlay on top. */
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "b"), "b20");
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "c"), "c20");
    ck_assert_ptr_null(get(true, CAIRN_TS_MAX, 1, "d"));
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a10");
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 2, "a"), "x");
    ck_assert_ptr_null(get(true, CAIRN_TS_MAX, 1, "e"));
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 1, NULL, got, sizeof got), 3);
    ck_assert_str_eq(got, "a=a10,b=b20,c=c20,");
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 1, "a", got, sizeof got), 2);
    ck_assert_str_eq(got, "b=b20,c=c20,");
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 1, "b", got, sizeof got), 1);
    ck_assert_str_eq(got, "c=c20,");
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 1, "c", got, sizeof got), 0);
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 2, NULL, got, sizeof got), 1);

    /* read_ts filters overlay versions too. */
    ck_assert_str_eq(get(true, 25, 1, "d"), "d10");
    ck_assert_ptr_null(get(true, 15, 1, "b"));
    ck_assert_str_eq(get(true, 15, 1, "c"), "c10");
    ck_assert_int_eq(scan(true, 25, 1, NULL, got, sizeof got), 4);
    ck_assert_str_eq(got, "a=a10,b=b20,c=c20,d=d10,");
    ck_assert_int_eq(scan(true, 15, 1, NULL, got, sizeof got), 3);
    ck_assert_str_eq(got, "a=a10,c=c10,d=d10,");

    /* Snapshot ts: applied ts, or newest overlay ts when local. */
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), 30);
    eng_snap_release(s);
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), 10);
    eng_snap_release(s);
}
END_TEST

START_TEST(test_overlay_versions_per_key)
{
    struct key a = K("a"), b = K("b");
    char got[256];

    stage(10, put_op(1, &a, "a10"));
    stage(20, put_op(1, &a, "a20"));
    stage(30, del_op(1, &a));
    stage(40, put_op(1, &a, "a40"));
    ck_assert_uint_eq(eng_overlay_size(g_e), 4);
    ck_assert_ptr_null(get(true, 5, 1, "a"));
    ck_assert_str_eq(get(true, 15, 1, "a"), "a10");
    ck_assert_str_eq(get(true, 20, 1, "a"), "a20");
    ck_assert_ptr_null(get(true, 35, 1, "a"));
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a40");

    /* One commit writing the same key twice keeps the last op. */
    {
        struct eng_op ops[3] = {put_op(1, &b, "first"), put_op(1, &a, "a50"),
                                put_op(1, &b, "second")};
        struct eng_commit c = {50, ops, 3};
        ck_assert_int_eq(eng_overlay_add(g_e, &c), 0);
    }
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "b"), "second");
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "a=a50,b=second,");

    /* Applying up to ts 20 trims only the versions at or below it. */
    commit(1, 10, put_op(1, &a, "a10"));
    ck_assert_uint_eq(eng_overlay_size(g_e), 5);
    commit(2, 20, put_op(1, &a, "a20"));
    ck_assert_uint_eq(eng_overlay_size(g_e), 4);
    ck_assert_str_eq(get(true, 25, 1, "a"), "a20");
    ck_assert_ptr_null(get(true, 35, 1, "a"));
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a50");
    ck_assert_str_eq(get(false, CAIRN_TS_MAX, 1, "a"), "a20");
}
END_TEST

START_TEST(test_trim_without_gap)
{
    struct key a = K("a"), b = K("b");
    struct eng_snap *before, *after, *committed_before;
    char got[256];

    commit(1, 10, put_op(1, &a, "a10"));
    stage(20, put_op(1, &b, "b20"));
    stage(20, put_op(1, &a, "a20"));
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &before, NULL), 0);
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &committed_before, NULL), 0);

    {
        struct eng_op ops[2] = {put_op(1, &b, "b20"), put_op(1, &a, "a20")};
        struct eng_commit c = {20, ops, 2};
        ck_assert_int_eq(eng_apply(g_e, &c, 1, 2, NULL), 0);
    }
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &after, NULL), 0);

    /* Taken before the apply: sees the versions through its overlay. */
    ck_assert_str_eq(snap_get(before, 1, "b"), "b20");
    ck_assert_str_eq(snap_get(before, 1, "a"), "a20");
    ck_assert_int_eq(snap_scan(before, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "a=a20,b=b20,");
    /* Taken after: through RocksDB, exactly once. */
    ck_assert_str_eq(snap_get(after, 1, "b"), "b20");
    ck_assert_int_eq(snap_scan(after, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "a=a20,b=b20,");
    ck_assert_uint_eq(eng_snap_ts(after), 20);
    /* The committed snapshot taken before the apply never sees them. */
    ck_assert_ptr_null(snap_get(committed_before, 1, "b"));
    ck_assert_str_eq(snap_get(committed_before, 1, "a"), "a10");

    eng_snap_release(before);
    eng_snap_release(after);
    eng_snap_release(committed_before);
}
END_TEST

START_TEST(test_discard)
{
    struct key a = K("a");
    struct eng_op create = {ENG_OP_CREATE, 7, "db.pending", NULL, 0, NULL, 0};
    struct eng_commit cc = {40, &create, 1};
    struct eng_snap *held;
    uint64_t id;

    commit(1, 10, put_op(1, &a, "a10"));
    stage(20, put_op(1, &a, "a20"));
    ck_assert_int_eq(eng_overlay_add(g_e, &cc), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.pending", true, &id), 0);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &held, NULL), 0);

    eng_overlay_discard(g_e);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a10");
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.pending", true, &id), CAIRN_ENOTFOUND);
    /* A snapshot taken before keeps its captured view. */
    ck_assert_str_eq(snap_get(held, 1, "a"), "a20");
    eng_snap_release(held);
    /* Discarded ids are never handed out again. */
    ck_assert_uint_gt(eng_catalog_next_id(g_e), 7);
    /* Discard of an empty overlay is harmless. */
    eng_overlay_discard(g_e);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a10");
}
END_TEST

/* eng_overlay_discard_from undoes only the newest commits: older overlay
 * versions and pending catalog changes stay, in every collection. */
START_TEST(test_discard_from)
{
    struct key a = K("a"), b = K("b");
    struct eng_op c_old = {ENG_OP_CREATE, 5, "db.old", NULL, 0, NULL, 0};
    struct eng_op c_new = {ENG_OP_CREATE, 6, "db.new", NULL, 0, NULL, 0};
    struct eng_commit cc;
    uint64_t id;

    commit(1, 10, put_op(1, &a, "a10"));
    stage(20, put_op(1, &a, "a20"));
    stage(25, put_op(2, &b, "b25"));
    cc = (struct eng_commit){26, &c_old, 1};
    ck_assert_int_eq(eng_overlay_add(g_e, &cc), 0);
    stage(30, put_op(1, &a, "a30"));
    stage(30, del_op(2, &b)); /* same ts: both ops of the refused commit */
    stage(30, put_op(1, &b, "b30"));
    cc = (struct eng_commit){30, &c_new, 1};
    ck_assert_int_eq(eng_overlay_add(g_e, &cc), 0);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a30");

    eng_overlay_discard_from(g_e, 30);
    ck_assert_uint_eq(eng_overlay_size(g_e), 2);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a20");
    ck_assert_ptr_null(get(true, CAIRN_TS_MAX, 1, "b"));
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 2, "b"), "b25");
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.old", true, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.new", true, &id), CAIRN_ENOTFOUND);
    /* Nothing at or above the ts: no change. */
    eng_overlay_discard_from(g_e, 31);
    ck_assert_uint_eq(eng_overlay_size(g_e), 2);
    /* Applying the kept commits empties the overlay as usual. */
    commit(2, 20, put_op(1, &a, "a20"));
    commit(3, 25, put_op(2, &b, "b25"));
    cc = (struct eng_commit){26, &c_old, 1};
    ck_assert_int_eq(eng_apply(g_e, &cc, 1, 4, NULL), 0);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.old", false, &id), 0);
    /* From below everything: all goes. */
    stage(40, put_op(1, &a, "a40"));
    eng_overlay_discard_from(g_e, 1);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a20");
}
END_TEST

START_TEST(test_pending_catalog)
{
    struct eng_op c1 = {ENG_OP_CREATE, 1, "db.one", NULL, 0, NULL, 0};
    struct eng_op c2 = {ENG_OP_CREATE, 2, "db.two", NULL, 0, NULL, 0};
    struct eng_op d1 = {ENG_OP_DROP, 1, "db.one", NULL, 0, NULL, 0};
    struct eng_op c3 = {ENG_OP_CREATE, 3, "db.one", NULL, 0, NULL, 0};
    struct eng_commit cm;
    struct eng_coll_info *v;
    size_t n;
    uint64_t id;

    cm = (struct eng_commit){10, &c1, 1};
    ck_assert_int_eq(eng_apply(g_e, &cm, 1, 1, NULL), 0);
    cm = (struct eng_commit){20, &c2, 1};
    ck_assert_int_eq(eng_overlay_add(g_e, &cm), 0);
    cm = (struct eng_commit){30, &d1, 1};
    ck_assert_int_eq(eng_overlay_add(g_e, &cm), 0);

    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.one", false, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.one", true, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.two", false, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.two", true, &id), 0);
    ck_assert_uint_eq(id, 2);
    ck_assert_int_eq(eng_catalog_list(g_e, "db", true, &v, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(v[0].ns, "db.two");
    free(v);
    ck_assert_int_eq(eng_catalog_list(g_e, "db", false, &v, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(v[0].ns, "db.one");
    free(v);

    cm = (struct eng_commit){40, &c3, 1};
    ck_assert_int_eq(eng_overlay_add(g_e, &cm), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.one", true, &id), 0);
    ck_assert_uint_eq(id, 3);
    ck_assert_uint_ge(eng_catalog_next_id(g_e), 4);

    /* Apply the create of db.two: it becomes committed; the rest stays pending. */
    cm = (struct eng_commit){20, &c2, 1};
    ck_assert_int_eq(eng_apply(g_e, &cm, 1, 2, NULL), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.two", false, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.one", false, &id), 0);
    ck_assert_uint_eq(id, 1);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.one", true, &id), 0);
    ck_assert_uint_eq(id, 3);
    ck_assert_int_eq(eng_catalog_list(g_e, NULL, true, &v, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(v[0].ns, "db.one");
    ck_assert_uint_eq(v[0].id, 3);
    ck_assert_str_eq(v[1].ns, "db.two");
    free(v);
}
END_TEST

START_TEST(test_overlay_rejects_bad_ops)
{
    struct eng_op bad = {ENG_OP_PUT, 1, NULL, NULL, 0, NULL, 0};
    struct eng_op bad_ns = {ENG_OP_CREATE, 1, NULL, NULL, 0, NULL, 0};
    struct eng_commit c = {10, &bad, 1};

    ck_assert_int_eq(eng_overlay_add(g_e, &c), CAIRN_EINVAL);
    c.ops = &bad_ns;
    ck_assert_int_eq(eng_overlay_add(g_e, &c), CAIRN_EINVAL);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
}
END_TEST

/* ---- Concurrency -------------------------------------------------------- */

#define N_ENTRIES 2000
#define N_READERS 2

static atomic_int g_staged;  /* entries 1..g_staged are in the overlay or applied */
static atomic_int g_applied; /* entries 1..g_applied are applied */
static atomic_int g_done;
static atomic_int g_errors;
static atomic_long g_checks;

static void entry_keys(int i, struct key *k)
{
    char s[32];
    snprintf(s, sizeof s, "k%05d", i);
    *k = K(s);
}

static void *writer_main(void *arg)
{
    static struct key keys[N_ENTRIES + 1];
    static uint8_t docs[N_ENTRIES + 1][8];
    struct key ctr = K("ctr");
    int next_apply = 1;
    unsigned seed = 12345;

    (void)arg;
    for (int i = 1; i <= N_ENTRIES; i++) {
        struct eng_op ops[2];
        struct eng_commit c;
        entry_keys(i, &keys[i]);
        cairn_store_be64(docs[i], (uint64_t)i);
        ops[0] = (struct eng_op){ENG_OP_PUT, 1, NULL, keys[i].b, keys[i].n, docs[i], 8};
        ops[1] = (struct eng_op){ENG_OP_PUT, 1, NULL, ctr.b, ctr.n, docs[i], 8};
        c = (struct eng_commit){(cairn_ts)i * 10, ops, 2};
        if (eng_overlay_add(g_e, &c) != 0) {
            atomic_fetch_add(&g_errors, 1);
        }
        atomic_store(&g_staged, i);
        /* Apply with a random lag of 0..4 entries, as raft commits would. */
        int lag = (int)(rand_r(&seed) % 5);
        while (next_apply <= i - lag || (i == N_ENTRIES && next_apply <= i)) {
            int j = next_apply++;
            ops[0] = (struct eng_op){ENG_OP_PUT, 1, NULL, keys[j].b, keys[j].n, docs[j], 8};
            ops[1] = (struct eng_op){ENG_OP_PUT, 1, NULL, ctr.b, ctr.n, docs[j], 8};
            c = (struct eng_commit){(cairn_ts)j * 10, ops, 2};
            if (eng_apply(g_e, &c, 1, (cairn_index)j, NULL) != 0) {
                atomic_fetch_add(&g_errors, 1);
            }
            atomic_store(&g_applied, j);
        }
    }
    atomic_store(&g_done, 1);
    return NULL;
}

/* One check: a snapshot sees at least everything published before it,
 * and is internally consistent (counter == number of keys). */
static void reader_check(bool local, bool full_scan)
{
    int floor = local ? atomic_load(&g_staged) : atomic_load(&g_applied);
    struct eng_snap *s;
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct key ctr = K("ctr"), k;
    uint64_t seen = 0;

    if (eng_snap_acquire(g_e, local, CAIRN_TS_MAX, &s, NULL) != 0) {
        atomic_fetch_add(&g_errors, 1);
        return;
    }
    if (floor > 0) {
        if (eng_snap_get(s, 1, ctr.b, ctr.n, &b, NULL) != 0 || b.len != 8) {
            atomic_fetch_add(&g_errors, 1);
        } else {
            seen = cairn_load_be64(b.data);
            if (seen < (uint64_t)floor) {
                atomic_fetch_add(&g_errors, 1);
            }
        }
        /* The newest published key and an older one are visible. */
        entry_keys(floor, &k);
        cairn_buf_reset(&b);
        if (eng_snap_get(s, 1, k.b, k.n, &b, NULL) != 0) {
            atomic_fetch_add(&g_errors, 1);
        }
        entry_keys(1 + floor / 2, &k);
        cairn_buf_reset(&b);
        if (eng_snap_get(s, 1, k.b, k.n, &b, NULL) != 0) {
            atomic_fetch_add(&g_errors, 1);
        }
    }
    if (full_scan) {
        struct eng_iter *it;
        const uint8_t *key, *doc, *prev = NULL;
        size_t kl, dl, prev_len = 0;
        uint64_t n_keys = 0, ctr_val = 0;
        uint8_t prev_buf[64];
        int r;
        if (eng_iter_open(s, 1, NULL, 0, &it, NULL) != 0) {
            atomic_fetch_add(&g_errors, 1);
        } else {
            while ((r = eng_iter_next(it, &key, &kl, &doc, &dl)) == 1) {
                if (prev != NULL && memcmp(prev, key, kl < prev_len ? kl : prev_len) >= 0) {
                    atomic_fetch_add(&g_errors, 1); /* order or duplicate */
                }
                memcpy(prev_buf, key, kl);
                prev = prev_buf;
                prev_len = kl;
                if (key[0] == 'c') {
                    ctr_val = cairn_load_be64(doc);
                } else {
                    n_keys++;
                }
            }
            if (r != 0 || n_keys != ctr_val || n_keys < (uint64_t)floor) {
                atomic_fetch_add(&g_errors, 1);
            }
            eng_iter_close(it);
        }
    }
    cairn_buf_free(&b);
    eng_snap_release(s);
    atomic_fetch_add(&g_checks, 1);
}

static void *reader_main(void *arg)
{
    long n = 0;
    (void)arg;
    while (!atomic_load(&g_done)) {
        reader_check(n % 3 != 0, n % 16 == 0);
        n++;
    }
    reader_check(true, true);
    reader_check(false, true);
    return NULL;
}

START_TEST(test_concurrent_apply_and_read)
{
    pthread_t w, r[N_READERS];
    char got[64];
    int errors;
    long checks;

    atomic_store(&g_staged, 0);
    atomic_store(&g_applied, 0);
    atomic_store(&g_done, 0);
    atomic_store(&g_errors, 0);
    atomic_store(&g_checks, 0);
    for (int i = 0; i < N_READERS; i++) {
        ck_assert_int_eq(pthread_create(&r[i], NULL, reader_main, NULL), 0);
    }
    ck_assert_int_eq(pthread_create(&w, NULL, writer_main, NULL), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < N_READERS; i++) {
        pthread_join(r[i], NULL);
    }
    errors = atomic_load(&g_errors);
    checks = atomic_load(&g_checks);
    ck_assert_int_eq(errors, 0);
    ck_assert_int_gt(checks, N_READERS);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
    ck_assert_int_eq(scan(false, CAIRN_TS_MAX, 1, "k01999", got, sizeof got), 1);
    {
        cairn_index idx;
        eng_applied(g_e, &idx, NULL);
        ck_assert_uint_eq(idx, N_ENTRIES);
    }
}
END_TEST

/* ---- Views across the overlay/RocksDB boundary --------------------------- */

/* Reads (coll, key) through `s` with its version ts: returns the document
 * (static buffer) or NULL, and *ts. */
static const char *snap_get_v(struct eng_snap *s, uint64_t coll, const char *key, cairn_ts *ts)
{
    static char out[256];
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    struct key k = K(key);
    int rv = eng_snap_get_version(s, coll, k.b, k.n, &b, ts, &err);

    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_msg(rv == 0, "get_version: %s", err.msg);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

/* eng_latest of (coll, key): the document (static buffer) or NULL, *ts. */
static const char *latest(uint64_t coll, const char *key, cairn_ts *ts)
{
    static char out[256];
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    struct key k = K(key);
    int rv = eng_latest(g_e, coll, k.b, k.n, &b, ts, &err);

    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_msg(rv == 0, "latest: %s", err.msg);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

/* eng_latest and eng_snap_get_version report the version's ts, for
 * documents, tombstones (ENOTFOUND with the tombstone's ts) and absent
 * keys (ts 0), from either source. */
START_TEST(test_latest_and_versions)
{
    struct key a = K("a"), b = K("b"), c = K("c");
    struct cairn_error err = {0};
    struct eng_snap *s;
    cairn_ts ts = 99;

    commit(1, 10, put_op(1, &a, "a10"));
    commit(2, 20, del_op(1, &b));
    stage(30, put_op(1, &b, "b30"));
    stage(40, del_op(1, &a));
    ck_assert_ptr_null(latest(1, "a", &ts));
    ck_assert_uint_eq(ts, 40);
    ck_assert_str_eq(latest(1, "b", &ts), "b30");
    ck_assert_uint_eq(ts, 30);
    ck_assert_ptr_null(latest(1, "c", &ts));
    ck_assert_uint_eq(ts, 0);
    ck_assert_ptr_null(latest(2, "a", &ts));
    ck_assert_uint_eq(ts, 0);
    /* doc may be NULL: only the ts. */
    ck_assert_int_eq(eng_latest(g_e, 1, b.b, b.n, NULL, &ts, NULL), 0);
    ck_assert_uint_eq(ts, 30);
    ck_assert_int_eq(eng_latest(g_e, 1, c.b, 0, NULL, &ts, &err), CAIRN_EINVAL);

    ck_assert_int_eq(eng_snap_acquire(g_e, true, 35, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), 35);
    ck_assert_str_eq(snap_get_v(s, 1, "a", &ts), "a10");
    ck_assert_uint_eq(ts, 10);
    ck_assert_str_eq(snap_get_v(s, 1, "b", &ts), "b30");
    ck_assert_uint_eq(ts, 30);
    ck_assert_ptr_null(snap_get_v(s, 1, "c", &ts));
    ck_assert_uint_eq(ts, 0);
    eng_snap_release(s);
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), 20);
    ck_assert_ptr_null(snap_get_v(s, 1, "b", &ts));
    ck_assert_uint_eq(ts, 20); /* the tombstone's */
    ck_assert_int_eq(eng_snap_get_version(s, 1, a.b, a.n, NULL, &ts, NULL), 0);
    ck_assert_uint_eq(ts, 10);
    eng_snap_release(s);
    ck_assert_uint_eq(eng_visible_ts(g_e), 40);
}
END_TEST

/* A hook that applies entries between a reader's overlay capture and its
 * read of the applied ts, once. */
struct apply_between
{
    enum eng_debug_point at; /* 0: ENG_DEBUG_SNAP_CAPTURED */
    int fired;
    size_t n;
    cairn_index first_index;
    struct eng_commit commits[4];
};

static void apply_between_cb(void *arg, enum eng_debug_point point)
{
    struct apply_between *ab = arg;
    struct cairn_error err = {0};

    if (point != (ab->at != 0 ? ab->at : ENG_DEBUG_SNAP_CAPTURED) || ab->fired++ > 0) {
        return;
    }
    for (size_t i = 0; i < ab->n; i++) {
        ck_assert_msg(eng_apply(g_e, &ab->commits[i], 1, ab->first_index + i, &err) == 0,
                      "apply in hook: %s", err.msg);
    }
}

/* A RocksDB version newer than the overlay version a reader captured wins:
 * entries applied between the capture and the read of the applied ts
 * (including one that never was in the overlay) are read from RocksDB, for
 * point reads, eng_latest and iterators, documents and tombstones. */
START_TEST(test_rocks_newer_than_captured_overlay)
{
    struct key k = K("k"), j = K("j"), x = K("x");
    struct eng_op k20 = put_op(1, &k, "k20"), j20 = put_op(1, &j, "j20");
    struct eng_op k30 = put_op(1, &k, "k30"), jdel = del_op(1, &j);
    struct eng_op ops20[2] = {k20, j20}, ops30[2] = {k30, jdel};
    struct apply_between ab = {0};
    struct eng_snap *s;
    char got[256];
    cairn_ts ts;

    commit(1, 10, put_op(1, &x, "x10"));
    {
        struct eng_commit c = {20, ops20, 2};
        ck_assert_int_eq(eng_overlay_add(g_e, &c), 0);
    }
    /* The hook applies 20 (from the overlay) and 30 (never staged). */
    ab.n = 2;
    ab.first_index = 2;
    ab.commits[0] = (struct eng_commit){20, ops20, 2};
    ab.commits[1] = (struct eng_commit){30, ops30, 2};
    eng_debug_set_hook(g_e, apply_between_cb, &ab);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &s, NULL), 0);
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_int_eq(ab.fired, 1);
    ck_assert_uint_eq(eng_snap_ts(s), 30);
    ck_assert_str_eq(snap_get_v(s, 1, "k", &ts), "k30");
    ck_assert_uint_eq(ts, 30);
    ck_assert_ptr_null(snap_get_v(s, 1, "j", &ts));
    ck_assert_uint_eq(ts, 30);
    ck_assert_int_eq(snap_scan(s, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "k=k30,x=x10,");
    eng_snap_release(s);

    /* The same for eng_latest, and with a read_ts between the two. */
    {
        struct key m = K("m");
        struct eng_op m40 = put_op(1, &m, "m40"), m50 = put_op(1, &m, "m50");
        struct eng_commit c = {40, &m40, 1};
        ck_assert_int_eq(eng_overlay_add(g_e, &c), 0);
        ab = (struct apply_between){0};
        ab.n = 2;
        ab.first_index = 4;
        ab.commits[0] = (struct eng_commit){40, &m40, 1};
        ab.commits[1] = (struct eng_commit){50, &m50, 1};
        eng_debug_set_hook(g_e, apply_between_cb, &ab);
        ck_assert_str_eq(latest(1, "m", &ts), "m50");
        ck_assert_uint_eq(ts, 50);
        eng_debug_set_hook(g_e, NULL, NULL);
        ck_assert_int_eq(eng_snap_acquire(g_e, true, 45, &s, NULL), 0);
        ck_assert_str_eq(snap_get_v(s, 1, "m", &ts), "m40");
        ck_assert_int_eq(snap_scan(s, 1, NULL, got, sizeof got), 3);
        ck_assert_str_eq(got, "k=k30,m=m40,x=x10,");
        eng_snap_release(s);
    }
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
}
END_TEST

/* An entry that never was in this overlay (a new primary's, seen by a
 * deposed one before it discards) applied between a reader's read of the
 * applied ts and its RocksDB read: RocksDB's version is newer than the
 * overlay version the reader captured, and wins. */
START_TEST(test_rocks_newer_in_snapshot_window)
{
    struct key k = K("k"), x = K("x"), z = K("z"), m = K("m");
    struct eng_op k35 = put_op(1, &k, "k35"), m55 = put_op(1, &m, "m55");
    struct apply_between ab = {0};
    struct eng_snap *s;
    char got[256];
    cairn_ts ts;

    commit(1, 10, put_op(1, &x, "x10"));
    stage(30, put_op(1, &k, "k30"));
    stage(40, put_op(1, &z, "z40"));
    ab.at = ENG_DEBUG_SNAP_REGISTERED;
    ab.n = 1;
    ab.first_index = 2;
    ab.commits[0] = (struct eng_commit){35, &k35, 1};
    eng_debug_set_hook(g_e, apply_between_cb, &ab);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &s, NULL), 0);
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_int_eq(ab.fired, 1);
    ck_assert_uint_eq(eng_snap_ts(s), 40);
    ck_assert_str_eq(snap_get_v(s, 1, "k", &ts), "k35");
    ck_assert_uint_eq(ts, 35);
    ck_assert_int_eq(snap_scan(s, 1, NULL, got, sizeof got), 3);
    ck_assert_str_eq(got, "k=k35,x=x10,z=z40,");
    eng_snap_release(s);

    stage(50, put_op(1, &m, "m50"));
    ab = (struct apply_between){ENG_DEBUG_SNAP_REGISTERED, 0, 1, 3, {{55, &m55, 1}}};
    eng_debug_set_hook(g_e, apply_between_cb, &ab);
    ck_assert_str_eq(latest(1, "m", &ts), "m55");
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_int_eq(ab.fired, 1);
    ck_assert_uint_eq(ts, 55);
}
END_TEST

/* Overlay versions at or below the applied ts a reader read are ignored,
 * RocksDB decides: a version whose commit was overwritten by a new
 * primary's entry (never applied), and one of a collection whose drop was
 * applied. */
START_TEST(test_stale_overlay_versions_ignored)
{
    struct key k = K("k"), j = K("j"), d = K("d");
    struct eng_op j25 = put_op(1, &j, "j25"), d40 = put_op(5, &d, "d40");
    struct eng_op create = {ENG_OP_CREATE, 5, "db.five", NULL, 0, NULL, 0};
    struct eng_op drop = {ENG_OP_DROP, 5, "db.five", NULL, 0, NULL, 0};
    struct apply_between ab = {0};
    struct eng_snap *s;
    char got[256];
    cairn_ts ts;

    commit(1, 10, put_op(1, &k, "k10"));
    stage(20, put_op(1, &k, "k20"));
    ab.n = 1;
    ab.first_index = 2;
    ab.commits[0] = (struct eng_commit){25, &j25, 1};
    eng_debug_set_hook(g_e, apply_between_cb, &ab);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &s, NULL), 0);
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_uint_eq(eng_snap_ts(s), 25);
    ck_assert_str_eq(snap_get_v(s, 1, "k", &ts), "k10");
    ck_assert_uint_eq(ts, 10);
    ck_assert_int_eq(snap_scan(s, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "j=j25,k=k10,");
    eng_snap_release(s);
    eng_overlay_discard(g_e);

    {
        struct eng_commit c = {30, &create, 1};
        ck_assert_int_eq(eng_apply(g_e, &c, 1, 3, NULL), 0);
    }
    stage(40, d40);
    ab = (struct apply_between){0, 0, 2, 4, {{40, &d40, 1}, {50, &drop, 1}}};
    eng_debug_set_hook(g_e, apply_between_cb, &ab);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &s, NULL), 0);
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_uint_eq(eng_snap_ts(s), 50);
    ck_assert_ptr_null(snap_get_v(s, 5, "d", &ts));
    ck_assert_int_eq(snap_scan(s, 5, NULL, got, sizeof got), 0);
    eng_snap_release(s);
    /* eng_latest likewise. */
    stage(60, put_op(1, &k, "k60"));
    ab = (struct apply_between){0, 0, 1, 6, {{65, &j25, 1}}};
    eng_debug_set_hook(g_e, apply_between_cb, &ab);
    ck_assert_str_eq(latest(1, "k", &ts), "k10");
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_uint_eq(ts, 10);
}
END_TEST

/* An apply whose trim runs while an add is linking into the active
 * segment (here: from inside the add) must not retire that segment, even
 * when everything published in it is applied: the commit being added
 * stays visible. */
struct apply_in_add
{
    struct eng_commit c;
    int fired;
};

static void apply_in_add_cb(void *arg, enum eng_debug_point point)
{
    struct apply_in_add *aa = arg;

    if (point == ENG_DEBUG_ADD_LINKING && aa->fired++ == 0) {
        ck_assert_int_eq(eng_apply(g_e, &aa->c, 1, 1, NULL), 0);
    }
}

START_TEST(test_trim_during_add_keeps_active_segment)
{
    struct key a = K("a"), b = K("b");
    struct eng_op a10 = put_op(1, &a, "a10");
    struct apply_in_add aa = {{10, &a10, 1}, 0};
    struct eng_overlay_stats st;

    stage(10, a10);
    eng_debug_set_hook(g_e, apply_in_add_cb, &aa);
    stage(20, put_op(1, &b, "b20"));
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_int_eq(aa.fired, 1);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "b"), "b20");
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a10");
    ck_assert_uint_eq(eng_overlay_size(g_e), 1);
    eng_debug_overlay_stats(g_e, &st);
    ck_assert_uint_eq(st.n_segments, 1);
    /* Once applied with no add running, the active segment goes. */
    commit(2, 20, put_op(1, &b, "b20"));
    eng_debug_overlay_stats(g_e, &st);
    ck_assert_uint_eq(st.n_segments, 0);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "b"), "b20");
}
END_TEST

/* Snapshots taken inside eng_apply, after its RocksDB write and before the
 * watermark is published: they do not wait for the apply; a local one sees
 * the entry exactly once, a committed one does not see it although
 * RocksDB already holds it. */
struct mid_apply
{
    struct eng_snap *local, *local25, *committed;
    cairn_index idx_seen;
    cairn_ts latest_ts;
    int fired;
};

static void mid_apply_cb(void *arg, enum eng_debug_point point)
{
    struct mid_apply *ma = arg;

    if (point != ENG_DEBUG_APPLY_WRITTEN || ma->fired++ > 0) {
        return;
    }
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &ma->local, NULL), 0);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, 25, &ma->local25, NULL), 0);
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &ma->committed, NULL), 0);
    eng_applied(g_e, &ma->idx_seen, NULL);
    latest(1, "a", &ma->latest_ts);
}

START_TEST(test_snapshot_mid_apply)
{
    struct key a = K("a"), b = K("b");
    struct eng_op ops20[2] = {put_op(1, &a, "a20"), put_op(1, &b, "b20")};
    struct eng_commit c20 = {20, ops20, 2};
    struct mid_apply ma = {0};
    char got[256];
    cairn_ts ts;

    commit(1, 10, put_op(1, &a, "a10"));
    ck_assert_int_eq(eng_overlay_add(g_e, &c20), 0);
    stage(30, put_op(1, &a, "a30"));
    eng_debug_set_hook(g_e, mid_apply_cb, &ma);
    ck_assert_int_eq(eng_apply(g_e, &c20, 1, 2, NULL), 0);
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_int_eq(ma.fired, 1);
    ck_assert_uint_eq(ma.idx_seen, 1); /* not yet published */
    ck_assert_uint_eq(ma.latest_ts, 30);

    ck_assert_uint_eq(eng_snap_ts(ma.local), 30);
    ck_assert_str_eq(snap_get_v(ma.local, 1, "b", &ts), "b20");
    ck_assert_uint_eq(ts, 20);
    ck_assert_str_eq(snap_get(ma.local, 1, "a"), "a30");
    ck_assert_int_eq(snap_scan(ma.local, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "a=a30,b=b20,");

    ck_assert_uint_eq(eng_snap_ts(ma.local25), 25);
    ck_assert_str_eq(snap_get(ma.local25, 1, "a"), "a20");
    ck_assert_int_eq(snap_scan(ma.local25, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "a=a20,b=b20,");

    /* RocksDB holds ts 20 already, but the snapshot's ts is 10. */
    ck_assert_uint_eq(eng_snap_ts(ma.committed), 10);
    ck_assert_str_eq(snap_get(ma.committed, 1, "a"), "a10");
    ck_assert_ptr_null(snap_get(ma.committed, 1, "b"));
    ck_assert_int_eq(snap_scan(ma.committed, 1, NULL, got, sizeof got), 1);
    ck_assert_str_eq(got, "a=a10,");

    /* After the apply: trimmed, and the views did not change. */
    ck_assert_uint_eq(eng_overlay_size(g_e), 1);
    ck_assert_int_eq(snap_scan(ma.local, 1, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "a=a30,b=b20,");
    ck_assert_str_eq(get(false, CAIRN_TS_MAX, 1, "b"), "b20");
    eng_snap_release(ma.local);
    eng_snap_release(ma.local25);
    eng_snap_release(ma.committed);
}
END_TEST

/* Commits without ops advance the visible ts (overlay) and the applied ts
 * (apply) and nothing else. */
START_TEST(test_zero_op_commits)
{
    struct key a = K("a");
    struct eng_commit empty = {40, NULL, 0};
    struct eng_snap *s;
    cairn_index idx;
    cairn_ts ts;

    commit(1, 10, put_op(1, &a, "a10"));
    stage(20, put_op(1, &a, "a20"));
    ck_assert_int_eq(eng_overlay_add(g_e, &empty), 0);
    ck_assert_uint_eq(eng_overlay_size(g_e), 1);
    ck_assert_uint_eq(eng_visible_ts(g_e), 40);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), 40);
    ck_assert_str_eq(snap_get(s, 1, "a"), "a20");
    eng_snap_release(s);
    {
        struct eng_op op = put_op(1, &a, "a20");
        struct eng_commit cs[2] = {{20, &op, 1}, {40, NULL, 0}};
        ck_assert_int_eq(eng_apply(g_e, cs, 2, 2, NULL), 0);
    }
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 2);
    ck_assert_uint_eq(ts, 40);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
    ck_assert_uint_eq(eng_visible_ts(g_e), 40);
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), 40);
    ck_assert_str_eq(snap_get(s, 1, "a"), "a20");
    eng_snap_release(s);
    /* An entry of one zero-op commit alone. */
    empty.ts = 50;
    ck_assert_int_eq(eng_apply(g_e, &empty, 1, 3, NULL), 0);
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(ts, 50);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "a"), "a20");
}
END_TEST

/* Session ops are validated by the overlay and otherwise ignored. */
START_TEST(test_overlay_ignores_session_ops)
{
    uint8_t big[ENG_SESSION_KEY_MAX + 1];
    struct eng_op sess = {ENG_OP_SESSION,         0, NULL, (const uint8_t *)"lsid", 4,
                          (const uint8_t *)"rec", 3};
    struct eng_commit c = {10, &sess, 1};

    memset(big, 'x', sizeof big);
    ck_assert_int_eq(eng_overlay_add(g_e, &c), 0);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
    ck_assert_uint_eq(eng_visible_ts(g_e), 10);
    sess.key_len = 0;
    c.ts = 20;
    ck_assert_int_eq(eng_overlay_add(g_e, &c), CAIRN_EINVAL);
    sess.key = big;
    sess.key_len = sizeof big;
    ck_assert_int_eq(eng_overlay_add(g_e, &c), CAIRN_EINVAL);
    sess.key_len = ENG_SESSION_KEY_MAX;
    ck_assert_int_eq(eng_overlay_add(g_e, &c), 0);
    ck_assert_uint_eq(eng_visible_ts(g_e), 20);
}
END_TEST

/* ---- Segments: trim, retirement, discard_from across segments ------------ */

static void stats(struct eng_overlay_stats *st)
{
    eng_debug_overlay_stats(g_e, st);
}

/* Applying retires whole segments once all their versions are applied;
 * a held snapshot keeps its segments (and what it reads) alive, and the
 * active segment goes once no add runs. */
START_TEST(test_trim_retires_segments)
{
    struct eng_overlay_stats st, st2;
    struct key keys[100];
    struct eng_snap *held;
    char doc[16];

    g_e->ovl.seg_max_nodes = 16;
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "k%03d", i);
        keys[i] = K(name);
        snprintf(doc, sizeof doc, "v%d", i);
        stage((cairn_ts)(i + 1) * 10, put_op(1, &keys[i], doc));
    }
    stats(&st);
    ck_assert_uint_eq(st.n_versions, 100);
    ck_assert_uint_eq(st.n_segments, 7); /* 6 x 16 + 4 */
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &held, NULL), 0);
    for (int i = 0; i < 50; i++) {
        snprintf(doc, sizeof doc, "v%d", i);
        commit((cairn_index)i + 1, (cairn_ts)(i + 1) * 10, put_op(1, &keys[i], doc));
    }
    stats(&st2);
    ck_assert_uint_eq(st2.n_versions, 50);
    ck_assert_uint_eq(st2.n_segments, 4);             /* up to ts 160, 320, 480 retired */
    ck_assert_uint_eq(st2.segs_freed, st.segs_freed); /* held */
    ck_assert_str_eq(snap_get(held, 1, "k010"), "v10");
    ck_assert_str_eq(snap_get(held, 1, "k090"), "v90");
    eng_snap_release(held);
    stats(&st2);
    ck_assert_uint_eq(st2.segs_freed, st.segs_freed + 3);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "k010"), "v10");
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "k090"), "v90");
    ck_assert_ptr_null(get(false, CAIRN_TS_MAX, 1, "k090"));
    for (int i = 50; i < 100; i++) {
        snprintf(doc, sizeof doc, "v%d", i);
        commit((cairn_index)i + 1, (cairn_ts)(i + 1) * 10, put_op(1, &keys[i], doc));
    }
    stats(&st2);
    ck_assert_uint_eq(st2.n_versions, 0);
    ck_assert_uint_eq(st2.n_segments, 0);
    ck_assert_uint_eq(st2.segs_freed, st.segs_freed + 7);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "k090"), "v90");
}
END_TEST

/* discard_from over many segments keeps exactly the older commits, in
 * every collection, including several versions of one key. */
START_TEST(test_discard_from_many_segments)
{
    struct key hot = K("hot");
    struct eng_overlay_stats st;
    struct eng_snap *held;
    char got[4096], doc[16];

    g_e->ovl.seg_max_nodes = 4;
    commit(1, 5, put_op(1, &hot, "h0"));
    for (int i = 1; i <= 40; i++) {
        char name[16];
        struct key k;
        snprintf(name, sizeof name, "k%02d", i);
        k = K(name);
        snprintf(doc, sizeof doc, "v%d", i);
        {
            struct eng_op ops[2] = {put_op(1 + (uint64_t)(i % 2), &k, doc), put_op(1, &hot, doc)};
            struct eng_commit c = {(cairn_ts)i * 10, ops, 2};
            ck_assert_int_eq(eng_overlay_add(g_e, &c), 0);
        }
    }
    stats(&st);
    ck_assert_uint_eq(st.n_versions, 80);
    ck_assert_uint_ge(st.n_segments, 20);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &held, NULL), 0);
    eng_overlay_discard_from(g_e, 255); /* keeps 10..250 */
    stats(&st);
    ck_assert_uint_eq(st.n_versions, 50);
    ck_assert_uint_eq(st.n_segments, 1);
    ck_assert_uint_eq(eng_visible_ts(g_e), 250);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "hot"), "v25");
    ck_assert_str_eq(get(true, 125, 1, "hot"), "v12");
    ck_assert_str_eq(get(true, 9, 1, "hot"), "h0");
    ck_assert_ptr_null(get(true, CAIRN_TS_MAX, 1, "k26"));
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 2, "k25"), "v25");
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 2, NULL, got, sizeof got), 13);
    ck_assert_int_eq(scan(true, CAIRN_TS_MAX, 1, NULL, got, sizeof got), 13); /* 12 + hot */
    /* The snapshot from before keeps everything it captured. */
    ck_assert_str_eq(snap_get(held, 1, "hot"), "v40");
    ck_assert_str_eq(snap_get(held, 1, "k40"), "v40");
    eng_snap_release(held);
    /* Adding goes on above; applying drains. */
    stage(260, put_op(1, &hot, "v26b"));
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "hot"), "v26b");
    ck_assert_str_eq(get(true, 255, 1, "hot"), "v25");
    eng_overlay_discard_from(g_e, 1);
    stats(&st);
    ck_assert_uint_eq(st.n_versions, 0);
    ck_assert_uint_eq(st.n_segments, 0);
    ck_assert_str_eq(get(true, CAIRN_TS_MAX, 1, "hot"), "h0");
}
END_TEST

/* ---- Cost: work per add and per trim, not time ----------------------------- */

/* Adds `n` one-key commits of distinct keys from ts `ts0` on. */
static void stage_many(int n, cairn_ts ts0)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        struct key k;
        snprintf(name, sizeof name, "p%06d", i);
        k = K(name);
        stage(ts0 + (cairn_ts)i, put_op(1, &k, "x"));
    }
}

/* One probe: a 1-key commit added with 50,000 versions pending visits
 * O(log n) skiplist nodes, allocates one node, and the trim of one applied
 * entry examines O(1) records and segments. */
static void check_add_and_trim_cost(void)
{
    struct eng_overlay_stats a, b;
    struct key probe = K("p025000x"), first = K("p000000");
    struct eng_snap *s;

    stats(&a);
    stage(1000000, put_op(1, &probe, "probe"));
    stats(&b);
    ck_assert_uint_eq(b.n_versions, 50001);
    ck_assert_uint_eq(b.allocated - a.allocated, 1);
    ck_assert_msg(b.visited - a.visited < 200, "add visited %llu nodes",
                  (unsigned long long)(b.visited - a.visited));
    /* A capture is O(segments), never O(versions). */
    ck_assert_uint_le(b.n_segments, 8);
    ck_assert_int_eq(eng_snap_acquire(g_e, true, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_str_eq(snap_get(s, 1, "p025000x"), "probe");
    eng_snap_release(s);

    stats(&a);
    commit(1, 1, put_op(1, &first, "x"));
    stats(&b);
    ck_assert_uint_eq(b.n_versions, 50000);
    ck_assert_msg(b.trim_steps - a.trim_steps <= 3, "trim took %llu steps",
                  (unsigned long long)(b.trim_steps - a.trim_steps));
}

START_TEST(test_add_cost_is_logarithmic)
{
    stage_many(50000, 1);
    check_add_and_trim_cost();
}
END_TEST

/* The same with every version in one segment: the skiplist itself is
 * logarithmic, not just the segment bound. */
START_TEST(test_add_cost_one_big_segment)
{
    struct eng_overlay_stats st;

    g_e->ovl.seg_max_nodes = SIZE_MAX;
    stage_many(50000, 1);
    stats(&st);
    ck_assert_uint_eq(st.n_segments, 1);
    check_add_and_trim_cost();
}
END_TEST

/* ---- A model: random adds, applies, discards and reads ------------------- */

#define M_KEYS 24
#define M_COMMITS 400
#define M_MAX_OPS 4
#define M_HELD 4

enum { M_ADDED = 1, M_APPLIED, M_DISCARDED };

struct m_op
{
    uint64_t coll;
    int key;
    bool del;
    char doc[24];
};

struct m_commit
{
    cairn_ts ts;
    int n;
    struct m_op ops[M_MAX_OPS];
};

/* What the test did; states[i] is commit i's state at some moment. */
static struct m_commit g_mc[M_COMMITS];
static int g_mn;

struct m_held
{
    struct eng_snap *s;
    bool local;
    cairn_ts read_ts;
    uint8_t states[M_COMMITS];
};

static struct key m_key(int k)
{
    char s[16];
    snprintf(s, sizeof s, "m%02d", k);
    return K(s);
}

/* Whether commit i counts for a reader with these states. */
static bool m_counts(const uint8_t *states, int i, bool local)
{
    return states[i] == M_APPLIED || (local && states[i] == M_ADDED);
}

/* The model's newest version of (coll, key) with ts <= bound. */
static const struct m_op *m_find(const uint8_t *states,
                                 bool local,
                                 uint64_t coll,
                                 int key,
                                 cairn_ts bound,
                                 cairn_ts *ts)
{
    for (int i = g_mn - 1; i >= 0; i--) {
        if (g_mc[i].ts > bound || !m_counts(states, i, local)) {
            continue;
        }
        /* The last op of a key in a commit wins. */
        for (int j = g_mc[i].n - 1; j >= 0; j--) {
            const struct m_op *op = &g_mc[i].ops[j];
            if (op->coll == coll && op->key == key) {
                *ts = g_mc[i].ts;
                return op;
            }
        }
    }
    *ts = 0;
    return NULL;
}

/* The model's snapshot ts for a reader. */
static cairn_ts m_snap_ts(const uint8_t *states, bool local, cairn_ts read_ts)
{
    cairn_ts s = 0;

    for (int i = 0; i < g_mn; i++) {
        if (m_counts(states, i, local) && g_mc[i].ts > s) {
            s = g_mc[i].ts;
        }
    }
    return s < read_ts ? s : read_ts;
}

/* Checks every key of both collections through `s` against the model:
 * point reads with versions, full scans and scans resumed after a key. */
static void m_check_snap(struct eng_snap *s,
                         const uint8_t *states,
                         bool local,
                         cairn_ts read_ts,
                         unsigned *seed)
{
    cairn_ts S = m_snap_ts(states, local, read_ts);

    ck_assert_uint_eq(eng_snap_ts(s), S);
    for (uint64_t coll = 1; coll <= 2; coll++) {
        char want[2048], got[2048];
        size_t len = 0;
        int n = 0, after = (int)(rand_r(seed) % M_KEYS);
        for (int k = 0; k < M_KEYS; k++) {
            struct key kk = m_key(k);
            cairn_ts mts, ets;
            const struct m_op *op = m_find(states, local, coll, k, S, &mts);
            const char *v = snap_get_v(s, coll, (const char *)kk.b, &ets);
            ck_assert_uint_eq(ets, mts);
            if (op == NULL || op->del) {
                ck_assert_msg(v == NULL, "coll %d key %d: got %s", (int)coll, k, v);
                continue;
            }
            ck_assert_msg(v != NULL && strcmp(v, op->doc) == 0, "coll %d key %d: want %s got %s",
                          (int)coll, k, op->doc, v ? v : "(none)");
            len += (size_t)snprintf(want + len, sizeof want - len, "m%02d=%s,", k, op->doc);
            n++;
        }
        want[len] = '\0';
        ck_assert_int_eq(snap_scan(s, coll, NULL, got, sizeof got), n);
        ck_assert_str_eq(got, want);
        {
            /* Resume after key `after`: what follows it in `want`. */
            char name[16];
            const char *rest;
            snprintf(name, sizeof name, "m%02d", after);
            snap_scan(s, coll, name, got, sizeof got);
            rest = want;
            for (const char *p = want; *p != '\0'; p = strchr(p, ',') + 1) {
                if (strncmp(p, name, 3) > 0) {
                    break;
                }
                rest = strchr(p, ',') + 1;
            }
            ck_assert_str_eq(got, rest);
        }
    }
}

static void m_check_latest(const uint8_t *states)
{
    for (uint64_t coll = 1; coll <= 2; coll++) {
        for (int k = 0; k < M_KEYS; k++) {
            struct key kk = m_key(k);
            cairn_ts mts, ets;
            const struct m_op *op = m_find(states, true, coll, k, CAIRN_TS_MAX, &mts);
            const char *v = latest(coll, (const char *)kk.b, &ets);
            ck_assert_uint_eq(ets, mts);
            if (op == NULL || op->del) {
                ck_assert_ptr_null(v);
            } else {
                ck_assert_str_eq(v, op->doc);
            }
        }
    }
}

/* Engine ops of commit i (keys in `keys`, which must outlive the call). */
static size_t m_ops(int i, struct eng_op *ops, struct key *keys)
{
    for (int j = 0; j < g_mc[i].n; j++) {
        const struct m_op *op = &g_mc[i].ops[j];
        keys[j] = m_key(op->key);
        ops[j] = op->del ? del_op(op->coll, &keys[j]) : put_op(op->coll, &keys[j], op->doc);
    }
    return (size_t)g_mc[i].n;
}

static void m_run(unsigned seed, size_t seg_max_nodes)
{
    static uint8_t states[M_COMMITS];
    struct m_held held[M_HELD] = {{0}};
    cairn_ts ts = 0;
    cairn_index index = 0;
    int n_checks = 0;

    if (seg_max_nodes != 0) {
        g_e->ovl.seg_max_nodes = seg_max_nodes;
    }
    g_mn = 0;
    memset(states, 0, sizeof states);
    for (int step = 0; g_mn < M_COMMITS; step++) {
        unsigned r = rand_r(&seed) % 20;
        bool any_added = false;
        for (int i = 0; i < g_mn; i++) {
            any_added |= states[i] == M_ADDED;
        }
        if (r < 9 || (r < 12 && !any_added)) {
            /* A new commit: added to the overlay, or (r 9..11 with nothing
             * pending) applied directly, as entries of another primary. */
            struct m_commit *c = &g_mc[g_mn];
            struct eng_op ops[M_MAX_OPS];
            struct key keys[M_MAX_OPS];
            struct eng_commit cm;
            ts += 1 + rand_r(&seed) % 3;
            c->ts = ts;
            c->n = (int)(rand_r(&seed) % (M_MAX_OPS + 1));
            for (int j = 0; j < c->n; j++) {
                struct m_op *op = &c->ops[j];
                op->coll = 1 + rand_r(&seed) % 2;
                op->key = rand_r(&seed) % 3 == 0 ? 0 : (int)(rand_r(&seed) % M_KEYS);
                op->del = rand_r(&seed) % 5 == 0;
                snprintf(op->doc, sizeof op->doc, "v%llu.%d", (unsigned long long)ts, j);
            }
            cm = (struct eng_commit){ts, ops, m_ops(g_mn, ops, keys)};
            if (r < 9) {
                ck_assert_int_eq(eng_overlay_add(g_e, &cm), 0);
                states[g_mn++] = M_ADDED;
            } else {
                ck_assert_int_eq(eng_apply(g_e, &cm, 1, ++index, NULL), 0);
                states[g_mn++] = M_APPLIED;
            }
        } else if (r < 15) {
            /* Apply the oldest 1..3 pending commits as one entry. */
            struct eng_op ops[3][M_MAX_OPS];
            struct key keys[3][M_MAX_OPS];
            struct eng_commit cms[3];
            int idx[3], n = 0, want = 1 + (int)(rand_r(&seed) % 3);
            for (int i = 0; i < g_mn && n < want; i++) {
                if (states[i] == M_ADDED) {
                    cms[n] = (struct eng_commit){g_mc[i].ts, ops[n], m_ops(i, ops[n], keys[n])};
                    idx[n++] = i;
                }
            }
            if (n > 0) {
                ck_assert_int_eq(eng_apply(g_e, cms, (size_t)n, ++index, NULL), 0);
                for (int i = 0; i < n; i++) {
                    states[idx[i]] = M_APPLIED;
                }
            }
        } else if (r == 15 && any_added) {
            /* A proposal failed: discard from a random pending commit on. */
            int pick = (int)(rand_r(&seed) % (unsigned)g_mn);
            while (states[pick] != M_ADDED) {
                pick = (pick + 1) % g_mn;
            }
            eng_overlay_discard_from(g_e, g_mc[pick].ts);
            for (int i = pick; i < g_mn; i++) {
                if (states[i] == M_ADDED) {
                    states[i] = M_DISCARDED;
                }
            }
        } else if (r == 16 && rand_r(&seed) % 8 == 0) {
            /* Leadership lost. */
            eng_overlay_discard(g_e);
            for (int i = 0; i < g_mn; i++) {
                if (states[i] == M_ADDED) {
                    states[i] = M_DISCARDED;
                }
            }
        } else {
            /* Read: a fresh snapshot, the held ones again, eng_latest. */
            bool local = rand_r(&seed) % 4 != 0;
            cairn_ts read_ts = rand_r(&seed) % 2 ? CAIRN_TS_MAX : rand_r(&seed) % (ts + 3);
            struct m_held *h = &held[rand_r(&seed) % M_HELD];
            if (h->s != NULL) {
                m_check_snap(h->s, h->states, h->local, h->read_ts, &seed);
                eng_snap_release(h->s);
            }
            h->local = local;
            h->read_ts = read_ts;
            memcpy(h->states, states, sizeof states);
            ck_assert_int_eq(eng_snap_acquire(g_e, local, read_ts, &h->s, NULL), 0);
            m_check_snap(h->s, h->states, local, read_ts, &seed);
            m_check_latest(states);
            ck_assert_uint_eq(eng_visible_ts(g_e), m_snap_ts(states, true, CAIRN_TS_MAX));
            n_checks++;
        }
    }
    for (int i = 0; i < M_HELD; i++) {
        if (held[i].s != NULL) {
            m_check_snap(held[i].s, held[i].states, held[i].local, held[i].read_ts, &seed);
            eng_snap_release(held[i].s);
        }
    }
    ck_assert_int_gt(n_checks, 20);
}

/* Point reads, versions, scans (resumed too) and eng_latest agree with a
 * model at every step of a random mix of adds, applies (of pending
 * commits, and of commits that never were in the overlay), discards and
 * discard_from, with long histories (key m00 is hot), tombstones and
 * random read timestamps; snapshots held across later changes keep their
 * view. Default segment bound. */
START_TEST(test_model_default_segments)
{
    m_run(0xC0FFEE, 0);
}
END_TEST

/* The same with tiny segments: most reads span more segments than a view
 * holds inline, and every key's history spans several segments. */
START_TEST(test_model_tiny_segments)
{
    m_run(0xBADC0DE, 3);
}
END_TEST

/* ---- Stress: one writer, one applier, readers ---------------------------- */

#define S_COMMITS 3000
#define S_COUNTERS 8
#define S_READERS 3
#define S_MAX_PENDING 48

static atomic_int s_added;   /* commits 1..s_added are in the overlay or applied */
static atomic_int s_applied; /* commits 1..s_applied are applied */
static atomic_int s_done;
static atomic_int s_errors;
static atomic_long s_checks;

static struct key s_counter(int i)
{
    char s[16];
    snprintf(s, sizeof s, "c%d", i);
    return K(s);
}

static struct key s_item(int i)
{
    char s[16];
    snprintf(s, sizeof s, "i%05d", i);
    return K(s);
}

#define S_TS(i) CAIRN_TS(100 + (i), 7)

/* Commit i: every counter := i, item i := i, and item i - 3 deleted (so
 * items 1..i-3 alternate: the model is "items i-2..i and the counters"). */
static void s_commit(int i, struct eng_op *ops, struct key *keys, uint8_t *val)
{
    cairn_store_be64(val, (uint64_t)i);
    for (int c = 0; c < S_COUNTERS; c++) {
        keys[c] = s_counter(c);
        ops[c] = (struct eng_op){ENG_OP_PUT, 1, NULL, keys[c].b, keys[c].n, val, 8};
    }
    keys[S_COUNTERS] = s_item(i);
    ops[S_COUNTERS] =
        (struct eng_op){ENG_OP_PUT, 1, NULL, keys[S_COUNTERS].b, keys[S_COUNTERS].n, val, 8};
    keys[S_COUNTERS + 1] = s_item(i - 3);
    ops[S_COUNTERS + 1] = (struct eng_op){
        ENG_OP_DELETE, 1, NULL, keys[S_COUNTERS + 1].b, keys[S_COUNTERS + 1].n, NULL, 0};
}

static void s_fail(void)
{
    atomic_fetch_add(&s_errors, 1);
}

static void *s_writer(void *arg)
{
    (void)arg;
    for (int i = 1; i <= S_COMMITS; i++) {
        struct eng_op ops[S_COUNTERS + 2];
        struct key keys[S_COUNTERS + 2];
        uint8_t val[8];
        struct eng_commit c;
        /* Flow control, as raft's cap on uncommitted entries. */
        while (i - atomic_load(&s_applied) > S_MAX_PENDING) {
            sched_yield();
        }
        s_commit(i, ops, keys, val);
        c = (struct eng_commit){S_TS(i), ops, S_COUNTERS + 2};
        if (eng_overlay_add(g_e, &c) != 0) {
            s_fail();
        }
        atomic_store(&s_added, i);
    }
    return NULL;
}

static void *s_applier(void *arg)
{
    unsigned seed = 777;
    cairn_index index = 0;
    int next = 1;

    (void)arg;
    while (next <= S_COMMITS) {
        struct eng_op ops[3][S_COUNTERS + 2];
        struct key keys[3][S_COUNTERS + 2];
        uint8_t vals[3][8];
        struct eng_commit cs[3];
        int n = 1 + (int)(rand_r(&seed) % 3), added;
        while ((added = atomic_load(&s_added)) < next) {
            sched_yield();
        }
        if (n > added - next + 1) {
            n = added - next + 1;
        }
        for (int j = 0; j < n; j++) {
            s_commit(next + j, ops[j], keys[j], vals[j]);
            cs[j] = (struct eng_commit){S_TS(next + j), ops[j], S_COUNTERS + 2};
        }
        if (eng_apply(g_e, cs, (size_t)n, ++index, NULL) != 0) {
            s_fail();
        }
        next += n;
        atomic_store(&s_applied, next - 1);
    }
    atomic_store(&s_done, 1);
    return NULL;
}

/* One snapshot must be exactly the prefix of commits up to its ts: every
 * counter equals the commit number i of its ts, items i-2..i are there and
 * no other, and it reflects at least what was published before it. */
static void s_check(bool local, bool scan_too, unsigned *seed)
{
    int floor = local ? atomic_load(&s_added) : atomic_load(&s_applied);
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct eng_snap *s;
    cairn_ts snap_ts, lts;
    int i;

    if (eng_snap_acquire(g_e, local, CAIRN_TS_MAX, &s, NULL) != 0) {
        s_fail();
        return;
    }
    snap_ts = eng_snap_ts(s);
    i = snap_ts == 0 ? 0 : (int)CAIRN_TS_SECS(snap_ts) - 100;
    if (i < floor || (snap_ts != 0 && snap_ts != S_TS(i))) {
        s_fail();
    }
    for (int c = 0; c < S_COUNTERS; c++) {
        struct key k = s_counter((c + (int)rand_r(seed)) % S_COUNTERS);
        cairn_ts vts;
        int rv;
        cairn_buf_reset(&b);
        rv = eng_snap_get_version(s, 1, k.b, k.n, &b, &vts, NULL);
        if (i == 0 ? rv != CAIRN_ENOTFOUND
                   : rv != 0 || b.len != 8 || cairn_load_be64(b.data) != (uint64_t)i ||
                         vts != S_TS(i)) {
            s_fail();
        }
    }
    if (scan_too) {
        struct eng_iter *it;
        const uint8_t *key, *doc;
        size_t kl, dl;
        int r, n_items = 0, n_counters = 0, min_item = 1 << 30;
        if (eng_iter_open(s, 1, NULL, 0, &it, NULL) != 0) {
            s_fail();
        } else {
            while ((r = eng_iter_next(it, &key, &kl, &doc, &dl)) == 1) {
                if (dl != 8) {
                    s_fail();
                } else if (key[0] == 'c') {
                    n_counters += cairn_load_be64(doc) == (uint64_t)i;
                } else {
                    int item = (int)cairn_load_be64(doc);
                    n_items++;
                    min_item = item < min_item ? item : min_item;
                }
            }
            if (r != 0 || (i > 0 && n_counters != S_COUNTERS) || n_items != (i < 3 ? i : 3) ||
                (i > 0 && min_item != (i < 3 ? 1 : i - 2))) {
                s_fail();
            }
            eng_iter_close(it);
        }
    }
    /* The writers' view is at least as new as this snapshot. */
    {
        struct key k = s_counter(0);
        int rv = eng_latest(g_e, 1, k.b, k.n, NULL, &lts, NULL);
        if (rv != 0 && rv != CAIRN_ENOTFOUND) {
            s_fail();
        }
        if (snap_ts > 0 && (rv != 0 || lts < snap_ts)) {
            s_fail();
        }
        if (eng_visible_ts(g_e) < snap_ts) {
            s_fail();
        }
    }
    cairn_buf_free(&b);
    eng_snap_release(s);
    atomic_fetch_add(&s_checks, 1);
}

static void *s_reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    long n = 0;

    while (!atomic_load(&s_done)) {
        s_check(n % 4 != 0, n % 8 == 0, &seed);
        n++;
    }
    s_check(true, true, &seed);
    s_check(false, true, &seed);
    return NULL;
}

/* Concurrent adds (one writer), applies (one applier, entries of 1..3
 * commits) and readers: every local or committed snapshot is a consistent
 * prefix, never older than what was published before it. */
static void s_run(size_t seg_max_nodes)
{
    pthread_t w, a, r[S_READERS];

    if (seg_max_nodes != 0) {
        g_e->ovl.seg_max_nodes = seg_max_nodes;
    }
    atomic_store(&s_added, 0);
    atomic_store(&s_applied, 0);
    atomic_store(&s_done, 0);
    atomic_store(&s_errors, 0);
    atomic_store(&s_checks, 0);
    for (int i = 0; i < S_READERS; i++) {
        ck_assert_int_eq(pthread_create(&r[i], NULL, s_reader, (void *)(uintptr_t)(i + 1)), 0);
    }
    ck_assert_int_eq(pthread_create(&a, NULL, s_applier, NULL), 0);
    ck_assert_int_eq(pthread_create(&w, NULL, s_writer, NULL), 0);
    pthread_join(w, NULL);
    pthread_join(a, NULL);
    for (int i = 0; i < S_READERS; i++) {
        pthread_join(r[i], NULL);
    }
    ck_assert_int_eq(atomic_load(&s_errors), 0);
    ck_assert_int_ge(atomic_load(&s_checks), 2 * S_READERS);
    ck_assert_uint_eq(eng_overlay_size(g_e), 0);
}

START_TEST(test_stress_consistent_prefix)
{
    s_run(0);
}
END_TEST

/* With small segments, sealing and retiring race with captures too. */
START_TEST(test_stress_small_segments)
{
    s_run(20);
}
END_TEST

static Suite *overlay_suite(void)
{
    Suite *s = suite_create("overlay");
    TCase *tc = tcase_create("core");
    TCase *views = tcase_create("views");
    TCase *segs = tcase_create("segments");
    TCase *cost = tcase_create("cost");
    TCase *model = tcase_create("model");
    TCase *stress = tcase_create("stress");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_local_vs_committed);
    tcase_add_test(tc, test_overlay_versions_per_key);
    tcase_add_test(tc, test_trim_without_gap);
    tcase_add_test(tc, test_discard);
    tcase_add_test(tc, test_discard_from);
    tcase_add_test(tc, test_pending_catalog);
    tcase_add_test(tc, test_overlay_rejects_bad_ops);
    tcase_add_test(tc, test_zero_op_commits);
    tcase_add_test(tc, test_overlay_ignores_session_ops);
    tcase_add_test(tc, test_concurrent_apply_and_read);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(views, setup, teardown);
    tcase_set_timeout(views, 60);
    tcase_add_test(views, test_latest_and_versions);
    tcase_add_test(views, test_rocks_newer_than_captured_overlay);
    tcase_add_test(views, test_rocks_newer_in_snapshot_window);
    tcase_add_test(views, test_stale_overlay_versions_ignored);
    tcase_add_test(views, test_snapshot_mid_apply);
    suite_add_tcase(s, views);

    tcase_add_checked_fixture(segs, setup, teardown);
    tcase_set_timeout(segs, 60);
    tcase_add_test(segs, test_trim_retires_segments);
    tcase_add_test(segs, test_trim_during_add_keeps_active_segment);
    tcase_add_test(segs, test_discard_from_many_segments);
    suite_add_tcase(s, segs);

    tcase_add_checked_fixture(cost, setup, teardown);
    tcase_set_timeout(cost, 120);
    tcase_add_test(cost, test_add_cost_is_logarithmic);
    tcase_add_test(cost, test_add_cost_one_big_segment);
    suite_add_tcase(s, cost);

    tcase_add_checked_fixture(model, setup, teardown);
    tcase_set_timeout(model, 120);
    tcase_add_test(model, test_model_default_segments);
    tcase_add_test(model, test_model_tiny_segments);
    suite_add_tcase(s, model);

    tcase_add_checked_fixture(stress, setup, teardown);
    tcase_set_timeout(stress, 240);
    tcase_add_test(stress, test_stress_consistent_prefix);
    tcase_add_test(stress, test_stress_small_segments);
    suite_add_tcase(s, stress);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(overlay_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
