/*
 * SM4 (GB/T 32907-2016) on AVX-512 with GFNI: what sm4_gfni.c (the block cipher) and
 * csrc/gcm/sm4gcm_gfni.c (SM4-GCM in one pass) share.  16 blocks per zmm group, several
 * groups interleaved.
 *
 * The S-box.  SM4's S-box is an affine map, an inversion in GF(2^8) and a second
 * affine map: S(x) = A * inv(A * x ^ 0xD3) ^ 0xD3, inversion modulo the SM4 field
 * polynomial x^8+x^7+x^6+x^5+x^4+x^2+1 (Liu et al., "Analysis of the SM4 S-box";
 * the same structure the Linux kernel's sm4-aesni-avx code exploits).  All fields of
 * order 256 are isomorphic through a linear map, so the SM4 inversion equals the AES
 * field inversion conjugated by an 8x8 bit matrix.  Folding that isomorphism into the
 * two affine maps leaves one GF2P8AFFINEQB (the input affine map composed with the
 * isomorphism into the AES field) and one GF2P8AFFINEINVQB (AES-field inversion, then
 * the isomorphism back composed with the output affine map):
 *     y = M1 * x ^ 0x3E,  S(x) = M2 * inv_AES(y) ^ 0xD3,
 * with M1 = 0x4c287db91a22505d and M2 = 0xf3ab34a974a6b589 in GFNI's qword matrix
 * encoding.  These were checked against all 256 entries of the GB/T 32907 table, and
 * the known-answer tests check them again.  GFNI runs in constant time and has no
 * table in memory, so the S-box leaks nothing through timing or cache.
 *
 * The layout.  A group of 16 blocks is transposed into four zmm registers X0..X3,
 * each 32-bit lane of Xj holding word j (big-endian, as GB/T 32907 reads it) of one
 * block, so one round is a handful of whole-register operations on 16 blocks:
 *     X4 = X0 ^ L(tau(X1 ^ X2 ^ X3 ^ rk)),
 *     L(B) = B ^ (B <<< 2) ^ (B <<< 10) ^ (B <<< 18) ^ (B <<< 24)
 *          = B ^ (B <<< 24) ^ ((B ^ (B <<< 8) ^ (B <<< 16)) <<< 2).
 * Two rotations by whole bytes are VPSHUFB (port 5 on Intel cores); the rotation by
 * 16 and the 2-bit one are VPROLD and the S-box two GFNI ops (port 0 for 512-bit
 * operands), and the XORs are VPTERNLOGD, which can go to either port: with the
 * masked state below, ten operations balance a round at about 5 cycles per group of
 * 16 blocks.  (The third byte rotation is on port 0 because the GHASH and the output
 * transposes of SM4-GCM load port 5 too: measured 2-5% less time per message than
 * with three VPSHUFB, up to 12% on the VM's slow phases.)  A round is
 * an ~11-cycle dependency chain (3 + 3 for the GFNI pair, measured here), so four
 * independent groups (64 blocks) are kept in flight to fill both ports.
 *
 * The transpose is the usual in-lane 4x4 dword transpose (UNPCK{L,H}{DQ,QDQ}), which
 * keeps each 128-bit lane to itself: after it, the dword at lane l, position j of Xp
 * is word p of block 4j + l.  In CTR mode the counters are generated directly in
 * that transposed order (words 0..2 are the same for every block, word 3 is
 * base + 4j + l), so only the output is transposed.
 *
 * The masked state.  Written out, a round is X1 ^ X2 ^ X3 ^ rk (two XORs: VPTERNLOGD
 * takes three inputs), the S-box (two), the three byte rotations, and three XORs to
 * combine X0, t, t <<< 24 and (t ^ t <<< 8 ^ t <<< 16) <<< 2: eleven operations.  The
 * vector rounds instead keep X'_j = X_j ^ K_j, with the masks K chosen so that
 * K_(i+1) ^ K_(i+2) ^ K_(i+3) = rk_i (K_0 = K_1 = K_2 = 0, K_3 = rk_0, then by that
 * recurrence; K_35 = 0).  Then X'_(i+1) ^ X'_(i+2) ^ X'_(i+3) is already the S-box
 * input (one VPTERNLOGD), and X'_(i+4) = X'_i ^ (K_i ^ K_(i+4)) ^ L(t): the constant
 * rides as the third input of the last VPTERNLOGD, which had a free one.  Ten
 * operations per round; entering the masked state costs one XOR per group (X_3 ^=
 * rk_0) and leaving it three (K_32..K_34).  The masks are derived from the round keys
 * at key setup and are as secret as they are.  Measured against the plain round
 * (benches/c_bench.sh, alternating builds): 1-4% less time per SM4-GCM message from
 * 1 KiB to 64 KiB on a quiet phase, for 10% fewer vector operations in the loop.
 *
 * Round constants are broadcast from memory (an EVEX embedded broadcast costs the
 * same as a full load).  Only encryption is needed (GCM).
 *
 * SM4-GCM's 64-block passes (sm4gcm_gfni.c, bs_round) use a byte-sliced form of the
 * same masked round instead, 6 operations per 16 blocks rather than 10; the rounds here
 * serve the block cipher (sm4_gfni.c) and the last pass of a message.
 */
