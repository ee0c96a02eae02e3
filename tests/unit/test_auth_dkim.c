/*
 * Unit tests of lib/auth's DKIM pieces on fixed inputs: the tag-list and DKIM-Signature / key
 * parsers, the canonicalisations (RFC 6376 §3.4.6's example), and whole verifications of two
 * messages signed by dkimpy (tests/unit/auth/: rsa-sha256 relaxed with an over-signed From, and
 * ed25519-sha256 simple), their key records served by a table instead of DNS.
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
#include "tamis/conf.h"

/* ---- tag lists ---------------------------------------------------------------------------- */

static void test_taglist(void **state)
{
    (void)state;
    tamis__tag_t t[8];
    size_t n;
    const char *s = " v=1;\r\n a = rsa-sha256 ; b=ab\r\n cd;";
    assert_int_equal(tamis__taglist_parse(s, strlen(s), t, 8, &n), 0);
    assert_int_equal(n, 3);
    const tamis__tag_t *b = tamis__tag_find(t, n, "b");
    assert_non_null(b);
    assert_int_equal(b->value.len, 7); /* "ab\r\n cd": inner FWS kept */
    assert_memory_equal(tamis__tag_find(t, n, "a")->value.ptr, "rsa-sha256", 10);
    /* duplicates, missing '=', bad names, limits */
    assert_int_equal(tamis__taglist_parse("a=1; a=2", 8, t, 8, &n), TAMIS_EPARSE);
    assert_int_equal(tamis__taglist_parse("a1", 2, t, 8, &n), TAMIS_EPARSE);
    assert_int_equal(tamis__taglist_parse("1a=x", 4, t, 8, &n), TAMIS_EPARSE);
    assert_int_equal(tamis__taglist_parse("a=\x01", 3, t, 8, &n), TAMIS_EPARSE);
    assert_int_equal(tamis__taglist_parse("a=1;b=2;c=3", 11, t, 2, &n), TAMIS_ELIMIT);
    assert_int_equal(tamis__taglist_parse("", 0, t, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(tamis__taglist_parse("a=;", 3, t, 8, &n), 0);
    assert_int_equal(t[0].value.len, 0);
}

static void test_b64(void **state)
{
    (void)state;
    unsigned char out[16];
    assert_int_equal(tamis__dkim_b64_decode("aGVs\r\n bG8=", 11, out), 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(tamis__dkim_b64_decode("aGVsbG8=x", 9, out), 5); /* as Perl's decoder */
    assert_int_equal(tamis__dkim_b64_decode("a", 1, out), -1);
    assert_int_equal(tamis__dkim_b64_decode("a$==", 4, out), -1);
}

/* ---- DKIM-Signature ----------------------------------------------------------------------- */

#define BH "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;"

static int parse(const char *v, tamis_arena_t *a, tamis__dkim_sig_t *s, const char **why)
{
    return tamis__dkim_sig_parse(v, strlen(v), a, s, why);
}

static void test_sig_parse(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(0);
    tamis__dkim_sig_t s;
    const char *why;
    assert_int_equal(parse("v=1; a=rsa-sha256; c=relaxed; d=Example.ORG; s=sel; "
                           "i=joe@sub.example.org; l=12; t=100; x=200; h=From : To:from;" BH
                           " b=AAAA",
                           a, &s, &why),
                     0);
    assert_int_equal(s.alg, TAMIS__DKIM_RSA_SHA256);
    assert_true(s.hdr_relaxed);
    assert_false(s.body_relaxed); /* "relaxed" alone is relaxed/simple */
    assert_string_equal(s.d, "example.org");
    assert_string_equal(s.s, "sel");
    assert_string_equal(s.i_domain, "sub.example.org");
    assert_int_equal(s.hn, 3);
    assert_string_equal(s.h[1], "To");
    assert_true(s.has_l && s.l == 12);
    assert_true(s.has_x && s.x == 200 && s.t == 100);
    assert_int_equal(s.bhlen, 32);
    assert_int_equal(s.blen, 3);

    static const struct {
        const char *v, *why;
    } bad[] = {
        {"a=rsa-sha256; d=e.org; s=s; h=from;" BH " b=AAAA", "missing v= tag"},
        {"v=2; a=rsa-sha256; d=e.org; s=s; h=from;" BH " b=AAAA", "unsupported version"},
        {"v=1; a=rsa-md5; d=e.org; s=s; h=from;" BH " b=AAAA", "unsupported algorithm"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; h=to;" BH " b=AAAA", "From field not signed"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; h=from; b=AAAA", "missing bh= tag"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; h=from; bh=AAAA; b=AAAA", "invalid bh= tag"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; h=from;" BH, "missing b= tag"},
        {"v=1; a=rsa-sha256; s=s; h=from;" BH " b=AAAA", "missing d= tag"},
        {"v=1; a=rsa-sha256; d=e.org; h=from;" BH " b=AAAA", "missing s= tag"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; i=@other.org; h=from;" BH " b=AAAA",
         "i= domain not within d="},
        {"v=1; a=rsa-sha256; d=e.org; s=s; i=@xe.org; h=from;" BH " b=AAAA",
         "i= domain not within d="},
        {"v=1; a=rsa-sha256; d=e.org; s=s; c=fancy/simple; h=from;" BH " b=AAAA",
         "unsupported canonicalization"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; l=x; h=from;" BH " b=AAAA", "invalid l= tag"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; t=10; x=5; h=from;" BH " b=AAAA", "x= before t="},
        {"v=1; a=rsa-sha256; d=e.org; s=s; q=http; h=from;" BH " b=AAAA",
         "unsupported query method"},
        {"v=1; a=rsa-sha256; d=e..org; s=s; h=from;" BH " b=AAAA", "invalid d= domain"},
        {"v=1; a=rsa-sha256; d=e.org; s=s; h=from::to;" BH " b=AAAA", "empty name in h="},
        {"v=1; v=1; a=rsa-sha256", "signature syntax error"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i].v, a, &s, &why);
        if (rc == 0 || !why || strcmp(why, bad[i].why) != 0)
            fail_msg("%s: rc %d why %s", bad[i].v, rc, why ? why : "(null)");
    }
    /* d= and s= are kept for the report even when a later tag fails */
    assert_int_not_equal(parse("v=1; a=rsa-md5; d=E.org; s=s1; h=from;" BH " b=AAAA", a, &s, &why),
                         0);
    assert_string_equal(s.d, "e.org");
    assert_string_equal(s.s, "s1");
    /* ed25519: a 32-byte bh, sha1 wants 20 bytes */
    assert_int_equal(
        parse("v=1; a=ed25519-sha256; d=e.org; s=s; h=from;" BH " b=AAAA", a, &s, &why), 0);
    assert_int_equal(s.alg, TAMIS__DKIM_ED25519_SHA256);
    assert_int_not_equal(parse("v=1; a=rsa-sha1; d=e.org; s=s; h=from;" BH " b=AAAA", a, &s, &why),
                         0);
    tamis_arena_free(a);
}

static void test_key_parse(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(0);
    tamis__dkim_key_t k;
    const char *why;
#define KP(s) tamis__dkim_key_parse(s, strlen(s), a, &k, &why)
    assert_int_equal(KP("v=DKIM1; k=rsa; p=AAAA"), 0);
    assert_true(k.rsa && !k.revoked && k.sha1_ok && k.sha256_ok);
    assert_int_equal(k.keylen, 3);
    assert_int_equal(KP("v=DKIM1; p="), 0);
    assert_true(k.revoked);
    assert_int_equal(KP("k=ed25519; t=y:s; h=sha256; s=email; p=AAAA"), 0);
    assert_true(!k.rsa && k.testing && k.strict_domain && k.sha256_ok && !k.sha1_ok);
    assert_int_equal(KP("k=rsa; p=AAAA; v=DKIM1"), TAMIS_EPARSE); /* v= must come first */
    assert_int_equal(KP("v=DKIM2; p=AAAA"), TAMIS_EPARSE);
    assert_int_equal(KP("k=dsa; p=AAAA"), TAMIS_EUNSUPPORTED);
    assert_int_equal(KP("s=web; p=AAAA"), TAMIS_EUNSUPPORTED);
    assert_int_equal(KP("v=DKIM1; k=rsa"), TAMIS_EPARSE);
    assert_int_equal(KP("p=!!!!"), TAMIS_EPARSE);
#undef KP
    tamis_arena_free(a);
}

/* ---- canonicalisation --------------------------------------------------------------------- */

static void buf_sink(void *ctx, const char *p, size_t n)
{
    tamis_buf_append(ctx, p, n);
}

static const char *canon_body(tamis_buf_t *b, const char *body, bool relaxed, uint64_t limit)
{
    tamis_buf_reset(b);
    tamis__dkim_canon_body(body, strlen(body), relaxed, limit, buf_sink, b);
    return b->data ? b->data : "";
}

static void test_canon_rfc_example(void **state)
{
    (void)state;
    /* RFC 6376 §3.4.6 */
    const char *h1 = "A: X\r\n", *h2 = "B : Y\t\r\n\tZ  \r\n";
    const char *body = " C \r\nD \t E\r\n\r\n\r\n";
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    tamis__dkim_canon_header(h1, strlen(h1), true, false, &b);
    tamis__dkim_canon_header(h2, strlen(h2), true, false, &b);
    assert_string_equal(b.data, "a:X\r\nb:Y Z\r\n");
    tamis_buf_reset(&b);
    tamis__dkim_canon_header(h1, strlen(h1), false, false, &b);
    tamis__dkim_canon_header(h2, strlen(h2), false, false, &b);
    assert_string_equal(b.data, "A: X\r\nB : Y\t\r\n\tZ  \r\n");
    assert_string_equal(canon_body(&b, body, true, UINT64_MAX), " C\r\nD E\r\n");
    assert_string_equal(canon_body(&b, body, false, UINT64_MAX), " C \r\nD \t E\r\n");
    /* LF-only input is canonicalised as CRLF */
    assert_string_equal(canon_body(&b, " C \nD \t E\n\n\n", false, UINT64_MAX),
                        " C \r\nD \t E\r\n");
    tamis_buf_reset(&b);
    tamis__dkim_canon_header("B : Y\t\n\tZ  \n", 12, false, false, &b);
    assert_string_equal(b.data, "B : Y\t\r\n\tZ  \r\n");
    tamis_buf_free(&b);
}

static void test_canon_body_edges(void **state)
{
    (void)state;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    /* empty body: CRLF in simple, nothing in relaxed */
    assert_string_equal(canon_body(&b, "", false, UINT64_MAX), "\r\n");
    assert_string_equal(canon_body(&b, "", true, UINT64_MAX), "");
    assert_string_equal(canon_body(&b, "\r\n\r\n", false, UINT64_MAX), "\r\n");
    assert_string_equal(canon_body(&b, " \r\n\t\r\n", true, UINT64_MAX), "");
    /* a missing final line end is added */
    assert_string_equal(canon_body(&b, "x", false, UINT64_MAX), "x\r\n");
    assert_string_equal(canon_body(&b, "x \t", true, UINT64_MAX), "x\r\n");
    /* blank lines inside are kept */
    assert_string_equal(canon_body(&b, "a\n\n\nb\n\n", true, UINT64_MAX), "a\r\n\r\n\r\nb\r\n");
    /* l= */
    assert_string_equal(canon_body(&b, "hello world\r\nmore\r\n", false, 5), "hello");
    uint64_t total = tamis__dkim_canon_body("ab\n", 3, false, 1, buf_sink, &b);
    assert_int_equal(total, 4);
    tamis_buf_free(&b);
}

static void test_strip_b(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(0);
    size_t n;
    const char *f = "DKIM-Signature: v=1; bh=AB; b=xy\r\n z; d=e.org\r\n";
    char *s = tamis__dkim_strip_b(f, strlen(f), a, &n);
    assert_string_equal(s, "DKIM-Signature: v=1; bh=AB; b=; d=e.org\r\n");
    f = "DKIM-Signature: v=1; bh=AB;\r\n b=xy\r\n z\r\n";
    s = tamis__dkim_strip_b(f, strlen(f), a, &n);
    assert_string_equal(s, "DKIM-Signature: v=1; bh=AB;\r\n b=\r\n");
    tamis_arena_free(a);
}

/* ---- whole verifications of dkimpy-signed fixtures ---------------------------------------- */

typedef struct {
    const char *name;
    tamis_net_answer_t ans;
    const char *txt[1];
} fake_rr_t;

typedef struct {
    fake_rr_t *rr;
    size_t n;
    const char *asked[8];
    size_t nasked;
    tamis_net_answer_t nx, servfail;
} fake_dns_t;

static int fake_start(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    fake_dns_t *d = ctx;
    assert_int_equal(type, TAMIS_NET_TXT);
    assert_true(d->nasked < 8);
    d->asked[d->nasked] = name;
    *slot = d->nasked++;
    return 0;
}

static const tamis_net_answer_t *fake_wait(void *ctx, size_t slot)
{
    fake_dns_t *d = ctx;
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->rr[i].name, d->asked[slot]) == 0)
            return &d->rr[i].ans;
    if (strstr(d->asked[slot], "servfail"))
        return &d->servfail;
    if (strstr(d->asked[slot], "timeout"))
        return NULL;
    return &d->nx;
}

