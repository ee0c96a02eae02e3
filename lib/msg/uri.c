/*
 * URI extraction and canonicalisation (spec-rules §4), following SpamAssassin's
 * PerMsgStatus::_process_text_uri_list (the "what would Thunderbird linkify" regex, run on the
 * rendered body lines), add_uri_detail_list and Util::uri_list_canonicalize. HTML attribute URIs
 * arrive from html.c through tamis__uri_add_html(). TLD validity and registrable domains come from
 * libpsl's built-in public suffix list (SpamAssassin uses its util_rb_* lists; the ICANN part of
 * the PSL is the same registry). International host names get their ASCII (xn--) form with
 * libidn2, called as SpamAssassin's Util::idn_to_ascii calls Net::LibIDN2. The text regex is
 * compiled once with GLib's GRegex (PCRE2).
 */
#include "msg_int.h"

#include <arpa/inet.h>
#include <glib.h>
#include <idn2.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_URI_LENGTH 8192 /* SpamAssassin's MAX_URI_LENGTH */
#define MAX_VARIANTS 32     /* canonical variants kept per raw URI */

/* ---- the linkify regex ---------------------------------------------------------------------- */

#define END_DELIM "><\"`}\\]{[|\\s\\x1b\\xa0"
#define START_DELIM "><\"'`,{[(|\\s\\x1b\\xa0"
#define END_DELIM_EMAIL END_DELIM ",('\\x80-\\xff"
#define END_DELIM_PLUSAT END_DELIM_EMAIL "@"
#define SC_START "[!\"#$&'()*+,/:;<=>?@[\\\\\\]^`{|}~\\s\\x1b\\xa0]"
#define TLD "(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"

static const char uri_pattern[] =
    "(?:\\b|(?<=\\x1b\\(.)|(?<=[" START_DELIM "]))"
    "(?:(?:((?:(?:https?|ftp)://|(?:www\\d{0,2}|ftp)\\.)[^" END_DELIM "]{1,2048})"
    "(?=[" END_DELIM "]|\\z))|"
    "(?:((?:mailto:[^" END_DELIM_EMAIL "]{1,2048}|[^" END_DELIM_PLUSAT "]{1,251}@[^" END_DELIM_EMAIL
    "]{1,251}))(?=[" END_DELIM_EMAIL "]|\\z))|"
    "(?:(?:^|(?<=" SC_START "))(([a-z\\d][a-z\\d._-]{0,251}\\." TLD ")\\.?(?::\\d{1,5})?"
    "(?:/[^" END_DELIM "]{1,2048})?)(?=[" END_DELIM "]|\\z)))";

static pthread_once_t re_once = PTHREAD_ONCE_INIT;
static GRegex *uri_re;

static void re_init(void)
{
    uri_re = g_regex_new(uri_pattern, G_REGEX_CASELESS | G_REGEX_RAW | G_REGEX_OPTIMIZE, 0, NULL);
}

/* ---- international names (Util::idn_to_ascii) ---------------------------------------------- */

static char *ascii_lower(tamis_arena_t *a, const char *s)
{
    char *o = tamis_arena_strdup(a, s);
    for (char *c = o; c && *c; c++)
        *c = g_ascii_tolower(*c);
    return o;
}

/* The dots IDNA and SpamAssassin read as label separators: U+2024, U+3002, U+FF0E, U+FF61,
 * U+FE52, in UTF-8. */
static const char *const alt_dots[] = {"\xe2\x80\xa4", "\xe3\x80\x82", "\xef\xbc\x8e",
                                       "\xef\xbd\xa1", "\xef\xb9\x92"};

static char *normalize_dots(tamis_arena_t *a, const char *s)
{
    size_t n = strlen(s), k = 0;
    char *o = tamis_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n;) {
        bool dot = false;
        for (size_t d = 0; d < sizeof(alt_dots) / sizeof(alt_dots[0]) && !dot; d++)
            if (!strncmp(s + i, alt_dots[d], 3))
                dot = true;
        if (dot) {
            o[k++] = '.';
            i += 3;
        } else {
            o[k++] = s[i++];
        }
    }
    o[k] = '\0';
    return o;
}

/* Host name to its ASCII-compatible form, lower-case (arena). An ASCII name is only lower-cased;
 * UTF-8 (alternative dots normalised) or Latin-1 letters go through IDNA 2008 with NFC and
 * non-transitional mapping; a name that conversion refuses comes back unchanged, and bytes that
 * are neither UTF-8 nor Latin-1 letters are only lower-cased, as SpamAssassin does. */
