/*
 * Private interface between the rule engine (run.c, parser) and the native eval: functions
 * (eval_*.c). Not installed; only lib/rules includes it.
 *
 * An eval function receives the message, the settings, the trust-evaluated relays and the rule's
 * string arguments, and returns the hit value: 0 for no hit, anything else is a hit (usually 1;
 * SpamAssassin's evals return 1/0, a few return counts). It may attach a short detail text to the
 * hit with tamis__eval_log(). It must not keep pointers past the call except into the arena.
 *
 * Evals run on worker threads, many at once, on the same immutable rule set: no static mutable
 * state. Per-message memoisation goes in the context's memo slots (arena-backed).
 */
#ifndef TAMIS_RULES_EVAL_H
#define TAMIS_RULES_EVAL_H

#include "tamis/conf.h"
#include "tamis/core.h"
#include "tamis/msg.h"
#include "tamis/rules.h"

/* One relay after trust evaluation (spec-rules §6.4), oldest-last like the Received chain. */
typedef struct {
    const tamis_relay_t *r; /* the parsed Received data (lib/msg) */
    bool trusted;
    bool internal;
    bool msa;
    bool auth; /* authenticated submission seen */
} tamis__relay_t;

typedef struct {
    tamis__relay_t *all; /* parsed, non-skipped relays, newest first */
    size_t count;
    size_t trusted_count;      /* the first trusted_count entries are trusted */
    size_t internal_count;     /* the first internal_count entries are internal */
    tamis_rules_relays_t text; /* X-Spam-Relays-* strings, last external ip, … */
    bool unparseable;          /* some Received field could not be parsed */
} tamis__relays_t;

/* Computes the trust split of m's Received chain under conf (relays.c). Memory from arena. */
int tamis__relays_compute(const tamis_conf_t *conf, const tamis_msg_t *m, tamis_arena_t *arena,
                          tamis__relays_t *out);

/* SpamAssassin's IP_PRIVATE (RFC 1918, loopback, link-local, CGN, IPv6 ULA …); relays.c. */
bool tamis__ip_is_private(const char *ip);

/* Per-message memo slots an eval file may use (keyed by a static string address). */
typedef struct tamis__memo tamis__memo_t;

typedef struct tamis_eval_ctx {
    const tamis_ruleset_t *rs;
    const tamis_conf_t *conf;
    const tamis_msg_t *msg;
    const tamis__relays_t *relays;
    const tamis_rules_run_opts_t *opts;
    tamis_arena_t *arena;
    const char *rule;            /* name of the rule being evaluated */
    tamis_rule_type_t rule_type; /* header/body/rawbody/full eval */
    const char *log;             /* set by tamis__eval_log (arena) */
    tamis__memo_t *memo;
    void *engine; /* private to run.c */
} tamis_eval_ctx_t;

/* The value of a header expression exactly as a SpamAssassin header rule sees it ("Subject",
 * "From:addr", "ALL", "ToCc", "X-Spam-Relays-External", "EnvelopeFrom", "MESSAGEID", …; see
 * spec-rules §3.1). Returns NULL when the header is missing (undefined in Perl). Arena memory.
 * Implemented in header.c. */
const char *tamis__header_get(tamis_eval_ctx_t *ctx, const char *expr);

/* PerMsgStatus::all_from_addrs (Resent-From, else From, Envelope-Sender, … EnvelopeFrom);
 * eval_header.c. Arena memory; ctx needs rs, conf, msg, relays, opts and arena. */
size_t tamis__all_from_addrs(tamis_eval_ctx_t *ctx, const char *const **out);

/* Attaches a detail text ("[...]" in reports) to the current hit. */
void tamis__eval_log(tamis_eval_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Memo: returns the pointer stored under key, or NULL; set stores it for this message. */
void *tamis__memo_get(tamis_eval_ctx_t *ctx, const void *key);
int tamis__memo_set(tamis_eval_ctx_t *ctx, const void *key, void *value);

typedef double (*tamis_eval_fn)(tamis_eval_ctx_t *ctx, const char *const *args, size_t nargs);

/* Rule types an eval may be used with (bit per tamis_rule_type_t of the eval variants). */
enum {
    TAMIS_EVAL_HEADER = 1 << 0,
    TAMIS_EVAL_BODY = 1 << 1,
    TAMIS_EVAL_RAWBODY = 1 << 2,
    TAMIS_EVAL_FULL = 1 << 3,
    TAMIS_EVAL_ANY = 0xf,
};

typedef struct {
    const char *name; /* SpamAssassin's function name, e.g. "check_for_shifted_date" */
    tamis_eval_fn fn;
    unsigned types; /* TAMIS_EVAL_* */
    bool net;       /* delegated to opts->net_eval (DNS-based) instead of fn */
} tamis_eval_def_t;

/* The registry: every eval_*.c file contributes a table; eval_table.c joins them. Lookup by name;
 * NULL when Tamis does not implement the function (the rule is listed by --lint and never hits). */
const tamis_eval_def_t *tamis__eval_lookup(const char *name);

/* Tables contributed by the eval files (each NULL-name terminated). */
extern const tamis_eval_def_t tamis__evals_header[]; /* eval_header.c: HeaderEval, WLBLEval… */
extern const tamis_eval_def_t tamis__evals_body[];   /* eval_body.c: BodyEval, MIMEEval, HTMLEval */
extern const tamis_eval_def_t tamis__evals_relay[];  /* eval_relay.c: RelayEval, trust */
extern const tamis_eval_def_t tamis__evals_net[]; /* eval_net.c: DNSEval/URIDNSBL stubs → net */

/* Argument helpers: numeric value of an argument ("undef" → NAN, "inf" → INFINITY). */
double tamis__eval_num(const char *arg);

#endif
