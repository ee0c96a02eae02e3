/*
 * Tests of the native eval: functions (lib/rules/eval_*.c) and of the Received-chain trust split
 * (lib/rules/relays.c).
 *
 * Three layers:
 *   - small inline messages with a known answer for single evals and the date parser;
 *   - the X-Spam-Relays-* strings of corpus messages, compared with what SpamAssassin 4.0.1
 *     computes for the same files (a Perl helper run once per test);
 *   - every stock eval rule Tamis implements, run on corpus messages and fixtures, compared with
 *     the rules SpamAssassin reports as hit (tests and sub-tests).
 *
 * Header values come from the engine's tamis__header_get (header.c), as in production.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/rules/eval.h"

#ifndef TAMIS_SOURCE_DIR
#define TAMIS_SOURCE_DIR "."
#endif

bool tamis__evx_parse_date(const char *date, time_t *out);

/* ---- engine helpers ---------------------------------------------------------------------------
 *
 * tamis__header_get comes from the engine (header.c). The memo and log helpers are weak copies of
 * memo.c with the same memo layout (rules_int.h needs lib/ on the include path, which this test
 * target does not have), so either may be linked. */

struct tamis__memo {
    const void **keys;
    void **values;
    size_t count, cap;
};

__attribute__((weak)) void *tamis__memo_get(tamis_eval_ctx_t *ctx, const void *key)
{
    for (size_t i = 0; ctx->memo && i < ctx->memo->count; i++)
        if (ctx->memo->keys[i] == key)
            return ctx->memo->values[i];
    return NULL;
}

__attribute__((weak)) int tamis__memo_set(tamis_eval_ctx_t *ctx, const void *key, void *value)
{
    struct tamis__memo *m = ctx->memo;
    if (!m)
        return TAMIS_EINVAL;
    if (m->count == m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 16;
        const void **k = tamis_arena_calloc(ctx->arena, nc, sizeof *k);
        void **v = tamis_arena_calloc(ctx->arena, nc, sizeof *v);
        if (!k || !v)
            return TAMIS_ENOMEM;
        if (m->count) {
            memcpy(k, m->keys, m->count * sizeof *k);
            memcpy(v, m->values, m->count * sizeof *v);
        }
        m->keys = k, m->values = v, m->cap = nc;
    }
    m->keys[m->count] = key;
    m->values[m->count++] = value;
    return 0;
}

