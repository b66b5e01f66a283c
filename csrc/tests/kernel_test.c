/*
 * The C kernel's own test driver, run under AddressSanitizer and UBSan by
 * scripts/c-checks.sh (and usable without them).  It goes through the public
 * sls_env_ API only, for every implementation dispatch.c reports as running on this
 * CPU (never a hard-coded list, since implementations come and go):
 *
 *   - known answers: FIPS 197 appendix C (AES-128/192/256 single blocks), the GCM
 *     specification's test cases 1, 2, 4, 12 and 16 (McGrew & Viega, "The Galois/
 *     Counter Mode of Operation", appendix B; the same cases NIST's CAVP files
 *     contain), RFC 8998 appendix A.1 (SM4-GCM), GB/T 32907-2016 appendix A
 *     examples 1 and 2 (SM4, the second iterated 10^6 times);
 *   - differential against the "portable" implementation of the same algorithm:
 *     every message length 0..600, every length within 17 bytes of 1, 1.25, 1.5, 2, 4
 *     and 16 KiB, random ones up to 70,000 bytes, three around 256 KiB and one past
 *     1 MiB, random AAD
 *     (and AAD of 1,000 to 4,200 bytes), unaligned buffers, in place, raw blocks;
 *   - the batch API against single calls (per-message, equal and shared lengths),
 *     the records API against single calls and open_records against its inputs
 *     (with a flipped byte, a changed header, a short record), the scratch API;
 *   - tag failures: SLS_ENV_ERR_AUTH with every output byte zeroed (single, batch,
 *     records);
 *   - bad arguments and lengths returning their documented codes;
 *   - all of it once per GHASH product form where an implementation has two (vaes512:
 *     schoolbook and Karatsuba, sls_env_testing_ghash_form), whichever the CPU picks.
 *
 * Usage: kernel_test [seed]   (the seed is printed, so a failure can be replayed).
 * Exit status 0 when every check passed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sls_env_testing.h"

static unsigned long checks, failures;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        checks++;                                                                         \
        if (!(cond)) {                                                                    \
            failures++;                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            if (failures > 50) {                                                          \
                fprintf(stderr, "too many failures, stopping\n");                         \
                exit(1);                                                                  \
            }                                                                             \
        }                                                                                 \
    } while (0)

/* ---- deterministic randomness (xorshift64*; the seed is printed) --------------- */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static void rnd_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static const char *alg_name(int alg) { return alg == SLS_ENV_AES_GCM ? "AES-GCM" : "SM4-GCM"; }

static sls_env_aead *must_new(int alg, const uint8_t *key, size_t key_len, const char *impl)
{
    sls_env_aead *ctx = NULL;
    int rc = sls_env_aead_new(&ctx, alg, key, key_len, impl);
    if (rc != SLS_ENV_OK || ctx == NULL) {
        fprintf(stderr, "FATAL: sls_env_aead_new(%s, %zu-byte key, %s) = %d\n", alg_name(alg),
                key_len, impl ? impl : "(default)", rc);
        exit(1);
    }
    return ctx;
}

/* ---- known answers ----------------------------------------------------------- */

struct block_kat {
    int alg;
    const char *key, *pt, *ct;
    uint64_t iterations; /* 1: one block; more: block = E(K, block) that many times */
    const char *source;
};

