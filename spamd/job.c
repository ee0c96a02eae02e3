/*
 * The work a worker thread does for one request: scan the message with the shared, immutable
 * rule set (or, for TELL, learn or forget it), then build the complete reply bytes and the log
 * line, so the loop thread only writes. Nothing here touches loop state.
 *
 * Bayes: tamisd_bayes_start() fixes the store folder once, before any worker runs. A Bayes handle
 * belongs to one thread, so each worker keeps its own small cache of handles by user (the spamc
 * User header names the per-user store); the LMDB environment under them is shared, and LMDB
 * serialises the writers (auto-learn, TELL, a concurrent tamis-learn).
 */
#include "tamisd.h"

#include "tamis/bayes.h"
#include "tamis/scan.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char bayes_dir[PATH_MAX]; /* "" = no Bayes; written once before the workers start */

/* CPU slots. With network tests on, a scan spends most of its time waiting for DNS answers,
 * which costs no CPU; so the pool has more threads than -m and these slots keep at most -m scans
 * computing at once. A scan gives its slot up while it waits (the resolver's wait hooks) and
 * takes one again when its answers are in, so lookups overlap instead of holding workers. */
static uv_sem_t cpu_slots;
static bool slots_on;

void tamisd_jobs_start(unsigned cpu_workers, bool gated)
{
    slots_on = gated && cpu_workers > 0 && uv_sem_init(&cpu_slots, cpu_workers) == 0;
}

void tamisd_cpu_release(void *arg)
{
    (void)arg;
    if (slots_on)
        uv_sem_post(&cpu_slots);
}

void tamisd_cpu_acquire(void *arg)
{
    (void)arg;
    if (slots_on)
        uv_sem_wait(&cpu_slots);
}

int tamisd_bayes_start(const tamisd_opts_t *o, const tamis_ruleset_t *rs, char *err, size_t errlen)
{
    bayes_dir[0] = '\0';
    const tamis_conf_t *c = rs ? tamis_rules_conf(rs) : NULL;
    if (!c || !c->use_bayes)
        return 0; /* use_bayes 0: no store at all */
    char def[PATH_MAX];
    snprintf(def, sizeof def, "%s/bayes", tamisd_state_dir(o));
    const char *path = o->bayes_path ? o->bayes_path : def;
    if (strlen(path) >= sizeof bayes_dir)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "Bayes path too long: %s", path);
    tamis_bayes_t *b = NULL;
    char e[256] = "";
    int rc = tamis_bayes_open(path, NULL, &b, e, sizeof e);
    if (rc != 0)
        return tamis_seterr(err, errlen, rc, "cannot open the Bayes store %s: %s", path, e);
    tamis_bayes_magic_t m;
    if (tamis_bayes_magic(b, &m, e, sizeof e) == 0)
        tamisd_log(TAMISD_LOG_INFO, "bayes: store %s: %llu spam, %llu ham learned%s", path,
                   (unsigned long long)m.nspam, (unsigned long long)m.nham,
                   m.nspam < c->bayes_min_spam_num || m.nham < c->bayes_min_ham_num
                       ? " (not used for scores until enough are learned)"
                       : "");
    tamis_bayes_close(b);
    memcpy(bayes_dir, path, strlen(path) + 1);
    return 0;
}

#define HANDLE_CACHE 16

typedef struct {
    char user[72];
    tamis_bayes_t *b;
    unsigned long used; /* LRU clock */
} handle_t;

static _Thread_local handle_t handles[HANDLE_CACHE];
static _Thread_local unsigned long handle_clock;

/* This thread's handle on user's store (NULL: no Bayes, or a user name the store refuses). */
static tamis_bayes_t *bayes_handle(const char *user)
{
    if (!bayes_dir[0])
        return NULL;
    if (!user)
        user = "";
    if (strlen(user) >= sizeof handles[0].user)
        return NULL;
    handle_t *victim = &handles[0];
    for (size_t i = 0; i < HANDLE_CACHE; i++) {
        if (handles[i].b && strcmp(handles[i].user, user) == 0) {
            handles[i].used = ++handle_clock;
            return handles[i].b;
        }
        if (!handles[i].b || handles[i].used < victim->used)
            victim = &handles[i];
    }
    tamis_bayes_options_t bo;
    tamis_bayes_options_default(&bo);
    bo.user = user;
    tamis_bayes_t *b = NULL;
    char e[256] = "";
    if (tamis_bayes_open(bayes_dir, &bo, &b, e, sizeof e) != 0) {
        tamisd_log(TAMISD_LOG_WARN, "bayes: store of user '%s': %s", user, e);
        return NULL;
    }
    tamis_bayes_close(victim->b);
    snprintf(victim->user, sizeof victim->user, "%s", user);
    victim->b = b;
    victim->used = ++handle_clock;
    return b;
}

