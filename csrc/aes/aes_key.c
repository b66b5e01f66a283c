/*
 * AES key expansion (FIPS 197 section 5.2, KeyExpansion), shared by every AES
 * implementation, for Nk = 4, 6 or 8 key words (Nr = Nk + 6 rounds):
 *     w[i] = key word i                                    for i < Nk,
 *     w[i] = w[i-Nk] ^ SubWord(RotWord(w[i-1])) ^ Rcon[i/Nk]  if i mod Nk = 0,
 *     w[i] = w[i-Nk] ^ SubWord(w[i-1])                      if Nk > 6 and i mod Nk = 4,
 *     w[i] = w[i-Nk] ^ w[i-1]                               otherwise.
 * Words are little-endian integers (byte 0 of the word is its low byte), so that the
 * words of a round key stored on a little-endian host are its 16 bytes in FIPS 197
 * order; RotWord ([a0,a1,a2,a3] -> [a1,a2,a3,a0]) is then a right rotation by 8 and
 * Rcon (x^(i/Nk - 1) in GF(2^8)) goes into the low byte.
 *
 * Only SubWord differs between implementations (a bitsliced circuit, AESENCLAST,
 * AESE, none of them a table indexed by secret bytes), so each passes its own, as the
 * SM4 side does with tau (sm4_key.c); how the round keys are then stored (bitsliced,
 * broadcast, in vector registers) stays in the implementation.  The branches depend on
 * the word index and the key length only, never on key bits.  It runs once per key,
 * so the indirect call costs nothing that matters.
 */
#include "internal.h"

unsigned sls_env_aes_expand_key(const uint8_t *key, size_t key_len, uint32_t w[60],
                                uint32_t (*sub_word)(uint32_t))
{
    if (key_len != 16 && key_len != 24 && key_len != 32)
        return 0;
    const unsigned nk = (unsigned)(key_len / 4), nr = nk + 6;
    for (unsigned i = 0; i < nk; i++)
        w[i] = (uint32_t)key[4 * i] | ((uint32_t)key[4 * i + 1] << 8) |
               ((uint32_t)key[4 * i + 2] << 16) | ((uint32_t)key[4 * i + 3] << 24);
    uint32_t rcon = 1;
    for (unsigned i = nk; i < 4 * (nr + 1); i++) {
        uint32_t t = w[i - 1];
        if (i % nk == 0) {
            t = sub_word((t >> 8) | (t << 24)) ^ rcon;
            rcon = (rcon << 1) ^ (0x11b & -(rcon >> 7)); /* xtime in GF(2^8); Rcon is public */
        } else if (nk > 6 && i % nk == 4) {
            t = sub_word(t);
        }
        w[i] = w[i - nk] ^ t;
    }
    return nr;
}
