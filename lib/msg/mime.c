/*
 * The MIME walk: GMime parses the structure (boundaries, message/rfc822 nesting) and this file
 * turns it into SpamAssassin's view of the parts: type/charset/name as Util::parse_content_type
 * and Message::_parse_normal derive them, transfer decoding as Node::decode, rendered text as
 * Node::rendered + Message::get_body_text_array_common, rawbody chunks as
 * Message::get_decoded_body_text_array. Depth and part counts are bounded on every branch.
 */
#include "msg_int.h"

#include <gmime/gmime.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#define MAX_LINE 2048 /* SpamAssassin's MAX_BODY_LINE_LENGTH */

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

/* GObject creates a class lazily, at the first instance, under its own locks; other threads
 * then find it through atomics inside uninstrumented GLib. Creating every class the parser can
 * instantiate here, under pthread_once, makes that hand-over a plain happens-before (no class
 * is ever first built on a worker thread) and keeps ThreadSanitizer's view exact (scripts/tsan).
 * The references are kept for the life of the process, as static classes are anyway. */
static void gmime_classes_ref(void)
{
    const GType types[] = {
        GMIME_TYPE_PARSER,
        GMIME_TYPE_STREAM_MEM,
        GMIME_TYPE_STREAM_FILTER,
        GMIME_TYPE_STREAM_NULL,
        GMIME_TYPE_STREAM_CAT,
        GMIME_TYPE_STREAM_BUFFER,
        GMIME_TYPE_DATA_WRAPPER,
        GMIME_TYPE_MESSAGE,
        GMIME_TYPE_PART,
        GMIME_TYPE_TEXT_PART,
        GMIME_TYPE_MULTIPART,
        GMIME_TYPE_MULTIPART_ENCRYPTED,
        GMIME_TYPE_MULTIPART_SIGNED,
        GMIME_TYPE_MESSAGE_PART,
        GMIME_TYPE_MESSAGE_PARTIAL,
        GMIME_TYPE_APPLICATION_PKCS7_MIME,
        GMIME_TYPE_HEADER,
        GMIME_TYPE_HEADER_LIST,
        GMIME_TYPE_PARAM,
        GMIME_TYPE_PARAM_LIST,
        GMIME_TYPE_CONTENT_TYPE,
        GMIME_TYPE_CONTENT_DISPOSITION,
        GMIME_TYPE_FILTER_BASIC,
        GMIME_TYPE_FILTER_CHARSET,
        GMIME_TYPE_FILTER_DOS2UNIX,
        GMIME_TYPE_FILTER_UNIX2DOS,
        GMIME_TYPE_FILTER_BEST,
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (G_TYPE_IS_CLASSED(types[i]))
            g_type_class_ref(types[i]);
}

static void gmime_init_once(void)
{
    g_mime_init();
    gmime_classes_ref();
}

typedef struct {
    tamis_msg_t *m;
    tamis_buf_t text;      /* concatenated rendered parts (UTF-8) */
    tamis_buf_t invisible; /* concatenated invisible HTML text */
    tamis_buf_t visible;   /* text without the invisible HTML pieces (visible_rendered) */
    bool any_leaf;
    bool in_multipart; /* the current entity is a child of a multipart */
    /* Perl string semantics: a part whose text stayed bytes (7-bit input, pass-through charset)
     * holds Latin-1 bytes from HTML entities; once any part is characters, the whole text is
     * upgraded and those bytes become UTF-8. */
    bool any_chars;
    tamis__vec_t latin1_spans;  /* span_t: byte parts with high bytes in text */
    tamis__vec_t vlatin1_spans; /* the same for visible */
    tamis__mime_acc_t mstats;
} walk_t;

typedef struct {
    size_t off, len;
} span_t;

/* ---- content type ----------------------------------------------------------------------------*/

typedef struct {
    char *type, *charset, *name, *boundary;
    bool missing;
} ctype_t;

static const char *last_value(const tamis_header_t *h, size_t n, const char *name)
{
    for (size_t i = n; i-- > 0;)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].decoded;
    return NULL;
}

/* Finds "key\s*=\s*["']?(.*?)["']?(;|$)" case-insensitively, after a word boundary. */
static char *ct_param(tamis_arena_t *a, const char *ct, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = ct; (p = strcasestr(p, key)) != NULL; p++) {
        if (p > ct && (g_ascii_isalnum(p[-1]) || p[-1] == '_'))
            continue;
        const char *q = p + kl;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q != '=')
            continue;
        q++;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '"' || *q == '\'')
            q++;
        const char *e = strchr(q, ';');
        if (!e)
            e = q + strlen(q);
        const char *f = e;
        if (f > q && (f[-1] == '"' || f[-1] == '\''))
            f--;
        return tamis_arena_strndup(a, q, (size_t)(f - q));
    }
    return NULL;
}

