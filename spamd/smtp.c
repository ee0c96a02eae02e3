/*
 * The SMTP content filter (--smtp-listen, --smtp-relay): Postfix's after-queue content_filter
 * hands us each message over SMTP; we scan it and re-inject it into Postfix's second smtpd
 * (spec-postfix §2). We never take responsibility for a message: the upstream "250" to the final
 * dot is sent only after the relay said 2xx to its own dot, and every internal problem (scan
 * error, relay down or slow) answers 4xx so that Postfix keeps the message and retries.
 *
 * The two sessions run in lock-step, as a simple proxy: the relay connection opens at the first
 * MAIL of a session, MAIL and each RCPT are forwarded and the relay's replies are passed upstream
 * verbatim (so per-recipient refusals reach Postfix), DATA is answered 354 by us, and the message
 * goes to the relay only once it has been scanned. Commands are handled one at a time from the
 * input buffer, which is how PIPELINING is honoured: while we wait for the relay or a scan, the
 * following pipelined commands simply stay in the buffer.
 *
 * Loop thread only. Timers: --timeout-mta for an idle client and for each relay reply.
 */
#include "tamisd.h"

#include "tamis/mta.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define SMTP_IN_MAX (1024 * 1024) /* pipelined commands or DATA not yet decoded */
#define SMTP_REPLY_MAX 4096       /* one relay reply, all its lines */
#define SMTP_XFORWARD_MAX 8       /* XFORWARD lines kept per transaction */

typedef struct sconn sconn_t;
typedef struct relay relay_t;

/* What the relay's next reply answers. */
typedef enum {
    R_NONE,
    R_GREET,
    R_EHLO,
    R_XFORWARD,
    R_MAIL,
    R_RCPT,
    R_DATA,
    R_DOT,
    R_RSET,
    R_QUIT
} relay_wait_t;

struct relay {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    sconn_t *c; /* NULL once the session went away */
    struct server *srv;
    int open_handles;
    bool closing, ready;
    bool xforward, smtputf8, eightbit, size; /* what its EHLO advertised */
    relay_wait_t wait;
    size_t xfwd_next; /* XFORWARD lines sent so far */
    tamis_buf_t in, reply;
};

typedef enum { S_CMD, S_DATA, S_BUSY } sphase_t;

struct sconn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } h;
    uv_timer_t timer;
    struct server *srv;
    sconn_t *prev, *next;
    unsigned long id;
    int open_handles;
    bool closing, helo, in_mail, quitting;
    sphase_t phase;
    tamis_buf_t in;  /* unparsed input */
    tamis_buf_t msg; /* the decoded message */
    tamis_mta_data_t data;
    relay_t *relay;
    tamisd_mta_job_t *job;
    char mail[TAMIS_MTA_SMTP_LINE_MAX + 1];    /* path and params of MAIL, for the relay */
    char pending[TAMIS_MTA_SMTP_LINE_MAX + 1]; /* the RCPT line being forwarded */
    size_t rcpts;                              /* recipients the relay accepted */
    char *xfwd[SMTP_XFORWARD_MAX];
    size_t nxfwd;
    char qid[64], addr[64], name[256];
    tamis_buf_t out_msg; /* encoded message for the relay's DATA */
    char final[256];     /* the reply we give upstream when the relay's RSET returns */
    tamisd_slot_t slot;  /* limits.c */
};

static sconn_t *smtp_conns;

/* The largest message we accept: mail over --max-size is re-injected unscanned (a refusal after
 * queue would be a bounce), up to this bound. */
static size_t smtp_store_max(const tamisd_opts_t *o)
{
    return o->max_size > TAMISD_DEFAULT_MAX_SIZE ? o->max_size : TAMISD_DEFAULT_MAX_SIZE;
}

static void smtp_close(sconn_t *c);
static void smtp_process(sconn_t *c);
static void relay_close(relay_t *r);
static void relay_send(relay_t *r, const char *p, size_t n, relay_wait_t wait);
static void relay_start(sconn_t *c);

typedef struct {
    uv_write_t req;
    size_t len;
    char data[];
} swrite_t;

