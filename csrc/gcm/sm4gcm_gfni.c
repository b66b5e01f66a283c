/*
 * SM4-GCM (RFC 8998 over NIST SP 800-38D) with GFNI and VPCLMULQDQ on zmm registers,
 * a whole message per call.
 *
 * The keystream comes in passes of groups of 16 blocks (the SM4 rounds of
 * sm4_x86_gfni.h).  While more than 80 blocks remain, a pass of four groups only runs
 * the rounds and keeps their result; the output of those 64 blocks (the transposes, the
 * XOR with the input, the stores) and their GHASH, under one reduction, are done inside
 * the next pass's rounds, a group and a register at a time (out_step).  The rounds keep
 * both vector ports busy, but the out-of-order core takes the extra work in among them
 * better than as a burst after them: on an Intel Xeon of family 6 model 167 (Sapphire
 * Rapids class), where the GFNI ops and VPROLD go to port 0 and the CLMULs, shuffles and
 * transposes to port 5, this took 0.91-0.93x the time per message at 16 KiB - 1 MiB of
 * hashing each pass's ciphertext from registers after its rounds (docs/BENCHMARKS.md).
 * The last pass (1-80 blocks) outputs and hashes its own blocks after its rounds, with
 * the lengths block.  What this file saves over gcm.c composing the cipher and the
 * GHASH is, besides, the separate passes over memory, the copies through a buffer for
 * a short message, most reductions, and the calls.
 *
 * E(K, J0) rides in the first pass.  Counter blocks J0 = nonce || 1, then nonce || 2...
 * for the message, are numbered 0, 1, 2...: "virtual" block v covers bytes
 * [16 v, 16 v + 16) of a frame that starts 16 bytes before the message, so block 0
 * is E(K, J0) and block v >= 1 is the keystream of message block v - 1.  Every load,
 * store and hash is masked to the message bytes [16, 16 + len) of that frame: the
 * J0 lane is never read from or written to memory (masked AVX-512 accesses do not
 * touch, or fault on, masked-off bytes), and a partial last block is zero-padded for
 * GHASH (SP 800-38D 7.1 step 5).  A masked-off block hashes as zero, so the J0 lane
 * may keep its slot among the powers of H.
 */
#include "internal.h"

#if SLS_ENV_X86
#include "ghash/ghash_x86_vpclmul.h"
#include "sm4/sm4_x86_gfni.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,gfni,vpclmulqdq,pclmul")))
#define INL static inline __attribute__((target("avx512f,avx512bw,avx512vl,gfni,vpclmulqdq,pclmul"), always_inline))

/* Bytes [lo, hi) of the frame that fall in the 64-byte register at frame offset at. */
static inline __mmask64 range_mask(size_t at, size_t lo, size_t hi)
{
    size_t a = lo > at ? lo - at : 0, b = hi > at ? hi - at : 0;
    if (b > 64)
        b = 64;
    return a >= b ? 0 : sls_env_byte_mask64(b) & ~sls_env_byte_mask64(a);
}

/* A run of 64 blocks (GROUPS groups) hashed inside a pass's rounds: its first register
 * at p (the bytes of it in m0: a J0 lane is masked off), the powers H^64..H^1 at pw, and
 * the state before it in the lane of its first message block (first). */
struct gh_run {
    const uint8_t *p, *pw;
    __mmask64 m0;
    __m512i first;
};

/* Register i of the run into the unreduced sums (the first with the state).  The empty
 * asm keeps each running sum opaque, as in aesgcm_vaes512.c's gh_step. */
INL void gh_one(const int i, const struct gh_run *run, __m512i *lo, __m512i *mi, __m512i *hi)
{
    const __m512i bswap = _mm512_broadcast_i32x4(SLS_ENV_GHASH_BSWAP_EPI8);
    if (i == 0) {
        __m512i d = _mm512_shuffle_epi8(_mm512_maskz_loadu_epi8(run->m0, run->p), bswap);
        sls_env_gh512_mul0(_mm512_xor_si512(d, run->first), _mm512_load_si512(run->pw), lo, mi, hi);
    } else {
        __m512i d = _mm512_shuffle_epi8(_mm512_loadu_si512(run->p + 64 * i), bswap);
        sls_env_gh512_mul(d, _mm512_load_si512(run->pw + 64 * i), lo, mi, hi);
    }
    __asm__("" : "+v"(*lo), "+v"(*mi), "+v"(*hi));
}

