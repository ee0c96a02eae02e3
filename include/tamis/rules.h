/*
 * rules: SpamAssassin's .cf language (spec-rules.md): loading, compiling and running rules.
 *
 * Loading reads files and folders in SpamAssassin's order (a folder contributes its *.pre files,
 * then its *.cf files, byte-order sorted), runs the preprocessor (if/ifplugin/else/endif, include,
 * require_version, lang), compiles every regex with PCRE2 (JIT, match and depth limits), resolves
 * meta rules and priorities, and hands settings to lib/conf. A rule that cannot compile is dropped
 * with a warning naming file:line; only failures that make the whole set unusable (an unreadable
 * file named explicitly, allocation failure) make the load fail.
 *
 * A compiled rule set is immutable and reference-counted: a reload builds a new one and swaps it,
 * scans in flight keep theirs. Running needs per-thread scratch (PCRE2 match data, JIT stack,
 * Vectorscan scratch), which the run call keeps in thread-local storage, so any number of threads
 * may run the same set at once.
 *
 * With Vectorscan (TAMIS_HAVE_HS) the header, body, rawbody, full and uri regexes are also
 * compiled into multi-pattern databases that find the candidate rules of a message in one pass;
 * PCRE2 confirms the candidates, so hits are those of PCRE2 alone (docs/speed.md). Compiling the
 * stock databases takes seconds: give cache_dir to keep them on disk between loads.
 *
 * Ownership: tamis_rules_load() returns a set with one reference; tamis_rules_unref() drops it.
 * Hit results live in the arena passed to tamis_rules_run().
 */
#ifndef TAMIS_RULES_H
#define TAMIS_RULES_H

#include "tamis/conf.h"
#include "tamis/core.h"
#include "tamis/msg.h"

typedef struct tamis_ruleset tamis_ruleset_t;

typedef struct {
    /* SpamAssassin's layout (spec-rules §1.1): site_rules_dir's *.pre, then default_rules_dir's
     * *.pre and *.cf, then site_rules_dir's *.cf. Either may be NULL. Loaded before paths. */
    const char *default_rules_dir;
    const char *site_rules_dir;
    /* Further files or folders, loaded in this order. A missing path is an error unless optional.
     */
    const char *const *paths;
    size_t path_count;
    bool paths_optional;
    /* Extra directives applied after the files ("--cf" lines, tests), as if from "<cmdline>". */
    const char *const *extra_lines;
    size_t extra_line_count;
    /* Locale for `lang xx` lines; NULL = from LANGUAGE/LC_ALL/LC_MESSAGES/LANG, C/POSIX = en_US. */
    const char *locale;
    /* Folder for the compiled prefilter databases (Vectorscan), keyed by a hash of the patterns
     * and the library version; created if missing. NULL = no cache (compile at every load). */
    const char *cache_dir;
} tamis_rules_source_t;

/* Loads and compiles. Warnings and errors go to diag (may be NULL). On success *out holds a set
 * with one reference. On failure *out is NULL and err says why (the first error with file:line). */
int tamis_rules_load(const tamis_rules_source_t *src, tamis_ruleset_t **out, tamis_diag_t *diag,
                     char *err, size_t errlen);
tamis_ruleset_t *tamis_rules_ref(tamis_ruleset_t *rs);
void tamis_rules_unref(tamis_ruleset_t *rs); /* NULL is a no-op */

/* The settings loaded with the set (owned by the set). */
const tamis_conf_t *tamis_rules_conf(const tamis_ruleset_t *rs);

/* _RULESVERSION_: the "# UPDATE version N" numbers of the loaded files (sa-update channels, our
 * rules/ folder), in file-name order joined with ","; "" when no file has one (Debian's stock
 * rules without sa-update). Owned by the set. */
const char *tamis_rules_version(const tamis_ruleset_t *rs);

/* The set's redirector_pattern lines, compiled for tamis_msg_parse (tamis_msg_limits_t's
 * redirectors); NULL when there are none. Owned by the set: valid while a reference is held. */
const tamis_msg_redirectors_t *tamis_rules_redirectors(const tamis_ruleset_t *rs);

/* The score a `score` line gave name in score_set (0-3), for rule-like entries the engine adds
 * itself (TIME_LIMIT_EXCEEDED, TAMIS_LIMIT_*). False when no `score` line names it; *desc (may
 * be NULL) gets its `describe` text or NULL either way. Strings are owned by the set. */
