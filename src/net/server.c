/*
 * server.c: the client-facing TCP server on nng's stream API. It owns the
 * listener, the connections, the worker pool and shutdown.
 *
 * A connection does one thing at a time (no pipelining, as with mongod):
 *
 *   RECV header+body (nng aio) -> QUEUED (job list) -> BUSY (a worker runs
 *   dispatch; a PENDING command stays BUSY until net_cmd_complete) -> SEND
 *   (nng aio) -> RECV ...
 *
 * nng completes aios on its own threads; those callbacks only copy bytes,
 * re-arm I/O or enqueue a job, never block. Any error on a connection
 * (peer closed, bad length) ends in its destruction, which always runs on
 * a thread that is not one of the connection's aio callbacks: a worker
 * (DESTROY job) or the thread ending a BUSY turn.
 *
 * A command parked for long (an awaitable hello) has its connection
 * watched: a read into the free part of rbuf, whose failure tells the
 * parked command that its peer is gone (net_conn_watch/net_conn_unwatch).
 *
 * Shutdown: answer parked hellos (hello.c's quiesce) and let replies being
 * written leave (bounded), stop accepting, close every stream (pending aios fail and
 * their connections are destroyed by the workers), wait until every
 * remaining connection is BUSY, mark the server stopped, wait for
 * completions in flight, join the workers. Connections still held by a
 * PENDING command are destroyed when it completes; the last one frees the
 * server.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <nng/nng.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/op.h"
#include "net/cursor.h"
#include "net/hello.h"
#include "net/net.h"
#include "net/rxbudget.h"
#include "net/server_int.h"
#include "net/sweeper.h"
#include "net/wire.h"

#define DEFAULT_WORKERS 8
/* Ceiling of the elastic worker pool (threads, each with a default stack
 * reserved but mostly untouched). */
#define MAX_WORKERS 512
/* How long the oldest queued job may wait with every worker busy before
 * the pool grows. */
#define WORKER_STALL_NS 10000000ull
/* How long shutdown lets replies being written (hello's last answers)
 * leave before it closes the connections. */
#define SEND_DRAIN_NS 1000000000ull
/* How often shutdown cancels the I/O of idle connections that outlive the
 * closing of their streams (net_server_stop). */
#define STOP_RECHECK_NS 100000000ull
#define LOG_LINES 256
#define LOG_LINE_MAX 320

enum job { JOB_NONE = 0, JOB_REQUEST, JOB_DESTROY };

/* Receive buffer per connection (most requests fit in one read). */
#define NET_RX_BUF_SIZE 16384

struct net_conn
{
    struct net_server *s;
    nng_stream *stream;
    nng_aio *rx_aio;
    nng_aio *tx_aio;
    uint64_t id;
    char peer[64];
    bool busy; /* guarded by s->mu */

    /* Client metadata from the first hello (guarded by s->mu: written once
     * by the connection's turn, read by other connections' currentOp). */
    bool client_seen;
    bool internal;    /* hello carried internalClient */
    char *app_name;   /* client.application.name, NULL when none */
    bson_t *metadata; /* the client document, NULL when none */

    /* Receiving. Reads go into rbuf, as many bytes as the socket has, so a
     * small request arrives in one read; bytes past the current message
     * (a moreToCome client may send its next message without waiting) stay
     * there for the next turn. A message larger than rbuf gets its own
     * buffer `msg`, read to exactly its length. */
    uint8_t rbuf[NET_RX_BUF_SIZE];
    size_t rlen;
    uint8_t *msg;
    size_t msg_len;
    size_t msg_cap; /* bytes allocated at msg: grows as they arrive (rxbudget.h) */
    size_t got;
    size_t reserved; /* bytes of the rxbudget this message holds */
    bool rx_waiting; /* rx_aio sleeps: the budget was spent, try again */
    /* When the first byte of the message being received arrived (mono ns,
     * 0 = none pending): past incompleteMessageTimeoutMillis the sweeper
     * closes the connection (net_server_drop_stalled). */
    _Atomic uint64_t partial_since;
    /* guarded by s->mu: partial_since of the message the sweeper last timed
     * out (0 = none). Kept per message, not as a flag: a connection whose
     * read completed just as the sweeper cancelled it survives, and its
     * next stalled message must be logged and counted again. */
    uint64_t timed_out_since;

    /* Watching a parked command's connection (net_conn_watch): rx_aio
     * reads into rbuf to notice a peer that closes. Set by the turn's
     * owner before the read is submitted, cleared after it completed. */
    bool watching;
    bool watch_gone; /* the read failed: the peer is gone */
    void (*watch_cb)(void *arg);
    void *watch_arg;

    /* Sending. */
    uint8_t *out;
    size_t out_len;
    size_t sent;

    bool destroying; /* guarded by s->mu: conn_destroy began (its aios may be freed) */

    /* Job queue and connection list (guarded by s->mu). */
    enum job job;
    struct net_conn *next_job;
    uint64_t queued_ns; /* when the job was queued (monotonic) */
    struct net_conn *prev, *next;
};

/* Pause after a failed accept: doubles from MIN up to MAX while failing. */
#define ACCEPT_BACKOFF_MIN_MS 5u
#define ACCEPT_BACKOFF_MAX_MS 500u

struct net_server
{
    struct net_options opts;
    char *bind_ip;
    char *dbpath;
    struct net_param_setting *params; /* owned copies of opts.params */
    struct net_deps deps;

    nng_stream_listener *listener;
    nng_aio *accept_aio;
    /* Accept failures (out of file descriptors, ...) are retried after a
     * growing pause on backoff_aio instead of at once: retrying at once
     * spun a core and wrote millions of log lines while the process was
     * out of descriptors. Touched only by the accept/backoff callbacks,
     * which never run at the same time. */
    nng_aio *backoff_aio;
    unsigned backoff_ms;
    uint64_t accept_failures;
    /* A run of failures is logged (with its end) at most once a second:
     * connections closed at the cap free descriptors, so runs can be
     * short and many. */
    int64_t accept_logged_ms;
    bool accept_run_logged;

