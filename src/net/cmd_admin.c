/*
 * cmd_admin.c: the administrative commands (net_cmds_admin): the
 * handshake (hello / isMaster, in hello.c), ping, buildInfo, serverStatus, the
 * replica-set commands (replSetInitiate, replSetGetStatus,
 * replSetGetConfig) and small diagnostics tools send (connectionStatus,
 * whatsmyuri, getCmdLineOpts, hostInfo, listCommands, getLog). Server
 * parameters live in params.c, currentOp/killOp in cmd_ops.c and
 * configureFailPoint in failpoint.c.
 * Authentication commands answer a clear NotImplemented error.
 *
 * Every handler runs on a worker thread and only appends to c->reply;
 * dispatch adds ok, $clusterTime and operationTime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "net/cursor.h"
#include "net/hello.h"
#include "net/net_int.h"
#include "net/rxbudget.h"
#include "net/server_int.h"
#include "net/wire.h"

/* ---- Helpers ------------------------------------------------------------ */

static const char *state_str(int state)
{
    switch (state) {
        case REPL_STATE_STARTUP:
            return "STARTUP";
        case REPL_STATE_PRIMARY:
            return "PRIMARY";
        case REPL_STATE_SECONDARY:
            return "SECONDARY";
        case REPL_STATE_RECOVERING:
            return "RECOVERING";
        case REPL_STATE_STARTUP2:
            return "STARTUP2";
        case REPL_STATE_ARBITER:
            return "ARBITER";
        case REPL_STATE_DOWN:
            return "DOWN";
        case REPL_STATE_ROLLBACK:
            return "ROLLBACK";
        case REPL_STATE_REMOVED:
            return "REMOVED";
        default:
            return "UNKNOWN";
    }
}

/* ---- ping / buildInfo --------------------------------------------------- */

static int cmd_ping(struct net_cmd *c)
{
    return NET_CMD_DONE;
}

static int cmd_build_info(struct net_cmd *c)
{
    bson_t arr;

    BSON_APPEND_UTF8(&c->reply, "version", CAIRN_VERSION);
    BSON_APPEND_UTF8(&c->reply, "gitVersion", "cairn-" CAIRN_VERSION);
    BSON_APPEND_ARRAY_BEGIN(&c->reply, "versionArray", &arr);
    BSON_APPEND_INT32(&arr, "0", CAIRN_VERSION_MAJOR);
    BSON_APPEND_INT32(&arr, "1", CAIRN_VERSION_MINOR);
    BSON_APPEND_INT32(&arr, "2", CAIRN_VERSION_PATCH);
    BSON_APPEND_INT32(&arr, "3", 0);
    bson_append_array_end(&c->reply, &arr);
    BSON_APPEND_UTF8(&c->reply, "sysInfo", "deprecated");
    BSON_APPEND_UTF8(&c->reply, "allocator", "system");
    BSON_APPEND_UTF8(&c->reply, "javascriptEngine", "none");
    BSON_APPEND_ARRAY_BEGIN(&c->reply, "modules", &arr);
    bson_append_array_end(&c->reply, &arr);
    BSON_APPEND_INT32(&c->reply, "bits", (int32_t)(sizeof(void *) * 8));
    BSON_APPEND_BOOL(&c->reply, "debug", false);
    BSON_APPEND_INT32(&c->reply, "maxBsonObjectSize", WIRE_MAX_BSON);
    BSON_APPEND_ARRAY_BEGIN(&c->reply, "storageEngines", &arr);
    BSON_APPEND_UTF8(&arr, "0", "cairn");
    bson_append_array_end(&c->reply, &arr);
    return NET_CMD_DONE;
}

/* ---- serverStatus ------------------------------------------------------- */

