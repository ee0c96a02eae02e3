/*
 * tamisc's transport, as libspamc's transport_setup / _try_to_connect_tcp / _try_to_connect_unix:
 * a list of hosts (all addresses of one name count as one entry), an optional random rotation
 * (-H), the list cut to one host without safe fallback (-x), and connect attempts that cycle
 * through the hosts with a sleep between rounds. Every connect, read and write has a deadline.
 */
#include "tamisc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

struct tamisc_transport {
    unsigned flags;
    const char *socket_path;
    struct addrinfo *hosts[TAMISC_MAX_HOSTS];
    int nhosts;
    int connect_retries, retry_sleep, connect_timeout;
};

static int translate_connect_errno(int err)
{
    switch (err) {
    case ECONNREFUSED:
    case ETIMEDOUT:
    case ENETUNREACH:
        return TAMIS_EX_UNAVAILABLE;
    case EACCES:
        return TAMIS_EX_NOPERM;
    default:
        return TAMIS_EX_SOFTWARE;
    }
}

static int poll_ms(int seconds)
{
    return seconds > 0 ? seconds * 1000 : -1;
}

/* connect() bounded by the connect timeout; returns 0 or -1 with errno set. */
static int timed_connect(int fd, const struct sockaddr *sa, socklen_t len, int timeout)
{
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        return -1;
    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int n;
    while ((n = poll(&pfd, 1, poll_ms(timeout))) < 0 && errno == EINTR)
        ;
    if (n == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    int err = 0;
    socklen_t elen = sizeof err;
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
        return -1;
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

static int gai_class(int err, int *errbits)
{
    switch (err) {
    case EAI_AGAIN:
        *errbits |= 1;
        return 0;
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS:
    case EAI_NONAME:
    case EAI_SERVICE:
    case EAI_MEMORY:
    case EAI_FAIL:
        *errbits |= 2;
        return 0;
    default: /* as Debian's build: EAI_ADDRFAMILY, EAI_SYSTEM, EAI_NODATA are fatal */
        return TAMIS_EX_OSERR;
    }
}

static int resolve_list(tamisc_transport_t *t, const char *list, const struct addrinfo *hints,
                        const char *port)
{
    int errbits = 0;
    char *copy = strdup(list);
    if (!copy)
        return TAMIS_EX_OSERR;
    for (char *name = copy, *next; name; name = next) {
        next = strchr(name, ',');
        if (next)
            *next++ = '\0';
        struct addrinfo *res = NULL;
        int err = getaddrinfo(name, port, hints, &res);
        if (err) {
            tamisc_log(t->flags, LOG_DEBUG, "getaddrinfo(%s) failed: %s", name, gai_strerror(err));
            int rc = gai_class(err, &errbits);
            if (rc) {
                free(copy);
                return rc;
            }
            continue;
        }
        if (t->nhosts == TAMISC_MAX_HOSTS) {
            freeaddrinfo(res);
            tamisc_log(t->flags, LOG_NOTICE, "hit limit of %d hosts, ignoring remainder",
                       TAMISC_MAX_HOSTS);
            break;
        }
        t->hosts[t->nhosts++] = res;
    }
    free(copy);
    if (t->nhosts == 0) {
        tamisc_log(t->flags, LOG_ERR, "could not resolve any hosts (%s): %s", list,
                   (errbits & 1) ? "a temporary error occurred" : "no such host");
        return (errbits & 1) ? TAMIS_EX_TEMPFAIL : TAMIS_EX_NOHOST;
    }
    return TAMIS_EX_OK;
}

static void randomize(tamisc_transport_t *t)
{
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    int n = rand() % t->nhosts;
    while (n-- > 0)
        tamisc_transport_rotate(t);
}

int tamisc_transport_setup(const tamisc_opts_t *o, tamisc_transport_t **out)
{
    tamisc_transport_t *t = calloc(1, sizeof *t);
    if (!t)
        return TAMIS_EX_OSERR;
    *out = t;
    t->flags = o->flags;
    t->connect_retries = o->connect_retries > 0 ? o->connect_retries : 3;
    t->retry_sleep = o->retry_sleep < 0 ? 1 : o->retry_sleep;
    t->connect_timeout = o->connect_timeout;
    if (o->socket_path) {
        t->socket_path = o->socket_path;
        return TAMIS_EX_OK;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    if ((o->flags & TAMISC_INET4) && !(o->flags & TAMISC_INET6))
        hints.ai_family = AF_INET;
    else if ((o->flags & TAMISC_INET6) && !(o->flags & TAMISC_INET4))
        hints.ai_family = AF_INET6;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)o->port);
    if (!o->hosts) { /* getaddrinfo(NULL): the loopback addresses, ::1 first */
        int err = getaddrinfo(NULL, port, &hints, &t->hosts[0]);
        if (err) {
            tamisc_log(t->flags, LOG_ERR, "getaddrinfo for a loopback address failed: %s",
                       gai_strerror(err));
            return TAMIS_EX_OSERR;
        }
        t->nhosts = 1;
        return TAMIS_EX_OK;
    }
    int rc = resolve_list(t, o->hosts, &hints, port);
    if (rc != TAMIS_EX_OK)
        return rc;
    if ((o->flags & TAMISC_RANDOMIZE) && t->nhosts > 1)
        randomize(t);
    if (!(o->flags & TAMISC_SAFE_FALLBACK))
        t->nhosts = 1; /* -x: no fail-over */
    return TAMIS_EX_OK;
}

void tamisc_transport_rotate(tamisc_transport_t *t)
{
    if (t->nhosts <= 1)
        return;
    struct addrinfo *first = t->hosts[0];
    memmove(t->hosts, t->hosts + 1, sizeof t->hosts[0] * (size_t)(t->nhosts - 1));
    t->hosts[t->nhosts - 1] = first;
}

void tamisc_transport_free(tamisc_transport_t *t)
{
    if (!t)
        return;
    for (int i = 0; i < TAMISC_MAX_HOSTS; i++)
        if (t->hosts[i])
            freeaddrinfo(t->hosts[i]);
    free(t);
}

static int connect_unix(tamisc_transport_t *t, int *fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", t->socket_path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0)
        return TAMIS_EX_OSERR;
    if (timed_connect(s, (struct sockaddr *)&sa, sizeof sa, t->connect_timeout) == 0) {
        *fd = s;
        return TAMIS_EX_OK;
    }
    int err = errno;
    tamisc_log(t->flags, LOG_ERR, "connect(AF_UNIX) to spamd using --socket='%s' failed: %s",
               sa.sun_path, strerror(err));
    close(s);
    return translate_connect_errno(err);
}

/* One address: 0 and *fd, or -1 with *err set. */
static int try_addr(tamisc_transport_t *t, const struct addrinfo *ai, int round, int *fd, int *err)
{
    char host[NI_MAXHOST] = "?";
    int s = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (s < 0)
        return -1;
    getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, NULL, 0, NI_NUMERICHOST);
    if (timed_connect(s, ai->ai_addr, ai->ai_addrlen, t->connect_timeout) == 0) {
        *fd = s;
        return 0;
    }
    *err = errno;
    close(s);
    bool innocent = *err == ECONNREFUSED && round + 1 < t->nhosts;
    tamisc_log(t->flags, innocent ? LOG_DEBUG : LOG_ERR,
               "connect to spamd on %s failed, retrying (#%d of %d): %s", host, round + 1,
               t->connect_retries, strerror(*err));
    return -1;
}

