/*
 * rxbudget.h: private to src/net. The memory a client can pin with
 * messages it has begun to send but not finished: a server-wide budget of
 * bytes buffered for incomplete messages, the growth policy of one such
 * buffer, and the deadline a message must arrive within.
 *
 * A message larger than a connection's fixed receive buffer gets its own
 * buffer, which grows geometrically as bytes arrive (a header declaring
 * 48 MB reserves nothing until the bytes come) and never past the declared
 * length (itself at most WIRE_MAX_MESSAGE: the bound per connection). The
 * declared length is reserved from the budget (maxIncompleteMessageBytes)
 * whole before the buffer is made, so that every admitted message can
 * complete; when the budget cannot admit it, the connection stops reading
 * (TCP pushes back on its client) and retries every NET_RX_RETRY_MS. A
 * message whose first byte arrived more than incompleteMessageTimeoutMillis
 * ago and is still incomplete has its connection closed (also while it
 * waits for the budget), which also gives its bytes back.
 * A complete message leaves the budget when it is handed to a worker.
 *
 * Threads: every function is thread-safe (atomics).
 */
#ifndef CAIRN_NET_RXBUDGET_H
#define CAIRN_NET_RXBUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults of the two parameters. */
#define NET_RX_DEFAULT_BUDGET_BYTES (1024ll * 1024 * 1024)
#define NET_RX_DEFAULT_TIMEOUT_MS 30000ll

/* How long a connection that found the budget spent waits before trying
 * again. */
#define NET_RX_RETRY_MS 20

/* The first size of a message's own buffer (or its length if smaller). */
#define NET_RX_FIRST_CHUNK (64 * 1024)

/* Reserves `n` bytes; false (nothing reserved) when the budget would be
 * exceeded. */
bool net_rx_reserve(size_t n);

/* Gives back `n` reserved bytes. */
void net_rx_release(size_t n);

/* The next capacity of a buffer of capacity `cap` that must reach `len`
 * bytes: double, at least NET_RX_FIRST_CHUNK, at most `len`. */
size_t net_rx_next_cap(size_t cap, size_t len);

/* incompleteMessageTimeoutMillis in nanoseconds. */
uint64_t net_rx_timeout_ns(void);

/* Counters for serverStatus: a connection closed because its message was
 * incomplete past the deadline; a connection that had to wait for the
 * budget. */
void net_rx_count_timeout(void);
void net_rx_count_wait(void);

struct net_rx_stats
{
    int64_t bytes;      /* reserved now */
    int64_t limit;      /* maxIncompleteMessageBytes */
    int64_t timeouts;   /* connections closed past the deadline */
    int64_t waits;      /* times a connection found the budget spent */
    int64_t timeout_ms; /* incompleteMessageTimeoutMillis */
};
void net_rx_stats_get(struct net_rx_stats *out);

/* The parameters (params.c): values are validated by the caller. */
int64_t net_rx_budget_get(void);
void net_rx_budget_set(int64_t bytes);
int64_t net_rx_timeout_ms_get(void);
void net_rx_timeout_ms_set(int64_t ms);

#endif /* CAIRN_NET_RXBUDGET_H */
