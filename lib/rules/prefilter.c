/*
 * Multi-pattern prefilter (architecture.md, Rules): the regexes of a rule set are compiled into
 * Vectorscan databases, one per group of rules that read the same texts: body (each line), rawbody
 * (each chunk), uri (each URI string), full (the pristine message) and one per header expression
 * with rules. One scan of a group's texts marks its candidate rules;
 * PCRE2 then runs only the candidates, with the exact semantics it always had. Hits cannot change:
 * Vectorscan runs each pattern in exact mode when it supports it and in prefilter mode otherwise,
 * and both report a match wherever PCRE2 finds one (prefilter mode reports a superset).
 *
 * Patterns whose semantics could differ between the engines are left out of the databases and
 * always run by PCRE2: /x, escapes whose classes may differ (\v \h \R \N \X \C \K \G \Q \p \g \k),
 * caseless patterns naming bytes >= 0x80 (PCRE2 folds Latin-1 letters like Perl's /aa, Vectorscan
 * only ASCII), patterns that can match the empty string, capture templates (%{NAME}, compiled per
 * message) and what Vectorscan rejects. Long patterns get a shorter superset in the database
 * (pf_shrink.c, widen_bounds), so that even the 400 KB look-alike rules of ReplaceTags fit.
 *
 * Compile cache: compiling the stock set takes seconds, so the databases are serialized to
 * cache_dir/prefilter-<key>.hsdb, key = hash of the Vectorscan version, the CPU features it
 * targets, and every group's rule indexes, pattern texts and flags. A file that does not verify
 * (magic, size, checksum, the groups of this set, deserialization) is rebuilt; writes go to a
 * temporary file renamed into place.
 *
 * Threads: the prefilter is immutable after tamis__pf_build. Scratch space is per thread (thread-
 * specific data), cloned from the set's prototype scratch; a thread that meets another set
 * replaces its scratch with a clone of that set's prototype.
 */
#include "rules/rules_int.h"

#include <stdlib.h>
#include <string.h>

#ifndef TAMIS_HAVE_HS

int tamis__pf_build(tamis_ruleset_t *rs, const char *cache_dir, tamis_diag_t *diag)
{
    (void)cache_dir;
    (void)diag;
    rs->pf = NULL;
    return 0;
}

void tamis__pf_free(tamis__prefilter_t *pf)
{
    (void)pf;
}

int tamis__pf_group(const tamis__prefilter_t *pf, int i)
{
    (void)pf;
    (void)i;
    return -1;
}

size_t tamis__pf_group_count(const tamis__prefilter_t *pf)
{
    (void)pf;
    return 0;
}

int tamis__pf_scan(const tamis__prefilter_t *pf, int g, tamis_slice_t (*get)(const void *, size_t),
                   const void *ctx, size_t count, uint32_t *cand)
{
    (void)pf;
    (void)g;
    (void)get;
    (void)ctx;
    (void)count;
    (void)cand;
    return -1;
}

#else

#include <errno.h>
#include <fcntl.h>
#include <hs/hs.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BOUND 64             /* larger {m,n} bounds become {m,} in the database */
#define BIG_PATTERN 2800         /* pattern bytes above which one goes to a "big" group */
#define HS_MAX_PATTERN 16000     /* Vectorscan's pattern length limit */
#define BIG_COMPILE_RETRIES 3    /* a big group's compile is slow: give up on it sooner */
#define MAX_COMPILE_RETRIES 200  /* patterns dropped one by one after a failed multi-compile */
#define MAX_CACHE (512u << 20)   /* bytes of one cache file */
#define CACHE_MAGIC "TAMISPF1"   /* format version of the cache file */
#define FORMAT_SALT "tamis-pf-8" /* changes whenever the rules for inclusion change */

typedef struct {
    tamis_rule_type_t type;
    const char *hdr; /* header expression (header groups), owned by the rule set */
    hs_database_t *db;
    int *ids; /* Vectorscan id → rule index */
    size_t nids;
} group_t;

struct tamis__prefilter {
    group_t *groups;
    size_t ngroups;
    int *rule_group; /* rule index → group, -1 */
    size_t nrules;
    hs_scratch_t *proto;
    uint64_t key;
};

/* ---- which patterns go in ----------------------------------------------------------------------
 */

