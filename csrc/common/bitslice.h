/*
 * Bitslicing helpers shared by the portable, constant-time block ciphers
 * (csrc/aes/aes_portable.c, csrc/sm4/sm4_portable.c).
 *
 * Representation: 64 bytes are held as 8 "bit planes" q[0..7] of 64 bits each;
 * q[b] holds bit b of every one of the 64 bytes, with q[0] the LEAST significant bit
 * of each byte and q[7] the most significant.  Any byte-wise function then becomes a
 * boolean circuit evaluated on all 64 bytes at once with AND/XOR/NOT on words: no
 * table lookups, no data-dependent branches, so the time taken does not depend on
 * the data (the constant-time requirement of the project's standards).
 *
 * Which byte sits at which bit position of a plane is fixed by sls_env_bs_transpose8
 * below; ciphers that need a particular arrangement (AES's rows and columns) permute
 * further on their own.
 */
#ifndef SLS_ENV_BITSLICE_H
#define SLS_ENV_BITSLICE_H

#include <stdint.h>

/* Exchange the bits of b selected by mask with the bits of a selected by
 * (mask << s) ("swapmove", a delta swap between two words). */
#define SLS_ENV_BS_SWAPMOVE(a, b, mask, s)                                                 \
    do {                                                                                   \
        uint64_t t_ = (((a) >> (s)) ^ (b)) & (mask);                                       \
        (b) ^= t_;                                                                         \
        (a) ^= t_ << (s);                                                                  \
    } while (0)

/*
 * Eight 8x8 bit-matrix transposes at once.  Think of w[k] as 8 bytes, byte j being
 * bits 8j..8j+7.  Afterwards, bit k of byte j of w[b] is what was bit b of byte j of
 * w[k]: word index and bit-within-byte index are exchanged, the byte position j is
 * kept.  Three rounds of swapmove, each exchanging one bit of the word index with
 * the same bit of the bit-within-byte index.  It is its own inverse.
 *
 * So after loading 64 bytes little-endian (w[k] = bytes 8k..8k+7, byte 8k+j in bits
 * 8j..8j+7) and transposing, bit (8j + k) of plane q[b] is bit b of input byte
 * 8k + j.
 */
static inline void sls_env_bs_transpose8(uint64_t w[8])
{
    for (int k = 0; k < 8; k += 2)
        SLS_ENV_BS_SWAPMOVE(w[k], w[k + 1], 0x5555555555555555ull, 1);
    SLS_ENV_BS_SWAPMOVE(w[0], w[2], 0x3333333333333333ull, 2);
    SLS_ENV_BS_SWAPMOVE(w[1], w[3], 0x3333333333333333ull, 2);
    SLS_ENV_BS_SWAPMOVE(w[4], w[6], 0x3333333333333333ull, 2);
    SLS_ENV_BS_SWAPMOVE(w[5], w[7], 0x3333333333333333ull, 2);
    for (int k = 0; k < 4; k++)
        SLS_ENV_BS_SWAPMOVE(w[k], w[k + 4], 0x0F0F0F0F0F0F0F0Full, 4);
}

static inline uint64_t sls_env_bs_load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

static inline void sls_env_bs_store_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* 64 bytes (any alignment) to 8 planes: bit (8j + k) of q[b] = bit b of in[8k + j]. */
static inline void sls_env_bs_load(uint64_t q[8], const uint8_t in[64])
{
    for (int k = 0; k < 8; k++)
        q[k] = sls_env_bs_load_le64(in + 8 * k);
    sls_env_bs_transpose8(q);
}

/* The inverse of sls_env_bs_load; q is clobbered. */
static inline void sls_env_bs_store(uint8_t out[64], uint64_t q[8])
{
    sls_env_bs_transpose8(q);
    for (int k = 0; k < 8; k++)
        sls_env_bs_store_le64(out + 8 * k, q[k]);
}

/*
 * The AES S-box (FIPS 197 section 5.1.1) as a boolean circuit on 8 planes, q[0] =
 * least significant bit of each byte.  This is the 113-gate circuit of Boyar and
 * Peralta ("A new combinational logic minimization technique with applications to
 * cryptology", SEA 2010; ePrint 2009/191): a linear top layer (23 XOR), a shared
 * non-linear middle computing the GF(2^8) inversion in a tower field (32 AND, 30
 * XOR), and a linear bottom layer (26 XOR, 4 XNOR) that also applies FIPS 197's
 * affine map.  In the paper's naming U0 (input) and S0 (output) are the most
 * significant bits, so U0 = q[7] ... U7 = q[0], likewise for S.
 *
 * sls_env_bs_aes_sbox_noconst omits the four output NOTs, i.e. it computes
 * S(x) ^ 0x63: a cipher can fold the constant into its round keys (AES's linear
 * layers map a byte-uniform 0x63 to itself, see aes_portable.c).
 */
