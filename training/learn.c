/*
 * tamis-learn: an sa-learn-compatible trainer for the Tamis Bayes store (spec-bayes.md §7).
 *
 * Same flags, same summary line and exit statuses as sa-learn: 0 success, 1 when no message was
 * examined or an operation failed, 64 usage errors. Messages are learned in write batches
 * (--batch-size, default 1000), so a kill leaves the store at the last committed batch. One bad
 * message is reported on stderr and skipped; it never stops the run.
 */
#include "tamis/bayes.h"
#include "tamis/msg.h"

#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#ifdef TAMIS_DEFAULT_STATE_DIR
#define DEFAULT_DBPATH TAMIS_DEFAULT_STATE_DIR "/bayes"
#else
#define DEFAULT_DBPATH "./state/bayes"
#endif

#define EX_USAGE 64
#define LEARN_MAX_INPUT (256u << 20) /* one file or mbox read at once */

typedef struct {
    int cls; /* -1 unset, else tamis_bayes_class_t */
    bool mbox;
    size_t max_size; /* 0 = unlimited */
    bool quiet, progress, showdots;
    unsigned batch;
    tamis_bayes_t *db;
    pipeline_t *pipe; /* parses and tokenizes ahead; learning stays in input order */
    unsigned long examined, learned, failed, total;
    double t0, last_draw;
    bool tty;
} run_t;

/* Tokenizer options of every learn/classify/--tokens call (the store's recorded mode unless
 * --token-mode says otherwise). */
static tamis_bayes_tokopts_t g_tok;
static bool tokmode_set;

static const char usage_text[] =
    "Usage:\n"
    "    tamis-learn [options] [file]...\n"
    "\n"
    "    tamis-learn [options] --dump [ all | data | magic ]\n"
    "\n"
    "    Options:\n"
    "\n"
    "     --ham                 Learn the following messages as ham (non-spam)\n"
    "     --spam                Learn the following messages as spam\n"
    "     --forget              Forget the following messages\n"
    "     --sync                Accepted; the store has no journal\n"
    "     --force-expire        Force an expiry run\n"
    "     --dbpath <path>       Bayes store folder (default " DEFAULT_DBPATH ")\n"
    "     --dump [all|data|magic]  Display the contents of the Bayes database\n"
    "     -f file, --folders=file  Read list of files/directories from file\n"
    "     --mbox                Input sources are in mbox format\n"
    "     --max-size <b>        Skip messages larger than b bytes;\n"
    "                           defaults to 500 KB, 0 implies no limit\n"
    "     --progress            Show progress (rate and ETA) on a terminal\n"
    "     --no-sync             Skip the expiry check done before learning\n"
    "     --clear               Wipe out existing database\n"
    "     --backup              Backup, to STDOUT, existing database\n"
    "     --restore <filename>  Restore a database from filename\n"
    "     -u username           Per-user store in the same folder\n"
    "     -C path, --siteconfigpath=path, -p prefs, --cf=line  Accepted for compatibility\n"
    "     --batch-size <n>      Messages per write transaction (default 1000)\n"
    "     -j n, --jobs n        Threads parsing messages (default: the number of CPUs)\n"
    "     --map-size <bytes>    Initial LMDB map size (grows when full; default 64 MiB)\n"
    "     --classify            Print the Bayes probability of each target (Tamis extension)\n"
    "     --tokens FILE...      Print the tokens of messages (Tamis extension)\n"
    "     --token-mode sa|tamis Tokenizer mode (Tamis extension; default: the store's)\n"
    "     -q, --quiet           No summary line\n"
    "     -V, --version         Print version\n"
    "     -h, --help            Print usage message\n";

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "%s\n", msg);
    fputs(usage_text, stderr);
    return EX_USAGE;
}

