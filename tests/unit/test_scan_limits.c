/*
 * Unit tests of fail-safe scanning (lib/scan/limits.c): a message that runs into a limit (PCRE2
 * match limit, MIME depth and part count, decoded bytes, header count, URI count, time budget)
 * still gets a verdict from the rules that ran, with a TAMIS_LIMIT_* (or TIME_LIMIT_EXCEEDED)
 * entry in the hit list and the report, a log line naming the message, and a `score` line can
 * change or hide the entry. Real rule sets and real parsing: nothing is faked.
 */
#include "tamis/scan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BASE_RULES                                                                                 \
    "required_score 5", "use_bayes 0", "report_safe 0", "body T_WORD /\\bviagra\\b/i",             \
        "score T_WORD 6", "describe T_WORD Mentions the test word"

/* \h keeps the pattern out of the prefilter, so PCRE2 meets the backtracking (as a stock rule
 * with \h would); 30 words then '!' is 2^30 paths, far over the match limit. */
#define REDOS_RULE "body T_REDOS /^(\\w+\\h?)*\\d$/", "score T_REDOS 1"

static tamis_ruleset_t *load(const char *const *lines, size_t n)
{
    /* Tamis's default preferences: the report template and X-Spam-* headers SpamAssassin has */
    static const char *const prefs[] = {TAMIS_SOURCE_DIR "/rules/10_tamis_prefs.cf"};
    tamis_rules_source_t src = {0};
    src.paths = prefs;
    src.path_count = 1;
    src.extra_lines = lines;
    src.extra_line_count = n;
    tamis_ruleset_t *rs = NULL;
    char err[512] = "";
    int rc = tamis_rules_load(&src, &rs, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "load: %s\n", err);
    assert_int_equal(rc, 0);
    return rs;
}

