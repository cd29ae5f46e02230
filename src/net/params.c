/*
 * params.c: the server parameters, in one table, and the commands that
 * read and change them: getParameter, setParameter (both admin only) and
 * cairnd's --setParameter name=value at start.
 *
 * Each parameter has a type, whether it may be set at startup and/or at
 * runtime, its bounds, a getter and (when settable) a setter. The table is
 * sorted by name because mongod keeps its parameters in a sorted map:
 * getParameter answers in that order, and setParameter applies several
 * parameters in that order and reports as `was` the old value of the
 * first one it sets.
 *
 *   name                                type  startup runtime  where the value lives
 *   authenticationMechanisms            array    -       -     none (no authentication)
 *   cairnQueryMemoryBudgetBytes         int64    x       x     query (Cairn's own)
 *   cursorTimeoutMillis                 int64    x       x     here (cursor.c reads it)
 *   enableTestCommands                  bool     x       -     here (process-wide)
 *   featureCompatibilityVersion         doc      -       -     constant
 *   incompleteMessageTimeoutMillis      int64    x       x     rxbudget.c (Cairn's)
 *   internalDocumentSourceGroupMaxMemoryBytes
 *                                       int64    x       x     query (qry_set_group_mem_limit)
 *   internalQueryMaxBlockingSortMemoryUsageBytes
 *                                       int      x       x     query (qry_set_sort_mem_limit)
 *   localLogicalSessionTimeoutMinutes   int      -       -     constant (hello reports it)
 *   logLevel                            int      -       -     lib/log.h's threshold
 *   maxAcceptableLogicalClockDriftSecs  int64    -       -     constant (txn enforces it)
 *   maxIncompleteMessageBytes           int64    x       x     rxbudget.c (Cairn's)
 *   maxSessions                         int      x       -     txn (txn_set_max_sessions)
 *   maxTransactionLockRequestTimeoutMillis int   -       -     constant
 *   maxWriteBatchSize                   int      -       -     constant (hello reports it)
 *   transactionLifetimeLimitSeconds     int      x       x     txn (txn_set_lifetime_limit_secs)
 *   ttlMonitorSleepSecs                 int      x       x     txn (txn_set_ttl_sleep_secs)
 *
 * A parameter Cairn only reports (its value is fixed by the code that uses
 * it) answers setParameter with 20 IllegalOperation "not allowed to change
 * [x] at runtime" and --setParameter with a start-up error, never with a
 * pretended success.
 *
 * Errors follow mongod's parameters.cpp and IDL server parameters: 72
 * InvalidOptions for unknown names and "no option found", 20
 * IllegalOperation for a parameter that is not runtime-settable, 2
 * BadValue for a value of the wrong type or out of bounds.
 *
 * Threads: every function is thread-safe; settable values are atomics.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "net/cursor.h"
#include "net/net_int.h"
#include "net/rxbudget.h"
#include "net/server_int.h"
#include "net/wire.h"

/* Values hello and the txn layer use; reported here as they are. */
#define SESSION_TIMEOUT_MINUTES 30
#define MAX_WRITE_BATCH 100000
#define LOCK_REQUEST_TIMEOUT_MS 5
#define CLOCK_DRIFT_SECS (365LL * 24 * 3600)

static atomic_bool test_commands_enabled;
static atomic_llong cursor_timeout_ms = (long long)(NET_CURSOR_IDLE_NS / 1000000ull);

bool net_test_commands_enabled(void)
{
    return atomic_load(&test_commands_enabled);
}

uint64_t net_cursor_idle_ns(void)
{
    return (uint64_t)atomic_load(&cursor_timeout_ms) * 1000000ull;
}

/* ---- The table ---------------------------------------------------------- */

enum param_type { PARAM_BOOL, PARAM_INT, PARAM_OTHER };

struct param
{
    const char *name;
    enum param_type type;
    bool at_startup;
    bool at_runtime;
    int64_t min, max; /* PARAM_INT bounds */
    void (*append)(struct net_server *s, bson_t *doc, const char *key);
    /* Sets a validated value (bool as 0/1); NULL when not settable. */
    int (*set)(struct net_server *s, int64_t v, struct cairn_error *err);
};

static void get_auth_mechs(struct net_server *s, bson_t *doc, const char *key)
{
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(doc, key, &arr);
    bson_append_array_end(doc, &arr);
}