static void smtp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char rbuf[65536]; /* loop thread only; consumed before the next allocation */
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void smtp_on_write(uv_write_t *w, int status)
{
    (void)status; /* a failed write shows up as a read error too */
    free(w);
}

static int stream_write(uv_stream_t *s, const char *p, size_t n)
{
    swrite_t *sw = malloc(sizeof *sw + n);
    if (!sw)
        return -1;
    memcpy(sw->data, p, n);
    sw->len = n;
    uv_buf_t b = uv_buf_init(sw->data, (unsigned)n);
    if (uv_write(&sw->req, s, &b, 1, smtp_on_write) != 0) {
        free(sw);
        return -1;
    }
    return 0;
}

static void smtp_say(sconn_t *c, const char *line)
{
    if (c->closing)
        return;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    if (n < 0 || stream_write(&c->h.stream, buf, (size_t)n) != 0)
        smtp_close(c);
}

/* ---- session lifetime ------------------------------------------------------------------------ */

static void smtp_reset_tx(sconn_t *c)
{
    c->in_mail = false;
    c->rcpts = 0;
    c->mail[0] = '\0';
    for (size_t i = 0; i < c->nxfwd; i++)
        free(c->xfwd[i]);
    c->nxfwd = 0;
    c->qid[0] = '\0';
    tamis_buf_free(&c->msg);
    tamis_buf_init(&c->msg, 0);
    tamis_buf_free(&c->out_msg);
    tamis_buf_init(&c->out_msg, 0);
}

static void smtp_on_close(uv_handle_t *h)
{
    sconn_t *c = h->data;
    if (--c->open_handles > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        smtp_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    struct server *srv = c->srv;
    smtp_reset_tx(c);
    tamis_buf_free(&c->in);
    tamis_buf_free(&c->msg);
    tamis_buf_free(&c->out_msg);
    free(c);
    tamisd_server_hold(srv, -1);
}

static void smtp_close(sconn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    tamisd_limits_release(&c->slot);
    tamisd_mta_scan_cancel(c->job);
    c->job = NULL;
    if (c->relay) {
        c->relay->c = NULL;
        relay_close(c->relay);
        c->relay = NULL;
    }
    uv_close(&c->h.handle, smtp_on_close);
    uv_close((uv_handle_t *)&c->timer, smtp_on_close);
}

static void smtp_on_timer(uv_timer_t *t)
{
    sconn_t *c = t->data;
    tamisd_log(TAMISD_LOG_WARN, "smtp conn=%lu: client idle, closing", c->id);
    smtp_say(c, "421 4.4.2 Error: timeout exceeded");
    smtp_close(c);
}

static void smtp_arm(sconn_t *c)
{
    uv_timer_start(&c->timer, smtp_on_timer,
                   (uint64_t)tamisd_server_opts(c->srv)->timeout_mta * 1000, 0);
}

/* Back to reading commands: the relay or the scan is done. */
static void smtp_resume(sconn_t *c)
{
    if (c->closing)
        return;
    c->phase = S_CMD;
    smtp_arm(c);
    smtp_process(c);
}

/* Ends a transaction without delivering: the relay forgets it (RSET), then the client gets
 * c->final. */
static void smtp_finish(sconn_t *c)
{
    smtp_reset_tx(c);
    c->phase = S_BUSY;
    if (c->relay && c->relay->ready && c->relay->wait == R_NONE) {
        relay_send(c->relay, "RSET\r\n", 6, R_RSET);
        return;
    }
    smtp_say(c, c->final);
    c->final[0] = '\0';
    smtp_resume(c);
}

static void smtp_on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    sconn_t *c = req->data;
    free(req);
    smtp_close(c);
}

/* QUIT: the 221 is flushed (shutdown) before the connection closes. */
static void smtp_quit(sconn_t *c)
{
    c->quitting = true;
    c->phase = S_BUSY; /* anything pipelined after QUIT is ignored */
    uv_read_stop(&c->h.stream);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req) {
        req->data = c;
        if (uv_shutdown(req, &c->h.stream, smtp_on_shutdown) == 0)
            return;
        free(req);
    }
    smtp_close(c);
}

/* ---- the relay (re-injection client) --------------------------------------------------------- */

