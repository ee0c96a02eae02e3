/*
 * Meta rules (spec-rules §3.6): SpamAssassin lexes the expression with ARITH_EXPRESSION_LEXER,
 * replaces each rule name by its hit value and lets Perl evaluate the rest. We lex the same way,
 * parse with Perl's precedence into a small tree and evaluate it with Perl's semantics:
 * `&&`/`||` return an operand, `!` and comparisons give 1 or 0, `^` is integer XOR, `/` by zero is
 * an error (the meta does not hit). Parsing and evaluation depth are bounded.
 */
#include "rules/rules_int.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    N_NUM,
    N_RULE,
    N_NOT,
    N_NEG,
    N_BIN,
    N_TERN,
    N_CHAIN, /* a left-nested run of one of +, &&, || flattened: kids[0] op kids[1] op ... */
} node_kind_t;

typedef enum {
    OP_MUL,
    OP_DIV,
    OP_ADD,
    OP_SUB,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_EQ,
    OP_NE,
    OP_XOR,
    OP_AND,
    OP_OR,
} op_t;

typedef struct node {
    node_kind_t kind;
    op_t op;
    double num;
    int rule; /* rule index for N_RULE, -1 = undefined rule (value 0) */
    struct node *a, *b, *c;
    struct node **kids; /* N_CHAIN */
    size_t nkids;
} node_t;

struct tamis__meta {
    node_t *root;
};

/* ---- lexer (ARITH_EXPRESSION_LEXER) ------------------------------------------------------------
 */

typedef struct {
    const char *s;
    size_t len;
} tok_t;

