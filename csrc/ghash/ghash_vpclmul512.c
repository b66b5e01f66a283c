/*
 * GHASH with VPCLMULQDQ on zmm registers (four blocks per register), NIST SP 800-38D
 * section 6.4, in the representation of ghash_x86_vpclmul.h.
 *
 * Sixteen blocks per iteration are multiplied by H^16..H^1 and summed unreduced, then
 * reduced once; a run of fewer than sixteen (1..15) uses masked loads, so every call
 * has at most one partial iteration and no per-block loop.  The table is filled once
 * per key, never per call.  SM4-GCM reuses this GHASH unchanged.
 */
#include "internal.h"

#if SLS_ENV_X86
#include "ghash/ghash_x86_vpclmul.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,vpclmulqdq,pclmul")))

static int supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AVX512F | SLS_ENV_CPU_AVX512BW | SLS_ENV_CPU_AVX512VL |
                           SLS_ENV_CPU_VPCLMUL | SLS_ENV_CPU_PCLMUL);
}

static void init(void *state, const uint8_t h[16])
{
    sls_env_ghash_vpclmul_init(state, h);
}

TGT static void update(const void *state, uint8_t y[16], const uint8_t *data, size_t nblocks)
{
    const sls_env_ghash_vpclmul_key *g = state;
    const __m512i bswap = _mm512_broadcast_i32x4(SLS_ENV_GHASH_BSWAP_EPI8);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);
    const uint8_t *p16 = g->pow[SLS_ENV_GHASH_POWERS - 16];

    while (nblocks >= 16) {
        __m512i lo, mi, hi;
        /* The running state is added to the first block (Y_i = (Y_{i-1} ^ X_i) * H). */
        __m512i x0 = _mm512_xor_si512(_mm512_shuffle_epi8(_mm512_loadu_si512(data), bswap),
                                      _mm512_zextsi128_si512(acc));
        sls_env_gh512_mul0(x0, _mm512_load_si512(p16), &lo, &mi, &hi);
        for (int j = 1; j < 4; j++)
            sls_env_gh512_mul(_mm512_shuffle_epi8(_mm512_loadu_si512(data + 64 * j), bswap),
                              _mm512_load_si512(p16 + 64 * j), &lo, &mi, &hi);
        acc = sls_env_gh512_reduce(lo, mi, hi);
        data += 256;
        nblocks -= 16;
    }
    if (nblocks && nblocks < 4) {
        /* A few blocks (the lengths block, a short AAD): xmm, so no lane folding
         * and no masks in the state's dependency chain. */
        const uint8_t *pw = g->pow[SLS_ENV_GHASH_POWERS - nblocks];
        __m128i lo = _mm_setzero_si128(), mi = lo, hi = lo;
        for (size_t j = 0; j < nblocks; j++) {
            __m128i x = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * j)),
                                         SLS_ENV_GHASH_BSWAP_EPI8);
            if (j == 0)
                x = _mm_xor_si128(x, acc);
            sls_env_gh128_mul(x, _mm_load_si128((const __m128i *)(pw + 16 * j)), &lo, &mi, &hi);
        }
        acc = sls_env_gh128_reduce(lo, mi, hi);
    } else if (nblocks) {
        /* r = 4..15 blocks by H^r..H^1: the last r table entries, loaded from entry
         * 32 - r on; lanes past the data are masked to zero. */
        const size_t r = nblocks;
        const uint8_t *pw = g->pow[SLS_ENV_GHASH_POWERS - r];
        __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
        __m512i first = _mm512_zextsi128_si512(acc);
        for (size_t j = 0; j < r; j += 4) {
            size_t left = r - j < 4 ? r - j : 4;
            __mmask8 m = (__mmask8)((1u << (2 * left)) - 1);
            __m512i x = _mm512_shuffle_epi8(_mm512_maskz_loadu_epi64(m, data + 16 * j), bswap);
            x = _mm512_xor_si512(x, first);
            first = _mm512_setzero_si512();
            sls_env_gh512_mul(x, _mm512_maskz_loadu_epi64(m, pw + 16 * j), &lo, &mi, &hi);
        }
        acc = sls_env_gh512_reduce(lo, mi, hi);
    }
    _mm_storeu_si128((__m128i *)y, _mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8));
}

#else
static int supported(void) { return 0; }
static void init(void *state, const uint8_t h[16]) { (void)state; (void)h; }
static void update(const void *state, uint8_t y[16], const uint8_t *data, size_t nblocks)
{
    (void)state; (void)y; (void)data; (void)nblocks;
}
#endif

SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_vpclmul512 = {
    "vpclmul512", supported, init, update,
};
