/*
 * Header expressions as SpamAssassin's PerMsgStatus::get() presents them to header rules and
 * evals (spec-rules §3.1): "Subject", "From:addr", "ALL", "ToCc", "EnvelopeFrom", "MESSAGEID",
 * "X-Spam-Relays-External", with modifiers :raw :addr :name :host :domain :ip :revip :first
 * :last. The result is the list-context value joined as header rules join it: values that end in
 * '\n' are concatenated, others joined with '\n'. NULL means "undefined" (no such header).
 *
 * Results are cached per message (the same expression is asked by many rules). Memory: arena.
 */
#include "rules/rules_int.h"
#include "rules/run_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_VALUES 1000 /* values collected for one expression */
#define MAX_ADDRS 200   /* addresses parsed from one header value */

typedef struct {
    const char **v;
    size_t n, cap;
    tamis_arena_t *a;
    bool oom;
} list_t;

static void push(list_t *l, const char *s)
{
    if (!s || l->n >= MAX_VALUES)
        return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        const char **a = tamis_arena_alloc(l->a, nc * sizeof(*a));
        if (!a) {
            l->oom = true;
            return;
        }
        if (l->n)
            memcpy(a, l->v, l->n * sizeof(*a));
        l->v = a;
        l->cap = nc;
    }
    l->v[l->n++] = s;
}

static const char *with_nl(tamis_arena_t *a, const char *s)
{
    return tamis_arena_concat(a, s, "\n", (char *)NULL);
}

/* The raw value as SA's raw_header keeps it: after "Name:", leading blanks and folding kept,
 * CRs dropped, ending in '\n'. */
const char *tamis__header_raw_value(tamis_arena_t *a, const tamis_header_t *h)
{
    const char *p = memchr(h->pristine.ptr, ':', h->pristine.len);
    if (!p) {
        return with_nl(a, h->raw ? h->raw : "");
    }
    p++;
    size_t n = h->pristine.len - (size_t)(p - h->pristine.ptr);
    char *out = tamis_arena_alloc(a, n + 2);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))
            out[j++] = p[i];
    if (j == 0 || out[j - 1] != '\n')
        out[j++] = '\n';
    out[j] = 0;
    return out;
}

/* get_header(name, raw=1): raw with folding joined (\r?\n\s+ → one space). */
static const char *raw_unfolded(tamis_arena_t *a, const tamis_header_t *h)
{
    const char *r = tamis__header_raw_value(a, h);
    if (!r)
        return NULL;
    size_t n = strlen(r);
    char *o = tamis_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i] == '\n' && i + 1 < n) {
            size_t k = i + 1;
            while (k < n && isspace((unsigned char)r[k]))
                k++;
            if (k > i + 1) {
                o[j++] = ' ';
                i = k - 1;
                continue;
            }
        }
        o[j++] = r[i];
    }
    o[j] = 0;
    return o;
}

/* strcasecmp(a, b) == 0, with a cheap first-byte test: most headers differ there. */
static bool same_name(const char *a, const char *b)
{
    return (*a | 0x20) == (*b | 0x20) && strcasecmp(a, b) == 0;
}

static void headers_named(const tamis_msg_t *m, const char *name, bool raw, list_t *out)
{
    size_t n = tamis_msg_header_count(m);
    for (size_t i = 0; i < n; i++) {
        const tamis_header_t *h = tamis_msg_header_at(m, i);
        if (!same_name(h->name, name))
            continue;
        push(out, raw ? tamis__header_raw_value(out->a, h)
                      : with_nl(out->a, h->decoded ? h->decoded : ""));
    }
}

static void header_raw_unfolded(const tamis_msg_t *m, const char *name, list_t *out)
{
    size_t n = tamis_msg_header_count(m);
    for (size_t i = 0; i < n; i++) {
        const tamis_header_t *h = tamis_msg_header_at(m, i);
        if (same_name(h->name, name))
            push(out, raw_unfolded(out->a, h));
    }
}

