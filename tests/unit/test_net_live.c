/*
 * The resolver against a real DNS server: unbound, started here with posix_spawn as a
 * local-data-only server on 127.0.0.1 and a free port, serving the real list zones
 * (multi.uribl.com, zen.spamhaus.org, dbl.spamhaus.org, multi.surbl.org) with listed, unlisted
 * and "blocked" entries; every other name is REFUSED, so unbound never recurses and no packet
 * leaves loopback. Each test is bounded in time; unbound is killed at the end (SIGKILL after a
 * grace period). Without unbound installed (Debian package `unbound`) the tests are skipped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tamis/net.h"
#include "unbound_live.h"

static unbound_live_t ub = {.pid = -1, .dir = "/tmp/tamis-net-XXXXXX"};

static const char *const zone_data[] = {
    /* URIBL: 127.0.0.2 black, 127.0.0.1 "query refused" */
    "local-zone: \"multi.uribl.com.\" static",
    "local-data: \"multi.uribl.com. 300 IN SOA ns.uribl.com. h.uribl.com. 1 3600 600 86400 300\"",
    "local-data: \"listed.example.multi.uribl.com. 300 IN A 127.0.0.2\"",
    "local-data: \"blocked.example.multi.uribl.com. 300 IN A 127.0.0.1\"",
    /* Spamhaus ZEN: SBL+XBL listing with TXT, a public-resolver refusal, a 2 s negative TTL */
    "local-zone: \"zen.spamhaus.org.\" static",
    "local-data: \"zen.spamhaus.org. 2 IN SOA ns.spamhaus.org. h.spamhaus.org. 1 3600 600 86400 "
    "2\"",
    "local-data: \"2.0.0.127.zen.spamhaus.org. 300 IN A 127.0.0.2\"",
    "local-data: \"2.0.0.127.zen.spamhaus.org. 300 IN A 127.0.0.4\"",
    "local-data: '2.0.0.127.zen.spamhaus.org. 300 IN TXT "
    "\"https://www.spamhaus.org/sbl/query/SBL1\"'",
    "local-data: \"10.0.0.127.zen.spamhaus.org. 300 IN A 127.255.255.254\"",
    /* Spamhaus DBL */
    "local-zone: \"dbl.spamhaus.org.\" static",
    "local-data: \"dbl.spamhaus.org. 300 IN SOA ns.spamhaus.org. h.spamhaus.org. 1 3600 600 86400 "
    "300\"",
    "local-data: \"dbltest.com.dbl.spamhaus.org. 300 IN A 127.0.1.2\"",
    "local-data: \"1.2.3.4.dbl.spamhaus.org. 300 IN A 127.0.1.255\"",
    /* SURBL */
    "local-zone: \"multi.surbl.org.\" static",
    "local-data: \"multi.surbl.org. 300 IN SOA ns.surbl.org. h.surbl.org. 1 3600 600 86400 300\"",
    "local-data: \"surbl-org-permanent-test-point.com.multi.surbl.org. 300 IN A 127.0.0.8\"",
    /* a domain's NS hosts, for urinsrhsbl */
    "local-zone: \"spammer.test.\" static",
    "local-data: \"spammer.test. 300 IN SOA ns1.spammer.test. h.spammer.test. 1 3600 600 86400 "
    "300\"",
    "local-data: \"spammer.test. 300 IN NS NS1.Bulk-Host.test.\"",
    "local-data: \"spammer.test. 300 IN NS ns2.bulk-host.test.\"",
    /* SPF's record types: MX (in reverse preference order), AAAA, PTR */
    "local-zone: \"mail.test.\" static",
    "local-data: \"mail.test. 300 IN SOA ns.mail.test. h.mail.test. 1 3600 600 86400 300\"",
    "local-data: \"mail.test. 300 IN MX 20 MX2.Mail.test.\"",
    "local-data: \"mail.test. 300 IN MX 10 mx1.mail.test.\"",
    "local-data: \"mx1.mail.test. 300 IN AAAA 2001:db8::25\"",
    "local-data: \"mx1.mail.test. 300 IN A 192.0.2.25\"",
    "local-zone: \"2.0.192.in-addr.arpa.\" static",
    "local-data: \"2.0.192.in-addr.arpa. 300 IN SOA ns.mail.test. h.mail.test. 1 3600 600 86400 "
    "300\"",
    "local-data: \"25.2.0.192.in-addr.arpa. 300 IN PTR Mx1.Mail.Test.\"",
    /* 30 names for the concurrency test */
    NULL,
};