static inline void sls_env_bs_aes_sbox_noconst(uint64_t q[8])
{
    const uint64_t u0 = q[7], u1 = q[6], u2 = q[5], u3 = q[4];
    const uint64_t u4 = q[3], u5 = q[2], u6 = q[1], u7 = q[0];

    /* Top linear layer. */
    uint64_t t1 = u0 ^ u3, t2 = u0 ^ u5, t3 = u0 ^ u6, t4 = u3 ^ u5, t5 = u4 ^ u6;
    uint64_t t6 = t1 ^ t5, t7 = u1 ^ u2, t8 = u7 ^ t6, t9 = u7 ^ t7, t10 = t6 ^ t7;
    uint64_t t11 = u1 ^ u5, t12 = u2 ^ u5, t13 = t3 ^ t4, t14 = t6 ^ t11, t15 = t5 ^ t11;
    uint64_t t16 = t5 ^ t12, t17 = t9 ^ t16, t18 = u3 ^ u7, t19 = t7 ^ t18, t20 = t1 ^ t19;
    uint64_t t21 = u6 ^ u7, t22 = t7 ^ t21, t23 = t2 ^ t22, t24 = t2 ^ t10, t25 = t20 ^ t17;
    uint64_t t26 = t3 ^ t16, t27 = t1 ^ t12;

    /* Shared non-linear middle (inversion in GF(((2^2)^2)^2)). */
    uint64_t m1 = t13 & t6, m2 = t23 & t8, m3 = t14 ^ m1, m4 = t19 & u7, m5 = m4 ^ m1;
    uint64_t m6 = t3 & t16, m7 = t22 & t9, m8 = t26 ^ m6, m9 = t20 & t17, m10 = m9 ^ m6;
    uint64_t m11 = t1 & t15, m12 = t4 & t27, m13 = m12 ^ m11, m14 = t2 & t10, m15 = m14 ^ m11;
    uint64_t m16 = m3 ^ m2, m17 = m5 ^ t24, m18 = m8 ^ m7, m19 = m10 ^ m15, m20 = m16 ^ m13;
    uint64_t m21 = m17 ^ m15, m22 = m18 ^ m13, m23 = m19 ^ t25, m24 = m22 ^ m23;
    uint64_t m25 = m22 & m20, m26 = m21 ^ m25, m27 = m20 ^ m21, m28 = m23 ^ m25;
    uint64_t m29 = m28 & m27, m30 = m26 & m24, m31 = m20 & m23, m32 = m27 & m31;
    uint64_t m33 = m27 ^ m25, m34 = m21 & m22, m35 = m24 & m34, m36 = m24 ^ m25;
    uint64_t m37 = m21 ^ m29, m38 = m32 ^ m33, m39 = m23 ^ m30, m40 = m35 ^ m36;
    uint64_t m41 = m38 ^ m40, m42 = m37 ^ m39, m43 = m37 ^ m38, m44 = m39 ^ m40;
    uint64_t m45 = m42 ^ m41;
    uint64_t m46 = m44 & t6, m47 = m40 & t8, m48 = m39 & u7, m49 = m43 & t16;
    uint64_t m50 = m38 & t9, m51 = m37 & t17, m52 = m42 & t15, m53 = m45 & t27;
    uint64_t m54 = m41 & t10, m55 = m44 & t13, m56 = m40 & t23, m57 = m39 & t19;
    uint64_t m58 = m43 & t3, m59 = m38 & t22, m60 = m37 & t20, m61 = m42 & t1;
    uint64_t m62 = m45 & t4, m63 = m41 & t2;

    /* Bottom linear layer (with the affine map, less its constant). */
    uint64_t l0 = m61 ^ m62, l1 = m50 ^ m56, l2 = m46 ^ m48, l3 = m47 ^ m55;
    uint64_t l4 = m54 ^ m58, l5 = m49 ^ m61, l6 = m62 ^ l5, l7 = m46 ^ l3;
    uint64_t l8 = m51 ^ m59, l9 = m52 ^ m53, l10 = m53 ^ l4, l11 = m60 ^ l2;
    uint64_t l12 = m48 ^ m51, l13 = m50 ^ l0, l14 = m52 ^ m61, l15 = m55 ^ l1;
    uint64_t l16 = m56 ^ l0, l17 = m57 ^ l1, l18 = m58 ^ l8, l19 = m63 ^ l4;
    uint64_t l20 = l0 ^ l1, l21 = l1 ^ l7, l22 = l3 ^ l12, l23 = l18 ^ l2;
    uint64_t l24 = l15 ^ l9, l25 = l6 ^ l10, l26 = l7 ^ l9, l27 = l8 ^ l10;
    uint64_t l28 = l11 ^ l14, l29 = l11 ^ l17;

    q[7] = l6 ^ l24;  /* S0 */
    q[6] = l16 ^ l26; /* S1, XNOR in the paper */
    q[5] = l19 ^ l28; /* S2, XNOR */
    q[4] = l6 ^ l21;  /* S3 */
    q[3] = l20 ^ l22; /* S4 */
    q[2] = l25 ^ l29; /* S5 */
    q[1] = l13 ^ l27; /* S6, XNOR */
    q[0] = l6 ^ l23;  /* S7, XNOR */
}

/* The AES S-box proper: the XNORs on S1, S2, S6, S7 are 0x63's bits 6, 5, 1, 0. */
static inline void sls_env_bs_aes_sbox(uint64_t q[8])
{
    sls_env_bs_aes_sbox_noconst(q);
    q[6] = ~q[6];
    q[5] = ~q[5];
    q[1] = ~q[1];
    q[0] = ~q[0];
}

#endif /* SLS_ENV_BITSLICE_H */
