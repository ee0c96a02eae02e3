/*
 * tamisc's command line, as spamc's read_args and combine_args: the words of the config file
 * (-F, or /etc/spamassassin/spamc.conf if it exists) go before the real arguments, so the
 * command line wins; option parsing stops at the first word that is not an option; "-e" takes
 * the rest of the line as the command to pipe the output to.
 */
#include "tamisc.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#define TAMISC_CONFIG_FILE "/etc/spamassassin/spamc.conf"

/* option ids for the long-only options */
enum {
    OPT_CONNECT_RETRIES = 256,
    OPT_RETRY_SLEEP,
    OPT_FILTER_RETRIES,
    OPT_FILTER_RETRY_SLEEP,
    OPT_HEADERS,
    OPT_SSL_CERT,
    OPT_SSL_KEY,
    OPT_SSL_CA_FILE,
    OPT_SSL_CA_PATH,
};

typedef struct {
    const char *name;
    int id;
    int arg; /* 0 none, 1 required, 2 optional ("--ssl=...") */
} long_opt_t;

static const long_opt_t LONG_OPTS[] = {
    {"dest", 'd', 1},
    {"randomize", 'H', 0},
    {"port", 'p', 1},
    {"ssl", 'S', 2},
    {"ssl-cert", OPT_SSL_CERT, 1},
    {"ssl-key", OPT_SSL_KEY, 1},
    {"ssl-ca-file", OPT_SSL_CA_FILE, 1},
    {"ssl-ca-path", OPT_SSL_CA_PATH, 1},
    {"socket", 'U', 1},
    {"config", 'F', 1},
    {"timeout", 't', 1},
    {"connect-timeout", 'n', 1},
    {"connect-retries", OPT_CONNECT_RETRIES, 1},
    {"retry-sleep", OPT_RETRY_SLEEP, 1},
    {"filter-retries", OPT_FILTER_RETRIES, 1},
    {"filter-retry-sleep", OPT_FILTER_RETRY_SLEEP, 1},
    {"max-size", 's', 1},
    {"username", 'u', 1},
    {"learntype", 'L', 1},
    {"reporttype", 'C', 1},
    {"bsmtp", 'B', 0},
    {"check", 'c', 0},
    {"tests", 'y', 0},
    {"full-spam", 'r', 0},
    {"full", 'R', 0},
    {"headers", OPT_HEADERS, 0},
    {"exitcode", 'E', 0},
    {"no-safe-fallback", 'x', 0},
    {"unavailable-tempfail", 'X', 0},
    {"log-to-stderr", 'l', 0},
    {"pipe-to", 'e', 1},
    {"help", 'h', 0},
    {"version", 'V', 0},
    {"compress", 'z', 0},
};

/* short options taking an argument */
static const char SHORT_WITH_ARG[] = "dpstuLCUFne";
static const char SHORT_NO_ARG[] = "BcrRfyxXzSHElhVK46";

static void print_version(void)
{
    printf("tamisc version %s (Tamis), compatible with SpamAssassin Client version 4.0.1\n",
           TAMIS_VERSION);
    printf("  compiled with SSL support (%s)\n", OpenSSL_version(OPENSSL_VERSION));
}

static void print_usage(void)
{
    print_version();
    fputs("\nUsage: tamisc [options] [-e command [args]] < message\n\n"
          "Options: as spamc(1):\n"
          "  -d, --dest host[,host2]   -H, --randomize   -p, --port port\n"
          "  -U, --socket path         -F, --config path -t, --timeout timeout\n"
          "  -n, --connect-timeout timeout   --connect-retries n   --retry-sleep s\n"
          "  --filter-retries n   --filter-retry-sleep s   -s, --max-size size\n"
          "  -u, --username user  -L, --learntype spam|ham|forget\n"
          "  -C, --reporttype report|revoke  -B, --bsmtp  -c, --check  -y, --tests\n"
          "  -r, --full-spam  -R, --full  --headers  -E, --exitcode\n"
          "  -x, --no-safe-fallback  -X, --unavailable-tempfail  -l, --log-to-stderr\n"
          "  -e, --pipe-to command [args]  -h, --help  -V, --version  -K  -z  -f  -4  -6\n"
          "  -S, --ssl  use TLS;  --ssl-cert file --ssl-key file  client certificate (PEM);\n"
          "  --ssl-ca-file file, --ssl-ca-path dir  verify the server's certificate chain with\n"
          "  these CAs (as spamc: without them the server is not verified; no name check)\n\n",
          stdout);
}

