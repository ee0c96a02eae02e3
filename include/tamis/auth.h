/*
 * auth: mail authentication. SPF (RFC 7208), DKIM verification (RFC 6376, ed25519 per RFC 8463)
 * and DMARC (RFC 7489) for one message, their SpamAssassin eval functions (check_for_spf_*,
 * check_dkim_*, check_dmarc_*), and the Authentication-Results header (RFC 8601).
 *
 * DNS goes through tamis_auth_dns_t, which the scan layer builds on its tamis_net batch (so every
 * lookup shares the resolver's cache, merging and per-message budget); nothing here blocks except
 * inside dns->wait, which is bounded by the scan's deadline. A lookup that does not answer in time
 * is a temperror, never a pass and never a fail.
 *
 * Split in two so the lookups overlap with rule matching: tamis_auth_start() computes what needs no
 * DNS (DKIM body hashes, the SPF inputs, the author domain) and starts the first lookups of all
 * three checks; tamis_auth_finish() walks SPF (includes, redirects), verifies the DKIM signatures
 * and evaluates DMARC, waiting for answers as it goes.
 *
 * Ownership: every result string lives in the arena given to tamis_auth_start(); the state is
 * freed with that arena. Threads: one message on one (worker) thread.
 */
#ifndef TAMIS_AUTH_H
#define TAMIS_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "tamis/conf.h"
#include "tamis/core.h"
#include "tamis/msg.h"
#include "tamis/net.h"

/* ---- DNS access ------------------------------------------------------------------------------ */

typedef struct {
    /* Starts a lookup of name/type; *slot identifies it for wait. Returns 0 or a TAMIS_E* code
     * (over the per-message query cap: TAMIS_ELIMIT; treat as temperror). */
    int (*start)(void *ctx, const char *name, tamis_net_type_t type, size_t *slot);
    /* Waits for that lookup until the scan's deadline. The answer is borrowed (valid until the
     * arena / batch is freed); NULL = no answer in time (temperror). */
    const tamis_net_answer_t *(*wait)(void *ctx, size_t slot);
    void *ctx;
} tamis_auth_dns_t;

/* The adapter the scan uses: lookups are tamis_net_batch_add on b; wait blocks in
 * tamis_net_batch_wait until the slot is answered or deadline_ms (tamis_now_ms clock) passes.
 * The adapter's state is allocated in arena. */
int tamis_auth_dns_batch(tamis_auth_dns_t *out, tamis_net_batch_t *b, double deadline_ms,
                         tamis_arena_t *arena);

/* ---- results -----------------------------------------------------------------------------------
 */

typedef enum {
    TAMIS_AUTH_NONE = 0, /* not checked, or nothing to check (no record, no signature) */
    TAMIS_AUTH_PASS,
    TAMIS_AUTH_FAIL,
    TAMIS_AUTH_SOFTFAIL, /* SPF only */
    TAMIS_AUTH_NEUTRAL,  /* SPF; DKIM: signature present but not verifiable (policy) */
    TAMIS_AUTH_TEMPERROR,
    TAMIS_AUTH_PERMERROR,
} tamis_auth_status_t;

/* "none", "pass", "fail", "softfail", "neutral", "temperror", "permerror". */
const char *tamis_auth_status_name(tamis_auth_status_t s);

typedef struct {
    tamis_auth_status_t status;
    const char *domain;    /* d= */
    const char *selector;  /* s= */
    const char *algorithm; /* "rsa-sha256", "rsa-sha1", "ed25519-sha256" */
    unsigned key_bits;     /* RSA modulus bits (0 for ed25519 or when no key) */
    const char *reason;    /* short text for the header comment / report, or NULL */
    /* Domain of i= (d= when i= is absent), lower case: what SpamAssassin matches against the
     * author and envelope domains (DKIM_VALID_AU, DKIM_VALID_EF). NULL when the tags did not
     * parse. */
    const char *identity_domain;
} tamis_dkim_sig_t;

typedef enum {
    TAMIS_DMARC_POLICY_NONE = 0,
    TAMIS_DMARC_POLICY_QUARANTINE,
    TAMIS_DMARC_POLICY_REJECT,
} tamis_dmarc_policy_t;