/* The body of the reply, by verb (spec-protocol §3). */
static int reply_body(tamis_scan_t *s, tamis_verb_t verb, tamis_buf_t *body)
{
    switch (verb) {
    case TAMIS_VERB_SYMBOLS:
        return tamis_scan_symbols(s, body);
    case TAMIS_VERB_REPORT:
        return tamis_scan_report(s, body);
    case TAMIS_VERB_REPORT_IFSPAM:
        return tamis_scan_is_spam(s) ? tamis_scan_report(s, body) : 0;
    case TAMIS_VERB_PROCESS:
        return tamis_scan_rewrite(s, body);
    case TAMIS_VERB_HEADERS:
        return tamis_scan_headers(s, body);
    default:
        return 0; /* CHECK: headers only */
    }
}

/* The rule-matching budget: the rule set's time_limit, and within --timeout-child's time left
 * (budget_ms) a margin, so that the verdict from the rules that ran is sent before the child
 * timer gives up on the connection (spamc would then pass the message unscanned). */
static double rules_budget_ms(const tamisd_scan_t *j)
{
    const tamis_conf_t *c = tamis_rules_conf(j->rs);
    double b = c && c->time_limit > 0 ? c->time_limit * 1000.0 : 0;
    if (j->budget_ms > 0) {
        double margin = j->budget_ms / 10 > 1000 ? 1000 : j->budget_ms / 10;
        double child = j->budget_ms - margin > 1 ? j->budget_ms - margin : 1;
        if (b <= 0 || child < b)
            b = child;
    }
    return b;
}

/* lim (caller's storage) lets a message up to --max-size through the parser's own size limit. */
static void scan_opts(const tamisd_scan_t *j, tamis_scan_opts_t *o, tamis_msg_limits_t *lim)
{
    tamis_scan_opts_default(o);
    tamis_msg_limits_default(lim);
    if (j->max_size > lim->max_message_bytes)
        lim->max_message_bytes = j->max_size;
    o->limits = lim;
    o->remote_addr = j->remote_addr;
    o->remote_host = j->remote_host;
    o->user = j->user;
    o->local_only = j->local;
    o->net = j->local ? NULL : j->net;
    o->run.time_budget_ms = rules_budget_ms(j);
    o->bayes = bayes_handle(j->user);
}

/* spamd's TELL (spec-protocol §3): Set: local learns as the Message-class says (spam, else ham),
 * Remove: local forgets; remote is reporting to collaborative services, which Tamis does not do,
 * so it never changes anything. A message marked up by SpamAssassin or Tamis is learned as it
 * was before. DidSet/DidRemove name only the actions that changed the store. */
