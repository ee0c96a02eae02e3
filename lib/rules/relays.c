/*
 * Trust evaluation of the Received chain (spec-rules §6.4), after SpamAssassin's
 * Message/Metadata/Received.pm parse_received_headers().
 *
 * lib/msg parses each Received field into a tamis_relay_t (or marks it unparseable/skipped); this
 * file walks them newest first and decides where the trusted and internal parts end:
 *   - with trusted_networks and/or internal_networks configured (one copies the other when only
 *     one is set), a hop stays trusted while its client IP is in trusted_networks (or it carries
 *     an authentication token), internal while also in internal_networks; an msa_networks hop
 *     freezes the status of all the hops behind it;
 *   - with neither configured, trust is inferred: private client IPs and authenticated hops are
 *     trusted (and internal) until the first other hop.
 * 127/8 and ::1 are always trusted and internal. A POP3/IMAP fetcher marker inside the trusted part
 * restarts the walk, as SpamAssassin does. The stock originating_ip_headers (X-Originating-IP …)
 * add one synthetic hop each at the end of the chain.
 *
 * The result also carries the X-Spam-Relays-* strings in SpamAssassin's exact format.
 */
#include "rules/eval.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

/* The stock 10_default_prefs.cf list; tamis_conf_t has no originating_ip_headers setting yet. */
static const char *const originating_ip_headers[] = {
    "X-Yahoo-Post-IP",   "X-Originating-IP",
    "X-Apparently-From", "X-SenderIP",
    "X-AOL-IP",          "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp",
};

/* Bounds the work on hostile messages: SpamAssassin has no limit, but no real chain is longer. */
#define MAX_RELAYS 1000
#define MAX_RELAY_STRING (1u << 20)

/* ---- IP helpers ------------------------------------------------------------------------------ */

static bool ipv4_private(const unsigned char *a)
{
    return a[0] == 10 || a[0] == 127 || (a[0] == 169 && a[1] == 254) ||
           (a[0] == 172 && a[1] >= 16 && a[1] <= 31) || (a[0] == 192 && a[1] == 168) ||
           (a[0] == 100 && a[1] >= 64 && a[1] <= 127);
}

/* SpamAssassin's IP_PRIVATE: RFC 1918, loopback, link-local, CGN; IPv6 loopback, link-local,
 * unique-local and v4-mapped private addresses. */
bool tamis__ip_is_private(const char *ip)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, ip, a) == 1)
        return ipv4_private(a);
    if (inet_pton(AF_INET6, ip, a) != 1)
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (memcmp(a, mapped, 12) == 0)
        return ipv4_private(a + 12);
    return memcmp(a, loop, 16) == 0 || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
           (a[0] & 0xfe) == 0xfc;
}

static bool ip_is_loopback(const char *ip)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, ip, a) == 1)
        return a[0] == 127;
    static const unsigned char loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return inet_pton(AF_INET6, ip, a) == 1 && memcmp(a, loop, 16) == 0;
}

/* NetSet contains_ip of a trusted/internal set, which always starts with 127/8 and ::1. */
static bool netset_contains(const tamis_cidr_list_t *l, const char *ip, bool loopback)
{
    if (!ip || !*ip)
        return false;
    if (loopback && ip_is_loopback(ip))
        return true;
    return l && l->count && tamis_conf_cidr_match(l, ip);
}

/* First IPv4 (word-bounded dotted quad) or IPv6 literal in s, copied into out; false if none. */
static bool find_ip(const char *s, char *out, size_t outlen)
{
    for (const char *p = s; *p; p++) {
        if (p > s &&
            (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == ':' || p[-1] == '.'))
            continue;
        size_t n = strspn(p, "0123456789abcdefABCDEF:.");
        if (n < 2 || n >= outlen)
            continue;
        /* Perl's \b: the token must not run on into a word character. */
        if (isalnum((unsigned char)p[n]) || p[n] == '_')
            continue;
        while (n > 0 && p[n - 1] == '.')
            n--;
        memcpy(out, p, n);
        out[n] = '\0';
        unsigned char a[16];
        if (inet_pton(AF_INET, out, a) == 1 ||
            (strchr(out, ':') && inet_pton(AF_INET6, out, a) == 1))
            return true;
        /* "1.2.3.4.5": Perl's \b lets the first four parts match on their own */
        char *q = out;
        for (int dots = 0; *q && dots < 4; q++)
            dots += *q == '.';
        if (!strchr(out, ':') && *q && q > out) {
            q[-1] = '\0';
            if (inet_pton(AF_INET, out, a) == 1)
                return true;
        }
    }
    return false;
}

