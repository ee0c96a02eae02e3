/*
 * A real unbound for the C tests that need a DNS server (test_net_live, test_scan_dns): started
 * with posix_spawn on 127.0.0.1 and a free port, serving only the local-zone/local-data lines the
 * test gives; every other name is REFUSED, so unbound never recurses and no packet leaves
 * loopback. Every wait is bounded; stop kills it (SIGKILL after a grace period) and removes its
 * folder. Without /usr/sbin/unbound, start leaves pid at -1 and the tests skip.
 */
#ifndef TAMIS_TEST_UNBOUND_LIVE_H
#define TAMIS_TEST_UNBOUND_LIVE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tamis/core.h"

extern char **environ;

typedef struct {
    pid_t pid; /* -1 = not running */
    int port;
    char dir[64];     /* mkdtemp template on entry to start, e.g. "/tmp/tamis-net-XXXXXX" */
    char servers[64]; /* "127.0.0.1:PORT" */
} unbound_live_t;

static int unbound_live_free_port(void)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(s, (struct sockaddr *)&a, &l) < 0) {
        if (s >= 0)
            close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}

static bool unbound_live_ready(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (s >= 0)
        close(s);
    return ok;
}

/* Starts unbound with lines (NULL-terminated unbound.conf server lines) and, if more is not
 * NULL, whatever more writes into the server section. Up to 5 ports are tried. */
static void unbound_live_start(unbound_live_t *u, const char *const *lines, void (*more)(FILE *f))
{
    u->pid = -1;
    const char *bin = "/usr/sbin/unbound";
    if (access(bin, X_OK) != 0 || !mkdtemp(u->dir))
        return;
    for (int attempt = 0; attempt < 5 && u->pid < 0; attempt++) {
        u->port = unbound_live_free_port();
        char conf[128];
        snprintf(conf, sizeof(conf), "%s/unbound.conf", u->dir);
        FILE *f = fopen(conf, "w");
        if (!f)
            return;
        fprintf(f,
                "server:\n  interface: 127.0.0.1\n  port: %d\n  do-ip6: no\n"
                "  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  directory: \"%s\"\n"
                "  pidfile: \"\"\n  use-syslog: no\n  logfile: \"%s/unbound.log\"\n"
                "  verbosity: 0\n  access-control: 127.0.0.0/8 allow\n"
                "  local-zone: \".\" refuse\n",
                u->port, u->dir, u->dir);
        for (size_t i = 0; lines[i]; i++)
            fprintf(f, "  %s\n", lines[i]);
        if (more)
            more(f);
        fprintf(f, "remote-control:\n  control-enable: no\n");
        fclose(f);
        char *argv[] = {(char *)bin, "-d", "-c", conf, NULL};
        pid_t pid;
        if (posix_spawn(&pid, bin, NULL, NULL, argv, environ) != 0)
            return;
        double until = tamis_now_ms() + 10000;
        while (tamis_now_ms() < until && !unbound_live_ready(u->port)) {
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                pid = -1;
                break;
            }
            usleep(20000);
        }
        if (pid > 0 && unbound_live_ready(u->port))
            u->pid = pid;
        else if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    snprintf(u->servers, sizeof(u->servers), "127.0.0.1:%d", u->port);
}

static void unbound_live_stop(unbound_live_t *u)
{
    if (u->pid > 0) {
        kill(u->pid, SIGCONT);
        kill(u->pid, SIGTERM);
        double until = tamis_now_ms() + 3000;
        while (tamis_now_ms() < until && waitpid(u->pid, NULL, WNOHANG) == 0)
            usleep(10000);
        if (kill(u->pid, 0) == 0) {
            kill(u->pid, SIGKILL);
            waitpid(u->pid, NULL, 0);
        }
        u->pid = -1;
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", u->dir);
    if (strncmp(u->dir, "/tmp/tamis-", 11) == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", u->dir);
}

#endif
