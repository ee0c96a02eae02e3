/*
 * Private interface between the files of lib/net: answer construction (answer.c) for the
 * resolver (resolver.c). Not installed.
 */
#ifndef TAMIS_NET_INT_H
#define TAMIS_NET_INT_H

#include "tamis/net.h"

/* A new answer without records (timeouts, errors, cancellations): one reference. Never NULL:
 * without memory it is a shared, never-freed ERROR answer. */
const tamis_net_answer_t *tamis__net_answer_status(tamis_net_type_t type, tamis_net_status_t status,
                                                   uint32_t ttl);

/* Whether the resolver and the parser know record type `type`. */
bool tamis__net_type_ok(tamis_net_type_t type);

/* Validates a query name and writes its canonical form (lower case, no trailing dot) to out
 * (>= 256 bytes). Returns 0 or TAMIS_EINVAL. */
int tamis__net_name_canon(const char *name, char *out, size_t outlen);

#endif
