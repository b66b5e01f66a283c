/*
 * AES-GCM bulk seal and open with AES-NI and PCLMULQDQ, stitched (xmm only).
 *
 * The structure of Intel's GCM white paper (Gueron & Kounavis) and of Gueron's
 * "Fast GCM" (aggregated reduction over eight blocks): each iteration runs eight
 * AES-CTR blocks through their rounds and, between the rounds, multiplies eight
 * ciphertext blocks by H^8..H^1 with one reduction at the end.  AESENC and
 * PCLMULQDQ issue on different execution ports on the cores we target, so the GHASH
 * work mostly hides in the gaps of the AES dependency chains.
 *
 * Sealing hashes the previous eight ciphertext blocks (the ones just written),
 * since the current ones are not ready until the last round; the last group is
 * hashed after the loop.  Opening hashes the current group's input, which is the
 * ciphertext, read before any of that group's output is written, so in == out works.
 * Fewer than eight trailing blocks go through plain CTR and one aggregated GHASH.
 *
 * The counter is kept with its last dword byte-swapped so PADDD steps it; the
 * caller guarantees no wrap of the low 32 bits (SP 800-38D inc32).
 */
#include "aes/aes_aesni.h"
#include "ghash/ghash_pclmul.h"

#if SLS_ENV_X86

#define TARGET SLS_ENV_AESNI_TARGET

typedef struct sls_env_aes_aesni_state aes_state;
typedef struct sls_env_ghash_pclmul_state gh_state;

