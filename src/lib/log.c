/*
 * log.c: the stderr logger declared in log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cairn_log_threshold = CAIRN_LOG_INFO;

void cairn_log_init(void)
{
    const char *v = getenv("CAIRN_LOG");
    if (v == NULL) {
        return;
    }
    if (strcmp(v, "debug") == 0) {
        cairn_log_threshold = CAIRN_LOG_DEBUG;
    } else if (strcmp(v, "warn") == 0) {
        cairn_log_threshold = CAIRN_LOG_WARN;
    } else if (strcmp(v, "error") == 0) {
        cairn_log_threshold = CAIRN_LOG_ERROR;
    } else {
        cairn_log_threshold = CAIRN_LOG_INFO;
    }
}

void cairn_log_write(int level, const char *component, const char *fmt, ...)
{
    static const char *names[] = {"D", "I", "W", "E"};
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            names[level < 0 || level > 3 ? 1 : level], component, line);
}
