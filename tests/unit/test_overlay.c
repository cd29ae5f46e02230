/*
 * test_overlay.c: unit tests of the engine's overlay: local versus
 * committed snapshots, read_ts filtering of staged versions, pending
 * catalog changes, trimming by eng_apply without a visibility gap,
 * discard, and a concurrent applier/reader stress test.
 */
#include <check.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"

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

static Suite *overlay_suite(void)
{
    Suite *s = suite_create("overlay");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_local_vs_committed);
    tcase_add_test(tc, test_overlay_versions_per_key);
    tcase_add_test(tc, test_trim_without_gap);
    tcase_add_test(tc, test_discard);
    tcase_add_test(tc, test_discard_from);
    tcase_add_test(tc, test_pending_catalog);
    tcase_add_test(tc, test_overlay_rejects_bad_ops);
    tcase_add_test(tc, test_concurrent_apply_and_read);
    suite_add_tcase(s, tc);
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