static void draw_progress(run_t *r, bool final)
{
    if (!r->progress || !r->tty)
        return;
    double now = tamis_now_ms();
    if (!final && now - r->last_draw < 200)
        return;
    r->last_draw = now;
    double secs = (now - r->t0) / 1000.0;
    double rate = secs > 0 ? (double)r->examined / secs : 0;
    if (r->total) {
        double eta = rate > 0 ? (double)(r->total - r->examined) / rate : 0;
        fprintf(stderr, "\r%3.0f%% %lu/%lu msgs  %.0f msg/s  ETA %02d:%02d   ",
                100.0 * (double)r->examined / (double)r->total, r->examined, r->total, rate,
                (int)eta / 60, (int)eta % 60);
    } else {
        fprintf(stderr, "\r%lu msgs  %.0f msg/s   ", r->examined, rate);
    }
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

static int commit_if_due(run_t *r, bool force)
{
    char err[256];
    static unsigned in_batch;
    if (!force && ++in_batch < r->batch)
        return 0;
    in_batch = 0;
    if (tamis_bayes_commit(r->db, err, sizeof err) < 0) {
        fprintf(stderr, "tamis-learn: %s\n", err);
        return -1;
    }
    if (!force && tamis_bayes_begin(r->db, err, sizeof err) < 0) {
        fprintf(stderr, "tamis-learn: %s\n", err);
        return -1;
    }
    return 0;
}

/* Parses a message for learning: like sa-learn, a message carrying X-Spam-Checker-Version is
 * learned as it was before SpamAssassin (or Tamis) marked it up. */
static int parse_for_learning(const char *data, size_t len, tamis_msg_t **out, char *err,
                              size_t errlen)
{
    tamis_msg_t *m = NULL;
    int rc = tamis_msg_parse(data, len, NULL, &m, err, errlen);
    if (rc < 0)
        return rc;
    if (tamis_msg_header_first(m, "X-Spam-Checker-Version")) {
        const tamis_header_t *ct = tamis_msg_header_last(m, "Content-Type");
        size_t clen = 0;
        char *clean =
            tamis_bayes_remove_markup(data, len, ct && ct->decoded ? ct->decoded : "", &clen);
        tamis_msg_t *m2 = NULL;
        if (clean && tamis_msg_parse(clean, clen, NULL, &m2, err, errlen) == 0) {
            tamis_msg_free(m);
            m = m2;
        }
        free(clean);
    }
    *out = m;
    return 0;
}

/* One message on its way through the pipeline. */
typedef struct {
    char *data; /* owned; released once parsed */
    size_t len;
    char *where; /* owned */
    int cls;
    int rc; /* of parsing and tokenizing */
    char err[256];
    tamis_bayes_prep_t *prep; /* owned */
} job_t;

static void job_free(void *arg)
{
    job_t *j = arg;
    free(j->data);
    free(j->where);
    tamis_bayes_prep_free(j->prep);
    free(j);
}

/* Worker side: everything but the store. */
static void job_work(void *arg)
{
    job_t *j = arg;
    tamis_msg_t *m = NULL;
    j->rc = parse_for_learning(j->data, j->len, &m, j->err, sizeof j->err);
    if (j->rc == 0)
        j->rc = tamis_bayes_prepare(m, &g_tok, &j->prep, j->err, sizeof j->err);
    tamis_msg_free(m);
    free(j->data);
    j->data = NULL;
}

/* Learns one prepared message; reports problems and carries on. */
static int learn_job(run_t *r, const job_t *j)
{
    char err[256];
    r->examined++;
    if (j->rc < 0) {
        fprintf(stderr, "tamis-learn: %s: %s\n", j->where, j->err);
        r->failed++;
        return commit_if_due(r, false); /* batches count examined messages */
    }
    int rc =
        tamis_bayes_learn_prep(r->db, j->prep, (tamis_bayes_class_t)j->cls, false, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "tamis-learn: %s: %s\n", j->where, err);
        r->failed++;
        /* the batch was aborted (its earlier messages are lost, say so): start a new one so
         * later messages still go in */
        fprintf(stderr, "tamis-learn: uncommitted messages of this batch were rolled back\n");
        if (tamis_bayes_begin(r->db, err, sizeof err) < 0)
            return -1;
        return 0;
    }
    if (rc == 1)
        r->learned++;
    if (r->showdots)
        fputc('.', stderr);
    draw_progress(r, false);
    return commit_if_due(r, false);
}

/* Learns the oldest queued message once it is ready: 1 when one was learned, 0 when none was
 * ready (or none queued), -1 on a store failure that ends the run. */
static int learn_next(run_t *r, bool wait)
{
    job_t *j = pipeline_pop(r->pipe, wait);
    if (!j)
        return 0;
    int rc = learn_job(r, j);
    job_free(j);
    return rc < 0 ? -1 : 1;
}

/* Queues one message (data is taken over) and learns those already parsed. */
static int learn_one(run_t *r, char *data, size_t len, const char *where)
{
    if (r->max_size && len > r->max_size) {
        free(data);
        return 0; /* like sa-learn: skipped, not examined */
    }
    job_t *j = calloc(1, sizeof *j);
    if (!j || !(j->where = strdup(where))) {
        free(j);
        free(data);
        fprintf(stderr, "tamis-learn: out of memory\n");
        return -1;
    }
    j->data = data;
    j->len = len;
    j->cls = r->cls;
    int rc = 0;
    while (rc >= 0 && pipeline_full(r->pipe))
        rc = learn_next(r, true);
    if (rc < 0) {
        job_free(j);
        return -1;
    }
    pipeline_push(r->pipe, j);
    while ((rc = learn_next(r, false)) > 0)
        ;
    return rc;
}