__attribute__((weak)) void tamis__eval_log(tamis_eval_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;
    char buf[512];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->log = tamis_arena_strdup(ctx->arena, buf);
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

typedef struct {
    tamis_msg_t *msg;
    tamis_arena_t *arena;
    tamis__relays_t relays;
    struct tamis__memo memo;
    tamis_eval_ctx_t ctx;
} fixture_t;

static void fx_open(fixture_t *f, const char *data, size_t len, const tamis_conf_t *conf)
{
    memset(f, 0, sizeof *f);
    char err[256];
    assert_int_equal(tamis_msg_parse(data, len, NULL, &f->msg, err, sizeof err), 0);
    f->arena = tamis_arena_new(0);
    assert_non_null(f->arena);
    assert_int_equal(tamis__relays_compute(conf, f->msg, f->arena, &f->relays), 0);
    f->ctx.conf = conf;
    f->ctx.msg = f->msg;
    f->ctx.relays = &f->relays;
    f->ctx.arena = f->arena;
    f->ctx.memo = &f->memo;
    f->ctx.rule_type = TAMIS_RULE_EVAL_HEADER;
}

static void fx_close(fixture_t *f)
{
    tamis_arena_free(f->arena);
    tamis_msg_free(f->msg);
}

static const tamis_eval_def_t *find_eval(const char *name)
{
    const tamis_eval_def_t *tables[] = {tamis__evals_header, tamis__evals_body, tamis__evals_relay};
    for (size_t t = 0; t < 3; t++)
        for (const tamis_eval_def_t *d = tables[t]; d->name; d++)
            if (strcmp(d->name, name) == 0)
                return d;
    return NULL;
}

static double run_eval(fixture_t *f, const char *name, const char *const *args, size_t nargs)
{
    const tamis_eval_def_t *d = find_eval(name);
    assert_non_null(d);
    f->ctx.log = NULL;
    return d->fn(&f->ctx, args, nargs);
}

#define EVAL(f, name, ...)                                                                         \
    run_eval(f, name, (const char *const[]){__VA_ARGS__},                                          \
             sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
#define EVAL0(f, name) run_eval(f, name, NULL, 0)

static double eval_on(const char *msg, const tamis_conf_t *conf, const char *name,
                      const char *const *args, size_t n)
{
    fixture_t f;
    fx_open(&f, msg, strlen(msg), conf);
    double v = run_eval(&f, name, args, n);
    fx_close(&f);
    return v;
}

/* A conf with the settings (not the rules) of the stock rule files applied. */
static tamis_conf_t *stock_conf(void)
{
    tamis_conf_t *c = tamis_conf_new();
    assert_non_null(c);
    tamis_diag_t *diag = tamis_diag_new();
    FILE *ls = popen("ls /usr/share/spamassassin/*.cf /etc/spamassassin/*.cf 2>/dev/null", "r");
    char path[1024];
    while (ls && fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = '\0';
        FILE *fp = fopen(path, "r");
        char line[8192];
        unsigned lineno = 0;
        while (fp && fgets(line, sizeof line, fp)) {
            lineno++;
            char *s = line;
            while (isspace((unsigned char)*s))
                s++;
            s[strcspn(s, "\r\n")] = '\0';
            if (!*s || *s == '#')
                continue;
            char *v = s + strcspn(s, " \t");
            if (*v)
                *v++ = '\0';
            while (isspace((unsigned char)*v))
                v++;
            for (char *k = s; *k; k++)
                *k = *k == '-' ? '_' : (char)tolower((unsigned char)*k);
            (void)tamis_conf_apply(c, s, v, path, lineno, diag);
        }
        if (fp)
            fclose(fp);
    }
    if (ls)
        pclose(ls);
    tamis_diag_free(diag);
    return c;
}

/* ---- date parser ------------------------------------------------------------------------------
 */

static void test_parse_date(void **state)
{
    (void)state;
    time_t t;
    assert_true(tamis__evx_parse_date("Thu, 22 Aug 2002 14:47:12 +0100", &t));
    assert_int_equal(t, 1030024032);
    assert_true(tamis__evx_parse_date("Fri, 30 Aug 2002 11:25:31 -0400", &t));
    assert_int_equal(t, 1030721131);
    assert_true(tamis__evx_parse_date("22 Aug 2002 13:47:12 GMT", &t));
    assert_int_equal(t, 1030024032);
    /* the asctime form swallows the time of day, as in SpamAssassin */
    assert_true(tamis__evx_parse_date("Thu Aug 22 13:47:12 2002", &t));
    assert_int_equal(t, 1029974400);
    assert_true(tamis__evx_parse_date("Thu, 22 Aug 02 09:47:12 EDT", &t));
    assert_int_equal(t, 1030024032);
    /* day out of range rolls over to the next month, as Util::parse_rfc822_date does */
    assert_true(tamis__evx_parse_date("31 Feb 2003 00:00:00 +0000", &t));
    assert_int_equal(t, 1046476800);
    assert_false(tamis__evx_parse_date("yesterday", &t));
}

/* ---- single evals on inline messages --------------------------------------------------------- */

static const char msg_dates[] =
    "Received: from a.example.com (a.example.com [203.0.113.5]) by mx.example.org with ESMTP id "
    "ABC123; Thu, 22 Aug 2002 14:47:12 +0100\n"
    "Date: Thu, 22 Aug 2002 09:47:12 +0100\n"
    "From: Someone <someone@example.com>\n"
    "To: you@example.org\n"
    "Subject: THIS IS ALL CAPS SUBJECT\n"
    "Message-ID: <x@example.com>\n"
    "\n"
    "Hello.\n";

static void test_shifted_date(void **state)
{
    (void)state;
    fixture_t f;
    fx_open(&f, msg_dates, strlen(msg_dates), NULL);
    /* Date is 5 hours before the Received time */
    assert_true(EVAL(&f, "check_for_shifted_date", "-6", "-3"));
    assert_false(EVAL(&f, "check_for_shifted_date", "-3", "0"));
    assert_false(EVAL(&f, "check_for_shifted_date", "3", "6"));
    assert_true(EVAL(&f, "check_for_shifted_date", "undef", "-3"));
    assert_true(EVAL0(&f, "subject_is_all_caps"));
    assert_false(EVAL0(&f, "check_for_missing_to_header"));
    assert_true(EVAL(&f, "check_header_count_range", "Subject", "1", "1"));
    assert_false(EVAL(&f, "check_header_count_range", "Subject", "2", "999"));
    fx_close(&f);
}

static void test_header_misc(void **state)
{
    (void)state;
    static const char m[] = "From: \"Bob\" <bob@example.com>\n"
                            "Subject: hello bob\n"
                            "Subject: second subject\n"
                            "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
                            "X-Bad: abc\x01\x02\x03\x04\n"
                            "X-Template: %FROM_NAME here\n"
                            "\n"
                            "body\n";
    fixture_t f;
    fx_open(&f, m, sizeof m - 1, NULL);
    assert_true(EVAL0(&f, "check_for_missing_to_header"));
    assert_true(EVAL(&f, "check_header_count_range", "Subject", "2", "999"));
    assert_false(EVAL0(&f, "subject_is_all_caps"));
    assert_true(EVAL(&f, "check_illegal_chars", "X-Bad", "0.20", "2"));
    assert_false(EVAL(&f, "check_illegal_chars", "From", "0.20", "2"));
    assert_true(EVAL0(&f, "check_unresolved_template"));
    /* no Received at all: gated through a Received remover, no relays */
    assert_true(EVAL0(&f, "gated_through_received_hdr_remover"));
    assert_true(EVAL0(&f, "check_no_relays"));
    assert_false(EVAL0(&f, "check_all_trusted"));
    fx_close(&f);

    /* valid UTF-8 without control characters is exempt */
    static const char u[] =
        "From: a@b.example\nSubject: caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
        "e\n\nx\n";
    fx_open(&f, u, sizeof u - 1, NULL);
    assert_false(EVAL(&f, "check_illegal_chars", "Subject", "0.00", "2"));
    fx_close(&f);
}

static void test_recipients(void **state)
{
    (void)state;
    static const char m[] = "From: x@example.com\n"
                            "To: jo1@x1.example, jo2@x2.example, jo3@x3.example, jo4@x4.example, "
                            "jo5@x5.example, jo6@x6.example, jo7@x7.example\n"
                            "Subject: anna\n"
                            "\n"
                            "hi\n";
    fixture_t f;
    fx_open(&f, m, sizeof m - 1, NULL);
    assert_true(EVAL0(&f, "sorted_recipients"));
    /* all users share "jo": 21 of 21 pairs similar on the user, none on the host */
    assert_true(EVAL(&f, "similar_recipients", "0.5", "undef"));
    assert_false(EVAL(&f, "similar_recipients", "0", "0.5"));
    fx_close(&f);
}

static void test_equal_from_domains(void **state)
{
    (void)state;
    static const char m[] = "Return-Path: <bounce@mail.other.example>\n"
                            "From: x@www.sender.example\n"
                            "To: y@example.org\n"
                            "Subject: s\n\nb\n";
    fixture_t f;
    fx_open(&f, m, sizeof m - 1, NULL);
    assert_true(EVAL0(&f, "check_equal_from_domains"));
    fx_close(&f);
}

static void test_lists(void **state)
{
    (void)state;
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    assert_int_equal(tamis_conf_apply(c, "enlist_addrlist", "(BANKS) *@*.bank.example", "t", 1, d),
                     TAMIS_CONF_APPLIED);
    assert_int_equal(tamis_conf_apply(c, "enlist_uri_host", "(BAD) evil.example", "t", 2, d),
                     TAMIS_CONF_APPLIED);
    assert_int_equal(tamis_conf_apply(c, "blocklist_from", "*@spammer.example", "t", 3, d),
                     TAMIS_CONF_APPLIED);
    assert_int_equal(tamis_conf_apply(c, "freemail_domains", "freemail.example", "t", 4, d),
                     TAMIS_CONF_APPLIED);
    static const char m[] = "From: Bank <alerts@www.bank.example>\n"
                            "Reply-To: someone@freemail.example\n"
                            "To: y@example.org\n"
                            "Subject: s\n\n"
                            "Visit http://www.evil.example/login now\n";
    const char *banks[] = {"BANKS"}, *bad[] = {"BAD"}, *other[] = {"OTHER"};
    assert_true(eval_on(m, c, "check_from_in_list", banks, 1));
    assert_false(eval_on(m, c, "check_from_in_list", other, 1));
    assert_false(eval_on(m, c, "check_from_in_blocklist", NULL, 0));
    assert_false(eval_on(m, c, "check_freemail_from", NULL, 0));
    const char *rt[] = {"Reply-To"};
    assert_true(eval_on(m, c, "check_freemail_header", rt, 1));
    fixture_t f;
    fx_open(&f, m, sizeof m - 1, c);
    if (tamis_msg_uri_count(f.msg) > 0) {
        assert_true(run_eval(&f, "check_uri_host_listed", bad, 1));
        assert_non_null(f.ctx.log);
        assert_string_equal(f.ctx.log, "URI: www.evil.example (evil.example)");
    }
    fx_close(&f);
    static const char s[] = "From: x@spammer.example\nTo: y@example.org\nSubject: s\n\nb\n";
    assert_true(eval_on(s, c, "check_from_in_blocklist", NULL, 0));
    tamis_diag_free(d);
    tamis_conf_free(c);
}

/* A 3x2 GIF, base64. */
static const char msg_image[] = "From: x@example.com\n"
                                "To: y@example.org\n"
                                "Subject: img\n"
                                "MIME-Version: 1.0\n"
                                "Content-Type: multipart/mixed; boundary=\"BB\"\n"
                                "\n"
                                "--BB\n"
                                "Content-Type: text/plain\n"
                                "\n"
                                "some text\n"
                                "--BB\n"
                                "Content-Type: image/gif; name=\"a.gif\"\n"
                                "Content-Transfer-Encoding: base64\n"
                                "\n"
                                "R0lGODlhAwACAIAAAP///wAAACwAAAAAAwACAAACAoRRADs=\n"
                                "--BB--\n";

static void test_images(void **state)
{
    (void)state;
    fixture_t f;
    fx_open(&f, msg_image, sizeof msg_image - 1, NULL);
    f.ctx.rule_type = TAMIS_RULE_EVAL_BODY;
    assert_true(EVAL(&f, "image_count", "gif", "1", "1"));
    assert_false(EVAL(&f, "image_count", "png", "1"));
    assert_true(EVAL(&f, "image_count", "all", "1"));
    assert_true(EVAL(&f, "pixel_coverage", "gif", "6", "6"));
    assert_false(EVAL(&f, "pixel_coverage", "gif", "7"));
    assert_true(EVAL(&f, "image_size_exact", "gif", "2", "3"));
    assert_true(EVAL(&f, "image_size_range", "all", "1", "1", "5", "5"));
    assert_true(EVAL(&f, "image_named", "a.gif"));
    assert_false(EVAL0(&f, "check_ma_non_text"));
    fx_close(&f);
}

static void test_relays_inference(void **state)
{
    (void)state;
    static const char m[] =
        "Received: from mail.example.org (mail.example.org [10.0.0.2]) by mx.example.org "
        "(Postfix) with ESMTP id 1111; Thu, 22 Aug 2002 14:47:12 +0100\n"
        "Received: from out.sender.example (out.sender.example [198.51.100.7]) by "
        "mail.example.org (Postfix) with ESMTP id 2222; Thu, 22 Aug 2002 14:47:10 +0100\n"
        "From: x@sender.example\nTo: y@example.org\nSubject: s\n\nb\n";
    fixture_t f;
    fx_open(&f, m, sizeof m - 1, NULL);
    /* both hops parsed by lib/msg: the private one is trusted, the public one is not */
    if (f.relays.count == 2) {
        assert_int_equal(f.relays.trusted_count, 1);
        assert_int_equal(f.relays.internal_count, 1);
        assert_string_equal(f.relays.text.last_external_ip, "198.51.100.7");
        assert_string_equal(f.relays.text.first_trusted_ip, "10.0.0.2");
        assert_non_null(strstr(f.relays.text.trusted, "[ ip=10.0.0.2 "));
        assert_non_null(strstr(f.relays.text.trusted, " intl=1 "));
        assert_non_null(strstr(f.relays.text.external, " intl=0 "));
        assert_false(EVAL0(&f, "check_all_trusted"));
    }
    fx_close(&f);

    /* with trusted_networks covering both, everything is trusted and ALL_TRUSTED hits */
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    tamis_conf_apply(c, "trusted_networks", "10.0.0.0/8 198.51.100.0/24", "t", 1, d);
    tamis_conf_apply(c, "internal_networks", "10.0.0.0/8", "t", 2, d);
    fx_open(&f, m, sizeof m - 1, c);
    if (f.relays.count == 2) {
        assert_int_equal(f.relays.trusted_count, 2);
        assert_int_equal(f.relays.internal_count, 1);
        assert_true(EVAL0(&f, "check_all_trusted"));
        assert_string_equal(f.relays.text.untrusted, "");
    }
    fx_close(&f);
    tamis_diag_free(d);
    tamis_conf_free(c);

    /* an msa_networks hop freezes trust: the public hop behind it stays trusted */
    static const char m2[] =
        "Received: from mail.example.org (mail.example.org [10.0.0.2]) by mx.example.org "
        "(Postfix) with ESMTP id 1111; Thu, 22 Aug 2002 14:47:12 +0100\n"
        "Received: from pc.home.example (pc.home.example [203.0.113.9]) by "
        "mail.example.org (Postfix) with ESMTP id 2222; Thu, 22 Aug 2002 14:47:10 +0100\n"
        "From: x@example.org\nTo: y@example.org\nSubject: s\n\nb\n";
    c = tamis_conf_new();
    d = tamis_diag_new();
    tamis_conf_apply(c, "trusted_networks", "10.0.0.0/8", "t", 1, d);
    tamis_conf_apply(c, "msa_networks", "10.0.0.2", "t", 2, d);
    fx_open(&f, m2, sizeof m2 - 1, c);
    if (f.relays.count == 2) {
        assert_true(f.relays.all[0].msa);
        assert_int_equal(f.relays.trusted_count, 2);
        assert_int_equal(f.relays.internal_count, 2);
        assert_non_null(strstr(f.relays.text.trusted, " msa=1 ]"));
        assert_string_equal(f.relays.text.last_external_ip, "");
        assert_string_equal(f.relays.text.first_trusted_ip, "203.0.113.9");
    }
    fx_close(&f);
    tamis_diag_free(d);
    tamis_conf_free(c);
}

/* ---- comparisons with SpamAssassin ------------------------------------------------------------
 */

static const char relays_pl[] =
    "use strict; use warnings; use Mail::SpamAssassin;\n"
    "my $sa = Mail::SpamAssassin->new({ local_tests_only => 1, dont_copy_prefs => 1,\n"
    "  userprefs_filename => '/dev/null', post_config_text => ($ENV{EXTRA_CF} // '') });\n"
    "$sa->init(0);\n"
    "while (my $f = <STDIN>) { chomp $f;\n"
    "  open my $fh, '<', $f or die; my $data = do { local $/; <$fh> }; close $fh;\n"
    "  my $msg = $sa->parse($data);\n"
    "  my $pms = Mail::SpamAssassin::PerMsgStatus->new($sa, $msg);\n"
    "  $pms->extract_message_metadata();\n"
    "  print \"FILE $f\\n\";\n"
    "  for my $k (qw(Trusted Untrusted Internal External)) {\n"
    "    print \"$k: \", ($pms->get(\"X-Spam-Relays-$k\") // ''), \"\\n\"; }\n"
    "  $pms->finish; $msg->finish; }\n";

static const char hits_pl[] =
    "use strict; use warnings; use Mail::SpamAssassin;\n"
    "my $sa = Mail::SpamAssassin->new({ local_tests_only => 1, dont_copy_prefs => 1,\n"
    "  userprefs_filename => '/dev/null' });\n"
    "$sa->init(1); my $conf = $sa->{conf};\n"
    "for my $kind (qw(head_evals body_evals rawbody_evals full_evals)) {\n"
    "  for my $pri (sort keys %{$conf->{$kind}}) {\n"
    "    for my $name (sort keys %{$conf->{$kind}->{$pri}}) {\n"
    "      my ($fn, $args) = @{$conf->{$kind}->{$pri}->{$name}};\n"
    "      my $score = $conf->{scores}->{$name} // 0;\n"
    "      print join(\"\\x1f\", 'RULE', $name, $kind, $score, $fn, @{$args || []}), \"\\n\";\n"
    "} } }\n"
    "while (my $f = <STDIN>) { chomp $f;\n"
    "  open my $fh, '<', $f or die; my $data = do { local $/; <$fh> }; close $fh;\n"
    "  my $msg = $sa->parse($data); my $pms = $sa->check($msg);\n"
    "  print \"FILE $f\\n\";\n"
    "  print 'HITS ', join(' ', @{$pms->{test_names_hit}}, @{$pms->{subtest_names_hit}}), "
    "\"\\n\";\n"
    "  $pms->finish; $msg->finish; }\n";

/* Runs a Perl script over the files; returns its whole output (malloc'ed) or NULL. */
static char *run_perl(const char *script, char **files, size_t nfiles, const char *extra_cf)
{
    char sp[] = "/tmp/tamis-evals-XXXXXX", lp[] = "/tmp/tamis-evals-list-XXXXXX";
    int fd = mkstemp(sp), lfd = mkstemp(lp);
    if (fd < 0 || lfd < 0)
        return NULL;
    FILE *s = fdopen(fd, "w"), *l = fdopen(lfd, "w");
    fputs(script, s);
    fclose(s);
    for (size_t i = 0; i < nfiles; i++)
        fprintf(l, "%s\n", files[i]);
    fclose(l);
    char cmd[1024];
    /* SpamAssassin needs about half a second per message on a loaded machine */
    snprintf(cmd, sizeof cmd, "EXTRA_CF='%s' timeout %zu perl %s < %s 2>/dev/null",
             extra_cf ? extra_cf : "", 60 + nfiles, sp, lp);
    FILE *p = popen(cmd, "r");
    tamis_buf_t out;
    tamis_buf_init(&out, 64u << 20);
    char buf[65536];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof buf, p)) > 0)
        tamis_buf_append(&out, buf, n);
    int rc = p ? pclose(p) : -1;
    unlink(sp);
    unlink(lp);
    if (rc != 0 || out.err || out.len == 0) {
        tamis_buf_free(&out);
        return NULL;
    }
    return tamis_buf_steal(&out, NULL);
}

