/*
 * The freemail_domains index. The stock rules list about 2,000 free-mail domains and a message
 * asks about several addresses, so a linear scan per address was a tenth of a scan's CPU: exact
 * names go to a sorted array (bsearch), only the few globs are matched one by one.
 */
#include "rules/eval.h"
#include "rules/rules_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int tamis__freemail_index(tamis_ruleset_t *rs)
{
    const tamis_addr_list_t *l = &rs->conf->freemail_domains;
    if (l->count == 0)
        return 0;
    rs->freemail_exact = tamis_arena_calloc(rs->arena, l->count, sizeof(char *));
    rs->freemail_wild = tamis_arena_calloc(rs->arena, l->count, sizeof(char *));
    if (!rs->freemail_exact || !rs->freemail_wild)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < l->count; i++) {
        const char *d = l->items[i].pattern;
        if (strpbrk(d, "*?")) {
            rs->freemail_wild[rs->nfreemail_wild++] = d;
            continue;
        }
        char *low = tamis_arena_strdup(rs->arena, d);
        if (!low)
            return TAMIS_ENOMEM;
        for (char *p = low; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        rs->freemail_exact[rs->nfreemail_exact++] = low;
    }
    qsort(rs->freemail_exact, rs->nfreemail_exact, sizeof(char *), cmp_str);
    return 0;
}

/* A glob entry: SA's "*" stops at dots ([^.]*) while the glob helper may not. */
static bool glob_match(const char *d, const char *domain)
{
    if (!tamis_conf_addr_match(d, domain))
        return false;
    if (!strchr(d, '*'))
        return true;
    size_t dd = 0, hd = 0;
    for (const char *p = d; *p; p++)
        dd += *p == '.';
    for (const char *p = domain; *p; p++)
        hd += *p == '.';
    return dd == hd;
}

bool tamis__freemail_listed(const tamis_ruleset_t *rs, const tamis_conf_t *conf, const char *domain)
{
    if (!rs || rs->conf != conf) { /* evals run on a bare conf (tests): no index */
        const tamis_addr_list_t *l = &conf->freemail_domains;
        for (size_t i = 0; i < l->count; i++) {
            const char *d = l->items[i].pattern;
            if (strpbrk(d, "*?") ? glob_match(d, domain) : strcmp(d, domain) == 0)
                return true;
        }
        return false;
    }
    if (rs->nfreemail_exact &&
        bsearch(&domain, rs->freemail_exact, rs->nfreemail_exact, sizeof(char *), cmp_str))
        return true;
    for (size_t i = 0; i < rs->nfreemail_wild; i++)
        if (glob_match(rs->freemail_wild[i], domain))
            return true;
    return false;
}
