/*
 * The SM4 S-box as two GFNI instructions, shared by the zmm (sm4_x86_gfni.h) and ymm
 * (sm4_gfni256.c) paths; the derivation is in sm4_x86_gfni.h ("The S-box"):
 *     S(x) = GF2P8AFFINEINVQB(GF2P8AFFINEQB(x, M1, C1), M2, C2)
 * in GFNI's qword matrix encoding, checked against all 256 entries of the GB/T 32907
 * table (and again by the known-answer tests).
 */
#ifndef SLS_ENV_SM4_X86_GFNI_SBOX_H
#define SLS_ENV_SM4_X86_GFNI_SBOX_H

#include <immintrin.h>
#include <stdint.h>

#define SBOX_M1 0x4c287db91a22505dll
#define SBOX_C1 0x3e
#define SBOX_M2 0xf3ab34a974a6b589ll
#define SBOX_C2 0xd3
/* M1^-1, the inverse of SBOX_M1's linear map (for the byte-sliced rounds of
 * sm4gcm_gfni.c, which keep their state multiplied by M1). */
#define SBOX_M1_INV 0xb3a4f5863284728bll

/* tau on one word: the two instructions on an xmm register, so no table is indexed by
 * secret bytes (the key schedules, and the zmm path's one-block side chain).  Inlined
 * into its callers, whose wider target sets include GFNI, it takes their encoding. */
static inline __attribute__((always_inline, target("gfni"))) uint32_t
sls_env_sm4_tau_word(uint32_t a)
{
    __m128i v = _mm_cvtsi32_si128((int)a);
    v = _mm_gf2p8affine_epi64_epi8(v, _mm_set1_epi64x(SBOX_M1), SBOX_C1);
    v = _mm_gf2p8affineinv_epi64_epi8(v, _mm_set1_epi64x(SBOX_M2), SBOX_C2);
    return (uint32_t)_mm_cvtsi128_si32(v);
}

#endif /* SLS_ENV_SM4_X86_GFNI_SBOX_H */
