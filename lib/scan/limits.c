/*
 * limits: fail-safe scanning. A message that runs into one of the engine's named limits (a PCRE2
 * match or depth limit, the MIME depth or part count, the decoded-bytes, header-count or URI
 * caps of lib/msg, the scan's time budget) is still scored with whatever finished, and the
 * verdict says so the way SpamAssassin says it for its own deadline: a rule-like entry with a
 * tiny score (0.001, so it is listed in the report and X-Spam-Status without moving the verdict).
 * SpamAssassin's TIME_LIMIT_EXCEEDED is added by lib/rules; the TAMIS_LIMIT_* entries are added
 * here, after the rules ran. A `score TAMIS_LIMIT_X n` line changes one (0 hides it); a
 * `describe` line replaces its description.
 */
#include "scan_internal.h"

#include <string.h>

typedef struct {
    unsigned bit;
    const char *name;
    const char *desc;
} limit_def_t;

/* The order of the entries in the hit list (the report sorts by score, then name). */
static const limit_def_t defs[] = {
    {TAMIS_SCAN_LIMIT_REGEX, "TAMIS_LIMIT_REGEX", "Some rules stopped at the regex match limit"},
    {TAMIS_SCAN_LIMIT_MIME, "TAMIS_LIMIT_MIME", "MIME structure too deep or too many parts"},
    {TAMIS_SCAN_LIMIT_DECODED, "TAMIS_LIMIT_DECODED", "Decoded parts over the size limit"},
    {TAMIS_SCAN_LIMIT_HEADERS, "TAMIS_LIMIT_HEADERS", "More header fields than scanned"},
    {TAMIS_SCAN_LIMIT_URIS, "TAMIS_LIMIT_URIS", "More URIs than scanned"},
};

#define LIMIT_DEFAULT_SCORE 0.001 /* TIME_LIMIT_EXCEEDED's default in SpamAssassin */

static unsigned limits_of(const tamis_scan_t *s)
{
    unsigned bits = 0;
    if (s->result.regex_limit_hits)
        bits |= TAMIS_SCAN_LIMIT_REGEX;
    if (s->result.time_limit_exceeded)
        bits |= TAMIS_SCAN_LIMIT_TIME;
    const tamis_msg_t *m = s->msg;
    if (!m)
        return bits;
    if (tamis_msg_parse_flag(m, "mime_depth_limit") ||
        tamis_msg_parse_flag(m, "mimepart_limit_exceeded"))
        bits |= TAMIS_SCAN_LIMIT_MIME;
    if (tamis_msg_parse_flag(m, "decoded_bytes_limit"))
        bits |= TAMIS_SCAN_LIMIT_DECODED;
    if (tamis_msg_parse_flag(m, "header_limit"))
        bits |= TAMIS_SCAN_LIMIT_HEADERS;
    if (tamis_msg_parse_flag(m, "uri_limit"))
        bits |= TAMIS_SCAN_LIMIT_URIS;
    return bits;
}

int tamis__scan_limits(tamis_scan_t *s, int score_set)
{
    s->limits = limits_of(s);
    size_t add = 0;
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        add += (s->limits & defs[i].bit) != 0;
    if (!add)
        return 0;
    /* The hit array belongs to the arena: grow by copying, the old one goes with the arena. */
    size_t n = s->result.hit_count;
    tamis_hit_t *hits = tamis_arena_calloc(s->arena, n + add, sizeof(*hits));
    if (!hits)
        return TAMIS_ENOMEM;
    if (n)
        memcpy(hits, s->result.hits, n * sizeof(*hits));
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        if (!(s->limits & defs[i].bit))
            continue;
        double score = LIMIT_DEFAULT_SCORE;
        const char *desc = NULL;
        if (s->rs)
            tamis_rules_score_of(s->rs, defs[i].name, score_set, &score, &desc);
        if (score == 0)
            continue; /* as SpamAssassin: a zero score is no hit */
        tamis_hit_t *h = &hits[n++];
        h->name = defs[i].name;
        h->description = desc ? desc : defs[i].desc;
        h->score = score;
        h->value = 1;
        h->type = TAMIS_RULE_META;
        h->tflags = TAMIS_TFLAG_NOAUTOLEARN;
        s->result.score += score;
    }
    s->result.hits = hits;
    s->result.hit_count = n;
    return 0;
}

unsigned tamis_scan_limits(const tamis_scan_t *s)
{
    return s ? s->limits : 0;
}

int tamis__scan_limits_describe(const tamis_scan_t *s, tamis_buf_t *out)
{
    const char *sep = "";
    if (s->limits & TAMIS_SCAN_LIMIT_TIME) {
        tamis_buf_puts(out, "time budget");
        sep = ", ";
    }
    if (s->limits & TAMIS_SCAN_LIMIT_REGEX) {
        tamis_buf_printf(out, "%sregex match/depth limit (%u match attempt%s stopped)", sep,
                         s->result.regex_limit_hits, s->result.regex_limit_hits == 1 ? "" : "s");
        sep = ", ";
    }
    static const struct {
        unsigned bit;
        const char *what;
    } rest[] = {
        {TAMIS_SCAN_LIMIT_MIME, "MIME depth/part count"},
        {TAMIS_SCAN_LIMIT_DECODED, "decoded bytes"},
        {TAMIS_SCAN_LIMIT_HEADERS, "header count"},
        {TAMIS_SCAN_LIMIT_URIS, "URI count"},
    };
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        if (s->limits & rest[i].bit) {
            tamis_buf_printf(out, "%s%s", sep, rest[i].what);
            sep = ", ";
        }
    }
    return out->err;
}