    /* Worker pool: n_base threads start with the server. When the oldest
     * queued job has waited WORKER_STALL_NS with no worker free, another
     * worker is started (up to max_workers), so that commands which wait
     * (a long scan, the write lock behind a long update) never keep hello,
     * ping or other clients' commands waiting for seconds (mongod gives
     * every connection its own thread). Growing only on a stall keeps the
     * pool small under a busy but flowing load, where more threads would
     * only contend for the write lock. grow_aio re-checks while jobs wait.
     * Workers never exit before shutdown joins them. Guarded by mu. */
    pthread_t *workers; /* max_workers slots, n_workers started */
    int n_workers;
    int n_base;
    int max_workers;
    int n_idle;   /* workers waiting for a job */
    int n_queued; /* jobs in the queue */
    bool spawn_failed_logged;
    nng_aio *grow_aio;
    bool grow_armed;

    pthread_mutex_t mu;
    pthread_cond_t work_cond;
    /* enqueue calls signalling work_cond after releasing mu; server_free
     * waits for them to finish touching the server. */
    atomic_int n_waking;
    pthread_cond_t stop_cond;
    struct net_conn *q_head, *q_tail;
    struct net_conn *conns;
    int64_t n_conns;
    /* Connections beyond this are closed at accept (mongod's cap: 80% of
     * RLIMIT_NOFILE), so that RocksDB and the raft log always find the
     * descriptors they open files with (docs/decisions.md §36). */
    int64_t max_conns;
    uint64_t n_refused; /* connections closed at the cap; under mu */
    int64_t refused_logged_ms;
    int64_t n_busy;
    int64_t n_completing;
    int64_t total_conns;
    uint64_t next_conn_id;
    bool stopping;
    bool stopped;
    bool stop_done;

    /* Replies being written (net_conn_reply to the end of the write),
     * under mu: shutdown lets hello's last answers leave first. */
    int64_t n_sending;

    struct net_hello *hello;     /* awaitable hello (hello.c) */
    struct net_sweeper *sweeper; /* housekeeping thread (sweeper.h) */

    struct net_opcounters oc;
    int64_t start_wall_ms;
    uint64_t start_mono_ns;

    pthread_mutex_t log_mu;
    char log_lines[LOG_LINES][LOG_LINE_MAX];
    uint64_t log_written;
};

static void server_free(struct net_server *s);

/* ---- Log ring (getLog) ---------------------------------------------------- */

void net_log_event(struct net_server *s, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX - 96];
    char date[40];
    struct tm tm;
    int64_t now = cairn_wall_ms();
    time_t secs = (time_t)(now / 1000);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gmtime_r(&secs, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    for (char *p = msg; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
            *p = '\'';
        }
    }
    cairn_log(CAIRN_LOG_DEBUG, "net", "%s", msg);
    pthread_mutex_lock(&s->log_mu);
    snprintf(s->log_lines[s->log_written % LOG_LINES], LOG_LINE_MAX,
             "{\"t\":{\"$date\":\"%s.%03dZ\"},\"s\":\"I\",\"c\":\"NETWORK\",\"msg\":\"%s\"}", date,
             (int)(now % 1000), msg);
    s->log_written++;
    pthread_mutex_unlock(&s->log_mu);
}

void net_log_append(struct net_server *s, bson_t *reply)
{
    bson_t arr;
    uint64_t first, i;
    uint32_t idx = 0;

    pthread_mutex_lock(&s->log_mu);
    BSON_APPEND_INT64(reply, "totalLinesWritten", (int64_t)s->log_written);
    BSON_APPEND_ARRAY_BEGIN(reply, "log", &arr);
    first = s->log_written > LOG_LINES ? s->log_written - LOG_LINES : 0;
    for (i = first; i < s->log_written; i++) {
        char keybuf[16];
        const char *key;
        size_t klen = bson_uint32_to_string(idx++, &key, keybuf, sizeof keybuf);
        bson_append_utf8(&arr, key, (int)klen, s->log_lines[i % LOG_LINES], -1);
    }
    bson_append_array_end(reply, &arr);
    pthread_mutex_unlock(&s->log_mu);
}

/* ---- Accessors -------------------------------------------------------------- */

struct net_server *net_conn_server(struct net_conn *c)
{
    return c->s;
}

const struct net_options *net_server_options(const struct net_server *s)
{
    return &s->opts;
}

const struct net_deps *net_server_deps(const struct net_server *s)
{
    return &s->deps;
}

struct net_hello *net_server_hello(struct net_server *s)
{
    return s->hello;
}

struct net_opcounters *net_server_opcounters(struct net_server *s)
{
    return &s->oc;
}

void net_server_info_get(struct net_server *s, struct net_server_info *out)
{
    /* A parked awaitable hello keeps its connection in a command, but
     * waiting for a topology change is not activity (currentOp shows the
     * connection idle too). */
    int64_t parked = s->hello != NULL ? net_hello_n_awaiting(s->hello) : 0;

    pthread_mutex_lock(&s->mu);
    out->conns_current = s->n_conns;
    out->conns_total = s->total_conns;
    out->conns_active = s->n_busy > parked ? s->n_busy - parked : 0;
    pthread_mutex_unlock(&s->mu);
    out->start_wall_ms = s->start_wall_ms;
    out->start_mono_ns = s->start_mono_ns;
    pthread_mutex_lock(&s->mu);
    out->n_workers = s->n_workers;
    pthread_mutex_unlock(&s->mu);
}

