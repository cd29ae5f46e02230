/*
 * rxbudget.c: the server-wide budget of bytes buffered for incomplete
 * inbound messages, the growth of a message's buffer and the deadline for
 * a message to arrive (see rxbudget.h). server.c applies them.
 */
#include "net/rxbudget.h"

#include <stdatomic.h>

static atomic_llong budget = NET_RX_DEFAULT_BUDGET_BYTES;
static atomic_llong in_use;
static atomic_llong timeout_ms = NET_RX_DEFAULT_TIMEOUT_MS;
static atomic_llong n_timeouts;
static atomic_llong n_waits;

bool net_rx_reserve(size_t n)
{
    long long cur = atomic_load(&in_use);
    long long limit = atomic_load(&budget);

    do {
        if ((long long)n > limit - cur) {
            return false;
        }
    } while (!atomic_compare_exchange_weak(&in_use, &cur, cur + (long long)n));
    return true;
}

void net_rx_release(size_t n)
{
    atomic_fetch_sub(&in_use, (long long)n);
}

size_t net_rx_next_cap(size_t cap, size_t len)
{
    size_t next = cap < NET_RX_FIRST_CHUNK / 2 ? NET_RX_FIRST_CHUNK : cap * 2;

    return next > len ? len : next;
}

uint64_t net_rx_timeout_ns(void)
{
    return (uint64_t)atomic_load(&timeout_ms) * 1000000ull;
}

void net_rx_count_timeout(void)
{
    atomic_fetch_add(&n_timeouts, 1);
}

void net_rx_count_wait(void)
{
    atomic_fetch_add(&n_waits, 1);
}

void net_rx_stats_get(struct net_rx_stats *out)
{
    out->bytes = atomic_load(&in_use);
    out->limit = atomic_load(&budget);
    out->timeouts = atomic_load(&n_timeouts);
    out->waits = atomic_load(&n_waits);
    out->timeout_ms = atomic_load(&timeout_ms);
}

int64_t net_rx_budget_get(void)
{
    return atomic_load(&budget);
}

void net_rx_budget_set(int64_t bytes)
{
    atomic_store(&budget, bytes);
}

int64_t net_rx_timeout_ms_get(void)
{
    return atomic_load(&timeout_ms);
}

void net_rx_timeout_ms_set(int64_t ms)
{
    atomic_store(&timeout_ms, ms);
}
