/* Levelled one-line logging to stderr. The level is checked before any formatting, so a disabled
 * debug line costs one compare. */
#ifndef GG_LOG_H
#define GG_LOG_H

enum gg_log_level { GG_LOG_ERROR, GG_LOG_WARN, GG_LOG_INFO, GG_LOG_DEBUG };

extern enum gg_log_level gg_log_level;
/** Name shown at the start of each line ("gridgate", "enginesim"). */
extern const char *gg_log_prog;

/** Parses "error|warn|info|debug"; returns 0 or -EINVAL. */
int gg_log_set_level(const char *name);
void gg_log_write(enum gg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gg_log(level, ...)                                                                                                         \
    do {                                                                                                                           \
        if ((level) <= gg_log_level)                                                                                               \
            gg_log_write((level), __VA_ARGS__);                                                                                    \
    } while (0)
#define gg_error(...) gg_log(GG_LOG_ERROR, __VA_ARGS__)
#define gg_warn(...) gg_log(GG_LOG_WARN, __VA_ARGS__)
#define gg_info(...) gg_log(GG_LOG_INFO, __VA_ARGS__)
#define gg_debug(...) gg_log(GG_LOG_DEBUG, __VA_ARGS__)

#endif
