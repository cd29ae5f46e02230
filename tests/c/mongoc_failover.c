/* tests/c/mongoc_failover.c: the libmongoc (1.23) failover workload. Owns the C side of
 * tests/integration/test_driver_failover.py: through a pooled client (background monitoring
 * with awaitable hello, as applications use libmongoc with threads) it inserts documents
 * {n: <id>, by: "mongoc"} with consecutive ids into failover.mongoc_ids at w:"majority", as
 * retryable writes (retryWrites=true: the driver retries each insert once after a retryable
 * error, e.g. on the new primary after a failover), one at a time, until told to stop. An
 * insert that fails even after the driver's retry is counted as an error and the loop goes on
 * with the next id (the failed id's outcome is unknown: it may be present or not).
 *
 * Usage: mongoc_failover [--seconds S] [--count N] URI
 *   Runs until S seconds have passed (default 60), N inserts were acknowledged, or SIGTERM /
 *   SIGINT arrives (the insert in progress finishes first). Exits 0 after printing the
 *   summary, whatever the errors (the caller judges them); 1 if it could not start; 2 on a
 *   usage error.
 *
 * Output on stdout, one JSON object per line (times are wall-clock Unix seconds, t0 when the
 * insert was issued, t1 when the driver returned):
 *   {"ev":"start","t":T,"pid":P}
 *   {"ev":"ack","id":N,"t0":T0,"t1":T1}                       acknowledged insert
 *   {"ev":"err","op":"insert","id":N,"t0":T0,"t1":T1,"domain":D,"code":C,"msg":"..."}
 *   {"ev":"summary","acked":[[lo,hi],...],"acked_count":K,"errors":E,
 *    "first_error_t":T|null,"first_success_after_error_t":T|null,
 *    "outages":[[first error, next success],...],"error_kinds":[{"domain":D,"code":C,
 *    "msg":"...","count":K},...],"other_error_kinds":K,"elapsed_s":S}
 * "acked" lists the acknowledged ids as inclusive ranges. The driver reports server errors with
 * error API version 2 (domain MONGOC_ERROR_SERVER = 18, code the server's code; a write concern
 * error has domain MONGOC_ERROR_WRITE_CONCERN = 29 and is not an acknowledgement). The driver's
 * log messages go to stderr. */
#include <inttypes.h>
#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DB_NAME "failover"
#define COLL_NAME "mongoc_ids"
#define MAX_ERROR_KINDS 32
#define ERROR_MSG_KEEP 160

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes s as a JSON string literal (quotes included). */
static void put_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* -- acknowledged ids as inclusive ranges ----------------------------------------------- */

struct id_range
{
    int64_t lo;
    int64_t hi;
};

struct acked_ids
{
    struct id_range *ranges;
    size_t len;
    size_t cap;
    int64_t count;
};

static void acked_add(struct acked_ids *a, int64_t id)
{
    a->count++;
    if (a->len > 0 && a->ranges[a->len - 1].hi + 1 == id) {
        a->ranges[a->len - 1].hi = id;
        return;
    }
    if (a->len == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->ranges = realloc(a->ranges, a->cap * sizeof(*a->ranges));
        if (!a->ranges) {
            perror("realloc");
            exit(1);
        }
    }
    a->ranges[a->len++] = (struct id_range){id, id};
}

/* -- errors: counted by kind, and the outages they form --------------------------------- */

struct error_kind
{
    uint32_t domain;
    uint32_t code;
    char msg[ERROR_MSG_KEEP];
    int64_t count;
};

struct outage
{
    double first_error_t;
    double next_success_t; /* 0 while the outage lasts */
};

struct error_log
{
    int64_t total;
    struct error_kind kinds[MAX_ERROR_KINDS];
    size_t nkinds;
    int64_t other_kinds; /* errors of kinds beyond MAX_ERROR_KINDS */
    struct outage *outages;
    size_t noutages;
    size_t cap_outages;
    bool in_outage;
};

static void error_log_add(struct error_log *log, const bson_error_t *error, double t)
{
    log->total++;
    size_t i;
    for (i = 0; i < log->nkinds; i++) {
        struct error_kind *k = &log->kinds[i];
        if (k->domain == error->domain && k->code == error->code &&
            strncmp(k->msg, error->message, ERROR_MSG_KEEP - 1) == 0)
            break;
    }
    if (i < log->nkinds) {
        log->kinds[i].count++;
    } else if (log->nkinds < MAX_ERROR_KINDS) {
        struct error_kind *k = &log->kinds[log->nkinds++];
        k->domain = error->domain;
        k->code = error->code;
        bson_strncpy(k->msg, error->message, sizeof(k->msg));
        k->count = 1;
    } else {
        log->other_kinds++;
    }
    if (!log->in_outage) {
        if (log->noutages == log->cap_outages) {
            log->cap_outages = log->cap_outages ? log->cap_outages * 2 : 8;
            log->outages = realloc(log->outages, log->cap_outages * sizeof(*log->outages));
            if (!log->outages) {
                perror("realloc");
                exit(1);
            }
        }
        log->outages[log->noutages++] = (struct outage){t, 0};
        log->in_outage = true;
    }
}

static void error_log_success(struct error_log *log, double t)
{
    if (log->in_outage) {
        log->outages[log->noutages - 1].next_success_t = t;
        log->in_outage = false;
    }
}

/* -- output ----------------------------------------------------------------------------- */

static void print_ack(int64_t id, double t0, double t1)
{
    printf("{\"ev\":\"ack\",\"id\":%" PRId64 ",\"t0\":%.6f,\"t1\":%.6f}\n", id, t0, t1);
    fflush(stdout);
}

