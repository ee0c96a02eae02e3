/*
 * tamisc: spamc-compatible client for tamisd (and SpamAssassin's spamd).
 *
 * The flow is spamc's main(): resolve the hosts, read the message (up to -s + 1 bytes), send one
 * request, interpret the reply, write the output (or pipe it to -e's command). Any failure takes
 * spamc's fail path: in the default safe mode the original message goes to stdout unchanged
 * ("0/0" for -c/-r/-R, an empty line for -y) and the exit status is 0; -x returns the error code
 * instead (and -X turns 69 into 75). Messages over -s are passed through unscanned, exit 0.
 */
#include "tamisc.h"

#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>
#include <zlib.h>

typedef struct {
    tamisc_opts_t o;
    tamisc_msg_t m;
    tamis_buf_t out;    /* spamc's output on success */
    tamisc_reply_t rep; /* verdict and TELL result */
    int out_fd;         /* -1 until the output goes somewhere */
} run_t;

/* spamc's get_output_fd: with -e, the parent becomes the command (so its exit status is the
 * command's) and the child writes the output into a pipe to it. */
static int output_fd(run_t *r)
{
    if (r->out_fd >= 0)
        return r->out_fd;
    if (!r->o.exec_argv)
        return r->out_fd = STDOUT_FILENO;
    int fds[2];
    if (pipe(fds) < 0) {
        tamisc_log(r->o.flags, LOG_ERR, "pipe creation failed: %m");
        exit(TAMIS_EX_OSERR);
    }
    pid_t pid = fork();
    if (pid < 0) {
        tamisc_log(r->o.flags, LOG_ERR, "fork failed: %m");
        exit(TAMIS_EX_OSERR);
    }
    if (pid == 0) {
        close(fds[0]);
        return r->out_fd = fds[1];
    }
    close(fds[1]);
    if (dup2(fds[0], STDIN_FILENO) < 0) {
        tamisc_log(r->o.flags, LOG_ERR, "redirection of stdin failed: %m");
        exit(TAMIS_EX_OSERR);
    }
    close(fds[0]);
    execv(r->o.exec_argv[0], r->o.exec_argv);
    tamisc_log(r->o.flags, LOG_ERR, "exec failed: %m");
    exit(TAMIS_EX_OSERR);
}

static int compress_body(const char *in, size_t len, char **out, size_t *out_len)
{
    uLong cap = compressBound((uLong)len);
    unsigned char *buf = malloc(cap);
    z_stream zs = {0};
    if (!buf || deflateInit(&zs, 3) != Z_OK) {
        free(buf);
        return TAMIS_EX_OSERR;
    }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    int zrc = deflate(&zs, Z_FINISH); /* one stream: the buffer is large enough for all of it */
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return TAMIS_EX_OSERR;
    }
    *out = (char *)buf;
    return TAMIS_EX_OK;
}

/* Reads the reply until EOF, a read error or timeout, what the mode needs, or the cap. */
static void read_reply(int fd, tamisc_tls_t *tls, unsigned flags, int timeout, size_t cap,
                       tamis_buf_t *in)
{
    char chunk[16384];
    while (in->len < cap) {
        size_t want = cap - in->len < sizeof chunk ? cap - in->len : sizeof chunk;
        long n = tls ? tamisc_tls_recv(tls, chunk, want, timeout)
                     : tamisc_recv(fd, chunk, want, timeout);
        if (n <= 0)
            return;
        if (tamis_buf_append(in, chunk, (size_t)n) < 0)
            return;
        if (tamisc_reply_complete(flags, in->data, in->len))
            return;
    }
}

