/*
 * Shrinking a pattern for the prefilter database (prefilter.c). ReplaceTags rules (25_replace.cf,
 * 72_active.cf) spell every letter as an alternation of its UTF-8 look-alikes and numeric
 * entities; once their high bytes are widened, such patterns are far too long for Vectorscan and
 * would run on PCRE2 over every message. The database only needs a superset of what PCRE2 matches
 * (PCRE2 confirms every candidate), so the shrinker rewrites, in the copy the database compiles:
 * - an alternation's alternatives made only of high-byte atoms (bytes >= 0x80, classes of them,
 *   groups of them) into one [\x80-\xff]{lo,hi}, lo/hi the shortest/longest such alternative;
 * - likewise alternatives made only of digits ("&#(?:1(?:03[01]|...));" becomes "&#[0-9]{3,4};");
 * - a run of high-byte atoms in a sequence into one [\x80-\xff]{n}, and a class naming high
 *   bytes into its compact range form.
 * Every step only grows the language. Syntax whose meaning a superset could break (back
 * references, atomic groups, possessive repeats, conditionals, recursion, verbs, comments,
 * option settings) stops the rewrite; lookarounds are copied verbatim (a wider negative one would
 * match less).
 */
#include "rules/rules_int.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define UNBOUNDED UINT_MAX
#define MAX_REPEAT 255 /* longer bounds become unbounded (only widens) */

enum { PURE_NONE, PURE_HIGH, PURE_DIGIT };

/* What a piece matches when it is "pure": lo..hi bytes, each of the set. */
typedef struct {
    int set;
    unsigned lo, hi;
} span_t;

typedef struct {
    const char *p;
    bool bad; /* syntax the shrinker does not handle, or allocation failure */
} shrink_t;

static unsigned bound(unsigned long v, bool upper)
{
    if (v <= MAX_REPEAT)
        return (unsigned)v;
    return upper ? UNBOUNDED : MAX_REPEAT; /* a smaller minimum only widens */
}

static unsigned add_len(unsigned a, unsigned b, bool upper)
{
    if (a == UNBOUNDED || b == UNBOUNDED)
        return UNBOUNDED;
    return bound((unsigned long)a + b, upper);
}

static unsigned mul_len(unsigned a, unsigned b, bool upper)
{
    if (a == 0 || b == 0)
        return 0;
    if (a == UNBOUNDED || b == UNBOUNDED)
        return UNBOUNDED;
    return bound((unsigned long)a * b, upper);
}

static void put_repeat(tamis_buf_t *b, unsigned lo, unsigned hi)
{
    if (hi == UNBOUNDED)
        tamis_buf_puts(b, lo == 0 ? "*" : lo == 1 ? "+" : "");
    if (hi == UNBOUNDED && lo > 1)
        tamis_buf_printf(b, "{%u,}", lo);
    else if (hi != UNBOUNDED && lo == hi && lo != 1)
        tamis_buf_printf(b, "{%u}", lo);
    else if (hi != UNBOUNDED && lo != hi)
        tamis_buf_printf(b, "{%u,%u}", lo, hi);
}

static void put_pure(tamis_buf_t *b, const span_t *s)
{
    tamis_buf_puts(b, s->set == PURE_HIGH ? "[\\x80-\\xff]" : "[0-9]");
    put_repeat(b, s->lo, s->hi);
}

