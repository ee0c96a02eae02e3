/*
 * The scan's network tests against a real DNS server: unbound, started with posix_spawn as a
 * local-data-only server on 127.0.0.1 and a free port (as in test_net_live.c), serving the stock
 * list zones (multi.uribl.com, dbl.spamhaus.org, zen.spamhaus.org, multi.surbl.org) with listed,
 * unlisted and "blocked" entries; every other name is REFUSED, so no packet leaves loopback.
 * Messages are scanned with SpamAssassin's stock rules and a resolver running on its own loop
 * thread (as in tamisd), and the network rules that fire are checked exactly. Also: the
 * rbl_timeout deadline with a SIGSTOPped server, the per-message query cap, a meta on a net
 * rule, and the pure candidate selection of check_rbl. Skipped without unbound or the stock
 * rules.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
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
#include "tamis/scan.h"
#include "unbound_live.h"

static unbound_live_t ub = {.pid = -1, .dir = "/tmp/tamis-scandns-XXXXXX"};

static const char *const zone_data[] = {
    "local-zone: \"multi.uribl.com.\" static",
    "local-data: \"multi.uribl.com. 300 IN SOA ns.uribl.com. h.uribl.com. 1 3600 600 86400 300\"",
    "local-data: \"uribl-listed.com.multi.uribl.com. 300 IN A 127.0.0.2\"",
    "local-data: \"uribl-blocked.com.multi.uribl.com. 300 IN A 127.0.0.1\"",
    "local-zone: \"zen.spamhaus.org.\" static",
    "local-data: \"zen.spamhaus.org. 300 IN SOA ns.spamhaus.org. h.spamhaus.org. 1 3600 600 86400 "
    "300\"",
    "local-data: \"7.100.51.198.zen.spamhaus.org. 300 IN A 127.0.0.2\"",
    "local-data: \"7.100.51.198.zen.spamhaus.org. 300 IN A 127.0.0.4\"",
    "local-data: \"8.100.51.198.zen.spamhaus.org. 300 IN A 127.255.255.254\"",
    "local-zone: \"dbl.spamhaus.org.\" static",
    "local-data: \"dbl.spamhaus.org. 300 IN SOA ns.spamhaus.org. h.spamhaus.org. 1 3600 600 86400 "
    "300\"",
    "local-data: \"dbl-listed.com.dbl.spamhaus.org. 300 IN A 127.0.1.2\"",
    "local-zone: \"multi.surbl.org.\" static",
    "local-data: \"multi.surbl.org. 300 IN SOA ns.surbl.org. h.surbl.org. 1 3600 600 86400 300\"",
    "local-data: \"surbl-listed.com.multi.surbl.org. 300 IN A 127.0.0.8\"",
    /* a domain whose name server, and a host whose address, are listed in zen */
    "local-zone: \"nsdom.com.\" static",
    "local-data: \"nsdom.com. 300 IN SOA ns1.nsdom.com. h.nsdom.com. 1 3600 600 86400 300\"",
    "local-data: \"nsdom.com. 300 IN NS ns1.nsdom.com.\"",
    "local-data: \"ns1.nsdom.com. 300 IN A 198.51.100.7\"",
    "local-zone: \"ahost.com.\" static",
    "local-data: \"ahost.com. 300 IN SOA ns1.ahost.com. h.ahost.com. 1 3600 600 86400 300\"",
    "local-data: \"ahost.com. 300 IN A 198.51.100.7\"",
    /* the HELO of message()'s untrusted relay publishes SPF: lib/auth runs in the same scans */
    "local-zone: \"example.org.\" static",
    "local-data: \"example.org. 300 IN SOA ns.example.org. h.example.org. 1 3600 600 86400 300\"",
    "local-data: 'sender.example.org. 300 IN TXT \"v=spf1 ip4:198.51.100.7 -all\"'",
    NULL,
};

/* ---- the resolver on its own loop thread, as tamisd runs it ---------------------------------- */