/* One header line of ALL: pristine with its folding, or "Name: decoded\n". */
static const char *all_line(tamis_arena_t *a, const tamis_header_t *h, bool raw)
{
    if (!raw)
        return tamis_arena_concat(a, h->name, ": ", h->decoded ? h->decoded : "", "\n",
                                  (char *)NULL);
    char *s = tamis_arena_strndup(a, h->pristine.ptr, h->pristine.len);
    if (!s)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; s[i]; i++) /* drop CRs before LF: SA works on LF text */
        if (!(s[i] == '\r' && s[i + 1] == '\n'))
            s[j++] = s[i];
    s[j] = 0;
    if (j == 0 || s[j - 1] != '\n')
        return tamis_arena_concat(a, s, "\n", (char *)NULL);
    return s;
}

/*
 * SpamAssassin's last_trusted_relay_index + 1 (or last_internal_…): Received.pm counts every
 * Received field seen while still trusted, skipped and unparseable ones included, so the
 * boundary is the raw Received index of the first untrusted relay (first = index into
 * relays->all), or the number of Received fields when every relay is trusted.
 */
static size_t rcvd_boundary(tamis_eval_ctx_t *ctx, size_t first)
{
    const tamis__relays_t *r = ctx->relays;
    const tamis_header_t *stop = r && first < r->count ? r->all[first].r->header : NULL;
    size_t n = tamis_msg_header_count(ctx->msg), k = 0;
    for (size_t i = 0; i < n; i++) {
        const tamis_header_t *h = tamis_msg_header_at(ctx->msg, i);
        if (h == stop)
            return k;
        if (strcasecmp(h->name, "Received") == 0)
            k++;
    }
    return k;
}

/* ALL-TRUSTED/-INTERNAL/-UNTRUSTED/-EXTERNAL (get_all_hdrs_in_rcvd_index_range): headers before
 * (and including) Received #boundary, or from Received #boundary on. */
static void all_range(tamis_eval_ctx_t *ctx, size_t boundary, bool upper, bool raw, list_t *out)
{
    const tamis_msg_t *m = ctx->msg;
    size_t n = tamis_msg_header_count(m);
    long cur = -1;
    for (size_t i = 0; i < n; i++) {
        const tamis_header_t *h = tamis_msg_header_at(m, i);
        if (strcasecmp(h->name, "Received") == 0)
            cur++;
        if (!upper) { /* start undefined, end = boundary (inclusive of that Received) */
            push(out, all_line(out->a, h, raw));
            if (cur == (long)boundary)
                break;
        } else if (cur >= (long)boundary) {
            push(out, all_line(out->a, h, raw));
        }
    }
}

/* ---- addresses ----------------------------------------------------------------------------------
 */

typedef struct {
    const char *addr;
    const char *phrase; /* NULL if none */
} mailbox_t;

/* Skips a (nested) comment starting at p; bounded nesting. */
static const char *skip_comment(const char *p)
{
    int depth = 0;
    for (; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (*p == '(' && ++depth > 50)
            return p + strlen(p);
        if (*p == ')' && --depth == 0)
            return p + 1;
    }
    return p;
}

static char *trim_dup(tamis_arena_t *a, const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return tamis_arena_strndup(a, s, n);
}

/* Appends phrase text without quotes and comments to b. */
static void phrase_text(const char *s, const char *e, tamis_buf_t *b)
{
    for (const char *p = s; p < e; p++) {
        if (*p == '"')
            continue;
        if (*p == '\\' && p + 1 < e) {
            tamis_buf_putc(b, *++p);
            continue;
        }
        tamis_buf_putc(b, *p);
    }
}

