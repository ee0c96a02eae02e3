/*
 * Unit tests of lib/msg. With "--dump FILE..." it instead prints the model in the format of
 * tests/tools/sa-msg-dump.pl, so the two can be diffed against the real SpamAssassin; with
 * "--bench LIST" it times parsing over a corpus split list.
 */
#include "tamis/msg.h"

#include "msg_dump.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* ---- dump mode ------------------------------------------------------------------------------ */

static void put_esc(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            fputs("\\\\", f);
        else if (s[i] == '\n')
            fputs("\\n", f);
        else if (s[i] == '\r')
            fputs("\\r", f);
        else
            fputc(s[i], f);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void dump_uris(const tamis_msg_t *m)
{
    size_t n = tamis_msg_uri_string_count(m);
    const char **v = calloc(n + 1, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = tamis_msg_uri_string(m, i);
    qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i && strcmp(v[i], v[i - 1]) == 0)
            continue;
        fputs("U ", stdout);
        put_esc(stdout, v[i], strlen(v[i]));
        fputc('\n', stdout);
    }
    free(v);
}

static void dump_relays(const tamis_msg_t *m)
{
    for (size_t i = 0; i < tamis_msg_relay_count(m); i++) {
        const tamis_relay_t *r = tamis_msg_relay_at(m, i);
        if (r->skipped || r->unparseable)
            continue;
        tamis_buf_t b;
        tamis_buf_init(&b, 0);
        tamis_buf_printf(&b, "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s id=%s auth=%s ]",
                         r->ip, r->rdns, r->helo, r->by, r->ident, r->envfrom, r->id, r->auth);
        fputs("V ", stdout);
        put_esc(stdout, b.data ? b.data : "", b.len);
        fputc('\n', stdout);
        tamis_buf_free(&b);
    }
}

static void emit_stdout(void *ctx, const char *s)
{
    (void)ctx;
    fputs(s, stdout);
}

