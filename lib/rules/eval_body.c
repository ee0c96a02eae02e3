/*
 * Native body eval: functions, each a C transcription of SpamAssassin 4.0.1's Perl:
 * Plugin/HTMLEval.pm, Plugin/MIMEEval.pm, Plugin/BodyEval.pm, Plugin/ImageInfo.pm and the
 * non-network parts of Plugin/URIEval.pm.
 *
 * SpamAssassin keeps one statistics hash per HTML part and most HTMLEval functions hit when any
 * part qualifies; lib/msg exposes the statistics merged over the message (tamis_msg_html_stat),
 * which is the same for the usual single HTML part. MIME counters come from lib/msg
 * (tamis_msg_mime_stat), computed there as MIMEEval::_check_attachments does.
 */
#include "rules/eval.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpsl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shared helpers, defined in eval_header.c. */
void *tamis__evre_get(void *_Atomic *slot, const char *pat, uint32_t opts);
int tamis__evre_exec(void *code, const char *s, size_t len, size_t start, size_t *ov, size_t nov);
void *tamis__evre_compile(const char *pat, uint32_t opts);
void tamis__evre_free(void *code);
void *tamis__evre_arg(const char *pat, uint32_t opts);
const char *tamis__evx_get(tamis_eval_ctx_t *ctx, const char *expr);
double tamis__evx_num(const char *arg);

typedef struct {
    const char *pat;
    uint32_t opts;
    void *_Atomic code;
} re_t;
#define RE(name, pat, opts) static re_t name = {pat, opts, NULL}
#define RE_CASELESS 0x00000008u  /* PCRE2_CASELESS */
#define RE_MULTILINE 0x00000400u /* PCRE2_MULTILINE */

static bool re_find(re_t *re, const char *s, size_t len, size_t start, size_t *ov, size_t nov)
{
    return s && tamis__evre_exec(tamis__evre_get(&re->code, re->pat, re->opts), s, len, start, ov,
                                 nov) > 0;
}

static bool re_match(re_t *re, const char *s)
{
    return s && re_find(re, s, strlen(s), 0, NULL, 0);
}

static double arg(const char *const *a, size_t n, size_t i)
{
    return i < n ? tamis__evx_num(a[i]) : NAN;
}

/* Perl's "$val $expr" for the restricted expressions HTMLEval accepts: /^[<>=!\-+ 0-9]+$/,
 * i.e. an optional comparison operator and an integer ("!= 0", "< 384", "> 2"). */
static bool eval_cmp(double val, const char *expr)
{
    if (strspn(expr, "<>=!-+ 0123456789") != strlen(expr))
        return false;
    while (*expr == ' ')
        expr++;
    char op[3] = {0};
    size_t k = 0;
    while (k < 2 && strchr("<>=!", *expr) && *expr)
        op[k++] = *expr++;
    char *end;
    double rhs = strtod(expr, &end);
    while (*end == ' ')
        end++;
    if (*end || end == expr)
        return false;
    if (!strcmp(op, "<"))
        return val < rhs;
    if (!strcmp(op, "<="))
        return val <= rhs;
    if (!strcmp(op, ">"))
        return val > rhs;
    if (!strcmp(op, ">="))
        return val >= rhs;
    if (!strcmp(op, "=="))
        return val == rhs;
    if (!strcmp(op, "!="))
        return val != rhs;
    return false;
}

/* ---- HTMLEval -------------------------------------------------------------------------------- */

static bool html_stat(tamis_eval_ctx_t *ctx, const char *name, double *v)
{
    *v = 0;
    return tamis_msg_html_stat(ctx->msg, name, v);
}

static double html_range(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double v;
    if (n < 2 || !html_stat(ctx, a[0], &v))
        return 0;
    double min = arg(a, n, 1);
    if (n < 3 || strcmp(a[2], "inf") == 0)
        return v > min;
    if (isinf(v))
        return 0;
    return v > min && v <= arg(a, n, 2);
}

static double html_image_only(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double len;
    if (n < 2 || !tamis_msg_html_tag_seen(ctx->msg, "img") || !html_stat(ctx, "length", &len))
        return 0;
    return len > arg(a, n, 0) && len <= arg(a, n, 1);
}

static double html_image_ratio(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double nsl, area;
    if (n < 2 || !html_stat(ctx, "non_space_len", &nsl) || !html_stat(ctx, "image_area", &area) ||
        area <= 0)
        return 0;
    double r = nsl / area;
    return r > arg(a, n, 0) && r <= arg(a, n, 1);
}

static double html_tag_exists(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    return n && tamis_msg_html_tag_seen(ctx->msg, a[0]);
}

static double html_tag_balance(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    if (n < 2)
        return 0;
    for (const char *p = a[0]; *p; p++)
        if (!isalnum((unsigned char)*p))
            return 0;
    if (!*a[0] || !tamis_msg_html_tag_seen(ctx->msg, a[0]))
        return 0;
    return eval_cmp((double)tamis_msg_html_tag_balance(ctx->msg, a[0]), a[1]);
}

static double html_test(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double v;
    if (!n)
        return 0;
    if (html_stat(ctx, a[0], &v))
        return v != 0;
    /* HTML.pm's "html" flag is published as html_message by lib/msg */
    return strcmp(a[0], "html") == 0 && html_stat(ctx, "html_message", &v) && v != 0;
}

static double html_eval(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double v;
    if (n < 2 || !html_stat(ctx, a[0], &v))
        return 0;
    return eval_cmp(v, a[1]);
}

static double html_text_match_common(tamis_eval_ctx_t *ctx, const char *const *a, size_t n,
                                     bool want)
{
    if (n < 2)
        return 0;
    const char *text = tamis_msg_html_text(ctx->msg, a[0]);
    if (!text || !*text)
        return 0;
    void *re = tamis__evre_arg(a[1], 0);
    if (!re)
        return 0;
    bool hit = tamis__evre_exec(re, text, strlen(text), 0, NULL, 0) > 0;
    return hit == want;
}

static double html_text_match(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    return html_text_match_common(ctx, a, n, true);
}

static double html_text_not_match(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    return html_text_match_common(ctx, a, n, false);
}

/* Characters of a UTF-8 string (Perl's length on decoded text). */
static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static double html_title_subject_ratio(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const char *subject = tamis__evx_get(ctx, "Subject");
    if (!*subject || n < 1)
        return 0;
    const char *title = tamis_msg_html_text(ctx->msg, "title");
    if (!title || !*title)
        return 0;
    return (double)utf8_len(title) / (double)utf8_len(subject) > arg(a, n, 0);
}

/* ok_locales defaults to "all", which makes SpamAssassin's faraway-charset tests return 0;
 * tamis_conf_t has no ok_locales setting yet. */
