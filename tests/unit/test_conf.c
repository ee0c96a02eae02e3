/* Unit tests for lib/conf: the settings table, list settings, networks, headers, dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tamis/conf.h"

static int apply(tamis_conf_t *c, const char *k, const char *v, tamis_diag_t *d)
{
    static unsigned line;
    return tamis_conf_apply(c, k, v, "test.cf", ++line, d);
}

static const tamis_conf_header_t *header(const tamis_conf_t *c, const char *name, unsigned when)
{
    for (size_t i = 0; i < c->header_count; i++)
        if (strcmp(c->headers[i].name, name) == 0 && (c->headers[i].when & when))
            return &c->headers[i];
    return NULL;
}

static void test_defaults(void **state)
{
    (void)state;
    tamis_conf_t *c = tamis_conf_new();
    assert_non_null(c);
    assert_float_equal(c->required_score, 5, 0);
    assert_int_equal(c->report_safe, 1);
    assert_true(c->fold_headers);
    assert_int_equal(c->report_wrap_width, 75);
    assert_string_equal(c->report_charset, "UTF-8");
    assert_true(c->use_bayes && c->bayes_auto_learn);
    assert_float_equal(c->bayes_auto_learn_threshold_spam, 12.0, 0);
    assert_int_equal(c->bayes_min_spam_num, 200);
    /* the four default headers, Flag for spam only */
    assert_int_equal(c->header_count, 4);
    assert_string_equal(c->headers[0].name, "Checker-Version");
    assert_non_null(header(c, "Flag", TAMIS_CONF_SPAM));
    assert_null(header(c, "Flag", TAMIS_CONF_HAM));
    assert_non_null(strstr(header(c, "Status", TAMIS_CONF_HAM)->template, "tests=_TESTS_"));
    assert_null(c->rewrite_subject);
    assert_false(c->trusted_networks.set);
    assert_false(c->authres_header);
    assert_string_equal(c->authres_serv_id, "");
    tamis_conf_free(c);
    tamis_conf_free(NULL);
}

static void test_scalars(void **state)
{
    (void)state;
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    assert_int_equal(apply(c, "required_score", "6.5", d), TAMIS_CONF_APPLIED);
    assert_float_equal(c->required_score, 6.5, 0);
    assert_int_equal(apply(c, "required_hits", "4", d), TAMIS_CONF_APPLIED);
    assert_float_equal(c->required_score, 4, 0);
    assert_int_equal(apply(c, "authres_header", "1", d), TAMIS_CONF_APPLIED);
    assert_true(c->authres_header);
    assert_int_equal(apply(c, "authres_serv_id", "mx.example.org", d), TAMIS_CONF_APPLIED);
    assert_string_equal(c->authres_serv_id, "mx.example.org");
    assert_int_equal(c->adsp_override_count, 0);
    assert_int_equal(apply(c, "adsp_override", "PayPal.com", d), TAMIS_CONF_APPLIED);
    assert_int_equal(apply(c, "adsp_override", "*.example.com custom_med", d), TAMIS_CONF_APPLIED);
    assert_int_equal(apply(c, "adsp_override", "paypal.com all", d), TAMIS_CONF_APPLIED);
    assert_int_equal(apply(c, "def_whitelist_from_dkim", "*@Example.COM example.com", d),
                     TAMIS_CONF_APPLIED);
    assert_int_equal(apply(c, "def_welcomelist_from_dkim", "*@example.com", d), TAMIS_CONF_APPLIED);
    assert_int_equal(c->def_welcomelist_from_dkim.count, 2);
    assert_string_equal(c->def_welcomelist_from_dkim.items[0].pattern, "*@example.com");
    assert_string_equal(c->def_welcomelist_from_dkim.items[0].rcvd, "example.com");
    assert_string_equal(c->def_welcomelist_from_dkim.items[1].rcvd, "");
    assert_int_equal(apply(c, "whitelist_from_spf", "a@b.c *@d.e", d), TAMIS_CONF_APPLIED);
    assert_int_equal(c->welcomelist_from_spf.count, 2);
    tamis_diag_t *d2 = tamis_diag_new();
    apply(c, "adsp_override", "x.org sometimes", d2); /* an invalid value: a warning */
    assert_int_equal(tamis_diag_count_level(d2, TAMIS_DIAG_WARN), 1);
    tamis_diag_free(d2);
    assert_int_equal(c->adsp_override_count, 2);
    assert_string_equal(c->adsp_override[0].domain, "paypal.com");
    assert_int_equal(c->adsp_override[0].practice, 'A'); /* the later entry wins */
    assert_string_equal(c->adsp_override[1].domain, "*.example.com");
    assert_int_equal(c->adsp_override[1].practice, '2');
    /* a bad value warns and keeps the old one */
    assert_int_equal(apply(c, "required_score", "lots", d), TAMIS_CONF_APPLIED);
    assert_float_equal(c->required_score, 4, 0);
    assert_int_equal(tamis_diag_count_level(d, TAMIS_DIAG_WARN), 1);
    assert_int_equal(tamis_diag_at(d, 0)->line > 0, 1);
    assert_string_equal(tamis_diag_at(d, 0)->file, "test.cf");
    apply(c, "fold_headers", "0", d);
    assert_false(c->fold_headers);
    apply(c, "use_bayes", "no", d);
    assert_false(c->use_bayes);
    apply(c, "report_safe", "3", d);
    assert_int_equal(c->report_safe, 1);
    apply(c, "envelope_sender_header", "X-Envelope-From", d);
    assert_string_equal(c->envelope_sender_header, "X-Envelope-From");
    assert_int_equal(apply(c, "no_such_setting", "1", d), TAMIS_CONF_UNKNOWN);
    assert_int_equal(apply(c, "ok_locales", "all", d), TAMIS_CONF_IGNORED);
    assert_int_equal(apply(c, "bayes_stopword_en", "a b", d), TAMIS_CONF_IGNORED);
    /* the dump shows a scalar once, with its last value and where it was set */
    apply(c, "required_score", "9", d);
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_conf_dump(c, &b), 0);
    assert_non_null(strstr(b.data, "required_score 9  # test.cf:"));
    assert_null(strstr(b.data, "required_score 6.5"));
    assert_non_null(strstr(b.data, "ok_locales all"));
    tamis_buf_free(&b);
    tamis_diag_free(d);
    tamis_conf_free(c);
}

