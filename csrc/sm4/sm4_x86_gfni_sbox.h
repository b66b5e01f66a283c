/*
 * The SM4 S-box as two GFNI instructions, shared by the zmm (sm4_x86_gfni.h) and ymm
 * (sm4_gfni256.c) paths; the derivation is in sm4_x86_gfni.h ("The S-box"):
 *     S(x) = GF2P8AFFINEINVQB(GF2P8AFFINEQB(x, M1, C1), M2, C2)
 * in GFNI's qword matrix encoding, checked against all 256 entries of the GB/T 32907
 * table (and again by the known-answer tests).
 */
#ifndef SLS_ENV_SM4_X86_GFNI_SBOX_H
#define SLS_ENV_SM4_X86_GFNI_SBOX_H

#define SBOX_M1 0x4c287db91a22505dll
#define SBOX_C1 0x3e
#define SBOX_M2 0xf3ab34a974a6b589ll
#define SBOX_C2 0xd3

#endif /* SLS_ENV_SM4_X86_GFNI_SBOX_H */
