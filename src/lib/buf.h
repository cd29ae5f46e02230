/*
 * buf.h: a growable byte buffer for building keys and messages.
 * Owned by whoever declared it; not thread-safe.
 */
#ifndef CAIRN_LIB_BUF_H
#define CAIRN_LIB_BUF_H

#include <stddef.h>
#include <stdint.h>

struct cairn_buf
{
    uint8_t *data;
    size_t len;
    size_t cap;
};

#define CAIRN_BUF_INIT \
    {                  \
        NULL, 0, 0     \
    }

/* Ensures room for `extra` more bytes. Returns 0 or CAIRN_ENOMEM. */
int cairn_buf_reserve(struct cairn_buf *b, size_t extra);

/* Appends `n` bytes. Returns 0 or CAIRN_ENOMEM. */
int cairn_buf_append(struct cairn_buf *b, const void *p, size_t n);

/* Appends one byte. Returns 0 or CAIRN_ENOMEM. */
int cairn_buf_push(struct cairn_buf *b, uint8_t byte);

/* Appends v as 8 big-endian bytes. Returns 0 or CAIRN_ENOMEM. */
int cairn_buf_put_be64(struct cairn_buf *b, uint64_t v);

/* Empties the buffer, keeping its memory. */
static inline void cairn_buf_reset(struct cairn_buf *b)
{
    b->len = 0;
}

/* Frees the memory; the buffer is empty and reusable afterwards. */
void cairn_buf_free(struct cairn_buf *b);

/* Big-endian helpers. */
static inline void cairn_store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static inline uint64_t cairn_load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

#endif /* CAIRN_LIB_BUF_H */
