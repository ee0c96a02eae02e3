/*
 * text: SpamAssassin's string helpers, reproduced byte for byte because their quirks are visible
 * in every X-Spam-* header and report: Util::wrap (with its tab arithmetic and its habit of never
 * breaking before the first piece of a line), PerMsgStatus::_process_header (folding at 79
 * columns after blanks and commas), mime_encode_header (RFC 2047, Q or B by size), the display
 * score with its "r - 0.1" rule, and the RFC 822 date.
 *
 * Lengths are in bytes, as SpamAssassin sees its octet strings.
 */
#include "scan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Perl's \s on octet strings. */
static bool perl_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* ---- wrap ------------------------------------------------------------------------------------ */

typedef struct {
    tamis_slice_t *v;
    size_t n, cap;
} pieces_t;

static int pieces_push(pieces_t *p, const char *s, size_t n)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        tamis_slice_t *v = realloc(p->v, cap * sizeof(*v));
        if (!v)
            return TAMIS_ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = tamis_slice(s, n);
    return 0;
}

/* split(/(\s)/, s) or split(/((?<=[\s,]))/, s): fields and captured separators, trailing empty
 * fields removed, as Perl's split does. */
static int split_pieces(pieces_t *p, const char *s, size_t n, bool break_after)
{
    size_t start = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (break_after) {
            if (i > 0 && (perl_space((unsigned char)s[i - 1]) || s[i - 1] == ',')) {
                rc = pieces_push(p, s + start, i - start);
                if (!rc)
                    rc = pieces_push(p, s + i, 0);
                start = i;
            }
        } else if (perl_space((unsigned char)s[i])) {
            rc = pieces_push(p, s + start, i - start);
            if (!rc)
                rc = pieces_push(p, s + i, 1);
            start = i + 1;
        }
    }
    if (!rc)
        rc = pieces_push(p, s + start, n - start);
    while (!rc && p->n && p->v[p->n - 1].len == 0)
        p->n--;
    return rc;
}

/* Visible width as wrap() counts it: a tab counts 8. */
static size_t vwidth(const char *s, size_t n)
{
    size_t w = n;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\t')
            w += 7;
    return w;
}

/* Removes trailing Perl whitespace from the line being built (s/\s+$//). */
static void rstrip_from(tamis_buf_t *out, size_t line_start)
{
    while (out->len > line_start && perl_space((unsigned char)out->data[out->len - 1]))
        out->len--;
    if (out->data)
        out->data[out->len] = '\0';
}

int tamis__scan_wrap(tamis_buf_t *out, const char *s, size_t n, const char *prefix,
                     const char *first, unsigned width, bool overflow, bool break_after)
{
    pieces_t p = {0};
    if (!width)
        width = 77; /* "shift || 77" */
    if (!prefix)
        prefix = "";
    if (n == 1 && s[0] == '0') /* Perl's "shift || ''" treats "0" as false */
        n = 0;
    int rc = 0;
    if (first && *first)
        rc = pieces_push(&p, first, strlen(first));
    if (!rc)
        rc = split_pieces(&p, s, n, break_after);
    if (rc || p.n == 0) {
        free(p.v);
        return rc;
    }
    size_t line_start = out->len;
    size_t cur_w = vwidth(p.v[0].ptr, p.v[0].len);
    bool fresh_prefix = false; /* the line holds only the prefix just inserted */
    bool pos_mod = false;
    tamis_buf_append(out, p.v[0].ptr, p.v[0].len);
    size_t pw = vwidth(prefix, strlen(prefix));
    for (size_t i = 1; i < p.n;) {
        size_t len = cur_w;
        size_t nw = vwidth(p.v[i].ptr, p.v[i].len);
        if (pos_mod && !overflow)
            len += nw;
        /* Perl would loop forever on a prefix wider than the width; we merge instead. */
        if (len <= width || fresh_prefix) {
            tamis_buf_append(out, p.v[i].ptr, p.v[i].len);
            cur_w += nw;
            pos_mod = true;
            fresh_prefix = false;
            i++;
        } else {
            rstrip_from(out, line_start);
            tamis_buf_putc(out, '\n');
            line_start = out->len;
            tamis_buf_puts(out, prefix);
            cur_w = pw;
            pos_mod = false;
            fresh_prefix = pw > width;
        }
    }
    free(p.v);
    return out->err;
}