static double now_ms(void)
{
    return tamis_now_ms();
}

/* The 30 names of the concurrency test. */
static void more_names(FILE *f)
{
    for (int i = 0; i < 30; i++)
        fprintf(f, "  local-data: \"d%d.example.multi.uribl.com. 300 IN A 127.0.0.2\"\n", i);
}

static int ub_start(void **state)
{
    (void)state;
    unbound_live_start(&ub, zone_data, more_names);
    return 0; /* without unbound the tests skip */
}

static int ub_stop(void **state)
{
    (void)state;
    unbound_live_stop(&ub);
    return 0;
}

#define NEED_SERVER()                                                                              \
    do {                                                                                           \
        if (ub.pid < 0)                                                                            \
            skip();                                                                                \
    } while (0)

/* A private loop and a resolver, as a one-shot tool has them. */
typedef struct {
    uv_loop_t loop;
    tamis_net_t *n;
} rig_t;

static void rig_open(rig_t *r, unsigned timeout_ms, unsigned tries)
{
    assert_int_equal(uv_loop_init(&r->loop), 0);
    tamis_net_opts_t o;
    tamis_net_opts_default(&o);
    o.servers = ub.servers;
    o.timeout_ms = timeout_ms;
    o.tries = tries;
    char err[256] = "";
    int rc = tamis_net_new(&r->loop, &o, &r->n, err, sizeof(err));
    if (rc != 0)
        fail_msg("tamis_net_new: %s", err);
}

