/*
 * core: error table, arena, growable buffer, diagnostics. See include/tamis/core.h.
 */
#include "tamis/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *tamis_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define TAMIS_ERR_MSG(name, val, msg)                                                              \
    case val:                                                                                      \
        return msg;
        TAMIS_ERRNO_MAP(TAMIS_ERR_MSG)
#undef TAMIS_ERR_MSG
    }
    return "unknown error";
}

const char *tamis_errname(int code)
{
    switch (code) {
    case 0:
        return "TAMIS_OK";
#define TAMIS_ERR_NAME(name, val, msg)                                                             \
    case val:                                                                                      \
        return "TAMIS_E" #name;
        TAMIS_ERRNO_MAP(TAMIS_ERR_NAME)
#undef TAMIS_ERR_NAME
    }
    return "TAMIS_EUNKNOWN";
}

int tamis_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- arena ----------------------------------------------------------------------------------- */

#define ARENA_ALIGN 16
#define ARENA_DEFAULT_CHUNK (16 * 1024)

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
} arena_chunk_t;

typedef struct arena_cleanup {
    struct arena_cleanup *next;
    void (*fn)(void *);
    void *ptr;
} arena_cleanup_t;

struct tamis_arena {
    arena_chunk_t *chunks;
    arena_cleanup_t *cleanups;
    size_t chunk_size;
    size_t used;
};

tamis_arena_t *tamis_arena_new(size_t chunk_size)
{
    tamis_arena_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->chunk_size = chunk_size ? chunk_size : ARENA_DEFAULT_CHUNK;
    return a;
}