/* mbox: messages start at "From " lines that follow a blank line (or the start). */
static int learn_mbox(run_t *r, const char *d, size_t n, const char *where)
{
    size_t i = 0, start = (size_t)-1;
    char loc[4096];
    unsigned idx = 0;
    while (i <= n) {
        bool boundary = i == n || ((i == 0 || (i >= 2 && d[i - 1] == '\n' && d[i - 2] == '\n') ||
                                    (i == 1 && d[0] == '\n')) &&
                                   n - i >= 5 && memcmp(d + i, "From ", 5) == 0);
        if (boundary) {
            if (start != (size_t)-1) {
                snprintf(loc, sizeof loc, "%s[%u]", where, idx++);
                char *copy = malloc(i - start + 1);
                if (copy) {
                    memcpy(copy, d + start, i - start);
                    copy[i - start] = '\0';
                }
                if (!copy || learn_one(r, copy, i - start, loc) < 0)
                    return -1;
            }
            start = i;
        }
        if (i == n)
            break;
        const char *nl = memchr(d + i, '\n', n - i);
        i = nl ? (size_t)(nl - d) + 1 : n;
    }
    return 0;
}

/* Reads a whole file, gunzipping it when it is gzip-compressed (zlib reads plain files as they
 * are). Returns 0 or -1 with errno-style text in err. */
static int read_maybe_gz(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        snprintf(err, errlen, "%s", strerror(errno ? errno : EIO));
        return -1;
    }
    tamis_buf_t b;
    tamis_buf_init(&b, LEARN_MAX_INPUT);
    char chunk[65536];
    int n;
    while ((n = gzread(gz, chunk, sizeof chunk)) > 0)
        tamis_buf_append(&b, chunk, (size_t)n);
    int zerr = 0;
    const char *zmsg = n < 0 ? gzerror(gz, &zerr) : NULL;
    if (n < 0)
        snprintf(err, errlen, "%s", zerr == Z_ERRNO ? strerror(errno) : zmsg);
    gzclose(gz);
    if (n < 0 || b.err) {
        if (n >= 0)
            snprintf(err, errlen, "%s", b.err == TAMIS_ELIMIT ? "file too large" : "out of memory");
        tamis_buf_free(&b);
        return -1;
    }
    tamis_buf_puts(&b, "");
    *out = tamis_buf_steal(&b, len);
    return *out ? 0 : -1;
}

static int learn_file(run_t *r, const char *path)
{
    char *data = NULL, err[256];
    size_t len = 0;
    if (read_maybe_gz(path, &data, &len, err, sizeof err) < 0) {
        fprintf(stderr, "tamis-learn: no access to %s: %s\n", path, err);
        r->failed++;
        return 0;
    }
    if (!r->mbox)
        return learn_one(r, data, len, path);
    int rc = learn_mbox(r, data, len, path);
    free(data);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the files of a directory (Maildir cur/ and new/ when present), sorted. */
static int collect(const char *path, char ***list, size_t *n, size_t *cap, int depth)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "tamis-learn: no access to %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            char **nl = realloc(*list, *cap * sizeof *nl);
            if (!nl)
                return -1;
            *list = nl;
        }
        (*list)[(*n)++] = strdup(path);
        return 0;
    }
    if (depth > 2)
        return 0;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/cur", path);
    struct stat s2;
    bool maildir = stat(sub, &s2) == 0 && S_ISDIR(s2.st_mode);
    snprintf(sub, sizeof sub, "%s/new", path);
    maildir = maildir || (stat(sub, &s2) == 0 && S_ISDIR(s2.st_mode));
    if (maildir) {
        static const char *const parts[] = {"cur", "new"};
        for (int k = 0; k < 2; k++) {
            snprintf(sub, sizeof sub, "%s/%s", path, parts[k]);
            if (stat(sub, &s2) == 0)
                collect(sub, list, n, cap, depth + 1);
        }
        return 0;
    }
    DIR *dir = opendir(path);
    if (!dir) {
        fprintf(stderr, "tamis-learn: no access to %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t first = *n;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        if (stat(sub, &s2) != 0 || !S_ISREG(s2.st_mode))
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            char **nl = realloc(*list, *cap * sizeof *nl);
            if (!nl) {
                closedir(dir);
                return -1;
            }
            *list = nl;
        }
        (*list)[(*n)++] = strdup(sub);
    }
    closedir(dir);
    qsort(*list + first, *n - first, sizeof **list, cmp_str);
    return 0;
}