/* Parses one mailbox text [s, e): "Name <a@b>", "a@b (Comment)", "<a@b>". */
static bool parse_mailbox(tamis_arena_t *a, const char *s, const char *e, mailbox_t *mb)
{
    const char *lt = NULL, *gt = NULL;
    bool inq = false;
    for (const char *p = s; p < e; p++) {
        if (*p == '\\' && p + 1 < e) {
            p++;
            continue;
        }
        if (*p == '"')
            inq = !inq;
        else if (!inq && *p == '<' && !lt)
            lt = p;
        else if (!inq && *p == '>' && lt && !gt)
            gt = p;
    }
    mb->phrase = NULL;
    if (lt && gt) {
        mb->addr = trim_dup(a, lt + 1, (size_t)(gt - lt - 1));
        tamis_buf_t b;
        tamis_buf_init(&b, 4096);
        phrase_text(s, lt, &b);
        if (b.len && !b.err) {
            /* SA's raw phrase keeps the blank before '<' ("Joe " for "Joe <a@b>"); only
             * leading blanks go. The decoded form collapses and trims later. */
            const char *ph = b.data;
            while (*ph == ' ' || *ph == '\t' || *ph == '\r' || *ph == '\n')
                ph++;
            if (*ph && strspn(ph, " \t\r\n") < strlen(ph))
                mb->phrase = tamis_arena_strdup(a, ph);
        }
        tamis_buf_free(&b);
    } else {
        /* bare address: drop comments and blanks */
        tamis_buf_t b;
        tamis_buf_init(&b, 4096);
        for (const char *p = s; p < e;) {
            if (*p == '(') {
                /* "a@b (Name)": the comment serves as the display name, as with
                 * Email::Address::XS in SpamAssassin */
                const char *ce = skip_comment(p);
                if (!mb->phrase && ce - p > 2) {
                    char *ph = trim_dup(a, p + 1, (size_t)(ce - p - 2));
                    if (ph && *ph)
                        mb->phrase = ph;
                }
                p = ce;
                continue;
            }
            if (!isspace((unsigned char)*p))
                tamis_buf_putc(&b, *p);
            p++;
        }
        mb->addr = b.err ? NULL : tamis_arena_strndup(a, b.data ? b.data : "", b.len);
        tamis_buf_free(&b);
    }
    return mb->addr && *mb->addr;
}

/* Splits an address list at top-level commas (and group syntax "name: a, b;"). */
static size_t parse_addresses(tamis_arena_t *a, const char *v, mailbox_t *out, size_t max)
{
    size_t n = 0;
    const char *s = v;
    bool inq = false;
    int angle = 0;
    for (const char *p = v;; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (*p == '(' && !inq) { /* comments end nothing; skip them whole */
            p = skip_comment(p) - 1;
            continue;
        }
        if (*p == '"')
            inq = !inq;
        if (inq && *p)
            continue;
        if (*p == '<')
            angle++;
        if (*p == '>' && angle)
            angle--;
        if (*p == ':' && !angle) { /* group name: skip it */
            s = p + 1;
            continue;
        }
        if (*p && ((*p != ',' && *p != ';') || angle))
            continue;
        if (n < max && parse_mailbox(a, s, p, &out[n]))
            n++;
        if (!*p)
            break;
        s = p + 1;
    }
    return n;
}

/* ---- host / ip ----------------------------------------------------------------------------------
 */