static bool caseless_somewhere(const char *p, uint32_t flags)
{
    if (flags & PCRE2_CASELESS)
        return true;
    for (const char *q = strstr(p, "(?"); q; q = strstr(q + 1, "(?"))
        for (const char *f = q + 2; *f && *f != ':' && *f != ')'; f++)
            if (*f == 'i')
                return true;
    return false;
}

/* Could PCRE2 and Vectorscan read this pattern differently? Then PCRE2 alone runs it. */
static bool unsafe_pattern(const char *p, uint32_t flags)
{
    if (flags & PCRE2_EXTENDED)
        return true;
    bool ci = caseless_somewhere(p, flags);
    for (const unsigned char *s = (const unsigned char *)p; *s; s++) {
        if (*s != '\\')
            continue;
        s++;
        if (!*s)
            return true;
        if (strchr("vhVHRNXCKGQEpPgkLlUuco", *s))
            return true;
        if (*s >= '0' && *s <= '3' && ci && s[1] >= '0' && s[1] <= '7') /* octal: a high byte? */
            return true;
    }
    return false;
}

static bool add(tamis_buf_t *b, const char *s)
{
    tamis_buf_puts(b, s);
    return !b->err;
}

/*
 * Caseless patterns: PCRE2 folds Latin-1 letters (0xC0-0xDE <-> 0xE0-0xFE) like Perl's /aa,
 * Vectorscan folds ASCII only. The database's copy therefore matches any byte >= 0x80 wherever
 * the pattern names one: outside a class the byte becomes [\x80-\xff], a class naming one gets the
 * whole range added (a negated class already lets the other case through). A superset, which
 * PCRE2 narrows down. Returns a malloc'ed string, or NULL on allocation failure.
 */
static char *widen_high_bytes(const char *p)
{
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS__MAX_PATTERN * 4);
    bool in_class = false, negated = false, high = false;
    for (const char *r = p; *r && !b.err;) {
        bool is_high = (unsigned char)*r >= 0x80;
        size_t len = 1;
        if (*r == '\\' && r[1] == 'x') {
            int v = tamis__regex_hex_escape(r, &len);
            is_high = v >= 0x80;
        } else if (*r == '\\' && r[1]) {
            len = 2;
        }
        if (!in_class && *r == '[') {
            in_class = true;
            high = false;
            tamis_buf_putc(&b, *r++);
            negated = *r == '^';
            if (negated)
                tamis_buf_putc(&b, *r++);
            if (*r == ']')
                tamis_buf_putc(&b, *r++);
            continue;
        }
        if (in_class && *r == '[' && r[1] == ':') {
            const char *e = strstr(r + 2, ":]");
            if (e) {
                tamis_buf_append(&b, r, (size_t)(e + 2 - r));
                r = e + 2;
                continue;
            }
        }
        if (in_class && *r == ']') {
            if (high && !negated)
                add(&b, "\\x80-\\xff");
            in_class = false;
            tamis_buf_putc(&b, *r++);
            continue;
        }
        if (is_high && !in_class) {
            add(&b, "[\\x80-\\xff]");
        } else {
            high |= is_high;
            tamis_buf_append(&b, r, len);
        }
        r += len;
    }
    if (b.err) {
        tamis_buf_free(&b);
        return NULL;
    }
    size_t n;
    char *out = tamis_buf_steal(&b, &n);
    return out ? out : strdup("");
}

/* One step of an in-place pattern rewrite: copies an escape or character-class syntax at *r to *w
 * verbatim (a class's [:name:] and a leading ^ or ] included), tracking *in_class. Returns false,
 * moving nothing, when *r is an ordinary character outside a class. */
static bool copy_syntax(char **r, char **w, bool *in_class)
{
    char *a = *r, *b = *w, *e;
    if (a[0] == '\\' && a[1]) {
        *b++ = *a++;
        *b++ = *a++;
    } else if (!*in_class && *a == '[') {
        *in_class = true;
        *b++ = *a++;
        if (*a == '^')
            *b++ = *a++;
        if (*a == ']')
            *b++ = *a++;
    } else if (*in_class && a[0] == '[' && a[1] == ':' && (e = strstr(a + 2, ":]"))) {
        while (a < e + 2)
            *b++ = *a++;
    } else if (*in_class) {
        if (*a == ']')
            *in_class = false;
        *b++ = *a++;
    } else {
        return false;
    }
    *r = a;
    *w = b;
    return true;
}

