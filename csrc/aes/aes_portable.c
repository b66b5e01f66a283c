/*
 * AES-128/192/256 (FIPS 197), portable and constant-time, bitsliced on 64-bit words.
 *
 * Four blocks (64 bytes) at a time are held as eight 64-bit bit planes q[0..7], q[b]
 * holding bit b of all 64 state bytes (csrc/common/bitslice.h).  Within a plane, the
 * byte at row r, column c of block k (FIPS 197 section 3.4: input byte 4c + r) sits
 * at bit
 *
 *     16 r + 4 c + k,
 *
 * so each row is a 16-bit lane.  With this arrangement every step is a handful of
 * word operations that never look at the data:
 *   - SubBytes: the Boyar-Peralta S-box circuit (AND/XOR only, no table);
 *   - ShiftRows: row r rotates its lane by 4r bits; in the rounds it is not done at
 *     all but tracked in the layout (fixslicing, see mix_columns), and done for
 *     real only on the round keys at key setup and once after the last round;
 *   - MixColumns: "the next row" is the plane rotated by 16 bits (plus a column
 *     offset under fixslicing), so with a1 = next_row(a), s = a ^ a1 the column mix
 *     2a ^ 3a1 ^ a2 ^ a3 is xtime(s) ^ a1 ^ next_row2(s), xtime being a fixed
 *     shuffle/XOR of the planes (multiplication by x modulo x^8 + x^4 + x^3 + x + 1);
 *   - AddRoundKey: the round keys are stored already bitsliced (each replicated over
 *     the four blocks).
 * There are no secret-dependent table indices or branches anywhere, key schedule
 * included (its SubWord also goes through the circuit).
 *
 * The S-box's affine constant 0x63 is folded into round keys 1..Nr: the circuit is
 * run without its four output NOTs, i.e. it yields S(x) ^ 0x63, and a state whose
 * bytes are all 0x63 goes through ShiftRows unchanged and through MixColumns
 * unchanged too (2 ^ 3 ^ 1 ^ 1 = 1 in GF(2^8)), so XORing 0x63 into the next round
 * key restores the exact value.
 *
 * CTR (SP 800-38A/38D) fills all four lanes with consecutive counter blocks.
 */
#include "internal.h"
#include "common/bitslice.h"

#define AES_MAX_ROUNDS 14

/* The small fixed loops over planes and words must be unrolled so the planes stay
 * in registers; -O3 does that anyway, this keeps -O2 builds from being 50% slower. */
#if defined(__GNUC__) || defined(__clang__)
#define UNROLL _Pragma("GCC unroll 8")
#else
#define UNROLL
#endif

struct aes_state {
    uint64_t sk[(AES_MAX_ROUNDS + 1) * 8]; /* bitsliced round keys, 8 planes each */
    unsigned rounds;
};

_Static_assert(sizeof(struct aes_state) <= SLS_ENV_CIPHER_STATE_SIZE, "AES state too large");

/* ---- layout: 64 bytes <-> 8 planes in the row/column arrangement above ------------- */

/*
 * Exchange bit a of the word index with bit e of the bit position, over all eight
 * words (an index-bit swap, one swapmove per pair of words).
 */
#define XCHG(w, a, e, mask)                                                               \
    do {                                                                                  \
        UNROLL                                                                            \
        for (int k_ = 0; k_ < 8; k_++)                                                    \
            if (!(k_ & (1 << (a))))                                                       \
                SLS_ENV_BS_SWAPMOVE((w)[k_], (w)[k_ | (1 << (a))], (mask), 1u << (e));    \
    } while (0)

#define MASK_E0 0x5555555555555555ull
#define MASK_E1 0x3333333333333333ull
#define MASK_E2 0x0F0F0F0F0F0F0F0Full
#define MASK_E3 0x00FF00FF00FF00FFull
#define MASK_E4 0x0000FFFF0000FFFFull
#define MASK_E5 0x00000000FFFFFFFFull

/*
 * Loaded little-endian, byte n = 16k + 4c + r of the 64 is bit 8(n mod 8) + b of
 * word n / 8: the word index holds (c1, k0, k1) (bits of c and k, low first) and the
 * bit position holds (b0, b1, b2, r0, r1, c0).  We want the word index to be (a
 * permutation of) b and the position to be (k0, k1, c0, c1, r0, r1).  Word-index
 * bit 0 carries r0 to position 4, r1 to 5, c0 to 2 and c1 to 3 in four exchanges,
 * then two more put k0, k1 at positions 0 and 1.  The word index ends as
 * (b2, b0, b1): plane b is word ((b & 1) << 1) | ((b >> 1 & 1) << 2) | (b >> 2).
 */