static bool valid_tld(const char *host)
{
    const char *dot = strrchr(host, '.');
    if (!dot || !dot[1])
        return false;
    for (const char *p = dot + 1; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-')
            return false;
    return psl_is_public_suffix2(psl_builtin(), dot + 1, PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE);
}

static bool host_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* A host name with a valid TLD starting at p (maximal run of host characters). */
static char *host_at(tamis_arena_t *a, const char *p)
{
    const char *e = p;
    while (host_char(*e) && e - p < 251)
        e++;
    while (e > p && (e[-1] == '.' || e[-1] == '-' || e[-1] == '_'))
        e--;
    if (e == p)
        return NULL;
    char *h = tamis_arena_strndup(a, p, (size_t)(e - p));
    return h && strchr(h, '.') && valid_tld(h) ? h : NULL;
}

static const char *find_host(tamis_arena_t *a, const char *line, bool is_addr)
{
    const char *at = strrchr(line, '@');
    if (is_addr)
        return at ? tamis_arena_strdup(a, at + 1) : NULL;
    if (at) {
        char *h = host_at(a, at + 1);
        if (h)
            return h;
    }
    for (const char *p = line; *p; p++) {
        if (!host_char(*p) || (p > line && host_char(p[-1])))
            continue;
        if (p > line && (p[-1] == '.' || p[-1] == '-' || p[-1] == '_'))
            continue;
        char *h = host_at(a, p);
        if (h)
            return h;
    }
    return NULL;
}

static const char *find_ip(tamis_arena_t *a, const char *line, bool rev)
{
    for (const char *p = line; *p; p++) {
        if (!isxdigit((unsigned char)*p) && *p != ':')
            continue;
        if (p > line && (isalnum((unsigned char)p[-1]) || p[-1] == '.' || p[-1] == ':'))
            continue;
        const char *e = p;
        while (isxdigit((unsigned char)*e) || *e == '.' || *e == ':')
            e++;
        char buf[64];
        if (e - p >= (long)sizeof(buf) || e == p)
            continue;
        memcpy(buf, p, (size_t)(e - p));
        buf[e - p] = 0;
        unsigned char bin[16];
        if (inet_pton(AF_INET, buf, bin) == 1) {
            if (rev)
                return tamis_arena_printf(a, "%u.%u.%u.%u", bin[3], bin[2], bin[1], bin[0]);
            return tamis_arena_strdup(a, buf);
        }
        if (strchr(buf, ':') && inet_pton(AF_INET6, buf, bin) == 1) {
            if (!rev)
                return tamis_arena_strdup(a, buf);
            char out[80];
            size_t j = 0;
            for (int i = 15; i >= 0; i--) {
                j += (size_t)snprintf(out + j, sizeof(out) - j, "%x.%x", bin[i] & 0xf, bin[i] >> 4);
                if (i)
                    out[j++] = '.';
            }
            out[j] = 0;
            return tamis_arena_strdup(a, out);
        }
        p = e - 1;
    }
    return NULL;
}

/* ---- the expression
 * ------------------------------------------------------------------------------ */

typedef struct {
    bool raw, addr, name, host, domain, ip, revip, first, last;
} mods_t;

static void parse_mods(const char *expr, char *name, size_t cap, mods_t *m)
{
    memset(m, 0, sizeof(*m));
    size_t n = strcspn(expr, ":");
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(name, expr, k);
    name[k] = 0;
    const char *p = expr + n;
    while (*p == ':') {
        const char *s = ++p;
        while (*p && *p != ':')
            p++;
        size_t l = (size_t)(p - s);
#define MOD(str, field)                                                                            \
    if (l == strlen(str) && strncmp(s, str, l) == 0)                                               \
        m->field = true;
        MOD("raw", raw)
        MOD("addr", addr)
        MOD("name", name)
        MOD("host", host)
        MOD("ip", ip)
        MOD("first", first)
        MOD("last", last)
        if (l == 6 && strncmp(s, "domain", 6) == 0)
            m->host = m->domain = true;
        if (l == 5 && strncmp(s, "revip", 5) == 0)
            m->ip = m->revip = true;
#undef MOD
    }
}

/* Is some field `name` preceded by a Received field? (ALL =~ /^Received:.*?^Name:/smi) */
static bool after_received(const tamis_msg_t *m, const char *name)
{
    bool seen = false;
    size_t n = tamis_msg_header_count(m);
    for (size_t i = 0; i < n; i++) {
        const tamis_header_t *h = tamis_msg_header_at(m, i);
        if (strcasecmp(h->name, "Received") == 0)
            seen = true;
        else if (seen && strcasecmp(h->name, name) == 0)
            return true;
    }
    return false;
}

static const char *envelope_from(tamis_eval_ctx_t *ctx)
{
    if (ctx->opts && ctx->opts->envelope_from)
        return ctx->opts->envelope_from;
    const tamis_conf_t *c = ctx->conf;
    if (c && c->envelope_sender_header) {
        char expr[300];
        snprintf(expr, sizeof(expr), "%s:first:addr", c->envelope_sender_header);
        const char *v = tamis__header_get(ctx, expr);
        if (v) {
            size_t n = strcspn(v, "\n");
            char *f = tamis_arena_strndup(ctx->arena, v, n);
            if (f && (strchr(f, '@') > f || !*f))
                return f;
        }
        return NULL;
    }
    const tamis__relays_t *r = ctx->relays;
    if (r && r->count) {
        const tamis__relay_t *hop =
            r->trusted_count < r->count ? &r->all[r->trusted_count] : &r->all[r->trusted_count - 1];
        const char *e = hop->r->envfrom;
        if (e && (strchr(e, '@') > e))
            return e;
    }
    /* an X-Sender with a fetchmail Received line: the headers below cannot be trusted */
    const char *xs = tamis__header_get(ctx, "X-Sender:first:addr");
    if (xs && strchr(xs, '@')) {
        size_t n = tamis_msg_header_count(ctx->msg);
        for (size_t i = 0; i < n; i++) {
            const tamis_header_t *h = tamis_msg_header_at(ctx->msg, i);
            if (strcasecmp(h->name, "Received") == 0 && h->decoded &&
                strstr(h->decoded, "(fetchmail"))
                return NULL;
        }
    }
    /* X-Envelope-From after a Received line makes the guess impossible; Envelope-Sender and
     * Return-Path after one are only skipped (PerMsgStatus::get_envelope_from) */
    static const char *const names[] = {"X-Envelope-From", "Envelope-Sender", "Return-Path"};
    for (size_t k = 0; k < 3; k++) {
        char expr[64];
        snprintf(expr, sizeof(expr), "%s:first:addr", names[k]);
        const char *v = tamis__header_get(ctx, expr);
        if (!v)
            continue;
        if (!after_received(ctx->msg, names[k])) {
            size_t n = strcspn(v, "\n");
            return tamis_arena_strndup(ctx->arena, v, n);
        }
        if (k == 0)
            return NULL;
    }
    return NULL;
}

static void collect(tamis_eval_ctx_t *ctx, const char *name, const mods_t *md, list_t *out)
{
    const tamis_msg_t *m = ctx->msg;
    bool needraw = md->raw || md->addr || md->name;
    const tamis__relays_t *r = ctx->relays;
    if (strcmp(name, "ALL") == 0) {
        size_t n = tamis_msg_header_count(m);
        for (size_t i = 0; i < n; i++)
            push(out, all_line(out->a, tamis_msg_header_at(m, i), md->raw));
        return;
    }
    if (strncmp(name, "ALL-", 4) == 0) {
        size_t t = rcvd_boundary(ctx, r ? r->trusted_count : 0);
        size_t in = rcvd_boundary(ctx, r ? r->internal_count : 0);
        if (strcmp(name + 4, "TRUSTED") == 0)
            all_range(ctx, t, false, md->raw, out);
        else if (strcmp(name + 4, "INTERNAL") == 0)
            all_range(ctx, in, false, md->raw, out);
        else if (strcmp(name + 4, "UNTRUSTED") == 0)
            all_range(ctx, t, true, md->raw, out);
        else if (strcmp(name + 4, "EXTERNAL") == 0)
            all_range(ctx, in, true, md->raw, out);
        return;
    }
    if (strcasecmp(name, "EnvelopeFrom") == 0) {
        push(out, envelope_from(ctx));
    } else if (strncasecmp(name, "X-Spam-Relays-", 14) == 0 && r) {
        const char *w = name + 14;
        push(out, strcasecmp(w, "Untrusted") == 0  ? r->text.untrusted
                  : strcasecmp(w, "Trusted") == 0  ? r->text.trusted
                  : strcasecmp(w, "External") == 0 ? r->text.external
                  : strcasecmp(w, "Internal") == 0 ? r->text.internal
                                                   : NULL);
        if (!out->n)
            headers_named(m, name, needraw, out);
    } else if (strcasecmp(name, "ToCc") == 0) {
        if (md->raw) {
            header_raw_unfolded(m, "To", out);
            header_raw_unfolded(m, "Cc", out);
        } else {
            headers_named(m, "To", false, out);
            headers_named(m, "Cc", false, out);
        }
    } else if (strcmp(name, "MESSAGEID") == 0) {
        static const char *const ids[] = {"X-Message-Id", "Resent-Message-Id",
                                          "X-Original-Message-ID", "Message-Id", NULL};
        for (size_t k = 0; ids[k]; k++) {
            list_t tmp = {.a = out->a};
            if (md->raw)
                header_raw_unfolded(m, ids[k], &tmp);
            else
                headers_named(m, ids[k], false, &tmp);
            for (size_t i = 0; i < tmp.n; i++)
                if (tmp.v[i] && *tmp.v[i])
                    push(out, tmp.v[i]);
        }
    } else {
        headers_named(m, name, needraw, out);
    }
}

static void apply_first_last(const mods_t *md, list_t *l)
{
    if (!l->n)
        return;
    if (md->first)
        l->n = 1;
    else if (md->last) {
        l->v[0] = l->v[l->n - 1];
        l->n = 1;
    }
}

static void apply_addr_name(tamis_eval_ctx_t *ctx, const char *hname, const mods_t *md, list_t *l)
{
    list_t res = {.a = l->a};
    mailbox_t *mbs = tamis_arena_alloc(l->a, MAX_ADDRS * sizeof(*mbs));
    if (!mbs) {
        l->oom = true;
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        size_t n = parse_addresses(l->a, l->v[i], mbs, MAX_ADDRS);
        for (size_t j = 0; j < n; j++) {
            if (md->addr) {
                push(&res, mbs[j].addr);
                continue;
            }
            if (!mbs[j].phrase)
                continue;
            if (md->raw) {
                push(&res, mbs[j].phrase);
                continue;
            }
            /* decode: the decoded header value holds the same phrase decoded; collapse
             * whitespace and strip single quotes like SA */
            char *d = tamis_arena_strdup(l->a, mbs[j].phrase);
            if (!d)
                continue;
            size_t k = 0;
            bool sp = false;
            for (char *p = d; *p; p++) {
                if (isspace((unsigned char)*p)) {
                    sp = k > 0;
                    continue;
                }
                if (sp)
                    d[k++] = ' ';
                sp = false;
                d[k++] = *p;
            }
            d[k] = 0;
            if (k >= 2 && d[0] == '\'' && d[k - 1] == '\'') {
                d[k - 1] = 0;
                d++;
            }
            push(&res, d);
        }
    }
    (void)ctx;
    (void)hname;
    *l = res;
}

/* For :name without :raw the phrase must be RFC 2047 decoded: take it from the decoded value. */
static void decoded_for_names(tamis_eval_ctx_t *ctx, const char *name, const mods_t *md, list_t *l)
{
    if (!md->name || md->raw)
        return;
    list_t dec = {.a = l->a};
    headers_named(ctx->msg, name, false, &dec);
    if (dec.n)
        *l = dec;
}

static void apply_host_ip(const mods_t *md, list_t *l)
{
    list_t res = {.a = l->a};
    for (size_t i = 0; i < l->n; i++) {
        const char *v = l->v[i];
        if (md->host) {
            const char *h = find_host(l->a, v, md->addr);
            if (h && *h && md->domain) {
                char *lower = tamis_arena_strdup(l->a, h);
                for (char *p = lower; p && *p; p++)
                    *p = (char)tolower((unsigned char)*p);
                const char *d = lower ? psl_registrable_domain(psl_builtin(), lower) : NULL;
                h = d ? d : h;
            }
            if (h && *h)
                push(&res, h);
        } else {
            push(&res, find_ip(l->a, v, md->revip));
        }
    }
    *l = res;
}

static const char *join(tamis_arena_t *a, const list_t *l)
{
    if (!l->n)
        return NULL;
    size_t len0 = strlen(l->v[0]);
    bool nl = len0 && l->v[0][len0 - 1] == '\n';
    tamis_buf_t b;
    tamis_buf_init(&b, 64u << 20);
    for (size_t i = 0; i < l->n; i++) {
        if (i && !nl)
            tamis_buf_putc(&b, '\n');
        tamis_buf_puts(&b, l->v[i]);
    }
    const char *s = b.err ? NULL : tamis_arena_strndup(a, b.data ? b.data : "", b.len);
    tamis_buf_free(&b);
    return s;
}

static const char *header_get_uncached(tamis_eval_ctx_t *ctx, const char *expr)
{
    char name[256];
    mods_t md;
    parse_mods(expr, name, sizeof(name), &md);
    list_t l = {.a = ctx->arena};
    collect(ctx, name, &md, &l);
    decoded_for_names(ctx, name, &md, &l);
    apply_first_last(&md, &l);
    if (md.addr || md.name)
        apply_addr_name(ctx, name, &md, &l);
    if (l.n && (md.host || md.ip))
        apply_host_ip(&md, &l);
    return join(ctx->arena, &l);
}

const char *tamis__header_get(tamis_eval_ctx_t *ctx, const char *expr)
{
    if (!ctx || !expr || !ctx->msg)
        return NULL;
    tamis__engine_t *e = ctx->engine;
    if (e) {
        const char *hit;
        if (tamis__hcache_get(e, expr, &hit))
            return hit;
    }
    const char *v = header_get_uncached(ctx, expr);
    if (e)
        tamis__hcache_put(e, expr, v);
    return v;
}
