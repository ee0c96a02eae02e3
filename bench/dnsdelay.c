/* tamis-bench-dnsdelay: the delaying DNS proxy of bench/network (a distant resolver on loopback).
 *
 * Listens on UDP 127.0.0.1 (an ephemeral port, printed on stdout once it listens), forwards every
 * query at once to the upstream server and sends each answer back DELAY ms after its query came
 * in (or at once if the upstream took longer). Answers are matched to queries by DNS id and
 * question. The kernel's netem would do this without a process, but it is not in every kernel;
 * the asyncio proxy it replaces spent as much CPU per message as a third of tamisd's.
 *
 * Serves until SIGTERM or SIGINT, then prints one JSON line: queries forwarded, answers sent back
 * and the percentiles of the delay each answer really had, in ms.
 *
 *   tamis-bench-dnsdelay -u UPSTREAM_PORT [-d DELAY_MS]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_DGRAM = 4096, MAX_KEY = 272, NBUCKETS = 8192 };

/* One query waiting for its answer, then for its due time. */
typedef struct pending {
    struct pending *next; /* hash chain */
    struct sockaddr_in client;
    long long t0, due; /* ns */
    size_t key_len, ans_len;
    uint8_t key[MAX_KEY]; /* id + question, lower-cased */
    uint8_t *ans;         /* owned once the answer came */
} pending_t;

static pending_t *buckets[NBUCKETS];
static pending_t **heap; /* answered entries by due time */
static size_t heap_len, heap_cap;
static double *delays; /* ms, one per answer sent */
static size_t ndelays, delays_cap;
static long long forwarded, answered;
static volatile sig_atomic_t stop;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The (id, question) key of a DNS message, the same in a query and its answer (a query's EDNS
 * record comes after the question); 0 when it does not parse. */
