/*
 * The resolver: c-ares on the caller's libuv loop, with merging of identical queries in flight,
 * a TTL cache, hard per-query deadlines, and the hand-off that lets worker threads ask.
 *
 * How a query flows (loop thread):
 *   tamis_net_query -> cache hit?  yes: the waiter goes on the ready list, the async handle wakes
 *                                   the loop, dispatch() calls back on the next iteration.
 *                   -> in flight?  yes: the waiter joins that entry (merged, no packet).
 *                   -> new entry: hash + deadline FIFO, ares_send.
 *   c-ares answers inside ares_process_fd -> on_answer parses, caches, moves the waiters to the
 *   ready list; user callbacks run only from dispatch(), never inside c-ares, so a callback may
 *   query, cancel or free the resolver.
 *   Every query has the same deadline length, so a FIFO is sorted by deadline and one timer
 *   serves all: an entry past it is detached (waiters get TIMEOUT) and freed when c-ares lets go.
 *
 * Worker threads push operations on a mutex-protected queue and wake the loop with uv_async_send;
 * their batches are reference-counted so that neither side frees what the other still uses.
 */
#include <ares.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"

#define INFLIGHT_BUCKETS 1024
#define MAX_SOCKETS 256
#define BATCH_MAX 1024
#define EDNS_SIZE 1232

typedef struct entry entry_t;
typedef struct centry centry_t;

struct tamis_net_query {
    tamis_net_query_t *prev, *next; /* in an entry's waiters or in the ready list */
    entry_t *e;                     /* NULL once on the ready list */
    tamis_net_t *n;
    tamis_net_cb cb;
    void *arg;
    const tamis_net_answer_t *ans; /* set on the ready list (a reference) */
    bool from_cache;
};

struct entry {
    entry_t *hnext;         /* in-flight hash chain */
    entry_t *dprev, *dnext; /* deadline FIFO */
    tamis_net_t *n;
    tamis_net_query_t *waiters;
    uint64_t hash;
    double deadline;
    tamis_net_type_t type;
    bool detached; /* timed out or resolver closing: only c-ares still refers to it */
    char name[256];
};

struct centry {
    centry_t *hnext, *lprev, *lnext;
    uint64_t hash;
    double expires;
    tamis_net_type_t type;
    const tamis_net_answer_t *ans;
    char name[];
};

typedef struct {
    uv_poll_t h;
    ares_socket_t fd;
    tamis_net_t *n;
} psock_t;

enum { OP_QUERY, OP_CANCEL };
typedef struct op {
    struct op *next;
    int kind;
    tamis_net_batch_t *b;
    size_t slot;
    tamis_net_type_t type;
    char name[256];
} op_t;

typedef struct {
    const tamis_net_answer_t *ans;
    tamis_net_query_t *q; /* loop thread only */
    bool from_cache;
} slot_t;

struct tamis_net_batch {
    tamis_net_t *n;
    uv_mutex_t mu;
    uv_cond_t cv;
    unsigned refs; /* worker's + one per operation the loop has not finished */
    bool given_up;
    size_t count, cap, done;
    slot_t *slots;
    /* What the owner blocks on (under mu; NULL when not blocked): the loop signals only once it
     * holds, not at every answer (each needless wake-up was two context switches) */
    bool (*wait_done)(const struct tamis_net_batch *b, size_t arg);
    size_t wait_arg;
    bool held;                   /* tamis_net_batch_hold: adds wait in held_* for a flush */
    op_t *held_head, *held_tail; /* the owner thread's only: not under mu */
};

struct tamis_net {
    uv_loop_t *loop;
    ares_channel ch;
    bool ch_ok;
    tamis_net_opts_t o;
    double deadline_ms;
    uv_timer_t ares_timer, deadline_timer;
    uv_async_t async;
    int open_handles;
    bool closing, in_dispatch, free_pending, in_drain;

    psock_t *socks[MAX_SOCKETS];
    size_t nsocks;

    entry_t *inflight[INFLIGHT_BUCKETS];
    size_t ninflight;
    entry_t *dhead, *dtail;

    centry_t **cache;
    size_t cache_mask, ncache;
    centry_t *lru_head, *lru_tail;

    tamis_net_query_t *ready_head, *ready_tail;

    uv_mutex_t qmu; /* guards ops_head/ops_tail: the only state other threads touch */
    op_t *ops_head, *ops_tail;

    _Atomic uint64_t st_queries, st_sent, st_merged, st_hits, st_timeouts, st_errors, st_nx,
        st_cancelled, st_cache, st_inflight;
};

static void count(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static uint64_t key_hash(const char *name, tamis_net_type_t type)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)type;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

void tamis_net_opts_default(tamis_net_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 2000;
    o->tries = 2;
    o->cache_entries = 10000;
    o->max_ttl = 86400;
    o->max_neg_ttl = 3600;
    o->max_inflight = 4096;
}

