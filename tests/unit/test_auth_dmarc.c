/*
 * Unit tests of lib/auth's DMARC: the record parser, the author and organisational domains, and
 * the policy evaluation (alignment, sp=, pct=, the organisational-domain fallback, several
 * records) over dkimpy-signed fixtures (tests/unit/auth/dmarc_*.eml), the records served by a
 * table instead of DNS. SPF is skipped: DKIM alone decides alignment here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/auth/dkim_int.h"
#include "tamis/auth.h"

static int dp(const char *s, tamis__dmarc_rec_t *r)
{
    return tamis__dmarc_parse(s, strlen(s), r);
}

static void test_record_parse(void **state)
{
    (void)state;
    tamis__dmarc_rec_t r;
    assert_int_equal(dp("v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=20; "
                        "rua=mailto:agg@example.org,mailto:x@y.z!10m; ruf=mailto:f@example.org; "
                        "fo=1; future=ignored",
                        &r),
                     0);
    assert_true(r.valid_p && r.has_sp && r.has_pct && r.has_rua);
    assert_int_equal(r.p, TAMIS_DMARC_POLICY_REJECT);
    assert_int_equal(r.sp, TAMIS_DMARC_POLICY_QUARANTINE);
    assert_true(r.adkim_strict && !r.aspf_strict);
    assert_int_equal(r.pct, 20);
    assert_int_equal(dp("v=DMARC1;p=none", &r), 0);
    assert_true(r.valid_p && !r.has_sp && !r.has_pct && r.pct == 100 && !r.adkim_strict);
    assert_int_equal(dp("v=dmarc1; p=Quarantine;", &r), 0);
    assert_int_equal(r.p, TAMIS_DMARC_POLICY_QUARANTINE);
    /* p= missing or bad: parsed, the caller decides (§6.6.3) */
    assert_int_equal(dp("v=DMARC1; p=bogus; rua=mailto:a@b.c", &r), 0);
    assert_true(!r.valid_p && r.has_rua);
    assert_int_equal(dp("v=DMARC1; rua=ftp://x", &r), 0);
    assert_true(!r.valid_p && !r.has_rua);
    /* errors */
    assert_int_equal(dp("p=reject; v=DMARC1", &r), TAMIS_EPARSE);
    assert_int_equal(dp("v=DMARC2; p=reject", &r), TAMIS_EPARSE);
    assert_int_equal(dp("v=DMARC1; p=reject; pct=101", &r), TAMIS_EPARSE);
    assert_int_equal(dp("v=DMARC1; p=reject; pct=-1", &r), TAMIS_EPARSE);
    assert_int_equal(dp("v=DMARC1; p=reject; adkim=x", &r), TAMIS_EPARSE);
    assert_int_equal(dp("v=DMARC1; p=reject; p=none", &r), TAMIS_EPARSE);
    assert_int_equal(dp("v=DMARC1 p=reject", &r), TAMIS_EPARSE);
    assert_false(tamis__dmarc_is_record("v=spf1 -all", 11));
    assert_false(tamis__dmarc_is_record("v=DMARC10; p=none", 17));
}

static void test_domains(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(0);
    assert_string_equal(tamis__author_domain("Alice <alice@Example.ORG>", a), "example.org");
    assert_string_equal(tamis__author_domain("bob@x.example.com (Bob <b@c.d>)", a),
                        "x.example.com");
    assert_string_equal(tamis__author_domain("\"a <b@c>\" <real@d.example>", a), "d.example");
    assert_string_equal(tamis__author_domain("me@example.net.", a), "example.net");
    assert_null(tamis__author_domain("undisclosed-recipients:;", a));
    assert_null(tamis__author_domain("<@>", a));
    assert_string_equal(tamis__org_domain("a.b.example.co.uk", a), "example.co.uk");
    assert_string_equal(tamis__org_domain("news.example.org", a), "example.org");
    assert_string_equal(tamis__org_domain("example.org", a), "example.org");
    assert_string_equal(tamis__org_domain("localhost", a), "localhost");
    tamis_arena_free(a);
}

/* ---- the verdict, SPF alignment included ------------------------------------------------- */