/*
 * Vectorscan 5.4.9 misses some end-anchored matches (found by the comparison test:
 * /^\[ [^\]]+ \]$/ fails on subjects longer than 69 bytes, /^\[ [^\]]+ \]/ does not). Dropping
 * an assertion only widens what a pattern matches, and PCRE2 confirms every candidate, so the
 * database gets the pattern without its end anchors ($, \z, \Z outside classes). Done in place.
 */
static void drop_end_anchors(char *p)
{
    char *w = p;
    bool in_class = false;
    for (char *r = p; *r;) {
        if (!in_class && r[0] == '\\' && (r[1] == 'z' || r[1] == 'Z')) {
            r += 2;
            continue;
        }
        if (copy_syntax(&r, &w, &in_class))
            continue;
        if (*r == '$') {
            r++;
            continue;
        }
        *w++ = *r++;
    }
    *w = 0;
}

/*
 * Widening the counted repeats of a pattern for its database, in place; the language only grows
 * (PCRE2 confirms every candidate, so no hit is lost):
 * - always: large bounded repeats (<a\s[^>]{0,2048}…) make Vectorscan's compile take many
 *   seconds, so X{m,n} with n > MAX_BOUND becomes X{m,};
 * - loosen (big patterns): every {m}, {m,} or {m,n} becomes + (m >= 1) or * (m == 0), an X{m,n}
 *   match being an X+ match at the same place, so that repeats of large alternations (the
 *   ReplaceTags form rules' "){5}") compile in a fraction of a second instead of many.
 */