void tamis_net_stats(const tamis_net_t *n, tamis_net_stats_t *s)
{
    tamis_net_t *m = (tamis_net_t *)n; /* atomics are read-only here */
    s->queries = atomic_load_explicit(&m->st_queries, memory_order_relaxed);
    s->sent = atomic_load_explicit(&m->st_sent, memory_order_relaxed);
    s->merged = atomic_load_explicit(&m->st_merged, memory_order_relaxed);
    s->cache_hits = atomic_load_explicit(&m->st_hits, memory_order_relaxed);
    s->timeouts = atomic_load_explicit(&m->st_timeouts, memory_order_relaxed);
    s->errors = atomic_load_explicit(&m->st_errors, memory_order_relaxed);
    s->nxdomain = atomic_load_explicit(&m->st_nx, memory_order_relaxed);
    s->cancelled = atomic_load_explicit(&m->st_cancelled, memory_order_relaxed);
    s->cache_entries = atomic_load_explicit(&m->st_cache, memory_order_relaxed);
    s->inflight = atomic_load_explicit(&m->st_inflight, memory_order_relaxed);
}

/* ---- cache ------------------------------------------------------------------------------------
 */

static void lru_unlink(tamis_net_t *n, centry_t *c)
{
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        n->lru_head = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    else
        n->lru_tail = c->lprev;
    c->lprev = c->lnext = NULL;
}

static void lru_push(tamis_net_t *n, centry_t *c)
{
    c->lnext = n->lru_head;
    c->lprev = NULL;
    if (n->lru_head)
        n->lru_head->lprev = c;
    n->lru_head = c;
    if (!n->lru_tail)
        n->lru_tail = c;
}

static void cache_remove(tamis_net_t *n, centry_t *c)
{
    centry_t **pp = &n->cache[c->hash & n->cache_mask];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = c->hnext;
    lru_unlink(n, c);
    tamis_net_answer_unref(c->ans);
    free(c);
    n->ncache--;
    atomic_store_explicit(&n->st_cache, n->ncache, memory_order_relaxed);
}

static centry_t *cache_find(tamis_net_t *n, const char *name, tamis_net_type_t type, uint64_t h)
{
    if (!n->cache)
        return NULL;
    for (centry_t *c = n->cache[h & n->cache_mask]; c; c = c->hnext) {
        if (c->hash == h && c->type == type && strcmp(c->name, name) == 0) {
            if (c->expires <= tamis_now_ms()) {
                cache_remove(n, c);
                return NULL;
            }
            lru_unlink(n, c);
            lru_push(n, c);
            return c;
        }
    }
    return NULL;
}

/* How long an answer may be kept, in seconds (0 = not at all). */
static uint32_t cache_ttl(const tamis_net_t *n, const tamis_net_answer_t *a)
{
    switch (a->status) {
    case TAMIS_NET_OK:
        if (a->count == 0)
            return a->ttl < n->o.max_neg_ttl ? a->ttl : n->o.max_neg_ttl;
        return a->ttl < n->o.max_ttl ? a->ttl : n->o.max_ttl;
    case TAMIS_NET_NXDOMAIN:
        return a->ttl < n->o.max_neg_ttl ? a->ttl : n->o.max_neg_ttl;
    case TAMIS_NET_SERVFAIL:
    case TAMIS_NET_REFUSED:
        return n->o.servfail_ttl;
    default:
        return 0;
    }
}

static void cache_put(tamis_net_t *n, const char *name, tamis_net_type_t type, uint64_t h,
                      const tamis_net_answer_t *a)
{
    uint32_t ttl = n->cache ? cache_ttl(n, a) : 0;
    if (ttl == 0)
        return;
    centry_t *old = cache_find(n, name, type, h);
    if (old)
        cache_remove(n, old);
    while (n->ncache >= n->o.cache_entries && n->lru_tail)
        cache_remove(n, n->lru_tail);
    size_t len = strlen(name);
    centry_t *c = malloc(sizeof(*c) + len + 1);
    if (!c)
        return; /* the cache is an optimisation: failing to fill it is harmless */
    memcpy(c->name, name, len + 1);
    c->hash = h;
    c->type = type;
    c->expires = tamis_now_ms() + ttl * 1000.0;
    c->ans = tamis_net_answer_ref(a);
    c->hnext = n->cache[h & n->cache_mask];
    n->cache[h & n->cache_mask] = c;
    lru_push(n, c);
    n->ncache++;
    atomic_store_explicit(&n->st_cache, n->ncache, memory_order_relaxed);
}

/* ---- waiters and dispatch -------------------------------------------------------------------- */

static void ready_push(tamis_net_t *n, tamis_net_query_t *q, const tamis_net_answer_t *a)
{
    q->e = NULL;
    q->ans = tamis_net_answer_ref(a);
    q->next = NULL;
    q->prev = n->ready_tail;
    if (n->ready_tail)
        n->ready_tail->next = q;
    else
        n->ready_head = q;
    n->ready_tail = q;
}

static void ready_unlink(tamis_net_t *n, tamis_net_query_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        n->ready_head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        n->ready_tail = q->prev;
}

static void really_free(tamis_net_t *n);

/* Calls back every ready waiter. Runs at the end of each loop entry point, outside c-ares. */
static void dispatch(tamis_net_t *n)
{
    if (n->in_dispatch)
        return;
    n->in_dispatch = true;
    tamis_net_query_t *q;
    while ((q = n->ready_head) != NULL) {
        ready_unlink(n, q);
        const tamis_net_answer_t *a = q->ans;
        q->cb(q->arg, a);
        tamis_net_answer_unref(a);
        free(q);
    }
    n->in_dispatch = false;
    if (n->free_pending) {
        n->free_pending = false;
        really_free(n);
    }
}

