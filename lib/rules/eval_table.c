/*
 * The eval registry: joins the tables of the eval_*.c files and looks a function up by name
 * (tamis__eval_lookup). The tables are static and immutable, so lookups are thread-safe; the
 * loader resolves every eval rule once, so a linear search is enough.
 */
#include "rules/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* check_bayes (Bayes plugin, spec-bayes §6): the probability comes from the run options. */
static double check_bayes(tamis_eval_ctx_t *ctx, const char *const *args, size_t nargs)
{
    if (!ctx->opts || !ctx->opts->bayes_available || nargs < 2)
        return 0;
    double p = ctx->opts->bayes_probability;
    double min = tamis__eval_num(args[0]), max = tamis__eval_num(args[1]);
    return ((min == 0 || p > min) && p <= max) ? 1 : 0;
}

/* Evals of the engine itself; listed last so an eval file may override them. */
static const tamis_eval_def_t evals_engine[] = {
    {"check_bayes", check_bayes, TAMIS_EVAL_BODY, false},
    {NULL, NULL, 0, false},
};

static const tamis_eval_def_t *const tables[] = {
    tamis__evals_header, tamis__evals_body, tamis__evals_relay, tamis__evals_net, evals_engine,
};

const tamis_eval_def_t *tamis__eval_lookup(const char *name)
{
    if (!name)
        return NULL;
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
        for (const tamis_eval_def_t *d = tables[t]; d->name; d++)
            if (strcmp(d->name, name) == 0 && (d->fn || d->net))
                return d;
    return NULL;
}

double tamis__eval_num(const char *arg)
{
    if (!arg || strcasecmp(arg, "undef") == 0)
        return NAN;
    if (strcasecmp(arg, "inf") == 0 || strcasecmp(arg, "+inf") == 0)
        return INFINITY;
    if (strcasecmp(arg, "-inf") == 0)
        return -INFINITY;
    /* Perl numifies a leading number and ignores the rest ("3abc" → 3, "abc" → 0) */
    return strtod(arg, NULL);
}
