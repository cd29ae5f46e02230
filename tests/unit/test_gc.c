/*
 * test_gc.c: unit tests of the garbage collection of old MVCC versions by
 * the docs compaction filter: versions collapse to the newest one below the
 * horizon, tombstones that are V0 stay, live snapshots and the history
 * window protect versions (RocksDB snapshots alone would not: 7.8 ignores
 * them in compaction filters), documents and collections never interfere,
 * and the default column family is never filtered. White-box: includes
 * engine_int.h to compact the default column family directly.
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
#include "engine/engine_int.h"
#include "lib/clock.h"

#include "engine_fixture.h"

static void setup(void)
{
    engine_fixture_setup("gc");
}

/* Raw keys: the engine treats encoded _ids as opaque bytes, so tests use
 * the text itself (no terminator) to get keys that are byte-prefixes of
 * each other. */
static void apply_op(cairn_index idx, cairn_ts ts, const struct eng_op *op)
{
    struct eng_commit c = {ts, op, 1};
    struct cairn_error err = {0};
    int rv = eng_apply(g_e, &c, 1, idx, &err);
    ck_assert_msg(rv == 0, "eng_apply: %s", err.msg);
}

static void put(cairn_index idx, cairn_ts ts, uint64_t coll, const char *key, const char *doc)
{
    struct eng_op op = {ENG_OP_PUT,           coll,       NULL, (const uint8_t *)key, strlen(key),
                        (const uint8_t *)doc, strlen(doc)};
    apply_op(idx, ts, &op);
}

static void del(cairn_index idx, cairn_ts ts, uint64_t coll, const char *key)
{
    struct eng_op op = {ENG_OP_DELETE, coll, NULL, (const uint8_t *)key, strlen(key), NULL, 0};
    apply_op(idx, ts, &op);
}

/* Reads (coll, key) through `s` into a static buffer; NULL when absent. */
static const char *snap_get(struct eng_snap *s, uint64_t coll, const char *key)
{
    static char out[256];
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    int rv = eng_snap_get(s, coll, (const uint8_t *)key, strlen(key), &b, &err);

    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_msg(rv == 0, "eng_snap_get: %s", err.msg);
    ck_assert_uint_lt(b.len, sizeof out);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

static struct eng_snap *snap(cairn_ts read_ts)
{
    struct eng_snap *s = NULL;
    struct cairn_error err = {0};
    ck_assert_int_eq(eng_snap_acquire(g_e, false, read_ts, &s, &err), 0);
    return s;
}

static const char *get_at(uint64_t coll, const char *key, cairn_ts read_ts)
{
    struct eng_snap *s = snap(read_ts);
    const char *r = snap_get(s, coll, key);
    eng_snap_release(s);
    return r;
}

/* Number of visible documents of `coll` at read_ts. */
static size_t count_docs(uint64_t coll, cairn_ts read_ts)
{
    struct eng_snap *s = snap(read_ts);
    struct eng_iter *it = NULL;
    struct cairn_error err = {0};
    const uint8_t *k, *d;
    size_t kl, dl, n = 0;
    int r;

    ck_assert_int_eq(eng_iter_open(s, coll, NULL, 0, &it, &err), 0);
    while ((r = eng_iter_next(it, &k, &kl, &d, &dl)) == 1) {
        n++;
    }
    ck_assert_int_eq(r, 0);
    eng_iter_close(it);
    eng_snap_release(s);
    return n;
}

static size_t versions(uint64_t coll, const char *key)
{
    struct cairn_error err = {0};
    size_t n = 99999;
    int rv = eng_debug_count_versions(g_e, coll, (const uint8_t *)key,
                                      key != NULL ? strlen(key) : 0, &n, &err);
    ck_assert_msg(rv == 0, "count: %s", err.msg);
    return n;
}

static void compact(void)
{
    struct cairn_error err = {0};
    int rv = eng_compact(g_e, &err);
    ck_assert_msg(rv == 0, "eng_compact: %s", err.msg);
}

#define TS(s) CAIRN_TS((s), 1)

START_TEST(test_versions_collapse)
{
    char doc[32];

    eng_gc_set_history_secs(g_e, 0);
    for (int i = 0; i < 50; i++) {
        snprintf(doc, sizeof doc, "v%d", i);
        put((cairn_index)i + 1, TS(100 + i), 1, "doc", doc);
    }
    put(51, TS(200), 1, "other", "o0");
    put(52, TS(201), 1, "other", "o1");
    ck_assert_uint_eq(versions(1, "doc"), 50);
    ck_assert_uint_eq(versions(1, NULL), 52);
    ck_assert_str_eq(get_at(1, "doc", TS(110)), "v10");
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(201));

    compact();
    ck_assert_uint_eq(versions(1, "doc"), 1);
    ck_assert_uint_eq(versions(1, "other"), 1);
    ck_assert_uint_eq(versions(1, NULL), 2);
    ck_assert_str_eq(get_at(1, "doc", CAIRN_TS_MAX), "v49");
    ck_assert_str_eq(get_at(1, "doc", TS(149)), "v49");
    ck_assert_str_eq(get_at(1, "other", CAIRN_TS_MAX), "o1");
    ck_assert_uint_eq(count_docs(1, CAIRN_TS_MAX), 2);
    /* Older versions are gone; the floor tells readers so. */
    ck_assert_ptr_null(get_at(1, "doc", TS(110)));
    ck_assert_uint_ge(eng_gc_floor(g_e), TS(201));

    /* Compacting again changes nothing; the state survives reopen. */
    compact();
    ck_assert_uint_eq(versions(1, NULL), 2);
    reopen();
    ck_assert_uint_eq(versions(1, NULL), 2);
    ck_assert_str_eq(get_at(1, "doc", CAIRN_TS_MAX), "v49");
    ck_assert_str_eq(get_at(1, "other", CAIRN_TS_MAX), "o1");

    /* New versions after a compaction collapse again. */
    eng_gc_set_history_secs(g_e, 0);
    put(53, TS(300), 1, "doc", "v50");
    put(54, TS(301), 1, "doc", "v51");
    ck_assert_uint_eq(versions(1, "doc"), 3);
    compact();
    ck_assert_uint_eq(versions(1, "doc"), 1);
    ck_assert_str_eq(get_at(1, "doc", CAIRN_TS_MAX), "v51");
}
END_TEST

