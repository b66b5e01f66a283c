/*
 * SM4 (GB/T 32907-2016), portable and constant-time, encryption only (GCM and CTR
 * use only the forward cipher, NIST SP 800-38D section 6.5).
 *
 * The S-box without tables.  SM4's S-box is affine-equivalent to the AES S-box:
 * both are inversion in GF(2^8) wrapped in affine maps, only over different
 * polynomial bases, and a change of basis is linear (the Linux kernel's
 * sm4-aesni-avx design computes SM4's S-box with AESENCLAST for this reason).  We
 * derived the maps over GF(2) with a throwaway script (from the GFNI form of the
 * SM4 S-box and FIPS 197's affine map) and checked them on all 256 inputs:
 *
 *     S_sm4(x) = A2 * S_aes(A1 * x ^ c1) ^ c2,   c1 = 0x3e, c2 = 0x6c,
 *
 * with A1, A2 given by rows (output bit i = parity(row_i & x), bit 0 = LSB):
 *     A1 = {0x4c, 0x28, 0x7d, 0xb9, 0x1a, 0x22, 0x50, 0x5d}
 *     A2 = {0x48, 0x0e, 0x4c, 0x47, 0x65, 0x1d, 0xba, 0xd3}
 * Since S_aes(y) = S'(y) ^ 0x63 with S' the circuit without its output NOTs
 * (sls_env_bs_aes_sbox_noconst), S_sm4(x) = A2 * S'(A1 * x ^ 0x3e) ^ 0xd3
 * (A2 * 0x63 ^ c2 = 0xd3).  A1 and A2 are XOR networks on bit planes (12 and 16
 * XORs, found with Paar's greedy common-subexpression heuristic, C. Paar 1997);
 * the S-box in the middle is the Boyar-Peralta circuit of common/bitslice.h.  So
 * there are no table lookups and no branches on data or key anywhere, key schedule
 * included.
 *
 * Layout: 16 blocks at a time, fully bitsliced across all 32 rounds.  Each of the
 * four 32-bit state words X0..X3 of the 16 blocks (64 bytes) is held as 8 bit
 * planes of 64 bits; bit (16p + b) of plane j is bit j of byte p (p = 0 the least
 * significant byte) of that word in block b.  With bytes of equal significance
 * grouped in 16-bit lanes, rotating every word left by 8 is rotating each plane
 * left by 16, and rotating by 2 is renaming planes j -> j + 2, the two planes that
 * wrap into the next byte being rotated by 16.  So the linear map L (rotations
 * by 2, 10, 18, 24) costs a few register rotations and XORs per plane and the
 * state is transposed only once on the way in and once on the way out, not every
 * round.
 *
 * Constants folded away: the 0x3e ahead of the AES circuit is folded into the
 * round keys (the round key is XORed at the same point, after A1 is applied, so
 * we store A1 * rk ^ 0x3e per byte).  The 0xd3 after A2 goes through L to a
 * word constant D = L(0xd3d3d3d3) XORed into each new word; we leave it out and
 * track the offset instead: computed words Y_i differ from the true X_i by d_i,
 * with d_0..d_3 = 0 and d_{i+4} = d_i ^ D, so d_i = D exactly when i / 4 is odd.
 * Round i's S-box input then needs rk_i ^ d_{i+1} ^ d_{i+2} ^ d_{i+3}, which is
 * again folded into round key i, and after 32 rounds d_32..d_35 = 0: the output
 * needs no correction.
 */
#include "internal.h"

#include "common/bitslice.h"

#define SM4_ROUNDS 32
#define SM4_LANES 16 /* blocks per batch */

/* Round keys as bit-plane masks: plane j of round i is the 16-bit lane of byte p
 * all ones when bit j of (A1 * byte p of (rk_i ^ offset) ^ 0x3e) is set. */
typedef struct {
    uint64_t rk[SM4_ROUNDS][8];
} sm4_state;

