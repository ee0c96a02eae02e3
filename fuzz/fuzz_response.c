/*
 * libFuzzer target for the client side of the protocol: tamis_proto_parse_response (lib/proto)
 * and tamisc's reply handling (client/reply.c, included here because the client is a program,
 * not a library). The first input byte picks the mode flags and the output cap; the rest is the
 * reply as a server would send it. Checks that framing offsets stay inside the input, that the
 * output never outgrows libspamc's buffer, and that only codes spamc can return come out.
 */
#include "../client/reply.c"

#include <stdint.h>
#include <stdlib.h>

static const unsigned MODES[] = {
    0,
    TAMISC_CHECK_ONLY,
    TAMISC_SYMBOLS,
    TAMISC_REPORT,
    TAMISC_REPORT_IFSPAM,
    TAMISC_HEADERS,
    TAMISC_PING,
    TAMISC_LEARN,
    TAMISC_REPORT_MSG,
    TAMISC_BSMTP | TAMISC_HEADERS,
};

static const char ORIG[] = "Subject: fuzz\r\nFrom: a@example.com\r\n\r\nbody\r\n";

static void check_framing(const char *buf, size_t len)
{
    tamis_proto_response_t resp;
    int rc = tamis_proto_parse_response(buf, len, &resp);
    if (rc != 0 && rc != 1 && rc != TAMIS_EPROTO)
        abort();
    if (resp.status_bytes > len || resp.header_bytes > len)
        abort();
    if (rc == 1 && (resp.status_bytes == 0 || resp.header_bytes < resp.status_bytes))
        abort();
}

static bool known_code(int rc)
{
    return rc == TAMIS_EX_OK || rc == TAMIS_EX_PROTOCOL || rc == TAMIS_EX_IOERR ||
           rc == TAMIS_EX_OSERR || rc == TAMISC_EX_TOOBIG;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = MODES[data[0] % (sizeof MODES / sizeof MODES[0])];
    size_t out_cap = (size_t)(data[0] >> 4) * 64; /* small caps reach the EX_TOOBIG paths */
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    check_framing(buf, len);
    for (size_t cut = 0; cut <= len; cut += 1 + len / 8)
        (void)tamisc_reply_complete(flags, buf, cut);

    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    tamisc_reply_t r;
    tamis_slice_t orig = tamis_slice(ORIG, sizeof ORIG - 1);
    int rc = tamisc_reply_handle(flags, buf, len, out_cap, orig, &r, &out);
    if (!known_code(rc))
        abort();
    if (rc == TAMIS_EX_OK && out.len > out_cap + orig.len + 64)
        abort();
    if (r.is_spam != TAMISC_UNKNOWN && r.is_spam != TAMISC_ISSPAM && r.is_spam != TAMISC_NOTSPAM)
        abort();
    tamis_buf_reset(&out);
    if (tamisc_request_head(flags, data[0] % 3, "fuzz", len, &out) != 0 || out.len < 4 ||
        memcmp(out.data + out.len - 4, "\r\n\r\n", 4) != 0)
        abort();
    tamis_buf_free(&out);
    return 0;
}
