/*
 * The rule set's view for the network layer (include/tamis/rules.h, "network tests"): the net
 * eval rules, the URIDNSBL and dns_block_rule declarations, and the relay IPs DNSEval selects its
 * candidates from. The scan's planner (lib/scan/dnsbl.c) builds its DNS queries from these and
 * answers the net evals; nothing here does I/O.
 */
#include "rules/rules_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Bounds on what one message contributes (DNSEval has none; real chains are far shorter). */
#define MAX_IPS 64

static bool is_net_rule(const tamis__rule_t *r)
{
    return r->kind == TAMIS__K_EVAL && r->ev && r->ev->net && !r->dropped;
}

int tamis__net_index(tamis_ruleset_t *rs)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->nrules; i++)
        n += is_net_rule(rs->rules[i]);
    rs->nnet_rules = 0;
    rs->net_rules = n ? tamis_arena_calloc(rs->arena, n, sizeof *rs->net_rules) : NULL;
    if (n && !rs->net_rules)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < rs->nrules; i++)
        if (is_net_rule(rs->rules[i]))
            rs->net_rules[rs->nnet_rules++] = rs->rules[i];
    return 0;
}

int tamis_rules_net_rules(const tamis_ruleset_t *rs, int score_set, tamis_arena_t *arena,
                          tamis_rules_net_rule_t **out, size_t *count)
{
    if (!rs || !arena || !out || !count)
        return TAMIS_EINVAL;
    *out = NULL;
    *count = 0;
    /* from the load-time index: walking all ~2,000 rules twice per message was the planner's
     * largest cost once the skip list stopped globbing */
    size_t n = rs->nnet_rules;
    if (!n)
        return 0;
    tamis_rules_net_rule_t *v = tamis_arena_calloc(arena, n, sizeof *v);
    if (!v)
        return TAMIS_ENOMEM;
    int set = score_set & 3;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const tamis__rule_t *r = rs->net_rules[i];
        if (!is_net_rule(r))
            continue;
        v[k].name = r->name;
        v[k].func = r->func;
        v[k].args = (const char *const *)r->args;
        v[k].nargs = r->nargs;
        v[k].tflags = r->tflags;
        v[k].scored = (set & 1) && r->score[set] != 0;
        k++;
    }
    *out = v;
    *count = k;
    return 0;
}

