/*
 * checkpoint.c: catching a member up from a checkpoint shipped by a
 * healthy member, when raft installs a snapshot whose index is above this
 * member's applied watermark (a member added later, one that fell behind
 * the leader's trailing log, one restarted after a crash in an install).
 *
 * A raft snapshot is only a descriptor (fsm.c); the data travels here, as
 * a sequence of control calls over the member transport (transport.h: one
 * BSON request, one BSON reply each):
 *
 *   request                               reply
 *   {ckptOpen: 1, minIndex: S}            {ok, id, index: W, ts: W's ts,
 *                                          term, config}
 *                                          (refused while applied < S)
 *   {ckptNext: id, after: <position>}     {ok, data: <records>, done,
 *                                          applied: source's applied index}
 *   {ckptClose: id}                       {ok}
 *
 * Source (raft thread, from repl_members_control): each open is a session
 * holding an eng_clone (engine.h: catalog and watermark W as of one entry,
 * document versions up to W, session records as read). A chunk holds up
 * to CHUNK_BYTES of records, so serving one costs milliseconds of the raft
 * thread. A session idle for SESSION_IDLE_MS is closed (the target died or
 * gave up); at most MAX_SESSIONS are open.
 *
 * Target (repl_ckpt_install, called by fsm_restore on the raft thread):
 * raft's thread must not run a nested uv_run, and the control channel of
 * its own transport lives on that loop, so the fetch runs on a thread of
 * its own with its own loop and transport client while the raft thread
 * waits for it (raft is blocked meanwhile, as in any synchronous restore:
 * pre-vote keeps this member from disturbing the others when it resumes).
 * Sources, in order: the leader, then every other configured member (at
 * start-up: the members of the config raft starts with); a source whose
 * applied index is below the snapshot's refuses; rounds repeat with
 * backoff until one succeeds or the member shuts down.
 *
 * Invariants:
 *   1. The copy is fuzzy (engine.h). Before finishing, the target stores
 *      minValid = the source's applied index when the last chunk was read
 *      (meta "minvalid"); until its applied index reaches it, the member
 *      reports RECOVERING and serves no reads (status.c), also after a
 *      restart.
 *   2. While the fetch runs the member reports STARTUP2 (it had no data)
 *      or RECOVERING (it had), so reads get 13436 NotPrimaryOrSecondary.
 *   3. The only way out of repl_ckpt_install without an install is
 *      shutdown: then r->host.install_broken is set and fsm_apply applies
 *      nothing until the process stops; the engine's marker makes the next
 *      start resync (the member never goes on with a partial state).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"
#include "repl/transport.h"

/* A chunk holds up to 1 MiB of records, or one larger record (a document
 * up to 16 MiB: REPL_TRANSPORT_CONTROL_MAX leaves room for it). */
#define CHUNK_BYTES ((size_t)1 << 20)
#define SESSION_IDLE_MS 60000
#define MAX_SESSIONS 4
#define OPEN_TIMEOUT_MS 10000
#define NEXT_TIMEOUT_MS 30000
#define CLOSE_TIMEOUT_MS 2000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct repl_ckpt_src
{
    uint64_t id;
    struct eng_clone *clone;
    int64_t last_ms;
    struct repl_ckpt_src *next;
};

static int64_t get_i64(const bson_t *b, const char *key, int64_t dflt)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, b, key) && BSON_ITER_HOLDS_NUMBER(&it)) {
        return bson_iter_as_int64(&it);
    }
    return dflt;
}

static bool get_bin(const bson_t *b, const char *key, const uint8_t **data, uint32_t *len)
{
    bson_iter_t it;
    bson_subtype_t st;
    if (!bson_iter_init_find(&it, b, key) || !BSON_ITER_HOLDS_BINARY(&it)) {
        return false;
    }
    bson_iter_binary(&it, &st, len, data);
    return true;
}

/* ---- Source (raft thread) ------------------------------------------------ */

