/*
 * The milter listener (--milter): Postfix's smtpd (smtpd_milters) or sendmail/pickup
 * (non_smtpd_milters) opens one connection per SMTP session and reports every stage of it
 * (spec-postfix §3). We answer "continue" to every event, assemble the message from the header
 * and body events (bounded by --max-size), and at end-of-message hand it to a worker scan; the
 * verdict becomes X-Spam-* header changes and "continue", a 550 reply at or above
 * --reject-score, or a tempfail when the scan fails, so Postfix never takes mail we could not
 * judge unless milter_default_action says so.
 *
 * Per connection: READ packets → (SCAN: reading paused; Postfix waits for our answer) → READ.
 * An idle timer (--timeout-mta) closes sessions the MTA abandoned. Loop thread only.
 */
#include "tamisd.h"

#include "tamis/mta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#define MILTER_IN_MAX (TAMIS_MTA_MILTER_PACKET_MAX + 8)
#define MILTER_XSPAM_MAX 32 /* distinct X-Spam-* names tracked for deletion */

typedef struct mconn mconn_t;

struct mconn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } h;
    uv_timer_t timer;
    struct server *srv;
    mconn_t *prev, *next;
    unsigned long id;
    int open_handles;
    bool closing, scanning, in_message;
    uint32_t actions; /* SMFIF bits the MTA granted */
    uint32_t noreply; /* SMFIP_NR_* bits agreed: events we do not answer */
    tamis_buf_t in;   /* received, not yet parsed */
    tamis_buf_t msg;  /* the message of this transaction */
    bool too_big;
    tamisd_mta_job_t *job;
    char qid[64], auth[128], client_addr[64], client_name[256], helo[256];
    char subject[1024]; /* the first Subject as received, to see whether the scan rewrote it */
    bool has_subject;
    struct {
        char name[64];
        unsigned count;
    } xspam[MILTER_XSPAM_MAX]; /* X-Spam-* headers the message arrived with */
    size_t nxspam;
    tamisd_slot_t slot; /* limits.c */
};

static mconn_t *milter_conns; /* open connections (loop thread only) */

typedef struct {
    uv_write_t req;
    mconn_t *c;
    size_t len;
    char data[];
} mwrite_t;

static void milter_close(mconn_t *c);
static void milter_process(mconn_t *c);
static void milter_resume(mconn_t *c);

/* ---- plumbing -------------------------------------------------------------------------------- */

static void milter_on_close(uv_handle_t *h)
{
    mconn_t *c = h->data;
    if (--c->open_handles > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        milter_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    struct server *srv = c->srv;
    tamis_buf_free(&c->in);
    tamis_buf_free(&c->msg);
    free(c);
    tamisd_server_hold(srv, -1);
}

static void milter_close(mconn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    tamisd_limits_release(&c->slot);
    tamisd_mta_scan_cancel(c->job);
    c->job = NULL;
    uv_close(&c->h.handle, milter_on_close);
    uv_close((uv_handle_t *)&c->timer, milter_on_close);
}

static void milter_on_write(uv_write_t *w, int status)
{
    mwrite_t *mw = (mwrite_t *)w;
    if (status < 0)
        milter_close(mw->c);
    free(mw);
}

/* Sends b's bytes (copied) and empties b. */
static void milter_send(mconn_t *c, tamis_buf_t *b)
{
    if (c->closing || b->len == 0 || b->err) {
        if (b->err)
            milter_close(c);
        tamis_buf_reset(b);
        return;
    }
    mwrite_t *mw = malloc(sizeof *mw + b->len);
    if (!mw) {
        milter_close(c);
        return;
    }
    mw->c = c;
    mw->len = b->len;
    memcpy(mw->data, b->data, b->len);
    tamis_buf_reset(b);
    uv_buf_t ub = uv_buf_init(mw->data, (unsigned)mw->len);
    if (uv_write(&mw->req, &c->h.stream, &ub, 1, milter_on_write) != 0) {
        free(mw);
        milter_close(c);
    }
}

static void milter_reply(mconn_t *c, char cmd)
{
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    tamis_mta_milter_put(&b, cmd, NULL, 0);
    milter_send(c, &b);
    tamis_buf_free(&b);
}

static void milter_on_timer(uv_timer_t *t)
{
    mconn_t *c = t->data;
    tamisd_log(TAMISD_LOG_WARN, "milter conn=%lu: idle for %u s, closing", c->id,
               tamisd_server_opts(c->srv)->timeout_mta);
    milter_close(c);
}

static void milter_arm(mconn_t *c)
{
    uv_timer_start(&c->timer, milter_on_timer,
                   (uint64_t)tamisd_server_opts(c->srv)->timeout_mta * 1000, 0);
}

/* ---- per-message state ----------------------------------------------------------------------- */

static void milter_reset_message(mconn_t *c)
{
    tamis_buf_free(&c->msg);
    tamis_buf_init(&c->msg, 0);
    c->too_big = false;
    c->in_message = false;
    c->nxspam = 0;
    c->has_subject = false;
}

static void milter_append(mconn_t *c, const char *p, size_t n)
{
    if (c->too_big)
        return;
    if (c->msg.len + n > tamisd_server_opts(c->srv)->max_size) {
        c->too_big = true;
        return;
    }
    tamis_buf_append(&c->msg, p, n);
}

/* Copies an MTA-supplied value; control characters become '?' so that a value can never break
 * the header lines we build from it. */
static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* Macros come before the event they belong to; we keep the few the log and the scan use. */
static void milter_macros(mconn_t *c, const tamis_mta_milter_pkt_t *p)
{
    const char *v[TAMIS_MTA_MILTER_STRINGS_MAX];
    size_t n = 0;
    if (p->len < 1 || tamis_mta_milter_strings(p->data + 1, p->len - 1, v, 64, &n) != 0)
        return; /* a malformed macro list only costs us the names */
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *name = v[i], *val = v[i + 1];
        if (strcmp(name, "i") == 0 || strcmp(name, "{i}") == 0)
            copy_str(c->qid, sizeof c->qid, val);
        else if (strcmp(name, "{auth_authen}") == 0)
            copy_str(c->auth, sizeof c->auth, val);
        else if (strcmp(name, "{client_addr}") == 0)
            copy_str(c->client_addr, sizeof c->client_addr, val);
        else if (strcmp(name, "{client_name}") == 0)
            copy_str(c->client_name, sizeof c->client_name, val);
    }
}