/* ---- the walk -------------------------------------------------------------------------------- */

typedef struct {
    const tamis_cidr_list_t *trusted, *internal, *msa;
    bool configured; /* trusted_networks or internal_networks set */
    bool in_trusted, in_internal, found_msa;
    bool allow_fetch_markers;
} walk_t;

static void walk_init(walk_t *w, const tamis_conf_t *conf)
{
    memset(w, 0, sizeof *w);
    w->in_trusted = w->in_internal = w->allow_fetch_markers = true;
    if (!conf)
        return;
    bool t = conf->trusted_networks.set, i = conf->internal_networks.set;
    w->configured = t || i;
    w->trusted = t ? &conf->trusted_networks : &conf->internal_networks;
    w->internal = i ? &conf->internal_networks : &conf->trusted_networks;
    w->msa = &conf->msa_networks;
}

/* Updates the trust state for the next hop and returns whether it is an MSA hop. */
static bool walk_step(walk_t *w, const tamis_relay_t *r)
{
    bool auth = r->auth && *r->auth;
    if (!w->in_trusted || w->found_msa)
        return false;
    if (!w->configured) {
        if (!r->ip_private && !auth)
            w->in_trusted = w->in_internal = false;
        return false;
    }
    if (!auth && !netset_contains(w->trusted, r->ip, true)) {
        w->in_trusted = w->in_internal = false;
        return false;
    }
    if (w->in_internal && !auth && !netset_contains(w->internal, r->ip, true))
        w->in_internal = false;
    if (netset_contains(w->msa, r->ip, false)) {
        w->found_msa = true;
        return true;
    }
    return false;
}

