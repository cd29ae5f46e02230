/*
 * test_oplog.c: unit tests of the oplog entry codec (src/repl/oplog.c):
 * round trips of every op kind, group-commit payloads, entry headers
 * (format version and term, legacy entries without one, versions from the
 * future), timestamps patched into pre-encoded commits, and rejection of
 * truncated, mutated and wrongly typed inputs.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "repl/repl.h"

static void expect_corrupt(const uint8_t *p, size_t n);

static bson_t *make_doc(int i)
{
    bson_t *b = bson_new();
    BSON_APPEND_INT32(b, "_id", i);
    BSON_APPEND_UTF8(b, "name", "value");
    {
        bson_t sub;
        BSON_APPEND_DOCUMENT_BEGIN(b, "sub", &sub);
        BSON_APPEND_DOUBLE(&sub, "x", 1.5 * i);
        bson_append_document_end(b, &sub);
    }
    return b;
}

static void assert_op_eq(const struct eng_op *a, const struct eng_op *b)
{
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert_uint_eq(a->coll_id, b->coll_id);
    if (a->ns == NULL) {
        ck_assert_ptr_null(b->ns);
    } else {
        ck_assert_ptr_nonnull(b->ns);
        ck_assert_str_eq(a->ns, b->ns);
    }
    ck_assert_uint_eq(a->key_len, b->key_len);
    if (a->key_len) {
        ck_assert_mem_eq(a->key, b->key, a->key_len);
    }
    ck_assert_uint_eq(a->doc_len, b->doc_len);
    if (a->doc_len) {
        ck_assert_mem_eq(a->doc, b->doc, a->doc_len);
    }
}

static void assert_commit_eq(const struct eng_commit *a, const struct eng_commit *b)
{
    ck_assert_uint_eq(a->ts, b->ts);
    ck_assert_uint_eq(a->n_ops, b->n_ops);
    for (size_t i = 0; i < a->n_ops; i++) {
        assert_op_eq(&a->ops[i], &b->ops[i]);
    }
}

/* Encodes the commits (behind a header of term `term` unless it is 0, the
 * legacy layout) and checks that they decode to the same. */
static void roundtrip_term(const struct eng_commit *commits, size_t n, uint64_t term)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct repl_decoded d;
    struct cairn_error err;
    size_t total_ops = 0;

    if (term != 0) {
        ck_assert_int_eq(repl_oplog_encode_header(term, &buf), 0);
    }
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(repl_oplog_encode(&commits[i], &buf), 0);
        total_ops += commits[i].n_ops;
    }
    ck_assert_int_eq(repl_oplog_decode(buf.data, buf.len, &d, &err), 0);
    ck_assert_int_eq(d.version, term != 0 ? REPL_OPLOG_VERSION : 0);
    ck_assert_uint_eq(d.term, term);
    ck_assert_uint_eq(d.n_commits, n);
    ck_assert_uint_eq(d.n_ops, total_ops);
    for (size_t i = 0; i < n; i++) {
        assert_commit_eq(&commits[i], &d.commits[i]);
    }
    repl_decoded_free(&d);
    cairn_buf_free(&buf);
}

static void roundtrip(const struct eng_commit *commits, size_t n)
{
    roundtrip_term(commits, n, 0);
    roundtrip_term(commits, n, 1);
    roundtrip_term(commits, n, 7);
    roundtrip_term(commits, n, INT64_MAX);
}

/* ---- Round trips ------------------------------------------------------- */

