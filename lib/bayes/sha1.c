/*
 * SHA-1 through OpenSSL, needed because SpamAssassin keys Bayes tokens and message ids with it.
 * The digest is fetched once and each thread reuses one context for one-shot digests: a fetch by
 * name, or a context made and wiped per call, costs more than hashing a short token.
 */
#include "bayes/bayes_int.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_sha1;       /* kept for the life of the process */
static pthread_key_t ctx_key; /* the thread's EVP_MD_CTX, freed when the thread ends */
static bool have_key;

static void ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void md_fetch(void)
{
    md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    have_key = pthread_key_create(&ctx_key, ctx_free) == 0;
}

static const EVP_MD *sha1_md(void)
{
    pthread_once(&md_once, md_fetch);
    return md_sha1;
}

int tamis__sha1_init(tamis__sha1_t *c)
{
    const EVP_MD *md = sha1_md();
    c->ctx = md ? EVP_MD_CTX_new() : NULL;
    if (!c->ctx || !EVP_DigestInit_ex2(c->ctx, md, NULL)) {
        EVP_MD_CTX_free(c->ctx);
        c->ctx = NULL;
        return TAMIS_ENOMEM;
    }
    return 0;
}

void tamis__sha1_update(tamis__sha1_t *c, const void *data, size_t len)
{
    if (c->ctx && len)
        EVP_DigestUpdate(c->ctx, data, len);
}

int tamis__sha1_final(tamis__sha1_t *c, uint8_t out[20])
{
    int ok = c->ctx && EVP_DigestFinal_ex(c->ctx, out, NULL);
    EVP_MD_CTX_free(c->ctx);
    c->ctx = NULL;
    if (!ok)
        memset(out, 0, 20);
    return ok ? 0 : TAMIS_ENOMEM;
}

/* One-shot digest; a failure (out of memory) yields zeros, which only costs a wrong token. */
static void sha1_once(const void *data, size_t len, uint8_t d[20])
{
    const EVP_MD *md = sha1_md();
    EVP_MD_CTX *c = have_key ? pthread_getspecific(ctx_key) : NULL;
    if (md && !c && have_key && (c = EVP_MD_CTX_new()) != NULL &&
        pthread_setspecific(ctx_key, c) != 0) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    bool ok = md && (c ? EVP_DigestInit_ex2(c, md, NULL) && EVP_DigestUpdate(c, data, len) &&
                             EVP_DigestFinal_ex(c, d, NULL)
                       : EVP_Digest(data, len, d, NULL, md, NULL));
    if (!ok)
        memset(d, 0, 20);
}

void tamis_bayes_sha1_hex(const void *data, size_t len, char hex[41])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t d[20];
    sha1_once(data, len, d);
    for (int i = 0; i < 20; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[40] = '\0';
}

void tamis_bayes_token_key(const char *token, size_t len, uint8_t key[TAMIS_BAYES_KEY_LEN])
{
    uint8_t d[20];
    sha1_once(token, len, d);
    memcpy(key, d + 20 - TAMIS_BAYES_KEY_LEN, TAMIS_BAYES_KEY_LEN);
}
