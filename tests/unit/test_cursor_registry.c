/*
 * test_cursor_registry.c: unit tests of the cursor registry of
 * src/net/cursor.c: the hash table on the id (growth, removal by kill,
 * release and reaping, lookups staying short), idle expiry by
 * net_cursor_reap (noCursorTimeout and busy cursors kept) and a sweep whose
 * clock reading is older than a cursor's last use. Check forks each test,
 * so each starts with an empty registry.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "net/cursor.h"
#include "net/server_int.h"

/* Registers an empty cursor on "db.c" (no_timeout as given). */
static int64_t add_cursor(bool no_timeout)
{
    struct net_cursor *cur = net_cursor_new("db.c");

    ck_assert_ptr_nonnull(cur);
    cur->no_timeout = no_timeout;
    return net_cursor_register(cur);
}

static bool present(int64_t id)
{
    struct net_cursor *cur = NULL;
    struct cairn_error err = {0};

    if (net_cursor_acquire(id, &cur, &err) != 0) {
        ck_assert_int_eq(err.mongo_code, MONGO_CursorNotFound);
        return false;
    }
    net_cursor_release(cur);
    return true;
}

/* The sweeper reads the clock, then does other work before it reaps: a
 * cursor registered (or released by a getMore) in between was used after
 * `now`, and is not idle at all. */
START_TEST(test_reap_clock_older_than_last_use)
{
    uint64_t now = cairn_mono_ns();
    int64_t id = add_cursor(false);

    ck_assert_uint_eq(net_cursor_reap(now), 0);
    ck_assert(present(id));
    ck_assert_uint_eq(net_cursor_count(), 1);

    /* Same after a getMore's release. */
    now = cairn_mono_ns();
    ck_assert(present(id));
    ck_assert_uint_eq(net_cursor_reap(now), 0);
    ck_assert(present(id));
}
END_TEST

START_TEST(test_reap_expired_keeps_no_timeout_and_busy)
{
    int64_t idle = add_cursor(false);
    int64_t keep = add_cursor(true);
    int64_t busy_id = add_cursor(false);
    struct net_cursor *busy = NULL;
    struct net_cursor_stats st;
    struct cairn_error err = {0};
    uint64_t later = cairn_mono_ns() + net_cursor_idle_ns() + 1000000000ull;

    ck_assert_int_eq(net_cursor_acquire(busy_id, &busy, &err), 0);
    ck_assert_uint_eq(net_cursor_reap(later), 1);
    net_cursor_stats_get(&st);
    ck_assert_uint_eq(st.timed_out, 1);
    ck_assert_uint_eq(st.open, 2);
    ck_assert_uint_eq(st.no_timeout, 1);
    ck_assert(!present(idle));
    ck_assert(present(keep));
    net_cursor_release(busy);
    ck_assert(present(busy_id));
}
END_TEST

/* Thousands of cursors: the table grows past one per bucket, every id is
 * still found, kills and releases of killed busy cursors unlink the right
 * one, and a lookup compares few cursors. */
START_TEST(test_hash_growth_and_removal)
{
    enum { N = 5000 };
    int64_t *ids = calloc(N, sizeof *ids);
    struct net_cursor_stats before, after;
    struct net_cursor *held = NULL;
    struct cairn_error err = {0};

    ck_assert_ptr_nonnull(ids);
    for (int i = 0; i < N; i++) {
        ids[i] = add_cursor(i % 7 == 0);
        ck_assert_int_gt(ids[i], 0);
    }
    net_cursor_stats_get(&before);
    ck_assert_uint_eq(before.open, N);
    ck_assert_uint_ge(before.buckets, N);
    ck_assert_uint_eq(before.buckets & (before.buckets - 1), 0);
    for (int i = 0; i < N; i++) {
        ck_assert(present(ids[i]));
    }
    net_cursor_stats_get(&after);
    /* Each present() is one lookup; chains stay short. */
    ck_assert_uint_le(after.probes - before.probes, 3 * (after.lookups - before.lookups));

    /* Kill the even ones; one of them while a command holds it. */
    ck_assert_int_eq(net_cursor_acquire(ids[0], &held, &err), 0);
    for (int i = 0; i < N; i += 2) {
        ck_assert(net_cursor_kill(ids[i], NULL));
        ck_assert(!net_cursor_kill(ids[i], NULL));
    }
    ck_assert_uint_eq(net_cursor_count(), N / 2 + 1); /* the held one stays until released */
    net_cursor_release(held);
    ck_assert_uint_eq(net_cursor_count(), N / 2);
    for (int i = 0; i < N; i++) {
        ck_assert(present(ids[i]) == (i % 2 == 1));
    }
    net_cursor_stats_get(&after);
    ck_assert_uint_eq(after.no_timeout, (N + 6) / 7 - (N + 13) / 14);
    ck_assert_uint_eq(net_cursor_close_all(), 0);
    ck_assert_uint_eq(net_cursor_count(), 0);
    net_cursor_stats_get(&after);
    ck_assert_uint_eq(after.no_timeout, 0);
    free(ids);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("cursor_registry");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, test_reap_clock_older_than_last_use);
    tcase_add_test(tc, test_reap_expired_keeps_no_timeout_and_busy);
    tcase_add_test(tc, test_hash_growth_and_removal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
