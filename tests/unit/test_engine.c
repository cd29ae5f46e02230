/*
 * test_engine.c: unit tests of the storage engine's committed state: MVCC
 * visibility, key isolation, iteration and resume, apply idempotence, the
 * watermark, zero-op commits, session records, the catalog and metadata
 * blobs, across close and reopen.
 */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"

#include "engine_fixture.h"

static void setup(void)
{
    engine_fixture_setup("engine");
}

/* A self-delimiting key: the text plus a 0 terminator byte. */
struct key
{
    uint8_t b[64];
    size_t n;
};

static struct key K(const char *s)
{
    struct key k;
    k.n = strlen(s) + 1;
    memcpy(k.b, s, k.n); /* includes the terminator */
    return k;
}

static struct eng_op
put_op(uint64_t coll, struct key *k, const char *doc)
{
    struct eng_op op = {ENG_OP_PUT, coll, NULL, k->b, k->n, (const uint8_t *)doc, strlen(doc)};
    return op;
}

static struct eng_op del_op(uint64_t coll, struct key *k)
{
    struct eng_op op = {ENG_OP_DELETE, coll, NULL, k->b, k->n, NULL, 0};
    return op;
}

static void apply1(cairn_index idx, cairn_ts ts, const struct eng_op *ops, size_t n)
{
    struct eng_commit c = {ts, ops, n};
    struct cairn_error err = {0};
    int rv = eng_apply(g_e, &c, 1, idx, &err);
    ck_assert_msg(rv == 0, "eng_apply: %s", err.msg);
}

static void put(cairn_index idx, cairn_ts ts, uint64_t coll, const char *key, const char *doc)
{
    struct key k = K(key);
    struct eng_op op = put_op(coll, &k, doc);
    apply1(idx, ts, &op, 1);
}

static void del(cairn_index idx, cairn_ts ts, uint64_t coll, const char *key)
{
    struct key k = K(key);
    struct eng_op op = del_op(coll, &k);
    apply1(idx, ts, &op, 1);
}

/* Reads (coll, key) at read_ts; returns the doc as a static string or NULL. */
static const char *get_at(uint64_t coll, const char *key, cairn_ts read_ts)
{
    static char out[256];
    struct eng_snap *s;
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    struct key k = K(key);
    int rv;

    ck_assert_int_eq(eng_snap_acquire(g_e, false, read_ts, &s, &err), 0);
    rv = eng_snap_get(s, coll, k.b, k.n, &b, &err);
    eng_snap_release(s);
    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_msg(rv == 0, "get: %s", err.msg);
    ck_assert_uint_lt(b.len, sizeof out);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

/* Iterates coll at read_ts from after `after` (NULL = start) and writes
 * "key=doc," pairs (keys without terminator) into out. Returns the count. */
static int scan(uint64_t coll, cairn_ts read_ts, const char *after, char *out, size_t cap)
{
    struct eng_snap *s;
    struct eng_iter *it;
    struct cairn_error err = {0};
    struct key a;
    const uint8_t *k, *d;
    size_t kl, dl;
    int n = 0, r;
    size_t len = 0;

    out[0] = '\0';
    ck_assert_int_eq(eng_snap_acquire(g_e, false, read_ts, &s, &err), 0);
    if (after != NULL) {
        a = K(after);
    }
    ck_assert_int_eq(eng_iter_open(s, coll, after ? a.b : NULL, after ? a.n : 0, &it, &err), 0);
    while ((r = eng_iter_next(it, &k, &kl, &d, &dl)) == 1) {
        ck_assert_uint_ge(kl, 1);
        ck_assert_int_eq(k[kl - 1], 0);
        len += (size_t)snprintf(out + len, cap - len, "%.*s=%.*s,", (int)(kl - 1), (const char *)k,
                                (int)dl, (const char *)d);
        ck_assert_uint_lt(len, cap);
        n++;
    }
    ck_assert_msg(r == 0, "iter: %s", eng_iter_error(it)->msg);
    eng_iter_close(it);
    eng_snap_release(s);
    return n;
}

/* ---- MVCC visibility ---------------------------------------------------- */

START_TEST(test_mvcc_visibility)
{
    static const struct
    {
        cairn_ts read_ts;
        const char *a; /* put 10, 20, 30 */
        const char *b; /* put 10, delete 20, put 30 */
        const char *c; /* put 10, 20, delete 30 */
    } cases[] = {
        {5, NULL, NULL, NULL},    {10, "a10", "b10", "c10"},          {15, "a10", "b10", "c10"},
        {20, "a20", NULL, "c20"}, {25, "a20", NULL, "c20"},           {30, "a30", "b30", NULL},
        {35, "a30", "b30", NULL}, {CAIRN_TS_MAX, "a30", "b30", NULL},
    };
    put(1, 10, 1, "a", "a10");
    put(2, 10, 1, "b", "b10");
    put(3, 10, 1, "c", "c10");
    put(4, 20, 1, "a", "a20");
    del(5, 20, 1, "b");
    put(6, 20, 1, "c", "c20");
    put(7, 30, 1, "a", "a30");
    put(8, 30, 1, "b", "b30");
    del(9, 30, 1, "c");

    /* Round 0 reads the memtable, round 1 SST files (prefix bloom path). */
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            ck_assert_int_eq(eng_flush(g_e, NULL), 0);
            reopen();
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const char *want[3] = {cases[i].a, cases[i].b, cases[i].c};
            const char *keys[3] = {"a", "b", "c"};
            char expect[128] = "", got[256];
            size_t len = 0;
            int n = 0;
            for (int j = 0; j < 3; j++) {
                const char *v = get_at(1, keys[j], cases[i].read_ts);
                if (want[j] == NULL) {
                    ck_assert_msg(v == NULL, "case %zu key %s: got %s", i, keys[j], v);
                } else {
                    ck_assert_msg(v != NULL && strcmp(v, want[j]) == 0, "case %zu key %s: got %s",
                                  i, keys[j], v ? v : "(none)");
                    len += (size_t)snprintf(expect + len, sizeof expect - len, "%s=%s,", keys[j],
                                            want[j]);
                    n++;
                }
            }
            ck_assert_int_eq(scan(1, cases[i].read_ts, NULL, got, sizeof got), n);
            ck_assert_str_eq(got, expect);
        }
    }
}
END_TEST

