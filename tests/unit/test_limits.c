/*
 * Unit tests of tamisd's pure limit parts (spamd/ratelimit.c, spamd/acl.c): the per-address
 * table (caps, rate and failure bans, expiry, bounded size with eviction), the slow-client rule,
 * and --allowed-ips with IPv6 and IPv4-mapped peers. Times are made up: nothing here sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tamisd.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static struct sockaddr_storage v4(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, a, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, a, &s->sin6_addr), 1);
    return ss;
}

static tamisd_ipkey_t key4(const char *a)
{
    struct sockaddr_storage ss = v4(a);
    tamisd_ipkey_t k;
    tamisd_ipkey((struct sockaddr *)&ss, &k);
    return k;
}

static tamisd_limits_cfg_t cfg(unsigned per_ip, unsigned rate, unsigned failures, unsigned ban)
{
    tamisd_limits_cfg_t c;
    memset(&c, 0, sizeof c);
    c.max_conn = 1000;
    c.max_conn_per_ip = per_ip;
    c.max_conn_rate = rate;
    c.max_failures = failures;
    c.ban_time = ban;
    return c;
}

static void test_keys(void **state)
{
    (void)state;
    struct sockaddr_storage a = v4("192.0.2.7"), m = v6("::ffff:192.0.2.7"), b = v6("2001:db8::1");
    tamisd_ipkey_t ka, km, kb, ku;
    tamisd_ipkey((struct sockaddr *)&a, &ka);
    tamisd_ipkey((struct sockaddr *)&m, &km);
    tamisd_ipkey((struct sockaddr *)&b, &kb);
    tamisd_ipkey(NULL, &ku);
    assert_int_equal(ka.family, AF_INET);
    assert_memory_equal(&ka, &km, sizeof ka); /* one client, whichever listener it came by */
    assert_int_equal(kb.family, AF_INET6);
    assert_int_equal(ku.family, 0);
    char s[64];
    tamisd_ipkey_str(&km, s, sizeof s);
    assert_string_equal(s, "192.0.2.7");
    tamisd_ipkey_str(&kb, s, sizeof s);
    assert_string_equal(s, "2001:db8::/64");
    struct sockaddr_storage c = v6("2001:db8::ffff:2"), d = v6("2001:db8:0:1::1");
    tamisd_ipkey_t kc, kd;
    tamisd_ipkey((struct sockaddr *)&c, &kc);
    tamisd_ipkey((struct sockaddr *)&d, &kd);
    assert_memory_equal(&kb, &kc, sizeof kb); /* the same /64 */
    assert_memory_not_equal(&kb, &kd, sizeof kb);
}

static void test_per_ip_cap(void **state)
{
    (void)state;
    tamisd_limits_cfg_t c = cfg(3, 0, 0, 60);
    tamisd_iptable_t t;
    assert_int_equal(tamisd_iptable_init(&t, 64, &c), 0);
    tamisd_ipkey_t a = key4("10.0.0.1"), b = key4("10.0.0.2");
    bool counted;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tamisd_iptable_connect(&t, &a, i, &counted), TAMISD_ADMIT_OK);
        assert_true(counted);
    }
    assert_int_equal(tamisd_iptable_connect(&t, &a, 3, &counted), TAMISD_ADMIT_PER_IP);
    assert_false(counted);
    assert_int_equal(tamisd_iptable_connect(&t, &b, 3, &counted), TAMISD_ADMIT_OK);
    tamisd_iptable_disconnect(&t, &a);
    assert_int_equal(tamisd_iptable_connect(&t, &a, 4, &counted), TAMISD_ADMIT_OK);
    assert_int_equal(tamisd_iptable_find(&t, &a)->conns, 3);
    tamisd_iptable_free(&t);
}

static unsigned unbans;
static void on_unban(const tamisd_ipkey_t *k, double ms, void *arg)
{
    (void)k;
    (void)arg;
    assert_true(ms >= 60000);
    unbans++;
}

