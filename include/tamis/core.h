/*
 * core: the pieces every Tamis module shares.
 *
 * - One error space: functions return int, 0 for success, a negative TAMIS_E* code on failure, and
 *   fill a message buffer the caller owns (char *err, size_t errlen; either may be NULL/0).
 * - An arena: per-message allocations come from one arena that is freed at once. Foreign objects
 *   (GMime objects, PCRE2 match data) are registered as cleanups and released with the arena.
 * - A bounded, growable byte buffer (tamis_buf_t) instead of raw sprintf/strcpy.
 * - A borrowed slice type for views into memory owned by someone else.
 * - A diagnostics list (file:line messages) used by the config parser, --lint and reloads.
 *
 * Threads: nothing here has global mutable state; an arena, buf or diag is used by one thread at
 * a time.
 */
#ifndef TAMIS_CORE_H
#define TAMIS_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAMIS_VERSION "0.1.0"

/* Error codes: one X-macro table yields the enum, names and messages. */
#define TAMIS_ERRNO_MAP(X)                                                                         \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(IO, -3, "input/output error")                                                                \
    X(PARSE, -4, "parse error")                                                                    \
    X(LIMIT, -5, "limit exceeded")                                                                 \
    X(NOTFOUND, -6, "not found")                                                                   \
    X(UNSUPPORTED, -7, "not supported")                                                            \
    X(TIMEOUT, -8, "timed out")                                                                    \
    X(PROTO, -9, "protocol error")                                                                 \
    X(CONFIG, -10, "configuration error")                                                          \
    X(DB, -11, "database error")                                                                   \
    X(INTERNAL, -12, "internal error")

enum {
#define TAMIS_ERR_ENUM(name, val, msg) TAMIS_E##name = (val),
    TAMIS_ERRNO_MAP(TAMIS_ERR_ENUM)
#undef TAMIS_ERR_ENUM
};

/* Static string for an error code; never NULL. */
const char *tamis_strerror(int code);
/* Static name ("TAMIS_ENOMEM") for an error code; never NULL. */
const char *tamis_errname(int code);

/* Writes a formatted message into err (truncating) and returns code. err may be NULL. */
int tamis_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- slices ---------------------------------------------------------------------------------- */

/* A borrowed view: the memory belongs to someone else and outlives the slice. */
typedef struct {
    const char *ptr;
    size_t len;
} tamis_slice_t;

static inline tamis_slice_t tamis_slice(const char *p, size_t n)
{
    tamis_slice_t s = {p, n};
    return s;
}

/* ---- arena ----------------------------------------------------------------------------------- */

typedef struct tamis_arena tamis_arena_t;

/* New arena; chunk_size 0 means the default (16 KiB). Returns NULL on allocation failure. */
tamis_arena_t *tamis_arena_new(size_t chunk_size);
/* Runs the cleanups (last registered first), then frees every allocation. NULL is a no-op. */
void tamis_arena_free(tamis_arena_t *a);
/* Memory owned by the arena, aligned for any type; NULL on failure. Never free it yourself. */
void *tamis_arena_alloc(tamis_arena_t *a, size_t n);
void *tamis_arena_calloc(tamis_arena_t *a, size_t count, size_t size);
/* NUL-terminated copies owned by the arena. */
char *tamis_arena_strdup(tamis_arena_t *a, const char *s);
char *tamis_arena_strndup(tamis_arena_t *a, const char *s, size_t n);
char *tamis_arena_printf(tamis_arena_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The strings up to the NULL sentinel joined, owned by the arena: the cheap "%s%s" for hot paths
 * (a NULL argument other than the last is not allowed). */
char *tamis_arena_concat(tamis_arena_t *a, ...) __attribute__((sentinel));
/* Registers fn(ptr) to run when the arena is freed. Returns 0 or TAMIS_ENOMEM (then fn(ptr) has
 * already been called, so the caller never leaks). */
int tamis_arena_add_cleanup(tamis_arena_t *a, void (*fn)(void *), void *ptr);
/* Bytes handed out so far (for limits and statistics). */
size_t tamis_arena_used(const tamis_arena_t *a);

/* ---- growable buffer ------------------------------------------------------------------------- */

/* A heap buffer with a hard cap. data is always NUL-terminated (the NUL is not counted in len).
 * On failure (allocation or cap) the buffer records the error in .err and ignores further
 * appends, so a sequence of appends can be checked once at the end. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = unlimited */
    int err;
} tamis_buf_t;

void tamis_buf_init(tamis_buf_t *b, size_t max);
void tamis_buf_free(tamis_buf_t *b);
void tamis_buf_reset(tamis_buf_t *b);
int tamis_buf_reserve(tamis_buf_t *b, size_t extra);
int tamis_buf_append(tamis_buf_t *b, const void *p, size_t n);
int tamis_buf_puts(tamis_buf_t *b, const char *s);
/* Inline: tokenizers append byte by byte. */
static inline int tamis_buf_putc(tamis_buf_t *b, char c)
{
    if (!b->err && b->len + 2 <= b->cap && (!b->max || b->len < b->max)) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return 0;
    }
    return tamis_buf_append(b, &c, 1);
}
int tamis_buf_printf(tamis_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tamis_buf_vprintf(tamis_buf_t *b, const char *fmt, va_list ap);
/* Hands the storage to the caller (free() it) and leaves b empty. Never NULL unless b->err. */
char *tamis_buf_steal(tamis_buf_t *b, size_t *len);

/* ---- diagnostics ----------------------------------------------------------------------------- */

typedef enum {
    TAMIS_DIAG_INFO = 0,
    TAMIS_DIAG_WARN = 1,  /* recoverable: the directive or rule was skipped */
    TAMIS_DIAG_ERROR = 2, /* the whole load fails and the old configuration stays */
} tamis_diag_level_t;

typedef struct {
    tamis_diag_level_t level;
    char *file; /* may be NULL */
    unsigned line;
    char *text;
} tamis_diag_entry_t;

typedef struct tamis_diag tamis_diag_t;

tamis_diag_t *tamis_diag_new(void);
void tamis_diag_free(tamis_diag_t *d);
/* Adds an entry; the strings are copied. Silently drops entries beyond 10000. */
void tamis_diag_add(tamis_diag_t *d, tamis_diag_level_t level, const char *file, unsigned line,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
size_t tamis_diag_count(const tamis_diag_t *d);
const tamis_diag_entry_t *tamis_diag_at(const tamis_diag_t *d, size_t i);
size_t tamis_diag_count_level(const tamis_diag_t *d, tamis_diag_level_t level);

/* ---- small helpers --------------------------------------------------------------------------- */

/* Reads a whole file into a malloc'ed, NUL-terminated buffer (caller frees). max bounds the size.
 */
int tamis_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                    size_t errlen);
/* Monotonic clock in milliseconds (for timing and budgets). */
double tamis_now_ms(void);

#endif
