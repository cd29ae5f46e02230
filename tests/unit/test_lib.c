/*
 * test_lib.c: the domain-free helpers: error codes and message wrapping,
 * the growable buffer and the big-endian helpers.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/cairn.h"
#include "lib/buf.h"
#include "lib/hash.h"

/* Every code has a name; unknown codes still get a string. */
START_TEST(test_lib_strerror)
{
    ck_assert_str_eq(cairn_strerror(CAIRN_OK), "ok");
    ck_assert_str_eq(cairn_strerror(CAIRN_ENOTLEADER), "not the leader");
    ck_assert_str_eq(cairn_strerror(9999), "unknown error");
}
END_TEST

/* setf/mongo set code, MongoDB code and message; wrapf prefixes context. */
START_TEST(test_lib_error_wrap)
{
    struct cairn_error err = {0};
    ck_assert_int_eq(cairn_error_setf(&err, CAIRN_EIO, "disk %d", 3), CAIRN_EIO);
    ck_assert_str_eq(err.msg, "disk 3");
    ck_assert_int_eq(cairn_error_wrapf(&err, "apply %s", "batch"), CAIRN_EIO);
    ck_assert_str_eq(err.msg, "apply batch: disk 3");
    ck_assert_int_eq(cairn_error_mongo(&err, CAIRN_EINVAL, 2, "bad"), CAIRN_EINVAL);
    ck_assert_int_eq(err.mongo_code, 2);
    cairn_error_clear(&err);
    ck_assert_int_eq(err.code, 0);
    ck_assert_int_eq(err.mongo_code, 0);
    ck_assert_int_eq(cairn_error_setf(NULL, CAIRN_EIO, "x"), CAIRN_EIO);
    ck_assert_int_eq(cairn_error_wrapf(NULL, "x"), 0);
}
END_TEST

/* Wrapping a long message truncates it and keeps it terminated. */
START_TEST(test_lib_error_wrap_truncates)
{
    struct cairn_error err = {0};
    char longmsg[400];
    memset(longmsg, 'a', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    cairn_error_setf(&err, CAIRN_EIO, "%s", longmsg);
    cairn_error_wrapf(&err, "ctx");
    ck_assert_uint_eq(strlen(err.msg), sizeof err.msg - 1);
    ck_assert(strncmp(err.msg, "ctx: aaa", 8) == 0);
}
END_TEST

/* The buffer grows, appends and resets; big-endian round trips. */
START_TEST(test_lib_buf)
{
    struct cairn_buf b = CAIRN_BUF_INIT;
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(cairn_buf_push(&b, (uint8_t)i), 0);
    }
    ck_assert_uint_eq(b.len, 1000);
    ck_assert_uint_eq(b.data[999], (uint8_t)999);
    cairn_buf_reset(&b);
    ck_assert_int_eq(cairn_buf_put_be64(&b, 0x0102030405060708ULL), 0);
    ck_assert_uint_eq(b.len, 8);
    ck_assert_uint_eq(b.data[0], 1);
    ck_assert_uint_eq(b.data[7], 8);
    ck_assert(cairn_load_be64(b.data) == 0x0102030405060708ULL);
    ck_assert_int_eq(cairn_buf_append(&b, "xyz", 3), 0);
    ck_assert_uint_eq(b.len, 11);
    cairn_buf_free(&b);
    ck_assert_ptr_null(b.data);
}
END_TEST

/* FNV-1a 64 reference vectors (from the standard basis), continuation, and the slot table keeping
 * every entry findable across growth. */
START_TEST(test_lib_hash)
{
    const uint64_t fnv_basis = 0xcbf29ce484222325ULL;
    ck_assert(cairn_hash_bytes(CAIRN_HASH_SEED, NULL, 0) == CAIRN_HASH_SEED);
    ck_assert(cairn_hash_bytes(fnv_basis, "a", 1) == 0xaf63dc4c8601ec8cULL);
    ck_assert(cairn_hash_bytes(fnv_basis, "foobar", 6) == 0x85944171f73967e8ULL);
    ck_assert(cairn_hash_bytes(cairn_hash_bytes(fnv_basis, "foo", 3), "bar", 3) ==
              0x85944171f73967e8ULL);

    uint64_t h[100];
    size_t *slots = NULL, nslots = 0;
    for (size_t k = 0; k < 100; k++) {
        h[k] = cairn_hash_fold(cairn_hash_bytes(CAIRN_HASH_SEED, &k, sizeof k));
        ck_assert_int_eq(cairn_slots_reserve(&slots, &nslots, h, k, 4), 0);
        ck_assert((k + 1) * 2 <= nslots && (nslots & (nslots - 1)) == 0);
        cairn_slots_place(slots, nslots, h[k], k);
    }
    for (size_t k = 0; k < 100; k++) {
        size_t i = (size_t)h[k] & (nslots - 1);
        while (slots[i] != k + 1) {
            ck_assert_uint_ne(slots[i], 0);
            i = (i + 1) & (nslots - 1);
        }
    }
    free(slots);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lib");
    TCase *tc = tcase_create("lib");
    tcase_add_test(tc, test_lib_strerror);
    tcase_add_test(tc, test_lib_error_wrap);
    tcase_add_test(tc, test_lib_error_wrap_truncates);
    tcase_add_test(tc, test_lib_buf);
    tcase_add_test(tc, test_lib_hash);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
