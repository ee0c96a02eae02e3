/*
 * Received chain parsing, following Mail::SpamAssassin::Message::Metadata::Received
 * (parse_received_line): the common prelude (skips, id, helo=, by, auth, envelope-from) is done as
 * SpamAssassin does it; the ip/rdns/helo/ident of the "from" clause come from an ordered table of
 * the MTA formats SpamAssassin knows best (Exchange, Exim, Postfix, qmail, Sendmail, generic),
 * then its fall-back (first [ip] plus a "by"). Trust decisions are not made here (lib/rules).
 * Regexes are GLib GRegex (PCRE2), compiled once.
 */
#include "msg_int.h"

#include <arpa/inet.h>
#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define IPRE "(?:IPv6:)?(?:\\d{1,3}(?:\\.\\d{1,3}){3}|[0-9a-fA-F]*:[0-9a-fA-F:.]*[0-9a-fA-F])"

/* Roles of the capture groups: h helo, r rdns, x rdns with "IDENT:user@"/"user@" moved to ident,
 * R rdns+helo, i ip, b by, d ident, s Exim "(... helo=x ident=y)", '_' ignored.
 * kind: parse, skip (SpamAssassin ignores the line), fetch (POP/IMAP fetcher marker: skip, and
 * SpamAssassin restarts the trusted chain). cond: substring required; ncond: substring excluded. */
enum { PARSE, SKIP, FETCH };

typedef struct {
    int kind;
    const char *cond, *ncond;
    const char *re;
    const char *roles;
    bool clear_id;
    bool dns; /* the MTA always looks up rDNS: an empty one means there is none
                 (Received.pm's $mta_looked_up_dns) */
} fmt_t;

#define LOCALHOST                                                                                  \
    "(?:localhost(?:\\.localdomain)?|127\\.0\\.0\\.1|(?:IPv6:)?::1|(?:IPv6:)?::ffff:127\\.0\\."    \
    "0\\.1)"
#define QMAIL_END                                                                                  \
    "( \\(envelope-sender <\\S+>\\))? by (\\S+)(?: \\(.+\\))* with (?:.* )?(?:SMTP|QMQP)(?! id )"