static const struct block_kat block_kats[] = {
    {SLS_ENV_AES_GCM, "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "69c4e0d86a7b0430d8cdb78070b4c55a", 1, "FIPS 197 C.1"},
    {SLS_ENV_AES_GCM, "000102030405060708090a0b0c0d0e0f1011121314151617",
     "00112233445566778899aabbccddeeff", "dda97ca4864cdfe06eaf70a0ec0d7191", 1, "FIPS 197 C.2"},
    {SLS_ENV_AES_GCM, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089", 1, "FIPS 197 C.3"},
    {SLS_ENV_SM4_GCM, "0123456789abcdeffedcba9876543210", "0123456789abcdeffedcba9876543210",
     "681edf34d206965e86b3e94f536e4246", 1, "GB/T 32907 A.1"},
    {SLS_ENV_SM4_GCM, "0123456789abcdeffedcba9876543210", "0123456789abcdeffedcba9876543210",
     "595298c7c6fd271f0402f804c33d3f66", 1000000, "GB/T 32907 A.2"},
};

struct gcm_kat {
    int alg;
    const char *key, *iv, *aad, *pt, *ct, *tag, *source;
};

#define GCM_P                                                                              \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e" \
    "2449a6b525b16aedf5aa0de657ba637b39"
#define GCM_A "feedfacedeadbeeffeedfacedeadbeefabaddad2"
#define GCM_IV "cafebabefacedbaddecaf888"

static const struct gcm_kat gcm_kats[] = {
    {SLS_ENV_AES_GCM, "00000000000000000000000000000000", "000000000000000000000000", "", "", "",
     "58e2fccefa7e3061367f1d57a4e7455a", "GCM spec test case 1"},
    {SLS_ENV_AES_GCM, "00000000000000000000000000000000", "000000000000000000000000", "",
     "00000000000000000000000000000000", "0388dace60b6a392f328c2b971b2fe78",
     "ab6e47d42cec13bdf53a67b21257bddf", "GCM spec test case 2"},
    {SLS_ENV_AES_GCM, "feffe9928665731c6d6a8f9467308308", GCM_IV, GCM_A, GCM_P,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac"
     "84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47", "GCM spec test case 4"},
    {SLS_ENV_AES_GCM, "feffe9928665731c6d6a8f9467308308feffe9928665731c", GCM_IV, GCM_A, GCM_P,
     "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c7d773d00c144c525ac619d18c8"
     "4a3f4718e2448b2fe324d9ccda2710",
     "2519498e80f1478f37ba55bd6d27618c", "GCM spec test case 12"},
    {SLS_ENV_AES_GCM, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", GCM_IV,
     GCM_A, GCM_P,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056"
     "828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b", "GCM spec test case 16"},
    {SLS_ENV_SM4_GCM, "0123456789abcdeffedcba9876543210", "00001234567800000000abcd", GCM_A,
     "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccddddddddddddddddeeeeeeeeeeeeeeeeffffffffff"
     "ffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa",
     "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735d82710ca5c22f0ccfa7cbf93d4"
     "96ac15a56834cbcf98c397b4024a2691233b8d",
     "83de3541e4c2b58177e065a9bf7b62ec", "RFC 8998 A.1"},
};

static void known_answers(int alg, const char *impl)
{
    for (size_t k = 0; k < sizeof block_kats / sizeof block_kats[0]; k++) {
        const struct block_kat *v = &block_kats[k];
        if (v->alg != alg)
            continue;
        uint8_t key[32], pt[16], ct[16], out[16];
        size_t klen = unhex(v->key, key);
        unhex(v->pt, pt);
        unhex(v->ct, ct);
        sls_env_aead *ctx = must_new(alg, key, klen, impl);
        if (v->iterations == 1) {
            CHECK(sls_env_block_encrypt(ctx, pt, out, 1) == SLS_ENV_OK, "%s", v->source);
        } else {
            memcpy(out, pt, 16);
            CHECK(sls_env_block_iterate(ctx, out, v->iterations) == SLS_ENV_OK, "%s", v->source);
        }
        CHECK(memcmp(out, ct, 16) == 0, "%s %s: %s", alg_name(alg), impl, v->source);
        sls_env_aead_free(ctx);
    }
    for (size_t k = 0; k < sizeof gcm_kats / sizeof gcm_kats[0]; k++) {
        const struct gcm_kat *v = &gcm_kats[k];
        if (v->alg != alg)
            continue;
        uint8_t key[32], iv[12], aad[64], pt[128], expect[160], out[160], back[128];
        size_t klen = unhex(v->key, key), alen = unhex(v->aad, aad), plen = unhex(v->pt, pt);
        unhex(v->iv, iv);
        unhex(v->ct, expect);
        unhex(v->tag, expect + plen);
        sls_env_aead *ctx = must_new(alg, key, klen, impl);
        CHECK(sls_env_aead_encrypt(ctx, iv, aad, alen, pt, plen, out) == SLS_ENV_OK, "%s", v->source);
        CHECK(memcmp(out, expect, plen + 16) == 0, "%s %s: %s", alg_name(alg), impl, v->source);
        CHECK(sls_env_aead_decrypt(ctx, iv, aad, alen, expect, plen + 16, back) == SLS_ENV_OK,
              "%s %s: %s decrypt", alg_name(alg), impl, v->source);
        CHECK(memcmp(back, pt, plen) == 0, "%s %s: %s decrypt", alg_name(alg), impl, v->source);
        sls_env_aead_free(ctx);
    }
}

/* ---- differential against portable ------------------------------------------- */

static size_t key_len_for(int alg)
{
    static const size_t aes_lens[] = {16, 24, 32};
    return alg == SLS_ENV_AES_GCM ? aes_lens[rnd_below(3)] : 16;
}

/* A context of impl under a random key of alg's size. */
static sls_env_aead *must_new_random(int alg, const char *impl)
{
    uint8_t key[32];
    size_t klen = key_len_for(alg);
    rnd_fill(key, klen);
    return must_new(alg, key, klen, impl);
}

/* One message: impl against ref, with unaligned buffers, then in place, then a
 * tampered copy that must fail with the whole output zeroed. */
static void one_message(sls_env_aead *ref, sls_env_aead *ctx, size_t len, size_t aad_len,
                        const char *what)
{
    size_t off_in = rnd_below(16), off_out = rnd_below(16), off_aad = rnd_below(16);
    uint8_t nonce[12];
    rnd_fill(nonce, 12);
    uint8_t *aad_buf = xmalloc(aad_len + 16), *aad = aad_buf + off_aad;
    rnd_fill(aad, aad_len);
    uint8_t *in_buf = xmalloc(len + 32), *in = in_buf + off_in;
    uint8_t *want = xmalloc(len + 16);
    uint8_t *out_buf = xmalloc(len + 32), *out = out_buf + off_out;
    rnd_fill(in, len);

    CHECK(sls_env_aead_encrypt(ref, nonce, aad, aad_len, in, len, want) == SLS_ENV_OK, "%s", what);
    CHECK(sls_env_aead_encrypt(ctx, nonce, aad, aad_len, in, len, out) == SLS_ENV_OK, "%s", what);
    CHECK(memcmp(out, want, len + 16) == 0, "%s: encrypt len=%zu aad=%zu differs from portable",
          what, len, aad_len);

    /* Decrypt, out of place. */
    uint8_t *back_buf = xmalloc(len + 16), *back = back_buf + rnd_below(16);
    CHECK(sls_env_aead_decrypt(ctx, nonce, aad, aad_len, out, len + 16, back) == SLS_ENV_OK,
          "%s: decrypt len=%zu", what, len);
    CHECK(memcmp(back, in, len) == 0, "%s: decrypt len=%zu round trip", what, len);

    /* In place: encrypt then decrypt in the same (unaligned) buffer. */
    uint8_t *inplace_buf = xmalloc(len + 32), *inplace = inplace_buf + off_in;
    memcpy(inplace, in, len);
    CHECK(sls_env_aead_encrypt(ctx, nonce, aad, aad_len, inplace, len, inplace) == SLS_ENV_OK,
          "%s", what);
    CHECK(memcmp(inplace, want, len + 16) == 0, "%s: in-place encrypt len=%zu", what, len);
    CHECK(sls_env_aead_decrypt(ctx, nonce, aad, aad_len, inplace, len + 16, inplace) == SLS_ENV_OK,
          "%s: in-place decrypt len=%zu", what, len);
    CHECK(memcmp(inplace, in, len) == 0, "%s: in-place decrypt len=%zu", what, len);

    /* Tamper with one bit of ciphertext, tag or AAD: ERR_AUTH and zeroed output. */
    memcpy(inplace, want, len + 16);
    size_t where = rnd_below(len + 16 + aad_len);
    uint8_t bit = (uint8_t)(1u << rnd_below(8));
    if (where < len + 16)
        inplace[where] ^= bit;
    else
        aad[where - len - 16] ^= bit;
    memset(back_buf, 0xA5, len + 16);
    CHECK(sls_env_aead_decrypt(ctx, nonce, aad, aad_len, inplace, len + 16, back) ==
              SLS_ENV_ERR_AUTH,
          "%s: tampered byte %zu of len=%zu aad=%zu accepted", what, where, len, aad_len);
    CHECK(all_zero(back, len), "%s: output not zeroed after tag failure (len=%zu)", what, len);
    CHECK(sls_env_aead_decrypt(ctx, nonce, aad, aad_len, inplace, len + 16, inplace) ==
              SLS_ENV_ERR_AUTH,
          "%s: tampered in place accepted", what);
    CHECK(all_zero(inplace, len), "%s: in-place output not zeroed after tag failure", what);

    free(aad_buf);
    free(in_buf);
    free(want);
    free(out_buf);
    free(back_buf);
    free(inplace_buf);
}

static void differential(int alg, const char *impl, int random_long)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s", alg_name(alg), impl);
    uint8_t key[32];
    size_t klen = key_len_for(alg);
    rnd_fill(key, klen);
    sls_env_aead *ref = must_new(alg, key, klen, "portable");
    sls_env_aead *ctx = must_new(alg, key, klen, impl);
    CHECK(strcmp(sls_env_aead_impl(ctx), impl) == 0, "%s: sls_env_aead_impl = %s", what,
          sls_env_aead_impl(ctx));
    CHECK(sls_env_aead_alg(ctx) == alg, "%s", what);

    for (size_t len = 0; len <= 600; len++)
        one_message(ref, ctx, len, rnd_below(4) == 0 ? 0 : rnd_below(80), what);
    for (int i = 0; i < random_long; i++)
        one_message(ref, ctx, rnd_below(70001), rnd_below(600), what);
    /* Around the whole-group and pass boundaries of the wide paths (64, 80, 96... blocks,
     * where SM4 gfni moves E(K, J0) out of the groups). */
    static const size_t bounds[] = {1024, 1280, 1536, 2048, 4096, 16384};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        for (size_t len = bounds[i] - 17; len <= bounds[i] + 17; len++)
            one_message(ref, ctx, len, rnd_below(40), what);
    /* Long messages: vaes512 opening prefetches from 256 KiB on, up to 4.5 KiB from the
     * end (aesgcm_vaes512.c); past 1 MiB the counter carries into its third byte, which
     * SM4 gfni's byte-sliced passes build from a carry mask (sm4gcm_gfni.c). */
    static const size_t longs[] = {262143, 262144, 262144 + 4608 + 511, 1048576 + 4096 + 5};
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++)
        one_message(ref, ctx, longs[i], rnd_below(40), what);
    /* Long AAD, across the 64-block pieces the fused paths hash it in. */
    for (size_t aad_len = 1000; aad_len <= 4200; aad_len += 13 + aad_len / 8)
        one_message(ref, ctx, rnd_below(1100), aad_len, what);

    /* Raw blocks, unaligned, a few counts (every implementation has an ECB path). */
    for (size_t nb = 0; nb <= 40; nb += 1 + nb / 4) {
        uint8_t *in = xmalloc(nb * 16 + 1), *a = xmalloc(nb * 16 + 1), *b = xmalloc(nb * 16 + 3);
        rnd_fill(in + 1, nb * 16);
        CHECK(sls_env_block_encrypt(ref, in + 1, a, nb) == SLS_ENV_OK, "%s", what);
        CHECK(sls_env_block_encrypt(ctx, in + 1, b + 3, nb) == SLS_ENV_OK, "%s", what);
        CHECK(memcmp(a, b + 3, nb * 16) == 0, "%s: %zu raw blocks differ from portable", what, nb);
        free(in);
        free(a);
        free(b);
    }
    sls_env_aead_free(ref);
    sls_env_aead_free(ctx);
}

