/*
 * Internals shared by the files of lib/bayes: SHA-1 and the token set layout.
 */
#ifndef TAMIS_BAYES_INT_H
#define TAMIS_BAYES_INT_H

#include "tamis/bayes.h"

#include <stdint.h>

/* Incremental SHA-1 (OpenSSL): init allocates the context, final releases it (also on error,
 * when out is zeroed). */
typedef struct {
    struct evp_md_ctx_st *ctx;
} tamis__sha1_t;

int tamis__sha1_init(tamis__sha1_t *c);
void tamis__sha1_update(tamis__sha1_t *c, const void *data, size_t len);
int tamis__sha1_final(tamis__sha1_t *c, uint8_t out[20]);

/* One token of a set. */
typedef struct {
    uint8_t key[TAMIS_BAYES_KEY_LEN];
    uint32_t str_off; /* offset into the string pool */
} tamis__tok_t;

struct tamis_bayes_tokens {
    tamis__tok_t *toks;
    size_t count, cap;
    tamis_buf_t pool; /* NUL-separated readable strings */
    uint32_t *slots;  /* open-addressing hash on the key: index + 1, 0 = empty */
    size_t nslots;
};

/* Is name in the stock bayes_ignore_header list (case-insensitive)? */
bool tamis__bayes_stock_ignored(const char *name);

#endif