static int cmd_server_status(struct net_cmd *c)
{
    struct net_server *s = net_conn_server(c->conn);
    const struct net_options *o = net_server_options(s);
    struct net_opcounters *oc = net_server_opcounters(s);
    struct net_server_info info;
    struct repl_status st;
    char host[256 + 16];
    char hn[256];
    uint64_t up_ns;
    bson_t sub;

    net_server_info_get(s, &info);
    repl_status_get(c->deps->repl, &st);
    if (gethostname(hn, sizeof hn) != 0) {
        snprintf(hn, sizeof hn, "localhost");
    }
    hn[sizeof hn - 1] = '\0';
    snprintf(host, sizeof host, "%s:%d", hn, o->port);
    up_ns = cairn_mono_ns() - info.start_mono_ns;

    BSON_APPEND_UTF8(&c->reply, "host", host);
    BSON_APPEND_UTF8(&c->reply, "version", CAIRN_VERSION);
    BSON_APPEND_UTF8(&c->reply, "process", "cairnd");
    BSON_APPEND_INT64(&c->reply, "pid", (int64_t)getpid());
    BSON_APPEND_DOUBLE(&c->reply, "uptime", (double)(up_ns / 1000000000ull));
    BSON_APPEND_INT64(&c->reply, "uptimeMillis", (int64_t)(up_ns / 1000000ull));
    BSON_APPEND_INT64(&c->reply, "uptimeEstimate", (int64_t)(up_ns / 1000000000ull));
    BSON_APPEND_DATE_TIME(&c->reply, "localTime", cairn_wall_ms());

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "connections", &sub);
    BSON_APPEND_INT32(&sub, "current", (int32_t)info.conns_current);
    BSON_APPEND_INT32(&sub, "available", (int32_t)(1000000 - info.conns_current));
    BSON_APPEND_INT64(&sub, "totalCreated", info.conns_total);
    BSON_APPEND_INT32(&sub, "active", (int32_t)info.conns_active);
    BSON_APPEND_INT64(&sub, "awaitingTopologyChanges", net_hello_n_awaiting(net_server_hello(s)));
    bson_append_document_end(&c->reply, &sub);

    {
        /* Cairn's: messages being received (rxbudget.h) and commands ended
         * by their client's disconnect (opguard.h). */
        struct net_rx_stats rx;
        bson_t net, inc;
        net_rx_stats_get(&rx);
        BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "network", &net);
        BSON_APPEND_DOCUMENT_BEGIN(&net, "incompleteMessages", &inc);
        BSON_APPEND_INT64(&inc, "bytesReserved", rx.bytes);
        BSON_APPEND_INT64(&inc, "maxBytes", rx.limit);
        BSON_APPEND_INT64(&inc, "timeoutMillis", rx.timeout_ms);
        BSON_APPEND_INT64(&inc, "timedOut", rx.timeouts);
        BSON_APPEND_INT64(&inc, "budgetWaits", rx.waits);
        bson_append_document_end(&net, &inc);
        BSON_APPEND_INT64(&net, "opsEndedByDisconnect", net_guard_disconnects());
        {
            struct net_guard_stats gs;
            bson_t dw;
            net_guard_stats_get(&gs);
            BSON_APPEND_DOCUMENT_BEGIN(&net, "disconnectWatch", &dw);
            BSON_APPEND_INT64(&dw, "armed", gs.armed);
            BSON_APPEND_INT64(&dw, "endWaits", gs.end_waits);
            bson_append_document_end(&net, &dw);
        }
        bson_append_document_end(&c->reply, &net);
    }

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "opcounters", &sub);
    BSON_APPEND_INT64(&sub, "insert", atomic_load_explicit(&oc->insert, memory_order_relaxed));
    BSON_APPEND_INT64(&sub, "query", atomic_load_explicit(&oc->query, memory_order_relaxed));
    BSON_APPEND_INT64(&sub, "update", atomic_load_explicit(&oc->update, memory_order_relaxed));
    BSON_APPEND_INT64(&sub, "delete", atomic_load_explicit(&oc->del, memory_order_relaxed));
    BSON_APPEND_INT64(&sub, "getmore", atomic_load_explicit(&oc->getmore, memory_order_relaxed));
    BSON_APPEND_INT64(&sub, "command", atomic_load_explicit(&oc->command, memory_order_relaxed));
    bson_append_document_end(&c->reply, &sub);

    if (st.initiated) {
        BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "repl", &sub);
        net_append_hosts(&sub, &st);
        BSON_APPEND_UTF8(&sub, "setName", st.set_name);
        BSON_APPEND_INT32(&sub, "setVersion", st.config_version);
        BSON_APPEND_BOOL(&sub, "ismaster", st.state == REPL_STATE_PRIMARY && st.writable);
        BSON_APPEND_BOOL(&sub, "secondary", st.state == REPL_STATE_SECONDARY);
        if (st.primary >= 0 && (size_t)st.primary < st.n_members) {
            BSON_APPEND_UTF8(&sub, "primary", st.members[st.primary].host);
        }
        if (st.self >= 0 && (size_t)st.self < st.n_members) {
            BSON_APPEND_UTF8(&sub, "me", st.members[st.self].host);
        }
        BSON_APPEND_INT64(&sub, "term", (int64_t)st.term);
        {
            /* Checkpoint installs (Cairn's initial sync) and sessions served. */
            struct repl_counters rc;
            bson_t is;
            repl_counters_get(c->deps->repl, &rc);
            BSON_APPEND_DOCUMENT_BEGIN(&sub, "initialSync", &is);
            BSON_APPEND_INT64(&is, "checkpointInstalls", (int64_t)rc.checkpoint_installs);
            BSON_APPEND_INT64(&is, "checkpointsServed", (int64_t)rc.checkpoints_served);
            BSON_APPEND_INT64(&is, "lastBytes", (int64_t)rc.last_checkpoint_bytes);
            BSON_APPEND_INT64(&is, "lastKeys", (int64_t)rc.last_checkpoint_keys);
            BSON_APPEND_INT64(&is, "lastMillis", (int64_t)rc.last_checkpoint_ms);
            bson_append_document_end(&sub, &is);
            /* Cairn's: encoded bytes of every commit this member queued
             * for replication as primary (the oplog volume it wrote). */
            BSON_APPEND_INT64(&sub, "commitBytesQueued", (int64_t)rc.commit_bytes);
        }
        bson_append_document_end(&c->reply, &sub);
    }

    {
        bson_t metrics, cursor, open, lookup;
        struct net_cursor_stats cs;
        net_cursor_stats_get(&cs);
        BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "metrics", &metrics);
        if (c->deps->txn != NULL) {
            /* As mongod: index keys and documents examined by every scan. */
            struct txn_stats qs;
            bson_t qe;
            txn_stats_get(c->deps->txn, &qs);
            BSON_APPEND_DOCUMENT_BEGIN(&metrics, "queryExecutor", &qe);
            BSON_APPEND_INT64(&qe, "scanned", qs.keys_examined);
            BSON_APPEND_INT64(&qe, "scannedObjects", qs.docs_examined);
            bson_append_document_end(&metrics, &qe);
        }
        BSON_APPEND_DOCUMENT_BEGIN(&metrics, "cursor", &cursor);
        BSON_APPEND_INT64(&cursor, "timedOut", (int64_t)cs.timed_out);
        BSON_APPEND_DOCUMENT_BEGIN(&cursor, "open", &open);
        BSON_APPEND_INT64(&open, "noTimeout", (int64_t)cs.no_timeout);
        BSON_APPEND_INT64(&open, "total", (int64_t)cs.open);
        bson_append_document_end(&cursor, &open);
        /* Cairn's: the cost of finding a cursor by id (hash table). */
        BSON_APPEND_DOCUMENT_BEGIN(&cursor, "lookup", &lookup);
        BSON_APPEND_INT64(&lookup, "buckets", (int64_t)cs.buckets);
        BSON_APPEND_INT64(&lookup, "lookups", (int64_t)cs.lookups);
        BSON_APPEND_INT64(&lookup, "probes", (int64_t)cs.probes);
        bson_append_document_end(&cursor, &lookup);
        bson_append_document_end(&metrics, &cursor);
        /* Cairn's own: BSON value comparisons so far (a complexity probe). */
        bson_t query;
        BSON_APPEND_DOCUMENT_BEGIN(&metrics, "query", &query);
        BSON_APPEND_INT64(&query, "valueComparisons",
                          (int64_t)qry_probe_count(QRY_PROBE_VALUE_CMP));
        BSON_APPEND_INT64(&query, "indexKeyComparisons",
                          (int64_t)qry_probe_count(QRY_PROBE_KEY_CMP));
        BSON_APPEND_INT64(&query, "fieldNameComparisons",
                          (int64_t)qry_probe_count(QRY_PROBE_NAME_CMP));
        BSON_APPEND_INT64(&query, "heldResultBytes", (int64_t)qry_mem_held());
        bson_append_document_end(&metrics, &query);
        bson_append_document_end(&c->reply, &metrics);
    }

    if (c->deps->txn != NULL) {
        struct txn_stats ts;
        bson_t rw;
        txn_stats_get(c->deps->txn, &ts);
        BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "transactions", &sub);
        BSON_APPEND_INT64(&sub, "retriedCommandsCount", ts.retried_commands);
        BSON_APPEND_INT64(&sub, "retriedStatementsCount", ts.retried_statements);
        BSON_APPEND_INT64(&sub, "currentActive", ts.current_active);
        BSON_APPEND_INT64(&sub, "currentInactive", ts.current_inactive);
        BSON_APPEND_INT64(&sub, "currentOpen", ts.current_open);
        BSON_APPEND_INT64(&sub, "totalAborted", ts.total_aborted);
        BSON_APPEND_INT64(&sub, "totalCommitted", ts.total_committed);
        BSON_APPEND_INT64(&sub, "totalStarted", ts.total_started);
        bson_append_document_end(&c->reply, &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "logicalSessionRecordCache", &rw);
        BSON_APPEND_INT32(&rw, "activeSessionsCount", (int32_t)ts.sessions);
        bson_append_document_end(&c->reply, &rw);
    }

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "storageEngine", &sub);
    BSON_APPEND_UTF8(&sub, "name", "cairn");
    BSON_APPEND_BOOL(&sub, "supportsCommittedReads", true);
    BSON_APPEND_BOOL(&sub, "persistent", true);
    bson_append_document_end(&c->reply, &sub);
    return NET_CMD_DONE;
}