typedef struct {
    /* SPF for the envelope sender (MAIL FROM; postmaster@HELO when it is empty) and the HELO. */
    tamis_auth_status_t spf_mailfrom, spf_helo;
    const char *spf_mailfrom_domain, *spf_helo_domain; /* NULL when not checked */
    /* DKIM: every signature (at most 16 are verified), in header order. */
    const tamis_dkim_sig_t *sigs;
    size_t sig_count;
    /* Whether DKIM was checked at all (false with skip_dkim, no_dns or no resolver): the DKIM
     * evals never hit without it, as SpamAssassin's plugin does nothing without DNS. */
    bool dkim_checked;
    /* The author domain's signing practice for check_dkim_adsp (the letters of
     * tamis_auth_adsp_t), or 0 when none applies: DKIM not checked, no usable author domain, a
     * valid author signature, or its key lookup failed temporarily. */
    char adsp;
    /* DMARC for the author (From:) domain. status NONE with has_record false = no record.
     * dmarc_checked is false when DMARC was not evaluated (skip_dmarc, no DNS, no From: domain,
     * or no client_ip: SpamAssassin needs an external relay); then no DMARC eval hits, not even
     * check_dmarc_missing. */
    bool dmarc_checked;
    tamis_auth_status_t dmarc;
    bool dmarc_has_record;
    tamis_dmarc_policy_t dmarc_policy; /* p= or sp=, after pct= sampling */
    const char *author_domain;         /* From: domain, or NULL */
    const char *envelope_domain;       /* envelope sender's domain, or NULL */
    const char *author_address;        /* From: address (domain in lower case), or NULL */
    const char *envelope_from;         /* the input's envelope sender, lower case, or NULL */
    const tamis_conf_t *conf;          /* the input's conf (welcome lists), borrowed, or NULL */
} tamis_auth_result_t;

/* ---- the check ------------------------------------------------------------------------------- */

/* One adsp_override entry (SpamAssassin's DKIM plugin): domain in lower case, exact or a
 * wildcard "*.example.com" (subdomains) or "*" (everything); practice is SpamAssassin's letter:
 * 'N' nxdomain, 'U' unknown, 'A' all, 'D' discardable, '1' '2' '3' custom_low/med/high. */
typedef struct {
    const char *domain;
    char practice;
} tamis_auth_adsp_t;

typedef struct {
    /* From the first untrusted relay (SpamAssassin's choice) and the envelope-sender finder of the
     * scan layer. client_ip NULL = SPF not checked (all relays trusted, or none parsed). */
    const char *client_ip;
    const char *helo;
    const char *envelope_from; /* address without <>; "" = null sender; NULL = unknown */
    bool no_dns;               /* local tests only: DKIM_SIGNED-style results only, no lookups */
    bool skip_spf, skip_dkim, skip_dmarc;
    double now; /* seconds since the epoch, for DKIM t=/x= (0 = time(NULL)) */
    /* ADSP (RFC 5617, historic) as SpamAssassin still applies it: the conf's adsp_override
     * entries (tamis_conf_t.adsp_override, same layout); a domain without one is looked up
     * (_adsp._domainkey TXT, and the domain itself for NXDOMAIN). */
    const tamis_auth_adsp_t *adsp_override;
    size_t adsp_override_count;
    /* For the welcome-list evals (check_for_{,def_}{spf,dkim}_welcomelist_from): the
     * *_from_spf, *_from_dkim and *_auth lists. Borrowed: it must outlive the result. NULL =
     * those evals never hit. */
    const tamis_conf_t *conf;
} tamis_auth_input_t;

typedef struct tamis_auth tamis_auth_t;

/* Starts the check of m. dns may be NULL (as no_dns). The state lives in arena (no free call).
 * Fails only on TAMIS_ENOMEM / TAMIS_EINVAL. */
int tamis_auth_start(const tamis_msg_t *m, const tamis_auth_input_t *in,
                     const tamis_auth_dns_t *dns, tamis_arena_t *arena, tamis_auth_t **out,
                     char *err, size_t errlen);

/* Finishes (idempotent: later calls return the same result). The result lives in the arena. */
const tamis_auth_result_t *tamis_auth_finish(tamis_auth_t *a);

/* The eval functions of SpamAssassin's SPF, DKIM and DMARC plugins, over a finished result:
 * check_for_spf_{pass,neutral,none,fail,softfail,permerror,temperror},
 * check_for_spf_helo_{…the same…}, check_dkim_signed([domain…]), check_dkim_valid([domain…]),
 * check_dkim_valid_author_sig, check_dkim_valid_envelopefrom, check_dkim_dependable,
 * check_dkim_testing, check_dkim_adsp(practices[, domain…]), check_dkim_signall,
 * check_dkim_signsome, check_dkim_verified, check_dmarc_{pass,reject,quarantine,none,missing},
 * and the welcome lists check_for_{,def_}{spf,dkim}_{welcomelist,whitelist}_from.
 * *known is set false for a name it does not implement. Returns whether the rule hits. */
bool tamis_auth_eval(const tamis_auth_result_t *r, const char *func, const char *const *args,
                     size_t nargs, bool *known);

/* Appends "Authentication-Results: <authserv_id>; spf=…; dkim=…; dmarc=…" (RFC 8601 syntax, one
 * dkim= per signature, folded at 78 columns, no trailing newline). */
int tamis_auth_results_header(const tamis_auth_result_t *r, const char *authserv_id,
                              tamis_buf_t *out);

#endif
