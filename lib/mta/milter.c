/*
 * The milter wire protocol without I/O (spec-postfix §3.2): framing, field splitting and reply
 * builders. Every length comes from the network, so every read is checked against the packet.
 */
#include "tamis/mta.h"

#include <string.h>

static uint32_t get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static void put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

int tamis_mta_milter_frame(const char *p, size_t n, size_t max, tamis_mta_milter_pkt_t *pkt,
                           size_t *used)
{
    if (n < 4)
        return 0;
    uint32_t len = get32(p);
    if (len == 0)
        return TAMIS_EPROTO;
    if (len > max)
        return TAMIS_ELIMIT;
    if (n - 4 < len)
        return 0;
    pkt->cmd = p[4];
    pkt->data = p + 5;
    pkt->len = len - 1;
    *used = 4 + (size_t)len;
    return 1;
}

int tamis_mta_milter_strings(const char *data, size_t len, const char **v, size_t max,
                             size_t *count)
{
    *count = 0;
    size_t i = 0;
    while (i < len) {
        const char *nul = memchr(data + i, '\0', len - i);
        if (!nul)
            return TAMIS_EPROTO;
        if (*count >= max)
            return TAMIS_ELIMIT;
        v[(*count)++] = data + i;
        i = (size_t)(nul - data) + 1;
    }
    return 0;
}

int tamis_mta_milter_optneg(const char *data, size_t len, uint32_t *version, uint32_t *actions,
                            uint32_t *protocol)
{
    if (len < 12)
        return TAMIS_EPROTO;
    *version = get32(data);
    *actions = get32(data + 4);
    *protocol = get32(data + 8);
    return 0;
}

int tamis_mta_milter_connect(const char *data, size_t len, tamis_mta_milter_connect_t *out)
{
    memset(out, 0, sizeof *out);
    const char *nul = memchr(data, '\0', len);
    if (!nul || (size_t)(nul - data) + 2 > len)
        return TAMIS_EPROTO;
    out->host = data;
    size_t i = (size_t)(nul - data) + 1;
    out->family = data[i++];
    out->addr = "";
    if (out->family == 'U')
        return 0;
    if (len - i < 3) /* port and at least the address's NUL */
        return TAMIS_EPROTO;
    out->port = (unsigned)((unsigned char)data[i] << 8 | (unsigned char)data[i + 1]);
    i += 2;
    if (!memchr(data + i, '\0', len - i))
        return TAMIS_EPROTO;
    out->addr = data + i;
    return 0;
}

int tamis_mta_milter_put(tamis_buf_t *out, char cmd, const void *data, size_t len)
{
    if (len >= TAMIS_MTA_MILTER_PACKET_MAX)
        return TAMIS_ELIMIT;
    char hdr[5];
    put32(hdr, (uint32_t)len + 1);
    hdr[4] = cmd;
    tamis_buf_append(out, hdr, 5);
    if (len)
        tamis_buf_append(out, data, len);
    return out->err;
}

int tamis_mta_milter_put_optneg(tamis_buf_t *out, uint32_t version, uint32_t actions,
                                uint32_t protocol)
{
    char d[12];
    put32(d, version);
    put32(d + 4, actions);
    put32(d + 8, protocol);
    return tamis_mta_milter_put(out, 'O', d, sizeof d);
}

int tamis_mta_milter_put_header(tamis_buf_t *out, char cmd, uint32_t index, const char *name,
                                const char *value)
{
    tamis_buf_t d;
    tamis_buf_init(&d, TAMIS_MTA_MILTER_PACKET_MAX - 1);
    if (cmd == 'm' || cmd == 'i') {
        char ix[4];
        put32(ix, index);
        tamis_buf_append(&d, ix, 4);
    }
    tamis_buf_append(&d, name, strlen(name) + 1);
    tamis_buf_append(&d, value, strlen(value) + 1);
    int rc = d.err ? d.err : tamis_mta_milter_put(out, cmd, d.data, d.len);
    tamis_buf_free(&d);
    return rc;
}

int tamis_mta_milter_put_reply(tamis_buf_t *out, const char *code, const char *xcode,
                               const char *text)
{
    tamis_buf_t d;
    tamis_buf_init(&d, 4096);
    tamis_buf_printf(&d, "%s %s ", code, xcode);
    for (const char *p = text; *p && d.len < 1000; p++) {
        if (*p == '%')
            tamis_buf_putc(&d, '%'); /* Sendmail treats the text as a format string */
        tamis_buf_putc(&d, (unsigned char)*p < 0x20 ? ' ' : *p);
    }
    tamis_buf_putc(&d, '\0');
    int rc = d.err ? d.err : tamis_mta_milter_put(out, 'y', d.data, d.len);
    tamis_buf_free(&d);
    return rc;
}
