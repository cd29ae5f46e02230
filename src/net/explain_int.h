/*
 * explain_int.h: what the explain command's two files share: cmd_explain.c
 * (find and count, the command itself, the plan runner and the stage
 * builders) and cmd_explain_write.c (aggregate, distinct, update, delete,
 * findAndModify, and aggregate's explain option). Internal to src/net.
 *
 * Threads: a command's worker thread.
 */
#ifndef CAIRN_NET_EXPLAIN_INT_H
#define CAIRN_NET_EXPLAIN_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/net_int.h"

#define NS_BUF 512

/* What to plan: a filter (views, not owned), an optional sort, a limit and
 * skip as find has them. `on_match`, when set, is called for every
 * document the filter matches while executing (before skip and limit): a
 * non-zero return, with err set, stops the run with that error. */
struct explain_req
{
    const char *cmd; /* "find", "count", or the explained command's name */
    char ns[NS_BUF];
    bson_t filter, sort, projection;
    bson_value_t hint; /* BSON_TYPE_EOD (zero-filled): none */
    int64_t limit, skip;
    bool exec; /* executionStats or allPlansExecution */
    int (*on_match)(void *arg, const bson_t *doc, struct cairn_error *err);
    void *arg;
};

/* What the plan is and what running it examined. key_pattern is owned
 * (bson_destroy it after net_explain_run, whatever it returns). */
struct explain_run
{
    bool idhack;
    bool have_plan;       /* an index scan */
    bool sorted_by_index; /* the index gives the sort's order: no SORT stage */
    bool backward;        /* the index is scanned from its last key down */
    bool covered;         /* PROJECTION_COVERED: documents built from the entries */
    char index_name[128];
    bson_t key_pattern;
    size_t n_intervals;
    uint64_t keys, docs, returned;
    int64_t millis;
};

/* Initialises *out with a view of the document field `name` of `cmd` (an
 * empty document when absent). Returns 0, or 14 TypeMismatch / 2 BadValue
 * in err. */
int net_explain_get_doc(const bson_t *cmd, const char *name, bson_t *out, struct cairn_error *err);

/* Plans `req` in a read of the command's view (net_read_begin) exactly as
 * the command would run, and when req->exec runs it, counting. Reads only.
 * A missing collection is an empty COLLSCAN. Returns 0, or non-zero with
 * c->err set. */
int net_explain_run(struct net_cmd *c, struct explain_req *req, struct explain_run *out);

/* Appends under `key` the access stage: IDHACK, FETCH over IXSCAN, or
 * COLLSCAN, with their counters when `stats`. */
void net_explain_append_access(bson_t *parent,
                               const char *key,
                               const struct explain_req *req,
                               const struct explain_run *r,
                               bool stats);

/* Appends under `key` the access stage under SORT, SKIP, LIMIT or COUNT as
 * req asks. */
void net_explain_append_plan(bson_t *parent,
                             const char *key,
                             const struct explain_req *req,
                             const struct explain_run *r,
                             bool stats);

/* explain of a command other than find and count: `inner` is the explained
 * command, `exec` false for the queryPlanner verbosity. Unknown commands
 * answer 238 NotImplemented. Returns NET_CMD_DONE or NET_CMD_ERROR. */
int net_explain_other(struct net_cmd *c, const bson_t *inner, bool exec);

/* aggregate {explain: true}: the queryPlanner explain of the pipeline
 * `pipeline` (an array) on `ns`. Returns NET_CMD_DONE or NET_CMD_ERROR. */
int net_explain_aggregate(struct net_cmd *c,
                          const char *ns,
                          const bson_t *inner,
                          const bson_t *pipeline,
                          bool exec);

#endif