START_TEST(test_keys_do_not_bleed)
{
    char got[512];

    /* "ab\0" follows "a\0" in byte order; neither is a prefix of the other. */
    put(1, 10, 1, "ab", "ab10");
    ck_assert_ptr_null(get_at(1, "a", CAIRN_TS_MAX));
    put(2, 20, 1, "a", "a20");
    ck_assert_ptr_null(get_at(1, "a", 15)); /* must not land on "ab" */
    ck_assert_str_eq(get_at(1, "a", 20), "a20");
    ck_assert_str_eq(get_at(1, "ab", 20), "ab10");
    ck_assert_ptr_null(get_at(1, "ab", 5));

    /* Collections 2 and 3 next to each other, 256 far away. */
    put(3, 30, 2, "z", "c2z");
    put(4, 30, 3, "a", "c3a");
    put(5, 30, 256, "a", "c256a");
    ck_assert_ptr_null(get_at(2, "a", CAIRN_TS_MAX));
    ck_assert_ptr_null(get_at(3, "z", CAIRN_TS_MAX));
    ck_assert_ptr_null(get_at(4, "a", CAIRN_TS_MAX));
    ck_assert_ptr_null(get_at(0, "a", CAIRN_TS_MAX));
    ck_assert_str_eq(get_at(256, "a", CAIRN_TS_MAX), "c256a");

    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            ck_assert_int_eq(eng_flush(g_e, NULL), 0);
            reopen();
            ck_assert_ptr_null(get_at(1, "a", 15));
            ck_assert_str_eq(get_at(1, "a", 20), "a20");
            ck_assert_ptr_null(get_at(2, "a", CAIRN_TS_MAX));
            ck_assert_ptr_null(get_at(3, "z", CAIRN_TS_MAX));
            ck_assert_str_eq(get_at(256, "a", CAIRN_TS_MAX), "c256a");
        }
        ck_assert_int_eq(scan(1, CAIRN_TS_MAX, NULL, got, sizeof got), 2);
        ck_assert_str_eq(got, "a=a20,ab=ab10,");
        ck_assert_int_eq(scan(2, CAIRN_TS_MAX, NULL, got, sizeof got), 1);
        ck_assert_str_eq(got, "z=c2z,");
        ck_assert_int_eq(scan(3, CAIRN_TS_MAX, NULL, got, sizeof got), 1);
        ck_assert_str_eq(got, "a=c3a,");
        ck_assert_int_eq(scan(4, CAIRN_TS_MAX, NULL, got, sizeof got), 0);
        /* Collection 2 only has a version newer than the read: nothing, and
         * the scan must not run into collection 3. */
        ck_assert_int_eq(scan(2, 25, NULL, got, sizeof got), 0);
        ck_assert_int_eq(scan(1, 15, NULL, got, sizeof got), 1);
        ck_assert_str_eq(got, "ab=ab10,");
    }
}
END_TEST

START_TEST(test_key_with_high_bytes)
{
    /* Keys whose bytes are 0xff next to the ~ts suffix must still work. */
    uint8_t k1[] = {0xff, 0xff, 0x00};
    uint8_t k2[] = {0xff, 0x00};
    struct eng_op ops[2] = {
        {ENG_OP_PUT, 7, NULL, k1, sizeof k1, (const uint8_t *)"one", 3},
        {ENG_OP_PUT, 7, NULL, k2, sizeof k2, (const uint8_t *)"two", 3},
    };
    struct eng_snap *s;
    struct eng_iter *it;
    struct cairn_buf b = CAIRN_BUF_INIT;
    const uint8_t *k, *d;
    size_t kl, dl;

    apply1(1, CAIRN_TS(1, 1), ops, 2);
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_int_eq(eng_snap_get(s, 7, k1, sizeof k1, &b, NULL), 0);
    ck_assert_int_eq(b.len, 3);
    ck_assert_int_eq(memcmp(b.data, "one", 3), 0);
    ck_assert_int_eq(eng_iter_open(s, 7, NULL, 0, &it, NULL), 0);
    ck_assert_int_eq(eng_iter_next(it, &k, &kl, &d, &dl), 1);
    ck_assert_int_eq(kl, 2); /* ff 00 sorts before ff ff 00 */
    ck_assert_int_eq(eng_iter_next(it, &k, &kl, &d, &dl), 1);
    ck_assert_int_eq(kl, 3);
    ck_assert_int_eq(eng_iter_next(it, &k, &kl, &d, &dl), 0);
    eng_iter_close(it);
    eng_snap_release(s);
    cairn_buf_free(&b);
}
END_TEST

/* ---- Iteration ---------------------------------------------------------- */