static int write_stdout(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    return fwrite(data, 1, len, stdout) == len ? 0 : TAMIS_EIO;
}

/* --dump --regexp RE: keeps the data lines whose hex token matches RE (POSIX extended; SA
 * matches the binary token, which no one can usefully write a pattern for). Lines may arrive in
 * pieces, so partial lines are carried over. */
typedef struct {
    regex_t re;
    tamis_buf_t line;
} filter_t;

static int write_filtered(void *ctx, const char *data, size_t len)
{
    filter_t *f = ctx;
    for (size_t i = 0; i < len; i++) {
        tamis_buf_putc(&f->line, data[i]);
        if (data[i] != '\n')
            continue;
        const char *tok = strrchr(f->line.data, ' ');
        bool magic = strstr(f->line.data, "non-token data: ") != NULL;
        char hex[64] = "";
        if (tok)
            snprintf(hex, sizeof hex, "%.*s", (int)strcspn(tok + 1, "\n"), tok + 1);
        if (magic || regexec(&f->re, hex, 0, NULL, 0) == 0) {
            if (fwrite(f->line.data, 1, f->line.len, stdout) != f->line.len)
                return TAMIS_EIO;
        }
        tamis_buf_reset(&f->line);
    }
    return f->line.err;
}

static int read_stdin(char **out, size_t *len)
{
    tamis_buf_t b;
    tamis_buf_init(&b, LEARN_MAX_INPUT);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        tamis_buf_append(&b, chunk, n);
    if (b.err || ferror(stdin)) {
        tamis_buf_free(&b);
        return -1;
    }
    if (!b.data)
        tamis_buf_puts(&b, "");
    *out = tamis_buf_steal(&b, len);
    return 0;
}

/* --tokens FILE: prints the readable tokens of a message, one per line, sorted (tests). */
static int print_tokens(const char *path)
{
    char *data = NULL, err[256];
    size_t len = 0;
    if (tamis_read_file(path, LEARN_MAX_INPUT, &data, &len, err, sizeof err) < 0) {
        fprintf(stderr, "tamis-learn: %s: %s\n", path, err);
        return 1;
    }
    tamis_msg_t *m = NULL;
    tamis_bayes_tokens_t *t = NULL;
    int rc = parse_for_learning(data, len, &m, err, sizeof err);
    if (rc == 0)
        rc = tamis_bayes_tokenize_msg(m, &g_tok, &t, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "tamis-learn: %s: %s\n", path, err);
        free(data);
        tamis_msg_free(m);
        return 1;
    }
    size_t n = tamis_bayes_tokens_count(t);
    const char **v = malloc((n + 1) * sizeof *v);
    for (size_t i = 0; v && i < n; i++)
        v[i] = tamis_bayes_tokens_string(t, i);
    if (v) {
        qsort(v, n, sizeof *v, cmp_str);
        for (size_t i = 0; i < n; i++)
            printf("%s\n", v[i]);
    }
    free(v);
    tamis_bayes_tokens_free(t);
    tamis_msg_free(m);
    free(data);
    return 0;
}

/* --classify FILE...: Tamis extension printing "status prob nspam nham used FILE" per message
 * (status ok / not-enough / no-tokens), for tests and benchmarks; prob in full precision so
 * that rankings (1-AUC) see every difference. */
static int classify_files(tamis_bayes_t *db, char **files, size_t n)
{
    int status = 0;
    for (size_t i = 0; i < n; i++) {
        char *data = NULL, err[256];
        size_t len = 0;
        tamis_msg_t *m = NULL;
        tamis_bayes_tokens_t *t = NULL;
        tamis_bayes_result_t res;
        if (read_maybe_gz(files[i], &data, &len, err, sizeof err) < 0 ||
            parse_for_learning(data, len, &m, err, sizeof err) < 0 ||
            tamis_bayes_tokenize_msg(m, &g_tok, &t, err, sizeof err) < 0 ||
            tamis_bayes_classify(db, t, NULL, &res, err, sizeof err) < 0) {
            fprintf(stderr, "tamis-learn: %s: %s\n", files[i], err);
            status = 1;
        } else {
            static const char *const names[] = {"ok", "not-enough", "no-tokens"};
            printf("%s %.17g %llu %llu %zu %s\n", names[res.status], res.prob,
                   (unsigned long long)res.nspam, (unsigned long long)res.nham, res.tokens_used,
                   files[i]);
        }
        tamis_bayes_tokens_free(t);
        tamis_msg_free(m);
        free(data);
    }
    return status;
}

