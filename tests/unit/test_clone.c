/*
 * test_clone.c: unit tests of checkpoints (src/engine/clone.c): a clone of
 * one engine installed into another holds every column family (documents
 * with their versions and tombstones, catalog, id counter, session
 * records, watermark) and keeps the target's own metadata; chunks resume
 * and repeat; a malformed chunk is refused; an install interrupted before
 * finish opens empty after a restart.
 */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

#include "engine_fixture.h"

/* ---- Fixture: g_e (source, from engine_fixture.h) and a target --------- */

static char t_dir[64];
static struct eng *t_e;

static void open_target(void)
{
    struct cairn_error err = {0};
    int rv = eng_open(t_dir, &t_e, &err);
    ck_assert_msg(rv == 0, "eng_open target: %s", err.msg);
}

static void setup(void)
{
    engine_fixture_setup("clone");
    snprintf(t_dir, sizeof t_dir, "/tmp/cairn-test-clonet-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t_dir));
    open_target();
}

static void teardown_all(void)
{
    eng_close(t_e);
    t_e = NULL;
    nftw(t_dir, engine_fixture_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    teardown();
}

/* ---- Helpers ------------------------------------------------------------- */

static void apply_ops(struct eng *e,
                      cairn_index idx,
                      cairn_ts ts,
                      const struct eng_op *ops,
                      size_t n)
{
    struct eng_commit c = {ts, ops, n};
    struct cairn_error err = {0};
    int rv = eng_apply(e, &c, 1, idx, &err);
    ck_assert_msg(rv == 0, "eng_apply: %s", err.msg);
}

static struct eng_op op_put(uint64_t coll, const char *key, const char *doc)
{
    struct eng_op op = {
        ENG_OP_PUT,           coll,       NULL, (const uint8_t *)key, strlen(key) + 1,
        (const uint8_t *)doc, strlen(doc)};
    return op;
}

static struct eng_op op_del(uint64_t coll, const char *key)
{
    struct eng_op op = {ENG_OP_DELETE, coll, NULL, (const uint8_t *)key, strlen(key) + 1, NULL, 0};
    return op;
}

static struct eng_op op_create(uint64_t coll, const char *ns)
{
    struct eng_op op = {ENG_OP_CREATE, coll, ns, NULL, 0, NULL, 0};
    return op;
}

static struct eng_op op_sess(const char *key, const char *rec)
{
    struct eng_op op = {ENG_OP_SESSION,       0,          NULL, (const uint8_t *)key, strlen(key),
                        (const uint8_t *)rec, strlen(rec)};
    return op;
}

/* The document (coll, key) at read_ts in `e`, as a static string, or NULL. */
static const char *get_at(struct eng *e, uint64_t coll, const char *key, cairn_ts read_ts)
{
    static char out[256];
    struct eng_snap *s;
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    int rv;

    ck_assert_int_eq(eng_snap_acquire(e, false, read_ts, &s, &err), 0);
    rv = eng_snap_get(s, coll, (const uint8_t *)key, strlen(key) + 1, &b, &err);
    eng_snap_release(s);
    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_msg(rv == 0, "get: %s", err.msg);
    ck_assert_uint_lt(b.len, sizeof out);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

static const char *sess_get(struct eng *e, const char *key)
{
    static char out[256];
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    int rv = eng_session_get(e, (const uint8_t *)key, strlen(key), &b, NULL, &err);

    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_int_eq(rv, 0);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

static const char *meta_get(struct eng *e, const char *name)
{
    static char out[256];
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    int rv = eng_meta_get(e, name, &b, &err);

    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_int_eq(rv, 0);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

/* Source state: two collections, versions, a tombstone, sessions, meta. */
static void fill_source(void)
{
    struct cairn_error err = {0};
    struct eng_op a[3] = {op_create(1, "db.a"), op_create(2, "db.b"), op_sess("lsid-1", "r1")};
    apply_ops(g_e, 1, 10, a, 3);
    for (int i = 0; i < 200; i++) {
        char k[16], d[32];
        snprintf(k, sizeof k, "k%03d", i);
        snprintf(d, sizeof d, "doc-%d-v1", i);
        struct eng_op o = op_put(i % 2 ? 1 : 2, k, d);
        apply_ops(g_e, 2 + (cairn_index)i, 20 + (cairn_ts)i, &o, 1);
    }
    {
        struct eng_op o[3] = {op_put(1, "k001", "doc-1-v2"), op_del(2, "k000"),
                              op_sess("lsid-2", "r2")};
        apply_ops(g_e, 300, 400, o, 3);
    }
    ck_assert_int_eq(eng_meta_put(g_e, "rsconfig", "source-config", 13, &err), 0);
}

/* Copies g_e into t_e with chunks of at most `chunk` bytes; returns the
 * number of chunks. */
static int copy_all(size_t chunk, uint64_t *n_keys)
{
    struct eng_clone *c;
    struct cairn_error err = {0};
    struct cairn_buf pos = CAIRN_BUF_INIT, out = CAIRN_BUF_INIT;
    cairn_index index;
    cairn_ts ts;
    bool done = false;
    int n = 0;

    ck_assert_int_eq(eng_clone_open(g_e, &c, &index, &ts, &err), 0);
    ck_assert_int_eq(eng_install_begin(t_e, &err), 0);
    while (!done) {
        cairn_buf_reset(&out);
        ck_assert_int_eq(eng_clone_next(c, pos.data, pos.len, chunk, &out, &done, &err), 0);
        ck_assert(done || out.len > 0);
        ck_assert_int_eq(eng_install_put(t_e, out.data, out.len, n_keys, &err), 0);
        ck_assert_int_eq(eng_clone_chunk_position(out.data, out.len, &pos, &err), 0);
        n++;
    }
    ck_assert_int_eq(eng_install_finish(t_e, index, ts, &err), 0);
    eng_clone_close(c);
    cairn_buf_free(&pos);
    cairn_buf_free(&out);
    return n;
}

/* ---- Tests ----------------------------------------------------------------- */

/* A checkpoint installed in small chunks holds every column family of the
 * source, replaces the target's data, keeps the target's metadata, and
 * the target then applies the entries that follow. */
START_TEST(test_clone_round_trip_all_column_families)
{
    struct cairn_error err = {0};
    cairn_index index;
    cairn_ts ts;
    uint64_t id, n_keys = 0;
    int chunks;

    fill_source();
    {
        struct eng_op o[2] = {op_create(7, "db.old"), op_put(7, "x", "target-only")};
        apply_ops(t_e, 1, 5, o, 2);
    }
    ck_assert_int_eq(eng_meta_put(t_e, "rsconfig", "target-config", 13, &err), 0);

    chunks = copy_all(256, &n_keys);
    ck_assert_int_gt(chunks, 10);
    ck_assert_uint_ge(n_keys, 203); /* 202 versions + catalog + sessions + counters */

    eng_applied(t_e, &index, &ts);
    ck_assert_uint_eq(index, 300);
    ck_assert_uint_eq(ts, 400);
    ck_assert(!eng_install_active(t_e));
    ck_assert_int_eq(eng_catalog_lookup(t_e, "db.a", false, &id), 0);
    ck_assert_uint_eq(id, 1);
    ck_assert_int_eq(eng_catalog_lookup(t_e, "db.b", false, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup(t_e, "db.old", false, &id), CAIRN_ENOTFOUND);
    ck_assert_ptr_null(get_at(t_e, 7, "x", CAIRN_TS_MAX));
    ck_assert_str_eq(get_at(t_e, 1, "k001", CAIRN_TS_MAX), "doc-1-v2");
    ck_assert_str_eq(get_at(t_e, 1, "k001", 100), "doc-1-v1"); /* older versions too */
    ck_assert_ptr_null(get_at(t_e, 2, "k000", CAIRN_TS_MAX));  /* the tombstone */
    ck_assert_str_eq(get_at(t_e, 2, "k000", 100), "doc-0-v1");
    for (int i = 0; i < 200; i += 37) {
        char k[16], d[32];
        snprintf(k, sizeof k, "k%03d", i);
        snprintf(d, sizeof d, "doc-%d-v1", i);
        if (i != 0 && i != 1) {
            ck_assert_str_eq(get_at(t_e, i % 2 ? 1 : 2, k, CAIRN_TS_MAX), d);
        }
    }
    ck_assert_str_eq(sess_get(t_e, "lsid-1"), "r1");
    ck_assert_str_eq(sess_get(t_e, "lsid-2"), "r2");
    ck_assert_str_eq(meta_get(t_e, "rsconfig"), "target-config");
    ck_assert_uint_gt(eng_catalog_next_id(t_e), 7); /* ids are never reused */

    /* The next entry applies on top; a replayed one is skipped. */
    {
        struct eng_op o = op_put(1, "k003", "after");
        apply_ops(t_e, 301, 401, &o, 1);
        apply_ops(t_e, 300, 400, &o, 1);
    }
    ck_assert_str_eq(get_at(t_e, 1, "k003", CAIRN_TS_MAX), "after");

    /* All of it survives a restart. */
    eng_close(t_e);
    open_target();
    eng_applied(t_e, &index, NULL);
    ck_assert_uint_eq(index, 301);
    ck_assert_str_eq(get_at(t_e, 1, "k001", CAIRN_TS_MAX), "doc-1-v2");
    ck_assert_str_eq(sess_get(t_e, "lsid-2"), "r2");
}
END_TEST

/* Document versions applied after the clone opened are not in it (the log
 * brings them), member-local metadata never is, and asking for the same
 * position twice answers the same records. */
START_TEST(test_clone_stops_at_its_watermark_and_repeats)
{
    struct eng_clone *c;
    struct cairn_error err = {0};
    struct cairn_buf a = CAIRN_BUF_INIT, b = CAIRN_BUF_INIT;
    cairn_index index;
    bool done;

    fill_source();
    ck_assert_int_eq(eng_clone_open(g_e, &c, &index, NULL, &err), 0);
    ck_assert_uint_eq(index, 300);
    {
        struct eng_op o = op_put(1, "late", "late");
        apply_ops(g_e, 301, 500, &o, 1);
    }
    ck_assert_int_eq(eng_clone_next(c, NULL, 0, 100, &a, &done, &err), 0);
    ck_assert_int_eq(eng_clone_next(c, NULL, 0, 100, &b, &done, &err), 0);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert_int_eq(memcmp(a.data, b.data, a.len), 0);
    cairn_buf_reset(&a);
    ck_assert_int_eq(eng_clone_next(c, NULL, 0, SIZE_MAX, &a, &done, &err), 0);
    ck_assert(done);
    ck_assert_ptr_null(memmem(a.data, a.len, "late", 5));
    ck_assert_ptr_null(memmem(a.data, a.len, "source-config", 13)); /* meta stays home */
    {
        uint8_t bad = 9;
        ck_assert_int_eq(eng_clone_next(c, &bad, 1, 100, &b, &done, &err), CAIRN_EINVAL);
    }
    eng_clone_close(c);
    eng_clone_close(NULL);
    cairn_buf_free(&a);
    cairn_buf_free(&b);
}
END_TEST

/* A malformed chunk writes nothing; puts need a begun install; applies are
 * refused while an install runs. */
START_TEST(test_install_refuses_bad_chunks_and_applies)
{
    struct cairn_error err = {0};
    const uint8_t trunc[] = {1, 0, 0, 0, 9, 'a'};
    const uint8_t badcf[] = {7, 0, 0, 0, 1, 'a', 0, 0, 0, 0};
    uint64_t n = 0;

    ck_assert_int_eq(eng_install_put(t_e, badcf, sizeof badcf, &n, &err), CAIRN_ESTATE);
    ck_assert_int_eq(eng_install_begin(t_e, &err), 0);
    ck_assert(eng_install_active(t_e));
    ck_assert_int_eq(eng_install_put(t_e, trunc, sizeof trunc, &n, &err), CAIRN_ECORRUPT);
    ck_assert_int_eq(eng_install_put(t_e, badcf, sizeof badcf, &n, &err), CAIRN_ECORRUPT);
    ck_assert_uint_eq(n, 0);
    {
        struct eng_op o = op_put(1, "a", "b");
        struct eng_commit cm = {10, &o, 1};
        ck_assert_int_eq(eng_apply(t_e, &cm, 1, 1, &err), CAIRN_ESTATE);
    }
    /* Nothing installed holds the watermark asked for. */
    ck_assert_int_eq(eng_install_finish(t_e, 5, 5, &err), CAIRN_ECORRUPT);
    ck_assert(eng_install_active(t_e));
}
END_TEST

/* An install that did not finish (the process stopped) opens empty, with
 * the member's own metadata, so that the member resyncs. */
START_TEST(test_install_marker_at_startup_opens_empty)
{
    struct eng_clone *c;
    struct cairn_error err = {0};
    struct cairn_buf out = CAIRN_BUF_INIT;
    cairn_index index;
    uint64_t id;
    bool done;

    fill_source();
    {
        struct eng_op o[2] = {op_create(7, "db.old"), op_put(7, "x", "target-only")};
        apply_ops(t_e, 1, 5, o, 2);
    }
    ck_assert_int_eq(eng_meta_put(t_e, "rsconfig", "target-config", 13, &err), 0);
    ck_assert_int_eq(eng_clone_open(g_e, &c, NULL, NULL, &err), 0);
    ck_assert_int_eq(eng_install_begin(t_e, &err), 0);
    ck_assert_int_eq(eng_clone_next(c, NULL, 0, 2000, &out, &done, &err), 0);
    ck_assert(!done);
    ck_assert_int_eq(eng_install_put(t_e, out.data, out.len, NULL, &err), 0);
    eng_clone_close(c);
    cairn_buf_free(&out);

    eng_close(t_e); /* no finish */
    open_target();
    eng_applied(t_e, &index, NULL);
    ck_assert_uint_eq(index, 0);
    ck_assert_int_eq(eng_catalog_lookup(t_e, "db.a", false, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup(t_e, "db.old", false, &id), CAIRN_ENOTFOUND);
    ck_assert_ptr_null(get_at(t_e, 2, "k000", 100));
    ck_assert_str_eq(meta_get(t_e, "rsconfig"), "target-config");

    /* A full install then works, and the next open is clean. */
    copy_all(1 << 20, NULL);
    eng_close(t_e);
    open_target();
    eng_applied(t_e, &index, NULL);
    ck_assert_uint_eq(index, 300);
    ck_assert_str_eq(get_at(t_e, 1, "k001", CAIRN_TS_MAX), "doc-1-v2");
}
END_TEST

/* A record larger than the chunk budget travels alone in its chunk; the
 * chunks before and after it stay within the budget. */
START_TEST(test_clone_large_record_gets_its_own_chunk)
{
    static char big[3001];
    struct eng_clone *c;
    struct cairn_error err = {0};
    struct cairn_buf pos = CAIRN_BUF_INIT, out = CAIRN_BUF_INIT;
    bool done = false, seen_big = false;
    int chunks = 0;

    memset(big, 'b', sizeof big - 1);
    {
        struct eng_op o[4] = {op_create(1, "db.a"), op_put(1, "a", "small-a"), op_put(1, "m", big),
                              op_put(1, "z", "small-z")};
        apply_ops(g_e, 1, 10, o, 4);
    }
    ck_assert_int_eq(eng_clone_open(g_e, &c, NULL, NULL, &err), 0);
    while (!done) {
        cairn_buf_reset(&out);
        ck_assert_int_eq(eng_clone_next(c, pos.data, pos.len, 200, &out, &done, &err), 0);
        if (memmem(out.data, out.len, big, sizeof big - 1) != NULL) {
            seen_big = true;
            ck_assert_uint_lt(out.len, 3100); /* alone */
        } else {
            ck_assert_uint_le(out.len, 200);
        }
        ck_assert_int_eq(eng_clone_chunk_position(out.data, out.len, &pos, &err), 0);
        chunks++;
    }
    ck_assert(seen_big);
    ck_assert_int_ge(chunks, 3);
    {
        const uint8_t junk[] = {1, 0, 0, 0, 50, 'x'};
        ck_assert_int_eq(eng_clone_chunk_position(junk, sizeof junk, &pos, &err), CAIRN_ECORRUPT);
    }
    eng_clone_close(c);
    cairn_buf_free(&pos);
    cairn_buf_free(&out);
}
END_TEST

static Suite *clone_suite(void)
{
    Suite *s = suite_create("clone");
    TCase *tc = tcase_create("clone");

    tcase_add_checked_fixture(tc, setup, teardown_all);
    tcase_add_test(tc, test_clone_round_trip_all_column_families);
    tcase_add_test(tc, test_clone_stops_at_its_watermark_and_repeats);
    tcase_add_test(tc, test_install_refuses_bad_chunks_and_applies);
    tcase_add_test(tc, test_install_marker_at_startup_opens_empty);
    tcase_add_test(tc, test_clone_large_record_gets_its_own_chunk);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(clone_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
