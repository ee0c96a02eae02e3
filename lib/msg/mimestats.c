/*
 * MIME counters and flags as MIMEEval's _check_attachments / _check_mime_header compute them
 * (check_for_mime, check_mime_multipart_ratio, check_abundant_unicode_ratio …): every MIME node
 * contributes its header-level counters, every leaf its raw-line statistics.
 */
#include "msg_int.h"

#include <string.h>
#include <strings.h>

static void add(tamis_msg_t *m, const char *name, double d)
{
    tamis__stat_add(m->arena, &m->mime_stats, name, d);
}

static void set(tamis_msg_t *m, const char *name, double v)
{
    tamis__stat_set(m->arena, &m->mime_stats, name, v);
}

/* The charsets _check_mime_header treats as plain ASCII for mime_base64_encoded_text. */
static bool asciiish(const char *cs)
{
    static const char *const names[] = {
        "us-ascii",         "ansi_x3.4-1968", "iso-ir-6",  "ansi_x3.4-1986",
        "iso_646.irv:1991", "ascii",          "iso646-us", "us",
        "ibm367",           "cp367",          "csascii"};
    if (!*cs)
        return true;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strstr(cs, names[i]))
            return true;
    return false;
}

/* iso-X-Y charsets other than iso-8859-N and iso-2022-jp/kr. */
static bool bad_iso(const char *cs)
{
    const char *p = strstr(cs, "iso-");
    if (!p)
        return false;
    const char *d = strchr(p + 4, '-');
    if (!d || d == p + 4 || !d[1] || d[1] == ' ')
        return false;
    if (!strncmp(p, "iso-8859-", 9) && p[9] >= '0' && p[9] <= '9')
        return false;
    return strncmp(p, "iso-2022-jp", 11) && strncmp(p, "iso-2022-kr", 11);
}

void tamis__mime_stats_init(tamis_msg_t *m)
{
    static const char *const zero[] = {"mime_base64_count",
                                       "mime_base64_encoded_text",
                                       "mime_body_html_count",
                                       "mime_body_text_count",
                                       "mime_faraway_charset",
                                       "mime_missing_boundary",
                                       "mime_multipart_alternative",
                                       "mime_qp_count",
                                       "mime_qp_long_line",
                                       "mime_qp_ratio",
                                       "mime_ascii_text_illegal",
                                       "mime_text_unicode_ratio",
                                       "mime_attachment",
                                       "mime_bad_iso_charset"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        set(m, zero[i], 0);
    set(m, "mime_multipart_ratio", 1.0);
}

void tamis__mime_stats_node(tamis_msg_t *m, const tamis_part_t *p)
{
    const char *ct = p->type, *cte = p->encoding, *cs = p->charset;
    if (!strcmp(ct, "multipart/alternative"))
        set(m, "mime_multipart_alternative", 1);
    if (!strcmp(ct, "text/html"))
        add(m, "mime_body_html_count", 1);
    else if (!strncasecmp(ct, "text", 4))
        add(m, "mime_body_text_count", 1);
    if (strstr(cte, "base64"))
        add(m, "mime_base64_count", 1);
    else if (strstr(cte, "quoted-printable"))
        add(m, "mime_qp_count", 1);
    if (strstr(p->disposition, "attachment"))
        add(m, "mime_attachment", 1);
    if (!strncmp(ct, "text", 4) && strstr(cte, "base64") && asciiish(cs) &&
        strncmp(p->disposition, "attachment", 10) && strncmp(p->disposition, "inline", 6))
        set(m, "mime_base64_encoded_text", 1);
    if (bad_iso(cs))
        set(m, "mime_bad_iso_charset", 1);
}

/* =XX sequences MIMEEval counts as needlessly encoded. */
static bool qp_needless(const char *s)
{
    char a = s[0], b = s[1];
    bool hexb = (b >= '0' && b <= '9') || (b >= 'A' && b <= 'F');
    if (a == '0')
        return b == '9';
    if (a == '3')
        return (b >= '0' && b <= '9') || b == 'A' || b == 'B' || b == 'C' || b == 'E' || b == 'F';
    if (a == '2' || a == '4' || a == '5' || a == '6')
        return hexb;
    if (a == '7')
        return (b >= '0' && b <= '9') || (b >= 'A' && b <= 'E');
    return false;
}

static void qp_line(tamis__mime_acc_t *acc, tamis_msg_t *m, const char *l, size_t n)
{
    if (n >= 6 && !memcmp(l, "SPAM: ", 6))
        return;
    if (n > 79)
        set(m, "mime_qp_long_line", 1);
    acc->qp_bytes += n;
    if (!memchr(l, '=', n))
        return;
    size_t cnt = 0;
    for (size_t i = 0; i + 2 < n; i++)
        if (l[i] == '=' && qp_needless(l + i + 1))
            cnt++;
    if (!cnt)
        return;
    acc->qp_count += cnt;
    /* trailing =09/=20 before end-of-line whitespace are legitimate */
    size_t e = n;
    while (e && (l[e - 1] == '\n' || l[e - 1] == '\r' || l[e - 1] == ' ' || l[e - 1] == '\t'))
        e--;
    size_t trail = 0;
    while (e >= 3 && l[e - 3] == '=' &&
           ((l[e - 2] == '0' && l[e - 1] == '9') || (l[e - 2] == '2' && l[e - 1] == '0'))) {
        trail++;
        e -= 3;
    }
    acc->qp_count -= trail;
}

static bool has_illegal_ascii(const char *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)l[i];
        if (c == 0 || c == 0x0d || c >= 0x80)
            return true;
    }
    return false;
}