START_TEST(test_tombstone_v0_kept)
{
    char doc[32];

    eng_gc_set_history_secs(g_e, 0);
    for (int i = 0; i < 10; i++) {
        snprintf(doc, sizeof doc, "v%d", i);
        put((cairn_index)i + 1, TS(10 + i), 1, "gone", doc);
    }
    del(11, TS(30), 1, "gone");
    put(12, TS(31), 1, "alive", "a");
    ck_assert_uint_eq(versions(1, "gone"), 11);

    compact();
    /* The tombstone is V0: it stays, everything older goes. */
    ck_assert_uint_eq(versions(1, "gone"), 1);
    ck_assert_ptr_null(get_at(1, "gone", CAIRN_TS_MAX));
    ck_assert_ptr_null(get_at(1, "gone", TS(30)));
    ck_assert_uint_eq(count_docs(1, CAIRN_TS_MAX), 1);
    ck_assert_str_eq(get_at(1, "alive", CAIRN_TS_MAX), "a");

    compact();
    reopen();
    ck_assert_uint_eq(versions(1, "gone"), 1);
    ck_assert_ptr_null(get_at(1, "gone", CAIRN_TS_MAX));
    ck_assert_uint_eq(count_docs(1, CAIRN_TS_MAX), 1);

    /* Re-created after the delete: the tombstone is now older than V0 and
     * is collected like any other version. */
    eng_gc_set_history_secs(g_e, 0);
    put(13, TS(40), 1, "gone", "back");
    ck_assert_uint_eq(versions(1, "gone"), 2);
    compact();
    ck_assert_uint_eq(versions(1, "gone"), 1);
    ck_assert_str_eq(get_at(1, "gone", CAIRN_TS_MAX), "back");
    ck_assert_uint_eq(count_docs(1, CAIRN_TS_MAX), 2);

    /* Deleted twice in a row: only the newest tombstone stays. */
    del(14, TS(50), 1, "alive");
    del(15, TS(51), 1, "alive");
    compact();
    ck_assert_uint_eq(versions(1, "alive"), 1);
    ck_assert_ptr_null(get_at(1, "alive", CAIRN_TS_MAX));
    ck_assert_uint_eq(count_docs(1, CAIRN_TS_MAX), 1);
}
END_TEST