START_TEST(test_iter_order_and_resume)
{
    static const char *keys[] = {"m", "c", "x", "a", "q", "b", "ca", "z", "n", "d"};
    static const char *sorted[] = {"a", "b", "c", "ca", "d", "m", "n", "q", "x", "z"};
    char got[1024], expect[1024];
    cairn_index idx = 1;
    size_t n = sizeof keys / sizeof keys[0];

    for (size_t i = 0; i < n; i++) {
        char doc[16];
        snprintf(doc, sizeof doc, "d%s", keys[i]);
        put(idx, idx * 10, 5, keys[i], doc);
        idx++;
    }
    /* Key "m" gets a long history, so skipping it needs the seek path. */
    for (int v = 0; v < 40; v++) {
        char doc[16];
        snprintf(doc, sizeof doc, "m%d", v);
        put(idx, idx * 10, 5, "m", doc);
        idx++;
    }
    /* Tombstone for "q". */
    del(idx, idx * 10, 5, "q");
    idx++;

    /* Full scan. */
    {
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(sorted[i], "q") == 0) {
                continue;
            }
            len += (size_t)snprintf(expect + len, sizeof expect - len, "%s=%s%s,", sorted[i],
                                    strcmp(sorted[i], "m") == 0 ? "" : "d",
                                    strcmp(sorted[i], "m") == 0 ? "m39" : sorted[i]);
        }
    }
    ck_assert_int_eq(scan(5, CAIRN_TS_MAX, NULL, got, sizeof got), 9);
    ck_assert_str_eq(got, expect);

    /* Resume after each key: the rest of the expected string. */
    for (size_t i = 0; i < n; i++) {
        char *rest;
        char needle[16];
        int cnt = scan(5, CAIRN_TS_MAX, sorted[i], got, sizeof got);
        snprintf(needle, sizeof needle, "%s=", sorted[i]);
        if (strcmp(sorted[i], "q") == 0) {
            rest = strstr(expect, "x=");
        } else {
            rest = strstr(expect, needle);
            ck_assert_ptr_nonnull(rest);
            rest = strchr(rest, ',') + 1;
        }
        ck_assert_str_eq(got, rest);
        ck_assert_int_ge(cnt, 0);
    }
    /* Resume after keys that do not exist. */
    scan(5, CAIRN_TS_MAX, "cb", got, sizeof got);
    ck_assert_str_eq(got, strstr(expect, "d="));
    scan(5, CAIRN_TS_MAX, "", got, sizeof got);
    ck_assert_str_eq(got, expect);
    ck_assert_int_eq(scan(5, CAIRN_TS_MAX, "zz", got, sizeof got), 0);

    /* At a read ts in the middle of m's history: m shows that version and
     * keys written later are hidden. */
    ck_assert_int_eq(scan(5, 150, NULL, got, sizeof got), 10);
    ck_assert_str_eq(got, "a=da,b=db,c=dc,ca=dca,d=dd,m=m4,n=dn,q=dq,x=dx,z=dz,");
    ck_assert_int_eq(scan(5, 35, NULL, got, sizeof got), 3);
    ck_assert_str_eq(got, "c=dc,m=dm,x=dx,");
    ck_assert_int_eq(scan(5, 35, "m", got, sizeof got), 1);
    ck_assert_str_eq(got, "x=dx,");
    ck_assert_int_eq(scan(5, 5, NULL, got, sizeof got), 0);
}
END_TEST

START_TEST(test_iter_many_hidden_versions)
{
    /* 50 versions of "k" newer than the read ts and an older visible one. */
    char got[256];
    put(1, 10, 9, "k", "old");
    for (int i = 0; i < 50; i++) {
        put((cairn_index)(2 + i), (cairn_ts)(100 + i), 9, "k", "new");
    }
    put(60, 200, 9, "l", "l");
    ck_assert_int_eq(scan(9, 50, NULL, got, sizeof got), 1);
    ck_assert_str_eq(got, "k=old,");
    ck_assert_int_eq(scan(9, CAIRN_TS_MAX, NULL, got, sizeof got), 2);
    ck_assert_str_eq(got, "k=new,l=l,");
    ck_assert_str_eq(get_at(9, "k", 99), "old");
    ck_assert_str_eq(get_at(9, "k", 120), "new");
}
END_TEST

/* ---- Apply, watermark --------------------------------------------------- */

START_TEST(test_apply_idempotent)
{
    cairn_index idx;
    cairn_ts ts;

    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 0);
    ck_assert_uint_eq(ts, 0);
    put(5, 50, 1, "a", "first");
    put(5, 60, 1, "a", "second"); /* same index: skipped */
    put(4, 70, 1, "b", "older");  /* lower index: skipped */
    ck_assert_str_eq(get_at(1, "a", CAIRN_TS_MAX), "first");
    ck_assert_ptr_null(get_at(1, "b", CAIRN_TS_MAX));
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 5);
    ck_assert_uint_eq(ts, 50);

    /* An entry with no commits still moves the index, not the ts. */
    ck_assert_int_eq(eng_apply(g_e, NULL, 0, 6, NULL), 0);
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 6);
    ck_assert_uint_eq(ts, 50);

    /* Several commits in one entry: watermark ts is the last one's. */
    {
        struct key k1 = K("x"), k2 = K("y");
        struct eng_op o1 = put_op(1, &k1, "x"), o2 = put_op(1, &k2, "y");
        struct eng_commit cs[2] = {{70, &o1, 1}, {80, &o2, 1}};
        ck_assert_int_eq(eng_apply(g_e, cs, 2, 7, NULL), 0);
        eng_applied(g_e, &idx, &ts);
        ck_assert_uint_eq(idx, 7);
        ck_assert_uint_eq(ts, 80);
        ck_assert_str_eq(get_at(1, "x", 75), "x");
        ck_assert_ptr_null(get_at(1, "y", 75));
    }
}
END_TEST

START_TEST(test_watermark_persists)
{
    cairn_index idx;
    cairn_ts ts;
    struct eng_snap *s;

    put(41, CAIRN_TS(1000, 3), 1, "a", "doc");
    reopen();
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 41);
    ck_assert_uint_eq(ts, CAIRN_TS(1000, 3));
    ck_assert_str_eq(get_at(1, "a", CAIRN_TS_MAX), "doc");
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), CAIRN_TS(1000, 3));
    eng_snap_release(s);
    /* Replay of the same entry after restart is skipped. */
    put(41, CAIRN_TS(1000, 3), 1, "a", "replayed");
    ck_assert_str_eq(get_at(1, "a", CAIRN_TS_MAX), "doc");
    {
        struct cairn_error err = {0};
        ck_assert_int_eq(eng_flush(g_e, &err), 0);
    }
    reopen();
    ck_assert_str_eq(get_at(1, "a", CAIRN_TS_MAX), "doc");
}
END_TEST

