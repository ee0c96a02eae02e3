/*
 * Pure DNSBL/URIBL helpers: reversed addresses and query names, SpamAssassin's sub-tests
 * (URIDNSBL parse_and_canonicalize_subtest; DNSEval's digits/quad forms are a subset), and the
 * classification of the big lists' "blocked" codes, which must never count as listings: users'
 * most common false positive is a public resolver's refusal scored as a hit.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "net/net_int.h"

int tamis_net_reverse_ip(const char *ip, char *out, size_t outlen)
{
    if (!ip || !out || outlen == 0)
        return TAMIS_EINVAL;
    struct in_addr v4;
    struct in6_addr v6;
    const unsigned char *b4 = NULL;
    if (inet_pton(AF_INET, ip, &v4) == 1) {
        b4 = (const unsigned char *)&v4;
    } else if (inet_pton(AF_INET6, ip, &v6) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(v6.s6_addr, mapped, 12) == 0)
            b4 = v6.s6_addr + 12;
    } else {
        return TAMIS_EINVAL;
    }
    int n;
    if (b4) {
        n = snprintf(out, outlen, "%u.%u.%u.%u", b4[3], b4[2], b4[1], b4[0]);
    } else {
        static const char hex[] = "0123456789abcdef";
        char tmp[64];
        size_t w = 0;
        for (int i = 15; i >= 0; i--) {
            tmp[w++] = hex[v6.s6_addr[i] & 0xf];
            tmp[w++] = '.';
            tmp[w++] = hex[v6.s6_addr[i] >> 4];
            tmp[w++] = i ? '.' : '\0';
        }
        n = snprintf(out, outlen, "%s", tmp);
    }
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return TAMIS_ELIMIT;
    }
    return 0;
}

int tamis_net_zone_name(const char *left, const char *zone, char *out, size_t outlen)
{
    if (!left || !zone || !out || outlen == 0)
        return TAMIS_EINVAL;
    size_t ll = strlen(left), zl = strlen(zone);
    while (ll > 0 && left[ll - 1] == '.')
        ll--;
    while (zl > 0 && zone[zl - 1] == '.')
        zl--;
    if (ll == 0 || zl == 0 || ll + 1 + zl > 253)
        return TAMIS_EINVAL;
    if (ll + 1 + zl + 1 > outlen)
        return TAMIS_ELIMIT;
    memcpy(out, left, ll);
    out[ll] = '.';
    memcpy(out + ll + 1, zone, zl);
    out[ll + 1 + zl] = '\0';
    return 0;
}

/* One number of a sub-test: 1-10 decimal digits, 0x + 1-8 hex digits, or a dotted quad. */
static bool parse_num(const char *s, size_t n, uint32_t *out, bool *quad)
{
    char buf[32];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *quad = false;
    if (n > 2 && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) {
        if (n > 10)
            return false;
        uint32_t v = 0;
        for (size_t i = 2; i < n; i++) {
            if (!isxdigit((unsigned char)buf[i]))
                return false;
            int c = tolower((unsigned char)buf[i]);
            v = v * 16 + (uint32_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
        }
        *out = v;
        return true;
    }
    bool digits = true;
    for (size_t i = 0; i < n; i++)
        digits = digits && isdigit((unsigned char)buf[i]);
    if (digits) {
        if (n > 10)
            return false;
        unsigned long long v = 0;
        for (size_t i = 0; i < n; i++)
            v = v * 10 + (unsigned)(buf[i] - '0');
        *out = (uint32_t)v; /* Perl would keep > 2^32; such masks only ever test low bits */
        return true;
    }
    /* Dotted quad, each part 1-3 digits (SpamAssassin's my_inet_aton). */
    uint32_t v = 0;
    int parts = 0;
    const char *p = buf;
    while (*p) {
        int d = 0;
        unsigned part = 0;
        while (isdigit((unsigned char)*p) && d < 4) {
            part = part * 10 + (unsigned)(*p++ - '0');
            d++;
        }
        if (d == 0 || d > 3 || part > 255)
            return false;
        v = (v << 8) | part;
        parts++;
        if (*p == '.' && parts < 4)
            p++;
        else if (*p)
            return false;
    }
    if (parts != 4)
        return false;
    *out = v;
    *quad = true;
    return true;
}

void tamis_net_subtest_parse(const char *s, tamis_net_subtest_t *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = TAMIS_NET_SUB_REGEX;
    if (!s || !*s)
        return;
    /* ^([^/-]+)(?:([/-])(.+))?$ */
    size_t n = strlen(s), d = strcspn(s, "/-");
    uint32_t a, b;
    bool qa, qb;
    if (d == n) {
        if (!parse_num(s, n, &a, &qa))
            return;
        if (qa) {
            out->kind = TAMIS_NET_SUB_RANGE; /* a lone quad means equality (n-n) */
            out->n1 = out->n2 = a;
        } else {
            out->kind = TAMIS_NET_SUB_MASK;
            out->n1 = a;
        }
        return;
    }
    if (d == 0 || d + 1 >= n || !parse_num(s, d, &a, &qa) ||
        !parse_num(s + d + 1, n - d - 1, &b, &qb))
        return;
    out->kind = s[d] == '-' ? TAMIS_NET_SUB_RANGE : TAMIS_NET_SUB_VMASK;
    out->n1 = a;
    out->n2 = b;
}

bool tamis_net_subtest_match(const tamis_net_subtest_t *t, uint32_t r)
{
    switch (t->kind) {
    case TAMIS_NET_SUB_MASK:
        return (r & t->n1) != 0 && (r & 0xff000000u) == 0x7f000000u;
    case TAMIS_NET_SUB_RANGE:
        return r >= t->n1 && r <= t->n2;
    case TAMIS_NET_SUB_VMASK:
        return (r & t->n2) == (t->n1 & t->n2);
    case TAMIS_NET_SUB_REGEX:
        return false;
    }
    return false;
}

/* Whether zone (trailing dots ignored, any case) is suffix or a sub-domain of it. */
static bool zone_in(const char *zone, const char *suffix)
{
    size_t zl = strlen(zone), sl = strlen(suffix);
    while (zl > 0 && zone[zl - 1] == '.')
        zl--;
    if (zl < sl || strncasecmp(zone + zl - sl, suffix, sl) != 0)
        return false;
    return zl == sl || zone[zl - sl - 1] == '.';
}

tamis_net_verdict_t tamis_net_classify(const char *zone, uint32_t r, const char **reason)
{
    const char *why = "listed";
    tamis_net_verdict_t v = TAMIS_NET_LISTED;
    if ((r & 0xff000000u) != 0x7f000000u) {
        v = TAMIS_NET_BOGUS;
        why = "answer outside 127.0.0.0/8";
    } else if ((r & 0xffffff00u) == 0x7fffff00u) {
        v = TAMIS_NET_BLOCKED;
        why = r == 0x7ffffffeu   ? "query via a public/open resolver refused"
              : r == 0x7fffffffu ? "excessive number of queries"
              : r == 0x7ffffffcu ? "typing error in the DNSBL name"
                                 : "list error code (127.255.255.0/24)";
    } else if (zone && r == 0x7f000001u &&
               (zone_in(zone, "uribl.com") || zone_in(zone, "surbl.org"))) {
        v = TAMIS_NET_BLOCKED;
        why = "query refused (blocked resolver or over quota)";
    } else if (zone && r == 0x7f0001ffu && zone_in(zone, "dbl.spamhaus.org")) {
        v = TAMIS_NET_BLOCKED;
        why = "IP address queried on a domain list";
    }
    if (reason)
        *reason = why;
    return v;
}

bool tamis_net_dnsbl_hit(const char *zone, const tamis_net_subtest_t *t, uint32_t r,
                         bool block_rule)
{
    switch (tamis_net_classify(zone, r, NULL)) {
    case TAMIS_NET_BOGUS:
        return false;
    case TAMIS_NET_BLOCKED:
        if (!t)
            return false;
        if (block_rule)
            return tamis_net_subtest_match(t, r);
        /* An exact code named by the rule (URIBL_DBL_ERROR 127.0.1.255) is its own test. */
        return t->kind == TAMIS_NET_SUB_RANGE && t->n1 == t->n2 && t->n1 == r;
    case TAMIS_NET_LISTED:
        return !t || tamis_net_subtest_match(t, r);
    }
    return false;
}
