/* tools/cairn-bench.c: commit-latency and throughput benchmark on libmongoc (a real driver, so
 * it measures what an application sees). N client threads, each with its own mongoc_client.
 *
 * Default mode: each client inserts documents one at a time with the chosen write concern;
 * every insert's round trip is timed. Prints p50/p90/p99/max latency in microseconds and
 * throughput in inserts/s.
 *
 * --txn: each client runs multi-document transactions through libmongoc's convenient API
 * (mongoc_client_start_session + mongoc_client_session_with_transaction, which retries the
 * whole transaction on TransientTransactionError and the commit on
 * UnknownTransactionCommitResult). One transaction is a transfer between --txn-docs distinct
 * accounts (default 2) drawn at random among --accounts (default 100, each created with
 * balance 1000 before the timed part): `$inc` of +amount (1..100) on every account but the
 * first, and of minus their sum on the first, so the sum of balances never changes. The
 * write concern (--w, --j) goes on commitTransaction. Each transaction is timed from the
 * call of with_transaction to its return. Besides the latency percentiles and committed
 * transactions/s it prints the callback runs and retries (a retry = one more run of the
 * callback: an update that hit WriteConflict, or a commit that failed with
 * TransientTransactionError), the updates that failed in the callback, the commitTransaction
 * commands sent (seen through command monitoring), and the failed transactions (with_transaction
 * returned false, warm-up included) with the first error. Then it checks the invariant: the
 * balances add up to accounts x 1000 (and, when no transaction failed, every account holds
 * 1000 plus the transfers committed on it). Exit status 1 if the invariant does not hold.
 * Every client draws its transfers from its own RNG seeded by --seed and its number, so runs
 * are reproducible (the interleavings are not).
 *
 * --indexes N (0..5, default mode only): every inserted document also carries five fields
 * f0..f4 with pseudo-random 64-bit integers (from the client's RNG, seeded by --seed), and
 * before the run the bench collection gets N secondary indexes {f0: 1} .. {f<N-1>: 1}
 * (createIndexes at w:majority on the freshly dropped collection). So --indexes 0, 1 and 5
 * insert the same documents and differ only in the index entries each insert maintains.
 * Without --indexes the documents have no f fields, as before.
 *
 * Usage: cairn-bench [--uri URI] [--clients N] [--ops N | --seconds S] [--w 1|majority]
 *                    [--j] [--doc-size BYTES] [--warmup N] [--db NAME] [--keep]
 *                    [--indexes N] [--txn [--accounts N] [--txn-docs K] [--seed S]]
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct options
{
    const char *uri;
    const char *db;
    int clients;
    long ops;       /* inserts per client (when seconds == 0) */
    double seconds; /* run time (when > 0) */
    int w_majority;
    int w;
    int j;
    int doc_size;
    int warmup; /* untimed inserts per client before measuring */
    int keep;   /* keep the collection afterwards */
    int txn;    /* --txn: transfers in multi-document transactions */
    int accounts;
    int txn_docs; /* documents updated per transaction */
    uint64_t seed;
    int indexes; /* --indexes N: secondary indexes on f0..f<N-1>; -1 = no f fields */
};

/* --indexes: the indexed fields every document then carries. */
#define BENCH_INDEX_FIELDS 5

/* --txn: what one client counted over the timed part. */
struct txn_stats
{
    long runs;          /* callback invocations */
    long retries;       /* runs beyond the first, summed over transactions */
    long retried;       /* transactions whose callback ran more than once */
    long max_runs;      /* most runs of one transaction */
    long conflicts;     /* updates in the callback that failed with WriteConflict */
    long update_errors; /* other updates that failed in the callback */
    long commits;       /* commitTransaction commands sent (command monitoring) */
    long max_commits;   /* most commitTransaction commands for one transaction */
    long aborts;        /* abortTransaction commands sent */
    long abort_errors;  /* ... answered with an error (the server had aborted already) */
};

struct worker
{
    const struct options *opt;
    int id;
    pthread_t thread;
    uint64_t *lat_us; /* latencies of successful inserts */
    size_t n;
    size_t cap;
    long errors;
    char first_error[sizeof(((bson_error_t *)0)->message)];
    double start_s;
    double end_s;
    /* --txn */
    _Atomic int64_t *net; /* per account: sum of the committed transfers' $inc */
    struct txn_stats st;  /* timed part only (errors counts warm-up failures too) */
    char first_abort_error[sizeof(((bson_error_t *)0)->message)];
};

