/*
 * sls-envelope C kernel: public API.
 *
 * AES-GCM (128/192/256-bit keys) and SM4-GCM with 96-bit nonces and 128-bit tags,
 * per NIST SP 800-38D and RFC 8998.  A context is set up once per key; the
 * implementation (portable constant-time, AES-NI, VAES, GFNI, ...) is chosen once,
 * at that moment, by dispatch.c.  Every function here is thread-safe for a shared
 * context: a context is read-only after sls_env_aead_new().
 *
 * Every symbol the library exports starts with sls_env_; everything else is
 * static or hidden.
 */
#ifndef SLS_ENV_H
#define SLS_ENV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Algorithms. */
#define SLS_ENV_AES_GCM 1
#define SLS_ENV_SM4_GCM 2

#define SLS_ENV_NONCE_LEN 12
#define SLS_ENV_TAG_LEN 16

/*
 * SP 800-38D section 5.2.1.1: a plaintext holds at most 2^39 - 256 bits, i.e.
 * 2^32 - 2 blocks of 16 bytes.  (AAD has a larger limit, 2^61 - 1 bytes, that no
 * size_t reaches on a 64-bit host except by mistake; we cap it at the same value.)
 */
#define SLS_ENV_MAX_MESSAGE ((uint64_t)0xFFFFFFFEu * 16u)

/* Result codes.  0 is success; everything else is negative. */
#define SLS_ENV_OK 0
#define SLS_ENV_ERR_ALG -1        /* unknown algorithm */
#define SLS_ENV_ERR_KEY_SIZE -2   /* key length not valid for the algorithm */
#define SLS_ENV_ERR_IMPL -3       /* unknown implementation, or not supported by this CPU */
#define SLS_ENV_ERR_NOMEM -4      /* allocation failed */
#define SLS_ENV_ERR_TOO_LONG -5   /* message or AAD over the SP 800-38D limit */
#define SLS_ENV_ERR_SHORT -6      /* ciphertext shorter than the tag */
#define SLS_ENV_ERR_AUTH -7       /* tag mismatch: output wiped */
#define SLS_ENV_ERR_ARG -8        /* NULL pointer or otherwise invalid argument */
#define SLS_ENV_ERR_FORKED -9     /* the process forked since the caller's session began */
#define SLS_ENV_ERR_HEADER -10    /* a record's header differs from the template (open_records) */

typedef struct sls_env_aead sls_env_aead;

/* Implementations of an algorithm that run on this CPU, fastest first.
 * sls_env_impl_name() returns NULL past the end. */
int sls_env_impl_count(int alg);
const char *sls_env_impl_name(int alg, int index);

/* Every implementation compiled in, whether or not this CPU can run it. */
int sls_env_impl_count_all(int alg);
const char *sls_env_impl_name_all(int alg, int index);

/* Set up a key.  impl == NULL or "" picks the fastest that runs here. */
int sls_env_aead_new(sls_env_aead **out, int alg, const uint8_t *key, size_t key_len,
                     const char *impl);
/* Wipe and release.  NULL is allowed. */
void sls_env_aead_free(sls_env_aead *ctx);
const char *sls_env_aead_impl(const sls_env_aead *ctx);
int sls_env_aead_alg(const sls_env_aead *ctx);

/*
 * One message.  out receives in_len + 16 bytes (ciphertext || tag) on encrypt and
 * in_len - 16 bytes on decrypt.  out may equal in (in place) but must not overlap it
 * otherwise.  On SLS_ENV_ERR_AUTH the whole output is zeroed before returning.
 */
int sls_env_aead_encrypt(const sls_env_aead *ctx, const uint8_t *nonce,
                         const uint8_t *aad, size_t aad_len,
                         const uint8_t *in, size_t in_len, uint8_t *out);
int sls_env_aead_decrypt(const sls_env_aead *ctx, const uint8_t *nonce,
                         const uint8_t *aad, size_t aad_len,
                         const uint8_t *in, size_t in_len, uint8_t *out);

/*
 * The same, writing into a buffer owned by the calling thread and grown as needed
 * (see sls_env_scratch); the result is that buffer (as char *, which bindings
 * read as bytes), valid until the thread's next
 * scratch call, or NULL on error, with the code in sls_env_last_error().  This saves
 * the caller an allocation and an out-parameter per call.
 */
char *sls_env_aead_encrypt_scratch(const sls_env_aead *ctx, const uint8_t *nonce,
                                   const uint8_t *aad, size_t aad_len,
                                   const uint8_t *in, size_t in_len);
char *sls_env_aead_decrypt_scratch(const sls_env_aead *ctx, const uint8_t *nonce,
                                   const uint8_t *aad, size_t aad_len,
                                   const uint8_t *in, size_t in_len);
/* The code of the calling thread's last failed *_scratch call. */
int sls_env_last_error(void);

/* The calling thread's scratch buffer, 64-byte aligned, grown to at least len bytes
 * (NULL if allocation fails).  The *_scratch functions above write into the same buffer. */
uint8_t *sls_env_scratch(size_t len);

/*
 * Many messages under one key in one call.  Messages are packed back to back in
 * `in`; their lengths come from in_lens[i], or all equal to in_len_each when
 * in_lens is NULL.  Nonces are 12 bytes each, back to back.  AAD likewise:
 * aad_lens[i], or all aad_len_each long when aad_lens is NULL; with
 * aad_shared != 0 one AAD of aad_len_each bytes serves every message.
 * Output: each result back to back in `out` (message i: in_len(i) + 16 bytes on
 * encrypt, in_len(i) - 16 on decrypt).
 * On decrypt failure *failed_index names the first message whose tag did not
 * verify and the whole output is zeroed: nothing partial is released.
 */