static uv_loop_t loop;
static uv_async_t stop_async;
static pthread_t loop_thread;
static tamis_net_t *net;

static void stop_cb(uv_async_t *a)
{
    tamis_net_free(net);
    net = NULL;
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static void net_start(void)
{
    if (ub.pid < 0 || uv_loop_init(&loop) != 0)
        return;
    tamis_net_opts_t o;
    tamis_net_opts_default(&o);
    o.servers = ub.servers;
    o.timeout_ms = 3000; /* longer than rbl_timeout: the scan's deadline must cut the wait */
    o.tries = 2;
    char err[256];
    if (tamis_net_new(&loop, &o, &net, err, sizeof(err)) != 0 ||
        uv_async_init(&loop, &stop_async, stop_cb) != 0 ||
        pthread_create(&loop_thread, NULL, loop_main, NULL) != 0) {
        fprintf(stderr, "resolver: %s\n", err);
        net = NULL;
    }
}

static void net_stop(void)
{
    if (!net)
        return;
    uv_async_send(&stop_async);
    pthread_join(loop_thread, NULL);
    uv_loop_close(&loop);
}

/* ---- rule sets ------------------------------------------------------------------------------- */

static tamis_ruleset_t *stock, *small, *senders, *pref, *authres;

static tamis_ruleset_t *load(const char *dir, const char *const *lines, size_t n)
{
    /* the stock prefilter databases take long to compile (more so under ASan): keep them */
    static char cache[4096];
    const char *build = getenv("TAMIS_BUILD_DIR");
    if (build && !cache[0])
        snprintf(cache, sizeof cache, "%s/test-scan-dns-cache", build);
    tamis_rules_source_t src = {.default_rules_dir = dir,
                                .cache_dir = cache[0] ? cache : NULL,
                                .site_rules_dir = dir ? "/etc/spamassassin" : NULL,
                                .extra_lines = lines,
                                .extra_line_count = n,
                                .locale = "C"};
    tamis_ruleset_t *rs = NULL;
    char err[256];
    if (tamis_rules_load(&src, &rs, NULL, err, sizeof(err)) != 0)
        fprintf(stderr, "load: %s\n", err);
    return rs;
}

static const char *const small_lines[] = {
    "urirhssub T_URIBL multi.uribl.com. A 2",
    "body T_URIBL eval:check_uridnsbl('T_URIBL')",
    "tflags T_URIBL net",
    "score T_URIBL 1",
    "body T_BODY /cheap pills/",
    "score T_BODY 0.1",
    "meta T_META T_URIBL && T_BODY",
    "score T_META 2",
    "meta T_NOMETA T_URIBL && !T_BODY",
    "score T_NOMETA 2",
    "header T_ZEN eval:check_rbl('tz', 'zen.spamhaus.org.')",
    "tflags T_ZEN net",
    "score T_ZEN 1",
    "trusted_networks 10.0.0.0/8 203.0.113.5",
    "internal_networks 10.0.0.0/8",
    "uridnsbl_skip_domain skipped-listed.com SKIPPED-CAPS.com *.globbed.com",
    "dns_max_queries 5",
    "uridnsbl_max_domains 40",
    "rbl_timeout 2",
};

static const char *const sender_lines[] = {
    "header T_FROMDOM eval:check_rbl_from_domain('tfd', 'dbl.spamhaus.org.', '127.0.1.2')",
    "tflags T_FROMDOM net",
    "score T_FROMDOM 1",
    "header T_FROMHOST eval:check_rbl_from_host('tfh', 'dbl.spamhaus.org.')",
    "tflags T_FROMHOST net",
    "score T_FROMHOST 1",
    "header T_ENVFROM eval:check_rbl_envfrom('tef', 'dbl.spamhaus.org.', '127.0.1.2')",
    "tflags T_ENVFROM net",
    "score T_ENVFROM 1",
    "header T_RCVD eval:check_rbl_rcvd('trc', 'zen.spamhaus.org.', '127.0.0.4')",
    "tflags T_RCVD net",
    "score T_RCVD 1",
    "header T_HDRS eval:check_rbl_headers('thd', 'dbl.spamhaus.org.', '127.0.1.2', 'Reply-To')",
    "tflags T_HDRS net",
    "score T_HDRS 1",
    "rbl_timeout 2",
};

static const char *const pref_lines[] = {
    "urirhssub T_URIBL multi.uribl.com. A 2",
    "body T_URIBL eval:check_uridnsbl('T_URIBL')",
    "tflags T_URIBL net",
    "score T_URIBL 1",
    "uridnsbl_max_domains 1",
    "rbl_timeout 2",
};

static const char *const authres_lines[] = {
    "header T_HELO_PASS eval:check_for_spf_helo_pass()",
    "tflags T_HELO_PASS net",
    "score T_HELO_PASS 0.1",
    "authres_header 1",
    "authres_serv_id mx.test.example",
    "report_safe 0",
    "rbl_timeout 2",
};

static int setup(void **state)
{
    (void)state;
    unbound_live_start(&ub, zone_data, NULL);
    net_start();
    struct stat sb;
    const char *extra[] = {"rbl_timeout 2"};
    if (stat("/usr/share/spamassassin/72_active.cf", &sb) == 0)
        stock = load("/usr/share/spamassassin", extra, 1);
    small = load(NULL, small_lines, sizeof small_lines / sizeof *small_lines);
    senders = load(NULL, sender_lines, sizeof sender_lines / sizeof *sender_lines);
    pref = load(NULL, pref_lines, sizeof pref_lines / sizeof *pref_lines);
    authres = load(NULL, authres_lines, sizeof authres_lines / sizeof *authres_lines);
    return small && senders && pref && authres ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tamis_rules_unref(stock);
    tamis_rules_unref(small);
    tamis_rules_unref(senders);
    tamis_rules_unref(pref);
    tamis_rules_unref(authres);
    net_stop();
    unbound_live_stop(&ub);
    return 0;
}

#define NEED(x)                                                                                    \
    do {                                                                                           \
        if (!(x) || !net)                                                                          \
            skip();                                                                                \
    } while (0)

/* ---- messages -------------------------------------------------------------------------------- */

/* A message relayed by `ip` (untrusted, the last external hop) with `body`. */
static char *message(const char *ip, const char *body)
{
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "Received: from mx.example.net (mx.example.net [10.0.0.5])\n"
             "\tby inbox.example.net (Postfix) with ESMTP id 4A1B2C3D4E\n"
             "\tfor <b@example.net>; Mon, 23 Nov 2026 06:00:01 +0000\n"
             "Received: from sender.example.org (sender.example.org [%s])\n"
             "\tby mx.example.net (Postfix) with ESMTP id 5B2C3D4E5F\n"
             "\tfor <b@example.net>; Mon, 23 Nov 2026 06:00:00 +0000\n"
             "From: Alice <a@example.org>\n"
             "To: b@example.net\n"
             "Subject: hello there\n"
             "Message-ID: <x1@example.org>\n"
             "Date: Mon, 23 Nov 2026 06:00:00 +0000\n"
             "MIME-Version: 1.0\n"
             "Content-Type: text/plain; charset=us-ascii\n"
             "\n"
             "%s\n",
             ip, body);
    return buf;
}