/* ---- config file ---------------------------------------------------------------------------- */

/* Splits one fgets() chunk as spamc does: on spaces only, newlines dropped. */
static int split_line(char *line, char **out, int *n)
{
    if (line[0] == '#' || line[0] == '\n')
        return 0;
    for (char *save = NULL, *tok = strtok_r(line, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        if (tok[0] == '\n')
            break;
        tok[strcspn(tok, "\n")] = '\0';
        if (*n >= TAMISC_MAX_ARGS)
            return -1;
        if (!(out[(*n)++] = strdup(tok)))
            return -1;
    }
    return 0;
}

static int read_config(const char *path, bool user_defined, char **out, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (user_defined)
            fprintf(stderr, "Failed to open config file: %s\n", path);
        return TAMIS_EX_CONFIG;
    }
    char line[100]; /* spamc reads 99-byte chunks: longer lines are split */
    int rc = TAMIS_EX_OK;
    while (fgets(line, sizeof line, f))
        if (split_line(line, out, n) < 0) {
            rc = TAMIS_EX_USAGE;
            break;
        }
    fclose(f);
    return rc;
}

/* ---- parsing --------------------------------------------------------------------------------- */

typedef struct {
    int argc;
    char **argv;
    int i;
    tamisc_opts_t *o;
} parser_t;

static int usage_error(const char *fmt, int argi, int chr, const char *what)
{
    fprintf(stderr, fmt, argi, chr, what);
    tamisc_log(0, LOG_ERR, "invalid usage");
    print_usage();
    return TAMIS_EX_USAGE;
}

static int set_learn(tamisc_opts_t *o, unsigned flag, const char *v, const char *const *names,
                     int count)
{
    o->flags |= flag;
    for (int k = 0; k < count; k++)
        if (strcmp(v, names[k]) == 0) {
            o->learn_type = k;
            return TAMIS_EX_OK;
        }
    tamisc_log(o->flags, LOG_ERR, "Please specifiy a legal %s type",
               flag == TAMISC_LEARN ? "learn" : "report");
    return TAMIS_EX_USAGE;
}

static int apply_arg(parser_t *p, int id, const char *v)
{
    tamisc_opts_t *o = p->o;
    static const char *const learn[] = {"spam", "ham", "forget"};
    static const char *const report[] = {"report", "revoke"};
    switch (id) {
    case 'd':
        o->hosts = v;
        return 0;
    case 'p':
        o->port = (unsigned short)atoi(v);
        return 0;
    case 's':
        o->max_size = atol(v);
        return 0;
    case 't':
        o->timeout = atoi(v);
        o->timeout_set = true;
        return 0;
    case 'n':
        o->connect_timeout = atoi(v);
        o->connect_timeout_set = true;
        return 0;
    case 'u':
        o->username = v;
        return 0;
    case 'U':
        o->socket_path = v;
        return 0;
    case 'L':
        return set_learn(o, TAMISC_LEARN, v, learn, 3);
    case 'C':
        return set_learn(o, TAMISC_REPORT_MSG, v, report, 2);
    case 'S': /* --ssl=<version>: spamc 4 refuses explicit versions */
        o->flags |= TAMISC_USE_SSL;
        tamisc_log(o->flags, LOG_ERR,
                   "Explicit specification of an SSL/TLS version no longer "
                   "supported.");
        return TAMIS_EX_USAGE;
    case OPT_CONNECT_RETRIES:
        o->connect_retries = atoi(v);
        return 0;
    case OPT_RETRY_SLEEP:
        o->retry_sleep = atoi(v);
        return 0;
    case OPT_FILTER_RETRIES:
        o->filter_retries = atoi(v);
        return 0;
    case OPT_FILTER_RETRY_SLEEP:
        o->filter_retry_sleep = atoi(v);
        return 0;
    case OPT_SSL_CERT:
        o->ssl_cert = v;
        return 0;
    case OPT_SSL_KEY:
        o->ssl_key = v;
        return 0;
    case OPT_SSL_CA_FILE:
        o->ssl_ca_file = v;
        return 0;
    case OPT_SSL_CA_PATH:
        o->ssl_ca_path = v;
        return 0;
    default: /* -F (read before parsing) */
        return 0;
    }
}

