/*
 * rewrite: the PROCESS output, as PerMsgStatus::rewrite_mail builds it (spec-protocol §6).
 *
 * Ham, or spam with report_safe 0: the original header lines minus old X-Spam-* fields (but
 * X-Spam-Prev-* stay), the added X-Spam-* headers on top (after a leading Return-Path), Subject/
 * From/To rewritten for spam, X-Spam-Prev-<field> copies at the end, then the untouched body.
 * Spam with report_safe 1/2: a new MIME message carrying the report and the original.
 *
 * Generated text is written with LF and converted to the message's line ending; the body and the
 * encapsulated original are never converted (SA bug 5250).
 */
#include "scan_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- helpers --------------------------------------------------------------------------------- */

/* Expanded tag of a rewrite_header setting with its newlines replaced (by rep, or removed). */
static char *rewrite_tag(const tamis_scan_t *s, const char *tmpl, const char *rep)
{
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS__SCAN_MAX_EXPANSION);
    tamis__scan_replace_tags(s, tmpl, strlen(tmpl), &b);
    char *out = NULL;
    if (!b.err) {
        out = tamis_arena_alloc(s->arena, b.len + 1);
        if (out) {
            size_t w = 0;
            for (size_t i = 0; i < b.len; i++) {
                if (b.data[i] != '\n')
                    out[w++] = b.data[i];
                else if (*rep)
                    out[w++] = *rep;
            }
            out[w] = '\0';
        }
    }
    tamis_buf_free(&b);
    return out;
}

/* s/(?:\t\Q(${tag})\E)?$/\t(${tag})/ : appends "\t(tag)" before the final newline, unless it is
 * already there. */
static void append_comment(tamis_buf_t *out, tamis_slice_t v, const char *tag)
{
    size_t n = v.len;
    size_t end = (n && v.ptr[n - 1] == '\n') ? n - 1 : n;
    size_t tl = strlen(tag);
    if (end >= tl + 3 && v.ptr[end - tl - 3] == '\t' && v.ptr[end - tl - 2] == '(' &&
        v.ptr[end - 1] == ')' && memcmp(v.ptr + end - tl - 1, tag, tl) == 0) {
        tamis_buf_append(out, v.ptr, n);
        return;
    }
    tamis_buf_append(out, v.ptr, end);
    tamis_buf_printf(out, "\t(%s)", tag);
    tamis_buf_append(out, v.ptr + end, n - end);
}

/* xorshift64*: the boundary needs only to be unpredictable enough not to collide. */
static uint32_t next_rand(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Does some line of text equal b or b + "--" (/^\Qb\E(?:--)?$/m)? */
static bool boundary_in(const char *t, size_t n, const char *b)
{
    size_t bl = strlen(b);
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(t + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - t) : n;
        size_t l = e - i;
        if ((l == bl || (l == bl + 2 && t[i + bl] == '-' && t[i + bl + 1] == '-')) &&
            memcmp(t + i, b, bl) == 0)
            return true;
        i = e + 1;
    }
    return false;
}

static char *make_boundary(tamis_scan_t *s)
{
    uint64_t st = s->boundary_seed ? s->boundary_seed
                                   : ((uint64_t)s->now << 20) ^ (uint64_t)(uintptr_t)s ^
                                         (uint64_t)tamis_now_ms();
    if (!st)
        st = 0x9E3779B97F4A7C15ULL;
    tamis_buf_t b;
    tamis_buf_init(&b, 4096);
    tamis_buf_printf(&b, "----------=_%08X.%08X", (unsigned)(uint32_t)s->now, next_rand(&st));
    size_t olen = s->pr.headers_len;
    for (int tries = 0; tries < 64; tries++) {
        bool hit = boundary_in(s->pr.headers, olen, b.data) ||
                   boundary_in(s->pr.body.ptr, s->pr.body.len, b.data);
        if (!hit)
            break;
        tamis_buf_printf(&b, "/%08X", next_rand(&st));
    }
    char *r = b.err ? NULL : tamis_arena_strdup(s->arena, b.data);
    tamis_buf_free(&b);
    return r;
}

/* ---- report_safe 1/2 ------------------------------------------------------------------------ */

typedef struct {
    tamis_slice_t v;
    bool set;
} field_t;

