/*
 * AES-GCM with VAES and VPCLMULQDQ on zmm registers, a whole message per call: CTR
 * encryption of 32 blocks (eight registers) stitched with GHASH of 32 ciphertext
 * blocks, as in Intel's GCM white paper (Gueron & Kounavis) and its AVX-512
 * successors: the AES rounds and the carry-less multiplications go to different
 * execution ports and overlap instead of running one after the other, and the 32
 * products are reduced once per iteration (H^32..H^1 from the table of
 * ghash_x86_vpclmul.h, in Karatsuba form in the loop on AMD).
 *
 * Sealing hashes the ciphertext of the previous iteration (still in registers) while
 * encrypting the next, so the two are independent; opening hashes the iteration's own
 * input, or from 256 KiB on the previous iteration's (LAG_MIN_LEN).  The end of the
 * message (the last 32 blocks in registers, fewer than 32 more, a partial block through
 * byte masks, and the lengths block) is hashed under one reduction.  E(K, J0) runs on
 * xmm beside the first blocks and the AAD is hashed before them, in the same call: for
 * a 1 KiB message the separate steps of gcm.c (four calls, three more reductions in the
 * GHASH chain) cost about as much as a third of the blocks.
 *
 * Uses the key layouts of aes_x86_vaes.h and ghash_x86_vpclmul.h; the parts' probes
 * (dispatch.c checks both) cover every instruction set used here.
 */
#include "internal.h"

#if SLS_ENV_X86
#include "aes/aes_x86_vaes.h"
#include "ghash/ghash_x86_vpclmul.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,vaes,aes,vpclmulqdq,pclmul,prfchw")))
#define INL                                                                                        \
    __attribute__((target("avx512f,avx512bw,avx512vl,vaes,aes,vpclmulqdq,pclmul,prfchw"), always_inline)) \
    static inline

#define RK(r) _mm512_load_si512((const void *)k->rk[r])
#define POW(i) ((const uint8_t *)g->pow[i])
#define KARA(i) ((const uint8_t *)g->kara[i])

/* four: +4 in the little-endian counter lanes; four_be: +4 in the last byte of a
 * big-endian counter block (next_blocks). */
struct consts {
    __m512i swap, bswap, four, four_be;
};

INL struct consts consts(void)
{
    struct consts s;
    s.swap = _mm512_broadcast_i32x4(SLS_ENV_CTR_SWAP_EPI8);
    s.bswap = _mm512_broadcast_i32x4(SLS_ENV_GHASH_BSWAP_EPI8);
    s.four = _mm512_broadcast_i32x4(_mm_set_epi32(4, 0, 0, 0));
    s.four_be = _mm512_broadcast_i32x4(_mm_set_epi32(4 << 24, 0, 0, 0));
    return s;
}

