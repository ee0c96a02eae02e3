/*
 * The tamisd server: one libuv loop thread owns every socket, timer and signal; scans run on the
 * libuv thread pool (sized from -m before the loop starts) and never on the loop.
 *
 * A connection goes READ → (SCAN) → WRITE → LINGER → closed. While reading, the protocol parser
 * (lib/proto) validates the request exactly as spamd does; a timer bounds the wait, first with
 * --timeout-tcp for the request line, then with --timeout-child for the rest of the request
 * (headers, body, scan). On expiry the client gets spamd's "79 Timeout" line even while its scan
 * is still running: the worker's result is then dropped when it arrives. LINGER half-closes and
 * drains what the client still sends for a short while, so the reply is never destroyed by a
 * reset from unread input.
 *
 * The rule set is reference-counted: each scan holds a reference taken on the loop thread. SIGHUP
 * loads a new set on a worker thread and swaps it here; SIGTERM/SIGINT stop accepting, let
 * requests in flight finish, and end the loop.
 */
#include "tamisd.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define READ_BUF_SIZE 65536
#define LINGER_MS 2000

typedef struct server server_t;
typedef struct conn conn_t;

typedef struct {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } h;
    server_t *srv;
    bool is_unix;
    tamisd_kind_t kind;
    char name[128];
} listener_t;

struct server {
    uv_loop_t *loop;
    const tamisd_opts_t *o;
    const tamisd_acl_t *acl;
    tamis_ruleset_t *rules;
    listener_t *ls;
    size_t nls;
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
    tamisd_dns_t *dns;          /* the current resolver (NULL: -L, or it did not start) */
    tamis_net_stats_t dns_base; /* counters of the resolvers a reload replaced */
    bool stopping, reloading, closed;
    size_t conns, jobs;
    unsigned long next_id;
    conn_t *head; /* all open connections */
    char **known; /* "file\ttext" of the running set's warnings, sorted (reload policy) */
    size_t nknown;
    char rbuf[READ_BUF_SIZE]; /* shared: read callbacks consume it before the next allocation */
};

typedef enum { C_READ, C_SCAN, C_WRITE, C_LINGER, C_CLOSING } conn_phase_t;

typedef struct job job_t;

struct conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } h;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    server_t *srv;
    conn_t *prev, *next;
    unsigned long id;
    char addr[64];
    int port;
    bool is_unix;
    tamis_proto_req_t *req;
    conn_phase_t phase;
    bool child_timer; /* the timer runs with --timeout-child */
    double t0, child_t0;
    job_t *job;
    tamis_buf_t out;
    int open_handles;
};

struct job {
    uv_work_t work;
    server_t *srv;
    conn_t *conn; /* NULL once the connection gave up (timeout, close) */
    tamis_proto_req_t *req;
    tamisd_scan_t scan;
    tamisd_dns_t *dns; /* the resolver this scan uses (one use held) */
    char addr[64];
    char id[24];
    double t0;
};

static void begin_linger(conn_t *c);
static void close_conn(conn_t *c);
static void maybe_exit(server_t *srv);

/* ---- helpers ------------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    server_t *srv = ((conn_t *)h->data)->srv;
    *buf = uv_buf_init(srv->rbuf, sizeof srv->rbuf);
}

static void on_write(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    if (status < 0 || c->phase == C_CLOSING) {
        close_conn(c);
        return;
    }
    begin_linger(c);
}

/* Sends bytes (copied) and then lingers. An empty reply goes straight to LINGER (SKIP). */
static void send_bytes(conn_t *c, const char *p, size_t n)
{
    tamis_buf_reset(&c->out);
    if (n == 0) {
        begin_linger(c);
        return;
    }
    if (tamis_buf_append(&c->out, p, n) != 0) {
        close_conn(c);
        return;
    }
    c->phase = C_WRITE;
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_write) != 0)
        close_conn(c);
}

static void send_error(conn_t *c, int code, const char *kind, const char *detail)
{
    char line[512];
    snprintf(line, sizeof line, "SPAMD/1.0 %d %s: %s\r\n", code, kind, detail);
    send_bytes(c, line, strlen(line));
}

static void discard_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        close_conn(s->data);
}

