/*
 * tamisd's command line: spamd's option names and defaults where they exist, plus --lint,
 * --test, --cf and --max-size.
 */
#include "tamisd.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_SOCKETPATH = 256,
    OPT_SITECONFIG,
    OPT_CF,
    OPT_TIMEOUT_TCP,
    OPT_TIMEOUT_CHILD,
    OPT_MAX_SIZE,
    OPT_LINT,
    OPT_TEST,
    OPT_IGNORED_ARG, /* spamd options that mean nothing for a threaded server */
    OPT_IGNORED,
    OPT_MILTER,
    OPT_SMTP_LISTEN,
    OPT_SMTP_RELAY,
    OPT_SMTP_HELO,
    OPT_REJECT_SCORE,
    OPT_QUARANTINE_SCORE,
    OPT_NO_ADD_HEADERS,
    OPT_TIMEOUT_MTA,
    OPT_BAYES_PATH,
    OPT_STATE_DIR,
    OPT_SSL, /* the TLS options (tls_opt) */
    OPT_SSL_VERIFY,
    OPT_SSL_CA_FILE,
    OPT_SSL_CA_PATH,
    OPT_SSL_PORT,
    OPT_SERVER_CERT,
    OPT_SERVER_KEY,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, 'i'},
    {"listen-ip", required_argument, NULL, 'i'},
    {"port", required_argument, NULL, 'p'},
    {"allowed-ips", required_argument, NULL, 'A'},
    {"socketpath", required_argument, NULL, OPT_SOCKETPATH},
    {"max-children", required_argument, NULL, 'm'},
    {"daemonize", no_argument, NULL, 'd'},
    {"pidfile", required_argument, NULL, 'r'},
    {"username", required_argument, NULL, 'u'},
    {"configpath", required_argument, NULL, 'C'},
    {"siteconfigpath", required_argument, NULL, OPT_SITECONFIG},
    {"cf", required_argument, NULL, OPT_CF},
    {"local", no_argument, NULL, 'L'},
    {"debug", optional_argument, NULL, 'D'},
    {"syslog", required_argument, NULL, 's'},
    {"timeout-tcp", required_argument, NULL, OPT_TIMEOUT_TCP},
    {"timeout-child", required_argument, NULL, OPT_TIMEOUT_CHILD},
    {"max-size", required_argument, NULL, OPT_MAX_SIZE},
    {"nouser-config", no_argument, NULL, 'x'},
    {"allow-tell", no_argument, NULL, 'l'},
    {"bayes-path", required_argument, NULL, OPT_BAYES_PATH},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"lint", no_argument, NULL, OPT_LINT},
    {"test", no_argument, NULL, OPT_TEST},
    {"ipv4-only", no_argument, NULL, '4'},
    {"ipv6-only", no_argument, NULL, '6'},
    {"groupname", required_argument, NULL, 'g'},
    /* accepted for drop-in use with spamd's init scripts and defaults files */
    {"create-prefs", no_argument, NULL, 'c'},
    {"helper-home-dir", optional_argument, NULL, 'H'},
    {"max-conn-per-child", required_argument, NULL, OPT_IGNORED_ARG},
    {"min-children", required_argument, NULL, OPT_IGNORED_ARG},
    {"min-spare", required_argument, NULL, OPT_IGNORED_ARG},
    {"max-spare", required_argument, NULL, OPT_IGNORED_ARG},
    {"syslog-socket", required_argument, NULL, OPT_IGNORED_ARG},
    {"round-robin", no_argument, NULL, OPT_IGNORED},
    {"milter", required_argument, NULL, OPT_MILTER},
    {"smtp-listen", required_argument, NULL, OPT_SMTP_LISTEN},
    {"smtp-relay", required_argument, NULL, OPT_SMTP_RELAY},
    {"smtp-helo", required_argument, NULL, OPT_SMTP_HELO},
    {"reject-score", required_argument, NULL, OPT_REJECT_SCORE},
    {"quarantine-score", required_argument, NULL, OPT_QUARANTINE_SCORE},
    {"no-add-headers", no_argument, NULL, OPT_NO_ADD_HEADERS},
    {"timeout-mta", required_argument, NULL, OPT_TIMEOUT_MTA},
    {"ssl", no_argument, NULL, OPT_SSL},
    {"ssl-verify", no_argument, NULL, OPT_SSL_VERIFY},
    {"ssl-ca-file", required_argument, NULL, OPT_SSL_CA_FILE},
    {"ssl-ca-path", required_argument, NULL, OPT_SSL_CA_PATH},
    {"ssl-port", required_argument, NULL, OPT_SSL_PORT},
    {"server-cert", required_argument, NULL, OPT_SERVER_CERT},
    {"server-key", required_argument, NULL, OPT_SERVER_KEY},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    TAMISD_LIMITS_LONG_OPTS, /* limits.c */
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: tamisd [options]\n"
        "  -i, --listen host[:port]  listen on this address (repeatable; default 127.0.0.1)\n"
        "  -p, --port port           default port (783)\n"
        "  -A, --allowed-ips list    comma-separated CIDR blocks allowed to connect\n"
        "                            (default 127.0.0.1,::1)\n"
        "      --socketpath path     listen on a Unix socket (only, unless -i is given)\n"
        "  -m, --max-children n      scanning threads (default: number of cores)\n"
        "  -d, --daemonize           detach; logs go to syslog (-s)\n"
        "  -r, --pidfile file        write the process id here\n"
        "  -u, --username user       drop privileges to this user after binding\n"
        "  -g, --groupname group     and to this group (default: the user's)\n"
        "  -4, -6                    default listeners on IPv4 / IPv6 loopback only\n"
        "  -C, --configpath dir      default rules folder (default %s)\n"
        "      --siteconfigpath dir  site rules folder (default none)\n"
        "      --cf 'line'           extra configuration line (repeatable)\n"
        "  -L, --local               no network tests\n"
        "  -l, --allow-tell          accept TELL: spamc -L spam|ham|forget learns locally\n"
        "      --state-dir dir       state folder: Bayes store in bayes/, compiled-rule cache\n"
        "                            in cache/ (default " TAMIS_DEFAULT_STATE_DIR ")\n"
        "      --bayes-path dir      Bayes store folder (default <state-dir>/bayes; none with\n"
        "                            use_bayes 0)\n"
        "  -D, --debug               debug log\n"
        "  -s, --syslog facility     syslog facility, 'stderr', or a file path\n"
        "      --timeout-tcp s       reading the request line (default 30, 0 = none)\n"
        "      --timeout-child s     processing one request (default 300, 0 = none)\n"
        "      --max-size bytes      largest message scanned (default 67108864); bigger\n"
        "                            ones get '69 Service Unavailable' so spamc passes them\n"
        "                            through unscanned\n"
        "      --milter host:port|path  also serve the milter protocol (Postfix smtpd_milters)\n"
        "      --smtp-listen host:port  also serve SMTP as an after-queue content filter\n"
        "      --smtp-relay host:port   where the SMTP filter re-injects (required with it)\n"
        "      --smtp-helo name      the SMTP filter's own name (default tamisd.localdomain)\n"
        "      --reject-score n      milter/SMTP: reject mail scoring n or more (default 0:\n"
        "                            never; mail is tagged only)\n"
        "      --quarantine-score n  milter: put mail scoring n or more (below the reject\n"
        "                            score) in Postfix's hold queue (default 0: never)\n"
        "      --no-add-headers      milter/SMTP: do not add the X-Spam-* headers\n"
        "      --timeout-mta s       milter/SMTP: idle wait for the MTA (default 300)\n"
        "      --ssl                 TLS on every spamc TCP listener (or \"-i ssl:addr\")\n"
        "      --ssl-port port       default port of the TLS listeners (implies --ssl)\n"
        "      --server-cert file    PEM certificate chain (default " TAMISD_DEFAULT_CERT_DIR
        "/server-cert.pem)\n"
        "      --server-key file     PEM private key (default " TAMISD_DEFAULT_CERT_DIR
        "/server-key.pem)\n"
        "      --ssl-verify          require a client certificate (implies --ssl)\n"
        "      --ssl-ca-file file    CAs for client certificates (implies --ssl-verify)\n"
        "      --ssl-ca-path dir     hashed CA folder for client certificates (the same)\n"
        "  -x, --nouser-config       accepted (per-user preferences are never read)\n"
        "  -c, -H, --max-conn-per-child, --min-children, --min-spare, --max-spare,\n"
        "  --round-robin, --syslog-socket   accepted for compatibility, no effect\n"
        "      --lint                check the rules and exit (1 if errors)\n"
        "      --test                scan a message on stdin, print it as PROCESS would\n"
        "  -V, --version             print the version\n"
        "  -h, --help                this help\n",
        TAMIS_DEFAULT_RULES_DIR);
    tamisd_limits_usage(f);
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1024ULL * 1024 * 1024, end++;
    if (errno || end == s || *end || s[0] == '-' || v > max / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int add_allowed(tamisd_opts_t *o, char *list)
{
    char *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (o->allowed_count >= TAMISD_MAX_ACL)
            return -1;
        o->allowed[o->allowed_count++] = t;
    }
    return 0;
}

