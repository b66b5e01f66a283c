/*
 * SM4 (GB/T 32907-2016) on AVX-512 with GFNI, the block cipher part (key schedule, ECB,
 * CTR): the S-box through GF2P8AFFINE(INV)QB, 16 blocks per zmm group, several groups
 * interleaved.  The layout, the S-box decomposition and the round are described in
 * sm4_x86_gfni.h, which csrc/gcm/sm4gcm_gfni.c shares.
 */
#include "internal.h"

#if SLS_ENV_X86
#include "sm4/sm4_x86_gfni.h"

#define TGT SLS_ENV_T_SM4GFNI
#define INLINE static inline __attribute__((always_inline))

static int sm4_gfni_supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AVX512F | SLS_ENV_CPU_AVX512BW | SLS_ENV_CPU_AVX512VL |
                           SLS_ENV_CPU_GFNI);
}

/* ---- key schedule (GB/T 32907 section 7.3) ------------------------------------ */

/* tau for sls_env_sm4_expand_key, which calls it through a pointer. */
TGT static uint32_t key_tau(uint32_t a) { return sls_env_sm4_tau_word(a); }

/* A GF(2) linear map (GFNI qword encoding) on each byte of a word. */
TGT static uint32_t bytes_map(uint32_t w, long long matrix)
{
    __m128i v = _mm_gf2p8affine_epi64_epi8(_mm_cvtsi32_si128((int)w), _mm_set1_epi64x(matrix), 0);
    return (uint32_t)_mm_cvtsi128_si32(v);
}

/* Byte j (big-endian) of w in all four bytes of a dword. */
static uint32_t spread_byte(uint32_t w, int j) { return ((w >> (24 - 8 * j)) & 0xffu) * 0x01010101u; }

TGT static int sm4_gfni_init(void *state, const uint8_t *key, size_t key_len)
{
    sls_env_sm4_gfni_key *st = state;
    if (key_len != 16)
        return SLS_ENV_ERR_KEY_SIZE;
    sls_env_sm4_expand_key(key, st->rk, key_tau);
    /* The masks of the vector rounds' state (sm4_x86_gfni.h, "The masked state"). */
    uint32_t m[36];
    m[0] = m[1] = m[2] = 0;
    for (int i = 0; i < 32; i++)
        m[i + 3] = st->rk[i] ^ m[i + 1] ^ m[i + 2];
    m[35] = 0;
    for (int i = 0; i < 32; i++)
        st->fold[i] = m[i] ^ m[i + 4];
    for (int j = 0; j < 4; j++)
        st->unmask[j] = m[32 + j];
    /* The same for the byte-sliced rounds (sm4gcm_gfni.c), in M1's coordinates, the
     * S-box's input constant 0x3E in the round key and its output constant (through L)
     * in the fold. */
    m[0] = m[1] = m[2] = 0;
    for (int i = 0; i < 32; i++)
        m[i + 3] = bytes_map(st->rk[i], SBOX_M1) ^ 0x3e3e3e3eu ^ m[i + 1] ^ m[i + 2];
    m[35] = 0;
    const uint32_t d = bytes_map(sls_env_sm4_l(0xd3d3d3d3u), SBOX_M1);
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 4; j++)
            st->bfold[i][j] = spread_byte(m[i] ^ m[i + 4] ^ d, j);
    for (int j = 0; j < 4; j++)
        st->benter[j] = spread_byte(m[3], j);
    for (int w = 0; w < 4; w++)
        sls_env_store_be32(st->bunmask + 4 * w, bytes_map(m[35 - w], SBOX_M1_INV));
    sls_env_wipe(m, sizeof m);
    return SLS_ENV_OK;
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
    const sls_env_sm4_gfni_key *key = state;
    __m512i x[4 * GROUPS], o[4];
    while (nblocks >= 16 * GROUPS) {
        for (int g = 0; g < GROUPS; g++)
            load_group(in + 256 * g, &x[4 * g]);
        rounds_bulk(key, x);
        for (int g = 0; g < GROUPS; g++) {
            output_blocks(&x[4 * g], o);
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
        rounds_one(key, x);
        output_blocks(x, o);
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
    TGT INLINE void NAME(const sls_env_sm4_gfni_key *key, __m512i w0, __m512i w1, __m512i w2, __m512i *w3, \
                         const uint8_t *in, uint8_t *out, size_t n)                           \
    {                                                                                         \
        __m512i x[4 * G], o[4];                                                               \
        counter_groups(x, G, w0, w1, w2, w3);                                                 \
        ROUNDS(key, x);                                                                        \
        for (int g = 0; g < G; g++) {                                                         \
            size_t in_group = n - 16 * (size_t)g < 16 ? n - 16 * (size_t)g : 16;              \
            output_blocks(&x[4 * g], o);                                                      \
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
    const sls_env_sm4_gfni_key *key = state;
    __m512i w0, w1, w2, w3;
    ctr_words(ctr, &w0, &w1, &w2, &w3);
    /* Full passes of GROUPS groups while more than five groups' worth remain, then one
     * pass of 1 to 5 groups for the rest (65..80 blocks, e.g. a 1 KiB message plus
     * E(K, J0), in one pass rather than two). */
    while (nblocks > 16 * (GROUPS + 1)) {
        ctr_pass4(key, w0, w1, w2, &w3, in, out, 16 * GROUPS);
        in += 256 * GROUPS;
        out += 256 * GROUPS;
        nblocks -= 16 * GROUPS;
    }
    switch ((nblocks + 15) / 16) {
    case 5: ctr_pass5(key, w0, w1, w2, &w3, in, out, nblocks); break;
    case 4: ctr_pass4(key, w0, w1, w2, &w3, in, out, nblocks); break;
    case 3: ctr_pass3(key, w0, w1, w2, &w3, in, out, nblocks); break;
    case 2: ctr_pass2(key, w0, w1, w2, &w3, in, out, nblocks); break;
    case 1: ctr_pass1(key, w0, w1, w2, &w3, in, out, nblocks); break;
    default: break;
    }
}

const sls_env_block_cipher sls_env_sm4_gfni = {
    "sm4-gfni", sm4_gfni_supported, sm4_gfni_init, sm4_gfni_ecb, sm4_gfni_ctr32,
};

#else /* !SLS_ENV_X86 */

const sls_env_block_cipher sls_env_sm4_gfni = SLS_ENV_UNAVAILABLE_CIPHER("sm4-gfni");

#endif
