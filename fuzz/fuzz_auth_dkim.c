/*
 * libFuzzer target for lib/auth's DKIM parsers and canonicalisations, and the whole check over a
 * message. The first byte picks what the rest is:
 *   0: a DKIM-Signature value (tamis__dkim_sig_parse)      1: a key record (tamis__dkim_key_parse)
 *   2: a body, simple and relaxed, with and without l=     3: a header field (canon + strip_b)
 *   4: a whole message, checked with a table "DNS" that serves an RSA key for any selector, an
 *      Ed25519 key for s=ed and a DMARC record (tamis_auth_start/finish/eval/results_header)
 * Invariants: what parses is consistent (d= and s= set, bh= of the hash's size, From signed), a
 * relaxed body never holds a tab, two spaces or a space before CRLF, l= truncates exactly,
 * the header never has a line over 78 columns unless one word is longer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/auth/dkim_int.h"
#include "tamis/auth.h"
#include "tamis/msg.h"

typedef struct {
    char *data;
    size_t len, cap;
} sink_t;

static void sink(void *ctx, const char *p, size_t n)
{
    sink_t *s = ctx;
    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2;
        char *d = realloc(s->data, cap);
        if (!d)
            abort();
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

/* the keys of tests/unit/auth/dmarc.key (RSA-1024) and ed25519.key: the fixtures verify */
static const char rsa_key[] =
    "v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCYN4fCrRIXRyjM/iwFDp69imaHoiVdXAVkTriXmyh"
    "WLp31EBwfRHoGdltWnp9EVEsZtu04om2tojiDqRRJ+Pok4N6Wg6px6MMMd+ZJb11C1mDP+L4GlyRdH81WbxfK4/uPX"
    "fWnp/Q6XG+jFkBTnjOmGjTbIT4rddVrp9fAAaYWwQIDAQAB";
static const char ed_key[] = "v=DKIM1; k=ed25519; p=xHKta/VpSQm681hTKHcyL4TizXLe9kp8Drs3iOrzyb0=";

static tamis_net_answer_t answers[16];
static const char *txt[16][1];
static size_t nasked;

static int fstart(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    (void)ctx;
    if (nasked == 16 || type != TAMIS_NET_TXT)
        return TAMIS_ELIMIT;
    tamis_net_answer_t *a = &answers[nasked];
    memset(a, 0, sizeof(*a));
    a->type = TAMIS_NET_TXT;
    a->status = TAMIS_NET_OK;
    a->count = 1;
    a->strs = txt[nasked];
    if (strncmp(name, "_dmarc.", 7) == 0)
        txt[nasked][0] = "v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=r";
    else if (strncasecmp(name, "ed._domainkey.", 14) == 0)
        txt[nasked][0] = ed_key;
    else if (strncasecmp(name, "nx.", 3) == 0)
        a->status = TAMIS_NET_NXDOMAIN, a->count = 0, a->strs = NULL;
    else
        txt[nasked][0] = rsa_key;
    *slot = nasked++;
    return 0;
}

static const tamis_net_answer_t *fwait(void *ctx, size_t slot)
{
    (void)ctx;
    return slot < nasked ? &answers[slot] : NULL;
}

