/* Unit tests for lib/mta: SMTP command lines, the DATA stream both ways, reply lines, and the
 * milter framing, field splitting and reply builders (spec-postfix §2, §3.2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tamis/mta.h"

static bool slice_is(tamis_slice_t s, const char *want)
{
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void test_smtp_parse(void **state)
{
    (void)state;
    tamis_mta_smtp_cmd_t c;
    const char *l = "MAIL FROM:<a@b.example> SIZE=120 BODY=8BITMIME";
    assert_int_equal(tamis_mta_smtp_parse(l, strlen(l), &c), 0);
    assert_int_equal(c.verb, TAMIS_MTA_SMTP_MAIL);
    assert_true(slice_is(c.path, "a@b.example"));
    assert_true(slice_is(c.params, "SIZE=120 BODY=8BITMIME"));
    assert_true(slice_is(tamis_mta_smtp_param(c.params, "size"), "120"));
    assert_true(slice_is(tamis_mta_smtp_param(c.params, "BODY"), "8BITMIME"));
    assert_null(tamis_mta_smtp_param(c.params, "SMTPUTF8").ptr);

    l = "mail from: <>";
    assert_int_equal(tamis_mta_smtp_parse(l, strlen(l), &c), 0);
    assert_int_equal(c.path.len, 0);
    l = "RCPT TO:<x@y>";
    assert_int_equal(tamis_mta_smtp_parse(l, strlen(l), &c), 0);
    assert_int_equal(c.verb, TAMIS_MTA_SMTP_RCPT);
    assert_true(slice_is(c.path, "x@y"));
    l = "EHLO  host.example  ";
    assert_int_equal(tamis_mta_smtp_parse(l, strlen(l), &c), 0);
    assert_true(slice_is(c.arg, "host.example"));

    static const char *const bad[] = {
        "MAIL FROM:a@b", "MAIL TO:<a@b>", "RCPT TO:<a@b", "MAIL FROM:<a@b>SIZE=1",
        "EHLO",          "DATA x",        "QUIT now",     "RCPT TO:<<a>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tamis_mta_smtp_parse(bad[i], strlen(bad[i]), &c), TAMIS_EPROTO);
    l = "FROB x";
    assert_int_equal(tamis_mta_smtp_parse(l, strlen(l), &c), 0);
    assert_int_equal(c.verb, TAMIS_MTA_SMTP_UNKNOWN);
    char *big = malloc(TAMIS_MTA_SMTP_LINE_MAX + 10);
    memset(big, 'a', TAMIS_MTA_SMTP_LINE_MAX + 10);
    assert_int_equal(tamis_mta_smtp_parse(big, TAMIS_MTA_SMTP_LINE_MAX + 10, &c), TAMIS_ELIMIT);
    free(big);
    assert_int_equal(tamis_mta_smtp_parse("NOOP\0x", 6, &c), TAMIS_EPROTO);
}

/* Decodes in, fed step bytes at a time; returns the bytes consumed. */
static size_t decode(const char *in, size_t step, size_t max, tamis_buf_t *out, tamis_mta_data_t *d)
{
    tamis_mta_data_init(d, max);
    size_t n = strlen(in), used = 0;
    while (used < n && !d->done) {
        size_t k = n - used < step ? n - used : step;
        used += tamis_mta_data_feed(d, in + used, k, out);
    }
    return used;
}

static void test_data_decode(void **state)
{
    (void)state;
    const char *in = "A: b\r\n\r\n..x\r\n.y\r\nend\r\n.\r\nQUIT\r\n";
    for (size_t step = 1; step <= strlen(in); step++) {
        tamis_buf_t out;
        tamis_buf_init(&out, 0);
        tamis_mta_data_t d;
        size_t used = decode(in, step, 1000, &out, &d);
        assert_true(d.done);
        assert_string_equal(in + used, "QUIT\r\n");
        assert_string_equal(out.data, "A: b\r\n\r\n.x\r\ny\r\nend\r\n");
        tamis_buf_free(&out);
    }
    /* bare LF, a dot line that is not the end, and the size limit */
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    tamis_mta_data_t d;
    decode("a\n.\rb\n.\n", 3, 1000, &out, &d);
    assert_true(d.done);
    assert_string_equal(out.data, "a\n\rb\n");
    tamis_buf_reset(&out);
    decode("0123456789\r\n0123456789\r\n.\r\n", 5, 15, &out, &d);
    assert_true(d.done);
    assert_true(d.too_big);
    assert_int_equal(d.count, 24);
    assert_true(out.len <= 15);
    tamis_buf_free(&out);
}

static void test_data_encode(void **state)
{
    (void)state;
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    const char *msg = "S: x\n\n.dot\r\nlast";
    assert_int_equal(tamis_mta_data_encode(msg, strlen(msg), &out), 0);
    assert_string_equal(out.data, "S: x\r\n\r\n..dot\r\nlast\r\n.\r\n");
    /* round trip */
    tamis_buf_t back;
    tamis_buf_init(&back, 0);
    tamis_mta_data_t d;
    decode(out.data, 7, 1000, &back, &d);
    assert_string_equal(back.data, "S: x\r\n\r\n.dot\r\nlast\r\n");
    tamis_buf_free(&back);
    tamis_buf_free(&out);
}

