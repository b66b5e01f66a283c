/*
 * libFuzzer harness for the C kernel's batch and record API:
 *   clang -fsanitize=fuzzer,address,undefined (scripts/c-checks.sh builds and runs it
 *   over the seed corpus in tests/fuzz/corpus_batch/ for a bounded time).
 *
 * The input chooses an algorithm, key size and implementation (among those dispatch
 * reports here), then drives one of:
 *   0. sls_env_aead_decrypt_many over attacker-chosen lengths, nonces, AAD and bytes
 *      (lengths as a caller would pass them: the buffer holds their sum);
 *   1. sls_env_open_record with attacker-chosen header length and nonce offset;
 *   2. sls_env_aead_encrypt_many then decrypt_many: the round trip must give the
 *      input back, and every implementation must produce the same bytes as the
 *      portable one;
 *   3. sls_env_seal_records then sls_env_open_record of each record, round trip, and
 *      sls_env_seal_record_scratch giving each record's bytes again; then
 *      sls_env_open_records of them all, and of them all with one byte changed.
 * Any sanitizer report, or an oracle failure (abort()), is a finding.  Decryption of
 * fuzzed bytes must fail cleanly: a code, a failed_index inside the batch, and a
 * zeroed output.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sls_env.h"

struct reader {
    const uint8_t *p;
    size_t left;
};

static uint8_t take_u8(struct reader *r)
{
    if (r->left == 0)
        return 0;
    r->left--;
    return *r->p++;
}

static size_t take_u16(struct reader *r)
{
    size_t hi = take_u8(r);
    return (hi << 8) | take_u8(r);
}

/* Up to n bytes of input (fewer if it runs out); *got says how many. */
static const uint8_t *take(struct reader *r, size_t n, size_t *got)
{
    const uint8_t *p = r->p;
    *got = n < r->left ? n : r->left;
    r->p += *got;
    r->left -= *got;
    return p;
}