/* The first n files of a split list, as absolute paths. */
static size_t corpus_files(const char *list, size_t n, char **out)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/corpus/split/%s", TAMIS_SOURCE_DIR, list);
    FILE *fp = fopen(path, "r");
    size_t k = 0;
    char line[1024];
    while (fp && k < n && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!*line)
            continue;
        char full[2048];
        snprintf(full, sizeof full, "%s/corpus/data/%s", TAMIS_SOURCE_DIR, line);
        if (access(full, R_OK) == 0)
            out[k++] = strdup(full);
    }
    if (fp)
        fclose(fp);
    return k;
}

static size_t fixture_files(char **out, size_t max)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls %s/corpus/fixtures/*.eml 2>/dev/null", TAMIS_SOURCE_DIR);
    FILE *p = popen(cmd, "r");
    size_t k = 0;
    char line[1024];
    while (p && k < max && fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        out[k++] = strdup(line);
    }
    if (p)
        pclose(p);
    return k;
}

static bool load_file(const char *path, char **data, size_t *len)
{
    char err[256];
    return tamis_read_file(path, 64u << 20, data, len, err, sizeof err) == 0;
}

static size_t sample(char **files)
{
    /* TAMIS_EVALS_SAMPLE=N widens the corpus sample for a manual, longer comparison */
    const char *env = getenv("TAMIS_EVALS_SAMPLE");
    size_t per = env && atoi(env) > 0 ? (size_t)atoi(env) : 25;
    if (per > 1000)
        per = 1000;
    size_t n = corpus_files("test-ham.txt", per, files);
    n += corpus_files("test-spam.txt", per, files + n);
    n += fixture_files(files + n, 40);
    return n;
}