START_TEST(test_each_kind)
{
    bson_t *doc = make_doc(7);
    const uint8_t key[] = {0x10, 0x00, 0x00, 0x00, 0x07};
    struct eng_op ops[] = {
        {ENG_OP_CREATE, 5, "db.coll", NULL, 0, NULL, 0},
        {ENG_OP_PUT, 5, NULL, key, sizeof key, bson_get_data(doc), doc->len},
        {ENG_OP_PUT, 5, "db.coll", key, sizeof key, bson_get_data(doc), doc->len},
        {ENG_OP_DELETE, 5, NULL, key, sizeof key, NULL, 0},
        {ENG_OP_DELETE, 5, "db.coll", key, 1, NULL, 0},
        {ENG_OP_DROP, 5, "db.coll", NULL, 0, NULL, 0},
        {ENG_OP_PUT, UINT64_MAX, NULL, key, sizeof key, bson_get_data(doc), doc->len},
        {ENG_OP_SESSION, 0, NULL, key, sizeof key, bson_get_data(doc), doc->len},
    };
    /* Each op alone, then all of them in one commit. */
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct eng_commit c = {CAIRN_TS(1700000000u + i, 1), &ops[i], 1};
        roundtrip(&c, 1);
    }
    {
        struct eng_commit c = {CAIRN_TS(UINT32_MAX, UINT32_MAX), ops, sizeof ops / sizeof ops[0]};
        roundtrip(&c, 1);
    }
    bson_destroy(doc);
}
END_TEST

START_TEST(test_empty_commit)
{
    struct eng_commit c = {CAIRN_TS(1, 0), NULL, 0};
    roundtrip(&c, 1);
}
END_TEST

START_TEST(test_group_commit)
{
    enum { N = 9 };
    bson_t *docs[N];
    uint8_t keys[N][4];
    struct eng_op ops[N][3];
    struct eng_commit commits[N];

    for (int i = 0; i < N; i++) {
        size_t n = 0;
        docs[i] = make_doc(i);
        memcpy(keys[i], "k\0\0", 3);
        keys[i][3] = (uint8_t)i;
        if (i == 0) {
            ops[i][n++] = (struct eng_op){ENG_OP_CREATE, 9, "t.c", NULL, 0, NULL, 0};
        }
        ops[i][n++] = (struct eng_op){
            ENG_OP_PUT, 9, NULL, keys[i], sizeof keys[i], bson_get_data(docs[i]), docs[i]->len};
        if (i % 3 == 2) {
            ops[i][n++] = (struct eng_op){ENG_OP_DELETE, 9, NULL, keys[i - 1], 4, NULL, 0};
        }
        commits[i] = (struct eng_commit){CAIRN_TS(100, (uint32_t)i + 1), ops[i], n};
    }
    for (size_t n = 1; n <= N; n++) {
        roundtrip(commits, n);
    }
    for (int i = 0; i < N; i++) {
        bson_destroy(docs[i]);
    }
}
END_TEST

START_TEST(test_encode_rejects_bad_input)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    const uint8_t key[] = {1};
    const uint8_t junk[] = {1, 2, 3};
    struct eng_op bad_kind = {42, 1, NULL, key, 1, NULL, 0};
    struct eng_op no_key = {ENG_OP_DELETE, 1, NULL, NULL, 0, NULL, 0};
    struct eng_op bad_doc = {ENG_OP_PUT, 1, NULL, key, 1, junk, sizeof junk};
    struct eng_op no_ns = {ENG_OP_CREATE, 1, NULL, NULL, 0, NULL, 0};
    const struct eng_op *bad[] = {&bad_kind, &no_key, &bad_doc, &no_ns};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct eng_commit c = {CAIRN_TS(1, 1), bad[i], 1};
        ck_assert_int_eq(repl_oplog_encode(&c, &buf), CAIRN_EINVAL);
    }
    {
        /* A session op needs a key and a record, and no namespace. */
        bson_t *doc = make_doc(1);
        struct eng_op no_rec = {ENG_OP_SESSION, 0, NULL, key, 1, NULL, 0};
        struct eng_op no_skey = {ENG_OP_SESSION, 0, NULL, NULL, 0, bson_get_data(doc), doc->len};
        struct eng_commit c1 = {CAIRN_TS(1, 1), &no_rec, 1};
        struct eng_commit c2 = {CAIRN_TS(1, 1), &no_skey, 1};
        ck_assert_int_eq(repl_oplog_encode(&c1, &buf), CAIRN_EINVAL);
        ck_assert_int_eq(repl_oplog_encode(&c2, &buf), CAIRN_EINVAL);
        bson_destroy(doc);
    }
    ck_assert_int_eq(repl_oplog_encode_header((uint64_t)INT64_MAX + 1, &buf), CAIRN_EINVAL);
    cairn_buf_free(&buf);
}
END_TEST

