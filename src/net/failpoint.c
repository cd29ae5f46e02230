/*
 * failpoint.c: the fail points and the test command that configures them,
 * configureFailPoint (admin only), which exists only when cairnd runs with
 * --setParameter enableTestCommands=1 (without it the command is unknown,
 * 59, as in mongod). The one fail point is failCommand, which lets drivers
 * and applications rehearse server errors, closed connections, slow
 * commands and write-concern errors (mongod's src/mongo/util/fail_point.cpp
 * and CommandHelpers::evaluateFailCommandFailPoint). A second fail point,
 * pauseCheckpointInstall, holds a checkpoint install (see below).
 *
 * A fail point has a mode and a data document:
 *
 *   mode                       activates when entered ...
 *   "off"                      never
 *   "alwaysOn"                 always
 *   {times: n}                 the next n times, then turns itself off
 *                              (n = 0 still activates once, as mongod)
 *   {skip: n}                  after the first n times, then always
 *   {activationProbability: p} with probability p (0 <= p <= 1)
 *
 * A command "enters" failCommand only when the data applies to it (its
 * name, appName, threadName, namespace, and internal connections spared);
 * only then does the mode count, so {times: 1} fails exactly one matching
 * command however many others run. `count` in configureFailPoint's reply
 * is how many times the fail point has activated since the process began.
 *
 * failCommand data (checked when configured; mongod checks lazily, Cairn
 * refuses a malformed or unsupported setting at once):
 *
 *   failCommands: [names]    the commands it applies to (aliases count:
 *                            "isMaster" also fails hello); required unless
 *   failAllCommands: true    every command but configureFailPoint
 *   errorCode: n             fail with code n without running (0: run)
 *   errorLabels: [labels]    exactly these labels in the reply, replacing
 *                            the ones dispatch computes (wire-protocol §4.6)
 *   closeConnection: true    close the connection instead of replying
 *   blockConnection: true,   sleep blockTimeMS first (a kill or maxTimeMS
 *   blockTimeMS: ms          ends the sleep with its error), then go on
 *   writeConcernError: {...} for commands that take a write concern: run
 *                            normally, then add this writeConcernError
 *   appName / threadName /   only commands of connections with that
 *   namespace                application name, thread ("conn<N>") or
 *                            namespace ("db.coll", or "db")
 *   failInternalCommands     also fail connections whose hello declared an
 *                            internal client (spared by default)
 *   failLocalClients         accepted; Cairn has no local clients
 *
 * Where dispatch asks: net_fp_before_command right before the handler
 * (after the member-state checks, as mongod's evaluation follows them),
 * in mongod's order: errorLabels, blockConnection, closeConnection,
 * errorCode. net_fp_after_command once a write command succeeded, for
 * writeConcernError: a second, separate entry into the fail point, as in
 * mongod (data with both blockConnection and writeConcernError counts
 * twice). Deliberate difference: mongod adds the writeConcernError instead
 * of waiting for the write concern; Cairn's write handlers wait before the
 * fail point is asked, so the real wait still happens.
 *
 * Threads: any. A fail point's state is guarded by its mutex; `on` lets a
 * command skip the mutex while the fail point is off (the common case).
 * The data an activation uses is copied out under the mutex, so a
 * concurrent configureFailPoint never changes it under a running command.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/op.h"
#include "net/net_int.h"
#include "net/server_int.h"

enum fp_mode { FP_OFF, FP_ALWAYS, FP_TIMES, FP_SKIP, FP_RANDOM };

struct fail_point
{
    const char *name;
    atomic_bool on;       /* mode != FP_OFF, readable without the mutex */
    atomic_llong entered; /* activations since the process began */
    pthread_mutex_t mu;   /* guards mode, value and data */
    enum fp_mode mode;
    int64_t value; /* times left, skips left, or the activation threshold */
    bson_t *data;  /* owned; NULL when none */
};

static struct fail_point fail_command = {.name = "failCommand", .mu = PTHREAD_MUTEX_INITIALIZER};

/* pauseCheckpointInstall: while on (any mode but "off"), a checkpoint install
 * in progress on this member waits before its next chunk (repl's
 * repl_debug_pause_install), so tests can see STARTUP2/RECOVERING and kill
 * the member mid-install. Its data is ignored. */
static struct fail_point pause_install = {.name = "pauseCheckpointInstall",
                                          .mu = PTHREAD_MUTEX_INITIALIZER};
static struct fail_point *const registry[] = {&fail_command, &pause_install};

#define N_FAIL_POINTS (sizeof registry / sizeof registry[0])

/* blockConnection sleeps wait here; only kills signal it. */
static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t block_cv = PTHREAD_COND_INITIALIZER;

