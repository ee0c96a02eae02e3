/*
 * The Vectorscan prefilter must never change a hit: runs SpamAssassin's stock rules over a sample
 * of the corpus test split twice, with the prefilter and with PCRE2 alone (no_prefilter), and
 * compares hits (names, values, scores, order), sub-tests, capture tags and score. Also checks
 * that a warm compile cache loads the same set and that a corrupt cache file is rebuilt.
 * Skipped when the stock rules or the corpus are not installed. The pattern shrinker that gets the
 * ReplaceTags look-alike rules into the databases is checked on its own: its output must match
 * wherever the input does.
 *
 * Benchmark mode (not a test): TAMIS_RULES_BENCH=hs|pcre runs the rules over the messages of
 * the test split (TAMIS_RULES_BENCH_COUNT limits them, in split order) and prints CPU time per
 * message and load time; parsing is done before timing. Used by bench/callgrind-rules.
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
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tamis/rules.h"

/* lib/rules/pf_shrink.c (internal): the database's shorter superset of a pattern */
char *tamis__pf_shrink(const char *pattern);

#define SAMPLE_STEP 8 /* every 8th message of the split in the comparison test */

static char cache_dir[1024];

static int load_stock(const char *cache, tamis_ruleset_t **rs, double *ms)
{
    tamis_rules_source_t src = {.default_rules_dir = "/usr/share/spamassassin",
                                .site_rules_dir = "/etc/spamassassin",
                                .locale = "C",
                                .cache_dir = cache};
    char err[256];
    double t0 = tamis_now_ms();
    tamis_diag_t *d = tamis_diag_new();
    int rc = tamis_rules_load(&src, rs, d, err, sizeof(err));
    for (size_t i = 0; d && getenv("TAMIS_RULES_BENCH_DIAG") && i < tamis_diag_count(d); i++)
        if (strstr(tamis_diag_at(d, i)->text, "prefilter"))
            fprintf(stderr, "%s\n", tamis_diag_at(d, i)->text);
    tamis_diag_free(d);
    if (ms)
        *ms = tamis_now_ms() - t0;
    if (rc)
        fprintf(stderr, "stock load failed: %s\n", err);
    return rc;
}

static bool have_stock(void)
{
    struct stat sb;
    return stat("/usr/share/spamassassin/72_active.cf", &sb) == 0;
}

/* The test split's paths, in file order (ham then spam). */
static char **split_paths(size_t *n)
{
    static const char *const lists[] = {"test-ham.txt", "test-spam.txt"};
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    for (size_t k = 0; k < 2; k++) {
        char p[1024], line[1024];
        snprintf(p, sizeof(p), "%s/corpus/split/%s", TAMIS_SOURCE_DIR, lists[k]);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!*line)
                continue;
            if (cnt == cap) {
                cap = cap ? cap * 2 : 1024;
                v = realloc(v, cap * sizeof(*v));
                assert_non_null(v);
            }
            size_t need = strlen(TAMIS_SOURCE_DIR) + strlen(line) + 32;
            v[cnt] = malloc(need);
            snprintf(v[cnt], need, "%s/corpus/data/%s", TAMIS_SOURCE_DIR, line);
            cnt++;
        }
        fclose(f);
    }
    *n = cnt;
    return v;
}

static tamis_msg_t *parse_file(const char *path)
{
    char err[256], *data;
    size_t len;
    if (tamis_read_file(path, 64u << 20, &data, &len, err, sizeof(err)) != 0)
        return NULL;
    tamis_msg_t *m = NULL;
    if (tamis_msg_parse(data, len, NULL, &m, err, sizeof(err)) != 0)
        m = NULL;
    free(data);
    return m;
}

