/*
 * Removal of SpamAssassin/Tamis markup before learning (shared by tamisd TELL and tamis-learn),
 * as sa-learn does for messages carrying X-Spam-Checker-Version
 * (Mail::SpamAssassin::remove_spamassassin_markup): a report_safe wrapper gives back the original
 * message; otherwise X-Spam-Prev-* headers are restored, other X-Spam-* headers are removed.
 * Learning the wrapper instead would give other tokens and another message id than sa-learn. Not
 * done: undoing a configured rewrite_header Subject tag (tamis-learn reads no .cf files) and
 * the 2.4x "SPAM: ----" body reports.
 */
#include "tamis/bayes.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *p;
    size_t n; /* with its line ending */
} line_t;

static size_t split_lines(const char *d, size_t n, line_t **out)
{
    size_t cap = 64, cnt = 0;
    line_t *v = malloc(cap * sizeof *v);
    if (!v)
        return 0;
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(d + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - d) + 1 : n;
        if (cnt == cap) {
            cap *= 2;
            line_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                return 0;
            }
            v = nv;
        }
        v[cnt].p = d + i;
        v[cnt].n = e - i;
        cnt++;
        i = e;
    }
    *out = v;
    return cnt;
}

static bool blank(const line_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (!isspace((unsigned char)l->p[i]))
            return false;
    return true;
}

/* "--boundary" followed by optional CR and the line end (or the prefix only when prefix). */
static bool is_boundary(const line_t *l, const char *b, size_t bl, bool prefix)
{
    if (l->n < 2 + bl || l->p[0] != '-' || l->p[1] != '-' || memcmp(l->p + 2, b, bl) != 0)
        return false;
    if (prefix)
        return true;
    size_t rest = l->n - 2 - bl;
    const char *r = l->p + 2 + bl;
    return rest == 0 || (rest == 1 && r[0] == '\n') || (rest == 2 && r[0] == '\r' && r[1] == '\n');
}

/* Value of "Name:\s+(.+?)\s*$" on a line, trimmed, into out. */
static bool header_value(const line_t *l, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (l->n <= nl + 1 || strncasecmp(l->p, name, nl) != 0 || l->p[nl] != ':' ||
        !isspace((unsigned char)l->p[nl + 1]))
        return false;
    const char *s = l->p + nl + 1, *e = l->p + l->n;
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    size_t n = (size_t)(e - s) < outlen - 1 ? (size_t)(e - s) : outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* report_safe 1/2: the original is the message/rfc822 (or text/plain) part marked as such. */
static char *unwrap(const char *mbox, size_t mlen, const char *body, size_t blen, const char *ctype,
                    size_t *outlen)
{
    /* ^\s*multipart/mixed;\s+boundary\s*=\s*["']?(.+?)["']?(?:;|$) */
    const char *p = ctype;
    while (isspace((unsigned char)*p))
        p++;
    if (strncasecmp(p, "multipart/mixed;", 16) != 0)
        return NULL;
    p += 16;
    if (!isspace((unsigned char)*p))
        return NULL;
    while (isspace((unsigned char)*p))
        p++;
    if (strncasecmp(p, "boundary", 8) != 0)
        return NULL;
    p += 8;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '=')
        return NULL;
    p++;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '"' || *p == '\'')
        p++;
    size_t bl = strcspn(p, ";");
    while (bl && (p[bl - 1] == '"' || p[bl - 1] == '\'' || isspace((unsigned char)p[bl - 1])))
        bl--;
    if (!bl)
        return NULL;
    line_t *l = NULL;
    size_t n = split_lines(body, blen, &l);
    if (!n)
        return NULL;
    bool flag = false;
    char ct[256] = "", cd[256] = "";
    char *res = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!is_boundary(&l[i], p, bl, false) && !flag)
            continue;
        if (blank(&l[i])) {
            bool orig =
                ((!strncasecmp(ct, "message/rfc822;", 15) || !strncasecmp(ct, "text/plain;", 11)) &&
                 strstr(ct, "x-spam-type=original")) ||
                (!strcmp(ct, "message/rfc822") &&
                 !strcmp(cd, "original message before SpamAssassin"));
            if (orig) {
                size_t st = i + 1, en = n;
                for (size_t k = st; k < n; k++) {
                    if (is_boundary(&l[k], p, bl, true)) {
                        en = (k > st && blank(&l[k - 1])) ? k - 1 : k;
                        break;
                    }
                }
                size_t tot = mlen;
                for (size_t k = st; k < en; k++)
                    tot += l[k].n;
                res = malloc(tot + 1);
                if (res) {
                    memcpy(res, mbox, mlen);
                    size_t o = mlen;
                    for (size_t k = st; k < en; k++) {
                        memcpy(res + o, l[k].p, l[k].n);
                        o += l[k].n;
                    }
                    res[o] = '\0';
                    *outlen = o;
                }
                break;
            }
            flag = false;
            ct[0] = cd[0] = '\0';
            continue;
        }
        flag = true;
        if (!header_value(&l[i], "Content-Type", ct, sizeof ct))
            header_value(&l[i], "Content-Description", cd, sizeof cd);
    }
    free(l);
    return res;
}