/* A commit encoded before its ts is known (ts 0) is refused by the decoder
 * until the ts is patched in; after patching it decodes with that ts. */
START_TEST(test_patch_ts)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct repl_decoded d;
    struct cairn_error err;
    bson_t *doc = make_doc(3);
    const uint8_t key[] = {1, 2};
    struct eng_op op = {ENG_OP_PUT, 4, NULL, key, 2, bson_get_data(doc), doc->len};
    struct eng_commit c = {0, &op, 1};
    const cairn_ts patched[] = {CAIRN_TS(1, 0), CAIRN_TS(1700000123u, 42),
                                CAIRN_TS(UINT32_MAX, UINT32_MAX)};

    ck_assert_int_eq(repl_oplog_encode(&c, &buf), 0);
    ck_assert_int_eq(repl_oplog_decode(buf.data, buf.len, &d, &err), CAIRN_ECORRUPT);
    for (size_t i = 0; i < sizeof patched / sizeof patched[0]; i++) {
        repl_oplog_patch_ts(buf.data, patched[i]);
        ck_assert_int_eq(repl_oplog_decode(buf.data, buf.len, &d, &err), 0);
        ck_assert_uint_eq(d.n_commits, 1);
        ck_assert_uint_eq(d.commits[0].ts, patched[i]);
        assert_op_eq(&op, &d.commits[0].ops[0]);
        repl_decoded_free(&d);
    }
    cairn_buf_free(&buf);
    bson_destroy(doc);
}
END_TEST

/* ---- Headers ------------------------------------------------------------ */

static void append_doc(struct cairn_buf *buf, const bson_t *b)
{
    ck_assert_int_eq(cairn_buf_append(buf, bson_get_data(b), b->len), 0);
}

static void append_sample_commit(struct cairn_buf *buf)
{
    struct eng_commit c = {CAIRN_TS(9, 9), NULL, 0};
    ck_assert_int_eq(repl_oplog_encode(&c, buf), 0);
}

/* An entry from a newer format version is reported as unsupported (the
 * member must stop), never as something to skip or half-read. */
START_TEST(test_future_version_unsupported)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct repl_decoded d;
    struct cairn_error err;
    bson_t h = BSON_INITIALIZER;

    BSON_APPEND_INT32(&h, "v", REPL_OPLOG_VERSION + 1);
    BSON_APPEND_INT64(&h, "t", 3);
    BSON_APPEND_UTF8(&h, "newField", "a later format may add header fields");
    append_doc(&buf, &h);
    append_sample_commit(&buf);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(repl_oplog_decode(buf.data, buf.len, &d, &err), CAIRN_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "newer"));
    ck_assert_ptr_null(d.commits);
    bson_destroy(&h);
    cairn_buf_free(&buf);
}
END_TEST

/* Malformed headers and header-only entries are corrupt. */
START_TEST(test_bad_headers)
{
    struct
    {
        const char *json;
        bool with_commit;
    } cases[] = {
        {"{\"v\": 1, \"t\": {\"$numberLong\": \"1\"}}", false}, /* no commit */
        {"{\"t\": {\"$numberLong\": \"1\"}}", true},            /* no version */
        {"{\"v\": 1}", true},                                   /* no term */
        {"{\"v\": 0, \"t\": {\"$numberLong\": \"1\"}}", true},  /* version 0 is headerless */
        {"{\"v\": 1, \"t\": 1}", true},                         /* term not Int64 */
        {"{\"v\": 1, \"t\": {\"$numberLong\": \"-1\"}}", true}, /* negative term */
        {"{\"v\": 1, \"t\": {\"$numberLong\": \"1\"}, \"x\": 1}", true}, /* unknown field */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cairn_buf buf = CAIRN_BUF_INIT;
        bson_error_t berr;
        bson_t *h = bson_new_from_json((const uint8_t *)cases[i].json, -1, &berr);
        ck_assert_msg(h != NULL, "case %zu: %s", i, berr.message);
        append_doc(&buf, h);
        if (cases[i].with_commit) {
            append_sample_commit(&buf);
        }
        expect_corrupt(buf.data, buf.len);
        bson_destroy(h);
        cairn_buf_free(&buf);
    }
}
END_TEST

