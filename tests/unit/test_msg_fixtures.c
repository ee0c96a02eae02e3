/*
 * Regression comparison of lib/msg with SpamAssassin 4.0.1 on the corpus/fixtures/msg-*.eml
 * messages: rendered body lines (L), rawbody chunks (R), URI list (U) and parsed relays (V), in the
 * format of tests/tools/sa-msg-dump.pl. The expected texts below were produced once by that script
 * (the real SpamAssassin) and are checked in; a difference is a regression.
 */
#include "tamis/msg.h"

#include "msg_dump.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    const char *file;
    const char *expected;
} fixture_t;

static const fixture_t fixtures[] = {
    {"msg-html-alt.eml",
     "L Big savings inside\\n\n"
     "L Buy now at http://deals.spammer.example/buy\\n\n"
     "L Savings & more\\n\n"
     "L Hello friend, you won! \251 2024\\n\n"
     "L Click here or mail us. hidden words cell one cell two \n"
     "R Buy now at http://deals.spammer.example/buy\n"
     "R <html><head><title>Savings &amp; more</title>\\n<style>p { color: red }</style>\\n<base "
     "href=\"http://deals.spammer.example/dir/index.html\">\\n</head>\\n<body bgcolor=\"#ffffff"
     "\">\\n<p>Hello&nbsp;friend,<br>you won&#33; &copy; 2024</p>\\n<div>Click <a href=\"offer.h"
     "tml\">here</a> or <a href=\"mailto:sales@spammer.example\077subject=hi\">mail us</a>.</div"
     ">\\n<img src=\"http://img.spammer.example/i.gif\" alt=\"ALT TEXT\" width=\"300\" height=\""
     "200\">\\n<font color=\"#ffffff\">hidden words</font>\\n<script>document.write(\"nothing\")"
     ";</script>\\n<table><tr><td>cell one</td><td>cell two</td></tr></table>\\n<!-- a comment -"
     "->\\n</body></html>\n"
     "U http://deals.spammer.example/dir/index.html\n"
     "U http://deals.spammer.example/dir/offer.html\n"
     "U http://img.spammer.example/i.gif\n"
     "U http://offer.html\n"
     "U mailto:sales@spammer.example\n"
     "U mailto:sales@spammer.example\077subject=hi\n"
     "U offer.html\n"
     "V [ ip=203.0.113.9 rdns= helo=smtp.spammer.example by=mail.example.net ident= envfrom= id="
     " auth= ]\n"
     "H html_length=113\n"
     "H non_space_len=79\n"
     "H image_area=60000\n"
     "H length=599\n"
     "H max_size=3\n"
     "H min_size=3\n"
     "H bad_tag_ratio=0\n"
     "H non_element_ratio=0\n"
     "H closed_extra_ratio=0\n"
     "H font_low_contrast=1\n"
     "T a=0\n"
     "T base=1\n"
     "T body=0\n"
     "T br=1\n"
     "T div=0\n"
     "T font=0\n"
     "T head=0\n"
     "T html=0\n"
     "T img=1\n"
     "T p=0\n"
     "T script=0\n"
     "T style=0\n"
     "T table=0\n"
     "T td=0\n"
     "T title=0\n"
     "T tr=0\n"
     "M mime_base64_count=0\n"
     "M mime_base64_encoded_text=0\n"
     "M mime_body_html_count=1\n"
     "M mime_body_text_count=1\n"
     "M mime_missing_boundary=0\n"
     "M mime_multipart_alternative=1\n"
     "M mime_multipart_ratio=0.0717863\n"
     "M mime_qp_count=0\n"
     "M mime_qp_long_line=0\n"
     "M mime_qp_ratio=0\n"
     "M mime_ascii_text_illegal=0\n"
     "M mime_text_unicode_ratio=0\n"
     "M mime_attachment=0\n"
     "M mime_bad_iso_charset=0\n"
     "D Received: from unknown (HELO smtp.spammer.example) (203.0.113.9) by mail.example.net wit"
     "h SMTP; 2 Jan 2024 08:00:00 -0000\\n\n"
     "D From: \"Deals\" <deals@spammer.example>\\n\n"
     "D To: victim@example.net\\n\n"
     "D Subject: Big savings inside\\n\n"
     "D Date: Tue, 2 Jan 2024 08:00:00 +0000\\n\n"
     "D MIME-Version: 1.0\\n\n"
     "D Content-Type: multipart/alternative; boundary=\"b1\"\\n\n"},
    {"msg-plain-qp.eml",
     "L Caf\303\251 meeting tomorrow\\n\n"
     "L Hello,\\n\n"
     "L The caf\303\251 meeting is moved to 10:00. See www.example.com/agenda or http://example."
     "org/a\077b=1&c=2 (details) and mail me at bob@example.net.\\n\n"
     "L Regards, Andr\303\251 \n"
     "R Hello,\\n\\nThe caf\351 meeting is moved to 10:00.   See www.example.com/agenda or\\nhtt"
     "p://example.org/a\077b=1&c=2 (details) and mail me at bob@example.net.\\n\\nRegards, \\nAn"
     "dr\351\\n\n"
     "U http://example.org/a\077b=1&c=2\n"
     "U http://www.example.com/agenda\n"
     "U mailto:bob@example.net\n"
     "V [ ip=198.51.100.23 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= "
     "envfrom= id=4ABCD12345 auth= ]\n"
     "V [ ip=192.168.1.20 rdns= helo=laptop by=mail.example.org ident= envfrom=sender@example.or"
     "g id=1rABCD-000123-EF auth=esmtpsa ]\n"
     "M mime_base64_count=0\n"
     "M mime_base64_encoded_text=0\n"
     "M mime_body_html_count=0\n"
     "M mime_body_text_count=1\n"
     "M mime_missing_boundary=0\n"
     "M mime_multipart_alternative=0\n"
     "M mime_multipart_ratio=1\n"
     "M mime_qp_count=0\n"
     "M mime_qp_long_line=0\n"
     "M mime_qp_ratio=0\n"
     "M mime_ascii_text_illegal=0\n"
     "M mime_text_unicode_ratio=0\n"
     "M mime_attachment=0\n"
     "M mime_bad_iso_charset=0\n"
     "D Return-Path: <sender@example.org>\\n\n"
     "D Received: from mail.example.org (mail.example.org [198.51.100.23]) by mx.example.net (Po"
     "stfix) with ESMTP id 4ABCD12345 for <user@example.net>; Mon, 1 Jan 2024 10:00:00 +0000 (UT"
     "C)\\n\n"
     "D Received: from [192.168.1.20] (helo=laptop) by mail.example.org with esmtpsa (Exim 4.96)"
     " (envelope-from <sender@example.org>) id 1rABCD-000123-EF; Mon, 01 Jan 2024 10:59:59 +0100"
     "\\n\n"
     "D From: Andr\303\251 <sender@example.org>\\n\n"
     "D To: user@example.net\\n\n"
     "D Subject: Caf\303\251 meeting tomorrow\\n\n"
     "D Date: Mon, 1 Jan 2024 10:59:59 +0100\\n\n"
     "D Message-ID: <abc123@example.org>\\n\n"
     "D MIME-Version: 1.0\\n\n"
     "D Content-Type: text/plain; charset=iso-8859-1\\n\n"
     "D Content-Transfer-Encoding: quoted-printable\\n\n"},
    {"msg-received.eml",
     "L relays\\n\n"
     "L Body. \n"
     "R Body.\\n\n"
     "V [ ip=10.1.2.3 rdns=mx1.example.net helo=mx1.example.net by=store.example.net ident= envf"
     "rom= id=77777 auth= ]\n"
     "V [ ip=198.51.100.77 rdns=outbound.sender.example helo=outbound.sender.example by=mx1.exam"
     "ple.net ident= envfrom= id=66666 auth= ]\n"
     "V [ ip=10.20.30.40 rdns=EXCH01.corp.sender.example helo=EXCH01.corp.sender.example by=EXCH"
     "02.corp.sender.example ident= envfrom= id=15.1.2507.35 auth= ]\n"
     "V [ ip=172.16.5.9 rdns= helo=workstation by=EXCH01.corp.sender.example ident= envfrom= id="
     " auth= ]\n"
     "V [ ip=203.0.113.44 rdns= helo=client.example by=smtp.sender.example ident=user envfrom= i"
     "d= auth= ]\n"
     "V [ ip=203.0.113.45 rdns=host.isp.example helo=host.isp.example by=smtp2.sender.example id"
     "ent= envfrom= id=q04C00aa012345 auth=Sendmail ]\n"
     "V [ ip=203.0.113.200 rdns= helo= by= ident= envfrom= id= auth= ]\n"
     "M mime_base64_count=0\n"
     "M mime_base64_encoded_text=0\n"
     "M mime_body_html_count=0\n"
     "M mime_body_text_count=1\n"
     "M mime_missing_boundary=0\n"
     "M mime_multipart_alternative=0\n"
     "M mime_multipart_ratio=1\n"
     "M mime_qp_count=0\n"
     "M mime_qp_long_line=0\n"
     "M mime_qp_ratio=0\n"
     "M mime_ascii_text_illegal=0\n"
     "M mime_text_unicode_ratio=0\n"
     "M mime_attachment=0\n"
     "M mime_bad_iso_charset=0\n"
     "D Received: from mx1.example.net (mx1.example.net [10.1.2.3]) by store.example.net (Postfi"
     "x) with LMTP id 77777 for <user@example.net>; Thu, 4 Jan 2024 12:00:05 +0000 (UTC)\\n\n"
     "D Received: from outbound.sender.example (outbound.sender.example [198.51.100.77]) by mx1."
     "example.net (Postfix) with ESMTPS id 66666 for <user@example.net>; Thu, 4 Jan 2024 12:00:0"
     "4 +0000 (UTC)\\n\n"
     "D Received: from EXCH01.corp.sender.example (10.20.30.40) by EXCH02.corp.sender.example (1"
     "0.20.30.41) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_"
     "GCM_SHA384) id 15.1.2507.35; Thu, 4 Jan 2024 12:00:03 +0000\\n\n"
     "D Received: from workstation ([172.16.5.9]) by EXCH01.corp.sender.example with Microsoft S"
     "MTPSVC(6.0.3790.4675); Thu, 4 Jan 2024 12:00:02 +0000\\n\n"
     "D Received: (qmail 12345 invoked by uid 89); 4 Jan 2024 12:00:01 -0000\\n\n"
     "D Received: from unknown (HELO client.example) (user@203.0.113.44) by smtp.sender.example "
     "with SMTP; 4 Jan 2024 12:00:00 -0000\\n\n"
     "D Received: from host.isp.example (host.isp.example [203.0.113.45]) (authenticated bits=0)"
     " by smtp2.sender.example (8.14.4/8.14.4) with ESMTP id q04C00aa012345 for <user@example.ne"
     "t>; Thu, 4 Jan 2024 11:59:59 GMT\\n\n"
     "D X-Originating-IP: [203.0.113.200]\\n\n"
     "D From: someone@sender.example\\n\n"
     "D To: user@example.net\\n\n"
     "D Subject: relays\\n\n"
     "D Message-ID: <r1@sender.example>\\n\n"},
    {"msg-rfc822.eml",
     "L Fwd: note\\n\n"
     "L See the attached message.\\n\n"
     "L Na\303\257ve r\303\251sum\303\251 text \342\200\223 with \342\200\234smart\342\200\235 q"
     "uotes. Visit ftp.example.org/pub please. \n"
     "R See the attached message.\\n\n"
     "R Na\357ve r\351sum\351 text \226 with \223smart\224 quotes.\\nVisit ftp.example.org/pub p"
     "lease.\n"
     "U ftp://ftp.example.org/pub\n"
     "V [ ip=192.0.2.50 rdns=relay.example.com helo=relay.example.com by=mx.example.net ident= e"
     "nvfrom= id=h0ABCDE12345 auth= ]\n"
     "V [ ip=127.0.0.1 rdns=localhost helo=localhost by=relay.example.com ident= envfrom= id=111"
     "11 auth= ]\n"
     "M mime_base64_count=1\n"
     "M mime_base64_encoded_text=0\n"
     "M mime_body_html_count=0\n"
     "M mime_body_text_count=2\n"
     "M mime_missing_boundary=0\n"
     "M mime_multipart_alternative=0\n"
     "M mime_multipart_ratio=1\n"
     "M mime_qp_count=0\n"
     "M mime_qp_long_line=0\n"
     "M mime_qp_ratio=0\n"
     "M mime_ascii_text_illegal=0\n"
     "M mime_text_unicode_ratio=0\n"
     "M mime_attachment=0\n"
     "M mime_bad_iso_charset=0\n"
     "D Received: from relay.example.com (relay.example.com [192.0.2.50]) by mx.example.net (8.1"
     "2.8/8.12.8) with ESMTP id h0ABCDE12345 for <user@example.net>; Wed, 3 Jan 2024 09:00:00 -0"
     "500\\n\n"
     "D Received: from localhost (localhost [127.0.0.1]) by relay.example.com (Postfix) with ESM"
     "TP id 11111 for <user@example.net>; Wed, 3 Jan 2024 08:59:00 -0500\\n\n"
     "D From: forwarder@example.com\\n\n"
     "D To: user@example.net\\n\n"
     "D Subject: Fwd: note\\n\n"
     "D MIME-Version: 1.0\\n\n"
     "D Content-Type: multipart/mixed; boundary=\"outer\"\\n\n"},
    {"msg-uris.eml",
     "L links\\n\n"
     "L Plain: http://www.Example.com:80/path\077x=1#frag and https://secure.example.org:443/log"
     "in Obfuscated: http://0x7f.1/a http://3232235777/b http://user:pass@host.example.com/c Enc"
     "oded: http://%77%77%77.example.net/%7Euser and http:/broken.example.org/x Redirect: http:/"
     "/redir.example.com/go\077url=http://target.example.org/landing Schemeless: visit shop.exam"
     "ple.co.uk/deals today, or foo.invalidtld, or ftp.example.org Mail: mailto:Sales@Example.co"
     "m\077subject=hi and info@example.com, not me@localhost Bare: http://intranet/page and (htt"
     "p://paren.example.com/x) \n"
     "R Plain: http://www.Example.com:80/path\077x=1#frag and https://secure.example.org:443/log"
     "in\\nObfuscated: http://0x7f.1/a http://3232235777/b http://user:pass@host.example.com/c\\"
     "nEncoded: http://%77%77%77.example.net/%7Euser and http:/broken.example.org/x\\nRedirect: "
     "http://redir.example.com/go\077url=http://target.example.org/landing\\nSchemeless: visit s"
     "hop.example.co.uk/deals today, or foo.invalidtld, or ftp.example.org\\nMail: mailto:Sales@"
     "Example.com\077subject=hi and info@example.com, not me@localhost\\nBare: http://intranet/p"
     "age and (http://paren.example.com/x)\\n\n"
     "U ftp://ftp.example.org\n"
     "U http://%77%77%77.example.net/%7Euser\n"
     "U http://192.168.1.1/b\n"
     "U http://3232235777/b\n"
     "U http://broken.example.org/x\n"
     "U http://intranet/page\n"
     "U http://paren.example.com/x\n"
     "U http://redir.example.com/go\077url=http://target.example.org/landing\n"
     "U http://shop.example.co.uk/deals\n"
     "U http://target.example.org/landing\n"
     "U http://user:pass@host.example.com/c\n"
     "U http://www.Example.com/path\077x=1#frag\n"
     "U http://www.Example.com:80/path\077x=1#frag\n"
     "U http://www.example.net/~user\n"
     "U http://www.intranet.com/page\n"
     "U https://secure.example.org/login\n"
     "U https://secure.example.org:443/login\n"
     "U mailto:Sales@Example.com\n"
     "U mailto:Sales@Example.com\077subject=hi\n"
     "U mailto:info@example.com\n"
     "M mime_base64_count=0\n"
     "M mime_base64_encoded_text=0\n"
     "M mime_body_html_count=0\n"
     "M mime_body_text_count=1\n"
     "M mime_missing_boundary=0\n"
     "M mime_multipart_alternative=0\n"
     "M mime_multipart_ratio=1\n"
     "M mime_qp_count=0\n"
     "M mime_qp_long_line=0\n"
     "M mime_qp_ratio=0\n"
     "M mime_ascii_text_illegal=0\n"
     "M mime_text_unicode_ratio=0\n"
     "M mime_attachment=0\n"
     "M mime_bad_iso_charset=0\n"
     "D From: a@example.com\\n\n"
     "D To: b@example.net\\n\n"
     "D Subject: links\\n\n"
     "D Content-Type: text/plain\\n\n"},
};