static char *read_fixture(const char *name, size_t *len)
{
    char path[512], err[128];
    char *data = NULL;
    snprintf(path, sizeof(path), "%s/tests/unit/auth/%s", TAMIS_SOURCE_DIR, name);
    assert_int_equal(tamis_read_file(path, 1 << 20, &data, len, err, sizeof(err)), 0);
    return data;
}

static void rr_set(fake_rr_t *r, const char *name, const char *txt)
{
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->txt[0] = txt;
    r->ans.status = TAMIS_NET_OK;
    r->ans.type = TAMIS_NET_TXT;
    r->ans.count = 1;
    r->ans.strs = r->txt;
}

typedef struct {
    tamis_arena_t *arena;
    tamis_msg_t *m;
    const tamis_auth_result_t *r;
} run_t;

static const tamis_auth_adsp_t *g_adsp;
static size_t g_nadsp;
static const tamis_conf_t *g_conf;
static const char *g_envfrom;

static void run(run_t *out, const char *data, size_t len, fake_dns_t *dns, double now)
{
    char err[128];
    out->arena = tamis_arena_new(0);
    assert_int_equal(tamis_msg_parse(data, len, NULL, &out->m, err, sizeof(err)), 0);
    tamis_auth_input_t in = {0};
    in.skip_spf = true;
    in.client_ip = "192.0.2.1";
    in.now = now;
    in.adsp_override = g_adsp;
    in.adsp_override_count = g_nadsp;
    in.conf = g_conf;
    in.envelope_from = g_envfrom;
    tamis_auth_dns_t d = {fake_start, fake_wait, dns};
    tamis_auth_t *a;
    assert_int_equal(tamis_auth_start(out->m, &in, &d, out->arena, &a, err, sizeof(err)), 0);
    out->r = tamis_auth_finish(a);
    assert_ptr_equal(out->r, tamis_auth_finish(a)); /* idempotent */
}

