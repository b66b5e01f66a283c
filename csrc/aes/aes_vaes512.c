/*
 * AES (FIPS 197) encryption with VAES on zmm registers: four blocks per register,
 * eight registers (32 blocks) in flight in CTR so the AES unit's latency is covered.
 *
 * CTR follows SP 800-38D's inc32: the counter is the big-endian last word of the
 * block.  Counters are kept with that word byte-swapped to little-endian so plain
 * 32-bit vector adds step them (callers guarantee no wrap within a call), and are
 * swapped back with one VPSHUFB per four blocks before the first round.  Key
 * expansion and the layout are shared with the ymm variant (aes_x86_vaes.h).
 */
#include "internal.h"

#if SLS_ENV_X86
#include "aes/aes_x86_vaes.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,vaes,aes")))
#define INL __attribute__((target("avx512f,avx512bw,avx512vl,vaes,aes"), always_inline)) static inline

static int supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AVX512F | SLS_ENV_CPU_AVX512BW | SLS_ENV_CPU_AVX512VL |
                           SLS_ENV_CPU_VAES | SLS_ENV_CPU_AESNI);
}

static int init(void *state, const uint8_t *key, size_t key_len)
{
    return sls_env_aes_vaes_expand(state, key, key_len);
}

#define RK(r) _mm512_load_si512((const void *)k->rk[r])

/* Encrypt n (1..8) registers of blocks in place; nr is a constant after inlining so
 * the rounds unroll. */
INL void enc_n(const sls_env_aes_vaes_key *k, const unsigned nr, __m512i *b, const int n)
{
    for (int j = 0; j < n; j++)
        b[j] = _mm512_xor_si512(b[j], RK(0));
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++) {
        const __m512i key = RK(r);
        for (int j = 0; j < n; j++)
            b[j] = _mm512_aesenc_epi128(b[j], key);
    }
    for (int j = 0; j < n; j++)
        b[j] = _mm512_aesenclast_epi128(b[j], RK(nr));
}

INL void ctr32_nr(const sls_env_aes_vaes_key *k, const unsigned nr, const uint8_t ctr[16],
                  const uint8_t *in, uint8_t *out, size_t n)
{
    const __m512i swap = _mm512_broadcast_i32x4(SLS_ENV_CTR_SWAP_EPI8);
    const __m512i four = _mm512_broadcast_i32x4(_mm_set_epi32(4, 0, 0, 0));
    /* Little-endian counters of blocks 0..3 (lane i holds counter + i). */
    __m512i c = _mm512_add_epi32(
        _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)ctr)), swap),
        _mm512_set_epi32(3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0));
    while (n >= 32) {
        __m512i b[8];
        for (int j = 0; j < 8; j++) {
            b[j] = _mm512_shuffle_epi8(c, swap);
            c = _mm512_add_epi32(c, four);
        }
        enc_n(k, nr, b, 8);
        for (int j = 0; j < 8; j++)
            _mm512_storeu_si512(out + 64 * j, _mm512_xor_si512(b[j], _mm512_loadu_si512(in + 64 * j)));
        in += 512;
        out += 512;
        n -= 32;
    }
    while (n >= 4) {
        __m512i b = _mm512_shuffle_epi8(c, swap);
        c = _mm512_add_epi32(c, four);
        enc_n(k, nr, &b, 1);
        _mm512_storeu_si512(out, _mm512_xor_si512(b, _mm512_loadu_si512(in)));
        in += 64;
        out += 64;
        n -= 4;
    }
    if (n) {
        __mmask8 m = (__mmask8)((1u << (2 * n)) - 1);
        __m512i b = _mm512_shuffle_epi8(c, swap);
        enc_n(k, nr, &b, 1);
        _mm512_mask_storeu_epi64(out, m, _mm512_xor_si512(b, _mm512_maskz_loadu_epi64(m, in)));
    }
}

TGT static void ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in, uint8_t *out,
                      size_t nblocks)
{
    const sls_env_aes_vaes_key *k = state;
    if (nblocks == 1) {
        /* The tag's E(K, J0) and a message's last partial block: no zmm needed. */
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

/* ECB: only for H and tests, so one loop with the round count read at run time. */
TGT static void ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const sls_env_aes_vaes_key *k = state;
    const unsigned nr = k->rounds;
    while (nblocks) {
        size_t n = nblocks < 4 ? nblocks : 4;
        __mmask8 m = (__mmask8)((1u << (2 * n)) - 1);
        __m512i b = _mm512_xor_si512(_mm512_maskz_loadu_epi64(m, in), RK(0));
        for (unsigned r = 1; r < nr; r++)
            b = _mm512_aesenc_epi128(b, RK(r));
        b = _mm512_aesenclast_epi128(b, RK(nr));
        _mm512_mask_storeu_epi64(out, m, b);
        in += 16 * n;
        out += 16 * n;
        nblocks -= n;
    }
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

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_vaes512 = {
    "vaes512", supported, init, ecb, ctr32,
};
