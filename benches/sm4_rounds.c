/*
 * What bounds SM4-GCM gfni (issue 19): the 32 SM4 rounds alone, on G interleaved groups
 * of 16 blocks held in registers (csrc/sm4/sm4_x86_gfni.h's rounds, no counters, loads,
 * stores, transposes or GHASH), in ns per group-round.  With G = 1 it is the latency of a
 * round; from G = 5 (the GCM bulk passes) it is the throughput the round sustains, and
 * 65536 / (256 groups * 32 rounds * that) is the SM4-GCM figure at 64 KiB that the rounds
 * alone would allow.
 *
 *   gcc -O3 -std=gnu11 -Icsrc/include -Icsrc benches/sm4_rounds.c -o build/sm4_rounds
 *   build/sm4_rounds 40        # trials; the best of each is printed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#if SLS_ENV_X86
#include "sm4/sm4_x86_gfni.h"

#define TGT SLS_ENV_T_SM4GFNI
#define INLINE static inline __attribute__((always_inline))
DEFINE_ROUNDS(rounds_six, 6)
DEFINE_ROUNDS(rounds_eight, 8)

/* n calls of the rounds on G groups kept in registers between calls. */
#define TIMED(NAME, ROUNDS, G)                                                                   \
    TGT __attribute__((noinline)) static void NAME(const sls_env_sm4_gfni_key *key, void *state, long n) \
    {                                                                                            \
        __m512i x[4 * G];                                                                        \
        for (int i = 0; i < 4 * G; i++)                                                          \
            x[i] = _mm512_loadu_si512((const uint8_t *)state + 64 * i);                          \
        for (long i = 0; i < n; i++)                                                             \
            ROUNDS(key, x);                                                                      \
        for (int i = 0; i < 4 * G; i++)                                                          \
            _mm512_storeu_si512((uint8_t *)state + 64 * i, x[i]);                                \
    }
TIMED(time1, rounds_one, 1)
TIMED(time2, rounds_two, 2)
TIMED(time3, rounds_three, 3)
TIMED(time4, rounds_bulk, 4)
TIMED(time5, rounds_five, 5)
TIMED(time6, rounds_six, 6)
TIMED(time8, rounds_eight, 8)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("gfni")) {
        fprintf(stderr, "sm4_rounds: needs AVX-512 and GFNI\n");
        return 1;
    }
    static void (*const fns[])(const sls_env_sm4_gfni_key *, void *, long) = {time1, time2, time3, time4,
                                                                               time5, time6, time8};
    static const int groups[] = {1, 2, 3, 4, 5, 6, 8};
    static sls_env_sm4_gfni_key key;
    static uint8_t state[8 * 4 * 64];
    for (int i = 0; i < 32; i++) { /* any words do: the timing does not depend on them */
        key.rk[i] = 0x9e3779b9u * (uint32_t)(i + 1);
        key.fold[i] = 0x85ebca6bu * (uint32_t)(i + 1);
    }
    memset(state, 0x5a, sizeof state);
    int trials = argc > 1 ? atoi(argv[1]) : 40;
    double best[7];
    for (int g = 0; g < 7; g++)
        best[g] = 1e9;
    for (int t = 0; t < trials; t++) /* interleaved, so a slow phase of the machine hits all */
        for (int g = 0; g < 7; g++) {
            long n = 1000;
            double t0 = now();
            fns[g](&key, state, n);
            double ns = (now() - t0) / (double)n / (32.0 * groups[g]) * 1e9;
            best[g] = ns < best[g] ? ns : best[g];
        }
    printf("| groups in flight | ns per group-round | SM4-GCM 64 KiB ceiling, GB/s |\n|---:|---:|---:|\n");
    for (int g = 0; g < 7; g++)
        printf("| %d | %.3f | %.2f |\n", groups[g], best[g], 65536.0 / (256 * 32 * best[g]));
    return 0;
}
#else
int main(void)
{
    fprintf(stderr, "sm4_rounds: x86 only\n");
    return 1;
}
#endif