/* Lower-cased copy of zone without leading/trailing dots, or NULL. */
static const char *clean_zone(tamis_arena_t *a, const char *z, size_t n)
{
    while (n && *z == '.')
        z++, n--;
    while (n && z[n - 1] == '.')
        n--;
    if (!n || n > 253)
        return NULL;
    char *c = tamis_arena_strndup(a, z, n);
    for (char *p = c; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return c;
}

static bool uribl_kind(const char *d, tamis_rules_uribl_kind_t *k, bool *sub)
{
    static const struct {
        const char *bl, *sub;
        tamis_rules_uribl_kind_t kind;
    } forms[] = {
        {"uridnsbl", "uridnssub", TAMIS_URIBL_DNSBL},
        {"urirhsbl", "urirhssub", TAMIS_URIBL_RHSBL},
        {"urinsrhsbl", "urinsrhssub", TAMIS_URIBL_NSRHSBL},
        {"urifullnsrhsbl", "urifullnsrhssub", TAMIS_URIBL_FULLNSRHSBL},
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        if (strcmp(d, forms[i].bl) == 0 || strcmp(d, forms[i].sub) == 0) {
            *k = forms[i].kind;
            *sub = strcmp(d, forms[i].sub) == 0;
            return true;
        }
    }
    return false;
}

/* Splits s into at most max whitespace-separated words (arena copies). */
static size_t words(tamis_arena_t *a, const char *s, const char **w, size_t max)
{
    size_t n = 0;
    while (*s && n < max) {
        while (isspace((unsigned char)*s))
            s++;
        const char *b = s;
        while (*s && !isspace((unsigned char)*s))
            s++;
        if (s > b && !(w[n++] = tamis_arena_strndup(a, b, (size_t)(s - b))))
            return 0;
    }
    return n;
}

int tamis_rules_uribl(const tamis_ruleset_t *rs, tamis_arena_t *arena, tamis_rules_uribl_t **out,
                      size_t *count)
{
    if (!rs || !arena || !out || !count)
        return TAMIS_EINVAL;
    *out = NULL;
    *count = 0;
    if (!rs->nuridnsbl)
        return 0;
    tamis_rules_uribl_t *v = tamis_arena_calloc(arena, rs->nuridnsbl, sizeof *v);
    if (!v)
        return TAMIS_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < rs->nuridnsbl; i++) {
        tamis_rules_uribl_kind_t kind;
        bool sub;
        if (!uribl_kind(rs->uridnsbl[i].value, &kind, &sub))
            continue;
        /* "RULE zone TYPE [subtest]"; the sub-test is the rest of the line (a regex may hold
         * spaces, though no stock one does) */
        const char *w[3];
        const char *line = rs->uridnsbl[i].name;
        if (words(arena, line, w, 3) != 3)
            continue;
        const char *rest = line; /* after the third word */
        for (int k = 0; k < 3; k++) {
            while (isspace((unsigned char)*rest))
                rest++;
            while (*rest && !isspace((unsigned char)*rest))
                rest++;
        }
        while (isspace((unsigned char)*rest))
            rest++;
        if (sub != (*rest != '\0'))
            continue;
        tamis_rules_uribl_t d = {.rule = w[0], .type = w[2], .kind = kind};
        d.zone = clean_zone(arena, w[1], strlen(w[1]));
        if (!d.zone)
            continue;
        d.subtest = sub ? tamis_arena_strdup(arena, rest) : NULL;
        const tamis__rule_t *r = tamis__rule_find(rs, d.rule);
        d.tflags = r ? r->tflags : 0;
        size_t j = 0;
        while (j < n && strcmp(v[j].rule, d.rule) != 0)
            j++;
        v[j] = d; /* a redefinition replaces the earlier line */
        n += j == n;
    }
    *out = v;
    *count = n;
    return 0;
}

int tamis_rules_dns_blocks(const tamis_ruleset_t *rs, tamis_arena_t *arena,
                           tamis_rules_dns_block_t **out, size_t *count)
{
    if (!rs || !arena || !out || !count)
        return TAMIS_EINVAL;
    *out = NULL;
    *count = 0;
    size_t cap = 0;
    for (size_t i = 0; i < rs->ndns_block; i++) /* words − 1 zones per line at most */
        for (const char *p = rs->dns_block[i].name; *p; p++)
            cap += isspace((unsigned char)*p) && p[1] && !isspace((unsigned char)p[1]);
    if (!cap)
        return 0;
    tamis_rules_dns_block_t *v = tamis_arena_calloc(arena, cap, sizeof *v);
    if (!v)
        return TAMIS_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < rs->ndns_block; i++) {
        const char *w[32];
        size_t nw = words(arena, rs->dns_block[i].name, w, 32);
        for (size_t j = 1; j < nw && n < cap; j++) {
            const char *z = clean_zone(arena, w[j], strlen(w[j]));
            if (z) {
                v[n].rule = w[0];
                v[n++].zone = z;
            }
        }
    }
    *out = v;
    *count = n;
    return 0;
}

bool tamis_rules_is_dns_block(const tamis_ruleset_t *rs, const char *rule, const char *zone)
{
    if (!rs || !rule || !zone)
        return false;
    size_t rl = strlen(rule), zl = strlen(zone);
    while (zl && zone[zl - 1] == '.')
        zl--;
    for (size_t i = 0; i < rs->ndns_block; i++) {
        const char *p = rs->dns_block[i].name;
        if (strncmp(p, rule, rl) != 0 || !isspace((unsigned char)p[rl]))
            continue;
        for (p += rl; *p;) {
            while (isspace((unsigned char)*p) || *p == '.')
                p++;
            const char *b = p;
            while (*p && !isspace((unsigned char)*p))
                p++;
            size_t n = (size_t)(p - b);
            while (n && b[n - 1] == '.')
                n--;
            if (n == zl && strncasecmp(b, zone, zl) == 0)
                return true;
        }
    }
    return false;
}