static void test_decide(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(0);
    tamis__dmarc_rec_t r;
    tamis_dmarc_policy_t pol;
    const char *none[1] = {NULL};
    const char *dk[] = {"bounce.example.org"};
#define DECIDE(rec, author, at_org, doms, nd, spf, roll)                                           \
    (assert_int_equal(dp(rec, &r), 0),                                                             \
     tamis__dmarc_decide(&r, author, at_org, doms, nd, spf, roll, a, &pol))
    /* SPF alignment: relaxed by default, exact under aspf=s */
    assert_int_equal(
        DECIDE("v=DMARC1; p=reject", "example.org", false, none, 0, "mail.example.org", 0),
        TAMIS_AUTH_PASS);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_REJECT);
    assert_int_equal(
        DECIDE("v=DMARC1; p=reject; aspf=s", "example.org", false, none, 0, "mail.example.org", 0),
        TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_REJECT);
    assert_int_equal(
        DECIDE("v=DMARC1; p=reject; aspf=s", "example.org", false, none, 0, "Example.ORG", 0),
        TAMIS_AUTH_PASS);
    assert_int_equal(
        DECIDE("v=DMARC1; p=quarantine", "example.org", false, none, 0, "example.net", 0),
        TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_QUARANTINE);
    /* public suffixes: co.uk domains align only within their registrable domain */
    assert_int_equal(
        DECIDE("v=DMARC1; p=reject", "shop.example.co.uk", false, none, 0, "mail.example.co.uk", 0),
        TAMIS_AUTH_PASS);
    assert_int_equal(
        DECIDE("v=DMARC1; p=reject", "example.co.uk", false, none, 0, "other.co.uk", 0),
        TAMIS_AUTH_FAIL);
    /* DKIM under adkim=s, SPF relaxed still passes */
    assert_int_equal(DECIDE("v=DMARC1; p=reject; adkim=s", "example.org", false, dk, 1, NULL, 0),
                     TAMIS_AUTH_FAIL);
    assert_int_equal(
        DECIDE("v=DMARC1; p=reject; adkim=s", "example.org", false, dk, 1, "bounce.example.org", 0),
        TAMIS_AUTH_PASS);
    /* sp= only for a subdomain under the organisational domain's record */
    assert_int_equal(DECIDE("v=DMARC1; p=reject; sp=none", "a.example.org", true, none, 0, NULL, 0),
                     TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_NONE);
    assert_int_equal(
        DECIDE("v=DMARC1; p=reject; sp=none", "a.example.org", false, none, 0, NULL, 0),
        TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_REJECT);
    /* pct=: the roll decides */
    assert_int_equal(DECIDE("v=DMARC1; p=reject; pct=30", "example.org", false, none, 0, NULL, 29),
                     TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_REJECT);
    assert_int_equal(DECIDE("v=DMARC1; p=reject; pct=30", "example.org", false, none, 0, NULL, 30),
                     TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_QUARANTINE);
    assert_int_equal(
        DECIDE("v=DMARC1; p=quarantine; pct=0", "example.org", false, none, 0, NULL, 0),
        TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_NONE);
    assert_int_equal(DECIDE("v=DMARC1; p=reject; pct=100", "example.org", false, none, 0, NULL, 99),
                     TAMIS_AUTH_FAIL);
    assert_int_equal(pol, TAMIS_DMARC_POLICY_REJECT);
#undef DECIDE
    tamis_arena_free(a);
}

/* ---- evaluation over fixtures ------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *txt[2];
    size_t n;
} rr_t;

typedef struct {
    rr_t rr[6];
    size_t nrr;
    const char *asked[8];
    size_t nasked;
    tamis_net_answer_t ans[8];
    bool servfail_dmarc;
} dns_t;

static int fstart(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    dns_t *d = ctx;
    assert_int_equal(type, TAMIS_NET_TXT);
    assert_true(d->nasked < 8);
    d->asked[d->nasked] = name;
    *slot = d->nasked++;
    return 0;
}

static const tamis_net_answer_t *fwait(void *ctx, size_t slot)
{
    dns_t *d = ctx;
    tamis_net_answer_t *a = &d->ans[slot];
    memset(a, 0, sizeof(*a));
    a->type = TAMIS_NET_TXT;
    a->status = TAMIS_NET_NXDOMAIN;
    if (d->servfail_dmarc && strncmp(d->asked[slot], "_dmarc.", 7) == 0) {
        a->status = TAMIS_NET_SERVFAIL;
        return a;
    }
    for (size_t i = 0; i < d->nrr; i++)
        if (strcmp(d->rr[i].name, d->asked[slot]) == 0) {
            a->status = TAMIS_NET_OK;
            a->count = d->rr[i].n;
            a->strs = d->rr[i].txt;
        }
    return a;
}

static char key_txt[512];

static void add(dns_t *d, const char *name, const char *t1, const char *t2)
{
    rr_t *r = &d->rr[d->nrr++];
    r->name = name;
    r->txt[0] = t1;
    r->txt[1] = t2;
    r->n = t2 ? 2 : 1;
}

typedef struct {
    const char *file;
    const char *rec_name, *rec, *rec2;
    bool servfail;
    const char *expect; /* the one check_dmarc_* that hits, or NULL for none */
    tamis_auth_status_t status;
    bool dkim_pass;
} dcase_t;