static bool same_result(const char *path, const tamis_rules_result_t *a,
                        const tamis_rules_result_t *b)
{
    bool ok = a->hit_count == b->hit_count && a->subtest_count == b->subtest_count &&
              a->score == b->score && a->regex_limit_hits == b->regex_limit_hits;
    for (size_t i = 0; ok && i < a->hit_count; i++)
        ok = strcmp(a->hits[i].name, b->hits[i].name) == 0 &&
             a->hits[i].value == b->hits[i].value && a->hits[i].score == b->hits[i].score;
    for (size_t i = 0; ok && i < a->subtest_count; i++)
        ok = strcmp(a->subtests[i], b->subtests[i]) == 0;
    for (size_t i = 0; ok && (a->tags || b->tags); i += 2) {
        if (!a->tags || !b->tags)
            ok = false;
        else if (!a->tags[i] || !b->tags[i]) {
            ok = !a->tags[i] && !b->tags[i];
            break;
        } else
            ok = strcmp(a->tags[i], b->tags[i]) == 0 && strcmp(a->tags[i + 1], b->tags[i + 1]) == 0;
    }
    if (!ok) {
        fprintf(stderr, "%s differs:\n  prefilter:", path);
        for (size_t i = 0; i < a->hit_count; i++)
            fprintf(stderr, " %s", a->hits[i].name);
        fprintf(stderr, "\n  pcre2:    ");
        for (size_t i = 0; i < b->hit_count; i++)
            fprintf(stderr, " %s", b->hits[i].name);
        fprintf(stderr, "\n  subtests %zu vs %zu:", a->subtest_count, b->subtest_count);
        for (int side = 0; side < 2; side++) {
            const tamis_rules_result_t *x = side ? b : a, *y = side ? a : b;
            for (size_t i = 0; i < x->subtest_count; i++) {
                bool found = false;
                for (size_t j = 0; j < y->subtest_count && !found; j++)
                    found = strcmp(x->subtests[i], y->subtests[j]) == 0;
                if (!found)
                    fprintf(stderr, " %s%s",
                            side ? "pcre2-only:" : "prefilter-only:", x->subtests[i]);
            }
        }
        fprintf(stderr, "\n");
    }
    return ok;
}

static void test_prefilter_identical(void **state)
{
    (void)state;
    if (!have_stock())
        skip();
    tamis_ruleset_t *rs;
    double ms;
    assert_int_equal(load_stock(cache_dir, &rs, &ms), 0);
    size_t n;
    char **paths = split_paths(&n);
    if (!n)
        skip();
    size_t step = getenv("TAMIS_PREFILTER_ALL") ? 1 : SAMPLE_STEP;
    size_t compared = 0, hits = 0, bad = 0;
    size_t rules = tamis_rules_count(rs);
    for (size_t i = 0; i < n; i += step) {
        tamis_msg_t *m = parse_file(paths[i]);
        if (!m)
            continue;
        char err[256];
        for (int set = 0; set < 2; set++) {
            tamis_arena_t *a1 = tamis_arena_new(0), *a2 = tamis_arena_new(0);
            tamis_rules_run_opts_t o1 = {.score_set = set}, o2 = {.score_set = set};
            o2.no_prefilter = true;
            tamis_rules_result_t r1, r2;
            assert_int_equal(tamis_rules_run(rs, m, &o1, a1, &r1, err, sizeof(err)), 0);
            assert_int_equal(tamis_rules_run(rs, m, &o2, a2, &r2, err, sizeof(err)), 0);
            if (!same_result(paths[i], &r1, &r2))
                bad++;
            hits += r2.hit_count + r2.subtest_count;
            tamis_arena_free(a1);
            tamis_arena_free(a2);
        }
        compared++;
        tamis_msg_free(m);
    }
    fprintf(stderr,
            "prefilter: %zu messages x %zu rules x 2 score sets compared, %zu hits+subtests, "
            "%zu differ (load %.0f ms)\n",
            compared, rules, hits, bad, ms);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    tamis_rules_unref(rs);
    assert_int_equal(bad, 0);
    assert_true(compared > 0);
}

static size_t cache_files(const char *suffix, char *first, size_t firstlen)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "ls %s 2>/dev/null | grep '%s$'", cache_dir, suffix);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    char line[512];
    while (p && fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = 0;
        if (n++ == 0 && first)
            snprintf(first, firstlen, "%s/%s", cache_dir, line);
    }
    if (p)
        pclose(p);
    return n;
}

