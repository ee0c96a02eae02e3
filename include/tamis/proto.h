/*
 * proto: the spamc/spamd wire protocol (SPAMC/1.0-1.5), shared by tamisd and tamisc.
 *
 * Request side (server): an incremental parser fed with whatever bytes arrive. It validates
 * exactly as spamd does (spec-protocol.md §2) and, on error, yields spamd's EX_* code and the
 * exact error line to send. It enforces a maximum body size and the 256-header limit, so nothing
 * a client sends grows memory without bound.
 *
 * Reply side: builders for every success reply and error line, byte-exact (§4).
 *
 * Client side (tamisc, and tamisd reading back its own replies): the request head and the reply
 * parser, both exactly as libspamc 4.0.1 (spec-protocol §7), quirks included.
 *
 * Ownership: tamis_proto_req_new() returns a parser the caller frees with tamis_proto_req_free();
 * strings it returns belong to it. Reply builders append to a caller-owned buffer.
 * Threads: a parser is used by one thread at a time; no global state.
 */
#ifndef TAMIS_PROTO_H
#define TAMIS_PROTO_H

#include "tamis/core.h"

/* sysexits values used on the wire */
enum {
    TAMIS_EX_OK = 0,
    TAMIS_EX_USAGE = 64,
    TAMIS_EX_DATAERR = 65,
    TAMIS_EX_NOINPUT = 66,
    TAMIS_EX_NOUSER = 67,
    TAMIS_EX_NOHOST = 68,
    TAMIS_EX_UNAVAILABLE = 69,
    TAMIS_EX_SOFTWARE = 70,
    TAMIS_EX_OSERR = 71,
    TAMIS_EX_OSFILE = 72,
    TAMIS_EX_CANTCREAT = 73,
    TAMIS_EX_IOERR = 74,
    TAMIS_EX_TEMPFAIL = 75,
    TAMIS_EX_PROTOCOL = 76,
    TAMIS_EX_NOPERM = 77,
    TAMIS_EX_CONFIG = 78,
    TAMIS_EX_TIMEOUT = 79,
    TAMIS_EX_TOOBIG = 98,
};

typedef enum {
    TAMIS_VERB_NONE = 0,
    TAMIS_VERB_CHECK,
    TAMIS_VERB_SYMBOLS,
    TAMIS_VERB_REPORT,
    TAMIS_VERB_REPORT_IFSPAM,
    TAMIS_VERB_SKIP,
    TAMIS_VERB_PING,
    TAMIS_VERB_PROCESS,
    TAMIS_VERB_HEADERS,
    TAMIS_VERB_TELL,
} tamis_verb_t;

const char *tamis_proto_verb_name(tamis_verb_t v);

/* TELL Set/Remove bits */
enum { TAMIS_TELL_LOCAL = 1, TAMIS_TELL_REMOTE = 2 };

typedef enum {
    TAMIS_PROTO_NEED_MORE = 0, /* feed more bytes (or call finish at EOF) */
    TAMIS_PROTO_DONE = 1,      /* a complete request: verb, headers and body are available */
    TAMIS_PROTO_ERROR = 2,     /* send tamis_proto_req_error_line() and close */
} tamis_proto_state_t;

typedef struct tamis_proto_req tamis_proto_req_t;

/* max_body: largest body (after inflation) kept. Past it the parser stops storing (memory stays
 * bounded), keeps counting, and tamis_proto_req_too_big() turns true; the server decides the reply.
 */
tamis_proto_req_t *tamis_proto_req_new(size_t max_body);
void tamis_proto_req_free(tamis_proto_req_t *r);
/* spamd's --allow-tell (default off): without it a TELL yields, right after its header block,
 * "SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled, set the --allow-tell switch."
 */
void tamis_proto_req_allow_tell(tamis_proto_req_t *r, bool allow);

/* Feeds bytes. Returns the new state. Bytes after a complete request are ignored. A request or
 * header line over 64 KiB is refused with "(header line too long)" (spamd has no limit). */