bool tamis_rules_score_of(const tamis_ruleset_t *rs, const char *name, int score_set, double *score,
                          const char **desc);

/* Counts for logs and --lint: defined rules by type, and the eval functions used by some rule that
 * Tamis does not implement (each listed once, with the rules that use it). */
size_t tamis_rules_count(const tamis_ruleset_t *rs);
int tamis_rules_lint(const tamis_ruleset_t *rs, tamis_buf_t *out);

/* Rule type of a hit, for the report's "area" prefix and statistics. */
typedef enum {
    TAMIS_RULE_HEADER,
    TAMIS_RULE_BODY,
    TAMIS_RULE_RAWBODY,
    TAMIS_RULE_FULL,
    TAMIS_RULE_URI,
    TAMIS_RULE_META,
    TAMIS_RULE_MIMEHEADER,
    TAMIS_RULE_EVAL_HEADER,
    TAMIS_RULE_EVAL_BODY,
    TAMIS_RULE_EVAL_RAWBODY,
    TAMIS_RULE_EVAL_FULL,
} tamis_rule_type_t;

enum {
    TAMIS_TFLAG_NET = 1 << 0,
    TAMIS_TFLAG_NICE = 1 << 1,
    TAMIS_TFLAG_USERCONF = 1 << 2,
    TAMIS_TFLAG_NOAUTOLEARN = 1 << 3,
    TAMIS_TFLAG_MULTIPLE = 1 << 4,
    TAMIS_TFLAG_LEARN = 1 << 5,
    TAMIS_TFLAG_NOSUBJECT = 1 << 6,
    TAMIS_TFLAG_AUTOLEARN_FORCE = 1 << 7,
    TAMIS_TFLAG_NOLOG = 1 << 8,
    TAMIS_TFLAG_AUTOLEARN_BODY = 1 << 9,    /* count toward auto-learn body points */
    TAMIS_TFLAG_AUTOLEARN_HEADER = 1 << 10, /* count toward auto-learn header points */
    /* URIDNSBL: look up the URI host's A records (a) and/or its NS hosts' (ns, the default) */
    TAMIS_TFLAG_A = 1 << 11,
    TAMIS_TFLAG_NS = 1 << 12,
    TAMIS_TFLAG_DOMAINS_ONLY = 1 << 13, /* only host names, no IP literals */
    TAMIS_TFLAG_IPS_ONLY = 1 << 14,     /* only IP literals */
    TAMIS_TFLAG_NOTRIM = 1 << 15,       /* the full host, not its registrable domain */
};

typedef struct {
    const char *name;        /* owned by the rule set */
    const char *description; /* owned by the rule set; "No description available." by default */
    double score;            /* in the score set used */
    double value;            /* hit value (count for multiple, eval/meta value) */
    tamis_rule_type_t type;
    unsigned tflags;
    const char *log; /* extra "[...]" detail for the report, or NULL (arena) */
} tamis_hit_t;

/* External inputs that later issues plug in (Bayes, DNS); zero means "not available". */
typedef struct {
    int score_set;        /* 0-3: bit 0 = network tests, bit 1 = Bayes (spec-rules §2.2) */
    bool bayes_available; /* check_bayes() evals see bayes_probability */
    double bayes_probability;
    const char *envelope_from;    /* from the front end (e.g. milter, Postfix), or NULL */
    const char *locale_languages; /* detected languages ("en"), or NULL */
    double time_budget_ms;        /* 0 = none; past it, remaining tests are skipped */
    /* Network results: called for an eval the engine delegates (check_rbl*, check_uridnsbl,
     * askdns). Returns true to record a hit; *log may receive the hit's report detail (memory of
     * the run's arena, or static). NULL = network rules never hit. With a callback, net evals
     * run after every other rule (in rule order) and the metas using them wait for them; the
     * first call is where the scan waits for its DNS answers. */
    bool (*net_eval)(void *ctx, const char *rule, const char *func, const char *const *args,
                     size_t nargs, const char **log);
    void *net_ctx;
    /* Match every regex with PCRE2 alone, without the multi-pattern prefilter (tests compare
     * both modes; the hits are identical). */
    bool no_prefilter;
} tamis_rules_run_opts_t;