_Static_assert(sizeof(sm4_state) <= SLS_ENV_CIPHER_STATE_SIZE, "SM4 state too large");

static inline uint32_t rotl32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }
static inline uint64_t rotl64(uint64_t x, unsigned n) { return (x << n) | (x >> (64 - n)); }

/* y = A1 * x on bit planes (without the constant). */
static inline void sm4_a1(uint64_t y[8], const uint64_t x[8])
{
    const uint64_t t8 = x[3] ^ x[4];
    const uint64_t t9 = x[0] ^ t8;
    const uint64_t t10 = x[2] ^ x[6];
    const uint64_t t11 = x[5] ^ t9;
    y[0] = x[3] ^ t10;
    y[1] = x[3] ^ x[5];
    y[2] = t10 ^ t11;
    y[3] = x[7] ^ t11;
    y[4] = x[1] ^ t8;
    y[5] = x[1] ^ x[5];
    y[6] = x[4] ^ x[6];
    y[7] = t9 ^ t10;
}

/* o = A2 * s on bit planes (without the constant). */
static inline void sm4_a2(uint64_t o[8], const uint64_t s[8])
{
    const uint64_t t8 = s[0] ^ s[2];
    const uint64_t t9 = s[1] ^ s[3];
    const uint64_t t10 = s[1] ^ s[6];
    const uint64_t t11 = s[3] ^ s[6];
    const uint64_t t12 = s[4] ^ s[7];
    o[0] = t11;
    o[1] = s[2] ^ t9;
    o[2] = s[2] ^ t11;
    o[3] = t8 ^ t10;
    o[4] = s[5] ^ s[6] ^ t8;
    o[5] = s[3] ^ s[4] ^ t8;
    o[6] = s[5] ^ t9 ^ t12;
    o[7] = s[0] ^ t10 ^ t12;
}

/* NOT the planes whose bit is set in c: XOR the constant c into every byte. */
static inline void planes_xor_const(uint64_t q[8], unsigned c)
{
    for (int j = 0; j < 8; j++)
        q[j] ^= (uint64_t)0 - (uint64_t)((c >> j) & 1);
}

/* tau (GB/T 32907 section 6.2): the S-box on each byte of one word, bitsliced with
 * the word's four bytes in lanes 0..3 of the planes (the other lanes idle). */
static uint32_t sm4_tau(uint32_t a)
{
    uint64_t q[8], y[8];
    for (int j = 0; j < 8; j++) {
        q[j] = 0;
        for (int p = 0; p < 4; p++)
            q[j] |= (uint64_t)((a >> (8 * p + j)) & 1) << p;
    }
    sm4_a1(y, q);
    planes_xor_const(y, 0x3e);
    sls_env_bs_aes_sbox_noconst(y);
    sm4_a2(q, y);
    planes_xor_const(q, 0xd3);
    uint32_t b = 0;
    for (int j = 0; j < 8; j++)
        for (int p = 0; p < 4; p++)
            b |= (uint32_t)((q[j] >> p) & 1) << (8 * p + j);
    return b;
}

/* L of the cipher (GB/T 32907 section 6.2) on one word; used only for the
 * constant D. */
static uint32_t sm4_l(uint32_t b)
{
    return b ^ rotl32(b, 2) ^ rotl32(b, 10) ^ rotl32(b, 18) ^ rotl32(b, 24);
}

/* A word broadcast to 16 lanes: plane j has byte p's lane all ones when bit j of
 * byte p is set.  Masks only, no branches. */
static inline void word_broadcast(uint64_t q[8], uint32_t w)
{
    for (int j = 0; j < 8; j++) {
        uint64_t m = 0;
        for (int p = 0; p < 4; p++)
            m |= ((uint64_t)0 - (uint64_t)((w >> (8 * p + j)) & 1)) & (0xFFFFull << (16 * p));
        q[j] = m;
    }
}

