/*
 * tamisd: the spamd-compatible daemon. Private declarations shared by its source files.
 *
 * main.c     options, --lint, --test, daemonizing, privileges, start-up order
 * options.c  the command line (spamd's option names)
 * listen.c   binding TCP and Unix sockets before the event loop exists (so we can fork and drop
 *            privileges after binding)
 * acl.c      --allowed-ips
 * server.c   the libuv loop thread: accept, read with timeouts, write, signals, reload
 * job.c      what runs on worker threads: one scan and its reply bytes
 * log.c      one line per event to stderr, a file or syslog (thread-safe)
 * milter.c   the milter listener (Postfix smtpd_milters, before queue)
 * smtp.c     the SMTP content filter listener and its re-injection client (after queue)
 * smtp_scan.c  scans for milter.c and smtp.c through job.c's worker job
 * dns.c      the resolver of the network tests (one on the loop, shared by the scans)
 */
#ifndef TAMISD_H
#define TAMISD_H

#include "tamis/core.h"
#include "tamis/net.h"
#include "tamis/proto.h"
#include "tamis/rules.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define TAMISD_DEFAULT_PORT 783
#define TAMISD_DEFAULT_MAX_SIZE ((size_t)64 * 1024 * 1024)
#define TAMISD_MAX_LISTEN 64
#define TAMISD_MAX_ACL 256
#define TAMISD_MAX_CF 1024

/* ---- options ------------------------------------------------------------------------------- */

typedef struct {
    const char *listen[TAMISD_MAX_LISTEN]; /* -i host[:port] */
    size_t listen_count;
    int port;                            /* -p, default 783 */
    const char *allowed[TAMISD_MAX_ACL]; /* -A entries (comma lists already split) */
    size_t allowed_count;
    const char *socketpath; /* --socketpath */
    unsigned workers;       /* -m; 0 = number of cores */
    bool daemonize;         /* -d */
    const char *pidfile;    /* -r */
    const char *user;       /* -u */
    const char *group;      /* -g */
    int family;             /* -4 / -6: 4 or 6; 0 = both */
    const char *configpath; /* -C */
    const char *siteconfigpath;
    const char *cf[TAMISD_MAX_CF]; /* --cf */
    size_t cf_count;
    bool local;                  /* -L */
    bool debug;                  /* -D */
    bool allow_tell;             /* -l */
    const char *state_dir;       /* --state-dir: holds bayes/ and cache/ (default compiled in) */
    const char *bayes_path;      /* --bayes-path: Bayes store folder (default <state>/bayes) */
    const char *syslog_facility; /* -s */
    unsigned timeout_tcp;        /* seconds, 0 = none */
    unsigned timeout_child;
    size_t max_size;
    bool lint, test;
    /* mail-server front ends (docs/postfix.md) */
    const char *milter;      /* --milter host:port or /path */
    const char *smtp_listen; /* --smtp-listen host:port */
    const char *smtp_relay;  /* --smtp-relay host:port */
    const char *smtp_helo;   /* --smtp-helo: our own name, never Postfix's */
    double reject_score;     /* --reject-score: reject at or above; 0 = never */
    double quarantine_score; /* --quarantine-score (milter): hold queue at or above; 0 = never */
    bool no_add_headers;     /* --no-add-headers */
    unsigned timeout_mta;    /* --timeout-mta: idle wait for the MTA, seconds */
} tamisd_opts_t;

/* Parses argv into o. Returns 0 to run, 1 when done (help/version printed: exit 0), or -1 on a
 * usage error (message printed to stderr: exit 64). Strings point into argv or static storage. */
int tamisd_opts_parse(tamisd_opts_t *o, int argc, char **argv);

/* ---- logging --------------------------------------------------------------------------------- */

typedef enum { TAMISD_LOG_ERR, TAMISD_LOG_WARN, TAMISD_LOG_INFO, TAMISD_LOG_DEBUG } tamisd_level_t;

/* where: NULL or "stderr" = stderr; a path with '/' = that file; else a syslog facility name.
 * Returns 0 or -1 (unknown facility, unopenable file). */
