/*
 * conf: SpamAssassin's settings (spec-rules §2.2, §6), driven by one table.
 *
 * Every setting Tamis knows is one row of `settings[]`: name, type, where it lives in
 * tamis_conf_t, default, bounds and a doc line. Simple types (bool, number, string) are parsed by
 * the table; list-shaped settings (add_header, welcomelist_from, trusted_networks …) have a
 * handler. Settings SpamAssassin knows but Tamis does not act on are listed in `ignored[]` so that
 * they neither warn nor get lost: they are kept for the dump.
 *
 * Memory: strings live in an arena owned by the conf (internal->arena); growable arrays are
 * malloc'ed and freed by tamis_conf_free().
 */
#include "tamis/conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A directive as applied, for the dump. */
typedef struct {
    char *key, *value, *file;
    unsigned line;
} applied_t;

typedef struct {
    tamis_arena_t *arena;
    applied_t *applied;
    size_t applied_count, applied_cap;
} conf_internal_t;

#define MAX_LIST_ITEMS 100000 /* bound on any list setting (welcomelist_from …) */
#define MAX_APPLIED 200000    /* bound on the dump log */

static conf_internal_t *internal(tamis_conf_t *c)
{
    return (conf_internal_t *)c->internal;
}

static char *cstr(tamis_conf_t *c, const char *s)
{
    return tamis_arena_strdup(internal(c)->arena, s);
}

static char *cstrn(tamis_conf_t *c, const char *s, size_t n)
{
    return tamis_arena_strndup(internal(c)->arena, s, n);
}

/* ---- headers ----------------------------------------------------------------------------------
 */

/* Removes bits `when` from every header named name; drops entries left with no bits. */
static void header_remove(tamis_conf_t *c, unsigned when, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < c->header_count; i++) {
        tamis_conf_header_t h = c->headers[i];
        if (strcasecmp(h.name, name) == 0)
            h.when &= ~when;
        if (h.when)
            c->headers[j++] = h;
    }
    c->header_count = j;
}

/* Appends (when, name, template) after removing the same name for those types; SA keeps separate
 * ham and spam lists where re-adding moves the name to the end; one list with bit masks keeps the
 * same relative order for each of them. */
static int header_add(tamis_conf_t *c, unsigned when, const char *name, const char *tmpl)
{
    header_remove(c, when, name);
    if (c->header_count >= MAX_LIST_ITEMS)
        return TAMIS_ELIMIT;
    tamis_conf_header_t *n = realloc(c->headers, (c->header_count + 1) * sizeof(*n));
    if (!n)
        return TAMIS_ENOMEM;
    c->headers = n;
    n[c->header_count].when = when;
    n[c->header_count].name = cstr(c, name);
    n[c->header_count].template = cstr(c, tmpl);
    if (!n[c->header_count].name || !n[c->header_count].template)
        return TAMIS_ENOMEM;
    c->header_count++;
    return 0;
}

static int parse_when(const char *w, size_t n)
{
    if (n == 3 && strncmp(w, "ham", 3) == 0)
        return TAMIS_CONF_HAM;
    if (n == 4 && strncmp(w, "spam", 4) == 0)
        return TAMIS_CONF_SPAM;
    if (n == 3 && strncmp(w, "all", 3) == 0)
        return TAMIS_CONF_ALL;
    return -1;
}

static bool is_header_name_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '-';
}

/* Splits "spam|ham|all Name rest": returns the when bits or -1. */
static int split_header_args(const char *v, const char **name, size_t *namelen, const char **rest)
{
    const char *p = v;
    while (*p && !isspace((unsigned char)*p))
        p++;
    int when = parse_when(v, (size_t)(p - v));
    if (when < 0 || !*p)
        return -1;
    while (isspace((unsigned char)*p))
        p++;
    *name = p;
    while (is_header_name_char(*p))
        p++;
    *namelen = (size_t)(p - *name);
    if (*namelen == 0 || (*p && !isspace((unsigned char)*p)))
        return -1;
    while (isspace((unsigned char)*p))
        p++;
    *rest = p;
    return when;
}

/* SA's add_header unescaping: optional surrounding quotes; \\ → \, \t, \n, other \x deleted. */
static void unescape_header_value(const char *in, tamis_buf_t *out)
{
    size_t n = strlen(in);
    while (n > 0 && isspace((unsigned char)in[n - 1]))
        n--;
    if (n >= 2 && in[0] == '"' && in[n - 1] == '"') {
        in++;
        n -= 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '\\') {
            tamis_buf_putc(out, in[i]);
            continue;
        }
        if (i + 1 >= n)
            break; /* a trailing lone backslash is purged */
        char e = in[++i];
        if (e == '\\')
            tamis_buf_putc(out, '\\');
        else if (e == 't')
            tamis_buf_putc(out, '\t');
        else if (e == 'n')
            tamis_buf_putc(out, '\n');
    }
}

static int h_add_header(tamis_conf_t *c, const char *key, const char *v)
{
    const char *name, *rest;
    size_t nl;
    int when = split_header_args(v, &name, &nl, &rest);
    if (when < 0)
        return TAMIS_EINVAL;
    char nm[128];
    if (nl >= sizeof(nm))
        return TAMIS_EINVAL;
    memcpy(nm, name, nl);
    nm[nl] = 0;
    tamis_buf_t b;
    tamis_buf_init(&b, 1 << 20);
    unescape_header_value(rest, &b);
    int rc = b.err ? b.err : header_add(c, (unsigned)when, nm, b.data ? b.data : "");
    tamis_buf_free(&b);
    return rc;
}

static int h_remove_header(tamis_conf_t *c, const char *key, const char *v)
{
    const char *name, *rest;
    size_t nl;
    int when = split_header_args(v, &name, &nl, &rest);
    if (when < 0 || *rest)
        return TAMIS_EINVAL;
    char nm[128];
    if (nl >= sizeof(nm))
        return TAMIS_EINVAL;
    memcpy(nm, name, nl);
    nm[nl] = 0;
    if (strcmp(nm, "Checker-Version") != 0) /* SA never removes it */
        header_remove(c, (unsigned)when, nm);
    return 0;
}

static int h_clear_headers(tamis_conf_t *c, const char *key, const char *v)
{
    if (*v)
        return TAMIS_EINVAL;
    size_t j = 0;
    for (size_t i = 0; i < c->header_count; i++) {
        if (strcasecmp(c->headers[i].name, "Checker-Version") == 0 && j == 0) {
            c->headers[j] = c->headers[i];
            c->headers[j++].when = TAMIS_CONF_ALL;
        }
    }
    c->header_count = j;
    return 0;
}

