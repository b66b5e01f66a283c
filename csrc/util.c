/*
 * Small shared pieces: wiping, constant-time comparison and the per-thread scratch
 * buffer (with the code of the thread's last failed *_scratch call) that lets the
 * Python layer take a result with one copy and no allocation on the C side per call.
 */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

void sls_env_wipe(void *p, size_t len)
{
    if (p == NULL || len == 0)
        return;
    memset(p, 0, len);
    /* The empty asm, which may read p's memory, keeps the memset from being
     * removed as a dead store (the same barrier BoringSSL's OPENSSL_cleanse uses). */
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

int sls_env_ct_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    /* Accumulate differences over every byte, then turn "zero" into 1 without a
     * branch on the data: (d - 1) >> 8 is all ones exactly when d == 0. */
    uint32_t d = 0;
    for (size_t i = 0; i < len; i++)
        d |= (uint32_t)(a[i] ^ b[i]);
    return (int)(((d - 1) >> 8) & 1);
}

/* ---- fork detection ------------------------------------------------------------- */

static uint64_t fork_generation;
static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;

static void bump_fork_generation(void)
{
    __atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELAXED);
}

static void install_fork_hook(void)
{
    pthread_atfork(NULL, NULL, bump_fork_generation);
}

/* The hook is installed on first use, before any session can have read a value. */
__attribute__((constructor)) static void install_fork_hook_at_load(void)
{
    pthread_once(&fork_hook_once, install_fork_hook);
}

uint64_t sls_env_fork_generation(void)
{
    pthread_once(&fork_hook_once, install_fork_hook);
    return __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
}

/* ---- per-thread scratch ---------------------------------------------------- */

/* Set by the *_scratch entry points of gcm.c and records.c when they return NULL. */
static __thread int last_error;

int sls_env_last_error(void)
{
    return last_error;
}

void sls_env_set_last_error(int rc)
{
    last_error = rc;
}

struct scratch {
    uint8_t *buf;
    size_t cap;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;
static __thread struct scratch tls_scratch;

static void scratch_release(void *arg)
{
    struct scratch *s = arg;
    if (s->buf) {
        /* It may have held plaintext. */
        sls_env_wipe(s->buf, s->cap);
        free(s->buf);
    }
    s->buf = NULL;
    s->cap = 0;
}

static void scratch_key_init(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_release) == 0;
}

uint8_t *sls_env_scratch(size_t len)
{
    struct scratch *s = &tls_scratch;
    /* Keep what we have unless it is too small, or far too big for what is asked
     * (so one 1 GiB message does not pin 1 GiB per thread for ever). */
    if (s->buf != NULL && len <= s->cap && (s->cap <= ((size_t)16 << 20) || len >= s->cap / 4))
        return s->buf;
    if (len > SIZE_MAX - 65536)
        return NULL;
    size_t cap = len < 65536 ? 65536 : (len + 65535) & ~(size_t)65535;
    void *fresh = NULL;
    if (posix_memalign(&fresh, 64, cap) != 0)
        return NULL;
    scratch_release(s);
    s->buf = fresh;
    s->cap = cap;
    pthread_once(&scratch_once, scratch_key_init);
    if (scratch_key_ok)
        pthread_setspecific(scratch_key, s); /* frees it when the thread exits */
    return fresh;
}