static double html_charset_faraway(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)ctx;
    (void)n;
    return 0;
}

static double check_for_faraway_charset(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)ctx;
    (void)n;
    return 0;
}

static double check_iframe_src(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)n;
    for (size_t i = 0; i < tamis_msg_uri_count(ctx->msg); i++) {
        const tamis_uri_t *u = tamis_msg_uri_at(ctx->msg, i);
        if (u && u->html_tag && strcmp(u->html_tag, "iframe") == 0)
            return 1;
    }
    return 0;
}

/* ---- URIEval --------------------------------------------------------------------------------- */

RE(re_ip_uri, "^https?:/*(?:[^\\@/]+\\@)?\\d+\\.\\d+\\.\\d+\\.\\d+", RE_CASELESS);
RE(re_ip_https, "^https:/*(?:[^\\@/]+\\@)?\\d+\\.\\d+\\.\\d+\\.\\d+", RE_CASELESS);
RE(re_https, "https:", RE_CASELESS);

static double check_https_ip_mismatch(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)n;
    for (size_t i = 0; i < tamis_msg_uri_count(ctx->msg); i++) {
        const tamis_uri_t *u = tamis_msg_uri_at(ctx->msg, i);
        if (!u || !(u->flags & TAMIS_URI_FROM_HTML) || !u->anchor || !re_match(&re_ip_uri, u->raw))
            continue;
        if (!re_match(&re_ip_https, u->anchor) && re_match(&re_https, u->anchor))
            return 1;
    }
    return 0;
}

static bool is_ip_literal(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* RegistryBoundaries::trim_domain + is_domain_valid, with the public suffix list standing in
 * for SpamAssassin's util_rb_* lists: the registrable domain in buf, or NULL. */
static const char *registrable(const char *host, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", host);
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *r = psl_registrable_domain(psl_builtin(), buf);
    return r && strchr(r, '.') ? r : NULL;
}

RE(re_href_host, "^https?://([^/:?#]+)", RE_CASELESS);
RE(re_anchor_https, "https://([^\\s/:?#]+)", RE_CASELESS);

/* HTTPSMismatch::check_https_http_mismatch: an http(s) link whose anchor text shows an https
 * URL of another domain; anchors counts the qualifying links. */
static double check_https_http_mismatch(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double minanchors = n > 0 ? arg(a, n, 0) : 1, maxanchors = n > 1 ? arg(a, n, 1) : NAN;
    if (!(minanchors != 0))
        minanchors = 1;
    size_t anchors = 0;
    bool hit = false;
    for (size_t i = 0; i < tamis_msg_uri_count(ctx->msg); i++) {
        const tamis_uri_t *u = tamis_msg_uri_at(ctx->msg, i);
        size_t ov[4];
        if (!u || !(u->flags & TAMIS_URI_FROM_HTML) || !u->anchor || !*u->anchor ||
            !re_find(&re_href_host, u->raw, strlen(u->raw), 0, ov, 4))
            continue;
        char host[256], b1[256], b2[256];
        snprintf(host, sizeof host, "%.*s", (int)(ov[3] - ov[2]), u->raw + ov[2]);
        const char *dom = is_ip_literal(host) ? NULL : registrable(host, b1, sizeof b1);
        if (!dom)
            continue;
        anchors++;
        if (hit || !re_find(&re_anchor_https, u->anchor, strlen(u->anchor), 0, ov, 4))
            continue;
        char https[256];
        snprintf(https, sizeof https, "%.*s", (int)(ov[3] - ov[2]), u->anchor + ov[2]);
        const char *hd = is_ip_literal(https) ? https : registrable(https, b2, sizeof b2);
        if (hd && strcmp(dom, hd) != 0)
            hit = true;
    }
    return hit && (double)anchors >= minanchors &&
           (isnan(maxanchors) || (double)anchors < maxanchors);
}

static double check_uri_truncated(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)n;
    for (size_t i = 0; i < tamis_msg_uri_count(ctx->msg); i++) {
        const tamis_uri_t *u = tamis_msg_uri_at(ctx->msg, i);
        if (u && (u->flags & TAMIS_URI_TRUNCATED))
            return 1;
    }
    return 0;
}

/* ---- MIMEEval -------------------------------------------------------------------------------- */

static bool mime_stat(tamis_eval_ctx_t *ctx, const char *name, double *v)
{
    *v = 0;
    return tamis_msg_mime_stat(ctx->msg, name, v);
}

RE(re_b64_ascii_cs,
   "(?:us-ascii|ansi_x3\\.4-1968|iso-ir-6|ansi_x3\\.4-1986|iso_646\\.irv:1991|ascii|iso646-us|us|"
   "ibm367|cp367|csascii)",
   0);
RE(re_bad_iso, "iso-\\S+-\\S+\\b", RE_CASELESS);
RE(re_good_iso, "iso-(?:8859-\\d{1,2}|2022-(?:jp|kr))\\b", 0);
RE(re_cd_inline, "^(?:attachment|inline)", 0);

/* The counters MIMEEval::_check_mime_header derives from each part's own header fields. They are
 * computed here from lib/msg's part list so that they follow SpamAssassin exactly; returns false
 * for a name this function does not know (then lib/msg's statistics answer). */
static bool mime_header_stat(const tamis_msg_t *m, const char *name, double *out)
{
    static const char *const known[] = {"mime_base64_count",         "mime_attachment",
                                        "mime_base64_encoded_text",  "mime_bad_iso_charset",
                                        "mime_body_html_count",      "mime_body_text_count",
                                        "mime_multipart_alternative"};
    size_t which = sizeof known / sizeof *known;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(name, known[i]) == 0)
            which = i;
    if (which == sizeof known / sizeof *known)
        return false;
    double v[7] = {0};
    for (size_t i = 0; i < tamis_msg_part_count(m); i++) {
        const tamis_part_t *p = tamis_msg_part_at(m, i);
        const char *cte = p->encoding, *cd = p->disposition, *cs = p->charset;
        bool b64 = strstr(cte, "base64") != NULL;
        v[0] += b64;
        v[1] += *cd && strstr(cd, "attachment");
        if (!strncmp(p->type, "text", 4) && b64 && (!*cs || re_match(&re_b64_ascii_cs, cs)) &&
            !(*cd && re_match(&re_cd_inline, cd)))
            v[2] = 1;
        if (re_match(&re_bad_iso, cs) && !re_match(&re_good_iso, cs))
            v[3] = 1;
        if (!strcmp(p->type, "text/html"))
            v[4]++;
        else if (!strncmp(p->type, "text", 4))
            v[5]++;
        if (!strcmp(p->type, "multipart/alternative"))
            v[6] = 1;
    }
    *out = v[which];
    return true;
}