static void test_reply_line(void **state)
{
    (void)state;
    bool last = false;
    assert_int_equal(tamis_mta_smtp_reply_line("250-PIPELINING", 14, &last), 250);
    assert_false(last);
    assert_int_equal(tamis_mta_smtp_reply_line("354 go\r\n", 8, &last), 354);
    assert_true(last);
    assert_int_equal(tamis_mta_smtp_reply_line("250", 3, &last), 250);
    assert_int_equal(tamis_mta_smtp_reply_line("25", 2, &last), TAMIS_EPROTO);
    assert_int_equal(tamis_mta_smtp_reply_line("650 x", 5, &last), TAMIS_EPROTO);
    assert_int_equal(tamis_mta_smtp_reply_line("250x", 4, &last), TAMIS_EPROTO);
}

static void test_milter_frame(void **state)
{
    (void)state;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_mta_milter_put_optneg(&b, 6, 0x11, 0x100), 0);
    assert_int_equal(b.len, 17);
    assert_memory_equal(b.data, "\0\0\0\x0dO\0\0\0\x06\0\0\0\x11\0\0\x01\0", 17);
    tamis_mta_milter_pkt_t p = {0};
    size_t used = 0;
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(tamis_mta_milter_frame(b.data, n, 1000, &p, &used), 0);
    assert_int_equal(tamis_mta_milter_frame(b.data, b.len, 1000, &p, &used), 1);
    assert_int_equal(used, 17);
    assert_int_equal(p.cmd, 'O');
    uint32_t v, a, pr;
    assert_int_equal(tamis_mta_milter_optneg(p.data, p.len, &v, &a, &pr), 0);
    assert_int_equal(v, 6);
    assert_int_equal(a, 0x11);
    assert_int_equal(pr, 0x100);
    assert_int_equal(tamis_mta_milter_optneg(p.data, 11, &v, &a, &pr), TAMIS_EPROTO);
    assert_int_equal(tamis_mta_milter_frame("\0\0\0\0", 4, 1000, &p, &used), TAMIS_EPROTO);
    assert_int_equal(tamis_mta_milter_frame("\0\1\0\0", 4, 1000, &p, &used), TAMIS_ELIMIT);
    tamis_buf_free(&b);
}

static void test_milter_fields(void **state)
{
    (void)state;
    const char *v[4];
    size_t n = 0;
    assert_int_equal(tamis_mta_milter_strings("i\0Q1\0{auth_authen}\0bob\0", 23, v, 4, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(v[3], "bob");
    assert_int_equal(tamis_mta_milter_strings("a\0b", 3, v, 4, &n), TAMIS_EPROTO);
    assert_int_equal(tamis_mta_milter_strings("a\0b\0c\0", 6, v, 2, &n), TAMIS_ELIMIT);

    tamis_mta_milter_connect_t ci;
    static const char conn4[] = "mx.example\0"
                                "4\x00\x19"
                                "192.0.2.1";
    assert_int_equal(tamis_mta_milter_connect(conn4, sizeof conn4, &ci), 0);
    assert_string_equal(ci.host, "mx.example");
    assert_int_equal(ci.family, '4');
    assert_int_equal(ci.port, 25);
    assert_string_equal(ci.addr, "192.0.2.1");
    assert_int_equal(tamis_mta_milter_connect("[x]\0U", 5, &ci), 0);
    assert_string_equal(ci.addr, "");
    assert_int_equal(tamis_mta_milter_connect(conn4, sizeof conn4 - 1, &ci), TAMIS_EPROTO);
    assert_int_equal(tamis_mta_milter_connect("host", 4, &ci), TAMIS_EPROTO);
    assert_int_equal(tamis_mta_milter_connect("h\0"
                                              "4\0",
                                              4, &ci),
                     TAMIS_EPROTO);
}

static void test_milter_builders(void **state)
{
    (void)state;
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    assert_int_equal(tamis_mta_milter_put_header(&b, 'm', 2, "X-Spam-Flag", ""), 0);
    assert_memory_equal(b.data, "\0\0\0\x12m\0\0\0\x02X-Spam-Flag\0\0", 22);
    tamis_buf_reset(&b);
    assert_int_equal(tamis_mta_milter_put_header(&b, 'h', 0, "X-A", "v"), 0);
    assert_memory_equal(b.data, "\0\0\0\x07hX-A\0v\0", 11);
    tamis_buf_reset(&b);
    assert_int_equal(tamis_mta_milter_put_reply(&b, "550", "5.7.1", "100% spam\r\n"), 0);
    assert_memory_equal(b.data + 4, "y550 5.7.1 100%% spam  \0", 24);
    tamis_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smtp_parse),      cmocka_unit_test(test_data_decode),
        cmocka_unit_test(test_data_encode),     cmocka_unit_test(test_reply_line),
        cmocka_unit_test(test_milter_frame),    cmocka_unit_test(test_milter_fields),
        cmocka_unit_test(test_milter_builders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
