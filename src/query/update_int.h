/*
 * update_int.h: small private helpers of the query layer owned by update.c
 * (type names and mongod-style value rendering for error messages, and a
 * stable sort). Not for use outside src/query. All functions are reentrant
 * and allocate nothing the caller must free.
 */
#ifndef CAIRN_QUERY_UPDATE_INT_H
#define CAIRN_QUERY_UPDATE_INT_H

#include <bson/bson.h>
#include <stddef.h>

/* Renders `v` the way mongod prints values in error messages (1, 1.5,
 * "x", { a: 1 }, [ 1, 2 ], ObjectId('...'), ...) into buf (NUL-terminated,
 * truncated with "..." when it does not fit; cap >= 4). */
void qry_fmt_value(const bson_value_t *v, char *buf, size_t cap);

/* Comparator for qry_stable_sort: <0, 0, >0. */
typedef int (*qry_cmp_fn)(const void *a, const void *b, void *ctx);

/* Sorts `n` elements of `size` bytes at `base` stably (equal elements keep
 * their order) with `cmp`. Returns 0 or CAIRN_ENOMEM (base unchanged). */
int qry_stable_sort(void *base, size_t n, size_t size, qry_cmp_fn cmp, void *ctx);

#endif /* CAIRN_QUERY_UPDATE_INT_H */
