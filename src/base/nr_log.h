/*
 * nr_log: leveled logging to stderr. The level comes from NANORAG_LOG
 * (error, warn, info, debug; default warn) or nr_log_set_level().
 */
#ifndef NR_LOG_H
#define NR_LOG_H

enum nr_log_level { NR_LOG_ERROR = 0, NR_LOG_WARN = 1, NR_LOG_INFO = 2, NR_LOG_DEBUG = 3 };

void nr_log_set_level(int level);
int nr_log_level(void);
void nr_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define nr_log_error(...) nr_log(NR_LOG_ERROR, __VA_ARGS__)
#define nr_log_warn(...)  nr_log(NR_LOG_WARN, __VA_ARGS__)
#define nr_log_info(...)  nr_log(NR_LOG_INFO, __VA_ARGS__)
#define nr_log_debug(...) nr_log(NR_LOG_DEBUG, __VA_ARGS__)

#endif