static int milter_connect(mconn_t *c, const tamis_mta_milter_pkt_t *p)
{
    tamis_mta_milter_connect_t ci;
    if (tamis_mta_milter_connect(p->data, p->len, &ci) != 0)
        return TAMIS_EPROTO;
    if (ci.host[0] != '[') /* "[1.2.3.4]" means no reverse name */
        copy_str(c->client_name, sizeof c->client_name, ci.host);
    if (ci.addr[0])
        copy_str(c->client_addr, sizeof c->client_addr, ci.addr);
    return 0;
}

static void note_xspam(mconn_t *c, const char *name)
{
    if (strncasecmp(name, "X-Spam-", 7) != 0 || strlen(name) >= sizeof c->xspam[0].name)
        return;
    for (size_t i = 0; i < c->nxspam; i++) {
        if (strcasecmp(c->xspam[i].name, name) == 0) {
            c->xspam[i].count++;
            return;
        }
    }
    if (c->nxspam < MILTER_XSPAM_MAX) {
        copy_str(c->xspam[c->nxspam].name, sizeof c->xspam[0].name, name);
        c->xspam[c->nxspam++].count = 1;
    }
}

/* HEADER: "name\0value\0", the value without its leading space; folded lines end in LF. */
static int milter_header(mconn_t *c, const tamis_mta_milter_pkt_t *p)
{
    const char *v[2];
    size_t n = 0;
    if (tamis_mta_milter_strings(p->data, p->len, v, 2, &n) != 0 || n != 2)
        return TAMIS_EPROTO;
    note_xspam(c, v[0]);
    if (!c->has_subject && strcasecmp(v[0], "Subject") == 0) {
        copy_str(c->subject, sizeof c->subject, v[1]);
        c->has_subject = true;
    }
    milter_append(c, v[0], strlen(v[0]));
    milter_append(c, ": ", 2);
    for (const char *s = v[1]; *s; s++) {
        if (*s == '\n' && (s == v[1] || s[-1] != '\r'))
            milter_append(c, "\r", 1);
        milter_append(c, s, 1);
    }
    milter_append(c, "\r\n", 2);
    return 0;
}

/* ---- the verdict ----------------------------------------------------------------------------- */

/* Adds the X-Spam-* fields of the scan's header block, after deleting the ones the message came
 * with (the scan replaced them, as spamd does). */