static size_t question_key(const uint8_t *m, size_t len, uint8_t *key)
{
    if (len < 12)
        return 0;
    size_t i = 12;
    while (i < len && m[i] != 0) {
        if (m[i] & 0xC0)
            return 0; /* no compression in a question */
        i += 1 + (size_t)m[i];
    }
    if (i + 5 > len || 2 + (i + 5 - 12) > MAX_KEY)
        return 0;
    key[0] = m[0];
    key[1] = m[1];
    size_t n = 2;
    for (size_t j = 12; j < i + 5; j++) {
        uint8_t c = m[j];
        key[n++] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    return n;
}

static size_t bucket_of(const uint8_t *key, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % NBUCKETS;
}

static bool heap_push(pending_t *p)
{
    if (heap_len == heap_cap) {
        size_t cap = heap_cap ? heap_cap * 2 : 1024;
        pending_t **bigger = realloc(heap, cap * sizeof *heap);
        if (!bigger)
            return false;
        heap = bigger;
        heap_cap = cap;
    }
    size_t i = heap_len++;
    while (i > 0 && heap[(i - 1) / 2]->due > p->due) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = p;
    return true;
}

static pending_t *heap_pop(void)
{
    pending_t *top = heap[0], *last = heap[--heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_len)
            break;
        if (c + 1 < heap_len && heap[c + 1]->due < heap[c]->due)
            c++;
        if (last->due <= heap[c]->due)
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (heap_len)
        heap[i] = last;
    return top;
}

static void record_delay(double ms)
{
    if (ndelays == delays_cap) {
        size_t cap = delays_cap ? delays_cap * 2 : 65536;
        double *bigger = realloc(delays, cap * sizeof *delays);
        if (!bigger)
            return;
        delays = bigger;
        delays_cap = cap;
    }
    delays[ndelays++] = ms;
}

static void on_query(int front, int back)
{
    uint8_t buf[MAX_DGRAM];
    for (;;) {
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(front, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        pending_t *p = malloc(sizeof *p);
        if (!p)
            return;
        p->key_len = question_key(buf, (size_t)n, p->key);
        if (!p->key_len) {
            free(p);
            continue;
        }
        p->client = from;
        p->t0 = now_ns();
        p->ans = NULL;
        size_t b = bucket_of(p->key, p->key_len);
        p->next = buckets[b];
        buckets[b] = p;
        forwarded++;
        send(back, buf, (size_t)n, 0);
    }
}

static void on_answer(int back, long long delay_ns)
{
    uint8_t buf[MAX_DGRAM], key[MAX_KEY];
    for (;;) {
        ssize_t n = recv(back, buf, sizeof buf, 0);
        if (n < 0)
            return;
        size_t klen = question_key(buf, (size_t)n, key);
        if (!klen)
            continue;
        /* the oldest waiter with this key is last in its chain */
        pending_t **pp = &buckets[bucket_of(key, klen)], **hit = NULL;
        for (; *pp; pp = &(*pp)->next)
            if ((*pp)->key_len == klen && !memcmp((*pp)->key, key, klen))
                hit = pp;
        if (!hit)
            continue;
        pending_t *p = *hit;
        uint8_t *ans = malloc((size_t)n);
        if (!ans)
            continue;
        *hit = p->next;
        memcpy(ans, buf, (size_t)n);
        p->ans = ans;
        p->ans_len = (size_t)n;
        p->due = p->t0 + delay_ns;
        if (!heap_push(p)) {
            free(ans);
            free(p);
        }
    }
}

/* Sends the answers that are due; returns the ns until the next one, or -1 if none waits. */
static long long send_due(int front)
{
    while (heap_len) {
        long long t = now_ns();
        if (heap[0]->due > t)
            return heap[0]->due - t;
        pending_t *p = heap_pop();
        sendto(front, p->ans, p->ans_len, 0, (struct sockaddr *)&p->client, sizeof p->client);
        answered++;
        record_delay((double)(now_ns() - p->t0) / 1e6);
        free(p->ans);
        free(p);
    }
    return -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_summary(void)
{
    printf("{\"forwarded\": %lld, \"answered\": %lld, \"delay_ms\": ", forwarded, answered);
    if (!ndelays) {
        printf("null}\n");
        return;
    }
    qsort(delays, ndelays, sizeof *delays, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < ndelays; i++)
        sum += delays[i];
    const int pcts[] = {50, 90, 99, 100};
    printf("{");
    for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
        size_t k = (size_t)((double)pcts[i] / 100.0 * (double)ndelays);
        printf("\"p%d\": %.2f, ", pcts[i], delays[k < ndelays ? k : ndelays - 1]);
    }
    printf("\"mean\": %.2f}}\n", sum / (double)ndelays);
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int big = 4 << 20;
    if (fd >= 0) {
        /* the FORCE variants pass the sysctl cap when run as root */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    }
    return fd;
}

int main(int argc, char **argv)
{
    int upstream = 0, opt;
    double delay_ms = 50;
    while ((opt = getopt(argc, argv, "u:d:")) != -1) {
        if (opt == 'u')
            upstream = atoi(optarg);
        else if (opt == 'd')
            delay_ms = atof(optarg);
        else
            upstream = -1;
    }
    if (upstream <= 0 || upstream > 65535 || delay_ms < 0) {
        fprintf(stderr, "usage: tamis-bench-dnsdelay -u UPSTREAM_PORT [-d DELAY_MS]\n");
        return 64;
    }
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: ppoll returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct sockaddr_in lo = {.sin_family = AF_INET};
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int front = udp_socket(), back = udp_socket();
    struct sockaddr_in up = lo;
    up.sin_port = htons((uint16_t)upstream);
    socklen_t len = sizeof lo;
    if (front < 0 || back < 0 || bind(front, (struct sockaddr *)&lo, sizeof lo) != 0 ||
        getsockname(front, (struct sockaddr *)&lo, &len) != 0 ||
        connect(back, (struct sockaddr *)&up, sizeof up) != 0) {
        perror("tamis-bench-dnsdelay");
        return 71;
    }
    printf("%d\n", ntohs(lo.sin_port));
    fflush(stdout);

    long long delay_ns = (long long)(delay_ms * 1e6);
    struct pollfd pfd[2] = {{.fd = front, .events = POLLIN}, {.fd = back, .events = POLLIN}};
    while (!stop) {
        long long wait = send_due(front);
        struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        if (ppoll(pfd, 2, wait < 0 ? NULL : &ts, NULL) < 0) {
            if (errno == EINTR)
                continue;
            perror("tamis-bench-dnsdelay: ppoll");
            return 70;
        }
        if (pfd[1].revents & POLLIN)
            on_answer(back, delay_ns);
        if (pfd[0].revents & POLLIN)
            on_query(front, back);
    }
    print_summary();
    return 0;
}
