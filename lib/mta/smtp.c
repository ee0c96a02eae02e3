/*
 * SMTP without I/O: command lines, the DATA stream in both directions, reply lines. tamisd's
 * after-queue content filter (spamd/smtp.c) drives these from its libuv callbacks.
 */
#include "tamis/mta.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    tamis_mta_smtp_verb_t verb;
} smtp_verbs[] = {
    {"HELO", TAMIS_MTA_SMTP_HELO}, {"EHLO", TAMIS_MTA_SMTP_EHLO},
    {"LHLO", TAMIS_MTA_SMTP_LHLO}, {"MAIL", TAMIS_MTA_SMTP_MAIL},
    {"RCPT", TAMIS_MTA_SMTP_RCPT}, {"DATA", TAMIS_MTA_SMTP_DATA},
    {"RSET", TAMIS_MTA_SMTP_RSET}, {"NOOP", TAMIS_MTA_SMTP_NOOP},
    {"QUIT", TAMIS_MTA_SMTP_QUIT}, {"VRFY", TAMIS_MTA_SMTP_VRFY},
    {"HELP", TAMIS_MTA_SMTP_HELP}, {"XFORWARD", TAMIS_MTA_SMTP_XFORWARD},
    {"BDAT", TAMIS_MTA_SMTP_BDAT}, {"STARTTLS", TAMIS_MTA_SMTP_STARTTLS},
};

static size_t skip_spaces(const char *p, size_t i, size_t len)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i;
}

/* "FROM:<path> params" / "TO:<path> params" (a space after the colon is tolerated). */
static int parse_path(tamis_mta_smtp_cmd_t *out, const char *kw)
{
    const char *p = out->arg.ptr;
    size_t len = out->arg.len, kl = strlen(kw);
    if (len < kl || strncasecmp(p, kw, kl) != 0)
        return TAMIS_EPROTO;
    size_t i = skip_spaces(p, kl, len);
    if (i >= len || p[i] != '<')
        return TAMIS_EPROTO;
    const char *close = memchr(p + i, '>', len - i);
    if (!close)
        return TAMIS_EPROTO;
    out->path = tamis_slice(p + i + 1, (size_t)(close - p - i - 1));
    if (memchr(out->path.ptr, '<', out->path.len))
        return TAMIS_EPROTO;
    size_t j = skip_spaces(p, (size_t)(close - p) + 1, len);
    if (j < len && (size_t)(close - p) + 1 == j)
        return TAMIS_EPROTO; /* "<a@b>SIZE=1": parameters need a space */
    out->params = tamis_slice(p + j, len - j);
    return 0;
}

