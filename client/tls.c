/*
 * tamisc's TLS (-S/--ssl), as Debian's spamc 4.0.1 behaves: after the TCP connection is up, a
 * context is built from --ssl-cert/--ssl-key (a client certificate, both or neither) and
 * --ssl-ca-file/--ssl-ca-path; the handshake follows. The server's certificate is verified only
 * when a CA was given, and then its chain only (no host name check), exactly as spamc does: with
 * no CA, any server certificate is accepted, so TLS then protects against eavesdropping but not
 * against an active man in the middle.
 *
 * The socket is non-blocking (net.c's connect leaves it so): every SSL call that would block
 * waits with poll() for at most the -t timeout, as the plain reads and writes do.
 *
 * Exit codes as spamc's: a certificate, key or CA file that cannot be loaded gives EX_OSERR, a
 * failed handshake EX_UNAVAILABLE; both take the usual fail path (safe fallback unless -x).
 */
#include "tamisc.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdlib.h>
#include <syslog.h>

struct tamisc_tls {
    SSL_CTX *ctx;
    SSL *ssl;
};

/* OpenSSL's error queue as one line (oldest first), then cleared; fallback when it is empty. */
static void queue_text(char *buf, size_t len, const char *fallback)
{
    size_t used = 0;
    buf[0] = '\0';
    unsigned long e;
    while ((e = ERR_get_error()) != 0 && used + 1 < len) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? " " : "", one);
    }
    if (!buf[0])
        snprintf(buf, len, "%s", fallback);
}

static int setup_error(const tamisc_opts_t *o, const char *fmt, const char *a, const char *b)
{
    char why[512];
    queue_text(why, sizeof why, "(could not get SSL error)");
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, a, b);
    tamisc_log(o->flags, LOG_ERR, "%s: %s", msg, why);
    return TAMIS_EX_OSERR;
}

/* A key file with a passphrase must fail, not prompt on the terminal of an MTA's pipe. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static int make_ctx(const tamisc_opts_t *o, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    *out = ctx;
    if (!ctx)
        return setup_error(o, "cannot create SSL CTX context%s%s", "", "");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (o->ssl_ca_file || o->ssl_ca_path) {
        if (SSL_CTX_load_verify_locations(ctx, o->ssl_ca_file, o->ssl_ca_path) != 1)
            return setup_error(o, "error loading CA file %s or path %s",
                               o->ssl_ca_file ? o->ssl_ca_file : "(void)",
                               o->ssl_ca_path ? o->ssl_ca_path : "(void)");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->ssl_cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->ssl_cert) != 1)
            return setup_error(o, "unable to load certificate file %s%s", o->ssl_cert, "");
        if (SSL_CTX_use_PrivateKey_file(ctx, o->ssl_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            return setup_error(o, "unable to load key file %s%s", o->ssl_key, "");
    }
    return TAMIS_EX_OK;
}

/* Waits until an SSL call that returned rc can be retried; returns 0, or -1 (error, timeout). */
static int wait_ssl(tamisc_tls_t *t, int rc, int timeout)
{
    int e = SSL_get_error(t->ssl, rc);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (!ev)
        return -1;
    struct pollfd pfd = {.fd = SSL_get_fd(t->ssl), .events = ev};
    int n;
    while ((n = poll(&pfd, 1, timeout > 0 ? timeout * 1000 : -1)) < 0 && errno == EINTR)
        ;
    return n > 0 ? 0 : -1;
}

int tamisc_tls_start(const tamisc_opts_t *o, int fd, tamisc_tls_t **out)
{
    *out = NULL;
    ERR_clear_error();
    tamisc_tls_t *t = calloc(1, sizeof *t);
    if (!t)
        return TAMIS_EX_OSERR;
    int rc = make_ctx(o, &t->ctx);
    if (rc == TAMIS_EX_OK && (!(t->ssl = SSL_new(t->ctx)) || SSL_set_fd(t->ssl, fd) != 1))
        rc = setup_error(o, "SSL_new failed%s%s", "", "");
    while (rc == TAMIS_EX_OK) {
        int r = SSL_connect(t->ssl);
        if (r == 1)
            break;
        if (wait_ssl(t, r, o->timeout) != 0) {
            char why[512];
            queue_text(why, sizeof why, "");
            tamisc_log(o->flags, LOG_ERR, "SSL_connect error: %s", why);
            rc = TAMIS_EX_UNAVAILABLE;
        }
    }
    if (rc != TAMIS_EX_OK) {
        tamisc_tls_free(t);
        return rc;
    }
    *out = t;
    return TAMIS_EX_OK;
}

int tamisc_tls_send(tamisc_tls_t *t, const void *p, size_t n, int timeout)
{
    const char *c = p;
    ERR_clear_error();
    if (n == 0)
        return -1; /* what SSL_write(ssl, p, 0) gives libspamc: see exchange() in main.c */
    while (n) {
        int r = SSL_write(t->ssl, c, n > INT_MAX ? INT_MAX : (int)n);
        if (r > 0) {
            c += r;
            n -= (size_t)r;
        } else if (wait_ssl(t, r, timeout) != 0) {
            return -1;
        }
    }
    return 0;
}

long tamisc_tls_recv(tamisc_tls_t *t, void *p, size_t n, int timeout)
{
    ERR_clear_error();
    for (;;) {
        int r = SSL_read(t->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (r > 0)
            return r;
        if (SSL_get_error(t->ssl, r) == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (wait_ssl(t, r, timeout) != 0)
            return -1;
    }
}

void tamisc_tls_close_notify(tamisc_tls_t *t)
{
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl); /* 0: ours sent (or queued on a full socket), theirs to come */
}

void tamisc_tls_free(tamisc_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    free(t);
}
