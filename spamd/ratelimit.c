/*
 * The pure parts of the abuse limits (limits.c drives them from the loop): the per-address table
 * and the transfer-rate rule. Nothing here reads a clock, logs or allocates after init, so the
 * unit tests drive it with made-up times.
 *
 * The table is open addressing with a bounded probe window and no deletion: a slot, once used,
 * is only ever replaced in place, so a lookup may stop at the first empty slot. When a window is
 * full the least useful entry is replaced (no connection and no ban, least recently touched;
 * a ban only as a last resort). An address whose window holds only live connections is not
 * tracked at all: it is admitted, counted in the total only (fail open, never wrongly refused).
 *
 * Rates are leaky buckets: each event adds 1, the level drains at the allowed rate, and the
 * limit trips when the level goes over the burst (10 s worth of connections; a minute's worth of
 * failures).
 */
#include "tamisd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define CONN_BURST_S 10.0
#define FAIL_WINDOW_S 60.0

int tamisd_iptable_init(tamisd_iptable_t *t, size_t cap, const tamisd_limits_cfg_t *cfg)
{
    memset(t, 0, sizeof *t);
    size_t n = 16;
    while (n < cap)
        n <<= 1;
    t->slots = calloc(n, sizeof *t->slots);
    if (!t->slots)
        return -1;
    t->cap = n;
    t->per_ip = cfg->max_conn_per_ip;
    t->conn_rate = cfg->max_conn_rate;
    t->failures = cfg->max_failures;
    t->ban_ms = cfg->ban_time * 1000.0;
    return 0;
}

void tamisd_iptable_free(tamisd_iptable_t *t)
{
    free(t->slots);
    memset(t, 0, sizeof *t);
}

void tamisd_ipkey(const struct sockaddr *sa, tamisd_ipkey_t *k)
{
    memset(k, 0, sizeof *k);
    if (!sa)
        return;
    if (sa->sa_family == AF_INET) {
        k->family = AF_INET;
        memcpy(k->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) { /* one client, whichever listener it came through */
            k->family = AF_INET;
            memcpy(k->addr, a->s6_addr + 12, 4);
        } else { /* per /64: one client usually gets a whole /64 and could rotate inside it */
            k->family = AF_INET6;
            memcpy(k->addr, a->s6_addr, 8);
        }
    }
}

void tamisd_ipkey_str(const tamisd_ipkey_t *k, char *buf, size_t len)
{
    if (!k->family || !inet_ntop(k->family, k->addr, buf, (socklen_t)len)) {
        snprintf(buf, len, "%s", k->family ? "?" : "local");
        return;
    }
    size_t n = strlen(buf);
    if (k->family == AF_INET6 && n + 4 <= len)
        memcpy(buf + n, "/64", 4);
}

static bool key_eq(const tamisd_ipkey_t *a, const tamisd_ipkey_t *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
}

static size_t key_hash(const tamisd_ipkey_t *k)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)k->family; /* FNV-1a */
    for (size_t i = 0; i < 16; i++)
        h = (h ^ k->addr[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29));
}

static tamisd_ipentry_t *lookup(const tamisd_iptable_t *t, const tamisd_ipkey_t *k)
{
    if (!t->slots || !k->family)
        return NULL;
    size_t h = key_hash(k);
    for (size_t i = 0; i < TAMISD_IPTABLE_PROBE && i < t->cap; i++) {
        tamisd_ipentry_t *e = &t->slots[(h + i) & (t->cap - 1)];
        if (!e->key.family)
            return NULL;
        if (key_eq(&e->key, k))
            return e;
    }
    return NULL;
}

const tamisd_ipentry_t *tamisd_iptable_find(const tamisd_iptable_t *t, const tamisd_ipkey_t *k)
{
    return lookup(t, k);
}

/* The entry for k, created (possibly replacing another) if needed; NULL = not tracked. */
static tamisd_ipentry_t *get(tamisd_iptable_t *t, const tamisd_ipkey_t *k, double now)
{
    if (!t->slots || !k->family)
        return NULL;
    size_t h = key_hash(k);
    tamisd_ipentry_t *idle = NULL, *banned = NULL;
    for (size_t i = 0; i < TAMISD_IPTABLE_PROBE && i < t->cap; i++) {
        tamisd_ipentry_t *e = &t->slots[(h + i) & (t->cap - 1)];
        if (key_eq(&e->key, k))
            return e;
        if (!e->key.family) {
            idle = e;
            break;
        }
        if (e->conns)
            continue;
        if (e->ban_until) {
            if (!banned || e->ban_until < banned->ban_until)
                banned = e;
        } else if (!idle || e->last_ms < idle->last_ms) {
            idle = e;
        }
    }
    tamisd_ipentry_t *e = idle ? idle : banned;
    if (!e)
        return NULL;
    if (e->ban_until)
        t->banned--; /* the table is full of bans: the oldest one ends early */
    memset(e, 0, sizeof *e);
    e->key = *k;
    e->last_ms = now;
    return e;
}