static int h_report_safe(tamis_conf_t *c, const char *key, const char *v)
{
    if (!(v[0] >= '0' && v[0] <= '2' && v[1] == 0))
        return TAMIS_EINVAL;
    c->report_safe = v[0] - '0';
    if (c->report_safe == 0) {
        for (size_t i = 0; i < c->header_count; i++)
            if ((c->headers[i].when & TAMIS_CONF_SPAM) &&
                strcasecmp(c->headers[i].name, "Report") == 0)
                return 0;
        return header_add(c, TAMIS_CONF_SPAM, "Report", "_REPORT_");
    }
    return 0;
}

static int h_rewrite_header(tamis_conf_t *c, const char *key, const char *v)
{
    const char *p = v;
    while (*p && !isspace((unsigned char)*p))
        p++;
    size_t hl = (size_t)(p - v);
    while (isspace((unsigned char)*p))
        p++;
    char **slot = NULL;
    if (hl == 7 && strncasecmp(v, "subject", 7) == 0)
        slot = &c->rewrite_subject;
    else if (hl == 4 && strncasecmp(v, "from", 4) == 0)
        slot = &c->rewrite_from;
    else if (hl == 2 && strncasecmp(v, "to", 2) == 0)
        slot = &c->rewrite_to;
    if (!slot)
        return TAMIS_EINVAL;
    if (!*p) {
        *slot = NULL; /* an empty string removes the setting */
        return 0;
    }
    char *s = cstr(c, p);
    if (!s)
        return TAMIS_ENOMEM;
    if (slot != &c->rewrite_subject) /* SA turns () into [] for From/To comments */
        for (char *q = s; *q; q++)
            *q = *q == '(' ? '[' : *q == ')' ? ']' : *q;
    *slot = s;
    return 0;
}

/* Appends one template line (with '\n') to *tmpl. */
static int template_append(tamis_conf_t *c, char **tmpl, const char *line)
{
    const char *old = *tmpl ? *tmpl : "";
    char *n = tamis_arena_printf(internal(c)->arena, "%s%s\n", old, line);
    if (!n)
        return TAMIS_ENOMEM;
    *tmpl = n;
    return 0;
}

/* SA strips one pair of surrounding quotes from report lines ("report \" pts rule\"") */
static int report_line(tamis_conf_t *c, char **tmpl, const char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        char *s = cstrn(c, v + 1, n - 2);
        return s ? template_append(c, tmpl, s) : TAMIS_ENOMEM;
    }
    return template_append(c, tmpl, v);
}

static int h_report(tamis_conf_t *c, const char *key, const char *v)
{
    return report_line(c, &c->report_template, v);
}

static int h_clear_report(tamis_conf_t *c, const char *key, const char *v)
{
    c->report_template = cstr(c, "");
    return c->report_template ? 0 : TAMIS_ENOMEM;
}

static int h_unsafe_report(tamis_conf_t *c, const char *key, const char *v)
{
    return report_line(c, &c->unsafe_report_template, v);
}

static int h_clear_unsafe_report(tamis_conf_t *c, const char *key, const char *v)
{
    c->unsafe_report_template = cstr(c, "");
    return c->unsafe_report_template ? 0 : TAMIS_ENOMEM;
}

static int h_copy_headers(tamis_conf_t *c, const char *key, const char *v)
{
    const char *p = v;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (p == s)
            break;
        size_t n = c->report_safe_copy_header_count;
        if (n >= MAX_LIST_ITEMS)
            return TAMIS_ELIMIT;
        char **a = realloc(c->report_safe_copy_headers, (n + 1) * sizeof(*a));
        if (!a)
            return TAMIS_ENOMEM;
        c->report_safe_copy_headers = a;
        if (!(a[n] = cstrn(c, s, (size_t)(p - s))))
            return TAMIS_ENOMEM;
        c->report_safe_copy_header_count++;
    }
    return 0;
}

/* ---- networks ---------------------------------------------------------------------------------
 */

static int parse_v4_shorthand(const char *s, unsigned char *addr, unsigned *prefix)
{
    /* "10." "192.168." "127" forms: missing octets are zero, prefix = 8 * given octets */
    unsigned oct[4] = {0, 0, 0, 0}, n = 0;
    const char *p = s;
    while (*p && n < 4) {
        if (!isdigit((unsigned char)*p))
            return -1;
        unsigned v = 0;
        int digits = 0;
        while (isdigit((unsigned char)*p) && digits < 4) {
            v = v * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        if (v > 255 || isdigit((unsigned char)*p))
            return -1;
        oct[n++] = v;
        if (*p == '.')
            p++;
        else if (*p)
            return -1;
    }
    if (*p || n == 0)
        return -1;
    for (int i = 0; i < 4; i++)
        addr[i] = (unsigned char)oct[i];
    *prefix = 8 * n;
    return 0;
}

int tamis_conf_cidr_parse(const char *text, tamis_cidr_t *out)
{
    if (!text || !out)
        return TAMIS_EINVAL;
    memset(out, 0, sizeof(*out));
    char buf[128];
    const char *p = text;
    if (*p == '!') {
        out->exclude = true;
        p++;
    }
    size_t n = strlen(p);
    if (n == 0 || n >= sizeof(buf))
        return TAMIS_EINVAL;
    memcpy(buf, p, n + 1);
    char *slash = strchr(buf, '/');
    long plen = -1;
    if (slash) {
        *slash = 0;
        char *end;
        plen = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || plen < 0 || plen > 128)
            return TAMIS_EINVAL;
    }
    char *a = buf;
    size_t al = strlen(a);
    if (al >= 2 && a[0] == '[' && a[al - 1] == ']') {
        a[al - 1] = 0;
        a++;
    }
    unsigned pfx;
    if (strchr(a, ':')) {
        if (inet_pton(AF_INET6, a, out->addr) != 1)
            return TAMIS_EINVAL;
        out->family = AF_INET6;
        pfx = 128;
    } else if (inet_pton(AF_INET, a, out->addr) == 1) {
        out->family = AF_INET;
        pfx = 32;
    } else if (parse_v4_shorthand(a, out->addr, &pfx) == 0) {
        out->family = AF_INET;
    } else {
        return TAMIS_EINVAL;
    }
    if (plen >= 0) {
        if ((out->family == AF_INET && plen > 32))
            return TAMIS_EINVAL;
        pfx = (unsigned)plen;
    }
    out->prefix = pfx;
    return 0;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned full = bits / 8, rem = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rem == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

bool tamis_conf_cidr_match(const tamis_cidr_list_t *l, const char *ip)
{
    if (!l || !ip)
        return false;
    unsigned char a[16];
    int fam;
    char buf[64];
    size_t n = strlen(ip);
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, ip, n + 1);
    char *s = buf;
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s[n - 1] = 0;
        s++;
    }
    if (strncasecmp(s, "IPv6:", 5) == 0)
        s += 5;
    if (inet_pton(AF_INET, s, a) == 1)
        fam = AF_INET;
    else if (inet_pton(AF_INET6, s, a) == 1)
        fam = AF_INET6;
    else
        return false;
    /* IPv4-mapped IPv6 addresses compare as IPv4 */
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (fam == AF_INET6 && memcmp(a, mapped, 12) == 0) {
        memmove(a, a + 12, 4);
        fam = AF_INET;
    }
    for (size_t i = 0; i < l->count; i++) {
        const tamis_cidr_t *e = &l->items[i];
        if (e->family == fam && prefix_equal(a, e->addr, e->prefix))
            return !e->exclude;
    }
    return false;
}

