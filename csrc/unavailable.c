/*
 * Entry points of parts that cannot run on the target the library was built for
 * (the x86 implementations on ARM64, say).  Their probes say no, so dispatch never
 * selects them; these bodies exist only so every part links everywhere.
 */
#include "internal.h"

int sls_env_unavailable_probe(void) { return 0; }

int sls_env_unavailable_init(void *state, const uint8_t *key, size_t key_len)
{
    (void)state, (void)key, (void)key_len;
    return SLS_ENV_ERR_IMPL;
}

void sls_env_unavailable_blocks(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks)
{
    (void)state, (void)in, (void)out, (void)nblocks;
}

void sls_env_unavailable_ctr32(const void *state, const uint8_t ctr[16], const uint8_t *in,
                               uint8_t *out, size_t nblocks)
{
    (void)state, (void)ctr, (void)in, (void)out, (void)nblocks;
}

void sls_env_unavailable_ghash_init(void *state, const uint8_t h[16]) { (void)state, (void)h; }

void sls_env_unavailable_ghash_update(const void *state, uint8_t y[16], const uint8_t *data,
                                      size_t nblocks)
{
    (void)state, (void)y, (void)data, (void)nblocks;
}

void sls_env_unavailable_bulk(const void *cipher_state, const void *ghash_state, const uint8_t ctr[16],
                              uint8_t y[16], const uint8_t *in, uint8_t *out, size_t nblocks)
{
    (void)cipher_state, (void)ghash_state, (void)ctr, (void)y, (void)in, (void)out, (void)nblocks;
}