/* Scans text and returns the sorted, comma-joined names of the hits of net rules: the DNSBL and
 * URIBL ones, or (want_auth) the SPF/DKIM/DMARC ones. */
static const char *envelope_from; /* for the next net_hits */
static bool want_auth;            /* for the next net_hits */

static bool is_auth_rule(const char *name)
{
    return strstr(name, "SPF_") || strstr(name, "DKIM_") || strstr(name, "DMARC_");
}

static void net_hits(tamis_ruleset_t *rs, const char *text, char *out, size_t outlen,
                     tamis_scan_dns_t *dns, double *ms)
{
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.run.envelope_from = envelope_from;
    o.hostname = "test.example";
    o.now = 1795000000;
    o.boundary_seed = 1;
    o.net = net;
    tamis_scan_t *s = NULL;
    char err[256];
    double t0 = tamis_now_ms();
    assert_int_equal(tamis_scan_run(rs, text, strlen(text), &o, &s, err, sizeof(err)), 0);
    if (ms)
        *ms = tamis_now_ms() - t0;
    const char *names[64];
    size_t n = 0;
    for (size_t i = 0; i < tamis_scan_hit_count(s) && n < 64; i++) {
        const tamis_hit_t *h = tamis_scan_hit(s, i);
        if ((h->tflags & TAMIS_TFLAG_NET || strncmp(h->name, "T_", 2) == 0) &&
            is_auth_rule(h->name) == want_auth)
            names[n++] = h->name;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(out, i ? "," : "", outlen - strlen(out) - 1);
        strncat(out, names[i], outlen - strlen(out) - 1);
    }
    if (dns) {
        tamis_scan_dns(s, dns);
        static char zones[256];
        snprintf(zones, sizeof zones, "%s", dns->blocked_zones);
        dns->blocked_zones = zones;
    }
    tamis_scan_free(s);
}

