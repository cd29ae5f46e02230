/*
 * hello.c: the handshake command (hello / isMaster / ismaster) with every
 * replica-set field drivers need (wire-protocol.md §2), topologyVersion,
 * and awaitable hello (server-monitoring.md "Awaitable hello Server
 * Specification"; mongod 7.0's CmdHello and ReplicationCoordinatorImpl::
 * awaitHelloResponse), so that drivers learn of a new primary or a
 * step-down at once instead of at their next 10 s poll.
 *
 * topologyVersion is {processId, counter}: processId is an ObjectId chosen
 * once per process, counter is repl's topology counter (repl.h), which
 * the raft thread bumps whenever something hello reports changes, plus
 * one once shutdown began (quiesce, below).
 *
 * Parking. A request whose topologyVersion names this process and the
 * current counter, with maxAwaitTimeMS > 0, is parked: the handler leaves
 * its session, asks server.c to watch the connection for a peer that
 * closes (net_conn_watch), links a `struct hello_park` into the list and
 * returns NET_CMD_PENDING, so its worker thread is free at once. One
 * thread per server, the hello thread, answers parked requests:
 *
 *   PARKED --counter != park's counter--> answered with the new topology
 *          --deadline passed------------> answered with the same topology
 *          --peer closed (watch)--------> dropped (net_cmd_abandon)
 *          --quiesce--------------------> 91 ShutdownInProgress
 *
 * Invariants:
 *   1. A park is in the list, or owned by exactly one thread that is
 *      completing it (the hello thread, or the handler that could not
 *      park it); only that thread frees it, after net_conn_unwatch, so the
 *      watch callback never sees freed memory.
 *   2. No wake-up is lost: the handler links a park under mu and signals;
 *      the topology callback takes mu after the counter moved and
 *      signals; the hello thread reads the counter under mu right before
 *      it waits, and rescans after every batch of completions.
 *   3. Lock order: repl's smu (held while the topology callback runs),
 *      then mu. Nothing calls into repl while holding mu, except the
 *      lock-free repl_topology_counter.
 *   4. Once `closing` is set (under mu) no request parks: every hello,
 *      awaitable or not, answers 91 ShutdownInProgress with
 *      topologyVersion, as mongod in quiesce mode.
 *
 * Errors. As mongod, a NotPrimaryError reply (and a ShutdownError once
 * shutdown began) carries topologyVersion too (net_hello_append_error_topology,
 * called by dispatch): a driver whose monitor is parked here treats an
 * error with the topologyVersion it already knows as stale, instead of
 * marking the server unknown and waiting for a check that only ends with
 * maxAwaitTimeMS (failCommand's simulated errors change no topology).
 *
 * Exhaust (OP_MSG exhaustAllowed, moreToCome streaming) is not offered:
 * the connection layer answers each request once (server.c), which the
 * specification allows; drivers then send the next awaitable hello as soon
 * as a reply arrives, so a change is still seen at once.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "net/hello.h"
#include "net/server_int.h"
#include "net/txnctx.h"
#include "net/wire.h"

#define MAX_WIRE_VERSION CAIRN_MAX_WIRE_VERSION
#define MIN_WIRE_VERSION 0
#define MAX_WRITE_BATCH 100000
#define SESSION_TIMEOUT_MINUTES 30

/* mongod's kQuiesceModeShutdownMessage. */
#define QUIESCE_MESSAGE "The server is in quiesce mode and will shut down"

struct hello_park
{
    struct net_cmd *c;
    bool hello_ok;        /* the request said helloOk: true */
    uint64_t counter;     /* the counter the client has (the current one when parked) */
    uint64_t deadline_ns; /* maxAwaitTimeMS as a monotonic deadline */
    bool watched;         /* net_conn_watch succeeded */
    bool gone;            /* the peer closed (under mu) */
    bool gone_when_taken; /* `gone` when the hello thread took it out */
    struct hello_park *prev, *next;
};

struct net_hello
{
    struct repl *repl;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    struct hello_park *head;
    int64_t n_parked;
    atomic_bool closing; /* written under mu */
    bool stop;           /* the hello thread ends once nothing is parked */
    bool thread_started;
    bool quiesced;
    pthread_t thread;
};

/* ---- topologyVersion --------------------------------------------------- */

static pthread_once_t process_id_once = PTHREAD_ONCE_INIT;
static bson_oid_t process_id;