START_TEST(test_apply_rejects_bad_ops)
{
    struct eng_op bad_key = {ENG_OP_PUT, 1, NULL, NULL, 0, (const uint8_t *)"d", 1};
    struct eng_op bad_kind = {99, 1, NULL, (const uint8_t *)"k", 1, NULL, 0};
    struct eng_op bad_ns = {ENG_OP_CREATE, 1, NULL, NULL, 0, NULL, 0};
    struct eng_commit c = {10, &bad_key, 1};
    struct cairn_error err = {0};
    cairn_index idx;

    ck_assert_int_eq(eng_apply(g_e, &c, 1, 1, &err), CAIRN_EINVAL);
    c.ops = &bad_kind;
    ck_assert_int_eq(eng_apply(g_e, &c, 1, 1, &err), CAIRN_EINVAL);
    c.ops = &bad_ns;
    ck_assert_int_eq(eng_apply(g_e, &c, 1, 1, &err), CAIRN_EINVAL);
    eng_applied(g_e, &idx, NULL);
    ck_assert_uint_eq(idx, 0);

    /* Session ops: empty or oversize keys; a bad op anywhere in the entry
     * writes nothing of it. */
    {
        uint8_t big[ENG_SESSION_KEY_MAX + 1];
        struct key k = K("d");
        struct eng_op ops[2] = {put_op(1, &k, "doc"),
                                {ENG_OP_SESSION, 0, NULL, big, 0, (const uint8_t *)"r", 1}};
        struct eng_commit cs[2] = {{10, ops, 1}, {20, ops + 1, 1}};
        memset(big, 's', sizeof big);
        ck_assert_int_eq(eng_apply(g_e, cs, 2, 1, &err), CAIRN_EINVAL);
        ops[1].key_len = sizeof big;
        ck_assert_int_eq(eng_apply(g_e, cs, 2, 1, &err), CAIRN_EINVAL);
        ops[1].key = NULL;
        ops[1].key_len = 4;
        ck_assert_int_eq(eng_apply(g_e, cs, 2, 1, &err), CAIRN_EINVAL);
        ops[1].key = big;
        ops[1].doc = NULL; /* a record length without bytes */
        ck_assert_int_eq(eng_apply(g_e, cs, 2, 1, &err), CAIRN_EINVAL);
        eng_applied(g_e, &idx, NULL);
        ck_assert_uint_eq(idx, 0);
        ck_assert_ptr_null(get_at(1, "d", CAIRN_TS_MAX));
    }
}
END_TEST

/* A commit without ops (ops NULL) applies: it moves the watermark's ts,
 * which persists. */
START_TEST(test_zero_op_commit)
{
    struct eng_commit empty[2] = {{60, NULL, 0}, {70, NULL, 0}};
    struct eng_snap *s;
    cairn_index idx;
    cairn_ts ts;

    put(1, 50, 1, "a", "a50");
    ck_assert_int_eq(eng_apply(g_e, empty, 1, 2, NULL), 0);
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 2);
    ck_assert_uint_eq(ts, 60);
    ck_assert_int_eq(eng_apply(g_e, empty + 1, 1, 3, NULL), 0);
    reopen();
    eng_applied(g_e, &idx, &ts);
    ck_assert_uint_eq(idx, 3);
    ck_assert_uint_eq(ts, 70);
    ck_assert_uint_eq(eng_visible_ts(g_e), 70);
    ck_assert_int_eq(eng_snap_acquire(g_e, false, CAIRN_TS_MAX, &s, NULL), 0);
    ck_assert_uint_eq(eng_snap_ts(s), 70);
    eng_snap_release(s);
    ck_assert_str_eq(get_at(1, "a", CAIRN_TS_MAX), "a50");
}
END_TEST

/* ---- Session records ---------------------------------------------------- */

static struct eng_op sess_op(const void *key, size_t key_len, const char *rec)
{
    struct eng_op op = {ENG_OP_SESSION,       0, NULL, key, key_len, (const uint8_t *)rec,
                        rec ? strlen(rec) : 0};
    return op;
}

/* The record stored under `key` (a C string) or NULL; *ts its commit's. */
static const char *sess_get(const char *key, cairn_ts *ts)
{
    static char out[256];
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    int rv = eng_session_get(g_e, (const uint8_t *)key, strlen(key), &b, ts, &err);

    if (rv == CAIRN_ENOTFOUND) {
        cairn_buf_free(&b);
        return NULL;
    }
    ck_assert_msg(rv == 0, "session get: %s", err.msg);
    ck_assert_uint_lt(b.len, sizeof out);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    cairn_buf_free(&b);
    return out;
}

struct sess_walk
{
    int n;
    int stop_after;
    char text[512];
    size_t len;
};

static int sess_walk_cb(void *arg,
                        const uint8_t *key,
                        size_t key_len,
                        const uint8_t *rec,
                        size_t rec_len,
                        cairn_ts ts)
{
    struct sess_walk *w = arg;

    w->len += (size_t)snprintf(w->text + w->len, sizeof w->text - w->len, "%.*s=%.*s@%llu,",
                               (int)(key_len > 8 ? 8 : key_len), (const char *)key, (int)rec_len,
                               (const char *)rec, (unsigned long long)ts);
    w->n++;
    return w->stop_after != 0 && w->n >= w->stop_after;
}

/* Session records are stored by eng_apply with the entry's data, each with
 * its commit's ts (the last op for a key wins), are skipped with a replayed
 * entry, survive a restart, and are walked in key order. */
