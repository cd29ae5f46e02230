/* tools/cairn-bench.c: commit-latency and throughput benchmark on libmongoc (a real driver, so
 * it measures what an application sees). N client threads, each with its own mongoc_client,
 * insert documents one at a time with the chosen write concern; every insert's round trip is
 * timed. Prints p50/p90/p99/max latency in microseconds and throughput in inserts/s.
 *
 * Usage: cairn-bench [--uri URI] [--clients N] [--ops N | --seconds S] [--w 1|majority]
 *                    [--j] [--doc-size BYTES] [--warmup N] [--db NAME] [--keep]
 */
#include <errno.h>
#include <inttypes.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
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
            "  --keep            keep the benchmark collection afterwards\n");
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
        } else {
            fprintf(stderr, "cairn-bench: bad option or value: %s %s\n", a, v);
            return -1;
        }
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

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    const struct options *o = w->opt;
    bson_error_t error;

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
        bson_t *doc =
            BCON_NEW("c", BCON_INT32(w->id), "i", BCON_INT64(seq++), "pad", BCON_UTF8(pad));
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
        bson_t *doc =
            BCON_NEW("c", BCON_INT32(w->id), "i", BCON_INT64(seq++), "pad", BCON_UTF8(pad));
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
        mongoc_collection_t *coll = mongoc_client_get_collection(client, o->db, "bench");
        if (!mongoc_collection_drop(coll, &error) && !quiet && error.code != 26)
            fprintf(stderr, "cairn-bench: drop: %s\n", error.message);
        mongoc_collection_destroy(coll);
    }
    bson_destroy(ping);
    mongoc_client_destroy(client);
    return rc;
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
    };
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }

    mongoc_init();
    if (drop_collection(&o, true) != 0) {
        mongoc_cleanup();
        return 1;
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
        if (pthread_create(&ws[i].thread, NULL, run_worker, &ws[i]) != 0) {
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

    printf("cairn-bench  %s  clients=%d  doc-size=%d  %s\n", o.uri, o.clients, o.doc_size, wdesc);
    printf("%-22s %10s %10s %10s %10s %10s %10s %12s %8s\n", "write concern", "inserts", "mean_us",
           "p50_us", "p90_us", "p99_us", "max_us", "ops/s", "errors");
    printf(
        "%-22s %10zu %10.0f %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12.0f %8ld\n",
        wdesc, total, total ? sum / (double)total : 0.0, percentile(all, total, 50),
        percentile(all, total, 90), percentile(all, total, 99),
        total ? all[total - 1] : (uint64_t)0, elapsed > 0 ? (double)total / elapsed : 0.0, errors);
    for (int i = 0; i < o.clients; i++) {
        if (ws[i].errors) {
            fprintf(stderr, "client %d: %ld errors, first: %s\n", i, ws[i].errors,
                    ws[i].first_error);
            break;
        }
    }

    if (!o.keep)
        drop_collection(&o, true);
    for (int i = 0; i < o.clients; i++)
        free(ws[i].lat_us);
    free(ws);
    free(all);
    mongoc_cleanup();
    return errors && total == 0 ? 1 : 0;
}
