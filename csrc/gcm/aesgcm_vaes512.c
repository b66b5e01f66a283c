/*
 * AES-GCM bulk with VAES and VPCLMULQDQ on zmm registers: CTR encryption of 16
 * blocks (four registers) stitched with GHASH of 16 ciphertext blocks, as in Intel's
 * GCM white paper (Gueron & Kounavis) and its AVX-512 successors: the AES rounds
 * (one port) and the carry-less multiplications (another) overlap instead of running
 * one after the other, and the 16 products are reduced once per iteration.
 *
 * Sealing hashes the ciphertext of the previous iteration while encrypting the next,
 * so the two are independent; opening hashes the iteration's own input.  A run of
 * fewer than 16 whole blocks at the end is done here with masked loads and stores,
 * and is hashed with the last pending 16 blocks under one reduction (H^(16+r)..H^1
 * from the 32-entry table), so no call has a per-block loop.
 *
 * Uses the key layouts of aes_x86_vaes.h and ghash_x86_vpclmul.h; the parts'
 * probes cover every instruction set used here.
 */
#include "internal.h"

/* Registered in dispatch.c (the bulk routines of its "vaes512" entry). */
SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_seal(const void *cs, const void *gs, const uint8_t ctr[16],
                                                uint8_t y[16], const uint8_t *in, uint8_t *out,
                                                size_t nblocks);
SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_open(const void *cs, const void *gs, const uint8_t ctr[16],
                                                uint8_t y[16], const uint8_t *in, uint8_t *out,
                                                size_t nblocks);

#if SLS_ENV_X86
#include "aes/aes_x86_vaes.h"
#include "ghash/ghash_x86_vpclmul.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,vaes,aes,vpclmulqdq,pclmul")))
#define INL                                                                                        \
    __attribute__((target("avx512f,avx512bw,avx512vl,vaes,aes,vpclmulqdq,pclmul"), always_inline)) \
    static inline

#define RK(r) _mm512_load_si512((const void *)k->rk[r])
#define POW(i) ((const uint8_t *)g->pow[i])

struct consts {
    __m512i swap, bswap, four;
};

INL struct consts consts(void)
{
    struct consts s;
    s.swap = _mm512_broadcast_i32x4(SLS_ENV_CTR_SWAP_EPI8);
    s.bswap = _mm512_broadcast_i32x4(SLS_ENV_GHASH_BSWAP_EPI8);
    s.four = _mm512_broadcast_i32x4(_mm_set_epi32(4, 0, 0, 0));
    return s;
}

/* Little-endian counters of blocks 0..3 from the first counter block. */
INL __m512i first_counters(const uint8_t ctr[16], __m512i swap)
{
    return _mm512_add_epi32(
        _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)ctr)), swap),
        _mm512_set_epi32(3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0));
}

/* Next four counter blocks, big-endian, with round key 0 added. */
INL __m512i next_block(const sls_env_aes_vaes_key *k, __m512i *c, const struct consts *s)
{
    __m512i b = _mm512_xor_si512(_mm512_shuffle_epi8(*c, s->swap), RK(0));
    *c = _mm512_add_epi32(*c, s->four);
    return b;
}

/* One step of GHASH over 16 blocks x[0..3] (GCM byte order) with H^16..H^1, spread
 * over the AES rounds: steps 1-3 multiply x[1..3], step 4 multiplies x[0] plus the
 * running state (last, so the state's dependency chain is as short as possible). */
INL void gh_step(int step, const __m512i *x, const uint8_t *p, __m128i acc, const struct consts *s,
                 __m512i *lo, __m512i *mi, __m512i *hi)
{
    if (step == 1)
        sls_env_gh512_mul0(_mm512_shuffle_epi8(x[1], s->bswap), _mm512_loadu_si512(p + 64), lo, mi, hi);
    else if (step < 4)
        sls_env_gh512_mul(_mm512_shuffle_epi8(x[step], s->bswap), _mm512_loadu_si512(p + 64 * step), lo,
                          mi, hi);
    else
        sls_env_gh512_mul(_mm512_xor_si512(_mm512_shuffle_epi8(x[0], s->bswap), _mm512_zextsi128_si512(acc)),
                          _mm512_loadu_si512(p), lo, mi, hi);
}