static pthread_barrier_t start_barrier;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cairn-bench [options]\n"
            "  --uri URI         connection string (default "
            "mongodb://127.0.0.1:27017/?replicaSet=rs0)\n"
            "  --clients N       client threads, each with its own connection (default 1)\n"
            "  --ops N           inserts per client (default 10000)\n"
            "  --seconds S       run for S seconds instead of a fixed number of inserts\n"
            "  --w 1|majority    write concern w (default majority)\n"
            "  --j               also request j:true\n"
            "  --doc-size BYTES  approximate document size (default 100)\n"
            "  --warmup N        untimed inserts per client first (default 100)\n"
            "  --db NAME         database to write into (default cairn_bench)\n"
            "  --keep            keep the benchmark collection afterwards\n"
            "  --txn             run transfers in transactions (with_transaction) instead\n"
            "                    of inserts; --ops then counts transactions per client\n"
            "  --accounts N      accounts to transfer between, balance 1000 each (default 100)\n"
            "  --txn-docs K      accounts updated per transaction (default 2)\n"
            "  --seed S          seed of the clients' random transfers (default 1)\n"
            "  --indexes N       documents carry fields f0..f4 (random integers) and the\n"
            "                    collection gets N (0..5) secondary indexes {f0:1}.. first\n");
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--j") == 0) {
            o->j = 1;
        } else if (strcmp(a, "--keep") == 0) {
            o->keep = 1;
        } else if (strcmp(a, "--txn") == 0) {
            o->txn = 1;
        } else if (!v) {
            fprintf(stderr, "cairn-bench: %s needs a value\n", a);
            return -1;
        } else if (strcmp(a, "--uri") == 0) {
            o->uri = v, i++;
        } else if (strcmp(a, "--db") == 0) {
            o->db = v, i++;
        } else if (strcmp(a, "--clients") == 0 && parse_long(v, 1, 4096, &n) == 0) {
            o->clients = (int)n, i++;
        } else if (strcmp(a, "--ops") == 0 && parse_long(v, 1, 1000000000L, &n) == 0) {
            o->ops = n, i++;
        } else if (strcmp(a, "--seconds") == 0) {
            char *end;
            o->seconds = strtod(v, &end);
            if (*end != '\0' || !(o->seconds > 0 && o->seconds <= 86400)) {
                fprintf(stderr, "cairn-bench: bad --seconds %s\n", v);
                return -1;
            }
            i++;
        } else if (strcmp(a, "--w") == 0) {
            if (strcmp(v, "majority") == 0) {
                o->w_majority = 1;
            } else if (parse_long(v, 0, 50, &n) == 0) {
                o->w_majority = 0, o->w = (int)n;
            } else {
                fprintf(stderr, "cairn-bench: bad --w %s (1|majority)\n", v);
                return -1;
            }
            i++;
        } else if (strcmp(a, "--doc-size") == 0 && parse_long(v, 0, 16000000, &n) == 0) {
            o->doc_size = (int)n, i++;
        } else if (strcmp(a, "--warmup") == 0 && parse_long(v, 0, 1000000, &n) == 0) {
            o->warmup = (int)n, i++;
        } else if (strcmp(a, "--accounts") == 0 && parse_long(v, 2, 10000000, &n) == 0) {
            o->accounts = (int)n, i++;
        } else if (strcmp(a, "--txn-docs") == 0 && parse_long(v, 2, 1000, &n) == 0) {
            o->txn_docs = (int)n, i++;
        } else if (strcmp(a, "--seed") == 0 && parse_long(v, 0, LONG_MAX, &n) == 0) {
            o->seed = (uint64_t)n, i++;
        } else if (strcmp(a, "--indexes") == 0 && parse_long(v, 0, BENCH_INDEX_FIELDS, &n) == 0) {
            o->indexes = (int)n, i++;
        } else {
            fprintf(stderr, "cairn-bench: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (o->txn && o->indexes >= 0) {
        fprintf(stderr, "cairn-bench: --indexes applies to the insert mode, not --txn\n");
        return -1;
    }
    if (o->txn && o->txn_docs > o->accounts) {
        fprintf(stderr, "cairn-bench: --txn-docs %d needs at least as many --accounts (%d)\n",
                o->txn_docs, o->accounts);
        return -1;
    }
    return 0;
}

static int push_latency(struct worker *w, uint64_t us)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        uint64_t *p = realloc(w->lat_us, cap * sizeof *p);
        if (!p)
            return -1;
        w->lat_us = p;
        w->cap = cap;
    }
    w->lat_us[w->n++] = us;
    return 0;
}

static uint64_t rng_next(uint64_t *state);

