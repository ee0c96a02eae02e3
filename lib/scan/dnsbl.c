/*
 * The scan's DNS work (docs/dns.md): DNSBL (DNSEval's check_rbl, check_rbl_txt, check_rbl_sub)
 * and URIBL (URIDNSBL's uridnsbl/uridnssub, urirhsbl/urirhssub, urinsrhsbl/urinsrhssub,
 * urifullnsrhsbl/urifullnsrhssub) on lib/net's batch API.
 *
 * Design: as soon as the message is parsed, tamis__dns_start plans every query the scored
 * network rules need and starts them in one batch (the loop thread resolves them while this
 * worker runs the regex rules). The rule engine runs net evals last; the first one calls
 * tamis__dns_eval, which waits until every answer is in or the deadline (parse time +
 * rbl_timeout) passes, starts the second-stage queries the NS-based URIBL forms need (A records
 * of the name servers, then the list lookups) within the same deadline, and from then on decides
 * every net eval from the answers it has. No answer, NXDOMAIN, SERVFAIL, timeouts: no hit.
 * Refusal codes ("blocked") only fire the dns_block_rule rules, and their zones are reported to
 * the caller (tamis_scan_dns) for a rate-limited warning.
 *
 * Memory: everything is in the scan's arena; the batch is freed by tamis__dns_end (or by the
 * arena cleanup if the scan fails first). Threads: the worker thread of the scan only.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "scan_internal.h"
#include "tamis/net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpsl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_CONSUMERS 4096  /* (rule, query) pairs per message */
#define MAX_NS_PER_DOMAIN 4 /* name servers of one URI domain whose addresses are looked up */
#define MAX_LOG 512         /* bytes of one hit's log detail */

typedef struct {
    const char *name; /* query name */
    tamis_net_type_t type;
    size_t slot; /* batch slot */
} query_t;

/* What one rule reads. */
typedef enum { R_RBL, R_RBL_SUB, R_URIBL } rkind_t;

/* What a DNSEval rule looks up. */
typedef enum { F_IP, F_ENVFROM, F_FROM_HOST, F_FROM_DOMAIN, F_HEADERS, F_RCVD } rfunc_t;

typedef struct {
    const char *name;
    rkind_t kind;
    rfunc_t func;
    const char *headers; /* check_rbl_headers: its header list, NULL = SA's rbl_headers */
    unsigned tflags;
    const char *set;  /* check_rbl* set name (sub rules: the set they read) */
    size_t set_rule;  /* the first check_rbl* rule of that set, or (size_t)-1: sets by number */
    const char *zone; /* lower case, no trailing dot; NULL for sub rules */
    const char *subtest;
    tamis_net_subtest_t st;
    pcre2_code *re; /* REGEX sub-test, compiled on first use */
    bool re_failed;
    bool txt;
    bool block; /* a dns_block_rule rule of its zone */
    const tamis_rules_uribl_t *decl;
} nrule_t;

/* A query a rule reads, with the candidate it was asked for (IP or domain, for the log). */
typedef struct {
    size_t rule, query;
    const char *label;
} consumer_t;

/* The NS-based URIBL forms: a URI domain whose NS names are needed. */
typedef struct {
    const char *domain;
    size_t ns_query; /* the NS query */
} nsdom_t;

/* The URI hosts whose A records the "a" uridnsbl rules look up. */
typedef struct {
    const char *host;
    size_t a_query;
} ahost_t;

struct tamis__dns {
    tamis_scan_t *s;
    const tamis_ruleset_t *rs;
    tamis_arena_t *a;
    tamis_net_batch_t *b;
    double deadline;
    unsigned max_queries;
    query_t *q;
    size_t nq;
    nrule_t *r;
    size_t nr;
    consumer_t *c;
    size_t nc;
    nsdom_t *ns;
    size_t nns;
    ahost_t *ah;
    size_t nah;
    const char *uri_doms[64]; /* selected URI domains (max 1000 by conf: bounded below) */
    bool waited;
    tamis_scan_dns_t stats;
    tamis_buf_t blocked; /* zones that refused us, space-separated */
};

/* ---- queries ----------------------------------------------------------------------------------
 */

/* Adds name/type to the batch once per message; returns its index or (size_t)-1 when the
 * per-message cap is reached or the name is invalid. */
