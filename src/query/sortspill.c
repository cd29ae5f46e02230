/*
 * sortspill.c: sorted runs of documents on disk, for blocking sorts and
 * $group stages that may spill (allowDiskUse: true; sortbuf.c and
 * pipeline_groupspill.c merge the runs). The runs of one sort share one
 * anonymous temporary file in the spill directory (a qry_spill: created
 * with mkstemp and unlinked at once, so nothing is left behind even after
 * a crash), so a spilled sort holds one descriptor however many runs it
 * wrote (docs/decisions.md §40): a run is a range of that file, the
 * documents' BSON one after another, appended once and read back once in
 * order with pread through a small buffer of its own. A run is written
 * only when the spill directory's filesystem keeps the free-space floor
 * (qry_set_spill_floor) after it, and at most a sixteenth of
 * RLIMIT_NOFILE spill files are open at once (spilled cursors live until
 * closed or reaped: unbounded, they would take the descriptors RocksDB
 * and the raft log need, and every write would be refused with 264).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "query/query_int.h"

/* Larger than any document a sort is given (BSON documents stop at 16 MB). */
#define MAX_RUN_DOC ((uint32_t)64 << 20)

/* Bytes a run reads from its file at a time (one buffer per run: a merge
 * of the most runs, 512, holds 8 MB of them). */
#define RUN_BUF ((size_t)16 << 10)
/* Bytes appended to the file at a time while writing a run. */
#define WRITE_BUF ((size_t)256 << 10)

struct qry_spill
{
    int fd;
    uint64_t end; /* bytes written */
};

struct qry_run
{
    struct qry_spill *sp;
    uint64_t off, end; /* the run's next unread byte and its end */
    uint64_t left;     /* documents still to read */
    uint8_t *buf;      /* RUN_BUF bytes read ahead: buf[pos..len) */
    size_t pos, len;
};

/* Where runs go: set once at start-up, before any sort runs. */
static char spill_dir[PATH_MAX];

/* Spill files open now, and the most allowed (0: no limit). */
static atomic_size_t open_spills;
static size_t max_spills;

#define MIN_SPILLS 8

void qry_set_spill_dir(const char *dir)
{
    struct rlimit rl;
    snprintf(spill_dir, sizeof spill_dir, "%s", dir != NULL ? dir : "");
    max_spills = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        max_spills = rl.rlim_cur / 16 > MIN_SPILLS ? (size_t)(rl.rlim_cur / 16) : MIN_SPILLS;
    }
}

/* Free space to leave in the spill directory's filesystem. */
static uint64_t spill_floor;

void qry_set_spill_floor(uint64_t bytes)
{
    spill_floor = bytes;
}

bool qry_spill_enabled(void)
{
    return spill_dir[0] != '\0';
}

static int io_error(struct cairn_error *err, const char *what, int e)
{
    if (e == ENOSPC || e == EDQUOT) {
        return cairn_error_mongo(err, CAIRN_EIO, MONGO_OutOfDiskSpace,
                                 "Sort could not spill to disk (%s): %s", what, strerror(e));
    }
    return cairn_error_mongo(err, CAIRN_EIO, MONGO_InternalError,
                             "Sort could not spill to disk (%s): %s", what, strerror(e));
}

