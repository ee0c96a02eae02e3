/*
 * --allowed-ips: which peers may talk to tamisd (spamd's -A). Entries are CIDR blocks; a peer
 * outside all of them is closed without a reply. IPv4-mapped IPv6 peers (a dual-stack listener)
 * are matched as IPv4.
 */
#include "tamisd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* spamd also accepts dotted prefixes such as "192.168." or "10." */
static int parse_partial_v4(const char *s, tamisd_acl_entry_t *e)
{
    unsigned octets = 0;
    const char *p = s;
    memset(e, 0, sizeof *e);
    while (*p && octets < 4) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v > 255)
            return -1;
        e->addr[octets++] = (unsigned char)v;
        if (*end == '\0')
            break;
        if (*end != '.')
            return -1;
        p = end + 1;
    }
    if (*p && octets == 4)
        return -1;
    e->family = AF_INET;
    e->prefix = octets * 8;
    return 0;
}

int tamisd_acl_add(tamisd_acl_t *acl, const char *text)
{
    if (acl->count >= TAMISD_MAX_ACL)
        return -1;
    char buf[128];
    if (strlen(text) >= sizeof buf)
        return -1;
    memcpy(buf, text, strlen(text) + 1);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        prefix = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || prefix < 0)
            return -1;
    }
    char *host = buf;
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        host++;
    }
    tamisd_acl_entry_t e;
    memset(&e, 0, sizeof e);
    if (inet_pton(AF_INET, host, e.addr) == 1) {
        e.family = AF_INET;
        e.prefix = 32;
    } else if (inet_pton(AF_INET6, host, e.addr) == 1) {
        e.family = AF_INET6;
        e.prefix = 128;
    } else if (parse_partial_v4(host, &e) != 0) {
        return -1;
    }
    if (prefix >= 0) {
        if ((unsigned long)prefix > (e.family == AF_INET ? 32u : 128u))
            return -1;
        e.prefix = (unsigned)prefix;
    }
    acl->items[acl->count++] = e;
    return 0;
}

static bool prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

/* Normalises sa to (family, 16-byte address); IPv4-mapped IPv6 becomes IPv4. */
static int peer_bytes(const struct sockaddr *sa, unsigned char *out)
{
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, a->s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(out, a->s6_addr, 16);
        return AF_INET6;
    }
    return AF_UNIX;
}

bool tamisd_acl_allows(const tamisd_acl_t *acl, const struct sockaddr *sa)
{
    unsigned char addr[16] = {0};
    int family = peer_bytes(sa, addr);
    if (family == AF_UNIX)
        return true; /* spamd treats Unix-socket peers as localhost */
    for (size_t i = 0; i < acl->count; i++) {
        const tamisd_acl_entry_t *e = &acl->items[i];
        if (e->family == family && prefix_match(addr, e->addr, e->prefix))
            return true;
    }
    return false;
}

void tamisd_addr_str(const struct sockaddr *sa, char *buf, size_t len, int *port)
{
    unsigned char addr[16] = {0};
    int family = peer_bytes(sa, addr);
    *port = 0;
    if (family == AF_UNIX) {
        snprintf(buf, len, "127.0.0.1");
        return;
    }
    if (!inet_ntop(family, addr, buf, (socklen_t)len))
        snprintf(buf, len, "?");
    if (sa->sa_family == AF_INET)
        *port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    else
        *port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}
