/*
 * AES (FIPS 197) with the ARMv8 Cryptography Extensions (AESE, AESMC).
 *
 * AESE is AddRoundKey, SubBytes and ShiftRows; AESMC is MixColumns (Arm ARM, "AESE",
 * "AESMC").  A round of FIPS 197 is therefore AESMC(AESE(b, rk[r])) with the key XOR
 * moved to the front, and the last round AESE(b, rk[nr-1]) ^ rk[nr].  SubWord for the
 * key schedule (FIPS 197 5.2, aes_key.c) is AESE with a zero key over a word broadcast
 * to all four columns, where ShiftRows cannot move it.  No table, no branch on the key or the data.
 *
 * CTR runs eight blocks at a time so the AESE/AESMC latency is hidden behind the
 * throughput of the AES unit(s).  Run-time probe: HWCAP_AES (dispatch.c).
 */
#include "internal.h"

#if SLS_ENV_ARM64

#include <arm_neon.h>

#define TARGET __attribute__((target("+crypto")))

struct sls_env_aes_armv8_state {
    uint8x16_t rk[15];
    unsigned rounds;
};

static int armv8_supported(void) { return sls_env_cpu_has(SLS_ENV_CPU_ARM_AES); }

TARGET static uint32_t sub_word(uint32_t w)
{
    uint8x16_t x = vaeseq_u8(vreinterpretq_u8_u32(vdupq_n_u32(w)), vdupq_n_u8(0));
    return vgetq_lane_u32(vreinterpretq_u32_u8(x), 0);
}

TARGET static int armv8_init(void *state, const uint8_t *key, size_t key_len)
{
    struct sls_env_aes_armv8_state *s = state;
    uint32_t w[60];
    const unsigned nr = sls_env_aes_expand_key(key, key_len, w, sub_word);
    if (!nr)
        return SLS_ENV_ERR_KEY_SIZE;
    for (unsigned r = 0; r <= nr; r++)
        s->rk[r] = vld1q_u8((const uint8_t *)(w + 4 * r));
    s->rounds = nr;
    sls_env_wipe(w, sizeof w);
    return SLS_ENV_OK;
}

TARGET static inline uint8x16_t encrypt1(const struct sls_env_aes_armv8_state *s, uint8x16_t b)
{
    unsigned r;
    for (r = 0; r + 1 < s->rounds; r++)
        b = vaesmcq_u8(vaeseq_u8(b, s->rk[r]));
    return veorq_u8(vaeseq_u8(b, s->rk[r]), s->rk[r + 1]);
}

TARGET static inline void encrypt8(const struct sls_env_aes_armv8_state *s, uint8x16_t b[8])
{
    unsigned r;
    for (r = 0; r + 1 < s->rounds; r++) {
        uint8x16_t k = s->rk[r];
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            b[j] = vaesmcq_u8(vaeseq_u8(b[j], k));
    }
    uint8x16_t k = s->rk[r], last = s->rk[r + 1];
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        b[j] = veorq_u8(vaeseq_u8(b[j], k), last);
}

#define BLOCK_STATE struct sls_env_aes_armv8_state
#include "common/arm64_block_modes.h"

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_armv8 = {
    "armv8", armv8_supported, armv8_init, block_ecb, block_ctr32,
};

#else /* !SLS_ENV_ARM64 */

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_armv8 = SLS_ENV_UNAVAILABLE_CIPHER("armv8");

#endif