static size_t count_hops(const char *s)
{
    size_t n = 0;
    for (; s && (s = strstr(s, "[ ip=")) != NULL; s++)
        n++;
    return n;
}

/* Relays of each file vs SpamAssassin's, under extra_cf (also applied to our conf). */
static void compare_relays(const char *extra_cf, const char *key, const char *value)
{
    char *files[2048];
    size_t n = sample(files);
    if (n == 0) {
        skip();
    }
    char *out = run_perl(relays_pl, files, n, extra_cf);
    if (!out) {
        for (size_t i = 0; i < n; i++)
            free(files[i]);
        skip();
    }
    tamis_conf_t *c = tamis_conf_new();
    tamis_diag_t *d = tamis_diag_new();
    if (key)
        tamis_conf_apply(c, key, value, "t", 1, d);
    size_t same = 0, same_split = 0, total = 0;
    char *save = NULL;
    char *line = strtok_r(out, "\n", &save);
    while (line) {
        if (strncmp(line, "FILE ", 5) != 0) {
            line = strtok_r(NULL, "\n", &save);
            continue;
        }
        char *data;
        size_t len;
        const char *fname = line + 5;
        assert_true(load_file(fname, &data, &len));
        fixture_t f;
        fx_open(&f, data, len, c);
        const char *mine[4] = {f.relays.text.trusted, f.relays.text.untrusted,
                               f.relays.text.internal, f.relays.text.external};
        static const char *const pre[4] = {"Trusted: ", "Untrusted: ", "Internal: ", "External: "};
        bool ok = true, split = true;
        for (int k = 0; k < 4; k++) {
            line = strtok_r(NULL, "\n", &save);
            /* strtok_r skips empty lines, which never occur: each line has its label */
            const char *theirs =
                line && !strncmp(line, pre[k], strlen(pre[k])) ? line + strlen(pre[k]) : "";
            split &= count_hops(theirs) == count_hops(mine[k]);
            if (strcmp(theirs, mine[k]) != 0) {
                if (ok)
                    fprintf(stderr, "relays differ: %s\n  %s\n  SA:    %s\n  Tamis: %s\n", fname,
                            pre[k], theirs, mine[k]);
                ok = false;
            }
        }
        same += ok;
        same_split += split;
        total++;
        fx_close(&f);
        free(data);
        line = strtok_r(NULL, "\n", &save);
    }
    fprintf(stderr,
            "relays (%s): %zu/%zu messages with X-Spam-Relays-* identical to SpamAssassin, "
            "%zu/%zu with the same trusted/untrusted/internal/external hop counts\n",
            key ? value : "inferred trust", same, total, same_split, total);
    assert_true(total >= n / 2);
    /* Field differences come from lib/msg's Received parser; the trust split (relays.c) must
     * agree on nearly all mail. */
    assert_true(same_split * 100 >= total * 90);
    assert_true(same * 100 >= total * 50);
    tamis_diag_free(d);
    tamis_conf_free(c);
    free(out);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
}

