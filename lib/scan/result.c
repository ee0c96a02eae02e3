/*
 * result: the read side of a finished scan: verdict accessors, display strings, SYMBOLS, REPORT,
 * PROCESS/HEADERS bodies and the log line. Nothing here calls lib/msg or lib/rules, so the whole
 * output side can be tested on a hand-made result (see scan_internal.h).
 *
 * The report and the preview are built on first use and cached in the scan's arena; the header
 * says a result is read by one thread at a time, which makes that caching safe.
 */
#include "scan_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const tamis_msg_t *tamis_scan_msg(const tamis_scan_t *s)
{
    return s ? s->msg : NULL;
}

double tamis_scan_score(const tamis_scan_t *s)
{
    return s ? s->score : 0;
}

double tamis_scan_required(const tamis_scan_t *s)
{
    return s ? s->required : 0;
}

bool tamis_scan_is_spam(const tamis_scan_t *s)
{
    return s && s->is_spam;
}

size_t tamis_scan_hit_count(const tamis_scan_t *s)
{
    return s ? s->result.hit_count : 0;
}

const tamis_hit_t *tamis_scan_hit(const tamis_scan_t *s, size_t i)
{
    return s && i < s->result.hit_count ? &s->result.hits[i] : NULL;
}

const tamis_rules_result_t *tamis_scan_result(const tamis_scan_t *s)
{
    return s ? &s->result : NULL;
}

bool tamis_scan_bayes(const tamis_scan_t *s, tamis_bayes_result_t *out)
{
    if (!s || !s->bayes.classified)
        return false;
    if (out)
        *out = s->bayes.res;
    return true;
}

const char *tamis_scan_autolearn(const tamis_scan_t *s)
{
    return s && s->bayes.autolearn ? s->bayes.autolearn : "disabled";
}

double tamis_scan_elapsed_ms(const tamis_scan_t *s)
{
    return s ? s->elapsed_ms : 0;
}

const char *tamis_scan_score_str(const tamis_scan_t *s)
{
    return s && s->score_str ? s->score_str : "0.0";
}

const char *tamis_scan_required_str(const tamis_scan_t *s)
{
    return s && s->required_str ? s->required_str : "0.0";
}

static int cmp_hit_name(const void *a, const void *b)
{
    return strcmp((*(const tamis_hit_t *const *)a)->name, (*(const tamis_hit_t *const *)b)->name);
}

int tamis_scan_symbols(const tamis_scan_t *s, tamis_buf_t *out)
{
    if (!s || !out)
        return TAMIS_EINVAL;
    size_t n = s->result.hit_count;
    const tamis_hit_t **v = malloc((n ? n : 1) * sizeof(*v));
    if (!v)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = &s->result.hits[i];
    qsort(v, n, sizeof(*v), cmp_hit_name);
    for (size_t i = 0; i < n; i++) {
        if (i)
            tamis_buf_putc(out, ',');
        tamis_buf_puts(out, v[i]->name);
    }
    free(v);
    return out->err;
}

int tamis_scan_report(const tamis_scan_t *s, tamis_buf_t *out)
{
    if (!s || !out)
        return TAMIS_EINVAL;
    const char *r = tamis__scan_get_report((tamis_scan_t *)s);
    if (!r)
        return TAMIS_ENOMEM;
    return tamis_buf_puts(out, r);
}

int tamis_scan_rewrite(const tamis_scan_t *s, tamis_buf_t *out)
{
    if (!s || !out)
        return TAMIS_EINVAL;
    return tamis__scan_rewrite((tamis_scan_t *)s, out);
}

int tamis_scan_headers(const tamis_scan_t *s, tamis_buf_t *out)
{
    if (!s || !out)
        return TAMIS_EINVAL;
    size_t start = out->len;
    int rc = tamis__scan_rewrite((tamis_scan_t *)s, out);
    if (rc)
        return rc;
    /* spamd: s/(\015?\012\015?\012).*$/$1/s */
    const char *d = out->data + start;
    size_t n = out->len - start;
    for (size_t i = 0; i < n; i++) {
        if (d[i] != '\n')
            continue;
        size_t k = i + 1;
        if (k < n && d[k] == '\r')
            k++;
        if (k < n && d[k] == '\n') {
            out->len = start + k + 1;
            out->data[out->len] = '\0';
            break;
        }
    }
    return 0;
}

/* spamd's mid=: the Message-Id with blanks, controls and commas made '_'. */
static void put_mid(const tamis_scan_t *s, tamis_buf_t *out)
{
    const char *m = tamis__pristine_header_unfolded(&s->pr, "Message-Id", s->arena);
    if (!m || !*m) {
        tamis_buf_puts(out, "(unknown)");
        return;
    }
    for (const unsigned char *p = (const unsigned char *)m; *p; p++)
        tamis_buf_putc(out, (char)(*p <= 0x20 || *p == ',' || *p == 0x7f ? '_' : *p));
}

int tamis_scan_log_line(const tamis_scan_t *s, const char *id, tamis_buf_t *out)
{
    if (!s || !out)
        return TAMIS_EINVAL;
    tamis_buf_printf(out, "result: %c %2d - ", s->is_spam ? 'Y' : '.', (int)s->score);
    tamis_scan_symbols(s, out);
    tamis_buf_printf(out, " scantime=%.1f,size=%zu,user=%s,required_score=%s,rhost=%s,raddr=%s,",
                     s->elapsed_ms / 1000.0, s->len, s->user ? s->user : "",
                     tamis_scan_required_str(s), s->remote_host ? s->remote_host : "localhost",
                     s->remote_addr ? s->remote_addr : "127.0.0.1");
    tamis_buf_puts(out, "mid=");
    put_mid(s, out);
    if (id && *id)
        tamis_buf_printf(out, ",id=%s", id);
    tamis_buf_printf(out, ",autolearn=%s,ms=%.1f", tamis_scan_autolearn(s), s->elapsed_ms);
    return out->err;
}

void tamis_scan_dns(const tamis_scan_t *s, tamis_scan_dns_t *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    out->blocked_zones = "";
    if (s) {
        *out = s->dns;
        if (!out->blocked_zones)
            out->blocked_zones = "";
    }
}