static int connect_tcp(tamisc_transport_t *t, int *fd)
{
    int err = 0;
    for (int round = 0; round < t->connect_retries; round++) {
        const struct addrinfo *ai = t->hosts[round % t->nhosts];
        for (; ai; ai = ai->ai_next)
            if (try_addr(t, ai, round, fd, &err) == 0)
                return TAMIS_EX_OK;
        bool innocent = err == ECONNREFUSED && round + 1 < t->nhosts;
        if (round + 1 < t->connect_retries && !innocent)
            sleep((unsigned)t->retry_sleep);
    }
    tamisc_log(t->flags, LOG_ERR, "connection attempt to spamd aborted after %d retries",
               t->connect_retries);
    return translate_connect_errno(err);
}

int tamisc_connect(tamisc_transport_t *t, int *fd)
{
    return t->socket_path ? connect_unix(t, fd) : connect_tcp(t, fd);
}

static int wait_fd(int fd, short events, int timeout)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int n;
    while ((n = poll(&pfd, 1, poll_ms(timeout))) < 0 && errno == EINTR)
        ;
    return n > 0 ? 0 : -1;
}

int tamisc_send(int fd, const void *p, size_t n, int timeout)
{
    const char *c = p;
    while (n) {
        if (wait_fd(fd, POLLOUT, timeout) < 0)
            return -1;
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

long tamisc_recv(int fd, void *p, size_t n, int timeout)
{
    for (;;) {
        if (wait_fd(fd, POLLIN, timeout) < 0)
            return -1;
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        return (long)r;
    }
}