static void relay_on_close(uv_handle_t *h)
{
    relay_t *r = h->data;
    if (--r->open_handles > 0)
        return;
    tamis_buf_free(&r->in);
    tamis_buf_free(&r->reply);
    free(r);
}

static void relay_close(relay_t *r)
{
    if (r->closing)
        return;
    r->closing = true;
    if (r->c && r->c->relay == r)
        r->c->relay = NULL;
    uv_close((uv_handle_t *)&r->tcp, relay_on_close);
    uv_close((uv_handle_t *)&r->timer, relay_on_close);
}

/* The relay failed (connect, timeout, protocol): upstream gets a 4xx so Postfix retries. */
static void relay_fail(relay_t *r, const char *why)
{
    sconn_t *c = r->c;
    tamisd_log(TAMISD_LOG_WARN, "smtp conn=%lu: relay %s: %s", c ? c->id : 0,
               tamisd_server_opts(r->srv)->smtp_relay, why);
    relay_wait_t w = r->wait;
    relay_close(r);
    /* Only a command we are holding gets an answer here; during DATA or a scan the answer comes
     * at their end, and an idle session learns it at its next MAIL. */
    if (!c || c->phase != S_BUSY || c->job || w == R_QUIT)
        return;
    if (w == R_RSET && c->final[0]) {
        smtp_say(c, c->final);
        c->final[0] = '\0';
    } else if (w != R_RSET) {
        smtp_say(c, "451 4.3.0 Error: queue relay unavailable, try again later");
    }
    smtp_reset_tx(c);
    smtp_resume(c);
}

static void relay_on_timer(uv_timer_t *t)
{
    relay_fail(t->data, "timeout");
}

static void relay_send(relay_t *r, const char *p, size_t n, relay_wait_t wait)
{
    r->wait = wait;
    tamis_buf_reset(&r->reply);
    uv_timer_start(&r->timer, relay_on_timer,
                   (uint64_t)tamisd_server_opts(r->srv)->timeout_mta * 1000, 0);
    if (stream_write((uv_stream_t *)&r->tcp, p, n) != 0)
        relay_fail(r, "write failed");
}

static void relay_sendf(relay_t *r, relay_wait_t wait, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void relay_sendf(relay_t *r, relay_wait_t wait, const char *fmt, ...)
{
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS_MTA_SMTP_LINE_MAX + 64);
    va_list ap;
    va_start(ap, fmt);
    tamis_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (b.err)
        relay_fail(r, "command too long");
    else
        relay_send(r, b.data, b.len, wait);
    tamis_buf_free(&b);
}

/* Copies the relay's reply upstream, verbatim (all lines). */
static void relay_pass_reply(sconn_t *c, relay_t *r)
{
    if (!c->closing && stream_write(&c->h.stream, r->reply.data, r->reply.len) != 0)
        smtp_close(c);
}

/* EHLO's extensions, from the reply lines "250-NAME args". */
static void relay_caps(relay_t *r)
{
    const char *p = r->reply.data, *end = p + r->reply.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        const char *kw = p + 4;
        size_t l = (size_t)(eol - kw);
#define CAP(name) (l >= strlen(name) && strncasecmp(kw, name, strlen(name)) == 0)
        if (CAP("XFORWARD"))
            r->xforward = true;
        else if (CAP("SMTPUTF8"))
            r->smtputf8 = true;
        else if (CAP("8BITMIME"))
            r->eightbit = true;
        else if (CAP("SIZE"))
            r->size = true;
#undef CAP
        p = eol + 1;
    }
}