static void check_message(const char *data, size_t size)
{
    tamis_msg_t *m;
    if (tamis_msg_parse(data, size, NULL, &m, NULL, 0) != 0)
        return;
    tamis_arena_t *arena = tamis_arena_new(0);
    tamis_auth_input_t in = {0};
    in.client_ip = "192.0.2.1";
    in.envelope_from = "bounce@example.org";
    in.skip_spf = true;
    in.now = 1800000000.0;
    tamis_auth_dns_t dns = {fstart, fwait, NULL};
    tamis_auth_t *a;
    nasked = 0;
    if (tamis_auth_start(m, &in, &dns, arena, &a, NULL, 0) == 0) {
        const tamis_auth_result_t *r = tamis_auth_finish(a);
        if (!r || r != tamis_auth_finish(a) || r->sig_count > TAMIS__DKIM_MAX_SIGS)
            abort();
        static const char *const fns[] = {"check_dkim_signed",
                                          "check_dkim_valid",
                                          "check_dkim_valid_author_sig",
                                          "check_dkim_valid_envelopefrom",
                                          "check_dmarc_pass",
                                          "check_dmarc_reject",
                                          "check_dmarc_missing"};
        for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
            bool known;
            (void)tamis_auth_eval(r, fns[i], NULL, 0, &known);
            if (!known)
                abort();
        }
        if (tamis_auth_eval(r, "check_dkim_valid", NULL, 0, NULL) &&
            !tamis_auth_eval(r, "check_dkim_signed", NULL, 0, NULL))
            abort();
        tamis_buf_t h;
        tamis_buf_init(&h, 1 << 20);
        if (tamis_auth_results_header(r, "mx.test", &h) == 0) {
            /* a line past column 78 holds one word (after the fold's tab) */
            size_t col = 0, words = 0;
            for (size_t i = 0; i < h.len; i++) {
                char c = h.data[i];
                if (c == '\n') {
                    col = words = 0;
                    continue;
                }
                col++;
                if (c != ' ' && c != '\t' &&
                    (i == 0 || h.data[i - 1] == ' ' || h.data[i - 1] == '\t'))
                    words++;
                if (col > 78 && words > 1)
                    abort();
            }
        }
        tamis_buf_free(&h);
    }
    tamis_arena_free(arena);
    tamis_msg_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    tamis_arena_t *arena = tamis_arena_new(0);
    const char *why;
    switch (data[0] % 5) {
    case 0: {
        tamis__dkim_sig_t s;
        int rc = tamis__dkim_sig_parse(p, n, arena, &s, &why);
        if (rc == 0) {
            if (!s.d || !s.s || !s.h || s.hn == 0 || !s.b || !s.i_domain)
                abort();
            if (s.bhlen != (s.alg == TAMIS__DKIM_RSA_SHA1 ? 20u : 32u))
                abort();
            bool from = false;
            for (size_t i = 0; i < s.hn; i++)
                from |= strcasecmp(s.h[i], "from") == 0;
            if (!from || (s.has_x && s.has_t && s.x < s.t))
                abort();
        } else if (rc != TAMIS_ENOMEM && !why) {
            abort();
        }
        break;
    }
    case 1: {
        tamis__dkim_key_t k;
        int rc = tamis__dkim_key_parse(p, n, arena, &k, &why);
        if (rc == 0 && !k.revoked && (!k.key || k.keylen == 0))
            abort();
        break;
    }
    case 2: {
        sink_t s = {0};
        for (int relaxed = 0; relaxed < 2; relaxed++) {
            s.len = 0;
            uint64_t total = tamis__dkim_canon_body(p, n, relaxed, UINT64_MAX, sink, &s);
            if (total != s.len)
                abort();
            if (s.len && (s.len < 2 || memcmp(s.data + s.len - 2, "\r\n", 2) != 0))
                abort();
            if (relaxed) {
                /* (a bare CR inside a line is content: " \r" alone is allowed) */
                for (size_t i = 0; i + 1 < s.len; i++)
                    if (s.data[i] == '\t' || (s.data[i] == ' ' && s.data[i + 1] == ' ') ||
                        (s.data[i] == ' ' && s.data[i + 1] == '\r' && i + 2 < s.len &&
                         s.data[i + 2] == '\n'))
                        abort();
            }
            char *full = s.data ? malloc(s.len + 1) : NULL;
            if (full)
                memcpy(full, s.data, s.len);
            size_t flen = s.len;
            uint64_t limit = n ? p[0] % 97 : 0;
            s.len = 0;
            tamis__dkim_canon_body(p, n, relaxed, limit, sink, &s);
            if (s.len != (limit < flen ? limit : flen) || (s.len && memcmp(s.data, full, s.len)))
                abort();
            free(full);
        }
        free(s.data);
        break;
    }
    case 3: {
        tamis_buf_t b;
        tamis_buf_init(&b, 0);
        tamis__dkim_canon_header(p, n, true, false, &b);
        tamis__dkim_canon_header(p, n, false, true, &b);
        size_t len;
        char *s = tamis__dkim_strip_b(p, n, arena, &len);
        if (!s || len > n)
            abort();
        tamis_buf_free(&b);
        break;
    }
    default:
        check_message(p, n);
    }
    tamis_arena_free(arena);
    return 0;
}
