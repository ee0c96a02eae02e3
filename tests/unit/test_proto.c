/* Unit tests for lib/proto: every error line of spec-protocol §2 and every reply of §4.2, with
 * the exact bytes real spamd 4.0.1 produced for the same requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tamis/proto.h"

#define MAX_BODY (1024 * 1024)

/* Feeds input in chunks of step bytes (to exercise the incremental paths), then EOF if eof. */
static tamis_proto_req_t *parse_ex(const char *in, size_t len, size_t step, bool eof, bool tell,
                                   size_t max_body)
{
    tamis_proto_req_t *r = tamis_proto_req_new(max_body);
    assert_non_null(r);
    tamis_proto_req_allow_tell(r, tell);
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        tamis_proto_req_feed(r, in + i, n);
    }
    if (eof)
        tamis_proto_req_finish(r);
    return r;
}

static tamis_proto_req_t *parse_all(const char *in, bool eof)
{
    return parse_ex(in, strlen(in), strlen(in) ? strlen(in) : 1, eof, false, MAX_BODY);
}

static void expect_error(const char *in, bool eof, int code, const char *line)
{
    /* the same verdict whether the bytes arrive at once or one at a time */
    for (size_t step = 1; step <= 2; step++) {
        size_t len = strlen(in);
        tamis_proto_req_t *r =
            step == 1 ? parse_ex(in, len, 1, eof, false, MAX_BODY) : parse_all(in, eof);
        assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_ERROR);
        assert_int_equal(tamis_proto_req_error_code(r), code);
        assert_string_equal(tamis_proto_req_error_line(r), line);
        tamis_proto_req_free(r);
    }
}

static void test_request_line_errors(void **state)
{
    (void)state;
    expect_error("FOO SPAMC/1.5\r\n\r\n", true, 76,
                 "SPAMD/1.0 76 Bad header line: FOO SPAMC/1.5\r\n");
    expect_error("CHECK SPAMD/1.5\n", true, 76,
                 "SPAMD/1.0 76 Bad header line: CHECK SPAMD/1.5\r\n");
    expect_error("", true, 76, "SPAMD/1.0 76 Bad header line: (closed before headers)\r\n");
    expect_error("CHECK SPAMC/1.5\r\nUser: x\r\n", true, 76,
                 "SPAMD/1.0 76 Bad header line: (EOF during headers)\r\n");
}

static void test_nul_in_request_line(void **state)
{
    (void)state;
    static const char in[] = "CHECK SPAMC/1.5\0x\r\n\r\n";
    tamis_proto_req_t *r = parse_ex(in, sizeof in - 1, 4, true, false, MAX_BODY);
    assert_int_equal(tamis_proto_req_error_code(r), 76);
    /* found by fuzz_proto: the echoed line must stay one C string */
    assert_string_equal(tamis_proto_req_error_line(r),
                        "SPAMD/1.0 76 Bad header line: CHECK SPAMC/1.5?x\r\n");
    tamis_proto_req_free(r);
}

static void test_header_errors(void **state)
{
    (void)state;
    /* a bare LF ends no header block: the "\n" line is not in Name: value form */
    expect_error("CHECK SPAMC/1.5\r\nContent-length: 5\r\n\n12345", true, 76,
                 "SPAMD/1.0 76 Bad header line: (header not in 'Name: value' format)\r\n");
    expect_error("CHECK SPAMC/1.5\r\nContent-length: 5x\r\n\r\n12345", true, 76,
                 "SPAMD/1.0 76 Bad header line: (Content-Length contains non-numeric bytes)\r\n");
    expect_error("CHECK SPAMC/1.5\r\nUser: a\x01"
                 "b\r\n\r\n",
                 true, 76,
                 "SPAMD/1.0 76 Bad header line: (User header contains control chars)\r\n");
    expect_error("CHECK SPAMC/1.5\r\nCompress: gzip\r\n\r\n", true, 76,
                 "SPAMD/1.0 76 Bad header line: (compression type not supported: gzip)\r\n");
    expect_error("CHECK SPAMC/1.5\r\nCompress: zlib\r\n\r\n12345", true, 69,
                 "SPAMD/1.0 69 Service Unavailable: Compress requires Content-length header\r\n");
    expect_error("CHECK SPAMC/1.5\r\nContent-length: 3\r\n\r\n12345", true, 76,
                 "SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 3 bytes, got 5 "
                 "bytes)\r\n");
    expect_error("CHECK SPAMC/1.5\r\nContent-length: \r\n\r\n12345", true, 76,
                 "SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected  bytes, got 5 "
                 "bytes)\r\n");
    expect_error("CHECK SPAMC/1.5\r\nContent-length: 10\r\n\r\n12345", true, 76,
                 "SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 10 bytes, got 5 "
                 "bytes)\r\n");
}

