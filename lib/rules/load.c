/*
 * The .cf loader (spec-rules §1): files and folders in SpamAssassin's order, line syntax, the
 * preprocessor (if/ifplugin/else/endif, include, require_version, lang, loadplugin) and the
 * dispatch of each directive to the rule parser (parse.c) or the settings table (lib/conf).
 *
 * Load order (Mail::SpamAssassin::init): site dir *.pre, default dir *.pre then *.cf, site dir
 * *.cf, then the explicit paths, then the extra lines. Each file has its own if-stack; a block
 * left open at the end of a file is closed with a warning, as SpamAssassin does.
 */
#include "rules/rules_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define SA_VERSION 4.000001 /* what `version` answers in if-expressions */
#define PERL_VERSION 5.036000

typedef struct {
    bool skip;     /* skip state to restore at endif */
    unsigned line; /* where the block started */
} if_frame_t;

typedef struct {
    tamis_ruleset_t *rs;
    tamis_diag_t *diag;
    char lang[64];
    int depth; /* include depth */
    int fatal; /* first fatal error code (allocation) */
} loader_t;

typedef struct {
    if_frame_t stack[TAMIS__MAX_IF_DEPTH];
    int n;
    bool skip;
} ifstate_t;

static int load_file(loader_t *L, const char *path, bool must_exist);

/* ---- locale for `lang` ------------------------------------------------------------------------
 */

static void pick_lang(loader_t *L, const char *locale)
{
    const char *l = locale;
    char buf[64] = "";
    if (!l) {
        const char *language = getenv("LANGUAGE");
        if (language && *language) {
            size_t n = strcspn(language, ":");
            snprintf(buf, sizeof(buf), "%.*s", (int)(n < 60 ? n : 60), language);
            l = buf;
        }
        if (!l || !*l)
            l = getenv("LC_ALL");
        if (!l || !*l)
            l = getenv("LC_MESSAGES");
        if (!l || !*l)
            l = getenv("LANG");
        if (!l || !*l)
            l = "C";
    }
    if (strcmp(l, "C") == 0 || strcmp(l, "POSIX") == 0)
        l = "en_US";
    snprintf(L->lang, sizeof(L->lang), "%s", l);
    L->lang[strcspn(L->lang, "@.+,")] = 0; /* strip codeset and modifiers */
}

/* ---- if-expressions ------------------------------------------------------------------------- */

typedef struct {
    const char *p;
    loader_t *L;
    int depth;
    bool bad;
} cond_t;

static void cskip(cond_t *c)
{
    while (isspace((unsigned char)*c->p))
        c->p++;
}

static bool cis(cond_t *c, const char *op)
{
    cskip(c);
    size_t n = strlen(op);
    if (strncmp(c->p, op, n) != 0)
        return false;
    /* do not take "<" out of "<=", nor "!" out of "!=" */
    if ((n == 1 && (op[0] == '<' || op[0] == '>' || op[0] == '!') && c->p[1] == '=') ||
        (n == 1 && op[0] == '=' && c->p[1] == '='))
        return false;
    c->p += n;
    return true;
}

static double cexpr(cond_t *c);

/* plugin(X) / can(X) / has(X): the argument is a class or function name */
static double cfunc(cond_t *c, const char *fn)
{
    if (!cis(c, "(")) {
        c->bad = true;
        return 0;
    }
    cskip(c);
    const char *s = c->p;
    while (isalnum((unsigned char)*c->p) || *c->p == '_' || *c->p == ':')
        c->p++;
    char name[256];
    size_t n = (size_t)(c->p - s);
    if (n == 0 || n >= sizeof(name) || !cis(c, ")")) {
        c->bad = true;
        return 0;
    }
    memcpy(name, s, n);
    name[n] = 0;
    if (strcmp(name, "Mail::SpamAssassin::Plugin::Dmarc") == 0)
        snprintf(name, sizeof(name), "Mail::SpamAssassin::Plugin::DMARC");
    if (strcmp(name, "Mail::SpamAssassin::Plugin::WhiteListSubject") == 0)
        snprintf(name, sizeof(name), "Mail::SpamAssassin::Plugin::WelcomeListSubject");
    if (strcmp(fn, "plugin") == 0)
        return tamis__plugin_loaded(c->L->rs, name);
    return tamis__can(c->L->rs, name, strcmp(fn, "has") == 0);
}