static void widen_bounds(char *p, bool loosen)
{
    char *w = p;
    bool in_class = false;
    for (char *r = p; *r;) {
        if (copy_syntax(&r, &w, &in_class))
            continue;
        if (*r == '{' && w > p) {
            char *q = r + 1, *comma = NULL;
            long lo = strtol(q, &q, 10), hi = -1;
            bool ok = q > r + 1;
            if (ok && *q == ',') {
                comma = q++;
                char *h = q;
                hi = strtol(h, &q, 10);
                if (q == h)
                    hi = -1;
            }
            if (ok && *q == '}' && (loosen || (comma && hi > MAX_BOUND))) {
                if (loosen) {
                    *w++ = lo >= 1 ? '+' : '*';
                } else {
                    while (r <= comma)
                        *w++ = *r++;
                    *w++ = '}';
                }
                r = q + 1;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = 0;
}

/* Body, rawbody and uri texts are scanned joined by '\n' with ^ in multiline mode, a superset of
 * one scan per line, unless the pattern pins a match to the start of all data or turns
 * multiline off inline. */
static bool line_anchors_portable(const char *p)
{
    for (const char *s = p; *s; s++) {
        if (*s == '\\' && s[1]) {
            if (s[1] == 'A' || s[1] == 'G')
                return false;
            s++;
        } else if (s[0] == '(' && s[1] == '?') {
            const char *minus = NULL, *f = s + 2;
            for (; *f && *f != ':' && *f != ')'; f++)
                if (*f == '-')
                    minus = f;
                else if (*f == 'm' && minus)
                    return false;
        }
    }
    return true;
}

static unsigned hs_flags_of(uint32_t f)
{
    unsigned h = HS_FLAG_SINGLEMATCH;
    if (f & PCRE2_CASELESS)
        h |= HS_FLAG_CASELESS;
    if (f & PCRE2_MULTILINE)
        h |= HS_FLAG_MULTILINE;
    if (f & PCRE2_DOTALL)
        h |= HS_FLAG_DOTALL;
    return h;
}

static bool groupable_type(tamis_rule_type_t t)
{
    return t == TAMIS_RULE_HEADER || t == TAMIS_RULE_BODY || t == TAMIS_RULE_RAWBODY ||
           t == TAMIS_RULE_URI || t == TAMIS_RULE_FULL;
}

static bool never_runs(const tamis__rule_t *r)
{
    return r->score[0] == 0 && r->score[1] == 0 && r->score[2] == 0 && r->score[3] == 0;
}

/* One pattern on its way into a database. */
typedef struct {
    int rule;
    char *src; /* PCRE2 source text (malloc) */
    unsigned flags;
    int group;
    bool big; /* loosened (widen_bounds), in its type's big group */
} item_t;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

/* ---- cache file --------------------------------------------------------------------------------
 */

typedef struct {
    const char *p;
    size_t n, at;
    bool bad;
} reader_t;

static const void *take(reader_t *r, size_t n)
{
    if (r->bad || n > r->n - r->at) {
        r->bad = true;
        return NULL;
    }
    const void *p = r->p + r->at;
    r->at += n;
    return p;
}

static uint64_t take_u64(reader_t *r)
{
    uint64_t v = 0;
    const void *p = take(r, sizeof(v));
    if (p)
        memcpy(&v, p, sizeof(v));
    return v;
}

/* Loads the databases from a cache file; true when it verified. item_group[rule] is the group
 * each eligible rule belongs to in this set (-1: none); a file's ids must agree with it. */
static bool cache_read(const char *path, tamis__prefilter_t *pf, const int *item_group)
{
    char *data;
    size_t len;
    char err[128];
    if (tamis_read_file(path, MAX_CACHE, &data, &len, err, sizeof(err)) != 0)
        return false;
    bool ok = len > 16;
    if (ok) {
        uint64_t sum;
        memcpy(&sum, data + len - 8, 8);
        ok = fnv(1469598103934665603ull, data, len - 8) == sum;
    }
    reader_t r = {.p = data, .n = ok ? len - 8 : 0};
    const char *magic = take(&r, 8);
    ok = ok && magic && memcmp(magic, CACHE_MAGIC, 8) == 0 && take_u64(&r) == pf->key &&
         take_u64(&r) == pf->ngroups;
    for (size_t g = 0; ok && g < pf->ngroups; g++) {
        group_t *gr = &pf->groups[g];
        uint64_t nids = take_u64(&r);
        ok = nids <= pf->nrules;
        const char *ids = ok ? take(&r, nids * sizeof(int)) : NULL;
        ok = ok && ids && (gr->ids = malloc((nids ? nids : 1) * sizeof(int))) != NULL;
        if (!ok)
            break;
        memcpy(gr->ids, ids, nids * sizeof(int));
        gr->nids = nids;
        for (size_t i = 0; ok && i < nids; i++)
            ok = gr->ids[i] >= 0 && (size_t)gr->ids[i] < pf->nrules &&
                 item_group[gr->ids[i]] == (int)g;
        uint64_t dblen = ok ? take_u64(&r) : 0;
        const char *db = ok ? take(&r, dblen) : NULL;
        if (ok && nids)
            ok = db && hs_deserialize_database(db, dblen, &gr->db) == HS_SUCCESS;
        else
            ok = ok && dblen == 0;
    }
    ok = ok && !r.bad && r.at == r.n;
    free(data);
    if (!ok)
        for (size_t g = 0; g < pf->ngroups; g++) {
            hs_free_database(pf->groups[g].db);
            pf->groups[g].db = NULL;
            free(pf->groups[g].ids);
            pf->groups[g].ids = NULL;
            pf->groups[g].nids = 0;
        }
    return ok;
}

static void put(tamis_buf_t *b, const void *p, size_t n)
{
    tamis_buf_append(b, p, n);
}

static void put_u64(tamis_buf_t *b, uint64_t v)
{
    put(b, &v, sizeof(v));
}

/* Creates dir and its missing parents (errors show up when the file is written). */
static void mkdir_p(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0700);
            *s = '/';
        }
    mkdir(p, 0700);
}

/* Writes the cache atomically (temporary file, fsync, rename). Failures only cost a rebuild. */
static void cache_write(const char *dir, const char *path, const tamis__prefilter_t *pf,
                        tamis_diag_t *diag)
{
    tamis_buf_t b;
    tamis_buf_init(&b, MAX_CACHE);
    put(&b, CACHE_MAGIC, 8);
    put_u64(&b, pf->key);
    put_u64(&b, pf->ngroups);
    for (size_t g = 0; g < pf->ngroups; g++) {
        const group_t *gr = &pf->groups[g];
        char *bytes = NULL;
        size_t len = 0;
        if (gr->db && hs_serialize_database(gr->db, &bytes, &len) != HS_SUCCESS) {
            tamis_buf_free(&b);
            return;
        }
        put_u64(&b, gr->nids);
        put(&b, gr->ids, gr->nids * sizeof(int));
        put_u64(&b, len);
        put(&b, bytes, len);
        free(bytes);
    }
    put_u64(&b, fnv(1469598103934665603ull, b.data, b.len));
    if (b.err) {
        tamis_buf_free(&b);
        return;
    }
    mkdir_p(dir);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    for (size_t off = 0; ok && off < b.len;) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    if (fd >= 0)
        ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        unlink(tmp);
        tamis_diag_add(diag, TAMIS_DIAG_WARN, NULL, 0, "cannot write prefilter cache %s: %s", path,
                       strerror(errno));
    }
    tamis_buf_free(&b);
}

