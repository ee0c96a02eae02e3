/*
 * End-to-end tests of lib/scan against the real SpamAssassin: for each case of
 * tests/golden/scan/cases.txt, loads 10_prefs.cf + 20_rules.cf + the case's settings, scans the
 * fixture and compares the PROCESS output byte for byte with <case>.out, which
 * tests/golden/scan/make-golden.py produced with spamassassin 4.0.1 (rule lines of the report
 * re-sorted into Tamis's deterministic order). Only the Checker-Version line, the date of the
 * report_safe Received line and the MIME boundary are normalised.
 *
 * With "--print CASE" it prints Tamis's output for that case instead (to diff by hand).
 */
#include "tamis/scan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define GOLDEN TAMIS_SOURCE_DIR "/tests/golden/scan/"

typedef struct {
    char name[64];
    char fixture[128];
    char extra[1024];
} gcase_t;

static char *slurp(const char *path, size_t *len)
{
    char *data = NULL, err[256];
    if (tamis_read_file(path, 1 << 24, &data, len, err, sizeof err) != 0)
        return NULL;
    return data;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Reads cases.txt: "name | fixture | setting;setting". Returns the count. */
static size_t read_cases(gcase_t *out, size_t max)
{
    FILE *f = fopen(GOLDEN "cases.txt", "r");
    if (!f)
        return 0;
    char line[2048];
    size_t n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || !strchr(line, '|'))
            continue;
        char *a = strtok(line, "|"), *b = strtok(NULL, "|"), *c = strtok(NULL, "\n");
        snprintf(out[n].name, sizeof out[n].name, "%s", trim(a));
        snprintf(out[n].fixture, sizeof out[n].fixture, "%s", b ? trim(b) : "");
        snprintf(out[n].extra, sizeof out[n].extra, "%s", c ? trim(c) : "");
        n++;
    }
    fclose(f);
    return n;
}

static tamis_ruleset_t *load_case(const gcase_t *c)
{
    static const char *const paths[] = {GOLDEN "10_prefs.cf", GOLDEN "20_rules.cf"};
    char extra[1024];
    snprintf(extra, sizeof extra, "%s", c->extra);
    const char *lines[16];
    size_t nl = 0;
    for (char *tok = strtok(extra, ";"); tok && nl < 16; tok = strtok(NULL, ";"))
        lines[nl++] = trim(tok);
    tamis_rules_source_t src = {0};
    src.paths = paths;
    src.path_count = 2;
    src.extra_lines = lines;
    src.extra_line_count = nl;
    tamis_ruleset_t *rs = NULL;
    char err[512] = "";
    if (tamis_rules_load(&src, &rs, NULL, err, sizeof err) != 0)
        fprintf(stderr, "load %s: %s\n", c->name, err);
    return rs;
}

/* Tamis's PROCESS output for a case (malloc'ed). */
static char *run_case(const gcase_t *c, size_t *len)
{
    tamis_ruleset_t *rs = load_case(c);
    if (!rs)
        return NULL;
    char path[512];
    snprintf(path, sizeof path, TAMIS_SOURCE_DIR "/corpus/fixtures/%s", c->fixture);
    size_t n;
    char *msg = slurp(path, &n);
    char *res = NULL;
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.hostname = "vm"; /* the host the goldens were made on */
    o.now = 1700000000;
    o.boundary_seed = 42;
    o.local_only = true;
    tamis_scan_t *s = NULL;
    char err[256] = "";
    if (msg && tamis_scan_run(rs, msg, n, &o, &s, err, sizeof err) == 0) {
        tamis_buf_t b;
        tamis_buf_init(&b, 0);
        if (tamis_scan_rewrite(s, &b) == 0)
            res = tamis_buf_steal(&b, len);
        tamis_buf_free(&b);
    } else {
        fprintf(stderr, "scan %s: %s\n", c->name, err);
    }
    tamis_scan_free(s);
    free(msg);
    tamis_rules_unref(rs);
    return res;
}

/* Replaces the rest of the line after needle (up to its EOL) with rep; every occurrence. */
static void blank_line_after(tamis_buf_t *b, const char *needle, const char *rep, bool next_line)
{
    size_t from = 0;
    for (;;) {
        char *p = b->data ? strstr(b->data + from, needle) : NULL;
        if (!p)
            return;
        size_t at = (size_t)(p - b->data) + strlen(needle);
        if (next_line) {
            char *nl = strchr(b->data + at, '\n');
            if (!nl)
                return;
            at = (size_t)(nl - b->data) + 1;
        }
        size_t end = at;
        while (end < b->len && b->data[end] != '\n' && b->data[end] != '\r')
            end++;
        tamis_buf_t t;
        tamis_buf_init(&t, 0);
        tamis_buf_append(&t, b->data, at);
        tamis_buf_puts(&t, rep);
        tamis_buf_append(&t, b->data + end, b->len - end);
        from = at + strlen(rep);
        tamis_buf_free(b);
        *b = t;
    }
}

static void replace_all(tamis_buf_t *b, const char *what, const char *rep)
{
    if (!*what)
        return;
    tamis_buf_t t;
    tamis_buf_init(&t, 0);
    const char *p = b->data ? b->data : "", *q;
    while ((q = strstr(p, what))) {
        tamis_buf_append(&t, p, (size_t)(q - p));
        tamis_buf_puts(&t, rep);
        p = q + strlen(what);
    }
    tamis_buf_puts(&t, p);
    tamis_buf_free(b);
    *b = t;
}