START_TEST(test_session_records)
{
    struct key d = K("d");
    uint8_t key64[ENG_SESSION_KEY_MAX];
    struct cairn_error err = {0};
    struct sess_walk w = {0};
    cairn_ts ts = 0;

    memset(key64, 0xee, sizeof key64);
    key64[3] = 0; /* opaque bytes */
    {
        struct eng_op ops[3] = {put_op(1, &d, "doc"), sess_op("lsid-A", 6, "recA1"),
                                sess_op("lsid-B", 6, "recB1")};
        apply1(1, 10, ops, 3);
    }
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS_MAX), "doc");
    ck_assert_str_eq(sess_get("lsid-A", &ts), "recA1");
    ck_assert_uint_eq(ts, 10);
    ck_assert_str_eq(sess_get("lsid-B", &ts), "recB1");
    {
        struct eng_op o1 = sess_op("lsid-A", 6, "recA2"), o2 = sess_op("lsid-A", 6, "recA3");
        struct eng_op o3[2] = {sess_op("lsid-C", 6, "first"), sess_op("lsid-C", 6, "second")};
        struct eng_commit cs[3] = {{20, &o1, 1}, {30, &o2, 1}, {30, o3, 2}};
        ck_assert_int_eq(eng_apply(g_e, cs, 3, 2, &err), 0);
    }
    ck_assert_str_eq(sess_get("lsid-A", &ts), "recA3");
    ck_assert_uint_eq(ts, 30);
    ck_assert_str_eq(sess_get("lsid-C", &ts), "second");
    /* A replayed entry is skipped, records included. */
    {
        struct eng_op o = sess_op("lsid-B", 6, "replayed");
        apply1(2, 40, &o, 1);
    }
    ck_assert_str_eq(sess_get("lsid-B", &ts), "recB1");
    ck_assert_uint_eq(ts, 10);
    /* The longest key, an empty record; rec and ts may be NULL. */
    {
        struct eng_op o = sess_op(key64, sizeof key64, NULL);
        struct cairn_buf b = CAIRN_BUF_INIT;
        apply1(3, 50, &o, 1);
        ck_assert_int_eq(eng_session_get(g_e, key64, sizeof key64, &b, &ts, &err), 0);
        ck_assert_uint_eq(b.len, 0);
        ck_assert_uint_eq(ts, 50);
        ck_assert_int_eq(eng_session_get(g_e, key64, sizeof key64, NULL, NULL, &err), 0);
        cairn_buf_free(&b);
    }
    ck_assert_ptr_null(sess_get("lsid-Z", &ts));
    ck_assert_int_eq(eng_session_get(g_e, key64, 0, NULL, &ts, &err), CAIRN_EINVAL);
    ck_assert_int_eq(eng_session_get(g_e, NULL, 3, NULL, &ts, &err), CAIRN_EINVAL);
    ck_assert_int_eq(eng_session_get(g_e, key64, ENG_SESSION_KEY_MAX + 1, NULL, &ts, &err),
                     CAIRN_EINVAL);
    /* Records live apart from meta blobs. */
    ck_assert_int_eq(eng_meta_put(g_e, "lsid-A", "meta", 4, &err), 0);
    ck_assert_str_eq(sess_get("lsid-A", &ts), "recA3");

    /* Restart (the WAL), then again after a flush (the SST files). */
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            ck_assert_int_eq(eng_flush(g_e, &err), 0);
        }
        reopen();
        ck_assert_str_eq(sess_get("lsid-A", &ts), "recA3");
        ck_assert_uint_eq(ts, 30);
        memset(&w, 0, sizeof w);
        ck_assert_int_eq(eng_session_foreach(g_e, NULL, 0, sess_walk_cb, &w, &err), 0);
        ck_assert_int_eq(w.n, 4);
        ck_assert_str_eq(w.text,
                         "lsid-A=recA3@30,lsid-B=recB1@10,lsid-C=second@30,"
                         "\xee\xee\xee=@50,");
    }
    /* A prefix walks only the keys that start with it. */
    memset(&w, 0, sizeof w);
    ck_assert_int_eq(eng_session_foreach(g_e, (const uint8_t *)"lsid-", 5, sess_walk_cb, &w, &err),
                     0);
    ck_assert_str_eq(w.text, "lsid-A=recA3@30,lsid-B=recB1@10,lsid-C=second@30,");
    memset(&w, 0, sizeof w);
    ck_assert_int_eq(eng_session_foreach(g_e, (const uint8_t *)"lsid-B", 6, sess_walk_cb, &w, &err),
                     0);
    ck_assert_str_eq(w.text, "lsid-B=recB1@10,");
    /* fn stops the walk early. */
    memset(&w, 0, sizeof w);
    w.stop_after = 2;
    ck_assert_int_eq(eng_session_foreach(g_e, NULL, 0, sess_walk_cb, &w, &err), 0);
    ck_assert_int_eq(w.n, 2);
    ck_assert_str_eq(get_at(1, "d", CAIRN_TS_MAX), "doc");
}
END_TEST

