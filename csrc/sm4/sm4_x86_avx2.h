/*
 * SM4 (GB/T 32907-2016) on 256-bit AVX2 registers, 8 blocks per register group: the
 * part shared by the paths for x86-64 CPUs without AVX-512, which differ only in how
 * they compute the S-box on 32 bytes at once (sm4_aesni.c: AESENCLAST on two xmm
 * halves with affine maps around it; sm4_vaes256.c: the same on one ymm with VAES;
 * sm4_gfni256.c: two GFNI instructions, as sm4_x86_gfni.h does on zmm).
 *
 * The including file defines, before including this one:
 *   TGT                      the target attribute of every function here;
 *   INLINE                   static inline, always inlined;
 *   struct sbox_consts       what its S-box keeps in registers across the rounds, and
 *   sbox_consts_init(k)      which fills it;
 *   sbox256(x, k)            the S-box on every byte of x;
 *   sbox_word(a)             the S-box on every byte of a word (the key schedule's).
 * It gets the static key schedule, ECB and CTR32 entry points for its
 * sls_env_block_cipher: sm4_avx2_init, sm4_avx2_ecb, sm4_avx2_ctr32.
 *
 * Layout and rounds are as in sm4_x86_gfni.h, on ymm: a group of 8 blocks transposed
 * into four registers X0..X3 (32-bit lane = one word of one block, big-endian), in-lane
 * 4x4 transposes (dword at lane l, position j of Xp = word p of block 2j + l), CTR
 * counters generated directly in that order, and
 *     L(B) = B ^ (B <<< 24) ^ ((B ^ (B <<< 8) ^ (B <<< 16)) <<< 2)
 * with the byte rotations by VPSHUFB.  A round is a dependency chain of ~12 (GFNI) to
 * ~25 (split AESENCLAST) cycles, so four groups (32 blocks) are kept in flight although
 * their state does not fit the 16 ymm registers: the spills are loads and stores,
 * which leave the vector ALU ports alone.  Measured on the AES-NI path against two
 * groups: 25-30% less time per SM4-GCM message from 256 B to 64 KiB, and with a last
 * pass of up to five groups (a 1 KiB message and E(K, J0) are 32 + 33 blocks, not
 * 32 + 32 + 1) 38% less at 1 KiB.
 */
#ifndef SLS_ENV_SM4_X86_AVX2_H
#define SLS_ENV_SM4_X86_AVX2_H

#include <immintrin.h>
#include <string.h>

#define GROUPS 4

typedef struct {
    uint32_t rk[32];
} sm4_avx2_state;

/* Key schedule: the shared expansion (sm4_key.c) with this path's tau. */
TGT static int sm4_avx2_init(void *state, const uint8_t *key, size_t key_len)
{
    if (key_len != 16)
        return SLS_ENV_ERR_KEY_SIZE;
    sls_env_sm4_expand_key(key, ((sm4_avx2_state *)state)->rk, sbox_word);
    return SLS_ENV_OK;
}

/* ---- the rounds, 8 blocks per ymm group ------------------------------------------ */

#define SHUF4(a, b, c, d)                                                                  \
    _mm256_broadcastsi128_si256(_mm_setr_epi8(a, b, c, d, a + 4, b + 4, c + 4, d + 4, a + 8, \
                                              b + 8, c + 8, d + 8, a + 12, b + 12, c + 12, \
                                              d + 12))

/* a ^= T(b ^ c ^ d ^ rk) for one group. */
TGT INLINE __m256i round1(__m256i a, __m256i b, __m256i c, __m256i d, __m256i rk,
                                   const struct sbox_consts *k)
{
    __m256i t = _mm256_xor_si256(_mm256_xor_si256(b, c), _mm256_xor_si256(d, rk));
    t = sbox256(t, k);
    __m256i r8 = _mm256_shuffle_epi8(t, SHUF4(3, 0, 1, 2));
    __m256i r16 = _mm256_shuffle_epi8(t, SHUF4(2, 3, 0, 1));
    __m256i r24 = _mm256_shuffle_epi8(t, SHUF4(1, 2, 3, 0));
    __m256i u = _mm256_xor_si256(_mm256_xor_si256(t, r8), r16);
    u = _mm256_or_si256(_mm256_slli_epi32(u, 2), _mm256_srli_epi32(u, 30));
    return _mm256_xor_si256(_mm256_xor_si256(a, t), _mm256_xor_si256(r24, u));
}