static void normalise(tamis_buf_t *b)
{
    blank_line_after(b, "X-Spam-Checker-Version:", " X", false);
    blank_line_after(b, "with SpamAssassin (version 4.0.1);", "\tDATE", true);
    const char *bd = b->data ? strstr(b->data, "multipart/mixed; boundary=\"") : NULL;
    if (bd) {
        bd += strlen("multipart/mixed; boundary=\"");
        char boundary[256];
        size_t n = strcspn(bd, "\"");
        snprintf(boundary, sizeof boundary, "%.*s", (int)(n < 255 ? n : 255), bd);
        replace_all(b, boundary, "BOUNDARY");
    }
}

static void check_case(const gcase_t *c)
{
    char path[512];
    snprintf(path, sizeof path, GOLDEN "%s.out", c->name);
    size_t glen = 0, tlen = 0;
    char *golden = slurp(path, &glen);
    char *tamis = run_case(c, &tlen);
    assert_non_null(golden);
    assert_non_null(tamis);
    tamis_buf_t g, t;
    tamis_buf_init(&g, 0);
    tamis_buf_init(&t, 0);
    tamis_buf_append(&g, golden, glen);
    tamis_buf_append(&t, tamis, tlen);
    normalise(&g);
    normalise(&t);
    if (g.len != t.len || memcmp(g.data, t.data, g.len) != 0) {
        size_t i = 0;
        while (i < g.len && i < t.len && g.data[i] == t.data[i])
            i++;
        size_t from = i > 200 ? i - 200 : 0;
        fprintf(stderr, "case %s differs at byte %zu\n--- golden:\n%.*s\n--- tamis:\n%.*s\n",
                c->name, i, (int)(i - from + 200 < g.len - from ? i - from + 200 : g.len - from),
                g.data + from, (int)(i - from + 200 < t.len - from ? i - from + 200 : t.len - from),
                t.data + from);
    }
    assert_int_equal(g.len, t.len);
    assert_memory_equal(g.data, t.data, g.len);
    tamis_buf_free(&g);
    tamis_buf_free(&t);
    free(golden);
    free(tamis);
}

static void test_golden_case(void **state)
{
    check_case((const gcase_t *)*state);
}

static void test_headers_cut(void **state)
{
    (void)state;
    gcase_t c[16];
    size_t n = read_cases(c, 16);
    assert_true(n > 0);
    tamis_ruleset_t *rs = load_case(&c[0]);
    assert_non_null(rs);
    size_t len;
    char *msg = slurp(TAMIS_SOURCE_DIR "/corpus/fixtures/scan-crlf.eml", &len);
    assert_non_null(msg);
    tamis_scan_t *s = NULL;
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.local_only = true;
    /* HEADERS and PROCESS are rendered separately: fix the clock and the MIME boundary so the
     * two renderings can be compared byte for byte */
    o.now = 1035000000;
    o.boundary_seed = 42;
    assert_int_equal(tamis_scan_run(rs, msg, len, &o, &s, NULL, 0), 0);
    tamis_buf_t h, p;
    tamis_buf_init(&h, 0);
    tamis_buf_init(&p, 0);
    assert_int_equal(tamis_scan_headers(s, &h), 0);
    assert_int_equal(tamis_scan_rewrite(s, &p), 0);
    /* HEADERS is PROCESS cut after the first blank line (CRLF here) */
    assert_true(h.len < p.len);
    assert_memory_equal(h.data, p.data, h.len);
    assert_int_equal(memcmp(h.data + h.len - 4, "\r\n\r\n", 4), 0);
    assert_ptr_equal(strstr(h.data, "\r\n\r\n") + 4, h.data + h.len);
    /* verdict accessors agree with the rendered strings */
    assert_true(tamis_scan_is_spam(s));
    assert_true(tamis_scan_score(s) >= tamis_scan_required(s));
    assert_string_equal(tamis_scan_required_str(s), "5.0");
    tamis_buf_t sym, log;
    tamis_buf_init(&sym, 0);
    tamis_buf_init(&log, 0);
    assert_int_equal(tamis_scan_symbols(s, &sym), 0);
    assert_non_null(strstr(sym.data, "TST_BIG,TST_BODY"));
    assert_null(strstr(sym.data, "__TST_SUB"));
    assert_int_equal(tamis_scan_log_line(s, "42", &log), 0);
    assert_int_equal(strncmp(log.data, "result: Y ", 10), 0);
    assert_non_null(strstr(log.data, "mid=<abc124@example.com>"));
    tamis_buf_free(&sym);
    tamis_buf_free(&log);
    tamis_buf_free(&h);
    tamis_buf_free(&p);
    tamis_scan_free(s);
    free(msg);
    tamis_rules_unref(rs);
}

int main(int argc, char **argv)
{
    static gcase_t cases[32];
    size_t n = read_cases(cases, 32);
    if (argc == 3 && strcmp(argv[1], "--print") == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(cases[i].name, argv[2]) == 0) {
                size_t len;
                char *out = run_case(&cases[i], &len);
                if (out)
                    fwrite(out, 1, len, stdout);
                free(out);
                return out ? 0 : 1;
            }
        return 2;
    }
    struct CMUnitTest tests[33];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct CMUnitTest t = {cases[i].name, test_golden_case, NULL, NULL, &cases[i]};
        tests[k++] = t;
    }
    struct CMUnitTest h = cmocka_unit_test(test_headers_cut);
    tests[k++] = h;
    return _cmocka_run_group_tests("scan_golden", tests, k, NULL, NULL);
}
