/*
 * AES-GCM bulk with VAES and VPCLMULQDQ on ymm registers, for CPUs without AVX-512
 * (see aes_vaes256.c): CTR over 16 blocks (eight registers) stitched with GHASH of
 * 16 ciphertext blocks under one reduction, as aesgcm_vaes512.c does with zmm.
 *
 * AVX2 has sixteen vector registers, too few to keep a second set of eight
 * ciphertext registers beside the AES state, so GHASH reads its 16 blocks back from
 * memory (L1-resident: sealing hashes the previous iteration's output, opening this
 * iteration's input) as memory operands.  The last fewer-than-16 whole blocks go
 * a pair per register and an odd one in xmm, hashed together with the previous 16
 * under one reduction (H^(16+r)..H^1 from the 32-entry table).
 */
#include "internal.h"

#if SLS_ENV_X86
#include "aes/aes_x86_vaes.h"
#include "ghash/ghash_x86_vpclmul.h"

#define TGT __attribute__((target("avx2,vaes,aes,vpclmulqdq,pclmul")))
#define INL __attribute__((target("avx2,vaes,aes,vpclmulqdq,pclmul"), always_inline)) static inline

#define RK(r) _mm256_load_si256((const __m256i *)k->rk[r])
#define POW(i) ((const uint8_t *)g->pow[i])
#define NY 8 /* registers per iteration: 16 blocks */

/* two: +2 in the little-endian counter lanes; two_be: +2 in the last byte of a
 * big-endian counter block (next_blocks). */
struct consts {
    __m256i swap, bswap, two, two_be;
};

INL struct consts consts(void)
{
    struct consts s;
    s.swap = _mm256_broadcastsi128_si256(SLS_ENV_CTR_SWAP_EPI8);
    s.bswap = _mm256_broadcastsi128_si256(SLS_ENV_GHASH_BSWAP_EPI8);
    s.two = _mm256_set_epi32(2, 0, 0, 0, 2, 0, 0, 0);
    s.two_be = _mm256_set_epi32(2 << 24, 0, 0, 0, 2 << 24, 0, 0, 0);
    return s;
}

/* Little-endian counters of blocks 0 and 1. */
INL __m256i first_counters(const uint8_t ctr[16], __m256i swap)
{
    return _mm256_add_epi32(
        _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ctr)), swap),
        _mm256_set_epi32(1, 0, 0, 0, 0, 0, 0, 0));
}

/* Next two counter blocks, big-endian, with round key 0 added. */
INL __m256i next_block(const sls_env_aes_vaes_key *k, __m256i *c, const struct consts *s)
{
    __m256i b = _mm256_xor_si256(_mm256_shuffle_epi8(*c, s->swap), RK(0));
    *c = _mm256_add_epi32(*c, s->two);
    return b;
}

/* The next NY registers of counter blocks, round key 0 added; *n is the counter of the
 * first (public: the caller's counter block).  While the 16 counters n..n+15 differ
 * only in their last byte they are stepped big-endian in that byte, a VPADDD and the
 * key's XOR per register without next_block's shuffle, as in aesgcm_vaes512.c.  The
 * branch depends on public data only. */
INL void next_blocks(const sls_env_aes_vaes_key *k, __m256i *c, uint32_t *n, __m256i *b,
                     const struct consts *s)
{
    if ((*n & 0xff) <= 256 - 2 * NY) {
        __m256i t = _mm256_shuffle_epi8(*c, s->swap);
        for (int j = 0; j < NY; j++) {
            b[j] = _mm256_xor_si256(t, RK(0));
            t = _mm256_add_epi32(t, s->two_be);
        }
        *c = _mm256_add_epi32(*c, _mm256_slli_epi32(s->two, 3));
    } else {
        for (int j = 0; j < NY; j++)
            b[j] = next_block(k, c, s);
    }
    *n += 2 * NY;
}