static void rig_close(rig_t *r)
{
    tamis_net_free(r->n);
    /* Everything must be closed within a few iterations: no leaked handle keeps the loop. */
    for (int i = 0; i < 100 && uv_run(&r->loop, UV_RUN_NOWAIT); i++)
        ;
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

/* Resolves one name on the private loop and returns the answer (a reference). */
static const tamis_net_answer_t *resolve(rig_t *r, const char *name, tamis_net_type_t type,
                                         bool *from_cache)
{
    tamis_net_batch_t *b = tamis_net_batch_new(r->n);
    assert_non_null(b);
    size_t i;
    assert_int_equal(tamis_net_batch_add(b, name, type, &i), 0);
    assert_int_equal(tamis_net_batch_run(b, &r->loop, now_ms() + 5000), 1);
    const tamis_net_answer_t *a = tamis_net_answer_ref(tamis_net_batch_answer(b, i));
    if (from_cache)
        *from_cache = tamis_net_batch_from_cache(b, i);
    tamis_net_batch_free(b);
    assert_non_null(a);
    return a;
}

static void test_answers(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 1000, 2);
    bool cached;
    const tamis_net_answer_t *a = resolve(&r, "2.0.0.127.zen.spamhaus.org.", TAMIS_NET_A, &cached);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_false(cached);
    assert_int_equal(a->count, 2);
    uint32_t x = a->addrs[0] ^ a->addrs[1];
    assert_int_equal(x, 0x7f000002 ^ 0x7f000004);
    assert_true(a->ttl > 0 && a->ttl <= 300);
    tamis_net_subtest_t sbl;
    tamis_net_subtest_parse("127.0.0.2", &sbl);
    assert_true(tamis_net_dnsbl_hit("zen.spamhaus.org", &sbl,
                                    a->addrs[0] == 0x7f000002 ? a->addrs[0] : a->addrs[1], false));
    tamis_net_answer_unref(a);

    a = resolve(&r, "2.0.0.127.ZEN.spamhaus.org", TAMIS_NET_TXT, NULL);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_int_equal(a->count, 1);
    assert_string_equal(a->strs[0], "https://www.spamhaus.org/sbl/query/SBL1");
    tamis_net_answer_unref(a);

    a = resolve(&r, "listed.example.multi.uribl.com", TAMIS_NET_A, NULL);
    assert_int_equal(a->count, 1);
    tamis_net_subtest_t black, blocked;
    tamis_net_subtest_parse("2", &black);
    tamis_net_subtest_parse("1", &blocked);
    assert_true(tamis_net_dnsbl_hit("multi.uribl.com.", &black, a->addrs[0], false));
    tamis_net_answer_unref(a);

    /* "Blocked" answers: only the blocked rule, never a listing. */
    a = resolve(&r, "blocked.example.multi.uribl.com", TAMIS_NET_A, NULL);
    assert_int_equal(a->count, 1);
    assert_int_equal(tamis_net_classify("multi.uribl.com", a->addrs[0], NULL), TAMIS_NET_BLOCKED);
    assert_false(tamis_net_dnsbl_hit("multi.uribl.com", &black, a->addrs[0], false));
    assert_true(tamis_net_dnsbl_hit("multi.uribl.com", &blocked, a->addrs[0], true));
    tamis_net_answer_unref(a);
    a = resolve(&r, "10.0.0.127.zen.spamhaus.org", TAMIS_NET_A, NULL);
    assert_int_equal(a->addrs[0], 0x7ffffffe);
    assert_false(tamis_net_dnsbl_hit("zen.spamhaus.org", NULL, a->addrs[0], false));
    tamis_net_answer_unref(a);
    a = resolve(&r, "1.2.3.4.dbl.spamhaus.org", TAMIS_NET_A, NULL);
    assert_int_equal(tamis_net_classify("dbl.spamhaus.org", a->addrs[0], NULL), TAMIS_NET_BLOCKED);
    tamis_net_answer_unref(a);
    a = resolve(&r, "dbltest.com.dbl.spamhaus.org", TAMIS_NET_A, NULL);
    assert_int_equal(a->addrs[0], 0x7f000102);
    tamis_net_answer_unref(a);
    a = resolve(&r, "surbl-org-permanent-test-point.com.multi.surbl.org", TAMIS_NET_A, NULL);
    tamis_net_subtest_t ph;
    tamis_net_subtest_parse("8", &ph);
    assert_true(tamis_net_dnsbl_hit("multi.surbl.org", &ph, a->addrs[0], false));
    tamis_net_answer_unref(a);

    /* Unlisted: NXDOMAIN with the zone's negative TTL; NODATA; REFUSED outside the zones. */
    a = resolve(&r, "unlisted.example.multi.uribl.com", TAMIS_NET_A, NULL);
    assert_int_equal(a->status, TAMIS_NET_NXDOMAIN);
    assert_int_equal(a->ttl, 300);
    tamis_net_answer_unref(a);
    a = resolve(&r, "listed.example.multi.uribl.com", TAMIS_NET_TXT, NULL);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_int_equal(a->count, 0);
    tamis_net_answer_unref(a);
    a = resolve(&r, "www.example.org", TAMIS_NET_A, NULL);
    assert_int_equal(a->status, TAMIS_NET_REFUSED);
    tamis_net_answer_unref(a);

    a = resolve(&r, "spammer.test", TAMIS_NET_NS, NULL);
    assert_int_equal(a->count, 2);
    bool ns1 = strcmp(a->strs[0], "ns1.bulk-host.test") == 0 ||
               strcmp(a->strs[1], "ns1.bulk-host.test") == 0;
    assert_true(ns1);
    tamis_net_answer_unref(a);

    tamis_net_stats_t st;
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.queries, 12);
    assert_int_equal(st.sent, 12);
    assert_int_equal(st.nxdomain, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.timeouts, 0);
    rig_close(&r);
}

/* AAAA, MX and PTR through the resolver; (type, name) is the cache key. */
static void test_spf_types(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 1000, 2);
    bool cached;
    const tamis_net_answer_t *a = resolve(&r, "mail.test", TAMIS_NET_MX, &cached);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_false(cached);
    assert_int_equal(a->count, 2);
    assert_string_equal(a->strs[0], "mx1.mail.test");
    assert_string_equal(a->strs[1], "mx2.mail.test");
    tamis_net_answer_unref(a);

    a = resolve(&r, "mx1.mail.test", TAMIS_NET_AAAA, &cached);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_false(cached);
    assert_int_equal(a->count, 1);
    assert_null(a->addrs);
    static const uint8_t want6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x25};
    assert_memory_equal(a->addrs6[0], want6, 16);
    tamis_net_answer_unref(a);
    /* The A answer of the same name is another cache entry; the AAAA one is now cached. */
    a = resolve(&r, "mx1.mail.test", TAMIS_NET_A, &cached);
    assert_false(cached);
    assert_int_equal(a->count, 1);
    assert_int_equal(a->addrs[0], 0xc0000219);
    tamis_net_answer_unref(a);
    a = resolve(&r, "MX1.mail.test.", TAMIS_NET_AAAA, &cached);
    assert_true(cached);
    assert_int_equal(a->count, 1);
    tamis_net_answer_unref(a);

    a = resolve(&r, "25.2.0.192.in-addr.arpa", TAMIS_NET_PTR, NULL);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_int_equal(a->count, 1);
    assert_string_equal(a->strs[0], "mx1.mail.test");
    tamis_net_answer_unref(a);

    /* NODATA (the name has an MX, no AAAA) and NXDOMAIN. */
    a = resolve(&r, "mail.test", TAMIS_NET_AAAA, NULL);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_int_equal(a->count, 0);
    assert_null(a->addrs6);
    tamis_net_answer_unref(a);
    a = resolve(&r, "26.2.0.192.in-addr.arpa", TAMIS_NET_PTR, NULL);
    assert_int_equal(a->status, TAMIS_NET_NXDOMAIN);
    tamis_net_answer_unref(a);
    rig_close(&r);
}

