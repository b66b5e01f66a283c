/*
 * C-level figures for docs/BENCHMARKS.md: the kernel alone, key set once, no Python.
 *
 *   bash benches/c_bench.sh            # builds build/c_bench with the extension's flags, runs it
 *   build/c_bench sm4 gfni 256 1024    # one implementation, chosen sizes: "size ns" lines
 *                                      # (what benches/c_ab.py alternates between two builds)
 *
 * For every implementation dispatch reports on this CPU: ns per sls_env_aead_encrypt
 * call (the best of 7 rounds, each a few million bytes) and GB/s, for message sizes
 * from 0 to 1 MiB with a 16-byte AAD; then the default AES-GCM implementation on one
 * thread and on two (each its own output buffer), for the scaling of the hardware
 * without the interpreter.
 *
 * SLS_C_BENCH_GHASH_FORM=0|1 in the environment forces vaes512's GHASH product form
 * (schoolbook or Karatsuba, csrc/dispatch.c) for the keys made here, so that both can be
 * timed on either CPU vendor; revisions without the choice ignore it (weak symbol).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sls_env.h"
#include "sls_env_testing.h"

#pragma weak sls_env_testing_ghash_form

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const uint8_t nonce[12] = {0};
static const uint8_t aad[16] = "project/logstore";

/* Best seconds per call over 7 rounds of `iters` calls; `open`: decrypt calls of a
 * ciphertext made here first (authentic, so every call runs to the end). */
static double time_calls_dir(const sls_env_aead *ctx, const uint8_t *in, uint8_t *out, size_t len, long iters,
                             int open)
{
    double best = 1e9;
    uint8_t *sealed = NULL;
    if (open) {
        sealed = malloc(len + 16);
        if (sealed == NULL || sls_env_aead_encrypt(ctx, nonce, aad, sizeof aad, in, len, sealed) != SLS_ENV_OK)
            abort();
    }
    for (int round = 0; round < 7; round++) {
        double t0 = now();
        if (open) {
            for (long i = 0; i < iters; i++)
                if (sls_env_aead_decrypt(ctx, nonce, aad, sizeof aad, sealed, len + 16, out) != SLS_ENV_OK)
                    abort();
        } else {
            for (long i = 0; i < iters; i++)
                sls_env_aead_encrypt(ctx, nonce, aad, sizeof aad, in, len, out);
        }
        double t = (now() - t0) / (double)iters;
        best = t < best ? t : best;
    }
    free(sealed);
    return best;
}

static double time_calls(const sls_env_aead *ctx, const uint8_t *in, uint8_t *out, size_t len, long iters)
{
    return time_calls_dir(ctx, in, out, len, iters, 0);
}

struct job {
    const sls_env_aead *ctx;
    const uint8_t *in;
    size_t len;
    long iters;
};

static void *run_job(void *arg)
{
    const struct job *j = arg;
    uint8_t *out = malloc(j->len + 16);
    memset(out, 0, j->len + 16); /* fault the pages in before timing counts them */
    for (long i = 0; i < j->iters; i++)
        sls_env_aead_encrypt(j->ctx, nonce, aad, sizeof aad, j->in, j->len, out);
    free(out);
    return NULL;
}

/* Best wall time of `threads` threads each making `iters` calls. */
static double time_threads(const struct job *j, int threads)
{
    double best = 1e9;
    for (int round = 0; round < 7; round++) {
        pthread_t t[2];
        double t0 = now();
        for (int i = 0; i < threads; i++)
            pthread_create(&t[i], NULL, run_job, (void *)j);
        for (int i = 0; i < threads; i++)
            pthread_join(t[i], NULL);
        double t1 = now() - t0;
        best = t1 < best ? t1 : best;
    }
    return best;
}

/* `c_bench <aes|sm4>[-open] <impl> <size>...`: best ns per encrypt (-open: decrypt) call
 * for each size, one per line. */
