/*
 * Replies of the spamc protocol, byte for byte as spamd writes them (spamd.raw: check, dotell,
 * doskip_or_ping, protocol_error), and the client-side parser of a reply's status line and headers
 * (libspamc.c: _spamc_read_full_line, _handle_spamd_header), for tamisc.
 */
#include "tamis/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libspamc refuses reply lines longer than this. */
#define TAMIS_PROTO_MAX_REPLY_LINE 8192

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

/* Next line of buf from *pos: returns its length without CR/LF, or -1 if incomplete. */
static long next_line(const char *buf, size_t len, size_t *pos, const char **line)
{
    const char *start = buf + *pos;
    const char *lf = memchr(start, '\n', len - *pos);
    if (!lf)
        return (len - *pos > TAMIS_PROTO_MAX_REPLY_LINE) ? -2 : -1;
    size_t n = (size_t)(lf - start);
    if (n > TAMIS_PROTO_MAX_REPLY_LINE)
        return -2;
    *pos += n + 1;
    *line = start;
    if (n && start[n - 1] == '\r')
        n--;
    return (long)n;
}

static int parse_status(const char *line, size_t n, tamis_proto_response_t *out)
{
    char tmp[TAMIS_PROTO_MAX_REPLY_LINE + 1];
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    if (strncmp(tmp, "SPAMD/", 6) != 0)
        return TAMIS_EPROTO;
    char *end;
    out->version = strtod(tmp + 6, &end);
    if (end == tmp + 6 || *end != ' ' || out->version < 1.0)
        return TAMIS_EPROTO;
    char *cend;
    long code = strtol(end + 1, &cend, 10);
    if (cend == end + 1 || code < 0 || code > 999)
        return TAMIS_EPROTO;
    out->code = (int)code;
    return 0;
}

static unsigned did_bits(const char *v)
{
    unsigned bits = 0;
    if (strstr(v, "local"))
        bits |= TAMIS_TELL_LOCAL;
    if (strstr(v, "remote"))
        bits |= TAMIS_TELL_REMOTE;
    return bits;
}

static void parse_spam(const char *v, tamis_proto_response_t *out)
{
    char flag[16];
    double score, thr;
    out->has_spam = true;
    if (sscanf(v, "%15s ; %lf / %lf", flag, &score, &thr) == 3) {
        out->is_spam = strcasecmp(flag, "true") == 0 || strcasecmp(flag, "yes") == 0;
        out->score = score;
        out->threshold = thr;
    }
}

static void parse_header(const char *line, size_t n, tamis_proto_response_t *out)
{
    char tmp[TAMIS_PROTO_MAX_REPLY_LINE + 1];
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    if (strncmp(tmp, "Spam: ", 6) == 0)
        parse_spam(tmp + 6, out);
    else if (strncmp(tmp, "Content-length: ", 16) == 0)
        out->content_length = strtol(tmp + 16, NULL, 10);
    else if (strncmp(tmp, "DidSet: ", 8) == 0)
        out->did_set = did_bits(tmp + 8);
    else if (strncmp(tmp, "DidRemove: ", 11) == 0)
        out->did_remove = did_bits(tmp + 11);
}

int tamis_proto_parse_response(const char *buf, size_t len, tamis_proto_response_t *out)
{
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    size_t pos = 0;
    const char *line;
    long n = next_line(buf, len, &pos, &line);
    if (n == -2)
        return TAMIS_EPROTO;
    if (n < 0)
        return 0;
    int rc = parse_status(line, (size_t)n, out);
    if (rc < 0)
        return rc;
    out->status_bytes = pos;
    for (;;) {
        n = next_line(buf, len, &pos, &line);
        if (n == -2)
            return TAMIS_EPROTO;
        if (n < 0)
            return 0;
        if (n == 0) {
            out->header_bytes = pos;
            return 1;
        }
        parse_header(line, (size_t)n, out);
    }
}
