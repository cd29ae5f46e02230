/*
 * nameidx.h: a hash index from field names to positions, for the
 * projection trees (find's projection.c, the pipeline's
 * pipeline_project.c) whose children were looked up by linear search: a
 * projection of n fields applied to a document of m fields cost O(n * m).
 * Names are borrowed (the caller keeps them alive and unchanged); positions
 * are the order of qry_nameidx_push calls. Not thread-safe while modified;
 * a built index may be read by many threads.
 */
#ifndef CAIRN_QUERY_NAMEIDX_H
#define CAIRN_QUERY_NAMEIDX_H

#include <stddef.h>
#include <stdint.h>

struct qry_nameidx
{
    const char **names; /* borrowed, NUL-terminated */
    size_t *lens;
    uint64_t *h;
    size_t n, cap;
    size_t *slots; /* index + 1, 0 = empty; a power of two, load <= 1/2 */
    size_t nslots;
};

/* An empty index (all zero is one too). Cannot fail. */
void qry_nameidx_init(struct qry_nameidx *ix);

/* Appends `name` at position ix->n (names need not be distinct; find
 * returns the first). Returns 0 or CAIRN_ENOMEM (index unchanged). */
int qry_nameidx_push(struct qry_nameidx *ix, const char *name);

/* The first position of the name of `len` bytes at `name` (not
 * necessarily NUL-terminated), or -1. */
long qry_nameidx_find(const struct qry_nameidx *ix, const char *name, size_t len);

/* Frees the index and leaves it empty. NULL is a no-op. */
void qry_nameidx_fini(struct qry_nameidx *ix);

#endif /* CAIRN_QUERY_NAMEIDX_H */
