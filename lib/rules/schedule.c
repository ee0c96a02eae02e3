/*
 * The run schedule (spec-rules §8), worked out once per rule set instead of once per message:
 * which rules run at each priority level, which metas become ready after it, which net evals wait
 * for DNS, and which metas are left for the end. Which rules run depends only on the score set
 * and on whether net evals are deferred, so tamis__finish makes all eight schedules up front and
 * tamis_rules_run only walks lists.
 */
#include "rules/rules_int.h"

#include <stdlib.h>
#include <string.h>

/* Does r run with score set `set`? */
static bool runnable(const tamis__rule_t *r, int set)
{
    if (r->kind == TAMIS__K_NONE || r->dropped || r->score[set] == 0)
        return false;
    /* Check::run_eval_tests skips net evals without network and learn evals without Bayes;
     * regex and meta rules with those tflags run whenever their score is non-zero. */
    if (r->kind == TAMIS__K_EVAL && (r->tflags & TAMIS_TFLAG_NET) && !(set & 1))
        return false;
    if (r->kind == TAMIS__K_EVAL && (r->tflags & TAMIS_TFLAG_LEARN) && !(set & 2))
        return false;
    return true;
}

/* Net evals wait for DNS answers: with a net_eval callback they run after every other rule, so
 * the regex work overlaps with the queries in flight. */
static bool deferred(const tamis__rule_t *r, bool net_eval)
{
    return net_eval && r->kind == TAMIS__K_EVAL && r->ev && r->ev->net;
}

typedef struct {
    const tamis_ruleset_t *rs;
    int set;
    bool net_eval;
    bool *done; /* by rule index, as a message's run would have it */
} sim_t;

/* Is dependency d finished by the end of priority level p? A deferred net eval is finished only
 * once it has run, so its meta dependants wait for it; other metas are unaffected. */
static bool dep_done(const sim_t *s, const tamis__rule_t *d, int p, bool final)
{
    if (!runnable(d, s->set) || s->done[d->index])
        return true;
    if (d->kind == TAMIS__K_META || deferred(d, s->net_eval))
        return false;
    return final || d->priority <= p;
}

/* One pass over the metas in dependency order, as after level p: appends the ready ones to out
 * (capacity nmetas) and returns how many. */
static size_t ready_metas(sim_t *s, int p, bool final, int *out)
{
    const tamis_ruleset_t *rs = s->rs;
    size_t n = 0;
    for (size_t i = 0; i < rs->nmetas; i++) {
        const tamis__rule_t *m = rs->rules[rs->metas[i]];
        if (s->done[m->index] || !runnable(m, s->set) || (!final && m->priority > p))
            continue;
        bool ready = true;
        for (size_t j = 0; j < m->ndeps && ready; j++)
            ready = dep_done(s, rs->rules[m->deps[j]], p, final);
        if (!ready)
            continue;
        s->done[m->index] = true;
        out[n++] = m->index;
    }
    return n;
}

static size_t count_levels(const tamis_ruleset_t *rs)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->norder; i++)
        if (i == 0 || rs->rules[rs->order[i]]->priority != rs->rules[rs->order[i - 1]]->priority)
            n++;
    return n;
}

/* Fills sc for one (set, net_eval). Lists come from the rule set's arena. */
static int build_one(tamis_ruleset_t *rs, int set, bool net_eval, bool *done, tamis__schedule_t *sc)
{
    tamis_arena_t *a = rs->arena;
    size_t nlevels = count_levels(rs);
    sim_t s = {rs, set, net_eval, done};
    memset(done, 0, rs->nrules + 1);
    int *rules = tamis_arena_alloc(a, (rs->norder + 1) * sizeof(int));
    int *metas = tamis_arena_alloc(a, (rs->nmetas + 1) * sizeof(int));
    sc->levels = tamis_arena_calloc(a, nlevels + 1, sizeof(*sc->levels));
    if (!rules || !metas || !sc->levels)
        return TAMIS_ENOMEM;
    size_t nrules = 0, nmetas = 0, nnet = 0, i = 0;
    for (size_t l = 0; l < nlevels; l++) {
        tamis__sched_level_t *lv = &sc->levels[l];
        int p = rs->rules[rs->order[i]]->priority;
        lv->rules = rules + nrules;
        for (; i < rs->norder && rs->rules[rs->order[i]]->priority == p; i++) {
            const tamis__rule_t *r = rs->rules[rs->order[i]];
            if (!runnable(r, set) || deferred(r, net_eval))
                continue;
            rules[nrules++] = r->index;
            lv->nrules++;
            done[r->index] = true;
        }
        lv->metas = metas + nmetas;
        lv->nmetas = ready_metas(&s, p, false, lv->metas);
        nmetas += lv->nmetas;
    }
    sc->nlevels = nlevels;
    sc->net = rules + nrules;
    for (i = 0; i < rs->norder; i++) {
        const tamis__rule_t *r = rs->rules[rs->order[i]];
        if (runnable(r, set) && deferred(r, net_eval)) {
            sc->net[nnet++] = r->index;
            done[r->index] = true;
        }
    }
    sc->nnet = nnet;
    sc->final_metas = metas + nmetas;
    sc->nfinal = ready_metas(&s, 0, true, sc->final_metas);
    return 0;
}

int tamis__schedule_build(tamis_ruleset_t *rs)
{
    bool *done = malloc(rs->nrules + 1);
    if (!done)
        return TAMIS_ENOMEM;
    int rc = 0;
    for (int k = 0; k < TAMIS__NSCHED && !rc; k++)
        rc = build_one(rs, k & 3, (k & 4) != 0, done, &rs->sched[k]);
    free(done);
    return rc;
}