static void process_id_init(void)
{
    bson_oid_init(&process_id, NULL);
}

void net_hello_process_id(bson_oid_t *out)
{
    pthread_once(&process_id_once, process_id_init);
    bson_oid_copy(&process_id, out);
}

/* The counter hello reports: repl's, plus one once shutdown began (mongod
 * bumps the topology version when it enters quiesce mode). */
static uint64_t reported_counter(struct net_hello *h, uint64_t repl_counter)
{
    return repl_counter + (atomic_load(&h->closing) ? 1u : 0u);
}

static void append_topology_version(bson_t *doc, uint64_t counter)
{
    bson_oid_t pid;
    bson_t tv;

    net_hello_process_id(&pid);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "topologyVersion", &tv);
    BSON_APPEND_OID(&tv, "processId", &pid);
    BSON_APPEND_INT64(&tv, "counter", (int64_t)counter);
    bson_append_document_end(doc, &tv);
}

/* ---- Arguments (pure) ---------------------------------------------------- */

static int parse_topology_version(bson_iter_t *it,
                                  struct net_hello_await *out,
                                  struct cairn_error *err)
{
    bson_iter_t sub;
    bool has_pid = false, has_counter = false;

    /* The IDL parser reads a struct field with BSONElement::Obj(). */
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExpectedObject,
                                 "invalid parameter: expected an object (topologyVersion)");
    }
    while (bson_iter_next(&sub)) {
        const char *k = bson_iter_key(&sub);
        if (strcmp(k, "processId") == 0) {
            if (!BSON_ITER_HOLDS_OID(&sub)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                         "BSON field 'hello.topologyVersion.processId' is the "
                                         "wrong type '%s', expected type 'objectId'",
                                         qry_type_name(bson_iter_type(&sub)));
            }
            bson_oid_copy(bson_iter_oid(&sub), &out->process_id);
            has_pid = true;
        } else if (strcmp(k, "counter") == 0) {
            if (!BSON_ITER_HOLDS_INT64(&sub)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                         "BSON field 'hello.topologyVersion.counter' is the "
                                         "wrong type '%s', expected type 'long'",
                                         qry_type_name(bson_iter_type(&sub)));
            }
            out->counter = bson_iter_int64(&sub);
            has_counter = true;
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_IdlUnknownField,
                                     "BSON field 'hello.topologyVersion.%s' is an unknown field.",
                                     k);
        }
    }
    if (!has_pid || !has_counter) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                                 "BSON field 'hello.topologyVersion.%s' is missing but a "
                                 "required field",
                                 has_pid ? "counter" : "processId");
    }
    out->has_topology_version = true;
    return 0;
}

/* maxAwaitTimeMS is a safeInt64: any number, converted as
 * BSONElement::safeNumberLong does (truncated, NaN is 0, clamped). */
static int parse_max_await(bson_iter_t *it, struct net_hello_await *out, struct cairn_error *err)
{
    int64_t v;

    if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it)) {
        v = bson_iter_as_int64(it);
    } else if (BSON_ITER_HOLDS_DOUBLE(it) || BSON_ITER_HOLDS_DECIMAL128(it)) {
        double d;
        if (BSON_ITER_HOLDS_DOUBLE(it)) {
            d = bson_iter_double(it);
        } else {
            bson_decimal128_t dec;
            char buf[BSON_DECIMAL128_STRING];
            bson_iter_decimal128(it, &dec);
            bson_decimal128_to_string(&dec, buf);
            d = strtod(buf, NULL); /* "NaN" and "Infinity" parse too */
        }
        if (d != d) {
            v = 0;
        } else if (d >= 9223372036854775807.0) {
            v = INT64_MAX;
        } else if (d <= -9223372036854775808.0) {
            v = INT64_MIN;
        } else {
            v = (int64_t)d;
        }
    } else {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field 'hello.maxAwaitTimeMS' is the wrong type '%s', "
                                 "expected types '[long, int, decimal, double]'",
                                 qry_type_name(bson_iter_type(it)));
    }
    if (v < 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_IdlValueBelowMinimum,
                                 "BSON field 'maxAwaitTimeMS' value must be >= 0, actual value "
                                 "'%lld'",
                                 (long long)v);
    }
    out->max_await_ms = v;
    out->has_max_await = true;
    return 0;
}

