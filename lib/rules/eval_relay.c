/*
 * Native relay eval: functions: SpamAssassin 4.0.1's Plugin/RelayEval.pm, on the trust-evaluated
 * Received chain of relays.c (ctx->relays). Untrusted relays are the entries from
 * relays->trusted_count on, newest first, as in $pms->{relays_untrusted}.
 */
#include "rules/eval.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Shared helpers, defined in eval_header.c. */
void *tamis__evre_get(void *_Atomic *slot, const char *pat, uint32_t opts);
int tamis__evre_exec(void *code, const char *s, size_t len, size_t start, size_t *ov, size_t nov);
const char *tamis__evx_get(tamis_eval_ctx_t *ctx, const char *expr);

typedef struct {
    const char *pat;
    uint32_t opts;
    void *_Atomic code;
} re_t;
#define RE(name, pat, opts) static re_t name = {pat, opts, NULL}
#define RE_CASELESS 0x00000008u /* PCRE2_CASELESS, without pulling pcre2.h in here */

static bool re_match(re_t *re, const char *s)
{
    return s && tamis__evre_exec(tamis__evre_get(&re->code, re->pat, re->opts), s, strlen(s), 0,
                                 NULL, 0) > 0;
}

static size_t n_untrusted(const tamis__relays_t *r)
{
    return r ? r->count - r->trusted_count : 0;
}

