/*
 * bayes: the Bayes half of a scan (spec-bayes §1, §4, §5): classification before the rules run,
 * the Bayes tags, and auto-learning once the verdict is known.
 *
 * Bayes takes part only when the caller passed a store and use_bayes is on. The classifier is
 * "usable" (score sets 2/3, BAYES_* rules) once bayes_min_spam_num spam and bayes_min_ham_num ham
 * are learned, as Bayes.pm's is_scan_available says; below that the scan looks exactly like one
 * without Bayes, except for the auto-learn status, which SpamAssassin reports whenever a learner
 * exists (that is how a fresh store gets trained). Classification is one short read transaction;
 * the atime touch of the tokens used and the auto-learn share one write transaction at the end.
 */
#include "scan_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_tokens(void *p)
{
    tamis_bayes_tokens_free(p);
}

/* Copies the used tokens into the arena, split into spammy (prob > 0.5, strongest first) and
 * hammy (strongest first), as Bayes.pm's bayes_token_info_spammy/hammy. */
static void keep_token_info(tamis_scan_t *s, const tamis_bayes_token_info_t *u, size_t n)
{
    tamis__scan_bayes_t *b = &s->bayes;
    b->spammy = tamis_arena_calloc(s->arena, n ? n : 1, sizeof(*b->spammy));
    b->hammy = tamis_arena_calloc(s->arena, n ? n : 1, sizeof(*b->hammy));
    if (!b->spammy || !b->hammy)
        return;
    for (size_t i = 0; i < n; i++) {
        tamis_bayes_token_info_t t = u[i];
        t.token = tamis_arena_strdup(s->arena, t.token ? t.token : "");
        if (t.prob > 0.5)
            b->spammy[b->nspammy++] = t;
        else
            b->hammy[b->nhammy++] = t;
    }
}

int tamis__scan_bayes_classify(tamis_scan_t *s, const tamis_scan_opts_t *o,
                               tamis_rules_run_opts_t *ro)
{
    tamis__scan_bayes_t *b = &s->bayes;
    const tamis_conf_t *c = s->conf;
    b->store = o->bayes;
    if (!o->bayes || !c->use_bayes)
        return 0;
    char err[256] = "";
    tamis_bayes_tokens_t *t = NULL;
    tamis_bayes_tokopts_t to; /* in the store's token mode (SA's unless it recorded another) */
    tamis_bayes_tokopts_default(&to);
    to.mode = tamis_bayes_store_tokmode(o->bayes);
    if (tamis_bayes_tokenize_msg(s->msg, &to, &t, err, sizeof err) != 0)
        return 0; /* Bayes is skipped, the scan goes on */
    if (tamis_arena_add_cleanup(s->arena, free_tokens, t) != 0)
        return TAMIS_ENOMEM; /* t was freed by the failed registration */
    b->tokens = t;
    b->atime = tamis_bayes_msg_atime(s->msg, s->now);
    if (b->atime - s->now > 86400)
        b->atime = s->now;
    tamis_bayes_params_t p;
    tamis_bayes_params_default(&p);
    p.min_spam = c->bayes_min_spam_num;
    p.min_ham = c->bayes_min_ham_num;
    tamis_bayes_token_info_t *used = NULL;
    size_t nused = 0;
    if (tamis_bayes_classify_detail(o->bayes, t, &p, &b->res, &used, &nused, err, sizeof err) != 0)
        return 0;
    b->classified = true;
    if (b->res.status == TAMIS_BAYES_NOT_ENOUGH) {
        free(used);
        return 0;
    }
    b->usable = c->use_bayes_rules;
    b->ran = true;
    keep_token_info(s, used, nused);
    if (nused) {
        b->used_keys = tamis_arena_alloc(s->arena, nused * TAMIS_BAYES_KEY_LEN);
        if (b->used_keys) {
            for (size_t i = 0; i < nused; i++)
                memcpy(b->used_keys + i * TAMIS_BAYES_KEY_LEN, used[i].key, TAMIS_BAYES_KEY_LEN);
            b->nused = nused;
        }
    }
    free(used);
    if (b->usable && b->res.status == TAMIS_BAYES_OK) {
        ro->bayes_available = true;
        ro->bayes_probability = b->res.prob;
        b->have_prob = true;
    }
    return 0;
}