/* ---- Modes -------------------------------------------------------------- */

/* A uniform int in [0, INT32_MAX] from a per-thread xorshift64* state. */
static int32_t next_rand(void)
{
    static _Thread_local uint64_t state;
    static atomic_ullong seed_counter;

    if (state == 0) {
        state = cairn_mono_ns() ^ ((uint64_t)(uintptr_t)&state << 17) ^
                (atomic_fetch_add(&seed_counter, 1) * 0x9E3779B97F4A7C15ull);
        if (state == 0) {
            state = 0x2545F4914F6CDD1Dull;
        }
    }
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (int32_t)((state * 0x2545F4914F6CDD1Dull) >> 33);
}

/* With fp->mu held, the fail point on and its data applying: whether this
 * entry activates, by mode (mongod's _evaluateByMode). */
static bool by_mode_locked(struct fail_point *fp)
{
    switch (fp->mode) {
        case FP_ALWAYS:
            return true;
        case FP_TIMES:
            if (--fp->value <= 0) {
                fp->mode = FP_OFF;
                atomic_store(&fp->on, false);
            }
            return true;
        case FP_SKIP:
            if (fp->value <= 0) {
                return true;
            }
            fp->value--;
            return false;
        case FP_RANDOM:
            return next_rand() < fp->value;
        case FP_OFF:
        default:
            return false;
    }
}

/* ---- failCommand: does the data apply to this command? ------------------ */

/* Names of one command (mongod's aliases). */
static const char *const alias_groups[][3] = {
    {"hello", "isMaster", "ismaster"},
    {"buildInfo", "buildinfo", NULL},
    {"findAndModify", "findandmodify", NULL},
    {"dropIndexes", "deleteIndexes", NULL},
};

static int alias_group(const char *name)
{
    for (size_t g = 0; g < sizeof alias_groups / sizeof alias_groups[0]; g++) {
        for (int k = 0; k < 3 && alias_groups[g][k] != NULL; k++) {
            if (strcmp(alias_groups[g][k], name) == 0) {
                return (int)g;
            }
        }
    }
    return -1;
}

static bool same_command(const char *listed, const char *name)
{
    int g;

    if (strcmp(listed, name) == 0) {
        return true;
    }
    g = alias_group(listed);
    return g >= 0 && g == alias_group(name);
}

/* What the data is compared with, gathered before the fail point's mutex
 * is taken (the appName needs the server lock). */
struct target
{
    const char *name; /* the command definition's name */
    char ns[TXN_NS_MAX + 16];
    char thread[32];
    char app[256];
    bool internal;
};

static void target_init(struct target *t, const struct net_cmd *c, const struct net_cmd_def *def)
{
    t->name = def->name;
    net_cmd_op_ns(c, false, t->ns, sizeof t->ns);
    snprintf(t->thread, sizeof t->thread, "conn%llu", (unsigned long long)c->conn_id);
    net_conn_app_name(c->conn, t->app, sizeof t->app);
    t->internal = net_conn_is_internal(c->conn);
}

static bool field_bool(const bson_t *data, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, data, field) && bson_iter_as_bool(&it);
}

/* mongod's data.getStringField: "" when absent or not a string. */
static const char *field_str(const bson_t *data, const char *field)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, data, field) && BSON_ITER_HOLDS_UTF8(&it)) {
        return bson_iter_utf8(&it, NULL);
    }
    return "";
}

/* mongod's CommandHelpers::shouldActivateFailCommandFailPoint. */
static bool applies(const bson_t *data, const struct target *t)
{
    bson_iter_t it, sub;

    if (strcmp(t->name, "configureFailPoint") == 0) {
        return false; /* never, even when listed */
    }
    if (t->internal && !field_bool(data, "failInternalCommands")) {
        return false;
    }
    if (bson_has_field(data, "threadName") && strcmp(field_str(data, "threadName"), t->thread)) {
        return false;
    }
    if (bson_has_field(data, "appName") && strcmp(field_str(data, "appName"), t->app) != 0) {
        return false;
    }
    if (bson_has_field(data, "namespace") && strcmp(field_str(data, "namespace"), t->ns) != 0) {
        return false;
    }
    if (bson_has_field(data, "failAllCommands")) {
        return true;
    }
    if (!bson_iter_init_find(&it, data, "failCommands") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &sub)) {
        return false;
    }
    while (bson_iter_next(&sub)) {
        if (BSON_ITER_HOLDS_UTF8(&sub) && same_command(bson_iter_utf8(&sub, NULL), t->name)) {
            return true;
        }
    }
    return false;
}

