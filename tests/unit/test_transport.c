/*
 * test_transport.c: the member transport (src/repl/transport*.c) on a real
 * libuv loop over 127.0.0.1, and the key file rules (src/repl/keyfile.c).
 *
 * Two transports ("a" and "b") share one loop; listeners bind port 0 and
 * read back the port the kernel chose, so no fixed port is assumed free.
 * Hostile peers are raw libuv TCP clients that write bytes by hand (the
 * protocol table at the top of transport_handshake.c). The transport's log
 * lines (stderr) go to a file so that tests can count the WARN lines a peer
 * caused. Every test ends by closing the transports and requiring that
 * uv_loop_close succeeds (no handle left) and, under ASan, that nothing
 * leaked.
 */
#include <check.h>
#include <fcntl.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "lib/sha256.h"
#include "repl/repl.h"
#include "repl/transport.h"

/* ---- Fixture ----------------------------------------------------------- */

#define MAX_STREAMS 8
#define RUN_TIMEOUT_NS (15ull * 1000 * 1000 * 1000)

/* One end of a raft stream the transport handed over. */
struct end
{
    uv_stream_t *s;
    char got[64];
    size_t n_got;
    bool closed;
};

struct node
{
    struct raft_uv_transport t;
    bool inited;
    uint64_t id;
    char address[64];
    int port;
    int n_close_cb;
    bool closed;
    /* Accepted raft streams. */
    int n_accepted;
    uint64_t accepted_id[MAX_STREAMS];
    char accepted_address[MAX_STREAMS][64];
    struct end accepted[MAX_STREAMS];
    /* Control requests served. */
    int n_control;
    int control_rc;
};

/* A raft connect request of a test. */
struct conn_req
{
    struct raft_uv_connect req;
    int n_cb;
    int status;
    struct end end;
};

/* A control call of a test. */
struct call_res
{
    int n_cb;
    int status;
    int64_t x;
    bool has_reply;
};

/* A hand-driven TCP client or a listener that never answers. */
struct raw
{
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    bool connected;
    int connect_status;
    bool eof;
    bool closed;
    uint8_t got[128];
    size_t n_got;
    char local[64]; /* "127.0.0.1:port" as the transport sees us */
};

struct fixture
{
    uv_loop_t loop;
    uv_timer_t tick; /* keeps uv_run(UV_RUN_ONCE) returning */
    struct node a, b;
    char log_path[64];
    int saved_stderr;
    char dir[64];
};