static int cidr_add_words(tamis_conf_t *c, tamis_cidr_list_t *l, const char *v, const char *file,
                          unsigned line, tamis_diag_t *diag)
{
    const char *p = v;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        char w[128];
        size_t n = (size_t)(p - s);
        tamis_cidr_t e;
        if (n >= sizeof(w)) {
            tamis_diag_add(diag, TAMIS_DIAG_WARN, file, line, "invalid network: %.*s", (int)n, s);
            continue;
        }
        memcpy(w, s, n);
        w[n] = 0;
        if (tamis_conf_cidr_parse(w, &e) != 0) {
            tamis_diag_add(diag, TAMIS_DIAG_WARN, file, line, "invalid network: %s", w);
            continue;
        }
        if (l->count >= MAX_LIST_ITEMS)
            return TAMIS_ELIMIT;
        tamis_cidr_t *a = realloc(l->items, (l->count + 1) * sizeof(*a));
        if (!a)
            return TAMIS_ENOMEM;
        l->items = a;
        a[l->count++] = e;
    }
    l->set = true;
    return 0;
}

static tamis_cidr_list_t *net_list(tamis_conf_t *c, const char *key)
{
    const char *k = strncmp(key, "clear_", 6) == 0 ? key + 6 : key;
    if (strcmp(k, "trusted_networks") == 0)
        return &c->trusted_networks;
    if (strcmp(k, "internal_networks") == 0)
        return &c->internal_networks;
    return &c->msa_networks;
}

/* ---- address lists ----------------------------------------------------------------------------
 */

static int addr_push(tamis_conf_t *c, tamis_addr_list_t *l, const char *pat, size_t n,
                     const char *rcvd)
{
    /* SA keys *_rcvd lists by address: re-adding replaces the relay. Plain lists may hold
     * duplicates (harmless for matching) so that long lists load in linear time. */
    for (size_t i = 0; rcvd && i < l->count; i++)
        if (strlen(l->items[i].pattern) == n && strncasecmp(l->items[i].pattern, pat, n) == 0) {
            l->items[i].rcvd = rcvd ? cstr(c, rcvd) : NULL;
            return 0;
        }
    if (l->count >= MAX_LIST_ITEMS)
        return TAMIS_ELIMIT;
    tamis_addr_pattern_t *a = l->items;
    if ((l->count & (l->count - 1)) == 0) { /* grow at powers of two: count is the capacity */
        a = realloc(l->items, (l->count ? l->count * 2 : 1) * sizeof(*a));
        if (!a)
            return TAMIS_ENOMEM;
        l->items = a;
    }
    char *p = cstrn(c, pat, n);
    if (!p)
        return TAMIS_ENOMEM;
    for (char *q = p; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    a[l->count].pattern = p;
    a[l->count].rcvd = rcvd ? cstr(c, rcvd) : NULL;
    l->count++;
    return 0;
}

static void addr_remove(tamis_addr_list_t *l, const char *pat, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < l->count; i++)
        if (!(strlen(l->items[i].pattern) == n && strncasecmp(l->items[i].pattern, pat, n) == 0))
            l->items[j++] = l->items[i];
    l->count = j;
}

/* Each whitespace-separated word of v is added to (or removed from) l. */
static int addr_words(tamis_conf_t *c, tamis_addr_list_t *l, const char *v, bool remove)
{
    const char *p = v;
    int rc = 0;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (remove)
            addr_remove(l, s, (size_t)(p - s));
        else if ((rc = addr_push(c, l, s, (size_t)(p - s), NULL)) != 0)
            return rc;
    }
    return 0;
}

/* "addr relay" pairs of *_from_rcvd: exactly two words. */
static int addr_rcvd(tamis_conf_t *c, tamis_addr_list_t *l, const char *v)
{
    char a[512], r[512];
    if (sscanf(v, "%511s %511s", a, r) != 2)
        return TAMIS_EINVAL;
    return addr_push(c, l, a, strlen(a), r);
}

bool tamis_conf_addr_match(const char *pattern, const char *addr)
{
    if (!pattern || !addr)
        return false;
    return fnmatch(pattern, addr, FNM_CASEFOLD) == 0;
}

/* "(NAME) words…" of enlist_addrlist / enlist_uri_host. */
static int named_list(tamis_conf_t *c, tamis_named_list_t **lists, size_t *count, const char *v,
                      bool remove)
{
    if (*v != '(')
        return TAMIS_EINVAL;
    const char *e = strchr(v, ')');
    if (!e || e == v + 1)
        return TAMIS_EINVAL;
    size_t nl = (size_t)(e - v - 1);
    tamis_named_list_t *nlst = NULL;
    for (size_t i = 0; i < *count; i++)
        if (strlen((*lists)[i].name) == nl && strncmp((*lists)[i].name, v + 1, nl) == 0)
            nlst = &(*lists)[i];
    if (!nlst) {
        if (remove)
            return 0;
        if (*count >= MAX_LIST_ITEMS)
            return TAMIS_ELIMIT;
        tamis_named_list_t *a = realloc(*lists, (*count + 1) * sizeof(*a));
        if (!a)
            return TAMIS_ENOMEM;
        *lists = a;
        nlst = &a[(*count)++];
        memset(nlst, 0, sizeof(*nlst));
        if (!(nlst->name = cstrn(c, v + 1, nl)))
            return TAMIS_ENOMEM;
    }
    return addr_words(c, &nlst->list, e + 1, remove);
}

