/*
 * cairn-ctl.c: the member-side helper of the Docker image (docker/). The
 * image is FROM scratch (no shell, no python), so everything a deployment
 * does besides running cairnd is one mode of this program:
 *
 *   cairn-ctl health [--host H] [--port P] [--timeout-ms T]
 *       asks the member (default 127.0.0.1 and $CAIRN_PORT, else 27017)
 *       for hello and replSetGetStatus over the wire protocol, prints its
 *       state ("PRIMARY", "SECONDARY", "not initiated", "unreachable", ...)
 *       and exits 0 only when it is PRIMARY or SECONDARY. The image's
 *       HEALTHCHECK.
 *   cairn-ctl initiate --set NAME [--election-timeout-ms N]
 *             [--heartbeat-interval-ms N] [--timeout S] HOST:PORT...
 *       initiates the set once: waits until every member answers hello; if
 *       any member already belongs to a set (hello shows setName) it does
 *       nothing more; otherwise it sends replSetInitiate (members _id 0..n-1
 *       in the order given) to the first member, whose quorum check refuses
 *       when any other member already has a config, so a member whose volume
 *       was emptied never starts a second set: it adopts the set's config
 *       from heartbeats instead. Then waits for a writable primary and
 *       prints it. Idempotent: a second run finds setName and only waits.
 *   cairn-ctl keygen PATH
 *       writes a key file (mongod's format: base64, 64 characters) with mode
 *       0400 if PATH does not exist or is empty; leaves an existing key alone.
 *
 * Exit status: 0 success, 1 failure (printed on stderr), 2 usage error.
 * Only libbson and libc: the image carries cairnd's libraries and no driver.
 * Single-threaded; every socket has a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bson/bson.h>

#include "cairn/mongo_codes.h"

#define OP_MSG 2013
#define MAX_REPLY (48 * 1024 * 1024)
#define MAX_MEMBERS 50
#define DEFAULT_PORT 27017
#define KEY_RAW_BYTES 48 /* 64 base64 characters */

static const char *const state_names[] = {
    "STARTUP", "PRIMARY", "SECONDARY", "RECOVERING", "STATE4",  "STARTUP2",
    "UNKNOWN", "ARBITER", "DOWN",      "ROLLBACK",   "REMOVED",
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- One command over the wire ------------------------------------------- */

/* Waits until fd is ready for `events` or the deadline passes. 0 when
 * ready, -1 (errno ETIMEDOUT or poll's) otherwise. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int64_t left = deadline - now_ms();
        int rv;
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        rv = poll(&p, 1, (int)left);
        if (rv > 0) {
            return 0;
        }
        if (rv == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}

/* Connects to host:port (any address getaddrinfo gives) before the
 * deadline. Returns the non-blocking socket, or -1 with a message in msg. */
static int dial(const char *host, int port, int64_t deadline, char *msg, size_t msglen)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[16];
    int fd = -1, rv;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof service, "%d", port);
    rv = getaddrinfo(host, service, &hints, &res);
    if (rv != 0) {
        snprintf(msg, msglen, "cannot resolve %s: %s", host, gai_strerror(rv));
        return -1;
    }
    snprintf(msg, msglen, "cannot connect to %s:%d", host, port);
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)) {
            break;
        }
        snprintf(msg, msglen, "cannot connect to %s:%d: %s", host, port,
                 strerror(soerr != 0 ? soerr : errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 0) {
                return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

static int recv_all(int fd, uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r == 0) {
            errno = ECONNRESET;
            return -1;
        } else if (errno == EAGAIN || errno == EINTR) {
            if (wait_fd(fd, POLLIN, deadline) != 0) {
                return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Runs one admin command `cmd` (its $db is added here) on a fresh
 * connection to host:port within timeout_ms. On success *reply holds the
 * reply document (initialized here; the caller destroys it) whatever its
 * "ok"; on failure (unreachable, timeout, malformed reply) returns -1 with
 * a message in msg and *reply untouched. */
static int run_command(const char *host,
                       int port,
                       const bson_t *cmd,
                       int timeout_ms,
                       bson_t *reply,
                       char *msg,
                       size_t msglen)
{
    static uint32_t request_id;
    int64_t deadline = now_ms() + timeout_ms;
    bson_t req, view;
    uint8_t head[16];
    uint8_t *out = NULL, *in = NULL;
    uint32_t len, out_len, doc_len;
    int fd, rc = -1;

    bson_init(&req);
    bson_concat(&req, cmd);
    BSON_APPEND_UTF8(&req, "$db", "admin");
    fd = dial(host, port, deadline, msg, msglen);
    if (fd < 0) {
        goto out_req;
    }
    out_len = 16 + 4 + 1 + req.len;
    out = malloc(out_len);
    if (out == NULL) {
        snprintf(msg, msglen, "out of memory");
        goto out_fd;
    }
    put_le32(out, out_len);
    put_le32(out + 4, ++request_id);
    put_le32(out + 8, 0);
    put_le32(out + 12, OP_MSG);
    put_le32(out + 16, 0); /* flagBits */
    out[20] = 0;           /* section kind 0: the body */
    memcpy(out + 21, bson_get_data(&req), req.len);
    if (send_all(fd, out, out_len, deadline) != 0 || recv_all(fd, head, 16, deadline) != 0) {
        snprintf(msg, msglen, "%s:%d: %s", host, port, strerror(errno));
        goto out_free;
    }
    len = get_le32(head);
    if (len < 16 + 4 + 1 + 5 || len > MAX_REPLY || get_le32(head + 12) != OP_MSG ||
        get_le32(head + 8) != request_id) {
        snprintf(msg, msglen, "%s:%d: not an OP_MSG reply to our request", host, port);
        goto out_free;
    }
    in = malloc(len - 16);
    if (in == NULL) {
        snprintf(msg, msglen, "out of memory");
        goto out_free;
    }
    if (recv_all(fd, in, len - 16, deadline) != 0) {
        snprintf(msg, msglen, "%s:%d: %s", host, port, strerror(errno));
        goto out_free;
    }
    /* flagBits, then a kind-0 section whose document fits in the message */
    doc_len = get_le32(in + 5);
    if (in[4] != 0 || doc_len > len - 16 - 5 || !bson_init_static(&view, in + 5, doc_len) ||
        !bson_validate(&view, BSON_VALIDATE_NONE, NULL)) {
        snprintf(msg, msglen, "%s:%d: malformed reply", host, port);
        goto out_free;
    }
    bson_copy_to(&view, reply);
    rc = 0;
out_free:
    free(in);
    free(out);
out_fd:
    close(fd);
out_req:
    bson_destroy(&req);
    return rc;
}

static bool reply_ok(const bson_t *reply)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, "ok") && bson_iter_as_bool(&it);
}

static int64_t reply_int(const bson_t *reply, const char *key, int64_t dflt)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, key) &&
        (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_DOUBLE(&it))) {
        return bson_iter_as_int64(&it);
    }
    return dflt;
}