#ifndef SLS_ENV_SM4_X86_GFNI_H
#define SLS_ENV_SM4_X86_GFNI_H

#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

#define SLS_ENV_T_SM4GFNI __attribute__((target("avx512f,avx512bw,avx512vl,gfni")))
#define TGT SLS_ENV_T_SM4GFNI
#define INLINE static inline __attribute__((always_inline))

/* GFNI matrices of the S-box decomposition (see above). */
#include "sm4/sm4_x86_gfni_sbox.h"

/* Groups of 16 blocks interleaved in the bulk loop. */
#define GROUPS 4

/* The round keys, and the constants of the masked state the vector rounds keep (see
 * "The masked state" above): fold[i] = K_i ^ K_(i+4), unmask[j] = K_(32+j). */
typedef struct {
    uint32_t rk[32];
    uint32_t fold[32];
    uint32_t unmask[4];
    /* The byte-sliced rounds of sm4gcm_gfni.c's 64-block passes work on bytes mapped
     * through M1 (the linear part of the S-box's input map) and masked the same way,
     * with K the masks of those coordinates (K_(i+1) ^ K_(i+2) ^ K_(i+3) = M1(rk_i) ^
     * 0x3E3E3E3E): bfold[i][j] = byte j (big-endian) of K_i ^ K_(i+4) ^ M1(L(0xD3D3D3D3)),
     * benter[j] = byte j of K_3, each repeated in the four bytes of a dword (so that a
     * dword broadcast fills a register with it); bunmask = the 16 bytes M1^-1(K_35 ||
     * K_34 || K_33 || K_32), XORed into a block of the output.  See sm4gcm_gfni.c. */
    uint32_t bfold[32][4];
    uint32_t benter[4];
    SLS_ENV_ALIGN(16) uint8_t bunmask[16];
} sls_env_sm4_gfni_key;

/* ---- the rounds ------------------------------------------------------------------ */

/* VPSHUFB masks (same in every 128-bit lane) for dword byte swap and the rotations
 * left by 8 and 24 bits of each little-endian dword. */
#define SHUF4(a, b, c, d)                                                                      \
    _mm512_broadcast_i32x4(_mm_setr_epi8(a, b, c, d, a + 4, b + 4, c + 4, d + 4, a + 8, b + 8, \
                                         c + 8, d + 8, a + 12, b + 12, c + 12, d + 12))

struct consts {
    __m512i rot8, rot24;
};

TGT INLINE struct consts make_consts(void)
{
    struct consts c;
    c.rot8 = SHUF4(3, 0, 1, 2);
    c.rot24 = SHUF4(1, 2, 3, 0);
    return c;
}

TGT INLINE __m512i bswap32(__m512i x) { return _mm512_shuffle_epi8(x, SHUF4(3, 2, 1, 0)); }

TGT INLINE __m512i xor3(__m512i a, __m512i b, __m512i c)
{
    return _mm512_ternarylogic_epi32(a, b, c, 0x96);
}

static inline uint32_t sls_env_rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/* SM4's linear transform L on one word. */
static inline uint32_t sls_env_sm4_l(uint32_t b)
{
    return b ^ sls_env_rol32(b, 2) ^ sls_env_rol32(b, 10) ^ sls_env_rol32(b, 18) ^ sls_env_rol32(b, 24);
}

/* One round on one block held as four words in general-purpose registers: a ^= T(b ^ c
 * ^ d ^ rk).  Its vector work is four operations (two moves, two GFNI) against eleven
 * per round of a 16-block group, and the rotations and XORs run on the scalar ports,
 * which the vector rounds leave idle. */
TGT INLINE uint32_t side_round(uint32_t a, uint32_t b, uint32_t c, uint32_t d, uint32_t rk)
{
    uint32_t t = sls_env_sm4_tau_word(b ^ c ^ d ^ rk);
    return a ^ t ^ sls_env_rol32(t, 2) ^ sls_env_rol32(t, 10) ^ sls_env_rol32(t, 18) ^ sls_env_rol32(t, 24);
}

