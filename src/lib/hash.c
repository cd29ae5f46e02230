/*
 * hash.c: the FNV-1a byte hash and the slot-table helpers declared in
 * hash.h.
 */
#include "hash.h"

#include <stdlib.h>
#include <string.h>

#include "cairn/cairn.h"

uint64_t cairn_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ c[i]) * 1099511628211ULL;
    }
    return h;
}

void cairn_slots_place(size_t *slots, size_t nslots, uint64_t h, size_t k)
{
    size_t mask = nslots - 1;
    size_t i = (size_t)h & mask;
    while (slots[i] != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = k + 1;
}

void cairn_slots_rebuild(size_t *slots, size_t nslots, const uint64_t *h, size_t n)
{
    memset(slots, 0, nslots * sizeof *slots);
    for (size_t k = 0; k < n; k++) {
        cairn_slots_place(slots, nslots, h[k], k);
    }
}

int cairn_slots_reserve(size_t **slots, size_t *nslots, const uint64_t *h, size_t n, size_t first)
{
    if ((n + 1) * 2 <= *nslots) {
        return 0;
    }
    size_t ns = *nslots ? *nslots * 2 : first;
    size_t *sl = calloc(ns, sizeof *sl);
    if (sl == NULL) {
        return CAIRN_ENOMEM;
    }
    cairn_slots_rebuild(sl, ns, h, n);
    free(*slots);
    *slots = sl;
    *nslots = ns;
    return 0;
}