static void get_cursor_timeout(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT64(doc, key, atomic_load(&cursor_timeout_ms));
}

static int set_cursor_timeout(struct net_server *s, int64_t v, struct cairn_error *err)
{
    atomic_store(&cursor_timeout_ms, v);
    return 0;
}

static void get_rx_timeout(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT64(doc, key, net_rx_timeout_ms_get());
}

static int set_rx_timeout(struct net_server *s, int64_t v, struct cairn_error *err)
{
    net_rx_timeout_ms_set(v);
    return 0;
}

static void get_rx_budget(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT64(doc, key, net_rx_budget_get());
}

static int set_rx_budget(struct net_server *s, int64_t v, struct cairn_error *err)
{
    net_rx_budget_set(v);
    return 0;
}

static void get_test_commands(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_BOOL(doc, key, atomic_load(&test_commands_enabled));
}

static int set_test_commands(struct net_server *s, int64_t v, struct cairn_error *err)
{
    atomic_store(&test_commands_enabled, v != 0);
    return 0;
}

static void get_fcv(struct net_server *s, bson_t *doc, const char *key)
{
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(doc, key, &sub);
    BSON_APPEND_UTF8(&sub, "version", CAIRN_FCV);
    bson_append_document_end(doc, &sub);
}

static void get_mem_budget(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT64(doc, key, (int64_t)qry_mem_budget());
}

static int set_mem_budget(struct net_server *s, int64_t v, struct cairn_error *err)
{
    qry_set_mem_budget((size_t)v);
    return 0;
}

static void get_sort_mem(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT32(doc, key, (int32_t)qry_sort_mem_limit());
}

static int set_sort_mem(struct net_server *s, int64_t v, struct cairn_error *err)
{
    qry_set_sort_mem_limit((size_t)v);
    return 0;
}

static void get_group_mem(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT64(doc, key, (int64_t)qry_group_mem_limit());
}

static int set_group_mem(struct net_server *s, int64_t v, struct cairn_error *err)
{
    qry_set_group_mem_limit((size_t)v);
    return 0;
}

static void get_session_timeout(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT32(doc, key, SESSION_TIMEOUT_MINUTES);
}

static void get_log_level(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT32(doc, key, cairn_log_threshold <= CAIRN_LOG_DEBUG ? 1 : 0);
}

static void get_clock_drift(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT64(doc, key, CLOCK_DRIFT_SECS);
}

static void get_lock_timeout(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT32(doc, key, LOCK_REQUEST_TIMEOUT_MS);
}

static void get_max_batch(struct net_server *s, bson_t *doc, const char *key)
{
    BSON_APPEND_INT32(doc, key, MAX_WRITE_BATCH);
}

static void get_txn_lifetime(struct net_server *s, bson_t *doc, const char *key)
{
    const struct net_deps *d = net_server_deps(s);
    int64_t v = d->txn != NULL ? txn_lifetime_limit_secs(d->txn) : TXN_DEFAULT_LIFETIME_SECS;
    BSON_APPEND_INT32(doc, key, (int32_t)v);
}

static int set_txn_lifetime(struct net_server *s, int64_t v, struct cairn_error *err)
{
    const struct net_deps *d = net_server_deps(s);
    if (d->txn == NULL) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_IllegalOperation,
                                 "transactionLifetimeLimitSeconds: no transaction manager");
    }
    return txn_set_lifetime_limit_secs(d->txn, v, err);
}

static void get_max_sessions(struct net_server *s, bson_t *doc, const char *key)
{
    const struct net_deps *d = net_server_deps(s);
    int64_t v = d->txn != NULL ? txn_max_sessions(d->txn) : TXN_DEFAULT_MAX_SESSIONS;
    BSON_APPEND_INT32(doc, key, (int32_t)v);
}

static int set_max_sessions(struct net_server *s, int64_t v, struct cairn_error *err)
{
    const struct net_deps *d = net_server_deps(s);
    if (d->txn == NULL) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_IllegalOperation,
                                 "maxSessions: no transaction manager");
    }
    return txn_set_max_sessions(d->txn, v, err);
}

static void get_ttl_sleep(struct net_server *s, bson_t *doc, const char *key)
{
    const struct net_deps *d = net_server_deps(s);
    int64_t v = d->txn != NULL ? txn_ttl_sleep_secs(d->txn) : TXN_DEFAULT_TTL_SLEEP_SECS;
    BSON_APPEND_INT32(doc, key, (int32_t)v);
}