/* Header fields as unfolded-or-not units: start line + continuation lines. */
typedef struct {
    size_t first, count;
    bool dead;
} field_t;

char *tamis_bayes_remove_markup(const char *data, size_t len, const char *ctype, size_t *outlen)
{
    const char *mbox = data;
    size_t mlen = 0;
    if (len >= 5 && memcmp(data, "From ", 5) == 0) {
        const char *nl = memchr(data, '\n', len);
        mlen = nl ? (size_t)(nl - data) + 1 : len;
    }
    /* header block ends at the first empty line */
    size_t hs = mlen, he = mlen, bs = len;
    for (size_t i = mlen; i < len;) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - data) + 1 : len;
        if (e - i == 1 || (e - i == 2 && data[i] == '\r')) {
            he = i;
            bs = e;
            break;
        }
        i = e;
        he = e;
    }
    char *r = unwrap(mbox, mlen, data + bs, len - bs, ctype ? ctype : "", outlen);
    if (r)
        return r;
    /* headers: restore X-Spam-Prev-*, drop other X-Spam-* */
    line_t *l = NULL;
    size_t n = split_lines(data + hs, he - hs, &l);
    field_t *f = calloc(n + 1, sizeof *f);
    if (!f) {
        free(l);
        return NULL;
    }
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        if (nf && (l[i].p[0] == ' ' || l[i].p[0] == '\t')) {
            f[nf - 1].count++;
            continue;
        }
        f[nf].first = i;
        f[nf].count = 1;
        nf++;
    }
    /* X-Spam-Prev-Name: value → replaces the current Name field */
    size_t *replacement = calloc(nf + 1, sizeof *replacement); /* index+1 of the Prev field */
    bool *added = calloc(nf + 1, sizeof *added);
    if (!replacement || !added) {
        free(l);
        free(f);
        free(replacement);
        free(added);
        return NULL;
    }
    for (size_t k = 0; k < nf; k++) {
        const line_t *s = &l[f[k].first];
        if (s->n < 12 || strncasecmp(s->p, "X-Spam-Prev-", 12) != 0)
            continue;
        const char *name = s->p + 12;
        const char *colon = memchr(name, ':', s->n - 12);
        if (!colon)
            continue;
        size_t nn = (size_t)(colon - name);
        bool nonexistent = false;
        {
            const char *v = colon + 1;
            while (v < s->p + s->n && (*v == ' ' || *v == '\t'))
                v++;
            nonexistent = (size_t)(s->p + s->n - v) >= 13 && !strncmp(v, "(nonexistent)", 13);
        }
        f[k].dead = true;
        bool done = false;
        for (size_t j = 0; j < nf; j++) {
            const line_t *t = &l[f[j].first];
            if (j != k && !f[j].dead && t->n > nn && strncasecmp(t->p, name, nn) == 0 &&
                t->p[nn] == ':') {
                f[j].dead = true;
                if (!nonexistent)
                    replacement[j] = k + 1;
                done = true;
                break;
            }
        }
        if (!done && !nonexistent)
            added[k] = true;
    }
    for (size_t k = 0; k < nf; k++) {
        const line_t *s = &l[f[k].first];
        if (!f[k].dead && s->n >= 7 && strncasecmp(s->p, "X-Spam-", 7) == 0)
            f[k].dead = true;
    }
    size_t cap = len + 64;
    char *out = malloc(cap);
    if (!out) {
        free(l);
        free(f);
        free(replacement);
        free(added);
        return NULL;
    }
    size_t o = 0;
    memcpy(out, data, mlen);
    o = mlen;
    for (size_t k = 0; k < nf; k++) {
        size_t src = k;
        if (f[k].dead && replacement[k])
            src = replacement[k] - 1;
        else if (f[k].dead && !added[k])
            continue;
        const field_t *ff = &f[src];
        for (size_t i = 0; i < ff->count; i++) {
            const line_t *ln = &l[ff->first + i];
            const char *p = ln->p;
            size_t pn = ln->n;
            if (src != k || added[k]) {
                if (i == 0) { /* drop the "X-Spam-Prev-" prefix */
                    p += 12;
                    pn -= 12;
                }
            }
            memcpy(out + o, p, pn);
            o += pn;
        }
    }
    /* the blank line and the body, unchanged */
    const char *b = data + he;
    size_t bn = len - he;
    memcpy(out + o, b, bn);
    o += bn;
    out[o] = '\0';
    free(l);
    free(f);
    free(replacement);
    free(added);
    *outlen = o;
    return out;
}
