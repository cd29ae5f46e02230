/*
 * probe.c: work counters of the query layer (qry_probe_* in query.h),
 * complexity probes that serverStatus shows so tests can bound the
 * operations a command does instead of timing it. Each thread counts in
 * thread-local memory and adds to the shared total every PROBE_FLUSH ticks,
 * so hot loops (sorting) do not contend on one cache line; totals are
 * therefore approximate (up to PROBE_FLUSH - 1 per thread and counter
 * not yet added).
 */
#include <stdatomic.h>

#include "query/query.h"

#define PROBE_FLUSH 256u

static _Thread_local unsigned pending[QRY_PROBE_COUNT];
static atomic_uint_fast64_t total[QRY_PROBE_COUNT];

void qry_probe_tick(enum qry_probe which)
{
    if (++pending[which] == PROBE_FLUSH) {
        atomic_fetch_add_explicit(&total[which], PROBE_FLUSH, memory_order_relaxed);
        pending[which] = 0;
    }
}

uint64_t qry_probe_count(enum qry_probe which)
{
    return (uint64_t)atomic_load_explicit(&total[which], memory_order_relaxed);
}
