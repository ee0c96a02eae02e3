/*
 * Rule directives of the .cf language (spec-rules §2): header, body, rawbody, full, uri, meta,
 * mimeheader, askdns, the uridnsbl family, and the keyed attributes score, describe, tflags,
 * priority, subjprefix, plus ReplaceTags' replace_* directives.
 *
 * Definitions are recorded here (text, file:line) and compiled at the end of loading
 * (compile.c), because ReplaceTags and capture templates are applied after every file is read,
 * as SpamAssassin does in finish_parsing.
 */
#include "rules/rules_int.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool valid_rule_name(const char *s, size_t n)
{
    if (n == 0 || n > TAMIS__MAX_RULE_NAME)
        return false;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* Splits "NAME rest": copies NAME into name (bounded) and points *rest past the blanks. */
static bool split_name(const char *v, char *name, size_t cap, const char **rest)
{
    const char *p = v;
    while (*p && !isspace((unsigned char)*p))
        p++;
    size_t n = (size_t)(p - v);
    if (n == 0 || n >= cap)
        return false;
    memcpy(name, v, n);
    name[n] = 0;
    while (isspace((unsigned char)*p))
        p++;
    *rest = p;
    return true;
}

static void warn(tamis_diag_t *diag, const char *file, unsigned line, const char *fmt,
                 const char *a, const char *b)
{
    tamis_diag_add(diag, TAMIS_DIAG_WARN, file, line, fmt, a, b ? b : "");
}

/* Starts a (re)definition: the previous one of that name is forgotten entirely. */
static tamis__rule_t *define(tamis_ruleset_t *rs, const char *name, tamis__kind_t kind,
                             tamis_rule_type_t type, const char *def, const char *file,
                             unsigned line)
{
    tamis__rule_t *r = tamis__rule_get(rs, name, true);
    if (!r)
        return NULL;
    r->kind = kind;
    r->type = type;
    r->def = tamis_arena_strdup(rs->arena, def);
    r->file = file;
    r->line = line;
    r->hdr = r->if_unset = r->pattern = r->func = NULL;
    r->negate = r->has_template = r->captures = r->dropped = r->unsupported = false;
    r->error = NULL;
    r->args = NULL;
    r->nargs = 0;
    r->ev = NULL;
    r->meta = NULL;
    r->deps = NULL;
    r->dep_uses = NULL;
    r->ndeps = 0;
    return r->def ? r : NULL;
}

/* ---- eval arguments (Parser::pack_eval_args) ------------------------------------------------- */

static bool bare_arg_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == ':' || c == '-';
}

/* "func(args)" → r->func, r->args. Returns 0, TAMIS_EPARSE, or TAMIS_ENOMEM. */
int tamis__parse_eval(tamis_ruleset_t *rs, tamis__rule_t *r, const char *text)
{
    const char *p = text;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    size_t fl = (size_t)(p - text);
    size_t n = strlen(text);
    if (fl == 0 || *p != '(' || n < fl + 2 || text[n - 1] != ')')
        return TAMIS_EPARSE;
    const char *a = p + 1, *end = text + n - 1;
    char *args[TAMIS__MAX_EVAL_ARGS];
    size_t na = 0;
    const char *q = a;
    while (q < end && isspace((unsigned char)*q))
        q++;
    if (q == end && q != a) /* only blanks: no arguments */
        a = end;
    while (a < end) {
        while (a < end && isspace((unsigned char)*a))
            a++;
        const char *s, *e;
        if (*a == '\'' || *a == '"') {
            char quote = *a;
            s = a + 1;
            e = memchr(s, quote, (size_t)(end - s));
            if (!e)
                return TAMIS_EPARSE;
            a = e + 1;
        } else {
            s = a;
            while (a < end && bare_arg_char(*a))
                a++;
            e = a;
            if (e == s)
                return TAMIS_EPARSE;
        }
        while (a < end && isspace((unsigned char)*a))
            a++;
        if (a < end) {
            if (*a != ',')
                return TAMIS_EPARSE;
            a++;
            while (a < end && isspace((unsigned char)*a))
                a++;
        }
        if (na >= TAMIS__MAX_EVAL_ARGS)
            return TAMIS_EPARSE;
        if (!(args[na++] = tamis_arena_strndup(rs->arena, s, (size_t)(e - s))))
            return TAMIS_ENOMEM;
    }
    r->func = tamis_arena_strndup(rs->arena, text, fl);
    r->args = tamis_arena_calloc(rs->arena, na + 1, sizeof(char *));
    if (!r->func || !r->args)
        return TAMIS_ENOMEM;
    memcpy(r->args, args, na * sizeof(char *));
    r->nargs = na;
    return 0;
}