static size_t add_query(tamis__dns_t *d, const char *name, tamis_net_type_t type)
{
    for (size_t i = 0; i < d->nq; i++)
        if (d->q[i].type == type && strcasecmp(d->q[i].name, name) == 0)
            return i;
    if (d->nq >= d->max_queries) {
        d->stats.skipped++;
        return (size_t)-1;
    }
    size_t slot;
    int rc = tamis_net_batch_add(d->b, name, type, &slot);
    if (rc != 0 && rc != TAMIS_EIO) /* EIO: the slot still completes when the loop runs */
        return (size_t)-1;
    const char *copy = tamis_arena_strdup(d->a, name);
    if (!copy)
        return (size_t)-1;
    d->q[d->nq] = (query_t){copy, type, slot};
    d->stats.queries++;
    return d->nq++;
}

static void consume(tamis__dns_t *d, size_t rule, size_t query, const char *label)
{
    if (query == (size_t)-1 || d->nc >= MAX_CONSUMERS)
        return;
    for (size_t i = 0; i < d->nc; i++)
        if (d->c[i].rule == rule && d->c[i].query == query)
            return;
    d->c[d->nc++] = (consumer_t){rule, query, label};
}

/* Asks "<left>.<zone>" for rule ri. */
static void ask_zone(tamis__dns_t *d, size_t ri, const char *left, const char *label)
{
    char name[256];
    const nrule_t *r = &d->r[ri];
    if (tamis_net_zone_name(left, r->zone, name, sizeof name) != 0)
        return;
    consume(d, ri, add_query(d, name, r->txt ? TAMIS_NET_TXT : TAMIS_NET_A), label);
}

static void ask_ip(tamis__dns_t *d, size_t ri, const char *ip)
{
    char rev[80];
    if (tamis_net_reverse_ip(ip, rev, sizeof rev) == 0)
        ask_zone(d, ri, rev, ip);
}

static bool is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* ---- planning -------------------------------------------------------------------------------- */

