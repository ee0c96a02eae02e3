/*
 * tamis-learn internals: SpamAssassin markup removal before learning (see markup.c).
 */
#ifndef TAMIS_TRAINING_MARKUP_H
#define TAMIS_TRAINING_MARKUP_H

#include <stdbool.h>
#include <stddef.h>

/* Returns a malloc'ed copy of the message without SpamAssassin markup (caller frees), or NULL on
 * allocation failure. ctype is the decoded Content-Type of the message ("" if none). */
char *tamis__learn_remove_markup(const char *data, size_t len, const char *ctype, size_t *outlen);

#endif