static void test_relays_vs_sa(void **state)
{
    (void)state;
    compare_relays(NULL, NULL, NULL);
}

static void test_relays_vs_sa_trusted(void **state)
{
    (void)state;
    compare_relays("trusted_networks 66.218.0.0/16 127.0.0.0/8", "trusted_networks",
                   "66.218.0.0/16 127.0.0.0/8");
}

typedef struct {
    char *name;
    char *kind;
    double score;
    const tamis_eval_def_t *def;
    char *args[8];
    size_t nargs;
    size_t agree, disagree, sa_hits, our_hits;
} sa_rule_t;

static size_t parse_rules(char *out, sa_rule_t *rules, size_t max, char **rest)
{
    size_t n = 0;
    char *save = NULL, *line = strtok_r(out, "\n", &save);
    while (line && strncmp(line, "RULE\x1f", 5) == 0) {
        char *f[16];
        size_t nf = 0;
        for (char *p = line, *q; nf < 16; p = q + 1) {
            q = strchr(p, '\x1f');
            f[nf++] = p;
            if (!q)
                break;
            *q = '\0';
        }
        const tamis_eval_def_t *d = nf >= 5 ? find_eval(f[4]) : NULL;
        double score = nf >= 4 ? atof(f[3]) : 0;
        /* SpamAssassin does not run scored-zero rules (except sub-rules) */
        if (d && n < max && (score != 0 || strncmp(f[1], "__", 2) == 0)) {
            sa_rule_t *r = &rules[n++];
            memset(r, 0, sizeof *r);
            r->name = f[1], r->kind = f[2], r->score = score, r->def = d;
            for (size_t i = 5; i < nf && r->nargs < 8; i++)
                r->args[r->nargs++] = f[i];
        }
        line = strtok_r(NULL, "\n", &save);
    }
    /* put the rest back together for the FILE/HITS parser */
    if (line)
        line[strlen(line)] = '\n';
    *rest = line;
    (void)save;
    return n;
}

