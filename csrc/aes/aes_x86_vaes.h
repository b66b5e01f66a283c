/*
 * What the VAES AES implementations (aes_vaes512.c, aes_vaes256.c) share: the layout
 * of their key state and how the expanded key is stored in it.
 *
 * Each round key is stored four times over, 64 bytes apart, so a zmm round takes it
 * as a full-width memory operand (VAES has no embedded broadcast); the ymm code reads
 * the first 32 bytes of each entry and the xmm code the first 16.
 *
 * The expansion is FIPS 197 section 5.2 (aes_key.c) with the AES-NI path's SubWord
 * (AESENCLAST, aes_aesni.c); only the broadcast into this layout is done here.
 */
#ifndef SLS_ENV_AES_X86_VAES_H
#define SLS_ENV_AES_X86_VAES_H

#include "aes/aes_aesni.h"

#if SLS_ENV_X86
#include <immintrin.h>

typedef struct {
    SLS_ENV_ALIGN(64) uint8_t rk[15][64]; /* round key r, four copies */
    uint32_t rounds;                      /* 10, 12 or 14 */
} sls_env_aes_vaes_key;

_Static_assert(sizeof(sls_env_aes_vaes_key) <= SLS_ENV_CIPHER_STATE_SIZE, "AES key state too big");

static inline int sls_env_aes_vaes_expand(void *state, const uint8_t *key, size_t key_len)
{
    sls_env_aes_vaes_key *k = state;
    uint32_t w[60];
    const unsigned nr = sls_env_aes_expand_key(key, key_len, w, sls_env_aes_x86_sub_word);
    if (!nr)
        return SLS_ENV_ERR_KEY_SIZE;
    for (unsigned r = 0; r <= nr; r++)
        for (unsigned c = 0; c < 4; c++)
            memcpy(k->rk[r] + 16 * c, &w[4 * r], 16);
    k->rounds = nr;
    sls_env_wipe(w, sizeof w);
    return SLS_ENV_OK;
}

/* One block with AES-NI (single blocks: H, E(K, J0), short tails). */
__attribute__((target("avx,aes"))) static inline __m128i
sls_env_aes_vaes_enc1(const sls_env_aes_vaes_key *k, __m128i x)
{
    unsigned nr = k->rounds;
    x = _mm_xor_si128(x, _mm_load_si128((const __m128i *)k->rk[0]));
    for (unsigned r = 1; r < nr; r++)
        x = _mm_aesenc_si128(x, _mm_load_si128((const __m128i *)k->rk[r]));
    return _mm_aesenclast_si128(x, _mm_load_si128((const __m128i *)k->rk[nr]));
}

/* Shuffle that byte-reverses the last 32-bit word of each 128-bit lane and keeps
 * the rest: it turns the big-endian counter of SP 800-38D's inc32 into a
 * little-endian lane that vector adds can step, and back (it is its own inverse). */
#define SLS_ENV_CTR_SWAP_EPI8 \
    _mm_set_epi8(12, 13, 14, 15, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)

#endif /* SLS_ENV_X86 */
#endif /* SLS_ENV_AES_X86_VAES_H */
