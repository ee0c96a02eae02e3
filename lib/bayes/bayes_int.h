/*
 * Internals shared by the files of lib/bayes: SHA-1 and the token set layout.
 */
#ifndef TAMIS_BAYES_INT_H
#define TAMIS_BAYES_INT_H

#include "tamis/bayes.h"

#include <lmdb.h>
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

static inline uint32_t tamis__get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void tamis__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* One token of a write batch's cache (tokcache.c): its value as the batch has left it. */
typedef struct {
    uint8_t key[TAMIS_BAYES_KEY_LEN];
    bool in_db;  /* in the store when loaded */
    bool exists; /* in the store as the batch has left it */
    bool whole;  /* has a 12-byte value (in_db entries with a short value do not) */
    bool dirty;  /* to be written at flush */
    uint32_t s, h, at;
} tamis__tokent_t;

typedef struct {
    tamis__tokent_t *ents;
    size_t count, cap;
    uint32_t *slots; /* open addressing on the key: entry index + 1, 0 = empty */
    size_t nslots;
    uint32_t *idx, *miss; /* scratch of fetch and flush */
    size_t capidx, capmiss, nmiss;
} tamis__tokcache_t;

/* Entries of keys[0..nkeys) (5 bytes each): *idx[i] is the index in c->ents of keys[i], valid
 * until the next fetch. Keys not cached yet are loaded from txn, in key order. On error the
 * cache is emptied and an LMDB or errno code (ENOMEM) returned. */
int tamis__tokcache_fetch(tamis__tokcache_t *c, MDB_txn *txn, MDB_dbi dbi, const uint8_t *keys,
                          size_t nkeys, const uint32_t **idx);
/* Writes the dirty entries to txn in key order (puts and deletes) and empties the cache. */
int tamis__tokcache_flush(tamis__tokcache_t *c, MDB_txn *txn, MDB_dbi dbi);
void tamis__tokcache_clear(tamis__tokcache_t *c);
void tamis__tokcache_free(tamis__tokcache_t *c);

/* Is name in the stock bayes_ignore_header list (case-insensitive)? */
bool tamis__bayes_stock_ignored(const char *name);

#endif
