/*
 * log.h: levelled logging to stderr. The level comes from CAIRN_LOG
 * (debug|info|warn|error, default info) and is checked before formatting.
 * Thread-safe: each line is written with one fprintf.
 */
#ifndef CAIRN_LIB_LOG_H
#define CAIRN_LIB_LOG_H

enum cairn_log_level { CAIRN_LOG_DEBUG, CAIRN_LOG_INFO, CAIRN_LOG_WARN, CAIRN_LOG_ERROR };

/* The current threshold; lines below it are dropped. */
extern int cairn_log_threshold;

/* Reads CAIRN_LOG from the environment. Call once at start-up. */
void cairn_log_init(void);

/* Writes one line "time level [component] message". */
void cairn_log_write(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define cairn_log(level, component, ...)                        \
    do {                                                        \
        if ((level) >= cairn_log_threshold) {                   \
            cairn_log_write((level), (component), __VA_ARGS__); \
        }                                                       \
    } while (0)

#endif /* CAIRN_LIB_LOG_H */
