/*
 * Loads SpamAssassin's stock rules as Debian installs them (/usr/share/spamassassin and
 * /etc/spamassassin) and checks counts, that no error occurs, that no rule is dropped, and a few
 * corpus messages against the hits SpamAssassin 4.0.1 reports for them (`spamassassin -L -t`).
 * Skipped when the stock rules are not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tamis/rules.h"

static tamis_ruleset_t *stock;
static tamis_diag_t *stock_diag;
static double stock_ms;

static int setup(void **state)
{
    (void)state;
    struct stat sb;
    if (stat("/usr/share/spamassassin/72_active.cf", &sb) != 0)
        return 0;
    tamis_rules_source_t src = {.default_rules_dir = "/usr/share/spamassassin",
                                .site_rules_dir = "/etc/spamassassin",
                                .locale = "C"};
    stock_diag = tamis_diag_new();
    char err[256];
    double t0 = tamis_now_ms();
    int rc = tamis_rules_load(&src, &stock, stock_diag, err, sizeof(err));
    stock_ms = tamis_now_ms() - t0;
    if (rc)
        fprintf(stderr, "stock load failed: %s\n", err);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    tamis_rules_unref(stock);
    tamis_diag_free(stock_diag);
    return 0;
}

static void test_stock_counts(void **state)
{
    (void)state;
    if (!stock)
        skip();
    assert_int_equal(tamis_diag_count_level(stock_diag, TAMIS_DIAG_ERROR), 0);
    /* the only warnings are unsupported plugins */
    for (size_t i = 0; i < tamis_diag_count(stock_diag); i++) {
        const tamis_diag_entry_t *e = tamis_diag_at(stock_diag, i);
        if (e->level == TAMIS_DIAG_WARN && !strstr(e->text, "is not supported by Tamis"))
            fail_msg("unexpected warning %s:%u %s", e->file, e->line, e->text);
    }
    size_t n = tamis_rules_count(stock);
    assert_true(n > 2500 && n < 3000);
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_rules_lint(stock, &b), 0);
    assert_non_null(strstr(b.data, " 0 dropped"));
    size_t meta = 0, header = 0, body = 0, uri = 0;
    assert_int_equal(sscanf(strstr(b.data, "header:"), "header: %zu", &header), 1);
    assert_int_equal(sscanf(strstr(b.data, " body:"), " body: %zu", &body), 1);
    assert_int_equal(sscanf(strstr(b.data, "meta:"), "meta: %zu", &meta), 1);
    assert_int_equal(sscanf(strstr(b.data, "uri:"), "uri: %zu", &uri), 1);
    assert_true(meta > 850 && header > 600 && body > 550 && uri > 140);
    fprintf(stderr, "stock: %zu rules in %.0f ms\n%s", n, stock_ms, b.data);
    tamis_buf_free(&b);
    const tamis_conf_t *c = tamis_rules_conf(stock);
    assert_float_equal(c->required_score, 5, 0);
    assert_true(c->report_template && strstr(c->report_template, "_SUMMARY_"));
    assert_true(c->freemail_domains.count > 1000);
}

/* One corpus message and the tests= list SpamAssassin 4.0.1 gives it with -L (score set 0)
 * restricted to rules whose evals Tamis implements. */
typedef struct {
    const char *path;
    const char *must_hit[8];
    const char *must_not_hit[4];
} case_t;

static const case_t cases[] = {
    {"spam-1/00003.2ee33bc6eacdb11f38d052c44819ba6c.txt", {"DIET_1", "SUBJECT_DIET", NULL}, {NULL}},
    {"spam-1/00009.027bf6e0b0c4ab34db3ce0ea4bf2edab.txt",
     {"LOTS_OF_MONEY", "MONEY_FORM_SHORT", "MONEY_NOHTML", "T_FILL_THIS_FORM_SHORT", NULL},
     {NULL}},
    {"spam-1/00015.048434ab64c86cf890eda1326a5643f5.txt",
     {"FILL_THIS_FORM", "FILL_THIS_FORM_LONG", "HTML_MESSAGE", "MIME_HTML_ONLY", "MIXED_HREF_CASE",
      "RATWARE_OUTLOOK_NONAME", NULL},
     {"T_FILL_THIS_FORM_SHORT", NULL}},
};

static void test_stock_corpus(void **state)
{
    (void)state;
    if (!stock)
        skip();
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char path[1024], err[256];
        snprintf(path, sizeof(path), "%s/corpus/data/%s", TAMIS_SOURCE_DIR, cases[k].path);
        char *data;
        size_t len;
        if (tamis_read_file(path, 64u << 20, &data, &len, err, sizeof(err)) != 0)
            skip(); /* corpus not fetched */
        tamis_msg_t *m;
        assert_int_equal(tamis_msg_parse(data, len, NULL, &m, err, sizeof(err)), 0);
        tamis_arena_t *a = tamis_arena_new(0);
        tamis_rules_run_opts_t o = {.score_set = 0};
        tamis_rules_result_t r;
        assert_int_equal(tamis_rules_run(stock, m, &o, a, &r, err, sizeof(err)), 0);
        for (size_t i = 0; cases[k].must_hit[i]; i++) {
            bool found = false;
            for (size_t j = 0; j < r.hit_count; j++)
                found |= strcmp(r.hits[j].name, cases[k].must_hit[i]) == 0;
            if (!found)
                fail_msg("%s: %s did not hit", cases[k].path, cases[k].must_hit[i]);
        }
        for (size_t i = 0; cases[k].must_not_hit[i]; i++)
            for (size_t j = 0; j < r.hit_count; j++)
                if (strcmp(r.hits[j].name, cases[k].must_not_hit[i]) == 0)
                    fail_msg("%s: %s hit", cases[k].path, cases[k].must_not_hit[i]);
        assert_int_equal(r.regex_limit_hits, 0);
        tamis_arena_free(a);
        tamis_msg_free(m);
        free(data);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stock_counts),
        cmocka_unit_test(test_stock_corpus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