static struct repl_ckpt_src *src_find(struct repl *r, uint64_t id)
{
    for (struct repl_ckpt_src *s = r->ckpt_srcs; s != NULL; s = s->next) {
        if (s->id == id) {
            return s;
        }
    }
    return NULL;
}

static void src_remove(struct repl *r, struct repl_ckpt_src *s)
{
    struct repl_ckpt_src **pp = &r->ckpt_srcs;
    while (*pp != s) {
        pp = &(*pp)->next;
    }
    *pp = s->next;
    eng_clone_close(s->clone);
    free(s);
}

void repl_ckpt_expire(struct repl *r, bool all)
{
    int64_t now = cairn_wall_ms();
    struct repl_ckpt_src *s = r->ckpt_srcs, *next;

    for (; s != NULL; s = next) {
        next = s->next;
        if (all || now - s->last_ms > SESSION_IDLE_MS) {
            if (!all) {
                cairn_log(CAIRN_LOG_INFO, "repl", "checkpoint session %llu idle: closed",
                          (unsigned long long)s->id);
            }
            src_remove(r, s);
        }
    }
}

static int serve_open(struct repl *r, const bson_t *req, bson_t *reply, struct cairn_error *err)
{
    struct repl_ckpt_src *s;
    size_t n = 0;
    cairn_index index;
    cairn_ts ts;
    int64_t min_index = get_i64(req, "minIndex", 0);
    int rc;

    repl_ckpt_expire(r, false);
    for (s = r->ckpt_srcs; s != NULL; s = s->next) {
        n++;
    }
    if (n >= MAX_SESSIONS) {
        return cairn_error_mongo(err, CAIRN_EBUSY, MONGO_InternalError,
                                 "%zu checkpoint sessions are open already", n);
    }
    if (eng_install_active(r->eng) || r->host.install_broken) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_NotPrimaryOrSecondary,
                                 "this member is installing a checkpoint itself");
    }
    eng_applied(r->eng, &index, NULL);
    if (min_index < 0 || index < (cairn_index)min_index) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_InternalError,
                                 "applied index %llu is below the %lld asked for",
                                 (unsigned long long)index, (long long)min_index);
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    rc = eng_clone_open(r->eng, &s->clone, &index, &ts, err);
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->id = ++r->ckpt_next_id;
    s->last_ms = cairn_wall_ms();
    s->next = r->ckpt_srcs;
    r->ckpt_srcs = s;
    atomic_fetch_add(&r->n_ckpt_served, 1);
    cairn_log(CAIRN_LOG_INFO, "repl", "checkpoint session %llu opened at index %llu",
              (unsigned long long)s->id, (unsigned long long)index);
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    BSON_APPEND_INT64(reply, "id", (int64_t)s->id);
    BSON_APPEND_INT64(reply, "index", (int64_t)index);
    BSON_APPEND_TIMESTAMP(reply, "ts", CAIRN_TS_SECS(ts), CAIRN_TS_INC(ts));
    BSON_APPEND_INT64(reply, "term", (int64_t)r->host.applied_term);
    if (r->cfg.doc != NULL) {
        bson_t cfg;
        if (bson_init_static(&cfg, r->cfg.doc, r->cfg.doc_len)) {
            BSON_APPEND_DOCUMENT(reply, "config", &cfg);
        }
    }
    return 0;
}

static int serve_next(struct repl *r, const bson_t *req, bson_t *reply, struct cairn_error *err)
{
    struct repl_ckpt_src *s = src_find(r, (uint64_t)get_i64(req, "ckptNext", 0));
    struct cairn_buf out = CAIRN_BUF_INIT;
    const uint8_t *after = NULL;
    uint32_t after_len = 0;
    cairn_index applied;
    bool done = false;
    int rc;

    if (s == NULL) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_InternalError,
                                 "no such checkpoint session (expired?)");
    }
    (void)get_bin(req, "after", &after, &after_len);
    s->last_ms = cairn_wall_ms();
    rc = eng_clone_next(s->clone, after, after_len, CHUNK_BYTES, &out, &done, err);
    if (rc == 0) {
        eng_applied(r->eng, &applied, NULL);
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
        BSON_APPEND_BINARY(reply, "data", BSON_SUBTYPE_BINARY, out.data ? out.data : (uint8_t *)"",
                           (uint32_t)out.len);
        BSON_APPEND_BOOL(reply, "done", done);
        BSON_APPEND_INT64(reply, "applied", (int64_t)applied);
    }
    cairn_buf_free(&out);
    return rc;
}