/* One round of one group on masked words (see above): returns a' = a ^ fold ^ T(*s),
 * where *s = b ^ c ^ d is the XOR of the round's other three words, and moves *s on to
 * the next round's (c ^ d ^ a' = *s ^ b ^ a').  Keeping that XOR as running state
 * makes it one VPTERNLOGD per round that overwrites a value which dies there (the old
 * *s), where computing b ^ c ^ d afresh would need a register copy first (VPTERNLOGD
 * overwrites its first operand, and all three words live on). */
TGT INLINE __m512i round1(__m512i a, __m512i *s, __m512i b, __m512i fold, const struct consts *k)
{
    __m512i t = _mm512_gf2p8affine_epi64_epi8(*s, _mm512_set1_epi64(SBOX_M1), SBOX_C1);
    t = _mm512_gf2p8affineinv_epi64_epi8(t, _mm512_set1_epi64(SBOX_M2), SBOX_C2);
    __m512i r8 = _mm512_shuffle_epi8(t, k->rot8);
    __m512i r16 = _mm512_rol_epi32(t, 16);
    __m512i r24 = _mm512_shuffle_epi8(t, k->rot24);
    __m512i u = xor3(r8, t, r16);
    a = xor3(a, t, r24);
    a = xor3(a, _mm512_rol_epi32(u, 2), fold);
    *s = xor3(*s, b, a);
    return a;
}

/* The 32 rounds on G groups; x[4 * g + j] is word j of group g.  The roles of the
 * four registers rotate, so four rounds are unrolled and nothing moves.  The groups
 * are independent, and the out-of-order core overlaps their round chains. */
/* SIDE(i, j0, j1, j2, r) is empty, or one round of the side block y (below). */
#define SM4_NO_SIDE(i, j0, j1, j2, r)
#define SM4_SIDE(i, j0, j1, j2, r) y[i] = side_round(y[i], y[j0], y[j1], y[j2], rk[r]);

#define DEFINE_ROUNDS_WITH(NAME, G, PARAMS, SIDE)                                         \
    TGT INLINE void NAME PARAMS                                                           \
    {                                                                                     \
        const struct consts k = make_consts();                                            \
        const uint32_t *rk = key->rk, *fold = key->fold;                                  \
        (void)rk;                                                                         \
        const __m512i k3 = _mm512_set1_epi32((int)rk[0]); /* enter: X'_3 = X_3 ^ K_3 */   \
        __m512i s[G];                                                                     \
        for (int g = 0; g < G; g++) {                                                     \
            x[4 * g + 3] = _mm512_xor_si512(x[4 * g + 3], k3);                            \
            s[g] = xor3(x[4 * g + 1], x[4 * g + 2], x[4 * g + 3]);                        \
        }                                                                                 \
        _Pragma("GCC unroll 1") for (int r = 0; r < 32; r += 4) {                         \
            __m512i f0 = _mm512_set1_epi32((int)fold[r]);                                 \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 0] = round1(x[4 * g + 0], &s[g], x[4 * g + 1], f0, &k);         \
            SIDE(0, 1, 2, 3, r)                                                           \
            __m512i f1 = _mm512_set1_epi32((int)fold[r + 1]);                             \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 1] = round1(x[4 * g + 1], &s[g], x[4 * g + 2], f1, &k);         \
            SIDE(1, 2, 3, 0, r + 1)                                                       \
            __m512i f2 = _mm512_set1_epi32((int)fold[r + 2]);                             \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 2] = round1(x[4 * g + 2], &s[g], x[4 * g + 3], f2, &k);         \
            SIDE(2, 3, 0, 1, r + 2)                                                       \
            __m512i f3 = _mm512_set1_epi32((int)fold[r + 3]);                             \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 3] = round1(x[4 * g + 3], &s[g], x[4 * g + 0], f3, &k);         \
            SIDE(3, 0, 1, 2, r + 3)                                                       \
        }                                                                                 \
        for (int j = 0; j < 3; j++) { /* leave: X_(32+j) = X'_(32+j) ^ K_(32+j), K_35 = 0 */ \
            const __m512i m = _mm512_set1_epi32((int)key->unmask[j]);                     \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + j] = _mm512_xor_si512(x[4 * g + j], m);                         \
        }                                                                                 \
    }

