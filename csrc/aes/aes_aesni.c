/*
 * AES (FIPS 197) with the AES-NI instructions, 128-bit xmm registers only.
 *
 * Key expansion is FIPS 197 section 5.2 (aes_key.c) with SubWord done by AESENCLAST
 * on the word broadcast to all four columns with a zero round key: ShiftRows then only
 * permutes equal columns, so every column holds SubWord(w) (the observation the Intel
 * AES-NI white paper, Gueron 2010, makes for AESKEYGENASSIST, which is slower: with
 * it this path's AES-128 key setup took about 125 ns, with AESENCLAST about 80 on an
 * Xeon of family 6, model 167).  The VAES paths use the same SubWord.
 *
 * CTR runs eight blocks at a time so that the AESENC latency (3-4 cycles) is hidden
 * behind the throughput of the (one or two) AES units: each round key is applied to
 * eight independent states before the next round starts.
 */
#include "aes/aes_aesni.h"

#if SLS_ENV_X86

#define TARGET SLS_ENV_AESNI_TARGET

static int aesni_supported(void)
{
    return sls_env_cpu_has(SLS_ENV_CPU_AESNI | SLS_ENV_CPU_SSSE3 | SLS_ENV_CPU_SSE41);
}

TARGET uint32_t sls_env_aes_x86_sub_word(uint32_t w)
{
    __m128i x = _mm_aesenclast_si128(_mm_set1_epi32((int)w), _mm_setzero_si128());
    return (uint32_t)_mm_cvtsi128_si32(x);
}

static int aesni_init(void *state, const uint8_t *key, size_t key_len)
{
    struct sls_env_aes_aesni_state *s = state;
    uint32_t w[60];
    const unsigned nr = sls_env_aes_expand_key(key, key_len, w, sls_env_aes_x86_sub_word);
    if (!nr)
        return SLS_ENV_ERR_KEY_SIZE;
    memcpy(s->rk, w, 16 * (nr + 1)); /* little-endian words: the round keys' bytes */
    s->rounds = nr;
    sls_env_wipe(w, sizeof w);
    return SLS_ENV_OK;
}

TARGET static inline __m128i encrypt1(const struct sls_env_aes_aesni_state *s, __m128i b)
{
    b = _mm_xor_si128(b, s->rk[0]);
    for (unsigned r = 1; r < s->rounds; r++)
        b = _mm_aesenc_si128(b, s->rk[r]);
    return _mm_aesenclast_si128(b, s->rk[s->rounds]);
}

/* Eight blocks through every round, each round key applied to all eight in turn. */
TARGET static inline void encrypt8(const struct sls_env_aes_aesni_state *s, __m128i b[8])
{
    __m128i k = s->rk[0];
    for (int j = 0; j < 8; j++)
        b[j] = _mm_xor_si128(b[j], k);
    for (unsigned r = 1; r < s->rounds; r++) {
        k = s->rk[r];
        for (int j = 0; j < 8; j++)
            b[j] = _mm_aesenc_si128(b[j], k);
    }
    k = s->rk[s->rounds];
    for (int j = 0; j < 8; j++)
        b[j] = _mm_aesenclast_si128(b[j], k);
}

TARGET static void aesni_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const struct sls_env_aes_aesni_state *s = state;
    for (; nblocks >= 8; nblocks -= 8, in += 128, out += 128) {
        __m128i b[8];
        for (int j = 0; j < 8; j++)
            b[j] = _mm_loadu_si128((const __m128i *)(in + 16 * j));
        encrypt8(s, b);
        for (int j = 0; j < 8; j++)
            _mm_storeu_si128((__m128i *)(out + 16 * j), b[j]);
    }
    for (; nblocks; nblocks--, in += 16, out += 16)
        _mm_storeu_si128((__m128i *)out, encrypt1(s, _mm_loadu_si128((const __m128i *)in)));
}

TARGET static void aesni_ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in,
                               uint8_t *out, size_t nblocks)
{
    const struct sls_env_aes_aesni_state *s = state;
    /* Byte-swap the last dword so the big-endian counter becomes a little-endian
     * lane 3 that PADDD can step; callers promise no wrap of those 32 bits, so the
     * lane arithmetic is exactly inc32 (SP 800-38D section 6.2). */
    const __m128i swap = _mm_set_epi8(12, 13, 14, 15, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m128i one = _mm_set_epi32(1, 0, 0, 0);
    const __m128i eight = _mm_set_epi32(8, 0, 0, 0);
    __m128i c = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)ctr), swap);
    for (; nblocks >= 8; nblocks -= 8, in += 128, out += 128) {
        __m128i b[8], t = c;
        for (int j = 0; j < 8; j++) {
            b[j] = _mm_shuffle_epi8(t, swap);
            t = _mm_add_epi32(t, one);
        }
        c = _mm_add_epi32(c, eight);
        encrypt8(s, b);
        for (int j = 0; j < 8; j++)
            _mm_storeu_si128((__m128i *)(out + 16 * j),
                             _mm_xor_si128(b[j], _mm_loadu_si128((const __m128i *)(in + 16 * j))));
    }
    for (; nblocks; nblocks--, in += 16, out += 16) {
        __m128i k = encrypt1(s, _mm_shuffle_epi8(c, swap));
        c = _mm_add_epi32(c, one);
        _mm_storeu_si128((__m128i *)out, _mm_xor_si128(k, _mm_loadu_si128((const __m128i *)in)));
    }
}

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_aesni = {
    "aesni", aesni_supported, aesni_init, aesni_ecb, aesni_ctr32,
};

#else /* !SLS_ENV_X86 */

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_aesni = SLS_ENV_UNAVAILABLE_CIPHER("aesni");

#endif