static char *idn_to_ascii(tamis_arena_t *a, const char *s)
{
    static const char plain[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:[]-";
    size_t n = strlen(s);
    if (strspn(s, plain) == n)
        return ascii_lower(a, s);
    char *in, *refused; /* what IDNA gets, and what comes back when it refuses */
    if (g_utf8_validate(s, (gssize)n, NULL)) {
        in = refused = normalize_dots(a, s);
    } else {
        /* [a-zA-Z0-9\xc0-\xd6\xd8-\xde\xe0-\xf6\xf8-\xfe_.-] only: ISO-8859-1, to UTF-8 */
        in = tamis_arena_alloc(a, 2 * n + 1);
        refused = tamis_arena_strdup(a, s);
        size_t k = 0;
        for (size_t i = 0; in && i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (g_ascii_isalnum(c) || c == '_' || c == '.' || c == '-') {
                in[k++] = (char)c;
            } else if (c >= 0xc0 && c <= 0xfe && c != 0xd7 && c != 0xf7 && c != 0xdf) {
                in[k++] = (char)(0xc0 | (c >> 6));
                in[k++] = (char)(0x80 | (c & 0x3f));
            } else {
                return ascii_lower(a, s);
            }
        }
        if (in)
            in[k] = '\0';
    }
    if (!in || !refused)
        return NULL;
    char *out = NULL;
    char *r = refused;
    if (idn2_to_ascii_8z(in, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) == IDN2_OK)
        r = tamis_arena_strdup(a, out);
    idn2_free(out);
    return r;
}

/* ---- domains -------------------------------------------------------------------------------- */

/* Is the last label a known top-level domain? */
static bool tld_valid(const char *host)
{
    const char *dot = strrchr(host, '.');
    if (!dot || !dot[1])
        return false;
    char buf[80];
    size_t l = strlen(dot + 1);
    if (l >= sizeof(buf))
        return false;
    for (size_t i = 0; i <= l; i++)
        buf[i] = (char)g_ascii_tolower(dot[1 + i]);
    return psl_is_public_suffix2(psl_builtin(), buf, PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE) != 0;
}

/* RegistryBoundaries::is_domain_valid: no whitespace, a dot, a valid TLD. */
static bool domain_valid(const char *d)
{
    for (const char *p = d; *p; p++)
        if (g_ascii_isspace(*p))
            return false;
    return tld_valid(d);
}

/* Util::is_fqdn_valid: 2+ labels of 1-63 [a-z0-9_-] (no '-' at the ends), '_' not in the last
 * two labels, at most 253 bytes (trailing dots ignored). h is lower-case. */
static bool fqdn_valid(const char *h)
{
    size_t n = strlen(h);
    while (n && h[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return false;
    size_t labels = 1;
    for (size_t i = 0; i < n; i++)
        labels += h[i] == '.';
    if (labels < 2)
        return false;
    size_t start = 0, idx = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && h[i] != '.')
            continue;
        size_t len = i - start;
        if (len < 1 || len > 63)
            return false;
        const char *l = h + start;
        bool last_two = labels - idx <= 2;
        for (size_t k = 0; k < len; k++) {
            char c = l[k];
            bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                      (c == '-' && k > 0 && k + 1 < len);
            if (!ok || (c == '_' && last_two))
                return false;
        }
        start = i + 1;
        idx++;
    }
    return true;
}

static bool is_ip(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

/* RegistryBoundaries::uri_to_domain → host and domain (arena), false if none. */
static bool uri_to_domain(tamis_arena_t *a, const char *uri, const char **host, const char **dom)
{
    char *u = tamis_arena_strdup(a, uri);
    if (!u)
        return false;
    for (char *c = u; *c; c++)
        *c = g_ascii_tolower(*c);
    if (!strncmp(u, "javascript:", 11) || !strncmp(u, "cid:", 4) || !strncmp(u, "file:", 5))
        return false;
    char *h;
    if (!strncmp(u, "mailto:", 7)) {
        h = u + 7;
        h[strcspn(h, "?")] = '\0';
        char *at = strchr(h, '@');
        if (!at || strchr(at + 1, '@'))
            return false;
        h = strrchr(h, '@') + 1;
    } else {
        h = u;
        char *p = h;
        while (*p >= 'a' && *p <= 'z')
            p++;
        if (p > h && *p == ':') {
            p++;
            for (int i = 0; i < 2 && *p == '/'; i++)
                p++;
            h = p;
        }
        h[strcspn(h, "/?#")] = '\0';
        char *at = strrchr(h, '@');
        if (at)
            h = at + 1;
        char *colon = strrchr(h, ':');
        if (colon && strspn(colon + 1, "0123456789") == strlen(colon + 1))
            *colon = '\0';
    }
    for (char *p = h; *p; p++)
        if (p[0] == '%' && g_ascii_isxdigit(p[1]) && g_ascii_isxdigit(p[2])) {
            int v = g_ascii_xdigit_value(p[1]) * 16 + g_ascii_xdigit_value(p[2]);
            if (v >= 0x21 && v <= 0x7e)
                return false;
        }
    if (!*h)
        return false;
    h = idn_to_ascii(a, h);
    if (!h)
        return false;
    if (is_ip(h)) {
        *host = *dom = h;
        return true;
    }
    if (!fqdn_valid(h) || !domain_valid(h))
        return false;
    const char *r = psl_registrable_domain(psl_builtin(), h);
    *host = h;
    *dom = r ? r : h;
    return true;
}

/* ---- canonicalisation (Util::uri_list_canonicalize) ----------------------------------------- */

/* ---- redirector_pattern ---------------------------------------------------------------------- */

#define MAX_REDIRECTORS 256

struct tamis_msg_redirectors {
    GRegex *re[MAX_REDIRECTORS];
    size_t n;
};

int tamis_msg_redirectors_new(const char *const *patterns, size_t n, tamis_msg_redirectors_t **out,
                              char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!n)
        return 0;
    tamis_msg_redirectors_t *r = calloc(1, sizeof(*r));
    if (!r)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        GError *e = NULL;
        GRegex *re = r->n < MAX_REDIRECTORS
                         ? g_regex_new(patterns[i], G_REGEX_RAW | G_REGEX_OPTIMIZE, 0, &e)
                         : NULL;
        if (re)
            r->re[r->n++] = re;
        else if (err && errlen && !err[0])
            snprintf(err, errlen, "redirector_pattern %s: %s", patterns[i],
                     e ? e->message : "too many patterns");
        if (e)
            g_error_free(e);
    }
    *out = r;
    return 0;
}