static int define_eval(tamis_ruleset_t *rs, const char *name, tamis_rule_type_t type,
                       const char *fn, const char *file, unsigned line, tamis_diag_t *diag)
{
    tamis__rule_t *r = define(rs, name, TAMIS__K_EVAL, type, fn, file, line);
    if (!r)
        return TAMIS_ENOMEM;
    int rc = tamis__parse_eval(rs, r, fn);
    if (rc == TAMIS_ENOMEM)
        return rc;
    if (rc) {
        warn(diag, file, line, "syntax error for eval function %s: %s", name, fn);
        r->dropped = true;
        r->error = "eval syntax error";
    }
    return 0;
}

/* ---- header rules ------------------------------------------------------------------------------
 */

static bool valid_modifier(const char *m, size_t n)
{
    static const char *const mods[] = {"raw", "addr",  "name",  "host", "domain",
                                       "ip",  "revip", "first", "last", NULL};
    for (size_t i = 0; mods[i]; i++)
        if (strlen(mods[i]) == n && strncmp(mods[i], m, n) == 0)
            return true;
    return false;
}

/* "Hdr[:mod[:mod]] =~ /re/ [if-unset: X]" (Parser::add_test, TYPE_HEAD_TESTS). */
static int parse_header_test(tamis_ruleset_t *rs, tamis__rule_t *r, const char *t,
                             tamis_diag_t *diag)
{
    (void)diag;
    const char *p = t;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-')
        p++;
    if (p == t)
        return TAMIS_EPARSE;
    int nmods = 0;
    while (*p == ':') {
        const char *m = p + 1, *e = m;
        while (*e >= 'a' && *e <= 'z')
            e++;
        if (e == m) { /* a trailing ':' is allowed and ignored */
            p++;
            break;
        }
        if (++nmods > 2 || !valid_modifier(m, (size_t)(e - m)))
            return TAMIS_EPARSE;
        p = e;
    }
    size_t hl = (size_t)(p - t);
    while (hl > 0 && t[hl - 1] == ':')
        hl--;
    while (isspace((unsigned char)*p))
        p++;
    if (!((p[0] == '=' || p[0] == '!') && p[1] == '~'))
        return TAMIS_EPARSE;
    r->negate = p[0] == '!';
    p += 2;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return TAMIS_EPARSE;
    r->hdr = tamis_arena_strndup(rs->arena, t, hl);
    char *pat = tamis_arena_strdup(rs->arena, p);
    if (!r->hdr || !pat)
        return TAMIS_ENOMEM;
    /* "\s+[if-unset: X]" at the very end */
    size_t n = strlen(pat);
    while (n > 0 && isspace((unsigned char)pat[n - 1]))
        pat[--n] = 0;
    char *iu = strstr(pat, "[if-unset:");
    char *last = NULL;
    while (iu) {
        last = iu;
        iu = strstr(iu + 1, "[if-unset:");
    }
    if (last && last > pat && isspace((unsigned char)last[-1]) && pat[n - 1] == ']' &&
        isspace((unsigned char)last[10])) {
        char *v = last + 10;
        while (isspace((unsigned char)*v))
            v++;
        pat[n - 1] = 0;
        r->if_unset = tamis_arena_strdup(rs->arena, v);
        char *e = last;
        while (e > pat && isspace((unsigned char)e[-1]))
            e--;
        *e = 0;
    }
    r->def = pat; /* from here on the definition is the regex */
    return 0;
}