static struct fixture *f;

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void setup(void)
{
    int fd;

    f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, tick_cb, 10, 10);
    /* The transport logs to stderr: keep its lines in a file. */
    snprintf(f->log_path, sizeof f->log_path, "/tmp/cairn-test-transport-%d.log", (int)getpid());
    fd = open(f->log_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    f->saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
    snprintf(f->dir, sizeof f->dir, "/tmp/cairn-test-keys-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
}

static void node_close_cb(struct raft_uv_transport *t)
{
    struct node *n = t->data;
    n->n_close_cb++;
}

static void walk_close_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void run_until_closed(struct node *n)
{
    uint64_t deadline = uv_hrtime() + RUN_TIMEOUT_NS;
    while (n->n_close_cb == 0 && uv_hrtime() < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    ck_assert_int_eq(n->n_close_cb, 1);
}

static void node_shutdown(struct node *n)
{
    if (!n->inited) {
        return;
    }
    if (!n->closed) {
        n->closed = true;
        n->t.close(&n->t, node_close_cb);
        run_until_closed(n);
    }
    repl_transport_close(&n->t);
    ck_assert_ptr_null(n->t.impl);
    n->inited = false;
}

static void teardown(void)
{
    char cmd[128];

    node_shutdown(&f->a);
    node_shutdown(&f->b);
    /* Test-side handles (raw peers, handed-over streams) still open. */
    uv_walk(&f->loop, walk_close_cb, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&f->loop), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    ck_assert_int_eq(system(cmd), 0);
    /* Sanitizer reports at exit go to the real stderr again. */
    fflush(stderr);
    dup2(f->saved_stderr, 2);
    close(f->saved_stderr);
    unlink(f->log_path);
    free(f);
}

/* ---- Helper macros and functions ------------------------------------------ */

#define RUN_UNTIL(COND)                                           \
    do {                                                          \
        uint64_t d_ = uv_hrtime() + RUN_TIMEOUT_NS;               \
        while (!(COND) && uv_hrtime() < d_) {                     \
            uv_run(&f->loop, UV_RUN_ONCE);                        \
        }                                                         \
        ck_assert_msg((COND), "timed out waiting for %s", #COND); \
    } while (0)

/* Runs the loop for about `ms` milliseconds. */
static void run_for(unsigned ms)
{
    uint64_t d = uv_hrtime() + (uint64_t)ms * 1000000;
    while (uv_hrtime() < d) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static int echo_control(void *arg, const bson_t *req, bson_t *reply)
{
    struct node *n = arg;
    bson_iter_t it;

    n->n_control++;
    if (n->control_rc != 0) {
        BSON_APPEND_UTF8(reply, "ignored", "yes");
        return n->control_rc;
    }
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    if (bson_iter_init_find(&it, req, "x") && BSON_ITER_HOLDS_INT64(&it)) {
        BSON_APPEND_INT64(reply, "x", bson_iter_int64(&it) + 1);
    }
    return 0;
}

static void end_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct end *e = h->data;
    (void)suggested;
    buf->base = e->got + e->n_got;
    buf->len = sizeof e->got - e->n_got;
}

static void end_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct end *e = s->data;
    (void)buf;
    if (nread > 0) {
        e->n_got += (size_t)nread;
    } else if (nread < 0) {
        e->closed = true;
        uv_read_stop(s);
    }
}

static void accept_cb(struct raft_uv_transport *t,
                      raft_id id,
                      const char *address,
                      uv_stream_t *stream)
{
    struct node *n = t->data;
    int i = n->n_accepted++;
    ck_assert_int_lt(i, MAX_STREAMS);
    n->accepted_id[i] = id;
    snprintf(n->accepted_address[i], sizeof n->accepted_address[i], "%s", address);
    n->accepted[i].s = stream;
    stream->data = &n->accepted[i];
    ck_assert_int_eq(uv_read_start(stream, end_alloc_cb, end_read_cb), 0);
}

/* Initializes node `n` (raft id `id`) listening on 127.0.0.1, port chosen
 * by the kernel; its raft address is then "127.0.0.1:<port>". */
static void node_start_opts(struct node *n, uint64_t id, const struct repl_transport_options *o)
{
    struct cairn_error err = {0, 0, {0}};

    ck_assert_int_eq(repl_transport_init(&n->t, &f->loop, o, &err), 0);
    ck_assert_int_eq(n->t.version, 1);
    n->inited = true;
    n->t.data = n;
    n->id = id;
    ck_assert_int_eq(n->t.init(&n->t, id, "127.0.0.1:1"), 0);
    ck_assert_int_eq(n->t.listen(&n->t, accept_cb), 0);
    n->port = repl_transport_port(&n->t);
    ck_assert_int_gt(n->port, 0);
    snprintf(n->address, sizeof n->address, "127.0.0.1:%d", n->port);
    /* raft_uv passes the address it was given; ours is known only now. */
    ck_assert_int_eq(n->t.init(&n->t, id, n->address), 0);
}

static void node_start(struct node *n, uint64_t id, const char *key, unsigned timeout_ms)
{
    struct repl_transport_options o = {
        .bind_address = "127.0.0.1:0",
        .key = key,
        .key_len = key != NULL ? strlen(key) : 0,
        .control = echo_control,
        .control_arg = n,
        .handshake_timeout_ms = timeout_ms,
    };
    node_start_opts(n, id, &o);
}

static void connect_cb(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    struct conn_req *c = req->data;
    c->n_cb++;
    c->status = status;
    c->end.s = stream;
    if (stream != NULL) {
        ck_assert_int_eq(status, 0);
        stream->data = &c->end;
    } else {
        ck_assert_int_ne(status, 0);
    }
}

static void node_connect(struct node *n, struct conn_req *c, uint64_t peer_id, const char *addr)
{
    memset(c, 0, sizeof *c);
    c->req.data = c;
    ck_assert_int_eq(n->t.connect(&n->t, &c->req, peer_id, addr, connect_cb), 0);
}

static void call_cb(void *arg, int status, const bson_t *reply)
{
    struct call_res *r = arg;
    bson_iter_t it;
    r->n_cb++;
    r->status = status;
    r->has_reply = reply != NULL;
    if (reply != NULL && bson_iter_init_find(&it, reply, "x") && BSON_ITER_HOLDS_INT64(&it)) {
        r->x = bson_iter_int64(&it);
    }
    if (reply != NULL && bson_iter_init_find(&it, reply, "code") && BSON_ITER_HOLDS_INT32(&it)) {
        r->x = bson_iter_int32(&it);
    }
}

static void node_call(struct node *n, struct call_res *r, const char *addr, int64_t x)
{
    bson_t req = BSON_INITIALIZER;
    memset(r, 0, sizeof *r);
    BSON_APPEND_INT64(&req, "x", x);
    ck_assert_int_eq(repl_transport_call(&n->t, addr, &req, 5000, call_cb, r), 0);
    bson_destroy(&req);
}

static void write_done_cb(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void stream_write(uv_stream_t *s, const void *p, size_t n)
{
    uv_write_t *w = malloc(sizeof *w + n);
    uv_buf_t buf;
    ck_assert_ptr_nonnull(w);
    memcpy(w + 1, p, n);
    buf = uv_buf_init((char *)(w + 1), (unsigned)n);
    ck_assert_int_eq(uv_write(w, s, &buf, 1, write_done_cb), 0);
}

static void raft_free_cb(uv_handle_t *h)
{
    raft_free(h);
}

/* Closes a stream the transport handed over, as raft_uv does. */
static void end_close(struct end *e)
{
    if (e->s != NULL) {
        uv_close((uv_handle_t *)e->s, raft_free_cb);
        e->s = NULL;
    }
}

/* Counts the lines of the log that contain both `a` and `b`. */
static int log_count(const char *a, const char *b)
{
    char line[2048];
    int n = 0;
    FILE *fp;

    fflush(stderr);
    fp = fopen(f->log_path, "r");
    ck_assert_ptr_nonnull(fp);
    while (fgets(line, sizeof line, fp) != NULL) {
        if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL)) {
            n++;
        }
    }
    fclose(fp);
    return n;
}

/* ---- Raw peers ------------------------------------------------------------- */

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    r->connected = status == 0;
    r->connect_status = status;
}

static void raw_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct raw *r = h->data;
    (void)suggested;
    buf->base = (char *)r->got + r->n_got;
    buf->len = sizeof r->got - r->n_got;
}

static void raw_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    (void)buf;
    if (nread > 0) {
        r->n_got += (size_t)nread;
    } else if (nread < 0) {
        r->eof = true;
        uv_read_stop(s);
    }
}

static void raw_close_cb(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = true;
}

