/* tamis-bench-drive: the load generator of bench/throughput.
 *
 * Sends each message named on stdin (one path per line) to a spamd-protocol daemon, at most N at a
 * time, either through the real spamc (one process per message, started with posix_spawn, its stdin
 * the message file itself) or over a plain socket. A Python driver spent about as much CPU per
 * message as the daemon under test on two cores; this one stays out of the measurement.
 *
 * Prints one line per message, "<latency us> <status> <scored> <path>" (status: spamc's exit code,
 * or 0 for a socket reply with EX_OK, or -1 when the request failed; scored: 1 when the reply
 * carried a score or output), then "wall_us <n>".
 *
 *   tamis-bench-drive -p PORT -c N [-m spamc|socket] [-s SPAMC] [-v VERB] [-- spamc args...]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { MAX_SLOTS = 1024, HEAD_KEEP = 4096 };

typedef struct {
    bool busy;
    pid_t pid;  /* spamc mode */
    int fd;     /* spamc's stdout pipe, or the socket */
    char *path; /* owned */
    char *req;  /* socket mode: the whole request, owned */
    size_t req_len, req_off;
    char head[HEAD_KEEP]; /* the first bytes of the reply */
    size_t got;
    long long t0;
} slot_t;

typedef struct {
    int port;
    bool socket_mode;
    const char *spamc;
    const char *verb;
    char **spamc_args;
    int spamc_nargs;
} opts_t;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* Returns the file's bytes (malloc'd, caller frees) or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static int start_spamc(const opts_t *o, slot_t *s)
{
    int pipefd[2];
    int in = open(s->path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        close(in);
        return -1;
    }
    fcntl(pipefd[0], F_SETFL, O_NONBLOCK); /* ours only: spamc writes to a blocking pipe */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)o->spamc;
    argv[n++] = "-x";
    argv[n++] = "-d";
    argv[n++] = "127.0.0.1";
    argv[n++] = "-p";
    argv[n++] = port;
    argv[n++] = "-t";
    argv[n++] = "120";
    argv[n++] = "-s";
    argv[n++] = "50000000";
    for (int i = 0; i < o->spamc_nargs && n < 63; i++)
        argv[n++] = o->spamc_args[i];
    argv[n] = NULL;
    int rc = posix_spawn(&s->pid, o->spamc, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        return -1;
    }
    s->fd = pipefd[0];
    return 0;
}

static int start_socket(const opts_t *o, slot_t *s)
{
    size_t len;
    char *body = slurp(s->path, &len);
    if (!body)
        return -1;
    char hdr[160];
    int h = snprintf(hdr, sizeof hdr, "%s SPAMC/1.5\r\nUser: bench\r\nContent-length: %zu\r\n\r\n",
                     o->verb, len);
    s->req = malloc((size_t)h + len);
    if (!s->req) {
        free(body);
        return -1;
    }
    memcpy(s->req, hdr, (size_t)h);
    memcpy(s->req + h, body, len);
    free(body);
    s->req_len = (size_t)h + len;
    s->req_off = 0;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(s->fd);
        return -1;
    }
    return 0;
}

/* Whether a finished reply carried a verdict: CHECK/SYMBOLS a "Spam:" header, else a body. */
static int socket_status(const slot_t *s, const char *verb, int *scored)
{
    *scored = 0;
    if (strncmp(s->head, "SPAMD/", 6) != 0)
        return -1;
    const char *eol = strstr(s->head, "\r\n");
    const char *ok = strstr(s->head, " 0 EX_OK");
    if (!eol || !ok || ok > eol)
        return -1;
    const char *end = strstr(s->head, "\r\n\r\n");
    if (!strcmp(verb, "CHECK") || !strcmp(verb, "SYMBOLS")) {
        *scored = strcasestr(s->head, "\nSpam:") != NULL;
        if (!strcmp(verb, "SYMBOLS"))
            *scored = *scored && end && s->got > (size_t)(end + 4 - s->head);
    } else {
        *scored = end && s->got > (size_t)(end + 4 - s->head);
    }
    return 0;
}

static void finish(slot_t *s, int status, int scored)
{
    printf("%lld %d %d %s\n", now_us() - s->t0, status, scored, s->path);
    free(s->path);
    free(s->req);
    s->path = s->req = NULL;
    s->busy = false;
    s->got = 0;
    s->head[0] = '\0';
}

static void begin(const opts_t *o, slot_t *s, char *path)
{
    s->busy = true;
    s->path = path;
    s->got = 0;
    s->head[0] = '\0';
    s->t0 = now_us();
    int rc = o->socket_mode ? start_socket(o, s) : start_spamc(o, s);
    if (rc != 0) {
        s->fd = -1;
        finish(s, -1, 0);
    }
}

