/*
 * The Bayes tokenizer, a byte-exact re-implementation of SpamAssassin 4.0's Plugin/Bayes.pm
 * tokenize(), _tokenize_line() and _tokenize_headers() (spec-bayes.md §2). SpamAssassin works on
 * UTF-8 octets without Perl's unicode semantics, so \w, \s and lc() are ASCII-only here too.
 * The Perl substitutions are emulated by hand (no regex engine) because this runs for every
 * token of every scanned message.
 */
#include "bayes/bayes_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BODY_CAP 50000
#define HDR_CAP 10000
#define MAX_LINE 65536 /* bytes of one line/header value tokenized (SA lines are <= 2 KiB) */

enum { REG_HDR = 0, REG_BODY = 1, REG_URI = 2 };

int tamis_bayes_tokmode_parse(const char *name)
{
    if (name && !strcasecmp(name, "sa"))
        return TAMIS_BAYES_TOKMODE_SA;
    if (name && !strcasecmp(name, "tamis"))
        return TAMIS_BAYES_TOKMODE_TAMIS;
    return -1;
}

const char *tamis_bayes_tokmode_name(tamis_bayes_tokmode_t m)
{
    return m == TAMIS_BAYES_TOKMODE_TAMIS ? "tamis" : "sa";
}

void tamis_bayes_tokopts_default(tamis_bayes_tokopts_t *o)
{
    memset(o, 0, sizeof *o);
    o->sources = TAMIS_BAYES_SRC_DEFAULT;
    o->max_token_length = 15;
    o->stopwords = true;
    o->stock_ignores = true;
    o->relay_meta = true;
}

/* ---- token set --------------------------------------------------------------------------- */

static tamis_bayes_tokens_t *set_new(void)
{
    tamis_bayes_tokens_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    tamis_buf_init(&t->pool, 64u << 20);
    t->nslots = 1024;
    t->slots = calloc(t->nslots, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    return t;
}

void tamis_bayes_tokens_free(tamis_bayes_tokens_t *t)
{
    if (!t)
        return;
    free(t->toks);
    free(t->slots);
    tamis_buf_free(&t->pool);
    free(t);
}

static size_t key_hash(const uint8_t *k)
{
    uint32_t h;
    memcpy(&h, k, 4);
    return (size_t)(h ^ ((uint32_t)k[4] << 13)) * 2654435761u;
}

static int set_grow(tamis_bayes_tokens_t *t)
{
    size_t n = t->nslots * 2;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < t->count; i++) {
        size_t j = key_hash(t->toks[i].key) & (n - 1);
        while (s[j])
            j = (j + 1) & (n - 1);
        s[j] = (uint32_t)(i + 1);
    }
    free(t->slots);
    t->slots = s;
    t->nslots = n;
    return 0;
}

/* Per-thread cache of recent token → key hashes: most tokens of a message (header names, common
 * words) were seen in the messages before, and SHA-1 was the largest cost of learning. Static
 * thread-local storage (no allocation, nothing to free); a slot holds tokens of up to
 * KCACHE_LEN bytes. */
#define KCACHE_SLOTS 4096
#define KCACHE_LEN 26
typedef struct {
    uint8_t len; /* 0 = empty */
    uint8_t key[TAMIS_BAYES_KEY_LEN];
    char s[KCACHE_LEN];
} kcache_slot_t;
static _Thread_local kcache_slot_t kcache[KCACHE_SLOTS];

static void cached_key(const char *s, size_t n, uint8_t key[TAMIS_BAYES_KEY_LEN])
{
    if (n > KCACHE_LEN) {
        tamis_bayes_token_key(s, n, key);
        return;
    }
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    kcache_slot_t *c = &kcache[h & (KCACHE_SLOTS - 1)];
    if (c->len == n && memcmp(c->s, s, n) == 0) {
        memcpy(key, c->key, TAMIS_BAYES_KEY_LEN);
        return;
    }
    tamis_bayes_token_key(s, n, key);
    c->len = (uint8_t)n;
    memcpy(c->key, key, TAMIS_BAYES_KEY_LEN);
    memcpy(c->s, s, n);
}

/* Adds a token string (not NUL-terminated); empty strings are dropped like SA does. */
static int set_add(tamis_bayes_tokens_t *t, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t key[TAMIS_BAYES_KEY_LEN];
    cached_key(s, n, key);
    size_t j = key_hash(key) & (t->nslots - 1);
    while (t->slots[j]) {
        if (memcmp(t->toks[t->slots[j] - 1].key, key, TAMIS_BAYES_KEY_LEN) == 0)
            return 0;
        j = (j + 1) & (t->nslots - 1);
    }
    if (t->count == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 256;
        tamis__tok_t *nt = realloc(t->toks, nc * sizeof *nt);
        if (!nt)
            return TAMIS_ENOMEM;
        t->toks = nt;
        t->cap = nc;
    }
    tamis__tok_t *tok = &t->toks[t->count];
    memcpy(tok->key, key, TAMIS_BAYES_KEY_LEN);
    tok->str_off = (uint32_t)t->pool.len;
    tamis_buf_append(&t->pool, s, n);
    tamis_buf_putc(&t->pool, '\0');
    if (t->pool.err)
        return TAMIS_ENOMEM;
    t->count++;
    t->slots[j] = (uint32_t)t->count;
    if (t->count * 2 > t->nslots)
        return set_grow(t);
    return 0;
}

size_t tamis_bayes_tokens_count(const tamis_bayes_tokens_t *t)
{
    return t ? t->count : 0;
}

const char *tamis_bayes_tokens_string(const tamis_bayes_tokens_t *t, size_t i)
{
    return (t && i < t->count) ? t->pool.data + t->toks[i].str_off : NULL;
}

const uint8_t *tamis_bayes_tokens_key(const tamis_bayes_tokens_t *t, size_t i)
{
    return (t && i < t->count) ? t->toks[i].key : NULL;
}

bool tamis_bayes_tokens_has(const tamis_bayes_tokens_t *t, const char *token)
{
    if (!t || !token || !*token)
        return false;
    uint8_t key[TAMIS_BAYES_KEY_LEN];
    tamis_bayes_token_key(token, strlen(token), key);
    size_t j = key_hash(key) & (t->nslots - 1);
    while (t->slots[j]) {
        if (memcmp(t->toks[t->slots[j] - 1].key, key, TAMIS_BAYES_KEY_LEN) == 0)
            return true;
        j = (j + 1) & (t->nslots - 1);
    }
    return false;
}

/* ---- helpers ----------------------------------------------------------------------------- */