/* Connects a raw client to 127.0.0.1:port and starts reading. */
static void raw_connect(struct raw *r, int port)
{
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;

    memset(r, 0, sizeof *r);
    uv_tcp_init(&f->loop, &r->tcp);
    r->tcp.data = r;
    r->connect.data = r;
    uv_ip4_addr("127.0.0.1", port, &sa);
    ck_assert_int_eq(uv_tcp_connect(&r->connect, &r->tcp, (struct sockaddr *)&sa, raw_connect_cb),
                     0);
    RUN_UNTIL(r->connected || r->connect_status != 0);
    ck_assert(r->connected);
    ck_assert_int_eq(uv_tcp_getsockname(&r->tcp, (struct sockaddr *)&ss, &len), 0);
    snprintf(r->local, sizeof r->local, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc_cb, raw_read_cb), 0);
}

static void raw_close(struct raw *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->tcp)) {
        uv_close((uv_handle_t *)&r->tcp, raw_close_cb);
    }
    RUN_UNTIL(r->closed);
}

/* A listener that never accepts: connections complete in the kernel and
 * then hear nothing. */
static void silent_cb(uv_stream_t *server, int status)
{
    (void)server;
    (void)status;
}

static void raw_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* Builds a HELLO as transport_handshake.c's table lays it out. */
static size_t make_hello(uint8_t *out,
                         uint8_t purpose,
                         uint64_t id,
                         const uint8_t nonce[32],
                         const char *address,
                         uint16_t claimed_len)
{
    size_t alen = strlen(address);
    memcpy(out, "CRMT", 4);
    out[4] = 0;
    out[5] = 1;
    out[6] = purpose;
    out[7] = 0;
    for (int i = 0; i < 8; i++) {
        out[8 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
    memcpy(out + 16, nonce, 32);
    out[48] = (uint8_t)(claimed_len >> 8);
    out[49] = (uint8_t)claimed_len;
    memcpy(out + 50, address, alen);
    return 50 + alen;
}

/* The proof of the connecting side as transport_handshake.c defines it. */
static void make_proof(const char *key,
                       uint8_t purpose,
                       uint64_t id,
                       const char *address,
                       const uint8_t nonce_c[32],
                       const uint8_t nonce_a[32],
                       uint8_t out[32])
{
    struct cairn_hmac_sha256 h;
    uint8_t hdr[11];
    size_t alen = strlen(address);
    uint8_t role = 'C';

    hdr[0] = purpose;
    for (int i = 0; i < 8; i++) {
        hdr[1 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
    hdr[9] = (uint8_t)(alen >> 8);
    hdr[10] = (uint8_t)alen;
    cairn_hmac_sha256_init(&h, key, strlen(key));
    cairn_hmac_sha256_update(&h, "cairn member transport v1", 25);
    cairn_hmac_sha256_update(&h, hdr, sizeof hdr);
    cairn_hmac_sha256_update(&h, address, alen);
    cairn_hmac_sha256_update(&h, nonce_c, 32);
    cairn_hmac_sha256_update(&h, nonce_a, 32);
    cairn_hmac_sha256_update(&h, &role, 1);
    cairn_hmac_sha256_final(&h, out);
}

/* Asserts that a well-behaved member can still get through to a. */
static void assert_good_peer_accepted(void)
{
    struct conn_req c;
    int before = f->a.n_accepted;

    if (!f->b.inited) {
        node_start(&f->b, 2, "secretkey", 0);
    }
    node_connect(&f->b, &c, 1, f->a.address);
    RUN_UNTIL(c.n_cb == 1 && f->a.n_accepted == before + 1);
    ck_assert_int_eq(c.status, 0);
    ck_assert_uint_eq(f->a.accepted_id[before], 2);
    ck_assert_str_eq(f->a.accepted_address[before], f->b.address);
    end_close(&c.end);
    end_close(&f->a.accepted[before]);
}

/* ---- Tests: handshake and raft streams -------------------------------------- */

/* With the same key, the handshake succeeds: the accept callback gets the
 * connecting member's id and address, the connect callback a stream, and
 * the two streams carry bytes both ways. */
START_TEST(test_transport_raft_handshake_same_key)
{
    struct conn_req c;

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "secretkey", 0);
    node_connect(&f->b, &c, 1, f->a.address);
    RUN_UNTIL(c.n_cb == 1 && f->a.n_accepted == 1);
    ck_assert_int_eq(c.status, 0);
    ck_assert_ptr_nonnull(c.end.s);
    ck_assert_uint_eq(f->a.accepted_id[0], 2);
    ck_assert_str_eq(f->a.accepted_address[0], f->b.address);

    stream_write(c.end.s, "ping", 4);
    RUN_UNTIL(f->a.accepted[0].n_got == 4);
    ck_assert(memcmp(f->a.accepted[0].got, "ping", 4) == 0);
    ck_assert_int_eq(uv_read_start(c.end.s, end_alloc_cb, end_read_cb), 0);
    stream_write(f->a.accepted[0].s, "pong!", 5);
    RUN_UNTIL(c.end.n_got == 5);
    ck_assert(memcmp(c.end.got, "pong!", 5) == 0);
    end_close(&c.end);
    end_close(&f->a.accepted[0]);
    ck_assert_int_eq(log_count(" W ", NULL), 0);
}
END_TEST

/* Without a key on either side the handshake still runs and succeeds (it
 * authenticates nothing). */
START_TEST(test_transport_raft_handshake_no_key)
{
    struct conn_req c;

    node_start(&f->a, 1, NULL, 0);
    node_start(&f->b, 2, NULL, 0);
    node_connect(&f->b, &c, 1, f->a.address);
    RUN_UNTIL(c.n_cb == 1 && f->a.n_accepted == 1);
    ck_assert_int_eq(c.status, 0);
    end_close(&c.end);
    end_close(&f->a.accepted[0]);
}
END_TEST

/* Different keys: refused in both directions, logged at WARN on both
 * sides, no stream reaches raft. */
START_TEST(test_transport_wrong_key_refused_both_ways)
{
    struct conn_req c1, c2;

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "othersecret", 0);
    node_connect(&f->b, &c1, 1, f->a.address);
    node_connect(&f->a, &c2, 2, f->b.address);
    RUN_UNTIL(c1.n_cb == 1 && c2.n_cb == 1);
    run_for(50);
    ck_assert_int_eq(c1.status, RAFT_NOCONNECTION);
    ck_assert_ptr_null(c1.end.s);
    ck_assert_int_eq(c2.status, RAFT_NOCONNECTION);
    ck_assert_int_eq(f->a.n_accepted, 0);
    ck_assert_int_eq(f->b.n_accepted, 0);
    /* Each acceptor names the member that failed; each connector too. */
    ck_assert_int_eq(log_count("W [transport]", "authentication failed"), 2);
    ck_assert_int_eq(log_count("W [transport]", "instead of accepting our proof"), 2);
    ck_assert_int_eq(log_count("W [transport]", f->b.address), 2);
    ck_assert_int_eq(log_count("W [transport]", f->a.address), 2);
}
END_TEST

/* A member without a key and one with a key refuse each other. */
START_TEST(test_transport_no_key_vs_key_refused)
{
    struct conn_req c1, c2;

    node_start(&f->a, 1, NULL, 0);
    node_start(&f->b, 2, "secretkey", 0);
    node_connect(&f->b, &c1, 1, f->a.address);
    node_connect(&f->a, &c2, 2, f->b.address);
    RUN_UNTIL(c1.n_cb == 1 && c2.n_cb == 1);
    ck_assert_int_eq(c1.status, RAFT_NOCONNECTION);
    ck_assert_int_eq(c2.status, RAFT_NOCONNECTION);
    ck_assert_int_eq(f->a.n_accepted, 0);
    ck_assert_int_eq(f->b.n_accepted, 0);
}
END_TEST

/* A proof computed over another raft id than the HELLO claimed (a
 * handshake relayed under another identity) is refused, while the proof
 * over the real transcript, built by hand from the documented format, is
 * accepted. */
START_TEST(test_transport_proof_binds_identity)
{
    uint8_t nonce_c[32], hello[512], proof[32];
    struct raw r1, r2;
    size_t n;

    memset(nonce_c, 0x5a, sizeof nonce_c);
    node_start(&f->a, 1, "secretkey", 0);

    /* Proof for id 3 after a HELLO that says id 2. */
    raw_connect(&r1, f->a.port);
    n = make_hello(hello, 1, 2, nonce_c, "10.0.0.2:37017", 14);
    stream_write((uv_stream_t *)&r1.tcp, hello, n);
    RUN_UNTIL(r1.n_got == 40);
    ck_assert(memcmp(r1.got, "CRMT", 4) == 0);
    make_proof("secretkey", 1, 3, "10.0.0.2:37017", nonce_c, r1.got + 8, proof);
    stream_write((uv_stream_t *)&r1.tcp, proof, 32);
    RUN_UNTIL(r1.eof);
    ck_assert_int_eq(r1.n_got, 40); /* no ACCEPT */
    ck_assert_int_eq(f->a.n_accepted, 0);
    ck_assert_int_eq(log_count("W [transport]", r1.local), 1);
    raw_close(&r1);

    /* The right proof: ACCEPT with status 0, and the stream is raft's. */
    raw_connect(&r2, f->a.port);
    stream_write((uv_stream_t *)&r2.tcp, hello, n);
    RUN_UNTIL(r2.n_got == 40);
    make_proof("secretkey", 1, 2, "10.0.0.2:37017", nonce_c, r2.got + 8, proof);
    stream_write((uv_stream_t *)&r2.tcp, proof, 32);
    RUN_UNTIL(r2.n_got == 40 + 33 && f->a.n_accepted == 1);
    ck_assert_uint_eq(r2.got[40], 0);
    ck_assert_uint_eq(f->a.accepted_id[0], 2);
    ck_assert_str_eq(f->a.accepted_address[0], "10.0.0.2:37017");
    /* Bytes after the handshake are raft's. */
    stream_write((uv_stream_t *)&r2.tcp, "raft", 4);
    RUN_UNTIL(f->a.accepted[0].n_got == 4);
    end_close(&f->a.accepted[0]);
    raw_close(&r2);
}
END_TEST

/* Garbage closes that connection, logged once at WARN with the peer's
 * address; the listener still accepts a good member afterwards. */
START_TEST(test_transport_garbage_closed)
{
    struct raw r;
    uint8_t junk[100];

    node_start(&f->a, 1, "secretkey", 0);
    raw_connect(&r, f->a.port);
    memset(junk, 'x', sizeof junk);
    stream_write((uv_stream_t *)&r.tcp, junk, sizeof junk);
    RUN_UNTIL(r.eof);
    ck_assert_int_eq(r.n_got, 0);
    ck_assert_int_eq(log_count("W [transport]", r.local), 1);
    ck_assert_int_eq(log_count("W [transport]", "bad magic"), 1);
    raw_close(&r);
    assert_good_peer_accepted();
}
END_TEST

/* A handshake cut short (half a HELLO, then the end of the stream) is
 * closed and logged once; the listener carries on. */
START_TEST(test_transport_truncated_handshake_closed)
{
    struct raw r;
    uint8_t nonce[32] = {0}, hello[512];

    node_start(&f->a, 1, "secretkey", 0);
    raw_connect(&r, f->a.port);
    make_hello(hello, 1, 2, nonce, "127.0.0.1:5", 11);
    stream_write((uv_stream_t *)&r.tcp, hello, 30);
    ck_assert_int_eq(uv_shutdown(&r.shutdown, (uv_stream_t *)&r.tcp, raw_shutdown_cb), 0);
    RUN_UNTIL(r.eof);
    ck_assert_int_eq(log_count("W [transport]", r.local), 1);
    ck_assert_int_eq(log_count("W [transport]", "after 30 of 50 bytes"), 1);
    raw_close(&r);
    assert_good_peer_accepted();
}
END_TEST

/* An address length over 255 is refused before anything is allocated
 * for it. */
START_TEST(test_transport_oversize_address_closed)
{
    struct raw r;
    uint8_t nonce[32] = {0}, hello[512];
    size_t n;

    node_start(&f->a, 1, "secretkey", 0);
    raw_connect(&r, f->a.port);
    n = make_hello(hello, 1, 2, nonce, "", 300);
    stream_write((uv_stream_t *)&r.tcp, hello, n);
    RUN_UNTIL(r.eof);
    ck_assert_int_eq(r.n_got, 0);
    ck_assert_int_eq(log_count("W [transport]", "address length 300 over 255"), 1);
    raw_close(&r);
    assert_good_peer_accepted();
}
END_TEST

/* A peer that connects and stalls is closed at the deadline (logged once
 * at WARN); members connecting meanwhile and afterwards get through. */
START_TEST(test_transport_stalled_peer_deadline)
{
    struct raw r;
    uint64_t t0;

    node_start(&f->a, 1, "secretkey", 300);
    t0 = uv_hrtime();
    raw_connect(&r, f->a.port);
    assert_good_peer_accepted(); /* while the stalled one waits */
    RUN_UNTIL(r.eof);
    ck_assert_uint_ge(uv_hrtime() - t0, 250ull * 1000 * 1000);
    ck_assert_int_eq(log_count("W [transport]", r.local), 1);
    ck_assert_int_eq(log_count("W [transport]", "not done within 300 ms"), 1);
    raw_close(&r);
    assert_good_peer_accepted();
}
END_TEST

/* Peer addresses are resolved at connect time: "localhost:port" works. */
START_TEST(test_transport_hostname_resolves)
{
    struct conn_req c;
    char addr[64];

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "secretkey", 0);
    snprintf(addr, sizeof addr, "localhost:%d", f->a.port);
    node_connect(&f->b, &c, 1, addr);
    RUN_UNTIL(c.n_cb == 1 && f->a.n_accepted == 1);
    ck_assert_int_eq(c.status, 0);
    end_close(&c.end);
    end_close(&f->a.accepted[0]);
}
END_TEST

/* More lookups at once than the transport runs in parallel (it keeps
 * libuv's thread pool for raft_uv's disk work): the others wait their turn
 * and every connect and call still completes once. */
START_TEST(test_transport_many_lookups_queue)
{
    struct conn_req c[6];
    struct call_res r[4];
    char addr[64];

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "secretkey", 0);
    snprintf(addr, sizeof addr, "localhost:%d", f->a.port);
    for (int i = 0; i < 6; i++) {
        node_connect(&f->b, &c[i], 1, addr);
    }
    for (int i = 0; i < 4; i++) {
        node_call(&f->b, &r[i], addr, i);
    }
    RUN_UNTIL(f->a.n_accepted == 6 && f->a.n_control == 4);
    RUN_UNTIL(r[0].n_cb + r[1].n_cb + r[2].n_cb + r[3].n_cb + c[0].n_cb + c[1].n_cb + c[2].n_cb +
                  c[3].n_cb + c[4].n_cb + c[5].n_cb ==
              10);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(c[i].n_cb, 1);
        ck_assert_int_eq(c[i].status, 0);
        end_close(&c[i].end);
        end_close(&f->a.accepted[i]);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(r[i].n_cb, 1);
        ck_assert_int_eq(r[i].status, 0);
        ck_assert_int_eq(r[i].x, i + 1);
    }
}
END_TEST