typedef struct {
    /* Scored, reportable hits (no "__" sub-rules, score != 0), in hit order. As in SpamAssassin's
     * test list, a `tflags multiple` rule appears once per match (each adds its score); every
     * such entry carries the total count in .value. */
    tamis_hit_t *hits;
    size_t hit_count;
    const char *
        *subtests; /* names of "__" sub-rules that hit, in hit order (multiple: per match) */
    size_t subtest_count;
    double score; /* sum of hit scores rounded to 3 decimals */
    /* Auto-learn inputs as PerMsgStatus::_get_autolearn_points computes them (spec-bayes §7):
     * scores of the set without Bayes, noautolearn/userconf/learn rules excluded, metas split
     * between head and body by their dependencies' types; points = their total (3 decimals),
     * learned_points = the learn (BAYES_*) rules' scores, autolearn_force = such hits. */
    double autolearn_points_head, autolearn_points_body;
    double autolearn_points, learned_points;
    unsigned autolearn_force;
    unsigned regex_limit_hits; /* PCRE2 match/depth limit reached (counted, treated as no match) */
    bool time_limit_exceeded;
    /* Tag values exported by named captures (%{NAME} templates), NULL-terminated pairs. */
    const char *const *tags;
    /* _SUBJPREFIX_ (PerMsgStatus::got_hit): with `rewrite_header Subject` set, the `subjprefix`
     * texts of the hits in hit order, each once, each followed by " "; NULL when none (arena). */
    const char *subjprefix;
} tamis_rules_result_t;

/* Runs every rule on m. All result memory comes from arena. Fails only on allocation failure. */
int tamis_rules_run(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                    const tamis_rules_run_opts_t *opts, tamis_arena_t *arena,
                    tamis_rules_result_t *out, char *err, size_t errlen);

/* Trust evaluation of the Received chain under this set's trusted/internal networks, as
 * X-Spam-Relays-* formats them. Strings belong to arena. */
typedef struct {
    const char *trusted, *untrusted, *internal, *external; /* "[ ip=… ] [ … ]" */
    const char *last_external_ip;                          /* "" if none */
    const char *first_trusted_ip;
} tamis_rules_relays_t;
int tamis_rules_relays(const tamis_ruleset_t *rs, const tamis_msg_t *m, tamis_arena_t *arena,
                       tamis_rules_relays_t *out);

/* ---- network tests: what the scan's DNS planner needs (lib/scan/dnsbl.c, docs/dns.md) ---------
 * Pure accessors; every array and string is valid as long as the set (names, args) or the arena
 * (the arrays, candidate strings) lives. Any thread. */

/* A network eval rule (check_rbl*, check_uridnsbl, askdns …). */
typedef struct {
    const char *name;        /* rule name */
    const char *func;        /* eval function, e.g. "check_rbl" */
    const char *const *args; /* arguments, quotes removed */
    size_t nargs;
    unsigned tflags; /* TAMIS_TFLAG_* */
    bool scored;     /* non-zero score in the score set (network bit on): the runner asks for it */
} tamis_rules_net_rule_t;

/* The network eval rules of rs that compiled, in definition order, for score_set (0-3). The array
 * comes from arena. Errors: TAMIS_EINVAL, TAMIS_ENOMEM. */
int tamis_rules_net_rules(const tamis_ruleset_t *rs, int score_set, tamis_arena_t *arena,
                          tamis_rules_net_rule_t **out, size_t *count);

/* What a URIDNSBL declaration looks up. */
typedef enum {
    TAMIS_URIBL_DNSBL,      /* uridnsbl/uridnssub: IPs of the host (tflags a) or of its NS (ns) */
    TAMIS_URIBL_RHSBL,      /* urirhsbl/urirhssub: the registrable domain (notrim: the host) */
    TAMIS_URIBL_NSRHSBL,    /* urinsrhsbl/urinsrhssub: the domains of the host's NS names */
    TAMIS_URIBL_FULLNSRHSBL /* urifullnsrhsbl/urifullnsrhssub: the NS names themselves */
} tamis_rules_uribl_kind_t;

typedef struct {
    const char *rule;    /* the check_uridnsbl('RULE') rule it feeds */
    const char *zone;    /* list zone, trailing dots removed, lower case */
    const char *type;    /* query type as written ("A", "TXT") */
    const char *subtest; /* the *sub forms' sub-test, NULL for the *bl forms */
    tamis_rules_uribl_kind_t kind;
    unsigned tflags; /* the rule's tflags (a, ns, domains_only, ips_only, notrim …) */
} tamis_rules_uribl_t;