/* ---- building ----------------------------------------------------------------------------------
 */

/* Compiles one group; a pattern Vectorscan rejects leaves the group (PCRE2 keeps running it). */
static int compile_group(group_t *gr, item_t *items, size_t n, bool big, tamis_diag_t *diag)
{
    /* exact mode where Vectorscan supports the pattern, else prefilter mode, else PCRE2 alone;
     * a pattern that may match "" stays with PCRE2 too (edge cases differ at the ends) */
    for (size_t i = 0; i < n; i++) {
        hs_expr_info_t *info = NULL;
        hs_compile_error_t *ce = NULL;
        bool ok = hs_expression_info(items[i].src, items[i].flags, &info, &ce) == HS_SUCCESS;
        if (!ok) {
            hs_free_compile_error(ce);
            ce = NULL;
            items[i].flags |= HS_FLAG_PREFILTER;
            ok = hs_expression_info(items[i].src, items[i].flags, &info, &ce) == HS_SUCCESS;
        }
        hs_free_compile_error(ce);
        ok = ok && info->min_width > 0;
        free(info);
        if (!ok) {
            item_t t = items[i];
            items[i--] = items[--n];
            items[n] = t;
        }
    }
    const char **exprs = malloc((n ? n : 1) * sizeof(*exprs));
    unsigned *flags = malloc((n ? n : 1) * sizeof(*flags));
    unsigned *ids = malloc((n ? n : 1) * sizeof(*ids));
    if (!exprs || !flags || !ids) {
        free(exprs);
        free(flags);
        free(ids);
        return TAMIS_ENOMEM;
    }
    int max_tries = big ? BIG_COMPILE_RETRIES : MAX_COMPILE_RETRIES;
    for (int tries = 0; n > 0 && tries < max_tries; tries++) {
        for (size_t i = 0; i < n; i++) {
            exprs[i] = items[i].src;
            flags[i] = items[i].flags;
            ids[i] = (unsigned)i;
        }
        hs_compile_error_t *ce = NULL;
        if (hs_compile_multi(exprs, flags, ids, (unsigned)n, HS_MODE_BLOCK, NULL, &gr->db, &ce) ==
            HS_SUCCESS)
            break;
        gr->db = NULL;
        int bad = ce ? ce->expression : -1;
        if (bad < 0 || (size_t)bad >= n) {
            tamis_diag_add(diag, TAMIS_DIAG_INFO, NULL, 0, "prefilter group not compiled: %s",
                           ce ? ce->message : "?");
            hs_free_compile_error(ce);
            break;
        }
        hs_free_compile_error(ce);
        item_t t = items[bad]; /* drop it (to the end, freed by the caller): PCRE2 keeps it */
        items[bad] = items[--n];
        items[n] = t;
    }
    free(exprs);
    free(flags);
    free(ids);
    gr->nids = gr->db ? n : 0;
    gr->ids = malloc((n ? n : 1) * sizeof(int));
    if (!gr->ids)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < gr->nids; i++)
        gr->ids[i] = items[i].rule;
    return 0;
}

void tamis__pf_free(tamis__prefilter_t *pf)
{
    if (!pf)
        return;
    for (size_t g = 0; g < pf->ngroups; g++) {
        hs_free_database(pf->groups[g].db);
        free(pf->groups[g].ids);
    }
    free(pf->groups);
    free(pf->rule_group);
    hs_free_scratch(pf->proto);
    free(pf);
}

