/*
 * tamisd: a drop-in replacement for SpamAssassin's spamd.
 *
 * Start-up order matters: options → logging → rules (so configuration errors are reported on the
 * terminal before detaching) → bind sockets (possibly privileged ports) → daemonize → pid file →
 * drop privileges → size the thread pool → serve. --lint and --test stop after loading the rules.
 *
 * Exit status: 0 normal stop, 1 --lint found errors, 64 usage, 69 cannot listen, 71 system error,
 * 78 rules failed to load or the TLS certificate/key/CAs are unusable.
 */
#include "tamisd.h"

#include "tamis/scan.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tamisd_rules_load(const tamisd_opts_t *o, tamis_ruleset_t **out, tamis_diag_t *diag, char *err,
                      size_t errlen)
{
    tamis_rules_source_t src;
    memset(&src, 0, sizeof src);
    src.default_rules_dir = o->configpath;
    src.site_rules_dir = o->siteconfigpath;
    src.extra_lines = o->cf;
    src.extra_line_count = o->cf_count;
    /* Compiling the prefilter databases of a large rule set takes seconds; they are kept under
     * <state>/cache, keyed by the rule set, so restarts and unchanged reloads are fast. Without a
     * writable folder the load still works, only slower. */
    char cache[PATH_MAX];
    snprintf(cache, sizeof cache, "%s/cache", tamisd_state_dir(o));
    if (mkdir(tamisd_state_dir(o), 0700) == 0 || errno == EEXIST)
        if (mkdir(cache, 0700) == 0 || errno == EEXIST)
            src.cache_dir = cache;
    return tamis_rules_load(&src, out, diag, err, errlen);
}

const char *tamisd_state_dir(const tamisd_opts_t *o)
{
    return o->state_dir ? o->state_dir : TAMIS_DEFAULT_STATE_DIR;
}

static void print_diag(const tamis_diag_t *diag)
{
    static const char *const names[] = {"info", "warn", "error"};
    for (size_t i = 0; i < tamis_diag_count(diag); i++) {
        const tamis_diag_entry_t *e = tamis_diag_at(diag, i);
        fprintf(stderr, "%s:%u: %s: %s\n", e->file ? e->file : "<cmdline>", e->line,
                names[e->level], e->text);
    }
}

/* The network-test settings in effect, for --lint. */
static void lint_dns(const tamisd_opts_t *o, const tamis_conf_t *c, tamis_buf_t *out)
{
    const char *servers = tamisd_dns_servers_of(c);
    if (o->local)
        tamis_buf_puts(out, "dns: off (-L, local tests only)\n");
    else if (c->skip_rbl_checks)
        tamis_buf_puts(out, "dns: off (skip_rbl_checks 1)\n");
    else
        tamis_buf_printf(out, "dns: servers %s\n", *servers ? servers : "from /etc/resolv.conf");
    tamis_buf_printf(out,
                     "dns: rbl_timeout %g, dns_max_queries %u, num_check_received %u, "
                     "uridnsbl_max_domains %u, uridnsbl_skip_mailto %d, uridnsbl_skip_domain "
                     "entries %zu\n",
                     c->rbl_timeout, c->dns_max_queries, c->num_check_received,
                     c->uridnsbl_max_domains, c->uridnsbl_skip_mailto ? 1 : 0,
                     c->uridnsbl_skip_domains.count);
}

