/*
 * transport_dial.c: how the connections of the member transport begin. The
 * listener: binding it, accepting (an incoming conn starts in HANDSHAKE).
 * Outgoing conns: an IPv4 literal is connected to at once; a host name is
 * resolved first, on every connect (at most MAX_RESOLVING lookups in
 * flight, the others queued FIFO on tr->rq), then connected to, from the
 * listener's address when it is a specific one. The handshake that
 * follows is in transport_handshake.c.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "lib/log.h"
#include "repl/transport_int.h"

#define LISTEN_BACKLOG 64
/* getaddrinfo requests in flight per transport: libuv runs them on its
 * thread pool (4 threads), which raft_uv's disk work needs too; a slow DNS
 * must not take all of it. Further lookups wait in tr->rq. */
#define MAX_RESOLVING 2

/* ---- Helpers ------------------------------------------------------------- */

/* Splits "host:port" (host 1..253 characters, no IPv6 literal; port
 * 0..65535) into host and port strings and, if `port_num` is not NULL, the
 * port's number. Returns 0 or -1. */
static int split_address(const char *address,
                         char *host,
                         size_t host_cap,
                         char *port,
                         size_t port_cap,
                         int *port_num)
{
    const char *colon;
    size_t hlen, plen;
    unsigned long p = 0;

    if (address == NULL || strlen(address) > REPL_TRANSPORT_ADDRESS_MAX) {
        return -1;
    }
    colon = strrchr(address, ':');
    if (colon == NULL || memchr(address, '[', (size_t)(colon - address)) != NULL) {
        return -1;
    }
    hlen = (size_t)(colon - address);
    plen = strlen(colon + 1);
    if (hlen == 0 || hlen > 253 || hlen >= host_cap || plen == 0 || plen > 5 || plen >= port_cap) {
        return -1;
    }
    for (size_t i = 0; i < plen; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9') {
            return -1;
        }
        p = p * 10 + (unsigned long)(colon[1 + i] - '0');
    }
    if (p > 65535) {
        return -1;
    }
    memcpy(host, address, hlen);
    host[hlen] = '\0';
    memcpy(port, colon + 1, plen + 1);
    if (port_num != NULL) {
        *port_num = (int)p;
    }
    return 0;
}

static int random_bytes(uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t rv = getrandom(p + got, n - got, 0);
        if (rv < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        got += (size_t)rv;
    }
    return 0;
}

/* ---- Accepting ----------------------------------------------------------- */

void tr_listener_close_cb(uv_handle_t *h)
{
    struct tr *tr = h->data;
    tr->listener_open = false;
    tr->listening = false;
    tr_maybe_fire_close(tr);
}

static void listen_cb(uv_stream_t *server, int status)
{
    struct tr *tr = server->data;
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    struct conn *c;
    int rv;

    if (status != 0) {
        cairn_log(CAIRN_LOG_WARN, COMPONENT, "accept: %s", uv_strerror(status));
        return;
    }
    if (tr->closing) {
        return;
    }
    c = tr_conn_alloc(tr, KIND_INCOMING);
    if (c == NULL) {
        goto err;
    }
    c->tcp = raft_malloc(sizeof *c->tcp);
    if (c->tcp == NULL) {
        goto err_after_conn_alloc;
    }
    uv_tcp_init(tr->loop, c->tcp);
    c->tcp->data = c;
    c->state = ST_HANDSHAKE;
    tr_conn_set_deadline(c);
    rv = uv_accept(server, (uv_stream_t *)c->tcp);
    if (rv != 0) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EIO, "accept: %s", uv_strerror(rv));
        return;
    }
    snprintf(c->peer, sizeof c->peer, "(unknown)");
    if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &sslen) == 0 &&
        ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        char ip[INET_ADDRSTRLEN];
        uv_ip4_name(sin, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%u", ip, ntohs(sin->sin_port));
    }
    if (tr->n_incoming > REPL_TRANSPORT_MAX_INCOMING) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EBUSY, "more than %d incoming handshakes at once",
                     REPL_TRANSPORT_MAX_INCOMING);
        return;
    }
    if (random_bytes(c->nonce_a, NONCE_SIZE) != 0) {
        tr_conn_fail(c, CAIRN_LOG_ERROR, CAIRN_EIO, "getrandom: %s", strerror(errno));
        return;
    }
    uv_tcp_nodelay(c->tcp, 1);
    tr_conn_read(c, MSG_HELLO_FIXED, c->small, HELLO_FIXED);
    return;