/* Little-endian counters of blocks 0..3 from the first counter block. */
INL __m512i first_counters(__m128i ctr, __m512i swap)
{
    return _mm512_add_epi32(
        _mm512_shuffle_epi8(_mm512_broadcast_i32x4(ctr), swap),
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

/* The next NZ registers of counter blocks, round key 0 added; *n is the counter of the
 * first (public: it follows from the block's position, since a 96-bit nonce starts at 2).
 * While the 32 counters n..n+31 differ only in their last byte (seven iterations in
 * eight), they are stepped big-endian in that byte: one VPADDD and the key's XOR per
 * register, as OpenSSL's aes-gcm-avx512 does, instead of a byte shuffle out of the
 * little-endian lanes as well (next_block).  On the AMD EPYC Zen 4 of issue 19 the shuffle
 * competes with VAESENC for a pipe: 2.3-3.5% less time per message at 16 KiB - 1 MiB,
 * sealing and opening (alternating builds, noisy shared machine).  The branch depends
 * on public data only. */
INL void next_blocks(const sls_env_aes_vaes_key *k, __m512i *c, uint32_t *n, __m512i *b,
                     const struct consts *s)
{
    if ((*n & 0xff) <= 256 - 4 * NZ) {
        __m512i t = _mm512_shuffle_epi8(*c, s->swap);
        for (int j = 0; j < NZ; j++) {
            b[j] = _mm512_xor_si512(t, RK(0));
            t = _mm512_add_epi32(t, s->four_be);
        }
        *c = _mm512_add_epi32(*c, _mm512_slli_epi32(s->four, 3));
    } else {
        for (int j = 0; j < NZ; j++)
            b[j] = next_block(k, c, s);
    }
    *n += 4 * NZ;
}

/* GHASH of x[0..7] (32 blocks, GCM byte order) by H^32..H^1 spread over the AES
 * rounds: steps 1-7 multiply x[1..7], step 8 multiplies x[0] plus the running state
 * (last, so the state's dependency chain through the loop is as short as possible),
 * step 9 reduces.  The products are schoolbook or, with kara, Karatsuba's (three CLMULs
 * per block, not four; pk the kara table), as dispatch.c chose for the CPU
 * (sls_env_ghash_form: Karatsuba on AMD, where every zmm VPCLMULQDQ costs the VAESENCs
 * about a cycle; the measurements are there).  With Karatsuba the empty asm keeps each
 * running sum opaque, as in gh256_mul: without it GCC reassociates the XORs, computes
 * the products early and keeps them live (opening then took 1.05x the time on Zen 4).
 * The schoolbook sums are left to GCC: opaque they took 1.001-1.004x the time sealing,
 * 1.001-1.008x opening at 1-64 KiB on the Intel Xeon of dispatch.c (1 MiB 0.98-1.009x,
 * memory-bound noise; alternating builds, 15 rounds). */
INL void gh_step(const int step, const int kara, const __m512i *x, const uint8_t *p, const uint8_t *pk,
                 __m128i *acc, const struct consts *s, __m512i *lo, __m512i *mi, __m512i *hi)
{
    if (step >= 1 && step <= NZ) {
        /* Register e of x by its powers; x[0] (last) carries the running state. */
        const int e = step == NZ ? 0 : step;
        __m512i a = _mm512_shuffle_epi8(x[e], s->bswap);
        if (e == 0)
            a = _mm512_xor_si512(a, _mm512_zextsi128_si512(*acc));
        const __m512i h = _mm512_load_si512(p + 64 * e);
        if (kara && step == 1)
            sls_env_gh512_kmul0(a, h, _mm512_load_si512(pk + 64 * e), lo, mi, hi);
        else if (kara)
            sls_env_gh512_kmul(a, h, _mm512_load_si512(pk + 64 * e), lo, mi, hi);
        else if (step == 1)
            sls_env_gh512_mul0(a, h, lo, mi, hi);
        else
            sls_env_gh512_mul(a, h, lo, mi, hi);
        if (kara)
            __asm__("" : "+v"(*lo), "+v"(*mi), "+v"(*hi));
    } else if (step == NZ + 1) {
        *acc = sls_env_gh512_reduce(*lo, kara ? _mm512_ternarylogic_epi64(*mi, *lo, *hi, 0x96) : *mi, *hi);
    }
}

/* CTR over 32 blocks (b: counters with round key 0 added) with the GHASH of x
 * interleaved; returns the new GHASH state.  b ends as the keystream XOR the 32 input
 * blocks at in: the input goes into the last round key (AESENCLAST's final XOR), so that
 * XOR runs beside the rounds instead of after them (AMD EPYC Zen 4, alternating builds,
 * issue 19: 0.96x the time sealing and 0.98x opening at 4-64 KiB, 1 KiB unchanged). */
INL __m128i aes32_ghash32(const sls_env_aes_vaes_key *k, const unsigned nr, const int kara, __m512i *b,
                          const uint8_t *in,
                          const __m512i *x, const uint8_t *p, const uint8_t *pk, __m128i acc,
                          const struct consts *s)
{
    __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++) {
        const __m512i key = RK(r);
        for (int j = 0; j < NZ; j++)
            b[j] = _mm512_aesenc_epi128(b[j], key);
        gh_step((int)r, kara, x, p, pk, &acc, s, &lo, &mi, &hi);
    }
    for (int j = 0; j < NZ; j++)
        b[j] = _mm512_aesenclast_epi128(b[j], _mm512_xor_si512(RK(nr), _mm512_loadu_si512(in + 64 * j)));
    return acc;
}

/* Opening a long message prefetches its input (T0) and output (for writing) 4 KiB
 * ahead, one line per register per iteration, and stops 4 KiB before the end, so every
 * prefetch stays inside the buffers.  On the Intel Xeon of dispatch.c: 0.92-0.99x the
 * time at 1 MiB (five alternating runs of 11-15 rounds), where the 2 MiB of input and
 * output no longer stay in L2; 16 and 64 KiB 0.990-1.013x, since they do not prefetch:
 * there the prefetches of lines already in cache cost 1.006-1.022x at 64 KiB, and (before
 * the stop) the ones past the end of a 1 KiB buffer 1.04-1.06x.  Sealing gained nothing
 * (0.994-1.019x at 1 MiB 4 KiB ahead; the input alone 2 KiB and 8 KiB ahead 1.012x and
 * 1.016x), so it does not prefetch.  PREFETCHW (PRFCHW) is on every CPU with VAES and
 * AVX-512.  With opening's GHASH one iteration behind (LAG_MIN_LEN), same CPU: no
 * prefetch at all took 0.98x the time at 256-512 KiB but 1.07x at 2 MiB; starting at
 * 1 MiB instead of 256 KiB won or lost 1-3% at 256-768 KiB with the machine's phase
 * (six runs); 2 or 8 KiB ahead, or the input alone, 0.995-1.013x at 256 KiB - 1 MiB. */
#define PF_AHEAD 4096
#define PF_MIN_LEN ((size_t)256 << 10)

/* Opening from this length on hashes each iteration's input in the next one, as sealing
 * hashes its output (and as OpenSSL's aes-gcm-avx512 does for both directions, through
 * a stack buffer): the blocks stay in registers from the final rounds that decrypt them,
 * so no GHASH step of the next iteration waits for a load.  On the Intel Xeon (family 6
 * model 167) of dispatch.c, alternating builds of 15-21 rounds: 0.980-0.986x the time at
 * 1 MiB, 0.986-0.993x at 256 KiB.  Below 256 KiB the extra first iteration (its blocks
 * decrypted with nothing to hash beside them) and the 32 more blocks hashed at the end
 * do not pay: with the lag from 8 KiB, 1 KiB took 1.11x (from 1 KiB) and 64 KiB
 * 1.008-1.011x, so shorter messages hash each iteration's own input. */
#define LAG_MIN_LEN ((size_t)256 << 10)

/* The loop's prefetches while at least this much is left, given the message length. */
INL size_t pf_until(size_t len)
{
    return len >= PF_MIN_LEN ? PF_AHEAD + 64 * NZ : SIZE_MAX;
}

INL void prefetch_ahead(const uint8_t *in, uint8_t *out, size_t left, size_t until)
{
    if (left < until)
        return;
    for (int j = 0; j < NZ; j++) {
        _mm_prefetch((const char *)(in + PF_AHEAD + 64 * j), _MM_HINT_T0);
        _mm_prefetch((const char *)(out + PF_AHEAD + 64 * j), _MM_HINT_ET0);
    }
}

INL void enc1(const sls_env_aes_vaes_key *k, const unsigned nr, __m512i *b)
{
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++)
        *b = _mm512_aesenc_epi128(*b, RK(r));
    *b = _mm512_aesenclast_epi128(*b, RK(nr));
}