static double cprimary(cond_t *c)
{
    cskip(c);
    if (++c->depth > TAMIS__MAX_EXPR_DEPTH) {
        c->bad = true;
        return 0;
    }
    double v = 0;
    if (cis(c, "(")) {
        v = cexpr(c);
        if (!cis(c, ")"))
            c->bad = true;
    } else if (cis(c, "!")) {
        v = cprimary(c) == 0;
    } else if (cis(c, "-")) {
        v = -cprimary(c);
    } else if (isdigit((unsigned char)*c->p) || *c->p == '.') {
        char *end;
        v = strtod(c->p, &end);
        c->p = end;
    } else if (isalpha((unsigned char)*c->p) || *c->p == '_') {
        const char *s = c->p;
        while (isalnum((unsigned char)*c->p) || *c->p == '_')
            c->p++;
        size_t n = (size_t)(c->p - s);
        if (n == 7 && strncmp(s, "version", 7) == 0)
            v = SA_VERSION;
        else if (n == 12 && strncmp(s, "perl_version", 12) == 0)
            v = PERL_VERSION;
        else if (n == 16 && strncmp(s, "local_tests_only", 16) == 0)
            v = 0;
        else if ((n == 6 && strncmp(s, "plugin", 6) == 0) ||
                 (n == 3 && strncmp(s, "can", 3) == 0) || (n == 3 && strncmp(s, "has", 3) == 0)) {
            char fn[8];
            snprintf(fn, sizeof(fn), "%.*s", (int)n, s);
            v = cfunc(c, fn);
        } else
            c->bad = true;
    } else {
        c->bad = true;
    }
    c->depth--;
    return v;
}

static double cmul(cond_t *c)
{
    double v = cprimary(c);
    for (;;) {
        if (cis(c, "*"))
            v *= cprimary(c);
        else if (cis(c, "/")) {
            double d = cprimary(c);
            if (d == 0) {
                c->bad = true;
                return 0;
            }
            v /= d;
        } else
            return v;
    }
}

static double cadd(cond_t *c)
{
    double v = cmul(c);
    for (;;) {
        if (cis(c, "+"))
            v += cmul(c);
        else if (cis(c, "-"))
            v -= cmul(c);
        else
            return v;
    }
}

static double crel(cond_t *c)
{
    double v = cadd(c);
    for (;;) {
        if (cis(c, "<="))
            v = v <= cadd(c);
        else if (cis(c, ">="))
            v = v >= cadd(c);
        else if (cis(c, "<"))
            v = v < cadd(c);
        else if (cis(c, ">"))
            v = v > cadd(c);
        else if (cis(c, "=="))
            v = v == cadd(c);
        else if (cis(c, "!="))
            v = v != cadd(c);
        else
            return v;
    }
}

static double cand(cond_t *c)
{
    double v = crel(c);
    while (cis(c, "&&")) {
        double w = crel(c);
        v = v != 0 ? w : v;
    }
    return v;
}

static double cexpr(cond_t *c)
{
    double v = cand(c);
    while (cis(c, "||")) {
        double w = cand(c);
        v = v != 0 ? v : w;
    }
    return v;
}

/* Evaluates an if-expression; a malformed one is false with a warning (SA skips the block). */
static bool cond_eval(loader_t *L, const char *expr, const char *file, unsigned line)
{
    cond_t c = {.p = expr, .L = L};
    double v = cexpr(&c);
    cskip(&c);
    if (c.bad || *c.p) {
        tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, line, "unparseable condition: %s", expr);
        return false;
    }
    return v != 0;
}

/* ---- directives -------------------------------------------------------------------------------
 */

static int add_plugin(loader_t *L, const char *value, bool try, const char *file, unsigned line)
{
    tamis_ruleset_t *rs = L->rs;
    char name[256];
    size_t n = strcspn(value, " \t");
    if (n == 0 || n >= sizeof(name))
        return 0;
    memcpy(name, value, n);
    name[n] = 0;
    for (size_t i = 0; i < rs->nplugins; i++)
        if (strcmp(rs->plugins[i], name) == 0)
            return 0;
    char **a = realloc(rs->plugins, (rs->nplugins + 1) * sizeof(*a));
    if (!a)
        return TAMIS_ENOMEM;
    rs->plugins = a;
    if (!(a[rs->nplugins] = tamis_arena_strdup(rs->arena, name)))
        return TAMIS_ENOMEM;
    rs->nplugins++;
    if (!tamis__plugin_claimed(name))
        tamis_diag_add(L->diag, try ? TAMIS_DIAG_INFO : TAMIS_DIAG_WARN, file, line,
                       "plugin %s is not supported by Tamis; its rules are skipped", name);
    return 0;
}

