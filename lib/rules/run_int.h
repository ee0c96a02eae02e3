/*
 * Private state of one tamis_rules_run() call, shared by run.c and header.c: the per-message
 * header-expression cache. Not installed.
 */
#ifndef TAMIS_RUN_INT_H
#define TAMIS_RUN_INT_H

#include "rules/rules_int.h"

typedef struct tamis__engine tamis__engine_t;

/* Cache of tamis__header_get results for this message (value may be NULL = undefined). */
bool tamis__hcache_get(tamis__engine_t *e, const char *expr, const char **out);
void tamis__hcache_put(tamis__engine_t *e, const char *expr, const char *value);

/* A field's raw value as SA's raw_header keeps it (leading blanks, folding, final '\n'). */
const char *tamis__header_raw_value(tamis_arena_t *a, const tamis_header_t *h);

#endif