static int dump_file(const char *path)
{
    char *data;
    size_t len;
    char err[256];
    if (tamis_read_file(path, 64u << 20, &data, &len, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    tamis_msg_t *m;
    if (tamis_msg_parse(data, len, NULL, &m, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        free(data);
        return 1;
    }
    printf("=== FILE %s\n", path);
    for (size_t i = 0; i < tamis_msg_body_line_count(m); i++) {
        tamis_slice_t l = tamis_msg_body_line(m, i);
        fputs("L ", stdout);
        put_esc(stdout, l.ptr, l.len);
        fputc('\n', stdout);
    }
    for (size_t i = 0; i < tamis_msg_rawbody_count(m); i++) {
        tamis_slice_t l = tamis_msg_rawbody_chunk(m, i);
        fputs("R ", stdout);
        put_esc(stdout, l.ptr, l.len);
        fputc('\n', stdout);
    }
    dump_uris(m);
    dump_relays(m);
    char line[256];
    dump_html(m, line, sizeof(line), emit_stdout, NULL);
    dump_mime_flags(m, line, sizeof(line), emit_stdout, NULL);
    for (size_t i = 0; i < tamis_msg_header_count(m); i++) {
        const tamis_header_t *h = tamis_msg_header_at(m, i);
        printf("D %s: ", h->name);
        put_esc(stdout, h->decoded, strlen(h->decoded));
        fputs("\\n\n", stdout);
    }
    tamis_msg_free(m);
    free(data);
    return 0;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Parses every file of a split list (paths relative to corpus/data), five passes over the files
 * held in memory, and reports the best pass (the machine is shared, the best pass is the least
 * disturbed one). */
static int bench(const char *list)
{
    FILE *f = fopen(list, "r");
    if (!f)
        return 1;
    char line[1024];
    size_t n = 0, cap = 0, bytes = 0;
    char **msgs = NULL;
    size_t *lens = NULL;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char path[1200];
        snprintf(path, sizeof(path), "%s/corpus/data/%s", TAMIS_SOURCE_DIR, line);
        char *data;
        size_t len;
        if (tamis_read_file(path, 64u << 20, &data, &len, NULL, 0) < 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            msgs = realloc(msgs, cap * sizeof(*msgs));
            lens = realloc(lens, cap * sizeof(*lens));
        }
        msgs[n] = data;
        lens[n++] = len;
        bytes += len;
    }
    fclose(f);
    double best = 0, best_cpu = 0;
    for (int pass = 0; pass < 5; pass++) {
        double c0 = cpu_ms();
        double t0 = tamis_now_ms();
        for (size_t i = 0; i < n; i++) {
            tamis_msg_t *m;
            if (tamis_msg_parse(msgs[i], lens[i], NULL, &m, NULL, 0) == 0)
                tamis_msg_free(m);
        }
        double t = tamis_now_ms() - t0, c = cpu_ms() - c0;
        if (pass == 0 || t < best)
            best = t;
        if (pass == 0 || c < best_cpu)
            best_cpu = c;
    }
    printf("%zu messages, %zu bytes, best of 5 passes: wall %.1f ms (%.4f ms/message), "
           "cpu %.1f ms (%.4f ms/message)\n",
           n, bytes, best, n ? best / (double)n : 0, best_cpu, n ? best_cpu / (double)n : 0);
    for (size_t i = 0; i < n; i++)
        free(msgs[i]);
    free(msgs);
    free(lens);
    return 0;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static tamis_msg_t *parse_str(const char *s)
{
    tamis_msg_t *m = NULL;
    char err[256];
    int rc = tamis_msg_parse(s, strlen(s), NULL, &m, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_non_null(m);
    return m;
}

static tamis_msg_t *parse_file(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", TAMIS_SOURCE_DIR, rel);
    char *data;
    size_t len;
    assert_int_equal(tamis_read_file(path, 64u << 20, &data, &len, NULL, 0), 0);
    tamis_msg_t *m = NULL;
    assert_int_equal(tamis_msg_parse(data, len, NULL, &m, NULL, 0), 0);
    free(data);
    return m;
}

static void assert_line(const tamis_msg_t *m, size_t i, const char *want)
{
    assert_true(i < tamis_msg_body_line_count(m));
    tamis_slice_t l = tamis_msg_body_line(m, i);
    if (l.len != strlen(want) || memcmp(l.ptr, want, l.len) != 0) {
        fprintf(stderr, "line %zu: got [%.*s] want [%s]\n", i, (int)l.len, l.ptr, want);
        fail();
    }
}

static bool has_uri(const tamis_msg_t *m, const char *u)
{
    for (size_t i = 0; i < tamis_msg_uri_string_count(m); i++)
        if (strcmp(tamis_msg_uri_string(m, i), u) == 0)
            return true;
    return false;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_headers(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str("From blah@example.com  Mon Jan  1 00:00:00 2024\n"
                               "Subject: =?iso-8859-1?q?caf=E9?= =?iso-8859-1?q?_au_lait?=\n"
                               "X-Folded: one\n\ttwo\n"
                               "Message-ID: =?utf-8?q?not_decoded?=\n"
                               "To: a@b.c\n"
                               "\n"
                               "hello\n");
    assert_int_equal(tamis_msg_mbox_from(m).len, 48);
    assert_int_equal(tamis_msg_header_count(m), 4);
    const tamis_header_t *h = tamis_msg_header_first(m, "subject");
    assert_non_null(h);
    assert_string_equal(h->decoded, "caf\xc3\xa9 au lait");
    h = tamis_msg_header_first(m, "x-folded");
    assert_string_equal(h->raw, "one\n\ttwo");
    assert_string_equal(h->decoded, "one two");
    assert_string_equal(tamis_msg_header_last(m, "Message-Id")->decoded, "=?utf-8?q?not_decoded?=");
    assert_false(tamis_msg_uses_crlf(m));
    assert_int_equal(tamis_msg_pristine_body(m).len, 6);
    tamis_msg_free(m);
}

static void test_body_lines(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str("Subject: hi\n\nfirst  line\nsame para\n\n\nsecond\n");
    assert_int_equal(tamis_msg_body_line_count(m), 3);
    assert_line(m, 0, "hi\n");
    assert_line(m, 1, "first line same para\n");
    assert_line(m, 2, "second ");
    tamis_msg_free(m);
}

static void test_no_subject_crlf(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str("To: x\r\n\r\nbody\r\n");
    assert_true(tamis_msg_uses_crlf(m));
    assert_line(m, 0, "\n");
    assert_line(m, 1, "body ");
    tamis_msg_free(m);
}

static void test_long_line_split(void **state)
{
    (void)state;
    char *buf = malloc(10000);
    strcpy(buf, "Subject: x\n\n");
    size_t k = strlen(buf);
    for (int i = 0; i < 3000; i++)
        buf[k++] = (i % 100 == 99) ? ' ' : 'a';
    buf[k] = '\0';
    tamis_msg_t *m = parse_str(buf);
    for (size_t i = 0; i < tamis_msg_body_line_count(m); i++)
        assert_true(tamis_msg_body_line(m, i).len <= 2048);
    assert_int_equal(tamis_msg_body_line(m, 1).len, 2000);
    tamis_msg_free(m);
    free(buf);
}

static void test_multipart_b64_qp(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str("Subject: mp\nContent-Type: multipart/alternative; boundary=XX\n\n"
                               "--XX\nContent-Type: text/plain; charset=utf-8\n"
                               "Content-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n"
                               "--XX\nContent-Type: text/plain; charset=iso-8859-1\n"
                               "Content-Transfer-Encoding: quoted-printable\n\ncaf=E9 =\nnoir\n"
                               "--XX--\n");
    assert_int_equal(tamis_msg_part_count(m), 3);
    const tamis_part_t *p = tamis_msg_part_at(m, 1);
    assert_string_equal(p->type, "text/plain");
    assert_string_equal(p->encoding, "base64");
    assert_int_equal(p->decoded.len, 11);
    assert_line(m, 1, "hello world caf\xc3\xa9 noir");
    double v = 0;
    assert_true(tamis_msg_mime_stat(m, "mime_base64_count", &v));
    assert_true(v == 1);
    assert_true(tamis_msg_mime_stat(m, "mime_multipart_alternative", &v) && v == 1);
    assert_int_equal(tamis_msg_rawbody_count(m), 2);
    tamis_msg_free(m);
}

static void test_uris_plain(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str("Subject: u\n\nsee http://Example.com/a?b=1 and www.foo.org, "
                               "mail bob@example.net\n");
    assert_true(has_uri(m, "http://Example.com/a?b=1"));
    assert_true(has_uri(m, "http://www.foo.org"));
    assert_true(has_uri(m, "mailto:bob@example.net"));
    tamis_msg_free(m);
}

/* International hosts also give their xn-- form (Util::uri_list_canonicalize with idn_to_ascii);
 * the same message hits the same uri rules in spamassassin -t. */
static void test_uris_idn(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str("Content-Type: text/plain; charset=utf-8\n\n"
                               "visit http://b\xc3\xbc"
                               "cher.de:80/path now\n"
                               "and http://M\xc3\x9cNCHEN.example\xe3\x80\x82"
                               "com/x\n"
                               "or http://WWW.Example.COM/plain\n");
    assert_true(has_uri(m, "http://b\xc3\xbc"
                           "cher.de:80/path"));
    assert_true(has_uri(m, "http://b\xc3\xbc"
                           "cher.de/path"));
    assert_true(has_uri(m, "http://xn--bcher-kva.de:80/path"));
    assert_true(has_uri(m, "http://xn--bcher-kva.de/path"));
    /* upper case and the ideographic full stop are mapped first */
    assert_true(has_uri(m, "http://xn--mnchen-3ya.example.com/x"));
    /* an ASCII host only differs in case: no variant */
    assert_true(has_uri(m, "http://WWW.Example.COM/plain"));
    assert_false(has_uri(m, "http://www.example.com/plain"));
    bool found = false;
    for (size_t i = 0; i < tamis_msg_uri_count(m); i++) {
        const tamis_uri_t *u = tamis_msg_uri_at(m, i);
        if (!strcmp(u->raw, "http://b\xc3\xbc"
                            "cher.de:80/path")) {
            assert_string_equal(u->host, "xn--bcher-kva.de");
            assert_string_equal(u->domain, "xn--bcher-kva.de");
            found = true;
        }
    }
    assert_true(found);
    tamis_msg_free(m);
}

/* redirector_pattern: the first matching pattern's capture is a URI of its own, and then the
 * generic "http..." in the path is not looked for (same hits as spamassassin -t). */
static void test_uris_redirector(void **state)
{
    (void)state;
    const char *pats[] = {"(?i)^http://chkpt\\.zdnet\\.com/chkpt/\\w+/(.*)$",
                          "^https?://r\\.example\\.org/go\\?u=https://(third[^&]*)", "(bad"};
    tamis_msg_redirectors_t *r = NULL;
    char err[256];
    assert_int_equal(tamis_msg_redirectors_new(pats, 3, &r, err, sizeof err), 0);
    assert_non_null(r);
    assert_non_null(strstr(err, "(bad")); /* left out, named */
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    lim.redirectors = r;
    const char *text = "Content-Type: text/plain\n\n"
                       "see http://CHKPT.zdnet.com/chkpt/abc/www.spammer.example/yo\n"
                       "and http://r.example.org/go?u=https://third.example.com/z\n";
    tamis_msg_t *m = NULL;
    assert_int_equal(tamis_msg_parse(text, strlen(text), &lim, &m, err, sizeof err), 0);
    assert_true(has_uri(m, "www.spammer.example/yo"));
    assert_true(has_uri(m, "http://www.spammer.example/yo"));
    assert_true(has_uri(m, "third.example.com/z"));
    assert_false(has_uri(m, "https://third.example.com/z"));
    tamis_msg_free(m);
    /* without the patterns only the generic rule applies */
    assert_int_equal(tamis_msg_parse(text, strlen(text), NULL, &m, err, sizeof err), 0);
    assert_false(has_uri(m, "www.spammer.example/yo"));
    assert_true(has_uri(m, "https://third.example.com/z"));
    tamis_msg_free(m);
    tamis_msg_redirectors_free(r);
    assert_int_equal(tamis_msg_redirectors_new(pats, 0, &r, err, sizeof err), 0);
    assert_null(r);
    tamis_msg_redirectors_free(NULL);
}

static void test_dkim_uri(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str("DKIM-Signature: v=1; a=rsa-sha256; d=Mail.Example.co.uk; s=sel;\n"
                               "\tb=abc\nSubject: d\n\nno links\n");
    bool found = false;
    for (size_t i = 0; i < tamis_msg_uri_count(m); i++) {
        const tamis_uri_t *u = tamis_msg_uri_at(m, i);
        if (u->flags & TAMIS_URI_FROM_DKIM) {
            assert_string_equal(u->raw, "domainkeys:Mail.Example.co.uk");
            assert_string_equal(u->host, "mail.example.co.uk");
            assert_string_equal(u->domain, "example.co.uk");
            assert_int_equal(u->variant_count, 0);
            found = true;
        }
    }
    assert_true(found);
    assert_int_equal(tamis_msg_uri_string_count(m), 0); /* not a uri rule subject */
    tamis_msg_free(m);
}

static void test_html_render(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str(
        "Subject: h\nContent-Type: text/html\n\n"
        "<html><head><title>T1</title><style>p{}</style></head><body>Hello&amp;bye<br>x"
        "<p>para</p><a href=\"http://a.example/x\">click</a><img src=\"http://b.example/i.gif\" "
        "alt=\"ALT\"><script>var a;</script></body></html>\n");
    tamis_slice_t t = tamis_msg_body_text(m);
    assert_non_null(memmem(t.ptr, t.len, "Hello&bye", 9));
    assert_null(memmem(t.ptr, t.len, "ALT", 3));
    assert_null(memmem(t.ptr, t.len, "var a", 5));
    assert_non_null(memmem(t.ptr, t.len, "T1", 2));
    assert_true(has_uri(m, "http://a.example/x"));
    assert_true(has_uri(m, "http://b.example/i.gif"));
    assert_true(tamis_msg_html_tag_seen(m, "img"));
    assert_false(tamis_msg_html_tag_seen(m, "table"));
    tamis_msg_free(m);
}

static void test_received(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_str(
        "Received: from mail.example.com (mail.example.com [192.0.2.7])\n"
        "\tby mx.example.org (Postfix) with ESMTP id 4ABCD12345\n"
        "\tfor <u@example.org>; Mon, 1 Jan 2024 00:00:00 +0000 (UTC)\n"
        "Received: from [10.0.0.5] (helo=client) by mail.example.com with esmtpa (Exim 4.96)\n"
        "\tid 1abcde-000123-AB; Mon, 1 Jan 2024 00:00:00 +0000\n"
        "Subject: r\n\nx\n");
    assert_int_equal(tamis_msg_relay_count(m), 2);
    const tamis_relay_t *r = tamis_msg_relay_at(m, 0);
    assert_string_equal(r->ip, "192.0.2.7");
    assert_string_equal(r->rdns, "mail.example.com");
    assert_string_equal(r->helo, "mail.example.com");
    assert_string_equal(r->by, "mx.example.org");
    assert_string_equal(r->id, "4ABCD12345");
    assert_false(r->ip_private);
    r = tamis_msg_relay_at(m, 1);
    assert_string_equal(r->ip, "10.0.0.5");
    assert_true(r->ip_private);
    tamis_msg_free(m);
}

/* HTML_FONT_FACE_BAD: verdicts of HTML.pm's face regex, checked with perl. */
static bool face_bad(const char *face)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "Content-Type: text/html\n\n<html><body><font face%s%s>x</font></body></html>\n",
             face ? "=" : "", face ? face : "");
    tamis_msg_t *m = parse_str(buf);
    double v = 0;
    bool bad = tamis_msg_html_stat(m, "font_face_bad", &v) && v == 1;
    tamis_msg_free(m);
    return bad;
}

static void test_html_font_face(void **state)
{
    (void)state;
    assert_false(face_bad("Arial"));
    assert_false(face_bad("'\"Tahoma\", Verdana, Arial, sans-serif'"));
    assert_false(face_bad(".SFUIDisplay"));
    assert_false(face_bad("hirakakupro-w3"));
    assert_false(face_bad("\"Arial;\""));
    assert_false(face_bad("\"Times New Roman,serif\""));
    assert_false(face_bad("\"Arial&#10;\"")); /* Perl's $ before a final newline */
    assert_false(face_bad(NULL));             /* <font face>: the value is "face" */
    assert_true(face_bad("Arial!!"));
    assert_true(face_bad("3dfont"));
    assert_true(face_bad("a"));
    assert_true(face_bad("\"\""));
    assert_true(face_bad("\"MS P&#12468;&#12471;&#12483;&#12463;\""));
    /* no font tag: the statistic is absent */
    tamis_msg_t *m = parse_str("Content-Type: text/html\n\n<p>plain</p>\n");
    double v;
    assert_false(tamis_msg_html_stat(m, "font_face_bad", &v));
    tamis_msg_free(m);
}

/* Values checked against SpamAssassin 4.0.1's $pms->{html} for this fixture. */
static void test_html_stats_fixture(void **state)
{
    (void)state;
    tamis_msg_t *m = parse_file("corpus/fixtures/msg-html-alt.eml");
    double v = -1;
    assert_true(tamis_msg_html_stat(m, "html_length", &v) && v == 113);
    assert_true(tamis_msg_html_stat(m, "non_space_len", &v) && v == 79);
    assert_true(tamis_msg_html_stat(m, "image_area", &v) && v == 60000);
    assert_true(tamis_msg_html_stat(m, "length", &v) && v == 599);
    assert_true(tamis_msg_html_stat(m, "font_low_contrast", &v) && v == 1);
    assert_true(tamis_msg_html_stat(m, "max_size", &v) && v == 3);
    assert_true(tamis_msg_html_stat(m, "bad_tag_ratio", &v) && v == 0);
    assert_false(tamis_msg_html_stat(m, "obfuscation_ratio", &v));
    assert_false(tamis_msg_html_stat(m, "no_such_stat", &v));
    assert_true(tamis_msg_html_tag_seen(m, "base"));
    assert_true(tamis_msg_html_tag_seen(m, "table"));
    assert_false(tamis_msg_html_tag_seen(m, "center"));
    assert_int_equal(tamis_msg_html_tag_balance(m, "base"), 1);
    assert_int_equal(tamis_msg_html_tag_balance(m, "br"), 1);
    assert_int_equal(tamis_msg_html_tag_balance(m, "body"), 0);
    assert_string_equal(tamis_msg_html_text(m, "title"), "Savings & more\n");
    assert_string_equal(tamis_msg_html_text(m, "comment"), "<!-- a comment -->\n");
    assert_string_equal(tamis_msg_html_text(m, "anchor"), "here\nmail us\n");
    /* the hidden (white on white) text is rendered and also kept as invisible text */
    tamis_slice_t inv = tamis_msg_invisible_text(m);
    assert_non_null(memmem(inv.ptr, inv.len, "hidden words", 12));
    assert_true(tamis_msg_mime_stat(m, "mime_multipart_alternative", &v) && v == 1);
    assert_true(tamis_msg_mime_stat(m, "mime_body_html_count", &v) && v == 1);
    tamis_msg_free(m);
}

/* Parsing is thread-safe: four threads parse the same messages and must agree with one thread. */
typedef struct {
    const char *data;
    size_t len;
    size_t lines, uris;
    int bad;
} mt_job_t;

static void *mt_worker(void *arg)
{
    mt_job_t *j = arg;
    for (int k = 0; k < 20; k++) {
        tamis_msg_t *m = NULL;
        if (tamis_msg_parse(j->data, j->len, NULL, &m, NULL, 0) != 0) {
            j->bad++;
            continue;
        }
        if (tamis_msg_body_line_count(m) != j->lines || tamis_msg_uri_string_count(m) != j->uris)
            j->bad++;
        tamis_msg_free(m);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/corpus/fixtures/msg-html-alt.eml", TAMIS_SOURCE_DIR);
    char *data;
    size_t len;
    assert_int_equal(tamis_read_file(path, 1 << 20, &data, &len, NULL, 0), 0);
    tamis_msg_t *ref = NULL;
    assert_int_equal(tamis_msg_parse(data, len, NULL, &ref, NULL, 0), 0);
    mt_job_t jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (mt_job_t){data, len, tamis_msg_body_line_count(ref),
                             tamis_msg_uri_string_count(ref), 0};
        assert_int_equal(pthread_create(&th[i], NULL, mt_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
    tamis_msg_free(ref);
    free(data);
}

static void test_limits(void **state)
{
    (void)state;
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    lim.max_message_bytes = 10;
    tamis_msg_t *m = NULL;
    assert_int_equal(tamis_msg_parse("Subject: too long\n\n", 19, &lim, &m, NULL, 0), TAMIS_ELIMIT);
    assert_null(m);
    /* deep nesting is cut at max_mime_depth without failing */
    tamis_msg_limits_default(&lim);
    lim.max_mime_depth = 3;
    char buf[8192];
    size_t k = (size_t)snprintf(buf, sizeof(buf), "Subject: deep\n");
    for (int i = 0; i < 10; i++)
        k += (size_t)snprintf(buf + k, sizeof(buf) - k,
                              "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
    k += (size_t)snprintf(buf + k, sizeof(buf) - k, "Content-Type: text/plain\n\ndeepest\n");
    assert_int_equal(tamis_msg_parse(buf, k, &lim, &m, NULL, 0), 0);
    for (size_t i = 0; i < tamis_msg_part_count(m); i++)
        assert_true(tamis_msg_part_at(m, i)->depth <= 3);
    assert_true(tamis_msg_parse_flag(m, "mime_depth_limit"));
    tamis_msg_free(m);
}

static void test_malformed_never_fails(void **state)
{
    (void)state;
    const char *cases[] = {
        "",
        "\n",
        "no header at all",
        "Content-Type: multipart/mixed\n\n--x\n",
        "Content-Type: multipart/mixed; boundary=\"\"\n\n--\n--\n",
        "Subject: =?utf-8?b?####?= =?x?q?=ZZ?=\n\n",
        "Received: from\nReceived: (qmail 1 invoked by uid 0); 1 Jan 2000\n\n",
        "Content-Type: text/html\n\n<a href=\"<<<\"><img src=x><<<<>>>>&#xFFFFFFFF;&#0;",
        "Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tamis_msg_t *m = NULL;
        assert_int_equal(tamis_msg_parse(cases[i], strlen(cases[i]), NULL, &m, NULL, 0), 0);
        assert_true(tamis_msg_body_line_count(m) >= 1);
        tamis_msg_free(m);
    }
    tamis_msg_free(NULL);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--dump") == 0) {
        int rc = 0;
        for (int i = 2; i < argc; i++)
            rc |= dump_file(argv[i]);
        return rc;
    }
    if (argc > 2 && strcmp(argv[1], "--bench") == 0)
        return bench(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers),          cmocka_unit_test(test_body_lines),
        cmocka_unit_test(test_no_subject_crlf),  cmocka_unit_test(test_long_line_split),
        cmocka_unit_test(test_multipart_b64_qp), cmocka_unit_test(test_uris_plain),
        cmocka_unit_test(test_dkim_uri),         cmocka_unit_test(test_html_render),
        cmocka_unit_test(test_received),         cmocka_unit_test(test_html_stats_fixture),
        cmocka_unit_test(test_html_font_face),   cmocka_unit_test(test_uris_idn),
        cmocka_unit_test(test_uris_redirector),  cmocka_unit_test(test_threads),
        cmocka_unit_test(test_limits),           cmocka_unit_test(test_malformed_never_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
