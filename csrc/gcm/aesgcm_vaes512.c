/*
 * AES-GCM bulk with VAES and VPCLMULQDQ on zmm registers: CTR encryption of 32
 * blocks (eight registers) stitched with GHASH of 32 ciphertext blocks, as in Intel's
 * GCM white paper (Gueron & Kounavis) and its AVX-512 successors: the AES rounds and
 * the carry-less multiplications go to different execution ports and overlap instead
 * of running one after the other, and the 32 products are reduced once per iteration
 * (H^32..H^1 from the table of ghash_x86_vpclmul.h).
 *
 * Sealing hashes the ciphertext of the previous iteration (still in registers) while
 * encrypting the next, so the two are independent; opening hashes the iteration's own
 * input.  The last fewer-than-32 whole blocks are done here, a register (four
 * blocks) at a time with masked loads and stores, hashed under one reduction.
 *
 * Uses the key layouts of aes_x86_vaes.h and ghash_x86_vpclmul.h; the parts' probes
 * (dispatch.c checks both) cover every instruction set used here.
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

/* Blocks per main-loop iteration: eight registers.  Per 32 blocks the AES unit
 * has 8 x rounds VAESENCs to do and everything else (32 + 2 CLMULs, shuffles,
 * XORs) fits on the other vector port; with 16 blocks the reduction and the
 * per-iteration overhead weigh twice as much and AES-256 lost ~10% (measured). */
#define NZ 8

/* GHASH of x[0..7] (32 blocks, GCM byte order) by H^32..H^1 spread over the AES
 * rounds: steps 1-7 multiply x[1..7], step 8 multiplies x[0] plus the running state
 * (last, so the state's dependency chain through the loop is as short as possible),
 * step 9 reduces. */
INL void gh_step(const int step, const __m512i *x, const uint8_t *p, __m128i *acc,
                 const struct consts *s, __m512i *lo, __m512i *mi, __m512i *hi)
{
    if (step == 1)
        sls_env_gh512_mul0(_mm512_shuffle_epi8(x[1], s->bswap), _mm512_load_si512(p + 64), lo, mi, hi);
    else if (step < NZ)
        sls_env_gh512_mul(_mm512_shuffle_epi8(x[step], s->bswap), _mm512_load_si512(p + 64 * step), lo,
                          mi, hi);
    else if (step == NZ)
        sls_env_gh512_mul(_mm512_xor_si512(_mm512_shuffle_epi8(x[0], s->bswap), _mm512_zextsi128_si512(*acc)),
                          _mm512_load_si512(p), lo, mi, hi);
    else if (step == NZ + 1)
        *acc = sls_env_gh512_reduce(*lo, *mi, *hi);
}

/* CTR over 32 blocks (b: counters with round key 0 added) with the GHASH of x
 * interleaved; returns the new GHASH state. */
INL __m128i aes32_ghash32(const sls_env_aes_vaes_key *k, const unsigned nr, __m512i *b,
                          const __m512i *x, const uint8_t *p, __m128i acc, const struct consts *s)
{
    __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++) {
        const __m512i key = RK(r);
        for (int j = 0; j < NZ; j++)
            b[j] = _mm512_aesenc_epi128(b[j], key);
        gh_step((int)r, x, p, &acc, s, &lo, &mi, &hi);
    }
    for (int j = 0; j < NZ; j++)
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

/* GHASH of 4*nx blocks in registers x (GCM byte order) followed by r (0..31 - 4*nx)
 * blocks CTR-processed here from in to out (the hash input is out when sealing, in
 * when opening), all under one reduction: with m blocks in all, block i takes
 * H^(m - i), table entry 32 - m + i.  Register-sized pieces are independent, so the
 * out-of-order core overlaps their AES chains and products. */
