/*
 * scan: the per-message pipeline. tamis_scan_run() copies the input, splits it as SpamAssassin's
 * Message.pm does (for the rewrite), parses it with lib/msg, runs the rule set with the score set
 * SpamAssassin would use, rounds the score to 3 decimals, decides spam as score >= required_score,
 * and gathers what the output side needs (relays, preview lines, header lookup) into the plain
 * fields of struct tamis_scan. Everything lives in one arena freed by tamis_scan_free().
 */
#include "scan_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void tamis_scan_opts_default(tamis_scan_opts_t *o)
{
    if (o)
        memset(o, 0, sizeof(*o));
}

void tamis_scan_free(tamis_scan_t *s)
{
    if (!s)
        return;
    tamis_msg_free(s->msg);
    tamis_rules_unref(s->rs);
    tamis_arena_free(s->arena); /* s itself lives in the arena */
}

/* (sprintf "%0.3f", $score) + 0 */
static double round3(double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.3f", v);
    return strtod(b, NULL);
}

/* Score set (spec-rules §2.2): bit 0 = network tests, bit 1 = Bayes usable. */
static int score_set(const tamis_conf_t *c, const tamis_scan_opts_t *o, bool bayes_usable)
{
    int set = o->local_only ? 0 : 1;
    if (c->use_bayes && c->use_bayes_rules && (o->run.bayes_available || bayes_usable))
        set |= 2;
    return set;
}

/* $pms->get(Name): every decoded value, each followed by a newline. */
static const char *msg_header_get(const tamis_scan_t *s, const char *name)
{
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS__SCAN_MAX_EXPANSION);
    size_t n = tamis_msg_header_count(s->msg);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const tamis_header_t *h = tamis_msg_header_at(s->msg, i);
        if (!h || strcasecmp(h->name, name) != 0 || !strncasecmp(h->name, "X-Spam-", 7))
            continue;
        tamis_buf_puts(&b, h->decoded ? h->decoded : "");
        tamis_buf_putc(&b, '\n');
        any = true;
    }
    const char *r = any && !b.err ? tamis_arena_strndup(s->arena, b.data, b.len) : NULL;
    tamis_buf_free(&b);
    return r;
}

static const char *host_name(tamis_arena_t *a, const char *given)
{
    if (given && *given)
        return tamis_arena_strdup(a, given);
    char h[256];
    if (gethostname(h, sizeof h) != 0)
        return "localhost";
    h[sizeof h - 1] = '\0';
    return tamis_arena_strdup(a, h);
}

/* What the tags need from the message and the rule set. */
static void gather(tamis_scan_t *s, const tamis_scan_opts_t *o)
{
    if (tamis_rules_relays(s->rs, s->msg, s->arena, &s->relays) != 0)
        memset(&s->relays, 0, sizeof(s->relays));
    size_t lines = tamis_msg_body_line_count(s->msg);
    for (size_t i = 1; i < lines && s->preview_line_count < 3; i++)
        s->preview_lines[s->preview_line_count++] = tamis_msg_body_line(s->msg, i);
    s->languages = o->run.locale_languages;
    s->header_get = msg_header_get;
}

/* SpamAssassin deletes every X-Spam-* field before the rules run (check_timed), so header rules
 * never see an earlier filter's verdict. lib/msg keeps all fields, so the copy handed to it has
 * them removed (with their continuation lines). Only full rules differ from SpamAssassin then:
 * they see the message without those fields. Returns data itself when there is nothing to drop. */
static const char *without_old_marks(tamis_scan_t *s, size_t *len)
{
    const char *h = s->pr.headers;
    size_t n = s->pr.headers_len;
    bool any = strncasecmp(h, "X-Spam-", 7) == 0;
    for (const char *p = h; !any && (p = memchr(p, '\n', (size_t)(h + n - p))); p++)
        any = strncasecmp(p + 1, "X-Spam-", 7) == 0;
    *len = s->len;
    if (!any)
        return s->data;
    char *out = tamis_arena_alloc(s->arena, s->len + n + 1);
    if (!out)
        return NULL;
    size_t w = 0;
    if (s->pr.mbox.len)
        memcpy(out, s->pr.mbox.ptr, s->pr.mbox.len);
    w += s->pr.mbox.len;
    bool dropping = false;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(h + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - h) + 1 : n;
        if (strncasecmp(h + i, "X-Spam-", 7) == 0)
            dropping = true;
        else if (h[i] != ' ' && h[i] != '\t')
            dropping = false;
        if (!dropping) {
            memcpy(out + w, h + i, e - i);
            w += e - i;
        }
        i = e;
    }
    memcpy(out + w, s->pr.body.ptr, s->pr.body.len);
    w += s->pr.body.len;
    out[w] = '\0';
    *len = w;
    return out;
}

