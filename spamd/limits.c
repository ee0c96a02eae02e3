/*
 * Access and abuse limits for every listener (spamc, milter, SMTP), so that no client, slow or
 * hostile, can take the daemon's connections, file descriptors or workers from the others:
 *
 *   --max-connections, --max-connections-per-ip  caps on open connections (over: refused at once)
 *   --max-conn-rate, --max-failures, --ban-time  an address connecting too fast or failing too
 *       often (protocol errors, ACL refusals, timeouts, slow clients) is refused for a while; the
 *       ban's start and end are one log line each, for fail2ban and the like
 *   --timeout-read, --min-rate*  a request that stalls or trickles in (slowloris) is cut off
 *   --timeout-write  a client that does not take its reply is dropped
 *   --max-queue  scans waiting for a worker; more are answered with a temporary failure
 *
 * The state is one per process (the loop thread's): the per-address table of ratelimit.c,
 * counters, and a sweep timer that ends bans and judges the watched (reading) connections.
 */
#include "tamisd.h"

#include <errno.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#define SWEEP_MS 250
#define FD_RESERVE 64         /* listeners, log, rule and Bayes files, libuv's own */
#define REFUSAL_LOGS_PER_S 20 /* refusal lines are bounded: a flood must not flood the log */

static struct {
    tamisd_limits_cfg_t cfg;
    bool started;
    tamisd_iptable_t table;
    unsigned capacity; /* the connection cap in force: --max-connections, or fewer fds */
    unsigned workers;
    unsigned total; /* held slots */
    unsigned jobs;  /* scans queued or running */
    tamisd_slot_t *watched;
    uv_timer_t sweep;
    bool attached;
    double log_second;
    unsigned log_count, log_dropped;
} L;

/* ---- settings -------------------------------------------------------------------------------- */

/* The one table of the limits settings: it drives the defaults, parsing and its bounds, the help
 * text and the --lint dump. */
static const struct {
    const char *name;
    size_t off;
    unsigned def, max;
    const char *arg, *help;
} settings[TAMISD_LIMITS_OPT_COUNT] = {
#define F(x) offsetof(tamisd_limits_cfg_t, x)
    {"max-connections", F(max_conn), 1024, 1000000, "n", "open connections, all listeners"},
    /* above Postfix's default_process_limit of 100 */
    {"max-connections-per-ip", F(max_conn_per_ip), 128, 1000000, "n",
     "connections per address (IPv6: /64)"},
    /* a ban stops an MTA's mail: only floods should trip it */
    {"max-conn-rate", F(max_conn_rate), 500, 1000000, "n", "connections/s per address (10 s mean)"},
    {"max-failures", F(max_failures), 30, 1000000, "n", "failed requests per address a minute"},
    {"ban-time", F(ban_time), 300, 86400 * 7, "s", "how long a banned address is refused"},
    {"timeout-read", F(timeout_read), 30, 86400, "s", "longest silence while a request arrives"},
    {"timeout-write", F(timeout_write), 30, 86400, "s", "wait for the client to take its reply"},
    {"min-rate", F(min_rate), 512, 1u << 30, "n", "slowest request transfer, bytes/s ..."},
    {"min-rate-grace", F(min_rate_grace), 10, 86400, "s", "... judged after this many seconds ..."},
    {"min-rate-window", F(min_rate_window), 10, 86400, "s", "... over windows this long"},
    {"max-queue", F(max_queue), 256, 1000000, "n", "scans waiting for a worker (more: 75)"},
#undef F
};

static unsigned *field(tamisd_limits_cfg_t *cfg, size_t i)
{
    return (unsigned *)((char *)cfg + settings[i].off);
}

void tamisd_limits_defaults(tamisd_limits_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < TAMISD_LIMITS_OPT_COUNT; i++)
        *field(cfg, i) = settings[i].def;
}

int tamisd_limits_opt(tamisd_limits_cfg_t *cfg, int code, const char *arg)
{
    size_t i = (size_t)(code - TAMISD_LIMITS_OPT_BASE);
    if (code < TAMISD_LIMITS_OPT_BASE || i >= TAMISD_LIMITS_OPT_COUNT)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-' || v > settings[i].max ||
        (v == 0 && code == TAMISD_LIMITS_OPT_BASE)) {
        fprintf(stderr, "tamisd: invalid --%s: %s\n", settings[i].name, arg);
        return -1;
    }
    *field(cfg, i) = (unsigned)v;
    return 0;
}

