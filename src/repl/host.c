/*
 * host.c: builds a struct repl_host (host.h), the FSM / io wrapper /
 * rollback slice of replication, and binds it to its owner: struct repl in
 * production (repl_host_bind: the calls go to the waiters, reconfig,
 * stepdown and status code of src/repl), or a test that hosts raft in
 * libraft's fixture (repl_host_init + repl_host_attach with its own ops).
 */
#include <string.h>

#include "repl/repl_int.h"

void repl_host_init(struct repl_host *h,
                    struct eng *eng,
                    const char *dbpath,
                    const struct repl_host_ops *ops,
                    void *arg)
{
    memset(h, 0, sizeof *h);
    h->eng = eng;
    h->dbpath = dbpath;
    h->ops = ops;
    h->ops_arg = arg;
    repl_fsm_init(h);
}

void repl_host_close(struct repl_host *h)
{
    if (h == NULL) {
        return;
    }
    repl_doubt_free(h);
    repl_deccache_free(h->dec);
    h->dec = NULL;
}

void repl_host_attach(struct repl_host *h, struct repl_io *w, struct raft *raft)
{
    repl_io_wrap(w, h, raft->io);
    /* raft_init pointed the inner io's data at raft already; the wrapper
     * finds itself through raft (io.c's W), so the outer needs it too. */
    w->outer.data = raft;
    raft->io = &w->outer;
    h->raft = raft;
}

/* ---- Production: calls back into struct repl ------------------------------ */

static void uv_applied(void *arg, cairn_index index, cairn_ts ts)
{
    repl_on_applied(arg, index, ts);
}

static void uv_config_applied(void *arg, const uint8_t *doc, size_t len)
{
    repl_config_applied(arg, doc, len);
}

static bool uv_may_campaign(void *arg)
{
    return repl_may_campaign(arg);
}

/* The checkpoint source: checkpoint.c fetches one from a healthy member. */
static int uv_install_checkpoint(void *arg,
                                 struct repl_host *h,
                                 const struct raft_buffer *desc,
                                 struct cairn_error *err)
{
    (void)h;
    if (repl_ckpt_install(arg, cairn_load_be64(desc->base)) != 0) {
        return cairn_error_setf(err, CAIRN_ESHUTDOWN,
                                "checkpoint install abandoned: shutting down");
    }
    return 0;
}

static int uv_wait_apply_room(void *arg, raft_index index, size_t len)
{
    return repl_disk_wait_apply(arg, index, len);
}

static void uv_rollback_changed(void *arg)
{
    repl_publish_status(arg);
}

static const struct repl_host_ops uv_ops = {
    .applied = uv_applied,
    .config_applied = uv_config_applied,
    .may_campaign = uv_may_campaign,
    .may_snapshot = NULL, /* every member takes them (checkpoint.c serves laggards) */
    .rollback_changed = uv_rollback_changed,
    .install_checkpoint = uv_install_checkpoint,
    .wait_apply_room = uv_wait_apply_room,
};

void repl_host_bind(struct repl *r)
{
    repl_host_init(&r->host, r->eng, r->dbpath, &uv_ops, r);
    r->host.raft = &r->raft;
}
