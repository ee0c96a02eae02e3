/*
 * tags: SpamAssassin's template tags (_SCORE_, _TESTS(,)_, _SUMMARY_ …; spec-rules §6.3) and the
 * added X-Spam-* headers built from them (_get_added_headers).
 *
 * Tag syntax and lookup follow PerMsgStatus::_replace_tags: _NAME_ or _NAME(args)_, NAME of
 * [A-Z][A-Z0-9]* groups joined by single underscores; a tag we do not know is left as it was.
 */
#include "scan_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define VERSION_STR "4.0.1" /* SpamAssassin version Tamis is compatible with */

/* ---- tag values ------------------------------------------------------------------------------ */

typedef struct {
    const tamis_scan_t *s;
    const char *arg; /* NULL when the tag has no "(...)" */
    tamis_buf_t *out;
} tagctx_t;

/* _YESNO(spam,ham)_: split(/,/, arg, 2), "Yes"/"No" for a missing part; upper-cased on request. */
static void put_yesno(tamis_buf_t *o, const tamis_scan_t *s, const char *arg, bool caps)
{
    const char *v = s->is_spam ? "Yes" : "No";
    size_t n = strlen(v);
    if (arg && *arg) { /* split of "" gives nothing: both defaults */
        const char *comma = strchr(arg, ',');
        if (s->is_spam) {
            v = arg;
            n = comma ? (size_t)(comma - arg) : strlen(arg);
        } else if (comma) {
            v = comma + 1;
            n = strlen(v);
        }
    }
    for (size_t i = 0; i < n; i++)
        tamis_buf_putc(o, (char)(caps && v[i] >= 'a' && v[i] <= 'z' ? v[i] - 32 : v[i]));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void put_sorted_names(tamis_buf_t *out, const char *const *names, size_t n, const char *sep)
{
    const char **v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        out->err = TAMIS_ENOMEM;
        return;
    }
    memcpy(v, names, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i)
            tamis_buf_puts(out, sep);
        tamis_buf_puts(out, v[i]);
    }
    if (!n)
        tamis_buf_puts(out, "none");
    free(v);
}

static int cmp_hit_name(const void *a, const void *b)
{
    return strcmp((*(const tamis_hit_t *const *)a)->name, (*(const tamis_hit_t *const *)b)->name);
}

/* _TESTS(sep)_ and _TESTSSCORES(sep)_: sorted hit names, "none" if empty. */
static void put_tests(const tagctx_t *c, bool with_scores)
{
    const tamis_scan_t *s = c->s;
    size_t n = s->result.hit_count;
    const tamis_hit_t **v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        c->out->err = TAMIS_ENOMEM;
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = &s->result.hits[i];
    qsort(v, n, sizeof(*v), cmp_hit_name);
    const char *sep = c->arg && *c->arg ? c->arg : ",";
    for (size_t i = 0; i < n; i++) {
        if (i)
            tamis_buf_puts(c->out, sep);
        tamis_buf_puts(c->out, v[i]->name);
        if (with_scores) { /* "$scores->{$_} || '0'" */
            char num[64] = "0";
            if (v[i]->score != 0)
                tamis__scan_perl_num(num, sizeof num, v[i]->score);
            tamis_buf_printf(c->out, "=%s", num);
        }
    }
    if (!n)
        tamis_buf_puts(c->out, "none");
    free(v);
}

/* _SUBTESTSCOLLAPSED_: each name once, "(count)" after names seen more than once. */
static void put_subtests_collapsed(const tagctx_t *c)
{
    const tamis_scan_t *s = c->s;
    size_t n = s->result.subtest_count;
    const char **v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        c->out->err = TAMIS_ENOMEM;
        return;
    }
    memcpy(v, s->result.subtests, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_str);
    const char *sep = c->arg && *c->arg ? c->arg : ",";
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(v[j], v[i]) == 0)
            j++;
        if (i)
            tamis_buf_puts(c->out, sep);
        tamis_buf_puts(c->out, v[i]);
        if (j - i > 1)
            tamis_buf_printf(c->out, "(%zu)", j - i);
        i = j;
    }
    if (!n)
        tamis_buf_puts(c->out, "none");
    free(v);
}

