/*
 * net: asynchronous DNS for the network tests (DNSBL, URIBL), and the pure DNSBL helpers.
 *
 * The resolver is c-ares driven by a libuv loop that the caller passes in (tamisd's loop, or a
 * private loop in a one-shot tool). Nothing ever blocks on DNS: sockets are uv_poll handles, the
 * c-ares timeouts one uv_timer. Identical queries in flight are merged (one packet, many waiters);
 * answers are cached with their TTL (negative answers with the SOA minimum), within a size bound.
 *
 * Threads: a tamis_net_t belongs to its loop thread. tamis_net_new/_free/_query/_cancel run only
 * there. Worker threads (scans) use a batch: tamis_net_batch_* may be called from any thread; the
 * batch hands its queries to the loop through a mutex-protected queue and a uv_async_t, and the
 * worker waits for the answers with a deadline (tamis_net_batch_wait). tamis_net_stats may be read
 * from any thread. See docs/dns.md.
 *
 * Ownership: answers (tamis_net_answer_t) are immutable and reference-counted; a callback borrows
 * one for the duration of the call (take a reference with tamis_net_answer_ref to keep it). Every
 * string passed in is copied.
 *
 * Errors: TAMIS_EINVAL (bad name, type or option), TAMIS_ENOMEM, TAMIS_ELIMIT (too many queries in
 * flight or in a batch), TAMIS_ECONFIG (bad server list), TAMIS_EIO (c-ares or libuv failure).
 * A callback is never called when the starting call returned an error.
 */
#ifndef TAMIS_NET_H
#define TAMIS_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tamis/core.h"

/* ---- answers ----------------------------------------------------------------------------------
 */

/* Record types (DNS type numbers): A, NS and TXT for the network tests, and what SPF needs
 * besides (PTR, MX, AAAA). */
typedef enum {
    TAMIS_NET_A = 1,
    TAMIS_NET_NS = 2,
    TAMIS_NET_PTR = 12,
    TAMIS_NET_MX = 15,
    TAMIS_NET_TXT = 16,
    TAMIS_NET_AAAA = 28,
} tamis_net_type_t;

/* The outcome of a query. Only OK answers can carry records; OK with count 0 is NODATA. */
typedef enum {
    TAMIS_NET_OK = 0,
    TAMIS_NET_NXDOMAIN,
    TAMIS_NET_SERVFAIL,
    TAMIS_NET_REFUSED,
    TAMIS_NET_TIMEOUT,   /* no answer within the query deadline */
    TAMIS_NET_ERROR,     /* FORMERR, NOTIMP, malformed answer, network error */
    TAMIS_NET_CANCELLED, /* resolver freed while the query was pending */
} tamis_net_status_t;

/* Static name ("ok", "nxdomain", …) for logs; never NULL. */
const char *tamis_net_status_name(tamis_net_status_t s);

/* Limits on what one answer may hold (larger answers are truncated to them). */
#define TAMIS_NET_MAX_RECORDS 64
#define TAMIS_NET_MAX_TXT 1024 /* bytes of one TXT record (its strings joined) */

typedef struct {
    tamis_net_status_t status;
    tamis_net_type_t type;
    uint32_t ttl; /* seconds the answer may be cached (negative TTL for NXDOMAIN/NODATA) */
    size_t count; /* records of `type` in the answer section */
    /* A: IPv4 addresses in host byte order (127.0.0.2 == 0x7f000002); NULL for other types. */
    const uint32_t *addrs;
    /* TXT: each record's character-strings joined (as SpamAssassin does), NUL bytes replaced by
     * '?'; NS, PTR: host names; MX: exchange names in order of preference (lowest first, the
     * answer's order among equals; the preference itself is dropped; "" for a null MX "."). Names
     * are lower case, without trailing dot, unprintable bytes as '?'. NULL for A and AAAA. */
    const char *const *strs;
    /* AAAA: IPv6 addresses in network byte order (as in the packet); NULL for other types. */
    const uint8_t (*addrs6)[16];
} tamis_net_answer_t;

