/*
 * GCM over any block cipher and GHASH implementation, NIST SP 800-38D.
 *
 * With a 96-bit IV, J0 = IV || 0^31 || 1 (section 7.1, step 2); the plaintext is
 * CTR-encrypted from inc32(J0); S = GHASH_H(A || 0^v || C || 0^u || [len(A)]_64 ||
 * [len(C)]_64); T = MSB_128(GCTR(J0, S)) = E(K, J0) ^ S.  Whole blocks go through the
 * implementation's stitched bulk routine when it has one, otherwise through CTR then
 * GHASH in L1-sized chunks; the last partial block is handled here.
 *
 * Decryption verifies in constant time (sls_env_ct_equal) and, on a mismatch, zeroes
 * every byte of output it wrote before returning SLS_ENV_ERR_AUTH, so no unverified
 * plaintext is released (SP 800-38D section 7.2, step 8: "return FAIL").
 *
 * This file is the mode, one message per call; many messages per call (batches, and the
 * records of the batch format) are csrc/gcm/records.c, over sls_env_gcm_seal and
 * sls_env_gcm_open below (declared in internal.h).
 */
#include <stdlib.h>

#include "internal.h"
#include "sls_env_testing.h"

/* CTR and GHASH run over 4 KiB at a time when not stitched, so the ciphertext is
 * still in L1 when GHASH reads it. */
#define CHUNK_BLOCKS 256

int sls_env_aead_new(sls_env_aead **out, int alg, const uint8_t *key, size_t key_len,
                     const char *impl_name)
{
    if (out == NULL)
        return SLS_ENV_ERR_ARG;
    *out = NULL;
    if (alg != SLS_ENV_AES_GCM && alg != SLS_ENV_SM4_GCM)
        return SLS_ENV_ERR_ALG;
    if (key == NULL)
        return SLS_ENV_ERR_ARG;
    if (alg == SLS_ENV_AES_GCM ? (key_len != 16 && key_len != 24 && key_len != 32) : key_len != 16)
        return SLS_ENV_ERR_KEY_SIZE;
    const sls_env_gcm_impl *impl = sls_env_dispatch_find(alg, impl_name);
    if (impl == NULL)
        return SLS_ENV_ERR_IMPL;

    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(sls_env_aead)) != 0)
        return SLS_ENV_ERR_NOMEM;
    sls_env_aead *ctx = mem;
    memset(ctx, 0, sizeof *ctx);
    ctx->impl = impl;
    ctx->alg = alg;
    int rc = impl->cipher->init(ctx->cipher_state, key, key_len);
    if (rc != SLS_ENV_OK) {
        sls_env_aead_free(ctx);
        return rc;
    }
    /* H = E(K, 0^128) (section 6.4). */
    uint8_t h[16] = {0};
    impl->cipher->ecb(ctx->cipher_state, h, h, 1);
    impl->ghash->init(ctx->ghash_state, h);
    sls_env_wipe(h, sizeof h);
    *out = ctx;
    return SLS_ENV_OK;
}

void sls_env_aead_free(sls_env_aead *ctx)
{
    if (ctx == NULL)
        return;
    sls_env_wipe(ctx, sizeof *ctx);
    free(ctx);
}

const char *sls_env_aead_impl(const sls_env_aead *ctx)
{
    return ctx ? ctx->impl->name : NULL;
}

int sls_env_aead_alg(const sls_env_aead *ctx)
{
    return ctx ? ctx->alg : 0;
}

int sls_env_block_encrypt(const sls_env_aead *ctx, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    if (ctx == NULL || (nblocks && (in == NULL || out == NULL)))
        return SLS_ENV_ERR_ARG;
    if (nblocks)
        ctx->impl->cipher->ecb(ctx->cipher_state, in, out, nblocks);
    return SLS_ENV_OK;
}

