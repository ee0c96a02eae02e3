/*
 * TLS for tamisd's spamc listeners (spamd's --ssl family of options).
 *
 * OpenSSL never touches a socket here: each connection's SSL object sits between two memory BIOs.
 * server.c feeds what uv_read delivered into the read BIO and pulls plaintext out with SSL_read;
 * replies go through SSL_write and the write BIO's records are handed back to be sent with
 * uv_write. So a slow or hostile peer can only make the loop wait for bytes, never block it, and
 * the handshake is bounded by the same --timeout-tcp timer as a plain request line.
 *
 * Policy (spamd leaves these to IO::Socket::SSL; ours are fixed and modern): TLS 1.2 minimum,
 * ECDHE with AEAD ciphers for 1.2, OpenSSL's TLS 1.3 suites, server cipher preference, no
 * compression, no renegotiation; session tickets are allowed. With --ssl-verify (implied by
 * --ssl-ca-file/--ssl-ca-path) a client certificate is required and must chain to those CAs; as
 * with spamd, its name is not checked.
 */
#include "tamisd.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ECDHE key exchange with AEAD ciphers only (TLS 1.2); TLS 1.3 keeps OpenSSL's own list. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
/* Plaintext handed to SSL_write at a time, so the write BIO never holds more than one chunk of
 * records beyond what was already moved to the caller's buffer. */
#define ENCRYPT_CHUNK 16384

struct tamisd_tls_ctx {
    SSL_CTX *ssl;
};

struct tamisd_tls {
    SSL *ssl;
    BIO *wbio; /* records to send; owned by ssl */
    bool established;
};

/* The reasons in OpenSSL's error queue (oldest first), joined with ": ", without repeats and
 * without the "... lib" entries that only say which layer passed an error on; clears the queue. */
static void queue_reason(char *buf, size_t len, const char *fallback)
{
    size_t used = 0;
    buf[0] = '\0';
    const char *last = "";
    char tmp[256];
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        const char *r =
            ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e)) : ERR_reason_error_string(e);
        if (!r) {
            ERR_error_string_n(e, tmp, sizeof tmp);
            r = tmp;
        }
        size_t rl = strlen(r);
        bool layer = rl > 4 && strcmp(r + rl - 4, " lib") == 0;
        if ((layer && used) || strcmp(r, last) == 0 || used >= len)
            continue;
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ": " : "", r);
        last = r == tmp ? "" : r;
    }
    if (!buf[0])
        snprintf(buf, len, "%s", fallback);
}

static int fail(char *err, size_t errlen, const char *what, const char *path)
{
    char why[256];
    queue_reason(why, sizeof why, "unknown error");
    return tamis_seterr(err, errlen, -1, "%s %s: %s", what, path, why);
}

