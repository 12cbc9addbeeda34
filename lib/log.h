/*
 * NAME
 *   log - leveled logging to stderr and text sanitising for peer input
 * DESCRIPTION
 *   One line per call, prefixed with a UTC timestamp, the level and the
 *   calling thread's tag. Anything that came from a peer (SMTP replies,
 *   Redis payloads, template variables) goes through log_sanitize() before
 *   it is logged or stored, so a hostile server cannot inject lines or
 *   terminal escapes.
 * THREADS
 *   Safe from any thread; each line is written with one write(2).
 */
#ifndef VOLLEY_LOG_H
#define VOLLEY_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* log_set_thread_tag - name shown for lines from the calling thread (copied) */
void log_set_thread_tag(const char *tag);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * log_sanitize - copy at most dstlen-1 printable ASCII bytes of src into dst.
 * Control characters, bytes >= 0x7f and CR/LF become '?'; trailing CR/LF and
 * blanks are dropped. Returns the length written. dst is always NUL-terminated.
 */
size_t log_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen);

#define log_debug(...) \
    do { \
        if (log_get_level() <= LOG_DEBUG) \
            log_msg(LOG_DEBUG, __VA_ARGS__); \
    } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
