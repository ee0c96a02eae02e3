/*
 * HTML rendering as SpamAssassin's HTML.pm does it, driven by libxml2's HTML SAX parser instead of
 * Perl's HTML::Parser: the same pre-parse substitutions, script/style text dropped, whitespace
 * elements turned into " ", "\n" or "\n\n" (with the trailing-space trimming of display_text),
 * text runs collapsed, title rendered, alt text not. Along the way it records what HTMLEval reads:
 * the "inside" tag balance, tag/element counters and ratios, obfuscation and backhair counts,
 * image area, font sizes, title/comment/anchor/script texts, and the link URIs (with anchor text,
 * resolved against <base href>).
 *
 * Statistics follow SpamAssassin's metadata->{html}, which holds the results of the last HTML part.
 * Known difference: libxml2 inserts implied and auto-closed elements that HTML::Parser does not
 * see.
 */
#include "html_style.h"
#include "msg_int.h"

#include <glib.h>
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_URI_LENGTH 8192
#define MAX_PIECES_TEXT (8u << 20) /* rendered bytes per part before we stop appending */

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
    xmlInitParser();
}

typedef struct {
    tamis_msg_t *m;
    tamis_buf_t *out, *invisible;
    tamis_buf_t *visible; /* the pieces not judged invisible (get_rendered_text(invisible => 0)) */
    bool last_ws;         /* last piece was a whitespace element */
    bool last_invisible;  /* last piece was invisible text */
    tamis__styles_t *styles;
    bool have_piece;
    size_t last_start;            /* offset of the last piece in out */
    long script, style, a, title; /* inside counters for text routing */
    long tags, elements, tags_seen, elements_seen, closed_extra, obfuscation;
    double image_area;
    GHashTable *inside;   /* tag → long balance (+1 offset so 0 is storable) */
    GHashTable *backhair; /* "N_M" keys */
    tamis_buf_t title_text, comment, anchor, script_text, anchor_cur;
    char *anchor_href; /* href of the open <a> */
    char *base_href;
    htmlParserCtxtPtr ctxt; /* to tell written tags from the ones libxml2 implies */
    const char *scan_pos;   /* input consumed by the events so far */
    const char *doc;        /* the document as given to libxml2 */
    size_t doc_len;
    char literal[64]; /* open literal element (iframe, xmp, textarea, plaintext) */
    const char *literal_start;
    tamis_buf_t pending; /* text not yet reported (joined across libxml2 callbacks) */
    char last_tail[32];  /* last characters of the previous text piece (obfuscation tests) */
    size_t last_tail_len;
} html_t;

static const char *const elements[] = {
    "a",      "abbr",       "acronym",  "address",  "area",     "b",       "base",     "bdo",
    "big",    "blockquote", "body",     "br",       "button",   "caption", "cite",     "code",
    "col",    "colgroup",   "dd",       "del",      "dfn",      "div",     "dl",       "dt",
    "em",     "fieldset",   "form",     "h1",       "h2",       "h3",      "h4",       "h5",
    "h6",     "head",       "hr",       "html",     "i",        "img",     "input",    "ins",
    "kbd",    "label",      "legend",   "li",       "link",     "map",     "meta",     "noscript",
    "object", "ol",         "optgroup", "option",   "p",        "param",   "pre",      "q",
    "samp",   "script",     "select",   "small",    "span",     "strong",  "style",    "sub",
    "sup",    "table",      "tbody",    "td",       "textarea", "tfoot",   "th",       "thead",
    "title",  "tr",         "tt",       "ul",       "var",      "applet",  "basefont", "center",
    "dir",    "font",       "frame",    "frameset", "iframe",   "isindex", "menu",     "noframes",
    "s",      "strike",     "u",        "nobr",     "x-sigsep", "x-tab",   NULL};
static const char *const text_style_tags[] = {"body", "font", "table", "tr",       "th",
                                              "td",   "big",  "small", "basefont", "marquee",
                                              "span", "p",    "div",   "a",        NULL};
static const char *const tricks[] = {"bgsound", "embed", "listing", "plaintext", "xmp", NULL};

/* HTML.pm's html_tests: a font face that is not a list of (optionally quoted) names. */
static const char font_face_ok[] = "^\\s*[\"'.]?[a-z ][a-z -]*[a-z]\\d?[\"']?"
                                   "(?:,\\s*[\"']?[a-z][a-z -]*[a-z]\\d?[\"']?)*;?$";
static GRegex *font_face_re;

static void font_face_init(void)
{
    font_face_re = g_regex_new(font_face_ok, G_REGEX_CASELESS | G_REGEX_RAW, 0, NULL);
}

static bool font_face_bad(const char *face)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, font_face_init);
    /* a face too long to be a font list is bad without running the regex */
    size_t n = strnlen(face, 4096);
    if (n >= 4096)
        return true;
    return font_face_re && !g_regex_match_full(font_face_re, face, (gssize)n, 0, 0, NULL, NULL);
}

static bool in_list(const char *const *l, const char *s)
{
    for (; *l; l++)
        if (!strcmp(*l, s))
            return true;
    return false;
}

/* ---- text pieces (display_text) ------------------------------------------------------------- */

