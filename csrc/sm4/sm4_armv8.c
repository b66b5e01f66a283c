/*
 * SM4 (GB/T 32907-2016) through the ARMv8 AES instruction, for ARM64 CPUs with the
 * Cryptography Extensions' AES but without the SM4 instructions (sm4_sm4e.c).
 *
 * The S-box is the x86 `aesni` path's (sm4_x86_aesenclast.h, where the argument is):
 * SM4's S-box is AES's SubBytes between two bytewise affine maps,
 *     S(x) = Mo * Sub(Mi * x ^ ci) ^ co,
 * each map evaluated with two 16-entry TBL lookups (low and high nibble of every byte,
 * the constant folded into the high table): the same tables (sm4_aes_affine.h); the
 * known-answer tests check all of it.
 * AESE(x, k) is SubBytes(ShiftRows(x ^ k)) (Arm ARM, "AESE"), so two things differ
 * from AESENCLAST, which XORs its key after:
 *   - the round key goes into AESE's key operand: Mi is linear, so
 *     Mi * (t ^ rk) ^ ci = (Mi * t ^ ci) ^ Mi * rk, and the state holds, per round, Mi
 *     applied to the round key's bytes broadcast to all four columns (a value
 *     ShiftRows leaves in place), one XOR fewer per round;
 *   - ShiftRows is not undone on the way in (as x86 does with a PSHUFB) but folded into
 *     the byte permutations the linear map L needs anyway.  With B the S-box output
 *     and B' = ShiftRows(B) what AESE leaves,
 *         L(B) = B ^ (B <<< 2) ^ (B <<< 10) ^ (B <<< 18) ^ (B <<< 24)
 *              = (C <<< 24) ^ ((C ^ (B <<< 16)) <<< 2),   C = B ^ (B <<< 8),
 *     and every rotation by a whole byte of B or C is one TBL of B' or of
 *     D = B' ^ P(B') (C = InvShiftRows(D) for the permutation P built below), each
 *     TBL's index the composition of the rotation with InvShiftRows.  A round costs
 *     23 instructions for four blocks: 2 EOR for X1 ^ X2 ^ X3, 5 for each affine map,
 *     AESE, 4 TBL, 3 EOR and SHL/SRI for L, 1 EOR into X0.
 *
 * Layout: four blocks per set of four registers, register i holding word X_i of each
 * (a 4x4 transpose of 32-bit words on the way in and out), native-endian words (REV32
 * of the big-endian bytes); two sets are interleaved, eight blocks in flight, to cover
 * AESE's and TBL's latencies.  The tables are constants held in registers and indexed
 * inside them by TBL; nothing is read from memory at an address that depends on the key
 * or the data, and nothing branches on them.  Run-time probe: HWCAP_AES (dispatch.c
 * puts this path after `sm4e`, so it is the default only without HWCAP_SM4).
 */
#include "internal.h"

#if SLS_ENV_ARM64

#include <arm_neon.h>

#include "sm4/sm4_aes_affine.h"

#define TARGET __attribute__((target("+crypto")))
#define INLINE static inline __attribute__((always_inline))

struct sls_env_sm4_armv8_state {
    uint8x16_t kk[32]; /* Mi * (bytes of rk_i), the word in all four columns */
};

static int sm4_armv8_supported(void) { return sls_env_cpu_has(SLS_ENV_CPU_ARM_AES); }

/*
 * Byte permutations for TBL (result byte i = source byte idx[i]).  ShiftRows moves
 * byte SR[i] to i, SR = {0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12, 1, 6, 11}, and
 * InvShiftRows is INV = {0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3}.
 * Rotating each little-endian 32-bit lane left by 8r bytes takes byte j of the lane
 * from byte j - r.  Composed (rotation after InvShiftRows, idx[i] = INV[R[i]]):
 *   inv       INV                                 B  from B'
 *   rot16inv  INV[R16[i]]                         B <<< 16 from B'
 *   rot24inv  INV[R24[i]]                         C <<< 24 from D
 *   p         INV[R8[SR[i]]]                      P, so that InvShiftRows(B' ^ P(B')) = C
 * (the last because P(B')[INV[i]] must be (B <<< 8)[i] = B'[INV[R8[i]]]).
 */