static char *ct_boundary(tamis_arena_t *a, const char *ct)
{
    for (const char *p = ct; (p = strcasestr(p, "boundary")) != NULL; p++) {
        if (p > ct && (g_ascii_isalnum(p[-1]) || p[-1] == '_'))
            continue;
        const char *q = p + 8;
        while (g_ascii_isspace(*q))
            q++;
        if (*q != '=')
            continue;
        q++;
        while (g_ascii_isspace(*q))
            q++;
        const char *e = q;
        if (*q == '"') {
            e = ++q;
            while (*e && *e != '"')
                e++;
        } else {
            while (*e && !g_ascii_isspace(*e) && *e != '"' && *e != ';')
                e++;
        }
        if (e == q)
            continue;
        return tamis_arena_strndup(a, q, (size_t)(e - q));
    }
    return NULL;
}

/* Util::parse_content_type. */
static void parse_ctype(tamis_arena_t *a, const char *ct, ctype_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!ct || !*ct) {
        out->missing = true;
        ct = "text/plain; charset=us-ascii";
    }
    out->boundary = ct_boundary(a, ct);
    out->charset = ct_param(a, ct, "charset");
    out->name = ct_param(a, ct, "name");
    if (!out->name)
        out->name = ct_param(a, ct, "filename");
    const char *s = ct;
    while (g_ascii_isspace(*s))
        s++;
    size_t n = strcspn(s, ";");
    char *t = tamis_arena_strndup(a, s, n);
    if (!t)
        return;
    /* only "something/something" */
    char *slash = strchr(t, '/');
    if (slash) {
        char *e = slash + 1;
        while (*e && *e != '/' && !g_ascii_isspace(*e))
            e++;
        *e = '\0';
    } else {
        t[strcspn(t, " \t\r\n")] = '\0';
    }
    for (char *c = t; *c; c++)
        *c = g_ascii_tolower(*c);
    if (!*t)
        out->missing = true;
    if (!*t || (!strncmp(t, "text", 4) && !g_ascii_isalnum(t[4]) && t[4] != '_' &&
                strcmp(t, "text/x-vcard") && strcmp(t, "text/calendar") && strcmp(t, "text/html")))
        t = tamis_arena_strdup(a, "text/plain");
    if (!t)
        return;
    /* strip inappropriate characters */
    size_t k = 0;
    for (char *c = t; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u <= 0x20 || u >= 0x7f || strchr("\"(),:;<=>?@[\\]", u))
            continue;
        t[k++] = *c;
    }
    t[k] = '\0';
    out->type = t;
    if (out->charset)
        for (char *c = out->charset; *c; c++)
            *c = g_ascii_tolower(*c);
}

/* ---- part headers from GMime ---------------------------------------------------------------- */

static bool has_name(const tamis_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(h[i].name, name))
            return true;
    return false;
}

/* Appends the fields of list to h (capacity cap); with skip_known, names already present are
 * left out (GMime keeps an embedded message's Content-* fields on its MIME part). */
static int add_fields(tamis_msg_t *m, GMimeHeaderList *hl, tamis_header_t *h, size_t *n, size_t cap,
                      bool skip_known)
{
    int cnt = hl ? g_mime_header_list_get_count(hl) : 0;
    size_t known = *n;
    for (int i = 0; i < cnt; i++) {
        if (*n >= cap) {
            tamis__set_flag(m, "truncated_header");
            tamis__set_flag(m, "header_limit");
            break;
        }
        GMimeHeader *gh = g_mime_header_list_get_header_at(hl, i);
        const char *name = g_mime_header_get_name(gh);
        const char *raw = g_mime_header_get_raw_value(gh);
        if (!name)
            name = "";
        if (!raw)
            raw = "";
        if (skip_known && has_name(h, known, name))
            continue;
        char *pr = tamis_arena_printf(m->arena, "%s:%s", name, raw);
        if (!pr)
            return TAMIS_ENOMEM;
        int rc = tamis__header_make(m, &h[*n], name, strlen(name), raw, strlen(raw),
                                    tamis_slice(pr, strlen(pr)));
        if (rc < 0)
            return rc;
        (*n)++;
    }
    return 0;
}

/* The header fields of obj (plus those of extra not already present), bounded by max_headers. */
static int gmime_headers2(tamis_msg_t *m, GMimeObject *obj, GMimeObject *extra,
                          tamis_header_t **out, size_t *count)
{
    GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
    GMimeHeaderList *xl = extra ? g_mime_object_get_header_list(extra) : NULL;
    size_t total = (size_t)(hl ? g_mime_header_list_get_count(hl) : 0) +
                   (size_t)(xl ? g_mime_header_list_get_count(xl) : 0);
    *out = NULL;
    *count = 0;
    if (total == 0)
        return 0;
    size_t cap = total < m->lim.max_headers ? total : m->lim.max_headers;
    tamis_header_t *h = tamis_arena_calloc(m->arena, cap ? cap : 1, sizeof(*h));
    if (!h)
        return TAMIS_ENOMEM;
    size_t n = 0;
    int rc = add_fields(m, hl, h, &n, cap, false);
    if (rc == 0 && xl)
        rc = add_fields(m, xl, h, &n, cap, true);
    if (rc < 0)
        return rc;
    *out = h;
    *count = n;
    return 0;
}