static void tell_run(tamisd_scan_t *j)
{
    unsigned did_set = 0, did_remove = 0;
    tamis_bayes_t *b =
        (j->tell_set | j->tell_remove) & TAMIS_TELL_LOCAL ? bayes_handle(j->user) : NULL;
    tamis_msg_t *m = NULL;
    char err[256] = "";
    int rc = 0;
    if (b) {
        tamis_msg_limits_t lim;
        tamis_msg_limits_default(&lim);
        if (j->max_size > lim.max_message_bytes)
            lim.max_message_bytes = j->max_size;
        rc = tamis_msg_parse(j->body.ptr, j->body.len, &lim, &m, err, sizeof err);
        if (rc == 0 && tamis_msg_header_first(m, "X-Spam-Checker-Version")) {
            const tamis_header_t *ct = tamis_msg_header_last(m, "Content-Type");
            size_t clen = 0;
            char *clean = tamis_bayes_remove_markup(j->body.ptr, j->body.len,
                                                    ct && ct->decoded ? ct->decoded : "", &clen);
            tamis_msg_t *m2 = NULL;
            if (clean && tamis_msg_parse(clean, clen, &lim, &m2, err, sizeof err) == 0) {
                tamis_msg_free(m);
                m = m2;
            }
            free(clean);
        }
    }
    if (m && (j->tell_set & TAMIS_TELL_LOCAL)) {
        bool spam = j->tell_class && strcmp(j->tell_class, "spam") == 0;
        rc = tamis_bayes_learn_msg(b, m, NULL, spam ? TAMIS_BAYES_SPAM : TAMIS_BAYES_HAM, false,
                                   err, sizeof err);
        if (rc > 0)
            did_set |= TAMIS_TELL_LOCAL;
    }
    if (m && rc >= 0 && (j->tell_remove & TAMIS_TELL_LOCAL)) {
        rc = tamis_bayes_learn_msg(b, m, NULL, TAMIS_BAYES_FORGET, false, err, sizeof err);
        if (rc > 0)
            did_remove |= TAMIS_TELL_LOCAL;
    }
    tamis_msg_free(m);
    if (rc < 0) {
        /* A failed write (full disk, store error) must not look like "already learned": spamc
         * reports the error reply and exits non-zero, so the caller can retry later. */
        tamisd_log(TAMISD_LOG_ERR, "conn=%s: tell: learning failed: %s", j->id ? j->id : "", err);
        char text[300];
        snprintf(text, sizeof text, "TELL failed: %s", err);
        for (char *p = text; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
        j->rc = tamis_proto_reply_error(&j->reply, TAMIS_EX_TEMPFAIL, text);
        tamis_buf_printf(&j->log, "tell: user=%s class=%s failed: %s", j->user ? j->user : "",
                         j->tell_class ? j->tell_class : "", err);
        return;
    }
    j->rc = tamis_proto_reply_tell(&j->reply, did_set, did_remove);
    tamis_buf_printf(&j->log,
                     "tell: user=%s class=%s set=%s%s remove=%s%s did_set=%s did_remove=%s",
                     j->user ? j->user : "", j->tell_class ? j->tell_class : "",
                     j->tell_set & TAMIS_TELL_LOCAL ? "local" : "",
                     j->tell_set & TAMIS_TELL_REMOTE ? ",remote" : "",
                     j->tell_remove & TAMIS_TELL_LOCAL ? "local" : "",
                     j->tell_remove & TAMIS_TELL_REMOTE ? ",remote" : "", did_set ? "local" : "",
                     did_remove ? "local" : "");
}

static void scan_run(tamisd_scan_t *j)
{
    tamis_buf_init(&j->reply, 0);
    tamis_buf_init(&j->log, 0);
    if (j->verb == TAMIS_VERB_TELL) {
        tell_run(j);
        return;
    }
    tamis_scan_opts_t o;
    tamis_msg_limits_t lim;
    scan_opts(j, &o, &lim);
    tamis_scan_t *s = NULL;
    j->rc = tamis_scan_run(j->rs, j->body.ptr, j->body.len, &o, &s, j->err, sizeof j->err);
    if (j->rc < 0)
        return;
    tamis_scan_dns_t dns;
    tamis_scan_dns(s, &dns);
    if (*dns.blocked_zones)
        tamisd_dns_warn_blocked(dns.blocked_zones);
    if (dns.queries)
        tamisd_dns_note_rounds(dns.rounds, dns.auth_rounds);
    tamis_buf_t body;
    tamis_buf_init(&body, 0);
    j->rc = reply_body(s, j->verb, &body);
    if (j->rc == 0 && body.err)
        j->rc = body.err;
    if (j->rc == 0) {
        tamis_proto_verdict_t v = {
            .is_spam = tamis_scan_is_spam(s),
            .score = tamis_scan_score_str(s),
            .threshold = tamis_scan_required_str(s),
            .body = tamis_slice(body.data ? body.data : "", body.len),
        };
        j->rc = tamis_proto_reply(&j->reply, j->verb, j->version, &v);
        tamis_scan_log_line(s, j->id, &j->log);
        if (tamis_scan_limits(s)) { /* fail-safe verdict: say which limit cut the scan short */
            tamis_buf_t l;
            tamis_buf_init(&l, 4096);
            if (tamis_scan_limits_log_line(s, j->id, &l) == 0)
                tamisd_log(TAMISD_LOG_WARN, "%s", l.data);
            tamis_buf_free(&l);
        }
    } else {
        snprintf(j->err, sizeof j->err, "building the %s reply failed: %s",
                 tamis_proto_verb_name(j->verb), tamis_strerror(j->rc));
    }
    tamis_buf_free(&body);
    tamis_scan_free(s);
}

void tamisd_scan_clear(tamisd_scan_t *j)
{
    tamis_buf_free(&j->reply);
    tamis_buf_free(&j->log);
}

void tamisd_scan_run(tamisd_scan_t *j)
{
    tamisd_cpu_acquire(NULL);
    scan_run(j);
    tamisd_cpu_release(NULL);
}
