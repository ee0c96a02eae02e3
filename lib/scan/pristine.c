/*
 * pristine: the input split the way Mail::SpamAssassin::Message->new splits it, because the
 * rewritten message is assembled from exactly those pieces: the mbox "From " line, the pristine
 * header text (up to and including the blank line, or what SA takes for the end of the header:
 * a "--" line or the fourth malformed line), and the untouched body.
 *
 * Line ending: CRLF when the first header line or the last line of the input holds CRLF; then
 * bare LFs inside the header are made CRLF (SA bug 7785), the body is never touched.
 */
#include "scan_internal.h"

#include <string.h>
#include <strings.h>

static size_t line_len(const char *p, size_t left)
{
    const char *nl = memchr(p, '\n', left);
    return nl ? (size_t)(nl - p) + 1 : left;
}

/* /^From\s+(?!:)/ including Perl's backtracking over the blanks. */
static bool is_mbox_line(const char *l, size_t n)
{
    if (n < 5 || memcmp(l, "From", 4) != 0)
        return false;
    size_t i = 4;
    while (i < n && (l[i] == ' ' || l[i] == '\t' || l[i] == '\n' || l[i] == '\r' || l[i] == '\f' ||
                     l[i] == '\v'))
        i++;
    size_t run = i - 4;
    if (run == 0)
        return false;
    return run >= 2 || i >= n || l[i] != ':';
}

/* /^[\041-\071\073-\176]+[ \t]*:/ */
static bool is_field_line(const char *l, size_t n)
{
    size_t i = 0;
    while (i < n && l[i] >= 041 && l[i] <= 0176 && l[i] != ':')
        i++;
    if (i == 0)
        return false;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    return i < n && l[i] == ':';
}

/* Appends one header line, turning bare LFs into CRLF in CRLF mode. */
static void put_header_line(tamis_buf_t *b, const char *l, size_t n, bool crlf)
{
    for (size_t i = 0; i < n; i++) {
        if (crlf && l[i] == '\n' && (i == 0 || l[i - 1] != '\r'))
            tamis_buf_putc(b, '\r');
        tamis_buf_putc(b, l[i]);
    }
}

int tamis__pristine_split(const char *data, size_t len, tamis_arena_t *arena,
                          tamis__pristine_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0) { /* bug 4884: a null message is a single newline */
        data = "\n";
        len = 1;
    }
    size_t pos = 0;
    size_t l0 = line_len(data, len);
    if (is_mbox_line(data, l0)) {
        out->mbox = tamis_slice(data, l0);
        pos = l0;
    }
    /* CRLF if the first remaining line or the last line holds CRLF */
    if (pos < len) {
        size_t fl = line_len(data + pos, len - pos);
        if (memmem(data + pos, fl, "\r\n", 2))
            out->crlf = true;
    }
    /* the last line: after the last LF that is not the final byte */
    size_t last = len - 1;
    while (last > pos && data[last - 1] != '\n')
        last--;
    if (memmem(data + last, len - last, "\r\n", 2))
        out->crlf = true;

    tamis_buf_t h;
    tamis_buf_init(&h, 0);
    unsigned errors = 0;
    while (pos < len) {
        size_t n = line_len(data + pos, len - pos);
        const char *l = data + pos;
        bool blank =
            (n == 1 && l[0] == '\n') || (out->crlf && n == 2 && l[0] == '\r' && l[1] == '\n');
        if (blank) {
            put_header_line(&h, l, n, out->crlf);
            pos += n;
            break;
        }
        if (l[0] != ' ' && l[0] != '\t') {
            if (n >= 2 && l[0] == '-' && l[1] == '-')
                break; /* a MIME boundary: the body starts here */
            if (!is_field_line(l, n) && ++errors > 3)
                break;
        }
        put_header_line(&h, l, n, out->crlf);
        pos += n;
    }
    if (h.err) {
        tamis_buf_free(&h);
        return TAMIS_ENOMEM;
    }
    out->headers = tamis_arena_strndup(arena, h.data ? h.data : "", h.len);
    out->headers_len = h.len;
    tamis_buf_free(&h);
    if (!out->headers)
        return TAMIS_ENOMEM;
    out->body = tamis_slice(data + pos, len - pos);
    return 0;
}