int sls_env_block_iterate(const sls_env_aead *ctx, uint8_t *block, uint64_t iterations)
{
    if (ctx == NULL || block == NULL)
        return SLS_ENV_ERR_ARG;
    for (uint64_t i = 0; i < iterations; i++)
        ctx->impl->cipher->ecb(ctx->cipher_state, block, block, 1);
    return SLS_ENV_OK;
}

/* GHASH over data, zero-padding a final partial block (the 0^v / 0^u of 7.1). */
static void ghash_padded(const sls_env_aead *ctx, uint8_t y[16], const uint8_t *data, size_t len)
{
    const sls_env_ghash_impl *g = ctx->impl->ghash;
    size_t whole = len / 16, rem = len % 16;
    if (whole)
        g->update(ctx->ghash_state, y, data, whole);
    if (rem) {
        uint8_t last[16] = {0};
        memcpy(last, data + whole * 16, rem);
        g->update(ctx->ghash_state, y, last, 1);
    }
}

static void set_counter(uint8_t block[16], const uint8_t *nonce, uint32_t counter)
{
    memcpy(block, nonce, 12);
    sls_env_store_be32(block + 12, counter);
}

/* GHASH the length block [len(A)]_64 || [len(C)]_64 into y, then T = E(K, J0) ^ y. */
static void finish_tag(const sls_env_aead *ctx, uint8_t y[16], const uint8_t ek_j0[16],
                       size_t aad_len, size_t msg_len, uint8_t tag[16])
{
    uint8_t block[16];
    sls_env_store_be64(block, (uint64_t)aad_len * 8);
    sls_env_store_be64(block + 8, (uint64_t)msg_len * 8);
    ctx->impl->ghash->update(ctx->ghash_state, y, block, 1);
    for (int i = 0; i < 16; i++)
        tag[i] = (uint8_t)(y[i] ^ ek_j0[i]);
}

/* E(K, J0), for the paths that do not fold it into the message's keystream. */
static void encrypt_j0(const sls_env_aead *ctx, const uint8_t *nonce, uint8_t ek_j0[16])
{
    uint8_t j0[16];
    set_counter(j0, nonce, 1);
    memset(ek_j0, 0, 16);
    ctx->impl->cipher->ctr32(ctx->cipher_state, j0, ek_j0, ek_j0, 1);
}

/*
 * Short messages on implementations without a stitched routine: one keystream call
 * from counter 1 covers E(K, J0), every whole block and the zero-padded last block.
 * Implementations that work on 4 or 16 blocks at a time (the bitsliced and SIMD
 * ciphers) pay per call, so this saves up to two calls per message.
 */
#define SHORT_BLOCKS CHUNK_BLOCKS

static int is_short(const sls_env_aead *ctx, size_t len)
{
    return ctx->impl->bulk == NULL && len <= 16 * SHORT_BLOCKS;
}

/* buf[0..16) = E(K, J0); buf[16..16 + len) = in ^ keystream; zero padding after it. */
static void short_keystream(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *in,
                            size_t len, uint8_t *buf)
{
    size_t blocks = (len + 15) / 16;
    memset(buf, 0, 16);
    memcpy(buf + 16, in, len);
    memset(buf + 16 + len, 0, blocks * 16 - len);
    uint8_t ctr[16];
    set_counter(ctr, nonce, 1);
    ctx->impl->cipher->ctr32(ctx->cipher_state, ctr, buf, buf, 1 + blocks);
    memset(buf + 16 + len, 0, blocks * 16 - len); /* C's padding is zeros, not keystream */
}

int sls_env_gcm_check_lengths(size_t aad_len, size_t msg_len)
{
    if ((uint64_t)msg_len > SLS_ENV_MAX_MESSAGE || (uint64_t)aad_len > SLS_ENV_MAX_MESSAGE)
        return SLS_ENV_ERR_TOO_LONG;
    return SLS_ENV_OK;
}

/* Whole blocks: the implementation's stitched routine, or CTR and GHASH over L1-sized
 * chunks.  GHASH reads the ciphertext: out after sealing, in before opening. */
