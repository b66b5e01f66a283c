/*
 * Internal interfaces of the C kernel: how implementations plug in.
 *
 * There are three kinds of parts, each in files named <prim>_<impl>.c as BearSSL
 * does:
 *   - a block cipher (csrc/aes/, csrc/sm4/): key schedule, raw blocks, CTR keystream;
 *   - a GHASH (csrc/ghash/): multiplication by H in GF(2^128);
 *   - optionally a stitched CTR+GHASH bulk routine for one cipher/GHASH pair
 *     (Intel's GCM white paper, Gueron & Kounavis, "Intel Carry-Less Multiplication
 *     Instruction and its Usage for Computing the GCM Mode", 2010/2014).
 * dispatch.c lists the combinations (sls_env_gcm_impl) fastest first and is the one
 * place that chooses; csrc/gcm/gcm.c runs SP 800-38D over whatever was chosen, and
 * csrc/gcm/records.c runs many messages per call (batches, and the records of the
 * batch format) through gcm.c's one-message steps declared below.
 *
 * Each hardware part has a _get()-style probe (`supported`) that looks at the CPU
 * features dispatch.c found (CPUID and XGETBV), and enables its instruction sets per
 * function with __attribute__((target(...))), never for the whole build.
 */
#ifndef SLS_ENV_INTERNAL_H
#define SLS_ENV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sls_env.h"

#if defined(__GNUC__) || defined(__clang__)
#define SLS_ENV_HIDDEN __attribute__((visibility("hidden")))
#define SLS_ENV_ALIGN(n) __attribute__((aligned(n)))
#else
#define SLS_ENV_HIDDEN
#define SLS_ENV_ALIGN(n)
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SLS_ENV_X86 1
#else
#define SLS_ENV_X86 0
#endif

#if defined(__aarch64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define SLS_ENV_ARM64 1
#else
#define SLS_ENV_ARM64 0
#endif

/* Opaque per-key state sizes.  Each implementation stores its expanded key (round
 * keys, bitsliced key schedule, broadcast round keys...) in the first, and its
 * table of powers of H in the second; both are 64-byte aligned. */
#define SLS_ENV_CIPHER_STATE_SIZE 2048
#define SLS_ENV_GHASH_STATE_SIZE 2048

/* ---- CPU features (dispatch.c) ---------------------------------------------- */
#define SLS_ENV_CPU_SSSE3 (1u << 0)
#define SLS_ENV_CPU_SSE41 (1u << 1)
#define SLS_ENV_CPU_AESNI (1u << 2)
#define SLS_ENV_CPU_PCLMUL (1u << 3)
#define SLS_ENV_CPU_AVX (1u << 4)      /* CPUID and OS-enabled ymm state (XCR0) */
#define SLS_ENV_CPU_AVX2 (1u << 5)
#define SLS_ENV_CPU_AVX512F (1u << 6)  /* CPUID and OS-enabled zmm/opmask state */
#define SLS_ENV_CPU_AVX512BW (1u << 7)
#define SLS_ENV_CPU_AVX512VL (1u << 8)
#define SLS_ENV_CPU_AVX512DQ (1u << 9)
#define SLS_ENV_CPU_VAES (1u << 10)
#define SLS_ENV_CPU_VPCLMUL (1u << 11)
#define SLS_ENV_CPU_GFNI (1u << 12)
#define SLS_ENV_CPU_BMI2 (1u << 13)
#define SLS_ENV_CPU_AVX512VBMI (1u << 14)
/* ARM64, from getauxval(AT_HWCAP) (Linux arch/arm64 uapi hwcap.h). */
#define SLS_ENV_CPU_ARM_AES (1u << 15)
#define SLS_ENV_CPU_ARM_PMULL (1u << 16)
#define SLS_ENV_CPU_ARM_SM4 (1u << 17)

/* Features found once (CPUID, XGETBV), less any named in SLS_ENVELOPE_DISABLE. */
SLS_ENV_HIDDEN uint32_t sls_env_cpu(void);
/* 1 if every feature in mask is present. */
static inline int sls_env_cpu_has(uint32_t mask) { return (sls_env_cpu() & mask) == mask; }

/* How aesgcm_vaes512.c's main loop multiplies for GHASH (dispatch.c chooses from the CPU's
 * vendor; ghash_x86_vpclmul.h records the choice in each key's table): schoolbook, four
 * zmm VPCLMULQDQs per four blocks, or Karatsuba, three plus a shuffle and an XOR. */
#define SLS_ENV_GHASH_SCHOOLBOOK 0
#define SLS_ENV_GHASH_KARATSUBA 1
/* The form for keys set up from now on: the CPU's, unless a test forced one
 * (sls_env_testing_ghash_form, sls_env_testing.h). */
SLS_ENV_HIDDEN int sls_env_ghash_form(void);

/* ---- parts ------------------------------------------------------------------ */