/* --lint: load, print every diagnostic and the unsupported evals; 1 if anything is an error. */
static int run_lint(const tamisd_opts_t *o)
{
    tamis_diag_t *diag = tamis_diag_new();
    tamis_ruleset_t *rs = NULL;
    char err[512] = "";
    int rc = tamisd_rules_load(o, &rs, diag, err, sizeof err);
    if (diag)
        print_diag(diag);
    size_t errors = diag ? tamis_diag_count_level(diag, TAMIS_DIAG_ERROR) : 0;
    if (rc == 0 && tamis_rules_count(rs) == 0) {
        fprintf(stderr, "lint: no rules were found in %s\n", o->configpath);
        errors++;
    }
    if (rc != 0) {
        fprintf(stderr, "lint: rules failed to load: %s\n", err);
        errors++;
    } else {
        tamis_buf_t out;
        tamis_buf_init(&out, 0);
        tamis_rules_lint(rs, &out);
        lint_dns(o, tamis_rules_conf(rs), &out);
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
        fprintf(stderr, "lint: %zu rules, %zu errors, %zu warnings\n", tamis_rules_count(rs),
                errors, diag ? tamis_diag_count_level(diag, TAMIS_DIAG_WARN) : 0);
        tamis_buf_free(&out);
    }
    tamisd_limits_dump(o, stdout);
    tamis_rules_unref(rs);
    tamis_diag_free(diag);
    errors += (size_t)tamisd_tls_lint(o, stderr);
    return errors ? 1 : 0;
}

/* Reads stdin up to max bytes; returns malloc'ed data the caller frees, or NULL. */
static char *read_stdin(size_t max, size_t *len)
{
    tamis_buf_t b;
    tamis_buf_init(&b, max + 1);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (tamis_buf_append(&b, chunk, n) != 0)
            break;
    if (b.err) {
        tamis_buf_free(&b);
        return NULL;
    }
    if (!b.data)
        tamis_buf_puts(&b, "");
    return tamis_buf_steal(&b, len);
}

/* --test: one message from stdin, printed as PROCESS returns it (spamassassin -t). */
static int run_test(const tamisd_opts_t *o, tamis_ruleset_t *rs)
{
    size_t len = 0;
    char *msg = read_stdin(o->max_size, &len);
    if (!msg) {
        fprintf(stderr, "tamisd: message too big or unreadable (limit %zu bytes)\n", o->max_size);
        return 74;
    }
    tamis_scan_opts_t so;
    tamis_scan_opts_default(&so);
    so.local_only = o->local;
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    if (o->max_size > lim.max_message_bytes)
        lim.max_message_bytes = o->max_size;
    so.limits = &lim;
    tamis_scan_t *s = NULL;
    char err[256] = "";
    int rc = tamis_scan_run(rs, msg, len, &so, &s, err, sizeof err);
    free(msg);
    if (rc != 0) {
        fprintf(stderr, "tamisd: scan failed: %s\n", err[0] ? err : tamis_strerror(rc));
        return 70;
    }
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    rc = tamis_scan_rewrite(s, &out);
    if (rc == 0)
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
    tamis_buf_free(&out);
    tamis_scan_free(s);
    return rc == 0 ? 0 : 70;
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (chdir("/") != 0)
        return -1;
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0)
        return -1;
    dup2(fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    if (fd > 2)
        close(fd);
    return 0;
}

static int write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%ld\n", (long)getpid());
    return fclose(f);
}