static void leak(const tamisd_iptable_t *t, tamisd_ipentry_t *e, double now)
{
    double dt = now - e->last_ms;
    if (dt > 0) {
        e->conn_level -= dt * t->conn_rate / 1000.0;
        e->fail_level -= dt * t->failures / (FAIL_WINDOW_S * 1000.0);
        if (e->conn_level < 0)
            e->conn_level = 0;
        if (e->fail_level < 0)
            e->fail_level = 0;
    }
    e->last_ms = now;
}

static bool ban(tamisd_iptable_t *t, tamisd_ipentry_t *e, double now)
{
    if (t->ban_ms <= 0)
        return false;
    e->ban_start = now;
    e->ban_until = now + t->ban_ms;
    t->banned++;
    return true;
}

tamisd_admit_t tamisd_iptable_connect(tamisd_iptable_t *t, const tamisd_ipkey_t *k, double now,
                                      bool *counted)
{
    *counted = false;
    tamisd_ipentry_t *e = get(t, k, now);
    if (!e)
        return TAMISD_ADMIT_OK;
    if (e->ban_until)
        return TAMISD_ADMIT_BANNED;
    leak(t, e, now);
    if (t->conn_rate) {
        e->conn_level += 1;
        if (e->conn_level > t->conn_rate * CONN_BURST_S) {
            e->conn_level = t->conn_rate * CONN_BURST_S; /* stays full while the flood lasts */
            return ban(t, e, now) ? TAMISD_ADMIT_BAN_START : TAMISD_ADMIT_RATE;
        }
    }
    if (t->per_ip && e->conns >= t->per_ip)
        return TAMISD_ADMIT_PER_IP;
    e->conns++;
    *counted = true;
    return TAMISD_ADMIT_OK;
}

void tamisd_iptable_disconnect(tamisd_iptable_t *t, const tamisd_ipkey_t *k)
{
    tamisd_ipentry_t *e = lookup(t, k);
    if (e && e->conns)
        e->conns--;
}

bool tamisd_iptable_fail(tamisd_iptable_t *t, const tamisd_ipkey_t *k, double now)
{
    if (!t->failures)
        return false;
    tamisd_ipentry_t *e = get(t, k, now);
    if (!e || e->ban_until)
        return false;
    leak(t, e, now);
    e->fail_level += 1;
    if (e->fail_level <= t->failures)
        return false;
    e->fail_level = 0;
    return ban(t, e, now);
}

size_t tamisd_iptable_expire(tamisd_iptable_t *t, double now,
                             void (*cb)(const tamisd_ipkey_t *k, double banned_ms, void *arg),
                             void *arg)
{
    size_t n = 0;
    for (size_t i = 0; t->banned && i < t->cap; i++) {
        tamisd_ipentry_t *e = &t->slots[i];
        if (!e->ban_until || now < e->ban_until)
            continue;
        double banned_ms = now - e->ban_start;
        e->ban_until = e->ban_start = 0;
        e->conn_level = e->fail_level = 0; /* a fresh start */
        e->last_ms = now;
        t->banned--;
        n++;
        if (cb)
            cb(&e->key, banned_ms, arg);
    }
    return n;
}

/* ---- the transfer-rate rule ------------------------------------------------------------------ */

void tamisd_rate_begin(tamisd_rate_t *r, double now)
{
    memset(r, 0, sizeof *r);
    r->start = r->win_start = r->last_rx = now;
}

void tamisd_rate_feed(tamisd_rate_t *r, size_t n, double now)
{
    r->win_bytes += n;
    if (n)
        r->last_rx = now;
}

int tamisd_rate_check(tamisd_rate_t *r, double now, const tamisd_limits_cfg_t *cfg, double *rate)
{
    if (cfg->timeout_read && now - r->last_rx >= cfg->timeout_read * 1000.0)
        return 1;
    double win = cfg->min_rate_window * 1000.0;
    if (!cfg->min_rate || win <= 0 || now - r->win_start < win)
        return 0;
    double rt = (double)r->win_bytes * 1000.0 / (now - r->win_start);
    if (rate)
        *rate = rt;
    /* only whole windows are judged, and none that ends inside the grace period */
    if (now - r->start >= cfg->min_rate_grace * 1000.0 && rt < cfg->min_rate)
        return 2;
    r->win_start = now;
    r->win_bytes = 0;
    return 0;
}
