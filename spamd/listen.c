/*
 * Binding the listening sockets. This happens before the event loop exists so that tamisd can bind
 * port 783 as root, then daemonize and drop privileges; the loop adopts the descriptors later.
 */
#include "tamisd.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 256

/* Splits "host", "host:port", "[v6]:port", "v6" into host and port text. */
static int split_hostport(const char *spec, int defport, char *host, size_t hlen, char *port,
                          size_t plen)
{
    const char *colon = strrchr(spec, ':');
    snprintf(port, plen, "%d", defport);
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || (size_t)(close - spec - 1) >= hlen)
            return -1;
        snprintf(host, hlen, "%.*s", (int)(close - spec - 1), spec + 1);
        if (close[1] == ':')
            snprintf(port, plen, "%s", close + 2);
        else if (close[1])
            return -1;
        return 0;
    }
    if (colon && strchr(spec, ':') == colon) { /* exactly one colon: host:port */
        if ((size_t)(colon - spec) >= hlen)
            return -1;
        snprintf(host, hlen, "%.*s", (int)(colon - spec), spec);
        snprintf(port, plen, "%s", colon + 1);
        return 0;
    }
    if (strlen(spec) >= hlen)
        return -1;
    snprintf(host, hlen, "%s", spec);
    return 0;
}

static int bind_one(const struct addrinfo *ai, char *err, size_t errlen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return tamis_seterr(err, errlen, -1, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        tamis_seterr(err, errlen, -1, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Binds every address spec resolves to. optional: failures are not errors (default ::1). */
static int listen_tcp(const char *spec, int defport, bool optional, tamisd_listener_t *out,
                      size_t max, size_t *n, char *err, size_t errlen)
{
    char host[256], port[32];
    if (split_hostport(spec, defport, host, sizeof host, port, sizeof port) != 0)
        return tamis_seterr(err, errlen, -1, "bad listen address: %s", spec);
    bool any = host[0] == '\0' || strcmp(host, "*") == 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(any ? NULL : host, port, &hints, &res);
    if (gai != 0)
        return optional ? 0 : tamis_seterr(err, errlen, -1, "%s: %s", spec, gai_strerror(gai));
    int bound = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (*n >= max)
            break;
        char e2[128];
        int fd = bind_one(ai, e2, sizeof e2);
        if (fd < 0) {
            if (!optional)
                tamis_seterr(err, errlen, -1, "cannot listen on %s: %s", spec, e2);
            continue;
        }
        char addr[64];
        int p;
        tamisd_addr_str(ai->ai_addr, addr, sizeof addr, &p);
        out[*n].fd = fd;
        out[*n].is_unix = false;
        snprintf(out[*n].name, sizeof out[*n].name, "%s%s%s:%d",
                 ai->ai_family == AF_INET6 ? "[" : "", addr, ai->ai_family == AF_INET6 ? "]" : "",
                 p);
        (*n)++;
        bound++;
    }
    freeaddrinfo(res);
    return (bound || optional) ? 0 : -1;
}

static int listen_unix(const char *path, tamisd_listener_t *out, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path)
        return tamis_seterr(err, errlen, -1, "socket path too long: %s", path);
    memcpy(sun.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket from a previous run */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tamis_seterr(err, errlen, -1, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        tamis_seterr(err, errlen, -1, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    out->fd = fd;
    out->is_unix = true;
    snprintf(out->name, sizeof out->name, "%s", path);
    return 0;
}

/* TLS, as spamd: "ssl:" before an address, or --ssl / --ssl-port for every TCP listener; a TLS
 * listener without its own port takes --ssl-port if given. Marks out[from, n) and names them. */
static const char *tls_spec(const tamisd_opts_t *o, const char *spec, bool *tls, int *port)
{
    *tls = o->ssl;
    if (strncasecmp(spec, "ssl:", 4) == 0)
        spec += 4, *tls = true;
    *port = *tls && o->ssl_port ? o->ssl_port : o->port;
    return spec;
}

static void mark_tls(tamisd_listener_t *out, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        char name[sizeof out[i].name];
        out[i].want_tls = true;
        snprintf(name, sizeof name, "ssl:%s", out[i].name);
        memcpy(out[i].name, name, sizeof name);
    }
}

int tamisd_listen_all(const tamisd_opts_t *o, tamisd_listener_t *out, size_t max, char *err,
                      size_t errlen)
{
    size_t n = 0;
    bool tls;
    int port;
    if (o->socketpath && max > 0) {
        if (listen_unix(o->socketpath, &out[n], err, errlen) != 0)
            return -1;
        n++;
    }
    for (size_t i = 0; i < o->listen_count; i++) {
        size_t from = n;
        const char *spec = tls_spec(o, o->listen[i], &tls, &port);
        if (listen_tcp(spec, port, false, out, max, &n, err, errlen) != 0)
            return -1;
        if (tls)
            mark_tls(out, from, n);
    }
    if (o->listen_count == 0 && !o->socketpath) {
        /* spamd's default: the loopback addresses; ::1 only where IPv6 is available */
        (void)tls_spec(o, "", &tls, &port);
        if (o->family != 6 && listen_tcp("127.0.0.1", port, false, out, max, &n, err, errlen))
            return -1;
        if (o->family != 4 && listen_tcp("[::1]", port, o->family != 6, out, max, &n, err, errlen))
            return -1;
        if (tls)
            mark_tls(out, 0, n);
    }
    return (int)n;
}