static const char *zone_of(tamis_arena_t *a, const char *z)
{
    size_t n = strlen(z);
    while (n && z[n - 1] == '.')
        n--;
    char *c = tamis_arena_strndup(a, z, n);
    for (char *p = c; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return c && *c ? c : NULL;
}

/* is_fqdn_valid + is_domain_valid, roughly: letters, digits, '-', '_', dots between labels,
 * at least two labels. */
static bool valid_host(const char *h)
{
    size_t n = strlen(h);
    if (n < 3 || n > 253 || h[0] == '.' || h[n - 1] == '.' || !strchr(h, '.') || strstr(h, ".."))
        return false;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

/* Asks "<host>.<zone>" (an IP host reversed) with the domains_only / ips_only filters. */
static void ask_host(tamis__dns_t *d, size_t ri, const char *host)
{
    const nrule_t *r = &d->r[ri];
    if (is_ip(host)) {
        if (!(r->tflags & TAMIS_TFLAG_DOMAINS_ONLY))
            ask_ip(d, ri, host);
        return;
    }
    if (r->tflags & TAMIS_TFLAG_IPS_ONLY)
        return;
    char *h = tamis_arena_strdup(d->a, host);
    for (char *p = h; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    size_t n = h ? strlen(h) : 0;
    while (n && h[n - 1] == '.')
        h[--n] = '\0';
    if (h && valid_host(h))
        ask_zone(d, ri, h, h);
}

/* _check_rbl_addresses: the host part of each address (dots squeezed); from_domain: its
 * registrable domain. */
static void ask_addresses(tamis__dns_t *d, size_t ri, const char *const *addrs, size_t n,
                          bool domain)
{
    for (size_t i = 0; i < n && i < 64; i++) {
        const char *at = addrs[i] ? strrchr(addrs[i], '@') : NULL;
        if (!at || !at[1] || strpbrk(at + 1, " \t"))
            continue;
        char host[256];
        size_t k = 0;
        for (const char *p = at + 1; *p == '.'; p++)
            at++;
        for (const char *p = at + 1; *p && k + 1 < sizeof host; p++)
            if (!(*p == '.' && k && host[k - 1] == '.'))
                host[k++] = *p;
        host[k] = '\0';
        const char *h = host;
        if (domain && !is_ip(host)) {
            const char *reg = psl_registrable_domain(psl_builtin(), host);
            if (reg)
                h = reg;
        }
        ask_host(d, ri, h);
    }
}

/* SpamAssassin's default rbl_headers. */
static const char default_rbl_headers[] =
    "EnvelopeFrom,Reply-To,Disposition-Notification-To,X-WebmailclientIP,X-Source-IP";

/* check_rbl_headers: an address in the header (its host), else each line as a host or IP. */
static void ask_headers(tamis__dns_t *d, size_t ri)
{
    const char *list = d->r[ri].headers ? d->r[ri].headers : default_rbl_headers;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        char expr[128];
        if (n && n + 6 < sizeof expr) {
            snprintf(expr, sizeof expr, "%.*s:addr", (int)n, p);
            const char *v = tamis_rules_header(d->rs, d->s->msg, NULL, expr, d->a);
            if (v && strchr(v, '@')) {
                const char *one[1] = {tamis_arena_strndup(d->a, v, strcspn(v, "\n"))};
                ask_addresses(d, ri, one, 1, false);
            } else {
                expr[n] = '\0';
                v = tamis_rules_header(d->rs, d->s->msg, NULL, expr, d->a);
                for (const char *l = v; l && *l;) {
                    size_t ll = strcspn(l, "\n");
                    char host[256];
                    if (ll && ll < sizeof host) {
                        memcpy(host, l, ll);
                        host[ll] = '\0';
                        ask_host(d, ri, host);
                    }
                    l += ll + (l[ll] == '\n');
                }
            }
        }
        p += n + (p[n] == ',');
    }
}

static void plan_senders(tamis__dns_t *d, const tamis_rules_dnsbl_ips_t *ips,
                         const tamis_rules_run_opts_t *run)
{
    tamis_rules_senders_t snd;
    bool have = false;
    for (size_t i = 0; i < d->nr; i++) {
        nrule_t *r = &d->r[i];
        if (r->kind != R_RBL || r->func == F_IP)
            continue;
        if (!have && (r->func == F_ENVFROM || r->func == F_FROM_HOST || r->func == F_FROM_DOMAIN))
            have = tamis_rules_senders(d->rs, d->s->msg, run, d->a, &snd) == 0;
        switch (r->func) {
        case F_ENVFROM:
            if (have && *snd.envelope_from)
                ask_addresses(d, i, &snd.envelope_from, 1, false);
            break;
        case F_FROM_HOST:
        case F_FROM_DOMAIN:
            if (have)
                ask_addresses(d, i, snd.from_addrs, snd.from_count, r->func == F_FROM_DOMAIN);
            break;
        case F_HEADERS:
            ask_headers(d, i);
            break;
        case F_RCVD: {
            const tamis_relay_t *x = ips->oldest_untrusted;
            const char *v[4] = {x ? x->ip : NULL, x ? x->by : NULL, x ? x->helo : NULL,
                                x ? x->rdns : NULL};
            for (size_t k = 0; k < 4; k++)
                if (v[k] && *v[k])
                    ask_host(d, i, v[k]);
            break;
        }
        default:
            break;
        }
    }
}

static void plan_rbl(tamis__dns_t *d, const tamis_rules_dnsbl_ips_t *ips)
{
    for (size_t i = 0; i < d->nr; i++) {
        nrule_t *r = &d->r[i];
        if (r->kind != R_RBL || r->func != F_IP)
            continue;
        const char *v[64];
        size_t n = tamis_rules_dnsbl_select(d->rs, ips, r->set, (r->tflags & TAMIS_TFLAG_NICE) != 0,
                                            v, 64);
        for (size_t k = 0; k < n; k++)
            ask_ip(d, i, v[k]);
    }
}

/* URIDNSBL's preference order for picking uridnsbl_max_domains domains: HTML links first, then
 * forms, images, other HTML, plain text, DKIM signing domains. */
static int uri_rank(const tamis_uri_t *u)
{
    if (u->flags & TAMIS_URI_FROM_DKIM)
        return 5;
    if (u->flags & TAMIS_URI_FROM_HTML) {
        if (strcasecmp(u->html_tag, "a") == 0)
            return 0;
        if (strcasecmp(u->html_tag, "form") == 0)
            return 1;
        if (strcasecmp(u->html_tag, "img") == 0)
            return 2;
        return 3;
    }
    return 4;
}

/* URIDNSBL keys its skip list by lower-cased name: an exact match, no globs (and a glob per
 * entry, ~370 stock ones, twice per URI, was the planner's biggest cost). */
static bool skipped_domain(const tamis_conf_t *c, const char *dom, const char *host)
{
    const tamis_addr_list_t *l = &c->uridnsbl_skip_domains;
    for (size_t i = 0; i < l->count; i++)
        if (strcasecmp(l->items[i].pattern, dom) == 0 || strcasecmp(l->items[i].pattern, host) == 0)
            return true;
    return false;
}

static bool selected(const tamis__dns_t *d, size_t n, const char *dom)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(d->uri_doms[i], dom) == 0)
            return true;
    return false;
}

