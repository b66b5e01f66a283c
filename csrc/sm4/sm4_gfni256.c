/*
 * SM4 (GB/T 32907-2016) on AVX2 + GFNI, for x86-64 CPUs with GFNI but without AVX-512
 * (Intel's Alder Lake and later client cores, and its E-core servers, among them).
 *
 * The S-box is the two GFNI instructions of the AVX-512 path (sm4_x86_gfni_sbox.h),
 * here in their VEX form on ymm registers; GFNI has no table in memory and runs in
 * constant time.  Without AVX-512 there is no VPTERNLOGD or VPROLD, so the XORs are
 * two-input and the rotation by 2 is two shifts and an OR: the rounds, the layout and
 * the CTR passes are those of the other AVX2 paths (sm4_x86_avx2.h).
 */
#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

#include "sm4/sm4_x86_gfni_sbox.h"

#define TGT __attribute__((target("avx2,ssse3,gfni")))
#define INLINE static inline __attribute__((always_inline))

static int sm4_gfni256_supported(void)
{
    /* GFNI is only reported when the OS saves ymm state (dispatch.c reads XGETBV). */
    return sls_env_cpu_has(SLS_ENV_CPU_AVX | SLS_ENV_CPU_AVX2 | SLS_ENV_CPU_SSSE3 |
                           SLS_ENV_CPU_GFNI);
}

/* tau of a word, for the key schedule: the zmm path's (sm4_x86_gfni_sbox.h). */
TGT static uint32_t sbox_word(uint32_t a) { return sls_env_sm4_tau_word(a); }

/* The two matrices, broadcast once per call of the rounds. */
struct sbox_consts {
    __m256i m1, m2;
};

TGT INLINE void sbox_consts_init(struct sbox_consts *k)
{
    k->m1 = _mm256_set1_epi64x(SBOX_M1);
    k->m2 = _mm256_set1_epi64x(SBOX_M2);
}

TGT INLINE __m256i sbox256(__m256i x, const struct sbox_consts *k)
{
    x = _mm256_gf2p8affine_epi64_epi8(x, k->m1, SBOX_C1);
    return _mm256_gf2p8affineinv_epi64_epi8(x, k->m2, SBOX_C2);
}

#include "sm4/sm4_x86_avx2.h"

const sls_env_block_cipher sls_env_sm4_gfni256 = {
    "sm4-gfni256", sm4_gfni256_supported, sm4_avx2_init, sm4_avx2_ecb, sm4_avx2_ctr32,
};

#else /* !SLS_ENV_X86 */

const sls_env_block_cipher sls_env_sm4_gfni256 = SLS_ENV_UNAVAILABLE_CIPHER("sm4-gfni256");

#endif