/* A copy of the data's errorLabels array, or NULL when it has none. */
static bson_t *copy_labels(const bson_t *data)
{
    bson_iter_t it;
    const uint8_t *buf;
    uint32_t len;

    if (!bson_iter_init_find(&it, data, "errorLabels") || !BSON_ITER_HOLDS_ARRAY(&it)) {
        return NULL;
    }
    bson_iter_array(&it, &len, &buf);
    return bson_new_from_data(buf, len);
}

/* ---- Entering the fail point from dispatch ------------------------------ */

void net_fp_action_clear(struct net_fp_action *a)
{
    if (a->labels != NULL) {
        bson_destroy(a->labels);
    }
    memset(a, 0, sizeof *a);
    a->block_ms = -1;
}

void net_fp_before_command(const struct net_cmd *c,
                           const struct net_cmd_def *def,
                           struct net_fp_action *out)
{
    struct fail_point *fp = &fail_command;
    struct target t;
    bson_iter_t it;
    bool close, block, has_code;

    memset(out, 0, sizeof *out);
    out->block_ms = -1;
    if (!atomic_load_explicit(&fp->on, memory_order_acquire)) {
        return;
    }
    target_init(&t, c, def);
    pthread_mutex_lock(&fp->mu);
    if (fp->mode == FP_OFF || fp->data == NULL || !applies(fp->data, &t)) {
        goto out;
    }
    close = field_bool(fp->data, "closeConnection");
    block = field_bool(fp->data, "blockConnection");
    has_code = bson_has_field(fp->data, "errorCode");
    if (!(close || block || has_code) || !by_mode_locked(fp)) {
        goto out;
    }
    atomic_fetch_add(&fp->entered, 1);
    out->active = true;
    out->labels = copy_labels(fp->data);
    out->close_connection = close;
    if (block && bson_iter_init_find(&it, fp->data, "blockTimeMS")) {
        out->block_ms = bson_iter_as_int64(&it);
    }
    if (has_code && bson_iter_init_find(&it, fp->data, "errorCode")) {
        out->fail = true;
        out->error_code = (int)bson_iter_as_int64(&it);
    }
out:
    pthread_mutex_unlock(&fp->mu);
}

bool net_cmd_supports_write_concern(const struct net_cmd_def *def)
{
    return (def->flags & NET_CMD_F_WRITE) != 0 || strcmp(def->name, "commitTransaction") == 0 ||
           strcmp(def->name, "abortTransaction") == 0;
}

bool net_fp_after_command(const struct net_cmd *c,
                          const struct net_cmd_def *def,
                          bson_t *reply,
                          bson_t **labels)
{
    struct fail_point *fp = &fail_command;
    struct target t;
    bson_iter_t it;
    bson_t *override;
    bool hit = false;

    if (!atomic_load_explicit(&fp->on, memory_order_acquire) ||
        !net_cmd_supports_write_concern(def) || bson_has_field(reply, "writeConcernError")) {
        return false;
    }
    target_init(&t, c, def);
    pthread_mutex_lock(&fp->mu);
    if (fp->mode == FP_OFF || fp->data == NULL ||
        !bson_iter_init_find(&it, fp->data, "writeConcernError") || !applies(fp->data, &t) ||
        !by_mode_locked(fp)) {
        goto out;
    }
    atomic_fetch_add(&fp->entered, 1);
    hit = true;
    bson_append_iter(reply, "writeConcernError", -1, &it);
    override = copy_labels(fp->data);
    if (override != NULL) {
        if (*labels != NULL) {
            bson_destroy(*labels);
        }
        *labels = override;
    }
out:
    pthread_mutex_unlock(&fp->mu);
    return hit;
}

int net_fp_block(struct cairn_op *op, int64_t ms, struct cairn_error *err)
{
    uint64_t now = cairn_mono_ns();
    uint64_t limit = UINT64_MAX / 4 - now; /* far enough to be "forever" */
    uint64_t ns = ms <= 0 ? 0 : (uint64_t)ms > limit / 1000000u ? limit : (uint64_t)ms * 1000000u;
    uint64_t until = now + ns;
    int rv = 0;

    pthread_mutex_lock(&block_mu);
    while (rv == 0 && cairn_mono_ns() < until) {
        rv = cairn_op_wait(op, &block_mu, &block_cv, until, err);
    }
    pthread_mutex_unlock(&block_mu);
    return rv;
}

void net_fp_reset_all(void)
{
    for (size_t i = 0; i < N_FAIL_POINTS; i++) {
        struct fail_point *fp = registry[i];
        pthread_mutex_lock(&fp->mu);
        fp->mode = FP_OFF;
        atomic_store(&fp->on, false);
        if (fp->data != NULL) {
            bson_destroy(fp->data);
            fp->data = NULL;
        }
        pthread_mutex_unlock(&fp->mu);
    }
}

