/*
 * tamisd's resolver for the network tests (docs/dns.md): one tamis_net_t on the server's loop,
 * shared by every scan (the worker threads use lib/net's batch API, which is thread-safe).
 *
 * A reload may change the dns_server list while scans still hold batches on the old resolver,
 * so the resolver is wrapped in a use count kept on the loop thread: each scan job acquires the
 * current one when it is queued and releases it when its result is back on the loop; a retired
 * resolver is freed when its last user is gone. Every function here runs on the loop thread,
 * except tamisd_dns_warn_blocked (any thread).
 */
#include "tamisd.h"

#include "tamis/net.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tamisd_dns {
    tamis_net_t *net;
    char *servers; /* the dns_server list it was built from ("" = resolv.conf) */
    double rbl_timeout;
    size_t users;
    bool retired;
};

const char *tamisd_dns_servers_of(const tamis_conf_t *c)
{
    return c && c->dns_servers ? c->dns_servers : "";
}

int tamisd_dns_start(uv_loop_t *loop, const tamis_conf_t *c, tamisd_dns_t **out)
{
    *out = NULL;
    tamisd_dns_t *d = calloc(1, sizeof *d);
    const char *servers = tamisd_dns_servers_of(c);
    if (!d || !(d->servers = strdup(servers))) {
        free(d);
        return TAMIS_ENOMEM;
    }
    tamis_net_opts_t o;
    tamis_net_opts_default(&o);
    o.servers = *servers ? servers : NULL;
    o.wait_begin = tamisd_cpu_release; /* a scan waiting for answers computes nothing */
    o.wait_end = tamisd_cpu_acquire;
    /* No query outlives the scans' wait (rbl_timeout): it ends as a timeout then, so the
     * counters and the in-flight table reflect what the scans saw; the first try gets at most
     * half of it, leaving room for a retry. */
    d->rbl_timeout = c ? c->rbl_timeout : 15;
    if (d->rbl_timeout > 0 && d->rbl_timeout < 3600) {
        unsigned ms = (unsigned)(d->rbl_timeout * 1000);
        o.deadline_ms = ms ? ms : 1;
        if (o.timeout_ms > ms / 2)
            o.timeout_ms = ms / 2 ? ms / 2 : 1;
    }
    char err[256] = "";
    int rc = tamis_net_new(loop, &o, &d->net, err, sizeof err);
    if (rc != 0) {
        tamisd_log(TAMISD_LOG_ERR, "dns: cannot start the resolver (%s): %s; network tests off",
                   *servers ? servers : "/etc/resolv.conf", err);
        free(d->servers);
        free(d);
        return rc;
    }
    tamisd_log(TAMISD_LOG_INFO, "dns: resolver on %s, rbl_timeout %gs, %u queries per message",
               *servers ? servers : "/etc/resolv.conf", c ? c->rbl_timeout : 15.0,
               c ? c->dns_max_queries : 256);
    *out = d;
    return 0;
}

tamis_net_t *tamisd_dns_net(const tamisd_dns_t *d)
{
    return d ? d->net : NULL;
}

bool tamisd_dns_same(const tamisd_dns_t *d, const tamis_conf_t *c)
{
    return d && strcmp(d->servers, tamisd_dns_servers_of(c)) == 0 &&
           d->rbl_timeout == (c ? c->rbl_timeout : 15);
}

void tamisd_dns_stats_add(const tamisd_dns_t *d, tamis_net_stats_t *acc)
{
    if (!d)
        return;
    tamis_net_stats_t s;
    tamis_net_stats(d->net, &s);
    acc->queries += s.queries;
    acc->sent += s.sent;
    acc->merged += s.merged;
    acc->cache_hits += s.cache_hits;
    acc->timeouts += s.timeouts;
    acc->errors += s.errors;
    acc->nxdomain += s.nxdomain;
    acc->cancelled += s.cancelled;
}

#define ROUND_BINS 5 /* 0, 1, 2, 3, 4 or more */
static _Atomic unsigned long rounds_hist[ROUND_BINS], auth_hist[ROUND_BINS];

