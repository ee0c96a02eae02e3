/*
 * The work a worker thread does for one request: scan the message with the shared, immutable
 * rule set, then build the complete reply bytes and the log line, so the loop thread only writes.
 * Nothing here touches loop state.
 */
#include "tamisd.h"

#include "tamis/scan.h"

#include <stdio.h>
#include <string.h>

/* The body of the reply, by verb (spec-protocol §3). */
static int reply_body(tamis_scan_t *s, tamis_verb_t verb, tamis_buf_t *body)
{
    switch (verb) {
    case TAMIS_VERB_SYMBOLS:
        return tamis_scan_symbols(s, body);
    case TAMIS_VERB_REPORT:
        return tamis_scan_report(s, body);
    case TAMIS_VERB_REPORT_IFSPAM:
        return tamis_scan_is_spam(s) ? tamis_scan_report(s, body) : 0;
    case TAMIS_VERB_PROCESS:
        return tamis_scan_rewrite(s, body);
    case TAMIS_VERB_HEADERS:
        return tamis_scan_headers(s, body);
    default:
        return 0; /* CHECK: headers only */
    }
}

/* lim (caller's storage) lets a message up to --max-size through the parser's own size limit. */
static void scan_opts(const tamisd_scan_t *j, tamis_scan_opts_t *o, tamis_msg_limits_t *lim)
{
    tamis_scan_opts_default(o);
    tamis_msg_limits_default(lim);
    if (j->max_size > lim->max_message_bytes)
        lim->max_message_bytes = j->max_size;
    o->limits = lim;
    o->remote_addr = j->remote_addr;
    o->remote_host = j->remote_host;
    o->user = j->user;
    o->local_only = j->local;
    o->run.time_budget_ms = j->budget_ms;
}

void tamisd_scan_run(tamisd_scan_t *j)
{
    tamis_buf_init(&j->reply, 0);
    tamis_buf_init(&j->log, 0);
    tamis_scan_opts_t o;
    tamis_msg_limits_t lim;
    scan_opts(j, &o, &lim);
    tamis_scan_t *s = NULL;
    j->rc = tamis_scan_run(j->rs, j->body.ptr, j->body.len, &o, &s, j->err, sizeof j->err);
    if (j->rc < 0)
        return;
    tamis_buf_t body;
    tamis_buf_init(&body, 0);
    j->rc = reply_body(s, j->verb, &body);
    if (j->rc == 0 && body.err)
        j->rc = body.err;
    if (j->rc == 0) {
        tamis_proto_verdict_t v = {
            .is_spam = tamis_scan_is_spam(s),
            .score = tamis_scan_score_str(s),
            .threshold = tamis_scan_required_str(s),
            .body = tamis_slice(body.data ? body.data : "", body.len),
        };
        j->rc = tamis_proto_reply(&j->reply, j->verb, j->version, &v);
        tamis_scan_log_line(s, j->id, &j->log);
    } else {
        snprintf(j->err, sizeof j->err, "building the %s reply failed: %s",
                 tamis_proto_verb_name(j->verb), tamis_strerror(j->rc));
    }
    tamis_buf_free(&body);
    tamis_scan_free(s);
}

void tamisd_scan_clear(tamisd_scan_t *j)
{
    tamis_buf_free(&j->reply);
    tamis_buf_free(&j->log);
}
