/*
 * Header expressions (spec-rules §3.1) checked through header rules that match the whole value
 * (\A…\z). Every expected value below was printed by SpamAssassin 4.0.1's PerMsgStatus::get()
 * (list context, joined as header rules join it) for the same message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tamis/rules.h"

static const char MSG[] = "From: \"Joe =?utf-8?q?B=C3=A9?=\" <joe@Example.com>, bob@x.org\n"
                          "To: a@b.c\n"
                          "Cc: d@e.f\n"
                          "Subject: hello\n"
                          "  world  \n"
                          "Subject: =?utf-8?q?caf=C3=A9?=\n"
                          "X-Foo: 1.2.3.4 host.example.co.uk\n"
                          "\n"
                          "body\n";

static const char *const RULES[] = {
    "header SUBJ Subject =~ /\\Ahello world\\ncaf\\xc3\\xa9\\n\\z/",
    "header SUBJ_RAW Subject:raw =~ /\\A hello\\n  world  \\n =\\?utf-8\\?q\\?caf=C3=A9\\?=\\n\\z/",
    "header ADDR From:addr =~ /\\Ajoe\\@Example\\.com\\nbob\\@x\\.org\\z/",
    "header NAME From:name =~ /\\AJoe B\\xc3\\xa9\\z/",
    "header NAME_RAW From:name:raw =~ /\\AJoe =\\?utf-8\\?q\\?B=C3=A9\\?= \\z/",
    "header TOCC ToCc =~ /\\Aa\\@b\\.c\\nd\\@e\\.f\\n\\z/",
    "header IP X-Foo:ip =~ /\\A1\\.2\\.3\\.4\\z/",
    "header REVIP X-Foo:revip =~ /\\A4\\.3\\.2\\.1\\z/",
    "header HOST From:addr:host =~ /\\AExample\\.com\\nx\\.org\\z/",
    "header FIRST Subject:first =~ /\\Ahello world\\n\\z/",
    "header LAST Subject:last =~ /\\Acaf\\xc3\\xa9\\n\\z/",
    "header ALLH ALL =~ /\\AFrom: \"Joe B\\xc3\\xa9\" <joe\\@Example\\.com>, bob\\@x\\.org\\nTo: "
    "a\\@b\\.c\\nCc: d\\@e\\.f\\nSubject: hello world\\nSubject: caf\\xc3\\xa9\\nX-Foo: "
    "1\\.2\\.3\\.4 "
    "host\\.example\\.co\\.uk\\n\\z/",
    "header MISSING_EQ X-None =~ /\\A\\z/",
    "header MISSING_NEG X-None !~ /anything/",
    "header MISSING_EXISTS exists:X-None",
    "header MID MESSAGEID =~ /./",
};

/* Envelope sender guesses (PerMsgStatus::get_envelope_from), each verified with SA. */
static const char ENV_RP[] = "Return-Path: <rp@example.com>\n"
                             "Received: from a.example.com (a.example.com [1.2.3.4]) by mx\n"
                             "From: f@example.com\nSubject: s\n\nbody\n";
static const char ENV_RP_LATE[] = "Received: from a.example.com (a.example.com [1.2.3.4]) by mx\n"
                                  "Return-Path: <rp@example.com>\n"
                                  "From: f@example.com\nSubject: s\n\nbody\n";
static const char ENV_FETCHMAIL[] = "Return-Path: <rp@example.com>\n"
                                    "Received: from phobos [127.0.0.1] by localhost with IMAP "
                                    "(fetchmail-5.9.0)\n"
                                    "X-Sender: rp@example.com\n"
                                    "From: f@example.com\nSubject: s\n\nbody\n";
static const char COMMENT_NAME[] = "From: kragen@pobox.com (Kragen Sitaker)\nSubject: s\n\nb\n";

static tamis_ruleset_t *load(const char *const *lines, size_t n)
{
    tamis_rules_source_t src = {.extra_lines = lines, .extra_line_count = n, .locale = "C"};
    tamis_ruleset_t *rs = NULL;
    tamis_diag_t *d = tamis_diag_new();
    char err[256];
    assert_int_equal(tamis_rules_load(&src, &rs, d, err, sizeof(err)), 0);
    for (size_t i = 0; i < tamis_diag_count(d); i++)
        fprintf(stderr, "diag: %s\n", tamis_diag_at(d, i)->text);
    assert_int_equal(tamis_diag_count(d), 0);
    tamis_diag_free(d);
    return rs;
}

/* Names of the rules (hits and sub-tests) that hit on text, comma-joined into out. */
static void run(tamis_ruleset_t *rs, const char *text, char *out, size_t cap)
{
    char err[256];
    tamis_msg_t *m;
    assert_int_equal(tamis_msg_parse(text, strlen(text), NULL, &m, err, sizeof(err)), 0);
    tamis_arena_t *a = tamis_arena_new(0);
    tamis_rules_run_opts_t o = {.score_set = 0};
    tamis_rules_result_t r;
    assert_int_equal(tamis_rules_run(rs, m, &o, a, &r, err, sizeof(err)), 0);
    out[0] = 0;
    for (size_t i = 0; i < r.hit_count; i++) {
        strncat(out, r.hits[i].name, cap - strlen(out) - 2);
        strncat(out, ",", cap - strlen(out) - 1);
    }
    tamis_arena_free(a);
    tamis_msg_free(m);
}

static bool has(const char *list, const char *name)
{
    char key[128];
    snprintf(key, sizeof(key), "%s,", name);
    for (const char *p = strstr(list, key); p; p = strstr(p + 1, key))
        if (p == list || p[-1] == ',')
            return true;
    return false;
}

static void test_expressions(void **state)
{
    (void)state;
    tamis_ruleset_t *rs = load(RULES, sizeof(RULES) / sizeof(RULES[0]));
    char hits[2048];
    run(rs, MSG, hits, sizeof(hits));
    static const char *const expect[] = {"SUBJ", "SUBJ_RAW", "ADDR",       "NAME",       "NAME_RAW",
                                         "TOCC", "IP",       "REVIP",      "HOST",       "FIRST",
                                         "LAST", "ALLH",     "MISSING_EQ", "MISSING_NEG"};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        if (!has(hits, expect[i]))
            fail_msg("%s did not hit (hits: %s)", expect[i], hits);
    assert_false(has(hits, "MISSING_EXISTS"));
    assert_false(has(hits, "MID"));
    tamis_rules_unref(rs);
}

static void test_envelope_from(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "header ENV EnvelopeFrom =~ /\\Arp\\@example\\.com\\z/",
        "header ENV_DEFINED exists:EnvelopeFrom",
        "header NAME From:name =~ /\\AKragen Sitaker\\z/",
    };
    tamis_ruleset_t *rs = load(lines, 3);
    char hits[512];
    run(rs, ENV_RP, hits, sizeof(hits));
    assert_true(has(hits, "ENV"));
    run(rs, ENV_RP_LATE, hits, sizeof(hits)); /* after a Received line: not trusted */
    assert_false(has(hits, "ENV_DEFINED"));
    run(rs, ENV_FETCHMAIL, hits, sizeof(hits)); /* X-Sender + fetchmail: no guess */
    assert_false(has(hits, "ENV_DEFINED"));
    run(rs, COMMENT_NAME, hits, sizeof(hits)); /* the comment is the display name */
    assert_true(has(hits, "NAME"));
    tamis_rules_unref(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_envelope_from),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