/* Moves an entry's waiters to the ready list with answer a and forgets the entry's key. */
static void entry_finish(tamis_net_t *n, entry_t *e, const tamis_net_answer_t *a)
{
    if (!e->detached) {
        entry_t **pp = &n->inflight[e->hash & (INFLIGHT_BUCKETS - 1)];
        while (*pp && *pp != e)
            pp = &(*pp)->hnext;
        if (*pp)
            *pp = e->hnext;
        if (e->dprev)
            e->dprev->dnext = e->dnext;
        else
            n->dhead = e->dnext;
        if (e->dnext)
            e->dnext->dprev = e->dprev;
        else
            n->dtail = e->dprev;
        e->detached = true;
        n->ninflight--;
        atomic_store_explicit(&n->st_inflight, n->ninflight, memory_order_relaxed);
    }
    tamis_net_query_t *q = e->waiters;
    e->waiters = NULL;
    while (q) {
        tamis_net_query_t *next = q->next;
        ready_push(n, q, a);
        q = next;
    }
}

/* ---- c-ares plumbing ------------------------------------------------------------------------- */

static void on_ares_timer(uv_timer_t *t);

static void arm_ares_timer(tamis_net_t *n)
{
    if (n->closing)
        return;
    struct timeval tv;
    if (!ares_timeout(n->ch, NULL, &tv)) {
        uv_timer_stop(&n->ares_timer);
        return;
    }
    uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000 + 1;
    uv_timer_start(&n->ares_timer, on_ares_timer, ms, 0);
}

/* Arms the timer only when it is idle. c-ares 1.18's ares_timeout walks every query in flight,
 * and calling it after each answer was most of the loop's own CPU; a running timer never fires
 * late: a query sent or re-sent now times out after every query already pending, and a timer left
 * early by answered queries fires once for nothing and re-arms at the right time. */
static void arm_ares_timer_idle(tamis_net_t *n)
{
    if (!uv_is_active((uv_handle_t *)&n->ares_timer))
        arm_ares_timer(n);
}

static void on_ares_timer(uv_timer_t *t)
{
    tamis_net_t *n = t->data;
    ares_process_fd(n->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_ares_timer(n);
    dispatch(n);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    psock_t *s = (psock_t *)h;
    tamis_net_t *n = s->n;
    ares_socket_t fd = s->fd;
    /* On an error let c-ares read and write: it notices the failure and closes the socket. */
    if (status < 0)
        ares_process_fd(n->ch, fd, fd);
    else
        ares_process_fd(n->ch, (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
                        (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
    arm_ares_timer_idle(n);
    dispatch(n);
}

static void handle_gone(tamis_net_t *n);

static void on_psock_closed(uv_handle_t *h)
{
    psock_t *s = (psock_t *)h;
    tamis_net_t *n = s->n;
    free(s);
    handle_gone(n);
}

/* c-ares tells which sockets to watch; called before it closes one. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    tamis_net_t *n = data;
    size_t i;
    for (i = 0; i < n->nsocks && n->socks[i]->fd != fd; i++)
        ;
    psock_t *s = i < n->nsocks ? n->socks[i] : NULL;
    if (!readable && !writable) {
        if (!s)
            return;
        uv_poll_stop(&s->h);
        uv_close((uv_handle_t *)&s->h, on_psock_closed);
        n->socks[i] = n->socks[--n->nsocks];
        return;
    }
    if (!s) {
        if (n->nsocks == MAX_SOCKETS || !(s = calloc(1, sizeof(*s))))
            return; /* never watched: the query times out instead */
        if (uv_poll_init_socket(n->loop, &s->h, fd) != 0) {
            free(s);
            return;
        }
        s->fd = fd;
        s->n = n;
        n->socks[n->nsocks++] = s;
        n->open_handles++;
    }
    uv_poll_start(&s->h, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), on_poll);
}

static const tamis_net_answer_t *status_answer(tamis_net_type_t type, int ares_status)
{
    tamis_net_status_t s = ares_status == ARES_ESERVFAIL   ? TAMIS_NET_SERVFAIL
                           : ares_status == ARES_EREFUSED  ? TAMIS_NET_REFUSED
                           : ares_status == ARES_ENOTFOUND ? TAMIS_NET_NXDOMAIN
                           : ares_status == ARES_ETIMEOUT  ? TAMIS_NET_TIMEOUT
                           : ares_status == ARES_EDESTRUCTION || ares_status == ARES_ECANCELLED
                               ? TAMIS_NET_CANCELLED
                               : TAMIS_NET_ERROR;
    return tamis__net_answer_status(type, s, 0);
}

/* c-ares' completion (inside ares_process_fd, ares_send or ares_destroy): no user code here. */
static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    entry_t *e = arg;
    tamis_net_t *n = e->n;
    const tamis_net_answer_t *a = NULL;
    if (status == ARES_SUCCESS && abuf && alen > 0) {
        if (tamis_net_answer_parse(abuf, (size_t)alen, e->type, &a) < 0)
            a = NULL;
    }
    if (!a)
        a = status == ARES_SUCCESS ? tamis__net_answer_status(e->type, TAMIS_NET_ERROR, 0)
                                   : status_answer(e->type, status);
    if (!e->detached) { /* a timed-out entry was counted once already */
        switch (a->status) {
        case TAMIS_NET_NXDOMAIN:
            count(&n->st_nx, 1);
            break;
        case TAMIS_NET_TIMEOUT:
            count(&n->st_timeouts, 1);
            break;
        case TAMIS_NET_SERVFAIL:
        case TAMIS_NET_REFUSED:
        case TAMIS_NET_ERROR:
            count(&n->st_errors, 1);
            break;
        default:
            break;
        }
    }
    if (!n->closing)
        cache_put(n, e->name, e->type, e->hash, a);
    entry_finish(n, e, a);
    tamis_net_answer_unref(a);
    free(e);
}