void tamis_msg_redirectors_free(tamis_msg_redirectors_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        g_regex_unref(r->re[i]);
    free(r);
}

typedef struct {
    tamis_arena_t *a;
    const tamis_msg_redirectors_t *redirectors;
    const char *v[MAX_VARIANTS];
    size_t n;
    const char *queue[8]; /* redirect targets still to canonicalise */
    size_t qn;
} variants_t;

static void add_variant(variants_t *vs, const char *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < vs->n; i++)
        if (!strcmp(vs->v[i], s))
            return;
    if (vs->n < MAX_VARIANTS)
        vs->v[vs->n++] = s;
}

static char *cat3(tamis_arena_t *a, const char *x, const char *y, const char *z)
{
    return tamis_arena_printf(a, "%s%s%s", x, y, z);
}

/* Util::url_encode, which in fact decodes %2X-%7X except %20 and %7F. */
static char *url_decode(tamis_arena_t *a, const char *s)
{
    size_t n = strlen(s);
    char *o = tamis_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n + 0 && g_ascii_isxdigit(s[i + 1]) &&
            g_ascii_isxdigit(s[i + 2]) && s[i + 1] >= '2' && s[i + 1] <= '7' &&
            !(s[i + 1] == '2' && s[i + 2] == '0') &&
            !(s[i + 1] == '7' && (s[i + 2] == 'f' || s[i + 2] == 'F'))) {
            o[k++] = (char)(g_ascii_xdigit_value(s[i + 1]) * 16 + g_ascii_xdigit_value(s[i + 2]));
            i += 2;
            continue;
        }
        o[k++] = s[i];
    }
    o[k] = '\0';
    return o;
}

/* &#NN; / &#xNN; for printable ASCII and dot look-alikes. */
static char *decode_ncr(tamis_arena_t *a, const char *s)
{
    size_t n = strlen(s);
    char *o = tamis_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '&' && s[i + 1] == '#') {
            bool hex = s[i + 2] == 'x' || s[i + 2] == 'X';
            char *end;
            unsigned long v = strtoul(s + i + 2 + hex, &end, hex ? 16 : 10);
            bool digits = end > s + i + 2 + hex && (hex || g_ascii_isdigit(s[i + 2]));
            if (digits && *end == ';') {
                char c = 0;
                if (v >= 33 && v <= 126)
                    c = (char)v;
                else if (v == 0x3002 || v == 0xff0e || v == 0xff61)
                    c = '.';
                if (c) {
                    o[k++] = c;
                    i = (size_t)(end - s);
                    continue;
                }
            }
        }
        o[k++] = s[i];
    }
    o[k] = '\0';
    return o;
}

static void canon_mail(variants_t *vs, const char *u)
{
    tamis_arena_t *a = vs->a;
    const char *at = strchr(u, '@');
    if (at) {
        const char *q = strchr(at, '?');
        if (q && q > at + 1)
            add_variant(vs, tamis_arena_strndup(a, u, (size_t)(q - u)));
        const char *amp = at + 1 + strcspn(at + 1, "?&");
        if (*amp == '&' && amp > at + 1)
            add_variant(vs, tamis_arena_strndup(a, u, (size_t)(amp - u)));
    }
    if (strstr(u, "%20")) {
        const char *p = u;
        if (!strncasecmp(p, "mailto:", 7))
            p += 7;
        while (!strncmp(p, "%20", 3))
            p += 3;
        const char *at2 = strchr(p, '@');
        if (at2 && at2 > p && !memchr(p, '@', (size_t)(at2 - p))) {
            size_t l = (size_t)(at2 + 1 - p) + strcspn(at2 + 1, "?&%");
            if (l > (size_t)(at2 + 1 - p))
                add_variant(vs, tamis_arena_printf(a, "mailto:%.*s", (int)l, p));
        }
    }
    const char *lt = strchr(u, '<');
    if (lt && lt < u + strcspn(u, "?&")) {
        const char *gt = strchr(lt, '>');
        const char *at3 = strchr(lt, '@');
        if (gt && at3 && at3 < gt && at3 > lt + 1 && gt > at3 + 1)
            add_variant(vs, tamis_arena_printf(a, "mailto:%.*s", (int)(gt - lt - 1), lt + 1));
    }
}

