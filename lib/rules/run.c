/*
 * The runner (spec-rules §8): tamis_rules_run() tries every runnable rule of a compiled set on
 * one message and collects hits, sub-tests, score and capture tags.
 *
 * Order: priorities ascending; within a priority, SpamAssassin's phases (header regex, header
 * evals, body, uri, body evals, rawbody, rawbody evals, full, full evals, mimeheader); after each
 * priority, the metas whose dependencies have all run are evaluated (dependency order), and the
 * rest at the end. A rule runs only when its score in the chosen score set is non-zero; net evals
 * only in sets with network tests (bit 0), Bayes ("learn") evals only in sets with Bayes (bit 1).
 *
 * Per-thread scratch (PCRE2 match data, match context with limits, JIT stack) lives in
 * thread-specific storage released at thread exit; everything per message comes from the arena.
 */
#include "rules/rules_int.h"
#include "rules/run_int.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OVECTOR_PAIRS 64
#define MAX_TAGS 256      /* capture tags per message */
#define MAX_TAG_VALUE 256 /* bytes kept per capture tag */

/* ---- per-thread scratch ------------------------------------------------------------------------
 */

typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
} scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    scratch_t *s = p;
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mc);
    pcre2_jit_stack_free(s->js);
    free(s);
}

static void scratch_key_init(void)
{
    pthread_key_create(&scratch_key, scratch_free);
}

static scratch_t *scratch_get(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    scratch_t *s = pthread_getspecific(scratch_key);
    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->md = pcre2_match_data_create(OVECTOR_PAIRS, NULL);
    s->mc = pcre2_match_context_create(NULL);
    s->js = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
    if (!s->md || !s->mc) {
        scratch_free(s);
        return NULL;
    }
    pcre2_set_match_limit(s->mc, TAMIS__MATCH_LIMIT);
    pcre2_set_depth_limit(s->mc, TAMIS__DEPTH_LIMIT);
    if (s->js)
        pcre2_jit_stack_assign(s->mc, NULL, s->js);
    if (pthread_setspecific(scratch_key, s) != 0) {
        scratch_free(s);
        return NULL;
    }
    return s;
}

/* ---- engine state ------------------------------------------------------------------------------
 */

typedef struct {
    const char *key;
    const char *value;
    bool used;
} hslot_t;

struct tamis__engine {
    const tamis_ruleset_t *rs;
    const tamis_msg_t *m;
    const tamis_rules_run_opts_t *opts;
    tamis_arena_t *a;
    int set;
    double *values;
    scratch_t *sc;
    tamis_eval_ctx_t ctx;
    tamis__relays_t relays;
    tamis__memo_t memo;
    hslot_t *hc;
    size_t hc_size, hc_used;
    tamis_hit_t *hits;
    size_t nhits, caphits;
    const char *subjprefix; /* _SUBJPREFIX_ so far (arena), NULL = none */
    const char **subs;
    size_t nsubs, capsubs;
    const char **tags; /* name, value pairs */
    size_t ntags;
    double head_points, body_points, al_points, learned_points;
    unsigned autolearn_force;
    double score_sum;
    unsigned limit_hits;
    double deadline;
    bool timed_out;
    bool oom;
    /* prefilter: candidate text index + 1 per rule (0 = cannot match), state per group */
    bool use_pf;
    size_t pf_first; /* first text the current rule can match in */
    uint32_t *cand;
    uint8_t *gstate; /* 0 not scanned yet, 1 scanned, 2 unusable (every rule a candidate) */
};