START_TEST(test_live_snapshot_protects)
{
    struct eng_snap *old, *fresh;

    eng_gc_set_history_secs(g_e, 0);
    put(1, TS(10), 1, "d", "v1");
    put(2, TS(20), 1, "d", "v2");
    old = snap(CAIRN_TS_MAX); /* reads at applied ts 20 */
    ck_assert_uint_eq(eng_snap_ts(old), TS(20));
    put(3, TS(30), 1, "d", "v3");
    put(4, TS(40), 1, "d", "v4");
    put(5, TS(50), 1, "d", "v5");
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(20));

    /* A full compaction with the RocksDB snapshot of `old` alive: only the
     * engine's registry keeps v2 (RocksDB ignores its own snapshots). */
    compact();
    ck_assert_str_eq(snap_get(old, 1, "d"), "v2");
    ck_assert_uint_eq(versions(1, "d"), 4); /* v2 (V0), v3, v4, v5 */
    fresh = snap(CAIRN_TS_MAX);
    ck_assert_str_eq(snap_get(fresh, 1, "d"), "v5");
    eng_snap_release(fresh);
    ck_assert_str_eq(snap_get(old, 1, "d"), "v2");

    eng_snap_release(old);
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(50));
    compact();
    ck_assert_uint_eq(versions(1, "d"), 1);
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS_MAX), "v5");
}
END_TEST

START_TEST(test_explicit_read_ts_and_shared_points)
{
    struct eng_snap *a, *b, *c;

    eng_gc_set_history_secs(g_e, 0);
    for (int i = 1; i <= 6; i++) {
        char doc[16];
        snprintf(doc, sizeof doc, "v%d", i);
        put((cairn_index)i, TS(i * 10), 1, "d", doc);
    }
    /* An explicit read_ts below the applied ts is the read point. */
    a = snap(TS(35));
    b = snap(TS(35));
    c = snap(TS(50));
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(35));
    compact();
    ck_assert_uint_eq(versions(1, "d"), 4); /* v3 (V0 for 35), v4, v5, v6 */
    ck_assert_str_eq(snap_get(a, 1, "d"), "v3");
    ck_assert_str_eq(snap_get(b, 1, "d"), "v3");
    ck_assert_str_eq(snap_get(c, 1, "d"), "v5");

    /* Two snapshots share the point: releasing one keeps it. */
    eng_snap_release(a);
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(35));
    compact();
    ck_assert_uint_eq(versions(1, "d"), 4);
    ck_assert_str_eq(snap_get(b, 1, "d"), "v3");

    eng_snap_release(b);
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(50));
    compact();
    ck_assert_uint_eq(versions(1, "d"), 2); /* v5, v6 */
    ck_assert_str_eq(snap_get(c, 1, "d"), "v5");

    eng_snap_release(c);
    compact();
    ck_assert_uint_eq(versions(1, "d"), 1);
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS_MAX), "v6");

    /* A read_ts above the applied ts reads at the applied ts. */
    a = snap(TS(1000));
    put(7, TS(70), 1, "d", "v7");
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(60));
    compact();
    ck_assert_uint_eq(versions(1, "d"), 2);
    ck_assert_str_eq(snap_get(a, 1, "d"), "v6");
    eng_snap_release(a);
}
END_TEST

