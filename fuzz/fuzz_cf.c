/*
 * libFuzzer target for the .cf loader and rule compiler: arbitrary bytes are loaded as
 * configuration lines (preprocessor, rule definitions, settings, regexes, metas), then the set
 * is linted, its settings dumped, and it is run on a small fixed message, so that compile-time
 * and run-time paths both see whatever the parser accepted. `include` lines are dropped so the
 * fuzzer cannot wander the file system.
 */
#include "tamis/rules.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINES 2000

static const char msg_text[] = "From: \"A B\" <a@example.com>, c@d.org\n"
                               "To: x@y.z\nSubject: =?utf-8?q?caf=C3=A9?= hello\n"
                               "Received: from h.example.com ([1.2.3.4]) by mx.example.org\n"
                               "Content-Type: text/html\n\n"
                               "<p>Buy <b>now</b> http://spam.example.com/x</p>\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    const char **lines = calloc(MAX_LINES, sizeof(*lines));
    if (!text || !lines) {
        free(text);
        free(lines);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = 0;
    size_t n = 0;
    for (char *s = text; s && *s && n < MAX_LINES;) {
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = 0;
        if (strncmp(s, "include", 7) != 0)
            lines[n++] = s;
        s = nl ? nl + 1 : NULL;
    }
    tamis_rules_source_t src = {.extra_lines = lines, .extra_line_count = n, .locale = "C"};
    tamis_ruleset_t *rs = NULL;
    tamis_diag_t *d = tamis_diag_new();
    char err[256];
    if (tamis_rules_load(&src, &rs, d, err, sizeof(err)) == 0) {
        tamis_buf_t b;
        tamis_buf_init(&b, 1 << 20);
        tamis_rules_lint(rs, &b);
        tamis_conf_dump(tamis_rules_conf(rs), &b);
        tamis_buf_free(&b);
        tamis_msg_t *m = NULL;
        if (tamis_msg_parse(msg_text, sizeof(msg_text) - 1, NULL, &m, err, sizeof(err)) == 0) {
            tamis_arena_t *a = tamis_arena_new(0);
            tamis_rules_result_t r;
            for (int set = 0; set < 4; set++) {
                tamis_rules_run_opts_t o = {.score_set = set, .time_budget_ms = 1000};
                tamis_rules_run(rs, m, &o, a, &r, err, sizeof(err));
            }
            tamis_arena_free(a);
            tamis_msg_free(m);
        }
        tamis_rules_unref(rs);
    }
    tamis_diag_free(d);
    free(lines);
    free(text);
    return 0;
}
