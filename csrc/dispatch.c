/*
 * The one place that chooses an implementation.
 *
 * CPU features are read once with CPUID and, for the AVX and AVX-512 register
 * files, XGETBV: a CPU may report AVX-512 while the OS has not enabled the zmm
 * state (XCR0 bits 5-7), in which case using it faults (Intel SDM vol. 1, 13.3 and
 * 15.2).  The environment variable SLS_ENVELOPE_DISABLE masks features (a
 * comma-separated list of names from cpu_names below, or "all"), so tests can run
 * every path, and the portable path alone, on one machine.
 *
 * Each algorithm's implementations are listed fastest first; the first whose parts
 * all pass their probes is the default.  The choice is made once per key, at
 * sls_env_aead_new(), as AWS-LC's GCM does.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sls_env_testing.h"

#if SLS_ENV_X86
#include <cpuid.h>
#endif
#if SLS_ENV_ARM64
#include <sys/auxv.h>
#endif

static const struct {
    const char *name;
    uint32_t bits;
} cpu_names[] = {
    {"ssse3", SLS_ENV_CPU_SSSE3},
    {"sse4.1", SLS_ENV_CPU_SSE41},
    {"aesni", SLS_ENV_CPU_AESNI},
    {"pclmul", SLS_ENV_CPU_PCLMUL},
    {"avx", SLS_ENV_CPU_AVX},
    {"avx2", SLS_ENV_CPU_AVX2},
    {"avx512f", SLS_ENV_CPU_AVX512F},
    {"avx512bw", SLS_ENV_CPU_AVX512BW},
    {"avx512vl", SLS_ENV_CPU_AVX512VL},
    {"avx512dq", SLS_ENV_CPU_AVX512DQ},
    {"avx512vbmi", SLS_ENV_CPU_AVX512VBMI},
    {"vaes", SLS_ENV_CPU_VAES},
    {"vpclmulqdq", SLS_ENV_CPU_VPCLMUL},
    {"gfni", SLS_ENV_CPU_GFNI},
    {"bmi2", SLS_ENV_CPU_BMI2},
    {"aes", SLS_ENV_CPU_ARM_AES}, /* ARM64 */
    {"pmull", SLS_ENV_CPU_ARM_PMULL},
    {"sm4", SLS_ENV_CPU_ARM_SM4},
};

#if SLS_ENV_X86
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t probe_cpu(void)
{
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (c & (1u << 9)) f |= SLS_ENV_CPU_SSSE3;
    if (c & (1u << 19)) f |= SLS_ENV_CPU_SSE41;
    if (c & (1u << 25)) f |= SLS_ENV_CPU_AESNI;
    if (c & (1u << 1)) f |= SLS_ENV_CPU_PCLMUL;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    int ymm_ok = osxsave && (xcr0 & 0x6) == 0x6;     /* SSE and AVX state */
    int zmm_ok = ymm_ok && (xcr0 & 0xE0) == 0xE0;   /* opmask, ZMM_Hi256, Hi16_ZMM */
    if (avx && ymm_ok) f |= SLS_ENV_CPU_AVX;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (b & (1u << 8)) f |= SLS_ENV_CPU_BMI2;
        if (ymm_ok) {
            if (b & (1u << 5)) f |= SLS_ENV_CPU_AVX2;
            /* VAES and VPCLMULQDQ on ymm need only the AVX state. */
            if (c & (1u << 9)) f |= SLS_ENV_CPU_VAES;
            if (c & (1u << 10)) f |= SLS_ENV_CPU_VPCLMUL;
            if (c & (1u << 8)) f |= SLS_ENV_CPU_GFNI;
        }
        if (zmm_ok && (b & (1u << 16))) {
            f |= SLS_ENV_CPU_AVX512F;
            if (b & (1u << 30)) f |= SLS_ENV_CPU_AVX512BW;
            if (b & (1u << 31)) f |= SLS_ENV_CPU_AVX512VL;
            if (b & (1u << 17)) f |= SLS_ENV_CPU_AVX512DQ;
            if (c & (1u << 1)) f |= SLS_ENV_CPU_AVX512VBMI;
        }
    }
    /* GFNI's legacy SSE form needs no AVX; we only use its VEX/EVEX forms. */
    if (!ymm_ok) f &= ~(uint32_t)SLS_ENV_CPU_GFNI;
    return f;
}
#elif SLS_ENV_ARM64
/* The kernel reports what EL0 may use (Documentation/arch/arm64/elf_hwcaps.rst);
 * the bit values are those of arch/arm64/include/uapi/asm/hwcap.h. */
