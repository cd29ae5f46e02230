/*
 * disk.c: the free-space floor (docs/decisions.md §36). It owns the
 * member's view of the free space of its data directory (the smaller of
 * <dbpath>/db, RocksDB's, and <dbpath>/raft, raft's log) and the three
 * rules built on it:
 *
 * - writes: below the floor (--diskFreeFloorMB) a new commit is refused
 *   with 14031 OutOfDiskSpace before it gets a timestamp (txn's commit
 *   section asks repl_disk_check), reads go on, and writes resume by
 *   themselves once space is freed;
 * - apply: applying an entry waits (the raft thread blocks, checking every
 *   APPLY_POLL_MS) while less than half the floor is free, so that RocksDB
 *   never meets ENOSPC: Debian's RocksDB 7.8 asserts on the next write to
 *   a WAL that failed. The entry is in the raft log, nothing is lost, and
 *   nothing is acknowledged meanwhile; shutdown ends the wait;
 * - start-up: a member with less than half the floor (at least
 *   START_MIN_BYTES) plus the raft log's preallocated segments free does not
 *   open RocksDB but exits with a message (repl_disk_startup_check); so a
 *   member that starts can replay its log without waiting.
 *
 * The measure is cached: statvfs runs when the last one is older than
 * REFRESH_NS or more than REFRESH_BYTES were accepted since; between two,
 * the estimate subtracts twice the bytes accepted (raft log + RocksDB WAL).
 * Any thread; one measure at a time (mu, try-locked: others use the cache).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"

#define MIB ((uint64_t)1 << 20)
#define REFRESH_NS (100ull * 1000000ull)
#define REFRESH_BYTES (4 * MIB)
#define APPLY_POLL_MS 200
#define APPLY_LOG_EVERY_NS (30ull * 1000000000ull)
/* Opening RocksDB writes a MANIFEST, an OPTIONS file and a WAL. */
#define START_MIN_BYTES (16 * MIB)
/* raft_uv preallocates two segments (repl.c SEGMENT_SIZE) when it starts. */
#define START_RAFT_BYTES (64 * MIB)

static int free_bytes(const char *path, uint64_t *out)
{
    struct statvfs st;

    if (statvfs(path, &st) != 0) {
        return errno;
    }
    *out = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
    return 0;
}

/* The free space of the filesystems holding db/ and raft/ (the smaller). */
static int measure(const char *dbpath, uint64_t *out)
{
    char path[PATH_MAX + 8];
    uint64_t a = UINT64_MAX, b = UINT64_MAX;
    int rv;

    snprintf(path, sizeof path, "%s/db", dbpath);
    rv = free_bytes(path, &a);
    if (rv == ENOENT) {
        rv = free_bytes(dbpath, &a);
    }
    if (rv != 0) {
        return rv;
    }
    snprintf(path, sizeof path, "%s/raft", dbpath);
    if (free_bytes(path, &b) != 0) {
        b = a;
    }
    *out = a < b ? a : b;
    return 0;
}

void repl_disk_init(struct repl *r, long long floor_mb)
{
    struct repl_disk *d = &r->disk;

    pthread_mutex_init(&d->mu, NULL);
    d->floor = floor_mb < 0 ? (uint64_t)REPL_DISK_FREE_FLOOR_MB * MIB : (uint64_t)floor_mb * MIB;
    atomic_store(&d->free, UINT64_MAX);
    atomic_store(&d->at_ns, 0);
    atomic_store(&d->since, 0);
    atomic_store(&d->low, false);
}

void repl_disk_destroy(struct repl *r)
{
    pthread_mutex_destroy(&r->disk.mu);
}

/* Measures again if the cache is stale (or `force`); returns the
 * estimate. */
static uint64_t estimate(struct repl *r, bool force)
{
    struct repl_disk *d = &r->disk;
    uint64_t now = cairn_mono_ns(), at = atomic_load(&d->at_ns), since = atomic_load(&d->since);
    uint64_t free_now, est;

    if ((force || at == 0 || now - at >= REFRESH_NS || since >= REFRESH_BYTES) &&
        pthread_mutex_trylock(&d->mu) == 0) {
        if (measure(r->dbpath, &free_now) == 0) {
            atomic_store(&d->free, free_now);
            atomic_store(&d->since, 0);
            since = 0;
        }
        atomic_store(&d->at_ns, now);
        pthread_mutex_unlock(&d->mu);
    }
    est = atomic_load(&d->free);
    return est > 2 * since ? est - 2 * since : 0;
}

/* Notes a crossing of the floor in the log, once per crossing. */
static void note_low(struct repl *r, bool low, uint64_t est)
{
    struct repl_disk *d = &r->disk;

    if (atomic_exchange(&d->low, low) == low) {
        return;
    }
    if (low) {
        cairn_log(CAIRN_LOG_WARN, "repl",
                  "disk space low: %llu MB free in %s, below the floor of %llu MB "
                  "(--diskFreeFloorMB): refusing writes with OutOfDiskSpace until space is freed",
                  (unsigned long long)(est / MIB), r->dbpath, (unsigned long long)(d->floor / MIB));
    } else {
        cairn_log(CAIRN_LOG_INFO, "repl",
                  "disk space back: %llu MB free in %s (floor %llu MB): accepting writes again",
                  (unsigned long long)(est / MIB), r->dbpath, (unsigned long long)(d->floor / MIB));
    }
}

