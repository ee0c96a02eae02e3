/*
 * DMARC (RFC 7489) without DNS: the record parser, the organisational domain (libpsl's built-in
 * public suffix list, as Mail::DMARC uses the Mozilla list), and the author domain of a From:
 * field. The policy evaluation that needs the lookups lives in auth.c.
 */
#include "auth/dkim_int.h"

#include <ctype.h>
#include <libpsl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool slice_ieq(tamis_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

bool tamis__dmarc_is_record(const char *txt, size_t n)
{
    /* "v=DMARC1" then the end, white space or ';' (Mail::DMARC compares the first 8 bytes) */
    if (n < 8 || strncasecmp(txt, "v=DMARC1", 8) != 0)
        return false;
    return n == 8 || txt[8] == ';' || txt[8] == ' ' || txt[8] == '\t';
}

static bool policy_of(tamis_slice_t v, tamis_dmarc_policy_t *p)
{
    if (slice_ieq(v, "none"))
        *p = TAMIS_DMARC_POLICY_NONE;
    else if (slice_ieq(v, "quarantine"))
        *p = TAMIS_DMARC_POLICY_QUARANTINE;
    else if (slice_ieq(v, "reject"))
        *p = TAMIS_DMARC_POLICY_REJECT;
    else
        return false;
    return true;
}

int tamis__dmarc_parse(const char *txt, size_t n, tamis__dmarc_rec_t *out)
{
    tamis__tag_t tags[TAMIS__TAG_MAX];
    size_t count;
    memset(out, 0, sizeof(*out));
    out->pct = 100;
    if (!tamis__dmarc_is_record(txt, n))
        return TAMIS_EPARSE;
    if (tamis__taglist_parse(txt, n, tags, TAMIS__TAG_MAX, &count) || count == 0)
        return TAMIS_EPARSE;
    const tamis__tag_t *t = &tags[0];
    if (!slice_ieq(t->name, "v") || !slice_ieq(t->value, "DMARC1"))
        return TAMIS_EPARSE;
    if ((t = tamis__tag_find(tags, count, "p")) != NULL)
        out->valid_p = policy_of(t->value, &out->p);
    if ((t = tamis__tag_find(tags, count, "sp")) != NULL)
        out->has_sp = policy_of(t->value, &out->sp);
    if ((t = tamis__tag_find(tags, count, "adkim")) != NULL) {
        if (slice_ieq(t->value, "s"))
            out->adkim_strict = true;
        else if (!slice_ieq(t->value, "r"))
            return TAMIS_EPARSE;
    }
    if ((t = tamis__tag_find(tags, count, "aspf")) != NULL) {
        if (slice_ieq(t->value, "s"))
            out->aspf_strict = true;
        else if (!slice_ieq(t->value, "r"))
            return TAMIS_EPARSE;
    }
    if ((t = tamis__tag_find(tags, count, "pct")) != NULL) {
        unsigned v = 0;
        if (t->value.len == 0 || t->value.len > 3)
            return TAMIS_EPARSE;
        for (size_t i = 0; i < t->value.len; i++) {
            if (!isdigit((unsigned char)t->value.ptr[i]))
                return TAMIS_EPARSE;
            v = v * 10 + (unsigned)(t->value.ptr[i] - '0');
        }
        if (v > 100)
            return TAMIS_EPARSE;
        out->pct = v;
        out->has_pct = true;
    }
    if ((t = tamis__tag_find(tags, count, "rua")) != NULL) {
        /* comma-separated URIs; one mailto: or https: is enough to be usable */
        size_t i = 0;
        while (i < t->value.len) {
            size_t j = i;
            while (j < t->value.len && t->value.ptr[j] != ',')
                j++;
            tamis_slice_t u = tamis_slice(t->value.ptr + i, j - i);
            while (u.len && isspace((unsigned char)u.ptr[0]))
                u.ptr++, u.len--;
            if ((u.len > 7 && strncasecmp(u.ptr, "mailto:", 7) == 0 && memchr(u.ptr, '@', u.len)) ||
                (u.len > 8 && strncasecmp(u.ptr, "https://", 8) == 0))
                out->has_rua = true;
            i = j + 1;
        }
    }
    return 0;
}

const char *tamis__org_domain(const char *domain, tamis_arena_t *arena)
{
    const psl_ctx_t *psl = psl_builtin();
    const char *reg = psl ? psl_registrable_domain(psl, domain) : NULL;
    return tamis_arena_strdup(arena, reg ? reg : domain);
}

