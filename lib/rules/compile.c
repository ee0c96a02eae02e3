/*
 * Finishing a loaded rule set (Parser::finish_parsing): compile every regex (after ReplaceTags),
 * resolve evals against the native table, compile metas, give unscored rules their default score,
 * fix priorities (net rules −100, capture rules −10000, meta dependencies pulled down to their
 * meta), order metas by dependency (cycles disable the meta) and sort the run order.
 */
#include "rules/rules_int.h"

#include <stdlib.h>
#include <string.h>

static int phase_of(const tamis__rule_t *r)
{
    switch (r->type) {
    case TAMIS_RULE_HEADER:
        return TAMIS__PH_HEADER;
    case TAMIS_RULE_EVAL_HEADER:
        return TAMIS__PH_HEADER_EVAL;
    case TAMIS_RULE_BODY:
        return TAMIS__PH_BODY;
    case TAMIS_RULE_URI:
        return TAMIS__PH_URI;
    case TAMIS_RULE_EVAL_BODY:
        return TAMIS__PH_BODY_EVAL;
    case TAMIS_RULE_RAWBODY:
        return TAMIS__PH_RAWBODY;
    case TAMIS_RULE_EVAL_RAWBODY:
        return TAMIS__PH_RAWBODY_EVAL;
    case TAMIS_RULE_FULL:
        return TAMIS__PH_FULL;
    case TAMIS_RULE_EVAL_FULL:
        return TAMIS__PH_FULL_EVAL;
    case TAMIS_RULE_MIMEHEADER: /* MIMEHeader registers its rules as body evals */
        return TAMIS__PH_BODY_EVAL;
    case TAMIS_RULE_META:
        return TAMIS__PH_META;
    }
    return TAMIS__PH_META;
}

/* Parser::parse_captures: %{NAME} templates and named groups that export tags. */
static void scan_captures(tamis__rule_t *r, const char *pat)
{
    for (const char *p = strstr(pat, "%{"); p; p = strstr(p + 1, "%{"))
        if ((p == pat || p[-1] != '\\') && p[2] >= 'A' && p[2] <= 'Z')
            r->has_template = true;
    for (const char *p = strstr(pat, "(?"); p; p = strstr(p + 1, "(?")) {
        const char *q = p + 2;
        if (*q == 'P')
            q++;
        if ((*q == '<' || *q == '\'') && q[1] >= 'A' && q[1] <= 'Z')
            r->captures = true;
    }
}

/* A rule scored 0 in every set never runs (spec-rules §8): compiled for --lint, but its JIT code
 * would only take memory. */
static bool scored_zero(const tamis__rule_t *r)
{
    return r->scored && r->score[0] == 0 && r->score[1] == 0 && r->score[2] == 0 &&
           r->score[3] == 0;
}

static int compile_regex_rule(tamis_ruleset_t *rs, tamis__rule_t *r, tamis_diag_t *diag)
{
    char err[256];
    char *pat;
    uint32_t flags;
    int rc = tamis__regex_split(r->def, NULL, &pat, &flags, rs->arena, err, sizeof(err));
    if (rc == TAMIS_ENOMEM)
        return rc;
    if (rc == 0 && r->replace_tags) {
        char *rep = tamis__replace_tags(rs, pat);
        if (!rep) {
            rc = tamis_seterr(err, sizeof(err), TAMIS_ELIMIT, "ReplaceTags result too long");
        } else {
            pat = tamis_arena_strdup(rs->arena, rep);
            free(rep);
            if (!pat)
                return TAMIS_ENOMEM;
        }
    }
    if (rc == 0) {
        scan_captures(r, pat);
        r->pattern = pat;
        r->re_flags = flags;
        /* a template rule is compiled per message once its tags are known */
        if (!r->has_template &&
            !(r->re = tamis__regex_compile(rs, pat, flags, !scored_zero(r), err, sizeof(err))))
            rc = TAMIS_EPARSE;
        if (rc && strstr(err, "too large") &&
            (r->re32 = tamis__re32_compile(rs->tables, pat, flags, err, sizeof(err))) != NULL)
            rc = 0;
    }
    if (rc) {
        tamis_diag_add(diag, TAMIS_DIAG_WARN, r->file, r->line, "invalid regexp for %s '%s': %s",
                       r->name, r->def, err);
        r->dropped = true;
        r->error = tamis_arena_printf(rs->arena, "invalid regexp: %s", err);
    }
    return 0;
}