static bool qp_stat(tamis_eval_ctx_t *ctx, const char *name, double *out);

static double check_for_mime(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double v;
    if (!n)
        return 0;
    if (mime_header_stat(ctx->msg, a[0], &v) || qp_stat(ctx, a[0], &v))
        return v != 0;
    return mime_stat(ctx, a[0], &v) && v != 0;
}

RE(re_ct_html, "^text/html", RE_CASELESS);

static double check_for_mime_html(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)n;
    if (re_match(&re_ct_html, tamis__evx_get(ctx, "Content-Type")))
        return 1;
    double v;
    return mime_header_stat(ctx->msg, "mime_body_html_count", &v) && v > 0;
}

static double check_for_mime_html_only(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)n;
    if (re_match(&re_ct_html, tamis__evx_get(ctx, "Content-Type")))
        return 1;
    double h, t;
    mime_header_stat(ctx->msg, "mime_body_html_count", &h);
    mime_header_stat(ctx->msg, "mime_body_text_count", &t);
    return h > 0 && t == 0;
}

/* mime_multipart_ratio of MIMEEval::_check_attachments: bytes of the last text/plain part over
 * bytes of the last text/html part (non-attachments, counted once a multipart/alternative was
 * seen); 1.0 when either is missing. Computed here because it needs part order. */
static double multipart_ratio(const tamis_msg_t *m)
{
    bool alt = false;
    double text = -1, html = -1;
    for (size_t i = 0; i < tamis_msg_part_count(m); i++) {
        const tamis_part_t *p = tamis_msg_part_at(m, i);
        alt |= strcmp(p->type, "multipart/alternative") == 0;
        if (!p->is_leaf || strstr(p->disposition, "attachment"))
            continue;
        bool is_text = strcmp(p->type, "text/plain") == 0,
             is_html = strcmp(p->type, "text/html") == 0;
        double bytes = alt && (is_text || is_html) ? (double)p->raw_bytes : 0;
        /* the search runs from the last part backwards: later parts win */
        if (is_html)
            html = bytes;
        else if (is_text)
            text = bytes;
    }
    return alt && text >= 0 && html > 0 ? text / html : 1.0;
}

static double check_mime_multipart_ratio(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    if (n < 2)
        return 0;
    double v = multipart_ratio(ctx->msg);
    return v >= arg(a, n, 0) && v < arg(a, n, 1);
}

static double check_msg_parse_flags(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    return n && tamis_msg_parse_flag(ctx->msg, a[n - 1]);
}

/* Leaf text/plain parts whose raw lines are their decoded bytes (no base64/QP). */
static bool plain_unencoded(const tamis_part_t *p)
{
    return p->is_leaf && strcmp(p->type, "text/plain") == 0 && strcmp(p->encoding, "base64") != 0 &&
           strcmp(p->encoding, "quoted-printable") != 0;
}

/* mime_ascii_text_illegal: a us-ascii (or charset-less) text/plain part with NUL, CR or 8-bit
 * bytes in its raw lines. SpamAssassin reads lines with CRLF already turned into LF, so only a
 * bare CR counts. Base64/QP raw lines are ASCII by construction. */
static double check_for_ascii_text_illegal(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)n;
    for (size_t i = 0; i < tamis_msg_part_count(ctx->msg); i++) {
        const tamis_part_t *p = tamis_msg_part_at(ctx->msg, i);
        if (!plain_unencoded(p) || (*p->charset && strcmp(p->charset, "us-ascii") != 0))
            continue;
        const unsigned char *d = (const unsigned char *)p->decoded.ptr;
        for (size_t k = 0; d && k < p->decoded.len; k++) {
            if (d[k] == 0 || d[k] >= 0x80)
                return 1;
            if (d[k] == '\r' && (k + 1 >= p->decoded.len || d[k + 1] != '\n'))
                return 1;
        }
    }
    return 0;
}

/* mime_text_unicode_ratio: "&#xHHHH;" entities (upper-case hex) per other character in
 * text/plain parts sent as 7bit/8bit or without a transfer encoding. */
static double unicode_ratio(const tamis_msg_t *m)
{
    double normal = 0, uni = 0;
    for (size_t i = 0; i < tamis_msg_part_count(m); i++) {
        const tamis_part_t *p = tamis_msg_part_at(m, i);
        if (!p->is_leaf || strcmp(p->type, "text/plain") != 0 ||
            !(!*p->encoding || !strcmp(p->encoding, "7bit") || !strcmp(p->encoding, "8bit")))
            continue;
        const char *d = p->decoded.ptr;
        size_t len = p->decoded.len;
        for (size_t k = 0; d && k < len; k++) {
            if (d[k] == '&' && k + 8 <= len && d[k + 1] == '#' && d[k + 2] == 'x' &&
                strspn(d + k + 3, "0123456789ABCDEF") >= 4 && d[k + 7] == ';') {
                uni++;
                k += 7;
                continue;
            }
            if (d[k] == '\r' && k + 1 < len && d[k + 1] == '\n')
                continue; /* SpamAssassin sees LF line ends */
            normal++;
        }
    }
    return normal ? uni / normal : 0;
}

RE(re_unicode_ratio_arg, "^\\d{0,3}\\.\\d{1,3}$", 0);

static double check_abundant_unicode_ratio(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    if (!n || !re_match(&re_unicode_ratio_arg, a[0]))
        return 0;
    return unicode_ratio(ctx->msg) >= arg(a, n, 0);
}

static double check_qp_ratio(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    double v;
    if (!n)
        return 0;
    qp_stat(ctx, "mime_qp_ratio", &v);
    return v >= arg(a, n, 0);
}

RE(re_caps_cs,
   "^[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|georgianps|pt154|tis)[-_a-z0-"
   "9]*$",
   RE_CASELESS);
RE(re_ct_cs_dq, "charset=\"([^\"]+)\"", RE_CASELESS);
RE(re_ct_cs_sq, "charset='([^']+)'", RE_CASELESS);
RE(re_ct_cs, "charset=(\\S+)", RE_CASELESS);

/* body_charset_is_likely_to_fp: the top Content-Type charset or any part charset. */
static bool charset_likely_fp(tamis_eval_ctx_t *ctx)
{
    const char *ct = tamis__header_get(ctx, "Content-Type");
    if (ct) {
        size_t ov[4];
        re_t *forms[] = {&re_ct_cs_dq, &re_ct_cs_sq, &re_ct_cs};
        for (size_t i = 0; i < 3; i++) {
            if (!re_find(forms[i], ct, strlen(ct), 0, ov, 4))
                continue;
            char *cs = tamis_arena_strndup(ctx->arena, ct + ov[2], ov[3] - ov[2]);
            if (cs && re_match(&re_caps_cs, cs))
                return true;
            break;
        }
    }
    for (size_t i = 0; i < tamis_msg_part_count(ctx->msg); i++) {
        const tamis_part_t *p = tamis_msg_part_at(ctx->msg, i);
        bool letter = false;
        for (const char *c = p->charset; c && *c; c++)
            letter |= isalpha((unsigned char)*c) != 0;
        if (letter && re_match(&re_caps_cs, p->charset))
            return true;
    }
    return false;
}