static void piece_ws(html_t *h, const char *ws)
{
    tamis_buf_t *o = h->out;
    /* drop a trailing space of the previous (text) piece */
    if (h->have_piece && !h->last_ws && !h->last_invisible && o->len > h->last_start &&
        o->data[o->len - 1] == ' ') {
        o->len--;
        o->data[o->len] = '\0';
        /* that piece was visible text, so it is also the end of the visible text */
        if (h->visible && h->visible->len && h->visible->data[h->visible->len - 1] == ' ') {
            h->visible->len--;
            h->visible->data[h->visible->len] = '\0';
        }
    }
    h->last_start = o->len;
    tamis_buf_puts(o, ws);
    if (h->visible)
        tamis_buf_puts(h->visible, ws);
    /* the obfuscation/backhair tests look at the last piece, here this whitespace */
    h->last_tail[0] = ws[strlen(ws) - 1];
    h->last_tail_len = 1;
    h->last_ws = true;
    h->last_invisible = false;
    h->have_piece = true;
}

static void piece_text(html_t *h, const char *t, size_t n, bool invisible)
{
    tamis_buf_t *o = h->out;
    if (o->len > MAX_PIECES_TEXT)
        return;
    size_t start = o->len;
    bool prev_ws = h->have_piece && h->last_ws && !invisible;
    h->last_start = start;
    for (size_t i = 0; i < n;) {
        if (strchr(" \t\n\r\f\v", t[i]) && t[i]) {
            while (i < n && t[i] && strchr(" \t\n\r\f\v", t[i]))
                i++;
            if (!(prev_ws && o->len == start))
                tamis_buf_putc(o, ' ');
            continue;
        }
        tamis_buf_putc(o, t[i++]);
    }
    if (invisible)
        tamis_buf_append(h->invisible, o->data + start, o->len - start);
    else if (h->visible)
        tamis_buf_append(h->visible, o->data + start, o->len - start);
    h->last_ws = false;
    h->last_invisible = invisible;
    h->have_piece = true;
}

static bool has_nonspace(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\n\r\f\v", t[i]) || !t[i])
            return true;
    return false;
}

static bool text_invisible(html_t *h, const char *t, size_t n)
{
    if (!has_nonspace(t, n))
        return false;
    bool low = false, invalid = false;
    bool inv = tamis__style_invisible(h->styles, &low, &invalid) != 0;
    if (low)
        tamis__stat_set(h->m->arena, &h->m->html.stats, "font_low_contrast", 1);
    if (invalid)
        tamis__stat_set(h->m->arena, &h->m->html.stats, "font_invalid_color", 1);
    return inv;
}