static bool ascii_alnum(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int tamis__regex_hex_escape(const char *p, size_t *len)
{
    int v = 0;
    size_t i = 2;
    if (p[2] == '{') {
        for (i = 3; hexdig(p[i]) >= 0 && v < 0x1000; i++)
            v = v * 16 + hexdig(p[i]);
        *len = i + 1;
        return p[i] == '}' ? v : -1;
    }
    for (; i < 4 && hexdig(p[i]) >= 0; i++)
        v = v * 16 + hexdig(p[i]);
    *len = i;
    return v;
}

/* The byte a \xHH or \x{HH} escape at p names, or -1 (no closing brace, or above 0xff). */
static int hex_byte(const char *p, size_t *len)
{
    int v = tamis__regex_hex_escape(p, len);
    return v > 0xff ? -1 : v;
}

static int set_of_byte(int c)
{
    return c >= 0x80 ? PURE_HIGH : c >= '0' && c <= '9' ? PURE_DIGIT : PURE_NONE;
}

/* ---- character classes -------------------------------------------------------------------- */

/* One class member at *p that is a single byte (literal, \xHH, escaped punctuation): its value,
 * or -1 for anything else (\d, \w, [:name:], control escapes...), which *p then skips. */
static int class_byte(const char **p, bool *digits)
{
    const char *s = *p;
    if (s[0] == '[' && s[1] == ':') {
        const char *e = strstr(s + 2, ":]");
        if (!e)
            return *p = s + 1, (unsigned char)s[0];
        *digits = strncmp(s, "[:digit:]", 9) == 0;
        *p = e + 2;
        return -1;
    }
    if (s[0] != '\\') {
        *p = s + 1;
        return (unsigned char)s[0];
    }
    if (s[1] == 'x') {
        size_t len;
        int v = hex_byte(s, &len);
        *p = s + len;
        return v;
    }
    *p = s + (s[1] ? 2 : 1);
    *digits = s[1] == 'd';
    if (s[1] && !ascii_alnum((unsigned char)s[1]))
        return (unsigned char)s[1];
    return -1;
}

static void put_class_byte(tamis_buf_t *b, int c)
{
    if (ascii_alnum(c))
        tamis_buf_putc(b, (char)c);
    else
        tamis_buf_printf(b, "\\x%02x", (unsigned)c);
}

/* The class at s->p ('['): copied, or re-spelled from its members when it names high bytes. */
static char *class_piece(shrink_t *s, span_t *sp)
{
    const char *start = s->p, *r = s->p + 1;
    bool neg = *r == '^', other = false, digits_only = true, member[256] = {false};
    if (neg)
        r++;
    bool first = true;
    while (*r && (*r != ']' || first)) {
        first = false;
        bool digits = false;
        int lo = class_byte(&r, &digits), hi = lo;
        if (lo >= 0 && r[0] == '-' && r[1] && r[1] != ']') {
            r++;
            hi = class_byte(&r, &digits);
            if (hi < lo)
                hi = -1;
        }
        if (lo < 0 || hi < 0) {
            other = true;
            digits_only &= digits;
            continue;
        }
        for (int c = lo; c <= hi; c++) {
            member[c] = true;
            digits_only &= c >= '0' && c <= '9';
        }
    }
    if (*r != ']') {
        s->bad = true;
        return NULL;
    }
    s->p = r + 1;
    int high = 0, low = 0;
    for (int c = 0; c < 256; c++)
        if (member[c])
            *(c >= 0x80 ? &high : &low) += 1;
    sp->set = neg                      ? PURE_NONE
              : !other && high && !low ? PURE_HIGH
              : digits_only            ? PURE_DIGIT
                                       : PURE_NONE;
    sp->lo = sp->hi = 1;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    if (neg || other || !high) {
        tamis_buf_append(&b, start, (size_t)(s->p - start));
    } else {
        tamis_buf_putc(&b, '[');
        for (int c = 0; c < 256;) {
            if (!member[c]) {
                c++;
                continue;
            }
            int e = c;
            while (e + 1 < 256 && member[e + 1])
                e++;
            put_class_byte(&b, c);
            if (e > c + 1)
                tamis_buf_putc(&b, '-');
            if (e > c)
                put_class_byte(&b, e);
            c = e + 1;
        }
        tamis_buf_putc(&b, ']');
    }
    char *out = b.err ? NULL : tamis_buf_steal(&b, NULL);
    tamis_buf_free(&b);
    s->bad |= !out;
    return out;
}

/* ---- groups, pieces, sequences, alternations ---------------------------------------------- */

static char *alternation(shrink_t *s, span_t *sp);

/* End of the group opened at p (past its ')'), or NULL. */
static const char *group_end(const char *p)
{
    int depth = 0;
    bool in_class = false;
    for (const char *r = p; *r; r++) {
        if (*r == '\\') {
            if (!*++r)
                return NULL;
        } else if (in_class) {
            if (*r == '[' && r[1] == ':' && strstr(r + 2, ":]"))
                r = strstr(r + 2, ":]") + 1;
            else if (*r == ']')
                in_class = false;
        } else if (*r == '[') {
            in_class = true;
            if (r[1] == '^')
                r++;
            if (r[1] == ']')
                r++;
        } else if (*r == '(') {
            depth++;
        } else if (*r == ')' && --depth == 0) {
            return r + 1;
        }
    }
    return NULL;
}

static char *copy_span(shrink_t *s, const char *a, const char *e)
{
    char *out = malloc((size_t)(e - a) + 1);
    if (!out) {
        s->bad = true;
        return NULL;
    }
    memcpy(out, a, (size_t)(e - a));
    out[e - a] = 0;
    s->p = e;
    return out;
}

/* Length of the opener of a group whose interior may be shrunk ("(", "(?:", "(?i:", named
 * captures), 0 for a group to copy verbatim (lookarounds), -1 for syntax that stops the
 * rewrite. */
static int opener(const char *p)
{
    if (p[1] != '?')
        return p[1] == '*' ? -1 : 1;
    const char *q = p + 2;
    if (*q == '=' || *q == '!' || (q[0] == '<' && (q[1] == '=' || q[1] == '!')))
        return 0;
    if (*q == '<' || *q == '\'' || (q[0] == 'P' && q[1] == '<')) {
        const char *e = strchr(q, *q == '\'' ? '\'' : '>');
        return e ? (int)(e + 1 - p) : -1;
    }
    while (*q && strchr("imnsxJU-^", *q))
        q++;
    /* an option setting "(?i)" reaches the alternatives after it: reordering them could not */
    return *q == ':' ? (int)(q + 1 - p) : -1;
}

static char *group_piece(shrink_t *s, span_t *sp)
{
    const char *start = s->p;
    int n = opener(start);
    sp->set = PURE_NONE;
    if (n < 0) {
        s->bad = true;
        return NULL;
    }
    if (n == 0) {
        const char *e = group_end(start);
        if (!e) {
            s->bad = true;
            return NULL;
        }
        return copy_span(s, start, e);
    }
    s->p = start + n;
    char *inner = alternation(s, sp);
    if (s->bad || *s->p != ')') {
        free(inner);
        s->bad = true;
        return NULL;
    }
    s->p++;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    tamis_buf_append(&b, start, (size_t)n);
    tamis_buf_puts(&b, inner);
    tamis_buf_putc(&b, ')');
    free(inner);
    char *out = b.err ? NULL : tamis_buf_steal(&b, NULL);
    tamis_buf_free(&b);
    s->bad |= !out;
    return out;
}

/* An atom: its text (malloc) and span. */
static char *atom(shrink_t *s, span_t *sp)
{
    const char *p = s->p;
    sp->set = PURE_NONE;
    sp->lo = sp->hi = 1;
    if (*p == '(')
        return group_piece(s, sp);
    if (*p == '[')
        return class_piece(s, sp);
    if (strchr("*+?", *p)) {
        s->bad = true;
        return NULL;
    }
    size_t len = 1;
    if (*p == '\\') {
        if (p[1] == 'x') {
            int v = hex_byte(p, &len);
            sp->set = v < 0 ? PURE_NONE : set_of_byte(v);
        } else if ((p[1] >= '1' && p[1] <= '9') || strchr("gk", p[1]) || !p[1]) {
            s->bad = true; /* back references */
            return NULL;
        } else {
            len = 2;
            while (p[1] == '0' && len < 4 && p[len] >= '0' && p[len] <= '7')
                len++; /* octal \0nn: one byte */
            sp->set = p[1] == 'd' ? PURE_DIGIT : PURE_NONE;
        }
    } else if (*p != '.' && *p != '^' && *p != '$') {
        sp->set = set_of_byte((unsigned char)*p);
    }
    return copy_span(s, p, p + len);
}

/* A quantifier at s->p, if any: applied to sp, its text appended to b. */
static void quantifier(shrink_t *s, span_t *sp, tamis_buf_t *b)
{
    const char *p = s->p, *e = p + 1;
    unsigned long lo, hi;
    if (*p == '*' || *p == '+' || *p == '?') {
        lo = *p == '+';
        hi = *p == '?' ? 1 : UNBOUNDED;
    } else if (*p == '{' && isdigit((unsigned char)p[1])) {
        char *q;
        lo = strtoul(p + 1, &q, 10);
        hi = lo;
        if (*q == ',') {
            char *h = q + 1;
            hi = strtoul(h, &q, 10);
            if (q == h)
                hi = UNBOUNDED;
        }
        if (*q != '}')
            return; /* a literal '{' */
        e = q + 1;
    } else {
        return;
    }
    if (*e == '+') {
        s->bad = true; /* possessive: a wider body could change what it gives back */
        return;
    }
    if (*e == '?')
        e++;
    tamis_buf_append(b, p, (size_t)(e - p));
    s->p = e;
    sp->lo = mul_len(sp->lo, bound(lo, false), false);
    sp->hi = hi == UNBOUNDED ? (sp->hi ? UNBOUNDED : 0) : mul_len(sp->hi, bound(hi, true), true);
    if (sp->hi == 0)
        sp->set = PURE_NONE; /* X{0}: leave it alone */
}

typedef struct {
    span_t span;
    size_t pieces;
    tamis_buf_t text; /* the run's text while it has one piece */
} run_t;

static void flush_run(run_t *run, tamis_buf_t *out)
{
    if (run->pieces == 1)
        tamis_buf_puts(out, run->text.data ? run->text.data : "");
    else if (run->pieces > 1)
        put_pure(out, &run->span);
    run->pieces = 0;
    tamis_buf_reset(&run->text);
}

/* A sequence of pieces up to '|', ')' or the end; sp: pure when every piece is of one set. */
static char *sequence(shrink_t *s, span_t *sp)
{
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    run_t run = {.pieces = 0};
    tamis_buf_init(&run.text, 0);
    span_t all = {PURE_NONE, 0, 0};
    bool first = true;
    while (!s->bad && *s->p && *s->p != '|' && *s->p != ')') {
        span_t ps;
        char *t = atom(s, &ps);
        if (!t)
            break;
        tamis_buf_t piece;
        tamis_buf_init(&piece, 0);
        tamis_buf_puts(&piece, t);
        free(t);
        quantifier(s, &ps, &piece);
        if (ps.set == PURE_HIGH && run.pieces) {
            run.span.lo = add_len(run.span.lo, ps.lo, false);
            run.span.hi = add_len(run.span.hi, ps.hi, true);
            run.pieces++;
        } else {
            flush_run(&run, &out);
            if (ps.set == PURE_HIGH) {
                run.span = ps;
                run.pieces = 1;
                tamis_buf_puts(&run.text, piece.data ? piece.data : "");
            } else {
                tamis_buf_puts(&out, piece.data ? piece.data : "");
            }
        }
        tamis_buf_free(&piece);
        if (first)
            all = ps;
        else if (all.set != PURE_NONE && all.set == ps.set) {
            all.lo = add_len(all.lo, ps.lo, false);
            all.hi = add_len(all.hi, ps.hi, true);
        } else
            all.set = PURE_NONE;
        first = false;
    }
    flush_run(&run, &out);
    tamis_buf_free(&run.text);
    *sp = all;
    char *text = out.err || s->bad ? NULL : tamis_buf_steal(&out, NULL);
    tamis_buf_free(&out);
    s->bad |= !text;
    return text;
}

/* Alternatives up to ')' or the end: the impure ones (deduplicated), then one per pure set. */
static char *alternation(shrink_t *s, span_t *sp)
{
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    span_t pure[3] = {{0}};
    size_t npure[3] = {0};
    char *single[3] = {NULL};
    char **seen = NULL;
    size_t nseen = 0;
    for (;;) {
        span_t as;
        char *t = sequence(s, &as);
        if (!t)
            break;
        if (as.set != PURE_NONE) {
            span_t *m = &pure[as.set];
            if (npure[as.set]++ == 0) {
                *m = as;
                single[as.set] = t;
            } else {
                m->lo = as.lo < m->lo ? as.lo : m->lo;
                m->hi = as.hi > m->hi ? as.hi : m->hi;
                free(t);
            }
        } else {
            bool dup = false;
            for (size_t i = 0; i < nseen && !dup; i++)
                dup = strcmp(seen[i], t) == 0;
            char **g = dup ? NULL : realloc(seen, (nseen + 1) * sizeof(*seen));
            if (g) {
                seen = g;
                seen[nseen++] = t;
            } else {
                s->bad |= !dup;
                free(t);
            }
        }
        if (*s->p != '|')
            break;
        s->p++;
    }
    for (size_t i = 0; i < nseen; i++) {
        if (i)
            tamis_buf_putc(&out, '|');
        tamis_buf_puts(&out, seen[i]);
        free(seen[i]);
    }
    free(seen);
    size_t nsets = 0;
    for (int k = PURE_HIGH; k <= PURE_DIGIT; k++) {
        if (!npure[k])
            continue;
        nsets++;
        if (out.len || nseen)
            tamis_buf_putc(&out, '|');
        if (npure[k] == 1)
            tamis_buf_puts(&out, single[k]);
        else
            put_pure(&out, &pure[k]);
        free(single[k]);
    }
    sp->set = PURE_NONE;
    if (!nseen && nsets == 1)
        *sp = pure[npure[PURE_HIGH] ? PURE_HIGH : PURE_DIGIT];
    char *text = out.err || s->bad ? NULL : tamis_buf_steal(&out, NULL);
    tamis_buf_free(&out);
    s->bad |= !text;
    return text;
}

char *tamis__pf_shrink(const char *pattern)
{
    shrink_t s = {.p = pattern};
    span_t sp;
    char *out = alternation(&s, &sp);
    if (s.bad || *s.p) {
        free(out);
        return NULL;
    }
    return out;
}
