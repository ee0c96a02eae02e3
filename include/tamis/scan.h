/*
 * scan: the per-message pipeline and its result, formatted as SpamAssassin 4.0 formats it.
 *
 * tamis_scan_run() parses the message (lib/msg), runs the rule set (lib/rules), scores it and keeps
 * everything the front ends need: the verdict, the hit list, the report text, the SYMBOLS list and
 * the rewritten message (X-Spam-* headers, rewrite_header, report_safe 0/1/2), byte for byte as
 * spec-protocol.md §4.1 and §6 describe.
 *
 * Ownership: a tamis_scan_t owns one arena holding the message, the hits and every string it
 * returns; tamis_scan_free() releases all of it at once. It keeps a reference to the rule set.
 * Threads: run on a worker thread; the result may then be read by any one thread.
 */
#ifndef TAMIS_SCAN_H
#define TAMIS_SCAN_H

#include "tamis/bayes.h"
#include "tamis/core.h"
#include "tamis/msg.h"
#include "tamis/net.h"
#include "tamis/rules.h"

typedef struct tamis_scan tamis_scan_t;

typedef struct {
    const char *hostname; /* for _HOSTNAME_ and the report_safe Received line; NULL = gethostname */
    const char *remote_host; /* _REMOTEHOSTNAME_ ("localhost" when unknown) */
    const char *remote_addr; /* _REMOTEHOSTADDR_ ("127.0.0.1") */
    const char *user;        /* spamc User header, for logs */
    /* The Bayes store of that user, or NULL (no Bayes: as use_bayes 0, autolearn=disabled). The
     * scan classifies in one short read transaction and, at the end, touches the tokens used and
     * auto-learns (spec-bayes §5) in one write transaction; the handle must not be used by
     * another thread during the call. */
    tamis_bayes_t *bayes;
    bool no_autolearn; /* never auto-learn (autolearn=disabled), e.g. for a read-only store */
    time_t now;        /* 0 = time(NULL); fixed values make tests reproducible */
    unsigned long boundary_seed;      /* 0 = random; report_safe MIME boundary */
    bool local_only;                  /* spamd -L: score sets without network */
    const tamis_msg_limits_t *limits; /* NULL = defaults */
    tamis_rules_run_opts_t run;       /* passed to tamis_rules_run (score_set is set by scan) */
    /* The resolver for the network tests (DNSBL, URIBL; docs/dns.md), borrowed; NULL = none
     * (network rules never hit, as in SpamAssassin without DNS). Unused with local_only or
     * skip_rbl_checks. When set, the scan plans its queries right after parsing, starts them
     * in one batch, and its net evals (run last) wait at most until parse time + rbl_timeout
     * (a conf setting, default 15 s); at most dns_max_queries (default 256) per message. It
     * replaces run.net_eval. */
    tamis_net_t *net;
} tamis_scan_opts_t;

void tamis_scan_opts_default(tamis_scan_opts_t *o);

/* Scans data (copied). Fails on TAMIS_ENOMEM or TAMIS_ELIMIT (over max_message_bytes). */
int tamis_scan_run(tamis_ruleset_t *rs, const char *data, size_t len, const tamis_scan_opts_t *o,
                   tamis_scan_t **out, char *err, size_t errlen);
void tamis_scan_free(tamis_scan_t *s);

const tamis_msg_t *tamis_scan_msg(const tamis_scan_t *s);
double tamis_scan_score(const tamis_scan_t *s);    /* rounded to 3 decimals */
double tamis_scan_required(const tamis_scan_t *s); /* required_score */
bool tamis_scan_is_spam(const tamis_scan_t *s);
size_t tamis_scan_hit_count(const tamis_scan_t *s);
const tamis_hit_t *tamis_scan_hit(const tamis_scan_t *s, size_t i);
const tamis_rules_result_t *tamis_scan_result(const tamis_scan_t *s);
/* Bayes outcome: the classification (status NOT_ENOUGH when fewer messages than
 * bayes_min_*_num are learned; false when Bayes did not take part), and the auto-learn status as
 * _AUTOLEARN_ prints it ("disabled", "no autolearn_force=no", "spam autolearn_force=no", …). */