static bool in_hits(const char *hits, const char *name)
{
    size_t l = strlen(name);
    for (const char *p = hits; (p = strstr(p, name)) != NULL; p += l)
        if ((p == hits || p[-1] == ' ') && (p[l] == ' ' || p[l] == '\0' || p[l] == '\n'))
            return true;
    return false;
}

static tamis_rule_type_t kind_type(const char *k)
{
    if (!strcmp(k, "body_evals"))
        return TAMIS_RULE_EVAL_BODY;
    if (!strcmp(k, "rawbody_evals"))
        return TAMIS_RULE_EVAL_RAWBODY;
    if (!strcmp(k, "full_evals"))
        return TAMIS_RULE_EVAL_FULL;
    return TAMIS_RULE_EVAL_HEADER;
}

static void test_evals_vs_sa(void **state)
{
    (void)state;
    char *files[2048];
    size_t n = sample(files);
    char *out = n ? run_perl(hits_pl, files, n, NULL) : NULL;
    if (!out) {
        for (size_t i = 0; i < n; i++)
            free(files[i]);
        skip();
    }
    static sa_rule_t rules[512];
    char *rest = NULL;
    size_t nr = parse_rules(out, rules, 512, &rest);
    assert_true(nr > 50);
    tamis_conf_t *c = stock_conf();
    size_t msgs = 0;
    char *save = NULL;
    for (char *line = rest ? strtok_r(rest, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "FILE ", 5) != 0)
            continue;
        const char *fname = line + 5;
        char *hits = strtok_r(NULL, "\n", &save);
        if (!hits || strncmp(hits, "HITS", 4) != 0)
            break;
        char *data;
        size_t len;
        assert_true(load_file(fname, &data, &len));
        fixture_t f;
        fx_open(&f, data, len, c);
        for (size_t i = 0; i < nr; i++) {
            sa_rule_t *r = &rules[i];
            f.ctx.rule = r->name;
            f.ctx.rule_type = kind_type(r->kind);
            f.ctx.log = NULL;
            bool mine = r->def->fn(&f.ctx, (const char *const *)r->args, r->nargs) != 0;
            bool theirs = in_hits(hits + 4, r->name);
            r->sa_hits += theirs, r->our_hits += mine;
            if (mine == theirs) {
                r->agree++;
            } else {
                r->disagree++;
                fprintf(stderr, "  %s %s: SA %d, Tamis %d\n", r->name, fname, theirs, mine);
            }
        }
        fx_close(&f);
        free(data);
        msgs++;
    }
    size_t agree = 0, total = 0, hit_rules = 0;
    for (size_t i = 0; i < nr; i++) {
        agree += rules[i].agree;
        total += rules[i].agree + rules[i].disagree;
        hit_rules += rules[i].sa_hits > 0;
        if (rules[i].disagree)
            fprintf(stderr, "eval rule %-32s %-28s agree %zu/%zu (SA hits %zu, Tamis %zu)\n",
                    rules[i].name, rules[i].def->name, rules[i].agree,
                    rules[i].agree + rules[i].disagree, rules[i].sa_hits, rules[i].our_hits);
    }
    fprintf(stderr,
            "evals: %zu stock eval rules implemented, %zu messages, %zu/%zu verdicts agree with "
            "SpamAssassin, %zu rules hit somewhere\n",
            nr, msgs, agree, total, hit_rules);
    assert_true(msgs >= n / 2);
    assert_true(agree * 100 >= total * 97);
    tamis_conf_free(c);
    free(out);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
}