/* ---- stock rules ----------------------------------------------------------------------------- */

static void test_listed_uri(void **state)
{
    (void)state;
    NEED(stock);
    char hits[512];
    tamis_scan_dns_t d;
    net_hits(stock,
             message("192.168.1.20",
                     "See http://www.uribl-listed.com/offer and http://dbl-listed.com/x now."),
             hits, sizeof hits, &d, NULL);
    assert_string_equal(hits, "URIBL_BLACK,URIBL_DBL_SPAM");
    assert_true(d.queries > 0);
    assert_string_equal(d.blocked_zones, "");
}

/* uridnssub: the URI domain's name servers' addresses (URIBL_SBL, tflags ns by default) and the
 * host's own address (URIBL_SBL_A, tflags a) looked up in zen. */
static void test_uri_ns_and_a(void **state)
{
    (void)state;
    NEED(stock);
    char hits[512];
    tamis_scan_dns_t d;
    net_hits(stock, message("192.168.1.20", "See http://www.nsdom.com/x now."), hits, sizeof hits,
             &d, NULL);
    assert_string_equal(hits, "URIBL_SBL");
    assert_int_equal(d.rounds, 3); /* NS, then the name server's A, then zen */
    net_hits(stock, message("192.168.1.20", "See http://ahost.com/x now."), hits, sizeof hits, &d,
             NULL);
    assert_string_equal(hits, "URIBL_SBL_A");
    assert_int_equal(d.rounds, 2); /* the host's A, then zen */
}

/* The scan runs SPF on the first untrusted relay's HELO through the same resolver. */
static void test_auth_wired(void **state)
{
    (void)state;
    NEED(stock);
    char hits[512], hits2[512];
    want_auth = true;
    net_hits(stock, message("198.51.100.7", "Nothing to see."), hits, sizeof hits, NULL, NULL);
    net_hits(stock, message("192.0.2.99", "Nothing to see."), hits2, sizeof hits2, NULL, NULL);
    want_auth = false;
    /* example.org publishes no DMARC record (NXDOMAIN under its zone): DMARC_MISSING */
    assert_string_equal(hits, "DMARC_MISSING,SPF_HELO_PASS");
    assert_string_equal(hits2, "DMARC_MISSING,SPF_HELO_FAIL");
}

/* authres_header 1: our Authentication-Results header on top; a forged one naming our authserv-id
 * is removed (RFC 8601 §5), another host's is kept. */
