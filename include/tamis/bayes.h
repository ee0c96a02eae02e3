/*
 * bayes: SpamAssassin-compatible Bayes classifier (spec-bayes.md): tokenizer, LMDB token store,
 * learning/forgetting with seen-message digests, Robinson f(w) + chi-square combining, expiry,
 * and sa-learn's --backup/--restore/--dump formats.
 *
 * Store: one LMDB environment folder; every user's store is a pair of named databases in it
 * ("t:<user>" tokens + magic records, "s:<user>" seen message ids; "" = the default user). The
 * environment is opened once per process (a process-wide registry shares it between handles);
 * never use a handle across fork().
 *
 * Ownership: tamis_bayes_open() returns a handle the caller releases with tamis_bayes_close().
 * tamis_bayes_tokenize_*() return token sets released with tamis_bayes_tokens_free(). Strings
 * returned by accessors belong to the object they came from. Callers own every buffer they pass.
 *
 * Threads: a handle is used by one thread at a time; open one handle per thread (cheap: the env is
 * shared). Reads use short read transactions and never block the writer; one write transaction
 * per environment at a time (LMDB serialises writers, across processes too). When the map is full
 * the writer grows it and replays the batch; growth briefly waits for read transactions of this
 * process to end.
 *
 * Errors: 0 or a positive count on success, negative TAMIS_E* on failure with a message in the
 * caller's err buffer (TAMIS_EDB: LMDB failure, TAMIS_EIO: file system, TAMIS_EPARSE: bad backup,
 * TAMIS_EINVAL: bad argument or state, TAMIS_ENOMEM). The library never prints or exits.
 */
#ifndef TAMIS_BAYES_H
#define TAMIS_BAYES_H

#include "tamis/core.h"
#include "tamis/msg.h"

#include <stdint.h>
#include <time.h>

/* ---- tokenizer --------------------------------------------------------------------------- */

/* Token sources (bayes_token_sources). */
enum {
    TAMIS_BAYES_SRC_HEADER = 1 << 0,
    TAMIS_BAYES_SRC_VISIBLE = 1 << 1,
    TAMIS_BAYES_SRC_INVISIBLE = 1 << 2,
    TAMIS_BAYES_SRC_URI = 1 << 3,
    TAMIS_BAYES_SRC_MIMEPART = 1 << 4,
    TAMIS_BAYES_SRC_DEFAULT = 0xf, /* header visible invisible uri */
};

/* A pseudo header added to the header tokens (SA message metadata such as
 * x-spam-relays-untrusted); computed by the caller, which knows the trust path. */
typedef struct {
    const char *name;
    const char *value;
} tamis_bayes_meta_t;

/* Tokenizer modes (bayes_token_mode). SA: SpamAssassin's tokens exactly (imported databases,
 * sa-learn --restore). TAMIS: the SA tokens plus word pairs of the visible body text in a sliding
 * window ("2:<w1> <w2>" adjacent, "3:<w1> <w3>" one word skipped, OSB-style as in CRM114/Rspamd);
 * pair words are ASCII-lower-cased, stripped of punctuation, stop words kept. */
typedef enum {
    TAMIS_BAYES_TOKMODE_SA = 0,
    TAMIS_BAYES_TOKMODE_TAMIS = 1,
} tamis_bayes_tokmode_t;

/* "sa" / "tamis" <-> mode; parse returns -1 for an unknown name. */
int tamis_bayes_tokmode_parse(const char *name);
const char *tamis_bayes_tokmode_name(tamis_bayes_tokmode_t m);

