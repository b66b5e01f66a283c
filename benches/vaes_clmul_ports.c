/*
 * What bounds AES-256-GCM vaes512 (issue 19): do zmm VPCLMULQDQs run beside the zmm
 * VAESENCs or take time from them?  One "iteration" is the AES work of the kernel's main
 * loop on 32 blocks (eight independent zmm chains of 14 VAESENCs, 112 in all, as in
 * csrc/gcm/aesgcm_vaes512.c) plus m zmm VPCLMULQDQs per round (14 m in all), each on
 * its own operands (a table of 56 "powers" in memory, as the kernel's) and summed into
 * four accumulators.  No loads of data, no stores, no counters, no reduction.
 *
 * If the two ran on separate pipes, the time per iteration would not move until the
 * CLMULs' own throughput bound; the kernel's loop does 34 per iteration (32 products,
 * schoolbook, plus 2 for the reduction), 26 with Karatsuba.  ns per iteration times the
 * clock (~3.6 GHz on the Zen 4 VM, no cycle counter there) gives cycles.
 *
 *   gcc -O3 -std=gnu11 benches/vaes_clmul_ports.c -o build/vaes_clmul_ports
 *   build/vaes_clmul_ports 7        # trials; the best of each is printed
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,vaes,vpclmulqdq"), noinline))

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* One product of operand xs[i] by table entry e into accumulator i & 3. */
#define CL(i, e, imm)                                                                            \
    acc[(i) & 3] = _mm512_xor_si512(acc[(i) & 3], _mm512_clmulepi64_epi128(xs[(i) & 7],          \
                                                                             _mm512_load_si512(hp + (e)), imm))

/* ns per iteration with M CLMULs per round; the empty asm makes the operands new each
 * iteration, so no product is computed once and reused. */
#define TIMED(M)                                                                                  \
    TGT static double run##M(const __m512i *hp, long n)                                           \
    {                                                                                             \
        __m512i b[8], xs[8], acc[4];                                                              \
        for (int j = 0; j < 8; j++) {                                                             \
            b[j] = _mm512_set1_epi32(j + 1);                                                      \
            xs[j] = _mm512_set1_epi32(3 * j + 1);                                                 \
        }                                                                                         \
        for (int j = 0; j < 4; j++)                                                               \
            acc[j] = _mm512_setzero_si512();                                                      \
        const __m512i key = _mm512_set1_epi32(7);                                                 \
        double t0 = now_ns();                                                                     \
        for (long i = 0; i < n; i++) {                                                            \
            _Pragma("GCC unroll 14") for (int r = 0; r < 14; r++)                                 \
            {                                                                                     \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) b[j] =                        \
                    _mm512_aesenc_epi128(b[j], key);                                              \
                if (M >= 1)                                                                       \
                    CL(r, 4 * r, 0x00);                                                           \
                if (M >= 2)                                                                       \
                    CL(r + 3, 4 * r + 1, 0x11);                                                   \
                if (M >= 3)                                                                       \
                    CL(r + 5, 4 * r + 2, 0x01);                                                   \
            }                                                                                     \
            for (int j = 0; j < 8; j++)                                                           \
                __asm__("" : "+v"(xs[j]));                                                        \
        }                                                                                         \
        double t = now_ns() - t0;                                                                 \
        __m512i s = _mm512_xor_si512(_mm512_xor_si512(acc[0], acc[1]), _mm512_xor_si512(acc[2], acc[3])); \
        for (int j = 0; j < 8; j++)                                                               \
            s = _mm512_xor_si512(s, b[j]);                                                        \
        volatile int sink = _mm_cvtsi128_si32(_mm512_castsi512_si128(s));                         \
        (void)sink;                                                                               \
        return t / (double)n;                                                                     \
    }

TIMED(0)
TIMED(1)
TIMED(2)
TIMED(3)

int main(int argc, char **argv)
{
    int trials = argc > 1 ? atoi(argv[1]) : 7;
    int *words = aligned_alloc(64, 56 * 64);
    if (!words)
        return 1;
    for (int j = 0; j < 56 * 16; j++)
        words[j] = 7 * (j / 16) + 5;
    const __m512i *table = (const __m512i *)words;
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    const long n = 300000;
    for (int t = 0; t < trials; t++) {
        double r[4] = {run0(table, n), run1(table, n), run2(table, n), run3(table, n)};
        for (int m = 0; m < 4; m++)
            best[m] = r[m] < best[m] ? r[m] : best[m];
    }
    printf("| zmm VPCLMULQDQ per 112 zmm VAESENC | ns per iteration (best of %d) | ns per extra CLMUL |\n|---:|---:|---:|\n", trials);
    for (int m = 0; m < 4; m++)
        printf("| %d | %.1f | %.2f |\n", 14 * m, best[m], m ? (best[m] - best[0]) / (14.0 * m) : 0.0);
    free(words);
    return 0;
}

#else
int main(void)
{
    puts("x86-64 only");
    return 0;
}
#endif
