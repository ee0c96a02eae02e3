/*
 * libFuzzer target for the client side of the protocol in lib/proto: tamis_proto_parse_response
 * (the reply parser tamisc shares with tamisd) and tamis_proto_build_request. The input is a reply
 * as a server would send it; its first byte also picks the request fields. Checks that offsets
 * stay inside the input, that the parser's verdicts agree whether the reply is cut short or not
 * (as tamisc calls it while bytes arrive), that scores are finite and bounded as libspamc's, and
 * that every request head ends with its empty line.
 */
#include "tamis/proto.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int check_response(const char *buf, size_t len, tamis_proto_response_t *resp)
{
    int rc = tamis_proto_parse_response(buf, len, resp);
    if (rc != 0 && rc != 1 && rc != TAMIS_EPROTO && rc != TAMIS_ELIMIT)
        abort();
    if (resp->status_bytes > len || resp->header_bytes > len)
        abort();
    if (rc == 1 && (resp->status_bytes == 0 || resp->header_bytes <= resp->status_bytes))
        abort();
    if (rc != 1 && resp->header_bytes)
        abort();
    if (rc == TAMIS_EPROTO && resp->status_bytes)
        abort();
    if (resp->status_bytes && (resp->version < 1.0 || !memchr(resp->version_str, '\0', 19)))
        abort();
    if (!isfinite(resp->score) || fabs(resp->score) > 1e10 || !isfinite(resp->threshold) ||
        fabs(resp->threshold) > 1e10)
        abort();
    if (resp->is_spam && !(resp->has_spam && resp->has_true_spam))
        abort();
    if (!resp->has_content_length && resp->content_length != -1)
        abort();
    if ((resp->did_set | resp->did_remove) & ~(unsigned)(TAMIS_TELL_LOCAL | TAMIS_TELL_REMOTE))
        abort();
    return rc;
}

/* A prefix of a reply is either still incomplete or already settled the same way. */
static void check_prefixes(const char *buf, size_t len, int rc, const tamis_proto_response_t *all)
{
    for (size_t cut = 0; cut < len; cut += 1 + len / 8) {
        tamis_proto_response_t part;
        int prc = check_response(buf, cut, &part);
        if (prc == 1 && (rc != 1 || part.header_bytes != all->header_bytes))
            abort();
        if (prc < 0 && prc != rc)
            abort();
        if (part.status_bytes && part.status_bytes != all->status_bytes)
            abort();
    }
}

static void check_request(uint8_t sel, size_t body_len)
{
    static const tamis_verb_t verbs[] = {
        TAMIS_VERB_CHECK, TAMIS_VERB_SYMBOLS, TAMIS_VERB_REPORT,  TAMIS_VERB_REPORT_IFSPAM,
        TAMIS_VERB_PING,  TAMIS_VERB_PROCESS, TAMIS_VERB_HEADERS, TAMIS_VERB_TELL,
    };
    tamis_proto_request_t req = {
        .verb = verbs[sel % (sizeof verbs / sizeof verbs[0])],
        .user = (sel & 0x10) ? "fuzz" : NULL,
        .compress = sel & 0x20,
        .message_class = (sel & 0x40) ? "spam" : NULL,
        .set = (sel >> 6) & 3,
        .remove = (sel >> 4) & 3,
        .body_len = body_len,
    };
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    if (tamis_proto_build_request(&out, &req) != 0 || out.len < 4 ||
        memcmp(out.data + out.len - 4, "\r\n\r\n", 4) != 0)
        abort();
    /* the head is one request line and header lines, each ending in CRLF */
    if (memchr(out.data, '\0', out.len))
        abort();
    tamis_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    tamis_proto_response_t resp;
    int rc = check_response(buf, len, &resp);
    check_prefixes(buf, len, rc, &resp);
    check_request(data[0], len);
    return 0;
}