/* ---- the table --------------------------------------------------------------------------------
 */

typedef enum { S_BOOL, S_NUM, S_UINT, S_INT, S_STR, S_FN } stype_t;

typedef int (*handler_t)(tamis_conf_t *c, const char *key, const char *value);

typedef struct {
    const char *name;
    stype_t type;
    size_t off;
    double def, min, max;
    handler_t fn;
    const char *doc;
} setting_t;

#define OFF(f) offsetof(tamis_conf_t, f)
#define NUM(n, f, d, lo, hi, doc)                                                                  \
    {                                                                                              \
        n, S_NUM, OFF(f), d, lo, hi, NULL, doc                                                     \
    }
#define BOOL(n, f, d, doc)                                                                         \
    {                                                                                              \
        n, S_BOOL, OFF(f), d, 0, 1, NULL, doc                                                      \
    }
#define UINT(n, f, d, lo, hi, doc)                                                                 \
    {                                                                                              \
        n, S_UINT, OFF(f), d, lo, hi, NULL, doc                                                    \
    }
#define STR(n, f, doc)                                                                             \
    {                                                                                              \
        n, S_STR, OFF(f), 0, 0, 0, NULL, doc                                                       \
    }
#define FN(n, h, doc)                                                                              \
    {                                                                                              \
        n, S_FN, 0, 0, 0, 0, h, doc                                                                \
    }

/* Handlers that need the file:line for their warnings go through the networks/list dispatcher in
 * apply_special(); these placeholders mark them in the table. */
static int h_special(tamis_conf_t *c, const char *key, const char *value)
{
    return 0;
}

/* dns_server: several lines accumulate ("addr[:port]", IPv6 as "[addr]:port"), joined with ','
 * as lib/net takes them. */
static int h_dns_server(tamis_conf_t *c, const char *key, const char *value)
{
    (void)key;
    char v[256];
    size_t n = strlen(value);
    while (n && isspace((unsigned char)value[n - 1]))
        n--;
    if (!n || n >= sizeof v || strcspn(value, " \t,") < n)
        return TAMIS_EINVAL;
    memcpy(v, value, n);
    v[n] = '\0';
    const char *old = c->dns_servers ? c->dns_servers : "";
    char *j = tamis_arena_printf(internal(c)->arena, "%s%s%s", old, *old ? "," : "", v);
    if (!j)
        return TAMIS_ENOMEM;
    c->dns_servers = j;
    return 0;
}

static int h_clear_dns_servers(tamis_conf_t *c, const char *key, const char *value)
{
    (void)key;
    (void)value;
    c->dns_servers = NULL;
    return 0;
}

static const setting_t settings[] = {
    NUM("required_score", required_score, 5, -1e9, 1e9, "score at or above which mail is spam"),
    NUM("required_hits", required_score, 5, -1e9, 1e9, "old name of required_score"),
    FN("report_safe", h_report_safe, "0 headers only, 1 attach as message/rfc822, 2 as text"),
    BOOL("fold_headers", fold_headers, 1, "fold long X-Spam-* header lines"),
    UINT("report_wrap_width", report_wrap_width, 75, 1, 10000, "wrap width of X-Spam-Report"),
    FN("rewrite_header", h_rewrite_header, "rewrite Subject/From/To of spam"),
    FN("add_header", h_add_header, "add an X-Spam-* header to ham/spam/all"),
    FN("remove_header", h_remove_header, "remove an X-Spam-* header"),
    FN("clear_headers", h_clear_headers, "remove all X-Spam-* headers but Checker-Version"),
    FN("report", h_report, "report template line"),
    FN("clear_report_template", h_clear_report, "empty the report template"),
    FN("unsafe_report", h_unsafe_report, "unsafe report template line"),
    FN("clear_unsafe_report_template", h_clear_unsafe_report, "empty the unsafe report"),
    STR("report_contact", report_contact, "contact address in reports"),
    STR("report_hostname", report_hostname, "host name used in reports"),
    STR("report_charset", report_charset, "charset of the report part"),
    FN("report_safe_copy_headers", h_copy_headers, "headers copied into report_safe wrappers"),
    FN("trusted_networks", h_special, "relays trusted not to forge Received lines"),
    FN("clear_trusted_networks", h_special, "empty trusted_networks"),
    FN("internal_networks", h_special, "relays of the receiving organisation"),
    FN("clear_internal_networks", h_special, "empty internal_networks"),
    FN("msa_networks", h_special, "mail submission agents"),
    FN("clear_msa_networks", h_special, "empty msa_networks"),
    STR("envelope_sender_header", envelope_sender_header, "header holding the MAIL FROM"),
    FN("welcomelist_from", h_special, "senders never marked as spam"),
    FN("whitelist_from", h_special, "old name of welcomelist_from"),
    FN("unwelcomelist_from", h_special, "remove from welcomelist_from"),
    FN("unwhitelist_from", h_special, "old name of unwelcomelist_from"),
    FN("blocklist_from", h_special, "senders always marked as spam"),
    FN("blacklist_from", h_special, "old name of blocklist_from"),
    FN("unblocklist_from", h_special, "remove from blocklist_from"),
    FN("unblacklist_from", h_special, "old name of unblocklist_from"),
    FN("welcomelist_from_rcvd", h_special, "welcomelisted sender relayed by a host"),
    FN("whitelist_from_rcvd", h_special, "old name of welcomelist_from_rcvd"),
    FN("def_welcomelist_from_rcvd", h_special, "default welcomelist with relay"),
    FN("def_whitelist_from_rcvd", h_special, "old name of def_welcomelist_from_rcvd"),
    FN("welcomelist_auth", h_special, "welcomelisted when SPF/DKIM authenticated"),
    FN("whitelist_auth", h_special, "old name of welcomelist_auth"),
    FN("def_welcomelist_auth", h_special, "default welcomelist_auth"),
    FN("def_whitelist_auth", h_special, "old name of def_welcomelist_auth"),
    FN("unwelcomelist_auth", h_special, "remove from welcomelist_auth"),
    FN("unwhitelist_auth", h_special, "old name of unwelcomelist_auth"),
    FN("welcomelist_to", h_special, "recipients who like (some) spam"),
    FN("whitelist_to", h_special, "old name of welcomelist_to"),
    FN("more_spam_to", h_special, "recipients who like more spam"),
    FN("all_spam_to", h_special, "recipients who like all spam"),
    FN("blocklist_to", h_special, "recipients whose mail is spam"),
    FN("blacklist_to", h_special, "old name of blocklist_to"),
    FN("enlist_addrlist", h_special, "named address list for check_from_in_list"),
    FN("enlist_uri_host", h_special, "named host list for check_uri_host_listed"),
    FN("delist_uri_host", h_special, "remove hosts from a named host list"),
    FN("freemail_domains", h_special, "free mail provider domains"),
    FN("freemail_welcomelist", h_special, "addresses exempt from freemail checks"),
    FN("freemail_whitelist", h_special, "old name of freemail_welcomelist"),
    FN("uridnsbl_skip_domain", h_special, "domains never looked up in URI DNSBLs"),
    BOOL("use_bayes", use_bayes, 1, "use the Bayes classifier"),
    BOOL("use_bayes_rules", use_bayes_rules, 1, "run the BAYES_* rules"),
    BOOL("bayes_auto_learn", bayes_auto_learn, 1, "learn from confidently classified mail"),
    NUM("bayes_auto_learn_threshold_nonspam", bayes_auto_learn_threshold_nonspam, 0.1, -1e9, 1e9,
        "auto-learn as ham below this score"),
    NUM("bayes_auto_learn_threshold_spam", bayes_auto_learn_threshold_spam, 12.0, -1e9, 1e9,
        "auto-learn as spam above this score"),
    UINT("bayes_min_ham_num", bayes_min_ham_num, 200, 0, 1e9, "ham needed before Bayes is used"),
    UINT("bayes_min_spam_num", bayes_min_spam_num, 200, 0, 1e9, "spam needed before Bayes is used"),
    BOOL("skip_rbl_checks", skip_rbl_checks, 0, "no DNS blocklist lookups"),
    NUM("rbl_timeout", rbl_timeout, 15, 0, 1e6, "DNS blocklist wait in seconds"),
    FN("dns_server", h_dns_server, "DNS server for network tests (addr[:port]; several allowed)"),
    FN("clear_dns_servers", h_clear_dns_servers, "forget dns_server lines (use resolv.conf)"),
    UINT("num_check_received", num_check_received, 9, 0, 1000, "relays checked by check_rbl"),
    UINT("uridnsbl_max_domains", uridnsbl_max_domains, 20, 0, 1000,
         "URI domains looked up per message"),
    BOOL("uridnsbl_skip_mailto", uridnsbl_skip_mailto, 1, "no URIBL lookups of mailto: domains"),
    UINT("dns_max_queries", dns_max_queries, 256, 0, 1024, "DNS queries per message (Tamis)"),
};

