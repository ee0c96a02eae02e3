/*
 * The server side of the spamc protocol: an incremental request parser.
 *
 * It reproduces spamd's reading code (spamd.raw: accept_a_conn, parse_headers, got_*_header,
 * parse_body, zlib_inflate_read) including its quirks, because spamc and other clients were
 * written against that behaviour: the request line tolerates a bare LF but header lines only lose
 * a trailing CRLF; header names are case-sensitive; the body is read line by line until at least
 * Content-length bytes arrived; a compressed body is read to EOF, truncated, then inflated.
 *
 * Memory stays bounded whatever the client sends: lines are capped (TAMIS_PROTO_MAX_LINE), the
 * header count is capped at 256 as in spamd, and body bytes past max_body are counted, not kept.
 */
#include "tamis/proto.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* Longest request or header line kept. spamd has no limit; 64 KiB is far beyond any real client. */
#define TAMIS_PROTO_MAX_LINE 65536
/* spamd reads header lines 0..255; the 256th non-empty line is an error. */
#define TAMIS_PROTO_MAX_HEADERS 256

typedef enum { PH_LINE, PH_HEADERS, PH_BODY, PH_DONE, PH_ERROR } phase_t;

struct tamis_proto_req {
    size_t max_body;
    bool allow_tell;
    phase_t phase;
    tamis_buf_t line; /* the line being assembled */
    unsigned header_lines;

    tamis_verb_t verb;
    double version;
    char *user;
    char *message_class;
    unsigned set_bits, remove_bits;
    bool compressed;
    bool have_clen;
    unsigned long long clen; /* saturating */
    char *clen_text;         /* digits as sent, for the mismatch message */

    tamis_buf_t body;  /* stored body bytes (compressed bytes while reading a zlib body) */
    size_t body_count; /* body bytes consumed, stored or not */
    bool too_big;

    int err_code;
    tamis_buf_t err_line;
};

static const char *const verb_names[] = {
    [TAMIS_VERB_NONE] = "",
    [TAMIS_VERB_CHECK] = "CHECK",
    [TAMIS_VERB_SYMBOLS] = "SYMBOLS",
    [TAMIS_VERB_REPORT] = "REPORT",
    [TAMIS_VERB_REPORT_IFSPAM] = "REPORT_IFSPAM",
    [TAMIS_VERB_SKIP] = "SKIP",
    [TAMIS_VERB_PING] = "PING",
    [TAMIS_VERB_PROCESS] = "PROCESS",
    [TAMIS_VERB_HEADERS] = "HEADERS",
    [TAMIS_VERB_TELL] = "TELL",
};

const char *tamis_proto_verb_name(tamis_verb_t v)
{
    if ((unsigned)v >= sizeof verb_names / sizeof verb_names[0])
        return "";
    return verb_names[v];
}

/* Ownership: returns a parser the caller frees with tamis_proto_req_free(); NULL on ENOMEM. */
tamis_proto_req_t *tamis_proto_req_new(size_t max_body)
{
    tamis_proto_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->max_body = max_body;
    tamis_buf_init(&r->line, TAMIS_PROTO_MAX_LINE + 2);
    tamis_buf_init(&r->body, 0);
    tamis_buf_init(&r->err_line, 0);
    return r;
}

void tamis_proto_req_free(tamis_proto_req_t *r)
{
    if (!r)
        return;
    tamis_buf_free(&r->line);
    tamis_buf_free(&r->body);
    tamis_buf_free(&r->err_line);
    free(r->user);
    free(r->message_class);
    free(r->clen_text);
    free(r);
}

void tamis_proto_req_allow_tell(tamis_proto_req_t *r, bool allow)
{
    r->allow_tell = allow;
}

static tamis_proto_state_t fail(tamis_proto_req_t *r, int code, const char *kind,
                                const char *detail, size_t dlen)
{
    r->phase = PH_ERROR;
    r->err_code = code;
    tamis_buf_reset(&r->err_line);
    tamis_buf_printf(&r->err_line, "SPAMD/1.0 %d %s: ", code, kind);
    /* The line is handed out as a C string: a NUL echoed from the request becomes '?'. */
    for (size_t i = 0; i < dlen; i++)
        tamis_buf_putc(&r->err_line, detail[i] ? detail[i] : '?');
    tamis_buf_puts(&r->err_line, "\r\n");
    return TAMIS_PROTO_ERROR;
}

static tamis_proto_state_t protocol_error(tamis_proto_req_t *r, const char *detail)
{
    return fail(r, TAMIS_EX_PROTOCOL, "Bad header line", detail, strlen(detail));
}