/* Received.pm skips "with POP3|IMAP" handovers and restarts the parse when it sees one. */
static bool is_fetcher_marker(const tamis_relay_t *r)
{
    if (!r->skipped || !r->header || !r->header->raw)
        return false;
    const char *s = r->header->raw;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    if (*s == '(')
        s++;
    if (strncasecmp(s, "from ", 5) != 0 && strncasecmp(s, "from\t", 5) != 0)
        return false;
    /* The Perl test is case-sensitive on folded text; folding turns into a single space. */
    for (const char *p = s; (p = strstr(p, "with")) != NULL; p += 4) {
        if (p == s || (p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n'))
            continue;
        const char *q = p + 4;
        if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
            continue;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        if (strncmp(q, "POP3", 4) == 0 || strncmp(q, "IMAP", 4) == 0)
            return true;
    }
    return false;
}

/* The synthetic hops of originating_ip_headers, as "from X-Originating-IP: <ip>" parses. */
static size_t synthetic_relays(const tamis_msg_t *m, tamis_arena_t *arena, tamis_relay_t **out)
{
    size_t n = 0, max = sizeof originating_ip_headers / sizeof *originating_ip_headers;
    tamis_relay_t *v = tamis_arena_calloc(arena, max, sizeof *v);
    if (!v)
        return 0;
    for (size_t i = 0; i < max; i++) {
        const tamis_header_t *h = tamis_msg_header_last(m, originating_ip_headers[i]);
        char ip[64];
        if (!h || !h->decoded || !find_ip(h->decoded, ip, sizeof ip))
            continue;
        tamis_relay_t *r = &v[n];
        r->ip = tamis_arena_strdup(arena, ip);
        if (!r->ip)
            break;
        r->rdns = r->helo = r->by = r->ident = r->envfrom = r->id = r->auth = r->with = "";
        r->ip_private = tamis__ip_is_private(ip);
        r->header = h;
        r->originating = true;
        n++;
    }
    *out = v;
    return n;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static void relay_string(tamis_buf_t *b, const tamis__relay_t *x)
{
    const tamis_relay_t *r = x->r;
    if (b->len)
        tamis_buf_putc(b, ' ');
    tamis_buf_printf(b,
                     "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s intl=%d id=%s auth=%s "
                     "msa=%d ]",
                     nz(r->ip), nz(r->rdns), nz(r->helo), nz(r->by), nz(r->ident), nz(r->envfrom),
                     x->internal ? 1 : 0, nz(r->id), nz(r->auth), x->msa ? 1 : 0);
}

/* Builds one X-Spam-Relays-* string from the hops [from, to) that have (or lack) a property. */
static const char *join_relays(const tamis__relays_t *o, tamis_arena_t *arena, int which)
{
    tamis_buf_t b;
    tamis_buf_init(&b, MAX_RELAY_STRING);
    for (size_t i = 0; i < o->count; i++) {
        const tamis__relay_t *x = &o->all[i];
        bool in = which == 0   ? x->trusted
                  : which == 1 ? !x->trusted
                  : which == 2 ? x->internal
                               : !x->internal;
        if (in)
            relay_string(&b, x);
    }
    const char *s = b.err ? NULL : tamis_arena_strndup(arena, b.data ? b.data : "", b.len);
    tamis_buf_free(&b);
    return s;
}

static int make_text(tamis__relays_t *o, tamis_arena_t *arena)
{
    tamis_rules_relays_t *t = &o->text;
    t->trusted = join_relays(o, arena, 0);
    t->untrusted = join_relays(o, arena, 1);
    t->internal = join_relays(o, arena, 2);
    t->external = join_relays(o, arena, 3);
    if (!t->trusted || !t->untrusted || !t->internal || !t->external)
        return TAMIS_ENOMEM;
    /* LASTEXTERNALIP: relays_external->[0]; FIRSTTRUSTEDIP: relays_trusted->[-1]. */
    t->last_external_ip = "";
    t->first_trusted_ip = "";
    if (o->internal_count < o->count)
        t->last_external_ip = nz(o->all[o->internal_count].r->ip);
    if (o->trusted_count > 0)
        t->first_trusted_ip = nz(o->all[o->trusted_count - 1].r->ip);
    return 0;
}

/* Appends hop r to the output after updating the trust state. */
static void add_hop(tamis__relays_t *o, walk_t *w, const tamis_relay_t *r)
{
    bool msa = walk_step(w, r);
    tamis__relay_t *x = &o->all[o->count++];
    x->r = r;
    x->trusted = w->in_trusted;
    x->internal = w->in_internal;
    x->msa = msa;
    x->auth = r->auth && *r->auth;
    if (x->trusted)
        o->trusted_count++;
    if (x->internal)
        o->internal_count++;
    w->allow_fetch_markers = w->in_trusted;
}

/*
 * Design: one pass over lib/msg's relays, newest first, as Received.pm does. Because trust and
 * internality can only be lost (never regained) along the chain, the trusted and internal hops
 * are prefixes of the output array, which is what eval.h promises. conf may be NULL (inference).
 * out's memory comes from arena.
 */
int tamis__relays_compute(const tamis_conf_t *conf, const tamis_msg_t *m, tamis_arena_t *arena,
                          tamis__relays_t *out)
{
    if (!m || !arena || !out)
        return TAMIS_EINVAL;
    memset(out, 0, sizeof *out);
    size_t nrec = tamis_msg_relay_count(m);
    if (nrec > MAX_RELAYS)
        nrec = MAX_RELAYS;
    tamis_relay_t *syn = NULL;
    size_t nsyn = synthetic_relays(m, arena, &syn);
    out->all = tamis_arena_calloc(arena, nrec + nsyn + 1, sizeof *out->all);
    if (!out->all)
        return TAMIS_ENOMEM;
    walk_t w;
    walk_init(&w, conf);
    for (size_t i = 0; i < nrec; i++) {
        const tamis_relay_t *r = tamis_msg_relay_at(m, i);
        if (!r || r->originating) /* lib/msg's copies of the synthetic hops added below */
            continue;
        if (r->unparseable) {
            out->unparseable = true;
            continue;
        }
        if (r->skipped) {
            if (w.allow_fetch_markers && is_fetcher_marker(r))
                out->count = out->trusted_count = out->internal_count = 0;
            continue;
        }
        add_hop(out, &w, r);
    }
    for (size_t i = 0; i < nsyn; i++)
        add_hop(out, &w, &syn[i]);
    return make_text(out, arena);
}

int tamis_rules_relays(const tamis_ruleset_t *rs, const tamis_msg_t *m, tamis_arena_t *arena,
                       tamis_rules_relays_t *out)
{
    if (!rs || !m || !arena || !out)
        return TAMIS_EINVAL;
    tamis__relays_t r;
    int rc = tamis__relays_compute(tamis_rules_conf(rs), m, arena, &r);
    if (rc == 0)
        *out = r.text;
    return rc;
}