static bool is_word(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Next token at *pp; characters the lexer does not match are skipped, as Perl's //g does. */
static bool next_token(const char **pp, tok_t *t)
{
    const char *p = *pp;
    for (; *p; p++) {
        const char *s = p;
        if (*p == '-' || *p == '+' || *p == '.' || isdigit((unsigned char)*p)) {
            while (*p == '-' || *p == '+' || *p == '.' || isdigit((unsigned char)*p))
                p++;
        } else if (is_word(*p)) {
            while (is_word(*p) || *p == ':')
                p++;
        } else if ((p[0] == '|' && p[1] == '|') || (p[0] == '&' && p[1] == '&') ||
                   (p[0] == '=' && p[1] == '=') || (p[0] == '!' && p[1] == '=')) {
            p += 2;
        } else if (*p == '<' || *p == '>') {
            p += p[1] == '=' ? 2 : 1;
        } else if (strchr("()^!*/?:", *p)) {
            p++;
        } else {
            continue;
        }
        t->s = s;
        t->len = (size_t)(p - s);
        *pp = p;
        return true;
    }
    *pp = p;
    return false;
}

/* ---- parser -----------------------------------------------------------------------------------
 */

typedef struct {
    tok_t *toks;
    size_t n, pos;
    tamis_ruleset_t *rs;
    tamis__rule_t *self;
    tamis_arena_t *a;
    int depth;
    const char *error;
    int *deps;
    unsigned *uses;
    size_t ndeps, deps_cap;
} parser_t;

static bool tok_is(const parser_t *p, const char *s)
{
    if (p->pos >= p->n)
        return false;
    const tok_t *t = &p->toks[p->pos];
    return t->len == strlen(s) && memcmp(t->s, s, t->len) == 0;
}

static node_t *mk(parser_t *p, node_kind_t k)
{
    node_t *n = tamis_arena_calloc(p->a, 1, sizeof(*n));
    if (!n)
        p->error = "out of memory";
    else
        n->kind = k;
    return n;
}

static node_t *parse_expr(parser_t *p);

/* Records a dependency once, counting its uses (SA's meta_dependencies list keeps every
 * occurrence, which weighs the auto-learn head/body split). */
static int add_dep(parser_t *p, int idx)
{
    for (size_t i = 0; i < p->ndeps; i++)
        if (p->deps[i] == idx) {
            p->uses[i]++;
            return 0;
        }
    if (p->ndeps == p->deps_cap) {
        size_t nc = p->deps_cap ? p->deps_cap * 2 : 8;
        int *d = realloc(p->deps, nc * sizeof(*d));
        if (!d)
            return TAMIS_ENOMEM;
        p->deps = d;
        unsigned *u = realloc(p->uses, nc * sizeof(*u));
        if (!u)
            return TAMIS_ENOMEM;
        p->uses = u;
        p->deps_cap = nc;
    }
    p->uses[p->ndeps] = 1;
    p->deps[p->ndeps++] = idx;
    return 0;
}

static node_t *parse_rule_name(parser_t *p, const tok_t *t)
{
    char name[TAMIS__MAX_RULE_NAME + 30];
    if (t->len >= sizeof(name) || memchr(t->s, ':', t->len) || isdigit((unsigned char)t->s[0])) {
        p->error = "invalid token";
        return NULL;
    }
    memcpy(name, t->s, t->len);
    name[t->len] = 0;
    node_t *n = mk(p, N_RULE);
    if (!n)
        return NULL;
    if (strcmp(name, "local_tests_only") == 0) { /* SA: ($pms->{main}{local_tests_only}||0) */
        n->rule = (int)p->rs->nrules;            /* the runner's extra value slot */
        return n;
    }
    tamis__rule_t *r = tamis__rule_find(p->rs, name);
    /* only rules with a definition count; a rule that is only scored is undefined here */
    n->rule = r && r->kind != TAMIS__K_NONE ? r->index : -1;
    if (n->rule >= 0 && add_dep(p, n->rule) != 0)
        p->error = "out of memory";
    return n;
}

static node_t *parse_primary(parser_t *p)
{
    if (p->pos >= p->n) {
        p->error = "unexpected end of expression";
        return NULL;
    }
    tok_t t = p->toks[p->pos];
    if (tok_is(p, "(")) {
        p->pos++;
        if (tok_is(p, ")")) { /* "()" evaluates to undef in Perl: 0 */
            p->pos++;
            node_t *n = mk(p, N_NUM);
            return n;
        }
        node_t *e = parse_expr(p);
        if (!e)
            return NULL;
        if (!tok_is(p, ")")) {
            p->error = "missing )";
            return NULL;
        }
        p->pos++;
        return e;
    }
    p->pos++;
    if (isdigit((unsigned char)t.s[0]) || t.s[0] == '.' || t.s[0] == '+' || t.s[0] == '-') {
        /* numbers; a lone + or - here is a unary operator */
        if (t.len == 1 && (t.s[0] == '+' || t.s[0] == '-')) {
            node_t *operand = parse_primary(p);
            if (!operand)
                return NULL;
            if (t.s[0] == '+')
                return operand;
            node_t *n = mk(p, N_NEG);
            if (n)
                n->a = operand;
            return n;
        }
        char buf[64];
        char *end;
        if (t.len >= sizeof(buf)) {
            p->error = "invalid number";
            return NULL;
        }
        memcpy(buf, t.s, t.len);
        buf[t.len] = 0;
        double v = strtod(buf, &end);
        if (*end) {
            p->error = "invalid number";
            return NULL;
        }
        node_t *n = mk(p, N_NUM);
        if (n)
            n->num = v;
        return n;
    }
    if (is_word(t.s[0]))
        return parse_rule_name(p, &t);
    p->error = "unexpected operator";
    return NULL;
}

static node_t *parse_unary(parser_t *p)
{
    if (tok_is(p, "!")) {
        p->pos++;
        if (++p->depth > TAMIS__MAX_EXPR_DEPTH) {
            p->error = "expression too deep";
            return NULL;
        }
        node_t *a = parse_unary(p);
        p->depth--;
        if (!a)
            return NULL;
        node_t *n = mk(p, N_NOT);
        if (n)
            n->a = a;
        return n;
    }
    return parse_primary(p);
}

/* Binary operators by Perl precedence level, tightest first. */
typedef struct {
    const char *tok;
    op_t op;
    int level;
} binop_t;

static const binop_t binops[] = {
    {"*", OP_MUL, 0}, {"/", OP_DIV, 0},  {"+", OP_ADD, 1}, {"-", OP_SUB, 1}, {"<", OP_LT, 2},
    {"<=", OP_LE, 2}, {">", OP_GT, 2},   {">=", OP_GE, 2}, {"==", OP_EQ, 3}, {"!=", OP_NE, 3},
    {"^", OP_XOR, 4}, {"&&", OP_AND, 5}, {"||", OP_OR, 6},
};
#define MAX_LEVEL 6

static const binop_t *peek_binop(parser_t *p)
{
    if (p->pos >= p->n)
        return NULL;
    const tok_t *t = &p->toks[p->pos];
    for (size_t i = 0; i < sizeof(binops) / sizeof(binops[0]); i++)
        if (strlen(binops[i].tok) == t->len && memcmp(binops[i].tok, t->s, t->len) == 0)
            return &binops[i];
    /* "-1" after an operand is "- 1" in Perl */
    if ((t->s[0] == '-' || t->s[0] == '+') && t->len > 1)
        return NULL;
    return NULL;
}

/* Splits a number token like "+1" / "-2" that follows an operand into operator and number, as
 * Perl reads "A -1". */
static void split_signed_number(parser_t *p)
{
    if (p->pos >= p->n)
        return;
    tok_t *t = &p->toks[p->pos];
    if (t->len > 1 && (t->s[0] == '-' || t->s[0] == '+') && p->n < TAMIS__MAX_META_TOKENS) {
        memmove(&p->toks[p->pos + 1], &p->toks[p->pos], (p->n - p->pos) * sizeof(*t));
        p->n++;
        p->toks[p->pos].len = 1;
        p->toks[p->pos + 1].s++;
        p->toks[p->pos + 1].len--;
    }
}

static node_t *parse_level(parser_t *p, int level)
{
    if (level < 0)
        return parse_unary(p);
    if (++p->depth > TAMIS__MAX_EXPR_DEPTH) {
        p->error = "expression too deep";
        return NULL;
    }
    node_t *left = parse_level(p, level - 1);
    while (left) {
        split_signed_number(p);
        const binop_t *op = peek_binop(p);
        if (!op || op->level != level)
            break;
        p->pos++;
        node_t *right = parse_level(p, level - 1);
        if (!right)
            return NULL;
        node_t *n = mk(p, N_BIN);
        if (!n)
            return NULL;
        n->op = op->op;
        n->a = left;
        n->b = right;
        left = n;
    }
    p->depth--;
    return left;
}

static node_t *parse_expr(parser_t *p)
{
    if (++p->depth > TAMIS__MAX_EXPR_DEPTH) {
        p->error = "expression too deep";
        return NULL;
    }
    node_t *c = parse_level(p, MAX_LEVEL);
    if (c && tok_is(p, "?")) { /* ternary, right-associative */
        p->pos++;
        node_t *a = parse_expr(p);
        if (!a || !tok_is(p, ":")) {
            if (!p->error)
                p->error = "missing :";
            return NULL;
        }
        p->pos++;
        node_t *b = parse_expr(p);
        if (!b)
            return NULL;
        node_t *n = mk(p, N_TERN);
        if (!n)
            return NULL;
        n->a = c;
        n->b = a;
        n->c = b;
        c = n;
    }
    p->depth--;
    return c;
}

/* ---- rules_matching() ---------------------------------------------------------------------------
 */

static bool glob_match(const char *g, const char *s)
{
    /* iterative glob with one backtrack point: linear for the patterns used in rules */
    const char *star = NULL, *ss = NULL;
    while (*s) {
        if (*g == '?' || *g == *s) {
            g++;
            s++;
        } else if (*g == '*') {
            star = g++;
            ss = s;
        } else if (star) {
            g = star + 1;
            s = ++ss;
        } else {
            return false;
        }
    }
    while (*g == '*')
        g++;
    return *g == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Expands rules_matching(GLOB) to "(A+B+…)" over rule names that have a score or a definition
 * (SA uses the scores table, which holds every rule after finish), itself excluded. */
static int expand_rules_matching(tamis_ruleset_t *rs, const char *self, const char *text,
                                 tamis_buf_t *out)
{
    const char *p = text;
    while (*p) {
        const char *m = strstr(p, "rules_matching(");
        if (!m || (m > text && (is_word(m[-1])))) {
            if (!m) {
                tamis_buf_puts(out, p);
                break;
            }
            tamis_buf_append(out, p, (size_t)(m + 1 - p));
            p = m + 1;
            continue;
        }
        tamis_buf_append(out, p, (size_t)(m - p));
        const char *g = m + 15;
        while (isspace((unsigned char)*g))
            g++;
        const char *ge = g;
        while (is_word(*ge) || *ge == '*' || *ge == '?')
            ge++;
        const char *close = ge;
        while (isspace((unsigned char)*close))
            close++;
        if (*close != ')' || ge == g || ge - g > 128) {
            tamis_buf_append(out, m, 15);
            p = m + 15;
            continue;
        }
        char glob[130];
        memcpy(glob, g, (size_t)(ge - g));
        glob[ge - g] = 0;
        const char **names = malloc(rs->nrules * sizeof(*names) + 1);
        if (!names)
            return TAMIS_ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < rs->nrules; i++) {
            tamis__rule_t *r = rs->rules[i];
            if ((r->kind != TAMIS__K_NONE || r->scored) && strcmp(r->name, self) != 0 &&
                glob_match(glob, r->name))
                names[n++] = r->name;
        }
        qsort(names, n, sizeof(*names), cmp_str);
        tamis_buf_puts(out, " (");
        for (size_t i = 0; i < n; i++)
            tamis_buf_printf(out, "%s%s", i ? "+" : "", names[i]);
        if (!n)
            tamis_buf_putc(out, '0');
        tamis_buf_puts(out, ") ");
        free(names);
        p = close + 1;
    }
    return out->err;
}

/* ---- compile ----------------------------------------------------------------------------------
 */

static int lex_all(const char *text, tok_t **out, size_t *n)
{
    size_t cap = 64, cnt = 0;
    tok_t *toks = malloc(cap * sizeof(*toks));
    if (!toks)
        return TAMIS_ENOMEM;
    const char *p = text;
    tok_t t;
    while (next_token(&p, &t)) {
        if (cnt + 1 >= TAMIS__MAX_META_TOKENS) {
            free(toks);
            return TAMIS_ELIMIT;
        }
        if (cnt + 2 >= cap) { /* room for split_signed_number */
            cap *= 2;
            tok_t *nt = realloc(toks, cap * sizeof(*toks));
            if (!nt) {
                free(toks);
                return TAMIS_ENOMEM;
            }
            toks = nt;
        }
        toks[cnt++] = t;
    }
    *out = toks;
    *n = cnt;
    return 0;
}

/* Metas are mostly long runs of "A + B + C ..." or "A && B && ...": as a loop over the operands
 * they evaluate without one recursive call per operator. Left to right, as the tree would. */
static bool chainable(const node_t *n)
{
    return n->kind == N_BIN && (n->op == OP_ADD || n->op == OP_AND || n->op == OP_OR);
}

static node_t *flatten(tamis_arena_t *a, node_t *n)
{
    if (!n)
        return NULL;
    if (!chainable(n)) {
        n->a = flatten(a, n->a);
        n->b = flatten(a, n->b);
        n->c = flatten(a, n->c);
        return n;
    }
    size_t k = 1;
    for (const node_t *x = n; chainable(x) && x->op == n->op; x = x->a)
        k++;
    node_t **kids = tamis_arena_alloc(a, k * sizeof(*kids));
    if (!kids)
        return n; /* the tree still evaluates, only slower */
    size_t i = k;
    node_t *x = n;
    for (; chainable(x) && x->op == n->op; x = x->a)
        kids[--i] = x->b;
    kids[0] = x;
    for (i = 0; i < k; i++)
        kids[i] = flatten(a, kids[i]);
    n->kind = N_CHAIN;
    n->kids = kids;
    n->nkids = k;
    return n;
}

int tamis__meta_compile(tamis_ruleset_t *rs, tamis__rule_t *r, char *err, size_t errlen)
{
    const char *def = r->def;
    /* SA refuses these outright: Perl code, not an expression */
    if (strstr(def, "::") || strstr(def, "->") || strpbrk(def, "$@%;{}"))
        return tamis_seterr(err, errlen, TAMIS_EPARSE, "invalid meta rule: %s", def);
    tamis_buf_t b;
    tamis_buf_init(&b, 4u << 20);
    int rc = expand_rules_matching(rs, r->name, def, &b);
    tok_t *toks = NULL;
    size_t n = 0;
    if (!rc)
        rc = lex_all(b.data ? b.data : "", &toks, &n);
    if (rc) {
        tamis_buf_free(&b);
        return rc == TAMIS_ENOMEM ? rc : tamis_seterr(err, errlen, rc, "meta too long");
    }
    /* token capacity must allow split_signed_number to insert */
    tok_t *big = realloc(toks, (2 * n + 2) * sizeof(*toks));
    if (!big) {
        free(toks);
        tamis_buf_free(&b);
        return TAMIS_ENOMEM;
    }
    toks = big;
    parser_t p = {.toks = toks, .n = n, .rs = rs, .self = r, .a = rs->arena};
    node_t *root = n ? parse_expr(&p) : mk(&p, N_NUM); /* empty meta is 0 */
    if (root && p.pos != p.n)
        p.error = "trailing tokens";
    if (!root || p.error) {
        rc = tamis_seterr(err, errlen, TAMIS_EPARSE, "invalid expression for rule %s: %s", r->name,
                          p.error ? p.error : "?");
        free(p.deps);
        free(p.uses);
    } else {
        r->meta = tamis_arena_calloc(rs->arena, 1, sizeof(*r->meta));
        int *deps = p.ndeps ? tamis_arena_alloc(rs->arena, p.ndeps * sizeof(int)) : NULL;
        unsigned *uses = p.ndeps ? tamis_arena_alloc(rs->arena, p.ndeps * sizeof(unsigned)) : NULL;
        if (!r->meta || (p.ndeps && (!deps || !uses))) {
            rc = TAMIS_ENOMEM;
        } else {
            r->meta->root = flatten(rs->arena, root);
            if (p.ndeps) {
                memcpy(deps, p.deps, p.ndeps * sizeof(int));
                memcpy(uses, p.uses, p.ndeps * sizeof(unsigned));
            }
            r->deps = deps;
            r->dep_uses = uses;
            r->ndeps = p.ndeps;
        }
        free(p.deps);
        free(p.uses);
    }
    free(toks);
    tamis_buf_free(&b);
    return rc;
}

/* ---- evaluation -------------------------------------------------------------------------------
 */

static double eval_node(const node_t *n, const double *v, bool *error);

static double operand(const node_t *n, const double *v, bool *error)
{
    if (n->kind == N_RULE)
        return n->rule >= 0 ? v[n->rule] : 0;
    return eval_node(n, v, error);
}

/* Perl's a + b + c, or a && b && c (the first false operand, else the last), or a || b || c
 * (the first true one, else the last). */
static double eval_chain(const node_t *n, const double *v, bool *error)
{
    double x = operand(n->kids[0], v, error);
    for (size_t i = 1; i < n->nkids; i++) {
        if (n->op == OP_ADD)
            x += operand(n->kids[i], v, error);
        else if ((n->op == OP_AND) == (x != 0))
            x = operand(n->kids[i], v, error);
        else
            break;
    }
    return x;
}

static double eval_node(const node_t *n, const double *v, bool *error)
{
    double a, b;
    switch (n->kind) {
    case N_NUM:
        return n->num;
    case N_RULE:
        return n->rule >= 0 ? v[n->rule] : 0;
    case N_NOT:
        return eval_node(n->a, v, error) != 0 ? 0 : 1;
    case N_NEG:
        return -eval_node(n->a, v, error);
    case N_TERN:
        return eval_node(n->a, v, error) != 0 ? eval_node(n->b, v, error)
                                              : eval_node(n->c, v, error);
    case N_CHAIN:
        return eval_chain(n, v, error);
    case N_BIN:
        break;
    }
    a = eval_node(n->a, v, error);
    if (n->op == OP_AND)
        return a != 0 ? eval_node(n->b, v, error) : a;
    if (n->op == OP_OR)
        return a != 0 ? a : eval_node(n->b, v, error);
    b = eval_node(n->b, v, error);
    switch (n->op) {
    case OP_MUL:
        return a * b;
    case OP_DIV:
        if (b == 0) {
            *error = true;
            return 0;
        }
        return a / b;
    case OP_ADD:
        return a + b;
    case OP_SUB:
        return a - b;
    case OP_LT:
        return a < b;
    case OP_LE:
        return a <= b;
    case OP_GT:
        return a > b;
    case OP_GE:
        return a >= b;
    case OP_EQ:
        return a == b;
    case OP_NE:
        return a != b;
    case OP_XOR: /* Perl's ^ on numbers: unsigned integer XOR */
        return (double)((unsigned long long)(long long)a ^ (unsigned long long)(long long)b);
    default:
        return 0;
    }
}

double tamis__meta_eval(const tamis__meta_t *m, const double *values, bool *error)
{
    bool e = false;
    double r = m && m->root ? eval_node(m->root, values, &e) : 0;
    if (error)
        *error = e;
    return e || isnan(r) ? 0 : r;
}