/* Chooses up to uridnsbl_max_domains registrable domains (or IP hosts) in preference order. */
static size_t pick_domains(tamis__dns_t *d)
{
    const tamis_msg_t *m = d->s->msg;
    const tamis_conf_t *c = d->s->conf;
    size_t max = c->uridnsbl_max_domains;
    if (max > sizeof d->uri_doms / sizeof *d->uri_doms)
        max = sizeof d->uri_doms / sizeof *d->uri_doms;
    size_t n = 0, nu = tamis_msg_uri_count(m);
    for (int rank = 0; rank <= 5 && n < max; rank++)
        for (size_t i = 0; i < nu && n < max; i++) {
            const tamis_uri_t *u = tamis_msg_uri_at(m, i);
            if (!u || !u->host || !*u->host || !u->domain || !*u->domain || uri_rank(u) != rank)
                continue;
            if ((u->flags & TAMIS_URI_MAILTO) && c->uridnsbl_skip_mailto)
                continue;
            if (skipped_domain(c, u->domain, u->host) || selected(d, n, u->domain))
                continue;
            d->uri_doms[n++] = u->domain;
        }
    return n;
}

/* Is host inside one of the chosen domains? */
static bool host_chosen(const tamis__dns_t *d, size_t nd, const tamis_uri_t *u)
{
    return u && u->host && *u->host && u->domain && selected(d, nd, u->domain) &&
           !((u->flags & TAMIS_URI_MAILTO) && d->s->conf->uridnsbl_skip_mailto);
}

static size_t add_ns_domain(tamis__dns_t *d, const char *dom)
{
    for (size_t i = 0; i < d->nns; i++)
        if (strcmp(d->ns[i].domain, dom) == 0)
            return i;
    size_t q = add_query(d, dom, TAMIS_NET_NS);
    if (q == (size_t)-1 || d->nns >= 64)
        return (size_t)-1;
    d->ns[d->nns] = (nsdom_t){dom, q};
    return d->nns++;
}

static void add_a_host(tamis__dns_t *d, const char *host)
{
    for (size_t i = 0; i < d->nah; i++)
        if (strcmp(d->ah[i].host, host) == 0)
            return;
    size_t q = add_query(d, host, TAMIS_NET_A);
    if (q != (size_t)-1 && d->nah < 64)
        d->ah[d->nah++] = (ahost_t){host, q};
}

static bool uribl_wants(const nrule_t *r, bool ip)
{
    unsigned f = r->decl->tflags;
    if (ip && (f & TAMIS_TFLAG_DOMAINS_ONLY))
        return false;
    if (!ip && (f & TAMIS_TFLAG_IPS_ONLY))
        return false;
    return true;
}

static void plan_uribl(tamis__dns_t *d)
{
    size_t nd = pick_domains(d);
    const tamis_msg_t *m = d->s->msg;
    size_t nu = tamis_msg_uri_count(m);
    for (size_t i = 0; i < d->nr; i++) {
        nrule_t *r = &d->r[i];
        if (r->kind != R_URIBL)
            continue;
        const tamis_rules_uribl_t *x = r->decl;
        for (size_t k = 0; k < nd; k++) {
            const char *dom = d->uri_doms[k];
            bool ip = is_ip(dom);
            if (!uribl_wants(r, ip))
                continue;
            if (ip) { /* IP-literal hosts: the reversed address, for every form */
                if (x->kind == TAMIS_URIBL_DNSBL || x->kind == TAMIS_URIBL_RHSBL)
                    ask_ip(d, i, dom);
                continue;
            }
            switch (x->kind) {
            case TAMIS_URIBL_RHSBL:
                if (!(x->tflags & TAMIS_TFLAG_NOTRIM))
                    ask_zone(d, i, dom, dom);
                break;
            case TAMIS_URIBL_DNSBL:
                if ((x->tflags & TAMIS_TFLAG_NS) || !(x->tflags & TAMIS_TFLAG_A))
                    add_ns_domain(d, dom);
                break;
            case TAMIS_URIBL_NSRHSBL:
            case TAMIS_URIBL_FULLNSRHSBL:
                add_ns_domain(d, dom);
                break;
            }
        }
        /* per host: notrim rhsbl (the full host name) and the "a" uridnsbl rules */
        for (size_t k = 0; k < nu; k++) {
            const tamis_uri_t *u = tamis_msg_uri_at(m, k);
            if (!host_chosen(d, nd, u) || is_ip(u->host) || !uribl_wants(r, false))
                continue;
            if (x->kind == TAMIS_URIBL_RHSBL && (x->tflags & TAMIS_TFLAG_NOTRIM))
                ask_zone(d, i, u->host, u->host);
            else if (x->kind == TAMIS_URIBL_DNSBL && (x->tflags & TAMIS_TFLAG_A))
                add_a_host(d, u->host);
        }
    }
}

