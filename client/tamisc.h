/*
 * tamisc: a spamc-compatible client. Internal contract shared by the files of client/.
 *
 * The behaviour copies Debian's spamc 4.0.1 (spamc.c + libspamc.c): the same options, the same
 * request bytes, the same stdout bytes and exit codes in every mode, including the safe fallback
 * that writes the original message back unchanged on any failure. The protocol is lib/proto's,
 * shared with tamisd: tamis_proto_build_request writes the request head and
 * tamis_proto_parse_response reads the reply as libspamc does; reply.c maps spamc's modes onto
 * them and turns a reply into spamc's output.
 *
 * Threads: one; the process exits when done, so memory is freed at exit only where it is simple.
 */
#ifndef TAMISC_H
#define TAMISC_H

#include "tamis/core.h"
#include "tamis/proto.h"

#include <stdbool.h>
#include <stddef.h>

/* libspamc's flag bits (libspamc.h); several may be set at once, as with spamc. */
enum {
    TAMISC_BSMTP = 1u << 0,
    TAMISC_SAFE_FALLBACK = 1u << 1,
    TAMISC_CHECK_ONLY = 1u << 2,
    TAMISC_REPORT = 1u << 3,
    TAMISC_REPORT_IFSPAM = 1u << 4,
    TAMISC_SYMBOLS = 1u << 5,
    TAMISC_PING = 1u << 6,
    TAMISC_HEADERS = 1u << 7,
    TAMISC_LEARN = 1u << 8,
    TAMISC_REPORT_MSG = 1u << 9,
    TAMISC_LOG_STDERR = 1u << 10,
    TAMISC_RANDOMIZE = 1u << 11,
    TAMISC_USE_ZLIB = 1u << 12,
    TAMISC_USE_SSL = 1u << 13,
    TAMISC_INET4 = 1u << 14,
    TAMISC_INET6 = 1u << 15,
    TAMISC_UNAVAIL_TEMPFAIL = 1u << 16,
};

/* libspamc's is_spam values */
enum { TAMISC_NOTSPAM = 0, TAMISC_ISSPAM = 1, TAMISC_UNKNOWN = -1 };

/* libspamc's internal "message larger than -s" code; exit(866) is seen as 98 */
#define TAMISC_EX_TOOBIG 866
/* spamc's hard cap on -s (SPAMC_MAX_MESSAGE_LEN) */
#define TAMISC_MAX_MESSAGE (256u * 1024 * 1024)
/* libspamc's room for added headers and report on top of -s (EXPANSION_ALLOWANCE) */
#define TAMISC_EXPANSION 16384u
/* Bounds of our own: the reply status line + header block, the -d list, config arguments. */
#define TAMISC_MAX_REPLY_HEAD (64u * 1024)
#define TAMISC_MAX_HOSTS 256
#define TAMISC_MAX_ARGS 256
#define TAMISC_MAX_USER 1024

typedef struct {
    unsigned flags;
    bool use_exit_code; /* -E */
    int learn_type;     /* -L: 0 spam, 1 ham, 2 forget; -C: 0 report, 1 revoke */
    const char *hosts;  /* -d list, NULL = loopback */
    const char *socket_path;
    unsigned short port;
    int timeout, connect_timeout;
    bool timeout_set, connect_timeout_set;
    int connect_retries, retry_sleep;
    int filter_retries, filter_retry_sleep;
    long max_size;
    const char *username;
    char **exec_argv; /* -e: NULL-terminated, points into argv */
    /* -S/--ssl (tls.c): client certificate (both or neither), CAs that verify the server */
    const char *ssl_cert, *ssl_key;
    const char *ssl_ca_file, *ssl_ca_path;
} tamisc_opts_t;

/* ---- options.c ---- */
/* Parses the config file and the command line as spamc does. Returns EX_OK, or an exit code to
 * return at once (help and version return TAMIS_EX_TEMPFAIL, mapped to 0 by the caller). */
int tamisc_options(int argc, char **argv, tamisc_opts_t *o);