static const uint8_t perm_inv[16] = {0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3};
static const uint8_t perm_rot16inv[16] = {10, 7, 0, 13, 14, 11, 4, 1, 2, 15, 8, 5, 6, 3, 12, 9};
static const uint8_t perm_rot24inv[16] = {13, 10, 7, 0, 1, 14, 11, 4, 5, 2, 15, 8, 9, 6, 3, 12};
static const uint8_t perm_p[16] = {7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2};

struct consts {
    uint8x16_t in_lo, in_hi, out_lo, out_hi, nib, inv, rot16inv, rot24inv, p;
};

TARGET INLINE void consts_load(struct consts *c)
{
    c->in_lo = vld1q_u8(sls_env_sm4_aes_in_lo);
    c->in_hi = vld1q_u8(sls_env_sm4_aes_in_hi);
    c->out_lo = vld1q_u8(sls_env_sm4_aes_out_lo);
    c->out_hi = vld1q_u8(sls_env_sm4_aes_out_hi);
    c->nib = vdupq_n_u8(0x0f);
    c->inv = vld1q_u8(perm_inv);
    c->rot16inv = vld1q_u8(perm_rot16inv);
    c->rot24inv = vld1q_u8(perm_rot24inv);
    c->p = vld1q_u8(perm_p);
}

/* x -> lo[x & 15] ^ hi[x >> 4] on every byte. */
TARGET INLINE uint8x16_t affine(uint8x16_t x, uint8x16_t lo, uint8x16_t hi, uint8x16_t nib)
{
    return veorq_u8(vqtbl1q_u8(lo, vandq_u8(x, nib)), vqtbl1q_u8(hi, vshrq_n_u8(x, 4)));
}

/* One round on four blocks: x0 ^ L(S(x1 ^ x2 ^ x3 ^ rk)), kk being Mi * rk. */
TARGET INLINE uint32x4_t round4(uint32x4_t x0, uint32x4_t x1, uint32x4_t x2, uint32x4_t x3,
                                uint8x16_t kk, const struct consts *c)
{
    uint8x16_t t = vreinterpretq_u8_u32(veorq_u32(x1, veorq_u32(x2, x3)));
    t = affine(t, c->in_lo, c->in_hi, c->nib);
    uint8x16_t b = affine(vaeseq_u8(t, kk), c->out_lo, c->out_hi, c->nib); /* B' */
    uint8x16_t d = veorq_u8(b, vqtbl1q_u8(b, c->p));
    uint32x4_t cc = vreinterpretq_u32_u8(vqtbl1q_u8(d, c->inv));
    uint32x4_t c24 = vreinterpretq_u32_u8(vqtbl1q_u8(d, c->rot24inv));
    uint32x4_t b16 = vreinterpretq_u32_u8(vqtbl1q_u8(b, c->rot16inv));
    uint32x4_t u = veorq_u32(cc, b16);
    u = vsriq_n_u32(vshlq_n_u32(u, 2), u, 30); /* <<< 2 */
    return veorq_u32(x0, veorq_u32(c24, u));
}

/* Four blocks to four registers of words (x[i] = word i of each block) and back. */
TARGET INLINE void transpose4(uint32x4_t x[4])
{
    uint32x4_t t0 = vtrn1q_u32(x[0], x[1]), t1 = vtrn2q_u32(x[0], x[1]);
    uint32x4_t t2 = vtrn1q_u32(x[2], x[3]), t3 = vtrn2q_u32(x[2], x[3]);
    x[0] = vreinterpretq_u32_u64(vtrn1q_u64(vreinterpretq_u64_u32(t0), vreinterpretq_u64_u32(t2)));
    x[1] = vreinterpretq_u32_u64(vtrn1q_u64(vreinterpretq_u64_u32(t1), vreinterpretq_u64_u32(t3)));
    x[2] = vreinterpretq_u32_u64(vtrn2q_u64(vreinterpretq_u64_u32(t0), vreinterpretq_u64_u32(t2)));
    x[3] = vreinterpretq_u32_u64(vtrn2q_u64(vreinterpretq_u64_u32(t1), vreinterpretq_u64_u32(t3)));
}

TARGET INLINE void load4(uint32x4_t x[4], const uint8x16_t b[4])
{
    #pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        x[j] = vreinterpretq_u32_u8(vrev32q_u8(b[j]));
    transpose4(x);
}