/* The output of a pass done in the next pass's rounds: its 16 state registers after
 * the rounds (raw), XORed from in to out (frame addresses of its first block) and hashed
 * (gh: the output when sealing, the input when opening).  j0: its first block is J0,
 * masked off in memory and kept in *ek. */
struct out_run {
    const __m512i *raw;
    const uint8_t *in;
    uint8_t *out;
    struct gh_run gh;
    int j0;
    __m128i *ek;
};

INL void out_group(const int g, const struct out_run *run)
{
    __m512i x[4], o[4];
    for (int j = 0; j < 4; j++)
        x[j] = run->raw[4 * g + j];
    output_blocks(x, o);
    for (int q = 0; q < 4; q++) {
        const size_t at = 64 * (size_t)(4 * g + q);
        if (g == 0 && q == 0) {
            if (run->j0)
                *run->ek = _mm512_castsi512_si128(o[0]);
            __m512i d = _mm512_maskz_loadu_epi8(run->gh.m0, run->in);
            _mm512_mask_storeu_epi8(run->out, run->gh.m0, _mm512_xor_si512(o[0], d));
        } else {
            _mm512_storeu_si512(run->out + at, _mm512_xor_si512(o[q], _mm512_loadu_si512(run->in + at)));
        }
    }
}

/* The work after round r of the next pass's rounds: sealing writes group g after round
 * 4g and hashes register j after round j + 1 (reloaded from the output, in L1);
 * opening hashes input register j after round j and writes group g after round 4g + 3,
 * when its input is hashed, so that an in-place call hashes the ciphertext; the
 * reduction after round 17.  One product per round rather than two: two after each of
 * rounds 0-9 took 2-3% more time (one per round beat hashing after the rounds by 2-6%,
 * deferring the output too by a further 1-4%; the same with the round-16 rotation a
 * VPSHUFB in rounds 22-31, when port 5 has nothing else, or with the output spread to a
 * group every six rounds, did not gain; Sapphire Rapids class, c_ab.py). */
INL void out_step(const int step, const struct out_run *run, const int sealing, __m128i *acc, __m512i *lo,
                  __m512i *mi, __m512i *hi)
{
    if (sealing) {
        if (step % 4 == 0 && step < 4 * GROUPS)
            out_group(step / 4, run);
        if (step >= 1 && step <= 4 * GROUPS)
            gh_one(step - 1, &run->gh, lo, mi, hi);
    } else {
        if (step < 4 * GROUPS)
            gh_one(step, &run->gh, lo, mi, hi);
        if (step % 4 == 3 && step < 4 * GROUPS)
            out_group(step / 4, run);
    }
    if (step == 4 * GROUPS + 1)
        *acc = sls_env_gh512_reduce(*lo, *mi, *hi);
}

/* The same work outside any rounds (the output of the last deferred pass). */
INL __m128i out_alone(const struct out_run *run, const int sealing, __m128i acc)
{
    __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;
    for (int step = 0; step <= 4 * GROUPS + 1; step++)
        out_step(step, run, sealing, &acc, &lo, &mi, &hi);
    return acc;
}

#define INLINE static inline __attribute__((always_inline))
#define SM4_OUT(i, j0, j1, j2, r) out_step(r, run, sealing, acc, lo, mi, hi);
/* GROUPS groups of rounds with out_step after each round, all 32 unrolled so each
 * step's work is fixed at compile time (rolled, the branches cost more than the overlap
 * gained: 1.02-1.04x the time). */
DEFINE_ROUNDS_UNROLL(rounds_out, GROUPS,
                     (const sls_env_sm4_gfni_key *key, __m512i *x, const struct out_run *run,
                      const int sealing, __m128i *acc, __m512i *lo, __m512i *mi, __m512i *hi),
                     SM4_OUT, "GCC unroll 8")
#undef INLINE