int tamis_mta_smtp_parse(const char *line, size_t len, tamis_mta_smtp_cmd_t *out)
{
    memset(out, 0, sizeof *out);
    if (len > TAMIS_MTA_SMTP_LINE_MAX)
        return TAMIS_ELIMIT;
    size_t vl = 0;
    while (vl < len && line[vl] != ' ' && line[vl] != '\t')
        vl++;
    for (size_t i = 0; i < sizeof smtp_verbs / sizeof smtp_verbs[0]; i++) {
        if (strlen(smtp_verbs[i].name) == vl && strncasecmp(line, smtp_verbs[i].name, vl) == 0) {
            out->verb = smtp_verbs[i].verb;
            break;
        }
    }
    size_t a = skip_spaces(line, vl, len);
    size_t end = len;
    while (end > a && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        end--;
    out->arg = tamis_slice(line + a, end - a);
    if (memchr(line, '\0', len))
        return TAMIS_EPROTO;
    switch (out->verb) {
    case TAMIS_MTA_SMTP_HELO:
    case TAMIS_MTA_SMTP_EHLO:
    case TAMIS_MTA_SMTP_LHLO:
    case TAMIS_MTA_SMTP_XFORWARD:
        return out->arg.len ? 0 : TAMIS_EPROTO;
    case TAMIS_MTA_SMTP_MAIL:
        return parse_path(out, "FROM:");
    case TAMIS_MTA_SMTP_RCPT:
        return parse_path(out, "TO:");
    case TAMIS_MTA_SMTP_DATA:
    case TAMIS_MTA_SMTP_RSET:
    case TAMIS_MTA_SMTP_QUIT:
        return out->arg.len ? TAMIS_EPROTO : 0;
    default:
        return 0;
    }
}

tamis_slice_t tamis_mta_smtp_param(tamis_slice_t params, const char *name)
{
    size_t nl = strlen(name), i = 0;
    while (i < params.len) {
        i = skip_spaces(params.ptr, i, params.len);
        size_t s = i;
        while (i < params.len && params.ptr[i] != ' ' && params.ptr[i] != '\t')
            i++;
        const char *w = params.ptr + s;
        size_t wl = i - s;
        if (wl >= nl && strncasecmp(w, name, nl) == 0 && (wl == nl || w[nl] == '='))
            return wl == nl ? tamis_slice(w + nl, 0) : tamis_slice(w + nl + 1, wl - nl - 1);
    }
    return tamis_slice(NULL, 0);
}

/* ---- DATA ------------------------------------------------------------------------------------ */

enum { D_BOL, D_MID, D_DOT, D_DOTCR };

void tamis_mta_data_init(tamis_mta_data_t *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max;
}

static void data_put(tamis_mta_data_t *d, tamis_buf_t *out, const char *p, size_t n)
{
    if (d->count + n > d->max)
        d->too_big = true;
    if (!d->too_big)
        tamis_buf_append(out, p, n);
    d->count += n;
}

/* Copies the run of ordinary bytes up to the next LF in one append (the common case). */
static size_t data_run(tamis_mta_data_t *d, const char *p, size_t n, tamis_buf_t *out)
{
    const char *lf = memchr(p, '\n', n);
    size_t k = lf ? (size_t)(lf - p) + 1 : n;
    data_put(d, out, p, k);
    d->state = lf ? D_BOL : D_MID;
    return k;
}

size_t tamis_mta_data_feed(tamis_mta_data_t *d, const char *p, size_t n, tamis_buf_t *out)
{
    size_t i = 0;
    while (i < n && !d->done) {
        char c = p[i];
        switch (d->state) {
        case D_BOL:
            if (c == '.') {
                d->state = D_DOT;
                i++;
            } else {
                i += data_run(d, p + i, n - i, out);
            }
            break;
        case D_MID:
            i += data_run(d, p + i, n - i, out);
            break;
        case D_DOT:
            if (c == '\r') {
                d->state = D_DOTCR;
                i++;
            } else if (c == '\n') {
                d->done = true;
                i++;
            } else {
                i += data_run(d, p + i, n - i, out); /* the stuffed dot is dropped */
            }
            break;
        default: /* D_DOTCR */
            if (c == '\n') {
                d->done = true;
                i++;
            } else {
                data_put(d, out, "\r", 1);
                d->state = D_MID;
            }
            break;
        }
    }
    return i;
}

int tamis_mta_data_encode(const char *p, size_t n, tamis_buf_t *out)
{
    bool bol = true;
    for (size_t i = 0; i < n;) {
        if (bol && p[i] == '.')
            tamis_buf_putc(out, '.');
        const char *lf = memchr(p + i, '\n', n - i);
        size_t k = lf ? (size_t)(lf - p) : n; /* index of the LF or the end */
        size_t stop = (k > i && p[k - 1] == '\r') ? k - 1 : k;
        tamis_buf_append(out, p + i, stop - i);
        if (lf)
            tamis_buf_append(out, "\r\n", 2);
        i = lf ? k + 1 : n;
        bol = lf != NULL;
    }
    if (!bol)
        tamis_buf_append(out, "\r\n", 2);
    tamis_buf_append(out, ".\r\n", 3);
    return out->err;
}

int tamis_mta_smtp_reply_line(const char *line, size_t len, bool *last)
{
    if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
        line[2] < '0' || line[2] > '9')
        return TAMIS_EPROTO;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return TAMIS_EPROTO;
    *last = len == 3 || line[3] == ' ';
    return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}