/* Characters HTML.pm treats as non-word for obfuscation: \s and ASCII punctuation. */
static bool obf_sep(unsigned char c)
{
    return c <= 0x20 || (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) ||
           (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

static size_t word_len_start(const char *t, size_t n)
{
    size_t i = 0;
    while (i < n && !obf_sep((unsigned char)t[i]))
        i++;
    return i;
}

static void text_tests(html_t *h, const char *t, size_t n)
{
    if (!h->last_tail_len || !n)
        return;
    unsigned char last = (unsigned char)h->last_tail[h->last_tail_len - 1];
    if (!obf_sep((unsigned char)t[0]) && !obf_sep(last))
        h->obfuscation++;
    size_t e = 0;
    while (e < h->last_tail_len && !obf_sep((unsigned char)h->last_tail[h->last_tail_len - 1 - e]))
        e++;
    size_t s = word_len_start(t, n);
    if (e >= 1 && e <= 7 && s >= 1 && s <= 7) {
        char key[16];
        snprintf(key, sizeof(key), "%zu_%zu", e, s);
        g_hash_table_add(h->backhair, g_strdup(key));
    }
}

static void remember_tail(html_t *h, const char *t, size_t n)
{
    size_t k = n < sizeof(h->last_tail) ? n : sizeof(h->last_tail);
    memcpy(h->last_tail, t + n - k, k);
    h->last_tail_len = k;
}

static void text_event(html_t *h, const char *t, size_t n)
{
    if (h->script > 0) {
        tamis_buf_append(&h->script_text, t, n);
        return;
    }
    if (h->style > 0)
        return;
    if (h->a > 0)
        tamis_buf_append(&h->anchor_cur, t, n);
    if (h->title > 0)
        tamis_buf_append(&h->title_text, t, n);
    bool inv = text_invisible(h, t, n);
    text_tests(h, t, n);
    piece_text(h, t, n, inv);
    remember_tail(h, h->out->data ? h->out->data + h->last_start : "", h->out->len - h->last_start);
}

/* ---- tags ----------------------------------------------------------------------------------- */

static const char *attr_get(const xmlChar **atts, const char *name)
{
    for (int i = 0; atts && atts[i]; i += 2)
        if (!strcasecmp((const char *)atts[i], name))
            return atts[i + 1] ? (const char *)atts[i + 1] : "";
    return NULL;
}

/* Is the attribute written without a value ("<font face>")? */
static bool attr_bare(const xmlChar **atts, const char *name)
{
    for (int i = 0; atts && atts[i]; i += 2)
        if (!strcasecmp((const char *)atts[i], name))
            return atts[i + 1] == NULL;
    return false;
}

/* Returns the balance after the change (HTML.pm's inside{tag}, clamped at 0). */
static void inside_add(html_t *h, const char *tag, int num, bool *seen_before)
{
    gpointer v = g_hash_table_lookup(h->inside, tag);
    *seen_before = v != NULL;
    long cur = v ? (long)GPOINTER_TO_SIZE(v) - 1 : 0;
    cur += num;
    if (cur < 0) {
        cur = 0;
        h->closed_extra++;
    }
    g_hash_table_replace(h->inside, g_strdup(tag), GSIZE_TO_POINTER((size_t)(cur + 1)));
}

static char *trim_uri(tamis_arena_t *a, const char *u)
{
    while (*u && (g_ascii_isspace(*u) || (u[0] == '\xc2' && u[1] == '\xa0'))) {
        u += (*u == '\xc2') ? 2 : 1;
    }
    size_t n = strlen(u);
    while (n && g_ascii_isspace(u[n - 1]))
        n--;
    while (n >= 2 && u[n - 2] == '\xc2' && u[n - 1] == '\xa0')
        n -= 2;
    return tamis_arena_strndup(a, u, n > MAX_URI_LENGTH ? MAX_URI_LENGTH : n);
}

/* target_uri: resolve a relative link against <base href> (simplified RFC 3986 merge). */
static char *resolve(html_t *h, const char *u)
{
    tamis_arena_t *a = h->m->arena;
    size_t sch = strspn(u, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    if ((sch && u[sch] == ':') || !h->base_href)
        return (char *)u;
    const char *b = h->base_href;
    if (u[0] == '/' && u[1] == '/') {
        const char *c = strchr(b, ':');
        return c ? tamis_arena_printf(a, "%.*s%s", (int)(c - b + 1), b, u) : (char *)u;
    }
    const char *hs = strstr(b, "://");
    const char *path = hs ? strchr(hs + 3, '/') : NULL;
    if (u[0] == '/')
        return path ? tamis_arena_printf(a, "%.*s%s", (int)(path - b), b, u)
                    : tamis_arena_printf(a, "%s%s", b, u);
    const char *slash = strrchr(b, '/');
    return tamis_arena_printf(a, "%.*s%s", slash ? (int)(slash - b + 1) : (int)strlen(b), b, u);
}

static void push_uri(html_t *h, const char *tag, const char *raw)
{
    char *u = trim_uri(h->m->arena, raw);
    if (!u || !*u)
        return;
    bool special = !strncasecmp(u, "data:", 5) || !strncasecmp(u, "mailto:", 7) ||
                   !strncasecmp(u, "file:", 5) || !strncasecmp(u, "cid:", 4) ||
                   !strncasecmp(u, "tel:", 4);
    char *t = special ? u : resolve(h, u);
    if (t && *t)
        tamis__uri_add_html(h->m, t, strlen(t), tag, NULL);
}

/* s@^([a-z]+:/{0,2}[^/]+/.*?)[^/\.]+\.[^/\.]{2,4}$@$1@i: drop a trailing "name.ext". */
static void strip_base_file(char *b)
{
    char *p = strchr(b, ':');
    if (!p)
        return;
    p++;
    for (int i = 0; i < 2 && *p == '/'; i++)
        p++;
    char *slash = strchr(p, '/');
    if (!slash || slash == p)
        return;
    char *last = strrchr(b, '/');
    char *name = last + 1;
    char *dot = strrchr(name, '.');
    if (!dot || dot == name || strchr(name, '.') != dot)
        return;
    size_t ext = strlen(dot + 1);
    if (ext < 2 || ext > 4)
        return;
    *name = '\0';
}

static void html_uri(html_t *h, const char *tag, const xmlChar **atts)
{
    const char *v;
    if (!strcmp(tag, "body") || !strcmp(tag, "table") || !strcmp(tag, "tr") || !strcmp(tag, "td")) {
        if ((v = attr_get(atts, "background")))
            push_uri(h, tag, v);
    } else if (!strcmp(tag, "a") || !strcmp(tag, "area") || !strcmp(tag, "link")) {
        if ((v = attr_get(atts, "href")))
            push_uri(h, tag, v);
        if ((v = attr_get(atts, "data-saferedirecturl")))
            push_uri(h, tag, v);
    } else if (!strcmp(tag, "img") || !strcmp(tag, "frame") || !strcmp(tag, "iframe") ||
               !strcmp(tag, "embed") || !strcmp(tag, "script") || !strcmp(tag, "bgsound")) {
        if ((v = attr_get(atts, "src")))
            push_uri(h, tag, v);
    } else if (!strcmp(tag, "form")) {
        if ((v = attr_get(atts, "action")))
            push_uri(h, tag, v);
    } else if (!strcmp(tag, "base")) {
        if ((v = attr_get(atts, "href")) && *v) {
            push_uri(h, tag, v);
            char *b = trim_uri(h->m->arena, v);
            if (b && (!strncasecmp(b, "http:", 5) || !strncasecmp(b, "https:", 6) ||
                      !strncasecmp(b, "ftp:", 4))) {
                strip_base_file(b);
                size_t l = strlen(b);
                h->base_href = l && b[l - 1] == '/' ? b : tamis_arena_printf(h->m->arena, "%s/", b);
            }
        }
    } else if (!strcmp(tag, "meta")) {
        const char *he = attr_get(atts, "http-equiv"), *c = attr_get(atts, "content");
        if (he && c && strcasestr(he, "refresh")) {
            const char *p = strcasestr(c, "url");
            if (p) {
                p += 3;
                while (g_ascii_isspace(*p))
                    p++;
                if (*p == '=') {
                    p++;
                    while (g_ascii_isspace(*p))
                        p++;
                    size_t l = strcspn(p, ";");
                    while (l && g_ascii_isspace(p[l - 1]))
                        l--;
                    char *u = tamis_arena_strndup(h->m->arena, p, l);
                    if (u)
                        push_uri(h, tag, u);
                }
            }
        }
    }
}

static void html_tests(html_t *h, const char *tag, const xmlChar **atts)
{
    tamis_msg_t *m = h->m;
    const char *v;
    /* a bare "face" has the value "face" in HTML::Parser (libxml2 gives NULL, attr_get "") */
    if (!strcmp(tag, "font") && (v = attr_get(atts, "face")) &&
        font_face_bad(*v || !attr_bare(atts, "face") ? v : "face"))
        tamis__stat_set(m->arena, &m->html.stats, "font_face_bad", 1);
    if (!strcmp(tag, "img") && h->a > 0)
        tamis_buf_puts(&h->anchor_cur, "<img>\n");
    if (!strcmp(tag, "img")) {
        const char *w = attr_get(atts, "width"), *ht = attr_get(atts, "height");
        if (w && ht) {
            char *e;
            long wi = strtol(w, &e, 10);
            if (e == w || wi < 0 || (*e && strcmp(e, "%")))
                wi = 0;
            else if (*e == '%')
                wi *= 8;
            long hi = strtol(ht, &e, 10);
            if (e == ht || hi < 0 || (*e && strcmp(e, "%")))
                hi = 0;
            else if (*e == '%')
                hi *= 6;
            h->image_area += (double)(wi > 0 ? wi : 200) * (double)(hi > 0 ? hi : 200);
        }
    }
    if (!strcmp(tag, "form") && (v = attr_get(atts, "action")) && strcasestr(v, "mailto:"))
        tamis__stat_set(m->arena, &m->html.stats, "form_action_mailto", 1);
    if (!strcmp(tag, "object") || !strcmp(tag, "embed"))
        tamis__stat_set(m->arena, &m->html.stats, "embeds", 1);
    if (!strcmp(tag, "a")) {
        const char *href = attr_get(atts, "href");
        h->anchor_href = trim_uri(m->arena, href ? href : "");
        /* HTML.pm keys anchor text by the unresolved href ("" without one), which makes that
         * string a URI of its own */
        if (h->anchor_href)
            tamis__uri_add_html(m, h->anchor_href, strlen(h->anchor_href), "a", NULL);
        tamis_buf_reset(&h->anchor_cur);
    }
}

static void html_ws(html_t *h, const char *tag)
{
    if (!strcmp(tag, "br") || !strcmp(tag, "div"))
        piece_ws(h, "\n");
    else if (!strcmp(tag, "li") || !strcmp(tag, "th") || !strcmp(tag, "td") || !strcmp(tag, "dt") ||
             !strcmp(tag, "dd") || !strcmp(tag, "embed") ||
             (tag[0] == 'h' && tag[1] >= '1' && tag[1] <= '6' && !tag[2]))
        piece_ws(h, " ");
    else if (!strcmp(tag, "p") || !strcmp(tag, "hr") || !strcmp(tag, "blockquote") ||
             !strcmp(tag, "pre") || !strcmp(tag, "listing") || !strcmp(tag, "plaintext") ||
             !strcmp(tag, "xmp") || !strcmp(tag, "title"))
        piece_ws(h, "\n\n");
}

static void route_counters(html_t *h, const char *tag, int num)
{
    long *c = !strcmp(tag, "script")  ? &h->script
              : !strcmp(tag, "style") ? &h->style
              : !strcmp(tag, "a")     ? &h->a
              : !strcmp(tag, "title") ? &h->title
                                      : NULL;
    if (!c)
        return;
    *c += num;
    if (*c < 0)
        *c = 0;
}

static void end_anchor(html_t *h)
{
    if (h->anchor_cur.len) {
        tamis_buf_append(&h->anchor, h->anchor_cur.data, h->anchor_cur.len);
        tamis_buf_putc(&h->anchor, '\n');
    }
    if (h->anchor_href && *h->anchor_href && h->anchor_cur.len) {
        char *t = resolve(h, h->anchor_href);
        if (t)
            tamis__uri_add_html(h->m, t, strlen(t), "a", h->anchor_cur.data);
    }
}

static void text_event(html_t *h, const char *t, size_t n);

/* libxml2 splits text at entities and buffer ends; HTML::Parser reports one text event between
 * two tags, and its obfuscation tests depend on that, so text is joined until the next tag. */
static void flush_text(html_t *h)
{
    if (!h->pending.len)
        return;
    tamis_buf_t t = h->pending;
    tamis_buf_init(&h->pending, t.max);
    text_event(h, t.data, t.len);
    tamis_buf_free(&t);
}

static void html_tag(html_t *h, const char *tag, const xmlChar **atts, int num)
{
    flush_text(h);
    bool ns = false;
    if ((tag[0] == 'o' && tag[1] == ':') || (tag[0] == 's' && tag[1] == 't' && strchr(tag, ':')))
        ns = true;
    bool elem = in_list(elements, tag);
    bool seen;
    inside_add(h, tag, num, &seen);
    if (elem || ns) {
        h->elements++;
        if (!seen)
            h->elements_seen++;
    }
    h->tags++;
    if (!seen)
        h->tags_seen++;
    if (!strcmp(tag, "a") && num < 0 && h->a > 0)
        end_anchor(h);
    if (!strcmp(tag, "title") && num < 0 && h->title > 0)
        tamis_buf_putc(&h->title_text, '\n');
    route_counters(h, tag, num);
    if (ns || !(elem || in_list(tricks, tag)))
        return;
    if (in_list(text_style_tags, tag))
        tamis__style_tag(h->styles, tag, (const char *const *)atts, num);
    html_ws(h, tag);
    if (num == 1) {
        html_uri(h, tag, atts);
        html_tests(h, tag, atts);
    }
}

/* ---- keeping libxml2's events faithful to the written markup ----------------------------------
 * libxml2 reports elements it implies or auto-closes, and drops end tags of elements that are not
 * open; HTML::Parser reports exactly what is written. So every event is checked against the input
 * (the whole document is in memory): implied tags are ignored, and tags libxml2 swallowed are
 * replayed from the raw text between events. Literal elements (iframe, xmp, textarea, plaintext)
 * are text up to their end tag, as in HTML::Parser. */

/* libxml2 parses its own copy of the document and may shift it, so positions are computed as
 * absolute offsets and mapped into our copy (same bytes: UTF-8 in, no conversion). */
static const char *in_base(html_t *h)
{
    return h->doc;
}

static const char *in_cur(html_t *h)
{
    if (!h->ctxt || !h->ctxt->input || !h->ctxt->input->cur || !h->ctxt->input->base)
        return NULL;
    size_t off =
        (size_t)h->ctxt->input->consumed + (size_t)(h->ctxt->input->cur - h->ctxt->input->base);
    return off <= h->doc_len ? h->doc + off : NULL;
}

/* End of the tag being reported: start tags are reported before their '>' is consumed. */
static const char *tag_end(html_t *h)
{
    const char *cur = in_cur(h);
    if (!cur)
        return NULL;
    if (*cur == '>')
        return cur + 1;
    if (cur[0] == '/' && cur[1] == '>')
        return cur + 2;
    return cur;
}

/* The '<' of the written tag being reported, or NULL when libxml2 implied it. */
static const char *written_tag(html_t *h, const char *tag, bool end)
{
    const char *base = in_base(h), *cur = tag_end(h);
    if (!base || !cur || cur <= base || cur[-1] != '>')
        return NULL;
    size_t tl = strlen(tag);
    const char *lim = cur - 1 - (cur - 1 - base > 8192 ? 8192 : cur - 1 - base);
    /* a written tag lies in the input no earlier event has consumed */
    if (h->scan_pos && h->scan_pos >= cur)
        return NULL;
    if (h->scan_pos && h->scan_pos > lim)
        lim = h->scan_pos;
    /* the nearest "<name" (or "</name") before the '>': attribute values may hold other '<' */
    for (const char *p = cur - 2; p >= lim; p--) {
        if (*p != '<')
            continue;
        const char *q = p + 1;
        if (end != (*q == '/'))
            continue;
        q += end;
        if ((size_t)(cur - q) > tl && !strncasecmp(q, tag, tl) && !g_ascii_isalnum(q[tl]) &&
            q[tl] != '-' && q[tl] != ':')
            return p;
    }
    return NULL;
}

static const char *skip_to(const char *p, const char *e, const char *what)
{
    const char *f = p < e ? memmem(p, (size_t)(e - p), what, strlen(what)) : NULL;
    return f ? f + strlen(what) : e;
}

static size_t name_len(const char *p, const char *e)
{
    size_t n = 0;
    while (p + n < e && (g_ascii_isalnum(p[n]) || p[n] == ':' || p[n] == '_' || p[n] == '-'))
        n++;
    return n;
}

/* End of a tag starting at p (quotes respected). */
static const char *tag_close(const char *p, const char *e)
{
    char q = 0;
    for (; p < e; p++) {
        if (q) {
            if (*p == q)
                q = 0;
        } else if (*p == '"' || *p == '\'') {
            q = *p;
        } else if (*p == '>') {
            return p + 1;
        }
    }
    return e;
}

static void html_tag(html_t *h, const char *tag, const xmlChar **atts, int num);

/* Replays the tags written in [scan_pos, limit) that libxml2 did not report. */
static void catch_up(html_t *h, const char *limit)
{
    const char *p = h->scan_pos, *e = limit;
    if (!p || !e || e <= p) {
        if (e && (!p || e > p))
            h->scan_pos = e;
        return;
    }
    bool raw = h->script > 0 || h->style > 0;
    while (p < e) {
        const char *lt = memchr(p, '<', (size_t)(e - p));
        if (!lt || lt + 1 >= e)
            break;
        /* whitespace libxml2 skipped (after the doctype, between head and body …) is text to
         * HTML::Parser */
        if (lt > p && !raw && !has_nonspace(p, (size_t)(lt - p)))
            tamis_buf_append(&h->pending, p, (size_t)(lt - p));
        const char *q = lt + 1;
        if (!strncmp(q, "!--", 3)) {
            p = skip_to(q + 3, e, "-->");
            continue;
        }
        if (*q == '!' || *q == '?') {
            p = tag_close(q, e);
            continue;
        }
        bool end = *q == '/';
        q += end;
        size_t nl = g_ascii_isalpha(*q) ? name_len(q, e) : 0;
        if (!nl || raw) {
            p = lt + 1;
            continue;
        }
        char tag[64];
        snprintf(tag, sizeof(tag), "%.*s", (int)(nl < 63 ? nl : 63), q);
        for (char *c = tag; *c; c++)
            *c = g_ascii_tolower(*c);
        p = tag_close(q + nl, e);
        html_tag(h, tag, NULL, end ? -1 : 1);
    }
    if (p < e && !raw && !memchr(p, '<', (size_t)(e - p)) && !has_nonspace(p, (size_t)(e - p)))
        tamis_buf_append(&h->pending, p, (size_t)(e - p));
    h->scan_pos = e;
}

static bool literal_tag(const char *tag)
{
    return !strcmp(tag, "iframe") || !strcmp(tag, "xmp") || !strcmp(tag, "textarea") ||
           !strcmp(tag, "plaintext");
}

static void lower_name(char *tag, size_t sz, const xmlChar *name)
{
    snprintf(tag, sz, "%s", (const char *)name);
    for (char *c = tag; *c; c++)
        *c = g_ascii_tolower(*c);
}

static void text_event(html_t *h, const char *t, size_t n);

static void on_start(void *ud, const xmlChar *name, const xmlChar **atts)
{
    html_t *h = ud;
    if (h->literal[0])
        return;
    char tag[64];
    lower_name(tag, sizeof(tag), name);
    const char *lt = written_tag(h, tag, false);
    if (!lt)
        return;
    catch_up(h, lt);
    html_tag(h, tag, atts, 1);
    h->scan_pos = tag_end(h);
    if (literal_tag(tag)) {
        snprintf(h->literal, sizeof(h->literal), "%s", tag);
        h->literal_start = h->scan_pos;
    }
}

static void on_end(void *ud, const xmlChar *name)
{
    html_t *h = ud;
    char tag[64];
    lower_name(tag, sizeof(tag), name);
    const char *lt = written_tag(h, tag, true);
    if (h->literal[0]) {
        if (!lt || strcmp(tag, h->literal))
            return;
        h->literal[0] = '\0';
        if (h->literal_start && lt > h->literal_start)
            text_event(h, h->literal_start, (size_t)(lt - h->literal_start));
        h->scan_pos = lt;
    }
    if (!lt)
        return;
    catch_up(h, lt);
    html_tag(h, tag, NULL, -1);
    h->scan_pos = tag_end(h);
}

static void on_text(void *ud, const xmlChar *ch, int len)
{
    html_t *h = ud;
    if (h->literal[0])
        return;
    /* the raw text of this event ends at cur; tags before it were swallowed */
    const char *cur = in_cur(h);
    if (cur && h->scan_pos && cur > h->scan_pos) {
        const char *lt = memrchr(h->scan_pos, '>', (size_t)(cur - h->scan_pos));
        if (lt)
            catch_up(h, lt + 1);
    }
    tamis_buf_append(&h->pending, ch, (size_t)len);
    if (cur && (!h->scan_pos || cur > h->scan_pos))
        h->scan_pos = cur;
}

static void on_comment(void *ud, const xmlChar *v)
{
    html_t *h = ud;
    if (h->literal[0])
        return;
    const char *cur = in_cur(h);
    const char *open = cur && h->scan_pos && cur > h->scan_pos
                           ? memmem(h->scan_pos, (size_t)(cur - h->scan_pos), "<!--", 4)
                           : NULL;
    if (open)
        catch_up(h, open);
    flush_text(h);
    if (v[0] == '\001') /* a bogus comment rewritten by preprocess(): record it as written */
        tamis_buf_printf(&h->comment, "<!%s>\n", (const char *)v + 1);
    else
        tamis_buf_printf(&h->comment, "<!--%s-->\n", (const char *)v);
    if (cur)
        h->scan_pos = cur;
}

static void on_doctype(void *ud, const xmlChar *name, const xmlChar *eid, const xmlChar *sid)
{
    (void)eid;
    (void)name;
    (void)sid;
    html_t *h = ud;
    h->elements++;
    h->tags++;
    g_hash_table_replace(h->inside, g_strdup("!doctype"), GSIZE_TO_POINTER(1));
}

/* ---- driver --------------------------------------------------------------------------------- */

/* The substitutions HTML.pm makes before parsing. */
/* "<!x...>" that is neither a comment nor a declaration: HTML::Parser reports it as a comment
 * ("bogus comment"), libxml2 as text. It is rewritten as a marked comment. Returns the index after
 * it, or 0 if it is not one. */
static size_t bogus_comment(const char *in, size_t n, size_t i, tamis_buf_t *o)
{
    if (i + 2 >= n || in[i + 1] != '!' || in[i + 2] == '-' || g_ascii_isalpha(in[i + 2]))
        return 0;
    const char *gt = memchr(in + i + 2, '>', n - i - 2);
    if (!gt)
        return 0;
    tamis_buf_puts(o, "<!--\001");
    tamis_buf_append(o, in + i + 2, (size_t)(gt - in - i - 2));
    tamis_buf_puts(o, "-->");
    return (size_t)(gt - in) + 1;
}

/* "&reg" without ';' before a non-alphanumeric: HTML::Parser decodes it, libxml2 does not. */
static size_t entity_no_semi(const char *in, size_t n, size_t i, tamis_buf_t *o)
{
    size_t j = i + 1;
    while (j < n && j - i <= 10 && g_ascii_isalnum(in[j]))
        j++;
    if (j == i + 1 || j - i > 10 || (j < n && in[j] == ';') || !g_ascii_isalpha(in[i + 1]))
        return 0;
    char name[16];
    memcpy(name, in + i + 1, j - i - 1);
    name[j - i - 1] = '\0';
    if (!htmlEntityLookup((const xmlChar *)name))
        return 0;
    tamis_buf_append(o, in + i, j - i);
    tamis_buf_putc(o, ';');
    return j;
}

/* The substitutions HTML.pm makes before parsing (&nbsp;, <tag/>, curly quotes), plus the two
 * rewrites above that make libxml2 tokenize like HTML::Parser. */
static char *preprocess(tamis_arena_t *a, const char *in, size_t n, size_t *outn)
{
    tamis_buf_t o;
    tamis_buf_init(&o, 0);
    tamis_buf_reserve(&o, n + 16);
    for (size_t i = 0; i < n;) {
        size_t nx;
        if (in[i] == '&' && n - i >= 6 && !memcmp(in + i, "&nbsp;", 6)) {
            tamis_buf_putc(&o, ' ');
            i += 6;
        } else if (in[i] == '&' && (nx = entity_no_semi(in, n, i, &o)) != 0) {
            i = nx;
        } else if (n - i >= 3 && !memcmp(in + i, "\xe2\x80", 2) &&
                   ((unsigned char)in[i + 2] == 0x9c || (unsigned char)in[i + 2] == 0x9d)) {
            tamis_buf_putc(&o, '"');
            i += 3;
        } else if (in[i] == '<' && (nx = bogus_comment(in, n, i, &o)) != 0) {
            i = nx;
        } else if (in[i] == '<' && i + 1 < n && (g_ascii_isalnum(in[i + 1]) || in[i + 1] == '_')) {
            /* <tag/> and <tag /> → <tag> */
            size_t j = i + 1;
            while (j < n && (g_ascii_isalnum(in[j]) || in[j] == '_'))
                j++;
            size_t sp = j;
            while (sp < n && g_ascii_isspace(in[sp]))
                sp++;
            tamis_buf_append(&o, in + i, j - i);
            if (sp + 1 < n && in[sp] == '/' && in[sp + 1] == '>') {
                tamis_buf_putc(&o, '>');
                i = sp + 2;
            } else {
                i = j;
            }
        } else {
            tamis_buf_putc(&o, in[i++]);
        }
    }
    char *r = o.err ? NULL : tamis_arena_strndup(a, o.data ? o.data : "", o.len);
    *outn = o.len;
    tamis_buf_free(&o);
    return r;
}

static void area_set(tamis_msg_t *m, const char *area, tamis_buf_t *b)
{
    tamis__area_t *ar = m->html.areas.v;
    size_t i;
    for (i = 0; i < m->html.areas.n; i++)
        if (!strcmp(ar[i].area, area))
            break;
    if (i == m->html.areas.n) {
        ar = tamis__vec_push(m->arena, &m->html.areas, sizeof(*ar));
        if (!ar) {
            m->oom = TAMIS_ENOMEM;
            return;
        }
        ar->area = area;
    } else {
        ar = &ar[i];
    }
    ar->text = tamis_arena_strndup(m->arena, b->data ? b->data : "", b->len);
    if (!ar->text)
        m->oom = TAMIS_ENOMEM;
}

static void publish_tags(html_t *h)
{
    tamis_msg_t *m = h->m;
    m->html.tags.n = 0; /* the last HTML part's results win, as in metadata->{html} */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, h->inside);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        tamis__tag_t *t = tamis__vec_push(m->arena, &m->html.tags, sizeof(*t));
        if (!t) {
            m->oom = TAMIS_ENOMEM;
            return;
        }
        t->name = tamis_arena_strdup(m->arena, k);
        t->starts = (long)GPOINTER_TO_SIZE(v) - 1;
        if (!t->name)
            m->oom = TAMIS_ENOMEM;
    }
}

static void publish(html_t *h, size_t text_len_in)
{
    tamis_msg_t *m = h->m;
    tamis_arena_t *a = m->arena;
    tamis__vec_t *s = &m->html.stats;
    tamis__stat_set(a, s, "html", 1);
    tamis__stat_set(a, s, "html_message", 1);
    tamis__stat_set(a, s, "image_area", h->image_area);
    tamis__stat_set(a, s, "length", (double)text_len_in);
    tamis__stat_set(a, s, "min_size", h->styles->min_size);
    tamis__stat_set(a, s, "max_size", h->styles->max_size);
    if (h->tags) {
        tamis__stat_set(a, s, "closed_extra_ratio", (double)h->closed_extra / (double)h->tags);
        /* HTML.pm only publishes ratios whose counters exist (were incremented once) */
        if (h->elements)
            tamis__stat_set(a, s, "bad_tag_ratio",
                            (double)(h->tags - h->elements) / (double)h->tags);
        if (h->obfuscation)
            tamis__stat_set(a, s, "obfuscation_ratio", (double)h->obfuscation / (double)h->tags);
    }
    if (h->tags_seen && h->elements_seen)
        tamis__stat_set(a, s, "non_element_ratio",
                        (double)(h->tags_seen - h->elements_seen) / (double)h->tags_seen);
    if (g_hash_table_size(h->backhair))
        tamis__stat_set(a, s, "backhair_count", g_hash_table_size(h->backhair));
    publish_tags(h);
    area_set(m, "title", &h->title_text);
    area_set(m, "comment", &h->comment);
    area_set(m, "anchor", &h->anchor);
    area_set(m, "script", &h->script_text);
}

/* Rendered-text statistics Node::rendered adds (html_length, non_space_len, ratio). */
static void publish_text_stats(tamis_msg_t *m, const char *t, size_t n, size_t in_len)
{
    size_t chars = 0, spaces = 0;
    const unsigned char *u = (const unsigned char *)t;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        if ((c & 0xC0) != 0x80)
            chars++;
        if (c == ' ' || (c >= 0x09 && c <= 0x0d))
            spaces++;
        /* Unicode \s: U+0085, U+00A0, U+1680, U+2000-200A, U+2028/9, U+202F, U+205F, U+3000 */
        else if (c == 0xC2 && i + 1 < n && (u[i + 1] == 0x85 || u[i + 1] == 0xA0))
            spaces++;
        else if (i + 2 < n && ((c == 0xE1 && u[i + 1] == 0x9A && u[i + 2] == 0x80) ||
                               (c == 0xE2 && u[i + 1] == 0x80 &&
                                (u[i + 2] <= 0x8A || u[i + 2] == 0xA8 || u[i + 2] == 0xA9 ||
                                 u[i + 2] == 0xAF)) ||
                               (c == 0xE2 && u[i + 1] == 0x81 && u[i + 2] == 0x9F) ||
                               (c == 0xE3 && u[i + 1] == 0x80 && u[i + 2] == 0x80)))
            spaces++;
    }
    tamis__vec_t *s = &m->html.stats;
    tamis__stat_set(m->arena, s, "html_length", (double)chars);
    tamis__stat_set(m->arena, s, "non_space_len", (double)(chars - spaces));
    if (in_len)
        tamis__stat_set(m->arena, s, "ratio", ((double)in_len - (double)chars) / (double)in_len);
}