RE(re_inner_space, "\\S\\s+\\S", 0);
RE(re_b64_lines, "^(?:[A-Za-z0-9+/=]{60,76} ){2}", 0);
RE(re_iso2022, "\\x1b\\$B.*\\x1b\\(B", 0x00000020u /* PCRE2_DOTALL */);

/* The uppercase percentage check_for_uppercase computes (memoised; 0 when unknown). */
static double uppercase_pct(tamis_eval_ctx_t *ctx)
{
    static const char key = 0;
    double *m = tamis__memo_get(ctx, &key);
    if (m)
        return *m;
    double pct = 0;
    if (!charset_likely_fp(ctx)) {
        size_t len = 0, lower = 0, upper = 0;
        for (size_t i = 0; i < tamis_msg_body_line_count(ctx->msg); i++) {
            tamis_slice_t l = tamis_msg_body_line(ctx->msg, i);
            char *s = tamis_arena_strndup(ctx->arena, l.ptr, l.len);
            if (!s || !re_match(&re_inner_space, s) || re_match(&re_b64_lines, s))
                continue;
            size_t ov[2], slen = strlen(s);
            /* s/\x1b\$B.*\x1b\(B//gs: greedy, so one removal covers all */
            if (re_find(&re_iso2022, s, slen, 0, ov, 2)) {
                memmove(s + ov[0], s + ov[1], slen - ov[1] + 1);
                slen = strlen(s);
            }
            len += slen;
            for (const char *p = s; *p; p++) {
                lower += (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9');
                upper += *p >= 'A' && *p <= 'Z';
            }
        }
        if (len >= 200 && upper + lower > 0)
            pct = (double)upper / (double)(upper + lower) * 100;
    }
    m = tamis_arena_alloc(ctx->arena, sizeof *m);
    if (m) {
        *m = pct;
        (void)tamis__memo_set(ctx, &key, m);
    }
    return pct;
}

static double check_for_uppercase(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    if (n < 2)
        return 0;
    double u = uppercase_pct(ctx);
    return u > arg(a, n, 0) && u <= arg(a, n, 1);
}

static double check_ma_non_text(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    (void)a;
    (void)n;
    size_t np = tamis_msg_part_count(ctx->msg);
    for (size_t i = 0; i < np; i++) {
        const tamis_part_t *ma = tamis_msg_part_at(ctx->msg, i);
        if (strcmp(ma->type, "multipart/alternative") != 0)
            continue;
        /* find_parts(qr/./, 1, 0): the direct children that are leaves */
        for (size_t k = i + 1; k < np; k++) {
            const tamis_part_t *p = tamis_msg_part_at(ctx->msg, k);
            if (p->depth <= ma->depth)
                break;
            if (p->depth != ma->depth + 1 || !p->is_leaf)
                continue;
            if (strcmp(p->type, "multipart/related") == 0 ||
                strcmp(p->type, "application/rtf") == 0 || strncmp(p->type, "text/", 5) == 0)
                continue;
            return 1;
        }
    }
    return 0;
}

/* ---- raw part lines: check_base64_length, mime_qp_* -------------------------------------------
 *
 * SpamAssassin measures the raw (still encoded) lines of parts, which lib/msg's part model does
 * not keep. Each part's first header field is found again in the pristine message, in document
 * order, and its body runs from the blank line after its header block to the next boundary
 * line. A part that cannot be found is skipped. */

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m)
{
    return m && m <= n ? memmem(hay, n, needle, m) : NULL;
}

/* Where each part's raw body starts in the pristine message (NULL if not found); memoised. */
static const char **part_starts(tamis_eval_ctx_t *ctx)
{
    static const char key = 0;
    const char **v = tamis__memo_get(ctx, &key);
    if (v)
        return v;
    const tamis_msg_t *m = ctx->msg;
    size_t np = tamis_msg_part_count(m);
    v = tamis_arena_calloc(ctx->arena, np + 1, sizeof *v);
    if (!v)
        return NULL;
    tamis_slice_t pr = tamis_msg_pristine(m), body = tamis_msg_pristine_body(m);
    const char *end = pr.ptr + pr.len;
    const char *cursor = body.ptr ? body.ptr : pr.ptr;
    for (size_t i = 0; i < np; i++) {
        const tamis_part_t *p = tamis_msg_part_at(m, i);
        if (i == 0) {
            v[i] = cursor;
            continue;
        }
        if (!p->header_count)
            continue;
        const tamis_slice_t h = p->headers[0].pristine;
        const char *at = find_bytes(cursor, (size_t)(end - cursor), h.ptr, h.len);
        const char *b1 = at ? find_bytes(at, (size_t)(end - at), "\n\n", 2) : NULL;
        const char *b2 = at ? find_bytes(at, (size_t)(end - at), "\n\r\n", 3) : NULL;
        if (b2 && (!b1 || b2 < b1))
            v[i] = b2 + 3;
        else if (b1)
            v[i] = b1 + 2;
        if (v[i])
            cursor = v[i];
    }
    (void)tamis__memo_set(ctx, &key, v);
    return v;
}

/* The boundary parameters of the message's multipart Content-Type fields, NULL-terminated
 * (memoised; an empty list when none could be read). */
static const char *const *boundaries(tamis_eval_ctx_t *ctx)
{
    static const char key = 0;
    const char **v = tamis__memo_get(ctx, &key);
    if (v)
        return v;
    const tamis_msg_t *m = ctx->msg;
    size_t np = tamis_msg_part_count(m), n = 0;
    v = tamis_arena_calloc(ctx->arena, np + 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < np; i++) {
        const tamis_part_t *p = tamis_msg_part_at(m, i);
        if (strncmp(p->type, "multipart/", 10) != 0)
            continue;
        for (size_t k = 0; k < p->header_count; k++) {
            const char *d = p->headers[k].decoded;
            if (strcasecmp(p->headers[k].name, "Content-Type") != 0 || !d)
                continue;
            const char *b = strcasestr(d, "boundary=");
            if (!b)
                continue;
            b += 9;
            size_t l = *b == '"' ? strcspn(++b, "\"") : strcspn(b, "; \t");
            if (l)
                v[n++] = tamis_arena_strndup(ctx->arena, b, l);
            break;
        }
    }
    (void)tamis__memo_set(ctx, &key, v);
    return v;
}