/* ---- DNSEval's candidate IPs ----------------------------------------------------------------- */

static bool seen(const char **v, size_t n, const char *ip)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], ip) == 0)
            return true;
    return false;
}

/* ip_list_uniq_and_strip_private: appends a's IPs to v (capacity MAX_IPS), skipping empty,
 * duplicate and private ones. */
static size_t uniq_public(const char **v, size_t n, const char *const *a, size_t na)
{
    for (size_t i = 0; i < na && n < MAX_IPS; i++) {
        if (!a[i] || !*a[i] || seen(v, n, a[i]) || tamis__ip_is_private(a[i]))
            continue;
        v[n++] = a[i];
    }
    return n;
}

int tamis_rules_dnsbl_ips(const tamis_ruleset_t *rs, const tamis_msg_t *m, tamis_arena_t *arena,
                          tamis_rules_dnsbl_ips_t *out)
{
    if (!rs || !m || !arena || !out)
        return TAMIS_EINVAL;
    memset(out, 0, sizeof *out);
    tamis__relays_t rl;
    int rc = tamis__relays_compute(rs->conf, m, arena, &rl);
    if (rc == TAMIS_ENOMEM)
        return rc;
    const char **unt = tamis_arena_calloc(arena, MAX_IPS, sizeof *unt);
    const char **ext = tamis_arena_calloc(arena, MAX_IPS, sizeof *ext);
    const char **org = tamis_arena_calloc(arena, MAX_IPS, sizeof *org);
    const char **raw = tamis_arena_calloc(arena, MAX_IPS, sizeof *raw);
    if (!unt || !ext || !org || !raw)
        return TAMIS_ENOMEM;
    out->untrusted = unt;
    out->external = ext;
    out->originating = org;
    if (rc != 0)
        return 0; /* no usable chain: nothing to check */
    size_t nraw = 0;
    for (size_t i = 0; i < rl.count; i++) {
        const tamis__relay_t *x = &rl.all[i];
        const char *ip = x->r->ip && *x->r->ip ? x->r->ip : NULL;
        if (!ip)
            continue;
        if (x->r->originating) {
            if (out->originating_count < MAX_IPS)
                org[out->originating_count++] = ip;
            continue;
        }
        if (!x->trusted && nraw < MAX_IPS)
            raw[nraw++] = ip;
        if ((x->trusted ? !x->internal : true) && out->external_count < MAX_IPS)
            ext[out->external_count++] = ip;
    }
    if (rl.trusted_count < rl.count)
        for (size_t i = rl.count; i-- > rl.trusted_count;)
            if (!rl.all[i].r->originating) {
                out->oldest_untrusted = rl.all[i].r;
                break;
            }
    out->untrusted_count = uniq_public(unt, 0, raw, nraw);
    out->any = out->untrusted_count + out->originating_count > 0;
    return 0;
}

/* Does the set name end in "-suffix"? */
static bool has_suffix(const char *set, const char *suffix)
{
    size_t n = strlen(set), k = strlen(suffix);
    return n > k && set[n - k - 1] == '-' && strcmp(set + n - k, suffix) == 0;
}

static bool trusted_ip(const tamis_conf_t *c, const char *ip)
{
    if (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0)
        return true; /* NetSet always holds loopback */
    return c && c->trusted_networks.count && tamis_conf_cidr_match(&c->trusted_networks, ip);
}