static void milter_headers(mconn_t *c, tamis_slice_t hdrs, tamis_buf_t *out)
{
    if (c->actions & TAMIS_MTA_SMFIF_CHGHDRS)
        for (size_t i = 0; i < c->nxspam; i++)
            for (unsigned k = c->xspam[i].count; k >= 1; k--)
                tamis_mta_milter_put_header(out, 'm', k, c->xspam[i].name, "");
    tamis_buf_t name, value;
    tamis_buf_init(&name, 256);
    tamis_buf_init(&value, 65536);
    const char *p = hdrs.ptr, *end = hdrs.ptr + hdrs.len;
    while (p < end && *p != '\r' && *p != '\n') {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!colon || !eol || colon > eol)
            break;
        tamis_buf_reset(&name);
        tamis_buf_reset(&value);
        tamis_buf_append(&name, p, (size_t)(colon - p));
        const char *s = colon + 1 + (colon[1] == ' ');
        for (;;) { /* value with its continuation lines, LF-joined as milter wants */
            size_t l = (size_t)(eol - s) - (eol > s && eol[-1] == '\r');
            tamis_buf_append(&value, s, l);
            s = eol + 1;
            if (s >= end || (*s != ' ' && *s != '\t'))
                break;
            tamis_buf_putc(&value, '\n');
            eol = memchr(s, '\n', (size_t)(end - s));
            if (!eol)
                eol = end;
        }
        const char *val = value.data ? value.data : "";
        if (!name.err && !value.err && strncasecmp(name.data, "X-Spam-", 7) == 0)
            tamis_mta_milter_put_header(out, 'h', 0, name.data, val);
        else if (!name.err && !value.err && c->has_subject &&
                 strcasecmp(name.data, "Subject") == 0 && strcmp(val, c->subject) != 0 &&
                 (c->actions & TAMIS_MTA_SMFIF_CHGHDRS))
            tamis_mta_milter_put_header(out, 'm', 1, "Subject", val); /* rewrite_header Subject */
        p = s;
    }
    tamis_buf_free(&name);
    tamis_buf_free(&value);
}

static void milter_scanned(void *arg, const tamisd_mta_result_t *r)
{
    mconn_t *c = arg;
    const tamisd_opts_t *o = tamisd_server_opts(c->srv);
    c->job = NULL;
    c->scanning = false;
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    if (r->rc == TAMIS_ELIMIT) {
        tamis_mta_milter_put(&out, 'c', NULL, 0); /* too big to scan: passed on, as spamc does */
    } else if (r->rc != 0) {
        tamis_mta_milter_put(&out, 't', NULL, 0);
    } else if (o->reject_score > 0 && r->score >= o->reject_score) {
        char text[160];
        snprintf(text, sizeof text, "Message rejected as spam (score %.1f)", r->score);
        tamisd_log(TAMISD_LOG_INFO, "milter id=%s: rejected, score %.1f", c->qid, r->score);
        tamis_mta_milter_put_reply(&out, "550", "5.7.1", text);
    } else {
        if (!o->no_add_headers)
            milter_headers(c, r->message, &out);
        if (o->quarantine_score > 0 && r->score >= o->quarantine_score &&
            (c->actions & TAMIS_MTA_SMFIF_QUARANTINE)) {
            char reason[96];
            snprintf(reason, sizeof reason, "spam, score %.1f", r->score);
            tamisd_log(TAMISD_LOG_INFO, "milter id=%s: quarantined, score %.1f", c->qid, r->score);
            tamis_mta_milter_put(&out, 'q', reason, strlen(reason) + 1);
        }
        tamis_mta_milter_put(&out, 'c', NULL, 0);
    }
    milter_send(c, &out);
    tamis_buf_free(&out);
    milter_reset_message(c);
    if (c->closing)
        return;
    milter_resume(c);
}

/* Postfix hides its own Received header from milters; the scan gets one in Postfix's format, as
 * the delivered message will have, so relay and trust rules see the client. */
static int milter_received(mconn_t *c)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", localtime_r(&now, &tm));
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    /* an authenticated client as Postfix writes it, so SpamAssassin's trust rules see it */
    tamis_buf_printf(&b, "Received: from %s (%s [%s])\r\n", c->helo[0] ? c->helo : "unknown",
                     c->client_name[0] ? c->client_name : "unknown",
                     c->client_addr[0] ? c->client_addr : "127.0.0.1");
    if (c->auth[0])
        tamis_buf_printf(&b, "\t(Authenticated sender: %s)\r\n", c->auth);
    tamis_buf_printf(&b, "\tby localhost (Postfix) with %s id %s;\r\n\t%s\r\n",
                     c->auth[0] ? "ESMTPA" : "ESMTP", c->qid[0] ? c->qid : "unknown", date);
    tamis_buf_append(&b, c->msg.data ? c->msg.data : "", c->msg.len);
    int rc = b.err;
    if (rc) {
        tamis_buf_free(&b);
        return rc;
    }
    tamis_buf_free(&c->msg);
    c->msg = b;
    return 0;
}

