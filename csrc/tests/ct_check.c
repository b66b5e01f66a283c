/*
 * Constant-time check in the manner of Adam Langley's ctgrind: run the kernel under
 * valgrind's memcheck with every secret input marked "undefined" through memcheck's
 * client requests.  Memcheck propagates undefinedness through every computation and
 * reports
 *   - "Conditional jump or move depends on uninitialised value(s)": a branch (or
 *     cmov) on secret data, and
 *   - "Use of uninitialised value of size N": a secret used as a memory address,
 *     i.e. a secret table index,
 * which are the two classic sources of timing and cache leaks.  scripts/c-checks.sh
 * runs this program under `valgrind --error-exitcode=...`, so any such report fails
 * the run.  What is public is declassified explicitly (VALGRIND_MAKE_MEM_DEFINED):
 * the ciphertext and tag once sealed (they go on the wire) and the verdict of the
 * tag comparison (the caller learns it anyway).
 *
 * That one declassification inside the library is done without a hook in the
 * library's code: scripts/c-checks.sh compiles csrc/gcm/gcm.c with
 * -Dsls_env_ct_equal=sls_env_ct_equal_declassified, so gcm.c's call goes to the
 * wrapper below, which runs the real comparison (itself checked, with both inputs
 * secret) and marks only its 0/1 result as public.
 *
 * Secrets: the key (so the key schedule, H = E(K, 0) and its power tables are
 * secret), the plaintext, the tag given to decryption, both inputs of
 * sls_env_ct_equal.  Public: lengths, nonces, AAD, ciphertext.
 *
 *   ct_check                    every implementation dispatch reports runnable here
 *   ct_check negative-control   a deliberately leaky table lookup and early-exit
 *                               comparison: the run must be flagged (proves the check
 *                               can fail)
 *
 * Without valgrind the client requests are no-ops and the program just runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <valgrind/memcheck.h>

#include "sls_env_testing.h"

#define SECRET(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))

/* gcm.c calls this (see the header comment) instead of sls_env_ct_equal. */
int sls_env_ct_equal_declassified(const uint8_t *a, const uint8_t *b, size_t len);
int sls_env_ct_equal_declassified(const uint8_t *a, const uint8_t *b, size_t len)
{
    int verdict = sls_env_ct_equal(a, b, len);
    PUBLIC(&verdict, sizeof verdict);
    return verdict;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    /* Public pseudo-random bytes (the values do not matter, only their taint). */
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static int failed;

static void expect(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "ct_check: unexpected result: %s\n", what);
        failed = 1;
    }
}

/* Lengths that reach every code path: empty, partial blocks, one block, the 4-, 8-,
 * 16- and 32-block loops of the wide implementations and their tails, the 4 KiB
 * chunking of the unstitched path. */
static const size_t msg_lens[] = {0, 1, 15, 16, 17, 31, 48, 63, 64, 65, 127, 128, 129,
                                  255, 256, 257, 511, 512, 600, 1024 + 7, 4096 + 13};
static const size_t aad_lens[] = {0, 5, 16, 33};

