/*
 * Unit tests of lib/net's pure parts: reversed addresses, zone names, sub-tests, blocked-code
 * classification, and the DNS answer parser on hand-made packets. The resolver against a real
 * server is in test_net_live.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tamis/net.h"

static void test_reverse(void **state)
{
    (void)state;
    char out[80];
    assert_int_equal(tamis_net_reverse_ip("1.2.3.4", out, sizeof(out)), 0);
    assert_string_equal(out, "4.3.2.1");
    assert_int_equal(tamis_net_reverse_ip("127.0.0.2", out, sizeof(out)), 0);
    assert_string_equal(out, "2.0.0.127");
    assert_int_equal(tamis_net_reverse_ip("2001:db8::1", out, sizeof(out)), 0);
    assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2");
    assert_int_equal(tamis_net_reverse_ip("::ffff:10.1.2.3", out, sizeof(out)), 0);
    assert_string_equal(out, "3.2.1.10");
    assert_int_equal(tamis_net_reverse_ip("1.2.3", out, sizeof(out)), TAMIS_EINVAL);
    assert_int_equal(tamis_net_reverse_ip("example.com", out, sizeof(out)), TAMIS_EINVAL);
    assert_int_equal(tamis_net_reverse_ip("1.2.3.4", out, 4), TAMIS_ELIMIT);
    assert_int_equal(tamis_net_reverse_ip("2001:db8::1", out, 63), TAMIS_ELIMIT);
}

static void test_zone_name(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(tamis_net_zone_name("4.3.2.1", "zen.spamhaus.org.", out, sizeof(out)), 0);
    assert_string_equal(out, "4.3.2.1.zen.spamhaus.org");
    assert_int_equal(tamis_net_zone_name("example.com", "multi.uribl.com", out, sizeof(out)), 0);
    assert_string_equal(out, "example.com.multi.uribl.com");
    assert_int_equal(tamis_net_zone_name("", "zone", out, sizeof(out)), TAMIS_EINVAL);
    assert_int_equal(tamis_net_zone_name("a", "...", out, sizeof(out)), TAMIS_EINVAL);
    char big[300];
    memset(big, 'a', 250);
    big[250] = '\0';
    assert_int_equal(tamis_net_zone_name(big, "zen.spamhaus.org", out, sizeof(out)), TAMIS_EINVAL);
    assert_int_equal(tamis_net_zone_name("abc", "def", out, 5), TAMIS_ELIMIT);
}

static void test_subtest(void **state)
{
    (void)state;
    tamis_net_subtest_t t;
    tamis_net_subtest_parse("2", &t);
    assert_int_equal(t.kind, TAMIS_NET_SUB_MASK);
    assert_true(tamis_net_subtest_match(&t, 0x7f000002));
    assert_true(tamis_net_subtest_match(&t, 0x7f00000e));
    assert_false(tamis_net_subtest_match(&t, 0x7f000004));
    assert_false(tamis_net_subtest_match(&t, 0x0a000002)); /* bitmask needs 127/8 */

    tamis_net_subtest_parse("0x10", &t);
    assert_int_equal(t.kind, TAMIS_NET_SUB_MASK);
    assert_int_equal(t.n1, 16);

    tamis_net_subtest_parse("127.0.1.2", &t);
    assert_int_equal(t.kind, TAMIS_NET_SUB_RANGE);
    assert_true(tamis_net_subtest_match(&t, 0x7f000102));
    assert_false(tamis_net_subtest_match(&t, 0x7f000103));

    tamis_net_subtest_parse("127.0.1.20-127.0.1.39", &t);
    assert_int_equal(t.kind, TAMIS_NET_SUB_RANGE);
    assert_true(tamis_net_subtest_match(&t, 0x7f000114));
    assert_true(tamis_net_subtest_match(&t, 0x7f000127));
    assert_false(tamis_net_subtest_match(&t, 0x7f000128));

    tamis_net_subtest_parse("0.0.0.16/0.0.0.16", &t);
    assert_int_equal(t.kind, TAMIS_NET_SUB_VMASK);
    assert_true(tamis_net_subtest_match(&t, 0x7f000010));
    assert_false(tamis_net_subtest_match(&t, 0x7f000008));
    tamis_net_subtest_parse("16/0x10", &t);
    assert_int_equal(t.kind, TAMIS_NET_SUB_VMASK);
    assert_true(tamis_net_subtest_match(&t, 0x7f000011));

    const char *regexes[] = {"^127\\.0\\.0\\.[4567]$",
                             "(?i:spamcop)",
                             "1.2.3",
                             "0x123456789",
                             "12345678901",
                             "-5",
                             "5-",
                             "a-b",
                             "256.0.0.1",
                             ""};
    for (size_t i = 0; i < sizeof(regexes) / sizeof(*regexes); i++) {
        tamis_net_subtest_parse(regexes[i], &t);
        assert_int_equal(t.kind, TAMIS_NET_SUB_REGEX);
        assert_false(tamis_net_subtest_match(&t, 0x7f000002));
    }
}

