/*
 * libFuzzer target for the sa-learn backup parser (tamis_bayes_restore) and, on the same bytes,
 * the raw-text tokenizer. A restore that succeeds must back up and restore again to the same
 * magic counts.
 */
#include "tamis/bayes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tamis_bayes_t *db;

static int sink(void *ctx, const char *data, size_t len)
{
    return tamis_buf_append(ctx, data, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (!db) {
        char dir[] = "/tmp/tamis-fuzz-backup-XXXXXX";
        if (!mkdtemp(dir))
            abort();
        tamis_bayes_options_t o;
        tamis_bayes_options_default(&o);
        o.no_sync = true;
        if (tamis_bayes_open(dir, &o, &db, err, sizeof err) != 0)
            abort();
    }
    tamis_bayes_restore_report_t rep;
    if (tamis_bayes_restore(db, (const char *)data, size, 1700000000, &rep, err, sizeof err) == 0) {
        tamis_bayes_magic_t a, b;
        tamis_buf_t out;
        tamis_buf_init(&out, 0);
        if (tamis_bayes_magic(db, &a, err, sizeof err) != 0 ||
            tamis_bayes_backup(db, sink, &out, err, sizeof err) != 0 ||
            tamis_bayes_restore(db, out.data, out.len, 1700000000, &rep, err, sizeof err) != 0 ||
            tamis_bayes_magic(db, &b, err, sizeof err) != 0)
            abort();
        if (a.nspam != b.nspam || a.nham != b.nham || a.ntokens != b.ntokens)
            abort();
        tamis_buf_free(&out);
    }
    tamis_bayes_tokens_t *t = NULL;
    size_t half = size / 2;
    if (tamis_bayes_tokenize_text((const char *)data, half, (const char *)data + half, size - half,
                                  NULL, &t, err, sizeof err) == 0)
        tamis_bayes_tokens_free(t);
    return 0;
}
