/*
 * Golden tests of Tamis's bundled rule set (the .cf files of rules/) run through the whole engine.
 *
 * Every corpus/fixtures/<name>.eml that has a tests/golden/<name>.expect is scanned with
 * tamis_scan_run() on the rules loaded from rules/, and its hits are checked against the
 * expectations. An .expect file holds one item per line ('#' starts a comment):
 *   NAME         the rule must hit
 *   !NAME        the rule must not hit
 *   score>=X     the message score must be at least X
 *   score<X      the message score must be below X
 * The expected hits were produced by SpamAssassin 4.0.1 on the same rules, so a difference is a
 * compatibility bug in Tamis (or a rule that behaves differently in PCRE2).
 *
 * Beyond the fixtures, the rule set itself is checked: it loads without any warning, every rule
 * that is not a "__" sub-rule has a describe line and a score, every scored rule is hit by at
 * least one fixture (so none is dead), and ham-*.eml fixtures hit no rule scored above 1.
 */
#include "tamis/scan.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define RULES_DIR TAMIS_SOURCE_DIR "/rules"
#define FIXTURES_DIR TAMIS_SOURCE_DIR "/corpus/fixtures"
#define GOLDEN_DIR TAMIS_SOURCE_DIR "/tests/golden"

#define MAX_NAMES 1024
#define MAX_FIXTURES 128
#define NAME_LEN 128

/* A set of rule names, small enough for linear search. */
typedef struct {
    char names[MAX_NAMES][NAME_LEN];
    size_t count;
} nameset_t;

static bool nameset_has(const nameset_t *s, const char *name)
{
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->names[i], name) == 0)
            return true;
    return false;
}

static void nameset_add(nameset_t *s, const char *name)
{
    if (nameset_has(s, name) || s->count >= MAX_NAMES)
        return;
    snprintf(s->names[s->count++], NAME_LEN, "%s", name);
}

/* What the .cf files declare, read with a plain line scanner independent of the engine. */
typedef struct {
    nameset_t defined;   /* rules (not "__" sub-rules) */
    nameset_t described; /* names with a describe line */
    nameset_t scored;    /* names with a non-zero score */
    nameset_t bayes_set; /* score 0 without Bayes, non-zero in the Bayes score sets (BAYES_*:
                            they can only hit with a trained store, so no fixture hits them) */
    size_t files;
} decl_t;

typedef struct {
    char name[NAME_LEN]; /* fixture basename without .eml */
    nameset_t hits;
    double score;
    double max_hit_score; /* highest score of a single hit, and its rule */
    char max_hit[NAME_LEN];
    bool ok; /* the scan ran */
} fixture_t;