static uint32_t probe_cpu(void)
{
    unsigned long hw = getauxval(AT_HWCAP);
    uint32_t f = 0;
    if (hw & (1ul << 3)) f |= SLS_ENV_CPU_ARM_AES;   /* HWCAP_AES */
    if (hw & (1ul << 4)) f |= SLS_ENV_CPU_ARM_PMULL; /* HWCAP_PMULL */
    if (hw & (1ul << 19)) f |= SLS_ENV_CPU_ARM_SM4;  /* HWCAP_SM4 */
    return f;
}
#else
static uint32_t probe_cpu(void) { return 0; }
#endif

static uint32_t disabled_by_env(void)
{
    const char *s = getenv("SLS_ENVELOPE_DISABLE");
    uint32_t off = 0;
    if (s == NULL)
        return 0;
    while (*s) {
        size_t n = strcspn(s, ", ");
        if (n == 3 && memcmp(s, "all", 3) == 0)
            off = ~(uint32_t)0;
        else if (n == 6 && memcmp(s, "avx512", 6) == 0)
            off |= SLS_ENV_CPU_AVX512F | SLS_ENV_CPU_AVX512BW | SLS_ENV_CPU_AVX512VL |
                   SLS_ENV_CPU_AVX512DQ | SLS_ENV_CPU_AVX512VBMI;
        for (size_t i = 0; i < sizeof cpu_names / sizeof cpu_names[0]; i++)
            if (strlen(cpu_names[i].name) == n && memcmp(s, cpu_names[i].name, n) == 0)
                off |= cpu_names[i].bits;
        s += n;
        while (*s == ',' || *s == ' ')
            s++;
    }
    return off;
}

/* Computed once; a race only computes the same value twice. */
static uint32_t cpu_cache;
static int cpu_ready;

uint32_t sls_env_cpu(void)
{
    if (__atomic_load_n(&cpu_ready, __ATOMIC_ACQUIRE))
        return cpu_cache;
    uint32_t f = probe_cpu() & ~disabled_by_env();
    __atomic_store_n(&cpu_cache, f, __ATOMIC_RELAXED);
    __atomic_store_n(&cpu_ready, 1, __ATOMIC_RELEASE);
    return f;
}

/* ---- the GHASH product form of vaes512's main loop ------------------------------
 *
 * Its 32 products per iteration run beside 8 x rounds zmm VAESENCs.  On AMD's Zen 4 (the
 * EPYC of issue 19) each zmm VPCLMULQDQ takes about a cycle from the VAESENCs
 * (benches/vaes_clmul_ports.c), so Karatsuba's three CLMULs per four blocks instead of
 * four pay despite a shuffle and an XOR more per register (0.97-0.99x the time sealing,
 * 0.98-0.99x opening at 16 KiB - 1 MiB, docs/BENCHMARKS.md).  On Intel's Sapphire
 * Rapids class (the Xeon VM of docs/BENCHMARKS.md, "family 6 model 167") VAESENC zmm
 * issues on port 0 and VPCLMULQDQ zmm on port 5: 0-28 CLMULs per 112 VAESENCs cost
 * nothing there, while Karatsuba's shuffles and XORs compete for ports 0 and 5.  There
 * schoolbook takes 0.965-0.986x the time of Karatsuba sealing and 0.996-0.999x opening
 * at 16 KiB - 1 MiB, 0.98-0.99x at 1 KiB (benches/c_ab.py, 11 alternating rounds, quiet
 * machine).  So AMD gets Karatsuba, every other vendor schoolbook (key setup then skips
 * the kara table).  The vendor is read once; a test may force either form
 * (sls_env_testing_ghash_form) so that both run on any CPU. */
#if SLS_ENV_X86
static int probe_ghash_form(void)
{
    unsigned a = 0, b = 0, c = 0, d = 0; /* GCC -O1 cannot see __get_cpuid set them */
    /* "AuthenticAMD" in EBX, EDX, ECX of leaf 0. */
    if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u)
        return SLS_ENV_GHASH_KARATSUBA;
    return SLS_ENV_GHASH_SCHOOLBOOK;
}
#else
static int probe_ghash_form(void) { return SLS_ENV_GHASH_SCHOOLBOOK; }
#endif

/* -1: not probed yet / not forced. */
static int ghash_form_cpu = -1;
static int ghash_form_forced = -1;

