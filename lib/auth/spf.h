/*
 * lib/auth/spf.h: the pure parts of SPF (RFC 7208) for spf.c, its unit tests and its fuzz target:
 * the record parser (§4.6, §5, §6), the macro expander (§7) and the named limits (§4.6.4).
 * Everything here is pure: no DNS, no clock, no global state; memory comes from the caller's
 * arena or buffer. Not installed.
 */
#ifndef TAMIS_SPF_H
#define TAMIS_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth_int.h"

/* Limits. The first four are RFC 7208 §4.6.4's; the others bound our work and memory. */
#define TAMIS_SPF_MAX_LOOKUPS 10  /* include, a, mx, ptr, exists, redirect per check_host() */
#define TAMIS_SPF_MAX_VOID 2      /* lookups answering NXDOMAIN or no records */
#define TAMIS_SPF_MAX_MX 10       /* MX names of one mx mechanism; more is a permerror */
#define TAMIS_SPF_MAX_PTR 10      /* PTR names looked at (the others are ignored) */
#define TAMIS_SPF_MAX_DEPTH 12    /* include/redirect nesting (the lookup limit stops it at 11) */
#define TAMIS_SPF_MAX_RECORD 1023 /* bytes of a record (TXT strings joined); longer: permerror */
#define TAMIS_SPF_MAX_TERMS 128   /* directives and modifiers of one record */
#define TAMIS_SPF_MAX_EXPAND 2048 /* bytes of one macro expansion before the 253 cut */
#define TAMIS_SPF_MAX_NAME 253    /* an expanded domain is cut to this from the left (§7.3) */

typedef enum {
    TAMIS__SPF_ALL = 0,
    TAMIS__SPF_INCLUDE,
    TAMIS__SPF_A,
    TAMIS__SPF_MX,
    TAMIS__SPF_PTR,
    TAMIS__SPF_IP4,
    TAMIS__SPF_IP6,
    TAMIS__SPF_EXISTS,
} tamis__spf_mech_t;

/* One directive: qualifier + mechanism. */
typedef struct {
    tamis__spf_mech_t mech;
    tamis_auth_status_t qualifier; /* PASS (+, the default), FAIL (-), SOFTFAIL (~), NEUTRAL (?) */
    const char *spec;              /* domain-spec, unexpanded; NULL = the current domain */
    unsigned cidr4, cidr6;         /* a, mx (dual CIDR), ip4 (cidr4), ip6 (cidr6) */
    uint8_t addr[16];              /* ip4: addr[0..3]; ip6: all 16 bytes (network order) */
} tamis__spf_term_t;

typedef struct {
    const tamis__spf_term_t *terms;
    size_t count;
    const char *redirect; /* domain-spec of redirect=, or NULL */
    const char *exp;      /* domain-spec of exp=, or NULL */
} tamis__spf_record_t;

/* Whether a TXT string is an SPF version 1 record: "v=spf1" (any case) alone or followed by a
 * space (RFC 7208 §4.5). */
bool tamis__spf_is_record(const char *txt);

/* Parses a whole record (starting "v=spf1"). Any syntax error anywhere is an error (§4.6: the
 * record is not evaluated at all): unknown mechanisms, bad qualifiers, bad addresses or CIDR
 * lengths, a domain-spec that does not end in a top label or a macro, bad macros (c, r, t are
 * allowed only in explanations), redirect= or exp= twice. Unknown modifiers are checked for macro
 * syntax and otherwise ignored. Strings are copied into arena.
 * Returns 0, TAMIS_EPARSE (permerror; err says why), TAMIS_ELIMIT (too long or too many terms:
 * permerror too) or TAMIS_ENOMEM. */
int tamis__spf_parse(const char *txt, tamis_arena_t *arena, tamis__spf_record_t *out, char *err,
                     size_t errlen);

/* The values of the macro letters (§7.2). NULL values expand to "unknown"; i is the dotted form
 * (IPv4 "192.0.2.3", IPv6 32 dotted lower-case nibbles), c the readable one. */
typedef struct {
    const char *s, *l, *o, *d, *i, *p, *v, *h, *c, *r, *t;
} tamis__spf_macros_t;

/* Checks the syntax of a macro-string (exp_text: c, r, t allowed) or, with domain_spec, of a
 * domain-spec (§7.1: it must end in "." toplabel ["."] or a macro). Returns 0 or TAMIS_EPARSE. */
int tamis__spf_macro_check(const char *spec, size_t len, bool exp_text, bool domain_spec);

/* Expands spec (§7.3). exp_text false: a domain for a query: c, r, t refused, the result's
 * trailing dot dropped, and labels removed from the left until it fits 253 bytes; true: an
 * explanation (all letters, nothing cut). Upper-case letters are URL-escaped. out receives a
 * NUL-terminated string. Returns 0, TAMIS_EPARSE (bad macro) or TAMIS_ELIMIT (the expansion
 * exceeds outlen - 1 or TAMIS_SPF_MAX_EXPAND). */
int tamis__spf_expand(const char *spec, const tamis__spf_macros_t *m, bool exp_text, char *out,
                      size_t outlen);

/* The explanation of a fail result (exp=, §6.2), expanded, after tamis__spf_finish; NULL when there
 * is none (no exp=, not a fail, the TXT lookup failed or the text had a syntax error). */
const char *tamis__spf_explanation(const tamis__spf_t *s);

/* Counters of a finished check, for logs and tests: DNS-querying terms and void lookups. */
void tamis__spf_counts(const tamis__spf_t *s, unsigned *lookups, unsigned *voids);

#endif
