/*
 * tamisd logging: one line per event. Lines go to stderr (the default when not daemonized), to a
 * file (-s /path), or to syslog (-s facility). Worker threads and the loop thread both log, so a
 * mutex keeps lines whole.
 */
#include "tamisd.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file; /* NULL with use_syslog = false means stderr */
static bool use_syslog;
static bool log_debug;

static const struct {
    const char *name;
    int value;
} facilities[] = {
    {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},     {"local0", LOG_LOCAL0},
    {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},
    {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

int tamisd_log_open(const char *where, bool debug)
{
    log_debug = debug;
    if (!where || strcmp(where, "stderr") == 0)
        return 0;
    if (strchr(where, '/')) {
        log_file = fopen(where, "a");
        if (!log_file)
            return -1;
        setvbuf(log_file, NULL, _IOLBF, 0);
        return 0;
    }
    for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++) {
        if (strcmp(where, facilities[i].name) == 0) {
            openlog("tamisd", LOG_PID | LOG_NDELAY, facilities[i].value);
            use_syslog = true;
            return 0;
        }
    }
    return -1;
}

void tamisd_log_close(void)
{
    if (log_file)
        fclose(log_file);
    log_file = NULL;
    if (use_syslog)
        closelog();
    use_syslog = false;
}

static const char *level_name(tamisd_level_t level)
{
    static const char *const names[] = {"error", "warn", "info", "dbg"};
    return names[level];
}

/* spamd's stderr format: "Nov 23 03:32:42.488 [10509] info: text" */
static void log_stream(FILE *f, tamisd_level_t level, const char *text)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%b %d %H:%M:%S", &tm);
    fprintf(f, "%s.%03ld [%ld] %s: %s\n", stamp, (long)(tv.tv_usec / 1000), (long)getpid(),
            level_name(level), text);
    fflush(f);
}

void tamisd_log(tamisd_level_t level, const char *fmt, ...)
{
    if (level == TAMISD_LOG_DEBUG && !log_debug)
        return;
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* control characters from the network never reach the log as such */
    for (char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    pthread_mutex_lock(&log_lock);
    if (use_syslog)
        syslog(prio[level], "%s: %s", level_name(level), text);
    else
        log_stream(log_file ? log_file : stderr, level, text);
    pthread_mutex_unlock(&log_lock);
}

size_t tamisd_log_diag(const tamis_diag_t *diag, tamis_diag_level_t min)
{
    size_t errors = 0;
    for (size_t i = 0; diag && i < tamis_diag_count(diag); i++) {
        const tamis_diag_entry_t *e = tamis_diag_at(diag, i);
        if (e->level == TAMIS_DIAG_ERROR)
            errors++;
        if (e->level < min)
            continue;
        tamisd_level_t l = e->level == TAMIS_DIAG_ERROR  ? TAMISD_LOG_ERR
                           : e->level == TAMIS_DIAG_WARN ? TAMISD_LOG_WARN
                                                         : TAMISD_LOG_INFO;
        tamisd_log(l, "config: %s:%u: %s", e->file ? e->file : "<cmdline>", e->line, e->text);
    }
    return errors;
}