/* ---- _process_header ------------------------------------------------------------------------- */

/* s/^\s*\n//gm: drops the blank lines a wrap may leave. */
static void drop_blank_lines(tamis_buf_t *b)
{
    size_t r = 0, w = 0;
    bool at_line_start = true;
    while (r < b->len) {
        if (at_line_start) {
            size_t e = r, last_nl = (size_t)-1;
            while (e < b->len && perl_space((unsigned char)b->data[e])) {
                if (b->data[e] == '\n')
                    last_nl = e;
                e++;
            }
            if (last_nl != (size_t)-1) {
                r = last_nl + 1;
                continue;
            }
        }
        char c = b->data[r++];
        b->data[w++] = c;
        at_line_start = c == '\n';
    }
    b->len = w;
    if (b->data)
        b->data[w] = '\0';
}

/* s/\s*\n\s*\/\n\t/g for values holding explicit line breaks. */
static int fold_explicit(tamis_buf_t *out, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (!perl_space((unsigned char)v[i])) {
            tamis_buf_putc(out, v[i++]);
            continue;
        }
        size_t e = i, last_nl = (size_t)-1;
        while (e < n && perl_space((unsigned char)v[e])) {
            if (v[e] == '\n')
                last_nl = e;
            e++;
        }
        /* the whole blank run is replaced when it holds a newline */
        if (last_nl == (size_t)-1)
            tamis_buf_append(out, v + i, e - i);
        else
            tamis_buf_append(out, "\n\t", 2);
        i = e;
    }
    return out->err;
}

int tamis__scan_fold_header(tamis_buf_t *out, const char *name, const char *value, size_t n,
                            bool fold)
{
    while (n && value[n - 1] == '\n') { /* s/(?:\r?\n)+$// */
        n--;
        if (n && value[n - 1] == '\r')
            n--;
    }
    if (!fold) {
        for (size_t i = 0; i < n; i++)
            tamis_buf_putc(out, value[i] == '\n' ? ' ' : value[i]);
        return out->err;
    }
    if (memchr(value, '\n', n))
        return fold_explicit(out, value, n);
    /* "!!" instead of ": " so that the wrap cannot break right after the name */
    tamis_buf_t h;
    tamis_buf_init(&h, TAMIS__SCAN_MAX_OUTPUT);
    tamis_buf_puts(&h, "X-Spam-");
    tamis_buf_puts(&h, name);
    tamis_buf_puts(&h, "!!");
    tamis_buf_append(&h, value, n);
    tamis_buf_t w;
    tamis_buf_init(&w, TAMIS__SCAN_MAX_OUTPUT);
    int rc = h.err ? h.err : tamis__scan_wrap(&w, h.data, h.len, "\t", "", 79, false, true);
    tamis_buf_free(&h);
    if (!rc) {
        drop_blank_lines(&w);
        const char *bang = w.data ? strstr(w.data, "!!") : NULL;
        if (bang)
            tamis_buf_puts(out, bang + 2);
        rc = out->err;
    }
    tamis_buf_free(&w);
    return rc;
}

/* ---- mime_encode_header ---------------------------------------------------------------------- */

static bool printable(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c <= 0x7e);
}

static int base64(tamis_buf_t *out, const unsigned char *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char q[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        tamis_buf_append(out, q, 4);
    }
    return out->err;
}

static void encode_word(tamis_buf_t *out, const unsigned char *s, size_t n)
{
    size_t enc = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '=' || s[i] == '?' || s[i] == '_' || s[i] < 0x20 || s[i] >= 0x7f)
            enc++;
    /* Perl: length + 2*count <= 4 * int(length + 2) / 3, a real division */
    if ((double)(n + enc * 2) <= 4.0 * (double)(n + 2) / 3.0) {
        tamis_buf_puts(out, "=?UTF-8?Q?");
        for (size_t i = 0; i < n; i++) {
            unsigned char c = s[i];
            if (c == ' ')
                tamis_buf_putc(out, '_');
            else if (c == '=' || c == '?' || c == '_' || c < 0x20 || c >= 0x7f)
                tamis_buf_printf(out, "=%02X", c);
            else
                tamis_buf_putc(out, (char)c);
        }
    } else {
        tamis_buf_puts(out, "=?UTF-8?B?");
        base64(out, s, n);
    }
    tamis_buf_puts(out, "?=");
}

