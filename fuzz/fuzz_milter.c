/*
 * libFuzzer target for lib/mta's milter parsers: the input is a stream of packets as an MTA
 * would send them; every framed packet goes through the parser its command byte selects.
 * Invariants: a framed packet lies inside the input; split strings lie inside their packet.
 */
#include "tamis/mta.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void strings_inside(const char *p, size_t n)
{
    const char *v[TAMIS_MTA_MILTER_STRINGS_MAX];
    size_t count = 0;
    if (tamis_mta_milter_strings(p, n, v, TAMIS_MTA_MILTER_STRINGS_MAX, &count) != 0)
        return;
    for (size_t i = 0; i < count; i++)
        if (v[i] < p || v[i] + strlen(v[i]) >= p + n)
            abort();
}

static void packet(const tamis_mta_milter_pkt_t *pk)
{
    uint32_t a, b, c;
    tamis_mta_milter_connect_t ci;
    switch (pk->cmd) {
    case 'O':
        tamis_mta_milter_optneg(pk->data, pk->len, &a, &b, &c);
        break;
    case 'C':
        if (tamis_mta_milter_connect(pk->data, pk->len, &ci) == 0 && ci.family != 'U' &&
            (ci.addr < pk->data || ci.addr + strlen(ci.addr) >= pk->data + pk->len))
            abort();
        break;
    case 'D':
        if (pk->len)
            strings_inside(pk->data + 1, pk->len - 1);
        break;
    default:
        strings_inside(pk->data, pk->len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0;
    for (;;) {
        tamis_mta_milter_pkt_t pk;
        size_t used = 0;
        int rc = tamis_mta_milter_frame(p + off, size - off, 4096, &pk, &used);
        if (rc <= 0)
            break;
        if (used > size - off || pk.data + pk.len > p + size)
            abort();
        packet(&pk);
        off += used;
    }
    /* the builders never fail on short, arbitrary text */
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    char text[64];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, p, n);
    text[n] = '\0';
    if (tamis_mta_milter_put_reply(&b, "550", "5.7.1", text) != 0 ||
        tamis_mta_milter_put_header(&b, 'h', 0, "X-Spam-Test", text) != 0)
        abort();
    tamis_buf_free(&b);
    return 0;
}