static int define_header(tamis_ruleset_t *rs, const char *name, const char *rest,
                         tamis_rule_type_t type, const char *file, unsigned line,
                         tamis_diag_t *diag)
{
    if (type == TAMIS_RULE_HEADER && strncmp(rest, "exists:", 7) == 0) {
        const char *h = rest + 7;
        size_t n = strlen(h);
        size_t i = 0;
        while (i < n && (isalnum((unsigned char)h[i]) || h[i] == '_' || h[i] == '.' || h[i] == '-'))
            i++;
        tamis__rule_t *r = define(rs, name, TAMIS__K_EXISTS, type, rest, file, line);
        if (!r)
            return TAMIS_ENOMEM;
        if (i == 0 || !(i == n || (i + 1 == n && h[i] == ':'))) {
            warn(diag, file, line, "invalid head test %s header: %s", name, h);
            r->dropped = true;
            r->error = "invalid exists: header name";
            return 0;
        }
        r->hdr = tamis_arena_strndup(rs->arena, h, i);
        return r->hdr ? 0 : TAMIS_ENOMEM;
    }
    tamis__rule_t *r = define(rs, name, TAMIS__K_REGEX, type, rest, file, line);
    if (!r)
        return TAMIS_ENOMEM;
    int rc = parse_header_test(rs, r, rest, diag);
    if (rc == TAMIS_ENOMEM)
        return rc;
    if (rc) {
        warn(diag, file, line, "invalid head test %s: %s", name, rest);
        r->dropped = true;
        r->error = "invalid header test";
    }
    return 0;
}

/* ---- attributes --------------------------------------------------------------------------------
 */

static bool parse_score_value(const char *w, double *out, bool *relative)
{
    char buf[64];
    size_t n = strlen(w);
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, w, n + 1);
    char *s = buf;
    if (n >= 2 && s[0] == '(' && s[n - 1] == ')') {
        s[n - 1] = 0;
        s++;
        *relative = true;
    }
    /* SA: /^-?\d+(?:\.\d+)?$/ */
    const char *q = s;
    if (*q == '-')
        q++;
    if (!isdigit((unsigned char)*q))
        return false;
    while (isdigit((unsigned char)*q))
        q++;
    if (*q == '.') {
        q++;
        if (!isdigit((unsigned char)*q))
            return false;
        while (isdigit((unsigned char)*q))
            q++;
    }
    if (*q)
        return false;
    *out = strtod(s, NULL);
    return true;
}

static int attr_score(tamis_ruleset_t *rs, const char *v, const char *file, unsigned line,
                      tamis_diag_t *diag)
{
    char name[TAMIS__MAX_RULE_NAME + 30], w[4][64];
    const char *rest;
    int n = 0;
    if (!split_name(v, name, sizeof(name), &rest))
        goto invalid;
    while (*rest && n <= 4) {
        const char *s = rest;
        while (*rest && !isspace((unsigned char)*rest))
            rest++;
        if (n == 4 || (size_t)(rest - s) >= sizeof(w[0])) {
            n = 5;
            break;
        }
        memcpy(w[n], s, (size_t)(rest - s));
        w[n++][rest - s] = 0;
        while (isspace((unsigned char)*rest))
            rest++;
    }
    if (n != 1 && n != 4)
        goto invalid;
    double sc[4];
    bool rel = false;
    for (int i = 0; i < n; i++)
        if (!parse_score_value(w[i], &sc[i], &rel))
            goto invalid;
    for (int i = n; i < 4; i++)
        sc[i] = sc[0];
    tamis__rule_t *r = tamis__rule_get(rs, name, true);
    if (!r)
        return TAMIS_ENOMEM;
    if (rel && !r->scored) {
        warn(diag, file, line, "relative score without previous setting: %s%s", name, NULL);
        return 0;
    }
    for (int i = 0; i < 4; i++)
        r->score[i] = rel ? r->score[i] + sc[i] : sc[i];
    r->scored = true;
    return 0;
invalid:
    warn(diag, file, line, "invalid score: %s%s", v, NULL);
    return 0;
}