/* ---- Replica set -------------------------------------------------------- */

static int cmd_repl_set_initiate(struct net_cmd *c)
{
    bson_iter_t it;
    bson_t config;
    int rv;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return NET_CMD_ERROR;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&config, data, len)) {
            return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_InvalidReplicaSetConfig,
                                     "invalid config document");
        }
    } else {
        /* mongod: anything but a document means "a set of just me". */
        bson_init(&config);
    }
    rv = repl_initiate(c->deps->repl, &config, &c->err);
    bson_destroy(&config);
    if (rv != 0) {
        return NET_CMD_ERROR;
    }
    net_log_event(net_conn_server(c->conn), "replSetInitiate from conn%llu succeeded",
                  (unsigned long long)c->conn_id);
    return NET_CMD_DONE;
}

static int cmd_repl_set_get_config(struct net_cmd *c)
{
    if (repl_config_append(c->deps->repl, &c->reply, "config", &c->err) != 0) {
        if (c->err.mongo_code == 0 && c->err.code == CAIRN_ENOTFOUND) {
            c->err.mongo_code = MONGO_NotYetInitialized;
        }
        return NET_CMD_ERROR;
    }
    return NET_CMD_DONE;
}

/* settings.heartbeatIntervalMillis of the stored config (mongod's default
 * 2000 when absent). */
