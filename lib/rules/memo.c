/*
 * Per-message helpers for eval functions (see eval.h): detail text attached to a hit, and
 * memo slots keyed by the address of a static object. All memory comes from the message arena.
 */
#include "rules/rules_int.h"

#include <stdio.h>
#include <string.h>

#define MAX_MEMO 4096 /* distinct memo keys per message */
#define MAX_LOG 512   /* bytes of detail text per hit */

void tamis__eval_log(tamis_eval_ctx_t *ctx, const char *fmt, ...)
{
    if (!ctx || !fmt)
        return;
    char buf[MAX_LOG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    const char *s = tamis_arena_strdup(ctx->arena, buf);
    if (s)
        ctx->log = s;
}

void *tamis__memo_get(tamis_eval_ctx_t *ctx, const void *key)
{
    if (!ctx || !ctx->memo)
        return NULL;
    for (size_t i = 0; i < ctx->memo->count; i++)
        if (ctx->memo->keys[i] == key)
            return ctx->memo->values[i];
    return NULL;
}

int tamis__memo_set(tamis_eval_ctx_t *ctx, const void *key, void *value)
{
    if (!ctx || !ctx->memo)
        return TAMIS_EINVAL;
    tamis__memo_t *m = ctx->memo;
    for (size_t i = 0; i < m->count; i++)
        if (m->keys[i] == key) {
            m->values[i] = value;
            return 0;
        }
    if (m->count >= MAX_MEMO)
        return TAMIS_ELIMIT;
    if (m->count == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 16;
        const void **k = tamis_arena_alloc(ctx->arena, nc * sizeof(*k));
        void **v = tamis_arena_alloc(ctx->arena, nc * sizeof(*v));
        if (!k || !v)
            return TAMIS_ENOMEM;
        if (m->count) {
            memcpy(k, m->keys, m->count * sizeof(*k));
            memcpy(v, m->values, m->count * sizeof(*v));
        }
        m->keys = k;
        m->values = v;
        m->cap = nc;
    }
    m->keys[m->count] = key;
    m->values[m->count++] = value;
    return 0;
}
