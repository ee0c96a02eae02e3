/*
 * Fallback for the few huge regexes PCRE2's 8-bit library cannot hold. Debian builds PCRE2 with
 * LINK_SIZE=2, which caps a compiled pattern at 64 KiB; some stock rules expanded by ReplaceTags
 * (e.g. __FILL_THIS_FORM_LONG1, __MY_MALWARE) exceed it, while Perl has no such limit. The
 * 32-bit library always uses 32-bit links, so those patterns compile there: bytes become code
 * units 0-255 (no UTF), the same Latin-1 tables apply, and subjects are widened per match.
 *
 * The build links libpcre2-32 (part of Debian's libpcre2-dev). The function table below is filled
 * once under pthread_once and read-only afterwards.
 */
#include "rules/rules_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SUBJECT32 (1u << 20) /* widened subject bytes per match (body lines are < 2 KiB) */

typedef struct {
    __typeof__(pcre2_compile_32) *compile;
    __typeof__(pcre2_jit_compile_32) *jit;
    __typeof__(pcre2_match_32) *match;
    __typeof__(pcre2_code_free_32) *code_free;
    __typeof__(pcre2_compile_context_create_32) *cctx_create;
    __typeof__(pcre2_set_character_tables_32) *set_tables;
    __typeof__(pcre2_compile_context_free_32) *cctx_free;
    __typeof__(pcre2_match_data_create_32) *md_create;
    __typeof__(pcre2_match_data_free_32) *md_free;
    __typeof__(pcre2_get_ovector_pointer_32) *ovector;
    __typeof__(pcre2_match_context_create_32) *mc_create;
    __typeof__(pcre2_match_context_free_32) *mc_free;
    __typeof__(pcre2_set_match_limit_32) *set_match_limit;
    __typeof__(pcre2_set_depth_limit_32) *set_depth_limit;
    __typeof__(pcre2_get_error_message_32) *errmsg;
} api32_t;

static api32_t api;
static bool api_ok;
static pthread_once_t api_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;

typedef struct {
    pcre2_match_data_32 *md;
    pcre2_match_context_32 *mc;
    PCRE2_UCHAR32 *buf;
    size_t cap;
} scratch32_t;

static void scratch32_free(void *p)
{
    scratch32_t *s = p;
    if (!s)
        return;
    api.md_free(s->md);
    api.mc_free(s->mc);
    free(s->buf);
    free(s);
}

#define LOAD(field, sym) api.field = sym

static void api_load(void)
{
    LOAD(compile, pcre2_compile_32);
    LOAD(jit, pcre2_jit_compile_32);
    LOAD(match, pcre2_match_32);
    LOAD(code_free, pcre2_code_free_32);
    LOAD(cctx_create, pcre2_compile_context_create_32);
    LOAD(set_tables, pcre2_set_character_tables_32);
    LOAD(cctx_free, pcre2_compile_context_free_32);
    LOAD(md_create, pcre2_match_data_create_32);
    LOAD(md_free, pcre2_match_data_free_32);
    LOAD(ovector, pcre2_get_ovector_pointer_32);
    LOAD(mc_create, pcre2_match_context_create_32);
    LOAD(mc_free, pcre2_match_context_free_32);
    LOAD(set_match_limit, pcre2_set_match_limit_32);
    LOAD(set_depth_limit, pcre2_set_depth_limit_32);
    LOAD(errmsg, pcre2_get_error_message_32);
    if (pthread_key_create(&scratch_key, scratch32_free) == 0)
        api_ok = true;
}

static bool api_ready(void)
{
    pthread_once(&api_once, api_load);
    return api_ok;
}

void *tamis__re32_compile(const uint8_t *tables, const char *pattern, uint32_t flags, char *err,
                          size_t errlen)
{
    if (!api_ready()) {
        tamis_seterr(err, errlen, TAMIS_EUNSUPPORTED, "pattern too large and no libpcre2-32");
        return NULL;
    }
    size_t n = strlen(pattern);
    PCRE2_UCHAR32 *wide = malloc((n + 1) * sizeof(*wide));
    pcre2_compile_context_32 *cc = api.cctx_create(NULL);
    if (!wide || !cc) {
        free(wide);
        if (cc)
            api.cctx_free(cc);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        wide[i] = (unsigned char)pattern[i];
    if (tables)
        api.set_tables(cc, tables);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code_32 *re = api.compile(wide, n, flags, &ec, &eo, cc);
    free(wide);
    api.cctx_free(cc);
    if (!re) {
        PCRE2_UCHAR32 msg[256];
        char m8[256];
        int ml = api.errmsg(ec, msg, 256);
        size_t i;
        for (i = 0; ml > 0 && i < (size_t)ml && i < sizeof(m8) - 1; i++)
            m8[i] = (char)msg[i];
        m8[i] = 0;
        tamis_seterr(err, errlen, TAMIS_EPARSE, "%s at offset %zu", m8, (size_t)eo);
        return NULL;
    }
    api.jit(re, PCRE2_JIT_COMPLETE);
    return re;
}

void tamis__re32_free(void *re)
{
    if (re && api_ok)
        api.code_free(re);
}

static scratch32_t *scratch(size_t need)
{
    scratch32_t *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return NULL;
        s->md = api.md_create(16, NULL);
        s->mc = api.mc_create(NULL);
        if (!s->md || !s->mc || pthread_setspecific(scratch_key, s) != 0) {
            scratch32_free(s);
            return NULL;
        }
        api.set_match_limit(s->mc, TAMIS__MATCH_LIMIT);
        api.set_depth_limit(s->mc, TAMIS__DEPTH_LIMIT);
    }
    if (need > s->cap) {
        PCRE2_UCHAR32 *b = realloc(s->buf, need * sizeof(*b));
        if (!b)
            return NULL;
        s->buf = b;
        s->cap = need;
    }
    return s;
}

/* 1 = match (offsets in *ms, *me), 0 = no match, -1 = limit reached. */
int tamis__re32_match(void *re, const char *s, size_t len, size_t start, size_t *ms, size_t *me)
{
    if (!re || !api_ok || len > MAX_SUBJECT32)
        return 0;
    scratch32_t *sc = scratch(len + 1);
    if (!sc)
        return 0;
    for (size_t i = 0; i < len; i++)
        sc->buf[i] = (unsigned char)s[i];
    int rc = api.match(re, sc->buf, len, start, 0, sc->md, sc->mc);
    if (rc >= 0) {
        PCRE2_SIZE *ov = api.ovector(sc->md);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
        rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
        return -1;
    return 0;
}
