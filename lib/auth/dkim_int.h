/*
 * lib/auth/dkim_int.h: the DKIM and DMARC pieces of lib/auth that the orchestration (auth.c), the
 * unit tests and the fuzz targets share. Pure functions: no DNS, no globals.
 *
 * Limits (named, so the parsers are bounded whatever the input):
 *   TAMIS__TAG_MAX           tags in one tag-list (DKIM-Signature, key record, DMARC record)
 *   TAMIS__DKIM_MAX_HFIELDS  names in one h= list
 *   TAMIS__DKIM_MAX_FIELD    bytes of one DKIM-Signature field considered
 */
#ifndef TAMIS_AUTH_DKIM_INT_H
#define TAMIS_AUTH_DKIM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tamis/auth.h"

#define TAMIS__TAG_MAX 64
#define TAMIS__DKIM_MAX_HFIELDS 128
#define TAMIS__DKIM_MAX_FIELD 65536
#define TAMIS__DKIM_MAX_SIGS 16

/* ---- tag=value lists (RFC 6376 §3.2) ----------------------------------------------------------
 */

typedef struct {
    tamis_slice_t name;  /* borrowed from the input */
    tamis_slice_t value; /* without leading/trailing FWS; inner FWS kept */
} tamis__tag_t;

/* Parses a tag-list. Strict: a tag name is ALPHA *(ALNUM / "_"), '=' is required, a value holds
 * only VCHAR but ';' and folding white space, a name appears once. An empty trailing element
 * (final ';') is allowed. Returns 0, TAMIS_EPARSE (syntax, duplicate) or TAMIS_ELIMIT (more than
 * max tags). */
int tamis__taglist_parse(const char *s, size_t n, tamis__tag_t *tags, size_t max, size_t *count);
/* The value of tag name, or NULL. */
const tamis__tag_t *tamis__tag_find(const tamis__tag_t *tags, size_t count, const char *name);

/* Base64 with FWS ignored (RFC 6376 §2.4); decoding stops at the first "=" (what follows is
 * ignored, as Perl's MIME::Base64 does for Mail::DKIM). out must hold 3*(n/4)+3 bytes. -1 on a
 * character outside the alphabet or a lone trailing sextet. */
long tamis__dkim_b64_decode(const char *s, size_t n, unsigned char *out);

/* ---- DKIM-Signature ---------------------------------------------------------------------------
 */

typedef enum {
    TAMIS__DKIM_RSA_SHA1 = 1,
    TAMIS__DKIM_RSA_SHA256,
    TAMIS__DKIM_ED25519_SHA256,
} tamis__dkim_alg_t;

typedef struct {
    tamis__dkim_alg_t alg;
    bool hdr_relaxed, body_relaxed;
    char *d; /* lower case */
    char *s;
    char *i;        /* as written, or NULL */
    char *i_domain; /* lower-case domain of i= (d when i= is absent) */
    char **h;       /* field names in h= order */
    size_t hn;
    unsigned char *b; /* decoded signature */
    size_t blen;
    unsigned char bh[64];
    size_t bhlen;
    bool has_l, has_t, has_x;
    uint64_t l;
    int64_t t, x;
} tamis__dkim_sig_t;

/* Parses the value of a DKIM-Signature field (bytes after "DKIM-Signature:", folding kept) into
 * out, strings in arena. On a permanent error returns TAMIS_EPARSE / TAMIS_EUNSUPPORTED with *why
 * set to a static reason; out is then partially filled (d, s, when they parsed). */
int tamis__dkim_sig_parse(const char *v, size_t n, tamis_arena_t *arena, tamis__dkim_sig_t *out,
                          const char **why);

/* A key record (RFC 6376 §3.6.1). */
typedef struct {
    bool rsa;                /* k=rsa (default) / k=ed25519 */
    bool revoked;            /* p= empty */
    bool testing;            /* t=y */
    bool strict_domain;      /* t=s */
    bool sha1_ok, sha256_ok; /* h= (both when absent) */
    unsigned char *key;      /* decoded p= */
    size_t keylen;
} tamis__dkim_key_t;

