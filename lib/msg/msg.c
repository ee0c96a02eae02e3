/*
 * msg: the entry point of the message model (include/tamis/msg.h).
 *
 * tamis_msg_parse() copies the input into the message's arena, splits off an mbox "From " line,
 * parses the top-level header block exactly as SpamAssassin's Message->new does (so header values,
 * the pristine header block and the parse flags agree with it), then hands over to mime.c (GMime
 * walk, rendering, rawbody), received.c and uri.c. Accessors only read the finished model.
 */
#include "msg_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SpamAssassin's Constants.pm values. */
#define SA_MAX_HEADER_KEY 256
#define SA_MAX_HEADER_VALUE 8192

void tamis_msg_limits_default(tamis_msg_limits_t *lim)
{
    lim->max_message_bytes = 64u << 20;
    lim->max_mime_depth = 20;
    lim->max_parts = 1000;
    lim->max_decoded_bytes = 32u << 20;
    lim->max_headers = 1000;
    lim->max_uris = 2000;
    lim->body_part_scan_size = 50000;
    lim->rawbody_part_scan_size = 500000;
    lim->redirectors = NULL;
}

/* ---- small shared helpers ------------------------------------------------------------------- */

void *tamis__vec_push(tamis_arena_t *a, tamis__vec_t *v, size_t esz)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        void *nv = tamis_arena_alloc(a, ncap * esz);
        if (!nv)
            return NULL;
        if (v->n)
            memcpy(nv, v->v, v->n * esz);
        v->v = nv;
        v->cap = ncap;
    }
    char *slot = (char *)v->v + v->n * esz;
    memset(slot, 0, esz);
    v->n++;
    return slot;
}

void tamis__set_flag(tamis_msg_t *m, const char *name)
{
    const char **f = m->flags.v;
    for (size_t i = 0; i < m->flags.n; i++)
        if (strcmp(f[i], name) == 0)
            return;
    const char **slot = tamis__vec_push(m->arena, &m->flags, sizeof(*slot));
    if (slot)
        *slot = name; /* callers pass string literals */
}

static tamis__stat_t *stat_find(const tamis__vec_t *v, const char *name)
{
    tamis__stat_t *s = v->v;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    return NULL;
}

void tamis__stat_set(tamis_arena_t *a, tamis__vec_t *v, const char *name, double val)
{
    tamis__stat_t *s = stat_find(v, name);
    if (!s) {
        s = tamis__vec_push(a, v, sizeof(*s));
        if (!s)
            return;
        s->name = name; /* string literals only */
    }
    s->val = val;
}

void tamis__stat_add(tamis_arena_t *a, tamis__vec_t *v, const char *name, double delta)
{
    tamis__stat_t *s = stat_find(v, name);
    tamis__stat_set(a, v, name, (s ? s->val : 0) + delta);
}

double tamis__stat_get(const tamis__vec_t *v, const char *name, bool *found)
{
    tamis__stat_t *s = stat_find(v, name);
    if (found)
        *found = s != NULL;
    return s ? s->val : 0;
}

/* ---- header fields -------------------------------------------------------------------------- */

/* Copies value with CRLF squashed to LF (SpamAssassin does the same before storing headers). */
static char *squash_crlf(tamis_arena_t *a, const char *v, size_t n, size_t *outn)
{
    char *o = tamis_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\r' && i + 1 < n && v[i + 1] == '\n')
            continue;
        o[k++] = v[i];
    }
    o[k] = '\0';
    *outn = k;
    return o;
}

int tamis__header_make(tamis_msg_t *m, tamis_header_t *h, const char *name, size_t nlen,
                       const char *value, size_t vlen, tamis_slice_t pristine)
{
    size_t n;
    char *v = squash_crlf(m->arena, value, vlen, &n);
    char *nm = tamis_arena_strndup(m->arena, name, nlen);
    if (!v || !nm)
        return TAMIS_ENOMEM;
    /* raw: leading blanks and the final EOL removed, folding kept */
    const char *r = v;
    size_t rn = n;
    while (rn && (*r == ' ' || *r == '\t')) {
        r++;
        rn--;
    }
    while (rn && (r[rn - 1] == '\n' || r[rn - 1] == '\r'))
        rn--;
    char *raw = tamis_arena_strndup(m->arena, r, rn);
    /* decoded: Node::header unfolds "\n[ \t]+" to one space and trims */
    char *u = tamis_arena_alloc(m->arena, n + 1);
    if (!raw || !u)
        return TAMIS_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\n' && i + 1 < n && (v[i + 1] == ' ' || v[i + 1] == '\t')) {
            while (i + 1 < n && (v[i + 1] == ' ' || v[i + 1] == '\t'))
                i++;
            u[k++] = ' ';
            continue;
        }
        u[k++] = v[i];
    }
    size_t s = 0;
    while (s < k && strchr(" \t\n\r\f\v", u[s]))
        s++;
    while (k > s && strchr(" \t\n\r\f\v", u[k - 1]))
        k--;
    char *dec = tamis__decode_header(m->arena, nm, u + s, k - s);
    if (!dec)
        return TAMIS_ENOMEM;
    h->name = nm;
    h->raw = raw;
    h->decoded = dec;
    h->pristine = pristine;
    return 0;
}

