/* Unit tests for spamd/tls.c, the server side of TLS behind memory BIOs: an in-memory OpenSSL
 * client is pumped against it (no sockets), so the handshake, records in both directions, the
 * close_notify, refusals (garbage, TLS 1.1, weak suites, missing client certificates) and the
 * start-up errors are checked byte-exactly and quickly, under the sanitizers too. Certificates are
 * made with the openssl command in a temporary folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tamisd.h"

static char dir[64];

static char *path(const char *name)
{
    static char buf[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

static int make_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/tamisd-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=ca "
             "2>/dev/null && openssl req -x509 %s -keyout other.key -out other.pem -days 2 "
             "-subj /CN=other 2>/dev/null && openssl req -x509 %s -keyout srv.key -out srv.pem "
             "-days 2 -subj /CN=srv 2>/dev/null && openssl req %s -keyout cli.key -out cli.csr "
             "-subj /CN=cli 2>/dev/null && openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key "
             "-CAcreateserial -days 2 -out cli.pem 2>/dev/null",
             dir, ec, ec, ec, ec);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certs(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void opts(tamisd_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->ssl = true;
    o->port = 783;
    o->server_cert = path("srv.pem");
    o->server_key = path("srv.key");
}

/* ---- an in-memory client ------------------------------------------------------------------- */

typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
} client_t;

static void client_new(client_t *c, int max_version, const char *ciphers, bool with_cert)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    if (max_version) {
        SSL_CTX_set_min_proto_version(c->ctx, 0);
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
    }
    if (ciphers)
        assert_int_equal(SSL_CTX_set_cipher_list(c->ctx, ciphers), 1);
    if (with_cert) {
        assert_int_equal(SSL_CTX_use_certificate_file(c->ctx, path("cli.pem"), SSL_FILETYPE_PEM),
                         1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(c->ctx, path("cli.key"), SSL_FILETYPE_PEM), 1);
    }
    c->ssl = SSL_new(c->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
}