static int cmp_item(const void *a, const void *b)
{
    const item_t *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* Collects the eligible patterns and their groups. Groups: 0 body, 1 rawbody, 2 uri, 3 full,
 * 4.. one per header expression. */
static int collect(tamis_ruleset_t *rs, tamis__prefilter_t *pf, item_t **out, size_t *nout)
{
    item_t *items = calloc(rs->nrules + 1, sizeof(*items));
    const char **hdrs = calloc(rs->nrules + 1, sizeof(*hdrs));
    if (!items || !hdrs) {
        free(items);
        free(hdrs);
        return TAMIS_ENOMEM;
    }
    size_t n = 0, nh = 0;
    for (size_t i = 0; i < rs->nrules; i++) {
        tamis__rule_t *r = rs->rules[i];
        if (r->kind != TAMIS__K_REGEX || r->dropped || !groupable_type(r->type) ||
            r->has_template || (!r->re && !r->re32) || never_runs(r) || !r->pattern ||
            unsafe_pattern(r->pattern, r->re_flags))
            continue;
        char *src = tamis__regex_source(r->pattern);
        if (!src) {
            free(items);
            free(hdrs);
            return TAMIS_ENOMEM;
        }
        drop_end_anchors(src);
        widen_bounds(src, false);
        if (caseless_somewhere(src, r->re_flags)) {
            char *w = widen_high_bytes(src);
            free(src);
            if (!(src = w)) {
                free(items);
                free(hdrs);
                return TAMIS_ENOMEM;
            }
        }
        /* big ones (ReplaceTags look-alikes): high-byte alternations merged (pf_shrink.c), then
         * repeats loosened, which also brings the longest under Vectorscan's length limit */
        bool big = strlen(src) > BIG_PATTERN;
        char *small = big ? tamis__pf_shrink(src) : NULL;
        if (small) {
            free(src);
            src = small;
        }
        if (big)
            widen_bounds(src, true);
        /* big header patterns stay with PCRE2: one more database per header is not worth it */
        if (big && (strlen(src) > HS_MAX_PATTERN || r->type == TAMIS_RULE_HEADER)) {
            free(src);
            continue;
        }
        unsigned f = hs_flags_of(r->re_flags);
        if (r->type == TAMIS_RULE_BODY || r->type == TAMIS_RULE_RAWBODY ||
            r->type == TAMIS_RULE_URI) {
            /* scanned as one text of '\n'-joined lines: ^ must find every line's start */
            if (!line_anchors_portable(src)) {
                free(src);
                continue;
            }
            f |= HS_FLAG_MULTILINE;
        }
        items[n].rule = (int)i;
        items[n].src = src;
        items[n].flags = f;
        items[n].big = big;
        items[n].group = r->type == TAMIS_RULE_BODY      ? 0
                         : r->type == TAMIS_RULE_RAWBODY ? 1
                         : r->type == TAMIS_RULE_URI     ? 2
                         : r->type == TAMIS_RULE_FULL    ? 3
                                                         : -1;
        if (items[n].group < 0)
            hdrs[nh++] = r->hdr;
        n++;
    }
    /* header expressions, sorted, each with enough rules */
    qsort(hdrs, nh, sizeof(*hdrs), cmp_str);
    size_t nu = 0;
    for (size_t i = 0; i < nh; i++)
        if (nu == 0 || strcmp(hdrs[nu - 1], hdrs[i]) != 0)
            hdrs[nu++] = hdrs[i];
    /* groups: 4 fixed, nu header expressions, then the 4 big groups (fixed types, loosened) */
    pf->groups = calloc(4 + nu + 4, sizeof(*pf->groups));
    if (!pf->groups) {
        free(hdrs);
        for (size_t i = 0; i < n; i++)
            free(items[i].src);
        free(items);
        return TAMIS_ENOMEM;
    }
    static const tamis_rule_type_t fixed[] = {TAMIS_RULE_BODY, TAMIS_RULE_RAWBODY, TAMIS_RULE_URI,
                                              TAMIS_RULE_FULL};
    for (size_t g = 0; g < 4; g++)
        pf->groups[g].type = fixed[g];
    for (size_t g = 0; g < nu; g++) {
        pf->groups[4 + g].type = TAMIS_RULE_HEADER;
        pf->groups[4 + g].hdr = hdrs[g];
    }
    for (size_t g = 0; g < 4; g++)
        pf->groups[4 + nu + g].type = fixed[g];
    pf->ngroups = 4 + nu + 4;
    for (size_t i = 0; i < n; i++)
        if (items[i].group < 0) {
            const char *h = rs->rules[items[i].rule]->hdr;
            const char **f = bsearch(&h, hdrs, nu, sizeof(*hdrs), cmp_str);
            items[i].group = 4 + (int)(f - hdrs);
        } else if (items[i].big) {
            items[i].group += 4 + (int)nu;
        }
    free(hdrs);
    qsort(items, n, sizeof(*items), cmp_item);
    *out = items;
    *nout = n;
    return 0;
}

int tamis__pf_build(tamis_ruleset_t *rs, const char *cache_dir, tamis_diag_t *diag)
{
    rs->pf = NULL;
    if (hs_valid_platform() != HS_SUCCESS) {
        tamis_diag_add(diag, TAMIS_DIAG_INFO, NULL, 0,
                       "Vectorscan does not support this CPU: PCRE2 matches every rule");
        return 0;
    }
    tamis__prefilter_t *pf = calloc(1, sizeof(*pf));
    if (!pf)
        return TAMIS_ENOMEM;
    pf->nrules = rs->nrules;
    pf->rule_group = malloc((rs->nrules ? rs->nrules : 1) * sizeof(int));
    item_t *items = NULL;
    size_t n = 0;
    int rc = pf->rule_group ? collect(rs, pf, &items, &n) : TAMIS_ENOMEM;
    if (rc) {
        tamis__pf_free(pf);
        return rc;
    }
    for (size_t i = 0; i < rs->nrules; i++)
        pf->rule_group[i] = -1;
    for (size_t i = 0; i < n; i++)
        pf->rule_group[items[i].rule] = items[i].group;
    /* key: format, library version, every group's patterns */
    uint64_t key = 1469598103934665603ull;
    key = fnv(key, FORMAT_SALT, sizeof(FORMAT_SALT));
    key = fnv(key, hs_version(), strlen(hs_version()));
    hs_platform_info_t plat; /* a database built for other CPU features does not load here */
    if (hs_populate_platform(&plat) == HS_SUCCESS) {
        key = fnv(key, &plat.tune, sizeof(plat.tune));
        key = fnv(key, &plat.cpu_features, sizeof(plat.cpu_features));
    }
    for (size_t i = 0; i < n; i++) {
        const tamis__rule_t *r = rs->rules[items[i].rule];
        key = fnv(key, &items[i].group, sizeof(items[i].group));
        key = fnv(key, &items[i].rule, sizeof(items[i].rule));
        key = fnv(key, &items[i].flags, sizeof(items[i].flags));
        key = fnv(key, items[i].src, strlen(items[i].src) + 1);
        if (r->hdr)
            key = fnv(key, r->hdr, strlen(r->hdr) + 1);
    }
    pf->key = key;
    char path[4096] = "";
    if (cache_dir && *cache_dir)
        snprintf(path, sizeof(path), "%s/prefilter-%016llx.hsdb", cache_dir,
                 (unsigned long long)key);
    if (!*path || !cache_read(path, pf, pf->rule_group)) {
        for (size_t a = 0, b; a < n && !rc; a = b) {
            for (b = a; b < n && items[b].group == items[a].group; b++)
                ;
            rc = compile_group(&pf->groups[items[a].group], items + a, b - a, items[a].big, diag);
        }
        if (!rc && *path)
            cache_write(cache_dir, path, pf, diag);
    }
    for (size_t i = 0; i < n; i++)
        free(items[i].src);
    free(items);
    /* the final membership: what the databases hold */
    for (size_t i = 0; i < rs->nrules; i++)
        pf->rule_group[i] = -1;
    for (size_t g = 0; g < pf->ngroups && !rc; g++) {
        group_t *gr = &pf->groups[g];
        if (!gr->db)
            continue;
        for (size_t i = 0; i < gr->nids; i++)
            pf->rule_group[gr->ids[i]] = (int)g;
        if (hs_alloc_scratch(gr->db, &pf->proto) != HS_SUCCESS)
            rc = TAMIS_ENOMEM;
    }
    if (rc) {
        tamis__pf_free(pf);
        return rc;
    }
    rs->pf = pf;
    return 0;
}

int tamis__pf_group(const tamis__prefilter_t *pf, int i)
{
    return pf && i >= 0 && (size_t)i < pf->nrules ? pf->rule_group[i] : -1;
}

size_t tamis__pf_group_count(const tamis__prefilter_t *pf)
{
    return pf ? pf->ngroups : 0;
}

/* ---- scanning ----------------------------------------------------------------------------------
 */

typedef struct {
    hs_scratch_t *s;
    const tamis__prefilter_t *owner;
    uint64_t key;
} tls_scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
    tls_scratch_t *t = p;
    if (t) {
        hs_free_scratch(t->s);
        free(t);
    }
}

