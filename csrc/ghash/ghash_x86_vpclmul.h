/*
 * What the VPCLMULQDQ GHASH implementations (ghash_vpclmul512.c, ghash_vpclmul256.c)
 * and the stitched AES-GCM routines built on them share: the table of powers of H
 * and the multiply/reduce steps.
 *
 * Representation (Intel's GCM white paper, Gueron & Kounavis, with the reduction
 * done Montgomery-style as in Gueron's later work): each block is byte-reversed, so
 * bit i of the 128-bit integer is the coefficient of x^(127-i).  Read as a
 * polynomial in y = x^-1, the carry-less product of two such integers is the product
 * of the polynomials, and reducing it from the low end (two folds of 64 bits by the
 * constant 0xC2000000_00000000, the reflected x^128 + x^7 + x^2 + x + 1) divides by
 * y^128.  Worked back to GCM's bit order, reducing the product of a and b so gives
 * a * b * x; storing every power of H multiplied by x^-1 (a left shift by one of the
 * reflected H, folding the bit that leaves) makes the result a * H^k exactly, with no
 * shift of the 256-bit product.
 *
 * Products are schoolbook (four CLMULs per block: lo, hi and the two middle terms),
 * except in the main loop of aesgcm_vaes512.c on AMD: Karatsuba saves one CLMUL per block
 * for a shuffle, an XOR and a second table (kara below).  On the AMD EPYC Zen 4 of issue
 * 19 a zmm VPCLMULQDQ takes about a cycle from the zmm VAESENCs (benches/vaes_clmul_ports.c)
 * while the shuffle mostly does not, so there it pays (docs/BENCHMARKS.md, Zen 4); on
 * Intel the CLMULs run on a port of their own and Karatsuba costs time (dispatch.c,
 * sls_env_ghash_form).  Elsewhere schoolbook is kept (not measured with Karatsuba).  Products of many blocks by their
 * powers of H are summed unreduced and reduced once (the white paper's aggregated
 * reduction).
 */
#ifndef SLS_ENV_GHASH_X86_VPCLMUL_H
#define SLS_ENV_GHASH_X86_VPCLMUL_H

#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

/* H^84..H^1: the whole-message routines reduce the end of a message at once, up to
 * 32 blocks in registers, 32 more and the lengths block for AES (aesgcm_vaes512.c),
 * up to 80 blocks and the lengths block for SM4 (sm4gcm_gfni.c); a multiple of four
 * keeps every run of four powers ending at H^1 64-byte aligned. */
#define SLS_ENV_GHASH_POWERS 84
/* H^32..H^1 in Karatsuba form as well, for the main loop of aesgcm_vaes512.c. */
#define SLS_ENV_GHASH_KARA 32

typedef struct {
    /* pow[i] = H^(84 - i) * x^-1 in the representation above: descending, so the
     * powers for a run of k blocks ending with H^1 are the last k entries, in the
     * order the blocks come. */
    SLS_ENV_ALIGN(64) uint8_t pow[SLS_ENV_GHASH_POWERS][16];
    /* kara[i]: the two 64-bit halves of pow[84 - 32 + i] XORed together, in both halves:
     * the second operand of a Karatsuba middle product, (a0 + a1)(b0 + b1) = a0 b1 +
     * a1 b0 + a0 b0 + a1 b1, which saves one CLMUL per block (sls_env_gh512_kmul). */
    SLS_ENV_ALIGN(64) uint8_t kara[SLS_ENV_GHASH_KARA][16];
    /* SLS_ENV_GHASH_SCHOOLBOOK or SLS_ENV_GHASH_KARATSUBA (sls_env_ghash_form, dispatch.c):
     * the form of aesgcm_vaes512.c's main loop; kara is filled only for Karatsuba. */
    int form;
} sls_env_ghash_vpclmul_key;

_Static_assert(sizeof(sls_env_ghash_vpclmul_key) <= SLS_ENV_GHASH_STATE_SIZE, "GHASH state too big");

/* Byte reversal of each 128-bit lane (GCM byte order <-> reflected integer). */
#define SLS_ENV_GHASH_BSWAP_EPI8 _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
/* The reflected reduction constant's high word (x^-1 = x^127 + x^6 + x + 1 gives
 * bits 127, 126, 121 of the 128-bit constant 0xC2000000_00000000_00000000_00000001). */
#define SLS_ENV_GHASH_POLY_HI 0xC200000000000000ull

