/* Test-only entry points that are not a cipher's (sls_env_testing.h). */
#include <stdlib.h>

#include "sls_env_testing.h"
#include "internal.h"
#if SLS_ENV_X86
#include "ghash/ghash_x86_vpclmul.h"
extern SLS_ENV_HIDDEN const sls_env_gcm_bulk sls_env_aesgcm_vaes512;
#endif

/* The read of never-written memory is the point; GCC rightly notices it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

int sls_env_testing_uninit_branch(void)
{
    /* malloc'ed bytes are indeterminate until written; reading them through a volatile
     * unsigned char is defined C (no trap representation) but memcheck tracks them as
     * undefined.  The call in one arm only keeps the branch a real conditional jump (no
     * cmov), so the report names this function; the result does not leave it, so
     * nothing outside the extension reports the same value again. */
    volatile unsigned char *p = malloc(16);
    unsigned char scratch[16] = {0};
    if (p == NULL)
        return -1;
    if (p[7] & 1)
        sls_env_wipe(scratch, sizeof scratch);
    free((void *)p);
    return 0;
}

int sls_env_testing_aead_ghash_form(const sls_env_aead *ctx)
{
#if SLS_ENV_X86
    if (ctx != NULL && ctx->impl->bulk == &sls_env_aesgcm_vaes512)
        return ((const sls_env_ghash_vpclmul_key *)ctx->ghash_state)->form;
#endif
    (void)ctx;
    return -1;
}