/* Settings SpamAssassin 4.0.1 (Conf.pm and its plugins) knows that Tamis accepts without acting
 * on them (yet), sorted for bsearch. Generated from the "setting =>" and "aliases" entries of
 * /usr/share/perl5/Mail/SpamAssassin, minus the table above and the rule directives. */
static const char *const ignored[] = {"adsp_override",
                                      "allow_user_rules",
                                      "always_trust_envelope_sender",
                                      "asn_lookup",
                                      "asn_lookup_ipv6",
                                      "asn_prefer_geodb",
                                      "asn_prefix",
                                      "asn_use_dns",
                                      "asn_use_geodb",
                                      "authres_ignored_authserv",
                                      "authres_networks",
                                      "authres_trusted_authserv",
                                      "auto_welcomelist_db_modules",
                                      "auto_welcomelist_distinguish_signed",
                                      "auto_welcomelist_factor",
                                      "auto_welcomelist_factory",
                                      "auto_welcomelist_file_mode",
                                      "auto_welcomelist_ipv4_mask_len",
                                      "auto_welcomelist_ipv6_mask_len",
                                      "auto_welcomelist_path",
                                      "auto_whitelist_db_modules",
                                      "auto_whitelist_distinguish_signed",
                                      "auto_whitelist_factor",
                                      "auto_whitelist_factory",
                                      "auto_whitelist_file_mode",
                                      "auto_whitelist_ipv4_mask_len",
                                      "auto_whitelist_ipv6_mask_len",
                                      "auto_whitelist_path",
                                      "bayes_auto_expire",
                                      "bayes_auto_learn_on_error",
                                      "bayes_expiry_max_db_size",
                                      "bayes_file_mode",
                                      "bayes_ignore_from",
                                      "bayes_ignore_header",
                                      "bayes_ignore_to",
                                      "bayes_journal_max_size",
                                      "bayes_learn_during_report",
                                      "bayes_learn_to_journal",
                                      "bayes_max_token_length",
                                      "bayes_path",
                                      "bayes_seen_ttl",
                                      "bayes_sql_dsn",
                                      "bayes_sql_override_username",
                                      "bayes_sql_password",
                                      "bayes_sql_username",
                                      "bayes_sql_username_authorized",
                                      "bayes_stopword_languages",
                                      "bayes_store_module",
                                      "bayes_token_sources",
                                      "bayes_token_ttl",
                                      "bayes_use_hapaxes",
                                      "blacklist_subject",
                                      "blacklist_uri_host",
                                      "blocklist_subject",
                                      "body_part_scan_size",
                                      "clear_asn_lookups",
                                      "clear_dns_query_restriction",
                                      "clear_dns_query_restrictions",
                                      "clear_originating_ip_headers",
                                      "clear_uridnsbl_skip_domain",
                                      "clear_url_shortener",
                                      "clear_util_rb",
                                      "country_db_path",
                                      "country_db_type",
                                      "dcc_body_max",
                                      "dcc_dccifd_path",
                                      "dcc_fuz1_max",
                                      "dcc_fuz2_max",
                                      "dcc_home",
                                      "dcc_learn_score",
                                      "dcc_options",
                                      "dcc_path",
                                      "dcc_rep_percent",
                                      "dcc_timeout",
                                      "dccifd_options",
                                      "def_welcomelist_from_dkim",
                                      "def_welcomelist_from_spf",
                                      "def_whitelist_from_dkim",
                                      "def_whitelist_from_spf",
                                      "descriptions",
                                      "dkim_minimum_key_bits",
                                      "dkim_timeout",
                                      "dmarc_save_reports",
                                      "dns_available",
                                      "dns_block_rule",
                                      "dns_block_time",
                                      "dns_local_ports_avoid",
                                      "dns_local_ports_none",
                                      "dns_local_ports_permit",
                                      "dns_options",
                                      "dns_query_restriction",
                                      "dns_test_interval",
                                      "do_not_use_mail_spf",
                                      "do_not_use_mail_spf_query",
                                      "enable_compat",
                                      "extracttext_maxparts",
                                      "extracttext_timeout",
                                      "fns_add_addrlist",
                                      "fns_check",
                                      "fns_extrachars",
                                      "fns_ignore_dkim",
                                      "fns_ignore_headers",
                                      "fns_remove_addrlist",
                                      "freemail_add_describe_email",
                                      "freemail_import_def_welcomelist_auth",
                                      "freemail_import_def_whitelist_auth",
                                      "freemail_import_welcomelist_auth",
                                      "freemail_import_whitelist_auth",
                                      "freemail_max_body_emails",
                                      "freemail_max_body_freemails",
                                      "freemail_skip_bulk_envfrom",
                                      "freemail_skip_when_over_max",
                                      "geodb_module",
                                      "geodb_options",
                                      "geodb_search_path",
                                      "hashbl_email_domain_alias",
                                      "hashbl_email_regex",
                                      "hashbl_email_welcomelist",
                                      "hashbl_email_whitelist",
                                      "hashbl_ignore",
                                      "ignore_always_matching_regexps",
                                      "ignore_received_spf_header",
                                      "inactive_languages",
                                      "lock_method",
                                      "max_short_url_redirections",
                                      "max_short_urls",
                                      "mbox_format_from_regex",
                                      "normalize_charset",
                                      "ok_languages",
                                      "ok_locales",
                                      "olemacro_download_marker",
                                      "olemacro_extended_scan",
                                      "olemacro_exts",
                                      "olemacro_macro_exts",
                                      "olemacro_max_file",
                                      "olemacro_num_mime",
                                      "olemacro_num_zip",
                                      "olemacro_prefer_contentdisposition",
                                      "olemacro_skip_ctypes",
                                      "olemacro_skip_exts",
                                      "olemacro_zip_depth",
                                      "olemacro_zips",
                                      "originating_ip_headers",
                                      "parse_dkim_uris",
                                      "phishing_openphish_feed",
                                      "phishing_phishstats_feed",
                                      "phishing_phishstats_minscore",
                                      "phishing_phishtank_feed",
                                      "phishing_uri_noparam",
                                      "pyzor_count_min",
                                      "pyzor_fork",
                                      "pyzor_max",
                                      "pyzor_options",
                                      "pyzor_path",
                                      "pyzor_perl",
                                      "pyzor_server_file",
                                      "pyzor_timeout",
                                      "pyzor_welcomelist_factor",
                                      "pyzor_welcomelist_min",
                                      "pyzor_whitelist_factor",
                                      "pyzor_whitelist_min",
                                      "rawbody_part_scan_size",
                                      "razor_config",
                                      "razor_fork",
                                      "razor_timeout",
                                      "rbl_headers",
                                      "redirector_pattern",
                                      "report_template",
                                      "resource_limit_cpu",
                                      "resource_limit_mem",
                                      "run_reuse_tests_only",
                                      "shortcircuit",
                                      "shortcircuit_ham_score",
                                      "shortcircuit_max_spam_score",
                                      "shortcircuit_min_ham_score",
                                      "shortcircuit_spam_score",
                                      "skip_uribl_checks",
                                      "spamcop_from_address",
                                      "spamcop_max_report_size",
                                      "spamcop_relayhost",
                                      "spamcop_to_address",
                                      "spf_timeout",
                                      "subjprefix",
                                      "textcat_acceptable_score",
                                      "textcat_max_languages",
                                      "textcat_max_ngrams",
                                      "textcat_optimal_ngrams",
                                      "time_limit",
                                      "trigger_config",
                                      "trigger_ratio",
                                      "trigger_target",
                                      "txrep_autolearn",
                                      "txrep_dilution_factor",
                                      "txrep_expiry_days",
                                      "txrep_factor",
                                      "txrep_factory",
                                      "txrep_ipv4_mask_len",
                                      "txrep_ipv6_mask_len",
                                      "txrep_learn_bonus",
                                      "txrep_learn_penalty",
                                      "txrep_report_details",
                                      "txrep_spf",
                                      "txrep_track_messages",
                                      "txrep_user2global_ratio",
                                      "txrep_weight_domain",
                                      "txrep_weight_email",
                                      "txrep_weight_email_ip",
                                      "txrep_weight_helo",
                                      "txrep_weight_ip",
                                      "txrep_welcomelist_out",
                                      "unsafe_report_template",
                                      "unwelcomelist_from_dkim",
                                      "unwelcomelist_from_rcvd",
                                      "unwelcomelist_from_spf",
                                      "unwhitelist_from_dkim",
                                      "unwhitelist_from_rcvd",
                                      "unwhitelist_from_spf",
                                      "uri_block_cc",
                                      "uri_block_cidr",
                                      "uri_block_cont",
                                      "uri_block_exclude",
                                      "uri_block_isp",
                                      "uri_country_db_isp_path",
                                      "uri_country_db_path",
                                      "uri_detail",
                                      "uri_host_lists",
                                      "uridnsbl_timeout",
                                      "url_shortener",
                                      "url_shortener_cache_autoclean",
                                      "url_shortener_cache_dsn",
                                      "url_shortener_cache_password",
                                      "url_shortener_cache_ttl",
                                      "url_shortener_cache_type",
                                      "url_shortener_cache_username",
                                      "url_shortener_get",
                                      "url_shortener_loginfo",
                                      "url_shortener_timeout",
                                      "url_shortener_user_agent",
                                      "use_auto_welcomelist",
                                      "use_auto_whitelist",
                                      "use_dcc",
                                      "use_dcc_rep",
                                      "use_learner",
                                      "use_newest_received_spf_header",
                                      "use_pyzor",
                                      "use_razor2",
                                      "use_txrep",
                                      "user_awl_dsn",
                                      "user_awl_sql_override_username",
                                      "user_awl_sql_password",
                                      "user_awl_sql_table",
                                      "user_awl_sql_username",
                                      "user_scores_dsn",
                                      "user_scores_fallback_to_global",
                                      "user_scores_ldap_password",
                                      "user_scores_ldap_username",
                                      "user_scores_sql_custom_query",
                                      "user_scores_sql_password",
                                      "user_scores_sql_username",
                                      "util_rb_2tld",
                                      "util_rb_3tld",
                                      "util_rb_tld",
                                      "version_tag",
                                      "welcomelist_allows_relays",
                                      "welcomelist_bounce_relays",
                                      "welcomelist_from_dkim",
                                      "welcomelist_from_spf",
                                      "welcomelist_subject",
                                      "whitelist_allows_relays",
                                      "whitelist_bounce_relays",
                                      "whitelist_from_dkim",
                                      "whitelist_from_spf",
                                      "whitelist_subject",
                                      "whitelist_uri_host"};