/* Finishes a buffered field [start, end) of the header block: "Name: value". */
static int header_finish(tamis_msg_t *m, const char *start, const char *end)
{
    const char *colon = memchr(start, ':', (size_t)(end - start));
    if (!colon)
        return 0; /* SpamAssassin drops a field without a colon */
    if (m->headers.n >= m->lim.max_headers) {
        tamis__set_flag(m, "truncated_header");
        tamis__set_flag(m, "header_limit"); /* ours: tells the count limit from SA's lengths */
        return 0;
    }
    size_t nlen = (size_t)(colon - start);
    while (nlen && (start[nlen - 1] == ' ' || start[nlen - 1] == '\t'))
        nlen--;
    size_t vlen = (size_t)(end - colon - 1);
    if (nlen > SA_MAX_HEADER_KEY) {
        nlen = SA_MAX_HEADER_KEY;
        tamis__set_flag(m, "truncated_header");
    }
    if (vlen > SA_MAX_HEADER_VALUE) {
        vlen = SA_MAX_HEADER_VALUE;
        tamis__set_flag(m, "truncated_header");
    }
    tamis_header_t *h = tamis__vec_push(m->arena, &m->headers, sizeof(*h));
    if (!h)
        return TAMIS_ENOMEM;
    return tamis__header_make(m, h, start, nlen, colon + 1, vlen,
                              tamis_slice(start, (size_t)(end - start)));
}

/* Does the line look like "Name:" (SpamAssassin's /^[\041-\071\073-\176]+[ \t]*:/)? */
static bool looks_like_field(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && *q >= 0x21 && *q <= 0x7e && *q != ':')
        q++;
    if (q == p)
        return false;
    while (q < end && (*q == ' ' || *q == '\t'))
        q++;
    return q < end && *q == ':';
}

static bool is_blank_line(const char *p, const char *end)
{
    return (end - p == 1 && p[0] == '\n') || (end - p == 2 && p[0] == '\r' && p[1] == '\n');
}

