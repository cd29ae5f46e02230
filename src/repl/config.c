/*
 * config.c: the replica-set configuration: validation of replSetInitiate
 * documents (with MongoDB's error codes), the stored document as
 * replSetGetConfig shows it, parsing it back after a restart, and resolving
 * member hosts to the IPv4 literals raft 0.15 requires. No raft, no
 * threads: pure functions (repl_resolve_ipv4 may block on DNS).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "repl/repl_int.h"

#define BAD_CONFIG 93 /* InvalidReplicaSetConfig */
/* Room for a host name such that "host:port" fits REPL_HOST_MAX. */
#define HOST_NAME_CAP (REPL_HOST_MAX - 12)

int repl_hostport_split(const char *hp, char *host, size_t host_cap, int *port)
{
    const char *colon;
    size_t hlen;

    if (hp == NULL || hp[0] == '\0' || hp[0] == '[') {
        return CAIRN_EINVAL;
    }
    colon = strrchr(hp, ':');
    if (colon != NULL && strchr(hp, ':') != colon) {
        return CAIRN_EINVAL; /* IPv6 literal without brackets */
    }
    hlen = colon != NULL ? (size_t)(colon - hp) : strlen(hp);
    if (hlen == 0 || hlen >= host_cap) {
        return CAIRN_EINVAL;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)hp[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_')) {
            return CAIRN_EINVAL;
        }
        host[i] = (char)tolower(c);
    }
    host[hlen] = '\0';
    if (colon == NULL) {
        *port = REPL_DEFAULT_PORT;
        return 0;
    }
    {
        char *end = NULL;
        long p;
        if (colon[1] == '\0' || !isdigit((unsigned char)colon[1])) {
            return CAIRN_EINVAL;
        }
        p = strtol(colon + 1, &end, 10);
        if (*end != '\0' || p < 1 || p > 65535 - CAIRN_RAFT_PORT_OFFSET) {
            return CAIRN_EINVAL;
        }
        *port = (int)p;
    }
    return 0;
}

int repl_resolve_ipv4(const char *host, char *out, size_t cap, struct cairn_error *err)
{
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        if (res != NULL) {
            freeaddrinfo(res);
        }
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                 "cannot resolve host '%s' to an IPv4 address: %s", host,
                                 rc != 0 ? gai_strerror(rc) : "no address");
    }
    {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)res->ai_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)cap) == NULL) {
            freeaddrinfo(res);
            return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                     "cannot format the address of '%s'", host);
        }
    }
    freeaddrinfo(res);
    return 0;
}

static bool same_host(const char *a, const char *b)
{
    char ha[REPL_HOST_MAX + 1], hb[REPL_HOST_MAX + 1];
    int pa, pb;
    if (repl_hostport_split(a, ha, sizeof ha, &pa) != 0 ||
        repl_hostport_split(b, hb, sizeof hb, &pb) != 0) {
        return false;
    }
    return pa == pb && strcmp(ha, hb) == 0;
}

int repl_cfg_find(const struct repl_cfg *cfg, const char *me)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if (same_host(cfg->m[i].host, me)) {
            return (int)i;
        }
    }
    return -1;
}

/* Reads a number (int32, int64, double) as a double. */
static bool get_number(const bson_iter_t *it, double *out)
{
    switch (bson_iter_type(it)) {
        case BSON_TYPE_INT32:
            *out = bson_iter_int32(it);
            return true;
        case BSON_TYPE_INT64:
            *out = (double)bson_iter_int64(it);
            return true;
        case BSON_TYPE_DOUBLE:
            *out = bson_iter_double(it);
            return *out == *out; /* not NaN */
        default:
            return false;
    }
}

static bool get_int(const bson_iter_t *it, long lo, long hi, long *out)
{
    double d;
    if (!get_number(it, &d) || d < (double)lo || d > (double)hi || d != (double)(long)d) {
        return false;
    }
    *out = (long)d;
    return true;
}