/* A small set, so that compiling it again after corrupting its cache costs nothing. */
static int load_small(const char *cache, tamis_ruleset_t **rs)
{
    static const char *const lines[] = {
        "body T_BODY1 /\\bviagra\\b/i",        "body T_BODY2 /cheap (?:meds|pills)$/",
        "header T_SUBJ1 Subject =~ /money/i",  "header T_SUBJ2 Subject =~ /\\bfree\\b/",
        "uri T_URI1 /^https?:\\/\\/bit\\.ly/", "rawbody T_RAW1 /<font[^>]{0,200}>/i",
    };
    tamis_rules_source_t src = {.extra_lines = lines,
                                .extra_line_count = sizeof(lines) / sizeof(lines[0]),
                                .locale = "C",
                                .cache_dir = cache};
    char err[256];
    return tamis_rules_load(&src, rs, NULL, err, sizeof(err));
}

static size_t small_hits(tamis_ruleset_t *rs)
{
    static const char msg[] = "Subject: free money\n\nBuy viagra now, cheap pills\n\n"
                              "http://bit.ly/x <font size=1>x</font>\n";
    tamis_msg_t *m;
    char err[256];
    assert_int_equal(tamis_msg_parse(msg, sizeof(msg) - 1, NULL, &m, err, sizeof(err)), 0);
    tamis_arena_t *a = tamis_arena_new(0);
    tamis_rules_run_opts_t o = {0};
    tamis_rules_result_t r;
    assert_int_equal(tamis_rules_run(rs, m, &o, a, &r, err, sizeof(err)), 0);
    size_t n = r.hit_count;
    tamis_arena_free(a);
    tamis_msg_free(m);
    return n;
}

static void test_prefilter_cache(void **state)
{
    (void)state;
    size_t l = strlen(cache_dir); /* cache_dir/small, where cache_files() then looks */
    snprintf(cache_dir + l, sizeof(cache_dir) - l, "/small");
    const char *dir = cache_dir;
    char stale[1200]; /* a file an older cache format left behind would be found first */
    while (cache_files(".hsdb", stale, sizeof(stale)) > 0)
        assert_int_equal(unlink(stale), 0);
    tamis_ruleset_t *rs;
    assert_int_equal(load_small(dir, &rs), 0); /* cold (or warm from an earlier run) */
    size_t want = small_hits(rs);
    assert_int_equal(want, 6);
    tamis_rules_unref(rs);
    char f[2048];
    if (cache_files(".hsdb", f, sizeof(f)) == 0)
        skip();                                /* built without Vectorscan */
    assert_int_equal(load_small(dir, &rs), 0); /* warm */
    assert_int_equal(small_hits(rs), want);
    tamis_rules_unref(rs);
    FILE *w = fopen(f, "r+b"); /* corrupt it: the load must notice and rebuild */
    assert_non_null(w);
    fseek(w, 40, SEEK_SET);
    fputs("garbage garbage garbage", w);
    fclose(w);
    assert_int_equal(load_small(dir, &rs), 0);
    assert_int_equal(small_hits(rs), want);
    tamis_rules_unref(rs);
    w = fopen(f, "w"); /* truncated to nothing */
    assert_non_null(w);
    fclose(w);
    assert_int_equal(load_small(dir, &rs), 0);
    assert_int_equal(small_hits(rs), want);
    tamis_rules_unref(rs);
    struct stat sb;
    assert_int_equal(stat(f, &sb), 0);
    assert_true(sb.st_size > 100); /* rewritten */
    assert_int_equal(cache_files(".tmp", NULL, 0), 0);
}

/* ---- benchmark mode ----------------------------------------------------------------------------
 */

