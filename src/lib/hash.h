/*
 * hash.h: the byte hash (64-bit FNV-1a) and the slot-table helpers shared
 * by the in-memory hash sets (field-name index, value set, staged writes,
 * lock and session tables, index scan dedup). Domain-free: no global state;
 * every function is safe on any thread on data the caller owns.
 *
 * The hash is the FNV-1a step (xor a byte, multiply by the FNV prime).
 *
 * A slot table is an array of size_t, a power of two long, where 0 is an
 * empty slot and k + 1 names entry k of the caller's arrays; the caller
 * keeps each entry's hash and probes linearly from hash & (nslots - 1).
 */
#ifndef CAIRN_LIB_HASH_H
#define CAIRN_LIB_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The `h` every Cairn table starts its hash with. Not the standard FNV
 * offset basis (14695981039346656037, one digit longer): the copies this
 * replaced all used this value, kept so every hash is unchanged. */
#define CAIRN_HASH_SEED 1469598103934665603ULL

/* Continues the FNV-1a hash `h` over `n` bytes at `p` (may be NULL when n
 * is 0) and returns it. Cannot fail. */
uint64_t cairn_hash_bytes(uint64_t h, const void *p, size_t n);

/* Folds the high bits of `h` into the low ones a slot index takes. */
static inline uint64_t cairn_hash_fold(uint64_t h)
{
    return h ^ (h >> 29);
}

/* Makes room in the slot table (*slots, *nslots) for entry n (entries
 * 0..n-1 are in it, hashes h[0..n-1]) at a load of at most one half: when
 * (n + 1) * 2 > *nslots, replaces the table by one twice as large (`first`
 * slots when empty; a power of two) holding the same entries. Returns 0
 * or CAIRN_ENOMEM (table unchanged). */
int cairn_slots_reserve(size_t **slots, size_t *nslots, const uint64_t *h, size_t n, size_t first);

/* Empties the table of `nslots` slots and places entries 0..n-1 with
 * hashes h[0..n-1] (n < nslots). */
void cairn_slots_rebuild(size_t *slots, size_t nslots, const uint64_t *h, size_t n);

/* Puts entry k of hash `h` in the first empty slot from its home slot.
 * The table has an empty slot. */
void cairn_slots_place(size_t *slots, size_t nslots, uint64_t h, size_t k);

#endif /* CAIRN_LIB_HASH_H */
