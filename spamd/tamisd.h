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
 * tls.c      TLS on the spamc listeners (--ssl): OpenSSL behind memory BIOs, driven by server.c
 * dns.c      the resolver of the network tests (one on the loop, shared by the scans)
 * limits.c   access and abuse limits: connection caps, bans, slow clients, the scan backlog,
 *            RLIMIT_NOFILE; the fallback user when started as root (uses ratelimit.c)
 * ratelimit.c  the pure parts of limits.c: the per-address table and the transfer-rate rule
 */
#ifndef TAMISD_H
#define TAMISD_H

#include "tamis/core.h"
#include "tamis/net.h"
#include "tamis/proto.h"
#include "tamis/rules.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define TAMISD_DEFAULT_PORT 783
#define TAMISD_DEFAULT_MAX_SIZE ((size_t)64 * 1024 * 1024)
#define TAMISD_MAX_LISTEN 64
#define TAMISD_MAX_ACL 256
#define TAMISD_MAX_CF 1024
/* spamd's default certificate folder ($LOCAL_RULES_DIR/certs) for --server-cert/--server-key */
#ifndef TAMISD_DEFAULT_CERT_DIR
#define TAMISD_DEFAULT_CERT_DIR "/etc/spamassassin/certs"
#endif

/* ---- limits settings (limits.c) -------------------------------------------------------------
 * Every field is a command-line setting; tamisd_limits_defaults() sets the defaults and
 * tamisd_limits_dump() prints them (--lint). 0 turns a limit off unless said otherwise. */
typedef struct {
    unsigned max_conn;        /* --max-connections: all listeners together */
    unsigned max_conn_per_ip; /* --max-connections-per-ip */
    unsigned max_conn_rate;   /* --max-conn-rate: new connections/s per address (10 s average) */
    unsigned max_failures;    /* --max-failures: failed requests per address per minute */
    unsigned ban_time;        /* --ban-time: seconds an address over a rate limit is refused */
    unsigned timeout_read;    /* --timeout-read: longest silence while a request is read */
    unsigned timeout_write;   /* --timeout-write: longest wait for the client to take a reply */
    unsigned min_rate;        /* --min-rate: bytes/s a request must arrive at ... */
    unsigned min_rate_grace;  /* --min-rate-grace: ... after these seconds ... */
    unsigned min_rate_window; /* --min-rate-window: ... averaged over windows this long */
    unsigned max_queue;       /* --max-queue: scans waiting for a worker (never unbounded) */
} tamisd_limits_cfg_t;

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
    /* TLS on the spamc TCP listeners (tls.c), spamd's names and implications */
    bool ssl;                /* --ssl: every TCP spamc listener; also "-i ssl:addr" */
    bool ssl_verify;         /* --ssl-verify (implied by --ssl-ca-file/--ssl-ca-path) */
    const char *ssl_ca_file; /* --ssl-ca-file: client certificates required, checked */
    const char *ssl_ca_path; /* --ssl-ca-path */
    int ssl_port;            /* --ssl-port: default port of TLS listeners; 0 = --port */
    const char *server_cert; /* --server-cert (default TAMISD_DEFAULT_CERT_DIR/server-cert.pem) */
    const char *server_key;  /* --server-key (default .../server-key.pem) */
    tamisd_limits_cfg_t limits;
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

typedef struct tamisd_tls_ctx tamisd_tls_ctx_t;