typedef struct {
    tamis_bayes_tokmode_t mode;     /* default TAMIS_BAYES_TOKMODE_SA */
    unsigned pair_window;           /* TAMIS mode: 2 = adjacent pairs, 3 = also skip-1 pairs
                                       (default 3; 0 = the mode's default) */
    unsigned sources;               /* TAMIS_BAYES_SRC_* (default TAMIS_BAYES_SRC_DEFAULT) */
    unsigned max_token_length;      /* bayes_max_token_length (default 15, bounds 3..200) */
    bool stopwords;                 /* English stop-word list (default true) */
    const tamis_bayes_meta_t *meta; /* borrowed for the call; may be NULL */
    size_t meta_count;
    const char *const *ignore_headers; /* bayes_ignore_header names, borrowed; may be NULL */
    size_t ignore_header_count;
    bool stock_ignores; /* also the ~330 bayes_ignore_header names of SA's stock rules (default
                           true: sa-learn with the stock rules ignores them) */
    bool relay_meta;    /* when meta is NULL, derive x-spam-relays-* from the Received chain with
                           SA's inferred trust (no trusted_networks configured); default true */
} tamis_bayes_tokopts_t;

void tamis_bayes_tokopts_default(tamis_bayes_tokopts_t *o);

/* A message's token set: unique 5-byte keys (last 40 bits of SHA-1), with the readable strings. */
typedef struct tamis_bayes_tokens tamis_bayes_tokens_t;

#define TAMIS_BAYES_KEY_LEN 5

/* Tokenizes a parsed message (header fields, body lines, invisible text, URIs). o NULL = defaults.
 * *out is owned by the caller. Errors: TAMIS_ENOMEM. */
int tamis_bayes_tokenize_msg(const tamis_msg_t *m, const tamis_bayes_tokopts_t *o,
                             tamis_bayes_tokens_t **out, char *err, size_t errlen);

/* Raw entry point (tests, tools): headers is "Name: value\n" lines (unfolded or folded), body is
 * text lines split on '\n' (the first line plays the Subject's role only if the caller puts it
 * there). Either may be NULL. */
int tamis_bayes_tokenize_text(const char *headers, size_t hlen, const char *body, size_t blen,
                              const tamis_bayes_tokopts_t *o, tamis_bayes_tokens_t **out, char *err,
                              size_t errlen);

void tamis_bayes_tokens_free(tamis_bayes_tokens_t *t);
size_t tamis_bayes_tokens_count(const tamis_bayes_tokens_t *t);
/* Readable token i (NUL-terminated, owned by t) and its 5-byte key. */
const char *tamis_bayes_tokens_string(const tamis_bayes_tokens_t *t, size_t i);
const uint8_t *tamis_bayes_tokens_key(const tamis_bayes_tokens_t *t, size_t i);
/* Is this readable token in the set? */
bool tamis_bayes_tokens_has(const tamis_bayes_tokens_t *t, const char *token);

/* The 5-byte key of a token string: last 5 bytes of SHA-1. */
void tamis_bayes_token_key(const char *token, size_t len, uint8_t key[TAMIS_BAYES_KEY_LEN]);

/* SHA-1 of data as 40 lower-case hex digits + NUL. */
void tamis_bayes_sha1_hex(const void *data, size_t len, char hex[41]);

/* Message ids for the seen map: gen = SHA1hex(To\n \0 Date\n \0 SHA1hex(body, CRLF→LF)) +
 * "@sa_generated" (SA's generate_msgid); mid = Message-Id without <> ("" if none). Returns 0,
 * or TAMIS_ENOMEM when no digest context could be had (gen is then a fixed dummy). */
int tamis_bayes_msgids(const tamis_msg_t *m, char gen[80], char *mid, size_t midlen);

/* Receive time of a message as SA computes it (first parseable Received date, else Date, else
 * now); now = 0 means time(NULL). */
time_t tamis_bayes_msg_atime(const tamis_msg_t *m, time_t now);

/* The message without SpamAssassin/Tamis markup, as sa-learn and spamd's TELL learn a message
 * carrying X-Spam-Checker-Version (remove_spamassassin_markup): the report_safe wrapper gives
 * back the original, X-Spam-Prev-* headers are restored, other X-Spam-* fields removed. ctype is
 * the decoded Content-Type ("" if none). Returns a malloc'ed copy (caller frees) or NULL on
 * allocation failure. */
char *tamis_bayes_remove_markup(const char *data, size_t len, const char *ctype, size_t *outlen);

/* ---- store ------------------------------------------------------------------------------- */

