/*
 * test_hello.c: unit tests of the pure part of src/net/hello.c: parsing
 * hello's awaitable arguments (topologyVersion, maxAwaitTimeMS) with
 * mongod 7.0's codes and messages, and the decision between answering at
 * once and waiting for a topology change.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "net/hello.h"

/* ---- Helpers --------------------------------------------------------------- */

static bson_oid_t pid_a, pid_b;

static void setup(void)
{
    bson_oid_init_from_string(&pid_a, "65a1b2c3d4e5f60718293a4b");
    bson_oid_init_from_string(&pid_b, "65a1b2c3d4e5f60718293a4c");
}

/* {hello: 1, topologyVersion: {processId: pid, counter: Int64(counter)},
 * maxAwaitTimeMS: Int64(ms)} */
static void awaitable(bson_t *b, const bson_oid_t *pid, int64_t counter, int64_t ms)
{
    bson_t tv;
    bson_init(b);
    BSON_APPEND_INT32(b, "hello", 1);
    BSON_APPEND_DOCUMENT_BEGIN(b, "topologyVersion", &tv);
    BSON_APPEND_OID(&tv, "processId", pid);
    BSON_APPEND_INT64(&tv, "counter", counter);
    bson_append_document_end(b, &tv);
    BSON_APPEND_INT64(b, "maxAwaitTimeMS", ms);
}

static int parse_json(const char *json, struct net_hello_await *a, struct cairn_error *err)
{
    bson_error_t berr;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &berr);
    int rv;

    ck_assert_msg(b != NULL, "bad test JSON %s: %s", json, berr.message);
    rv = net_hello_parse_await(b, a, err);
    bson_destroy(b);
    return rv;
}

/* Asserts that `json` fails to parse with mongo code `code` and, when
 * `msg` is not NULL, exactly that message. */
static void assert_parse_error(const char *json, int code, const char *msg)
{
    struct net_hello_await a;
    struct cairn_error err = {0};

    ck_assert_msg(parse_json(json, &a, &err) == CAIRN_EINVAL, "%s parsed", json);
    ck_assert_msg(err.mongo_code == code, "%s: code %d, not %d (%s)", json, err.mongo_code, code,
                  err.msg);
    if (msg != NULL) {
        ck_assert_str_eq(err.msg, msg);
    }
}

#define PID "{\"$oid\": \"65a1b2c3d4e5f60718293a4b\"}"
#define LONG(n) "{\"$numberLong\": \"" #n "\"}"

/* ---- Parsing ---------------------------------------------------------------- */

/* A hello without the awaitable arguments is not awaitable. */
START_TEST(test_hello_parse_plain)
{
    struct net_hello_await a;
    struct cairn_error err = {0};

    ck_assert_int_eq(parse_json("{\"hello\": 1, \"helloOk\": true}", &a, &err), 0);
    ck_assert(!a.has_topology_version);
    ck_assert(!a.has_max_await);
}
END_TEST

/* Both arguments, in either order, are read into the struct. */
START_TEST(test_hello_parse_awaitable)
{
    struct net_hello_await a;
    struct cairn_error err = {0};
    bson_t b;

    awaitable(&b, &pid_a, 7, 10000);
    ck_assert_int_eq(net_hello_parse_await(&b, &a, &err), 0);
    bson_destroy(&b);
    ck_assert(a.has_topology_version && a.has_max_await);
    ck_assert(bson_oid_equal(&a.process_id, &pid_a));
    ck_assert_int_eq(a.counter, 7);
    ck_assert_int_eq(a.max_await_ms, 10000);

    ck_assert_int_eq(parse_json("{\"isMaster\": 1, \"maxAwaitTimeMS\": 5, \"topologyVersion\": "
                                "{\"counter\": " LONG(0) ", \"processId\": " PID "}}",
                                &a, &err),
                     0);
    ck_assert_int_eq(a.counter, 0);
    ck_assert_int_eq(a.max_await_ms, 5);
}
END_TEST