static uint32_t hstr(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

bool tamis__hcache_get(tamis__engine_t *e, const char *expr, const char **out)
{
    if (!e->hc_size)
        return false;
    for (size_t j = hstr(expr) & (e->hc_size - 1);; j = (j + 1) & (e->hc_size - 1)) {
        if (!e->hc[j].used)
            return false;
        if (strcmp(e->hc[j].key, expr) == 0) {
            *out = e->hc[j].value;
            return true;
        }
    }
}

void tamis__hcache_put(tamis__engine_t *e, const char *expr, const char *value)
{
    if ((e->hc_used + 1) * 2 > e->hc_size) {
        size_t ns = e->hc_size ? e->hc_size * 2 : 256;
        hslot_t *n = tamis_arena_calloc(e->a, ns, sizeof(*n));
        if (!n)
            return; /* no cache: only slower */
        for (size_t i = 0; i < e->hc_size; i++) {
            if (!e->hc[i].used)
                continue;
            size_t j = hstr(e->hc[i].key) & (ns - 1);
            while (n[j].used)
                j = (j + 1) & (ns - 1);
            n[j] = e->hc[i];
        }
        e->hc = n;
        e->hc_size = ns;
    }
    const char *k = tamis_arena_strdup(e->a, expr);
    if (!k)
        return;
    size_t j = hstr(expr) & (e->hc_size - 1);
    while (e->hc[j].used)
        j = (j + 1) & (e->hc_size - 1);
    e->hc[j].key = k;
    e->hc[j].value = value;
    e->hc[j].used = true;
    e->hc_used++;
}

/* ---- matching ----------------------------------------------------------------------------------
 */

static void set_tag(tamis__engine_t *e, const char *name, const char *v, size_t n)
{
    if (n > MAX_TAG_VALUE)
        n = MAX_TAG_VALUE;
    for (size_t i = 0; i < e->ntags; i++)
        if (strcmp(e->tags[2 * i], name) == 0) {
            e->tags[2 * i + 1] = tamis_arena_strndup(e->a, v, n);
            return;
        }
    if (e->ntags >= MAX_TAGS)
        return;
    if (!e->tags && !(e->tags = tamis_arena_calloc(e->a, 2 * MAX_TAGS + 2, sizeof(char *)))) {
        e->oom = true;
        return;
    }
    e->tags[2 * e->ntags] = tamis_arena_strdup(e->a, name);
    e->tags[2 * e->ntags + 1] = tamis_arena_strndup(e->a, v, n);
    e->ntags++;
}

/* Named groups of a capture rule export their text as tags. */
static void export_captures(tamis__engine_t *e, const pcre2_code *re, const char *s)
{
    uint32_t count = 0, size = 0;
    PCRE2_SPTR table;
    pcre2_pattern_info(re, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(re, PCRE2_INFO_NAMEENTRYSIZE, &size);
    pcre2_pattern_info(re, PCRE2_INFO_NAMETABLE, &table);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->sc->md);
    uint32_t pairs = pcre2_get_ovector_count(e->sc->md);
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *t = table + (size_t)i * size;
        uint32_t g = ((uint32_t)t[0] << 8) | t[1];
        if (g >= pairs || ov[2 * g] == PCRE2_UNSET || ov[2 * g + 1] <= ov[2 * g])
            continue; /* SA keeps only non-empty captures */
        set_tag(e, (const char *)t + 2, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
    }
}

/* One match attempt from start. Returns true on a match; *end gets the match end. */
static bool match_at(tamis__engine_t *e, const tamis__rule_t *r, const pcre2_code *re,
                     const char *s, size_t len, size_t start, size_t *mstart, size_t *mend)
{
    if (!re) { /* the 32-bit fallback of a huge pattern */
        int r32 = tamis__re32_match(r->re32, s, len, start, mstart, mend);
        if (r32 < 0)
            e->limit_hits++;
        return r32 > 0;
    }
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, start, 0, e->sc->md, e->sc->mc);
    if (rc >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->sc->md);
        *mstart = ov[0];
        *mend = ov[1];
        if (r->captures)
            export_captures(e, re, s);
        return true;
    }
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
        rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
        e->limit_hits++;
    return false;
}

/* Number of matches in s: at most 1 unless counting (tflags multiple), bounded by maxhits. */
static unsigned count_matches(tamis__engine_t *e, const tamis__rule_t *r, const pcre2_code *re,
                              const char *s, size_t len, bool multiple, unsigned already)
{
    unsigned n = 0;
    size_t start = 0, ms, me;
    while (start <= len && match_at(e, r, re, s, len, start, &ms, &me)) {
        n++;
        if (!multiple || (r->maxhits && already + n >= r->maxhits))
            break;
        start = me > ms ? me : me + 1; /* an empty match moves on one byte, as Perl's //g */
    }
    return n;
}

/* ---- capture templates -------------------------------------------------------------------------
 */

static void cleanup_code(void *p)
{
    pcre2_code_free(p);
}

/* Compiles r's pattern with %{NAME} replaced by the (quoted) tag values; NULL when a tag is
 * missing or the result does not compile (the rule is then not run). */