bool tamis_scan_bayes(const tamis_scan_t *s, tamis_bayes_result_t *out);
const char *tamis_scan_autolearn(const tamis_scan_t *s);
double tamis_scan_elapsed_ms(const tamis_scan_t *s);

/* What the scan's network tests did (all zero without a resolver). */
typedef struct {
    size_t queries;  /* distinct DNS queries started */
    size_t answered; /* of them, answered before the deadline (any status) */
    size_t skipped;  /* not started: over dns_max_queries */
    double wait_ms;  /* time the rules waited for answers */
    unsigned rounds; /* DNSBL/URIBL: answer waits one after another (NS -> A -> list: up to 3) */
    unsigned auth_rounds; /* SPF/DKIM/DMARC: answer waits one after another (include chains…) */
    /* Zones that answered with a refusal code (127.255.255.x, URIBL/SURBL 127.0.0.1 …),
     * space-separated, "" if none: the caller's cue for a rate-limited warning. Owned by s. */
    const char *blocked_zones;
} tamis_scan_dns_t;
void tamis_scan_dns(const tamis_scan_t *s, tamis_scan_dns_t *out);

/* Display strings (spec-protocol §4.1): "%2.1f" score with the r − 0.1 rule for ham, and "%2.1f"
 * threshold. Owned by s. */
const char *tamis_scan_score_str(const tamis_scan_t *s);
const char *tamis_scan_required_str(const tamis_scan_t *s);

/* SYMBOLS body: sorted, comma-joined names of scored hits (no trailing newline). Appended to out.
 */
int tamis_scan_symbols(const tamis_scan_t *s, tamis_buf_t *out);
/* REPORT body: the report template (spam or ham form) with tags replaced, LF line ends. */
int tamis_scan_report(const tamis_scan_t *s, tamis_buf_t *out);
/* PROCESS body: the rewritten message, line endings following the input. */
int tamis_scan_rewrite(const tamis_scan_t *s, tamis_buf_t *out);
/* HEADERS body: the rewritten message up to and including the first blank line. */
int tamis_scan_headers(const tamis_scan_t *s, tamis_buf_t *out);
/* Expands _TAGS_ of a template (add_header values, report lines) for this result. */
int tamis_scan_expand(const tamis_scan_t *s, const char *template, tamis_buf_t *out);

/* One log line (id, verdict, score, hits, milliseconds), without a trailing newline. */
int tamis_scan_log_line(const tamis_scan_t *s, const char *id, tamis_buf_t *out);

/* Fail-safe scanning: the limits a scan ran into. The verdict then comes from what finished and
 * the hit list says so: TIME_LIMIT_EXCEEDED (SpamAssassin's) for the time budget, TAMIS_LIMIT_*
 * for the others (score 0.001 each unless a `score` line says otherwise; README.md, Failure model).
 */
enum {
    TAMIS_SCAN_LIMIT_TIME = 1 << 0,    /* run.time_budget_ms: the remaining rules were skipped */
    TAMIS_SCAN_LIMIT_REGEX = 1 << 1,   /* a PCRE2 match/depth limit: counted as no match */
    TAMIS_SCAN_LIMIT_MIME = 1 << 2,    /* max_mime_depth or max_parts: deeper parts not scanned */
    TAMIS_SCAN_LIMIT_DECODED = 1 << 3, /* max_decoded_bytes: the rest of the parts not decoded */
    TAMIS_SCAN_LIMIT_HEADERS = 1 << 4, /* max_headers: later fields not scanned */
    TAMIS_SCAN_LIMIT_URIS = 1 << 5,    /* max_uris: later URIs not scanned */
};
unsigned tamis_scan_limits(const tamis_scan_t *s);
/* When a limit was hit, one log line naming the message (mid=, id=) and the limits, without a
 * trailing newline; appends nothing otherwise. */
int tamis_scan_limits_log_line(const tamis_scan_t *s, const char *id, tamis_buf_t *out);

#endif
