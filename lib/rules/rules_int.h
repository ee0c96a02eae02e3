/*
 * Private structures of lib/rules shared by the loader (load.c, parse.c), the compiler
 * (compile.c, regex.c, meta.c) and the runner (run.c). Not installed.
 *
 * A rule set owns one arena for every string of its rules, plus the PCRE2 codes (freed in
 * tamis_rules_unref). During loading rules are kept in definition order in `rules` and found by
 * name through an open-addressing hash table; after finishing, `order` lists the runnable rules
 * by priority and phase.
 */
#ifndef TAMIS_RULES_INT_H
#define TAMIS_RULES_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "rules/eval.h"
#include "tamis/rules.h"

#include <stdatomic.h>

/* Limits on untrusted configuration input. */
#define TAMIS__MAX_RULE_NAME 100      /* SA accepts rule names up to this length */
#define TAMIS__MAX_INCLUDE_DEPTH 20   /* nested include */
#define TAMIS__MAX_IF_DEPTH 64        /* nested if/ifplugin */
#define TAMIS__MAX_LINE 65536         /* one .cf line */
#define TAMIS__MAX_FILE (64u << 20)   /* one .cf file */
#define TAMIS__MAX_RULES 200000       /* rule names in one set */
#define TAMIS__MAX_EVAL_ARGS 32       /* arguments of one eval: call */
#define TAMIS__MAX_META_TOKENS 4000   /* tokens of one meta expression, after rules_matching() */
#define TAMIS__MAX_EXPR_DEPTH 1000    /* parenthesis / operator nesting in meta and if */
#define TAMIS__MAX_PATTERN (1u << 20) /* regex source after ReplaceTags */
#define TAMIS__MATCH_LIMIT 1000000    /* PCRE2 backtracking steps per match attempt */
#define TAMIS__DEPTH_LIMIT 20000      /* PCRE2 backtracking depth (heap frames) */

typedef enum {
    TAMIS__K_REGEX,  /* header/body/rawbody/full/uri/mimeheader regex */
    TAMIS__K_EXISTS, /* header NAME exists:Hdr */
    TAMIS__K_EVAL,   /* NAME eval:func(args) */
    TAMIS__K_META,   /* meta expression */
    TAMIS__K_NONE,   /* not (or no longer) defined */
} tamis__kind_t;

/* Phases within one priority, in SpamAssassin's order (spec-rules §8). */
enum {
    TAMIS__PH_HEADER,
    TAMIS__PH_HEADER_EVAL,
    TAMIS__PH_BODY,
    TAMIS__PH_URI,
    TAMIS__PH_BODY_EVAL,
    TAMIS__PH_RAWBODY,
    TAMIS__PH_RAWBODY_EVAL,
    TAMIS__PH_FULL,
    TAMIS__PH_FULL_EVAL,
    TAMIS__PH_MIMEHEADER,
    TAMIS__PH_META,
};

typedef struct tamis__meta tamis__meta_t;
typedef struct tamis__prefilter tamis__prefilter_t;

typedef struct tamis__rule {
    char *name;
    tamis__kind_t kind;
    tamis_rule_type_t type;
    char *def; /* definition text (after the name), kept for compiling at finish */
    const char *file;
    unsigned line;

    /* header / mimeheader */
    char *hdr; /* header expression ("From:addr", "ALL", …) */
    bool negate;
    char *if_unset;

    /* regex */
    pcre2_code *re;
    void *re32;        /* 32-bit fallback for patterns too large for the 8-bit library */
    bool has_template; /* contains %{NAME}: compiled per message */
    bool captures;     /* has named groups exporting tags */
    char *pattern;     /* source after delimiter removal and rewriting (for templates) */
    uint32_t re_flags;

    /* eval */
    const tamis_eval_def_t *ev;
    char *func;
    char **args;
    size_t nargs;

    /* meta */
    tamis__meta_t *meta;
    int *deps;          /* rule indexes used by the meta (each once) */
    unsigned *dep_uses; /* how often each is named in the expression */
    size_t ndeps;

    /* keyed attributes (may come before or after the definition) */
    double score[4];
    bool scored;
    char *desc;
    char *subjprefix; /* `subjprefix RULE TEXT` (Conf.pm), NULL if none */
    unsigned tflags;
    unsigned maxhits;
    int priority;
    bool priority_set;
    bool replace_tags; /* listed in replace_rules */
    bool dropped;      /* definition failed to compile */
    const char *error; /* why it was dropped (arena), for --lint */
    bool unsupported;  /* eval function Tamis lacks */
    int phase;
    int index;
} tamis__rule_t;