void tamisd_limits_usage(FILE *f)
{
    fprintf(f, "  limits (spamd/README.md; 0 = off, except for --max-connections):\n");
    for (size_t i = 0; i < TAMISD_LIMITS_OPT_COUNT; i++) {
        char opt[48];
        snprintf(opt, sizeof opt, "--%s %s", settings[i].name, settings[i].arg);
        if (strlen(opt) > 20) /* as the other options: the text starts in column 29 */
            fprintf(f, "      %s\n%28s", opt, "");
        else
            fprintf(f, "      %-22s", opt);
        fprintf(f, "%s (default %u)\n", settings[i].help, settings[i].def);
    }
}

void tamisd_limits_dump(const tamisd_opts_t *o, FILE *f)
{
    fprintf(f, "setting allowed-ips ");
    for (size_t i = 0; i < o->allowed_count; i++)
        fprintf(f, "%s%s", i ? "," : "", o->allowed[i]);
    fprintf(f, "\nsetting username %s\nsetting groupname %s\n",
            o->user ? o->user : "(none; started as root: tamis, else nobody)",
            o->group ? o->group : "(the user's)");
    fprintf(f, "setting timeout-tcp %u\nsetting timeout-child %u\nsetting max-size %zu\n",
            o->timeout_tcp, o->timeout_child, o->max_size);
    tamisd_limits_cfg_t c = o->limits;
    for (size_t i = 0; i < TAMISD_LIMITS_OPT_COUNT; i++)
        fprintf(f, "setting %s %u\n", settings[i].name, *field(&c, i));
}

/* ---- start-up -------------------------------------------------------------------------------- */

/* The soft limit up to the hard one: each connection is a descriptor, and distributions start
 * daemons with a soft limit of 1024. Returns the limit now in force. */
static rlim_t raise_nofile(rlim_t *was)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return *was = 1024;
    *was = rl.rlim_cur;
    if (rl.rlim_cur == rl.rlim_max)
        return rl.rlim_cur;
    /* an infinite hard limit is refused above fs.nr_open: ask for a large finite one first */
    rlim_t want[] = {rl.rlim_max, 1048576, 65536};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (want[i] == RLIM_INFINITY || want[i] > rl.rlim_max || want[i] <= rl.rlim_cur)
            continue;
        struct rlimit n = {want[i], rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &n) == 0)
            return want[i];
    }
    tamisd_log(TAMISD_LOG_WARN, "cannot raise the open-file limit: %s", strerror(errno));
    return rl.rlim_cur;
}

int tamisd_limits_start(const tamisd_limits_cfg_t *cfg, unsigned workers, char *err, size_t errlen)
{
    tamisd_iptable_free(&L.table);
    L.cfg = *cfg;
    L.workers = workers ? workers : 1;
    L.total = L.jobs = 0;
    L.watched = NULL;
    rlim_t was = 0, nofile = raise_nofile(&was);
    unsigned long fds = nofile == RLIM_INFINITY ? 1048576ul : (unsigned long)nofile;
    unsigned long room =
        fds > FD_RESERVE + 2ul * L.workers ? fds - FD_RESERVE - 2ul * L.workers : 1;
    L.capacity = cfg->max_conn < room ? cfg->max_conn : (unsigned)room;
    if (cfg->max_conn > room)
        tamisd_log(TAMISD_LOG_WARN,
                   "--max-connections %u is more than the open-file limit allows: %u in force",
                   cfg->max_conn, L.capacity);
    tamisd_log(TAMISD_LOG_INFO,
               "limits: open files %lu (soft limit was %lu), connection capacity %u, per address "
               "%u, scan queue %u + %u workers",
               fds, was == RLIM_INFINITY ? fds : (unsigned long)was, L.capacity,
               cfg->max_conn_per_ip, cfg->max_queue, L.workers);
    if (tamisd_iptable_init(&L.table, TAMISD_IPTABLE_SIZE, cfg) != 0)
        return tamis_seterr(err, errlen, -1, "limits: out of memory");
    L.started = true;
    return 0;
}

const char *tamisd_limits_fallback_user(void)
{
    return getpwnam("tamis") ? "tamis" : "nobody";
}

