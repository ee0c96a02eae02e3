/*
 * SPF: check_host() of RFC 7208 over tamis_auth_dns_t.
 *
 * The check is a plain recursive walk (include and redirect recurse) that starts lookups through
 * dns->start and blocks in dns->wait; tamis__spf_start only issues the first TXT lookup so that it
 * overlaps with the rest of the scan. The lookups of one mx mechanism (one per exchange) and of
 * the PTR validation are all started before the first wait, so they travel together.
 *
 * Every record is parsed whole before it is evaluated (a syntax error anywhere is a permerror);
 * macros are checked at parse time and expanded when their term is evaluated. The work is bounded
 * by RFC 7208 §4.6.4 (10 DNS-querying terms, 2 void lookups, 10 MX names, 10 PTR names) and by
 * our own limits (spf.h): record length, term count, expansion length, nesting depth.
 *
 * DNS errors (SERVFAIL, REFUSED, timeouts, a lookup we could not start) are temperror everywhere,
 * the ptr mechanism and %{p} included (there RFC 7208 §5.5 would skip the name, but auth.h promises
 * that a lookup that fails is never a pass or a fail; pyspf agrees). A name that cannot be a DNS
 * name (empty or long labels) is looked up as nothing: a void lookup.
 *
 * Why our own and not libspf2: libspf2 resolves through res_query, which blocks a worker thread
 * per lookup, cannot be bounded by the scan's deadline and bypasses our cache; see docs/auth.md.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/spf.h"

/* ---- the record parser (pure) ---------------------------------------------------------------- */

bool tamis__spf_is_record(const char *txt)
{
    return txt && strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == '\0' || txt[6] == ' ');
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}
static bool is_alnum(int c)
{
    return is_alpha(c) || is_digit(c);
}

/* RFC 7208 §7.1 toplabel: ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" )
 * alphanum ). */
static bool toplabel_ok(const char *p, size_t n)
{
    if (n == 0)
        return false;
    bool alpha = false, dash = false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '-')
            dash = true;
        else if (is_alpha(p[i]))
            alpha = true;
        else if (!is_digit(p[i]))
            return false;
    }
    if (!dash)
        return alpha;
    return is_alnum(p[0]) && is_alnum(p[n - 1]);
}

/* Walks a macro-string: calls nothing, only validates. *last_macro_end receives the offset just
 * past the last macro-expand (0 if none). */
static int macro_walk(const char *s, size_t n, bool exp_text, size_t *last_macro_end)
{
    size_t end = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c != '%') {
            /* macro-literal: %x21-24 / %x26-7E; explanations may hold spaces too (§6.2). */
            if (!((c >= 0x21 && c <= 0x7e) || (exp_text && c == ' ')))
                return TAMIS_EPARSE;
            i++;
            continue;
        }
        if (i + 1 >= n)
            return TAMIS_EPARSE;
        char k = s[i + 1];
        if (k == '%' || k == '_' || k == '-') {
            i += 2;
            end = i;
            continue;
        }
        if (k != '{' || i + 2 >= n)
            return TAMIS_EPARSE;
        char letter = (char)tolower((unsigned char)s[i + 2]);
        if (!strchr("slodiphcrtv", letter) || letter == '\0')
            return TAMIS_EPARSE;
        if (!exp_text && strchr("crt", letter))
            return TAMIS_EPARSE;
        size_t j = i + 3;
        size_t digits = 0;
        unsigned long val = 0;
        while (j < n && is_digit(s[j])) {
            if (val < 1000)
                val = val * 10 + (unsigned long)(s[j] - '0');
            digits++;
            j++;
        }
        if (digits && val == 0)
            return TAMIS_EPARSE; /* §7.3: a DIGIT transformer MUST be nonzero */
        if (j < n && (s[j] == 'r' || s[j] == 'R'))
            j++;
        while (j < n && strchr(".-+,/_=", s[j]) && s[j] != '\0')
            j++;
        if (j >= n || s[j] != '}')
            return TAMIS_EPARSE;
        i = j + 1;
        end = i;
    }
    if (last_macro_end)
        *last_macro_end = end;
    return 0;
}

int tamis__spf_macro_check(const char *spec, size_t len, bool exp_text, bool domain_spec)
{
    size_t mend = 0;
    if (!spec || macro_walk(spec, len, exp_text, &mend) < 0)
        return TAMIS_EPARSE;
    if (!domain_spec)
        return 0;
    if (len == 0)
        return TAMIS_EPARSE;
    if (mend == len)
        return 0; /* domain-end = macro-expand */
    /* domain-end = "." toplabel [ "." ], after the last macro. */
    size_t n = len;
    if (spec[n - 1] == '.')
        n--;
    size_t dot = n;
    while (dot > mend && spec[dot - 1] != '.')
        dot--;
    if (dot == mend || dot == 0 || spec[dot - 1] != '.')
        return TAMIS_EPARSE;
    return toplabel_ok(spec + dot, n - dot) ? 0 : TAMIS_EPARSE;
}