int repl_disk_check(struct repl *r, size_t len, struct cairn_error *err)
{
    struct repl_disk *d = &r->disk;
    uint64_t est;
    bool low;

    if (atomic_load(&r->fds_low)) {
        return cairn_error_mongo(err, CAIRN_EIO, MONGO_TooManyFilesOpen,
                                 "Too many open files: the server has no file descriptors left "
                                 "for its data files (RLIMIT_NOFILE); writes are refused until "
                                 "connections or files are closed, reads go on");
    }
    if (d->floor == 0) {
        return 0;
    }
    est = estimate(r, false);
    low = est < d->floor + len;
    if (low && !atomic_load(&d->low)) {
        /* Measure before refusing: the estimate may only be stale. */
        est = estimate(r, true);
        low = est < d->floor + len;
    }
    note_low(r, low, est);
    if (!low) {
        return 0;
    }
    return cairn_error_mongo(err, CAIRN_ENOSPC, MONGO_OutOfDiskSpace,
                             "Out of disk space: %llu MB free in the data directory %s, below "
                             "the floor of %llu MB (--diskFreeFloorMB); writes are refused until "
                             "space is freed, reads go on",
                             (unsigned long long)(est / MIB), r->dbpath,
                             (unsigned long long)(d->floor / MIB));
}

void repl_disk_note_accepted(struct repl *r, size_t len)
{
    if (r->disk.floor != 0) {
        atomic_fetch_add(&r->disk.since, len);
    }
}

void repl_disk_poll(struct repl *r)
{
    struct repl_disk *d = &r->disk;
    uint64_t est;

    if (d->floor == 0 || !atomic_load(&d->low)) {
        return;
    }
    /* Tells the log (and the next write) when space came back. */
    est = estimate(r, false);
    if (est >= d->floor) {
        note_low(r, false, est);
    }
}

bool repl_disk_starved(struct repl *r, uint64_t need)
{
    struct repl_disk *d = &r->disk;

    if (d->floor == 0) {
        uint64_t free_now;
        return measure(r->dbpath, &free_now) == 0 && free_now < need;
    }
    return estimate(r, false) < d->floor + need;
}

int repl_disk_wait_apply(struct repl *r, raft_index index, size_t len)
{
    struct repl_disk *d = &r->disk;
    uint64_t reserve = d->floor / 2, est, logged_ns = 0, since_ns = 0;

    if (d->floor == 0) {
        return 0;
    }
    est = estimate(r, false);
    if (est >= reserve + 2 * (uint64_t)len) {
        return 0;
    }
    for (;;) {
        uint64_t now = cairn_mono_ns();
        struct timespec ts = {0, APPLY_POLL_MS * 1000000L};

        est = estimate(r, true);
        note_low(r, est < d->floor, est);
        if (est >= reserve + 2 * (uint64_t)len) {
            if (since_ns != 0) {
                cairn_log(CAIRN_LOG_INFO, "repl",
                          "applying raft entry %llu again: %llu MB free after %llu s",
                          (unsigned long long)index, (unsigned long long)(est / MIB),
                          (unsigned long long)((now - since_ns) / 1000000000ull));
            }
            return 0;
        }
        if (atomic_load(&r->applied_stopping)) {
            cairn_log(CAIRN_LOG_WARN, "repl",
                      "raft entry %llu not applied at shutdown (no disk space); it is in the "
                      "raft log and will be applied at the next start",
                      (unsigned long long)index);
            return CAIRN_ESHUTDOWN;
        }
        if (since_ns == 0) {
            since_ns = now;
        }
        if (logged_ns == 0 || now - logged_ns >= APPLY_LOG_EVERY_NS) {
            logged_ns = now;
            cairn_log(CAIRN_LOG_WARN, "repl",
                      "applying raft entry %llu waits for disk space: %llu MB free in %s, "
                      "keeping %llu MB for the storage engine; nothing is acknowledged meanwhile",
                      (unsigned long long)index, (unsigned long long)(est / MIB), r->dbpath,
                      (unsigned long long)(reserve / MIB));
        }
        nanosleep(&ts, NULL);
    }
}

int repl_disk_startup_check(const char *dbpath, long long floor_mb, struct cairn_error *err)
{
    uint64_t floor =
        floor_mb < 0 ? (uint64_t)REPL_DISK_FREE_FLOOR_MB * MIB : (uint64_t)floor_mb * MIB;
    uint64_t need = (floor / 2 > START_MIN_BYTES ? floor / 2 : START_MIN_BYTES) + START_RAFT_BYTES;
    uint64_t free_now;
    int rv = measure(dbpath, &free_now);

    if (rv != 0) {
        return cairn_error_setf(err, CAIRN_EIO, "cannot measure the free space of %s: %s", dbpath,
                                strerror(rv));
    }
    if (free_now >= need) {
        return 0;
    }
    return cairn_error_mongo(err, CAIRN_ENOSPC, MONGO_OutOfDiskSpace,
                             "not enough free disk space to start: %llu MB free in %s, %llu MB "
                             "needed (half of --diskFreeFloorMB %llu, at least %llu, and %llu "
                             "for the raft log's segments); free some space and start again",
                             (unsigned long long)(free_now / MIB), dbpath,
                             (unsigned long long)(need / MIB), (unsigned long long)(floor / MIB),
                             (unsigned long long)(START_MIN_BYTES / MIB),
                             (unsigned long long)(START_RAFT_BYTES / MIB));
}