int sls_env_aead_encrypt_many(const sls_env_aead *ctx, size_t n, const uint8_t *nonces,
                              const uint8_t *aad, const size_t *aad_lens, size_t aad_len_each,
                              int aad_shared, const uint8_t *in, const size_t *in_lens,
                              size_t in_len_each, uint8_t *out);
int sls_env_aead_decrypt_many(const sls_env_aead *ctx, size_t n, const uint8_t *nonces,
                              const uint8_t *aad, const size_t *aad_lens, size_t aad_len_each,
                              int aad_shared, const uint8_t *in, const size_t *in_lens,
                              size_t in_len_each, uint8_t *out, size_t *failed_index);

/*
 * Records: self-describing sealed messages laid out as header || C || T, where the
 * header is also the AAD and holds the 12-byte nonce at nonce_offset (the batch
 * format of sls_envelope.format; csrc/gcm/records.c).  Sealing takes a header template
 * and gives record i the nonce nonce_prefix (4 bytes) || big-endian 64-bit
 * (counter0 + i), written into its header.  Messages are packed as in
 * sls_env_aead_encrypt_many; records come out back to back, record i being
 * header_len + in_len(i) + 16 bytes.  fork_generation is sls_env_fork_generation() as
 * it was when the caller's nonce session began: if the process has forked since,
 * nothing is sealed and the result is SLS_ENV_ERR_FORKED, so a child never continues
 * its parent's nonce sequence.
 * Opening takes one record and writes its plaintext to the calling thread's scratch
 * buffer (NULL on error, code in sls_env_last_error()).
 */
int sls_env_seal_records(const sls_env_aead *ctx, const uint8_t *header, size_t header_len,
                         size_t nonce_offset, const uint8_t *nonce_prefix, uint64_t counter0,
                         size_t n, const uint8_t *in, const size_t *in_lens, size_t in_len_each,
                         uint8_t *out, uint64_t fork_generation);
char *sls_env_open_record(const sls_env_aead *ctx, const uint8_t *record, size_t record_len,
                          size_t header_len, size_t nonce_offset);
/* Many records of one session: each record's header must equal the template outside
 * its nonce (the seal_records layout), which is checked for every record before any
 * is opened (SLS_ENV_ERR_HEADER or SLS_ENV_ERR_SHORT with *failed_index, nothing
 * written).  Records are packed as messages are in sls_env_aead_decrypt_many; the
 * plaintexts come out back to back.  On SLS_ENV_ERR_AUTH, *failed_index is the first
 * record that failed and the whole output is zeroed. */
int sls_env_open_records(const sls_env_aead *ctx, const uint8_t *header, size_t header_len,
                         size_t nonce_offset, size_t n, const uint8_t *in, const size_t *in_lens,
                         size_t in_len_each, uint8_t *out, size_t *failed_index);
/* One record sealed into the calling thread's scratch buffer, placed so that its
 * ciphertext starts on a 64-byte boundary (wide stores then never split a cache
 * line); returns the record's first byte, or NULL with sls_env_last_error().
 * fork_generation as in sls_env_seal_records (SLS_ENV_ERR_FORKED after a fork). */
char *sls_env_seal_record_scratch(const sls_env_aead *ctx, const uint8_t *header,
                                  size_t header_len, size_t nonce_offset,
                                  const uint8_t *nonce_prefix, uint64_t counter,
                                  const uint8_t *in, size_t in_len, uint64_t fork_generation);

/* One record whose header must equal `expected` (header_len bytes, a header this
 * session's caller has already checked) outside the nonce, compared in constant time;
 * then opened as sls_env_open_record does.  NULL with SLS_ENV_ERR_HEADER if the header
 * differs, SLS_ENV_ERR_SHORT if the record cannot hold a header and a tag (nothing
 * opened in either case), SLS_ENV_ERR_AUTH if the tag fails (scratch zeroed). */
char *sls_env_open_record_as(const sls_env_aead *ctx, const uint8_t *expected,
                             const uint8_t *record, size_t record_len, size_t header_len,
                             size_t nonce_offset);
/* The same into out (record_len - header_len - 16 bytes, the caller's), for results
 * too large to copy out of the scratch buffer cheaply; expected may be NULL (no header
 * comparison, as sls_env_open_record).  Returns the code; out is zeroed on
 * SLS_ENV_ERR_AUTH and untouched on the other errors. */
int sls_env_open_record_into(const sls_env_aead *ctx, const uint8_t *expected, const uint8_t *record,
                             size_t record_len, size_t header_len, size_t nonce_offset, uint8_t *out);

/* How many times this process's line of ancestors has forked since the library was
 * loaded: a counter bumped in the child by a pthread_atfork handler, so it sees every
 * fork() through libc, including those that bypass Python's os.register_at_fork. */
uint64_t sls_env_fork_generation(void);

/* Constant-time comparison of two buffers: 1 if equal, 0 if not. */
int sls_env_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Zero memory in a way the compiler may not elide. */
void sls_env_wipe(void *p, size_t len);

/* CPU features that dispatch sees (after SLS_ENVELOPE_DISABLE masking), as a
 * comma-separated list, for diagnostics. */
const char *sls_env_cpu_features(void);

#ifdef __cplusplus
}
#endif
#endif /* SLS_ENV_H */