#define DEFINE_ROUNDS(NAME, G) \
    DEFINE_ROUNDS_WITH(NAME, G, (const sls_env_sm4_gfni_key *key, __m512i *x), SM4_NO_SIDE)

/* The same with one more block y (four words, GB/T 32907 byte order as integers) in
 * general-purpose registers, one of its rounds after each vector round so the
 * out-of-order core runs both at once: when a message's blocks fill whole groups,
 * E(K, J0) goes here rather than into a group of its own (sm4gcm_gfni.c).  After the
 * call y holds X32..X35 (the output is y[3], y[2], y[1], y[0]). */
#define DEFINE_ROUNDS_SIDE(NAME, G) \
    DEFINE_ROUNDS_WITH(NAME, G, (const sls_env_sm4_gfni_key *key, __m512i *x, uint32_t y[4]), SM4_SIDE)

DEFINE_ROUNDS(rounds_bulk, GROUPS)
DEFINE_ROUNDS(rounds_one, 1)
DEFINE_ROUNDS(rounds_two, 2)
DEFINE_ROUNDS(rounds_three, 3)
DEFINE_ROUNDS(rounds_five, 5)
DEFINE_ROUNDS_SIDE(rounds_bulk_side, GROUPS)
DEFINE_ROUNDS_SIDE(rounds_five_side, 5)

/* In-lane 4x4 dword transpose of (a, b, c, d), then a byte swap of every dword.
 * The transpose is its own inverse; see the layout note above. */
TGT INLINE void transpose_bswap(__m512i *a, __m512i *b, __m512i *c, __m512i *d)
{
    __m512i t0 = _mm512_unpacklo_epi32(*a, *b), t1 = _mm512_unpackhi_epi32(*a, *b);
    __m512i t2 = _mm512_unpacklo_epi32(*c, *d), t3 = _mm512_unpackhi_epi32(*c, *d);
    *a = bswap32(_mm512_unpacklo_epi64(t0, t2));
    *b = bswap32(_mm512_unpackhi_epi64(t0, t2));
    *c = bswap32(_mm512_unpacklo_epi64(t1, t3));
    *d = bswap32(_mm512_unpackhi_epi64(t1, t3));
}

/* After 32 rounds x[0..3] = X32..X35 and the ciphertext is (X35, X34, X33, X32)
 * (the reverse transform R); returns the four output registers, blocks in memory
 * order (register p holds blocks 4p..4p+3). */
TGT INLINE void output_blocks(__m512i *x, __m512i o[4])
{
    o[0] = x[3];
    o[1] = x[2];
    o[2] = x[1];
    o[3] = x[0];
    transpose_bswap(&o[0], &o[1], &o[2], &o[3]);
}

/* Dword mask for register p of a group holding n blocks (0 < n <= 16). */
static inline __mmask16 tail_mask(size_t n, int p)
{
    size_t have = n > (size_t)(4 * p) ? n - (size_t)(4 * p) : 0;
    if (have >= 4)
        return (__mmask16)0xffff;
    return (__mmask16)((1u << (4 * have)) - 1);
}

/* Round keys and the three constant words of a CTR counter block as broadcasts,
 * and the fourth (the counter) for the first group, in transposed order: lane l,
 * position j holds block 4j + l (layout note). */
TGT INLINE void ctr_words(const uint8_t ctr[16], __m512i *w0, __m512i *w1, __m512i *w2, __m512i *w3)
{
    *w0 = _mm512_set1_epi32((int)sls_env_load_be32(ctr));
    *w1 = _mm512_set1_epi32((int)sls_env_load_be32(ctr + 4));
    *w2 = _mm512_set1_epi32((int)sls_env_load_be32(ctr + 8));
    *w3 = _mm512_add_epi32(_mm512_set1_epi32((int)sls_env_load_be32(ctr + 12)),
                           _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
}

/* The counter blocks of G groups at x, transposed: words 0-2 the same in every block,
 * word 3 from *w3 on, which moves on by the 16 blocks of each group. */
TGT INLINE void counter_groups(__m512i *x, const int G, __m512i w0, __m512i w1, __m512i w2, __m512i *w3)
{
    const __m512i sixteen = _mm512_set1_epi32(16);
    for (int g = 0; g < G; g++) {
        x[4 * g + 0] = w0;
        x[4 * g + 1] = w1;
        x[4 * g + 2] = w2;
        x[4 * g + 3] = *w3;
        *w3 = _mm512_add_epi32(*w3, sixteen);
    }
}

#undef TGT
#undef INLINE
#endif /* SLS_ENV_X86 */
#endif /* SLS_ENV_SM4_X86_GFNI_H */
