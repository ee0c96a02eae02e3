/*
 * Unit tests of SPF's pure parts (lib/auth/spf.h): the record parser and the macro expander,
 * with RFC 7208 §7.4's examples; and check_host() over a scripted in-memory DNS (tamis_auth_dns_t
 * backed by a table), for the limits and error paths that need exact control over answers. The
 * same cases against a real DNS server and pyspf are in tests/integration/test_spf.py.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

/* The internal header, by path: tests see only include/ otherwise. */
#include "../../lib/auth/spf.h"

/* ---- macros -----------------------------------------------------------------------------------
 */

static const tamis__spf_macros_t rfc_v4 = {
    .s = "strong-bad@email.example.com",
    .l = "strong-bad",
    .o = "email.example.com",
    .d = "email.example.com",
    .i = "192.0.2.3",
    .p = NULL,
    .v = "in-addr",
    .h = "mx.example.org",
    .c = "192.0.2.3",
    .r = "unknown",
    .t = "1700000000",
};

static void expect(const tamis__spf_macros_t *m, const char *spec, bool exp, const char *want)
{
    char out[TAMIS_SPF_MAX_EXPAND + 1];
    int rc = tamis__spf_expand(spec, m, exp, out, sizeof(out));
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("expand(%s) = %d \"%s\", want \"%s\"", spec, rc, out, want);
}