bool net_conn_set_client_metadata(struct net_conn *c, const bson_t *client, bool internal)
{
    struct net_server *s = c->s;
    bson_t *copy = NULL;
    char *app = NULL;
    bson_iter_t it;
    bool ok;

    if (client != NULL) {
        copy = bson_copy(client);
        if (bson_iter_init(&it, client) &&
            bson_iter_find_descendant(&it, "application.name", &it) && BSON_ITER_HOLDS_UTF8(&it)) {
            app = strdup(bson_iter_utf8(&it, NULL));
        }
    }
    pthread_mutex_lock(&s->mu);
    ok = !c->client_seen;
    if (ok) {
        c->client_seen = true;
        c->internal = internal;
        c->app_name = app;
        c->metadata = copy;
        app = NULL;
        copy = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    free(app);
    if (copy != NULL) {
        bson_destroy(copy);
    }
    return ok;
}

bool net_conn_app_name(struct net_conn *c, char *buf, size_t n)
{
    struct net_server *s = c->s;
    bool found;

    pthread_mutex_lock(&s->mu);
    found = c->app_name != NULL && strlen(c->app_name) < n;
    if (found) {
        memcpy(buf, c->app_name, strlen(c->app_name) + 1);
    } else if (n > 0) {
        buf[0] = '\0';
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

bool net_conn_is_internal(struct net_conn *c)
{
    bool v;

    pthread_mutex_lock(&c->s->mu);
    v = c->internal;
    pthread_mutex_unlock(&c->s->mu);
    return v;
}

void net_conn_append_client(struct net_conn *c, bson_t *doc)
{
    struct net_server *s = c->s;

    pthread_mutex_lock(&s->mu);
    if (c->app_name != NULL) {
        BSON_APPEND_UTF8(doc, "appName", c->app_name);
    }
    if (c->metadata != NULL) {
        BSON_APPEND_DOCUMENT(doc, "clientMetadata", c->metadata);
    }
    pthread_mutex_unlock(&s->mu);
}

void net_server_foreach_conn(struct net_server *s,
                             void (*fn)(const struct net_conn_info *ci, void *arg),
                             void *arg)
{
    pthread_mutex_lock(&s->mu);
    for (struct net_conn *c = s->conns; c != NULL; c = c->next) {
        struct net_conn_info ci = {c->id, c->peer, c->app_name, c->metadata};
        fn(&ci, arg);
    }
    pthread_mutex_unlock(&s->mu);
}

const char *net_conn_peer(const struct net_conn *c)
{
    return c->peer;
}

bool net_server_stopping(struct net_server *s)
{
    bool v;
    pthread_mutex_lock(&s->mu);
    v = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return v;
}

bool net_server_enter(struct net_server *s)
{
    bool ok;
    pthread_mutex_lock(&s->mu);
    ok = !s->stopped;
    if (ok) {
        s->n_completing++;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void net_server_leave(struct net_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->n_completing--;
    pthread_cond_broadcast(&s->stop_cond);
    pthread_mutex_unlock(&s->mu);
}

/* ---- Connections --------------------------------------------------------------- */

static void *worker_main(void *arg);

/* Starts one more worker if the pool may grow. Caller holds s->mu. Returns
 * 0, or -1 at the ceiling or when the thread cannot be created (the job
 * then waits for a running worker). */
static int spawn_worker_locked(struct net_server *s)
{
    if (s->n_workers >= s->max_workers) {
        return -1;
    }
    if (pthread_create(&s->workers[s->n_workers], NULL, worker_main, s) != 0) {
        if (!s->spawn_failed_logged) {
            s->spawn_failed_logged = true;
            cairn_log(CAIRN_LOG_WARN, "net", "cannot start worker thread %d; commands wait",
                      s->n_workers + 1);
        }
        return -1;
    }
    s->n_workers++;
    return 0;
}

/* With jobs queued beyond the idle workers: starts a worker if the oldest
 * job has waited WORKER_STALL_NS, and keeps a re-check armed while jobs
 * still wait. Caller holds s->mu. */
static void check_stall_locked(struct net_server *s, uint64_t now)
{
    if (s->stopping || s->q_head == NULL || s->n_queued <= s->n_idle) {
        return;
    }
    if (now - s->q_head->queued_ns >= WORKER_STALL_NS) {
        (void)spawn_worker_locked(s);
    }
    if (!s->grow_armed) {
        s->grow_armed = true;
        nng_sleep_aio((nng_duration)(WORKER_STALL_NS / 1000000ull), s->grow_aio);
    }
}

static void grow_cb(void *arg)
{
    struct net_server *s = arg;
    int rv = nng_aio_result(s->grow_aio);

    pthread_mutex_lock(&s->mu);
    s->grow_armed = false;
    if (rv == 0 || rv == NNG_ETIMEDOUT) {
        check_stall_locked(s, cairn_mono_ns());
    }
    pthread_mutex_unlock(&s->mu);
}

static void enqueue(struct net_conn *c, enum job job)
{
    struct net_server *s = c->s;
    bool wake;

    pthread_mutex_lock(&s->mu);
    c->job = job;
    c->next_job = NULL;
    if (s->q_tail != NULL) {
        s->q_tail->next_job = c;
    } else {
        s->q_head = c;
    }
    s->q_tail = c;
    c->queued_ns = cairn_mono_ns();
    s->n_queued++;
    if (s->n_queued > s->n_idle) {
        check_stall_locked(s, c->queued_ns);
    }
    wake = s->n_idle > 0;
    if (wake) {
        atomic_fetch_add(&s->n_waking, 1);
    }
    pthread_mutex_unlock(&s->mu);
    if (wake) {
        /* After the unlock: the woken worker takes s->mu at once instead of
         * blocking on it until we release it (a second futex wake and
         * context switch per request). */
        pthread_cond_signal(&s->work_cond);
        atomic_fetch_sub(&s->n_waking, 1);
    }
}

/* Frees a connection. Never on one of its own aio callbacks. */
static void conn_destroy(struct net_conn *c)
{
    struct net_server *s = c->s;
    bool last;

    net_log_event(s, "Connection ended conn%llu remote %s", (unsigned long long)c->id, c->peer);
    pthread_mutex_lock(&s->mu);
    c->destroying = true;
    pthread_mutex_unlock(&s->mu);
    if (c->stream != NULL) {
        nng_stream_close(c->stream);
    }
    if (c->rx_aio != NULL) {
        nng_aio_free(c->rx_aio);
    }
    if (c->tx_aio != NULL) {
        nng_aio_free(c->tx_aio);
    }
    pthread_mutex_lock(&s->mu);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else if (s->conns == c) {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->busy) {
        s->n_busy--;
    }
    s->n_conns--;
    last = s->stop_done && s->n_conns == 0;
    pthread_cond_broadcast(&s->stop_cond);
    pthread_mutex_unlock(&s->mu);
    if (c->stream != NULL) {
        nng_stream_free(c->stream);
    }
    if (c->reserved > 0) {
        net_rx_release(c->reserved);
    }
    free(c->msg);
    free(c->out);
    free(c->app_name);
    if (c->metadata != NULL) {
        bson_destroy(c->metadata);
    }
    free(c);
    if (last) {
        server_free(s);
    }
}

static void recv_more(struct net_conn *c)
{
    nng_iov iov;

    if (c->msg != NULL) {
        if (c->got == c->msg_cap) {
            /* Grow as the bytes come (the budget holds the whole length). */
            size_t cap = net_rx_next_cap(c->msg_cap, c->msg_len);
            uint8_t *bigger = realloc(c->msg, cap);
            if (bigger == NULL) {
                enqueue(c, JOB_DESTROY);
                return;
            }
            c->msg = bigger;
            c->msg_cap = cap;
        }
        iov.iov_buf = c->msg + c->got;
        iov.iov_len = c->msg_cap - c->got;
    } else {
        iov.iov_buf = c->rbuf + c->rlen;
        iov.iov_len = sizeof c->rbuf - c->rlen;
    }
    if (nng_aio_set_iov(c->rx_aio, 1, &iov) != 0) {
        enqueue(c, JOB_DESTROY);
        return;
    }
    nng_stream_recv(c->stream, c->rx_aio);
}

/* A whole message is at c->msg: it leaves the budget and goes to a worker.
 * Do not touch c after it returns. */
static void message_done(struct net_conn *c)
{
    if (c->reserved > 0) {
        net_rx_release(c->reserved);
        c->reserved = 0;
    }
    atomic_store(&c->partial_since, 0);
    enqueue(c, JOB_REQUEST);
}

/* Takes the next message out of rbuf when it is all there (then hands it
 * to a worker), switches to a dedicated buffer for a large one (once the
 * budget admits its length: until then rx_aio sleeps and this runs again),
 * or reads more. Do not touch c after it returns. */
static void take_message(struct net_conn *c)
{
    struct wire_header h;
    size_t len;

    if (c->rlen == 0) {
        atomic_store(&c->partial_since, 0);
    } else if (atomic_load(&c->partial_since) == 0) {
        atomic_store(&c->partial_since, cairn_mono_ns());
    }
    if (c->rlen < WIRE_HEADER_LEN) {
        recv_more(c);
        return;
    }
    if (wire_parse_header(c->rbuf, &h) != 0) {
        net_log_event(c->s, "conn%llu: closing: invalid message length %d",
                      (unsigned long long)c->id, h.length);
        enqueue(c, JOB_DESTROY);
        return;
    }
    len = (size_t)h.length;
    if (len > c->rlen && len <= sizeof c->rbuf) {
        recv_more(c);
        return;
    }
    if (len <= c->rlen) {
        c->msg = malloc(len);
        if (c->msg == NULL) {
            enqueue(c, JOB_DESTROY);
            return;
        }
        c->msg_len = c->msg_cap = c->got = len;
        memcpy(c->msg, c->rbuf, len);
        memmove(c->rbuf, c->rbuf + len, c->rlen - len);
        c->rlen -= len;
        message_done(c);
        return;
    }
    /* Larger than rbuf: admitted by the budget for its whole length, so
     * that every admitted message can complete. */
    if (!net_rx_reserve(len)) {
        net_rx_count_wait();
        c->rx_waiting = true;
        nng_sleep_aio(NET_RX_RETRY_MS, c->rx_aio);
        return;
    }
    c->reserved = len;
    c->msg_cap = net_rx_next_cap(c->rlen, len);
    c->msg = malloc(c->msg_cap);
    if (c->msg == NULL) {
        enqueue(c, JOB_DESTROY);
        return;
    }
    c->msg_len = len;
    memcpy(c->msg, c->rbuf, c->rlen);
    c->got = c->rlen;
    c->rlen = 0;
    recv_more(c);
}

static void start_recv(struct net_conn *c)
{
    c->got = 0;
    free(c->msg);
    c->msg = NULL;
    c->msg_len = 0;
    c->msg_cap = 0;
    take_message(c);
}

/* The watch read of a parked command's connection completed. Data is
 * kept for the next turn; a failure other than our own cancel means the
 * peer is gone. Either way the read is not re-armed, so that
 * net_conn_unwatch has at most one read to cancel. */
static void watch_rx_cb(struct net_conn *c, int rv)
{
    if (rv == 0) {
        c->rlen += nng_aio_count(c->rx_aio);
        return;
    }
    if (rv != NNG_ECANCELED) {
        c->watch_gone = true;
        c->watch_cb(c->watch_arg);
    }
}

bool net_conn_watch(struct net_conn *c, void (*gone_cb)(void *arg), void *arg)
{
    nng_iov iov;

    if (c->msg != NULL || c->rlen >= sizeof c->rbuf) {
        return false;
    }
    iov.iov_buf = c->rbuf + c->rlen;
    iov.iov_len = sizeof c->rbuf - c->rlen;
    if (nng_aio_set_iov(c->rx_aio, 1, &iov) != 0) {
        return false;
    }
    c->watch_cb = gone_cb;
    c->watch_arg = arg;
    c->watch_gone = false;
    c->watching = true;
    nng_stream_recv(c->stream, c->rx_aio);
    return true;
}

bool net_conn_unwatch(struct net_conn *c)
{
    if (!c->watching) {
        return false;
    }
    nng_aio_cancel(c->rx_aio);
    nng_aio_wait(c->rx_aio);
    c->watching = false;
    return c->watch_gone;
}

static void rx_cb(void *arg)
{
    struct net_conn *c = arg;
    int rv = nng_aio_result(c->rx_aio);

    if (c->watching) {
        watch_rx_cb(c, rv);
        return;
    }
    if (c->rx_waiting) {
        /* The pause after finding the budget spent ended (or was cancelled:
         * the message's deadline passed, or shutdown). */
        c->rx_waiting = false;
        if (rv == 0 || rv == NNG_ETIMEDOUT) {
            take_message(c);
        } else {
            enqueue(c, JOB_DESTROY);
        }
        return;
    }
    if (rv != 0) {
        enqueue(c, JOB_DESTROY);
        return;
    }
    if (c->msg == NULL) {
        c->rlen += nng_aio_count(c->rx_aio);
        take_message(c);
        return;
    }
    c->got += nng_aio_count(c->rx_aio);
    if (c->got < c->msg_len) {
        recv_more(c);
        return;
    }
    /* A whole message: hand it to a worker. Do not touch c afterwards. */
    message_done(c);
}

/* A reply's write ended (written, or failed). */
static void sending_done(struct net_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->n_sending--;
    pthread_cond_broadcast(&s->stop_cond);
    pthread_mutex_unlock(&s->mu);
}

static void send_more(struct net_conn *c)
{
    nng_iov iov;

    iov.iov_buf = c->out + c->sent;
    iov.iov_len = c->out_len - c->sent;
    if (nng_aio_set_iov(c->tx_aio, 1, &iov) != 0) {
        sending_done(c->s);
        enqueue(c, JOB_DESTROY);
        return;
    }
    nng_stream_send(c->stream, c->tx_aio);
}

static void tx_cb(void *arg)
{
    struct net_conn *c = arg;
    struct net_server *s = c->s;
    int rv = nng_aio_result(c->tx_aio);
    bool stopping;

    if (rv != 0) {
        sending_done(s);
        enqueue(c, JOB_DESTROY);
        return;
    }
    c->sent += nng_aio_count(c->tx_aio);
    if (c->sent < c->out_len) {
        send_more(c);
        return;
    }
    free(c->out);
    c->out = NULL;
    pthread_mutex_lock(&s->mu);
    s->n_sending--;
    pthread_cond_broadcast(&s->stop_cond);
    stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (stopping) {
        enqueue(c, JOB_DESTROY);
        return;
    }
    start_recv(c);
}

/* Ends a BUSY turn; returns true when the server is stopping. With
 * `sending` (and not stopping) a reply's write begins. */
static bool end_turn(struct net_conn *c, bool sending)
{
    struct net_server *s = c->s;
    bool stopping;

    assert(!c->watching);
    pthread_mutex_lock(&s->mu);
    if (c->busy) {
        c->busy = false;
        s->n_busy--;
        pthread_cond_broadcast(&s->stop_cond);
    }
    stopping = s->stopping;
    if (sending && !stopping) {
        s->n_sending++;
    }
    pthread_mutex_unlock(&s->mu);
    return stopping;
}

void net_conn_reply(struct net_conn *c, uint8_t *msg, size_t len)
{
    if (end_turn(c, true)) {
        free(msg);
        conn_destroy(c);
        return;
    }
    c->out = msg;
    c->out_len = len;
    c->sent = 0;
    send_more(c);
}

void net_conn_next(struct net_conn *c)
{
    if (end_turn(c, false)) {
        conn_destroy(c);
        return;
    }
    start_recv(c);
}

void net_conn_drop(struct net_conn *c)
{
    end_turn(c, false);
    conn_destroy(c);
}

static void format_peer(nng_stream *st, char *buf, size_t n)
{
    nng_sockaddr sa;

    snprintf(buf, n, "unknown");
    if (nng_stream_get_addr(st, NNG_OPT_REMADDR, &sa) != 0) {
        return;
    }
    if (sa.s_family == NNG_AF_INET) {
        const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
        const uint8_t *p = (const uint8_t *)&sa.s_in.sa_port;
        snprintf(buf, n, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], (unsigned)(p[0] << 8 | p[1]));
    } else if (sa.s_family == NNG_AF_INET6) {
        const uint8_t *p = (const uint8_t *)&sa.s_in6.sa_port;
        char tmp[48];
        size_t off = 0;
        for (int i = 0; i < 16; i += 2) {
            off += (size_t)snprintf(tmp + off, sizeof tmp - off, "%s%x", i ? ":" : "",
                                    sa.s_in6.sa_addr[i] << 8 | sa.s_in6.sa_addr[i + 1]);
        }
        snprintf(buf, n, "[%s]:%u", tmp, (unsigned)(p[0] << 8 | p[1]));
    }
}

/* Descriptors kept free for files whatever the limit, beyond those open
 * at start-up: RocksDB's (new WALs and SSTs; the engine bounds its table
 * cache), the raft log's (segments, an eventfd per open segment), member
 * connections, checkpoint and rollback files. */
#define FD_RESERVE_MIN 64

/* Descriptors open now (the engine, raft, nng's pollers...); 0 when
 * unknown. */
static int64_t open_descriptors(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int64_t n = 0;

    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

/* The connection cap: 80% of RLIMIT_NOFILE, as mongod, and at least
 * FD_RESERVE_MIN descriptors above those open at start-up kept free. */
static int64_t connection_cap(void)
{
    struct rlimit rl;
    int64_t lim, cap, base = open_descriptors();

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)INT32_MAX) {
        return INT32_MAX;
    }
    lim = (int64_t)rl.rlim_cur;
    cap = lim * 8 / 10;
    if (lim - cap < base + FD_RESERVE_MIN) {
        cap = lim - base - FD_RESERVE_MIN;
    }
    return cap < 1 ? 1 : cap;
}

static void accept_cb(void *arg)
{
    struct net_server *s = arg;
    int rv = nng_aio_result(s->accept_aio);
    nng_stream *st;
    struct net_conn *c;

    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            return;
        }
        if (s->accept_failures++ == 0 && cairn_wall_ms() - s->accept_logged_ms >= 1000) {
            s->accept_logged_ms = cairn_wall_ms();
            s->accept_run_logged = true;
            cairn_log(CAIRN_LOG_WARN, "net",
                      "accept: %s; retrying with backoff (pending clients wait in the backlog)",
                      nng_strerror(rv));
        }
        s->backoff_ms = s->backoff_ms == 0
                            ? ACCEPT_BACKOFF_MIN_MS
                            : (s->backoff_ms * 2 > ACCEPT_BACKOFF_MAX_MS ? ACCEPT_BACKOFF_MAX_MS
                                                                         : s->backoff_ms * 2);
        pthread_mutex_lock(&s->mu);
        if (!s->stopping) {
            nng_sleep_aio((nng_duration)s->backoff_ms, s->backoff_aio);
        }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (s->accept_failures > 0) {
        if (s->accept_run_logged) {
            cairn_log(CAIRN_LOG_INFO, "net", "accept: working again after %llu failed attempts",
                      (unsigned long long)s->accept_failures);
        }
        s->accept_run_logged = false;
        s->accept_failures = 0;
        s->backoff_ms = 0;
    }
    st = nng_aio_get_output(s->accept_aio, 0);
    c = calloc(1, sizeof *c);
    if (c == NULL || nng_aio_alloc(&c->rx_aio, rx_cb, c) != 0 ||
        nng_aio_alloc(&c->tx_aio, tx_cb, c) != 0) {
        if (c != NULL) {
            if (c->rx_aio != NULL) {
                nng_aio_free(c->rx_aio);
            }
            free(c);
        }
        nng_stream_free(st);
        goto rearm;
    }
    c->s = s;
    c->stream = st;
    (void)nng_stream_set_bool(st, NNG_OPT_TCP_NODELAY, true);
    format_peer(st, c->peer, sizeof c->peer);

    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        nng_aio_free(c->rx_aio);
        nng_aio_free(c->tx_aio);
        free(c);
        nng_stream_free(st);
        return;
    }
    if (s->n_conns >= s->max_conns) {
        int64_t now = cairn_wall_ms();
        bool log_it = now - s->refused_logged_ms >= 1000;
        int64_t n = s->n_conns;
        s->n_refused++;
        if (log_it) {
            s->refused_logged_ms = now;
        }
        pthread_mutex_unlock(&s->mu);
        if (log_it) {
            /* mongod's words; once a second at most. */
            cairn_log(CAIRN_LOG_WARN, "net",
                      "connection refused because too many open connections: %lld (the cap is "
                      "80%% of the open-file limit; %llu refused so far)",
                      (long long)n, (unsigned long long)s->n_refused);
        }
        nng_aio_free(c->rx_aio);
        nng_aio_free(c->tx_aio);
        free(c);
        nng_stream_free(st);
        goto rearm;
    }
    c->id = ++s->next_conn_id;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->n_conns++;
    s->total_conns++;
    pthread_mutex_unlock(&s->mu);
    net_log_event(s, "Connection accepted conn%llu remote %s", (unsigned long long)c->id, c->peer);
    start_recv(c);

rearm:
    pthread_mutex_lock(&s->mu);
    if (!s->stopping) {
        nng_stream_listener_accept(s->listener, s->accept_aio);
    }
    pthread_mutex_unlock(&s->mu);
}

/* The pause after a failed accept ends: try again. */
static void accept_backoff_cb(void *arg)
{
    struct net_server *s = arg;
    int rv = nng_aio_result(s->backoff_aio);

    if (rv != 0 && rv != NNG_ETIMEDOUT) {
        return; /* canceled at shutdown */
    }
    pthread_mutex_lock(&s->mu);
    if (!s->stopping) {
        nng_stream_listener_accept(s->listener, s->accept_aio);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- Stalled messages ----------------------------------------------------------- */

size_t net_server_drop_stalled(struct net_server *s, uint64_t now_ns)
{
    uint64_t limit = net_rx_timeout_ns();
    size_t n = 0;

    pthread_mutex_lock(&s->mu);
    for (struct net_conn *c = s->conns; c != NULL; c = c->next) {
        uint64_t since = atomic_load(&c->partial_since);
        /* `since` may be newer than `now_ns` (read by the sweeper before it
         * took the lock): a message begun just now is not overdue. */
        if (c->busy || c->destroying || c->job != JOB_NONE || since == 0 || since >= now_ns ||
            now_ns - since <= limit) {
            continue;
        }
        /* Its read (or its pause for the budget) fails and rx_cb has the
         * connection destroyed, which gives its bytes back. */
        if (c->timed_out_since != since) {
            c->timed_out_since = since;
            net_log_event(s, "conn%llu: closing: message incomplete after %llu ms",
                          (unsigned long long)c->id,
                          (unsigned long long)((now_ns - since) / 1000000ull));
            net_rx_count_timeout();
            n++;
        }
        /* Again at the next sweep if the read was being re-armed just now
         * (a cancel finds nothing pending then). */
        nng_aio_cancel(c->rx_aio);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- Workers ------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct net_server *s = arg;

    for (;;) {
        struct net_conn *c;
        enum job job;
        uint8_t *msg;
        size_t len;

        pthread_mutex_lock(&s->mu);
        while (s->q_head == NULL && !s->stopped) {
            s->n_idle++;
            pthread_cond_wait(&s->work_cond, &s->mu);
            s->n_idle--;
        }
        if (s->q_head == NULL) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        c = s->q_head;
        s->n_queued--;
        s->q_head = c->next_job;
        if (s->q_head == NULL) {
            s->q_tail = NULL;
        }
        job = c->job;
        c->job = JOB_NONE;
        if (job == JOB_REQUEST && !s->stopping) {
            c->busy = true;
            s->n_busy++;
        } else {
            job = JOB_DESTROY;
        }
        pthread_mutex_unlock(&s->mu);

        if (job == JOB_DESTROY) {
            conn_destroy(c);
            continue;
        }
        msg = c->msg;
        len = c->msg_len;
        c->msg = NULL;
        c->msg_len = 0;
        net_dispatch_message(c, c->id, msg, len);
    }
}

/* ---- Start / stop ---------------------------------------------------------------- */

static void server_free(struct net_server *s)
{
    while (atomic_load(&s->n_waking) > 0) {
        sched_yield();
    }
    net_hello_free(s->hello);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->log_mu);
    pthread_cond_destroy(&s->work_cond);
    pthread_cond_destroy(&s->stop_cond);
    for (size_t i = 0; i < s->opts.n_params; i++) {
        free((char *)s->params[i].name);
        free((char *)s->params[i].value);
    }
    free(s->params);
    free(s->workers);
    free(s->bind_ip);
    free(s->dbpath);
    free(s);
}

int net_server_start(const struct net_options *opts,
                     const struct net_deps *deps,
                     struct net_server **out,
                     struct cairn_error *err)
{
    struct net_server *s;
    char url[300];
    int rv;

    if (opts->port <= 0 || opts->port > 65535 || opts->bind_ip == NULL) {
        return cairn_error_setf(err, CAIRN_EINVAL, "net: invalid listen address");
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "net: out of memory");
    }
    s->opts = *opts;
    s->opts.params = NULL; /* copied below, for getCmdLineOpts */
    s->opts.n_params = 0;
    s->bind_ip = strdup(opts->bind_ip);
    s->dbpath = opts->dbpath != NULL ? strdup(opts->dbpath) : NULL;
    s->opts.bind_ip = s->bind_ip;
    s->opts.dbpath = s->dbpath;
    s->deps = *deps;
    s->n_base = opts->n_workers > 0 ? opts->n_workers : DEFAULT_WORKERS;
    s->max_workers = s->n_base > MAX_WORKERS ? s->n_base : MAX_WORKERS;
    s->max_conns = connection_cap();
    s->start_wall_ms = cairn_wall_ms();
    s->start_mono_ns = cairn_mono_ns();
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->log_mu, NULL);
    pthread_cond_init(&s->work_cond, NULL);
    pthread_cond_init(&s->stop_cond, NULL);
    s->workers = calloc((size_t)s->max_workers, sizeof *s->workers);
    if (s->bind_ip == NULL || (opts->dbpath != NULL && s->dbpath == NULL) || s->workers == NULL) {
        server_free(s);
        return cairn_error_setf(err, CAIRN_ENOMEM, "net: out of memory");
    }
    /* --setParameter values, before any client can see the old ones. */
    rv = net_params_apply_startup(s, opts->params, opts->n_params, err);
    if (rv != 0) {
        server_free(s);
        return rv;
    }
    rv = net_hello_start(s, deps->repl, &s->hello, err);
    if (rv != 0) {
        server_free(s);
        return rv;
    }
    if (opts->n_params > 0) {
        s->params = calloc(opts->n_params, sizeof *s->params);
        if (s->params == NULL) {
            server_free(s);
            return cairn_error_setf(err, CAIRN_ENOMEM, "net: out of memory");
        }
        s->opts.params = s->params;
        for (size_t i = 0; i < opts->n_params; i++) {
            s->params[i].name = strdup(opts->params[i].name);
            s->params[i].value = strdup(opts->params[i].value);
            s->opts.n_params = i + 1;
            if (s->params[i].name == NULL || s->params[i].value == NULL) {
                server_free(s);
                return cairn_error_setf(err, CAIRN_ENOMEM, "net: out of memory");
            }
        }
    }

    if (strchr(opts->bind_ip, ':') != NULL) {
        snprintf(url, sizeof url, "tcp://[%s]:%d", opts->bind_ip, opts->port);
    } else {
        snprintf(url, sizeof url, "tcp://%s:%d", opts->bind_ip, opts->port);
    }
    rv = nng_stream_listener_alloc(&s->listener, url);
    if (rv == 0) {
        rv = nng_stream_listener_listen(s->listener);
    }
    if (rv != 0) {
        if (s->listener != NULL) {
            nng_stream_listener_free(s->listener);
        }
        server_free(s);
        return cairn_error_setf(err, CAIRN_EIO, "net: listen on %s: %s", url, nng_strerror(rv));
    }
    rv = nng_aio_alloc(&s->accept_aio, accept_cb, s);
    if (rv == 0) {
        rv = nng_aio_alloc(&s->backoff_aio, accept_backoff_cb, s);
        if (rv != 0) {
            nng_aio_free(s->accept_aio);
        }
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&s->grow_aio, grow_cb, s);
        if (rv != 0) {
            nng_aio_free(s->accept_aio);
            nng_aio_free(s->backoff_aio);
        }
    }
    if (rv != 0) {
        nng_stream_listener_free(s->listener);
        server_free(s);
        return cairn_error_setf(err, CAIRN_ENOMEM, "net: aio: %s", nng_strerror(rv));
    }
    rv = net_sweeper_start(s, &s->sweeper, err);
    if (rv != 0) {
        nng_aio_free(s->accept_aio);
        nng_aio_free(s->backoff_aio);
        nng_aio_free(s->grow_aio);
        nng_stream_listener_free(s->listener);
        server_free(s);
        return rv;
    }
    pthread_mutex_lock(&s->mu);
    while (s->n_workers < s->n_base && spawn_worker_locked(s) == 0) {
    }
    bool started = s->n_workers == s->n_base;
    if (!started) {
        s->stopping = s->stopped = true;
        pthread_cond_broadcast(&s->work_cond);
    }
    pthread_mutex_unlock(&s->mu);
    if (!started) {
        net_sweeper_stop(s->sweeper);
        for (int k = 0; k < s->n_workers; k++) {
            pthread_join(s->workers[k], NULL);
        }
        nng_aio_free(s->accept_aio);
        nng_aio_free(s->backoff_aio);
        nng_aio_free(s->grow_aio);
        nng_stream_listener_free(s->listener);
        server_free(s);
        return cairn_error_setf(err, CAIRN_ENOMEM, "net: cannot start worker threads");
    }
    net_log_event(s, "Waiting for connections on %s", url);
    cairn_log(CAIRN_LOG_INFO, "net",
              "listening on %s with %d workers (up to %d), at most %lld connections", url,
              s->n_base, s->max_workers, (long long)s->max_conns);
    nng_stream_listener_accept(s->listener, s->accept_aio);
    *out = s;
    return 0;
}