/* Reads what is there; returns true at end of reply. */
static bool drain(slot_t *s)
{
    char buf[65536];
    for (;;) {
        ssize_t r = read(s->fd, buf, sizeof buf);
        if (r > 0) {
            size_t keep = HEAD_KEEP - 1 - (s->got < HEAD_KEEP - 1 ? s->got : HEAD_KEEP - 1);
            if (keep > (size_t)r)
                keep = (size_t)r;
            memcpy(s->head + (s->got < HEAD_KEEP - 1 ? s->got : HEAD_KEEP - 1), buf, keep);
            s->got += (size_t)r;
            s->head[s->got < HEAD_KEEP - 1 ? s->got : HEAD_KEEP - 1] = '\0';
            continue;
        }
        if (r == 0)
            return true;
        if (errno == EINTR)
            continue;
        return errno != EAGAIN && errno != EWOULDBLOCK;
    }
}

static void on_ready(const opts_t *o, slot_t *s, short revents)
{
    if (o->socket_mode && s->req_off < s->req_len) {
        if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
            return;
        ssize_t w = write(s->fd, s->req + s->req_off, s->req_len - s->req_off);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            close(s->fd);
            finish(s, -1, 0);
            return;
        }
        if (w > 0)
            s->req_off += (size_t)w;
        if (s->req_off == s->req_len)
            shutdown(s->fd, SHUT_WR);
        return;
    }
    if (!(revents & (POLLIN | POLLERR | POLLHUP)))
        return;
    if (!drain(s))
        return;
    close(s->fd);
    int status = -1, scored = 0;
    if (o->socket_mode) {
        status = socket_status(s, o->verb, &scored);
    } else {
        int ws;
        if (waitpid(s->pid, &ws, 0) == s->pid && WIFEXITED(ws))
            status = WEXITSTATUS(ws);
        /* -c prints "0/0" when it got no verdict */
        scored = s->got > 0 && strncmp(s->head, "0/0", 3) != 0;
    }
    finish(s, status, scored);
}

static char *next_path(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n <= 0) {
        free(line);
        return NULL;
    }
    if (line[n - 1] == '\n')
        line[n - 1] = '\0';
    return line;
}

static int parse_opts(int argc, char **argv, opts_t *o, int *conc)
{
    *o = (opts_t){.spamc = "/usr/bin/spamc", .verb = "PROCESS"};
    *conc = 1;
    int opt;
    while ((opt = getopt(argc, argv, "p:c:m:s:v:")) != -1) {
        switch (opt) {
        case 'p':
            o->port = atoi(optarg);
            break;
        case 'c':
            *conc = atoi(optarg);
            break;
        case 'm':
            o->socket_mode = !strcmp(optarg, "socket");
            break;
        case 's':
            o->spamc = optarg;
            break;
        case 'v':
            o->verb = optarg;
            break;
        default:
            return -1;
        }
    }
    o->spamc_args = argv + optind;
    o->spamc_nargs = argc - optind;
    return (o->port > 0 && *conc > 0 && *conc <= MAX_SLOTS) ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts_t o;
    int conc;
    if (parse_opts(argc, argv, &o, &conc) != 0) {
        fprintf(stderr, "usage: tamis-bench-drive -p PORT -c N [-m spamc|socket] [-s SPAMC] "
                        "[-v VERB] [-- spamc args] < paths\n");
        return 64;
    }
    static slot_t slots[MAX_SLOTS];
    struct pollfd pfd[MAX_SLOTS];
    bool input_done = false;
    long long t0 = now_us();
    for (;;) {
        int busy = 0;
        for (int i = 0; i < conc; i++) {
            if (!slots[i].busy && !input_done) {
                char *path = next_path();
                if (!path)
                    input_done = true;
                else
                    begin(&o, &slots[i], path);
            }
            busy += slots[i].busy;
        }
        if (!busy && input_done)
            break;
        for (int i = 0; i < conc; i++) {
            slot_t *s = &slots[i];
            pfd[i].fd = s->busy ? s->fd : -1;
            pfd[i].events = (o.socket_mode && s->req_off < s->req_len) ? POLLOUT : POLLIN;
            pfd[i].revents = 0;
        }
        if (poll(pfd, (nfds_t)conc, 1000) < 0 && errno != EINTR)
            return 70;
        for (int i = 0; i < conc; i++)
            if (slots[i].busy && pfd[i].revents)
                on_ready(&o, &slots[i], pfd[i].revents);
    }
    printf("wall_us %lld\n", now_us() - t0);
    return 0;
}
