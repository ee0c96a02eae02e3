/*
 * libFuzzer target for the Received-header parser (lib/msg) and the relay trust evaluation
 * (lib/rules' tamis_rules_relays), the code that picks the IPs the DNS blocklists are asked about.
 *
 * The input is a header block: every line becomes a "Received: " field, except lines starting with
 * '!' (the rest of the line is a header field of its own, e.g. "!X-Originating-IP: [192.0.2.1]")
 * and lines starting with a blank (folded into the field above). A fixed From/Subject and a short
 * body follow. The message is parsed, every relay field read, then the chain is evaluated under
 * each of a few trust configurations (none: inference; IPv4 and IPv6 trusted/internal networks,
 * exclusions, MSA networks, trailing-dot shorthand), loaded once.
 */
#include "tamis/msg.h"
#include "tamis/rules.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT (64 * 1024)

static const char *const trust_confs[][4] = {
    {NULL},
    {"trusted_networks 192.0.2.0/24 10.0.0.0/8", "internal_networks 192.0.2.0/24", NULL},
    {"trusted_networks [2001:db8::]/32 !10.1.0.0/16 10. 127.0.0.1", "msa_networks 198.51.100.0/24",
     NULL},
    {"internal_networks 203.0.113.0/25 ::1", "trusted_networks 203.0.113.0/24 !203.0.113.200",
     NULL},
};
#define NCONF (sizeof(trust_confs) / sizeof(trust_confs[0]))

static tamis_ruleset_t *sets[NCONF];
static int loaded;
static volatile size_t sink;

static void touch_str(const char *s)
{
    if (s)
        sink += strlen(s);
}

static void load_sets(void)
{
    char err[256];
    for (size_t i = 0; i < NCONF; i++) {
        size_t n = 0;
        while (n < 4 && trust_confs[i][n])
            n++;
        tamis_rules_source_t src = {
            .extra_lines = trust_confs[i], .extra_line_count = n, .locale = "C"};
        if (tamis_rules_load(&src, &sets[i], NULL, err, sizeof(err)) != 0)
            abort(); /* a fixed configuration must load */
    }
    loaded = 1;
}

/* Appends the header block built from the input to out (which has room for it). */
static size_t build(const uint8_t *data, size_t size, char *out)
{
    size_t o = 0;
    size_t i = 0;
    while (i < size) {
        size_t e = i;
        while (e < size && data[e] != '\n')
            e++;
        if (data[i] == '!') {
            memcpy(out + o, data + i + 1, e - i - 1);
            o += e - i - 1;
        } else if (data[i] == ' ' || data[i] == '\t') {
            memcpy(out + o, data + i, e - i);
            o += e - i;
        } else {
            memcpy(out + o, "Received: ", 10);
            o += 10;
            memcpy(out + o, data + i, e - i);
            o += e - i;
        }
        out[o++] = '\n';
        i = e + 1;
    }
    static const char tail[] = "From: a@example.com\nSubject: relays\n\nbody\n";
    memcpy(out + o, tail, sizeof(tail) - 1);
    return o + sizeof(tail) - 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loaded)
        load_sets();
    if (size > MAX_INPUT)
        return 0;
    /* each line can grow by "Received: " (10 bytes) and gain a newline */
    char *text = malloc(size * 12 + 64);
    if (!text)
        return 0;
    size_t len = build(data, size, text);
    tamis_msg_t *m = NULL;
    if (tamis_msg_parse(text, len, NULL, &m, NULL, 0) != 0) {
        free(text);
        return 0;
    }
    for (size_t i = 0; i < tamis_msg_relay_count(m); i++) {
        const tamis_relay_t *r = tamis_msg_relay_at(m, i);
        touch_str(r->ip);
        touch_str(r->rdns);
        touch_str(r->helo);
        touch_str(r->by);
        touch_str(r->ident);
        touch_str(r->envfrom);
        touch_str(r->id);
        touch_str(r->auth);
        touch_str(r->with);
        sink += (size_t)r->date + r->ip_private + r->unparseable + r->skipped + r->fetch_marker +
                r->originating;
        if (r->header)
            touch_str(r->header->raw);
    }
    for (size_t c = 0; c < NCONF; c++) {
        tamis_arena_t *a = tamis_arena_new(0);
        if (!a)
            break;
        tamis_rules_relays_t out;
        if (tamis_rules_relays(sets[c], m, a, &out) == 0) {
            touch_str(out.trusted);
            touch_str(out.untrusted);
            touch_str(out.internal);
            touch_str(out.external);
            touch_str(out.last_external_ip);
            touch_str(out.first_trusted_ip);
        }
        tamis_arena_free(a);
    }
    tamis_msg_free(m);
    free(text);
    return 0;
}
