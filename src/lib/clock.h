/*
 * clock.h: time sources. Monotonic nanoseconds for durations and timeouts,
 * wall-clock milliseconds for dates and cluster timestamps. Any thread.
 */
#ifndef CAIRN_LIB_CLOCK_H
#define CAIRN_LIB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t cairn_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* cairn_mono_ns() at tick resolution (a few ms), and never ahead of it:
 * a deadline the coarse clock has passed has passed. For checks made on
 * every unit of work, where the precise clock would cost more. */
static inline uint64_t cairn_mono_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t cairn_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif /* CAIRN_LIB_CLOCK_H */
