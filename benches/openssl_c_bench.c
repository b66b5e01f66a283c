/*
 * OpenSSL's own AES-256-GCM / SM4-GCM in C, timed the way benches/c_bench.c times ours
 * (best of 7 rounds of ~8 MB of whole-message calls: set IV, 16-byte AAD, update, final,
 * tag), so the two compare without the interpreter (issue 19: "≥ OpenSSL's own C").
 *
 * The OpenSSL measured is the one users get with `cryptography` (statically linked into
 * its _rust extension, OpenSSL 4.0 in cryptography 48), not the system libcrypto (3.0
 * here, which has no VAES/AVX-512 GCM).  That copy exports no EVP symbols, so
 * benches/openssl_c_bench.py finds the functions' addresses from the extension's symbol
 * table and passes them in; the loop below is plain C calling them.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef void *(*ctx_new_fn)(void);
typedef void (*ctx_free_fn)(void *);
typedef const void *(*cipher_fn)(void);
typedef int (*init_fn)(void *, const void *, void *, const uint8_t *, const uint8_t *);
typedef int (*update_fn)(void *, uint8_t *, int *, const uint8_t *, int);
typedef int (*final_fn)(void *, uint8_t *, int *);
typedef int (*ctrl_fn)(void *, int, int, void *);

#define GCM_GET_TAG 0x10 /* EVP_CTRL_AEAD_GET_TAG */
#define GCM_SET_TAG 0x11 /* EVP_CTRL_AEAD_SET_TAG */

struct evp {
    ctx_new_fn ctx_new;
    ctx_free_fn ctx_free;
    cipher_fn cipher;
    init_fn enc_init, dec_init;
    update_fn enc_update, dec_update;
    final_fn enc_final, dec_final;
    ctrl_fn ctrl;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Best ns per whole-message call over 7 rounds; open: decrypt and verify.  Returns a
 * negative number if OpenSSL reports a failure. */
double openssl_c_bench(const struct evp *e, int open, uint8_t *in, uint8_t *out, size_t len)
{
    static const uint8_t key[32] = {7}, nonce[12] = {0}, aad[16] = "project/logstore";
    uint8_t tag[16];
    int n;
    void *ctx = e->ctx_new();
    init_fn init = open ? e->dec_init : e->enc_init;
    update_fn update = open ? e->dec_update : e->enc_update;
    final_fn final = open ? e->dec_final : e->enc_final;
    /* The key schedule once, as c_bench's context; the tag to verify is made here. */
    if (!e->enc_init(ctx, e->cipher(), NULL, key, nonce) || !e->enc_update(ctx, NULL, &n, aad, sizeof aad) ||
        !e->enc_update(ctx, out, &n, in, (int)len) || !e->enc_final(ctx, out + len, &n) ||
        !e->ctrl(ctx, GCM_GET_TAG, 16, tag))
        return -1;
    if (open) {
        memcpy(in, out, len);
        if (!init(ctx, e->cipher(), NULL, key, nonce))
            return -1;
    }
    long iters = (long)((8 << 20) / (len + 256)) + 1;
    double best = 1e9;
    for (int round = 0; round < 7; round++) {
        double t0 = now();
        for (long i = 0; i < iters; i++) {
            if (!init(ctx, NULL, NULL, NULL, nonce) || !update(ctx, NULL, &n, aad, sizeof aad) ||
                !update(ctx, out, &n, in, (int)len))
                return -1;
            if (open && !e->ctrl(ctx, GCM_SET_TAG, 16, tag))
                return -1;
            if (!final(ctx, out + len, &n) || (!open && !e->ctrl(ctx, GCM_GET_TAG, 16, tag)))
                return -1;
        }
        double t = (now() - t0) / (double)iters;
        best = t < best ? t : best;
    }
    e->ctx_free(ctx);
    return best * 1e9;
}