START_TEST(test_history_window)
{
    char doc[32];

    /* Default window: 300 s of cluster time behind the applied ts. */
    for (int i = 0; i < 10; i++) {
        snprintf(doc, sizeof doc, "v%d", i);
        put((cairn_index)i + 1, CAIRN_TS(1000 + 100 * i, 1), 1, "d", doc);
    }
    ck_assert_uint_eq(eng_gc_horizon(g_e), CAIRN_TS(1600, 1));
    compact();
    /* 1700, 1800, 1900 are inside the window; 1600 is V0. */
    ck_assert_uint_eq(versions(1, "d"), 4);
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS(1600, 1)), "v6");
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS(1650, 0)), "v6");
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS(1700, 1)), "v7");
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS(1899, 0)), "v8");
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS_MAX), "v9");
    ck_assert_ptr_null(get_at(1, "d", CAIRN_TS(1600, 0)));

    /* A window of 1000 s keeps everything up to applied - 1000. */
    eng_gc_set_history_secs(g_e, 1000);
    put(11, CAIRN_TS(2000, 1), 1, "d", "v10");
    ck_assert_uint_eq(eng_gc_horizon(g_e), CAIRN_TS(1000, 1));
    compact();
    ck_assert_uint_eq(versions(1, "d"), 5);

    /* Shrinking it collects more. */
    eng_gc_set_history_secs(g_e, 150);
    ck_assert_uint_eq(eng_gc_horizon(g_e), CAIRN_TS(1850, 1));
    compact();
    ck_assert_uint_eq(versions(1, "d"), 3); /* 1800 (V0), 1900, 2000 */
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS(1850, 1)), "v8");
    ck_assert_uint_eq(eng_gc_floor(g_e), CAIRN_TS(1850, 1));

    /* After a restart the floor is applied - the default window. */
    reopen();
    ck_assert_uint_eq(eng_gc_floor(g_e), CAIRN_TS(1700, 1));
    ck_assert_uint_eq(eng_gc_horizon(g_e), CAIRN_TS(1700, 1));
    ck_assert_uint_eq(versions(1, "d"), 3);
}
END_TEST

START_TEST(test_window_larger_than_applied)
{
    /* applied ts (secs 50) is inside the window: nothing is collected. */
    for (int i = 0; i < 20; i++) {
        put((cairn_index)i + 1, TS(10 + 2 * i), 1, "d", "x");
    }
    ck_assert_uint_eq(eng_gc_horizon(g_e), 0);
    compact();
    ck_assert_uint_eq(versions(1, "d"), 20);
}
END_TEST

/* Documents whose _id bytes are prefixes of each other, the same _id in
 * several collections: none counts as V0 of another. Pass 0 writes the raw
 * texts, which are NOT self-delimiting: the engine's readers require
 * self-delimiting keys, so that pass checks raw version counts only (the
 * filter itself must not depend on the encoding). Pass 1 writes the same
 * texts with a 0x01 terminator (prefix-free) into the same collections and
 * also reads them back. */
static const struct
{
    uint64_t coll;
    const char *key;
} g_iso[] = {
    {1, "a"},     {1, "ab"},   {1, "abc"},      {1, "b"},
    {2, "a"},     {2, "ab"},   {256, "a"},      {1, "a\xff\xff"},
    {1, "a\xff"}, {3, "\x02"}, {3, "\x02\x02"}, {0x0100000000000001ull, "a"},
};
#define N_ISO (sizeof g_iso / sizeof g_iso[0])

static void iso_key(size_t i, int pass, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", g_iso[i].key, pass == 1 ? "\x01" : "");
}