static int setup(tamis_scan_t *s, tamis_ruleset_t *rs, const char *data, size_t len,
                 const tamis_scan_opts_t *o)
{
    char *copy = tamis_arena_alloc(s->arena, len + 1);
    if (!copy)
        return TAMIS_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    s->data = copy;
    s->len = len;
    s->rs = tamis_rules_ref(rs);
    s->conf = tamis_rules_conf(rs);
    s->hostname = host_name(s->arena, o->hostname);
    s->remote_host = o->remote_host ? tamis_arena_strdup(s->arena, o->remote_host) : NULL;
    s->remote_addr = o->remote_addr ? tamis_arena_strdup(s->arena, o->remote_addr) : NULL;
    s->user = o->user ? tamis_arena_strdup(s->arena, o->user) : NULL;
    s->now = o->now ? o->now : time(NULL);
    s->boundary_seed = o->boundary_seed;
    if (!s->conf || !s->hostname)
        return TAMIS_ENOMEM;
    return tamis__pristine_split(s->data, len, s->arena, &s->pr);
}

int tamis_scan_run(tamis_ruleset_t *rs, const char *data, size_t len, const tamis_scan_opts_t *o,
                   tamis_scan_t **out, char *err, size_t errlen)
{
    if (!out)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "scan: no result pointer");
    *out = NULL;
    if (!rs || (!data && len))
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "scan: no rule set or data");
    tamis_scan_opts_t defaults;
    if (!o) {
        tamis_scan_opts_default(&defaults);
        o = &defaults;
    }
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    if (o->limits)
        lim = *o->limits;
    if (lim.max_message_bytes && len > lim.max_message_bytes)
        return tamis_seterr(err, errlen, TAMIS_ELIMIT, "scan: message of %zu bytes over %zu", len,
                            lim.max_message_bytes);
    double t0 = tamis_now_ms();
    tamis_arena_t *a = tamis_arena_new(0);
    tamis_scan_t *s = a ? tamis_arena_calloc(a, 1, sizeof(*s)) : NULL;
    if (!s) {
        tamis_arena_free(a);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "scan: out of memory");
    }
    s->arena = a;
    int rc = setup(s, rs, data, len, o);
    size_t plen = 0;
    const char *pdata = rc ? NULL : without_old_marks(s, &plen);
    if (!rc && !pdata)
        rc = TAMIS_ENOMEM;
    if (!lim.redirectors)
        lim.redirectors = tamis_rules_redirectors(rs);
    if (!rc)
        rc = tamis_msg_parse(pdata, plen, &lim, &s->msg, err, errlen);
    s->dns.blocked_zones = "";
    if (!rc) {
        double parsed = tamis_now_ms();
        tamis_rules_run_opts_t ro = o->run;
        tamis__netctx_t net = {NULL, NULL};
        rc = tamis__scan_bayes_classify(s, o, &ro);
        ro.score_set = score_set(s->conf, o, s->bayes.usable);
        /* DNS first, so the answers arrive while the other rules run (docs/dns.md) */
        if (!rc && o->net && !o->local_only && (ro.score_set & 1)) {
            double deadline = parsed + s->conf->rbl_timeout * 1000.0;
            if (ro.time_budget_ms > 0 && parsed + ro.time_budget_ms < deadline)
                deadline = parsed + ro.time_budget_ms; /* never past the scan's own budget */
            if (!s->conf->skip_rbl_checks)             /* DNSBLs only: SPF/DKIM/DMARC still run */
                rc = tamis__dns_start(s, o->net, &ro, deadline, &net.dns);
            if (!rc)
                rc = tamis__auth_begin(s, o->net, &ro, deadline, &net.auth);
            ro.net_eval = tamis__net_eval;
            ro.net_ctx = &net;
        }
        if (!rc)
            rc = tamis_rules_run(rs, s->msg, &ro, a, &s->result, err, errlen);
        tamis__dns_end(net.dns, &s->dns);
        tamis__auth_end(net.auth, s);
        if (!rc) /* fail-safe: a limit hit is scored and reported, never fatal (limits.c) */
            rc = tamis__scan_limits(s, ro.score_set);
    }
    if (!rc) {
        s->score = round3(s->result.score);
        s->required = s->conf->required_score;
        s->is_spam = s->score >= s->required;
        tamis__scan_bayes_finish(s, o);
        gather(s, o);
        rc = tamis__scan_prepare(s);
    }
    if (rc) {
        if (rc == TAMIS_ENOMEM && err && errlen && !*err)
            tamis_seterr(err, errlen, rc, "scan: out of memory");
        tamis_scan_free(s);
        return rc;
    }
    s->elapsed_ms = tamis_now_ms() - t0;
    *out = s;
    return 0;
}
