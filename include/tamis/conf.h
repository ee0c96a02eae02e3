/*
 * conf: the settings shared by every front end, as written in SpamAssassin's .cf language
 * (required_score, report_safe, add_header, rewrite_header, report templates, trusted networks,
 * welcomelist/blocklist …; spec-rules.md §2.2, §6).
 *
 * One settings table (lib/conf/conf.c) drives parsing, validation, --lint and a dump of the
 * non-default settings with the file:line that set them. The rule parser (lib/rules) hands every
 * directive that is not a rule definition to tamis_conf_apply().
 *
 * Ownership: a tamis_conf_t is owned by the rule set it was loaded with (tamis_rules_conf()); all
 * its strings and arrays belong to it. Readers treat it as immutable; it lives as long as its rule
 * set. Threads: read-only after loading, so any thread may read it.
 */
#ifndef TAMIS_CONF_H
#define TAMIS_CONF_H

#include "tamis/core.h"

#include <netinet/in.h>

/* When an add_header line applies. */
enum { TAMIS_CONF_HAM = 1, TAMIS_CONF_SPAM = 2, TAMIS_CONF_ALL = 3 };

typedef struct {
    unsigned when;  /* TAMIS_CONF_HAM / _SPAM / _ALL */
    char *name;     /* without the X-Spam- prefix, e.g. "Status" */
    char *template; /* value template with _TAGS_ (escapes already processed) */
} tamis_conf_header_t;

/* One CIDR entry of trusted/internal/msa networks. */
typedef struct {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
    bool exclude; /* written with a leading '!' */
} tamis_cidr_t;

typedef struct {
    tamis_cidr_t *items;
    size_t count;
    bool set; /* configured explicitly (else trust is inferred) */
} tamis_cidr_list_t;

/* An address pattern list (welcomelist_from etc.): file globs, lower-case. rcvd is the relay
 * domain or [ip/len] of *_from_rcvd entries, NULL otherwise. */
typedef struct {
    char *pattern;
    char *rcvd;
} tamis_addr_pattern_t;

typedef struct {
    tamis_addr_pattern_t *items;
    size_t count;
} tamis_addr_list_t;

/* A named list: enlist_addrlist (NAME) … / enlist_uri_host (NAME) … */
typedef struct {
    char *name;
    tamis_addr_list_t list;
} tamis_named_list_t;

typedef struct tamis_conf {
    /* scoring */
    double required_score; /* required_score / required_hits, default 5 */

    /* marking (spec-protocol §6) */
    int report_safe;            /* 0, 1, 2; default 1 */
    bool fold_headers;          /* default 1 */
    unsigned report_wrap_width; /* default 75 */
    char *rewrite_subject;      /* rewrite_header Subject STRING, NULL if unset */
    char *rewrite_from;
    char *rewrite_to;
    tamis_conf_header_t *headers; /* add_header list in order (defaults included) */
    size_t header_count;
    char **report_safe_copy_headers;
    size_t report_safe_copy_header_count;
    char *report_template;        /* "report" lines joined, each ending in '\n' */
    char *unsafe_report_template; /* "unsafe_report" lines */
    char *report_contact;
    char *report_hostname; /* "" = use the host name */
    char *report_charset;  /* default "UTF-8" ("" in SA means no charset) */
    bool lang_skipped;     /* informational */

    /* network trust */
    tamis_cidr_list_t trusted_networks;
    tamis_cidr_list_t internal_networks;
    tamis_cidr_list_t msa_networks;
    char *envelope_sender_header; /* NULL if unset */

    /* lists */
    tamis_addr_list_t welcomelist_from; /* also whitelist_from; unwelcomelist_from removes */
    tamis_addr_list_t blocklist_from;
    tamis_addr_list_t welcomelist_from_rcvd;
    tamis_addr_list_t def_welcomelist_from_rcvd;
    tamis_addr_list_t welcomelist_auth, def_welcomelist_auth;
    tamis_addr_list_t welcomelist_to, more_spam_to, all_spam_to, blocklist_to;
    tamis_named_list_t *addrlists;
    size_t addrlist_count;
    tamis_named_list_t *uri_host_lists;
    size_t uri_host_list_count;
    tamis_addr_list_t freemail_domains;
    tamis_addr_list_t freemail_welcomelist;
    tamis_addr_list_t uridnsbl_skip_domains;

    /* learning and network switches (used by later issues) */
    bool use_bayes;                                 /* default 1 */
    bool use_bayes_rules;                           /* default 1 */
    bool bayes_auto_learn;                          /* default 1 */
    double bayes_auto_learn_threshold_nonspam;      /* 0.1 */
    double bayes_auto_learn_threshold_spam;         /* 12.0 */
    unsigned bayes_min_ham_num, bayes_min_spam_num; /* 200 */
    bool skip_rbl_checks;                           /* default 0 */
    double rbl_timeout;                             /* default 15 */

    /* network tests (docs/dns.md) */
    char *dns_servers;             /* dns_server lines joined with ',' ("" = /etc/resolv.conf) */
    unsigned num_check_received;   /* untrusted relays checked by check_rbl; default 9 */
    unsigned uridnsbl_max_domains; /* URI domains looked up per message; default 20 */
    bool uridnsbl_skip_mailto;     /* no lookups of mailto: domains; default 1 */
    unsigned dns_max_queries;      /* Tamis: DNS queries per message; default 256 */

    /* Settings the table knows but Tamis does not act on yet, kept for --lint and the dump. */
    void *internal; /* private to lib/conf */
} tamis_conf_t;

/* A conf with SpamAssassin's built-in defaults (before any file is read). Free with
 * tamis_conf_free(). NULL on allocation failure. */
tamis_conf_t *tamis_conf_new(void);
void tamis_conf_free(tamis_conf_t *c);

/* Result of tamis_conf_apply(). */
enum {
    TAMIS_CONF_APPLIED = 0, /* the directive was a known setting and was applied */
    TAMIS_CONF_UNKNOWN = 1, /* not a setting this table knows (the caller may warn) */
    TAMIS_CONF_IGNORED = 2, /* known but deliberately ignored (plugin settings Tamis lacks) */
};

/* Applies one directive ("required_score", "5") read at file:line. Bad values are reported in
 * diag as warnings with file:line and leave the setting unchanged; returns one of the values above
 * or a negative TAMIS_E* on allocation failure. The key is already lower-cased with '-' → '_'. */
int tamis_conf_apply(tamis_conf_t *c, const char *key, const char *value, const char *file,
                     unsigned line, tamis_diag_t *diag);

/* Writes one line per setting that differs from its default: "key value  # file:line". */
int tamis_conf_dump(const tamis_conf_t *c, tamis_buf_t *out);

/* Is addr inside the list? First match wins; an exclude entry that matches gives false. */
bool tamis_conf_cidr_match(const tamis_cidr_list_t *l, const char *ip);
/* Parses "10.0.0.0/8", "!192.168.", "[2001:db8::]/32", "127/8"… into *out. */
int tamis_conf_cidr_parse(const char *text, tamis_cidr_t *out);
/* Case-insensitive glob match of an address against a pattern list entry. */
bool tamis_conf_addr_match(const char *pattern, const char *addr);

#endif
