/*
 * SM4-GCM (RFC 8998 over NIST SP 800-38D) with GFNI and VPCLMULQDQ on zmm registers,
 * a whole message per call.
 *
 * The keystream comes in passes of 64 blocks in byte-sliced form (bs_round below) while
 * 64 whole blocks of the message remain, and for a message of exactly 64 blocks; then one
 * last pass of the 0-80 blocks left, in groups of 16 (the word-sliced SM4 rounds of
 * sm4_x86_gfni.h; a message of up to 80 blocks other than 64 is that pass alone).  A
 * 64-block pass only runs the rounds and keeps their result; the output of those blocks
 * (the transposes, the XOR with the input, the stores) and their GHASH, under one
 * reduction, are done inside the next pass's rounds, a group and a register at a time
 * (out_step).  The rounds keep both vector ports busy, but the out-of-order core takes
 * the extra work in among them better than as a burst after them: on an Intel Xeon of
 * family 6 model 167 (Sapphire Rapids class), where the GFNI ops and VPROLD go to port 0
 * and the CLMULs, shuffles and transposes to port 5, this took (with the word-sliced
 * rounds) 0.91-0.93x the time per message at 16 KiB - 1 MiB of hashing each pass's
 * ciphertext from registers after its rounds (docs/BENCHMARKS.md).  The last pass
 * outputs and hashes its own blocks after its rounds, with the lengths block.  What this
 * file saves over gcm.c composing the cipher and the GHASH is, besides, the separate
 * passes over memory, the copies through a buffer for a short message, most reductions,
 * and the calls.
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

/* The output of a pass done in the next pass's rounds: its 16 byte-sliced registers
 * after the rounds (raw[p]: byte p of every output block, the masks' constant, unmask,
 * still to be XORed in), XORed from in to out (frame addresses of its first block) and
 * hashed (gh: the output when sealing, the input when opening).  j0: its first block is
 * J0, masked off in memory and kept in *ek. */
struct out_run {
    const __m512i *raw;
    __m512i *half; /* the first transpose stage of half the run (out_group) */
    const uint8_t *unmask;
    const uint8_t *in;
    uint8_t *out;
    struct gh_run gh;
    int j0;
    __m128i *ek;
};

/* Group g of the run (its registers 4g..4g+3, blocks 64g..64g+15 of the frame from in):
 * the in-lane transpose of raw (byte p of every block in raw[p]) into blocks, in four
 * stages of byte, word, dword and qword unpacks (64 for the run, the first stage of half
 * the run done with groups 0 and 2 and kept in run->half), then the XOR with the input
 * and the masks' block constant, and the stores. */
