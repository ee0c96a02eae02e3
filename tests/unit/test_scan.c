/*
 * Unit tests of lib/scan's formatting half on hand-made results (no rule engine): Util::wrap,
 * header folding, RFC 2047 encoding, the display score, Message.pm's split, template tags, report
 * lines and the in-place rewrite. Expected strings were produced by SpamAssassin 4.0.1's own
 * functions (Util::wrap, PerMsgStatus::_process_header, mime_encode_header) or copied from its
 * output (the .out files of tests/golden/scan).
 */
#include "../../lib/scan/scan_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- a hand-made scan ------------------------------------------------------------------------ */

static tamis_conf_header_t default_headers[] = {
    {TAMIS_CONF_ALL, "Checker-Version", "SpamAssassin _VERSION_ (_SUBVERSION_) on _HOSTNAME_"},
    {TAMIS_CONF_SPAM, "Flag", "_YESNOCAPS_"},
    {TAMIS_CONF_ALL, "Level", "_STARS(*)_"},
    {TAMIS_CONF_ALL, "Status",
     "_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_ autolearn=_AUTOLEARN_ "
     "version=_VERSION_"},
    {TAMIS_CONF_SPAM, "Report", "_REPORT_"},
};

static tamis_hit_t hits[] = {
    {"TST_SUBJ",
     "Subject talks about watches, which is what this rather long description is all about", 3.5, 1,
     TAMIS_RULE_HEADER, 0, NULL},
    {"TST_BODY", "Body mentions cheap things", 1.6, 1, TAMIS_RULE_BODY, 0,
     "a detail text long enough to be cut into two pieces of the report"},
    {"TST_BIG", "Sent to the big user", 12, 1, TAMIS_RULE_HEADER, 0, NULL},
    {"TST_NEG", "From a nice domain", -0.3, 1, TAMIS_RULE_HEADER, TAMIS_TFLAG_NOLOG, "secret"},
};

static const char *subtests[] = {"__B", "__A", "__B"};

static const char msg_text[] = "From a@example.com  Mon Jan  1 00:00:00 2024\n"
                               "Return-Path: <a@example.com>\n"
                               "X-Spam-Status: Yes, old\n"
                               "\tcontinued\n"
                               "From: A <a@example.com>\n"
                               "Subject: Hello there\n"
                               "X-Spam-Prev-Subject: kept\n"
                               "\n"
                               "Body line\n";

typedef struct {
    tamis_conf_t conf;
    tamis_scan_t s;
} fake_t;

static fake_t *fake_new(const char *data, double score, bool spam)
{
    fake_t *f = calloc(1, sizeof(*f));
    f->conf.required_score = 5;
    f->conf.report_safe = 0;
    f->conf.fold_headers = true;
    f->conf.report_wrap_width = 75;
    f->conf.headers = default_headers;
    f->conf.header_count = 5;
    f->conf.report_template = "Score _SCORE_ of _REQD_\n_SUMMARY_";
    f->conf.report_contact = "postmaster";
    f->conf.report_hostname = "";
    f->conf.report_charset = "UTF-8";
    tamis_scan_t *s = &f->s;
    s->arena = tamis_arena_new(0);
    s->conf = &f->conf;
    s->data = data;
    s->len = strlen(data);
    s->score = score;
    s->required = 5;
    s->is_spam = spam;
    s->result.hits = hits;
    s->result.hit_count = 4;
    s->result.subtests = subtests;
    s->result.subtest_count = 3;
    s->hostname = "vm";
    s->now = 1700000000;
    static tamis_slice_t lines[] = {{"Hello friend.\n", 14}, {"Second line.\n", 13}};
    s->preview_lines[0] = lines[0];
    s->preview_lines[1] = lines[1];
    s->preview_line_count = 2;
    assert_int_equal(tamis__pristine_split(data, s->len, s->arena, &s->pr), 0);
    assert_int_equal(tamis__scan_prepare(s), 0);
    return f;
}

static void fake_free(fake_t *f)
{
    tamis_arena_free(f->s.arena);
    free(f);
}

static char *expand(const tamis_scan_t *s, const char *t)
{
    static char out[4096];
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_scan_expand(s, t, &b), 0);
    snprintf(out, sizeof out, "%s", b.data ? b.data : "");
    tamis_buf_free(&b);
    return out;
}

