/*
 * The rule set object: reference counting, the name → rule table, and the table of plugins and
 * feature functions Tamis claims to the .cf preprocessor (plugin(), can(), has()).
 */
#include "rules/rules_int.h"

#include <stdlib.h>
#include <string.h>

/*
 * Plugins Tamis claims (spec-rules §1.3). A plugin is claimed only when Tamis runs its rules or
 * implements (or delegates) its eval functions; `ifplugin` of anything else is false, so those
 * rules are not defined at all, exactly as SpamAssassin behaves without the plugin.
 *
 * | plugin            | why claimed                                                         |
 * |-------------------|---------------------------------------------------------------------|
 * | Check             | the rule engine itself                                              |
 * | ReplaceTags       | replace_tag/replace_rules are implemented here                      |
 * | MIMEHeader        | mimeheader rules are implemented here                               |
 * | HeaderEval        | header evals (eval_header.c)                                        |
 * | BodyEval          | body evals (eval_body.c)                                            |
 * | MIMEEval          | MIME evals (eval_body.c)                                            |
 * | HTMLEval          | HTML evals (eval_body.c)                                            |
 * | RelayEval         | relay evals (eval_relay.c)                                          |
 * | WLBLEval          | welcome/block lists (eval_header.c)                                 |
 * | FreeMail          | freemail evals (eval_header.c)                                      |
 * | DNSEval           | check_rbl* delegated to the network layer (eval_net.c)              |
 * | URIDNSBL          | check_uridnsbl delegated to the network layer                       |
 * | AskDNS            | askdns rules delegated to the network layer                         |
 * | Bayes             | check_bayes (Bayes probability comes from run options)              |
 * | AutoLearnThreshold| thresholds are conf settings                                        |
 * | SPF, DKIM, DMARC  | check_for_spf_*, check_dkim_*, check_dmarc_* delegated to lib/auth  |
 * 25_dmarc.cf tests the old name `ifplugin …::Dmarc`; SpamAssassin's parser maps it to DMARC
 * (Conf/Parser.pm), and so does load.c, so the stock DMARC_* rules are defined.
 * Not claimed (rules hidden): Pyzor, Razor2, DCC, SpamCop, AWL, TxRep, TextCat,
 * ImageInfo, PDFInfo, HashBL, URIDetail, URIEval, HTTPSMismatch, VBounce, WelcomeListSubject,
 * Rule2XSBody, AntiVirus, AccessDB, ASN, FromNameSpoof, Shortcircuit, DecodeShortURLs, Phishing …
 */
static const char *const claimed_plugins[] = {
    "Check",    "ReplaceTags", "MIMEHeader", "HeaderEval", "BodyEval",
    "MIMEEval", "HTMLEval",    "RelayEval",  "WLBLEval",   "FreeMail",
    "DNSEval",  "URIDNSBL",    "AskDNS",     "Bayes",      "AutoLearnThreshold",
    "SPF",      "DKIM",        "DMARC",      NULL,
};

/*
 * Feature functions for can()/has(). Conf:: features are those SpamAssassin 4.0.1 defines, all
 * true, since Tamis accepts (or deliberately ignores) the settings they announce.
 * compat_welcomelist_blocklist does not exist in 4.0.1 and is therefore false.
 * Plugin features are answered only while that plugin is loaded and claimed.
 */
typedef struct {
    const char *name;
    bool value;
} feature_t;