/* Does the line at p open with "--" and one of the boundaries? Without any known boundary every
 * "--" line counts. */
static bool boundary_line(const char *p, const char *end, const char *const *bounds)
{
    if (end - p < 2 || p[0] != '-' || p[1] != '-')
        return false;
    if (!bounds || !bounds[0])
        return true;
    for (size_t i = 0; bounds[i]; i++) {
        size_t l = strlen(bounds[i]);
        if ((size_t)(end - p - 2) >= l && !memcmp(p + 2, bounds[i], l))
            return true;
    }
    return false;
}

typedef void (*raw_line_fn)(void *st, const char *line, size_t len, bool nl);

/* Calls fn for each raw line from p: len excludes the line end (CRLF counts as LF), nl tells
 * whether SpamAssassin keeps a "\n" (the line before a boundary loses it). In a multipart child
 * a boundary line ends the part; other lines starting with "--" (dashed rules) do not. */
static void raw_lines(tamis_eval_ctx_t *ctx, const char *p, const char *end, bool child,
                      raw_line_fn fn, void *st)
{
    const char *const *bounds = child ? boundaries(ctx) : NULL;
    while (p < end) {
        if (child && boundary_line(p, end, bounds))
            break;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t len = (size_t)(e - p);
        if (len && p[len - 1] == '\r')
            len--;
        const char *next = nl ? nl + 1 : end;
        bool before = child && boundary_line(next, end, bounds);
        fn(st, p, len, nl && !before);
        p = next;
    }
}

static void max_line(void *st, const char *line, size_t len, bool nl)
{
    (void)line;
    size_t *best = st, l = len + nl;
    *best = l > *best ? l : *best;
}

static size_t base64_length(tamis_eval_ctx_t *ctx)
{
    const char **starts = part_starts(ctx);
    tamis_slice_t pr = tamis_msg_pristine(ctx->msg);
    size_t best = 0;
    for (size_t i = 0; starts && i < tamis_msg_part_count(ctx->msg); i++) {
        const tamis_part_t *p = tamis_msg_part_at(ctx->msg, i);
        if (!starts[i] || !p->is_leaf || strcmp(p->encoding, "base64") != 0 ||
            strcmp(p->type, "application/ics") == 0)
            continue;
        raw_lines(ctx, starts[i], pr.ptr + pr.len, i > 0, max_line, &best);
    }
    return best;
}

typedef struct {
    double bytes, count;
    bool long_line;
} qp_t;

/* One QP line of _check_attachments: long lines, bytes, and "=XX" escapes of characters that
 * did not need encoding, minus trailing "=20"/"=09". */
static void qp_line(void *st, const char *line, size_t len, bool nl)
{
    qp_t *q = st;
    if (len >= 6 && memcmp(line, "SPAM: ", 6) == 0)
        return;
    size_t l = len + nl;
    q->long_line |= l > 79;
    q->bytes += (double)l;
    double n = 0;
    for (size_t i = 0; i + 2 < len; i++) {
        if (line[i] != '=')
            continue;
        char a = line[i + 1], b = line[i + 2];
        bool hex = isdigit((unsigned char)b) || (b >= 'A' && b <= 'F');
        bool hit = (a == '0' && b == '9') || (a == '3' && hex && b != 'D') ||
                   ((a == '2' || a == '4' || a == '5' || a == '6') && hex) ||
                   (a == '7' && hex && b != 'F');
        if (hit) {
            n++;
            i += 2;
        }
    }
    if (n > 0) {
        size_t e = len;
        while (e && isspace((unsigned char)line[e - 1]))
            e--;
        size_t k = 0;
        while (e >= 3 && line[e - 3] == '=' &&
               ((line[e - 2] == '2' && line[e - 1] == '0') ||
                (line[e - 2] == '0' && line[e - 1] == '9'))) {
            e -= 3;
            k++;
        }
        n -= (double)k;
    }
    q->count += n;
}

/* mime_qp_count (encoded escapes when any QP line exists, else the number of QP parts),
 * mime_qp_long_line and mime_qp_ratio, as MIMEEval computes them. */
static bool qp_stat(tamis_eval_ctx_t *ctx, const char *name, double *out)
{
    bool count = !strcmp(name, "mime_qp_count"), lng = !strcmp(name, "mime_qp_long_line"),
         ratio = !strcmp(name, "mime_qp_ratio");
    if (!count && !lng && !ratio)
        return false;
    const char **starts = part_starts(ctx);
    tamis_slice_t pr = tamis_msg_pristine(ctx->msg);
    qp_t q = {0, 0, false};
    double parts = 0;
    for (size_t i = 0; i < tamis_msg_part_count(ctx->msg); i++) {
        const tamis_part_t *p = tamis_msg_part_at(ctx->msg, i);
        parts += strstr(p->encoding, "quoted-printable") != NULL;
        if (starts && starts[i] && p->is_leaf && !strcmp(p->encoding, "quoted-printable"))
            raw_lines(ctx, starts[i], pr.ptr + pr.len, i > 0, qp_line, &q);
    }
    *out = count ? (q.bytes ? q.count : parts)
           : lng ? q.long_line
                 : (q.bytes ? q.count / q.bytes : 0);
    return true;
}

static double check_base64_length(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    static const char key = 0;
    if (n < 1)
        return 0;
    double *m = tamis__memo_get(ctx, &key);
    if (!m && (m = tamis_arena_alloc(ctx->arena, sizeof *m)) != NULL) {
        *m = (double)base64_length(ctx);
        (void)tamis__memo_set(ctx, &key, m);
    }
    double len = m ? *m : 0, max = arg(a, n, 1);
    if (!isnan(max) && len > max)
        return 0;
    return len >= arg(a, n, 0);
}

/* ---- BodyEval -------------------------------------------------------------------------------- */

static double check_body_length(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    if (!n)
        return 0;
    return (double)tamis_msg_pristine_body(ctx->msg).len <= arg(a, n, 0);
}

/* The ratio check_blank_line_ratio computes over the decoded text parts (rawbody chunks). */
static double blank_line_ratio(tamis_eval_ctx_t *ctx, double minlines)
{
    size_t blank = 0, nlines = 0;
    for (size_t i = 0; i < tamis_msg_rawbody_count(ctx->msg); i++) {
        tamis_slice_t c = tamis_msg_rawbody_chunk(ctx->msg, i);
        /* split(/^/m, $chunk, -1): one piece per line; a final piece without "\n" counts */
        size_t start = 0;
        while (start < c.len) {
            const char *nl = memchr(c.ptr + start, '\n', c.len - start);
            size_t end = nl ? (size_t)(nl - c.ptr) + 1 : c.len;
            bool nonblank = false;
            for (size_t k = start; k < end && !nonblank; k++)
                nonblank = !isspace((unsigned char)c.ptr[k]);
            nlines++;
            blank += !nonblank;
            start = end;
        }
    }
    return (double)nlines < minlines ? -1 : 100.0 * (double)blank / (double)nlines;
}