static void test_authres_header(void **state)
{
    (void)state;
    char text[8192 + 256];
    snprintf(text, sizeof text,
             "Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=forged.example\n"
             "Authentication-Results: other.example; dkim=pass header.d=other.example\n%s",
             message("198.51.100.7", "Nothing to see."));
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.hostname = "test.example";
    o.now = 1795000000;
    o.net = net;
    tamis_scan_t *s = NULL;
    char err[256];
    assert_int_equal(tamis_scan_run(authres, text, strlen(text), &o, &s, err, sizeof err), 0);
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    assert_int_equal(tamis_scan_rewrite(s, &out), 0);
    tamis_buf_putc(&out, '\0');
    const char *m = out.data;
    const char *ours = strstr(m, "Authentication-Results: mx.test.example;");
    assert_non_null(ours);
    /* folded: "spf=pass\n\tsmtp.helo=…" */
    assert_non_null(strstr(ours, "spf=pass"));
    assert_non_null(strstr(ours, "smtp.helo=sender.example.org"));
    assert_non_null(strstr(ours, "dmarc=none"));
    assert_null(strstr(m, "forged.example"));
    assert_non_null(strstr(m, "Authentication-Results: other.example; dkim=pass"));
    assert_null(strstr(ours + 1, "Authentication-Results: mx.test.example;")); /* only one */
    tamis_buf_free(&out);
    tamis_scan_free(s);
}

static void test_listed_relay(void **state)
{
    (void)state;
    NEED(stock);
    char hits[512];
    net_hits(stock, message("198.51.100.7", "Nothing to see."), hits, sizeof hits, NULL, NULL);
    /* 127.0.0.2 (SBL, via check_rbl_sub of the "zen" set) and 127.0.0.4 (XBL, last external) */
    assert_string_equal(hits, "RCVD_IN_SBL,RCVD_IN_XBL");
}

static void test_unlisted(void **state)
{
    (void)state;
    NEED(stock);
    char hits[512];
    tamis_scan_dns_t d;
    net_hits(stock, message("198.51.100.9", "Visit http://unlisted-domain.com/ please."), hits,
             sizeof hits, &d, NULL);
    assert_string_equal(hits, "");
    assert_true(d.queries > 0);
    assert_int_equal(d.answered, d.queries);
    assert_int_equal(d.rounds, 1); /* every query planned at parse time, one wait */
}

static void test_blocked(void **state)
{
    (void)state;
    NEED(stock);
    char hits[512];
    tamis_scan_dns_t d;
    net_hits(stock, message("198.51.100.8", "Visit http://uribl-blocked.com/ please."), hits,
             sizeof hits, &d, NULL);
    /* refusals fire only the informational rules, never a listing rule */
    assert_string_equal(hits, "RCVD_IN_ZEN_BLOCKED_OPENDNS,URIBL_BLOCKED");
    assert_non_null(strstr(d.blocked_zones, "multi.uribl.com"));
    assert_non_null(strstr(d.blocked_zones, "zen.spamhaus.org"));
}

static void test_deadline(void **state)
{
    (void)state;
    NEED(stock);
    char hits[512];
    double ms;
    tamis_scan_dns_t d;
    kill(ub.pid, SIGSTOP);
    net_hits(stock, message("198.51.100.77", "Visit http://never-answered.com/ please."), hits,
             sizeof hits, &d, &ms);
    kill(ub.pid, SIGCONT);
    assert_string_equal(hits, "");
    assert_true(d.queries > 0);
    assert_int_equal(d.answered, 0);
    /* rbl_timeout 2: the wait ends at parse time + 2 s, plus scheduling slack */
    assert_true(ms >= 1500 && ms < 3500);
}

/* ---- a small set: meta, cap, skip list, trust ------------------------------------------------ */

static void test_meta(void **state)
{
    (void)state;
    NEED(small);
    char hits[512];
    net_hits(small, message("192.168.1.20", "cheap pills at http://uribl-listed.com/"), hits,
             sizeof hits, NULL, NULL);
    assert_string_equal(hits, "T_BODY,T_META,T_URIBL");
    net_hits(small, message("192.168.1.20", "at http://uribl-listed.com/"), hits, sizeof hits, NULL,
             NULL);
    assert_string_equal(hits, "T_NOMETA,T_URIBL");
    net_hits(small, message("192.168.1.20", "cheap pills at http://unlisted-domain.com/"), hits,
             sizeof hits, NULL, NULL);
    assert_string_equal(hits, "T_BODY");
}