static pcre2_code *template_regex(tamis__engine_t *e, const tamis__rule_t *r)
{
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS__MAX_PATTERN);
    const char *p = r->pattern;
    bool ok = true;
    while (*p && ok) {
        const char *t = strstr(p, "%{");
        if (!t || (t > r->pattern && t[-1] == '\\')) {
            size_t n = t ? (size_t)(t + 2 - p) : strlen(p);
            tamis_buf_append(&b, p, n);
            p += n;
            continue;
        }
        const char *close = strchr(t, '}');
        if (!close) {
            tamis_buf_puts(&b, t);
            break;
        }
        tamis_buf_append(&b, p, (size_t)(t - p));
        const char *val = NULL;
        for (size_t i = 0; i < e->ntags; i++)
            if (strlen(e->tags[2 * i]) == (size_t)(close - t - 2) &&
                strncmp(e->tags[2 * i], t + 2, (size_t)(close - t - 2)) == 0)
                val = e->tags[2 * i + 1];
        if (!val || !*val)
            ok = false;
        tamis_buf_puts(&b, "(?:");                /* SA: (?:quotemeta(value)) */
        for (const char *v = val; v && *v; v++) { /* quotemeta */
            if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') ||
                  (*v >= '0' && *v <= '9') || *v == '_' || (unsigned char)*v >= 0x80))
                tamis_buf_putc(&b, '\\');
            tamis_buf_putc(&b, *v);
        }
        tamis_buf_putc(&b, ')');
        p = close + 1;
    }
    pcre2_code *re = NULL;
    if (ok && !b.err) {
        char err[128];
        re = tamis__regex_compile(e->rs, b.data ? b.data : "", r->re_flags, false, err,
                                  sizeof(err)); /* used once: JIT would cost more */
        if (re && tamis_arena_add_cleanup(e->a, cleanup_code, re) != 0)
            re = NULL;
    }
    tamis_buf_free(&b);
    return re;
}

/* ---- hits --------------------------------------------------------------------------------------
 */

/* PerMsgStatus::_get_autolearn_testtype: 'h'ead, 'b'ody, 'm'eta or 0 (full: ignored).
 * mimeheader rules are body evals in SpamAssassin. */
static char autolearn_type(tamis_rule_type_t t)
{
    switch (t) {
    case TAMIS_RULE_HEADER:
    case TAMIS_RULE_EVAL_HEADER:
        return 'h';
    case TAMIS_RULE_BODY:
    case TAMIS_RULE_RAWBODY:
    case TAMIS_RULE_URI:
    case TAMIS_RULE_MIMEHEADER:
    case TAMIS_RULE_EVAL_BODY:
    case TAMIS_RULE_EVAL_RAWBODY:
        return 'b';
    case TAMIS_RULE_META:
        return 'm';
    default:
        return 0;
    }
}

static double round3(double x);

/* One hit's share of the auto-learn points (PerMsgStatus::_get_autolearn_points). */
static void autolearn_hit(tamis__engine_t *e, const tamis__rule_t *r, int set)
{
    if (r->tflags & (TAMIS_TFLAG_NOAUTOLEARN | TAMIS_TFLAG_USERCONF))
        return;
    if (r->tflags & TAMIS_TFLAG_LEARN) {
        e->learned_points += r->score[e->set];
        return;
    }
    if (r->tflags & TAMIS_TFLAG_AUTOLEARN_FORCE)
        e->autolearn_force++;
    double s = r->score[set];
    if (s == 0)
        return;
    char type = autolearn_type(r->type);
    if ((r->tflags & TAMIS_TFLAG_AUTOLEARN_HEADER) ||
        (!(r->tflags & TAMIS_TFLAG_AUTOLEARN_BODY) && type == 'h'))
        e->head_points += s;
    else if ((r->tflags & TAMIS_TFLAG_AUTOLEARN_BODY) || type == 'b')
        e->body_points += s;
    else if (type == 'm') {
        unsigned dh = 0, db = 0;
        for (size_t j = 0; j < r->ndeps; j++) {
            char t = autolearn_type(e->rs->rules[r->deps[j]]->type);
            dh += t == 'h' ? r->dep_uses[j] : 0;
            db += t == 'b' ? r->dep_uses[j] : 0;
        }
        if (dh + db) {
            e->head_points += round3(s * dh / (dh + db));
            e->body_points += round3(s * db / (dh + db));
        }
    }
    e->al_points += s;
}