static int drop_privileges(const char *user, const char *group)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        tamisd_log(TAMISD_LOG_ERR, "unknown user %s", user);
        return -1;
    }
    gid_t gid = pw->pw_gid;
    if (group) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            tamisd_log(TAMISD_LOG_ERR, "unknown group %s", group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    /* groups first: once setuid has run, they can no longer be changed */
    if (initgroups(pw->pw_name, gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        tamisd_log(TAMISD_LOG_ERR, "cannot switch to user %s: %s", user, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && setuid(0) == 0) { /* must be gone for good */
        tamisd_log(TAMISD_LOG_ERR, "could regain root after switching to %s", user);
        return -1;
    }
    tamisd_log(TAMISD_LOG_INFO, "running as user %s (uid %ld, gid %ld)", pw->pw_name,
               (long)pw->pw_uid, (long)gid);
    return 0;
}

/* The scanning threads: -m, or one per core; at most libuv's own maximum. */
static long pool_size(const tamisd_opts_t *o)
{
    long n = o->workers ? (long)o->workers : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : n;
}

/* Threads of the pool: -m of them compute at a time (job.c's CPU slots); with network tests on
 * there are more, for the scans that wait for DNS answers meanwhile. */
#define TAMISD_WAIT_THREADS_PER_WORKER 32
static long scan_threads(const tamisd_opts_t *o)
{
    long n = pool_size(o);
    if (!o->local)
        n *= TAMISD_WAIT_THREADS_PER_WORKER;
    return n > 1024 ? 1024 : n;
}

static void size_thread_pool(const tamisd_opts_t *o)
{
    long n = scan_threads(o);
    char buf[24];
    snprintf(buf, sizeof buf, "%ld", n);
    /* libuv reads this once, when the pool starts: before any uv_queue_work */
    setenv("UV_THREADPOOL_SIZE", buf, 1);
}

static int build_acl(const tamisd_opts_t *o, tamisd_acl_t *acl)
{
    memset(acl, 0, sizeof *acl);
    for (size_t i = 0; i < o->allowed_count; i++) {
        if (tamisd_acl_add(acl, o->allowed[i]) != 0) {
            fprintf(stderr, "tamisd: bad --allowed-ips entry: %s\n", o->allowed[i]);
            return -1;
        }
    }
    return 0;
}

/* diag (caller-owned) receives the load's diagnostics. */
static tamis_ruleset_t *load_startup_rules(const tamisd_opts_t *o, tamis_diag_t *diag)
{
    tamis_ruleset_t *rs = NULL;
    char err[512] = "";
    int rc = tamisd_rules_load(o, &rs, diag, err, sizeof err);
    tamisd_log_diag(diag, TAMIS_DIAG_WARN);
    if (rc != 0) {
        tamisd_log(TAMISD_LOG_ERR, "cannot load rules: %s", err);
        return NULL;
    }
    if (tamis_rules_count(rs) == 0) {
        /* as spamd: a server without rules would pass everything as ham */
        tamisd_log(TAMISD_LOG_ERR, "no rules were found in %s", o->configpath);
        tamis_rules_unref(rs);
        return NULL;
    }
    return rs;
}

/* Binds one front-end listener (milter or SMTP) with listen.c's code: a spec with '/' is a Unix
 * socket, anything else host:port. Appends to ls; returns 0 or -1 with err set. */
static int listen_front(const tamisd_opts_t *o, const char *spec, tamisd_kind_t kind,
                        tamisd_listener_t *ls, size_t max, int *n, char *err, size_t errlen)
{
    if (!spec)
        return 0;
    static tamisd_opts_t one; /* only the fields listen_all reads */
    memset(&one, 0, sizeof one);
    one.port = o->port;
    one.family = o->family;
    const char *path = strchr(spec, '/') ? spec : NULL;
    if (strncmp(spec, "unix:", 5) == 0)
        path = spec + 5;
    if (strncmp(spec, "inet:", 5) == 0)
        spec += 5;
    if (path) {
        one.socketpath = path;
    } else {
        one.listen[0] = spec;
        one.listen_count = 1;
    }
    int got = tamisd_listen_all(&one, ls + *n, max - (size_t)*n, err, errlen);
    if (got <= 0)
        return -1;
    for (int i = 0; i < got; i++)
        ls[*n + i].kind = kind;
    /* the MTA runs as its own user (postfix): it must be able to connect */
    if (path && chmod(path, 0666) != 0)
        tamisd_log(TAMISD_LOG_WARN, "cannot chmod %s: %s", path, strerror(errno));
    *n += got;
    return 0;
}

/* Gives the TLS listeners the daemon's one TLS context (*ctx, freed by the caller after the loop).
 * Returns 0, or -1 when the certificate, key or CAs cannot be used (logged). */
static int attach_tls(const tamisd_opts_t *o, tamisd_listener_t *ls, size_t n,
                      tamisd_tls_ctx_t **ctx)
{
    bool any = false;
    for (size_t i = 0; i < n; i++)
        any = any || (ls[i].want_tls && ls[i].kind == TAMISD_KIND_SPAMC);
    if (!any)
        return 0;
    char err[512];
    if (tamisd_tls_ctx_new(o, ctx, err, sizeof err) != 0) {
        tamisd_log(TAMISD_LOG_ERR, "TLS: %s", err);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (ls[i].want_tls && ls[i].kind == TAMISD_KIND_SPAMC)
            ls[i].tls = *ctx;
    return 0;
}

static int start_daemon(const tamisd_opts_t *o, tamis_ruleset_t *rs, const tamis_diag_t *diag)
{
    static tamisd_acl_t acl;
    static tamisd_listener_t ls[TAMISD_MAX_LISTEN * 4];
    if (build_acl(o, &acl) != 0) {
        tamis_rules_unref(rs);
        return 64;
    }
    char err[256] = "";
    size_t max = sizeof ls / sizeof ls[0];
    int n = tamisd_listen_all(o, ls, max, err, sizeof err);
    if (n > 0 && (listen_front(o, o->milter, TAMISD_KIND_MILTER, ls, max, &n, err, sizeof err) ||
                  listen_front(o, o->smtp_listen, TAMISD_KIND_SMTP, ls, max, &n, err, sizeof err)))
        n = -1;
    if (n <= 0) {
        tamisd_log(TAMISD_LOG_ERR, "%s", n < 0 ? err : "nothing to listen on");
        tamis_rules_unref(rs);
        return 69;
    }
    /* before daemonizing (errors reach the terminal) and while still root (key files) */
    tamisd_tls_ctx_t *tls = NULL;
    if (attach_tls(o, ls, (size_t)n, &tls) != 0) {
        tamis_rules_unref(rs);
        return 78;
    }
    /* from here on every file is the daemon's alone (pid file, Bayes store); the sockets are
     * bound already, so --socketpath keeps the mode it always had */
    umask(077);
    if (tamisd_limits_start(&o->limits, (unsigned)scan_threads(o), err, sizeof err) != 0)
        tamisd_log(TAMISD_LOG_WARN, "%s", err);
    if (o->daemonize && daemonize() != 0) {
        tamisd_log(TAMISD_LOG_ERR, "cannot daemonize: %s", strerror(errno));
        return 71;
    }
    if (o->pidfile && write_pidfile(o->pidfile) != 0)
        tamisd_log(TAMISD_LOG_WARN, "cannot write pid file %s: %s", o->pidfile, strerror(errno));
    const char *user = o->user;
    if (!user && geteuid() == 0) { /* as spamd: never scan mail as root */
        user = tamisd_limits_fallback_user();
        tamisd_log(TAMISD_LOG_WARN, "started as root without -u: running as %s", user);
    }
    if (user && drop_privileges(user, o->group) != 0) {
        tamis_rules_unref(rs);
        return 71;
    }
    if (tamisd_limits_drop_caps() != 0)
        tamisd_log(TAMISD_LOG_WARN, "cannot drop capabilities: %s", strerror(errno));
    size_thread_pool(o);
    tamisd_jobs_start((unsigned)pool_size(o), !o->local);
    /* after fork and setuid: LMDB environments must not cross a fork, and files are the user's */
    if (tamisd_bayes_start(o, rs, err, sizeof err) != 0)
        tamisd_log(TAMISD_LOG_WARN, "Bayes disabled: %s", err);
    int status = tamisd_serve(o, &acl, ls, (size_t)n, rs, diag);
    tamisd_tls_ctx_free(tls);
    if (o->pidfile)
        unlink(o->pidfile);
    return status;
}

int main(int argc, char **argv)
{
    static tamisd_opts_t o;
    int rc = tamisd_opts_parse(&o, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 64;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write (EFBIG) instead of killing us */
    const char *where = o.syslog_facility;
    if (!where && o.daemonize)
        where = "mail"; /* spamd's default facility */
    if (o.lint || o.test)
        where = NULL;
    if (tamisd_log_open(where, o.debug) != 0) {
        fprintf(stderr, "tamisd: bad -s value: %s\n", where);
        return 64;
    }
    if (o.lint)
        return run_lint(&o);
    tamis_diag_t *diag = tamis_diag_new();
    tamis_ruleset_t *rs = load_startup_rules(&o, diag);
    if (!rs) {
        tamis_diag_free(diag);
        return 78;
    }
    if (o.test) {
        rc = run_test(&o, rs);
        tamis_rules_unref(rs);
    } else {
        rc = start_daemon(&o, rs, diag);
    }
    tamis_diag_free(diag);
    tamisd_log_close();
    return rc;
}
