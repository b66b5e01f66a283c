/*
 * Many messages per call, over gcm.c's one-message steps (sls_env_gcm_seal and
 * sls_env_gcm_open, internal.h): batches of independent messages (sls_env_aead_*_many)
 * and the records of the batch format (sls_env_*_record*), which sls_envelope/records.py
 * binds.  One C call per batch of messages saves the Python layer a crossing per message.
 *
 * Every length and header is public and is checked for the whole call before anything
 * is written; a tag failure zeroes the whole output (nothing partial is released).
 */
#include "internal.h"

/* ---- the record layout of the batch format ---------------------------------------
 * What C must know of sls_envelope/format.py's v1 header (docs/FORMAT.md, "Layout"), and
 * the one place it is written down on the C side.  A record is header || C || T; the
 * whole header is the AAD; the 12-byte GCM nonce sits inside the header at nonce_offset
 * and is a 4-byte session prefix || the 64-bit big-endian counter of the session.  The
 * header's length and the nonce's offset come from the caller (format.HEADER_LEN and
 * format.NONCE_OFFSET), so C knows no other field.
 */
#define FORMAT_NONCE_PREFIX_LEN 4

/* The nonce of record `counter` of a session, written into its header. */
static void format_nonce(uint8_t nonce[SLS_ENV_NONCE_LEN], const uint8_t *prefix, uint64_t counter)
{
    memcpy(nonce, prefix, FORMAT_NONCE_PREFIX_LEN);
    sls_env_store_be64(nonce + FORMAT_NONCE_PREFIX_LEN, counter);
}

/* A header of header_len bytes can hold the 12-byte nonce at nonce_offset. */
static int format_layout_ok(size_t header_len, size_t nonce_offset)
{
    return nonce_offset <= header_len && header_len - nonce_offset >= SLS_ENV_NONCE_LEN;
}

/* A record's header equals the session's `expected` one outside the nonce.  Headers are
 * public (every record carries its session's), yet the comparison runs over every byte
 * whatever it finds, the key commitment being among them: no early exit to time. */
static int format_header_matches(const uint8_t *record, const uint8_t *expected, size_t header_len,
                                 size_t nonce_offset)
{
    size_t tail = nonce_offset + SLS_ENV_NONCE_LEN;
    return sls_env_ct_equal(record, expected, nonce_offset) &
           sls_env_ct_equal(record + tail, expected + tail, header_len - tail);
}

/* ---- batches ------------------------------------------------------------------ */

/* The length of item i of a packed batch: lens[i], or `each` for every item when the
 * caller passed no array (all items equally long). */
static size_t item_len(const size_t *lens, size_t each, size_t i)
{
    return lens ? lens[i] : each;
}

/* The lengths of a batch call's packed messages and AADs. */
struct batch_cursor {
    const size_t *in_lens, *aad_lens;
    size_t in_len_each, aad_len_each;
    int aad_shared;
};

static size_t in_len_at(const struct batch_cursor *b, size_t i)
{
    return item_len(b->in_lens, b->in_len_each, i);
}

static size_t aad_len_at(const struct batch_cursor *b, size_t i)
{
    return b->aad_lens && !b->aad_shared ? b->aad_lens[i] : b->aad_len_each;
}

/* Pointers every non-empty batch needs; message and AAD pointers are checked per
 * length below, since all-empty messages may come with NULL. */
static int batch_args_ok(const sls_env_aead *ctx, size_t n, const uint8_t *nonces, const uint8_t *out)
{
    return ctx != NULL && (n == 0 || (nonces != NULL && out != NULL));
}

int sls_env_aead_encrypt_many(const sls_env_aead *ctx, size_t n, const uint8_t *nonces,
                              const uint8_t *aad, const size_t *aad_lens, size_t aad_len_each,
                              int aad_shared, const uint8_t *in, const size_t *in_lens,
                              size_t in_len_each, uint8_t *out)
{
    if (!batch_args_ok(ctx, n, nonces, out))
        return SLS_ENV_ERR_ARG;
    struct batch_cursor b = {in_lens, aad_lens, in_len_each, aad_len_each, aad_shared};
    /* Check every length before writing anything. */
    for (size_t i = 0; i < n; i++) {
        int rc = sls_env_gcm_check_lengths(aad_len_at(&b, i), in_len_at(&b, i));
        if (rc != SLS_ENV_OK)
            return rc;
        if ((in_len_at(&b, i) && in == NULL) || (aad_len_at(&b, i) && aad == NULL))
            return SLS_ENV_ERR_ARG;
    }
    const uint8_t *m = in, *a = aad;
    for (size_t i = 0; i < n; i++) {
        size_t mlen = in_len_at(&b, i), alen = aad_len_at(&b, i);
        sls_env_gcm_seal(ctx, nonces + 12 * i, a, alen, m, mlen, out);
        out += mlen + 16;
        m += mlen;
        if (!aad_shared)
            a += alen;
    }
    return SLS_ENV_OK;
}