/* A dashed rule ("----") inside a multipart child is text, not the end of the part: the long
 * quoted-printable line after it counts (spam-2/00884, MIME_QP_LONG_LINE in SpamAssassin). */
static void test_qp_long_line_after_dashes(void **state)
{
    (void)state;
    tamis_conf_t *c = tamis_conf_new();
    char longl[400];
    memset(longl, 'x', 355);
    longl[355] = '\0';
    char msg[1200];
    snprintf(msg, sizeof msg,
             "Subject: t\nMIME-Version: 1.0\n"
             "Content-type: multipart/mixed; boundary=\"#DM6#\"\n\n"
             "--#DM6#\nContent-Type: text/plain; charset=us-ascii\n"
             "Content-Transfer-Encoding: quoted-printable\n\nshort\n"
             "------------------------------------------\n%s\n\n--#DM6#--\n",
             longl);
    assert_true(eval_on(msg, c, "check_for_mime", (const char *const[]){"mime_qp_long_line"}, 1) ==
                1);
    /* the same part ends at its boundary: a long line after it is not part of it */
    snprintf(msg, sizeof msg,
             "Subject: t\nMIME-Version: 1.0\n"
             "Content-type: multipart/mixed; boundary=\"#DM6#\"\n\n"
             "--#DM6#\nContent-Type: text/plain; charset=us-ascii\n"
             "Content-Transfer-Encoding: quoted-printable\n\nshort\n--#DM6#--\n%s\n",
             longl);
    assert_true(eval_on(msg, c, "check_for_mime", (const char *const[]){"mime_qp_long_line"}, 1) ==
                0);
    tamis_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_date),
        cmocka_unit_test(test_shifted_date),
        cmocka_unit_test(test_header_misc),
        cmocka_unit_test(test_recipients),
        cmocka_unit_test(test_equal_from_domains),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_relays_inference),
        cmocka_unit_test(test_relays_vs_sa),
        cmocka_unit_test(test_relays_vs_sa_trusted),
        cmocka_unit_test(test_evals_vs_sa),
        cmocka_unit_test(test_qp_long_line_after_dashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