INL __m256i load(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* GHASH of 16 blocks at h (GCM byte order) by H^16..H^1 spread over the AES rounds:
 * steps 1-7 multiply pairs 1..7, step 8 pair 0 plus the running state (last, to keep
 * the state's chain short), step 9 reduces. */
INL void gh_step(const int step, const uint8_t *h, const uint8_t *p, __m128i *acc, const struct consts *s,
                 __m256i *lo, __m256i *mi, __m256i *hi)
{
    if (step == 1)
        sls_env_gh256_mul0(_mm256_shuffle_epi8(load(h + 32), s->bswap), load(p + 32), lo, mi, hi);
    else if (step < NY)
        sls_env_gh256_mul(_mm256_shuffle_epi8(load(h + 32 * step), s->bswap), load(p + 32 * step), lo, mi, hi);
    else if (step == NY)
        sls_env_gh256_mul(_mm256_xor_si256(_mm256_shuffle_epi8(load(h), s->bswap), _mm256_zextsi128_si256(*acc)),
                          load(p), lo, mi, hi);
    else if (step == NY + 1)
        *acc = sls_env_gh256_reduce(*lo, *mi, *hi);
}

/* CTR over 16 blocks from in to out with the GHASH of the 16 blocks at h
 * interleaved; returns the new GHASH state.  h may equal in (opening): all its loads
 * come before the stores, which the compiler keeps in order since they may alias. */
INL __m128i aes16_ghash16(const sls_env_aes_vaes_key *k, const unsigned nr, __m256i *c, uint32_t *n, const uint8_t *in,
                          uint8_t *out, const uint8_t *h, const uint8_t *p, __m128i acc, const struct consts *s)
{
    __m256i b[NY];
    next_blocks(k, c, n, b, s);
    __m256i lo = _mm256_setzero_si256(), mi = lo, hi = lo;
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++) {
        const __m256i key = RK(r);
        for (int j = 0; j < NY; j++)
            b[j] = _mm256_aesenc_epi128(b[j], key);
        gh_step((int)r, h, p, &acc, s, &lo, &mi, &hi);
    }
    for (int j = 0; j < NY; j++)
        b[j] = _mm256_xor_si256(_mm256_aesenclast_epi128(b[j], RK(nr)), load(in + 32 * j));
    for (int j = 0; j < NY; j++)
        _mm256_storeu_si256((__m256i *)(out + 32 * j), b[j]);
    return acc;
}

INL void aes16(const sls_env_aes_vaes_key *k, const unsigned nr, __m256i *c, uint32_t *n, const uint8_t *in, uint8_t *out,
               const struct consts *s)
{
    __m256i b[NY];
    next_blocks(k, c, n, b, s);
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++) {
        const __m256i key = RK(r);
        for (int j = 0; j < NY; j++)
            b[j] = _mm256_aesenc_epi128(b[j], key);
    }
    for (int j = 0; j < NY; j++)
        _mm256_storeu_si256((__m256i *)(out + 32 * j),
                            _mm256_xor_si256(_mm256_aesenclast_epi128(b[j], RK(nr)), load(in + 32 * j)));
}

INL __m256i enc1(const sls_env_aes_vaes_key *k, const unsigned nr, __m256i b)
{
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++)
        b = _mm256_aesenc_epi128(b, RK(r));
    return _mm256_aesenclast_epi128(b, RK(nr));
}

/* GHASH of nh blocks already at h (0 or 16), then CTR of r (0..15) blocks from in to
 * out hashed too (out when sealing, in when opening), all under one reduction:
 * with m = nh + r blocks, block i takes H^(m - i), table entry 32 - m + i. */
