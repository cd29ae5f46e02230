/*
 * eng-overlay-bench.c: an engine-level micro-benchmark of the overlay and
 * of snapshot acquisition (built by meson, not run in CI). It uses only
 * the engine API that existed before the segmented overlay, so the same
 * file measures the old and the new engine.
 *
 * 1. Overlay add + trim at a steady number of pending versions: fills the
 *    overlay with N one-key commits, then repeatedly adds one more commit
 *    and applies the oldest pending one (whose trim removes one version),
 *    so N versions stay pending. Reports the average eng_overlay_add and
 *    the average eng_apply (RocksDB write plus trim) in microseconds.
 * 2. Snapshot acquire latency while large entries are applied: one
 *    thread applies entries of many documents back to back while another
 *    takes and releases local snapshots, timing each acquire.
 *
 * Usage: eng-overlay-bench [dir]   (default: a fresh directory in /tmp)
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/engine.h"

#define BENCH_ROUNDS 2000
#define BIG_ENTRY_OPS 20000
#define BIG_DOC_BYTES 200
#define BIG_ENTRIES 20

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void die(const char *what, const struct cairn_error *err)
{
    fprintf(stderr, "eng-overlay-bench: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

static struct eng *open_fresh(const char *base, const char *name, char *dir, size_t cap)
{
    struct cairn_error err = {0};
    struct eng *e = NULL;

    snprintf(dir, cap, "%s/%s", base, name);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (eng_open(dir, &e, &err) != 0) {
        die("open", &err);
    }
    return e;
}

/* The one-key commit number i: key "k<i % keys>", doc of 100 bytes. */
struct one
{
    uint8_t key[32];
    uint8_t doc[100];
    struct eng_op op;
    struct eng_commit c;
};

static void make_one(struct one *o, uint64_t i, size_t n_keys)
{
    int n = snprintf((char *)o->key, sizeof o->key, "k%08llu",
                     (unsigned long long)(i % (n_keys ? n_keys : 1)));
    memset(o->doc, 'x', sizeof o->doc);
    memcpy(o->doc, &i, sizeof i);
    o->op = (struct eng_op){ENG_OP_PUT, 1, NULL, o->key, (size_t)n + 1, o->doc, sizeof o->doc};
    o->c = (struct eng_commit){CAIRN_TS(1000 + i / 1000000, i % 1000000 + 1), &o->op, 1};
}

static void bench_add_trim(const char *base, size_t pending)
{
    char dir[512];
    struct eng *e = open_fresh(base, "addtrim", dir, sizeof dir);
    struct cairn_error err = {0};
    struct one o;
    double t_add = 0, t_apply = 0;
    uint64_t next_add = 1, next_apply = 1;

    /* Distinct keys, so pending versions are spread over many keys. */
    for (; next_add <= pending; next_add++) {
        make_one(&o, next_add, pending * 2);
        if (eng_overlay_add(e, &o.c) != 0) {
            die("overlay add", NULL);
        }
    }
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        double t0, t1, t2;
        make_one(&o, next_add, pending * 2);
        t0 = now_us();
        if (eng_overlay_add(e, &o.c) != 0) {
            die("overlay add", NULL);
        }
        t1 = now_us();
        next_add++;
        make_one(&o, next_apply, pending * 2);
        if (eng_apply(e, &o.c, 1, next_apply, &err) != 0) {
            die("apply", &err);
        }
        t2 = now_us();
        next_apply++;
        t_add += t1 - t0;
        t_apply += t2 - t1;
    }
    printf("pending %6zu versions: overlay_add %8.2f us, apply+trim %8.2f us (avg of %d)\n",
           eng_overlay_size(e), t_add / BENCH_ROUNDS, t_apply / BENCH_ROUNDS, BENCH_ROUNDS);
    fflush(stdout);
#ifdef ENG_SESSION_KEY_MAX /* engines that have eng_latest */
    {
        /* A writer's read of the current version: a pending key, an applied one. */
        struct one pend, appl;
        double t0 = now_us();
        cairn_ts ts;
        make_one(&pend, next_add - 1, pending * 2);
        make_one(&appl, 1, pending * 2);
        for (int r = 0; r < BENCH_ROUNDS; r++) {
            const struct one *q = r % 2 ? &pend : &appl;
            if (eng_latest(e, 1, q->key, q->op.key_len, NULL, &ts, &err) != 0) {
                die("latest", &err);
            }
        }
        printf("pending %6zu versions: eng_latest %8.2f us (avg of %d, half pending keys)\n",
               eng_overlay_size(e), (now_us() - t0) / BENCH_ROUNDS, BENCH_ROUNDS);
        fflush(stdout);
    }
