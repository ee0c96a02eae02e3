/*
 * Private interface of lib/scan, shared by its files and its unit tests (not installed).
 *
 * The module is split so that the formatting half (text.c, pristine.c, tags.c, report.c,
 * rewrite.c, result.c) never calls lib/msg or lib/rules: it works on the plain data held in
 * struct tamis_scan, which scan.c fills after running the pipeline, and which unit tests may fill
 * by hand. That keeps the exact SpamAssassin formatting testable on its own.
 *
 * Ownership: every string a tamis__scan_* function hands back lives in the scan's arena; the
 * functions taking a tamis_buf_t append to that caller-owned buffer.
 */
#ifndef TAMIS_SCAN_INTERNAL_H
#define TAMIS_SCAN_INTERNAL_H

#include "tamis/scan.h"

#include <time.h>

/* Bounds on what we format, so hostile rules or messages cannot blow up the output. */
#define TAMIS__SCAN_MAX_OUTPUT ((size_t)512 * 1024 * 1024)  /* one rewritten message */
#define TAMIS__SCAN_MAX_TAG_ARG 1024                        /* bytes inside _TAG(…)_ */
#define TAMIS__SCAN_MAX_EXPANSION ((size_t)4 * 1024 * 1024) /* one expanded template */

/* What SpamAssassin's Message.pm makes of the raw input (spec-protocol §6.1). */
typedef struct {
    tamis_slice_t mbox;  /* the mbox "From " line with its EOL, or empty */
    const char *headers; /* pristine header text, the blank separator line included (NUL-ended;
                            in CRLF mode bare LFs are made CRLF, as Message.pm does) */
    size_t headers_len;
    tamis_slice_t body; /* everything after the header block, untouched */
    bool crlf;          /* the message's line ending is CRLF */
} tamis__pristine_t;

/* Splits data like Mail::SpamAssassin::Message->new. Memory from arena. */
int tamis__pristine_split(const char *data, size_t len, tamis_arena_t *arena,
                          tamis__pristine_t *out);
/* get_pristine_header(name): the value after "Name:" and its blanks, folding and final EOL kept.
 * Returns the nth match (0-based) or, with nth < 0, the last one; NULL when absent. Arena memory.
 */
const char *tamis__pristine_header(const tamis__pristine_t *p, const char *name, long nth,
                                   tamis_arena_t *arena);
/* The same as slices (values may hold NUL bytes): the next value from *pos, or the last one.
 * False when there is none. The slice points into p->headers or the arena. */
bool tamis__pristine_field_next(const tamis__pristine_t *p, const char *name, size_t *pos,
                                tamis_slice_t *out, tamis_arena_t *arena);
bool tamis__pristine_field_last(const tamis__pristine_t *p, const char *name, tamis_slice_t *out,
                                tamis_arena_t *arena);
/* Iterates over the values of name: the next one from *pos (start at 0), or NULL at the end. */
const char *tamis__pristine_header_next(const tamis__pristine_t *p, const char *name, size_t *pos,
                                        tamis_arena_t *arena);
/* The unfolded last value of a header (get_header in scalar context), or NULL; arena memory. */
const char *tamis__pristine_header_unfolded(const tamis__pristine_t *p, const char *name,
                                            tamis_arena_t *arena);

/* The Bayes part of a scan (bayes.c). */
typedef struct {
    tamis_bayes_t *store;         /* borrowed from the options; NULL = no Bayes */
    tamis_bayes_tokens_t *tokens; /* the message's tokens (freed with the arena) */
    time_t atime;                 /* the message's receive time */
    bool classified;              /* classify ran (res valid) */
    bool ran;                     /* enough learned: Bayes.pm's scan ran (BAYESTC* tags set) */
    bool usable;                  /* ... and use_bayes_rules: score set 2/3 */
    bool have_prob;               /* res.prob is a real verdict (BAYES_* may hit) */
    bool learned;                 /* auto-learned */
    tamis_bayes_result_t res;
    tamis_bayes_token_info_t *spammy, *hammy; /* strongest first; token strings in the arena */
    size_t nspammy, nhammy;
    uint8_t *used_keys; /* nused 5-byte keys, for the atime touch */
    size_t nused;
    const char *autolearn; /* _AUTOLEARN_; NULL = "disabled" */
} tamis__scan_bayes_t;

struct tamis_scan {
    tamis_arena_t *arena;
    tamis_ruleset_t *rs; /* reference held (NULL in formatting tests) */
    const tamis_conf_t *conf;
    tamis_msg_t *msg; /* NULL in formatting tests */

    const char *data; /* copy of the input (arena) */
    size_t len;
    tamis__pristine_t pr;

    /* verdict */
    double score; /* rounded to 3 decimals */
    double required;
    bool is_spam;
    tamis_rules_result_t result; /* hits, subtests, tags */
    const tamis_hit_t **order;   /* report order: score descending, then name */

    /* environment */
    const char *hostname; /* fq host name */
    const char *remote_host, *remote_addr, *user;
    time_t now;
    unsigned long boundary_seed;
    double elapsed_ms;

    tamis__scan_bayes_t bayes;
    tamis_scan_dns_t dns; /* the network tests' counters (dnsbl.c) */