static int cells(int argc, char **argv)
{
    const char *form = getenv("SLS_C_BENCH_GHASH_FORM");
    if (form != NULL && sls_env_testing_ghash_form != NULL)
        sls_env_testing_ghash_form(atoi(form));
    int alg = strncmp(argv[1], "aes", 3) == 0 ? SLS_ENV_AES_GCM : SLS_ENV_SM4_GCM;
    int open = strstr(argv[1], "-open") != NULL;
    uint8_t key[32] = {7};
    sls_env_aead *ctx;
    if (sls_env_aead_new(&ctx, alg, key, alg == SLS_ENV_AES_GCM ? 32 : 16, argv[2]) != SLS_ENV_OK) {
        fprintf(stderr, "c_bench: no %s implementation %s here\n", argv[1], argv[2]);
        return 1;
    }
    int status = 0;
    for (int a = 3; a < argc && status == 0; a++) {
        size_t len = strtoul(argv[a], NULL, 10);
        uint8_t *in = calloc(1, len + 16), *out = calloc(1, len + 16);
        if (in == NULL || out == NULL) {
            status = 1;
        } else {
            long iters = (long)((8 << 20) / (len + 256)) + 1;
            printf("%zu %.1f\n", len, time_calls_dir(ctx, in, out, len, iters, open) * 1e9);
        }
        free(in);
        free(out);
    }
    sls_env_aead_free(ctx);
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 3)
        return cells(argc, argv);
    static const size_t sizes[] = {0, 256, 1024, 1040, 16384, 65536, 1 << 20};
    static const int algs[] = {SLS_ENV_AES_GCM, SLS_ENV_SM4_GCM};
    uint8_t key[32] = {7};
    size_t max = 1 << 20;
    uint8_t *in = malloc(max + 16), *out = malloc(max + 16);
    memset(in, 0x5a, max);
    memset(out, 0, max + 16);

    printf("| algorithm | implementation | size | ns/call | GB/s |\n|---|---|---:|---:|---:|\n");
    for (size_t a = 0; a < 2; a++) {
        int alg = algs[a];
        for (int i = 0; i < sls_env_impl_count(alg); i++) {
            const char *impl = sls_env_impl_name(alg, i);
            sls_env_aead *ctx;
            if (sls_env_aead_new(&ctx, alg, key, alg == SLS_ENV_AES_GCM ? 32 : 16, impl) != SLS_ENV_OK)
                return 1;
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                size_t len = sizes[s];
                int slow = strcmp(impl, "portable") == 0;
                long iters = (long)((slow ? 1 << 20 : 16 << 20) / (len + 256)) + 1;
                double t = time_calls(ctx, in, out, len, iters);
                printf("| %s | %s | %zu | %.1f | %.2f |\n", alg == SLS_ENV_AES_GCM ? "AES-256-GCM" : "SM4-GCM",
                       impl, len, t * 1e9, (double)len / t / 1e9);
            }
            sls_env_aead_free(ctx);
        }
    }

    sls_env_aead *ctx;
    if (sls_env_aead_new(&ctx, SLS_ENV_AES_GCM, key, 32, NULL) != SLS_ENV_OK)
        return 1;
    printf("\n| AES-256-GCM %s, message | 1 thread GB/s | 2 threads GB/s | scaling |\n|---:|---:|---:|---:|\n",
           sls_env_aead_impl(ctx));
    static const size_t thread_sizes[] = {65536, 1 << 20};
    for (size_t s = 0; s < 2; s++) {
        struct job j = {ctx, in, thread_sizes[s], (long)((256u << 20) / thread_sizes[s])};
        double one = time_threads(&j, 1), two = time_threads(&j, 2);
        double bytes = (double)j.len * (double)j.iters;
        printf("| %zu | %.2f | %.2f | %.2fx |\n", j.len, bytes / one / 1e9, 2 * bytes / two / 1e9,
               2 * one / two);
    }
    sls_env_aead_free(ctx);
    free(in);
    free(out);
    return 0;
}
