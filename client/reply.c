/*
 * tamisc's side of libspamc 4.0.1: which request a mode sends and what spamc makes of the reply
 * (message_filter, message_tell, _append_original_body). The protocol itself, the request head
 * and the parsing of the reply's status line and headers with all of libspamc's quirks, lives in
 * lib/proto (tamis_proto_build_request, tamis_proto_parse_response), shared with tamisd; this
 * file only maps spamc's modes onto it and builds spamc's output. No I/O and no logging here.
 */
#include "tamisc.h"

#include <string.h>

static tamis_verb_t verb_of(unsigned flags)
{
    if (flags & (TAMISC_LEARN | TAMISC_REPORT_MSG))
        return TAMIS_VERB_TELL;
    if (flags & TAMISC_CHECK_ONLY)
        return TAMIS_VERB_CHECK;
    if (flags & TAMISC_REPORT_IFSPAM)
        return TAMIS_VERB_REPORT_IFSPAM;
    if (flags & TAMISC_REPORT)
        return TAMIS_VERB_REPORT;
    if (flags & TAMISC_SYMBOLS)
        return TAMIS_VERB_SYMBOLS;
    if (flags & TAMISC_PING)
        return TAMIS_VERB_PING;
    if (flags & TAMISC_HEADERS)
        return TAMIS_VERB_HEADERS;
    return TAMIS_VERB_PROCESS;
}

/* spamc.c's main: -L spam|ham|forget and -C report|revoke as TELL's class and Set/Remove. */
static void tell_of(unsigned flags, int learn_type, tamis_proto_request_t *req)
{
    if (flags & TAMISC_LEARN) {
        if (learn_type == 2) {
            req->remove = TAMIS_TELL_LOCAL;
            return;
        }
        req->message_class = learn_type == 0 ? "spam" : "ham";
        req->set = TAMIS_TELL_LOCAL;
    } else if (learn_type == 0) {
        req->message_class = "spam";
        req->set = TAMIS_TELL_LOCAL | TAMIS_TELL_REMOTE;
    } else {
        req->message_class = "ham";
        req->set = TAMIS_TELL_LOCAL;
        req->remove = TAMIS_TELL_REMOTE;
    }
}

int tamisc_request_head(unsigned flags, int learn_type, const char *user, size_t body_len,
                        tamis_buf_t *out)
{
    tamis_proto_request_t req = {
        .verb = verb_of(flags),
        .user = user,
        .compress = flags & TAMISC_USE_ZLIB,
        .body_len = body_len,
    };
    if (req.verb == TAMIS_VERB_TELL)
        tell_of(flags, learn_type, &req);
    return tamis_proto_build_request(out, &req);
}

/* ---- reply ---------------------------------------------------------------------------------- */

bool tamisc_reply_complete(unsigned flags, const char *buf, size_t len)
{
    tamis_proto_response_t resp;
    int rc = tamis_proto_parse_response(buf, len, &resp);
    if (rc < 0)
        return true;
    if (rc == 0 && len > TAMISC_MAX_REPLY_HEAD)
        return true; /* a header block this long is refused (bounds the re-parsing too) */
    if (flags & (TAMISC_LEARN | TAMISC_REPORT_MSG))
        return rc == 1;
    if (flags & TAMISC_PING)
        return resp.status_bytes > 0;
    if (flags & TAMISC_CHECK_ONLY)
        return rc == 1;
    return false;
}

/* spamc -K prints the status line back as libspamc read it. */
static int ping_output(const tamis_proto_response_t *resp, tamis_buf_t *out)
{
    tamis_buf_printf(out, "SPAMD/%s %d\n", resp->version_str, resp->code);
    return out->err ? TAMIS_EX_OSERR : TAMIS_EX_OK;
}