static int64_t heartbeat_interval(struct net_cmd *c)
{
    bson_t tmp = BSON_INITIALIZER;
    struct cairn_error err = {0, 0, {0}};
    bson_iter_t it;
    int64_t v = 2000;

    if (repl_config_append(c->deps->repl, &tmp, "config", &err) == 0 && bson_iter_init(&it, &tmp) &&
        bson_iter_find_descendant(&it, "config.settings.heartbeatIntervalMillis", &it) &&
        BSON_ITER_HOLDS_NUMBER(&it)) {
        v = bson_iter_as_int64(&it);
    }
    bson_destroy(&tmp);
    return v;
}

static int cmd_repl_set_get_status(struct net_cmd *c)
{
    struct repl_status st;
    int64_t now = cairn_wall_ms();
    int voting = 0, sync_source = -1;
    uint64_t applied_term;
    bson_t sub, arr;

    repl_status_get(c->deps->repl, &st);
    /* The term of the newest applied entry; the primary's own newer
     * entries are of its term. */
    applied_term = st.applied_term != 0 ? st.applied_term : st.term;
    if (!st.initiated) {
        return cairn_error_mongo(&c->err, CAIRN_ESTATE, MONGO_NotYetInitialized,
                                 "no replset config has been received");
    }
    for (size_t i = 0; i < st.n_members; i++) {
        if (st.members[i].votes > 0) {
            voting++;
        }
    }
    BSON_APPEND_UTF8(&c->reply, "set", st.set_name);
    BSON_APPEND_DATE_TIME(&c->reply, "date", now);
    BSON_APPEND_INT32(&c->reply, "myState", st.state);
    BSON_APPEND_INT64(&c->reply, "term", (int64_t)st.term);
    /* A secondary replicates from the leader (raft has no chaining). */
    if (st.state == REPL_STATE_SECONDARY && st.primary >= 0 && (size_t)st.primary < st.n_members) {
        sync_source = st.primary;
    }
    BSON_APPEND_UTF8(&c->reply, "syncSourceHost",
                     sync_source >= 0 ? st.members[sync_source].host : "");
    BSON_APPEND_INT32(&c->reply, "syncSourceId",
                      sync_source >= 0 ? st.members[sync_source].id : -1);
    BSON_APPEND_INT64(&c->reply, "heartbeatIntervalMillis", heartbeat_interval(c));
    BSON_APPEND_INT32(&c->reply, "majorityVoteCount", voting / 2 + 1);
    BSON_APPEND_INT32(&c->reply, "writeMajorityCount", voting / 2 + 1);
    BSON_APPEND_INT32(&c->reply, "votingMembersCount", voting);
    BSON_APPEND_INT32(&c->reply, "writableVotingMembersCount", voting);

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "optimes", &sub);
    net_append_optime(&sub, "lastCommittedOpTime", st.applied_ts, applied_term);
    BSON_APPEND_DATE_TIME(&sub, "lastCommittedWallTime", st.applied_wall_ms);
    net_append_optime(&sub, "readConcernMajorityOpTime", st.applied_ts, applied_term);
    BSON_APPEND_DATE_TIME(&sub, "readConcernMajorityWallTime", st.applied_wall_ms);
    net_append_optime(&sub, "appliedOpTime", st.last_ts,
                      st.last_ts > st.applied_ts ? st.term : applied_term);
    net_append_optime(&sub, "durableOpTime", st.last_ts,
                      st.last_ts > st.applied_ts ? st.term : applied_term);
    BSON_APPEND_DATE_TIME(&sub, "lastAppliedWallTime", st.last_wall_ms);
    BSON_APPEND_DATE_TIME(&sub, "lastDurableWallTime", st.last_wall_ms);
    bson_append_document_end(&c->reply, &sub);

    BSON_APPEND_ARRAY_BEGIN(&c->reply, "members", &arr);
    for (size_t i = 0; i < st.n_members; i++) {
        const struct repl_member *m = &st.members[i];
        char keybuf[16];
        const char *key;
        bson_t mem;
        bool self = (int)i == st.self;
        int state;

        bson_uint32_to_string((uint32_t)i, &key, keybuf, sizeof keybuf);
        if (self) {
            state = st.state;
        } else if (!m->up) {
            state = m->last_hb_ms == 0 ? REPL_STATE_UNKNOWN : REPL_STATE_DOWN;
        } else {
            state = m->peer_state;
        }
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &mem);
        BSON_APPEND_INT32(&mem, "_id", m->id);
        BSON_APPEND_UTF8(&mem, "name", m->host);
        BSON_APPEND_DOUBLE(&mem, "health", self || m->up ? 1.0 : 0.0);
        BSON_APPEND_INT32(&mem, "state", state);
        BSON_APPEND_UTF8(&mem, "stateStr", state_str(state));
        if (self) {
            uint64_t t = st.last_ts > st.applied_ts ? st.term : applied_term;
            BSON_APPEND_INT64(&mem, "uptime", (now - st.start_wall_ms) / 1000);
            net_append_optime(&mem, "optime", st.last_ts, t);
            BSON_APPEND_DATE_TIME(&mem, "optimeDate", st.last_wall_ms);
            net_append_optime(&mem, "optimeDurable", st.last_ts, t);
            BSON_APPEND_DATE_TIME(&mem, "optimeDurableDate", st.last_wall_ms);
            BSON_APPEND_UTF8(&mem, "syncSourceHost",
                             sync_source >= 0 ? st.members[sync_source].host : "");
            BSON_APPEND_INT32(&mem, "syncSourceId",
                              sync_source >= 0 ? st.members[sync_source].id : -1);
            BSON_APPEND_UTF8(&mem, "infoMessage", "");
            if (st.state == REPL_STATE_PRIMARY && st.election_wall_ms > 0) {
                BSON_APPEND_TIMESTAMP(&mem, "electionTime", (uint32_t)(st.election_wall_ms / 1000),
                                      1);
                BSON_APPEND_DATE_TIME(&mem, "electionDate", st.election_wall_ms);
            }
            BSON_APPEND_INT32(&mem, "configVersion", st.config_version);
            BSON_APPEND_INT64(&mem, "configTerm", (int64_t)st.term);
            BSON_APPEND_BOOL(&mem, "self", true);
        } else {
            BSON_APPEND_INT64(&mem, "uptime", m->up ? (now - m->up_since_ms) / 1000 : 0);
            net_append_optime(&mem, "optime", m->applied_ts, m->applied_term);
            BSON_APPEND_DATE_TIME(&mem, "optimeDate", (int64_t)CAIRN_TS_SECS(m->applied_ts) * 1000);
            net_append_optime(&mem, "optimeDurable", m->durable_ts, m->applied_term);
            BSON_APPEND_DATE_TIME(&mem, "optimeDurableDate",
                                  (int64_t)CAIRN_TS_SECS(m->durable_ts) * 1000);
            BSON_APPEND_DATE_TIME(&mem, "lastHeartbeat", m->last_hb_ms);
            BSON_APPEND_DATE_TIME(&mem, "lastHeartbeatRecv", m->last_hb_recv_ms);
            BSON_APPEND_INT64(&mem, "pingMs", m->ping_ms);
            BSON_APPEND_UTF8(&mem, "lastHeartbeatMessage", m->up ? "" : m->hb_msg);
            BSON_APPEND_UTF8(&mem, "syncSourceHost",
                             state == REPL_STATE_SECONDARY && st.primary >= 0
                                 ? st.members[st.primary].host
                                 : "");
            BSON_APPEND_INT32(
                &mem, "syncSourceId",
                state == REPL_STATE_SECONDARY && st.primary >= 0 ? st.members[st.primary].id : -1);
            BSON_APPEND_UTF8(&mem, "infoMessage", "");
            if (state == REPL_STATE_PRIMARY && m->election_ms > 0) {
                BSON_APPEND_TIMESTAMP(&mem, "electionTime", (uint32_t)(m->election_ms / 1000), 1);
                BSON_APPEND_DATE_TIME(&mem, "electionDate", m->election_ms);
            }
            BSON_APPEND_INT32(&mem, "configVersion", st.config_version);
            BSON_APPEND_INT64(&mem, "configTerm", (int64_t)st.term);
        }
        bson_append_document_end(&arr, &mem);
    }
    bson_append_array_end(&c->reply, &arr);
    return NET_CMD_DONE;
}

