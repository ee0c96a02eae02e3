/*
 * DNS-based evals (DNSEval, URIDNSBL, AskDNS, and the SPF, DKIM and DMARC plugins). The rule
 * engine does no network I/O: these are marked net and delegated to opts->net_eval, which the
 * scan layer connects to its resolver (the mail-authentication ones to tamis_auth_eval, see
 * include/tamis/auth.h). Without a resolver they never hit, as in SpamAssassin with DNS
 * unavailable.
 *
 * check_arc_* (ARC) rules are not defined: can(DKIM::has_arc) is false.
 */
#include "rules/eval.h"

#define NET(n)                                                                                     \
    {                                                                                              \
        n, NULL, TAMIS_EVAL_ANY, true                                                              \
    }

const tamis_eval_def_t tamis__evals_net[] = {
    NET("check_rbl"),
    NET("check_rbl_txt"),
    NET("check_rbl_sub"),
    NET("check_rbl_envfrom"),
    NET("check_rbl_from_host"),
    NET("check_rbl_from_domain"),
    NET("check_rbl_ns_from"),
    NET("check_rbl_rcvd"),
    NET("check_rbl_headers"),
    NET("check_rbl_url"),
    NET("check_rbl_accreditor"),
    NET("check_dns_sender"),
    NET("check_uridnsbl"),
    NET("askdns"),
    /* SPF (lib/auth): the envelope sender and the HELO name */
    NET("check_for_spf_pass"),
    NET("check_for_spf_neutral"),
    NET("check_for_spf_none"),
    NET("check_for_spf_fail"),
    NET("check_for_spf_softfail"),
    NET("check_for_spf_permerror"),
    NET("check_for_spf_temperror"),
    NET("check_for_spf_helo_pass"),
    NET("check_for_spf_helo_neutral"),
    NET("check_for_spf_helo_none"),
    NET("check_for_spf_helo_fail"),
    NET("check_for_spf_helo_softfail"),
    NET("check_for_spf_helo_permerror"),
    NET("check_for_spf_helo_temperror"),
    /* DKIM (lib/auth) */
    NET("check_dkim_signed"),
    NET("check_dkim_valid"),
    NET("check_dkim_verified"),
    NET("check_dkim_valid_author_sig"),
    NET("check_dkim_valid_envelopefrom"),
    NET("check_dkim_dependable"),
    NET("check_dkim_signsome"),
    NET("check_dkim_testing"),
    NET("check_dkim_adsp"),
    NET("check_dkim_signall"),
    /* their welcome lists (welcomelist_from_spf/_dkim, welcomelist_auth, def_ variants) */
    NET("check_for_spf_welcomelist_from"),
    NET("check_for_spf_whitelist_from"),
    NET("check_for_def_spf_welcomelist_from"),
    NET("check_for_def_spf_whitelist_from"),
    NET("check_for_dkim_welcomelist_from"),
    NET("check_for_dkim_whitelist_from"),
    NET("check_for_def_dkim_welcomelist_from"),
    NET("check_for_def_dkim_whitelist_from"),
    /* DMARC (lib/auth) */
    NET("check_dmarc_pass"),
    NET("check_dmarc_reject"),
    NET("check_dmarc_quarantine"),
    NET("check_dmarc_none"),
    NET("check_dmarc_missing"),
    {NULL, NULL, 0, false},
};