/* ---- batch, records, scratch ---------------------------------------------------- */

static void batch_api(int alg, const char *impl)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s batch", alg_name(alg), impl);
    sls_env_aead *ctx = must_new_random(alg, impl);

    for (int round = 0; round < 24; round++) {
        size_t n = 1 + rnd_below(12);
        int equal_lens = round % 3 == 1, shared_aad = round % 4 == 2, equal_aad = round % 4 == 3;
        size_t each = rnd_below(300), aad_each = rnd_below(40);
        size_t *lens = xmalloc(n * sizeof *lens), *aad_lens = xmalloc(n * sizeof *aad_lens);
        size_t total = 0, total_aad = 0;
        for (size_t i = 0; i < n; i++) {
            lens[i] = equal_lens ? each : rnd_below(2000);
            aad_lens[i] = (shared_aad || equal_aad) ? aad_each : rnd_below(40);
            total += lens[i];
            total_aad += shared_aad ? 0 : aad_lens[i];
        }
        if (shared_aad)
            total_aad = aad_each;
        uint8_t *nonces = xmalloc(12 * n), *in = xmalloc(total + 1), *aad = xmalloc(total_aad + 1);
        uint8_t *out = xmalloc(total + 16 * n), *single = xmalloc(total + 16 * n);
        uint8_t *back = xmalloc(total + 1);
        size_t *ct_lens = xmalloc(n * sizeof *ct_lens);
        rnd_fill(nonces, 12 * n);
        rnd_fill(in, total);
        rnd_fill(aad, total_aad);

        const size_t *lens_arg = equal_lens ? NULL : lens;
        const size_t *aad_lens_arg = (shared_aad || equal_aad) ? NULL : aad_lens;
        CHECK(sls_env_aead_encrypt_many(ctx, n, nonces, aad, aad_lens_arg, aad_each, shared_aad, in,
                                        lens_arg, each, out) == SLS_ENV_OK,
              "%s round %d", what, round);
        /* The same messages one by one. */
        size_t pos_in = 0, pos_out = 0, pos_aad = 0;
        for (size_t i = 0; i < n; i++) {
            CHECK(sls_env_aead_encrypt(ctx, nonces + 12 * i, aad + pos_aad, aad_lens[i],
                                       in + pos_in, lens[i], single + pos_out) == SLS_ENV_OK,
                  "%s", what);
            ct_lens[i] = lens[i] + 16;
            pos_in += lens[i];
            pos_out += lens[i] + 16;
            if (!shared_aad)
                pos_aad += aad_lens[i];
        }
        CHECK(memcmp(out, single, total + 16 * n) == 0, "%s round %d: batch != single", what, round);

        size_t failed = 99;
        CHECK(sls_env_aead_decrypt_many(ctx, n, nonces, aad, aad_lens_arg, aad_each, shared_aad,
                                        out, equal_lens ? NULL : ct_lens, each + 16, back,
                                        &failed) == SLS_ENV_OK,
              "%s round %d: decrypt_many", what, round);
        CHECK(memcmp(back, in, total) == 0, "%s round %d: decrypt_many round trip", what, round);

        /* Corrupt message k: failed_index == k and the whole output zeroed. */
        size_t k = rnd_below(n), start = 0;
        for (size_t i = 0; i < k; i++)
            start += ct_lens[i];
        out[start + rnd_below(ct_lens[k])] ^= 0x01;
        memset(back, 0xA5, total + 1);
        CHECK(sls_env_aead_decrypt_many(ctx, n, nonces, aad, aad_lens_arg, aad_each, shared_aad,
                                        out, equal_lens ? NULL : ct_lens, each + 16, back,
                                        &failed) == SLS_ENV_ERR_AUTH,
              "%s round %d: corrupted batch accepted", what, round);
        CHECK(failed == k, "%s round %d: failed_index %zu, expected %zu", what, round, failed, k);
        CHECK(all_zero(back, total), "%s round %d: batch output not zeroed", what, round);

        free(lens);
        free(aad_lens);
        free(nonces);
        free(in);
        free(aad);
        free(out);
        free(single);
        free(back);
        free(ct_lens);
    }

    /* Zero messages is a no-op that succeeds, even with NULL buffers. */
    size_t failed = 7;
    CHECK(sls_env_aead_encrypt_many(ctx, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, 0, NULL) ==
              SLS_ENV_OK, "%s", what);
    CHECK(sls_env_aead_decrypt_many(ctx, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, 0, NULL, &failed) ==
              SLS_ENV_OK, "%s", what);
    sls_env_aead_free(ctx);
}