static int gmime_headers(tamis_msg_t *m, GMimeObject *obj, tamis_header_t **out, size_t *count)
{
    return gmime_headers2(m, obj, NULL, out, count);
}

/* ---- leaf content --------------------------------------------------------------------------- */

static int read_stream(GMimeStream *s, tamis_buf_t *out)
{
    char tmp[16384];
    g_mime_stream_reset(s);
    for (;;) {
        ssize_t r = g_mime_stream_read(s, tmp, sizeof(tmp));
        if (r <= 0)
            break;
        tamis_buf_append(out, tmp, (size_t)r);
    }
    return out->err;
}

/* CRLF → LF (Node::decode does it for QP and for base64 text). */
static void squash_crlf_buf(tamis_buf_t *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] == '\r' && i + 1 < b->len && b->data[i + 1] == '\n')
            continue;
        b->data[k++] = b->data[i];
    }
    b->len = k;
    if (b->data)
        b->data[k] = '\0';
}

/* Transfer-decodes raw into a new arena slice, counting MIME statistics. */
static tamis_slice_t decode_part(tamis_msg_t *m, tamis_part_t *p, const tamis_buf_t *raw)
{
    tamis_buf_t d;
    size_t room = m->lim.max_decoded_bytes > m->decoded_total
                      ? m->lim.max_decoded_bytes - m->decoded_total
                      : 0;
    tamis_buf_init(&d, room + 1);
    const char *src = raw->data ? raw->data : "";
    if (!strcmp(p->encoding, "quoted-printable")) {
        tamis__qp_decode(src, raw->len, &d);
        squash_crlf_buf(&d);
    } else if (!strcmp(p->encoding, "base64")) {
        tamis__b64_decode(src, raw->len, &d);
        if (!strncmp(p->type, "text/", 5) || !strncmp(p->type, "message/", 8))
            squash_crlf_buf(&d);
    } else {
        tamis_buf_append(&d, src, raw->len);
    }
    if (d.err == TAMIS_ELIMIT || d.len > room)
        tamis__set_flag(m, "decoded_bytes_limit");
    size_t n = d.len > room ? room : d.len;
    char *c = tamis_arena_strndup(m->arena, d.data ? d.data : "", n);
    tamis_buf_free(&d);
    if (!c) {
        m->oom = TAMIS_ENOMEM;
        return tamis_slice("", 0);
    }
    m->decoded_total += n;
    return tamis_slice(c, n);
}

/* Truncation of Message.pm: cut at the first of chars found within 1024 bytes past limit. */
static size_t scan_cut(const char *s, size_t n, size_t limit, const char *chars)
{
    if (!limit || n <= limit)
        return n;
    for (const char *c = chars; *c; c++) {
        const char *f = memchr(s + limit, *c, n - limit);
        if (f && (size_t)(f - s) - limit <= 1024)
            return (size_t)(f - s) + 1;
    }
    return limit;
}

static void push_raw(tamis_msg_t *m, const char *s, size_t n)
{
    tamis_slice_t *sl = tamis__vec_push(m->arena, &m->raw, sizeof(*sl));
    if (!sl)
        m->oom = TAMIS_ENOMEM;
    else
        *sl = tamis_slice(s, n);
}

static const char *find_from(const char *s, size_t n, size_t from, char c)
{
    return from < n ? memchr(s + from, c, n - from) : NULL;
}

/* Message::split_into_array_of_short_paragraphs. */
static void rawbody_chunks(tamis_msg_t *m, const char *s, size_t n)
{
    if (n <= MAX_LINE) {
        push_raw(m, s, n);
        return;
    }
    size_t ofs = 0;
    while (n - ofs > 2 * MAX_LINE) {
        size_t j = 0;
        bool ok = false;
        const char *cands = "\n> ";
        for (const char *c = cands; *c && !ok; c++) {
            const char *f = find_from(s, n, ofs + MAX_LINE, *c);
            if (f && (size_t)(f - s) - ofs + 1 <= 2 * MAX_LINE) {
                j = (size_t)(f - s);
                ok = true;
            }
        }
        if (!ok)
            j = ofs + MAX_LINE;
        push_raw(m, s + ofs, j - ofs + 1);
        ofs = j + 1;
    }
    if (ofs < n)
        push_raw(m, s + ofs, n - ofs);
}

static bool effective_html(const tamis_part_t *p)
{
    const char *f = p->filename;
    size_t l = strlen(f);
    const char *dot = strrchr(f, '.');
    if (!dot || l < 4)
        return false;
    return !strcasecmp(dot, ".htm") || !strcasecmp(dot, ".html") || !strcasecmp(dot, ".shtml") ||
           !strcasecmp(dot, ".shtm");
}