static void run_free(run_t *r)
{
    tamis_msg_free(r->m);
    tamis_arena_free(r->arena);
}

static bool ev(const tamis_auth_result_t *r, const char *f)
{
    bool known;
    bool hit = tamis_auth_eval(r, f, NULL, 0, &known);
    assert_true(known);
    return hit;
}

static void fixture_key(const char *file, char *out, size_t outlen)
{
    size_t len;
    char *k = read_fixture(file, &len);
    while (len && (k[len - 1] == '\n' || k[len - 1] == '\r'))
        len--;
    snprintf(out, outlen, "%.*s", (int)len, k);
    free(k);
}

/* "\n\t" folds back to one space */
static void unfold(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\n' && p[1] == '\t') {
            *o++ = ' ';
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

static void test_verify_fixtures(void **state)
{
    (void)state;
    static char rsa_key[1024], ed_key[256];
    fixture_key("rsa.key", rsa_key, sizeof(rsa_key));
    fixture_key("ed25519.key", ed_key, sizeof(ed_key));
    fake_rr_t rr[3];
    rr_set(&rr[0], "rsa._domainkey.example.org", rsa_key);
    rr_set(&rr[1], "ed._domainkey.example.org", ed_key);
    rr_set(&rr[2], "_dmarc.example.org", "v=DMARC1; p=reject; adkim=s");
    fake_dns_t dns = {rr, 3, {0}, 0, {0}, {0}};
    dns.nx.status = TAMIS_NET_NXDOMAIN;
    dns.servfail.status = TAMIS_NET_SERVFAIL;

    static const char *const files[] = {"rsa.eml", "ed25519.eml"};
    for (size_t f = 0; f < 2; f++) {
        size_t len;
        char *data = read_fixture(files[f], &len);
        run_t r;
        dns.nasked = 0;
        run(&r, data, len, &dns, 1800000000.0);
        assert_int_equal(r.r->sig_count, 1);
        if (r.r->sigs[0].status != TAMIS_AUTH_PASS)
            fail_msg("%s: %s (%s)", files[f], tamis_auth_status_name(r.r->sigs[0].status),
                     r.r->sigs[0].reason ? r.r->sigs[0].reason : "");
        assert_int_equal(r.r->sigs[0].key_bits, f == 0 ? 2048 : 0);
        assert_true(ev(r.r, "check_dkim_signed"));
        assert_true(ev(r.r, "check_dkim_valid"));
        assert_true(ev(r.r, "check_dkim_valid_author_sig"));
        assert_false(ev(r.r, "check_dkim_valid_envelopefrom"));
        assert_true(ev(r.r, "check_dmarc_pass"));
        assert_false(ev(r.r, "check_dmarc_missing"));
        const char *const doms[] = {".org"}, *const other[] = {"example.net"};
        bool known;
        assert_true(tamis_auth_eval(r.r, "check_dkim_valid", doms, 1, &known));
        assert_false(tamis_auth_eval(r.r, "check_dkim_valid", other, 1, &known));
        tamis_buf_t h;
        tamis_buf_init(&h, 0);
        assert_int_equal(tamis_auth_results_header(r.r, "mx.example.net", &h), 0);
        for (size_t l = 0, col = 0; l < h.len; l++, col++) {
            if (h.data[l] == '\n')
                col = 0;
            assert_true(col <= 78);
        }
        unfold(h.data);
        assert_non_null(strstr(h.data, "Authentication-Results: mx.example.net; dkim=pass"));
        assert_non_null(strstr(h.data, "dkim=pass"));
        assert_non_null(strstr(h.data, "header.d=example.org"));
        assert_non_null(strstr(h.data, "dmarc=pass (p=reject) header.from=example.org"));
        tamis_buf_free(&h);
        run_free(&r);

        /* one changed body byte: the body hash fails */
        char *bad = malloc(len);
        memcpy(bad, data, len);
        char *w = strstr(bad, "second line");
        w[0] = 'S';
        dns.nasked = 0;
        run(&r, bad, len, &dns, 1800000000.0);
        assert_int_equal(r.r->sigs[0].status, TAMIS_AUTH_FAIL);
        assert_string_equal(r.r->sigs[0].reason, "body hash mismatch");
        assert_true(ev(r.r, "check_dkim_signed"));
        assert_false(ev(r.r, "check_dkim_valid"));
        assert_true(ev(r.r, "check_dmarc_reject")); /* no SPF, no valid DKIM: fail, p=reject */
        run_free(&r);

        /* one changed signed header: the signature fails */
        memcpy(bad, data, len);
        w = strstr(bad, "Subject: Tamis");
        w[9] = 't';
        dns.nasked = 0;
        run(&r, bad, len, &dns, 1800000000.0);
        assert_int_equal(r.r->sigs[0].status, TAMIS_AUTH_FAIL);
        assert_string_equal(r.r->sigs[0].reason, "signature verification failed");
        run_free(&r);
        free(bad);
        free(data);
    }

    /* a missing key (NXDOMAIN) is a permerror, a SERVFAIL or no answer a temperror */
    size_t len;
    char *data = read_fixture("rsa.eml", &len);
    run_t r;
    rr[0].name = "elsewhere";
    dns.nasked = 0;
    run(&r, data, len, &dns, 1800000000.0);
    assert_int_equal(r.r->sigs[0].status, TAMIS_AUTH_PERMERROR);
    assert_string_equal(r.r->sigs[0].reason, "no key");
    run_free(&r);
    rr_set(&rr[0], "rsa._domainkey.example.org", "v=DKIM1; k=rsa; p=");
    dns.nasked = 0;
    run(&r, data, len, &dns, 1800000000.0);
    assert_int_equal(r.r->sigs[0].status, TAMIS_AUTH_PERMERROR);
    assert_string_equal(r.r->sigs[0].reason, "key revoked");
    run_free(&r);
    free(data);
}

static bool adsp(const tamis_auth_result_t *r, const char *practices, const char *dom)
{
    const char *args[2] = {practices, dom};
    bool known;
    bool hit = tamis_auth_eval(r, "check_dkim_adsp", args, dom ? 2 : 1, &known);
    assert_true(known);
    return hit;
}

static void test_adsp(void **state)
{
    (void)state;
    static char rsa_key[1024];
    fixture_key("rsa.key", rsa_key, sizeof(rsa_key));
    fake_rr_t rr[3];
    rr_set(&rr[0], "rsa._domainkey.example.org", rsa_key);
    rr_set(&rr[1], "_adsp._domainkey.example.org", "dkim=discardable");
    rr_set(&rr[2], "example.org", "v=spf1 -all");
    fake_dns_t dns = {rr, 1, {0}, 0, {0}, {0}};
    dns.nx.status = TAMIS_NET_NXDOMAIN;
    dns.servfail.status = TAMIS_NET_SERVFAIL;
    size_t len;
    char *data = read_fixture("rsa.eml", &len);
    char *bad = malloc(len);
    memcpy(bad, data, len);
    strstr(bad, "second line")[0] = 'S'; /* the author signature fails */
    run_t r;

    /* a valid author signature: no practice applies */
    static const tamis_auth_adsp_t ov[] = {{"example.org", 'D'}, {"*.org", 'A'}, {"*", '1'}};
    g_adsp = ov;
    g_nadsp = 1;
    dns.nasked = 0;
    run(&r, data, len, &dns, 1800000000.0);
    assert_int_equal(r.r->adsp, 0);
    assert_false(adsp(r.r, "*", NULL));
    run_free(&r);

    /* overrides: exact, then *.parent, then * */
    for (size_t k = 1; k <= 3; k++) {
        g_adsp = ov + (k - 1);
        g_nadsp = 1;
        dns.nasked = 0;
        run(&r, bad, len, &dns, 1800000000.0);
        assert_int_equal(r.r->adsp, "DA1"[k - 1]);
        assert_int_equal(dns.nasked, 2); /* only the key and DMARC: no ADSP lookups */
        run_free(&r);
    }
    g_adsp = ov;
    g_nadsp = 3;
    dns.nasked = 0;
    run(&r, bad, len, &dns, 1800000000.0);
    assert_true(adsp(r.r, "D", NULL));
    assert_true(adsp(r.r, "*", NULL));
    assert_false(adsp(r.r, "A", NULL));
    assert_false(ev(r.r, "check_dkim_signall"));
    assert_true(adsp(r.r, "D", "example.org"));
    assert_true(adsp(r.r, "D", "*.org"));
    assert_false(adsp(r.r, "D", "other.org"));
    run_free(&r);

    /* DNS: a record, else NXDOMAIN of the domain, else unknown */
    g_adsp = NULL;
    g_nadsp = 0;
    dns.n = 2;
    dns.nasked = 0;
    run(&r, bad, len, &dns, 1800000000.0);
    assert_int_equal(r.r->adsp, 'D');
    run_free(&r);
    dns.n = 1;
    dns.nasked = 0;
    run(&r, bad, len, &dns, 1800000000.0);
    assert_int_equal(r.r->adsp, 'N');
    assert_true(adsp(r.r, "N", NULL));
    run_free(&r);
    rr[1] = rr[2]; /* the domain exists, no ADSP record */
    dns.n = 2;
    dns.nasked = 0;
    run(&r, bad, len, &dns, 1800000000.0);
    assert_int_equal(r.r->adsp, 'U');
    assert_false(adsp(r.r, "*", NULL));
    run_free(&r);
    free(bad);
    free(data);
}

static bool wl(const tamis_conf_t *c, const char *data, size_t len, fake_dns_t *dns,
               const char *func)
{
    run_t r;
    g_conf = c;
    g_envfrom = "Bounce@Example.ORG";
    dns->nasked = 0;
    run(&r, data, len, dns, 1800000000.0);
    bool known;
    bool hit = tamis_auth_eval(r.r, func, NULL, 0, &known);
    assert_true(known);
    assert_string_equal(r.r->author_address, "alice@example.org");
    assert_string_equal(r.r->envelope_from, "bounce@example.org");
    run_free(&r);
    g_conf = NULL;
    g_envfrom = NULL;
    return hit;
}

static tamis_conf_t *conf_with(const char *key, const char *value)
{
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    assert_int_equal(tamis_conf_apply(c, key, value, "t.cf", 1, d), TAMIS_CONF_APPLIED);
    assert_int_equal(tamis_diag_count(d), 0);
    tamis_diag_free(d);
    return c;
}

static void test_welcomelists(void **state)
{
    (void)state;
    static char rsa_key[1024];
    fixture_key("rsa.key", rsa_key, sizeof(rsa_key));
    fake_rr_t rr[1];
    rr_set(&rr[0], "rsa._domainkey.example.org", rsa_key);
    fake_dns_t dns = {rr, 1, {0}, 0, {0}, {0}};
    dns.nx.status = TAMIS_NET_NXDOMAIN;
    size_t len;
    char *data = read_fixture("rsa.eml", &len);
    char *bad = malloc(len);
    memcpy(bad, data, len);
    strstr(bad, "second line")[0] = 'S';
    static const struct {
        const char *key, *value, *func;
        bool good, bad;
    } cases[] = {
        {"def_welcomelist_auth", "*@example.org", "check_for_def_dkim_welcomelist_from", true,
         false},
        {"def_welcomelist_auth", "*@example.org", "check_for_dkim_welcomelist_from", false, false},
        {"welcomelist_auth", "alice@example.org", "check_for_dkim_whitelist_from", true, false},
        {"welcomelist_from_dkim", "alice@example.org", "check_for_dkim_welcomelist_from", true,
         false},
        {"welcomelist_from_dkim", "*@example.org example.org", "check_for_dkim_welcomelist_from",
         true, false},
        {"welcomelist_from_dkim", "*@example.org *.org", "check_for_dkim_welcomelist_from", true,
         false},
        {"welcomelist_from_dkim", "*@example.org example.net", "check_for_dkim_welcomelist_from",
         false, false},
        {"def_welcomelist_from_dkim", "bob@example.org", "check_for_def_dkim_welcomelist_from",
         false, false},
        /* SPF welcome lists need an SPF pass: skipped here, so never */
        {"welcomelist_from_spf", "*@example.org", "check_for_spf_welcomelist_from", false, false},
        {"def_welcomelist_auth", "*@example.org", "check_for_def_spf_whitelist_from", false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tamis_conf_t *c = conf_with(cases[i].key, cases[i].value);
        if (wl(c, data, len, &dns, cases[i].func) != cases[i].good ||
            wl(c, bad, len, &dns, cases[i].func) != cases[i].bad)
            fail_msg("%s %s: %s", cases[i].key, cases[i].value, cases[i].func);
        tamis_conf_free(c);
    }
    /* without a conf the welcome lists never hit */
    assert_false(wl(NULL, data, len, &dns, "check_for_def_dkim_welcomelist_from"));
    free(bad);
    free(data);
}

static void test_eval_spf_fields(void **state)
{
    (void)state;
    /* the SPF evals only read the result: a hand-built one */
    tamis_auth_result_t r;
    memset(&r, 0, sizeof(r));
    r.spf_mailfrom = TAMIS_AUTH_FAIL;
    r.spf_mailfrom_domain = "example.org";
    r.envelope_from = "a@example.org";
    r.spf_helo = TAMIS_AUTH_NONE;
    r.spf_helo_domain = "mx.example.org";
    assert_true(ev(&r, "check_for_spf_fail"));
    assert_false(ev(&r, "check_for_spf_pass"));
    assert_true(ev(&r, "check_for_spf_helo_none"));
    assert_false(ev(&r, "check_for_spf_helo_temperror"));
    r.envelope_from = NULL; /* a null sender: postmaster@HELO was checked, no MAIL FROM rule */
    assert_false(ev(&r, "check_for_spf_fail"));
    r.spf_helo_domain = NULL; /* not checked: not even "none" */
    assert_false(ev(&r, "check_for_spf_helo_none"));
    bool known = true;
    tamis_auth_eval(&r, "check_for_spf_maybe", NULL, 0, &known);
    assert_false(known);
}

static void test_eval_offline(void **state)
{
    (void)state;
    /* without DNS nothing is checked and no DKIM or DMARC eval hits */
    size_t len;
    char *data = read_fixture("rsa.eml", &len);
    char err[128];
    tamis_arena_t *arena = tamis_arena_new(0);
    tamis_msg_t *m;
    assert_int_equal(tamis_msg_parse(data, len, NULL, &m, err, sizeof(err)), 0);
    tamis_auth_input_t in = {0};
    in.no_dns = true;
    tamis_auth_t *a;
    assert_int_equal(tamis_auth_start(m, &in, NULL, arena, &a, err, sizeof(err)), 0);
    const tamis_auth_result_t *r = tamis_auth_finish(a);
    assert_int_equal(r->sig_count, 1);
    assert_int_equal(r->sigs[0].status, TAMIS_AUTH_NEUTRAL);
    assert_false(ev(r, "check_dkim_signed"));
    assert_false(ev(r, "check_dmarc_missing"));
    assert_false(ev(r, "check_for_spf_none"));
    bool known = true;
    assert_false(tamis_auth_eval(r, "check_no_such_thing", NULL, 0, &known));
    assert_false(known);
    tamis_msg_free(m);
    tamis_arena_free(arena);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taglist),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_sig_parse),
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test(test_canon_rfc_example),
        cmocka_unit_test(test_canon_body_edges),
        cmocka_unit_test(test_strip_b),
        cmocka_unit_test(test_verify_fixtures),
        cmocka_unit_test(test_adsp),
        cmocka_unit_test(test_welcomelists),
        cmocka_unit_test(test_eval_spf_fields),
        cmocka_unit_test(test_eval_offline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
