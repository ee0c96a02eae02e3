/*
 * Regex compiler: SpamAssassin's "/re/mods" and "m{re}mods" syntax (Util::compile_regexp) turned
 * into PCRE2 8-bit patterns with Perl /aa semantics (spec-rules §7):
 *   - no UTF, no UCP: subjects are byte strings, \d \s \w and POSIX classes are ASCII;
 *   - case-insensitive matching folds Latin-1 letters 0xC0-0xDE <-> 0xE0-0xFE (not 0xD7/0xF7)
 *     as Perl does for byte strings under /aa, through patched character tables;
 *   - \x{...} above 0xFF can never match a byte string: rewritten to (?!) (or dropped in a class);
 *   - {,n} (Perl 5.34+: {0,n}) is rewritten, since PCRE2 10.42 reads it as literal text.
 * Everything is JIT-compiled; match limits are set by the runner's match context.
 */
#include "rules/rules_int.h"

#include <ctype.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PCRE2's table layout: lower-case map, then the flip-case map (pcre2_maketables.c). */
#define LCC_OFFSET 0
#define FCC_OFFSET 256

const uint8_t *tamis__latin1_tables(void)
{
    /* Build in the C locale of this thread only, so a process-wide setlocale() elsewhere can
     * neither change \w nor race with us. */
    locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c == (locale_t)0)
        return NULL;
    locale_t old = uselocale(c);
    const uint8_t *t = pcre2_maketables(NULL);
    uselocale(old);
    freelocale(c);
    if (!t)
        return NULL;
    uint8_t *w = (uint8_t *)t; /* ours until handed to the compile context */
    for (int up = 0xC0; up <= 0xDE; up++) {
        if (up == 0xD7)
            continue;
        int lo = up + 0x20;
        w[LCC_OFFSET + up] = (uint8_t)lo;
        w[FCC_OFFSET + up] = (uint8_t)lo;
        w[FCC_OFFSET + lo] = (uint8_t)up;
    }
    return t;
}

/* ---- delimiters and modifiers ------------------------------------------------------------------
 */

static char closing_of(char open)
{
    switch (open) {
    case '{':
        return '}';
    case '(':
        return ')';
    case '<':
        return '>';
    case '[':
        return ']';
    default:
        return open;
    }
}

static int mods_to_flags(const char *m, size_t n, uint32_t *flags, char *err, size_t errlen)
{
    uint32_t f = 0;
    for (size_t i = 0; i < n; i++) {
        switch (m[i]) {
        case 'i':
            f |= PCRE2_CASELESS;
            break;
        case 'm':
            f |= PCRE2_MULTILINE;
            break;
        case 's':
            f |= PCRE2_DOTALL;
            break;
        case 'x':
            f |= PCRE2_EXTENDED;
            break;
        case 'n':
            f |= PCRE2_NO_AUTO_CAPTURE;
            break;
        case 'a': /* /aa is always on; /u /l /d /p change nothing for byte strings here */
        case 'u':
        case 'l':
        case 'd':
        case 'p':
            break;
        default: /* Perl warns "Useless (?g)" and SA turns warnings into errors */
            tamis_seterr(err, errlen, TAMIS_EPARSE, "invalid modifier '%c'", m[i]);
            return TAMIS_EPARSE;
        }
    }
    *flags = f;
    return 0;
}

/* Is there an unescaped `d` in p[0..n) (after dropping "\\\\" pairs)? */
static bool has_unescaped(const char *p, size_t n, char d)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\') {
            i++;
            continue;
        }
        if (p[i] == d)
            return true;
    }
    return false;
}

/*
 * Splits text (the regex at the start of text, which extends to the end: SA anchors the closing
 * delimiter and modifiers at the end of the string) into pattern and flags. *consumed = whole
 * length. The pattern is arena memory.
 */
int tamis__regex_split(const char *text, size_t *consumed, char **pattern_out, uint32_t *flags_out,
                       tamis_arena_t *a, char *err, size_t errlen)
{
    size_t n = strlen(text);
    const char *p = text;
    char close;
    if (n && p[0] == '/') {
        close = '/';
        p++;
    } else if (n >= 2 && p[0] == 'm' && !isalnum((unsigned char)p[1]) && p[1] != '_' &&
               !isspace((unsigned char)p[1])) {
        if (p[1] == '\\')
            return tamis_seterr(err, errlen, TAMIS_EPARSE, "backslash delimiter not allowed");
        close = closing_of(p[1]);
        p += 2;
    } else if (n >= 3 && strncmp(p, "qr", 2) == 0 && !isalnum((unsigned char)p[2]) &&
               !isspace((unsigned char)p[2]) && p[2] != '\\' && p[2] != '_') {
        close = closing_of(p[2]);
        p += 3;
    } else {
        return tamis_seterr(err, errlen, TAMIS_EPARSE, "missing regexp delimiters");
    }
    /* closing delimiter followed by [a-df-z]* at the very end */
    const char *end = text + n;
    const char *m = end;
    while (m > p && m[-1] >= 'a' && m[-1] <= 'z' && m[-1] != 'e')
        m--;
    /* SA anchors "delimiter + modifiers" at the very end: the delimiter must precede them */
    if (m <= p || m[-1] != close)
        return tamis_seterr(err, errlen, TAMIS_EPARSE, "invalid end delimiter/mods");
    const char *c = m;
    size_t plen = (size_t)(c - 1 - p);
    if (close != '}' && close != ')' && close != ']' && has_unescaped(p, plen, close))
        return tamis_seterr(err, errlen, TAMIS_EPARSE, "unquoted delimiter '%c' found", close);
    if (strstr(text, "(?{") || strstr(text, "(??{"))
        return tamis_seterr(err, errlen, TAMIS_EPARSE, "eval (?{}) found");
    int rc = mods_to_flags(c, (size_t)(end - c), flags_out, err, errlen);
    if (rc)
        return rc;
    *pattern_out = tamis_arena_strndup(a, p, plen);
    if (!*pattern_out)
        return TAMIS_ENOMEM;
    if (consumed)
        *consumed = n;
    return 0;
}

