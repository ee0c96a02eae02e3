/*
 * DKIM (RFC 6376, RFC 8463) without DNS: the tag-list parser shared with DMARC, the
 * DKIM-Signature and key-record parsers, and the simple/relaxed canonicalisations. The
 * orchestration in auth.c feeds them the message's pristine bytes and the key records it looked
 * up; the signature check itself (OpenSSL EVP) lives there too, next to the lookups.
 *
 * Every parser is bounded (TAMIS__TAG_MAX tags, TAMIS__DKIM_MAX_HFIELDS h= names, the caller
 * bounds the field size) and strict: what RFC 6376 calls a PERMFAIL is an error here, reported
 * with a short static reason for the Authentication-Results comment.
 */
#include "auth/dkim_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tamis/core.h"

/* ---- tag lists --------------------------------------------------------------------------------
 */

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool slice_eq(tamis_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static bool slice_ieq(tamis_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

int tamis__taglist_parse(const char *s, size_t n, tamis__tag_t *tags, size_t max, size_t *count)
{
    size_t i = 0, k = 0;
    *count = 0;
    while (i < n) {
        while (i < n && is_fws(s[i]))
            i++;
        if (i == n)
            break; /* trailing ';' followed by white space */
        size_t ns = i;
        if (!isalpha((unsigned char)s[i]))
            return TAMIS_EPARSE;
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_'))
            i++;
        size_t ne = i;
        while (i < n && is_fws(s[i]))
            i++;
        if (i == n || s[i] != '=')
            return TAMIS_EPARSE;
        i++;
        while (i < n && is_fws(s[i]))
            i++;
        size_t vs = i, ve = i;
        while (i < n && s[i] != ';') {
            unsigned char c = (unsigned char)s[i];
            if (is_fws((char)c)) {
                i++;
                continue;
            }
            if (c < 0x21 || c > 0x7e)
                return TAMIS_EPARSE;
            i++;
            ve = i;
        }
        if (k == max)
            return TAMIS_ELIMIT;
        tamis_slice_t name = tamis_slice(s + ns, ne - ns);
        for (size_t j = 0; j < k; j++)
            if (tags[j].name.len == name.len && memcmp(tags[j].name.ptr, name.ptr, name.len) == 0)
                return TAMIS_EPARSE;
        tags[k].name = name;
        tags[k].value = tamis_slice(s + vs, ve - vs);
        k++;
        if (i < n)
            i++; /* ';' */
    }
    *count = k;
    return 0;
}

const tamis__tag_t *tamis__tag_find(const tamis__tag_t *tags, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (slice_eq(tags[i].name, name))
            return &tags[i];
    return NULL;
}

static int b64v(unsigned char c)
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

long tamis__dkim_b64_decode(const char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_fws((char)c))
            continue;
        if (c == '=')
            break; /* padding ends the data; what follows is ignored, as Perl's MIME::Base64
                      (Mail::DKIM) does: opendkim-testmsg writes a stray tail after it */
        int v = b64v(c);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6)
        return -1; /* a lone sextet cannot encode a byte */
    return o;
}

static char *slice_lower(tamis_arena_t *a, tamis_slice_t s)
{
    char *p = tamis_arena_strndup(a, s.ptr, s.len);
    if (p)
        for (char *q = p; *q; q++)
            *q = (char)tolower((unsigned char)*q);
    return p;
}

/* A copy without FWS (values that may be folded anywhere: h=, b=, bh=). */
static char *slice_nofws(tamis_arena_t *a, tamis_slice_t s)
{
    char *p = tamis_arena_alloc(a, s.len + 1);
    if (!p)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < s.len; i++)
        if (!is_fws(s.ptr[i]))
            p[o++] = s.ptr[i];
    p[o] = '\0';
    return p;
}

static bool parse_u64(tamis_slice_t s, unsigned maxdigits, uint64_t *out)
{
    if (s.len == 0 || s.len > maxdigits)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (!isdigit((unsigned char)s.ptr[i]))
            return false;
        v = v * 10 + (uint64_t)(s.ptr[i] - '0');
    }
    *out = v;
    return true;
}

/* A domain name as DKIM accepts it: labels of letters, digits, '-' and '_', dots between. */
static bool valid_domain(const char *d)
{
    size_t n = strlen(d), lab = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (lab == 0)
                return false;
            lab = 0;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_')
            return false;
        if (++lab > 63)
            return false;
    }
    return lab > 0 || n > 1; /* a trailing dot is tolerated */
}