int tamisd_limits_drop_caps(void)
{
    if (geteuid() == 0)
        return 0; /* root keeps what -u root asked for; setuid to anyone else clears them */
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); /* fails on old kernels: fine */
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    return syscall(SYS_capset, &h, d) == 0 ? 0 : -1; /* no libcap for three words */
}

/* ---- the sweep: ban expiry and slow clients ----------------------------------------------- */

static void unbanned(const tamisd_ipkey_t *k, double banned_ms, void *arg)
{
    (void)arg;
    char a[64];
    tamisd_ipkey_str(k, a, sizeof a);
    tamisd_log(TAMISD_LOG_INFO, "unban: [%s] after %.0f s", a, banned_ms / 1000.0);
}

static void on_sweep(uv_timer_t *t)
{
    (void)t;
    double now = tamis_now_ms();
    tamisd_iptable_expire(&L.table, now, unbanned, NULL);
    for (tamisd_slot_t *s = L.watched, *next; s; s = next) {
        next = s->next;
        double rate = 0;
        int r = tamisd_rate_check(&s->rate, now, &L.cfg, &rate);
        if (!r)
            continue;
        char why[160];
        if (r == 1)
            snprintf(why, sizeof why, "(%u second timeout reading input from client)",
                     L.cfg.timeout_read);
        else
            snprintf(why, sizeof why,
                     "(client too slow: %.0f bytes/s over %u s, minimum %u bytes/s)", rate,
                     L.cfg.min_rate_window, L.cfg.min_rate);
        tamisd_limits_unwatch(s);
        s->on_slow(s->arg, why); /* may close that connection, never another one */
    }
}