INL __m128i finish(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                   __m512i c, __m128i acc, const __m512i *x, const int nx, const uint8_t *in,
                   uint8_t *out, size_t r, const int sealing, const struct consts *s)
{
    if (nx == 0 && r == 0)
        return acc;
    const uint8_t *p = POW(SLS_ENV_GHASH_POWERS - 4 * nx - r);
    __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
    __m512i first = _mm512_zextsi128_si512(acc);
    for (int j = 0; j < nx; j++) {
        __m512i v = _mm512_xor_si512(_mm512_shuffle_epi8(x[j], s->bswap), first);
        first = _mm512_setzero_si512();
        sls_env_gh512_mul(v, _mm512_loadu_si512(p), &lo, &mi, &hi);
        p += 64;
    }
    while (r) {
        size_t left = r < 4 ? r : 4;
        __mmask8 m = (__mmask8)((1u << (2 * left)) - 1);
        __m512i t = next_block(k, &c, s);
        enc1(k, nr, &t);
        __m512i v = _mm512_maskz_loadu_epi64(m, in);
        __m512i o = _mm512_xor_si512(t, v);
        _mm512_mask_storeu_epi64(out, m, o);
        __m512i h = sealing ? _mm512_maskz_mov_epi64(m, o) : v;
        h = _mm512_xor_si512(_mm512_shuffle_epi8(h, s->bswap), first);
        first = _mm512_setzero_si512();
        sls_env_gh512_mul(h, _mm512_maskz_loadu_epi64(m, p), &lo, &mi, &hi);
        p += 64;
        in += 64;
        out += 64;
        r -= left;
    }
    return sls_env_gh512_reduce(lo, mi, hi);
}

INL void seal_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                 const uint8_t ctr[16], uint8_t y[16], const uint8_t *in, uint8_t *out, size_t n)
{
    const struct consts s = consts();
    __m512i c = first_counters(ctr, s.swap);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);
    __m512i x[NZ];
    if (n < 4 * NZ) {
        acc = finish(k, g, nr, c, acc, x, 0, in, out, n, 1, &s);
    } else {
        /* The first 32 blocks have nothing before them to hash; each later iteration
         * hashes the previous one's ciphertext, still in registers. */
        for (int j = 0; j < NZ; j++)
            x[j] = next_block(k, &c, &s);
        for (int j = 0; j < NZ; j++)
            enc1(k, nr, &x[j]);
        for (int j = 0; j < NZ; j++) {
            x[j] = _mm512_xor_si512(x[j], _mm512_loadu_si512(in + 64 * j));
            _mm512_storeu_si512(out + 64 * j, x[j]);
        }
        in += 64 * NZ;
        out += 64 * NZ;
        n -= 4 * NZ;
        while (n >= 4 * NZ) {
            __m512i b[NZ];
            for (int j = 0; j < NZ; j++)
                b[j] = next_block(k, &c, &s);
            acc = aes32_ghash32(k, nr, b, x, POW(0), acc, &s);
            for (int j = 0; j < NZ; j++) {
                x[j] = _mm512_xor_si512(b[j], _mm512_loadu_si512(in + 64 * j));
                _mm512_storeu_si512(out + 64 * j, x[j]);
            }
            in += 64 * NZ;
            out += 64 * NZ;
            n -= 4 * NZ;
        }
        /* The last 32 ciphertext blocks with H^32..H^1, then up to 31 more. */
        acc = finish(k, g, nr, c, acc, x, NZ, in, out, 0, 1, &s);
        acc = finish(k, g, nr, c, acc, x, 0, in, out, n, 1, &s);
    }
    _mm_storeu_si128((__m128i *)y, _mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8));
}

INL void open_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                 const uint8_t ctr[16], uint8_t y[16], const uint8_t *in, uint8_t *out, size_t n)
{
    const struct consts s = consts();
    __m512i c = first_counters(ctr, s.swap);
    __m128i acc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)y), SLS_ENV_GHASH_BSWAP_EPI8);
    /* Opening hashes its own input, so hashing and decryption of one iteration are
     * independent and need no lag. */
    while (n >= 4 * NZ) {
        __m512i b[NZ], v[NZ];
        for (int j = 0; j < NZ; j++)
            v[j] = _mm512_loadu_si512(in + 64 * j);
        for (int j = 0; j < NZ; j++)
            b[j] = next_block(k, &c, &s);
        acc = aes32_ghash32(k, nr, b, v, POW(0), acc, &s);
        for (int j = 0; j < NZ; j++)
            _mm512_storeu_si512(out + 64 * j, _mm512_xor_si512(b[j], v[j]));
        in += 64 * NZ;
        out += 64 * NZ;
        n -= 4 * NZ;
    }
    acc = finish(k, g, nr, c, acc, NULL, 0, in, out, n, 0, &s);
    _mm_storeu_si128((__m128i *)y, _mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8));
}

TGT SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_seal(const void *cs, const void *gs,
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

TGT SLS_ENV_HIDDEN void sls_env_aesgcm_vaes512_open(const void *cs, const void *gs,
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
