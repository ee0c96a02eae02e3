/*
 * Replies of the spamc protocol, byte for byte as spamd writes them (spamd.raw: check, dotell,
 * doskip_or_ping, protocol_error), and the client side used by tamisc: the request head and the
 * parser of a reply's status line and headers, both as libspamc 4.0.1 does them (libspamc.c:
 * message_filter, message_tell, _spamc_read_full_line, _handle_spamd_header). The parser copies
 * libspamc's sscanf() formats rather than being stricter or more lenient, because what spamc
 * prints and returns for an odd reply is part of what tamisc must reproduce.
 */
#include "tamis/proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void spam_header(tamis_buf_t *out, tamis_verb_t verb, const tamis_proto_verdict_t *v)
{
    const char *flag;
    if (verb == TAMIS_VERB_REPORT_IFSPAM)
        flag = v->is_spam ? "Yes" : "No"; /* spamd's quirk, kept for compatibility */
    else
        flag = v->is_spam ? "True" : "False";
    tamis_buf_printf(out, "Spam: %s ; %s / %s", flag, v->score ? v->score : "0.0",
                     v->threshold ? v->threshold : "0.0");
}

static int finish(tamis_buf_t *out)
{
    return out->err ? out->err : 0;
}

/* CHECK, SYMBOLS, REPORT, REPORT_IFSPAM */
static int reply_check(tamis_buf_t *out, tamis_verb_t verb, double version,
                       const tamis_proto_verdict_t *v)
{
    tamis_buf_puts(out, "SPAMD/1.1 0 EX_OK\r\n");
    if (verb == TAMIS_VERB_CHECK) {
        spam_header(out, verb, v);
        tamis_buf_puts(out, "\r\n\r\n");
        return finish(out);
    }
    tamis_slice_t body = v->body;
    if (verb == TAMIS_VERB_REPORT_IFSPAM && !v->is_spam)
        body = tamis_slice("", 0);
    bool crlf = verb == TAMIS_VERB_SYMBOLS && version < 1.3;
    if (version >= 1.3)
        tamis_buf_printf(out, "Content-length: %zu\r\n", body.len + (crlf ? 2 : 0));
    spam_header(out, verb, v);
    tamis_buf_puts(out, "\r\n\r\n");
    tamis_buf_append(out, body.ptr, body.len);
    if (crlf)
        tamis_buf_puts(out, "\r\n");
    return finish(out);
}

/* PROCESS, HEADERS: the reply form depends on what the client version understands. */
static int reply_process(tamis_buf_t *out, tamis_verb_t verb, double version,
                         const tamis_proto_verdict_t *v)
{
    if (version >= 1.3) {
        tamis_buf_printf(out, "SPAMD/1.1 0 EX_OK\r\nContent-length: %zu\r\n", v->body.len);
        spam_header(out, verb, v);
        tamis_buf_puts(out, "\r\n\r\n");
    } else if (version >= 1.2) {
        tamis_buf_printf(out, "SPAMD/1.1 0 EX_OK\r\nContent-length: %zu\r\n\r\n", v->body.len);
    } else {
        tamis_buf_puts(out, "SPAMD/1.0 0 EX_OK\r\n");
    }
    tamis_buf_append(out, v->body.ptr, v->body.len);
    return finish(out);
}

/* Appends the reply to out (caller-owned). Returns 0, TAMIS_EINVAL for a verb without a scan
 * reply, or the buffer's error. */
int tamis_proto_reply(tamis_buf_t *out, tamis_verb_t verb, double version,
                      const tamis_proto_verdict_t *v)
{
    switch (verb) {
    case TAMIS_VERB_CHECK:
    case TAMIS_VERB_SYMBOLS:
    case TAMIS_VERB_REPORT:
    case TAMIS_VERB_REPORT_IFSPAM:
        return reply_check(out, verb, version, v);
    case TAMIS_VERB_PROCESS:
    case TAMIS_VERB_HEADERS:
        return reply_process(out, verb, version, v);
    case TAMIS_VERB_PING:
        return tamis_proto_reply_pong(out);
    case TAMIS_VERB_TELL:
        return tamis_proto_reply_tell(out, 0, 0);
    case TAMIS_VERB_SKIP:
        return 0; /* SKIP gets no reply at all */
    default:
        return TAMIS_EINVAL;
    }
}