typedef struct sls_env_block_cipher {
    const char *name;
    /* The probe: nonzero if this CPU (and OS) can run it. */
    int (*supported)(void);
    /* Expand key into state (SLS_ENV_CIPHER_STATE_SIZE bytes, 64-byte aligned).
     * Returns SLS_ENV_OK or SLS_ENV_ERR_KEY_SIZE. */
    int (*init)(void *state, const uint8_t *key, size_t key_len);
    /* ECB-encrypt nblocks blocks (used for H, E(K, J0) and tests). */
    void (*ecb)(const void *state, const uint8_t *in, uint8_t *out, size_t nblocks);
    /* CTR with a 32-bit big-endian counter in the last four bytes of ctr (SP 800-38D
     * inc32): out[i] = in[i] ^ E(K, ctr + i) for i < nblocks.  in == out is allowed;
     * buffers need no alignment.  Callers guarantee the low 32 bits of ctr plus
     * nblocks do not exceed 2^32 (no wrap), which a 96-bit nonce GCM always meets. */
    void (*ctr32)(const void *state, const uint8_t ctr[16], const uint8_t *in, uint8_t *out,
                  size_t nblocks);
} sls_env_block_cipher;

typedef struct sls_env_ghash_impl {
    const char *name;
    int (*supported)(void);
    /* Precompute from H (as 16 bytes, GCM byte order) into state
     * (SLS_ENV_GHASH_STATE_SIZE bytes, 64-byte aligned). */
    void (*init)(void *state, const uint8_t h[16]);
    /* y = (...((y ^ X1) * H ^ X2) * H ...) over nblocks whole blocks of data. */
    void (*update)(const void *state, uint8_t y[16], const uint8_t *data, size_t nblocks);
} sls_env_ghash_impl;

/* A stitched CTR + GHASH routine over nblocks whole blocks: the GHASH input is the
 * ciphertext (out when sealing, in when opening).  ctr is the first counter block;
 * y is the GHASH accumulator, updated.  in == out is allowed. */
typedef void (*sls_env_gcm_bulk_fn)(const void *cipher_state, const void *ghash_state,
                                    const uint8_t ctr[16], uint8_t y[16], const uint8_t *in,
                                    uint8_t *out, size_t nblocks);

/* A whole message in one routine: E(K, J0), GHASH of the AAD, of the ciphertext and of
 * the lengths block, CTR over every byte including a partial last block.  tag gets T
 * when sealing and the tag expected when opening (gcm.c compares it in constant time
 * and wipes out on a mismatch).  in == out is allowed. */
typedef void (*sls_env_gcm_msg_fn)(const void *cipher_state, const void *ghash_state,
                                   const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                                   const uint8_t *in, uint8_t *out, size_t len, uint8_t tag[16]);

/* The stitched routines of a cipher/GHASH family (csrc/gcm/<alg>gcm_<impl>.c): either
 * whole-block seal/open, around which gcm.c adds E(K, J0), the AAD, a partial block
 * and the lengths block, or (when the per-message steps cost as much as the blocks of
 * a short message and are worth fusing) whole-message seal_msg/open_msg, which gcm.c
 * then uses for every message. */
typedef struct sls_env_gcm_bulk {
    sls_env_gcm_bulk_fn seal;
    sls_env_gcm_bulk_fn open;
    sls_env_gcm_msg_fn seal_msg; /* NULL: gcm.c composes seal with the steps around it */
    sls_env_gcm_msg_fn open_msg;
} sls_env_gcm_bulk;

typedef struct sls_env_gcm_impl {
    const char *name; /* the name users see: "portable", "aesni", "vaes512", "gfni"... */
    int alg;          /* SLS_ENV_AES_GCM or SLS_ENV_SM4_GCM */
    const sls_env_block_cipher *cipher;
    const sls_env_ghash_impl *ghash;
    const sls_env_gcm_bulk *bulk; /* NULL: gcm.c runs ctr32 and ghash update in chunks */
} sls_env_gcm_impl;

struct sls_env_aead {
    SLS_ENV_ALIGN(64) uint8_t cipher_state[SLS_ENV_CIPHER_STATE_SIZE];
    SLS_ENV_ALIGN(64) uint8_t ghash_state[SLS_ENV_GHASH_STATE_SIZE];
    const sls_env_gcm_impl *impl;
    int alg;
};

/* AES key expansion (csrc/aes/aes_key.c): the 4 (Nr + 1) words of FIPS 197's w[] for a
 * 16-, 24- or 32-byte key, as little-endian integers, with the caller's SubWord (the
 * S-box on each byte of a word).  Returns Nr (10, 12 or 14), or 0 for another key
 * length.  The caller wipes w once it has stored the round keys its own way. */
SLS_ENV_HIDDEN unsigned sls_env_aes_expand_key(const uint8_t *key, size_t key_len, uint32_t w[60],
                                               uint32_t (*sub_word)(uint32_t));

/* GB/T 32907-2016 7.3's system parameter FK and constant CK_i (sm4_key.c), also for
 * the paths that expand keys with instructions of their own (SM4EKEY). */
SLS_ENV_HIDDEN extern const uint32_t sls_env_sm4_fk[4];
SLS_ENV_HIDDEN uint32_t sls_env_sm4_ck(unsigned i);