enum {
    O_SPAM = 256,
    O_HAM,
    O_FORGET,
    O_MBOX,
    O_IGNORED,
    O_IGNORED_ARG,
    O_MAXSIZE,
    O_SYNC,
    O_EXPIRE,
    O_DUMP,
    O_BACKUP,
    O_RESTORE,
    O_CLEAR,
    O_DBPATH,
    O_PROGRESS,
    O_SHOWDOTS,
    O_BATCH,
    O_TOKENS,
    O_CLASSIFY,
    O_NOSYNC,
    O_MAPSIZE,
    O_REGEXP,
    O_TOKMODE,
    O_JOBS,
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"spam", no_argument, NULL, O_SPAM},
        {"ham", no_argument, NULL, O_HAM},
        {"nonspam", no_argument, NULL, O_HAM},
        {"forget", no_argument, NULL, O_FORGET},
        {"mbox", no_argument, NULL, O_MBOX},
        {"mbx", no_argument, NULL, O_MBOX},
        {"dir", no_argument, NULL, O_IGNORED},
        {"file", no_argument, NULL, O_IGNORED},
        {"single", no_argument, NULL, O_IGNORED},
        {"folders", required_argument, NULL, 'f'},
        {"max-size", required_argument, NULL, O_MAXSIZE},
        {"use-ignores", no_argument, NULL, O_IGNORED},
        {"sync", no_argument, NULL, O_SYNC},
        {"rebuild", no_argument, NULL, O_SYNC},
        {"no-sync", no_argument, NULL, O_NOSYNC},
        {"nosync", no_argument, NULL, O_NOSYNC},
        {"force-expire", no_argument, NULL, O_EXPIRE},
        {"expire", no_argument, NULL, O_EXPIRE},
        {"dump", optional_argument, NULL, O_DUMP},
        {"regexp", required_argument, NULL, O_REGEXP},
        {"backup", no_argument, NULL, O_BACKUP},
        {"restore", required_argument, NULL, O_RESTORE},
        {"clear", no_argument, NULL, O_CLEAR},
        {"import", no_argument, NULL, O_IGNORED},
        {"dbpath", required_argument, NULL, O_DBPATH},
        {"username", required_argument, NULL, 'u'},
        {"configpath", required_argument, NULL, 'C'},
        {"config-file", required_argument, NULL, 'C'},
        {"siteconfigpath", required_argument, NULL, O_IGNORED_ARG},
        {"prefspath", required_argument, NULL, 'p'},
        {"prefs-file", required_argument, NULL, 'p'},
        {"cf", required_argument, NULL, O_IGNORED_ARG},
        {"local", no_argument, NULL, 'L'},
        {"showdots", no_argument, NULL, O_SHOWDOTS},
        {"progress", no_argument, NULL, O_PROGRESS},
        {"learnprob", required_argument, NULL, O_IGNORED_ARG},
        {"randseed", required_argument, NULL, O_IGNORED_ARG},
        {"stopafter", required_argument, NULL, O_IGNORED_ARG},
        {"debug", optional_argument, NULL, 'D'},
        {"quiet", no_argument, NULL, 'q'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"batch-size", required_argument, NULL, O_BATCH},
        {"tokens", required_argument, NULL, O_TOKENS},
        {"classify", no_argument, NULL, O_CLASSIFY},
        {"map-size", required_argument, NULL, O_MAPSIZE},
        {"token-mode", required_argument, NULL, O_TOKMODE},
        {"jobs", required_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    tamis_bayes_tokopts_default(&g_tok);
    run_t r = {.cls = -1, .max_size = 500 * 1024, .batch = 1000};
    const char *dbpath = DEFAULT_DBPATH, *user = NULL, *dump = NULL, *restore = NULL;
    const char *folders = NULL, *regexp = NULL;
    bool do_classify = false, nosync = false;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned jobs = ncpu > 0 ? (unsigned)ncpu : 1;
    size_t map_size = 0;
    bool do_dump = false, do_backup = false, do_clear = false, do_expire = false, do_sync = false;
    int c;
    /* class options apply to the targets after them, so parse in order ('-' keeps order) */
    char **targets = calloc((size_t)argc + 1, sizeof *targets);
    int *tcls = calloc((size_t)argc + 1, sizeof *tcls);
    size_t ntargets = 0;
    if (!targets || !tcls)
        return 1;
    while ((c = getopt_long(argc, argv, "-f:u:C:p:j:LD::qVh", opts, NULL)) != -1) {
        switch (c) {
        case 1:
            if (r.cls < 0) {
                free(targets);
                free(tcls);
                return usage("Please select either --spam or --ham or --forget before the "
                             "first target");
            }
            tcls[ntargets] = r.cls;
            targets[ntargets++] = optarg;
            break;
        case O_TOKMODE: {
            int md = tamis_bayes_tokmode_parse(optarg);
            if (md < 0) {
                free(targets);
                free(tcls);
                return usage("--token-mode takes sa or tamis");
            }
            g_tok.mode = (tamis_bayes_tokmode_t)md;
            tokmode_set = true;
            break;
        }
        case O_SPAM:
            r.cls = TAMIS_BAYES_SPAM;
            break;
        case O_HAM:
            r.cls = TAMIS_BAYES_HAM;
            break;
        case O_FORGET:
            r.cls = TAMIS_BAYES_FORGET;
            break;
        case O_MBOX:
            r.mbox = true;
            break;
        case 'f':
            folders = optarg;
            break;
        case O_MAXSIZE:
            r.max_size = strtoul(optarg, NULL, 10);
            break;
        case O_MAPSIZE:
            map_size = (size_t)strtoull(optarg, NULL, 10);
            break;
        case O_NOSYNC:
            nosync = true;
            break;
        case O_SYNC:
            do_sync = true;
            break;
        case O_EXPIRE:
            do_expire = true;
            break;
        case O_DUMP:
            do_dump = true;
            dump = optarg;
            if (!dump && optind < argc && argv[optind][0] != '-' &&
                (!strcmp(argv[optind], "all") || !strcmp(argv[optind], "data") ||
                 !strcmp(argv[optind], "magic")))
                dump = argv[optind++];
            break;
        case O_BACKUP:
            do_backup = true;
            break;
        case O_RESTORE:
            restore = optarg;
            break;
        case O_CLEAR:
            do_clear = true;
            break;
        case O_DBPATH:
            dbpath = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case O_PROGRESS:
            r.progress = true;
            break;
        case O_SHOWDOTS:
            r.showdots = true;
            break;
        case 'q':
            r.quiet = true;
            break;
        case O_BATCH:
            r.batch = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'j':
            jobs = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_TOKENS: {
            /* more files may follow: all tokenized in this one process */
            int rc = print_tokens(optarg);
            for (int k = optind; k < argc; k++) {
                printf("== %s\n", argv[k]);
                rc |= print_tokens(argv[k]);
            }
            free(targets);
            free(tcls);
            return rc;
        }
        case 'V':
            printf("Tamis tamis-learn version %s (sa-learn compatible)\n", TAMIS_VERSION);
            free(targets);
            free(tcls);
            return 0;
        case 'h':
            free(targets);
            free(tcls);
            return usage(NULL);
        case O_REGEXP:
            regexp = optarg;
            break;
        case O_CLASSIFY:
            do_classify = true;
            r.cls = TAMIS_BAYES_HAM; /* lets the targets through the class check */
            break;
        case 'C':
        case 'p':
        case 'L':
        case 'D':
        case O_IGNORED:
        case O_IGNORED_ARG:
            break;
        default:
            free(targets);
            free(tcls);
            return usage(NULL);
        }
    }
    if (r.batch == 0)
        r.batch = 1;
    if (jobs == 0)
        jobs = 1;
    if (jobs > 64)
        jobs = 64;
    if (r.progress && r.showdots) {
        free(targets);
        free(tcls);
        printf("--showdots and --progress may not be used together, please select just one\n");
        return EX_USAGE;
    }
    tamis_bayes_options_t bo;
    tamis_bayes_options_default(&bo);
    bo.user = user;
    if (map_size)
        bo.map_size = map_size;
    bo.read_only = (do_dump || do_backup) && !do_clear && !restore && !ntargets;
    if (do_classify)
        bo.read_only = true;
    char err[512];
    int status = 0;
    if (bo.read_only) {
        struct stat st;
        if (stat(dbpath, &st) != 0) {
            /* nothing learned yet: an empty store dumps as zeros */
            bo.read_only = false;
        }
    }
    if (tamis_bayes_open(dbpath, &bo, &r.db, err, sizeof err) < 0) {
        fprintf(stderr, "ERROR: %s\n", err);
        free(targets);
        free(tcls);
        return 255;
    }
    /* --token-mode records the mode in a store that has learned nothing yet (else it must match);
     * every learn/classify then tokenizes in the store's mode */
    if (tokmode_set && !do_classify && !bo.read_only && ntargets &&
        tamis_bayes_set_tokmode(r.db, g_tok.mode, err, sizeof err) != 0) {
        fprintf(stderr, "ERROR: %s\n", err);
        tamis_bayes_close(r.db);
        free(targets);
        free(tcls);
        return 255;
    }
    g_tok.mode = tamis_bayes_store_tokmode(r.db);
    if (do_classify) {
        status = classify_files(r.db, targets, ntargets);
        goto out;
    }
    if (do_dump) {
        unsigned what = TAMIS_BAYES_DUMP_ALL;
        if (dump && !strcmp(dump, "magic"))
            what = TAMIS_BAYES_DUMP_MAGIC;
        else if (dump && !strcmp(dump, "data"))
            what = TAMIS_BAYES_DUMP_DATA;
        else if (dump && *dump && strcmp(dump, "all") != 0) {
            fprintf(stderr, "Unknown dump option '%s'\n", dump);
            status = 1;
            goto out;
        }
        filter_t f;
        bool filtering = regexp != NULL;
        if (filtering && regcomp(&f.re, regexp, REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(stderr, "Invalid dump_tokens regex '%s'\n", regexp);
            status = 255;
            goto out;
        }
        if (filtering)
            tamis_buf_init(&f.line, 1u << 16);
        if (tamis_bayes_dump(r.db, what, filtering ? write_filtered : write_stdout,
                             filtering ? &f : NULL, err, sizeof err) < 0) {
            fprintf(stderr, "ERROR: Bayes dump returned an error: %s\n", err);
            status = 255;
        }
        if (filtering) {
            regfree(&f.re);
            tamis_buf_free(&f.line);
        }
        goto out;
    }
    if (do_clear) {
        if (tamis_bayes_clear(r.db, err, sizeof err) < 0) {
            fprintf(stderr, "ERROR: Bayes clear returned an error: %s\n", err);
            status = 255;
        }
        goto out;
    }
    if (do_backup) {
        if (tamis_bayes_backup(r.db, write_stdout, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "ERROR: Bayes backup returned an error: %s\n", err);
            status = 255;
        }
        goto out;
    }
    if (restore) {
        char *data = NULL;
        size_t len = 0;
        tamis_bayes_restore_report_t rep;
        if (!*restore) {
            fprintf(stderr, "ERROR: You must specify a filename to restore.\n");
            status = 255;
        } else if (tamis_read_file(restore, (size_t)1 << 31, &data, &len, err, sizeof err) < 0 ||
                   tamis_bayes_restore(r.db, data, len, 0, &rep, err, sizeof err) < 0) {
            fprintf(stderr, "ERROR: Bayes restore returned an error: %s\n", err);
            status = 255;
        }
        free(data);
        goto out;
    }
    if (do_expire) {
        tamis_bayes_expire_opts_t eo;
        tamis_bayes_expire_report_t rep;
        tamis_bayes_expire_opts_default(&eo);
        eo.force = true;
        double t0 = tamis_now_ms();
        int rc = tamis_bayes_expire(r.db, &eo, &rep, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "ERROR: Bayes expire returned an error: %s\n", err);
            status = 255;
        } else if (rep.ran) {
            fprintf(stderr, "expired old bayes database entries in %.0f seconds\n",
                    (tamis_now_ms() - t0) / 1000.0);
            fprintf(stderr, "%llu entries kept, %llu deleted\n", (unsigned long long)rep.kept,
                    (unsigned long long)rep.deleted);
            fprintf(stderr, "token frequency: 1-occurrence tokens: %3.2f%%\n", rep.hapax_pct);
            fprintf(stderr, "token frequency: less than 8 occurrences: %3.2f%%\n", rep.lowfreq_pct);
        }
        if (!ntargets && !folders)
            goto out;
    }
    if (do_sync && !ntargets && !folders)
        goto out;
    if (folders) {
        FILE *fp = fopen(folders, "r");
        if (!fp) {
            fprintf(stderr, "tamis-learn: cannot open folders file %s: %s\n", folders,
                    strerror(errno));
            status = 255;
            goto out;
        }
        /* folder lines are kept for the run; they live until exit */
        char line[4096];
        while (fgets(line, sizeof line, fp)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (!*line)
                continue;
            char *p = line;
            int cls = r.cls;
            if (!strncmp(p, "spam:", 5) || !strncmp(p, "ham:", 4)) {
                cls = p[0] == 's' ? TAMIS_BAYES_SPAM : TAMIS_BAYES_HAM;
                p = strchr(p, ':') + 1;
                char *q = strchr(p, ':'); /* format */
                if (q)
                    p = q + 1;
            }
            if (cls < 0)
                continue;
            char **nt = realloc(targets, (ntargets + 2) * sizeof *nt);
            int *nc = realloc(tcls, (ntargets + 2) * sizeof *nc);
            if (nt)
                targets = nt;
            if (nc)
                tcls = nc;
            if (!nt || !nc)
                break;
            targets[ntargets] = strdup(p);
            tcls[ntargets++] = cls;
        }
        fclose(fp);
    }
    if (!ntargets) {
        if (r.cls < 0) {
            status = usage("Please select either --spam or --ham or --forget before the first "
                           "target");
            goto out;
        }
        targets[0] = "-";
        tcls[0] = r.cls;
        ntargets = 1;
    }
    {
        /* expand targets into a file list (stdin stays "-") */
        char **files = NULL;
        int *fcls = NULL;
        size_t nfiles = 0, cap = 0;
        for (size_t i = 0; i < ntargets; i++) {
            size_t before = nfiles;
            if (!strcmp(targets[i], "-")) {
                if (nfiles == cap) {
                    cap = cap ? cap * 2 : 256;
                    files = realloc(files, cap * sizeof *files);
                }
                files[nfiles++] = strdup("-");
            } else if (collect(targets[i], &files, &nfiles, &cap, 0) < 0) {
                fprintf(stderr, "tamis-learn: out of memory\n");
                status = 255;
                goto out;
            }
            fcls = realloc(fcls, (cap ? cap : 1) * sizeof *fcls);
            for (size_t k = before; k < nfiles; k++)
                fcls[k] = tcls[i];
        }
        r.total = r.mbox ? 0 : nfiles;
        r.tty = isatty(2);
        r.t0 = tamis_now_ms();
        if (!nosync && !do_expire) {
            /* like sa-learn: an expiry run first when one is due (unless --no-sync) */
            tamis_bayes_expire_opts_t eo;
            tamis_bayes_expire_opts_default(&eo);
            if (tamis_bayes_expire(r.db, &eo, NULL, err, sizeof err) < 0)
                fprintf(stderr, "tamis-learn: expiry: %s\n", err);
        }
        if (tamis_bayes_begin(r.db, err, sizeof err) < 0) {
            fprintf(stderr, "ERROR: %s\n", err);
            status = 255;
        }
        /* g_tok holds the store's mode from here on: the workers may read it */
        r.pipe = pipeline_new(jobs, 64 * (size_t)jobs, job_work);
        if (!r.pipe) {
            fprintf(stderr, "ERROR: cannot start the parsing threads\n");
            status = 255;
        }
        for (size_t i = 0; i < nfiles && status == 0; i++) {
            r.cls = fcls[i];
            int rc;
            if (!strcmp(files[i], "-")) {
                char *data = NULL;
                size_t len = 0;
                if (read_stdin(&data, &len) < 0) {
                    fprintf(stderr, "tamis-learn: error reading from STDIN\n");
                    rc = 0;
                } else if (r.mbox) {
                    rc = learn_mbox(&r, data, len, "-");
                    free(data);
                } else {
                    rc = learn_one(&r, data, len, "-");
                }
            } else {
                rc = learn_file(&r, files[i]);
            }
            if (rc < 0)
                status = 255;
        }
        int rc = 0;
        while (status == 0 && (rc = learn_next(&r, true)) > 0)
            ;
        if (rc < 0)
            status = 255;
        pipeline_free(r.pipe, job_free);
        if (commit_if_due(&r, true) < 0)
            status = 255;
        draw_progress(&r, true);
        if (r.showdots)
            fputc('\n', stderr);
        for (size_t i = 0; i < nfiles; i++)
            free(files[i]);
        free(files);
        free(fcls);
        if (!r.quiet)
            printf("%s tokens from %lu message(s) (%lu message(s) examined)\n",
                   r.cls == TAMIS_BAYES_FORGET ? "Forgot" : "Learned", r.learned, r.examined);
        if (status == 0 && r.examined == 0)
            status = 1;
    }
out:
    tamis_bayes_close(r.db);
    free(targets);
    free(tcls);
    fflush(stdout);
    return status;
}