static void put_field(tamis_buf_t *out, const char *name, const field_t *f)
{
    if (!f->set)
        return;
    tamis_buf_printf(out, "%s: ", name);
    tamis_buf_append(out, f->v.ptr, f->v.len);
}

/* report_safe_copy_headers: Received copies go above everything, the rest at the end. */
static void copy_headers(tamis_scan_t *s, tamis_buf_t *top, tamis_buf_t *out)
{
    static const char *const done[] = {"from", "to", "cc", "subject", "date", "message-id"};
    const tamis_conf_t *c = s->conf;
    for (size_t i = 0; i < c->report_safe_copy_header_count; i++) {
        const char *h = c->report_safe_copy_headers[i];
        bool skip = false;
        for (size_t k = 0; k < sizeof done / sizeof *done; k++)
            skip |= strcasecmp(h, done[k]) == 0;
        for (size_t k = 0; k < i; k++)
            skip |= strcasecmp(h, c->report_safe_copy_headers[k]) == 0;
        if (skip)
            continue;
        tamis_buf_t *dst = strcasecmp(h, "received") == 0 ? top : out;
        size_t pos = 0;
        tamis_slice_t v;
        while (tamis__pristine_field_next(&s->pr, h, &pos, &v, s->arena)) {
            tamis_buf_printf(dst, "%s: ", h);
            tamis_buf_append(dst, v.ptr, v.len);
        }
    }
}

static field_t get_field(tamis_scan_t *s, const char *name)
{
    field_t f = {{"", 0}, false};
    f.set = tamis__pristine_field_last(&s->pr, name, &f.v, s->arena);
    return f;
}

/* The field with its rewrite: Subject prefixed with the tag, From/To given a "\t(tag)" comment;
 * a missing field is created ("\n"). The result lives in the arena. */
static void rewrite_field(tamis_scan_t *s, field_t *f, const char *setting, bool comment,
                          const char *nl_rep)
{
    const char *tag = rewrite_tag(s, setting, nl_rep);
    if (!tag)
        return;
    if (!f->set)
        f->v = tamis_slice("\n", 1);
    f->set = true;
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS__SCAN_MAX_EXPANSION);
    size_t tl = strlen(tag);
    if (comment) {
        append_comment(&b, f->v, tag);
    } else if (f->v.len > tl && strncmp(f->v.ptr, tag, tl) == 0 && f->v.ptr[tl] == ' ') {
        tamis_buf_append(&b, f->v.ptr, f->v.len); /* s/^(?:\Q$tag\E )?/$tag / */
    } else {
        tamis_buf_printf(&b, "%s ", tag);
        tamis_buf_append(&b, f->v.ptr, f->v.len);
    }
    char *v = b.err ? NULL : tamis_arena_alloc(s->arena, b.len + 1);
    if (v) {
        memcpy(v, b.data, b.len + 1);
        f->v = tamis_slice(v, b.len);
    }
    tamis_buf_free(&b);
}

/* report_safe: the rules' subjprefix goes in front of the Subject, before the rewrite tag. */
static void subject_prefix_field(tamis_scan_t *s, field_t *f)
{
    const char *tag = s->result.subjprefix ? rewrite_tag(s, s->result.subjprefix, " ") : NULL;
    if (!tag)
        return;
    tamis_slice_t v = f->set ? f->v : tamis_slice("\n", 1);
    char *n = tamis_arena_printf(s->arena, "%s%.*s", tag, (int)v.len, v.ptr);
    if (n) {
        f->v = tamis_slice(n, strlen(n));
        f->set = true;
    }
}