/* Auto-learn uses the score set without Bayes (set & ~2), over the test list in hit order. */
static void autolearn_points(tamis__engine_t *e)
{
    int set = e->set & ~2;
    for (size_t i = 0; i < e->nhits; i++) {
        const tamis__rule_t *r = tamis__rule_find(e->rs, e->hits[i].name);
        if (r)
            autolearn_hit(e, r, set);
    }
}

static bool push_sub(tamis__engine_t *e, const char *name)
{
    if (e->nsubs == e->capsubs) {
        size_t nc = e->capsubs ? e->capsubs * 2 : 64;
        const char **a = tamis_arena_alloc(e->a, nc * sizeof(*a));
        if (!a) {
            e->oom = true;
            return false;
        }
        if (e->nsubs)
            memcpy(a, e->subs, e->nsubs * sizeof(*a));
        e->subs = a;
        e->capsubs = nc;
    }
    e->subs[e->nsubs++] = name;
    return true;
}

static tamis_hit_t *push_hit(tamis__engine_t *e)
{
    if (e->nhits == e->caphits) {
        size_t nc = e->caphits ? e->caphits * 2 : 32;
        tamis_hit_t *a = tamis_arena_alloc(e->a, nc * sizeof(*a));
        if (!a) {
            e->oom = true;
            return NULL;
        }
        if (e->nhits)
            memcpy(a, e->hits, e->nhits * sizeof(*a));
        e->hits = a;
        e->caphits = nc;
    }
    return &e->hits[e->nhits++];
}

/*
 * PerMsgStatus::got_hit: a non-positive hit value counts as 1 (a meta "0 - A" that is -1 hits
 * with value 1). A `tflags multiple` rule hits once per match: SpamAssassin adds its score and
 * lists its name once per match (tests=FOO,FOO,FOO), so one entry per match is recorded (up to
 * MAX_MULTI_ENTRIES; the score keeps counting beyond) and every entry carries the total count.
 */
#define MAX_MULTI_ENTRIES 1000

/* got_hit appends a rule's subjprefix and a space unless the text is already in the prefix, and
 * only when the Subject is rewritten at all. SpamAssassin does this for "__" sub-rules too (they
 * reach got_hit with their default score); its order among rules of one priority is Perl's hash
 * order, ours is the run order. */
static void add_subjprefix(tamis__engine_t *e, const char *text)
{
    if (!e->rs->conf || !e->rs->conf->rewrite_subject ||
        (e->subjprefix && strstr(e->subjprefix, text)))
        return;
    const char *p = tamis_arena_printf(e->a, "%s%s ", e->subjprefix ? e->subjprefix : "", text);
    if (!p)
        e->oom = true;
    else
        e->subjprefix = p;
}

static void got_hit(tamis__engine_t *e, const tamis__rule_t *r, double value, const char *log)
{
    if (value == 0) {
        e->values[r->index] = 0;
        return;
    }
    if (value < 0)
        value = 1;
    if (r->subjprefix)
        add_subjprefix(e, r->subjprefix);
    e->values[r->index] = value;
    bool multiple =
        (r->tflags & TAMIS_TFLAG_MULTIPLE) && r->kind != TAMIS__K_META && r->kind != TAMIS__K_EVAL;
    double times = multiple ? value : 1;
    size_t entries = times > MAX_MULTI_ENTRIES ? MAX_MULTI_ENTRIES : (size_t)times;
    if (strncmp(r->name, "__", 2) == 0) {
        for (size_t k = 0; k < entries; k++)
            if (!push_sub(e, r->name))
                return;
        return;
    }
    double score = r->score[e->set];
    e->score_sum += score * times;
    for (size_t k = 0; k < entries; k++) {
        tamis_hit_t *h = push_hit(e);
        if (!h)
            return;
        h->name = r->name;
        h->description = r->desc;
        h->score = score;
        h->value = value;
        h->type = r->type;
        h->tflags = r->tflags;
        h->log = log;
    }
}

/* ---- rule kinds --------------------------------------------------------------------------------
 */