static void milter_eom(mconn_t *c, const tamis_mta_milter_pkt_t *p)
{
    milter_append(c, p->data, p->len); /* EOM may carry the last body chunk */
    if (c->too_big) {
        tamisd_log(TAMISD_LOG_INFO, "milter id=%s: over --max-size, passed unscanned", c->qid);
        milter_reply(c, 'c');
        milter_reset_message(c);
        return;
    }
    const char *host = c->client_name[0] ? c->client_name : "unknown";
    if (milter_received(c) != 0) {
        milter_reply(c, 't');
        milter_reset_message(c);
        return;
    }
    c->job =
        tamisd_mta_scan(c->srv, &c->msg, false, c->qid, c->client_addr, host, milter_scanned, c);
    if (!c->job) {
        milter_reply(c, 't');
        milter_reset_message(c);
        return;
    }
    c->scanning = true;
    uv_timer_stop(&c->timer); /* the scan has its own budget (--timeout-child) */
    uv_read_stop(&c->h.stream);
}

static uint32_t milter_nr_flag(char cmd)
{
    switch (cmd) {
    case 'C':
        return TAMIS_MTA_SMFIP_NR_CONN;
    case 'H':
        return TAMIS_MTA_SMFIP_NR_HELO;
    case 'M':
        return TAMIS_MTA_SMFIP_NR_MAIL;
    case 'R':
        return TAMIS_MTA_SMFIP_NR_RCPT;
    case 'T':
        return TAMIS_MTA_SMFIP_NR_DATA;
    case 'L':
        return TAMIS_MTA_SMFIP_NR_HDR;
    case 'N':
        return TAMIS_MTA_SMFIP_NR_EOH;
    case 'B':
        return TAMIS_MTA_SMFIP_NR_BODY;
    default:
        return 0;
    }
}

/* One packet. Returns 0, or an error code to close the connection. */
static int milter_packet(mconn_t *c, const tamis_mta_milter_pkt_t *p)
{
    uint32_t ver, act, proto;
    switch (p->cmd) {
    case 'O': {
        if (tamis_mta_milter_optneg(p->data, p->len, &ver, &act, &proto) != 0 || ver < 2)
            return TAMIS_EPROTO;
        c->actions =
            act &
            (TAMIS_MTA_SMFIF_ADDHDRS | TAMIS_MTA_SMFIF_CHGHDRS |
             (tamisd_server_opts(c->srv)->quarantine_score > 0 ? TAMIS_MTA_SMFIF_QUARANTINE : 0));
        tamis_buf_t b;
        tamis_buf_init(&b, 0);
        /* Every event before end-of-message only ever gets "continue": where the MTA allows,
         * it need not wait for it, which saves a round trip per header and body chunk. */
        c->noreply =
            proto & (TAMIS_MTA_SMFIP_NR_HDR | TAMIS_MTA_SMFIP_NR_CONN | TAMIS_MTA_SMFIP_NR_HELO |
                     TAMIS_MTA_SMFIP_NR_MAIL | TAMIS_MTA_SMFIP_NR_RCPT | TAMIS_MTA_SMFIP_NR_DATA |
                     TAMIS_MTA_SMFIP_NR_EOH | TAMIS_MTA_SMFIP_NR_BODY);
        tamis_mta_milter_put_optneg(&b, ver < TAMIS_MTA_MILTER_VERSION ? ver : 6, c->actions,
                                    (proto & TAMIS_MTA_SMFIP_NOUNKNOWN) | c->noreply);
        milter_send(c, &b);
        tamis_buf_free(&b);
        return 0;
    }
    case 'D':
        milter_macros(c, p);
        return 0;
    case 'C':
        if (milter_connect(c, p) != 0)
            return TAMIS_EPROTO;
        break;
    case 'H':
        if (p->len && memchr(p->data, '\0', p->len))
            copy_str(c->helo, sizeof c->helo, p->data);
        break;
    case 'M':
        milter_reset_message(c);
        c->in_message = true;
        break;
    case 'L':
        if (milter_header(c, p) != 0)
            return TAMIS_EPROTO;
        break;
    case 'N':
        milter_append(c, "\r\n", 2);
        break;
    case 'B':
        milter_append(c, p->data, p->len);
        break;
    case 'E':
        milter_eom(c, p);
        return 0;
    case 'A':
        milter_reset_message(c);
        return 0; /* no reply */
    case 'K':
        milter_reset_message(c);
        c->qid[0] = c->auth[0] = c->client_addr[0] = c->client_name[0] = c->helo[0] = '\0';
        return 0;
    case 'Q':
        return TAMIS_EIO; /* end of session: close */
    case 'R':
    case 'T':
    case 'U':
        break;
    default:
        return TAMIS_EPROTO;
    }
    if (!(c->noreply & milter_nr_flag(p->cmd)))
        milter_reply(c, 'c');
    return 0;
}