/* Parses one TXT record. Returns 0, TAMIS_EPARSE (with *why), TAMIS_EUNSUPPORTED (k= or s=). */
int tamis__dkim_key_parse(const char *txt, size_t n, tamis_arena_t *arena, tamis__dkim_key_t *out,
                          const char **why);

/* ---- canonicalisation (RFC 6376 §3.4) ---------------------------------------------------------
 */

/* Sink for canonicalised bytes. */
typedef void (*tamis__canon_sink)(void *ctx, const char *p, size_t n);

/* Canonicalises a body (LF or CRLF line ends; a bare LF is taken as CRLF) and sends at most
 * limit bytes (UINT64_MAX = all) to sink. Returns the length of the whole canonical body. */
uint64_t tamis__dkim_canon_body(const char *body, size_t n, bool relaxed, uint64_t limit,
                                tamis__canon_sink sink, void *ctx);

/* Appends the canonical form of one header field (its pristine bytes "Name: value EOL…") to out,
 * with a final CRLF unless no_crlf. */
void tamis__dkim_canon_header(const char *field, size_t n, bool relaxed, bool no_crlf,
                              tamis_buf_t *out);

/* The field with the value of its b= tag removed (the bytes between "b=" and the next ';' or the
 * end), for hashing the signature's own header. Allocated in arena; NULL on ENOMEM. */
char *tamis__dkim_strip_b(const char *field, size_t n, tamis_arena_t *arena, size_t *outlen);

/* ---- DMARC ------------------------------------------------------------------------------------
 */

typedef struct {
    bool valid_p; /* p= present and one of none/quarantine/reject */
    tamis_dmarc_policy_t p, sp;
    bool has_sp; /* sp= present and valid */
    bool adkim_strict, aspf_strict;
    unsigned pct; /* 0..100, default 100 */
    bool has_pct;
    bool has_rua; /* rua= with at least one mailto: or https: URI */
} tamis__dmarc_rec_t;

/* Whether a TXT record is a DMARC record at all: it starts with "v=DMARC1" (any case). */
bool tamis__dmarc_is_record(const char *txt, size_t n);
/* Parses a record (which must start "v=DMARC1"). Returns 0 or TAMIS_EPARSE. Unknown tags are
 * ignored (RFC 7489 §6.3); bad values of known tags are errors except for p= / sp=, reported
 * through valid_p / has_sp so the caller can apply §6.6.3 (p=none when rua= is usable). */
int tamis__dmarc_parse(const char *txt, size_t n, tamis__dmarc_rec_t *out);

/* The verdict for one usable record (RFC 7489 §6.6, as Mail::DMARC): PASS when a DKIM domain
 * (d= of a passing signature) or spf_domain (the domain that got an SPF pass: the MAIL FROM's,
 * else the HELO's; NULL when none) aligns with author under adkim= / aspf= (relaxed: the same
 * organisational domain); else FAIL. *policy: the effective policy (sp= for a subdomain when the
 * record came from the organisational domain, else p=); for FAIL made one step milder (reject →
 * quarantine → none) when roll (0..99) >= pct=. */
tamis_auth_status_t tamis__dmarc_decide(const tamis__dmarc_rec_t *d, const char *author,
                                        bool at_org, const char *const *dkim_domains, size_t ndkim,
                                        const char *spf_domain, unsigned roll, tamis_arena_t *arena,
                                        tamis_dmarc_policy_t *policy);

/* Relaxed alignment compares organisational domains: the registrable domain (libpsl's built-in
 * list), or the name itself when it has none. Result in arena; NULL on ENOMEM. */
const char *tamis__org_domain(const char *domain, tamis_arena_t *arena);

/* The domain of the first address in a From: value (lower case, without a trailing dot), or NULL
 * when none is found. */
char *tamis__author_domain(const char *from, tamis_arena_t *arena);
/* That address itself, "local@domain" with the domain as above (SpamAssassin's From:addr), or
 * NULL. */
char *tamis__author_address(const char *from, tamis_arena_t *arena);

#endif