/* ---- xmm: one block per register (PCLMULQDQ) ----------------------------------- */
#define SLS_ENV_T_GH128 __attribute__((target("avx,pclmul"), always_inline))

SLS_ENV_T_GH128 static inline void sls_env_gh128_mul(__m128i x, __m128i h, __m128i *lo, __m128i *mi,
                                                     __m128i *hi)
{
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(x, h, 0x00));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(x, h, 0x11));
    *mi = _mm_xor_si128(*mi, _mm_xor_si128(_mm_clmulepi64_si128(x, h, 0x01), _mm_clmulepi64_si128(x, h, 0x10)));
}

/* Fold the low 64 bits of the 256-bit sum into the next 128, then those into the
 * high half, which is the result. */
SLS_ENV_T_GH128 static inline __m128i sls_env_gh128_reduce(__m128i lo, __m128i mi, __m128i hi)
{
    const __m128i k = _mm_set_epi64x(0, (long long)SLS_ENV_GHASH_POLY_HI);
    mi = _mm_xor_si128(mi, _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4e), _mm_clmulepi64_si128(lo, k, 0x00)));
    return _mm_xor_si128(hi, _mm_xor_si128(_mm_shuffle_epi32(mi, 0x4e), _mm_clmulepi64_si128(mi, k, 0x00)));
}

/* a * b * x, reduced. */
SLS_ENV_T_GH128 static inline __m128i sls_env_ghash_mul1(__m128i a, __m128i b)
{
    __m128i lo = _mm_setzero_si128(), mi = lo, hi = lo;
    sls_env_gh128_mul(a, b, &lo, &mi, &hi);
    return sls_env_gh128_reduce(lo, mi, hi);
}

/* Fill the table from H (16 bytes, GCM byte order).  Runs once per key. */
__attribute__((target("avx,pclmul"))) static inline void sls_env_ghash_vpclmul_init(void *state,
                                                                                    const uint8_t h[16])
{
    sls_env_ghash_vpclmul_key *g = state;
    __m128i x = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)h), SLS_ENV_GHASH_BSWAP_EPI8);
    /* H * x^-1: shift the 128-bit integer left by one; the bit leaving (x^0) comes
     * back as x^-1 = the constant above.  The mask comes from an arithmetic shift,
     * not a branch, since H is secret. */
    __m128i carry = _mm_shuffle_epi32(_mm_srai_epi32(x, 31), 0xff);
    x = _mm_or_si128(_mm_slli_epi64(x, 1), _mm_slli_si128(_mm_srli_epi64(x, 63), 8));
    x = _mm_xor_si128(x, _mm_and_si128(carry, _mm_set_epi64x((long long)SLS_ENV_GHASH_POLY_HI, 1)));
    /* (H^k x^-1)(H x^-1) x = H^(k+1) x^-1. */
    __m128i p = x;
    for (int k = 1; k <= SLS_ENV_GHASH_POWERS; k++) {
        _mm_store_si128((__m128i *)g->pow[SLS_ENV_GHASH_POWERS - k], p);
        p = sls_env_ghash_mul1(p, x);
    }
    g->form = sls_env_ghash_form();
    for (int i = 0; g->form == SLS_ENV_GHASH_KARATSUBA && i < SLS_ENV_GHASH_KARA; i++) {
        __m128i h = _mm_load_si128((const __m128i *)g->pow[SLS_ENV_GHASH_POWERS - SLS_ENV_GHASH_KARA + i]);
        _mm_store_si128((__m128i *)g->kara[i], _mm_xor_si128(h, _mm_shuffle_epi32(h, 0x4e)));
    }
}

/* ---- zmm: four blocks per register ------------------------------------------- */
#define SLS_ENV_T_GH512 __attribute__((target("avx512f,avx512bw,avx512vl,vpclmulqdq,pclmul"), always_inline))

/* Accumulate the unreduced products of four blocks by four powers. */
SLS_ENV_T_GH512 static inline void sls_env_gh512_mul(__m512i x, __m512i h, __m512i *lo, __m512i *mi,
                                                     __m512i *hi)
{
    *lo = _mm512_xor_si512(*lo, _mm512_clmulepi64_epi128(x, h, 0x00));
    *hi = _mm512_xor_si512(*hi, _mm512_clmulepi64_epi128(x, h, 0x11));
    *mi = _mm512_ternarylogic_epi64(*mi, _mm512_clmulepi64_epi128(x, h, 0x01),
                                    _mm512_clmulepi64_epi128(x, h, 0x10), 0x96);
}