static const unsigned FLAG_OF[128] = {
    ['B'] = TAMISC_BSMTP,
    ['c'] = TAMISC_CHECK_ONLY,
    ['r'] = TAMISC_REPORT_IFSPAM,
    ['R'] = TAMISC_REPORT,
    ['y'] = TAMISC_SYMBOLS,
    ['K'] = TAMISC_PING,
    ['l'] = TAMISC_LOG_STDERR,
    ['H'] = TAMISC_RANDOMIZE,
    ['z'] = TAMISC_USE_ZLIB,
    ['S'] = TAMISC_USE_SSL,
    ['4'] = TAMISC_INET4,
    ['6'] = TAMISC_INET6,
    ['X'] = TAMISC_UNAVAIL_TEMPFAIL,
};

/* Options without an argument; returns 0, or an exit code to stop with. */
static int apply_flag(parser_t *p, int id)
{
    tamisc_opts_t *o = p->o;
    switch (id) {
    case 'x':
        o->flags &= ~(unsigned)TAMISC_SAFE_FALLBACK;
        return 0;
    case 'E':
        o->use_exit_code = true;
        return 0;
    case 'f':
        return 0;
    case OPT_HEADERS:
        o->flags |= TAMISC_HEADERS;
        return 0;
    case 'h':
        print_usage();
        return TAMIS_EX_TEMPFAIL;
    case 'V':
        print_version();
        return TAMIS_EX_TEMPFAIL;
    default:
        if (id > 0 && id < 128 && FLAG_OF[id]) {
            o->flags |= FLAG_OF[id];
            return 0;
        }
        return TAMIS_EX_USAGE;
    }
}

/* -e: the command and its arguments are everything from the next word on. */
static int take_exec(parser_t *p, int first)
{
    if (first >= p->argc)
        return usage_error("Error in argument %d, char %d: argument required for option %s\n", p->i,
                           2, "e");
    p->o->exec_argv = p->argv + first;
    p->i = p->argc;
    return 0;
}

static int parse_long(parser_t *p)
{
    const char *name = p->argv[p->i] + 2;
    size_t nlen = strcspn(name, "=");
    const char *eq = name[nlen] == '=' ? name + nlen + 1 : NULL;
    for (size_t k = 0; k < sizeof LONG_OPTS / sizeof LONG_OPTS[0]; k++) {
        const long_opt_t *lo = &LONG_OPTS[k];
        if (strlen(lo->name) != nlen || strncmp(lo->name, name, nlen) != 0)
            continue;
        if (lo->arg == 0 || (lo->arg == 2 && !eq)) {
            p->i++;
            return eq ? usage_error("Error in argument %d, char %d: option %s takes no "
                                    "argument\n",
                                    p->i, 3, lo->name)
                      : apply_flag(p, lo->id);
        }
        if (lo->id == 'e')
            return eq ? usage_error("Error in argument %d, char %d: %s must be last\n", p->i, 3,
                                    lo->name)
                      : take_exec(p, p->i + 1);
        const char *v = eq;
        if (!v) {
            if (p->i + 1 >= p->argc)
                return usage_error("Error in argument %d, char %d: argument required for "
                                   "option %s\n",
                                   p->i, 3, lo->name);
            v = p->argv[++p->i];
        }
        p->i++;
        return apply_arg(p, lo->id, v);
    }
    return usage_error("Error in argument %d, char %d: option not found %s\n", p->i, 3, name);
}