/* One line (with its EOL, if any) of mime_encode_header. */
static void encode_line(tamis_buf_t *out, const char *l, size_t n)
{
    size_t eol = 0;
    if (n && l[n - 1] == '\n')
        eol = (n >= 2 && l[n - 2] == '\r') ? 2 : 1;
    size_t body = n - eol;
    size_t i;
    for (i = 0; i < body && printable((unsigned char)l[i]); i++)
        ;
    if (i == body && eol) {
        tamis_buf_append(out, l, n); /* nothing to encode */
        return;
    }
    /* suffix: from the leftmost blank (or the start) after which all is printable */
    size_t last_bad = body; /* index of the last non-printable byte */
    for (size_t k = body; k-- > 0;)
        if (!printable((unsigned char)l[k])) {
            last_bad = k;
            break;
        }
    size_t suf = n - eol; /* default: only the EOL */
    if (last_bad == body) {
        suf = 0; /* all printable: the whole line is the suffix */
    } else {
        for (size_t k = last_bad + 1; k < body; k++)
            if (l[k] == ' ' || l[k] == '\t') {
                suf = k;
                break;
            }
    }
    /* prefix: the printable run from the start, up to its last blank */
    size_t pre = 0;
    for (size_t k = 0; k < suf && printable((unsigned char)l[k]); k++)
        if (l[k] == ' ' || l[k] == '\t')
            pre = k + 1;
    tamis_buf_append(out, l, pre);
    if (suf > pre)
        encode_word(out, (const unsigned char *)l + pre, suf - pre);
    tamis_buf_append(out, l + suf, n - suf);
}

int tamis__scan_mime_encode(tamis_buf_t *out, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n') {
            encode_line(out, s + start, i + 1 - start);
            start = i + 1;
        }
    if (start < n)
        encode_line(out, s + start, n - start);
    return out->err;
}

/* ---- numbers and dates ----------------------------------------------------------------------- */

void tamis__scan_perl_num(char *buf, size_t n, double v)
{
    if (v == 0)
        v = 0; /* Perl prints -0 as 0 */
    snprintf(buf, n, "%.15g", v);
}

void tamis__scan_display_score(char *buf, size_t n, double score, double required, bool is_spam)
{
    char s[64], r[64];
    snprintf(s, sizeof s, "%2.1f", score);
    snprintf(r, sizeof r, "%2.1f", required);
    if (is_spam || strtod(s, NULL) < strtod(r, NULL))
        snprintf(buf, n, "%s", s);
    else
        tamis__scan_perl_num(buf, n, strtod(r, NULL) - 0.1);
}

void tamis__scan_rfc822_date(char *buf, size_t n, time_t t)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm lt, gt;
    localtime_r(&t, &lt);
    gmtime_r(&t, &gt);
    long z = (lt.tm_min - gt.tm_min) + (lt.tm_hour - gt.tm_hour) * 60L +
             (lt.tm_yday - gt.tm_yday) * 1440L + (lt.tm_year - gt.tm_year) * 525600L;
    /* Perl's sprintf("%+.2d%.2d", z/60, z%60): z/60 is a real number truncated by %d */
    snprintf(buf, n, "%s, %02d %s %4d %02d:%02d:%02d %+.2ld%.2ld", days[lt.tm_wday], lt.tm_mday,
             months[lt.tm_mon], lt.tm_year + 1900, lt.tm_hour, lt.tm_min, lt.tm_sec, z / 60,
             z % 60);
}

int tamis__scan_put_eol(tamis_buf_t *out, const char *s, size_t n, bool crlf)
{
    if (!crlf)
        return tamis_buf_append(out, s, n);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\n')
            continue;
        size_t end = (i > start && s[i - 1] == '\r') ? i - 1 : i;
        tamis_buf_append(out, s + start, end - start);
        tamis_buf_append(out, "\r\n", 2);
        start = i + 1;
    }
    tamis_buf_append(out, s + start, n - start);
    return out->err;
}
