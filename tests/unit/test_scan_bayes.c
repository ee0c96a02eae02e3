/*
 * Bayes inside a scan (lib/scan/bayes.c): AutoLearnThreshold's decision on hand-made results, then
 * whole scans against a temporary store: auto-learn statuses as _AUTOLEARN_ prints them, no
 * Bayes effect before bayes_min_*_num messages are learned, BAYES_ rules and tags after.
 */
#include "../../lib/scan/scan_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static tamis_rules_result_t res(double points, double head, double body, double learned,
                                unsigned force)
{
    tamis_rules_result_t r;
    memset(&r, 0, sizeof r);
    r.autolearn_points = points;
    r.autolearn_points_head = head;
    r.autolearn_points_body = body;
    r.learned_points = learned;
    r.autolearn_force = force;
    return r;
}

static void test_decide(void **state)
{
    (void)state;
    tamis_conf_t *c = tamis_conf_new();
    assert_non_null(c);
    tamis_rules_result_t r;
    /* ham: below 0.1, not spam, learned_points <= 1 */
    r = res(0.0, 0, 0, 0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, false), 0);
    r = res(-2.0, 0, 0, 1.0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, false), 0);
    r = res(0.1, 0, 0, 0, 0); /* the threshold itself is not below it */
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, false), -1);
    r = res(-1.0, 0, 0, 1.5, 0); /* Bayes already says spam */
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, false), -1);
    r = res(-1.0, 0, 0, 0, 0); /* final verdict spam (e.g. Bayes points) */
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), -1);
    /* spam: >= 12, 3 head and 3 body points, learned_points >= -1, verdict spam */
    r = res(12.0, 3.0, 3.0, 0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), 1);
    r = res(11.999, 6.0, 6.0, 0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), -1);
    r = res(15.0, 2.9, 12.1, 0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), -1);
    r = res(15.0, 12.1, 2.9, 0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), -1);
    r = res(15.0, 12.1, 2.9, 0, 1); /* autolearn_force waives the head/body minimums */
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), 1);
    r = res(15.0, 6.0, 9.0, -1.5, 0); /* Bayes says ham */
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), -1);
    r = res(15.0, 6.0, 9.0, -1.0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), 1);
    r = res(15.0, 6.0, 9.0, 0, 0); /* not spam in the end (e.g. welcomelist) */
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, false), -1);
    /* other thresholds */
    c->bayes_auto_learn_threshold_nonspam = -1.0;
    c->bayes_auto_learn_threshold_spam = 6.0;
    r = res(0.0, 0, 0, 0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, false), -1);
    r = res(7.0, 3.5, 3.5, 0, 0);
    assert_int_equal(tamis__scan_autolearn_decide(c, &r, true), 1);
    tamis_conf_free(c);
}

/* ---- whole scans ------------------------------------------------------------------------------
 */

static const char *rules_cf =
    "required_score 5\n"
    "report_safe 0\n"
    "add_header all Status \"_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_ "
    "autolearn=_AUTOLEARN_ version=_VERSION_\"\n"
    "bayes_min_spam_num 3\nbayes_min_ham_num 3\n"
    "header T_HEAD Subject =~ /jackpot/i\nscore T_HEAD 7\n"
    "body T_BODY /casino bonus/i\nscore T_BODY 7\n"
    "body T_MID /midrange/i\nscore T_MID 3\n"
    "body T_NICE /meeting agenda/i\nscore T_NICE -1\n"
    "body BAYES_00 eval:check_bayes('0.00', '0.01')\ntflags BAYES_00 nice learn\n"
    "score BAYES_00 0 0 -1.5 -1.9\n"
    "body BAYES_99 eval:check_bayes('0.99', '1.00')\ntflags BAYES_99 learn\n"
    "score BAYES_99 0 0 3.8 3.5\n";

