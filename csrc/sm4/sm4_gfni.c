/*
 * SM4 (GB/T 32907-2016) on AVX-512 with GFNI: 16 blocks per zmm group, several groups
 * interleaved.
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
 * The rotations by whole bytes are VPSHUFB (port 5 on Intel cores), the 2-bit one is
 * VPROLD and the S-box two GFNI ops (port 0 for 512-bit operands), and the XORs are
 * VPTERNLOGD, which can go to either port: that balances a round at about 5.5
 * cycles per group of 16 blocks.  A round is a ~12-cycle dependency chain, so four
 * independent groups (64 blocks) are kept in flight to fill both ports.
 *
 * The transpose is the usual in-lane 4x4 dword transpose (UNPCK{L,H}{DQ,QDQ}), which
 * keeps each 128-bit lane to itself: after it, the dword at lane l, position j of Xp
 * is word p of block 4j + l.  In CTR mode the counters are generated directly in
 * that transposed order (words 0..2 are the same for every block, word 3 is
 * base + 4j + l), so only the output is transposed.
 *
 * Round keys are kept as 32 words and broadcast from memory (an EVEX embedded
 * broadcast costs the same as a full load).  Only encryption is needed (GCM).
 */
#include "internal.h"

#if SLS_ENV_X86
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,gfni")))
#define INLINE static inline __attribute__((always_inline))

/* GFNI matrices of the S-box decomposition (see above). */
#define SBOX_M1 0x4c287db91a22505dll
#define SBOX_C1 0x3e
#define SBOX_M2 0xf3ab34a974a6b589ll
#define SBOX_C2 0xd3

/* Groups of 16 blocks interleaved in the bulk loop. */
#define GROUPS 4

typedef struct {
    uint32_t rk[32];
} sm4_gfni_state;

static int sm4_gfni_supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AVX512F | SLS_ENV_CPU_AVX512BW | SLS_ENV_CPU_AVX512VL |
                           SLS_ENV_CPU_GFNI);
}

/* ---- key schedule (GB/T 32907 section 7.3) ------------------------------------ */

/* tau on one word: the same two GFNI ops, on an xmm register, so no table is
 * indexed by key bytes. */
TGT static uint32_t tau_word(uint32_t a)
{
    __m128i v = _mm_cvtsi32_si128((int)a);
    v = _mm_gf2p8affine_epi64_epi8(v, _mm_set1_epi64x(SBOX_M1), SBOX_C1);
    v = _mm_gf2p8affineinv_epi64_epi8(v, _mm_set1_epi64x(SBOX_M2), SBOX_C2);
    return (uint32_t)_mm_cvtsi128_si32(v);
}

static inline uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

TGT static int sm4_gfni_init(void *state, const uint8_t *key, size_t key_len)
{
    static const uint32_t fk[4] = {0xa3b1bac6u, 0x56aa3350u, 0x677d9197u, 0xb27022dcu};
    sm4_gfni_state *st = state;
    if (key_len != 16)
        return SLS_ENV_ERR_KEY_SIZE;
    uint32_t k[4];
    for (int i = 0; i < 4; i++)
        k[i] = sls_env_load_be32(key + 4 * i) ^ fk[i];
    for (int i = 0; i < 32; i++) {
        /* CK_i: byte j is (4i + j) * 7 mod 256. */
        uint32_t ck = 0;
        for (int j = 0; j < 4; j++)
            ck = (ck << 8) | (uint32_t)(((4 * i + j) * 7) & 0xff);
        uint32_t b = tau_word(k[(i + 1) & 3] ^ k[(i + 2) & 3] ^ k[(i + 3) & 3] ^ ck);
        /* L'(B) = B ^ (B <<< 13) ^ (B <<< 23) */
        k[i & 3] ^= b ^ rol32(b, 13) ^ rol32(b, 23);
        st->rk[i] = k[i & 3];
    }
    sls_env_wipe(k, sizeof k);
    return SLS_ENV_OK;
}

/* ---- the rounds ------------------------------------------------------------------ */

/* VPSHUFB masks (same in every 128-bit lane) for dword byte swap and the rotations
 * left by 8, 16 and 24 bits of each little-endian dword. */
#define SHUF4(a, b, c, d)                                                                      \
    _mm512_broadcast_i32x4(_mm_setr_epi8(a, b, c, d, a + 4, b + 4, c + 4, d + 4, a + 8, b + 8, \
                                         c + 8, d + 8, a + 12, b + 12, c + 12, d + 12))

struct consts {
    __m512i rot8, rot16, rot24;
};

TGT INLINE struct consts make_consts(void)
{
    struct consts c;
    c.rot8 = SHUF4(3, 0, 1, 2);
    c.rot16 = SHUF4(2, 3, 0, 1);
    c.rot24 = SHUF4(1, 2, 3, 0);
    return c;
}