static double run_header(tamis__engine_t *e, const tamis__rule_t *r, const pcre2_code *re)
{
    const char *v = tamis__header_get(&e->ctx, r->hdr);
    if (r->kind == TAMIS__K_EXISTS)
        return v != NULL;
    if (!v) /* undefined matches as "" unless [if-unset:] gives a value */
        v = r->if_unset ? r->if_unset : "";
    size_t len = strlen(v);
    if (r->negate) {
        size_t ms, me;
        return match_at(e, r, re, v, len, 0, &ms, &me) ? 0 : 1;
    }
    return count_matches(e, r, re, v, len, (r->tflags & TAMIS_TFLAG_MULTIPLE) != 0, 0);
}

static double run_lines(tamis__engine_t *e, const tamis__rule_t *r, const pcre2_code *re,
                        tamis_slice_t (*get)(const tamis_msg_t *, size_t), size_t count,
                        size_t first)
{
    /* the prefilter saw no match before its first candidate line, so PCRE2 finds none there */
    if (e->pf_first > first)
        first = e->pf_first;
    bool multiple = (r->tflags & TAMIS_TFLAG_MULTIPLE) != 0;
    unsigned total = 0;
    for (size_t i = first; i < count; i++) {
        tamis_slice_t s = get(e->m, i);
        total += count_matches(e, r, re, s.ptr, s.len, multiple, total);
        if (total && (!multiple || (r->maxhits && total >= r->maxhits)))
            break;
    }
    return total;
}

static tamis_slice_t uri_slice(const tamis_msg_t *m, size_t i)
{
    const char *s = tamis_msg_uri_string(m, i);
    return tamis_slice(s, s ? strlen(s) : 0);
}

/* The value MIMEHeader reads from one part: the last field (scalar get_header/raw_header). */
static const char *part_header(tamis__engine_t *e, const tamis_part_t *p, const char *name,
                               bool raw)
{
    if (strcmp(name, "ALL") == 0) {
        tamis_buf_t b;
        tamis_buf_init(&b, 1u << 20);
        for (size_t j = 0; j < p->header_count; j++)
            tamis_buf_printf(&b, "%s: %s\n", p->headers[j].name,
                             raw ? p->headers[j].raw : p->headers[j].decoded);
        const char *s = b.err ? NULL : tamis_arena_strndup(e->a, b.data ? b.data : "", b.len);
        tamis_buf_free(&b);
        return s;
    }
    const tamis_header_t *last = NULL;
    for (size_t j = 0; j < p->header_count; j++)
        if (strcasecmp(p->headers[j].name, name) == 0)
            last = &p->headers[j];
    if (!last)
        return raw ? "" : NULL; /* raw_header gives '' for a missing field, get_header undef */
    if (raw)
        return tamis__header_raw_value(e->a, last);
    return tamis_arena_concat(e->a, last->decoded ? last->decoded : "", "\n", (char *)NULL);
}

/*
 * MIMEHeader::eval_hook_called: every MIME part in order (the message itself first), the last
 * field of that name per part, [if-unset:] for a missing one, matched with //g up to maxhits
 * (1, or 1000 with multiple). A negated (!~) rule hits unconditionally: SpamAssassin 4.0.1's
 * _check() stops at the first iteration for negated rules and eval_hook_called then returns 1;
 * we keep that behaviour for identical verdicts (no stock rule is negated).
 */
static double run_mimeheader(tamis__engine_t *e, const tamis__rule_t *r, const pcre2_code *re)
{
    if (r->negate)
        return 1;
    char name[256];
    size_t nl = strcspn(r->hdr, ":");
    bool raw = strstr(r->hdr + nl, ":raw") != NULL;
    if (nl > 255)
        nl = 255;
    memcpy(name, r->hdr, nl);
    name[nl] = 0;
    bool multiple = (r->tflags & TAMIS_TFLAG_MULTIPLE) != 0;
    unsigned total = 0;
    size_t np = tamis_msg_part_count(e->m);
    for (size_t i = 0; i < np; i++) {
        const char *v = part_header(e, tamis_msg_part_at(e->m, i), name, raw);
        if (!v)
            v = r->if_unset ? r->if_unset : "";
        total += count_matches(e, r, re, v, strlen(v), multiple, total);
        if (total && (!multiple || (r->maxhits && total >= r->maxhits)))
            break;
    }
    return total;
}