/* ---- text.c ---------------------------------------------------------------------------------- */

static void test_wrap(void **state)
{
    (void)state;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    const char *d =
        "Subject talks about watches, which is what this rather long description is all about";
    tamis__scan_wrap(&b, d, strlen(d), "                            ", "               ", 75, false,
                     false);
    assert_string_equal(b.data,
                        "               Subject talks about watches, which is what this "
                        "rather long\n                            description is all about");
    tamis_buf_reset(&b);
    /* "0" is false in Perl: wrap() of "0" is just the first line */
    tamis__scan_wrap(&b, "0", 1, "  ", "Content preview:  ", 75, true, false);
    assert_string_equal(b.data, "Content preview:  ");
    tamis_buf_free(&b);
}

static void test_fold_and_encode(void **state)
{
    (void)state;
    const char *v = "Yes, score=18.4 required=5.0 tests=TST_BIG,TST_BODY,TST_FULL,"
                    "TST_LONG_RULE_NAME_NUMBER_FIVE,TST_LONG_RULE_NAME_NUMBER_FOUR,"
                    "TST_LONG_RULE_NAME_NUMBER_ONE,TST_LONG_RULE_NAME_NUMBER_THREE,"
                    "TST_LONG_RULE_NAME_NUMBER_TWO,TST_META,TST_NEG,TST_NODESC,TST_RAW,"
                    "TST_SUBJ autolearn=disabled version=4.0.1\n";
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis__scan_fold_header(&b, "Status", v, strlen(v), true), 0);
    assert_string_equal(b.data,
                        "Yes, score=18.4 required=5.0 tests=TST_BIG,TST_BODY,TST_FULL,\n"
                        "\tTST_LONG_RULE_NAME_NUMBER_FIVE,TST_LONG_RULE_NAME_NUMBER_FOUR,\n"
                        "\tTST_LONG_RULE_NAME_NUMBER_ONE,TST_LONG_RULE_NAME_NUMBER_THREE,\n"
                        "\tTST_LONG_RULE_NAME_NUMBER_TWO,TST_META,TST_NEG,TST_NODESC,TST_RAW,\n"
                        "\tTST_SUBJ autolearn=disabled version=4.0.1");
    tamis_buf_reset(&b);
    /* explicit newlines: blanks around them become one "\n\t" */
    tamis__scan_fold_header(&b, "Report", "\n* 1.0 A  \n  * 2.0 B\n\n", 20, true);
    assert_string_equal(b.data, "\n\t* 1.0 A\n\t* 2.0 B");
    tamis_buf_reset(&b);
    tamis__scan_fold_header(&b, "Report", "a\nb\n", 4, false);
    assert_string_equal(b.data, "a b");
    tamis_buf_reset(&b);
    const char *g = "Gr\xc3\xbc\xc3\x9f"
                    "e Yes from vm";
    tamis__scan_mime_encode(&b, g, strlen(g));
    assert_string_equal(b.data, "=?UTF-8?B?R3LDvMOfZQ==?= Yes from vm");
    tamis_buf_reset(&b);
    const char *q = "caf\xc3\xa9 ok";
    tamis__scan_mime_encode(&b, q, strlen(q));
    assert_string_equal(b.data, "=?UTF-8?Q?caf=C3=A9?= ok");
    tamis_buf_free(&b);
}

static void test_display_score(void **state)
{
    (void)state;
    char b[32];
    tamis__scan_display_score(b, sizeof b, 4.96, 5, false);
    assert_string_equal(b, "4.9"); /* a ham never shows the threshold */
    tamis__scan_display_score(b, sizeof b, 4.95, 5, false);
    assert_string_equal(b, "4.9");
    tamis__scan_display_score(b, sizeof b, 5.0, 5, true);
    assert_string_equal(b, "5.0");
    tamis__scan_display_score(b, sizeof b, 3.04, 5, false);
    assert_string_equal(b, "3.0");
    tamis__scan_display_score(b, sizeof b, -0.04, 5, false);
    assert_string_equal(b, "-0.0");
    tamis__scan_display_score(b, sizeof b, 0.04, 0, false);
    assert_string_equal(b, "-0.1");
    tamis__scan_perl_num(b, sizeof b, 1.50);
    assert_string_equal(b, "1.5");
}

