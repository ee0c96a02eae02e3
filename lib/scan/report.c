/*
 * report: the per-rule report lines that PerMsgStatus::check_cleanup builds (REPORT, the terse
 * form for X-Spam-Report, and SUMMARY, the column form for the report body), the content preview
 * (get_content_preview) and get_report().
 *
 * Report lines are ordered by score (descending), then name, because SpamAssassin's own order is
 * Perl hash order and so differs between runs; everything else is byte for byte SpamAssassin's.
 */
#include "scan_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tamis__scan_area(tamis_rule_type_t t)
{
    switch (t) {
    case TAMIS_RULE_BODY:
    case TAMIS_RULE_EVAL_BODY:
        return "BODY: ";
    case TAMIS_RULE_RAWBODY:
    case TAMIS_RULE_EVAL_RAWBODY:
        return "RAW: ";
    case TAMIS_RULE_FULL:
        return "FULL: ";
    case TAMIS_RULE_URI:
        return "URI: ";
    default:
        return "";
    }
}

/* ---- report lines (check_cleanup) ------------------------------------------------------------ */

static int by_score_then_name(const void *a, const void *b)
{
    const tamis_hit_t *x = *(const tamis_hit_t *const *)a, *y = *(const tamis_hit_t *const *)b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* _wrap_desc: the description wrapped as if it started at column firstlen. */
static void wrap_desc(tamis_buf_t *out, const tamis_scan_t *s, const char *desc, size_t firstlen,
                      const char *prefix)
{
    char first[256];
    if (firstlen >= sizeof first)
        firstlen = sizeof first - 1;
    memset(first, ' ', firstlen);
    first[firstlen] = '\0';
    tamis_buf_t w;
    tamis_buf_init(&w, TAMIS__SCAN_MAX_EXPANSION);
    tamis__scan_wrap(&w, desc, strlen(desc), prefix, first, s->conf->report_wrap_width, false,
                     false);
    size_t i = 0;
    while (i < w.len && strchr(" \t\n\r\f\v", w.data[i]))
        i++;
    if (w.len > i)
        tamis_buf_append(out, w.data + i, w.len - i);
    if (w.err)
        out->err = w.err;
    tamis_buf_free(&w);
}

/* One log message cut into "[...]" pieces of 30 to 48 bytes at blanks, in both layouts. */
static void log_pieces(const char *msg, size_t n, tamis_buf_t *terse, tamis_buf_t *lng)
{
    for (;;) {
        size_t cut = 0;
        /* /^(.{30,48})\s/ : the longest prefix of 30..48 non-newline bytes before a blank */
        for (size_t k = 48; k >= 30; k--) {
            if (k >= n || memchr(msg, '\n', k))
                continue;
            if (strchr(" \t\n\r\f\v", msg[k]) && msg[k]) {
                cut = k;
                break;
            }
        }
        size_t len = cut ? cut : n;
        tamis_buf_printf(terse, "[%.*s]\n", (int)len, msg);
        if (len > 47) { /* sprintf("%78s\n", "[$msg]") */
            for (size_t i = len + 2; i < 78; i++)
                tamis_buf_putc(lng, ' ');
            tamis_buf_printf(lng, "[%.*s]\n", (int)len, msg);
        } else {
            tamis_buf_printf(lng, "%27s [%.*s]\n", "", (int)len, msg);
        }
        if (!cut)
            break;
        msg += cut + 1;
        n -= cut + 1;
    }
}

static void hit_logs(const tamis_hit_t *h, tamis_buf_t *terse, tamis_buf_t *lng)
{
    if (!h->log)
        return;
    if (h->tflags & TAMIS_TFLAG_NOLOG) {
        log_pieces("*REDACTED*", 10, terse, lng);
        return;
    }
    const char *p = h->log;
    for (;;) { /* one test_log() call per line */
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        log_pieces(p, n, terse, lng);
        if (!nl || !nl[1])
            break;
        p = nl + 1;
    }
}

static void report_line(const tamis_scan_t *s, const tamis_hit_t *h, tamis_buf_t *terse_out,
                        tamis_buf_t *sum_out)
{
    char sc[64];
    if (h->score >= 10 || h->score <= -10)
        snprintf(sc, sizeof sc, "%4.0f", h->score);
    else
        snprintf(sc, sizeof sc, "%4.1f", h->score);
    const char *area = tamis__scan_area(h->type);
    const char *desc = h->description ? h->description : "";
    tamis_buf_t terse, lng;
    tamis_buf_init(&terse, TAMIS__SCAN_MAX_EXPANSION);
    tamis_buf_init(&lng, TAMIS__SCAN_MAX_EXPANSION);
    hit_logs(h, &terse, &lng);
    size_t base = strlen(h->name) + strlen(sc) + strlen(area);

    tamis_buf_printf(terse_out, "* %s %s %s", sc, h->name, area);
    wrap_desc(terse_out, s, desc, 4 + base, "*      ");
    tamis_buf_putc(terse_out, '\n');
    if (terse.len) {
        tamis_buf_puts(terse_out, "*      ");
        tamis_buf_append(terse_out, terse.data, terse.len);
    }

    tamis_buf_printf(sum_out, "%s %-22s %s", sc, h->name, area);
    wrap_desc(sum_out, s, desc, 3 + base, "                            ");
    tamis_buf_putc(sum_out, '\n');
    if (lng.len)
        tamis_buf_append(sum_out, lng.data, lng.len);
    if (terse.err || lng.err)
        sum_out->err = TAMIS_ENOMEM;
    tamis_buf_free(&terse);
    tamis_buf_free(&lng);
}

int tamis__scan_prepare(tamis_scan_t *s)
{
    char num[64];
    tamis__scan_display_score(num, sizeof num, s->score, s->required, s->is_spam);
    s->score_str = tamis_arena_strdup(s->arena, num);
    snprintf(num, sizeof num, "%2.1f", s->required);
    s->required_str = tamis_arena_strdup(s->arena, num);
    if (!s->score_str || !s->required_str)
        return TAMIS_ENOMEM;
    size_t n = s->result.hit_count;
    s->order = tamis_arena_calloc(s->arena, n ? n : 1, sizeof(*s->order));
    if (!s->order)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        s->order[i] = &s->result.hits[i];
    qsort(s->order, n, sizeof(*s->order), by_score_then_name);
    tamis_buf_t t, m;
    tamis_buf_init(&t, TAMIS__SCAN_MAX_EXPANSION);
    tamis_buf_init(&m, TAMIS__SCAN_MAX_EXPANSION);
    for (size_t i = 0; i < n; i++)
        report_line(s, s->order[i], &t, &m);
    int rc = t.err ? t.err : m.err;
    if (!rc) {
        s->terse = tamis_arena_strndup(s->arena, t.data ? t.data : "", t.len);
        s->summary = tamis_arena_strndup(s->arena, m.data ? m.data : "", m.len);
        if (!s->terse || !s->summary)
            rc = TAMIS_ENOMEM;
    }
    tamis_buf_free(&t);
    tamis_buf_free(&m);
    return rc;
}

/* ---- content preview ------------------------------------------------------------------------- */

/* s/^(.{200}).+$/$1 [...]/gm */
static void trim_long_lines(tamis_buf_t *out, const char *s, size_t n)
{
    size_t start = 0;
    while (start < n) {
        const char *nl = memchr(s + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - s) : n;
        if (end - start > 200) {
            tamis_buf_append(out, s + start, 200);
            tamis_buf_puts(out, " [...]");
        } else {
            tamis_buf_append(out, s + start, end - start);
        }
        if (!nl)
            break;
        tamis_buf_putc(out, '\n');
        start = end + 1;
    }
}

/* Deletes every occurrence of needle (s/\Qneedle\E//g). */
static size_t delete_all(char *s, size_t n, const char *needle)
{
    size_t nl = strlen(needle), w = 0;
    for (size_t r = 0; r < n;) {
        if (r + nl <= n && memcmp(s + r, needle, nl) == 0) {
            r += nl;
            continue;
        }
        s[w++] = s[r++];
    }
    return w;
}

/* The tidy-ups of get_content_preview, in place; returns the new length. */
static size_t tidy_preview(char *s, size_t n)
{
    static const char marker[] = "-----Original Message-----";
    size_t w = 0;
    for (size_t r = 0; r < n;) { /* s/-----Original Message-----.*$//gm */
        if (r + sizeof marker - 1 <= n && memcmp(s + r, marker, sizeof marker - 1) == 0) {
            while (r < n && s[r] != '\n')
                r++;
            continue;
        }
        s[w++] = s[r++];
    }
    n = delete_all(s, w, "This is a multi-part message in MIME format.");
    w = 0;
    for (size_t r = 0; r < n;) { /* s/[-_*.]{10,}//gs */
        size_t e = r;
        while (e < n && strchr("-_*.", s[e]) && s[e])
            e++;
        if (e - r >= 10) {
            r = e;
            continue;
        }
        while (r < e)
            s[w++] = s[r++];
        if (r < n)
            s[w++] = s[r++];
    }
    n = w;
    w = 0;
    for (size_t r = 0; r < n;) { /* s/\s+/ /gs */
        if (strchr(" \t\n\r\f\v", s[r]) && s[r]) {
            while (r < n && strchr(" \t\n\r\f\v", s[r]) && s[r])
                r++;
            s[w++] = ' ';
            continue;
        }
        s[w++] = s[r++];
    }
    return w;
}

const char *tamis__scan_preview(tamis_scan_t *s)
{
    if (s->preview)
        return s->preview;
    tamis_buf_t a, b;
    tamis_buf_init(&a, TAMIS__SCAN_MAX_EXPANSION);
    tamis_buf_init(&b, TAMIS__SCAN_MAX_EXPANSION);
    for (size_t i = 0; i < s->preview_line_count && i < 3 && a.len < 200; i++)
        tamis_buf_append(&a, s->preview_lines[i].ptr, s->preview_lines[i].len);
    trim_long_lines(&b, a.data ? a.data : "", a.len);
    if (b.len && b.data[b.len - 1] == '\n') /* chomp; then one "\n" */
        b.len--;
    tamis_buf_putc(&b, '\n');
    size_t n = b.err ? 0 : tidy_preview(b.data, b.len);
    tamis_buf_reset(&a);
    tamis__scan_wrap(&a, b.err ? "" : b.data, n, "  ", "Content preview:  ", 75, true, false);
    const char *p = a.data ? a.data : "";
    size_t pl = a.len;
    if (pl >= 16 && memcmp(p, "Content preview:", 16) == 0) { /* s/^Content preview:\s+//s */
        size_t k = 16;
        while (k < pl && strchr(" \t\n\r\f\v", p[k]) && p[k])
            k++;
        if (k > 16) {
            p += k;
            pl -= k;
        }
    }
    s->preview = tamis_arena_strndup(s->arena, p, pl);
    tamis_buf_free(&a);
    tamis_buf_free(&b);
    return s->preview ? s->preview : "";
}

/* ---- get_report ---------------------------------------------------------------------------- */

const char *tamis__scan_get_report(tamis_scan_t *s)
{
    if (s->report)
        return s->report;
    const char *t = s->conf->report_template;
    if (!t || !*t)
        t = "(no report template found)";
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS__SCAN_MAX_OUTPUT);
    tamis__scan_replace_tags(s, t, strlen(t), &b);
    while (b.len && b.data[b.len - 1] == '\n') /* s/\n*$/\n\n/s */
        b.len--;
    tamis_buf_append(&b, "\n\n", 2);
    if (!b.err)
        s->report = tamis_arena_strndup(s->arena, b.data, b.len);
    tamis_buf_free(&b);
    return s->report;
}
