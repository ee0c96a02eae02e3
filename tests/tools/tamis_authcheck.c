/*
 * tamis-authcheck: a debugging and test driver for lib/auth. Reads one message, runs SPF, DKIM
 * and DMARC through a real resolver (lib/net) and the scan's DNS adapter (tamis_auth_dns_batch),
 * and prints the results, the stock rules' eval functions and the Authentication-Results header:
 *
 *   tamis-authcheck --dns 127.0.0.1:5353 [--ip 192.0.2.1] [--helo mx.example.org]
 *                   [--mailfrom a@example.org] [--now SECONDS] [--timeout-ms 3000]
 *                   [--authserv-id mx.test] [--adsp DOMAIN:LETTER]… [--skip-spf] message.eml
 *
 * Output, one line each: "dkim STATUS d= s= a= bits= reason=", "dmarc STATUS record=0|1
 * policy=…", "adsp LETTER|-", "spf-mailfrom …", "spf-helo …", "eval NAME 0|1" for every eval
 * function, and "header …" (unfolded). Exit status 0, or 2 on a usage or setup error.
 *
 * Threads as in tamisd: the main thread runs the libuv loop and the resolver, a worker thread
 * runs the check and waits on its batch.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "tamis/auth.h"
#include "tamis/msg.h"
#include "tamis/net.h"

typedef struct {
    tamis_net_t *net;
    uv_async_t *wake;
    tamis_msg_t *m;
    tamis_auth_input_t in;
    double timeout_ms;
    const char *authserv;
    atomic_int done;
    int rc;
} job_t;

static const char *const evals[] = {
    "check_dkim_signed",
    "check_dkim_valid",
    "check_dkim_valid_author_sig",
    "check_dkim_valid_envelopefrom",
    "check_dkim_dependable",
    "check_dmarc_pass",
    "check_dmarc_reject",
    "check_dmarc_quarantine",
    "check_dmarc_none",
    "check_dmarc_missing",
    "check_for_spf_pass",
    "check_for_spf_fail",
    "check_for_spf_none",
    "check_for_spf_temperror",
    "check_for_spf_helo_pass",
};

static const char *nz(const char *s)
{
    return s && s[0] ? s : "-";
}

static void *worker(void *arg)
{
    job_t *j = arg;
    tamis_arena_t *arena = tamis_arena_new(0);
    tamis_net_batch_t *b = tamis_net_batch_new(j->net);
    tamis_auth_dns_t dns;
    tamis_auth_t *a = NULL;
    char err[256];
    if (!arena || !b || tamis_auth_dns_batch(&dns, b, tamis_now_ms() + j->timeout_ms, arena) ||
        tamis_auth_start(j->m, &j->in, &dns, arena, &a, err, sizeof(err))) {
        fprintf(stderr, "tamis-authcheck: cannot start the check\n");
        j->rc = 2;
    } else {
        const tamis_auth_result_t *r = tamis_auth_finish(a);
        printf("spf-mailfrom %s %s\n", tamis_auth_status_name(r->spf_mailfrom),
               nz(r->spf_mailfrom_domain));
        printf("spf-helo %s %s\n", tamis_auth_status_name(r->spf_helo), nz(r->spf_helo_domain));
        for (size_t i = 0; i < r->sig_count; i++) {
            const tamis_dkim_sig_t *s = &r->sigs[i];
            printf("dkim %s d=%s s=%s a=%s bits=%u reason=%s\n", tamis_auth_status_name(s->status),
                   nz(s->domain), nz(s->selector), nz(s->algorithm), s->key_bits, nz(s->reason));
        }
        printf("adsp %c\n", r->adsp ? r->adsp : '-');
        static const char *const pol[] = {"none", "quarantine", "reject"};
        printf("dmarc %s checked=%d record=%d policy=%s from=%s\n",
               tamis_auth_status_name(r->dmarc), r->dmarc_checked, r->dmarc_has_record,
               pol[r->dmarc_policy], nz(r->author_domain));
        for (size_t i = 0; i < sizeof(evals) / sizeof(evals[0]); i++) {
            bool known;
            bool hit = tamis_auth_eval(r, evals[i], NULL, 0, &known);
            printf("eval %s %d\n", evals[i], hit ? 1 : 0);
        }
        tamis_buf_t h;
        tamis_buf_init(&h, 0);
        tamis_auth_results_header(r, j->authserv, &h);
        printf("header ");
        for (size_t i = 0; i < h.len; i++) {
            if (h.data[i] == '\n' && h.data[i + 1] == '\t') {
                putchar(' ');
                i++;
            } else {
                putchar(h.data[i]);
            }
        }
        printf("\n");
        tamis_buf_free(&h);
    }
    fflush(stdout);
    tamis_net_batch_free(b);
    tamis_arena_free(arena);
    atomic_store(&j->done, 1);
    uv_async_send(j->wake);
    return NULL;
}

static void on_wake(uv_async_t *h)
{
    (void)h;
}

static void on_close(uv_handle_t *h)
{
    (void)h;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *file = NULL;
    job_t j;
    memset(&j, 0, sizeof(j));
    j.timeout_ms = 3000;
    j.authserv = "tamis.test";
    static tamis_auth_adsp_t adsp[8];
    size_t nadsp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dns") && v)
            server = v, i++;
        else if (!strcmp(a, "--ip") && v)
            j.in.client_ip = v, i++;
        else if (!strcmp(a, "--helo") && v)
            j.in.helo = v, i++;
        else if (!strcmp(a, "--mailfrom") && v)
            j.in.envelope_from = v, i++;
        else if (!strcmp(a, "--now") && v)
            j.in.now = atof(v), i++;
        else if (!strcmp(a, "--timeout-ms") && v)
            j.timeout_ms = atof(v), i++;
        else if (!strcmp(a, "--authserv-id") && v)
            j.authserv = v, i++;
        else if (!strcmp(a, "--adsp") && v && strchr(v, ':') && nadsp < 8) {
            /* DOMAIN:LETTER, an adsp_override entry */
            char *d = strdup(v);
            char *colon = strrchr(d, ':');
            *colon = '\0';
            adsp[nadsp].domain = d;
            adsp[nadsp++].practice = colon[1];
            i++;
        } else if (!strcmp(a, "--skip-spf"))
            j.in.skip_spf = true;
        else if (a[0] != '-' && !file)
            file = a;
        else {
            fprintf(stderr, "usage: tamis-authcheck --dns ADDR[:PORT] [options] message.eml\n");
            return 2;
        }
    }
    j.in.adsp_override = adsp;
    j.in.adsp_override_count = nadsp;
    if (!server || !file) {
        fprintf(stderr, "usage: tamis-authcheck --dns ADDR[:PORT] [options] message.eml\n");
        return 2;
    }
    char err[256];
    char *data;
    size_t len;
    if (tamis_read_file(file, 64u << 20, &data, &len, err, sizeof(err)) ||
        tamis_msg_parse(data, len, NULL, &j.m, err, sizeof(err))) {
        fprintf(stderr, "tamis-authcheck: %s\n", err);
        return 2;
    }
    free(data);
    uv_loop_t loop;
    uv_loop_init(&loop);
    tamis_net_opts_t o;
    tamis_net_opts_default(&o);
    o.servers = server;
    o.timeout_ms = 500;
    o.tries = 2;
    if (tamis_net_new(&loop, &o, &j.net, err, sizeof(err))) {
        fprintf(stderr, "tamis-authcheck: %s\n", err);
        return 2;
    }
    uv_async_t wake;
    uv_async_init(&loop, &wake, on_wake);
    j.wake = &wake;
    pthread_t th;
    if (pthread_create(&th, NULL, worker, &j) != 0)
        return 2;
    while (!atomic_load(&j.done))
        uv_run(&loop, UV_RUN_ONCE);
    pthread_join(th, NULL);
    tamis_net_free(j.net);
    uv_close((uv_handle_t *)&wake, on_close);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    tamis_msg_free(j.m);
    return j.rc;
}