static const char *reply_str(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_UTF8(&it)) {
        return bson_iter_utf8(&it, NULL);
    }
    return NULL;
}

/* Splits "host:port" (the last colon; [v6]:port unbracketed). */
static int split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long p;

    if (colon == NULL || colon == s || (size_t)(colon - s) >= hostlen) {
        return -1;
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || p < 1 || p > 65535) {
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return 0;
}

static int parse_int_arg(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || *out < lo || *out > hi) {
        fprintf(stderr, "cairn-ctl: %s must be an integer in [%ld, %ld]\n", opt, lo, hi);
        return -1;
    }
    return 0;
}

/* ---- health ------------------------------------------------------------- */

static int cmd_health(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *env_port = getenv("CAIRN_PORT");
    long port = DEFAULT_PORT, timeout_ms = 3000, v;
    char msg[256];
    bson_t cmd, reply;
    int rc = 1;

    if (env_port != NULL && env_port[0] != '\0' &&
        parse_int_arg("$CAIRN_PORT", env_port, 1, 65535, &port) != 0) {
        return 2;
    }
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            if (parse_int_arg("--port", argv[++i], 1, 65535, &port) != 0) {
                return 2;
            }
        } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            if (parse_int_arg("--timeout-ms", argv[++i], 1, 600000, &v) != 0) {
                return 2;
            }
            timeout_ms = v;
        } else {
            fprintf(stderr, "usage: cairn-ctl health [--host H] [--port P] [--timeout-ms T]\n");
            return 2;
        }
    }

    bson_init(&cmd);
    BSON_APPEND_INT32(&cmd, "hello", 1);
    if (run_command(host, (int)port, &cmd, (int)timeout_ms, &reply, msg, sizeof msg) != 0) {
        printf("unreachable: %s\n", msg);
        goto out_cmd;
    }
    bson_destroy(&reply);
    bson_reinit(&cmd);
    BSON_APPEND_INT32(&cmd, "replSetGetStatus", 1);
    if (run_command(host, (int)port, &cmd, (int)timeout_ms, &reply, msg, sizeof msg) != 0) {
        printf("unreachable: %s\n", msg);
        goto out_cmd;
    }
    if (!reply_ok(&reply)) {
        int64_t code = reply_int(&reply, "code", 0);
        const char *err = reply_str(&reply, "errmsg");
        if (code == MONGO_NotYetInitialized) {
            printf("not initiated\n");
        } else {
            printf("replSetGetStatus failed: %s (code %lld)\n", err != NULL ? err : "?",
                   (long long)code);
        }
    } else {
        int64_t state = reply_int(&reply, "myState", -1);
        const char *set = reply_str(&reply, "set");
        const char *name =
            state >= 0 && state < (int64_t)(sizeof state_names / sizeof state_names[0])
                ? state_names[state]
                : "UNKNOWN";
        printf("%s (set %s, term %lld)\n", name, set != NULL ? set : "?",
               (long long)reply_int(&reply, "term", -1));
        rc = state == 1 || state == 2 ? 0 : 1;
    }
    bson_destroy(&reply);