/* ---- Diagnostics -------------------------------------------------------- */

static int cmd_connection_status(struct net_cmd *c)
{
    bool show = false;
    bson_t info, arr;

    if (net_get_bool(c, "showPrivileges", &show) != 0) {
        return NET_CMD_ERROR;
    }
    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "authInfo", &info);
    BSON_APPEND_ARRAY_BEGIN(&info, "authenticatedUsers", &arr);
    bson_append_array_end(&info, &arr);
    BSON_APPEND_ARRAY_BEGIN(&info, "authenticatedUserRoles", &arr);
    bson_append_array_end(&info, &arr);
    if (show) {
        BSON_APPEND_ARRAY_BEGIN(&info, "authenticatedUserPrivileges", &arr);
        bson_append_array_end(&info, &arr);
    }
    bson_append_document_end(&c->reply, &info);
    return NET_CMD_DONE;
}

static int cmd_whatsmyuri(struct net_cmd *c)
{
    BSON_APPEND_UTF8(&c->reply, "you", net_conn_peer(c->conn));
    return NET_CMD_DONE;
}

static int cmd_get_cmd_line_opts(struct net_cmd *c)
{
    const struct net_options *o = net_server_options(net_conn_server(c->conn));
    struct repl_status st;
    char port[16];
    bson_t argv, parsed, sub;
    uint32_t n = 0;

    repl_status_get(c->deps->repl, &st);
    snprintf(port, sizeof port, "%d", o->port);
    /* The equivalent command line of this server's settings. */
    BSON_APPEND_ARRAY_BEGIN(&c->reply, "argv", &argv);
    net_append_index_key(&argv, n++, "cairnd");
    if (st.set_name[0] != '\0') {
        net_append_index_key(&argv, n++, "--replSet");
        net_append_index_key(&argv, n++, st.set_name);
    }
    net_append_index_key(&argv, n++, "--port");
    net_append_index_key(&argv, n++, port);
    net_append_index_key(&argv, n++, "--bind_ip");
    net_append_index_key(&argv, n++, o->bind_ip);
    if (o->dbpath != NULL) {
        net_append_index_key(&argv, n++, "--dbpath");
        net_append_index_key(&argv, n++, o->dbpath);
    }
    for (size_t i = 0; i < o->n_params; i++) {
        char setting[512];
        snprintf(setting, sizeof setting, "%s=%s", o->params[i].name, o->params[i].value);
        net_append_index_key(&argv, n++, "--setParameter");
        net_append_index_key(&argv, n++, setting);
    }
    bson_append_array_end(&c->reply, &argv);

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "parsed", &parsed);
    BSON_APPEND_DOCUMENT_BEGIN(&parsed, "net", &sub);
    BSON_APPEND_UTF8(&sub, "bindIp", o->bind_ip);
    BSON_APPEND_INT32(&sub, "port", o->port);
    bson_append_document_end(&parsed, &sub);
    if (st.set_name[0] != '\0') {
        BSON_APPEND_DOCUMENT_BEGIN(&parsed, "replication", &sub);
        BSON_APPEND_UTF8(&sub, "replSet", st.set_name);
        bson_append_document_end(&parsed, &sub);
    }
    if (o->n_params > 0) {
        /* As mongod: the values as given, strings. */
        BSON_APPEND_DOCUMENT_BEGIN(&parsed, "setParameter", &sub);
        for (size_t i = 0; i < o->n_params; i++) {
            bool later = false; /* a later setting of the same name wins */
            for (size_t j = i + 1; j < o->n_params; j++) {
                later = later || strcmp(o->params[i].name, o->params[j].name) == 0;
            }
            if (!later) {
                BSON_APPEND_UTF8(&sub, o->params[i].name, o->params[i].value);
            }
        }
        bson_append_document_end(&parsed, &sub);
    }
    if (o->dbpath != NULL) {
        BSON_APPEND_DOCUMENT_BEGIN(&parsed, "storage", &sub);
        BSON_APPEND_UTF8(&sub, "dbPath", o->dbpath);
        bson_append_document_end(&parsed, &sub);
    }
    bson_append_document_end(&c->reply, &parsed);
    return NET_CMD_DONE;
}