/* What a pass needs besides its counters. */
struct msg {
    const sls_env_sm4_gfni_key *key;
    const sls_env_ghash_vpclmul_key *g;
    size_t shift;        /* 1: J0 is virtual block 0; 0: it runs in the side chain */
    uintptr_t vin, vout; /* the frame: the message's addresses less 16 * shift */
    size_t end;          /* 16 * shift + len: the message is [16 * shift, end) of the frame */
    int empty;           /* len == 0 */
    __m128i lengths;     /* [len(A)]_64 || [len(C)]_64, reflected */
    __m128i ek_j0;       /* set by the first pass */
    uint32_t y[4];       /* J0 through the side chain (sm4_x86_gfni.h) */
};

/*
 * The last pass of a message, over virtual blocks [v, v + nb) (16 (G - 1) < nb <= 16 G),
 * counters from *w3 on (the passes before it are deferred ones, below): the keystream
 * XORs into the message, and the ciphertext (the output when sealing,
 * the input when opening) is hashed with acc under one reduction, followed by the
 * lengths block in the message's last pass.  With m blocks hashed, block i takes
 * H^(m - i).  Opening hashes each input register where it is loaded for the XOR, after
 * the rounds, as sealing hashes its output there: hashing the whole input first (so the
 * rounds would overlap it) loaded it twice and took 2.5-3% more time per message at
 * 1-64 KiB on an AMD EPYC Zen 4 (alternating builds, issue 19; the deferred passes do
 * overlap it, a register per round).  The hash state goes into the pass's first message
 * block: lane 1 of the
 * first register in the first pass (lane 0 is J0), or into the lengths block when the
 * message is empty.
 */
#define DEFINE_GCM_PASS(NAME, ROUNDS_CALL, G)                                                      \
    INL __m128i NAME(struct msg *s, __m512i w0, __m512i w1, __m512i w2, __m512i *w3, size_t v,     \
                     size_t nb, __m128i acc, const int sealing, const int last)                    \
    {                                                                                              \
        const size_t lo_byte = v ? 16 * v : 16 * s->shift;                                         \
        const size_t hi_byte = 16 * (v + nb) < s->end ? 16 * (v + nb) : s->end;                     \
        const int acc_in_lengths = v == 0 && s->empty;                                             \
        const uint8_t *pw = s->g->pow[SLS_ENV_GHASH_POWERS - nb - (size_t)last];                   \
        __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;                                     \
        __m512i first = acc_in_lengths ? _mm512_setzero_si512()                                    \
                        : v == 0 && s->shift ? _mm512_maskz_broadcast_i32x4(0xf0, acc)            \
                                       : _mm512_zextsi128_si512(acc);                              \
        __m512i x[4 * G], o[4];                                                                    \
        counter_groups(x, G, w0, w1, w2, w3);                                                      \
        ROUNDS_CALL;                                                                               \
        for (int g = 0; g < G; g++) {                                                              \
            output_blocks(&x[4 * g], o);                                                           \
            if (v == 0 && g == 0 && s->shift)                                                      \
                s->ek_j0 = _mm512_castsi512_si128(o[0]);                                           \
            for (size_t q = 0; q < 4 && 16 * (size_t)g + 4 * q < nb; q++) {                        \
                size_t r = 4 * (size_t)g + q, at = 16 * (v + 4 * r);                               \
                size_t blocks = nb - 4 * r < 4 ? nb - 4 * r : 4;                                   \
                const void *src = (const void *)(s->vin + at);                                     \
                void *dst = (void *)(s->vout + at);                                                \
                __m512i c, d;                                                                      \
                if (at >= lo_byte && at + 64 <= hi_byte) {                                         \
                    d = _mm512_loadu_si512(src);                                                   \
                    c = _mm512_xor_si512(o[q], d);                                                 \
                    _mm512_storeu_si512(dst, c);                                                   \
                } else {                                                                           \
                    __mmask64 m = range_mask(at, lo_byte, hi_byte);                                \
                    d = _mm512_maskz_loadu_epi8(m, src);                                           \
                    c = _mm512_maskz_mov_epi8(m, _mm512_xor_si512(o[q], d));                       \
                    _mm512_mask_storeu_epi8(dst, m, c);                                            \
                }                                                                                  \
                sls_env_gh512_absorb(sealing ? c : d, 16 * blocks, &pw, &first, &lo, &mi, &hi);   \
            }                                                                                      \
        }                                                                                          \
        if (last) {                                                                                \
            __m128i l = acc_in_lengths ? _mm_xor_si128(s->lengths, acc) : s->lengths;              \
            sls_env_gh512_mul(_mm512_zextsi128_si512(l), _mm512_maskz_loadu_epi64(0x03, pw), &lo, &mi, &hi); \
        }                                                                                          \
        return sls_env_gh512_reduce(lo, mi, hi);                                                   \
    }