typedef struct {
    char *name;
    char *value;
} tamis__kv_t;

/* One priority level of a run schedule (schedule.c): its rules to run, then the metas ready. */
typedef struct {
    int *rules;
    size_t nrules;
    int *metas;
    size_t nmetas;
} tamis__sched_level_t;

/* What tamis_rules_run does for one score set and net-eval mode, as lists of rule indexes. */
typedef struct {
    tamis__sched_level_t *levels;
    size_t nlevels;
    int *net; /* net evals waiting for DNS, in rule order */
    size_t nnet;
    int *final_metas; /* metas left for the end */
    size_t nfinal;
} tamis__schedule_t;

/* Schedules by score set (0-3), +4 when net evals are deferred to the scan's callback. */
#define TAMIS__NSCHED 8

struct tamis_ruleset {
    atomic_int refs;
    tamis_arena_t *arena;
    tamis_conf_t *conf;

    tamis__rule_t **rules; /* every named entry, definition order */
    size_t nrules, rules_cap;
    uint32_t *hash; /* index + 1, 0 = empty */
    size_t hash_size;

    int *order; /* runnable rules sorted by (priority, phase, index) */
    size_t norder;
    int *metas; /* meta rules in dependency order */
    size_t nmetas;
    tamis__schedule_t sched[TAMIS__NSCHED]; /* lists in arena */

    /* ReplaceTags */
    tamis__kv_t *tags[4]; /* replace_tag, replace_pre, replace_inter, replace_post */
    size_t ntags[4];
    char *tag_start, *tag_end;

    /* URIDNSBL declarations (uridnsbl, urirhssub …), kept for the network layer */
    tamis__kv_t *uridnsbl;
    size_t nuridnsbl;
    /* dns_block_rule lines ("RULE zone…" → directive), for the network layer */
    tamis__kv_t *dns_block;
    size_t ndns_block;
    /* "# UPDATE version N" lines (sa-update channels): file → N, and their join for
     * _RULESVERSION_ (file names sorted, values joined with ","; "" when there are none) */
    tamis__kv_t *update_versions;
    size_t nupdate_versions;
    const char *rules_version;
    /* redirector_pattern lines as PCRE sources with inline options (name; value unused), and
     * their compiled form for lib/msg, made at the end of loading */
    tamis__kv_t *redirector_src;
    size_t nredirector_src;
    tamis_msg_redirectors_t *redirectors;

    /* freemail_domains indexed for lookups: exact names sorted for bsearch, then the globs */
    const char **freemail_exact;
    size_t nfreemail_exact;
    const char **freemail_wild;
    size_t nfreemail_wild;
    /* the net eval rules (tamis__net_index), so the per-message planner need not walk them all */
    const tamis__rule_t **net_rules;
    size_t nnet_rules;

    /* loadplugin names, and plugins Tamis claims among them */
    char **plugins;
    size_t nplugins;

    const uint8_t *tables; /* Latin-1 character tables for /aa-style folding */
    pcre2_compile_context *cctx;

    tamis__prefilter_t *pf; /* multi-pattern prefilter (prefilter.c), NULL = PCRE2 alone */

    size_t count_by_type[TAMIS_RULE_EVAL_FULL + 1];
    size_t dropped;
    size_t unsupported;
    double load_ms;
};

/* Sets name → value in a realloc'd list (parse.c); replaces an existing name. */
int tamis__kv_set(tamis_ruleset_t *rs, tamis__kv_t **list, size_t *n, const char *name,
                  const char *value);

/* rule table (ruleset.c) */
tamis__rule_t *tamis__rule_get(tamis_ruleset_t *rs, const char *name, bool create);
tamis__rule_t *tamis__rule_find(const tamis_ruleset_t *rs, const char *name);
tamis_ruleset_t *tamis__ruleset_new(void);

/* Builds the freemail_domains index of rs from its conf (eval_header.c). */
int tamis__freemail_index(tamis_ruleset_t *rs);
/* Lists the net eval rules (after tamis__finish); arena memory. TAMIS_ENOMEM. */
int tamis__net_index(tamis_ruleset_t *rs);