START_TEST(test_docs_and_collections_isolated)
{
    cairn_index idx = 1;
    char key[32], doc[64];

    eng_gc_set_history_secs(g_e, 0);
    /* Each document gets exactly one version, at increasing ts; the ones
     * at even positions then get a newer one. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N_ISO; i++) {
            iso_key(i, pass, key, sizeof key);
            snprintf(doc, sizeof doc, "p%d-%zu", pass, i);
            put(idx, TS(10 + idx), g_iso[i].coll, key, doc);
            idx++;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N_ISO; i += 2) {
            iso_key(i, pass, key, sizeof key);
            snprintf(doc, sizeof doc, "p%d-%zu-new", pass, i);
            put(idx, TS(10 + idx), g_iso[i].coll, key, doc);
            idx++;
        }
    }
    ck_assert_uint_eq(versions(1, NULL), 2 * (6 + 3));
    compact();
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N_ISO; i++) {
            iso_key(i, pass, key, sizeof key);
            ck_assert_msg(versions(g_iso[i].coll, key) == 1, "versions of pass %d doc %zu", pass,
                          i);
            if (pass == 1) {
                const char *got = get_at(g_iso[i].coll, key, CAIRN_TS_MAX);
                snprintf(doc, sizeof doc, "p1-%zu%s", i, i % 2 == 0 ? "-new" : "");
                ck_assert_msg(got != NULL && strcmp(got, doc) == 0, "%s: got %s", doc,
                              got ? got : "(none)");
            }
        }
    }
    ck_assert_uint_eq(versions(1, NULL), 12);
    ck_assert_uint_eq(versions(2, NULL), 4);
    ck_assert_uint_eq(versions(3, NULL), 4);
    ck_assert_uint_eq(versions(256, NULL), 2);
    ck_assert_uint_eq(versions(0x0100000000000001ull, NULL), 2);

    /* A tombstone in one collection does not hide the same _id elsewhere. */
    del(idx, TS(10 + idx), 2, "a\x01");
    idx++;
    compact();
    ck_assert_ptr_null(get_at(2, "a\x01", CAIRN_TS_MAX));
    ck_assert_uint_eq(versions(2, "a\x01"), 1);
    ck_assert_str_eq(get_at(1, "a\x01", CAIRN_TS_MAX), "p1-0-new");
    ck_assert_str_eq(get_at(256, "a\x01", CAIRN_TS_MAX), "p1-6-new");
    ck_assert_str_eq(get_at(2, "ab\x01", CAIRN_TS_MAX), "p1-5");
    ck_assert_uint_eq(versions(2, NULL), 4);
}
END_TEST

/* The default column family (catalog, watermark, meta) is never filtered,
 * even with keys that parse as old versions sharing a prefix. */
START_TEST(test_default_cf_untouched)
{
    struct eng_op create = {ENG_OP_CREATE, 7, "db.collection_with_a_long_name", NULL, 0, NULL, 0};
    struct cairn_error err = {0};
    struct cairn_buf b = CAIRN_BUF_INIT;
    /* "meta/gc" + 8 bytes that read as ~ts = 1, 2 and 3: same "prefix". */
    static const char *names[] = {"gc\xff\xff\xff\xff\xff\xff\xff\xfe",
                                  "gc\xff\xff\xff\xff\xff\xff\xff\xfd",
                                  "gc\xff\xff\xff\xff\xff\xff\xff\xfc"};
    cairn_index idx;
    cairn_ts ts;
    uint64_t id;

    eng_gc_set_history_secs(g_e, 0);
    apply_op(1, TS(5), &create);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(eng_meta_put(g_e, names[i], "m", 1, &err), 0);
    }
    for (int i = 0; i < 30; i++) {
        put((cairn_index)i + 2, TS(10 + i), 7, "d", "x");
    }
    compact();
    {
        /* Compact the default column family too, as RocksDB would. */
        rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
        rocksdb_compactoptions_set_bottommost_level_compaction(co, 2);
        rocksdb_compact_range_cf_opt(g_e->db, g_e->cf_default, co, NULL, 0, NULL, 0);
        rocksdb_compactoptions_destroy(co);
    }
    ck_assert_uint_eq(versions(7, "d"), 1);
    reopen();
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.collection_with_a_long_name", false, &id), 0);
    ck_assert_uint_eq(id, 7);
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 31);
    ck_assert_uint_eq(ts, TS(39));
    for (size_t i = 0; i < 3; i++) {
        cairn_buf_reset(&b);
        ck_assert_int_eq(eng_meta_get(g_e, names[i], &b, &err), 0);
        ck_assert_uint_eq(b.len, 1);
    }
    cairn_buf_free(&b);
    ck_assert_uint_ge(eng_catalog_next_id(g_e), 8);
    ck_assert_str_eq(get_at(7, "d", CAIRN_TS_MAX), "x");
}
END_TEST

/* Dropped collections: range-deleted versions and the filter coexist. */
START_TEST(test_drop_then_compact)
{
    struct eng_op create = {ENG_OP_CREATE, 9, "db.c", NULL, 0, NULL, 0};
    struct eng_op drop = {ENG_OP_DROP, 9, "db.c", NULL, 0, NULL, 0};

    eng_gc_set_history_secs(g_e, 0);
    apply_op(1, TS(1), &create);
    for (int i = 0; i < 10; i++) {
        put((cairn_index)i + 2, TS(10 + i), 9, "d", "x");
    }
    put(12, TS(30), 10, "d", "keep");
    apply_op(13, TS(40), &drop);
    compact();
    ck_assert_uint_eq(versions(9, NULL), 0);
    ck_assert_uint_eq(versions(10, NULL), 1);
    ck_assert_str_eq(get_at(10, "d", CAIRN_TS_MAX), "keep");
}
END_TEST