static void test_too_many_headers(void **state)
{
    (void)state;
    char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof buf, "CHECK SPAMC/1.5\r\n");
    for (int i = 0; i < 255; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X: y\r\n");
    /* 255 header lines and the blank line: accepted (as spamd does) */
    snprintf(buf + n, sizeof buf - n, "\r\nhi\n");
    tamis_proto_req_t *r = parse_all(buf, true);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    tamis_proto_req_free(r);
    snprintf(buf + n, sizeof buf - n, "X: y\r\n\r\nhi\n");
    expect_error(buf, true, 76, "SPAMD/1.0 76 Bad header line: (too many headers)\r\n");
}

static void test_tell_errors(void **state)
{
    (void)state;
    const char *req = "TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\nContent-length: "
                      "4\r\n\r\nabc\n";
    expect_error(req, true, 69,
                 "SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled, set the "
                 "--allow-tell switch.\r\n");
    const char *both = "TELL SPAMC/1.5\r\nSet: local\r\nRemove: LOCAL\r\n\r\n";
    tamis_proto_req_t *r = parse_ex(both, strlen(both), 7, true, true, MAX_BODY);
    assert_int_equal(tamis_proto_req_error_code(r), 76);
    assert_string_equal(tamis_proto_req_error_line(r),
                        "SPAMD/1.0 76 Bad header line: Unable to set local and remove local in the "
                        "same operation.\r\n");
    tamis_proto_req_free(r);
    r = parse_ex(req, strlen(req), 5, false, true, MAX_BODY);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    assert_int_equal(tamis_proto_req_verb(r), TAMIS_VERB_TELL);
    assert_int_equal(tamis_proto_req_set(r), TAMIS_TELL_LOCAL);
    assert_int_equal(tamis_proto_req_remove(r), 0);
    assert_string_equal(tamis_proto_req_message_class(r), "spam");
    tamis_proto_req_free(r);
}

static void test_good_requests(void **state)
{
    (void)state;
    const char *req = "SYMBOLS SPAMC/1.5\r\nUser: bob\r\nContent-length: 12\r\n\r\nSubject: x\n\n"
                      "trailing bytes are ignored";
    tamis_proto_req_t *r = parse_ex(req, strlen(req), 3, false, false, MAX_BODY);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    assert_int_equal(tamis_proto_req_verb(r), TAMIS_VERB_SYMBOLS);
    assert_true(tamis_proto_req_version(r) == 1.5);
    assert_string_equal(tamis_proto_req_user(r), "bob");
    tamis_slice_t b = tamis_proto_req_body(r);
    assert_int_equal(b.len, 12);
    assert_memory_equal(b.ptr, "Subject: x\n\n", 12);
    tamis_proto_req_free(r);

    /* SPAMC/1.0: no header block; body to EOF; request line tolerates a bare LF */
    r = parse_all("PROCESS SPAMC/1.0\nSubject: hi\r\n\r\nbody\r\n", false);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_NEED_MORE);
    assert_int_equal(tamis_proto_req_finish(r), TAMIS_PROTO_DONE);
    assert_int_equal(tamis_proto_req_body(r).len, strlen("Subject: hi\r\n\r\nbody\r\n"));
    tamis_proto_req_free(r);

    /* Unknown or differently cased headers are ignored; User may carry 0x7f; bare-LF lines
     * that are in Name: value form pass as in spamd */
    r = parse_all("CHECK SPAMC/1.5\r\nContent-Length: 99\r\nUser: a\x7f"
                  "b\nContent-length: 5\n\r\n12345",
                  true);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    assert_string_equal(tamis_proto_req_user(r), "a\x7f"
                                                 "b");
    tamis_proto_req_free(r);

    /* unanchored match, numeric version */
    r = parse_all("xxCHECK SPAMC/1.10\r\n\r\n", true);
    assert_int_equal(tamis_proto_req_verb(r), TAMIS_VERB_CHECK);
    assert_true(tamis_proto_req_version(r) == 1.1);
    tamis_proto_req_free(r);
    r = parse_all("REPORT_IFSPAM SPAMC/1.3\r\n\r\n", true);
    assert_int_equal(tamis_proto_req_verb(r), TAMIS_VERB_REPORT_IFSPAM);
    tamis_proto_req_free(r);
}

