/*
 * sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the member
 * transport's shared-key handshake. Domain-free: no I/O, no allocation, no
 * global state, so every function is safe on any thread; a context belongs
 * to whoever declared it.
 *
 * A context is used as init, update any number of times, final. After
 * final the context holds no secret (it is wiped) and may be initialized
 * again.
 */
#ifndef CAIRN_LIB_SHA256_H
#define CAIRN_LIB_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_SHA256_SIZE 32       /* digest bytes */
#define CAIRN_SHA256_BLOCK_SIZE 64 /* compression block bytes */

struct cairn_sha256
{
    uint32_t state[8];
    uint64_t n_bytes; /* bytes hashed so far */
    uint8_t block[CAIRN_SHA256_BLOCK_SIZE];
    size_t n_block; /* bytes waiting in block[] */
};

struct cairn_hmac_sha256
{
    struct cairn_sha256 inner;
    struct cairn_sha256 outer; /* already fed the outer padded key */
};

/* Starts a SHA-256 computation. */
void cairn_sha256_init(struct cairn_sha256 *c);

/* Hashes `n` more bytes of `data` (may be NULL when n is 0). */
void cairn_sha256_update(struct cairn_sha256 *c, const void *data, size_t n);

/* Writes the digest to `out` and wipes the context. */
void cairn_sha256_final(struct cairn_sha256 *c, uint8_t out[CAIRN_SHA256_SIZE]);

/* One-shot digest of `n` bytes. */
void cairn_sha256(const void *data, size_t n, uint8_t out[CAIRN_SHA256_SIZE]);

/* Starts an HMAC-SHA256 with a key of any length (0 allowed: the empty
 * key; longer than a block: hashed first, as RFC 2104 says). The key is
 * not kept: only the padded key's hash states are. */
void cairn_hmac_sha256_init(struct cairn_hmac_sha256 *h, const void *key, size_t key_len);

/* Feeds `n` more message bytes. */
void cairn_hmac_sha256_update(struct cairn_hmac_sha256 *h, const void *data, size_t n);

/* Writes the MAC to `out` and wipes the context. */
void cairn_hmac_sha256_final(struct cairn_hmac_sha256 *h, uint8_t out[CAIRN_SHA256_SIZE]);

/* One-shot MAC of `n` bytes under `key`. */
void cairn_hmac_sha256(const void *key,
                       size_t key_len,
                       const void *data,
                       size_t n,
                       uint8_t out[CAIRN_SHA256_SIZE]);

/* True when the `n` bytes at `a` and `b` are equal. Takes the same time
 * whichever bytes differ, so comparing a received MAC with the expected
 * one leaks nothing about how much of it was right. */
bool cairn_memeq_ct(const void *a, const void *b, size_t n);

/* Overwrites `n` bytes at `p` with zeros in a way the compiler may not
 * remove (for keys and MAC states). */
void cairn_wipe(void *p, size_t n);

#endif /* CAIRN_LIB_SHA256_H */