static unsigned parse_tflags(const char *v, unsigned *maxhits)
{
    static const struct {
        const char *name;
        unsigned flag;
    } known[] = {
        {"net", TAMIS_TFLAG_NET},
        {"nice", TAMIS_TFLAG_NICE},
        {"userconf", TAMIS_TFLAG_USERCONF},
        {"noautolearn", TAMIS_TFLAG_NOAUTOLEARN},
        {"multiple", TAMIS_TFLAG_MULTIPLE},
        {"learn", TAMIS_TFLAG_LEARN},
        {"nosubject", TAMIS_TFLAG_NOSUBJECT},
        {"autolearn_force", TAMIS_TFLAG_AUTOLEARN_FORCE},
        {"nolog", TAMIS_TFLAG_NOLOG},
        {"autolearn_body", TAMIS_TFLAG_AUTOLEARN_BODY},
        {"autolearn_header", TAMIS_TFLAG_AUTOLEARN_HEADER},
        {"a", TAMIS_TFLAG_A},
        {"ns", TAMIS_TFLAG_NS},
        {"domains_only", TAMIS_TFLAG_DOMAINS_ONLY},
        {"ips_only", TAMIS_TFLAG_IPS_ONLY},
        {"notrim", TAMIS_TFLAG_NOTRIM},
    };
    unsigned f = 0;
    *maxhits = 0;
    const char *p = v;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        size_t n = (size_t)(p - s);
        if (n > 8 && strncmp(s, "maxhits=", 8) == 0) {
            *maxhits = (unsigned)strtoul(s + 8, NULL, 10); /* only used with multiple */
            continue;
        }
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (strlen(known[i].name) == n && strncmp(known[i].name, s, n) == 0)
                f |= known[i].flag;
    }
    return f;
}

static int attr_simple(tamis_ruleset_t *rs, const char *key, const char *v, const char *file,
                       unsigned line, tamis_diag_t *diag)
{
    char name[TAMIS__MAX_RULE_NAME + 30];
    const char *rest;
    if (!split_name(v, name, sizeof(name), &rest)) {
        warn(diag, file, line, "invalid %s: %s", key, v);
        return 0;
    }
    tamis__rule_t *r = tamis__rule_get(rs, name, true);
    if (!r)
        return TAMIS_ENOMEM;
    if (strcmp(key, "describe") == 0) {
        r->desc = tamis_arena_strdup(rs->arena, rest);
        return r->desc ? 0 : TAMIS_ENOMEM;
    }
    if (strcmp(key, "tflags") == 0) {
        r->tflags = parse_tflags(rest, &r->maxhits);
        return 0;
    }
    if (strcmp(key, "subjprefix") == 0) {
        r->subjprefix = tamis_arena_strdup(rs->arena, rest);
        return r->subjprefix ? 0 : TAMIS_ENOMEM;
    }
    /* priority */
    char *end;
    long pr = strtol(rest, &end, 10);
    if (end == rest || *end || pr < -1000000000L || pr > 1000000000L) {
        warn(diag, file, line, "invalid priority: %s%s", v, NULL);
        return 0;
    }
    r->priority = (int)pr;
    r->priority_set = true;
    return 0;
}

/* redirector_pattern /re/mods (Conf.pm, compile_regexp strict): kept as a PCRE source with the
 * modifiers inline; lib/msg compiles them all at the end of loading. */
static int redirector_pattern(tamis_ruleset_t *rs, const char *v, const char *file, unsigned line,
                              tamis_diag_t *diag)
{
    char *pat = NULL, err[200];
    uint32_t flags = 0;
    if (!*v || tamis__regex_split(v, NULL, &pat, &flags, rs->arena, err, sizeof err) != 0) {
        warn(diag, file, line, "invalid redirector_pattern %s: %s", v, *v ? err : "no value");
        return 0;
    }
    char *src = tamis__regex_source(pat);
    if (!src)
        return TAMIS_ENOMEM;
    char *full =
        tamis_arena_printf(rs->arena, "(?%s%s%s%s)%s", flags & PCRE2_CASELESS ? "i" : "",
                           flags & PCRE2_MULTILINE ? "m" : "", flags & PCRE2_DOTALL ? "s" : "",
                           flags & PCRE2_EXTENDED ? "x" : "", src);
    free(src);
    if (!full)
        return TAMIS_ENOMEM;
    /* "(?)" is not valid PCRE: drop an empty option group */
    if (!strncmp(full, "(?)", 3))
        full += 3;
    return tamis__kv_set(rs, &rs->redirector_src, &rs->nredirector_src, full, "");
}

/* ---- ReplaceTags -------------------------------------------------------------------------------
 */

/* The URIDNSBL declarations (not its settings: uridnsbl_skip_domain, uridnsbl_max_domains …). */
static bool is_uribl_directive(const char *key)
{
    static const char *const names[] = {"uridnsbl",       "uridnssub",      "urirhsbl",
                                        "urirhssub",      "urinsrhsbl",     "urinsrhssub",
                                        "urifullnsrhsbl", "urifullnsrhssub"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(key, names[i]) == 0)
            return true;
    return false;
}

