/*
 * tamisc's request head and reply interpretation, byte-compatible with libspamc 4.0.1
 * (message_filter, message_tell, _handle_spamd_header, _append_original_body).
 *
 * No I/O and no logging here, so fuzz/fuzz_response.c can include this file and drive it with
 * arbitrary replies. The framing (status line, header block, Content-length, DidSet/DidRemove)
 * comes from tamis_proto_parse_response; the Spam: line is re-read here because spamc's output
 * depends on details the shared parser smooths over: only "true" counts as spam (so spamd's
 * REPORT_IFSPAM "Yes" prints no score line, as with spamc), and a malformed line is no verdict.
 */
#include "tamisc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libspamc reads reply lines into 8188 bytes, the last kept for the NUL. */
#define LIBSPAMC_LINE_MAX 8187

static const char *verb_of(unsigned flags)
{
    if (flags & TAMISC_CHECK_ONLY)
        return "CHECK";
    if (flags & TAMISC_REPORT_IFSPAM)
        return "REPORT_IFSPAM";
    if (flags & TAMISC_REPORT)
        return "REPORT";
    if (flags & TAMISC_SYMBOLS)
        return "SYMBOLS";
    if (flags & TAMISC_PING)
        return "PING";
    if (flags & TAMISC_HEADERS)
        return "HEADERS";
    return "PROCESS";
}

static void tell_head(int learn_type, unsigned flags, tamis_buf_t *out)
{
    bool learn = flags & TAMISC_LEARN;
    const char *cls = NULL, *set = NULL, *rem = NULL;
    if (learn && learn_type != 2) {
        cls = learn_type == 0 ? "spam" : "ham";
        set = "local";
    } else if (learn) {
        rem = "local";
    } else if (learn_type == 0) {
        cls = "spam";
        set = "local,remote";
    } else {
        cls = "ham";
        set = "local";
        rem = "remote";
    }
    tamis_buf_puts(out, "TELL SPAMC/1.5\r\n");
    if (cls)
        tamis_buf_printf(out, "Message-class: %s\r\n", cls);
    if (set)
        tamis_buf_printf(out, "Set: %s\r\n", set);
    if (rem)
        tamis_buf_printf(out, "Remove: %s\r\n", rem);
}