static double run_eval(tamis__engine_t *e, const tamis__rule_t *r, const char **log)
{
    if (!r->ev)
        return 0;
    double v;
    if (r->ev->net) {
        const tamis_rules_run_opts_t *o = e->opts;
        if (!o || !o->net_eval)
            return 0;
        v = o->net_eval(o->net_ctx, r->name, r->func, (const char *const *)r->args, r->nargs, log)
                ? 1
                : 0;
    } else {
        e->ctx.rule = r->name;
        e->ctx.rule_type = r->type;
        e->ctx.log = NULL;
        v = r->ev->fn(&e->ctx, (const char *const *)r->args, r->nargs);
        *log = e->ctx.log;
    }
    return isnan(v) ? 0 : v;
}

/* ---- prefilter ---------------------------------------------------------------------------------
 */

static tamis_slice_t body_text(const void *m, size_t i)
{
    return tamis_msg_body_line(m, i);
}

static tamis_slice_t rawbody_text(const void *m, size_t i)
{
    return tamis_msg_rawbody_chunk(m, i);
}

static tamis_slice_t uri_text(const void *m, size_t i)
{
    return uri_slice(m, i);
}

static tamis_slice_t full_text(const void *m, size_t i)
{
    (void)i;
    return tamis_msg_pristine(m);
}

static tamis_slice_t one_text(const void *s, size_t i)
{
    (void)i;
    return tamis_slice(s, strlen(s));
}

/* Scans r's group once per message; true when its candidates are known. */
static bool pf_ready(tamis__engine_t *e, const tamis__rule_t *r, int g)
{
    if (!e->gstate[g]) {
        const tamis__prefilter_t *pf = e->rs->pf;
        const tamis_msg_t *m = e->m;
        int rc = -1;
        switch (r->type) {
        case TAMIS_RULE_BODY:
            rc = tamis__pf_scan(pf, g, body_text, m, tamis_msg_body_line_count(m), e->cand);
            break;
        case TAMIS_RULE_RAWBODY:
            rc = tamis__pf_scan(pf, g, rawbody_text, m, tamis_msg_rawbody_count(m), e->cand);
            break;
        case TAMIS_RULE_URI:
            rc = tamis__pf_scan(pf, g, uri_text, m, tamis_msg_uri_string_count(m), e->cand);
            break;
        case TAMIS_RULE_FULL:
            rc = tamis__pf_scan(pf, g, full_text, m, 1, e->cand);
            break;
        case TAMIS_RULE_HEADER: {
            /* an undefined header: each rule matches its own [if-unset:] text, so PCRE2 decides */
            const char *v = tamis__header_get(&e->ctx, r->hdr);
            if (v)
                rc = tamis__pf_scan(pf, g, one_text, v, 1, e->cand);

            break;
        }
        default:
            break;
        }
        e->gstate[g] = rc == 0 ? 1 : 2;
    }
    return e->gstate[g] == 1;
}

static double run_rule(tamis__engine_t *e, const tamis__rule_t *r, const char **log)
{
    if (r->kind == TAMIS__K_EVAL)
        return run_eval(e, r, log);
    const pcre2_code *re = r->re;
    if (r->has_template && !(re = template_regex(e, r)))
        return 0;
    if (!re && !r->re32 && r->kind == TAMIS__K_REGEX)
        return 0;
    e->pf_first = 0;
    int g = e->use_pf ? tamis__pf_group(e->rs->pf, r->index) : -1;
    if (g >= 0 && pf_ready(e, r, g)) {
        uint32_t c = e->cand[r->index];
        if (!c) /* no match possible: a negated header rule hits, others do not */
            return r->type == TAMIS_RULE_HEADER && r->negate ? 1 : 0;
        e->pf_first = c - 1;
    }
    switch (r->type) {
    case TAMIS_RULE_HEADER:
        return run_header(e, r, re);
    case TAMIS_RULE_BODY:
        return run_lines(e, r, re, tamis_msg_body_line, tamis_msg_body_line_count(e->m),
                         (r->tflags & TAMIS_TFLAG_NOSUBJECT) ? 1 : 0);
    case TAMIS_RULE_RAWBODY:
        return run_lines(e, r, re, tamis_msg_rawbody_chunk, tamis_msg_rawbody_count(e->m), 0);
    case TAMIS_RULE_URI:
        return run_lines(e, r, re, uri_slice, tamis_msg_uri_string_count(e->m), 0);
    case TAMIS_RULE_FULL: {
        tamis_slice_t s = tamis_msg_pristine(e->m);
        return count_matches(e, r, re, s.ptr, s.len, (r->tflags & TAMIS_TFLAG_MULTIPLE) != 0, 0);
    }
    case TAMIS_RULE_MIMEHEADER:
        return run_mimeheader(e, r, re);
    default:
        return 0;
    }
}