/* ---- configureFailPoint ------------------------------------------------- */

/* mongod's FailPoint::parseBSON for `mode`. */
static int parse_mode(struct net_cmd *c, enum fp_mode *mode, int64_t *value)
{
    bson_iter_t it, sub;
    bson_t obj;
    const uint8_t *data;
    uint32_t len;

    *value = 0;
    if (!bson_iter_init_find(&it, c->body, "mode")) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_IllegalOperation,
                                 "When setting a failpoint, you must supply a 'mode'");
    }
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        const char *s = bson_iter_utf8(&it, NULL);
        if (strcmp(s, "off") == 0) {
            *mode = FP_OFF;
        } else if (strcmp(s, "alwaysOn") == 0) {
            *mode = FP_ALWAYS;
        } else {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue, "unknown mode: %s", s);
        }
        return 0;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "'mode' must be a string or JSON object");
    }
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&obj, data, len)) {
        return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_InvalidBSON, "'mode' is invalid");
    }
    if (bson_has_field(&obj, "times") || bson_has_field(&obj, "skip")) {
        const char *key = bson_has_field(&obj, "times") ? "times" : "skip";
        if (net_extract_integer(&obj, key, value, &c->err) != 0) {
            return c->err.code;
        }
        if (*value < 0) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "'%s' option to 'mode' must be positive", key);
        }
        if (*value > INT32_MAX) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "'%s' option to 'mode' is too large", key);
        }
        *mode = key[0] == 't' ? FP_TIMES : FP_SKIP;
        return 0;
    }
    if (bson_iter_init_find(&sub, &obj, "activationProbability")) {
        double p;
        if (!BSON_ITER_HOLDS_NUMBER(&sub)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "the 'activationProbability' option to 'mode' must be a "
                                     "double between 0 and 1");
        }
        p = bson_iter_as_double(&sub);
        if (!(p >= 0 && p <= 1)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "activationProbability must be between 0.0 and 1.0; found %g",
                                     p);
        }
        *mode = FP_RANDOM;
        *value = (int64_t)((double)INT32_MAX * p);
        return 0;
    }
    return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                             "'mode' must be one of 'off', 'alwaysOn', '{times:n}', '{skip:n}' or "
                             "'{activationProbability:p}'");
}

static int wrong_field_type(struct net_cmd *c, const bson_iter_t *it, const char *expected)
{
    return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "failCommand data field '%s' must be %s, not %s", bson_iter_key(it),
                             expected, qry_type_name(bson_iter_type(it)));
}

static bool is_bool_like(const bson_iter_t *it)
{
    return BSON_ITER_HOLDS_BOOL(it) || BSON_ITER_HOLDS_NUMBER(it);
}

/* An array whose elements are all strings. */
static bool is_string_array(const bson_iter_t *it)
{
    bson_iter_t sub;

    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &sub)) {
        return false;
    }
    while (bson_iter_next(&sub)) {
        if (!BSON_ITER_HOLDS_UTF8(&sub)) {
            return false;
        }
    }
    return true;
}