/* qnum "." qnum "." qnum "." qnum, without leading zeros (RFC 7208 §5.6). */
static bool ip4_parse(const char *p, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (i >= n || p[i] != '.')
                return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(p[i]) && i - start < 3)
            v = v * 10 + (unsigned)(p[i++] - '0');
        size_t len = i - start;
        if (len == 0 || v > 255 || (len > 1 && p[start] == '0'))
            return false;
        out[part] = (uint8_t)v;
    }
    return i == n;
}

static bool ip6_parse(const char *p, size_t n, uint8_t out[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n >= sizeof(buf))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)p[i]) && p[i] != ':' && p[i] != '.')
            return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, out) == 1;
}

/* "/" ( "0" / %x31-39 0*(maxdigits-1)DIGIT ) at the end of p[0..*n): strips it and returns true. */
static bool cidr_suffix(const char *p, size_t *n, unsigned maxdigits, unsigned *out)
{
    size_t e = *n, d = e;
    while (d > 0 && is_digit(p[d - 1]))
        d--;
    size_t digits = e - d;
    if (digits == 0 || digits > maxdigits || d == 0 || p[d - 1] != '/')
        return false;
    if (digits > 1 && p[d] == '0')
        return false;
    unsigned v = 0;
    for (size_t i = d; i < e; i++)
        v = v * 10 + (unsigned)(p[i] - '0');
    *out = v;
    *n = d - 1;
    return true;
}

static int perr(char *err, size_t errlen, const char *what, const char *t, size_t n)
{
    return tamis_seterr(err, errlen, TAMIS_EPARSE, "spf: %s: %.*s", what, (int)(n > 80 ? 80 : n),
                        t);
}

static bool word_is(const char *p, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(p, w, n) == 0;
}

/* One directive t[0..n). */
static int parse_directive(const char *t, size_t n, tamis_arena_t *arena, tamis__spf_term_t *out,
                           char *err, size_t errlen)
{
    const char *p = t;
    size_t len = n;
    memset(out, 0, sizeof(*out));
    out->qualifier = TAMIS_AUTH_PASS;
    switch (*p) {
    case '+':
        out->qualifier = TAMIS_AUTH_PASS;
        p++, len--;
        break;
    case '-':
        out->qualifier = TAMIS_AUTH_FAIL;
        p++, len--;
        break;
    case '~':
        out->qualifier = TAMIS_AUTH_SOFTFAIL;
        p++, len--;
        break;
    case '?':
        out->qualifier = TAMIS_AUTH_NEUTRAL;
        p++, len--;
        break;
    }
    size_t nl = 0;
    while (nl < len && is_alnum(p[nl]))
        nl++;
    const char *rest = p + nl;
    size_t rlen = len - nl;
    if (word_is(p, nl, "all")) {
        if (rlen)
            return perr(err, errlen, "bad all", t, n);
        out->mech = TAMIS__SPF_ALL;
        return 0;
    }
    if (word_is(p, nl, "ip4") || word_is(p, nl, "ip6")) {
        bool v6 = p[2] == '6';
        out->mech = v6 ? TAMIS__SPF_IP6 : TAMIS__SPF_IP4;
        if (rlen < 2 || rest[0] != ':')
            return perr(err, errlen, "missing address", t, n);
        rest++, rlen--;
        unsigned cidr = v6 ? 128 : 32;
        if (cidr_suffix(rest, &rlen, v6 ? 3 : 2, &cidr) && cidr > (v6 ? 128u : 32u))
            return perr(err, errlen, "bad CIDR length", t, n);
        bool ok = v6 ? ip6_parse(rest, rlen, out->addr) : ip4_parse(rest, rlen, out->addr);
        if (!ok)
            return perr(err, errlen, "bad address", t, n);
        if (v6)
            out->cidr6 = cidr;
        else
            out->cidr4 = cidr;
        return 0;
    }
    static const struct {
        const char *name;
        tamis__spf_mech_t mech;
        bool spec_required, cidr;
    } mechs[] = {
        {"include", TAMIS__SPF_INCLUDE, true, false}, {"a", TAMIS__SPF_A, false, true},
        {"mx", TAMIS__SPF_MX, false, true},           {"ptr", TAMIS__SPF_PTR, false, false},
        {"exists", TAMIS__SPF_EXISTS, true, false},
    };
    for (size_t m = 0; m < sizeof(mechs) / sizeof(*mechs); m++) {
        if (!word_is(p, nl, mechs[m].name))
            continue;
        out->mech = mechs[m].mech;
        out->cidr4 = 32;
        out->cidr6 = 128;
        if (mechs[m].cidr) {
            /* dual-cidr-length = [ "/" ip4-cidr ] [ "//" ip6-cidr ], read from the end. */
            size_t e = rlen;
            unsigned c6 = 0, c4 = 0;
            if (cidr_suffix(rest, &e, 3, &c6) && e > 0 && rest[e - 1] == '/') {
                e--;
                if (c6 > 128)
                    return perr(err, errlen, "bad IPv6 CIDR length", t, n);
                out->cidr6 = c6;
                rlen = e;
            }
            e = rlen;
            if (cidr_suffix(rest, &e, 2, &c4)) {
                if (c4 > 32)
                    return perr(err, errlen, "bad IPv4 CIDR length", t, n);
                out->cidr4 = c4;
                rlen = e;
            }
        }
        if (rlen == 0) {
            if (mechs[m].spec_required)
                return perr(err, errlen, "missing domain", t, n);
            return 0;
        }
        if (rest[0] != ':' || rlen < 2)
            return perr(err, errlen, "bad mechanism", t, n);
        if (tamis__spf_macro_check(rest + 1, rlen - 1, false, true) < 0)
            return perr(err, errlen, "bad domain-spec", t, n);
        out->spec = tamis_arena_strndup(arena, rest + 1, rlen - 1);
        return out->spec ? 0 : TAMIS_ENOMEM;
    }
    return perr(err, errlen, "unknown mechanism", t, n);
}