static void test_classify(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(tamis_net_classify("zen.spamhaus.org.", 0x7f000002, &why), TAMIS_NET_LISTED);
    assert_int_equal(tamis_net_classify("zen.spamhaus.org", 0x7ffffffe, &why), TAMIS_NET_BLOCKED);
    assert_non_null(strstr(why, "public"));
    assert_int_equal(tamis_net_classify("zen.spamhaus.org", 0x7fffffff, NULL), TAMIS_NET_BLOCKED);
    assert_int_equal(tamis_net_classify("zen.spamhaus.org", 0x7ffffffc, NULL), TAMIS_NET_BLOCKED);
    assert_int_equal(tamis_net_classify("bl.example", 0x7fffff01, NULL), TAMIS_NET_BLOCKED);
    assert_int_equal(tamis_net_classify("multi.uribl.com.", 0x7f000001, NULL), TAMIS_NET_BLOCKED);
    assert_int_equal(tamis_net_classify("MULTI.URIBL.COM", 0x7f000001, NULL), TAMIS_NET_BLOCKED);
    assert_int_equal(tamis_net_classify("multi.uribl.com", 0x7f000002, NULL), TAMIS_NET_LISTED);
    assert_int_equal(tamis_net_classify("multi.surbl.org", 0x7f000001, NULL), TAMIS_NET_BLOCKED);
    assert_int_equal(tamis_net_classify("notsurbl.org", 0x7f000001, NULL), TAMIS_NET_LISTED);
    assert_int_equal(tamis_net_classify("dbl.spamhaus.org", 0x7f0001ff, NULL), TAMIS_NET_BLOCKED);
    assert_int_equal(tamis_net_classify("zen.spamhaus.org", 0x7f0001ff, NULL), TAMIS_NET_LISTED);
    assert_int_equal(tamis_net_classify("zen.spamhaus.org", 0x08080808, NULL), TAMIS_NET_BOGUS);
}

static void test_dnsbl_hit(void **state)
{
    (void)state;
    tamis_net_subtest_t black, blocked, opendns, dblerr, sbl;
    tamis_net_subtest_parse("2", &black);
    tamis_net_subtest_parse("1", &blocked);
    tamis_net_subtest_parse("127.255.255.254", &opendns);
    tamis_net_subtest_parse("127.0.1.255", &dblerr);
    tamis_net_subtest_parse("127.0.0.2", &sbl);
    /* URIBL: 127.0.0.1 is "blocked": URIBL_BLOCKED (a block rule) fires, URIBL_BLACK not. */
    assert_true(tamis_net_dnsbl_hit("multi.uribl.com", &blocked, 0x7f000001, true));
    assert_false(tamis_net_dnsbl_hit("multi.uribl.com", &black, 0x7f000001, false));
    assert_true(tamis_net_dnsbl_hit("multi.uribl.com", &black, 0x7f000002, false));
    /* A 127.255.255.x answer sets every bit of a mask: no listing rule may fire. */
    assert_false(tamis_net_dnsbl_hit("multi.uribl.com", &black, 0x7fffffff, false));
    assert_false(tamis_net_dnsbl_hit("zen.spamhaus.org", NULL, 0x7ffffffe, false));
    assert_true(tamis_net_dnsbl_hit("zen.spamhaus.org", &opendns, 0x7ffffffe, true));
    assert_true(tamis_net_dnsbl_hit("zen.spamhaus.org", &opendns, 0x7ffffffe, false));
    assert_false(tamis_net_dnsbl_hit("zen.spamhaus.org", &sbl, 0x7ffffffe, false));
    /* URIBL_DBL_ERROR names its code exactly. */
    assert_true(tamis_net_dnsbl_hit("dbl.spamhaus.org", &dblerr, 0x7f0001ff, false));
    assert_true(tamis_net_dnsbl_hit("zen.spamhaus.org", NULL, 0x7f000002, false));
    assert_true(tamis_net_dnsbl_hit("zen.spamhaus.org", &sbl, 0x7f000002, false));
    assert_false(tamis_net_dnsbl_hit("zen.spamhaus.org", NULL, 0x0a000001, false));
}

