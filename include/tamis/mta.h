/*
 * mta: the pure parts of Tamis's mail-server front ends, with no I/O, so that tamisd, the unit
 * tests and the fuzz targets share them.
 *
 * - SMTP: one command line parsed into a verb and its argument (RFC 5321 §4.1), the DATA stream
 *   decoded (dot-unstuffing, end at CRLF.CRLF, size bounded) and encoded back for re-injection.
 * - Milter (Sendmail's protocol, version 6, as Postfix speaks it): packet framing, NUL-separated
 *   string fields, and builders for the replies.
 *
 * Ownership: parsed results point into the caller's input (borrowed); builders append to a
 * caller-owned tamis_buf_t. Threads: no state; any thread. Errors: TAMIS_EPROTO for malformed
 * input, TAMIS_ELIMIT for input over a named limit.
 */
#ifndef TAMIS_MTA_H
#define TAMIS_MTA_H

#include "tamis/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- SMTP ------------------------------------------------------------------------------------ */

/* Longest command line we accept (RFC 5321 says 512; extensions such as XFORWARD and long MAIL
 * parameters need more). */
#define TAMIS_MTA_SMTP_LINE_MAX 4096

typedef enum {
    TAMIS_MTA_SMTP_UNKNOWN = 0,
    TAMIS_MTA_SMTP_HELO,
    TAMIS_MTA_SMTP_EHLO,
    TAMIS_MTA_SMTP_LHLO,
    TAMIS_MTA_SMTP_MAIL,
    TAMIS_MTA_SMTP_RCPT,
    TAMIS_MTA_SMTP_DATA,
    TAMIS_MTA_SMTP_RSET,
    TAMIS_MTA_SMTP_NOOP,
    TAMIS_MTA_SMTP_QUIT,
    TAMIS_MTA_SMTP_VRFY,
    TAMIS_MTA_SMTP_HELP,
    TAMIS_MTA_SMTP_XFORWARD,
    TAMIS_MTA_SMTP_BDAT,
    TAMIS_MTA_SMTP_STARTTLS,
} tamis_mta_smtp_verb_t;

typedef struct {
    tamis_mta_smtp_verb_t verb;
    tamis_slice_t arg;  /* everything after the verb and its spaces (HELO name, XFORWARD list) */
    tamis_slice_t path; /* MAIL/RCPT: the address between < and > (may be empty: null sender) */
    tamis_slice_t
        params; /* MAIL/RCPT: ESMTP parameters after the path, e.g. "SIZE=12 BODY=8BITMIME" */
} tamis_mta_smtp_cmd_t;

/* Parses one command line (without its CRLF). Returns 0, or TAMIS_EPROTO for a syntax error in a
 * known verb (the caller answers 501), TAMIS_ELIMIT over TAMIS_MTA_SMTP_LINE_MAX. An unknown verb
 * returns 0 with verb TAMIS_MTA_SMTP_UNKNOWN (the caller answers 500). */
int tamis_mta_smtp_parse(const char *line, size_t len, tamis_mta_smtp_cmd_t *out);

/* Finds "NAME=value" (case-insensitive name) in an ESMTP parameter list; returns its value or an
 * empty slice with ptr NULL. */
tamis_slice_t tamis_mta_smtp_param(tamis_slice_t params, const char *name);

/* Decoder of the DATA stream: removes dot-stuffing and finds the terminating "." line. Content
 * beyond max bytes is counted but not stored (too_big), so the session can still answer 552 at
 * the end. A bare LF is taken as a line end (lenient, as Postfix is). */
typedef struct {
    int state;
    size_t max;
    size_t count; /* decoded bytes seen, stored or not */
    bool too_big;
    bool done;
} tamis_mta_data_t;

void tamis_mta_data_init(tamis_mta_data_t *d, size_t max);
/* Feeds n bytes; appends decoded bytes to out. Returns the bytes consumed: fewer than n when the
 * end of data was reached (d->done; the rest is the next pipelined command). */
size_t tamis_mta_data_feed(tamis_mta_data_t *d, const char *p, size_t n, tamis_buf_t *out);
/* Appends p as DATA content: CRLF line ends, dot-stuffed, then the ".\r\n" terminator. */
int tamis_mta_data_encode(const char *p, size_t n, tamis_buf_t *out);