/* ---- scheduling --------------------------------------------------------------------------------
 */

/* The rule set's schedule (schedule.c) says what runs at each priority level. */
static bool net_deferred(const tamis__engine_t *e)
{
    return e->opts && e->opts->net_eval;
}

static void eval_metas(tamis__engine_t *e, const int *metas, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const tamis__rule_t *m = e->rs->rules[metas[i]];
        got_hit(e, m, tamis__meta_eval(m->meta, e->values, NULL), NULL);
    }
}

static bool over_budget(tamis__engine_t *e)
{
    if (e->deadline > 0 && !e->timed_out && tamis_now_ms() > e->deadline)
        e->timed_out = true;
    return e->timed_out;
}

static void run_all(tamis__engine_t *e)
{
    const tamis__schedule_t *sc = &e->rs->sched[e->set | (net_deferred(e) ? 4 : 0)];
    size_t ran = 0;
    for (size_t l = 0; l < sc->nlevels && !e->oom; l++) {
        const tamis__sched_level_t *lv = &sc->levels[l];
        for (size_t k = 0; k < lv->nrules; k++) {
            if ((ran++ & 15) == 0 && over_budget(e)) /* the clock every 16 rules */
                return;
            const tamis__rule_t *r = e->rs->rules[lv->rules[k]];
            const char *log = NULL;
            double v = run_rule(e, r, &log);
            got_hit(e, r, v, log);
        }
        eval_metas(e, lv->metas, lv->nmetas);
    }
    /* The net evals, in rule order: the first one waits for the answers (the scan's callback). */
    for (size_t k = 0; k < sc->nnet && !e->oom; k++) {
        if ((k & 15) == 0 && over_budget(e))
            return;
        const tamis__rule_t *r = e->rs->rules[sc->net[k]];
        const char *log = NULL;
        double v = run_eval(e, r, &log);
        got_hit(e, r, v, log);
    }
    eval_metas(e, sc->final_metas, sc->nfinal);
}

static double round3(double x)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%.3f", x); /* SA: sprintf("%0.3f") */
    return strtod(buf, NULL);
}

static void time_limit_hit(tamis__engine_t *e)
{
    const tamis__rule_t *r = tamis__rule_find(e->rs, "TIME_LIMIT_EXCEEDED");
    double score = r ? r->score[e->set] : 0.001;
    if (score == 0)
        return;
    tamis_hit_t *h = push_hit(e);
    if (!h)
        return;
    memset(h, 0, sizeof(*h));
    h->name = "TIME_LIMIT_EXCEEDED";
    h->description = r && r->desc ? r->desc : "Exceeded time limit / deadline";
    h->score = score;
    h->value = 1;
    h->type = TAMIS_RULE_META;
    e->score_sum += score;
}

static int engine_init(tamis__engine_t *e, const tamis_ruleset_t *rs, const tamis_msg_t *m,
                       const tamis_rules_run_opts_t *opts, tamis_arena_t *a)
{
    memset(e, 0, sizeof(*e));
    e->rs = rs;
    e->m = m;
    e->opts = opts;
    e->a = a;
    e->set = opts ? (opts->score_set & 3) : 0;
    e->values = tamis_arena_calloc(a, rs->nrules + 1, sizeof(double));
    e->sc = scratch_get();
    e->use_pf = rs->pf && !(opts && opts->no_prefilter);
    if (e->use_pf) {
        e->cand = tamis_arena_calloc(a, rs->nrules + 1, sizeof(uint32_t));
        e->gstate = tamis_arena_calloc(a, tamis__pf_group_count(rs->pf) + 1, 1);
        if (!e->cand || !e->gstate)
            return TAMIS_ENOMEM;
    }
    if (e->values) /* the slot after the rules answers local_tests_only in metas */
        e->values[rs->nrules] = (e->set & 1) ? 0 : 1;
    if (!e->values || !e->sc)
        return TAMIS_ENOMEM;
    int rc = tamis__relays_compute(rs->conf, m, a, &e->relays);
    if (rc == TAMIS_ENOMEM)
        return rc;
    e->ctx.rs = rs;
    e->ctx.conf = rs->conf;
    e->ctx.msg = m;
    e->ctx.relays = rc == 0 ? &e->relays : NULL;
    e->ctx.opts = opts;
    e->ctx.arena = a;
    e->ctx.memo = &e->memo;
    e->ctx.engine = e;
    if (opts && opts->time_budget_ms > 0)
        e->deadline = tamis_now_ms() + opts->time_budget_ms;
    return 0;
}