static const tamis_relay_t *untrusted_at(const tamis__relays_t *r, size_t i)
{
    return r->all[r->trusted_count + i].r;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* ---- IP helpers ------------------------------------------------------------------------------ */

/* IS_IPV4_ADDRESS: four decimal octets 0-255 without leading zeros. */
static bool is_ipv4(const char *s)
{
    int parts = 0;
    while (parts < 4) {
        if (!isdigit((unsigned char)*s))
            return false;
        int v = 0, digits = 0;
        const char *start = s;
        while (isdigit((unsigned char)*s) && digits < 4)
            v = v * 10 + (*s++ - '0'), digits++;
        if (digits > 3 || v > 255 || (digits > 1 && *start == '0'))
            return false;
        parts++;
        if (parts < 4 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static bool is_private_v4(const char *ip)
{
    unsigned a = 0, b = 0;
    if (sscanf(ip, "%u.%u", &a, &b) != 2)
        return false;
    return a == 10 || a == 127 || (a == 169 && b == 254) || (a == 172 && b >= 16 && b <= 31) ||
           (a == 192 && b == 168) || (a == 100 && b >= 64 && b <= 127);
}

/* ---- trust summary --------------------------------------------------------------------------- */

static double check_all_trusted(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const tamis__relays_t *r = ctx->relays;
    return r && r->trusted_count > 0 && n_untrusted(r) == 0 && !r->unparseable;
}

static double check_no_relays(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const tamis__relays_t *r = ctx->relays;
    return !r || (r->count == 0 && !r->unparseable);
}

static double check_relays_unparseable(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    return ctx->relays && ctx->relays->unparseable;
}

/* ---- HELO checks ----------------------------------------------------------------------------- */

static double check_for_numeric_helo(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const tamis__relays_t *r = ctx->relays;
    if (!r)
        return 0;
    /* Perl tests only the first helo= that matches the pattern, then its privacy */
    for (size_t i = 0; i < n_untrusted(r); i++) {
        const char *h = nz(untrusted_at(r, i)->helo);
        if (is_ipv4(h))
            return !is_private_v4(h);
    }
    return 0;
}

static double check_for_illegal_ip(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    return 0; /* deprecated in SpamAssassin: always 0 */
}

static double helo_ip_mismatch(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const tamis__relays_t *r = ctx->relays;
    for (size_t i = 0; i < n_untrusted(r); i++) {
        const tamis_relay_t *x = untrusted_at(r, i);
        const char *helo = nz(x->helo), *ip = nz(x->ip);
        if (!is_ipv4(helo) || is_private_v4(helo))
            continue;
        if (!is_ipv4(ip) || is_private_v4(ip) || strcmp(helo, ip) == 0)
            continue;
        /* /^(\d+\.\d+\.\d+\.)/: the first three octets with the dot */
        const char *p = helo;
        for (int dots = 0; *p && dots < 3; p++)
            dots += *p == '.';
        if (strncmp(ip, helo, (size_t)(p - helo)) != 0)
            return 1;
    }
    return 0;
}

static double check_for_sender_no_reverse(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const tamis__relays_t *r = ctx->relays;
    size_t nu = n_untrusted(r);
    if (nu == 0)
        return 0;
    const tamis_relay_t *x = untrusted_at(r, nu - 1);
    return strchr(nz(x->rdns), '.') && !x->ip_private;
}

/* Does h end in one of the big free-mail/ISP names (a label boundary before it)? */
static bool dotcom_helo(const char *h)
{
    static const char *const doms[] = {"lycos.com",  "lycos.co.uk",  "hotmail.com", "localhost.com",
                                       "excite.com", "caramail.com", "cs.com",      "aol.com",
                                       "msn.com",    "yahoo.com",    "drizzle.com"};
    size_t hl = strlen(h);
    for (size_t i = 0; i < sizeof doms / sizeof *doms; i++) {
        size_t dl = strlen(doms[i]);
        if (hl >= dl && strcasecmp(h + hl - dl, doms[i]) == 0 &&
            (hl == dl || h[hl - dl - 1] == '.'))
            return true;
    }
    return false;
}

/* _check_received_helos: a public untrusted relay that HELO'd as a big ISP while the receiving
 * MTA (one known to always look up rDNS) found no rDNS for it. As in RelayEval.pm the flag is
 * reset at every public relay, so the oldest one decides. */
static double check_for_no_rdns_dotcom_helo(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const tamis__relays_t *r = ctx->relays;
    if (!r)
        return 0;
    bool hit = false;
    for (size_t i = 0; i < n_untrusted(r); i++) {
        const tamis_relay_t *x = untrusted_at(r, i);
        if (x->ip_private)
            continue;
        hit = dotcom_helo(nz(x->helo)) && x->no_rdns;
    }
    return hit;
}

/* ---- forged Received trail ------------------------------------------------------------------- */

/* hostname_to_domain, lower-cased input; result in buf. */
static const char *host_to_domain(const char *h, char *buf, size_t cap)
{
    bool alpha = false;
    for (const char *p = h; *p; p++)
        alpha |= isalpha((unsigned char)*p) != 0;
    snprintf(buf, cap, "%s", h);
    if (!alpha)
        return buf;
    /* split(/\./) drops trailing empty fields */
    size_t len = strlen(buf);
    while (len && buf[len - 1] == '.')
        buf[--len] = '\0';
    const char *parts[3] = {NULL, NULL, NULL}; /* starts of the last three parts */
    size_t nparts = 0;
    const char *start = buf;
    for (const char *p = buf;; p++) {
        if (*p == '.' || *p == '\0') {
            parts[0] = parts[1], parts[1] = parts[2], parts[2] = start;
            nparts++;
            if (!*p)
                break;
            start = p + 1;
        }
    }
    const char *last = parts[2];
    size_t lastlen = strlen(last);
    bool long_tld = false;
    for (const char *p = last; *p && !long_tld; p++) {
        size_t run = 0;
        while (p[run] && !isspace((unsigned char)p[run]))
            run++;
        long_tld = run >= 3;
    }
    long_tld |= strstr(last, "ie") || strstr(last, "fr") || strstr(last, "de");
    (void)lastlen;
    if (nparts > 1 && long_tld)
        return parts[1];
    if (nparts > 2)
        return parts[0];
    return buf;
}

RE(re_by_host, "^\\w+(?:[\\w.-]+\\.)+\\w+$", 0);

static char *lower(tamis_arena_t *a, const char *s)
{
    char *d = tamis_arena_strdup(a, nz(s));
    for (char *p = d; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

static bool classb_differs(const char *hlo, const char *fip)
{
    if (!is_ipv4(hlo) || !is_ipv4(fip) || strcmp(hlo, fip) == 0)
        return false;
    unsigned h1, h2, f1, f2;
    if (sscanf(hlo, "%u.%u", &h1, &h2) != 2 || sscanf(fip, "%u.%u", &f1, &f2) != 2)
        return false;
    return (h1 != f1 || h2 != f2) && !is_private_v4(hlo);
}

/* _check_for_forged_received: out[0] = mismatch_from, out[1] = mismatch_ip_helo. */
static void forged_received(tamis_eval_ctx_t *ctx, double out[2])
{
    static const char key = 0;
    double *m = tamis__memo_get(ctx, &key);
    if (m) {
        out[0] = m[0], out[1] = m[1];
        return;
    }
    out[0] = out[1] = 0;
    const tamis__relays_t *r = ctx->relays;
    size_t nu = n_untrusted(r);
    const char *prev_from = NULL;
    for (size_t i = 0; i < nu && i < 1000; i++) {
        const tamis_relay_t *x = untrusted_at(r, i);
        char bbuf[512], fbuf[512], hbuf[512];
        const char *by = host_to_domain(lower(ctx->arena, x->by), bbuf, sizeof bbuf);
        const char *from = host_to_domain(lower(ctx->arena, x->rdns), fbuf, sizeof fbuf);
        const char *helo = host_to_domain(lower(ctx->arena, x->helo), hbuf, sizeof hbuf);
        const char *cur_from = from;
        if ((strcmp(from, "localhost") == 0 || strcmp(from, "localhost.localdomain") == 0) &&
            strcmp(nz(x->ip), "127.0.0.1") == 0)
            cur_from = NULL;
        const char *prev = prev_from;
        prev_from = cur_from ? tamis_arena_strdup(ctx->arena, cur_from) : NULL;
        if (!re_match(&re_by_host, by))
            continue;
        if (classb_differs(helo, nz(x->ip)))
            out[1]++;
        if (i > 0 && prev && re_match(&re_by_host, prev) && strcmp(by, prev) != 0 &&
            !(strcmp(by, "msn.com") == 0 && strcmp(prev, "hotmail.com") == 0))
            out[0]++;
    }
    m = tamis_arena_alloc(ctx->arena, 2 * sizeof *m);
    if (m) {
        m[0] = out[0], m[1] = out[1];
        (void)tamis__memo_set(ctx, &key, m);
    }
}

static double check_for_forged_received_trail(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double v[2];
    forged_received(ctx, v);
    return v[0] > 1;
}

static double check_for_forged_received_ip_helo(tamis_eval_ctx_t *ctx, const char *const *a,
                                                size_t n)
{
    double v[2];
    forged_received(ctx, v);
    return v[1] > 0;
}

/* ---- the table ------------------------------------------------------------------------------- */

#define R(name)                                                                                    \
    {                                                                                              \
#name, name, TAMIS_EVAL_ANY, false                                                         \
    }

const tamis_eval_def_t tamis__evals_relay[] = {
    R(check_all_trusted),
    R(check_no_relays),
    R(check_relays_unparseable),
    R(check_for_numeric_helo),
    R(check_for_illegal_ip),
    R(helo_ip_mismatch),
    R(check_for_sender_no_reverse),
    R(check_for_no_rdns_dotcom_helo),
    R(check_for_forged_received_trail),
    R(check_for_forged_received_ip_helo),
    {NULL, NULL, 0, false},
};