/* The same, starting the sums. */
SLS_ENV_T_GH512 static inline void sls_env_gh512_mul0(__m512i x, __m512i h, __m512i *lo, __m512i *mi,
                                                      __m512i *hi)
{
    *lo = _mm512_clmulepi64_epi128(x, h, 0x00);
    *hi = _mm512_clmulepi64_epi128(x, h, 0x11);
    *mi = _mm512_xor_si512(_mm512_clmulepi64_epi128(x, h, 0x01), _mm512_clmulepi64_epi128(x, h, 0x10));
}

/* Karatsuba form of sls_env_gh512_mul, hk from the kara table: three CLMULs instead of
 * four, for one more shuffle and XOR (a block's two halves XORed).  *mi collects the
 * middle products only: XOR *lo and *hi into it before reducing. */
SLS_ENV_T_GH512 static inline void sls_env_gh512_kmul(__m512i x, __m512i h, __m512i hk, __m512i *lo,
                                                      __m512i *mi, __m512i *hi)
{
    __m512i xk = _mm512_xor_si512(x, _mm512_shuffle_epi32(x, (_MM_PERM_ENUM)0x4e));
    *lo = _mm512_xor_si512(*lo, _mm512_clmulepi64_epi128(x, h, 0x00));
    *hi = _mm512_xor_si512(*hi, _mm512_clmulepi64_epi128(x, h, 0x11));
    *mi = _mm512_xor_si512(*mi, _mm512_clmulepi64_epi128(xk, hk, 0x00));
}

SLS_ENV_T_GH512 static inline void sls_env_gh512_kmul0(__m512i x, __m512i h, __m512i hk, __m512i *lo,
                                                       __m512i *mi, __m512i *hi)
{
    __m512i xk = _mm512_xor_si512(x, _mm512_shuffle_epi32(x, (_MM_PERM_ENUM)0x4e));
    *lo = _mm512_clmulepi64_epi128(x, h, 0x00);
    *hi = _mm512_clmulepi64_epi128(x, h, 0x11);
    *mi = _mm512_clmulepi64_epi128(xk, hk, 0x00);
}

/* Reduce the four lanes (reduction is linear, so reducing lanes before adding them
 * costs one fold instead of three), then add them: the GHASH state, reflected. */
SLS_ENV_T_GH512 static inline __m128i sls_env_gh512_reduce(__m512i lo, __m512i mi, __m512i hi)
{
    const __m512i k = _mm512_set1_epi64((long long)SLS_ENV_GHASH_POLY_HI);
    mi = _mm512_ternarylogic_epi64(mi, _mm512_shuffle_epi32(lo, (_MM_PERM_ENUM)0x4e),
                                   _mm512_clmulepi64_epi128(lo, k, 0x00), 0x96);
    hi = _mm512_ternarylogic_epi64(hi, _mm512_shuffle_epi32(mi, (_MM_PERM_ENUM)0x4e),
                                   _mm512_clmulepi64_epi128(mi, k, 0x00), 0x96);
    __m256i h2 = _mm256_xor_si256(_mm512_castsi512_si256(hi), _mm512_extracti64x4_epi64(hi, 1));
    return _mm_xor_si128(_mm256_castsi256_si128(h2), _mm256_extracti128_si256(h2, 1));
}

/* All-ones mask of the first `bytes` (0..64) bytes of a zmm register. */
static inline __mmask64 sls_env_byte_mask64(size_t bytes)
{
    return bytes >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << bytes) - 1);
}

/* Mask of the qwords of the blocks that the first `bytes` (1..64) bytes of a register
 * touch: which of four powers of H a partly filled register needs. */
static inline __mmask8 sls_env_power_mask(size_t bytes)
{
    return (__mmask8)((1u << (2 * ((bytes + 15) / 16))) - 1);
}

/* One register of blocks in GCM byte order into the unreduced sums: `bytes` (1..64) of
 * it are message (the rest zero), multiplied by the powers at *pw, which then moves on
 * past them.  *first is the running GHASH state, added to the first register absorbed
 * (Y_i = (Y_{i-1} ^ X_i) * H) and then cleared. */