/* Dispatches the list/network settings that need file:line for warnings. */
static int apply_special(tamis_conf_t *c, const char *k, const char *v, const char *file,
                         unsigned line, tamis_diag_t *diag)
{
    if (strstr(k, "_networks")) {
        tamis_cidr_list_t *l = net_list(c, k);
        if (strncmp(k, "clear_", 6) == 0) {
            free(l->items);
            l->items = NULL;
            l->count = 0;
            l->set = false;
            return 0;
        }
        return cidr_add_words(c, l, v, file, line, diag);
    }
    struct {
        const char *name;
        tamis_addr_list_t *list;
        bool remove, rcvd;
    } lists[] = {
        {"welcomelist_from", &c->welcomelist_from, false, false},
        {"whitelist_from", &c->welcomelist_from, false, false},
        {"unwelcomelist_from", &c->welcomelist_from, true, false},
        {"unwhitelist_from", &c->welcomelist_from, true, false},
        {"blocklist_from", &c->blocklist_from, false, false},
        {"blacklist_from", &c->blocklist_from, false, false},
        {"unblocklist_from", &c->blocklist_from, true, false},
        {"unblacklist_from", &c->blocklist_from, true, false},
        {"welcomelist_from_rcvd", &c->welcomelist_from_rcvd, false, true},
        {"whitelist_from_rcvd", &c->welcomelist_from_rcvd, false, true},
        {"def_welcomelist_from_rcvd", &c->def_welcomelist_from_rcvd, false, true},
        {"def_whitelist_from_rcvd", &c->def_welcomelist_from_rcvd, false, true},
        {"welcomelist_auth", &c->welcomelist_auth, false, false},
        {"whitelist_auth", &c->welcomelist_auth, false, false},
        {"unwelcomelist_auth", &c->welcomelist_auth, true, false},
        {"unwhitelist_auth", &c->welcomelist_auth, true, false},
        {"def_welcomelist_auth", &c->def_welcomelist_auth, false, false},
        {"def_whitelist_auth", &c->def_welcomelist_auth, false, false},
        {"welcomelist_to", &c->welcomelist_to, false, false},
        {"whitelist_to", &c->welcomelist_to, false, false},
        {"more_spam_to", &c->more_spam_to, false, false},
        {"all_spam_to", &c->all_spam_to, false, false},
        {"blocklist_to", &c->blocklist_to, false, false},
        {"blacklist_to", &c->blocklist_to, false, false},
        {"freemail_domains", &c->freemail_domains, false, false},
        {"freemail_welcomelist", &c->freemail_welcomelist, false, false},
        {"freemail_whitelist", &c->freemail_welcomelist, false, false},
        {"uridnsbl_skip_domain", &c->uridnsbl_skip_domains, false, false},
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        if (strcmp(k, lists[i].name) != 0)
            continue;
        if (lists[i].rcvd)
            return addr_rcvd(c, lists[i].list, v);
        return addr_words(c, lists[i].list, v, lists[i].remove);
    }
    if (strcmp(k, "enlist_addrlist") == 0)
        return named_list(c, &c->addrlists, &c->addrlist_count, v, false);
    if (strcmp(k, "enlist_uri_host") == 0)
        return named_list(c, &c->uri_host_lists, &c->uri_host_list_count, v, false);
    if (strcmp(k, "delist_uri_host") == 0)
        return named_list(c, &c->uri_host_lists, &c->uri_host_list_count, v, true);
    return TAMIS_EINVAL;
}