/* One connection: send the request, read the reply. */
static int exchange(run_t *r, tamisc_transport_t *t, const tamis_buf_t *head, const char *body,
                    size_t body_len, tamis_buf_t *in)
{
    int fd;
    int rc = tamisc_connect(t, &fd);
    if (rc != TAMIS_EX_OK)
        return rc;
    tamisc_tls_t *tls = NULL;
    if ((r->o.flags & TAMISC_USE_SSL) && (rc = tamisc_tls_start(&r->o, fd, &tls)) != TAMIS_EX_OK) {
        close(fd);
        return rc;
    }
    tamis_buf_reset(in);
    /* Under TLS, as libspamc 4.0.1: the request, then a close_notify and the TCP half-close. A
     * failed write ends the attempt with no reply, so EX_IOERR and the filter retries follow.
     * That includes an empty body: libspamc's SSL_write of 0 bytes fails, so spamc -S -K and an
     * empty message never get a reply; tamisc does the same so that its output and exit code stay
     * spamc's. */
    if (tls) {
        if (tamisc_tls_send(tls, head->data, head->len, r->o.timeout) != 0 ||
            tamisc_tls_send(tls, body, body_len, r->o.timeout) != 0) {
            tamisc_log(r->o.flags, LOG_ERR, "SSL write failed (%d)", 5 /* SSL_ERROR_SYSCALL */);
            tamisc_tls_free(tls);
            close(fd);
            return TAMIS_EX_OK;
        }
        tamisc_tls_close_notify(tls);
        shutdown(fd, SHUT_WR);
    } else {
        /* write errors are ignored as libspamc does: the reply (or its absence) decides */
        if (tamisc_send(fd, head->data, head->len, r->o.timeout) == 0)
            tamisc_send(fd, body, body_len, r->o.timeout);
        shutdown(fd, SHUT_WR);
    }
    size_t cap = TAMISC_MAX_REPLY_HEAD + (size_t)r->o.max_size + TAMISC_EXPANSION + 1;
    read_reply(fd, tls, r->o.flags, r->o.timeout, cap, in);
    tamisc_tls_free(tls);
    close(fd);
    return TAMIS_EX_OK;
}

/* libspamc retries (--filter-retries) only when the status line never came (EX_IOERR); a line
 * too long for it (EX_TOOBIG) is not retried. */
static bool first_line_missing(const tamis_buf_t *in)
{
    tamis_proto_response_t resp;
    return tamis_proto_parse_response(in->data ? in->data : "", in->len, &resp) == 0 &&
           resp.status_bytes == 0;
}

/* Sends the request, moving to the next host and retrying while the reply is missing. */
static int exchange_with_retries(run_t *r, tamisc_transport_t *t, const tamis_buf_t *head,
                                 const char *body, size_t body_len, tamis_buf_t *in)
{
    bool tell = r->o.flags & (TAMISC_LEARN | TAMISC_REPORT_MSG);
    int retries = tell ? 1 : r->o.filter_retries;
    int sleep_s = r->o.filter_retry_sleep < 0 ? 1 : r->o.filter_retry_sleep;
    int rc = TAMIS_EX_OK;
    bool lost = false;
    for (int count = 0; rc == TAMIS_EX_OK && (count == 0 || (count < retries && lost)); count++) {
        if (count) {
            tamisc_transport_rotate(t);
            sleep((unsigned)sleep_s);
        }
        rc = exchange(r, t, head, body, body_len, in);
        lost = first_line_missing(in);
    }
    return rc;
}

/* libspamc's message_filter / message_tell: one request, its reply turned into spamc's output. */
static int filter(run_t *r, tamisc_transport_t *t, const char *user)
{
    unsigned flags = r->o.flags;
    if (user && strlen(user) > TAMISC_MAX_USER)
        return TAMIS_EX_OSERR;
    const char *body = r->m.msg ? r->m.msg : "";
    size_t body_len = r->m.msg_len;
    char *z = NULL;
    if ((flags & TAMISC_USE_ZLIB) && !(flags & (TAMISC_LEARN | TAMISC_REPORT_MSG))) {
        if (compress_body(body, body_len, &z, &body_len) != TAMIS_EX_OK)
            return TAMIS_EX_OSERR;
        body = z;
    }
    tamis_buf_t head, in;
    tamis_buf_init(&head, 0);
    tamis_buf_init(&in, 0);
    int rc = TAMIS_EX_OSERR;
    if (tamisc_request_head(flags, r->o.learn_type, user, body_len, &head) == 0)
        rc = exchange_with_retries(r, t, &head, body, body_len, &in);
    free(z);
    if (rc == TAMIS_EX_OK) {
        size_t out_cap = (size_t)r->o.max_size + TAMISC_EXPANSION;
        tamis_slice_t orig = tamis_slice(r->m.msg ? r->m.msg : "", r->m.msg_len);
        rc = tamisc_reply_handle(flags, in.data ? in.data : "", in.len, out_cap, orig, &r->rep,
                                 &r->out);
    }
    tamis_buf_free(&head);
    tamis_buf_free(&in);
    return rc;
}