static void test_cache(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 1000, 2);
    bool cached;
    const tamis_net_answer_t *a =
        resolve(&r, "listed.example.multi.uribl.com", TAMIS_NET_A, &cached);
    assert_false(cached);
    tamis_net_answer_unref(a);
    a = resolve(&r, "LISTED.example.multi.uribl.com.", TAMIS_NET_A, &cached);
    assert_true(cached);
    assert_int_equal(a->addrs[0], 0x7f000002);
    tamis_net_answer_unref(a);

    /* NXDOMAIN cached for the SOA's 2 s, then asked again. */
    a = resolve(&r, "3.0.0.127.zen.spamhaus.org", TAMIS_NET_A, &cached);
    assert_int_equal(a->status, TAMIS_NET_NXDOMAIN);
    assert_int_equal(a->ttl, 2);
    assert_false(cached);
    tamis_net_answer_unref(a);
    a = resolve(&r, "3.0.0.127.zen.spamhaus.org", TAMIS_NET_A, &cached);
    assert_int_equal(a->status, TAMIS_NET_NXDOMAIN);
    assert_true(cached);
    tamis_net_answer_unref(a);
    tamis_net_stats_t st;
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.sent, 2);
    assert_int_equal(st.cache_hits, 2);
    usleep(2200 * 1000);
    a = resolve(&r, "3.0.0.127.zen.spamhaus.org", TAMIS_NET_A, &cached);
    assert_false(cached);
    tamis_net_answer_unref(a);
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.sent, 3);
    rig_close(&r);
}

/* ---- loop-thread API: merging and cancel ------------------------------------------------------
 */

typedef struct {
    int calls;
    tamis_net_status_t last;
    size_t count;
} tally_t;

static void on_tally(void *arg, const tamis_net_answer_t *a)
{
    tally_t *t = arg;
    t->calls++;
    t->last = a->status;
    t->count = a->count;
}

static void test_merge(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 1000, 2);
    tally_t t = {0};
    tally_t c = {0};
    tamis_net_query_t *h[100];
    for (int i = 0; i < 100; i++)
        assert_int_equal(tamis_net_query(r.n, "listed.example.multi.uribl.com", TAMIS_NET_A,
                                         i < 90 ? on_tally : on_tally, i < 90 ? &t : &c, &h[i],
                                         NULL, 0),
                         0);
    /* A scan that gives up cancels its waiters: those callbacks never run. */
    for (int i = 90; i < 100; i++)
        tamis_net_cancel(h[i]);
    double until = now_ms() + 5000;
    while (t.calls < 90 && now_ms() < until)
        uv_run(&r.loop, UV_RUN_ONCE);
    assert_int_equal(t.calls, 90);
    assert_int_equal(c.calls, 0);
    assert_int_equal(t.last, TAMIS_NET_OK);
    tamis_net_stats_t st;
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.queries, 100);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.merged, 99);
    assert_int_equal(st.cancelled, 10);

    /* Bad input fails at once and never calls back. */
    char err[128];
    assert_int_equal(
        tamis_net_query(r.n, "bad..name", TAMIS_NET_A, on_tally, &c, NULL, err, sizeof(err)),
        TAMIS_EINVAL);
    assert_int_equal(tamis_net_query(r.n, "a b.com", TAMIS_NET_A, on_tally, &c, NULL, NULL, 0),
                     TAMIS_EINVAL);
    /* Cache hit: delivered on a later iteration, not inside the call. */
    assert_int_equal(tamis_net_query(r.n, "listed.example.multi.uribl.com", TAMIS_NET_A, on_tally,
                                     &c, NULL, NULL, 0),
                     0);
    assert_int_equal(c.calls, 0);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    assert_int_equal(c.calls, 1);

    /* Freeing the resolver with queries pending calls them back with CANCELLED. */
    tally_t p = {0};
    assert_int_equal(tamis_net_query(r.n, "d1.example.multi.uribl.com", TAMIS_NET_A, on_tally, &p,
                                     NULL, NULL, 0),
                     0);
    rig_close(&r);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.last, TAMIS_NET_CANCELLED);
}