int tamisd_limits_attach(uv_loop_t *loop)
{
    if (L.attached)
        return 0;
    int rc = uv_timer_init(loop, &L.sweep);
    if (rc == 0)
        rc = uv_timer_start(&L.sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    if (rc != 0)
        return rc;
    uv_unref((uv_handle_t *)&L.sweep); /* never what keeps the loop running */
    L.attached = true;
    return 0;
}

void tamisd_limits_detach(void)
{
    if (!L.attached)
        return;
    L.attached = false;
    uv_close((uv_handle_t *)&L.sweep, NULL);
    tamisd_iptable_free(&L.table); /* the server has stopped: no connection is left */
    L.started = false;
}

/* ---- admission ------------------------------------------------------------------------------- */

/* At most REFUSAL_LOGS_PER_S refusal lines a second; the rest are counted in the next one. */
static bool refusal_log_ok(double now)
{
    if (now - L.log_second >= 1000) {
        if (L.log_dropped)
            tamisd_log(TAMISD_LOG_WARN, "limits: %u more refusals not logged", L.log_dropped);
        L.log_second = now;
        L.log_count = L.log_dropped = 0;
    }
    if (L.log_count >= REFUSAL_LOGS_PER_S) {
        L.log_dropped++;
        return false;
    }
    L.log_count++;
    return true;
}

tamisd_admit_t tamisd_limits_admit(tamisd_slot_t *s, const struct sockaddr *sa, const char *front)
{
    memset(s, 0, sizeof *s);
    if (!L.started)
        return TAMISD_ADMIT_OK; /* tamisd_limits_start failed: run without limits */
    double now = tamis_now_ms();
    tamisd_ipkey(sa, &s->key);
    char a[64];
    tamisd_ipkey_str(&s->key, a, sizeof a);
    bool counted = false;
    tamisd_admit_t r = TAMISD_ADMIT_OK;
    if (s->key.family)
        r = tamisd_iptable_connect(&L.table, &s->key, now, &counted);
    if (r == TAMISD_ADMIT_OK && L.total >= L.capacity) {
        if (counted)
            tamisd_iptable_disconnect(&L.table, &s->key);
        r = TAMISD_ADMIT_TOTAL;
    }
    switch (r) {
    case TAMISD_ADMIT_OK:
        if (!counted)
            s->key.family = 0; /* untracked: nothing to give back but the total */
        s->held = true;
        L.total++;
        return r;
    case TAMISD_ADMIT_BANNED:
        tamisd_log(TAMISD_LOG_DEBUG, "%s: refused [%s]: banned", front, a);
        break;
    case TAMISD_ADMIT_BAN_START:
        tamisd_log(TAMISD_LOG_WARN, "ban: [%s] refused for %u s: over %u new connections/s (%s)", a,
                   L.cfg.ban_time, L.cfg.max_conn_rate, front);
        break;
    case TAMISD_ADMIT_RATE:
        if (refusal_log_ok(now))
            tamisd_log(TAMISD_LOG_WARN, "%s: refused [%s]: over %u new connections/s", front, a,
                       L.cfg.max_conn_rate);
        break;
    case TAMISD_ADMIT_PER_IP:
        if (refusal_log_ok(now))
            tamisd_log(TAMISD_LOG_WARN,
                       "%s: refused [%s]: %u connections open from it (--max-connections-per-ip)",
                       front, a, L.cfg.max_conn_per_ip);
        break;
    case TAMISD_ADMIT_TOTAL:
        if (refusal_log_ok(now))
            tamisd_log(TAMISD_LOG_WARN, "%s: refused [%s]: %u connections open (--max-connections)",
                       front, a, L.total);
        break;
    }
    s->key.family = 0;
    return r;
}

bool tamisd_limits_banned(const struct sockaddr *sa)
{
    if (!L.started)
        return false;
    tamisd_ipkey_t k;
    tamisd_ipkey(sa, &k);
    const tamisd_ipentry_t *e = tamisd_iptable_find(&L.table, &k);
    return e && e->ban_until;
}

void tamisd_limits_release(tamisd_slot_t *s)
{
    tamisd_limits_unwatch(s);
    if (!s->held)
        return;
    s->held = false;
    if (L.total)
        L.total--;
    if (s->key.family)
        tamisd_iptable_disconnect(&L.table, &s->key);
}

void tamisd_limits_answered(tamisd_slot_t *s)
{
    tamisd_limits_unwatch(s);
    if (s->held && s->key.family)
        tamisd_iptable_disconnect(&L.table, &s->key);
    s->key.family = 0;
}

void tamisd_limits_fail(const tamisd_ipkey_t *k, const char *what)
{
    if (!L.started || !k->family)
        return;
    if (!tamisd_iptable_fail(&L.table, k, tamis_now_ms()))
        return;
    char a[64];
    tamisd_ipkey_str(k, a, sizeof a);
    tamisd_log(TAMISD_LOG_WARN,
               "ban: [%s] refused for %u s: over %u failed requests a minute "
               "(last: %s)",
               a, L.cfg.ban_time, L.cfg.max_failures, what);
}

void tamisd_limits_fail_addr(const struct sockaddr *sa, const char *what)
{
    tamisd_ipkey_t k;
    tamisd_ipkey(sa, &k);
    tamisd_limits_fail(&k, what);
}

/* ---- slow clients ---------------------------------------------------------------------------- */

void tamisd_limits_watch(tamisd_slot_t *s, tamisd_slow_cb on_slow, void *arg)
{
    if (s->watching || !L.started || (!L.cfg.timeout_read && !L.cfg.min_rate))
        return;
    tamisd_rate_begin(&s->rate, tamis_now_ms());
    s->on_slow = on_slow;
    s->arg = arg;
    s->watching = true;
    s->prev = NULL;
    s->next = L.watched;
    if (L.watched)
        L.watched->prev = s;
    L.watched = s;
}

void tamisd_limits_feed(tamisd_slot_t *s, size_t n)
{
    if (s->watching)
        tamisd_rate_feed(&s->rate, n, tamis_now_ms());
}

void tamisd_limits_unwatch(tamisd_slot_t *s)
{
    if (!s->watching)
        return;
    s->watching = false;
    if (s->prev)
        s->prev->next = s->next;
    else
        L.watched = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* ---- the scan backlog ------------------------------------------------------------------------ */

bool tamisd_limits_job_admit(void)
{
    if (L.started && L.jobs >= L.workers + L.cfg.max_queue)
        return false;
    L.jobs++;
    return true;
}

void tamisd_limits_job_done(void)
{
    if (L.jobs)
        L.jobs--;
}

void tamisd_limits_refuse(uv_stream_t *s, const char *line)
{
    uv_buf_t b = uv_buf_init((char *)line, (unsigned)strlen(line));
    uv_try_write(s, &b, 1);
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)s, &fd) != 0)
        return;
    char buf[4096];
    for (int i = 0; i < 16 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++)
        ; /* a request bigger than this is reset: the line was only a courtesy */
}

unsigned tamisd_limits_write_ms(void)
{
    return L.started ? L.cfg.timeout_write * 1000u : 0;
}