/* ---- compatibility rewriting ------------------------------------------------------------------
 */

/* Perl-to-PCRE2 rewriting: {,n} becomes {0,n}; \x{HHH} above 0xFF, which can never match a byte:
 * outside a class to (?!); inside a class dropped, a range end becomes \xff (the range still covers
 * the bytes below), and a class left empty becomes (?!) (or any byte, when negated). Returns a
 * malloc'ed copy or NULL on allocation failure. */
static char *rewrite_for_pcre2(const char *pat)
{
    tamis_buf_t b;
    tamis_buf_init(&b, TAMIS__MAX_PATTERN * 2);
    bool in_class = false, negated = false;
    size_t class_at = 0, members = 0;
    for (const char *p = pat; *p; p++) {
        if (*p == '\\' && p[1] == 'x' && p[2] == '{') {
            char *e;
            unsigned long v = strtoul(p + 3, &e, 16);
            if (*e == '}' && v > 0xFF) {
                if (!in_class)
                    tamis_buf_puts(&b, "(?!)");
                else if (b.len && b.data[b.len - 1] == '-' && members > 0) {
                    tamis_buf_puts(&b, "\\xff");
                    members++;
                }
                p = e;
                continue;
            }
        }
        if (*p == '\\' && p[1]) {
            tamis_buf_putc(&b, *p++);
            tamis_buf_putc(&b, *p);
            members += in_class;
            continue;
        }
        if (!in_class && *p == '{' && p[1] == ',' && p[2] >= '0' && p[2] <= '9') {
            const char *q = p + 2; /* Perl 5.34+ reads {,n} as {0,n}; PCRE2 10.42 as text */
            while (*q >= '0' && *q <= '9')
                q++;
            if (*q == '}') {
                tamis_buf_puts(&b, "{0");
                continue;
            }
        }
        if (!in_class && *p == '[') {
            in_class = true;
            class_at = b.len;
            members = 0;
            tamis_buf_putc(&b, *p);
            negated = p[1] == '^';
            if (negated)
                tamis_buf_putc(&b, *++p);
            if (p[1] == ']') { /* a ']' right after '[' or '[^' is a literal */
                tamis_buf_putc(&b, *++p);
                members++;
            }
            continue;
        }
        if (in_class && *p == '[' && p[1] == ':') { /* POSIX class inside a class */
            const char *e = strstr(p + 2, ":]");
            if (e) {
                tamis_buf_append(&b, p, (size_t)(e + 2 - p));
                members++;
                p = e + 1;
                continue;
            }
        }
        if (in_class && *p == ']') {
            in_class = false;
            if (members == 0) { /* only wide characters: the class matches no byte */
                b.len = class_at;
                tamis_buf_puts(&b, negated ? "[\\x00-\\xff]" : "(?!)");
                continue;
            }
        } else if (in_class) {
            members++;
        }
        tamis_buf_putc(&b, *p);
    }
    if (b.err) {
        tamis_buf_free(&b);
        return NULL;
    }
    size_t len;
    return tamis_buf_steal(&b, &len);
}

char *tamis__regex_source(const char *pattern)
{
    return strstr(pattern, "\\x{") || strstr(pattern, "{,") ? rewrite_for_pcre2(pattern)
                                                            : strdup(pattern);
}

pcre2_code *tamis__regex_compile(const tamis_ruleset_t *rs, const char *pattern, uint32_t flags,
                                 bool jit, char *err, size_t errlen)
{
    char *pat =
        strstr(pattern, "\\x{") || strstr(pattern, "{,") ? rewrite_for_pcre2(pattern) : NULL;
    const char *src = pat ? pat : pattern;
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, flags, &ec, &eo, rs->cctx);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        tamis_seterr(err, errlen, TAMIS_EPARSE, "%s at offset %zu", (char *)msg, (size_t)eo);
        free(pat);
        return NULL;
    }
    free(pat);
    /* JIT failure (e.g. no executable memory) falls back to the interpreter silently. */
    if (jit)
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}
