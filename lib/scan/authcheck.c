/*
 * The scan's mail authentication (lib/auth, docs/auth.md). SPF, DKIM and DMARC start as soon as
 * the message is parsed, on a batch of their own on the scan's resolver, so their lookups overlap
 * with rule matching like the DNSBL ones; the first SPF/DKIM/DMARC eval (the engine runs net evals
 * last) finishes them. tamis__net_eval is the callback the rule engine sees: it sends those evals
 * here and the others to the DNSBL code (dnsbl.c).
 *
 * Inputs as SpamAssassin's SPF and DKIM plugins take them: the client IP and HELO of the first
 * untrusted relay, the envelope sender of PerMsgStatus, the conf's welcome lists and
 * adsp_override. Memory: the scan's arena; the batch is freed by tamis__auth_end (or by the arena
 * cleanup when the scan fails first).
 */
#include "scan_internal.h"

#include <string.h>

struct tamis__authck {
    tamis_net_batch_t *b;
    tamis_auth_t *auth;
    const tamis_auth_result_t *res;
    tamis_auth_dns_t inner;    /* lib/auth's batch adapter, wrapped to count the rounds */
    unsigned rounds;           /* blocking waits on a lookup started after the previous one */
    unsigned char started[64]; /* round in which each of the first slots was started */
};

static int counted_start(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    tamis__authck_t *c = ctx;
    int rc = c->inner.start(c->inner.ctx, name, type, slot);
    if (*slot < sizeof c->started)
        c->started[*slot] = (unsigned char)(c->rounds < 255 ? c->rounds : 255);
    return rc;
}

/* A blocking wait on a lookup started since the last such wait (one that needed the previous
 * answers: an SPF include, the DMARC org domain) is one more round trip on the scan's path; a
 * wait on one that was already in flight then overlaps with it. */
static const tamis_net_answer_t *counted_wait(void *ctx, size_t slot)
{
    tamis__authck_t *c = ctx;
    unsigned started = slot < sizeof c->started ? c->started[slot] : c->rounds;
    bool fresh = started >= c->rounds && !tamis_net_batch_answer(c->b, slot);
    const tamis_net_answer_t *an = c->inner.wait(c->inner.ctx, slot);
    if (fresh)
        c->rounds++;
    return an;
}

static void authck_cleanup(void *p)
{
    tamis__authck_t *c = p;
    tamis_net_batch_free(c->b);
    c->b = NULL;
}

/* The conf's entries in lib/auth's layout (the same fields, copied: no layout assumption). */
static const tamis_auth_adsp_t *adsp_of(const tamis_conf_t *conf, tamis_arena_t *a)
{
    if (!conf->adsp_override_count)
        return NULL;
    tamis_auth_adsp_t *v = tamis_arena_calloc(a, conf->adsp_override_count, sizeof *v);
    for (size_t i = 0; v && i < conf->adsp_override_count; i++) {
        v[i].domain = conf->adsp_override[i].domain;
        v[i].practice = conf->adsp_override[i].practice;
    }
    return v;
}

int tamis__auth_begin(tamis_scan_t *s, tamis_net_t *net, const tamis_rules_run_opts_t *run,
                      double deadline_ms, tamis__authck_t **out)
{
    *out = NULL;
    tamis__authck_t *c = tamis_arena_calloc(s->arena, 1, sizeof *c);
    if (!c)
        return TAMIS_ENOMEM;
    c->b = tamis_net_batch_new(net);
    if (!c->b || tamis_arena_add_cleanup(s->arena, authck_cleanup, c) != 0) {
        tamis_net_batch_free(c->b);
        return TAMIS_ENOMEM;
    }
    int rc = tamis_auth_dns_batch(&c->inner, c->b, deadline_ms, s->arena);
    if (rc)
        return rc;
    tamis_auth_dns_t dns = {.start = counted_start, .wait = counted_wait, .ctx = c};
    tamis_auth_input_t in;
    memset(&in, 0, sizeof in);
    const tamis_relay_t *r = tamis_rules_first_untrusted(s->rs, s->msg, s->arena);
    if (r && r->ip && *r->ip) {
        in.client_ip = r->ip;
        in.helo = r->helo;
    }
    tamis_rules_senders_t snd;
    if (tamis_rules_senders(s->rs, s->msg, run, s->arena, &snd) == 0 && snd.envelope_from &&
        *snd.envelope_from)
        in.envelope_from = snd.envelope_from;
    in.now = s->now ? (double)s->now : 0;
    in.conf = s->conf;
    in.adsp_override = adsp_of(s->conf, s->arena);
    in.adsp_override_count = in.adsp_override ? s->conf->adsp_override_count : 0;
    char err[256];
    rc = tamis_auth_start(s->msg, &in, &dns, s->arena, &c->auth, err, sizeof err);
    if (rc)
        return rc;
    *out = c;
    return 0;
}

const tamis_auth_result_t *tamis__auth_result(tamis__authck_t *c)
{
    if (c && !c->res)
        c->res = tamis_auth_finish(c->auth);
    return c ? c->res : NULL;
}

void tamis__auth_end(tamis__authck_t *c, tamis_scan_t *s)
{
    if (!c)
        return;
    if (s->conf->authres_header) /* the header needs every result, evals or not */
        tamis__auth_result(c);
    s->auth = c->res;
    s->dns.auth_rounds = c->rounds;
    tamis_net_batch_free(c->b); /* cancels what is still pending */
    c->b = NULL;
}

/* SPF, DKIM (and its ADSP and welcome lists) and DMARC evals; the rest are DNSBL/URIBL. */
static bool is_auth_func(const char *f)
{
    return strstr(f, "spf") || strstr(f, "dkim") || strstr(f, "dmarc");
}

bool tamis__net_eval(void *ctx, const char *rule, const char *func, const char *const *args,
                     size_t nargs, const char **log)
{
    tamis__netctx_t *n = ctx;
    if (is_auth_func(func)) {
        bool known = false;
        const tamis_auth_result_t *r = tamis__auth_result(n->auth);
        return r && tamis_auth_eval(r, func, args, nargs, &known) && known;
    }
    return n->dns && tamis__dns_eval(n->dns, rule, func, args, nargs, log);
}