/* The end of a message under one reduction: GHASH of 4*nx blocks in registers x (GCM
 * byte order), then `tail` bytes (0..511: whole blocks and a partial one) CTR-processed
 * here from in to out (the hash input is out when sealing, in when opening; a partial
 * block is loaded, stored and hashed through byte masks, so it is zero-padded), then
 * the lengths block.  With m blocks in all, block i takes H^(m - i), table entry
 * SLS_ENV_GHASH_POWERS - m + i; m <= 32 + 32 + 1 fits the table.  Register-sized
 * pieces are independent, so the out-of-order core overlaps their AES chains and
 * products. */
INL __m128i finish(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr,
                   __m512i c, __m128i acc, const __m512i *x, const int nx, const uint8_t *in,
                   uint8_t *out, size_t tail, __m128i lengths, const int sealing, const struct consts *s)
{
    const uint8_t *p = POW(SLS_ENV_GHASH_POWERS - 4 * (size_t)nx - (tail + 15) / 16 - 1);
    __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
    __m512i first = _mm512_zextsi128_si512(acc);
    for (int j = 0; j < nx; j++)
        sls_env_gh512_absorb(x[j], 64, &p, &first, &lo, &mi, &hi);
    while (tail) {
        size_t left = tail < 64 ? tail : 64;
        __mmask64 m = sls_env_byte_mask64(left);
        __m512i t = next_block(k, &c, s);
        enc1(k, nr, &t);
        __m512i v = _mm512_maskz_loadu_epi8(m, in);
        __m512i o = _mm512_xor_si512(t, v);
        _mm512_mask_storeu_epi8(out, m, o);
        sls_env_gh512_absorb(sealing ? _mm512_maskz_mov_epi8(m, o) : v, left, &p, &first, &lo, &mi, &hi);
        in += left;
        out += left;
        tail -= left;
    }
    /* The lengths block by H^1, in lane 0 (lanes are reduced, then summed). */
    __m512i l = _mm512_xor_si512(_mm512_zextsi128_si512(lengths), first);
    sls_env_gh512_mul(l, _mm512_maskz_loadu_epi64(0x03, p), &lo, &mi, &hi);
    return sls_env_gh512_reduce(lo, mi, hi);
}