static void on_linger_timer(uv_timer_t *t)
{
    close_conn(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    if (status < 0 || c->phase == C_CLOSING) {
        close_conn(c);
        return;
    }
    uv_timer_start(&c->timer, on_linger_timer, LINGER_MS, 0);
    int rc = uv_read_start(&c->h.stream, alloc_cb, discard_read);
    if (rc != 0 && rc != UV_EALREADY)
        close_conn(c);
}

/* Half-closes, then drains input until EOF or LINGER_MS, so the peer reads our reply intact. */
static void begin_linger(conn_t *c)
{
    c->phase = C_LINGER;
    uv_timer_stop(&c->timer);
    uv_read_stop(&c->h.stream);
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, &c->h.stream, on_shutdown) != 0)
        close_conn(c);
}

static void on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->open_handles > 0)
        return;
    server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    tamis_proto_req_free(c->req);
    tamis_buf_free(&c->out);
    free(c);
    srv->conns--;
    maybe_exit(srv);
}

/* Detaches a running scan: its result will be dropped when the worker finishes. */
static void detach_job(conn_t *c)
{
    if (!c->job)
        return;
    c->job->conn = NULL;
    uv_cancel((uv_req_t *)&c->job->work);
    c->job = NULL;
}

static void close_conn(conn_t *c)
{
    if (c->phase == C_CLOSING)
        return;
    c->phase = C_CLOSING;
    detach_job(c);
    uv_close(&c->h.handle, on_close);
    uv_close((uv_handle_t *)&c->timer, on_close);
}

/* ---- scans ------------------------------------------------------------------------------------
 */

static void work_cb(uv_work_t *w)
{
    job_t *j = w->data;
    tamisd_scan_run(&j->scan);
}

static void free_job(job_t *j)
{
    tamisd_server_dns_release(j->srv, j->dns);
    tamis_rules_unref(j->scan.rs);
    tamis_proto_req_free(j->req);
    tamisd_scan_clear(&j->scan);
    free(j);
}

static void too_big(conn_t *c)
{
    char detail[128];
    snprintf(detail, sizeof detail, "message too big (limit %zu bytes)", c->srv->o->max_size);
    tamisd_log(TAMISD_LOG_WARN, "conn=%lu: %s", c->id, detail);
    send_error(c, TAMIS_EX_UNAVAILABLE, "Service Unavailable", detail);
}

static void after_work_cb(uv_work_t *w, int status)
{
    job_t *j = w->data;
    server_t *srv = j->srv;
    conn_t *c = j->conn;
    srv->jobs--;
    double ms = tamis_now_ms() - j->t0;
    if (status == UV_ECANCELED) {
        tamisd_log(TAMISD_LOG_INFO, "conn=%s: scan cancelled", j->id);
    } else if (j->scan.rc != 0) {
        tamisd_log(TAMISD_LOG_ERR, "conn=%s: scan failed: %s", j->id,
                   j->scan.err[0] ? j->scan.err : tamis_strerror(j->scan.rc));
    } else {
        /* the scan's own line has verdict, hits, user and scan time; add the request's total */
        tamisd_log(TAMISD_LOG_INFO, "%s conn=%s total_ms=%.1f%s",
                   j->scan.log.data ? j->scan.log.data : "", j->id, ms, c ? "" : " (client gone)");
    }
    if (c) {
        c->job = NULL;
        if (status == 0 && j->scan.rc == 0)
            send_bytes(c, j->scan.reply.data ? j->scan.reply.data : "", j->scan.reply.len);
        else if (status == 0 && j->scan.rc == TAMIS_ELIMIT)
            too_big(c);
        else
            begin_linger(c); /* spamd closes without a reply when a scan dies */
    }
    free_job(j);
    maybe_exit(srv);
}

static double child_budget_ms(const conn_t *c)
{
    unsigned t = c->srv->o->timeout_child;
    if (!t)
        return 0;
    double left = t * 1000.0 - (tamis_now_ms() - c->child_t0);
    return left > 1 ? left : 1;
}