static void put_score(const tagctx_t *c)
{
    const char *sc = tamis_scan_score_str(c->s);
    const char *pad = c->arg;
    /* _SCORE(PAD)_: PAD of only zeros or only spaces left-pads to its length + 3 */
    if (pad && *pad && (strspn(pad, "0") == strlen(pad) || strspn(pad, " ") == strlen(pad))) {
        long count = (long)strlen(pad) + 3 - (long)strlen(sc);
        if (count > 0)
            tamis_buf_append(c->out, pad, (size_t)count);
    }
    tamis_buf_puts(c->out, sc);
}

static void put_stars(const tagctx_t *c)
{
    const char *star = c->arg && *c->arg && strcmp(c->arg, "0") != 0 ? c->arg : "*";
    long n = (long)c->s->score; /* int() truncates toward zero */
    if (n > 50)
        n = 50;
    for (long i = 0; i < n; i++)
        tamis_buf_puts(c->out, star);
}

/* "1.2.3.4" -> "4.3.2.1"; IPv6 is nibble-reversed as SpamAssassin does; "" if not an IP. */
static void put_rev_ip(tamis_buf_t *out, const char *ip)
{
    if (!ip || !*ip)
        return;
    if (!strchr(ip, ':')) {
        const char *parts[4];
        size_t lens[4], k = 0;
        const char *p = ip;
        while (k < 4) {
            parts[k] = p;
            lens[k] = strcspn(p, ".");
            p += lens[k];
            k++;
            if (*p != '.')
                break;
            p++;
        }
        for (size_t i = k; i-- > 0;)
            tamis_buf_printf(out, "%.*s%s", (int)lens[i], parts[i], i ? "." : "");
        return;
    }
    unsigned char a[16];
    if (inet_pton(AF_INET6, ip, a) != 1)
        return;
    for (int i = 31; i >= 0; i--)
        tamis_buf_printf(out, "%x%s", (a[i / 2] >> (i % 2 ? 0 : 4)) & 15, i ? "." : "");
}

/* A "key=value" of the first "[ … ]" entry of a relays string. */
static void put_relay_field(tamis_buf_t *out, const char *relays, const char *key)
{
    if (!relays)
        return;
    const char *end = strchr(relays, ']');
    size_t kl = strlen(key);
    for (const char *p = relays; *p && (!end || p < end); p++) {
        if ((p == relays || p[-1] == ' ') && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            p += kl + 1;
            size_t n = strcspn(p, " ]");
            tamis_buf_append(out, p, n);
            return;
        }
    }
}

static const char *str_or_empty(const char *p)
{
    return p ? p : "";
}

/* First address of a header value: inside <...>, else the first word holding an '@'. */
static const char *first_addr(tamis_arena_t *a, const char *v)
{
    const char *lt = strchr(v, '<');
    if (lt) {
        size_t n = strcspn(lt + 1, ">");
        return tamis_arena_strndup(a, lt + 1, n);
    }
    for (const char *p = v; *p;) {
        p += strspn(p, " \t\r\n,;");
        size_t n = strcspn(p, " \t\r\n,;");
        if (memchr(p, '@', n))
            return tamis_arena_strndup(a, p, n);
        if (!n)
            break;
        p += n;
    }
    return tamis_arena_strdup(a, "");
}