static void set_defaults(tamisd_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->port = TAMISD_DEFAULT_PORT;
    o->configpath = TAMIS_DEFAULT_RULES_DIR;
    o->timeout_tcp = 30;
    o->timeout_child = 300;
    o->max_size = TAMISD_DEFAULT_MAX_SIZE;
    o->smtp_helo = "tamisd.localdomain";
    o->timeout_mta = 300;
    tamisd_limits_defaults(&o->limits);
}

static int bad(const char *what, const char *arg)
{
    fprintf(stderr, "tamisd: invalid %s: %s\n", what, arg ? arg : "");
    return -1;
}

/* The relay is connected to from the loop, where name lookups would block: numeric only. */
static int relay_ok(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host)
        return -1;
    size_t hl = (size_t)(colon - spec);
    const char *h = spec;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
        h++, hl -= 2;
    snprintf(host, sizeof host, "%.*s", (int)hl, h);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -1;
    freeaddrinfo(res);
    return 0;
}

static int mta_opt(tamisd_opts_t *o, int c, char *arg)
{
    unsigned long long v;
    char *end;
    switch (c) {
    case OPT_MILTER:
        o->milter = arg;
        return 0;
    case OPT_SMTP_LISTEN:
        o->smtp_listen = arg;
        return 0;
    case OPT_SMTP_RELAY:
        o->smtp_relay = arg;
        return 0;
    case OPT_SMTP_HELO:
        if (!arg[0] || strlen(arg) > 255 || strpbrk(arg, " \t\r\n"))
            return bad("--smtp-helo", arg);
        o->smtp_helo = arg;
        return 0;
    case OPT_REJECT_SCORE:
    case OPT_QUARANTINE_SCORE: {
        errno = 0;
        double d = strtod(arg, &end);
        if (errno || end == arg || *end || d < 0 || d > 10000)
            return bad(c == OPT_REJECT_SCORE ? "--reject-score" : "--quarantine-score", arg);
        *(c == OPT_REJECT_SCORE ? &o->reject_score : &o->quarantine_score) = d;
        return 0;
    }
    case OPT_NO_ADD_HEADERS:
        o->no_add_headers = true;
        return 0;
    default: /* OPT_TIMEOUT_MTA */
        if (parse_uint(arg, 86400, &v) || v == 0)
            return bad("--timeout-mta", arg);
        o->timeout_mta = (unsigned)v;
        return 0;
    }
}

