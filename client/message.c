/*
 * tamisc's message input and output, as libspamc's message_read / message_write / message_dump.
 *
 * The original bytes are kept untouched (BSMTP unstuffing works on a copy), so the safe fallback
 * can always write back exactly what came in: what was read, then the rest of stdin.
 */
#include "tamisc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tamisc_full_write(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to max bytes (until EOF); the buffer grows as data arrives, never past max. */
static int read_all(int fd, size_t max, char **out, size_t *out_len)
{
    size_t cap = max < 65536 ? max : 65536, len = 0;
    char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return TAMIS_EX_OSERR;
    while (len < max) {
        if (len == cap) {
            size_t ncap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return TAMIS_EX_OSERR;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    *out = buf;
    *out_len = len;
    return TAMIS_EX_OK;
}

/* Finds "\nDATA\n" (case-insensitive, optional CR) exactly as libspamc does; returns the offset
 * of the message or 0 if absent. */
static size_t find_data(const char *raw, size_t len)
{
    const char *p = raw;
    size_t p_len;
    while ((p_len = len - (size_t)(p - raw)) > 8) {
        const char *q = memchr(p, '\n', p_len - 8);
        if (!q)
            break;
        q++;
        if ((q[0] | 0x20) == 'd' && (q[1] | 0x20) == 'a' && (q[2] | 0x20) == 't' &&
            (q[3] | 0x20) == 'a') {
            q += 4;
            if (q[0] == '\r')
                ++q;
            if (*(q++) == '\n')
                return (size_t)(q - raw);
        }
        p = q;
    }
    return 0;
}

static bool lone_dot(const char *s, size_t i, size_t len)
{
    return i + 1 == len || (i + 1 < len && s[i + 1] == '\n') ||
           (i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n');
}

/* Copies the DATA section without dot-stuffing, up to the lone dot. */
static int parse_bsmtp(tamisc_msg_t *m)
{
    size_t start = find_data(m->raw, m->raw_len);
    if (!start)
        return TAMIS_EX_DATAERR;
    const char *s = m->raw + start;
    size_t len = m->raw_len - start, j = 0;
    char *msg = malloc(len ? len : 1);
    if (!msg)
        return TAMIS_EX_OSERR;
    char prev = '\n';
    for (size_t i = 0; i < len; i++) {
        if (prev == '\n' && s[i] == '.') {
            if (lone_dot(s, i, len)) {
                m->bsmtp = true;
                m->msg = msg;
                m->msg_len = j;
                m->pre_len = start;
                m->post_off = start + i;
                return TAMIS_EX_OK;
            }
            if (i + 1 < len && s[i + 1] == '.') {
                prev = '.';
                continue;
            }
        }
        prev = s[i];
        msg[j++] = s[i];
    }
    free(msg);
    return TAMIS_EX_DATAERR;
}

int tamisc_msg_read(int fd, unsigned flags, long max_size, tamisc_msg_t *m)
{
    memset(m, 0, sizeof *m);
    size_t max = max_size > 0 ? (size_t)max_size : 0;
    int rc = read_all(fd, max + 1, &m->raw, &m->raw_len);
    if (rc != TAMIS_EX_OK)
        return rc;
    if (m->raw_len == 0) {
        free(m->raw);
        m->raw = NULL;
        return TAMIS_EX_IOERR;
    }
    m->read_done = true;
    if (m->raw_len > max)
        return TAMISC_EX_TOOBIG;
    if (flags & TAMISC_BSMTP)
        return parse_bsmtp(m);
    m->msg = m->raw;
    m->msg_len = m->raw_len;
    return TAMIS_EX_OK;
}

/* libspamc restuffs only "\n." (not a dot at the very start). */
static int write_stuffed(int fd, const char *out, size_t len)
{
    size_t from = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (out[i] == '\n' && out[i + 1] == '.') {
            if (tamisc_full_write(fd, out + from, i + 2 - from) < 0)
                return -1;
            if (tamisc_full_write(fd, ".", 1) < 0)
                return -1;
            from = i + 2;
            i++;
        }
    }
    return tamisc_full_write(fd, out + from, len - from);
}

int tamisc_msg_write(int fd, const tamisc_msg_t *m, const char *out, size_t out_len)
{
    if (!m->bsmtp)
        return tamisc_full_write(fd, out, out_len);
    if (tamisc_full_write(fd, m->raw, m->pre_len) < 0 || write_stuffed(fd, out, out_len) < 0)
        return -1;
    return tamisc_full_write(fd, m->raw + m->post_off, m->raw_len - m->post_off);
}

void tamisc_msg_dump(int in_fd, int out_fd, const tamisc_msg_t *m)
{
    char buf[8192];
    if (m->read_done) {
        if (m->msg)
            tamisc_msg_write(out_fd, m, m->msg, m->msg_len);
        else
            tamisc_full_write(out_fd, m->raw, m->raw_len);
    }
    for (;;) {
        ssize_t r = read(in_fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (tamisc_full_write(out_fd, buf, (size_t)r) < 0)
            break;
    }
}