static void must(int cond)
{
    if (!cond)
        abort();
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

#define MAX_MSGS 16

static void fuzz_decrypt_many(const sls_env_aead *ctx, struct reader *r)
{
    size_t n = take_u8(r) % (MAX_MSGS + 1), lens[MAX_MSGS] = {0}, aad_lens[MAX_MSGS] = {0};
    int shared = take_u8(r) & 1;
    uint8_t nonces[12 * MAX_MSGS] = {0};
    size_t got, total = 0, total_aad = 0;
    memcpy(nonces, take(r, 12 * n, &got), got);
    for (size_t i = 0; i < n; i++) {
        lens[i] = take_u16(r) % 600;
        aad_lens[i] = take_u8(r) % 64;
        total += lens[i];
        total_aad += shared ? 0 : aad_lens[i];
    }
    if (shared)
        total_aad = n ? aad_lens[0] : 0;
    /* Buffers exactly as large as the lengths say, filled from the input (zeros past
     * its end), so ASan sees any read or write outside them. */
    uint8_t *in = malloc(total + 1), *aad = malloc(total_aad + 1);
    size_t out_len = 0;
    for (size_t i = 0; i < n; i++)
        out_len += lens[i] >= 16 ? lens[i] - 16 : 0;
    uint8_t *out = malloc(out_len + 1);
    memset(in, 0, total + 1);
    memset(aad, 0, total_aad + 1);
    memcpy(aad, take(r, total_aad, &got), got);
    memcpy(in, take(r, total, &got), got);
    size_t failed = (size_t)-1;
    int rc = sls_env_aead_decrypt_many(ctx, n, nonces, aad, shared ? NULL : aad_lens,
                                       shared ? aad_lens[0] : 0, shared, in, lens, 0, out, &failed);
    must(rc == SLS_ENV_OK || rc == SLS_ENV_ERR_AUTH || rc == SLS_ENV_ERR_SHORT);
    if (rc != SLS_ENV_OK)
        must(failed < n);
    if (rc == SLS_ENV_ERR_AUTH)
        must(all_zero(out, out_len));
    free(in);
    free(aad);
    free(out);
}

static void fuzz_open_record(const sls_env_aead *ctx, struct reader *r)
{
    size_t header_len = take_u8(r), nonce_offset = take_u8(r), got;
    const uint8_t *rest = take(r, r->left, &got);
    uint8_t *rec = malloc(got + 1);
    memcpy(rec, rest, got);
    const char *pt = sls_env_open_record(ctx, rec, got, header_len, nonce_offset);
    /* A valid record (the seeds hold some) opens; anything else fails with a code. */
    if (pt == NULL) {
        int rc = sls_env_last_error();
        must(rc == SLS_ENV_ERR_ARG || rc == SLS_ENV_ERR_SHORT || rc == SLS_ENV_ERR_AUTH);
    }
    free(rec);
}

static void fuzz_round_trip(const sls_env_aead *ctx, const sls_env_aead *ref, struct reader *r)
{
    size_t n = take_u8(r) % (MAX_MSGS + 1), lens[MAX_MSGS], ct_lens[MAX_MSGS], aad_each = take_u8(r) % 40;
    size_t got, total = 0;
    uint8_t nonces[12 * MAX_MSGS] = {0}, aad[40] = {0};
    memcpy(nonces, take(r, 12 * n, &got), got);
    memcpy(aad, take(r, aad_each, &got), got);
    for (size_t i = 0; i < n; i++) {
        lens[i] = take_u16(r) % 2048;
        ct_lens[i] = lens[i] + 16;
        total += lens[i];
    }
    uint8_t *in = calloc(1, total + 1), *ct = malloc(total + 16 * n + 1),
            *ct_ref = malloc(total + 16 * n + 1), *back = malloc(total + 1);
    memcpy(in, take(r, total, &got), got);
    must(sls_env_aead_encrypt_many(ctx, n, nonces, aad, NULL, aad_each, 1, in, lens, 0, ct) ==
         SLS_ENV_OK);
    must(sls_env_aead_encrypt_many(ref, n, nonces, aad, NULL, aad_each, 1, in, lens, 0, ct_ref) ==
         SLS_ENV_OK);
    must(memcmp(ct, ct_ref, total + 16 * n) == 0);
    size_t failed;
    must(sls_env_aead_decrypt_many(ctx, n, nonces, aad, NULL, aad_each, 1, ct, ct_lens, 0, back,
                                   &failed) == SLS_ENV_OK);
    must(memcmp(back, in, total) == 0);
    if (n && total) {
        ct[take_u16(r) % (total + 16 * n)] ^= (uint8_t)(1u << (take_u8(r) % 8));
        must(sls_env_aead_decrypt_many(ctx, n, nonces, aad, NULL, aad_each, 1, ct, ct_lens, 0,
                                       back, &failed) == SLS_ENV_ERR_AUTH);
        must(failed < n && all_zero(back, total));
    }
    free(in);
    free(ct);
    free(ct_ref);
    free(back);
}

static void fuzz_records(const sls_env_aead *ctx, struct reader *r)
{
    size_t header_len = 12 + take_u8(r) % 48, nonce_offset = take_u8(r) % (header_len - 11);
    size_t n = take_u8(r) % (MAX_MSGS + 1), lens[MAX_MSGS], got, total = 0;
    uint8_t header[60] = {0}, prefix[4] = {0};
    uint64_t counter0 = 0;
    memcpy(header, take(r, header_len, &got), got);
    memcpy(prefix, take(r, 4, &got), got);
    for (int i = 0; i < 8; i++)
        counter0 = (counter0 << 8) | take_u8(r);
    for (size_t i = 0; i < n; i++)
        total += lens[i] = take_u16(r) % 1024;
    uint8_t *in = calloc(1, total + 1), *out = malloc(total + n * (header_len + 16) + 1);
    memcpy(in, take(r, total, &got), got);
    int rc = sls_env_seal_records(ctx, header, header_len, nonce_offset, prefix, counter0, n, in,
                                  lens, 0, out, sls_env_fork_generation());
    if (n && counter0 + (n - 1) < counter0) {
        must(rc == SLS_ENV_ERR_TOO_LONG);
    } else {
        must(rc == SLS_ENV_OK);
        const uint8_t *rec = out, *m = in;
        for (size_t i = 0; i < n; i++) {
            size_t rlen = header_len + lens[i] + 16;
            const char *one = sls_env_seal_record_scratch(ctx, header, header_len, nonce_offset, prefix,
                                                          counter0 + i, m, lens[i],
                                                          sls_env_fork_generation());
            must(one != NULL && memcmp(one, rec, rlen) == 0); /* the single-record path agrees */
            const char *pt = sls_env_open_record(ctx, rec, rlen, header_len, nonce_offset);
            must(pt != NULL && memcmp(pt, m, lens[i]) == 0);
            rec += rlen;
            m += lens[i];
        }
        /* All records in one call, then again with one fuzz-chosen byte changed: the
         * change is refused with a code naming a record inside the batch (a tag failure
         * leaving the output zeroed), or, XOR 0, the batch opens again. */
        size_t rlens[MAX_MSGS], failed = 0, records = total + n * (header_len + 16);
        for (size_t i = 0; i < n; i++)
            rlens[i] = header_len + lens[i] + 16;
        uint8_t *plain = malloc(total + 1);
        must(sls_env_open_records(ctx, header, header_len, nonce_offset, n, out, rlens, 0, plain,
                                  &failed) == SLS_ENV_OK &&
             memcmp(plain, in, total) == 0);
        if (records) {
            size_t at = take_u16(r) % records;
            uint8_t x = take_u8(r);
            out[at] ^= x;
            rc = sls_env_open_records(ctx, header, header_len, nonce_offset, n, out, rlens, 0, plain,
                                      &failed);
            if (x == 0) {
                must(rc == SLS_ENV_OK && memcmp(plain, in, total) == 0);
            } else {
                must((rc == SLS_ENV_ERR_AUTH || rc == SLS_ENV_ERR_HEADER) && failed < n);
                for (size_t i = 0; rc == SLS_ENV_ERR_AUTH && i < total; i++)
                    must(plain[i] == 0);
            }
        }
        free(plain);
    }
    free(in);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    uint8_t sel = take_u8(&r);
    int alg = (sel & 1) ? SLS_ENV_SM4_GCM : SLS_ENV_AES_GCM;
    static const size_t aes_keys[] = {16, 24, 32};
    size_t key_len = alg == SLS_ENV_AES_GCM ? aes_keys[((sel >> 1) & 3) % 3] : 16;
    int count = sls_env_impl_count(alg);
    const char *impl = sls_env_impl_name(alg, (sel >> 3) % count);
    uint8_t key[32] = {0};
    size_t got;
    memcpy(key, take(&r, key_len, &got), got);

    sls_env_aead *ctx = NULL, *ref = NULL;
    must(sls_env_aead_new(&ctx, alg, key, key_len, impl) == SLS_ENV_OK);
    must(sls_env_aead_new(&ref, alg, key, key_len, "portable") == SLS_ENV_OK);
    switch (take_u8(&r) % 4) {
    case 0:
        fuzz_decrypt_many(ctx, &r);
        break;
    case 1:
        fuzz_open_record(ctx, &r);
        break;
    case 2:
        fuzz_round_trip(ctx, ref, &r);
        break;
    default:
        fuzz_records(ctx, &r);
        break;
    }
    sls_env_aead_free(ctx);
    sls_env_aead_free(ref);
    return 0;
}