/* Perl's \w and \s on octet strings without unicode semantics. */
static bool is_w(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool is_s(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_cont(unsigned char c)
{
    return c >= 0x80 && c <= 0xBF;
}

static bool is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}

/* SA's stopword list, in strcmp order (is_stopword searches it by halves). */
static const char *const stopwords_en[] = {
    "able",    "all",  "already", "and",         "any",     "are",    "because", "both", "can",
    "come",    "each", "email",   "even",        "few",     "first",  "for",     "from", "give",
    "has",     "have", "http",    "information", "into",    "it's",   "just",    "know", "like",
    "long",    "look", "made",    "mail",        "mailing", "mailto", "make",    "many", "more",
    "most",    "much", "need",    "not",         "now",     "number", "off",     "one",  "only",
    "out",     "own",  "people",  "place",       "right",   "same",   "see",     "such", "that",
    "the",     "this", "through", "time",        "using",   "web",    "where",   "why",  "with",
    "without", "work", "world",   "year",        "years",   "you",    "you're",  "your",
};

typedef struct {
    const char *s;
    size_t n;
} word_t;

/* strcmp order between a counted word and a list entry */
static int cmp_word(const void *key, const void *entry)
{
    const word_t *w = key;
    const char *s = *(const char *const *)entry;
    size_t sl = strlen(s);
    int c = memcmp(w->s, s, w->n < sl ? w->n : sl);
    return c ? c : (w->n > sl) - (w->n < sl);
}

static bool is_stopword(const char *w, size_t n)
{
    if (n < 3 || n > 11)
        return false;
    char lc[12];
    for (size_t i = 0; i < n; i++)
        lc[i] = (w[i] >= 'A' && w[i] <= 'Z') ? (char)(w[i] + 32) : w[i];
    /* this runs for every word of every message: a binary search of the sorted list */
    word_t key = {lc, n};
    return bsearch(&key, stopwords_en, sizeof stopwords_en / sizeof stopwords_en[0],
                   sizeof stopwords_en[0], cmp_word) != NULL;
}

typedef struct {
    tamis_bayes_tokens_t *set;
    const tamis_bayes_tokopts_t *o;
    tamis_buf_t a, b, tok; /* scratch */
    size_t added;          /* tokens produced in the current region (for the caps) */
    unsigned window;       /* TAMIS mode pair window (0 = no pairs) */
    char prev[2][64];      /* last two pair words of the body region (most recent first) */
    size_t prevlen[2];
    int err;
} tctx_t;

/* Emits prefix + s (counted for the region cap, like SA's push onto @tokens_*). */
static void emit(tctx_t *c, const char *prefix, const char *s, size_t n)
{
    if (c->err)
        return;
    tamis_buf_reset(&c->tok);
    tamis_buf_puts(&c->tok, prefix);
    tamis_buf_append(&c->tok, s, n);
    if (c->tok.err) {
        c->err = TAMIS_ENOMEM;
        return;
    }
    c->added++;
    int rc = set_add(c->set, c->tok.data, c->tok.len);
    if (rc)
        c->err = rc;
}

static bool kept_char(unsigned char ch)
{
    return is_w(ch) || ch == ',' || ch == '@' || ch == '*' || ch == '!' || ch == '\'' ||
           ch == '"' || ch == '$' || ch == '.' || ch == ' ' || ch == '-';
}

/* Step 1: keep allowed runs and complete UTF-8 sequences, everything else becomes a space. */
static void char_filter(const unsigned char *s, size_t n, tamis_buf_t *out)
{
    tamis_buf_reset(out);
    tamis_buf_reserve(out, n + 1);
    size_t i = 0;
    while (i < n) {
        size_t run = i; /* kept bytes are copied a run at a time */
        while (run < n && kept_char(s[run]))
            run++;
        if (run > i) {
            tamis_buf_append(out, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char ch = s[i];
        size_t k = 0;
        if (ch >= 0xC0 && ch <= 0xDF && i + 1 < n && is_cont(s[i + 1]))
            k = 2;
        else if (ch >= 0xE0 && ch <= 0xEF && i + 2 < n && is_cont(s[i + 1]) && is_cont(s[i + 2]))
            k = 3;
        else if (ch >= 0xF0 && ch <= 0xF4 && i + 3 < n && is_cont(s[i + 1]) && is_cont(s[i + 2]) &&
                 is_cont(s[i + 3]))
            k = 4;
        else if (ch >= 0xA1)
            k = 1;
        if (k) {
            tamis_buf_append(out, s + i, k);
            i += k;
        } else {
            tamis_buf_putc(out, ' ');
            i++;
        }
    }
}

/* Step 2: s/(\w)(X{lo,6})(\w)/$1 $2 $3/g for X = '.' (lo 3) or '-' (lo 2). */
static void split_runs(const char *s, size_t n, char x, size_t lo, tamis_buf_t *out)
{
    tamis_buf_reset(out);
    tamis_buf_reserve(out, n + 16);
    size_t i = 0, lit = 0; /* s[lit..i) is copied unchanged, a run at a time */
    while (i + 1 < n) {
        /* a match starts one before an x: skip to the next x */
        const char *q = memchr(s + i + 1, x, n - i - 1);
        if (!q)
            break;
        i = (size_t)(q - s) - 1;
        if (is_w((unsigned char)s[i])) {
            size_t j = i + 1;
            while (j < n && s[j] == x)
                j++;
            size_t run = j - i - 1;
            if (run >= lo && run <= 6 && j < n && is_w((unsigned char)s[j])) {
                tamis_buf_append(out, s + lit, i + 1 - lit);
                tamis_buf_putc(out, ' ');
                tamis_buf_append(out, s + i + 1, run);
                tamis_buf_putc(out, ' ');
                tamis_buf_putc(out, s[j]);
                i = lit = j + 1;
                continue;
            }
        }
        i++;
    }
    tamis_buf_append(out, s + lit, n - lit);
}

/* At p an uppercase letter starts "([A-Z])([^A-Z]+)(?:\s|$)": returns the end of the match (after
 * a consumed space) or 0 when it does not match. */
static size_t title_match(const char *s, size_t n, size_t p)
{
    if (p >= n || !is_upper((unsigned char)s[p]))
        return 0;
    size_t q = p + 1;
    while (q < n && !is_upper((unsigned char)s[q]))
        q++;
    if (q < p + 2)
        return 0;
    if (q == n) /* greedy to the end; \s fails there, $ matches */
        return n;
    /* backtrack: largest e in [p+2, q) with a whitespace at e (consumed) */
    for (size_t e = q; e-- > p + 1;) {
        if (e < p + 2)
            break;
        if (is_s((unsigned char)s[e]))
            return e + 1;
    }
    return 0;
}

/* Step 3: s/(?:^|\.\s+)([A-Z])([^A-Z]+)(?:\s|$)/ ' '.lc($1).$2.' ' /ge */
static void title_case(const char *s, size_t n, tamis_buf_t *out)
{
    tamis_buf_reset(out);
    tamis_buf_reserve(out, n + 16);
    size_t p = 0;
    while (p < n) {
        size_t cap = 0, end = 0;
        if (p == 0 && (end = title_match(s, n, 0)) != 0) {
            cap = 0;
        } else if (s[p] == '.' && p + 1 < n && is_s((unsigned char)s[p + 1])) {
            size_t q = p + 1;
            while (q < n && is_s((unsigned char)s[q]))
                q++;
            end = title_match(s, n, q);
            cap = q;
        }
        if (end) {
            /* end == n only when $ matched without consuming a space */
            size_t body_end = end < n ? end - 1 : end;
            tamis_buf_putc(out, ' ');
            tamis_buf_putc(out, (char)(s[cap] - 'A' + 'a'));
            tamis_buf_append(out, s + cap + 1, body_end - cap - 1);
            tamis_buf_putc(out, ' ');
            p = end;
            continue;
        }
        tamis_buf_putc(out, s[p]);
        p++;
    }
}

static bool is_trim(char ch)
{
    return ch == '-' || ch == '\'' || ch == '"' || ch == '.' || ch == ',';
}

/* _tokenize_mail_addrs: U*local, D*domain, D*parents (no region prefix). */
static void mail_addr_tokens(tctx_t *c, const char *w, size_t n)
{
    /* /(.+)\@(.+)$/: the last '@' with at least one byte on both sides */
    size_t at = n;
    for (size_t i = n; i-- > 1;) {
        if (w[i] == '@' && i + 1 < n) {
            at = i;
            break;
        }
    }
    if (at == n)
        return;
    emit(c, "U*", w, at);
    const char *d = w + at + 1;
    size_t dn = n - at - 1;
    emit(c, "D*", d, dn);
    for (;;) {
        /* s/^[^\.]+\.(.+)$/$1/ */
        size_t i = 0;
        while (i < dn && d[i] != '.')
            i++;
        if (i == 0 || i >= dn || i + 1 >= dn)
            break;
        d += i + 1;
        dn -= i + 1;
        emit(c, "D*", d, dn);
    }
}

static void uri_domain_tokens(tctx_t *c, const char *w, size_t n)
{
    emit(c, "UD:", w, n);
    const char *d = w;
    size_t dn = n;
    for (;;) {
        size_t i = 0;
        while (i < dn && d[i] != '.')
            i++;
        if (i == 0 || i >= dn || i + 1 >= dn)
            break;
        d += i + 1;
        dn -= i + 1;
        emit(c, "UD:", d, dn);
    }
}

/* One token after splitting (step 4 of spec §2.2). */
static void do_word(tctx_t *c, const char *w, size_t n, const char *prefix, int region)
{
    while (n && is_trim(w[0])) {
        w++;
        n--;
    }
    while (n && is_trim(w[n - 1]))
        n--;
    if (n < 3)
        return;
    if (c->o->stopwords && is_stopword(w, n))
        return;
    const unsigned char *u = (const unsigned char *)w;
    if (region != REG_HDR) {
        bool addr = false, dom = false;
        for (size_t i = 1; i + 1 < n; i++) {
            if (w[i] == '@' && !is_s(u[i - 1]) && !is_s(u[i + 1]))
                addr = true;
        }
        if (addr) {
            mail_addr_tokens(c, w, n);
        } else {
            for (size_t i = 1; i + 1 < n; i++) {
                if (w[i] == '.' && !is_s(u[i - 1]) && isalpha(u[i + 1]))
                    dom = true;
            }
            if (dom)
                uri_domain_tokens(c, w, n);
        }
    }
    char skbuf[64];
    if (n > c->o->max_token_length && !memchr(w, '*', n)) {
        bool twocont = false;
        for (size_t i = 0; i + 1 < n; i++) {
            if (is_cont(u[i]) && is_cont(u[i + 1])) {
                twocont = true;
                break;
            }
        }
        if (twocont) {
            /* ((?:[\xE0-\xEF]|[\xF0-\xF4][\x80-\xBF])[\x80-\xBF]{2}) globally */
            size_t found = 0;
            tamis_buf_t *u8 = &c->b;
            size_t i = 0;
            while (i < n) {
                if (u[i] >= 0xE0 && u[i] <= 0xEF && i + 2 < n && is_cont(u[i + 1]) &&
                    is_cont(u[i + 2])) {
                    tamis_buf_reset(u8);
                    tamis_buf_puts(u8, "u8:");
                    tamis_buf_append(u8, w + i, 3);
                    emit(c, prefix, u8->data, u8->len);
                    found++;
                    i += 3;
                } else if (u[i] >= 0xF0 && u[i] <= 0xF4 && i + 3 < n && is_cont(u[i + 1]) &&
                           is_cont(u[i + 2]) && is_cont(u[i + 3])) {
                    tamis_buf_reset(u8);
                    tamis_buf_puts(u8, "u8:");
                    tamis_buf_append(u8, w + i, 4);
                    emit(c, prefix, u8->data, u8->len);
                    found++;
                    i += 4;
                } else {
                    i++;
                }
            }
            if (found)
                return;
        }
        if (region != REG_URI) {
            /* keep 7 characters (UTF-8 aware) when at least 2 more bytes follow */
            size_t i = 0;
            for (int k = 0; k < 7 && i < n; k++) {
                unsigned char ch = u[i];
                if (ch <= 0x7F || ch >= 0xF5)
                    i += 1;
                else if (ch >= 0xC0 && ch <= 0xDF && i + 1 < n && is_cont(u[i + 1]))
                    i += 2;
                else if (ch >= 0xE0 && ch <= 0xEF && i + 2 < n && is_cont(u[i + 1]) &&
                         is_cont(u[i + 2]))
                    i += 3;
                else if (ch >= 0xF0 && ch <= 0xF4 && i + 3 < n && is_cont(u[i + 1]) &&
                         is_cont(u[i + 2]) && is_cont(u[i + 3]))
                    i += 4;
                else
                    i += 1;
                if (k == 6 && i <= n && n - i >= 2) {
                    memcpy(skbuf, "sk:", 3);
                    memcpy(skbuf + 3, w, i);
                    w = skbuf;
                    n = i + 3;
                    u = (const unsigned char *)w;
                    break;
                }
            }
        }
    }
    if (region != REG_HDR) {
        bool nonw = false, upper = false;
        for (size_t i = 0; i < n; i++) {
            if (!is_w(u[i]) && u[i] != ':' && u[i] != '*')
                nonw = true;
            if (is_upper(u[i]))
                upper = true;
        }
        tamis_buf_t *d = &c->b;
        if (nonw) {
            tamis_buf_reset(d);
            for (size_t i = 0; i < n; i++)
                if (is_w(u[i]) || u[i] == ':' || u[i] == '*')
                    tamis_buf_putc(d, (char)u[i]);
            emit(c, prefix, d->data ? d->data : "", d->len);
        }
        if (upper) {
            tamis_buf_reset(d);
            for (size_t i = 0; i < n; i++)
                tamis_buf_putc(d, is_upper(u[i]) ? (char)(u[i] - 'A' + 'a') : (char)u[i]);
            emit(c, prefix, d->data, d->len);
            if (nonw) {
                tamis_buf_reset(d);
                for (size_t i = 0; i < n; i++) {
                    unsigned char ch = is_upper(u[i]) ? (unsigned char)(u[i] - 'A' + 'a') : u[i];
                    if (is_w(ch) || ch == ':' || ch == '*')
                        tamis_buf_putc(d, (char)ch);
                }
                emit(c, prefix, d->data ? d->data : "", d->len);
            }
        }
    }
    emit(c, prefix, w, n);
}

/* TAMIS mode: word pairs of the visible body in a sliding window. w is a raw word (split on
 * whitespace after the character filter); it is trimmed, ASCII-lower-cased and stripped of
 * non-word bytes (UTF-8 bytes kept), then cut to max_token_length bytes on a character boundary.
 * Pairs do not count towards the region cap (the unigram stream keeps SA's caps). */
static void pair_word(tctx_t *c, const char *w, size_t n)
{
    char cur[64];
    size_t len = 0,
           max = c->o->max_token_length < sizeof cur - 1 ? c->o->max_token_length : sizeof cur - 1;
    for (size_t i = 0; i < n && len < max; i++) {
        unsigned char ch = (unsigned char)w[i];
        if (is_w(ch) || ch >= 0x80)
            cur[len++] = is_upper(ch) ? (char)(ch - 'A' + 'a') : (char)ch;
    }
    /* do not end inside a UTF-8 sequence */
    size_t k = len;
    while (k && is_cont((unsigned char)cur[k - 1]))
        k--;
    if (k && (unsigned char)cur[k - 1] >= 0xC0) {
        unsigned char lead = (unsigned char)cur[k - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (len - (k - 1) < need)
            len = k - 1;
    }
    if (!len)
        return;
    size_t saved = c->added;
    char buf[140];
    for (unsigned d = 0; d + 1 < c->window && d < 2; d++) {
        if (!c->prevlen[d])
            continue;
        int m = snprintf(buf, sizeof buf, "%u:%.*s %.*s", d + 2, (int)c->prevlen[d], c->prev[d],
                         (int)len, cur);
        if (m > 0 && (size_t)m < sizeof buf)
            emit(c, "", buf, (size_t)m);
    }
    c->added = saved;
    memcpy(c->prev[1], c->prev[0], c->prevlen[0]);
    c->prevlen[1] = c->prevlen[0];
    memcpy(c->prev[0], cur, len);
    c->prevlen[0] = len;
}

/* _tokenize_line */
static void tokenize_line(tctx_t *c, const char *s, size_t n, const char *prefix, int region)
{
    if (n > MAX_LINE)
        n = MAX_LINE;
    char_filter((const unsigned char *)s, n, &c->a);
    split_runs(c->a.data, c->a.len, '.', 3, &c->b);
    split_runs(c->b.data, c->b.len, '-', 2, &c->a);
    tamis_buf_t *cur = &c->a;
    if (region != REG_HDR) {
        title_case(c->a.data, c->a.len, &c->b);
        cur = &c->b;
    }
    if (cur->err) {
        c->err = TAMIS_ENOMEM;
        return;
    }
    /* the word loop reuses c->b as scratch, so work on a private copy */
    size_t len = cur->len;
    char *line = malloc(len + 1);
    if (!line) {
        c->err = TAMIS_ENOMEM;
        return;
    }
    memcpy(line, cur->data ? cur->data : "", len);
    line[len] = '\0';
    size_t i = 0;
    while (i < len && !c->err) {
        while (i < len && is_s((unsigned char)line[i]))
            i++;
        size_t st = i;
        while (i < len && !is_s((unsigned char)line[i]))
            i++;
        if (i > st) {
            if (c->window && region == REG_BODY && !*prefix)
                pair_word(c, line + st, i - st);
            do_word(c, line + st, i - st, prefix, region);
        }
    }
    free(line);
}

/* ---- headers ----------------------------------------------------------------------------- */

static bool name_is(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(name, *list) == 0)
            return true;
    return false;
}

static bool has_prefix_ci(const char *s, const char *p)
{
    return strncasecmp(s, p, strlen(p)) == 0;
}

/* $IGNORED_HDRS of Plugin/Bayes.pm, matched against the whole name, case-insensitively. */
static bool ignored_header(const char *name)
{
    static const char *const exact[] = {"Sender",
                                        "X-Sender",
                                        "Delivered-To",
                                        "Delivery-Date",
                                        "Envelope-To",
                                        "X-Envelope-To",
                                        "X-MIME-Autoconverted",
                                        "X-Converted-To-Plain-Text",
                                        "Subject",
                                        "Date",
                                        "X-List",
                                        "Mailing-List",
                                        "X-Mailing-List",
                                        "X-Unsub",
                                        "X-Unsubscribe",
                                        "X-Mailman-Version",
                                        "X-Beenthere",
                                        "X-Loop",
                                        "Mail-Followup-To",
                                        "X-eGroups-Return",
                                        "X-eGroups-From",
                                        "X-MDMailing-List",
                                        "X-XEmacs-List",
                                        "X-Sympa-To",
                                        "Resent-From",
                                        "Resent-To",
                                        "Resent-Date",
                                        "X-Resent-From",
                                        "X-Resent-To",
                                        "X-Resent-Date",
                                        "Original-From",
                                        "Original-To",
                                        "Original-Date",
                                        "X-Original-From",
                                        "X-Original-To",
                                        "X-Original-Date",
                                        "X-MailScanner",
                                        "X-MailScanner-SpamCheck",
                                        "X-Spam",
                                        "X-Spam-Status",
                                        "X-Spam-Level",
                                        "X-Spam-Flag",
                                        "X-Spam-Report",
                                        "X-Spam-Hits",
                                        "X-Spam-Score",
                                        "X-Spam-Checker-Version",
                                        "X-Antispam",
                                        "X-RBL-Warning",
                                        "X-MDaemon-Deliver-To",
                                        "X-Virus-Scanned",
                                        "X-Mass-Check-Id",
                                        "X-Pyzor",
                                        "X-Filtered-By",
                                        "X-Scanned-By",
                                        "X-Scanner",
                                        "X-AP-Spam-Score",
                                        "X-AP-Spam-Status",
                                        "X-RIPE-Spam-Status",
                                        "X-SMTPD",
                                        "Spam-Apparently-To",
                                        "X-Spam-Apparently-To",
                                        "SPAM",
                                        "X-Perlmx-Spam",
                                        "X-Bogosity",
                                        "Content-Class",
                                        "Thread-Index",
                                        "Thread-Topic",
                                        "X-OriginalArrivalTime",
                                        "Status",
                                        "X-Status",
                                        "X-Flags",
                                        "X-Keywords",
                                        "Replied",
                                        "Forwarded",
                                        "Lines",
                                        "Content-Length",
                                        "X-UID",
                                        "X-UIDL",
                                        "X-IMAPbase",
                                        "X-VM-Bookmark",
                                        "X-VM-POP-Retrieved",
                                        "X-VM-IMAP-Retrieved",
                                        "X-VM-Labels",
                                        "X-VM-Last-Modified",
                                        "X-VM-Summary-Format",
                                        "X-VM-VHeader",
                                        "X-VM-Message-Order",
                                        "X-Gnus-Mail-Source",
                                        "Xref",
                                        NULL};
    static const char *const lists[] = {"Archive",   "Help",        "Id",   "Owner",   "Post",
                                        "Subscribe", "Unsubscribe", "Host", "Manager", "Admin",
                                        "Comment",   "Name",        "Url",  NULL};
    if (name_is(name, exact))
        return true;
    const char *l = name;
    if (has_prefix_ci(l, "X-"))
        l += 2;
    if (has_prefix_ci(l, "List-") && name_is(l + 5, lists))
        return true;
    size_t n = strlen(name);
    /* X-DCC-\S{2,25}-Metrics */
    if (has_prefix_ci(name, "X-DCC-") && n >= 6 + 2 + 8 && n <= 6 + 25 + 8 &&
        strcasecmp(name + n - 8, "-Metrics") == 0)
        return true;
    if ((has_prefix_ci(name, "X-SpamCop-") && n > 10) ||
        (has_prefix_ci(name, "X-Bugzilla-") && n > 11))
        return true;
    /* X-VM-v\d-Data */
    if (n == 12 && has_prefix_ci(name, "X-VM-v") && isdigit((unsigned char)name[6]) &&
        strcasecmp(name + 7, "-Data") == 0)
        return true;
    return false;
}

static bool presence_only(const char *name)
{
    static const char *const l[] = {"X-Face",
                                    "X-GnuPG-Fingerprint",
                                    "X-GnuPG-Key-Fingerprint",
                                    "X-GnuPGP-Fingerprint",
                                    "X-Gnu-PG-Fingerprint",
                                    "X-Gnu-PG-Key-Fingerprint",
                                    "X-PGP-Fingerprint",
                                    "X-PGP-Key-Fingerprint",
                                    "X-GPG-Fingerprint",
                                    "X-GPG-Key-Fingerprint",
                                    "DKIM-Signature",
                                    "DomainKey-Signature",
                                    "X-Google-DKIM-Signature",
                                    "ARC-Message-Signature",
                                    "ARC-Seal",
                                    "Autocrypt",
                                    "X-GnuPG-Fingerprint",
                                    NULL};
    return name_is(name, l);
}

static const char *compress_name(const char *name)
{
    static const char *const map[][2] = {
        {"Message-Id", "*m"},
        {"Message-ID", "*M"},
        {"Received", "*r"},
        {"User-Agent", "*u"},
        {"References", "*f"},
        {"In-Reply-To", "*i"},
        {"From", "*F"},
        {"Reply-To", "*R"},
        {"Return-Path", "*p"},
        {"Return-path", "*rp"},
        {"X-Mailer", "*x"},
        {"X-Authentication-Warning", "*a"},
        {"Organization", "*o"},
        {"Organisation", "*o"},
        {"Content-Type", "*ct"},
        {"Content-Disposition", "*cd"},
        {"Content-Transfer-Encoding", "*ce"},
        {"x-spam-relays-trusted", "*RT"},
        {"x-spam-relays-untrusted", "*RU"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], name) == 0)
            return map[i][1];
    return name;
}

/* Groups: prefix name → joined values, in first-seen order (order does not change the set). */
typedef struct {
    char *name;
    tamis_buf_t val;
} group_t;

typedef struct {
    group_t *g;
    size_t n, cap;
    int err;
} groups_t;

static void group_add(groups_t *gs, const char *name, const char *val, size_t vlen)
{
    if (gs->err)
        return;
    for (size_t i = 0; i < gs->n; i++) {
        if (strcmp(gs->g[i].name, name) == 0) {
            tamis_buf_putc(&gs->g[i].val, ' ');
            tamis_buf_append(&gs->g[i].val, val, vlen);
            if (gs->g[i].val.err)
                gs->err = TAMIS_ENOMEM;
            return;
        }
    }
    if (gs->n == gs->cap) {
        size_t nc = gs->cap ? gs->cap * 2 : 32;
        group_t *ng = realloc(gs->g, nc * sizeof *ng);
        if (!ng) {
            gs->err = TAMIS_ENOMEM;
            return;
        }
        gs->g = ng;
        gs->cap = nc;
    }
    group_t *g = &gs->g[gs->n];
    g->name = strdup(name);
    tamis_buf_init(&g->val, 1u << 20);
    tamis_buf_append(&g->val, val, vlen);
    if (!g->name || g->val.err) {
        free(g->name);
        tamis_buf_free(&g->val);
        gs->err = TAMIS_ENOMEM;
        return;
    }
    gs->n++;
}

static void groups_free(groups_t *gs)
{
    for (size_t i = 0; i < gs->n; i++) {
        free(gs->g[i].name);
        tamis_buf_free(&gs->g[i].val);
    }
    free(gs->g);
}

static bool is_hex(unsigned char c)
{
    return isxdigit(c) != 0;
}

/* _pre_chew_message_id */
static void chew_message_id(const char *v, size_t n, tamis_buf_t *out)
{
    tamis_buf_reset(out);
    tamis_buf_t tmp;
    tamis_buf_init(&tmp, 0);
    size_t i = 0;
    /* Outlook Express: <xxxx xxxx xxxx$xxxx xxxx$xxxxxxxx@host> (lower-case hex) */
    while (i < n) {
        if (v[i] == '<' && i + 1 + 12 + 1 + 8 + 1 + 8 + 1 < n) {
            const char *p = v + i + 1;
            bool ok = true;
            for (int k = 0; k < 12 && ok; k++)
                ok = (p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f');
            ok = ok && p[12] == '$';
            for (int k = 13; k < 21 && ok; k++)
                ok = (p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f');
            ok = ok && p[21] == '$';
            for (int k = 22; k < 30 && ok; k++)
                ok = (p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f');
            ok = ok && p[30] == '@';
            size_t h = 31, hs = 31;
            while (ok && i + 1 + h < n && !is_s((unsigned char)p[h]))
                h++;
            /* (\S+)> : greedy then backtrack to the last '>' within the run */
            size_t gt = h;
            while (ok && gt > hs && p[gt - 1] != '>')
                gt--;
            if (ok && gt > hs + 1) {
                tamis_buf_puts(&tmp, " OEA");
                tamis_buf_append(&tmp, p, 4);
                tamis_buf_puts(&tmp, " OEB");
                tamis_buf_append(&tmp, p + 13, 4);
                tamis_buf_puts(&tmp, " OEC");
                tamis_buf_append(&tmp, p + 22, 8);
                tamis_buf_putc(&tmp, ' ');
                tamis_buf_append(&tmp, p + hs, gt - 1 - hs);
                tamis_buf_putc(&tmp, ' ');
                i += 1 + gt;
                continue;
            }
        }
        tamis_buf_putc(&tmp, v[i]);
        i++;
    }
    /* Exim (first occurrence) and Sendmail (all) id prefixes, then non-[_A-Za-z0-9] → space */
    const char *s = tmp.data ? tmp.data : "";
    size_t sn = tmp.len;
    bool exim_done = false;
    for (i = 0; i < sn;) {
        if (s[i] == '<') {
            const char *p = s + i + 1;
            size_t rem = sn - i - 1;
            if (!exim_done && rem >= 7 + 1 + 6 + 1 + 2 + 1) {
                bool ok = true;
                for (int k = 0; k < 7 && ok; k++)
                    ok = isalnum((unsigned char)p[k]);
                ok = ok && p[7] == '-';
                for (int k = 8; k < 14 && ok; k++)
                    ok = isalnum((unsigned char)p[k]);
                ok = ok && p[14] == '-' && p[15] == '0' && isalnum((unsigned char)p[16]) &&
                     p[17] == '@';
                if (ok) {
                    exim_done = true;
                    i += 1 + 18;
                    continue;
                }
            }
            if (rem >= 14 + 1 + 10 + 1 && p[0] == '2' && p[1] == '0') {
                bool ok = isdigit((unsigned char)p[2]) && isdigit((unsigned char)p[3]) &&
                          (p[4] == '0' || p[4] == '1') && isdigit((unsigned char)p[5]) &&
                          p[6] >= '0' && p[6] <= '3' && isdigit((unsigned char)p[7]) &&
                          p[8] >= '0' && p[8] <= '2' && isdigit((unsigned char)p[9]) &&
                          p[10] >= '0' && p[10] <= '5' && isdigit((unsigned char)p[11]) &&
                          p[12] >= '0' && p[12] <= '5' && isdigit((unsigned char)p[13]) &&
                          p[14] == '.';
                size_t k = 15;
                while (ok && k < rem && k < 15 + 12 &&
                       (isdigit((unsigned char)p[k]) || (p[k] >= 'A' && p[k] <= 'F')))
                    k++;
                /* [A-F0-9]{10,12}\@ with backtracking: accept if some length 10..k has '@' */
                if (ok && k - 15 >= 10 && k < rem && p[k] == '@') {
                    i += 1 + k + 1;
                    continue;
                }
            }
        }
        tamis_buf_putc(out, is_w((unsigned char)s[i]) ? s[i] : ' ');
        i++;
    }
    tamis_buf_free(&tmp);
    if (!out->data)
        tamis_buf_puts(out, "");
}

static bool word_at(const char *s, size_t n, size_t i, const char *w)
{
    size_t wl = strlen(w);
    if (i + wl > n || memcmp(s + i, w, wl) != 0)
        return false;
    if (i > 0 && is_w((unsigned char)s[i - 1]))
        return false;
    if (i + wl < n && is_w((unsigned char)s[i + wl]))
        return false;
    return true;
}

/* _pre_chew_received: the IP rewrite and the stop words; queue ids of the usual shapes and
 * RFC 2822 dates are removed. */
static void chew_received(const char *v, size_t n, tamis_buf_t *out)
{
    tamis_buf_t a;
    tamis_buf_init(&a, 0);
    /* \bid\s[a-zA-Z0-9]{7,20}\b → ' ' */
    size_t i = 0;
    while (i < n) {
        if (word_at(v, n, i, "id") && i + 3 < n && is_s((unsigned char)v[i + 2])) {
            size_t k = i + 3;
            while (k < n && isalnum((unsigned char)v[k]))
                k++;
            size_t run = k - i - 3;
            if (run >= 7 && run <= 20 && (k >= n || !is_w((unsigned char)v[k]))) {
                tamis_buf_putc(&a, ' ');
                i = k;
                continue;
            }
        }
        tamis_buf_putc(&a, v[i]);
        i++;
    }
    /* dates: [Day, ]D Mon [YY]YY HH:MM[:SS] [zone...] */
    static const char *const mons[] = {"Jan", "Feb", "Mar", "May", "Apr", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    tamis_buf_t b;
    tamis_buf_init(&b, 0);
    const char *s = a.data ? a.data : "";
    size_t sn = a.len;
    i = 0;
    while (i < sn) {
        size_t p = i;
        /* optional "Day, " */
        for (int d = 0; d < 7; d++) {
            if (p + 5 <= sn && memcmp(s + p, days[d], 3) == 0 && s[p + 3] == ',' &&
                is_s((unsigned char)s[p + 4])) {
                p += 5;
                break;
            }
        }
        size_t q = p;
        /* [0-3\s]?[0-9]\s */
        if (q < sn && (is_s((unsigned char)s[q]) || (s[q] >= '0' && s[q] <= '3')) && q + 1 < sn &&
            isdigit((unsigned char)s[q + 1]) && q + 2 < sn && is_s((unsigned char)s[q + 2]))
            q += 3;
        else if (q < sn && isdigit((unsigned char)s[q]) && q + 1 < sn &&
                 is_s((unsigned char)s[q + 1]))
            q += 2;
        else
            q = (size_t)-1;
        bool ok = q != (size_t)-1;
        if (ok) {
            ok = false;
            for (int m = 0; m < 12; m++)
                if (q + 4 <= sn && memcmp(s + q, mons[m], 3) == 0 && is_s((unsigned char)s[q + 3]))
                    ok = true;
            q += 4;
        }
        if (ok) {
            if (q + 5 <= sn && (memcmp(s + q, "19", 2) == 0 || memcmp(s + q, "20", 2) == 0) &&
                isdigit((unsigned char)s[q + 2]) && isdigit((unsigned char)s[q + 3]) &&
                is_s((unsigned char)s[q + 4]))
                q += 5;
            else if (q + 3 <= sn && isdigit((unsigned char)s[q]) &&
                     isdigit((unsigned char)s[q + 1]) && is_s((unsigned char)s[q + 2]))
                q += 3;
            else
                ok = false;
        }
        if (ok) {
            /* [0-2][0-9](:[0-5][0-9]){1,2}\s */
            if (q + 5 <= sn && s[q] >= '0' && s[q] <= '2' && isdigit((unsigned char)s[q + 1]) &&
                s[q + 2] == ':' && s[q + 3] >= '0' && s[q + 3] <= '5' &&
                isdigit((unsigned char)s[q + 4])) {
                q += 5;
                if (q + 3 <= sn && s[q] == ':' && s[q + 1] >= '0' && s[q + 1] <= '5' &&
                    isdigit((unsigned char)s[q + 2]) && q + 3 < sn && is_s((unsigned char)s[q + 3]))
                    q += 3;
                if (q < sn && is_s((unsigned char)s[q]))
                    q++;
                else
                    ok = false;
            } else {
                ok = false;
            }
        }
        if (ok) {
            /* (?:\s*\(|\)|\s*(?:[+-][0-9]{4})|\s*(?:UT|[A-Z]{2,3}T))* */
            for (;;) {
                size_t r = q;
                while (r < sn && is_s((unsigned char)s[r]))
                    r++;
                if (r < sn && s[r] == '(') {
                    q = r + 1;
                    continue;
                }
                if (q < sn && s[q] == ')') {
                    q++;
                    continue;
                }
                if (r + 5 <= sn && (s[r] == '+' || s[r] == '-') &&
                    isdigit((unsigned char)s[r + 1]) && isdigit((unsigned char)s[r + 2]) &&
                    isdigit((unsigned char)s[r + 3]) && isdigit((unsigned char)s[r + 4])) {
                    q = r + 5;
                    continue;
                }
                if (r + 2 <= sn && s[r] == 'U' && s[r + 1] == 'T') {
                    q = r + 2;
                    continue;
                }
                size_t u = r;
                while (u < sn && u < r + 4 && is_upper((unsigned char)s[u]))
                    u++;
                if (u - r >= 3 && s[u - 1] == 'T') {
                    q = u;
                    continue;
                }
                break;
            }
            i = q;
            continue;
        }
        tamis_buf_putc(&b, s[i]);
        i++;
    }
    tamis_buf_free(&a);
    /* IPs → a.b.c ip*a.b.c.d, then drop with/from/for/SMTP/ESMTP */
    s = b.data ? b.data : "";
    sn = b.len;
    tamis_buf_reset(out);
    i = 0;
    while (i < sn) {
        if (isdigit((unsigned char)s[i]) && (i == 0 || !is_w((unsigned char)s[i - 1]))) {
            size_t st[4], en[4], p = i;
            int parts = 0;
            while (parts < 4) {
                size_t d = p;
                while (d < sn && d < p + 3 && isdigit((unsigned char)s[d]))
                    d++;
                if (d == p)
                    break;
                st[parts] = p;
                en[parts] = d;
                parts++;
                if (parts < 4) {
                    if (d < sn && s[d] == '.')
                        p = d + 1;
                    else
                        break;
                } else {
                    p = d;
                }
            }
            if (parts == 4 && (p >= sn || !is_w((unsigned char)s[p])) && (en[0] - st[0]) <= 3) {
                tamis_buf_append(out, s + i, en[2] - i);
                tamis_buf_puts(out, " ip*");
                tamis_buf_append(out, s + i, p - i);
                tamis_buf_putc(out, ' ');
                i = p;
                continue;
            }
        }
        static const char *const drop[] = {"with", "from", "for", "SMTP", "ESMTP"};
        bool dropped = false;
        for (int k = 0; k < 5; k++) {
            if (word_at(s, sn, i, drop[k])) {
                tamis_buf_putc(out, ' ');
                i += strlen(drop[k]);
                dropped = true;
                break;
            }
        }
        if (dropped)
            continue;
        tamis_buf_putc(out, s[i]);
        i++;
    }
    tamis_buf_free(&b);
    if (!out->data)
        tamis_buf_puts(out, "");
}

/* _pre_chew_content_type */
static void chew_content_type(const char *v, size_t n, tamis_buf_t *out)
{
    tamis_buf_t a, bnd;
    tamis_buf_init(&a, 0);
    tamis_buf_init(&bnd, 0);
    bool have = false;
    size_t i = 0;
    while (i < n) {
        if (i + 10 <= n && strncasecmp(v + i, "boundary=", 9) == 0 &&
            (v[i + 9] == '"' || v[i + 9] == '\'')) {
            size_t k = i + 10;
            while (k < n && v[k] != '"' && v[k] != '\'')
                k++;
            if (k < n) {
                tamis_buf_reset(&bnd);
                tamis_buf_append(&bnd, v + i + 10, k - i - 10);
                have = true;
                tamis_buf_putc(&a, ' ');
                i = k + 1;
                continue;
            }
        }
        tamis_buf_putc(&a, v[i]);
        i++;
    }
    if (have) {
        for (size_t k = 0; k < bnd.len;) {
            char ch = bnd.data[k];
            if (ch == '-' || ch == '_' || ch == '.' || ch == '=') {
                tamis_buf_putc(&a, ' ');
                while (k < bnd.len && (bnd.data[k] == '-' || bnd.data[k] == '_' ||
                                       bnd.data[k] == '.' || bnd.data[k] == '='))
                    tamis_buf_putc(&a, bnd.data[k++]);
                tamis_buf_putc(&a, ' ');
                continue;
            }
            tamis_buf_putc(&a, is_hex((unsigned char)ch) ? 'H' : ch);
            k++;
        }
    }
    const char *s = a.data ? a.data : "";
    tamis_buf_reset(out);
    for (i = 0; i < a.len;) {
        if (word_at(s, a.len, i, "text")) {
            tamis_buf_putc(out, ' ');
            i += 4;
        } else if (word_at(s, a.len, i, "charset")) {
            tamis_buf_putc(out, ' ');
            i += 7;
        } else {
            tamis_buf_putc(out, s[i++]);
        }
    }
    if (!out->data)
        tamis_buf_puts(out, "");
    tamis_buf_free(&a);
    tamis_buf_free(&bnd);
}

/* Util's $header_address_mailre, anchored, plus _valid_parsed_address. */
static bool valid_mail(const char *a, size_t n)
{
    size_t i = 0;
    if (n && a[0] == '"') {
        i = 1;
        while (i < n && a[i] != '"') {
            if (a[i] == '\\')
                i++;
            i++;
        }
        if (i >= n)
            return false;
        i++;
    } else {
        while (i < n && !strchr("@<>()[],:;", a[i]) && !is_s((unsigned char)a[i]))
            i++;
        if (i == 0)
            return false;
    }
    if (i >= n || a[i] != '@')
        return false;
    i++;
    if (i < n && a[i] == '[') {
        size_t k = i + 1;
        while (k < n && (isdigit((unsigned char)a[k]) || a[k] == ':' || a[k] == '.'))
            k++;
        if (k == i + 1 || k + 1 != n || a[k] != ']')
            return false;
    } else {
        if (i >= n)
            return false;
        for (size_t k = i; k < n; k++)
            if (strchr("\"<>()[],:;", a[k]) || is_s((unsigned char)a[k]))
                return false;
    }
    size_t quotes = 0;
    for (size_t k = 0; k < n; k++)
        quotes += a[k] == '"';
    return quotes != 1 && !(n >= 3 && memcmp(a, "\"\"@", 3) == 0);
}

/* _pre_chew_addr_header: a pragmatic address-list parser giving N*phrase words, U*, D* tokens. */
static void chew_addr(const char *v, size_t n, tamis_buf_t *out)
{
    tamis_buf_reset(out);
    size_t i = 0;
    /* group syntax, as SA's s/^[^"()<>]+:\s*(.*?)\s*(?:;.*)?/$1/: drop "name:" and, when a ';'
     * follows at once, everything after it */
    {
        size_t k = 0, colon = 0;
        while (k < n && !strchr("\"()<>", v[k])) {
            if (v[k] == ':')
                colon = k + 1;
            k++;
        }
        if (colon > 1) {
            i = colon;
            while (i < n && is_s((unsigned char)v[i]))
                i++;
            if (i < n && v[i] == ';')
                i = n;
        }
    }
    tamis_buf_t phrase, addr, comment;
    tamis_buf_init(&phrase, 0);
    tamis_buf_init(&addr, 0);
    tamis_buf_init(&comment, 0);
    while (i <= n) {
        tamis_buf_reset(&phrase);
        tamis_buf_reset(&addr);
        tamis_buf_reset(&comment);
        bool angle = false;
        /* one entry up to a top-level ',' */
        while (i < n && v[i] != ',') {
            char ch = v[i];
            if (ch == '"') {
                i++;
                while (i < n && v[i] != '"') {
                    if (v[i] == '\\' && i + 1 < n)
                        i++;
                    tamis_buf_putc(&phrase, v[i++]);
                }
                i++;
            } else if (ch == '(') {
                int depth = 1;
                i++;
                size_t st = i;
                while (i < n && depth) {
                    if (v[i] == '(')
                        depth++;
                    else if (v[i] == ')')
                        depth--;
                    i++;
                }
                if (!comment.len)
                    tamis_buf_append(&comment, v + st, (i - st) - (depth ? 0 : 1));
            } else if (ch == '<') {
                i++;
                tamis_buf_reset(&addr);
                while (i < n && v[i] != '>')
                    tamis_buf_putc(&addr, v[i++]);
                i++;
                angle = true;
            } else {
                tamis_buf_putc(&phrase, ch);
                i++;
            }
        }
        i++;
        /* trim the phrase */
        char *p = phrase.data ? phrase.data : (char *)"";
        size_t pl = phrase.len;
        while (pl && is_s((unsigned char)*p)) {
            p++;
            pl--;
        }
        while (pl && is_s((unsigned char)p[pl - 1]))
            pl--;
        const char *a = NULL;
        size_t al = 0;
        if (angle) {
            a = addr.data ? addr.data : "";
            al = addr.len;
            while (al && is_s((unsigned char)*a)) {
                a++;
                al--;
            }
            while (al && is_s((unsigned char)a[al - 1]))
                al--;
            if (!valid_mail(a, al))
                a = NULL;
        } else if (pl && valid_mail(p, pl)) {
            a = p;
            al = pl;
            pl = 0;
        }
        /* SA drops a phrase equal to the address, but its phrase keeps the blank before '<',
         * so this only happens without one */
        if (a && al && phrase.len == al && memcmp(phrase.data, a, al) == 0)
            pl = 0;
        const char *ph = p;
        if (!pl && comment.len) {
            ph = comment.data;
            pl = comment.len;
        }
        if (pl) {
            size_t k = 0;
            while (k < pl) {
                size_t st = k;
                while (k < pl && !is_s((unsigned char)ph[k]))
                    k++;
                if (out->len)
                    tamis_buf_putc(out, ' ');
                tamis_buf_puts(out, "N*");
                tamis_buf_append(out, ph + st, k - st);
                while (k < pl && is_s((unsigned char)ph[k]))
                    k++;
            }
        }
        if (a && al) {
            size_t at = al;
            for (size_t k = al; k-- > 1;)
                if (a[k] == '@' && k + 1 < al) {
                    at = k;
                    break;
                }
            if (at < al) {
                if (out->len)
                    tamis_buf_putc(out, ' ');
                tamis_buf_puts(out, "U*");
                tamis_buf_append(out, a, at);
                const char *d = a + at + 1;
                size_t dn = al - at - 1;
                tamis_buf_puts(out, " D*");
                tamis_buf_append(out, d, dn);
                for (;;) {
                    size_t k = 0;
                    while (k < dn && d[k] != '.')
                        k++;
                    if (k == 0 || k + 1 >= dn)
                        break;
                    d += k + 1;
                    dn -= k + 1;
                    tamis_buf_puts(out, " D*");
                    tamis_buf_append(out, d, dn);
                }
            }
        }
        if (i > n)
            break;
    }
    tamis_buf_free(&phrase);
    tamis_buf_free(&addr);
    tamis_buf_free(&comment);
    if (!out->data)
        tamis_buf_puts(out, "");
}

static bool addr_header(const char *name)
{
    const char *n = name;
    if (has_prefix_ci(n, "X-"))
        n += 2;
    else if (has_prefix_ci(n, "Resent-"))
        n += 7;
    static const char *const l[] = {
        "Return-Path",      "From",   "To", "Cc", "Reply-To", "Errors-To",
        "Mail-Followup-To", "Sender", NULL};
    return name_is(n, l);
}

/* One "Name: value" field (value already unfolded) into the groups. */
static void header_field(tctx_t *c, groups_t *gs, const char *name, const char *val, size_t vlen,
                         tamis_buf_t *tmp)
{
    for (size_t k = 0; k < c->o->ignore_header_count; k++)
        if (c->o->ignore_headers[k] && strcasecmp(c->o->ignore_headers[k], name) == 0)
            return;
    if (c->o->stock_ignores && tamis__bayes_stock_ignored(name))
        return;
    while (vlen && val[vlen - 1] == '\n')
        vlen--;
    const char *v = val;
    size_t vl = vlen;
    if (strcasecmp(name, "Message-Id") == 0 || strcasecmp(name, "X-Message-Id") == 0 ||
        strcasecmp(name, "Resent-Message-Id") == 0) {
        chew_message_id(val, vlen, tmp);
        v = tmp->data;
        vl = tmp->len;
    } else if (addr_header(name)) {
        chew_addr(val, vlen, tmp);
        v = tmp->data;
        vl = tmp->len;
    } else if (strcmp(name, "Received") == 0) {
        chew_received(val, vlen, tmp);
        v = tmp->data;
        vl = tmp->len;
    } else if (strcmp(name, "Content-Type") == 0) {
        chew_content_type(val, vlen, tmp);
        v = tmp->data;
        vl = tmp->len;
    } else if (strcmp(name, "MIME-Version") == 0) {
        tamis_buf_reset(tmp);
        const char *f = NULL;
        for (size_t k = 0; k + 3 <= vlen && !f; k++)
            if (memcmp(val + k, "1.0", 3) == 0)
                f = val + k;
        if (f) {
            tamis_buf_append(tmp, val, (size_t)(f - val));
            tamis_buf_append(tmp, f + 3, vlen - (size_t)(f - val) - 3);
        } else {
            tamis_buf_append(tmp, val, vlen);
        }
        if (!tmp->data)
            tamis_buf_puts(tmp, "");
        v = tmp->data;
        vl = tmp->len;
    } else if (presence_only(name)) {
        v = "1";
        vl = 1;
    } else if (strncmp(name, "x-spam-relays-", 14) == 0) {
        /* s/ [a-z]+=/ /g */
        tamis_buf_reset(tmp);
        for (size_t k = 0; k < vlen;) {
            if (val[k] == ' ') {
                size_t e = k + 1;
                while (e < vlen && val[e] >= 'a' && val[e] <= 'z')
                    e++;
                if (e > k + 1 && e < vlen && val[e] == '=') {
                    tamis_buf_putc(tmp, ' ');
                    k = e + 1;
                    continue;
                }
            }
            tamis_buf_putc(tmp, val[k++]);
        }
        if (!tmp->data)
            tamis_buf_puts(tmp, "");
        v = tmp->data;
        vl = tmp->len;
    }
    if (strcasecmp(name, "In-Reply-To") == 0 || strcasecmp(name, "References") == 0 ||
        strcasecmp(name, "Message-ID") == 0)
        group_add(gs, "*MI", v, vl);
    if (strcasecmp(name, "From") == 0 || strcasecmp(name, "To") == 0 || strcasecmp(name, "Cc") == 0)
        group_add(gs, "*Ad", v, vl);
    if (strcasecmp(name, "X-Mailer") == 0 || strcasecmp(name, "User-Agent") == 0)
        group_add(gs, "*UA", v, vl);
    group_add(gs, compress_name(name), v, vl);
}

static bool has_nonspace(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_s((unsigned char)s[i]))
            return true;
    return false;
}

/* SA's x-spam-relays-{external,internal,trusted,untrusted} metadata with inferred trust: relays
 * are trusted (and internal) while their IP is private or they authenticated. */
static void relay_meta(tctx_t *c, groups_t *gs, const tamis_msg_t *m, tamis_buf_t *tmp)
{
    tamis_buf_t str[4]; /* external, internal, trusted, untrusted: get_all_metadata's order */
    for (int i = 0; i < 4; i++)
        tamis_buf_init(&str[i], 1u << 20);
    bool in_trusted = true;
    size_t n = tamis_msg_relay_count(m);
    for (size_t i = 0; i < n; i++) {
        const tamis_relay_t *r = tamis_msg_relay_at(m, i);
        if (!r || r->skipped || r->unparseable)
            continue;
        if (in_trusted && !r->ip_private && !(r->auth && *r->auth))
            in_trusted = false;
        tamis_buf_t *dst[2] = {&str[in_trusted ? 2 : 3], &str[in_trusted ? 1 : 0]};
        for (int k = 0; k < 2; k++) {
            if (dst[k]->len)
                tamis_buf_putc(dst[k], ' ');
            tamis_buf_printf(dst[k],
                             "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s intl=%d id=%s "
                             "auth=%s msa=0 ]",
                             r->ip ? r->ip : "", r->rdns ? r->rdns : "", r->helo ? r->helo : "",
                             r->by ? r->by : "", r->ident ? r->ident : "",
                             r->envfrom ? r->envfrom : "", in_trusted ? 1 : 0, r->id ? r->id : "",
                             r->auth ? r->auth : "");
        }
    }
    static const char *const names[4] = {"x-spam-relays-external", "x-spam-relays-internal",
                                         "x-spam-relays-trusted", "x-spam-relays-untrusted"};
    for (int i = 0; i < 4; i++) {
        tamis_buf_puts(&str[i], "");
        if (str[i].err)
            c->err = TAMIS_ENOMEM;
        else
            header_field(c, gs, names[i], str[i].data, str[i].len, tmp);
        tamis_buf_free(&str[i]);
    }
}

static void tokenize_groups(tctx_t *c, groups_t *gs)
{
    c->added = 0;
    tamis_buf_t prefix;
    tamis_buf_init(&prefix, 4096);
    for (size_t i = 0; i < gs->n && !c->err; i++) {
        tamis_buf_reset(&prefix);
        tamis_buf_printf(&prefix, "H%s:", gs->g[i].name);
        if (prefix.err)
            continue;
        tokenize_line(c, gs->g[i].val.data ? gs->g[i].val.data : "", gs->g[i].val.len, prefix.data,
                      REG_HDR);
        if (c->added >= HDR_CAP)
            break;
    }
    tamis_buf_free(&prefix);
}

static void ctx_init(tctx_t *c, tamis_bayes_tokens_t *set, const tamis_bayes_tokopts_t *o)
{
    memset(c, 0, sizeof *c);
    c->set = set;
    c->o = o;
    if (o->mode == TAMIS_BAYES_TOKMODE_TAMIS) {
        c->window = o->pair_window ? o->pair_window : 3;
    }
    tamis_buf_init(&c->a, 0);
    tamis_buf_init(&c->b, 0);
    tamis_buf_init(&c->tok, 0);
}

static void ctx_free(tctx_t *c)
{
    tamis_buf_free(&c->a);
    tamis_buf_free(&c->b);
    tamis_buf_free(&c->tok);
}

/* Tokenizes text split on '\n' lines in a region, up to cap tokens. */
static void tokenize_lines(tctx_t *c, const char *s, size_t n, const char *prefix, int region,
                           size_t cap)
{
    c->added = 0;
    c->prevlen[0] = c->prevlen[1] = 0;
    size_t i = 0;
    while (i < n && !c->err) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - s) + 1 : n;
        tokenize_line(c, s + i, e - i, prefix, region);
        i = e;
        if (c->added >= cap)
            break;
    }
}

int tamis_bayes_tokenize_text(const char *headers, size_t hlen, const char *body, size_t blen,
                              const tamis_bayes_tokopts_t *o, tamis_bayes_tokens_t **out, char *err,
                              size_t errlen)
{
    tamis_bayes_tokopts_t def;
    if (!out)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: no output pointer");
    *out = NULL;
    if (!o) {
        tamis_bayes_tokopts_default(&def);
        o = &def;
    }
    tamis_bayes_tokens_t *set = set_new();
    if (!set)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    tctx_t c;
    ctx_init(&c, set, o);
    if (body && (o->sources & TAMIS_BAYES_SRC_VISIBLE))
        tokenize_lines(&c, body, blen, "", REG_BODY, BODY_CAP);
    if (headers && (o->sources & TAMIS_BAYES_SRC_HEADER)) {
        groups_t gs = {0};
        tamis_buf_t tmp, val, rc0, rc1; /* rc0: last Received, rc1: the one before */
        tamis_buf_init(&tmp, 0);
        tamis_buf_init(&val, 0);
        tamis_buf_init(&rc0, 0);
        tamis_buf_init(&rc1, 0);
        bool have0 = false, have1 = false;
        size_t i = 0;
        while (i < hlen && !gs.err) {
            /* one field, unfolded */
            size_t st = i;
            const char *colon = memchr(headers + i, ':', hlen - i);
            const char *nl = memchr(headers + i, '\n', hlen - i);
            size_t e = nl ? (size_t)(nl - headers) + 1 : hlen;
            while (e < hlen && (headers[e] == ' ' || headers[e] == '\t')) {
                nl = memchr(headers + e, '\n', hlen - e);
                e = nl ? (size_t)(nl - headers) + 1 : hlen;
            }
            i = e;
            if (!colon || (size_t)(colon - headers) >= e)
                continue;
            char name[256];
            size_t nn = (size_t)(colon - headers) - st;
            if (nn == 0 || nn >= sizeof name)
                continue;
            memcpy(name, headers + st, nn);
            name[nn] = '\0';
            tamis_buf_reset(&val);
            for (const char *p = colon + 1; p < headers + e; p++) {
                if (*p == '\r')
                    continue;
                if (*p == '\n') {
                    if (p + 1 < headers + e)
                        tamis_buf_putc(&val, ' '), p++;
                    continue;
                }
                tamis_buf_putc(&val, *p);
            }
            if (!val.data)
                tamis_buf_puts(&val, "");
            if (strcasecmp(name, "Received") == 0) {
                tamis_buf_t t = rc1;
                rc1 = rc0;
                rc0 = t;
                have1 = have0;
                have0 = true;
                tamis_buf_reset(&rc0);
                tamis_buf_append(&rc0, val.data, val.len);
                tamis_buf_puts(&rc0, "");
                continue;
            }
            if (ignored_header(name))
                continue;
            if (!has_nonspace(val.data, val.len))
                continue;
            header_field(&c, &gs, name, val.data, val.len, &tmp);
        }
        if (have0)
            header_field(&c, &gs, "Received", rc0.data, rc0.len, &tmp);
        if (have1)
            header_field(&c, &gs, "Received", rc1.data, rc1.len, &tmp);
        tamis_buf_free(&tmp);
        tamis_buf_free(&val);
        tamis_buf_free(&rc0);
        tamis_buf_free(&rc1);
        if (gs.err)
            c.err = gs.err;
        tokenize_groups(&c, &gs);
        groups_free(&gs);
    }
    int rc = c.err;
    ctx_free(&c);
    if (rc) {
        tamis_bayes_tokens_free(set);
        return tamis_seterr(err, errlen, rc, "bayes: tokenizer: %s", tamis_strerror(rc));
    }
    *out = set;
    return 0;
}

int tamis_bayes_tokenize_msg(const tamis_msg_t *m, const tamis_bayes_tokopts_t *o,
                             tamis_bayes_tokens_t **out, char *err, size_t errlen)
{
    tamis_bayes_tokopts_t def;
    if (!out || !m)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "bayes: no message or output pointer");
    *out = NULL;
    if (!o) {
        tamis_bayes_tokopts_default(&def);
        o = &def;
    }
    tamis_bayes_tokens_t *set = set_new();
    if (!set)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "bayes: out of memory");
    tctx_t c;
    ctx_init(&c, set, o);
    if (o->sources & TAMIS_BAYES_SRC_VISIBLE) {
        c.added = 0;
        size_t nl = tamis_msg_visible_line_count(m);
        for (size_t i = 0; i < nl && !c.err; i++) {
            tamis_slice_t l = tamis_msg_visible_line(m, i);
            tokenize_line(&c, l.ptr ? l.ptr : "", l.len, "", REG_BODY);
            if (c.added >= BODY_CAP)
                break;
        }
    }
    if (o->sources & TAMIS_BAYES_SRC_URI) {
        c.added = 0;
        size_t nu = tamis_msg_uri_string_count(m);
        for (size_t i = 0; i < nu && !c.err; i++) {
            const char *u = tamis_msg_uri_string(m, i);
            if (u)
                tokenize_line(&c, u, strlen(u), "", REG_URI);
            if (c.added >= HDR_CAP)
                break;
        }
    }
    if (o->sources & TAMIS_BAYES_SRC_INVISIBLE) {
        tamis_slice_t inv = tamis_msg_invisible_text(m);
        if (inv.ptr && inv.len)
            tokenize_lines(&c, inv.ptr, inv.len, "I*:", REG_BODY, BODY_CAP);
    }
    if (o->sources & TAMIS_BAYES_SRC_MIMEPART) {
        size_t np = tamis_msg_part_count(m);
        for (size_t i = 0; i < np && !c.err; i++) {
            const tamis_part_t *p = tamis_msg_part_at(m, i);
            if (!p || !p->is_leaf)
                continue;
            char hex[41];
            tamis_bayes_sha1_hex(p->decoded.ptr ? p->decoded.ptr : "", p->decoded.len, hex);
            static const char *const sh[][3] = {
                {"da39a3ee5e6b4b0d3255bfef95601890afd80709", "text/plain", "Empty-Plaintext"},
                {"da39a3ee5e6b4b0d3255bfef95601890afd80709", "text/html", "Empty-HTML"},
                {"da39a3ee5e6b4b0d3255bfef95601890afd80709", "text/xml", "Empty-XML"},
                {"adc83b19e793491b1c6ea0fd8b46cd9f32e592fc", "text/plain", "OneNL-Plaintext"},
                {"adc83b19e793491b1c6ea0fd8b46cd9f32e592fc", "text/html", "OneNL-HTML"},
                {"71853c6197a6a7f222db0f1978c7cb232b87c5ee", "text/plain", "TwoNL-Plaintext"},
                {"71853c6197a6a7f222db0f1978c7cb232b87c5ee", "text/html", "TwoNL-HTML"},
            };
            tamis_buf_reset(&c.tok);
            const char *type = p->type ? p->type : "text/plain";
            const char *shn = NULL;
            for (size_t k = 0; k < 7; k++)
                if (strcmp(sh[k][0], hex) == 0 && strcmp(sh[k][1], type) == 0)
                    shn = sh[k][2];
            if (shn)
                tamis_buf_printf(&c.tok, "MIME:%s", shn);
            else
                tamis_buf_printf(&c.tok, "MIME:%s:%s", hex, type);
            if (c.tok.err || set_add(set, c.tok.data, c.tok.len))
                c.err = TAMIS_ENOMEM;
        }
    }
    if ((o->sources & TAMIS_BAYES_SRC_HEADER) && !c.err) {
        groups_t gs = {0};
        tamis_buf_t tmp;
        tamis_buf_init(&tmp, 0);
        size_t nh = tamis_msg_header_count(m);
        const tamis_header_t *rcvd[2] = {NULL, NULL}; /* last, second last */
        for (size_t i = 0; i < nh && !gs.err; i++) {
            const tamis_header_t *h = tamis_msg_header_at(m, i);
            if (!h || !h->name)
                continue;
            if (strcasecmp(h->name, "Received") == 0) {
                rcvd[1] = rcvd[0];
                rcvd[0] = h;
                continue;
            }
            if (ignored_header(h->name))
                continue;
            const char *v = h->decoded ? h->decoded : "";
            size_t vl = strlen(v);
            if (!has_nonspace(v, vl) && !has_nonspace(h->name, strlen(h->name)))
                continue;
            header_field(&c, &gs, h->name, v, vl, &tmp);
        }
        if (!o->meta && o->relay_meta)
            relay_meta(&c, &gs, m, &tmp);
        for (size_t i = 0; i < o->meta_count && !gs.err; i++) {
            if (!o->meta || !o->meta[i].name)
                continue;
            const char *v = o->meta[i].value ? o->meta[i].value : "";
            header_field(&c, &gs, o->meta[i].name, v, strlen(v), &tmp);
        }
        for (int k = 0; k < 2 && !gs.err; k++) {
            if (!rcvd[k])
                continue;
            const char *v = rcvd[k]->decoded ? rcvd[k]->decoded : "";
            header_field(&c, &gs, rcvd[k]->name, v, strlen(v), &tmp);
        }
        tamis_buf_free(&tmp);
        if (gs.err)
            c.err = gs.err;
        tokenize_groups(&c, &gs);
        groups_free(&gs);
    }
    int rc = c.err;
    ctx_free(&c);
    if (rc) {
        tamis_bayes_tokens_free(set);
        return tamis_seterr(err, errlen, rc, "bayes: tokenizer: %s", tamis_strerror(rc));
    }
    *out = set;
    return 0;
}