static void crypt_blocks(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *in,
                         uint8_t *out, size_t whole, uint8_t y[16], int sealing)
{
    const sls_env_gcm_impl *impl = ctx->impl;
    const void *cs = ctx->cipher_state, *gs = ctx->ghash_state;
    uint8_t ctr[16];
    if (whole == 0)
        return;
    if (impl->bulk) {
        set_counter(ctr, nonce, 2); /* inc32(J0) */
        (sealing ? impl->bulk->seal : impl->bulk->open)(cs, gs, ctr, y, in, out, whole);
        return;
    }
    for (size_t done = 0; done < whole;) {
        size_t n = whole - done < CHUNK_BLOCKS ? whole - done : CHUNK_BLOCKS;
        set_counter(ctr, nonce, 2 + (uint32_t)done);
        if (!sealing)
            impl->ghash->update(gs, y, in + done * 16, n);
        impl->cipher->ctr32(cs, ctr, in + done * 16, out + done * 16, n);
        if (sealing)
            impl->ghash->update(gs, y, out + done * 16, n);
        done += n;
    }
}

/* The last rem (1..15) bytes at block index `whole`: CTR, and GHASH of the ciphertext
 * zero-padded (C's padding is zeros, not keystream: SP 800-38D 7.1 step 5). */
static void crypt_partial_block(const sls_env_aead *ctx, const uint8_t *nonce, size_t whole,
                                const uint8_t *in, uint8_t *out, size_t rem, uint8_t y[16],
                                int sealing)
{
    uint8_t last[16] = {0}, ctr[16];
    memcpy(last, in, rem);
    if (!sealing)
        ctx->impl->ghash->update(ctx->ghash_state, y, last, 1);
    set_counter(ctr, nonce, 2 + (uint32_t)whole);
    ctx->impl->cipher->ctr32(ctx->cipher_state, ctr, last, last, 1);
    memcpy(out, last, rem);
    if (sealing) {
        memset(last + rem, 0, 16 - rem);
        ctx->impl->ghash->update(ctx->ghash_state, y, last, 1);
    }
    sls_env_wipe(last, sizeof last);
}

/* One message through the generic (not stitched) path, either way (SP 800-38D 7.1, 7.2).
 * GHASH runs over the ciphertext: the output when sealing, the input when opening, so the
 * short path hashes it after the keystream when sealing and before when opening (in place,
 * the input is overwritten).  tag receives T when sealing, the expected T when opening. */
static void crypt_msg(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                      const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16], int sealing)
{
    uint8_t y[16] = {0}, ek_j0[16];
    int short_path = is_short(ctx, len);
    /* E(K, J0) first: it does not depend on the GHASH chain, so the CPU overlaps them. */
    if (!short_path)
        encrypt_j0(ctx, nonce, ek_j0);
    ghash_padded(ctx, y, aad, aad_len);

    if (short_path) {
        uint8_t buf[16 * (SHORT_BLOCKS + 1)];
        if (!sealing)
            ghash_padded(ctx, y, in, len);
        short_keystream(ctx, nonce, in, len, buf);
        memcpy(out, buf + 16, len);
        if (sealing)
            ctx->impl->ghash->update(ctx->ghash_state, y, buf + 16, (len + 15) / 16);
        memcpy(ek_j0, buf, 16);
        sls_env_wipe(buf, 16 * (1 + (len + 15) / 16));
    } else {
        size_t whole = len / 16, rem = len % 16;
        crypt_blocks(ctx, nonce, in, out, whole, y, sealing);
        if (rem)
            crypt_partial_block(ctx, nonce, whole, in + whole * 16, out + whole * 16, rem, y, sealing);
    }
    finish_tag(ctx, y, ek_j0, aad_len, len, tag);
    sls_env_wipe(ek_j0, sizeof ek_j0);
    sls_env_wipe(y, sizeof y);
}

