/*
 * Message identity and receive time for learning, as SpamAssassin's Message.pm computes them
 * (generate_msgid, get_msgid, Util::receive_date), so that the seen map recognises the same
 * messages sa-learn would and the token atimes match.
 */
#include "bayes/bayes_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int tamis_bayes_msgids(const tamis_msg_t *m, char gen[80], char *mid, size_t midlen)
{
    /* get_header() returns the last field, decoded, with "\n" appended ("" when absent) */
    const tamis_header_t *to = tamis_msg_header_last(m, "To");
    const tamis_header_t *date = tamis_msg_header_last(m, "Date");
    tamis_slice_t body = tamis_msg_pristine_body(m);
    char bodyhex[41];
    tamis__sha1_t c;
    uint8_t d[20];
    bool fail = false;
    if (tamis_msg_uses_crlf(m)) {
        fail |= tamis__sha1_init(&c) != 0;
        size_t i = 0, st = 0;
        for (; i < body.len; i++) {
            if (body.ptr[i] == '\r' && i + 1 < body.len && body.ptr[i + 1] == '\n') {
                tamis__sha1_update(&c, body.ptr + st, i - st);
                st = i + 1;
                i++;
            }
        }
        tamis__sha1_update(&c, body.ptr + st, body.len - st);
        fail |= tamis__sha1_final(&c, d) != 0;
        for (int k = 0; k < 20; k++)
            snprintf(bodyhex + 2 * k, 3, "%02x", d[k]);
    } else {
        tamis_bayes_sha1_hex(body.ptr ? body.ptr : "", body.len, bodyhex);
    }
    fail |= tamis__sha1_init(&c) != 0;
    if (to && to->decoded) {
        tamis__sha1_update(&c, to->decoded, strlen(to->decoded));
        tamis__sha1_update(&c, "\n", 1);
    }
    tamis__sha1_update(&c, "", 1);
    if (date && date->decoded) {
        tamis__sha1_update(&c, date->decoded, strlen(date->decoded));
        tamis__sha1_update(&c, "\n", 1);
    }
    tamis__sha1_update(&c, "", 1);
    tamis__sha1_update(&c, bodyhex, 40);
    fail |= tamis__sha1_final(&c, d) != 0;
    for (int k = 0; k < 20; k++)
        snprintf(gen + 2 * k, 3, "%02x", d[k]);
    memcpy(gen + 40, "@sa_generated", 14);

    if (mid && midlen) {
        mid[0] = '\0';
        const tamis_header_t *h = tamis_msg_header_last(m, "Message-Id");
        if (h && h->decoded) {
            /* /^\s*<(.+)>\s*$/s */
            const char *s = h->decoded;
            size_t n = strlen(s);
            while (n && isspace((unsigned char)s[n - 1]))
                n--;
            while (n && isspace((unsigned char)*s)) {
                s++;
                n--;
            }
            if (n > 2 && s[0] == '<' && s[n - 1] == '>') {
                size_t l = n - 2;
                if (l >= midlen)
                    l = midlen - 1;
                memcpy(mid, s + 1, l);
                mid[l] = '\0';
            }
        }
    }
    return fail ? TAMIS_ENOMEM : 0;
}

