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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reverse),   cmocka_unit_test(test_zone_name),
        cmocka_unit_test(test_subtest),   cmocka_unit_test(test_classify),
        cmocka_unit_test(test_dnsbl_hit), cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