static const uint8_t plane_word[8] = {0, 2, 4, 6, 1, 3, 5, 7};

static inline void aes_load4(uint64_t q[8], const uint8_t in[64])
{
    uint64_t w[8];
    UNROLL
    for (int k = 0; k < 8; k++)
        w[k] = sls_env_bs_load_le64(in + 8 * k);
    XCHG(w, 0, 3, MASK_E3);
    XCHG(w, 0, 4, MASK_E4);
    XCHG(w, 0, 5, MASK_E5);
    XCHG(w, 0, 2, MASK_E2);
    XCHG(w, 1, 0, MASK_E0);
    XCHG(w, 2, 1, MASK_E1);
    UNROLL
    for (int b = 0; b < 8; b++)
        q[b] = w[plane_word[b]];
}

static inline void aes_store4(uint8_t out[64], const uint64_t q[8])
{
    uint64_t w[8];
    UNROLL
    for (int b = 0; b < 8; b++)
        w[plane_word[b]] = q[b];
    XCHG(w, 2, 1, MASK_E1);
    XCHG(w, 1, 0, MASK_E0);
    XCHG(w, 0, 2, MASK_E2);
    XCHG(w, 0, 5, MASK_E5);
    XCHG(w, 0, 4, MASK_E4);
    XCHG(w, 0, 3, MASK_E3);
    UNROLL
    for (int k = 0; k < 8; k++)
        sls_env_bs_store_le64(out + 8 * k, w[k]);
}

/* ---- round functions ------------------------------------------------------------------ */

static inline uint64_t rotr64(uint64_t x, unsigned n) { return (x >> n) | (x << (64 - n)); }

/* FIPS 197 5.1.2: row r's new column c is its old column c + r.  Rows 2 and 3 first
 * rotate by two columns (swap the bytes of their lane), then rows 1 and 3 by one
 * (nibble c takes nibble c + 1). */
static inline uint64_t shift_rows1(uint64_t x)
{
    uint64_t t = (x ^ (x >> 8)) & 0x00FF00FF00000000ull;
    x ^= t ^ (t << 8);
    return (x & 0x0000FFFF0000FFFFull) | ((x >> 4) & 0x0FFF00000FFF0000ull) |
           ((x << 12) & 0xF0000000F0000000ull);
}

static inline void shift_rows(uint64_t q[8])
{
    UNROLL
    for (int b = 0; b < 8; b++)
        q[b] = shift_rows1(q[b]);
}

/*
 * ShiftRows is not applied in the rounds ("fixslicing", Adomnicai and Peyrin,
 * "Fixslicing AES-like ciphers", TCHES 2021, applied to this layout): after t
 * skipped ShiftRows, the byte at logical row r, column c sits at physical column
 * c + t r (mod 4) of its lane.  SubBytes and AddRoundKey do not care (round key i is
 * stored in the layout of t = i mod 4), and MixColumns only needs "the same logical
 * column, one row down", which in the t-layout is one row down and t columns right:
 * a fixed rotation of the whole plane for t = 0, two masked rotations otherwise.
 * That costs less than a ShiftRows per round; the layout comes back to t = 0 every
 * four rounds, and whatever is left after the last round is undone once.
 *
 * next_row(x, t): bit (r, pc) takes bit (r + 1, pc + t); next_row2 takes
 * (r + 2, pc + 2t).  Position = 16 r + 4 pc + k, so a whole-plane rotation right by
 * 16 + 4t is right except where pc + t wraps past column 3, which needs 16 + 4t - 16.
 */
static inline uint64_t next_row(uint64_t x, int t)
{
    switch (t) { /* t is a compile-time constant after inlining */
    case 0: return rotr64(x, 16);
    case 1: return (rotr64(x, 20) & 0x0FFF0FFF0FFF0FFFull) | (rotr64(x, 4) & 0xF000F000F000F000ull);
    case 2: return (rotr64(x, 24) & 0x00FF00FF00FF00FFull) | (rotr64(x, 8) & 0xFF00FF00FF00FF00ull);
    default: return (rotr64(x, 12) & 0xFFF0FFF0FFF0FFF0ull) | (rotr64(x, 28) & 0x000F000F000F000Full);
    }
}

