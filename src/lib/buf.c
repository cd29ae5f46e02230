/*
 * buf.c: the growable byte buffer declared in buf.h.
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#include "cairn/cairn.h"

int cairn_buf_reserve(struct cairn_buf *b, size_t extra)
{
    size_t need = b->len + extra;
    size_t cap;
    uint8_t *p;

    if (need <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return CAIRN_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int cairn_buf_append(struct cairn_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (cairn_buf_reserve(b, n) != 0) {
        return CAIRN_ENOMEM;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int cairn_buf_push(struct cairn_buf *b, uint8_t byte)
{
    return cairn_buf_append(b, &byte, 1);
}

int cairn_buf_put_be64(struct cairn_buf *b, uint64_t v)
{
    uint8_t tmp[8];
    cairn_store_be64(tmp, v);
    return cairn_buf_append(b, tmp, 8);
}

void cairn_buf_free(struct cairn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