#define FAIL(code, text)                                                                           \
    do {                                                                                           \
        *why = (text);                                                                             \
        return (code);                                                                             \
    } while (0)

/* The next item of a colon-separated tag value ("sha1:sha256", "email:*"), whitespace trimmed;
 * *i is the cursor (start at 0). False when the list is done. */
static bool next_item(tamis_slice_t v, size_t *i, tamis_slice_t *out)
{
    if (*i > v.len)
        return false;
    size_t j = *i;
    while (j < v.len && v.ptr[j] != ':')
        j++;
    tamis_slice_t m = tamis_slice(v.ptr + *i, j - *i);
    while (m.len && is_fws(m.ptr[0]))
        m.ptr++, m.len--;
    while (m.len && is_fws(m.ptr[m.len - 1]))
        m.len--;
    *i = j + 1;
    *out = m;
    return true;
}

int tamis__dkim_sig_parse(const char *v, size_t n, tamis_arena_t *arena, tamis__dkim_sig_t *out,
                          const char **why)
{
    tamis__tag_t tags[TAMIS__TAG_MAX];
    size_t count;
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (n > TAMIS__DKIM_MAX_FIELD)
        FAIL(TAMIS_EPARSE, "signature too long");
    int rc = tamis__taglist_parse(v, n, tags, TAMIS__TAG_MAX, &count);
    if (rc == TAMIS_ELIMIT)
        FAIL(TAMIS_EPARSE, "too many tags");
    if (rc)
        FAIL(TAMIS_EPARSE, "signature syntax error");

    /* d= and s= first, so a later error can still be reported with them. */
    const tamis__tag_t *t;
    if ((t = tamis__tag_find(tags, count, "d")) != NULL) {
        if (!(out->d = slice_lower(arena, t->value)))
            return TAMIS_ENOMEM;
        size_t dl = strlen(out->d);
        if (dl && out->d[dl - 1] == '.')
            out->d[dl - 1] = '\0';
    }
    if ((t = tamis__tag_find(tags, count, "s")) != NULL &&
        !(out->s = tamis_arena_strndup(arena, t->value.ptr, t->value.len)))
        return TAMIS_ENOMEM;

    if (!(t = tamis__tag_find(tags, count, "v")))
        FAIL(TAMIS_EPARSE, "missing v= tag");
    if (!slice_eq(t->value, "1"))
        FAIL(TAMIS_EUNSUPPORTED, "unsupported version");
    if (!out->d || !out->d[0])
        FAIL(TAMIS_EPARSE, "missing d= tag");
    if (!valid_domain(out->d))
        FAIL(TAMIS_EPARSE, "invalid d= domain");
    if (!out->s || !out->s[0])
        FAIL(TAMIS_EPARSE, "missing s= tag");
    for (const char *p = out->s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            FAIL(TAMIS_EPARSE, "invalid s= selector");

    if (!(t = tamis__tag_find(tags, count, "a")))
        FAIL(TAMIS_EPARSE, "missing a= tag");
    if (slice_ieq(t->value, "rsa-sha256"))
        out->alg = TAMIS__DKIM_RSA_SHA256;
    else if (slice_ieq(t->value, "rsa-sha1"))
        out->alg = TAMIS__DKIM_RSA_SHA1;
    else if (slice_ieq(t->value, "ed25519-sha256"))
        out->alg = TAMIS__DKIM_ED25519_SHA256;
    else
        FAIL(TAMIS_EUNSUPPORTED, "unsupported algorithm");

    if ((t = tamis__tag_find(tags, count, "c")) != NULL) {
        tamis_slice_t c = t->value, hc = c, bc = tamis_slice("simple", 6);
        const char *slash = memchr(c.ptr, '/', c.len);
        if (slash) {
            hc = tamis_slice(c.ptr, (size_t)(slash - c.ptr));
            bc = tamis_slice(slash + 1, c.len - hc.len - 1);
        }
        if (slice_ieq(hc, "relaxed"))
            out->hdr_relaxed = true;
        else if (!slice_ieq(hc, "simple"))
            FAIL(TAMIS_EUNSUPPORTED, "unsupported canonicalization");
        if (slice_ieq(bc, "relaxed"))
            out->body_relaxed = true;
        else if (!slice_ieq(bc, "simple"))
            FAIL(TAMIS_EUNSUPPORTED, "unsupported canonicalization");
    }
    if ((t = tamis__tag_find(tags, count, "q")) != NULL) {
        /* a colon-separated list that must name dns/txt */
        bool ok = false;
        size_t i = 0;
        tamis_slice_t m;
        while (next_item(t->value, &i, &m)) {
            if (slice_ieq(m, "dns/txt") || slice_ieq(m, "dns"))
                ok = true;
        }
        if (!ok)
            FAIL(TAMIS_EUNSUPPORTED, "unsupported query method");
    }

    if (!(t = tamis__tag_find(tags, count, "h")))
        FAIL(TAMIS_EPARSE, "missing h= tag");
    {
        char *h = slice_nofws(arena, t->value);
        if (!h)
            return TAMIS_ENOMEM;
        out->h = tamis_arena_calloc(arena, TAMIS__DKIM_MAX_HFIELDS, sizeof(char *));
        if (!out->h)
            return TAMIS_ENOMEM;
        bool from = false;
        char *save = h;
        for (;;) {
            char *colon = strchr(save, ':');
            if (colon)
                *colon = '\0';
            if (!save[0])
                FAIL(TAMIS_EPARSE, "empty name in h=");
            for (const char *p = save; *p; p++)
                if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
                    FAIL(TAMIS_EPARSE, "invalid name in h=");
            if (out->hn == TAMIS__DKIM_MAX_HFIELDS)
                FAIL(TAMIS_EPARSE, "too many names in h=");
            out->h[out->hn++] = save;
            if (strcasecmp(save, "from") == 0)
                from = true;
            if (!colon)
                break;
            save = colon + 1;
        }
        if (!from)
            FAIL(TAMIS_EPARSE, "From field not signed");
    }

    if (!(t = tamis__tag_find(tags, count, "bh")))
        FAIL(TAMIS_EPARSE, "missing bh= tag");
    {
        unsigned char tmp[3 * (128 / 4) + 3];
        size_t nofws = 0;
        for (size_t i = 0; i < t->value.len; i++)
            nofws += !is_fws(t->value.ptr[i]);
        if (nofws > 128)
            FAIL(TAMIS_EPARSE, "invalid bh= tag");
        long bl = tamis__dkim_b64_decode(t->value.ptr, t->value.len, tmp);
        size_t want = out->alg == TAMIS__DKIM_RSA_SHA1 ? 20 : 32;
        if (bl < 0 || (size_t)bl != want)
            FAIL(TAMIS_EPARSE, "invalid bh= tag");
        memcpy(out->bh, tmp, (size_t)bl);
        out->bhlen = (size_t)bl;
    }
    if (!(t = tamis__tag_find(tags, count, "b")))
        FAIL(TAMIS_EPARSE, "missing b= tag");
    {
        out->b = tamis_arena_alloc(arena, 3 * (t->value.len / 4) + 3);
        if (!out->b)
            return TAMIS_ENOMEM;
        long bl = tamis__dkim_b64_decode(t->value.ptr, t->value.len, out->b);
        if (bl <= 0)
            FAIL(TAMIS_EPARSE, "invalid b= tag");
        out->blen = (size_t)bl;
    }

    if ((t = tamis__tag_find(tags, count, "i")) != NULL) {
        if (!(out->i = tamis_arena_strndup(arena, t->value.ptr, t->value.len)))
            return TAMIS_ENOMEM;
        const char *at = strrchr(out->i, '@');
        if (!at)
            FAIL(TAMIS_EPARSE, "invalid i= tag");
        if (!(out->i_domain = slice_lower(arena, tamis_slice(at + 1, strlen(at + 1)))))
            return TAMIS_ENOMEM;
        size_t il = strlen(out->i_domain), dl = strlen(out->d);
        if (!(il == dl && strcmp(out->i_domain, out->d) == 0) &&
            !(il > dl && out->i_domain[il - dl - 1] == '.' &&
              strcmp(out->i_domain + il - dl, out->d) == 0))
            FAIL(TAMIS_EPARSE, "i= domain not within d=");
    } else {
        out->i_domain = out->d;
    }
    uint64_t u;
    if ((t = tamis__tag_find(tags, count, "l")) != NULL) {
        if (!parse_u64(t->value, 76 / 4, &u))
            FAIL(TAMIS_EPARSE, "invalid l= tag");
        out->has_l = true;
        out->l = u;
    }
    if ((t = tamis__tag_find(tags, count, "t")) != NULL) {
        if (!parse_u64(t->value, 12, &u))
            FAIL(TAMIS_EPARSE, "invalid t= tag");
        out->has_t = true;
        out->t = (int64_t)u;
    }
    if ((t = tamis__tag_find(tags, count, "x")) != NULL) {
        if (!parse_u64(t->value, 12, &u))
            FAIL(TAMIS_EPARSE, "invalid x= tag");
        out->has_x = true;
        out->x = (int64_t)u;
        if (out->has_t && out->x < out->t)
            FAIL(TAMIS_EPARSE, "x= before t=");
    }
    return 0;
}

int tamis__dkim_key_parse(const char *txt, size_t n, tamis_arena_t *arena, tamis__dkim_key_t *out,
                          const char **why)
{
    tamis__tag_t tags[TAMIS__TAG_MAX];
    size_t count;
    memset(out, 0, sizeof(*out));
    out->rsa = true;
    out->sha1_ok = out->sha256_ok = true;
    *why = NULL;
    if (tamis__taglist_parse(txt, n, tags, TAMIS__TAG_MAX, &count))
        FAIL(TAMIS_EPARSE, "key syntax error");
    const tamis__tag_t *t;
    if ((t = tamis__tag_find(tags, count, "v")) != NULL &&
        (t != &tags[0] || !slice_eq(t->value, "DKIM1")))
        FAIL(TAMIS_EPARSE, "invalid key version");
    if ((t = tamis__tag_find(tags, count, "k")) != NULL) {
        if (slice_ieq(t->value, "ed25519"))
            out->rsa = false;
        else if (!slice_ieq(t->value, "rsa"))
            FAIL(TAMIS_EUNSUPPORTED, "unsupported key type");
    }
    if ((t = tamis__tag_find(tags, count, "h")) != NULL) {
        out->sha1_ok = out->sha256_ok = false;
        size_t i = 0;
        tamis_slice_t m;
        while (next_item(t->value, &i, &m)) {
            if (slice_ieq(m, "sha1"))
                out->sha1_ok = true;
            else if (slice_ieq(m, "sha256"))
                out->sha256_ok = true;
        }
    }
    if ((t = tamis__tag_find(tags, count, "s")) != NULL) {
        bool ok = false;
        size_t i = 0;
        tamis_slice_t m;
        while (next_item(t->value, &i, &m)) {
            if (slice_eq(m, "*") || slice_ieq(m, "email"))
                ok = true;
        }
        if (!ok)
            FAIL(TAMIS_EUNSUPPORTED, "key not for email");
    }
    if ((t = tamis__tag_find(tags, count, "t")) != NULL) {
        size_t i = 0;
        tamis_slice_t m;
        while (next_item(t->value, &i, &m)) {
            if (slice_eq(m, "y"))
                out->testing = true;
            else if (slice_eq(m, "s"))
                out->strict_domain = true;
        }
    }
    if (!(t = tamis__tag_find(tags, count, "p")))
        FAIL(TAMIS_EPARSE, "missing p= in key");
    if (t->value.len == 0) {
        out->revoked = true;
        return 0;
    }
    out->key = tamis_arena_alloc(arena, 3 * (t->value.len / 4) + 3);
    if (!out->key)
        return TAMIS_ENOMEM;
    long kl = tamis__dkim_b64_decode(t->value.ptr, t->value.len, out->key);
    if (kl <= 0)
        FAIL(TAMIS_EPARSE, "invalid p= in key");
    out->keylen = (size_t)kl;
    return 0;
}

/* ---- canonicalisation -------------------------------------------------------------------------
 */

typedef struct {
    tamis__canon_sink sink;
    void *ctx;
    uint64_t limit, total;
} body_out_t;

static void emit(body_out_t *o, const char *p, size_t n)
{
    if (o->total < o->limit) {
        uint64_t room = o->limit - o->total;
        size_t k = (uint64_t)n < room ? n : (size_t)room;
        if (k)
            o->sink(o->ctx, p, k);
    }
    o->total += n;
}

uint64_t tamis__dkim_canon_body(const char *body, size_t n, bool relaxed, uint64_t limit,
                                tamis__canon_sink sink, void *ctx)
{
    body_out_t o = {sink, ctx, limit, 0};
    uint64_t blanks = 0; /* empty lines not yet emitted (dropped if nothing follows) */
    size_t i = 0;
    char line[1024];
    while (i < n) {
        const char *nl = memchr(body + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - body) : n; /* exclusive */
        size_t next = nl ? end + 1 : n;
        if (end > i && body[end - 1] == '\r' && nl)
            end--;
        const char *p = body + i;
        size_t len = end - i;
        if (!relaxed) {
            if (len == 0) {
                blanks++;
            } else {
                for (; blanks; blanks--)
                    emit(&o, "\r\n", 2);
                emit(&o, p, len);
                emit(&o, "\r\n", 2);
            }
        } else {
            /* trailing WSP goes, inner WSP runs become one SP */
            while (len && is_wsp(p[len - 1]))
                len--;
            if (len == 0) {
                blanks++;
            } else {
                for (; blanks; blanks--)
                    emit(&o, "\r\n", 2);
                size_t k = 0;
                for (size_t j = 0; j < len; j++) {
                    if (is_wsp(p[j])) {
                        while (j + 1 < len && is_wsp(p[j + 1]))
                            j++;
                        line[k++] = ' ';
                    } else {
                        line[k++] = p[j];
                    }
                    if (k == sizeof(line)) {
                        emit(&o, line, k);
                        k = 0;
                    }
                }
                emit(&o, line, k);
                emit(&o, "\r\n", 2);
            }
        }
        i = next;
    }
    if (!relaxed && o.total == 0)
        emit(&o, "\r\n", 2); /* an empty body is one CRLF in simple */
    return o.total;
}

void tamis__dkim_canon_header(const char *f, size_t n, bool relaxed, bool no_crlf, tamis_buf_t *out)
{
    /* drop the final line end: we add a CRLF ourselves */
    while (n && (f[n - 1] == '\n' || f[n - 1] == '\r'))
        n--;
    if (!relaxed) {
        /* as is, but every line end becomes CRLF */
        for (size_t i = 0; i < n; i++) {
            if (f[i] == '\n') {
                if (i == 0 || f[i - 1] != '\r')
                    tamis_buf_putc(out, '\r');
                tamis_buf_putc(out, '\n');
            } else {
                tamis_buf_putc(out, f[i]);
            }
        }
    } else {
        const char *colon = memchr(f, ':', n);
        size_t nl = colon ? (size_t)(colon - f) : n;
        size_t ne = nl;
        while (ne && is_fws(f[ne - 1]))
            ne--;
        for (size_t i = 0; i < ne; i++)
            tamis_buf_putc(out, (char)tolower((unsigned char)f[i]));
        tamis_buf_putc(out, ':');
        if (colon) {
            size_t i = nl + 1;
            bool pending_sp = false, started = false;
            for (; i < n; i++) {
                char c = f[i];
                if (c == '\r' || c == '\n')
                    continue; /* unfold */
                if (is_wsp(c)) {
                    pending_sp = started;
                    continue;
                }
                if (pending_sp)
                    tamis_buf_putc(out, ' ');
                pending_sp = false;
                started = true;
                tamis_buf_putc(out, c);
            }
        }
    }
    if (!no_crlf)
        tamis_buf_append(out, "\r\n", 2);
}

char *tamis__dkim_strip_b(const char *f, size_t n, tamis_arena_t *arena, size_t *outlen)
{
    char *o = tamis_arena_alloc(arena, n + 1);
    if (!o)
        return NULL;
    const char *colon = memchr(f, ':', n);
    size_t i = colon ? (size_t)(colon - f) + 1 : 0;
    memcpy(o, f, i);
    size_t k = i;
    bool at_tag_start = true;
    while (i < n) {
        char c = f[i];
        if (at_tag_start && !is_fws(c)) {
            at_tag_start = false;
            /* is this the tag "b" (not "bh")? */
            size_t j = i;
            if (c == 'b') {
                j++;
                while (j < n && is_fws(f[j]))
                    j++;
                if (j < n && f[j] == '=') {
                    memcpy(o + k, f + i, j + 1 - i);
                    k += j + 1 - i;
                    i = j + 1;
                    while (i < n && f[i] != ';')
                        i++;
                    /* keep the final line end of the field when b= is the last tag */
                    if (i == n) {
                        size_t e = n;
                        while (e > 0 && (f[e - 1] == '\r' || f[e - 1] == '\n'))
                            e--;
                        memcpy(o + k, f + e, n - e);
                        k += n - e;
                    }
                    continue;
                }
            }
        }
        if (c == ';')
            at_tag_start = true;
        o[k++] = c;
        i++;
    }
    o[k] = '\0';
    *outlen = k;
    return o;
}