static void test_skip_domain(void **state)
{
    (void)state;
    NEED(small);
    char hits[512];
    tamis_scan_dns_t d;
    net_hits(small, message("192.168.1.20", "at http://skipped-listed.com/"), hits, sizeof hits, &d,
             NULL);
    assert_string_equal(hits, "");
    assert_int_equal(d.queries, 0);
    /* URIDNSBL keys the list by lower-cased name: any case matches, a glob is no glob */
    net_hits(small, message("192.168.1.20", "at http://www.Skipped-Caps.com/"), hits, sizeof hits,
             &d, NULL);
    assert_int_equal(d.queries, 0);
    net_hits(small, message("192.168.1.20", "at http://www.globbed.com/"), hits, sizeof hits, &d,
             NULL);
    assert_int_equal(d.queries, 1);
}

static void test_cap(void **state)
{
    (void)state;
    NEED(small);
    char body[4096] = "";
    for (int i = 0; i < 20; i++) {
        char u[64];
        snprintf(u, sizeof u, "http://cap-%d.com/ ", i);
        strcat(body, u);
    }
    char hits[512];
    tamis_scan_dns_t d;
    net_hits(small, message("192.168.1.20", body), hits, sizeof hits, &d, NULL);
    assert_int_equal(d.queries, 5); /* dns_max_queries 5 */
    assert_int_equal(d.skipped, 15);
}

static void test_trusted_relay(void **state)
{
    (void)state;
    NEED(small);
    char hits[512];
    /* a listed untrusted relay hits; a relay in trusted_networks is never looked up */
    net_hits(small, message("198.51.100.7", "hi"), hits, sizeof hits, NULL, NULL);
    assert_string_equal(hits, "T_ZEN");
    net_hits(small, message("203.0.113.5", "hi"), hits, sizeof hits, NULL, NULL);
    assert_string_equal(hits, "");
}

static void test_senders(void **state)
{
    (void)state;
    NEED(senders);
    char hits[512], m[9000];
    /* From a@mail.dbl-listed.com: its domain is listed, its host is not; the oldest untrusted
     * relay 198.51.100.7 answers 127.0.0.2 and 127.0.0.4 */
    snprintf(m, sizeof m, "%s", message("198.51.100.7", "hi"));
    char *from = strstr(m, "From: Alice <a@example.org>");
    assert_non_null(from);
    memmove(from + 6, "<a@mail.dbl-listed.com>    ", 27);
    envelope_from = "bounce@dbl-listed.com";
    net_hits(senders, m, hits, sizeof hits, NULL, NULL);
    envelope_from = NULL;
    /* all_from_addrs holds the envelope sender too: its host is listed */
    assert_string_equal(hits, "T_ENVFROM,T_FROMDOM,T_FROMHOST,T_RCVD");
    net_hits(senders, m, hits, sizeof hits, NULL, NULL);
    assert_string_equal(hits, "T_FROMDOM,T_RCVD");
    /* the host itself listed; Reply-To listed */
    snprintf(m, sizeof m, "Reply-To: r@dbl-listed.com\n%s", message("198.51.100.9", "hi"));
    from = strstr(m, "From: Alice <a@example.org>");
    memmove(from + 6, "<a@dbl-listed.com>         ", 27);
    net_hits(senders, m, hits, sizeof hits, NULL, NULL);
    assert_string_equal(hits, "T_FROMDOM,T_FROMHOST,T_HDRS");
}

/* uridnsbl_max_domains 1: an HTML link's domain goes before one in plain text; mailto: links
 * are never looked up. */
