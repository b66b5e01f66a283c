/*
 * The SM4 S-box through AESENCLAST, for the x86-64 paths without GFNI (sm4_aesni.c on
 * xmm halves, sm4_vaes256.c on whole ymm registers).
 *
 * SM4's S-box is S(x) = A * inv(A * x ^ 0xD3) ^ 0xD3
 * with inversion in the SM4 field; AES's SubBytes is Sub(y) = A_aes * inv(y) ^ 0x63
 * in the AES field.  The two fields are isomorphic by a linear map, so
 *     S(x) = Mo * Sub(Mi * x ^ ci) ^ co
 * for 8x8 bit matrices Mi, Mo and constants ci, co (Mi folds SM4's input affine map
 * and the isomorphism into the AES field; Mo folds the isomorphism back, the inverse
 * of AES's affine map and SM4's output map).  This is the design the Linux kernel's
 * sm4-aesni-avx/avx2 code uses, described here in words: the bytewise affine maps
 * are evaluated with two 16-entry VPSHUFB lookups each, one indexed by the low and
 * one by the high nibble of every byte (f(x) = T_lo[x & 15] ^ T_hi[x >> 4], the
 * constant folded into T_hi); the inversion is AESENCLAST with an all-zero round key,
 * whose ShiftRows is undone by permuting the input bytes with the inverse ShiftRows
 * first.  The nibble tables are constants held in registers and indexed inside the
 * register by VPSHUFB, so no memory access depends on data: constant time.  The
 * table values (sm4_aes_affine.h, shared with the ARMv8 path) were derived by composing
 * the maps and checked against all 256 S-box entries (and again by the known-answer
 * tests).
 *
 * The including file defines TGT (its target attribute, which must enable AES-NI,
 * SSSE3 and AVX2) and INLINE; it gets the tables, sbox_word for the key schedule,
 * struct sbox_consts with sbox_consts_init, and nib256 for its sbox256.
 */
#ifndef SLS_ENV_SM4_X86_AESENCLAST_H
#define SLS_ENV_SM4_X86_AESENCLAST_H

#include <immintrin.h>

#include "sm4/sm4_aes_affine.h"

/* Nibble tables of the affine maps around AESENCLAST (see above; sm4_aes_affine.h). */
#define TAB(...) _mm_setr_epi8(__VA_ARGS__)
#define IN_LO _mm_load_si128((const __m128i *)(const void *)sls_env_sm4_aes_in_lo)
#define IN_HI _mm_load_si128((const __m128i *)(const void *)sls_env_sm4_aes_in_hi)
#define OUT_LO _mm_load_si128((const __m128i *)(const void *)sls_env_sm4_aes_out_lo)
#define OUT_HI _mm_load_si128((const __m128i *)(const void *)sls_env_sm4_aes_out_hi)
/* Inverse ShiftRows: AESENCLAST's ShiftRows then puts every byte back in place. */
#define INV_SHIFTROWS TAB(0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3)

/* x -> T_lo[x & 15] ^ T_hi[x >> 4] on every byte. */
TGT INLINE __m128i nib128(__m128i x, __m128i lo, __m128i hi)
{
    const __m128i m = _mm_set1_epi8(0x0f);
    __m128i l = _mm_and_si128(x, m), h = _mm_and_si128(_mm_srli_epi16(x, 4), m);
    return _mm_xor_si128(_mm_shuffle_epi8(lo, l), _mm_shuffle_epi8(hi, h));
}

/* tau (the S-box on every byte) of a word; the key schedule's use. */
TGT static uint32_t sbox_word(uint32_t a)
{
    __m128i v = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)a), INV_SHIFTROWS);
    v = nib128(v, IN_LO, IN_HI);
    v = _mm_aesenclast_si128(v, _mm_setzero_si128());
    v = nib128(v, OUT_LO, OUT_HI);
    return (uint32_t)_mm_cvtsi128_si32(v);
}

/* The nibble tables, broadcast to both lanes once per call of the rounds. */
struct sbox_consts {
    __m256i in_lo, in_hi, out_lo, out_hi;
};

TGT INLINE void sbox_consts_init(struct sbox_consts *k)
{
    k->in_lo = _mm256_broadcastsi128_si256(IN_LO);
    k->in_hi = _mm256_broadcastsi128_si256(IN_HI);
    k->out_lo = _mm256_broadcastsi128_si256(OUT_LO);
    k->out_hi = _mm256_broadcastsi128_si256(OUT_HI);
}

TGT INLINE __m256i nib256(__m256i x, __m256i lo, __m256i hi)
{
    const __m256i m = _mm256_set1_epi8(0x0f);
    __m256i l = _mm256_and_si256(x, m), h = _mm256_and_si256(_mm256_srli_epi16(x, 4), m);
    return _mm256_xor_si256(_mm256_shuffle_epi8(lo, l), _mm256_shuffle_epi8(hi, h));
}

#endif /* SLS_ENV_SM4_X86_AESENCLAST_H */