/* $pms->get(EXPR) for the common forms: "Name", "Name:addr", "Name:addr:host", "Name:name". */
static const char *header_value(const tamis_scan_t *s, const char *expr)
{
    char name[256];
    size_t nl = strcspn(expr, ":");
    if (!nl || nl >= sizeof name)
        return NULL;
    snprintf(name, sizeof name, "%.*s", (int)nl, expr);
    const char *mods = expr + nl;
    static const char *const relay_names[] = {"X-Spam-Relays-Trusted", "X-Spam-Relays-Untrusted",
                                              "X-Spam-Relays-Internal", "X-Spam-Relays-External"};
    const char *relay_vals[] = {s->relays.trusted, s->relays.untrusted, s->relays.internal,
                                s->relays.external};
    for (size_t i = 0; i < 4; i++) /* the pseudo-headers rules see */
        if (!strcasecmp(name, relay_names[i]))
            return str_or_empty(relay_vals[i]);
    const char *v = s->header_get ? s->header_get(s, name) : NULL;
    if (!s->header_get) { /* hand-made results: the pristine value, newline-terminated */
        v = tamis__pristine_header_unfolded(&s->pr, name, s->arena);
        v = v ? tamis_arena_printf(s->arena, "%s\n", v) : NULL;
    }
    if (!v || !*mods)
        return v;
    if (strstr(mods, ":addr")) {
        v = first_addr(s->arena, v);
        if (v && strstr(mods, ":host")) {
            const char *at = strrchr(v, '@');
            char *h = tamis_arena_strdup(s->arena, at ? at + 1 : "");
            for (char *p = h; p && *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p + 32);
            v = h;
        }
        return v;
    }
    if (strstr(mods, ":name")) {
        const char *lt = strchr(v, '<');
        size_t n = lt ? (size_t)(lt - v) : 0;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '"'))
            n--;
        size_t b = strspn(v, " \"");
        return tamis_arena_strndup(s->arena, v + (b < n ? b : n), n > b ? n - b : 0);
    }
    size_t n = strlen(v); /* other modifiers: the value without its newline */
    while (n && v[n - 1] == '\n')
        n--;
    return tamis_arena_strndup(s->arena, v, n);
}

/* _RELAYS*REVIP_: reversed public "ip=" values of a relays string, space-joined; false if none
 * (SpamAssassin leaves the tag unset then). */
static bool put_relay_revips(tamis_buf_t *out, const char *relays)
{
    bool any = false;
    for (const char *p = relays ? strstr(relays, "ip=") : NULL; p; p = strstr(p + 3, "ip=")) {
        if (p != relays && p[-1] != ' ')
            continue;
        char ip[64];
        size_t n = strcspn(p + 3, " ]");
        if (!n || n >= sizeof ip)
            continue;
        snprintf(ip, sizeof ip, "%.*s", (int)n, p + 3);
        if (!strncmp(ip, "10.", 3) || !strncmp(ip, "127.", 4) || !strncmp(ip, "192.168.", 8) ||
            (!strncmp(ip, "172.", 4) && atoi(ip + 4) >= 16 && atoi(ip + 4) <= 31))
            continue;
        if (any)
            tamis_buf_putc(out, ' ');
        put_rev_ip(out, ip);
        any = true;
    }
    return any;
}

/* _AUTOLEARNSCORE_: the hit scores that auto-learning counts (not noautolearn, userconf or
 * learn rules), rounded to 3 decimals (_get_autolearn_points). */
static void put_autolearn_score(tamis_buf_t *o, const tamis_scan_t *s)
{
    double points = 0;
    unsigned skip = TAMIS_TFLAG_NOAUTOLEARN | TAMIS_TFLAG_USERCONF | TAMIS_TFLAG_LEARN;
    for (size_t i = 0; i < s->result.hit_count; i++)
        if (!(s->result.hits[i].tflags & skip))
            points += s->result.hits[i].score;
    char num[64];
    snprintf(num, sizeof num, "%.3f", points);
    tamis__scan_perl_num(num, sizeof num, strtod(num, NULL));
    tamis_buf_puts(o, num);
}