SLS_ENV_T_GH512 static inline void sls_env_gh512_absorb(__m512i x, size_t bytes, const uint8_t **pw,
                                                        __m512i *first, __m512i *lo, __m512i *mi,
                                                        __m512i *hi)
{
    const __m512i bswap = _mm512_broadcast_i32x4(SLS_ENV_GHASH_BSWAP_EPI8);
    __m512i h = bytes >= 64 ? _mm512_loadu_si512(*pw)
                            : _mm512_maskz_loadu_epi64(sls_env_power_mask(bytes), *pw);
    sls_env_gh512_mul(_mm512_xor_si512(_mm512_shuffle_epi8(x, bswap), *first), h, lo, mi, hi);
    *first = _mm512_setzero_si512();
    *pw += 16 * ((bytes + 15) / 16);
}

/* GHASH of len bytes (zero-padded to whole blocks, SP 800-38D 7.1 step 5) into acc
 * (reflected), up to 64 blocks per reduction, a partial block read through a byte
 * mask.  For the AAD of the whole-message routines, which is short in practice (a
 * record header). */
SLS_ENV_T_GH512 static inline __m128i sls_env_gh512_bytes(const sls_env_ghash_vpclmul_key *g, __m128i acc,
                                                          const uint8_t *p, size_t len)
{
    while (len) {
        size_t seg = len < 1024 ? len : 1024;
        const uint8_t *pw = g->pow[SLS_ENV_GHASH_POWERS - (seg + 15) / 16];
        __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
        __m512i first = _mm512_zextsi128_si512(acc);
        for (size_t j = 0; j < seg; j += 64) {
            size_t left = seg - j < 64 ? seg - j : 64;
            sls_env_gh512_absorb(_mm512_maskz_loadu_epi8(sls_env_byte_mask64(left), p + j), left, &pw, &first,
                                 &lo, &mi, &hi);
        }
        acc = sls_env_gh512_reduce(lo, mi, hi);
        p += seg;
        len -= seg;
    }
    return acc;
}

/* ---- ymm: two blocks per register ---------------------------------------------- */
#define SLS_ENV_T_GH256 __attribute__((target("avx2,vpclmulqdq,pclmul"), always_inline))

/* The empty asm makes each running sum opaque to the compiler: otherwise GCC
 * reassociates a run of these XORs into one tree, computes every product first and,
 * with only sixteen ymm registers, spills them (measured: the stitched loop ran ~30%
 * slower). */
SLS_ENV_T_GH256 static inline void sls_env_gh256_mul(__m256i x, __m256i h, __m256i *lo, __m256i *mi,
                                                     __m256i *hi)
{
    *lo = _mm256_xor_si256(*lo, _mm256_clmulepi64_epi128(x, h, 0x00));
    *hi = _mm256_xor_si256(*hi, _mm256_clmulepi64_epi128(x, h, 0x11));
    *mi = _mm256_xor_si256(*mi, _mm256_xor_si256(_mm256_clmulepi64_epi128(x, h, 0x01),
                                                 _mm256_clmulepi64_epi128(x, h, 0x10)));
    __asm__("" : "+x"(*lo), "+x"(*mi), "+x"(*hi));
}

SLS_ENV_T_GH256 static inline void sls_env_gh256_mul0(__m256i x, __m256i h, __m256i *lo, __m256i *mi,
                                                      __m256i *hi)
{
    *lo = _mm256_clmulepi64_epi128(x, h, 0x00);
    *hi = _mm256_clmulepi64_epi128(x, h, 0x11);
    *mi = _mm256_xor_si256(_mm256_clmulepi64_epi128(x, h, 0x01), _mm256_clmulepi64_epi128(x, h, 0x10));
}

SLS_ENV_T_GH256 static inline __m128i sls_env_gh256_reduce(__m256i lo, __m256i mi, __m256i hi)
{
    const __m256i k = _mm256_set1_epi64x((long long)SLS_ENV_GHASH_POLY_HI);
    mi = _mm256_xor_si256(mi, _mm256_xor_si256(_mm256_shuffle_epi32(lo, 0x4e),
                                               _mm256_clmulepi64_epi128(lo, k, 0x00)));
    hi = _mm256_xor_si256(hi, _mm256_xor_si256(_mm256_shuffle_epi32(mi, 0x4e),
                                               _mm256_clmulepi64_epi128(mi, k, 0x00)));
    return _mm_xor_si128(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
}

#endif /* SLS_ENV_X86 */
#endif /* SLS_ENV_GHASH_X86_VPCLMUL_H */