static bool has_high(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

/* UTF-8 → Latin-1 in place when every code point is below U+0100; false (unchanged) otherwise. */
static bool to_latin1(tamis_buf_t *b)
{
    const unsigned char *s = (const unsigned char *)b->data;
    for (size_t i = 0; i < b->len; i++)
        if (s[i] >= 0xC4 || (s[i] >= 0x80 && s[i] < 0xC2 && (i == 0 || s[i - 1] < 0xC2)))
            return false;
    size_t k = 0;
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = s[i];
        if ((c == 0xC2 || c == 0xC3) && i + 1 < b->len) {
            b->data[k++] = (char)(((c & 0x03) << 6) | (s[i + 1] & 0x3F));
            i++;
        } else {
            b->data[k++] = (char)c;
        }
    }
    b->len = k;
    if (b->data)
        b->data[k] = '\0';
    return true;
}

/* Latin-1 spans → UTF-8 when the text as a whole became characters (Perl's upgrade). */
static void upgrade_spans(const walk_t *w, tamis_buf_t *text, const tamis__vec_t *spans)
{
    if (!w->any_chars || !spans->n)
        return;
    tamis_buf_t o;
    tamis_buf_init(&o, 0);
    const span_t *sp = spans->v;
    size_t pos = 0;
    for (size_t i = 0; i < spans->n; i++) {
        tamis_buf_append(&o, text->data + pos, sp[i].off - pos);
        for (size_t j = sp[i].off; j < sp[i].off + sp[i].len; j++) {
            unsigned char c = (unsigned char)text->data[j];
            if (c < 0x80) {
                tamis_buf_putc(&o, (char)c);
            } else {
                tamis_buf_putc(&o, (char)(0xC0 | (c >> 6)));
                tamis_buf_putc(&o, (char)(0x80 | (c & 0x3F)));
            }
        }
        pos = sp[i].off + sp[i].len;
    }
    tamis_buf_append(&o, text->data + pos, text->len - pos);
    if (!o.err) {
        tamis_buf_free(text);
        *text = o;
    } else {
        tamis_buf_free(&o);
    }
}

/* Node::rendered for one leaf, appended to the walk's text. */
static void render_leaf(walk_t *w, const tamis_part_t *p)
{
    tamis_msg_t *m = w->m;
    bool html = effective_html(p) || !strcmp(p->type, "text/html");
    if (w->text.len)
        tamis_buf_putc(&w->text, '\n'); /* a blank line between parts, rendered or not */
    if (w->visible.len)
        tamis_buf_putc(&w->visible, '\n');
    if (!html && strcmp(p->type, "text/plain") != 0)
        return;
    size_t n;
    const char *cs = *p->charset ? p->charset : "us-ascii";
    char *u = tamis__normalize(m->arena, p->decoded.ptr, p->decoded.len, cs, false, &n);
    if (!u) {
        m->oom = TAMIS_ENOMEM;
        return;
    }
    bool bytes = n == p->decoded.len && tamis__charset_passthrough(cs) &&
                 !has_high(p->decoded.ptr, p->decoded.len);
    tamis_buf_t r, v; /* all rendered text; the visible pieces only (HTML) */
    tamis_buf_init(&r, 0);
    tamis_buf_init(&v, 0);
    bool has_v = html && n;
    if (has_v) {
        tamis__html_render(m, u, n, &r, &w->invisible, &v);
        /* HTML::Parser on a byte string decodes entities up to U+00FF as single bytes */
        if (bytes && !to_latin1(&r))
            bytes = false;
        else if (bytes)
            to_latin1(&v); /* a part of r, so it converts too */
    } else {
        tamis_buf_append(&r, u, n);
    }
    if (v.err)
        m->oom = TAMIS_ENOMEM;
    const tamis_buf_t *vr = has_v ? &v : &r;
    size_t vkeep = scan_cut(vr->data ? vr->data : "", vr->len, m->lim.body_part_scan_size, "\n ");
    if (bytes && has_high(vr->data, vkeep)) {
        span_t *sp = tamis__vec_push(m->arena, &w->vlatin1_spans, sizeof(*sp));
        if (sp) {
            sp->off = w->visible.len;
            sp->len = vkeep;
        }
    }
    tamis_buf_append(&w->visible, vr->data ? vr->data : "", vkeep);
    tamis_buf_free(&v);
    size_t keep = scan_cut(r.data ? r.data : "", r.len, m->lim.body_part_scan_size, "\n ");
    if (bytes && has_high(r.data, keep)) {
        span_t *sp = tamis__vec_push(m->arena, &w->latin1_spans, sizeof(*sp));
        if (sp) {
            sp->off = w->text.len;
            sp->len = keep;
        }
    }
    if (!bytes)
        w->any_chars = true;
    tamis_buf_append(&w->text, r.data ? r.data : "", keep);
    tamis_buf_free(&r);
}

static void rawbody_leaf(tamis_msg_t *m, const tamis_part_t *p)
{
    const char *et = effective_html(p) ? "text/html" : p->type;
    bool texty = (!strncmp(et, "text", 4) && !g_ascii_isalnum(et[4])) ||
                 (!strncmp(et, "message", 7) && !g_ascii_isalnum(et[7]));
    if (!texty || !strcmp(p->type, "text/calendar"))
        return;
    size_t keep = scan_cut(p->decoded.ptr, p->decoded.len, m->lim.rawbody_part_scan_size, "\n> ");
    rawbody_chunks(m, p->decoded.ptr, keep);
}