static void html_free(html_t *h)
{
    g_hash_table_destroy(h->inside);
    g_hash_table_destroy(h->backhair);
    tamis_buf_free(&h->title_text);
    tamis_buf_free(&h->comment);
    tamis_buf_free(&h->anchor);
    tamis_buf_free(&h->script_text);
    tamis_buf_free(&h->anchor_cur);
    tamis_buf_free(&h->pending);
}

/* The library never prints: parser diagnostics are dropped. */
static void quiet(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static void run_parser(html_t *h, const char *doc, size_t n)
{
    htmlParserCtxtPtr ctxt = htmlCreateMemoryParserCtxt(doc, (int)n);
    if (!ctxt)
        return;
    htmlSAXHandler sax;
    memset(&sax, 0, sizeof(sax));
    sax.startElement = on_start;
    sax.endElement = on_end;
    sax.characters = on_text;
    sax.cdataBlock = on_text;
    sax.ignorableWhitespace = on_text;
    sax.comment = on_comment;
    sax.internalSubset = on_doctype;
    sax.warning = quiet;
    sax.error = quiet;
    sax.fatalError = quiet;
    memcpy(ctxt->sax, &sax, sizeof(sax));
    ctxt->userData = h;
    h->ctxt = ctxt;
    h->doc = doc;
    h->doc_len = n;
    h->scan_pos = doc;
    htmlCtxtUseOptions(ctxt, HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR |
                                 HTML_PARSE_NOWARNING | HTML_PARSE_NOIMPLIED |
                                 HTML_PARSE_IGNORE_ENC);
    xmlSwitchEncoding(ctxt, XML_CHAR_ENCODING_UTF8);
    htmlParseDocument(ctxt);
    flush_text(h);
    const char *end = doc + n;
    if (h->literal[0] && h->literal_start && h->literal_start < end) {
        /* an unclosed literal element: HTML::Parser reads the rest as its text */
        h->literal[0] = '\0';
        text_event(h, h->literal_start, (size_t)(end - h->literal_start));
    } else {
        /* libxml2 drops text after the root element; HTML::Parser reports it */
        const char *from = h->scan_pos && h->scan_pos < end ? h->scan_pos : end;
        catch_up(h, end);
        const char *gt = memrchr(from, '>', (size_t)(end - from));
        const char *tail = gt ? gt + 1 : from;
        if (tail < end && !memchr(tail, '<', (size_t)(end - tail)))
            text_event(h, tail, (size_t)(end - tail));
    }
    if (ctxt->myDoc)
        xmlFreeDoc(ctxt->myDoc);
    h->ctxt = NULL;
    htmlFreeParserCtxt(ctxt);
}

int tamis__html_render(tamis_msg_t *m, const char *html, size_t len, tamis_buf_t *text,
                       tamis_buf_t *invisible, tamis_buf_t *visible)
{
    pthread_once(&xml_once, xml_init);
    if (len > INT32_MAX)
        len = INT32_MAX;
    size_t n;
    char *doc = preprocess(m->arena, html, len, &n);
    if (!doc)
        return TAMIS_ENOMEM;
    html_t h = {.m = m, .out = text, .invisible = invisible, .visible = visible};
    h.styles = tamis_arena_alloc(m->arena, sizeof(*h.styles));
    if (!h.styles)
        return TAMIS_ENOMEM;
    tamis__style_init(h.styles);
    h.inside = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    h.backhair = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    tamis_buf_init(&h.title_text, 1 << 20);
    tamis_buf_init(&h.comment, 1 << 20);
    tamis_buf_init(&h.anchor, 1 << 20);
    tamis_buf_init(&h.script_text, 1 << 20);
    tamis_buf_init(&h.anchor_cur, 1 << 16);
    tamis_buf_init(&h.pending, 16u << 20);
    size_t start = text->len;
    m->html.stats.n = 0; /* the last HTML part's results win, as in metadata->{html} */
    run_parser(&h, doc, n);
    if (h.a > 0)
        end_anchor(&h);
    size_t chars = 0; /* HTML.pm's length is in characters */
    for (size_t i = 0; i < len; i++)
        chars += ((unsigned char)html[i] & 0xC0) != 0x80;
    publish(&h, chars);
    publish_text_stats(m, text->data ? text->data + start : "", text->len - start, len);
    html_free(&h);
    return text->err;
}
