/*
 * DNS-based evals (DNSEval, URIDNSBL, AskDNS). The rule engine does no network I/O: these are
 * marked net and delegated to opts->net_eval, which the scan layer connects to its resolver.
 * Without a resolver they never hit, as in SpamAssassin with DNS unavailable.
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
    {NULL, NULL, 0, false},
};