static int hexval(int c)
{
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

static size_t unhex(const char *h, char *out)
{
    size_t n = 0;
    if (strcmp(h, "-") == 0)
        return 0;
    for (; h[0] && h[1]; h += 2)
        out[n++] = (char)(hexval(h[0]) * 16 + hexval(h[1]));
    return n;
}

/* tests/golden/scan/text-cases.txt: random strings with what SpamAssassin's own functions made
 * of them (w: wrap as the preview does, d: wrap as report descriptions, h: _process_header then
 * mime_encode_header). */
static void test_text_cases_from_perl(void **state)
{
    (void)state;
    FILE *f = fopen(TAMIS_SOURCE_DIR "/tests/golden/scan/text-cases.txt", "r");
    assert_non_null(f);
    static char line[1 << 20], in[1 << 19], want[1 << 19];
    size_t count = 0;
    while (fgets(line, sizeof line, f)) {
        char *mode = strtok(line, " \n"), *hin = strtok(NULL, " \n"), *hout = strtok(NULL, " \n");
        assert_non_null(hout);
        size_t n = unhex(hin, in), wn = unhex(hout, want);
        tamis_buf_t b, t;
        tamis_buf_init(&b, 0);
        tamis_buf_init(&t, 0);
        if (*mode == 'w') {
            tamis__scan_wrap(&b, in, n, "  ", "Content preview:  ", 75, true, false);
        } else if (*mode == 'd') {
            tamis__scan_wrap(&b, in, n, "*      ", "              ", 75, false, false);
        } else {
            tamis__scan_fold_header(&t, "Status", in, n, true);
            tamis__scan_mime_encode(&b, t.data ? t.data : "", t.len);
        }
        assert_int_equal(b.len, wn);
        assert_memory_equal(b.data ? b.data : "", want, wn);
        tamis_buf_free(&b);
        tamis_buf_free(&t);
        count++;
    }
    fclose(f);
    assert_true(count > 100);
}

/* ---- pristine.c ------------------------------------------------------------------------------ */

static void test_pristine(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(0);
    tamis__pristine_t p;
    assert_int_equal(tamis__pristine_split(msg_text, strlen(msg_text), a, &p), 0);
    assert_int_equal(p.mbox.len, 45);
    assert_false(p.crlf);
    assert_string_equal(p.body.ptr, "Body line\n");
    assert_string_equal(tamis__pristine_header(&p, "x-spam-status", -1, a),
                        "Yes, old\n\tcontinued\n");
    assert_null(tamis__pristine_header(&p, "Cc", -1, a));
    /* "From :" is obsolete header syntax, not an mbox separator; "--" starts the body */
    const char *m2 = "From : x\r\nA: b\n--bound\r\nrest\r\n";
    assert_int_equal(tamis__pristine_split(m2, strlen(m2), a, &p), 0);
    assert_int_equal(p.mbox.len, 0);
    assert_true(p.crlf);
    assert_string_equal(p.headers, "From : x\r\nA: b\r\n");
    assert_string_equal(p.body.ptr, "--bound\r\nrest\r\n");
    /* four malformed lines: the fourth starts the body */
    const char *m3 = "a\nb\nc\nd\ne\n";
    assert_int_equal(tamis__pristine_split(m3, strlen(m3), a, &p), 0);
    assert_string_equal(p.headers, "a\nb\nc\n");
    assert_int_equal(tamis__pristine_split("", 0, a, &p), 0);
    assert_string_equal(p.headers, "\n");
    tamis_arena_free(a);
}

/* ---- tags.c ---------------------------------------------------------------------------------- */

static void test_tags(void **state)
{
    (void)state;
    fake_t *f = fake_new(msg_text, 16.801, true);
    tamis_scan_t *s = &f->s;
    assert_string_equal(expand(s, "_YESNO_/_YESNOCAPS_/_YESNO(a,b)_/_YESNO(, NOT)_"), "Yes/YES/a/");
    assert_string_equal(expand(s, "_SCORE_ _SCORE(00)_ _SCORE(  )_ _REQD_ _HITS_"),
                        "16.8 016.8  16.8 5.0 16.8");
    assert_string_equal(expand(s, "_STARS_|_STARS(x)_"), "****************|xxxxxxxxxxxxxxxx");
    assert_string_equal(expand(s, "_TESTS_ _TESTS(;)_"),
                        "TST_BIG,TST_BODY,TST_NEG,TST_SUBJ TST_BIG;TST_BODY;TST_NEG;TST_SUBJ");
    assert_string_equal(expand(s, "_TESTSSCORES_"),
                        "TST_BIG=12,TST_BODY=1.6,TST_NEG=-0.3,TST_SUBJ=3.5");
    assert_string_equal(expand(s, "_SUBTESTS_ _SUBTESTSCOLLAPSED_"), "__A,__B,__B __A,__B(2)");
    assert_string_equal(expand(s, "_VERSION_ _SUBVERSION_ _HOSTNAME_ _REMOTEHOSTADDR_"),
                        "4.0.1 Tamis " TAMIS_VERSION " vm 127.0.0.1");
    /* unknown tags, ADDEDHEADER and broken syntax stay as they are */
    assert_string_equal(expand(s, "_FOO_ _ADDEDHEADER_ [_LANGUAGES_] _SCORE _a_ __ _SCORE(0_"),
                        "_FOO_ _ADDEDHEADER_ [] _SCORE _a_ __ _SCORE(0_");
    /* the name part backtracks: _YESNO_BAR is YESNO followed by "BAR" */
    assert_string_equal(expand(s, "_YESNO_BAR x"), "YesBAR x");
    assert_string_equal(expand(s, "[_HEADER(Subject)_] [_HEADER(X-None)_] [_HEADER(From:addr)_]"),
                        "[Hello there\n] [] [a@example.com]");
    assert_string_equal(expand(s, "_AUTHORDOMAIN_ _SENDERDOMAIN_"), "example.com example.com");
    assert_string_equal(expand(s, "_AUTOLEARN_ _BAYES_ _CONTACTADDRESS_"),
                        "disabled 0.5 postmaster");
    assert_string_equal(expand(s, "_PREVIEW_"), "Hello friend. Second line. ");
    fake_free(f);
    f = fake_new(msg_text, 4.96, false);
    assert_string_equal(expand(&f->s, "_YESNO_ _SCORE_ _STARS_|_YESNO(, NOT)_"),
                        "No 4.9 ****| NOT");
    fake_free(f);
}

static void test_report_lines(void **state)
{
    (void)state;
    fake_t *f = fake_new(msg_text, 16.8, true);
    tamis_scan_t *s = &f->s;
    /* score descending, then name; "%4.0f" from 10 up; log details cut at 30..48 bytes */
    assert_string_equal(
        s->summary,
        "  12 TST_BIG                Sent to the big user\n"
        " 3.5 TST_SUBJ               Subject talks about watches, which is what this rather "
        "long\n"
        "                            description is all about\n"
        " 1.6 TST_BODY               BODY: Body mentions cheap things\n"
        "                            [a detail text long enough to be cut into two]\n"
        "                            [pieces of the report]\n"
        "-0.3 TST_NEG                From a nice domain\n"
        "                            [*REDACTED*]\n");
    assert_string_equal(s->terse,
                        "*   12 TST_BIG Sent to the big user\n"
                        "*  3.5 TST_SUBJ Subject talks about watches, which is what this rather "
                        "long\n"
                        "*       description is all about\n"
                        "*  1.6 TST_BODY BODY: Body mentions cheap things\n"
                        "*      [a detail text long enough to be cut into two]\n"
                        "[pieces of the report]\n"
                        "* -0.3 TST_NEG From a nice domain\n"
                        "*      [*REDACTED*]\n");
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_scan_report(s, &b), 0);
    assert_int_equal(strncmp(b.data, "Score 16.8 of 5.0\n  12 TST_BIG", 30), 0);
    assert_int_equal(strcmp(b.data + b.len - 3, "]\n\n"), 0); /* ends in exactly "\n\n" */
    tamis_buf_reset(&b);
    assert_int_equal(tamis_scan_symbols(s, &b), 0);
    assert_string_equal(b.data, "TST_BIG,TST_BODY,TST_NEG,TST_SUBJ");
    tamis_buf_free(&b);
    fake_free(f);
}

