/*
 * SM4 key expansion (GB/T 32907-2016 section 7.3), shared by every SM4 implementation:
 *     K_i = MK_i ^ FK_i,  rk_i = K_(i+4) = K_i ^ T'(K_(i+1) ^ K_(i+2) ^ K_(i+3) ^ CK_i),
 *     T' = L' o tau,  L'(B) = B ^ (B <<< 13) ^ (B <<< 23),
 * CK_i's byte j (most significant first) being (4i + j) * 7 mod 256.  Only tau differs
 * between implementations (a bitsliced circuit, GFNI or AESENCLAST, none of them a
 * table indexed by secret bytes), so each passes its own; it runs once per key, so the
 * indirect call costs nothing that matters.
 */
#include "internal.h"

const uint32_t sls_env_sm4_fk[4] = {0xa3b1bac6u, 0x56aa3350u, 0x677d9197u, 0xb27022dcu};

uint32_t sls_env_sm4_ck(unsigned i)
{
    uint32_t ck = 0;
    for (unsigned j = 0; j < 4; j++)
        ck = (ck << 8) | (uint32_t)(((4 * i + j) * 7) & 0xff);
    return ck;
}

static uint32_t rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

void sls_env_sm4_expand_key(const uint8_t key[16], uint32_t rk[32], uint32_t (*tau)(uint32_t))
{
    uint32_t k[4];
    for (int i = 0; i < 4; i++)
        k[i] = sls_env_load_be32(key + 4 * i) ^ sls_env_sm4_fk[i];
    for (int i = 0; i < 32; i++) {
        uint32_t b = tau(k[(i + 1) & 3] ^ k[(i + 2) & 3] ^ k[(i + 3) & 3] ^ sls_env_sm4_ck((unsigned)i));
        k[i & 3] ^= b ^ rol32(b, 13) ^ rol32(b, 23);
        rk[i] = k[i & 3];
    }
    sls_env_wipe(k, sizeof k);
}