static unsigned eval_mask(tamis_rule_type_t t)
{
    switch (t) {
    case TAMIS_RULE_EVAL_HEADER:
        return TAMIS_EVAL_HEADER;
    case TAMIS_RULE_EVAL_BODY:
        return TAMIS_EVAL_BODY;
    case TAMIS_RULE_EVAL_RAWBODY:
        return TAMIS_EVAL_RAWBODY | TAMIS_EVAL_BODY; /* SA allows body evals in rawbody */
    case TAMIS_RULE_EVAL_FULL:
        return TAMIS_EVAL_FULL;
    default:
        return 0;
    }
}

static void resolve_eval(tamis_ruleset_t *rs, tamis__rule_t *r, tamis_diag_t *diag)
{
    r->ev = tamis__eval_lookup(r->func);
    if (!r->ev) {
        r->unsupported = true;
        rs->unsupported++;
        return;
    }
    if (r->ev->types && !(r->ev->types & eval_mask(r->type))) {
        tamis_diag_add(diag, TAMIS_DIAG_WARN, r->file, r->line,
                       "wrong rule type defined for %s (eval %s)", r->name, r->func);
        r->dropped = true;
        r->error = "wrong rule type for its eval function";
    }
}

static void default_score(tamis__rule_t *r)
{
    if (r->scored)
        return;
    double s = strncmp(r->name, "T_", 2) == 0 ? 0.01 : 1.0;
    if (r->tflags & TAMIS_TFLAG_NICE)
        s = -s;
    for (int i = 0; i < 4; i++)
        r->score[i] = s;
}

static int compile_rule(tamis_ruleset_t *rs, tamis__rule_t *r, tamis_diag_t *diag)
{
    if (r->kind == TAMIS__K_NONE || r->dropped)
        return 0;
    int rc = 0;
    if (r->kind == TAMIS__K_REGEX)
        rc = compile_regex_rule(rs, r, diag);
    else if (r->kind == TAMIS__K_EVAL)
        resolve_eval(rs, r, diag);
    else if (r->kind == TAMIS__K_META) {
        char err[512];
        rc = tamis__meta_compile(rs, r, err, sizeof(err));
        if (rc && rc != TAMIS_ENOMEM) {
            tamis_diag_add(diag, TAMIS_DIAG_WARN, r->file, r->line, "%s", err);
            r->dropped = true;
            r->error = tamis_arena_strdup(rs->arena, err);
            rc = 0;
        }
    }
    return rc;
}

/* ---- priorities and meta order ------------------------------------------------------------------
 */

static bool active(const tamis__rule_t *r)
{
    return r->kind != TAMIS__K_NONE && !r->dropped;
}

static int cmp_by_priority(const void *a, const void *b, void *ctx)
{
    const tamis_ruleset_t *rs = ctx;
    const tamis__rule_t *x = rs->rules[*(const int *)a];
    const tamis__rule_t *y = rs->rules[*(const int *)b];
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->phase != y->phase)
        return x->phase < y->phase ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void set_priorities(tamis_ruleset_t *rs)
{
    for (size_t i = 0; i < rs->nrules; i++) {
        tamis__rule_t *r = rs->rules[i];
        if (!r->priority_set)
            r->priority = (r->tflags & TAMIS_TFLAG_NET) ? -100 : 0;
        if (r->captures)
            r->priority = -10000;
        r->phase = phase_of(r);
    }
}