/* Builds the rule table from the set's network rules (scored ones only). */
static int plan_rules(tamis__dns_t *d, int score_set)
{
    tamis_rules_net_rule_t *nr;
    tamis_rules_uribl_t *ub;
    size_t nnr, nub;
    int rc = tamis_rules_net_rules(d->rs, score_set, d->a, &nr, &nnr);
    if (!rc)
        rc = tamis_rules_uribl(d->rs, d->a, &ub, &nub);
    if (rc)
        return rc;
    d->r = tamis_arena_calloc(d->a, nnr + 1, sizeof *d->r);
    if (!d->r)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < nnr; i++) {
        const tamis_rules_net_rule_t *x = &nr[i];
        if (!x->scored)
            continue;
        nrule_t r = {.name = x->name};
        static const struct {
            const char *name;
            rfunc_t f;
        } rbl_funcs[] = {
            {"check_rbl", F_IP},
            {"check_rbl_txt", F_IP},
            {"check_rbl_envfrom", F_ENVFROM},
            {"check_rbl_from_host", F_FROM_HOST},
            {"check_rbl_from_domain", F_FROM_DOMAIN},
            {"check_rbl_headers", F_HEADERS},
            {"check_rbl_rcvd", F_RCVD},
        };
        size_t fi = 0;
        while (fi < sizeof rbl_funcs / sizeof *rbl_funcs && strcmp(rbl_funcs[fi].name, x->func))
            fi++;
        r.tflags = x->tflags;
        if (fi < sizeof rbl_funcs / sizeof *rbl_funcs && x->nargs >= 2) {
            r.kind = R_RBL;
            r.func = rbl_funcs[fi].f;
            r.set = x->args[0];
            r.zone = zone_of(d->a, x->args[1]);
            r.subtest = x->nargs >= 3 && *x->args[2] ? x->args[2] : NULL;
            r.headers = r.func == F_HEADERS && x->nargs >= 4 ? x->args[3] : NULL;
            r.txt = strcmp(x->func, "check_rbl_txt") == 0;
        } else if (strcmp(x->func, "check_rbl_sub") == 0 && x->nargs >= 2) {
            r.kind = R_RBL_SUB;
            r.set = x->args[0];
            r.subtest = x->args[1];
        } else if (strcmp(x->func, "check_uridnsbl") == 0) {
            const char *want = x->nargs ? x->args[0] : x->name;
            for (size_t k = 0; k < nub && !r.decl; k++)
                if (strcmp(ub[k].rule, want) == 0)
                    r.decl = &ub[k];
            if (!r.decl)
                continue;
            r.kind = R_URIBL;
            r.zone = r.decl->zone;
            r.subtest = r.decl->subtest;
            r.txt = strcasecmp(r.decl->type, "TXT") == 0;
        } else {
            continue; /* askdns, check_dns_sender …: not implemented, never hit */
        }
        if (r.kind != R_RBL_SUB && !r.zone)
            continue;
        if (r.subtest)
            tamis_net_subtest_parse(r.subtest, &r.st);
        d->r[d->nr++] = r;
    }
    for (size_t i = 0; i < d->nr; i++) { /* sub rules take the zone of their set */
        nrule_t *r = &d->r[i];
        r->set_rule = (size_t)-1;
        for (size_t k = 0; r->set && k < d->nr && r->set_rule == (size_t)-1; k++)
            if (d->r[k].kind == R_RBL && strcmp(d->r[k].set, r->set) == 0)
                r->set_rule = k;
        if (r->kind == R_RBL_SUB && r->set_rule != (size_t)-1)
            r->zone = d->r[r->set_rule].zone;
        r->block = r->zone && tamis_rules_is_dns_block(d->rs, r->name, r->zone);
    }
    return 0;
}