/* Writes all of buf[0..n) at `off`. Returns 0 or an errno. */
static int pwrite_all(int fd, const uint8_t *buf, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, buf, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        buf += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Reads up to n bytes at `off` (fewer only at the file's end). Returns the
 * count, or -1 with errno set. */
static ssize_t pread_full(int fd, uint8_t *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* The spill file, created on first use. */
static int spill_open(struct qry_spill **spp, struct cairn_error *err)
{
    char path[PATH_MAX];
    struct qry_spill *sp;
    if (*spp != NULL) {
        return 0;
    }
    if (snprintf(path, sizeof path, "%s/sort-XXXXXX", spill_dir) >= (int)sizeof path) {
        return io_error(err, "path", ENAMETOOLONG);
    }
    if (atomic_fetch_add(&open_spills, 1) >= max_spills && max_spills != 0) {
        atomic_fetch_sub(&open_spills, 1);
        return cairn_error_mongo(err, CAIRN_EIO, MONGO_TooManyFilesOpen,
                                 "Sort could not spill to disk: %zu sorts hold spill files "
                                 "already, the most this server keeps open (RLIMIT_NOFILE/16); "
                                 "exhaust or kill cursors of spilled sorts",
                                 max_spills);
    }
    sp = calloc(1, sizeof *sp);
    if (sp == NULL) {
        atomic_fetch_sub(&open_spills, 1);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    sp->fd = mkostemp(path, O_CLOEXEC);
    if (sp->fd < 0) {
        int e = errno;
        free(sp);
        atomic_fetch_sub(&open_spills, 1);
        return io_error(err, "create", e);
    }
    unlink(path);
    *spp = sp;
    return 0;
}

/* Free space check: the run must leave the floor free. */
static int floor_check(size_t n, bson_t *const *docs, struct cairn_error *err)
{
    struct statvfs st;
    uint64_t need = spill_floor, avail;
    if (spill_floor == 0) {
        return 0;
    }
    /* Checked per run, before writing it; concurrent spills may each pass,
     * so the floor is a margin, as for writes. */
    for (size_t i = 0; i < n; i++) {
        need += docs[i]->len;
    }
    if (statvfs(spill_dir, &st) != 0) {
        return io_error(err, "statvfs", errno);
    }
    avail = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
    if (avail >= need) {
        return 0;
    }
    return cairn_error_mongo(err, CAIRN_ENOSPC, MONGO_OutOfDiskSpace,
                             "Sort could not spill to disk: %llu MB free in %s, and spilling %llu "
                             "MB more would go below the free-space floor of %llu MB "
                             "(--diskFreeFloorMB)",
                             (unsigned long long)(avail >> 20), spill_dir,
                             (unsigned long long)((need - spill_floor) >> 20),
                             (unsigned long long)(spill_floor >> 20));
}

int qry_run_write(struct qry_spill **spp,
                  bson_t *const *docs,
                  size_t n,
                  struct qry_run **out,
                  struct cairn_error *err)
{
    struct qry_run *r = NULL;
    uint8_t *wb = NULL;
    size_t wn = 0;
    uint64_t off;
    int rv, e = 0;
    *out = NULL;
    if (!qry_spill_enabled()) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_InternalError,
                                 "no directory to spill sorts to");
    }
    rv = floor_check(n, docs, err);
    if (rv == 0) {
        rv = spill_open(spp, err);
    }
    if (rv != 0) {
        return rv;
    }
    r = calloc(1, sizeof *r);
    wb = malloc(WRITE_BUF);
    if (r == NULL || wb == NULL) {
        free(r);
        free(wb);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    r->sp = *spp;
    r->off = off = r->sp->end;
    for (size_t i = 0; i < n && e == 0; i++) {
        const uint8_t *d = bson_get_data(docs[i]);
        size_t len = docs[i]->len;
        if (wn > 0 && wn + len > WRITE_BUF) {
            e = pwrite_all(r->sp->fd, wb, wn, off);
            off += wn;
            wn = 0;
        }
        if (e == 0 && len > WRITE_BUF) {
            e = pwrite_all(r->sp->fd, d, len, off);
            off += len;
        } else if (e == 0) {
            memcpy(wb + wn, d, len);
            wn += len;
        }
    }
    if (e == 0 && wn > 0) {
        e = pwrite_all(r->sp->fd, wb, wn, off);
        off += wn;
    }
    free(wb);
    if (e != 0) {
        /* The file's tail past end is garbage no run covers; the next
         * run overwrites it. */
        free(r);
        return io_error(err, "write", e);
    }
    r->sp->end = r->end = off;
    r->left = n;
    *out = r;
    return 0;
}

/* Makes `need` bytes readable at buf[pos..): 0, or -1 with err set. */
static int run_fill(struct qry_run *r, size_t need, struct cairn_error *err)
{
    if (r->len - r->pos >= need) {
        return 0;
    }
    if (r->buf == NULL && (r->buf = malloc(RUN_BUF)) == NULL) {
        cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        return -1;
    }
    memmove(r->buf, r->buf + r->pos, r->len - r->pos);
    r->len -= r->pos;
    r->pos = 0;
    size_t want = RUN_BUF - r->len;
    if (want > r->end - r->off) {
        want = (size_t)(r->end - r->off);
    }
    ssize_t got = want > 0 ? pread_full(r->sp->fd, r->buf + r->len, want, r->off) : 0;
    if (got < 0) {
        io_error(err, "read", errno);
        return -1;
    }
    r->off += (uint64_t)got;
    r->len += (size_t)got;
    if (r->len < need) {
        io_error(err, "read", EIO);
        return -1;
    }
    return 0;
}

int qry_run_next(struct qry_run *r, bson_t **doc, struct cairn_error *err)
{
    *doc = NULL;
    if (r->left == 0) {
        return 0;
    }
    if (run_fill(r, 4, err) != 0) {
        return -1;
    }
    const uint8_t *h = r->buf + r->pos;
    uint32_t len =
        (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (len < 5 || len > MAX_RUN_DOC) {
        io_error(err, "read", EIO);
        return -1;
    }
    if (len <= RUN_BUF) {
        if (run_fill(r, len, err) != 0) {
            return -1;
        }
        *doc = bson_new_from_data(r->buf + r->pos, len);
        r->pos += len;
    } else {
        /* Larger than the buffer: the buffered head, then the rest read
         * straight from the file. */
        uint8_t *big = malloc(len);
        size_t have = r->len - r->pos;
        if (big == NULL) {
            cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            return -1;
        }
        memcpy(big, r->buf + r->pos, have);
        r->pos = r->len = 0;
        ssize_t got = len - have <= r->end - r->off
                          ? pread_full(r->sp->fd, big + have, len - have, r->off)
                          : -2;
        if (got != (ssize_t)(len - have)) {
            free(big);
            io_error(err, "read", got == -1 ? errno : EIO);
            return -1;
        }
        r->off += len - have;
        *doc = bson_new_from_data(big, len);
        free(big);
    }
    if (*doc == NULL) {
        io_error(err, "read", EIO);
        return -1;
    }
    r->left--;
    if (r->left == 0) {
        free(r->buf); /* read out: its buffer is no longer needed */
        r->buf = NULL;
        r->pos = r->len = 0;
    }
    return 1;
}

void qry_run_free(struct qry_run *r)
{
    if (r == NULL) {
        return;
    }
    free(r->buf);
    free(r);
}

void qry_spill_free(struct qry_spill *sp)
{
    if (sp == NULL) {
        return;
    }
    close(sp->fd);
    free(sp);
    atomic_fetch_sub(&open_spills, 1);
}