/* Parses the top-level header block as Message->new does; sets m->phead and m->pbody. */
static int parse_header_block(tamis_msg_t *m)
{
    const char *p = m->pristine.ptr, *end = p + m->pristine.len;
    const char *field = NULL; /* start of the buffered field */
    int errors = 0;
    for (;;) {
        if (p >= end) { /* EOF: SpamAssassin treats it as a final empty line */
            if (field && header_finish(m, field, p) < 0)
                return TAMIS_ENOMEM;
            tamis__set_flag(m, "missing_head_body_separator");
            m->phead = tamis_slice(m->pristine.ptr, (size_t)(p - m->pristine.ptr));
            m->pbody = tamis_slice(p, 0);
            return 0;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl + 1 : end;
        if (*p == ' ' || *p == '\t') {
            if (!field)
                field = p; /* header starts with a continuation */
            p = le;
            continue;
        }
        if (field && header_finish(m, field, p) < 0)
            return TAMIS_ENOMEM;
        field = NULL;
        bool stop = false, sep = false;
        if (is_blank_line(p, le))
            stop = sep = true;
        else if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            stop = true;
        else if (!looks_like_field(p, le) && ++errors > 3)
            stop = true;
        if (stop) {
            if (!sep)
                tamis__set_flag(m, "missing_head_body_separator");
            m->phead = tamis_slice(m->pristine.ptr, (size_t)(p - m->pristine.ptr));
            m->pbody = tamis_slice(sep ? le : p, (size_t)(end - (sep ? le : p)));
            return 0;
        }
        field = p;
        p = le;
    }
}

/* Splits off an mbox "From " separator (/^From\s+(?!:)/). */
static void split_mbox(tamis_msg_t *m)
{
    const char *d = m->data;
    size_t n = m->len;
    m->mbox = tamis_slice(d, 0);
    m->pristine = tamis_slice(d, n);
    if (n < 5 || memcmp(d, "From", 4) != 0)
        return;
    size_t i = 4;
    if (!strchr(" \t\r\n\f\v", d[i]))
        return;
    while (i < n && strchr(" \t\r\n\f\v", d[i]))
        i++;
    if (i < n && d[i] == ':')
        return;
    const char *nl = memchr(d, '\n', n);
    size_t l = nl ? (size_t)(nl - d) + 1 : n;
    m->mbox = tamis_slice(d, l);
    m->pristine = tamis_slice(d + l, n - l);
}

static void detect_crlf(tamis_msg_t *m)
{
    const char *p = m->pristine.ptr;
    size_t n = m->pristine.len;
    const char *nl = memchr(p, '\n', n);
    if (nl && nl > p && nl[-1] == '\r') {
        m->crlf = true;
        return;
    }
    /* SpamAssassin also looks at the last line */
    if (n >= 2 && p[n - 1] == '\n' && p[n - 2] == '\r')
        m->crlf = true;
}

/* ---- parse / free --------------------------------------------------------------------------- */

static int parse_steps(tamis_msg_t *m)
{
    int rc = parse_header_block(m);
    if (rc == 0)
        rc = tamis__received_parse(m);
    if (rc == 0)
        rc = tamis__mime_walk(m);
    if (rc == 0)
        rc = tamis__uri_finish(m);
    if (rc == 0 && m->oom)
        rc = m->oom;
    return rc;
}

int tamis_msg_parse(const char *data, size_t len, const tamis_msg_limits_t *lim, tamis_msg_t **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    tamis_msg_limits_t dl;
    if (!lim) {
        tamis_msg_limits_default(&dl);
        lim = &dl;
    }
    if (len > lim->max_message_bytes)
        return tamis_seterr(err, errlen, TAMIS_ELIMIT, "message of %zu bytes exceeds %zu", len,
                            lim->max_message_bytes);
    tamis_arena_t *a = tamis_arena_new(64 * 1024);
    if (!a)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "out of memory");
    tamis_msg_t *m = tamis_arena_calloc(a, 1, sizeof(*m));
    char *copy = tamis_arena_alloc(a, len + 1);
    if (!m || !copy) {
        tamis_arena_free(a);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "out of memory");
    }
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    m->arena = a;
    m->lim = *lim;
    m->data = copy;
    m->len = len;
    split_mbox(m);
    detect_crlf(m);
    int rc = parse_steps(m);
    if (rc < 0) {
        tamis_arena_free(a);
        return tamis_seterr(err, errlen, rc, "message parse: %s", tamis_strerror(rc));
    }
    *out = m;
    return 0;
}

void tamis_msg_free(tamis_msg_t *m)
{
    if (m)
        tamis_arena_free(m->arena);
}

/* ---- accessors ------------------------------------------------------------------------------ */

tamis_slice_t tamis_msg_pristine(const tamis_msg_t *m)
{
    return m->pristine;
}

tamis_slice_t tamis_msg_pristine_headers(const tamis_msg_t *m)
{
    return m->phead;
}

tamis_slice_t tamis_msg_pristine_body(const tamis_msg_t *m)
{
    return m->pbody;
}

tamis_slice_t tamis_msg_mbox_from(const tamis_msg_t *m)
{
    return m->mbox;
}

bool tamis_msg_uses_crlf(const tamis_msg_t *m)
{
    return m->crlf;
}

size_t tamis_msg_header_count(const tamis_msg_t *m)
{
    return m->headers.n;
}

const tamis_header_t *tamis_msg_header_at(const tamis_msg_t *m, size_t i)
{
    return i < m->headers.n ? (const tamis_header_t *)m->headers.v + i : NULL;
}