/* ---- the walk ------------------------------------------------------------------------------- */

static int walk(walk_t *w, GMimeObject *obj, unsigned depth, tamis_header_t *hdrs, size_t nh);

static tamis_part_t *new_part(walk_t *w, unsigned depth, tamis_header_t *hdrs, size_t nh,
                              ctype_t *ct)
{
    tamis_msg_t *m = w->m;
    if (m->parts.n >= m->lim.max_parts) {
        tamis__set_flag(m, "mimepart_limit_exceeded");
        return NULL;
    }
    tamis_part_t *p = tamis__vec_push(m->arena, &m->parts, sizeof(*p));
    if (!p) {
        m->oom = TAMIS_ENOMEM;
        return NULL;
    }
    parse_ctype(m->arena, last_value(hdrs, nh, "content-type"), ct);
    p->type = ct->type ? ct->type : "text/plain";
    p->charset = ct->charset ? ct->charset : "";
    const char *disp = last_value(hdrs, nh, "content-disposition");
    const char *fname = NULL;
    if (disp) {
        const char *q = strcasestr(disp, "name=");
        if (q) {
            q += 5;
            while (*q == ' ' || *q == '\t' || *q == '\n')
                q++;
            if (*q == '"')
                q++;
            size_t l = strcspn(q, "\";");
            if (l)
                fname = tamis_arena_strndup(m->arena, q, l);
        }
        char *d = tamis_arena_strndup(m->arena, disp, strcspn(disp, "; \t"));
        for (char *c = d; c && *c; c++)
            *c = g_ascii_tolower(*c);
        p->disposition = d ? d : "";
    } else {
        p->disposition = "";
    }
    p->filename = fname ? fname : ct->name ? ct->name : "";
    const char *cte = last_value(hdrs, nh, "content-transfer-encoding");
    char *enc = tamis_arena_strdup(m->arena, cte ? cte : "");
    for (char *c = enc; c && *c; c++)
        *c = g_ascii_tolower(*c);
    p->encoding = enc ? enc : "";
    p->depth = depth;
    p->headers = hdrs;
    p->header_count = nh;
    p->decoded = tamis_slice("", 0);
    tamis__mime_stats_node(m, p);
    return p;
}

/* Message::_parse_multipart stores part lines longer than 2048 bytes (newline included) as
 * 2048-byte pieces each followed by "\n"; the inserted newlines survive decoding. */
static void split_long_lines(tamis_buf_t *raw)
{
    const char *s = raw->data;
    size_t n = raw->len, i = 0;
    bool any = false;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) + 1 : n;
        if (end - i > MAX_LINE) {
            any = true;
            break;
        }
        i = end;
    }
    if (!any)
        return;
    tamis_buf_t o;
    tamis_buf_init(&o, 0);
    for (i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) + 1 : n;
        while (end - i > MAX_LINE) {
            tamis_buf_append(&o, s + i, MAX_LINE);
            tamis_buf_putc(&o, '\n');
            i += MAX_LINE;
        }
        tamis_buf_append(&o, s + i, end - i);
        i = end;
    }
    if (!o.err) {
        tamis_buf_free(raw);
        *raw = o;
    } else {
        tamis_buf_free(&o);
    }
}

static void leaf_content(walk_t *w, tamis_part_t *p, GMimeStream *s, const char *extra,
                         size_t extra_len)
{
    tamis_msg_t *m = w->m;
    tamis_buf_t raw;
    tamis_buf_init(&raw, 0);
    if (s)
        read_stream(s, &raw);
    if (extra)
        tamis_buf_append(&raw, extra, extra_len);
    if (w->in_multipart)
        split_long_lines(&raw);
    p->is_leaf = true;
    p->raw_bytes = raw.len;
    p->decoded = decode_part(m, p, &raw);
    tamis__mime_stats_leaf(m, &w->mstats, p, raw.data ? raw.data : "", raw.len);
    tamis_buf_free(&raw);
    render_leaf(w, p);
    rawbody_leaf(m, p);
}

/* mime_boundary_state: a boundary that opened parts but never closed with "--boundary--". */
static void check_boundary_closed(tamis_msg_t *m, const char *b)
{
    size_t bl = strlen(b);
    if (!bl || bl > 200)
        return;
    char open[208], close[208];
    snprintf(open, sizeof(open), "--%s", b);
    snprintf(close, sizeof(close), "--%s--", b);
    const char *s = m->pbody.ptr;
    size_t n = m->pbody.len;
    if (memmem(s, n, open, bl + 2) && !memmem(s, n, close, bl + 4)) {
        tamis__stat_set(m->arena, &m->mime_stats, "mime_missing_boundary", 1);
        tamis__set_flag(m, "mime_missing_boundary");
    }
}

