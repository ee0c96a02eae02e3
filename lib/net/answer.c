/*
 * DNS answers: the bounded parser of raw responses and the immutable, reference-counted answer
 * objects that the cache, the waiters and the worker threads share.
 *
 * c-ares 1.18's ares_parse_*_reply give no TTL for TXT and NS and drop the authority section, so
 * we parse the response ourselves; every offset is checked against the message length and name
 * compression pointers are followed a bounded number of times. The fuzzer (fuzz/fuzz_dns.c)
 * drives this file.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"

#define MAX_NAME 255
#define MAX_JUMPS 64 /* compression pointers followed for one name */

/* The allocation behind a tamis_net_answer_t: the counter, then the public part, then arrays
 * and strings in the same block. */
typedef struct {
    atomic_uint refs;
    tamis_net_answer_t pub;
    _Alignas(max_align_t) unsigned char data[];
} answer_t;

static answer_t *impl_of(const tamis_net_answer_t *a)
{
    return (answer_t *)((char *)a - offsetof(answer_t, pub));
}

const tamis_net_answer_t *tamis_net_answer_ref(const tamis_net_answer_t *a)
{
    if (a)
        atomic_fetch_add_explicit(&impl_of(a)->refs, 1, memory_order_relaxed);
    return a;
}

void tamis_net_answer_unref(const tamis_net_answer_t *a)
{
    if (!a)
        return;
    answer_t *x = impl_of(a);
    if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1)
        free(x);
}