static void test_conn_rate_ban(void **state)
{
    (void)state;
    tamisd_limits_cfg_t c = cfg(0, 2, 0, 60); /* 2/s, a burst of 20 */
    tamisd_iptable_t t;
    assert_int_equal(tamisd_iptable_init(&t, 64, &c), 0);
    tamisd_ipkey_t a = key4("10.0.0.1"), b = key4("10.0.0.2");
    bool counted;
    for (int i = 0; i < 20; i++)
        assert_int_equal(tamisd_iptable_connect(&t, &a, 1000, &counted), TAMISD_ADMIT_OK);
    assert_int_equal(tamisd_iptable_connect(&t, &a, 1000, &counted), TAMISD_ADMIT_BAN_START);
    assert_int_equal(tamisd_iptable_connect(&t, &a, 2000, &counted), TAMISD_ADMIT_BANNED);
    assert_int_equal(tamisd_iptable_connect(&t, &b, 2000, &counted), TAMISD_ADMIT_OK);
    unbans = 0;
    assert_int_equal(tamisd_iptable_expire(&t, 60000, on_unban, NULL), 0);
    assert_int_equal(tamisd_iptable_expire(&t, 61000, on_unban, NULL), 1);
    assert_int_equal(unbans, 1);
    assert_int_equal(tamisd_iptable_connect(&t, &a, 61000, &counted), TAMISD_ADMIT_OK);
    /* a steady 2/s never trips */
    for (int i = 0; i < 200; i++)
        assert_int_equal(tamisd_iptable_connect(&t, &b, 3000 + i * 500.0, &counted),
                         TAMISD_ADMIT_OK);
    tamisd_iptable_free(&t);

    /* without bans the excess connection alone is refused */
    c = cfg(0, 1, 0, 0);
    assert_int_equal(tamisd_iptable_init(&t, 64, &c), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(tamisd_iptable_connect(&t, &a, 0, &counted), TAMISD_ADMIT_OK);
    assert_int_equal(tamisd_iptable_connect(&t, &a, 0, &counted), TAMISD_ADMIT_RATE);
    assert_int_equal(tamisd_iptable_connect(&t, &a, 1500, &counted), TAMISD_ADMIT_OK);
    tamisd_iptable_free(&t);
}

static void test_failure_ban(void **state)
{
    (void)state;
    tamisd_limits_cfg_t c = cfg(0, 0, 3, 10);
    tamisd_iptable_t t;
    assert_int_equal(tamisd_iptable_init(&t, 64, &c), 0);
    tamisd_ipkey_t a = key4("10.0.0.1"), b = key4("10.0.0.2");
    bool counted;
    for (int i = 0; i < 3; i++)
        assert_false(tamisd_iptable_fail(&t, &a, 0));
    assert_true(tamisd_iptable_fail(&t, &a, 0));  /* the fourth in a minute */
    assert_false(tamisd_iptable_fail(&t, &a, 1)); /* already banned: one ban line */
    assert_int_equal(tamisd_iptable_connect(&t, &a, 5, &counted), TAMISD_ADMIT_BANNED);
    assert_int_equal(tamisd_iptable_connect(&t, &b, 5, &counted), TAMISD_ADMIT_OK);
    assert_int_equal(tamisd_iptable_expire(&t, 10000, NULL, NULL), 1);
    assert_int_equal(tamisd_iptable_connect(&t, &a, 10001, &counted), TAMISD_ADMIT_OK);
    /* three a minute, spread out, never ban */
    for (int i = 0; i < 30; i++)
        assert_false(tamisd_iptable_fail(&t, &b, 20000 + i * 20000.0));
    tamisd_iptable_free(&t);
}

static void test_bounded_table(void **state)
{
    (void)state;
    tamisd_limits_cfg_t c = cfg(1, 0, 0, 60);
    tamisd_iptable_t t;
    assert_int_equal(tamisd_iptable_init(&t, 16, &c), 0);
    assert_int_equal(t.cap, 16);
    bool counted;
    /* three addresses keep a connection open; thousands of others come and go */
    tamisd_ipkey_t live[3] = {key4("10.1.0.1"), key4("10.1.0.2"), key4("10.1.0.3")};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tamisd_iptable_connect(&t, &live[i], 0, &counted), TAMISD_ADMIT_OK);
    for (unsigned i = 0; i < 5000; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.2.%u.%u", i / 256, i % 256);
        tamisd_ipkey_t k = key4(a);
        assert_int_equal(tamisd_iptable_connect(&t, &k, i + 1.0, &counted), TAMISD_ADMIT_OK);
        if (counted)
            tamisd_iptable_disconnect(&t, &k);
    }
    for (int i = 0; i < 3; i++) { /* never evicted while connected: the cap still holds */
        assert_non_null(tamisd_iptable_find(&t, &live[i]));
        assert_int_equal(tamisd_iptable_connect(&t, &live[i], 6000, &counted), TAMISD_ADMIT_PER_IP);
    }
    tamisd_iptable_free(&t);
}

