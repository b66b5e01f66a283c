/*
 * GHASH with VPCLMULQDQ on ymm registers (two blocks per register), NIST SP 800-38D
 * section 6.4, for CPUs without AVX-512; same representation and table as the zmm
 * variant (ghash_x86_vpclmul.h).  Sixteen blocks per iteration by H^16..H^1 under one
 * reduction; a shorter run takes the last entries of the table, a pair per register
 * and a final odd block in xmm, still under one reduction.
 */
#include "internal.h"

#if SLS_ENV_X86
#include "ghash/ghash_x86_vpclmul.h"

#define TGT __attribute__((target("avx2,vpclmulqdq,pclmul")))

static int supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AVX2 | SLS_ENV_CPU_VPCLMUL | SLS_ENV_CPU_PCLMUL);
}

static void init(void *state, const uint8_t h[16])
{
    sls_env_ghash_vpclmul_init(state, h);
}

TGT static void update(const void *state, uint8_t y[16], const uint8_t *data, size_t nblocks)
{
    const sls_env_ghash_vpclmul_key *g = state;
    const __m256i bswap = _mm256_broadcastsi128_si256(SLS_ENV_GHASH_BSWAP_EPI8);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);

    while (nblocks) {
        /* m blocks by H^m..H^1: table entries 32 - m on. */
        const size_t m = nblocks < 16 ? nblocks : 16;
        const uint8_t *p = g->pow[SLS_ENV_GHASH_POWERS - m];
        __m256i lo = _mm256_setzero_si256(), mi = lo, hi = lo;
        /* The running state is added to the first block. */
        __m256i first = _mm256_zextsi128_si256(acc);
        size_t j = 0;
        for (; j + 2 <= m; j += 2) {
            __m256i x = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(data + 16 * j)), bswap);
            sls_env_gh256_mul(_mm256_xor_si256(x, first), _mm256_loadu_si256((const __m256i *)(p + 16 * j)),
                              &lo, &mi, &hi);
            first = _mm256_setzero_si256();
        }
        if (j < m) {
            __m128i x = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * j)),
                                         SLS_ENV_GHASH_BSWAP_EPI8);
            x = _mm_xor_si128(x, _mm256_castsi256_si128(first));
            __m256i x2 = _mm256_zextsi128_si256(x);
            __m256i h2 = _mm256_zextsi128_si256(_mm_load_si128((const __m128i *)(p + 16 * j)));
            sls_env_gh256_mul(x2, h2, &lo, &mi, &hi);
        }
        acc = sls_env_gh256_reduce(lo, mi, hi);
        data += 16 * m;
        nblocks -= m;
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

SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_vpclmul256 = {
    "vpclmul256", supported, init, update,
};
