/* Unit tests for lib/rules: loader, preprocessor, rule types, meta, scores, runner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tamis/rules.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Loads a set from inline .cf lines ("\n"-separated); asserts success. */
static tamis_ruleset_t *load_text(const char *cf, tamis_diag_t *diag)
{
    char *copy = strdup(cf);
    const char *lines[512];
    size_t n = 0;
    for (char *s = strtok(copy, "\n"); s && n < 512; s = strtok(NULL, "\n"))
        lines[n++] = s;
    tamis_rules_source_t src = {.extra_lines = lines, .extra_line_count = n, .locale = "C"};
    tamis_ruleset_t *rs = NULL;
    char err[256] = "";
    int rc = tamis_rules_load(&src, &rs, diag, err, sizeof(err));
    free(copy);
    if (rc)
        fprintf(stderr, "load failed: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(rs);
    return rs;
}

typedef struct {
    tamis_arena_t *arena;
    tamis_msg_t *msg;
    tamis_rules_result_t res;
} run_t;

static void run_msg(tamis_ruleset_t *rs, const char *text, int set, run_t *r)
{
    char err[256];
    r->arena = tamis_arena_new(0);
    assert_non_null(r->arena);
    assert_int_equal(tamis_msg_parse(text, strlen(text), NULL, &r->msg, err, sizeof(err)), 0);
    tamis_rules_run_opts_t o = {.score_set = set};
    assert_int_equal(tamis_rules_run(rs, r->msg, &o, r->arena, &r->res, err, sizeof(err)), 0);
}

static void run_done(run_t *r)
{
    tamis_msg_free(r->msg);
    tamis_arena_free(r->arena);
}

static bool hit(const run_t *r, const char *name)
{
    for (size_t i = 0; i < r->res.hit_count; i++)
        if (strcmp(r->res.hits[i].name, name) == 0)
            return true;
    for (size_t i = 0; i < r->res.subtest_count; i++)
        if (strcmp(r->res.subtests[i], name) == 0)
            return true;
    return false;
}

static double hit_value(const run_t *r, const char *name)
{
    for (size_t i = 0; i < r->res.hit_count; i++)
        if (strcmp(r->res.hits[i].name, name) == 0)
            return r->res.hits[i].value;
    return 0;
}

static const char MSG1[] = "From: \"Joe Sender\" <joe@Example.com>\n"
                           "To: bob@example.org\n"
                           "Cc: carol@example.net\n"
                           "Subject: Cheap pills here\n"
                           "Message-ID: <abc@example.com>\n"
                           "X-Mailer: SpamBot 3.0\n"
                           "\n"
                           "Buy cheap viagra now!\n"
                           "Visit http://www.spam-example.com/buy now.\n"
                           "\n"
                           "viagra viagra viagra\n";

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_basic_types(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("header T_SUBJ Subject =~ /cheap pills/i\n"
                                    "header NO_SUBJ Subject =~ /expensive/\n"
                                    "header NEG_SUBJ Subject !~ /expensive/\n"
                                    "header MAILER X-Mailer =~ /^SpamBot/\n"
                                    "header HAS_MAILER exists:X-Mailer\n"
                                    "header HAS_NOTHING exists:X-Nothing\n"
                                    "body VIAGRA /viagra/i\n"
                                    "body SUBJ_IN_BODY /Cheap pills/\n"
                                    "rawbody RAW_BUY /^Buy cheap/m\n"
                                    "full FULL_MAILER /^X-Mailer: SpamBot/m\n"
                                    "uri URI_SPAM /spam-example\\.com/\n"
                                    "score MAILER 2.5\n",
                                    NULL);
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_true(hit(&r, "T_SUBJ"));
    assert_false(hit(&r, "NO_SUBJ"));
    assert_true(hit(&r, "NEG_SUBJ"));
    assert_true(hit(&r, "MAILER"));
    assert_true(hit(&r, "HAS_MAILER"));
    assert_false(hit(&r, "HAS_NOTHING"));
    assert_true(hit(&r, "VIAGRA"));
    assert_true(hit(&r, "SUBJ_IN_BODY")); /* the Subject is body line 1 */
    assert_true(hit(&r, "RAW_BUY"));
    assert_true(hit(&r, "FULL_MAILER"));
    assert_true(hit(&r, "URI_SPAM"));
    /* T_ rules score 0.01, others 1, MAILER 2.5 */
    assert_float_equal(r.res.score, 0.01 + 1 + 2.5 + 1 + 1 + 1 + 1 + 1 + 1, 1e-9);
    run_done(&r);
    tamis_rules_unref(rs);
}

static void test_meta_and_subrules(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("header __A Subject =~ /cheap/i\n"
                                    "header __B From =~ /nobody/\n"
                                    "body __C /viagra/\n"
                                    "meta M_AND __A && __C\n"
                                    "meta M_ANDB __A && __B\n"
                                    "meta M_OR __B || __C\n"
                                    "meta M_NOT !__B\n"
                                    "meta M_ARITH (__A + __C + __B) >= 2\n"
                                    "meta M_META M_AND && !M_ANDB\n"
                                    "meta M_UNDEF __UNDEFINED_RULE || __A\n"
                                    "body CNT /viagra/\n"
                                    "tflags CNT multiple\n"
                                    "meta M_CNT CNT > 2\n"
                                    "meta M_BAD (__A && __A && __C\n"
                                    "meta M_CYC1 M_CYC2\n"
                                    "meta M_CYC2 M_CYC1\n",
                                    NULL);
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_true(hit(&r, "__A"));
    assert_true(hit(&r, "M_AND"));
    assert_false(hit(&r, "M_ANDB"));
    assert_true(hit(&r, "M_OR"));
    assert_true(hit(&r, "M_NOT"));
    assert_true(hit(&r, "M_ARITH"));
    assert_true(hit(&r, "M_META"));
    assert_true(hit(&r, "M_UNDEF"));
    assert_float_equal(hit_value(&r, "CNT"), 4, 0); /* 1 + 3 matches on two lines */
    assert_true(hit(&r, "M_CNT"));
    assert_false(hit(&r, "M_CYC1"));
    assert_false(hit(&r, "M_BAD")); /* fuzz regression: dropped without leaking */
    /* sub-rules are not scored hits */
    for (size_t i = 0; i < r.res.hit_count; i++)
        assert_true(strncmp(r.res.hits[i].name, "__", 2) != 0);
    run_done(&r);
    tamis_rules_unref(rs);
}

static void test_scores(void **state)
{
    (void)state;
    tamis_diag_t *d = tamis_diag_new();
    tamis_ruleset_t *rs = load_text("body A /viagra/\n"
                                    "score A 1 2 3 4\n"
                                    "body B /viagra/\n"
                                    "score B 1.5\n"
                                    "score B (0.25) (0.5) (1) (2)\n"
                                    "body C /viagra/\n"
                                    "score C 0\n"
                                    "body D /viagra/\n"
                                    "tflags D nice\n"
                                    "body N /viagra/\n"
                                    "tflags N net\n"
                                    "score N 0 3 0 3\n"
                                    "score E (1)\n"
                                    "score F 1 2\n",
                                    d);
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_true(hit(&r, "A"));
    assert_false(hit(&r, "C")); /* score 0 disables */
    assert_false(hit(&r, "N")); /* net rule in set 0 */
    assert_float_equal(r.res.score, 1 + 1.75 - 1, 1e-9);
    run_done(&r);
    run_msg(rs, MSG1, 3, &r);
    assert_true(hit(&r, "N"));
    assert_float_equal(r.res.score, 4 + 3.5 - 1 + 3, 1e-9);
    run_done(&r);
    /* relative score without a previous one, and 2 values, are warnings */
    assert_true(tamis_diag_count_level(d, TAMIS_DIAG_WARN) >= 2);
    tamis_rules_unref(rs);
    tamis_diag_free(d);
}

static void test_preprocessor(void **state)
{
    (void)state;
    tamis_diag_t *d = tamis_diag_new();
    tamis_ruleset_t *rs =
        load_text("loadplugin Mail::SpamAssassin::Plugin::HeaderEval\n"
                  "loadplugin Mail::SpamAssassin::Plugin::Pyzor\n"
                  "ifplugin Mail::SpamAssassin::Plugin::HeaderEval\n"
                  "body P1 /viagra/\n"
                  "endif\n"
                  "ifplugin Mail::SpamAssassin::Plugin::Pyzor\n"
                  "body P2 /viagra/\n"
                  "else\n"
                  "body P3 /viagra/\n"
                  "endif\n"
                  "if (version >= 4.000000)\n"
                  "body V1 /viagra/\n"
                  "endif\n"
                  "if version < 3.004000\n"
                  "body V2 /viagra/\n"
                  "endif\n"
                  "if can(Mail::SpamAssassin::Conf::feature_bug6558_free)\n"
                  "body F1 /viagra/\n"
                  "endif\n"
                  "if !can(Mail::SpamAssassin::Conf::compat_welcomelist_blocklist)\n"
                  "body F2 /viagra/\n"
                  "endif\n"
                  "if !plugin(Mail::SpamAssassin::Plugin::Nope) && (version > 3)\n"
                  "  if plugin(Mail::SpamAssassin::Plugin::Nope)\n"
                  "  body N1 /viagra/\n"
                  "  else\n"
                  "  body N2 /viagra/\n"
                  "  endif\n"
                  "endif\n"
                  "body HASH /\\#viagra|viagra/ # a comment\n"
                  "lang fr describe HASH en francais\n"
                  "lang en describe HASH in English\n"
                  "bogus_directive 1\n",
                  d);
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_true(hit(&r, "P1"));
    assert_false(hit(&r, "P2"));
    assert_true(hit(&r, "P3"));
    assert_true(hit(&r, "V1"));
    assert_false(hit(&r, "V2"));
    assert_true(hit(&r, "F1"));
    assert_true(hit(&r, "F2"));
    assert_false(hit(&r, "N1"));
    assert_true(hit(&r, "N2"));
    assert_true(hit(&r, "HASH"));
    for (size_t i = 0; i < r.res.hit_count; i++)
        if (strcmp(r.res.hits[i].name, "HASH") == 0)
            assert_string_equal(r.res.hits[i].description, "in English");
    run_done(&r);
    /* the unknown directive and the unsupported plugin are warnings with file:line */
    bool unknown = false, plugin = false;
    for (size_t i = 0; i < tamis_diag_count(d); i++) {
        const tamis_diag_entry_t *e = tamis_diag_at(d, i);
        if (strstr(e->text, "bogus_directive") && e->line == 33)
            unknown = true;
        if (strstr(e->text, "Pyzor"))
            plugin = true;
    }
    assert_true(unknown);
    assert_true(plugin);
    tamis_rules_unref(rs);
    tamis_diag_free(d);
}

static void test_regex_forms(void **state)
{
    (void)state;
    tamis_diag_t *d = tamis_diag_new();
    tamis_ruleset_t *rs = load_text("body D1 m{cheap\\s+viagra}i\n"
                                    "body D2 m;buy cheap;i\n"
                                    "body D3 m!viagra now!\n"
                                    "body D4 m(viagra (now))\n"
                                    "body BAD1 /unclosed(/\n"
                                    "body BAD2 /a/b/\n"
                                    "body BAD3 /x/e\n"
                                    "body WIDE /viagra|\\x{0456}/\n"
                                    "rawbody LATIN /caf\\xe9/i\n"
                                    "rawbody LATIN_CLASS /caf[\\xe9]/i\n"
                                    "body WIDE2 /\\x{0456}|[\\x{100}]x/\n"
                                    "body WIDE3 /[^\\x{100}]uy/\n"
                                    "body OPENQ /Bu{,3}y/\n"
                                    "body WIDE4 /B[a-\\x{100}]y/\n"
                                    "body ANCHOR /^Buy/\n"
                                    "body NOSUBJ /Cheap pills/\n"
                                    "tflags NOSUBJ nosubject\n",
                                    d);
    const char *msg = "Subject: x\n\nBuy cheap viagra now! CAF\xc9\n";
    run_t r;
    run_msg(rs, msg, 0, &r);
    assert_true(hit(&r, "D1"));
    assert_true(hit(&r, "D2"));
    assert_true(hit(&r, "D3"));
    assert_true(hit(&r, "D4"));
    assert_true(hit(&r, "WIDE"));
    assert_false(hit(&r, "WIDE2"));
    assert_true(hit(&r, "WIDE3"));
    assert_true(hit(&r, "OPENQ")); /* {,n} is {0,n} in Perl 5.36 */
    assert_true(hit(&r, "WIDE4"));
    /* Perl /aa folds Latin-1 letters of byte strings: (?i)\xe9 matches \xc9 */
    assert_true(hit(&r, "LATIN"));
    assert_true(hit(&r, "LATIN_CLASS"));
    assert_true(hit(&r, "ANCHOR"));
    assert_false(hit(&r, "NOSUBJ"));
    assert_false(hit(&r, "BAD1"));
    run_done(&r);
    size_t bad = 0;
    for (size_t i = 0; i < tamis_diag_count(d); i++)
        if (strstr(tamis_diag_at(d, i)->text, "invalid regexp for BAD"))
            bad++;
    assert_int_equal(bad, 3); /* BAD1-3 only: the wide-character rules all compile */
    tamis_rules_unref(rs);
    tamis_diag_free(d);
}

static void test_header_forms(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("header ADDR From:addr =~ /^joe\\@example\\.com$/i\n"
                                    "header NAME From:name =~ /^Joe Sender$/\n"
                                    "header TOCC ToCc =~ /carol/\n"
                                    "header MID MESSAGEID =~ /abc\\@example/\n"
                                    "header ALLH ALL =~ /^X-Mailer: SpamBot/m\n"
                                    "header MISSING X-Missing =~ /^$/\n"
                                    "header UNSET X-Missing =~ /^fallback$/ [if-unset: fallback]\n"
                                    "header NEGMISS X-Missing !~ /foo/\n"
                                    "header RAWSUBJ Subject:raw =~ /^ Cheap/\n"
                                    "header BADMOD Subject:bogus =~ /x/\n",
                                    NULL);
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_true(hit(&r, "ADDR"));
    assert_true(hit(&r, "NAME"));
    assert_true(hit(&r, "TOCC"));
    assert_true(hit(&r, "MID"));
    assert_true(hit(&r, "ALLH"));
    assert_true(hit(&r, "MISSING"));
    assert_true(hit(&r, "UNSET"));
    assert_true(hit(&r, "NEGMISS"));
    assert_true(hit(&r, "RAWSUBJ"));
    assert_false(hit(&r, "BADMOD"));
    run_done(&r);
    tamis_rules_unref(rs);
}

static void test_settings_reach_conf(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("required_score 7.5\n"
                                    "add_header all Foo bar _SCORE_\n"
                                    "report_safe 0\n",
                                    NULL);
    const tamis_conf_t *c = tamis_rules_conf(rs);
    assert_float_equal(c->required_score, 7.5, 0);
    assert_int_equal(c->report_safe, 0);
    bool foo = false, report = false, checker = false;
    for (size_t i = 0; i < c->header_count; i++) {
        foo |= strcmp(c->headers[i].name, "Foo") == 0;
        report |= strcmp(c->headers[i].name, "Report") == 0;
        checker |= strcmp(c->headers[i].name, "Checker-Version") == 0;
    }
    assert_true(foo && report && checker);
    tamis_rules_unref(rs);
}

/* Verified with SpamAssassin 4.0.1: tests=BAR,FOO,FOO,FOO,HM,HM,HM,MFOO,MNEG,MSUB score=11,
 * subtests __SUB x3, MFOO=3, MNEG=1 (a negative meta value counts as 1). */
static void test_multiple_semantics(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("body FOO /viagra/\n"
                                    "tflags FOO multiple maxhits=5\n"
                                    "score FOO 1.5\n"
                                    "body BAR /viagra/\n"
                                    "tflags BAR maxhits=2\n"
                                    "meta MFOO FOO\n"
                                    "meta MNEG 0 - FOO\n"
                                    "score MNEG 0.5\n"
                                    "body __SUB /viagra/\n"
                                    "tflags __SUB multiple\n"
                                    "meta MSUB __SUB\n"
                                    "header HM Subject =~ /a/\n"
                                    "tflags HM multiple\n",
                                    NULL);
    run_t r;
    run_msg(rs, "Subject: aaa\n\nviagra viagra\nviagra\n", 0, &r);
    size_t foo = 0, hm = 0, bar = 0;
    for (size_t i = 0; i < r.res.hit_count; i++) {
        foo += strcmp(r.res.hits[i].name, "FOO") == 0;
        hm += strcmp(r.res.hits[i].name, "HM") == 0;
        bar += strcmp(r.res.hits[i].name, "BAR") == 0;
    }
    assert_int_equal(foo, 3);
    assert_int_equal(hm, 3);
    assert_int_equal(bar, 1);
    assert_int_equal(r.res.hit_count, 10);
    assert_int_equal(r.res.subtest_count, 3);
    assert_float_equal(hit_value(&r, "MFOO"), 3, 0);
    assert_float_equal(hit_value(&r, "MNEG"), 1, 0);
    assert_float_equal(r.res.score, 11, 1e-9);
    run_done(&r);
    tamis_rules_unref(rs);
}

static void test_captures_and_replace_tags(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("header __CAP From:addr =~ /^(?<SENDER>[^\\@]+)\\@/\n"
                                    "body TPL /please %{SENDER} cheap/i\n"
                                    "body TPL_MISSING /Buy %{NOPE}/\n"
                                    "replace_tag V (?:v|\\\\/)\n"
                                    "replace_tag I [i1!]\n"
                                    "replace_inter SP [\\s_]{0,2}\n"
                                    "replace_post P2 {1,2}\n"
                                    "replace_rules RT RT2\n"
                                    "body RT /<inter SP><V><I>agra/i\n"
                                    "body RT2 /<post P2>b<V>/\n"
                                    "body NOTREPLACED /<V><I>agra/\n"
                                    "replace_rules RT3\n"
                                    "body RT3 /<inter SP>x<V><I>agra/i\n",
                                    NULL);
    run_t r;
    run_msg(rs, "From: buy@example.com\nSubject: s\n\nPlease buy cheap v_1agra now. bbvv xv1agra\n",
            0, &r);
    assert_true(hit(&r, "__CAP"));
    assert_true(hit(&r, "TPL"));
    assert_false(hit(&r, "TPL_MISSING"));
    assert_true(hit(&r, "RT"));
    assert_true(hit(&r, "RT2"));
    assert_true(hit(&r, "RT3")); /* verified with SpamAssassin 4.0.1's ReplaceTags */
    assert_false(hit(&r, "NOTREPLACED"));
    assert_non_null(r.res.tags);
    assert_string_equal(r.res.tags[0], "SENDER");
    assert_string_equal(r.res.tags[1], "buy");
    run_done(&r);
    tamis_rules_unref(rs);
}

static void test_mimeheader_priority_lint(void **state)
{
    (void)state;
    tamis_diag_t *d = tamis_diag_new();
    tamis_ruleset_t *rs = load_text("mimeheader MH_PDF Content-Type =~ /application\\/pdf/\n"
                                    "mimeheader MH_RAW Content-Type:raw =~ /^ application/\n"
                                    "mimeheader MH_NONE X-Nothing =~ /./\n"
                                    "header EV1 eval:no_such_function('a', \"b c\", 3.5)\n"
                                    "header EV2 eval:bad args here\n"
                                    "body P1 /attached/\n"
                                    "priority P1 -50\n"
                                    "body P2 /attached/\n"
                                    "priority P2 50\n"
                                    "meta M_LATE P1 && P2\n"
                                    "priority M_LATE -60\n",
                                    d);
    run_t r;
    run_msg(rs,
            "Subject: s\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
            "--XX\nContent-Type: text/plain\n\nsee attached\n"
            "--XX\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
            "JVBERi0=\n--XX--\n",
            0, &r);
    assert_true(hit(&r, "MH_PDF"));
    assert_true(hit(&r, "MH_RAW"));
    assert_false(hit(&r, "MH_NONE"));
    assert_false(hit(&r, "EV1"));
    assert_true(hit(&r, "M_LATE"));
    /* P2 was pulled down to the meta's priority (-60), so the meta is decided before the
     * priority-0 rules run */
    size_t late = 99, pdf = 99;
    for (size_t i = 0; i < r.res.hit_count; i++) {
        if (strcmp(r.res.hits[i].name, "M_LATE") == 0)
            late = i;
        if (strcmp(r.res.hits[i].name, "MH_PDF") == 0)
            pdf = i;
    }
    assert_true(late < pdf && pdf < 99);
    run_done(&r);
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_rules_lint(rs, &b), 0);
    assert_non_null(strstr(b.data, "unsupported eval no_such_function: EV1"));
    assert_non_null(strstr(b.data, "dropped: EV2"));
    tamis_buf_free(&b);
    tamis_rules_unref(rs);
    tamis_diag_free(d);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* SpamAssassin's order: site *.pre, default *.pre, default *.cf (sorted), site *.cf, paths. */
static void test_files_and_order(void **state)
{
    (void)state;
    char dir[] = "/tmp/tamis_rules_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[512], def[300], site[300], sub[300];
    snprintf(def, sizeof(def), "%s/default", dir);
    snprintf(site, sizeof(site), "%s/site", dir);
    snprintf(sub, sizeof(sub), "%s/default/sub", dir);
    assert_int_equal(mkdir(def, 0700), 0);
    assert_int_equal(mkdir(site, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(p, sizeof(p), "%s/init.pre", site);
    write_file(p, "loadplugin Mail::SpamAssassin::Plugin::ReplaceTags\n");
    snprintf(p, sizeof(p), "%s/20_b.cf", def);
    write_file(p, "# UPDATE version 7\nscore R 3\nbody R2 /viagra/\n# UPDATE version 8x\n");
    snprintf(p, sizeof(p), "%s/10_a.cf", def);
    write_file(p, "ifplugin Mail::SpamAssassin::Plugin::ReplaceTags\nbody R /viagra/\n"
                  "score R 2\ninclude sub/inc.cf\n"
                  "if (version > 3)\n"); /* left open: closed with a warning */
    snprintf(p, sizeof(p), "%s/inc.cf", sub);
    write_file(p, "body INC /cheap/\n");
    snprintf(p, sizeof(p), "%s/local.cf", site);
    write_file(p, "# UPDATE version 1917035\nscore R2 4\nrequire_version 3.004000\n"
                  "body SKIPPED /viagra/\n");
    snprintf(p, sizeof(p), "%s/extra.cf", dir);
    write_file(p, "score INC 5\n");
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/nope.cf", dir);
    const char *paths[] = {p};
    tamis_rules_source_t src = {.default_rules_dir = def,
                                .site_rules_dir = site,
                                .paths = paths,
                                .path_count = 1,
                                .locale = "C"};
    tamis_diag_t *d = tamis_diag_new();
    tamis_ruleset_t *rs = NULL;
    char err[256];
    assert_int_equal(tamis_rules_load(&src, &rs, d, err, sizeof(err)), 0);
    /* _RULESVERSION_: "# UPDATE version N" per file, in path order (default/ before site/) */
    assert_string_equal(tamis_rules_version(rs), "7,1917035");
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_true(hit(&r, "R") && hit(&r, "R2") && hit(&r, "INC"));
    assert_false(hit(&r, "SKIPPED"));
    assert_float_equal(r.res.score, 3 + 4 + 5, 1e-9);
    run_done(&r);
    bool unclosed = false, version = false;
    for (size_t i = 0; i < tamis_diag_count(d); i++) {
        unclosed |= strstr(tamis_diag_at(d, i)->text, "unclosed") != NULL;
        version |= strstr(tamis_diag_at(d, i)->text, "requires version") != NULL;
    }
    assert_true(unclosed && version);
    tamis_rules_unref(rs);
    /* an explicit path that does not exist fails the load with file:line in err */
    const char *bad[] = {missing};
    src.paths = bad;
    assert_int_equal(tamis_rules_load(&src, &rs, d, err, sizeof(err)), TAMIS_EIO);
    assert_null(rs);
    assert_non_null(strstr(err, "nope.cf"));
    src.paths_optional = true;
    assert_int_equal(tamis_rules_load(&src, &rs, d, err, sizeof(err)), 0);
    tamis_rules_unref(rs);
    tamis_diag_free(d);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

typedef struct {
    tamis_ruleset_t *rs;
    int ok;
} thread_arg_t;

static void *thread_run(void *p)
{
    thread_arg_t *t = p;
    for (int i = 0; i < 50; i++) {
        char err[128];
        tamis_msg_t *m;
        if (tamis_msg_parse(MSG1, strlen(MSG1), NULL, &m, err, sizeof(err)))
            return NULL;
        tamis_arena_t *a = tamis_arena_new(0);
        tamis_rules_run_opts_t o = {.score_set = 0};
        tamis_rules_result_t r;
        if (tamis_rules_run(t->rs, m, &o, a, &r, err, sizeof(err)) == 0 && r.hit_count == 2)
            t->ok++;
        tamis_arena_free(a);
        tamis_msg_free(m);
    }
    return NULL;
}

/* One immutable set, many threads: per-thread scratch keeps runs independent. */
static void test_threads(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("body A /viagra/i\nheader B Subject =~ /pills/\n", NULL);
    pthread_t th[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i].rs = tamis_rules_ref(rs);
        args[i].ok = 0;
        assert_int_equal(pthread_create(&th[i], NULL, thread_run, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 50);
        tamis_rules_unref(args[i].rs);
    }
    tamis_rules_unref(rs);
}

/* A run past its time budget stops and reports TIME_LIMIT_EXCEEDED (score 0.001) like SA. */
static void test_time_limit(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("body SLOW /(?:a|b|ab)*c/\nbody A /viagra/\n", NULL);
    char err[256];
    tamis_msg_t *m;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    tamis_buf_puts(&b, "Subject: x\n\n");
    for (int i = 0; i < 20000; i++)
        tamis_buf_puts(&b, i % 50 == 49 ? "\n" : "ab ");
    assert_int_equal(tamis_msg_parse(b.data, b.len, NULL, &m, err, sizeof(err)), 0);
    tamis_arena_t *a = tamis_arena_new(0);
    tamis_rules_run_opts_t o = {.score_set = 0, .time_budget_ms = 0.000001};
    tamis_rules_result_t r;
    assert_int_equal(tamis_rules_run(rs, m, &o, a, &r, err, sizeof(err)), 0);
    assert_true(r.time_limit_exceeded);
    assert_int_equal(r.hit_count, 1);
    assert_string_equal(r.hits[0].name, "TIME_LIMIT_EXCEEDED");
    assert_float_equal(r.score, 0.001, 1e-9);
    tamis_arena_free(a);
    tamis_msg_free(m);
    tamis_buf_free(&b);
    tamis_rules_unref(rs);
}

/* PerMsgStatus::_get_autolearn_points: metas split by their dependencies' types (each
 * occurrence counts), noautolearn/userconf excluded, autolearn_body overrides the type. */
static void test_autolearn_points(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("header H Subject =~ /pills/\n"
                                    "score H 2\n"
                                    "body B /viagra/\n"
                                    "score B 1\n"
                                    "meta M H && (H || B)\n"
                                    "score M 3\n"
                                    "header NOAL Subject =~ /Cheap/\n"
                                    "score NOAL 5\n"
                                    "tflags NOAL noautolearn\n"
                                    "header FORCEB From =~ /Joe/\n"
                                    "score FORCEB 0.5\n"
                                    "tflags FORCEB autolearn_body\n",
                                    NULL);
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_float_equal(r.res.score, 2 + 1 + 3 + 5 + 0.5, 1e-9);
    assert_float_equal(r.res.autolearn_points_head, 2 + 2, 1e-9);
    assert_float_equal(r.res.autolearn_points_body, 1 + 1 + 0.5, 1e-9);
    assert_float_equal(r.res.autolearn_points, 2 + 1 + 3 + 0.5, 1e-9);
    run_done(&r);
    tamis_rules_unref(rs);
}

/* subjprefix (Conf.pm): collected in hit order, each text once, "__" rules included, and only
 * with rewrite_header Subject; checked against spamassassin -t with the same lines. */
static void test_subjprefix(void **state)
{
    (void)state;
    const char *rules = "body SP1 /viagra/\nscore SP1 3\nsubjprefix SP1 [SP1]\n"
                        "body SP2 /cheap/\nscore SP2 3\nsubjprefix SP2 [SP1]\n"
                        "body __SP3 /viagra/\nsubjprefix __SP3 [SUB _SCORE_]\n"
                        "body SP4 /nothere/\nsubjprefix SP4 [NO]\n";
    char cf[1024];
    snprintf(cf, sizeof cf, "%srewrite_header Subject *SPAM*\n", rules);
    tamis_ruleset_t *rs = load_text(cf, NULL);
    run_t r;
    run_msg(rs, MSG1, 0, &r);
    assert_non_null(r.res.subjprefix);
    /* [SP1] from SP2 is already there; tags are expanded later, by the scan */
    assert_true(strcmp(r.res.subjprefix, "[SP1] [SUB _SCORE_] ") == 0 ||
                strcmp(r.res.subjprefix, "[SUB _SCORE_] [SP1] ") == 0);
    assert_string_equal(tamis_rules_version(rs), ""); /* --cf lines carry no update version */
    run_done(&r);
    tamis_rules_unref(rs);
    rs = load_text(rules, NULL); /* no rewrite_header Subject: no prefix */
    run_msg(rs, MSG1, 0, &r);
    assert_null(r.res.subjprefix);
    run_done(&r);
    tamis_rules_unref(rs);
}

/* redirector_pattern lines reach lib/msg compiled; a bad one is a warning, not a load error. */
static void test_redirector_pattern(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load_text("uri R1 m{^http://www\\.spammer\\.example/yo$}\n", NULL);
    assert_null(tamis_rules_redirectors(rs));
    tamis_rules_unref(rs);
    tamis_diag_t *d = tamis_diag_new();
    rs = load_text("redirector_pattern m'^http://chkpt\\.zdnet\\.com/chkpt/\\w+/(.*)$'i\n"
                   "redirector_pattern nodelimiters\n"
                   "uri R1 m{^http://www\\.spammer\\.example/yo$}\n",
                   d);
    assert_non_null(tamis_rules_redirectors(rs));
    bool warned = false;
    for (size_t i = 0; i < tamis_diag_count(d); i++)
        warned |= strstr(tamis_diag_at(d, i)->text, "invalid redirector_pattern") != NULL;
    assert_true(warned);
    const char *text =
        "Subject: x\n\nsee http://Chkpt.ZDNet.com/chkpt/abc/www.spammer.example/yo\n";
    char err[256];
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    lim.redirectors = tamis_rules_redirectors(rs);
    run_t r = {.arena = tamis_arena_new(0)};
    assert_int_equal(tamis_msg_parse(text, strlen(text), &lim, &r.msg, err, sizeof err), 0);
    tamis_rules_run_opts_t o = {0};
    assert_int_equal(tamis_rules_run(rs, r.msg, &o, r.arena, &r.res, err, sizeof err), 0);
    assert_true(hit(&r, "R1"));
    run_done(&r);
    tamis_rules_unref(rs);
    tamis_diag_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_types),
        cmocka_unit_test(test_meta_and_subrules),
        cmocka_unit_test(test_scores),
        cmocka_unit_test(test_preprocessor),
        cmocka_unit_test(test_regex_forms),
        cmocka_unit_test(test_header_forms),
        cmocka_unit_test(test_settings_reach_conf),
        cmocka_unit_test(test_multiple_semantics),
        cmocka_unit_test(test_captures_and_replace_tags),
        cmocka_unit_test(test_mimeheader_priority_lint),
        cmocka_unit_test(test_files_and_order),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_time_limit),
        cmocka_unit_test(test_autolearn_points),
        cmocka_unit_test(test_subjprefix),
        cmocka_unit_test(test_redirector_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