/* ---- answer parser ------------------------------------------------------------------------- */

typedef struct {
    uint8_t b[1024];
    size_t n;
} pkt_t;

static void put(pkt_t *p, const void *d, size_t n)
{
    memcpy(p->b + p->n, d, n);
    p->n += n;
}
static void put16(pkt_t *p, unsigned v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(p, x, 2);
}
static void put32(pkt_t *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p, v & 0xffff);
}
static void putname(pkt_t *p, const char *name)
{
    while (*name) {
        size_t l = strcspn(name, ".");
        uint8_t c = (uint8_t)l;
        put(p, &c, 1);
        put(p, name, l);
        name += l + (name[l] == '.');
    }
    uint8_t z = 0;
    put(p, &z, 1);
}
static void header(pkt_t *p, unsigned rcode, unsigned an, unsigned ns)
{
    p->n = 0;
    put16(p, 0x1234);
    put16(p, 0x8180 | rcode);
    put16(p, 1);
    put16(p, an);
    put16(p, ns);
    put16(p, 0);
}

static void test_parse(void **state)
{
    (void)state;
    pkt_t p;
    const tamis_net_answer_t *a;

    /* Two A records, the owner as a compression pointer to the question. */
    header(&p, 0, 2, 0);
    putname(&p, "2.0.0.127.zen.spamhaus.org");
    put16(&p, 1);
    put16(&p, 1);
    for (int i = 0; i < 2; i++) {
        put16(&p, 0xc00c);
        put16(&p, 1);
        put16(&p, 1);
        put32(&p, i ? 300 : 600);
        put16(&p, 4);
        uint8_t ip[4] = {127, 0, 0, (uint8_t)(2 + i * 2)};
        put(&p, ip, 4);
    }
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_A, &a), 0);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_int_equal(a->count, 2);
    assert_int_equal(a->ttl, 300);
    assert_int_equal(a->addrs[0], 0x7f000002);
    assert_int_equal(a->addrs[1], 0x7f000004);
    tamis_net_answer_unref(a);
    /* Every truncation is rejected, never read past. */
    for (size_t cut = 0; cut < p.n; cut++)
        assert_int_equal(tamis_net_answer_parse(p.b, cut, TAMIS_NET_A, &a), TAMIS_EPARSE);

    /* TXT with two strings joined, and a NUL byte. */
    header(&p, 0, 1, 0);
    putname(&p, "x.bl.spamcop.net");
    put16(&p, 16);
    put16(&p, 1);
    put16(&p, 0xc00c);
    put16(&p, 16);
    put16(&p, 1);
    put32(&p, 60);
    put16(&p, 1 + 5 + 1 + 3);
    put(&p, "\005spamc\003o\000p", 10);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_TXT, &a), 0);
    assert_int_equal(a->count, 1);
    assert_string_equal(a->strs[0], "spamco?p");
    tamis_net_answer_unref(a);

    /* NXDOMAIN with an SOA: TTL = min(SOA TTL, minimum). */
    header(&p, 3, 0, 1);
    putname(&p, "nx.multi.uribl.com");
    put16(&p, 1);
    put16(&p, 1);
    put16(&p, 0xc00c + 3); /* "multi.uribl.com" inside the question */
    put16(&p, 6);
    put16(&p, 1);
    put32(&p, 900);
    size_t rdl_at = p.n;
    put16(&p, 0);
    size_t start = p.n;
    putname(&p, "ns.uribl.com");
    putname(&p, "hostmaster.uribl.com");
    put32(&p, 1);
    put32(&p, 2);
    put32(&p, 3);
    put32(&p, 4);
    put32(&p, 120);
    p.b[rdl_at] = (uint8_t)((p.n - start) >> 8);
    p.b[rdl_at + 1] = (uint8_t)(p.n - start);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_A, &a), 0);
    assert_int_equal(a->status, TAMIS_NET_NXDOMAIN);
    assert_int_equal(a->count, 0);
    assert_int_equal(a->ttl, 120);
    assert_null(a->addrs);
    tamis_net_answer_unref(a);

    /* NS names lower-cased. */
    header(&p, 0, 1, 0);
    putname(&p, "example.com");
    put16(&p, 2);
    put16(&p, 1);
    put16(&p, 0xc00c);
    put16(&p, 2);
    put16(&p, 1);
    put32(&p, 3600);
    put16(&p, 5);
    put(&p, "\002NS\300\014", 5);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_NS, &a), 0);
    assert_int_equal(a->count, 1);
    assert_string_equal(a->strs[0], "ns.example.com");
    tamis_net_answer_unref(a);

    /* A compression loop is an error, not a hang. */
    header(&p, 0, 1, 0);
    put16(&p, 0xc00c); /* question name points at itself */
    put16(&p, 2);
    put16(&p, 1);
    put16(&p, 0xc00c);
    put16(&p, 2);
    put16(&p, 1);
    put32(&p, 1);
    put16(&p, 2);
    put16(&p, 0xc00c);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_NS, &a), TAMIS_EPARSE);

    /* SERVFAIL and REFUSED. */
    header(&p, 2, 0, 0);
    putname(&p, "a.b");
    put16(&p, 1);
    put16(&p, 1);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_A, &a), 0);
    assert_int_equal(a->status, TAMIS_NET_SERVFAIL);
    tamis_net_answer_unref(a);
    p.b[3] = 0x85;
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_A, &a), 0);
    assert_int_equal(a->status, TAMIS_NET_REFUSED);
    assert_string_equal(tamis_net_status_name(a->status), "refused");
    assert_ptr_equal(tamis_net_answer_ref(a), a);
    tamis_net_answer_unref(a);
    tamis_net_answer_unref(a);
    tamis_net_answer_unref(NULL);
}