static double check_blank_line_ratio(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    if (n < 2)
        return 0;
    double min = arg(a, n, 0), max = arg(a, n, 1), minlines = n > 2 ? arg(a, n, 2) : 1;
    if (isnan(minlines) || minlines < 1)
        minlines = 1;
    double r = blank_line_ratio(ctx, minlines);
    return (min == 0 && r <= max) || (r > min && r <= max);
}

static double check_tvd_vertical_words(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    if (n < 2)
        return 0;
    double min = arg(a, n, 0), max = arg(a, n, 1);
    if (max >= 100)
        max = 101;
    double best = -1;
    for (size_t i = 0; i < tamis_msg_body_line_count(ctx->msg); i++) {
        tamis_slice_t l = tamis_msg_body_line(ctx->msg, i);
        if (l.len <= 5)
            continue;
        size_t spaces = 0;
        for (size_t k = 0; k < l.len; k++)
            spaces += l.ptr[k] == ' ';
        size_t nonspaces = l.len - spaces;
        double pct = (spaces > nonspaces || nonspaces == 0)
                         ? 100
                         : floor(100.0 * (double)spaces / (double)nonspaces);
        if (pct > best)
            best = pct;
    }
    return best >= min && best < max;
}

RE(re_stock_line, "^\\s*([^:\\s][^:\\n]{2,29})\\s*:\\s*\\S", RE_MULTILINE);
RE(re_stock_key,
   "(^trad(?:e|ing)date|company(?:name)?|s\\w?(?:t\\w?o\\w?c\\w?k|y\\w?m(?:\\w?b\\w?o\\w?l)?)|t(?:"
   "arget|icker)|(?:opening|current)p(?:rice)?|p(?:rojected|osition)|expectations|weeks?high|"
   "marketperformance|(?:year|week|month|day|price)(?:target|estimates?)|sector|r(?:ecommendation|"
   "ating))$",
   0);

static double check_stock_info(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    const tamis_part_t *part = NULL;
    for (size_t i = 0; i < tamis_msg_part_count(ctx->msg) && !part; i++) {
        const tamis_part_t *p = tamis_msg_part_at(ctx->msg, i);
        if (strcmp(p->type, "text/plain") == 0)
            part = p;
    }
    size_t hits = 0;
    const char *seen[32];
    if (part && part->decoded.ptr) {
        size_t len = part->decoded.len, pos = 0, ov[4];
        while (pos < len && re_find(&re_stock_line, part->decoded.ptr, len, pos, ov, 4)) {
            char key[64];
            size_t k = 0;
            for (size_t i = ov[2]; i < ov[3] && k < sizeof key - 1; i++) {
                char c = (char)tolower((unsigned char)part->decoded.ptr[i]);
                if (c >= 'a' && c <= 'z')
                    key[k++] = c;
            }
            key[k] = '\0';
            size_t kv[4];
            if (re_find(&re_stock_key, key, k, 0, kv, 4) && hits < 32) {
                const char *m = tamis_arena_strndup(ctx->arena, key + kv[2], kv[3] - kv[2]);
                bool dup = !m;
                for (size_t j = 0; j < hits && !dup; j++)
                    dup = strcmp(seen[j], m) == 0;
                if (!dup)
                    seen[hits++] = m;
            }
            pos = ov[1] > pos ? ov[1] : pos + 1;
        }
    }
    double min = arg(a, n, 0);
    return min == 0 || (double)hits >= min;
}

/* ---- multipart_alternative_difference --------------------------------------------------------
 *
 * SpamAssassin compares the words of the rendered text/html part of a multipart/alternative with
 * those of its text parts. lib/msg renders all text parts into one body text, so the HTML words
 * are recovered as (words of the body text) minus (words of the decoded text parts). That is only
 * exact when the body text consists of that one alternative's parts; any other shape, or a
 * subtraction that goes negative (charset conversion, truncation), gives "no difference", which
 * is SpamAssassin's value when it finds nothing to compare. */

typedef struct {
    const char *p;
    size_t len;
    long total, text;
} word_t;

typedef struct {
    word_t *v;
    size_t cap, n;
} words_t;

#define MADIFF_MAX_WORDS 200000

static uint64_t word_hash(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static word_t *word_slot(words_t *w, const char *p, size_t len)
{
    size_t i = (size_t)word_hash(p, len) & (w->cap - 1);
    while (w->v[i].p && !(w->v[i].len == len && memcmp(w->v[i].p, p, len) == 0))
        i = (i + 1) & (w->cap - 1);
    if (!w->v[i].p) {
        if (w->n + 1 >= w->cap / 2)
            return NULL; /* table full: the caller gives up */
        w->v[i].p = p, w->v[i].len = len, w->n++;
    }
    return &w->v[i];
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Adds (sign > 0: to total, else to text) the /\w/-bearing whitespace-separated words of s. */
static bool add_words(words_t *w, const char *s, size_t len, bool text)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space(s[i]))
            i++;
        size_t start = i;
        bool word = false;
        while (i < len && !is_space(s[i])) {
            word |= isalnum((unsigned char)s[i]) || s[i] == '_';
            i++;
        }
        if (i == start || !word)
            continue;
        word_t *x = word_slot(w, s + start, i - start);
        if (!x)
            return false;
        if (text)
            x->text++;
        else
            x->total++;
    }
    return true;
}

static size_t count_tokens(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += !is_space(s[i]) && (i == 0 || is_space(s[i - 1]));
    return n;
}

/* The alternative's index if the message has exactly one and every rendered text part is in it. */
static bool single_alternative(const tamis_msg_t *m, size_t *alt)
{
    size_t np = tamis_msg_part_count(m), found = 0;
    for (size_t i = 0; i < np; i++)
        if (strcmp(tamis_msg_part_at(m, i)->type, "multipart/alternative") == 0)
            *alt = i, found++;
    if (found != 1)
        return false;
    unsigned depth = tamis_msg_part_at(m, *alt)->depth;
    for (size_t i = 0; i < np; i++) {
        const tamis_part_t *p = tamis_msg_part_at(m, i);
        bool rendered =
            p->is_leaf && (!strcmp(p->type, "text/plain") || !strcmp(p->type, "text/html"));
        bool inside = i > *alt;
        for (size_t k = *alt + 1; inside && k <= i; k++)
            inside = tamis_msg_part_at(m, k)->depth > depth;
        if (rendered && !inside)
            return false;
    }
    return true;
}