static void run_case(const dcase_t *c)
{
    char path[512], err[128];
    char *data = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/tests/unit/auth/%s", TAMIS_SOURCE_DIR, c->file);
    assert_int_equal(tamis_read_file(path, 1 << 20, &data, &len, err, sizeof(err)), 0);
    dns_t d;
    memset(&d, 0, sizeof(d));
    add(&d, "dm._domainkey.mail.example.org", key_txt, NULL);
    add(&d, "dm._domainkey.other.net", key_txt, NULL);
    add(&d, "dm._domainkey.example.com", key_txt, NULL);
    if (c->rec_name)
        add(&d, c->rec_name, c->rec, c->rec2);
    d.servfail_dmarc = c->servfail;
    tamis_arena_t *arena = tamis_arena_new(0);
    tamis_msg_t *m;
    assert_int_equal(tamis_msg_parse(data, len, NULL, &m, err, sizeof(err)), 0);
    tamis_auth_input_t in = {0};
    in.skip_spf = true;
    in.client_ip = "192.0.2.7";
    in.now = 1800000000.0;
    tamis_auth_dns_t dns = {fstart, fwait, &d};
    tamis_auth_t *a;
    assert_int_equal(tamis_auth_start(m, &in, &dns, arena, &a, err, sizeof(err)), 0);
    const tamis_auth_result_t *r = tamis_auth_finish(a);
    assert_int_equal(r->sig_count, 1);
    if ((r->sigs[0].status == TAMIS_AUTH_PASS) != c->dkim_pass)
        fail_msg("%s: dkim %s (%s)", c->file, tamis_auth_status_name(r->sigs[0].status),
                 r->sigs[0].reason ? r->sigs[0].reason : "");
    if (r->dmarc != c->status)
        fail_msg("%s / %s: dmarc %s, expected %s", c->file, c->rec ? c->rec : "-",
                 tamis_auth_status_name(r->dmarc), tamis_auth_status_name(c->status));
    static const char *const fns[] = {"check_dmarc_pass", "check_dmarc_reject",
                                      "check_dmarc_quarantine", "check_dmarc_none",
                                      "check_dmarc_missing"};
    for (size_t i = 0; i < 5; i++) {
        bool known;
        bool hit = tamis_auth_eval(r, fns[i], NULL, 0, &known);
        assert_true(known);
        bool want = c->expect && strcmp(c->expect, fns[i]) == 0;
        if (hit != want)
            fail_msg("%s / %s: %s %s", c->file, c->rec ? c->rec : "-", fns[i],
                     hit ? "hit" : "missed");
    }
    tamis_msg_free(m);
    tamis_arena_free(arena);
    free(data);
}

static void test_policy(void **state)
{
    (void)state;
    char path[512], err[128];
    char *k = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/tests/unit/auth/dmarc.key", TAMIS_SOURCE_DIR);
    assert_int_equal(tamis_read_file(path, 4096, &k, &len, err, sizeof(err)), 0);
    while (len && k[len - 1] == '\n')
        len--;
    snprintf(key_txt, sizeof(key_txt), "%.*s", (int)len, k);
    free(k);

    const tamis_auth_status_t P = TAMIS_AUTH_PASS, F = TAMIS_AUTH_FAIL, N = TAMIS_AUTH_NONE;
    static const char *const O = "_dmarc.example.org";
    const dcase_t cases[] = {
        /* d=mail.example.org for From example.org: relaxed alignment passes, strict fails */
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=reject", NULL, false, "check_dmarc_pass", P, true},
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=reject; adkim=s", NULL, false, "check_dmarc_reject",
         F, true},
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=quarantine; adkim=s", NULL, false,
         "check_dmarc_quarantine", F, true},
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=none; adkim=s", NULL, false, "check_dmarc_none", F,
         true},
        /* pct=0: every failure is sampled out, one step milder; pct=100: the policy */
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=reject; adkim=s; pct=0", NULL, false,
         "check_dmarc_quarantine", F, true},
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=quarantine; adkim=s; pct=0", NULL, false,
         "check_dmarc_none", F, true},
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=reject; adkim=s; pct=100", NULL, false,
         "check_dmarc_reject", F, true},
        /* From news.example.org, signed by other.net: the record of the organisational domain
         * applies, with sp= for the subdomain */
        {"dmarc_sub.eml", O, "v=DMARC1; p=reject; sp=quarantine", NULL, false,
         "check_dmarc_quarantine", F, true},
        {"dmarc_sub.eml", O, "v=DMARC1; p=reject", NULL, false, "check_dmarc_reject", F, true},
        {"dmarc_sub.eml", "_dmarc.news.example.org", "v=DMARC1; p=none; sp=reject", NULL, false,
         "check_dmarc_none", F, true},
        /* no record anywhere, two records, an unrelated TXT */
        {"dmarc_missing.eml", NULL, NULL, NULL, false, "check_dmarc_missing", N, true},
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=reject", "v=DMARC1; p=none", false,
         "check_dmarc_missing", N, true},
        {"dmarc_relaxed.eml", O, "v=spf1 -all", NULL, false, "check_dmarc_missing", N, true},
        /* an unusable record: Mail::DMARC's fail with disposition none */
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=bogus", NULL, false, "check_dmarc_none",
         TAMIS_AUTH_PERMERROR, true},
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=bogus; rua=mailto:d@example.org", NULL, false,
         "check_dmarc_pass", P, true},
        /* no answer: temperror, no rule */
        {"dmarc_relaxed.eml", O, "v=DMARC1; p=reject", NULL, true, NULL, TAMIS_AUTH_TEMPERROR,
         true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(&cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_parse),
        cmocka_unit_test(test_domains),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