out_cmd:
    bson_destroy(&cmd);
    return rc;
}

/* ---- initiate ----------------------------------------------------------- */

struct member
{
    char host[256];
    int port;
    const char *arg; /* host:port as given: the name the config carries */
};

/* hello on m: 1 when it belongs to a set (*set_out names it, *writable
 * tells isWritablePrimary), 0 when it answers uninitiated, -1 when it does
 * not answer. */
static int probe(const struct member *m, char *set_out, size_t setlen, bool *writable)
{
    char msg[256];
    bson_t cmd, reply;
    bson_iter_t it;
    const char *set;
    int rc = -1;

    *writable = false;
    bson_init(&cmd);
    BSON_APPEND_INT32(&cmd, "hello", 1);
    if (run_command(m->host, m->port, &cmd, 2000, &reply, msg, sizeof msg) != 0) {
        goto out;
    }
    rc = 0;
    set = reply_ok(&reply) ? reply_str(&reply, "setName") : NULL;
    if (set != NULL) {
        snprintf(set_out, setlen, "%s", set);
        *writable = bson_iter_init_find(&it, &reply, "isWritablePrimary") && bson_iter_as_bool(&it);
        rc = 1;
    }
    bson_destroy(&reply);
out:
    bson_destroy(&cmd);
    return rc;
}

/* Sends replSetInitiate to members[0]. 0 when initiated (or it already
 * was: AlreadyInitialized), -1 with the reason printed otherwise. */
static int send_initiate(const struct member *ms,
                         size_t n,
                         const char *set,
                         long election_ms,
                         long heartbeat_ms)
{
    char msg[256];
    bson_t cmd, cfg, arr, mem, settings, reply;
    int rc = -1;

    bson_init(&cmd);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "replSetInitiate", &cfg);
    BSON_APPEND_UTF8(&cfg, "_id", set);
    BSON_APPEND_ARRAY_BEGIN(&cfg, "members", &arr);
    for (size_t i = 0; i < n; i++) {
        char key[24];
        snprintf(key, sizeof key, "%zu", i);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &mem);
        BSON_APPEND_INT32(&mem, "_id", (int32_t)i);
        BSON_APPEND_UTF8(&mem, "host", ms[i].arg);
        bson_append_document_end(&arr, &mem);
    }
    bson_append_array_end(&cfg, &arr);
    if (election_ms > 0 || heartbeat_ms > 0) {
        BSON_APPEND_DOCUMENT_BEGIN(&cfg, "settings", &settings);
        if (election_ms > 0) {
            BSON_APPEND_INT32(&settings, "electionTimeoutMillis", (int32_t)election_ms);
        }
        if (heartbeat_ms > 0) {
            BSON_APPEND_INT32(&settings, "heartbeatIntervalMillis", (int32_t)heartbeat_ms);
        }
        bson_append_document_end(&cfg, &settings);
    }
    bson_append_document_end(&cmd, &cfg);
    /* The quorum check waits up to 10 s for each member. */
    if (run_command(ms[0].host, ms[0].port, &cmd, 30000, &reply, msg, sizeof msg) != 0) {
        fprintf(stderr, "cairn-ctl: replSetInitiate on %s: %s\n", ms[0].arg, msg);
        goto out;
    }
    if (reply_ok(&reply) || reply_int(&reply, "code", 0) == MONGO_AlreadyInitialized) {
        printf("initiated replica set %s with %zu members\n", set, n);
        rc = 0;
    } else {
        const char *err = reply_str(&reply, "errmsg");
        fprintf(stderr, "cairn-ctl: replSetInitiate on %s refused: %s\n", ms[0].arg,
                err != NULL ? err : "?");
    }
    bson_destroy(&reply);
out:
    bson_destroy(&cmd);
    return rc;
}