static void start_scan(conn_t *c)
{
    server_t *srv = c->srv;
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        close_conn(c);
        return;
    }
    j->srv = srv;
    j->conn = c;
    j->req = c->req;
    c->req = NULL;
    j->t0 = c->t0;
    snprintf(j->addr, sizeof j->addr, "%s", c->addr);
    snprintf(j->id, sizeof j->id, "%lu", c->id);
    tamisd_scan_t *s = &j->scan;
    s->rs = tamis_rules_ref(srv->rules);
    s->verb = tamis_proto_req_verb(j->req);
    s->version = tamis_proto_req_version(j->req);
    s->body = tamis_proto_req_body(j->req);
    s->remote_addr = j->addr;
    s->remote_host =
        (c->is_unix || strcmp(c->addr, "127.0.0.1") == 0 || strcmp(c->addr, "::1") == 0)
            ? "localhost"
            : j->addr;
    s->user = tamis_proto_req_user(j->req);
    s->id = j->id;
    s->local = srv->o->local;
    j->dns = tamisd_server_dns_acquire(srv);
    s->net = tamisd_dns_net(j->dns);
    s->budget_ms = child_budget_ms(c);
    s->max_size = srv->o->max_size;
    if (s->verb == TAMIS_VERB_TELL) { /* learning runs on the worker thread too (job.c) */
        s->tell_class = tamis_proto_req_message_class(j->req);
        s->tell_set = tamis_proto_req_set(j->req);
        s->tell_remove = tamis_proto_req_remove(j->req);
    }
    j->work.data = j;
    if (uv_queue_work(srv->loop, &j->work, work_cb, after_work_cb) != 0) {
        free_job(j);
        close_conn(c);
        return;
    }
    srv->jobs++;
    c->job = j;
    c->phase = C_SCAN;
}

/* ---- reading ----------------------------------------------------------------------------------
 */

static void dispatch(conn_t *c)
{
    tamis_verb_t verb = tamis_proto_req_verb(c->req);
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    uv_read_stop(&c->h.stream);
    if (verb == TAMIS_VERB_SKIP) {
        tamisd_log(TAMISD_LOG_INFO, "conn=%lu: skipped large message", c->id);
        begin_linger(c);
    } else if (verb == TAMIS_VERB_PING) {
        tamis_proto_reply_pong(&out);
        send_bytes(c, out.data, out.len);
    } else if (tamis_proto_req_too_big(c->req)) {
        too_big(c);
    } else {
        start_scan(c);
    }
    tamis_buf_free(&out);
}

static void on_timer(uv_timer_t *t);

static void arm_child_timer(conn_t *c)
{
    c->child_timer = true;
    c->child_t0 = tamis_now_ms();
    unsigned secs = c->srv->o->timeout_child;
    if (secs)
        uv_timer_start(&c->timer, on_timer, (uint64_t)secs * 1000, 0);
    else
        uv_timer_stop(&c->timer);
}

static void handle_state(conn_t *c, tamis_proto_state_t st)
{
    if (st == TAMIS_PROTO_NEED_MORE) {
        if (!c->child_timer && tamis_proto_req_line_done(c->req))
            arm_child_timer(c);
        return;
    }
    if (st == TAMIS_PROTO_ERROR) {
        const char *line = tamis_proto_req_error_line(c->req);
        tamisd_log(TAMISD_LOG_WARN, "conn=%lu: bad protocol: %.*s", c->id,
                   (int)(strlen(line) > 2 ? strlen(line) - 2 : 0), line);
        uv_timer_stop(&c->timer);
        send_bytes(c, line, strlen(line));
        return;
    }
    if (!c->child_timer)
        arm_child_timer(c);
    dispatch(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (c->phase != C_READ)
        return;
    if (nread > 0) {
        handle_state(c, tamis_proto_req_feed(c->req, buf->base, (size_t)nread));
    } else if (nread == UV_EOF) {
        uv_read_stop(s);
        handle_state(c, tamis_proto_req_finish(c->req));
    } else if (nread < 0) {
        tamisd_log(TAMISD_LOG_DEBUG, "conn=%lu: read error: %s", c->id, uv_strerror((int)nread));
        close_conn(c);
    }
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->phase != C_READ && c->phase != C_SCAN) {
        close_conn(c); /* a client that does not read its reply */
        return;
    }
    char detail[128];
    if (c->child_timer)
        snprintf(detail, sizeof detail, "(%u second timeout while trying to %s)",
                 c->srv->o->timeout_child,
                 tamis_proto_verb_name(c->req ? tamis_proto_req_verb(c->req) : c->job->scan.verb));
    else
        snprintf(detail, sizeof detail, "(%u second socket timeout reading input from client)",
                 c->srv->o->timeout_tcp);
    tamisd_log(TAMISD_LOG_WARN, "conn=%lu: timeout: %s", c->id, detail);
    detach_job(c);
    uv_read_stop(&c->h.stream);
    send_error(c, TAMIS_EX_TIMEOUT, "Timeout", detail);
}

/* ---- accepting --------------------------------------------------------------------------------
 */