size_t tamis_rules_dnsbl_select(const tamis_ruleset_t *rs, const tamis_rules_dnsbl_ips_t *in,
                                const char *set, bool nice, const char **out, size_t cap)
{
    if (!rs || !in || !set || !out || !in->any)
        return 0;
    const tamis_conf_t *c = rs->conf;
    const char *v[MAX_IPS], *tips[MAX_IPS];
    size_t n = 0, nt = 0;
    for (size_t i = 0; i < in->originating_count && nt < MAX_IPS; i++)
        if (!trusted_ip(c, in->originating[i]))
            tips[nt++] = in->originating[i];
    if (has_suffix(set, "notfirsthop") || has_suffix(set, "lastexternal")) {
        /* the external set, without the originating headers (webmail hops are no dialups) */
        n = uniq_public(v, 0, in->external, in->external_count);
        if (has_suffix(set, "lastexternal"))
            n = n ? 1 : 0;
        else if (n > 1)
            n--;
    } else if (has_suffix(set, "firsttrusted") || has_suffix(set, "untrusted")) {
        n = uniq_public(v, 0, in->untrusted, in->untrusted_count);
        n = uniq_public(v, n, tips, nt);
        if (has_suffix(set, "firsttrusted")) {
            n = n ? 1 : 0;
        } else if (n) {
            memmove(v, v + 1, (n - 1) * sizeof *v);
            n--;
        }
    } else {
        /* the originating headers and the oldest hops first */
        const char *t[MAX_IPS];
        size_t k = uniq_public(t, 0, in->untrusted, in->untrusted_count);
        k = uniq_public(t, k, tips, nt);
        for (size_t i = 0; i < k; i++)
            v[i] = t[k - 1 - i];
        n = k;
    }
    unsigned max = c ? c->num_check_received : 9;
    if (n > max)
        n = max;
    size_t first = 0;
    if (!nice)
        while (first < n && trusted_ip(c, v[first]))
            first++;
    size_t w = 0;
    for (size_t i = first; i < n && w < cap; i++)
        out[w++] = v[i];
    return w;
}

/* ---- header data for the sender-based evals ---------------------------------------------------
 */

static int eval_ctx(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                    const tamis_rules_run_opts_t *opts, tamis_arena_t *arena, tamis__relays_t *rl,
                    tamis_eval_ctx_t *ctx)
{
    int rc = tamis__relays_compute(rs->conf, m, arena, rl);
    if (rc == TAMIS_ENOMEM)
        return rc;
    memset(ctx, 0, sizeof *ctx);
    ctx->rs = rs;
    ctx->conf = rs->conf;
    ctx->msg = m;
    ctx->relays = rc == 0 ? rl : NULL;
    ctx->opts = opts;
    ctx->arena = arena;
    return 0;
}

/* The first line of a header value, without its newline ("" for NULL). */
static const char *first_line(tamis_arena_t *a, const char *v)
{
    return v ? tamis_arena_strndup(a, v, strcspn(v, "\n")) : "";
}

int tamis_rules_senders(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                        const tamis_rules_run_opts_t *opts, tamis_arena_t *arena,
                        tamis_rules_senders_t *out)
{
    if (!rs || !m || !arena || !out)
        return TAMIS_EINVAL;
    memset(out, 0, sizeof *out);
    tamis__relays_t rl;
    tamis_eval_ctx_t ctx;
    int rc = eval_ctx(rs, m, opts, arena, &rl, &ctx);
    if (rc)
        return rc;
    out->envelope_from = first_line(arena, tamis__header_get(&ctx, "EnvelopeFrom:addr"));
    out->from_count = tamis__all_from_addrs(&ctx, &out->from_addrs);
    return out->envelope_from ? 0 : TAMIS_ENOMEM;
}

const char *tamis_rules_header(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                               const tamis_rules_run_opts_t *opts, const char *expr,
                               tamis_arena_t *arena)
{
    if (!rs || !m || !expr || !arena)
        return NULL;
    tamis__relays_t rl;
    tamis_eval_ctx_t ctx;
    if (eval_ctx(rs, m, opts, arena, &rl, &ctx) != 0)
        return NULL;
    return tamis__header_get(&ctx, expr);
}

const tamis_relay_t *tamis_rules_first_untrusted(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                                                 tamis_arena_t *arena)
{
    if (!rs || !m || !arena)
        return NULL;
    tamis__relays_t rl;
    if (tamis__relays_compute(rs->conf, m, arena, &rl) != 0)
        return NULL;
    for (size_t i = rl.trusted_count; i < rl.count; i++)
        if (!rl.all[i].r->originating)
            return rl.all[i].r;
    return NULL;
}