/* One insert-mode document: {c, i, pad}, plus f0..f4 under --indexes. Caller frees it. */
static bson_t *bench_doc(const struct options *o, int id, long seq, const char *pad, uint64_t *rng)
{
    bson_t *doc = BCON_NEW("c", BCON_INT32(id), "i", BCON_INT64(seq), "pad", BCON_UTF8(pad));
    if (o->indexes >= 0) {
        for (int f = 0; f < BENCH_INDEX_FIELDS; f++) {
            char key[16];
            snprintf(key, sizeof key, "f%d", f);
            BSON_APPEND_INT64(doc, key, (int64_t)(rng_next(rng) >> 1));
        }
    }
    return doc;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    const struct options *o = w->opt;
    bson_error_t error;
    uint64_t rng = o->seed * 1000003u + (uint64_t)w->id;

    mongoc_client_t *client = mongoc_client_new(o->uri);
    if (!client) {
        snprintf(w->first_error, sizeof w->first_error, "bad URI");
        w->errors++;
        pthread_barrier_wait(&start_barrier);
        return NULL;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, o->db, "bench");

    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    if (o->w_majority)
        mongoc_write_concern_set_wmajority(wc, 0);
    else
        mongoc_write_concern_set_w(wc, o->w);
    if (o->j)
        mongoc_write_concern_set_journal(wc, true);
    bson_t opts = BSON_INITIALIZER;
    mongoc_write_concern_append(wc, &opts);

    char *pad = bson_malloc((size_t)o->doc_size + 1);
    memset(pad, 'x', (size_t)o->doc_size);
    pad[o->doc_size] = '\0';

    long seq = 0;
    /* warm-up: connection set-up, first allocations; not timed */
    for (int i = 0; i < o->warmup; i++) {
        bson_t *doc = bench_doc(o, w->id, seq++, pad, &rng);
        if (!mongoc_collection_insert_one(coll, doc, &opts, NULL, &error)) {
            if (!w->errors)
                snprintf(w->first_error, sizeof w->first_error, "%s", error.message);
            w->errors++;
        }
        bson_destroy(doc);
    }

    pthread_barrier_wait(&start_barrier);
    w->start_s = now_s();
    double deadline = o->seconds > 0 ? w->start_s + o->seconds : 0;
    for (long i = 0;; i++) {
        if (deadline > 0 ? now_s() >= deadline : i >= o->ops)
            break;
        bson_t *doc = bench_doc(o, w->id, seq++, pad, &rng);
        uint64_t t0 = now_us();
        bool ok = mongoc_collection_insert_one(coll, doc, &opts, NULL, &error);
        uint64_t t1 = now_us();
        bson_destroy(doc);
        if (ok) {
            if (push_latency(w, t1 - t0) != 0) {
                snprintf(w->first_error, sizeof w->first_error, "out of memory");
                w->errors++;
                break;
            }
        } else {
            if (!w->errors)
                snprintf(w->first_error, sizeof w->first_error, "%s", error.message);
            w->errors++;
            if (w->errors > 1000 && w->n == 0)
                break; /* nothing works: give up rather than spin */
        }
    }
    w->end_s = now_s();

    bson_free(pad);
    bson_destroy(&opts);
    mongoc_write_concern_destroy(wc);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return NULL;
}

/* ---- --txn: transfers in multi-document transactions ------------------------------------ */

#define INITIAL_BALANCE 1000
#define MONGO_WRITE_CONFLICT 112

/* splitmix64: small, fast, and the same sequence everywhere for a given seed. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return rng_next(state) % n; /* bias below 2^-40 for the ranges used here */
}

/* Draws one transfer: k distinct accounts; every one but the first is credited 1..100, the
 * first is debited the sum, so the transfer moves no money in or out. */
static void draw_transfer(uint64_t *rng, const struct options *o, int32_t *ids, int64_t *deltas)
{
    int64_t sum = 0;
    for (int i = 0; i < o->txn_docs; i++) {
        bool dup;
        do {
            ids[i] = (int32_t)rng_below(rng, (uint64_t)o->accounts);
            dup = false;
            for (int j = 0; j < i && !dup; j++)
                dup = ids[j] == ids[i];
        } while (dup);
        deltas[i] = i > 0 ? (int64_t)(1 + rng_below(rng, 100)) : 0;
        sum += deltas[i];
    }
    deltas[0] = -sum;
}

/* What the with_transaction callback works on: one transfer. */
struct transfer
{
    struct worker *w;
    mongoc_collection_t *coll;
    const bson_t *opts; /* the session (lsid) for the updates */
    const int32_t *ids;
    const int64_t *deltas;
    int k;
    long runs; /* callback invocations for this transaction */
};

static bool counts_as_matched(const bson_t *reply)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, "matchedCount") && bson_iter_as_int64(&it) == 1;
}

/* The with_transaction callback: one `$inc` per account of the transfer, inside the
 * transaction. A failed update's reply (with its error labels) goes back through *reply:
 * with_transaction retries only on a TransientTransactionError label it finds there. */