/* Validates one member document of an initiate config into m. */
static int parse_member(bson_iter_t *it,
                        size_t idx,
                        struct repl_cfg_member *m,
                        struct cairn_error *err)
{
    bson_iter_t f;
    bool have_id = false, have_host = false;

    memset(m, 0, sizeof *m);
    m->votes = 1;
    m->priority = 1.0;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &f)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG, "members[%zu] must be a document",
                                 idx);
    }
    while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        if (strcmp(k, "_id") == 0) {
            long v;
            if (!get_int(&f, 0, 255, &v)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu]._id must be an integer in [0, 255]", idx);
            }
            m->id = (int)v;
            have_id = true;
        } else if (strcmp(k, "host") == 0) {
            char h[HOST_NAME_CAP];
            int port;
            if (!BSON_ITER_HOLDS_UTF8(&f) ||
                repl_hostport_split(bson_iter_utf8(&f, NULL), h, sizeof h, &port) != 0) {
                return cairn_error_mongo(
                    err, CAIRN_EINVAL, BAD_CONFIG,
                    "members[%zu].host must be a string \"host:port\" (IPv4 or a host name, "
                    "port below %d)",
                    idx, 65536 - CAIRN_RAFT_PORT_OFFSET);
            }
            snprintf(m->host, sizeof m->host, "%s:%d", h, port);
            have_host = true;
        } else if (strcmp(k, "arbiterOnly") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&f)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu].arbiterOnly must be a boolean", idx);
            }
            if (bson_iter_bool(&f)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu]: arbiters are not supported", idx);
            }
        } else if (strcmp(k, "buildIndexes") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&f) || !bson_iter_bool(&f)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu].buildIndexes must be true", idx);
            }
        } else if (strcmp(k, "hidden") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&f)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu].hidden must be a boolean", idx);
            }
            m->hidden = bson_iter_bool(&f);
        } else if (strcmp(k, "priority") == 0) {
            double d;
            if (!get_number(&f, &d) || d < 0 || d > 1000) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu].priority must be a number in [0, 1000]",
                                         idx);
            }
            m->priority = d;
        } else if (strcmp(k, "votes") == 0) {
            long v;
            if (!get_int(&f, 0, 1, &v)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu].votes must be 0 or 1", idx);
            }
            m->votes = (int)v;
        } else if (strcmp(k, "tags") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&f)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu].tags must be a document", idx);
            }
        } else if (strcmp(k, "secondaryDelaySecs") == 0 || strcmp(k, "slaveDelay") == 0) {
            long v;
            if (!get_int(&f, 0, 0, &v)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu].%s: delayed members are not supported", idx,
                                         k);
            }
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                     "Unexpected field %s in replica set member configuration", k);
        }
    }
    if (!have_id || !have_host) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG, "members[%zu] needs _id and host",
                                 idx);
    }
    if (m->hidden && m->priority != 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                 "members[%zu]: priority must be 0 when hidden=true", idx);
    }
    if (m->votes == 0 && m->priority != 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                 "members[%zu]: priority must be 0 when non-voting (votes:0)", idx);
    }
    return 0;
}

/* Reads the timing settings Cairn honours (the others are kept as mongod
 * shows them): electionTimeoutMillis (raft's election timeout; raft's own
 * heartbeat is a tenth of it) and heartbeatIntervalMillis (how often
 * members exchange status). */
static int parse_settings(bson_iter_t *it, struct repl_cfg *out, struct cairn_error *err)
{
    bson_iter_t f;
    long v;

    if (!bson_iter_recurse(it, &f)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG, "settings must be a document");
    }
    while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        if (strcmp(k, "electionTimeoutMillis") == 0) {
            if (!get_int(&f, REPL_ELECTION_TIMEOUT_MIN_MS, REPL_ELECTION_TIMEOUT_MAX_MS, &v)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "settings.electionTimeoutMillis must be an integer in "
                                         "[%d, %d]",
                                         REPL_ELECTION_TIMEOUT_MIN_MS,
                                         REPL_ELECTION_TIMEOUT_MAX_MS);
            }
            out->election_timeout_ms = (int)v;
        } else if (strcmp(k, "heartbeatIntervalMillis") == 0) {
            if (!get_int(&f, REPL_HEARTBEAT_MIN_MS, REPL_HEARTBEAT_MAX_MS, &v)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "settings.heartbeatIntervalMillis must be an integer in "
                                         "[%d, %d]",
                                         REPL_HEARTBEAT_MIN_MS, REPL_HEARTBEAT_MAX_MS);
            }
            out->heartbeat_ms = (int)v;
        }
    }
    return 0;
}

