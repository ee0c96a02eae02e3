/*
 * Character sets and transfer encodings, as SpamAssassin does them: Node::_normalize (declared
 * charset → UTF-8, with its order of guesses), Node::_decode_header (RFC 2047), Util::qp_decode and
 * Util::base64_decode. Exactness matters more than elegance here: body and header rules see these
 * bytes. Conversion uses iconv (one descriptor per call, so it is thread-safe).
 */
#include "msg_int.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <string.h>
#include <strings.h>

/* Windows-1252 0x80-0x9F; undefined bytes map to the same C1 code point as Perl's Encode does. */
static const unsigned short w1252_hi[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

static char *w1252_decode(tamis_arena_t *a, const char *in, size_t n, size_t *outn)
{
    char *o = tamis_arena_alloc(a, n * 3 + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        unsigned cp = c >= 0x80 && c < 0xA0 ? w1252_hi[c - 0x80] : c;
        k += put_utf8(o + k, cp);
    }
    o[k] = '\0';
    *outn = k;
    return o;
}

bool tamis__utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t len;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(e - p) < len)
            return false;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += len;
    }
    return true;
}

static bool ieq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

/* Charsets SpamAssassin passes through untouched when the text is 7-bit. */
bool tamis__charset_passthrough(const char *cs)
{
    if (ieq(cs, "us-ascii") || ieq(cs, "ascii") || ieq(cs, "ansi_x3.4-1968") ||
        ieq(cs, "ansi_x3.4-1986") || ieq(cs, "iso646-us") || ieq(cs, "utf-8") || ieq(cs, "utf8"))
        return true;
    if (!strncasecmp(cs, "iso-8859", 8) || !strncasecmp(cs, "iso8859", 7) ||
        !strncasecmp(cs, "iso 8859", 8) || !strncasecmp(cs, "windows-", 8) ||
        !strncasecmp(cs, "koi8-", 5) || !strncasecmp(cs, "euc-", 4) || ieq(cs, "big5") ||
        ieq(cs, "gbk") || !strncasecmp(cs, "gb18030", 7) || !strncasecmp(cs, "gb2312", 6))
        return true;
    return false;
}

/* Converts with iconv; strict = fail on any invalid sequence. NULL on failure. */
static char *iconv_decode(tamis_arena_t *a, const char *in, size_t n, const char *cs, bool strict,
                          size_t *outn)
{
    char name[64];
    size_t cl = strlen(cs);
    if (cl == 0 || cl >= sizeof(name))
        return NULL;
    memcpy(name, cs, cl + 1);
    iconv_t cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1)
        return NULL;
    size_t cap = n * 4 + 16;
    char *o = tamis_arena_alloc(a, cap);
    if (!o) {
        iconv_close(cd);
        return NULL;
    }
    char *ip = (char *)in, *op = o;
    size_t il = n, ol = cap - 1;
    while (il > 0) {
        size_t r = iconv(cd, &ip, &il, &op, &ol);
        if (r != (size_t)-1)
            break;
        if (strict || errno == E2BIG || ol < 4) {
            iconv_close(cd);
            return NULL;
        }
        /* lenient: substitute U+FFFD for the bad byte, as Encode's default check does */
        memcpy(op, "\xEF\xBF\xBD", 3);
        op += 3;
        ol -= 3;
        ip++;
        il--;
    }
    iconv_close(cd);
    *op = '\0';
    *outn = (size_t)(op - o);
    return o;
}

static char *copy_out(tamis_arena_t *a, const char *in, size_t n, size_t *outn)
{
    *outn = n;
    return tamis_arena_strndup(a, in, n);
}

static char *declared_decode(tamis_arena_t *a, const char *in, size_t n, const char *cs,
                             bool insist, bool tried_utf8, size_t *outn)
{
    if (!strncasecmp(cs, "utf-16", 6) || !strncasecmp(cs, "utf16", 5) ||
        !strncasecmp(cs, "utf 16", 6))
        return iconv_decode(a, in, n,
                            n >= 2 && ((unsigned char)in[0] == 0xFF || (unsigned char)in[0] == 0xFE)
                                ? "UTF-16"
                                : "UTF-16BE",
                            !insist, outn);
    if (ieq(cs, "iso-8859-1") || ieq(cs, "iso8859-1") || ieq(cs, "windows-1252") ||
        ieq(cs, "cp1252"))
        return w1252_decode(a, in, n, outn);
    if (ieq(cs, "utf-8") || ieq(cs, "utf8")) {
        if (tried_utf8)
            return NULL;
        if (tamis__utf8_valid(in, n))
            return copy_out(a, in, n, outn);
        return insist ? iconv_decode(a, in, n, "UTF-8", false, outn) : NULL;
    }
    return iconv_decode(a, in, n, cs, !insist, outn);
}