/* A name that does not resolve is a failed connect (the callback fires
 * once with an error); a malformed address is refused at once. */
START_TEST(test_transport_unresolvable_name_fails_connect)
{
    struct conn_req c, bad;

    node_start(&f->b, 2, "secretkey", 0);
    node_connect(&f->b, &c, 1, "no-such-member.invalid:37017");
    RUN_UNTIL(c.n_cb == 1);
    ck_assert_int_eq(c.status, RAFT_NOCONNECTION);
    ck_assert_ptr_null(c.end.s);
    run_for(20);
    ck_assert_int_eq(c.n_cb, 1);

    memset(&bad, 0, sizeof bad);
    ck_assert_int_eq(f->b.t.connect(&f->b.t, &bad.req, 1, "no-port", connect_cb),
                     RAFT_NOCONNECTION);
    ck_assert_int_eq(f->b.t.connect(&f->b.t, &bad.req, 1, "host:99999", connect_cb),
                     RAFT_NOCONNECTION);
    run_for(20);
    ck_assert_int_eq(bad.n_cb, 0);
}
END_TEST

/* A connect to a port nobody listens on fails its callback once. */
START_TEST(test_transport_connect_refused)
{
    struct conn_req c;
    char addr[64];

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "secretkey", 0);
    snprintf(addr, sizeof addr, "%s", f->a.address);
    node_shutdown(&f->a); /* its port is free again */
    node_connect(&f->b, &c, 1, addr);
    RUN_UNTIL(c.n_cb == 1);
    ck_assert_int_eq(c.status, RAFT_NOCONNECTION);
}
END_TEST

