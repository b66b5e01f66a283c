/*
 * AES (FIPS 197) with the ARMv8 Cryptography Extensions (AESE, AESMC).
 *
 * AESE is AddRoundKey, SubBytes and ShiftRows; AESMC is MixColumns (Arm ARM, "AESE",
 * "AESMC").  A round of FIPS 197 is therefore AESMC(AESE(b, rk[r])) with the key XOR
 * moved to the front, and the last round AESE(b, rk[nr-1]) ^ rk[nr].  SubWord for the
 * key schedule is AESE with a zero key over a word broadcast to all four columns,
 * where ShiftRows cannot move it.  No table, no branch on the key or the data.
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
    if (key_len != 16 && key_len != 24 && key_len != 32)
        return SLS_ENV_ERR_KEY_SIZE;
    const unsigned nk = (unsigned)(key_len / 4), nr = nk + 6, total = 4 * (nr + 1);
    uint32_t w[60];
    memcpy(w, key, key_len);
    uint32_t rcon = 1;
    for (unsigned i = nk; i < total; i++) {
        uint32_t t = w[i - 1];
        if (i % nk == 0) {
            t = sub_word((t >> 8) | (t << 24)) ^ rcon; /* RotWord on little-endian words */
            rcon = (rcon << 1) ^ (0x11b & -(rcon >> 7));
        } else if (nk > 6 && i % nk == 4) {
            t = sub_word(t);
        }
        w[i] = w[i - nk] ^ t;
    }
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

TARGET static void armv8_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const struct sls_env_aes_armv8_state *s = state;
    for (; nblocks >= 8; nblocks -= 8, in += 128, out += 128) {
        uint8x16_t b[8];
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            b[j] = vld1q_u8(in + 16 * j);
        encrypt8(s, b);
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            vst1q_u8(out + 16 * j, b[j]);
    }
    for (; nblocks; nblocks--, in += 16, out += 16)
        vst1q_u8(out, encrypt1(s, vld1q_u8(in)));
}

/* The counter block with its last word (big-endian, SP 800-38D inc32) set to c. */
TARGET static inline uint8x16_t counter_block(uint32x4_t base, uint32_t c)
{
    return vreinterpretq_u8_u32(vsetq_lane_u32(__builtin_bswap32(c), base, 3));
}

TARGET static void armv8_ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in,
                               uint8_t *out, size_t nblocks)
{
    const struct sls_env_aes_armv8_state *s = state;
    uint32x4_t base = vreinterpretq_u32_u8(vld1q_u8(ctr));
    uint32_t c = sls_env_load_be32(ctr + 12);
    for (; nblocks >= 8; nblocks -= 8, in += 128, out += 128, c += 8) {
        uint8x16_t b[8];
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            b[j] = counter_block(base, c + (uint32_t)j);
        encrypt8(s, b);
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            vst1q_u8(out + 16 * j, veorq_u8(b[j], vld1q_u8(in + 16 * j)));
    }
    for (; nblocks; nblocks--, in += 16, out += 16, c++)
        vst1q_u8(out, veorq_u8(encrypt1(s, counter_block(base, c)), vld1q_u8(in)));
}

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_armv8 = {
    "armv8", armv8_supported, armv8_init, armv8_ecb, armv8_ctr32,
};

#else /* !SLS_ENV_ARM64 */

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_armv8 = SLS_ENV_UNAVAILABLE_CIPHER("armv8");

#endif