const tamis_header_t *tamis_msg_header_first(const tamis_msg_t *m, const char *name)
{
    const tamis_header_t *h = m->headers.v;
    for (size_t i = 0; i < m->headers.n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return &h[i];
    return NULL;
}

const tamis_header_t *tamis_msg_header_last(const tamis_msg_t *m, const char *name)
{
    const tamis_header_t *h = m->headers.v;
    for (size_t i = m->headers.n; i-- > 0;)
        if (strcasecmp(h[i].name, name) == 0)
            return &h[i];
    return NULL;
}

size_t tamis_msg_relay_count(const tamis_msg_t *m)
{
    return m->relays.n;
}

const tamis_relay_t *tamis_msg_relay_at(const tamis_msg_t *m, size_t i)
{
    return i < m->relays.n ? (const tamis_relay_t *)m->relays.v + i : NULL;
}

size_t tamis_msg_body_line_count(const tamis_msg_t *m)
{
    return m->lines.n;
}

tamis_slice_t tamis_msg_body_line(const tamis_msg_t *m, size_t i)
{
    return i < m->lines.n ? ((const tamis_slice_t *)m->lines.v)[i] : tamis_slice("", 0);
}

size_t tamis_msg_visible_line_count(const tamis_msg_t *m)
{
    return m->vlines.n;
}

tamis_slice_t tamis_msg_visible_line(const tamis_msg_t *m, size_t i)
{
    return i < m->vlines.n ? ((const tamis_slice_t *)m->vlines.v)[i] : tamis_slice("", 0);
}

tamis_slice_t tamis_msg_body_text(const tamis_msg_t *m)
{
    return m->body_text;
}

tamis_slice_t tamis_msg_invisible_text(const tamis_msg_t *m)
{
    return m->invisible;
}

size_t tamis_msg_rawbody_count(const tamis_msg_t *m)
{
    return m->raw.n;
}

tamis_slice_t tamis_msg_rawbody_chunk(const tamis_msg_t *m, size_t i)
{
    return i < m->raw.n ? ((const tamis_slice_t *)m->raw.v)[i] : tamis_slice("", 0);
}

size_t tamis_msg_part_count(const tamis_msg_t *m)
{
    return m->parts.n;
}

const tamis_part_t *tamis_msg_part_at(const tamis_msg_t *m, size_t i)
{
    return i < m->parts.n ? (const tamis_part_t *)m->parts.v + i : NULL;
}

size_t tamis_msg_uri_count(const tamis_msg_t *m)
{
    return m->uris.n;
}

const tamis_uri_t *tamis_msg_uri_at(const tamis_msg_t *m, size_t i)
{
    return i < m->uris.n ? (const tamis_uri_t *)m->uris.v + i : NULL;
}

size_t tamis_msg_uri_string_count(const tamis_msg_t *m)
{
    return m->uri_strings.n;
}

const char *tamis_msg_uri_string(const tamis_msg_t *m, size_t i)
{
    return i < m->uri_strings.n ? ((const char *const *)m->uri_strings.v)[i] : NULL;
}

bool tamis_msg_html_stat(const tamis_msg_t *m, const char *name, double *out)
{
    bool found;
    double v = tamis__stat_get(&m->html.stats, name, &found);
    if (out)
        *out = v;
    return found;
}

static const tamis__tag_t *tag_find(const tamis_msg_t *m, const char *tag)
{
    const tamis__tag_t *t = m->html.tags.v;
    for (size_t i = 0; i < m->html.tags.n; i++)
        if (strcasecmp(t[i].name, tag) == 0)
            return &t[i];
    return NULL;
}

bool tamis_msg_html_tag_seen(const tamis_msg_t *m, const char *tag)
{
    const tamis__tag_t *t = tag_find(m, tag);
    return t != NULL; /* HTMLEval: exists $html->{inside}{$tag} */
}

long tamis_msg_html_tag_balance(const tamis_msg_t *m, const char *tag)
{
    const tamis__tag_t *t = tag_find(m, tag);
    return t ? t->starts - t->ends : 0;
}

size_t tamis_msg_html_tag_count(const tamis_msg_t *m)
{
    return m->html.tags.n;
}

const char *tamis_msg_html_tag_at(const tamis_msg_t *m, size_t i, long *balance)
{
    if (i >= m->html.tags.n)
        return NULL;
    const tamis__tag_t *t = (const tamis__tag_t *)m->html.tags.v + i;
    if (balance)
        *balance = t->starts;
    return t->name;
}

const char *tamis_msg_html_text(const tamis_msg_t *m, const char *area)
{
    const tamis__area_t *a = m->html.areas.v;
    for (size_t i = 0; i < m->html.areas.n; i++)
        if (strcmp(a[i].area, area) == 0)
            return a[i].text ? a[i].text : "";
    return "";
}

bool tamis_msg_mime_stat(const tamis_msg_t *m, const char *name, double *out)
{
    bool found;
    double v = tamis__stat_get(&m->mime_stats, name, &found);
    if (!found && tamis_msg_parse_flag(m, name)) {
        v = 1;
        found = true;
    }
    if (out)
        *out = v;
    return found;
}

bool tamis_msg_parse_flag(const tamis_msg_t *m, const char *name)
{
    const char *const *f = m->flags.v;
    for (size_t i = 0; i < m->flags.n; i++)
        if (strcmp(f[i], name) == 0)
            return true;
    return false;
}