int sls_env_aead_decrypt_many(const sls_env_aead *ctx, size_t n, const uint8_t *nonces,
                              const uint8_t *aad, const size_t *aad_lens, size_t aad_len_each,
                              int aad_shared, const uint8_t *in, const size_t *in_lens,
                              size_t in_len_each, uint8_t *out, size_t *failed_index)
{
    if (!batch_args_ok(ctx, n, nonces, out) || failed_index == NULL)
        return SLS_ENV_ERR_ARG;
    *failed_index = 0;
    struct batch_cursor b = {in_lens, aad_lens, in_len_each, aad_len_each, aad_shared};
    for (size_t i = 0; i < n; i++) {
        size_t clen = in_len_at(&b, i);
        if (clen < 16) {
            *failed_index = i;
            return SLS_ENV_ERR_SHORT;
        }
        int rc = sls_env_gcm_check_lengths(aad_len_at(&b, i), clen - 16);
        if (rc != SLS_ENV_OK) {
            *failed_index = i;
            return rc;
        }
        if (aad_len_at(&b, i) && aad == NULL)
            return SLS_ENV_ERR_ARG;
    }
    const uint8_t *c = in, *a = aad;
    uint8_t *o = out;
    for (size_t i = 0; i < n; i++) {
        size_t clen = in_len_at(&b, i), alen = aad_len_at(&b, i);
        if (sls_env_gcm_open(ctx, nonces + 12 * i, a, alen, c, clen - 16, o) != SLS_ENV_OK) {
            *failed_index = i;
            /* Nothing partial is released, and the whole output is zeroed as the
             * header promises: the messages before i, and the room of those after
             * it, which the caller may otherwise read as stale data. */
            size_t total = 0;
            for (size_t j = 0; j < n; j++)
                total += in_len_at(&b, j) - 16;
            sls_env_wipe(out, total);
            return SLS_ENV_ERR_AUTH;
        }
        o += clen - 16;
        c += clen;
        if (!aad_shared)
            a += alen;
    }
    return SLS_ENV_OK;
}

/* ---- records (the layout above) ----------------------------------------------- */

int sls_env_seal_records(const sls_env_aead *ctx, const uint8_t *header, size_t header_len,
                         size_t nonce_offset, const uint8_t *nonce_prefix, uint64_t counter0,
                         size_t n, const uint8_t *in, const size_t *in_lens, size_t in_len_each,
                         uint8_t *out, uint64_t fork_generation)
{
    /* The fork check first: a child (of os.fork or of a libc fork() that ran no Python
     * hook) must not continue the nonce sequence of a session its parent began. */
    if (fork_generation != sls_env_fork_generation())
        return SLS_ENV_ERR_FORKED;
    if (ctx == NULL || header == NULL || nonce_prefix == NULL || (n && out == NULL) ||
        !format_layout_ok(header_len, nonce_offset))
        return SLS_ENV_ERR_ARG;
    if (n && counter0 + (n - 1) < counter0)
        return SLS_ENV_ERR_TOO_LONG; /* the 64-bit nonce counter would wrap */
    for (size_t i = 0; i < n; i++) {
        size_t len = item_len(in_lens, in_len_each, i);
        int rc = sls_env_gcm_check_lengths(header_len, len);
        if (rc != SLS_ENV_OK)
            return rc;
        if (len && in == NULL)
            return SLS_ENV_ERR_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = item_len(in_lens, in_len_each, i);
        uint8_t *nonce = out + nonce_offset;
        memcpy(out, header, header_len);
        format_nonce(nonce, nonce_prefix, counter0 + i);
        sls_env_gcm_seal(ctx, nonce, out, header_len, in, len, out + header_len);
        in += len;
        out += header_len + len + SLS_ENV_TAG_LEN;
    }
    return SLS_ENV_OK;
}

int sls_env_open_records(const sls_env_aead *ctx, const uint8_t *header, size_t header_len,
                         size_t nonce_offset, size_t n, const uint8_t *in, const size_t *in_lens,
                         size_t in_len_each, uint8_t *out, size_t *failed_index)
{
    if (ctx == NULL || header == NULL || failed_index == NULL || (n && (in == NULL || out == NULL)) ||
        !format_layout_ok(header_len, nonce_offset))
        return SLS_ENV_ERR_ARG;
    *failed_index = 0;
    /* Headers and lengths are public: check them all before opening anything. */
    size_t total = 0;
    const uint8_t *rec = in;
    for (size_t i = 0; i < n; i++) {
        size_t len = item_len(in_lens, in_len_each, i);
        *failed_index = i;
        if (len < header_len || len - header_len < SLS_ENV_TAG_LEN)
            return SLS_ENV_ERR_SHORT;
        int rc = sls_env_gcm_check_lengths(header_len, len - header_len - SLS_ENV_TAG_LEN);
        if (rc != SLS_ENV_OK)
            return rc;
        if (!format_header_matches(rec, header, header_len, nonce_offset))
            return SLS_ENV_ERR_HEADER;
        total += len - header_len - SLS_ENV_TAG_LEN;
        rec += len;
    }
    *failed_index = 0;
    rec = in;
    uint8_t *o = out;
    for (size_t i = 0; i < n; i++) {
        size_t clen = item_len(in_lens, in_len_each, i) - header_len - SLS_ENV_TAG_LEN;
        if (sls_env_gcm_open(ctx, rec + nonce_offset, rec, header_len, rec + header_len, clen, o) != SLS_ENV_OK) {
            *failed_index = i;
            sls_env_wipe(out, total); /* nothing of the batch is released */
            return SLS_ENV_ERR_AUTH;
        }
        o += clen;
        rec += header_len + clen + SLS_ENV_TAG_LEN;
    }
    return SLS_ENV_OK;
}