/* Builds the stored document from a validated cfg. */
static int build_doc(struct repl_cfg *cfg)
{
    bson_t doc, arr, mem, tags, settings, sub;
    bson_oid_t oid;
    bool ok = true;

    bson_init(&doc);
    ok = ok && BSON_APPEND_UTF8(&doc, "_id", cfg->set_name);
    ok = ok && BSON_APPEND_INT32(&doc, "version", cfg->version);
    ok = ok && BSON_APPEND_INT64(&doc, "protocolVersion", 1);
    ok = ok && BSON_APPEND_BOOL(&doc, "writeConcernMajorityJournalDefault", true);
    ok = ok && BSON_APPEND_ARRAY_BEGIN(&doc, "members", &arr);
    for (size_t i = 0; ok && i < cfg->n; i++) {
        char key[16];
        const char *k;
        const struct repl_cfg_member *m = &cfg->m[i];
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &mem);
        ok = ok && BSON_APPEND_INT32(&mem, "_id", m->id);
        ok = ok && BSON_APPEND_UTF8(&mem, "host", m->host);
        ok = ok && BSON_APPEND_BOOL(&mem, "arbiterOnly", false);
        ok = ok && BSON_APPEND_BOOL(&mem, "buildIndexes", true);
        ok = ok && BSON_APPEND_BOOL(&mem, "hidden", m->hidden);
        ok = ok && BSON_APPEND_DOUBLE(&mem, "priority", m->priority);
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&mem, "tags", &tags);
        ok = ok && bson_append_document_end(&mem, &tags);
        ok = ok && BSON_APPEND_INT64(&mem, "secondaryDelaySecs", 0);
        ok = ok && BSON_APPEND_INT32(&mem, "votes", m->votes);
        ok = ok && bson_append_document_end(&arr, &mem);
    }
    ok = ok && bson_append_array_end(&doc, &arr);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&doc, "settings", &settings);
    ok = ok && BSON_APPEND_BOOL(&settings, "chainingAllowed", true);
    ok = ok && BSON_APPEND_INT32(&settings, "heartbeatIntervalMillis", cfg->heartbeat_ms);
    ok = ok && BSON_APPEND_INT32(&settings, "heartbeatTimeoutSecs", 10);
    ok = ok && BSON_APPEND_INT32(&settings, "electionTimeoutMillis", cfg->election_timeout_ms);
    ok = ok && BSON_APPEND_INT32(&settings, "catchUpTimeoutMillis", -1);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&settings, "getLastErrorModes", &sub);
    ok = ok && bson_append_document_end(&settings, &sub);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&settings, "getLastErrorDefaults", &sub);
    ok = ok && BSON_APPEND_INT32(&sub, "w", 1);
    ok = ok && BSON_APPEND_INT32(&sub, "wtimeout", 0);
    ok = ok && bson_append_document_end(&settings, &sub);
    if (cfg->has_set_id) {
        oid = cfg->set_id;
    } else {
        bson_oid_init(&oid, NULL);
        cfg->set_id = oid;
        cfg->has_set_id = true;
    }
    ok = ok && BSON_APPEND_OID(&settings, "replicaSetId", &oid);
    ok = ok && bson_append_document_end(&doc, &settings);
    if (ok) {
        cfg->doc = malloc(doc.len);
        ok = cfg->doc != NULL;
        if (ok) {
            memcpy(cfg->doc, bson_get_data(&doc), doc.len);
            cfg->doc_len = doc.len;
        }
    }
    bson_destroy(&doc);
    return ok ? 0 : CAIRN_ENOMEM;
}

