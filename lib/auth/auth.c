/*
 * auth: the orchestration of SPF, DKIM and DMARC for one message (see include/tamis/auth.h).
 *
 * tamis_auth_start() does everything that needs no answer: it parses the DKIM-Signature fields,
 * hashes the canonical bodies (the CPU work overlaps with DNS), and starts the key lookups, the
 * DMARC lookups (the author domain and, speculatively, its organisational domain, so a missing
 * record costs no second round trip) and the two SPF checks (spf.c). tamis_auth_finish() waits
 * for the answers in that order, verifies the signatures (OpenSSL EVP), then evaluates DMARC
 * from the SPF and DKIM results, as Mail::DMARC does for SpamAssassin's DMARC plugin.
 *
 * A lookup without an answer (deadline, SERVFAIL, query cap) gives temperror, never pass or fail.
 * The semantics of the eval functions follow SpamAssassin 4.0.1's DKIM, DMARC and SPF plugins;
 * docs/auth.md lists where we differ and why.
 */
#include "auth/auth_int.h"
#include "auth/dkim_int.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MIN_KEY_BITS 1024 /* SpamAssassin's dkim_minimum_key_bits default */

const char *tamis_auth_status_name(tamis_auth_status_t s)
{
    switch (s) {
    case TAMIS_AUTH_NONE:
        return "none";
    case TAMIS_AUTH_PASS:
        return "pass";
    case TAMIS_AUTH_FAIL:
        return "fail";
    case TAMIS_AUTH_SOFTFAIL:
        return "softfail";
    case TAMIS_AUTH_NEUTRAL:
        return "neutral";
    case TAMIS_AUTH_TEMPERROR:
        return "temperror";
    case TAMIS_AUTH_PERMERROR:
        return "permerror";
    }
    return "none";
}

/* ---- the DNS adapter over a tamis_net batch ----------------------------------------------------
 */

typedef struct {
    tamis_net_batch_t *b;
    double deadline_ms;
} batch_dns_t;

static int batch_start(void *ctx, const char *name, tamis_net_type_t type, size_t *slot)
{
    batch_dns_t *d = ctx;
    return tamis_net_batch_add(d->b, name, type, slot);
}

static const tamis_net_answer_t *batch_wait(void *ctx, size_t slot)
{
    batch_dns_t *d = ctx;
    return tamis_net_batch_wait_slot(d->b, slot, d->deadline_ms);
}

int tamis_auth_dns_batch(tamis_auth_dns_t *out, tamis_net_batch_t *b, double deadline_ms,
                         tamis_arena_t *arena)
{
    if (!out || !b || !arena)
        return TAMIS_EINVAL;
    batch_dns_t *d = tamis_arena_calloc(arena, 1, sizeof(*d));
    if (!d)
        return TAMIS_ENOMEM;
    d->b = b;
    d->deadline_ms = deadline_ms;
    out->start = batch_start;
    out->wait = batch_wait;
    out->ctx = d;
    return 0;
}

/* ---- state --------------------------------------------------------------------------------- */

typedef struct {
    bool started;
    size_t slot;
} lookup_t;

typedef struct {
    const tamis_header_t *field; /* the DKIM-Signature */
    tamis__dkim_sig_t sig;
    bool parsed;
    tamis_auth_status_t early; /* set (with why) when the signature fails before any lookup */
    const char *why;
    unsigned char bodyhash[EVP_MAX_MD_SIZE];
    unsigned bodyhash_len;
    lookup_t key;
} sig_state_t;

struct tamis_auth {
    tamis_arena_t *arena;
    const tamis_msg_t *m;
    tamis_auth_input_t in;
    tamis_auth_dns_t dns;
    bool have_dns;
    bool finished;
    tamis_auth_result_t res;
    /* SPF */
    tamis__spf_t *spf_mf, *spf_helo;
    /* DKIM */
    sig_state_t *st;
    tamis_dkim_sig_t *pub;
    size_t nsig;
    /* DMARC */
    const char *org;
    lookup_t dmarc_at, dmarc_org;
    /* ADSP: the override that applies, else the two lookups */
    char adsp_override;
    lookup_t adsp_rec, adsp_dom;
};

static bool lookup_start(tamis_auth_t *a, lookup_t *l, const char *name)
{
    l->started = a->dns.start(a->dns.ctx, name, TAMIS_NET_TXT, &l->slot) == 0;
    return l->started;
}

/* The answer of a started lookup: NULL means temperror. */
static const tamis_net_answer_t *lookup_wait(tamis_auth_t *a, const lookup_t *l)
{
    if (!l->started)
        return NULL;
    const tamis_net_answer_t *ans = a->dns.wait(a->dns.ctx, l->slot);
    if (!ans)
        return NULL;
    if (ans->status == TAMIS_NET_OK || ans->status == TAMIS_NET_NXDOMAIN)
        return ans;
    return NULL; /* SERVFAIL, REFUSED, TIMEOUT, ERROR, CANCELLED */
}

/* ---- DKIM: body hashes in start ------------------------------------------------------------ */

static void md_sink(void *ctx, const char *p, size_t n)
{
    EVP_DigestUpdate((EVP_MD_CTX *)ctx, p, n);
}

static const EVP_MD *sig_md(const tamis__dkim_sig_t *s)
{
    return s->alg == TAMIS__DKIM_RSA_SHA1 ? EVP_sha1() : EVP_sha256();
}