static void dns_cleanup(void *p)
{
    tamis__dns_t *d = p;
    tamis_net_batch_free(d->b);
    d->b = NULL;
    tamis_buf_free(&d->blocked);
}

int tamis__dns_start(tamis_scan_t *s, tamis_net_t *net, const tamis_rules_run_opts_t *run,
                     double deadline_ms, tamis__dns_t **out)
{
    *out = NULL;
    tamis__dns_t *d = tamis_arena_calloc(s->arena, 1, sizeof *d);
    if (!d)
        return TAMIS_ENOMEM;
    d->s = s;
    d->rs = s->rs;
    d->a = s->arena;
    d->deadline = deadline_ms;
    d->max_queries = s->conf->dns_max_queries;
    tamis_buf_init(&d->blocked, 4096);
    d->q = tamis_arena_calloc(d->a, d->max_queries + 1, sizeof *d->q);
    d->c = tamis_arena_calloc(d->a, MAX_CONSUMERS, sizeof *d->c);
    d->ns = tamis_arena_calloc(d->a, 64, sizeof *d->ns);
    d->ah = tamis_arena_calloc(d->a, 64, sizeof *d->ah);
    if (!d->q || !d->c || !d->ns || !d->ah)
        return TAMIS_ENOMEM;
    int rc = plan_rules(d, run->score_set);
    if (rc)
        return rc;
    if (!d->nr)
        return 0; /* nothing to ask: the net evals answer "no hit" without a batch */
    d->b = tamis_net_batch_new(net);
    if (!d->b || tamis_arena_add_cleanup(d->a, dns_cleanup, d) != 0) {
        tamis_net_batch_free(d->b);
        return TAMIS_ENOMEM;
    }
    tamis_rules_dnsbl_ips_t ips;
    rc = tamis_rules_dnsbl_ips(d->rs, s->msg, d->a, &ips);
    if (rc)
        return rc;
    tamis_net_batch_hold(d->b); /* one hand-off to the loop for the whole plan */
    plan_rbl(d, &ips);
    plan_senders(d, &ips, run);
    plan_uribl(d);
    tamis_net_batch_flush(d->b);
    *out = d;
    return 0;
}

/* ---- the wait and the second stage ----------------------------------------------------------- */

static const tamis_net_answer_t *answer(tamis__dns_t *d, size_t qi)
{
    return d->b && qi < d->nq ? tamis_net_batch_answer(d->b, d->q[qi].slot) : NULL;
}

static void wait_all(tamis__dns_t *d)
{
    if (d->b && d->nq && tamis_now_ms() < d->deadline) {
        d->stats.rounds++;
        tamis_net_batch_wait(d->b, d->deadline, 0);
    }
}

/* The registrable domain of an NS host name (libpsl, as lib/msg does for URIs). */
static const char *ns_domain(tamis_arena_t *a, const char *host)
{
    const char *r = psl_registrable_domain(psl_builtin(), host);
    return tamis_arena_strdup(a, r ? r : host);
}

/* After the NS answers: the nsrhsbl forms ask the NS names (or their domains), the uridnsbl
 * forms the A records of the NS names. */
static void stage_ns(tamis__dns_t *d, size_t *nsa, size_t nsa_cap)
{
    for (size_t k = 0; k < d->nns; k++) {
        const tamis_net_answer_t *an = answer(d, d->ns[k].ns_query);
        if (!an || an->status != TAMIS_NET_OK || an->type != TAMIS_NET_NS)
            continue;
        size_t n = an->count < MAX_NS_PER_DOMAIN ? an->count : MAX_NS_PER_DOMAIN;
        for (size_t j = 0; j < n; j++) {
            const char *host = an->strs[j];
            for (size_t i = 0; i < d->nr; i++) {
                const nrule_t *r = &d->r[i];
                if (r->kind != R_URIBL)
                    continue;
                if (r->decl->kind == TAMIS_URIBL_FULLNSRHSBL)
                    ask_zone(d, i, host, d->ns[k].domain);
                else if (r->decl->kind == TAMIS_URIBL_NSRHSBL)
                    ask_zone(d, i, ns_domain(d->a, host), d->ns[k].domain);
            }
            if (nsa[k * MAX_NS_PER_DOMAIN + j] == (size_t)-1 && k * MAX_NS_PER_DOMAIN + j < nsa_cap)
                nsa[k * MAX_NS_PER_DOMAIN + j] = add_query(d, host, TAMIS_NET_A);
        }
    }
}

