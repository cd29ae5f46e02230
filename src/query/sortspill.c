/*
 * sortspill.c: sorted runs of documents on disk, for blocking sorts that
 * may spill (allowDiskUse: true; sortbuf.c merges the runs). A run is an
 * anonymous temporary file in the spill directory (created with mkstemp
 * and unlinked at once, so nothing is left behind even after a crash):
 * the documents' BSON one after another, written once and read back once
 * in order through stdio buffers. A run is written only when the spill
 * directory's filesystem keeps the free-space floor (qry_set_spill_floor)
 * after it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "query/query_int.h"

/* Larger than any document a sort is given (BSON documents stop at 16 MB). */
#define MAX_RUN_DOC ((uint32_t)64 << 20)

struct qry_run
{
    FILE *f;
    uint64_t left; /* documents still to read */
};

/* Where runs go: set once at start-up, before any sort runs. */
static char spill_dir[PATH_MAX];

void qry_set_spill_dir(const char *dir)
{
    snprintf(spill_dir, sizeof spill_dir, "%s", dir != NULL ? dir : "");
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

int qry_run_write(bson_t *const *docs, size_t n, struct qry_run **out, struct cairn_error *err)
{
    char path[PATH_MAX];
    struct qry_run *r = NULL;
    int fd = -1;
    *out = NULL;
    if (!qry_spill_enabled()) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_InternalError,
                                 "no directory to spill sorts to");
    }
    if (snprintf(path, sizeof path, "%s/sort-XXXXXX", spill_dir) >= (int)sizeof path) {
        return io_error(err, "path", ENAMETOOLONG);
    }
    if (spill_floor > 0) {
        /* Checked per run, before writing it; concurrent spills may each
         * pass, so the floor is a margin, as for writes. */
        struct statvfs st;
        uint64_t need = spill_floor, avail;
        for (size_t i = 0; i < n; i++) {
            need += docs[i]->len;
        }
        if (statvfs(spill_dir, &st) != 0) {
            return io_error(err, "statvfs", errno);
        }
        avail = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
        if (avail < need) {
            return cairn_error_mongo(
                err, CAIRN_ENOSPC, MONGO_OutOfDiskSpace,
                "Sort could not spill to disk: %llu MB free in %s, and spilling %llu MB more "
                "would go below the free-space floor of %llu MB (--diskFreeFloorMB)",
                (unsigned long long)(avail >> 20), spill_dir,
                (unsigned long long)((need - spill_floor) >> 20),
                (unsigned long long)(spill_floor >> 20));
        }
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    fd = mkstemp(path);
    if (fd < 0) {
        int e = errno;
        free(r);
        return io_error(err, "create", e);
    }
    unlink(path);
    r->f = fdopen(fd, "w+b");
    if (r->f == NULL) {
        int e = errno;
        close(fd);
        free(r);
        return io_error(err, "open", e);
    }
    for (size_t i = 0; i < n; i++) {
        if (fwrite(bson_get_data(docs[i]), 1, docs[i]->len, r->f) != docs[i]->len) {
            int e = errno;
            qry_run_free(r);
            return io_error(err, "write", e);
        }
    }
    if (fflush(r->f) != 0 || fseek(r->f, 0, SEEK_SET) != 0) {
        int e = errno;
        qry_run_free(r);
        return io_error(err, "write", e);
    }
    r->left = n;
    *out = r;
    return 0;
}

int qry_run_next(struct qry_run *r, bson_t **doc, struct cairn_error *err)
{
    uint8_t hdr[4];
    *doc = NULL;
    if (r->left == 0) {
        return 0;
    }
    if (fread(hdr, 1, 4, r->f) != 4) {
        io_error(err, "read", errno ? errno : EIO);
        return -1;
    }
    uint32_t len =
        (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (len < 5 || len > MAX_RUN_DOC) {
        io_error(err, "read", EIO);
        return -1;
    }
    uint8_t *buf = malloc(len);
    if (buf == NULL) {
        cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        return -1;
    }
    memcpy(buf, hdr, 4);
    if (fread(buf + 4, 1, len - 4, r->f) != len - 4) {
        free(buf);
        io_error(err, "read", errno ? errno : EIO);
        return -1;
    }
    *doc = bson_new_from_data(buf, len);
    free(buf);
    if (*doc == NULL) {
        io_error(err, "read", EIO);
        return -1;
    }
    r->left--;
    return 1;
}

void qry_run_free(struct qry_run *r)
{
    if (r == NULL) {
        return;
    }
    if (r->f != NULL) {
        fclose(r->f);
    }
    free(r);
}