    /* inputs of tags that need the message or the rules (filled by scan.c or tests) */
    tamis_rules_relays_t relays;    /* strings "" when unknown */
    const char *languages;          /* NULL: _LANGUAGES_ stays as is (no TextCat) */
    tamis_slice_t preview_lines[3]; /* rendered body lines after the Subject line */
    size_t preview_line_count;
    /* _HEADER(Name)_: $pms->get(Name) as a rule sees it; NULL = use the pristine headers */
    const char *(*header_get)(const struct tamis_scan *s, const char *name);

    /* built lazily (arena) */
    char *score_str, *required_str;
    char *terse, *summary; /* check_cleanup's REPORT and SUMMARY tag data */
    char *report;          /* get_report() */
    char *preview;
};

/* ---- dnsbl.c: the network tests ------------------------------------------------------------ */

typedef struct tamis__dns tamis__dns_t;
/* Plans the queries of the scored network rules of s (parsed; run: score set and envelope
 * sender) and starts them on net. *out is
 * NULL when there is nothing to ask. Memory from s->arena. Errors: TAMIS_ENOMEM. */
int tamis__dns_start(tamis_scan_t *s, tamis_net_t *net, const tamis_rules_run_opts_t *run,
                     double deadline_ms, tamis__dns_t **out);
/* The net_eval callback (ctx = the tamis__dns_t): the first call waits for the answers. */
bool tamis__dns_eval(void *ctx, const char *rule, const char *func, const char *const *args,
                     size_t nargs, const char **log);
/* Stores the counters in *out and gives the batch up (pending queries cancelled). */
void tamis__dns_end(tamis__dns_t *d, tamis_scan_dns_t *out);

/* ---- text.c: SpamAssassin's string helpers ------------------------------------------------- */

/* Util::wrap(string, prefix, first, width, overflow, break). break_after selects the header
 * folding break '(?<=[\s,])'; otherwise the default /(\s)/. Appends to out. */
int tamis__scan_wrap(tamis_buf_t *out, const char *s, size_t n, const char *prefix,
                     const char *first, unsigned width, bool overflow, bool break_after);
/* _process_header: an expanded header value made ready for "X-Spam-<name>: " (trailing EOLs
 * removed, folded at 79 columns when fold). Appends to out. */
int tamis__scan_fold_header(tamis_buf_t *out, const char *name, const char *value, size_t n,
                            bool fold);
/* mime_encode_header: RFC 2047 encoding of the lines holding non-ASCII bytes. Appends to out. */
int tamis__scan_mime_encode(tamis_buf_t *out, const char *s, size_t n);
/* Display score (spec-protocol §4.1) into buf. */
void tamis__scan_display_score(char *buf, size_t n, double score, double required, bool is_spam);
/* Util::time_to_rfc822_date in local time. */
void tamis__scan_rfc822_date(char *buf, size_t n, time_t t);
/* Perl's default number stringification (%.15g). */
void tamis__scan_perl_num(char *buf, size_t n, double v);
/* Converts every \r?\n of s to CRLF (crlf) or leaves s as is; appends to out. */
int tamis__scan_put_eol(tamis_buf_t *out, const char *s, size_t n, bool crlf);

/* ---- report.c ------------------------------------------------------------------------------- */

/* Area prefix of a rule type in reports ("BODY: ", "RAW: ", …). */
const char *tamis__scan_area(tamis_rule_type_t t);
/* Computes the display strings, sorts the hits into s->order and builds s->terse and
 * s->summary (check_cleanup). Called once the verdict fields are set. */
int tamis__scan_prepare(tamis_scan_t *s);
/* get_content_preview() (arena string). */
const char *tamis__scan_preview(tamis_scan_t *s);
/* get_report(): the report template expanded, ending in exactly "\n\n" (arena string). */
const char *tamis__scan_get_report(tamis_scan_t *s);

/* ---- tags.c --------------------------------------------------------------------------------- */

/* _replace_tags: appends template with every known tag replaced. */
int tamis__scan_replace_tags(const tamis_scan_t *s, const char *tmpl, size_t n, tamis_buf_t *out);
/* _get_added_headers: "X-Spam-Name: value\n" for the spam or ham list, LF line ends. */
int tamis__scan_added_headers(const tamis_scan_t *s, bool spam, tamis_buf_t *out);

/* ---- bayes.c -------------------------------------------------------------------------------- */

/* Tokenizes and classifies s->msg with o->bayes (if any); sets ro->bayes_available/probability
 * when BAYES_* rules may hit and s->bayes.usable for the score set. Fails only on ENOMEM; a
 * store error just leaves Bayes out of this scan. */
int tamis__scan_bayes_classify(tamis_scan_t *s, const tamis_scan_opts_t *o,
                               tamis_rules_run_opts_t *ro);
/* After the verdict: atime touch and auto-learn; sets s->bayes.autolearn. */
void tamis__scan_bayes_finish(tamis_scan_t *s, const tamis_scan_opts_t *o);
/* AutoLearnThreshold's decision: 1 spam, 0 ham, -1 no learning. */
int tamis__scan_autolearn_decide(const tamis_conf_t *c, const tamis_rules_result_t *r,
                                 bool is_spam);

/* ---- rewrite.c ------------------------------------------------------------------------------ */

/* rewrite_mail(): the PROCESS body. */
int tamis__scan_rewrite(tamis_scan_t *s, tamis_buf_t *out);

#endif