/* maxAwaitTimeMS takes any number type, truncated (safeInt64). */
START_TEST(test_hello_parse_max_await_types)
{
    struct net_hello_await a;
    struct cairn_error err = {0};

    ck_assert_int_eq(parse_json("{\"hello\": 1, \"maxAwaitTimeMS\": 12.9, \"topologyVersion\": "
                                "{\"processId\": " PID ", \"counter\": " LONG(1) "}}",
                                &a, &err),
                     0);
    ck_assert_int_eq(a.max_await_ms, 12);
    ck_assert_int_eq(parse_json("{\"hello\": 1, \"maxAwaitTimeMS\": {\"$numberDecimal\": "
                                "\"250\"}, \"topologyVersion\": {\"processId\": " PID
                                ", \"counter\": " LONG(1) "}}",
                                &a, &err),
                     0);
    ck_assert_int_eq(a.max_await_ms, 250);
    ck_assert_int_eq(
        parse_json("{\"hello\": 1, \"maxAwaitTimeMS\": " LONG(
                       9223372036854775807) ", \"topologyVersion\": "
                                            "{\"processId\": " PID ", \"counter\": " LONG(1) "}}",
                   &a, &err),
        0);
    ck_assert_int_eq(a.max_await_ms, INT64_MAX);
}
END_TEST

/* Each malformed argument gets mongod 7.0's code and message. */
START_TEST(test_hello_parse_errors)
{
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": \"x\", \"maxAwaitTimeMS\": 0}", 10065,
                       "invalid parameter: expected an object (topologyVersion)");
    assert_parse_error(
        "{\"hello\": 1, \"topologyVersion\": {\"processId\": \"pid1\", \"counter\": " LONG(
            1) "}, \"maxAwaitTimeMS\": 0}",
        14,
        "BSON field 'hello.topologyVersion.processId' is the wrong type 'string', "
        "expected type 'objectId'");
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       ", \"counter\": 1}, \"maxAwaitTimeMS\": 0}",
                       14,
                       "BSON field 'hello.topologyVersion.counter' is the wrong type 'int', "
                       "expected type 'long'");
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       "}, \"maxAwaitTimeMS\": 0}",
                       40414,
                       "BSON field 'hello.topologyVersion.counter' is missing but a required "
                       "field");
    assert_parse_error(
        "{\"hello\": 1, \"topologyVersion\": {\"counter\": " LONG(1) "}, \"maxAwaitTimeMS\": 0}",
        40414,
        "BSON field 'hello.topologyVersion.processId' is missing but a required "
        "field");
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       ", \"counter\": " LONG(1) ", \"x\": 1}, \"maxAwaitTimeMS\": 0}",
                       40415, "BSON field 'hello.topologyVersion.x' is an unknown field.");
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       ", \"counter\": " LONG(1) "}, \"maxAwaitTimeMS\": \"s\"}",
                       14,
                       "BSON field 'hello.maxAwaitTimeMS' is the wrong type 'string', expected "
                       "types '[long, int, decimal, double]'");
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       ", \"counter\": " LONG(1) "}, \"maxAwaitTimeMS\": -1}",
                       51024, "BSON field 'maxAwaitTimeMS' value must be >= 0, actual value '-1'");
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       ", \"counter\": " LONG(-1) "}, \"maxAwaitTimeMS\": 0}",
                       31372, "topologyVersion must have a non-negative counter");
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       ", \"counter\": " LONG(1) "}}",
                       31368, "A request with a 'topologyVersion' must include 'maxAwaitTimeMS'");
    assert_parse_error("{\"hello\": 1, \"maxAwaitTimeMS\": 10}", 31368,
                       "A request with 'maxAwaitTimeMS' must include a 'topologyVersion'");
    /* A negative counter without maxAwaitTimeMS is the pairing error. */
    assert_parse_error("{\"hello\": 1, \"topologyVersion\": {\"processId\": " PID
                       ", \"counter\": " LONG(-1) "}}",
                       31368, NULL);
    /* The first bad field in document order is the one reported. */
    assert_parse_error("{\"hello\": 1, \"maxAwaitTimeMS\": -5, \"topologyVersion\": \"x\"}", 51024,
                       NULL);
}
END_TEST