int repl_cfg_rebuild(struct repl_cfg *cfg)
{
    free(cfg->doc);
    cfg->doc = NULL;
    cfg->doc_len = 0;
    return build_doc(cfg);
}

int repl_cfg_build(const bson_t *in,
                   const char *set_name,
                   const char *me,
                   struct repl_cfg *out,
                   struct cairn_error *err)
{
    bson_iter_t it;
    bool have_id = false, have_members = false;
    long version = 1;

    memset(out, 0, sizeof *out);
    out->election_timeout_ms = REPL_ELECTION_TIMEOUT_DEFAULT_MS;
    out->heartbeat_ms = REPL_HEARTBEAT_DEFAULT_MS;
    if (in == NULL || bson_empty(in)) {
        char h[HOST_NAME_CAP];
        int port;
        if (repl_hostport_split(me, h, sizeof h, &port) != 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                     "this member's address '%s' is not a valid host:port", me);
        }
        snprintf(out->set_name, sizeof out->set_name, "%s", set_name);
        out->version = 1;
        out->n = 1;
        out->m[0].id = 0;
        snprintf(out->m[0].host, sizeof out->m[0].host, "%s:%d", h, port);
        out->m[0].votes = 1;
        out->m[0].priority = 1.0;
        return build_doc(out) == 0 ? 0
                                   : cairn_error_setf(err, CAIRN_ENOMEM, "initiate: out of memory");
    }
    if (!bson_iter_init(&it, in)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG, "malformed configuration");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") == 0) {
            uint32_t len;
            const char *s;
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "replica set configuration _id must be a string");
            }
            s = bson_iter_utf8(&it, &len);
            if (strcmp(s, set_name) != 0 || len != strlen(set_name)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "Attempting to initiate a replica set with name %s, but "
                                         "command line reports %s; rejecting",
                                         s, set_name);
            }
            have_id = true;
        } else if (strcmp(k, "version") == 0) {
            if (!get_int(&it, 1, INT32_MAX, &version)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "version field must be a positive integer");
            }
        } else if (strcmp(k, "term") == 0) {
            double d;
            if (!get_number(&it, &d)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "term field must be a number");
            }
        } else if (strcmp(k, "protocolVersion") == 0) {
            long pv;
            if (!get_int(&it, 1, 1, &pv)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "protocolVersion must be 1");
            }
        } else if (strcmp(k, "writeConcernMajorityJournalDefault") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&it) || !bson_iter_bool(&it)) {
                return cairn_error_mongo(
                    err, CAIRN_EINVAL, BAD_CONFIG,
                    "writeConcernMajorityJournalDefault must be true (majority writes are always "
                    "journaled)");
            }
        } else if (strcmp(k, "configsvr") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&it) || bson_iter_bool(&it)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "config servers are not supported");
            }
        } else if (strcmp(k, "settings") == 0) {
            int rc;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "settings must be a document");
            }
            rc = parse_settings(&it, out, err);
            if (rc != 0) {
                return rc;
            }
        } else if (strcmp(k, "members") == 0) {
            bson_iter_t a;
            if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &a)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG, "members must be an array");
            }
            while (bson_iter_next(&a)) {
                int rc;
                if (out->n == REPL_MAX_MEMBERS) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                             "a replica set has at most %d members",
                                             REPL_MAX_MEMBERS);
                }
                rc = parse_member(&a, out->n, &out->m[out->n], err);
                if (rc != 0) {
                    return rc;
                }
                out->n++;
            }
            have_members = true;
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                     "Unexpected field %s in replica set configuration", k);
        }
    }
    if (!have_id) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                 "replica set configuration lacks _id (the set name)");
    }
    if (!have_members || out->n == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                 "replica set configuration must have at least one member");
    }
    for (size_t i = 0; i < out->n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (out->m[i].id == out->m[j].id) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu] and members[%zu] have the same _id %d", j, i,
                                         out->m[i].id);
            }
            if (strcmp(out->m[i].host, out->m[j].host) == 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                         "members[%zu] and members[%zu] have the same host %s", j,
                                         i, out->m[i].host);
            }
        }
    }
    snprintf(out->set_name, sizeof out->set_name, "%s", set_name);
    out->version = (int)version;
    if (repl_cfg_find(out, me) < 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                 "No host described in new configuration with {version: %ld} for "
                                 "replica set %s maps to this node (%s)",
                                 version, set_name, me);
    }
    if (out->heartbeat_ms >= out->election_timeout_ms) {
        return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                 "settings.heartbeatIntervalMillis (%d) must be below "
                                 "settings.electionTimeoutMillis (%d)",
                                 out->heartbeat_ms, out->election_timeout_ms);
    }
    {
        bool electable = false;
        for (size_t i = 0; i < out->n; i++) {
            if (out->m[i].votes > 0 && out->m[i].priority > 0) {
                electable = true;
            }
        }
        if (!electable) {
            return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG,
                                     "replica set configuration must contain at least one "
                                     "electable member (votes: 1, priority > 0)");
        }
    }
    if (build_doc(out) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "initiate: out of memory");
    }
    return 0;
}