static inline uint64_t next_row2(uint64_t x, int t)
{
    if (t & 1) /* two rows down, two columns right */
        return (rotr64(x, 40) & 0x00FF00FF00FF00FFull) | (rotr64(x, 24) & 0xFF00FF00FF00FF00ull);
    return rotr64(x, 32); /* two rows down, 0 or 4 columns right */
}

/* FIPS 197 5.1.3 on all columns of all four blocks, in the t-layout: out = 2a ^ 3a1
 * ^ a2 ^ a3 where ai is row r + i of the same column, = xtime(a ^ a1) ^ a1 ^ (a2 ^
 * a3), and a2 ^ a3 is (a ^ a1) moved two rows down. */
static inline void mix_columns(uint64_t q[8], int t)
{
    uint64_t a1[8], s[8];
    UNROLL
    for (int b = 0; b < 8; b++) {
        a1[b] = next_row(q[b], t);
        s[b] = q[b] ^ a1[b];
    }
    /* xtime(s): multiply by x, reducing by x^8 = x^4 + x^3 + x + 1 (0x1b). */
    uint64_t hi = s[7];
    q[0] = hi ^ a1[0] ^ next_row2(s[0], t);
    q[1] = s[0] ^ hi ^ a1[1] ^ next_row2(s[1], t);
    q[2] = s[1] ^ a1[2] ^ next_row2(s[2], t);
    q[3] = s[2] ^ hi ^ a1[3] ^ next_row2(s[3], t);
    q[4] = s[3] ^ hi ^ a1[4] ^ next_row2(s[4], t);
    q[5] = s[4] ^ a1[5] ^ next_row2(s[5], t);
    q[6] = s[5] ^ a1[6] ^ next_row2(s[6], t);
    q[7] = s[6] ^ a1[7] ^ next_row2(s[7], t);
}

static inline void add_round_key(uint64_t q[8], const uint64_t *rk)
{
    UNROLL
    for (int b = 0; b < 8; b++)
        q[b] ^= rk[b];
}

/* One full round (SubBytes, ShiftRows by relabelling, MixColumns, AddRoundKey). */
static inline void round_t(uint64_t q[8], const uint64_t *rk, int t)
{
    sls_env_bs_aes_sbox_noconst(q);
    mix_columns(q, t);
    add_round_key(q, rk);
}

/* Encrypt the four blocks held in q.  Round i leaves the state in the layout of
 * t = i mod 4; the number of rounds depends on the key size only (public). */
static void encrypt4(const struct aes_state *st, uint64_t q[8])
{
    const uint64_t *rk = st->sk;
    unsigned nr = st->rounds, i = 1;
    add_round_key(q, rk);
    for (; i + 4 <= nr; i += 4) { /* rounds i .. i + 3, t = 1, 2, 3, 0 */
        round_t(q, rk + 8 * i, 1);
        round_t(q, rk + 8 * (i + 1), 2);
        round_t(q, rk + 8 * (i + 2), 3);
        round_t(q, rk + 8 * (i + 3), 0);
    }
    /* nr = 10, 12, 14: i = 9, 9, 13 here; the rounds left with MixColumns are
     * 9 (t = 1) for AES-128, 9..11 (t = 1..3) for AES-192, 13 (t = 1) for AES-256. */
    for (int t = 1; i < nr; i++, t++) {
        if (t == 1)
            round_t(q, rk + 8 * i, 1);
        else if (t == 2)
            round_t(q, rk + 8 * i, 2);
        else
            round_t(q, rk + 8 * i, 3);
    }
    sls_env_bs_aes_sbox_noconst(q);
    add_round_key(q, rk + 8 * nr);
    /* Back to t = 0: nr mod 4 is 2 (AES-128/256) or 0 (AES-192); ShiftRows squared
     * swaps the column pairs of rows 1 and 3. */
    if (nr & 2)
        UNROLL
        for (int b = 0; b < 8; b++) {
            uint64_t x = q[b], d = (x ^ (x >> 8)) & 0x00FF000000FF0000ull;
            q[b] = x ^ d ^ (d << 8);
        }
}

