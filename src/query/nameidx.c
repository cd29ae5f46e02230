/*
 * nameidx.c: the field-name hash index of nameidx.h (FNV-1a, open
 * addressing with linear probing over positions).
 */
#include <stdlib.h>
#include <string.h>

#include "cairn/cairn.h"
#include "lib/hash.h"
#include "query/nameidx.h"
#include "query/query.h"

static uint64_t name_hash(const char *s, size_t len)
{
    return cairn_hash_fold(cairn_hash_bytes(CAIRN_HASH_SEED, s, len));
}

void qry_nameidx_init(struct qry_nameidx *ix)
{
    memset(ix, 0, sizeof *ix);
}

int qry_nameidx_push(struct qry_nameidx *ix, const char *name)
{
    if (ix->n == ix->cap) {
        size_t nc = ix->cap ? ix->cap * 2 : 8;
        const char **nn = realloc(ix->names, nc * sizeof *nn);
        if (nn == NULL) {
            return CAIRN_ENOMEM;
        }
        ix->names = nn;
        size_t *nl = realloc(ix->lens, nc * sizeof *nl);
        if (nl == NULL) {
            return CAIRN_ENOMEM;
        }
        ix->lens = nl;
        uint64_t *nh = realloc(ix->h, nc * sizeof *nh);
        if (nh == NULL) {
            return CAIRN_ENOMEM;
        }
        ix->h = nh;
        ix->cap = nc;
    }
    if (cairn_slots_reserve(&ix->slots, &ix->nslots, ix->h, ix->n, 16) != 0) {
        return CAIRN_ENOMEM;
    }
    size_t len = strlen(name);
    ix->names[ix->n] = name;
    ix->lens[ix->n] = len;
    ix->h[ix->n] = name_hash(name, len);
    cairn_slots_place(ix->slots, ix->nslots, ix->h[ix->n], ix->n);
    ix->n++;
    return 0;
}

long qry_nameidx_find(const struct qry_nameidx *ix, const char *name, size_t len)
{
    if (ix->n == 0) {
        return -1;
    }
    uint64_t h = name_hash(name, len);
    size_t mask = ix->nslots - 1;
    long best = -1;
    for (size_t i = (size_t)h & mask; ix->slots[i] != 0; i = (i + 1) & mask) {
        size_t p = ix->slots[i] - 1;
        qry_probe_tick(QRY_PROBE_NAME_CMP);
        if (ix->h[p] == h && ix->lens[p] == len && memcmp(ix->names[p], name, len) == 0 &&
            (best < 0 || (long)p < best)) {
            best = (long)p;
        }
    }
    return best;
}

void qry_nameidx_fini(struct qry_nameidx *ix)
{
    if (ix == NULL) {
        return;
    }
    free(ix->names);
    free(ix->lens);
    free(ix->h);
    free(ix->slots);
    qry_nameidx_init(ix);
}