/* The encapsulating headers (before the MIME structure), LF line ends. */
static void safe_headers(tamis_scan_t *s, tamis_buf_t *out)
{
    const tamis_conf_t *c = s->conf;
    field_t from = get_field(s, "From"), to = get_field(s, "To"), cc = get_field(s, "Cc");
    field_t subject = get_field(s, "Subject"), msgid = get_field(s, "Message-Id");
    field_t date = get_field(s, "Date");
    if (c->rewrite_subject) {
        subject_prefix_field(s, &subject);
        rewrite_field(s, &subject, c->rewrite_subject, false, " ");
    }
    if (c->rewrite_to)
        rewrite_field(s, &to, c->rewrite_to, true, " ");
    if (c->rewrite_from)
        rewrite_field(s, &from, c->rewrite_from, true, "");

    tamis_buf_t top, body;
    tamis_buf_init(&top, TAMIS__SCAN_MAX_OUTPUT);
    tamis_buf_init(&body, TAMIS__SCAN_MAX_OUTPUT);
    put_field(&body, "From", &from);
    put_field(&body, "To", &to);
    put_field(&body, "Cc", &cc);
    put_field(&body, "Subject", &subject);
    put_field(&body, "Date", &date);
    put_field(&body, "Message-Id", &msgid);
    tamis__scan_added_headers(s, true, &body);
    copy_headers(s, &top, &body);

    char date_now[64];
    tamis__scan_rfc822_date(date_now, sizeof date_now, s->now);
    tamis_buf_printf(out,
                     "Received: from localhost by %s\n\twith SpamAssassin (version 4.0.1);\n\t%s\n",
                     s->hostname ? s->hostname : "localhost", date_now);
    tamis_buf_append(out, top.data ? top.data : "", top.len);
    tamis_buf_append(out, body.data ? body.data : "", body.len);
    if (top.err || body.err)
        out->err = TAMIS_ENOMEM;
    tamis_buf_free(&top);
    tamis_buf_free(&body);
}

static int rewrite_report_safe(tamis_scan_t *s, tamis_buf_t *out)
{
    const tamis_conf_t *c = s->conf;
    const char *report = tamis__scan_get_report(s);
    if (!report)
        return TAMIS_ENOMEM;
    const char *boundary = make_boundary(s);
    if (!boundary)
        return TAMIS_ENOMEM;
    tamis_buf_t m;
    tamis_buf_init(&m, TAMIS__SCAN_MAX_OUTPUT);
    safe_headers(s, &m);

    const char *ct = tamis__pristine_header_unfolded(&s->pr, "Content-Type", s->arena);
    bool unsafe = ct && !strcasestr(ct, "text/plain");
    const char *charset = c->report_charset && *c->report_charset ? c->report_charset : "UTF-8";
    tamis_buf_printf(&m,
                     "MIME-Version: 1.0\n"
                     "Content-Type: multipart/mixed; boundary=\"%s\"\n"
                     "\n"
                     "This is a multi-part message in MIME format.\n"
                     "\n"
                     "--%s\n"
                     "Content-Type: text/plain; charset=%s\n"
                     "Content-Disposition: inline\n"
                     "Content-Transfer-Encoding: 8bit\n"
                     "\n",
                     boundary, boundary, charset);
    tamis_buf_puts(&m, report);
    if (unsafe && c->unsafe_report_template)
        tamis__scan_replace_tags(s, c->unsafe_report_template, strlen(c->unsafe_report_template),
                                 &m);
    tamis_buf_printf(&m,
                     "\n"
                     "\n"
                     "--%s\n"
                     "Content-Type: %s; x-spam-type=original\n"
                     "Content-Description: original message before SpamAssassin\n"
                     "Content-Disposition: %s\n"
                     "Content-Transfer-Encoding: 8bit\n"
                     "\n",
                     boundary, c->report_safe > 1 ? "text/plain" : "message/rfc822",
                     unsafe ? "attachment" : "inline");
    bool crlf = s->pr.crlf;
    tamis__scan_put_eol(out, m.data ? m.data : "", m.len, crlf);
    tamis_buf_append(out, s->pr.headers, s->pr.headers_len);
    tamis_buf_append(out, s->pr.body.ptr, s->pr.body.len);
    tamis_buf_reset(&m);
    tamis_buf_printf(&m, "\n--%s--\n\n", boundary);
    tamis__scan_put_eol(out, m.data, m.len, crlf);
    int rc = m.err ? m.err : out->err;
    tamis_buf_free(&m);
    return rc;
}

/* ---- report_safe 0 and ham ------------------------------------------------------------------ */

typedef struct {
    tamis_slice_t *v; /* lines, each with its EOL; may hold NUL bytes */
    size_t n, cap;
} lines_t;

static int lines_push(tamis_arena_t *a, lines_t *l, const char *p, size_t n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        tamis_slice_t *v = tamis_arena_alloc(a, cap * sizeof(*v));
        if (!v)
            return TAMIS_ENOMEM;
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = tamis_slice(p, n);
    return 0;
}