/* Finds "Name[ \t]*:[ \t]*" at line start i; returns the value offset or 0. */
static size_t match_name(const char *h, size_t n, size_t i, const char *name, size_t nl)
{
    if (i + nl > n || strncasecmp(h + i, name, nl) != 0)
        return 0;
    size_t k = i + nl;
    while (k < n && (h[k] == ' ' || h[k] == '\t'))
        k++;
    if (k >= n || h[k] != ':')
        return 0;
    k++;
    while (k < n && (h[k] == ' ' || h[k] == '\t'))
        k++;
    return k;
}

/* End of the value starting at k: after the first "\n" not followed by a blank. */
static size_t value_end(const char *h, size_t n, size_t k)
{
    for (size_t e = k; e < n; e++)
        if (h[e] == '\n' && (e + 1 >= n || (h[e + 1] != ' ' && h[e + 1] != '\t')))
            return e + 1;
    return n;
}

bool tamis__pristine_field_next(const tamis__pristine_t *p, const char *name, size_t *pos,
                                tamis_slice_t *out, tamis_arena_t *arena)
{
    const char *h = p->headers;
    size_t n = p->headers_len, nl = strlen(name);
    /* /^\Q$hdr\E[ \t]*:[ \t]*(.*?\n(?![ \t]))/smgi: the scan resumes after each match */
    for (size_t i = *pos; i < n;) {
        size_t k = match_name(h, n, i, name, nl);
        if (k) {
            size_t e = value_end(h, n, k);
            *pos = e;
            if (e == n && h[n - 1] != '\n') {
                /* the regex needs a newline; SpamAssassin falls back to get_header(), which
                 * gives the value with one */
                char *v = tamis_arena_alloc(arena, e - k + 2);
                if (!v)
                    return false;
                memcpy(v, h + k, e - k);
                v[e - k] = '\n';
                v[e - k + 1] = '\0';
                *out = tamis_slice(v, e - k + 1);
                return true;
            }
            *out = tamis_slice(h + k, e - k);
            return true;
        }
        const char *nlp = memchr(h + i, '\n', n - i);
        if (!nlp)
            break;
        i = (size_t)(nlp - h) + 1;
    }
    *pos = n;
    return false;
}

bool tamis__pristine_field_last(const tamis__pristine_t *p, const char *name, tamis_slice_t *out,
                                tamis_arena_t *arena)
{
    size_t pos = 0;
    bool found = false;
    tamis_slice_t v;
    while (tamis__pristine_field_next(p, name, &pos, &v, arena)) {
        *out = v;
        found = true;
    }
    return found;
}

const char *tamis__pristine_header_next(const tamis__pristine_t *p, const char *name, size_t *pos,
                                        tamis_arena_t *arena)
{
    tamis_slice_t v;
    if (!tamis__pristine_field_next(p, name, pos, &v, arena))
        return NULL;
    return tamis_arena_strndup(arena, v.ptr, v.len);
}

const char *tamis__pristine_header(const tamis__pristine_t *p, const char *name, long nth,
                                   tamis_arena_t *arena)
{
    size_t pos = 0;
    const char *found = NULL;
    for (long count = 0;; count++) {
        const char *v = tamis__pristine_header_next(p, name, &pos, arena);
        if (!v)
            return found;
        found = v;
        if (count == nth)
            return v;
    }
}

const char *tamis__pristine_header_unfolded(const tamis__pristine_t *p, const char *name,
                                            tamis_arena_t *arena)
{
    const char *v = tamis__pristine_header(p, name, -1, arena);
    if (!v)
        return NULL;
    char *u = tamis_arena_strdup(arena, v);
    if (!u)
        return NULL;
    size_t w = 0;
    for (size_t r = 0; u[r]; r++)
        if (u[r] != '\r' && u[r] != '\n')
            u[w++] = u[r];
    while (w && (u[w - 1] == ' ' || u[w - 1] == '\t'))
        w--;
    u[w] = '\0';
    return u;
}