/* ---- Corrupt inputs ---------------------------------------------------- */

static void expect_corrupt(const uint8_t *p, size_t n)
{
    struct repl_decoded d;
    struct cairn_error err;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(repl_oplog_decode(p, n, &d, &err), CAIRN_ECORRUPT);
    ck_assert_int_eq(err.code, CAIRN_ECORRUPT);
    ck_assert(strlen(err.msg) > 0);
    ck_assert_ptr_null(d.commits);
    ck_assert_ptr_null(d.ops);
}

static void encode_sample(struct cairn_buf *buf)
{
    bson_t *doc = make_doc(1);
    const uint8_t key[] = {9, 9};
    struct eng_op ops[] = {
        {ENG_OP_CREATE, 3, "a.b", NULL, 0, NULL, 0},
        {ENG_OP_PUT, 3, NULL, key, 2, bson_get_data(doc), doc->len},
    };
    struct eng_commit c = {CAIRN_TS(5, 6), ops, 2};
    ck_assert_int_eq(repl_oplog_encode(&c, buf), 0);
    bson_destroy(doc);
}

START_TEST(test_truncated)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    encode_sample(&buf);
    expect_corrupt(buf.data, 0);
    expect_corrupt(NULL, 10);
    for (size_t n = 1; n < buf.len; n++) {
        expect_corrupt(buf.data, n);
    }
    /* A valid commit followed by a truncated one. */
    {
        size_t one = buf.len;
        encode_sample(&buf);
        for (size_t n = one + 1; n < buf.len; n++) {
            expect_corrupt(buf.data, n);
        }
    }
    cairn_buf_free(&buf);
}
END_TEST

START_TEST(test_mutations_never_crash)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    unsigned seed = 12345;
    encode_sample(&buf);
    for (int round = 0; round < 20000; round++) {
        uint8_t *copy = malloc(buf.len);
        struct repl_decoded d;
        struct cairn_error err;
        int rc;
        memcpy(copy, buf.data, buf.len);
        for (int k = 0; k < 1 + round % 3; k++) {
            seed = seed * 1103515245u + 12345u;
            copy[(seed >> 8) % buf.len] ^= (uint8_t)(1u << ((seed >> 4) % 8));
        }
        rc = repl_oplog_decode(copy, buf.len, &d, &err);
        ck_assert(rc == 0 || rc == CAIRN_ECORRUPT);
        if (rc == 0) {
            /* Whatever decoded must be internally consistent. */
            size_t total = 0;
            for (size_t i = 0; i < d.n_commits; i++) {
                total += d.commits[i].n_ops;
            }
            ck_assert_uint_eq(total, d.n_ops);
            repl_decoded_free(&d);
        }
        free(copy);
    }
    cairn_buf_free(&buf);
}
END_TEST

START_TEST(test_padding)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct repl_decoded d;
    struct cairn_error err;
    size_t base;

    encode_sample(&buf);
    encode_sample(&buf);
    base = buf.len;
    /* 1..7 zero bytes of alignment padding are accepted. */
    for (size_t pad = 1; pad < REPL_OPLOG_ALIGN; pad++) {
        ck_assert_int_eq(cairn_buf_push(&buf, 0), 0);
        ck_assert_int_eq(repl_oplog_decode(buf.data, buf.len, &d, &err), 0);
        ck_assert_uint_eq(d.n_commits, 2);
        ck_assert_uint_eq(d.n_ops, 4);
        repl_decoded_free(&d);
    }
    /* Eight zero bytes are not padding. */
    ck_assert_int_eq(cairn_buf_push(&buf, 0), 0);
    expect_corrupt(buf.data, buf.len);
    /* Non-zero trailing bytes are not padding. */
    buf.len = base;
    ck_assert_int_eq(cairn_buf_push(&buf, 0), 0);
    ck_assert_int_eq(cairn_buf_push(&buf, 1), 0);
    expect_corrupt(buf.data, buf.len);
    /* Padding alone is not an entry. */
    {
        const uint8_t zeros[7] = {0};
        expect_corrupt(zeros, sizeof zeros);
    }
    cairn_buf_free(&buf);
}
END_TEST