int net_hello_parse_await(const bson_t *body, struct net_hello_await *out, struct cairn_error *err)
{
    bson_iter_t it;
    int rv;

    memset(out, 0, sizeof *out);
    if (!bson_iter_init(&it, body)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidBSON, "invalid hello command");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "topologyVersion") == 0) {
            rv = parse_topology_version(&it, out, err);
        } else if (strcmp(k, "maxAwaitTimeMS") == 0) {
            rv = parse_max_await(&it, out, err);
        } else {
            continue;
        }
        if (rv != 0) {
            return rv;
        }
    }
    if (out->has_topology_version && out->has_max_await) {
        if (out->counter < 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_TopologyVersionNegativeCounter,
                                     "topologyVersion must have a non-negative counter");
        }
    } else if (out->has_topology_version || out->has_max_await) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_AwaitableHelloUnpaired, "%s",
                                 out->has_topology_version
                                     ? "A request with a 'topologyVersion' must include "
                                       "'maxAwaitTimeMS'"
                                     : "A request with 'maxAwaitTimeMS' must include a "
                                       "'topologyVersion'");
    }
    return 0;
}

int net_hello_decide(const struct net_hello_await *a,
                     const bson_oid_t *pid,
                     uint64_t counter,
                     enum net_hello_decision *out,
                     struct cairn_error *err)
{
    *out = NET_HELLO_ANSWER;
    if (!a->has_topology_version || !a->has_max_await) {
        return 0;
    }
    /* Another processId: the server restarted since the client's reply. */
    if (!bson_oid_equal(&a->process_id, pid)) {
        return 0;
    }
    if ((uint64_t)a->counter > counter) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_TopologyVersionCounterAhead,
                                 "Received a topology version with counter: %lld which is "
                                 "greater than the server topology version counter: %llu",
                                 (long long)a->counter, (unsigned long long)counter);
    }
    if ((uint64_t)a->counter == counter && a->max_await_ms > 0) {
        *out = NET_HELLO_WAIT;
    }
    return 0;
}

/* ---- The reply ------------------------------------------------------------ */

void net_append_hosts(bson_t *doc, const struct repl_status *st)
{
    bson_t arr;
    uint32_t n = 0;
    bool any_passive = false;

    BSON_APPEND_ARRAY_BEGIN(doc, "hosts", &arr);
    for (size_t i = 0; i < st->n_members; i++) {
        if (st->members[i].priority > 0) {
            net_append_index_key(&arr, n++, st->members[i].host);
        } else {
            any_passive = true;
        }
    }
    bson_append_array_end(doc, &arr);
    if (any_passive) {
        n = 0;
        BSON_APPEND_ARRAY_BEGIN(doc, "passives", &arr);
        for (size_t i = 0; i < st->n_members; i++) {
            if (!(st->members[i].priority > 0)) {
                net_append_index_key(&arr, n++, st->members[i].host);
            }
        }
        bson_append_array_end(doc, &arr);
    }
}