int tamis_proto_reply_pong(tamis_buf_t *out)
{
    tamis_buf_puts(out, "SPAMD/1.5 0 PONG\r\n");
    return finish(out);
}

/* "Name: local,remote\r\n": spamd's DidSet/DidRemove and libspamc's Set/Remove alike. */
static void tell_list(tamis_buf_t *out, const char *name, unsigned bits)
{
    if (!bits)
        return;
    tamis_buf_printf(out, "%s: ", name);
    if (bits & TAMIS_TELL_LOCAL)
        tamis_buf_puts(out, "local");
    if ((bits & TAMIS_TELL_LOCAL) && (bits & TAMIS_TELL_REMOTE))
        tamis_buf_putc(out, ',');
    if (bits & TAMIS_TELL_REMOTE)
        tamis_buf_puts(out, "remote");
    tamis_buf_puts(out, "\r\n");
}

int tamis_proto_reply_tell(tamis_buf_t *out, unsigned did_set, unsigned did_remove)
{
    tamis_buf_puts(out, "SPAMD/1.1 0 EX_OK\r\n");
    tell_list(out, "DidSet", did_set);
    tell_list(out, "DidRemove", did_remove);
    tamis_buf_puts(out, "\r\n\r\n"); /* spamd writes the extra CRLF pair */
    return finish(out);
}

int tamis_proto_reply_error(tamis_buf_t *out, int code, const char *text)
{
    tamis_buf_printf(out, "SPAMD/1.0 %d %s\r\n", code, text ? text : "");
    return finish(out);
}

/* ---- client side ----------------------------------------------------------------------------- */

int tamis_proto_build_request(tamis_buf_t *out, const tamis_proto_request_t *req)
{
    if (req->verb == TAMIS_VERB_NONE || req->verb == TAMIS_VERB_SKIP ||
        !*tamis_proto_verb_name(req->verb))
        return TAMIS_EINVAL;
    tamis_buf_printf(out, "%s SPAMC/1.5\r\n", tamis_proto_verb_name(req->verb));
    bool tell = req->verb == TAMIS_VERB_TELL;
    if (tell) {
        if (req->message_class)
            tamis_buf_printf(out, "Message-class: %s\r\n", req->message_class);
        tell_list(out, "Set", req->set);
        tell_list(out, "Remove", req->remove);
    }
    if (req->verb != TAMIS_VERB_PING) {
        if (req->user)
            tamis_buf_printf(out, "User: %s\r\n", req->user);
        if (req->compress && !tell)
            tamis_buf_puts(out, "Compress: zlib\r\n");
        tamis_buf_printf(out, "Content-length: %zu\r\n", req->body_len);
    }
    tamis_buf_puts(out, "\r\n");
    return finish(out);
}

/* Next line of buf from *pos, as _spamc_read_full_line reads it: returns its length without the
 * LF and one CR before it, -1 if incomplete, -2 if longer than libspamc can hold. */
static long next_line(const char *buf, size_t len, size_t *pos, const char **line)
{
    const char *start = buf + *pos;
    size_t left = len - *pos;
    const char *lf =
        memchr(start, '\n', left < TAMIS_PROTO_MAX_REPLY_LINE ? left : TAMIS_PROTO_MAX_REPLY_LINE);
    if (!lf)
        return left >= TAMIS_PROTO_MAX_REPLY_LINE ? -2 : -1;
    size_t n = (size_t)(lf - start);
    *pos += n + 1;
    *line = start;
    if (n && start[n - 1] == '\r')
        n--;
    return (long)n;
}

/* The line as the C string libspamc's sscanf() sees (it stops at a NUL byte, as libspamc's does).
 * tmp holds TAMIS_PROTO_MAX_REPLY_LINE bytes, which next_line() guarantees is enough. */