/* Parses an SMTP reply line "250-text" / "250 text". Returns the code (200..599) and sets *last
 * when it is the final line of the reply, or TAMIS_EPROTO. */
int tamis_mta_smtp_reply_line(const char *line, size_t len, bool *last);

/* ---- milter ---------------------------------------------------------------------------------- */

#define TAMIS_MTA_MILTER_VERSION 6
/* Largest packet accepted: body chunks are <= 65535 bytes; macros and headers stay far below. */
#define TAMIS_MTA_MILTER_PACKET_MAX (256 * 1024)
/* Most strings split out of one packet (ESMTP arguments, macro pairs). */
#define TAMIS_MTA_MILTER_STRINGS_MAX 64

/* Action flags (SMFIF_*) and protocol flags (SMFIP_*) we use. */
#define TAMIS_MTA_SMFIF_ADDHDRS 0x01u
#define TAMIS_MTA_SMFIF_CHGHDRS 0x10u
#define TAMIS_MTA_SMFIF_QUARANTINE 0x20u
#define TAMIS_MTA_SMFIP_NOUNKNOWN (1u << 8)
/* "No reply" flags: the MTA sends the event and does not wait for an answer. */
#define TAMIS_MTA_SMFIP_NR_HDR (1u << 7)
#define TAMIS_MTA_SMFIP_NR_CONN (1u << 12)
#define TAMIS_MTA_SMFIP_NR_HELO (1u << 13)
#define TAMIS_MTA_SMFIP_NR_MAIL (1u << 14)
#define TAMIS_MTA_SMFIP_NR_RCPT (1u << 15)
#define TAMIS_MTA_SMFIP_NR_DATA (1u << 16)
#define TAMIS_MTA_SMFIP_NR_EOH (1u << 18)
#define TAMIS_MTA_SMFIP_NR_BODY (1u << 19)

typedef struct {
    char cmd;
    const char *data; /* borrowed from the input */
    size_t len;
} tamis_mta_milter_pkt_t;

/* Frames one packet from p[0..n). Returns 1 with *pkt and *used set, 0 if more bytes are needed,
 * TAMIS_EPROTO for a zero length, TAMIS_ELIMIT for a length over max. */
int tamis_mta_milter_frame(const char *p, size_t n, size_t max, tamis_mta_milter_pkt_t *pkt,
                           size_t *used);

/* Splits data into NUL-terminated strings (pointers into data). Returns 0, TAMIS_EPROTO when the
 * last string is not terminated, TAMIS_ELIMIT over max strings. */
int tamis_mta_milter_strings(const char *data, size_t len, const char **v, size_t max,
                             size_t *count);

/* OPTNEG payload: version, actions, protocol. Returns 0 or TAMIS_EPROTO (under 12 bytes). */
int tamis_mta_milter_optneg(const char *data, size_t len, uint32_t *version, uint32_t *actions,
                            uint32_t *protocol);

/* CONNECT payload: "host\0" family(char) [port(uint16) "addr\0"]. addr is "" for family 'U'. */
typedef struct {
    const char *host;
    char family;
    unsigned port;
    const char *addr;
} tamis_mta_milter_connect_t;
int tamis_mta_milter_connect(const char *data, size_t len, tamis_mta_milter_connect_t *out);

/* Appends one packet: 4-byte length (command byte included), the command, the payload. */
int tamis_mta_milter_put(tamis_buf_t *out, char cmd, const void *data, size_t len);
/* OPTNEG reply. */
int tamis_mta_milter_put_optneg(tamis_buf_t *out, uint32_t version, uint32_t actions,
                                uint32_t protocol);
/* ADDHEADER ('h'), or CHGHEADER ('m') with a 1-based index (empty value deletes). */
int tamis_mta_milter_put_header(tamis_buf_t *out, char cmd, uint32_t index, const char *name,
                                const char *value);
/* REPLYCODE: "550 5.7.1 text" with '%' doubled and control characters replaced. */
int tamis_mta_milter_put_reply(tamis_buf_t *out, const char *code, const char *xcode,
                               const char *text);

#endif