int tamis__kv_set(tamis_ruleset_t *rs, tamis__kv_t **list, size_t *n, const char *name,
                  const char *value)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*list)[i].name, name) == 0) {
            (*list)[i].value = tamis_arena_strdup(rs->arena, value);
            return (*list)[i].value ? 0 : TAMIS_ENOMEM;
        }
    if (*n >= TAMIS__MAX_RULES)
        return TAMIS_ELIMIT;
    tamis__kv_t *a = realloc(*list, (*n + 1) * sizeof(*a));
    if (!a)
        return TAMIS_ENOMEM;
    *list = a;
    a[*n].name = tamis_arena_strdup(rs->arena, name);
    a[*n].value = tamis_arena_strdup(rs->arena, value);
    if (!a[*n].name || !a[*n].value)
        return TAMIS_ENOMEM;
    (*n)++;
    return 0;
}

static const char *kv_get(const tamis__kv_t *list, size_t n, const char *name, size_t nl)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i].name) == nl && strncmp(list[i].name, name, nl) == 0)
            return list[i].value;
    return NULL;
}

static int replace_directive(tamis_ruleset_t *rs, const char *key, const char *v, const char *file,
                             unsigned line, tamis_diag_t *diag)
{
    if (strcmp(key, "replace_start") == 0 || strcmp(key, "replace_end") == 0) {
        char *s = tamis_arena_strdup(rs->arena, v);
        if (!s)
            return TAMIS_ENOMEM;
        if (key[8] == 's')
            rs->tag_start = s;
        else
            rs->tag_end = s;
        return 0;
    }
    if (strcmp(key, "replace_rules") == 0) {
        const char *p = v;
        while (*p) {
            char name[TAMIS__MAX_RULE_NAME + 30];
            const char *rest;
            if (!split_name(p, name, sizeof(name), &rest))
                break;
            tamis__rule_t *r = tamis__rule_get(rs, name, true);
            if (!r)
                return TAMIS_ENOMEM;
            r->replace_tags = true;
            p = rest;
        }
        return 0;
    }
    int which = strcmp(key, "replace_tag") == 0     ? 0
                : strcmp(key, "replace_pre") == 0   ? 1
                : strcmp(key, "replace_inter") == 0 ? 2
                                                    : 3;
    char name[256];
    const char *rest;
    if (!split_name(v, name, sizeof(name), &rest) || !*rest) {
        warn(diag, file, line, "invalid %s: %s", key, v);
        return 0;
    }
    return tamis__kv_set(rs, &rs->tags[which], &rs->ntags[which], name, rest);
}

/* Finds start…end (non-greedy, non-empty) in s; returns the tag start or NULL. */
static const char *find_tag(const char *s, const char *st, const char *en, const char **name,
                            size_t *nl, const char **after)
{
    size_t sl = strlen(st), el = strlen(en);
    for (const char *p = strstr(s, st); p; p = strstr(p + 1, st)) {
        const char *n = p + sl;
        const char *e = strstr(n + 1, en); /* .+? needs at least one character */
        if (!*n || !e)
            return NULL;
        *name = n;
        *nl = (size_t)(e - n);
        *after = e + el;
        return p;
    }
    return NULL;
}

/* Removes the first "<kind NAME>" from re (in place); returns NAME's value from list. */
static const char *take_directive(char *re, const char *st, const char *en, const char *kind,
                                  const tamis__kv_t *list, size_t n, bool *found)
{
    char open[64];
    snprintf(open, sizeof(open), "%s%s ", st, kind);
    char *p = strstr(re, open);
    *found = false;
    if (!p)
        return NULL;
    char *nm = p + strlen(open);
    char *e = strstr(nm + 1, en);
    if (!*nm || !e)
        return NULL;
    const char *v = kv_get(list, n, nm, (size_t)(e - nm));
    memmove(p, e + strlen(en), strlen(e + strlen(en)) + 1);
    *found = true;
    return v;
}

/* One pass of ReplaceTags::finish_parsing_end over re; sets *again when a replacement holds
 * further tags. */