/* MAIL parameters the relay can take: those it did not advertise are dropped. */
static void relay_mail(relay_t *r, sconn_t *c)
{
    tamis_mta_smtp_cmd_t cmd;
    char line[TAMIS_MTA_SMTP_LINE_MAX + 16];
    snprintf(line, sizeof line, "MAIL %s", c->mail);
    if (tamis_mta_smtp_parse(line, strlen(line), &cmd) != 0) {
        relay_fail(r, "bad MAIL line");
        return;
    }
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS_MTA_SMTP_LINE_MAX + 64);
    tamis_buf_printf(&b, "MAIL FROM:<%.*s>", (int)cmd.path.len, cmd.path.ptr);
    const char *p = cmd.params.ptr, *end = p + cmd.params.len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t l = sp ? (size_t)(sp - p) : (size_t)(end - p);
        bool drop = (strncasecmp(p, "SMTPUTF8", 8) == 0 && !r->smtputf8) ||
                    (strncasecmp(p, "BODY=", 5) == 0 && !r->eightbit) ||
                    (strncasecmp(p, "SIZE=", 5) == 0 && !r->size);
        if (l && !drop)
            tamis_buf_printf(&b, " %.*s", (int)l, p);
        p += l + 1;
    }
    tamis_buf_puts(&b, "\r\n");
    if (b.err)
        relay_fail(r, "MAIL line too long");
    else
        relay_send(r, b.data, b.len, R_MAIL);
    tamis_buf_free(&b);
}

/* After EHLO (or a previous transaction): XFORWARD lines if any, then MAIL. */
static void relay_begin_tx(relay_t *r, sconn_t *c)
{
    if (r->xforward && r->xfwd_next < c->nxfwd) {
        relay_sendf(r, R_XFORWARD, "XFORWARD %s\r\n", c->xfwd[r->xfwd_next++]);
        return;
    }
    relay_mail(r, c);
}

static void relay_got_reply(relay_t *r, int code)
{
    sconn_t *c = r->c;
    relay_wait_t w = r->wait;
    r->wait = R_NONE;
    uv_timer_stop(&r->timer);
    if (!c) {
        relay_close(r);
        return;
    }
    switch (w) {
    case R_GREET:
        if (code != 220) {
            relay_fail(r, "bad greeting");
            return;
        }
        relay_sendf(r, R_EHLO, "EHLO %s\r\n", tamisd_server_opts(c->srv)->smtp_helo);
        return;
    case R_EHLO:
        if (code != 250) {
            relay_fail(r, "EHLO refused");
            return;
        }
        relay_caps(r);
        r->ready = true;
        r->xfwd_next = 0;
        relay_begin_tx(r, c);
        return;
    case R_XFORWARD:
        if (code / 100 != 2) {
            relay_fail(r, "XFORWARD refused");
            return;
        }
        relay_begin_tx(r, c);
        return;
    case R_MAIL:
        relay_pass_reply(c, r);
        c->in_mail = code / 100 == 2;
        break;
    case R_RCPT:
        relay_pass_reply(c, r);
        if (code / 100 == 2)
            c->rcpts++;
        break;
    case R_DATA:
        if (code != 354) { /* pass its refusal on once it forgot the transaction */
            const char *last = r->reply.data, *e = r->reply.data + r->reply.len;
            for (const char *q = last; q + 1 < e; q++)
                if (*q == '\n')
                    last = q + 1;
            int l = (int)(e - last);
            while (l > 0 && (last[l - 1] == '\r' || last[l - 1] == '\n'))
                l--;
            snprintf(c->final, sizeof c->final, "%.*s", l, last);
            smtp_finish(c);
            return;
        }
        relay_send(r, c->out_msg.data, c->out_msg.len, R_DOT);
        return;
    case R_DOT:
        /* only now the message is Postfix's again: pass the relay's verdict on */
        relay_pass_reply(c, r);
        tamisd_log(TAMISD_LOG_INFO, "smtp conn=%lu id=%s: relay answered %d", c->id,
                   c->qid[0] ? c->qid : "-", code);
        smtp_reset_tx(c);
        break;
    case R_RSET:
        if (c->final[0]) {
            smtp_say(c, c->final);
            c->final[0] = '\0';
        }
        break;
    default:
        relay_close(r);
        return;
    }
    smtp_resume(c);
}