#endif
    eng_close(e);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

struct big
{
    struct eng *e;
    atomic_int done;
    atomic_int started;
};

static void *big_applier(void *arg)
{
    struct big *b = arg;
    struct eng_op *ops = calloc(BIG_ENTRY_OPS, sizeof *ops);
    uint8_t(*keys)[16] = calloc(BIG_ENTRY_OPS, sizeof *keys);
    uint8_t *doc = malloc(BIG_DOC_BYTES);
    struct cairn_error err = {0};

    memset(doc, 'y', BIG_DOC_BYTES);
    for (size_t i = 0; i < BIG_ENTRY_OPS; i++) {
        int n = snprintf((char *)keys[i], sizeof keys[i], "b%08zu", i);
        ops[i] = (struct eng_op){ENG_OP_PUT, 2, NULL, keys[i], (size_t)n + 1, doc, BIG_DOC_BYTES};
    }
    atomic_store(&b->started, 1);
    for (int j = 0; j < BIG_ENTRIES; j++) {
        struct eng_commit c = {CAIRN_TS(5000 + j, 1), ops, BIG_ENTRY_OPS};
        if (eng_apply(b->e, &c, 1, 1000000 + (cairn_index)j, &err) != 0) {
            die("big apply", &err);
        }
    }
    atomic_store(&b->done, 1);
    free(ops);
    free(keys);
    free(doc);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Acquires and releases local snapshots until *done is set (or, when
 * done is NULL, for `secs` seconds) and prints latency figures. Returns the
 * time it ran, in seconds. */
static double acquire_loop(struct eng *e, atomic_int *done, double secs, const char *what)
{
    size_t n = 0, kept = 0, cap = 1 << 20, n_slow = 0;
    double *lat = malloc(cap * sizeof *lat);
    double sum = 0, blocked = 0, max = 0, start = now_us();

    while (done != NULL ? !atomic_load(done) : now_us() - start < secs * 1e6) {
        struct eng_snap *s;
        struct cairn_error err = {0};
        double t0 = now_us(), d;
        if (eng_snap_acquire(e, true, CAIRN_TS_MAX, &s, &err) != 0) {
            die("acquire", &err);
        }
        d = now_us() - t0;
        eng_snap_release(s);
        /* Percentiles over a uniform sample of every 16th acquire. */
        if (n++ % 16 == 0 && kept < cap) {
            lat[kept++] = d;
        }
        sum += d;
        max = d > max ? d : max;
        if (d > 100.0) {
            n_slow++;
            blocked += d;
        }
    }
    qsort(lat, kept, sizeof *lat, cmp_double);
    printf(
        "snapshot acquire %s: n %zu, avg %.2f us, p50 %.2f us, p99.9 %.2f us, max %.2f us; "
        "%zu over 100 us, %.1f ms in them\n",
        what, n, n ? sum / (double)n : 0.0, kept ? lat[kept / 2] : 0.0,
        kept ? lat[kept * 999 / 1000] : 0.0, max, n_slow, blocked / 1000.0);
    fflush(stdout);
    free(lat);
    return (now_us() - start) / 1e6;
}

static void bench_acquire_during_apply(const char *base)
{
    char dir[512], what[128];
    struct big b = {0};
    pthread_t t;
    double secs;

    b.e = open_fresh(base, "acquire", dir, sizeof dir);
    pthread_create(&t, NULL, big_applier, &b);
    while (!atomic_load(&b.started)) {
    }
    snprintf(what, sizeof what, "during %d applies of %d docs", BIG_ENTRIES, BIG_ENTRY_OPS);
    secs = acquire_loop(b.e, &b.done, 0, what);
    pthread_join(t, NULL);
    /* The same loop without applies: the machine's own noise floor. */
    snprintf(what, sizeof what, "idle for the same %.1f s", secs);
    acquire_loop(b.e, NULL, secs, what);
    eng_close(b.e);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/eng-overlay-bench-XXXXXX";
    const char *base = argc > 1 ? argv[1] : mkdtemp(tmpl);

    if (base == NULL) {
        perror("mkdtemp");
        return 1;
    }
    bench_add_trim(base, 5000);
    bench_add_trim(base, 50000);
    bench_acquire_during_apply(base);
    if (argc <= 1) {
        nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
    return 0;
}