/* ---- deadlines ---------------------------------------------------------------------------------
 */

static void on_deadline(uv_timer_t *t);

static void arm_deadline(tamis_net_t *n)
{
    if (n->closing)
        return;
    if (!n->dhead) {
        uv_timer_stop(&n->deadline_timer);
        return;
    }
    double wait = n->dhead->deadline - tamis_now_ms();
    uv_timer_start(&n->deadline_timer, on_deadline, wait > 0 ? (uint64_t)wait + 1 : 0, 0);
}

static void on_deadline(uv_timer_t *t)
{
    tamis_net_t *n = t->data;
    double now = tamis_now_ms();
    while (n->dhead && n->dhead->deadline <= now) {
        entry_t *e = n->dhead;
        const tamis_net_answer_t *a = tamis__net_answer_status(e->type, TAMIS_NET_TIMEOUT, 0);
        count(&n->st_timeouts, 1);
        entry_finish(n, e, a); /* e stays allocated: c-ares still holds it */
        tamis_net_answer_unref(a);
    }
    arm_deadline(n);
    dispatch(n);
}

/* ---- queries -----------------------------------------------------------------------------------
 */

static int start_query(tamis_net_t *n, const char *canon, tamis_net_type_t type,
                       tamis_net_query_t *q, char *err, size_t errlen)
{
    uint64_t h = key_hash(canon, type);
    centry_t *c = cache_find(n, canon, type, h);
    if (c) {
        count(&n->st_hits, 1);
        q->from_cache = true;
        ready_push(n, q, c->ans);
        if (!n->in_drain)             /* on_async dispatches right after drain_ops */
            uv_async_send(&n->async); /* deliver on the next iteration, never synchronously */
        return 0;
    }
    for (entry_t *e = n->inflight[h & (INFLIGHT_BUCKETS - 1)]; e; e = e->hnext) {
        if (e->hash == h && e->type == type && strcmp(e->name, canon) == 0) {
            count(&n->st_merged, 1);
            q->e = e;
            q->prev = NULL;
            q->next = e->waiters;
            if (e->waiters)
                e->waiters->prev = q;
            e->waiters = q;
            return 0;
        }
    }
    if (n->ninflight >= n->o.max_inflight)
        return tamis_seterr(err, errlen, TAMIS_ELIMIT, "dns: %zu queries in flight", n->ninflight);
    unsigned char *pkt = NULL;
    int pktlen = 0;
    if (ares_create_query(canon, 1 /* IN */, (int)type, 0, 1, &pkt, &pktlen, EDNS_SIZE) !=
        ARES_SUCCESS)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "dns: cannot encode %s", canon);
    entry_t *e = calloc(1, sizeof(*e));
    if (!e) {
        ares_free_string(pkt);
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "dns: out of memory");
    }
    memcpy(e->name, canon, strlen(canon) + 1); /* canon is at most 253 bytes */
    e->n = n;
    e->type = type;
    e->hash = h;
    e->deadline = tamis_now_ms() + n->deadline_ms;
    e->waiters = q;
    q->e = e;
    q->prev = q->next = NULL;
    e->hnext = n->inflight[h & (INFLIGHT_BUCKETS - 1)];
    n->inflight[h & (INFLIGHT_BUCKETS - 1)] = e;
    e->dprev = n->dtail;
    if (n->dtail)
        n->dtail->dnext = e;
    else
        n->dhead = e;
    n->dtail = e;
    n->ninflight++;
    atomic_store_explicit(&n->st_inflight, n->ninflight, memory_order_relaxed);
    count(&n->st_sent, 1);
    if (n->dhead == e)
        arm_deadline(n);
    /* May call on_answer at once (e.g. no usable server): e must not be touched after. */
    ares_send(n->ch, pkt, pktlen, on_answer, e);
    ares_free_string(pkt);
    if (!n->in_drain) /* drain_ops arms it once for all its queries */
        arm_ares_timer_idle(n);
    if (n->ready_head && !n->in_drain)
        uv_async_send(&n->async);
    return 0;
}