/* Octet "0x1f" / "017" / "23" → decimal text. */
static bool octet_text(const char *s, size_t n, char *out, size_t outsz)
{
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    unsigned long v;
    if (n > 2 && tmp[0] == '0' && (tmp[1] == 'x' || tmp[1] == 'X'))
        v = strtoul(tmp + 2, NULL, 16);
    else if (tmp[0] == '0' && n > 1 && strspn(tmp, "01234567") == n)
        v = strtoul(tmp, NULL, 8);
    else
        v = strtoul(tmp, NULL, 10);
    snprintf(out, outsz, "%lu", v);
    return true;
}

static bool host_numeric(const char *h)
{
    if (!*h)
        return false;
    for (const char *p = h; *p; p++)
        if (!g_ascii_isxdigit(*p) && *p != '.' && *p != 'x' && *p != 'X')
            return false;
    return true;
}

/* Obfuscated IPv4 hosts → dotted quad variant. */
static void canon_ip_host(variants_t *vs, const char *proto, const char *host, const char *rest)
{
    if (!host_numeric(host))
        return;
    char *parts[4];
    size_t np = 0;
    char *h = tamis_arena_strdup(vs->a, host);
    for (char *save = NULL, *t = h ? strtok_r(h, ".", &save) : NULL; t && np < 5;
         t = strtok_r(NULL, ".", &save))
        parts[np < 4 ? np : 3] = t, np++;
    if (np == 4) {
        char o[4][24];
        for (int i = 0; i < 4; i++)
            if (!octet_text(parts[i], strlen(parts[i]), o[i], sizeof(o[i])))
                return;
        add_variant(
            vs, tamis_arena_printf(vs->a, "%s%s.%s.%s.%s%s", proto, o[0], o[1], o[2], o[3], rest));
        return;
    }
    if (np != 1 || strchr(host, '.'))
        return;
    unsigned long long v;
    if ((host[0] == '0' && (host[1] == 'x' || host[1] == 'X'))) {
        size_t l = strlen(host + 2);
        v = strtoull(host + 2 + (l > 8 ? l - 8 : 0), NULL, 16);
    } else if (strspn(host, "0123456789") == strlen(host)) {
        v = strtoull(host, NULL, 10);
    } else {
        return;
    }
    add_variant(vs, tamis_arena_printf(vs->a, "%s%llu.%llu.%llu.%llu%s", proto, (v >> 24) & 255,
                                       (v >> 16) & 255, (v >> 8) & 255, v & 255, rest));
}

static void queue_target(variants_t *vs, const char *t, size_t l)
{
    if (vs->qn < sizeof(vs->queue) / sizeof(vs->queue[0]))
        vs->queue[vs->qn++] = tamis_arena_strndup(vs->a, t, l);
}

/* Bug 7278: the configured patterns first; the first one that matches with a capture holding a
 * dot gives the target. */
static bool find_redirect_pattern(variants_t *vs, const char *uri)
{
    const tamis_msg_redirectors_t *r = vs->redirectors;
    for (size_t i = 0; r && i < r->n; i++) {
        GMatchInfo *mi = NULL;
        bool found = false;
        if (g_regex_match(r->re[i], uri, 0, &mi)) {
            gint s = -1, e = -1;
            if (g_match_info_fetch_pos(mi, 1, &s, &e) && s >= 0 && e >= s &&
                memchr(uri + s, '.', (size_t)(e - s))) {
                queue_target(vs, uri + s, (size_t)(e - s));
                found = true;
            }
        }
        g_match_info_free(mi);
        if (found)
            return true;
    }
    return false;
}

static void find_redirect(variants_t *vs, const char *rest)
{
    const char *p = rest;
    while ((p = strcasestr(p, "http")) != NULL) {
        const char *q = p + 4;
        if (*q == 's' || *q == 'S')
            q++;
        if (*q != ':') {
            p++;
            continue;
        }
        q++;
        for (int i = 0; i < 2 && *q == '/'; i++)
            q++;
        size_t l = (size_t)(q - p) + strcspn(q, "&#");
        if (memchr(p, '.', l))
            queue_target(vs, p, l);
        return;
    }
}