/* ---- Decision ---------------------------------------------------------------- */

static enum net_hello_decision decide(const bson_oid_t *pid,
                                      int64_t counter,
                                      int64_t ms,
                                      uint64_t ours,
                                      int *code)
{
    struct net_hello_await a;
    struct cairn_error err = {0};
    enum net_hello_decision d = NET_HELLO_WAIT;
    bson_t b;

    awaitable(&b, pid, counter, ms);
    ck_assert_int_eq(net_hello_parse_await(&b, &a, &err), 0);
    bson_destroy(&b);
    *code = net_hello_decide(&a, &pid_a, ours, &d, &err) == 0 ? 0 : err.mongo_code;
    return d;
}

/* Our processId and counter wait; anything else answers now, except a
 * counter ahead of ours (31382). */
START_TEST(test_hello_decide)
{
    struct net_hello_await plain = {0};
    struct cairn_error err = {0};
    enum net_hello_decision d = NET_HELLO_WAIT;
    int code;

    ck_assert_int_eq(net_hello_decide(&plain, &pid_a, 3, &d, &err), 0);
    ck_assert_int_eq(d, NET_HELLO_ANSWER);

    ck_assert_int_eq(decide(&pid_a, 3, 10000, 3, &code), NET_HELLO_WAIT);
    ck_assert_int_eq(code, 0);
    ck_assert_int_eq(decide(&pid_a, 2, 10000, 3, &code), NET_HELLO_ANSWER);
    ck_assert_int_eq(code, 0);
    ck_assert_int_eq(decide(&pid_a, 3, 0, 3, &code), NET_HELLO_ANSWER);
    ck_assert_int_eq(code, 0);
    ck_assert_int_eq(decide(&pid_b, 3, 10000, 3, &code), NET_HELLO_ANSWER);
    ck_assert_int_eq(code, 0);
    ck_assert_int_eq(decide(&pid_b, 99, 10000, 3, &code), NET_HELLO_ANSWER);
    ck_assert_int_eq(code, 0);
    decide(&pid_a, 4, 10000, 3, &code);
    ck_assert_int_eq(code, 31382);
    {
        struct net_hello_await a;
        bson_t b;
        awaitable(&b, &pid_a, 4, 0);
        ck_assert_int_eq(net_hello_parse_await(&b, &a, &err), 0);
        bson_destroy(&b);
        ck_assert_int_eq(net_hello_decide(&a, &pid_a, 3, &d, &err), CAIRN_EINVAL);
        ck_assert_str_eq(err.msg,
                         "Received a topology version with counter: 4 which is greater than the "
                         "server topology version counter: 3");
    }
}
END_TEST

/* The processId is one ObjectId for the whole process. */
START_TEST(test_hello_process_id_fixed)
{
    bson_oid_t a, b;
    net_hello_process_id(&a);
    net_hello_process_id(&b);
    ck_assert(bson_oid_equal(&a, &b));
}
END_TEST

/* ---- Suite --------------------------------------------------------------------- */

static Suite *hello_suite(void)
{
    Suite *s = suite_create("hello");
    TCase *tc = tcase_create("awaitable");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_hello_parse_plain);
    tcase_add_test(tc, test_hello_parse_awaitable);
    tcase_add_test(tc, test_hello_parse_max_await_types);
    tcase_add_test(tc, test_hello_parse_errors);
    tcase_add_test(tc, test_hello_decide);
    tcase_add_test(tc, test_hello_process_id_fixed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hello_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