static int walk_multipart(walk_t *w, GMimeMultipart *mp, tamis_part_t *p, unsigned depth)
{
    tamis_msg_t *m = w->m;
    if (!g_mime_multipart_get_boundary(mp)) {
        /* SpamAssassin renders a multipart without boundary as text/plain */
        tamis__set_flag(m, "multipart_without_boundary");
        p->type = "text/plain";
        const char *pro = g_mime_multipart_get_prologue(mp);
        leaf_content(w, p, NULL, pro ? pro : "", pro ? strlen(pro) : 0);
        return 0;
    }
    check_boundary_closed(m, g_mime_multipart_get_boundary(mp));
    int n = g_mime_multipart_get_count(mp);
    for (int i = 0; i < n && !m->oom; i++) {
        GMimeObject *c = g_mime_multipart_get_part(mp, i);
        tamis_header_t *h;
        size_t nh;
        if (gmime_headers(m, c, &h, &nh) < 0)
            return TAMIS_ENOMEM;
        if (nh == 0)
            tamis__set_flag(m, "missing_mime_headers");
        bool saved = w->in_multipart;
        w->in_multipart = true;
        int rc = walk(w, c, depth + 1, h, nh);
        w->in_multipart = saved;
        if (rc < 0)
            return rc;
    }
    /* text after the closing boundary other than blanks and dots */
    const char *epi = g_mime_multipart_get_epilogue(mp);
    for (const char *c = epi; c && *c; c++)
        if (!g_ascii_isspace(*c) && *c != '.') {
            tamis__set_flag(m, "mime_epilogue_exists");
            break;
        }
    return 0;
}

static int walk(walk_t *w, GMimeObject *obj, unsigned depth, tamis_header_t *hdrs, size_t nh)
{
    tamis_msg_t *m = w->m;
    if (depth > m->lim.max_mime_depth) {
        tamis__set_flag(m, "mime_depth_limit");
        return 0;
    }
    ctype_t ct;
    tamis_part_t *p = new_part(w, depth, hdrs, nh, &ct);
    if (!p)
        return m->oom;
    if (GMIME_IS_MULTIPART(obj))
        return walk_multipart(w, GMIME_MULTIPART(obj), p, depth);
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        GMimeObject *body = inner ? g_mime_message_get_mime_part(inner) : NULL;
        if (!body) {
            leaf_content(w, p, NULL, NULL, 0);
            return 0;
        }
        tamis_header_t *h;
        size_t n;
        if (gmime_headers2(m, GMIME_OBJECT(inner), body, &h, &n) < 0)
            return TAMIS_ENOMEM;
        /* an embedded message is parsed as a message of its own */
        bool saved = w->in_multipart;
        w->in_multipart = false;
        int rc = walk(w, body, depth + 1, h, n);
        w->in_multipart = saved;
        return rc;
    }
    if (GMIME_IS_PART(obj)) {
        GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(obj));
        GMimeStream *s = dw ? g_mime_data_wrapper_get_stream(dw) : NULL;
        leaf_content(w, p, s, NULL, 0);
        return 0;
    }
    leaf_content(w, p, NULL, NULL, 0);
    return 0;
}

/* ---- GMime parser --------------------------------------------------------------------------- */

static void on_warning(gint64 offset, GMimeParserWarning code, const gchar *item, gpointer ud)
{
    (void)item;
    (void)offset;
    tamis_msg_t *m = ud;
    switch (code) {
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
        tamis__set_flag(m, "multipart_without_boundary");
        break;
    case GMIME_WARN_TRUNCATED_MESSAGE:
        tamis__set_flag(m, "truncated_message");
        break;
    case GMIME_WARN_PART_WITHOUT_CONTENT:
        tamis__set_flag(m, "missing_mime_head_body_separator");
        break;
    case GMIME_CRIT_NESTING_OVERFLOW:
        tamis__set_flag(m, "mime_depth_limit");
        break;
    case GMIME_WARN_MALFORMED_MULTIPART:
        tamis__set_flag(m, "malformed_multipart");
        break;
    default:
        break;
    }
}

/* Whitespace as Perl's \s on character strings. Returns its byte length at p, or 0. */
static size_t uspace(const unsigned char *p, const unsigned char *e)
{
    unsigned c = p[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d))
        return 1;
    if (c == 0xC2 && e - p >= 2 && (p[1] == 0x85 || p[1] == 0xA0))
        return 2;
    if (c == 0xE1 && e - p >= 3 && p[1] == 0x9A && p[2] == 0x80)
        return 3;
    if (c == 0xE2 && e - p >= 3) {
        if (p[1] == 0x80 &&
            ((p[2] >= 0x80 && p[2] <= 0x8A) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF))
            return 3;
        if (p[1] == 0x81 && p[2] == 0x9F)
            return 3;
    }
    if (c == 0xE3 && e - p >= 3 && p[1] == 0x80 && p[2] == 0x80)
        return 3;
    return 0;
}

