/*
 * The Tamis side of tests/integration/test_spf.py: SPF check_host() against a real DNS server.
 *
 * The Python test starts unbound with the case table's records, writes the cases to a file and
 * runs this program with
 *   TAMIS_SPF_DNS=127.0.0.1:PORT   the server
 *   TAMIS_SPF_CASES=FILE           one case per line: id TAB ip TAB sender TAB helo TAB expected
 *   TAMIS_SPF_OUT=FILE             written here: id TAB result, one line per case
 * Each case runs on a fresh batch of a real tamis_net resolver (cache off, so a paused server is
 * really asked) on a private libuv loop, through a tamis_auth_dns_t adapter that waits with
 * tamis_net_batch_run on this (the loop) thread. The domain checked is the sender's, or the HELO
 * when the sender is empty (pyspf's convention, which the Python side uses).
 *
 * Without TAMIS_SPF_DNS (a plain ctest run) the test is skipped. It fails when a result differs
 * from the case's expected one; the Python test compares the results with pyspf's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "../../lib/auth/auth_int.h"

static const char *status_name(tamis_auth_status_t s)
{
    static const char *const names[] = {"none",    "pass",      "fail",     "softfail",
                                        "neutral", "temperror", "permerror"};
    return (unsigned)s < sizeof(names) / sizeof(*names) ? names[s] : "?";
}

typedef struct {
    tamis_net_batch_t *b;
    uv_loop_t *loop;
    double deadline;
} adapter_t;

static int ad_start(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    adapter_t *a = ctx;
    return tamis_net_batch_add(a->b, name, type, slot);
}

static const tamis_net_answer_t *ad_wait(void *ctx, size_t slot)
{
    adapter_t *a = ctx;
    const tamis_net_answer_t *ans = tamis_net_batch_answer(a->b, slot);
    if (!ans) {
        /* Runs the loop until every started lookup is answered (they overlap) or the deadline. */
        tamis_net_batch_run(a->b, a->loop, a->deadline);
        ans = tamis_net_batch_answer(a->b, slot);
    }
    return ans;
}

static char *field(char **p)
{
    char *f = *p;
    char *t = strchr(f, '\t');
    if (t) {
        *t = '\0';
        *p = t + 1;
    } else {
        f[strcspn(f, "\r\n")] = '\0';
        *p = f + strlen(f);
    }
    return f;
}

static void test_cases(void **state)
{
    (void)state;
    const char *server = getenv("TAMIS_SPF_DNS");
    const char *cases = getenv("TAMIS_SPF_CASES");
    const char *outp = getenv("TAMIS_SPF_OUT");
    if (!server || !cases || !outp) {
        print_message("skipped: run by tests/integration/test_spf.py (TAMIS_SPF_DNS unset)\n");
        skip();
    }
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tamis_net_opts_t o;
    tamis_net_opts_default(&o);
    o.servers = server;
    o.timeout_ms = 500;
    o.tries = 2;
    o.deadline_ms = 1500;
    o.cache_entries = 0;
    tamis_net_t *net;
    char err[256] = "";
    if (tamis_net_new(&loop, &o, &net, err, sizeof(err)) != 0)
        fail_msg("tamis_net_new: %s", err);

    FILE *in = fopen(cases, "r");
    FILE *out = fopen(outp, "w");
    assert_non_null(in);
    assert_non_null(out);
    char line[4096];
    unsigned n = 0, bad = 0;
    while (fgets(line, sizeof(line), in)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *p = line;
        char *id = field(&p), *ip = field(&p), *sender = field(&p), *helo = field(&p);
        char *want = field(&p);
        const char *at = strrchr(sender, '@');
        const char *domain = *sender ? (at ? at + 1 : sender) : helo;

        tamis_arena_t *arena = tamis_arena_new(0);
        tamis_net_batch_t *b = tamis_net_batch_new(net);
        assert_non_null(arena);
        assert_non_null(b);
        /* The scan's budget: generous for the normal cases, bounded for the paused server. */
        adapter_t ad = {b, &loop, tamis_now_ms() + 8000};
        tamis_auth_dns_t dns = {ad_start, ad_wait, &ad};
        tamis__spf_t *s = tamis__spf_start(&dns, arena, ip, domain, sender, helo);
        assert_non_null(s);
        const char *got = status_name(tamis__spf_finish(s));
        fprintf(out, "%s\t%s\n", id, got);
        if (strcmp(got, want) != 0) {
            print_message("case %s: %s %s %s: got %s, want %s\n", id, ip, sender, helo, got, want);
            bad++;
        }
        n++;
        tamis_net_batch_free(b);
        tamis_arena_free(arena);
    }
    fclose(in);
    fclose(out);
    tamis_net_free(net);
    for (int i = 0; i < 1000 && uv_run(&loop, UV_RUN_NOWAIT); i++)
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    print_message("%u cases, %u unexpected\n", n, bad);
    assert_true(n > 0);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cases)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