static void canon_http(variants_t *vs, const char *nuri)
{
    tamis_arena_t *a = vs->a;
    size_t pl = !strncasecmp(nuri, "https://", 8) ? 8 : !strncasecmp(nuri, "http://", 7) ? 7 : 0;
    if (!pl)
        return;
    char *proto = tamis_arena_strndup(a, nuri, pl);
    const char *p = nuri + pl;
    size_t hl = strcspn(p, "/?#");
    const char *at = memchr(p, '@', hl);
    const char *auth_end = at ? at + 1 : p;
    /* host: up to / ? # : */
    size_t hostl = strcspn(auth_end, "/?#:");
    if (!hostl)
        return;
    char *host = tamis_arena_strndup(a, auth_end, hostl);
    const char *rest = auth_end + hostl;
    if (!host)
        return;
    bool http = pl == 7;
    const char *port = "";
    const char *rest_noport = NULL; /* set when a port is written: rest without a default one */
    if (*rest == ':') {
        size_t dl = strspn(rest + 1, "0123456789");
        port = tamis_arena_strndup(a, rest + 1, dl);
        const char *def = http ? "80" : "443";
        size_t defl = strlen(def);
        rest_noport = rest;
        if (!strncmp(rest + 1, def, defl) && !g_ascii_isalnum(rest[1 + defl]) &&
            rest[1 + defl] != '_') {
            rest_noport = rest + 1 + defl;
            add_variant(vs, tamis_arena_printf(a, "%s%s%s", proto, host, rest_noport));
        }
    }
    if (!port || !*port)
        port = http ? "80" : "443";
    /* the ASCII (xn--) form of an international host is a variant of its own */
    char *nhost = idn_to_ascii(a, host);
    char *lhost = ascii_lower(a, host);
    if (!nhost || !lhost)
        return;
    if (strcmp(nhost, lhost) != 0) {
        add_variant(vs, cat3(a, proto, nhost, rest));
        if (rest_noport && *rest_noport)
            add_variant(vs, cat3(a, proto, nhost, rest_noport));
        host = nhost;
    }
    /* control characters in the host */
    bool ctl = false;
    size_t k = 0;
    for (size_t i = 0; host[i]; i++) {
        if ((unsigned char)host[i] <= 0x20) {
            ctl = true;
            continue;
        }
        host[k++] = host[i];
    }
    host[k] = '\0';
    if (ctl)
        add_variant(vs, cat3(a, proto, host, rest));
    char *whole = vs->redirectors ? cat3(a, proto, host, rest) : NULL;
    if (!whole || !find_redirect_pattern(vs, whole))
        find_redirect(vs, rest);
    /* host =~ s/^[^@]+@// only matters when the host itself holds an '@' */
    char *hat = strchr(host, '@');
    if (hat && hat > host) {
        host = hat + 1;
        add_variant(vs, cat3(a, proto, host, rest));
    }
    size_t hl2 = strlen(host);
    while (hl2 && !g_ascii_isalnum(host[hl2 - 1]))
        hl2--;
    if (hl2 < strlen(host)) {
        host[hl2] = '\0';
        add_variant(vs, cat3(a, proto, host, rest));
    }
    if (host_numeric(host)) {
        canon_ip_host(vs, proto, host, rest);
        return;
    }
    /* a bare label: Firefox tries www.<label>.com */
    char *lh = tamis_arena_strdup(a, host);
    for (char *c = lh; c && *c; c++)
        *c = g_ascii_tolower(*c);
    if (!lh || !http || at || strcmp(port, "80") || !strcmp(lh, "localhost"))
        return;
    const char *label = !strncmp(lh, "www.", 4) ? lh + 4 : lh;
    if (!*label || strchr(label, '.'))
        return;
    if (!domain_valid(lh))
        add_variant(vs, tamis_arena_printf(a, "%swww.%s.com%s", proto, label, rest));
}

