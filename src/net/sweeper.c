/*
 * sweeper.c: the housekeeping thread of the client-facing server (see
 * sweeper.h for what each tick does).
 */
#include "net/sweeper.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "lib/clock.h"
#include "net/cursor.h"
#include "net/opguard.h"
#include "net/server_int.h"

struct net_sweeper
{
    struct net_server *s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool stop;         /* under mu */
};

static void *sweeper_main(void *arg)
{
    struct net_sweeper *sw = arg;
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop) {
        until.tv_nsec += (long)NET_SWEEP_NS;
        while (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!sw->stop && pthread_cond_timedwait(&sw->cv, &sw->mu, &until) != ETIMEDOUT) {
        }
        if (sw->stop) {
            break;
        }
        pthread_mutex_unlock(&sw->mu);
        uint64_t now = cairn_mono_ns();
        (void)net_server_drop_stalled(sw->s, now);
        (void)net_guard_sweep(now);
        (void)net_cursor_reap(now);
        pthread_mutex_lock(&sw->mu);
        /* After a long tick, the next one is a full period away. */
        struct timespec now_ts;
        clock_gettime(CLOCK_MONOTONIC, &now_ts);
        if (now_ts.tv_sec > until.tv_sec ||
            (now_ts.tv_sec == until.tv_sec && now_ts.tv_nsec > until.tv_nsec)) {
            until = now_ts;
        }
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

int net_sweeper_start(struct net_server *s, struct net_sweeper **out, struct cairn_error *err)
{
    struct net_sweeper *sw = calloc(1, sizeof *sw);
    pthread_condattr_t ca;

    if (sw == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "net: out of memory");
    }
    sw->s = s;
    pthread_mutex_init(&sw->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sw->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&sw->thread, NULL, sweeper_main, sw) != 0) {
        pthread_cond_destroy(&sw->cv);
        pthread_mutex_destroy(&sw->mu);
        free(sw);
        return cairn_error_setf(err, CAIRN_EIO, "net: cannot start the sweeper thread");
    }
    *out = sw;
    return 0;
}

void net_sweeper_stop(struct net_sweeper *sw)
{
    if (sw == NULL) {
        return;
    }
    pthread_mutex_lock(&sw->mu);
    sw->stop = true;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    pthread_cond_destroy(&sw->cv);
    pthread_mutex_destroy(&sw->mu);
    free(sw);
}