static void test_slow_client(void **state)
{
    (void)state;
    tamisd_limits_cfg_t c = cfg(0, 0, 0, 0);
    c.timeout_read = 30;
    c.min_rate = 100;
    c.min_rate_grace = 2;
    c.min_rate_window = 2;
    tamisd_rate_t slow, fast, silent;
    tamisd_rate_begin(&slow, 0);
    tamisd_rate_begin(&fast, 0);
    tamisd_rate_begin(&silent, 0);
    double rate = -1;
    int cut = 0;
    for (int ms = 0; ms <= 10000 && !cut; ms += 250) { /* a sweep every 250 ms */
        if (ms % 1000 == 0)
            tamisd_rate_feed(&slow, 1, ms); /* one byte a second */
        tamisd_rate_feed(&fast, 100, ms);   /* 400 bytes/s */
        assert_int_equal(tamisd_rate_check(&fast, ms, &c, NULL), 0);
        if (tamisd_rate_check(&slow, ms, &c, &rate) == 2)
            cut = ms;
    }
    assert_int_equal(cut, 2000); /* the first whole window after the grace period */
    assert_true(rate < 2);
    c.min_rate = 0;
    assert_int_equal(tamisd_rate_check(&silent, 29000, &c, NULL), 0);
    assert_int_equal(tamisd_rate_check(&silent, 30000, &c, NULL), 1);
}

static void test_acl(void **state)
{
    (void)state;
    tamisd_acl_t acl;
    memset(&acl, 0, sizeof acl);
    assert_int_equal(tamisd_acl_add(&acl, "127.0.0.1"), 0);
    assert_int_equal(tamisd_acl_add(&acl, "10.0.0.0/8"), 0);
    assert_int_equal(tamisd_acl_add(&acl, "2001:db8::/32"), 0);
    assert_int_equal(tamisd_acl_add(&acl, "[::1]"), 0);
    assert_int_equal(tamisd_acl_add(&acl, "192.168."), 0);
    assert_int_not_equal(tamisd_acl_add(&acl, "10.0.0.0/33"), 0);
    assert_int_not_equal(tamisd_acl_add(&acl, "2001:db8::/129"), 0);
    assert_int_not_equal(tamisd_acl_add(&acl, "not-an-ip"), 0);
    struct {
        const char *addr;
        bool v6, ok;
    } cases[] = {
        {"127.0.0.1", false, true},
        {"127.0.0.2", false, false},
        {"10.200.1.1", false, true},
        {"11.0.0.1", false, false},
        {"192.168.4.5", false, true},
        {"192.169.0.1", false, false},
        {"::ffff:127.0.0.1", true, true}, /* a dual-stack listener's IPv4 peer */
        {"::ffff:10.9.9.9", true, true},
        {"::ffff:11.0.0.1", true, false},
        {"::1", true, true},
        {"::2", true, false},
        {"2001:db8:ffff::5", true, true},
        {"2001:db9::5", true, false},
        {"::127.0.0.1", true, false}, /* IPv4-compatible is not IPv4-mapped */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss = cases[i].v6 ? v6(cases[i].addr) : v4(cases[i].addr);
        if (tamisd_acl_allows(&acl, (struct sockaddr *)&ss) != cases[i].ok)
            fail_msg("%s: expected %s", cases[i].addr, cases[i].ok ? "allowed" : "refused");
    }
    /* an IPv6 block never matches IPv4 peers and the reverse */
    tamisd_acl_t v6only;
    memset(&v6only, 0, sizeof v6only);
    assert_int_equal(tamisd_acl_add(&v6only, "::/0"), 0);
    struct sockaddr_storage p = v4("1.2.3.4"), q = v6("::ffff:1.2.3.4");
    assert_false(tamisd_acl_allows(&v6only, (struct sockaddr *)&p));
    assert_false(tamisd_acl_allows(&v6only, (struct sockaddr *)&q));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),          cmocka_unit_test(test_per_ip_cap),
        cmocka_unit_test(test_conn_rate_ban), cmocka_unit_test(test_failure_ban),
        cmocka_unit_test(test_bounded_table), cmocka_unit_test(test_slow_client),
        cmocka_unit_test(test_acl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