START_TEST(test_open_error)
{
    struct eng *e2 = NULL;
    struct cairn_error err = {0};
    char path[128];
    FILE *f;

    /* A second open of the same directory fails on RocksDB's lock. */
    ck_assert_int_eq(eng_open(g_dir, &e2, &err), CAIRN_EIO);
    ck_assert_ptr_null(e2);
    ck_assert_ptr_nonnull(strstr(err.msg, "rocksdb"));

    /* A path under a regular file. */
    snprintf(path, sizeof path, "%s/file", g_dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/file/db", g_dir);
    ck_assert_int_eq(eng_open(path, &e2, &err), CAIRN_EIO);
    ck_assert_ptr_null(e2);
    ck_assert_int_eq(eng_open("", &e2, &err), CAIRN_EINVAL);
}
END_TEST

/* ---- Catalog ------------------------------------------------------------ */

static void create_coll(cairn_index idx, cairn_ts ts, const char *ns, uint64_t id)
{
    struct eng_op op = {ENG_OP_CREATE, id, ns, NULL, 0, NULL, 0};
    apply1(idx, ts, &op, 1);
}

static void drop_coll(cairn_index idx, cairn_ts ts, const char *ns, uint64_t id)
{
    struct eng_op op = {ENG_OP_DROP, id, ns, NULL, 0, NULL, 0};
    apply1(idx, ts, &op, 1);
}

static void check_list(const char *db, const char *expect)
{
    struct eng_coll_info *v;
    size_t n;
    char got[1024] = "";
    size_t len = 0;

    ck_assert_int_eq(eng_catalog_list(g_e, db, false, &v, &n), 0);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(got + len, sizeof got - len, "%s:%llu,", v[i].ns,
                                (unsigned long long)v[i].id);
    }
    free(v);
    ck_assert_str_eq(got, expect);
}

START_TEST(test_catalog)
{
    uint64_t id_a, id_b, id_c, id, max;

    id_a = eng_catalog_next_id(g_e);
    create_coll(1, 10, "db.b", id_a);
    id_b = eng_catalog_next_id(g_e);
    ck_assert_uint_gt(id_b, id_a);
    create_coll(2, 20, "db.a", id_b);
    id_c = eng_catalog_next_id(g_e);
    ck_assert_uint_gt(id_c, id_b);
    create_coll(3, 30, "dbx.c", id_c);

    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.a", false, &id), 0);
    ck_assert_uint_eq(id, id_b);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.a", true, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.zz", false, &id), CAIRN_ENOTFOUND);
    {
        char expect[256];
        snprintf(expect, sizeof expect, "db.a:%llu,db.b:%llu,", (unsigned long long)id_b,
                 (unsigned long long)id_a);
        check_list("db", expect);
        snprintf(expect, sizeof expect, "db.a:%llu,db.b:%llu,dbx.c:%llu,", (unsigned long long)id_b,
                 (unsigned long long)id_a, (unsigned long long)id_c);
        check_list(NULL, expect);
        check_list("nodb", "");
        check_list("d", "");
    }

    /* Documents of db.b, then drop it: documents go too. */
    put(4, 40, id_a, "k", "doc");
    put(5, 40, id_b, "k", "other");
    ck_assert_str_eq(get_at(id_a, "k", CAIRN_TS_MAX), "doc");
    drop_coll(6, 50, "db.b", id_a);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.b", false, &id), CAIRN_ENOTFOUND);
    ck_assert_ptr_null(get_at(id_a, "k", CAIRN_TS_MAX));
    ck_assert_str_eq(get_at(id_b, "k", CAIRN_TS_MAX), "other");
    {
        char got[64];
        ck_assert_int_eq(scan(id_a, CAIRN_TS_MAX, NULL, got, sizeof got), 0);
    }

    /* Ids stay monotonic across a restart, even for the dropped one and
     * one handed out but never used. */
    max = eng_catalog_next_id(g_e);
    reopen();
    id = eng_catalog_next_id(g_e);
    ck_assert_uint_gt(id, id_c);
    ck_assert_uint_gt(id, id_a);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.b", false, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.a", false, &id), 0);
    ck_assert_uint_eq(id, id_b);
    (void)max;

    /* Drop of the highest id, restart: that id is still never reused. */
    drop_coll(7, 60, "dbx.c", id_c);
    drop_coll(8, 70, NULL, id_b); /* ns resolved from the id */
    check_list(NULL, "");
    reopen();
    check_list(NULL, "");
    id = eng_catalog_next_id(g_e);
    ck_assert_uint_gt(id, id_c);

    /* Recreate a name with a new id. */
    create_coll(9, 80, "db.b", id);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.b", false, &max), 0);
    ck_assert_uint_eq(max, id);
    ck_assert_ptr_null(get_at(id, "k", CAIRN_TS_MAX));
}
END_TEST

/* A rename: the unbind of the old name (a drop with ENG_UNBIND_ID) and the
 * bind of its id to the new name in one commit keep every document; reads
 * below the commit's ts resolve the old name; a restart keeps the rename. */
START_TEST(test_catalog_rename_keeps_the_id)
{
    uint64_t src = eng_catalog_next_id(g_e), tgt = eng_catalog_next_id(g_e), id;

    create_coll(1, 10, "db.src", src);
    create_coll(2, 10, "db.tgt", tgt);
    put(3, 20, src, "k", "doc");
    put(4, 20, tgt, "k", "target");
    {
        struct eng_op ops[] = {
            {ENG_OP_DROP, tgt, "db.tgt", NULL, 0, NULL, 0},
            {ENG_OP_DROP, ENG_UNBIND_ID, "db.src", NULL, 0, NULL, 0},
            {ENG_OP_CREATE, src, "db.tgt", NULL, 0, NULL, 0},
        };
        apply1(5, 30, ops, 3);
    }
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.src", false, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.tgt", false, &id), 0);
    ck_assert_uint_eq(id, src);
    ck_assert_str_eq(get_at(src, "k", CAIRN_TS_MAX), "doc");
    ck_assert_ptr_null(get_at(tgt, "k", CAIRN_TS_MAX)); /* the dropped target's data */
    /* Below the rename the names mean what they meant then. */
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.src", false, 25, &id), 0);
    ck_assert_uint_eq(id, src);
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.tgt", false, 25, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.src", false, 30, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.tgt", false, 30, &id), 0);
    ck_assert_uint_eq(id, src);
    /* An unbind needs a name. */
    {
        struct eng_op bad = {ENG_OP_DROP, ENG_UNBIND_ID, NULL, NULL, 0, NULL, 0};
        struct eng_commit c = {40, &bad, 1};
        struct cairn_error err = {0};
        ck_assert_int_eq(eng_apply(g_e, &c, 1, 6, &err), CAIRN_EINVAL);
    }
    reopen();
    {
        char expect[64];
        snprintf(expect, sizeof expect, "db.tgt:%llu,", (unsigned long long)src);
        check_list("db", expect);
    }
    ck_assert_str_eq(get_at(src, "k", CAIRN_TS_MAX), "doc");
    ck_assert_uint_gt(eng_catalog_next_id(g_e), tgt);
}
END_TEST