void tamis_arena_free(tamis_arena_t *a)
{
    if (!a)
        return;
    for (arena_cleanup_t *c = a->cleanups; c;) {
        arena_cleanup_t *next = c->next;
        c->fn(c->ptr);
        c = next; /* the cleanup record lives in a chunk; chunks are freed below */
    }
    for (arena_chunk_t *c = a->chunks; c;) {
        arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *tamis_arena_alloc(tamis_arena_t *a, size_t n)
{
    if (!a)
        return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < n)
        return NULL;
    arena_chunk_t *c = a->chunks;
    if (!c || c->size - c->used < need) {
        /* Large requests get a chunk of their own behind the current one, so the current chunk's
         * free space is not wasted. */
        size_t size = need > a->chunk_size / 4 ? need : a->chunk_size;
        arena_chunk_t *nc = malloc(sizeof(*nc) + size);
        if (!nc)
            return NULL;
        nc->size = size;
        nc->used = 0;
        if (c && size == need) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->chunks = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used += need;
    return p;
}

void *tamis_arena_calloc(tamis_arena_t *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = tamis_arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

char *tamis_arena_strndup(tamis_arena_t *a, const char *s, size_t n)
{
    char *p = tamis_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *tamis_arena_strdup(tamis_arena_t *a, const char *s)
{
    return s ? tamis_arena_strndup(a, s, strlen(s)) : NULL;
}

char *tamis_arena_printf(tamis_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = tamis_arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

char *tamis_arena_concat(tamis_arena_t *a, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, a);
    for (const char *s; (s = va_arg(ap, const char *));)
        n += strlen(s);
    va_end(ap);
    char *p = tamis_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    char *w = p;
    va_start(ap, a);
    for (const char *s; (s = va_arg(ap, const char *));) {
        size_t k = strlen(s);
        memcpy(w, s, k);
        w += k;
    }
    va_end(ap);
    *w = 0;
    return p;
}

int tamis_arena_add_cleanup(tamis_arena_t *a, void (*fn)(void *), void *ptr)
{
    arena_cleanup_t *c = tamis_arena_alloc(a, sizeof(*c));
    if (!c) {
        fn(ptr);
        return TAMIS_ENOMEM;
    }
    c->fn = fn;
    c->ptr = ptr;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

size_t tamis_arena_used(const tamis_arena_t *a)
{
    return a ? a->used : 0;
}

/* ---- buffer ---------------------------------------------------------------------------------- */

void tamis_buf_init(tamis_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void tamis_buf_free(tamis_buf_t *b)
{
    free(b->data);
    size_t max = b->max;
    tamis_buf_init(b, max);
}

void tamis_buf_reset(tamis_buf_t *b)
{
    b->len = 0;
    b->err = 0;
    if (b->data)
        b->data[0] = '\0';
}

int tamis_buf_reserve(tamis_buf_t *b, size_t extra)
{
    if (b->err)
        return b->err;
    if (extra > SIZE_MAX - b->len - 1 || (b->max && b->len + extra > b->max))
        return b->err = TAMIS_ELIMIT;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return b->err = TAMIS_ENOMEM;
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0'; /* data is a valid string from its first allocation on */
    return 0;
}

int tamis_buf_append(tamis_buf_t *b, const void *p, size_t n)
{
    int rc = tamis_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int tamis_buf_puts(tamis_buf_t *b, const char *s)
{
    return tamis_buf_append(b, s, strlen(s));
}

int tamis_buf_vprintf(tamis_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return b->err = TAMIS_EINVAL;
    int rc = tamis_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int tamis_buf_printf(tamis_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tamis_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *tamis_buf_steal(tamis_buf_t *b, size_t *len)
{
    if (b->err)
        return NULL;
    if (!b->data && tamis_buf_reserve(b, 0))
        return NULL;
    char *p = b->data;
    if (len)
        *len = b->len;
    size_t max = b->max;
    tamis_buf_init(b, max);
    return p;
}

/* ---- diagnostics ----------------------------------------------------------------------------- */

#define DIAG_MAX 10000

struct tamis_diag {
    tamis_diag_entry_t *entries;
    size_t count, cap;
};

tamis_diag_t *tamis_diag_new(void)
{
    return calloc(1, sizeof(tamis_diag_t));
}

void tamis_diag_free(tamis_diag_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->count; i++) {
        free(d->entries[i].file);
        free(d->entries[i].text);
    }
    free(d->entries);
    free(d);
}

void tamis_diag_add(tamis_diag_t *d, tamis_diag_level_t level, const char *file, unsigned line,
                    const char *fmt, ...)
{
    if (!d || d->count >= DIAG_MAX)
        return;
    if (d->count == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        tamis_diag_entry_t *e = realloc(d->entries, cap * sizeof(*e));
        if (!e)
            return;
        d->entries = e;
        d->cap = cap;
    }
    tamis_buf_t b;
    tamis_buf_init(&b, 8192);
    va_list ap;
    va_start(ap, fmt);
    tamis_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char *text = tamis_buf_steal(&b, NULL);
    if (!text)
        return;
    char *f = file ? strdup(file) : NULL;
    if (file && !f) {
        free(text);
        return;
    }
    d->entries[d->count++] = (tamis_diag_entry_t){level, f, line, text};
}

size_t tamis_diag_count(const tamis_diag_t *d)
{
    return d ? d->count : 0;
}

const tamis_diag_entry_t *tamis_diag_at(const tamis_diag_t *d, size_t i)
{
    return d && i < d->count ? &d->entries[i] : NULL;
}

size_t tamis_diag_count_level(const tamis_diag_t *d, tamis_diag_level_t level)
{
    size_t n = 0;
    for (size_t i = 0; d && i < d->count; i++)
        n += d->entries[i].level == level;
    return n;
}

/* ---- helpers --------------------------------------------------------------------------------- */

int tamis_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return tamis_seterr(err, errlen, TAMIS_EIO, "%s: %s", path, strerror(errno));
    tamis_buf_t b;
    tamis_buf_init(&b, max);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (tamis_buf_append(&b, chunk, n))
            break;
    int failed = ferror(f);
    fclose(f);
    if (b.err || failed) {
        int rc = b.err ? b.err : TAMIS_EIO;
        tamis_buf_free(&b);
        return tamis_seterr(err, errlen, rc, "%s: %s", path,
                            rc == TAMIS_ELIMIT ? "file too large" : "read error");
    }
    *out = tamis_buf_steal(&b, len);
    return *out ? 0 : tamis_seterr(err, errlen, TAMIS_ENOMEM, "%s: out of memory", path);
}

double tamis_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}