static int replace_pass(const tamis_ruleset_t *rs, char *re, tamis_buf_t *out, bool *again)
{
    const char *st = rs->tag_start, *en = rs->tag_end;
    bool f;
    const char *pre = take_directive(re, st, en, "pre", rs->tags[1], rs->ntags[1], &f);
    const char *post = take_directive(re, st, en, "post", rs->tags[3], rs->ntags[3], &f);
    const char *inter = take_directive(re, st, en, "inter", rs->tags[2], rs->ntags[2], &f);
    /* split(/(<[^<>]+>)/): alternating text and tag elements (leading empty text kept) */
    const char *p = re;
    bool first = true;
    while (*p || first) {
        const char *lt = p;
        const char *tag = NULL;
        size_t tl = 0;
        for (; *lt; lt++) {
            if (*lt != '<')
                continue;
            const char *q = lt + 1;
            while (*q && *q != '<' && *q != '>')
                q++;
            if (*q == '>' && q > lt + 1) {
                tag = lt;
                tl = (size_t)(q + 1 - lt);
                break;
            }
        }
        size_t textlen = (size_t)((tag ? tag : lt) - p);
        /* text element: inter goes into empty elements (between adjacent tags, or at start) */
        /* SA works on qr_to_string(), which always starts with "(?aa…)", so the leading element
         * is never empty and never receives inter */
        if (textlen == 0 && inter && *inter && tag && !first)
            tamis_buf_puts(out, inter);
        else
            tamis_buf_append(out, p, textlen);
        if (!tag)
            break;
        /* tag element: pre + replacement + post */
        const char *name, *after;
        size_t nl;
        char *elem = strndup(tag, tl);
        if (!elem)
            return TAMIS_ENOMEM;
        if (find_tag(elem, st, en, &name, &nl, &after)) {
            const char *val = kv_get(rs->tags[0], rs->ntags[0], name, nl);
            if (pre && *pre)
                tamis_buf_puts(out, pre);
            if (val && *val) {
                tamis_buf_puts(out, val);
                if (strchr(val, '<') && strchr(val, '>'))
                    *again = true;
            } else {
                tamis_buf_puts(out, elem);
            }
            if (post && *post)
                tamis_buf_puts(out, post);
        } else {
            tamis_buf_puts(out, elem);
        }
        free(elem);
        p = tag + tl;
        first = false;
        if (!*p)
            break;
    }
    return out->err;
}

char *tamis__replace_tags(const tamis_ruleset_t *rs, const char *pattern)
{
    char *cur = strdup(pattern);
    if (!cur)
        return NULL;
    for (int pass = 0; pass <= 5; pass++) {
        tamis_buf_t b;
        tamis_buf_init(&b, TAMIS__MAX_PATTERN * 4);
        bool again = false;
        if (replace_pass(rs, cur, &b, &again) != 0) {
            tamis_buf_free(&b);
            free(cur);
            return NULL;
        }
        free(cur);
        size_t len;
        cur = tamis_buf_steal(&b, &len);
        if (!cur || !again)
            break;
    }
    return cur;
}

/* ---- dispatcher
 * ---------------------------------------------------------------------------------- */

static int rule_body(tamis_ruleset_t *rs, const char *key, const char *v, const char *file,
                     unsigned line, tamis_diag_t *diag)
{
    char name[TAMIS__MAX_RULE_NAME + 30];
    const char *rest;
    if (!split_name(v, name, sizeof(name), &rest) || !*rest) {
        warn(diag, file, line, "invalid %s rule: %s", key, v);
        return 0;
    }
    if (!valid_rule_name(name, strlen(name))) {
        warn(diag, file, line, "invalid rule name %s%s", name, NULL);
        return 0;
    }
    bool is_eval = strncmp(rest, "eval:", 5) == 0 || strncmp(rest, "rbleval:", 8) == 0;
    const char *fn = rest + (rest[0] == 'r' ? 8 : 5);
    if (strcmp(key, "header") == 0) {
        if (is_eval)
            return define_eval(rs, name, TAMIS_RULE_EVAL_HEADER, fn, file, line, diag);
        return define_header(rs, name, rest, TAMIS_RULE_HEADER, file, line, diag);
    }
    if (strcmp(key, "mimeheader") == 0)
        return define_header(rs, name, rest, TAMIS_RULE_MIMEHEADER, file, line, diag);
    if (strcmp(key, "meta") == 0)
        return define(rs, name, TAMIS__K_META, TAMIS_RULE_META, rest, file, line) ? 0
                                                                                  : TAMIS_ENOMEM;
    static const struct {
        const char *key;
        tamis_rule_type_t re, ev;
    } types[] = {
        {"body", TAMIS_RULE_BODY, TAMIS_RULE_EVAL_BODY},
        {"rawbody", TAMIS_RULE_RAWBODY, TAMIS_RULE_EVAL_RAWBODY},
        {"full", TAMIS_RULE_FULL, TAMIS_RULE_EVAL_FULL},
        {"uri", TAMIS_RULE_URI, TAMIS_RULE_URI},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(key, types[i].key) != 0)
            continue;
        if (is_eval && types[i].re != TAMIS_RULE_URI)
            return define_eval(rs, name, types[i].ev, fn, file, line, diag);
        return define(rs, name, TAMIS__K_REGEX, types[i].re, rest, file, line) ? 0 : TAMIS_ENOMEM;
    }
    return 0;
}