char *tamis__normalize(tamis_arena_t *a, const char *in, size_t len, const char *charset,
                       bool insist, size_t *outlen)
{
    const char *cs = charset && *charset ? charset : "us-ascii";
    size_t cnt8 = 0;
    for (size_t i = 0; i < len; i++)
        cnt8 += (unsigned char)in[i] >= 0x80;
    if (!cnt8 && tamis__charset_passthrough(cs))
        return copy_out(a, in, len, outlen);
    bool tried_utf8 = false;
    if (cnt8 && !insist) {
        if (tamis__utf8_valid(in, len))
            return copy_out(a, in, len, outlen);
        tried_utf8 = true;
    }
    char *r = NULL;
    bool is_ascii = ieq(cs, "us-ascii") || ieq(cs, "ascii");
    if (!(is_ascii && !insist))
        r = declared_decode(a, in, len, cs, insist, tried_utf8, outlen);
    if (r)
        return r;
    if (!cnt8)
        return copy_out(a, in, len, outlen);
    /* w1252_plausible, then (no Encode::Detect here) the last resort: both are Windows-1252 */
    return w1252_decode(a, in, len, outlen);
}

/* ---- transfer encodings --------------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Util::qp_decode: trailing blanks before EOL dropped, soft breaks removed, =XX decoded. */
void tamis__qp_decode(const char *in, size_t n, tamis_buf_t *out)
{
    tamis_buf_reserve(out, n);
    size_t i = 0;
    while (i < n) {
        char c = in[i];
        if (c == ' ' || c == '\t') {
            size_t j = i;
            while (j < n && (in[j] == ' ' || in[j] == '\t'))
                j++;
            bool eol =
                (j < n && in[j] == '\n') || (j + 1 < n && in[j] == '\r' && in[j + 1] == '\n');
            if (!eol)
                tamis_buf_append(out, in + i, j - i);
            i = j;
            continue;
        }
        if (c == '=') {
            if (i + 1 < n && in[i + 1] == '\n') {
                i += 2;
                continue;
            }
            if (i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n') {
                i += 3;
                continue;
            }
            if (i + 2 < n && hexval((unsigned char)in[i + 1]) >= 0 &&
                hexval((unsigned char)in[i + 2]) >= 0) {
                tamis_buf_putc(out, (char)(hexval((unsigned char)in[i + 1]) * 16 +
                                           hexval((unsigned char)in[i + 2])));
                i += 3;
                continue;
            }
        }
        tamis_buf_putc(out, c);
        i++;
    }
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Util::base64_decode: non-alphabet characters ignored; padding '=' in the middle counts as 'A'
 * (MIME::Base64 path); a dangling single sextet is dropped. */
void tamis__b64_decode(const char *in, size_t n, tamis_buf_t *out)
{
    tamis_buf_reserve(out, n * 3 / 4 + 3);
    unsigned acc = 0;
    int bits = 0;
    size_t end = n;
    /* trailing '=' (after whitespace removal) are padding; inner '=' decode as zero bits */
    while (end > 0 && (in[end - 1] == '=' || isspace((unsigned char)in[end - 1])))
        end--;
    for (size_t i = 0; i < end; i++) {
        int v = in[i] == '=' ? 0 : b64val((unsigned char)in[i]);
        if (v < 0)
            continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            tamis_buf_putc(out, (char)((acc >> bits) & 0xFF));
        }
    }
}

/* ---- RFC 2047 header decoding --------------------------------------------------------------- */

/* Header names SpamAssassin never decodes (bug 6945). */
static bool no_decode_header(const char *name)
{
    const char *n = name;
    if (!strncasecmp(n, "resent-", 7) && (ieq(n + 7, "message-id") || ieq(n + 7, "date")))
        return true;
    return ieq(n, "received") || ieq(n, "message-id") || ieq(n, "date") || ieq(n, "mime-version") ||
           ieq(n, "references") || ieq(n, "in-reply-to") || !strncasecmp(n, "list-", 5);
}

/* Matches "=?charset?[bq]?text?=" at p; fills the pieces. Returns its length or 0. */
static size_t match_word(const char *p, const char *e, const char **cs, size_t *csl, char *enc,
                         const char **txt, size_t *txtl)
{
    if (e - p < 8 || p[0] != '=' || p[1] != '?')
        return 0;
    const char *q = p + 2;
    while (q < e && (isalnum((unsigned char)*q) || *q == '*' || *q == '_' || *q == '-'))
        q++;
    if (q == p + 2 || q + 3 > e || *q != '?' || !strchr("bqBQ", q[1]) || q[2] != '?')
        return 0;
    *cs = p + 2;
    *csl = (size_t)(q - p - 2);
    *enc = (char)toupper((unsigned char)q[1]);
    const char *t = q + 3;
    const char *r = t;
    while (r < e && *r != '?')
        r++;
    if (r + 1 >= e || r[1] != '=')
        return 0;
    *txt = t;
    *txtl = (size_t)(r - t);
    return (size_t)(r + 2 - p);
}

