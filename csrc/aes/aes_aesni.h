/*
 * The AES-NI key state, shared by aes_aesni.c and the stitched GCM routine
 * csrc/gcm/aesgcm_aesni.c, which runs the rounds itself; and the x86 SubWord for the
 * key schedule, which the VAES paths (aes_x86_vaes.h) use too.
 */
#ifndef SLS_ENV_AES_AESNI_H
#define SLS_ENV_AES_AESNI_H

#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

/* Every function that touches the AES-NI parts enables the same instruction sets. */
#define SLS_ENV_AESNI_TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1")))

/* In the 2048-byte, 64-aligned cipher state: the FIPS 197 round keys w[4r..4r+3]
 * as rk[r], then the number of rounds. */
struct sls_env_aes_aesni_state {
    __m128i rk[15];
    unsigned rounds; /* 10, 12 or 14 */
};

/* FIPS 197's SubWord for sls_env_aes_expand_key, with AESENCLAST (aes_aesni.c). */
SLS_ENV_HIDDEN uint32_t sls_env_aes_x86_sub_word(uint32_t w);

#endif
#endif /* SLS_ENV_AES_AESNI_H */
