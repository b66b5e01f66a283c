/*
 * AES (FIPS 197) encryption with VAES on ymm registers (two blocks per register), for
 * CPUs with VAES but no AVX-512 (Intel Alder Lake and later client cores, AMD Zen 3
 * and Zen 4 without using its AVX-512): eight registers (16 blocks) in flight in CTR,
 * enough to cover a 3-4 cycle AESENC latency on the two AES units these cores have.
 *
 * Counters as in aes_vaes512.c: the big-endian low word kept byte-swapped so 32-bit
 * vector adds step it (no wrap within a call, per the ctr32 contract), swapped back
 * with one VPSHUFB per register.  The key state and its expansion are shared with
 * the zmm variant (aes_x86_vaes.h); this code reads the first 32 bytes of each
 * 64-byte round-key entry.  AVX2 has no masked byte stores worth using, so a final
 * odd block goes through xmm AES-NI.
 */
#include "internal.h"

#if SLS_ENV_X86
#include "aes/aes_x86_vaes.h"

#define TGT __attribute__((target("avx2,vaes,aes")))
#define INL __attribute__((target("avx2,vaes,aes"), always_inline)) static inline

static int supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AVX2 | SLS_ENV_CPU_VAES | SLS_ENV_CPU_AESNI);
}

static int init(void *state, const uint8_t *key, size_t key_len)
{
    return sls_env_aes_vaes_expand(state, key, key_len);
}

#define RK(r) _mm256_load_si256((const __m256i *)k->rk[r])

INL void enc_n(const sls_env_aes_vaes_key *k, const unsigned nr, __m256i *b, const int n)
{
    for (int j = 0; j < n; j++)
        b[j] = _mm256_xor_si256(b[j], RK(0));
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++) {
        const __m256i key = RK(r);
        for (int j = 0; j < n; j++)
            b[j] = _mm256_aesenc_epi128(b[j], key);
    }
    for (int j = 0; j < n; j++)
        b[j] = _mm256_aesenclast_epi128(b[j], RK(nr));
}

INL void ctr32_nr(const sls_env_aes_vaes_key *k, const unsigned nr, const uint8_t ctr[16],
                  const uint8_t *in, uint8_t *out, size_t n)
{
    const __m256i swap = _mm256_broadcastsi128_si256(SLS_ENV_CTR_SWAP_EPI8);
    const __m256i two = _mm256_set_epi32(2, 0, 0, 0, 2, 0, 0, 0);
    /* Little-endian counters of blocks 0 and 1. */
    __m256i c = _mm256_add_epi32(
        _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ctr)), swap),
        _mm256_set_epi32(1, 0, 0, 0, 0, 0, 0, 0));
    while (n >= 16) {
        __m256i b[8];
        for (int j = 0; j < 8; j++) {
            b[j] = _mm256_shuffle_epi8(c, swap);
            c = _mm256_add_epi32(c, two);
        }
        enc_n(k, nr, b, 8);
        for (int j = 0; j < 8; j++)
            _mm256_storeu_si256((__m256i *)(out + 32 * j),
                                _mm256_xor_si256(b[j], _mm256_loadu_si256((const __m256i *)(in + 32 * j))));
        in += 256;
        out += 256;
        n -= 16;
    }
    while (n >= 2) {
        __m256i b = _mm256_shuffle_epi8(c, swap);
        c = _mm256_add_epi32(c, two);
        enc_n(k, nr, &b, 1);
        _mm256_storeu_si256((__m256i *)out, _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)in)));
        in += 32;
        out += 32;
        n -= 2;
    }
    if (n) {
        __m128i x = sls_env_aes_vaes_enc1(k, _mm_shuffle_epi8(_mm256_castsi256_si128(c), SLS_ENV_CTR_SWAP_EPI8));
        _mm_storeu_si128((__m128i *)out, _mm_xor_si128(x, _mm_loadu_si128((const __m128i *)in)));
    }
}

TGT static void ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in, uint8_t *out,
                      size_t nblocks)
{
    const sls_env_aes_vaes_key *k = state;
    if (nblocks == 1) {
        __m128i x = sls_env_aes_vaes_enc1(k, _mm_loadu_si128((const __m128i *)ctr));
        _mm_storeu_si128((__m128i *)out, _mm_xor_si128(x, _mm_loadu_si128((const __m128i *)in)));
        return;
    }
    switch (k->rounds) {
    case 10: ctr32_nr(k, 10, ctr, in, out, nblocks); break;
    case 12: ctr32_nr(k, 12, ctr, in, out, nblocks); break;
    default: ctr32_nr(k, 14, ctr, in, out, nblocks); break;
    }
}

/* ECB: only for H and tests. */
TGT static void ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const sls_env_aes_vaes_key *k = state;
    const unsigned nr = k->rounds;
    for (; nblocks >= 2; nblocks -= 2, in += 32, out += 32) {
        __m256i b = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)in), RK(0));
        for (unsigned r = 1; r < nr; r++)
            b = _mm256_aesenc_epi128(b, RK(r));
        _mm256_storeu_si256((__m256i *)out, _mm256_aesenclast_epi128(b, RK(nr)));
    }
    if (nblocks)
        _mm_storeu_si128((__m128i *)out, sls_env_aes_vaes_enc1(k, _mm_loadu_si128((const __m128i *)in)));
}

#else
static int supported(void) { return 0; }
static int init(void *state, const uint8_t *key, size_t key_len)
{
    (void)state; (void)key; (void)key_len;
    return SLS_ENV_ERR_IMPL;
}
static void ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    (void)state; (void)in; (void)out; (void)nblocks;
}
static void ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in, uint8_t *out,
                  size_t nblocks)
{
    (void)state; (void)ctr; (void)in; (void)out; (void)nblocks;
}
#endif

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_vaes256 = {
    "vaes256", supported, init, ecb, ctr32,
};