typedef struct {
    char dir[64];
    tamis_ruleset_t *rs;
    tamis_bayes_t *b;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tamis-scan-bayes-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char p[128];
    snprintf(p, sizeof p, "%s/rules.cf", f->dir);
    FILE *fp = fopen(p, "w");
    fputs(rules_cf, fp);
    fclose(fp);
    const char *paths[] = {p};
    tamis_rules_source_t src = {.paths = paths, .path_count = 1};
    char err[256];
    if (tamis_rules_load(&src, &f->rs, NULL, err, sizeof err) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/bayes", f->dir);
    tamis_bayes_options_t bo;
    tamis_bayes_options_default(&bo);
    bo.no_sync = true;
    if (tamis_bayes_open(p, &bo, &f->b, err, sizeof err) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    tamis_bayes_close(f->b);
    tamis_rules_unref(f->rs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static char *msg(const char *subject, const char *body, int n)
{
    char *m = malloc(1024);
    snprintf(m, 1024,
             "From: sender%d@example.com\nTo: rcpt@example.net\nSubject: %s\n"
             "Message-ID: <m%d-%s@example.com>\nDate: Mon, 2 Sep 2002 11:26:15 -0400\n\n%s\n",
             n, subject, n, subject[0] == 'J' ? "s" : "h", body);
    return m;
}

static tamis_scan_t *scan(fx_t *f, const char *m, bool with_store)
{
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.hostname = "test.example";
    o.local_only = true;
    o.bayes = with_store ? f->b : NULL;
    tamis_scan_t *s = NULL;
    char err[256];
    assert_int_equal(tamis_scan_run(f->rs, m, strlen(m), &o, &s, err, sizeof err), 0);
    return s;
}

static void expect_tag(tamis_scan_t *s, const char *tmpl, const char *want)
{
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_scan_expand(s, tmpl, &b), 0);
    assert_string_equal(b.data ? b.data : "", want);
    tamis_buf_free(&b);
}

static void test_autolearn_scans(void **state)
{
    fx_t *f = *state;
    char *spam = msg("Jackpot", "casino bonus for you", 1);
    char *mid = msg("Hello", "a midrange message", 2);
    char *ham = msg("Agenda", "the meeting agenda is attached", 3);
    /* no store: as without Bayes */
    tamis_scan_t *s = scan(f, spam, false);
    expect_tag(s, "_AUTOLEARN_", "disabled");
    expect_tag(s, "_BAYES_ _TOKENSUMMARY_", "0.5 Bayes not run.");
    tamis_scan_free(s);
    /* empty store: learns; no Bayes score yet; Tamis's hint says why */
    s = scan(f, spam, true);
    expect_tag(s, "_AUTOLEARN_", "spam autolearn_force=no");
    expect_tag(s, "_BAYES_|_TOKENSUMMARY_|_BAYESSTATUS_",
               "0.5|Bayes not run.|Bayes: 0/3 spam, 0/3 ham learned");
    tamis_scan_free(s);
    s = scan(f, spam, true); /* already learned: SpamAssassin leaves the status unset */
    expect_tag(s, "_AUTOLEARN_", "unavailable autolearn_force=no");
    tamis_scan_free(s);
    s = scan(f, mid, true);
    expect_tag(s, "_AUTOLEARN_", "no autolearn_force=no");
    tamis_scan_free(s);
    s = scan(f, ham, true);
    expect_tag(s, "_AUTOLEARN_", "ham autolearn_force=no");
    tamis_scan_free(s);
    /* train up to the minimums */
    for (int i = 10; i < 14; i++) {
        char t[64]; /* SA's message id hashes To, Date and the body: vary the body */
        snprintf(t, sizeof t, "casino bonus winnings tonight %d", i);
        char *a = msg("Jackpot", t, i);
        snprintf(t, sizeof t, "the meeting agenda minutes %d", i);
        char *b = msg("Agenda", t, i + 100);
        tamis_scan_free(scan(f, a, true));
        tamis_scan_free(scan(f, b, true));
        free(a);
        free(b);
    }
    tamis_bayes_magic_t mg;
    char err[256];
    assert_int_equal(tamis_bayes_magic(f->b, &mg, err, sizeof err), 0);
    assert_true(mg.nspam >= 3 && mg.nham >= 3);
    char *spam2 = msg("Jackpot", "casino bonus winnings again", 50);
    s = scan(f, spam2, true);
    bool b99 = false;
    for (size_t i = 0; i < tamis_scan_hit_count(s); i++)
        b99 |= !strcmp(tamis_scan_hit(s, i)->name, "BAYES_99");
    assert_true(b99);
    tamis_bayes_result_t br;
    assert_true(tamis_scan_bayes(s, &br));
    assert_int_equal(br.status, TAMIS_BAYES_OK);
    assert_true(br.prob > 0.99);
    expect_tag(s, "_BAYESSTATUS_", "");
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_scan_expand(s, "_TOKENSUMMARY_ _SPAMMYTOKENS(2,short)_", &b), 0);
    assert_non_null(strstr(b.data, "Tokens: new, "));
    tamis_buf_free(&b);
    tamis_scan_free(s);
    free(spam2);
    free(spam);
    free(mid);
    free(ham);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test_setup_teardown(test_autolearn_scans, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