static void canon_one(variants_t *vs, const char *in)
{
    tamis_arena_t *a = vs->a;
    size_t n = strlen(in);
    char *u = tamis_arena_alloc(a, n + 1);
    if (!u)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i] != '\n' && in[i] != '\r')
            u[k++] = in[i];
    u[k] = '\0';
    while (*u && g_ascii_isspace(*u))
        u++;
    k = strlen(u);
    while (k && g_ascii_isspace(u[k - 1]))
        u[--k] = '\0';
    /* SpamAssassin edits the raw string in place (foreach aliasing), so the cleaned form stands
     * for the raw one in the list */
    add_variant(vs, u);
    if (k <= 1 || strchr("#?&", u[0]) || (u[0] == '/' && u[1] != '/'))
        return;
    size_t colon = strcspn(u, ":");
    if (!strncasecmp(u, "mailto:", 7) || memchr(u, '@', colon)) {
        canon_mail(vs, u);
        return;
    }
    char *nuri = tamis_arena_strdup(a, u);
    if (!nuri)
        return;
    for (char *c = nuri; *c; c++)
        if (*c == '\\')
            *c = '/';
    size_t sl = !strncasecmp(nuri, "https:", 6) ? 6 : !strncasecmp(nuri, "http:", 5) ? 5 : 0;
    if (sl) {
        const char *r = nuri + sl;
        for (int i = 0; i < 2 && *r == '/'; i++)
            r++;
        nuri = tamis_arena_printf(a, "%.*s//%s", (int)sl, nuri, r);
    }
    if (nuri && strchr(nuri, '%'))
        nuri = url_decode(a, nuri);
    if (!nuri)
        return;
    size_t sch = strspn(nuri, "-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    if (!(sch > 0 && nuri[sch] == ':'))
        nuri =
            tamis_arena_printf(a, "%s%s", !strncmp(nuri, "ftp.", 4) ? "ftp://" : "http://", nuri);
    if (!nuri)
        return;
    /* "/" before ? or # right after the host */
    size_t pl = !strncasecmp(nuri, "https://", 8) ? 8 : !strncasecmp(nuri, "http://", 7) ? 7 : 0;
    if (pl) {
        size_t hl = strcspn(nuri + pl, "/?#");
        if (hl && (nuri[pl + hl] == '?' || nuri[pl + hl] == '#'))
            nuri = tamis_arena_printf(a, "%.*s/%s", (int)(pl + hl), nuri, nuri + pl + hl);
    }
    if (nuri && strstr(nuri, "&#"))
        nuri = decode_ncr(a, nuri);
    if (!nuri)
        return;
    if (strcmp(nuri, u) != 0)
        add_variant(vs, nuri);
    canon_http(vs, nuri);
}

/* ---- the URI table -------------------------------------------------------------------------- */

typedef struct {
    GHashTable *by_raw;  /* raw → index + 1 into m->uris */
    GHashTable *strings; /* variant → 1 */
} uri_index_t;

static void index_free(void *p)
{
    uri_index_t *ix = p;
    if (ix->by_raw)
        g_hash_table_destroy(ix->by_raw);
    if (ix->strings)
        g_hash_table_destroy(ix->strings);
}

/* Finds or creates the entry for raw; NULL when over max_uris. */
static tamis_uri_t *uri_entry(tamis_msg_t *m, uri_index_t *ix, const char *raw, size_t len)
{
    char *r = tamis_arena_strndup(m->arena, raw, len > MAX_URI_LENGTH ? MAX_URI_LENGTH : len);
    if (!r)
        return NULL;
    gpointer v = g_hash_table_lookup(ix->by_raw, r);
    if (v)
        return (tamis_uri_t *)m->uris.v + (GPOINTER_TO_SIZE(v) - 1);
    if (m->uris.n >= m->lim.max_uris) {
        tamis__set_flag(m, "uri_limit");
        return NULL;
    }
    tamis_uri_t *u = tamis__vec_push(m->arena, &m->uris, sizeof(*u));
    if (!u) {
        m->oom = TAMIS_ENOMEM;
        return NULL;
    }
    u->raw = r;
    u->host = u->domain = u->anchor = u->html_tag = "";
    if (len > MAX_URI_LENGTH)
        u->flags |= TAMIS_URI_TRUNCATED;
    g_hash_table_insert(ix->by_raw, r, GSIZE_TO_POINTER(m->uris.n));
    return u;
}

/* Computes variants, host and domain; for text URIs a missing domain drops the URI. */
static bool uri_canon(tamis_msg_t *m, tamis_uri_t *u)
{
    variants_t vs = {.a = m->arena, .redirectors = m->lim.redirectors};
    canon_one(&vs, u->raw);
    for (size_t q = 0; q < vs.qn && q < 8; q++)
        canon_one(&vs, vs.queue[q]);
    const char **v = tamis_arena_calloc(m->arena, vs.n ? vs.n : 1, sizeof(*v));
    if (!v) {
        m->oom = TAMIS_ENOMEM;
        return false;
    }
    bool found = false;
    for (size_t i = 0; i < vs.n; i++) {
        v[i] = vs.v[i];
        const char *host, *dom;
        if (!found && uri_to_domain(m->arena, vs.v[i], &host, &dom)) {
            u->host = host;
            u->domain = dom;
            found = true;
        }
    }
    u->variants = v;
    u->variant_count = vs.n;
    return found;
}

static uri_index_t *index_of(tamis_msg_t *m);
void tamis__uri_add_html(tamis_msg_t *m, const char *raw, size_t len, const char *tag,
                         const char *anchor)
{
    uri_index_t *ix = index_of(m);
    if (!ix)
        return;
    tamis_uri_t *u = uri_entry(m, ix, raw, len);
    if (!u)
        return;
    if (!(u->flags & TAMIS_URI_FROM_HTML) && !*u->html_tag)
        u->html_tag = tamis_arena_strdup(m->arena, tag);
    u->flags |= TAMIS_URI_FROM_HTML;
    if (anchor && *anchor && !*u->anchor)
        u->anchor = tamis_arena_strdup(m->arena, anchor);
    if (!u->html_tag)
        u->html_tag = "";
    if (!u->anchor)
        u->anchor = "";
}

