/*
 * SM4 (GB/T 32907-2016) on AVX2 + VAES, for x86-64 CPUs with VAES but without GFNI
 * (AMD Zen 3 among them).
 *
 * The S-box of sm4_aesni.c (AESENCLAST with affine maps around it,
 * sm4_x86_aesenclast.h), with VAES's AESENCLAST on whole ymm registers instead of two
 * xmm halves: the split and the merge leave the round's dependency chain.  The
 * rounds, the layout and the CTR passes are in sm4_x86_avx2.h.
 */
#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

#define TGT __attribute__((target("avx2,aes,ssse3,vaes")))
#define INLINE static inline __attribute__((always_inline))

static int sm4_vaes256_supported(void)
{
    /* VAES is only reported when the OS saves ymm state (dispatch.c reads XGETBV). */
    return sls_env_cpu_has(SLS_ENV_CPU_AVX | SLS_ENV_CPU_AVX2 | SLS_ENV_CPU_AESNI |
                           SLS_ENV_CPU_SSSE3 | SLS_ENV_CPU_VAES);
}

#include "sm4/sm4_x86_aesenclast.h"

TGT INLINE __m256i sbox256(__m256i x, const struct sbox_consts *k)
{
    x = _mm256_shuffle_epi8(x, _mm256_broadcastsi128_si256(INV_SHIFTROWS));
    x = nib256(x, k->in_lo, k->in_hi);
    x = _mm256_aesenclast_epi128(x, _mm256_setzero_si256());
    return nib256(x, k->out_lo, k->out_hi);
}

#include "sm4/sm4_x86_avx2.h"

const sls_env_block_cipher sls_env_sm4_vaes256 = {
    "sm4-vaes256", sm4_vaes256_supported, sm4_avx2_init, sm4_avx2_ecb, sm4_avx2_ctr32,
};

#else /* !SLS_ENV_X86 */

const sls_env_block_cipher sls_env_sm4_vaes256 = SLS_ENV_UNAVAILABLE_CIPHER("sm4-vaes256");

#endif