/* Builders for hand-made (wrong) commit documents. */
enum shape {
    S_TS_INT64,
    S_TS_ZERO,
    S_TS_MISSING,
    S_TS_DUP,
    S_OPS_DOC,
    S_OPS_MISSING,
    S_UNKNOWN_TOP,
    S_OP_NOT_DOC,
    S_OP_INT,
    S_OP_UNKNOWN,
    S_OP_LONG,
    S_CID_INT32,
    S_CID_MISSING,
    S_NS_INT,
    S_NS_EMPTY,
    S_NS_NUL,
    S_NS_LONG,
    S_K_SUBTYPE,
    S_K_STRING,
    S_K_EMPTY,
    S_O_STRING,
    S_PUT_NO_O,
    S_PUT_NO_K,
    S_DEL_WITH_O,
    S_CREATE_NO_NS,
    S_DROP_WITH_K,
    S_UNKNOWN_OP_FIELD,
    S_DUP_OP_FIELD,
    S_VALID, /* control */
    S__COUNT
};

static void build(enum shape s, bson_t *b)
{
    bson_t arr, op, o;
    const uint8_t key[] = {1, 2};
    char longns[300];

    memset(longns, 'a', sizeof longns - 1);
    longns[sizeof longns - 1] = '\0';
    bson_init(b);
    if (s == S_TS_INT64) {
        BSON_APPEND_INT64(b, "ts", 5);
    } else if (s == S_TS_ZERO) {
        bson_append_timestamp(b, "ts", -1, 0, 0);
    } else if (s != S_TS_MISSING) {
        bson_append_timestamp(b, "ts", -1, 10, 1);
    }
    if (s == S_TS_DUP) {
        bson_append_timestamp(b, "ts", -1, 11, 1);
    }
    if (s == S_UNKNOWN_TOP) {
        BSON_APPEND_BOOL(b, "extra", true);
    }
    if (s == S_OPS_MISSING) {
        return;
    }
    if (s == S_OPS_DOC) {
        BSON_APPEND_DOCUMENT_BEGIN(b, "ops", &arr);
        bson_append_document_end(b, &arr);
        return;
    }
    BSON_APPEND_ARRAY_BEGIN(b, "ops", &arr);
    if (s == S_OP_NOT_DOC) {
        BSON_APPEND_INT32(&arr, "0", 1);
        bson_append_array_end(b, &arr);
        return;
    }
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &op);
    {
        const char *kind = "p";
        if (s == S_DEL_WITH_O) {
            kind = "d";
        } else if (s == S_CREATE_NO_NS) {
            kind = "c";
        } else if (s == S_DROP_WITH_K) {
            kind = "x";
        } else if (s == S_OP_UNKNOWN) {
            kind = "z";
        } else if (s == S_OP_LONG) {
            kind = "pp";
        }
        if (s == S_OP_INT) {
            BSON_APPEND_INT32(&op, "op", 1);
        } else {
            BSON_APPEND_UTF8(&op, "op", kind);
        }
        if (s == S_DUP_OP_FIELD) {
            BSON_APPEND_UTF8(&op, "op", "p");
        }
    }
    if (s == S_CID_INT32) {
        BSON_APPEND_INT32(&op, "cid", 3);
    } else if (s != S_CID_MISSING) {
        BSON_APPEND_INT64(&op, "cid", 3);
    }
    if (s == S_NS_INT) {
        BSON_APPEND_INT32(&op, "ns", 3);
    } else if (s == S_NS_EMPTY) {
        BSON_APPEND_UTF8(&op, "ns", "");
    } else if (s == S_NS_NUL) {
        bson_append_utf8(&op, "ns", 2, "a\0b", 3);
    } else if (s == S_NS_LONG) {
        BSON_APPEND_UTF8(&op, "ns", longns);
    } else if (s == S_DROP_WITH_K) {
        BSON_APPEND_UTF8(&op, "ns", "a.b");
    }
    if (s == S_K_SUBTYPE) {
        bson_append_binary(&op, "k", 1, BSON_SUBTYPE_UUID, key, 2);
    } else if (s == S_K_STRING) {
        BSON_APPEND_UTF8(&op, "k", "xx");
    } else if (s == S_K_EMPTY) {
        bson_append_binary(&op, "k", 1, BSON_SUBTYPE_BINARY, key, 0);
    } else if (s != S_PUT_NO_K && s != S_CREATE_NO_NS) {
        bson_append_binary(&op, "k", 1, BSON_SUBTYPE_BINARY, key, 2);
    }
    if (s == S_O_STRING) {
        BSON_APPEND_UTF8(&op, "o", "doc");
    } else if (s != S_PUT_NO_O && s != S_CREATE_NO_NS && s != S_DROP_WITH_K) {
        BSON_APPEND_DOCUMENT_BEGIN(&op, "o", &o);
        BSON_APPEND_INT32(&o, "_id", 1);
        bson_append_document_end(&op, &o);
    }
    if (s == S_UNKNOWN_OP_FIELD) {
        BSON_APPEND_INT32(&op, "zz", 1);
    }
    bson_append_document_end(&arr, &op);
    bson_append_array_end(b, &arr);
}