int tamisd_log_open(const char *where, bool debug);
void tamisd_log(tamisd_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tamisd_log_close(void);

/* ---- access control -------------------------------------------------------------------------- */

typedef struct {
    int family; /* AF_INET / AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
} tamisd_acl_entry_t;

typedef struct {
    tamisd_acl_entry_t items[TAMISD_MAX_ACL];
    size_t count;
} tamisd_acl_t;

/* Adds "10.0.0.0/8", "127.0.0.1", "::1", "2001:db8::/32" or a dotted prefix "192.168.". */
int tamisd_acl_add(tamisd_acl_t *acl, const char *text);
bool tamisd_acl_allows(const tamisd_acl_t *acl, const struct sockaddr *sa);
/* Formats sa's address (IPv4-mapped IPv6 shown as IPv4) and port. */
void tamisd_addr_str(const struct sockaddr *sa, char *buf, size_t len, int *port);

/* ---- listening sockets ----------------------------------------------------------------------- */

typedef enum { TAMISD_KIND_SPAMC = 0, TAMISD_KIND_MILTER, TAMISD_KIND_SMTP } tamisd_kind_t;

typedef struct {
    int fd;
    bool is_unix;
    char name[128]; /* for logs */
    tamisd_kind_t kind;
} tamisd_listener_t;

/* Binds and listens on every -i address (or the defaults) and on --socketpath. Fills out (up to
 * max); returns the count or -1 with err set. */
int tamisd_listen_all(const tamisd_opts_t *o, tamisd_listener_t *out, size_t max, char *err,
                      size_t errlen);

/* ---- rules ----------------------------------------------------------------------------------- */

/* Loads the rule set the options name. Diagnostics go to diag (may be NULL). */
/* The state folder: --state-dir, or the compiled-in default. Never NULL. */
const char *tamisd_state_dir(const tamisd_opts_t *o);
int tamisd_rules_load(const tamisd_opts_t *o, tamis_ruleset_t **out, tamis_diag_t *diag, char *err,
                      size_t errlen);
/* Logs diag entries at level >= min with file:line. Returns the number of ERROR entries. */
size_t tamisd_log_diag(const tamis_diag_t *diag, tamis_diag_level_t min);

/* ---- server ---------------------------------------------------------------------------------- */

/* Runs the loop until SIGTERM/SIGINT. Takes the reference on rs; diag holds the warnings rs was
 * loaded with (a reload that adds new ones is refused). Returns the exit status. */
int tamisd_serve(const tamisd_opts_t *o, const tamisd_acl_t *acl, tamisd_listener_t *ls, size_t n,
                 tamis_ruleset_t *rs, const tamis_diag_t *diag);

/* ---- what the MTA front ends (milter.c, smtp.c) get from the server ----------------------------
 * All of these are loop-thread only. hold(+1) per open front-end connection and per scan keeps
 * a SIGTERM shutdown waiting for them; hold(-1) when it ends. */

struct server;
struct uv_loop_s;
struct uv_stream_s;
struct uv_loop_s *tamisd_server_loop(struct server *srv);
const tamisd_opts_t *tamisd_server_opts(struct server *srv);
const tamisd_acl_t *tamisd_server_acl(struct server *srv);
tamis_ruleset_t *tamisd_server_rules_ref(struct server *srv);
bool tamisd_server_stopping(const struct server *srv);
void tamisd_server_hold(struct server *srv, int delta);
unsigned long tamisd_server_next_id(struct server *srv);

/* The resolver for a scan job (NULL with -L or when it could not start): acquire when the job
 * is queued, release when its result is back on the loop (a reload may replace it meanwhile). */
struct tamisd_dns *tamisd_server_dns_acquire(struct server *srv);
void tamisd_server_dns_release(struct server *srv, struct tamisd_dns *d);

/* Accept one connection on a milter / SMTP listener (the ACL is checked by the callee). */
void tamisd_milter_accept(struct server *srv, struct uv_stream_s *listener, bool is_unix);
void tamisd_smtp_accept(struct server *srv, struct uv_stream_s *listener, bool is_unix);
/* SIGTERM: close the connections that are between messages. */
void tamisd_milter_stop(struct server *srv);
void tamisd_smtp_stop(struct server *srv);

/* Scans for the MTA front ends (smtp_scan.c): the spamc path's job (tamisd_scan_run on the thread
 * pool), asked for PROCESS (whole rewritten message) or HEADERS (header block only). */
typedef struct {
    int rc; /* 0 = scanned; TAMIS_ELIMIT = over --max-size; other = internal error */
    bool is_spam;
    double score;          /* as shown in the reply, one decimal */
    tamis_slice_t message; /* rewritten message or header block, CRLF as in the input */
    const char *err;
} tamisd_mta_result_t;
typedef struct tamisd_mta_job tamisd_mta_job_t;
typedef void (*tamisd_mta_done_t)(void *arg, const tamisd_mta_result_t *r);
/* Queues a scan of msg (its storage is taken over). id names the message in the log (the queue
 * id when the MTA told us). done runs later on the loop thread, never from inside this call;
 * returns NULL (and done never runs) when the job cannot be queued. */
tamisd_mta_job_t *tamisd_mta_scan(struct server *srv, tamis_buf_t *msg, bool whole, const char *id,
                                  const char *addr, const char *host, tamisd_mta_done_t done,
                                  void *arg);
/* The caller goes away: done will not run; the job frees itself. */
void tamisd_mta_scan_cancel(tamisd_mta_job_t *j);

/* ---- DNS (dns.c; loop thread unless said otherwise) --------------------------------------------
 * On SIGUSR1 and at shutdown the server logs one info line:
 *   dns stats: queries=N sent=N merged=N cache_hits=N timeouts=N errors=N nxdomain=N */

typedef struct tamisd_dns tamisd_dns_t;
/* Creates the resolver from c's dns_server lines (none: /etc/resolv.conf). Logs failures. */
int tamisd_dns_start(struct uv_loop_s *loop, const tamis_conf_t *c, tamisd_dns_t **out);
tamis_net_t *tamisd_dns_net(const tamisd_dns_t *d);
/* c's dns_server list as one string ("" = resolv.conf); any thread. */
const char *tamisd_dns_servers_of(const tamis_conf_t *c);
/* Was d built from the same dns_server list and rbl_timeout as c has? */
bool tamisd_dns_same(const tamisd_dns_t *d, const tamis_conf_t *c);
/* Adds d's counters to *acc (NULL d: nothing). */
void tamisd_dns_stats_add(const tamisd_dns_t *d, tamis_net_stats_t *acc);
/* Logs the "dns stats:" line: base (may be NULL) plus d's counters (NULL d: base alone). */
void tamisd_dns_log_stats(const tamisd_dns_t *d, const tamis_net_stats_t *base);
tamisd_dns_t *tamisd_dns_acquire(tamisd_dns_t *d); /* one more user; NULL-safe */
void tamisd_dns_release(tamisd_dns_t *d);          /* frees a retired resolver's last use */
void tamisd_dns_retire(tamisd_dns_t *d);           /* no new users; freed when unused */
/* Warns once per zone per 5 minutes about lists that refused us (any thread). */
void tamisd_dns_warn_blocked(const char *zones);

/* ---- scan jobs (worker threads) -------------------------------------------------------------- */

typedef struct {
    /* in */
    tamis_ruleset_t *rs;
    tamis_verb_t verb;
    double version;
    tamis_slice_t body;
    const char *remote_addr;
    const char *remote_host;
    const char *user;
    const char *id;
    bool local;
    tamis_net_t *net; /* resolver for the network tests, or NULL (-L, none) */
    double budget_ms;
    size_t max_size; /* --max-size */
    /* TELL (verb TAMIS_VERB_TELL): Message-class and the Set/Remove TAMIS_TELL_* bits */
    const char *tell_class;
    unsigned tell_set, tell_remove;
    /* out */
    tamis_buf_t reply; /* bytes to send; empty = send nothing */
    tamis_buf_t log;   /* the per-message log line */
    int rc;
    char err[256];
} tamisd_scan_t;

/* Scans (or, for TELL, learns/forgets) and builds the reply bytes. Runs on a worker thread; the
 * only shared state it touches is the Bayes environment (LMDB serialises its writers). */
void tamisd_scan_run(tamisd_scan_t *j);
/* At start-up (after privileges are dropped, before the loop): opens, creating it if needed, the
 * Bayes store at o->bayes_path (or the default) unless the rules say use_bayes 0; scans and TELL
 * use it from then on, one handle per worker thread and user. Returns 0, or a negative TAMIS_E*
 * (err set: Bayes stays off, the daemon runs on). */
int tamisd_bayes_start(const tamisd_opts_t *o, const tamis_ruleset_t *rs, char *err, size_t errlen);
/* Frees the buffers of j (not j itself). */
void tamisd_scan_clear(tamisd_scan_t *j);

#endif