/* Reference counting (atomic: answers may cross threads). unref of NULL is a no-op. */
const tamis_net_answer_t *tamis_net_answer_ref(const tamis_net_answer_t *a);
void tamis_net_answer_unref(const tamis_net_answer_t *a);

/* Parses a raw DNS response to a query of `type` (pure; the resolver and the fuzzer use it).
 * Records of `type` in the answer section are taken (CNAME chains are followed as c-ares does:
 * any owner name), the TTL is the minimum of theirs, a negative answer takes min(SOA TTL, SOA
 * minimum) from the authority section (0 when there is no SOA). On success *out holds a new
 * answer with one reference. Errors: TAMIS_EPARSE (malformed: truncated, bad name pointers),
 * TAMIS_ENOMEM, TAMIS_EINVAL. */
int tamis_net_answer_parse(const uint8_t *buf, size_t len, tamis_net_type_t type,
                           const tamis_net_answer_t **out);

/* ---- resolver (loop thread) ------------------------------------------------------------------ */

typedef struct {
    /* "addr[:port],addr[:port]" (IPv6 as [addr]:port), or NULL/"" for /etc/resolv.conf. */
    const char *servers;
    unsigned timeout_ms;   /* first try's timeout (c-ares doubles it per round); default 2000 */
    unsigned tries;        /* rounds over the servers; default 2 */
    unsigned deadline_ms;  /* hard bound per query, then TIMEOUT; 0 = computed from the above */
    size_t cache_entries;  /* cache size bound; 0 disables the cache; default 10000 */
    unsigned max_ttl;      /* cap on cached TTLs (s); default 86400 */
    unsigned max_neg_ttl;  /* cap on negative TTLs (s); default 3600 */
    unsigned servfail_ttl; /* seconds SERVFAIL/REFUSED are cached; default 0 (not cached) */
    size_t max_inflight;   /* distinct queries in flight; beyond, TAMIS_ELIMIT; default 4096 */
    /* Called by tamis_net_batch_wait on the waiting thread just before it blocks and just after
     * it wakes (both or neither; arg = wait_arg). A daemon that runs more scan threads than
     * cores lets a waiting scan give its CPU share to another (tamisd's CPU slots). NULL = none. */
    void (*wait_begin)(void *arg);
    void (*wait_end)(void *arg);
    void *wait_arg;
} tamis_net_opts_t;

/* Fills o with the defaults above. */
void tamis_net_opts_default(tamis_net_opts_t *o);

/* Counters, monotonic since tamis_net_new (cache_entries and inflight are current values). */
typedef struct {
    uint64_t queries;    /* queries asked by callers */
    uint64_t sent;       /* queries handed to c-ares (packets, not counting retries) */
    uint64_t merged;     /* queries that joined one already in flight */
    uint64_t cache_hits; /* queries answered from the cache */
    uint64_t timeouts;   /* queries in flight that ended in TIMEOUT */
    uint64_t errors;     /* SERVFAIL, REFUSED, ERROR answers */
    uint64_t nxdomain;   /* NXDOMAIN answers received (not from cache) */
    uint64_t cancelled;  /* waiters cancelled before their answer */
    uint64_t cache_entries;
    uint64_t inflight;
} tamis_net_stats_t;

typedef struct tamis_net tamis_net_t;

/* Creates a resolver on loop (loop thread only). The caller owns *out and frees it with
 * tamis_net_free before closing the loop. o NULL = defaults. */
int tamis_net_new(uv_loop_t *loop, const tamis_net_opts_t *o, tamis_net_t **out, char *err,
                  size_t errlen);

/* Starts closing the resolver (loop thread; NULL is a no-op; may be called from a resolver
 * callback). Pending waiters get TAMIS_NET_CANCELLED, waiting batches wake up. The memory is
 * released in the libuv close callbacks: run the loop (uv_run) afterwards until it returns.
 * Every thread that holds a batch must have stopped submitting before this call. */
void tamis_net_free(tamis_net_t *n);

/* Any thread. */
void tamis_net_stats(const tamis_net_t *n, tamis_net_stats_t *out);