/* A resource record of type t owned by the question name (pointer 0xc00c), rdata raw. */
static void rr(pkt_t *p, unsigned t, uint32_t ttl, const void *rdata, size_t n)
{
    put16(p, 0xc00c);
    put16(p, t);
    put16(p, 1);
    put32(p, ttl);
    put16(p, (unsigned)n);
    put(p, rdata, n);
}

static void question(pkt_t *p, unsigned rcode, unsigned an, const char *name, unsigned t)
{
    header(p, rcode, an, 0);
    putname(p, name);
    put16(p, t);
    put16(p, 1);
}

static void test_parse_spf_types(void **state)
{
    (void)state;
    pkt_t p;
    const tamis_net_answer_t *a;

    /* AAAA: two addresses in network byte order; an A record in the answer is not taken. */
    static const uint8_t v6a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t v6b[16] = {0xfe, 0x80, [15] = 0x42};
    question(&p, 0, 3, "mail.example.com", 28);
    rr(&p, 28, 600, v6a, 16);
    rr(&p, 1, 10, "\x7f\x00\x00\x01", 4);
    rr(&p, 28, 300, v6b, 16);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_AAAA, &a), 0);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_int_equal(a->type, TAMIS_NET_AAAA);
    assert_int_equal(a->count, 2);
    assert_int_equal(a->ttl, 300);
    assert_null(a->addrs);
    assert_null(a->strs);
    assert_memory_equal(a->addrs6[0], v6a, 16);
    assert_memory_equal(a->addrs6[1], v6b, 16);
    tamis_net_answer_unref(a);
    for (size_t cut = 0; cut < p.n; cut++)
        assert_int_equal(tamis_net_answer_parse(p.b, cut, TAMIS_NET_AAAA, &a), TAMIS_EPARSE);
    /* An AAAA rdata that is not 16 bytes is malformed. */
    question(&p, 0, 1, "x.example", 28);
    rr(&p, 28, 60, v6a, 15);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_AAAA, &a), TAMIS_EPARSE);
    /* NODATA: OK without records. */
    question(&p, 0, 0, "x.example", 28);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_AAAA, &a), 0);
    assert_int_equal(a->count, 0);
    assert_null(a->addrs6);
    tamis_net_answer_unref(a);

    /* MX: sorted by preference (stable), names lower case, compression inside rdata; a null MX
     * (RFC 7505) is the empty name. */
    question(&p, 0, 4, "example.com", 15);
    rr(&p, 15, 3600, "\x00\x14\x03MX2\xc0\x0c", 8);       /* 20 mx2.example.com */
    rr(&p, 15, 3600, "\x00\x0a\x03mx1\x05other\x00", 13); /* 10 mx1.other */
    rr(&p, 15, 1200, "\x00\x14\x03mx3\xc0\x0c", 8);       /* 20 mx3.example.com */
    rr(&p, 15, 3600, "\x00\x00\x00", 3);                  /* 0 . */
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_MX, &a), 0);
    assert_int_equal(a->type, TAMIS_NET_MX);
    assert_int_equal(a->count, 4);
    assert_int_equal(a->ttl, 1200);
    assert_null(a->addrs);
    assert_null(a->addrs6);
    assert_string_equal(a->strs[0], "");
    assert_string_equal(a->strs[1], "mx1.other");
    assert_string_equal(a->strs[2], "mx2.example.com");
    assert_string_equal(a->strs[3], "mx3.example.com");
    tamis_net_answer_unref(a);
    for (size_t cut = 0; cut < p.n; cut++)
        assert_int_equal(tamis_net_answer_parse(p.b, cut, TAMIS_NET_MX, &a), TAMIS_EPARSE);
    /* An MX rdata too short for its preference and a name, or whose name overruns it. */
    question(&p, 0, 1, "example.com", 15);
    rr(&p, 15, 60, "\x00\x0a", 2);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_MX, &a), TAMIS_EPARSE);
    question(&p, 0, 1, "example.com", 15);
    rr(&p, 15, 60, "\x00\x0a\x03mx1\x00", 7); /* rdlength 7, name needs 5 + 2 = 7: fine */
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_MX, &a), 0);
    assert_string_equal(a->strs[0], "mx1");
    tamis_net_answer_unref(a);
    question(&p, 0, 1, "example.com", 15);
    rr(&p, 15, 60, "\x00\x0a\x03mx1\x00", 6); /* the name's root label lies past rdata */
    put(&p, "\x00", 1);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_MX, &a), TAMIS_EPARSE);

    /* PTR: a name, lower case, no trailing dot; other types in the answer ignored. */
    question(&p, 0, 2, "1.2.0.192.in-addr.arpa", 12);
    rr(&p, 5, 60, "\x01x\x00", 3); /* a CNAME */
    rr(&p, 12, 86400,
       "\x04Mail\x07"
       "Example\x03"
       "com\x00",
       18);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_PTR, &a), 0);
    assert_int_equal(a->type, TAMIS_NET_PTR);
    assert_int_equal(a->count, 1);
    assert_int_equal(a->ttl, 86400);
    assert_string_equal(a->strs[0], "mail.example.com");
    tamis_net_answer_unref(a);
    for (size_t cut = 0; cut < p.n; cut++)
        assert_int_equal(tamis_net_answer_parse(p.b, cut, TAMIS_NET_PTR, &a), TAMIS_EPARSE);

    /* NXDOMAIN for the new types carries no records; unknown types are refused. */
    question(&p, 3, 0, "nx.example", 15);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, TAMIS_NET_MX, &a), 0);
    assert_int_equal(a->status, TAMIS_NET_NXDOMAIN);
    assert_null(a->strs);
    tamis_net_answer_unref(a);
    assert_int_equal(tamis_net_answer_parse(p.b, p.n, (tamis_net_type_t)99, &a), TAMIS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reverse),         cmocka_unit_test(test_zone_name),
        cmocka_unit_test(test_subtest),         cmocka_unit_test(test_classify),
        cmocka_unit_test(test_dnsbl_hit),       cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_spf_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