static tamis_proto_state_t unavailable(tamis_proto_req_t *r, const char *detail)
{
    return fail(r, TAMIS_EX_UNAVAILABLE, "Service Unavailable", detail, strlen(detail));
}

static tamis_proto_state_t cur_state(const tamis_proto_req_t *r)
{
    if (r->phase == PH_DONE)
        return TAMIS_PROTO_DONE;
    if (r->phase == PH_ERROR)
        return TAMIS_PROTO_ERROR;
    return TAMIS_PROTO_NEED_MORE;
}

/* Perl's numification of a string: leading blanks, sign, digits, fraction, exponent; else 0. */
static double perl_number(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
        s++;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    const char *digits = p;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (p == digits || (p == digits + 1 && *digits == '.'))
        return 0.0;
    if (*p == 'e' || *p == 'E') {
        const char *e = p + 1;
        if (*e == '+' || *e == '-')
            e++;
        if (*e >= '0' && *e <= '9') {
            while (*e >= '0' && *e <= '9')
                e++;
            p = e;
        }
    }
    char tmp[64];
    size_t n = (size_t)(p - s);
    if (n >= sizeof tmp)
        n = sizeof tmp - 1; /* absurdly long numbers lose precision only */
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return strtod(tmp, NULL);
}

/* Finds "<verb> SPAMC/" anywhere in line (spamd's unanchored regex, leftmost match). */
static bool match_verbs(const char *line, const tamis_verb_t *verbs, size_t nverbs,
                        tamis_verb_t *verb, const char **version)
{
    for (const char *p = line; *p; p++) {
        for (size_t i = 0; i < nverbs; i++) {
            const char *name = verb_names[verbs[i]];
            size_t n = strlen(name);
            if (strncmp(p, name, n) == 0 && strncmp(p + n, " SPAMC/", 7) == 0) {
                *verb = verbs[i];
                *version = p + n + 7;
                return true;
            }
        }
    }
    return false;
}

static tamis_proto_state_t start_body(tamis_proto_req_t *r);

static tamis_proto_state_t request_line(tamis_proto_req_t *r, char *line, size_t len)
{
    /* s/\r?\n// */
    if (len && line[len - 1] == '\n') {
        len--;
        if (len && line[len - 1] == '\r')
            len--;
    }
    line[len] = '\0';
    if (strlen(line) != len) /* a NUL byte: refused rather than matched on a truncated view */
        return fail(r, TAMIS_EX_PROTOCOL, "Bad header line", line, len);
    static const tamis_verb_t scans[] = {TAMIS_VERB_PROCESS, TAMIS_VERB_CHECK,
                                         TAMIS_VERB_SYMBOLS, TAMIS_VERB_REPORT,
                                         TAMIS_VERB_HEADERS, TAMIS_VERB_REPORT_IFSPAM};
    static const tamis_verb_t tell[] = {TAMIS_VERB_TELL};
    static const tamis_verb_t pings[] = {TAMIS_VERB_SKIP, TAMIS_VERB_PING};
    const char *ver = NULL;
    tamis_verb_t v = TAMIS_VERB_NONE;
    if (!match_verbs(line, scans, 6, &v, &ver) && !match_verbs(line, tell, 1, &v, &ver) &&
        !match_verbs(line, pings, 2, &v, &ver))
        return fail(r, TAMIS_EX_PROTOCOL, "Bad header line", line, len);
    r->verb = v;
    r->version = perl_number(ver);
    bool headers;
    if (v == TAMIS_VERB_TELL)
        headers = true;
    else if (v == TAMIS_VERB_PING || v == TAMIS_VERB_SKIP)
        headers = r->version >= 1.5;
    else
        headers = r->version > 1.0;
    if (headers) {
        r->phase = PH_HEADERS;
        return TAMIS_PROTO_NEED_MORE;
    }
    if (v == TAMIS_VERB_PING || v == TAMIS_VERB_SKIP) {
        r->phase = PH_DONE;
        return TAMIS_PROTO_DONE;
    }
    return start_body(r);
}

/* Perl's /^(\d*)$/ and /^([\x20-\xFF]*)$/: "$" also matches before one final newline. */
static size_t strip_final_lf(const char *v, size_t n)
{
    return (n && v[n - 1] == '\n') ? n - 1 : n;
}

