/*
 * sls-envelope C kernel: entry points for the tests only, apart from the public API
 * (sls_env.h) so that no application mistakes them for it.  They are compiled into the
 * extension because the Python tests reach the kernel through it; csrc/build_native.py
 * derives the cdef from both headers.
 */
#ifndef SLS_ENV_TESTING_H
#define SLS_ENV_TESTING_H

#include "sls_env.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Raw single-block encryption with the chosen implementation, for the GB/T 32907
 * iterated example and block-level differential tests. */
int sls_env_block_encrypt(const sls_env_aead *ctx, const uint8_t *in, uint8_t *out, size_t nblocks);
/* block = E(K, block), iterations times (GB/T 32907 appendix A, example 2). */
int sls_env_block_iterate(const sls_env_aead *ctx, uint8_t *block, uint64_t iterations);

/* The GHASH product form of the vaes512 AES-GCM main loop for keys set up from now on
 * (dispatch.c chooses it from the CPU's vendor): 0 schoolbook, 1 Karatsuba, -1 the CPU's
 * again; any other value changes nothing.  Returns the form now in force.  Lets the tests
 * run both forms on one CPU. */
int sls_env_testing_ghash_form(int form);
/* The form ctx's key was set up with (0 or 1), or -1 if its implementation has no
 * choice of form (anything but AES-GCM vaes512). */
int sls_env_testing_aead_ghash_form(const sls_env_aead *ctx);

/* The memcheck stage's negative control (scripts/c-checks.sh memcheck): branches on a
 * byte of freshly malloc'ed, never written memory and returns 0 or 1.  Harmless when
 * run, but valgrind memcheck must report "Conditional jump or move depends on
 * uninitialised value(s)" with this function on the stack; if it does not, the stage
 * is blind to errors in our extension and fails. */
int sls_env_testing_uninit_branch(void);

#ifdef __cplusplus
}
#endif
#endif /* SLS_ENV_TESTING_H */
