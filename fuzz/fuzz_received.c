/*
 * libFuzzer target for the Received-header parser (lib/msg), the relay trust evaluation
 * (lib/rules' tamis_rules_relays) and the selection of the IPs the DNS blocklists are asked about
 * (tamis_rules_dnsbl_ips, tamis_rules_dnsbl_select for every set-name suffix).
 *
 * The input is a header block: every line becomes a "Received: " field, except lines starting with
 * '!' (the rest of the line is a header field of its own, e.g. "!X-Originating-IP: [192.0.2.1]")
 * and lines starting with a blank (folded into the field above). A fixed From/Subject and a short
 * body follow. The message is parsed and every relay field read; then the chain is evaluated under
 * each of a few trust configurations (none: inference; IPv4 and IPv6 trusted/internal networks,
 * exclusions, MSA networks, trailing-dot shorthand, a small num_check_received), loaded once, and
 * the DNSBL candidates are selected from it.
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
     "num_check_received 2", NULL},
};
#define NCONF (sizeof(trust_confs) / sizeof(trust_confs[0]))

static tamis_ruleset_t *sets[NCONF];
static int loaded;
/* check_rbl set names: each suffix selects differently (Plugin/DNSEval.pm) */
static const char *const set_names[] = {"zen", "zen-lastexternal", "x-notfirsthop",
                                        "x-firsttrusted", "x-untrusted"};
#define NSEL 16
static volatile size_t sink;

static void touch_str(const char *s)
{
    if (s)
        sink += strlen(s);
}

static void touch_list(const char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        touch_str(v[i]);
}

static void dnsbl_candidates(const tamis_ruleset_t *rs, const tamis_msg_t *m, tamis_arena_t *a)
{
    tamis_rules_dnsbl_ips_t ips;
    if (tamis_rules_dnsbl_ips(rs, m, a, &ips) != 0)
        return;
    touch_list(ips.untrusted, ips.untrusted_count);
    touch_list(ips.external, ips.external_count);
    touch_list(ips.originating, ips.originating_count);
    for (size_t s = 0; s < sizeof(set_names) / sizeof(set_names[0]); s++) {
        for (int nice = 0; nice < 2; nice++) {
            const char *sel[NSEL];
            size_t n = tamis_rules_dnsbl_select(rs, &ips, set_names[s], nice, sel, NSEL);
            if (n > NSEL)
                abort(); /* wrote past the cap */
            touch_list(sel, n);
        }
    }
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

/* Appends the header block built from the input to out (which has room for it).
 */
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
        sink += (size_t)r->date + r->ip_private + r->no_rdns + r->unparseable + r->skipped +
                r->fetch_marker + r->originating;
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
        dnsbl_candidates(sets[c], m, a);
        tamis_arena_free(a);
    }
    tamis_msg_free(m);
    free(text);
    return 0;
}