int tamis_net_query(tamis_net_t *n, const char *name, tamis_net_type_t type, tamis_net_cb cb,
                    void *arg, tamis_net_query_t **handle, char *err, size_t errlen)
{
    char canon[256];
    if (handle)
        *handle = NULL;
    if (!n || !cb || n->closing)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "dns: resolver closed or no callback");
    if (!tamis__net_type_ok(type))
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "dns: unsupported type %d", (int)type);
    if (tamis__net_name_canon(name, canon, sizeof(canon)) < 0)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "dns: invalid name");
    tamis_net_query_t *q = calloc(1, sizeof(*q));
    if (!q)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "dns: out of memory");
    q->n = n;
    q->cb = cb;
    q->arg = arg;
    count(&n->st_queries, 1);
    int rc = start_query(n, canon, type, q, err, errlen);
    if (rc < 0) {
        free(q);
        return rc;
    }
    if (handle)
        *handle = q;
    return 0;
}

void tamis_net_cancel(tamis_net_query_t *q)
{
    if (!q)
        return;
    tamis_net_t *n = q->n;
    count(&n->st_cancelled, 1);
    if (q->e) {
        if (q->prev)
            q->prev->next = q->next;
        else
            q->e->waiters = q->next;
        if (q->next)
            q->next->prev = q->prev;
    } else {
        ready_unlink(n, q);
        tamis_net_answer_unref(q->ans);
    }
    free(q);
}

/* ---- batches ------------------------------------------------------------------------------------
 */

static void batch_release(tamis_net_batch_t *b)
{
    for (size_t i = 0; i < b->count; i++)
        tamis_net_answer_unref(b->slots[i].ans);
    free(b->slots);
    uv_mutex_destroy(&b->mu);
    uv_cond_destroy(&b->cv);
    free(b);
}

/* Drops one reference; the caller holds b->mu, which this releases. */
static void batch_unref_unlock(tamis_net_batch_t *b)
{
    bool last = --b->refs == 0;
    uv_mutex_unlock(&b->mu);
    if (last)
        batch_release(b);
}

typedef struct {
    tamis_net_batch_t *b;
    size_t slot;
} bwait_t;

/* Wakes the blocked owner if what it waits for now holds (b->mu held). */
static void wake_owner(tamis_net_batch_t *b)
{
    if (b->wait_done && b->wait_done(b, b->wait_arg))
        uv_cond_signal(&b->cv);
}

/* Loop thread: a batch slot's answer. */
static void on_batch_answer(void *arg, const tamis_net_answer_t *a)
{
    tamis_net_query_t *q = arg; /* the waiter itself: see op_query */
    bwait_t *w = (bwait_t *)(q + 1);
    tamis_net_batch_t *b = w->b;
    uv_mutex_lock(&b->mu);
    slot_t *s = &b->slots[w->slot];
    s->q = NULL;
    s->ans = tamis_net_answer_ref(a);
    s->from_cache = q->from_cache;
    b->done++;
    wake_owner(b);
    batch_unref_unlock(b);
}

/* Completes a slot that never reached c-ares (invalid name, limit, closing). */
static void slot_fail(tamis_net_batch_t *b, size_t slot, tamis_net_type_t type,
                      tamis_net_status_t st)
{
    uv_mutex_lock(&b->mu);
    b->slots[slot].ans = tamis__net_answer_status(type, st, 0);
    b->done++;
    wake_owner(b);
    batch_unref_unlock(b);
}

static void op_query(tamis_net_t *n, op_t *op)
{
    tamis_net_batch_t *b = op->b;
    uv_mutex_lock(&b->mu);
    bool gone = b->given_up;
    uv_mutex_unlock(&b->mu);
    if (gone || n->closing) {
        slot_fail(b, op->slot, op->type, TAMIS_NET_CANCELLED);
        return;
    }
    /* The waiter carries its batch slot after it, so the callback needs no other allocation. */
    tamis_net_query_t *q = calloc(1, sizeof(*q) + sizeof(bwait_t));
    char canon[256];
    if (!q || tamis__net_name_canon(op->name, canon, sizeof(canon)) < 0) {
        free(q);
        slot_fail(b, op->slot, op->type, TAMIS_NET_ERROR);
        return;
    }
    bwait_t *w = (bwait_t *)(q + 1);
    w->b = b;
    w->slot = op->slot;
    q->n = n;
    q->cb = on_batch_answer;
    q->arg = q;
    count(&n->st_queries, 1);
    uv_mutex_lock(&b->mu);
    b->slots[op->slot].q = q;
    uv_mutex_unlock(&b->mu);
    if (start_query(n, canon, op->type, q, NULL, 0) < 0) {
        uv_mutex_lock(&b->mu);
        b->slots[op->slot].q = NULL;
        uv_mutex_unlock(&b->mu);
        free(q);
        slot_fail(b, op->slot, op->type, TAMIS_NET_ERROR);
    }
}

static void op_cancel(tamis_net_t *n, op_t *op)
{
    (void)n;
    tamis_net_batch_t *b = op->b;
    uv_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->count; i++) {
        if (b->slots[i].q) {
            tamis_net_cancel(b->slots[i].q);
            b->slots[i].q = NULL;
            b->refs--; /* the query's reference; the worker's and ours keep refs > 0 */
        }
    }
    batch_unref_unlock(b);
}