/* J0 = nonce || be32(counter) as a register (SP 800-38D 7.1 step 2 with counter 1;
 * the message's blocks start at inc32(J0), counter 2). */
INL __m128i counter_block(const uint8_t nonce[12], int counter)
{
    return _mm_mask_loadu_epi8(_mm_set_epi32(counter << 24, 0, 0, 0), 0x0fff, nonce);
}

/* E(K, J0) on xmm: it depends on nothing else, so its rounds fill gaps in the first
 * blocks' rounds. */
INL __m128i encrypt_j0(const sls_env_aes_vaes_key *k, const unsigned nr, const uint8_t nonce[12])
{
    __m128i b = _mm_xor_si128(counter_block(nonce, 1), _mm_load_si128((const __m128i *)k->rk[0]));
#pragma GCC unroll 14
    for (unsigned r = 1; r < nr; r++)
        b = _mm_aesenc_si128(b, _mm_load_si128((const __m128i *)k->rk[r]));
    return _mm_aesenclast_si128(b, _mm_load_si128((const __m128i *)k->rk[nr]));
}

/* [len(A)]_64 || [len(C)]_64 in bits, reflected (the byte reversal of the block puts
 * len(C) in the low half). */
INL __m128i lengths_block(size_t aad_len, size_t len)
{
    return _mm_set_epi64x((long long)((uint64_t)aad_len * 8), (long long)((uint64_t)len * 8));
}

INL void store_tag(uint8_t tag[16], __m128i acc, __m128i ek_j0)
{
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(_mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8), ek_j0));
}

/* The iterations of 32 blocks in which each hashes the previous one's ciphertext, kept
 * in registers from the final rounds that made or decrypted it (sealing: its output;
 * opening, from LAG_MIN_LEN: its input, loaded before the stores so that an in-place call
 * hashes the ciphertext), so no GHASH step waits for a load; the first has nothing
 * before it to hash.  Needs *left >= 64 NZ; moves in, out and left on and leaves the
 * last iteration's ciphertext in x for finish.  Opening prefetches (pf_until). */
INL __m128i lagged_iterations(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g,
                              const unsigned nr, const int kara, const struct consts *s, __m512i *c, const uint8_t **in, uint8_t **out,
                              size_t *left, const size_t pf, __m512i x[NZ], __m128i acc, const int sealing)
{
    uint32_t n = 2;
    next_blocks(k, c, &n, x, s);
    for (int j = 0; j < NZ; j++)
        enc1(k, nr, &x[j]);
    for (int j = 0; j < NZ; j++) {
        const __m512i v = _mm512_loadu_si512(*in + 64 * j);
        _mm512_storeu_si512(*out + 64 * j, _mm512_xor_si512(x[j], v));
        x[j] = sealing ? _mm512_xor_si512(x[j], v) : v;
    }
    *in += 64 * NZ;
    *out += 64 * NZ;
    *left -= 64 * NZ;
    while (*left >= 64 * NZ) {
        __m512i b[NZ];
        if (!sealing)
            prefetch_ahead(*in, *out, *left, pf);
        next_blocks(k, c, &n, b, s);
        acc = aes32_ghash32(k, nr, kara, b, *in, x, POW(SLS_ENV_GHASH_POWERS - 4 * NZ),
                            KARA(SLS_ENV_GHASH_KARA - 4 * NZ), acc, s);
        for (int j = 0; j < NZ; j++)
            x[j] = sealing ? b[j] : _mm512_loadu_si512(*in + 64 * j);
        for (int j = 0; j < NZ; j++)
            _mm512_storeu_si512(*out + 64 * j, b[j]);
        *in += 64 * NZ;
        *out += 64 * NZ;
        *left -= 64 * NZ;
    }
    return acc;
}