/* Answer callback; always on the loop thread, never inside the starting call (cache hits are
 * delivered on the next loop iteration). ans is borrowed for the call. */
typedef void (*tamis_net_cb)(void *arg, const tamis_net_answer_t *ans);

typedef struct tamis_net_query tamis_net_query_t;

/* Asks for name/type (loop thread). name: a domain name, trailing dot optional, <= 253 bytes,
 * labels 1-63 bytes of printable ASCII without '\\' or whitespace; compared case-insensitively.
 * On success the callback is called exactly once unless tamis_net_cancel is called first. If
 * handle is not NULL it receives a handle valid until the callback starts or cancel returns. */
int tamis_net_query(tamis_net_t *n, const char *name, tamis_net_type_t type, tamis_net_cb cb,
                    void *arg, tamis_net_query_t **handle, char *err, size_t errlen);

/* Cancels a pending query (loop thread): its callback will not be called, so the caller may free
 * arg right away. The packet in flight is not withdrawn (other waiters may share it, and its
 * answer still fills the cache). */
void tamis_net_cancel(tamis_net_query_t *q);

/* ---- batches (any thread) -------------------------------------------------------------------- */

/* A scan's set of queries: built and waited for on a worker thread, resolved on the loop. */
typedef struct tamis_net_batch tamis_net_batch_t;

/* New empty batch for resolver n (any thread). NULL on allocation failure. */
tamis_net_batch_t *tamis_net_batch_new(tamis_net_t *n);

/* Adds a query and starts it right away (the hand-off to the loop is a queue push and a
 * uv_async_send), or at the next flush when the batch is held. *index (may be NULL) receives its
 * slot for tamis_net_batch_answer. At most 1024 queries per batch. Errors: TAMIS_EINVAL,
 * TAMIS_ENOMEM, TAMIS_ELIMIT, TAMIS_EIO (the loop could not be woken; the slot still completes when
 * the loop next runs). */
int tamis_net_batch_add(tamis_net_batch_t *b, const char *name, tamis_net_type_t type,
                        size_t *index);

/* Holds the batch's later adds back until tamis_net_batch_flush (or a wait, a run or the free,
 * which flush first), so that a planner's many adds reach the loop in one hand-off and wake it
 * once instead of once per query. Owner thread only, as flush. NULL is a no-op. */
void tamis_net_batch_hold(tamis_net_batch_t *b);

/* Hands the held adds to the loop (one queue push, one wake-up); they start then. 0 or
 * TAMIS_EIO (the loop could not be woken; the slots still complete when it next runs). */
int tamis_net_batch_flush(tamis_net_batch_t *b);

/* Blocks the calling worker thread until at least `want` of the batch's queries are answered
 * (want 0 or > count = all), or until deadline_ms (tamis_now_ms() clock) passes. Returns how
 * many are answered. Never call it on the loop thread (use tamis_net_batch_run there). */
size_t tamis_net_batch_wait(tamis_net_batch_t *b, double deadline_ms, size_t want);

/* Blocks the calling worker thread until slot i is answered or deadline_ms passes; returns its
 * answer (borrowed, as tamis_net_batch_answer) or NULL. One wait-hook pair at most. */
const tamis_net_answer_t *tamis_net_batch_wait_slot(tamis_net_batch_t *b, size_t i,
                                                    double deadline_ms);

/* The same for a one-shot tool on the loop thread, when the loop is not running: runs the loop
 * until every query is answered or deadline_ms passes. Returns how many are answered. */
size_t tamis_net_batch_run(tamis_net_batch_t *b, uv_loop_t *loop, double deadline_ms);

size_t tamis_net_batch_count(const tamis_net_batch_t *b);
/* The answer of slot i, or NULL while it is pending (a query that never answers in time stays
 * NULL: score without it). Borrowed from the batch: valid until tamis_net_batch_free. */
const tamis_net_answer_t *tamis_net_batch_answer(tamis_net_batch_t *b, size_t i);
/* Whether slot i was answered from the cache (for logs). */
bool tamis_net_batch_from_cache(tamis_net_batch_t *b, size_t i);