/* ---- worker threads: batches --------------------------------------------------------------------
 */

#define WORKERS 100
#define DOMAINS 20

typedef struct {
    tamis_net_t *n;
    uv_async_t *wake;
    int listed; /* answers seen */
    int rc;
} worker_t;

static atomic_int workers_finished;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    tamis_net_batch_t *b = tamis_net_batch_new(w->n);
    if (!b) {
        w->rc = -1;
        atomic_fetch_add(&workers_finished, 1);
        return NULL;
    }
    for (int i = 0; i < DOMAINS; i++) {
        char name[128];
        snprintf(name, sizeof(name), "d%d.example.multi.uribl.com", i);
        if (tamis_net_batch_add(b, name, TAMIS_NET_A, NULL) != 0)
            w->rc = -2;
    }
    size_t done = tamis_net_batch_wait(b, now_ms() + 5000, 0);
    for (size_t i = 0; i < done; i++) {
        const tamis_net_answer_t *a = tamis_net_batch_answer(b, i);
        if (a && a->status == TAMIS_NET_OK && a->count == 1 && a->addrs[0] == 0x7f000002)
            w->listed++;
    }
    tamis_net_batch_free(b);
    atomic_fetch_add(&workers_finished, 1);
    uv_async_send(w->wake);
    return NULL;
}

static void on_wake(uv_async_t *h)
{
    (void)h;
}

static void test_workers(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 1000, 2);
    uv_async_t wake;
    uv_async_init(&r.loop, &wake, on_wake);
    static worker_t w[WORKERS];
    atomic_store(&workers_finished, 0);
    pthread_t th[WORKERS];
    double t0 = now_ms();
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (worker_t){.n = r.n, .wake = &wake};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    /* The test's main thread is the loop thread. */
    double until = now_ms() + 10000;
    while (now_ms() < until && atomic_load(&workers_finished) < WORKERS)
        uv_run(&r.loop, UV_RUN_ONCE);
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].rc, 0);
        assert_int_equal(w[i].listed, DOMAINS);
    }
    double elapsed = now_ms() - t0;
    tamis_net_stats_t st;
    tamis_net_stats(r.n, &st);
    /* One packet per distinct name, however many scans ask. */
    assert_int_equal(st.queries, WORKERS * DOMAINS);
    assert_int_equal(st.sent, DOMAINS);
    assert_int_equal(st.merged + st.cache_hits, (WORKERS - 1) * DOMAINS);
    assert_true(elapsed < 3000);
    uv_close((uv_handle_t *)&wake, NULL);
    rig_close(&r);
}

/* A batch given up with queries pending (the scan's budget expired): freed at once on the
 * worker side, the loop detaches its waiters later without touching freed memory. */
static void test_batch_give_up(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 1000, 2);
    tamis_net_batch_t *b = tamis_net_batch_new(r.n);
    assert_int_equal(tamis_net_batch_add(b, "d5.example.multi.uribl.com", TAMIS_NET_A, NULL), 0);
    assert_int_equal(tamis_net_batch_add(b, "bad..name", TAMIS_NET_A, NULL), TAMIS_EINVAL);
    assert_null(tamis_net_batch_answer(b, 0));
    uv_run(&r.loop, UV_RUN_NOWAIT); /* the loop takes the query: a packet is in flight */
    assert_null(tamis_net_batch_answer(b, 0));
    tamis_net_batch_free(b);
    double until = now_ms() + 1000;
    while (now_ms() < until)
        uv_run(&r.loop, UV_RUN_NOWAIT);
    tamis_net_stats_t st;
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.inflight, 0);
    /* The answer still warmed the cache. */
    bool cached;
    const tamis_net_answer_t *a = resolve(&r, "d5.example.multi.uribl.com", TAMIS_NET_A, &cached);
    assert_true(cached);
    tamis_net_answer_unref(a);
    rig_close(&r);
}