static void put_esc(tamis_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            tamis_buf_puts(b, "\\\\");
        else if (s[i] == '\n')
            tamis_buf_puts(b, "\\n");
        else if (s[i] == '\r')
            tamis_buf_puts(b, "\\r");
        else
            tamis_buf_putc(b, s[i]);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void dump_uris(const tamis_msg_t *m, tamis_buf_t *b)
{
    size_t n = tamis_msg_uri_string_count(m);
    const char **v = calloc(n + 1, sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = tamis_msg_uri_string(m, i);
    qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i && strcmp(v[i], v[i - 1]) == 0)
            continue;
        tamis_buf_puts(b, "U ");
        put_esc(b, v[i], strlen(v[i]));
        tamis_buf_putc(b, '\n');
    }
    free(v);
}

static void emit_buf(void *ctx, const char *s)
{
    tamis_buf_puts(ctx, s);
}

static void dump(const tamis_msg_t *m, tamis_buf_t *b)
{
    for (size_t i = 0; i < tamis_msg_body_line_count(m); i++) {
        tamis_slice_t l = tamis_msg_body_line(m, i);
        tamis_buf_puts(b, "L ");
        put_esc(b, l.ptr, l.len);
        tamis_buf_putc(b, '\n');
    }
    for (size_t i = 0; i < tamis_msg_rawbody_count(m); i++) {
        tamis_slice_t l = tamis_msg_rawbody_chunk(m, i);
        tamis_buf_puts(b, "R ");
        put_esc(b, l.ptr, l.len);
        tamis_buf_putc(b, '\n');
    }
    dump_uris(m, b);
    for (size_t i = 0; i < tamis_msg_relay_count(m); i++) {
        const tamis_relay_t *r = tamis_msg_relay_at(m, i);
        if (r->skipped || r->unparseable)
            continue;
        tamis_buf_t v;
        tamis_buf_init(&v, 0);
        tamis_buf_printf(&v, "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s id=%s auth=%s ]",
                         r->ip, r->rdns, r->helo, r->by, r->ident, r->envfrom, r->id, r->auth);
        tamis_buf_puts(b, "V ");
        put_esc(b, v.data ? v.data : "", v.len);
        tamis_buf_putc(b, '\n');
        tamis_buf_free(&v);
    }
    char line[256];
    dump_html(m, line, sizeof(line), emit_buf, b);
    dump_mime_flags(m, line, sizeof(line), emit_buf, b);
    for (size_t i = 0; i < tamis_msg_header_count(m); i++) {
        const tamis_header_t *h = tamis_msg_header_at(m, i);
        tamis_buf_printf(b, "D %s: ", h->name);
        put_esc(b, h->decoded, strlen(h->decoded));
        tamis_buf_puts(b, "\\n\n");
    }
}

static void test_fixtures(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof(fixtures) / sizeof(fixtures[0]); f++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/corpus/fixtures/%s", TAMIS_SOURCE_DIR, fixtures[f].file);
        char *data;
        size_t len;
        assert_int_equal(tamis_read_file(path, 1 << 20, &data, &len, NULL, 0), 0);
        tamis_msg_t *m = NULL;
        assert_int_equal(tamis_msg_parse(data, len, NULL, &m, NULL, 0), 0);
        tamis_buf_t b;
        tamis_buf_init(&b, 0);
        dump(m, &b);
        assert_int_equal(b.err, 0);
        if (strcmp(b.data ? b.data : "", fixtures[f].expected) != 0) {
            fprintf(stderr, "%s differs from SpamAssassin:\n--- got\n%s--- want\n%s",
                    fixtures[f].file, b.data ? b.data : "", fixtures[f].expected);
            fail();
        }
        tamis_buf_free(&b);
        tamis_msg_free(m);
        free(data);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