int tamisc_request_head(unsigned flags, int learn_type, const char *user, size_t body_len,
                        tamis_buf_t *out)
{
    if (flags & (TAMISC_LEARN | TAMISC_REPORT_MSG)) {
        tell_head(learn_type, flags, out);
        if (user)
            tamis_buf_printf(out, "User: %s\r\n", user);
        tamis_buf_printf(out, "Content-length: %zu\r\n\r\n", body_len);
        return out->err;
    }
    tamis_buf_printf(out, "%s SPAMC/1.5\r\n", verb_of(flags));
    if (!(flags & TAMISC_PING)) {
        if (user)
            tamis_buf_printf(out, "User: %s\r\n", user);
        if (flags & TAMISC_USE_ZLIB)
            tamis_buf_puts(out, "Compress: zlib\r\n");
        tamis_buf_printf(out, "Content-length: %zu\r\n", body_len);
    }
    tamis_buf_puts(out, "\r\n");
    return out->err;
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

/* libspamc's _locale_safe_string_to_float, kept as is: the printed score must match. */
static float spamc_float(const char *s)
{
    char *dot;
    bool neg = *s == '-';
    float ret = (float)strtol(s, &dot, 10);
    if (*dot != '.')
        return ret;
    const char *cp = dot + 1;
    float post = (float)strtol(cp, NULL, 10);
    if (post >= -0.00001f && post <= 0.00001f)
        return ret;
    int div = 1;
    for (; *cp; cp++)
        div *= 10;
    return neg ? ret - post / (float)div : ret + post / (float)div;
}

static float clamp(float v)
{
    if (v > 1e10f)
        return 1e10f;
    if (v < -1e10f)
        return -1e10f;
    return v;
}

typedef struct {
    bool valid;
    bool is_spam;
    float score, threshold;
} spam_line_t;

/* libspamc: sscanf(line, "Spam: %5s ; %20s / %20s") == 3; the last such line wins. */
static void scan_spam_line(const char *line, size_t n, spam_line_t *sp)
{
    char tmp[LIBSPAMC_LINE_MAX + 1], flag[6], s[21], t[21];
    if (n > LIBSPAMC_LINE_MAX)
        return;
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    if (sscanf(tmp, "Spam: %5s ; %20s / %20s", flag, s, t) != 3)
        return;
    sp->valid = true;
    sp->is_spam = strcasecmp(flag, "true") == 0;
    sp->score = clamp(spamc_float(s));
    sp->threshold = clamp(spamc_float(t));
}

/* Walks the header lines between the status line and the blank line. */
static void scan_headers(const char *buf, size_t from, size_t to, spam_line_t *sp)
{
    size_t pos = from;
    while (pos < to) {
        const char *lf = memchr(buf + pos, '\n', to - pos);
        size_t end = lf ? (size_t)(lf - buf) : to;
        size_t n = end - pos;
        if (n && buf[pos + n - 1] == '\r')
            n--;
        if (n)
            scan_spam_line(buf + pos, n, sp);
        pos = end + 1;
    }
}

/* libspamc gives up (EX_TOOBIG) on a status or header line it cannot hold. */
static bool line_too_long(const char *buf, size_t len, bool status_only)
{
    size_t pos = 0;
    while (pos < len) {
        const char *lf = memchr(buf + pos, '\n', len - pos);
        size_t n = lf ? (size_t)(lf - buf) - pos + 1 : len - pos;
        if (n > LIBSPAMC_LINE_MAX || (!lf && n >= LIBSPAMC_LINE_MAX))
            return true;
        if (!lf || status_only || n == 1 || (n == 2 && buf[pos] == '\r'))
            return false; /* end of the header block: the body may have long lines */
        pos += n;
    }
    return false;
}

static int ping_output(const char *buf, size_t status_bytes, tamis_buf_t *out)
{
    char line[LIBSPAMC_LINE_MAX + 1], vers[19];
    int code;
    size_t n = status_bytes > LIBSPAMC_LINE_MAX ? LIBSPAMC_LINE_MAX : status_bytes;
    memcpy(line, buf, n);
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (sscanf(line, "SPAMD/%18s %d", vers, &code) != 2)
        return TAMIS_EX_PROTOCOL;
    tamis_buf_printf(out, "SPAMD/%s %d\n", vers, code);
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

static int body_output(unsigned flags, const char *buf, size_t len, size_t out_cap,
                       const tamis_proto_response_t *resp, const spam_line_t *sp,
                       tamis_slice_t orig, tamis_buf_t *out)
{
    if (resp->content_length < 0)
        return TAMIS_EX_PROTOCOL;
    if (sp->valid && (((flags & TAMISC_REPORT_IFSPAM) && sp->is_spam) || (flags & TAMISC_REPORT)))
        tamis_buf_printf(out, "%.1f/%.1f\n", (double)sp->score, (double)sp->threshold);
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
    spam_line_t sp = {0};
    r->is_spam = TAMISC_UNKNOWN;
    r->did_tell = 0;
    tamis_buf_reset(out);
    if (line_too_long(buf, len, flags & TAMISC_PING))
        return TAMISC_EX_TOOBIG;
    int rc = tamis_proto_parse_response(buf, len, &resp);
    /* PING reads the status line only: what follows it does not matter */
    bool ping_ok = (flags & TAMISC_PING) && resp.status_bytes > 0;
    if (rc < 0 && !ping_ok)
        return TAMIS_EX_PROTOCOL;
    if (resp.status_bytes == 0)
        return TAMIS_EX_IOERR;
    if (flags & (TAMISC_LEARN | TAMISC_REPORT_MSG)) {
        if (rc != 1)
            return TAMIS_EX_IOERR;
        r->did_tell = resp.did_set | (resp.did_remove << 4);
        return TAMIS_EX_OK;
    }
    if (flags & TAMISC_PING) {
        r->is_spam = TAMISC_NOTSPAM;
        return ping_output(buf, resp.status_bytes, out);
    }
    if (rc != 1)
        return TAMIS_EX_IOERR;
    scan_headers(buf, resp.status_bytes, resp.header_bytes, &sp);
    if (sp.valid)
        r->is_spam = sp.is_spam ? TAMISC_ISSPAM : TAMISC_NOTSPAM;
    if (flags & TAMISC_CHECK_ONLY) {
        if (!sp.valid)
            return TAMIS_EX_PROTOCOL;
        tamis_buf_printf(out, "%.1f/%.1f\n", (double)sp.score, (double)sp.threshold);
        return out->err ? TAMIS_EX_OSERR : TAMIS_EX_OK;
    }
    return body_output(flags, buf, len, out_cap, &resp, &sp, orig, out);
}