static int bad_stored(struct repl_cfg *out, struct cairn_error *err, const char *what)
{
    repl_cfg_free(out);
    return cairn_error_setf(err, CAIRN_ECORRUPT, "stored replica set config: %s", what);
}

int repl_cfg_load(const uint8_t *doc, size_t len, struct repl_cfg *out, struct cairn_error *err)
{
    bson_t b;
    bson_iter_t it;
    size_t off;

    memset(out, 0, sizeof *out);
    if (!bson_init_static(&b, doc, len) || !bson_validate(&b, BSON_VALIDATE_NONE, &off)) {
        return bad_stored(out, err, "invalid BSON");
    }
    out->doc = malloc(len);
    if (out->doc == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "load config: out of memory");
    }
    memcpy(out->doc, doc, len);
    out->doc_len = len;
    if (!bson_iter_init_find(&it, &b, "_id") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return bad_stored(out, err, "no _id");
    }
    snprintf(out->set_name, sizeof out->set_name, "%s", bson_iter_utf8(&it, NULL));
    if (!bson_iter_init_find(&it, &b, "version") || !BSON_ITER_HOLDS_INT32(&it)) {
        return bad_stored(out, err, "no version");
    }
    out->version = bson_iter_int32(&it);
    {
        bson_iter_t a;
        if (!bson_iter_init_find(&it, &b, "members") || !BSON_ITER_HOLDS_ARRAY(&it) ||
            !bson_iter_recurse(&it, &a)) {
            return bad_stored(out, err, "no members");
        }
        while (bson_iter_next(&a)) {
            struct repl_cfg_member *m;
            bson_iter_t f;
            if (out->n == REPL_MAX_MEMBERS) {
                return bad_stored(out, err, "too many members");
            }
            m = &out->m[out->n];
            memset(m, 0, sizeof *m);
            if (!BSON_ITER_HOLDS_DOCUMENT(&a) || !bson_iter_recurse(&a, &f)) {
                return bad_stored(out, err, "member is not a document");
            }
            m->id = -1;
            while (bson_iter_next(&f)) {
                const char *k = bson_iter_key(&f);
                if (strcmp(k, "_id") == 0 && BSON_ITER_HOLDS_INT32(&f)) {
                    m->id = bson_iter_int32(&f);
                } else if (strcmp(k, "host") == 0 && BSON_ITER_HOLDS_UTF8(&f)) {
                    snprintf(m->host, sizeof m->host, "%s", bson_iter_utf8(&f, NULL));
                } else if (strcmp(k, "votes") == 0 && BSON_ITER_HOLDS_INT32(&f)) {
                    m->votes = bson_iter_int32(&f);
                } else if (strcmp(k, "priority") == 0 && BSON_ITER_HOLDS_DOUBLE(&f)) {
                    m->priority = bson_iter_double(&f);
                } else if (strcmp(k, "hidden") == 0 && BSON_ITER_HOLDS_BOOL(&f)) {
                    m->hidden = bson_iter_bool(&f);
                }
            }
            if (m->id < 0 || m->id > 255 || m->host[0] == '\0') {
                return bad_stored(out, err, "member lacks _id or host");
            }
            out->n++;
        }
    }
    if (out->n == 0) {
        return bad_stored(out, err, "no members");
    }
    out->election_timeout_ms = REPL_ELECTION_TIMEOUT_DEFAULT_MS;
    out->heartbeat_ms = REPL_HEARTBEAT_DEFAULT_MS;
    if (bson_iter_init_find(&it, &b, "settings") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t sid;
        if (bson_iter_recurse(&it, &sid) && bson_iter_find(&sid, "replicaSetId") &&
            BSON_ITER_HOLDS_OID(&sid)) {
            bson_oid_copy(bson_iter_oid(&sid), &out->set_id);
            out->has_set_id = true;
        }
    }
    if (bson_iter_init_find(&it, &b, "settings") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        struct cairn_error ignored;
        /* Written by repl_cfg_build: valid, or written by an older cairnd
         * with mongod's defaults, which parse_settings may refuse. */
        struct repl_cfg tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.election_timeout_ms = out->election_timeout_ms;
        tmp.heartbeat_ms = out->heartbeat_ms;
        if (parse_settings(&it, &tmp, &ignored) == 0 &&
            tmp.heartbeat_ms < tmp.election_timeout_ms) {
            out->election_timeout_ms = tmp.election_timeout_ms;
            out->heartbeat_ms = tmp.heartbeat_ms;
        }
    }
    return 0;
}