static int set_ttl_sleep(struct net_server *s, int64_t v, struct cairn_error *err)
{
    const struct net_deps *d = net_server_deps(s);
    if (d->txn == NULL) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_IllegalOperation,
                                 "ttlMonitorSleepSecs: no transaction manager");
    }
    return txn_set_ttl_sleep_secs(d->txn, v, err);
}

/* Sorted by name (see the file comment). */
static const struct param params[] = {
    {"authenticationMechanisms", PARAM_OTHER, false, false, 0, 0, get_auth_mechs, NULL},
    {"cairnQueryMemoryBudgetBytes", PARAM_INT, true, true, 1, INT64_MAX, get_mem_budget,
     set_mem_budget},
    {"cursorTimeoutMillis", PARAM_INT, true, true, 0, INT64_MAX / 1000000, get_cursor_timeout,
     set_cursor_timeout},
    {"enableTestCommands", PARAM_BOOL, true, false, 0, 1, get_test_commands, set_test_commands},
    {"featureCompatibilityVersion", PARAM_OTHER, false, false, 0, 0, get_fcv, NULL},
    /* Cairn's: a message must arrive within this of its first byte. */
    {"incompleteMessageTimeoutMillis", PARAM_INT, true, true, 1, INT64_MAX / 1000000,
     get_rx_timeout, set_rx_timeout},
    {"internalDocumentSourceGroupMaxMemoryBytes", PARAM_INT, true, true, 1, INT64_MAX,
     get_group_mem, set_group_mem},
    {"internalQueryMaxBlockingSortMemoryUsageBytes", PARAM_INT, true, true, 1, INT32_MAX,
     get_sort_mem, set_sort_mem},
    {"localLogicalSessionTimeoutMinutes", PARAM_INT, false, false, 0, 0, get_session_timeout, NULL},
    {"logLevel", PARAM_INT, false, false, 0, 0, get_log_level, NULL},
    {"maxAcceptableLogicalClockDriftSecs", PARAM_INT, false, false, 0, 0, get_clock_drift, NULL},
    /* Cairn's: bytes admitted for messages being received, server-wide;
     * at least one largest message. */
    {"maxIncompleteMessageBytes", PARAM_INT, true, true, WIRE_MAX_MESSAGE, INT64_MAX / 2,
     get_rx_budget, set_rx_budget},
    {"maxSessions", PARAM_INT, true, false, 1, INT32_MAX, get_max_sessions, set_max_sessions},
    {"maxTransactionLockRequestTimeoutMillis", PARAM_INT, false, false, 0, 0, get_lock_timeout,
     NULL},
    {"maxWriteBatchSize", PARAM_INT, false, false, 0, 0, get_max_batch, NULL},
    {"transactionLifetimeLimitSeconds", PARAM_INT, true, true, 1, INT32_MAX, get_txn_lifetime,
     set_txn_lifetime},
    {"ttlMonitorSleepSecs", PARAM_INT, true, true, 1, INT32_MAX, get_ttl_sleep, set_ttl_sleep},
};

#define N_PARAMS (sizeof params / sizeof params[0])

static const struct param *find_param(const char *name)
{
    for (size_t i = 0; i < N_PARAMS; i++) {
        if (strcmp(params[i].name, name) == 0) {
            return &params[i];
        }
    }
    return NULL;
}

/* The bounds check of an int parameter, with mongod's IDL message. */
static int check_bounds(const struct param *p, int64_t v, struct cairn_error *err)
{
    if (v < p->min) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "Invalid value for parameter %s: %" PRId64
                                 " is not greater than or equal to %" PRId64,
                                 p->name, v, p->min);
    }
    if (v > p->max) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "Invalid value for parameter %s: %" PRId64
                                 " is not less than or equal to %" PRId64,
                                 p->name, v, p->max);
    }
    return 0;
}

/* ---- Start-up (--setParameter) ----------------------------------------- */

/* Parses `value` for `p` into *out. Errors: CAIRN_EINVAL with a message
 * for the command line. */
static int parse_startup_value(const struct param *p,
                               const char *value,
                               int64_t *out,
                               struct cairn_error *err)
{
    struct cairn_error inner = {0, 0, {0}};