/* ---- Tests: control channel ------------------------------------------------- */

/* A control request reaches the handler and its reply comes back; the
 * callback fires once. */
START_TEST(test_transport_control_round_trip)
{
    struct call_res r;

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "secretkey", 0);
    node_call(&f->b, &r, f->a.address, 41);
    ck_assert_int_eq(r.n_cb, 0); /* never from inside the call */
    RUN_UNTIL(r.n_cb == 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert(r.has_reply);
    ck_assert_int_eq(r.x, 42);
    ck_assert_int_eq(f->a.n_control, 1);
    run_for(20);
    ck_assert_int_eq(r.n_cb, 1);
    ck_assert_int_eq(log_count(" W ", NULL), 0);
}
END_TEST

/* A handler's error becomes {ok: 0, errmsg, code}. */
START_TEST(test_transport_control_handler_error)
{
    struct call_res r;

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "secretkey", 0);
    f->a.control_rc = CAIRN_ESTATE;
    node_call(&f->b, &r, f->a.address, 1);
    RUN_UNTIL(r.n_cb == 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(r.x, CAIRN_ESTATE);
}
END_TEST

/* Control calls fail once each: to a dead port (EIO), with another key
 * (EPROTO), to a member without a handler (EBUSY), past their timeout
 * (ETIMEOUT); bad arguments are refused at once. */
