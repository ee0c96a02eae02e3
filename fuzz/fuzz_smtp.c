/*
 * libFuzzer target for lib/mta's SMTP parsers: each input line as a command, the whole input as
 * a DATA stream fed in pieces (first byte = piece size), and the encode/decode round trip.
 * Invariants: parsed slices stay inside the line; decoding never stores more than the limit;
 * what was encoded decodes back to the same bytes (line ends made CRLF).
 */
#include "tamis/mta.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_DATA_MAX 2048

static void inside(tamis_slice_t s, const char *p, size_t n)
{
    if (s.ptr && (s.ptr < p || s.ptr + s.len > p + n))
        abort();
}

static void commands(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *lf = memchr(p + i, '\n', n - i);
        size_t l = lf ? (size_t)(lf - p) - i : n - i;
        tamis_mta_smtp_cmd_t c;
        tamis_mta_smtp_parse(p + i, l, &c);
        inside(c.arg, p + i, l);
        inside(c.path, p + i, l);
        inside(c.params, p + i, l);
        inside(tamis_mta_smtp_param(c.params, "SIZE"), p + i, l);
        bool last;
        tamis_mta_smtp_reply_line(p + i, l, &last);
        i += l + 1;
    }
}

static void data(const char *p, size_t n, size_t step)
{
    tamis_mta_data_t d;
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    tamis_mta_data_init(&d, FUZZ_DATA_MAX);
    size_t used = 0;
    while (used < n && !d.done) {
        size_t k = n - used < step ? n - used : step;
        size_t got = tamis_mta_data_feed(&d, p + used, k, &out);
        if (got == 0 || got > k)
            abort();
        used += got;
    }
    if (out.len > FUZZ_DATA_MAX || (!d.too_big && out.len != d.count))
        abort();
    tamis_buf_free(&out);
}

static void round_trip(const char *p, size_t n)
{
    tamis_buf_t enc, dec, want;
    tamis_buf_init(&enc, 0);
    tamis_buf_init(&dec, 0);
    tamis_buf_init(&want, 0);
    tamis_mta_data_encode(p, n, &enc);
    tamis_mta_data_t d;
    tamis_mta_data_init(&d, (size_t)-1);
    size_t used = tamis_mta_data_feed(&d, enc.data, enc.len, &dec);
    if (!d.done || used != enc.len)
        abort();
    /* expected: p with every line ending in CRLF */
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && !(i > 0 && p[i - 1] == '\r'))
            tamis_buf_putc(&want, '\r');
        tamis_buf_putc(&want, p[i]);
    }
    if (n && p[n - 1] != '\n')
        tamis_buf_puts(&want, "\r\n");
    if (dec.len != want.len || (dec.len && memcmp(dec.data, want.data, dec.len) != 0))
        abort();
    tamis_buf_free(&enc);
    tamis_buf_free(&dec);
    tamis_buf_free(&want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data_in, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data_in + 1;
    size_t n = size - 1;
    commands(p, n);
    data(p, n, (size_t)(data_in[0] % 64) + 1);
    if (!memchr(p, '\r', n)) /* lone CRs are not normalised by the encoder: skip those */
        round_trip(p, n);
    return 0;
}