static void client_free(client_t *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* Moves the client's records to the server and reads; the server's records back to the client.
 * Returns the server's status; plaintext is appended to plain. */
static tamisd_tls_status_t pump(client_t *c, tamisd_tls_t *s, tamis_buf_t *plain, char *err,
                                size_t errlen)
{
    char *p;
    long n = BIO_get_mem_data(c->wbio, &p);
    if (n > 0) {
        assert_int_equal(tamisd_tls_feed(s, p, (size_t)n), 0);
        (void)BIO_reset(c->wbio);
    }
    tamisd_tls_status_t st;
    char buf[4096];
    size_t got;
    do {
        st = tamisd_tls_read(s, buf, sizeof buf, &got, err, errlen);
        if (got)
            tamis_buf_append(plain, buf, got);
    } while (st == TAMISD_TLS_OK && got);
    tamis_buf_t out;
    tamis_buf_init(&out, 0);
    assert_int_equal(tamisd_tls_take(s, &out), 0);
    if (out.len)
        BIO_write(c->rbio, out.data, (int)out.len);
    tamis_buf_free(&out);
    return st;
}

/* Handshakes; returns the server's last status (err set on failure). */
static tamisd_tls_status_t handshake(client_t *c, tamisd_tls_t *s, char *err, size_t errlen)
{
    tamis_buf_t plain;
    tamis_buf_init(&plain, 0);
    tamisd_tls_status_t st = TAMISD_TLS_OK;
    for (int i = 0; i < 10 && st == TAMISD_TLS_OK; i++) {
        int rc = SSL_do_handshake(c->ssl);
        st = pump(c, s, &plain, err, errlen);
        if (rc == 1 && tamisd_tls_established(s))
            break;
    }
    tamis_buf_free(&plain);
    return st;
}

static void test_roundtrip(void **state)
{
    (void)state;
    tamisd_opts_t o;
    opts(&o);
    tamisd_tls_ctx_t *ctx;
    char err[512] = "";
    assert_int_equal(tamisd_tls_ctx_new(&o, &ctx, err, sizeof err), 0);
    for (int version = TLS1_2_VERSION; version <= TLS1_3_VERSION; version++) {
        tamisd_tls_t *s = tamisd_tls_new(ctx);
        client_t c;
        client_new(&c, version, NULL, false);
        tamis_buf_t out;
        tamis_buf_init(&out, 0);
        assert_int_equal(tamisd_tls_encrypt(s, "x", 1, false, &out), -1); /* no session yet */
        assert_int_equal(handshake(&c, s, err, sizeof err), TAMISD_TLS_OK);
        assert_true(tamisd_tls_established(s));
        char info[256];
        tamisd_tls_describe(s, info, sizeof info);
        assert_non_null(strstr(info, version == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2 ECDHE-"));
        assert_null(strstr(info, "client="));
        /* request in, plaintext out */
        static const char req[] = "PING SPAMC/1.5\r\n\r\n";
        assert_int_equal(SSL_write(c.ssl, req, (int)strlen(req)), (int)strlen(req));
        tamis_buf_t plain;
        tamis_buf_init(&plain, 0);
        assert_int_equal(pump(&c, s, &plain, err, sizeof err), TAMISD_TLS_OK);
        assert_int_equal(plain.len, strlen(req));
        assert_memory_equal(plain.data, req, plain.len);
        /* a reply bigger than one chunk, then close_notify */
        size_t big = 200000;
        char *reply = malloc(big);
        for (size_t i = 0; i < big; i++)
            reply[i] = (char)('a' + i % 26);
        assert_int_equal(tamisd_tls_encrypt(s, reply, big, true, &out), 0);
        BIO_write(c.rbio, out.data, (int)out.len);
        tamis_buf_t got;
        tamis_buf_init(&got, 0);
        char buf[16384];
        int n;
        while ((n = SSL_read(c.ssl, buf, sizeof buf)) > 0)
            tamis_buf_append(&got, buf, (size_t)n);
        assert_int_equal(SSL_get_error(c.ssl, n), SSL_ERROR_ZERO_RETURN);
        assert_int_equal(got.len, big);
        assert_memory_equal(got.data, reply, big);
        /* the client's close_notify is the end of the request */
        SSL_shutdown(c.ssl);
        tamis_buf_reset(&plain);
        assert_int_equal(pump(&c, s, &plain, err, sizeof err), TAMISD_TLS_EOF);
        free(reply);
        tamis_buf_free(&got);
        tamis_buf_free(&plain);
        tamis_buf_free(&out);
        client_free(&c);
        tamisd_tls_free(s);
    }
    tamisd_tls_ctx_free(ctx);
}

/* Plain text, an old protocol, a weak suite: refused with a reason and an alert to send. */
static void test_refusals(void **state)
{
    (void)state;
    tamisd_opts_t o;
    opts(&o);
    tamisd_tls_ctx_t *ctx;
    char err[512] = "";
    assert_int_equal(tamisd_tls_ctx_new(&o, &ctx, err, sizeof err), 0);

    tamisd_tls_t *s = tamisd_tls_new(ctx);
    static const char plain[] = "PROCESS SPAMC/1.5\r\nContent-length: 3\r\n\r\nhi\n";
    assert_int_equal(tamisd_tls_feed(s, plain, strlen(plain)), 0);
    size_t got;
    char buf[256];
    assert_int_equal(tamisd_tls_read(s, buf, sizeof buf, &got, err, sizeof err), TAMISD_TLS_ERROR);
    assert_non_null(strstr(err, "wrong version number"));
    tamisd_tls_free(s);

    static const struct {
        int version;
        const char *ciphers;
        const char *reason;
    } cases[] = {
        {TLS1_1_VERSION, "DEFAULT@SECLEVEL=0", "unsupported protocol"},
        {TLS1_2_VERSION, "AES128-SHA:@SECLEVEL=0", "no shared cipher"},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0", "no shared cipher"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s = tamisd_tls_new(ctx);
        client_t c;
        client_new(&c, cases[i].version, cases[i].ciphers, false);
        err[0] = '\0';
        assert_int_equal(handshake(&c, s, err, sizeof err), TAMISD_TLS_ERROR);
        assert_non_null(strstr(err, cases[i].reason));
        assert_false(tamisd_tls_established(s));
        client_free(&c);
        tamisd_tls_free(s);
    }
    tamisd_tls_ctx_free(ctx);
}

static void test_client_certificates(void **state)
{
    (void)state;
    tamisd_opts_t o;
    opts(&o);
    o.ssl_verify = true;
    o.ssl_ca_file = path("ca.pem");
    tamisd_tls_ctx_t *ctx;
    char err[512] = "";
    assert_int_equal(tamisd_tls_ctx_new(&o, &ctx, err, sizeof err), 0);
    for (int with = 0; with < 2; with++) {
        tamisd_tls_t *s = tamisd_tls_new(ctx);
        client_t c;
        client_new(&c, TLS1_2_VERSION, NULL, with);
        err[0] = '\0';
        tamisd_tls_status_t st = handshake(&c, s, err, sizeof err);
        if (with) {
            assert_int_equal(st, TAMISD_TLS_OK);
            char info[512];
            tamisd_tls_describe(s, info, sizeof info);
            assert_non_null(strstr(info, "client=/CN=cli"));
        } else {
            assert_int_equal(st, TAMISD_TLS_ERROR);
            assert_non_null(strstr(err, "peer did not return a certificate"));
        }
        client_free(&c);
        tamisd_tls_free(s);
    }
    tamisd_tls_ctx_free(ctx);
}

static void test_startup_errors(void **state)
{
    (void)state;
    static const struct {
        const char *cert, *key, *ca;
        bool verify;
        const char *text;
    } cases[] = {
        {"missing.pem", "srv.key", NULL, false, "cannot load server certificate"},
        {"srv.pem", "missing.key", NULL, false, "cannot load server key"},
        {"srv.pem", "ca.key", NULL, false, "key values mismatch"},
        {"srv.pem", "srv.key", NULL, true, "--ssl-verify needs"},
        {"srv.pem", "srv.key", "missing.pem", true, "cannot load client CA"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tamisd_opts_t o;
        opts(&o);
        o.server_cert = path(cases[i].cert);
        o.server_key = path(cases[i].key);
        o.ssl_verify = cases[i].verify;
        o.ssl_ca_file = cases[i].ca ? path(cases[i].ca) : NULL;
        tamisd_tls_ctx_t *ctx = (tamisd_tls_ctx_t *)&o; /* must be reset to NULL */
        char err[512] = "";
        assert_int_equal(tamisd_tls_ctx_new(&o, &ctx, err, sizeof err), -1);
        assert_null(ctx);
        assert_non_null(strstr(err, cases[i].text));
        FILE *f = tmpfile();
        assert_int_equal(tamisd_tls_lint(&o, f), 1);
        fclose(f);
    }
    tamisd_opts_t o;
    opts(&o);
    o.ssl_verify = true;
    o.ssl_ca_path = path("missing-folder"); /* OpenSSL alone would take it as empty */
    tamisd_tls_ctx_t *ctx = NULL;
    char err[512] = "";
    assert_int_equal(tamisd_tls_ctx_new(&o, &ctx, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file or directory"));
    memset(&o, 0, sizeof o);
    assert_int_equal(tamisd_tls_lint(&o, stderr), 0); /* TLS off */
}

int main(void)
{
    tamisd_log_open(NULL, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_client_certificates),
        cmocka_unit_test(test_startup_errors),
    };
    int rc = cmocka_run_group_tests(tests, make_certs, remove_certs);
    tamisd_log_close();
    return rc;
}