/* Gives the batch up (any thread; NULL is a no-op): pending queries are cancelled on the loop,
 * answers released. The memory goes when the loop has detached the waiters. */
void tamis_net_batch_free(tamis_net_batch_t *b);

/* ---- DNSBL / URIBL helpers (pure, any thread) ------------------------------------------------ */

/* The reversed form of an IPv4 ("1.2.3.4" -> "4.3.2.1") or IPv6 address (32 nibbles, least
 * significant first: "2001:db8::1" -> "1.0.0.0.….8.b.d.0.1.0.0.2"); IPv4-mapped IPv6 addresses
 * reverse as IPv4. out receives a NUL-terminated string (>= 64 bytes always suffices).
 * Errors: TAMIS_EINVAL (not an address), TAMIS_ELIMIT (out too small). */
int tamis_net_reverse_ip(const char *ip, char *out, size_t outlen);

/* "<left>.<zone>" with the zone's trailing dots removed and a length check (253): left is a
 * reversed IP or a domain. Errors: TAMIS_EINVAL (empty parts, name too long), TAMIS_ELIMIT. */
int tamis_net_zone_name(const char *left, const char *zone, char *out, size_t outlen);

/* A SpamAssassin sub-test (spec-rules §5.2/§5.3) in canonical form. */
typedef enum {
    TAMIS_NET_SUB_MASK,  /* "n": (r & n) != 0 and r in 127/8 */
    TAMIS_NET_SUB_RANGE, /* "n1-n2", and a lone dotted quad "a.b.c.d" (== equality) */
    TAMIS_NET_SUB_VMASK, /* "n/m": (r & m) == (n & m) */
    TAMIS_NET_SUB_REGEX, /* anything else: the caller matches it as a regex on the text */
} tamis_net_subtest_kind_t;

typedef struct {
    tamis_net_subtest_kind_t kind;
    uint32_t n1, n2; /* MASK: n1; RANGE: n1..n2; VMASK: value n1, mask n2 */
} tamis_net_subtest_t;

/* Parses s (numbers are decimal, 0x hex or dotted quads). Never fails: what is not numeric is
 * TAMIS_NET_SUB_REGEX. */
void tamis_net_subtest_parse(const char *s, tamis_net_subtest_t *out);

/* Applies a numeric sub-test to an A answer r (host byte order); false for REGEX. */
bool tamis_net_subtest_match(const tamis_net_subtest_t *t, uint32_t r);

/* What an A answer from a list means. */
typedef enum {
    TAMIS_NET_LISTED = 0, /* a listing code */
    TAMIS_NET_BLOCKED, /* the list refused us: public resolver, over quota, blocked, error code */
    TAMIS_NET_BOGUS,   /* outside 127.0.0.0/8 (resolver hijack, wildcard): ignore */
} tamis_net_verdict_t;

/* Classifies answer r (host byte order) for zone (trailing dot optional, any case). BLOCKED:
 * 127.255.255.0/24 from any list (Spamhaus .252 typo / .254 public resolver / .255 over quota),
 * 127.0.0.1 from *.uribl.com and *.surbl.org (query refused), 127.0.1.255 from dbl.spamhaus.org
 * (IP queried on a domain list). If reason is not NULL it receives a static text for the log. */
tamis_net_verdict_t tamis_net_classify(const char *zone, uint32_t r, const char **reason);

/* Whether an A answer fires a rule: never for BOGUS; for BLOCKED only when the rule is one of the
 * list's "blocked" informational rules (dns_block_rule, block_rule true) whose sub-test matches,
 * or when the sub-test is an exact quad naming the code (URIBL_DBL_ERROR); for LISTED when t is
 * NULL (any listing) or t matches. REGEX sub-tests return false: the caller matches the dotted
 * text itself, after checking tamis_net_classify. */
bool tamis_net_dnsbl_hit(const char *zone, const tamis_net_subtest_t *t, uint32_t r,
                         bool block_rule);

#endif