static void drain_ops(tamis_net_t *n)
{
    uv_mutex_lock(&n->qmu);
    op_t *op = n->ops_head;
    n->ops_head = n->ops_tail = NULL;
    uv_mutex_unlock(&n->qmu);
    bool sent = op != NULL;
    n->in_drain = true;
    while (op) {
        op_t *next = op->next;
        if (op->kind == OP_QUERY)
            op_query(n, op);
        else
            op_cancel(n, op);
        free(op);
        op = next;
    }
    n->in_drain = false;
    if (sent)
        arm_ares_timer_idle(n);
}

static void on_async(uv_async_t *h)
{
    tamis_net_t *n = h->data;
    drain_ops(n);
    dispatch(n);
}

/* Queues the chain head..tail (linked by next) for the loop and wakes it once. */
static int push_ops(tamis_net_t *n, op_t *head, op_t *tail)
{
    tail->next = NULL;
    uv_mutex_lock(&n->qmu);
    if (n->ops_tail)
        n->ops_tail->next = head;
    else
        n->ops_head = head;
    n->ops_tail = tail;
    uv_mutex_unlock(&n->qmu);
    return uv_async_send(&n->async) == 0 ? 0 : TAMIS_EIO;
}

static int push_op(tamis_net_t *n, op_t *op)
{
    return push_ops(n, op, op);
}

tamis_net_batch_t *tamis_net_batch_new(tamis_net_t *n)
{
    if (!n)
        return NULL;
    tamis_net_batch_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (uv_mutex_init(&b->mu) != 0) {
        free(b);
        return NULL;
    }
    if (uv_cond_init(&b->cv) != 0) {
        uv_mutex_destroy(&b->mu);
        free(b);
        return NULL;
    }
    b->n = n;
    b->refs = 1;
    return b;
}

int tamis_net_batch_add(tamis_net_batch_t *b, const char *name, tamis_net_type_t type,
                        size_t *index)
{
    char canon[256];
    if (!b || !tamis__net_type_ok(type) || tamis__net_name_canon(name, canon, sizeof(canon)) < 0)
        return TAMIS_EINVAL;
    op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return TAMIS_ENOMEM;
    uv_mutex_lock(&b->mu);
    if (b->count == BATCH_MAX) {
        uv_mutex_unlock(&b->mu);
        free(op);
        return TAMIS_ELIMIT;
    }
    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        slot_t *s = realloc(b->slots, cap * sizeof(*s));
        if (!s) {
            uv_mutex_unlock(&b->mu);
            free(op);
            return TAMIS_ENOMEM;
        }
        b->slots = s;
        b->cap = cap;
    }
    size_t i = b->count++;
    memset(&b->slots[i], 0, sizeof(b->slots[i]));
    b->refs++;
    uv_mutex_unlock(&b->mu);
    op->kind = OP_QUERY;
    op->b = b;
    op->slot = i;
    op->type = type;
    memcpy(op->name, canon, sizeof(canon));
    if (index)
        *index = i;
    if (b->held) {
        op->next = NULL;
        if (b->held_tail)
            b->held_tail->next = op;
        else
            b->held_head = op;
        b->held_tail = op;
        return 0;
    }
    /* The op now belongs to the loop, which completes the slot even if the wake-up failed. */
    return push_op(b->n, op);
}

void tamis_net_batch_hold(tamis_net_batch_t *b)
{
    if (b)
        b->held = true;
}

int tamis_net_batch_flush(tamis_net_batch_t *b)
{
    if (!b || !b->held_head)
        return 0;
    op_t *head = b->held_head, *tail = b->held_tail;
    b->held_head = b->held_tail = NULL;
    return push_ops(b->n, head, tail);
}

size_t tamis_net_batch_count(const tamis_net_batch_t *b)
{
    if (!b)
        return 0;
    tamis_net_batch_t *m = (tamis_net_batch_t *)b;
    uv_mutex_lock(&m->mu);
    size_t c = m->count;
    uv_mutex_unlock(&m->mu);
    return c;
}

/* Blocks until done(b) holds or deadline_ms passes (b->mu held on entry and exit); the wait hooks
 * run once around the blocking part, outside the lock. */
static void batch_block(tamis_net_batch_t *b, double deadline_ms,
                        bool (*done)(const tamis_net_batch_t *, size_t), size_t arg)
{
    const tamis_net_opts_t *o = &b->n->o;
    bool hooked = false;
    while (!done(b, arg)) {
        double left = deadline_ms - tamis_now_ms();
        if (left <= 0)
            break;
        if (!hooked && o->wait_begin && o->wait_end) { /* outside the lock: it may block */
            hooked = true;
            uv_mutex_unlock(&b->mu);
            o->wait_begin(o->wait_arg);
            uv_mutex_lock(&b->mu);
            continue;
        }
        b->wait_done = done;
        b->wait_arg = arg;
        uv_cond_timedwait(&b->cv, &b->mu, (uint64_t)(left * 1e6) + 1);
        b->wait_done = NULL;
    }
    if (hooked) {
        uv_mutex_unlock(&b->mu);
        o->wait_end(o->wait_arg);
        uv_mutex_lock(&b->mu);
    }
}

static bool enough_done(const tamis_net_batch_t *b, size_t want)
{
    return b->done >= want;
}