int tamis__scan_autolearn_decide(const tamis_conf_t *c, const tamis_rules_result_t *r, bool is_spam)
{
    /* AutoLearnThreshold::autolearn_discriminator */
    double score = r->autolearn_points;
    int isspam;
    if (score < c->bayes_auto_learn_threshold_nonspam)
        isspam = 0;
    else if (score >= c->bayes_auto_learn_threshold_spam)
        isspam = 1;
    else
        return -1;
    if (isspam) {
        if (!r->autolearn_force &&
            (r->autolearn_points_body < 3.0 || r->autolearn_points_head < 3.0))
            return -1;
        if (r->learned_points < -1.0 || !is_spam)
            return -1;
    } else if (r->learned_points > 1.0 || is_spam) {
        return -1;
    }
    return isspam;
}

/* " autolearn_force=yes (NAMES)" / " autolearn_force=no" */
static const char *force_status(tamis_scan_t *s, bool force)
{
    if (!force)
        return " autolearn_force=no";
    tamis_buf_t b;
    tamis_buf_init(&b, 4096);
    tamis_buf_puts(&b, " autolearn_force=yes (");
    bool first = true;
    for (size_t i = 0; i < s->result.hit_count; i++) {
        const tamis_hit_t *h = &s->result.hits[i];
        if (!(h->tflags & TAMIS_TFLAG_AUTOLEARN_FORCE))
            continue;
        tamis_buf_printf(&b, "%s%s", first ? "" : ",", h->name);
        first = false;
    }
    tamis_buf_putc(&b, ')');
    const char *r = b.err ? " autolearn_force=yes" : tamis_arena_strdup(s->arena, b.data);
    tamis_buf_free(&b);
    return r ? r : " autolearn_force=yes";
}

void tamis__scan_bayes_finish(tamis_scan_t *s, const tamis_scan_opts_t *o)
{
    tamis__scan_bayes_t *b = &s->bayes;
    const tamis_conf_t *c = s->conf;
    if (!b->store || !c->use_bayes || !c->bayes_auto_learn || o->no_autolearn) {
        b->autolearn = "disabled";
        if (b->store && b->nused)
            tamis_bayes_touch(b->store, b->used_keys, b->nused, b->atime, NULL, 0);
        return;
    }
    int cls = b->tokens ? tamis__scan_autolearn_decide(c, &s->result, s->is_spam) : -1;
    bool force = cls == 1 && s->result.autolearn_force;
    const char *fs = force_status(s, force);
    char err[256] = "";
    bool batch = tamis_bayes_begin(b->store, err, sizeof err) == 0;
    if (b->nused)
        tamis_bayes_touch(b->store, b->used_keys, b->nused, b->atime, err, sizeof err);
    const char *st = "no";
    if (cls >= 0) {
        char gen[80], mid[256];
        tamis_bayes_msgids(s->msg, gen, mid, sizeof mid);
        int rc = tamis_bayes_learn_tokens(b->store, b->tokens, gen, mid, b->atime,
                                          cls ? TAMIS_BAYES_SPAM : TAMIS_BAYES_HAM, true, err,
                                          sizeof err);
        /* PerMsgStatus::learn: a learn that did nothing leaves the status unset ("unavailable") */
        st = rc > 0 ? (cls ? "spam" : "ham") : rc == 0 ? "unavailable" : "failed";
        if (rc < 0)
            batch = false; /* the batch was aborted */
    }
    if (batch && tamis_bayes_commit(b->store, err, sizeof err) != 0 && cls >= 0)
        st = "failed";
    b->learned = cls >= 0 && (!strcmp(st, "spam") || !strcmp(st, "ham"));
    b->autolearn = tamis_arena_printf(s->arena, "%s%s", st, fs);
    if (!b->autolearn)
        b->autolearn = st;
}
