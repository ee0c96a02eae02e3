/*
 * The LMDB token store: environment registry, per-user named databases, magic records, learning
 * and forgetting in write batches, map growth with batch replay, classification, expiry, clear.
 *
 * Layout of one user's store:
 *   "t:<user>"  5-byte token key → 12 bytes: spam count, ham count, atime (uint32 little endian);
 *               magic records under "\x0D\x01\x07\x09\x03" + name → uint64 little endian.
 *   "s:<user>"  message id → "s" or "h".
 * A batch is one write transaction. Every learn/forget of the batch is also kept in an operation
 * log; when LMDB reports MDB_MAP_FULL the transaction is aborted, the map doubled and the log
 * replayed, so callers never see a full map (up to max_map_size).
 */
#include "bayes/bayes_int.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAGIC_PREFIX "\x0D\x01\x07\x09\x03"
#define MAGIC_PREFIX_LEN 5
#define DB_VERSION 3
#define TOUCH_SLACK 43200 /* seconds: tamis_bayes_touch() leaves atimes this recent alone */
#define MAX_MSGID 480     /* LMDB's default max key size is 511 */
#define EXPIRY_PERIOD 43200u
#define EXPIRY_MAX_MULT 512u

/* ---- environment registry ------------------------------------------------------------------- */

typedef struct env_entry {
    struct env_entry *next;
    dev_t dev;
    ino_t ino;
    MDB_env *env;
    int refs;
    bool rdonly; /* opened MDB_RDONLY: later read-write opens are refused */
    size_t max_map;
    pthread_mutex_t wmutex; /* one writer of this process at a time (taken before rw) */
    pthread_rwlock_t rw;    /* every txn holds it shared; map growth holds it exclusive */
} env_entry_t;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static env_entry_t *reg_head;

typedef struct {
    int cls;
    bool no_relearn;
    uint32_t atime;
    char *msgid, *msgid2;
    uint8_t *keys;
    size_t nkeys;
} op_t;

typedef struct {
    uint64_t v[12];
} magicv_t;

enum {
    M_VERSION,
    M_NSPAM,
    M_NHAM,
    M_NTOKENS,
    M_OLDEST,
    M_NEWEST,
    M_JSYNC,
    M_LEXPIRE,
    M_LDELTA,
    M_LREDUCE,
    M_TOKMODE, /* Tamis: tamis_bayes_tokmode_t the tokens were made with (0 = SA) */
    M_COUNT
};

static const char *const magic_names[M_COUNT] = {
    "DBVERSION",       "NSPAM",      "NHAM",           "NTOKENS",          "OLDESTAGE", "NEWESTAGE",
    "LASTJOURNALSYNC", "LASTEXPIRE", "LASTATIMEDELTA", "LASTEXPIREREDUCE", "TOKENMODE"};

struct tamis_bayes {
    env_entry_t *e;
    MDB_dbi tok, seen;
    bool have_dbi;
    bool read_only;
    char user[72];
    /* open batch */
    MDB_txn *wtxn;
    bool explicit_batch;
    magicv_t mg; /* magic values of the open batch */
    op_t *ops;
    size_t nops, capops;
    tamis__tokcache_t cache; /* token values of the open batch, written at commit */
};

static int lmdb_err(char *err, size_t errlen, int rc, const char *what)
{
    return tamis_seterr(err, errlen, TAMIS_EDB, "bayes: %s: %s", what, mdb_strerror(rc));
}

static void entry_release(env_entry_t *e)
{
    pthread_mutex_lock(&reg_lock);
    if (--e->refs == 0) {
        env_entry_t **pp = &reg_head;
        while (*pp && *pp != e)
            pp = &(*pp)->next;
        if (*pp)
            *pp = e->next;
        mdb_env_close(e->env);
        pthread_mutex_destroy(&e->wmutex);
        pthread_rwlock_destroy(&e->rw);
        free(e);
    }
    pthread_mutex_unlock(&reg_lock);
}

static int entry_get(const char *path, const tamis_bayes_options_t *o, env_entry_t **out, char *err,
                     size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT || o->read_only)
            return tamis_seterr(err, errlen, TAMIS_EIO, "bayes: %s: %s", path, strerror(errno));
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return tamis_seterr(err, errlen, TAMIS_EIO, "bayes: mkdir %s: %s", path,
                                strerror(errno));
        if (stat(path, &st) != 0)
            return tamis_seterr(err, errlen, TAMIS_EIO, "bayes: %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return tamis_seterr(err, errlen, TAMIS_EIO, "bayes: %s is not a directory", path);
    pthread_mutex_lock(&reg_lock);
    for (env_entry_t *e = reg_head; e; e = e->next) {
        if (e->dev == st.st_dev && e->ino == st.st_ino) {
            if (e->rdonly && !o->read_only) {
                pthread_mutex_unlock(&reg_lock);
                return tamis_seterr(err, errlen, TAMIS_EINVAL,
                                    "bayes: %s is already open read-only in this process", path);
            }
            e->refs++;
            pthread_mutex_unlock(&reg_lock);
            *out = e;
            return 0;
        }
    }
    env_entry_t *e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&reg_lock);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    }
    int rc = mdb_env_create(&e->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(e->env, 1024);
    if (rc == 0)
        rc = mdb_env_set_mapsize(e->env, o->map_size);
    if (rc == 0)
        rc = mdb_env_open(
            e->env, path,
            MDB_NOTLS | (o->read_only ? MDB_RDONLY : 0) | (o->no_sync ? MDB_NOSYNC : 0), 0600);
    if (rc != 0) {
        if (e->env)
            mdb_env_close(e->env);
        free(e);
        pthread_mutex_unlock(&reg_lock);
        return lmdb_err(err, errlen, rc, path);
    }
    int dead = 0;
    mdb_reader_check(e->env, &dead); /* clear readers left by killed processes */
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->refs = 1;
    e->rdonly = o->read_only;
    e->max_map = o->max_map_size;
    pthread_mutex_init(&e->wmutex, NULL);
    pthread_rwlock_init(&e->rw, NULL);
    e->next = reg_head;
    reg_head = e;
    pthread_mutex_unlock(&reg_lock);
    *out = e;
    return 0;
}

/* ---- open/close ----------------------------------------------------------------------------- */

void tamis_bayes_options_default(tamis_bayes_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->map_size = (size_t)64 << 20;
    o->max_map_size = (size_t)64 << 30;
}

static bool user_ok(const char *u)
{
    size_t n = strlen(u);
    if (n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = u[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '@' || c == '+' || c == '-'))
            return false;
    }
    return true;
}