/* Seal one message: out = C || T, C of len bytes (declared in internal.h for records.c). */
void sls_env_gcm_seal(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                      const uint8_t *in, size_t len, uint8_t *out)
{
    const sls_env_gcm_bulk *bulk = ctx->impl->bulk;
    if (bulk && bulk->seal_msg)
        bulk->seal_msg(ctx->cipher_state, ctx->ghash_state, nonce, aad, aad_len, in, out, len, out + len);
    else
        crypt_msg(ctx, nonce, aad, aad_len, in, len, out, out + len, 1);
}

/* Decrypt len bytes of ciphertext and compute the tag they should carry. */
static void open_and_expect(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad,
                            size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                            uint8_t expected[16])
{
    const sls_env_gcm_bulk *bulk = ctx->impl->bulk;
    if (bulk && bulk->open_msg)
        bulk->open_msg(ctx->cipher_state, ctx->ghash_state, nonce, aad, aad_len, in, out, len, expected);
    else
        crypt_msg(ctx, nonce, aad, aad_len, in, len, out, expected, 0);
}

/* Open one message of len bytes of ciphertext followed by its tag (declared in internal.h
 * for records.c): the one tag comparison of the library. */
int sls_env_gcm_open(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t tag[16], expected[16];
    memcpy(tag, in + len, 16); /* before any in-place write */
    open_and_expect(ctx, nonce, aad, aad_len, in, len, out, expected);
    int ok = sls_env_ct_equal(expected, tag, 16);
    sls_env_wipe(expected, sizeof expected);
    if (!ok) {
        sls_env_wipe(out, len);
        return SLS_ENV_ERR_AUTH;
    }
    return SLS_ENV_OK;
}

int sls_env_aead_encrypt(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad,
                         size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out)
{
    if (ctx == NULL || nonce == NULL || out == NULL || (aad_len && aad == NULL) ||
        (in_len && in == NULL))
        return SLS_ENV_ERR_ARG;
    int rc = sls_env_gcm_check_lengths(aad_len, in_len);
    if (rc != SLS_ENV_OK)
        return rc;
    sls_env_gcm_seal(ctx, nonce, aad, aad_len, in, in_len, out);
    return SLS_ENV_OK;
}

int sls_env_aead_decrypt(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad,
                         size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out)
{
    if (ctx == NULL || nonce == NULL || in == NULL || (aad_len && aad == NULL))
        return SLS_ENV_ERR_ARG;
    if (in_len < 16)
        return SLS_ENV_ERR_SHORT;
    if (in_len > 16 && out == NULL)
        return SLS_ENV_ERR_ARG;
    int rc = sls_env_gcm_check_lengths(aad_len, in_len - 16);
    if (rc != SLS_ENV_OK)
        return rc;
    return sls_env_gcm_open(ctx, nonce, aad, aad_len, in, in_len - 16, out);
}

char *sls_env_aead_encrypt_scratch(const sls_env_aead *ctx, const uint8_t *nonce,
                                   const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                   size_t in_len)
{
    uint8_t *buf = in_len <= SIZE_MAX - 16 ? sls_env_scratch(in_len + 16) : NULL;
    int rc = buf == NULL ? SLS_ENV_ERR_NOMEM
                         : sls_env_aead_encrypt(ctx, nonce, aad, aad_len, in, in_len, buf);
    if (rc == SLS_ENV_OK)
        return (char *)buf;
    sls_env_set_last_error(rc);
    return NULL;
}

char *sls_env_aead_decrypt_scratch(const sls_env_aead *ctx, const uint8_t *nonce,
                                   const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                   size_t in_len)
{
    uint8_t *buf = sls_env_scratch(in_len >= 16 ? in_len - 16 : 0);
    int rc = buf == NULL ? SLS_ENV_ERR_NOMEM
                         : sls_env_aead_decrypt(ctx, nonce, aad, aad_len, in, in_len, buf);
    if (rc == SLS_ENV_OK)
        return (char *)buf;
    sls_env_set_last_error(rc);
    return NULL;
}