/* out: [0] madiff, [1] madiff_html, [2] madiff_text. */
static void madiff(tamis_eval_ctx_t *ctx, double out[3])
{
    static const char key = 0;
    double *m = tamis__memo_get(ctx, &key);
    if (m) {
        memcpy(out, m, 3 * sizeof *out);
        return;
    }
    out[0] = out[1] = out[2] = 0;
    size_t alt = 0;
    tamis_slice_t body = tamis_msg_body_text(ctx->msg);
    size_t ntok = count_tokens(body.ptr, body.len);
    if (single_alternative(ctx->msg, &alt) && ntok < MADIFF_MAX_WORDS) {
        words_t w = {0};
        w.cap = 64;
        while (w.cap < 4 * (ntok + 1))
            w.cap *= 2;
        w.v = tamis_arena_calloc(ctx->arena, w.cap, sizeof *w.v);
        bool ok = w.v && add_words(&w, body.ptr, body.len, false);
        unsigned depth = tamis_msg_part_at(ctx->msg, alt)->depth;
        for (size_t i = alt + 1; ok && i < tamis_msg_part_count(ctx->msg); i++) {
            const tamis_part_t *p = tamis_msg_part_at(ctx->msg, i);
            if (p->depth <= depth)
                break;
            if (p->is_leaf && !strncmp(p->type, "text/", 5) && strcmp(p->type, "text/html") != 0)
                ok = add_words(&w, p->decoded.ptr, p->decoded.len, true);
        }
        size_t orig = 0, text = 0, left = 0;
        for (size_t i = 0; ok && i < w.cap; i++) {
            const word_t *x = &w.v[i];
            if (!x->p)
                continue;
            long html = x->total - x->text;
            if (html < 0) /* the text parts are not in the body text as decoded: give up */
                ok = false;
            orig += html > 0, text += x->text > 0;
            left += html > 0 && !(x->text > 0 && html - x->text < 1);
        }
        if (ok && orig == 0 && tamis_msg_html_tag_seen(ctx->msg, "img"))
            orig = left = 1; /* the "\n" pseudo-word of an image-only HTML part */
        if (ok && orig > 0) {
            out[1] = (double)orig, out[2] = (double)text;
            out[0] = (double)left / (double)orig * 100;
        }
    }
    m = tamis_arena_alloc(ctx->arena, 3 * sizeof *m);
    if (m) {
        memcpy(m, out, 3 * sizeof *m);
        (void)tamis__memo_set(ctx, &key, m);
    }
}

static double multipart_alternative_difference(tamis_eval_ctx_t *ctx, const char *const *a,
                                               size_t n)
{
    if (n < 2)
        return 0;
    double d[3];
    madiff(ctx, d);
    double min = arg(a, n, 0);
    return (min == 0 || d[0] > min) && (strcmp(a[1], "undef") == 0 || d[0] <= arg(a, n, 1));
}

static double multipart_alternative_difference_count(tamis_eval_ctx_t *ctx, const char *const *a,
                                                     size_t n)
{
    if (n < 2)
        return 0;
    double d[3];
    madiff(ctx, d);
    if (!(d[1] > arg(a, n, 1)))
        return 0;
    return d[2] / d[1] > arg(a, n, 0);
}

/* ---- ImageInfo ------------------------------------------------------------------------------- */

enum { IMG_GIF, IMG_PNG, IMG_JPEG, IMG_TYPES };
static const char *const img_names[IMG_TYPES] = {"gif", "png", "jpeg"};

typedef struct {
    double pc[IMG_TYPES + 1]; /* pixel coverage per type, then all */
    double count[IMG_TYPES + 1];
    struct dim {
        unsigned type;
        unsigned long h, w;
    } dims[64];
    size_t ndims;
    const char *names[64];
    size_t nnames;
} images_t;

static unsigned long be16(const unsigned char *p)
{
    return (unsigned long)p[0] << 8 | p[1];
}