err_after_conn_alloc:
    tr_conn_unlink_free(c);
err:
    /* As raft_uv_tcp does on the same failure: the connection is left
     * where it is, and libuv accepts no other until one uv_accept's it. */
    cairn_log(CAIRN_LOG_ERROR, COMPONENT, "out of memory accepting a connection");
}

int tr_start_listening(struct tr *tr, struct cairn_error *err)
{
    const char *address = tr->bind_address[0] ? tr->bind_address : tr->address;
    char host[256], port[8];
    int port_num;
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    int rv;

    if (tr->listening) {
        return 0;
    }
    if (tr->listener_open) {
        return cairn_error_setf(err, CAIRN_ESTATE, "the listener is closing");
    }
    if (split_address(address, host, sizeof host, port, sizeof port, &port_num) != 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "bad listen address '%s' (want host:port)",
                                address);
    }
    if (uv_ip4_addr(host, port_num, &sa) != 0) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        rv = getaddrinfo(host, port, &hints, &res);
        if (rv != 0 || res == NULL) {
            return cairn_error_setf(err, CAIRN_EINVAL, "listen address %s: %s", address,
                                    rv != 0 ? gai_strerror(rv) : "no IPv4 address");
        }
        memcpy(&sa, res->ai_addr, sizeof sa);
        freeaddrinfo(res);
    }
    uv_tcp_init(tr->loop, &tr->listener);
    tr->listener.data = tr;
    tr->listener_open = true;
    rv = uv_tcp_bind(&tr->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&tr->listener, LISTEN_BACKLOG, listen_cb);
    }
    if (rv != 0) {
        uv_close((uv_handle_t *)&tr->listener, tr_listener_close_cb);
        return cairn_error_setf(err, CAIRN_EIO, "listen on %s: %s (%s)", address, uv_strerror(rv),
                                uv_err_name(rv));
    }
    tr->listening = true;
    if (uv_tcp_getsockname(&tr->listener, (struct sockaddr *)&bound, &blen) == 0 &&
        bound.ss_family == AF_INET) {
        tr->port = ntohs(((const struct sockaddr_in *)&bound)->sin_port);
    }
    if (sa.sin_addr.s_addr != htonl(INADDR_ANY)) {
        tr->source = sa;
        tr->source.sin_port = 0;
        tr->has_source = true;
    }
    return 0;
}

/* ---- Connecting ---------------------------------------------------------- */

/* Connects to `sa`. Returns 0 (connecting, or failed and closing: the
 * conn's callback fires later) or CAIRN_ENOMEM with no handle made. */
static int start_connect(struct conn *c, const struct sockaddr_in *sa)
{
    struct tr *tr = c->tr;
    int rv;

    c->tcp = raft_malloc(sizeof *c->tcp);
    if (c->tcp == NULL) {
        return CAIRN_ENOMEM;
    }
    uv_tcp_init(tr->loop, c->tcp);
    c->tcp->data = c;
    c->state = ST_CONNECTING;
    rv = 0;
    if (tr->has_source) {
        rv = uv_tcp_bind(c->tcp, (const struct sockaddr *)&tr->source, 0);
    }
    if (rv == 0) {
        rv = uv_tcp_connect(&c->connect, c->tcp, (const struct sockaddr *)sa, tr_connect_cb);
    }
    if (rv != 0) {
        tr_conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_EIO, "connect: %s", uv_strerror(rv));
    }
    return 0;
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