/* Reply lines; a reply is complete at its "NNN " line. */
static void relay_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    relay_t *r = s->data;
    if (nread < 0) {
        relay_fail(r, nread == UV_EOF ? "connection closed" : uv_strerror((int)nread));
        return;
    }
    if (tamis_buf_append(&r->in, buf->base, (size_t)nread) != 0) {
        relay_fail(r, "reply too long");
        return;
    }
    size_t off = 0;
    while (!r->closing) {
        char *lf = memchr(r->in.data + off, '\n', r->in.len - off);
        if (!lf)
            break;
        size_t l = (size_t)(lf - r->in.data) - off + 1;
        bool last = false;
        int code = tamis_mta_smtp_reply_line(r->in.data + off, l, &last);
        if (code < 0 || r->wait == R_NONE || tamis_buf_append(&r->reply, r->in.data + off, l)) {
            relay_fail(r, "bad reply");
            return;
        }
        off += l;
        if (last) {
            relay_got_reply(r, code);
            if (r->closing)
                return;
            tamis_buf_reset(&r->reply);
        }
    }
    memmove(r->in.data, r->in.data + off, r->in.len - off);
    r->in.len -= off;
}

static void relay_on_connect(uv_connect_t *req, int status)
{
    relay_t *r = req->data;
    if (r->closing)
        return;
    if (status < 0) {
        relay_fail(r, uv_strerror(status));
        return;
    }
    if (uv_read_start((uv_stream_t *)&r->tcp, smtp_alloc, relay_on_read) != 0) {
        relay_fail(r, "read failed");
        return;
    }
}

static int relay_addr(const char *spec, struct sockaddr_storage *ss)
{
    char host[256], port[16];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host || strlen(colon + 1) >= sizeof port)
        return -1;
    const char *h = spec;
    size_t hl = (size_t)(colon - spec);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
        h++, hl -= 2;
    snprintf(host, sizeof host, "%.*s", (int)hl, h);
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0) /* numeric: never blocks */
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* Opens the relay connection; the greeting, EHLO, XFORWARD and MAIL follow from the replies. */
static void relay_start(sconn_t *c)
{
    relay_t *r = calloc(1, sizeof *r);
    if (!r) {
        smtp_say(c, "451 4.3.0 Error: out of memory");
        smtp_resume(c);
        return;
    }
    uv_loop_t *loop = tamisd_server_loop(c->srv);
    uv_tcp_init(loop, &r->tcp);
    uv_timer_init(loop, &r->timer);
    r->tcp.data = r;
    r->timer.data = r;
    r->open_handles = 2;
    r->c = c;
    r->srv = c->srv;
    r->creq.data = r;
    tamis_buf_init(&r->in, SMTP_REPLY_MAX);
    tamis_buf_init(&r->reply, SMTP_REPLY_MAX);
    c->relay = r;
    r->wait = R_GREET;
    uv_timer_start(&r->timer, relay_on_timer,
                   (uint64_t)tamisd_server_opts(c->srv)->timeout_mta * 1000, 0);
    struct sockaddr_storage ss;
    if (relay_addr(tamisd_server_opts(c->srv)->smtp_relay, &ss) != 0) {
        relay_fail(r, "bad --smtp-relay address");
        return;
    }
    if (uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&ss, relay_on_connect) != 0) {
        relay_fail(r, "connect failed");
        return;
    }
}

/* ---- the scan and the verdict ---------------------------------------------------------------- */

static void smtp_scanned(void *arg, const tamisd_mta_result_t *r)
{
    sconn_t *c = arg;
    const tamisd_opts_t *o = tamisd_server_opts(c->srv);
    c->job = NULL;
    if (r->rc == TAMIS_ELIMIT) {
        snprintf(c->final, sizeof c->final, "552 5.3.4 Error: message too big to scan");
    } else if (r->rc != 0) {
        snprintf(c->final, sizeof c->final, "451 4.7.1 Error: scan failed, try again later");
    } else if (o->reject_score > 0 && r->score >= o->reject_score) {
        tamisd_log(TAMISD_LOG_INFO, "smtp id=%s: rejected, score %.1f", c->qid, r->score);
        snprintf(c->final, sizeof c->final, "550 5.7.1 Message rejected as spam (score %.1f)",
                 r->score);
    } else if (!c->relay || !c->relay->ready) {
        snprintf(c->final, sizeof c->final, "451 4.3.0 Error: queue relay unavailable");
    } else {
        /* tagged (or, with --no-add-headers, the original kept in out_msg) goes to the relay */
        if (!o->no_add_headers) {
            tamis_buf_reset(&c->out_msg);
            tamis_mta_data_encode(r->message.ptr, r->message.len, &c->out_msg);
        }
        if (c->out_msg.err) {
            snprintf(c->final, sizeof c->final, "451 4.3.0 Error: out of memory");
        } else {
            relay_send(c->relay, "DATA\r\n", 6, R_DATA);
            return;
        }
    }
    smtp_finish(c); /* not delivered */
}

