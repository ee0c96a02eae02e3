/*
 * libFuzzer target for lib/auth's DMARC record parser, the tag-list parser it shares with DKIM,
 * and the From: author-domain extraction. Invariants: a parsed record is a DMARC record, pct is at
 * most 100, an unparsed p= leaves the policy at none; an author domain is lower case, non-empty,
 * without white space or '@', and aligns with itself and (relaxed) its organisational domain.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/auth/dkim_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    tamis__dmarc_rec_t r;
    if (tamis__dmarc_parse(p, size, &r) == 0) {
        if (!tamis__dmarc_is_record(p, size) || r.pct > 100 || (!r.has_pct && r.pct != 100))
            abort();
        if (!r.valid_p && r.p != TAMIS_DMARC_POLICY_NONE)
            abort();
    }
    tamis__tag_t tags[TAMIS__TAG_MAX];
    size_t count;
    if (tamis__taglist_parse(p, size, tags, TAMIS__TAG_MAX, &count) == 0) {
        for (size_t i = 0; i < count; i++) {
            if (tags[i].name.len == 0 || tags[i].name.ptr < p ||
                tags[i].value.ptr + tags[i].value.len > p + size)
                abort();
            if (tamis__tag_find(tags, count, "v") && count == 0)
                abort();
        }
    }
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    tamis_arena_t *arena = tamis_arena_new(0);
    char *d = tamis__author_domain(s, arena);
    if (d) {
        if (!d[0])
            abort();
        for (const char *q = d; *q; q++)
            if (isupper((unsigned char)*q) || isspace((unsigned char)*q) || *q == '@')
                abort();
        const char *o = tamis__org_domain(d, arena);
        if (!o || strlen(o) > strlen(d))
            abort();
        /* the verdict for that author under a fixed record: its own domain always aligns */
        tamis__dmarc_rec_t rec;
        static const char txt[] = "v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s";
        if (tamis__dmarc_parse(txt, sizeof(txt) - 1, &rec) != 0)
            abort();
        const char *doms[1] = {d};
        tamis_dmarc_policy_t pol;
        if (tamis__dmarc_decide(&rec, d, size & 1, doms, 1, NULL, size % 100, arena, &pol) !=
            TAMIS_AUTH_PASS)
            abort();
        if (tamis__dmarc_decide(&rec, d, size & 1, NULL, 0, o, size % 100, arena, &pol) !=
            TAMIS_AUTH_PASS)
            abort(); /* aspf relaxed: the organisational domain aligns */
    }
    tamis_arena_free(arena);
    free(s);
    return 0;
}