TARGET static inline __m128i ctr_swap(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(12, 13, 14, 15, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
}

TARGET static inline __m128i load(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

/* AES round r on all eight states. */
#define ROUND8(r)                                                                                  \
    do {                                                                                           \
        __m128i k_ = ks->rk[r];                                                                    \
        for (int j_ = 0; j_ < 8; j_++)                                                             \
            b[j_] = _mm_aesenc_si128(b[j_], k_);                                                   \
    } while (0)

/*
 * out[0..127] = in[0..127] ^ E(K, c .. c+7) and, if do_hash, y absorbs the eight
 * blocks at hash[0..127].  Returns the new y (reflected).  hash may equal in or
 * lie before out; every read of it precedes the stores.
 */
TARGET static inline __m128i group8(const aes_state *ks, const gh_state *hs, __m128i c, __m128i y,
                                    const uint8_t *hash, const uint8_t *in, uint8_t *out,
                                    int do_hash)
{
    __m128i b[8];
    const __m128i k0 = ks->rk[0];
    /* While the counter's low byte does not carry within the group, PADDD on the
     * big-endian block (byte 15 is the top byte of lane 3) steps it with no byte
     * swaps.  The test is on the counter, which is public (nonce and position). */
    if ((uint32_t)_mm_extract_epi32(c, 3) % 256 <= 256 - 8) {
        const __m128i cb = ctr_swap(c);
        for (int j = 0; j < 8; j++)
            b[j] = _mm_xor_si128(_mm_add_epi32(cb, _mm_set_epi32(j << 24, 0, 0, 0)), k0);
    } else {
        for (int j = 0; j < 8; j++)
            b[j] = _mm_xor_si128(ctr_swap(_mm_add_epi32(c, _mm_set_epi32(j, 0, 0, 0))), k0);
    }

    struct sls_env_ghash_acc a = {0};
    /* Rounds 1..8 each carry one block's three multiplications; round 9 the
     * reduction.  Every key size has at least nine AESENC rounds. */
    ROUND8(1);
    if (do_hash)
        sls_env_ghash_mul_first(&a, _mm_xor_si128(y, sls_env_ghash_bswap(load(hash))), hs->h[7],
                                hs->hk[7]);
    for (int i = 1; i < 8; i++) {
        ROUND8(i + 1);
        if (do_hash)
            sls_env_ghash_mul_add(&a, sls_env_ghash_bswap(load(hash + 16 * i)), hs->h[7 - i],
                                  hs->hk[7 - i]);
    }
    ROUND8(9);
    if (do_hash)
        y = sls_env_ghash_reduce(&a);
    unsigned r = 10;
    for (; r < ks->rounds; r++)
        ROUND8(r);
    const __m128i kl = ks->rk[r];
    for (int j = 0; j < 8; j++) {
        __m128i v = _mm_aesenclast_si128(b[j], kl);
        _mm_storeu_si128((__m128i *)(out + 16 * j), _mm_xor_si128(v, load(in + 16 * j)));
    }
    return y;
}

/* Fewer than eight blocks of plain CTR. */
TARGET static void ctr_tail(const aes_state *ks, __m128i c, const uint8_t *in, uint8_t *out,
                            size_t n)
{
    for (size_t i = 0; i < n; i++) {
        __m128i v = _mm_xor_si128(ctr_swap(c), ks->rk[0]);
        for (unsigned r = 1; r < ks->rounds; r++)
            v = _mm_aesenc_si128(v, ks->rk[r]);
        v = _mm_aesenclast_si128(v, ks->rk[ks->rounds]);
        _mm_storeu_si128((__m128i *)(out + 16 * i), _mm_xor_si128(v, load(in + 16 * i)));
        c = _mm_add_epi32(c, _mm_set_epi32(1, 0, 0, 0));
    }
}

TARGET static void aesgcm_aesni_seal(const void *cipher_state,
                                     const void *ghash_state, const uint8_t ctr[16],
                                     uint8_t y[16], const uint8_t *in, uint8_t *out,
                                     size_t nblocks)
{
    const aes_state *ks = cipher_state;
    const gh_state *hs = ghash_state;
    const __m128i eight = _mm_set_epi32(8, 0, 0, 0);
    __m128i c = ctr_swap(load(ctr));
    __m128i acc = sls_env_ghash_bswap(load(y));
    size_t groups = nblocks / 8, rem = nblocks % 8;
    if (groups) {
        acc = group8(ks, hs, c, acc, NULL, in, out, 0);
        c = _mm_add_epi32(c, eight);
        for (size_t g = 1; g < groups; g++) {
            acc = group8(ks, hs, c, acc, out + 128 * (g - 1), in + 128 * g, out + 128 * g, 1);
            c = _mm_add_epi32(c, eight);
        }
        acc = sls_env_ghash_blocks(hs, acc, out + 128 * (groups - 1), 8);
    }
    if (rem) {
        ctr_tail(ks, c, in + 128 * groups, out + 128 * groups, rem);
        acc = sls_env_ghash_blocks(hs, acc, out + 128 * groups, (unsigned)rem);
    }
    _mm_storeu_si128((__m128i *)y, sls_env_ghash_bswap(acc));
}

TARGET static void aesgcm_aesni_open(const void *cipher_state,
                                     const void *ghash_state, const uint8_t ctr[16],
                                     uint8_t y[16], const uint8_t *in, uint8_t *out,
                                     size_t nblocks)
{
    const aes_state *ks = cipher_state;
    const gh_state *hs = ghash_state;
    const __m128i eight = _mm_set_epi32(8, 0, 0, 0);
    __m128i c = ctr_swap(load(ctr));
    __m128i acc = sls_env_ghash_bswap(load(y));
    size_t groups = nblocks / 8, rem = nblocks % 8;
    for (size_t g = 0; g < groups; g++) {
        acc = group8(ks, hs, c, acc, in + 128 * g, in + 128 * g, out + 128 * g, 1);
        c = _mm_add_epi32(c, eight);
    }
    if (rem) {
        /* Hash before decrypting: in may be out. */
        acc = sls_env_ghash_blocks(hs, acc, in + 128 * groups, (unsigned)rem);
        ctr_tail(ks, c, in + 128 * groups, out + 128 * groups, rem);
    }
    _mm_storeu_si128((__m128i *)y, sls_env_ghash_bswap(acc));
}


SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_aesni = {
    aesgcm_aesni_seal, aesgcm_aesni_open, NULL, NULL,
};

#else /* !SLS_ENV_X86 */

SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_aesni = SLS_ENV_UNAVAILABLE_BULK;

#endif
