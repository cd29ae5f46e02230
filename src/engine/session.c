/*
 * session.c: session records (ENG_OP_SESSION): their key format, how
 * eng_apply puts them in its batch, and reading them back
 * (eng_session_get, eng_session_foreach).
 *
 * Format, column family "sessions" (updated in place in the memtable, see
 * eng_open):
 *   key    "session/" | session key (1..ENG_SESSION_KEY_MAX opaque bytes)
 *   value  OFFSET SIZE DESCRIPTION
 *          0      8    ts of the commit that wrote it (big-endian)
 *          8      n    the opaque record (BSON to the txn layer)
 * Records are unversioned: a newer op for a key replaces the value. They
 * go into the same RocksDB batch as the entry's documents and watermark, so
 * a record and the writes it describes are durable together, and a
 * restart that replays the raft log above the watermark rewrites both.
 * The overlay ignores them: the txn layer keeps the primary's in-memory
 * session state.
 */
#include <string.h>

#include "engine/engine_int.h"

#define SESSION_PREFIX "session/"
#define SESSION_PREFIX_LEN (sizeof SESSION_PREFIX - 1)

/* Builds "session/<key>" into `k` (reset first). */
static int session_key(struct cairn_buf *k, const uint8_t *key, size_t key_len)
{
    cairn_buf_reset(k);
    if (cairn_buf_append(k, SESSION_PREFIX, SESSION_PREFIX_LEN) != 0 ||
        (key_len > 0 && cairn_buf_append(k, key, key_len) != 0)) {
        return CAIRN_ENOMEM;
    }
    return 0;
}

int eng_session_batch_put(struct eng *e,
                          rocksdb_writebatch_t *b,
                          const struct eng_op *op,
                          cairn_ts ts,
                          struct cairn_buf *k,
                          struct cairn_buf *v)
{
    int rv = session_key(k, op->key, op->key_len);

    cairn_buf_reset(v);
    rv = rv ? rv : cairn_buf_put_be64(v, ts);
    if (rv == 0 && op->doc_len > 0) {
        rv = cairn_buf_append(v, op->doc, op->doc_len);
    }
    if (rv == 0) {
        rocksdb_writebatch_put_cf(b, e->cf_sessions, (const char *)k->data, k->len,
                                  (const char *)v->data, v->len);
    }
    return rv;
}

int eng_session_get(struct eng *e,
                    const uint8_t *key,
                    size_t key_len,
                    struct cairn_buf *rec,
                    cairn_ts *ts,
                    struct cairn_error *err)
{
    struct cairn_buf k = CAIRN_BUF_INIT;
    char *msg = NULL, *val;
    size_t vlen = 0;
    int rv;

    if (key == NULL || key_len == 0 || key_len > ENG_SESSION_KEY_MAX) {
        return cairn_error_setf(err, CAIRN_EINVAL, "engine: session key of %zu bytes (1..%d)",
                                key_len, ENG_SESSION_KEY_MAX);
    }
    if (session_key(&k, key, key_len) != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
        goto err_after_key;
    }
    val = rocksdb_get_cf(e->db, e->ro_plain, e->cf_sessions, (const char *)k.data, k.len, &vlen,
                         &msg);
    if (msg != NULL) {
        rv = eng_rocks_error(err, msg, "session get");
        goto err_after_key;
    }
    if (val == NULL) {
        rv = CAIRN_ENOTFOUND;
        goto err_after_key;
    }
    if (vlen < 8) {
        rv = cairn_error_setf(err, CAIRN_ECORRUPT, "engine: session record of %zu bytes", vlen);
        goto err_after_val;
    }
    if (rec != NULL && cairn_buf_append(rec, val + 8, vlen - 8) != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
        goto err_after_val;
    }
    if (ts != NULL) {
        *ts = cairn_load_be64((const uint8_t *)val);
    }
    rocksdb_free(val);
    cairn_buf_free(&k);
    return 0;

err_after_val:
    rocksdb_free(val);
err_after_key:
    cairn_buf_free(&k);
    return rv;
}

int eng_session_foreach(struct eng *e,
                        const uint8_t *prefix,
                        size_t prefix_len,
                        int (*fn)(void *arg,
                                  const uint8_t *key,
                                  size_t key_len,
                                  const uint8_t *rec,
                                  size_t rec_len,
                                  cairn_ts ts),
                        void *arg,
                        struct cairn_error *err)
{
    /* An iterator reads one consistent view of the database. */
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, e->ro_plain, e->cf_sessions);
    struct cairn_buf start = CAIRN_BUF_INIT;
    char *msg = NULL;
    int rv = 0;

    if (session_key(&start, prefix, prefix_len) != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
        goto out;
    }
    for (rocksdb_iter_seek(it, (const char *)start.data, start.len); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (klen < start.len || memcmp(k, start.data, start.len) != 0) {
            break;
        }
        if (vlen < 8) {
            rv = cairn_error_setf(err, CAIRN_ECORRUPT, "engine: session record of %zu bytes", vlen);
            break;
        }
        if (fn(arg, (const uint8_t *)k + SESSION_PREFIX_LEN, klen - SESSION_PREFIX_LEN,
               (const uint8_t *)v + 8, vlen - 8, cairn_load_be64((const uint8_t *)v)) != 0) {
            break;
        }
    }
    if (rv == 0) {
        rocksdb_iter_get_error(it, &msg);
        if (msg != NULL) {
            rv = eng_rocks_error(err, msg, "session walk");
        }
    }
out:
    cairn_buf_free(&start);
    rocksdb_iter_destroy(it);
    return rv;
}