void tr_dequeue(struct conn *c)
{
    struct tr *tr = c->tr;
    struct conn **p = &tr->rq_head;
    struct conn *prev = NULL;

    while (*p != NULL && *p != c) {
        prev = *p;
        p = &(*p)->qnext;
    }
    if (*p == c) {
        *p = c->qnext;
        if (tr->rq_tail == c) {
            tr->rq_tail = prev;
        }
    }
    c->qnext = NULL;
    c->queued = false;
}

/* Starts resolving c->host, or queues c when MAX_RESOLVING lookups are in
 * flight. Returns 0 or a CAIRN_E* code (nothing started, no callback). */
static int resolve_start(struct conn *c)
{
    static const struct addrinfo hints = {
        .ai_family = AF_INET,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    struct tr *tr = c->tr;
    int rv;

    if (tr->n_resolving >= MAX_RESOLVING) {
        c->queued = true;
        if (tr->rq_tail != NULL) {
            tr->rq_tail->qnext = c;
        } else {
            tr->rq_head = c;
        }
        tr->rq_tail = c;
        return 0;
    }
    rv = uv_getaddrinfo(tr->loop, &c->gai, resolve_cb, c->host, c->port, &hints);
    if (rv != 0) {
        return rv == UV_ENOMEM ? CAIRN_ENOMEM : CAIRN_EIO;
    }
    tr->n_resolving++;
    return 0;
}

void tr_reap_queued(struct tr *tr)
{
    struct conn *c = tr->rq_head;

    while (c != NULL) {
        if (c->state != ST_CLOSING) {
            c = c->qnext;
            continue;
        }
        tr_dequeue(c);
        tr_conn_finish(c); /* its callback may queue others: start over */
        c = tr->rq_head;
    }
}

/* A resolve slot is free: start the next queued lookups. */
static void resolve_pump(struct tr *tr)
{
    while (!tr->closing && tr->n_resolving < MAX_RESOLVING && tr->rq_head != NULL) {
        struct conn *c = tr->rq_head;
        int rv;

        tr_dequeue(c);
        if (c->state == ST_CLOSING) {
            tr_conn_finish(c);
            continue;
        }
        rv = resolve_start(c);
        if (rv != 0) {
            c->status = rv;
            tr_conn_finish(c);
        }
    }
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    struct tr *tr = c->tr;
    struct sockaddr_in sa;
    const struct addrinfo *ai;
    int rv;

    tr->n_resolving--;
    if (c->state == ST_CLOSING) {
        uv_freeaddrinfo(res);
        tr_conn_finish(c); /* invariant 3: no handle yet */
        goto out;
    }
    for (ai = status == 0 ? res : NULL; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof sa) {
            break;
        }
    }
    if (ai == NULL) {
        cairn_log(CAIRN_LOG_DEBUG, COMPONENT, "member at %s: cannot resolve: %s", c->peer,
                  status != 0 ? uv_strerror(status) : "no IPv4 address");
        uv_freeaddrinfo(res);
        c->status = CAIRN_EIO;
        tr_conn_finish(c);
        goto out;
    }
    memcpy(&sa, ai->ai_addr, sizeof sa);
    uv_freeaddrinfo(res);
    rv = start_connect(c, &sa);
    if (rv != 0) {
        c->status = rv;
        tr_conn_finish(c);
    }
out:
    resolve_pump(tr);
}

int tr_start_outgoing(struct tr *tr, struct conn *c, const char *address)
{
    struct sockaddr_in sa;
    int port_num;
    int rv;

    if (split_address(address, c->host, sizeof c->host, c->port, sizeof c->port, &port_num) != 0) {
        rv = CAIRN_EINVAL;
        goto err;
    }
    if (random_bytes(c->nonce_c, NONCE_SIZE) != 0) {
        rv = CAIRN_EIO;
        goto err;
    }
    snprintf(c->peer, sizeof c->peer, "%s", address);
    tr_conn_set_deadline(c);
    if (uv_ip4_addr(c->host, port_num, &sa) == 0) {
        rv = start_connect(c, &sa); /* no lookup, no thread */
    } else {
        c->state = ST_RESOLVING;
        rv = resolve_start(c);
    }
    if (rv != 0) {
        goto err;
    }
    return 0;

err:
    assert(rv != 0);
    return rv;
}