/* SM4 key expansion (csrc/sm4/sm4_key.c): the 32 round keys of a 128-bit key, with the
 * caller's tau (the S-box on each byte of a word).  Wipes its own intermediates. */
SLS_ENV_HIDDEN void sls_env_sm4_expand_key(const uint8_t key[16], uint32_t rk[32],
                                           uint32_t (*tau)(uint32_t));

/* ---- parts that cannot run on this target --------------------------------------
 * The x86 files still compile elsewhere (ARM64...) and export their parts made of
 * these (unavailable.c): a probe that says no, and entry points dispatch never calls. */
SLS_ENV_HIDDEN int sls_env_unavailable_probe(void);
SLS_ENV_HIDDEN int sls_env_unavailable_init(void *state, const uint8_t *key, size_t key_len);
SLS_ENV_HIDDEN void sls_env_unavailable_blocks(const void *state, const uint8_t *in, uint8_t *out,
                                               size_t nblocks);
SLS_ENV_HIDDEN void sls_env_unavailable_ctr32(const void *state, const uint8_t ctr[16],
                                              const uint8_t *in, uint8_t *out, size_t nblocks);
SLS_ENV_HIDDEN void sls_env_unavailable_ghash_init(void *state, const uint8_t h[16]);
SLS_ENV_HIDDEN void sls_env_unavailable_ghash_update(const void *state, uint8_t y[16],
                                                     const uint8_t *data, size_t nblocks);
SLS_ENV_HIDDEN void sls_env_unavailable_bulk(const void *cipher_state, const void *ghash_state,
                                             const uint8_t ctr[16], uint8_t y[16],
                                             const uint8_t *in, uint8_t *out, size_t nblocks);
#define SLS_ENV_UNAVAILABLE_CIPHER(label)                                                        \
    {label, sls_env_unavailable_probe, sls_env_unavailable_init, sls_env_unavailable_blocks,     \
     sls_env_unavailable_ctr32}
#define SLS_ENV_UNAVAILABLE_GHASH(label)                                                         \
    {label, sls_env_unavailable_probe, sls_env_unavailable_ghash_init,                           \
     sls_env_unavailable_ghash_update}
#define SLS_ENV_UNAVAILABLE_BULK {sls_env_unavailable_bulk, sls_env_unavailable_bulk, NULL, NULL}

/* dispatch.c: the implementation to use for alg (name NULL = fastest available). */
SLS_ENV_HIDDEN const sls_env_gcm_impl *sls_env_dispatch_find(int alg, const char *name);

/* ---- parts registered in dispatch.c (each defined in its own file) ---------- */
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_aes_portable;
extern SLS_ENV_HIDDEN const sls_env_block_cipher sls_env_sm4_portable;
extern SLS_ENV_HIDDEN const sls_env_ghash_impl sls_env_ghash_portable;

/* ---- one message, for records.c (gcm.c) ------------------------------------------ */
/* SLS_ENV_OK, or SLS_ENV_ERR_TOO_LONG if a message or AAD is over SP 800-38D's limit. */
SLS_ENV_HIDDEN int sls_env_gcm_check_lengths(size_t aad_len, size_t msg_len);
/* out = C || T for len bytes of in (lengths already checked; in == out allowed). */
SLS_ENV_HIDDEN void sls_env_gcm_seal(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad,
                                     size_t aad_len, const uint8_t *in, size_t len, uint8_t *out);
/* Open len bytes of ciphertext followed by their tag into out: SLS_ENV_OK, or
 * SLS_ENV_ERR_AUTH with out[0..len) zeroed. */
SLS_ENV_HIDDEN int sls_env_gcm_open(const sls_env_aead *ctx, const uint8_t *nonce, const uint8_t *aad,
                                    size_t aad_len, const uint8_t *in, size_t len, uint8_t *out);
/* util.c: what sls_env_last_error() reports on the calling thread. */
SLS_ENV_HIDDEN void sls_env_set_last_error(int rc);

/* ---- small helpers ------------------------------------------------------------ */
/* Big-endian loads and stores as whole words (memcpy + byte swap compiles to one
 * MOVBE or MOV+BSWAP): byte-by-byte stores followed by a 16-byte load stall on
 * store forwarding in the per-message GCM code. */
static inline uint32_t sls_env_load_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#elif !defined(__GNUC__)
    v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
#endif
    return v;
}
static inline void sls_env_store_be32(uint8_t *p, uint32_t v)
{
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
#elif defined(__GNUC__)
    memcpy(p, &v, 4);
#else
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
#endif
}
static inline uint64_t sls_env_load_be64(const uint8_t *p)
{
    return ((uint64_t)sls_env_load_be32(p) << 32) | sls_env_load_be32(p + 4);
}
static inline void sls_env_store_be64(uint8_t *p, uint64_t v)
{
    sls_env_store_be32(p, (uint32_t)(v >> 32));
    sls_env_store_be32(p + 4, (uint32_t)v);
}

#endif /* SLS_ENV_INTERNAL_H */