static int body_hash(sig_state_t *st, sig_state_t *prev, size_t nprev, tamis_slice_t body)
{
    const tamis__dkim_sig_t *s = &st->sig;
    for (size_t i = 0; i < nprev; i++) {
        const tamis__dkim_sig_t *p = &prev[i].sig;
        if (prev[i].parsed && !prev[i].early && prev[i].bodyhash_len && sig_md(p) == sig_md(s) &&
            p->body_relaxed == s->body_relaxed && p->has_l == s->has_l &&
            (!s->has_l || p->l == s->l)) {
            memcpy(st->bodyhash, prev[i].bodyhash, prev[i].bodyhash_len);
            st->bodyhash_len = prev[i].bodyhash_len;
            return 0;
        }
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return TAMIS_ENOMEM;
    int rc = 0;
    if (EVP_DigestInit_ex(ctx, sig_md(s), NULL) != 1) {
        rc = TAMIS_EINTERNAL;
    } else {
        uint64_t total = tamis__dkim_canon_body(body.ptr, body.len, s->body_relaxed,
                                                s->has_l ? s->l : UINT64_MAX, md_sink, ctx);
        if (s->has_l && s->l > total) {
            st->early = TAMIS_AUTH_FAIL;
            st->why = "l= beyond the body";
        }
        if (EVP_DigestFinal_ex(ctx, st->bodyhash, &st->bodyhash_len) != 1)
            rc = TAMIS_EINTERNAL;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int dkim_start(tamis_auth_t *a, tamis_slice_t body, double now)
{
    size_t nh = tamis_msg_header_count(a->m), total = 0;
    for (size_t i = 0; i < nh; i++)
        if (strcasecmp(tamis_msg_header_at(a->m, i)->name, "DKIM-Signature") == 0)
            total++;
    size_t n = total < TAMIS__DKIM_MAX_SIGS ? total : TAMIS__DKIM_MAX_SIGS;
    if (!n)
        return 0;
    a->st = tamis_arena_calloc(a->arena, n, sizeof(*a->st));
    a->pub = tamis_arena_calloc(a->arena, n, sizeof(*a->pub));
    if (!a->st || !a->pub)
        return TAMIS_ENOMEM;
    for (size_t i = 0; i < nh && a->nsig < n; i++) {
        const tamis_header_t *h = tamis_msg_header_at(a->m, i);
        if (strcasecmp(h->name, "DKIM-Signature") != 0)
            continue;
        sig_state_t *st = &a->st[a->nsig];
        tamis_dkim_sig_t *pub = &a->pub[a->nsig];
        a->nsig++;
        st->field = h;
        int rc = tamis__dkim_sig_parse(h->raw, strlen(h->raw), a->arena, &st->sig, &st->why);
        if (rc == TAMIS_ENOMEM)
            return rc;
        pub->domain = st->sig.d;
        pub->selector = st->sig.s;
        if (rc) {
            st->early = TAMIS_AUTH_PERMERROR;
            continue;
        }
        st->parsed = true;
        pub->identity_domain = st->sig.i_domain;
        static const char *const algs[] = {"", "rsa-sha1", "rsa-sha256", "ed25519-sha256"};
        pub->algorithm = algs[st->sig.alg];
        if (st->sig.has_x && (double)st->sig.x < now) {
            /* Mail::DKIM refuses an expired signature before any lookup ("invalid") */
            st->early = TAMIS_AUTH_PERMERROR;
            st->why = "signature expired";
            continue;
        }
        if ((rc = body_hash(st, a->st, a->nsig - 1, body)) != 0)
            return rc;
        if (st->early)
            continue;
        if (!a->have_dns)
            continue;
        /* one lookup per distinct key name */
        for (size_t j = 0; j + 1 < a->nsig; j++) {
            sig_state_t *o = &a->st[j];
            if (o->key.started && strcmp(o->sig.d, st->sig.d) == 0 &&
                strcmp(o->sig.s, st->sig.s) == 0) {
                st->key = o->key;
                break;
            }
        }
        if (!st->key.started) {
            char *name = tamis_arena_printf(a->arena, "%s._domainkey.%s", st->sig.s, st->sig.d);
            if (!name)
                return TAMIS_ENOMEM;
            lookup_start(a, &st->key, name); /* a failed start is a temperror in finish */
        }
    }
    return 0;
}

/* ---- DKIM: verification in finish ---------------------------------------------------------- */

static void pkey_cleanup(void *p)
{
    EVP_PKEY_free(p);
}

static EVP_PKEY *make_key(tamis_auth_t *a, const tamis__dkim_key_t *k)
{
    EVP_PKEY *pk = NULL;
    if (!k->rsa) {
        if (k->keylen == 32)
            pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k->key, 32);
    } else {
        const unsigned char *p = k->key;
        pk = d2i_PUBKEY(NULL, &p, (long)k->keylen); /* SubjectPublicKeyInfo, as DKIM publishes */
        if (!pk) {
            p = k->key; /* a bare RSAPublicKey, as some old signers publish */
            pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)k->keylen);
        }
        if (pk && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
    }
    if (pk && tamis_arena_add_cleanup(a->arena, pkey_cleanup, pk) != 0)
        return NULL;
    return pk;
}

/* The header hash input: the h= fields (each name takes the last instance not yet used, a name
 * without one contributes nothing), then the signature field without its b= value and CRLF. */
static int header_data(tamis_auth_t *a, const sig_state_t *st, tamis_buf_t *out)
{
    size_t nh = tamis_msg_header_count(a->m);
    bool *used = tamis_arena_calloc(a->arena, nh ? nh : 1, sizeof(bool));
    if (!used)
        return TAMIS_ENOMEM;
    for (size_t k = 0; k < st->sig.hn; k++) {
        for (size_t i = nh; i-- > 0;) {
            const tamis_header_t *h = tamis_msg_header_at(a->m, i);
            if (used[i] || strcasecmp(h->name, st->sig.h[k]) != 0)
                continue;
            used[i] = true;
            tamis__dkim_canon_header(h->pristine.ptr, h->pristine.len, st->sig.hdr_relaxed, false,
                                     out);
            break;
        }
    }
    size_t len;
    char *self =
        tamis__dkim_strip_b(st->field->pristine.ptr, st->field->pristine.len, a->arena, &len);
    if (!self)
        return TAMIS_ENOMEM;
    tamis__dkim_canon_header(self, len, st->sig.hdr_relaxed, true, out);
    return out->err;
}

static bool verify_sig(const sig_state_t *st, EVP_PKEY *pk, const tamis_buf_t *data)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return false;
    bool ok = false;
    if (st->sig.alg == TAMIS__DKIM_ED25519_SHA256) {
        /* RFC 8463: Ed25519 (pure) over the SHA-256 digest of the header data */
        unsigned char dg[32];
        unsigned dl = 0;
        if (EVP_Digest(data->data, data->len, dg, &dl, EVP_sha256(), NULL) == 1 &&
            EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1)
            ok = EVP_DigestVerify(ctx, st->sig.b, st->sig.blen, dg, dl) == 1;
    } else {
        if (EVP_DigestVerifyInit(ctx, NULL, sig_md(&st->sig), NULL, pk) == 1)
            ok = EVP_DigestVerify(ctx, st->sig.b, st->sig.blen, (const unsigned char *)data->data,
                                  data->len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    return ok;
}

static void dkim_verify_one(tamis_auth_t *a, sig_state_t *st, tamis_dkim_sig_t *pub)
{
#define SET(st_, text)                                                                             \
    do {                                                                                           \
        pub->status = (st_);                                                                       \
        pub->reason = (text);                                                                      \
        return;                                                                                    \
    } while (0)
    if (st->early)
        SET(st->early, st->why);
    if (!a->have_dns)
        SET(TAMIS_AUTH_NEUTRAL, "not verified (no DNS)");
    const tamis_net_answer_t *ans = lookup_wait(a, &st->key);
    if (!ans)
        SET(TAMIS_AUTH_TEMPERROR, "key lookup failed");
    if (ans->status == TAMIS_NET_NXDOMAIN || ans->count == 0 || !ans->strs)
        SET(TAMIS_AUTH_PERMERROR, "no key");
    tamis__dkim_key_t key;
    const char *why = NULL;
    int rc = tamis__dkim_key_parse(ans->strs[0], strlen(ans->strs[0]), a->arena, &key, &why);
    if (rc == TAMIS_ENOMEM)
        SET(TAMIS_AUTH_TEMPERROR, "out of memory");
    if (rc)
        SET(TAMIS_AUTH_PERMERROR, why);
    if (key.revoked)
        SET(TAMIS_AUTH_PERMERROR, "key revoked");
    if (key.rsa != (st->sig.alg != TAMIS__DKIM_ED25519_SHA256))
        SET(TAMIS_AUTH_PERMERROR, "key type mismatch");
    if (st->sig.alg == TAMIS__DKIM_RSA_SHA1 ? !key.sha1_ok : !key.sha256_ok)
        SET(TAMIS_AUTH_PERMERROR, "hash not allowed by key");
    if (key.strict_domain && strcmp(st->sig.i_domain, st->sig.d) != 0)
        SET(TAMIS_AUTH_PERMERROR, "i= must equal d= (t=s)");
    EVP_PKEY *pk = make_key(a, &key);
    if (!pk)
        SET(TAMIS_AUTH_PERMERROR, "invalid key");
    if (key.rsa)
        pub->key_bits = (unsigned)EVP_PKEY_get_bits(pk);
    if (st->bodyhash_len != st->sig.bhlen || memcmp(st->bodyhash, st->sig.bh, st->sig.bhlen))
        SET(TAMIS_AUTH_FAIL, "body hash mismatch");
    tamis_buf_t data;
    tamis_buf_init(&data, 16u << 20);
    rc = header_data(a, st, &data);
    bool ok = rc == 0 && verify_sig(st, pk, &data);
    tamis_buf_free(&data);
    if (rc)
        SET(TAMIS_AUTH_TEMPERROR, "header data too large");
    if (!ok)
        SET(TAMIS_AUTH_FAIL, "signature verification failed");
    if (key.rsa && pub->key_bits < MIN_KEY_BITS)
        SET(TAMIS_AUTH_PASS, tamis_arena_printf(a->arena, "weak key (%u bits)", pub->key_bits));
    SET(TAMIS_AUTH_PASS, key.testing ? "key in testing mode" : NULL);
#undef SET
}

/* ---- DMARC --------------------------------------------------------------------------------- */

/* The one DMARC record among the TXT answers: 1 found (*rec filled), 0 none, -1 more than one. */
static int dmarc_record(const tamis_net_answer_t *ans, const char **rec)
{
    int found = 0;
    if (ans->status != TAMIS_NET_OK || !ans->strs)
        return 0;
    for (size_t i = 0; i < ans->count; i++) {
        if (tamis__dmarc_is_record(ans->strs[i], strlen(ans->strs[i]))) {
            *rec = ans->strs[i];
            found++;
        }
    }
    return found > 1 ? -1 : found;
}

static void dmarc_eval(tamis_auth_t *a)
{
    tamis_auth_result_t *r = &a->res;
    if (!r->dmarc_checked)
        return;
    const char *rec = NULL;
    bool at_org = false;
    const tamis_net_answer_t *ans = lookup_wait(a, &a->dmarc_at);
    if (!ans) {
        r->dmarc = TAMIS_AUTH_TEMPERROR;
        return;
    }
    int found = dmarc_record(ans, &rec);
    if (found == 0 && a->dmarc_org.started) {
        ans = lookup_wait(a, &a->dmarc_org);
        if (!ans) {
            r->dmarc = TAMIS_AUTH_TEMPERROR;
            return;
        }
        found = dmarc_record(ans, &rec);
        at_org = true;
    }
    if (found <= 0)
        return; /* none (several records: "too many policies", no policy either) */
    r->dmarc_has_record = true;
    tamis__dmarc_rec_t d;
    if (tamis__dmarc_parse(rec, strlen(rec), &d) != 0 || (!d.valid_p && !d.has_rua)) {
        /* Mail::DMARC gives an unusable record "fail" with disposition none (DMARC_NONE) */
        r->dmarc = TAMIS_AUTH_PERMERROR;
        r->dmarc_policy = TAMIS_DMARC_POLICY_NONE;
        return;
    }
    if (!d.valid_p) { /* RFC 7489 §6.6.3: a usable rua= makes it p=none */
        d.p = TAMIS_DMARC_POLICY_NONE;
        d.has_sp = false;
    }
    const char *dkim_doms[TAMIS__DKIM_MAX_SIGS];
    size_t nd = 0;
    for (size_t i = 0; i < r->sig_count && nd < TAMIS__DKIM_MAX_SIGS; i++)
        if (r->sigs[i].status == TAMIS_AUTH_PASS && r->sigs[i].domain)
            dkim_doms[nd++] = r->sigs[i].domain;
    /* Mail::DMARC takes the MAIL FROM pass, else the HELO pass (a null sender's postmaster@HELO
     * check is the HELO's business: SpamAssassin does not check MAIL FROM for it) */
    const char *spf_dom = NULL;
    if (r->spf_mailfrom == TAMIS_AUTH_PASS && r->spf_mailfrom_domain && r->envelope_from)
        spf_dom = r->envelope_domain;
    else if (r->spf_helo == TAMIS_AUTH_PASS && r->spf_helo_domain)
        spf_dom = r->spf_helo_domain;
    unsigned char rb = 0;
    unsigned roll = RAND_bytes(&rb, 1) == 1 ? (unsigned)rb % 100 : 0;
    r->dmarc = tamis__dmarc_decide(&d, r->author_domain, at_org, dkim_doms, nd, spf_dom, roll,
                                   a->arena, &r->dmarc_policy);
}

/* ---- ADSP ------------------------------------------------------------------------------------ */

/* SpamAssassin only considers author domains ending in a label of two or more letters/hyphens. */
static bool adsp_domain_ok(const char *d)
{
    const char *dot = strrchr(d, '.');
    if (!dot || dot == d || strlen(dot + 1) < 2)
        return false;
    for (const char *p = dot + 1; *p; p++)
        if (!isalpha((unsigned char)*p) && *p != '-')
            return false;
    return true;
}

/* The override for d: the exact domain, then "*.parent" for each parent, then "*" (the order of
 * SpamAssassin's lookups in its adsp_override hash). */
static char adsp_find_override(const tamis_auth_input_t *in, const char *d)
{
    for (size_t i = 0; i < in->adsp_override_count; i++)
        if (in->adsp_override[i].domain && strcasecmp(in->adsp_override[i].domain, d) == 0)
            return in->adsp_override[i].practice;
    for (const char *p = strchr(d, '.'); p; p = strchr(p + 1, '.')) {
        for (size_t i = 0; i < in->adsp_override_count; i++) {
            const char *o = in->adsp_override[i].domain;
            if (o && o[0] == '*' && o[1] == '.' && strcasecmp(o + 2, p + 1) == 0)
                return in->adsp_override[i].practice;
        }
    }
    for (size_t i = 0; i < in->adsp_override_count; i++)
        if (in->adsp_override[i].domain && strcmp(in->adsp_override[i].domain, "*") == 0)
            return in->adsp_override[i].practice;
    return 0;
}

static int adsp_start(tamis_auth_t *a)
{
    const char *d = a->res.author_domain;
    if (!d || !adsp_domain_ok(d))
        return 0;
    a->adsp_override = adsp_find_override(&a->in, d);
    if (a->adsp_override || !a->have_dns)
        return 0;
    char *n = tamis_arena_printf(a->arena, "_adsp._domainkey.%s", d);
    if (!n)
        return TAMIS_ENOMEM;
    lookup_start(a, &a->adsp_rec, n);
    lookup_start(a, &a->adsp_dom, d); /* any type: only NXDOMAIN matters */
    return 0;
}

/* Mail::DKIM's AuthorDomainPolicy: the "dkim=" of an ADSP record, else NXDOMAIN of the domain
 * ('N'), else unknown; no answer is unknown too. */
static void adsp_eval(tamis_auth_t *a)
{
    tamis_auth_result_t *r = &a->res;
    const char *d = r->author_domain;
    if (!r->dkim_checked || !d || !adsp_domain_ok(d))
        return;
    for (size_t i = 0; i < r->sig_count; i++) {
        const tamis_dkim_sig_t *s = &r->sigs[i];
        const char *sdid = s->identity_domain ? s->identity_domain : s->domain;
        if (!sdid || strcasecmp(sdid, d) != 0)
            continue;
        if (s->status == TAMIS_AUTH_PASS && (s->key_bits == 0 || s->key_bits >= MIN_KEY_BITS))
            return; /* a valid author domain signature */
        if (s->status == TAMIS_AUTH_TEMPERROR)
            return; /* its key lookup failed: ignored */
    }
    if (a->adsp_override) {
        r->adsp = a->adsp_override;
        return;
    }
    r->adsp = 'U';
    const tamis_net_answer_t *ans = lookup_wait(a, &a->adsp_rec);
    if (!ans)
        return;
    if (ans->status == TAMIS_NET_OK && ans->strs) {
        for (size_t i = 0; i < ans->count; i++) {
            tamis__tag_t tags[TAMIS__TAG_MAX];
            size_t n;
            const char *t = ans->strs[i];
            if (tamis__taglist_parse(t, strlen(t), tags, TAMIS__TAG_MAX, &n) != 0)
                continue;
            const tamis__tag_t *dk = tamis__tag_find(tags, n, "dkim");
            if (!dk)
                continue;
            if (dk->value.len == 3 && strncasecmp(dk->value.ptr, "all", 3) == 0)
                r->adsp = 'A';
            else if (dk->value.len == 11 && strncasecmp(dk->value.ptr, "discardable", 11) == 0)
                r->adsp = 'D';
            return;
        }
    }
    const tamis_net_answer_t *dom = lookup_wait(a, &a->adsp_dom);
    if (dom && dom->status == TAMIS_NET_NXDOMAIN)
        r->adsp = 'N';
}

/* ---- start / finish ------------------------------------------------------------------------ */

static const char *domain_of(const char *addr, tamis_arena_t *arena)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    if (!at || !at[1])
        return NULL;
    char *d = tamis_arena_strdup(arena, at + 1);
    if (!d)
        return NULL;
    size_t n = strlen(d);
    while (n && (d[n - 1] == '>' || d[n - 1] == '.' || isspace((unsigned char)d[n - 1])))
        d[--n] = '\0';
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return n ? d : NULL;
}

/* SpamAssassin skips the HELO check for an address literal and for a name without a dot. */
static bool helo_checkable(const char *helo)
{
    if (!helo || !helo[0] || !strchr(helo, '.'))
        return false;
    const char *p = helo;
    if (*p == '[' || *p == '!')
        p++;
    int dots = 0, digits = 0;
    for (; *p && *p != ']' && *p != '!'; p++) {
        if (*p == '.')
            dots++;
        else if (isdigit((unsigned char)*p))
            digits++;
        else
            return true;
    }
    return !(dots == 3 && digits > 0);
}

static int spf_start(tamis_auth_t *a)
{
    const tamis_auth_input_t *in = &a->in;
    if (in->skip_spf || !a->have_dns || !in->client_ip || !in->client_ip[0])
        return 0;
    const char *helo = in->helo && in->helo[0] ? in->helo : NULL;
    if (in->envelope_from) {
        const char *sender = in->envelope_from, *dom = NULL;
        if (!sender[0]) {
            if (helo && helo_checkable(helo)) {
                sender = tamis_arena_printf(a->arena, "postmaster@%s", helo);
                dom = helo;
            }
        } else {
            dom = domain_of(sender, a->arena);
        }
        if (sender && dom) {
            a->spf_mf = tamis__spf_start(&a->dns, a->arena, in->client_ip, dom, sender,
                                         helo ? helo : "unknown");
            if (!a->spf_mf)
                return TAMIS_ENOMEM;
            a->res.spf_mailfrom_domain = dom;
        }
    }
    if (helo && helo_checkable(helo)) {
        const char *sender = tamis_arena_printf(a->arena, "postmaster@%s", helo);
        const char *dom = tamis_arena_strdup(a->arena, helo);
        if (!sender || !dom)
            return TAMIS_ENOMEM;
        a->spf_helo = tamis__spf_start(&a->dns, a->arena, in->client_ip, dom, sender, helo);
        if (!a->spf_helo)
            return TAMIS_ENOMEM;
        a->res.spf_helo_domain = dom;
    }
    return 0;
}

int tamis_auth_start(const tamis_msg_t *m, const tamis_auth_input_t *in,
                     const tamis_auth_dns_t *dns, tamis_arena_t *arena, tamis_auth_t **out,
                     char *err, size_t errlen)
{
    if (!m || !in || !arena || !out)
        return tamis_seterr(err, errlen, TAMIS_EINVAL, "auth: missing argument");
    *out = NULL;
    tamis_auth_t *a = tamis_arena_calloc(arena, 1, sizeof(*a));
    if (!a)
        return tamis_seterr(err, errlen, TAMIS_ENOMEM, "auth: out of memory");
    a->arena = arena;
    a->m = m;
    a->in = *in;
    if (dns && dns->start && dns->wait && !in->no_dns) {
        a->dns = *dns;
        a->have_dns = true;
    }
    double now = in->now > 0 ? in->now : (double)time(NULL);

    const tamis_header_t *from = tamis_msg_header_first(m, "From");
    a->res.author_domain = from ? tamis__author_domain(from->raw, arena) : NULL;
    a->res.author_address = from ? tamis__author_address(from->raw, arena) : NULL;
    a->res.conf = in->conf;
    if (in->envelope_from && in->envelope_from[0]) {
        char *ef = tamis_arena_strdup(arena, in->envelope_from);
        if (!ef)
            return tamis_seterr(err, errlen, TAMIS_ENOMEM, "auth: out of memory");
        for (char *p = ef; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        a->res.envelope_from = ef;
    }
    a->res.envelope_domain =
        in->envelope_from && in->envelope_from[0] ? domain_of(in->envelope_from, arena) : NULL;

    int rc = spf_start(a);
    if (!rc && !in->skip_dkim) {
        rc = dkim_start(a, tamis_msg_pristine_body(m), now);
        a->res.dkim_checked = a->have_dns;
        if (!rc && a->have_dns)
            rc = adsp_start(a);
    }
    /* DMARC needs an external relay (SpamAssassin's condition) and an author domain. */
    if (!rc && !in->skip_dmarc && a->have_dns && in->client_ip && in->client_ip[0] &&
        a->res.author_domain) {
        a->res.dmarc_checked = true;
        a->org = tamis__org_domain(a->res.author_domain, arena);
        char *n1 = tamis_arena_printf(arena, "_dmarc.%s", a->res.author_domain);
        char *n2 = a->org && strcmp(a->org, a->res.author_domain) != 0
                       ? tamis_arena_printf(arena, "_dmarc.%s", a->org)
                       : NULL;
        if (!a->org || !n1)
            rc = TAMIS_ENOMEM;
        else {
            lookup_start(a, &a->dmarc_at, n1);
            if (n2)
                lookup_start(a, &a->dmarc_org, n2);
        }
    }
    if (rc)
        return tamis_seterr(err, errlen, rc, "auth: %s", tamis_strerror(rc));
    *out = a;
    return 0;
}

const tamis_auth_result_t *tamis_auth_finish(tamis_auth_t *a)
{
    if (!a)
        return NULL;
    if (a->finished)
        return &a->res;
    a->finished = true;
    tamis_auth_result_t *r = &a->res;
    r->spf_mailfrom = a->spf_mf ? tamis__spf_finish(a->spf_mf) : TAMIS_AUTH_NONE;
    r->spf_helo = a->spf_helo ? tamis__spf_finish(a->spf_helo) : TAMIS_AUTH_NONE;
    for (size_t i = 0; i < a->nsig; i++)
        dkim_verify_one(a, &a->st[i], &a->pub[i]);
    r->sigs = a->pub;
    r->sig_count = a->nsig;
    adsp_eval(a);
    dmarc_eval(a);
    return r;
}

/* ---- eval functions ------------------------------------------------------------------------ */

static bool sig_valid(const tamis_dkim_sig_t *s)
{
    return s->status == TAMIS_AUTH_PASS;
}

static bool sig_strong(const tamis_dkim_sig_t *s)
{
    return s->key_bits == 0 || s->key_bits >= MIN_KEY_BITS; /* ed25519 has no modulus */
}

/* SpamAssassin compares the domain of i= (d= when absent). */
static const char *sig_sdid(const tamis_dkim_sig_t *s)
{
    return s->identity_domain ? s->identity_domain : s->domain;
}

/* "dom" matches dom exactly, ".dom" and "*.dom" match dom and its subdomains. */
static bool domain_match(const char *sdid, const char *pat)
{
    if (!sdid)
        return false;
    const char *p = pat;
    if (p[0] == '*' && p[1] == '.')
        p++;
    if (p[0] != '.')
        return strcasecmp(sdid, pat) == 0;
    p++;
    size_t sl = strlen(sdid), pl = strlen(p);
    if (sl == pl)
        return strcasecmp(sdid, p) == 0;
    return sl > pl && sdid[sl - pl - 1] == '.' && strcasecmp(sdid + sl - pl, p) == 0;
}

static bool signed_by(const tamis_auth_result_t *r, bool must_be_valid, const char *author,
                      const char *const *args, size_t nargs)
{
    for (size_t i = 0; i < r->sig_count; i++) {
        const tamis_dkim_sig_t *s = &r->sigs[i];
        if (must_be_valid && (!sig_valid(s) || !sig_strong(s)))
            continue;
        const char *sdid = sig_sdid(s);
        if (!sdid)
            continue;
        if (author && strcasecmp(sdid, author) != 0)
            continue;
        if (!nargs)
            return true;
        for (size_t k = 0; k < nargs; k++)
            if (args[k] && domain_match(sdid, args[k]))
                return true;
    }
    return false;
}

static bool spf_is(tamis_auth_status_t got, const char *checked, const char *want)
{
    return checked && strcmp(tamis_auth_status_name(got), want) == 0;
}

/* ---- welcome lists (SpamAssassin's SPF and DKIM plugins) ----------------------------------- */

static bool list_has(const tamis_addr_list_t *l, const char *addr)
{
    for (size_t i = 0; addr && i < l->count; i++)
        if (tamis_conf_addr_match(l->items[i].pattern, addr))
            return true;
    return false;
}

/* An envelope sender in the list (or the *_auth list) with an SPF pass for it. */
static bool spf_welcome(const tamis_auth_result_t *r, const tamis_addr_list_t *spf,
                        const tamis_addr_list_t *auth)
{
    if (!r->spf_mailfrom_domain || r->spf_mailfrom != TAMIS_AUTH_PASS || !r->envelope_from)
        return false;
    return list_has(spf, r->envelope_from) || list_has(auth, r->envelope_from);
}

/* Whether some signature is valid and not weak (without one, no list entry is acceptable). */
static bool any_usable_sig(const tamis_auth_result_t *r)
{
    for (size_t i = 0; i < r->sig_count; i++)
        if (sig_valid(&r->sigs[i]) && sig_strong(&r->sigs[i]) && sig_sdid(&r->sigs[i]))
            return true;
    return false;
}

/* Whether a valid, unexpired, not weak signature's identity domain is acceptable: "" means the
 * author's own domain; "*.dom" / ".dom" a strict subdomain of dom; else that domain. */
static bool sdid_acceptable(const tamis_auth_result_t *r, const char *acc)
{
    const char *at = strrchr(acc, '@');
    if (at)
        acc = at + 1;
    bool sub = false;
    if (acc[0] == '*' && acc[1] == '.')
        acc += 2, sub = true;
    else if (acc[0] == '.')
        acc += 1, sub = true;
    for (size_t i = 0; i < r->sig_count; i++) {
        const tamis_dkim_sig_t *s = &r->sigs[i];
        const char *sdid = sig_sdid(s);
        if (!sig_valid(s) || !sig_strong(s) || !sdid)
            continue;
        if (!acc[0] && !sub) {
            if (r->author_domain && strcasecmp(sdid, r->author_domain) == 0)
                return true;
        } else if (sub) {
            size_t sl = strlen(sdid), al = strlen(acc);
            if (sl > al + 1 && sdid[sl - al - 1] == '.' && strcasecmp(sdid + sl - al, acc) == 0)
                return true;
        } else if (strcasecmp(sdid, acc) == 0) {
            return true;
        }
    }
    return false;
}

/* The author address in the *_from_dkim list (with its signing domain) or the *_auth list
 * (the author's domain), with such a signature. */
static bool dkim_welcome(const tamis_auth_result_t *r, const tamis_addr_list_t *dkim,
                         const tamis_addr_list_t *auth)
{
    if (!r->dkim_checked || !r->author_address || !any_usable_sig(r))
        return false; /* no signature could make an entry acceptable: skip the globs */
    for (size_t i = 0; i < dkim->count; i++)
        if (tamis_conf_addr_match(dkim->items[i].pattern, r->author_address) &&
            sdid_acceptable(r, dkim->items[i].rcvd ? dkim->items[i].rcvd : ""))
            return true;
    return list_has(auth, r->author_address) && sdid_acceptable(r, "");
}

static bool welcome_eval(const tamis_auth_result_t *r, const char *func, bool *hit)
{
    const tamis_conf_t *c = r->conf;
    bool def = strncmp(func, "check_for_def_", 14) == 0;
    const char *rest = func + (def ? 14 : 10);
    bool spf;
    if (strcmp(rest, "spf_welcomelist_from") == 0 || strcmp(rest, "spf_whitelist_from") == 0)
        spf = true;
    else if (strcmp(rest, "dkim_welcomelist_from") == 0 || strcmp(rest, "dkim_whitelist_from") == 0)
        spf = false;
    else
        return false;
    if (strncmp(func, "check_for_", 10) != 0)
        return false;
    if (!c)
        *hit = false;
    else if (spf)
        *hit = def ? spf_welcome(r, &c->def_welcomelist_from_spf, &c->def_welcomelist_auth)
                   : spf_welcome(r, &c->welcomelist_from_spf, &c->welcomelist_auth);
    else
        *hit = def ? dkim_welcome(r, &c->def_welcomelist_from_dkim, &c->def_welcomelist_auth)
                   : dkim_welcome(r, &c->welcomelist_from_dkim, &c->welcomelist_auth);
    return true;
}

bool tamis_auth_eval(const tamis_auth_result_t *r, const char *func, const char *const *args,
                     size_t nargs, bool *known)
{
    bool dummy;
    if (!known)
        known = &dummy;
    *known = true;
    if (!r || !func) {
        *known = false;
        return false;
    }
    bool wl;
    if (welcome_eval(r, func, &wl))
        return wl;
    /* SPF */
    if (strncmp(func, "check_for_spf_helo_", 19) == 0) {
        const char *w = func + 19;
        static const char *const ok[] = {"pass",     "neutral",   "none",     "fail",
                                         "softfail", "permerror", "temperror"};
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
            if (strcmp(w, ok[i]) == 0)
                return spf_is(r->spf_helo, r->spf_helo_domain, w);
        *known = false;
        return false;
    }
    if (strncmp(func, "check_for_spf_", 14) == 0) {
        const char *w = func + 14;
        static const char *const ok[] = {"pass",     "neutral",   "none",     "fail",
                                         "softfail", "permerror", "temperror"};
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
            if (strcmp(w, ok[i]) == 0)
                return r->envelope_from && /* SA: no MAIL FROM rule for a null sender */
                       spf_is(r->spf_mailfrom, r->spf_mailfrom_domain, w);
        *known = false;
        return false;
    }
    /* DKIM */
    bool any_valid = false;
    for (size_t i = 0; i < r->sig_count; i++)
        any_valid |= sig_valid(&r->sigs[i]);
    if (strcmp(func, "check_dkim_signed") == 0)
        return r->dkim_checked && r->sig_count &&
               (!nargs || signed_by(r, false, NULL, args, nargs));
    if (strcmp(func, "check_dkim_valid") == 0 || strcmp(func, "check_dkim_verified") == 0)
        return r->dkim_checked && any_valid && (!nargs || signed_by(r, true, NULL, args, nargs));
    if (strcmp(func, "check_dkim_valid_author_sig") == 0)
        return r->dkim_checked && r->author_domain &&
               signed_by(r, true, r->author_domain, args, nargs);
    if (strcmp(func, "check_dkim_valid_envelopefrom") == 0) {
        if (!r->dkim_checked || !r->envelope_domain || !any_valid)
            return false;
        const char *ef[1] = {r->envelope_domain};
        return signed_by(r, true, NULL, ef, 1);
    }
    if (strcmp(func, "check_dkim_dependable") == 0)
        return r->dkim_checked; /* no signature is ever truncated here */
    if (strcmp(func, "check_dkim_signsome") == 0 || strcmp(func, "check_dkim_testing") == 0)
        return false; /* as SpamAssassin 4.0.1: signsome is redundant, testing never set */
    if (strcmp(func, "check_dkim_adsp") == 0 || strcmp(func, "check_dkim_signall") == 0) {
        bool all = func[11] == 's';
        const char *want = all ? "A" : nargs ? args[0] : NULL;
        if (!want || !r->adsp || !r->author_domain)
            return false;
        if (strcmp(want, "*") == 0)
            want = "NAD123";
        if (!strchr(want, r->adsp))
            return false;
        if (all || nargs < 2)
            return true;
        for (size_t k = 1; k < nargs; k++)
            if (args[k] && domain_match(r->author_domain, args[k]))
                return true;
        return false;
    }
    /* DMARC */
    if (strncmp(func, "check_dmarc_", 12) == 0) {
        const char *w = func + 12;
        if (!r->dmarc_checked) {
            *known = !strcmp(w, "pass") || !strcmp(w, "reject") || !strcmp(w, "quarantine") ||
                     !strcmp(w, "none") || !strcmp(w, "missing");
            return false;
        }
        if (strcmp(w, "pass") == 0)
            return r->dmarc == TAMIS_AUTH_PASS && r->dmarc_has_record;
        if (strcmp(w, "reject") == 0)
            return r->dmarc == TAMIS_AUTH_FAIL && r->dmarc_policy == TAMIS_DMARC_POLICY_REJECT;
        if (strcmp(w, "quarantine") == 0)
            return r->dmarc == TAMIS_AUTH_FAIL && r->dmarc_policy == TAMIS_DMARC_POLICY_QUARANTINE;
        if (strcmp(w, "none") == 0)
            return (r->dmarc == TAMIS_AUTH_FAIL || r->dmarc == TAMIS_AUTH_PERMERROR) &&
                   r->dmarc_has_record && r->dmarc_policy == TAMIS_DMARC_POLICY_NONE;
        if (strcmp(w, "missing") == 0)
            return r->dmarc == TAMIS_AUTH_NONE && !r->dmarc_has_record;
    }
    *known = false;
    return false;
}

/* ---- Authentication-Results ---------------------------------------------------------------- */

/* A property value: a token as is, anything else as a quoted string. */
static void put_value(tamis_buf_t *b, const char *v)
{
    bool token = v[0] != '\0';
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("()<>,;:\\\"[]", c))
            token = false;
    }
    if (token) {
        tamis_buf_puts(b, v);
        return;
    }
    tamis_buf_putc(b, '"');
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            continue;
        if (c == '"' || c == '\\')
            tamis_buf_putc(b, '\\');
        tamis_buf_putc(b, (char)c);
    }
    tamis_buf_putc(b, '"');
}