INL __m128i finish(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                   __m256i c, __m128i acc, const uint8_t *h, const size_t nh, const uint8_t *in,
                   uint8_t *out, size_t r, const int sealing, const struct consts *s)
{
    if (nh == 0 && r == 0)
        return acc;
    const uint8_t *p = POW(SLS_ENV_GHASH_POWERS - nh - r);
    __m256i lo = _mm256_setzero_si256(), mi = lo, hi = lo;
    __m256i first = _mm256_zextsi128_si256(acc);
    for (size_t j = 0; j < nh; j += 2) {
        __m256i v = _mm256_xor_si256(_mm256_shuffle_epi8(load(h + 16 * j), s->bswap), first);
        first = _mm256_setzero_si256();
        sls_env_gh256_mul(v, load(p), &lo, &mi, &hi);
        p += 32;
    }
    for (; r >= 2; r -= 2) {
        __m256i t = next_block(k, &c, s);
        t = enc1(k, nr, t);
        __m256i v = load(in);
        __m256i o = _mm256_xor_si256(t, v);
        _mm256_storeu_si256((__m256i *)out, o);
        __m256i x = _mm256_xor_si256(_mm256_shuffle_epi8(sealing ? o : v, s->bswap), first);
        first = _mm256_setzero_si256();
        sls_env_gh256_mul(x, load(p), &lo, &mi, &hi);
        p += 32;
        in += 32;
        out += 32;
    }
    if (r) {
        __m128i t = sls_env_aes_vaes_enc1(k, _mm_shuffle_epi8(_mm256_castsi256_si128(c), SLS_ENV_CTR_SWAP_EPI8));
        __m128i v = _mm_loadu_si128((const __m128i *)in);
        __m128i o = _mm_xor_si128(t, v);
        _mm_storeu_si128((__m128i *)out, o);
        __m128i x = _mm_xor_si128(_mm_shuffle_epi8(sealing ? o : v, SLS_ENV_GHASH_BSWAP_EPI8),
                                  _mm256_castsi256_si128(first));
        sls_env_gh256_mul(_mm256_zextsi128_si256(x),
                          _mm256_zextsi128_si256(_mm_load_si128((const __m128i *)p)), &lo, &mi, &hi);
    }
    return sls_env_gh256_reduce(lo, mi, hi);
}

INL void seal_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                 const uint8_t ctr[16], uint8_t y[16], const uint8_t *in, uint8_t *out, size_t n)
{
    const struct consts s = consts();
    __m256i c = first_counters(ctr, s.swap);
    uint32_t ctr32 = sls_env_load_be32(ctr + 12);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);
    size_t nh = 0;
    if (n >= 16) {
        /* The first 16 blocks have nothing before them to hash; each later iteration
         * hashes the previous one's output. */
        aes16(k, nr, &c, &ctr32, in, out, &s);
        in += 256;
        out += 256;
        n -= 16;
        while (n >= 16) {
            acc = aes16_ghash16(k, nr, &c, &ctr32, in, out, out - 256, POW(SLS_ENV_GHASH_POWERS - 16), acc, &s);
            in += 256;
            out += 256;
            n -= 16;
        }
        nh = 16;
    }
    acc = finish(k, g, nr, c, acc, out - 16 * nh, nh, in, out, n, 1, &s);
    _mm_storeu_si128((__m128i *)y, _mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8));
}

INL void open_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                 const uint8_t ctr[16], uint8_t y[16], const uint8_t *in, uint8_t *out, size_t n)
{
    const struct consts s = consts();
    __m256i c = first_counters(ctr, s.swap);
    uint32_t ctr32 = sls_env_load_be32(ctr + 12);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);
    while (n >= 16) {
        acc = aes16_ghash16(k, nr, &c, &ctr32, in, out, in, POW(SLS_ENV_GHASH_POWERS - 16), acc, &s);
        in += 256;
        out += 256;
        n -= 16;
    }
    acc = finish(k, g, nr, c, acc, NULL, 0, in, out, n, 0, &s);
    _mm_storeu_si128((__m128i *)y, _mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8));
}

TGT static void aesgcm_vaes256_seal(const void *cs, const void *gs,
                                    const uint8_t ctr[16], uint8_t y[16],
                                    const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const sls_env_aes_vaes_key *k = cs;
    switch (k->rounds) {
    case 10: seal_nr(k, gs, 10, ctr, y, in, out, nblocks); break;
    case 12: seal_nr(k, gs, 12, ctr, y, in, out, nblocks); break;
    default: seal_nr(k, gs, 14, ctr, y, in, out, nblocks); break;
    }
}

TGT static void aesgcm_vaes256_open(const void *cs, const void *gs,
                                    const uint8_t ctr[16], uint8_t y[16],
                                    const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const sls_env_aes_vaes_key *k = cs;
    switch (k->rounds) {
    case 10: open_nr(k, gs, 10, ctr, y, in, out, nblocks); break;
    case 12: open_nr(k, gs, 12, ctr, y, in, out, nblocks); break;
    default: open_nr(k, gs, 14, ctr, y, in, out, nblocks); break;
    }
}


SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_vaes256 = {
    aesgcm_vaes256_seal, aesgcm_vaes256_open, NULL, NULL,
};

#else /* !SLS_ENV_X86 */

SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_vaes256 = SLS_ENV_UNAVAILABLE_BULK;

#endif