static bool is_client_op(const struct cairn_op *op, void *arg)
{
    return op->conn_id != 0;
}

/* The CLOCK_REALTIME time `ns` from now (stop_cond's clock). */
static void deadline_after(struct timespec *until, uint64_t ns)
{
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += (time_t)(ns / 1000000000ull);
    until->tv_nsec += (long)(ns % 1000000000ull);
    if (until->tv_nsec >= 1000000000L) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000L;
    }
}

/* Waits (at most SEND_DRAIN_NS) until no reply is being written. */
static void drain_sends(struct net_server *s)
{
    struct timespec until;
    int rv = 0;

    deadline_after(&until, SEND_DRAIN_NS);
    pthread_mutex_lock(&s->mu);
    while (s->n_sending > 0 && rv != ETIMEDOUT) {
        rv = pthread_cond_timedwait(&s->stop_cond, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
}

void net_server_stop(struct net_server *s)
{
    bool last;

    if (s == NULL) {
        return;
    }
    /* mongod's quiesce mode: parked awaitable hellos answer 91
     * ShutdownInProgress (so do later hellos), and those answers leave
     * before the connections close. */
    net_hello_quiesce(s->hello);
    /* No more sweeps: the cursors are closed below, the connections go. */
    net_sweeper_stop(s->sweeper);
    s->sweeper = NULL;
    drain_sends(s);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    /* Running client commands end with 11600 InterruptedAtShutdown (a scan,
     * a blockConnection sleep, an afterClusterTime wait) so that the workers
     * below can be joined. A command that registers its operation after
     * this sees `stopping` itself (net_op_begin). */
    cairn_op_kill_all(is_client_op, NULL, MONGO_InterruptedAtShutdown);
    nng_stream_listener_close(s->listener);
    nng_aio_stop(s->accept_aio);
    nng_aio_stop(s->backoff_aio);
    nng_aio_stop(s->grow_aio);

    pthread_mutex_lock(&s->mu);
    for (struct net_conn *c = s->conns; c != NULL; c = c->next) {
        nng_stream_close(c->stream);
    }
    /* Wait until every connection left is in a command (workers destroy
     * the others as their aios fail). An aio armed after its stream was
     * closed here (tx_cb and accept_cb arm the next read after checking
     * `stopping`, outside the lock) never completes: nng 1.5 queues it on
     * the closed stream. So every STOP_RECHECK_NS the reads and writes
     * idle connections still have pending are cancelled, which ends them. */
    while (s->n_conns > s->n_busy) {
        struct timespec until;
        deadline_after(&until, STOP_RECHECK_NS);
        if (pthread_cond_timedwait(&s->stop_cond, &s->mu, &until) != ETIMEDOUT) {
            continue;
        }
        for (struct net_conn *c = s->conns; c != NULL; c = c->next) {
            if (!c->busy && !c->destroying) {
                nng_aio_cancel(c->rx_aio);
                nng_aio_cancel(c->tx_aio);
            }
        }
    }
    s->stopped = true;
    pthread_cond_broadcast(&s->work_cond);
    while (s->n_completing > 0) {
        pthread_cond_wait(&s->stop_cond, &s->mu);
    }
    /* No worker starts once stopping is set (enqueue checks it). */
    int n_workers = s->n_workers;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n_workers; i++) {
        pthread_join(s->workers[i], NULL);
    }
    /* Cursors hold engine reads; they must end before the engine closes. */
    if (net_cursor_close_all() != 0) {
        cairn_log(CAIRN_LOG_WARN, "net", "cursors still in use at shutdown");
    }
    nng_aio_free(s->accept_aio);
    nng_aio_free(s->backoff_aio);
    nng_aio_free(s->grow_aio);
    nng_stream_listener_free(s->listener);
    s->accept_aio = NULL;
    s->backoff_aio = NULL;
    s->grow_aio = NULL;
    s->listener = NULL;
    net_fp_reset_all();
    cairn_log(CAIRN_LOG_INFO, "net", "server stopped");

    pthread_mutex_lock(&s->mu);
    s->stop_done = true;
    last = s->n_conns == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) {
        server_free(s);
    }
}