/* --headers: spamd returned the rewritten header block; the body comes from the original. */
static void append_original_body(tamis_slice_t orig, size_t out_cap, tamis_buf_t *out)
{
    const char *p = orig.ptr, *end = orig.ptr + orig.len, *body = NULL;
    for (; p < end; p++) {
        if (*p == '\r' && end - p >= 4 && memcmp(p, "\r\n\r\n", 4) == 0) {
            body = p + 4;
            break;
        }
        if (*p == '\n' && end - p >= 2 && memcmp(p, "\n\n", 2) == 0) {
            body = p + 2;
            break;
        }
    }
    if (!body) { /* libspamc then outputs the original message and still succeeds */
        tamis_buf_reset(out);
        tamis_buf_append(out, orig.ptr, orig.len);
        return;
    }
    size_t n = (size_t)(end - body);
    size_t room = out_cap > out->len ? out_cap - out->len : 0;
    if (n > room)
        n = room;
    /* libspamc copies with strncpy: bytes after a NUL become NULs */
    const char *nul = memchr(body, '\0', n);
    size_t keep = nul ? (size_t)(nul - body) : n;
    tamis_buf_append(out, body, keep);
    for (size_t i = keep; i < n; i++)
        tamis_buf_putc(out, '\0');
}

/* The score line libspamc writes ahead of the body: for -R the last Spam: line, for -r the last
 * one that said "true" (so spamd's REPORT_IFSPAM "Yes" gets none). */
static void score_line(unsigned flags, const tamis_proto_response_t *resp, tamis_buf_t *out)
{
    if ((flags & TAMISC_REPORT) && resp->has_spam)
        tamis_buf_printf(out, "%.1f/%.1f\n", resp->score, resp->threshold);
    else if ((flags & TAMISC_REPORT_IFSPAM) && resp->has_true_spam)
        tamis_buf_printf(out, "%.1f/%.1f\n", resp->true_score, resp->true_threshold);
}

static int body_output(unsigned flags, const char *buf, size_t len, size_t out_cap,
                       const tamis_proto_response_t *resp, tamis_slice_t orig, tamis_buf_t *out)
{
    /* absent, or sent negative: libspamc needs a length for every mode with a body */
    if (resp->content_length < 0)
        return TAMIS_EX_PROTOCOL;
    score_line(flags, resp, out);
    size_t body_len = len - resp->header_bytes;
    if (body_len + out->len > out_cap)
        return TAMISC_EX_TOOBIG;
    if (body_len != (size_t)resp->content_length)
        return TAMIS_EX_PROTOCOL;
    tamis_buf_append(out, buf + resp->header_bytes, body_len);
    if (flags & TAMISC_HEADERS)
        append_original_body(orig, out_cap, out);
    return out->err ? TAMIS_EX_OSERR : TAMIS_EX_OK;
}

int tamisc_reply_handle(unsigned flags, const char *buf, size_t len, size_t out_cap,
                        tamis_slice_t orig, tamisc_reply_t *r, tamis_buf_t *out)
{
    tamis_proto_response_t resp;
    r->is_spam = TAMISC_UNKNOWN;
    r->did_tell = 0;
    tamis_buf_reset(out);
    int rc = tamis_proto_parse_response(buf, len, &resp);
    /* libspamc's order: the status line first (PING reads nothing more), then the headers */
    bool ping_ok = (flags & TAMISC_PING) && resp.status_bytes > 0;
    if (rc == TAMIS_ELIMIT && !ping_ok)
        return TAMISC_EX_TOOBIG;
    if (rc == TAMIS_EPROTO)
        return TAMIS_EX_PROTOCOL;
    if (resp.status_bytes == 0)
        return TAMIS_EX_IOERR; /* EOF before the status line ended */
    if (flags & TAMISC_PING) {
        r->is_spam = TAMISC_NOTSPAM;
        return ping_output(&resp, out);
    }
    if (rc != 1)
        return TAMIS_EX_IOERR; /* EOF during the headers */
    if (flags & (TAMISC_LEARN | TAMISC_REPORT_MSG)) {
        r->did_tell = resp.did_set | (resp.did_remove << 4);
        return TAMIS_EX_OK;
    }
    if (resp.has_spam)
        r->is_spam = resp.is_spam ? TAMISC_ISSPAM : TAMISC_NOTSPAM;
    if (flags & TAMISC_CHECK_ONLY) {
        if (!resp.has_spam)
            return TAMIS_EX_PROTOCOL;
        tamis_buf_printf(out, "%.1f/%.1f\n", resp.score, resp.threshold);
        return out->err ? TAMIS_EX_OSERR : TAMIS_EX_OK;
    }
    return body_output(flags, buf, len, out_cap, &resp, orig, out);
}
