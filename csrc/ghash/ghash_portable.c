/*
 * GHASH, portable and constant-time (NIST SP 800-38D section 6.4).
 *
 * No tables: the 64x64 carry-less products are computed with ordinary integer
 * multiplications on operands masked to every fourth bit ("holes"), so the carries
 * of each partial product land in bits that are masked away afterwards (Thomas
 * Pornin's technique in BearSSL's ghash_ctmul64; the argument for 64-bit words: a
 * partial product x_i * y_j sums at most 15 one-bit terms below bit 60, which fits in
 * the 4-bit slot, and 16 only at bits 60-63, whose carry leaves the word).  The upper
 * half of a carry-less product is the lower half of the product of the bit-reversed
 * operands, reversed again and shifted by one.  Integer multiplication runs in
 * constant time on the CPUs we target (x86-64, ARMv8-A); SECURITY.md says so.
 *
 * Blocks are taken as big-endian 128-bit integers, so GCM's reflected bit order
 * makes the 255-bit product come out reversed; one left shift and the reflected
 * reduction modulo x^128 + x^7 + x^2 + x + 1 of Intel's GCM white paper (Gueron &
 * Kounavis, algorithm 5) finish the multiplication.
 */
#include "internal.h"

/* Low 64 bits of the carry-less product of x and y. */
static uint64_t clmul_lo(uint64_t x, uint64_t y)
{
    const uint64_t m0 = 0x1111111111111111ull, m1 = m0 << 1, m2 = m0 << 2, m3 = m0 << 3;
    uint64_t x0 = x & m0, x1 = x & m1, x2 = x & m2, x3 = x & m3;
    uint64_t y0 = y & m0, y1 = y & m1, y2 = y & m2, y3 = y & m3;
    uint64_t z0 = (x0 * y0) ^ (x1 * y3) ^ (x2 * y2) ^ (x3 * y1);
    uint64_t z1 = (x0 * y1) ^ (x1 * y0) ^ (x2 * y3) ^ (x3 * y2);
    uint64_t z2 = (x0 * y2) ^ (x1 * y1) ^ (x2 * y0) ^ (x3 * y3);
    uint64_t z3 = (x0 * y3) ^ (x1 * y2) ^ (x2 * y1) ^ (x3 * y0);
    return (z0 & m0) | (z1 & m1) | (z2 & m2) | (z3 & m3);
}

static uint64_t rev64(uint64_t x)
{
    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    x = ((x >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((x & 0x0F0F0F0F0F0F0F0Full) << 4);
    x = ((x >> 8) & 0x00FF00FF00FF00FFull) | ((x & 0x00FF00FF00FF00FFull) << 8);
    x = ((x >> 16) & 0x0000FFFF0000FFFFull) | ((x & 0x0000FFFF0000FFFFull) << 16);
    return (x >> 32) | (x << 32);
}

/* Full 128-bit carry-less product of x and y, given also their bit reversals. */
static void clmul(uint64_t x, uint64_t xr, uint64_t y, uint64_t yr, uint64_t *hi, uint64_t *lo)
{
    *lo = clmul_lo(x, y);
    *hi = rev64(clmul_lo(xr, yr)) >> 1;
}

struct ghash_state {
    uint64_t h1, h0;     /* H as a big-endian 128-bit integer */
    uint64_t h1r, h0r;   /* their bit reversals */
    uint64_t hx, hxr;    /* h1 ^ h0 (Karatsuba middle term) and its reversal */
};

static int always(void) { return 1; }

static void ghash_init(void *state, const uint8_t h[16])
{
    struct ghash_state *s = state;
    s->h1 = sls_env_load_be64(h);
    s->h0 = sls_env_load_be64(h + 8);
    s->h1r = rev64(s->h1);
    s->h0r = rev64(s->h0);
    s->hx = s->h1 ^ s->h0;
    s->hxr = s->h1r ^ s->h0r;
}

static void ghash_update(const void *state, uint8_t y[16], const uint8_t *data, size_t nblocks)
{
    const struct ghash_state *s = state;
    uint64_t y1 = sls_env_load_be64(y), y0 = sls_env_load_be64(y + 8);
    for (size_t i = 0; i < nblocks; i++, data += 16) {
        y1 ^= sls_env_load_be64(data);
        y0 ^= sls_env_load_be64(data + 8);
        uint64_t y1r = rev64(y1), y0r = rev64(y0), yx = y1 ^ y0, yxr = y1r ^ y0r;
        /* Karatsuba: (y1 x^64 + y0)(h1 x^64 + h0) = hi x^128 + mid x^64 + lo. */
        uint64_t lo1, lo0, hi1, hi0, mi1, mi0;
        clmul(y0, y0r, s->h0, s->h0r, &lo1, &lo0);
        clmul(y1, y1r, s->h1, s->h1r, &hi1, &hi0);
        clmul(yx, yxr, s->hx, s->hxr, &mi1, &mi0);
        mi1 ^= lo1 ^ hi1;
        mi0 ^= lo0 ^ hi0;
        /* 256-bit product x3:x2:x1:x0 */
        uint64_t x3 = hi1, x2 = hi0 ^ mi1, x1 = lo1 ^ mi0, x0 = lo0;
        /* Reflected operands: shift the 255-bit product left by one. */
        x3 = (x3 << 1) | (x2 >> 63);
        x2 = (x2 << 1) | (x1 >> 63);
        x1 = (x1 << 1) | (x0 >> 63);
        x0 <<= 1;
        /* Reduce: fold the low half, with the bits that the shifts move out of it
         * (x0 << 63, 62, 57) folded once more (white paper, algorithm 5). */
        uint64_t d = x1 ^ (x0 << 63) ^ (x0 << 62) ^ (x0 << 57);
        uint64_t e1 = d >> 1, e0 = (x0 >> 1) | (d << 63);
        uint64_t f1 = d >> 2, f0 = (x0 >> 2) | (d << 62);
        uint64_t g1 = d >> 7, g0 = (x0 >> 7) | (d << 57);
        y1 = x3 ^ d ^ e1 ^ f1 ^ g1;
        y0 = x2 ^ x0 ^ e0 ^ f0 ^ g0;
    }
    sls_env_store_be64(y, y1);
    sls_env_store_be64(y + 8, y0);
}

const sls_env_ghash_impl sls_env_ghash_portable = {
    "portable", always, ghash_init, ghash_update,
};
