/*
 * GHASH (NIST SP 800-38D section 6.4) with PCLMULQDQ, eight blocks per reduction.
 * The arithmetic and its references are in ghash_pclmul.h, shared with the stitched
 * GCM routines.  Nothing here branches on or indexes by H or the data.
 */
#include "ghash/ghash_pclmul.h"

#if SLS_ENV_X86

static int pclmul_supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_PCLMUL | SLS_ENV_CPU_SSSE3);
}

SLS_ENV_GHASH_PCLMUL_TARGET static void pclmul_init(void *state, const uint8_t h[16])
{
    struct sls_env_ghash_pclmul_state *s = state;
    /* H * x^-1: in the reflected form a left shift by one bit, and the bit shifted
     * out (GCM's x^0) comes back as x^-1 = x^127 + x^6 + x + 1, the constant
     * 0xC2000000000000000000000000000001.  The mask is made from the top bit by an
     * arithmetic shift, not a branch. */
    __m128i x = sls_env_ghash_bswap(_mm_loadu_si128((const __m128i *)h));
    __m128i top = _mm_srai_epi32(_mm_shuffle_epi32(x, 0xFF), 31);
    __m128i carry = _mm_slli_si128(_mm_srli_epi64(x, 63), 8);
    x = _mm_or_si128(_mm_slli_epi64(x, 1), carry);
    x = _mm_xor_si128(x, _mm_and_si128(top, _mm_set_epi64x((long long)0xC200000000000000ull, 1)));
    /* h[i] = H^(i+1) x^-1: the product of H^i x^-1 and H x^-1 comes out times x. */
    s->h[0] = x;
    for (int i = 1; i < 8; i++) {
        struct sls_env_ghash_acc a;
        sls_env_ghash_mul_first(&a, s->h[i - 1], x, _mm_xor_si128(x, _mm_shuffle_epi32(x, 0x4E)));
        s->h[i] = sls_env_ghash_reduce(&a);
    }
    for (int i = 0; i < 8; i++)
        s->hk[i] = _mm_xor_si128(s->h[i], _mm_shuffle_epi32(s->h[i], 0x4E));
}

SLS_ENV_GHASH_PCLMUL_TARGET static void pclmul_update(const void *state, uint8_t y[16],
                                                      const uint8_t *data, size_t nblocks)
{
    const struct sls_env_ghash_pclmul_state *s = state;
    __m128i acc = sls_env_ghash_bswap(_mm_loadu_si128((const __m128i *)y));
    acc = sls_env_ghash_pclmul_run(s, acc, data, nblocks);
    _mm_storeu_si128((__m128i *)y, sls_env_ghash_bswap(acc));
}

SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_pclmul = {
    "pclmul", pclmul_supported, pclmul_init, pclmul_update,
};

#else /* !SLS_ENV_X86 */

SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_pclmul = SLS_ENV_UNAVAILABLE_GHASH("pclmul");

#endif