START_TEST(test_transport_control_failures)
{
    struct call_res dead, wrongkey, nohandler, slow;
    struct repl_transport_options o = {
        .bind_address = "127.0.0.1:0", .key = "k3y123", .key_len = 6};
    bson_t req = BSON_INITIALIZER;
    char dead_addr[64];
    uv_tcp_t stall_listener;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char stall_addr[64];

    node_start(&f->a, 1, "secretkey", 0);
    node_start_opts(&f->b, 2, &o); /* another key, no handler */
    snprintf(dead_addr, sizeof dead_addr, "127.0.0.1:%d", f->a.port);

    node_call(&f->a, &wrongkey, f->b.address, 1);
    RUN_UNTIL(wrongkey.n_cb == 1);
    ck_assert_int_eq(wrongkey.status, CAIRN_EPROTO);

    node_shutdown(&f->b);
    o.key = "secretkey";
    o.key_len = 9;
    memset(&f->b, 0, sizeof f->b);
    node_start_opts(&f->b, 2, &o);
    node_call(&f->a, &nohandler, f->b.address, 1);
    RUN_UNTIL(nohandler.n_cb == 1);
    ck_assert_int_eq(nohandler.status, CAIRN_EBUSY);

    /* A listener that accepts and never answers. */
    uv_tcp_init(&f->loop, &stall_listener);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ck_assert_int_eq(uv_tcp_bind(&stall_listener, (struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&stall_listener, 8, silent_cb), 0);
    ck_assert_int_eq(uv_tcp_getsockname(&stall_listener, (struct sockaddr *)&ss, &len), 0);
    snprintf(stall_addr, sizeof stall_addr, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    memset(&slow, 0, sizeof slow);
    BSON_APPEND_INT64(&req, "x", 1);
    ck_assert_int_eq(repl_transport_call(&f->a.t, stall_addr, &req, 200, call_cb, &slow), 0);
    RUN_UNTIL(slow.n_cb == 1);
    ck_assert_int_eq(slow.status, CAIRN_ETIMEOUT);

    node_shutdown(&f->a);
    memset(&f->a, 0, sizeof f->a);
    node_call(&f->b, &dead, dead_addr, 1);
    RUN_UNTIL(dead.n_cb == 1);
    ck_assert_int_eq(dead.status, CAIRN_EIO);
    ck_assert(!dead.has_reply);

    ck_assert_int_eq(repl_transport_call(&f->b.t, "nonsense", &req, 100, call_cb, &dead),
                     CAIRN_EINVAL);
    ck_assert_int_eq(repl_transport_call(&f->b.t, dead_addr, &req, 0, call_cb, &dead),
                     CAIRN_EINVAL);
    run_for(20);
    ck_assert_int_eq(dead.n_cb, 1);
    ck_assert_int_eq(wrongkey.n_cb, 1);
    ck_assert_int_eq(nohandler.n_cb, 1);
    ck_assert_int_eq(slow.n_cb, 1);
    bson_destroy(&req);
    uv_close((uv_handle_t *)&stall_listener, NULL);
    run_for(20); /* the handle lives on this stack */
}
END_TEST

/* A member that serves before raft starts answers control requests and
 * answers raft connections "unavailable" (a failed connect, no WARN);
 * once raft listens, raft connections get through. */
START_TEST(test_transport_serve_before_raft)
{
    struct repl_transport_options o = {
        .bind_address = "127.0.0.1:0",
        .key = "secretkey",
        .key_len = 9,
        .control = echo_control,
        .control_arg = &f->a,
    };
    struct cairn_error err = {0, 0, {0}};
    struct call_res r;
    struct conn_req c1, c2;
    char addr[64];

    ck_assert_int_eq(repl_transport_init(&f->a.t, &f->loop, &o, &err), 0);
    f->a.inited = true;
    f->a.t.data = &f->a;
    ck_assert_int_eq(repl_transport_serve(&f->a.t, 0, "", &err), 0);
    ck_assert_int_eq(repl_transport_serve(&f->a.t, 0, "", &err), CAIRN_ESTATE);
    f->a.port = repl_transport_port(&f->a.t);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", f->a.port);
    node_start(&f->b, 2, "secretkey", 0);

    node_call(&f->b, &r, addr, 6);
    RUN_UNTIL(r.n_cb == 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(r.x, 7);

    node_connect(&f->b, &c1, 1, addr);
    RUN_UNTIL(c1.n_cb == 1);
    ck_assert_int_eq(c1.status, RAFT_NOCONNECTION);
    ck_assert_int_eq(log_count(" W ", NULL), 0);

    /* raft_uv starts: init then listen, which keeps the listener. */
    ck_assert_int_eq(f->a.t.init(&f->a.t, 1, addr), 0);
    ck_assert_int_eq(f->a.t.listen(&f->a.t, accept_cb), 0);
    ck_assert_int_eq(repl_transport_port(&f->a.t), f->a.port);
    node_connect(&f->b, &c2, 1, addr);
    RUN_UNTIL(c2.n_cb == 1 && f->a.n_accepted == 1);
    ck_assert_int_eq(c2.status, 0);
    end_close(&c2.end);
    end_close(&f->a.accepted[0]);
}
END_TEST

/* ---- Tests: close ---------------------------------------------------------- */

/* Closing with connections in every state (resolving, connecting to a
 * silent listener, mid-handshake on both sides, control calls in flight)
 * fires every callback exactly once, with a cancellation, then the close
 * callback; nothing is left on the loop and nothing leaks. */
START_TEST(test_transport_close_with_everything_in_flight)
{
    struct conn_req resolving, silent, to_a, queued[4];
    struct call_res call_a, call_silent;
    struct raw stuck;
    uv_tcp_t silent_listener;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char silent_addr[64], host_addr[64];

    node_start(&f->a, 1, "secretkey", 0);
    node_start(&f->b, 2, "secretkey", 0);
    uv_tcp_init(&f->loop, &silent_listener);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ck_assert_int_eq(uv_tcp_bind(&silent_listener, (struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&silent_listener, 8, silent_cb), 0);
    ck_assert_int_eq(uv_tcp_getsockname(&silent_listener, (struct sockaddr *)&ss, &len), 0);
    snprintf(silent_addr, sizeof silent_addr, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    snprintf(host_addr, sizeof host_addr, "localhost:%d", f->a.port);

    raw_connect(&stuck, f->a.port); /* a's side: waiting for a HELLO */
    node_connect(&f->b, &silent, 9, silent_addr);
    node_call(&f->b, &call_silent, silent_addr, 5);
    run_for(30); /* these two are now waiting for a CHALLENGE */
    node_connect(&f->b, &to_a, 1, f->a.address);
    node_call(&f->b, &call_a, f->a.address, 1);
    node_connect(&f->b, &resolving, 1, host_addr);
    for (int i = 0; i < 4; i++) {
        node_connect(&f->b, &queued[i], 1, host_addr); /* some wait for a lookup slot */
    }

    f->a.closed = true;
    f->a.t.close(&f->a.t, node_close_cb);
    f->b.closed = true;
    f->b.t.close(&f->b.t, node_close_cb);
    ck_assert_int_eq(resolving.n_cb + silent.n_cb + to_a.n_cb + call_a.n_cb + call_silent.n_cb, 0);
    RUN_UNTIL(f->a.n_close_cb == 1 && f->b.n_close_cb == 1);
    ck_assert_int_eq(silent.n_cb, 1);
    ck_assert_int_eq(silent.status, RAFT_CANCELED);
    ck_assert_int_eq(resolving.n_cb, 1);
    ck_assert_int_eq(resolving.status, RAFT_CANCELED);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(queued[i].n_cb, 1);
        ck_assert_int_eq(queued[i].status, RAFT_CANCELED);
    }
    ck_assert_int_eq(to_a.n_cb, 1);
    ck_assert_int_eq(to_a.status, RAFT_CANCELED);
    ck_assert_int_eq(call_a.n_cb, 1);
    ck_assert_int_eq(call_a.status, CAIRN_ESHUTDOWN);
    ck_assert_int_eq(call_silent.n_cb, 1);
    ck_assert_int_eq(call_silent.status, CAIRN_ESHUTDOWN);
    ck_assert_int_eq(f->a.n_accepted, 0);
    RUN_UNTIL(stuck.eof);
    raw_close(&stuck);
    uv_close((uv_handle_t *)&silent_listener, NULL);
    run_for(20);
    ck_assert_int_eq(f->a.n_close_cb, 1);
    ck_assert_int_eq(f->b.n_close_cb, 1);
    /* After close: no new work. */
    {
        bson_t req = BSON_INITIALIZER;
        struct conn_req late;
        memset(&late, 0, sizeof late);
        ck_assert_int_eq(repl_transport_call(&f->b.t, f->a.address, &req, 100, call_cb, &call_a),
                         CAIRN_ESHUTDOWN);
        ck_assert_int_eq(f->b.t.connect(&f->b.t, &late.req, 1, f->a.address, connect_cb),
                         RAFT_CANCELED);
        bson_destroy(&req);
    }
}
END_TEST

/* A transport never used needs no loop to be released; releasing NULL or
 * twice is a no-op; closing an unused transport fires its callback. */
START_TEST(test_transport_close_unused)
{
    struct raft_uv_transport t;
    struct repl_transport_options o = {0};
    struct cairn_error err = {0, 0, {0}};
    char longkey[REPL_TRANSPORT_KEY_MAX + 2];

    ck_assert_int_eq(repl_transport_init(&t, &f->loop, &o, &err), 0);
    repl_transport_close(&t);
    repl_transport_close(&t);
    repl_transport_close(NULL);

    memset(longkey, 'k', sizeof longkey);
    o.key = longkey;
    o.key_len = sizeof longkey;
    ck_assert_int_eq(repl_transport_init(&t, &f->loop, &o, &err), CAIRN_EINVAL);
    ck_assert_ptr_null(t.impl);
    repl_transport_close(&t);

    o.key_len = 0;
    ck_assert_int_eq(repl_transport_init(&f->a.t, &f->loop, &o, &err), 0);
    f->a.inited = true;
    f->a.t.data = &f->a;
    f->a.closed = true;
    f->a.t.close(&f->a.t, node_close_cb);
    RUN_UNTIL(f->a.n_close_cb == 1);
}
END_TEST

/* A listen address in use is an error raft_uv reports (and close still
 * works afterwards). */
START_TEST(test_transport_listen_in_use)
{
    struct repl_transport_options o = {0};
    struct cairn_error err = {0, 0, {0}};
    char bind[64];

    node_start(&f->a, 1, "secretkey", 0);
    snprintf(bind, sizeof bind, "%s", f->a.address);
    o.bind_address = bind;
    ck_assert_int_eq(repl_transport_init(&f->b.t, &f->loop, &o, &err), 0);
    f->b.inited = true;
    f->b.t.data = &f->b;
    ck_assert_int_eq(f->b.t.init(&f->b.t, 2, "127.0.0.1:1"), 0);
    ck_assert_int_eq(f->b.t.listen(&f->b.t, accept_cb), RAFT_IOERR);
    ck_assert_ptr_nonnull(strstr(f->b.t.errmsg, "in use"));
}
END_TEST

/* ---- Tests: key file ------------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ck_assert_int_eq(chmod(path, mode), 0);
}

/* A good key file: whitespace anywhere is dropped, the characters are the
 * key. */
START_TEST(test_keyfile_good)
{
    struct repl_key k;
    struct cairn_error err = {0, 0, {0}};
    char path[128];

    snprintf(path, sizeof path, "%s/key", f->dir);
    write_file(path, "  abc DEF\n+/=09\r\n\tz\n", 0600);
    ck_assert_int_eq(repl_keyfile_load(path, &k, &err), 0);
    ck_assert_uint_eq(k.len, 12);
    ck_assert(memcmp(k.data, "abcDEF+/=09z", 12) == 0);
    repl_key_clear(&k);
    ck_assert_uint_eq(k.len, 0);
    repl_key_clear(NULL);
    write_file(path, "abcdef", 0400);
    ck_assert_int_eq(repl_keyfile_load(path, &k, &err), 0);
    ck_assert_uint_eq(k.len, 6);
}
END_TEST

/* Too short, too long, and characters outside base64 are refused with
 * mongod's messages. */
START_TEST(test_keyfile_bad_contents)
{
    struct repl_key k;
    struct cairn_error err = {0, 0, {0}};
    char path[128];
    char big[1100];

    snprintf(path, sizeof path, "%s/key", f->dir);
    write_file(path, "abc de\n", 0600);
    ck_assert_int_eq(repl_keyfile_load(path, &k, &err), CAIRN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "has length 5, must be between 6 and 1024 chars"));
    ck_assert_uint_eq(k.len, 0);

    write_file(path, "abcdef$gh", 0600);
    ck_assert_int_eq(repl_keyfile_load(path, &k, &err), CAIRN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "invalid char in key file"));
    ck_assert_ptr_null(strstr(err.msg, "abcdef")); /* never the key */

    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert_int_eq(repl_key_parse(big, 1025, "x", &k, &err), CAIRN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "has length 1025"));
    ck_assert_int_eq(repl_key_parse(big, 1024, "x", &k, &err), 0);
    ck_assert_uint_eq(k.len, 1024);
    ck_assert_int_eq(repl_key_parse("", 0, "x", &k, &err), CAIRN_EINVAL);
}
END_TEST

/* Any permission for group or others is refused, as mongod does:
 * "permissions on <path> are too open"; a missing file is an error. */
START_TEST(test_keyfile_too_open)
{
    static const mode_t modes[] = {0644, 0640, 0604, 0610, 0601, 0660};
    struct repl_key k;
    struct cairn_error err = {0, 0, {0}};
    char path[128], want[200];

    snprintf(path, sizeof path, "%s/key", f->dir);
    snprintf(want, sizeof want, "permissions on %s are too open", path);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        write_file(path, "abcdefgh", modes[i]);
        ck_assert_int_eq(repl_keyfile_load(path, &k, &err), CAIRN_EINVAL);
        ck_assert_str_eq(err.msg, want);
    }
    snprintf(path, sizeof path, "%s/missing", f->dir);
    ck_assert_int_eq(repl_keyfile_load(path, &k, &err), CAIRN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_int_eq(repl_keyfile_load(f->dir, &k, &err), CAIRN_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("transport");
    TCase *tc = tcase_create("raft");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_transport_raft_handshake_same_key);
    tcase_add_test(tc, test_transport_raft_handshake_no_key);
    tcase_add_test(tc, test_transport_wrong_key_refused_both_ways);
    tcase_add_test(tc, test_transport_no_key_vs_key_refused);
    tcase_add_test(tc, test_transport_proof_binds_identity);
    tcase_add_test(tc, test_transport_garbage_closed);
    tcase_add_test(tc, test_transport_truncated_handshake_closed);
    tcase_add_test(tc, test_transport_oversize_address_closed);
    tcase_add_test(tc, test_transport_stalled_peer_deadline);
    tcase_add_test(tc, test_transport_hostname_resolves);
    tcase_add_test(tc, test_transport_many_lookups_queue);
    tcase_add_test(tc, test_transport_unresolvable_name_fails_connect);
    tcase_add_test(tc, test_transport_connect_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("control");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_transport_control_round_trip);
    tcase_add_test(tc, test_transport_control_handler_error);
    tcase_add_test(tc, test_transport_control_failures);
    tcase_add_test(tc, test_transport_serve_before_raft);
    suite_add_tcase(s, tc);
    tc = tcase_create("close");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_transport_close_with_everything_in_flight);
    tcase_add_test(tc, test_transport_close_unused);
    tcase_add_test(tc, test_transport_listen_in_use);
    suite_add_tcase(s, tc);
    tc = tcase_create("keyfile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_keyfile_good);
    tcase_add_test(tc, test_keyfile_bad_contents);
    tcase_add_test(tc, test_keyfile_too_open);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