static void test_domain_preference(void **state)
{
    (void)state;
    NEED(pref);
    static const char html[] =
        "From: a@example.org\nTo: b@example.net\nSubject: hi\nMessage-ID: <p1@example.org>\n"
        "MIME-Version: 1.0\nContent-Type: text/html; charset=us-ascii\n\n"
        "<html><body><p>see http://unlisted-domain.com/ or mail mailto:x@uribl-listed.com</p>"
        "<p><a href=\"http://www.uribl-listed.com/go\">here</a></p></body></html>\n";
    char hits[512];
    tamis_scan_dns_t d;
    net_hits(pref, html, hits, sizeof hits, &d, NULL);
    assert_string_equal(hits, "T_URIBL");
    assert_int_equal(d.queries, 1);
    static const char text[] =
        "From: a@example.org\nTo: b@example.net\nSubject: hi\nMessage-ID: <p2@example.org>\n\n"
        "mail mailto:x@uribl-listed.com or see http://unlisted-domain.com/\n";
    net_hits(pref, text, hits, sizeof hits, &d, NULL);
    assert_string_equal(hits, "");
    assert_int_equal(d.queries, 1);
}

/* ---- rDNS and HELO rules from the Received chain (no DNS) ------------------------------------ */

static bool has_hit(tamis_ruleset_t *rs, const char *text, const char *rule)
{
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.hostname = "test.example";
    o.now = 1795000000;
    o.local_only = true;
    tamis_scan_t *s = NULL;
    char err[256];
    assert_int_equal(tamis_scan_run(rs, text, strlen(text), &o, &s, err, sizeof(err)), 0);
    bool hit = false;
    for (size_t i = 0; i < tamis_scan_hit_count(s); i++)
        hit |= strcmp(tamis_scan_hit(s, i)->name, rule) == 0;
    tamis_scan_free(s);
    return hit;
}

static char *postfix_message(const char *helo, const char *rdns)
{
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "Received: from %s (%s [198.51.100.50])\n"
             "\tby mx.example.net (Postfix) with ESMTP id 5B2C3D4E5F\n"
             "\tfor <b@example.net>; Mon, 23 Nov 2026 06:00:00 +0000\n"
             "From: Alice <a@example.org>\nTo: b@example.net\nSubject: hello there\n"
             "Message-ID: <x2@example.org>\nDate: Mon, 23 Nov 2026 06:00:00 +0000\n\nhi\n",
             helo, rdns);
    return buf;
}

static void test_rdns_helo(void **state)
{
    (void)state;
    if (!stock)
        skip();
    /* Postfix always looks rDNS up: "unknown" means the client has none */
    const char *m = postfix_message("mail.yahoo.com", "unknown");
    assert_true(has_hit(stock, m, "RDNS_NONE"));
    assert_true(has_hit(stock, m, "NO_RDNS_DOTCOM_HELO"));
    m = postfix_message("mail.example.org", "unknown");
    assert_true(has_hit(stock, m, "RDNS_NONE"));
    assert_false(has_hit(stock, m, "NO_RDNS_DOTCOM_HELO"));
    m = postfix_message("mail.yahoo.com", "mail.yahoo.com");
    assert_false(has_hit(stock, m, "RDNS_NONE"));
    assert_false(has_hit(stock, m, "NO_RDNS_DOTCOM_HELO"));
    m = postfix_message("friend", "dsl-198-51-100-50.dhcp.example.net");
    assert_true(has_hit(stock, m, "RDNS_DYNAMIC"));
}

/* ---- candidate selection (pure) -------------------------------------------------------------- */