/* PRETTY_NAME from /etc/os-release, else `fallback`. */
static void os_name(char *buf, size_t n, const char *fallback)
{
    FILE *f = fopen("/etc/os-release", "r");
    char line[256];

    snprintf(buf, n, "%s", fallback);
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "PRETTY_NAME=", 12) == 0) {
            char *v = line + 12;
            size_t len;
            if (*v == '"') {
                v++;
            }
            len = strcspn(v, "\"\n");
            v[len] = '\0';
            snprintf(buf, n, "%s", v);
            break;
        }
    }
    fclose(f);
}

static int cmd_host_info(struct net_cmd *c)
{
    struct utsname u;
    char hn[256];
    char osn[256];
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    bson_t sub;

    if (uname(&u) != 0) {
        memset(&u, 0, sizeof u);
    }
    if (gethostname(hn, sizeof hn) != 0) {
        snprintf(hn, sizeof hn, "localhost");
    }
    hn[sizeof hn - 1] = '\0';
    os_name(osn, sizeof osn, u.sysname);

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "system", &sub);
    BSON_APPEND_DATE_TIME(&sub, "currentTime", cairn_wall_ms());
    BSON_APPEND_UTF8(&sub, "hostname", hn);
    BSON_APPEND_INT32(&sub, "cpuAddrSize", (int32_t)(sizeof(void *) * 8));
    if (pages > 0 && page_size > 0) {
        int64_t mb = (int64_t)pages * page_size / (1024 * 1024);
        BSON_APPEND_INT64(&sub, "memSizeMB", mb);
        BSON_APPEND_INT64(&sub, "memLimitMB", mb);
    }
    BSON_APPEND_INT32(&sub, "numCores", (int32_t)(cores > 0 ? cores : 1));
    BSON_APPEND_UTF8(&sub, "cpuArch", u.machine);
    BSON_APPEND_BOOL(&sub, "numaEnabled", false);
    bson_append_document_end(&c->reply, &sub);

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "os", &sub);
    BSON_APPEND_UTF8(&sub, "type", u.sysname);
    BSON_APPEND_UTF8(&sub, "name", osn);
    BSON_APPEND_UTF8(&sub, "version", u.release);
    bson_append_document_end(&c->reply, &sub);

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "extra", &sub);
    BSON_APPEND_UTF8(&sub, "versionString", u.version);
    BSON_APPEND_UTF8(&sub, "kernelVersion", u.release);
    BSON_APPEND_INT64(&sub, "pageSize", page_size > 0 ? page_size : 4096);
    bson_append_document_end(&c->reply, &sub);
    return NET_CMD_DONE;
}