    if (p->type == PARAM_BOOL) {
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) {
            *out = 0;
            return 0;
        }
        return cairn_error_setf(err, CAIRN_EINVAL,
                                "Bad value for --setParameter %s=%s: expected true, false, 1 or 0",
                                p->name, value);
    }
    if (p->type == PARAM_INT) {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(value, &end, 10);
        if (errno != 0 || *value == '\0' || *end != '\0') {
            return cairn_error_setf(err, CAIRN_EINVAL,
                                    "Bad value for --setParameter %s=%s: expected an integer",
                                    p->name, value);
        }
        if (check_bounds(p, v, &inner) != 0) {
            return cairn_error_setf(err, CAIRN_EINVAL, "Bad value for --setParameter %s=%s: %s",
                                    p->name, value, inner.msg);
        }
        *out = v;
        return 0;
    }
    return cairn_error_setf(err, CAIRN_EINVAL, "Cannot use --setParameter to set '%s'", p->name);
}

int net_param_check_startup(const char *name, const char *value, struct cairn_error *err)
{
    const struct param *p = find_param(name);
    int64_t v;

    if (p == NULL) {
        return cairn_error_setf(err, CAIRN_EINVAL, "Unknown --setParameter '%s'", name);
    }
    if (!p->at_startup || p->set == NULL) {
        return cairn_error_setf(err, CAIRN_EINVAL,
                                "Cannot use --setParameter to set '%s' at startup", name);
    }
    return parse_startup_value(p, value, &v, err);
}

int net_params_apply_startup(struct net_server *s,
                             const struct net_param_setting *settings,
                             size_t n,
                             struct cairn_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct param *p;
        struct cairn_error inner = {0, 0, {0}};
        int64_t v;
        int rv = net_param_check_startup(settings[i].name, settings[i].value, err);

        if (rv != 0) {
            return rv;
        }
        p = find_param(settings[i].name);
        (void)parse_startup_value(p, settings[i].value, &v, err);
        if (p->set(s, v, &inner) != 0) {
            return cairn_error_setf(err, CAIRN_EINVAL, "Bad value for --setParameter %s=%s: %s",
                                    p->name, settings[i].value, inner.msg);
        }
        cairn_log(CAIRN_LOG_INFO, "net", "setParameter %s=%s", p->name, settings[i].value);
    }
    return 0;
}

/* ---- getParameter ------------------------------------------------------- */

static void append_param(struct net_server *s, const struct param *p, bool details, bson_t *out)
{
    bson_t sub;

    if (!details) {
        p->append(s, out, p->name);
        return;
    }
    BSON_APPEND_DOCUMENT_BEGIN(out, p->name, &sub);
    p->append(s, &sub, "value");
    BSON_APPEND_BOOL(&sub, "settableAtRuntime", p->at_runtime && p->set != NULL);
    BSON_APPEND_BOOL(&sub, "settableAtStartup", p->at_startup && p->set != NULL);
    bson_append_document_end(out, &sub);
}

/* mongod's parseGetParameterOptions: "*" means all parameters; a document
 * holds {allParameters, showDetails} (booleans, nothing else); any other
 * value means the parameters named in the command. */
static int parse_get_options(struct net_cmd *c, const bson_iter_t *first, bool *all, bool *details)
{
    bson_iter_t sub;

    *all = false;
    *details = false;
    if (BSON_ITER_HOLDS_UTF8(first)) {
        *all = strcmp(bson_iter_utf8(first, NULL), "*") == 0;
        return 0;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(first) || !bson_iter_recurse(first, &sub)) {
        return 0;
    }
    while (bson_iter_next(&sub)) {
        const char *key = bson_iter_key(&sub);
        bool *target;

        if (strcmp(key, "allParameters") == 0) {
            target = all;
        } else if (strcmp(key, "showDetails") == 0) {
            target = details;
        } else {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlUnknownField,
                                     "BSON field 'getParameter.%s' is an unknown field.", key);
        }
        if (!BSON_ITER_HOLDS_BOOL(&sub)) {
            return cairn_error_mongo(
                &c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                "BSON field 'getParameter.%s' is the wrong type '%s', expected type 'bool'", key,
                qry_type_name(bson_iter_type(&sub)));
        }
        *target = bson_iter_bool(&sub);
    }
    return 0;
}