static void records_api(int alg, const char *impl)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s records", alg_name(alg), impl);
    sls_env_aead *ctx = must_new_random(alg, impl);

    for (int round = 0; round < 12; round++) {
        size_t header_len = 12 + rnd_below(40), nonce_offset = rnd_below(header_len - 12 + 1);
        size_t n = 1 + rnd_below(8);
        uint64_t counter0 = round == 0 ? UINT64_MAX - (n - 1) : rnd();
        uint8_t header[64], prefix[4];
        rnd_fill(header, header_len);
        rnd_fill(prefix, 4);
        size_t *lens = xmalloc(n * sizeof *lens), total = 0;
        for (size_t i = 0; i < n; i++)
            total += lens[i] = rnd_below(700);
        uint8_t *in = xmalloc(total + 1), *out = xmalloc(total + n * (header_len + 16));
        rnd_fill(in, total);
        CHECK(sls_env_seal_records(ctx, header, header_len, nonce_offset, prefix, counter0, n, in,
                                   lens, 0, out, sls_env_fork_generation()) == SLS_ENV_OK,
              "%s round %d", what, round);
        uint8_t *rec = out, *m = in;
        for (size_t i = 0; i < n; i++) {
            size_t rlen = header_len + lens[i] + 16;
            /* The header outside the nonce is the template; the nonce is prefix || ctr. */
            uint8_t nonce[12];
            memcpy(nonce, prefix, 4);
            for (int b = 0; b < 8; b++)
                nonce[4 + b] = (uint8_t)((counter0 + i) >> (56 - 8 * b));
            CHECK(memcmp(rec, header, nonce_offset) == 0 &&
                      memcmp(rec + nonce_offset + 12, header + nonce_offset + 12,
                             header_len - nonce_offset - 12) == 0,
                  "%s: header template not kept", what);
            CHECK(memcmp(rec + nonce_offset, nonce, 12) == 0, "%s: record %zu nonce", what, i);
            /* Same as a single encryption with the header as AAD. */
            uint8_t *single = xmalloc(lens[i] + 16);
            CHECK(sls_env_aead_encrypt(ctx, nonce, rec, header_len, m, lens[i], single) ==
                      SLS_ENV_OK, "%s", what);
            CHECK(memcmp(single, rec + header_len, lens[i] + 16) == 0,
                  "%s: record %zu != single encryption", what, i);
            free(single);
            /* One record into scratch: the same bytes, its ciphertext on a 64-byte
             * boundary; refused under a stale fork generation. */
            uint64_t gen = sls_env_fork_generation();
            const char *one = sls_env_seal_record_scratch(ctx, header, header_len, nonce_offset,
                                                          prefix, counter0 + i, m, lens[i], gen);
            CHECK(one != NULL && memcmp(one, rec, rlen) == 0, "%s: seal_record_scratch %zu", what, i);
            CHECK(one != NULL && ((uintptr_t)(one + header_len) & 63) == 0,
                  "%s: scratch record's ciphertext not 64-byte aligned", what);
            CHECK(sls_env_seal_record_scratch(ctx, header, header_len, nonce_offset, prefix,
                                              counter0 + i, m, lens[i], gen + 1) == NULL &&
                      sls_env_last_error() == SLS_ENV_ERR_FORKED,
                  "%s: stale fork generation accepted", what);
            const char *pt = sls_env_open_record(ctx, rec, rlen, header_len, nonce_offset);
            CHECK(pt != NULL && memcmp(pt, m, lens[i]) == 0, "%s: open_record %zu", what, i);
            /* A flipped header byte (AAD, or nonce) fails and leaves nothing readable. */
            size_t flip = rnd_below(rlen);
            rec[flip] ^= 0x80;
            pt = sls_env_open_record(ctx, rec, rlen, header_len, nonce_offset);
            CHECK(pt == NULL && sls_env_last_error() == SLS_ENV_ERR_AUTH,
                  "%s: record with byte %zu flipped opened", what, flip);
            CHECK(all_zero(sls_env_scratch(0), lens[i]), "%s: scratch not zeroed after failure",
                  what);
            rec[flip] ^= 0x80;
            rec += rlen;
            m += lens[i];
        }
        /* All of them in one call: the plaintexts back to back. */
        size_t *rlens = xmalloc(n * sizeof *rlens), failed = 99;
        for (size_t i = 0; i < n; i++)
            rlens[i] = header_len + lens[i] + 16;
        uint8_t *plain = xmalloc(total + 1);
        CHECK(sls_env_open_records(ctx, header, header_len, nonce_offset, n, out, rlens, 0, plain,
                                   &failed) == SLS_ENV_OK && memcmp(plain, in, total) == 0,
              "%s: open_records", what);
        /* A flipped byte (ciphertext, tag or nonce) of record j: AUTH naming j, the whole
         * output zeroed. */
        size_t j = rnd_below(n), at = 0;
        for (size_t i = 0; i < j; i++)
            at += rlens[i];
        size_t flip = nonce_offset + rnd_below(rlens[j] - nonce_offset);
        if (flip >= nonce_offset + 12 && flip < header_len)
            flip = header_len; /* outside the nonce the header is the template's (below) */
        if (flip >= rlens[j])
            flip = nonce_offset;
        out[at + flip] ^= 0x40;
        memset(plain, 0xa5, total);
        CHECK(sls_env_open_records(ctx, header, header_len, nonce_offset, n, out, rlens, 0, plain,
                                   &failed) == SLS_ENV_ERR_AUTH && failed == j && all_zero(plain, total),
              "%s: open_records with record %zu byte %zu flipped", what, j, flip);
        out[at + flip] ^= 0x40;
        /* A header byte outside the nonce: HEADER naming j, nothing written. */
        if (header_len > 12) {
            size_t h = rnd_below(header_len - 12);
            h = h < nonce_offset ? h : h + 12;
            out[at + h] ^= 1;
            memset(plain, 0xa5, total);
            CHECK(sls_env_open_records(ctx, header, header_len, nonce_offset, n, out, rlens, 0, plain,
                                       &failed) == SLS_ENV_ERR_HEADER && failed == j,
                  "%s: open_records with record %zu header byte %zu changed", what, j, h);
            CHECK(total == 0 || plain[0] == 0xa5, "%s: open_records wrote before refusing", what);
            out[at + h] ^= 1;
        }
        /* A record too short for a header and a tag: SHORT naming it. */
        size_t saved = rlens[j];
        rlens[j] = header_len + 15;
        CHECK(sls_env_open_records(ctx, header, header_len, nonce_offset, n, out, rlens, 0, plain,
                                   &failed) == SLS_ENV_ERR_SHORT && failed == j,
              "%s: open_records short record", what);
        rlens[j] = saved;
        free(rlens);
        free(plain);
        free(lens);
        free(in);
        free(out);
    }

    /* The scratch single-message calls agree with the plain ones. */
    uint8_t nonce[12] = {1}, msg[100], ct[116];
    rnd_fill(msg, sizeof msg);
    CHECK(sls_env_aead_encrypt(ctx, nonce, msg, 7, msg, sizeof msg, ct) == SLS_ENV_OK, "%s", what);
    const char *s = sls_env_aead_encrypt_scratch(ctx, nonce, msg, 7, msg, sizeof msg);
    CHECK(s != NULL && memcmp(s, ct, sizeof ct) == 0, "%s: encrypt_scratch", what);
    s = sls_env_aead_decrypt_scratch(ctx, nonce, msg, 7, ct, sizeof ct);
    CHECK(s != NULL && memcmp(s, msg, sizeof msg) == 0, "%s: decrypt_scratch", what);
    ct[5] ^= 1;
    s = sls_env_aead_decrypt_scratch(ctx, nonce, msg, 7, ct, sizeof ct);
    CHECK(s == NULL && sls_env_last_error() == SLS_ENV_ERR_AUTH, "%s: decrypt_scratch tamper", what);
    CHECK(all_zero(sls_env_scratch(0), sizeof msg), "%s: scratch not wiped on failure", what);
    s = sls_env_aead_decrypt_scratch(ctx, nonce, NULL, 0, ct, 15);
    CHECK(s == NULL && sls_env_last_error() == SLS_ENV_ERR_SHORT, "%s: short scratch", what);
    sls_env_aead_free(ctx);
}