INL void seal_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr, const int kara,
                 const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, const uint8_t *in,
                 uint8_t *out, size_t len, uint8_t tag[16])
{
    const struct consts s = consts();
    const __m128i ek_j0 = encrypt_j0(k, nr, nonce);
    __m128i acc = sls_env_gh512_bytes(g, _mm_setzero_si128(), aad, aad_len);
    __m512i c = first_counters(counter_block(nonce, 2), s.swap);
    __m512i x[NZ];
    size_t left = len;
    if (left < 64 * NZ) {
        acc = finish(k, g, nr, c, acc, x, 0, in, out, left, lengths_block(aad_len, len), 1, &s);
    } else {
        acc = lagged_iterations(k, g, nr, kara, &s, &c, &in, &out, &left, 0, x, acc, 1);
        /* The last 32 ciphertext blocks, up to 511 more bytes and the lengths. */
        acc = finish(k, g, nr, c, acc, x, NZ, in, out, left, lengths_block(aad_len, len), 1, &s);
    }
    store_tag(tag, acc, ek_j0);
}

INL void open_nr(const sls_env_aes_vaes_key *k, const sls_env_ghash_vpclmul_key *g, const unsigned nr, const int kara,
                 const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, const uint8_t *in,
                 uint8_t *out, size_t len, uint8_t tag[16])
{
    const struct consts s = consts();
    const __m128i ek_j0 = encrypt_j0(k, nr, nonce);
    __m128i acc = sls_env_gh512_bytes(g, _mm_setzero_si128(), aad, aad_len);
    __m512i c = first_counters(counter_block(nonce, 2), s.swap);
    size_t left = len;
    uint32_t n = 2;
    const size_t pf = pf_until(len);
    __m512i x[NZ];
    if (len < LAG_MIN_LEN) {
        /* Each iteration hashes its own input (independent of its AES rounds). */
        while (left >= 64 * NZ) {
            __m512i b[NZ];
            for (int j = 0; j < NZ; j++)
                x[j] = _mm512_loadu_si512(in + 64 * j);
            next_blocks(k, &c, &n, b, &s);
            acc = aes32_ghash32(k, nr, kara, b, in, x, POW(SLS_ENV_GHASH_POWERS - 4 * NZ),
                                KARA(SLS_ENV_GHASH_KARA - 4 * NZ), acc, &s);
            for (int j = 0; j < NZ; j++)
                _mm512_storeu_si512(out + 64 * j, b[j]);
            in += 64 * NZ;
            out += 64 * NZ;
            left -= 64 * NZ;
        }
        acc = finish(k, g, nr, c, acc, x, 0, in, out, left, lengths_block(aad_len, len), 0, &s);
    } else {
        /* As sealing: each iteration hashes the previous one's input. */
        acc = lagged_iterations(k, g, nr, kara, &s, &c, &in, &out, &left, pf, x, acc, 0);
        acc = finish(k, g, nr, c, acc, x, NZ, in, out, left, lengths_block(aad_len, len), 0, &s);
    }
    store_tag(tag, acc, ek_j0);
}

/* One body per key size and GHASH form, so the round loops unroll completely; the form
 * is the key's (one predictable branch per message). */
#define BY_ROUNDS(body, kara)                                                                 \
    switch (k->rounds) {                                                                      \
    case 10: body(k, g, 10, kara, nonce, aad, aad_len, in, out, len, tag); break;            \
    case 12: body(k, g, 12, kara, nonce, aad, aad_len, in, out, len, tag); break;            \
    default: body(k, g, 14, kara, nonce, aad, aad_len, in, out, len, tag); break;            \
    }
#define BY_FORM(body)                                                                         \
    const sls_env_aes_vaes_key *k = cs;                                                       \
    const sls_env_ghash_vpclmul_key *g = gs;                                                  \
    if (g->form == SLS_ENV_GHASH_KARATSUBA) {                                                 \
        BY_ROUNDS(body, 1)                                                                    \
    } else {                                                                                  \
        BY_ROUNDS(body, 0)                                                                    \
    }

TGT static void aesgcm_vaes512_seal(const void *cs, const void *gs, const uint8_t nonce[12],
                                    const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                    uint8_t *out, size_t len, uint8_t tag[16])
{
    BY_FORM(seal_nr)
}

TGT static void aesgcm_vaes512_open(const void *cs, const void *gs, const uint8_t nonce[12],
                                    const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                    uint8_t *out, size_t len, uint8_t tag[16])
{
    BY_FORM(open_nr)
}

SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_vaes512 = {
    NULL, NULL, aesgcm_vaes512_seal, aesgcm_vaes512_open,
};

#else /* !SLS_ENV_X86 */

SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_vaes512 = SLS_ENV_UNAVAILABLE_BULK;

#endif