static tamis_proto_state_t got_clen(tamis_proto_req_t *r, const char *v, size_t n)
{
    n = strip_final_lf(v, n);
    unsigned long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return protocol_error(r, "(Content-Length contains non-numeric bytes)");
        x = (x > (~0ULL - 9) / 10) ? ~0ULL : x * 10 + (unsigned)(v[i] - '0');
    }
    free(r->clen_text);
    r->clen_text = strndup(v, n);
    if (!r->clen_text)
        return unavailable(r, "out of memory");
    r->clen = x;
    r->have_clen = true;
    return TAMIS_PROTO_NEED_MORE;
}

static tamis_proto_state_t got_user(tamis_proto_req_t *r, const char *v, size_t n)
{
    n = strip_final_lf(v, n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20)
            return protocol_error(r, "(User header contains control chars)");
    free(r->user);
    r->user = strndup(v, n);
    return r->user ? TAMIS_PROTO_NEED_MORE : unavailable(r, "out of memory");
}

/* Case-insensitive search of an ASCII needle in bytes that are not NUL-terminated. */
static bool icase_contains(const char *v, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(v + i, needle, k) == 0)
            return true;
    return false;
}

/* Set/Remove: spamd only looks for the substrings (/local/i, /remote/i); the last header wins. */
static unsigned tell_bits(const char *v, size_t n)
{
    unsigned bits = 0;
    if (icase_contains(v, n, "local"))
        bits |= TAMIS_TELL_LOCAL;
    if (icase_contains(v, n, "remote"))
        bits |= TAMIS_TELL_REMOTE;
    return bits;
}

static tamis_proto_state_t got_compress(tamis_proto_req_t *r, const char *v, size_t n)
{
    if (icase_contains(v, n, "zlib")) {
        r->compressed = true;
        return TAMIS_PROTO_NEED_MORE;
    }
    tamis_buf_t d;
    tamis_buf_init(&d, 0);
    tamis_buf_puts(&d, "(compression type not supported: ");
    tamis_buf_append(&d, v, n);
    tamis_buf_putc(&d, ')');
    tamis_proto_state_t st =
        fail(r, TAMIS_EX_PROTOCOL, "Bad header line", d.data ? d.data : "", d.len);
    tamis_buf_free(&d);
    return st;
}

static bool is_perl_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static tamis_proto_state_t headers_done(tamis_proto_req_t *r)
{
    if (r->verb == TAMIS_VERB_PING || r->verb == TAMIS_VERB_SKIP) {
        r->phase = PH_DONE;
        return TAMIS_PROTO_DONE;
    }
    if (r->verb == TAMIS_VERB_TELL) {
        if (!r->allow_tell)
            return unavailable(r, "TELL commands are not enabled, set the --allow-tell switch.");
        if ((r->set_bits & r->remove_bits) & TAMIS_TELL_LOCAL)
            return protocol_error(r, "Unable to set local and remove local in the same operation.");
        if ((r->set_bits & r->remove_bits) & TAMIS_TELL_REMOTE)
            return protocol_error(r,
                                  "Unable to set remote and remove remote in the same operation.");
    }
    return start_body(r);
}