/* ---- bad arguments -------------------------------------------------------------- */

static void bad_arguments(void)
{
    uint8_t key[32] = {0}, nonce[12] = {0}, buf[64] = {0}, out[80];
    sls_env_aead *ctx = (sls_env_aead *)&buf; /* must be left alone by failing calls */

    /* sls_env_aead_new */
    CHECK(sls_env_aead_new(NULL, SLS_ENV_AES_GCM, key, 16, NULL) == SLS_ENV_ERR_ARG, "NULL out");
    CHECK(sls_env_aead_new(&ctx, 0, key, 16, NULL) == SLS_ENV_ERR_ALG && ctx == NULL, "alg 0");
    ctx = (sls_env_aead *)&buf;
    CHECK(sls_env_aead_new(&ctx, 3, key, 16, NULL) == SLS_ENV_ERR_ALG && ctx == NULL, "alg 3");
    CHECK(sls_env_aead_new(&ctx, SLS_ENV_AES_GCM, NULL, 16, NULL) == SLS_ENV_ERR_ARG, "NULL key");
    static const size_t bad_aes[] = {0, 1, 15, 17, 20, 23, 25, 31, 33, 64};
    for (size_t i = 0; i < sizeof bad_aes / sizeof bad_aes[0]; i++)
        CHECK(sls_env_aead_new(&ctx, SLS_ENV_AES_GCM, key, bad_aes[i], NULL) ==
                  SLS_ENV_ERR_KEY_SIZE && ctx == NULL,
              "AES key of %zu bytes", bad_aes[i]);
    static const size_t bad_sm4[] = {0, 15, 17, 24, 32};
    for (size_t i = 0; i < sizeof bad_sm4 / sizeof bad_sm4[0]; i++)
        CHECK(sls_env_aead_new(&ctx, SLS_ENV_SM4_GCM, key, bad_sm4[i], NULL) == SLS_ENV_ERR_KEY_SIZE,
              "SM4 key of %zu bytes", bad_sm4[i]);
    CHECK(sls_env_aead_new(&ctx, SLS_ENV_AES_GCM, key, 16, "no-such-impl") == SLS_ENV_ERR_IMPL,
          "unknown impl");
    /* Compiled in but not runnable here: ERR_IMPL too. */
    for (int alg = SLS_ENV_AES_GCM; alg <= SLS_ENV_SM4_GCM; alg++) {
        for (int i = 0; i < sls_env_impl_count_all(alg); i++) {
            const char *name = sls_env_impl_name_all(alg, i);
            int runs = 0;
            for (int j = 0; j < sls_env_impl_count(alg); j++)
                runs |= strcmp(sls_env_impl_name(alg, j), name) == 0;
            sls_env_aead *c = NULL;
            int rc = sls_env_aead_new(&c, alg, key, 16, name);
            CHECK(runs ? rc == SLS_ENV_OK : rc == SLS_ENV_ERR_IMPL, "%s %s: rc %d", alg_name(alg),
                  name, rc);
            sls_env_aead_free(c);
        }
        CHECK(sls_env_impl_name(alg, sls_env_impl_count(alg)) == NULL, "past the end");
        CHECK(sls_env_impl_name(alg, -1) == NULL, "negative index");
        CHECK(sls_env_impl_name_all(alg, -1) == NULL, "negative index");
    }
    CHECK(sls_env_impl_count(0) == 0 && sls_env_impl_name(0, 0) == NULL, "bad alg list");
    sls_env_aead_free(NULL);
    CHECK(sls_env_aead_impl(NULL) == NULL && sls_env_aead_alg(NULL) == 0, "NULL ctx getters");

    ctx = must_new(SLS_ENV_AES_GCM, key, 16, NULL);
    /* Single calls. */
    CHECK(sls_env_aead_encrypt(NULL, nonce, NULL, 0, buf, 1, out) == SLS_ENV_ERR_ARG, "NULL ctx");
    CHECK(sls_env_aead_encrypt(ctx, NULL, NULL, 0, buf, 1, out) == SLS_ENV_ERR_ARG, "NULL nonce");
    CHECK(sls_env_aead_encrypt(ctx, nonce, NULL, 1, buf, 1, out) == SLS_ENV_ERR_ARG, "NULL aad");
    CHECK(sls_env_aead_encrypt(ctx, nonce, NULL, 0, NULL, 1, out) == SLS_ENV_ERR_ARG, "NULL in");
    CHECK(sls_env_aead_encrypt(ctx, nonce, NULL, 0, buf, 1, NULL) == SLS_ENV_ERR_ARG, "NULL out");
    CHECK(sls_env_aead_encrypt(ctx, nonce, NULL, 0, NULL, 0, out) == SLS_ENV_OK, "empty, NULL in");
    /* Over the SP 800-38D limit: refused before any byte is read or written. */
    CHECK(sls_env_aead_encrypt(ctx, nonce, NULL, 0, buf, (size_t)SLS_ENV_MAX_MESSAGE + 1, out) ==
              SLS_ENV_ERR_TOO_LONG, "message too long");
    CHECK(sls_env_aead_encrypt(ctx, nonce, buf, (size_t)SLS_ENV_MAX_MESSAGE + 1, buf, 0, out) ==
              SLS_ENV_ERR_TOO_LONG, "AAD too long");
    CHECK(sls_env_aead_encrypt(ctx, nonce, NULL, 0, buf, SIZE_MAX, out) == SLS_ENV_ERR_TOO_LONG,
          "SIZE_MAX message");
    for (size_t n = 0; n < 16; n++)
        CHECK(sls_env_aead_decrypt(ctx, nonce, NULL, 0, buf, n, out) == SLS_ENV_ERR_SHORT,
              "%zu-byte ciphertext", n);
    CHECK(sls_env_aead_decrypt(ctx, nonce, NULL, 0, NULL, 16, out) == SLS_ENV_ERR_ARG, "NULL in");
    CHECK(sls_env_aead_decrypt(NULL, nonce, NULL, 0, buf, 16, out) == SLS_ENV_ERR_ARG, "NULL ctx");
    CHECK(sls_env_aead_decrypt(ctx, nonce, NULL, 0, buf, 17, NULL) == SLS_ENV_ERR_ARG, "NULL out");
    CHECK(sls_env_aead_decrypt(ctx, nonce, NULL, 0, buf, (size_t)SLS_ENV_MAX_MESSAGE + 17, out) ==
              SLS_ENV_ERR_TOO_LONG, "ciphertext too long");
    CHECK(sls_env_aead_encrypt_scratch(ctx, nonce, NULL, 0, buf, SIZE_MAX - 8) == NULL,
          "scratch overflow");
    CHECK(sls_env_last_error() != SLS_ENV_OK, "scratch overflow code");

    /* Batches: lengths checked before anything is written. */
    size_t lens[3] = {5, (size_t)SLS_ENV_MAX_MESSAGE + 1, 5}, failed = 99;
    memset(out, 0x5A, sizeof out);
    CHECK(sls_env_aead_encrypt_many(ctx, 3, buf, NULL, NULL, 0, 0, buf, lens, 0, out) ==
              SLS_ENV_ERR_TOO_LONG, "batch too long");
    CHECK(out[0] == 0x5A, "batch wrote before failing");
    CHECK(sls_env_aead_encrypt_many(NULL, 1, buf, NULL, NULL, 0, 0, buf, NULL, 1, out) ==
              SLS_ENV_ERR_ARG, "batch NULL ctx");
    CHECK(sls_env_aead_encrypt_many(ctx, 1, NULL, NULL, NULL, 0, 0, buf, NULL, 1, out) ==
              SLS_ENV_ERR_ARG, "batch NULL nonces");
    CHECK(sls_env_aead_encrypt_many(ctx, 1, buf, NULL, NULL, 3, 0, buf, NULL, 1, out) ==
              SLS_ENV_ERR_ARG, "batch NULL aad");
    CHECK(sls_env_aead_encrypt_many(ctx, 1, buf, NULL, NULL, 0, 0, NULL, NULL, 1, out) ==
              SLS_ENV_ERR_ARG, "batch NULL in");
    size_t ct_lens[3] = {20, 15, 20};
    CHECK(sls_env_aead_decrypt_many(ctx, 3, buf, NULL, NULL, 0, 0, buf, ct_lens, 0, out,
                                    &failed) == SLS_ENV_ERR_SHORT && failed == 1,
          "batch short ciphertext: failed %zu", failed);
    CHECK(sls_env_aead_decrypt_many(ctx, 1, buf, NULL, NULL, 0, 0, buf, NULL, 16, out, NULL) ==
              SLS_ENV_ERR_ARG, "batch NULL failed_index");

    /* Records. */
    uint8_t header[32] = {0}, prefix[4] = {0};
    uint64_t gen = sls_env_fork_generation();
    CHECK(sls_env_seal_records(ctx, header, 20, 9, prefix, 0, 1, buf, NULL, 4, out, gen) ==
              SLS_ENV_ERR_ARG, "nonce past the header end");
    CHECK(sls_env_seal_records(ctx, header, 11, 0, prefix, 0, 1, buf, NULL, 4, out, gen) ==
              SLS_ENV_ERR_ARG, "header shorter than a nonce");
    CHECK(sls_env_seal_records(ctx, header, 20, 21, prefix, 0, 1, buf, NULL, 4, out, gen) ==
              SLS_ENV_ERR_ARG, "nonce offset past header");
    CHECK(sls_env_seal_records(ctx, NULL, 20, 0, prefix, 0, 1, buf, NULL, 4, out, gen) ==
              SLS_ENV_ERR_ARG, "NULL header");
    CHECK(sls_env_seal_records(ctx, header, 20, 0, NULL, 0, 1, buf, NULL, 4, out, gen) ==
              SLS_ENV_ERR_ARG, "NULL prefix");
    CHECK(sls_env_seal_records(ctx, header, 20, 0, prefix, UINT64_MAX, 2, buf, NULL, 4, out, gen) ==
              SLS_ENV_ERR_TOO_LONG, "nonce counter wrap");
    CHECK(sls_env_seal_records(ctx, header, 20, 0, prefix, 0, 1, NULL, NULL, 4, out, gen) ==
              SLS_ENV_ERR_ARG, "records NULL in");
    memset(out, 0xa5, 64);
    CHECK(sls_env_seal_records(ctx, header, 20, 0, prefix, 0, 1, buf, NULL, 4, out, gen + 1) ==
              SLS_ENV_ERR_FORKED && out[0] == 0xa5, "records under a stale fork generation");
    CHECK(sls_env_open_record(ctx, buf, 35, 20, 0) == NULL && sls_env_last_error() == SLS_ENV_ERR_SHORT,
          "record shorter than header + tag");
    CHECK(sls_env_open_record(ctx, buf, 10, 20, 0) == NULL && sls_env_last_error() == SLS_ENV_ERR_SHORT,
          "record shorter than header");
    CHECK(sls_env_open_record(ctx, buf, 40, 20, 9) == NULL && sls_env_last_error() == SLS_ENV_ERR_ARG,
          "record nonce past header");
    CHECK(sls_env_open_record(NULL, buf, 40, 20, 0) == NULL && sls_env_last_error() == SLS_ENV_ERR_ARG,
          "record NULL ctx");
    CHECK(sls_env_open_record(ctx, buf, 36, 20, 0) == NULL && sls_env_last_error() == SLS_ENV_ERR_AUTH,
          "zero record");

    /* Raw block hooks. */
    CHECK(sls_env_block_encrypt(NULL, buf, out, 1) == SLS_ENV_ERR_ARG, "block NULL ctx");
    CHECK(sls_env_block_encrypt(ctx, NULL, out, 1) == SLS_ENV_ERR_ARG, "block NULL in");
    CHECK(sls_env_block_iterate(ctx, NULL, 1) == SLS_ENV_ERR_ARG, "iterate NULL");
    sls_env_aead_free(ctx);

    /* Constant-time comparison and wipe. */
    uint8_t a[33], b[33];
    rnd_fill(a, sizeof a);
    memcpy(b, a, sizeof b);
    CHECK(sls_env_ct_equal(a, b, sizeof a) == 1, "ct_equal equal");
    CHECK(sls_env_ct_equal(a, b, 0) == 1, "ct_equal empty");
    for (size_t i = 0; i < sizeof a; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1u << bit);
            CHECK(sls_env_ct_equal(a, b, sizeof a) == 0, "ct_equal byte %zu bit %d", i, bit);
            b[i] ^= (uint8_t)(1u << bit);
        }
    sls_env_wipe(a, sizeof a);
    CHECK(all_zero(a, sizeof a), "wipe");
    sls_env_wipe(NULL, 5);
}

