/*
 * The nibble tables of the two bytewise affine maps that put SM4's S-box around AES's
 * SubBytes, S(x) = Mo * Sub(Mi * x ^ ci) ^ co (the derivation is in
 * sm4_x86_aesenclast.h): each map is f(x) = lo[x & 15] ^ hi[x >> 4], the constant folded
 * into the high table.  One copy for the x86 AESENCLAST paths (sm4_aesni.c,
 * sm4_vaes256.c) and the ARMv8 AESE path (sm4_armv8.c), which index them inside a
 * register (VPSHUFB, TBL), never by data in memory; the known-answer tests check every
 * path that uses them.
 */
#ifndef SLS_ENV_SM4_AES_AFFINE_H
#define SLS_ENV_SM4_AES_AFFINE_H

#include <stdint.h>

#include "internal.h"

static const SLS_ENV_ALIGN(16) uint8_t sls_env_sm4_aes_in_lo[16] = {
    0x00, 0x8c, 0x30, 0xbc, 0x85, 0x09, 0xb5, 0x39, 0x9f, 0x13, 0xaf, 0x23, 0x1a, 0x96, 0x2a, 0xa6};
static const SLS_ENV_ALIGN(16) uint8_t sls_env_sm4_aes_in_hi[16] = {
    0x3e, 0xe2, 0x10, 0xcc, 0xfb, 0x27, 0xd5, 0x09, 0x36, 0xea, 0x18, 0xc4, 0xf3, 0x2f, 0xdd, 0x01};
static const SLS_ENV_ALIGN(16) uint8_t sls_env_sm4_aes_out_lo[16] = {
    0x00, 0xb8, 0xca, 0x72, 0x3e, 0x86, 0xf4, 0x4c, 0x67, 0xdf, 0xad, 0x15, 0x59, 0xe1, 0x93, 0x2b};
static const SLS_ENV_ALIGN(16) uint8_t sls_env_sm4_aes_out_hi[16] = {
    0x6c, 0x8c, 0x3c, 0xdc, 0xf1, 0x11, 0xa1, 0x41, 0xac, 0x4c, 0xfc, 0x1c, 0x31, 0xd1, 0x61, 0x81};

#endif /* SLS_ENV_SM4_AES_AFFINE_H */