int tamis__spf_parse(const char *txt, tamis_arena_t *arena, tamis__spf_record_t *out, char *err,
                     size_t errlen)
{
    if (!txt || !arena || !out)
        return TAMIS_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!tamis__spf_is_record(txt))
        return tamis_seterr(err, errlen, TAMIS_EPARSE, "spf: not a v=spf1 record");
    size_t total = strlen(txt);
    if (total > TAMIS_SPF_MAX_RECORD)
        return tamis_seterr(err, errlen, TAMIS_ELIMIT, "spf: record longer than %d bytes",
                            TAMIS_SPF_MAX_RECORD);
    tamis__spf_term_t *terms = NULL;
    size_t count = 0, seen = 0;
    for (const char *p = txt + 6; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        size_t n = strcspn(p, " ");
        if (++seen > TAMIS_SPF_MAX_TERMS)
            return tamis_seterr(err, errlen, TAMIS_ELIMIT, "spf: more than %d terms",
                                TAMIS_SPF_MAX_TERMS);
        /* modifier = name "=" macro-string; name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
        size_t nl = 0;
        if (is_alpha(p[0])) {
            nl = 1;
            while (nl < n && (is_alnum(p[nl]) || p[nl] == '-' || p[nl] == '_' || p[nl] == '.'))
                nl++;
        }
        if (nl > 0 && nl < n && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t vl = n - nl - 1;
            const char **slot = word_is(p, nl, "redirect") ? &out->redirect
                                : word_is(p, nl, "exp")    ? &out->exp
                                                           : NULL;
            if (slot) {
                if (*slot)
                    return perr(err, errlen, "modifier given twice", p, n);
                if (tamis__spf_macro_check(v, vl, false, true) < 0)
                    return perr(err, errlen, "bad domain-spec", p, n);
                *slot = tamis_arena_strndup(arena, v, vl);
                if (!*slot)
                    return TAMIS_ENOMEM;
            } else if (tamis__spf_macro_check(v, vl, false, false) < 0) {
                return perr(err, errlen, "bad macro in modifier", p, n);
            }
        } else {
            if (!terms) {
                terms = tamis_arena_calloc(arena, TAMIS_SPF_MAX_TERMS, sizeof(*terms));
                if (!terms)
                    return TAMIS_ENOMEM;
            }
            int rc = parse_directive(p, n, arena, &terms[count], err, errlen);
            if (rc < 0)
                return rc;
            count++;
        }
        p += n;
    }
    out->terms = terms;
    out->count = count;
    return 0;
}

/* ---- the macro expander (pure) --------------------------------------------------------------- */

typedef struct {
    char *b;
    size_t n, cap;
    bool over;
} ob_t;

static void ob_put(ob_t *o, const char *p, size_t n)
{
    if (o->over || o->n + n >= o->cap) {
        o->over = true;
        return;
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void ob_escaped(ob_t *o, const char *p, size_t n, bool escape)
{
    if (!escape) {
        ob_put(o, p, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            ob_put(o, (const char *)&c, 1);
        } else {
            char hex[4];
            snprintf(hex, sizeof(hex), "%%%02X", c);
            ob_put(o, hex, 3);
        }
    }
}

/* One macro's value through its transformers: split on delims, reverse, keep the rightmost
 * `keep` parts (0 = all), join with '.'. */
static void transform(ob_t *o, const char *val, const char *delims, size_t ndelims,
                      unsigned long keep, bool rev, bool escape)
{
    enum { MAXPARTS = 256 };
    const char *ps[MAXPARTS];
    size_t pl[MAXPARTS], np = 0;
    size_t vl = strlen(val);
    if (ndelims == 0 && keep == 0 && !rev) {
        ob_escaped(o, val, vl, escape);
        return;
    }
    const char *start = val;
    for (size_t i = 0; i <= vl; i++) {
        bool d = i == vl || (ndelims ? memchr(delims, val[i], ndelims) != NULL : val[i] == '.');
        if (!d)
            continue;
        if (np == MAXPARTS) {
            o->over = true;
            return;
        }
        ps[np] = start;
        pl[np] = (size_t)(val + i - start);
        np++;
        start = val + i + 1;
    }
    if (rev) {
        for (size_t i = 0; i < np / 2; i++) {
            const char *tp = ps[i];
            size_t tl = pl[i];
            ps[i] = ps[np - 1 - i], pl[i] = pl[np - 1 - i];
            ps[np - 1 - i] = tp, pl[np - 1 - i] = tl;
        }
    }
    size_t first = keep && keep < np ? np - keep : 0;
    for (size_t i = first; i < np; i++) {
        if (i > first)
            ob_put(o, ".", 1);
        ob_escaped(o, ps[i], pl[i], escape);
    }
}

int tamis__spf_expand(const char *spec, const tamis__spf_macros_t *m, bool exp_text, char *out,
                      size_t outlen)
{
    if (!spec || !m || !out || outlen == 0)
        return TAMIS_EINVAL;
    out[0] = '\0';
    size_t n = strlen(spec);
    if (macro_walk(spec, n, exp_text, NULL) < 0)
        return TAMIS_EPARSE;
    ob_t o = {out, 0, outlen > TAMIS_SPF_MAX_EXPAND + 1 ? TAMIS_SPF_MAX_EXPAND + 1 : outlen, false};
    for (size_t i = 0; i < n && !o.over;) {
        if (spec[i] != '%') {
            size_t l = strcspn(spec + i, "%");
            ob_put(&o, spec + i, l);
            i += l;
            continue;
        }
        char k = spec[i + 1];
        if (k == '%' || k == '_' || k == '-') {
            ob_put(&o, k == '%' ? "%" : k == '_' ? " " : "%20", k == '-' ? 3 : 1);
            i += 2;
            continue;
        }
        /* "%{" letter digits [r] delims "}", validated by macro_walk */
        char L = spec[i + 2];
        char letter = (char)tolower((unsigned char)L);
        size_t j = i + 3;
        unsigned long keep = 0;
        while (is_digit(spec[j])) {
            if (keep < 1000)
                keep = keep * 10 + (unsigned long)(spec[j] - '0');
            j++;
        }
        bool rev = false;
        if (spec[j] == 'r' || spec[j] == 'R') {
            rev = true;
            j++;
        }
        const char *delims = spec + j;
        size_t nd = strcspn(delims, "}");
        const char *v = NULL;
        switch (letter) {
        case 's':
            v = m->s;
            break;
        case 'l':
            v = m->l;
            break;
        case 'o':
            v = m->o;
            break;
        case 'd':
            v = m->d;
            break;
        case 'i':
            v = m->i;
            break;
        case 'p':
            v = m->p;
            break;
        case 'v':
            v = m->v;
            break;
        case 'h':
            v = m->h;
            break;
        case 'c':
            v = m->c;
            break;
        case 'r':
            v = m->r;
            break;
        case 't':
            v = m->t;
            break;
        }
        transform(&o, v ? v : "unknown", delims, nd, keep, rev, L != letter);
        i = j + nd + 1;
    }
    if (o.over) {
        out[0] = '\0';
        return TAMIS_ELIMIT;
    }
    out[o.n] = '\0';
    if (!exp_text) {
        if (o.n && out[o.n - 1] == '.')
            out[--o.n] = '\0';
        /* §7.3: cut whole labels from the left until the name fits. */
        size_t cut = 0;
        while (o.n - cut > TAMIS_SPF_MAX_NAME) {
            const char *dot = memchr(out + cut, '.', o.n - cut);
            if (!dot) {
                out[0] = '\0';
                return TAMIS_ELIMIT;
            }
            cut = (size_t)(dot - out) + 1;
        }
        if (cut)
            memmove(out, out + cut, o.n - cut + 1);
    }
    return 0;
}

/* ---- check_host() -----------------------------------------------------------------------------
 */

struct tamis__spf {
    const tamis_auth_dns_t *dns;
    tamis_arena_t *arena;
    bool v6;
    uint8_t ip[16]; /* IPv4 in ip[0..3] */
    char istr[80], cstr[INET6_ADDRSTRLEN], tstr[24];
    const char *sender, *local, *odomain, *domain, *helo;
    /* the first TXT lookup, started by tamis__spf_start */
    int first_rc;
    size_t first_slot;
    unsigned lookups, voids;
    bool done;
    tamis_auth_status_t result;
    const char *explanation;
    /* validated PTR names (ptr mechanism, %{p}): computed once */
    bool ptr_done;
    int ptr_status;     /* 0, TEMPERROR or PERMERROR */
    unsigned ptr_voids; /* void lookups the validation made */
    bool p_counted;     /* %{p} has counted them once */
    const char *ptr_names[TAMIS_SPF_MAX_PTR];
    size_t ptr_count;
    /* the name whose record is being evaluated */
    const char *cur;
};

/* What a lookup gave. */
typedef enum { LK_OK, LK_VOID, LK_ERR } lk_t;

/* Outcome of a term: a match, no match, or a final status (temperror / permerror). */
enum { T_NOMATCH = -1, T_MATCH = -2 };

static lk_t lk_class(int rc, const tamis_net_answer_t *a)
{
    if (rc == TAMIS_EINVAL)
        return LK_VOID; /* not a DNS name: nothing can be there */
    if (rc < 0 || !a)
        return LK_ERR;
    if (a->status == TAMIS_NET_NXDOMAIN || (a->status == TAMIS_NET_OK && a->count == 0))
        return LK_VOID;
    return a->status == TAMIS_NET_OK ? LK_OK : LK_ERR;
}

static int q_start(tamis__spf_t *s, const char *name, tamis_net_type_t type, size_t *slot)
{
    if (!name || !*name)
        return TAMIS_EINVAL;
    return s->dns->start(s->dns->ctx, name, type, slot);
}

static lk_t q_wait(tamis__spf_t *s, int rc, size_t slot, const tamis_net_answer_t **ans)
{
    *ans = rc == 0 ? s->dns->wait(s->dns->ctx, slot) : NULL;
    return lk_class(rc, *ans);
}

static lk_t lookup(tamis__spf_t *s, const char *name, tamis_net_type_t type,
                   const tamis_net_answer_t **ans)
{
    size_t slot = 0;
    int rc = q_start(s, name, type, &slot);
    return q_wait(s, rc, slot, ans);
}

/* Counts a void lookup: T_NOMATCH, or PERMERROR past the limit. */
static int void_lookup(tamis__spf_t *s)
{
    return ++s->voids > TAMIS_SPF_MAX_VOID ? (int)TAMIS_AUTH_PERMERROR : T_NOMATCH;
}

static int count_lookup(tamis__spf_t *s)
{
    return ++s->lookups > TAMIS_SPF_MAX_LOOKUPS ? (int)TAMIS_AUTH_PERMERROR : 0;
}

static bool cidr_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    size_t full = bits / 8;
    if (memcmp(a, b, full) != 0)
        return false;
    unsigned rest = bits % 8;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

/* Whether the client is among the addresses of an A (IPv4 client) or AAAA (IPv6) answer. */
static bool addr_match(const tamis__spf_t *s, const tamis_net_answer_t *a, unsigned c4, unsigned c6)
{
    for (size_t i = 0; i < a->count; i++) {
        if (s->v6) {
            if (a->addrs6 && cidr_match(a->addrs6[i], s->ip, c6))
                return true;
        } else if (a->addrs) {
            uint32_t v = a->addrs[i];
            uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
            if (cidr_match(b, s->ip, c4))
                return true;
        }
    }
    return false;
}

/* The PTR names of the client that resolve back to it (§5.5), at most TAMIS_SPF_MAX_PTR looked
 * at; the address lookups are all started before the first wait. Empty answers count as void
 * lookups (as pyspf and Mail::SPF count them). A DNS error or timeout is a temperror here too
 * (RFC 7208 §5.5 would skip the name; auth.h's contract, and pyspf, say a lookup that fails never
 * turns into a pass or a fail). Computed once; returns 0, TEMPERROR or PERMERROR (void limit). */
static int validate_ptrs(tamis__spf_t *s, bool recount)
{
    if (s->ptr_done) {
        /* Each ptr term (and the first %{p}) counts the validation's void lookups again, as a
         * term that looked them up itself would. */
        if (recount && s->ptr_status == 0 && s->ptr_voids &&
            (s->voids += s->ptr_voids) > TAMIS_SPF_MAX_VOID)
            return TAMIS_AUTH_PERMERROR;
        return s->ptr_status;
    }
    s->ptr_done = true;
    char rev[80], name[100];
    if (tamis_net_reverse_ip(s->cstr, rev, sizeof(rev)) < 0)
        return 0;
    snprintf(name, sizeof(name), "%s.%s.arpa", rev, s->v6 ? "ip6" : "in-addr");
    const tamis_net_answer_t *a;
    lk_t k = lookup(s, name, TAMIS_NET_PTR, &a);
    if (k == LK_VOID) {
        s->ptr_voids = 1;
        return s->ptr_status = void_lookup(s) == T_NOMATCH ? 0 : (int)TAMIS_AUTH_PERMERROR;
    }
    if (k != LK_OK)
        return s->ptr_status = TAMIS_AUTH_TEMPERROR;
    size_t n = a->count < TAMIS_SPF_MAX_PTR ? a->count : TAMIS_SPF_MAX_PTR;
    int rcs[TAMIS_SPF_MAX_PTR];
    size_t slots[TAMIS_SPF_MAX_PTR];
    for (size_t i = 0; i < n; i++)
        rcs[i] = q_start(s, a->strs[i], s->v6 ? TAMIS_NET_AAAA : TAMIS_NET_A, &slots[i]);
    for (size_t i = 0; i < n; i++) {
        const tamis_net_answer_t *b;
        lk_t kb = q_wait(s, rcs[i], slots[i], &b);
        if (kb == LK_VOID) {
            s->ptr_voids++;
            if (void_lookup(s) != T_NOMATCH)
                return s->ptr_status = TAMIS_AUTH_PERMERROR;
        } else if (kb == LK_ERR) {
            return s->ptr_status = TAMIS_AUTH_TEMPERROR;
        } else if (addr_match(s, b, 32, 128)) {
            s->ptr_names[s->ptr_count++] = a->strs[i];
        }
    }
    return 0;
}

static bool domain_within(const char *name, const char *dom)
{
    size_t n = strlen(name), d = strlen(dom);
    if (n < d || strcasecmp(name + n - d, dom) != 0)
        return false;
    return n == d || name[n - d - 1] == '.';
}

/* The macro values for the current domain; %{p} (a validated name of the client, preferring the
 * current domain or a subdomain of it, §7.3; "unknown" without one) only when spec uses it, since
 * it costs lookups. Returns 0 or PERMERROR (void limit during the PTR validation). */
static int fill_macros(tamis__spf_t *s, const char *spec, tamis__spf_macros_t *m)
{
    *m = (tamis__spf_macros_t){
        s->sender, s->local, s->odomain, s->cur, s->istr, NULL, s->v6 ? "ip6" : "in-addr",
        s->helo,   s->cstr,  "unknown",  s->tstr};
    if (!strstr(spec, "%{p") && !strstr(spec, "%{P"))
        return 0;
    int rc = validate_ptrs(s, !s->p_counted);
    s->p_counted = true;
    if (rc != 0)
        return rc;
    m->p = s->ptr_count ? s->ptr_names[0] : "unknown";
    for (size_t i = 0; i < s->ptr_count; i++)
        if (strcasecmp(s->ptr_names[i], s->cur) == 0) {
            m->p = s->ptr_names[i];
            return 0;
        }
    for (size_t i = 0; i < s->ptr_count; i++)
        if (domain_within(s->ptr_names[i], s->cur)) {
            m->p = s->ptr_names[i];
            return 0;
        }
    return 0;
}

/* Expands a domain-spec (NULL = the current domain) into out[TAMIS_SPF_MAX_EXPAND + 1]. Returns 0,
 * PERMERROR (too long) or TEMPERROR / PERMERROR from %{p}. */
static int expand_domain(tamis__spf_t *s, const char *spec, char *out)
{
    if (!spec) {
        snprintf(out, TAMIS_SPF_MAX_EXPAND + 1, "%s", s->cur);
        return 0;
    }
    tamis__spf_macros_t m;
    int rc = fill_macros(s, spec, &m);
    if (rc != 0)
        return rc;
    return tamis__spf_expand(spec, &m, false, out, TAMIS_SPF_MAX_EXPAND + 1) < 0
               ? (int)TAMIS_AUTH_PERMERROR
               : 0;
}

/* Fetches the SPF record of domain (§4.4, §4.5). slot_rc / slot: a lookup already started, or
 * slot_rc = 1 to start one. Returns NONE (no record: *rec NULL), PASS (found: *rec set),
 * TEMPERROR or PERMERROR (two records). */
static tamis_auth_status_t get_record(tamis__spf_t *s, const char *domain, int slot_rc, size_t slot,
                                      const char **rec)
{
    *rec = NULL;
    if (slot_rc == 1)
        slot_rc = q_start(s, domain, TAMIS_NET_TXT, &slot);
    const tamis_net_answer_t *a;
    lk_t k = q_wait(s, slot_rc, slot, &a);
    if (k == LK_VOID)
        return TAMIS_AUTH_NONE; /* §4.3: malformed names and NXDOMAIN are "none" */
    if (k == LK_ERR)
        return TAMIS_AUTH_TEMPERROR;
    for (size_t i = 0; i < a->count; i++) {
        if (!tamis__spf_is_record(a->strs[i]))
            continue;
        if (*rec)
            return TAMIS_AUTH_PERMERROR; /* §4.5: more than one record */
        *rec = a->strs[i];
    }
    return *rec ? TAMIS_AUTH_PASS : TAMIS_AUTH_NONE;
}

static tamis_auth_status_t check_host(tamis__spf_t *s, const char *domain, unsigned depth, bool top,
                                      int slot_rc, size_t slot);

/* Evaluates one directive: T_MATCH, T_NOMATCH or a final status (TEMPERROR, PERMERROR). */
static int eval_term(tamis__spf_t *s, const tamis__spf_term_t *t, unsigned depth)
{
    char name[TAMIS_SPF_MAX_EXPAND + 1];
    int rc;
    const tamis_net_answer_t *a;
    switch (t->mech) {
    case TAMIS__SPF_ALL:
        return T_MATCH;
    case TAMIS__SPF_IP4:
        return !s->v6 && cidr_match(t->addr, s->ip, t->cidr4) ? T_MATCH : T_NOMATCH;
    case TAMIS__SPF_IP6:
        return s->v6 && cidr_match(t->addr, s->ip, t->cidr6) ? T_MATCH : T_NOMATCH;
    default:
        break;
    }
    /* The DNS-querying mechanisms: counted, then their domain-spec expanded. */
    if ((rc = count_lookup(s)) != 0 || (rc = expand_domain(s, t->spec, name)) != 0)
        return rc;
    switch (t->mech) {
    case TAMIS__SPF_INCLUDE: {
        char *target = tamis_arena_strdup(s->arena, name);
        if (!target)
            return TAMIS_AUTH_TEMPERROR;
        tamis_auth_status_t r = check_host(s, target, depth + 1, false, 1, 0);
        switch (r) {
        case TAMIS_AUTH_PASS:
            return T_MATCH;
        case TAMIS_AUTH_FAIL:
        case TAMIS_AUTH_SOFTFAIL:
        case TAMIS_AUTH_NEUTRAL:
            return T_NOMATCH;
        case TAMIS_AUTH_TEMPERROR:
            return TAMIS_AUTH_TEMPERROR;
        default:
            return TAMIS_AUTH_PERMERROR; /* permerror, and none (§5.2) */
        }
    }
    case TAMIS__SPF_A:
        switch (lookup(s, name, s->v6 ? TAMIS_NET_AAAA : TAMIS_NET_A, &a)) {
        case LK_VOID:
            return void_lookup(s);
        case LK_ERR:
            return TAMIS_AUTH_TEMPERROR;
        default:
            return addr_match(s, a, t->cidr4, t->cidr6) ? T_MATCH : T_NOMATCH;
        }
    case TAMIS__SPF_EXISTS:
        /* Always an A lookup, whatever the client's family (§5.7). */
        switch (lookup(s, name, TAMIS_NET_A, &a)) {
        case LK_VOID:
            return void_lookup(s);
        case LK_ERR:
            return TAMIS_AUTH_TEMPERROR;
        default:
            return T_MATCH;
        }
    case TAMIS__SPF_MX: {
        switch (lookup(s, name, TAMIS_NET_MX, &a)) {
        case LK_VOID:
            return void_lookup(s);
        case LK_ERR:
            return TAMIS_AUTH_TEMPERROR;
        default:
            break;
        }
        if (a->count > TAMIS_SPF_MAX_MX)
            return TAMIS_AUTH_PERMERROR; /* §4.6.4 */
        /* Every address lookup first, then the answers in preference order. */
        int rcs[TAMIS_SPF_MAX_MX];
        size_t slots[TAMIS_SPF_MAX_MX];
        for (size_t i = 0; i < a->count; i++)
            rcs[i] = a->strs[i][0]
                         ? q_start(s, a->strs[i], s->v6 ? TAMIS_NET_AAAA : TAMIS_NET_A, &slots[i])
                         : 1; /* null MX "." (RFC 7505): nothing to look up */
        /* Every answer is read, even after a match (as pyspf does): a failed or void lookup
         * among them counts the same whichever exchange matches. */
        bool match = false;
        for (size_t i = 0; i < a->count; i++) {
            if (rcs[i] == 1)
                continue;
            const tamis_net_answer_t *b;
            switch (q_wait(s, rcs[i], slots[i], &b)) {
            case LK_VOID:
                if ((rc = void_lookup(s)) != T_NOMATCH)
                    return rc;
                break;
            case LK_ERR:
                return TAMIS_AUTH_TEMPERROR;
            default:
                match = match || addr_match(s, b, t->cidr4, t->cidr6);
            }
        }
        return match ? T_MATCH : T_NOMATCH;
    }
    case TAMIS__SPF_PTR:
        if ((rc = validate_ptrs(s, true)) != 0)
            return rc;
        for (size_t i = 0; i < s->ptr_count; i++)
            if (domain_within(s->ptr_names[i], name))
                return T_MATCH;
        return T_NOMATCH;
    default:
        return TAMIS_AUTH_PERMERROR;
    }
}

/* The explanation of a fail (§6.2): one TXT record at the expanded exp= domain, expanded as a
 * macro-string with c, r, t allowed. Failures leave it NULL; it counts towards no limit. */
static void explain(tamis__spf_t *s, const char *spec)
{
    char name[TAMIS_SPF_MAX_EXPAND + 1];
    if (expand_domain(s, spec, name) != 0)
        return;
    const tamis_net_answer_t *a;
    if (lookup(s, name, TAMIS_NET_TXT, &a) != LK_OK || a->count != 1)
        return;
    tamis__spf_macros_t m;
    if (fill_macros(s, a->strs[0], &m) != 0)
        return;
    char *text = tamis_arena_alloc(s->arena, TAMIS_SPF_MAX_EXPAND + 1);
    if (text && tamis__spf_expand(a->strs[0], &m, true, text, TAMIS_SPF_MAX_EXPAND + 1) == 0)
        s->explanation = text;
}

/* check_host(<ip>, domain, <sender>) (§4). top: the result is the check's own (not an include's),
 * so exp= applies. */
static tamis_auth_status_t check_host(tamis__spf_t *s, const char *domain, unsigned depth, bool top,
                                      int slot_rc, size_t slot)
{
    if (depth > TAMIS_SPF_MAX_DEPTH)
        return TAMIS_AUTH_PERMERROR;
    const char *txt;
    tamis_auth_status_t st = get_record(s, domain, slot_rc, slot, &txt);
    if (st != TAMIS_AUTH_PASS)
        return st;
    tamis__spf_record_t rec;
    if (tamis__spf_parse(txt, s->arena, &rec, NULL, 0) < 0)
        return TAMIS_AUTH_PERMERROR;
    const char *saved = s->cur;
    s->cur = domain;
    /* A record that includes its own domain can only loop: refused up front, as pyspf does, even
     * when a term before it would match (%{p} specs are left to the lookup limit: expanding them
     * costs lookups). */
    for (size_t i = 0; i < rec.count; i++) {
        char name[TAMIS_SPF_MAX_EXPAND + 1];
        const char *spec = rec.terms[i].spec;
        if (rec.terms[i].mech != TAMIS__SPF_INCLUDE || strstr(spec, "%{p") || strstr(spec, "%{P"))
            continue;
        if (expand_domain(s, spec, name) == 0 && strcasecmp(name, domain) == 0) {
            s->cur = saved;
            return TAMIS_AUTH_PERMERROR;
        }
    }
    tamis_auth_status_t result = TAMIS_AUTH_NEUTRAL; /* §4.7: no match, no redirect */
    bool matched = false;
    for (size_t i = 0; i < rec.count; i++) {
        int r = eval_term(s, &rec.terms[i], depth);
        if (r == T_NOMATCH)
            continue;
        if (r == T_MATCH) {
            result = rec.terms[i].qualifier;
            matched = true;
        } else {
            result = (tamis_auth_status_t)r;
            s->cur = saved;
            return result;
        }
        break;
    }
    if (!matched && rec.redirect) {
        /* §6.1: the result is the target's; a target without record is a permerror. */
        char name[TAMIS_SPF_MAX_EXPAND + 1];
        int rc;
        if ((rc = count_lookup(s)) != 0 || (rc = expand_domain(s, rec.redirect, name)) != 0) {
            s->cur = saved;
            return (tamis_auth_status_t)rc;
        }
        char *target = tamis_arena_strdup(s->arena, name);
        s->cur = saved;
        if (!target)
            return TAMIS_AUTH_TEMPERROR;
        result = check_host(s, target, depth + 1, top, 1, 0);
        return result == TAMIS_AUTH_NONE ? TAMIS_AUTH_PERMERROR : result;
    }
    if (matched && result == TAMIS_AUTH_FAIL && top && rec.exp)
        explain(s, rec.exp);
    s->cur = saved;
    return result;
}

/* ---- the interface of auth_int.h --------------------------------------------------------------
 */

/* A domain check_host() can look at (§4.3): multi-label, labels 1-63 bytes, at most 253. */
static bool domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n && d[n - 1] == '.')
        n--;
    if (n == 0 || n > 253 || !memchr(d, '.', n))
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (++label > 63) {
            return false;
        }
    }
    return label > 0;
}