static bool transfer_cb(mongoc_client_session_t *session,
                        void *ctx,
                        bson_t **reply,
                        bson_error_t *error)
{
    struct transfer *t = ctx;
    bool ok = true;

    (void)session; /* the updates carry it through t->opts */
    t->runs++;
    for (int i = 0; i < t->k && ok; i++) {
        bson_t *filter = BCON_NEW("_id", BCON_INT32(t->ids[i]));
        bson_t *update = BCON_NEW("$inc", "{", "bal", BCON_INT64(t->deltas[i]), "}");
        bson_t local;
        ok = mongoc_collection_update_one(t->coll, filter, update, t->opts, &local, error);
        if (!ok) {
            if (error->domain == MONGOC_ERROR_SERVER && error->code == MONGO_WRITE_CONFLICT)
                t->w->st.conflicts++;
            else
                t->w->st.update_errors++;
            if (*reply == NULL)
                *reply = bson_copy(&local);
        } else if (!counts_as_matched(&local)) {
            bson_set_error(error, MONGOC_ERROR_COMMAND, MONGOC_ERROR_COMMAND_INVALID_ARG,
                           "update of account %" PRId32 " matched no document", t->ids[i]);
            t->w->st.update_errors++;
            ok = false;
        }
        bson_destroy(&local);
        bson_destroy(update);
        bson_destroy(filter);
    }
    return ok;
}

/* Command monitoring: counts the commitTransaction and abortTransaction commands this client
 * sends, and the abortTransaction commands that fail. */
static void on_command_started(const mongoc_apm_command_started_t *event)
{
    const char *name = mongoc_apm_command_started_get_command_name(event);
    struct worker *w = mongoc_apm_command_started_get_context(event);
    if (strcmp(name, "commitTransaction") == 0)
        w->st.commits++;
    else if (strcmp(name, "abortTransaction") == 0)
        w->st.aborts++;
}

static void on_command_failed(const mongoc_apm_command_failed_t *event)
{
    struct worker *w = mongoc_apm_command_failed_get_context(event);
    if (strcmp(mongoc_apm_command_failed_get_command_name(event), "abortTransaction") == 0) {
        w->st.abort_errors++;
        if (w->first_abort_error[0] == '\0') {
            bson_error_t error;
            mongoc_apm_command_failed_get_error(event, &error);
            snprintf(w->first_abort_error, sizeof w->first_abort_error, "%s", error.message);
        }
    }
}

/* libmongoc logs a warning for every abortTransaction that fails, which is every abort after
 * a WriteConflict (the server has aborted the transaction already, as mongod does): counted
 * through command monitoring instead; other messages go to the default handler. */
static void log_handler(mongoc_log_level_t level,
                        const char *domain,
                        const char *message,
                        void *user_data)
{
    if (level == MONGOC_LOG_LEVEL_WARNING && strncmp(message, "Error in abortTransaction", 25) == 0)
        return;
    mongoc_log_default_handler(level, domain, message, user_data);
}

/* Records a failed transaction: the first one's error, code and error labels. */
static void note_failure(struct worker *w, const bson_error_t *error, const bson_t *reply)
{
    if (w->errors++ == 0) {
        size_t len = sizeof w->first_error;
        int n = snprintf(w->first_error, len, "%s (domain %" PRIu32 ", code %" PRIu32,
                         error->message, error->domain, error->code);
        bson_iter_t it, labels;
        if (reply && bson_iter_init_find(&it, reply, "errorLabels") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &labels)) {
            const char *sep = ", labels ";
            while (n >= 0 && (size_t)n < len && bson_iter_next(&labels)) {
                if (BSON_ITER_HOLDS_UTF8(&labels)) {
                    n += snprintf(w->first_error + n, len - (size_t)n, "%s%s", sep,
                                  bson_iter_utf8(&labels, NULL));
                    sep = ",";
                }
            }
        }
        if (n >= 0 && (size_t)n < len)
            snprintf(w->first_error + n, len - (size_t)n, ")");
    }
}

/* Runs one transfer through with_transaction; `timed`: count it in the statistics. Returns 0,
 * or -1 when the benchmark cannot go on (out of memory). */
static int run_transfer(struct worker *w,
                        mongoc_client_session_t *session,
                        const mongoc_transaction_opt_t *txn_opts,
                        struct transfer *t,
                        bool timed)
{
    bson_error_t error;
    bson_t reply;
    struct txn_stats before = w->st;
    int rc = 0;

    t->runs = 0;
    uint64_t t0 = now_us();
    bool ok =
        mongoc_client_session_with_transaction(session, transfer_cb, txn_opts, t, &reply, &error);
    uint64_t t1 = now_us();
    if (ok) {
        for (int i = 0; i < t->k; i++)
            atomic_fetch_add_explicit(&w->net[t->ids[i]], t->deltas[i], memory_order_relaxed);
    } else {
        note_failure(w, &error, &reply);
    }
    if (timed) {
        long commits = w->st.commits - before.commits;
        w->st.runs += t->runs;
        if (t->runs > 1) {
            w->st.retries += t->runs - 1;
            w->st.retried++;
        }
        if (t->runs > w->st.max_runs)
            w->st.max_runs = t->runs;
        if (commits > w->st.max_commits)
            w->st.max_commits = commits;
        if (ok && push_latency(w, t1 - t0) != 0) {
            snprintf(w->first_error, sizeof w->first_error, "out of memory");
            w->errors++;
            rc = -1;
        }
    } else {
        w->st = before; /* warm-up: not counted */
    }
    bson_destroy(&reply);
    return rc;
}