static int do_include(loader_t *L, const char *value, const char *file, unsigned line)
{
    char path[4096];
    if (value[0] == '/' || !strchr(file, '/')) {
        snprintf(path, sizeof(path), "%s", value);
    } else {
        const char *slash = strrchr(file, '/');
        snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - file), file, value);
    }
    if (L->depth >= TAMIS__MAX_INCLUDE_DEPTH) {
        tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, line, "include nested too deep: %s", path);
        return 0;
    }
    L->depth++;
    int rc = load_file(L, path, false);
    L->depth--;
    return rc;
}

/* Handles if/ifplugin/else/endif. Returns true when the line was one of them. */
static bool preprocess(loader_t *L, ifstate_t *st, const char *key, const char *value,
                       const char *file, unsigned line)
{
    if (strcmp(key, "if") == 0 || strcmp(key, "ifplugin") == 0) {
        if (st->n >= TAMIS__MAX_IF_DEPTH) {
            tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, line, "if nested too deep");
            st->skip = true; /* refuse the rest of the nest rather than misparse it */
            return true;
        }
        st->stack[st->n].skip = st->skip;
        st->stack[st->n++].line = line;
        if (!st->skip) {
            bool ok;
            if (key[2] == 'p') {
                char name[256];
                snprintf(name, sizeof(name), "%s", value);
                if (strcmp(name, "Mail::SpamAssassin::Plugin::Dmarc") == 0)
                    snprintf(name, sizeof(name), "Mail::SpamAssassin::Plugin::DMARC");
                ok = tamis__plugin_loaded(L->rs, name);
            } else {
                ok = cond_eval(L, value, file, line);
            }
            st->skip = !ok;
        }
        return true;
    }
    if (strcmp(key, "else") == 0) {
        if (st->n == 0) {
            tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, line, "'else' missing starting if");
            return true;
        }
        bool outer = false;
        for (int i = 0; i < st->n; i++)
            outer |= st->stack[i].skip;
        st->skip = outer ? true : !st->skip;
        return true;
    }
    if (strcmp(key, "endif") == 0) {
        if (st->n == 0) {
            tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, line,
                           "missing starting 'if' for 'endif'");
            return true;
        }
        st->skip = st->stack[--st->n].skip;
        return true;
    }
    return false;
}

/* One directive that is not a preprocessor line. */
static int directive(loader_t *L, ifstate_t *st, const char *key, const char *value,
                     const char *file, unsigned line)
{
    if (strcmp(key, "require_version") == 0) {
        if (strcmp(value, "@@VERSION@@") != 0 && strtod(value, NULL) != SA_VERSION) {
            tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, line,
                           "file requires version %s; skipping the rest of it", value);
            st->skip = true;
        }
        return 0;
    }
    if (strcmp(key, "loadplugin") == 0 || strcmp(key, "tryplugin") == 0)
        return add_plugin(L, value, key[0] == 't', file, line);
    if (strcmp(key, "include") == 0)
        return do_include(L, value, file, line);
    int rc = tamis__parse_rule_directive(L->rs, key, value, file, line, L->diag);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    rc = tamis_conf_apply(L->rs->conf, key, value, file, line, L->diag);
    if (rc < 0)
        return rc;
    if (rc == TAMIS_CONF_UNKNOWN)
        tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, line, "unknown directive: %s", key);
    return 0;
}

/* Strips comments (an unescaped '#'), unescapes "\#", trims. In place. */
static char *clean_line(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '#' && (r == s || r[-1] != '\\'))
            break;
        if (*r == '\\' && r[1] == '#')
            continue; /* the '#' is copied on the next round */
        *w++ = *r;
    }
    *w = 0;
    while (w > s && isspace((unsigned char)w[-1]))
        *--w = 0;
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

/* `lang xx rest`: returns rest when the locale starts with xx, NULL to skip, line otherwise. */
static char *apply_lang(loader_t *L, char *line)
{
    if (strncmp(line, "lang", 4) != 0 || !isspace((unsigned char)line[4]))
        return line;
    char *p = line + 4;
    while (isspace((unsigned char)*p))
        p++;
    char *code = p;
    while (*p && !isspace((unsigned char)*p))
        p++;
    if (!*p)
        return line;
    size_t cl = (size_t)(p - code);
    while (isspace((unsigned char)*p))
        p++;
    if (strlen(L->lang) < cl || strncasecmp(L->lang, code, cl) != 0)
        return NULL;
    return p;
}

/* Conf::Parser: a line that is exactly "# UPDATE version N" names the sa-update version of its
 * file (X-Spam-Checker-Version's _RULESVERSION_); the last such line of a file wins. */
