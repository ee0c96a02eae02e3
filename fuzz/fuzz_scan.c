/*
 * libFuzzer target for the whole scan pipeline as tamisd runs it (lib/scan over lib/msg and
 * lib/rules): arbitrary bytes are scanned with Tamis's default rules (rules/), then every output
 * is built: SYMBOLS, REPORT, the PROCESS rewrite, HEADERS, the log lines. fuzz_msg covers the
 * parser alone; this one covers what hostile messages do to the formatting side (report_safe
 * 0/1/2, picked by the input size so that seeds stay plain messages) and to fail-safe scanning
 * (limits.c). Invariants: a scan of a message within the size limit never fails; the rewrite
 * is never empty; HEADERS is a prefix of PROCESS.
 */
#include "tamis/scan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tamis_ruleset_t *sets[3];

/* The three sets differ in report_safe only, so they share one compiled prefilter database:
 * compiled once into the cache, loaded for the other two. */
#define CACHE_DIR "/tmp/tamis-fuzz-scan-cache"

static tamis_ruleset_t *load(int report_safe)
{
    static const char *const paths[] = {TAMIS_SOURCE_DIR "/rules"};
    char line[32];
    snprintf(line, sizeof line, "report_safe %d", report_safe);
    const char *extra[] = {line, "use_bayes 0"};
    tamis_rules_source_t src = {.paths = paths,
                                .path_count = 1,
                                .extra_lines = extra,
                                .extra_line_count = 2,
                                .locale = "C",
                                .cache_dir = CACHE_DIR};
    tamis_ruleset_t *rs = NULL;
    char err[256] = "";
    if (tamis_rules_load(&src, &rs, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_scan: cannot load %s: %s\n", paths[0], err);
        abort();
    }
    return rs;
}

/* Loading compiles the rules (seconds under ASan): done before the first input, outside
 * libFuzzer's per-input timeout. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int i = 0; i < 3; i++)
        sets[i] = load(i);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    lim.max_message_bytes = 1 << 20;
    tamis_scan_opts_t o;
    tamis_scan_opts_default(&o);
    o.hostname = "fuzz.example";
    o.now = 1700000000;
    o.boundary_seed = 1;
    o.local_only = true;
    o.limits = &lim;
    o.run.time_budget_ms = 5000; /* a budget hit is a result, not a failure */
    tamis_scan_t *s = NULL;
    char err[256];
    if (tamis_scan_run(sets[size % 3], (const char *)data, size, &o, &s, err, sizeof err) != 0) {
        if (size <= lim.max_message_bytes)
            abort(); /* only ENOMEM may fail a scan, and the fuzzer's inputs are small */
        return 0;
    }
    tamis_buf_t b, h;
    tamis_buf_init(&b, 0);
    tamis_buf_init(&h, 0);
    if (tamis_scan_symbols(s, &b) || tamis_scan_report(s, &b))
        abort();
    tamis_buf_reset(&b);
    if (tamis_scan_rewrite(s, &b) || b.len == 0)
        abort();
    if (tamis_scan_headers(s, &h) || h.len > b.len || memcmp(h.data, b.data, h.len) != 0)
        abort();
    tamis_buf_reset(&h);
    tamis_scan_log_line(s, "1", &h);
    tamis_scan_limits_log_line(s, "1", &h);
    tamis_buf_free(&b);
    tamis_buf_free(&h);
    tamis_scan_free(s);
    return 0;
}