static void *run_txn_worker(void *arg)
{
    struct worker *w = arg;
    const struct options *o = w->opt;
    mongoc_client_t *client = NULL;
    mongoc_apm_callbacks_t *cbs;
    mongoc_collection_t *coll = NULL;
    mongoc_client_session_t *session = NULL;
    mongoc_write_concern_t *wc = NULL;
    mongoc_transaction_opt_t *txn_opts = NULL;
    bson_t session_opts = BSON_INITIALIZER;
    int32_t *ids = NULL;
    int64_t *deltas = NULL;
    struct transfer t = {w, NULL, NULL, NULL, NULL, o->txn_docs, 0};
    bson_error_t error;
    bool started = false;
    double deadline = 0;
    uint64_t rng = o->seed * 0x100000001b3u + (uint64_t)w->id;

    client = mongoc_client_new(o->uri);
    if (!client) {
        snprintf(w->first_error, sizeof w->first_error, "bad URI");
        w->errors++;
        goto done;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, on_command_started);
    mongoc_apm_set_command_failed_cb(cbs, on_command_failed);
    mongoc_client_set_apm_callbacks(client, cbs, w);
    mongoc_apm_callbacks_destroy(cbs); /* the client keeps a copy */
    coll = mongoc_client_get_collection(client, o->db, "accounts");

    wc = mongoc_write_concern_new();
    if (o->w_majority)
        mongoc_write_concern_set_wmajority(wc, 0);
    else
        mongoc_write_concern_set_w(wc, o->w);
    if (o->j)
        mongoc_write_concern_set_journal(wc, true);
    txn_opts = mongoc_transaction_opts_new();
    mongoc_transaction_opts_set_write_concern(txn_opts, wc);

    session = mongoc_client_start_session(client, NULL, &error);
    if (!session || !mongoc_client_session_append(session, &session_opts, &error)) {
        note_failure(w, &error, NULL);
        goto done;
    }
    ids = calloc((size_t)o->txn_docs, sizeof *ids);
    deltas = calloc((size_t)o->txn_docs, sizeof *deltas);
    if (!ids || !deltas) {
        snprintf(w->first_error, sizeof w->first_error, "out of memory");
        w->errors++;
        goto done;
    }
    t.coll = coll;
    t.opts = &session_opts;
    t.ids = ids;
    t.deltas = deltas;

    /* warm-up: connection set-up, first transactions; not timed */
    for (int i = 0; i < o->warmup; i++) {
        draw_transfer(&rng, o, ids, deltas);
        if (run_transfer(w, session, txn_opts, &t, false) != 0)
            goto done;
    }

    pthread_barrier_wait(&start_barrier);
    started = true;
    w->start_s = now_s();
    deadline = o->seconds > 0 ? w->start_s + o->seconds : 0;
    for (long i = 0;; i++) {
        if (deadline > 0 ? now_s() >= deadline : i >= o->ops)
            break;
        draw_transfer(&rng, o, ids, deltas);
        if (run_transfer(w, session, txn_opts, &t, true) != 0)
            break;
        if (w->errors > 1000 && w->n == 0)
            break; /* nothing works: give up rather than spin */
    }
    w->end_s = now_s();

done:
    if (!started) {
        pthread_barrier_wait(&start_barrier);
        w->start_s = w->end_s = now_s();
    }
    free(deltas);
    free(ids);
    bson_destroy(&session_opts);
    mongoc_client_session_destroy(session);
    mongoc_transaction_opts_destroy(txn_opts);
    mongoc_write_concern_destroy(wc);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t percentile(const uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t idx = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[idx < n ? idx : n - 1];
}

static int drop_collection(const struct options *o, bool quiet)
{
    bson_error_t error;
    mongoc_client_t *client = mongoc_client_new(o->uri);
    if (!client) {
        fprintf(stderr, "cairn-bench: bad URI %s\n", o->uri);
        return -1;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
    int rc = 0;
    if (!mongoc_client_command_simple(client, "admin", ping, NULL, NULL, &error)) {
        fprintf(stderr, "cairn-bench: cannot reach %s: %s\n", o->uri, error.message);
        rc = -1;
    } else {
        mongoc_collection_t *coll =
            mongoc_client_get_collection(client, o->db, o->txn ? "accounts" : "bench");
        if (!mongoc_collection_drop(coll, &error) && !quiet && error.code != 26)
            fprintf(stderr, "cairn-bench: drop: %s\n", error.message);
        mongoc_collection_destroy(coll);
    }
    bson_destroy(ping);
    mongoc_client_destroy(client);
    return rc;
}

/* --indexes N: creates the N secondary indexes {f0: 1} .. on the (just dropped) bench
 * collection with one createIndexes at w:majority. Returns 0 or -1 (reported). */
static int create_indexes(const struct options *o)
{
    bson_error_t error;
    int rc = -1;
    mongoc_client_t *client = mongoc_client_new(o->uri);
    if (!client) {
        fprintf(stderr, "cairn-bench: bad URI %s\n", o->uri);
        return -1;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    bson_t cmd = BSON_INITIALIZER;
    bson_t specs, spec, key;
    BSON_APPEND_UTF8(&cmd, "createIndexes", "bench");
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &specs);
    for (int f = 0; f < o->indexes; f++) {
        char idx[16], field[16], name[24];
        snprintf(idx, sizeof idx, "%d", f);
        snprintf(field, sizeof field, "f%d", f);
        snprintf(name, sizeof name, "f%d_1", f);
        BSON_APPEND_DOCUMENT_BEGIN(&specs, idx, &spec);
        BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
        BSON_APPEND_INT32(&key, field, 1);
        bson_append_document_end(&spec, &key);
        BSON_APPEND_UTF8(&spec, "name", name);
        bson_append_document_end(&specs, &spec);
    }
    bson_append_array_end(&cmd, &specs);
    bson_t *opts = BCON_NEW("writeConcern", "{", "w", BCON_UTF8("majority"), "}");
    if (!mongoc_client_write_command_with_opts(client, o->db, &cmd, opts, NULL, &error))
        fprintf(stderr, "cairn-bench: createIndexes: %s\n", error.message);
    else
        rc = 0;
    bson_destroy(opts);
    bson_destroy(&cmd);
    mongoc_client_destroy(client);
    return rc;
}

/* --txn: creates the accounts {_id: 0..N-1, bal: 1000, pad} with write concern majority, in
 * batches. Returns 0 or -1 (reported). */
static int setup_accounts(const struct options *o)
{
    enum { BATCH = 1000 };
    bson_error_t error;
    mongoc_client_t *client = NULL;
    mongoc_collection_t *coll = NULL;
    bson_t *opts = BCON_NEW("writeConcern", "{", "w", BCON_UTF8("majority"), "}");
    bson_t *docs[BATCH] = {NULL};
    char *pad = bson_malloc((size_t)o->doc_size + 1);
    int rc = -1;

    memset(pad, 'x', (size_t)o->doc_size);
    pad[o->doc_size] = '\0';
    client = mongoc_client_new(o->uri);
    if (!client) {
        fprintf(stderr, "cairn-bench: bad URI %s\n", o->uri);
        goto done;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    coll = mongoc_client_get_collection(client, o->db, "accounts");
    for (int first = 0; first < o->accounts; first += BATCH) {
        int n = o->accounts - first < BATCH ? o->accounts - first : BATCH;
        for (int i = 0; i < n; i++)
            docs[i] = BCON_NEW("_id", BCON_INT32(first + i), "bal", BCON_INT64(INITIAL_BALANCE),
                               "pad", BCON_UTF8(pad));
        bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)n, opts, NULL,
                                                &error);
        for (int i = 0; i < n; i++) {
            bson_destroy(docs[i]);
            docs[i] = NULL;
        }
        if (!ok) {
            fprintf(stderr, "cairn-bench: creating the accounts: %s\n", error.message);
            goto done;
        }
    }
    rc = 0;
done:
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    bson_free(pad);
    bson_destroy(opts);
    return rc;
}

/* --txn: reads every account back and checks the invariant: the balances add up to
 * accounts x 1000. When every transaction's outcome is known (`exact`: none failed), also
 * checks that each account holds 1000 plus the transfers committed on it (`net`): a lost or
 * half-applied committed transaction would show there even when the sum is right. Prints
 * the result. Returns 0 when everything checked holds, -1 otherwise. */
static int verify_accounts(const struct options *o, _Atomic int64_t *net, bool exact)
{
    enum { SHOW = 10 };
    bson_error_t error;
    mongoc_client_t *client = NULL;
    mongoc_collection_t *coll = NULL;
    mongoc_cursor_t *cursor = NULL;
    bson_t *filter = bson_new();
    bool *seen = calloc((size_t)o->accounts, sizeof *seen);
    const bson_t *doc;
    int64_t sum = 0, docs = 0, bad_docs = 0, wrong = 0;
    int64_t expected = (int64_t)o->accounts * INITIAL_BALANCE;
    int rc = -1;

    if (!seen) {
        fprintf(stderr, "cairn-bench: out of memory\n");
        goto done;
    }
    client = mongoc_client_new(o->uri);
    if (!client) {
        fprintf(stderr, "cairn-bench: bad URI %s\n", o->uri);
        goto done;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    coll = mongoc_client_get_collection(client, o->db, "accounts");
    cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        bson_iter_t id, bal;
        docs++;
        if (!bson_iter_init_find(&id, doc, "_id") || !BSON_ITER_HOLDS_INT32(&id) ||
            bson_iter_int32(&id) < 0 || bson_iter_int32(&id) >= o->accounts ||
            seen[bson_iter_int32(&id)] || !bson_iter_init_find(&bal, doc, "bal") ||
            !BSON_ITER_HOLDS_INT64(&bal)) {
            char *json = bson_as_relaxed_extended_json(doc, NULL);
            if (bad_docs++ < SHOW)
                printf("  unexpected account document %.200s\n", json);
            bson_free(json);
            continue;
        }
        int32_t i = bson_iter_int32(&id);
        int64_t b = bson_iter_int64(&bal);
        seen[i] = true;
        sum += b;
        int64_t want = INITIAL_BALANCE + atomic_load(&net[i]);
        if (exact && b != want && wrong++ < SHOW)
            printf("  account %" PRId32 ": balance %" PRId64 ", committed transfers give %" PRId64
                   "\n",
                   i, b, want);
    }
    if (mongoc_cursor_error(cursor, &error)) {
        printf("invariant: cannot read the accounts: %s\n", error.message);
        goto done;
    }
    bool sum_ok = sum == expected && docs == o->accounts && bad_docs == 0;
    printf("invariant: sum of balances %" PRId64 " over %" PRId64 " accounts, expected %" PRId64
           " (%d x %d): %s\n",
           sum, docs, expected, o->accounts, INITIAL_BALANCE, sum_ok ? "ok" : "BROKEN");
    if (exact)
        printf("balances: every account = %d + its committed transfers: %s\n", INITIAL_BALANCE,
               wrong == 0 && sum_ok ? "ok" : "BROKEN");
    else
        printf("balances: per-account check skipped (failed transactions: outcome unknown)\n");
    if (sum_ok && (!exact || wrong == 0))
        rc = 0;
done:
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    bson_destroy(filter);
    free(seen);
    return rc;
}

/* --txn: prints the figures, then checks the invariant. Returns the exit status: 1 when the
 * invariant does not hold (or could not be checked) or when nothing committed. */
static int report_txn(const struct options *o,
                      const struct worker *ws,
                      const uint64_t *all,
                      size_t total,
                      double elapsed,
                      double sum,
                      const char *wdesc)
{
    struct txn_stats st = {0};
    long failed = 0;
    const char *abort_error = NULL;

    for (int i = 0; i < o->clients; i++) {
        const struct txn_stats *c = &ws[i].st;
        failed += ws[i].errors;
        st.runs += c->runs;
        st.retries += c->retries;
        st.retried += c->retried;
        st.conflicts += c->conflicts;
        st.update_errors += c->update_errors;
        st.commits += c->commits;
        st.aborts += c->aborts;
        st.abort_errors += c->abort_errors;
        if (c->max_runs > st.max_runs)
            st.max_runs = c->max_runs;
        if (c->max_commits > st.max_commits)
            st.max_commits = c->max_commits;
        if (!abort_error && ws[i].first_abort_error[0])
            abort_error = ws[i].first_abort_error;
    }
    if (st.abort_errors == 0)
        abort_error = NULL; /* the one noted came from the warm-up */
    printf("cairn-bench  %s  txn  clients=%d  accounts=%d  txn-docs=%d  seed=%" PRIu64
           "  doc-size=%d  %s\n",
           o->uri, o->clients, o->accounts, o->txn_docs, o->seed, o->doc_size, wdesc);
    printf("%-22s %10s %10s %10s %10s %10s %10s %12s %8s\n", "write concern", "txns", "mean_us",
           "p50_us", "p90_us", "p99_us", "max_us", "txns/s", "failed");
    printf(
        "%-22s %10zu %10.0f %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12.0f %8ld\n",
        wdesc, total, total ? sum / (double)total : 0.0, percentile(all, total, 50),
        percentile(all, total, 90), percentile(all, total, 99),
        total ? all[total - 1] : (uint64_t)0, elapsed > 0 ? (double)total / elapsed : 0.0, failed);
    printf(
        "transactions: %zu committed, %ld failed; callback runs %ld, retries %ld (in %ld "
        "transactions, at most %ld for one)\n",
        total, failed, st.runs, st.retries, st.retried, st.max_runs > 0 ? st.max_runs - 1 : 0);
    printf("callback updates failed: %ld WriteConflict, %ld other\n", st.conflicts,
           st.update_errors);
    printf(
        "commitTransaction sent %ld (at most %ld for one transaction); abortTransaction sent "
        "%ld, %ld answered with an error%s%s%s\n",
        st.commits, st.max_commits, st.aborts, st.abort_errors, abort_error ? " (first: " : "",
        abort_error ? abort_error : "", abort_error ? ")" : "");
    fflush(stdout); /* before the first error, when both go to one file */
    for (int i = 0; i < o->clients; i++) {
        if (ws[i].errors) {
            fprintf(stderr, "client %d: %ld failed transactions, first: %s\n", i, ws[i].errors,
                    ws[i].first_error);
            break;
        }
    }
    int rc = verify_accounts(o, ws[0].net, failed == 0);
    return rc != 0 || total == 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct options o = {
        .uri = "mongodb://127.0.0.1:27017/?replicaSet=rs0",
        .db = "cairn_bench",
        .clients = 1,
        .ops = 10000,
        .seconds = 0,
        .w_majority = 1,
        .w = 1,
        .j = 0,
        .doc_size = 100,
        .warmup = 100,
        .keep = 0,
        .txn = 0,
        .accounts = 100,
        .txn_docs = 2,
        .seed = 1,
        .indexes = -1,
    };
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }

    mongoc_init();
    if (o.txn)
        mongoc_log_set_handler(log_handler, NULL);
    if (drop_collection(&o, true) != 0 || (o.txn && setup_accounts(&o) != 0) ||
        (o.indexes > 0 && create_indexes(&o) != 0)) {
        mongoc_cleanup();
        return 1;
    }
    _Atomic int64_t *net = NULL;
    if (o.txn) {
        net = malloc((size_t)o.accounts * sizeof *net);
        if (!net) {
            fprintf(stderr, "cairn-bench: out of memory\n");
            mongoc_cleanup();
            return 1;
        }
        for (int i = 0; i < o.accounts; i++)
            atomic_init(&net[i], 0);
    }

    struct worker *ws = calloc((size_t)o.clients, sizeof *ws);
    if (!ws) {
        fprintf(stderr, "cairn-bench: out of memory\n");
        mongoc_cleanup();
        return 1;
    }
    pthread_barrier_init(&start_barrier, NULL, (unsigned)o.clients);
    for (int i = 0; i < o.clients; i++) {
        ws[i].opt = &o;
        ws[i].id = i;
        ws[i].net = net;
        if (pthread_create(&ws[i].thread, NULL, o.txn ? run_txn_worker : run_worker, &ws[i]) != 0) {
            fprintf(stderr, "cairn-bench: cannot start thread %d\n", i);
            return 1; /* earlier threads wait on the barrier forever: just exit */
        }
    }
    size_t total = 0;
    long errors = 0;
    double start = 0, end = 0;
    for (int i = 0; i < o.clients; i++) {
        pthread_join(ws[i].thread, NULL);
        total += ws[i].n;
        errors += ws[i].errors;
        if (i == 0 || ws[i].start_s < start)
            start = ws[i].start_s;
        if (ws[i].end_s > end)
            end = ws[i].end_s;
    }
    pthread_barrier_destroy(&start_barrier);

    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < o.clients && all; i++) {
        memcpy(all + k, ws[i].lat_us, ws[i].n * sizeof *all);
        k += ws[i].n;
    }
    if (!all) {
        fprintf(stderr, "cairn-bench: out of memory\n");
        return 1;
    }
    qsort(all, total, sizeof *all, cmp_u64);
    double elapsed = end - start;
    double sum = 0;
    for (size_t i = 0; i < total; i++)
        sum += (double)all[i];

    char wdesc[64];
    snprintf(wdesc, sizeof wdesc, "w:%s%s", o.w_majority ? "majority" : "", o.j ? ",j:true" : "");
    if (!o.w_majority)
        snprintf(wdesc, sizeof wdesc, "w:%d%s", o.w, o.j ? ",j:true" : "");

    int rc;
    if (o.txn) {
        rc = report_txn(&o, ws, all, total, elapsed, sum, wdesc);
    } else {
        printf("cairn-bench  %s  clients=%d  doc-size=%d  %s", o.uri, o.clients, o.doc_size, wdesc);
        if (o.indexes >= 0)
            printf("  secondary-indexes=%d", o.indexes);
        printf("\n");
        printf("%-22s %10s %10s %10s %10s %10s %10s %12s %8s\n", "write concern", "inserts",
               "mean_us", "p50_us", "p90_us", "p99_us", "max_us", "ops/s", "errors");
        printf("%-22s %10zu %10.0f %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64
               " %12.0f %8ld\n",
               wdesc, total, total ? sum / (double)total : 0.0, percentile(all, total, 50),
               percentile(all, total, 90), percentile(all, total, 99),
               total ? all[total - 1] : (uint64_t)0, elapsed > 0 ? (double)total / elapsed : 0.0,
               errors);
        for (int i = 0; i < o.clients; i++) {
            if (ws[i].errors) {
                fprintf(stderr, "client %d: %ld errors, first: %s\n", i, ws[i].errors,
                        ws[i].first_error);
                break;
            }
        }
        rc = errors && total == 0 ? 1 : 0;
    }

    if (!o.keep)
        drop_collection(&o, true);
    for (int i = 0; i < o.clients; i++)
        free(ws[i].lat_us);
    free(ws);
    free(all);
    free(net);
    mongoc_cleanup();
    return rc;
}