static void key_init(void)
{
    pthread_key_create(&scratch_key, tls_free);
}

/* This thread's scratch for pf: cloned from pf's prototype when the thread last used another. */
static hs_scratch_t *scratch_for(const tamis__prefilter_t *pf)
{
    pthread_once(&scratch_once, key_init);
    tls_scratch_t *t = pthread_getspecific(scratch_key);
    if (!t) {
        if (!(t = calloc(1, sizeof(*t))))
            return NULL;
        if (pthread_setspecific(scratch_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    if (t->s && t->owner == pf && t->key == pf->key)
        return t->s;
    hs_free_scratch(t->s);
    t->s = NULL;
    t->owner = NULL;
    if (hs_clone_scratch(pf->proto, &t->s) != HS_SUCCESS)
        return NULL;
    t->owner = pf;
    t->key = pf->key;
    return t->s;
}

typedef struct {
    const int *ids;
    size_t nids;
    uint32_t *cand;
    uint32_t pos;
    const uint32_t *starts; /* joined scan: where each line begins, ascending */
    const uint32_t *lines;  /* and its 1-based index among the texts */
    size_t nlines;
} scan_ctx_t;

/* The 1-based text index of the joined line holding offset `to - 1`. */
static uint32_t line_of(const scan_ctx_t *c, unsigned long long to)
{
    size_t lo = 0, hi = c->nlines;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (c->starts[mid] < to)
            lo = mid;
        else
            hi = mid;
    }
    return c->lines[lo];
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx)
{
    (void)from;
    (void)flags;
    scan_ctx_t *c = ctx;
    if (id >= c->nids)
        return 0;
    uint32_t pos = c->starts ? line_of(c, to) : c->pos;
    uint32_t *slot = &c->cand[c->ids[id]];
    if (*slot == 0 || pos < *slot)
        *slot = pos;
    return 0;
}

/* Texts joined by '\n' into one scan: one call's set-up instead of one per line. */
static int scan_joined(const group_t *gr, hs_scratch_t *s, scan_ctx_t *c,
                       tamis_slice_t (*get)(const void *, size_t), const void *ctx, size_t count)
{
    size_t total = 0, n = 0;
    for (size_t k = 0; k < count; k++) {
        tamis_slice_t t = get(ctx, k);
        if (t.ptr && t.len) {
            total += t.len + 1;
            n++;
        }
    }
    if (n == 0)
        return 0;
    if (total > UINT32_MAX || count > UINT32_MAX - 1)
        return -1;
    char *buf = malloc(total);
    uint32_t *starts = malloc(2 * n * sizeof(*starts));
    if (!buf || !starts) {
        free(buf);
        free(starts);
        return -1;
    }
    uint32_t *lines = starts + n;
    size_t off = 0, i = 0;
    for (size_t k = 0; k < count; k++) {
        tamis_slice_t t = get(ctx, k);
        if (!t.ptr || !t.len)
            continue; /* no pattern here matches "" (min_width > 0) */
        starts[i] = (uint32_t)off;
        lines[i++] = (uint32_t)(k + 1);
        memcpy(buf + off, t.ptr, t.len);
        off += t.len;
        buf[off++] = '\n';
    }
    c->starts = starts;
    c->lines = lines;
    c->nlines = n;
    int rc = hs_scan(gr->db, buf, (unsigned)(total - 1), 0, s, on_match, c) == HS_SUCCESS ? 0 : -1;
    free(buf);
    free(starts);
    return rc;
}

int tamis__pf_scan(const tamis__prefilter_t *pf, int g, tamis_slice_t (*get)(const void *, size_t),
                   const void *ctx, size_t count, uint32_t *cand)
{
    if (!pf || g < 0 || (size_t)g >= pf->ngroups || !pf->groups[g].db)
        return -1;
    const group_t *gr = &pf->groups[g];
    hs_scratch_t *s = scratch_for(pf);
    if (!s)
        return -1;
    scan_ctx_t c = {.ids = gr->ids, .nids = gr->nids, .cand = cand};
    if (gr->type == TAMIS_RULE_BODY || gr->type == TAMIS_RULE_RAWBODY || gr->type == TAMIS_RULE_URI)
        return scan_joined(gr, s, &c, get, ctx, count);
    for (size_t k = 0; k < count; k++) {
        tamis_slice_t t = get(ctx, k);
        if (!t.ptr || t.len == 0)
            continue; /* no pattern here matches "" (min_width > 0) */
        if (t.len > UINT32_MAX)
            return -1;
        c.pos = (uint32_t)(k + 1);
        if (hs_scan(gr->db, t.ptr, (unsigned)t.len, 0, s, on_match, &c) != HS_SUCCESS)
            return -1;
    }
    return 0;
}

#endif