static int update_version(loader_t *L, const char *raw, const char *file)
{
    static const char mark[] = "# UPDATE version ";
    if (strncmp(raw, mark, sizeof(mark) - 1) != 0)
        return 0;
    const char *n = raw + sizeof(mark) - 1;
    size_t len = strspn(n, "0123456789");
    if (!len || n[len] || strcmp(file, "<cmdline>") == 0)
        return 0;
    return tamis__kv_set(L->rs, &L->rs->update_versions, &L->rs->nupdate_versions, file, n);
}

static int process_line(loader_t *L, ifstate_t *st, char *raw, const char *file, unsigned line)
{
    int rc = update_version(L, raw, file);
    if (rc < 0)
        return rc;
    char *s = clean_line(raw);
    if (!*s)
        return 0;
    s = apply_lang(L, s);
    if (!s || !*s)
        return 0;
    char *v = s;
    while (*v && !isspace((unsigned char)*v))
        v++;
    if (*v) {
        *v++ = 0;
        while (isspace((unsigned char)*v))
            v++;
    }
    for (char *k = s; *k; k++)
        *k = *k == '-' ? '_' : (char)tolower((unsigned char)*k);
    if (preprocess(L, st, s, v, file, line) || st->skip)
        return 0;
    return directive(L, st, s, v, file, line);
}

/* Runs every line of text (modified in place) as the content of file. */
static int load_text(loader_t *L, const char *file, char *text)
{
    ifstate_t st = {.n = 0, .skip = false};
    unsigned lineno = 0;
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        lineno++;
        size_t len = strlen(p);
        if (len > 0 && p[len - 1] == '\r')
            p[len - 1] = 0;
        if (len > TAMIS__MAX_LINE)
            tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, lineno, "line too long, ignored");
        else {
            int rc = process_line(L, &st, p, file, lineno);
            if (rc < 0)
                return rc;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    for (int i = 0; i < st.n; i++)
        tamis_diag_add(L->diag, TAMIS_DIAG_WARN, file, st.stack[i].line, "unclosed 'if' in %s",
                       file);
    return 0;
}

static int load_file(loader_t *L, const char *path, bool must_exist)
{
    char *text = NULL;
    size_t len;
    char err[256];
    struct stat sb;
    /* only regular files: an include of /dev/zero or a FIFO must not hang the loader */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        tamis_diag_add(L->diag, must_exist ? TAMIS_DIAG_ERROR : TAMIS_DIAG_WARN, path, 0,
                       "not a regular file");
        return must_exist ? TAMIS_EIO : 0;
    }
    int rc = tamis_read_file(path, TAMIS__MAX_FILE, &text, &len, err, sizeof(err));
    if (rc) {
        tamis_diag_add(L->diag, must_exist ? TAMIS_DIAG_ERROR : TAMIS_DIAG_WARN, path, 0,
                       "cannot read: %s", err);
        return must_exist ? TAMIS_EIO : 0;
    }
    /* file names are kept for diagnostics and rule origins for the set's lifetime */
    const char *name = tamis_arena_strdup(L->rs->arena, path);
    rc = name ? load_text(L, name, text) : TAMIS_ENOMEM;
    free(text);
    return rc;
}

/* ---- folders ----------------------------------------------------------------------------------
 */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads dir's files ending in ext, byte-order sorted. A missing dir is not an error. */
static int load_dir_ext(loader_t *L, const char *dir, const char *ext)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    size_t el = strlen(ext);
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl <= el || strcmp(e->d_name + nl - el, ext) != 0 || e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **a = realloc(names, cap * sizeof(*a));
            if (!a) {
                rc = TAMIS_ENOMEM;
                break;
            }
            names = a;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = TAMIS_ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (!rc && n)
        qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n; i++) {
        if (!rc) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
            struct stat sb;
            if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
                rc = load_file(L, path, false);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int load_path(loader_t *L, const char *path, bool optional)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        tamis_diag_add(L->diag, optional ? TAMIS_DIAG_WARN : TAMIS_DIAG_ERROR, path, 0,
                       "cannot open: %s", strerror(errno));
        return optional ? 0 : TAMIS_EIO;
    }
    if (S_ISDIR(sb.st_mode)) {
        int rc = load_dir_ext(L, path, ".pre");
        return rc ? rc : load_dir_ext(L, path, ".cf");
    }
    return load_file(L, path, !optional);
}