/* A held batch hands its adds to the loop only at the flush (or the wait), all at once. */
static void test_batch_hold(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 1000, 2);
    tamis_net_batch_t *b = tamis_net_batch_new(r.n);
    tamis_net_batch_hold(b);
    assert_int_equal(tamis_net_batch_add(b, "d7.example.multi.uribl.com", TAMIS_NET_A, NULL), 0);
    assert_int_equal(tamis_net_batch_add(b, "listed.example.multi.uribl.com", TAMIS_NET_A, NULL),
                     0);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    tamis_net_stats_t st;
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.queries, 0); /* still held */
    assert_int_equal(tamis_net_batch_flush(b), 0);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.queries, 2);
    /* adds after the flush are held again; the run flushes them */
    assert_int_equal(tamis_net_batch_add(b, "unlisted.example.multi.uribl.com", TAMIS_NET_A, NULL),
                     0);
    assert_int_equal(tamis_net_batch_run(b, &r.loop, now_ms() + 5000), 3);
    const tamis_net_answer_t *a = tamis_net_batch_answer(b, 1);
    assert_non_null(a);
    assert_int_equal(a->status, TAMIS_NET_OK);
    assert_int_equal(a->addrs[0], 0x7f000002);
    assert_int_equal(tamis_net_batch_answer(b, 2)->status, TAMIS_NET_NXDOMAIN);
    tamis_net_batch_free(b);

    /* A held batch freed before any flush: its adds are cancelled, nothing is sent or leaked. */
    b = tamis_net_batch_new(r.n);
    tamis_net_batch_hold(b);
    assert_int_equal(tamis_net_batch_add(b, "d9.example.multi.uribl.com", TAMIS_NET_A, NULL), 0);
    tamis_net_batch_free(b);
    for (int i = 0; i < 10; i++)
        uv_run(&r.loop, UV_RUN_NOWAIT);
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.sent, 3); /* the three of the first batch */
    assert_int_equal(st.inflight, 0);
    rig_close(&r);
}

/* Server stopped (SIGSTOP): every query ends in TIMEOUT within the deadline plus a margin. */
static void test_timeout(void **state)
{
    (void)state;
    NEED_SERVER();
    rig_t r;
    rig_open(&r, 200, 2); /* deadline: 200 + 400 ms */
    assert_int_equal(kill(ub.pid, SIGSTOP), 0);
    tamis_net_batch_t *b = tamis_net_batch_new(r.n);
    for (int i = 0; i < 10; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%d.0.0.127.zen.spamhaus.org", 100 + i);
        assert_int_equal(tamis_net_batch_add(b, name, TAMIS_NET_A, NULL), 0);
    }
    double t0 = now_ms();
    size_t done = tamis_net_batch_run(b, &r.loop, t0 + 5000);
    double elapsed = now_ms() - t0;
    kill(ub.pid, SIGCONT);
    assert_int_equal(done, 10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(tamis_net_batch_answer(b, i)->status, TAMIS_NET_TIMEOUT);
    assert_true(elapsed >= 550);
    assert_true(elapsed < 600 + 1000); /* margin for loaded CI and sanitizers */
    tamis_net_batch_free(b);
    tamis_net_stats_t st;
    tamis_net_stats(r.n, &st);
    assert_int_equal(st.timeouts, 10);
    /* Timeouts are not cached: the server answers again once resumed. */
    const tamis_net_answer_t *a = resolve(&r, "2.0.0.127.zen.spamhaus.org", TAMIS_NET_A, NULL);
    assert_int_equal(a->status, TAMIS_NET_OK);
    tamis_net_answer_unref(a);
    rig_close(&r);
}

static void test_bad_servers(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tamis_net_opts_t o;
    tamis_net_opts_default(&o);
    o.servers = "not an address";
    tamis_net_t *n = NULL;
    char err[256];
    assert_int_equal(tamis_net_new(&loop, &o, &n, err, sizeof(err)), TAMIS_ECONFIG);
    assert_null(n);
    o.servers = NULL;
    o.tries = 0;
    assert_int_equal(tamis_net_new(&loop, &o, &n, err, sizeof(err)), TAMIS_EINVAL);
    tamis_net_free(NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers),       cmocka_unit_test(test_cache),
        cmocka_unit_test(test_merge),         cmocka_unit_test(test_workers),
        cmocka_unit_test(test_batch_give_up), cmocka_unit_test(test_batch_hold),
        cmocka_unit_test(test_timeout),       cmocka_unit_test(test_bad_servers),
        cmocka_unit_test(test_spf_types),
    };
    return cmocka_run_group_tests(tests, ub_start, ub_stop);
}