static bool slot_done(const tamis_net_batch_t *b, size_t i)
{
    return i >= b->count || b->slots[i].ans;
}

size_t tamis_net_batch_wait(tamis_net_batch_t *b, double deadline_ms, size_t want)
{
    if (!b)
        return 0;
    tamis_net_batch_flush(b);
    uv_mutex_lock(&b->mu);
    if (want == 0 || want > b->count)
        want = b->count;
    batch_block(b, deadline_ms, enough_done, want);
    size_t done = b->done;
    uv_mutex_unlock(&b->mu);
    return done;
}

const tamis_net_answer_t *tamis_net_batch_wait_slot(tamis_net_batch_t *b, size_t i,
                                                    double deadline_ms)
{
    if (!b)
        return NULL;
    tamis_net_batch_flush(b);
    uv_mutex_lock(&b->mu);
    batch_block(b, deadline_ms, slot_done, i);
    const tamis_net_answer_t *a = i < b->count ? b->slots[i].ans : NULL;
    uv_mutex_unlock(&b->mu);
    return a;
}

static void on_run_timer(uv_timer_t *t)
{
    (void)t;
}

size_t tamis_net_batch_run(tamis_net_batch_t *b, uv_loop_t *loop, double deadline_ms)
{
    if (!b || !loop)
        return 0;
    tamis_net_batch_flush(b);
    uv_timer_t t;
    uv_timer_init(loop, &t);
    for (;;) {
        uv_mutex_lock(&b->mu);
        bool all = b->done == b->count;
        uv_mutex_unlock(&b->mu);
        double left = deadline_ms - tamis_now_ms();
        if (all || left <= 0)
            break;
        /* The timer only makes sure uv_run returns by the deadline. */
        uv_timer_start(&t, on_run_timer, (uint64_t)left + 1, 0);
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* runs the close of t before it leaves the stack */
    uv_mutex_lock(&b->mu);
    size_t done = b->done;
    uv_mutex_unlock(&b->mu);
    return done;
}

const tamis_net_answer_t *tamis_net_batch_answer(tamis_net_batch_t *b, size_t i)
{
    if (!b)
        return NULL;
    uv_mutex_lock(&b->mu);
    const tamis_net_answer_t *a = i < b->count ? b->slots[i].ans : NULL;
    uv_mutex_unlock(&b->mu);
    return a;
}

bool tamis_net_batch_from_cache(tamis_net_batch_t *b, size_t i)
{
    if (!b)
        return false;
    uv_mutex_lock(&b->mu);
    bool c = i < b->count && b->slots[i].ans && b->slots[i].from_cache;
    uv_mutex_unlock(&b->mu);
    return c;
}

void tamis_net_batch_free(tamis_net_batch_t *b)
{
    if (!b)
        return;
    tamis_net_batch_flush(b); /* held ops hold references: the loop completes (cancels) them */
    uv_mutex_lock(&b->mu);
    b->given_up = true;
    bool pending = b->done < b->count;
    op_t *op = NULL;
    if (pending && (op = calloc(1, sizeof(*op))) != NULL)
        b->refs++;
    uv_mutex_unlock(&b->mu);
    if (op) {
        op->kind = OP_CANCEL;
        op->b = b;
        push_op(b->n, op);
    }
    /* Without memory for the cancel op the pending queries simply complete into the batch,
     * which goes when the last one does. */
    uv_mutex_lock(&b->mu);
    batch_unref_unlock(b);
}

/* ---- life cycle --------------------------------------------------------------------------------
 */

static void handle_gone(tamis_net_t *n)
{
    if (--n->open_handles > 0)
        return;
    while (n->lru_head)
        cache_remove(n, n->lru_head);
    free(n->cache);
    uv_mutex_destroy(&n->qmu);
    free(n);
}

static void on_handle_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void really_free(tamis_net_t *n)
{
    n->closing = true;
    drain_ops(n); /* batch queries not yet started complete as CANCELLED */
    /* Every waiter, in flight or ready, is called back with CANCELLED. */
    const tamis_net_answer_t *c = tamis__net_answer_status(TAMIS_NET_A, TAMIS_NET_CANCELLED, 0);
    for (size_t i = 0; i < INFLIGHT_BUCKETS; i++) {
        while (n->inflight[i])
            entry_finish(n, n->inflight[i], c);
    }
    tamis_net_answer_unref(c);
    dispatch(n);
    if (n->ch_ok)
        ares_destroy(n->ch); /* frees the entries (on_answer) and reports sockets closed */
    n->ch_ok = false;
    for (size_t i = 0; i < n->nsocks; i++) {
        uv_poll_stop(&n->socks[i]->h);
        uv_close((uv_handle_t *)&n->socks[i]->h, on_psock_closed);
    }
    n->nsocks = 0;
    uv_close((uv_handle_t *)&n->ares_timer, on_handle_closed);
    uv_close((uv_handle_t *)&n->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&n->async, on_handle_closed);
}

void tamis_net_free(tamis_net_t *n)
{
    if (!n || n->closing || n->free_pending)
        return;
    if (n->in_dispatch) {
        n->free_pending = true; /* finish the callbacks first */
        return;
    }
    really_free(n);
}

/* The total time c-ares 1.18 may spend on a query: each round over the servers doubles the
 * per-try timeout. */
static double computed_deadline(const tamis_net_opts_t *o, int nservers)
{
    double total = 0;
    if (nservers < 1)
        nservers = 1;
    for (unsigned i = 0; i < o->tries * (unsigned)nservers && total < 60000; i++)
        total += (double)o->timeout_ms * (double)(1u << ((i / (unsigned)nservers) & 15));
    return total < 60000 ? total : 60000;
}

int tamis_net_new(uv_loop_t *loop, const tamis_net_opts_t *opts, tamis_net_t **out, char *err,
                  size_t errlen)
{
    if (!out || !loop)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "dns: no loop");
    *out = NULL;
    tamis_net_opts_t o;
    if (opts)
        o = *opts;
    else
        tamis_net_opts_default(&o);
    if (o.timeout_ms == 0 || o.timeout_ms > 60000 || o.tries == 0 || o.tries > 10 ||
        o.max_inflight == 0 || o.cache_entries > 10000000 || o.deadline_ms > 600000)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "dns: option out of range");
    /* ares_library_init is only needed on Windows; skipping it keeps the library free of
     * global state. */

    tamis_net_t *n = calloc(1, sizeof(*n));
    if (!n)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "dns: out of memory");
    n->loop = loop;
    n->o = o;
    if (n->o.cache_entries) {
        size_t buckets = 16;
        while (buckets < n->o.cache_entries && buckets < (1u << 24))
            buckets <<= 1;
        n->cache = calloc(buckets, sizeof(*n->cache));
        if (!n->cache) {
            free(n);
            return tamis_seterr(err, errlen, TAMIS_ENOMEM, "dns: out of memory");
        }
        n->cache_mask = buckets - 1;
    }
    struct ares_options ao;
    memset(&ao, 0, sizeof(ao));
    /* NOCHECKRESP: c-ares would turn REFUSED/SERVFAIL into "could not contact servers" after
     * skipping the server; we want the list's real rcode, so we read it from the answer. */
    ao.flags = ARES_FLAG_EDNS | ARES_FLAG_NOSEARCH | ARES_FLAG_NOCHECKRESP;
    ao.timeout = (int)n->o.timeout_ms;
    ao.tries = (int)n->o.tries;
    ao.sock_state_cb = on_sock_state;
    ao.sock_state_cb_data = n;
    ao.ednspsz = EDNS_SIZE;
    /* Hundreds of answers can land between two loop turns at high concurrency; a datagram the
     * default buffer drops costs a whole retry timeout. (The kernel caps it at rmem_max.) */
    ao.socket_receive_buffer_size = 1 << 20;
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB |
               ARES_OPT_EDNSPSZ | ARES_OPT_SOCK_RCVBUF;
    int rc = ares_init_options(&n->ch, &ao, mask);
    if (rc != ARES_SUCCESS) {
        free(n->cache);
        free(n);
        return tamis_seterr(err, errlen, TAMIS_EIO, "dns: c-ares init: %s", ares_strerror(rc));
    }
    if (n->o.servers && *n->o.servers) {
        rc = ares_set_servers_ports_csv(n->ch, n->o.servers);
        if (rc != ARES_SUCCESS) {
            ares_destroy(n->ch);
            free(n->cache);
            free(n);
            return tamis_seterr(err, errlen, TAMIS_ECONFIG, "dns: bad dns_server list '%s': %s",
                                opts->servers, ares_strerror(rc));
        }
    }
    n->o.servers = NULL; /* the caller's string is not kept */
    struct ares_addr_port_node *servers = NULL;
    int nservers = 0;
    if (ares_get_servers_ports(n->ch, &servers) == ARES_SUCCESS) {
        for (struct ares_addr_port_node *s = servers; s; s = s->next)
            nservers++;
        ares_free_data(servers);
    }
    n->deadline_ms = n->o.deadline_ms ? n->o.deadline_ms : computed_deadline(&n->o, nservers);
    if (uv_mutex_init(&n->qmu) != 0) {
        ares_destroy(n->ch);
        free(n->cache);
        free(n);
        return tamis_seterr(err, errlen, TAMIS_EIO, "dns: uv_mutex_init failed");
    }
    n->ch_ok = true;
    uv_timer_init(loop, &n->ares_timer);
    uv_timer_init(loop, &n->deadline_timer);
    if (uv_async_init(loop, &n->async, on_async) != 0) {
        /* Unlikely (eventfd exhausted); close what exists so memory goes in close callbacks. */
        n->ares_timer.data = n->deadline_timer.data = n;
        n->open_handles = 2;
        ares_destroy(n->ch);
        n->ch_ok = false;
        n->closing = true;
        uv_close((uv_handle_t *)&n->ares_timer, on_handle_closed);
        uv_close((uv_handle_t *)&n->deadline_timer, on_handle_closed);
        return tamis_seterr(err, errlen, TAMIS_EIO, "dns: uv_async_init failed");
    }
    n->ares_timer.data = n->deadline_timer.data = n->async.data = n;
    n->open_handles += 3;
    *out = n;
    return 0;
}