/* ---- rewrite.c ------------------------------------------------------------------------------- */

static void test_rewrite_ham(void **state)
{
    (void)state;
    fake_t *f = fake_new(msg_text, 1.0, false);
    f->conf.header_count = 4;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_scan_rewrite(&f->s, &b), 0);
    assert_string_equal(b.data, "From a@example.com  Mon Jan  1 00:00:00 2024\n"
                                "Return-Path: <a@example.com>\n"
                                "X-Spam-Checker-Version: SpamAssassin 4.0.1 (Tamis " TAMIS_VERSION
                                ") on vm\n"
                                "X-Spam-Level: *\n"
                                "X-Spam-Status: No, score=1.0 required=5.0 tests=TST_BIG,TST_BODY,"
                                "TST_NEG,\n\tTST_SUBJ autolearn=disabled version=4.0.1\n"
                                "From: A <a@example.com>\n"
                                "Subject: Hello there\n"
                                "X-Spam-Prev-Subject: kept\n"
                                "\n"
                                "Body line\n");
    tamis_buf_free(&b);
    fake_free(f);
}

static void test_rewrite_spam_crlf(void **state)
{
    (void)state;
    const char *m = "From: A <a@example.com>\r\nSubject: Hi\r\n\r\nBody\n";
    fake_t *f = fake_new(m, 6.0, true);
    f->conf.header_count = 2;
    f->conf.rewrite_subject = "[SPAM _SCORE_]";
    f->conf.rewrite_from = "SPAM";
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_scan_rewrite(&f->s, &b), 0);
    assert_string_equal(b.data, "X-Spam-Checker-Version: SpamAssassin 4.0.1 (Tamis " TAMIS_VERSION
                                ") on vm\r\n"
                                "X-Spam-Flag: YES\r\n"
                                "From: (SPAM) A <a@example.com>\r\n"
                                "Subject: [SPAM 6.0] Hi\r\n"
                                "X-Spam-Prev-From: A <a@example.com>\r\n"
                                "X-Spam-Prev-Subject: Hi\r\n"
                                "\r\n"
                                "Body\n");
    tamis_buf_reset(&b);
    assert_int_equal(tamis_scan_headers(&f->s, &b), 0);
    assert_int_equal(strcmp(b.data + b.len - 6, "Hi\r\n\r\n"), 0);
    tamis_buf_free(&b);
    fake_free(f);
}