static void list_one(const struct net_cmd_def *def, void *arg)
{
    bson_t *cmds = arg;
    bson_t d, arr;

    BSON_APPEND_DOCUMENT_BEGIN(cmds, def->name, &d);
    BSON_APPEND_UTF8(&d, "help", "");
    BSON_APPEND_BOOL(&d, "requiresAuth", false);
    BSON_APPEND_BOOL(&d, "secondaryOk", (def->flags & NET_CMD_F_WRITE) == 0);
    BSON_APPEND_BOOL(&d, "adminOnly", (def->flags & NET_CMD_F_ADMIN_ONLY) != 0);
    BSON_APPEND_ARRAY_BEGIN(&d, "apiVersions", &arr);
    bson_append_array_end(&d, &arr);
    BSON_APPEND_ARRAY_BEGIN(&d, "deprecatedApiVersions", &arr);
    bson_append_array_end(&d, &arr);
    bson_append_document_end(cmds, &d);
}

static int cmd_list_commands(struct net_cmd *c)
{
    bson_t cmds;

    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "commands", &cmds);
    net_cmd_foreach(list_one, &cmds);
    bson_append_document_end(&c->reply, &cmds);
    return NET_CMD_DONE;
}

static int cmd_get_log(struct net_cmd *c)
{
    bson_iter_t it;
    const char *which;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return NET_CMD_ERROR;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "Argument to getLog must be of type String; found %s",
                                 qry_type_name(bson_iter_type(&it)));
    }
    which = bson_iter_utf8(&it, NULL);
    if (strcmp(which, "*") == 0) {
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(&c->reply, "names", &arr);
        BSON_APPEND_UTF8(&arr, "0", "global");
        BSON_APPEND_UTF8(&arr, "1", "startupWarnings");
        bson_append_array_end(&c->reply, &arr);
    } else if (strcmp(which, "global") == 0) {
        net_log_append(net_conn_server(c->conn), &c->reply);
    } else if (strcmp(which, "startupWarnings") == 0) {
        bson_t arr;
        BSON_APPEND_INT64(&c->reply, "totalLinesWritten", 0);
        BSON_APPEND_ARRAY_BEGIN(&c->reply, "log", &arr);
        bson_append_array_end(&c->reply, &arr);
    } else {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions, "no RamLog named: %s",
                                 which);
    }
    return NET_CMD_DONE;
}