const char *tamis_net_status_name(tamis_net_status_t s)
{
    switch (s) {
    case TAMIS_NET_OK:
        return "ok";
    case TAMIS_NET_NXDOMAIN:
        return "nxdomain";
    case TAMIS_NET_SERVFAIL:
        return "servfail";
    case TAMIS_NET_REFUSED:
        return "refused";
    case TAMIS_NET_TIMEOUT:
        return "timeout";
    case TAMIS_NET_ERROR:
        return "error";
    case TAMIS_NET_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

static answer_t *answer_alloc(size_t extra)
{
    answer_t *x = calloc(1, sizeof(*x) + extra);
    if (x)
        atomic_init(&x->refs, 1);
    return x;
}

bool tamis__net_type_ok(tamis_net_type_t type)
{
    switch (type) {
    case TAMIS_NET_A:
    case TAMIS_NET_NS:
    case TAMIS_NET_PTR:
    case TAMIS_NET_MX:
    case TAMIS_NET_TXT:
    case TAMIS_NET_AAAA:
        return true;
    }
    return false;
}

/* Out-of-memory stand-ins: never freed (their count starts far from zero), shared read-only. */
static answer_t oom_answers[] = {
    {1u << 30, {TAMIS_NET_ERROR, TAMIS_NET_A, 0, 0, NULL, NULL, NULL}},
    {1u << 30, {TAMIS_NET_ERROR, TAMIS_NET_NS, 0, 0, NULL, NULL, NULL}},
    {1u << 30, {TAMIS_NET_ERROR, TAMIS_NET_PTR, 0, 0, NULL, NULL, NULL}},
    {1u << 30, {TAMIS_NET_ERROR, TAMIS_NET_MX, 0, 0, NULL, NULL, NULL}},
    {1u << 30, {TAMIS_NET_ERROR, TAMIS_NET_TXT, 0, 0, NULL, NULL, NULL}},
    {1u << 30, {TAMIS_NET_ERROR, TAMIS_NET_AAAA, 0, 0, NULL, NULL, NULL}},
};

const tamis_net_answer_t *tamis__net_answer_status(tamis_net_type_t type, tamis_net_status_t status,
                                                   uint32_t ttl)
{
    answer_t *x = answer_alloc(0);
    if (!x) {
        for (size_t i = 0; i < sizeof(oom_answers) / sizeof(*oom_answers); i++)
            if (oom_answers[i].pub.type == type)
                return &oom_answers[i].pub;
        return &oom_answers[0].pub;
    }
    x->pub.type = type;
    x->pub.status = status;
    x->pub.ttl = ttl;
    return &x->pub;
}

int tamis__net_name_canon(const char *name, char *out, size_t outlen)
{
    if (!name || outlen < MAX_NAME + 1)
        return TAMIS_EINVAL;
    size_t n = strlen(name);
    while (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return TAMIS_EINVAL;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return TAMIS_EINVAL;
            label = 0;
        } else {
            /* '\\' would be an escape to c-ares; whitespace and controls are never valid. */
            if (c <= 0x20 || c >= 0x7f || c == '\\')
                return TAMIS_EINVAL;
            if (++label > 63)
                return TAMIS_EINVAL;
        }
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    return 0;
}

/* ---- the wire format ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *b;
    size_t len;
} msg_t;

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Advances *off past the (possibly compressed) name there. */
static int skip_name(const msg_t *m, size_t *off)
{
    size_t o = *off;
    for (size_t labels = 0; labels < 128; labels++) {
        if (o >= m->len)
            return TAMIS_EPARSE;
        uint8_t c = m->b[o];
        if (c == 0) {
            *off = o + 1;
            return 0;
        }
        if ((c & 0xc0) == 0xc0) {
            if (o + 2 > m->len)
                return TAMIS_EPARSE;
            *off = o + 2;
            return 0;
        }
        if (c & 0xc0)
            return TAMIS_EPARSE; /* 0x40/0x80 label types are obsolete */
        o += 1 + (size_t)c;
    }
    return TAMIS_EPARSE;
}

/* Expands the name at off into out (lower case, dotted, no trailing dot, NUL-terminated);
 * *outn = its length. out must hold MAX_NAME + 1 bytes. Unprintable bytes become '?'. */
static int read_name(const msg_t *m, size_t off, char *out, size_t *outn)
{
    size_t n = 0;
    unsigned jumps = 0;
    for (;;) {
        if (off >= m->len)
            return TAMIS_EPARSE;
        uint8_t c = m->b[off];
        if (c == 0)
            break;
        if ((c & 0xc0) == 0xc0) {
            if (off + 2 > m->len || ++jumps > MAX_JUMPS)
                return TAMIS_EPARSE;
            off = get16(m->b + off) & 0x3fff;
            continue;
        }
        if (c & 0xc0)
            return TAMIS_EPARSE;
        if (off + 1 + c > m->len)
            return TAMIS_EPARSE;
        if (n + (n ? 1 : 0) + c > MAX_NAME)
            return TAMIS_EPARSE;
        if (n)
            out[n++] = '.';
        for (size_t i = 0; i < c; i++) {
            unsigned char ch = m->b[off + 1 + i];
            out[n++] = (ch > 0x20 && ch < 0x7f) ? (char)tolower(ch) : '?';
        }
        off += 1 + (size_t)c;
    }
    out[n] = '\0';
    *outn = n;
    return 0;
}

/* The joined length of a TXT rdata (capped), or TAMIS_EPARSE if its strings overrun it. */
static int txt_len(const uint8_t *p, size_t rdlen, size_t *out)
{
    size_t i = 0, total = 0;
    while (i < rdlen) {
        size_t l = p[i];
        if (i + 1 + l > rdlen)
            return TAMIS_EPARSE;
        total += l;
        i += 1 + l;
    }
    *out = total > TAMIS_NET_MAX_TXT ? TAMIS_NET_MAX_TXT : total;
    return 0;
}

typedef struct {
    size_t off, len; /* rdata; for MX, past the preference */
    uint16_t pref;   /* MX preference */
} rec_t;

int tamis_net_answer_parse(const uint8_t *buf, size_t len, tamis_net_type_t type,
                           const tamis_net_answer_t **out)
{
    if (!out || (!buf && len))
        return TAMIS_EINVAL;
    *out = NULL;
    if (!tamis__net_type_ok(type))
        return TAMIS_EINVAL;
    msg_t m = {buf, len};
    if (len < 12)
        return TAMIS_EPARSE;
    unsigned rcode = buf[3] & 0x0f;
    unsigned qd = get16(buf + 4), an = get16(buf + 6), ns = get16(buf + 8);
    size_t off = 12;
    for (unsigned i = 0; i < qd; i++) {
        if (skip_name(&m, &off) < 0 || off + 4 > len)
            return TAMIS_EPARSE;
        off += 4;
    }

    tamis_net_status_t status = rcode == 0   ? TAMIS_NET_OK
                                : rcode == 2 ? TAMIS_NET_SERVFAIL
                                : rcode == 3 ? TAMIS_NET_NXDOMAIN
                                : rcode == 5 ? TAMIS_NET_REFUSED
                                             : TAMIS_NET_ERROR;
    rec_t recs[TAMIS_NET_MAX_RECORDS];
    size_t nrec = 0, extra = 0;
    uint32_t ttl = UINT32_MAX;
    char name[MAX_NAME + 1];
    /* Pass 1: find the records and the size of what they expand to. */
    for (unsigned i = 0; i < an; i++) {
        if (skip_name(&m, &off) < 0 || off + 10 > len)
            return TAMIS_EPARSE;
        unsigned rtype = get16(buf + off), rclass = get16(buf + off + 2);
        uint32_t rttl = get32(buf + off + 4);
        size_t rdlen = get16(buf + off + 8);
        off += 10;
        if (off + rdlen > len)
            return TAMIS_EPARSE;
        if (rttl & 0x80000000u)
            rttl = 0; /* RFC 2181 §8 */
        if (status == TAMIS_NET_OK && rtype == type && rclass == 1 &&
            nrec < TAMIS_NET_MAX_RECORDS) {
            size_t need = 0;
            size_t roff = off, rlen = rdlen;
            uint16_t pref = 0;
            if (type == TAMIS_NET_A) {
                if (rdlen != 4)
                    return TAMIS_EPARSE;
                need = sizeof(uint32_t);
            } else if (type == TAMIS_NET_AAAA) {
                if (rdlen != 16)
                    return TAMIS_EPARSE;
                need = 16;
            } else if (type == TAMIS_NET_TXT) {
                size_t l;
                if (txt_len(buf + off, rdlen, &l) < 0)
                    return TAMIS_EPARSE;
                need = sizeof(char *) + l + 1;
            } else {
                /* NS, PTR: a name; MX: a 16-bit preference, then a name. */
                if (type == TAMIS_NET_MX) {
                    if (rdlen < 3)
                        return TAMIS_EPARSE;
                    pref = get16(buf + off);
                    roff += 2;
                    rlen -= 2;
                }
                size_t l, o2 = roff;
                if (read_name(&m, roff, name, &l) < 0 || skip_name(&m, &o2) < 0 || o2 > roff + rlen)
                    return TAMIS_EPARSE;
                need = sizeof(char *) + l + 1;
            }
            recs[nrec].off = roff;
            recs[nrec].len = rlen;
            recs[nrec].pref = pref;
            nrec++;
            extra += need;
            if (rttl < ttl)
                ttl = rttl;
        }
        off += rdlen;
    }
    if (nrec == 0) {
        /* Negative answer: RFC 2308 §5, the SOA's TTL capped by its minimum field. */
        ttl = 0;
        for (unsigned i = 0; i < ns && (status == TAMIS_NET_OK || status == TAMIS_NET_NXDOMAIN);
             i++) {
            if (skip_name(&m, &off) < 0 || off + 10 > len)
                return TAMIS_EPARSE;
            unsigned rtype = get16(buf + off);
            uint32_t rttl = get32(buf + off + 4);
            size_t rdlen = get16(buf + off + 8);
            off += 10;
            if (off + rdlen > len)
                return TAMIS_EPARSE;
            if (rtype == 6) {
                size_t o2 = off;
                if (skip_name(&m, &o2) < 0 || skip_name(&m, &o2) < 0 || o2 + 20 > off + rdlen)
                    return TAMIS_EPARSE;
                uint32_t minimum = get32(buf + o2 + 16);
                if (rttl & 0x80000000u)
                    rttl = 0;
                if (minimum & 0x80000000u)
                    minimum = 0;
                ttl = rttl < minimum ? rttl : minimum;
                break;
            }
            off += rdlen;
        }
    }

    answer_t *x = answer_alloc(extra);
    if (!x)
        return TAMIS_ENOMEM;
    x->pub.status = status;
    x->pub.type = type;
    x->pub.ttl = ttl;
    x->pub.count = nrec;
    /* MX exchanges in order of preference (stable: equal preferences keep the answer's order). */
    if (type == TAMIS_NET_MX) {
        for (size_t i = 1; i < nrec; i++) {
            rec_t r = recs[i];
            size_t j = i;
            for (; j > 0 && recs[j - 1].pref > r.pref; j--)
                recs[j] = recs[j - 1];
            recs[j] = r;
        }
    }
    /* Pass 2: fill the block; pass 1 validated every record, so nothing fails here. */
    if (type == TAMIS_NET_A) {
        uint32_t *addrs = (uint32_t *)x->data;
        for (size_t i = 0; i < nrec; i++)
            addrs[i] = get32(buf + recs[i].off);
        x->pub.addrs = nrec ? addrs : NULL;
    } else if (type == TAMIS_NET_AAAA) {
        uint8_t(*addrs6)[16] = (uint8_t(*)[16])x->data;
        for (size_t i = 0; i < nrec; i++)
            memcpy(addrs6[i], buf + recs[i].off, 16);
        x->pub.addrs6 = nrec ? (const uint8_t(*)[16])addrs6 : NULL;
    } else {
        char **strs = (char **)x->data;
        char *p = (char *)(strs + nrec);
        for (size_t i = 0; i < nrec; i++) {
            strs[i] = p;
            if (type == TAMIS_NET_TXT) {
                const uint8_t *r = buf + recs[i].off;
                size_t j = 0, w = 0;
                while (j < recs[i].len) {
                    size_t l = r[j];
                    for (size_t k = 0; k < l && w < TAMIS_NET_MAX_TXT; k++) {
                        char c = (char)r[j + 1 + k];
                        p[w++] = c ? c : '?';
                    }
                    j += 1 + l;
                }
                p[w] = '\0';
                p += w + 1;
            } else {
                size_t l = 0;
                (void)read_name(&m, recs[i].off, p, &l);
                p += l + 1;
            }
        }
        x->pub.strs = nrec ? (const char *const *)strs : NULL;
    }
    *out = &x->pub;
    return 0;
}
