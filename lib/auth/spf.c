/* Placeholder: replaced by the SPF implementation (lib/auth/spf.c from the SPF branch). */
#include "auth/auth_int.h"

struct tamis__spf {
    int unused;
};

tamis__spf_t *tamis__spf_start(const tamis_auth_dns_t *dns, tamis_arena_t *arena, const char *ip,
                               const char *domain, const char *sender, const char *helo)
{
    (void)dns; (void)ip; (void)domain; (void)sender; (void)helo;
    return tamis_arena_calloc(arena, 1, sizeof(tamis__spf_t));
}

tamis_auth_status_t tamis__spf_finish(tamis__spf_t *s)
{
    (void)s;
    return TAMIS_AUTH_NONE;
}