static void test_ping_skip(void **state)
{
    (void)state;
    tamis_proto_req_t *r = parse_all("PING SPAMC/1.5\r\n\r\n", false);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    assert_int_equal(tamis_proto_req_verb(r), TAMIS_VERB_PING);
    tamis_proto_req_free(r);
    r = parse_all("PING SPAMC/1.5\r\n", false); /* 1.5 needs the empty header block */
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_NEED_MORE);
    tamis_proto_req_free(r);
    r = parse_all("SKIP SPAMC/1.2\r\n", false);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    assert_int_equal(tamis_proto_req_verb(r), TAMIS_VERB_SKIP);
    tamis_proto_req_free(r);
    /* at EOF a final line without LF still counts, as Perl's getline returns it */
    r = parse_all("PING SPAMC/1.0", true);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    tamis_proto_req_free(r);
}

static size_t make_zlib(const char *msg, unsigned char *z, size_t zcap)
{
    uLongf zl = zcap;
    assert_int_equal(compress2(z, &zl, (const Bytef *)msg, strlen(msg), 3), Z_OK);
    return zl;
}

static void test_compress(void **state)
{
    (void)state;
    const char *msg = "Subject: zipped\r\n\r\nhello world\n\n\n";
    unsigned char z[512];
    size_t zl = make_zlib(msg, z, sizeof z);
    char req[1024];
    int h = snprintf(req, sizeof req,
                     "CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: %zu\r\n\r\n", zl);
    memcpy(req + h, z, zl);
    tamis_proto_req_t *r = parse_ex(req, (size_t)h + zl, 10, false, false, MAX_BODY);
    /* a compressed body is read to EOF */
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_NEED_MORE);
    assert_int_equal(tamis_proto_req_finish(r), TAMIS_PROTO_DONE);
    assert_true(tamis_proto_req_compressed(r));
    tamis_slice_t b = tamis_proto_req_body(r);
    /* spamd's split/join collapses the trailing LFs into one */
    assert_int_equal(b.len, strlen(msg) - 2);
    assert_memory_equal(b.ptr, msg, b.len);
    tamis_proto_req_free(r);

    /* truncated stream */
    r = parse_ex(req, (size_t)h + zl - 6, 64, true, false, MAX_BODY);
    assert_int_equal(tamis_proto_req_error_code(r), 69);
    assert_string_equal(tamis_proto_req_error_line(r),
                        "SPAMD/1.0 69 Service Unavailable: zlib: failed to find end of zlib "
                        "stream\n\r\n");
    tamis_proto_req_free(r);
    /* garbage */
    memset(req + h, 'g', zl);
    r = parse_ex(req, (size_t)h + zl, 64, true, false, MAX_BODY);
    assert_int_equal(tamis_proto_req_error_code(r), 69);
    tamis_proto_req_free(r);
    /* a bomb: inflated size past max_body is refused without growing memory */
    static unsigned char big[200000];
    memset(big, 'a', sizeof big);
    uLongf bl = 4096;
    unsigned char bz[4096];
    assert_int_equal(compress2(bz, &bl, big, sizeof big, 9), Z_OK);
    char breq[5000];
    h = snprintf(breq, sizeof breq,
                 "CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: %lu\r\n\r\n",
                 (unsigned long)bl);
    memcpy(breq + h, bz, bl);
    r = parse_ex(breq, (size_t)h + bl, 4096, true, false, 100000);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    assert_true(tamis_proto_req_too_big(r));
    tamis_proto_req_free(r);
}