static tamis_proto_state_t header_line(tamis_proto_req_t *r, char *line, size_t len)
{
    /* Only a trailing CRLF is removed: a bare-LF line keeps its LF (s/\r\n$//). */
    if (len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n')
        len -= 2;
    if (len == 0)
        return headers_done(r);
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return protocol_error(r, "(header not in 'Name: value' format)");
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    const char *end = line + len;
    while (v < end && is_perl_space(*v))
        v++;
    size_t vlen = (size_t)(end - v);
    tamis_proto_state_t st = TAMIS_PROTO_NEED_MORE;
#define IS(name) (nlen == sizeof(name) - 1 && memcmp(line, name, nlen) == 0)
    if (IS("Content-length")) {
        st = got_clen(r, v, vlen);
    } else if (IS("User")) {
        st = got_user(r, v, vlen);
    } else if (IS("Message-class")) {
        free(r->message_class);
        r->message_class = strndup(v, vlen);
        if (!r->message_class)
            st = unavailable(r, "out of memory");
    } else if (IS("Set")) {
        r->set_bits = tell_bits(v, vlen);
    } else if (IS("Remove")) {
        r->remove_bits = tell_bits(v, vlen);
    } else if (IS("Compress")) {
        st = got_compress(r, v, vlen);
    }
#undef IS
    if (st != TAMIS_PROTO_NEED_MORE)
        return st;
    if (++r->header_lines >= TAMIS_PROTO_MAX_HEADERS)
        return protocol_error(r, "(too many headers)");
    return TAMIS_PROTO_NEED_MORE;
}

static tamis_proto_state_t dispatch_line(tamis_proto_req_t *r)
{
    if (r->line.err)
        return unavailable(r, "out of memory");
    char *line = r->line.data ? r->line.data : "";
    size_t len = r->line.len;
    tamis_proto_state_t st =
        r->phase == PH_LINE ? request_line(r, line, len) : header_line(r, line, len);
    tamis_buf_reset(&r->line);
    return st;
}

/* ---- body ---------------------------------------------------------------------------------- */

static tamis_proto_state_t start_body(tamis_proto_req_t *r)
{
    if (r->compressed && !r->have_clen)
        return unavailable(r, "Compress requires Content-length header");
    r->phase = PH_BODY;
    return TAMIS_PROTO_NEED_MORE;
}

/* Keeps body bytes while under the limit; past it only counts them (memory stays bounded). */
static void store_body(tamis_proto_req_t *r, const char *p, size_t n, size_t limit)
{
    size_t room = r->body.len < limit ? limit - r->body.len : 0;
    size_t keep = n < room ? n : room;
    if (keep)
        tamis_buf_append(&r->body, p, keep);
    if (keep < n && !r->compressed)
        r->too_big = true;
    r->body_count += n;
}

static tamis_proto_state_t body_complete(tamis_proto_req_t *r)
{
    if (r->body.err)
        return unavailable(r, "out of memory");
    r->phase = PH_DONE;
    if (r->too_big || !r->have_clen || r->body_count == r->clen)
        return TAMIS_PROTO_DONE;
    tamis_buf_t d;
    tamis_buf_init(&d, 0);
    tamis_buf_printf(&d, "(Content-Length mismatch: Expected %s bytes, got %zu bytes)",
                     r->clen_text ? r->clen_text : "", r->body_count);
    tamis_proto_state_t st =
        fail(r, TAMIS_EX_PROTOCOL, "Bad header line", d.data ? d.data : "", d.len);
    tamis_buf_free(&d);
    return st;
}

/* Plain body with Content-length: spamd reads whole lines until it has at least clen bytes, so the
 * body ends at the first LF at or after byte clen-1 (or at EOF). Returns bytes consumed. */
static size_t feed_plain_clen(tamis_proto_req_t *r, const char *data, size_t len, bool *complete)
{
    unsigned long long target = r->clen ? r->clen - 1 : 0;
    size_t from = 0;
    if (r->body_count < target) {
        unsigned long long need = target - r->body_count;
        if (need >= len) {
            store_body(r, data, len, r->max_body);
            return len;
        }
        from = (size_t)need;
    }
    const char *lf = memchr(data + from, '\n', len - from);
    size_t take = lf ? (size_t)(lf - data) + 1 : len;
    store_body(r, data, take, r->max_body);
    *complete = lf != NULL;
    return take;
}

static size_t feed_body(tamis_proto_req_t *r, const char *data, size_t len, bool *complete)
{
    *complete = false;
    if (r->compressed) {
        /* spamd reads to EOF and truncates to Content-length before inflating. */
        size_t limit = r->max_body;
        if (r->clen < limit)
            limit = (size_t)r->clen;
        if (r->body_count + len > limit && r->clen > r->max_body)
            r->too_big = true;
        store_body(r, data, len, limit);
        return len;
    }
    if (!r->have_clen) {
        store_body(r, data, len, r->max_body);
        return len;
    }
    return feed_plain_clen(r, data, len, complete);
}

/* zlib_inflate_read(): inflate with a bounded output, then spamd's split/join of lines, which
 * collapses trailing LFs into exactly one. */
static tamis_proto_state_t inflate_body(tamis_proto_req_t *r)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK)
        return unavailable(r, "zlib: inflateInit failed");
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    zs.next_in = (Bytef *)(r->body.data ? r->body.data : "");
    zs.avail_in = (uInt)r->body.len;
    int rc = Z_OK;
    char chunk[16384];
    while (rc == Z_OK) {
        zs.next_out = (Bytef *)chunk;
        zs.avail_out = sizeof chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        size_t got = sizeof chunk - zs.avail_out;
        if (out.len + got > r->max_body) {
            r->too_big = true;
            break;
        }
        tamis_buf_append(&out, chunk, got);
        if (rc == Z_BUF_ERROR && got == 0)
            break;
        if (rc == Z_BUF_ERROR)
            rc = Z_OK;
    }
    inflateEnd(&zs);
    if (r->too_big) {
        tamis_buf_free(&out);
        r->phase = PH_DONE;
        return TAMIS_PROTO_DONE;
    }
    if (rc != Z_STREAM_END || out.err) {
        tamis_buf_free(&out);
        return unavailable(r, "zlib: failed to find end of zlib stream\n");
    }
    while (out.len && out.data[out.len - 1] == '\n')
        out.len--;
    if (out.len)
        tamis_buf_putc(&out, '\n');
    tamis_buf_free(&r->body);
    r->body = out;
    r->body_count = out.len;
    r->clen = out.len; /* spamd compares against the inflated size: never a mismatch */
    return body_complete(r);
}