static const feature_t features[] = {
    {"Mail::SpamAssassin::Conf::feature_originating_ip_headers", true},
    {"Mail::SpamAssassin::Conf::feature_dns_local_ports_permit_avoid", true},
    {"Mail::SpamAssassin::Conf::feature_bayes_auto_learn_on_error", true},
    {"Mail::SpamAssassin::Conf::feature_uri_host_listed", true},
    {"Mail::SpamAssassin::Conf::feature_yesno_takes_args", true},
    {"Mail::SpamAssassin::Conf::feature_bug6558_free", true},
    {"Mail::SpamAssassin::Conf::feature_edns", true},
    {"Mail::SpamAssassin::Conf::feature_dns_query_restriction", true},
    {"Mail::SpamAssassin::Conf::feature_registryboundaries", true},
    {"Mail::SpamAssassin::Conf::feature_geodb", true},
    {"Mail::SpamAssassin::Conf::feature_dns_block_rule", true},
    {"Mail::SpamAssassin::Conf::feature_compile_regexp", true},
    {"Mail::SpamAssassin::Conf::feature_meta_rules_matching", true},
    {"Mail::SpamAssassin::Conf::feature_subjprefix", true},
    {"Mail::SpamAssassin::Conf::feature_bayes_stopwords", true},
    {"Mail::SpamAssassin::Conf::feature_get_host", true},
    {"Mail::SpamAssassin::Conf::feature_blocklist_welcomelist", true},
    {"Mail::SpamAssassin::Conf::feature_welcomelist_blocklist", true},
    {"Mail::SpamAssassin::Conf::feature_header_address_parser", true},
    {"Mail::SpamAssassin::Conf::feature_local_tests_only", true},
    {"Mail::SpamAssassin::Conf::feature_header_first_last", true},
    {"Mail::SpamAssassin::Conf::feature_header_match_many", true},
    {"Mail::SpamAssassin::Conf::feature_capture_rules", true},
    {"Mail::SpamAssassin::Conf::perl_min_version_5010000", true},
    {"Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length", true},
    {"Mail::SpamAssassin::Plugin::BodyEval::has_plaintext_body_sig_ratio", true},
    {"Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_domains_only", true},
    {"Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_ips_only", true},
    {"Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_for_a", true},
    {"Mail::SpamAssassin::Plugin::MIMEEval::has_check_for_ascii_text_illegal", true},
    {"Mail::SpamAssassin::Plugin::AskDNS::has_tag_header", true},
    /* T_SPF_PERMERROR & co. (lib/auth); DKIM::has_arc stays false: no ARC */
    {"Mail::SpamAssassin::Plugin::SPF::has_check_for_spf_errors", true},
    {NULL, false},
};

static const char *plugin_short(const char *name)
{
    static const char prefix[] = "Mail::SpamAssassin::Plugin::";
    if (strncmp(name, prefix, sizeof(prefix) - 1) == 0)
        return name + sizeof(prefix) - 1;
    return NULL;
}

bool tamis__plugin_claimed(const char *name)
{
    const char *s = plugin_short(name);
    if (!s)
        return false;
    for (size_t i = 0; claimed_plugins[i]; i++)
        if (strcmp(claimed_plugins[i], s) == 0)
            return true;
    return false;
}

bool tamis__plugin_loaded(const tamis_ruleset_t *rs, const char *name)
{
    if (!tamis__plugin_claimed(name))
        return false;
    for (size_t i = 0; i < rs->nplugins; i++)
        if (strcmp(rs->plugins[i], name) == 0)
            return true;
    return false;
}

int tamis__can(const tamis_ruleset_t *rs, const char *func, bool has)
{
    for (size_t i = 0; features[i].name; i++) {
        if (strcmp(features[i].name, func) != 0)
            continue;
        const char *last = strrchr(func, ':');
        if (plugin_short(func)) { /* plugin function: only while the plugin is loaded */
            char pkg[256];
            size_t n = (size_t)(last - 1 - func);
            if (n >= sizeof(pkg))
                return 0;
            memcpy(pkg, func, n);
            pkg[n] = 0;
            if (!tamis__plugin_loaded(rs, pkg))
                return 0;
        }
        return has ? 1 : features[i].value;
    }
    return 0;
}

/* ---- name table -------------------------------------------------------------------------------
 */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int rehash(tamis_ruleset_t *rs, size_t size)
{
    uint32_t *t = calloc(size, sizeof(*t));
    if (!t)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < rs->nrules; i++) {
        size_t j = hash_name(rs->rules[i]->name) & (size - 1);
        while (t[j])
            j = (j + 1) & (size - 1);
        t[j] = (uint32_t)i + 1;
    }
    free(rs->hash);
    rs->hash = t;
    rs->hash_size = size;
    return 0;
}

tamis__rule_t *tamis__rule_find(const tamis_ruleset_t *rs, const char *name)
{
    if (!rs->hash_size)
        return NULL;
    size_t j = hash_name(name) & (rs->hash_size - 1);
    while (rs->hash[j]) {
        tamis__rule_t *r = rs->rules[rs->hash[j] - 1];
        if (strcmp(r->name, name) == 0)
            return r;
        j = (j + 1) & (rs->hash_size - 1);
    }
    return NULL;
}