/* Checks failCommand's data (see the file comment for the fields). */
static int check_fail_command_data(struct net_cmd *c, const bson_t *data)
{
    bson_iter_t it;
    bool block = false, has_block_time = false, has_commands = false;

    if (!bson_iter_init(&it, data)) {
        return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_InvalidBSON, "invalid 'data'");
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);

        if (strcmp(key, "failCommands") == 0) {
            if (!is_string_array(&it)) {
                return wrong_field_type(c, &it, "an array of command names");
            }
            has_commands = true;
        } else if (strcmp(key, "failAllCommands") == 0) {
            has_commands = true;
        } else if (strcmp(key, "errorCode") == 0) {
            int64_t code;
            if (!BSON_ITER_HOLDS_NUMBER(&it)) {
                return wrong_field_type(c, &it, "a number");
            }
            if (net_extract_integer(data, key, &code, &c->err) != 0) {
                return c->err.code;
            }
            if (code < INT32_MIN || code > INT32_MAX) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                         "failCommand errorCode %lld is not a 32-bit integer",
                                         (long long)code);
            }
        } else if (strcmp(key, "errorLabels") == 0) {
            if (!is_string_array(&it)) {
                return wrong_field_type(c, &it, "an array of strings");
            }
        } else if (strcmp(key, "closeConnection") == 0 ||
                   strcmp(key, "failInternalCommands") == 0 ||
                   strcmp(key, "failLocalClients") == 0) {
            if (!is_bool_like(&it)) {
                return wrong_field_type(c, &it, "a boolean");
            }
        } else if (strcmp(key, "blockConnection") == 0) {
            if (!is_bool_like(&it)) {
                return wrong_field_type(c, &it, "a boolean");
            }
            block = bson_iter_as_bool(&it);
        } else if (strcmp(key, "blockTimeMS") == 0) {
            int64_t ms;
            if (!BSON_ITER_HOLDS_NUMBER(&it)) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                         "must specify 'blockTimeMS' when 'blockConnection' is "
                                         "true");
            }
            if (net_extract_integer(data, key, &ms, &c->err) != 0) {
                return c->err.code;
            }
            if (ms < 0) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                         "'blockTimeMS' must be non-negative");
            }
            has_block_time = true;
        } else if (strcmp(key, "writeConcernError") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                return wrong_field_type(c, &it, "an object");
            }
        } else if (strcmp(key, "appName") == 0 || strcmp(key, "threadName") == 0 ||
                   strcmp(key, "namespace") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                return wrong_field_type(c, &it, "a string");
            }
        } else if (strcmp(key, "errorExtraInfo") == 0 || strcmp(key, "tassert") == 0) {
            return cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_BadValue,
                                     "failCommand data field '%s' is not supported by this server",
                                     key);
        } else {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "unknown failCommand data field '%s'", key);
        }
    }
    if (!has_commands) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "failCommand needs data.failCommands, the names of the commands "
                                 "to fail (or failAllCommands)");
    }
    if (block && !has_block_time) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "must specify 'blockTimeMS' when 'blockConnection' is true");
    }
    return 0;
}

static int cmd_configure_fail_point(struct net_cmd *c)
{
    struct fail_point *fp = NULL;
    bson_iter_t it;
    const char *name = "";
    enum fp_mode mode = FP_OFF;
    int64_t value;
    bson_t *data = NULL;
    long long count;

    if (bson_iter_init(&it, c->body) && bson_iter_next(&it) && BSON_ITER_HOLDS_UTF8(&it)) {
        name = bson_iter_utf8(&it, NULL);
    }
    for (size_t i = 0; i < N_FAIL_POINTS; i++) {
        if (strcmp(registry[i]->name, name) == 0) {
            fp = registry[i];
        }
    }
    if (fp == NULL) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_FailPointSetFailed, "%s not found",
                                 name);
    }
    if (parse_mode(c, &mode, &value) != 0) {
        return NET_CMD_ERROR;
    }
    if (bson_iter_init_find(&it, c->body, "data")) {
        const uint8_t *buf;
        uint32_t len;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "the 'data' option must be a JSON object");
        }
        bson_iter_document(&it, &len, &buf);
        data = bson_new_from_data(buf, len);
        if (data == NULL) {
            return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_InvalidBSON,
                                     "the 'data' option is invalid");
        }
    }
    if (fp == &fail_command && mode != FP_OFF) {
        bson_t empty = BSON_INITIALIZER;
        int rv = check_fail_command_data(c, data != NULL ? data : &empty);
        bson_destroy(&empty);
        if (rv != 0) {
            if (data != NULL) {
                bson_destroy(data);
            }
            return NET_CMD_ERROR;
        }
    }
    pthread_mutex_lock(&fp->mu);
    count = atomic_load(&fp->entered);
    if (fp->data != NULL) {
        bson_destroy(fp->data);
    }
    fp->data = data;
    fp->mode = mode;
    fp->value = value;
    atomic_store_explicit(&fp->on, mode != FP_OFF, memory_order_release);
    pthread_mutex_unlock(&fp->mu);
    if (fp == &pause_install) {
        repl_debug_pause_install(c->deps->repl, mode != FP_OFF);
    }
    net_log_event(net_conn_server(c->conn), "Set failpoint %s from conn%llu", fp->name,
                  (unsigned long long)c->conn_id);
    if (count <= INT32_MAX) {
        BSON_APPEND_INT32(&c->reply, "count", (int32_t)count);
    } else {
        BSON_APPEND_INT64(&c->reply, "count", count);
    }
    return NET_CMD_DONE;
}

static int cmd_configure_fail_point_w(struct net_cmd *c)
{
    return cmd_configure_fail_point(c) == NET_CMD_DONE ? NET_CMD_DONE : NET_CMD_ERROR;
}

const struct net_cmd_def net_cmds_test[] = {
    {"configureFailPoint", cmd_configure_fail_point_w, NET_CMD_F_ADMIN_ONLY},
    {NULL, NULL, 0},
};