#define DEFINE_ROUNDS(NAME, G)                                                            \
    TGT INLINE void NAME(const uint32_t *rk, __m256i *x)                                  \
    {                                                                                     \
        struct sbox_consts k;                                                             \
        sbox_consts_init(&k);                                                             \
        for (int r = 0; r < 32; r += 4) {                                                 \
            __m256i k0 = _mm256_set1_epi32((int)rk[r]);                                   \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 0] = round1(x[4 * g + 0], x[4 * g + 1], x[4 * g + 2],           \
                                      x[4 * g + 3], k0, &k);                              \
            __m256i k1 = _mm256_set1_epi32((int)rk[r + 1]);                               \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 1] = round1(x[4 * g + 1], x[4 * g + 2], x[4 * g + 3],           \
                                      x[4 * g + 0], k1, &k);                              \
            __m256i k2 = _mm256_set1_epi32((int)rk[r + 2]);                               \
            for (int g = 0; g < G; g++)                                                   \
                x[4 * g + 2] = round1(x[4 * g + 2], x[4 * g + 3], x[4 * g + 0],           \
                                      x[4 * g + 1], k2, &k);                              \
            __m256i k3 = _mm256_set1_epi32((int)rk[r + 3]);                               \
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

/* In-lane 4x4 dword transpose, then a byte swap of every dword (its own inverse). */
TGT INLINE void transpose_bswap(__m256i *a, __m256i *b, __m256i *c, __m256i *d)
{
    const __m256i bs = SHUF4(3, 2, 1, 0);
    __m256i t0 = _mm256_unpacklo_epi32(*a, *b), t1 = _mm256_unpackhi_epi32(*a, *b);
    __m256i t2 = _mm256_unpacklo_epi32(*c, *d), t3 = _mm256_unpackhi_epi32(*c, *d);
    *a = _mm256_shuffle_epi8(_mm256_unpacklo_epi64(t0, t2), bs);
    *b = _mm256_shuffle_epi8(_mm256_unpackhi_epi64(t0, t2), bs);
    *c = _mm256_shuffle_epi8(_mm256_unpacklo_epi64(t1, t3), bs);
    *d = _mm256_shuffle_epi8(_mm256_unpackhi_epi64(t1, t3), bs);
}

/* Output = (X35, X34, X33, X32); register p then holds blocks 2p, 2p + 1. */
TGT INLINE void finish(const __m256i *x, __m256i o[4])
{
    o[0] = x[3];
    o[1] = x[2];
    o[2] = x[1];
    o[3] = x[0];
    transpose_bswap(&o[0], &o[1], &o[2], &o[3]);
}

#define LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define STOREU(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))

TGT static void ecb_group(const uint32_t *rk, const uint8_t *in, uint8_t *out)
{
    __m256i x[4], o[4];
    for (int p = 0; p < 4; p++)
        x[p] = LOADU(in + 32 * p);
    transpose_bswap(&x[0], &x[1], &x[2], &x[3]);
    rounds_one(rk, x);
    finish(x, o);
    for (int p = 0; p < 4; p++)
        STOREU(out + 32 * p, o[p]);
}

TGT static void sm4_avx2_ecb(const void *state, const uint8_t *in, uint8_t *out,
                                      size_t nblocks)
{
    const uint32_t *rk = ((const sm4_avx2_state *)state)->rk;
    __m256i x[4 * GROUPS], o[4];
    while (nblocks >= 8 * GROUPS) {
        for (int g = 0; g < GROUPS; g++) {
            for (int p = 0; p < 4; p++)
                x[4 * g + p] = LOADU(in + 128 * g + 32 * p);
            transpose_bswap(&x[4 * g], &x[4 * g + 1], &x[4 * g + 2], &x[4 * g + 3]);
        }
        rounds_bulk(rk, x);
        for (int g = 0; g < GROUPS; g++) {
            finish(&x[4 * g], o);
            for (int p = 0; p < 4; p++)
                STOREU(out + 128 * g + 32 * p, o[p]);
        }
        in += 128 * GROUPS;
        out += 128 * GROUPS;
        nblocks -= 8 * GROUPS;
    }
    while (nblocks >= 8) {
        ecb_group(rk, in, out);
        in += 128;
        out += 128;
        nblocks -= 8;
    }
    if (nblocks) {
        /* The block count is public; the tail goes through a stack buffer. */
        uint8_t buf[128] = {0};
        memcpy(buf, in, 16 * nblocks);
        ecb_group(rk, buf, buf);
        memcpy(out, buf, 16 * nblocks);
        sls_env_wipe(buf, sizeof buf);
    }
}

