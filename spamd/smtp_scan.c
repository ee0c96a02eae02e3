/*
 * Scans for the milter and SMTP front ends. They reuse the spamc path's worker job
 * (tamisd_scan_run in job.c, which builds a spamd reply) and read the verdict back from that
 * reply with lib/proto's client-side parser, so there is one scan path for every front end.
 */
#include "tamisd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct tamisd_mta_job {
    uv_work_t work;
    struct server *srv;
    tamisd_mta_done_t done; /* NULL once cancelled */
    void *arg;
    char *msg;
    size_t len;
    tamisd_scan_t scan;
    struct tamisd_dns *dns; /* the resolver this scan uses (one use held) */
    char id[64];
    char addr[64];
    char host[256];
    double t0;
};

static void mta_work(uv_work_t *w)
{
    tamisd_mta_job_t *j = w->data;
    tamisd_scan_run(&j->scan);
}

/* Reads the verdict and body out of the spamd reply the job built. */
static void mta_result(tamisd_mta_job_t *j, int status, tamisd_mta_result_t *r)
{
    memset(r, 0, sizeof *r);
    r->rc = status ? TAMIS_EINTERNAL : j->scan.rc;
    r->err = j->scan.err[0] ? j->scan.err : tamis_strerror(r->rc);
    if (r->rc)
        return;
    tamis_proto_response_t resp;
    const char *p = j->scan.reply.data ? j->scan.reply.data : "";
    size_t n = j->scan.reply.len;
    if (tamis_proto_parse_response(p, n, &resp) != 1 || resp.code != 0 || !resp.has_spam) {
        r->rc = TAMIS_EPROTO;
        r->err = "unexpected scan reply";
        return;
    }
    r->is_spam = resp.is_spam;
    r->score = resp.score;
    r->message = tamis_slice(p + resp.header_bytes, n - resp.header_bytes);
}

static void mta_after(uv_work_t *w, int status)
{
    tamisd_mta_job_t *j = w->data;
    tamisd_mta_result_t r;
    mta_result(j, status, &r);
    double ms = tamis_now_ms() - j->t0;
    if (r.rc == 0)
        tamisd_log(TAMISD_LOG_INFO, "%s id=%s total_ms=%.1f%s",
                   j->scan.log.data ? j->scan.log.data : "", j->id, ms,
                   j->done ? "" : " (client gone)");
    else
        tamisd_log(TAMISD_LOG_ERR, "id=%s: scan failed: %s", j->id, r.err);
    if (j->done)
        j->done(j->arg, &r);
    struct server *srv = j->srv;
    tamisd_server_dns_release(srv, j->dns);
    tamis_rules_unref(j->scan.rs);
    tamisd_scan_clear(&j->scan);
    free(j->msg);
    free(j);
    tamisd_server_hold(srv, -1);
}

tamisd_mta_job_t *tamisd_mta_scan(struct server *srv, tamis_buf_t *msg, bool whole, const char *id,
                                  const char *addr, const char *host, tamisd_mta_done_t done,
                                  void *arg)
{
    tamisd_mta_job_t *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    const tamisd_opts_t *o = tamisd_server_opts(srv);
    j->srv = srv;
    j->done = done;
    j->arg = arg;
    j->t0 = tamis_now_ms();
    if (!msg->data)
        tamis_buf_puts(msg, "");
    j->msg = tamis_buf_steal(msg, &j->len);
    snprintf(j->id, sizeof j->id, "%s", id && id[0] ? id : "-");
    snprintf(j->addr, sizeof j->addr, "%s", addr && addr[0] ? addr : "127.0.0.1");
    snprintf(j->host, sizeof j->host, "%s", host && host[0] ? host : "localhost");
    tamisd_scan_t *s = &j->scan;
    s->rs = tamisd_server_rules_ref(srv);
    s->verb = whole ? TAMIS_VERB_PROCESS : TAMIS_VERB_HEADERS;
    s->version = 1.5;
    s->body = tamis_slice(j->msg ? j->msg : "", j->msg ? j->len : 0);
    s->remote_addr = j->addr;
    s->remote_host = j->host;
    s->id = j->id;
    s->local = o->local;
    j->dns = tamisd_server_dns_acquire(srv);
    s->net = tamisd_dns_net(j->dns);
    s->budget_ms = o->timeout_child ? o->timeout_child * 1000.0 : 0;
    s->max_size = o->max_size;
    j->work.data = j;
    if (uv_queue_work(tamisd_server_loop(srv), &j->work, mta_work, mta_after) != 0) {
        tamisd_server_dns_release(srv, j->dns);
        tamis_rules_unref(s->rs);
        free(j->msg);
        free(j);
        return NULL;
    }
    tamisd_server_hold(srv, +1);
    return j;
}

void tamisd_mta_scan_cancel(tamisd_mta_job_t *j)
{
    if (!j)
        return;
    j->done = NULL;
    uv_cancel((uv_req_t *)&j->work);
}