static int sm4_init(void *state, const uint8_t *key, size_t key_len)
{
    if (key_len != 16)
        return SLS_ENV_ERR_KEY_SIZE;
    sm4_state *st = state;
    /* The round keys (sm4_key.c), then their bitsliced form with the offsets the
     * rounds need. */
    uint32_t rk[SM4_ROUNDS];
    sls_env_sm4_expand_key(key, rk, sm4_tau);
    const uint32_t d = sm4_l(0xd3d3d3d3u);
    for (int i = 0; i < SM4_ROUNDS; i++) {
        /* The offsets d_{i+1} ^ d_{i+2} ^ d_{i+3} (see the top of the file). */
        uint32_t off = 0;
        for (int m = i + 1; m <= i + 3; m++)
            off ^= ((m / 4) & 1) ? d : 0;
        uint64_t q[8];
        word_broadcast(q, rk[i] ^ off);
        sm4_a1(st->rk[i], q);
        planes_xor_const(st->rk[i], 0x3e);
    }
    sls_env_wipe(rk, sizeof rk);
    return SLS_ENV_OK;
}

/* One round on 16 blocks: a ^= L(S(b ^ c ^ d ^ rk)), with S and rk as described at
 * the top (constants folded into rk). */
static inline void sm4_round(uint64_t a[8], const uint64_t b[8], const uint64_t c[8],
                             const uint64_t d[8], const uint64_t rk[8])
{
    uint64_t t[8], u[8], s[8];
    for (int j = 0; j < 8; j++)
        t[j] = b[j] ^ c[j] ^ d[j];
    sm4_a1(u, t);
    for (int j = 0; j < 8; j++)
        u[j] ^= rk[j];
    sls_env_bs_aes_sbox_noconst(u);
    sm4_a2(s, u);
    /* L(s) = s ^ (s <<< 24) ^ ((s ^ (s <<< 8) ^ (s <<< 16)) <<< 2); word rotation
     * by 8k is plane rotation by 16k. */
    uint64_t v[8], w[8];
    for (int j = 0; j < 8; j++) {
        uint64_t r24 = rotl64(s[j], 48);
        w[j] = s[j] ^ rotl64(s[j], 16) ^ rotl64(s[j], 32);
        v[j] = s[j] ^ r24;
    }
    /* <<< 2: bit j of a byte comes from bit j - 2 of the same byte, or for j < 2
     * from bit j + 6 of the next less significant byte (lane rotated by 16). */
    a[0] ^= v[0] ^ rotl64(w[6], 16);
    a[1] ^= v[1] ^ rotl64(w[7], 16);
    for (int j = 2; j < 8; j++)
        a[j] ^= v[j] ^ w[j - 2];
}

static void sm4_rounds(const sm4_state *st, uint64_t x[4][8])
{
    for (int i = 0; i < SM4_ROUNDS; i += 4) {
        sm4_round(x[0], x[1], x[2], x[3], st->rk[i]);
        sm4_round(x[1], x[2], x[3], x[0], st->rk[i + 1]);
        sm4_round(x[2], x[3], x[0], x[1], st->rk[i + 2]);
        sm4_round(x[3], x[0], x[1], x[2], st->rk[i + 3]);
    }
}

/* Byte p of a 32-bit word to byte 2p of a 64-bit one, and back. */
static inline uint64_t spread32(uint32_t v)
{
    uint64_t x = v;
    x = (x | (x << 16)) & 0x0000FFFF0000FFFFull;
    x = (x | (x << 8)) & 0x00FF00FF00FF00FFull;
    return x;
}
static inline uint32_t unspread32(uint64_t x)
{
    x &= 0x00FF00FF00FF00FFull;
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFFull;
    x = (x | (x >> 16)) & 0x00000000FFFFFFFFull;
    return (uint32_t)x;
}

/* Words w[0..15] (one per block) to planes.  Word k of the transpose input gets
 * blocks k and k + 8 interleaved byte by byte (byte 2p + h = byte p of block
 * k + 8h), so after sls_env_bs_transpose8 bit (8 * (2p + h) + k) = bit (16p + b)
 * of plane j is bit j of byte p of block b = k + 8h. */