typedef struct tamis_bayes tamis_bayes_t;

typedef struct {
    const char *user;    /* per-user store name (<= 64 bytes of [A-Za-z0-9._@+-]); NULL = "" */
    size_t map_size;     /* initial map size in bytes (default 64 MiB); grows when full */
    size_t max_map_size; /* growth cap (default 64 GiB) */
    bool read_only;      /* no writes: learn/restore/expire fail with TAMIS_EINVAL */
    bool no_sync;        /* no fsync at commit (tests, fuzzing): a killed process loses
                            nothing, a machine crash may lose recent batches. Environment-wide
                            flags are fixed by the first open in the process. */
} tamis_bayes_options_t;

void tamis_bayes_options_default(tamis_bayes_options_t *o);

/* Opens (creating the folder and databases if needed, unless read_only) the store of o->user in
 * the environment folder path. o NULL = defaults. Errors: TAMIS_EIO, TAMIS_EDB, TAMIS_EINVAL. */
int tamis_bayes_open(const char *path, const tamis_bayes_options_t *o, tamis_bayes_t **out,
                     char *err, size_t errlen);
/* Aborts an open batch (nothing of it is kept), releases the handle. NULL is a no-op. */
void tamis_bayes_close(tamis_bayes_t *b);

/* Magic records. */
typedef struct {
    unsigned version; /* 3 */
    uint64_t nspam, nham, ntokens;
    uint32_t oldest_atime, newest_atime;
    uint32_t last_journal_sync, last_expire, last_expire_atime_delta, last_expire_reduce;
    tamis_bayes_tokmode_t token_mode; /* Tamis: the mode its tokens were made with */
} tamis_bayes_magic_t;

int tamis_bayes_magic(tamis_bayes_t *b, tamis_bayes_magic_t *out, char *err, size_t errlen);

/* The store's token mode (SA for stores that never recorded one, and on errors). Learning
 * (tamis_bayes_learn_msg) and scanning tokenize in this mode whatever the caller's tokopts say. */
tamis_bayes_tokmode_t tamis_bayes_store_tokmode(tamis_bayes_t *b);
/* Records the token mode of a store. Changing it needs an empty store (nothing learned, no
 * tokens): else TAMIS_EINVAL. Not while a batch is open. tamis_bayes_clear() resets it to SA;
 * tamis_bayes_restore() sets it from the backup (a "v 1 token_mode_tamis" line, else SA). */
int tamis_bayes_set_tokmode(tamis_bayes_t *b, tamis_bayes_tokmode_t mode, char *err, size_t errlen);

/* Current map size in bytes (to observe growth). */
size_t tamis_bayes_map_size(tamis_bayes_t *b);

/* Write batches: learn/forget calls between begin and commit share one write transaction, so many
 * messages cost one fsync. Without begin, each learn call commits by itself. A kill before commit
 * leaves the store as of the previous commit. */
int tamis_bayes_begin(tamis_bayes_t *b, char *err, size_t errlen);
int tamis_bayes_commit(tamis_bayes_t *b, char *err, size_t errlen);
void tamis_bayes_abort(tamis_bayes_t *b);

typedef enum {
    TAMIS_BAYES_HAM = 0,
    TAMIS_BAYES_SPAM = 1,
    TAMIS_BAYES_FORGET = 2,
} tamis_bayes_class_t;

/* Learns a token set as spam/ham or forgets it. msgid is stored in the seen map (required);
 * msgid2 (may be NULL or "") is also looked up. Learning a message already learned in the same
 * class is a no-op; in the other class it is forgotten first (unless no_relearn: then no-op).
 * FORGET undoes exactly one learn; unknown messages are a no-op. atime is the token access time.
 * Returns 1 if the store changed, 0 for a no-op, negative on error (the batch is then aborted). */
int tamis_bayes_learn_tokens(tamis_bayes_t *b, const tamis_bayes_tokens_t *t, const char *msgid,
                             const char *msgid2, time_t atime, tamis_bayes_class_t cls,
                             bool no_relearn, char *err, size_t errlen);

