/*
 * libFuzzer target for SPF (lib/auth/spf.c): the record parser, the macro expander, and
 * check_host() over an in-memory DNS that serves the fuzzed record for every TXT query.
 *
 * Input: a flag byte, then the record, then after the first '\n' a macro-string (expanded as a
 * domain and as an explanation) and after a second '\n' the sender. Checks what callers rely on:
 * a parsed record has at most TAMIS_SPF_MAX_TERMS terms and valid CIDR lengths; a domain-spec that
 * the parser accepted always expands (or hits the length limit), to at most 253 bytes; the macro
 * checker and the expander agree on syntax; and check_host() ends within the lookup limits (a
 * bounded number of DNS queries, whatever loops the record makes), with a valid status.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/auth/spf.h"

#define MAX_Q 512

typedef struct {
    const char *record;
    size_t n;
    tamis_net_answer_t ans[MAX_Q];
    const char *strs[MAX_Q][2];
    uint32_t a4[MAX_Q];
    uint8_t a6[MAX_Q][16];
} fake_t;

static int fstart(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    fake_t *f = ctx;
    if (f->n >= MAX_Q)
        return TAMIS_ELIMIT;
    size_t i = f->n++;
    size_t len = strlen(name);
    tamis_net_answer_t *a = &f->ans[i];
    memset(a, 0, sizeof(*a));
    a->type = type;
    /* The name decides: length % 5 == 0 NXDOMAIN, == 1 SERVFAIL, else records. */
    if (len % 5 == 0) {
        a->status = TAMIS_NET_NXDOMAIN;
    } else if (len % 5 == 1) {
        a->status = TAMIS_NET_SERVFAIL;
    } else {
        a->status = TAMIS_NET_OK;
        a->count = 1;
        switch (type) {
        case TAMIS_NET_TXT:
            f->strs[i][0] = f->record;
            f->strs[i][1] = "v=spf1 ip4:192.0.2.0/24 -all";
            a->count = 1 + (len % 7 == 0); /* sometimes two records: permerror */
            a->strs = f->strs[i];
            break;
        case TAMIS_NET_A:
            f->a4[i] = 0xc0000201u + (uint32_t)(len % 3);
            a->addrs = &f->a4[i];
            break;
        case TAMIS_NET_AAAA:
            memset(f->a6[i], 0, 16);
            f->a6[i][0] = 0x20, f->a6[i][1] = 0x01, f->a6[i][15] = (uint8_t)len;
            a->addrs6 = (const uint8_t(*)[16])f->a6[i];
            break;
        default: /* MX, PTR: one name, derived from the query */
            f->strs[i][0] = len % 2 ? "mx.example.com" : "host.example.org";
            a->strs = f->strs[i];
            break;
        }
    }
    *slot = i;
    return 0;
}

static const tamis_net_answer_t *fwait(void *ctx, size_t slot)
{
    fake_t *f = ctx;
    return slot < f->n ? &f->ans[slot] : NULL;
}

static const tamis__spf_macros_t macros = {"strong-bad@email.example.com",
                                           "strong-bad",
                                           "email.example.com",
                                           "email.example.com",
                                           "192.0.2.3",
                                           "mx.example.org",
                                           "in-addr",
                                           "helo.example.net",
                                           "192.0.2.3",
                                           "unknown",
                                           "1700000000"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    uint8_t flags = data[0];
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    for (size_t i = 0; i + 1 < size; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    char *macro = strchr(buf, '\n');
    if (macro)
        *macro++ = '\0';
    char *sender = macro ? strchr(macro, '\n') : NULL;
    if (sender)
        *sender++ = '\0';

    tamis_arena_t *arena = tamis_arena_new(0);
    if (!arena) {
        free(buf);
        return 0;
    }
    char out[TAMIS_SPF_MAX_EXPAND + 1];

    /* 1. The parser, and the expansion of every domain-spec it accepted. */
    tamis__spf_record_t rec;
    int rc = tamis__spf_parse(buf, arena, &rec, NULL, 0);
    if (rc == 0) {
        if (rec.count > TAMIS_SPF_MAX_TERMS)
            abort();
        for (size_t i = 0; i < rec.count; i++) {
            const tamis__spf_term_t *t = &rec.terms[i];
            if (t->cidr4 > 32 || t->cidr6 > 128)
                abort();
            if (t->spec) {
                int e = tamis__spf_expand(t->spec, &macros, false, out, sizeof(out));
                if (e == TAMIS_EPARSE)
                    abort(); /* the parser accepted its syntax */
                if (e == 0 && strlen(out) > TAMIS_SPF_MAX_NAME)
                    abort();
            }
        }
    } else if (rc != TAMIS_EPARSE && rc != TAMIS_ELIMIT && rc != TAMIS_ENOMEM) {
        abort();
    }

    /* 2. The macro-string alone, both ways; the checker and the expander agree. */
    if (macro) {
        size_t ml = strlen(macro);
        for (int exp = 0; exp < 2; exp++) {
            int chk = tamis__spf_macro_check(macro, ml, exp, false);
            int e = tamis__spf_expand(macro, &macros, exp, out, sizeof(out));
            if ((chk == 0) != (e != TAMIS_EPARSE))
                abort();
            if (e == 0 && !exp && strlen(out) > TAMIS_SPF_MAX_NAME)
                abort();
        }
        (void)tamis__spf_macro_check(macro, ml, false, true);
    }

    /* 3. check_host() with the record served for every TXT query. */
    if (flags & 1) {
        fake_t *f = calloc(1, sizeof(*f));
        if (f) {
            f->record = buf;
            tamis_auth_dns_t dns = {fstart, fwait, f};
            const char *ip = (flags & 2) ? "2001:db8::1" : "192.0.2.3";
            tamis__spf_t *s = tamis__spf_start(&dns, arena, ip, "email.example.com",
                                               sender && *sender ? sender : NULL, "helo.example");
            if (s) {
                tamis_auth_status_t st = tamis__spf_finish(s);
                if ((unsigned)st > TAMIS_AUTH_PERMERROR || tamis__spf_finish(s) != st)
                    abort();
                unsigned lookups, voids;
                tamis__spf_counts(s, &lookups, &voids);
                /* 10 terms + the one that fails, each at most an MX and 10 addresses, and the
                 * PTR validation (1 + 10) once, plus the record fetches and exp. */
                if (lookups > TAMIS_SPF_MAX_LOOKUPS + 1 || voids > TAMIS_SPF_MAX_VOID + 1 ||
                    f->n > 200)
                    abort();
            }
            free(f);
        }
    }
    tamis_arena_free(arena);
    free(buf);
    return 0;
}