static void print_error(int64_t id, double t0, double t1, const bson_error_t *error)
{
    printf("{\"ev\":\"err\",\"op\":\"insert\",\"id\":%" PRId64
           ",\"t0\":%.6f,\"t1\":%.6f,\"domain\":%" PRIu32 ",\"code\":%" PRIu32 ",\"msg\":",
           id, t0, t1, error->domain, error->code);
    put_json_string(stdout, error->message);
    printf("}\n");
    fflush(stdout);
}

static void print_time_or_null(double t)
{
    if (t > 0)
        printf("%.6f", t);
    else
        printf("null");
}

static void print_summary(const struct acked_ids *acked,
                          const struct error_log *log,
                          double elapsed)
{
    printf("{\"ev\":\"summary\",\"acked\":[");
    for (size_t i = 0; i < acked->len; i++)
        printf("%s[%" PRId64 ",%" PRId64 "]", i ? "," : "", acked->ranges[i].lo,
               acked->ranges[i].hi);
    printf("],\"acked_count\":%" PRId64 ",\"errors\":%" PRId64 ",\"first_error_t\":", acked->count,
           log->total);
    print_time_or_null(log->noutages ? log->outages[0].first_error_t : 0);
    printf(",\"first_success_after_error_t\":");
    print_time_or_null(log->noutages ? log->outages[0].next_success_t : 0);
    printf(",\"outages\":[");
    for (size_t i = 0; i < log->noutages; i++) {
        printf("%s[%.6f,", i ? "," : "", log->outages[i].first_error_t);
        print_time_or_null(log->outages[i].next_success_t);
        printf("]");
    }
    printf("],\"error_kinds\":[");
    for (size_t i = 0; i < log->nkinds; i++) {
        const struct error_kind *k = &log->kinds[i];
        printf("%s{\"domain\":%" PRIu32 ",\"code\":%" PRIu32 ",\"msg\":", i ? "," : "", k->domain,
               k->code);
        put_json_string(stdout, k->msg);
        printf(",\"count\":%" PRId64 "}", k->count);
    }
    printf("],\"other_error_kinds\":%" PRId64 ",\"elapsed_s\":%.3f}\n", log->other_kinds, elapsed);
    fflush(stdout);
}

/* libmongoc's default handler prints debug and info messages on stdout: keep stdout for the
 * JSON lines and send every driver message to stderr. */
static void log_to_stderr(mongoc_log_level_t level,
                          const char *domain,
                          const char *message,
                          void *user_data)
{
    (void)user_data;
    fprintf(stderr, "%s %s: %s\n", mongoc_log_level_str(level), domain, message);
}

/* -- the workload ----------------------------------------------------------------------- */

struct options
{
    const char *uri;
    double seconds;
    int64_t count; /* 0: no limit */
};

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds S] [--count N] URI\n", argv0);
    exit(2);
}

static struct options parse_options(int argc, char **argv)
{
    struct options o = {NULL, 60.0, 0};
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            o.seconds = strtod(argv[++i], &end);
            if (*end || o.seconds <= 0)
                usage(argv[0]);
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            o.count = strtoll(argv[++i], &end, 10);
            if (*end || o.count <= 0)
                usage(argv[0]);
        } else if (argv[i][0] == '-' || o.uri) {
            usage(argv[0]);
        } else {
            o.uri = argv[i];
        }
    }
    if (!o.uri)
        usage(argv[0]);
    return o;
}

static bool insert_one_id(mongoc_collection_t *coll, int64_t id, bson_error_t *error)
{
    bson_t *doc = BCON_NEW("n", BCON_INT64(id), "by", BCON_UTF8("mongoc"));
    bson_t reply;
    bool ok = mongoc_collection_insert_one(coll, doc, NULL, &reply, error);
    bson_destroy(&reply);
    bson_destroy(doc);
    return ok;
}

static int run(const struct options *opts)
{
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(opts->uri, &error);
    if (!uri) {
        fprintf(stderr, "mongoc_failover: bad URI %s: %s\n", opts->uri, error.message);
        return 1;
    }
    /* The driver's defaults, spelled out: the test relies on them. */
    mongoc_uri_set_option_as_bool(uri, MONGOC_URI_RETRYWRITES, true);
    mongoc_client_pool_t *pool = mongoc_client_pool_new_with_error(uri, &error);
    if (!pool) {
        fprintf(stderr, "mongoc_failover: cannot create a client pool: %s\n", error.message);
        mongoc_uri_destroy(uri);
        return 1;
    }
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(pool, "mongoc_failover");
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, DB_NAME, COLL_NAME);
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_collection_set_write_concern(coll, wc);

    struct acked_ids acked = {0};
    struct error_log log = {0};
    double start = wall_now();
    double deadline = start + opts->seconds;
    printf("{\"ev\":\"start\",\"t\":%.6f,\"pid\":%ld}\n", start, (long)getpid());
    fflush(stdout);

    for (int64_t id = 1; !stop_requested; id++) {
        double t0 = wall_now();
        if (t0 >= deadline || (opts->count && acked.count >= opts->count))
            break;
        bool ok = insert_one_id(coll, id, &error);
        double t1 = wall_now();
        if (ok) {
            acked_add(&acked, id);
            error_log_success(&log, t1);
            print_ack(id, t0, t1);
        } else {
            error_log_add(&log, &error, t1);
            print_error(id, t0, t1, &error);
        }
    }
    print_summary(&acked, &log, wall_now() - start);

    free(acked.ranges);
    free(log.outages);
    mongoc_write_concern_destroy(wc);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    return 0;
}

int main(int argc, char **argv)
{
    struct options opts = parse_options(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    mongoc_log_set_handler(log_to_stderr, NULL);
    mongoc_init();
    int rc = run(&opts);
    mongoc_cleanup();
    return rc;
}
