/*
 * tamisc's log, as libspamc_log: to syslog (facility mail) unless -l sends it to stderr.
 */
#include "tamisc.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

void tamisc_log_init(void)
{
    openlog("tamisc", LOG_CONS | LOG_PID, LOG_MAIL);
}

void tamisc_log(unsigned flags, int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (!(flags & TAMISC_LOG_STDERR)) {
        syslog(level, "%s", line);
        return;
    }
    fprintf(stderr, "tamisc: %s\n", line);
}