/* ---- text URIs ------------------------------------------------------------------------------ */

/* Post-processing of one regex match (the body of the while loop in _process_text_uri_list). */
static void text_match(tamis_msg_t *m, uri_index_t *ix, const char *s, size_t len, int kind)
{
    char *r = tamis_arena_strndup(m->arena, s, len);
    if (!r)
        return;
    /* ")" ends the URI if no "(" precedes it */
    char *cp = strchr(r, ')');
    if (cp && !memchr(r, '(', (size_t)(cp - r)))
        *cp = '\0';
    size_t n = strlen(r);
    while (n && strchr("-~!@#^&*()_+=:;'?,.", r[n - 1]))
        r[--n] = '\0';
    if (kind == 2 && !strchr(r, '@'))
        return;
    if (!strncasecmp(r, "cid:", 4) || !strncasecmp(r, "mid:", 4))
        return;
    /* empty: ^\w+:/{0,2}$ */
    size_t w = strspn(r, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
    if (w && r[w] == ':' && strspn(r + w + 1, "/") == strlen(r + w + 1) && strlen(r + w + 1) <= 2)
        return;
    unsigned flags = TAMIS_URI_FROM_TEXT;
    char *uri = r;
    if (!(!strncasecmp(r, "http:", 5) || !strncasecmp(r, "https:", 6) ||
          !strncasecmp(r, "ftp:", 4) || !strncasecmp(r, "mailto:", 7))) {
        const char *at = strchr(r, '@');
        const char *slash = strchr(r, '/');
        if (!strncasecmp(r, "ftp.", 4)) {
            uri = tamis_arena_printf(m->arena, "ftp://%s", r);
        } else if (!strncasecmp(r, "www", 3) &&
                   (r[3] == '.' || (g_ascii_isdigit(r[3]) &&
                                    (r[4] == '.' || (g_ascii_isdigit(r[4]) && r[5] == '.'))))) {
            uri = tamis_arena_printf(m->arena, "http://%s", r);
        } else if (slash && at && strchr(slash + 1, '@') && slash + 1 < strrchr(r, '@')) {
            uri = tamis_arena_printf(m->arena, "http://%s", r);
        } else if (at) {
            const char *dot = strchr(at + 1, '.');
            if (!dot || dot == at + 1 || strstr(r, "&nbsp;"))
                return;
            char *q = r;
            /* strip common misparses: (skype|e?-?mail)?:+ */
            if (!strncasecmp(q, "skype", 5) && q[5] == ':')
                q += 5;
            else if (!strncasecmp(q, "email", 5) && q[5] == ':')
                q += 5;
            else if (!strncasecmp(q, "e-mail", 6) && q[6] == ':')
                q += 6;
            else if (!strncasecmp(q, "mail", 4) && q[4] == ':')
                q += 4;
            while (*q == ':')
                q++;
            uri = tamis_arena_printf(m->arena, "mailto:%s", q);
        } else {
            if (!strchr(r, '.'))
                return;
            uri = tamis_arena_printf(m->arena, "http://%s", r);
            flags |= TAMIS_URI_UNLINKED;
        }
    }
    if (!uri)
        return;
    if (!strncasecmp(uri, "mailto:", 7)) {
        if (strchr(uri, '%'))
            uri = url_decode(m->arena, uri);
        const char *at = uri ? strchr(uri, '@') : NULL;
        if (!at)
            return;
        char *host = tamis_arena_strndup(m->arena, at + 1, strcspn(at + 1, "?&>"));
        size_t hl = host ? strlen(host) : 0;
        while (hl >= 3 && !strcmp(host + hl - 3, "%20"))
            host[hl -= 3] = '\0';
        if (!host || !domain_valid(host))
            return;
        flags |= TAMIS_URI_MAILTO;
    }
    tamis_uri_t *u = uri_entry(m, ix, uri, strlen(uri));
    if (u)
        u->flags |= flags;
}

/* Every URI form needs "@", ":" (scheme), "www"/"ftp" or a dot before a letter (schemeless
 * TLD): lines without any of them cannot match, and most lines of prose have none. */
static bool may_have_uri(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '@' || c == ':')
            return true;
        if (c == '.' && i + 1 < n && g_ascii_isalpha(s[i + 1]))
            return true;
    }
    return false;
}