int tamis_rules_run(const tamis_ruleset_t *rs, const tamis_msg_t *m,
                    const tamis_rules_run_opts_t *opts, tamis_arena_t *arena,
                    tamis_rules_result_t *out, char *err, size_t errlen)
{
    if (!rs || !m || !arena || !out)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "missing argument");
    memset(out, 0, sizeof(*out));
    tamis__engine_t *e = tamis_arena_alloc(arena, sizeof(*e));
    if (!e || engine_init(e, rs, m, opts, arena) != 0)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "out of memory");
    run_all(e);
    if (e->timed_out) /* Check::check_main: got_hit('TIME_LIMIT_EXCEEDED', defscore 0.001) */
        time_limit_hit(e);
    if (e->oom)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "out of memory");
    out->hits = e->hits;
    out->hit_count = e->nhits;
    out->subtests = e->subs;
    out->subtest_count = e->nsubs;
    out->score = round3(e->score_sum);
    autolearn_points(e);
    out->autolearn_points_head = e->head_points;
    out->autolearn_points_body = e->body_points;
    out->autolearn_points = round3(e->al_points);
    out->learned_points = e->learned_points;
    out->autolearn_force = e->autolearn_force;
    out->regex_limit_hits = e->limit_hits;
    out->time_limit_exceeded = e->timed_out;
    out->tags = e->tags;
    out->subjprefix = e->subjprefix;
    return 0;
}

/* ---- lint --------------------------------------------------------------------------------------
 */

static int cmp_func(const void *a, const void *b)
{
    const tamis__rule_t *x = *(tamis__rule_t *const *)a, *y = *(tamis__rule_t *const *)b;
    int c = strcmp(x->func, y->func);
    return c ? c : strcmp(x->name, y->name);
}

int tamis_rules_lint(const tamis_ruleset_t *rs, tamis_buf_t *out)
{
    if (!rs || !out)
        return TAMIS_EINVAL;
    static const char *const tn[] = {"header",    "body",         "rawbody",    "full",
                                     "uri",       "meta",         "mimeheader", "header eval",
                                     "body eval", "rawbody eval", "full eval"};
    tamis_buf_printf(out, "rules: %zu defined, %zu dropped, %zu using unsupported evals\n",
                     tamis_rules_count(rs), rs->dropped, rs->unsupported);
    for (size_t t = 0; t < sizeof(tn) / sizeof(tn[0]); t++)
        tamis_buf_printf(out, "  %s: %zu\n", tn[t], rs->count_by_type[t]);
    tamis__rule_t **u = malloc((rs->nrules + 1) * sizeof(*u));
    if (!u)
        return TAMIS_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < rs->nrules; i++) {
        tamis__rule_t *r = rs->rules[i];
        if (r->kind == TAMIS__K_EVAL && r->unsupported && !r->dropped)
            u[n++] = r;
        else if (r->kind != TAMIS__K_NONE && r->dropped)
            tamis_buf_printf(out, "dropped: %s (%s:%u): %s\n", r->name, r->file ? r->file : "?",
                             r->line, r->error ? r->error : "error");
    }
    qsort(u, n, sizeof(*u), cmp_func);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(u[i - 1]->func, u[i]->func) != 0)
            tamis_buf_printf(out, "%sunsupported eval %s:", i ? "\n" : "", u[i]->func);
        tamis_buf_printf(out, " %s", u[i]->name);
    }
    if (n)
        tamis_buf_putc(out, '\n');
    free(u);
    return out->err;
}