typedef struct {
    tamis_ruleset_t *rs;
    tamis_diag_t *diag;
    char load_err[512];
    decl_t decl;
    fixture_t fx[MAX_FIXTURES];
    size_t fx_count;
} state_t;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of dir's entries ending in suffix; returns the count (caller frees). */
static size_t list_dir(const char *dir, const char *suffix, char ***out)
{
    DIR *d = opendir(dir);
    size_t n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= sl || strcmp(e->d_name + l - sl, suffix) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            v = realloc(v, cap * sizeof *v);
            assert_non_null(v);
        }
        v[n++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool is_rule_type(const char *w)
{
    static const char *const types[] = {"header", "body",       "rawbody", "full",
                                        "uri",    "mimeheader", "meta"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(w, types[i]) == 0)
            return true;
    return false;
}

static void scan_decl_line(decl_t *d, char *line)
{
    char *save = NULL;
    char *kw = strtok_r(line, " \t\r\n", &save);
    char *name = kw ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    if (!kw || !name || kw[0] == '#')
        return;
    if (is_rule_type(kw) && strncmp(name, "__", 2) != 0)
        nameset_add(&d->defined, name);
    else if (strcmp(kw, "describe") == 0)
        nameset_add(&d->described, name);
    else if (strcmp(kw, "score") == 0) {
        char *val = strtok_r(NULL, " \t\r\n", &save);
        if (val && strtod(val, NULL) != 0.0) {
            nameset_add(&d->scored, name);
        } else if (val) {
            char *s1 = strtok_r(NULL, " \t\r\n", &save);
            char *s2 = s1 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
            char *s3 = s2 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
            if (s3 && strtod(s1, NULL) == 0.0 &&
                (strtod(s2, NULL) != 0.0 || strtod(s3, NULL) != 0.0))
                nameset_add(&d->bayes_set, name);
        }
    }
}

static void read_decls(decl_t *d)
{
    char **files;
    size_t n = list_dir(RULES_DIR, ".cf", &files);
    for (size_t i = 0; i < n; i++) {
        char path[1024], line[4096];
        snprintf(path, sizeof path, "%s/%s", RULES_DIR, files[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f))
            scan_decl_line(d, line);
        fclose(f);
        d->files++;
    }
    free_list(files, n);
}

static bool expect_path(const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.expect", GOLDEN_DIR, name);
    FILE *f = fopen(path, "r");
    if (f)
        fclose(f);
    return f != NULL;
}

static void scan_fixture(state_t *st, const char *file)
{
    fixture_t *fx = &st->fx[st->fx_count];
    memset(fx, 0, sizeof *fx);
    snprintf(fx->name, sizeof fx->name, "%.*s", (int)(strlen(file) - 4), file);
    char path[1024], err[512];
    if (!expect_path(fx->name, path, sizeof path))
        return;
    st->fx_count++;
    snprintf(path, sizeof path, "%s/%s", FIXTURES_DIR, file);
    char *data = NULL;
    size_t len = 0;
    if (tamis_read_file(path, 1 << 24, &data, &len, err, sizeof err) != 0) {
        print_error("%s: %s\n", path, err);
        return;
    }
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.hostname = "golden.example";
    o.now = 1034417472; /* fixed date: reproducible results */
    o.local_only = true;
    tamis_scan_t *s = NULL;
    if (tamis_scan_run(st->rs, data, len, &o, &s, err, sizeof err) == 0) {
        for (size_t i = 0; i < tamis_scan_hit_count(s); i++) {
            const tamis_hit_t *h = tamis_scan_hit(s, i);
            nameset_add(&fx->hits, h->name);
            if (h->score > fx->max_hit_score) {
                fx->max_hit_score = h->score;
                snprintf(fx->max_hit, sizeof fx->max_hit, "%s", h->name);
            }
        }
        fx->score = tamis_scan_score(s);
        fx->ok = true;
    } else
        print_error("%s: scan failed: %s\n", file, err);
    tamis_scan_free(s);
    free(data);
}

static int setup(void **state)
{
    state_t *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    read_decls(&st->decl);
    st->diag = tamis_diag_new();
    tamis_rules_source_t src = {0};
    src.default_rules_dir = RULES_DIR;
    if (tamis_rules_load(&src, &st->rs, st->diag, st->load_err, sizeof st->load_err) == 0) {
        char **files;
        size_t n = list_dir(FIXTURES_DIR, ".eml", &files);
        for (size_t i = 0; i < n && st->fx_count < MAX_FIXTURES; i++)
            scan_fixture(st, files[i]);
        free_list(files, n);
    }
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    state_t *st = *state;
    tamis_rules_unref(st->rs);
    tamis_diag_free(st->diag);
    free(st);
    return 0;
}

/* rules/ must load, with no warning: a warning means a rule was dropped or mis-parsed. */
static void test_rules_load_clean(void **state)
{
    state_t *st = *state;
    if (!st->rs)
        print_error("load failed: %s\n", st->load_err);
    assert_non_null(st->rs);
    size_t n = tamis_diag_count(st->diag), bad = 0;
    for (size_t i = 0; i < n; i++) {
        const tamis_diag_entry_t *e = tamis_diag_at(st->diag, i);
        if (e->level >= TAMIS_DIAG_WARN) {
            print_error("%s:%u: %s\n", e->file ? e->file : "?", e->line, e->text);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
    assert_true(st->decl.files >= 5);
}

/* 10_tamis_prefs.cf gives SpamAssassin's defaults: threshold, marking and the four headers. */
static void test_prefs_defaults(void **state)
{
    state_t *st = *state;
    assert_non_null(st->rs);
    const tamis_conf_t *c = tamis_rules_conf(st->rs);
    assert_non_null(c);
    assert_true(c->required_score == 5.0);
    assert_int_equal(c->report_safe, 1);
    assert_int_equal(c->header_count, 4);
    assert_string_equal(c->headers[0].name, "Checker-Version");
    assert_string_equal(c->headers[3].name, "Status");
    assert_non_null(c->report_template);
    assert_non_null(strstr(c->report_template, "_SUMMARY_"));
    assert_non_null(strstr(c->report_template, "_PREVIEW_"));
    assert_non_null(c->unsafe_report_template);
    assert_true(strlen(c->unsafe_report_template) > 100);
    assert_non_null(c->report_contact);
}

/* Every reportable rule has a describe line and a score; the set has at least 100 of them. */
static void test_rules_described_and_scored(void **state)
{
    const decl_t *d = &((state_t *)*state)->decl;
    size_t bad = 0;
    for (size_t i = 0; i < d->defined.count; i++) {
        const char *r = d->defined.names[i];
        if (!nameset_has(&d->described, r) ||
            !(nameset_has(&d->scored, r) || nameset_has(&d->bayes_set, r))) {
            print_error("%s: missing describe or score\n", r);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
    assert_true(d->scored.count >= 100);
}

/* Checks one expectation line against a fixture's result; returns false on a mismatch. */
static bool check_item(const fixture_t *fx, const char *item)
{
    double x;
    if (sscanf(item, "score>=%lf", &x) == 1) {
        if (fx->score >= x)
            return true;
        print_error("%s: score %.3f, expected >= %g\n", fx->name, fx->score, x);
    } else if (sscanf(item, "score<%lf", &x) == 1) {
        if (fx->score < x)
            return true;
        print_error("%s: score %.3f, expected < %g\n", fx->name, fx->score, x);
    } else if (item[0] == '!') {
        if (!nameset_has(&fx->hits, item + 1))
            return true;
        print_error("%s: %s hit but must not\n", fx->name, item + 1);
    } else {
        if (nameset_has(&fx->hits, item))
            return true;
        print_error("%s: %s expected but did not hit\n", fx->name, item);
    }
    return false;
}

static size_t check_expect_file(const fixture_t *fx)
{
    char path[1024], line[512];
    expect_path(fx->name, path, sizeof path);
    FILE *f = fopen(path, "r");
    size_t bad = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *save = NULL, *item = strtok_r(line, " \t\r\n", &save);
        if (item && item[0] != '#' && !check_item(fx, item))
            bad++;
    }
    if (f)
        fclose(f);
    return bad;
}

/* Every fixture with an .expect file hits exactly what SpamAssassin hit on it. */
static void test_fixtures_match_expectations(void **state)
{
    state_t *st = *state;
    assert_non_null(st->rs);
    assert_true(st->fx_count >= 10);
    size_t bad = 0;
    for (size_t i = 0; i < st->fx_count; i++) {
        const fixture_t *fx = &st->fx[i];
        if (!fx->ok) {
            bad++;
            continue;
        }
        bad += check_expect_file(fx);
    }
    assert_int_equal(bad, 0);
}

/* No scored rule is dead: each one is hit by at least one fixture. */
static void test_every_scored_rule_hit(void **state)
{
    state_t *st = *state;
    assert_non_null(st->rs);
    size_t bad = 0;
    for (size_t r = 0; r < st->decl.scored.count; r++) {
        const char *name = st->decl.scored.names[r];
        bool hit = false;
        for (size_t i = 0; i < st->fx_count && !hit; i++)
            hit = nameset_has(&st->fx[i].hits, name);
        if (!hit) {
            print_error("%s: hit by no fixture\n", name);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* Clean mail must not trip any strong rule, even when the total stays low. */
static void test_ham_fixtures_clean(void **state)
{
    state_t *st = *state;
    assert_non_null(st->rs);
    size_t hams = 0, bad = 0;
    for (size_t i = 0; i < st->fx_count; i++) {
        const fixture_t *fx = &st->fx[i];
        if (strncmp(fx->name, "ham-", 4) != 0)
            continue;
        hams++;
        if (fx->max_hit_score > 1.0) {
            print_error("%s: hits %s scored %.1f\n", fx->name, fx->max_hit, fx->max_hit_score);
            bad++;
        }
        if (fx->score >= 1.0) {
            print_error("%s: ham scored %.3f\n", fx->name, fx->score);
            bad++;
        }
    }
    assert_true(hams >= 3);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_load_clean),
        cmocka_unit_test(test_prefs_defaults),
        cmocka_unit_test(test_rules_described_and_scored),
        cmocka_unit_test(test_fixtures_match_expectations),
        cmocka_unit_test(test_every_scored_rule_hit),
        cmocka_unit_test(test_ham_fixtures_clean),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