static bool starts_with_ci(tamis_slice_t l, const char *p)
{
    size_t n = strlen(p);
    return l.len >= n && strncasecmp(l.ptr, p, n) == 0;
}

/* /^X-Spam-(?!Prev-)/i */
static bool is_old_spam_header(tamis_slice_t l)
{
    return starts_with_ci(l, "X-Spam-") &&
           !(l.len >= 12 && strncasecmp(l.ptr + 7, "Prev-", 5) == 0);
}

static bool is_continuation(tamis_slice_t l)
{
    return l.len && (l.ptr[0] == ' ' || l.ptr[0] == '\t');
}

/* An Authentication-Results field that claims our authserv-id came from outside: RFC 8601 §5
 * says to remove it when we add our own, so nobody downstream trusts a forged "pass". */
static bool is_forged_authres(const tamis_scan_t *s, tamis_slice_t l)
{
    static const char name[] = "Authentication-Results:";
    if (!s->conf->authres_header || !s->auth || !starts_with_ci(l, name))
        return false;
    const char *id = tamis__scan_authserv_id(s);
    size_t k = sizeof name - 1, idn = strlen(id);
    while (k < l.len && (l.ptr[k] == ' ' || l.ptr[k] == '\t'))
        k++;
    return idn && l.len - k >= idn && strncasecmp(l.ptr + k, id, idn) == 0 &&
           (k + idn == l.len || strchr("; \t\r\n", l.ptr[k + idn]));
}

/* The pristine header lines without old X-Spam-* fields (and forged Authentication-Results);
 * the blank separator split off. */
static int header_lines(tamis_scan_t *s, lines_t *l, tamis_slice_t *sep)
{
    const char *h = s->pr.headers;
    size_t n = s->pr.headers_len;
    bool dropping = false;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(h + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - h) + 1 : n;
        tamis_slice_t line = tamis_slice(h + i, e - i);
        if (is_old_spam_header(line) || is_forged_authres(s, line))
            dropping = true;
        else if (!is_continuation(line))
            dropping = false;
        if (!dropping && lines_push(s->arena, l, line.ptr, line.len))
            return TAMIS_ENOMEM;
        i = e;
    }
    *sep = tamis_slice("", 0);
    if (l->n) {
        tamis_slice_t last = l->v[l->n - 1];
        size_t k = 0;
        while (k < last.len && strchr(" \t\r\n\f\v", last.ptr[k]) && last.ptr[k])
            k++;
        if (k == last.len) { /* /^\s*$/ */
            *sep = last;
            l->n--;
        }
    }
    return 0;
}

/* s/^([^:]+:)[ \t]*(?:\Q$tag\E )?/$1 $tag /i on one header line. */
static int prefix_tag(tamis_arena_t *a, tamis_slice_t *line, const char *tag)
{
    const char *colon = memchr(line->ptr, ':', line->len);
    if (!colon || colon == line->ptr || memchr(line->ptr, '\n', (size_t)(colon - line->ptr)))
        return 0;
    size_t name_len = (size_t)(colon + 1 - line->ptr);
    size_t p = name_len;
    while (p < line->len && (line->ptr[p] == ' ' || line->ptr[p] == '\t'))
        p++;
    size_t tl = strlen(tag);
    if (p + tl < line->len && strncasecmp(line->ptr + p, tag, tl) == 0 && line->ptr[p + tl] == ' ')
        p += tl + 1;
    size_t n = name_len + 1 + tl + 1 + (line->len - p);
    char *out = tamis_arena_alloc(a, n + 1);
    if (!out)
        return TAMIS_ENOMEM;
    memcpy(out, line->ptr, name_len);
    out[name_len] = ' ';
    memcpy(out + name_len + 1, tag, tl);
    out[name_len + 1 + tl] = ' ';
    memcpy(out + name_len + tl + 2, line->ptr + p, line->len - p);
    out[n] = '\0';
    *line = tamis_slice(out, n);
    return 0;
}

/* In-place rewriting: the rules' subjprefix with its trailing blanks removed, or NULL. */
static const char *subject_prefix_tag(tamis_scan_t *s)
{
    char *t = s->result.subjprefix ? rewrite_tag(s, s->result.subjprefix, " ") : NULL;
    if (!t)
        return NULL;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\n' || t[n - 1] == '\r' ||
                 t[n - 1] == '\f' || t[n - 1] == '\v'))
        t[--n] = '\0';
    return t;
}