static void put_comment(tamis_buf_t *b, const char *c)
{
    tamis_buf_puts(b, " (");
    for (const char *p = c; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == 0x7f)
            continue;
        if (ch == '(' || ch == ')' || ch == '\\')
            tamis_buf_putc(b, '\\');
        tamis_buf_putc(b, (char)ch);
    }
    tamis_buf_putc(b, ')');
}

int tamis_auth_results_header(const tamis_auth_result_t *r, const char *authserv_id,
                              tamis_buf_t *out)
{
    if (!r || !out)
        return TAMIS_EINVAL;
    /* build the resinfo items, then fold them */
    tamis_buf_t items[2 + TAMIS__DKIM_MAX_SIGS + 1];
    size_t n = 0;
    if (r->spf_mailfrom_domain) {
        tamis_buf_init(&items[n], 4096);
        tamis_buf_printf(&items[n],
                         "spf=%s smtp.mailfrom=", tamis_auth_status_name(r->spf_mailfrom));
        put_value(&items[n], r->spf_mailfrom_domain);
        n++;
    }
    if (r->spf_helo_domain) {
        tamis_buf_init(&items[n], 4096);
        tamis_buf_printf(&items[n], "spf=%s smtp.helo=", tamis_auth_status_name(r->spf_helo));
        put_value(&items[n], r->spf_helo_domain);
        n++;
    }
    if (r->dkim_checked && r->sig_count == 0) {
        tamis_buf_init(&items[n], 4096);
        tamis_buf_puts(&items[n], "dkim=none");
        n++;
    }
    for (size_t i = 0; i < r->sig_count && i < TAMIS__DKIM_MAX_SIGS; i++) {
        const tamis_dkim_sig_t *s = &r->sigs[i];
        tamis_buf_t *b = &items[n++];
        tamis_buf_init(b, 4096);
        tamis_buf_printf(b, "dkim=%s", tamis_auth_status_name(s->status));
        if (s->reason || s->key_bits) {
            char c[160];
            if (s->reason && s->key_bits)
                snprintf(c, sizeof(c), "%u-bit key; %s", s->key_bits, s->reason);
            else if (s->key_bits)
                snprintf(c, sizeof(c), "%u-bit key", s->key_bits);
            else
                snprintf(c, sizeof(c), "%s", s->reason);
            put_comment(b, c);
        }
        if (s->domain) {
            tamis_buf_puts(b, " header.d=");
            put_value(b, s->domain);
        }
        if (s->selector) {
            tamis_buf_puts(b, " header.s=");
            put_value(b, s->selector);
        }
        if (s->algorithm) {
            tamis_buf_puts(b, " header.a=");
            put_value(b, s->algorithm);
        }
    }
    if (r->dmarc_checked) {
        tamis_buf_t *b = &items[n++];
        tamis_buf_init(b, 4096);
        tamis_buf_printf(b, "dmarc=%s", tamis_auth_status_name(r->dmarc));
        if (r->dmarc_has_record) {
            static const char *const pol[] = {"none", "quarantine", "reject"};
            tamis_buf_printf(b, " (p=%s)", pol[r->dmarc_policy]);
        }
        tamis_buf_puts(b, " header.from=");
        put_value(b, r->author_domain ? r->author_domain : "");
    }

    size_t start = out->len;
    tamis_buf_puts(out, "Authentication-Results: ");
    put_value(out, authserv_id && authserv_id[0] ? authserv_id : "localhost");
    size_t col = out->len - start;
    if (n == 0)
        tamis_buf_puts(out, "; none");
    /* fold between words, never past column 78 unless a single word is longer; the ';' that
     * ends an item travels with its last word */
    if (n)
        tamis_buf_putc(out, ';');
    col++;
    for (size_t i = 0; i < n; i++) {
        const char *p = items[i].data ? items[i].data : "";
        while (*p) {
            const char *sp = strchr(p, ' ');
            size_t wl = sp ? (size_t)(sp - p) : strlen(p);
            const char *next = p + wl;
            while (*next == ' ')
                next++;
            bool last = !*next && i + 1 < n;
            if (col + 1 + wl + (last ? 1 : 0) > 78 && col > 8) {
                tamis_buf_puts(out, "\n\t");
                col = 8;
            } else if (col > 8) { /* col 8 only right after a fold */
                tamis_buf_putc(out, ' ');
                col++;
            }
            tamis_buf_append(out, p, wl);
            col += wl;
            if (last) {
                tamis_buf_putc(out, ';');
                col++;
            }
            p = next;
        }
        if (items[i].err)
            out->err = items[i].err;
        tamis_buf_free(&items[i]);
    }
    return out->err;
}