static void test_too_big(void **state)
{
    (void)state;
    char req[2048];
    int h = snprintf(req, sizeof req, "CHECK SPAMC/1.5\r\nContent-length: 1000\r\n\r\n");
    memset(req + h, 'x', 999);
    req[h + 999] = '\n';
    tamis_proto_req_t *r = parse_ex(req, (size_t)h + 1000, 100, false, false, 500);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_DONE);
    assert_true(tamis_proto_req_too_big(r));
    assert_int_equal(tamis_proto_req_body_count(r), 1000);
    assert_int_equal(tamis_proto_req_body(r).len, 0);
    tamis_proto_req_free(r);
    r = parse_ex(req, (size_t)h + 1000, 100, false, false, 1000);
    assert_false(tamis_proto_req_too_big(r));
    assert_int_equal(tamis_proto_req_body(r).len, 1000);
    tamis_proto_req_free(r);
}

static void test_long_line(void **state)
{
    (void)state;
    size_t n = 70000;
    char *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 'A', n);
    tamis_proto_req_t *r = parse_ex(buf, n, 4096, false, false, MAX_BODY);
    assert_int_equal(tamis_proto_req_state(r), TAMIS_PROTO_ERROR);
    assert_int_equal(tamis_proto_req_error_code(r), 76);
    tamis_proto_req_free(r);
    free(buf);
}

/* ---- replies ----------------------------------------------------------------------------------
 */

static void expect_reply(tamis_verb_t verb, double ver, bool spam, const char *body,
                         const char *want)
{
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    tamis_proto_verdict_t v = {spam, spam ? "15.3" : "2.0", "5.0", tamis_slice(body, strlen(body))};
    assert_int_equal(tamis_proto_reply(&out, verb, ver, &v), 0);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    tamis_buf_free(&out);
}

static void test_replies(void **state)
{
    (void)state;
    expect_reply(TAMIS_VERB_CHECK, 1.5, true, "ignored",
                 "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 15.3 / 5.0\r\n\r\n");
    expect_reply(TAMIS_VERB_CHECK, 1.0, false, "",
                 "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 2.0 / 5.0\r\n\r\n");
    expect_reply(TAMIS_VERB_SYMBOLS, 1.5, true, "A,B",
                 "SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\nSpam: True ; 15.3 / 5.0\r\n\r\nA,B");
    expect_reply(TAMIS_VERB_SYMBOLS, 1.2, true, "A,B",
                 "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 15.3 / 5.0\r\n\r\nA,B\r\n");
    expect_reply(
        TAMIS_VERB_REPORT, 1.5, false, "rep\n\n",
        "SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: False ; 2.0 / 5.0\r\n\r\nrep\n\n");
    expect_reply(TAMIS_VERB_REPORT, 1.2, true, "rep\n\n",
                 "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 15.3 / 5.0\r\n\r\nrep\n\n");
    expect_reply(TAMIS_VERB_REPORT_IFSPAM, 1.5, false, "rep\n\n",
                 "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: No ; 2.0 / 5.0\r\n\r\n");
    expect_reply(TAMIS_VERB_REPORT_IFSPAM, 1.5, true, "rep\n\n",
                 "SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: Yes ; 15.3 / 5.0\r\n\r\nrep\n\n");
    expect_reply(TAMIS_VERB_REPORT_IFSPAM, 1.2, false, "rep\n\n",
                 "SPAMD/1.1 0 EX_OK\r\nSpam: No ; 2.0 / 5.0\r\n\r\n");
    expect_reply(TAMIS_VERB_PROCESS, 1.5, true, "msg\n",
                 "SPAMD/1.1 0 EX_OK\r\nContent-length: 4\r\nSpam: True ; 15.3 / 5.0\r\n\r\nmsg\n");
    expect_reply(TAMIS_VERB_HEADERS, 1.3, false, "H: v\n\n",
                 "SPAMD/1.1 0 EX_OK\r\nContent-length: 6\r\nSpam: False ; 2.0 / 5.0\r\n\r\nH: "
                 "v\n\n");
    expect_reply(TAMIS_VERB_PROCESS, 1.2, true, "msg\n",
                 "SPAMD/1.1 0 EX_OK\r\nContent-length: 4\r\n\r\nmsg\n");
    expect_reply(TAMIS_VERB_PROCESS, 1.1, true, "msg\n", "SPAMD/1.0 0 EX_OK\r\nmsg\n");
    expect_reply(TAMIS_VERB_PING, 1.5, false, "", "SPAMD/1.5 0 PONG\r\n");
    expect_reply(TAMIS_VERB_SKIP, 1.5, false, "", "");

    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    tamis_proto_reply_tell(&out, 0, 0);
    assert_string_equal(out.data, "SPAMD/1.1 0 EX_OK\r\n\r\n\r\n");
    tamis_buf_reset(&out);
    tamis_proto_reply_tell(&out, TAMIS_TELL_LOCAL | TAMIS_TELL_REMOTE, TAMIS_TELL_LOCAL);
    assert_string_equal(
        out.data, "SPAMD/1.1 0 EX_OK\r\nDidSet: local,remote\r\nDidRemove: local\r\n\r\n\r\n");
    tamis_buf_reset(&out);
    tamis_proto_reply_error(&out, 79,
                            "Timeout: (30 second socket timeout reading input from client)");
    assert_string_equal(out.data,
                        "SPAMD/1.0 79 Timeout: (30 second socket timeout reading input from "
                        "client)\r\n");
    tamis_buf_free(&out);
}