/* The engine remembers the last 64 renames: 70 renames back and forth
 * between two names; the newest 64 resolve reads below them, the oldest
 * resolve as the current catalog does. */
START_TEST(test_catalog_rename_aliases_ring)
{
    uint64_t x = eng_catalog_next_id(g_e), id;
    cairn_index idx = 1;

    create_coll(idx++, 10, "db.a", x);
    for (int i = 0; i < 70; i++) {
        const char *from = i % 2 == 0 ? "db.a" : "db.b", *to = i % 2 == 0 ? "db.b" : "db.a";
        struct eng_op ops[] = {
            {ENG_OP_DROP, ENG_UNBIND_ID, from, NULL, 0, NULL, 0},
            {ENG_OP_CREATE, x, to, NULL, 0, NULL, 0},
        };
        apply1(idx++, (cairn_ts)(100 + 10 * i), ops, 2);
    }
    /* 70 renames: db.a -> db.b at even i, so after the last (i = 69) the
     * collection is db.a. Reads between rename i-1 and i (ts in
     * (100+10(i-1), 100+10i)) see the name it had before rename i. */
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.a", false, &id), 0);
    for (int i = 6; i < 70; i++) {
        cairn_ts at = (cairn_ts)(100 + 10 * i - 5);
        const char *had = i % 2 == 0 ? "db.a" : "db.b", *not = i % 2 == 0 ? "db.b" : "db.a";
        ck_assert_msg(eng_catalog_lookup_at(g_e, had, false, at, &id) == 0 && id == x,
                      "rename %d: %s at %llu", i, had, (unsigned long long)at);
        ck_assert_msg(eng_catalog_lookup_at(g_e, not, false, at, &id) == CAIRN_ENOTFOUND,
                      "rename %d: %s at %llu", i, not, (unsigned long long)at);
    }
    /* Below the forgotten ones the first remembered rename decides: the
     * newest 64 are i = 6..69; i = 6 renames db.a away. */
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.a", false, 50, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", false, 50, &id), CAIRN_ENOTFOUND);
    /* Between renames 0 and 1 the name was db.b, but rename 1 is
     * forgotten: the read resolves as below rename 6. */
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", false, 105, &id), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.a", false, 105, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.a", false, CAIRN_TS_MAX, &id), 0);
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", false, CAIRN_TS_MAX, &id), CAIRN_ENOTFOUND);
    /* The same after a reopen (the renames are persisted in 64 slots),
     * and a rename applied after it takes the oldest slot. */
    for (int round = 0; round < 2; round++) {
        reopen();
        for (int i = 6 + round; i < 70 + round; i++) {
            cairn_ts at = (cairn_ts)(100 + 10 * i - 5);
            const char *had = i % 2 == 0 ? "db.a" : "db.b";
            const char *not = i % 2 == 0 ? "db.b" : "db.a";
            ck_assert_msg(eng_catalog_lookup_at(g_e, had, false, at, &id) == 0 && id == x,
                          "round %d, rename %d: %s at %llu", round, i, had, (unsigned long long)at);
            ck_assert_msg(eng_catalog_lookup_at(g_e, not, false, at, &id) == CAIRN_ENOTFOUND,
                          "round %d, rename %d: %s at %llu", round, i, not, (unsigned long long)at);
        }
        if (round == 0) {
            struct eng_op ops[] = {
                {ENG_OP_DROP, ENG_UNBIND_ID, "db.a", NULL, 0, NULL, 0},
                {ENG_OP_CREATE, x, "db.b", NULL, 0, NULL, 0},
            };
            apply1(idx++, (cairn_ts)(100 + 10 * 70), ops, 2);
        }
    }
    ck_assert_int_eq(eng_catalog_lookup(g_e, "db.b", false, &id), 0);
}
END_TEST

/* A rename still in the overlay's pending catalog: local reads below it
 * resolve the old names as after its apply; committed reads do not see it
 * yet; after the apply, the same answers come from the applied renames. */
START_TEST(test_catalog_rename_pending)
{
    uint64_t x = eng_catalog_next_id(g_e), y = eng_catalog_next_id(g_e), id;
    struct eng_op ops[] = {
        {ENG_OP_DROP, y, "db.b", NULL, 0, NULL, 0},
        {ENG_OP_DROP, ENG_UNBIND_ID, "db.a", NULL, 0, NULL, 0},
        {ENG_OP_CREATE, x, "db.b", NULL, 0, NULL, 0},
    };
    struct eng_commit cm = {30, ops, 3};

    create_coll(1, 10, "db.a", x);
    create_coll(2, 10, "db.b", y);
    ck_assert_int_eq(eng_overlay_add(g_e, &cm), 0);
    for (int applied = 0; applied < 2; applied++) {
        ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.a", true, 20, &id), 0);
        ck_assert_uint_eq(id, x);
        ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", true, 20, &id), CAIRN_ENOTFOUND);
        ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.a", true, 30, &id), CAIRN_ENOTFOUND);
        ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", true, 30, &id), 0);
        ck_assert_uint_eq(id, x);
        ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", true, CAIRN_TS_MAX, &id), 0);
        ck_assert_uint_eq(id, x);
        ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.a", false, 20, &id), 0);
        ck_assert_uint_eq(id, x);
        if (applied == 0) {
            /* Not applied: the committed view still has both names. */
            ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", false, 35, &id), 0);
            ck_assert_uint_eq(id, y);
            apply1(3, 30, ops, 3);
        }
    }
    ck_assert_int_eq(eng_catalog_lookup_at(g_e, "db.b", false, 35, &id), 0);
    ck_assert_uint_eq(id, x);
}
END_TEST