/* 16 blocks of CTR (b holds counters with round key 0 added) with the GHASH of x
 * interleaved; returns the new GHASH state. */
INL __m128i aes16_ghash16(const sls_env_aes_vaes_key *k, const unsigned nr, __m512i *b,
                          const __m512i *x, const uint8_t *p, __m128i acc, const struct consts *s)
{
    __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++) {
        const __m512i key = RK(r);
        for (int j = 0; j < 4; j++)
            b[j] = _mm512_aesenc_epi128(b[j], key);
        if (r <= 4)
            gh_step((int)r, x, p, acc, s, &lo, &mi, &hi);
        else if (r == 5)
            acc = sls_env_gh512_reduce(lo, mi, hi);
    }
    for (int j = 0; j < 4; j++)
        b[j] = _mm512_aesenclast_epi128(b[j], RK(nr));
    return acc;
}

INL void enc1(const sls_env_aes_vaes_key *k, const unsigned nr, __m512i *b)
{
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++)
        *b = _mm512_aesenc_epi128(*b, RK(r));
    *b = _mm512_aesenclast_epi128(*b, RK(nr));
}

/* The last r (0..15) blocks, hashed together with the pending 16 blocks of x (if
 * have_x) under one reduction.  For sealing the hash input is the output; for
 * opening, the input. */
INL __m128i finish(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                   __m512i c, __m128i acc, const __m512i *x, int have_x, const uint8_t *in, uint8_t *out,
                   size_t r, int sealing, const struct consts *s)
{
    if (!have_x && r == 0)
        return acc;
    __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
    __m512i first = _mm512_zextsi128_si512(acc);
    if (have_x) {
        /* Block j of the 16 takes H^(16 + r - j): entries 16 - r + j. */
        const uint8_t *p = POW(16 - r);
        for (int j = 0; j < 4; j++) {
            __m512i v = _mm512_xor_si512(_mm512_shuffle_epi8(x[j], s->bswap), first);
            first = _mm512_setzero_si512();
            sls_env_gh512_mul(v, _mm512_loadu_si512(p + 64 * j), &lo, &mi, &hi);
        }
    }
    if (r) {
        /* Block j of the r takes H^(r - j): entries 32 - r + j. */
        const uint8_t *p = POW(SLS_ENV_GHASH_POWERS - r);
        __m512i t[4];
        const size_t nz = (r + 3) / 4;
        for (size_t j = 0; j < nz; j++)
            t[j] = next_block(k, &c, s);
        for (size_t j = 0; j < nz; j++)
            enc1(k, nr, &t[j]);
        for (size_t j = 0; j < nz; j++) {
            size_t left = r - 4 * j < 4 ? r - 4 * j : 4;
            __mmask8 m = (__mmask8)((1u << (2 * left)) - 1);
            __m512i v = _mm512_maskz_loadu_epi64(m, in + 64 * j);
            __m512i o = _mm512_xor_si512(t[j], v);
            _mm512_mask_storeu_epi64(out + 64 * j, m, o);
            __m512i h = sealing ? _mm512_maskz_mov_epi64(m, o) : v;
            h = _mm512_xor_si512(_mm512_shuffle_epi8(h, s->bswap), first);
            first = _mm512_setzero_si512();
            sls_env_gh512_mul(h, _mm512_maskz_loadu_epi64(m, p + 64 * j), &lo, &mi, &hi);
        }
    }
    return sls_env_gh512_reduce(lo, mi, hi);
}