/* ---- key schedule (FIPS 197 5.2, aes_key.c) --------------------------------------- */

/* SubWord through the same circuit: the four bytes go into bits 0..3 of the planes. */
static uint32_t sub_word(uint32_t x)
{
    uint64_t q[8];
    UNROLL
    for (int b = 0; b < 8; b++) {
        uint64_t p = 0;
        for (int i = 0; i < 4; i++)
            p |= (uint64_t)((x >> (8 * i + b)) & 1u) << i;
        q[b] = p;
    }
    sls_env_bs_aes_sbox(q);
    uint32_t y = 0;
    UNROLL
    for (int b = 0; b < 8; b++)
        for (int i = 0; i < 4; i++)
            y |= (uint32_t)((q[b] >> i) & 1u) << (8 * i + b);
    return y;
}

static int always(void) { return 1; }

static int aes_init(void *state, const uint8_t *key, size_t key_len)
{
    struct aes_state *st = state;
    uint32_t w[4 * (AES_MAX_ROUNDS + 1)];
    const unsigned nr = sls_env_aes_expand_key(key, key_len, w, sub_word);
    if (!nr)
        return SLS_ENV_ERR_KEY_SIZE;
    /* Bitslice each round key, replicated over the four block lanes; rounds 1..nr
     * carry the S-box constant (see the top of the file). */
    uint8_t buf[64];
    for (unsigned r = 0; r <= nr; r++) {
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 4; j++) {
                uint32_t v = w[4 * r + j];
                buf[16 * k + 4 * j] = (uint8_t)v;
                buf[16 * k + 4 * j + 1] = (uint8_t)(v >> 8);
                buf[16 * k + 4 * j + 2] = (uint8_t)(v >> 16);
                buf[16 * k + 4 * j + 3] = (uint8_t)(v >> 24);
            }
        if (r > 0)
            for (int n = 0; n < 64; n++)
                buf[n] ^= 0x63;
        uint64_t *rk = st->sk + 8 * r;
        aes_load4(rk, buf);
        /* Into the layout of t = r mod 4 (see encrypt4): ShiftRows 4 - t times. */
        for (unsigned m = (4 - r % 4) % 4; m > 0; m--)
            shift_rows(rk);
    }
    st->rounds = nr;
    sls_env_wipe(w, sizeof w);
    sls_env_wipe(buf, sizeof buf);
    return SLS_ENV_OK;
}

/* ---- modes ------------------------------------------------------------------------ */

static void aes_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    const struct aes_state *st = state;
    uint64_t q[8];
    for (; nblocks >= 4; nblocks -= 4, in += 64, out += 64) {
        aes_load4(q, in);
        encrypt4(st, q);
        aes_store4(out, q);
    }
    if (nblocks) {
        uint8_t buf[64] = {0};
        memcpy(buf, in, 16 * nblocks);
        aes_load4(q, buf);
        encrypt4(st, q);
        aes_store4(buf, q);
        memcpy(out, buf, 16 * nblocks);
        sls_env_wipe(buf, sizeof buf);
    }
    sls_env_wipe(q, sizeof q);
}

static void aes_ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in, uint8_t *out,
                      size_t nblocks)
{
    const struct aes_state *st = state;
    uint8_t ks[64];
    uint64_t q[8];
    uint32_t c = sls_env_load_be32(ctr + 12);
    for (int k = 0; k < 4; k++)
        memcpy(ks + 16 * k, ctr, 12);
    while (nblocks) {
        for (int k = 0; k < 4; k++)
            sls_env_store_be32(ks + 16 * k + 12, c + (uint32_t)k);
        aes_load4(q, ks);
        encrypt4(st, q);
        aes_store4(ks, q);
        size_t n = nblocks < 4 ? nblocks : 4;
        for (size_t i = 0; i < 16 * n; i++)
            out[i] = in[i] ^ ks[i];
        if (n < 4)
            break;
        for (int k = 0; k < 4; k++)
            memcpy(ks + 16 * k, ctr, 12);
        c += 4;
        nblocks -= 4;
        in += 64;
        out += 64;
    }
    sls_env_wipe(ks, sizeof ks);
    sls_env_wipe(q, sizeof q);
}

SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_portable = {
    "portable", always, aes_init, aes_ecb, aes_ctr32,
};