tamis_proto_state_t tamis_proto_req_feed(tamis_proto_req_t *r, const char *data, size_t len);
/* The peer half-closed: completes a body read to EOF (no Content-length, or Compress), or yields
 * the EOF errors spamd gives ("(closed before headers)", "(EOF during headers)", length
 * mismatch). */
tamis_proto_state_t tamis_proto_req_finish(tamis_proto_req_t *r);
tamis_proto_state_t tamis_proto_req_state(const tamis_proto_req_t *r);
/* True once the request line was read (the verb is known, or it was rejected): the server then
 * switches from --timeout-tcp to --timeout-child, as spamd does. */
bool tamis_proto_req_line_done(const tamis_proto_req_t *r);
/* True once the request line and header block are complete (the verb and headers are known). */
bool tamis_proto_req_headers_done(const tamis_proto_req_t *r);

tamis_verb_t tamis_proto_req_verb(const tamis_proto_req_t *r);
/* Protocol version as a number: "1.5" → 1.5 (compared numerically, as spamd does). */
double tamis_proto_req_version(const tamis_proto_req_t *r);
const char *tamis_proto_req_user(const tamis_proto_req_t *r);          /* NULL if absent */
const char *tamis_proto_req_message_class(const tamis_proto_req_t *r); /* NULL if absent */
unsigned tamis_proto_req_set(const tamis_proto_req_t *r);              /* TAMIS_TELL_* bits */
unsigned tamis_proto_req_remove(const tamis_proto_req_t *r);
bool tamis_proto_req_compressed(const tamis_proto_req_t *r);
/* The body (inflated if it was compressed), owned by r until tamis_proto_req_free(). Valid once
 * DONE; empty when too big. */
tamis_slice_t tamis_proto_req_body(const tamis_proto_req_t *r);
/* Body bytes received so far (compressed bytes until inflated), counted even when not stored. */
size_t tamis_proto_req_body_count(const tamis_proto_req_t *r);
/* The body exceeded max_body (tamisd --max-size): nothing was kept; tamisd answers
 * "SPAMD/1.0 69 Service Unavailable: message too big (limit N bytes)". */
bool tamis_proto_req_too_big(const tamis_proto_req_t *r);

/* On ERROR: the sysexits code and the full line to send ("SPAMD/1.0 76 Bad header line: …\r\n"). */
int tamis_proto_req_error_code(const tamis_proto_req_t *r);
const char *tamis_proto_req_error_line(const tamis_proto_req_t *r);

/* ---- replies --------------------------------------------------------------------------------- */

typedef struct {
    bool is_spam;
    const char *score;     /* display score, e.g. "15.3" */
    const char *threshold; /* e.g. "5.0" */
    tamis_slice_t body;    /* SYMBOLS list, report, rewritten message (ignored for CHECK) */
} tamis_proto_verdict_t;

/* Appends the success reply for verb at client version (spec-protocol §4.2). */
int tamis_proto_reply(tamis_buf_t *out, tamis_verb_t verb, double version,
                      const tamis_proto_verdict_t *v);
/* "SPAMD/1.5 0 PONG\r\n" */
int tamis_proto_reply_pong(tamis_buf_t *out);
/* TELL reply: DidSet/DidRemove lines and the extra CRLF pair. */
int tamis_proto_reply_tell(tamis_buf_t *out, unsigned did_set, unsigned did_remove);
/* "SPAMD/1.0 <code> <text>\r\n" */
int tamis_proto_reply_error(tamis_buf_t *out, int code, const char *text);

/* ---- client side (tamisc) -------------------------------------------------------------------- */

/* What a client sends before the body, built as libspamc 4.0.1 does (message_filter,
 * message_tell): "<VERB> SPAMC/1.5\r\n"; for TELL then Message-class, Set and Remove; for every
 * verb but PING then User (if user), Compress (if compress, never for TELL) and Content-length;
 * then the empty line. */
typedef struct {
    tamis_verb_t verb;
    const char *user;          /* NULL: no User: line */
    bool compress;             /* "Compress: zlib"; body_len is then the compressed size */
    const char *message_class; /* TELL: "spam", "ham" or NULL */
    unsigned set, remove;      /* TELL: TAMIS_TELL_* bits for Set: and Remove: */
    size_t body_len;
} tamis_proto_request_t;