TGT INLINE __m512i bswap32(__m512i x) { return _mm512_shuffle_epi8(x, SHUF4(3, 2, 1, 0)); }

TGT INLINE __m512i xor3(__m512i a, __m512i b, __m512i c)
{
    return _mm512_ternarylogic_epi32(a, b, c, 0x96);
}

/* a ^= T(b ^ c ^ d ^ rk) for one group. */
TGT INLINE __m512i round1(__m512i a, __m512i b, __m512i c, __m512i d, __m512i rk,
                          const struct consts *k)
{
    /* Operand order matters: VPTERNLOGD overwrites its first operand, so the first
     * one is always a value that dies there (no register copies). */
    __m512i t = xor3(_mm512_xor_si512(b, c), d, rk);
    t = _mm512_gf2p8affine_epi64_epi8(t, _mm512_set1_epi64(SBOX_M1), SBOX_C1);
    t = _mm512_gf2p8affineinv_epi64_epi8(t, _mm512_set1_epi64(SBOX_M2), SBOX_C2);
    __m512i r8 = _mm512_shuffle_epi8(t, k->rot8);
    __m512i r16 = _mm512_shuffle_epi8(t, k->rot16);
    __m512i r24 = _mm512_shuffle_epi8(t, k->rot24);
    __m512i u = xor3(r8, t, r16);
    a = xor3(a, t, r24);
    return _mm512_xor_si512(a, _mm512_rol_epi32(u, 2));
}

/* The 32 rounds on G groups; x[4 * g + j] is word j of group g.  The roles of the
 * four registers rotate, so four rounds are unrolled and nothing moves.  The groups
 * are independent, and the out-of-order core overlaps their round chains.  (Sharing
 * c ^ d between consecutive rounds saves one XOR in two rounds but measured no
 * faster here.) */
#define DEFINE_ROUNDS(NAME, G)                                                            \
    TGT INLINE void NAME(const uint32_t *rk, __m512i *x)                                  \
    {                                                                                     \
        const struct consts k = make_consts();                                            \
        for (int r = 0; r < 32; r += 4) {                                                 \
            __m512i k0 = _mm512_set1_epi32((int)rk[r]);                                   \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 0] = round1(x[4 * g + 0], x[4 * g + 1], x[4 * g + 2],           \
                                      x[4 * g + 3], k0, &k);                              \
            __m512i k1 = _mm512_set1_epi32((int)rk[r + 1]);                               \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 1] = round1(x[4 * g + 1], x[4 * g + 2], x[4 * g + 3],           \
                                      x[4 * g + 0], k1, &k);                              \
            __m512i k2 = _mm512_set1_epi32((int)rk[r + 2]);                               \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 2] = round1(x[4 * g + 2], x[4 * g + 3], x[4 * g + 0],           \
                                      x[4 * g + 1], k2, &k);                              \
            __m512i k3 = _mm512_set1_epi32((int)rk[r + 3]);                               \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 3] = round1(x[4 * g + 3], x[4 * g + 0], x[4 * g + 1],           \
                                      x[4 * g + 2], k3, &k);                              \
        }                                                                                 \
    }

DEFINE_ROUNDS(rounds_bulk, GROUPS)
DEFINE_ROUNDS(rounds_one, 1)
DEFINE_ROUNDS(rounds_two, 2)
DEFINE_ROUNDS(rounds_three, 3)
DEFINE_ROUNDS(rounds_five, 5)

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
TGT INLINE void finish(__m512i *x, __m512i o[4])
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

/* ---- ECB --------------------------------------------------------------------------- */

TGT INLINE void load_group(const uint8_t *in, __m512i *x)
{
    for (int p = 0; p < 4; p++)
        x[p] = _mm512_loadu_si512((const void *)(in + 64 * p));
    transpose_bswap(&x[0], &x[1], &x[2], &x[3]);
}

TGT static void sm4_gfni_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const uint32_t *rk = ((const sm4_gfni_state *)state)->rk;
    __m512i x[4 * GROUPS], o[4];
    while (nblocks >= 16 * GROUPS) {
        for (int g = 0; g < GROUPS; g++)
            load_group(in + 256 * g, &x[4 * g]);
        rounds_bulk(rk, x);
        for (int g = 0; g < GROUPS; g++) {
            finish(&x[4 * g], o);
            for (int p = 0; p < 4; p++)
                _mm512_storeu_si512((void *)(out + 256 * g + 64 * p), o[p]);
        }
        in += 256 * GROUPS;
        out += 256 * GROUPS;
        nblocks -= 16 * GROUPS;
    }
    while (nblocks) {
        size_t n = nblocks < 16 ? nblocks : 16;
        for (int p = 0; p < 4; p++)
            x[p] = _mm512_maskz_loadu_epi32(tail_mask(n, p), in + 64 * p);
        transpose_bswap(&x[0], &x[1], &x[2], &x[3]);
        rounds_one(rk, x);
        finish(x, o);
        for (int p = 0; p < 4; p++)
            _mm512_mask_storeu_epi32(out + 64 * p, tail_mask(n, p), o[p]);
        in += 16 * n;
        out += 16 * n;
        nblocks -= n;
    }
}