char *sls_env_seal_record_scratch(const sls_env_aead *ctx, const uint8_t *header,
                                  size_t header_len, size_t nonce_offset,
                                  const uint8_t *nonce_prefix, uint64_t counter,
                                  const uint8_t *in, size_t in_len, uint64_t fork_generation)
{
    size_t pad = (64 - header_len % 64) % 64;
    uint8_t *buf = NULL;
    int rc = SLS_ENV_ERR_TOO_LONG;
    /* The fork check is seal_records' (one per call, batch or single). */
    if (header_len <= SIZE_MAX / 2 && in_len <= SIZE_MAX - 64 - header_len - SLS_ENV_TAG_LEN - pad) {
        buf = sls_env_scratch(pad + header_len + in_len + SLS_ENV_TAG_LEN);
        rc = buf == NULL ? SLS_ENV_ERR_NOMEM
                         : sls_env_seal_records(ctx, header, header_len, nonce_offset, nonce_prefix,
                                                counter, 1, in, NULL, in_len, buf + pad, fork_generation);
    }
    if (rc == SLS_ENV_OK)
        return (char *)buf + pad;
    sls_env_set_last_error(rc);
    return NULL;
}

int sls_env_open_record_into(const sls_env_aead *ctx, const uint8_t *expected, const uint8_t *record,
                             size_t record_len, size_t header_len, size_t nonce_offset, uint8_t *out)
{
    if (ctx == NULL || record == NULL || !format_layout_ok(header_len, nonce_offset))
        return SLS_ENV_ERR_ARG;
    if (record_len < header_len || record_len - header_len < SLS_ENV_TAG_LEN)
        return SLS_ENV_ERR_SHORT;
    if (expected != NULL && !format_header_matches(record, expected, header_len, nonce_offset))
        return SLS_ENV_ERR_HEADER;
    return sls_env_aead_decrypt(ctx, record + nonce_offset, record, header_len, record + header_len,
                                record_len - header_len, out);
}

/* sls_env_open_record_into with the thread's scratch as out; both entry points below. */
static char *open_record(const sls_env_aead *ctx, const uint8_t *expected, const uint8_t *record,
                         size_t record_len, size_t header_len, size_t nonce_offset)
{
    size_t plain = record_len >= header_len && record_len - header_len >= SLS_ENV_TAG_LEN
                       ? record_len - header_len - SLS_ENV_TAG_LEN
                       : 0;
    uint8_t *buf = sls_env_scratch(plain);
    int rc = buf == NULL ? SLS_ENV_ERR_NOMEM
                         : sls_env_open_record_into(ctx, expected, record, record_len, header_len, nonce_offset, buf);
    if (rc == SLS_ENV_OK)
        return (char *)buf;
    sls_env_set_last_error(rc);
    return NULL;
}

char *sls_env_open_record(const sls_env_aead *ctx, const uint8_t *record, size_t record_len,
                          size_t header_len, size_t nonce_offset)
{
    return open_record(ctx, NULL, record, record_len, header_len, nonce_offset);
}

/* ---- one record of a session already checked (issue 19) ---------------------------
 * The reading side's hot path.  sls_envelope/session_codec.py checks a session's header
 * once in Python (structure, suite, key_ref, the key commitment) and keeps it; every
 * later record of that session carries the same header outside its nonce, so this one
 * call compares it with the kept one (format_header_matches) and opens the record.
 * SLS_ENV_ERR_HEADER (nothing opened) sends the caller back to its full checks, which
 * also name the exact error. */
char *sls_env_open_record_as(const sls_env_aead *ctx, const uint8_t *expected,
                             const uint8_t *record, size_t record_len, size_t header_len,
                             size_t nonce_offset)
{
    if (expected == NULL) {
        sls_env_set_last_error(SLS_ENV_ERR_ARG);
        return NULL;
    }
    return open_record(ctx, expected, record, record_len, header_len, nonce_offset);
}