tamis__spf_t *tamis__spf_start(const tamis_auth_dns_t *dns, tamis_arena_t *arena, const char *ip,
                               const char *domain, const char *sender, const char *helo)
{
    tamis__spf_t *s = tamis_arena_calloc(arena, 1, sizeof(*s));
    if (!s)
        return NULL;
    s->dns = dns;
    s->arena = arena;
    s->result = TAMIS_AUTH_NONE;
    s->first_rc = TAMIS_EINVAL;
    s->helo = helo && *helo ? helo : "unknown";
    s->domain = domain ? domain : "";
    size_t dl = strlen(s->domain);
    if (dl && s->domain[dl - 1] == '.') /* "example.com." is example.com, for %{d} too */
        s->domain = tamis_arena_strndup(arena, s->domain, dl - 1);
    if (!s->domain)
        return NULL;
    snprintf(s->tstr, sizeof(s->tstr), "%lld", (long long)time(NULL));

    /* The client: IPv4, IPv6, IPv4-mapped IPv6 as IPv4. Without a usable address (or domain, or
     * DNS) there is nothing to check: "none". */
    uint8_t b[16];
    if (ip && inet_pton(AF_INET, ip, b) == 1) {
        memcpy(s->ip, b, 4);
    } else if (ip && inet_pton(AF_INET6, ip, b) == 1) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, 12) == 0) {
            memcpy(s->ip, b + 12, 4);
        } else {
            s->v6 = true;
            memcpy(s->ip, b, 16);
        }
    } else {
        s->done = true;
        return s;
    }
    inet_ntop(s->v6 ? AF_INET6 : AF_INET, s->ip, s->cstr, sizeof(s->cstr));
    if (s->v6) {
        static const char hex[] = "0123456789abcdef";
        char *w = s->istr;
        for (size_t i = 0; i < 16; i++) {
            *w++ = hex[s->ip[i] >> 4], *w++ = '.';
            *w++ = hex[s->ip[i] & 15], *w++ = '.';
        }
        w[-1] = '\0';
    } else {
        memcpy(s->istr, s->cstr,
               sizeof(s->cstr) < sizeof(s->istr) ? sizeof(s->cstr) : sizeof(s->istr));
    }

    /* <sender>: postmaster@domain when empty; l and o from its last '@' (§4.3). */
    if (!sender || !*sender)
        sender = tamis_arena_printf(arena, "postmaster@%s", s->domain);
    if (!sender)
        return NULL;
    s->sender = sender;
    const char *at = strrchr(sender, '@');
    s->local = at && at > sender ? tamis_arena_strndup(arena, sender, (size_t)(at - sender))
                                 : "postmaster";
    s->odomain = at ? at + 1 : s->domain;
    if (!s->local)
        return NULL;
    s->cur = s->domain;
    if (!dns || !domain_ok(s->domain)) {
        s->done = true;
        return s;
    }
    s->first_rc = q_start(s, s->domain, TAMIS_NET_TXT, &s->first_slot);
    return s;
}

tamis_auth_status_t tamis__spf_finish(tamis__spf_t *s)
{
    if (!s)
        return TAMIS_AUTH_NONE;
    if (s->done)
        return s->result;
    s->result = check_host(s, s->domain, 0, true, s->first_rc, s->first_slot);
    s->done = true;
    return s->result;
}

const char *tamis__spf_explanation(const tamis__spf_t *s)
{
    return s && s->done && s->result == TAMIS_AUTH_FAIL ? s->explanation : NULL;
}

void tamis__spf_counts(const tamis__spf_t *s, unsigned *lookups, unsigned *voids)
{
    if (lookups)
        *lookups = s ? s->lookups : 0;
    if (voids)
        *voids = s ? s->voids : 0;
}