/* The final dot arrived: scan the message on a worker. */
static void smtp_end_data(sconn_t *c)
{
    c->phase = S_BUSY;
    uv_timer_stop(&c->timer);
    if (c->data.too_big) {
        tamisd_log(TAMISD_LOG_INFO, "smtp conn=%lu: message over %zu bytes", c->id,
                   smtp_store_max(tamisd_server_opts(c->srv)));
        snprintf(c->final, sizeof c->final, "552 5.3.4 Error: message file too big");
        smtp_finish(c);
        return;
    }
    if (!c->relay) {
        snprintf(c->final, sizeof c->final, "451 4.3.0 Error: queue relay unavailable");
        smtp_finish(c);
        return;
    }
    if (c->msg.len > tamisd_server_opts(c->srv)->max_size) {
        /* too big to scan: passed on unchanged, as spamc and the milter do */
        tamisd_log(TAMISD_LOG_INFO, "smtp id=%s: %zu bytes, over --max-size: passed unscanned",
                   c->qid[0] ? c->qid : "-", c->msg.len);
        tamis_mta_data_encode(c->msg.data ? c->msg.data : "", c->msg.len, &c->out_msg);
        relay_send(c->relay, "DATA\r\n", 6, R_DATA);
        return;
    }
    if (tamisd_server_opts(c->srv)->no_add_headers)
        tamis_mta_data_encode(c->msg.data ? c->msg.data : "", c->msg.len, &c->out_msg);
    char id[80];
    snprintf(id, sizeof id, "%s", c->qid[0] ? c->qid : "-");
    c->job = tamisd_mta_scan(c->srv, &c->msg, true, id, c->addr, c->name, smtp_scanned, c);
    if (!c->job) {
        snprintf(c->final, sizeof c->final, "451 4.3.0 Error: cannot scan now");
        smtp_finish(c);
    }
}

/* ---- commands -------------------------------------------------------------------------------- */

static void smtp_ehlo(sconn_t *c, bool extended)
{
    const tamisd_opts_t *o = tamisd_server_opts(c->srv);
    char line[512];
    c->helo = true;
    if (!extended) {
        snprintf(line, sizeof line, "250 %s", o->smtp_helo);
        smtp_say(c, line);
        return;
    }
    snprintf(line, sizeof line,
             "250-%s\r\n250-PIPELINING\r\n250-SIZE %zu\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
             "250-ENHANCEDSTATUSCODES\r\n250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT",
             o->smtp_helo, smtp_store_max(o));
    smtp_say(c, line);
}