/* &#xHHHH; entities (upper-case hex) in a line, and the line length without them. */
static size_t unicode_entities(const char *l, size_t n, size_t *rest)
{
    size_t subs = 0, len = n;
    for (size_t i = 0; i + 8 <= n; i++) {
        if (l[i] != '&' || l[i + 1] != '#' || l[i + 2] != 'x' || l[i + 7] != ';')
            continue;
        bool ok = true;
        for (int k = 3; k < 7; k++)
            ok &= (l[i + k] >= '0' && l[i + k] <= '9') || (l[i + k] >= 'A' && l[i + k] <= 'F');
        if (ok) {
            subs++;
            len -= 8;
            i += 7;
        }
    }
    *rest = len;
    return subs;
}

void tamis__mime_stats_leaf(tamis_msg_t *m, tamis__mime_acc_t *acc, const tamis_part_t *p,
                            const char *raw, size_t n)
{
    bool attach = strstr(p->disposition, "attachment") != NULL;
    bool textish = !strcmp(p->type, "text/plain") || !strcmp(p->type, "text/html");
    tamis__mime_leaf_t *lf = tamis__vec_push(m->arena, &acc->leaves, sizeof(*lf));
    if (lf) {
        lf->type = p->type;
        lf->has_bytes = !attach;
    }
    bool alt = tamis__stat_get(&m->mime_stats, "mime_multipart_alternative", NULL) != 0;
    bool qp = !strcmp(p->encoding, "quoted-printable");
    bool plain = !strcmp(p->type, "text/plain");
    bool ascii_cs = !*p->charset || !strcmp(p->charset, "us-ascii");
    bool unenc = !*p->encoding || !strcmp(p->encoding, "7bit") || !strcmp(p->encoding, "8bit");
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(raw + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - raw) + 1 : n;
        const char *l = raw + i;
        size_t ll = e - i;
        if (alt && !attach && textish && lf)
            lf->bytes += ll;
        if (qp)
            qp_line(acc, m, l, ll);
        if (plain && ascii_cs && has_illegal_ascii(l, ll))
            add(m, "mime_ascii_text_illegal", 1);
        if (plain && unenc) {
            size_t rest;
            acc->unicode_chars += unicode_entities(l, ll, &rest);
            acc->normal_chars += rest;
        }
        i = e;
    }
}

void tamis__mime_stats_finish(tamis_msg_t *m, tamis__mime_acc_t *acc)
{
    if (acc->qp_bytes) {
        set(m, "mime_qp_ratio", (double)acc->qp_count / (double)acc->qp_bytes);
        set(m, "mime_qp_count", (double)acc->qp_count);
        set(m, "mime_qp_bytes", (double)acc->qp_bytes);
    }
    if (acc->normal_chars)
        set(m, "mime_text_unicode_ratio", (double)acc->unicode_chars / (double)acc->normal_chars);
    if (tamis__stat_get(&m->mime_stats, "mime_multipart_alternative", NULL) == 0)
        return;
    const tamis__mime_leaf_t *lf = acc->leaves.v;
    bool have_text = false, have_html = false;
    double text = 0, html = 0;
    for (size_t i = acc->leaves.n; i-- > 0 && !(have_text && have_html);) {
        if (!lf[i].has_bytes)
            continue;
        if (!have_html && !strcmp(lf[i].type, "text/html")) {
            html = (double)lf[i].bytes;
            have_html = true;
        } else if (!have_text && !strcmp(lf[i].type, "text/plain")) {
            text = (double)lf[i].bytes;
            have_text = true;
        }
    }
    if (have_text && have_html && html > 0)
        set(m, "mime_multipart_ratio", text / html);
}