static void test_headers(void **state)
{
    (void)state;
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    apply(c, "add_header", "all Foo \"a\\tb\\\\c\\qd\"", d);
    const tamis_conf_header_t *h = header(c, "Foo", TAMIS_CONF_ALL);
    assert_non_null(h);
    assert_string_equal(h->template, "a\tb\\cd");
    /* re-adding for ham moves the ham copy to the end; the spam copy stays */
    apply(c, "add_header", "ham Foo second", d);
    assert_string_equal(c->headers[c->header_count - 1].template, "second");
    assert_int_equal(c->headers[c->header_count - 1].when, TAMIS_CONF_HAM);
    assert_string_equal(header(c, "Foo", TAMIS_CONF_SPAM)->template, "a\tb\\cd");
    apply(c, "remove_header", "spam Foo", d);
    assert_null(header(c, "Foo", TAMIS_CONF_SPAM));
    assert_non_null(header(c, "Foo", TAMIS_CONF_HAM));
    apply(c, "remove_header", "all Checker-Version", d);
    assert_non_null(header(c, "Checker-Version", TAMIS_CONF_ALL));
    apply(c, "add_header", "bogus Foo x", d);
    assert_int_equal(tamis_diag_count_level(d, TAMIS_DIAG_WARN), 1);
    apply(c, "clear_headers", "", d);
    assert_int_equal(c->header_count, 1);
    assert_string_equal(c->headers[0].name, "Checker-Version");
    apply(c, "report_safe", "0", d);
    assert_non_null(header(c, "Report", TAMIS_CONF_SPAM));
    assert_null(header(c, "Report", TAMIS_CONF_HAM));
    apply(c, "rewrite_header", "Subject *****SPAM*****", d);
    assert_string_equal(c->rewrite_subject, "*****SPAM*****");
    apply(c, "rewrite_header", "From (spam)", d);
    assert_string_equal(c->rewrite_from, "[spam]");
    apply(c, "rewrite_header", "Subject", d);
    assert_null(c->rewrite_subject);
    apply(c, "report", "line one", d);
    apply(c, "report", "\" pts rule\"", d);
    assert_string_equal(c->report_template, "line one\n pts rule\n");
    apply(c, "clear_report_template", "", d);
    assert_string_equal(c->report_template, "");
    tamis_diag_free(d);
    tamis_conf_free(c);
}

