/*
 * SM4 (GB/T 32907-2016) on AVX2 + AES-NI, for x86-64 CPUs without GFNI or VAES.
 *
 * The S-box through AESENCLAST with affine maps around it (sm4_x86_aesenclast.h).
 * AESENCLAST on 256-bit registers needs VAES, which the CPUs this path is for do not
 * have, so each ymm is split into two xmm halves around it.  The rounds, the layout
 * and the CTR passes are in sm4_x86_avx2.h.
 */
#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

#define TGT __attribute__((target("avx2,aes,ssse3")))
#define INLINE static inline __attribute__((always_inline))

static int sm4_aesni_supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AVX | SLS_ENV_CPU_AVX2 | SLS_ENV_CPU_AESNI |
                           SLS_ENV_CPU_SSSE3);
}

#include "sm4/sm4_x86_aesenclast.h"

TGT INLINE __m256i sbox256(__m256i x, const struct sbox_consts *k)
{
    x = _mm256_shuffle_epi8(x, _mm256_broadcastsi128_si256(INV_SHIFTROWS));
    x = nib256(x, k->in_lo, k->in_hi);
    __m128i lo = _mm256_castsi256_si128(x), hi = _mm256_extracti128_si256(x, 1);
    lo = _mm_aesenclast_si128(lo, _mm_setzero_si128());
    hi = _mm_aesenclast_si128(hi, _mm_setzero_si128());
    x = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    return nib256(x, k->out_lo, k->out_hi);
}

#include "sm4/sm4_x86_avx2.h"

const sls_env_block_cipher sls_env_sm4_aesni = {
    "sm4-aesni", sm4_aesni_supported, sm4_avx2_init, sm4_avx2_ecb, sm4_avx2_ctr32,
};

#else /* !SLS_ENV_X86 */

const sls_env_block_cipher sls_env_sm4_aesni = SLS_ENV_UNAVAILABLE_CIPHER("sm4-aesni");

#endif