/* ---- CTR with a 32-bit big-endian counter (SP 800-38D inc32) ------------------------ */

/* One CTR pass over G interleaved groups covering n blocks (16 (G - 1) < n <= 16 G):
 * counters from *w3 on, the last group's unused lanes masked off.  A pass costs about
 * one round chain of latency whatever G is (the groups overlap), so a message's tail is
 * one pass of as many groups as it needs, not one pass per group. */
#define DEFINE_CTR_PASS(NAME, ROUNDS, G)                                                      \
    TGT INLINE void NAME(const uint32_t *rk, __m512i w0, __m512i w1, __m512i w2, __m512i *w3, \
                         const uint8_t *in, uint8_t *out, size_t n)                           \
    {                                                                                         \
        const __m512i sixteen = _mm512_set1_epi32(16);                                        \
        __m512i x[4 * G], o[4];                                                               \
        for (int g = 0; g < G; g++) {                                                         \
            x[4 * g + 0] = w0;                                                                \
            x[4 * g + 1] = w1;                                                                \
            x[4 * g + 2] = w2;                                                                \
            x[4 * g + 3] = *w3;                                                               \
            *w3 = _mm512_add_epi32(*w3, sixteen);                                             \
        }                                                                                     \
        ROUNDS(rk, x);                                                                        \
        for (int g = 0; g < G; g++) {                                                         \
            size_t in_group = n - 16 * (size_t)g < 16 ? n - 16 * (size_t)g : 16;              \
            finish(&x[4 * g], o);                                                             \
            for (int p = 0; p < 4; p++) {                                                     \
                __mmask16 m = tail_mask(in_group, p);                                         \
                size_t at = 256 * (size_t)g + 64 * (size_t)p;                                 \
                __m512i d = _mm512_maskz_loadu_epi32(m, in + at);                             \
                _mm512_mask_storeu_epi32(out + at, m, _mm512_xor_si512(o[p], d));             \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_CTR_PASS(ctr_pass1, rounds_one, 1)
DEFINE_CTR_PASS(ctr_pass2, rounds_two, 2)
DEFINE_CTR_PASS(ctr_pass3, rounds_three, 3)
DEFINE_CTR_PASS(ctr_pass4, rounds_bulk, GROUPS)
DEFINE_CTR_PASS(ctr_pass5, rounds_five, 5)

TGT static void sm4_gfni_ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in,
                               uint8_t *out, size_t nblocks)
{
    const uint32_t *rk = ((const sm4_gfni_state *)state)->rk;
    const __m512i w0 = _mm512_set1_epi32((int)sls_env_load_be32(ctr));
    const __m512i w1 = _mm512_set1_epi32((int)sls_env_load_be32(ctr + 4));
    const __m512i w2 = _mm512_set1_epi32((int)sls_env_load_be32(ctr + 8));
    /* Lane l, position j of the counter word holds block 4j + l (layout note). */
    __m512i w3 = _mm512_add_epi32(_mm512_set1_epi32((int)sls_env_load_be32(ctr + 12)),
                                  _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3,
                                                    7, 11, 15));
    /* Full passes of GROUPS groups while more than five groups' worth remain, then one
     * pass of 1 to 5 groups for the rest (65..80 blocks, e.g. a 1 KiB message plus
     * E(K, J0), in one pass rather than two). */
    while (nblocks > 16 * (GROUPS + 1)) {
        ctr_pass4(rk, w0, w1, w2, &w3, in, out, 16 * GROUPS);
        in += 256 * GROUPS;
        out += 256 * GROUPS;
        nblocks -= 16 * GROUPS;
    }
    switch ((nblocks + 15) / 16) {
    case 5: ctr_pass5(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 4: ctr_pass4(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 3: ctr_pass3(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 2: ctr_pass2(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 1: ctr_pass1(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    default: break;
    }
}

const sls_env_block_cipher sls_env_sm4_gfni = {
    "sm4-gfni", sm4_gfni_supported, sm4_gfni_init, sm4_gfni_ecb, sm4_gfni_ctr32,
};

#else /* !SLS_ENV_X86 */

const sls_env_block_cipher sls_env_sm4_gfni = SLS_ENV_UNAVAILABLE_CIPHER("sm4-gfni");

#endif
