/*
 * libFuzzer target for lib/proto: the request parser fed in pieces (the split points come from
 * the input), then EOF; and the client-side reply parser. Checks the invariants the daemon relies
 * on: a settled state never changes, an error always has a full "SPAMD/1.0 <code> ...\r\n" line,
 * a kept body never exceeds the limit.
 */
#include "tamis/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_BODY 4096

static void check_request(const tamis_proto_req_t *r, tamis_proto_state_t st)
{
    if (st == TAMIS_PROTO_ERROR) {
        const char *line = tamis_proto_req_error_line(r);
        size_t n = strlen(line);
        if (strncmp(line, "SPAMD/1.0 ", 10) != 0 || n < 2 || strcmp(line + n - 2, "\r\n") != 0)
            abort();
        if (tamis_proto_req_error_code(r) <= 0)
            abort();
    }
    if (st == TAMIS_PROTO_DONE && tamis_proto_req_body(r).len > FUZZ_MAX_BODY)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 64) + 1;
    data++;
    size--;
    tamis_proto_req_t *r = tamis_proto_req_new(FUZZ_MAX_BODY);
    if (!r)
        return 0;
    tamis_proto_req_allow_tell(r, step % 2 == 0);
    tamis_proto_state_t st = TAMIS_PROTO_NEED_MORE;
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        tamis_proto_state_t prev = st;
        st = tamis_proto_req_feed(r, (const char *)data + i, n);
        if (prev != TAMIS_PROTO_NEED_MORE && st != prev)
            abort();
    }
    if (st == TAMIS_PROTO_NEED_MORE)
        st = tamis_proto_req_finish(r);
    if (st == TAMIS_PROTO_NEED_MORE)
        abort(); /* EOF always settles a request */
    check_request(r, st);
    tamis_proto_req_free(r);

    tamis_proto_response_t resp;
    int rc = tamis_proto_parse_response((const char *)data, size, &resp);
    if (rc == 1 && (resp.header_bytes > size || resp.status_bytes > resp.header_bytes))
        abort();
    return 0;
}
