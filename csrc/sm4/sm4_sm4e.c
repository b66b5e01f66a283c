/*
 * SM4 (GB/T 32907-2016) with the ARMv8.2 SM4 instructions: SM4EKEY makes four round
 * keys per instruction from the previous four and four CK constants, SM4E runs four
 * rounds on a block held as the words X0..X3 in lanes 0..3 (Arm ARM, "SM4E",
 * "SM4EKEY").  The words are big-endian in the block, so each is byte-reversed on the
 * way in (REV32) and the output R = (X35, X34, X33, X32) is the lanes reversed.  CTR
 * keeps eight blocks in flight to hide SM4E's latency.  The S-box is inside the
 * instruction: no table, no branch on the key or the data.  Probe: HWCAP_SM4.
 */
#include "internal.h"

#if SLS_ENV_ARM64

#include <arm_neon.h>

#define TARGET __attribute__((target("arch=armv8.2-a+sm4")))

struct sls_env_sm4_sm4e_state {
    uint32x4_t rk[8]; /* round keys 4i..4i+3 in lanes 0..3 */
};

static int sm4e_supported(void) { return sls_env_cpu_has(SLS_ENV_CPU_ARM_SM4); }

TARGET static int sm4e_init(void *state, const uint8_t *key, size_t key_len)
{
    struct sls_env_sm4_sm4e_state *s = state;
    if (key_len != 16)
        return SLS_ENV_ERR_KEY_SIZE;
    uint32x4_t k = veorq_u32(vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(key))), vld1q_u32(sls_env_sm4_fk));
    for (unsigned i = 0; i < 8; i++) {
        /* SM4EKEY makes four round keys from CK_4i..CK_4i+3 (sm4_key.c has the constants). */
        uint32_t ck[4];
        for (unsigned w = 0; w < 4; w++)
            ck[w] = sls_env_sm4_ck(4 * i + w);
        k = vsm4ekeyq_u32(k, vld1q_u32(ck));
        s->rk[i] = k;
    }
    return SLS_ENV_OK;
}

TARGET static inline uint32x4_t load_block(uint8x16_t b)
{
    return vreinterpretq_u32_u8(vrev32q_u8(b));
}

TARGET static inline uint8x16_t store_block(uint32x4_t x)
{
    uint32x4_t r = vrev64q_u32(x); /* X33 X32 X35 X34 */
    return vrev32q_u8(vreinterpretq_u8_u32(vextq_u32(r, r, 2)));
}

TARGET static inline uint8x16_t encrypt1(const struct sls_env_sm4_sm4e_state *s, uint8x16_t b)
{
    uint32x4_t x = load_block(b);
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        x = vsm4eq_u32(x, s->rk[i]);
    return store_block(x);
}

TARGET static inline void encrypt8(const struct sls_env_sm4_sm4e_state *s, uint8x16_t b[8])
{
    uint32x4_t x[8];
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        x[j] = load_block(b[j]);
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        uint32x4_t k = s->rk[i];
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            x[j] = vsm4eq_u32(x[j], k);
    }
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        b[j] = store_block(x[j]);
}

#define BLOCK_STATE struct sls_env_sm4_sm4e_state
#include "common/arm64_block_modes.h"

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_sm4e = {
    "sm4e", sm4e_supported, sm4e_init, block_ecb, block_ctr32,
};

#else /* !SLS_ENV_ARM64 */

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_sm4e = SLS_ENV_UNAVAILABLE_CIPHER("sm4e");

#endif