DEFINE_GCM_PASS(gcm_pass1, rounds_one(s->key, x), 1)
DEFINE_GCM_PASS(gcm_pass2, rounds_two(s->key, x), 2)
DEFINE_GCM_PASS(gcm_pass3, rounds_three(s->key, x), 3)
DEFINE_GCM_PASS(gcm_pass4, rounds_bulk(s->key, x), GROUPS)
DEFINE_GCM_PASS(gcm_pass5, rounds_five(s->key, x), 5)
DEFINE_GCM_PASS(gcm_pass4_side, rounds_bulk_side(s->key, x, s->y), GROUPS)
DEFINE_GCM_PASS(gcm_pass5_side, rounds_five_side(s->key, x, s->y), 5)

/* The out_run of the 64 blocks from virtual block v, whose state is in raw, with the
 * GHASH state acc: hashed from the output when sealing, the input when opening, the J0
 * lane masked off if v is 0 and J0 is virtual block 0. */
INL struct out_run out_at(struct msg *s, const __m512i *raw, size_t v, __m128i acc, const int sealing)
{
    struct out_run r;
    r.raw = raw;
    r.in = (const uint8_t *)(s->vin + 16 * v);
    r.out = (uint8_t *)(s->vout + 16 * v);
    r.j0 = v == 0 && s->shift;
    r.ek = &s->ek_j0;
    r.gh.p = sealing ? r.out : r.in;
    r.gh.pw = s->g->pow[SLS_ENV_GHASH_POWERS - 16 * GROUPS];
    r.gh.m0 = r.j0 ? ~(__mmask64)0xffff : ~(__mmask64)0;
    r.gh.first = r.j0 ? _mm512_maskz_broadcast_i32x4(0xf0, acc) : _mm512_zextsi128_si512(acc);
    return r;
}

/* A full pass of GROUPS groups whose state is left in raw for the next pass, doing the
 * output of the previous one (run, if any: raw is read in its rounds, before it is
 * written) in its rounds.  The first pass may carry the side chain instead. */
INL __m128i gcm_pass_defer(struct msg *s, __m512i w0, __m512i w1, __m512i w2, __m512i *w3, __m128i acc,
                            const int sealing, __m512i *raw, const struct out_run *run, const int side)
{
    __m512i x[4 * GROUPS], lo = _mm512_setzero_si512(), mi = lo, hi = lo;
    counter_groups(x, GROUPS, w0, w1, w2, w3);
    if (run)
        rounds_out(s->key, x, run, sealing, &acc, &lo, &mi, &hi);
    else if (side)
        rounds_bulk_side(s->key, x, s->y);
    else
        rounds_bulk(s->key, x);
    for (int i = 0; i < 4 * GROUPS; i++)
        raw[i] = x[i];
    return acc;
}