static tamis_scan_t *scan(tamis_ruleset_t *rs, const char *msg, const tamis_msg_limits_t *lim,
                          double budget_ms)
{
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.hostname = "test.example";
    o.now = 1700000000;
    o.boundary_seed = 1;
    o.limits = lim;
    o.run.time_budget_ms = budget_ms;
    tamis_scan_t *s = NULL;
    char err[256] = "";
    int rc = tamis_scan_run(rs, msg, strlen(msg), &o, &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "scan: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static bool has_hit(const tamis_scan_t *s, const char *name, double *score)
{
    for (size_t i = 0; i < tamis_scan_hit_count(s); i++)
        if (strcmp(tamis_scan_hit(s, i)->name, name) == 0) {
            if (score)
                *score = tamis_scan_hit(s, i)->score;
            return true;
        }
    return false;
}

static char *text_of(const tamis_scan_t *s, int (*fn)(const tamis_scan_t *, tamis_buf_t *))
{
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(fn(s, &b), 0);
    return b.data ? b.data : strdup("");
}

static const char redos_msg[] = "From: a@example.com\nTo: b@example.com\nSubject: offer\n"
                                "Message-ID: <redos@example.com>\n\nbuy viagra now\n\n"
                                "word word word word word word word word word word word word word "
                                "word word word word word word word word word word word word word "
                                "word word word word !\n";

static void test_regex_limit(void **state)
{
    (void)state;
    const char *lines[] = {BASE_RULES, REDOS_RULE};
    tamis_ruleset_t *rs = load(lines, sizeof lines / sizeof lines[0]);
    tamis_scan_t *s = scan(rs, redos_msg, NULL, 0);
    assert_true(tamis_scan_result(s)->regex_limit_hits > 0);
    assert_true(tamis_scan_limits(s) & TAMIS_SCAN_LIMIT_REGEX);
    double sc = 0;
    assert_true(has_hit(s, "TAMIS_LIMIT_REGEX", &sc));
    assert_true(sc > 0 && sc < 0.01);
    assert_true(has_hit(s, "T_WORD", NULL)); /* the other rules still ran */
    assert_false(has_hit(s, "T_REDOS", NULL));
    assert_true(tamis_scan_is_spam(s));
    assert_string_equal(tamis_scan_score_str(s), "6.0");
    char *rep = text_of(s, tamis_scan_report);
    assert_non_null(strstr(rep, "TAMIS_LIMIT_REGEX      Some rules stopped at the regex match"));
    free(rep);
    char *hdr = text_of(s, tamis_scan_headers);
    assert_non_null(strstr(hdr, "tests=TAMIS_LIMIT_REGEX,T_WORD"));
    free(hdr);
    tamis_buf_t log;
    tamis_buf_init(&log, 0);
    assert_int_equal(tamis_scan_limits_log_line(s, "7", &log), 0);
    assert_non_null(log.data);
    assert_non_null(strstr(log.data, "mid=<redos@example.com>,id=7"));
    assert_non_null(strstr(log.data, "regex match/depth limit"));
    tamis_buf_free(&log);
    tamis_scan_free(s);
    tamis_rules_unref(rs);
}

/* No limit: no entry, no log line, nothing changes. */
static void test_no_limit(void **state)
{
    (void)state;
    const char *lines[] = {BASE_RULES, REDOS_RULE};
    tamis_ruleset_t *rs = load(lines, sizeof lines / sizeof lines[0]);
    tamis_scan_t *s = scan(rs,
                           "From: a@example.com\nSubject: hi\nMessage-ID: <ok@example.com>\n\n"
                           "buy viagra\n",
                           NULL, 0);
    assert_int_equal(tamis_scan_limits(s), 0);
    assert_int_equal(tamis_scan_hit_count(s), 1);
    tamis_buf_t log;
    tamis_buf_init(&log, 0);
    assert_int_equal(tamis_scan_limits_log_line(s, "1", &log), 0);
    assert_int_equal(log.len, 0);
    tamis_buf_free(&log);
    tamis_scan_free(s);
    tamis_rules_unref(rs);
}

/* A `score` line changes the entry; score 0 hides it (the limit is still known to the caller). */
static void test_score_override(void **state)
{
    (void)state;
    const char *lines[] = {BASE_RULES, REDOS_RULE, "score TAMIS_LIMIT_REGEX 0.5",
                           "describe TAMIS_LIMIT_REGEX Regex limit reached"};
    tamis_ruleset_t *rs = load(lines, sizeof lines / sizeof lines[0]);
    tamis_scan_t *s = scan(rs, redos_msg, NULL, 0);
    double sc = 0;
    assert_true(has_hit(s, "TAMIS_LIMIT_REGEX", &sc));
    assert_true(sc == 0.5);
    assert_true(tamis_scan_score(s) == 6.5);
    char *rep = text_of(s, tamis_scan_report);
    assert_non_null(strstr(rep, "Regex limit reached"));
    free(rep);
    tamis_scan_free(s);
    tamis_rules_unref(rs);

    const char *off[] = {BASE_RULES, REDOS_RULE, "score TAMIS_LIMIT_REGEX 0"};
    rs = load(off, sizeof off / sizeof off[0]);
    s = scan(rs, redos_msg, NULL, 0);
    assert_false(has_hit(s, "TAMIS_LIMIT_REGEX", NULL));
    assert_true(tamis_scan_limits(s) & TAMIS_SCAN_LIMIT_REGEX);
    assert_true(tamis_scan_score(s) == 6);
    tamis_scan_free(s);
    tamis_rules_unref(rs);
}

/* Nested multiparts, each level with a text part: deeper than max_mime_depth. */
static char *deep_message(unsigned depth)
{
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    tamis_buf_puts(&b, "From: a@example.com\nSubject: deep\nMessage-ID: <deep@example.com>\n"
                       "MIME-Version: 1.0\n");
    for (unsigned i = 0; i < depth; i++)
        tamis_buf_printf(&b,
                         "Content-Type: multipart/mixed; boundary=\"b%u\"\n\n--b%u\n"
                         "Content-Type: text/plain\n\nlevel %u viagra\n--b%u\n",
                         i, i, i, i);
    tamis_buf_puts(&b, "Content-Type: text/plain\n\ninnermost\n");
    for (unsigned i = depth; i-- > 0;)
        tamis_buf_printf(&b, "--b%u--\n", i);
    return b.data;
}

static void test_mime_depth_and_parts(void **state)
{
    (void)state;
    const char *lines[] = {BASE_RULES};
    tamis_ruleset_t *rs = load(lines, sizeof lines / sizeof lines[0]);
    char *deep = deep_message(30); /* default depth limit: 20 */
    tamis_scan_t *s = scan(rs, deep, NULL, 0);
    assert_true(tamis_scan_limits(s) & TAMIS_SCAN_LIMIT_MIME);
    assert_true(has_hit(s, "TAMIS_LIMIT_MIME", NULL));
    assert_true(has_hit(s, "T_WORD", NULL));
    tamis_scan_free(s);

    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    lim.max_parts = 4;
    char *shallow = deep_message(3);
    s = scan(rs, shallow, &lim, 0);
    assert_true(tamis_scan_limits(s) & TAMIS_SCAN_LIMIT_MIME);
    assert_true(has_hit(s, "TAMIS_LIMIT_MIME", NULL));
    tamis_scan_free(s);
    s = scan(rs, shallow, NULL, 0); /* within the defaults: no entry */
    assert_false(tamis_scan_limits(s) & TAMIS_SCAN_LIMIT_MIME);
    tamis_scan_free(s);
    free(deep);
    free(shallow);
    tamis_rules_unref(rs);
}

static void test_headers_uris_decoded(void **state)
{
    (void)state;
    const char *lines[] = {BASE_RULES};
    tamis_ruleset_t *rs = load(lines, sizeof lines / sizeof lines[0]);
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    lim.max_headers = 5;
    lim.max_uris = 2;
    lim.max_decoded_bytes = 16;
    const char *msg = "From: a@example.com\nTo: b@example.com\nSubject: many\nX-A: 1\nX-B: 2\n"
                      "X-C: 3\nMessage-ID: <many@example.com>\nMIME-Version: 1.0\n"
                      "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
                      "dmlhZ3JhIGF0IGh0dHA6Ly9hLmV4YW1wbGUuY29tLyBodHRwOi8vYi5leGFtcGxlLmNvbS8g\n"
                      "aHR0cDovL2MuZXhhbXBsZS5jb20vIGh0dHA6Ly9kLmV4YW1wbGUuY29tLw==\n";
    tamis_scan_t *s = scan(rs, msg, &lim, 0);
    unsigned l = tamis_scan_limits(s);
    assert_true(l & TAMIS_SCAN_LIMIT_HEADERS);
    assert_true(l & TAMIS_SCAN_LIMIT_DECODED);
    assert_true(has_hit(s, "TAMIS_LIMIT_HEADERS", NULL));
    assert_true(has_hit(s, "TAMIS_LIMIT_DECODED", NULL));
    tamis_scan_free(s);

    lim.max_headers = 1000;
    lim.max_decoded_bytes = (size_t)32 << 20;
    s = scan(rs,
             "From: a@example.com\nSubject: uris\nMessage-ID: <u@example.com>\n\n"
             "see http://a.example.com/ http://b.example.com/ http://c.example.com/ "
             "http://d.example.com/\n",
             &lim, 0);
    assert_true(tamis_scan_limits(s) & TAMIS_SCAN_LIMIT_URIS);
    assert_true(has_hit(s, "TAMIS_LIMIT_URIS", NULL));
    tamis_scan_free(s);
    tamis_rules_unref(rs);
}

/* A tiny budget: the rules run first still count, TIME_LIMIT_EXCEEDED says the rest did not. */
static void test_time_budget(void **state)
{
    (void)state;
    enum { N = 400 };
    const char *lines[8 + 2 * N];
    size_t n = 0;
    const char *base[] = {BASE_RULES};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        lines[n++] = base[i];
    lines[n++] = "priority T_WORD -10";
    static char rules[2 * N][64];
    for (int i = 0; i < N; i++) {
        snprintf(rules[2 * i], sizeof rules[0], "body T_SLOW_%d /\\bzz%dq\\h+\\w+\\b/", i, i);
        snprintf(rules[2 * i + 1], sizeof rules[0], "score T_SLOW_%d 0.5", i);
        lines[n++] = rules[2 * i];
        lines[n++] = rules[2 * i + 1];
    }
    tamis_ruleset_t *rs = load(lines, n);
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    tamis_buf_puts(&b, "From: a@example.com\nSubject: big\nMessage-ID: <big@example.com>\n\n"
                       "buy viagra now\n\n");
    for (int i = 0; i < 2000; i++)
        tamis_buf_printf(&b, "line %d with some text to match against and more words\n\n", i);
    tamis_scan_t *s = scan(rs, b.data, NULL, 5); /* ms; the slow rules take far more */
    assert_true(tamis_scan_limits(s) & TAMIS_SCAN_LIMIT_TIME);
    assert_true(tamis_scan_result(s)->time_limit_exceeded);
    assert_true(has_hit(s, "TIME_LIMIT_EXCEEDED", NULL));
    assert_true(has_hit(s, "T_WORD", NULL));
    assert_true(tamis_scan_is_spam(s));
    tamis_buf_t log;
    tamis_buf_init(&log, 0);
    tamis_scan_limits_log_line(s, NULL, &log);
    assert_non_null(strstr(log.data, "mid=<big@example.com>: scanned in part, stopped by time"));
    tamis_buf_free(&log);
    tamis_scan_free(s);
    tamis_buf_free(&b);
    tamis_rules_unref(rs);
}

/* time_limit is a real setting now (was ignored): default 300, bounded. */
static void test_time_limit_setting(void **state)
{
    (void)state;
    const char *lines[] = {BASE_RULES, "time_limit 2.5"};
    tamis_ruleset_t *rs = load(lines, sizeof lines / sizeof lines[0]);
    assert_true(tamis_rules_conf(rs)->time_limit == 2.5);
    tamis_rules_unref(rs);
    const char *dflt[] = {BASE_RULES};
    rs = load(dflt, sizeof dflt / sizeof dflt[0]);
    assert_true(tamis_rules_conf(rs)->time_limit == 300);
    tamis_rules_unref(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regex_limit),          cmocka_unit_test(test_no_limit),
        cmocka_unit_test(test_score_override),       cmocka_unit_test(test_mime_depth_and_parts),
        cmocka_unit_test(test_headers_uris_decoded), cmocka_unit_test(test_time_budget),
        cmocka_unit_test(test_time_limit_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