/* Appends the hello fields for status `st` to c->reply. */
static void append_reply(struct net_hello *h,
                         struct net_cmd *c,
                         const struct repl_status *st,
                         bool hello_ok)
{
    bool primary = st->initiated && st->state == REPL_STATE_PRIMARY && st->writable;

    append_topology_version(&c->reply, reported_counter(h, st->topology_counter));
    if (!st->initiated) {
        BSON_APPEND_BOOL(&c->reply, "ismaster", false);
        BSON_APPEND_BOOL(&c->reply, "isWritablePrimary", false);
        BSON_APPEND_BOOL(&c->reply, "secondary", false);
        BSON_APPEND_UTF8(&c->reply, "info", "Does not have a valid replica set config");
        BSON_APPEND_BOOL(&c->reply, "isreplicaset", true);
    } else {
        net_append_hosts(&c->reply, st);
        BSON_APPEND_UTF8(&c->reply, "setName", st->set_name);
        BSON_APPEND_INT32(&c->reply, "setVersion", st->config_version);
        BSON_APPEND_BOOL(&c->reply, "ismaster", primary);
        BSON_APPEND_BOOL(&c->reply, "isWritablePrimary", primary);
        BSON_APPEND_BOOL(&c->reply, "secondary", st->state == REPL_STATE_SECONDARY);
        if (st->primary >= 0 && (size_t)st->primary < st->n_members) {
            BSON_APPEND_UTF8(&c->reply, "primary", st->members[st->primary].host);
        }
        if (st->self >= 0 && (size_t)st->self < st->n_members) {
            BSON_APPEND_UTF8(&c->reply, "me", st->members[st->self].host);
        }
        if (primary) {
            /* mongod's OID::fromTerm: 7fffffff then the term, big-endian. */
            bson_oid_t oid;
            oid.bytes[0] = 0x7f;
            oid.bytes[1] = 0xff;
            oid.bytes[2] = 0xff;
            oid.bytes[3] = 0xff;
            for (int i = 0; i < 8; i++) {
                oid.bytes[4 + i] = (uint8_t)(st->term >> (8 * (7 - i)));
            }
            BSON_APPEND_OID(&c->reply, "electionId", &oid);
        }
        {
            bson_t lw;
            BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "lastWrite", &lw);
            net_append_optime(&lw, "opTime", st->last_ts, st->term);
            BSON_APPEND_DATE_TIME(&lw, "lastWriteDate", st->last_wall_ms);
            net_append_optime(&lw, "majorityOpTime", st->applied_ts, st->term);
            BSON_APPEND_DATE_TIME(&lw, "majorityWriteDate", st->applied_wall_ms);
            bson_append_document_end(&c->reply, &lw);
        }
    }
    BSON_APPEND_INT32(&c->reply, "maxBsonObjectSize", WIRE_MAX_BSON);
    BSON_APPEND_INT32(&c->reply, "maxMessageSizeBytes", WIRE_MAX_MESSAGE);
    BSON_APPEND_INT32(&c->reply, "maxWriteBatchSize", MAX_WRITE_BATCH);
    BSON_APPEND_DATE_TIME(&c->reply, "localTime", cairn_wall_ms());
    BSON_APPEND_INT32(&c->reply, "logicalSessionTimeoutMinutes", SESSION_TIMEOUT_MINUTES);
    if (c->conn_id <= INT32_MAX) {
        BSON_APPEND_INT32(&c->reply, "connectionId", (int32_t)c->conn_id);
    } else {
        BSON_APPEND_INT64(&c->reply, "connectionId", (int64_t)c->conn_id);
    }
    BSON_APPEND_INT32(&c->reply, "minWireVersion", MIN_WIRE_VERSION);
    BSON_APPEND_INT32(&c->reply, "maxWireVersion", MAX_WIRE_VERSION);
    BSON_APPEND_BOOL(&c->reply, "readOnly", false);
    if (hello_ok) {
        BSON_APPEND_BOOL(&c->reply, "helloOk", true);
    }
}

/* Sets c's error to 91 ShutdownInProgress, as mongod answers hello in
 * quiesce mode (dispatch adds topologyVersion: net_hello_append_error_topology).
 * Returns the error code. */
static int quiesce_error(struct net_cmd *c)
{
    return cairn_error_mongo(&c->err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress, QUIESCE_MESSAGE);
}

static bool is_not_primary_error(int code)
{
    return code == MONGO_NotWritablePrimary || code == MONGO_NotPrimaryNoSecondaryOk ||
           code == MONGO_NotPrimaryOrSecondary || code == MONGO_InterruptedDueToReplStateChange ||
           code == MONGO_PrimarySteppedDown;
}

static bool is_shutdown_error(int code)
{
    return code == MONGO_ShutdownInProgress || code == MONGO_InterruptedAtShutdown;
}

void net_hello_append_error_topology(struct net_hello *h, int code, int wce_code, bson_t *doc)
{
    bool not_primary = is_not_primary_error(code) || is_not_primary_error(wce_code);
    bool shutdown = is_shutdown_error(code) || is_shutdown_error(wce_code);

    if (h == NULL || !(not_primary || (shutdown && atomic_load(&h->closing)))) {
        return;
    }
    append_topology_version(doc, reported_counter(h, repl_topology_counter(h->repl)));
}

/* ---- Parked requests -------------------------------------------------------- */

static void unlink_park(struct net_hello *h, struct hello_park *p)
{
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        h->head = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    }
    p->prev = p->next = NULL;
    h->n_parked--;
}