static bool pcre_finds(const char *pattern, const char *subject)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    assert_non_null(re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static void expect_shrink(const char *in, const char *want)
{
    char *got = tamis__pf_shrink(in);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_shrink(void **state)
{
    (void)state;
    /* a ReplaceTags letter: high-byte alternatives merge, numeric entities become digit runs */
    const char *letter = "(?:[aA\\xc0]|[\\xc3][\\x80\\x81]|&\\#(?:1(?:03[01]|11[01])|2(?:0[4-7]));"
                         "|[\\xe1](?:[\\xb8][\\xac-\\xaf]))x";
    expect_shrink(letter, "(?:[Aa\\xc0]|&\\#(?:[0-9]{3,4});|[\\x80-\\xff]{2,3})x");
    char *small = tamis__pf_shrink(letter);
    assert_non_null(small);
    const char *subjects[] = {"ax", "\xc0x",  "\xc3\x81x", "&#1030;x", "&#206;x", "\xe1\xb8\xadx",
                              "bx", "&#99;x", "\xc3x"};
    for (size_t i = 0; i < sizeof(subjects) / sizeof(*subjects); i++)
        if (pcre_finds(letter, subjects[i]))
            assert_true(pcre_finds(small, subjects[i]));
    assert_false(pcre_finds(small, "bx"));
    assert_false(pcre_finds(small, "&#99;x"));
    free(small);
    /* runs of high bytes in a sequence; a negative lookahead stays as it is */
    expect_shrink("(?![\\xc3][\\xa4])\\xc3\\xa4(\\xe2\\x80\\xa6)+b",
                  "(?![\\xc3][\\xa4])[\\x80-\\xff]{5,}b");
    expect_shrink("\\012\\x80y", "\\012\\x80y");
    expect_shrink("(?:ab|ab|[\\x80-\\xff])c", "(?:ab|[\\x80-\\xff])c");
    /* syntax a wider body could change the meaning of: left alone */
    expect_shrink("(\\xc3)\\1", NULL);
    expect_shrink("(?>\\xc3\\xa4|\\xc4)", NULL);
    expect_shrink("\\xc3++", NULL);
    expect_shrink("a(?i)b|\\xc3", NULL);
    expect_shrink("(?#c)a", NULL);
    expect_shrink("a)", NULL);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int bench(const char *mode)
{
    const char *cache = getenv("TAMIS_RULES_BENCH_CACHE");
    tamis_ruleset_t *rs;
    double load_ms, load_cpu = cpu_ms();
    if (load_stock(cache && *cache ? cache : NULL, &rs, &load_ms) != 0)
        return 1;
    load_cpu = cpu_ms() - load_cpu;
    size_t n;
    char **paths = split_paths(&n);
    const char *c = getenv("TAMIS_RULES_BENCH_COUNT");
    if (c && (size_t)atol(c) < n)
        n = (size_t)atol(c);
    tamis_msg_t **msgs = calloc(n ? n : 1, sizeof(*msgs));
    for (size_t i = 0; i < n; i++)
        msgs[i] = parse_file(paths[i]);
    tamis_rules_run_opts_t o = {.score_set = 0, .no_prefilter = strcmp(mode, "pcre") == 0};
    size_t ran = 0, hits = 0;
    double t0 = cpu_ms(), worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i])
            continue;
        char err[256];
        tamis_arena_t *a = tamis_arena_new(0);
        tamis_rules_result_t r;
        double t = cpu_ms();
        if (tamis_rules_run(rs, msgs[i], &o, a, &r, err, sizeof(err)) == 0)
            hits += r.hit_count;
        t = cpu_ms() - t;
        worst = t > worst ? t : worst;
        tamis_arena_free(a);
        ran++;
    }
    double total = cpu_ms() - t0;
    printf("mode=%s messages=%zu hits=%zu rules-cpu=%.2f ms/msg worst=%.1f ms load=%.0f ms "
           "(cpu %.0f ms)\n",
           mode, ran, hits, ran ? total / (double)ran : 0, worst, load_ms, load_cpu);
    for (size_t i = 0; i < n; i++) {
        tamis_msg_free(msgs[i]);
        free(paths[i]);
    }
    free(msgs);
    free(paths);
    tamis_rules_unref(rs);
    return 0;
}

int main(void)
{
    const char *mode = getenv("TAMIS_RULES_BENCH");
    if (mode && *mode)
        return bench(mode);
    const char *bd = getenv("TAMIS_BUILD_DIR");
    snprintf(cache_dir, sizeof(cache_dir), "%s/prefilter-test-cache", bd ? bd : "/tmp");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shrink),
        cmocka_unit_test(test_prefilter_identical),
        cmocka_unit_test(test_prefilter_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