static bool wordc(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static int month_of(const char *p)
{
    static const char *const mons[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};
    for (int i = 0; i < 12; i++)
        if (strncasecmp(p, mons[i], 3) == 0)
            return i + 1;
    return 0;
}

static size_t digits(const char *p)
{
    size_t n = 0;
    while (isdigit((unsigned char)p[n]))
        n++;
    return n;
}

/* Removes b[st, en) and puts one space in its place (Perl's s/ ... / /). */
static void cut(char *b, size_t st, size_t en)
{
    b[st] = ' ';
    memmove(b + st + 1, b + en, strlen(b + en) + 1);
}

static const struct {
    const char *name;
    int off; /* minutes */
} tzs[] = {{"UT", 0},      {"UTC", 0},     {"NDT", -150},  {"AST", -240},  {"ADT", -180},
           {"NST", -210},  {"EST", -300},  {"EDT", -240},  {"CST", -360},  {"CDT", -300},
           {"MST", -420},  {"MDT", -360},  {"PST", -480},  {"PDT", -420},  {"HST", -600},
           {"AKST", -540}, {"AKDT", -480}, {"HADT", -540}, {"HAST", -600}, {"GMT", 0},
           {"BST", 60},    {"IST", 60},    {"WET", 0},     {"WEST", 60},   {"CET", 60},
           {"CEST", 120},  {"EET", 120},   {"EEST", 180},  {"MSK", 180},   {"MSD", 240},
           {"MET", 60},    {"MEZ", 60},    {"MEST", 120},  {"MESZ", 120},  {"BRST", -120},
           {"BRT", -180},  {"AEST", 600},  {"AEDT", 660},  {"ACST", 570},  {"ACDT", 630},
           {"AWST", 480},  {"NZST", 720},  {"NZDT", 780},  {"JST", 540},   {"KST", 540},
           {"HKT", 480},   {"SGT", 480},   {"PHT", 480},   {"IDT", 180}};

/* Util::parse_rfc822_date: a date anywhere in the string, then a time, then a zone. 0 when
 * there is no date. */
static time_t parse_date(const char *in)
{
    char b[1024];
    size_t n = 0;
    b[n++] = ' ';
    for (const char *p = in; *p && n < sizeof b - 3; p++) {
        char c = *p;
        if (c == ',') { /* a comma and the blanks after it become one space */
            c = ' ';
            while (p[1] == ' ')
                p++;
        }
        if (isspace((unsigned char)c)) {
            if (b[n - 1] != ' ')
                b[n++] = ' ';
            continue;
        }
        b[n++] = c;
    }
    if (b[n - 1] != ' ')
        b[n++] = ' ';
    b[n] = '\0';
    int dd = 0, mon = 0, yyyy = 0, hh = 0, mm = 0, ss = 0;
    bool found = false;
    /* " (\d+) (Mon) (\d{4}) " */
    for (size_t i = 0; b[i] && !found; i++) {
        if (b[i] != ' ')
            continue;
        size_t d = digits(b + i + 1);
        const char *m = b + i + 1 + d;
        if (!d || m[0] != ' ' || !month_of(m + 1) || m[4] != ' ' || digits(m + 5) != 4 ||
            m[9] != ' ')
            continue;
        dd = atoi(b + i + 1);
        mon = month_of(m + 1);
        yyyy = atoi(m + 5);
        cut(b, i, (size_t)(m + 10 - b));
        found = true;
    }
    /* " (Mon) +(\d+) \d+:\d+:\d+ (\d{4}) " */
    for (size_t i = 0; b[i] && !found; i++) {
        if (b[i] != ' ' || !month_of(b + i + 1) || b[i + 4] != ' ')
            continue;
        const char *p = b + i + 5;
        size_t d = digits(p);
        if (!d || p[d] != ' ')
            continue;
        const char *q = p + d + 1;
        size_t a1 = digits(q), a2, a3;
        if (!a1 || q[a1] != ':' || !(a2 = digits(q + a1 + 1)) || q[a1 + 1 + a2] != ':' ||
            !(a3 = digits(q + a1 + a2 + 2)) || q[a1 + a2 + 2 + a3] != ' ')
            continue;
        const char *y = q + a1 + a2 + 3 + a3;
        if (digits(y) != 4 || y[4] != ' ')
            continue;
        mon = month_of(b + i + 1);
        dd = atoi(p);
        yyyy = atoi(y);
        cut(b, i, (size_t)(y + 5 - b));
        found = true;
    }
    /* " (\d+) (Mon) (\d{2,3}) " */
    for (size_t i = 0; b[i] && !found; i++) {
        if (b[i] != ' ')
            continue;
        size_t d = digits(b + i + 1);
        const char *m = b + i + 1 + d;
        size_t yd;
        if (!d || m[0] != ' ' || !month_of(m + 1) || m[4] != ' ' || (yd = digits(m + 5)) < 2 ||
            yd > 3 || m[5 + yd] != ' ')
            continue;
        dd = atoi(b + i + 1);
        mon = month_of(m + 1);
        yyyy = atoi(m + 5);
        yyyy = (yd == 2 && yyyy < 50) ? yyyy + 2000 : yyyy + 1900;
        cut(b, i, (size_t)(m + 6 + yd - b));
        found = true;
    }
    if (!found)
        return 0;
    /* " (\d?\d):(\d\d)(:(\d\d))? " */
    for (size_t i = 0; b[i]; i++) {
        if (b[i] != ' ')
            continue;
        const char *p = b + i + 1;
        size_t d = digits(p);
        if (d < 1 || d > 2 || p[d] != ':' || digits(p + d + 1) < 2)
            continue;
        const char *q = p + d + 3; /* after mm */
        size_t end;
        if (q[0] == ':' && digits(q + 1) >= 2 && q[3] == ' ' && digits(q + 1) == 2) {
            ss = atoi(q + 1);
            end = (size_t)(q + 4 - b);
        } else if (q[0] == ' ') {
            end = (size_t)(q + 1 - b);
        } else {
            continue;
        }
        hh = atoi(p);
        mm = (p[d + 1] - '0') * 10 + (p[d + 2] - '0');
        cut(b, i, end);
        break;
    }
    int tzoff = 0; /* minutes */
    bool tz = false;
    for (size_t i = 0; b[i] && !tz; i++) {
        if (b[i] == ' ' && (b[i + 1] == '+' || b[i + 1] == '-') && digits(b + i + 2) == 4 &&
            b[i + 6] == ' ') {
            int z = atoi(b + i + 2);
            tzoff = (z / 100) * 60 + z % 100;
            if (b[i + 1] == '-')
                tzoff = -tzoff;
            tz = true;
        }
    }
    if (!tz) {
        /* \b([A-Z]{2,4}(?:-DST)?)\b: the first such word decides */
        for (size_t i = 0; b[i]; i++) {
            if (!isupper((unsigned char)b[i]) || (i > 0 && wordc(b[i - 1])))
                continue;
            size_t k = 0;
            while (k < 4 && isupper((unsigned char)b[i + k]))
                k++;
            bool ok = false;
            for (; k >= 2 && !ok; k--) {
                if (!wordc(b[i + k]))
                    ok = true;
                if (ok)
                    break;
            }
            if (!ok)
                continue;
            for (size_t t = 0; t < sizeof tzs / sizeof tzs[0]; t++)
                if (strlen(tzs[t].name) == k && strncmp(tzs[t].name, b + i, k) == 0)
                    tzoff = tzs[t].off;
            break;
        }
    }
    if (ss > 59)
        ss = 59;
    if (mm > 59)
        mm = 59;
    if (hh > 23)
        hh = 23;
    int maxdd = 31;
    if (mon == 4 || mon == 6 || mon == 9 || mon == 11)
        maxdd = 30;
    else if (mon == 2)
        maxdd = (!(yyyy % 4) && ((yyyy % 100) || !(yyyy % 400))) ? 29 : 28;
    if (dd > maxdd) {
        dd = 1;
        if (++mon > 12) {
            mon = 1;
            yyyy++;
        }
    }
    if (yyyy > 2037)
        yyyy = 2037;
    else if (yyyy < 1970)
        yyyy = 1970;
    if (dd < 1)
        return 0; /* Time::Local croaks */
    struct tm tm = {0};
    tm.tm_year = yyyy - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = dd;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return 0;
    long off = tzoff * 60L;
    if (off < 0)
        t += -off;
    else if (t < off)
        t = 0;
    else
        t -= off;
    return t;
}

static bool has_word_from(const char *s)
{
    /* \bfrom (?:localhost\s|(?:\S+ ){1,2}\S*\b127\.0\.0\.1\b) */
    for (const char *p = strstr(s, "from "); p; p = strstr(p + 1, "from ")) {
        if (p > s && wordc(p[-1]))
            continue;
        const char *r = p + 5;
        if (strncmp(r, "localhost", 9) == 0 && r[9] && isspace((unsigned char)r[9]))
            return true;
        /* up to three words separated by single spaces; 127.0.0.1 inside word 2 or 3 */
        const char *w = r;
        for (int k = 0; k < 3 && *w; k++) {
            const char *e = w;
            while (*e && *e != ' ' && !isspace((unsigned char)*e))
                e++;
            if (k >= 1) {
                for (const char *q = w; q + 9 <= e; q++) {
                    if (strncmp(q, "127.0.0.1", 9) == 0 && (q == w || !wordc(q[-1])) &&
                        (q + 9 == e || !wordc(q[9])))
                        return true;
                }
            }
            if (*e != ' ')
                break;
            w = e + 1;
        }
    }
    return false;
}

static bool fetchmail_line(const char *s)
{
    /* \bby localhost with \w+ \(fetchmail-[\d.]+ */
    for (const char *p = strstr(s, "by localhost with "); p;
         p = strstr(p + 1, "by localhost with ")) {
        if (p > s && wordc(p[-1]))
            continue;
        const char *q = p + 18;
        size_t n = 0;
        while (wordc(q[n]))
            n++;
        if (n && strncmp(q + n, " (fetchmail-", 12) == 0 &&
            (isdigit((unsigned char)q[n + 12]) || q[n + 12] == '.'))
            return true;
    }
    return false;
}

static bool qmail_line(const char *s)
{
    /* qmail \d+ invoked by uid \d+ */
    for (const char *p = strstr(s, "qmail "); p; p = strstr(p + 1, "qmail ")) {
        size_t d = digits(p + 6);
        if (d && strncmp(p + 6 + d, " invoked by uid ", 16) == 0 && digits(p + 22 + d))
            return true;
    }
    return false;
}

time_t tamis_bayes_msg_atime(const tamis_msg_t *m, time_t now)
{
    if (!now)
        now = time(NULL);
    size_t nh = tamis_msg_header_count(m);
    const char *rcvd[64];
    size_t nr = 0;
    for (size_t i = 0; i < nh && nr < 64; i++) {
        const tamis_header_t *h = tamis_msg_header_at(m, i);
        if (h && h->name && strcasecmp(h->name, "Received") == 0)
            rcvd[nr++] = h->decoded ? h->decoded : "";
    }
    /* Util::receive_date: skip a local delivery and a fetchmail hop at the top */
    const char *local[2];
    size_t nl = 0, first = 0;
    if (nr) {
        if (qmail_line(rcvd[0]) || has_word_from(rcvd[0]))
            local[nl++] = rcvd[first++];
        if (first < nr && fetchmail_line(rcvd[first]))
            local[nl++] = rcvd[first++];
        else if (nl) {
            first--;
            nl--;
        }
    }
    time_t t;
    if (first < nr) {
        if ((t = parse_date(rcvd[first])) != 0)
            return t;
        first++;
    }
    for (size_t i = 0; i < nl; i++)
        if ((t = parse_date(local[i])) != 0)
            return t;
    tamis_slice_t from = tamis_msg_mbox_from(m);
    const tamis_header_t *xfl = tamis_msg_header_first(m, "X-From-Line");
    if (from.len > 5 || xfl) {
        char line[512];
        if (from.len > 5) {
            size_t l = from.len - 5 < sizeof line - 8 ? from.len - 5 : sizeof line - 8;
            memcpy(line, from.ptr + 5, l);
            line[l] = '\0';
        } else {
            snprintf(line, sizeof line - 8, "%s", xfl->decoded ? xfl->decoded : "");
        }
        line[strcspn(line, "\r\n")] = '\0';
        /* no zone: the local one (SA appends local_tz()) */
        bool zone = false;
        for (const char *p = line; *p && !zone; p++) {
            if ((*p == '+' || *p == '-') && digits(p + 1) >= 4)
                zone = true;
            if (isupper((unsigned char)*p) && (p == line || !wordc(p[-1]))) {
                size_t k = 0;
                while (isupper((unsigned char)p[k]))
                    k++;
                if (k >= 2 && k <= 4 && !wordc(p[k]))
                    zone = true;
            }
        }
        if (!zone) {
            struct tm lt;
            time_t nowt = now;
            localtime_r(&nowt, &lt);
            long z = lt.tm_gmtoff / 60;
            size_t l = strlen(line);
            snprintf(line + l, sizeof line - l, " %c%02ld%02ld", z < 0 ? '-' : '+', labs(z) / 60,
                     labs(z) % 60);
        }
        if ((t = parse_date(line)) != 0)
            return t;
    }
    for (size_t i = first; i < nr; i++)
        if ((t = parse_date(rcvd[i])) != 0)
            return t;
    const char *names[2] = {"Resent-Date", "Date"};
    for (int k = 0; k < 2; k++) {
        const tamis_header_t *d = tamis_msg_header_first(m, names[k]);
        if (d && d->decoded && (t = parse_date(d->decoded)) != 0)
            return t;
    }
    return now;
}
