/*
 * ECB and CTR32 drivers over an ARM64 block cipher's eight-block and one-block functions,
 * shared by the AES (`csrc/aes/aes_armv8.c`) and SM4 (`csrc/sm4/sm4_sm4e.c`,
 * `csrc/sm4/sm4_armv8.c`) paths.
 *
 * A template: the including file defines, before including it,
 *   TARGET        the function attribute that enables its instructions,
 *   BLOCK_STATE   its key-state struct type,
 *   encrypt1(const BLOCK_STATE *, uint8x16_t) and encrypt8(const BLOCK_STATE *, uint8x16_t[8]),
 * and gets `block_ecb` and `block_ctr32` with the signatures of sls_env_block_cipher.
 * A cipher whose one block costs as much as four (sm4_armv8.c's rounds work on four blocks
 * side by side) defines BLOCK_TAIL4 and encrypt4(const BLOCK_STATE *, uint8x16_t[4])
 * instead of encrypt1: the last 1..7 blocks then go four at a time, the missing ones zero
 * (ECB) or counters past the end (CTR), whose output is dropped.
 * Eight blocks are in flight because the ciphers' round instructions have a latency of
 * several cycles and a throughput of one or two per cycle; `#pragma GCC unroll 8` keeps the
 * eight blocks in registers (without it GCC 12 keeps them in memory).
 */
#ifndef SLS_ENV_ARM64_BLOCK_MODES_H
#define SLS_ENV_ARM64_BLOCK_MODES_H

TARGET static void block_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const BLOCK_STATE *s = state;
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
#ifdef BLOCK_TAIL4
    while (nblocks) {
        size_t n = nblocks < 4 ? nblocks : 4;
        uint8x16_t b[4];
        for (size_t j = 0; j < 4; j++)
            b[j] = j < n ? vld1q_u8(in + 16 * j) : vdupq_n_u8(0);
        encrypt4(s, b);
        for (size_t j = 0; j < n; j++)
            vst1q_u8(out + 16 * j, b[j]);
        in += 16 * n;
        out += 16 * n;
        nblocks -= n;
    }
#else
    for (; nblocks; nblocks--, in += 16, out += 16)
        vst1q_u8(out, encrypt1(s, vld1q_u8(in)));
#endif
}

/* The counter block with its last word (big-endian, SP 800-38D inc32) set to c. */
TARGET static inline uint8x16_t counter_block(uint32x4_t base, uint32_t c)
{
    return vreinterpretq_u8_u32(vsetq_lane_u32(__builtin_bswap32(c), base, 3));
}

TARGET static void block_ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in,
                               uint8_t *out, size_t nblocks)
{
    const BLOCK_STATE *s = state;
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
#ifdef BLOCK_TAIL4
    while (nblocks) {
        size_t n = nblocks < 4 ? nblocks : 4;
        uint8x16_t b[4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            b[j] = counter_block(base, c + (uint32_t)j);
        encrypt4(s, b);
        for (size_t j = 0; j < n; j++)
            vst1q_u8(out + 16 * j, veorq_u8(b[j], vld1q_u8(in + 16 * j)));
        in += 16 * n;
        out += 16 * n;
        c += (uint32_t)n;
        nblocks -= n;
    }
#else
    for (; nblocks; nblocks--, in += 16, out += 16, c++)
        vst1q_u8(out, veorq_u8(encrypt1(s, counter_block(base, c)), vld1q_u8(in)));
#endif
}

#endif