static int cmd_initiate(int argc, char **argv)
{
    static struct member ms[MAX_MEMBERS];
    const char *set = NULL;
    long election_ms = 0, heartbeat_ms = 0, timeout_s = 120;
    size_t n = 0;
    int64_t deadline;
    bool initiated = false, sent = false;
    char last[128] = "";

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            set = argv[++i];
        } else if (strcmp(argv[i], "--election-timeout-ms") == 0 && i + 1 < argc) {
            if (parse_int_arg(argv[i], argv[i + 1], 100, 600000, &election_ms) != 0) {
                return 2;
            }
            i++;
        } else if (strcmp(argv[i], "--heartbeat-interval-ms") == 0 && i + 1 < argc) {
            if (parse_int_arg(argv[i], argv[i + 1], 10, 60000, &heartbeat_ms) != 0) {
                return 2;
            }
            i++;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (parse_int_arg(argv[i], argv[i + 1], 1, 86400, &timeout_s) != 0) {
                return 2;
            }
            i++;
        } else if (argv[i][0] != '-' && n < MAX_MEMBERS &&
                   split_hostport(argv[i], ms[n].host, sizeof ms[n].host, &ms[n].port) == 0) {
            ms[n++].arg = argv[i];
        } else {
            n = 0;
            break;
        }
    }
    if (set == NULL || set[0] == '\0' || n == 0) {
        fprintf(stderr,
                "usage: cairn-ctl initiate --set NAME [--election-timeout-ms N] "
                "[--heartbeat-interval-ms N] [--timeout S] HOST:PORT...\n");
        return 2;
    }

    deadline = now_ms() + timeout_s * 1000;
    /* Until a primary accepts writes: every member must answer before
     * anything is initiated (the quorum check asks them all anyway), and
     * any member that already has a set means the set exists. */
    while (now_ms() < deadline) {
        size_t answered = 0;
        for (size_t i = 0; i < n; i++) {
            char got[128];
            bool writable;
            int p = probe(&ms[i], got, sizeof got, &writable);
            if (p < 0) {
                continue;
            }
            answered++;
            if (p == 1 && strcmp(got, set) != 0) {
                fprintf(stderr, "cairn-ctl: %s belongs to replica set %s, not %s\n", ms[i].arg, got,
                        set);
                return 1;
            }
            if (p == 1 && !initiated) {
                initiated = true;
                if (!sent) {
                    printf("replica set %s is already initiated (%s is a member)\n", set,
                           ms[i].arg);
                }
            }
            if (writable) {
                printf("primary: %s\n", ms[i].arg);
                return 0;
            }
        }
        if (!initiated && answered == n) {
            if (send_initiate(ms, n, set, election_ms, heartbeat_ms) == 0) {
                sent = true;
            }
        } else if (!initiated) {
            snprintf(last, sizeof last, "%zu of %zu members answer", answered, n);
        } else {
            snprintf(last, sizeof last, "no writable primary yet");
        }
        sleep_ms(sent || initiated ? 100 : 500);
    }
    fprintf(stderr, "cairn-ctl: no writable primary within %ld s (%s)\n", timeout_s,
            last[0] != '\0' ? last : "initiation refused");
    return 1;
}

/* ---- keygen ------------------------------------------------------------- */

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = tbl[v >> 6 & 63];
        out[o++] = tbl[v & 63];
    }
    out[o] = '\0'; /* n is a multiple of 3 here: no padding */
}

static int cmd_keygen(int argc, char **argv)
{
    uint8_t raw[KEY_RAW_BYTES];
    char key[KEY_RAW_BYTES / 3 * 4 + 2];
    char tmp[4096];
    struct stat st;
    int rfd = -1, fd = -1, rc = 1;
    size_t len;

    if (argc != 1 || (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", argv[0]) >= sizeof tmp) {
        fprintf(stderr, "usage: cairn-ctl keygen PATH\n");
        return 2;
    }
    if (stat(argv[0], &st) == 0 && st.st_size > 0) {
        printf("key file %s exists; left as it is\n", argv[0]);
        return 0;
    }
    rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (rfd < 0 || read(rfd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        fprintf(stderr, "cairn-ctl: cannot read /dev/urandom: %s\n", strerror(errno));
        goto out;
    }
    base64(raw, sizeof raw, key);
    len = strlen(key);
    key[len++] = '\n';
    unlink(tmp); /* a leftover of an interrupted run */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
    if (fd < 0 || write(fd, key, len) != (ssize_t)len || fsync(fd) != 0) {
        fprintf(stderr, "cairn-ctl: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, argv[0]) != 0) {
        fprintf(stderr, "cairn-ctl: cannot rename %s to %s: %s\n", tmp, argv[0], strerror(errno));
        goto out;
    }
    printf("key file %s written\n", argv[0]);
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (rfd >= 0) {
        close(rfd);
    }
    memset(raw, 0, sizeof raw);
    memset(key, 0, sizeof key);
    return rc;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "health") == 0) {
        return cmd_health(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "initiate") == 0) {
        return cmd_initiate(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0) {
        return cmd_keygen(argc - 2, argv + 2);
    }
    fprintf(stderr,
            "usage: cairn-ctl health|initiate|keygen ... (see the top of "
            "tools/cairn-ctl.c)\n");
    return 2;
}