static void test_parse_response(void **state)
{
    (void)state;
    tamis_proto_response_t r;
    const char *rep = "SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\nSpam: Yes ; 15.3 / 5.0\r\nX-New: "
                      "1\r\n\r\nA,B";
    assert_int_equal(tamis_proto_parse_response(rep, 20, &r), 0);
    assert_int_equal(r.status_bytes, 19);
    assert_int_equal(tamis_proto_parse_response(rep, strlen(rep), &r), 1);
    assert_int_equal(r.code, 0);
    assert_true(r.has_spam && !r.is_spam); /* "Yes" is not "true" for libspamc */
    assert_string_equal(r.spam_flag, "Yes");
    assert_true(r.score > 15.29 && r.score < 15.31);
    assert_true(r.threshold == 5.0);
    assert_int_equal(r.content_length, 3);
    assert_int_equal(r.header_bytes, strlen(rep) - 3);
    assert_int_equal(
        tamis_proto_parse_response("SPAMD/1.1 0 EX_OK\nSpam: false ; 1 / 5\n\n", 39, &r), 1);
    assert_false(r.is_spam);
    const char *tell = "SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n\r\n";
    assert_int_equal(tamis_proto_parse_response(tell, strlen(tell), &r), 1);
    assert_int_equal(r.did_set, TAMIS_TELL_LOCAL);
    assert_int_equal(tamis_proto_parse_response("SPAMD/0.9 0 EX_OK\r\n\r\n", 21, &r), TAMIS_EPROTO);
    assert_int_equal(tamis_proto_parse_response("HTTP/1.1 200 OK\r\n\r\n", 19, &r), TAMIS_EPROTO);
    assert_int_equal(tamis_proto_parse_response("SPAMD/1.0 76 Bad header line: x\r\n", 33, &r), 0);
    assert_int_equal(r.code, 76);
}

/* Parses a NUL-free reply given as a C string. */
static int parse_str(const char *rep, tamis_proto_response_t *r)
{
    return tamis_proto_parse_response(rep, strlen(rep), r);
}

/* Formats a value as spamc prints it ("%.1f"). */
static const char *spamc_fmt(double v)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