/* A forked child sees the fork generation bumped (pthread_atfork), so a session begun
 * in the parent cannot seal there, one record or many: the child must start its own
 * nonce sequence. */
static void fork_generation(void)
{
    uint8_t key[16] = {7}, header[16] = {0}, prefix[4] = {1, 2, 3, 4}, msg[5] = "hello";
    sls_env_aead *ctx = must_new(SLS_ENV_AES_GCM, key, 16, NULL);
    uint64_t parent = sls_env_fork_generation();
    CHECK(sls_env_seal_record_scratch(ctx, header, 16, 0, prefix, 0, msg, 5, parent) != NULL,
          "seal in the parent");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t records[2 * (16 + 5 + 16)];
        int ok = sls_env_fork_generation() == parent + 1 &&
                 sls_env_seal_record_scratch(ctx, header, 16, 0, prefix, 1, msg, 5, parent) == NULL &&
                 sls_env_last_error() == SLS_ENV_ERR_FORKED &&
                 sls_env_seal_records(ctx, header, 16, 0, prefix, 1, 2, msg, NULL, 5, records, parent) ==
                     SLS_ENV_ERR_FORKED &&
                 sls_env_seal_record_scratch(ctx, header, 16, 0, prefix, 0, msg, 5,
                                             sls_env_fork_generation()) != NULL &&
                 sls_env_seal_records(ctx, header, 16, 0, prefix, 1, 2, msg, NULL, 5, records,
                                      sls_env_fork_generation()) == SLS_ENV_OK;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/wait");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child did not see a new fork generation");
    CHECK(sls_env_fork_generation() == parent, "the parent's generation changed");
    sls_env_aead_free(ctx);
}