/* The output block is (X35, X34, X33, X32) (GB/T 32907 section 7.1, R). */
TARGET INLINE void store4(uint8x16_t b[4], const uint32x4_t x[4])
{
    uint32x4_t y[4] = {x[3], x[2], x[1], x[0]};
    transpose4(y);
    #pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        b[j] = vrev32q_u8(vreinterpretq_u8_u32(y[j]));
}

/* The S-box on each byte of a word, for the key schedule (sm4_key.c): the word in all
 * four columns, where ShiftRows cannot move it. */
TARGET static uint32_t tau(uint32_t a)
{
    struct consts c;
    consts_load(&c);
    uint8x16_t x = affine(vreinterpretq_u8_u32(vdupq_n_u32(a)), c.in_lo, c.in_hi, c.nib);
    x = affine(vaeseq_u8(x, vdupq_n_u8(0)), c.out_lo, c.out_hi, c.nib);
    return vgetq_lane_u32(vreinterpretq_u32_u8(x), 0);
}

TARGET static int sm4_armv8_init(void *state, const uint8_t *key, size_t key_len)
{
    struct sls_env_sm4_armv8_state *s = state;
    if (key_len != 16)
        return SLS_ENV_ERR_KEY_SIZE;
    struct consts c;
    consts_load(&c);
    uint32_t rk[32];
    sls_env_sm4_expand_key(key, rk, tau);
    /* Mi * rk = (Mi * rk ^ ci) ^ ci, the first the input map's tables give. */
    const uint8x16_t ci = vdupq_n_u8(sls_env_sm4_aes_in_hi[0]);
    for (int i = 0; i < 32; i++)
        s->kk[i] = veorq_u8(affine(vreinterpretq_u8_u32(vdupq_n_u32(rk[i])), c.in_lo, c.in_hi,
                                   c.nib),
                            ci);
    sls_env_wipe(rk, sizeof rk);
    return SLS_ENV_OK;
}

TARGET INLINE void encrypt4(const struct sls_env_sm4_armv8_state *s, uint8x16_t b[4])
{
    struct consts c;
    consts_load(&c);
    uint32x4_t x[4];
    load4(x, b);
    for (int i = 0; i < 32; i += 4) {
        x[0] = round4(x[0], x[1], x[2], x[3], s->kk[i], &c);
        x[1] = round4(x[1], x[2], x[3], x[0], s->kk[i + 1], &c);
        x[2] = round4(x[2], x[3], x[0], x[1], s->kk[i + 2], &c);
        x[3] = round4(x[3], x[0], x[1], x[2], s->kk[i + 3], &c);
    }
    store4(b, x);
}

/* Two sets of four, interleaved round by round. */
TARGET INLINE void encrypt8(const struct sls_env_sm4_armv8_state *s, uint8x16_t b[8])
{
    struct consts c;
    consts_load(&c);
    uint32x4_t x[4], y[4];
    load4(x, b);
    load4(y, b + 4);
    for (int i = 0; i < 32; i += 4) {
        uint8x16_t k0 = s->kk[i], k1 = s->kk[i + 1], k2 = s->kk[i + 2], k3 = s->kk[i + 3];
        x[0] = round4(x[0], x[1], x[2], x[3], k0, &c);
        y[0] = round4(y[0], y[1], y[2], y[3], k0, &c);
        x[1] = round4(x[1], x[2], x[3], x[0], k1, &c);
        y[1] = round4(y[1], y[2], y[3], y[0], k1, &c);
        x[2] = round4(x[2], x[3], x[0], x[1], k2, &c);
        y[2] = round4(y[2], y[3], y[0], y[1], k2, &c);
        x[3] = round4(x[3], x[0], x[1], x[2], k3, &c);
        y[3] = round4(y[3], y[0], y[1], y[2], k3, &c);
    }
    store4(b, x);
    store4(b + 4, y);
}

#define BLOCK_STATE struct sls_env_sm4_armv8_state
#define BLOCK_TAIL4 /* the last 1..7 blocks four at a time through encrypt4 */
#include "common/arm64_block_modes.h"

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_armv8 = {
    "sm4-armv8", sm4_armv8_supported, sm4_armv8_init, block_ecb, block_ctr32,
};

#else /* !SLS_ENV_ARM64 */

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_armv8 = SLS_ENV_UNAVAILABLE_CIPHER("sm4-armv8");

#endif