static int load_sources(loader_t *L, const tamis_rules_source_t *src)
{
    int rc = 0;
    if (src->site_rules_dir)
        rc = load_dir_ext(L, src->site_rules_dir, ".pre");
    if (!rc && src->default_rules_dir)
        rc = load_dir_ext(L, src->default_rules_dir, ".pre");
    if (!rc && src->default_rules_dir)
        rc = load_dir_ext(L, src->default_rules_dir, ".cf");
    if (!rc && src->site_rules_dir)
        rc = load_dir_ext(L, src->site_rules_dir, ".cf");
    for (size_t i = 0; !rc && i < src->path_count; i++)
        rc = load_path(L, src->paths[i], src->paths_optional);
    if (!rc && src->extra_line_count) {
        tamis_buf_t b;
        tamis_buf_init(&b, TAMIS__MAX_FILE);
        for (size_t i = 0; i < src->extra_line_count; i++)
            tamis_buf_printf(&b, "%s\n", src->extra_lines[i] ? src->extra_lines[i] : "");
        rc = b.err ? b.err : load_text(L, "<cmdline>", b.data ? b.data : (char[]){0});
        tamis_buf_free(&b);
    }
    return rc;
}

static int cmp_kv_name(const void *a, const void *b)
{
    return strcmp(((const tamis__kv_t *)a)->name, ((const tamis__kv_t *)b)->name);
}

/* _RULESVERSION_: the update versions in file-name order, joined with ",". */
static int join_update_versions(tamis_ruleset_t *rs)
{
    if (rs->nupdate_versions > 1)
        qsort(rs->update_versions, rs->nupdate_versions, sizeof(*rs->update_versions), cmp_kv_name);
    tamis_buf_t b;
    tamis_buf_init(&b, 1 << 16);
    for (size_t i = 0; i < rs->nupdate_versions; i++) {
        if (i)
            tamis_buf_putc(&b, ',');
        tamis_buf_puts(&b, rs->update_versions[i].value);
    }
    rs->rules_version = b.err ? NULL : tamis_arena_strdup(rs->arena, b.data ? b.data : "");
    tamis_buf_free(&b);
    return rs->rules_version ? 0 : TAMIS_ENOMEM;
}

/* redirector_pattern lines for lib/msg; one that PCRE refuses is left out with a warning. */
static int compile_redirectors(tamis_ruleset_t *rs, tamis_diag_t *diag)
{
    if (!rs->nredirector_src)
        return 0;
    const char **v = calloc(rs->nredirector_src, sizeof(*v));
    if (!v)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < rs->nredirector_src; i++)
        v[i] = rs->redirector_src[i].name;
    char err[512];
    int rc = tamis_msg_redirectors_new(v, rs->nredirector_src, &rs->redirectors, err, sizeof err);
    free(v);
    if (!rc && err[0])
        tamis_diag_add(diag, TAMIS_DIAG_WARN, NULL, 0, "%s", err);
    return rc;
}

int tamis_rules_load(const tamis_rules_source_t *src, tamis_ruleset_t **out, tamis_diag_t *diag,
                     char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!src || !out)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "no source");
    double t0 = tamis_now_ms();
    tamis_ruleset_t *rs = tamis__ruleset_new();
    if (!rs)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "out of memory");
    tamis_diag_t *own = diag ? NULL : tamis_diag_new();
    loader_t L = {.rs = rs, .diag = diag ? diag : own};
    pick_lang(&L, src->locale);
    size_t errors_before = tamis_diag_count_level(L.diag, TAMIS_DIAG_ERROR);
    int rc = load_sources(&L, src);
    if (!rc)
        rc = join_update_versions(rs);
    if (!rc)
        rc = compile_redirectors(rs, L.diag);
    if (!rc)
        rc = tamis__finish(rs, L.diag);
    if (!rc)
        rc = tamis__freemail_index(rs);
    if (!rc)
        rc = tamis__net_index(rs);
    if (!rc)
        rc = tamis__pf_build(rs, src->cache_dir, L.diag);
    if (rc) {
        /* report the first error with its file:line when there is one */
        const tamis_diag_entry_t *first = NULL;
        for (size_t i = 0; i < tamis_diag_count(L.diag) && !first; i++) {
            const tamis_diag_entry_t *e = tamis_diag_at(L.diag, i);
            if (e->level == TAMIS_DIAG_ERROR && i >= errors_before)
                first = e;
        }
        if (first)
            tamis_seterr(err, errlen, rc, "%s:%u: %s", first->file ? first->file : "?", first->line,
                         first->text);
        else
            tamis_seterr(err, errlen, rc, "%s", tamis_strerror(rc));
        tamis_rules_unref(rs);
        tamis_diag_free(own);
        return rc;
    }
    rs->load_ms = tamis_now_ms() - t0;
    tamis_diag_free(own);
    *out = rs;
    return 0;
}