static bool peer_allowed(conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0)
        return false;
    tamisd_addr_str((struct sockaddr *)&ss, c->addr, sizeof c->addr, &c->port);
    bool ok = tamisd_acl_allows(c->srv->acl, (struct sockaddr *)&ss);
    if (!ok)
        tamisd_log(TAMISD_LOG_WARN, "unauthorized connection from [%s]:%d", c->addr, c->port);
    else
        tamisd_log(TAMISD_LOG_DEBUG, "connection from [%s]:%d", c->addr, c->port);
    return ok;
}

static conn_t *conn_new(server_t *srv, listener_t *l)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = srv;
    c->is_unix = l->is_unix;
    c->id = ++srv->next_id;
    c->t0 = tamis_now_ms();
    tamis_buf_init(&c->out, 0);
    if (l->is_unix)
        uv_pipe_init(srv->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(srv->loop, &c->h.tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->h.handle.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = srv->head;
    if (srv->head)
        srv->head->prev = c;
    srv->head = c;
    srv->conns++;
    snprintf(c->addr, sizeof c->addr, "127.0.0.1");
    return c;
}

static void on_connection(uv_stream_t *ls, int status)
{
    listener_t *l = ls->data;
    server_t *srv = l->srv;
    if (status < 0 || srv->stopping)
        return;
    if (l->kind == TAMISD_KIND_MILTER) {
        tamisd_milter_accept(srv, ls, l->is_unix);
        return;
    }
    if (l->kind == TAMISD_KIND_SMTP) {
        tamisd_smtp_accept(srv, ls, l->is_unix);
        return;
    }
    conn_t *c = conn_new(srv, l);
    if (!c)
        return;
    if (uv_accept(ls, &c->h.stream) != 0 || (!l->is_unix && !peer_allowed(c))) {
        close_conn(c); /* refused peers get no reply at all, as with spamd */
        return;
    }
    c->req = tamis_proto_req_new(srv->o->max_size);
    if (!c->req) {
        close_conn(c);
        return;
    }
    tamis_proto_req_allow_tell(c->req, srv->o->allow_tell);
    if (srv->o->timeout_tcp)
        uv_timer_start(&c->timer, on_timer, (uint64_t)srv->o->timeout_tcp * 1000, 0);
    if (uv_read_start(&c->h.stream, alloc_cb, on_read) != 0)
        close_conn(c);
}

/* ---- signals: reload and shutdown -------------------------------------------------------------
 */

typedef struct {
    uv_work_t work;
    server_t *srv;
    tamis_ruleset_t *rs;
    tamis_diag_t *diag;
    int rc;
    char err[512];
} reload_t;

static void reload_work(uv_work_t *w)
{
    reload_t *r = w->data;
    r->rc = tamisd_rules_load(r->srv->o, &r->rs, r->diag, r->err, sizeof r->err);
}

/* ---- reload policy ----------------------------------------------------------------------------
 * tamis_rules_load() drops a rule that does not compile with a warning and carries on, which is
 * right at start-up but would let a typo silently remove rules from a running server. So a reload
 * is refused when it brings a problem (warning or error) the running set did not have; problems
 * are compared by file and text, not line, so that editing a file elsewhere does not count. */

static char *diag_key(const tamis_diag_entry_t *e)
{
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    tamis_buf_printf(&b, "%s\t%s", e->file ? e->file : "", e->text ? e->text : "");
    return tamis_buf_steal(&b, NULL);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void known_free(server_t *srv)
{
    for (size_t i = 0; i < srv->nknown; i++)
        free(srv->known[i]);
    free(srv->known);
    srv->known = NULL;
    srv->nknown = 0;
}

/* Remembers the problems of the set now running. */
static void known_set(server_t *srv, const tamis_diag_t *d)
{
    known_free(srv);
    size_t n = d ? tamis_diag_count(d) : 0;
    srv->known = calloc(n ? n : 1, sizeof *srv->known);
    if (!srv->known)
        return;
    for (size_t i = 0; i < n; i++) {
        const tamis_diag_entry_t *e = tamis_diag_at(d, i);
        char *k = e->level >= TAMIS_DIAG_WARN ? diag_key(e) : NULL;
        if (k)
            srv->known[srv->nknown++] = k;
    }
    qsort(srv->known, srv->nknown, sizeof *srv->known, key_cmp);
}

/* Logs and counts the problems of d that the running set does not have. */
static size_t new_problems(const server_t *srv, const tamis_diag_t *d)
{
    size_t count = 0;
    for (size_t i = 0; d && i < tamis_diag_count(d); i++) {
        const tamis_diag_entry_t *e = tamis_diag_at(d, i);
        if (e->level < TAMIS_DIAG_WARN)
            continue;
        char *k = diag_key(e);
        bool known =
            k && srv->known && bsearch(&k, srv->known, srv->nknown, sizeof *srv->known, key_cmp);
        free(k);
        if (known)
            continue;
        count++;
        tamisd_log(TAMISD_LOG_ERR, "reload: %s:%u: %s", e->file ? e->file : "<cmdline>", e->line,
                   e->text);
    }
    return count;
}

/* A new dns_server list (or rbl_timeout, the queries' deadline) gets a new resolver; scans in
 * flight finish on the old one. */
static void dns_reload(server_t *srv)
{
    const tamis_conf_t *c = tamis_rules_conf(srv->rules);
    if (srv->o->local || tamisd_dns_same(srv->dns, c))
        return;
    tamisd_dns_t *d = NULL;
    tamisd_log(TAMISD_LOG_INFO, "dns: dns_server list or rbl_timeout changed (servers \"%s\")",
               tamisd_dns_servers_of(c));
    tamisd_dns_start(srv->loop, c, &d);
    tamisd_dns_stats_add(srv->dns, &srv->dns_base); /* the stats line stays cumulative */
    tamisd_dns_retire(srv->dns);
    srv->dns = d;
}

static void reload_done(uv_work_t *w, int status)
{
    reload_t *r = w->data;
    server_t *srv = r->srv;
    size_t problems = new_problems(srv, r->diag);
    if (status == 0 && r->rc == 0 && r->rs && tamis_rules_count(r->rs) == 0) {
        tamisd_log(TAMISD_LOG_ERR, "reload: no rules were found");
        problems++;
    }
    if (status != 0 || r->rc != 0 || problems) {
        tamisd_log(TAMISD_LOG_ERR, "reload failed: %s; keeping the old rules",
                   r->rc ? r->err : "new problems in the rule files");
        tamis_rules_unref(r->rs);
    } else {
        tamis_ruleset_t *old = srv->rules;
        srv->rules = r->rs; /* scans in flight keep their own reference to the old set */
        tamis_rules_unref(old);
        known_set(srv, r->diag);
        tamisd_log(TAMISD_LOG_INFO, "reloaded rules: %zu rules", tamis_rules_count(srv->rules));
        dns_reload(srv);
    }
    tamis_diag_free(r->diag);
    free(r);
    srv->reloading = false;
    maybe_exit(srv);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    server_t *srv = s->data;
    if (srv->reloading || srv->stopping)
        return;
    reload_t *r = calloc(1, sizeof *r);
    if (!r || !(r->diag = tamis_diag_new())) {
        free(r);
        return;
    }
    r->srv = srv;
    r->work.data = r;
    tamisd_log(TAMISD_LOG_INFO, "SIGHUP received, reloading rules");
    if (uv_queue_work(srv->loop, &r->work, reload_work, reload_done) != 0) {
        tamis_diag_free(r->diag);
        free(r);
        return;
    }
    srv->reloading = true;
}

static void on_sigusr1(uv_signal_t *s, int signum)
{
    (void)signum;
    server_t *srv = s->data;
    tamisd_dns_log_stats(srv->dns, &srv->dns_base);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    server_t *srv = s->data;
    if (srv->stopping)
        return;
    tamisd_log(TAMISD_LOG_INFO, "server killed by SIG%s, shutting down",
               signum == SIGTERM ? "TERM" : "INT");
    srv->stopping = true;
    for (size_t i = 0; i < srv->nls; i++)
        uv_close(&srv->ls[i].h.handle, NULL);
    /* Connections still waiting for their request line are dropped; requests under way (body
     * arriving, scan running, reply being written) finish, bounded by --timeout-child. */
    for (conn_t *c = srv->head, *next; c; c = next) {
        next = c->next;
        if (c->phase == C_READ && !c->child_timer)
            close_conn(c);
    }
    tamisd_milter_stop(srv);
    tamisd_smtp_stop(srv);
    maybe_exit(srv);
}

static void maybe_exit(server_t *srv)
{
    if (!srv->stopping || srv->closed || srv->conns || srv->jobs || srv->reloading)
        return;
    srv->closed = true;
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
    uv_close((uv_handle_t *)&srv->sig_usr1, NULL);
    /* every scan is done: the resolver goes (its handles close in the last loop turns) */
    tamisd_dns_log_stats(srv->dns, &srv->dns_base);
    tamisd_dns_retire(srv->dns);
    srv->dns = NULL;
}

/* ---- for the MTA front ends ------------------------------------------------------------------
 */

uv_loop_t *tamisd_server_loop(server_t *srv)
{
    return srv->loop;
}

const tamisd_opts_t *tamisd_server_opts(server_t *srv)
{
    return srv->o;
}

const tamisd_acl_t *tamisd_server_acl(server_t *srv)
{
    return srv->acl;
}

tamis_ruleset_t *tamisd_server_rules_ref(server_t *srv)
{
    return tamis_rules_ref(srv->rules);
}

tamisd_dns_t *tamisd_server_dns_acquire(server_t *srv)
{
    return tamisd_dns_acquire(srv->dns);
}

void tamisd_server_dns_release(server_t *srv, tamisd_dns_t *d)
{
    (void)srv;
    tamisd_dns_release(d);
}

bool tamisd_server_stopping(const server_t *srv)
{
    return srv->stopping;
}

/* Front-end connections and scans count as connections, so shutdown waits for them. */
void tamisd_server_hold(server_t *srv, int delta)
{
    srv->conns = delta < 0 ? srv->conns - 1 : srv->conns + 1;
    if (delta < 0)
        maybe_exit(srv);
}

unsigned long tamisd_server_next_id(server_t *srv)
{
    return ++srv->next_id;
}

/* ---- setup ------------------------------------------------------------------------------------
 */

static int adopt_listener(server_t *srv, listener_t *l, const tamisd_listener_t *src)
{
    l->srv = srv;
    l->is_unix = src->is_unix;
    l->kind = src->kind;
    snprintf(l->name, sizeof l->name, "%s", src->name);
    int rc =
        src->is_unix ? uv_pipe_init(srv->loop, &l->h.pipe, 0) : uv_tcp_init(srv->loop, &l->h.tcp);
    if (rc == 0)
        rc = src->is_unix ? uv_pipe_open(&l->h.pipe, src->fd) : uv_tcp_open(&l->h.tcp, src->fd);
    l->h.handle.data = l;
    if (rc == 0)
        rc = uv_listen(&l->h.stream, 256, on_connection);
    if (rc != 0)
        tamisd_log(TAMISD_LOG_ERR, "cannot listen on %s: %s", l->name, uv_strerror(rc));
    else
        tamisd_log(TAMISD_LOG_INFO, "listening on %s", l->name);
    return rc;
}

static void init_signal(server_t *srv, uv_signal_t *s, uv_signal_cb cb, int signum)
{
    uv_signal_init(srv->loop, s);
    s->data = srv;
    uv_signal_start(s, cb, signum);
}

int tamisd_serve(const tamisd_opts_t *o, const tamisd_acl_t *acl, tamisd_listener_t *ls, size_t n,
                 tamis_ruleset_t *rs, const tamis_diag_t *diag)
{
    server_t *srv = calloc(1, sizeof *srv);
    listener_t *lv = calloc(n ? n : 1, sizeof *lv);
    if (!srv || !lv) {
        free(srv);
        free(lv);
        tamis_rules_unref(rs);
        return 71;
    }
    srv->loop = uv_default_loop();
    srv->o = o;
    srv->acl = acl;
    srv->rules = rs;
    srv->ls = lv;
    srv->nls = n;
    known_set(srv, diag);
    int status = 0;
    for (size_t i = 0; i < n; i++)
        if (adopt_listener(srv, &lv[i], &ls[i]) != 0)
            status = 71;
    init_signal(srv, &srv->sig_term, on_stop_signal, SIGTERM);
    init_signal(srv, &srv->sig_int, on_stop_signal, SIGINT);
    init_signal(srv, &srv->sig_hup, on_sighup, SIGHUP);
    init_signal(srv, &srv->sig_usr1, on_sigusr1, SIGUSR1);
    if (!o->local) /* -L: no network tests, no resolver */
        tamisd_dns_start(srv->loop, tamis_rules_conf(rs), &srv->dns);
    if (status) {
        on_stop_signal(&srv->sig_term, SIGTERM);
    } else {
        tamisd_log(TAMISD_LOG_INFO, "server started, %zu rules, pid %ld", tamis_rules_count(rs),
                   (long)getpid());
    }
    uv_run(srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(srv->loop);
    tamis_rules_unref(srv->rules);
    if (o->socketpath)
        unlink(o->socketpath);
    tamisd_log(TAMISD_LOG_INFO, "server stopped");
    known_free(srv);
    free(lv);
    free(srv);
    return status;
}