/* sls_env_open_record_as: a record opens against its own header with any nonce in the
 * template; any other header byte of the template refuses it (HEADER, nothing opened);
 * short records, flipped ciphertext and NULLs as sls_env_open_record. */
static void open_record_as_api(int alg, const char *impl)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s open_record_as", alg_name(alg), impl);
    sls_env_aead *ctx = must_new_random(alg, impl);
    for (int round = 0; round < 8; round++) {
        size_t header_len = round == 0 ? 99 : 12 + rnd_below(40);
        size_t nonce_offset = round == 0 ? 55 : rnd_below(header_len - 12 + 1), len = rnd_below(600);
        uint8_t header[99], expected[99], prefix[4];
        rnd_fill(header, header_len);
        rnd_fill(prefix, 4);
        uint8_t *m = xmalloc(len + 1), *rec = xmalloc(header_len + len + 16);
        rnd_fill(m, len);
        size_t rlen = header_len + len + 16;
        CHECK(sls_env_seal_records(ctx, header, header_len, nonce_offset, prefix, rnd(), 1, m, NULL, len,
                                   rec, sls_env_fork_generation()) == SLS_ENV_OK, "%s: seal", what);
        memcpy(expected, header, header_len); /* the template's nonce is not the record's */
        const char *pt = sls_env_open_record_as(ctx, expected, rec, rlen, header_len, nonce_offset);
        CHECK(pt != NULL && memcmp(pt, m, len) == 0, "%s: round %d", what, round);
        /* open_record_into: the same into the caller's buffer, with the template or none;
         * a refused header or short record leaves it as it was, a failed tag zeroes it. */
        uint8_t *into = xmalloc(len + 1);
        for (int with = 0; with < 2; with++) {
            memset(into, 0xa5, len + 1);
            CHECK(sls_env_open_record_into(ctx, with ? expected : NULL, rec, rlen, header_len, nonce_offset,
                                           into) == SLS_ENV_OK && memcmp(into, m, len) == 0 && into[len] == 0xa5,
                  "%s: open_record_into (template %d)", what, with);
        }
        memset(into, 0xa5, len + 1);
        expected[0] ^= nonce_offset == 0 ? 0 : 1;
        CHECK(nonce_offset == 0 ||
                  (sls_env_open_record_into(ctx, expected, rec, rlen, header_len, nonce_offset, into) ==
                       SLS_ENV_ERR_HEADER && into[0] == 0xa5),
              "%s: open_record_into, template changed", what);
        expected[0] = header[0];
        CHECK(sls_env_open_record_into(ctx, expected, rec, header_len + 15, header_len, nonce_offset, into) ==
                  SLS_ENV_ERR_SHORT && into[0] == 0xa5, "%s: open_record_into, short record", what);
        rec[rlen - 1] ^= 1;
        CHECK(sls_env_open_record_into(ctx, expected, rec, rlen, header_len, nonce_offset, into) ==
                  SLS_ENV_ERR_AUTH && all_zero(into, len) && into[len] == 0xa5,
              "%s: open_record_into, bad tag", what);
        rec[rlen - 1] ^= 1;
        free(into);
        for (size_t h = 0; h < header_len; h++) {
            if (h >= nonce_offset && h < nonce_offset + 12)
                continue;
            expected[h] ^= (uint8_t)(1u << (h % 8));
            CHECK(sls_env_open_record_as(ctx, expected, rec, rlen, header_len, nonce_offset) == NULL &&
                      sls_env_last_error() == SLS_ENV_ERR_HEADER,
                  "%s: template byte %zu changed, record opened", what, h);
            expected[h] = header[h];
        }
        CHECK(sls_env_open_record_as(ctx, expected, rec, header_len + 15, header_len, nonce_offset) == NULL &&
                  sls_env_last_error() == SLS_ENV_ERR_SHORT, "%s: short record", what);
        size_t flip = header_len + rnd_below(len + 16);
        rec[flip] ^= 0x10;
        pt = sls_env_open_record_as(ctx, expected, rec, rlen, header_len, nonce_offset);
        CHECK(pt == NULL && sls_env_last_error() == SLS_ENV_ERR_AUTH, "%s: byte %zu flipped, opened", what, flip);
        CHECK(all_zero(sls_env_scratch(0), len), "%s: scratch not zeroed after failure", what);
        rec[flip] ^= 0x10;
        CHECK(sls_env_open_record_as(NULL, expected, rec, rlen, header_len, nonce_offset) == NULL &&
                  sls_env_last_error() == SLS_ENV_ERR_ARG &&
                  sls_env_open_record_as(ctx, NULL, rec, rlen, header_len, nonce_offset) == NULL &&
                  sls_env_open_record_as(ctx, expected, NULL, rlen, header_len, nonce_offset) == NULL &&
                  sls_env_open_record_as(ctx, expected, rec, rlen, 11, 0) == NULL &&
                  sls_env_last_error() == SLS_ENV_ERR_ARG,
              "%s: bad arguments", what);
        free(m);
        free(rec);
    }
    sls_env_aead_free(ctx);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
    rng_state = seed ? seed : 1;
    int random_long = getenv("KERNEL_TEST_LONG") ? atoi(getenv("KERNEL_TEST_LONG")) : 24;
    printf("kernel_test: seed %" PRIu64 ", cpu features [%s]\n", seed, sls_env_cpu_features());

    bad_arguments();
    fork_generation();
    for (int alg = SLS_ENV_AES_GCM; alg <= SLS_ENV_SM4_GCM; alg++) {
        int count = sls_env_impl_count(alg);
        CHECK(count >= 1, "%s: no implementation runs here", alg_name(alg));
        for (int i = 0; i < count; i++) {
            const char *impl = sls_env_impl_name(alg, i);
            /* Each GHASH product form of an implementation that has a choice (vaes512:
             * dispatch.c picks one by CPU vendor), so both run on any CPU. */
            for (int form = 0; form <= 1; form++) {
                static const uint8_t key[16];
                sls_env_testing_ghash_form(form);
                sls_env_aead *probe = must_new(alg, key, sizeof key, impl);
                int got = sls_env_testing_aead_ghash_form(probe);
                sls_env_aead_free(probe);
                CHECK(got == -1 || got == form, "%s %s: form %d forced, key has %d", alg_name(alg), impl,
                      form, got);
                if (got == -1 && form == 1)
                    break;
                unsigned long before = failures;
                clock_t t0 = clock();
                known_answers(alg, impl);
                differential(alg, impl, random_long);
                batch_api(alg, impl);
                records_api(alg, impl);
                open_record_as_api(alg, impl);
                printf("  %s %-10s %s%s (%.1f s)\n", alg_name(alg), impl,
                       got == -1 ? "" : got ? "karatsuba " : "schoolbook ",
                       failures == before ? "ok" : "FAILED", (double)(clock() - t0) / CLOCKS_PER_SEC);
            }
            sls_env_testing_ghash_form(-1);
        }
    }
    printf("kernel_test: %lu checks, %lu failures\n", checks, failures);
    return failures ? 1 : 0;
}
