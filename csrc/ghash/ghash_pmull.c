/*
 * GHASH (NIST SP 800-38D section 6.4) with PMULL/PMULL2, eight blocks per reduction.
 *
 * GCM numbers the bits of a block from the most significant bit of byte 0.  RBIT on
 * every byte makes byte 0's least significant bit GCM's x^0, so the block loaded as
 * two little-endian 64-bit lanes is the polynomial with bit i = coefficient of x^i,
 * and the product is the ordinary carry-less one (no reflection).  Each product takes
 * three PMULLs (Karatsuba); eight products by H^8..H^1 are summed unreduced and reduced
 * once modulo x^128 + x^7 + x^2 + x + 1 by two PMULLs by 0x87 (x^128 = x^7+x^2+x+1),
 * as the aggregated reduction over 4-8 blocks allows; the 1..7 blocks left go
 * four, then one, per reduction.
 * Nothing branches on or indexes by H or the data.  Run-time probe: HWCAP_PMULL.
 */
#include "internal.h"

#if SLS_ENV_ARM64

#include <arm_neon.h>

#define TARGET __attribute__((target("+crypto")))

struct sls_env_ghash_pmull_state {
    uint64x2_t h[8];  /* H^1..H^8, bit-reversed bytes */
    uint64x2_t hk[8]; /* lo ^ hi of each, in both lanes, for Karatsuba */
};

struct acc {
    uint64x2_t lo, mid, hi;
};

static int pmull_supported(void) { return sls_env_cpu_has(SLS_ENV_CPU_ARM_PMULL); }

TARGET static inline uint64x2_t clmul_lo(uint64x2_t a, uint64x2_t b)
{
    return vreinterpretq_u64_p128(vmull_p64((poly64_t)vgetq_lane_u64(a, 0),
                                            (poly64_t)vgetq_lane_u64(b, 0)));
}
TARGET static inline uint64x2_t clmul_hi(uint64x2_t a, uint64x2_t b)
{
    return vreinterpretq_u64_p128(vmull_high_p64(vreinterpretq_p64_u64(a),
                                                 vreinterpretq_p64_u64(b)));
}

/* a * b unreduced, Karatsuba: bk = b.lo ^ b.hi in lane 0. */
TARGET static inline void mul_add(struct acc *r, uint64x2_t a, uint64x2_t b, uint64x2_t bk)
{
    uint64x2_t ak = veorq_u64(a, vextq_u64(a, a, 1));
    r->lo = veorq_u64(r->lo, clmul_lo(a, b));
    r->hi = veorq_u64(r->hi, clmul_hi(a, b));
    r->mid = veorq_u64(r->mid, clmul_lo(ak, bk));
}

TARGET static inline uint64x2_t reduce(const struct acc *r)
{
    /* 256-bit product p3:p2:p1:p0 from the Karatsuba parts. */
    uint64x2_t mid = veorq_u64(r->mid, veorq_u64(r->lo, r->hi));
    uint64x2_t zero = vdupq_n_u64(0);
    uint64x2_t lo = veorq_u64(r->lo, vextq_u64(zero, mid, 1)); /* p1 ^= mid.lo */
    uint64x2_t hi = veorq_u64(r->hi, vextq_u64(mid, zero, 1)); /* p2 ^= mid.hi */
    const uint64x2_t poly = vdupq_n_u64(0x87);
    /* p3 x^192 = p3 * 0x87 * x^64: into p1 and p2. */
    uint64x2_t t = clmul_hi(hi, poly);
    hi = veorq_u64(hi, vextq_u64(t, zero, 1));
    lo = veorq_u64(lo, vextq_u64(zero, t, 1));
    /* p2 x^128 = p2 * 0x87: into p0 and p1. */
    return veorq_u64(lo, clmul_lo(hi, poly));
}

TARGET static inline uint64x2_t load_rev(const uint8_t *p)
{
    return vreinterpretq_u64_u8(vrbitq_u8(vld1q_u8(p)));
}

TARGET static inline uint64x2_t mul(uint64x2_t a, uint64x2_t b)
{
    struct acc r = {vdupq_n_u64(0), vdupq_n_u64(0), vdupq_n_u64(0)};
    mul_add(&r, a, b, veorq_u64(b, vextq_u64(b, b, 1)));
    return reduce(&r);
}

TARGET static void pmull_init(void *state, const uint8_t h[16])
{
    struct sls_env_ghash_pmull_state *s = state;
    s->h[0] = load_rev(h);
    for (int i = 1; i < 8; i++)
        s->h[i] = mul(s->h[i - 1], s->h[0]);
    for (int i = 0; i < 8; i++)
        s->hk[i] = veorq_u64(s->h[i], vextq_u64(s->h[i], s->h[i], 1));
}

/* (acc ^ X_1) * H^n ^ X_2 * H^(n-1) ^ ... ^ X_n * H, one reduction. */
TARGET static inline uint64x2_t aggregate(const struct sls_env_ghash_pmull_state *s, uint64x2_t acc,
                                          const uint8_t *data, int n)
{
    struct acc r = {vdupq_n_u64(0), vdupq_n_u64(0), vdupq_n_u64(0)};
    mul_add(&r, veorq_u64(acc, load_rev(data)), s->h[n - 1], s->hk[n - 1]);
    #pragma GCC unroll 8
    for (int i = 1; i < n; i++)
        mul_add(&r, load_rev(data + 16 * i), s->h[n - 1 - i], s->hk[n - 1 - i]);
    return reduce(&r);
}

TARGET static void pmull_update(const void *state, uint8_t y[16], const uint8_t *data,
                                size_t nblocks)
{
    const struct sls_env_ghash_pmull_state *s = state;
    uint64x2_t acc = load_rev(y);
    for (; nblocks >= 8; nblocks -= 8, data += 128)
        acc = aggregate(s, acc, data, 8);
    if (nblocks >= 4) {
        acc = aggregate(s, acc, data, 4);
        nblocks -= 4;
        data += 64;
    }
    for (; nblocks; nblocks--, data += 16)
        acc = aggregate(s, acc, data, 1);
    vst1q_u8(y, vrbitq_u8(vreinterpretq_u8_u64(acc)));
}

SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_pmull = {
    "pmull", pmull_supported, pmull_init, pmull_update,
};

#else /* !SLS_ENV_ARM64 */

SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_pmull = SLS_ENV_UNAVAILABLE_GHASH("pmull");

#endif