static int tell_output(run_t *r)
{
    output_fd(r);
    unsigned did = r->rep.did_tell, want;
    if (r->o.flags & TAMISC_LEARN) {
        want = r->o.learn_type == 2 ? (TAMIS_TELL_LOCAL << 4) : TAMIS_TELL_LOCAL;
        fputs(did & want ? "Message successfully un/learned\n" : "Message was already un/learned\n",
              stdout);
    } else {
        want = r->o.learn_type == 0 ? TAMIS_TELL_REMOTE : (TAMIS_TELL_REMOTE << 4);
        fputs(did & want ? "Message successfully reported/revoked\n"
                         : "Unable to report/revoke message\n",
              stdout);
    }
    return TAMIS_EX_OK;
}

/* spamc's success path; returns -1 when the output could not be written (then: fail path). */
static int success(run_t *r)
{
    unsigned flags = r->o.flags;
    if (flags & (TAMISC_LEARN | TAMISC_REPORT_MSG))
        return tell_output(r);
    int fd = output_fd(r);
    if (flags & (TAMISC_CHECK_ONLY | TAMISC_PING)) {
        if (r->rep.is_spam == TAMISC_UNKNOWN || tamisc_full_write(fd, r->out.data, r->out.len))
            return -1;
    } else if (tamisc_msg_write(fd, &r->m, r->out.data ? r->out.data : "", r->out.len) < 0) {
        return -1;
    }
    int result = r->rep.is_spam;
    if ((flags & TAMISC_CHECK_ONLY) && result != TAMISC_UNKNOWN)
        return result;
    if (r->o.use_exit_code && result != TAMISC_UNKNOWN)
        return result;
    return TAMIS_EX_OK;
}

/* spamc's fail path. */
static int failure(run_t *r, int ret)
{
    unsigned flags = r->o.flags;
    bool toobig = ret == TAMISC_EX_TOOBIG;
    if (flags & (TAMISC_CHECK_ONLY | TAMISC_REPORT | TAMISC_REPORT_IFSPAM)) {
        tamisc_full_write(output_fd(r), "0/0\n", 4);
    } else if (flags & (TAMISC_LEARN | TAMISC_PING)) {
        return ret; /* 866 leaves the process as 98, as with spamc */
    } else if (flags & TAMISC_SYMBOLS) {
        tamisc_full_write(output_fd(r), "\n", 1);
    } else if (toobig || (flags & TAMISC_SAFE_FALLBACK)) {
        tamisc_msg_dump(STDIN_FILENO, output_fd(r), &r->m);
    }
    if (toobig || (flags & TAMISC_SAFE_FALLBACK))
        return TAMIS_EX_OK;
    if ((flags & TAMISC_UNAVAIL_TEMPFAIL) && ret == TAMIS_EX_UNAVAILABLE)
        return TAMIS_EX_TEMPFAIL;
    return ret;
}

static int current_user(run_t *r, char **user)
{
    if (r->o.username) {
        *user = (char *)r->o.username;
        return TAMIS_EX_OK;
    }
    struct passwd *pw = getpwuid(geteuid());
    if (!pw) {
        perror("getpwuid() failed");
        if (r->o.flags & TAMISC_CHECK_ONLY) {
            fputs("0/0\n", stdout);
            return TAMIS_EX_TEMPFAIL; /* mapped to 0 */
        }
        return TAMIS_EX_OSERR;
    }
    *user = strdup(pw->pw_name);
    return *user ? TAMIS_EX_OK : TAMIS_EX_OSERR;
}

static int run(run_t *r)
{
    char *user = NULL;
    int ret = current_user(r, &user);
    if (ret != TAMIS_EX_OK)
        return ret == TAMIS_EX_TEMPFAIL ? TAMIS_EX_OK : ret;
    tamisc_transport_t *t = NULL;
    ret = tamisc_transport_setup(&r->o, &t);
    if (ret == TAMIS_EX_OK && !(r->o.flags & TAMISC_PING))
        ret = tamisc_msg_read(STDIN_FILENO, r->o.flags, r->o.max_size, &r->m);
    if (ret == TAMIS_EX_OK)
        ret = filter(r, t, user);
    tamisc_transport_free(t);
    if (user != r->o.username)
        free(user);
    if (ret == TAMIS_EX_OK) {
        int s = success(r);
        if (s >= 0)
            return s;
    }
    return failure(r, ret);
}

int main(int argc, char **argv)
{
    static run_t r;
    signal(SIGPIPE, SIG_IGN);
    tamisc_log_init();
    int ret = tamisc_options(argc, argv, &r.o);
    if (ret != TAMIS_EX_OK)
        return ret == TAMIS_EX_TEMPFAIL ? TAMIS_EX_OK : ret;
    r.out_fd = -1;
    tamis_buf_init(&r.out, 0);
    ret = run(&r);
    fflush(stdout);
    return ret;
}