/* The URIDNSBL declarations (last one per rule wins), in declaration order; malformed lines are
 * skipped. Array and strings from arena. Errors: TAMIS_EINVAL, TAMIS_ENOMEM. */
int tamis_rules_uribl(const tamis_ruleset_t *rs, tamis_arena_t *arena, tamis_rules_uribl_t **out,
                      size_t *count);

/* dns_block_rule RULE zone…: RULE is the zone's "blocked" informational rule (URIBL_BLOCKED,
 * RCVD_IN_ZEN_BLOCKED …): it may fire on the list's refusal codes, listing rules may not. */
typedef struct {
    const char *rule;
    const char *zone; /* lower case, no leading/trailing dot */
} tamis_rules_dns_block_t;
int tamis_rules_dns_blocks(const tamis_ruleset_t *rs, tamis_arena_t *arena,
                           tamis_rules_dns_block_t **out, size_t *count);
/* Whether rule is a dns_block_rule for zone (trailing dots and case ignored). */
bool tamis_rules_is_dns_block(const tamis_ruleset_t *rs, const char *rule, const char *zone);

/* The relay IPs DNSEval works from (Plugin/DNSEval.pm parsed_metadata), each list from arena. */
typedef struct {
    const char **untrusted; /* untrusted relays' IPs, newest first, de-duplicated, no private */
    size_t untrusted_count;
    const char **external; /* trusted-but-not-internal then untrusted relays' IPs, raw */
    size_t external_count;
    const char **originating; /* IPs of the originating_ip_headers (X-Originating-IP …) */
    size_t originating_count;
    bool any; /* some untrusted or originating IP: check_rbl has something to do */
    /* check_rbl_rcvd's relay: the oldest untrusted one (NULL if none) */
    const tamis_relay_t *oldest_untrusted;
} tamis_rules_dnsbl_ips_t;
int tamis_rules_dnsbl_ips(const tamis_ruleset_t *rs, const tamis_msg_t *m, tamis_arena_t *arena,
                          tamis_rules_dnsbl_ips_t *out);

/* The sender data of check_rbl_envfrom / check_rbl_from_host / check_rbl_from_domain:
 * the envelope sender address ("" if unknown) and PerMsgStatus::all_from_addrs (Resent-From,
 * else From, Envelope-Sender, Resent-Sender, X-Envelope-From and the envelope sender). opts may
 * be NULL (its envelope_from is used when set). Strings and array from arena. */
typedef struct {
    const char *envelope_from;
    const char *const *from_addrs;
    size_t from_count;
} tamis_rules_senders_t;
int tamis_rules_senders(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                        const tamis_rules_run_opts_t *opts, tamis_arena_t *arena,
                        tamis_rules_senders_t *out);

/* The value of a header expression exactly as a header rule sees it ("Reply-To:addr",
 * "X-Source-IP", "EnvelopeFrom:addr" …; spec-rules §3.1), or NULL when missing. Arena memory. */
const char *tamis_rules_header(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                               const tamis_rules_run_opts_t *opts, const char *expr,
                               tamis_arena_t *arena);

/* The IPs check_rbl(set, …) queries, in query order, as DNSEval selects them from the set
 * name's suffix: "-notfirsthop" (external IPs but the originating one, when several),
 * "-lastexternal" (the newest external IP), "-firsttrusted" (the newest untrusted IP, the one
 * that handed the mail to us), "-untrusted" (the untrusted IPs but that one), else the
 * originating-header and untrusted IPs oldest first. At most num_check_received; leading
 * trusted_networks IPs dropped unless nice. Writes at most cap pointers into out (borrowed from
 * in) and returns how many. */
/* The first untrusted relay (the one that handed the message to the trusted part), as
 * SpamAssassin's SPF plugin takes its IP and HELO; NULL when every relay is trusted or none was
 * parsed. Borrowed from m. */
const tamis_relay_t *tamis_rules_first_untrusted(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                                                 tamis_arena_t *arena);

size_t tamis_rules_dnsbl_select(const tamis_ruleset_t *rs, const tamis_rules_dnsbl_ips_t *in,
                                const char *set, bool nice, const char **out, size_t cap);

#endif