/* A snapshot taken while an apply is between its RocksDB write and the
 * publication of its watermark reads at the old applied ts, and registers
 * that read point: a compaction keeps what it reads although RocksDB
 * already holds the newer version. */
static struct eng_snap *g_mid;

static void take_mid_snapshot(void *arg, enum eng_debug_point point)
{
    (void)arg;
    if (point == ENG_DEBUG_APPLY_WRITTEN && g_mid == NULL) {
        g_mid = snap(CAIRN_TS_MAX);
    }
}

START_TEST(test_snapshot_mid_apply_protected)
{
    eng_gc_set_history_secs(g_e, 0);
    put(1, TS(10), 1, "d", "v1");
    put(2, TS(20), 1, "d", "v2");
    g_mid = NULL;
    eng_debug_set_hook(g_e, take_mid_snapshot, NULL);
    put(3, TS(30), 1, "d", "v3");
    eng_debug_set_hook(g_e, NULL, NULL);
    ck_assert_ptr_nonnull(g_mid);
    ck_assert_uint_eq(eng_snap_ts(g_mid), TS(20));
    ck_assert_uint_eq(eng_gc_horizon(g_e), TS(20));
    put(4, TS(40), 1, "d", "v4");
    compact();
    ck_assert_uint_eq(versions(1, "d"), 3); /* v2 (V0), v3, v4 */
    ck_assert_str_eq(snap_get(g_mid, 1, "d"), "v2");
    ck_assert_uint_eq(count_docs(1, CAIRN_TS_MAX), 1);
    eng_snap_release(g_mid);
    compact();
    ck_assert_uint_eq(versions(1, "d"), 1);
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS_MAX), "v4");
}
END_TEST

/* ---- Concurrency: snapshots, applies and compactions together ---------- */

#define STRESS_VERSIONS 400

/* The writer waits at its half-way point until the other threads have done
 * this much (so that both run while versions are being written, however the
 * scheduler treats them), at most STRESS_WAIT_NS. */
#define STRESS_MIN_COMPACTIONS 1
#define STRESS_MIN_READS 8
#define STRESS_WAIT_NS (30ull * 1000000000ull)

static atomic_bool g_stop;
static atomic_int g_bad;
static atomic_int g_compactions;
static atomic_int g_reads;
static atomic_bool g_wait_expired;

static void *writer_main(void *arg)
{
    (void)arg;
    for (int i = 1; i <= STRESS_VERSIONS; i++) {
        if (i == STRESS_VERSIONS / 2) {
            uint64_t deadline = cairn_mono_ns() + STRESS_WAIT_NS;
            while (atomic_load(&g_compactions) < STRESS_MIN_COMPACTIONS ||
                   atomic_load(&g_reads) < STRESS_MIN_READS) {
                if (cairn_mono_ns() > deadline) {
                    atomic_store(&g_wait_expired, true);
                    break;
                }
                usleep(1000);
            }
        }
        char doc[32];
        snprintf(doc, sizeof doc, "v%d", i);
        struct eng_op op = {ENG_OP_PUT,           1,          NULL, (const uint8_t *)"d", 1,
                            (const uint8_t *)doc, strlen(doc)};
        struct eng_commit c = {TS(i), &op, 1};
        struct cairn_error err = {0};
        if (eng_apply(g_e, &c, 1, (cairn_index)i, &err) != 0) {
            atomic_fetch_add(&g_bad, 1);
        }
        if (i % 50 == 0) {
            eng_flush(g_e, &err); /* more files, more compactions */
        }
        usleep(250);
    }
    atomic_store(&g_stop, true);
    return NULL;
}

static void *compactor_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_stop)) {
        struct cairn_error err = {0};
        if (eng_compact(g_e, &err) != 0) {
            atomic_fetch_add(&g_bad, 1);
        }
        atomic_fetch_add(&g_compactions, 1);
    }
    return NULL;
}