/* XFORWARD attributes: kept for the relay, and ADDR/NAME/IDENT for the scan and the log. */
static void smtp_xforward(sconn_t *c, tamis_slice_t arg)
{
    if (c->in_mail) {
        smtp_say(c, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    if (c->nxfwd >= SMTP_XFORWARD_MAX) {
        smtp_say(c, "421 4.7.0 Error: too many XFORWARD commands");
        smtp_close(c);
        return;
    }
    c->xfwd[c->nxfwd++] = strndup(arg.ptr, arg.len);
    tamis_slice_t v;
    if ((v = tamis_mta_smtp_param(arg, "ADDR")).ptr)
        snprintf(c->addr, sizeof c->addr, "%.*s", (int)v.len, v.ptr);
    if ((v = tamis_mta_smtp_param(arg, "NAME")).ptr)
        snprintf(c->name, sizeof c->name, "%.*s", (int)v.len, v.ptr);
    if ((v = tamis_mta_smtp_param(arg, "IDENT")).ptr)
        snprintf(c->qid, sizeof c->qid, "%.*s", (int)v.len, v.ptr);
    smtp_say(c, "250 2.0.0 Ok");
}

static void smtp_mail(sconn_t *c, const tamis_mta_smtp_cmd_t *cmd)
{
    if (!c->helo) {
        smtp_say(c, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (c->in_mail) {
        smtp_say(c, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    tamis_slice_t size = tamis_mta_smtp_param(cmd->params, "SIZE");
    if (size.ptr && strtoull(size.ptr, NULL, 10) > smtp_store_max(tamisd_server_opts(c->srv))) {
        smtp_say(c, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    snprintf(c->mail, sizeof c->mail, "%.*s", (int)cmd->arg.len, cmd->arg.ptr);
    c->phase = S_BUSY;
    if (!c->relay || !c->relay->ready) {
        if (c->relay)
            relay_close(c->relay);
        relay_start(c);
        return;
    }
    c->relay->xfwd_next = 0;
    relay_begin_tx(c->relay, c);
}

static void smtp_rcpt(sconn_t *c, const tamis_mta_smtp_cmd_t *cmd)
{
    if (!c->in_mail) {
        smtp_say(c, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (!c->relay) {
        smtp_say(c, "451 4.3.0 Error: queue relay unavailable");
        return;
    }
    c->phase = S_BUSY;
    relay_sendf(c->relay, R_RCPT, "RCPT %.*s\r\n", (int)cmd->arg.len, cmd->arg.ptr);
}

static void smtp_data(sconn_t *c)
{
    if (!c->in_mail) {
        smtp_say(c, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (!c->relay) {
        smtp_say(c, "451 4.3.0 Error: queue relay unavailable");
        return;
    }
    if (!c->rcpts) {
        smtp_say(c, "554 5.5.1 Error: no valid recipients");
        return;
    }
    smtp_say(c, "354 End data with <CR><LF>.<CR><LF>");
    tamis_mta_data_init(&c->data, smtp_store_max(tamisd_server_opts(c->srv)));
    tamis_buf_free(&c->msg);
    tamis_buf_init(&c->msg, 0);
    c->phase = S_DATA;
}

static void smtp_command(sconn_t *c, const char *line, size_t len)
{
    tamis_mta_smtp_cmd_t cmd;
    int rc = tamis_mta_smtp_parse(line, len, &cmd);
    if (rc == TAMIS_ELIMIT) {
        smtp_say(c, "500 5.5.2 Error: line too long");
        return;
    }
    if (cmd.verb == TAMIS_MTA_SMTP_UNKNOWN) {
        smtp_say(c, "502 5.5.2 Error: command not recognized");
        return;
    }
    if (rc != 0) {
        smtp_say(c, "501 5.5.4 Syntax error in parameters or arguments");
        return;
    }
    switch (cmd.verb) {
    case TAMIS_MTA_SMTP_EHLO:
    case TAMIS_MTA_SMTP_HELO:
        smtp_reset_tx(c);
        {
            smtp_ehlo(c, cmd.verb == TAMIS_MTA_SMTP_EHLO);
            return;
        }
    case TAMIS_MTA_SMTP_XFORWARD: {
        smtp_xforward(c, cmd.arg);
        return;
    }
    case TAMIS_MTA_SMTP_MAIL: {
        smtp_mail(c, &cmd);
        return;
    }
    case TAMIS_MTA_SMTP_RCPT: {
        smtp_rcpt(c, &cmd);
        return;
    }
    case TAMIS_MTA_SMTP_DATA: {
        smtp_data(c);
        return;
    }
    case TAMIS_MTA_SMTP_RSET:
        snprintf(c->final, sizeof c->final, "250 2.0.0 Ok");
        smtp_finish(c);
        return;
    case TAMIS_MTA_SMTP_NOOP: {
        smtp_say(c, "250 2.0.0 Ok");
        return;
    }
    case TAMIS_MTA_SMTP_QUIT:
        smtp_say(c, "221 2.0.0 Bye");
        smtp_quit(c);
        return;
    case TAMIS_MTA_SMTP_VRFY: {
        smtp_say(c, "502 5.5.1 VRFY command is disabled");
        return;
    }
    default: {
        smtp_say(c, "502 5.5.2 Error: command not implemented");
        return;
    }
    }
}

/* Consumes complete lines (or DATA) from c->in until we must wait. */
static void smtp_process(sconn_t *c)
{
    size_t off = 0;
    while (!c->closing && c->phase != S_BUSY && off < c->in.len) {
        const char *p = c->in.data + off;
        size_t n = c->in.len - off;
        if (c->phase == S_DATA) {
            off += tamis_mta_data_feed(&c->data, p, n, &c->msg);
            if (c->msg.err) {
                c->data.too_big = true;
                tamis_buf_reset(&c->msg);
            }
            if (c->data.done)
                smtp_end_data(c);
            continue;
        }
        const char *lf = memchr(p, '\n', n);
        if (!lf) {
            if (n > TAMIS_MTA_SMTP_LINE_MAX) {
                smtp_say(c, "500 5.5.2 Error: line too long");
                smtp_close(c);
            }
            break;
        }
        size_t len = (size_t)(lf - p);
        off += len + 1;
        if (len && p[len - 1] == '\r')
            len--;
        smtp_command(c, p, len);
    }
    if (off && !c->closing) {
        memmove(c->in.data, c->in.data + off, c->in.len - off);
        c->in.len -= off;
    }
}

static void smtp_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sconn_t *c = s->data;
    if (nread < 0) {
        if (c->phase != S_CMD || c->in_mail)
            tamisd_log(TAMISD_LOG_INFO, "smtp conn=%lu: client left mid-transaction", c->id);
        smtp_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (tamis_buf_append(&c->in, buf->base, (size_t)nread) != 0) {
        smtp_say(c, "421 4.7.0 Error: too much pipelined input");
        smtp_close(c);
        return;
    }
    if (c->phase != S_BUSY)
        smtp_arm(c);
    smtp_process(c);
}

/* ---- accepting and stopping ------------------------------------------------------------------ */

/* The ACL, then limits.c's caps and bans (over a limit: 421, and the MTA retries later). */
static bool smtp_allowed(sconn_t *c, bool is_unix)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!is_unix) {
        if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0)
            return false;
        if (tamisd_limits_banned((struct sockaddr *)&ss))
            return false; /* silently: the ban has its log line */
        if (!tamisd_acl_allows(tamisd_server_acl(c->srv), (struct sockaddr *)&ss)) {
            tamisd_log(TAMISD_LOG_WARN, "smtp: unauthorized connection refused");
            tamisd_limits_fail_addr((struct sockaddr *)&ss, "not in --allowed-ips");
            return false;
        }
    }
    if (tamisd_limits_admit(&c->slot, is_unix ? NULL : (struct sockaddr *)&ss, "smtp") ==
        TAMISD_ADMIT_OK)
        return true;
    smtp_say(c, "421 4.7.0 Too many connections, try again later");
    return false;
}

void tamisd_smtp_accept(struct server *srv, uv_stream_t *ls, bool is_unix)
{
    sconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_loop_t *loop = tamisd_server_loop(srv);
    c->srv = srv;
    c->id = tamisd_server_next_id(srv);
    tamis_buf_init(&c->in, SMTP_IN_MAX);
    tamis_buf_init(&c->msg, 0);
    tamis_buf_init(&c->out_msg, 0);
    if (is_unix)
        uv_pipe_init(loop, &c->h.pipe, 0);
    else
        uv_tcp_init(loop, &c->h.tcp);
    uv_timer_init(loop, &c->timer);
    c->h.handle.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = smtp_conns;
    if (smtp_conns)
        smtp_conns->prev = c;
    smtp_conns = c;
    tamisd_server_hold(srv, +1);
    if (uv_accept(ls, &c->h.stream) != 0 || !smtp_allowed(c, is_unix)) {
        smtp_close(c);
        return;
    }
    char line[300];
    snprintf(line, sizeof line, "220 %s ESMTP Tamis", tamisd_server_opts(srv)->smtp_helo);
    smtp_say(c, line);
    smtp_arm(c);
    if (uv_read_start(&c->h.stream, smtp_alloc, smtp_on_read) != 0)
        smtp_close(c);
}

void tamisd_smtp_stop(struct server *srv)
{
    for (sconn_t *c = smtp_conns, *next; c; c = next) {
        next = c->next;
        if (c->srv == srv && c->phase == S_CMD && !c->in_mail) {
            smtp_say(c, "421 4.3.2 Service shutting down");
            smtp_close(c);
        }
    }
}