/* A daemon must never stop at a passphrase prompt: an encrypted key is an error instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static const char *cert_path(const tamisd_opts_t *o)
{
    return o->server_cert ? o->server_cert : TAMISD_DEFAULT_CERT_DIR "/server-cert.pem";
}

static const char *key_path(const tamisd_opts_t *o)
{
    return o->server_key ? o->server_key : TAMISD_DEFAULT_CERT_DIR "/server-key.pem";
}

static int load_identity(SSL_CTX *ctx, const tamisd_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path(o)) != 1)
        return fail(err, errlen, "cannot load server certificate (--server-cert)", cert_path(o));
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path(o), SSL_FILETYPE_PEM) != 1)
        return fail(err, errlen, "cannot load server key (--server-key)", key_path(o));
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(err, errlen, "server key does not match the certificate", key_path(o));
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (cert && X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
        tamisd_log(TAMISD_LOG_WARN, "TLS: the server certificate %s has expired", cert_path(o));
    return 0;
}

static int load_client_cas(SSL_CTX *ctx, const tamisd_opts_t *o, char *err, size_t errlen)
{
    if (!o->ssl_ca_file && !o->ssl_ca_path)
        return tamis_seterr(err, errlen, -1,
                            "--ssl-verify needs --ssl-ca-file or --ssl-ca-path (the CAs that sign "
                            "client certificates)");
    /* OpenSSL takes a missing folder as an empty one; spamd refuses both */
    struct stat st;
    if (o->ssl_ca_path && stat(o->ssl_ca_path, &st) != 0)
        return tamis_seterr(err, errlen, -1, "cannot use client CA folder (--ssl-ca-path) %s: %s",
                            o->ssl_ca_path, strerror(errno));
    if (o->ssl_ca_path && !S_ISDIR(st.st_mode))
        return tamis_seterr(err, errlen, -1,
                            "cannot use client CA folder (--ssl-ca-path) %s: not a folder",
                            o->ssl_ca_path);
    if (SSL_CTX_load_verify_locations(ctx, o->ssl_ca_file, o->ssl_ca_path) != 1)
        return fail(err, errlen, "cannot load client CA (--ssl-ca-file/--ssl-ca-path)",
                    o->ssl_ca_file ? o->ssl_ca_file : o->ssl_ca_path);
    if (o->ssl_ca_file) { /* tells clients which CAs we accept */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ssl_ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

int tamisd_tls_ctx_new(const tamisd_opts_t *o, tamisd_tls_ctx_t **out, char *err, size_t errlen)
{
    *out = NULL;
    ERR_clear_error();
    tamisd_tls_ctx_t *c = calloc(1, sizeof *c);
    if (!c || !(c->ssl = SSL_CTX_new(TLS_server_method()))) {
        free(c);
        return fail(err, errlen, "cannot create the TLS context", "");
    }
    SSL_CTX *ctx = c->ssl;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION);
    /* session resumption must not skip the client-certificate check: tie sessions to us */
    static const unsigned char sid[] = "tamisd";
    int rc = SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) == 1 &&
                     SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1) == 1
                 ? 0
                 : fail(err, errlen, "cannot set the TLS ciphers", "");
    if (rc == 0)
        rc = load_identity(ctx, o, err, errlen);
    if (rc == 0 && o->ssl_verify)
        rc = load_client_cas(ctx, o, err, errlen);
    if (rc != 0) {
        tamisd_tls_ctx_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void tamisd_tls_ctx_free(tamisd_tls_ctx_t *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

/* Listeners named "ssl:..." turn TLS on for themselves only (listen.c). */
static size_t prefixed_listeners(const tamisd_opts_t *o)
{
    size_t n = 0;
    for (size_t i = 0; i < o->listen_count; i++)
        n += strncasecmp(o->listen[i], "ssl:", 4) == 0;
    return n;
}

int tamisd_tls_lint(const tamisd_opts_t *o, FILE *f)
{
    size_t prefixed = prefixed_listeners(o);
    if (!o->ssl && !prefixed) {
        fprintf(f, "lint: TLS: off\n");
        return 0;
    }
    if (o->ssl)
        fprintf(f, "lint: TLS: on every spamc TCP listener (default port %d)\n",
                o->ssl_port ? o->ssl_port : o->port);
    else
        fprintf(f, "lint: TLS: on the %zu \"-i ssl:...\" listener(s)\n", prefixed);
    fprintf(f, "lint: TLS: certificate %s, key %s\n", cert_path(o), key_path(o));
    fprintf(f, "lint: TLS: TLSv1.2 and TLSv1.3 only, ECDHE AEAD ciphers for TLSv1.2, no "
               "compression, no renegotiation\n");
    if (o->ssl_verify)
        fprintf(f, "lint: TLS: client certificates required, verified against %s%s%s\n",
                o->ssl_ca_file ? o->ssl_ca_file : "",
                o->ssl_ca_file && o->ssl_ca_path ? " and " : "",
                o->ssl_ca_path ? o->ssl_ca_path : "");
    else
        fprintf(f,
                "lint: TLS: client certificates not requested (--ssl-ca-file to require them)\n");
    tamisd_tls_ctx_t *ctx = NULL;
    char err[512];
    if (tamisd_tls_ctx_new(o, &ctx, err, sizeof err) != 0) {
        fprintf(f, "lint: TLS: error: %s\n", err);
        return 1;
    }
    tamisd_tls_ctx_free(ctx);
    fprintf(f, "lint: TLS: certificate and key load and match\n");
    return 0;
}

/* ---- connections ------------------------------------------------------------------------------
 */

tamisd_tls_t *tamisd_tls_new(tamisd_tls_ctx_t *ctx)
{
    tamisd_tls_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    BIO *rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    t->ssl = SSL_new(ctx->ssl);
    if (!rbio || !t->wbio || !t->ssl) {
        BIO_free(rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    /* an empty read BIO means "wait for more", not end of file */
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(t->ssl, rbio, t->wbio); /* ssl owns both BIOs from here */
    SSL_set_accept_state(t->ssl);
    return t;
}

void tamisd_tls_free(tamisd_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

int tamisd_tls_feed(tamisd_tls_t *t, const char *data, size_t len)
{
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int w = BIO_write(SSL_get_rbio(t->ssl), data, chunk);
        if (w <= 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Why a handshake or record failed: the certificate check's verdict first, when there was one. */
static void failure_reason(tamisd_tls_t *t, int rc, char *err, size_t errlen)
{
    int e = SSL_get_error(t->ssl, rc);
    long v = SSL_get_verify_result(t->ssl);
    char why[256];
    queue_reason(why, sizeof why, e == SSL_ERROR_SYSCALL ? "unexpected data" : "protocol error");
    if (v != X509_V_OK)
        snprintf(err, errlen, "client certificate: %s (%s)", X509_verify_cert_error_string(v), why);
    else
        snprintf(err, errlen, "%s", why);
}

tamisd_tls_status_t tamisd_tls_read(tamisd_tls_t *t, char *buf, size_t cap, size_t *got, char *err,
                                    size_t errlen)
{
    *got = 0;
    ERR_clear_error();
    if (!t->established) {
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            if (SSL_get_error(t->ssl, rc) == SSL_ERROR_WANT_READ)
                return TAMISD_TLS_OK;
            failure_reason(t, rc, err, errlen);
            return TAMISD_TLS_ERROR;
        }
        t->established = true;
    }
    int rc = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (rc > 0) {
        *got = (size_t)rc;
        return TAMISD_TLS_OK;
    }
    switch (SSL_get_error(t->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return TAMISD_TLS_OK;
    case SSL_ERROR_ZERO_RETURN:
        return TAMISD_TLS_EOF;
    default:
        failure_reason(t, rc, err, errlen);
        return TAMISD_TLS_ERROR;
    }
}

int tamisd_tls_take(tamisd_tls_t *t, tamis_buf_t *out)
{
    char *p = NULL;
    long n = BIO_get_mem_data(t->wbio, &p);
    if (n <= 0)
        return 0;
    if (tamis_buf_append(out, p, (size_t)n) != 0)
        return -1;
    (void)BIO_reset(t->wbio);
    return 0;
}

int tamisd_tls_encrypt(tamisd_tls_t *t, const char *p, size_t n, bool last, tamis_buf_t *out)
{
    if (!t->established)
        return -1;
    ERR_clear_error();
    while (n > 0) {
        int chunk = n > ENCRYPT_CHUNK ? ENCRYPT_CHUNK : (int)n;
        if (SSL_write(t->ssl, p, chunk) != chunk || tamisd_tls_take(t, out) != 0)
            return -1;
        p += chunk;
        n -= (size_t)chunk;
    }
    if (last)
        (void)SSL_shutdown(t->ssl); /* queues close_notify; the peer's is not waited for */
    return tamisd_tls_take(t, out);
}

bool tamisd_tls_established(const tamisd_tls_t *t)
{
    return t->established;
}

void tamisd_tls_describe(const tamisd_tls_t *t, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s %s", SSL_get_version(t->ssl),
                     SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)));
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (peer && n > 0 && (size_t)n < len) {
        char name[256];
        X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof name);
        snprintf(buf + n, len - (size_t)n, " client=%s", name);
    }
}