/* One word of short options ("-xE", "-p783", "-p 783"). */
static int parse_short(parser_t *p)
{
    const char *w = p->argv[p->i];
    for (int c = 1; w[c]; c++) {
        char opt = w[c];
        if (strchr(SHORT_WITH_ARG, opt)) {
            if (opt == 'e')
                return w[c + 1] ? usage_error("Error in argument %d, char %d: %s must be last\n",
                                              p->i, c, "-e")
                                : take_exec(p, p->i + 1);
            const char *v = w[c + 1] ? w + c + 1 : NULL;
            if (!v) {
                if (p->i + 1 >= p->argc || p->argv[p->i + 1][0] == '-')
                    return usage_error("Error in argument %d, char %d: argument required for "
                                       "option %s\n",
                                       p->i, c + 1, (char[]){opt, '\0'});
                v = p->argv[++p->i];
            }
            p->i++;
            return apply_arg(p, opt, v);
        }
        if (!strchr(SHORT_NO_ARG, opt))
            return usage_error("Error in argument %d, char %d: option not found %s\n", p->i, c + 1,
                               (char[]){opt, '\0'});
        int rc = apply_flag(p, opt);
        if (rc)
            return rc;
    }
    p->i++;
    return 0;
}

static int check_combination(parser_t *p)
{
    tamisc_opts_t *o = p->o;
    int rc = TAMIS_EX_OK;
    if (o->max_size > (long)TAMISC_MAX_MESSAGE) {
        tamisc_log(o->flags, LOG_ERR, "-s parameter is beyond max of %u", TAMISC_MAX_MESSAGE);
        rc = TAMIS_EX_USAGE;
    }
    if (!o->ssl_cert != !o->ssl_key) {
        tamisc_log(o->flags, LOG_ERR, "--ssl-cert and --ssl-key must be used together");
        rc = TAMIS_EX_USAGE;
    }
    unsigned excl = TAMISC_CHECK_ONLY | TAMISC_PING | TAMISC_REPORT_IFSPAM | TAMISC_REPORT |
                    TAMISC_SYMBOLS | TAMISC_REPORT_MSG;
    if ((o->flags & TAMISC_LEARN) && (o->flags & excl)) {
        tamisc_log(o->flags, LOG_ERR, "Learning excludes the other modes (-c -K -r -R -y -C)");
        rc = TAMIS_EX_USAGE;
    }
    if (o->max_size < 0) /* "--max-size=-1": nothing fits, as with spamc's unsigned size */
        o->max_size = 0;
    if (!o->connect_timeout_set)
        o->connect_timeout = o->timeout_set ? o->timeout : 0;
    return rc;
}

static int parse_words(int argc, char **argv, tamisc_opts_t *o)
{
    parser_t p = {.argc = argc, .argv = argv, .i = 1, .o = o};
    while (p.i < argc) {
        const char *w = argv[p.i];
        if (w[0] != '-' || w[1] == '\0')
            break; /* spamc stops at the first non-option */
        if (strcmp(w, "--") == 0)
            break;
        int rc = w[1] == '-' ? parse_long(&p) : parse_short(&p);
        if (rc)
            return rc;
    }
    return check_combination(&p);
}

static void defaults(tamisc_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->flags = TAMISC_SAFE_FALLBACK;
    o->port = 783;
    o->timeout = 600;
    o->retry_sleep = -1;
    o->filter_retry_sleep = -1;
    o->max_size = 500 * 1024;
}

int tamisc_options(int argc, char **argv, tamisc_opts_t *o)
{
    defaults(o);
    const char *config = NULL;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "-F", 2) == 0) {
            config = argv[i + 1];
            break;
        }
    static char *combo[TAMISC_MAX_ARGS + 1];
    int n = 1;
    combo[0] = argv[0];
    int rc = read_config(config ? config : TAMISC_CONFIG_FILE, config != NULL, combo, &n);
    if (rc == TAMIS_EX_CONFIG && config)
        return rc;
    if (rc == TAMIS_EX_USAGE) {
        tamisc_log(o->flags, LOG_ERR, "too many arguments in %s", config ? config : "config");
        return rc;
    }
    if (rc != TAMIS_EX_OK)
        return parse_words(argc, argv, o);
    if (n - 1 + argc > TAMISC_MAX_ARGS)
        return TAMIS_EX_USAGE;
    for (int i = 1; i < argc; i++)
        combo[n++] = argv[i];
    combo[n] = NULL;
    return parse_words(n, combo, o);
}