/* Tokenizes and learns a parsed message with its SA message ids and receive time. */
int tamis_bayes_learn_msg(tamis_bayes_t *b, const tamis_msg_t *m, const tamis_bayes_tokopts_t *o,
                          tamis_bayes_class_t cls, bool no_relearn, char *err, size_t errlen);

/* A message made ready for learning without the store (its ids, receive time and tokens), so
 * that trainers can tokenize on several threads and learn in order on one. */
typedef struct tamis_bayes_prep tamis_bayes_prep_t;

/* Thread-safe. o (NULL = defaults) must carry the store's token mode
 * (tamis_bayes_store_tokmode). *out is the caller's, released with tamis_bayes_prep_free(). */
int tamis_bayes_prepare(const tamis_msg_t *m, const tamis_bayes_tokopts_t *o,
                        tamis_bayes_prep_t **out, char *err, size_t errlen);
void tamis_bayes_prep_free(tamis_bayes_prep_t *p);
/* tamis_bayes_learn_msg() for a prepared message: TAMIS_EINVAL when it was tokenized in another
 * mode than the store's. */
int tamis_bayes_learn_prep(tamis_bayes_t *b, const tamis_bayes_prep_t *p, tamis_bayes_class_t cls,
                           bool no_relearn, char *err, size_t errlen);

/* Seen map lookup: 's', 'h', or 0 when unknown (returned as the value). Negative on error. */
int tamis_bayes_seen(tamis_bayes_t *b, const char *msgid, char *err, size_t errlen);

/* ---- classification ---------------------------------------------------------------------- */

#define TAMIS_BAYES_FW_S 0.030
#define TAMIS_BAYES_FW_X 0.538
#define TAMIS_BAYES_MIN_PROB_STRENGTH 0.346
#define TAMIS_BAYES_N_SIGNIFICANT 150

typedef enum {
    TAMIS_BAYES_OK = 0,         /* prob is valid */
    TAMIS_BAYES_NOT_ENOUGH = 1, /* nspam < min_spam or nham < min_ham: no score */
    TAMIS_BAYES_NO_TOKENS = 2,  /* no token known / none strong enough: no score (_BAYES_ 0.5) */
} tamis_bayes_status_t;

typedef struct {
    unsigned min_spam, min_ham; /* bayes_min_spam_num / bayes_min_ham_num (default 200 / 200) */
    bool use_hapaxes;           /* bayes_use_hapaxes (default true) */
} tamis_bayes_params_t;

void tamis_bayes_params_default(tamis_bayes_params_t *p);

typedef struct {
    tamis_bayes_status_t status;
    double prob;           /* 0.5 unless status is OK */
    uint64_t nspam, nham;  /* store counts at classification time */
    size_t tokens_total;   /* tokens of the message (BAYESTC) */
    size_t tokens_learned; /* found in the store with a probability (BAYESTCLEARNED) */
    size_t tokens_used;    /* kept for combining */
    size_t spammy, hammy;  /* BAYESTCSPAMMY / BAYESTCHAMMY */
} tamis_bayes_result_t;

/* Classifies a token set in one short read transaction. p NULL = defaults. */
int tamis_bayes_classify(tamis_bayes_t *b, const tamis_bayes_tokens_t *t,
                         const tamis_bayes_params_t *p, tamis_bayes_result_t *res, char *err,
                         size_t errlen);

/* One token used in the final calculation (for _SPAMMYTOKENS_/_HAMMYTOKENS_ and atime touch). */
typedef struct {
    const char *token; /* readable string, owned by the token set passed in */
    uint8_t key[TAMIS_BAYES_KEY_LEN];
    double prob;
    uint32_t spam, ham, atime;
} tamis_bayes_token_info_t;

/* tamis_bayes_classify() that also returns the tokens kept for combining, strongest first:
 * *used is malloc'ed (caller frees; NULL when none), *nused its length. */
int tamis_bayes_classify_detail(tamis_bayes_t *b, const tamis_bayes_tokens_t *t,
                                const tamis_bayes_params_t *p, tamis_bayes_result_t *res,
                                tamis_bayes_token_info_t **used, size_t *nused, char *err,
                                size_t errlen);

