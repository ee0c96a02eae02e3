/*
 * libFuzzer target for lib/net's answer handling: the input's first byte picks the record type
 * (A, NS, TXT, PTR, MX, AAAA), the rest is a raw DNS response fed to tamis_net_answer_parse, as
 * c-ares hands it to the resolver. Every A answer then goes through the blocked-code classification
 * and the sub-test matcher for the big lists' zones; the tail of the input also serves as a
 * sub-test. Checks the invariants callers rely on: records only in OK answers, bounded counts and
 * strings, a blocked or bogus answer never hits a listing rule.
 */
#include "tamis/net.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const zones[] = {"multi.uribl.com.", "zen.spamhaus.org", "dbl.spamhaus.org",
                                    "multi.surbl.org", "bl.spamcop.net"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const tamis_net_type_t types[] = {TAMIS_NET_A,   TAMIS_NET_NS, TAMIS_NET_TXT,
                                             TAMIS_NET_PTR, TAMIS_NET_MX, TAMIS_NET_AAAA};
    tamis_net_type_t type = types[data[0] % (sizeof(types) / sizeof(*types))];
    const tamis_net_answer_t *a = NULL;
    int rc = tamis_net_answer_parse(data + 1, size - 1, type, &a);

    char sub[33];
    size_t sl = size - 1 < 32 ? size - 1 : 32;
    memcpy(sub, data + size - sl, sl);
    sub[sl] = '\0';
    tamis_net_subtest_t t;
    tamis_net_subtest_parse(sub, &t);

    if (rc != 0) {
        if (a)
            abort();
        return 0;
    }
    if (!a || a->type != type || a->count > TAMIS_NET_MAX_RECORDS)
        abort();
    if (a->status != TAMIS_NET_OK && a->count != 0)
        abort();
    /* Exactly the array of the answer's type is set, and only when there are records. */
    if ((a->addrs != NULL) != (type == TAMIS_NET_A && a->count) ||
        (a->addrs6 != NULL) != (type == TAMIS_NET_AAAA && a->count) ||
        (a->strs != NULL) != (type != TAMIS_NET_A && type != TAMIS_NET_AAAA && a->count))
        abort();
    for (size_t i = 0; i < a->count; i++) {
        if (type == TAMIS_NET_A) {
            uint32_t r = a->addrs[i];
            for (size_t z = 0; z < sizeof(zones) / sizeof(*zones); z++) {
                tamis_net_verdict_t v = tamis_net_classify(zones[z], r, NULL);
                bool hit = tamis_net_dnsbl_hit(zones[z], NULL, r, false);
                if (v != TAMIS_NET_LISTED && hit)
                    abort();
                if (v == TAMIS_NET_BOGUS && tamis_net_dnsbl_hit(zones[z], &t, r, true))
                    abort();
                (void)tamis_net_subtest_match(&t, r);
            }
        } else if (type == TAMIS_NET_AAAA) {
            volatile uint8_t sum = 0;
            for (size_t k = 0; k < 16; k++)
                sum ^= a->addrs6[i][k]; /* ASan checks the whole address is inside the answer */
            (void)sum;
        } else {
            size_t l = strlen(a->strs[i]);
            if (l > (type == TAMIS_NET_TXT ? TAMIS_NET_MAX_TXT : 255))
                abort();
        }
    }
    const tamis_net_answer_t *b = tamis_net_answer_ref(a);
    tamis_net_answer_unref(a);
    tamis_net_answer_unref(b);
    return 0;
}
