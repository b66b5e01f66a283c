/*
 * The driver of benches/arm64_insn_count.py --dynamic: one part of the kernel over
 * `nblocks` blocks, nothing else, so that the difference between two runs' executed
 * instruction counts (qemu-aarch64 -singlestep -d exec,nochain logs one line per
 * instruction) divided by the difference in blocks is that part's instructions per
 * 16-byte block, loop overheads, transposes and tails included.
 *
 *   arm64_insn_driver PART NBLOCKS
 *   PART: aes-armv8 aes-portable (AES-128 CTR), sm4e sm4-armv8 sm4-portable (SM4 CTR),
 *         ghash-pmull ghash-portable (GHASH update)
 *
 * Built with the kernel's sources (the parts are hidden symbols of the same link).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_armv8, sls_env_aes_portable,
    sls_env_sm4_sm4e, sls_env_sm4_armv8, sls_env_sm4_portable;
extern SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_pmull, sls_env_ghash_portable;

static const struct {
    const char *name;
    const sls_env_block_cipher *cipher;
    const sls_env_ghash_impl *ghash;
} parts[] = {
    {"aes-armv8", &sls_env_aes_armv8, NULL},
    {"aes-portable", &sls_env_aes_portable, NULL},
    {"sm4e", &sls_env_sm4_sm4e, NULL},
    {"sm4-armv8", &sls_env_sm4_armv8, NULL},
    {"sm4-portable", &sls_env_sm4_portable, NULL},
    {"ghash-pmull", NULL, &sls_env_ghash_pmull},
    {"ghash-portable", NULL, &sls_env_ghash_portable},
};

static SLS_ENV_ALIGN(64) uint8_t state[SLS_ENV_CIPHER_STATE_SIZE > SLS_ENV_GHASH_STATE_SIZE
                                           ? SLS_ENV_CIPHER_STATE_SIZE
                                           : SLS_ENV_GHASH_STATE_SIZE];

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PART NBLOCKS\n", argv[0]);
        return 2;
    }
    size_t n = strtoul(argv[2], NULL, 0);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (strcmp(argv[1], parts[i].name) != 0)
            continue;
        uint8_t key[16] = {1}, ctr[16] = {2}, y[16] = {0};
        uint8_t *buf = calloc(n ? n : 1, 16);
        if (buf == NULL)
            return 1;
        if (parts[i].cipher) {
            if (!parts[i].cipher->supported() || parts[i].cipher->init(state, key, 16) != SLS_ENV_OK)
                return 3;
            parts[i].cipher->ctr32(state, ctr, buf, buf, n);
        } else {
            if (!parts[i].ghash->supported())
                return 3;
            parts[i].ghash->init(state, key);
            parts[i].ghash->update(state, y, buf, n);
        }
        /* Use the result, so no part of the work is dead code. */
        printf("%02x%02x\n", n ? buf[16 * n - 1] : 0, y[0]);
        free(buf);
        return 0;
    }
    fprintf(stderr, "unknown part %s\n", argv[1]);
    return 2;
}
