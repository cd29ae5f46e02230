/*
 * valueset.h: a set of BSON values under MongoDB's equality (qry_cmp == 0:
 * 1, 1.0, NumberLong(1) and NumberDecimal("1") are one value; strings are
 * compared byte-wise; documents and arrays element by element), kept as a
 * hash table over a canonical hash (qry_value_hash). Lookups and inserts
 * cost O(1) expected, so deduplicating n values is O(n), not O(n^2).
 *
 * Used by distinct, the $addToSet accumulator and update operator, $pullAll
 * and the matcher's $in/$nin. Not thread-safe: one owner at a time (a
 * filled set may be read by many threads when nobody modifies it).
 */
#ifndef CAIRN_QUERY_VALUESET_H
#define CAIRN_QUERY_VALUESET_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A hash of `v` consistent with qry_cmp equality: values that compare
 * equal hash equal (numbers hash by their double value, -0 as 0, every NaN
 * alike; string and symbol alike; documents by field names and values). */
uint64_t qry_value_hash(const bson_value_t *v);

/* The set. Values are kept in insertion order in v[0..n) for the owner to
 * read (not to modify); `owns` says whether the set holds copies (destroyed
 * by qry_valueset_fini) or views of values the caller keeps alive. */
struct qry_valueset
{
    bson_value_t *v;
    uint64_t *h; /* h[i] = qry_value_hash(&v[i]) */
    size_t n, cap;
    size_t *slots; /* open addressing: index + 1, 0 = empty */
    size_t nslots; /* a power of two, or 0 */
    bool owns;
};

/* Initialises an empty set; `owns` as above. Cannot fail. */
void qry_valueset_init(struct qry_valueset *s, bool owns);

/* Adds `v` unless an equal value is there; *added (may be NULL) tells
 * which. An owning set stores a copy (bson_value_copy), a viewing one `v`
 * itself. Returns 0 or CAIRN_ENOMEM (the set is unchanged then). */
int qry_valueset_add(struct qry_valueset *s, const bson_value_t *v, bool *added);

/* For an owning set: adds `v` itself (no copy), taking ownership of it
 * when *added is true; when an equal value was there the caller still owns
 * `v`. Returns 0 or CAIRN_ENOMEM (the caller still owns `v`). */
int qry_valueset_add_take(struct qry_valueset *s, bson_value_t *v, bool *added);

/* True when a value equal to `v` is in the set. */
bool qry_valueset_has(const struct qry_valueset *s, const bson_value_t *v);

/* Sorts v[0..n) in qry_cmp order (the index is rebuilt in place: the set
 * stays usable). */
void qry_valueset_sort(struct qry_valueset *s);

/* Frees what the set holds (the copies too when it owns them) and leaves it
 * empty and reusable. NULL is a no-op. */
void qry_valueset_fini(struct qry_valueset *s);

#endif /* CAIRN_QUERY_VALUESET_H */