/* s/\n+\s*\n+/\0/g; s/\s+/ /g; tr/\0/\n/ (get_body_text_array_common), in place. */
static size_t squeeze_ws(char *s, size_t n, bool unicode)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    size_t k = 0;
    while (p < e) {
        size_t l = unicode ? uspace(p, e) : (*p == ' ' || (*p >= 0x09 && *p <= 0x0d));
        if (!l) {
            s[k++] = (char)*p++;
            continue;
        }
        const unsigned char *first_nl = NULL, *last_nl = NULL, *run = p;
        while (p < e &&
               (l = unicode ? uspace(p, e) : (*p == ' ' || (*p >= 0x09 && *p <= 0x0d))) != 0) {
            if (*p == '\n') {
                if (!first_nl)
                    first_nl = p;
                last_nl = p;
            }
            p += l;
        }
        if (first_nl && first_nl != last_nl) {
            if (first_nl > run)
                s[k++] = ' ';
            s[k++] = '\n';
            if (last_nl + 1 < p)
                s[k++] = ' ';
        } else {
            s[k++] = ' ';
        }
    }
    return k;
}

static int push_line(tamis_msg_t *m, tamis__vec_t *lines, const char *s, size_t n)
{
    tamis_slice_t *sl = tamis__vec_push(m->arena, lines, sizeof(*sl));
    if (!sl)
        return TAMIS_ENOMEM;
    *sl = tamis_slice(s, n);
    return 0;
}

/* split_into_array_of_short_lines. */
static int split_lines(tamis_msg_t *m, tamis__vec_t *lines, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) + 1 : n;
        while (end - i > MAX_LINE) {
            size_t len = 0;
            for (size_t j = MAX_LINE + 1; j-- > 0;)
                if (s[i + j] == ' ') {
                    len = j + 1;
                    break;
                }
            if (!len)
                len = MAX_LINE;
            if (push_line(m, lines, s + i, len) < 0)
                return TAMIS_ENOMEM;
            i += len;
        }
        if (push_line(m, lines, s + i, end - i) < 0)
            return TAMIS_ENOMEM;
        i = end;
    }
    return 0;
}

static int finish_text(walk_t *w)
{
    tamis_msg_t *m = w->m;
    if (w->text.err || w->invisible.err || w->visible.err)
        return TAMIS_ENOMEM;
    upgrade_spans(w, &w->text, &w->latin1_spans);
    upgrade_spans(w, &w->visible, &w->vlatin1_spans);
    const tamis_header_t *subj = tamis_msg_header_last(m, "subject");
    const char *sv = subj ? subj->decoded : "";
    size_t sl = strlen(sv);
    size_t tl = w->text.len;
    char *all = tamis_arena_alloc(m->arena, sl + 1 + tl + 1);
    if (!all)
        return TAMIS_ENOMEM;
    memcpy(all, sv, sl);
    all[sl] = '\n';
    if (tl)
        memcpy(all + sl + 1, w->text.data, tl);
    size_t k = squeeze_ws(all + sl + 1, tl, w->any_chars);
    all[sl + 1 + k] = '\0';
    m->body_text = tamis_slice(all + sl + 1, k);
    size_t iv = squeeze_ws(w->invisible.data ? w->invisible.data : "", w->invisible.len, true);
    char *inv = tamis_arena_strndup(m->arena, w->invisible.data ? w->invisible.data : "", iv);
    if (!inv)
        return TAMIS_ENOMEM;
    m->invisible = tamis_slice(inv, iv);
    /* get_visible_rendered_body_text_array: the same with the invisible HTML pieces left out */
    size_t vl = w->visible.len;
    char *vis = tamis_arena_alloc(m->arena, sl + 1 + vl + 1);
    if (!vis)
        return TAMIS_ENOMEM;
    memcpy(vis, sv, sl);
    vis[sl] = '\n';
    if (vl)
        memcpy(vis + sl + 1, w->visible.data, vl);
    size_t vk = squeeze_ws(vis + sl + 1, vl, w->any_chars);
    vis[sl + 1 + vk] = '\0';
    int rc = split_lines(m, &m->lines, all, sl + 1 + k);
    return rc ? rc : split_lines(m, &m->vlines, vis, sl + 1 + vk);
}

static bool blank_line(const char *p, const char *e)
{
    for (; p < e; p++)
        if (!g_ascii_isspace(*p))
            return false;
    return true;
}

/* Message->new keeps at most 20 consecutive blank lines of the body (21 when the run starts the
 * body), dropping from the second (third) line of the run on. trim_blank_runs() returns the body:
 * pristine, or a trimmed copy in the arena. */
static bool has_long_blank_run(const char *b, const char *e)
{
    size_t run = 0;
    for (const char *p = b; p < e;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl + 1 : e;
        run = blank_line(p, le) ? run + 1 : 0;
        if (run > 20)
            return true;
        p = le;
    }
    return false;
}