static int mark_spam_headers(tamis_scan_t *s, lines_t *l)
{
    const tamis_conf_t *c = s->conf;
    bool created = false;
    if (c->rewrite_subject && !tamis__pristine_header(&s->pr, "Subject", -1, s->arena)) {
        if (lines_push(s->arena, l, "Subject: \n", 10))
            return TAMIS_ENOMEM;
        created = true;
    }
    size_t n = l->n; /* lines pushed below do not match From/Subject/To */
    for (size_t i = 0; i < n; i++) {
        tamis_slice_t line = l->v[i];
        const char *set = NULL;
        bool comment = false;
        if (starts_with_ci(line, "From:")) {
            set = c->rewrite_from;
            comment = true;
        } else if (starts_with_ci(line, "To:")) {
            set = c->rewrite_to;
            comment = true;
        } else if (starts_with_ci(line, "Subject:")) {
            set = c->rewrite_subject;
        }
        if (!set)
            continue;
        int rc;
        if (created) {
            rc = lines_push(s->arena, l, "X-Spam-Prev-Subject: (nonexistent)\n", 35);
        } else {
            char *prev = tamis_arena_alloc(s->arena, line.len + 13);
            if (!prev)
                return TAMIS_ENOMEM;
            memcpy(prev, "X-Spam-Prev-", 12);
            memcpy(prev + 12, line.ptr, line.len);
            rc = lines_push(s->arena, l, prev, line.len + 12);
        }
        const char *tag = rc ? NULL : rewrite_tag(s, set, " ");
        if (tag && comment)
            tag = tamis_arena_printf(s->arena, "(%s)", tag);
        /* SpamAssassin puts the subjprefix on every header it rewrites, From and To included */
        const char *ntag = subject_prefix_tag(s);
        if (!tag || (ntag && prefix_tag(s->arena, &l->v[i], ntag)) ||
            prefix_tag(s->arena, &l->v[i], tag))
            return TAMIS_ENOMEM;
    }
    return 0;
}

static int rewrite_in_place(tamis_scan_t *s, tamis_buf_t *out)
{
    lines_t l = {0};
    tamis_slice_t sep;
    if (header_lines(s, &l, &sep))
        return TAMIS_ENOMEM;
    if (s->is_spam) {
        if (mark_spam_headers(s, &l))
            return TAMIS_ENOMEM;
    } else if (s->conf->rewrite_subject) {
        /* SpamAssassin creates the empty Subject for ham too */
        if (!tamis__pristine_header(&s->pr, "Subject", -1, s->arena) &&
            lines_push(s->arena, &l, "Subject: \n", 10))
            return TAMIS_ENOMEM;
        const char *ntag = subject_prefix_tag(s);
        for (size_t i = 0; ntag && i < l.n; i++)
            if (starts_with_ci(l.v[i], "Subject:") && prefix_tag(s->arena, &l.v[i], ntag))
                return TAMIS_ENOMEM;
    }
    tamis_buf_t m;
    tamis_buf_init(&m, TAMIS__SCAN_MAX_OUTPUT);
    size_t i = 0;
    if (l.n && starts_with_ci(l.v[0], "Return-Path:")) {
        tamis_buf_append(&m, l.v[i].ptr, l.v[i].len);
        for (i++; i < l.n && is_continuation(l.v[i]); i++)
            tamis_buf_append(&m, l.v[i].ptr, l.v[i].len);
    }
    tamis__scan_added_headers(s, s->is_spam, &m);
    for (; i < l.n; i++)
        tamis_buf_append(&m, l.v[i].ptr, l.v[i].len);
    tamis_buf_append(&m, sep.ptr, sep.len);
    tamis__scan_put_eol(out, m.data ? m.data : "", m.len, s->pr.crlf);
    tamis_buf_append(out, s->pr.body.ptr, s->pr.body.len);
    int rc = m.err ? m.err : out->err;
    tamis_buf_free(&m);
    return rc;
}

int tamis__scan_rewrite(tamis_scan_t *s, tamis_buf_t *out)
{
    tamis_buf_append(out, s->pr.mbox.ptr, s->pr.mbox.len);
    if (s->is_spam && s->conf->report_safe)
        return rewrite_report_safe(s, out);
    return rewrite_in_place(s, out);
}