static void test_select(void **state)
{
    (void)state;
    if (!small)
        skip();
    /* newest first: A (handed the mail to us) … C (oldest); O from X-Originating-IP;
     * T is trusted but not internal (203.0.113.5 in trusted_networks only) */
    const char *unt[] = {"198.51.100.1", "198.51.100.2", "198.51.100.3"};
    const char *ext[] = {"203.0.113.5", "198.51.100.1", "198.51.100.2", "198.51.100.3"};
    const char *org[] = {"192.0.2.50"};
    tamis_rules_dnsbl_ips_t in = {.untrusted = unt,
                                  .untrusted_count = 3,
                                  .external = ext,
                                  .external_count = 4,
                                  .originating = org,
                                  .originating_count = 1,
                                  .any = true};
    const char *v[16];
    size_t n = tamis_rules_dnsbl_select(small, &in, "zen", false, v, 16);
    assert_int_equal(n, 4);
    assert_string_equal(v[0], "192.0.2.50");
    assert_string_equal(v[1], "198.51.100.3");
    assert_string_equal(v[3], "198.51.100.1");
    n = tamis_rules_dnsbl_select(small, &in, "zen-firsttrusted", false, v, 16);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "198.51.100.1");
    n = tamis_rules_dnsbl_select(small, &in, "zen-untrusted", false, v, 16);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "198.51.100.2");
    assert_string_equal(v[2], "192.0.2.50");
    /* the external set: T is the newest external hop, but trusted: dropped unless nice */
    n = tamis_rules_dnsbl_select(small, &in, "zen-lastexternal", false, v, 16);
    assert_int_equal(n, 0);
    n = tamis_rules_dnsbl_select(small, &in, "zen-lastexternal", true, v, 16);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "203.0.113.5");
    n = tamis_rules_dnsbl_select(small, &in, "zen-notfirsthop", true, v, 16);
    assert_int_equal(n, 3);
    assert_string_equal(v[2], "198.51.100.2");
    /* nothing untrusted: nothing to do */
    in.any = false;
    assert_int_equal(tamis_rules_dnsbl_select(small, &in, "zen", false, v, 16), 0);
}

static void test_reverse_v6(void **state)
{
    (void)state;
    char rev[80], q[256];
    assert_int_equal(tamis_net_reverse_ip("2001:db8::1", rev, sizeof rev), 0);
    assert_int_equal(tamis_net_zone_name(rev, "zen.spamhaus.org.", q, sizeof q), 0);
    assert_string_equal(q, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
                           "zen.spamhaus.org");
}

static void test_declarations(void **state)
{
    (void)state;
    NEED(stock);
    tamis_arena_t *a = tamis_arena_new(0);
    tamis_rules_uribl_t *u;
    size_t n;
    assert_int_equal(tamis_rules_uribl(stock, a, &u, &n), 0);
    bool dbl = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(u[i].rule, "URIBL_DBL_SPAM") == 0) {
            dbl = true;
            assert_string_equal(u[i].zone, "dbl.spamhaus.org");
            assert_string_equal(u[i].subtest, "127.0.1.2");
            assert_int_equal(u[i].kind, TAMIS_URIBL_RHSBL);
            assert_true(u[i].tflags & TAMIS_TFLAG_NOTRIM);
            assert_true(u[i].tflags & TAMIS_TFLAG_DOMAINS_ONLY);
        }
    assert_true(dbl);
    assert_true(tamis_rules_is_dns_block(stock, "URIBL_BLOCKED", "multi.uribl.com."));
    assert_false(tamis_rules_is_dns_block(stock, "URIBL_BLACK", "multi.uribl.com"));
    tamis_rules_net_rule_t *r;
    assert_int_equal(tamis_rules_net_rules(stock, 1, a, &r, &n), 0);
    size_t scored = 0;
    for (size_t i = 0; i < n; i++)
        scored += r[i].scored;
    assert_true(scored > 20);
    assert_int_equal(tamis_rules_net_rules(stock, 0, a, &r, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_false(r[i].scored);
    tamis_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listed_uri),        cmocka_unit_test(test_uri_ns_and_a),
        cmocka_unit_test(test_listed_relay),      cmocka_unit_test(test_auth_wired),
        cmocka_unit_test(test_authres_header),    cmocka_unit_test(test_unlisted),
        cmocka_unit_test(test_blocked),           cmocka_unit_test(test_meta),
        cmocka_unit_test(test_skip_domain),       cmocka_unit_test(test_cap),
        cmocka_unit_test(test_trusted_relay),     cmocka_unit_test(test_select),
        cmocka_unit_test(test_reverse_v6),        cmocka_unit_test(test_declarations),
        cmocka_unit_test(test_rdns_helo),         cmocka_unit_test(test_senders),
        cmocka_unit_test(test_domain_preference), cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