int sls_env_ghash_form(void)
{
    int f = __atomic_load_n(&ghash_form_forced, __ATOMIC_RELAXED);
    if (f >= 0)
        return f;
    f = __atomic_load_n(&ghash_form_cpu, __ATOMIC_RELAXED);
    if (f < 0) {
        f = probe_ghash_form();
        __atomic_store_n(&ghash_form_cpu, f, __ATOMIC_RELAXED);
    }
    return f;
}

int sls_env_testing_ghash_form(int form)
{
    if (form == -1 || form == SLS_ENV_GHASH_SCHOOLBOOK || form == SLS_ENV_GHASH_KARATSUBA)
        __atomic_store_n(&ghash_form_forced, form, __ATOMIC_RELAXED);
    return sls_env_ghash_form();
}

const char *sls_env_cpu_features(void)
{
    static char buf[256];
    static int done;
    if (__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        return buf;
    char tmp[256] = "";
    size_t used = 0;
    uint32_t f = sls_env_cpu();
    for (size_t i = 0; i < sizeof cpu_names / sizeof cpu_names[0]; i++) {
        if (!(f & cpu_names[i].bits))
            continue;
        size_t n = strlen(cpu_names[i].name);
        if (used + n + 2 >= sizeof tmp)
            break;
        if (used)
            tmp[used++] = ',';
        memcpy(tmp + used, cpu_names[i].name, n);
        used += n;
        tmp[used] = 0;
    }
    memcpy(buf, tmp, sizeof buf);
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    return buf;
}

/* ---- the implementations, fastest first ---------------------------------- */

/* Stitched CTR+GHASH routines (csrc/gcm/aesgcm_<impl>.c). */
extern SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_vaes512;
extern SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_vaes256;
extern SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_aesni;
extern SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_sm4gcm_gfni;

extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_vaes512; /* csrc/aes/ */
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_vaes256;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_aesni;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_gfni; /* csrc/sm4/ */
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_gfni256;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_vaes256;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_aesni;
extern SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_vpclmul512; /* csrc/ghash/ */
extern SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_vpclmul256;
extern SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_pclmul;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_armv8; /* ARM64 */
extern SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_pmull;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_sm4e;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_armv8;

/* AES-GCM: VAES + VPCLMULQDQ on zmm (AVX-512), the same on ymm for AVX2-only CPUs with
 * VAES, AES-NI + PCLMULQDQ on xmm, then the portable bitsliced code.  All but
 * portable are stitched. */
static const sls_env_gcm_impl aesgcm_vaes512 = {
    "vaes512", SLS_ENV_AES_GCM, &sls_env_aes_vaes512, &sls_env_ghash_vpclmul512,
    &sls_env_aesgcm_vaes512,
};
static const sls_env_gcm_impl aesgcm_vaes256 = {
    "vaes256", SLS_ENV_AES_GCM, &sls_env_aes_vaes256, &sls_env_ghash_vpclmul256,
    &sls_env_aesgcm_vaes256,
};
static const sls_env_gcm_impl aesgcm_aesni = {
    "aesni", SLS_ENV_AES_GCM, &sls_env_aes_aesni, &sls_env_ghash_pclmul,
    &sls_env_aesgcm_aesni,
};
/* ARM64: AESE/AESMC eight blocks in flight, PMULL GHASH; gcm.c runs CTR then GHASH
 * in chunks (no stitched routine yet). */
static const sls_env_gcm_impl aesgcm_armv8 = {
    "armv8", SLS_ENV_AES_GCM, &sls_env_aes_armv8, &sls_env_ghash_pmull, NULL,
};
static const sls_env_gcm_impl aesgcm_portable = {
    "portable", SLS_ENV_AES_GCM, &sls_env_aes_portable, &sls_env_ghash_portable, NULL,
};

/* SM4-GCM: the S-box through GFNI on zmm, a whole message per call with E(K, J0) in
 * its first pass and the output and GHASH of each pass inside the next pass's rounds
 * (csrc/gcm/sm4gcm_gfni.c);
 * then, for CPUs without AVX-512, the S-box through GFNI on ymm, through VAES's
 * AESENCLAST on ymm, through AESENCLAST on xmm halves, and portable, for all of which
 * gcm.c runs CTR then GHASH over 4 KiB chunks.  The ymm paths take the ymm GHASH:
 * every CPU known to have GFNI or VAES on ymm also has VPCLMULQDQ there, and one
 * without it falls through to `aesni`. */
static const sls_env_gcm_impl sm4gcm_gfni = {
    "gfni", SLS_ENV_SM4_GCM, &sls_env_sm4_gfni, &sls_env_ghash_vpclmul512, &sls_env_sm4gcm_gfni,
};
static const sls_env_gcm_impl sm4gcm_gfni256 = {
    "gfni256", SLS_ENV_SM4_GCM, &sls_env_sm4_gfni256, &sls_env_ghash_vpclmul256, NULL,
};
static const sls_env_gcm_impl sm4gcm_vaes256 = {
    "vaes256", SLS_ENV_SM4_GCM, &sls_env_sm4_vaes256, &sls_env_ghash_vpclmul256, NULL,
};
static const sls_env_gcm_impl sm4gcm_aesni = {
    "aesni", SLS_ENV_SM4_GCM, &sls_env_sm4_aesni, &sls_env_ghash_pclmul, NULL,
};
/* ARM64: SM4E eight blocks in flight, PMULL GHASH, CTR then GHASH in chunks. */
static const sls_env_gcm_impl sm4gcm_sm4e = {
    "sm4e", SLS_ENV_SM4_GCM, &sls_env_sm4_sm4e, &sls_env_ghash_pmull, NULL,
};
/* ARM64 without the SM4 instructions: the S-box through AESE (csrc/sm4/sm4_armv8.c), named
 * like its AES-GCM sibling as x86's `aesni` is; after `sm4e`, so the default only where
 * HWCAP_AES is set and HWCAP_SM4 is not.  It runs in fewer instructions per block than
 * `portable` (docs/BENCHMARKS.md, ARM64). */
static const sls_env_gcm_impl sm4gcm_armv8 = {
    "armv8", SLS_ENV_SM4_GCM, &sls_env_sm4_armv8, &sls_env_ghash_pmull, NULL,
};
static const sls_env_gcm_impl sm4gcm_portable = {
    "portable", SLS_ENV_SM4_GCM, &sls_env_sm4_portable, &sls_env_ghash_portable, NULL,
};

static const sls_env_gcm_impl *const aes_impls[] = {
    &aesgcm_vaes512,
    &aesgcm_vaes256,
    &aesgcm_aesni,
    &aesgcm_armv8,
    &aesgcm_portable,
};
static const sls_env_gcm_impl *const sm4_impls[] = {
    &sm4gcm_gfni,
    &sm4gcm_gfni256,
    &sm4gcm_vaes256,
    &sm4gcm_aesni,
    &sm4gcm_sm4e,
    &sm4gcm_armv8,
    &sm4gcm_portable,
};

static const sls_env_gcm_impl *const *impls_of(int alg, size_t *count)
{
    switch (alg) {
    case SLS_ENV_AES_GCM:
        *count = sizeof aes_impls / sizeof aes_impls[0];
        return aes_impls;
    case SLS_ENV_SM4_GCM:
        *count = sizeof sm4_impls / sizeof sm4_impls[0];
        return sm4_impls;
    default:
        *count = 0;
        return NULL;
    }
}

static int runs_here(const sls_env_gcm_impl *impl)
{
    return impl->cipher->supported() && impl->ghash->supported();
}

int sls_env_impl_count_all(int alg)
{
    size_t n;
    impls_of(alg, &n);
    return (int)n;
}

const char *sls_env_impl_name_all(int alg, int index)
{
    size_t n;
    const sls_env_gcm_impl *const *list = impls_of(alg, &n);
    if (index < 0 || (size_t)index >= n)
        return NULL;
    return list[index]->name;
}

int sls_env_impl_count(int alg)
{
    size_t n;
    const sls_env_gcm_impl *const *list = impls_of(alg, &n);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += runs_here(list[i]);
    return k;
}

const char *sls_env_impl_name(int alg, int index)
{
    size_t n;
    const sls_env_gcm_impl *const *list = impls_of(alg, &n);
    for (size_t i = 0; i < n; i++) {
        if (!runs_here(list[i]))
            continue;
        if (index-- == 0)
            return list[i]->name;
    }
    return NULL;
}

const sls_env_gcm_impl *sls_env_dispatch_find(int alg, const char *name)
{
    size_t n;
    const sls_env_gcm_impl *const *list = impls_of(alg, &n);
    for (size_t i = 0; i < n; i++) {
        if (!runs_here(list[i]))
            continue;
        if (name == NULL || name[0] == 0 || strcmp(name, list[i]->name) == 0)
            return list[i];
    }
    return NULL;
}