/* 1. No verdict unless the Spam: line matches libspamc's "Spam: %5s ; %20s / %20s". */
static void test_response_spam_line(void **state)
{
    (void)state;
    tamis_proto_response_t r;
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nSpam: maybe\r\n\r\n", &r), 1);
    assert_false(r.has_spam);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nSpam:TRUE;7.0/5.0\r\n\r\n", &r), 1);
    assert_false(r.has_spam); /* %5s swallows "TRUE;", then ";" is missing */
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nSpam: Falsey ; 1 / 5\r\n\r\n", &r), 1);
    assert_false(r.has_spam);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nSpam:TRUE ;7.0 /5.0\r\n\r\n", &r), 1);
    assert_true(r.has_spam && r.is_spam);
    /* the last matching line wins; a later line that does not match changes nothing */
    assert_int_equal(
        parse_str("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\nSpam: bad\r\n\r\n", &r), 1);
    assert_true(r.has_spam && r.is_spam);
    assert_string_equal(spamc_fmt(r.score), "7.0");
    assert_int_equal(
        parse_str("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\nSpam: False ; 1 / 2\r\n\r\n", &r),
        1);
    assert_true(r.has_spam && !r.is_spam);
    assert_string_equal(spamc_fmt(r.score), "1.0");
    assert_string_equal(spamc_fmt(r.threshold), "2.0");
    /* ... but what spamc -r prints is the last line that said "true" */
    assert_true(r.has_true_spam);
    assert_string_equal(spamc_fmt(r.true_score), "7.0");
    assert_string_equal(spamc_fmt(r.true_threshold), "5.0");
    /* sscanf stops at a NUL byte, as in libspamc's buffer */
    static const char nul[] = "SPAMD/1.1 0 EX_OK\r\nSpam: True\0 ; 7.0 / 5.0\r\n\r\n";
    assert_int_equal(tamis_proto_parse_response(nul, sizeof nul - 1, &r), 1);
    assert_false(r.has_spam);
}

/* 2. Only a case-insensitive "true" is spam; the raw flag stays available. */
static void test_response_spam_flag(void **state)
{
    (void)state;
    tamis_proto_response_t r;
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nSpam: tRuE ; 7.0 / 5.0\r\n\r\n", &r), 1);
    assert_true(r.is_spam && r.has_true_spam);
    assert_string_equal(r.spam_flag, "tRuE");
    /* spamd's REPORT_IFSPAM flag: a verdict, but not spam (spamc -r prints no score line) */
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nContent-length: 4\r\nSpam: Yes ; 7.0 / "
                               "5.0\r\n\r\nrep\n",
                               &r),
                     1);
    assert_true(r.has_spam);
    assert_false(r.is_spam);
    assert_false(r.has_true_spam);
    assert_string_equal(r.spam_flag, "Yes");
}