static void test_macro_rfc_examples(void **state)
{
    (void)state;
    /* RFC 7208 §7.4 */
    expect(&rfc_v4, "%{s}", false, "strong-bad@email.example.com");
    expect(&rfc_v4, "%{o}", false, "email.example.com");
    expect(&rfc_v4, "%{d}", false, "email.example.com");
    expect(&rfc_v4, "%{d4}", false, "email.example.com");
    expect(&rfc_v4, "%{d3}", false, "email.example.com");
    expect(&rfc_v4, "%{d2}", false, "example.com");
    expect(&rfc_v4, "%{d1}", false, "com");
    expect(&rfc_v4, "%{dr}", false, "com.example.email");
    expect(&rfc_v4, "%{d2r}", false, "example.email");
    expect(&rfc_v4, "%{l}", false, "strong-bad");
    expect(&rfc_v4, "%{l-}", false, "strong.bad");
    expect(&rfc_v4, "%{lr}", false, "strong-bad");
    expect(&rfc_v4, "%{lr-}", false, "bad.strong");
    expect(&rfc_v4, "%{l1r-}", false, "strong");
    expect(&rfc_v4, "%{ir}.%{v}._spf.%{d2}", false, "3.2.0.192.in-addr._spf.example.com");
    expect(&rfc_v4, "%{lr-}.lp._spf.%{d2}", false, "bad.strong.lp._spf.example.com");
    expect(&rfc_v4, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", false,
           "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
    expect(&rfc_v4, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", false,
           "3.2.0.192.in-addr.strong.lp._spf.example.com");
    expect(&rfc_v4, "%{d2}.trusted-domains.example.net", false,
           "example.com.trusted-domains.example.net");

    tamis__spf_macros_t v6 = rfc_v4;
    v6.i = "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1";
    v6.v = "ip6";
    expect(&v6, "%{ir}.%{v}._spf.%{d2}", false,
           "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
}

static void test_macro_more(void **state)
{
    (void)state;
    tamis__spf_macros_t m = rfc_v4;
    m.s = "jo+hn/x=y@Example.ORG";
    m.l = "jo+hn/x=y";
    /* Every delimiter; several at once; parts joined with '.'. */
    expect(&m, "%{l+}", false, "jo.hn/x=y");
    expect(&m, "%{l/}", false, "jo+hn.x=y");
    expect(&m, "%{l=}", false, "jo+hn/x.y");
    expect(&m, "%{l+/=}", false, "jo.hn.x.y");
    expect(&m, "%{l2+/=}", false, "x.y");
    expect(&m, "%{lr+/=}", false, "y.x.hn.jo");
    m.l = "a,b_c";
    expect(&m, "%{l,_}", false, "a.b.c");
    m.l = "jo+hn";
    /* Upper case: URL-escaped (unreserved kept). */
    expect(&m, "%{L}", false, "jo%2Bhn");
    expect(&m, "%{S}", false, "jo%2Bhn%2Fx%3Dy%40Example.ORG");
    expect(&m, "%{D2R}", false, "example.email");
    /* %% %_ %- */
    expect(&m, "a%%b.example.com", false, "a%b.example.com");
    expect(&m, "%_%-x", true, " %20x");
    /* Big DIGIT: all parts. */
    expect(&m, "%{d99}", false, "email.example.com");
    /* p without a value is "unknown"; h; v. */
    expect(&m, "%{p}.%{h}.%{v}", false, "unknown.mx.example.org.in-addr");
    /* Explanations take c, r, t and spaces; a trailing dot stays. */
    expect(&m, "%{c} is not %{r} at %{t}.", true, "192.0.2.3 is not unknown at 1700000000.");
    /* A domain drops its trailing dot. */
    expect(&m, "%{d}.", false, "email.example.com");

    char out[TAMIS_SPF_MAX_EXPAND + 1];
    /* c, r, t are for explanations only; d0, unknown letters, bad delimiters, unclosed braces,
     * stray '%'. */
    static const char *const bad[] = {"%{c}",    "%{r}.x.com", "%{t}",  "%{d0}", "%{x}",
                                      "%{d!}",   "%{d",        "%",     "%a",    "%{}",
                                      "%{d2r2}", "a b",        "%{l_r}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (tamis__spf_expand(bad[i], &m, false, out, sizeof(out)) != TAMIS_EPARSE)
            fail_msg("expand(%s) should be a syntax error", bad[i]);

    /* §7.3: more than 253 bytes: labels cut from the left. */
    char big[600];
    tamis__spf_macros_t lm = m;
    char longl[300];
    for (size_t i = 0; i < 5; i++)
        memcpy(longl + i * 60, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.", 60);
    longl[299] = '\0';
    lm.l = longl;
    snprintf(big, sizeof(big), "%%{l}.example.com");
    assert_int_equal(tamis__spf_expand(big, &lm, false, out, sizeof(out)), 0);
    assert_true(strlen(out) <= 253);
    assert_true(strlen(out) > 200);
    assert_true(out[0] == 'a' && strcmp(out + strlen(out) - 12, ".example.com") == 0);
    /* A single label longer than 253 cannot be cut: a limit error. */
    char one[400];
    memset(one, 'b', 300);
    one[300] = '\0';
    lm.l = one;
    assert_int_equal(tamis__spf_expand("%{l}", &lm, false, out, sizeof(out)), TAMIS_ELIMIT);
    /* The output buffer bounds the expansion. */
    assert_int_equal(tamis__spf_expand("%{s}", &m, false, out, 5), TAMIS_ELIMIT);
}

/* ---- records ----------------------------------------------------------------------------------
 */

static int parse(tamis_arena_t *a, const char *txt, tamis__spf_record_t *r)
{
    char err[128];
    return tamis__spf_parse(txt, a, r, err, sizeof(err));
}

static void test_record_parse(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(0);
    tamis__spf_record_t r;

    assert_true(tamis__spf_is_record("v=spf1"));
    assert_true(tamis__spf_is_record("V=SPF1 -all"));
    assert_false(tamis__spf_is_record("v=spf10 -all"));
    assert_false(tamis__spf_is_record("v=spf1\t-all"));
    assert_false(tamis__spf_is_record(" v=spf1"));

    assert_int_equal(parse(a, "v=spf1", &r), 0);
    assert_int_equal(r.count, 0);

    assert_int_equal(parse(a,
                           "v=spf1  +a -mx/24 ~ptr:%{d} ?ip4:192.0.2.0/24 ip6:2001:db8::/32 "
                           "a:mail.example.com/24//64 mx//48 include:_spf.example.net "
                           "exists:%{ir}.%{v}.x.example.org Ip4:10.1.2.3 -ALL "
                           "redirect=other.example exp=explain.%{d} foo.bar-x_y=%{l}",
                           &r),
                     0);
    assert_int_equal(r.count, 11);
    assert_int_equal(r.terms[0].mech, TAMIS__SPF_A);
    assert_int_equal(r.terms[0].qualifier, TAMIS_AUTH_PASS);
    assert_null(r.terms[0].spec);
    assert_int_equal(r.terms[0].cidr4, 32);
    assert_int_equal(r.terms[0].cidr6, 128);
    assert_int_equal(r.terms[1].mech, TAMIS__SPF_MX);
    assert_int_equal(r.terms[1].qualifier, TAMIS_AUTH_FAIL);
    assert_int_equal(r.terms[1].cidr4, 24);
    assert_int_equal(r.terms[1].cidr6, 128);
    assert_int_equal(r.terms[2].mech, TAMIS__SPF_PTR);
    assert_int_equal(r.terms[2].qualifier, TAMIS_AUTH_SOFTFAIL);
    assert_string_equal(r.terms[2].spec, "%{d}");
    assert_int_equal(r.terms[3].mech, TAMIS__SPF_IP4);
    assert_int_equal(r.terms[3].qualifier, TAMIS_AUTH_NEUTRAL);
    assert_int_equal(r.terms[3].cidr4, 24);
    assert_memory_equal(r.terms[3].addr, "\xc0\x00\x02\x00", 4);
    assert_int_equal(r.terms[4].mech, TAMIS__SPF_IP6);
    assert_int_equal(r.terms[4].cidr6, 32);
    assert_memory_equal(r.terms[4].addr, "\x20\x01\x0d\xb8", 4);
    assert_int_equal(r.terms[5].mech, TAMIS__SPF_A);
    assert_string_equal(r.terms[5].spec, "mail.example.com");
    assert_int_equal(r.terms[5].cidr4, 24);
    assert_int_equal(r.terms[5].cidr6, 64);
    assert_int_equal(r.terms[6].mech, TAMIS__SPF_MX);
    assert_int_equal(r.terms[6].cidr4, 32);
    assert_int_equal(r.terms[6].cidr6, 48);
    assert_int_equal(r.terms[7].mech, TAMIS__SPF_INCLUDE);
    assert_string_equal(r.terms[7].spec, "_spf.example.net");
    assert_int_equal(r.terms[8].mech, TAMIS__SPF_EXISTS);
    assert_int_equal(r.terms[9].mech, TAMIS__SPF_IP4);
    assert_int_equal(r.terms[9].cidr4, 32);
    assert_int_equal(r.terms[10].mech, TAMIS__SPF_ALL);
    assert_int_equal(r.terms[10].qualifier, TAMIS_AUTH_FAIL);
    assert_string_equal(r.redirect, "other.example");
    assert_string_equal(r.exp, "explain.%{d}");

    /* Domain-specs ending in a macro or with a trailing dot; a '/' inside a domain-spec. */
    assert_int_equal(parse(a, "v=spf1 a:%{d} mx:example.com. exists:%{l}.x/y.example.com", &r), 0);
    assert_int_equal(r.count, 3);

    /* Every one of these is a permerror. */
    static const char *const bad[] = {
        "v=spf1 moo",
        "v=spf1 =a",
        "v=spf1 -all:foo",
        "v=spf1 all/24",
        "v=spf1 include",
        "v=spf1 include:",
        "v=spf1 exists",
        "v=spf1 ip4",
        "v=spf1 ip4:192.0.2",
        "v=spf1 ip4:192.0.2.300",
        "v=spf1 ip4:192.0.02.3",
        "v=spf1 ip4:192.0.2.3/33",
        "v=spf1 ip4:192.0.2.3/024",
        "v=spf1 ip4:192.0.2.3//64",
        "v=spf1 ip6:2001:db8::/129",
        "v=spf1 ip6:2001:db8:zz::",
        "v=spf1 ip6:192.0.2.3",
        "v=spf1 a/33",
        "v=spf1 a//129",
        "v=spf1 a:example",
        "v=spf1 a:1.2.3.4",
        "v=spf1 a:example.com:8080",
        "v=spf1 a:example.123",
        "v=spf1 a:example.com-",
        "v=spf1 mx:%{d}.",
        "v=spf1 a:%{c}.example.com",
        "v=spf1 exists:%{d0}.example.com",
        "v=spf1 exists:%{q}.example.com",
        "v=spf1 a:exa%mple.com",
        "v=spf1 ptr/24",
        "v=spf1 redirect=a.example redirect=b.example",
        "v=spf1 exp=a.example exp=b.example",
        "v=spf1 redirect=",
        "v=spf1 redirect=nodot",
        "v=spf1 foo=%{",
        "v=spf1 -all,",
        "v=spf1 a:example.com\x01",
        "v=spf1 \xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        int rc = parse(a, bad[i], &r);
        if (rc != TAMIS_EPARSE)
            fail_msg("parse(%s) = %d, want a syntax error", bad[i], rc);
    }
    /* Unknown modifiers are ignored (c, r, t are for explanations only, there too: a syntax
     * error); toplabels with digits and dashes. */
    assert_int_equal(parse(a, "v=spf1 moo=bar x-y=%{l} a:x.example-1 a:x.1a a:x.c0m -all", &r), 0);
    assert_int_equal(r.count, 4);
    assert_int_equal(parse(a, "v=spf1 x-y=%{c} -all", &r), TAMIS_EPARSE);

    /* Bounds: term count and record length. */
    char big[TAMIS_SPF_MAX_RECORD + 64];
    strcpy(big, "v=spf1");
    for (size_t i = 0; i <= TAMIS_SPF_MAX_TERMS; i++)
        strcat(big, " a");
    assert_int_equal(parse(a, big, &r), TAMIS_ELIMIT);
    memset(big, 0, sizeof(big));
    strcpy(big, "v=spf1 ");
    memset(big + 7, ' ', TAMIS_SPF_MAX_RECORD);
    assert_int_equal(parse(a, big, &r), TAMIS_ELIMIT);
    assert_int_equal(parse(a, "spf1 -all", &r), TAMIS_EPARSE);
    tamis_arena_free(a);
}

/* ---- check_host() over a table ----------------------------------------------------------------
 */

typedef struct {
    const char *name;
    tamis_net_type_t type;
    tamis_net_status_t status;
    const char *data[12]; /* TXT/MX/PTR strings, or A / AAAA addresses as text */
} fake_rr_t;

typedef struct {
    const fake_rr_t *table;
    size_t n;
    const tamis_net_answer_t *answers[256];
    tamis_net_answer_t store[256];
    const char *strs[256][12];
    uint32_t a4[256][12];
    uint8_t a6[256][12][16];
    size_t count, waits, started;
    size_t cap; /* start() fails with TAMIS_ELIMIT past this many lookups (0 = no cap) */
} fake_dns_t;

static int fake_start(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    fake_dns_t *f = ctx;
    if (f->cap && f->count >= f->cap)
        return TAMIS_ELIMIT;
    if (f->count >= 256)
        return TAMIS_ELIMIT;
    size_t i = f->count++;
    f->started++;
    tamis_net_answer_t *a = &f->store[i];
    memset(a, 0, sizeof(*a));
    a->type = type;
    a->status = TAMIS_NET_NXDOMAIN;
    for (size_t k = 0; k < f->n; k++) {
        const fake_rr_t *r = &f->table[k];
        if (strcasecmp(r->name, name) != 0)
            continue;
        if (r->status != TAMIS_NET_OK) {
            a->status = r->status;
            break;
        }
        a->status = TAMIS_NET_OK; /* the name exists */
        if (r->type != type)
            continue;
        size_t c = 0;
        for (; c < 12 && r->data[c]; c++) {
            f->strs[i][c] = r->data[c];
            if (type == TAMIS_NET_A) {
                uint8_t b[4];
                inet_pton(AF_INET, r->data[c], b);
                f->a4[i][c] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | b[2] << 8 | b[3];
            } else if (type == TAMIS_NET_AAAA) {
                inet_pton(AF_INET6, r->data[c], f->a6[i][c]);
            }
        }
        a->count = c;
        a->strs = (type == TAMIS_NET_A || type == TAMIS_NET_AAAA) ? NULL : f->strs[i];
        a->addrs = type == TAMIS_NET_A ? f->a4[i] : NULL;
        a->addrs6 = type == TAMIS_NET_AAAA ? (const uint8_t(*)[16])f->a6[i] : NULL;
        break;
    }
    f->answers[i] = a;
    *slot = i;
    return 0;
}

static const tamis_net_answer_t *fake_wait(void *ctx, size_t slot)
{
    fake_dns_t *f = ctx;
    f->waits++;
    const tamis_net_answer_t *a = f->answers[slot];
    return a->status == TAMIS_NET_TIMEOUT ? NULL : a;
}

static tamis_auth_status_t run(const fake_rr_t *table, size_t n, const char *ip, const char *sender,
                               fake_dns_t *f, const char **exp)
{
    static fake_dns_t local;
    if (!f)
        f = &local;
    memset(f, 0, sizeof(*f));
    f->table = table;
    f->n = n;
    tamis_auth_dns_t dns = {fake_start, fake_wait, f};
    tamis_arena_t *a = tamis_arena_new(0);
    const char *at = strrchr(sender, '@');
    tamis__spf_t *s = tamis__spf_start(&dns, a, ip, at ? at + 1 : sender, sender, "helo.example");
    assert_non_null(s);
    tamis_auth_status_t r = tamis__spf_finish(s);
    assert_int_equal(tamis__spf_finish(s), r); /* idempotent */
    static char expbuf[512];
    if (exp) {
        const char *e = tamis__spf_explanation(s);
        snprintf(expbuf, sizeof(expbuf), "%s", e ? e : "");
        *exp = expbuf;
    }
    tamis_arena_free(a);
    return r;
}

#define RUN(t, ip, sender) run(t, sizeof(t) / sizeof(*t), ip, sender, NULL, NULL)

static void test_check_basic(void **state)
{
    (void)state;
    static const fake_rr_t t[] = {
        {"ex.com",
         TAMIS_NET_TXT,
         TAMIS_NET_OK,
         {"not spf", "v=spf1 ip4:192.0.2.0/24 a:mail.ex.com mx -ip6:2001:db8::/32 ~all"}},
        {"mail.ex.com", TAMIS_NET_A, TAMIS_NET_OK, {"198.51.100.1"}},
        {"mail.ex.com", TAMIS_NET_AAAA, TAMIS_NET_OK, {"2001:db9::1"}},
        {"ex.com", TAMIS_NET_MX, TAMIS_NET_OK, {"mx1.ex.com", "mx2.ex.com", ""}},
        {"mx1.ex.com", TAMIS_NET_A, TAMIS_NET_OK, {"203.0.113.5"}},
        {"mx2.ex.com", TAMIS_NET_A, TAMIS_NET_OK, {"203.0.113.6", "203.0.113.7"}},
        {"two.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 -all", "v=spf1 +all"}},
        {"none.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"google-site-verification=x"}},
        {"sf.com", TAMIS_NET_TXT, TAMIS_NET_SERVFAIL, {NULL}},
        {"to.com", TAMIS_NET_TXT, TAMIS_NET_TIMEOUT, {NULL}},
        {"bad.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 a:x.com ip4:1.2.3.4.5 -all"}},
    };
    assert_int_equal(RUN(t, "192.0.2.77", "u@ex.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "198.51.100.1", "u@ex.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "203.0.113.7", "u@ex.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "::ffff:203.0.113.7", "u@ex.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "203.0.113.8", "u@ex.com"), TAMIS_AUTH_SOFTFAIL);
    assert_int_equal(RUN(t, "2001:db8::5", "u@ex.com"), TAMIS_AUTH_FAIL);
    assert_int_equal(RUN(t, "2001:db9::1", "u@ex.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "2001:dba::1", "u@ex.com"), TAMIS_AUTH_SOFTFAIL);
    assert_int_equal(RUN(t, "192.0.2.1", "u@two.com"), TAMIS_AUTH_PERMERROR);
    assert_int_equal(RUN(t, "192.0.2.1", "u@none.com"), TAMIS_AUTH_NONE);
    assert_int_equal(RUN(t, "192.0.2.1", "u@nx.com"), TAMIS_AUTH_NONE);
    assert_int_equal(RUN(t, "192.0.2.1", "u@sf.com"), TAMIS_AUTH_TEMPERROR);
    assert_int_equal(RUN(t, "192.0.2.1", "u@to.com"), TAMIS_AUTH_TEMPERROR);
    assert_int_equal(RUN(t, "192.0.2.1", "u@bad.com"), TAMIS_AUTH_PERMERROR);
    /* Not a usable domain or address: none, without a lookup. */
    fake_dns_t f;
    assert_int_equal(run(t, 0, "192.0.2.1", "u@localhost", &f, NULL), TAMIS_AUTH_NONE);
    assert_int_equal(f.started, 0);
    assert_int_equal(run(t, 0, "not-an-ip", "u@ex.com", &f, NULL), TAMIS_AUTH_NONE);
    assert_int_equal(f.started, 0);
    assert_int_equal(run(t, 0, "192.0.2.1", "u@a..b", &f, NULL), TAMIS_AUTH_NONE);
}

static void test_check_limits(void **state)
{
    (void)state;
    /* 10 DNS-querying terms are fine, the 11th is a permerror; includes share the count. */
    static const fake_rr_t ten[] = {
        {"l.com",
         TAMIS_NET_TXT,
         TAMIS_NET_OK,
         {"v=spf1 a:h.l.com a:h.l.com a:h.l.com a:h.l.com include:i.l.com a:h.l.com a:h.l.com "
          "a:h.l.com ip4:192.0.2.9 a:h.l.com -all"}},
        {"i.l.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 a:h.l.com -all"}},
        {"h.l.com", TAMIS_NET_A, TAMIS_NET_OK, {"10.0.0.1"}},
        {"m.com",
         TAMIS_NET_TXT,
         TAMIS_NET_OK,
         {"v=spf1 a:h.l.com a:h.l.com a:h.l.com a:h.l.com include:i.l.com a:h.l.com a:h.l.com "
          "a:h.l.com a:h.l.com a:h.l.com ip4:192.0.2.9 -all"}},
    };
    fake_dns_t f;
    assert_int_equal(run(ten, 4, "192.0.2.9", "x@l.com", &f, NULL), TAMIS_AUTH_PASS);
    assert_int_equal(run(ten, 4, "192.0.2.8", "x@l.com", &f, NULL), TAMIS_AUTH_FAIL);
    assert_int_equal(run(ten, 4, "192.0.2.9", "x@m.com", &f, NULL), TAMIS_AUTH_PERMERROR);
    assert_int_equal(run(ten, 4, "10.0.0.1", "x@m.com", &f, NULL), TAMIS_AUTH_PASS);

    /* Void lookups: two are fine, the third is a permerror. */
    static const fake_rr_t v[] = {
        {"v2.com",
         TAMIS_NET_TXT,
         TAMIS_NET_OK,
         {"v=spf1 a:n1.v2.com mx:n2.v2.com ip4:192.0.2.1 -all"}},
        {"v3.com",
         TAMIS_NET_TXT,
         TAMIS_NET_OK,
         {"v=spf1 a:n1.v2.com exists:n2.v2.com a:n3.v2.com ip4:192.0.2.1 -all"}},
        {"n1.v2.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"exists, but no A"}},
    };
    assert_int_equal(RUN(v, "192.0.2.1", "x@v2.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(v, "192.0.2.1", "x@v3.com"), TAMIS_AUTH_PERMERROR);

    /* An include loop ends at the lookup limit. */
    static const fake_rr_t loop[] = {
        {"a.loop", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 include:b.loop -all"}},
        {"b.loop", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 include:a.loop -all"}},
        {"r.loop", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 redirect=r.loop"}},
        {"self.loop", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 +all include:%{d}"}},
    };
    assert_int_equal(run(loop, 4, "192.0.2.1", "x@a.loop", &f, NULL), TAMIS_AUTH_PERMERROR);
    assert_true(f.started <= 12);
    assert_int_equal(run(loop, 4, "192.0.2.1", "x@r.loop", &f, NULL), TAMIS_AUTH_PERMERROR);
    assert_true(f.started <= 12);
    /* Including itself is refused before any term is evaluated (one lookup: the record). */
    assert_int_equal(run(loop, 4, "192.0.2.1", "x@self.loop", &f, NULL), TAMIS_AUTH_PERMERROR);
    assert_int_equal(f.started, 1);

    /* More than 10 MX names: permerror; all address lookups start before the first wait. */
    static const fake_rr_t mx[] = {
        {"mx.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 mx -all"}},
        {"mx.com",
         TAMIS_NET_MX,
         TAMIS_NET_OK,
         {"m1.mx.com", "m2.mx.com", "m3.mx.com", "m4.mx.com", "m5.mx.com", "m6.mx.com", "m7.mx.com",
          "m8.mx.com", "m9.mx.com", "m10.mx.com", "m11.mx.com"}},
        {"ok.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 mx:mx3.com -all"}},
        {"mx3.com", TAMIS_NET_MX, TAMIS_NET_OK, {"a.mx3.com", "b.mx3.com", "c.mx3.com"}},
        {"a.mx3.com", TAMIS_NET_A, TAMIS_NET_OK, {"10.0.0.1"}},
        {"b.mx3.com", TAMIS_NET_A, TAMIS_NET_OK, {"10.0.0.2"}},
        {"c.mx3.com", TAMIS_NET_A, TAMIS_NET_OK, {"10.0.0.3"}},
    };
    assert_int_equal(RUN(mx, "192.0.2.1", "x@mx.com"), TAMIS_AUTH_PERMERROR);
    assert_int_equal(run(mx, 7, "10.0.0.2", "x@ok.com", &f, NULL), TAMIS_AUTH_PASS);
    assert_int_equal(f.started, 5); /* TXT, MX, then all three A lookups at once */

    /* The per-message query cap (start fails) is a temperror. */
    f.cap = 0;
    memset(&f, 0, sizeof(f));
    f.table = mx;
    f.n = 7;
    f.cap = 2;
    tamis_auth_dns_t dns = {fake_start, fake_wait, &f};
    tamis_arena_t *a = tamis_arena_new(0);
    tamis__spf_t *s = tamis__spf_start(&dns, a, "10.0.0.2", "ok.com", "x@ok.com", NULL);
    assert_int_equal(tamis__spf_finish(s), TAMIS_AUTH_TEMPERROR);
    tamis_arena_free(a);
}

static void test_check_include_redirect_exp(void **state)
{
    (void)state;
    static const fake_rr_t t[] = {
        {"top.com",
         TAMIS_NET_TXT,
         TAMIS_NET_OK,
         {"v=spf1 include:p.com include:f.com -include:n.com exp=why.top.com"}},
        {"p.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 ip4:192.0.2.1 -all"}},
        {"f.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 ip4:192.0.2.2 ~all"}},
        {"n.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 ip4:192.0.2.3 ?all"}},
        {"why.top.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"%{i} may not send for %{d} (%{l})"}},
        {"inc-none.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 include:nothing.com +all"}},
        {"inc-tmp.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 include:sf.com +all"}},
        {"sf.com", TAMIS_NET_TXT, TAMIS_NET_SERVFAIL, {NULL}},
        {"red.com",
         TAMIS_NET_TXT,
         TAMIS_NET_OK,
         {"v=spf1 ip4:192.0.2.9 redirect=top.com exp=x.com"}},
        {"red-none.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 redirect=nothing.com"}},
        {"red-mac.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 redirect=_spf.%{d}"}},
        {"_spf.red-mac.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 ip4:192.0.2.3 -all"}},
        {"mid.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 exists:%{d}.ok.test -all"}},
        {"mid.com.ok.test", TAMIS_NET_A, TAMIS_NET_OK, {"127.0.0.2"}},
    };
    const char *exp;
    assert_int_equal(RUN(t, "192.0.2.1", "jo@top.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "192.0.2.2", "jo@top.com"), TAMIS_AUTH_PASS);
    /* fail, softfail and neutral inside an include are no match: the default neutral. */
    assert_int_equal(RUN(t, "192.0.2.5", "jo@top.com"), TAMIS_AUTH_NEUTRAL);
    assert_int_equal(run(t, sizeof(t) / sizeof(*t), "192.0.2.3", "jo@top.com", NULL, &exp),
                     TAMIS_AUTH_FAIL);
    assert_string_equal(exp, "192.0.2.3 may not send for top.com (jo)");
    assert_int_equal(RUN(t, "192.0.2.1", "jo@inc-none.com"), TAMIS_AUTH_PERMERROR);
    assert_int_equal(RUN(t, "192.0.2.1", "jo@inc-tmp.com"), TAMIS_AUTH_TEMPERROR);
    /* redirect: the target's result and explanation (not the redirecting record's). */
    assert_int_equal(RUN(t, "192.0.2.9", "jo@red.com"), TAMIS_AUTH_PASS);
    assert_int_equal(run(t, sizeof(t) / sizeof(*t), "192.0.2.3", "jo@red.com", NULL, &exp),
                     TAMIS_AUTH_FAIL);
    assert_string_equal(exp, "192.0.2.3 may not send for top.com (jo)");
    assert_int_equal(RUN(t, "192.0.2.3", "jo@red-none.com"), TAMIS_AUTH_PERMERROR);
    assert_int_equal(RUN(t, "192.0.2.3", "jo@red-mac.com"), TAMIS_AUTH_PASS);
    /* A trailing dot on the domain is dropped, for %{d} too. */
    assert_int_equal(RUN(t, "192.0.2.3", "jo@mid.com."), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "192.0.2.4", "jo@red-mac.com"), TAMIS_AUTH_FAIL);
}

static void test_check_ptr(void **state)
{
    (void)state;
    static const fake_rr_t t[] = {
        {"p.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 ptr -all"}},
        {"q.com", TAMIS_NET_TXT, TAMIS_NET_OK, {"v=spf1 exists:%{p}.ok.q.com -all"}},
        {"3.2.0.192.in-addr.arpa",
         TAMIS_NET_PTR,
         TAMIS_NET_OK,
         {"liar.evil.org", "mail.p.com", "mail.q.com"}},
        {"mail.p.com", TAMIS_NET_A, TAMIS_NET_OK, {"192.0.2.3"}},
        {"mail.q.com", TAMIS_NET_A, TAMIS_NET_OK, {"192.0.2.3"}},
        {"liar.evil.org", TAMIS_NET_A, TAMIS_NET_OK, {"10.9.9.9"}},
        {"mail.q.com.ok.q.com", TAMIS_NET_A, TAMIS_NET_OK, {"127.0.0.2"}},
        {"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
         TAMIS_NET_PTR,
         TAMIS_NET_OK,
         {"v6.p.com"}},
        {"v6.p.com", TAMIS_NET_AAAA, TAMIS_NET_OK, {"2001:db8::1"}},
        {"9.2.0.192.in-addr.arpa", TAMIS_NET_PTR, TAMIS_NET_SERVFAIL, {NULL}},
        {"8.2.0.192.in-addr.arpa", TAMIS_NET_PTR, TAMIS_NET_OK, {"mail.p.com", "slow.p.com"}},
        {"slow.p.com", TAMIS_NET_A, TAMIS_NET_TIMEOUT, {NULL}},
    };
    assert_int_equal(RUN(t, "192.0.2.3", "x@p.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "192.0.2.4", "x@p.com"), TAMIS_AUTH_FAIL);
    assert_int_equal(RUN(t, "2001:db8::1", "x@p.com"), TAMIS_AUTH_PASS);
    assert_int_equal(RUN(t, "192.0.2.3", "x@q.com"), TAMIS_AUTH_PASS); /* %{p} = mail.q.com */
    /* A failed PTR or address lookup is a temperror, never the -all's fail. */
    assert_int_equal(RUN(t, "192.0.2.9", "x@p.com"), TAMIS_AUTH_TEMPERROR);
    assert_int_equal(RUN(t, "192.0.2.8", "x@p.com"), TAMIS_AUTH_TEMPERROR);
    assert_int_equal(RUN(t, "192.0.2.9", "x@q.com"), TAMIS_AUTH_TEMPERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_macro_rfc_examples),
        cmocka_unit_test(test_macro_more),
        cmocka_unit_test(test_record_parse),
        cmocka_unit_test(test_check_basic),
        cmocka_unit_test(test_check_limits),
        cmocka_unit_test(test_check_include_redirect_exp),
        cmocka_unit_test(test_check_ptr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