static void test_networks(void **state)
{
    (void)state;
    tamis_cidr_t e;
    assert_int_equal(tamis_conf_cidr_parse("10.", &e), 0);
    assert_int_equal(e.prefix, 8);
    assert_int_equal(tamis_conf_cidr_parse("127/8", &e), 0);
    assert_int_equal(e.prefix, 8);
    assert_int_equal(tamis_conf_cidr_parse("[2001:db8::]/32", &e), 0);
    assert_int_equal(e.family, AF_INET6);
    assert_int_equal(tamis_conf_cidr_parse("!192.168.1.5", &e), 0);
    assert_true(e.exclude);
    assert_int_equal(e.prefix, 32);
    assert_int_not_equal(tamis_conf_cidr_parse("300.1.1.1", &e), 0);
    assert_int_not_equal(tamis_conf_cidr_parse("1.2.3.4/33", &e), 0);
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    apply(c, "trusted_networks", "!10.1.2.3 10. 192.168.0.0/16 2001:db8::/32 bogus", d);
    assert_true(c->trusted_networks.set);
    assert_int_equal(c->trusted_networks.count, 4);
    assert_int_equal(tamis_diag_count_level(d, TAMIS_DIAG_WARN), 1);
    assert_true(tamis_conf_cidr_match(&c->trusted_networks, "10.9.9.9"));
    assert_false(tamis_conf_cidr_match(&c->trusted_networks, "10.1.2.3"));
    assert_true(tamis_conf_cidr_match(&c->trusted_networks, "192.168.44.1"));
    assert_true(tamis_conf_cidr_match(&c->trusted_networks, "[2001:db8::1]"));
    assert_true(tamis_conf_cidr_match(&c->trusted_networks, "::ffff:10.0.0.1"));
    assert_false(tamis_conf_cidr_match(&c->trusted_networks, "11.0.0.1"));
    apply(c, "clear_trusted_networks", "", d);
    assert_false(c->trusted_networks.set);
    assert_int_equal(c->trusted_networks.count, 0);
    tamis_diag_free(d);
    tamis_conf_free(c);
}

static void test_lists(void **state)
{
    (void)state;
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    apply(c, "whitelist_from", "*@Example.COM friend@x.org", d);
    apply(c, "welcomelist_from", "other@y.net", d);
    assert_int_equal(c->welcomelist_from.count, 3);
    assert_string_equal(c->welcomelist_from.items[0].pattern, "*@example.com");
    apply(c, "unwhitelist_from", "friend@x.org", d);
    assert_int_equal(c->welcomelist_from.count, 2);
    assert_true(tamis_conf_addr_match("*@example.com", "Joe@EXAMPLE.com"));
    assert_false(tamis_conf_addr_match("*@example.com", "joe@example.com.evil"));
    assert_true(tamis_conf_addr_match("?oe@x.org", "joe@x.org"));
    apply(c, "welcomelist_from_rcvd", "a@b.com mx.b.com", d);
    apply(c, "welcomelist_from_rcvd", "a@b.com mx2.b.com", d);
    assert_int_equal(c->welcomelist_from_rcvd.count, 1);
    assert_string_equal(c->welcomelist_from_rcvd.items[0].rcvd, "mx2.b.com");
    apply(c, "blacklist_from", "bad@spam.com", d);
    assert_int_equal(c->blocklist_from.count, 1);
    apply(c, "enlist_addrlist", "(PAYPAL) *@paypal.com *@paypal.co.uk", d);
    apply(c, "enlist_addrlist", "(PAYPAL) *@paypal.de", d);
    assert_int_equal(c->addrlist_count, 1);
    assert_string_equal(c->addrlists[0].name, "PAYPAL");
    assert_int_equal(c->addrlists[0].list.count, 3);
    apply(c, "enlist_uri_host", "(SHORT) bit.ly t.co", d);
    apply(c, "delist_uri_host", "(SHORT) t.co", d);
    assert_int_equal(c->uri_host_lists[0].list.count, 1);
    /* many entries load quickly (no quadratic duplicate search) */
    char buf[64];
    for (int i = 0; i < 20000; i++) {
        snprintf(buf, sizeof(buf), "d%d.example", i);
        apply(c, "freemail_domains", buf, d);
    }
    assert_int_equal(c->freemail_domains.count, 20000);
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_conf_dump(c, &b), 0);
    assert_non_null(strstr(b.data, "enlist_addrlist (PAYPAL) *@paypal.de  # test.cf:"));
    tamis_buf_free(&b);
    tamis_diag_free(d);
    tamis_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_headers),  cmocka_unit_test(test_networks),
        cmocka_unit_test(test_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