int repl_cfg_resolve(struct repl_cfg *cfg, struct cairn_error *err)
{
    for (size_t i = 0; i < cfg->n; i++) {
        char h[REPL_HOST_MAX + 1];
        int port;
        if (repl_hostport_split(cfg->m[i].host, h, sizeof h, &port) != 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG, "bad member host '%s'",
                                     cfg->m[i].host);
        }
        if ((size_t)snprintf(cfg->m[i].raft_addr, sizeof cfg->m[i].raft_addr, "%.*s:%d",
                             REPL_HOST_MAX - 2, h,
                             port + CAIRN_RAFT_PORT_OFFSET) >= sizeof cfg->m[i].raft_addr) {
            return cairn_error_mongo(err, CAIRN_EINVAL, BAD_CONFIG, "member host '%s' too long",
                                     cfg->m[i].host);
        }
    }
    return 0;
}

int repl_cfg_append(const struct repl_cfg *cfg, uint64_t term, bson_t *out, const char *key)
{
    bson_t src, child;
    bson_iter_t it;
    bool ok;

    if (!bson_init_static(&src, cfg->doc, cfg->doc_len) || !bson_iter_init(&it, &src)) {
        return CAIRN_ECORRUPT;
    }
    if (!BSON_APPEND_DOCUMENT_BEGIN(out, key, &child)) {
        return CAIRN_ENOMEM;
    }
    ok = true;
    while (ok && bson_iter_next(&it)) {
        ok = bson_append_iter(&child, bson_iter_key(&it), -1, &it);
        if (ok && strcmp(bson_iter_key(&it), "version") == 0) {
            ok = BSON_APPEND_INT64(&child, "term", (int64_t)term);
        }
    }
    ok = bson_append_document_end(out, &child) && ok;
    return ok ? 0 : CAIRN_ENOMEM;
}

int repl_cfg_copy(struct repl_cfg *dst, const struct repl_cfg *src)
{
    *dst = *src;
    dst->doc = NULL;
    if (src->doc != NULL) {
        dst->doc = malloc(src->doc_len);
        if (dst->doc == NULL) {
            dst->doc_len = 0;
            return CAIRN_ENOMEM;
        }
        memcpy(dst->doc, src->doc, src->doc_len);
    }
    return 0;
}

void repl_cfg_free(struct repl_cfg *cfg)
{
    free(cfg->doc);
    cfg->doc = NULL;
    cfg->doc_len = 0;
}