/* ---- CTR with a 32-bit big-endian counter (SP 800-38D inc32) ------------------------ */

/* One pass of CTR keystream over G groups (up to 8 G blocks, more than 8 (G - 1)):
 * words 0..2 of the counter blocks are shared, *w3 holds the counters in the
 * transposed order (lane l, position j = block 2j + l) and moves on by 8 per group.
 * Whole groups are XORed in place; a last partial group goes through a stack buffer
 * (the block count is public). */
#define DEFINE_CTR_PASS(NAME, ROUNDS, G)                                                    \
    TGT INLINE void NAME(const uint32_t *rk, __m256i w0, __m256i w1, __m256i w2, __m256i *w3, \
                         const uint8_t *in, uint8_t *out, size_t nblocks)                   \
    {                                                                                       \
        const __m256i eight = _mm256_set1_epi32(8);                                         \
        __m256i x[4 * G], o[4];                                                             \
        for (int g = 0; g < G; g++) {                                                       \
            x[4 * g + 0] = w0;                                                              \
            x[4 * g + 1] = w1;                                                              \
            x[4 * g + 2] = w2;                                                              \
            x[4 * g + 3] = *w3;                                                             \
            *w3 = _mm256_add_epi32(*w3, eight);                                             \
        }                                                                                   \
        ROUNDS(rk, x);                                                                      \
        for (int g = 0; g < G; g++) {                                                       \
            size_t off = 128 * (size_t)g, n = nblocks - 8 * (size_t)g;                      \
            finish(&x[4 * g], o);                                                           \
            if (n >= 8) {                                                                   \
                for (int p = 0; p < 4; p++)                                                 \
                    STOREU(out + off + 32 * p,                                              \
                           _mm256_xor_si256(o[p], LOADU(in + off + 32 * p)));               \
                continue;                                                                   \
            }                                                                               \
            uint8_t buf[128];                                                               \
            memcpy(buf, in + off, 16 * n);                                                  \
            for (int p = 0; p < 4; p++)                                                     \
                STOREU(buf + 32 * p, _mm256_xor_si256(o[p], LOADU(buf + 32 * p)));         \
            memcpy(out + off, buf, 16 * n);                                                 \
            sls_env_wipe(buf, sizeof buf);                                                  \
        }                                                                                   \
    }

DEFINE_CTR_PASS(ctr_pass1, rounds_one, 1)
DEFINE_CTR_PASS(ctr_pass2, rounds_two, 2)
DEFINE_CTR_PASS(ctr_pass3, rounds_three, 3)
DEFINE_CTR_PASS(ctr_pass4, rounds_bulk, GROUPS)
DEFINE_CTR_PASS(ctr_pass5, rounds_five, 5)

TGT static void sm4_avx2_ctr32(const void *state, const uint8_t ctr[16],
                                        const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const uint32_t *rk = ((const sm4_avx2_state *)state)->rk;
    const __m256i w0 = _mm256_set1_epi32((int)sls_env_load_be32(ctr));
    const __m256i w1 = _mm256_set1_epi32((int)sls_env_load_be32(ctr + 4));
    const __m256i w2 = _mm256_set1_epi32((int)sls_env_load_be32(ctr + 8));
    __m256i w3 = _mm256_add_epi32(_mm256_set1_epi32((int)sls_env_load_be32(ctr + 12)),
                                  _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    /* Full passes of GROUPS groups while more than five groups' worth remain, then one
     * pass of one to five groups for the rest, so a short message's groups also run
     * side by side (E(K, J0) and a 1 KiB message, 65 blocks: 32 + 33, not 32 + 32 + 1). */
    while (nblocks > 8 * (GROUPS + 1)) {
        ctr_pass4(rk, w0, w1, w2, &w3, in, out, 8 * GROUPS);
        in += 128 * GROUPS;
        out += 128 * GROUPS;
        nblocks -= 8 * GROUPS;
    }
    switch ((nblocks + 7) / 8) {
    case 5: ctr_pass5(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 4: ctr_pass4(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 3: ctr_pass3(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 2: ctr_pass2(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    case 1: ctr_pass1(rk, w0, w1, w2, &w3, in, out, nblocks); break;
    default: break;
    }
}

#endif /* SLS_ENV_SM4_X86_AVX2_H */