/* The watch saw the peer close. nng thread: only marks and wakes. */
static void park_gone_cb(void *arg)
{
    struct hello_park *p = arg;
    struct net_hello *h = net_server_hello(net_conn_server(p->c->conn));

    pthread_mutex_lock(&h->mu);
    p->gone = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Answers (or drops) a park taken out of the list, then frees it. Not
 * under mu. `gone`: the peer was seen closing while parked. */
static void complete_park(struct net_hello *h, struct hello_park *p, bool gone, bool closing)
{
    struct net_cmd *c = p->c;
    struct repl_status st;

    if (p->watched && net_conn_unwatch(c->conn)) {
        gone = true;
    }
    if (gone) {
        net_cmd_abandon(c);
    } else if (closing) {
        quiesce_error(c);
        net_cmd_complete(c, true);
    } else {
        repl_status_get(h->repl, &st);
        append_reply(h, c, &st, p->hello_ok);
        net_cmd_complete(c, false);
    }
    free(p);
}

static void *hello_thread(void *arg)
{
    struct net_hello *h = arg;

    pthread_mutex_lock(&h->mu);
    for (;;) {
        uint64_t now = cairn_mono_ns();
        uint64_t counter = repl_topology_counter(h->repl);
        bool closing = atomic_load(&h->closing);
        uint64_t next = 0;
        struct hello_park *due = NULL, *p, *nx;

        /* Take every park that is due out of the list (their `next`
         * links the local list from here on). */
        for (p = h->head; p != NULL; p = nx) {
            nx = p->next;
            if (closing || p->gone || p->counter != counter || p->deadline_ns <= now) {
                unlink_park(h, p);
                p->gone_when_taken = p->gone;
                p->next = due;
                due = p;
            } else if (next == 0 || p->deadline_ns < next) {
                next = p->deadline_ns;
            }
        }
        if (due != NULL) {
            pthread_mutex_unlock(&h->mu);
            while (due != NULL) {
                p = due;
                due = p->next;
                complete_park(h, p, p->gone_when_taken, closing);
            }
            pthread_mutex_lock(&h->mu);
            continue;
        }
        if (h->stop) {
            break;
        }
        if (next == 0) {
            pthread_cond_wait(&h->cv, &h->mu);
        } else {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                                  .tv_nsec = (long)(next % 1000000000ull)};
            (void)pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* repl's topology callback (raft thread, smu held): wakes the hello
 * thread when something is parked. Never blocks for long: mu is only held
 * for list operations. */
static void topology_cb(void *arg, uint64_t counter)
{
    struct net_hello *h = arg;

    (void)counter;
    pthread_mutex_lock(&h->mu);
    if (h->head != NULL) {
        pthread_cond_signal(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

/* Parks `c` (the decision was NET_HELLO_WAIT). Returns NET_CMD_PENDING,
 * or, when it cannot park (shutdown began, no memory), answers now:
 * NET_CMD_DONE or an error code with c->err set. */
static int park(struct net_hello *h,
                struct net_cmd *c,
                const struct net_hello_await *a,
                bool hello_ok,
                const struct repl_status *st)
{
    struct hello_park *p = calloc(1, sizeof *p);

    if (p == NULL) {
        /* Answering at once is always correct: the client asks again. */
        append_reply(h, c, st, hello_ok);
        return NET_CMD_DONE;
    }
    p->c = c;
    p->hello_ok = hello_ok;
    p->counter = (uint64_t)a->counter;
    /* Past about 292 years the deadline is simply "never". */
    if (a->max_await_ms > (int64_t)(UINT64_MAX / 4 / 1000000ull)) {
        p->deadline_ns = UINT64_MAX / 2;
    } else {
        p->deadline_ns = cairn_mono_ns() + (uint64_t)a->max_await_ms * 1000000ull;
    }
    /* The request holds no thread while parked: give its session back now,
     * as a write-concern wait does (dispatch leaves it to the handler).
     * Waiting for a topology change is not work: currentOp shows the
     * connection as idle, as it would between two polls. */
    net_session_leave(c->sess, c->txn_mode, false);
    c->sess = NULL;
    net_cmd_end_op(c);
    /* Watch before linking: once linked, the hello thread may complete
     * the request (and unwatch) at any moment. */
    p->watched = net_conn_watch(c->conn, park_gone_cb, p);
    pthread_mutex_lock(&h->mu);
    if (atomic_load(&h->closing)) {
        pthread_mutex_unlock(&h->mu);
        if (p->watched) {
            (void)net_conn_unwatch(c->conn);
        }
        free(p);
        return quiesce_error(c);
    }
    p->next = h->head;
    if (h->head != NULL) {
        h->head->prev = p;
    }
    h->head = p;
    h->n_parked++;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return NET_CMD_PENDING;
}

/* ---- The command -------------------------------------------------------------- */

int net_cmd_hello(struct net_cmd *c)
{
    struct net_hello *h = net_server_hello(net_conn_server(c->conn));
    struct net_hello_await a;
    enum net_hello_decision d;
    struct repl_status st;
    bson_oid_t pid;
    bson_iter_t it;
    bool hello_ok = false;

    if (bson_iter_init_find(&it, c->body, "client")) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return cairn_error_mongo(
                &c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                "BSON field '%s.client' is the wrong type '%s', expected type 'object'", c->name,
                qry_type_name(bson_iter_type(&it)));
        }
        const uint8_t *data;
        uint32_t len;
        bson_t client;
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&client, data, len)) {
            return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_InvalidBSON,
                                     "BSON field '%s.client' is invalid BSON", c->name);
        }
        /* mongod tags a connection whose hello names internalClient as
         * internal: failCommand spares its commands unless told otherwise. */
        if (!net_conn_set_client_metadata(c->conn, &client,
                                          bson_has_field(c->body, "internalClient"))) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_ClientMetadataCannotBeMutated,
                                     "The client metadata document may only be sent in the first "
                                     "%s",
                                     c->name);
        }
    }
    if (net_get_bool(c, "helloOk", &hello_ok) != 0) {
        return NET_CMD_ERROR;
    }
    if (net_hello_parse_await(c->body, &a, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (atomic_load(&h->closing)) {
        return quiesce_error(c);
    }
    repl_status_get(c->deps->repl, &st);
    net_hello_process_id(&pid);
    if (net_hello_decide(&a, &pid, reported_counter(h, st.topology_counter), &d, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (d == NET_HELLO_WAIT) {
        return park(h, c, &a, hello_ok, &st);
    }
    append_reply(h, c, &st, hello_ok);
    return NET_CMD_DONE;
}

/* ---- Life cycle ------------------------------------------------------------------ */

int64_t net_hello_n_awaiting(struct net_hello *h)
{
    int64_t n;

    pthread_mutex_lock(&h->mu);
    n = h->n_parked;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int net_hello_start(struct net_server *s,
                    struct repl *repl,
                    struct net_hello **out,
                    struct cairn_error *err)
{
    struct net_hello *h;
    pthread_condattr_t ca;
    int rv;

    (void)s;
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "hello: out of memory");
        goto err;
    }
    h->repl = repl;
    atomic_init(&h->closing, false);
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "hello: cannot create a mutex");
        goto err_after_alloc;
    }
    if (pthread_condattr_init(&ca) != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "hello: cannot create a condition");
        goto err_after_mutex;
    }
    rv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rv == 0) {
        rv = pthread_cond_init(&h->cv, &ca);
    }
    pthread_condattr_destroy(&ca);
    if (rv != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "hello: cannot create a condition");
        goto err_after_mutex;
    }
    if (pthread_create(&h->thread, NULL, hello_thread, h) != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "hello: cannot start its thread");
        goto err_after_cond;
    }
    h->thread_started = true;
    repl_set_topology_cb(repl, topology_cb, h);
    *out = h;
    return 0;

err_after_cond:
    pthread_cond_destroy(&h->cv);
err_after_mutex:
    pthread_mutex_destroy(&h->mu);
err_after_alloc:
    free(h);
err:
    assert(rv != 0);
    return rv;
}

void net_hello_quiesce(struct net_hello *h)
{
    int64_t n;

    if (h == NULL || h->quiesced) {
        return;
    }
    h->quiesced = true;
    /* No callback after this returns (and none in progress). */
    repl_set_topology_cb(h->repl, NULL, NULL);
    pthread_mutex_lock(&h->mu);
    n = h->n_parked;
    atomic_store(&h->closing, true);
    h->stop = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->thread_started) {
        pthread_join(h->thread, NULL);
        h->thread_started = false;
    }
    if (n > 0) {
        cairn_log(CAIRN_LOG_INFO, "net",
                  "shutdown: answered %lld awaitable hello(s) with ShutdownInProgress",
                  (long long)n);
    }
}

void net_hello_free(struct net_hello *h)
{
    if (h == NULL) {
        return;
    }
    net_hello_quiesce(h);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