INL void gcm_msg(const void *cs, const void *gs, const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, uint8_t tag[16],
                 const int sealing)
{
    struct msg s;
    const size_t nblocks = (len + 15) / 16;
    /* J0 takes a lane of the first pass unless the message fills whole groups, where it
     * would cost a group of its own: a 1 KiB message and J0 would be five groups, four
     * with the side chain (measured ~10% less time per 1 KiB message).  Below four
     * groups the passes are latency-bound and the side chain, a longer chain, would
     * add to them. */
    const int side = nblocks >= 16 * GROUPS && nblocks % 16 == 0;
    s.key = cs;
    s.g = gs;
    s.shift = side ? 0 : 1;
    s.vin = (uintptr_t)in - 16 * s.shift;
    s.vout = (uintptr_t)out - 16 * s.shift;
    s.end = 16 * s.shift + len;
    s.empty = len == 0;
    s.lengths = _mm_set_epi64x((long long)((uint64_t)aad_len * 8), (long long)((uint64_t)len * 8));
    s.ek_j0 = _mm_setzero_si128();
    for (int i = 0; i < 3; i++)
        s.y[i] = sls_env_load_be32(nonce + 4 * i);
    s.y[3] = 1;
    __m128i acc = sls_env_gh512_bytes(s.g, _mm_setzero_si128(), aad, aad_len);

    uint8_t ctr[16];
    memcpy(ctr, nonce, 12);
    sls_env_store_be32(ctr + 12, side ? 2 : 1);
    __m512i w0, w1, w2, w3;
    ctr_words(ctr, &w0, &w1, &w2, &w3);

    /* Deferred passes of four groups while more than five groups' worth remain, then one
     * pass of one to five groups (a 1 KiB message and J0, 65 blocks, in one pass).  With
     * the output deferred, four groups took 3-8% less time per message than five (five
     * groups' state and the GHASH sums spill more; three took 1.06-1.11x the time); with
     * the output after the rounds, five had been 1-3% faster than four (c_ab.py, issue
     * 19).  The final pass of up to five groups keeps a 1 KiB message in one pass. */
    size_t total = s.shift + nblocks, v = 0;
    __m512i raw[4 * GROUPS];
    for (; total - v > 16 * 5; v += 16 * GROUPS) {
        if (v == 0) {
            acc = gcm_pass_defer(&s, w0, w1, w2, &w3, acc, sealing, raw, NULL, side);
        } else {
            struct out_run run = out_at(&s, raw, v - 16 * GROUPS, acc, sealing);
            acc = gcm_pass_defer(&s, w0, w1, w2, &w3, acc, sealing, raw, &run, 0);
        }
    }
    if (v) {
        struct out_run run = out_at(&s, raw, v - 16 * GROUPS, acc, sealing);
        acc = out_alone(&run, sealing, acc);
    }
    size_t nb = total - v;
    int first_side = side && v == 0; /* nb is then 64 or 80 */
    switch ((nb + 15) / 16) {
    case 5:
        acc = first_side ? gcm_pass5_side(&s, w0, w1, w2, &w3, v, nb, acc, sealing, 1)
                         : gcm_pass5(&s, w0, w1, w2, &w3, v, nb, acc, sealing, 1);
        break;
    case 4:
        acc = first_side ? gcm_pass4_side(&s, w0, w1, w2, &w3, v, nb, acc, sealing, 1)
                         : gcm_pass4(&s, w0, w1, w2, &w3, v, nb, acc, sealing, 1);
        break;
    case 3: acc = gcm_pass3(&s, w0, w1, w2, &w3, v, nb, acc, sealing, 1); break;
    case 2: acc = gcm_pass2(&s, w0, w1, w2, &w3, v, nb, acc, sealing, 1); break;
    default: acc = gcm_pass1(&s, w0, w1, w2, &w3, v, nb, acc, sealing, 1); break;
    }
    if (side) /* the side chain's output block is X35, X34, X33, X32, big-endian */
        s.ek_j0 = _mm_set_epi32((int)__builtin_bswap32(s.y[0]), (int)__builtin_bswap32(s.y[1]),
                                (int)__builtin_bswap32(s.y[2]), (int)__builtin_bswap32(s.y[3]));
    _mm_storeu_si128((__m128i *)tag,
                     _mm_xor_si128(_mm_shuffle_epi8(acc, SLS_ENV_GHASH_BSWAP_EPI8), s.ek_j0));
}

TGT static void sm4gcm_gfni_seal(const void *cs, const void *gs, const uint8_t nonce[12],
                                 const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                 uint8_t *out, size_t len, uint8_t tag[16])
{
    gcm_msg(cs, gs, nonce, aad, aad_len, in, out, len, tag, 1);
}

TGT static void sm4gcm_gfni_open(const void *cs, const void *gs, const uint8_t nonce[12],
                                 const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                 uint8_t *out, size_t len, uint8_t tag[16])
{
    gcm_msg(cs, gs, nonce, aad, aad_len, in, out, len, tag, 0);
}

SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_sm4gcm_gfni = {
    NULL, NULL, sm4gcm_gfni_seal, sm4gcm_gfni_open,
};

#else /* !SLS_ENV_X86 */

SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_sm4gcm_gfni = SLS_ENV_UNAVAILABLE_BULK;

#endif