/* 3. libspamc's own number reading: integer part plus fraction, float precision, bounded. */
static void test_response_score(void **state)
{
    (void)state;
    static const struct {
        const char *score, *thr, *want_score, *want_thr;
    } cases[] = {
        {"nan", "inf", "0.0", "0.0"},
        {"0x10", "1e3", "0.0", "1.0"},
        {"-2.05", "5.000000000000001", "-2.0", "5.0"},
        {"-0.5", "4.96", "-0.5", "5.0"},
        {"15.3", "5.0", "15.3", "5.0"},
        /* bounded to 1e10; only 19 characters count and the divisor wraps as libspamc's int */
        {"99999999999.5", "-1.12345678901234567", "10000000000.0", "-658465.6"},
        {"-99999999999", "7.", "-10000000000.0", "7.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rep[256];
        snprintf(rep, sizeof rep, "SPAMD/1.1 0 EX_OK\r\nSpam: True ; %s / %s\r\n\r\n",
                 cases[i].score, cases[i].thr);
        tamis_proto_response_t r;
        assert_int_equal(parse_str(rep, &r), 1);
        assert_true(r.has_spam);
        assert_string_equal(spamc_fmt(r.score), cases[i].want_score);
        assert_string_equal(spamc_fmt(r.threshold), cases[i].want_thr);
    }
}

/* 4. "Content-length: %d": no space needed, junk ignored, negative kept, -1 told from absent. */
static void test_response_content_length(void **state)
{
    (void)state;
    tamis_proto_response_t r;
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nContent-length:5\r\n\r\nhello", &r), 1);
    assert_true(r.has_content_length);
    assert_int_equal(r.content_length, 5);
    assert_int_equal(
        parse_str("SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nContent-length: junk\r\n\r\n", &r), 1);
    assert_int_equal(r.content_length, 5);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nContent-length: 5x\r\n\r\n", &r), 1);
    assert_int_equal(r.content_length, 5);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nContent-length: junk\r\n\r\n", &r), 1);
    assert_false(r.has_content_length);
    assert_int_equal(r.content_length, -1);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n\r\n", &r), 1);
    assert_false(r.has_content_length);
    assert_int_equal(r.content_length, -1);
    /* an explicit negative value is kept (tamisc then fails with EX_PROTOCOL as libspamc does,
     * except for CHECK and TELL) and is not taken for "absent" */
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nContent-length: -1\r\n\r\n", &r), 1);
    assert_true(r.has_content_length);
    assert_int_equal(r.content_length, -1);
    assert_int_equal(
        parse_str("SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nContent-length: -7\r\n\r\n", &r), 1);
    assert_int_equal(r.content_length, -7);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nContent-Length: 5\r\n\r\n", &r), 1);
    assert_false(r.has_content_length); /* the name is case-sensitive */
}

/* 5. The status line is "SPAMD/%18s %d %*s" with libspamc's version reading; lines end at 8187
 * bytes. */
static void test_response_status_line(void **state)
{
    (void)state;
    tamis_proto_response_t r;
    assert_int_equal(parse_str("SPAMD/1.5\t0 EX_OK\r\n\r\n", &r), 1);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.version_str, "1.5");
    assert_int_equal(parse_str("SPAMD/1.5x 1234\r\n", &r), 0);
    assert_int_equal(r.status_bytes, 17);
    assert_int_equal(r.code, 1234);
    assert_string_equal(r.version_str, "1.5x");
    assert_true(r.version > 1.049 && r.version < 1.051); /* 1 + 5/100: x counts as a place */
    assert_int_equal(parse_str("SPAMD/ 1.5 -7\r\n", &r), 0);
    assert_int_equal(r.code, -7);
    assert_string_equal(r.version_str, "1.5");
    assert_int_equal(parse_str("SPAMD/1.5 x PONG\r\n", &r), TAMIS_EPROTO);
    assert_int_equal(r.status_bytes, 0);
    assert_int_equal(parse_str("SPAMD/0.5 0 PONG\r\n", &r), TAMIS_EPROTO);
    assert_int_equal(parse_str(" SPAMD/1.5 0 PONG\r\n", &r), TAMIS_EPROTO);

    /* a line of 8187 bytes (LF included) is read; one byte more is EX_TOOBIG, LF or not */
    size_t max = TAMIS_PROTO_MAX_REPLY_LINE;
    char *buf = malloc(max + 64);
    assert_non_null(buf);
    memset(buf, 'b', max + 64);
    memcpy(buf, "SPAMD/1.1 0 EX_OK ", 18);
    buf[max - 2] = '\r';
    buf[max - 1] = '\n';
    assert_int_equal(tamis_proto_parse_response(buf, max, &r), 0);
    assert_int_equal(r.status_bytes, max);
    buf[max - 2] = 'b';
    buf[max - 1] = '\r';
    buf[max] = '\n';
    assert_int_equal(tamis_proto_parse_response(buf, max + 1, &r), TAMIS_ELIMIT);
    assert_int_equal(r.status_bytes, 0);
    assert_int_equal(tamis_proto_parse_response(buf, max - 1, &r), 0); /* may still end */
    assert_int_equal(tamis_proto_parse_response(buf, max, &r), TAMIS_ELIMIT);
    free(buf);
}

/* 6. A header line too long after a valid status line: ELIMIT, status_bytes stays set. */
static void test_response_long_header(void **state)
{
    (void)state;
    size_t pad = 9000;
    char *buf = malloc(pad + 64);
    assert_non_null(buf);
    int h = snprintf(buf, 64, "SPAMD/1.5 0 PONG\r\nX-Pad: ");
    memset(buf + h, 'a', pad);
    memcpy(buf + h + pad, "\r\n\r\n", 4);
    tamis_proto_response_t r;
    assert_int_equal(tamis_proto_parse_response(buf, (size_t)h + pad + 4, &r), TAMIS_ELIMIT);
    assert_int_equal(r.status_bytes, 18);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.version_str, "1.5");
    assert_int_equal(r.header_bytes, 0);
    free(buf);
}