/* Finds the first address: *s..*e spans it, *at is its last '@'. */
static bool find_address(const char *from, const char **ps, const char **pe, const char **pat)
{
    /* the address inside <…> when there is one, else the first word holding an '@', with
     * comments (…) and quoted strings skipped */
    const char *lt = NULL;
    int depth = 0;
    bool quoted = false;
    for (const char *p = from; *p; p++) {
        if (quoted) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                quoted = false;
            continue;
        }
        if (*p == '"' && depth == 0)
            quoted = true;
        else if (*p == '(')
            depth++;
        else if (*p == ')' && depth > 0)
            depth--;
        else if (*p == '<' && depth == 0) {
            lt = p + 1;
            break;
        }
    }
    const char *s, *e;
    if (lt) {
        s = lt;
        e = strchr(s, '>');
        if (!e)
            e = s + strlen(s);
    } else {
        const char *at = strchr(from, '@');
        if (!at)
            return false;
        s = at;
        while (s > from && !isspace((unsigned char)s[-1]) && s[-1] != ',' && s[-1] != ')')
            s--;
        e = at;
        while (*e && !isspace((unsigned char)*e) && *e != ',' && *e != '(')
            e++;
    }
    const char *at = NULL;
    for (const char *p = s; p < e; p++)
        if (*p == '@')
            at = p;
    if (!at)
        return false;
    *ps = s;
    *pe = e;
    *pat = at;
    return true;
}

static bool aligned(const char *dom, const char *author, const char *org, bool strict,
                    tamis_arena_t *arena)
{
    if (!dom || !author)
        return false;
    if (strcasecmp(dom, author) == 0)
        return true;
    if (strict || !org)
        return false;
    const char *o = tamis__org_domain(dom, arena);
    return o && strcasecmp(o, org) == 0;
}

tamis_auth_status_t tamis__dmarc_decide(const tamis__dmarc_rec_t *d, const char *author,
                                        bool at_org, const char *const *dkim_domains, size_t ndkim,
                                        const char *spf_domain, unsigned roll, tamis_arena_t *arena,
                                        tamis_dmarc_policy_t *policy)
{
    const char *org = author ? tamis__org_domain(author, arena) : NULL;
    bool pass = false;
    for (size_t i = 0; i < ndkim && !pass; i++)
        pass = aligned(dkim_domains[i], author, org, d->adkim_strict, arena);
    if (!pass)
        pass = aligned(spf_domain, author, org, d->aspf_strict, arena);
    tamis_dmarc_policy_t eff =
        at_org && d->has_sp && author && org && strcasecmp(author, org) != 0 ? d->sp : d->p;
    if (pass) {
        *policy = eff;
        return TAMIS_AUTH_PASS;
    }
    if (eff != TAMIS_DMARC_POLICY_NONE && d->has_pct && roll >= d->pct)
        eff = eff == TAMIS_DMARC_POLICY_REJECT ? TAMIS_DMARC_POLICY_QUARANTINE
                                               : TAMIS_DMARC_POLICY_NONE;
    *policy = eff;
    return TAMIS_AUTH_FAIL;
}

char *tamis__author_domain(const char *from, tamis_arena_t *arena)
{
    const char *s, *e, *at;
    if (!from || !find_address(from, &s, &e, &at))
        return NULL;
    const char *ds = at + 1, *de = e;
    while (de > ds && (isspace((unsigned char)de[-1]) || de[-1] == '.' || de[-1] == '>'))
        de--;
    if (de == ds || de - ds > 253)
        return NULL;
    char *d = tamis_arena_strndup(arena, ds, (size_t)(de - ds));
    if (!d)
        return NULL;
    for (char *q = d; *q; q++) {
        unsigned char c = (unsigned char)*q;
        if (c <= 0x20 || c == '@' || c == '<' || c == '"' || c == ';' || c == ',')
            return NULL;
        *q = (char)tolower(c);
    }
    return d;
}

char *tamis__author_address(const char *from, tamis_arena_t *arena)
{
    const char *s, *e, *at;
    char *d = tamis__author_domain(from, arena);
    if (!d || !find_address(from, &s, &e, &at))
        return NULL;
    while (s < at && isspace((unsigned char)*s))
        s++;
    if (s == at || at - s > 256)
        return NULL;
    return tamis_arena_printf(arena, "%.*s@%s", (int)(at - s), s, d);
}