static inline void words_to_planes(uint64_t q[8], const uint32_t w[SM4_LANES])
{
    for (int k = 0; k < 8; k++)
        q[k] = spread32(w[k]) | (spread32(w[k + 8]) << 8);
    sls_env_bs_transpose8(q);
}

static inline void planes_to_words(uint32_t w[SM4_LANES], uint64_t q[8])
{
    sls_env_bs_transpose8(q);
    for (int k = 0; k < 8; k++) {
        w[k] = unspread32(q[k]);
        w[k + 8] = unspread32(q[k] >> 8);
    }
}

/* Encrypt 16 blocks held as words: blk[b][i] is word i of block b. */
static void sm4_encrypt16(const sm4_state *st, uint32_t blk[SM4_LANES][4])
{
    uint64_t x[4][8];
    uint32_t w[SM4_LANES];
    for (int i = 0; i < 4; i++) {
        for (int b = 0; b < SM4_LANES; b++)
            w[b] = blk[b][i];
        words_to_planes(x[i], w);
    }
    sm4_rounds(st, x);
    /* The output is (X35, X34, X33, X32) (GB/T 32907 section 7.1, R). */
    for (int i = 0; i < 4; i++) {
        planes_to_words(w, x[3 - i]);
        for (int b = 0; b < SM4_LANES; b++)
            blk[b][i] = w[b];
    }
}

static void sm4_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const sm4_state *st = state;
    uint32_t blk[SM4_LANES][4];
    while (nblocks) {
        size_t n = nblocks < SM4_LANES ? nblocks : SM4_LANES;
        for (size_t b = 0; b < SM4_LANES; b++)
            for (int i = 0; i < 4; i++)
                blk[b][i] = b < n ? sls_env_load_be32(in + 16 * b + 4 * i) : 0;
        sm4_encrypt16(st, blk);
        for (size_t b = 0; b < n; b++)
            for (int i = 0; i < 4; i++)
                sls_env_store_be32(out + 16 * b + 4 * i, blk[b][i]);
        in += 16 * n;
        out += 16 * n;
        nblocks -= n;
    }
    sls_env_wipe(blk, sizeof blk);
}

static void sm4_ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in, uint8_t *out,
                      size_t nblocks)
{
    const sm4_state *st = state;
    /* Words 0..2 of every counter block are the same: put them in planes once. */
    uint64_t fixed[3][8];
    for (int i = 0; i < 3; i++)
        word_broadcast(fixed[i], sls_env_load_be32(ctr + 4 * i));
    uint32_t c = sls_env_load_be32(ctr + 12);
    uint64_t x[4][8];
    uint32_t w[SM4_LANES];
    while (nblocks) {
        size_t n = nblocks < SM4_LANES ? nblocks : SM4_LANES;
        memcpy(x, fixed, sizeof fixed);
        /* Lanes past n compute keystream that is thrown away; the counter there
         * may wrap modulo 2^32, harmlessly. */
        for (int b = 0; b < SM4_LANES; b++)
            w[b] = c + (uint32_t)b;
        words_to_planes(x[3], w);
        sm4_rounds(st, x);
        for (int i = 0; i < 4; i++) {
            planes_to_words(w, x[3 - i]);
            for (size_t b = 0; b < n; b++)
                sls_env_store_be32(out + 16 * b + 4 * i,
                                   sls_env_load_be32(in + 16 * b + 4 * i) ^ w[b]);
        }
        c += (uint32_t)n;
        in += 16 * n;
        out += 16 * n;
        nblocks -= n;
    }
    sls_env_wipe(x, sizeof x);
    sls_env_wipe(w, sizeof w);
}

static int sm4_supported(void) { return 1; }

const sls_env_block_cipher sls_env_sm4_portable = {
    "portable", sm4_supported, sm4_init, sm4_ecb, sm4_ctr32,
};