typedef struct {
    tamis_buf_t text;
    char cs[64]; /* "" = not encoded */
} section_t;

static void section_flush(tamis_arena_t *a, section_t *s, tamis_buf_t *out)
{
    if (!s->text.len)
        return;
    if (!s->cs[0]) {
        tamis_buf_append(out, s->text.data, s->text.len);
    } else {
        size_t n;
        char *d = tamis__normalize(a, s->text.data, s->text.len, s->cs, true, &n);
        if (d)
            tamis_buf_append(out, d, n);
    }
    tamis_buf_reset(&s->text);
}

static void decode_word(char enc, const char *t, size_t tl, tamis_buf_t *out)
{
    if (enc == 'B') {
        tamis__b64_decode(t, tl, out);
        return;
    }
    for (size_t i = 0; i < tl; i++) {
        if (t[i] == '_') {
            tamis_buf_putc(out, ' ');
        } else if (t[i] == '=' && i + 2 < tl && hexval((unsigned char)t[i + 1]) >= 0 &&
                   hexval((unsigned char)t[i + 2]) >= 0) {
            tamis_buf_putc(out, (char)(hexval((unsigned char)t[i + 1]) * 16 +
                                       hexval((unsigned char)t[i + 2])));
            i += 2;
        } else {
            tamis_buf_putc(out, t[i]);
        }
    }
}

/* Decodes the encoded words of v, merging adjacent sections with the same charset (bug 7249). */
static char *decode_words(tamis_arena_t *a, const char *v, size_t n)
{
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    section_t s;
    tamis_buf_init(&s.text, 0);
    s.cs[0] = '\0';
    bool have = false;
    const char *p = v, *e = v + n;
    while (p < e) {
        const char *cs, *txt;
        size_t csl, txtl;
        char enc;
        size_t wl = match_word(p, e, &cs, &csl, &enc, &txt, &txtl);
        char want[64] = "";
        if (wl) {
            size_t l = csl < sizeof(want) - 1 ? csl : sizeof(want) - 1;
            for (size_t i = 0; i < l; i++)
                want[i] = (char)tolower((unsigned char)cs[i]);
            want[l] = '\0';
            char *star = strchr(want, '*'); /* RFC 2231 language suffix */
            if (star)
                *star = '\0';
            if (!want[0])
                strcpy(want, "us-ascii");
        }
        if (!have || strcmp(want, s.cs) != 0) {
            section_flush(a, &s, &out);
            memcpy(s.cs, want, sizeof(want));
            have = true;
        }
        if (wl) {
            decode_word(enc, txt, txtl, &s.text);
            p += wl;
            /* whitespace between two encoded words is ignored */
            const char *q = p;
            while (q < e && isspace((unsigned char)*q))
                q++;
            if (q > p && q < e && match_word(q, e, &cs, &csl, &enc, &txt, &txtl))
                p = q;
            continue;
        }
        /* plain run: up to the next '=' (or one char) */
        const char *q = p + 1;
        while (q < e && *q != '=')
            q++;
        tamis_buf_append(&s.text, p, (size_t)(q - p));
        p = q;
    }
    section_flush(a, &s, &out);
    tamis_buf_free(&s.text);
    char *r = out.err ? NULL : tamis_arena_strndup(a, out.data ? out.data : "", out.len);
    tamis_buf_free(&out);
    return r;
}

char *tamis__decode_header(tamis_arena_t *a, const char *name, const char *v, size_t n)
{
    /* input is unfolded already; remove any remaining line breaks */
    char *t = tamis_arena_alloc(a, n + 1);
    if (!t)
        return NULL;
    size_t k = 0;
    bool high = false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\n' || (v[i] == '\r' && i + 1 < n && v[i + 1] == '\n'))
            continue;
        high |= (unsigned char)v[i] >= 0x80;
        t[k++] = v[i];
    }
    t[k] = '\0';
    if (high) {
        size_t nn;
        t = tamis__normalize(a, t, k, "utf-8", false, &nn);
        if (!t)
            return NULL;
        k = nn;
    }
    if (no_decode_header(name) || !strstr(t, "=?"))
        return t;
    return decode_words(a, t, k);
}