int repl_ckpt_serve(struct repl *r, const char *cmd, const bson_t *req, bson_t *reply)
{
    struct cairn_error err = {0};
    int rc;

    if (strcmp(cmd, "ckptOpen") == 0) {
        rc = serve_open(r, req, reply, &err);
    } else if (strcmp(cmd, "ckptNext") == 0) {
        rc = serve_next(r, req, reply, &err);
    } else {
        struct repl_ckpt_src *s = src_find(r, (uint64_t)get_i64(req, "ckptClose", 0));
        if (s != NULL) {
            cairn_log(CAIRN_LOG_INFO, "repl", "checkpoint session %llu closed",
                      (unsigned long long)s->id);
            src_remove(r, s);
        }
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
        rc = 0;
    }
    if (rc != 0) {
        bson_reinit(reply);
        BSON_APPEND_DOUBLE(reply, "ok", 0.0);
        BSON_APPEND_UTF8(reply, "errmsg", err.msg);
        BSON_APPEND_INT32(reply, "code",
                          err.mongo_code != 0 ? err.mongo_code : MONGO_InternalError);
    }
    return 0;
}

/* ---- Target: the fetch thread ---------------------------------------------- */

struct fetch
{
    struct repl *r;
    uint64_t snap_index;
    char addrs[REPL_MAX_MEMBERS + 1][REPL_HOST_MAX + 8];
    size_t n_addrs;
    uv_loop_t loop;
    struct raft_uv_transport t;
    /* The call in flight. */
    bool call_done;
    int call_status;
    bson_t call_reply;
    /* The result. */
    int rc;
    char source[REPL_HOST_MAX + 8];
    cairn_index index;
    cairn_ts ts;
    uint64_t term;
    cairn_index min_valid;
    uint64_t bytes;
    uint64_t keys;
    uint8_t *cfg_doc;
    size_t cfg_len;
};

static bool stopping(struct fetch *f)
{
    return atomic_load(&f->r->applied_stopping);
}

static void call_cb(void *arg, int status, const bson_t *reply)
{
    struct fetch *f = arg;

    f->call_status = status;
    bson_init(&f->call_reply);
    if (status == 0 && !bson_concat(&f->call_reply, reply)) {
        f->call_status = CAIRN_ENOMEM;
    }
    f->call_done = true;
}

/* One control call on the fetch loop. On 0, f->call_reply holds the
 * peer's {ok: 1, ...} answer (destroyed by the caller); otherwise `err`
 * says why. */
static int call(struct fetch *f,
                const char *addr,
                const bson_t *req,
                uint64_t timeout_ms,
                struct cairn_error *err)
{
    bson_iter_t it;
    int rc;