/* In the order parse_received_line tries them. */
static const fmt_t formats[] = {
    {PARSE, " authenticated user ", NULL, "(" IPRE ")\\b(?![.-]).{10,80}by (\\S+) with HTTP", "ib",
     false, false},
    {PARSE, "with HTTP (WebMailUI)", NULL,
     "(" IPRE ") by (\\S+) \\(" IPRE "\\) with HTTP \\(WebMailUI\\)", "ib", false, false},
    {PARSE, " SMTPSVC", NULL,
     "^(\\S*) \\(\\[(" IPRE ")\\][^\\)]{0,40}\\) by (\\S+) with Microsoft SMTPSVC", "hib", false,
     false},
    {SKIP, " SMTPSVC", NULL, "^mail pickup service by (\\S+) with Microsoft SMTPSVC$", "", false,
     false},
    {PARSE, " with ", NULL,
     "^(?=.* with (?:Microsoft SMTP Server|mapi id) (?:\\([^\\)]+\\) "
     ")?\\d+\\.\\d+\\.\\d+\\.\\d+(?:$| ))"
     "(\\S+) \\(\\[?(" IPRE ")(?:%[A-Z0-9._~-]*)?\\]?\\) by (\\S+) ",
     "hib", true, false},
    {SKIP, "Exim", NULL, "\\bwith local(?:-\\S+)? ", "", false, false},
    {PARSE, "Exim", NULL, "^\\[(" IPRE ")\\] \\((.*?)\\) by (\\S+) ", "isb", false, false},
    {PARSE, "Exim", NULL, "^(\\S+) \\(\\[(" IPRE ")\\](.*?)\\) by (\\S+) ", "Risb", false, false},
    {PARSE, "Exim", NULL, "^(\\S+) \\[(" IPRE ")\\](:\\d+)? by (\\S+) ", "Ri_b", false, false},
    {PARSE, " (Postfix) with", NULL, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) ", "hrib",
     false, true},
    {PARSE, "with HTTP", NULL, "^(" IPRE ") \\(\\[" IPRE "\\]\\) by (\\S+)", "ib", false, false},
    {PARSE, NULL, "(qmail-", "^(\\S+) \\((\\S+) \\[(" IPRE ")\\].*\\) by (\\S+) \\(", "hxib", false,
     true},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) with \\S+ \\(", "hrib",
     false, true},
    {PARSE, NULL, NULL, "^(\\S+) \\(\\[(" IPRE ")\\] helo=(\\S+)\\) by (\\S+) with ", "rihb", false,
     false},
    {PARSE, NULL, NULL, "^(\\S+) \\(<unknown\\S*>\\[(" IPRE ")\\]\\) by (\\S+) ", "hib", false,
     false},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S+\\.\\S+)\\[(" IPRE ")\\]\\) by (\\S+) ", "hrib", false,
     true},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S*)\\@\\[(" IPRE ")\\].*\\) by (\\S+) \\(", "hdib", false,
     true},
    {PARSE, ".hotmail.msn.com ", NULL, "^(?:(" IPRE ") )?.*?by (\\S+\\.hotmail\\.msn\\.com) ", "ib",
     false, false},
    {PARSE, "qpsmtpd", NULL,
     "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((" IPRE ")\\) by (\\S+) \\(qpsmtpd/\\S+\\) with "
     "(?:ESMTP|SMTP)",
     "rhib", false, false},
    {PARSE, NULL, NULL,
     "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\[(" IPRE ")\\] by (\\S+) \\([^\\)]+\\) with "
     "(?:ESMTP|SMTP)",
     "rhib", false, false},
    {PARSE, NULL, NULL,
     "^(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\((\\S*)@\\[?(" IPRE "),?\\]?\\)" QMAIL_END,
     "rhdi_b", false, false},
    {PARSE, NULL, NULL,
     "^(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\(\\[?(" IPRE ")\\]?\\)" QMAIL_END, "rhi_b", false,
     false},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S*)@\\[?(" IPRE ")\\]?\\)" QMAIL_END, "Rdi_b", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\(\\[?(" IPRE ")\\]?\\)" QMAIL_END, "Ri_b", false, false},
    {PARSE, NULL, NULL, "^\\[(" IPRE ")\\] by (\\S+) via HTTP$", "ib", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\( \\[(" IPRE ")\\]\\).*? by (\\S+) ", "hib", false, false},
    {PARSE, NULL, NULL, "^\\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) ", "hib", false, false},
    {PARSE, NULL, NULL, "^\\[(" IPRE ")\\] by (\\S+) ", "ib", false, false},
    {PARSE, NULL, NULL, "^\\(\\[?(" IPRE ")\\]?\\) by (\\S+) ", "ib", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\[(" IPRE ")\\] by (\\S+) \\[" IPRE "\\] with ", "hib", false,
     true},
    {PARSE, NULL, NULL, "^(\\S+) \\[\\((" IPRE ")\\)\\] by (\\S+) \\(" IPRE "\\) ", "hib", false,
     false},
    {PARSE, NULL, NULL, "^(\\S+) \\(\\[(" IPRE ")\\]\\) by (\\S+) \\(", "hib", false, true},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\).*? by (\\S+)\\b", "hrib", false,
     true},
    {PARSE, NULL, NULL, "^(\\S+) \\(\\[(" IPRE ")(?:[.:]\\d+)?\\]\\).*? by (\\S+) ", "hib", false,
     true},
    {FETCH, NULL, NULL, "with (?:POP3|IMAP)", "", false, false},
    {PARSE, NULL, NULL,
     "^(\\S+) \\((?:HELO|EHLO) ([^\\)]*)\\) \\((\\S*@)?\\[?(" IPRE ")\\]?\\).* by (\\S+) ", "rhdib",
     false, true},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S*@)?\\[?(" IPRE ")\\]?\\).* by (\\S+) ", "Rdib", false,
     true},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) with ", "hrib", false,
     true},
    {PARSE, NULL, NULL,
     "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((?:(\\S+)\\@)?(" IPRE ").*?\\) by (\\S+) with ",
     "rhdib", false, true},
    {PARSE, NULL, NULL,
     "^\\[(" IPRE ")\\] \\((?:account \\S+ )?(?:HELO|EHLO) (\\S*)\\) by (\\S+) \\(", "ihb", false,
     false},
    {PARSE, " (CommuniGate Pro", NULL, "^(\\S+) \\(\\[(" IPRE ")\\] verified\\) by (\\S+) \\(",
     "Rib", false, true},
    {PARSE, NULL, NULL, "^\\(\\[(" IPRE ")\\]\\) by (\\S+) with ", "ib", false, false},
    {PARSE, NULL, NULL, "^([^\\d]\\S+) \\((" IPRE ")\\) by (\\S+) ", "hib", false, false},
    {SKIP, NULL, NULL, "^\\S+ \\(\\S+\\) by \\S+ \\(Content Technologies ", "", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\(\\[(" IPRE ")\\] \\[(\\S+)\\]\\) by (\\S+) with ", "hi_b",
     false, false},
    {PARSE, NULL, NULL, "^(" IPRE ") by (\\S+) with ", "ib", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\((\\S+)\\[(" IPRE ")\\]\\) by (\\S+) ", "hrib", false, true},
    {PARSE, NULL, NULL, "^\\[(" IPRE ")\\]\\S+ \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ", "ihb", false,
     false},
    {PARSE, NULL, NULL, "^(" IPRE ") \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ", "ihb", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\[(" IPRE ")\\] by (\\S+) ", "hib", false, false},
    {PARSE, NULL, NULL, "^(\\S+)\\((" IPRE ")\\) by (\\S+) ", "rib", false, false},
    {PARSE, NULL, NULL, "^\\[(" IPRE ")\\] by (\\S+) \\(MailGate ", "ib", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\(unverified \\[(" IPRE ")\\]\\) by (\\S+) ", "hib", false,
     false},
    {PARSE, NULL, NULL, "^(" IPRE ") \\([A-Za-z][^\\)]+\\) by (\\S+) with ", "ib", false, false},
    {PARSE, NULL, NULL, "^\\[(" IPRE ")\\] \\(([^\\)]+)\\) by (\\S+) ", "isb", false, false},
    {PARSE, NULL, NULL, "^(\\S+) \\((?:\\S+\\@)?(" IPRE ")\\) by (\\S+) with ", "rib", false,
     false},
    {PARSE, NULL, NULL,
     "^(\\S+)\\((" IPRE ")\\)(?:, claiming to be \"(\\S+)\")? via \\S+ by (\\S+),", "rihb", false,
     true},
    {PARSE, NULL, NULL,
     "^(\\S+) \\((\\S+)@(" IPRE ") with login\\) by (\\S+\\.yahoo\\.com) with SMTP", "h_ib", false,
     false},
    {SKIP, NULL, NULL, "^\\S+ \\([^\\s\\@]+\\@" LOCALHOST "\\) by \\S+ \\(", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ \\S+ by \\S+ with local-e?smtp ", "", false, false},
    {SKIP, NULL, NULL, "^\\S+\\@\\S+ by \\S+ ", "", false, false},
    {SKIP, NULL, NULL, "^Unknown/Local \\(", "", false, false},
    {SKIP, NULL, NULL, "^" LOCALHOST " \\((?:\\S+\\@)?" LOCALHOST "[\\)\\[]", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ \\((?:\\S+\\@)?" LOCALHOST "\\) ", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ \\(\\S+\\@\\S+ \\[" LOCALHOST "\\]\\) ", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ by \\S+ with local", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ by \\S+ (?:with|via|for|\\()", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ (?:(?:with|via|for) \\S+|\\(unverified\\)) by\\b", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ \\(unknown\\) by \\S+ \\(SG\\) with \\b", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ \\(\\S+ \\[local\\]\\) by \\S+ \\(OpenSMTPD\\) with \\b", "", false,
     false},
    {SKIP, "(LSMTP for", NULL, "\\(LSMTP for", "", false, false},
    {SKIP, NULL, NULL, "^\\(\\[" LOCALHOST "\\]\\) with MailEnable ", "", false, false},
    {SKIP, NULL, NULL, "^\\S+ id \\S+$", "", false, false},
    {SKIP, NULL, NULL, "^\\[<.*? \\(Jetsend", "", false, false},
};

#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

static GRegex *fmt_re[NFORMATS];
static GRegex *re_auth_colon, *re_auth_sendmail, *re_auth_postfix, *re_auth_via;
static GRegex *re_ip, *re_first_word, *re_upper;
static GRegex *re_local, *re_date, *re_id, *re_helo1, *re_helo2, *re_by, *re_auth, *re_envfrom,
    *re_anyip;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static GRegex *mk(const char *p, int flags)
{
    return g_regex_new(p, G_REGEX_RAW | G_REGEX_OPTIMIZE | flags, 0, NULL);
}

static void init_res(void)
{
    for (size_t i = 0; i < NFORMATS; i++)
        fmt_re[i] = mk(formats[i].re, 0);
    re_auth_colon = mk("^from .*?(?:\\]\\)|\\)\\]) \\(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) "
                       "\\S+(?:, .*?)?\\) by ",
                       0);
    re_auth_sendmail =
        mk("^from .*?(?:\\](?: \\([^)]*\\))?\\)|\\)\\]) .*?\\(.*?authenticated.*?\\).*? by", 0);
    re_auth_postfix = mk("\\) \\(Authenticated sender: \\S+\\) by \\S+ \\(([^\\)]+)\\) with ", 0);
    re_auth_via = mk(" \\(via (HTTP.?)\\)(?: |;|$)", G_REGEX_CASELESS);
    re_ip = mk("(" IPRE ")", 0);
    re_first_word = mk("^(\\S+)[^-A-Za-z0-9\\.]", 0);
    re_upper = mk("^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) BY (\\S+) (?:\\([^\\)]+\\) WITH SMTP )?ID "
                  "<?(\\S+?)>?(?: FOR <[^>]+>)?$",
                  0);
    re_local = mk("^from (\\S+) by [^\\s;]+ ?;", G_REGEX_CASELESS);
    re_date = mk("[\\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\\d+ "
                 "(?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \\d+ "
                 "\\d+:\\d+(?::\\d+)? \\S+$",
                 0);
    re_id = mk(" id <?([^\\s<>;]{3,})", 0);
    re_helo1 = mk("\\bhelo=([-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\/]+)(?:[^-A-Za-z0-9\\.\\^+_&:=?!@%*"
                  "\\$\\\\/]|$)",
                  0);
    re_helo2 = mk("\\b(?:HELO|EHLO) ([-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\/]+)(?:[^-A-Za-z0-9\\.\\^+_&"
                  ":=?!@%*\\$\\\\/]|$)",
                  0);
    re_by = mk(" by (\\S+)(?:[^-A-Za-z0-9\\;\\.]|$)", 0);
    re_auth = mk(" with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)", G_REGEX_CASELESS);
    re_envfrom = mk("(?:return-path:? |envelope-(?:sender|from)[ =])(\\S+)\\b", G_REGEX_CASELESS);
    re_anyip = mk("\\[(" IPRE ")\\]", 0);
}

/* First capture group of re in s, or NULL (arena copy). */
static char *grab(tamis_arena_t *a, GRegex *re, const char *s, int group)
{
    GMatchInfo *mi = NULL;
    char *r = NULL;
    if (re && g_regex_match(re, s, 0, &mi)) {
        gint st, en;
        if (g_match_info_fetch_pos(mi, group, &st, &en) && st >= 0)
            r = tamis_arena_strndup(a, s + st, (size_t)(en - st));
    }
    g_match_info_free(mi);
    return r;
}

typedef struct {
    char *ip, *rdns, *helo, *by, *ident, *id, *auth, *envfrom, *with;
    bool dns; /* parsed by a format whose MTA always looks up rDNS */
} rcv_t;

/* The other authentication markers parse_received_line recognises (after the "with ESMTPA" one). */
static char *other_auth(tamis_arena_t *a, const char *p)
{
    char *v;
    if (strstr(p, "(AUTH: ") && (v = grab(a, re_auth_colon, p, 1)))
        return v;
    if (strstr(p, "authenticated") && re_auth_sendmail &&
        g_regex_match(re_auth_sendmail, p, 0, NULL))
        return "Sendmail";
    if (strstr(p, "(Authenticated sender: ") && (v = grab(a, re_auth_postfix, p, 1)))
        return strcmp(v, "Postfix") ? tamis_arena_printf(a, "Postfix (%s)", v) : v;
    if (strstr(p, "CommuniGate Pro ") && strstr(p, " (account "))
        return "Communigate";
    if (strstr(p, " with Microsoft Exchange Server HTTP-DAV"))
        return "HTTP-DAV";
    if (strstr(p, " by ") && (v = grab(a, re_auth_via, p, 1)))
        return v;
    return NULL;
}

/* Normalises whitespace and drops trailing ";" as parse_received_line does. */
static char *normalise(tamis_arena_t *a, const char *v)
{
    size_t n = strlen(v);
    char *o = tamis_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (g_ascii_isspace(v[i])) {
            if (k && o[k - 1] != ' ')
                o[k++] = ' ';
            continue;
        }
        o[k++] = v[i];
    }
    while (k && (o[k - 1] == ' ' || o[k - 1] == ';'))
        k--;
    o[k] = '\0';
    return o;
}

/* Returns PARSE+1 when a format matched and filled r, SKIP+1 / FETCH+1 for ignored lines, 0 when
 * nothing matched. */
static int apply_formats(tamis_arena_t *a, const char *s, rcv_t *r)
{
    for (size_t f = 0; f < NFORMATS; f++) {
        if ((formats[f].cond && !strstr(s, formats[f].cond)) ||
            (formats[f].ncond && strstr(s, formats[f].ncond)))
            continue;
        GMatchInfo *mi = NULL;
        if (!fmt_re[f] || !g_regex_match(fmt_re[f], s, 0, &mi)) {
            g_match_info_free(mi);
            continue;
        }
        if (formats[f].kind != PARSE) {
            g_match_info_free(mi);
            return formats[f].kind + 1;
        }
        const char *roles = formats[f].roles;
        for (int g = 0; roles[g]; g++) {
            gint st, en;
            char *v = NULL;
            if (g_match_info_fetch_pos(mi, g + 1, &st, &en) && st >= 0)
                v = tamis_arena_strndup(a, s + st, (size_t)(en - st));
            if (!v)
                v = "";
            switch (roles[g]) {
            case 'h':
                r->helo = v;
                break;
            case 'r':
                r->rdns = v;
                break;
            case 'x': {
                if (!strncmp(v, "IDENT:", 6) && strchr(v, '@'))
                    v += 6;
                char *at = strchr(v, '@');
                if (at) {
                    r->ident = tamis_arena_strndup(a, v, (size_t)(at - v));
                    v = at + 1;
                }
                r->rdns = v;
                break;
            }
            case 'R':
                r->rdns = r->helo = v;
                break;
            case 'i':
                r->ip = v;
                break;
            case 'b':
                r->by = v;
                break;
            case 'd': {
                size_t l = strlen(v);
                if (l && v[l - 1] == '@')
                    v[l - 1] = '\0';
                r->ident = v;
                break;
            }
            case 's': {
                char *h = strstr(v, "helo=");
                if (h)
                    r->helo = tamis_arena_strndup(a, h + 5, strcspn(h + 5, " "));
                char *id = strstr(v, "ident=");
                if (id)
                    r->ident = tamis_arena_strndup(a, id + 6, strcspn(id + 6, " "));
                break;
            }
            default:
                break;
            }
        }
        if (formats[f].clear_id)
            r->id = "";
        r->dns = formats[f].dns;
        g_match_info_free(mi);
        if (r->rdns && !strcmp(r->rdns, "softdnserr"))
            r->rdns = "";
        return PARSE + 1;
    }
    return 0;
}

/* Returns 1 parsed, 0 skipped (SpamAssassin ignores it), 2 fetcher marker, -1 unparseable. */
static int parse_line(tamis_arena_t *a, const char *value, rcv_t *r)
{
    char *s = normalise(a, value);
    if (!s)
        return -1;
    if (strncasecmp(s, "from ", 5) && strncasecmp(s, "(from ", 6))
        return 0;
    if (strstr(s, " with local for ") || strstr(s, "with local for"))
        return 0;
    /* "from X by Y; date" with X not an IP literal: a local handover */
    char *x = grab(a, re_local, s, 1);
    if (x &&
        !(x[0] == '[' && x[strlen(x) - 1] == ']' && strspn(x + 1, "0123456789.") == strlen(x) - 2))
        return 0;
    char *p = s;
    GMatchInfo *dm = NULL;
    if (re_date && g_regex_match(re_date, p, 0, &dm)) {
        gint st, en;
        g_match_info_fetch_pos(dm, 0, &st, &en);
        p[st] = '\0';
    }
    g_match_info_free(dm);
    char *fix = strstr(p, ")by ");
    if (fix)
        p = tamis_arena_printf(a, "%.*s) by %s", (int)(fix - p), p, fix + 4);
    if (!p)
        return -1;
    r->id = grab(a, re_id, p, 1);
    r->helo = grab(a, re_helo1, p, 1);
    if (!r->helo)
        r->helo = grab(a, re_helo2, p, 1);
    r->by = grab(a, re_by, p, 1);
    if (strstr(p, " by "))
        r->auth = grab(a, re_auth, p, 1);
    if (!r->auth)
        r->auth = other_auth(a, p);
    const char *w = strstr(p, " with ");
    if (w)
        r->with = tamis_arena_strndup(a, w + 6, strcspn(w + 6, " ;"));
    if (!strncmp(p, "from ", 5)) {
        p += 5;
        r->envfrom = grab(a, re_envfrom, p, 1);
        int k = apply_formats(a, p, r);
        if (k == PARSE + 1)
            return 1;
        if (k == FETCH + 1)
            return 2;
        if (k)
            return 0;
        if (!r->helo)
            r->helo = grab(a, re_first_word, p, 1);
    } else if (!strncmp(p, "FROM ", 5)) {
        p += 5;
        GMatchInfo *mi = NULL;
        if (re_upper && g_regex_match(re_upper, p, 0, &mi)) {
            char *f[5];
            for (int g = 0; g < 5; g++) {
                gint st, en;
                f[g] = g_match_info_fetch_pos(mi, g + 1, &st, &en) && st >= 0
                           ? tamis_arena_strndup(a, p + st, (size_t)(en - st))
                           : "";
            }
            g_match_info_free(mi);
            r->helo = f[0];
            r->rdns = strcmp(f[1], "unverified") ? f[1] : "";
            r->ip = f[2];
            r->by = f[3];
            r->id = f[4];
            return 1;
        }
        g_match_info_free(mi);
    } else if (!strncmp(p, "(from ", 6)) {
        p += 6;
        if (strstr(p, "@localhost) by "))
            return 0;
    }
    if (!r->ip || !*r->ip)
        r->ip = grab(a, re_anyip, p, 1);
    return r->ip && *r->ip && r->by && *r->by ? 1 : -1;
}

/* IP_PRIVATE of Constants.pm: RFC 1918, loopback, link-local, CGNAT, reserved, ULA. */
static bool ip_private(const char *ip)
{
    unsigned char b[16];
    if (inet_pton(AF_INET, ip, b) == 1) {
        return b[0] == 10 || b[0] == 127 || b[0] == 0 || (b[0] == 169 && b[1] == 254) ||
               (b[0] == 172 && (b[1] & 0xF0) == 16) || (b[0] == 192 && b[1] == 168) ||
               (b[0] == 100 && (b[1] & 0xC0) == 64) || b[0] >= 224;
    }
    if (inet_pton(AF_INET6, ip, b) == 1) {
        static const unsigned char loop[16] = {[15] = 1};
        return !memcmp(b, loop, 16) || (b[0] & 0xFE) == 0xFC ||
               (b[0] == 0xFE && (b[1] & 0xC0) == 0x80);
    }
    return false;
}

/* The clean-up at "enough:" in parse_received_line. */
static char *strip_chars(tamis_arena_t *a, const char *v)
{
    char *o = tamis_arena_strdup(a, v ? v : "");
    for (char *c = o; c && *c; c++)
        if (strchr(" \t\n\r#[]()<>|", *c) || *c == '\0')
            *c = '!';
    return o ? o : "";
}

static void finish_relay(tamis_arena_t *a, rcv_t *r)
{
    char *rd = r->rdns ? r->rdns : "";
    size_t l = strlen(rd);
    while (l && rd[l - 1] == '.')
        rd[--l] = '\0';
    if (!strcasecmp(rd, "unknown") || rd[0] == '[')
        rd = "";
    char *ip = r->ip ? r->ip : "";
    if (!strncasecmp(ip, "ipv6:", 5))
        ip += 5;
    if (*ip == '[')
        ip++;
    l = strlen(ip);
    if (l && ip[l - 1] == ']')
        ip[--l] = '\0';
    char *pct = strchr(ip, '%');
    if (pct)
        *pct = '\0';
    const char *v4 = strrchr(ip, ':');
    if (v4 && strchr(v4, '.') && !strncasecmp(ip + strspn(ip, "0:"), "ffff:", 5))
        ip = (char *)v4 + 1;
    char *by = r->by ? r->by : "";
    l = strlen(by);
    if (l && by[l - 1] == ';')
        by[l - 1] = '\0';
    r->ip = strip_chars(a, ip);
    r->rdns = strip_chars(a, rd);
    r->helo = strip_chars(a, r->helo);
    r->by = strip_chars(a, by);
    r->ident = strip_chars(a, r->ident);
    char *ef = r->envfrom ? r->envfrom : "";
    while (*ef == '<' || g_ascii_isspace(*ef))
        ef++;
    l = strlen(ef);
    while (l && (ef[l - 1] == '>' || g_ascii_isspace(ef[l - 1])))
        ef[--l] = '\0';
    r->envfrom = strip_chars(a, ef);
}

static time_t parse_date(const char *v)
{
    const char *semi = strrchr(v, ';');
    if (!semi)
        return 0;
    GDateTime *dt = NULL;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", semi + 1);
    g_strstrip(buf);
    /* "Mon, 1 Jan 2024 00:00:00 +0000 (UTC)": parse the numeric parts by hand */
    static const char *mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char *p = strchr(buf, ',');
    p = p ? p + 1 : buf;
    int d, y, hh, mm, ss = 0;
    char ms[4];
    char tz[8] = "+0000";
    if (sscanf(p, " %d %3s %d %d:%d:%d %7s", &d, ms, &y, &hh, &mm, &ss, tz) < 5)
        return 0;
    int mo = -1;
    for (int i = 0; i < 12; i++)
        if (!strcasecmp(ms, mon[i]))
            mo = i + 1;
    if (mo < 0)
        return 0;
    if (y < 100)
        y += y < 50 ? 2000 : 1900;
    GTimeZone *z = g_time_zone_new_identifier(tz[0] == '+' || tz[0] == '-' ? tz : "UTC");
    if (!z)
        z = g_time_zone_new_utc();
    dt = g_date_time_new(z, y, mo, d, hh, mm, ss);
    g_time_zone_unref(z);
    if (!dt)
        return 0;
    time_t t = (time_t)g_date_time_to_unix(dt);
    g_date_time_unref(dt);
    return t;
}

/* A POP/IMAP fetch restarts SpamAssassin's chain when every newer relay was trusted; without
 * configured networks that means private IP or authenticated, which is what we can know here. */
static void drop_before_fetch(tamis_msg_t *m, size_t upto)
{
    tamis_relay_t *rl = m->relays.v;
    for (size_t i = 0; i < upto; i++)
        if (!rl[i].skipped && !rl[i].unparseable && !rl[i].ip_private && !*rl[i].auth)
            return;
    for (size_t i = 0; i < upto; i++)
        rl[i].skipped = true;
}

/* SpamAssassin turns the last value of each originating_ip_headers field (the stock rules list
 * these) into a synthetic "from X-Originating-IP: ip" relay after the Received chain. */
static int originating_relays(tamis_msg_t *m)
{
    static const char *const names[] = {
        "X-Yahoo-Post-IP",   "X-Originating-IP",
        "X-Apparently-From", "X-SenderIP",
        "X-AOL-IP",          "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const tamis_header_t *h = tamis_msg_header_last(m, names[i]);
        char *ip = h ? grab(m->arena, re_ip, h->decoded, 1) : NULL;
        if (!ip)
            continue;
        tamis_relay_t *rl = tamis__vec_push(m->arena, &m->relays, sizeof(*rl));
        if (!rl)
            return TAMIS_ENOMEM;
        rcv_t r = {.ip = ip};
        finish_relay(m->arena, &r);
        rl->ip = r.ip;
        rl->rdns = rl->helo = rl->by = rl->ident = rl->envfrom = rl->id = rl->auth = rl->with = "";
        rl->header = h;
        rl->originating = true;
        rl->ip_private = ip_private(rl->ip);
    }
    return 0;
}

int tamis__received_parse(tamis_msg_t *m)
{
    pthread_once(&once, init_res);
    const tamis_header_t *h = m->headers.v;
    for (size_t i = 0; i < m->headers.n; i++) {
        if (strcasecmp(h[i].name, "received") != 0)
            continue;
        tamis_relay_t *rl = tamis__vec_push(m->arena, &m->relays, sizeof(*rl));
        if (!rl)
            return TAMIS_ENOMEM;
        rcv_t r = {0};
        int rc = parse_line(m->arena, h[i].decoded, &r);
        rl->header = &h[i];
        rl->skipped = rc == 0 || rc == 2;
        rl->fetch_marker = rc == 2;
        if (rc == 2)
            drop_before_fetch(m, m->relays.n - 1);
        rl->unparseable = rc < 0;
        if (rc > 0)
            finish_relay(m->arena, &r);
        rl->ip = rc > 0 ? r.ip : "";
        rl->rdns = rc > 0 ? r.rdns : "";
        rl->helo = rc > 0 ? r.helo : "";
        rl->by = rc > 0 ? r.by : "";
        rl->ident = rc > 0 ? r.ident : "";
        rl->envfrom = rc > 0 ? r.envfrom : "";
        rl->id = r.id ? r.id : "";
        rl->auth = r.auth ? r.auth : "";
        rl->with = r.with ? r.with : "";
        rl->date = parse_date(h[i].decoded);
        rl->ip_private = rc > 0 && ip_private(rl->ip);
        rl->no_rdns = rc > 0 && r.dns && !*rl->rdns;
    }
    return originating_relays(m);
}