INL void seal_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                 const uint8_t ctr[16], uint8_t y[16], const uint8_t *in, uint8_t *out, size_t n)
{
    const struct consts s = consts();
    __m512i c = first_counters(ctr, s.swap);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);
    __m512i x[4];
    int have_x = 0;
    if (n >= 16) {
        for (int j = 0; j < 4; j++)
            x[j] = next_block(k, &c, &s);
        for (int j = 0; j < 4; j++)
            enc1(k, nr, &x[j]);
        for (int j = 0; j < 4; j++) {
            x[j] = _mm512_xor_si512(x[j], _mm512_loadu_si512(in + 64 * j));
            _mm512_storeu_si512(out + 64 * j, x[j]);
        }
        in += 256;
        out += 256;
        n -= 16;
        have_x = 1;
        while (n >= 16) {
            __m512i b[4];
            for (int j = 0; j < 4; j++)
                b[j] = next_block(k, &c, &s);
            acc = aes16_ghash16(k, nr, b, x, POW(16), acc, &s);
            for (int j = 0; j < 4; j++) {
                x[j] = _mm512_xor_si512(b[j], _mm512_loadu_si512(in + 64 * j));
                _mm512_storeu_si512(out + 64 * j, x[j]);
            }
            in += 256;
            out += 256;
            n -= 16;
        }
    }
    acc = finish(k, g, nr, c, acc, x, have_x, in, out, n, 1, &s);
    _mm_storeu_si128((__m128i *)y, _mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8));
}

INL void open_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                 const uint8_t ctr[16], uint8_t y[16], const uint8_t *in, uint8_t *out, size_t n)
{
    const struct consts s = consts();
    __m512i c = first_counters(ctr, s.swap);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);
    /* Keep the last 16 blocks unhashed so the tail shares their reduction. */
    __m512i x[4];
    int have_x = 0;
    while (n >= 16) {
        __m512i b[4], v[4];
        for (int j = 0; j < 4; j++)
            v[j] = _mm512_loadu_si512(in + 64 * j);
        for (int j = 0; j < 4; j++)
            b[j] = next_block(k, &c, &s);
        if (have_x) {
            acc = aes16_ghash16(k, nr, b, x, POW(16), acc, &s);
        } else {
            for (int j = 0; j < 4; j++)
                enc1(k, nr, &b[j]);
        }
        for (int j = 0; j < 4; j++) {
            _mm512_storeu_si512(out + 64 * j, _mm512_xor_si512(b[j], v[j]));
            x[j] = v[j];
        }
        have_x = 1;
        in += 256;
        out += 256;
        n -= 16;
    }
    acc = finish(k, g, nr, c, acc, x, have_x, in, out, n, 0, &s);
    _mm_storeu_si128((__m128i *)y, _mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8));
}

TGT SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_seal(const void *cs, const void *gs, const uint8_t ctr[16], uint8_t y[16],
                     const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const sls_env_aes_vaes_key *k = cs;
    switch (k->rounds) {
    case 10: seal_nr(k, gs, 10, ctr, y, in, out, nblocks); break;
    case 12: seal_nr(k, gs, 12, ctr, y, in, out, nblocks); break;
    default: seal_nr(k, gs, 14, ctr, y, in, out, nblocks); break;
    }
}

TGT SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_open(const void *cs, const void *gs, const uint8_t ctr[16], uint8_t y[16],
                     const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const sls_env_aes_vaes_key *k = cs;
    switch (k->rounds) {
    case 10: open_nr(k, gs, 10, ctr, y, in, out, nblocks); break;
    case 12: open_nr(k, gs, 12, ctr, y, in, out, nblocks); break;
    default: open_nr(k, gs, 14, ctr, y, in, out, nblocks); break;
    }
}

#else
SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_seal(const void *cs, const void *gs, const uint8_t ctr[16],
                                                uint8_t y[16], const uint8_t *in, uint8_t *out,
                                                size_t nblocks)
{
    (void)cs; (void)gs; (void)ctr; (void)y; (void)in; (void)out; (void)nblocks;
}
SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_open(const void *cs, const void *gs, const uint8_t ctr[16],
                                                uint8_t y[16], const uint8_t *in, uint8_t *out,
                                                size_t nblocks)
{
    (void)cs; (void)gs; (void)ctr; (void)y; (void)in; (void)out; (void)nblocks;
}
#endif
