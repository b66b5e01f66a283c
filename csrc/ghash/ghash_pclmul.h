/*
 * GHASH with PCLMULQDQ: the state layout and inline steps shared by
 * ghash_pclmul.c and the stitched CTR+GHASH routines (csrc/gcm/aesgcm_aesni.c, and
 * any other cipher's xmm GCM path), which include this header.
 *
 * Representation (Intel's GCM white paper, Gueron & Kounavis, sections on the
 * "bit-reflected" method, and Gueron's "Fast GCM"): a block is byte-reversed with
 * PSHUFB, so the 128-bit integer's bit 127 is GCM's coefficient of x^0 and bit j
 * that of x^(127-j).  The carry-less product of two such reflected values is then
 * the 256-bit reflection of a*b*x (one degree too high; the white paper shifts the
 * product left by one bit to undo it).  Instead of shifting every product we keep
 * H*x^-1 ("H<<1 mod P" in reflected form) and its powers, so that
 * (Y) * (H^i x^-1) * x = Y*H^i with no shift at all.
 *
 * Reduction of a reflected 256-bit V = hi:lo modulo P = x^128 + x^7 + x^2 + x + 1:
 * the low 64 bits of lo hold the coefficients of x^255..x^192; x^128 = x^7+x^2+x+1
 * turns a 64-bit chunk A at bit s into A*C at bit s+64 plus A itself at bit s+128,
 * where C = 0xC200000000000000 carries x^7, x^2, x (bits 57, 62, 63) and the "+1" is
 * the 64-bit move.  Two such folds (s = 0, then s = 64) are exactly
 * M = swap64(lo) ^ clmul(lo_0, C), result = hi ^ swap64(M) ^ clmul(M_0, C).
 * Summing the unreduced products of several blocks before this one reduction is
 * the white paper's aggregated reduction.
 *
 * Products are Karatsuba's three multiplications: lo*lo, hi*hi and
 * (lo^hi)*(lo^hi), the last with the key's half-sum precomputed in hk[].
 */
#ifndef SLS_ENV_GHASH_PCLMUL_H
#define SLS_ENV_GHASH_PCLMUL_H

#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

#define SLS_ENV_GHASH_PCLMUL_TARGET __attribute__((target("pclmul,ssse3")))

/* In the 2048-byte, 64-aligned ghash state. */
struct sls_env_ghash_pclmul_state {
    __m128i h[8];  /* h[i] = H^(i+1) * x^-1, reflected */
    __m128i hk[8]; /* low lane: the two halves of h[i] XORed (Karatsuba) */
};

/* Unreduced sum of products. */
struct sls_env_ghash_acc {
    __m128i lo, hi, mid;
};

SLS_ENV_GHASH_PCLMUL_TARGET static inline __m128i sls_env_ghash_bswap(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* acc = x * h (first product of a sum). */
SLS_ENV_GHASH_PCLMUL_TARGET static inline void sls_env_ghash_mul_first(struct sls_env_ghash_acc *a,
                                                                       __m128i x, __m128i h,
                                                                       __m128i hk)
{
    a->lo = _mm_clmulepi64_si128(x, h, 0x00);
    a->hi = _mm_clmulepi64_si128(x, h, 0x11);
    a->mid = _mm_clmulepi64_si128(_mm_xor_si128(x, _mm_shuffle_epi32(x, 0x4E)), hk, 0x00);
}

/* Keeps the compiler from reassociating the sums: left alone, GCC 12 computes all
 * 24 products of an eight-block group first and adds them up at the end, which
 * needs far more than 16 xmm registers and spills every product to the stack. */
#define SLS_ENV_GHASH_PIN(v) __asm__("" : "+x"(v))

/* acc += x * h. */
SLS_ENV_GHASH_PCLMUL_TARGET static inline void sls_env_ghash_mul_add(struct sls_env_ghash_acc *a,
                                                                     __m128i x, __m128i h,
                                                                     __m128i hk)
{
    a->lo = _mm_xor_si128(a->lo, _mm_clmulepi64_si128(x, h, 0x00));
    a->hi = _mm_xor_si128(a->hi, _mm_clmulepi64_si128(x, h, 0x11));
    a->mid = _mm_xor_si128(
        a->mid, _mm_clmulepi64_si128(_mm_xor_si128(x, _mm_shuffle_epi32(x, 0x4E)), hk, 0x00));
    SLS_ENV_GHASH_PIN(a->lo);
    SLS_ENV_GHASH_PIN(a->hi);
    SLS_ENV_GHASH_PIN(a->mid);
}

/* The reduced value of acc (reflected). */
SLS_ENV_GHASH_PCLMUL_TARGET static inline __m128i sls_env_ghash_reduce(const struct sls_env_ghash_acc *a)
{
    const __m128i poly = _mm_set_epi64x(0, (long long)0xC200000000000000ull);
    /* Karatsuba: the middle term is mid ^ lo ^ hi, placed at bit 64. */
    __m128i mid = _mm_xor_si128(a->mid, _mm_xor_si128(a->lo, a->hi));
    __m128i lo = _mm_xor_si128(a->lo, _mm_slli_si128(mid, 8));
    __m128i hi = _mm_xor_si128(a->hi, _mm_srli_si128(mid, 8));
    __m128i m = _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4E), _mm_clmulepi64_si128(lo, poly, 0x00));
    __m128i n = _mm_xor_si128(_mm_shuffle_epi32(m, 0x4E), _mm_clmulepi64_si128(m, poly, 0x00));
    return _mm_xor_si128(hi, n);
}

/* y (reflected) absorbs k (1..8) reflected blocks x[0..k-1], one reduction:
 * y' = (y ^ x0) H^k ^ x1 H^(k-1) ^ ... ^ x(k-1) H. */
SLS_ENV_GHASH_PCLMUL_TARGET static inline __m128i sls_env_ghash_blocks(
    const struct sls_env_ghash_pclmul_state *s, __m128i y, const uint8_t *data, unsigned k)
{
    struct sls_env_ghash_acc a;
    __m128i x = _mm_xor_si128(y, sls_env_ghash_bswap(_mm_loadu_si128((const __m128i *)data)));
    sls_env_ghash_mul_first(&a, x, s->h[k - 1], s->hk[k - 1]);
    for (unsigned j = 1; j < k; j++) {
        x = sls_env_ghash_bswap(_mm_loadu_si128((const __m128i *)(data + 16 * j)));
        sls_env_ghash_mul_add(&a, x, s->h[k - 1 - j], s->hk[k - 1 - j]);
    }
    return sls_env_ghash_reduce(&a);
}

/* GHASH over nblocks whole blocks, y reflected. */
SLS_ENV_GHASH_PCLMUL_TARGET static inline __m128i sls_env_ghash_pclmul_run(
    const struct sls_env_ghash_pclmul_state *s, __m128i y, const uint8_t *data, size_t nblocks)
{
    for (; nblocks >= 8; nblocks -= 8, data += 128)
        y = sls_env_ghash_blocks(s, y, data, 8);
    if (nblocks)
        y = sls_env_ghash_blocks(s, y, data, (unsigned)nblocks);
    return y;
}

#endif /* SLS_ENV_X86 */
#endif /* SLS_ENV_GHASH_PCLMUL_H */