START_TEST(test_create_and_put_same_entry)
{
    struct key k = K("doc");
    uint64_t id = eng_catalog_next_id(g_e);
    struct eng_op ops[2] = {{ENG_OP_CREATE, id, "t.c", NULL, 0, NULL, 0}, put_op(id, &k, "v")};
    uint64_t got;

    apply1(1, 10, ops, 2);
    ck_assert_int_eq(eng_catalog_lookup(g_e, "t.c", false, &got), 0);
    ck_assert_uint_eq(got, id);
    ck_assert_str_eq(get_at(id, "doc", CAIRN_TS_MAX), "v");
    /* Drop and recreate-and-fill with another id in one entry. */
    {
        uint64_t id2 = eng_catalog_next_id(g_e);
        struct eng_op ops2[3] = {{ENG_OP_DROP, id, "t.c", NULL, 0, NULL, 0},
                                 {ENG_OP_CREATE, id2, "t.c", NULL, 0, NULL, 0},
                                 put_op(id2, &k, "v2")};
        apply1(2, 20, ops2, 3);
        ck_assert_int_eq(eng_catalog_lookup(g_e, "t.c", false, &got), 0);
        ck_assert_uint_eq(got, id2);
        ck_assert_str_eq(get_at(id2, "doc", CAIRN_TS_MAX), "v2");
        ck_assert_ptr_null(get_at(id, "doc", CAIRN_TS_MAX));
    }
}
END_TEST

/* ---- Meta --------------------------------------------------------------- */

START_TEST(test_meta)
{
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err = {0};

    ck_assert_int_eq(eng_meta_get(g_e, "config", &b, &err), CAIRN_ENOTFOUND);
    ck_assert_int_eq(eng_meta_put(g_e, "config", "abc\0def", 7, &err), 0);
    ck_assert_int_eq(eng_meta_put(g_e, "empty", NULL, 0, &err), 0);
    ck_assert_int_eq(eng_meta_get(g_e, "config", &b, &err), 0);
    ck_assert_uint_eq(b.len, 7);
    ck_assert_int_eq(memcmp(b.data, "abc\0def", 7), 0);
    /* Appends to the buffer. */
    ck_assert_int_eq(eng_meta_get(g_e, "config", &b, &err), 0);
    ck_assert_uint_eq(b.len, 14);
    cairn_buf_reset(&b);
    ck_assert_int_eq(eng_meta_get(g_e, "empty", &b, &err), 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(eng_meta_put(g_e, "config", "new", 3, &err), 0);
    ck_assert_int_eq(eng_meta_get(g_e, "", &b, &err), CAIRN_EINVAL);
    /* Meta names do not collide with the catalog or the watermark. */
    ck_assert_int_eq(eng_meta_get(g_e, "applied", &b, &err), CAIRN_ENOTFOUND);
    reopen();
    cairn_buf_reset(&b);
    ck_assert_int_eq(eng_meta_get(g_e, "config", &b, &err), 0);
    ck_assert_uint_eq(b.len, 3);
    ck_assert_int_eq(memcmp(b.data, "new", 3), 0);
    cairn_buf_free(&b);
}
END_TEST

/* ---- Size estimates ------------------------------------------------------ */

START_TEST(test_approx_size_counts_one_key_space)
{
    struct cairn_error err = {0};
    uint64_t b5 = 1, b6 = 1, b7 = 1;
    char key[32];
    char doc[200];
    cairn_index idx = 1;

    memset(doc, 'x', sizeof doc - 1);
    doc[sizeof doc - 1] = '\0';
    /* Collection 5 gets ~1000 documents, 7 a single one, 6 none. */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%06d", i);
        doc[0] = (char)('a' + i % 26);
        put(idx, (cairn_ts)(10 + idx), 5, key, doc);
        idx++;
    }
    put(idx, (cairn_ts)(10 + idx), 7, "only", "one");
    ck_assert_int_eq(eng_flush(g_e, &err), 0);
    ck_assert_int_eq(eng_approx_size(g_e, 5, &b5, &err), 0);
    ck_assert_int_eq(eng_approx_size(g_e, 6, &b6, &err), 0);
    ck_assert_int_eq(eng_approx_size(g_e, 7, &b7, &err), 0);
    ck_assert_uint_gt(b5, 2000);   /* compressed, but not to nothing */
    ck_assert_uint_lt(b5, 400000); /* ~200 KB raw, key and version overhead included */
    ck_assert_uint_eq(b6, 0);
    ck_assert_uint_lt(b7, b5);
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mvcc_visibility);
    tcase_add_test(tc, test_keys_do_not_bleed);
    tcase_add_test(tc, test_key_with_high_bytes);
    tcase_add_test(tc, test_iter_order_and_resume);
    tcase_add_test(tc, test_iter_many_hidden_versions);
    tcase_add_test(tc, test_apply_idempotent);
    tcase_add_test(tc, test_watermark_persists);
    tcase_add_test(tc, test_apply_rejects_bad_ops);
    tcase_add_test(tc, test_zero_op_commit);
    tcase_add_test(tc, test_session_records);
    tcase_add_test(tc, test_open_error);
    tcase_add_test(tc, test_catalog);
    tcase_add_test(tc, test_catalog_rename_keeps_the_id);
    tcase_add_test(tc, test_catalog_rename_aliases_ring);
    tcase_add_test(tc, test_catalog_rename_pending);
    tcase_add_test(tc, test_create_and_put_same_entry);
    tcase_add_test(tc, test_meta);
    tcase_add_test(tc, test_approx_size_counts_one_key_space);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(engine_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