/* Parses every complete packet in c->in, unless a scan is running (Postfix then waits). */
static void milter_process(mconn_t *c)
{
    size_t off = 0;
    while (!c->closing && !c->scanning) {
        tamis_mta_milter_pkt_t p;
        size_t used = 0;
        int rc = tamis_mta_milter_frame(c->in.data + off, c->in.len - off,
                                        TAMIS_MTA_MILTER_PACKET_MAX, &p, &used);
        if (rc == 0)
            break;
        if (rc < 0 || (rc = milter_packet(c, &p)) != 0) {
            if (rc != TAMIS_EIO) {
                tamisd_log(TAMISD_LOG_WARN, "milter conn=%lu: bad packet '%c': %s", c->id,
                           rc < 0 && off + 4 < c->in.len ? c->in.data[off + 4] : '?',
                           tamis_strerror(rc));
                tamisd_limits_fail(&c->slot.key, "bad milter packet");
            }
            milter_close(c);
            return;
        }
        off += used;
    }
    if (off && !c->closing) {
        memmove(c->in.data, c->in.data + off, c->in.len - off);
        c->in.len -= off;
    }
}

static void milter_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char rbuf[65536]; /* loop thread only; consumed before the next allocation */
    (void)suggested;
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void milter_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mconn_t *c = s->data;
    if (nread < 0) {
        milter_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (tamis_buf_append(&c->in, buf->base, (size_t)nread) != 0) {
        tamisd_log(TAMISD_LOG_WARN, "milter conn=%lu: input over limit", c->id);
        milter_close(c);
        return;
    }
    milter_arm(c);
    milter_process(c);
}

static void milter_resume(mconn_t *c)
{
    if (c->closing)
        return;
    milter_arm(c);
    milter_process(c); /* packets that arrived before we paused */
    if (!c->closing && !c->scanning &&
        uv_read_start(&c->h.stream, milter_alloc, milter_on_read) != 0)
        milter_close(c);
}

/* ---- accepting and stopping ------------------------------------------------------------------ */

void tamisd_milter_accept(struct server *srv, uv_stream_t *ls, bool is_unix)
{
    mconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_loop_t *loop = tamisd_server_loop(srv);
    c->srv = srv;
    c->id = tamisd_server_next_id(srv);
    tamis_buf_init(&c->in, MILTER_IN_MAX);
    tamis_buf_init(&c->msg, 0);
    if (is_unix)
        uv_pipe_init(loop, &c->h.pipe, 0);
    else
        uv_tcp_init(loop, &c->h.tcp);
    uv_timer_init(loop, &c->timer);
    c->h.handle.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = milter_conns;
    if (milter_conns)
        milter_conns->prev = c;
    milter_conns = c;
    tamisd_server_hold(srv, +1);
    if (uv_accept(ls, &c->h.stream) != 0) {
        milter_close(c);
        return;
    }
    struct sockaddr_storage ss;
    if (!is_unix) {
        int len = sizeof ss;
        bool known = uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0;
        if (known && tamisd_limits_banned((struct sockaddr *)&ss)) {
            milter_close(c); /* silently: the ban has its log line */
            return;
        }
        if (!known || !tamisd_acl_allows(tamisd_server_acl(srv), (struct sockaddr *)&ss)) {
            tamisd_log(TAMISD_LOG_WARN, "milter: unauthorized connection refused");
            if (known)
                tamisd_limits_fail_addr((struct sockaddr *)&ss, "not in --allowed-ips");
            milter_close(c);
            return;
        }
    }
    /* over a limit: closed at once, so the MTA applies milter_default_action (tempfail) */
    if (tamisd_limits_admit(&c->slot, is_unix ? NULL : (struct sockaddr *)&ss, "milter") !=
        TAMISD_ADMIT_OK) {
        milter_close(c);
        return;
    }
    tamisd_log(TAMISD_LOG_DEBUG, "milter conn=%lu: connected", c->id);
    milter_resume(c);
}

void tamisd_milter_stop(struct server *srv)
{
    for (mconn_t *c = milter_conns, *next; c; c = next) {
        next = c->next;
        if (c->srv == srv && !c->scanning && !c->in_message)
            milter_close(c);
    }
}