static unsigned long be32(const unsigned char *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

/* Width and height of a GIF/PNG/JPEG as ImageInfo's %get_details reads them; false if none. */
static bool image_dims(unsigned type, const unsigned char *d, size_t len, unsigned long *w,
                       unsigned long *h)
{
    *w = *h = 0;
    if (type == IMG_GIF) {
        if (len < 10 || memcmp(d, "GIF8", 4) != 0 || (d[4] != '7' && d[4] != '9') || d[5] != 'a')
            return false;
        *w = d[6] | (unsigned long)d[7] << 8, *h = d[8] | (unsigned long)d[9] << 8;
    } else if (type == IMG_PNG) {
        if (len < 8 || memcmp(d, "\x89PNG\r\n\x1a\n", 8) != 0)
            return false;
        /* SA advances 8 bytes per chunk header without skipping chunk data */
        for (size_t pos = 8; pos + 8 <= len; pos += 8) {
            unsigned long clen = be32(d + pos);
            if (memcmp(d + pos + 4, "IEND", 4) == 0)
                break;
            if (memcmp(d + pos + 4, "IHDR", 4) == 0 && clen == 13) {
                if (pos + 16 <= len)
                    *w = be32(d + pos + 8), *h = be32(d + pos + 12);
                break;
            }
        }
    } else {
        if (len < 2 || d[0] != 0xff || d[1] != 0xd8)
            return false;
        for (size_t pos = 2; pos + 4 <= len;) {
            unsigned mark = d[pos + 1];
            unsigned long blen = be16(d + pos + 2);
            if (d[pos] != 0xff || mark == 0xda || mark == 0xd9 || blen < 2)
                break;
            pos += 4;
            if ((mark >= 0xc0 && mark <= 0xc3) || (mark >= 0xc5 && mark <= 0xc7) ||
                (mark >= 0xc9 && mark <= 0xcb) || (mark >= 0xcd && mark <= 0xcf)) {
                if (pos + 5 <= len)
                    *h = be16(d + pos + 1), *w = be16(d + pos + 3);
                break;
            }
            pos += blen - 2 < len - pos ? blen - 2 : len - pos;
        }
    }
    return *w && *h;
}

static int image_type(const char *t)
{
    if (!strcmp(t, "image/gif"))
        return IMG_GIF;
    if (!strcmp(t, "image/png"))
        return IMG_PNG;
    if (!strcmp(t, "image/jpeg") || !strcmp(t, "image/jpg"))
        return IMG_JPEG;
    return -1;
}

static void add_image(images_t *im, int t, const tamis_part_t *p)
{
    unsigned long w, h;
    im->count[t]++;
    if (!image_dims((unsigned)t, (const unsigned char *)p->decoded.ptr, p->decoded.len, &w, &h))
        return;
    im->pc[t] += (double)w * (double)h;
    bool dup = false;
    for (size_t i = 0; i < im->ndims && !dup; i++)
        dup = im->dims[i].type == (unsigned)t && im->dims[i].w == w && im->dims[i].h == h;
    if (!dup && im->ndims < 64)
        im->dims[im->ndims++] = (struct dim){(unsigned)t, h, w};
    if (p->filename && *p->filename && im->nnames < 64)
        im->names[im->nnames++] = p->filename;
}

/* _get_images (memoised). */
static images_t *images(tamis_eval_ctx_t *ctx)
{
    static const char key = 0;
    images_t *im = tamis__memo_get(ctx, &key);
    if (im)
        return im;
    im = tamis_arena_calloc(ctx->arena, 1, sizeof *im);
    if (!im)
        return NULL;
    for (size_t i = 0; i < tamis_msg_part_count(ctx->msg); i++) {
        const tamis_part_t *p = tamis_msg_part_at(ctx->msg, i);
        int t = image_type(p->type);
        if (t < 0 || !p->is_leaf || strcmp(p->encoding, "base64") != 0)
            continue;
        add_image(im, t, p);
    }
    for (int t = 0; t < IMG_TYPES; t++) {
        im->pc[IMG_TYPES] += im->pc[t];
        im->count[IMG_TYPES] += im->count[t];
    }
    (void)tamis__memo_set(ctx, &key, im);
    return im;
}

/* Index of "gif"/"png"/"jpeg"/"all"; -1 for an unknown type (SA's undefined value). */
static int type_index(const char *t)
{
    for (int i = 0; i < IMG_TYPES; i++)
        if (!strcmp(t, img_names[i]))
            return i;
    return strcmp(t, "all") == 0 ? IMG_TYPES : -1;
}

/* result_check */
static bool result_check(double min, double max, double v, bool nomaxequal)
{
    if (v < min)
        return false;
    if (!isnan(max) && v > max)
        return false;
    return !(nomaxequal && v == max);
}

static double image_count(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    images_t *im = n >= 2 ? images(ctx) : NULL;
    int t = n ? type_index(a[0]) : -1;
    return im && t >= 0 && result_check(arg(a, n, 1), arg(a, n, 2), im->count[t], false);
}

static double pixel_coverage(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    images_t *im = n >= 2 ? images(ctx) : NULL;
    int t = n ? type_index(a[0]) : -1;
    return im && t >= 0 && result_check(arg(a, n, 1), arg(a, n, 2), im->pc[t], false);
}

static double image_to_text_ratio(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    images_t *im = n >= 3 ? images(ctx) : NULL;
    int t = n ? type_index(a[0]) : -1;
    if (!im || t < 0 || im->pc[t] <= 0)
        return 0;
    size_t textlen = 0;
    if (ctx->rule_type == TAMIS_RULE_EVAL_RAWBODY) {
        for (size_t i = 0; i < tamis_msg_rawbody_count(ctx->msg); i++)
            textlen += tamis_msg_rawbody_chunk(ctx->msg, i).len;
    } else {
        for (size_t i = 0; i < tamis_msg_body_line_count(ctx->msg); i++)
            textlen += tamis_msg_body_line(ctx->msg, i).len;
    }
    if (textlen == 0)
        return 0;
    return result_check(arg(a, n, 1), arg(a, n, 2), (double)textlen / im->pc[t], true);
}

static bool dim_of_type(const struct dim *d, int t)
{
    return t == IMG_TYPES || d->type == (unsigned)t;
}

static double image_size_exact(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    images_t *im = n >= 3 ? images(ctx) : NULL;
    int t = n ? type_index(a[0]) : -1;
    for (size_t i = 0; im && t >= 0 && i < im->ndims; i++)
        if (dim_of_type(&im->dims[i], t) && (double)im->dims[i].h == arg(a, n, 1) &&
            (double)im->dims[i].w == arg(a, n, 2))
            return 1;
    return 0;
}

static double image_size_range(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    images_t *im = n >= 3 ? images(ctx) : NULL;
    int t = n ? type_index(a[0]) : -1;
    double minh = arg(a, n, 1), minw = arg(a, n, 2), maxh = arg(a, n, 3), maxw = arg(a, n, 4);
    for (size_t i = 0; im && t >= 0 && i < im->ndims; i++) {
        const struct dim *d = &im->dims[i];
        if (!dim_of_type(d, t) || (double)d->h < minh || (double)d->w < minw)
            continue;
        if ((!isnan(maxh) && (double)d->h > maxh) || (!isnan(maxw) && (double)d->w > maxw))
            continue;
        return 1;
    }
    return 0;
}

static double image_named(tamis_eval_ctx_t *ctx, const char *const *a, size_t n)
{
    images_t *im = n ? images(ctx) : NULL;
    for (size_t i = 0; im && i < im->nnames; i++)
        if (strcmp(im->names[i], a[0]) == 0)
            return 1;
    return 0;
}

/* ---- the table ------------------------------------------------------------------------------- */

#define B(name)                                                                                    \
    {                                                                                              \
#name, name, TAMIS_EVAL_BODY | TAMIS_EVAL_RAWBODY, false                                   \
    }
#define A(name)                                                                                    \
    {                                                                                              \
#name, name, TAMIS_EVAL_ANY, false                                                         \
    }

const tamis_eval_def_t tamis__evals_body[] = {
    /* HTMLEval */
    B(html_range),
    B(html_image_only),
    B(html_image_ratio),
    B(html_tag_exists),
    B(html_tag_balance),
    B(html_test),
    B(html_eval),
    B(html_text_match),
    B(html_text_not_match),
    B(html_title_subject_ratio),
    B(html_charset_faraway),
    B(check_iframe_src),
    /* URIEval */
    A(check_https_ip_mismatch),
    A(check_uri_truncated),
    B(check_https_http_mismatch),
    /* MIMEEval */
    A(check_for_mime),
    A(check_for_mime_html),
    A(check_for_mime_html_only),
    A(check_mime_multipart_ratio),
    A(check_msg_parse_flags),
    A(check_for_ascii_text_illegal),
    A(check_abundant_unicode_ratio),
    A(check_qp_ratio),
    A(check_for_faraway_charset),
    B(check_for_uppercase),
    A(check_ma_non_text),
    /* BodyEval */
    A(check_body_length),
    B(check_blank_line_ratio),
    B(multipart_alternative_difference),
    B(multipart_alternative_difference_count),
    {"tvd_vertical_words", check_tvd_vertical_words, TAMIS_EVAL_BODY | TAMIS_EVAL_RAWBODY, false},
    B(check_stock_info),
    B(check_base64_length),
    /* ImageInfo */
    A(image_count),
    A(pixel_coverage),
    A(image_to_text_ratio),
    A(image_size_exact),
    A(image_size_range),
    A(image_named),
    {NULL, NULL, 0, false},
};
