/* Levelled logging: one line per event, with a UTC timestamp and the program name. */
#include "gridgate/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum gg_log_level gg_log_level = GG_LOG_INFO;
const char *gg_log_prog = "gridgate";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int gg_log_set_level(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            gg_log_level = (enum gg_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void gg_log_write(enum gg_log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), gg_log_prog, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    size_t len = n + (m < 0 ? 0 : (size_t)m >= sizeof(line) - n - 1 ? sizeof(line) - n - 2 : (size_t)m);
    line[len++] = '\n';
    /* One write(2) per line keeps lines from several threads whole. */
    fwrite(line, 1, len, stderr);
}