static tamis_slice_t trim_blank_runs(tamis_msg_t *m)
{
    const char *b = m->pbody.ptr, *e = b + m->pbody.len;
    if (!has_long_blank_run(b, e))
        return m->pbody;
    tamis_buf_t o;
    tamis_buf_init(&o, 0);
    bool changed = false;
    const char *run = NULL;
    size_t runlen = 0;
    for (const char *p = b; p <= e;) {
        const char *nl = p < e ? memchr(p, '\n', (size_t)(e - p)) : NULL;
        const char *le = nl ? nl + 1 : e;
        bool blank = p < e && blank_line(p, le);
        if (blank) {
            if (!run)
                run = p;
            runlen++;
        }
        if (!blank || le >= e) {
            if (run) {
                /* SpamAssassin keeps the first line (two at the body start) and the last 19 */
                size_t keep = run == b ? 21 : 20, head = run == b ? 2 : 1;
                size_t drop = runlen > keep ? runlen - keep : 0;
                const char *q = run;
                for (size_t i = 0; i < runlen; i++) {
                    const char *qn = memchr(q, '\n', (size_t)(e - q));
                    const char *qe = qn ? qn + 1 : e;
                    if (i < head || i >= head + drop)
                        tamis_buf_append(&o, q, (size_t)(qe - q));
                    else
                        changed = true;
                    q = qe;
                }
                run = NULL;
                runlen = 0;
            }
            if (!blank && p < e)
                tamis_buf_append(&o, p, (size_t)(le - p));
        }
        if (p >= e)
            break;
        p = le;
    }
    tamis_slice_t r = m->pbody;
    if (changed && !o.err) {
        char *c = tamis_arena_strndup(m->arena, o.data, o.len);
        if (c)
            r = tamis_slice(c, o.len);
    }
    tamis_buf_free(&o);
    return r;
}

/* The top level is parsed as a MIME part, not a message: SpamAssassin's header view is built in
 * msg.c, and GMime's message construction (address lists, dates, decoding of every field) would
 * cost a quarter of the parse for nothing. */
/* GMime gets the body behind a two-field header (the last Content-Type and
 * Content-Transfer-Encoding as written): the top-level fields are already parsed, and GMime's
 * header parsing was most of its cost. */
static tamis_slice_t gmime_input(tamis_msg_t *m)
{
    tamis_slice_t body = trim_blank_runs(m);
    const tamis_header_t *ct = tamis_msg_header_last(m, "content-type");
    const tamis_header_t *te = tamis_msg_header_last(m, "content-transfer-encoding");
    tamis_buf_t o;
    tamis_buf_init(&o, 0);
    tamis_buf_reserve(&o, body.len + 512);
    if (ct)
        tamis_buf_printf(&o, "Content-Type: %s\n", ct->raw);
    if (te)
        tamis_buf_printf(&o, "Content-Transfer-Encoding: %s\n", te->raw);
    tamis_buf_putc(&o, '\n');
    tamis_buf_append(&o, body.ptr, body.len);
    tamis_slice_t r = tamis_slice("", 0);
    char *c = o.err ? NULL : tamis_arena_strndup(m->arena, o.data, o.len);
    if (c)
        r = tamis_slice(c, o.len);
    else
        m->oom = TAMIS_ENOMEM;
    tamis_buf_free(&o);
    return r;
}

static GMimeObject *gmime_parse(tamis_msg_t *m)
{
    tamis_slice_t in = gmime_input(m);
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(in.ptr, in.len);
    if (!st)
        return NULL;
    GMimeParser *ps = g_mime_parser_new_with_stream(st);
    g_object_unref(st);
    if (!ps)
        return NULL;
    g_mime_parser_set_format(ps, GMIME_FORMAT_MESSAGE);
    GMimeParserOptions *po = g_mime_parser_options_new();
    g_mime_parser_options_set_warning_callback(po, on_warning, m);
    GMimeObject *obj = g_mime_parser_construct_part(ps, po);
    g_mime_parser_options_free(po);
    g_object_unref(ps);
    return obj;
}

static int walk_top(walk_t *w)
{
    tamis_msg_t *m = w->m;
    GMimeObject *body = gmime_parse(m);
    int rc;
    if (body) {
        rc = walk(w, body, 0, (tamis_header_t *)m->headers.v, m->headers.n);
    } else {
        /* no structure at all: the body as one text/plain leaf */
        ctype_t ct;
        tamis_part_t *p = new_part(w, 0, m->headers.v, m->headers.n, &ct);
        if (p)
            leaf_content(w, p, NULL, m->pbody.ptr, m->pbody.len);
        rc = m->oom;
    }
    if (body)
        g_object_unref(body);
    return rc;
}

int tamis__mime_walk(tamis_msg_t *m)
{
    pthread_once(&gmime_once, gmime_init_once);
    walk_t w = {.m = m};
    tamis_buf_init(&w.text, 0);
    tamis_buf_init(&w.invisible, 0);
    tamis_buf_init(&w.visible, 0);
    tamis__mime_stats_init(m);
    int rc = walk_top(&w);
    if (rc == 0)
        rc = finish_text(&w);
    tamis__mime_stats_finish(m, &w.mstats);
    tamis_buf_free(&w.text);
    tamis_buf_free(&w.invisible);
    tamis_buf_free(&w.visible);
    return rc < 0 ? rc : m->oom;
}