INL void out_group(const int g, const struct out_run *run)
{
    const int h = g >> 1, h2 = g & 1;
    const __m512i *r = run->raw;
    __m512i *a = run->half, b[4], c[4], o[4];
    if (h2 == 0)
        for (int i = 0; i < 8; i++)
            a[i] = h ? _mm512_unpackhi_epi8(r[2 * i], r[2 * i + 1]) : _mm512_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
    for (int i = 0; i < 4; i++)
        b[i] = h2 ? _mm512_unpackhi_epi16(a[2 * i], a[2 * i + 1]) : _mm512_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
    for (int i = 0; i < 2; i++) {
        c[i] = _mm512_unpacklo_epi32(b[2 * i], b[2 * i + 1]);
        c[2 + i] = _mm512_unpackhi_epi32(b[2 * i], b[2 * i + 1]);
    }
    for (int h3 = 0; h3 < 2; h3++) {
        o[2 * h3] = _mm512_unpacklo_epi64(c[2 * h3], c[2 * h3 + 1]);
        o[2 * h3 + 1] = _mm512_unpackhi_epi64(c[2 * h3], c[2 * h3 + 1]);
    }
    const __m512i um = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)run->unmask));
    for (int q = 0; q < 4; q++) {
        const size_t at = 64 * (size_t)(4 * g + q);
        if (g == 0 && q == 0) {
            __m512i ks = _mm512_xor_si512(o[0], um);
            if (run->j0)
                *run->ek = _mm512_castsi512_si128(ks);
            __m512i d = _mm512_maskz_loadu_epi8(run->gh.m0, run->in);
            _mm512_mask_storeu_epi8(run->out, run->gh.m0, _mm512_xor_si512(ks, d));
        } else {
            _mm512_storeu_si512(run->out + at, xor3(o[q], _mm512_loadu_si512(run->in + at), um));
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

/* ---- the byte-sliced rounds of the 64-block passes ----------------------------------- */

/*
 * The deferred passes do not use sm4_x86_gfni.h's rounds (a word of 16 blocks per
 * register) but a byte-sliced form: register z[4 w + j] holds byte j (big-endian) of
 * word w of all 64 blocks of the pass, lane 16 l + k block 4 k + l (bs_lanes).  Then
 * rotating a word by whole bytes only renames registers, and L is byte-local linear
 * maps: with b_0..b_3 the S-box output bytes (b_0 the most significant) and indices
 * mod 4,
 *     L(B)_j = Ma b_j + Mb (b_(j+1) + b_(j+2)) + Mc b_(j+3),
 *     Ma = I + (x << 2), Mc = I + (x >> 6), Mb = Ma + Mc (rotation by 2 in a byte)
 *            = U + Ma b_(j+3) + Mc b_j,   U = sum over i of (Ma b_i + Mc b_i),
 * and each Ma b_i, Mc b_i is one GF2P8AFFINEINVQB, the matrix composed with the S-box's
 * output map M2.  The state is kept multiplied by M1 (the linear part of the S-box's
 * input map, byte by byte) and masked as in sm4_x86_gfni.h with masks K of those
 * coordinates (their constants 0x3E, and L(0xD3D3D3D3) through M1, ride in the masks;
 * sls_env_sm4_gfni_key's bfold, benter, bunmask): the S-box input is then the state's
 * XOR itself, so a round is 8 GFNI, 4 XORs for U, 8 for the four bytes of the new word
 * and 4 moving the running XOR s on: 24 operations on 64 blocks, 6 per 16 blocks where
 * the word-sliced round takes 10.  A pass costs more outside the rounds: M1^-1 on the
 * 16 registers (GF2P8AFFINEQB) after them, and a 16 x 16 byte transpose in each 128-bit
 * lane (64 unpacks, out_group) instead of 48 dword unpacks and byte swaps; the counters
 * are built a byte at a time (bs_counters), the nonce's words once per message.
 * Measured on the Intel Xeon of family 6 model 167 (c_ab.py, 15 alternating rounds,
 * against the word-sliced passes): 0.87 / 0.85 / 0.84 the time per sealed message at
 * 16 KiB / 64 KiB / 1 MiB, 0.86 / 0.84 / 0.84 opened.  The last pass (up to 80 blocks,
 * with partial registers and the lengths block) keeps the word-sliced rounds.
 */

/* GF2P8AFFINEINVQB matrices M1 * Ma * M2 and M1 * Mc * M2 (above), computed from
 * SBOX_M1 and SBOX_M2; the known-answer and differential tests check them. */
#define BS_QA 0x040db891e9a481b7ll
#define BS_QC 0x280fbcb4ff84c11all

/* One round on 64 blocks: a[j] (word a, byte j of every block) = a[j] ^ fold ^ T(s)[j]
 * in M1's coordinates, s[j] moved on to the next round's (s ^ b ^ a', as round1).  The
 * first XOR into a[j] comes before U so that VPTERNLOGD, which overwrites its first
 * operand, consumes the products where they die. */
INL void bs_round(__m512i *a, __m512i *s, const __m512i *b, const uint32_t fold[4])
{
    __m512i ea[4], ec[4];
    for (int j = 0; j < 4; j++) {
        ea[j] = _mm512_gf2p8affineinv_epi64_epi8(s[j], _mm512_set1_epi64(BS_QA), 0);
        ec[j] = _mm512_gf2p8affineinv_epi64_epi8(s[j], _mm512_set1_epi64(BS_QC), 0);
    }
    for (int j = 0; j < 4; j++)
        a[j] = xor3(a[j], ea[(j + 3) & 3], ec[j]);
    __m512i u = xor3(xor3(ea[0], ea[1], ea[2]), xor3(ea[3], ec[0], ec[1]), _mm512_xor_si512(ec[2], ec[3]));
    for (int j = 0; j < 4; j++) {
        a[j] = xor3(a[j], u, _mm512_set1_epi32((int)fold[j]));
        s[j] = xor3(s[j], b[j], a[j]);
    }
}

/* The 32 rounds on z (z[4 w + j]: byte j of word w), with the side chain y (if not
 * NULL) and the output of the previous pass (run, if not NULL) after each round. */
INL void bs_rounds(const sls_env_sm4_gfni_key *key, __m512i *z, __m512i *s, uint32_t *y, const struct out_run *run,
                   const int sealing, __m128i *acc, __m512i *lo, __m512i *mi, __m512i *hi)
{
    _Pragma("GCC unroll 32") for (int r = 0; r < 32; r++) {
        bs_round(&z[4 * (r & 3)], s, &z[4 * ((r + 1) & 3)], key->bfold[r]);
        if (y)
            y[r & 3] = side_round(y[r & 3], y[(r + 1) & 3], y[(r + 2) & 3], y[(r + 3) & 3], key->rk[r]);
        if (run)
            out_step(r, run, sealing, acc, lo, mi, hi);
    }
}

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

/* For the byte-sliced passes: byte p of the nonce mapped through M1 in every byte of
 * nw[p]; s12[j] = nw[4 + j] ^ nw[8 + j]. */
struct bs_nonce {
    __m512i nw[12], s12[4];
};

/* Lane 16 l + k of a byte-sliced register is block 4 k + l of its pass, so that the
 * in-lane transpose (out_group) puts blocks 4k..4k+3 in register k. */
static const SLS_ENV_ALIGN(64) uint8_t bs_lanes[64] = {
    0, 4, 8,  12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60,
    1, 5, 9,  13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61,
    2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 50, 54, 58, 62,
    3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47, 51, 55, 59, 63,
};

INL void bs_nonce_init(struct bs_nonce *s, const uint8_t nonce[12])
{
    uint8_t b[16] = {0};
    memcpy(b, nonce, 12);
    __m128i n = _mm_gf2p8affine_epi64_epi8(_mm_loadu_si128((const __m128i *)(const void *)b), _mm_set1_epi64x(SBOX_M1), 0);
    _mm_storeu_si128((__m128i *)(void *)b, n);
    for (int p = 0; p < 12; p++)
        s->nw[p] = _mm512_set1_epi8((char)b[p]);
    for (int j = 0; j < 4; j++)
        s->s12[j] = _mm512_xor_si512(s->nw[4 + j], s->nw[8 + j]);
}

/* The entering state of a byte-sliced pass whose first block has counter c: words 0-2
 * from the nonce, word 3 the counters c + n in lane order, a byte at a time with the
 * carries as masks; then mapped, masked with K_3, and s = Z1 ^ Z2 ^ Z3. */
INL void bs_counters(const struct msg *m, const struct bs_nonce *bn, uint32_t c, __m512i *z, __m512i *s)
{
    const __m512i n = _mm512_load_si512(bs_lanes), one = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    __m512i w[4];
    w[3] = _mm512_add_epi8(_mm512_set1_epi8((char)c), n);
    __mmask64 k = _mm512_cmplt_epu8_mask(w[3], n);
    for (int j = 2; j >= 0; j--) {
        const __m512i base = _mm512_set1_epi8((char)(c >> (24 - 8 * j)));
        w[j] = _mm512_mask_add_epi8(base, k, base, one);
        if (j)
            k = _mm512_mask_cmpeq_epi8_mask(k, w[j], zero);
    }
    for (int p = 0; p < 12; p++)
        z[p] = bn->nw[p];
    for (int j = 0; j < 4; j++) {
        z[12 + j] = _mm512_xor_si512(_mm512_gf2p8affine_epi64_epi8(w[j], _mm512_set1_epi64(SBOX_M1), 0),
                                     _mm512_set1_epi32((int)m->key->benter[j]));
        s[j] = _mm512_xor_si512(bn->s12[j], z[12 + j]);
    }
}

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
INL struct out_run out_at(struct msg *s, const __m512i *raw, __m512i *half, size_t v, __m128i acc,
                          const int sealing)
{
    struct out_run r;
    r.raw = raw;
    r.half = half;
    r.unmask = s->key->bunmask;
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

/* A byte-sliced pass of 64 blocks from counter c whose state is left in raw (byte p of
 * every block in raw[p], the masks' constant still in), doing the output of the previous
 * one (run, if any: raw is read in its rounds, before it is written) in its rounds.  The
 * first pass may carry the side chain instead. */
INL __m128i gcm_pass_defer(struct msg *s, const struct bs_nonce *bn, uint32_t c, __m128i acc, const int sealing,
                            __m512i *raw, const struct out_run *run, const int side)
{
    __m512i z[16], sx[4], lo = _mm512_setzero_si512(), mi = lo, hi = lo;
    bs_counters(s, bn, c, z, sx);
    bs_rounds(s->key, z, sx, side ? s->y : NULL, run, sealing, &acc, &lo, &mi, &hi);
    for (int w = 0; w < 4; w++) /* the output block is X35, X34, X33, X32 */
        for (int j = 0; j < 4; j++)
            raw[4 * w + j] = _mm512_gf2p8affine_epi64_epi8(z[4 * (3 - w) + j], _mm512_set1_epi64(SBOX_M1_INV), 0);
    return acc;
}

/* The deferred passes while 64 whole virtual blocks remain (so that their unmasked
 * loads and stores stay in the message), and the output of the last of them (and the
 * lengths block if no block is left); returns the blocks done, leaving 0-64 to the last
 * pass.  Kept out of gcm_msg (noinline) so that the path of short messages is compiled
 * as before: inlined, it took 1.04-1.06x the time per 1 KiB message. */
INL size_t gcm_deferred(struct msg *s, const uint8_t nonce[12], const int side, __m128i *acc, const int sealing)
{
    __m512i raw[4 * GROUPS], half[8];
    struct bs_nonce bn;
    const uint32_t c0 = side ? 2 : 1;
    size_t v = 16 * GROUPS;
    bs_nonce_init(&bn, nonce);
    *acc = gcm_pass_defer(s, &bn, c0, *acc, sealing, raw, NULL, side);
    for (; v + 16 * GROUPS <= s->end / 16; v += 16 * GROUPS) {
        struct out_run run = out_at(s, raw, half, v - 16 * GROUPS, *acc, sealing);
        *acc = gcm_pass_defer(s, &bn, c0 + (uint32_t)v, *acc, sealing, raw, &run, 0);
    }
    struct out_run run = out_at(s, raw, half, v - 16 * GROUPS, *acc, sealing);
    *acc = out_alone(&run, sealing, *acc);
    if (16 * v == s->end) /* nothing left: the lengths block */
        *acc = sls_env_ghash_mul1(_mm_xor_si128(*acc, s->lengths),
                                  _mm_load_si128((const __m128i *)s->g->pow[SLS_ENV_GHASH_POWERS - 1]));
    return v;
}

TGT __attribute__((noinline)) static size_t gcm_deferred_seal(struct msg *s, const uint8_t nonce[12], const int side,
                                                              __m128i *acc)
{
    return gcm_deferred(s, nonce, side, acc, 1);
}

TGT __attribute__((noinline)) static size_t gcm_deferred_open(struct msg *s, const uint8_t nonce[12], const int side,
                                                              __m128i *acc)
{
    return gcm_deferred(s, nonce, side, acc, 0);
}

INL void gcm_msg(const void *cs, const void *gs, const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, uint8_t tag[16],
                 const int sealing)
{
    struct msg s;
    const size_t nblocks = (len + 15) / 16;
    /* J0 takes a lane of the first pass unless the message fills whole groups, where it
     * would cost a group of its own: a message of 64 blocks and J0 would be five groups,
     * four with the side chain (measured ~10% less time per 1 KiB message; 1 KiB itself
     * is now one byte-sliced pass, which carries the side chain the same way, and
     * 1009-1023 bytes are the four groups).  Below four
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

    /* A message of more than five groups' worth of virtual blocks: deferred passes of 64
     * blocks (byte-sliced) while 64 whole blocks remain, then one pass of the 0-64 left
     * (none: only the lengths block is hashed); up to five groups: one pass (a 1 KiB
     * message and J0, 65 blocks, in one).  64 blocks were chosen with the word-sliced
     * rounds: with the output deferred, four groups took 3-8% less time per message than
     * five (five groups' state and the GHASH sums spill more; three took 1.06-1.11x the
     * time); with the output after the rounds, five had been 1-3% faster than four
     * (c_ab.py, issue 19).  Deferring while 64 whole blocks remain, rather than while
     * more than 80 remain (which left 64 word-sliced blocks to the last pass of every
     * message of a multiple of 1 KiB), took 0.87 / 0.92 / 0.97 / 0.99 the time per
     * sealed message at 2 / 4 / 16 / 64 KiB (opened: 0.92 / 0.97 / 0.99 at 4 / 16 /
     * 64 KiB; Intel Xeon family 6 model 167, c_ab.py).  A message of exactly 64
     * virtual blocks (1 KiB, J0 in the side chain, or 1008 bytes) is one byte-sliced
     * pass too: 0.94 / 0.97 the time sealing a 1 KiB / 1008-byte message, 0.98 opening,
     * of one four-group pass; 65-80 blocks stay in one five-group pass (a byte-sliced
     * pass and a one-group last pass took 1.18-1.25x its time; same CPU, c_ab.py). */
    size_t total = s.shift + nblocks, v = 0;
    if (total > 16 * 5 || s.end == 16 * 16 * GROUPS) {
        v = sealing ? gcm_deferred_seal(&s, nonce, side, &acc) : gcm_deferred_open(&s, nonce, side, &acc);
        w3 = _mm512_add_epi32(w3, _mm512_set1_epi32((int)v));
    }
    size_t nb = total - v;
    int first_side = side && v == 0; /* nb is then 64 or 80 */
    switch ((nb + 15) / 16) {
    case 0: break; /* gcm_deferred hashed the lengths block */
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