/* Appends the request head to out (caller-owned). Returns 0, TAMIS_EINVAL for SKIP or NONE, or
 * the buffer's error. */
int tamis_proto_build_request(tamis_buf_t *out, const tamis_proto_request_t *req);

/* The longest reply line libspamc reads, LF included (8188-byte buffer, one byte for the NUL).
 * A longer status or header line makes libspamc fail with EX_TOOBIG. */
#define TAMIS_PROTO_MAX_REPLY_LINE 8187

/* A reply's status line and header block as libspamc 4.0.1 reads them (_spamc_read_full_line,
 * message_filter, _handle_spamd_header): every field follows libspamc's sscanf() formats, so a
 * client built on it prints the same bytes as spamc. */
typedef struct {
    /* "SPAMD/%18s %d": a tab or any text after the version, and any int code, are accepted. */
    int code;
    char version_str[19]; /* the version word as read (spamc -K prints it back) */
    double version;       /* libspamc's integer-plus-fraction reading of it ("1.5x" -> 1.05) */
    /* "Spam: %5s ; %20s / %20s". A line that does not match is ignored; of the lines that match,
     * the last one wins. */
    bool has_spam;     /* some Spam: line matched; without one spamc has no verdict */
    bool is_spam;      /* its flag is "true", case-insensitively: spamd's "Yes" is not spam */
    char spam_flag[6]; /* its flag word as read ("True", "Yes", "No"...), for clients that want
                          to accept REPORT_IFSPAM's "Yes" */
    /* libspamc's locale-independent reading (strtol of the integer part plus the fraction, in
     * float precision, clamped to +-1e10): no nan, inf, hex or exponent. */
    double score, threshold;
    /* The last matching Spam: line whose flag was "true": what spamc -r prints, even when a
     * later line says otherwise (libspamc writes its score line as each header arrives). */
    bool has_true_spam;
    double true_score, true_threshold;
    /* "Content-length: %d" (so "Content-length:5" and "5x" count, a junk value is ignored and an
     * out-of-int value wraps as glibc's sscanf does). content_length is -1 when no line matched;
     * has_content_length tells an explicit "-1" from that. A negative value is kept, not refused:
     * libspamc then fails with EX_PROTOCOL in every mode that reads a body (as with no
     * Content-length at all), while CHECK, PING and TELL replies still succeed. */
    bool has_content_length;
    long content_length;
    /* "DidSet: %14s" / "DidRemove: %14s": TAMIS_TELL_* bits for "local"/"remote" in that word,
     * or-ed over all such lines. */
    unsigned did_set, did_remove;
    size_t status_bytes; /* bytes of the status line (set as soon as it is complete and valid) */
    size_t header_bytes; /* bytes of status line + header block (set when complete) */
} tamis_proto_response_t;

/* Parses buf[0, len) (CR before LF dropped, unknown headers ignored). Returns:
 *   1             complete: header_bytes is set and the body starts there;
 *   0             more bytes needed (status_bytes is set once the status line is complete:
 *                 PONG and error replies have no header block);
 *   TAMIS_EPROTO  the status line does not match "SPAMD/%18s %d", or its version is < 1.0
 *                 (libspamc's EX_PROTOCOL); status_bytes is 0;
 *   TAMIS_ELIMIT  a status or header line longer than TAMIS_PROTO_MAX_REPLY_LINE (libspamc's
 *                 EX_TOOBIG). When a header line is the long one, the status line was valid
 *                 and status_bytes, code and version stay set: a PING client (spamc -K) reads
 *                 nothing past the status line and still succeeds.
 * No header content makes the reply malformed: like libspamc, the parser leaves it to the
 * client to decide what a missing Spam: or Content-length line means for its mode.
 * Reads at most len bytes; no allocation; any thread. */
int tamis_proto_parse_response(const char *buf, size_t len, tamis_proto_response_t *out);

#endif