/* Parser::fix_priorities: metas in ascending priority pull later dependencies down. */
static int fix_priorities(tamis_ruleset_t *rs, int *metas, size_t n)
{
    int *sorted = malloc((n ? n : 1) * sizeof(int));
    if (!sorted)
        return TAMIS_ENOMEM;
    memcpy(sorted, metas, n * sizeof(int));
    qsort_r(sorted, n, sizeof(int), cmp_by_priority, rs);
    for (size_t i = 0; i < n; i++) {
        tamis__rule_t *m = rs->rules[sorted[i]];
        for (size_t j = 0; j < m->ndeps; j++) {
            tamis__rule_t *d = rs->rules[m->deps[j]];
            if (d->priority > m->priority) {
                if (m->priority < -100 && (d->tflags & TAMIS_TFLAG_NET))
                    d->priority = -100;
                else
                    d->priority = m->priority;
            }
        }
    }
    free(sorted);
    return 0;
}

/* Topological order of metas (Kahn on meta→meta edges); metas left in a cycle are disabled. */
static int order_metas(tamis_ruleset_t *rs, int *metas, size_t n, tamis_diag_t *diag)
{
    int *pending = calloc(rs->nrules, sizeof(int)); /* unresolved meta deps per meta */
    int *out = malloc((n ? n : 1) * sizeof(int));
    bool *done = calloc(rs->nrules, sizeof(bool));
    if (!pending || !out || !done) {
        free(pending);
        free(out);
        free(done);
        return TAMIS_ENOMEM;
    }
    size_t nout = 0;
    bool progress = true;
    /* repeated sweeps, like SA's; bounded by n rounds, each O(total deps) */
    while (progress && nout < n) {
        progress = false;
        for (size_t i = 0; i < n; i++) {
            tamis__rule_t *m = rs->rules[metas[i]];
            if (done[m->index])
                continue;
            bool ready = true;
            for (size_t j = 0; j < m->ndeps && ready; j++) {
                tamis__rule_t *d = rs->rules[m->deps[j]];
                if (d->kind == TAMIS__K_META && active(d) && !done[d->index])
                    ready = false;
            }
            if (ready) {
                done[m->index] = true;
                out[nout++] = m->index;
                progress = true;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        tamis__rule_t *m = rs->rules[metas[i]];
        if (!done[m->index]) {
            tamis_diag_add(diag, TAMIS_DIAG_WARN, m->file, m->line,
                           "excluding meta test %s, unsolved meta dependencies", m->name);
            m->dropped = true;
            m->error = "circular meta dependencies";
        }
    }
    free(pending);
    free(done);
    rs->metas = out;
    rs->nmetas = nout;
    return 0;
}

static int build_order(tamis_ruleset_t *rs, tamis_diag_t *diag)
{
    int *metas = malloc((rs->nrules ? rs->nrules : 1) * sizeof(int));
    rs->order = malloc((rs->nrules ? rs->nrules : 1) * sizeof(int));
    if (!metas || !rs->order) {
        free(metas);
        return TAMIS_ENOMEM;
    }
    size_t nm = 0;
    for (size_t i = 0; i < rs->nrules; i++)
        if (active(rs->rules[i]) && rs->rules[i]->kind == TAMIS__K_META)
            metas[nm++] = (int)i;
    int rc = fix_priorities(rs, metas, nm);
    if (!rc)
        rc = order_metas(rs, metas, nm, diag);
    free(metas);
    if (rc)
        return rc;
    rs->norder = 0;
    for (size_t i = 0; i < rs->nrules; i++) {
        tamis__rule_t *r = rs->rules[i];
        if (!active(r))
            continue;
        rs->count_by_type[r->type]++;
        if (r->kind != TAMIS__K_META)
            rs->order[rs->norder++] = (int)i;
    }
    qsort_r(rs->order, rs->norder, sizeof(int), cmp_by_priority, rs);
    return tamis__schedule_build(rs);
}

int tamis__finish(tamis_ruleset_t *rs, tamis_diag_t *diag)
{
    for (size_t i = 0; i < rs->nrules; i++) {
        int rc = compile_rule(rs, rs->rules[i], diag);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < rs->nrules; i++) {
        tamis__rule_t *r = rs->rules[i];
        default_score(r);
        if (r->kind != TAMIS__K_NONE && r->dropped)
            rs->dropped++;
        if (!r->desc)
            r->desc = "No description available.";
    }
    set_priorities(rs);
    return build_order(rs, diag);
}