/* The uridnsbl forms: the list lookups of the host and NS addresses. */
static void stage_ips(tamis__dns_t *d, const size_t *nsa)
{
    for (size_t i = 0; i < d->nr; i++) {
        const nrule_t *r = &d->r[i];
        if (r->kind != R_URIBL || r->decl->kind != TAMIS_URIBL_DNSBL)
            continue;
        bool a = r->decl->tflags & TAMIS_TFLAG_A;
        bool ns = (r->decl->tflags & TAMIS_TFLAG_NS) || !a;
        for (size_t k = 0; a && k < d->nah; k++) {
            const tamis_net_answer_t *an = answer(d, d->ah[k].a_query);
            for (size_t j = 0; an && an->status == TAMIS_NET_OK && an->addrs && j < an->count;
                 j++) {
                char ip[INET_ADDRSTRLEN];
                uint32_t v = an->addrs[j];
                snprintf(ip, sizeof ip, "%u.%u.%u.%u", v >> 24, (v >> 16) & 255, (v >> 8) & 255,
                         v & 255);
                char rev[80];
                if (tamis_net_reverse_ip(ip, rev, sizeof rev) == 0)
                    ask_zone(d, i, rev, d->ah[k].host);
            }
        }
        for (size_t k = 0; ns && k < d->nns * MAX_NS_PER_DOMAIN; k++) {
            const tamis_net_answer_t *an = answer(d, nsa[k]);
            for (size_t j = 0; an && an->status == TAMIS_NET_OK && an->addrs && j < an->count;
                 j++) {
                uint32_t v = an->addrs[j];
                char rev[80];
                snprintf(rev, sizeof rev, "%u.%u.%u.%u", v & 255, (v >> 8) & 255, (v >> 16) & 255,
                         v >> 24);
                ask_zone(d, i, rev, d->ns[k / MAX_NS_PER_DOMAIN].domain);
            }
        }
    }
}

static void resolve(tamis__dns_t *d)
{
    double t0 = tamis_now_ms();
    wait_all(d);
    if (d->nns || d->nah) {
        size_t cap = d->nns * MAX_NS_PER_DOMAIN;
        size_t *nsa = tamis_arena_alloc(d->a, (cap + 1) * sizeof *nsa);
        if (nsa) {
            for (size_t i = 0; i < cap; i++)
                nsa[i] = (size_t)-1;
            size_t before = d->nq;
            stage_ns(d, nsa, cap);
            if (d->nq > before)
                wait_all(d);
            before = d->nq;
            stage_ips(d, nsa);
            if (d->nq > before)
                wait_all(d);
        }
    }
    for (size_t i = 0; i < d->nq; i++)
        d->stats.answered += answer(d, i) != NULL;
    d->stats.wait_ms = tamis_now_ms() - t0;
}

/* ---- decisions ------------------------------------------------------------------------------- */

static void code_free(void *p)
{
    pcre2_code_free(p);
}