/* Plugin and feature claims (plugins.c). */
bool tamis__plugin_claimed(const char *name);
bool tamis__plugin_loaded(const tamis_ruleset_t *rs, const char *name);
int tamis__can(const tamis_ruleset_t *rs, const char *func, bool has);

/* Definition parsing (parse.c): one rule directive (header, body …) or attribute. Returns 1 when
 * key was a rule directive, 0 when not, negative on allocation failure. */
int tamis__parse_rule_directive(tamis_ruleset_t *rs, const char *key, const char *value,
                                const char *file, unsigned line, tamis_diag_t *diag);
int tamis__parse_eval(tamis_ruleset_t *rs, tamis__rule_t *r, const char *text);

/* ReplaceTags (parse.c): rewrites pattern for rule r; returns a malloc'ed string or NULL. */
char *tamis__replace_tags(const tamis_ruleset_t *rs, const char *pattern);

/* Compiling (compile.c): regexes, metas, priorities, order. */
int tamis__finish(tamis_ruleset_t *rs, tamis_diag_t *diag);

/* Run schedules (schedule.c). Makes rs->sched from the final rules, order and metas. */
int tamis__schedule_build(tamis_ruleset_t *rs);
/* Regex source "/re/mods" or "m{re}mods" → pattern and PCRE2 options. Returns 0 or
 * TAMIS_EPARSE with a message in err. */
int tamis__regex_split(const char *text, size_t *consumed, char **pattern_out, uint32_t *flags_out,
                       tamis_arena_t *a, char *err, size_t errlen);
pcre2_code *tamis__regex_compile(const tamis_ruleset_t *rs, const char *pattern, uint32_t flags,
                                 bool jit, char *err, size_t errlen);
const uint8_t *tamis__latin1_tables(void);
/* The pattern text PCRE2 compiles for pattern (Perl-to-PCRE2 rewriting applied); malloc'ed, NULL
 * on allocation failure. The prefilter compiles the same text. */
char *tamis__regex_source(const char *pattern);
/* regex32.c: the 32-bit fallback (see there). */
void *tamis__re32_compile(const uint8_t *tables, const char *pattern, uint32_t flags, char *err,
                          size_t errlen);
void tamis__re32_free(void *re);
int tamis__re32_match(void *re, const char *s, size_t len, size_t start, size_t *ms, size_t *me);

/*
 * Prefilter (prefilter.c): Vectorscan databases of the header (per header expression), body,
 * rawbody, full and uri regexes. A scan of a group's texts marks the candidate rules; a rule of
 * a group that is not a candidate cannot match (prefilter mode finds a superset of the matches),
 * so PCRE2 only confirms candidates. Without TAMIS_HAVE_HS every function is a no-op.
 */
/* pf_shrink.c: a shorter pattern matching a superset of pattern (high-byte and digit alternatives
 * merged), for the database only; malloc'ed, NULL when the syntax is not handled or on allocation
 * failure (the caller keeps pattern). */
char *tamis__pf_shrink(const char *pattern);
/* The value of a \xHH or \x{HH} escape at p (p[0] = '\\', p[1] = 'x'), -1 when the brace is not
 * closed; *len its length. */
int tamis__regex_hex_escape(const char *p, size_t *len);
int tamis__pf_build(tamis_ruleset_t *rs, const char *cache_dir, tamis_diag_t *diag);
void tamis__pf_free(tamis__prefilter_t *pf);
/* The group of rule index i, or -1 when the rule is always matched by PCRE2. */
int tamis__pf_group(const tamis__prefilter_t *pf, int i);
size_t tamis__pf_group_count(const tamis__prefilter_t *pf);
/* Scans texts get(ctx, 0..count-1) with group g's database; for every rule of the group found
 * in text k, cand[rule] becomes min(cand[rule], k + 1) (0 = not a candidate). Returns 0, or -1
 * when the scan failed (the caller then treats every rule of the group as a candidate). */
int tamis__pf_scan(const tamis__prefilter_t *pf, int g, tamis_slice_t (*get)(const void *, size_t),
                   const void *ctx, size_t count, uint32_t *cand);
int tamis__meta_compile(tamis_ruleset_t *rs, tamis__rule_t *r, char *err, size_t errlen);
double tamis__meta_eval(const tamis__meta_t *m, const double *values, bool *error);

/* Running helpers (run.c) used by header.c/memo.c. */
struct tamis__memo {
    const void **keys;
    void **values;
    size_t count, cap;
};

#endif