static const setting_t *find_setting(const char *key)
{
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        if (strcmp(settings[i].name, key) == 0)
            return &settings[i];
    return NULL;
}

static int cmp_name(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

static bool is_ignored(const char *key)
{
    /* families of settings accepted as a whole */
    if (strncmp(key, "bayes_stopword_", 15) == 0)
        return true;
    return bsearch(key, ignored, sizeof(ignored) / sizeof(ignored[0]), sizeof(ignored[0]),
                   cmp_name) != NULL;
}

static int parse_number(const char *v, double *out)
{
    char *end;
    if (!*v)
        return TAMIS_EINVAL;
    double d = strtod(v, &end);
    while (isspace((unsigned char)*end))
        end++;
    if (*end || !isfinite(d))
        return TAMIS_EINVAL;
    *out = d;
    return 0;
}

static int apply_simple(tamis_conf_t *c, const setting_t *s, const char *v)
{
    char *base = (char *)c;
    double d;
    switch (s->type) {
    case S_BOOL: {
        bool b;
        if (strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0)
            b = true;
        else if (strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0)
            b = false;
        else
            return TAMIS_EINVAL;
        *(bool *)(base + s->off) = b;
        return 0;
    }
    case S_NUM:
    case S_UINT:
    case S_INT:
        if (parse_number(v, &d) != 0 || d < s->min || d > s->max)
            return TAMIS_EINVAL;
        if (s->type == S_NUM)
            *(double *)(base + s->off) = d;
        else if (s->type == S_UINT)
            *(unsigned *)(base + s->off) = (unsigned)d;
        else
            *(int *)(base + s->off) = (int)d;
        return 0;
    case S_STR: {
        char *str = cstr(c, v);
        if (!str)
            return TAMIS_ENOMEM;
        *(char **)(base + s->off) = str;
        return 0;
    }
    case S_FN:
        return s->fn(c, s->name, v);
    }
    return TAMIS_EINVAL;
}

static int log_applied(tamis_conf_t *c, const char *key, const char *value, const char *file,
                       unsigned line)
{
    conf_internal_t *in = internal(c);
    if (in->applied_count >= MAX_APPLIED)
        return 0;
    if (in->applied_count == in->applied_cap) {
        size_t nc = in->applied_cap ? in->applied_cap * 2 : 64;
        applied_t *a = realloc(in->applied, nc * sizeof(*a));
        if (!a)
            return TAMIS_ENOMEM;
        in->applied = a;
        in->applied_cap = nc;
    }
    applied_t *e = &in->applied[in->applied_count];
    e->key = cstr(c, key);
    e->value = cstr(c, value);
    e->file = cstr(c, file ? file : "<cmdline>");
    e->line = line;
    if (!e->key || !e->value || !e->file)
        return TAMIS_ENOMEM;
    in->applied_count++;
    return 0;
}

int tamis_conf_apply(tamis_conf_t *c, const char *key, const char *value, const char *file,
                     unsigned line, tamis_diag_t *diag)
{
    if (!c || !key)
        return TAMIS_EINVAL;
    const char *v = value ? value : "";
    const setting_t *s = find_setting(key);
    if (!s) {
        if (!is_ignored(key))
            return TAMIS_CONF_UNKNOWN;
        int rc = log_applied(c, key, v, file, line);
        return rc < 0 ? rc : TAMIS_CONF_IGNORED;
    }
    int rc =
        s->fn == h_special ? apply_special(c, key, v, file, line, diag) : apply_simple(c, s, v);
    if (rc == TAMIS_ENOMEM)
        return rc;
    if (rc < 0) {
        tamis_diag_add(diag, TAMIS_DIAG_WARN, file, line, "invalid value for %s: \"%s\"", key, v);
        return TAMIS_CONF_APPLIED;
    }
    rc = log_applied(c, key, v, file, line);
    return rc < 0 ? rc : TAMIS_CONF_APPLIED;
}

/* ---- lifetime ---------------------------------------------------------------------------------
 */

static int set_defaults(tamis_conf_t *c)
{
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        const setting_t *s = &settings[i];
        char *base = (char *)c;
        if (s->type == S_NUM)
            *(double *)(base + s->off) = s->def;
        else if (s->type == S_BOOL)
            *(bool *)(base + s->off) = s->def != 0;
        else if (s->type == S_UINT)
            *(unsigned *)(base + s->off) = (unsigned)s->def;
    }
    c->report_safe = 1;
    c->report_charset = cstr(c, "UTF-8");
    c->report_hostname = cstr(c, "");
    c->report_contact = cstr(c, "the administrator of that system");
    c->report_template = cstr(c, "");
    c->unsafe_report_template = cstr(c, "");
    if (!c->report_charset || !c->report_hostname || !c->report_contact || !c->report_template ||
        !c->unsafe_report_template)
        return TAMIS_ENOMEM;
    /* The four headers of SA's 10_default_prefs.cf, present even when no file sets them. */
    int rc = header_add(c, TAMIS_CONF_ALL, "Checker-Version",
                        "SpamAssassin _VERSION_ (_SUBVERSION_) on _HOSTNAME_");
    if (!rc)
        rc = header_add(c, TAMIS_CONF_SPAM, "Flag", "_YESNOCAPS_");
    if (!rc)
        rc = header_add(c, TAMIS_CONF_ALL, "Level", "_STARS(*)_");
    if (!rc)
        rc = header_add(c, TAMIS_CONF_ALL, "Status",
                        "_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_ "
                        "autolearn=_AUTOLEARN_ version=_VERSION_");
    return rc;
}