static const char *line_str(char *tmp, const char *line, size_t n)
{
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    return tmp;
}

/* libspamc's _locale_safe_string_to_float(buf, 20): strtol of the integer part, then the digits
 * after the dot divided by 10 to the number of characters after it. Kept bug for bug because the
 * printed score must match: only 19 characters count, the divisor wraps like libspamc's int, and
 * the arithmetic is float. */
static float spamc_float(const char *s)
{
    char buf[20];
    size_t n = strnlen(s, sizeof buf - 1);
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *dot;
    bool neg = buf[0] == '-';
    float ret = (float)strtol(buf, &dot, 10);
    if (*dot != '.')
        return ret;
    const char *cp = dot + 1;
    float post = (float)strtol(cp, NULL, 10);
    if (post >= -0.00001 && post <= 0.00001)
        return ret;
    uint32_t div = 1;
    for (; *cp; cp++)
        div *= 10u;
    float fdiv = (float)(int32_t)div;
    return neg ? ret - post / fdiv : ret + post / fdiv;
}

static double spamc_bound(float v)
{
    if (v > 1e10)
        return 1e10;
    if (v < -1e10)
        return -1e10;
    return v;
}

static int parse_status(const char *line, tamis_proto_response_t *out)
{
    char vers[20];
    int code;
    if (sscanf(line, "SPAMD/%18s %d %*s", vers, &code) != 2)
        return TAMIS_EPROTO;
    float version = spamc_float(vers);
    if (version < 1.0)
        return TAMIS_EPROTO;
    out->code = code;
    out->version = version;
    memcpy(out->version_str, vers, sizeof out->version_str);
    return 0;
}

static unsigned did_bits(const char *word)
{
    unsigned bits = 0;
    if (strstr(word, "local"))
        bits |= TAMIS_TELL_LOCAL;
    if (strstr(word, "remote"))
        bits |= TAMIS_TELL_REMOTE;
    return bits;
}

/* _handle_spamd_header: the first format that matches decides; nothing is an error. */
static void parse_header(const char *line, tamis_proto_response_t *out)
{
    char flag[6], score[21], thr[21], word[15];
    int cl;
    if (sscanf(line, "Spam: %5s ; %20s / %20s", flag, score, thr) == 3) {
        out->has_spam = true;
        out->is_spam = strcasecmp(flag, "true") == 0;
        memcpy(out->spam_flag, flag, sizeof out->spam_flag);
        out->score = spamc_bound(spamc_float(score));
        out->threshold = spamc_bound(spamc_float(thr));
        if (out->is_spam) {
            out->has_true_spam = true;
            out->true_score = out->score;
            out->true_threshold = out->threshold;
        }
    } else if (sscanf(line, "Content-length: %d", &cl) == 1) {
        out->has_content_length = true;
        out->content_length = cl;
    } else if (sscanf(line, "DidSet: %14s", word) == 1) {
        out->did_set |= did_bits(word);
    } else if (sscanf(line, "DidRemove: %14s", word) == 1) {
        out->did_remove |= did_bits(word);
    }
}

/* Re-parses from the start on every call: a client calls it as bytes arrive, and the header block
 * it waits for is short (tamisc bounds it). */
int tamis_proto_parse_response(const char *buf, size_t len, tamis_proto_response_t *out)
{
    char tmp[TAMIS_PROTO_MAX_REPLY_LINE];
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    size_t pos = 0;
    const char *line;
    long n = next_line(buf, len, &pos, &line);
    if (n == -2)
        return TAMIS_ELIMIT;
    if (n < 0)
        return 0;
    int rc = parse_status(line_str(tmp, line, (size_t)n), out);
    if (rc < 0)
        return rc;
    out->status_bytes = pos;
    for (;;) {
        n = next_line(buf, len, &pos, &line);
        if (n == -2)
            return TAMIS_ELIMIT;
        if (n < 0)
            return 0;
        if (n == 0) {
            out->header_bytes = pos;
            return 1;
        }
        parse_header(line_str(tmp, line, (size_t)n), out);
    }
}