START_TEST(test_wrong_shapes)
{
    enum shape s = (enum shape)_i;
    bson_t b;
    struct repl_decoded d;
    struct cairn_error err;

    build(s, &b);
    if (s == S_VALID) {
        ck_assert_int_eq(repl_oplog_decode(bson_get_data(&b), b.len, &d, &err), 0);
        ck_assert_uint_eq(d.n_commits, 1);
        ck_assert_uint_eq(d.n_ops, 1);
        ck_assert_int_eq(d.ops[0].kind, ENG_OP_PUT);
        repl_decoded_free(&d);
    } else {
        expect_corrupt(bson_get_data(&b), b.len);
    }
    bson_destroy(&b);
}
END_TEST

START_TEST(test_bad_bson)
{
    /* A nested document whose inner length lies (outer length intact). */
    bson_t b;
    uint8_t *p;
    build(S_VALID, &b);
    p = malloc(b.len);
    memcpy(p, bson_get_data(&b), b.len);
    {
        /* find the "o" subdocument: its header is the 4 bytes after "o\0" */
        for (size_t i = 0; i + 6 < b.len; i++) {
            if (p[i] == 0x03 && p[i + 1] == 'o' && p[i + 2] == 0) {
                p[i + 3] = 0x7f; /* inner length far too large */
                break;
            }
        }
    }
    expect_corrupt(p, b.len);
    /* Outer length larger than the buffer. */
    memcpy(p, bson_get_data(&b), b.len);
    p[0] = (uint8_t)(b.len + 1);
    expect_corrupt(p, b.len);
    /* Missing trailing NUL. */
    memcpy(p, bson_get_data(&b), b.len);
    p[b.len - 1] = 1;
    expect_corrupt(p, b.len);
    /* Garbage element type. */
    memcpy(p, bson_get_data(&b), b.len);
    p[4] = 0x42;
    expect_corrupt(p, b.len);
    /* Length too small to be a document. */
    {
        const uint8_t tiny[] = {4, 0, 0, 0, 0};
        expect_corrupt(tiny, sizeof tiny);
    }
    free(p);
    bson_destroy(&b);
}
END_TEST

static Suite *oplog_suite(void)
{
    Suite *s = suite_create("oplog");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_each_kind);
    tcase_add_test(tc, test_empty_commit);
    tcase_add_test(tc, test_group_commit);
    tcase_add_test(tc, test_encode_rejects_bad_input);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_mutations_never_crash);
    tcase_add_test(tc, test_padding);
    tcase_add_loop_test(tc, test_wrong_shapes, 0, S__COUNT);
    tcase_add_test(tc, test_bad_bson);
    tcase_add_test(tc, test_patch_ts);
    tcase_add_test(tc, test_future_version_unsupported);
    tcase_add_test(tc, test_bad_headers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(oplog_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