static bool regex_match(tamis__dns_t *d, nrule_t *r, const char *text)
{
    if (!r->re && !r->re_failed) {
        int ec;
        PCRE2_SIZE eo;
        r->re = pcre2_compile((PCRE2_SPTR)r->subtest, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
        if (!r->re || tamis_arena_add_cleanup(d->a, code_free, r->re)) {
            pcre2_code_free(r->re);
            r->re = NULL;
            r->re_failed = true;
        }
    }
    if (!r->re)
        return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
    if (!md)
        return false;
    int rc = pcre2_match(r->re, (PCRE2_SPTR)text, strlen(text), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static void note_blocked(tamis__dns_t *d, const char *zone)
{
    const char *b = d->blocked.data ? d->blocked.data : "";
    size_t zl = strlen(zone);
    for (const char *p = b; (p = strstr(p, zone)); p += zl)
        if ((p == b || p[-1] == ' ') && (p[zl] == ' ' || !p[zl]))
            return;
    if (d->blocked.len)
        tamis_buf_putc(&d->blocked, ' ');
    tamis_buf_puts(&d->blocked, zone);
}

/* Does answer an (to a query of a rule of zone `zone`) satisfy rule r's sub-test? */
static bool answer_hits(tamis__dns_t *d, nrule_t *r, const char *zone, const tamis_net_answer_t *an)
{
    if (!an || an->status != TAMIS_NET_OK || !an->count)
        return false;
    bool regex = r->subtest && r->st.kind == TAMIS_NET_SUB_REGEX;
    if (an->type == TAMIS_NET_TXT) {
        for (size_t i = 0; i < an->count; i++)
            if (!r->subtest || (regex && regex_match(d, r, an->strs[i])))
                return true;
        return false;
    }
    bool hit = false;
    for (size_t i = 0; i < an->count && !hit; i++) {
        uint32_t v = an->addrs[i];
        tamis_net_verdict_t verdict = tamis_net_classify(zone, v, NULL);
        if (verdict == TAMIS_NET_BLOCKED)
            note_blocked(d, zone);
        if (!regex) {
            hit = tamis_net_dnsbl_hit(zone, r->subtest ? &r->st : NULL, v, r->block);
            continue;
        }
        if (verdict == TAMIS_NET_BOGUS || (verdict == TAMIS_NET_BLOCKED && !r->block))
            continue;
        char text[INET_ADDRSTRLEN];
        snprintf(text, sizeof text, "%u.%u.%u.%u", v >> 24, (v >> 16) & 255, (v >> 8) & 255,
                 v & 255);
        hit = regex_match(d, r, text);
    }
    return hit;
}

/* Appends label to the log list once. */
static void log_add(tamis_buf_t *b, const char *label)
{
    size_t n = strlen(label);
    for (const char *p = b->data; p && (p = strstr(p, label)); p += n)
        if ((p == b->data || p[-1] == ' ') && (p[n] == ' ' || p[n] == ']' || !p[n]))
            return;
    if (b->len)
        tamis_buf_putc(b, ' ');
    tamis_buf_puts(b, label);
}

/* The rule index of name, or -1. The rule engine passes the rule set's own name string, the one
 * the plan holds: pointers first. */
static long find_rule(const tamis__dns_t *d, const char *name)
{
    for (size_t i = 0; i < d->nr; i++)
        if (d->r[i].name == name)
            return (long)i;
    for (size_t i = 0; i < d->nr; i++)
        if (strcmp(d->r[i].name, name) == 0)
            return (long)i;
    return -1;
}

bool tamis__dns_eval(void *ctx, const char *rule, const char *func, const char *const *args,
                     size_t nargs, const char **log)
{
    (void)func;
    (void)args;
    (void)nargs;
    tamis__dns_t *d = ctx;
    if (!d)
        return false;
    if (!d->waited) {
        d->waited = true;
        resolve(d);
    }
    long ri = find_rule(d, rule);
    if (ri < 0)
        return false;
    nrule_t *r = &d->r[ri];
    tamis_buf_t lb;
    tamis_buf_init(&lb, MAX_LOG);
    bool hit = false;
    for (size_t i = 0; i < d->nc; i++) {
        const consumer_t *c = &d->c[i];
        const nrule_t *src = &d->r[c->rule];
        /* a sub rule reads the answers of every check_rbl of its set */
        bool mine = r->kind == R_RBL_SUB ? src->kind == R_RBL && r->set_rule != (size_t)-1 &&
                                               src->set_rule == r->set_rule
                                         : c->rule == (size_t)ri;
        if (!mine || !answer_hits(d, r, src->zone, answer(d, c->query)))
            continue;
        hit = true;
        log_add(&lb, c->label);
    }
    if (hit && log && lb.len && !lb.err) {
        *log = r->kind == R_URIBL ? tamis_arena_printf(d->a, "URIs: %s", lb.data)
                                  : tamis_arena_printf(d->a, "%s listed in %s", lb.data, r->zone);
    }
    tamis_buf_free(&lb);
    return hit;
}

void tamis__dns_end(tamis__dns_t *d, tamis_scan_dns_t *out)
{
    if (!d)
        return;
    *out = d->stats;
    out->blocked_zones =
        tamis_arena_strndup(d->a, d->blocked.data ? d->blocked.data : "", d->blocked.len);
    if (!out->blocked_zones)
        out->blocked_zones = "";
    tamis_net_batch_free(d->b); /* cancels what is still pending */
    d->b = NULL;
}
