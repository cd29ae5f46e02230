/*
 * raft_port.h: ports for unit tests that start a real raft listener.
 *
 * repl binds its raft listener on member port + CAIRN_RAFT_PORT_OFFSET. The
 * tests choose raft ports in TEST_RAFT_PORT_LO..TEST_RAFT_PORT_HI: below
 * Linux's ephemeral range (32768-60999), so that no outgoing connection of
 * any process can take the port between the check and raft's bind, and
 * apart from the integration tests' ports (clients 20000-22700, raft
 * 30000-32700, see tests/integration/cairn_server.py). A port is chosen by
 * binding it first; a test that opens raft on a fresh directory retries with
 * another port when the open still fails with the address in use
 * (test_err_addr_in_use), as tests/integration/conftest.py does.
 *
 * Header-only: every function is static, for the test programs that need it.
 */
#ifndef CAIRN_TEST_RAFT_PORT_H
#define CAIRN_TEST_RAFT_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "repl/repl.h" /* CAIRN_RAFT_PORT_OFFSET, struct cairn_error */

#define TEST_RAFT_PORT_LO 23000
#define TEST_RAFT_PORT_HI 29999
/* Opens of a fresh raft directory before a test gives up on finding a port. */
#define TEST_RAFT_OPEN_TRIES 5

_Static_assert(TEST_RAFT_PORT_HI < 32768, "raft test ports must stay below the ephemeral range");
_Static_assert(TEST_RAFT_PORT_LO - CAIRN_RAFT_PORT_OFFSET > 1024,
               "member ports must not be privileged");

/* True when 127.0.0.1:port can be bound now. */
static inline bool test_port_free(int port)
{
    struct sockaddr_in a;
    int one = 1;
    bool ok;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        return false;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* As libuv's listener does, so a port in TIME_WAIT counts as free. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A member port whose raft port is free now, or 0 if none is. `attempt`
 * (0, 1, ...) moves the starting point, so that a retry after losing a race
 * tries elsewhere; the process id spreads concurrent test programs apart. */
static inline int test_pick_member_port(unsigned attempt)
{
    const unsigned span = TEST_RAFT_PORT_HI - TEST_RAFT_PORT_LO + 1;
    unsigned start = ((unsigned)getpid() * 2654435761u + attempt * 40503u) % span;

    /* 7919 is prime and does not divide span: the walk visits every port. */
    for (unsigned i = 0; i < span; i++) {
        int raft_port = TEST_RAFT_PORT_LO + (int)((start + i * 7919u) % span);
        if (test_port_free(raft_port)) {
            return raft_port - CAIRN_RAFT_PORT_OFFSET;
        }
    }
    return 0;
}

/* True when a failed repl_open (or initiate) failed because the raft port
 * was taken: raft reports the listen error, or repl says it may be in use. */
static inline bool test_err_addr_in_use(const struct cairn_error *err)
{
    return strstr(err->msg, "in use") != NULL || strstr(err->msg, "EADDRINUSE") != NULL;
}

#endif