static int cmd_auth(struct net_cmd *c)
{
    return cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                             "%s: authentication is not supported by this server (it runs "
                             "without access control)",
                             c->name);
}

/* Handlers return cairn_error_mongo's CAIRN_E* code on failure; turn any
 * non-zero, non-PENDING result into NET_CMD_ERROR. */
#define WRAP(fn)                                                  \
    static int fn##_w(struct net_cmd *c)                          \
    {                                                             \
        int rv = fn(c);                                           \
        return rv == NET_CMD_DONE ? NET_CMD_DONE : NET_CMD_ERROR; \
    }

WRAP(cmd_ping)
WRAP(cmd_build_info)
WRAP(cmd_server_status)
WRAP(cmd_repl_set_initiate)
WRAP(cmd_repl_set_get_status)
WRAP(cmd_repl_set_get_config)
WRAP(cmd_connection_status)
WRAP(cmd_whatsmyuri)
WRAP(cmd_get_cmd_line_opts)
WRAP(cmd_host_info)
WRAP(cmd_list_commands)
WRAP(cmd_get_log)
WRAP(cmd_auth)

const struct net_cmd_def net_cmds_admin[] = {
    {"hello", net_cmd_hello, 0},
    {"isMaster", net_cmd_hello, 0},
    {"ping", cmd_ping_w, 0},
    {"buildInfo", cmd_build_info_w, 0},
    {"serverStatus", cmd_server_status_w, 0},
    {"replSetInitiate", cmd_repl_set_initiate_w, NET_CMD_F_ADMIN_ONLY},
    {"replSetGetStatus", cmd_repl_set_get_status_w, NET_CMD_F_ADMIN_ONLY | NET_CMD_F_NEEDS_CONFIG},
    {"replSetGetConfig", cmd_repl_set_get_config_w, NET_CMD_F_ADMIN_ONLY | NET_CMD_F_NEEDS_CONFIG},
    {"connectionStatus", cmd_connection_status_w, 0},
    {"whatsmyuri", cmd_whatsmyuri_w, 0},
    {"getCmdLineOpts", cmd_get_cmd_line_opts_w, NET_CMD_F_ADMIN_ONLY},
    {"hostInfo", cmd_host_info_w, 0},
    {"listCommands", cmd_list_commands_w, 0},
    {"getLog", cmd_get_log_w, NET_CMD_F_ADMIN_ONLY},
    {"saslStart", cmd_auth_w, 0},
    {"saslContinue", cmd_auth_w, 0},
    {"authenticate", cmd_auth_w, 0},
    {NULL, NULL, 0},
};