static void check_impl(int alg, const char *impl)
{
    static const size_t aes_keys[] = {16, 24, 32};
    size_t nkeys = alg == SLS_ENV_AES_GCM ? 3 : 1;
    for (size_t k = 0; k < nkeys; k++) {
        size_t key_len = alg == SLS_ENV_AES_GCM ? aes_keys[k] : 16;
        uint8_t key[32];
        fill(key, key_len, (uint32_t)key_len);
        SECRET(key, key_len);
        sls_env_aead *ctx = NULL;
        int rc = sls_env_aead_new(&ctx, alg, key, key_len, impl);
        expect(rc == SLS_ENV_OK, "aead_new");
        if (rc != SLS_ENV_OK)
            return;

        for (size_t m = 0; m < sizeof msg_lens / sizeof msg_lens[0]; m++) {
            size_t len = msg_lens[m], alen = aad_lens[m % 4];
            uint8_t nonce[12], aad[64], *pt = malloc(len + 1), *ct = malloc(len + 16),
                                         *back = malloc(len + 16);
            fill(nonce, 12, (uint32_t)m);
            fill(aad, alen, (uint32_t)m + 7);
            fill(pt, len, (uint32_t)m + 99);
            SECRET(pt, len);

            rc = sls_env_aead_encrypt(ctx, nonce, aad, alen, pt, len, ct);
            expect(rc == SLS_ENV_OK, "encrypt");
            PUBLIC(ct, len + 16); /* ciphertext and tag go on the wire */

            /* Decrypt with the received tag secret: the comparison must not leak how
             * many bytes matched. */
            SECRET(ct + len, 16);
            rc = sls_env_aead_decrypt(ctx, nonce, aad, alen, ct, len + 16, back);
            expect(rc == SLS_ENV_OK, "decrypt");
            /* A forged tag: the failure path (verify, wipe) too. */
            PUBLIC(ct + len, 16);
            ct[len] ^= 1;
            SECRET(ct + len, 16);
            rc = sls_env_aead_decrypt(ctx, nonce, aad, alen, ct, len + 16, back);
            expect(rc == SLS_ENV_ERR_AUTH, "forged tag rejected");
            /* In place, both ways. */
            memcpy(back, pt, len);
            rc = sls_env_aead_encrypt(ctx, nonce, aad, alen, back, len, back);
            expect(rc == SLS_ENV_OK, "encrypt in place");
            PUBLIC(back, len + 16);
            rc = sls_env_aead_decrypt(ctx, nonce, aad, alen, back, len + 16, back);
            expect(rc == SLS_ENV_OK, "decrypt in place");
            free(pt);
            free(ct);
            free(back);
        }

        /* Batch and records paths over a few messages. */
        size_t lens[3] = {100, 0, 37}, total = 137, failed_index = 0;
        uint8_t nonces[36], in[137], out[137 + 48], plain[137], header[24] = {1, 2, 3};
        fill(nonces, sizeof nonces, 5);
        fill(in, total, 6);
        SECRET(in, total);
        expect(sls_env_aead_encrypt_many(ctx, 3, nonces, header, NULL, 24, 1, in, lens, 0, out) ==
                   SLS_ENV_OK, "encrypt_many");
        PUBLIC(out, sizeof out);
        size_t ct_lens[3] = {116, 16, 53};
        expect(sls_env_aead_decrypt_many(ctx, 3, nonces, header, NULL, 24, 1, out, ct_lens, 0,
                                         plain, &failed_index) == SLS_ENV_OK, "decrypt_many");
        uint8_t prefix[4] = {9, 9, 9, 9}, records[3 * 24 + 137 + 48];
        expect(sls_env_seal_records(ctx, header, 24, 4, prefix, 1000, 3, in, lens, 0, records,
                                    sls_env_fork_generation()) ==
                   SLS_ENV_OK, "seal_records");
        PUBLIC(records, sizeof records);
        const char *one = sls_env_seal_record_scratch(ctx, header, 24, 4, prefix, 2000, in, 100,
                                                      sls_env_fork_generation());
        expect(one != NULL, "seal_record_scratch");
        expect(sls_env_open_record(ctx, records, 24 + 100 + 16, 24, 4) != NULL, "open_record");
        expect(sls_env_open_record_as(ctx, header, records, 24 + 100 + 16, 24, 4) != NULL,
               "open_record_as");

        /* Raw blocks (the hooks the vector tests use). */
        uint8_t blocks[64];
        fill(blocks, sizeof blocks, 8);
        SECRET(blocks, sizeof blocks);
        sls_env_block_encrypt(ctx, blocks, blocks, 4);

        sls_env_aead_free(ctx);
    }
}

/* ---- negative control ----------------------------------------------------------- */

/* Two textbook leaks, compiled only into this driver.  Under valgrind both must be
 * reported, or the check is not looking. */
static const uint8_t leaky_table[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
};

__attribute__((noinline)) static uint8_t leaky_lookup(const uint8_t *secret, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc ^= *(volatile const uint8_t *)&leaky_table[secret[i]]; /* secret index */
    return acc;
}

__attribute__((noinline)) static int leaky_compare(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (*(volatile const uint8_t *)&a[i] != b[i]) /* early exit on a secret */
            return 0;
    return 1;
}

static int negative_control(void)
{
    uint8_t secret[16], other[16];
    fill(secret, 16, 1);
    memcpy(other, secret, 16);
    SECRET(secret, 16);
    SECRET(other, 16);
    uint8_t x = leaky_lookup(secret, 16);
    int same = leaky_compare(secret, other, 16);
    PUBLIC(&x, 1);
    PUBLIC(&same, sizeof same);
    printf("negative control ran (%d, %d): valgrind must have reported both leaks above\n", x, same);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "negative-control") == 0)
        return negative_control();
    int running_on_valgrind = RUNNING_ON_VALGRIND;
    printf("ct_check: %s, cpu features seen [%s]\n",
           running_on_valgrind ? "under valgrind" : "NOT under valgrind (nothing is checked)",
           sls_env_cpu_features());

    /* The comparison alone, both inputs secret. */
    uint8_t a[32], b[32];
    fill(a, 32, 3);
    memcpy(b, a, 32);
    SECRET(a, 32);
    SECRET(b, 32);
    int eq = sls_env_ct_equal(a, b, 32);
    PUBLIC(&eq, sizeof eq);
    expect(eq == 1, "ct_equal");

    for (int alg = SLS_ENV_AES_GCM; alg <= SLS_ENV_SM4_GCM; alg++) {
        const char *alg_name = alg == SLS_ENV_AES_GCM ? "AES-GCM" : "SM4-GCM";
        for (int i = 0; i < sls_env_impl_count(alg); i++) {
            const char *impl = sls_env_impl_name(alg, i);
            printf("  checking %s %s\n", alg_name, impl);
            fflush(stdout);
            check_impl(alg, impl);
        }
        /* Say what was not covered, so the log shows it. */
        for (int i = 0; i < sls_env_impl_count_all(alg); i++) {
            const char *impl = sls_env_impl_name_all(alg, i);
            int ran = 0;
            for (int j = 0; j < sls_env_impl_count(alg); j++)
                ran |= strcmp(sls_env_impl_name(alg, j), impl) == 0;
            if (!ran)
                printf("  NOT covered: %s %s (its instructions are not available here)\n",
                       alg_name, impl);
        }
    }
    printf("ct_check: done%s\n", failed ? " with unexpected results" : "");
    return failed;
}
