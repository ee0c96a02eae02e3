/*
 * The token values of one write batch, kept in memory and written to LMDB once at commit in key
 * order. A batch learns the same common tokens in message after message; each LMDB get and put
 * searches the B-tree from the root, so learning through this cache costs one sorted load per
 * new token and one sorted put per changed token of the batch instead of a get and a put per
 * token of every message. Values are exactly those the direct updates would leave.
 */
#include "bayes/bayes_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t slot_of(const uint8_t *k, size_t nslots)
{
    uint32_t h;
    memcpy(&h, k, 4);
    return ((size_t)(h ^ ((uint32_t)k[4] << 13)) * 2654435761u) & (nslots - 1);
}

void tamis__tokcache_clear(tamis__tokcache_t *c)
{
    if (c->count && c->slots)
        memset(c->slots, 0, c->nslots * sizeof *c->slots);
    c->count = 0;
}

void tamis__tokcache_free(tamis__tokcache_t *c)
{
    free(c->ents);
    free(c->slots);
    free(c->idx);
    free(c->miss);
    memset(c, 0, sizeof *c);
}

static int rehash(tamis__tokcache_t *c, size_t n)
{
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
        return ENOMEM;
    for (size_t i = 0; i < c->count; i++) {
        size_t j = slot_of(c->ents[i].key, n);
        while (s[j])
            j = (j + 1) & (n - 1);
        s[j] = (uint32_t)(i + 1);
    }
    free(c->slots);
    c->slots = s;
    c->nslots = n;
    return 0;
}

static int reserve(void **p, size_t *cap, size_t want, size_t size)
{
    if (want <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < want)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q)
        return ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* Index of key's entry, adding an unloaded one when absent (*added). -1 when out of memory. */
static long find_or_add(tamis__tokcache_t *c, const uint8_t *key, bool *added)
{
    *added = false;
    if ((c->count + 1) * 2 > c->nslots && rehash(c, c->nslots ? c->nslots * 2 : 4096) != 0)
        return -1;
    size_t j = slot_of(key, c->nslots);
    while (c->slots[j]) {
        uint32_t i = c->slots[j] - 1;
        if (memcmp(c->ents[i].key, key, TAMIS_BAYES_KEY_LEN) == 0)
            return (long)i;
        j = (j + 1) & (c->nslots - 1);
    }
    if (reserve((void **)&c->ents, &c->cap, c->count + 1, sizeof *c->ents) != 0)
        return -1;
    tamis__tokent_t *e = &c->ents[c->count];
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, TAMIS_BAYES_KEY_LEN);
    c->slots[j] = (uint32_t)(++c->count);
    *added = true;
    return (long)c->count - 1;
}

/* Sorts entry indices by key. qsort has no context argument in C17, so each key goes next to
 * its index, as a number that orders like the bytes (LMDB compares keys with memcmp). */
typedef struct {
    uint64_t key; /* the 5 key bytes, big endian */
    uint32_t i;
} keyidx_t;

static int cmp_keyidx(const void *a, const void *b)
{
    uint64_t x = ((const keyidx_t *)a)->key, y = ((const keyidx_t *)b)->key;
    return (x > y) - (x < y);
}

static int sort_by_key(tamis__tokcache_t *c, uint32_t *v, size_t n)
{
    keyidx_t *ki = malloc(n * sizeof *ki);
    if (!ki)
        return ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *k = c->ents[v[i]].key;
        uint64_t x = 0;
        for (size_t j = 0; j < TAMIS_BAYES_KEY_LEN; j++)
            x = x << 8 | k[j];
        ki[i].key = x;
        ki[i].i = v[i];
    }
    qsort(ki, n, sizeof *ki, cmp_keyidx);
    for (size_t i = 0; i < n; i++)
        v[i] = ki[i].i;
    free(ki);
    return 0;
}

int tamis__tokcache_fetch(tamis__tokcache_t *c, MDB_txn *txn, MDB_dbi dbi, const uint8_t *keys,
                          size_t nkeys, const uint32_t **idx)
{
    int rc = ENOMEM;
    c->nmiss = 0;
    if (reserve((void **)&c->idx, &c->capidx, nkeys, sizeof *c->idx) != 0)
        goto fail;
    for (size_t i = 0; i < nkeys; i++) {
        bool added;
        long e = find_or_add(c, keys + i * TAMIS_BAYES_KEY_LEN, &added);
        if (e < 0)
            goto fail;
        c->idx[i] = (uint32_t)e;
        if (!added)
            continue;
        if (reserve((void **)&c->miss, &c->capmiss, c->nmiss + 1, sizeof *c->miss) != 0)
            goto fail;
        c->miss[c->nmiss++] = (uint32_t)e;
    }
    /* new entries are loaded in key order so that the cursor mostly stays on its leaf page */
    if (c->nmiss && (rc = sort_by_key(c, c->miss, c->nmiss)) != 0)
        goto fail;
    MDB_cursor *cur = NULL;
    if (c->nmiss && (rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
        goto fail;
    for (size_t i = 0; i < c->nmiss; i++) {
        tamis__tokent_t *e = &c->ents[c->miss[i]];
        MDB_val k = {TAMIS_BAYES_KEY_LEN, e->key}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc) {
            mdb_cursor_close(cur);
            goto fail;
        }
        e->in_db = e->exists = true;
        if (v.mv_size >= 12) {
            const uint8_t *p = v.mv_data;
            e->whole = true;
            e->s = tamis__get_u32(p);
            e->h = tamis__get_u32(p + 4);
            e->at = tamis__get_u32(p + 8);
        }
    }
    if (cur)
        mdb_cursor_close(cur);
    *idx = c->idx;
    return 0;
fail:
    tamis__tokcache_clear(c); /* half-loaded entries must not survive */
    return rc;
}

int tamis__tokcache_flush(tamis__tokcache_t *c, MDB_txn *txn, MDB_dbi dbi)
{
    int rc = 0;
    size_t n = 0;
    if (reserve((void **)&c->miss, &c->capmiss, c->count, sizeof *c->miss) != 0) {
        rc = ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < c->count; i++)
        if (c->ents[i].dirty && (c->ents[i].exists || c->ents[i].in_db))
            c->miss[n++] = (uint32_t)i;
    if (n == 0)
        goto out;
    if ((rc = sort_by_key(c, c->miss, n)) != 0)
        goto out;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        tamis__tokent_t *e = &c->ents[c->miss[i]];
        MDB_val k = {TAMIS_BAYES_KEY_LEN, e->key}, v;
        if (e->exists) {
            uint8_t b[12];
            tamis__put_u32(b, e->s);
            tamis__put_u32(b + 4, e->h);
            tamis__put_u32(b + 8, e->at);
            v.mv_size = 12;
            v.mv_data = b;
            rc = mdb_cursor_put(cur, &k, &v, 0);
        } else {
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
            if (rc == 0)
                rc = mdb_cursor_del(cur, 0);
        }
    }
    mdb_cursor_close(cur);
out:
    tamis__tokcache_clear(c);
    return rc;
}