void tamisd_dns_note_rounds(unsigned rounds, unsigned auth_rounds)
{
    rounds_hist[rounds < ROUND_BINS ? rounds : ROUND_BINS - 1]++;
    auth_hist[auth_rounds < ROUND_BINS ? auth_rounds : ROUND_BINS - 1]++;
}

void tamisd_dns_log_stats(const tamisd_dns_t *d, const tamis_net_stats_t *base)
{
    tamis_net_stats_t s;
    memset(&s, 0, sizeof s);
    if (base)
        s = *base;
    tamisd_dns_stats_add(d, &s);
    tamisd_log(TAMISD_LOG_INFO,
               "dns stats: queries=%llu sent=%llu merged=%llu cache_hits=%llu timeouts=%llu "
               "errors=%llu nxdomain=%llu",
               (unsigned long long)s.queries, (unsigned long long)s.sent,
               (unsigned long long)s.merged, (unsigned long long)s.cache_hits,
               (unsigned long long)s.timeouts, (unsigned long long)s.errors,
               (unsigned long long)s.nxdomain);
    tamisd_log(TAMISD_LOG_INFO,
               "dns rounds per message: dnsbl 0:%lu 1:%lu 2:%lu 3:%lu 4+:%lu; auth 0:%lu "
               "1:%lu 2:%lu 3:%lu 4+:%lu",
               rounds_hist[0], rounds_hist[1], rounds_hist[2], rounds_hist[3], rounds_hist[4],
               auth_hist[0], auth_hist[1], auth_hist[2], auth_hist[3], auth_hist[4]);
}

static void dns_free(tamisd_dns_t *d)
{
    tamis_net_free(d->net); /* the handles close on the next loop iterations */
    free(d->servers);
    free(d);
}

tamisd_dns_t *tamisd_dns_acquire(tamisd_dns_t *d)
{
    if (d)
        d->users++;
    return d;
}

void tamisd_dns_release(tamisd_dns_t *d)
{
    if (!d)
        return;
    d->users--;
    if (d->retired && !d->users)
        dns_free(d);
}

void tamisd_dns_retire(tamisd_dns_t *d)
{
    if (!d)
        return;
    d->retired = true;
    if (!d->users)
        dns_free(d);
}

/* ---- blocked lists ---------------------------------------------------------------------------
 * A list that refuses us (public resolver, over quota) answers every message the same way: one
 * warning per zone per interval is enough. */

#define BLOCK_ZONES 32
#define BLOCK_INTERVAL 300 /* seconds: SpamAssassin's dns_block_time */

static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char zone[128];
    time_t last;
} blocked[BLOCK_ZONES];

void tamisd_dns_warn_blocked(const char *zones)
{
    time_t now = time(NULL);
    for (const char *p = zones; p && *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (!n || n >= sizeof blocked[0].zone) {
            p += n;
            continue;
        }
        bool say = false;
        pthread_mutex_lock(&block_mu);
        size_t slot = 0;
        for (size_t i = 0; i < BLOCK_ZONES; i++) {
            if (strlen(blocked[i].zone) == n && strncmp(blocked[i].zone, p, n) == 0) {
                slot = i;
                break;
            }
            if (blocked[i].last < blocked[slot].last)
                slot = i; /* the oldest entry, reused if the zone is new */
        }
        if (strncmp(blocked[slot].zone, p, n) != 0 || blocked[slot].zone[n]) {
            memcpy(blocked[slot].zone, p, n);
            blocked[slot].zone[n] = '\0';
            blocked[slot].last = 0;
        }
        if (now - blocked[slot].last >= BLOCK_INTERVAL) {
            blocked[slot].last = now;
            say = true;
        }
        pthread_mutex_unlock(&block_mu);
        if (say)
            tamisd_log(TAMISD_LOG_WARN,
                       "dns: %.*s refused our queries (blocked code: public resolver, over quota "
                       "or not allowed); its listing rules cannot hit until it answers again",
                       (int)n, p);
        p += n;
    }
}