typedef struct {
    int fd;
    bool is_unix;
    char name[128]; /* for logs */
    tamisd_kind_t kind;
    bool want_tls;         /* set by tamisd_listen_all (--ssl, "ssl:" prefix) */
    tamisd_tls_ctx_t *tls; /* borrowed; non-NULL: this spamc listener speaks TLS (main.c) */
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

/* ---- TLS (tls.c) ------------------------------------------------------------------------------
 * The server side of TLS without any I/O of its own: ciphertext read from the socket is fed in,
 * plaintext comes out; plaintext to send goes in, ciphertext to write comes out (two memory BIOs).
 * server.c moves the bytes with libuv, so nothing ever blocks the loop. All loop-thread only
 * (OpenSSL's error queue is per thread). TLS 1.2 minimum, ECDHE AEAD suites for 1.2, OpenSSL's
 * defaults for 1.3, server cipher preference, no compression, no renegotiation. */

/* Builds the daemon's one context from o (certificate, key, --ssl-verify CAs). Returns 0, or -1
 * with err set (unreadable file, key not matching the certificate, ...). *out is the caller's:
 * tamisd_tls_ctx_free() it after the loop has ended. */
int tamisd_tls_ctx_new(const tamisd_opts_t *o, tamisd_tls_ctx_t **out, char *err, size_t errlen);
void tamisd_tls_ctx_free(tamisd_tls_ctx_t *ctx);
/* --lint: prints the TLS configuration to f and checks it by building a context. Returns the
 * number of errors (0 when TLS is off). */
int tamisd_tls_lint(const tamisd_opts_t *o, FILE *f);

typedef struct tamisd_tls tamisd_tls_t;
typedef enum {
    TAMISD_TLS_OK = 0,     /* *got plaintext bytes (0: needs more ciphertext) */
    TAMISD_TLS_EOF = 1,    /* the peer sent close_notify */
    TAMISD_TLS_ERROR = -1, /* handshake or record failure: err says why; send the alert, close */
} tamisd_tls_status_t;

/* One connection (server side). Returns NULL when out of memory; free with tamisd_tls_free. */
tamisd_tls_t *tamisd_tls_new(tamisd_tls_ctx_t *ctx);
void tamisd_tls_free(tamisd_tls_t *t);
/* Queues ciphertext read from the peer (copied). Returns 0 or -1 (out of memory). */
int tamisd_tls_feed(tamisd_tls_t *t, const char *data, size_t len);
/* Advances the handshake, then decrypts up to cap bytes into buf. Call until *got is 0. */
tamisd_tls_status_t tamisd_tls_read(tamisd_tls_t *t, char *buf, size_t cap, size_t *got, char *err,
                                    size_t errlen);
/* Encrypts p (may be empty) and, with last, a close_notify; appends the records to out. Returns 0,
 * or -1 before the handshake completed or when out of memory. */
int tamisd_tls_encrypt(tamisd_tls_t *t, const char *p, size_t n, bool last, tamis_buf_t *out);
/* Moves the ciphertext waiting to be sent (handshake, tickets, alerts) to the end of out.
 * Returns 0 or -1 (out of memory). */
int tamisd_tls_take(tamisd_tls_t *t, tamis_buf_t *out);
bool tamisd_tls_established(const tamisd_tls_t *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" and, when one was verified, " client=/CN=..." */
void tamisd_tls_describe(const tamisd_tls_t *t, char *buf, size_t len);
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
/* Counts one scan's sequential DNSBL rounds and SPF/DKIM/DMARC rounds (any thread); the
 * distributions go out with the dns stats line. */
void tamisd_dns_note_rounds(unsigned rounds, unsigned auth_rounds);
/* Warns once per zone per 5 minutes about lists that refused us (any thread). */
void tamisd_dns_warn_blocked(const char *zones);
/* ---- access and abuse limits (limits.c, ratelimit.c) ------------------------------------------
 * Loop-thread only, except tamisd_limits_start* (main, before the loop). Front ends embed one
 * tamisd_slot_t per connection: admit() fills it, release() (idempotent) gives it back. */

#define TAMISD_LIMITS_OPT_BASE 1000 /* getopt codes of the limits options */
#define TAMISD_IPTABLE_SIZE 8192    /* addresses tracked; the least useful is evicted */
#define TAMISD_IPTABLE_PROBE 16

/* An address as the table keys it: IPv4-mapped IPv6 is IPv4, other IPv6 addresses count per
 * /64 (shown as "2001:db8:1:2::/64"). family 0 = none (Unix socket). */
typedef struct {
    int family;
    unsigned char addr[16];
} tamisd_ipkey_t;

/* The transfer-rate rule of one connection while it reads a request. Times in ms. */
typedef struct {
    double start, win_start, last_rx;
    uint64_t win_bytes;
} tamisd_rate_t;

typedef struct tamisd_slot tamisd_slot_t;
typedef void (*tamisd_slow_cb)(void *arg, const char *why);
struct tamisd_slot {
    tamisd_ipkey_t key;
    bool held;     /* counts in the totals until released */
    bool watching; /* on the slow-client list */
    tamisd_rate_t rate;
    tamisd_slow_cb on_slow;
    void *arg;
    tamisd_slot_t *prev, *next;
};

/* The per-address table (ratelimit.c, pure: the caller passes the time). Fixed size, no
 * allocation after init; when a probe window is full the least useful entry is replaced. */
typedef struct {
    tamisd_ipkey_t key; /* family 0 = empty slot */
    unsigned conns;
    double conn_level, fail_level; /* leaky buckets */
    double last_ms;                /* the levels' last leak */
    double ban_until;              /* 0 = not banned */
    double ban_start;
} tamisd_ipentry_t;

typedef struct {
    tamisd_ipentry_t *slots;
    size_t cap; /* power of two */
    unsigned per_ip, conn_rate, failures;
    double ban_ms;
    size_t banned; /* entries with a ban, so expiry sweeps are free when there are none */
} tamisd_iptable_t;

typedef enum {
    TAMISD_ADMIT_OK = 0,
    TAMISD_ADMIT_BANNED,    /* refused: a ban is running */
    TAMISD_ADMIT_BAN_START, /* refused: over --max-conn-rate, a ban starts now */
    TAMISD_ADMIT_RATE,      /* refused: over --max-conn-rate, bans are off */
    TAMISD_ADMIT_PER_IP,    /* refused: --max-connections-per-ip */
    TAMISD_ADMIT_TOTAL,     /* refused: --max-connections */
} tamisd_admit_t;

/* Returns 0, or -1 when out of memory. cap is rounded up to a power of two. */
int tamisd_iptable_init(tamisd_iptable_t *t, size_t cap, const tamisd_limits_cfg_t *cfg);
void tamisd_iptable_free(tamisd_iptable_t *t);
/* sa's key; AF_UNIX or unknown families give family 0. */
void tamisd_ipkey(const struct sockaddr *sa, tamisd_ipkey_t *k);
void tamisd_ipkey_str(const tamisd_ipkey_t *k, char *buf, size_t len);
/* A new connection from k. *counted: it was admitted and counted (conns + 1; disconnect once);
 * an admitted address the full table cannot track is not counted. */
tamisd_admit_t tamisd_iptable_connect(tamisd_iptable_t *t, const tamisd_ipkey_t *k, double now,
                                      bool *counted);
void tamisd_iptable_disconnect(tamisd_iptable_t *t, const tamisd_ipkey_t *k);
/* A failed request from k. Returns true when this failure starts a ban. */
bool tamisd_iptable_fail(tamisd_iptable_t *t, const tamisd_ipkey_t *k, double now);
/* Ends the bans that are over; calls cb (may be NULL) once for each. Returns how many. */
size_t tamisd_iptable_expire(tamisd_iptable_t *t, double now,
                             void (*cb)(const tamisd_ipkey_t *k, double banned_ms, void *arg),
                             void *arg);
/* The entry for k, or NULL (tests and logs). */
const tamisd_ipentry_t *tamisd_iptable_find(const tamisd_iptable_t *t, const tamisd_ipkey_t *k);

void tamisd_rate_begin(tamisd_rate_t *r, double now);
void tamisd_rate_feed(tamisd_rate_t *r, size_t n, double now);
/* 0 = fine; 1 = silent for more than idle_s; 2 = under min_rate bytes/s over a window of
 * window_s seconds that ended after grace_s. *rate gets the window's rate (may be NULL). */
int tamisd_rate_check(tamisd_rate_t *r, double now, const tamisd_limits_cfg_t *cfg, double *rate);

/* Options: the long options to splice into getopt's table, the defaults, one option, the help
 * text and the --lint dump. tamisd_limits_opt returns 0 or -1 (message printed). */
#define TAMISD_LIMITS_LONG_OPTS                                                                    \
    {"max-connections", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 0},                      \
        {"max-connections-per-ip", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 1},           \
        {"max-conn-rate", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 2},                    \
        {"max-failures", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 3},                     \
        {"ban-time", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 4},                         \
        {"timeout-read", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 5},                     \
        {"timeout-write", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 6},                    \
        {"min-rate", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 7},                         \
        {"min-rate-grace", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 8},                   \
        {"min-rate-window", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 9},                  \
    {                                                                                              \
        "max-queue", required_argument, NULL, TAMISD_LIMITS_OPT_BASE + 10                          \
    }
#define TAMISD_LIMITS_OPT_COUNT 11
void tamisd_limits_defaults(tamisd_limits_cfg_t *cfg);
int tamisd_limits_opt(tamisd_limits_cfg_t *cfg, int code, const char *arg);
void tamisd_limits_usage(FILE *f);
/* Prints "setting NAME VALUE" lines: these settings and the other limits of o (--allowed-ips,
 * -u/-g, the spamd timeouts, --max-size). */
void tamisd_limits_dump(const tamisd_opts_t *o, FILE *f);

/* Start-up (main thread, before the loop): raises RLIMIT_NOFILE's soft limit to the hard limit,
 * sizes the table, logs the connection capacity. workers = the thread pool's size. 0 or -1. */
int tamisd_limits_start(const tamisd_limits_cfg_t *cfg, unsigned workers, char *err, size_t errlen);
/* Started as root without -u: the user to run as ("tamis" if it exists, else "nobody"). */
const char *tamisd_limits_fallback_user(void);
/* Not root (any more): clears every capability, such as the CAP_NET_BIND_SERVICE a service
 * manager granted for binding port 783, once the sockets are bound. 0 or -1 (errno set). */
int tamisd_limits_drop_caps(void);
/* The loop's side: a sweep timer (unreferenced) for slow clients and ban expiry. */
int tamisd_limits_attach(struct uv_loop_s *loop);
void tamisd_limits_detach(void);
/* A new connection on any listener (sa NULL: a Unix-socket peer, which only counts in the
 * total). Returns TAMISD_ADMIT_OK with s held, or the refusal, having logged it. */
tamisd_admit_t tamisd_limits_admit(tamisd_slot_t *s, const struct sockaddr *sa, const char *front);
void tamisd_limits_release(tamisd_slot_t *s);
/* sa is banned: checked before --allowed-ips, so that a banned address is dropped silently
 * instead of logging an ACL refusal per connection. */
bool tamisd_limits_banned(const struct sockaddr *sa);
/* The request is answered and the connection only lingers (bounded): it stops counting for its
 * address, so a client's next request is not refused while the last one drains; it still
 * counts in the total until released. */
void tamisd_limits_answered(tamisd_slot_t *s);
/* A failed request (protocol error, ACL refusal, timeout, slow client): may start a ban. */
void tamisd_limits_fail(const tamisd_ipkey_t *k, const char *what);
void tamisd_limits_fail_addr(const struct sockaddr *sa, const char *what);
/* Watch a held slot while it reads a request: on_slow(arg, why) runs from the sweep, once, when
 * the client is silent for --timeout-read or under --min-rate; the slot is then unwatched. */
void tamisd_limits_watch(tamisd_slot_t *s, tamisd_slow_cb on_slow, void *arg);
void tamisd_limits_feed(tamisd_slot_t *s, size_t n);
void tamisd_limits_unwatch(tamisd_slot_t *s);
/* The scan backlog (all front ends): job_admit is false when workers + --max-queue scans are
 * already in flight; every admitted job ends with one job_done. */
bool tamisd_limits_job_admit(void);
void tamisd_limits_job_done(void);
unsigned tamisd_limits_write_ms(void); /* --timeout-write in ms, 0 = none */
/* Best effort, never blocking, for a connection about to be closed at once: writes line, then
 * reads what the client already sent, so that the close is not a reset that destroys the line
 * in the client's buffer. */
void tamisd_limits_refuse(struct uv_stream_s *s, const char *line);

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
/* CPU slots (job.c): at start-up, before the loop. gated: the pool has more threads than
 * cpu_workers (network tests on), so at most cpu_workers scans compute at once; a scan releases
 * its slot while it waits for DNS (tamis_net_opts_t wait hooks) and acquires one again after. */
void tamisd_jobs_start(unsigned cpu_workers, bool gated);
void tamisd_cpu_release(void *arg);
void tamisd_cpu_acquire(void *arg);
/* Frees the buffers of j (not j itself). */
void tamisd_scan_clear(tamisd_scan_t *j);

#endif