    f->call_done = false;
    rc = repl_transport_call(&f->t, addr, req, timeout_ms, call_cb, f);
    if (rc != 0) {
        return cairn_error_setf(err, rc, "%s", cairn_strerror(rc));
    }
    while (!f->call_done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    if (f->call_status != 0) {
        bson_destroy(&f->call_reply);
        return cairn_error_setf(err, f->call_status, "%s", cairn_strerror(f->call_status));
    }
    if (!bson_iter_init_find(&it, &f->call_reply, "ok") || bson_iter_as_double(&it) != 1.0) {
        const char *msg = "refused";
        if (bson_iter_init_find(&it, &f->call_reply, "errmsg") && BSON_ITER_HOLDS_UTF8(&it)) {
            msg = bson_iter_utf8(&it, NULL);
        }
        cairn_error_setf(err, CAIRN_EBUSY, "%s", msg);
        bson_destroy(&f->call_reply);
        return CAIRN_EBUSY;
    }
    return 0;
}

static void close_session(struct fetch *f, const char *addr, int64_t id)
{
    struct cairn_error err;
    bson_t req;

    bson_init(&req);
    BSON_APPEND_INT64(&req, "ckptClose", id);
    if (call(f, addr, &req, CLOSE_TIMEOUT_MS, &err) == 0) {
        bson_destroy(&f->call_reply);
    }
    bson_destroy(&req);
}

/* Copies the open reply's fields into f. */
static int read_open_reply(struct fetch *f, int64_t *id, struct cairn_error *err)
{
    bson_iter_t it;
    uint32_t t, i;

    *id = get_i64(&f->call_reply, "id", 0);
    f->index = (cairn_index)get_i64(&f->call_reply, "index", 0);
    f->term = (uint64_t)get_i64(&f->call_reply, "term", 0);
    f->ts = 0;
    if (bson_iter_init_find(&it, &f->call_reply, "ts") && BSON_ITER_HOLDS_TIMESTAMP(&it)) {
        bson_iter_timestamp(&it, &t, &i);
        f->ts = CAIRN_TS(t, i);
    }
    free(f->cfg_doc);
    f->cfg_doc = NULL;
    f->cfg_len = 0;
    if (bson_iter_init_find(&it, &f->call_reply, "config") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *doc;
        bson_iter_document(&it, &t, &doc);
        f->cfg_doc = malloc(t);
        if (f->cfg_doc != NULL) {
            memcpy(f->cfg_doc, doc, t);
            f->cfg_len = t;
        }
    }
    if (*id <= 0 || f->index < f->snap_index) {
        return cairn_error_setf(err, CAIRN_EPROTO, "bad checkpoint open reply");
    }
    return 0;
}

/* Fetches and installs a whole checkpoint from `addr`. */
static int fetch_from(struct fetch *f, const char *addr, struct cairn_error *err)
{
    struct repl *r = f->r;
    struct cairn_buf pos = CAIRN_BUF_INIT;
    bool done = false;
    int64_t id = 0;
    bson_t req;
    int rc;

    f->bytes = f->keys = 0;
    bson_init(&req);
    BSON_APPEND_INT32(&req, "ckptOpen", 1);
    BSON_APPEND_INT64(&req, "minIndex", (int64_t)f->snap_index);
    rc = call(f, addr, &req, OPEN_TIMEOUT_MS, err);
    bson_destroy(&req);
    if (rc != 0) {
        return rc;
    }
    rc = read_open_reply(f, &id, err);
    bson_destroy(&f->call_reply);
    if (rc != 0) {
        return rc;
    }
    cairn_log(CAIRN_LOG_INFO, "repl",
              "installing a checkpoint from %s: its watermark %llu, raft snapshot %llu", addr,
              (unsigned long long)f->index, (unsigned long long)f->snap_index);
    rc = eng_install_begin(r->eng, err);
    while (rc == 0 && !done) {
        const uint8_t *data = NULL;
        uint32_t len = 0;
        if (atomic_load(&r->debug_pause_install)) {
            /* Tests: repl_debug_pause_install (the marker is stored). */
            cairn_log(CAIRN_LOG_INFO, "repl", "checkpoint install paused by a fail point");
            while (atomic_load(&r->debug_pause_install) && !stopping(f)) {
                uv_sleep(20);
            }
        }
        if (stopping(f)) {
            rc = cairn_error_setf(err, CAIRN_ESHUTDOWN, "shutting down");
            break;
        }
        bson_init(&req);
        BSON_APPEND_INT64(&req, "ckptNext", id);
        BSON_APPEND_BINARY(&req, "after", BSON_SUBTYPE_BINARY, pos.data ? pos.data : (uint8_t *)"",
                           (uint32_t)pos.len);
        rc = call(f, addr, &req, NEXT_TIMEOUT_MS, err);
        bson_destroy(&req);
        if (rc != 0) {
            break;
        }
        if (!get_bin(&f->call_reply, "data", &data, &len)) {
            rc = cairn_error_setf(err, CAIRN_EPROTO, "checkpoint chunk without data");
        } else {
            bson_iter_t it;
            done = bson_iter_init_find(&it, &f->call_reply, "done") && BSON_ITER_HOLDS_BOOL(&it) &&
                   bson_iter_bool(&it);
            f->min_valid = (cairn_index)get_i64(&f->call_reply, "applied", 0);
            rc = eng_clone_chunk_position(data, len, &pos, err);
            if (rc == 0) {
                rc = eng_install_put(r->eng, data, len, &f->keys, err);
            }
            f->bytes += len;
            if (rc == 0 && len == 0 && !done) {
                rc = cairn_error_setf(err, CAIRN_EPROTO, "empty checkpoint chunk");
            }
        }
        bson_destroy(&f->call_reply);
    }
    if (rc == 0) {
        uint8_t mv[8];
        /* Invariant 1: minValid is stored before the marker goes. */
        if (f->min_valid < f->index) {
            f->min_valid = f->index;
        }
        cairn_store_be64(mv, f->min_valid);
        rc = eng_meta_put(r->eng, "minvalid", mv, sizeof mv, err);
    }
    if (rc == 0) {
        rc = eng_install_finish(r->eng, f->index, f->ts, err);
    }
    if (id > 0 && !stopping(f)) {
        close_session(f, addr, id);
    }
    cairn_buf_free(&pos);
    if (rc == 0) {
        snprintf(f->source, sizeof f->source, "%s", addr);
    }
    return rc;
}

static void transport_closed_cb(struct raft_uv_transport *t)
{
    (void)t;
}

static void *fetch_main(void *arg)
{
    struct fetch *f = arg;
    struct repl *r = f->r;
    struct repl_transport_options o;
    struct cairn_error err = {0};
    unsigned backoff = BACKOFF_MIN_MS;
    int rc;

    memset(&o, 0, sizeof o);
    o.key = r->key.data;
    o.key_len = r->key.len;
    rc = repl_transport_init(&f->t, &f->loop, &o, &err);
    if (rc != 0) {
        /* Out of memory (the key and options were valid for the member
         * transport): the member cannot go on without the install. */
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: checkpoint transport: %s", err.msg);
        abort();
    }
    f->rc = CAIRN_ESHUTDOWN;
    while (!stopping(f)) {
        for (size_t i = 0; i < f->n_addrs && !stopping(f); i++) {
            rc = fetch_from(f, f->addrs[i], &err);
            if (rc == 0) {
                f->rc = 0;
                goto out;
            }
            cairn_log(CAIRN_LOG_WARN, "repl", "checkpoint from %s: %s", f->addrs[i], err.msg);
        }
        for (unsigned slept = 0; slept < backoff && !stopping(f); slept += 20) {
            uv_sleep(20);
        }
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
out:
    f->t.close(&f->t, transport_closed_cb);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    repl_transport_close(&f->t);
    return NULL;
}

/* The sources, leader first: the other members of the config raft runs
 * with (at start-up, the one it starts with). */
static void fill_sources(struct repl *r, struct fetch *f)
{
    const struct repl_cfg *cfg = r->host.in_start && r->start_cfg != NULL ? r->start_cfg : &r->cfg;
    raft_id leader_id = 0;
    const char *leader_addr = NULL;

    if (!r->host.in_start) {
        raft_leader(&r->raft, &leader_id, &leader_addr);
    }
    if (leader_id != 0 && leader_id != r->raft.id && leader_addr != NULL) {
        snprintf(f->addrs[f->n_addrs++], sizeof f->addrs[0], "%s", leader_addr);
    }
    for (size_t i = 0; i < cfg->n; i++) {
        if ((raft_id)cfg->m[i].id + 1 == r->raft.id ||
            (leader_addr != NULL && strcmp(cfg->m[i].raft_addr, leader_addr) == 0)) {
            continue;
        }
        snprintf(f->addrs[f->n_addrs++], sizeof f->addrs[0], "%s", cfg->m[i].raft_addr);
    }
}

/* Installs the source's config when it is newer than ours. */
static void adopt_config(struct repl *r, const uint8_t *doc, size_t len)
{
    struct repl_cfg cfg;
    struct cairn_error err;

    if (doc == NULL || r->host.in_start || repl_cfg_load(doc, len, &cfg, &err) != 0) {
        return;
    }
    if (r->cfg.doc == NULL || cfg.version > r->cfg.version) {
        if (eng_meta_put(r->eng, "rsconfig", doc, len, &err) != 0) {
            cairn_log(CAIRN_LOG_WARN, "repl", "storing the checkpoint's config: %s", err.msg);
        }
        repl_config_applied(r, doc, len);
    }
    repl_cfg_free(&cfg);
}

int repl_ckpt_install(struct repl *r, uint64_t snap_index)
{
    struct fetch *f;
    pthread_t th;
    cairn_index wm_index;
    cairn_ts wm_ts;
    uint64_t t0 = cairn_mono_ns();
    double secs;
    int rc;

    f = calloc(1, sizeof *f);
    if (f == NULL || uv_loop_init(&f->loop) != 0) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: no memory for a checkpoint install");
        abort();
    }
    f->r = r;
    f->snap_index = snap_index;
    fill_sources(r, f);
    eng_applied(r->eng, &wm_index, NULL);
    /* Invariant 2. */
    pthread_mutex_lock(&r->smu);
    r->install_state = wm_index == 0 ? REPL_STATE_STARTUP2 : REPL_STATE_RECOVERING;
    repl_publish_status_locked(r);
    pthread_mutex_unlock(&r->smu);
    cairn_log(CAIRN_LOG_INFO, "repl",
              "raft snapshot %llu is above the applied index %llu: installing a checkpoint "
              "(%zu source(s))",
              (unsigned long long)snap_index, (unsigned long long)wm_index, f->n_addrs);
    if (f->n_addrs == 0 || pthread_create(&th, NULL, fetch_main, f) != 0) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: no source or thread for a checkpoint install");
        abort();
    }
    pthread_join(th, NULL);
    uv_loop_close(&f->loop);
    rc = f->rc;
    secs = (double)(cairn_mono_ns() - t0) / 1e9;
    if (rc == 0) {
        eng_applied(r->eng, &wm_index, &wm_ts);
        r->min_valid = f->min_valid;
        r->host.applied_term = f->term;
        repl_on_applied(r, wm_index, wm_ts);
        atomic_fetch_add(&r->n_ckpt_installs, 1);
        atomic_store(&r->ckpt_last_bytes, f->bytes);
        atomic_store(&r->ckpt_last_keys, f->keys);
        atomic_store(&r->ckpt_last_ms, (uint64_t)(secs * 1000));
        cairn_log(CAIRN_LOG_INFO, "repl",
                  "checkpoint installed from %s: watermark %llu, %llu bytes, %llu keys, %.2f s; "
                  "consistent once index %llu is applied",
                  f->source, (unsigned long long)wm_index, (unsigned long long)f->bytes,
                  (unsigned long long)f->keys, secs, (unsigned long long)f->min_valid);
        adopt_config(r, f->cfg_doc, f->cfg_len);
    } else {
        /* Invariant 3. */
        r->host.install_broken = true;
        cairn_log(CAIRN_LOG_WARN, "repl",
                  "checkpoint install abandoned (shutting down): the next start resyncs");
    }
    pthread_mutex_lock(&r->smu);
    r->install_state = 0;
    repl_publish_status_locked(r);
    pthread_mutex_unlock(&r->smu);
    free(f->cfg_doc);
    free(f);
    return rc;
}

void repl_debug_pause_install(struct repl *r, bool pause)
{
    atomic_store(&r->debug_pause_install, pause);
}