/* The TLS options; their implications are applied after parsing (tls_implied). */
static int tls_opt(tamisd_opts_t *o, int c, char *arg)
{
    unsigned long long v;
    switch (c) {
    case OPT_SSL:
        o->ssl = true;
        return 0;
    case OPT_SSL_VERIFY:
        o->ssl_verify = true;
        return 0;
    case OPT_SSL_CA_FILE:
        o->ssl_ca_file = arg;
        return 0;
    case OPT_SSL_CA_PATH:
        o->ssl_ca_path = arg;
        return 0;
    case OPT_SSL_PORT:
        if (parse_uint(arg, 65535, &v) || v == 0)
            return bad("--ssl-port", arg);
        o->ssl_port = (int)v;
        return 0;
    case OPT_SERVER_CERT:
        o->server_cert = arg;
        return 0;
    default: /* OPT_SERVER_KEY */
        o->server_key = arg;
        return 0;
    }
}

/* spamd: a CA implies --ssl-verify, which implies --ssl, as does --ssl-port. */
static void tls_implied(tamisd_opts_t *o)
{
    o->ssl_verify = o->ssl_verify || o->ssl_ca_file || o->ssl_ca_path;
    o->ssl = o->ssl || o->ssl_verify || o->ssl_port;
}

/* One option; returns 0, 1 (exit 0) or -1 (usage error). */
static int one_opt(tamisd_opts_t *o, int c, char *arg)
{
    unsigned long long v;
    switch (c) {
    case 'i':
        if (o->listen_count >= TAMISD_MAX_LISTEN)
            return bad("--listen (too many)", arg);
        o->listen[o->listen_count++] = arg;
        return 0;
    case 'p':
        if (parse_uint(arg, 65535, &v) || v == 0)
            return bad("port", arg);
        o->port = (int)v;
        return 0;
    case 'A':
        return add_allowed(o, arg) ? bad("--allowed-ips", arg) : 0;
    case OPT_SOCKETPATH:
        o->socketpath = arg;
        return 0;
    case 'm':
        if (parse_uint(arg, 1024, &v) || v == 0)
            return bad("--max-children", arg);
        o->workers = (unsigned)v;
        return 0;
    case 'd':
        o->daemonize = true;
        return 0;
    case 'r':
        o->pidfile = arg;
        return 0;
    case 'u':
        o->user = arg;
        return 0;
    case 'C':
        o->configpath = arg;
        return 0;
    case OPT_SITECONFIG:
        o->siteconfigpath = arg;
        return 0;
    case OPT_CF:
        if (o->cf_count >= TAMISD_MAX_CF)
            return bad("--cf (too many)", arg);
        o->cf[o->cf_count++] = arg;
        return 0;
    case 'L':
        o->local = true;
        return 0;
    case 'D':
        o->debug = true;
        return 0;
    case 's':
        o->syslog_facility = arg;
        return 0;
    case OPT_TIMEOUT_TCP:
    case OPT_TIMEOUT_CHILD:
        if (parse_uint(arg, 86400, &v))
            return bad("timeout", arg);
        *(c == OPT_TIMEOUT_TCP ? &o->timeout_tcp : &o->timeout_child) = (unsigned)v;
        return 0;
    case OPT_MAX_SIZE:
        if (parse_uint(arg, (unsigned long long)1 << 32, &v) || v == 0)
            return bad("--max-size", arg);
        o->max_size = (size_t)v;
        return 0;
    case 'x':
    case 'c':
    case 'H':
    case OPT_IGNORED:
    case OPT_IGNORED_ARG:
        return 0;
    case '4':
    case '6':
        o->family = c == '4' ? 4 : 6;
        return 0;
    case 'g':
        o->group = arg;
        return 0;
    case 'l':
        o->allow_tell = true;
        return 0;
    case OPT_BAYES_PATH:
        o->bayes_path = arg;
        return 0;
    case OPT_STATE_DIR:
        o->state_dir = arg;
        return 0;
    case OPT_LINT:
        o->lint = true;
        return 0;
    case OPT_TEST:
        o->test = true;
        return 0;
    case OPT_MILTER:
    case OPT_SMTP_LISTEN:
    case OPT_SMTP_RELAY:
    case OPT_SMTP_HELO:
    case OPT_REJECT_SCORE:
    case OPT_QUARANTINE_SCORE:
    case OPT_NO_ADD_HEADERS:
    case OPT_TIMEOUT_MTA:
        return mta_opt(o, c, arg);
    case OPT_SSL:
    case OPT_SSL_VERIFY:
    case OPT_SSL_CA_FILE:
    case OPT_SSL_CA_PATH:
    case OPT_SSL_PORT:
    case OPT_SERVER_CERT:
    case OPT_SERVER_KEY:
        return tls_opt(o, c, arg);
    case 'V':
        printf("tamisd version %s\n", TAMIS_VERSION);
        return 1;
    case 'h':
        usage(stdout);
        return 1;
    default:
        if (c >= TAMISD_LIMITS_OPT_BASE) /* limits.c's settings */
            return tamisd_limits_opt(&o->limits, c, arg);
        usage(stderr);
        return -1;
    }
}

int tamisd_opts_parse(tamisd_opts_t *o, int argc, char **argv)
{
    set_defaults(o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:p:A:m:dr:u:g:C:LD::s:xlVhcH::46", long_opts, NULL)) !=
           -1) {
        /* spamd's "-D areas": take a following word as -D's argument, not as a stray operand */
        if ((c == 'D' || c == 'H') && !optarg && optind < argc && argv[optind][0] != '-')
            optind++;
        int rc = one_opt(o, c, optarg);
        if (rc)
            return rc;
    }
    if (optind < argc)
        return bad("argument", argv[optind]);
    tls_implied(o);
    if (o->smtp_listen && !o->smtp_relay) {
        fprintf(stderr, "tamisd: --smtp-listen needs --smtp-relay\n");
        return -1;
    }
    if (o->smtp_relay && relay_ok(o->smtp_relay) != 0)
        return bad("--smtp-relay (numeric address:port, e.g. 127.0.0.1:10026)", o->smtp_relay);
    if (o->allowed_count == 0) {
        o->allowed[o->allowed_count++] = "127.0.0.1";
        o->allowed[o->allowed_count++] = "::1";
    }
    return 0;
}
