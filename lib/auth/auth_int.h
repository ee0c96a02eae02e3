/* lib/auth/auth_int.h: internals shared by the files of lib/auth. */
#ifndef TAMIS_AUTH_INT_H
#define TAMIS_AUTH_INT_H

#include "tamis/auth.h"
typedef struct tamis__spf tamis__spf_t;
/* Starts an SPF check_host() for ip / domain / sender (RFC 7208 §4): issues the first TXT lookup
 * through dns. helo is for the %{h} macro. Allocates from arena; NULL only on ENOMEM. */
tamis__spf_t *tamis__spf_start(const tamis_auth_dns_t *dns, tamis_arena_t *arena, const char *ip,
                               const char *domain, const char *sender, const char *helo);
/* Runs the evaluation to its end (waiting on dns as needed) and returns the result; idempotent. */
tamis_auth_status_t tamis__spf_finish(tamis__spf_t *s);

#endif
