/* HTML statistics dump shared by test_msg.c and test_msg_fixtures.c, in the format of
 * tests/tools/sa-msg-dump.pl. Header-only: each test program includes it once. */
#ifndef TAMIS_TEST_MSG_DUMP_H
#define TAMIS_TEST_MSG_DUMP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tamis/msg.h"

static const char *const dump_stats[] = {"html_length",
                                         "non_space_len",
                                         "image_area",
                                         "length",
                                         "max_size",
                                         "min_size",
                                         "obfuscation_ratio",
                                         "backhair_count",
                                         "bad_tag_ratio",
                                         "non_element_ratio",
                                         "closed_extra_ratio",
                                         "font_low_contrast",
                                         "font_invalid_color",
                                         "form_action_mailto",
                                         "embeds"};

static const char *const dump_mime[] = {"mime_base64_count",       "mime_base64_encoded_text",
                                        "mime_body_html_count",    "mime_body_text_count",
                                        "mime_missing_boundary",   "mime_multipart_alternative",
                                        "mime_multipart_ratio",    "mime_qp_count",
                                        "mime_qp_long_line",       "mime_qp_ratio",
                                        "mime_ascii_text_illegal", "mime_text_unicode_ratio",
                                        "mime_attachment",         "mime_bad_iso_charset"};
static const char *const dump_flags[] = {
    "missing_head_body_separator", "missing_mime_head_body_separator",
    "missing_mime_headers",        "truncated_header",
    "mime_epilogue_exists",        "mimepart_limit_exceeded"};

/* M and F lines: MIMEEval counters and parse flags, as sa-msg-dump.pl prints them. */
static void dump_mime_flags(const tamis_msg_t *m, char *line, size_t linesz,
                            void (*emit)(void *, const char *), void *ctx)
{
    for (size_t i = 0; i < sizeof(dump_mime) / sizeof(dump_mime[0]); i++) {
        double v = 0;
        tamis_msg_mime_stat(m, dump_mime[i], &v);
        snprintf(line, linesz, "M %s=%.6g\n", dump_mime[i], v);
        emit(ctx, line);
    }
    for (size_t i = 0; i < sizeof(dump_flags) / sizeof(dump_flags[0]); i++)
        if (tamis_msg_parse_flag(m, dump_flags[i])) {
            snprintf(line, linesz, "F %s\n", dump_flags[i]);
            emit(ctx, line);
        }
}

static int cmp_tag(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* H and T lines: HTML statistics and tag balances, as sa-msg-dump.pl prints them. */
static void dump_html(const tamis_msg_t *m, char *line, size_t linesz,
                      void (*emit)(void *, const char *), void *ctx)
{
    for (size_t i = 0; i < sizeof(dump_stats) / sizeof(dump_stats[0]); i++) {
        double v;
        if (tamis_msg_html_stat(m, dump_stats[i], &v)) {
            snprintf(line, linesz, "H %s=%.6g\n", dump_stats[i], v);
            emit(ctx, line);
        }
    }
    size_t n = tamis_msg_html_tag_count(m);
    const char **names = calloc(n + 1, sizeof(*names));
    for (size_t i = 0; names && i < n; i++)
        names[i] = tamis_msg_html_tag_at(m, i, NULL);
    if (names)
        qsort(names, n, sizeof(*names), cmp_tag);
    for (size_t i = 0; names && i < n; i++) {
        snprintf(line, linesz, "T %s=%ld\n", names[i], tamis_msg_html_tag_balance(m, names[i]));
        emit(ctx, line);
    }
    free(names);
}

#endif