/* ---- log.c ---- */
void tamisc_log_init(void);
void tamisc_log(unsigned flags, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- message.c ---- */
typedef struct {
    char *raw; /* what was read from stdin, pristine (up to max_size + 1 bytes) */
    size_t raw_len;
    bool read_done; /* stdin was read (raw is valid) */
    bool bsmtp;     /* msg/pre/post are set from a BSMTP envelope */
    char *msg;      /* the message to scan (unstuffed copy for BSMTP, raw otherwise) */
    size_t msg_len;
    size_t pre_len;  /* BSMTP: envelope before the message = raw[0, pre_len) */
    size_t post_off; /* BSMTP: the lone dot and what follows = raw[post_off, raw_len) */
} tamisc_msg_t;

int tamisc_msg_read(int fd, unsigned flags, long max_size, tamisc_msg_t *m);
/* Writes out (for BSMTP: wrapped in the envelope, dots restuffed). Returns 0 or -1. */
int tamisc_msg_write(int fd, const tamisc_msg_t *m, const char *out, size_t out_len);
/* The failure path: the original bytes already read, then the rest of in_fd. */
void tamisc_msg_dump(int in_fd, int out_fd, const tamisc_msg_t *m);
int tamisc_full_write(int fd, const void *p, size_t n);

/* ---- net.c ---- */
typedef struct tamisc_transport tamisc_transport_t;
int tamisc_transport_setup(const tamisc_opts_t *o, tamisc_transport_t **out);
/* Connects with spamc's retries and fail-over; returns EX_OK and *fd, or an EX_* code. */
int tamisc_connect(tamisc_transport_t *t, int *fd);
/* Moves the first host to the end (filter retries). */
void tamisc_transport_rotate(tamisc_transport_t *t);
void tamisc_transport_free(tamisc_transport_t *t);
/* Writes all of p with a timeout (seconds, 0 = none); returns 0 or -1. */
int tamisc_send(int fd, const void *p, size_t n, int timeout);
/* One read with a timeout; returns bytes, 0 at EOF, -1 on error or timeout. */
long tamisc_recv(int fd, void *p, size_t n, int timeout);

/* ---- tls.c ---- */
typedef struct tamisc_tls tamisc_tls_t;
/* On a connected socket (non-blocking, as tamisc_connect leaves it): builds the context from the
 * --ssl-* options and handshakes, each wait bounded by -t. Returns EX_OK and *out (free with
 * tamisc_tls_free; fd stays the caller's), EX_OSERR when a certificate, key or CA file cannot be
 * used, EX_UNAVAILABLE when the handshake fails (both logged as spamc does). */
int tamisc_tls_start(const tamisc_opts_t *o, int fd, tamisc_tls_t **out);
/* As tamisc_send / tamisc_recv, through TLS. */
int tamisc_tls_send(tamisc_tls_t *t, const void *p, size_t n, int timeout);
long tamisc_tls_recv(tamisc_tls_t *t, void *p, size_t n, int timeout);
/* Sends close_notify without waiting for the server's (its reply can still be read). */
void tamisc_tls_close_notify(tamisc_tls_t *t);
void tamisc_tls_free(tamisc_tls_t *t);

/* ---- reply.c (no I/O) ---- */
typedef struct {
    int is_spam;       /* TAMISC_ISSPAM / TAMISC_NOTSPAM / TAMISC_UNKNOWN */
    unsigned did_tell; /* TAMIS_TELL_* bits of DidSet (low) and DidRemove (<< 4) */
} tamisc_reply_t;

/* True once buf holds everything libspamc would read for this mode (the rest is read to EOF). */
bool tamisc_reply_complete(unsigned flags, const char *buf, size_t len);
/* Interprets a reply read until EOF (or until complete). out receives spamc's output for the
 * mode; out_cap is libspamc's output buffer (max_size + 16 KiB). orig is the message sent (the
 * HEADERS mode appends its body). Returns TAMIS_EX_OK or the EX_* code libspamc would return. */
int tamisc_reply_handle(unsigned flags, const char *buf, size_t len, size_t out_cap,
                        tamis_slice_t orig, tamisc_reply_t *r, tamis_buf_t *out);
/* The request bytes libspamc sends before the body for this mode (-L/-C: learn_type as in
 * tamisc_opts_t). */
int tamisc_request_head(unsigned flags, int learn_type, const char *user, size_t body_len,
                        tamis_buf_t *out);

#endif
