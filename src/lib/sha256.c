/*
 * sha256.c: SHA-256 as FIPS 180-4 section 6.2 specifies it (big-endian
 * words, 64 rounds over a 64-byte block, the message padded with 0x80,
 * zeros and its bit length as a 64-bit big-endian number), and HMAC as RFC
 * 2104 builds it on a hash: H((K ^ opad) || H((K ^ ipad) || message)),
 * with K padded with zeros to the block size (hashed first when longer).
 *
 * Written for Cairn from the two standards; checked against the FIPS 180-4
 * example vectors and the RFC 4231 HMAC-SHA256 test cases in
 * tests/unit/test_sha256.c. Not optimized: the member transport hashes a few
 * hundred bytes per connection.
 */
#include "sha256.h"

#include <string.h>

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* FIPS 180-4 6.2.2: one block into the hash state. */
static void compress(uint32_t state[8], const uint8_t block[CAIRN_SHA256_BLOCK_SIZE])
{
    uint32_t w[64];
    uint32_t a, b, c, d, e, f, g, h;

    for (int t = 0; t < 16; t++) {
        w[t] = load_be32(block + 4 * t);
    }
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    a = state[0];
    b = state[1];
    c = state[2];
    d = state[3];
    e = state[4];
    f = state[5];
    g = state[6];
    h = state[7];
    for (int t = 0; t < 64; t++) {
        uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + s1 + ch + K[t] + w[t];
        uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
    cairn_wipe(w, sizeof w);
}

void cairn_sha256_init(struct cairn_sha256 *c)
{
    /* FIPS 180-4 5.3.3: the first 32 bits of the fractional parts of the
     * square roots of the first 8 primes. */
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->state, H0, sizeof H0);
    c->n_bytes = 0;
    c->n_block = 0;
}

void cairn_sha256_update(struct cairn_sha256 *c, const void *data, size_t n)
{
    const uint8_t *p = data;

    if (n == 0) {
        return;
    }
    c->n_bytes += n;
    if (c->n_block > 0) {
        size_t take = CAIRN_SHA256_BLOCK_SIZE - c->n_block;
        if (take > n) {
            take = n;
        }
        memcpy(c->block + c->n_block, p, take);
        c->n_block += take;
        p += take;
        n -= take;
        if (c->n_block < CAIRN_SHA256_BLOCK_SIZE) {
            return;
        }
        compress(c->state, c->block);
        c->n_block = 0;
    }
    while (n >= CAIRN_SHA256_BLOCK_SIZE) {
        compress(c->state, p);
        p += CAIRN_SHA256_BLOCK_SIZE;
        n -= CAIRN_SHA256_BLOCK_SIZE;
    }
    if (n > 0) {
        memcpy(c->block, p, n);
        c->n_block = n;
    }
}

void cairn_sha256_final(struct cairn_sha256 *c, uint8_t out[CAIRN_SHA256_SIZE])
{
    uint64_t bits = c->n_bytes * 8;

    /* FIPS 180-4 5.1.1: 0x80, zeros up to 56 mod 64, the 64-bit length. */
    c->block[c->n_block++] = 0x80;
    if (c->n_block > CAIRN_SHA256_BLOCK_SIZE - 8) {
        memset(c->block + c->n_block, 0, CAIRN_SHA256_BLOCK_SIZE - c->n_block);
        compress(c->state, c->block);
        c->n_block = 0;
    }
    memset(c->block + c->n_block, 0, CAIRN_SHA256_BLOCK_SIZE - 8 - c->n_block);
    for (int i = 0; i < 8; i++) {
        c->block[CAIRN_SHA256_BLOCK_SIZE - 1 - i] = (uint8_t)(bits >> (8 * i));
    }
    compress(c->state, c->block);
    for (int i = 0; i < 8; i++) {
        store_be32(out + 4 * i, c->state[i]);
    }
    cairn_wipe(c, sizeof *c);
}

void cairn_sha256(const void *data, size_t n, uint8_t out[CAIRN_SHA256_SIZE])
{
    struct cairn_sha256 c;
    cairn_sha256_init(&c);
    cairn_sha256_update(&c, data, n);
    cairn_sha256_final(&c, out);
}

void cairn_hmac_sha256_init(struct cairn_hmac_sha256 *h, const void *key, size_t key_len)
{
    uint8_t k[CAIRN_SHA256_BLOCK_SIZE];
    uint8_t pad[CAIRN_SHA256_BLOCK_SIZE];

    memset(k, 0, sizeof k);
    if (key_len > CAIRN_SHA256_BLOCK_SIZE) {
        cairn_sha256(key, key_len, k);
    } else if (key_len > 0) {
        memcpy(k, key, key_len);
    }
    for (size_t i = 0; i < sizeof pad; i++) {
        pad[i] = k[i] ^ 0x36;
    }
    cairn_sha256_init(&h->inner);
    cairn_sha256_update(&h->inner, pad, sizeof pad);
    for (size_t i = 0; i < sizeof pad; i++) {
        pad[i] = k[i] ^ 0x5c;
    }
    cairn_sha256_init(&h->outer);
    cairn_sha256_update(&h->outer, pad, sizeof pad);
    cairn_wipe(k, sizeof k);
    cairn_wipe(pad, sizeof pad);
}

void cairn_hmac_sha256_update(struct cairn_hmac_sha256 *h, const void *data, size_t n)
{
    cairn_sha256_update(&h->inner, data, n);
}

void cairn_hmac_sha256_final(struct cairn_hmac_sha256 *h, uint8_t out[CAIRN_SHA256_SIZE])
{
    uint8_t inner[CAIRN_SHA256_SIZE];

    cairn_sha256_final(&h->inner, inner);
    cairn_sha256_update(&h->outer, inner, sizeof inner);
    cairn_sha256_final(&h->outer, out);
    cairn_wipe(inner, sizeof inner);
}

void cairn_hmac_sha256(const void *key,
                       size_t key_len,
                       const void *data,
                       size_t n,
                       uint8_t out[CAIRN_SHA256_SIZE])
{
    struct cairn_hmac_sha256 h;
    cairn_hmac_sha256_init(&h, key, key_len);
    cairn_hmac_sha256_update(&h, data, n);
    cairn_hmac_sha256_final(&h, out);
}

bool cairn_memeq_ct(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a;
    const volatile uint8_t *y = b;
    uint8_t diff = 0;

    for (size_t i = 0; i < n; i++) {
        diff |= (uint8_t)(x[i] ^ y[i]);
    }
    return diff == 0;
}

void cairn_wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    for (size_t i = 0; i < n; i++) {
        v[i] = 0;
    }
}