/* _SUBJPREFIX_ and the Subject rewrite with the rules' subjprefix, as spamassassin -t prints
 * them (report_safe 0: the prefix goes on every rewritten header; ham: on the Subject only). */
static void test_subjprefix(void **state)
{
    (void)state;
    const char *m = "From: A <a@example.com>\nSubject: Hi\n\nBody\n";
    fake_t *f = fake_new(m, 6.0, true);
    f->conf.header_count = 0;
    f->conf.rewrite_subject = "*SPAM*";
    f->conf.rewrite_from = "FT";
    f->s.result.subjprefix = "[P1] [P2 _REQD_] ";
    assert_string_equal(expand(&f->s, "x_SUBJPREFIX_x"), "x[P1] [P2 _REQD_] x");
    assert_string_equal(expand(&f->s, "[_RULESVERSION_]"), "[]");
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_scan_rewrite(&f->s, &b), 0);
    assert_string_equal(b.data, "From: (FT) [P1] [P2 5.0] A <a@example.com>\n"
                                "Subject: *SPAM* [P1] [P2 5.0] Hi\n"
                                "X-Spam-Prev-From: A <a@example.com>\n"
                                "X-Spam-Prev-Subject: Hi\n"
                                "\n"
                                "Body\n");
    fake_free(f);
    f = fake_new(m, 1.0, false);
    f->conf.header_count = 0;
    f->conf.rewrite_subject = "*SPAM*";
    f->s.result.subjprefix = "[P1] ";
    tamis_buf_reset(&b);
    assert_int_equal(tamis_scan_rewrite(&f->s, &b), 0);
    assert_string_equal(b.data, "From: A <a@example.com>\nSubject: [P1] Hi\n\nBody\n");
    tamis_buf_free(&b);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_subjprefix),
        cmocka_unit_test(test_fold_and_encode),
        cmocka_unit_test(test_display_score),
        cmocka_unit_test(test_pristine),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_report_lines),
        cmocka_unit_test(test_rewrite_ham),
        cmocka_unit_test(test_rewrite_spam_crlf),
        cmocka_unit_test(test_text_cases_from_perl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