static void scan_line(tamis_msg_t *m, uri_index_t *ix, const char *s, size_t n)
{
    if (!may_have_uri(s, n))
        return;
    GMatchInfo *mi = NULL;
    gssize pos = 0;
    while (pos < (gssize)n) {
        if (!g_regex_match_full(uri_re, s, (gssize)n, pos, 0, &mi, NULL)) {
            g_match_info_free(mi);
            return;
        }
        gint st, en;
        g_match_info_fetch_pos(mi, 0, &st, &en);
        for (int g = 1; g <= 3; g++) {
            gint gs, ge;
            if (g_match_info_fetch_pos(mi, g, &gs, &ge) && gs >= 0 && ge > gs) {
                /* schemeless: the host group (4) must end in a known TLD */
                gint hs = -1, he = -1;
                if (g < 3 || (g_match_info_fetch_pos(mi, 4, &hs, &he) && hs >= 0 &&
                              tld_valid(tamis_arena_strndup(m->arena, s + hs, (size_t)(he - hs)))))
                    text_match(m, ix, s + gs, (size_t)(ge - gs), g);
                break;
            }
        }
        g_match_info_free(mi);
        mi = NULL;
        pos = en > st ? en : st + 1;
    }
}

/* ---- finishing ------------------------------------------------------------------------------ */

static uri_index_t *index_of(tamis_msg_t *m)
{
    /* one index per message, created on first use and freed with the arena */
    if (m->uri_index)
        return m->uri_index;
    uri_index_t *ix = tamis_arena_calloc(m->arena, 1, sizeof(*ix));
    if (!ix)
        return NULL;
    ix->by_raw = g_hash_table_new(g_str_hash, g_str_equal);
    ix->strings = g_hash_table_new(g_str_hash, g_str_equal);
    if (tamis_arena_add_cleanup(m->arena, index_free, ix) < 0)
        return NULL;
    m->uri_index = ix;
    return ix;
}

/* _process_dkim_uri_list: every d= of DKIM-Signature / DomainKey-Signature fields becomes a
 * "domainkeys:<d>" entry for URIBL lookups; it has no variants, so uri rules never see it. */
static void dkim_uris(tamis_msg_t *m)
{
    const tamis_header_t *h = m->headers.v;
    for (size_t i = 0; i < m->headers.n; i++) {
        if (strcasecmp(h[i].name, "dkim-signature") && strcasecmp(h[i].name, "domainkey-signature"))
            continue;
        const char *v = h[i].decoded;
        for (const char *p = v; *p; p++) {
            if (*p != 'd' || (p > v && (g_ascii_isalnum(p[-1]) || p[-1] == '_')))
                continue;
            const char *q = p + 1;
            while (g_ascii_isspace(*q))
                q++;
            if (*q != '=')
                continue;
            q++;
            while (g_ascii_isspace(*q))
                q++;
            size_t l = strcspn(q, ";");
            if (!l)
                continue;
            char *d = tamis_arena_alloc(m->arena, l + 1);
            if (!d || m->uris.n >= m->lim.max_uris)
                return;
            size_t k = 0;
            for (size_t j = 0; j < l; j++)
                if (!g_ascii_isspace(q[j]))
                    d[k++] = q[j];
            d[k] = '\0';
            tamis_uri_t *u = tamis__vec_push(m->arena, &m->uris, sizeof(*u));
            if (!u)
                return;
            u->raw = tamis_arena_printf(m->arena, "domainkeys:%s", d);
            char *host = tamis_arena_strdup(m->arena, d);
            for (char *c = host; c && *c; c++)
                *c = g_ascii_tolower(*c);
            u->host = host ? host : "";
            const char *r = host ? psl_registrable_domain(psl_builtin(), host) : NULL;
            u->domain = r ? r : u->host;
            u->anchor = u->html_tag = "";
            u->flags = TAMIS_URI_FROM_DKIM;
            if (!u->raw)
                u->raw = "";
            p = q + l - 1;
        }
    }
}

int tamis__uri_finish(tamis_msg_t *m)
{
    pthread_once(&re_once, re_init);
    uri_index_t *ix = index_of(m);
    if (!ix)
        return TAMIS_ENOMEM;
    if (uri_re) {
        for (size_t i = 0; i < m->lines.n; i++) {
            tamis_slice_t l = ((tamis_slice_t *)m->lines.v)[i];
            scan_line(m, ix, l.ptr, l.len);
        }
    }
    tamis_uri_t *u = m->uris.v;
    size_t keep = 0;
    for (size_t i = 0; i < m->uris.n; i++) {
        bool dom = uri_canon(m, &u[i]);
        /* text URIs need a valid domain (add_uri_detail_list with valid_domain) */
        if (!dom && !(u[i].flags & TAMIS_URI_FROM_HTML))
            continue;
        u[keep++] = u[i];
    }
    m->uris.n = keep;
    for (size_t i = 0; i < keep; i++) {
        for (size_t j = 0; j < u[i].variant_count; j++) {
            const char *v = u[i].variants[j];
            if (g_hash_table_contains(ix->strings, v))
                continue;
            if (m->uri_strings.n >= m->lim.max_uris) {
                tamis__set_flag(m, "uri_limit");
                break;
            }
            const char **slot = tamis__vec_push(m->arena, &m->uri_strings, sizeof(*slot));
            if (!slot)
                return TAMIS_ENOMEM;
            *slot = v;
            g_hash_table_add(ix->strings, (gpointer)v);
        }
    }
    dkim_uris(m);
    return m->oom;
}