/* Bayes.pm's _compute_declassification_distance, by search: how many more learns of the other
 * class would make the token too weak to count (prob within MIN_PROB_STRENGTH of 0.5). */
static long declass_distance(const tamis__scan_bayes_t *b, const tamis_bayes_token_info_t *t)
{
    uint64_t ns = b->res.nspam, nh = b->res.nham;
    for (long k = 0; k < 1000000; k++) {
        uint64_t s = t->spam + (t->prob >= 0.5 ? 0 : (uint64_t)k);
        uint64_t h = t->ham + (t->prob >= 0.5 ? (uint64_t)k : 0);
        double p = tamis_bayes_token_prob(s, h, ns, nh, true);
        if (p < 0 ||
            (p > 0.5 - TAMIS_BAYES_MIN_PROB_STRENGTH && p < 0.5 + TAMIS_BAYES_MIN_PROB_STRENGTH))
            return k;
    }
    return 1000000;
}

static void put_digit(tamis_buf_t *o, unsigned long v)
{
    if (v > 9)
        tamis_buf_putc(o, '+');
    else
        tamis_buf_printf(o, "%lu", v);
}

/* _SPAMMYTOKENS(N,format)_ / _HAMMYTOKENS(...)_: bayes_report_make_list, default "5,compact". */
static void put_token_list(tagctx_t *c, const tamis_bayes_token_info_t *v, size_t n)
{
    const tamis__scan_bayes_t *b = &c->s->bayes;
    tamis_buf_t *o = c->out;
    long limit = 5;
    char fmt[32] = "compact";
    if (c->arg && *c->arg) {
        limit = strtol(c->arg, NULL, 10);
        const char *comma = strchr(c->arg, ',');
        if (comma && comma[1]) {
            size_t l = strcspn(comma + 1, ",");
            snprintf(fmt, sizeof fmt, "%.*s", (int)(l < sizeof fmt ? l : sizeof fmt - 1),
                     comma + 1);
        }
    }
    static const char *const known[] = {"short",  "Short", "compact", "Compact",
                                        "medium", "long",  "Long"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        ok |= !strcmp(known[i], fmt);
    if (!ok) {
        tamis_buf_puts(o,
                       "Tags must be one of: short, Short, compact, Compact, medium, long, Long");
        return;
    }
    size_t amt = limit > 0 && (size_t)limit < n ? (size_t)limit : (limit > 0 ? n : 0);
    for (size_t i = 0; i < amt; i++) {
        const tamis_bayes_token_info_t *t = &v[i];
        long d = declass_distance(b, t);
        long age = (long)((c->s->now - (time_t)t->atime) / 86400);
        unsigned long cnt = (unsigned long)t->spam + t->ham;
        if (i)
            tamis_buf_puts(o, ", ");
        if (!strcmp(fmt, "short")) {
            tamis_buf_puts(o, t->token);
        } else if (!strcmp(fmt, "Short")) {
            tamis_buf_printf(o, "Token: \"%s\"", t->token);
        } else if (!strcmp(fmt, "compact")) {
            tamis_buf_printf(o, "%.3f-", t->prob);
            put_digit(o, (unsigned long)d);
            tamis_buf_printf(o, "--%s", t->token);
        } else if (!strcmp(fmt, "Compact")) {
            tamis_buf_printf(o, "Probability %.3f -declassification distance ", t->prob);
            put_digit(o, (unsigned long)d);
            tamis_buf_printf(o, " (\"+\" means > 9) --token: \"%s\"", t->token);
        } else if (!strcmp(fmt, "medium")) {
            tamis_buf_printf(o, "%.3f-", t->prob);
            put_digit(o, (unsigned long)d);
            tamis_buf_putc(o, '-');
            put_digit(o, cnt);
            tamis_buf_printf(o, "--%s", t->token);
        } else if (!strcmp(fmt, "long")) {
            tamis_buf_printf(o, "%.3f-%ld--%uh-%us--%ldd--%s", t->prob, d, t->ham, t->spam, age,
                             t->token);
        } else {
            tamis_buf_printf(o,
                             "Probability %.3f -declassification distance %ld --in %u ham "
                             "messages -and %u spam messages --%ld} days old--token:\"%s\"",
                             t->prob, d, t->ham, t->spam, age, t->token);
        }
    }
}

/* Bayes tags (Bayes.pm set_tag); false when Bayes did not run, so they stay as written. */
static bool bayes_tag(tagctx_t *c, const char *name)
{
    const tamis__scan_bayes_t *b = &c->s->bayes;
    tamis_buf_t *o = c->out;
    if (!strcmp(name, "TOKENSUMMARY")) {
        if (!b->ran) {
            tamis_buf_puts(o, "Bayes not run.");
            return true;
        }
        size_t neutral = b->res.tokens_learned - b->res.spammy - b->res.hammy;
        tamis_buf_printf(o, "Tokens: new, %zu; hammy, %zu; neutral, %zu; spammy, %zu.",
                         b->res.tokens_total - b->res.tokens_learned, b->res.hammy, neutral,
                         b->res.spammy);
        return true;
    }
    if (!strcmp(name, "BAYESSTATUS")) {
        /* Tamis's own: what keeps Bayes out, or "" once it takes part */
        if (b->classified && b->res.status == TAMIS_BAYES_NOT_ENOUGH) {
            const tamis_conf_t *cf = c->s->conf;
            bool ls = b->res.nspam < cf->bayes_min_spam_num;
            bool lh = b->res.nham < cf->bayes_min_ham_num;
            tamis_buf_puts(o, "Bayes: ");
            if (ls)
                tamis_buf_printf(o, "%llu/%u spam%s", (unsigned long long)b->res.nspam,
                                 cf->bayes_min_spam_num, lh ? ", " : "");
            if (lh)
                tamis_buf_printf(o, "%llu/%u ham", (unsigned long long)b->res.nham,
                                 cf->bayes_min_ham_num);
            tamis_buf_puts(o, " learned");
        }
        return true;
    }
    if (!b->ran)
        return false;
    if (!strcmp(name, "BAYESTC"))
        tamis_buf_printf(o, "%zu", b->res.tokens_total);
    else if (!strcmp(name, "BAYESTCLEARNED"))
        tamis_buf_printf(o, "%zu", b->res.tokens_learned);
    else if (!strcmp(name, "BAYESTCSPAMMY"))
        tamis_buf_printf(o, "%zu", b->res.spammy);
    else if (!strcmp(name, "BAYESTCHAMMY"))
        tamis_buf_printf(o, "%zu", b->res.hammy);
    else if (!strcmp(name, "SPAMMYTOKENS"))
        put_token_list(c, b->spammy, b->nspammy);
    else if (!strcmp(name, "HAMMYTOKENS"))
        put_token_list(c, b->hammy, b->nhammy);
    else
        return false;
    return true;
}

/* Tags exported by rules (named captures), "NAME", "value" pairs. */
static bool tag_from_rules(tagctx_t *c, const char *name)
{
    const char *const *t = c->s->result.tags;
    for (size_t i = 0; t && t[i] && t[i + 1] && i < 2 * 4096; i += 2)
        if (!strcmp(t[i], name)) {
            tamis_buf_puts(c->out, t[i + 1]);
            return true;
        }
    return false;
}

/* The value of one tag into c->out; false when the tag is not one we know (left untouched). */
static bool tag_value(tagctx_t *c, const char *name)
{
    const tamis_scan_t *s = c->s;
    tamis_buf_t *o = c->out;
    char tmp[256];
    if (!strcmp(name, "YESNO")) {
        put_yesno(o, s, c->arg, false);
    } else if (!strcmp(name, "YESNOCAPS")) {
        put_yesno(o, s, c->arg, true);
    } else if (!strcmp(name, "SCORE") || !strcmp(name, "HITS")) {
        put_score(c);
    } else if (!strcmp(name, "REQD")) {
        tamis_buf_puts(o, tamis_scan_required_str(s));
    } else if (!strcmp(name, "VERSION")) {
        tamis_buf_puts(o, VERSION_STR);
    } else if (!strcmp(name, "SUBVERSION")) {
        tamis_buf_puts(o, "Tamis " TAMIS_VERSION);
    } else if (!strcmp(name, "RULESVERSION")) {
        /* "" for rules without "# UPDATE version" lines, as SpamAssassin prints then */
        tamis_buf_puts(o, s->rs ? tamis_rules_version(s->rs) : "");
    } else if (!strcmp(name, "HOSTNAME")) {
        const char *h = s->conf->report_hostname;
        tamis_buf_puts(o, h && *h ? h : str_or_empty(s->hostname));
    } else if (!strcmp(name, "REMOTEHOSTNAME")) {
        tamis_buf_puts(o, s->remote_host && *s->remote_host ? s->remote_host : "localhost");
    } else if (!strcmp(name, "REMOTEHOSTADDR")) {
        tamis_buf_puts(o, s->remote_addr && *s->remote_addr ? s->remote_addr : "127.0.0.1");
    } else if (!strcmp(name, "FIRSTTRUSTEDIP")) {
        tamis_buf_puts(o, str_or_empty(s->relays.first_trusted_ip));
    } else if (!strcmp(name, "FIRSTTRUSTEDREVIP")) {
        put_rev_ip(o, s->relays.first_trusted_ip);
    } else if (!strcmp(name, "LASTEXTERNALIP")) {
        tamis_buf_puts(o, str_or_empty(s->relays.last_external_ip));
    } else if (!strcmp(name, "LASTEXTERNALREVIP")) {
        put_rev_ip(o, s->relays.last_external_ip);
    } else if (!strcmp(name, "LASTEXTERNALRDNS")) {
        put_relay_field(o, s->relays.external, "rdns");
    } else if (!strcmp(name, "LASTEXTERNALHELO")) {
        put_relay_field(o, s->relays.external, "helo");
    } else if (!strcmp(name, "RELAYSTRUSTED")) {
        tamis_buf_puts(o, str_or_empty(s->relays.trusted));
    } else if (!strcmp(name, "RELAYSUNTRUSTED")) {
        tamis_buf_puts(o, str_or_empty(s->relays.untrusted));
    } else if (!strcmp(name, "RELAYSINTERNAL")) {
        tamis_buf_puts(o, str_or_empty(s->relays.internal));
    } else if (!strcmp(name, "RELAYSEXTERNAL")) {
        tamis_buf_puts(o, str_or_empty(s->relays.external));
    } else if (!strcmp(name, "CONTACTADDRESS")) {
        tamis_buf_puts(o, str_or_empty(s->conf->report_contact));
    } else if (!strcmp(name, "BAYES")) {
        if (s->bayes.ran && s->bayes.res.status == TAMIS_BAYES_OK)
            tamis_buf_printf(o, "%3.4f", s->bayes.res.prob);
        else
            tamis_buf_puts(o, "0.5"); /* no Bayes score */
    } else if (!strcmp(name, "DATE")) {
        tamis__scan_rfc822_date(tmp, sizeof tmp, s->now);
        tamis_buf_puts(o, tmp);
    } else if (!strcmp(name, "STARS")) {
        put_stars(c);
    } else if (!strcmp(name, "AUTOLEARN")) {
        tamis_buf_puts(o, tamis_scan_autolearn(s)); /* get_autolearn_status */
    } else if (!strcmp(name, "AUTOLEARNSCORE")) {
        put_autolearn_score(o, s);
    } else if (!strcmp(name, "TESTS")) {
        put_tests(c, false);
    } else if (!strcmp(name, "TESTSSCORES")) {
        put_tests(c, true);
    } else if (!strcmp(name, "SUBTESTS")) {
        put_sorted_names(o, s->result.subtests, s->result.subtest_count,
                         c->arg && *c->arg ? c->arg : ",");
    } else if (!strcmp(name, "SUBTESTSCOLLAPSED")) {
        put_subtests_collapsed(c);
    } else if (!strcmp(name, "PREVIEW")) {
        tamis_buf_puts(o, tamis__scan_preview((tamis_scan_t *)s));
    } else if (!strcmp(name, "REPORT")) {
        tamis_buf_putc(o, '\n');
        tamis_buf_puts(o, str_or_empty(s->terse));
    } else if (!strcmp(name, "SUMMARY")) {
        tamis_buf_puts(o, str_or_empty(s->summary));
    } else if (!strcmp(name, "SUBJPREFIX")) {
        tamis_buf_puts(o, str_or_empty(s->result.subjprefix));
    } else if (!strcmp(name, "HEADER")) {
        if (c->arg && *c->arg)
            tamis_buf_puts(o, str_or_empty(header_value(s, c->arg)));
    } else if (!strcmp(name, "TIMING")) {
        tamis_buf_printf(o, "total %.0f ms", s->elapsed_ms);
    } else if (!strcmp(name, "LANGUAGES")) {
        tamis_buf_puts(o, str_or_empty(s->languages));
    } else if (!strcmp(name, "AUTHORDOMAIN")) {
        const char *d = header_value(s, "From:addr:host");
        if (!d || !*d)
            return false;
        tamis_buf_puts(o, d);
    } else if (!strcmp(name, "SENDERDOMAIN")) {
        const char *d = header_value(s, "Return-Path:addr:host");
        if (!d || !*d)
            return false;
        tamis_buf_puts(o, d);
    } else if (!strcmp(name, "RELAYSTRUSTEDREVIP")) {
        return put_relay_revips(o, s->relays.trusted);
    } else if (!strcmp(name, "RELAYSUNTRUSTEDREVIP")) {
        return put_relay_revips(o, s->relays.untrusted);
    } else if (!strcmp(name, "RELAYSINTERNALREVIP")) {
        return put_relay_revips(o, s->relays.internal);
    } else if (!strcmp(name, "RELAYSEXTERNALREVIP")) {
        return put_relay_revips(o, s->relays.external);
    } else if (bayes_tag(c, name)) {
        return true;
    } else {
        return tag_from_rules(c, name);
    }
    return true;
}

/* ---- _replace_tags --------------------------------------------------------------------------- */

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_alnum_up(char c)
{
    return is_upper(c) || (c >= '0' && c <= '9');
}

/* Tries /_([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?:\(.*?\))?)_/ at t[i] == '_' with Perl's greedy
 * backtracking over the name groups. On success sets the name end, the argument span (or none)
 * and the end of the whole match. */
static bool match_tag(const char *t, size_t n, size_t i, size_t *name_end, size_t *arg_start,
                      size_t *arg_end, size_t *match_end)
{
    size_t k = i + 1;
    if (k >= n || !is_upper(t[k]))
        return false;
    while (k < n && is_alnum_up(t[k]))
        k++;
    size_t ends[64], ne = 0; /* possible name ends, shortest first */
    ends[ne++] = k;
    while (k + 1 < n && t[k] == '_' && is_alnum_up(t[k + 1]) && ne < 64) {
        k++;
        while (k < n && is_alnum_up(t[k]))
            k++;
        ends[ne++] = k;
    }
    for (size_t e = ne; e-- > 0;) {
        size_t p = ends[e];
        if (p < n && t[p] == '(') {
            /* \(.*?\)_ : the first ")_" on the same line */
            for (size_t q = p + 1; q + 1 < n && t[q] != '\n' && q - p <= TAMIS__SCAN_MAX_TAG_ARG;
                 q++)
                if (t[q] == ')' && t[q + 1] == '_') {
                    *name_end = p;
                    *arg_start = p + 1;
                    *arg_end = q;
                    *match_end = q + 2;
                    return true;
                }
        }
        if (p < n && t[p] == '_') {
            *name_end = p;
            *arg_start = *arg_end = 0;
            *match_end = p + 1;
            return true;
        }
    }
    return false;
}

int tamis__scan_replace_tags(const tamis_scan_t *s, const char *tmpl, size_t n, tamis_buf_t *out)
{
    size_t i = 0;
    while (i < n) {
        const char *u = memchr(tmpl + i, '_', n - i);
        if (!u) {
            tamis_buf_append(out, tmpl + i, n - i);
            break;
        }
        size_t at = (size_t)(u - tmpl);
        tamis_buf_append(out, tmpl + i, at - i);
        size_t ne, as, ae, me;
        if (!match_tag(tmpl, n, at, &ne, &as, &ae, &me)) {
            tamis_buf_putc(out, '_');
            i = at + 1;
            continue;
        }
        char name[128], *arg = NULL;
        size_t nl = ne - at - 1;
        snprintf(name, sizeof name, "%.*s", (int)(nl < sizeof name ? nl : sizeof name - 1),
                 tmpl + at + 1);
        if (as) {
            arg = strndup(tmpl + as, ae - as);
            if (!arg)
                return out->err = TAMIS_ENOMEM;
        }
        tagctx_t c = {s, arg, out};
        size_t before = out->len;
        bool known = strncmp(name, "ADDEDHEADER", 11) != 0 && tag_value(&c, name);
        if (!known) {
            out->len = before;
            tamis_buf_append(out, tmpl + at, me - at);
        }
        free(arg);
        i = me;
    }
    return out->err;
}

int tamis_scan_expand(const tamis_scan_t *s, const char *template, tamis_buf_t *out)
{
    if (!s || !template || !out)
        return TAMIS_EINVAL;
    return tamis__scan_replace_tags(s, template, strlen(template), out);
}

/* ---- the added headers ---------------------------------------------------------------------- */

int tamis__scan_added_headers(const tamis_scan_t *s, bool spam, tamis_buf_t *out)
{
    const tamis_conf_t *conf = s->conf;
    unsigned want = spam ? TAMIS_CONF_SPAM : TAMIS_CONF_HAM;
    tamis_buf_t v, f;
    tamis_buf_init(&v, TAMIS__SCAN_MAX_EXPANSION);
    tamis_buf_init(&f, TAMIS__SCAN_MAX_EXPANSION);
    for (size_t i = 0; i < conf->header_count; i++) {
        const tamis_conf_header_t *h = &conf->headers[i];
        if (!(h->when & want) || !h->name)
            continue;
        tamis_buf_reset(&v);
        tamis_buf_reset(&f);
        const char *tmpl = h->template ? h->template : "";
        tamis__scan_replace_tags(s, tmpl, strlen(tmpl), &v);
        tamis__scan_fold_header(&f, h->name, v.data ? v.data : "", v.len, conf->fold_headers);
        tamis_buf_printf(out, "X-Spam-%s: ", h->name);
        tamis__scan_mime_encode(out, f.data ? f.data : "", f.len);
        tamis_buf_putc(out, '\n');
        if (v.err || f.err)
            out->err = TAMIS_ENOMEM;
    }
    tamis_buf_free(&v);
    tamis_buf_free(&f);
    if (conf->authres_header && s->auth) { /* RFC 8601, after our X-Spam-* fields */
        tamis_auth_results_header(s->auth, tamis__scan_authserv_id(s), out);
        tamis_buf_putc(out, '\n');
    }
    return out->err;
}

const char *tamis__scan_authserv_id(const tamis_scan_t *s)
{
    const char *id = s->conf->authres_serv_id;
    return id && *id ? id : s->hostname ? s->hostname : "localhost";
}