/* Opens the named databases; in a read-only handle a missing database means an empty store. */
static int open_dbis(tamis_bayes_t *b, char *err, size_t errlen)
{
    char tn[80], sn[80];
    snprintf(tn, sizeof tn, "t:%s", b->user);
    snprintf(sn, sizeof sn, "s:%s", b->user);
    MDB_txn *txn;
    /* mdb_dbi_open must not race with itself inside one process. Try a read txn first: a
     * write txn here would wait for another thread's open batch. */
    pthread_mutex_lock(&reg_lock);
    int rc = mdb_txn_begin(b->e->env, NULL, MDB_RDONLY, &txn);
    if (rc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(b->e->env, 0);
        rc = mdb_txn_begin(b->e->env, NULL, MDB_RDONLY, &txn);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, tn, 0, &b->tok);
        if (rc == 0)
            rc = mdb_dbi_open(txn, sn, 0, &b->seen);
        if (rc == 0)
            rc = mdb_txn_commit(txn); /* keeps the handles in the environment */
        else
            mdb_txn_abort(txn);
    }
    if (rc == MDB_NOTFOUND && b->read_only) {
        pthread_mutex_unlock(&reg_lock);
        b->have_dbi = false;
        return 0;
    }
    if (rc == MDB_NOTFOUND) {
        rc = mdb_txn_begin(b->e->env, NULL, 0, &txn);
        if (rc == 0) {
            rc = mdb_dbi_open(txn, tn, MDB_CREATE, &b->tok);
            if (rc == 0)
                rc = mdb_dbi_open(txn, sn, MDB_CREATE, &b->seen);
            if (rc == 0)
                rc = mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (rc)
        return lmdb_err(err, errlen, rc, "open databases");
    b->have_dbi = true;
    return 0;
}

int tamis_bayes_open(const char *path, const tamis_bayes_options_t *o, tamis_bayes_t **out,
                     char *err, size_t errlen)
{
    tamis_bayes_options_t def;
    if (!out || !path || !*path)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: no path or output pointer");
    *out = NULL;
    if (!o) {
        tamis_bayes_options_default(&def);
        o = &def;
    }
    const char *user = o->user ? o->user : "";
    if (!user_ok(user))
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad user name '%.64s'", user);
    if (o->map_size < 65536 || (o->max_map_size && o->max_map_size < o->map_size))
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad map sizes");
    tamis_bayes_t *b = calloc(1, sizeof *b);
    if (!b)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    snprintf(b->user, sizeof b->user, "%s", user);
    b->read_only = o->read_only;
    int rc = entry_get(path, o, &b->e, err, errlen);
    if (rc) {
        free(b);
        return rc;
    }
    rc = open_dbis(b, err, errlen);
    if (rc) {
        entry_release(b->e);
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

static void ops_clear(tamis_bayes_t *b)
{
    for (size_t i = 0; i < b->nops; i++) {
        free(b->ops[i].msgid);
        free(b->ops[i].msgid2);
        free(b->ops[i].keys);
    }
    b->nops = 0;
    tamis__tokcache_clear(&b->cache);
}

void tamis_bayes_close(tamis_bayes_t *b)
{
    if (!b)
        return;
    tamis_bayes_abort(b);
    ops_clear(b);
    free(b->ops);
    tamis__tokcache_free(&b->cache);
    entry_release(b->e);
    free(b);
}

size_t tamis_bayes_map_size(tamis_bayes_t *b)
{
    MDB_envinfo info;
    if (!b || mdb_env_info(b->e->env, &info) != 0)
        return 0;
    return info.me_mapsize;
}

/* ---- transactions --------------------------------------------------------------------------- */

/* Adopts the map size another process set. It needs every txn of this process closed; a thread
 * of ours may hold one (even this thread, through another handle), so wait a bounded time
 * instead of blocking forever; if that fails, the next txn begin reports MDB_MAP_RESIZED. */
static void adopt_map_size(env_entry_t *e)
{
    for (int i = 0; i < 2000; i++) {
        if (pthread_rwlock_trywrlock(&e->rw) == 0) {
            mdb_env_set_mapsize(e->env, 0);
            pthread_rwlock_unlock(&e->rw);
            return;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static int begin_read(tamis_bayes_t *b, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&b->e->rw);
    int rc = mdb_txn_begin(b->e->env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        /* another process grew the map: adopt its size (needs no txn of ours active) */
        pthread_rwlock_unlock(&b->e->rw);
        adopt_map_size(b->e);
        pthread_rwlock_rdlock(&b->e->rw);
        rc = mdb_txn_begin(b->e->env, NULL, MDB_RDONLY, txn);
    }
    if (rc)
        pthread_rwlock_unlock(&b->e->rw);
    return rc;
}

static void end_read(tamis_bayes_t *b, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&b->e->rw);
}

static uint64_t get_u64(const void *p, size_t n)
{
    uint64_t v = 0;
    const uint8_t *u = p;
    for (size_t i = 0; i < n && i < 8; i++)
        v |= (uint64_t)u[i] << (8 * i);
    return v;
}

static int magic_load(tamis_bayes_t *b, MDB_txn *txn, magicv_t *m)
{
    memset(m, 0, sizeof *m);
    m->v[M_VERSION] = DB_VERSION;
    if (!b->have_dbi)
        return 0;
    for (int i = 0; i < M_COUNT; i++) {
        char k[32];
        size_t kl = (size_t)snprintf(k, sizeof k, MAGIC_PREFIX "%s", magic_names[i]);
        MDB_val key = {kl, k}, val;
        int rc = mdb_get(txn, b->tok, &key, &val);
        if (rc == 0)
            m->v[i] = get_u64(val.mv_data, val.mv_size);
        else if (rc != MDB_NOTFOUND)
            return rc;
    }
    if (!m->v[M_VERSION])
        m->v[M_VERSION] = DB_VERSION;
    return 0;
}

static int magic_store(tamis_bayes_t *b, MDB_txn *txn, const magicv_t *m)
{
    for (int i = 0; i < M_COUNT; i++) {
        char k[32];
        size_t kl = (size_t)snprintf(k, sizeof k, MAGIC_PREFIX "%s", magic_names[i]);
        uint8_t v[8];
        for (int j = 0; j < 8; j++)
            v[j] = (uint8_t)(m->v[i] >> (8 * j));
        MDB_val key = {kl, k}, val = {8, v};
        int rc = mdb_put(txn, b->tok, &key, &val, 0);
        if (rc)
            return rc;
    }
    return 0;
}

static int wbegin(tamis_bayes_t *b)
{
    pthread_mutex_lock(&b->e->wmutex);
    pthread_rwlock_rdlock(&b->e->rw);
    int rc = mdb_txn_begin(b->e->env, NULL, 0, &b->wtxn);
    if (rc == MDB_MAP_RESIZED) {
        pthread_rwlock_unlock(&b->e->rw);
        adopt_map_size(b->e);
        pthread_rwlock_rdlock(&b->e->rw);
        rc = mdb_txn_begin(b->e->env, NULL, 0, &b->wtxn);
    }
    if (rc == 0)
        rc = magic_load(b, b->wtxn, &b->mg);
    if (rc) {
        if (b->wtxn)
            mdb_txn_abort(b->wtxn);
        b->wtxn = NULL;
        pthread_rwlock_unlock(&b->e->rw);
        pthread_mutex_unlock(&b->e->wmutex);
    }
    return rc;
}

static void wabort(tamis_bayes_t *b)
{
    if (!b->wtxn)
        return;
    mdb_txn_abort(b->wtxn);
    b->wtxn = NULL;
    tamis__tokcache_clear(&b->cache);
    pthread_rwlock_unlock(&b->e->rw);
    pthread_mutex_unlock(&b->e->wmutex);
}

/* Doubles the map (the caller has aborted its txn but still holds wmutex). */
static int grow_map(tamis_bayes_t *b)
{
    MDB_envinfo info;
    mdb_env_info(b->e->env, &info);
    size_t cur = info.me_mapsize;
    if (b->e->max_map && cur >= b->e->max_map)
        return MDB_MAP_FULL;
    size_t next = cur * 2;
    if (b->e->max_map && next > b->e->max_map)
        next = b->e->max_map;
    pthread_rwlock_wrlock(&b->e->rw);
    int rc = mdb_env_set_mapsize(b->e->env, next);
    pthread_rwlock_unlock(&b->e->rw);
    return rc;
}

/* ---- learning ------------------------------------------------------------------------------- */

static int seen_get_txn(tamis_bayes_t *b, MDB_txn *txn, const char *id, char *cls)
{
    *cls = 0;
    if (!id || !*id || !b->have_dbi)
        return 0;
    size_t n = strlen(id);
    if (n > MAX_MSGID)
        n = MAX_MSGID;
    MDB_val key = {n, (void *)id}, val;
    int rc = mdb_get(txn, b->seen, &key, &val);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (val.mv_size >= 1)
        *cls = ((const char *)val.mv_data)[0];
    return 0;
}

/* Adds ds/dh to the counts of keys (clamped at 0; a token at 0/0 is removed) in the batch's
 * token cache; learning (ds or dh > 0) moves atimes forward to atime. */
static int tok_change(tamis_bayes_t *b, const uint8_t *keys, size_t nkeys, int ds, int dh,
                      uint32_t atime)
{
    const uint32_t *idx;
    int rc = tamis__tokcache_fetch(&b->cache, b->wtxn, b->tok, keys, nkeys, &idx);
    if (rc)
        return rc;
    for (size_t i = 0; i < nkeys; i++) {
        tamis__tokent_t *e = &b->cache.ents[idx[i]];
        int64_t s = 0, h = 0;
        uint32_t at = 0;
        if (e->exists && e->whole) {
            s = e->s;
            h = e->h;
            at = e->at;
        }
        s += ds;
        h += dh;
        if (s < 0)
            s = 0;
        if (h < 0)
            h = 0;
        if (s > UINT32_MAX)
            s = UINT32_MAX;
        if (h > UINT32_MAX)
            h = UINT32_MAX;
        if (s == 0 && h == 0) {
            if (e->exists) {
                e->exists = e->whole = false;
                e->dirty = true;
                if (b->mg.v[M_NTOKENS])
                    b->mg.v[M_NTOKENS]--;
            }
            continue;
        }
        if (ds > 0 || dh > 0) {
            if (atime > at)
                at = atime;
            if (at > b->mg.v[M_NEWEST])
                b->mg.v[M_NEWEST] = at;
            if (!b->mg.v[M_OLDEST] || at < b->mg.v[M_OLDEST])
                b->mg.v[M_OLDEST] = at;
        }
        if (!e->exists)
            b->mg.v[M_NTOKENS]++;
        e->s = (uint32_t)s;
        e->h = (uint32_t)h;
        e->at = at;
        e->exists = e->whole = e->dirty = true;
    }
    return 0;
}

static int seen_put(tamis_bayes_t *b, const char *id, char cls)
{
    size_t n = strlen(id);
    if (n > MAX_MSGID)
        n = MAX_MSGID;
    MDB_val key = {n, (void *)id}, val = {1, &cls};
    return mdb_put(b->wtxn, b->seen, &key, &val, 0);
}

static int seen_del(tamis_bayes_t *b, const char *id)
{
    size_t n = strlen(id);
    if (n > MAX_MSGID)
        n = MAX_MSGID;
    MDB_val key = {n, (void *)id};
    int rc = mdb_del(b->wtxn, b->seen, &key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Applies one operation to the open write txn. *changed = 1 if the store changed. */
static int apply_op(tamis_bayes_t *b, const op_t *op, int *changed)
{
    *changed = 0;
    const char *ids[2] = {op->msgid, op->msgid2};
    char seen = 0;
    const char *found = NULL;
    for (int i = 0; i < 2; i++) {
        if (!ids[i] || !*ids[i])
            continue;
        int rc = seen_get_txn(b, b->wtxn, ids[i], &seen);
        if (rc)
            return rc;
        if (seen == 's' || seen == 'h') {
            found = ids[i];
            break;
        }
        seen = 0;
    }
    if (op->cls != TAMIS_BAYES_FORGET) {
        char want = op->cls == TAMIS_BAYES_SPAM ? 's' : 'h';
        if (seen == want)
            return 0;
        if (seen && op->no_relearn)
            return 0;
    } else if (!seen) {
        return 0;
    }
    int rc;
    if (seen) {
        /* forget the earlier learn */
        bool was_spam = seen == 's';
        if (was_spam && b->mg.v[M_NSPAM])
            b->mg.v[M_NSPAM]--;
        if (!was_spam && b->mg.v[M_NHAM])
            b->mg.v[M_NHAM]--;
        rc = tok_change(b, op->keys, op->nkeys, was_spam ? -1 : 0, was_spam ? 0 : -1, 0);
        if (rc == 0)
            rc = seen_del(b, found);
        if (rc)
            return rc;
        *changed = 1;
    }
    if (op->cls == TAMIS_BAYES_FORGET)
        return 0;
    bool spam = op->cls == TAMIS_BAYES_SPAM;
    b->mg.v[spam ? M_NSPAM : M_NHAM]++;
    rc = tok_change(b, op->keys, op->nkeys, spam ? 1 : 0, spam ? 0 : 1, op->atime);
    if (rc == 0)
        rc = seen_put(b, op->msgid, spam ? 's' : 'h');
    if (rc)
        return rc;
    *changed = 1;
    return 0;
}

/* After MDB_MAP_FULL: abort, grow, begin again and replay the batch log. */
static int regrow_and_replay(tamis_bayes_t *b)
{
    for (;;) {
        mdb_txn_abort(b->wtxn);
        b->wtxn = NULL;
        pthread_rwlock_unlock(&b->e->rw);
        int rc = grow_map(b);
        pthread_rwlock_rdlock(&b->e->rw);
        tamis__tokcache_clear(&b->cache); /* the aborted txn's values */
        if (rc == 0)
            rc = mdb_txn_begin(b->e->env, NULL, 0, &b->wtxn);
        if (rc == 0)
            rc = magic_load(b, b->wtxn, &b->mg);
        if (rc) {
            if (b->wtxn)
                mdb_txn_abort(b->wtxn);
            b->wtxn = NULL;
            pthread_rwlock_unlock(&b->e->rw);
            pthread_mutex_unlock(&b->e->wmutex);
            return rc;
        }
        size_t i = 0;
        for (; i < b->nops; i++) {
            int ch;
            rc = apply_op(b, &b->ops[i], &ch);
            if (rc)
                break;
        }
        if (rc == 0)
            return 0;
        if (rc != MDB_MAP_FULL) {
            wabort(b);
            return rc;
        }
    }
}

static int commit_txn(tamis_bayes_t *b)
{
    for (;;) {
        int rc = tamis__tokcache_flush(&b->cache, b->wtxn, b->tok);
        if (rc == 0)
            rc = magic_store(b, b->wtxn, &b->mg);
        if (rc == MDB_MAP_FULL) {
            rc = regrow_and_replay(b);
            if (rc)
                return rc;
            continue;
        }
        if (rc) {
            wabort(b);
            return rc;
        }
        rc = mdb_txn_commit(b->wtxn);
        b->wtxn = NULL;
        if (rc == MDB_MAP_FULL) {
            /* the txn is gone; restart it and replay */
            rc = mdb_txn_begin(b->e->env, NULL, 0, &b->wtxn);
            if (rc == 0)
                rc = regrow_and_replay(b);
            if (rc)
                return rc;
            continue;
        }
        pthread_rwlock_unlock(&b->e->rw);
        pthread_mutex_unlock(&b->e->wmutex);
        return rc;
    }
}

int tamis_bayes_begin(tamis_bayes_t *b, char *err, size_t errlen)
{
    if (!b || b->read_only || b->wtxn)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: cannot begin a batch here");
    ops_clear(b);
    int rc = wbegin(b);
    if (rc)
        return lmdb_err(err, errlen, rc, "begin write");
    b->explicit_batch = true;
    return 0;
}

int tamis_bayes_commit(tamis_bayes_t *b, char *err, size_t errlen)
{
    if (!b || !b->wtxn)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: no batch open");
    int rc = commit_txn(b);
    b->explicit_batch = false;
    ops_clear(b);
    if (rc)
        return lmdb_err(err, errlen, rc, "commit");
    return 0;
}

void tamis_bayes_abort(tamis_bayes_t *b)
{
    if (!b)
        return;
    wabort(b);
    b->explicit_batch = false;
    ops_clear(b);
}

int tamis_bayes_learn_tokens(tamis_bayes_t *b, const tamis_bayes_tokens_t *t, const char *msgid,
                             const char *msgid2, time_t atime, tamis_bayes_class_t cls,
                             bool no_relearn, char *err, size_t errlen)
{
    if (!b || !t || !msgid || !*msgid || cls < TAMIS_BAYES_HAM || cls > TAMIS_BAYES_FORGET)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad learn arguments");
    if (b->read_only)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: store opened read-only");
    bool implicit = !b->wtxn;
    if (implicit) {
        ops_clear(b);
        int rc = wbegin(b);
        if (rc)
            return lmdb_err(err, errlen, rc, "begin write");
    }
    if (b->nops == b->capops) {
        size_t nc = b->capops ? b->capops * 2 : 64;
        op_t *no = realloc(b->ops, nc * sizeof *no);
        if (!no) {
            tamis_bayes_abort(b);
            return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
        }
        b->ops = no;
        b->capops = nc;
    }
    op_t *op = &b->ops[b->nops];
    memset(op, 0, sizeof *op);
    op->cls = cls;
    op->no_relearn = no_relearn;
    op->atime = atime < 0 ? 0 : (atime > (time_t)UINT32_MAX ? UINT32_MAX : (uint32_t)atime);
    op->msgid = strdup(msgid);
    op->msgid2 = strdup(msgid2 ? msgid2 : "");
    op->nkeys = t->count;
    op->keys = malloc(t->count * TAMIS_BAYES_KEY_LEN + 1);
    if (!op->msgid || !op->msgid2 || !op->keys) {
        free(op->msgid);
        free(op->msgid2);
        free(op->keys);
        tamis_bayes_abort(b);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    }
    for (size_t i = 0; i < t->count; i++)
        memcpy(op->keys + i * TAMIS_BAYES_KEY_LEN, t->toks[i].key, TAMIS_BAYES_KEY_LEN);
    int changed = 0;
    int rc = apply_op(b, op, &changed);
    while (rc == MDB_MAP_FULL) {
        rc = regrow_and_replay(b); /* replays the ops before this one */
        if (rc == 0)
            rc = apply_op(b, op, &changed);
        else {
            free(op->msgid);
            free(op->msgid2);
            free(op->keys);
            b->explicit_batch = false;
            ops_clear(b);
            return lmdb_err(err, errlen, rc, "grow map");
        }
    }
    b->nops++;
    if (rc) {
        tamis_bayes_abort(b);
        return lmdb_err(err, errlen, rc, "learn");
    }
    if (implicit) {
        rc = commit_txn(b);
        ops_clear(b);
        if (rc)
            return lmdb_err(err, errlen, rc, "commit");
    }
    return changed;
}

struct tamis_bayes_prep {
    char gen[80], mid[MAX_MSGID + 1];
    time_t atime;
    tamis_bayes_tokmode_t mode;
    tamis_bayes_tokens_t *t;
};

int tamis_bayes_prepare(const tamis_msg_t *m, const tamis_bayes_tokopts_t *o,
                        tamis_bayes_prep_t **out, char *err, size_t errlen)
{
    if (!m || !out)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad prepare arguments");
    *out = NULL;
    tamis_bayes_prep_t *p = calloc(1, sizeof *p);
    if (!p)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    if (tamis_bayes_msgids(m, p->gen, p->mid, sizeof p->mid) != 0) {
        free(p);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    }
    time_t now = time(NULL);
    p->atime = tamis_bayes_msg_atime(m, now);
    if (p->atime - now > 86400)
        p->atime = now;
    tamis_bayes_tokopts_t so;
    if (o)
        so = *o;
    else
        tamis_bayes_tokopts_default(&so);
    p->mode = so.mode;
    int rc = tamis_bayes_tokenize_msg(m, &so, &p->t, err, errlen);
    if (rc) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void tamis_bayes_prep_free(tamis_bayes_prep_t *p)
{
    if (!p)
        return;
    tamis_bayes_tokens_free(p->t);
    free(p);
}

int tamis_bayes_learn_prep(tamis_bayes_t *b, const tamis_bayes_prep_t *p, tamis_bayes_class_t cls,
                           bool no_relearn, char *err, size_t errlen)
{
    if (!b || !p)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad learn arguments");
    tamis_bayes_tokmode_t mode =
        b->wtxn ? (tamis_bayes_tokmode_t)b->mg.v[M_TOKMODE] : tamis_bayes_store_tokmode(b);
    if (p->mode != mode)
        return tamis_seterr(err, errlen, TAMIS_EINVAL,
                            "bayes: message tokenized in %s mode, the store is in %s mode",
                            tamis_bayes_tokmode_name(p->mode), tamis_bayes_tokmode_name(mode));
    return tamis_bayes_learn_tokens(b, p->t, p->gen, p->mid, p->atime, cls, no_relearn, err,
                                    errlen);
}

int tamis_bayes_learn_msg(tamis_bayes_t *b, const tamis_msg_t *m, const tamis_bayes_tokopts_t *o,
                          tamis_bayes_class_t cls, bool no_relearn, char *err, size_t errlen)
{
    if (!b || !m)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad learn arguments");
    /* the store's token mode wins over the caller's: its tokens must stay comparable */
    tamis_bayes_tokopts_t so;
    if (o)
        so = *o;
    else
        tamis_bayes_tokopts_default(&so);
    so.mode = b->wtxn ? (tamis_bayes_tokmode_t)b->mg.v[M_TOKMODE] : tamis_bayes_store_tokmode(b);
    tamis_bayes_prep_t *p;
    int rc = tamis_bayes_prepare(m, &so, &p, err, errlen);
    if (rc)
        return rc;
    rc = tamis_bayes_learn_prep(b, p, cls, no_relearn, err, errlen);
    tamis_bayes_prep_free(p);
    return rc;
}

int tamis_bayes_seen(tamis_bayes_t *b, const char *msgid, char *err, size_t errlen)
{
    if (!b || !msgid)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad arguments");
    char c = 0;
    int rc;
    if (b->wtxn) {
        rc = seen_get_txn(b, b->wtxn, msgid, &c);
    } else {
        MDB_txn *txn;
        rc = begin_read(b, &txn);
        if (rc)
            return lmdb_err(err, errlen, rc, "begin read");
        rc = seen_get_txn(b, txn, msgid, &c);
        end_read(b, txn);
    }
    if (rc)
        return lmdb_err(err, errlen, rc, "seen");
    return c;
}

int tamis_bayes_magic(tamis_bayes_t *b, tamis_bayes_magic_t *out, char *err, size_t errlen)
{
    if (!b || !out)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad arguments");
    magicv_t m;
    int rc;
    if (b->wtxn) {
        m = b->mg;
        rc = 0;
    } else {
        MDB_txn *txn;
        rc = begin_read(b, &txn);
        if (rc)
            return lmdb_err(err, errlen, rc, "begin read");
        rc = magic_load(b, txn, &m);
        end_read(b, txn);
    }
    if (rc)
        return lmdb_err(err, errlen, rc, "magic");
    out->version = (unsigned)m.v[M_VERSION];
    out->nspam = m.v[M_NSPAM];
    out->nham = m.v[M_NHAM];
    out->ntokens = m.v[M_NTOKENS];
    out->oldest_atime = (uint32_t)m.v[M_OLDEST];
    out->newest_atime = (uint32_t)m.v[M_NEWEST];
    out->last_journal_sync = (uint32_t)m.v[M_JSYNC];
    out->last_expire = (uint32_t)m.v[M_LEXPIRE];
    out->last_expire_atime_delta = (uint32_t)m.v[M_LDELTA];
    out->last_expire_reduce = (uint32_t)m.v[M_LREDUCE];
    out->token_mode = m.v[M_TOKMODE] == TAMIS_BAYES_TOKMODE_TAMIS ? TAMIS_BAYES_TOKMODE_TAMIS
                                                                  : TAMIS_BAYES_TOKMODE_SA;
    return 0;
}

tamis_bayes_tokmode_t tamis_bayes_store_tokmode(tamis_bayes_t *b)
{
    tamis_bayes_magic_t m;
    if (!b || tamis_bayes_magic(b, &m, NULL, 0) != 0)
        return TAMIS_BAYES_TOKMODE_SA;
    return m.token_mode;
}

static int run_write(tamis_bayes_t *b, int (*fn)(tamis_bayes_t *, void *), void *ctx, char *err,
                     size_t errlen);

typedef struct {
    tamis_bayes_tokmode_t mode;
    char *err;
    size_t errlen;
} tokmode_ctx_t;

static int tokmode_fn(tamis_bayes_t *b, void *ctx)
{
    tokmode_ctx_t *x = ctx;
    if (b->mg.v[M_TOKMODE] == (uint64_t)x->mode)
        return 0;
    if (b->mg.v[M_NSPAM] || b->mg.v[M_NHAM] || b->mg.v[M_NTOKENS])
        return tamis_seterr(x->err, x->errlen, TAMIS_EINVAL,
                            "bayes: the store holds tokens of mode '%s'; clear it to change the "
                            "token mode",
                            tamis_bayes_tokmode_name((tamis_bayes_tokmode_t)b->mg.v[M_TOKMODE]));
    b->mg.v[M_TOKMODE] = (uint64_t)x->mode;
    return 0;
}

int tamis_bayes_set_tokmode(tamis_bayes_t *b, tamis_bayes_tokmode_t mode, char *err, size_t errlen)
{
    if (!b || (mode != TAMIS_BAYES_TOKMODE_SA && mode != TAMIS_BAYES_TOKMODE_TAMIS))
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad token mode");
    if (tamis_bayes_store_tokmode(b) == mode)
        return 0;
    tokmode_ctx_t x = {mode, err, errlen};
    return run_write(b, tokmode_fn, &x, err, errlen);
}

static int run_write(tamis_bayes_t *b, int (*fn)(tamis_bayes_t *, void *), void *ctx, char *err,
                     size_t errlen);

/* ---- classification ------------------------------------------------------------------------- */

void tamis_bayes_params_default(tamis_bayes_params_t *p)
{
    p->min_spam = 200;
    p->min_ham = 200;
    p->use_hapaxes = true;
}

double tamis_bayes_token_prob(uint64_t s, uint64_t n, uint64_t ns, uint64_t nh, bool use_hapaxes)
{
    if (!ns || !nh)
        return -1;
    uint64_t threshold = use_hapaxes ? 1 : 2;
    if (s + n < threshold)
        return -1;
    double ds = (double)s, dn = (double)n;
    double p = (ds * (double)nh) / (dn * (double)ns + ds * (double)nh);
    double robn = ds + dn;
    return (TAMIS_BAYES_FW_S * TAMIS_BAYES_FW_X + robn * p) / (TAMIS_BAYES_FW_S + robn);
}

static double chi2q(double x2, size_t halfv)
{
    double m = x2 / 2.0;
    double sum, term;
    sum = term = exp(-m);
    for (size_t i = 1; i < halfv; i++) {
        term *= m / (double)i;
        sum += term;
    }
    return sum < 1.0 ? sum : 1.0;
}

/* log of chi2q(2m, 2k) = e^-m * sum_{i<k} m^i / i!, the same series kept in logs so that it
 * never underflows (m reaches thousands on long, one-sided token sets): a running log-sum-exp. */
static double log_chi2q(double m, size_t k)
{
    if (m <= 0)
        return 0;
    double lm = log(m), lsum = -INFINITY;
    for (size_t i = 0; i < k; i++) {
        double t = (double)i * lm - lgamma((double)i + 1.0);
        double hi = t > lsum ? t : lsum, lo = t > lsum ? lsum : t;
        lsum = hi + log1p(exp(lo - hi));
    }
    double r = -m + lsum;
    return r < 0 ? r : 0;
}

/* Half-width of the band around 0.5 where SA's double result is replaced by the tie-break: below
 * 1e-9 from SA's value, far under any rule boundary (BAYES_40..BAYES_60 is 0.4..0.6). */
#define TIE_BAND 5e-10
/* Scale of the log ratio in the tie-break: log ratios of saturated sets are tens to hundreds. */
#define TIE_SCALE 64.0

double tamis_bayes_combine(uint64_t ns, uint64_t nh, const double *probs, size_t n)
{
    if (!n || ns + nh == 0)
        return -1;
    double tot = (double)ns + (double)nh;
    double S = (double)ns / tot, H = (double)nh / tot;
    int Sexp = 0, Hexp = 0;
    for (size_t i = 0; i < n; i++) {
        S *= 1.0 - probs[i];
        H *= probs[i];
        if (S < 1e-200) {
            int e;
            S = frexp(S, &e);
            Sexp += e;
        }
        if (H < 1e-200) {
            int e;
            H = frexp(H, &e);
            Hexp += e;
        }
    }
    double lS = log(S) + Sexp * M_LN2, lH = log(H) + Hexp * M_LN2;
    /* SpamAssassin's arithmetic, kept as is so its verdicts are reproduced bit for bit */
    double pS = 1.0 - chi2q(-2.0 * lS, n);
    double pH = 1.0 - chi2q(-2.0 * lH, n);
    double prob = ((pS - pH) + 1.0) / 2.0;
    if (fabs(prob - 0.5) >= TIE_BAND)
        return prob;
    /* Saturated: both upper tails are below double precision next to 1, so SA's difference is 0
     * (or rounding noise). Order these sets by the log ratio of the tails instead: positive when
     * the ham tail is the larger one, i.e. the spam evidence is the more extreme. The result
     * stays inside the band, so it never crosses a value SA would give outside it. */
    double r = (log_chi2q(-lH, n) - log_chi2q(-lS, n)) / TIE_SCALE;
    return 0.5 + TIE_BAND * r / (1.0 + fabs(r));
}

typedef struct {
    double prob;
    size_t idx; /* token index in the set */
    uint32_t s, n, atime;
} scored_t;

static int cmp_strength(const void *a, const void *b)
{
    const scored_t *x = a, *y = b;
    double sx = fabs(x->prob - 0.5), sy = fabs(y->prob - 0.5);
    if (sx != sy)
        return sx < sy ? 1 : -1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx); /* stable, deterministic ties */
}

int tamis_bayes_classify_detail(tamis_bayes_t *b, const tamis_bayes_tokens_t *t,
                                const tamis_bayes_params_t *p, tamis_bayes_result_t *res,
                                tamis_bayes_token_info_t **used_out, size_t *nused, char *err,
                                size_t errlen)
{
    tamis_bayes_params_t def;
    if (used_out)
        *used_out = NULL;
    if (nused)
        *nused = 0;
    if (!b || !t || !res)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad classify arguments");
    if (!p) {
        tamis_bayes_params_default(&def);
        p = &def;
    }
    memset(res, 0, sizeof *res);
    res->prob = 0.5;
    res->tokens_total = t->count;
    MDB_txn *txn;
    int rc = begin_read(b, &txn);
    if (rc)
        return lmdb_err(err, errlen, rc, "begin read");
    magicv_t m;
    rc = magic_load(b, txn, &m);
    if (rc) {
        end_read(b, txn);
        return lmdb_err(err, errlen, rc, "magic");
    }
    res->nspam = m.v[M_NSPAM];
    res->nham = m.v[M_NHAM];
    if (res->nspam < p->min_spam || res->nham < p->min_ham || !res->nspam || !res->nham) {
        end_read(b, txn);
        res->status = TAMIS_BAYES_NOT_ENOUGH;
        return 0;
    }
    scored_t *sc = malloc((t->count + 1) * sizeof *sc);
    if (!sc) {
        end_read(b, txn);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    }
    size_t np = 0;
    for (size_t i = 0; i < t->count && b->have_dbi; i++) {
        MDB_val key = {TAMIS_BAYES_KEY_LEN, (void *)t->toks[i].key}, val;
        rc = mdb_get(txn, b->tok, &key, &val);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc) {
            free(sc);
            end_read(b, txn);
            return lmdb_err(err, errlen, rc, "token lookup");
        }
        if (val.mv_size < 12)
            continue;
        uint64_t s = get_u64(val.mv_data, 4), n = get_u64((const uint8_t *)val.mv_data + 4, 4);
        double pr = tamis_bayes_token_prob(s, n, res->nspam, res->nham, p->use_hapaxes);
        if (pr < 0)
            continue;
        sc[np].prob = pr;
        sc[np].idx = i;
        sc[np].s = (uint32_t)s;
        sc[np].n = (uint32_t)n;
        sc[np].atime = (uint32_t)get_u64((const uint8_t *)val.mv_data + 8, 4);
        np++;
    }
    end_read(b, txn);
    res->tokens_learned = np;
    qsort(sc, np, sizeof *sc, cmp_strength);
    size_t keep = np < TAMIS_BAYES_N_SIGNIFICANT ? np : TAMIS_BAYES_N_SIGNIFICANT;
    size_t used = 0;
    for (size_t i = 0; i < keep; i++) {
        if (fabs(sc[i].prob - 0.5) < TAMIS_BAYES_MIN_PROB_STRENGTH)
            continue;
        if (sc[i].prob < 0.5)
            res->hammy++;
        else
            res->spammy++;
        sc[used++] = sc[i];
    }
    res->tokens_used = used;
    if (!used) {
        free(sc);
        res->status = TAMIS_BAYES_NO_TOKENS;
        return 0;
    }
    double *probs = malloc(used * sizeof *probs);
    if (!probs) {
        free(sc);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    }
    for (size_t i = 0; i < used; i++)
        probs[i] = sc[i].prob;
    double score = tamis_bayes_combine(res->nspam, res->nham, probs, used);
    free(probs);
    if (score < 0) {
        free(sc);
        res->status = TAMIS_BAYES_NO_TOKENS;
        return 0;
    }
    res->prob = score;
    res->status = TAMIS_BAYES_OK;
    if (used_out) {
        tamis_bayes_token_info_t *u = calloc(used, sizeof *u);
        if (!u) {
            free(sc);
            return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
        }
        for (size_t i = 0; i < used; i++) {
            u[i].token = t->pool.data + t->toks[sc[i].idx].str_off;
            memcpy(u[i].key, t->toks[sc[i].idx].key, TAMIS_BAYES_KEY_LEN);
            u[i].prob = sc[i].prob;
            u[i].spam = sc[i].s;
            u[i].ham = sc[i].n;
            u[i].atime = sc[i].atime;
        }
        *used_out = u;
        if (nused)
            *nused = used;
    }
    free(sc);
    return 0;
}

int tamis_bayes_classify(tamis_bayes_t *b, const tamis_bayes_tokens_t *t,
                         const tamis_bayes_params_t *p, tamis_bayes_result_t *res, char *err,
                         size_t errlen)
{
    return tamis_bayes_classify_detail(b, t, p, res, NULL, NULL, err, errlen);
}

typedef struct {
    const uint8_t *keys;
    size_t n;
    uint32_t atime;
    uint32_t floor; /* atimes at or above it are left alone (floor <= atime) */
} touch_ctx_t;

static int touch_apply(tamis_bayes_t *b, const touch_ctx_t *x)
{
    const uint32_t *idx;
    int rc = tamis__tokcache_fetch(&b->cache, b->wtxn, b->tok, x->keys, x->n, &idx);
    if (rc)
        return rc;
    for (size_t i = 0; i < x->n; i++) {
        tamis__tokent_t *e = &b->cache.ents[idx[i]];
        if (!e->exists || !e->whole || e->at >= x->floor)
            continue;
        e->at = x->atime;
        e->dirty = true;
        if (x->atime > b->mg.v[M_NEWEST])
            b->mg.v[M_NEWEST] = x->atime;
    }
    return 0;
}

static int touch_fn(tamis_bayes_t *b, void *ctx)
{
    return touch_apply(b, ctx);
}

/* Whether any known key's atime is older than x->atime (read transaction, no writer lock). */
static int touch_needed(tamis_bayes_t *b, const touch_ctx_t *x, bool *needed)
{
    *needed = false;
    if (!b->have_dbi)
        return 0;
    MDB_txn *txn;
    int rc = begin_read(b, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < x->n && !*needed; i++) {
        MDB_val key = {TAMIS_BAYES_KEY_LEN, (void *)(x->keys + i * TAMIS_BAYES_KEY_LEN)}, val;
        rc = mdb_get(txn, b->tok, &key, &val);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc)
            break;
        *needed = val.mv_size >= 12 && get_u64((const uint8_t *)val.mv_data + 8, 4) < x->floor;
    }
    end_read(b, txn);
    return rc;
}

int tamis_bayes_touch(tamis_bayes_t *b, const uint8_t *keys, size_t n, time_t atime, char *err,
                      size_t errlen)
{
    if (!b || (!keys && n))
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad touch arguments");
    if (!n)
        return 0;
    uint32_t at = atime < 0 ? 0 : (atime > (time_t)UINT32_MAX ? UINT32_MAX : (uint32_t)atime);
    /* Tokens touched less than TOUCH_SLACK ago are left alone, so that the scans of a busy
     * store mostly write nothing; expiry works in steps of 12 h or more, which this cannot
     * change. */
    touch_ctx_t x = {keys, n, at, at > TOUCH_SLACK ? at - TOUCH_SLACK + 1 : 0};
    if (b->wtxn) {
        /* inside a batch: a full map aborts the txn, so grow and replay the batch's learns;
         * the touch itself is dropped (a lost atime update is harmless) */
        int rc = touch_apply(b, &x);
        if (rc == MDB_MAP_FULL)
            rc = regrow_and_replay(b);
        return rc ? lmdb_err(err, errlen, rc, "touch") : 0;
    }
    /* outside a batch, look first in a read transaction: a write transaction (writer lock,
     * magic records, fsync at commit) only when some atime actually moves */
    bool needed = false;
    int rc = touch_needed(b, &x, &needed);
    if (rc)
        return lmdb_err(err, errlen, rc, "touch");
    if (!needed)
        return 0;
    return run_write(b, touch_fn, &x, err, errlen);
}

/* ---- maintenance ---------------------------------------------------------------------------- */

/* Runs fn inside one write transaction, growing the map and retrying from scratch when full. */
static int run_write(tamis_bayes_t *b, int (*fn)(tamis_bayes_t *, void *), void *ctx, char *err,
                     size_t errlen)
{
    if (b->read_only || b->wtxn)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: store read-only or a batch is open");
    ops_clear(b);
    int rc = wbegin(b);
    if (rc)
        return lmdb_err(err, errlen, rc, "begin write");
    for (;;) {
        rc = fn(b, ctx);
        if (rc == MDB_MAP_FULL) {
            rc = regrow_and_replay(b); /* no ops: just a fresh txn on a bigger map */
            if (rc)
                return lmdb_err(err, errlen, rc, "grow map");
            continue;
        }
        if (rc > 0) { /* an LMDB error */
            wabort(b);
            return lmdb_err(err, errlen, rc, "write");
        }
        if (rc < 0) { /* a TAMIS_E* from fn, message already set by fn's ctx */
            wabort(b);
            return rc;
        }
        rc = commit_txn(b);
        if (rc)
            return lmdb_err(err, errlen, rc, "commit");
        return 0;
    }
}

static int clear_fn(tamis_bayes_t *b, void *ctx)
{
    (void)ctx;
    int rc = mdb_drop(b->wtxn, b->tok, 0);
    if (rc == 0)
        rc = mdb_drop(b->wtxn, b->seen, 0);
    memset(&b->mg, 0, sizeof b->mg);
    b->mg.v[M_VERSION] = DB_VERSION;
    return rc;
}

int tamis_bayes_clear(tamis_bayes_t *b, char *err, size_t errlen)
{
    if (!b)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: no store");
    return run_write(b, clear_fn, NULL, err, errlen);
}

void tamis_bayes_expire_opts_default(tamis_bayes_expire_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_db_size = 150000;
    o->min_keep = 100000;
    o->min_reduce = 1000;
}

typedef struct {
    const tamis_bayes_expire_opts_t *o;
    tamis_bayes_expire_report_t *rep;
    time_t now;
    int result;
} expire_ctx_t;

static bool is_token_key(const MDB_val *k)
{
    return k->mv_size == TAMIS_BAYES_KEY_LEN;
}

static int expire_fn(tamis_bayes_t *b, void *vctx)
{
    expire_ctx_t *x = vctx;
    memset(x->rep, 0, sizeof *x->rep);
    x->result = 0;
    magicv_t *m = &b->mg;
    uint64_t newest = m->v[M_NEWEST];
    if (newest > (uint64_t)x->now)
        newest = (uint64_t)x->now;
    if (!x->o->force) {
        bool due = (uint64_t)x->now - m->v[M_LEXPIRE] >= EXPIRY_PERIOD &&
                   m->v[M_NTOKENS] > 100000 && m->v[M_NTOKENS] > x->o->max_db_size &&
                   newest >= m->v[M_OLDEST] + EXPIRY_PERIOD;
        if (!due)
            return 0;
    }
    uint64_t keep = (uint64_t)((double)x->o->max_db_size * 0.75);
    if (keep < x->o->min_keep)
        keep = x->o->min_keep;
    int64_t goal = (int64_t)m->v[M_NTOKENS] - (int64_t)keep;
    if (goal < (int64_t)x->o->min_reduce) {
        m->v[M_LEXPIRE] = (uint64_t)x->now;
        return 0;
    }
    /* estimation pass: how many tokens each delta 12 h × 2^k would remove */
    uint64_t delta_count[10] = {0};
    MDB_cursor *cur;
    int rc = mdb_cursor_open(b->wtxn, b->tok, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (is_token_key(&k) && v.mv_size >= 12) {
            uint64_t at = get_u64((const uint8_t *)v.mv_data + 8, 4);
            uint64_t age = newest > at ? newest - at : 0;
            for (unsigned i = 0; i < 10; i++) {
                if (age >= (uint64_t)EXPIRY_PERIOD << i)
                    delta_count[i]++;
                else
                    break;
            }
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    int sel = -1;
    for (int i = 9; i >= 0; i--) {
        if (delta_count[i] == 0)
            continue;
        if (delta_count[i] > (uint64_t)goal) {
            sel = i + 1; /* the next power of two out stays under the goal */
            break;
        }
    }
    if (sel < 0)
        sel = 0;
    if (sel > 9 || delta_count[sel] == 0 || delta_count[sel] < x->o->min_reduce) {
        m->v[M_LEXPIRE] = (uint64_t)x->now;
        return 0;
    }
    uint64_t delta = (uint64_t)EXPIRY_PERIOD << sel;
    /* removal pass */
    rc = mdb_cursor_open(b->wtxn, b->tok, &cur);
    if (rc)
        return rc;
    uint64_t kept = 0, deleted = 0, hapax = 0, lowfreq = 0, oldest = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (is_token_key(&k) && v.mv_size >= 12) {
            uint64_t at = get_u64((const uint8_t *)v.mv_data + 8, 4);
            if (at + delta <= newest) {
                rc = mdb_cursor_del(cur, 0);
                if (rc)
                    break;
                deleted++;
                /* after a delete the cursor already sits on the next record; MDB_NEXT
                 * returns it without skipping */
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
                continue;
            }
            uint64_t tot = get_u64(v.mv_data, 4) + get_u64((const uint8_t *)v.mv_data + 4, 4);
            if (tot == 1)
                hapax++;
            else if (tot < 8)
                lowfreq++;
            if (!oldest || at < oldest)
                oldest = at;
            kept++;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    m->v[M_NTOKENS] = kept;
    m->v[M_OLDEST] = oldest;
    m->v[M_NEWEST] = newest;
    m->v[M_LEXPIRE] = (uint64_t)x->now;
    m->v[M_LDELTA] = delta;
    m->v[M_LREDUCE] = deleted;
    x->rep->ran = deleted > 0;
    x->rep->kept = kept;
    x->rep->deleted = deleted;
    x->rep->atime_delta = (uint32_t)delta;
    x->rep->hapax_pct = kept ? 100.0 * (double)hapax / (double)kept : 0;
    x->rep->lowfreq_pct = kept ? 100.0 * (double)(hapax + lowfreq) / (double)kept : 0;
    x->result = deleted > 0;
    return 0;
}

int tamis_bayes_expire(tamis_bayes_t *b, const tamis_bayes_expire_opts_t *o,
                       tamis_bayes_expire_report_t *rep, char *err, size_t errlen)
{
    tamis_bayes_expire_opts_t def;
    tamis_bayes_expire_report_t r;
    if (!b)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: no store");
    if (!o) {
        tamis_bayes_expire_opts_default(&def);
        o = &def;
    }
    expire_ctx_t x = {o, rep ? rep : &r, o->now ? o->now : time(NULL), 0};
    int rc = run_write(b, expire_fn, &x, err, errlen);
    return rc ? rc : x.result;
}

/* ---- backup, restore, dump (sa-learn formats) ----------------------------------------------- */

/* Buffered output through the caller's sink. */
typedef struct {
    tamis_bayes_write_fn w;
    void *ctx;
    tamis_buf_t buf;
    int err;
} out_t;

static void out_flush(out_t *o)
{
    if (!o->err && o->buf.len)
        o->err = o->w(o->ctx, o->buf.data, o->buf.len);
    tamis_buf_reset(&o->buf);
}

static void out_printf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(out_t *o, const char *fmt, ...)
{
    if (o->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    tamis_buf_vprintf(&o->buf, fmt, ap);
    va_end(ap);
    if (o->buf.err)
        o->err = TAMIS_ENOMEM;
    if (o->buf.len > 60000)
        out_flush(o);
}

static void hexkey(const uint8_t *k, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[k[i] >> 4];
        out[2 * i + 1] = d[k[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Ends a backup or dump: closes the read transaction, flushes and frees the output, and turns
 * the first failure (LMDB, then output) into the return code. */
static int finish_output(tamis_bayes_t *b, MDB_txn *txn, out_t *o, int rc, const char *what,
                         char *err, size_t errlen)
{
    end_read(b, txn);
    out_flush(o);
    tamis_buf_free(&o->buf);
    if (rc)
        return lmdb_err(err, errlen, rc, what);
    if (o->err)
        return tamis_seterr(err, errlen, o->err, "bayes: %s output failed", what);
    return 0;
}

/* One --dump line: probability, spam count, ham count, atime, token or label (sa-learn's format).
 */
#define DUMP_LINE_FMT "%3.3f %10u %10u %10u  %s\n"

int tamis_bayes_backup(tamis_bayes_t *b, tamis_bayes_write_fn w, void *ctx, char *err,
                       size_t errlen)
{
    if (!b || !w)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad backup arguments");
    MDB_txn *txn;
    int rc = begin_read(b, &txn);
    if (rc)
        return lmdb_err(err, errlen, rc, "begin read");
    magicv_t m;
    rc = magic_load(b, txn, &m);
    out_t o = {w, ctx, {0}, 0};
    tamis_buf_init(&o.buf, 0);
    out_printf(&o, "v\t%u\tdb_version # this must be the first line!!!\n", DB_VERSION);
    out_printf(&o, "v\t%llu\tnum_spam\n", (unsigned long long)m.v[M_NSPAM]);
    out_printf(&o, "v\t%llu\tnum_nonspam\n", (unsigned long long)m.v[M_NHAM]);
    /* Tamis: the token mode when it is not SA's (SpamAssassin skips unknown v lines) */
    if (m.v[M_TOKMODE] == TAMIS_BAYES_TOKMODE_TAMIS)
        out_printf(&o, "v\t%u\ttoken_mode_tamis\n", 1u);
    /* a long read txn here is fine: LMDB readers never block the writer */
    for (int db = 0; db < 2 && rc == 0 && b->have_dbi && !o.err; db++) {
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, db == 0 ? b->tok : b->seen, &cur);
        if (rc)
            break;
        MDB_val k, v;
        int crc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (crc == 0 && !o.err) {
            if (db == 0 && is_token_key(&k) && v.mv_size >= 12) {
                char hx[11];
                hexkey(k.mv_data, TAMIS_BAYES_KEY_LEN, hx);
                out_printf(&o, "t\t%u\t%u\t%u\t%s\n", (unsigned)get_u64(v.mv_data, 4),
                           (unsigned)get_u64((const uint8_t *)v.mv_data + 4, 4),
                           (unsigned)get_u64((const uint8_t *)v.mv_data + 8, 4), hx);
            } else if (db == 1 && v.mv_size >= 1) {
                out_printf(&o, "s\t%c\t%.*s\n", ((const char *)v.mv_data)[0], (int)k.mv_size,
                           (const char *)k.mv_data);
            }
            crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        if (crc != MDB_NOTFOUND && crc != 0)
            rc = crc;
    }
    return finish_output(b, txn, &o, rc, "backup", err, errlen);
}

int tamis_bayes_dump(tamis_bayes_t *b, unsigned what, tamis_bayes_write_fn w, void *ctx, char *err,
                     size_t errlen)
{
    if (!b || !w)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad dump arguments");
    MDB_txn *txn;
    int rc = begin_read(b, &txn);
    if (rc)
        return lmdb_err(err, errlen, rc, "begin read");
    magicv_t m;
    rc = magic_load(b, txn, &m);
    out_t o = {w, ctx, {0}, 0};
    tamis_buf_init(&o.buf, 0);
    if (what & TAMIS_BAYES_DUMP_MAGIC) {
        static const struct {
            int idx;
            const char *text;
        } lines[] = {{M_VERSION, "bayes db version"},
                     {M_NSPAM, "nspam"},
                     {M_NHAM, "nham"},
                     {M_NTOKENS, "ntokens"},
                     {M_OLDEST, "oldest atime"},
                     {M_NEWEST, "newest atime"},
                     {M_JSYNC, "last journal sync atime"},
                     {M_LEXPIRE, "last expiry atime"},
                     {M_LDELTA, "last expire atime delta"},
                     {M_LREDUCE, "last expire reduction count"}};
        for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
            char text[64];
            snprintf(text, sizeof text, "non-token data: %s", lines[i].text);
            out_printf(&o, DUMP_LINE_FMT, 0.0, 0u, (unsigned)m.v[lines[i].idx], 0u, text);
        }
        /* Tamis: only for the non-SA mode, so that SA-mode dumps stay sa-learn's */
        if (m.v[M_TOKMODE] == TAMIS_BAYES_TOKMODE_TAMIS)
            out_printf(&o, DUMP_LINE_FMT, 0.0, 0u, (unsigned)m.v[M_TOKMODE], 0u,
                       "non-token data: token mode tamis");
    }
    if ((what & TAMIS_BAYES_DUMP_DATA) && b->have_dbi && rc == 0) {
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, b->tok, &cur);
        if (rc == 0) {
            MDB_val k, v;
            int crc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
            while (crc == 0 && !o.err) {
                if (is_token_key(&k) && v.mv_size >= 12) {
                    uint64_t s = get_u64(v.mv_data, 4);
                    uint64_t n = get_u64((const uint8_t *)v.mv_data + 4, 4);
                    double p = tamis_bayes_token_prob(s, n, m.v[M_NSPAM], m.v[M_NHAM], true);
                    if (p <= 0) /* Perl: $prob ||= 0.5 */
                        p = 0.5;
                    char hx[11];
                    hexkey(k.mv_data, TAMIS_BAYES_KEY_LEN, hx);
                    out_printf(&o, DUMP_LINE_FMT, p, (unsigned)s, (unsigned)n,
                               (unsigned)get_u64((const uint8_t *)v.mv_data + 8, 4), hx);
                }
                crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            }
            mdb_cursor_close(cur);
            if (crc != MDB_NOTFOUND && crc != 0)
                rc = crc;
        }
    }
    return finish_output(b, txn, &o, rc, "dump", err, errlen);
}

typedef struct {
    const char *data;
    size_t len;
    time_t now;
    tamis_bayes_restore_report_t *rep;
    char *err;
    size_t errlen;
} restore_ctx_t;

/* Splits on runs of blanks like Perl's split(/\s+/, $line, max). */
static size_t split_ws(const char *s, size_t n, const char **f, size_t *fl, size_t max)
{
    size_t nf = 0, i = 0;
    while (nf < max) {
        size_t st = i;
        if (nf == max - 1) {
            f[nf] = s + st;
            fl[nf++] = n - st;
            break;
        }
        while (i < n && s[i] != ' ' && s[i] != '\t')
            i++;
        f[nf] = s + st;
        fl[nf++] = i - st;
        if (i >= n)
            break;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
    }
    return nf;
}

static int64_t perl_num(const char *s, size_t n)
{
    /* "$x + 0": leading digits with an optional sign, 0 otherwise */
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    int64_t v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (v < INT64_MAX / 20)
            v = v * 10 + (s[i] - '0');
        i++;
    }
    return neg ? -v : v;
}

static int unhex(const char *s, size_t n, uint8_t *out, size_t outlen)
{
    if (n != 2 * outlen)
        return -1;
    for (size_t i = 0; i < outlen; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            int d = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

static int restore_fn(tamis_bayes_t *b, void *vctx)
{
    restore_ctx_t *x = vctx;
    memset(x->rep, 0, sizeof *x->rep);
    const char *d = x->data;
    size_t n = x->len, i = 0;
    /* first line: v <version> db_version */
    const char *nl = memchr(d, '\n', n);
    size_t l0 = nl ? (size_t)(nl - d) : n;
    const char *f[5];
    size_t fl[5];
    size_t nf = split_ws(d, l0, f, fl, 3);
    if (nf < 3 || fl[0] != 1 || f[0][0] != 'v' || fl[2] < 10 ||
        memcmp(f[2], "db_version", 10) != 0) {
        tamis_seterr(x->err, x->errlen, TAMIS_EPARSE,
                     "bayes: database version must be the first line in the backup file");
        return TAMIS_EPARSE;
    }
    int64_t version = perl_num(f[1], fl[1]);
    if (version != 2 && version != 3) {
        tamis_seterr(x->err, x->errlen, TAMIS_EPARSE,
                     "bayes: database version %lld is unsupported, must be version 2 or 3",
                     (long long)version);
        return TAMIS_EPARSE;
    }
    int rc = mdb_drop(b->wtxn, b->tok, 0);
    if (rc == 0)
        rc = mdb_drop(b->wtxn, b->seen, 0);
    if (rc)
        return rc;
    memset(&b->mg, 0, sizeof b->mg);
    b->mg.v[M_VERSION] = DB_VERSION;
    uint64_t nspam = 0, nham = 0, ntok = 0, oldest = (uint64_t)x->now + 100000, newest = 0;
    bool have_spam = false, have_ham = false;
    i = nl ? l0 + 1 : n;
    while (i < n) {
        nl = memchr(d + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - d) : n;
        const char *line = d + i;
        size_t ll = e - i;
        if (ll && line[ll - 1] == '\r')
            ll--;
        i = nl ? e + 1 : n;
        if (ll < 2 || (line[1] != ' ' && line[1] != '\t')) {
            x->rep->skipped++;
            continue;
        }
        if (line[0] == 'v') {
            nf = split_ws(line, ll, f, fl, 3);
            if (nf < 3) {
                x->rep->skipped++;
                continue;
            }
            int64_t v = perl_num(f[1], fl[1]);
            if (v < 0)
                v = 0;
            if (fl[2] == 8 && memcmp(f[2], "num_spam", 8) == 0) {
                nspam = (uint64_t)v;
                have_spam = true;
            } else if (fl[2] == 11 && memcmp(f[2], "num_nonspam", 11) == 0) {
                nham = (uint64_t)v;
                have_ham = true;
            } else if (fl[2] == 16 && memcmp(f[2], "token_mode_tamis", 16) == 0) {
                b->mg.v[M_TOKMODE] = v ? TAMIS_BAYES_TOKMODE_TAMIS : TAMIS_BAYES_TOKMODE_SA;
            } else {
                x->rep->skipped++;
            }
        } else if (line[0] == 't') {
            nf = split_ws(line, ll, f, fl, 5);
            if (nf < 5) {
                x->rep->skipped++;
                continue;
            }
            int64_t s = perl_num(f[1], fl[1]), h = perl_num(f[2], fl[2]);
            int64_t at = perl_num(f[3], fl[3]);
            if (s < 0)
                s = 0;
            if (h < 0)
                h = 0;
            if (s > UINT32_MAX)
                s = UINT32_MAX;
            if (h > UINT32_MAX)
                h = UINT32_MAX;
            if (s == 0 && h == 0) {
                x->rep->skipped++;
                continue;
            }
            if (at > (int64_t)x->now)
                at = (int64_t)x->now;
            if (at < 0)
                at = 0;
            uint8_t key[TAMIS_BAYES_KEY_LEN];
            if (version < 3)
                tamis_bayes_token_key(f[4], fl[4], key);
            else if (unhex(f[4], fl[4], key, TAMIS_BAYES_KEY_LEN) != 0) {
                x->rep->skipped++;
                continue;
            }
            uint8_t v[12];
            tamis__put_u32(v, (uint32_t)s);
            tamis__put_u32(v + 4, (uint32_t)h);
            tamis__put_u32(v + 8, (uint32_t)at);
            MDB_val kv = {TAMIS_BAYES_KEY_LEN, key}, vv = {12, v}, old;
            rc = mdb_get(b->wtxn, b->tok, &kv, &old);
            bool existed = rc == 0;
            if (rc && rc != MDB_NOTFOUND)
                return rc;
            rc = mdb_put(b->wtxn, b->tok, &kv, &vv, 0);
            if (rc)
                return rc;
            if (!existed)
                ntok++;
            if ((uint64_t)at < oldest)
                oldest = (uint64_t)at;
            if ((uint64_t)at > newest)
                newest = (uint64_t)at;
            x->rep->tokens++;
        } else if (line[0] == 's') {
            nf = split_ws(line, ll, f, fl, 3);
            if (nf < 3 || fl[1] != 1 || (f[1][0] != 'h' && f[1][0] != 's') || fl[2] == 0) {
                x->rep->skipped++;
                continue;
            }
            size_t kl = fl[2] > MAX_MSGID ? MAX_MSGID : fl[2];
            MDB_val kv = {kl, (void *)f[2]}, vv = {1, (void *)f[1]};
            rc = mdb_put(b->wtxn, b->seen, &kv, &vv, 0);
            if (rc)
                return rc;
            x->rep->seen++;
        } else {
            x->rep->skipped++;
        }
    }
    if (!have_spam || !have_ham) {
        tamis_seterr(x->err, x->errlen, TAMIS_EPARSE,
                     "bayes: the backup lacks the num_spam or num_nonspam line");
        return TAMIS_EPARSE;
    }
    b->mg.v[M_NSPAM] = nspam;
    b->mg.v[M_NHAM] = nham;
    b->mg.v[M_NTOKENS] = ntok;
    b->mg.v[M_OLDEST] = ntok ? oldest : 0;
    b->mg.v[M_NEWEST] = newest;
    return 0;
}

int tamis_bayes_restore(tamis_bayes_t *b, const char *data, size_t len, time_t now,
                        tamis_bayes_restore_report_t *rep, char *err, size_t errlen)
{
    tamis_bayes_restore_report_t r;
    if (!b || (!data && len))
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: bad restore arguments");
    restore_ctx_t x = {data ? data : "", len, now ? now : time(NULL), rep ? rep : &r, err, errlen};
    return run_write(b, restore_fn, &x, err, errlen);
}