/* DidSet/DidRemove: "%14s", or-ed over the lines. */
static void test_response_did(void **state)
{
    (void)state;
    tamis_proto_response_t r;
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nDidSet: local, remote\r\n\r\n\r\n", &r), 1);
    assert_int_equal(r.did_set, TAMIS_TELL_LOCAL);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nDidSet:local,remote\r\n\r\n", &r), 1);
    assert_int_equal(r.did_set, TAMIS_TELL_LOCAL | TAMIS_TELL_REMOTE);
    assert_int_equal(parse_str("SPAMD/1.1 0 EX_OK\r\nDidSet: xxxxxxxxxlocal,remote\r\n\r\n", &r),
                     1);
    assert_int_equal(r.did_set, TAMIS_TELL_LOCAL); /* "remote" is past the 14th character */
    assert_int_equal(
        parse_str("SPAMD/1.1 0 EX_OK\r\nDidRemove: remote\r\nDidRemove: local\r\n\r\n", &r), 1);
    assert_int_equal(r.did_remove, TAMIS_TELL_LOCAL | TAMIS_TELL_REMOTE);
    assert_int_equal(r.did_set, 0);
}

static void expect_request(const tamis_proto_request_t *req, const char *want)
{
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    assert_int_equal(tamis_proto_build_request(&out, req), 0);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    tamis_buf_free(&out);
}

/* The request heads libspamc 4.0.1 sends (test_tamisc.py checks tamisc's against spamc's). */
static void test_build_request(void **state)
{
    (void)state;
    expect_request(
        &(tamis_proto_request_t){.verb = TAMIS_VERB_PROCESS, .user = "bob", .body_len = 42},
        "PROCESS SPAMC/1.5\r\nUser: bob\r\nContent-length: 42\r\n\r\n");
    expect_request(
        &(tamis_proto_request_t){.verb = TAMIS_VERB_CHECK, .compress = true, .body_len = 7},
        "CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: 7\r\n\r\n");
    expect_request(&(tamis_proto_request_t){.verb = TAMIS_VERB_PING, .user = "bob", .body_len = 9},
                   "PING SPAMC/1.5\r\n\r\n");
    expect_request(&(tamis_proto_request_t){.verb = TAMIS_VERB_TELL,
                                            .user = "bob",
                                            .compress = true,
                                            .message_class = "ham",
                                            .set = TAMIS_TELL_LOCAL,
                                            .remove = TAMIS_TELL_REMOTE,
                                            .body_len = 3},
                   "TELL SPAMC/1.5\r\nMessage-class: ham\r\nSet: local\r\nRemove: remote\r\nUser: "
                   "bob\r\nContent-length: 3\r\n\r\n");
    expect_request(&(tamis_proto_request_t){.verb = TAMIS_VERB_TELL,
                                            .set = TAMIS_TELL_LOCAL | TAMIS_TELL_REMOTE,
                                            .message_class = "spam"},
                   "TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local,remote\r\nContent-length: "
                   "0\r\n\r\n");
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    assert_int_equal(
        tamis_proto_build_request(&out, &(tamis_proto_request_t){.verb = TAMIS_VERB_SKIP}),
        TAMIS_EINVAL);
    tamis_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_line_errors),
        cmocka_unit_test(test_nul_in_request_line),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_tell_errors),
        cmocka_unit_test(test_good_requests),
        cmocka_unit_test(test_ping_skip),
        cmocka_unit_test(test_compress),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_response_spam_line),
        cmocka_unit_test(test_response_spam_flag),
        cmocka_unit_test(test_response_score),
        cmocka_unit_test(test_response_content_length),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_response_long_header),
        cmocka_unit_test(test_response_did),
        cmocka_unit_test(test_build_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