/* ---- feeding --------------------------------------------------------------------------------- */

static tamis_proto_state_t feed_lines(tamis_proto_req_t *r, const char **data, size_t *len)
{
    const char *lf = memchr(*data, '\n', *len);
    size_t take = lf ? (size_t)(lf - *data) + 1 : *len;
    if (r->line.len + take > TAMIS_PROTO_MAX_LINE)
        return protocol_error(r, "(header line too long)");
    tamis_buf_append(&r->line, *data, take);
    *data += take;
    *len -= take;
    return lf ? dispatch_line(r) : TAMIS_PROTO_NEED_MORE;
}

/* Bytes after a complete request are ignored (one request per connection). */
tamis_proto_state_t tamis_proto_req_feed(tamis_proto_req_t *r, const char *data, size_t len)
{
    while (len && (r->phase == PH_LINE || r->phase == PH_HEADERS || r->phase == PH_BODY)) {
        if (r->phase != PH_BODY) {
            feed_lines(r, &data, &len);
            continue;
        }
        bool complete;
        size_t used = feed_body(r, data, len, &complete);
        data += used;
        len -= used;
        if (complete)
            return body_complete(r);
    }
    return cur_state(r);
}

tamis_proto_state_t tamis_proto_req_finish(tamis_proto_req_t *r)
{
    /* At EOF Perl's getline still returns a final partial line. */
    if ((r->phase == PH_LINE || r->phase == PH_HEADERS) && r->line.len)
        dispatch_line(r);
    switch (r->phase) {
    case PH_LINE:
        return protocol_error(r, "(closed before headers)");
    case PH_HEADERS:
        return protocol_error(r, "(EOF during headers)");
    case PH_BODY:
        if (r->compressed && !r->too_big)
            return inflate_body(r);
        if (r->compressed)
            r->phase = PH_DONE;
        return r->compressed ? TAMIS_PROTO_DONE : body_complete(r);
    default:
        return cur_state(r);
    }
}

tamis_proto_state_t tamis_proto_req_state(const tamis_proto_req_t *r)
{
    return cur_state(r);
}

bool tamis_proto_req_line_done(const tamis_proto_req_t *r)
{
    return r->verb != TAMIS_VERB_NONE || r->phase == PH_ERROR;
}

bool tamis_proto_req_headers_done(const tamis_proto_req_t *r)
{
    return r->phase == PH_BODY || r->phase == PH_DONE;
}

tamis_verb_t tamis_proto_req_verb(const tamis_proto_req_t *r)
{
    return r->verb;
}

double tamis_proto_req_version(const tamis_proto_req_t *r)
{
    return r->version;
}

const char *tamis_proto_req_user(const tamis_proto_req_t *r)
{
    return r->user;
}

const char *tamis_proto_req_message_class(const tamis_proto_req_t *r)
{
    return r->message_class;
}

unsigned tamis_proto_req_set(const tamis_proto_req_t *r)
{
    return r->set_bits;
}

unsigned tamis_proto_req_remove(const tamis_proto_req_t *r)
{
    return r->remove_bits;
}

bool tamis_proto_req_compressed(const tamis_proto_req_t *r)
{
    return r->compressed;
}

tamis_slice_t tamis_proto_req_body(const tamis_proto_req_t *r)
{
    if (r->phase != PH_DONE || r->too_big || !r->body.data)
        return tamis_slice("", 0);
    return tamis_slice(r->body.data, r->body.len);
}

size_t tamis_proto_req_body_count(const tamis_proto_req_t *r)
{
    return r->body_count;
}

bool tamis_proto_req_too_big(const tamis_proto_req_t *r)
{
    return r->too_big;
}

int tamis_proto_req_error_code(const tamis_proto_req_t *r)
{
    return r->phase == PH_ERROR ? r->err_code : 0;
}

const char *tamis_proto_req_error_line(const tamis_proto_req_t *r)
{
    return (r->phase == PH_ERROR && r->err_line.data) ? r->err_line.data : "";
}