tamis_conf_t *tamis_conf_new(void)
{
    tamis_conf_t *c = calloc(1, sizeof(*c));
    conf_internal_t *in = calloc(1, sizeof(*in));
    if (!c || !in) {
        free(c);
        free(in);
        return NULL;
    }
    c->internal = in;
    in->arena = tamis_arena_new(0);
    if (!in->arena || set_defaults(c) != 0) {
        tamis_conf_free(c);
        return NULL;
    }
    return c;
}

static void free_addr_list(tamis_addr_list_t *l)
{
    free(l->items);
}

static void free_named(tamis_named_list_t *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free_addr_list(&l[i].list);
    free(l);
}

void tamis_conf_free(tamis_conf_t *c)
{
    if (!c)
        return;
    free(c->headers);
    free(c->report_safe_copy_headers);
    free(c->trusted_networks.items);
    free(c->internal_networks.items);
    free(c->msa_networks.items);
    tamis_addr_list_t *lists[] = {&c->welcomelist_from,      &c->blocklist_from,
                                  &c->welcomelist_from_rcvd, &c->def_welcomelist_from_rcvd,
                                  &c->welcomelist_auth,      &c->def_welcomelist_auth,
                                  &c->welcomelist_to,        &c->more_spam_to,
                                  &c->all_spam_to,           &c->blocklist_to,
                                  &c->freemail_domains,      &c->freemail_welcomelist,
                                  &c->uridnsbl_skip_domains};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        free_addr_list(lists[i]);
    free_named(c->addrlists, c->addrlist_count);
    free_named(c->uri_host_lists, c->uri_host_list_count);
    conf_internal_t *in = internal(c);
    if (in) {
        free(in->applied);
        tamis_arena_free(in->arena);
        free(in);
    }
    free(c);
}

/* Scalar settings appear once (their last value); list-shaped ones once per line. A backward
 * pass marks the last line of each scalar setting, so the dump is linear in the lines applied. */
int tamis_conf_dump(const tamis_conf_t *c, tamis_buf_t *out)
{
    if (!c || !out)
        return TAMIS_EINVAL;
    const conf_internal_t *in = (const conf_internal_t *)c->internal;
    enum { NSET = sizeof(settings) / sizeof(settings[0]) };
    bool seen[NSET] = {false};
    bool *keep = calloc(in->applied_count + 1, sizeof(bool));
    if (!keep)
        return TAMIS_ENOMEM;
    for (size_t i = in->applied_count; i-- > 0;) {
        const setting_t *st = find_setting(in->applied[i].key);
        size_t idx = st ? (size_t)(st - settings) : NSET;
        bool scalar = st && st->type != S_FN;
        keep[i] = !scalar || !seen[idx];
        if (scalar)
            seen[idx] = true;
    }
    for (size_t i = 0; i < in->applied_count; i++) {
        const applied_t *e = &in->applied[i];
        if (keep[i])
            tamis_buf_printf(out, "%s %s  # %s:%u\n", e->key, e->value, e->file, e->line);
    }
    free(keep);
    return out->err;
}