/* askdns NAME QUERY [TYPE [SUBTEST]]: an eval rule delegated to the network layer. */
static int rule_askdns(tamis_ruleset_t *rs, const char *v, const char *file, unsigned line,
                       tamis_diag_t *diag)
{
    char name[TAMIS__MAX_RULE_NAME + 30];
    const char *rest;
    if (!split_name(v, name, sizeof(name), &rest) || !*rest ||
        !valid_rule_name(name, strlen(name))) {
        warn(diag, file, line, "invalid askdns rule: %s%s", v, NULL);
        return 0;
    }
    tamis__rule_t *r = define(rs, name, TAMIS__K_EVAL, TAMIS_RULE_EVAL_HEADER, rest, file, line);
    if (!r)
        return TAMIS_ENOMEM;
    char *args[3];
    size_t na = 0;
    const char *p = rest;
    while (*p && na < 3) {
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (na == 2) /* the subtest may contain blanks (a regex) */
            while (*p)
                p++;
        if (!(args[na++] = tamis_arena_strndup(rs->arena, s, (size_t)(p - s))))
            return TAMIS_ENOMEM;
        while (isspace((unsigned char)*p))
            p++;
    }
    r->func = "askdns";
    r->args = tamis_arena_calloc(rs->arena, na + 1, sizeof(char *));
    if (!r->args)
        return TAMIS_ENOMEM;
    memcpy(r->args, args, na * sizeof(char *));
    r->nargs = na;
    r->tflags |= TAMIS_TFLAG_NET;
    return 0;
}

int tamis__parse_rule_directive(tamis_ruleset_t *rs, const char *key, const char *value,
                                const char *file, unsigned line, tamis_diag_t *diag)
{
    static const char *const rule_keys[] = {"header", "body", "rawbody",    "full",
                                            "uri",    "meta", "mimeheader", NULL};
    for (size_t i = 0; rule_keys[i]; i++)
        if (strcmp(key, rule_keys[i]) == 0) {
            int rc = rule_body(rs, key, value, file, line, diag);
            return rc < 0 ? rc : 1;
        }
    int rc = 0;
    if (strcmp(key, "score") == 0)
        rc = attr_score(rs, value, file, line, diag);
    else if (strcmp(key, "describe") == 0 || strcmp(key, "tflags") == 0 ||
             strcmp(key, "priority") == 0 || strcmp(key, "subjprefix") == 0)
        rc = attr_simple(rs, key, value, file, line, diag);
    else if (strncmp(key, "replace_", 8) == 0 &&
             (strcmp(key + 8, "tag") == 0 || strcmp(key + 8, "pre") == 0 ||
              strcmp(key + 8, "inter") == 0 || strcmp(key + 8, "post") == 0 ||
              strcmp(key + 8, "start") == 0 || strcmp(key + 8, "end") == 0 ||
              strcmp(key + 8, "rules") == 0))
        rc = replace_directive(rs, key, value, file, line, diag);
    else if (strcmp(key, "askdns") == 0)
        rc = rule_askdns(rs, value, file, line, diag);
    else if (is_uribl_directive(key))
        rc = tamis__kv_set(rs, &rs->uridnsbl, &rs->nuridnsbl, value, key); /* line → directive */
    else if (strcmp(key, "redirector_pattern") == 0)
        rc = redirector_pattern(rs, value, file, line, diag);
    else if (strcmp(key, "dns_block_rule") == 0)
        rc = tamis__kv_set(rs, &rs->dns_block, &rs->ndns_block, value, key);
    else if (strcmp(key, "test") == 0 || strcmp(key, "reuse") == 0)
        rc = 0; /* rule QA only */
    else
        return 0;
    return rc < 0 ? rc : 1;
}