/* SA's tok_touch_all: raises the atime of these tokens to atime (never lowers it; unknown tokens
 * are ignored), in one write transaction or in the open batch. keys holds n 5-byte keys.
 * Tokens whose atime is less than 12 h older than atime are left as they are (expiry's finest
 * step is 12 h), and outside a batch the keys are first looked up in a read transaction: when
 * none would move, no write transaction happens (most scans of a busy store). */
int tamis_bayes_touch(tamis_bayes_t *b, const uint8_t *keys, size_t n, time_t atime, char *err,
                      size_t errlen);

/* Robinson f(w) of a token with counts s/n given nspam/nham; negative if undefined (s+n below
 * the threshold, or ns or nh is 0). */
double tamis_bayes_token_prob(uint64_t s, uint64_t n, uint64_t ns, uint64_t nh, bool use_hapaxes);
/* Chi-square combining with SA's class prior of n probabilities (already filtered). Returns a
 * negative value when undefined (n = 0 or ns + nh = 0). */
double tamis_bayes_combine(uint64_t ns, uint64_t nh, const double *probs, size_t n);

/* ---- maintenance ------------------------------------------------------------------------- */

typedef struct {
    uint64_t max_db_size; /* bayes_expiry_max_db_size (default 150000) */
    bool force;           /* skip the "due" checks (sa-learn --force-expire) */
    uint64_t min_keep;    /* never keep fewer tokens than this (SA: 100000) */
    uint64_t min_reduce;  /* skip when fewer would go (SA: 1000) */
    time_t now;           /* 0 = time(NULL) */
} tamis_bayes_expire_opts_t;

typedef struct {
    bool ran; /* tokens were actually removed */
    uint64_t kept, deleted;
    uint32_t atime_delta;
    double hapax_pct, lowfreq_pct; /* 1-occurrence and < 8 occurrences, in percent of kept */
} tamis_bayes_expire_report_t;

void tamis_bayes_expire_opts_default(tamis_bayes_expire_opts_t *o);
/* SA's expiry: removes tokens by last access (steps of 12 h × 2^k) so ntokens drops towards
 * max(75% of max_db_size, min_keep) without going under it. Returns 1 if tokens were removed. */
int tamis_bayes_expire(tamis_bayes_t *b, const tamis_bayes_expire_opts_t *o,
                       tamis_bayes_expire_report_t *rep, char *err, size_t errlen);

/* Deletes every token, seen entry and magic record of this user. */
int tamis_bayes_clear(tamis_bayes_t *b, char *err, size_t errlen);

/* Output sink for dump/backup: returns 0 or a negative TAMIS_E* to stop. */
typedef int (*tamis_bayes_write_fn)(void *ctx, const char *data, size_t len);

/* sa-learn --backup format (v/t/s lines). */
int tamis_bayes_backup(tamis_bayes_t *b, tamis_bayes_write_fn w, void *ctx, char *err,
                       size_t errlen);

typedef struct {
    uint64_t tokens, seen, skipped; /* lines loaded / ignored (bad or zero-count lines) */
} tamis_bayes_restore_report_t;

/* sa-learn --restore: replaces this user's store with a version 2 or 3 backup, in one write
 * transaction (all or nothing). now = 0: time(NULL) for the atime clamp. */
int tamis_bayes_restore(tamis_bayes_t *b, const char *data, size_t len, time_t now,
                        tamis_bayes_restore_report_t *rep, char *err, size_t errlen);

enum { TAMIS_BAYES_DUMP_MAGIC = 1, TAMIS_BAYES_DUMP_DATA = 2, TAMIS_BAYES_DUMP_ALL = 3 };

/* sa-learn --dump format: "%3.3f %10u %10u %10u  %s\n" lines. */
int tamis_bayes_dump(tamis_bayes_t *b, unsigned what, tamis_bayes_write_fn w, void *ctx, char *err,
                     size_t errlen);

#endif