static tamis__rule_t *rule_create(tamis_ruleset_t *rs, const char *name)
{
    if (rs->nrules >= TAMIS__MAX_RULES)
        return NULL;
    if ((rs->nrules + 1) * 2 > rs->hash_size &&
        rehash(rs, rs->hash_size ? rs->hash_size * 2 : 4096))
        return NULL;
    if (rs->nrules == rs->rules_cap) {
        size_t nc = rs->rules_cap ? rs->rules_cap * 2 : 1024;
        tamis__rule_t **a = realloc(rs->rules, nc * sizeof(*a));
        if (!a)
            return NULL;
        rs->rules = a;
        rs->rules_cap = nc;
    }
    tamis__rule_t *r = tamis_arena_calloc(rs->arena, 1, sizeof(*r));
    if (!r || !(r->name = tamis_arena_strdup(rs->arena, name)))
        return NULL;
    r->kind = TAMIS__K_NONE;
    r->index = (int)rs->nrules;
    rs->rules[rs->nrules++] = r;
    size_t j = hash_name(name) & (rs->hash_size - 1);
    while (rs->hash[j])
        j = (j + 1) & (rs->hash_size - 1);
    rs->hash[j] = (uint32_t)rs->nrules;
    return r;
}

/* The entry for name, created on demand; NULL on allocation failure or the rule limit. */
tamis__rule_t *tamis__rule_get(tamis_ruleset_t *rs, const char *name, bool create)
{
    tamis__rule_t *r = tamis__rule_find(rs, name);
    if (r || !create)
        return r;
    return rule_create(rs, name);
}

tamis_ruleset_t *tamis__ruleset_new(void)
{
    tamis_ruleset_t *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NULL;
    atomic_init(&rs->refs, 1);
    rs->arena = tamis_arena_new(256 * 1024);
    rs->conf = tamis_conf_new();
    rs->cctx = pcre2_compile_context_create(NULL);
    rs->tables = tamis__latin1_tables();
    if (!rs->arena || !rs->conf || !rs->cctx) {
        tamis_rules_unref(rs);
        return NULL;
    }
    if (rs->tables)
        pcre2_set_character_tables(rs->cctx, rs->tables);
    rs->tag_start = "<";
    rs->tag_end = ">";
    return rs;
}

tamis_ruleset_t *tamis_rules_ref(tamis_ruleset_t *rs)
{
    if (rs)
        atomic_fetch_add(&rs->refs, 1);
    return rs;
}

void tamis_rules_unref(tamis_ruleset_t *rs)
{
    if (!rs || atomic_fetch_sub(&rs->refs, 1) != 1)
        return;
    for (size_t i = 0; i < rs->nrules; i++) {
        pcre2_code_free(rs->rules[i]->re);
        tamis__re32_free(rs->rules[i]->re32);
    }
    tamis__pf_free(rs->pf);
    free(rs->rules);
    free(rs->hash);
    free(rs->order);
    free(rs->metas);
    for (int i = 0; i < 4; i++)
        free(rs->tags[i]);
    free(rs->uridnsbl);
    free(rs->dns_block);
    free(rs->update_versions);
    free(rs->redirector_src);
    tamis_msg_redirectors_free(rs->redirectors);
    pcre2_maketables_free(NULL, rs->tables);
    free(rs->plugins);
    pcre2_compile_context_free(rs->cctx);
    tamis_conf_free(rs->conf);
    tamis_arena_free(rs->arena);
    free(rs);
}

const tamis_conf_t *tamis_rules_conf(const tamis_ruleset_t *rs)
{
    return rs ? rs->conf : NULL;
}

const tamis_msg_redirectors_t *tamis_rules_redirectors(const tamis_ruleset_t *rs)
{
    return rs ? rs->redirectors : NULL;
}

const char *tamis_rules_version(const tamis_ruleset_t *rs)
{
    return rs && rs->rules_version ? rs->rules_version : "";
}

bool tamis_rules_score_of(const tamis_ruleset_t *rs, const char *name, int score_set, double *score,
                          const char **desc)
{
    const tamis__rule_t *r = rs && name ? tamis__rule_find(rs, name) : NULL;
    if (desc)
        *desc = r ? r->desc : NULL;
    if (!r || !r->scored)
        return false;
    if (score)
        *score = r->score[score_set & 3];
    return true;
}

size_t tamis_rules_count(const tamis_ruleset_t *rs)
{
    if (!rs)
        return 0;
    size_t n = 0;
    for (size_t t = 0; t <= TAMIS_RULE_EVAL_FULL; t++)
        n += rs->count_by_type[t];
    return n;
}