/* Reads doc "d" of collection 1 through a new iterator (a new RocksDB
 * iterator sees the files as they are now, after any compaction; the
 * snapshot's cached point-read iterator would pin older files). Returns 1
 * and copies the doc into `out`, 0 when absent, -1 on error. */
static int iter_read_d(struct eng_snap *s, char *out, size_t cap)
{
    struct eng_iter *it = NULL;
    struct cairn_error err = {0};
    const uint8_t *k, *d;
    size_t kl, dl;
    int r;

    if (eng_iter_open(s, 1, NULL, 0, &it, &err) != 0) {
        return -1;
    }
    r = eng_iter_next(it, &k, &kl, &d, &dl);
    if (r == 1) {
        if (kl != 1 || k[0] != 'd' || dl >= cap) {
            r = -1;
        } else {
            memcpy(out, d, dl);
            out[dl] = '\0';
        }
    }
    eng_iter_close(it);
    return r;
}

/* Each snapshot must read exactly the version of its applied ts, before
 * and after compactions that ran while it was alive. */
static void *reader_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_stop)) {
        struct eng_snap *s = NULL;
        struct cairn_error err = {0};
        char want[32], got[32];

        if (eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &s, &err) != 0) {
            atomic_fetch_add(&g_bad, 1);
            return NULL;
        }
        cairn_ts ts = eng_snap_ts(s);
        snprintf(want, sizeof want, "v%u", CAIRN_TS_SECS(ts));
        for (int round = 0; round < 4; round++) {
            int r = iter_read_d(s, got, sizeof got);
            if (ts == 0 ? r != 0 : (r != 1 || strcmp(got, want) != 0)) {
                atomic_fetch_add(&g_bad, 1);
            }
            atomic_fetch_add(&g_reads, 1);
            usleep(3000);
        }
        eng_snap_release(s);
    }
    return NULL;
}

START_TEST(test_concurrent_snapshots_and_compactions)
{
    pthread_t w, c, r1, r2;

    eng_gc_set_history_secs(g_e, 0);
    atomic_store(&g_stop, false);
    atomic_store(&g_bad, 0);
    atomic_store(&g_compactions, 0);
    atomic_store(&g_reads, 0);
    atomic_store(&g_wait_expired, false);
    ck_assert_int_eq(pthread_create(&r1, NULL, reader_main, NULL), 0);
    ck_assert_int_eq(pthread_create(&r2, NULL, reader_main, NULL), 0);
    ck_assert_int_eq(pthread_create(&c, NULL, compactor_main, NULL), 0);
    ck_assert_int_eq(pthread_create(&w, NULL, writer_main, NULL), 0);
    pthread_join(w, NULL);
    pthread_join(c, NULL);
    pthread_join(r1, NULL);
    pthread_join(r2, NULL);
    ck_assert_int_eq(atomic_load(&g_bad), 0);
    ck_assert_msg(!atomic_load(&g_wait_expired),
                  "after 30 s the readers and compactor had done %d reads and %d compactions "
                  "(the writer waits for %d and %d)",
                  atomic_load(&g_reads), atomic_load(&g_compactions), STRESS_MIN_READS,
                  STRESS_MIN_COMPACTIONS);
    ck_assert_int_ge(atomic_load(&g_compactions), 1);
    ck_assert_int_ge(atomic_load(&g_reads), 8);
    compact();
    ck_assert_uint_eq(versions(1, "d"), 1);
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS_MAX), "v400");
}
END_TEST

static Suite *gc_suite(void)
{
    Suite *s = suite_create("gc");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_versions_collapse);
    tcase_add_test(tc, test_tombstone_v0_kept);
    tcase_add_test(tc, test_live_snapshot_protects);
    tcase_add_test(tc, test_explicit_read_ts_and_shared_points);
    tcase_add_test(tc, test_history_window);
    tcase_add_test(tc, test_window_larger_than_applied);
    tcase_add_test(tc, test_docs_and_collections_isolated);
    tcase_add_test(tc, test_default_cf_untouched);
    tcase_add_test(tc, test_drop_then_compact);
    tcase_add_test(tc, test_snapshot_mid_apply_protected);
    tcase_add_test(tc, test_concurrent_snapshots_and_compactions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gc_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