static int cmd_get_parameter(struct net_cmd *c)
{
    struct net_server *s = net_conn_server(c->conn);
    bson_iter_t it;
    bool all, details;
    int n = 0;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return NET_CMD_ERROR;
    }
    if (parse_get_options(c, &it, &all, &details) != 0) {
        return NET_CMD_ERROR;
    }
    for (size_t i = 0; i < N_PARAMS; i++) {
        if (all || bson_has_field(c->body, params[i].name)) {
            append_param(s, &params[i], details, &c->reply);
            n++;
        }
    }
    if (n == 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions, "no option found to get");
        return NET_CMD_ERROR;
    }
    return NET_CMD_DONE;
}

/* ---- setParameter ------------------------------------------------------- */

/* Reads a setParameter value for `p` into *v. Booleans take any value's
 * truth (mongod coerces); integers take an integral number in bounds. */
static int value_of(struct net_cmd *c, const struct param *p, const bson_iter_t *it, int64_t *v)
{
    bson_t tmp = BSON_INITIALIZER;
    int rv;

    if (p->type == PARAM_BOOL) {
        *v = bson_iter_as_bool(it) ? 1 : 0;
        return 0;
    }
    /* net_extract_integer reads a document: put the value in one. */
    bson_append_iter(&tmp, "value", -1, it);
    rv = net_extract_integer(&tmp, "value", v, &c->err);
    bson_destroy(&tmp);
    if (rv != 0) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "Invalid value for parameter %s: expected an integer, found %s",
                                 p->name, qry_type_name(bson_iter_type(it)));
    }
    return check_bounds(p, *v, &c->err);
}

static int cmd_set_parameter(struct net_cmd *c)
{
    struct net_server *s = net_conn_server(c->conn);
    bson_iter_t it;
    bool have[N_PARAMS];
    int n_set = 0;

    memset(have, 0, sizeof have);
    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return NET_CMD_ERROR;
    }
    /* Check every named parameter before setting any (mongod does). */
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const struct param *p;
        size_t idx;

        if (net_is_generic_arg(key)) {
            continue;
        }
        p = find_param(key);
        if (p == NULL) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                     "attempted to set unrecognized parameter [%s], use help:true "
                                     "to see options ",
                                     key);
        }
        if (!p->at_runtime || p->set == NULL) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_IllegalOperation,
                                     "not allowed to change [%s] at runtime", key);
        }
        idx = (size_t)(p - params);
        if (have[idx]) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                     "attempted to set parameter [%s] twice in the same "
                                     "setParameter command",
                                     key);
        }
        have[idx] = true;
    }
    /* Set them in name order; `was` is the first one's old value. A failing
     * set fails the command, leaving those before it set (as mongod). */
    for (size_t i = 0; i < N_PARAMS; i++) {
        const struct param *p = &params[i];
        int64_t v;

        if (!have[i]) {
            continue;
        }
        /* Named once (checked above), so the first field of that name. */
        if (!bson_iter_init_find(&it, c->body, p->name) || value_of(c, p, &it, &v) != 0) {
            return NET_CMD_ERROR;
        }
        if (n_set == 0) {
            p->append(s, &c->reply, "was");
        }
        if (p->set(s, v, &c->err) != 0) {
            return NET_CMD_ERROR;
        }
        net_log_event(s, "Successfully set parameter %s to %" PRId64, p->name, v);
        n_set++;
    }
    if (n_set == 0) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "no option found to set, use help:true to see options ");
    }
    return NET_CMD_DONE;
}

/* Handlers return cairn_error_mongo's CAIRN_E* code on failure. */
static int cmd_get_parameter_w(struct net_cmd *c)
{
    return cmd_get_parameter(c) == NET_CMD_DONE ? NET_CMD_DONE : NET_CMD_ERROR;
}

static int cmd_set_parameter_w(struct net_cmd *c)
{
    return cmd_set_parameter(c) == NET_CMD_DONE ? NET_CMD_DONE : NET_CMD_ERROR;
}

const struct net_cmd_def net_cmds_params[] = {
    {"getParameter", cmd_get_parameter_w, NET_CMD_F_ADMIN_ONLY},
    {"setParameter", cmd_set_parameter_w, NET_CMD_F_ADMIN_ONLY},
    {NULL, NULL, 0},
};
