/*
 * test_wire.c: unit tests of src/net/wire.c: message headers, OP_MSG
 * parsing (sections in any order, flags, checksum, every malformed-frame
 * rule), kind-1 sequence merging, OP_QUERY parsing and unwrapping, and
 * the OP_MSG / OP_REPLY reply encodings; plus the command helpers of
 * src/net/util.c (code names, writeConcern / readConcern parsing, typed
 * field readers, namespaces).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"
#include "net/server_int.h"
#include "net/wire.h"

/* ---- Message builder ------------------------------------------------------ */

struct mb
{
    uint8_t buf[4096];
    size_t len;
};

static void mb_u32(struct mb *m, uint32_t v)
{
    ck_assert_uint_le(m->len + 4, sizeof m->buf);
    m->buf[m->len++] = (uint8_t)v;
    m->buf[m->len++] = (uint8_t)(v >> 8);
    m->buf[m->len++] = (uint8_t)(v >> 16);
    m->buf[m->len++] = (uint8_t)(v >> 24);
}

static void mb_bytes(struct mb *m, const void *p, size_t n)
{
    ck_assert_uint_le(m->len + n, sizeof m->buf);
    memcpy(m->buf + m->len, p, n);
    m->len += n;
}

static void mb_start(struct mb *m, int32_t opcode, int32_t request_id)
{
    m->len = 0;
    mb_u32(m, 0); /* length, patched by mb_finish */
    mb_u32(m, (uint32_t)request_id);
    mb_u32(m, 0);
    mb_u32(m, (uint32_t)opcode);
}

static void mb_patch_len(struct mb *m)
{
    uint32_t v = (uint32_t)m->len;
    m->buf[0] = (uint8_t)v;
    m->buf[1] = (uint8_t)(v >> 8);
    m->buf[2] = (uint8_t)(v >> 16);
    m->buf[3] = (uint8_t)(v >> 24);
}

static void mb_body(struct mb *m, const bson_t *doc)
{
    uint8_t kind = 0;
    mb_bytes(m, &kind, 1);
    mb_bytes(m, bson_get_data(doc), doc->len);
}

/* A kind-1 section with `n` documents. */
static void mb_seq(struct mb *m, const char *id, const bson_t *const *docs, size_t n)
{
    uint8_t kind = 1;
    size_t size = 4 + strlen(id) + 1;
    for (size_t i = 0; i < n; i++) {
        size += docs[i]->len;
    }
    mb_bytes(m, &kind, 1);
    mb_u32(m, (uint32_t)size);
    mb_bytes(m, id, strlen(id) + 1);
    for (size_t i = 0; i < n; i++) {
        mb_bytes(m, bson_get_data(docs[i]), docs[i]->len);
    }
}

/* Appends the CRC-32C of everything so far (call after patching length
 * to include the 4 checksum bytes). */
static void mb_checksum(struct mb *m)
{
    uint32_t crc;
    m->len += 4;
    mb_patch_len(m);
    m->len -= 4;
    crc = wire_crc32c(m->buf, m->len);
    mb_u32(m, crc);
}

static bson_t *doc_json(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    ck_assert_msg(b != NULL, "bad test json %s: %s", json, e.message);
    return b;
}

/* ---- Header ------------------------------------------------------------------ */

START_TEST(test_header)
{
    struct mb m;
    struct wire_header h;

    mb_start(&m, WIRE_OP_MSG, 77);
    mb_u32(&m, 0);
    mb_patch_len(&m);
    ck_assert_int_eq(wire_parse_header(m.buf, &h), 0);
    ck_assert_int_eq(h.length, 20);
    ck_assert_int_eq(h.request_id, 77);
    ck_assert_int_eq(h.response_to, 0);
    ck_assert_int_eq(h.opcode, WIRE_OP_MSG);

    /* Lengths outside [16, 48000000] are rejected. */
    {
        static const int64_t bad[] = {0, 15, -1, 48000001, 0x7fffffff};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            m.len = 16;
            uint32_t v = (uint32_t)bad[i];
            m.buf[0] = (uint8_t)v;
            m.buf[1] = (uint8_t)(v >> 8);
            m.buf[2] = (uint8_t)(v >> 16);
            m.buf[3] = (uint8_t)(v >> 24);
            ck_assert_int_eq(wire_parse_header(m.buf, &h), CAIRN_EPROTO);
        }
        m.buf[0] = 16;
        m.buf[1] = m.buf[2] = m.buf[3] = 0;
        ck_assert_int_eq(wire_parse_header(m.buf, &h), 0);
        m.buf[0] = 0x00; /* 48000000 = 0x02DC6C00 */
        m.buf[1] = 0x6c;
        m.buf[2] = 0xdc;
        m.buf[3] = 0x02;
        ck_assert_int_eq(wire_parse_header(m.buf, &h), 0);
        ck_assert_int_eq(h.length, 48000000);
    }
}
END_TEST

START_TEST(test_crc32c)
{
    /* The standard check value of CRC-32C. */
    ck_assert_uint_eq(wire_crc32c((const uint8_t *)"123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(wire_crc32c((const uint8_t *)"", 0), 0u);
}
END_TEST

/* ---- OP_MSG ------------------------------------------------------------------ */

START_TEST(test_msg_body_only)
{
    struct mb m;
    struct wire_msg msg;
    struct cairn_error err = {0, 0, {0}};
    bool fatal = true;
    bson_t *body = doc_json("{\"ping\": 1, \"$db\": \"admin\"}");

    mb_start(&m, WIRE_OP_MSG, 1);
    mb_u32(&m, 0);
    mb_body(&m, body);
    mb_patch_len(&m);
    ck_assert_int_eq(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), 0);
    ck_assert(!fatal);
    ck_assert_uint_eq(msg.flags, 0);
    ck_assert_uint_eq(msg.n_seqs, 0);
    ck_assert(bson_equal(&msg.body, body));
    bson_destroy(body);
}
END_TEST

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Builds an OP_MSG whose body is {a: {a: ... {} ...}} nested `depth` levels
 * deep; returns a malloc'd frame and its length. Written front to back in
 * linear time: the document at nesting level k (0 innermost) is 5 + 8k bytes,
 * so the frame is depth headers "len 0x03 'a' 0", the empty document, then
 * depth closing zeros. */
static uint8_t *nested_msg(int depth, size_t *len)
{
    size_t dlen = 5 + (size_t)depth * 8;
    *len = 16 + 4 + 1 + dlen;
    uint8_t *frame = calloc(1, *len);
    put_le32(frame, (uint32_t)*len);
    put_le32(frame + 12, WIRE_OP_MSG);
    uint8_t *p = frame + 21;
    for (int level = depth; level > 0; level--) {
        put_le32(p, (uint32_t)(5 + (size_t)level * 8));
        p[4] = 0x03;
        p[5] = 'a';
        p[6] = 0;
        p += 7;
    }
    put_le32(p, 5);
    p[4] = 0;
    /* The remaining depth bytes are the closing zeros calloc already wrote. */
    return frame;
}

/* Every key and string inside a client document must be UTF-8 (22
 * InvalidBSON otherwise), whatever BSON type carries it and however deep:
 * libbson 1.23's bson_validate does not check string values, and a stored
 * invalid string would later make every driver fail to decode its reply.
 * Valid multi-byte strings and strings with embedded NULs pass. */
static const struct
{
    const char *what;
    bool valid;
} utf8_cases[] = {
    {"string", true},      {"string_bad", false},    {"nested_bad", false},
    {"array_bad", false},  {"key_bad", false},       {"nested_key_bad", false},
    {"multibyte", true},   {"embedded_nul", true},   {"truncated_seq", false},
    {"regex_bad", false},  {"regex_ok", true},       {"code_bad", false},
    {"symbol_bad", false}, {"dbpointer_bad", false}, {"codewscope_bad", false},
    {"scope_bad", false},  {"codewscope_ok", true},
};

static bson_t *utf8_case_doc(const char *what)
{
    static const char bad[] = "f\x99zz";
    static const uint8_t oid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    bson_t *b = bson_new();
    bson_t sub;
    bson_oid_t o;
    bson_oid_init_from_data(&o, oid);
    BSON_APPEND_UTF8(b, "$db", "test");
    if (strcmp(what, "string") == 0) {
        BSON_APPEND_UTF8(b, "s", "plain");
    } else if (strcmp(what, "string_bad") == 0) {
        BSON_APPEND_UTF8(b, "s", bad);
    } else if (strcmp(what, "nested_bad") == 0) {
        BSON_APPEND_DOCUMENT_BEGIN(b, "d", &sub);
        BSON_APPEND_UTF8(&sub, "s", bad);
        bson_append_document_end(b, &sub);
    } else if (strcmp(what, "array_bad") == 0) {
        BSON_APPEND_ARRAY_BEGIN(b, "a", &sub);
        BSON_APPEND_UTF8(&sub, "0", "ok");
        BSON_APPEND_UTF8(&sub, "1", bad);
        bson_append_array_end(b, &sub);
    } else if (strcmp(what, "key_bad") == 0) {
        BSON_APPEND_INT32(b, bad, 1);
    } else if (strcmp(what, "nested_key_bad") == 0) {
        BSON_APPEND_DOCUMENT_BEGIN(b, "d", &sub);
        BSON_APPEND_INT32(&sub, bad, 1);
        bson_append_document_end(b, &sub);
    } else if (strcmp(what, "multibyte") == 0) {
        BSON_APPEND_UTF8(b, "s", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    } else if (strcmp(what, "embedded_nul") == 0) {
        bson_append_utf8(b, "s", 1, "a\0b", 3);
    } else if (strcmp(what, "truncated_seq") == 0) {
        BSON_APPEND_UTF8(b, "s", "ab\xe2\x82");
    } else if (strcmp(what, "regex_bad") == 0) {
        BSON_APPEND_REGEX(b, "r", bad, "i");
    } else if (strcmp(what, "regex_ok") == 0) {
        BSON_APPEND_REGEX(b, "r", "^caf\xc3\xa9$", "i");
    } else if (strcmp(what, "code_bad") == 0) {
        BSON_APPEND_CODE(b, "c", bad);
    } else if (strcmp(what, "symbol_bad") == 0) {
        BSON_APPEND_SYMBOL(b, "y", bad);
    } else if (strcmp(what, "dbpointer_bad") == 0) {
        BSON_APPEND_DBPOINTER(b, "p", bad, &o);
    } else {
        bson_t *scope = bson_new();
        BSON_APPEND_UTF8(scope, "v", strcmp(what, "scope_bad") == 0 ? bad : "fine");
        BSON_APPEND_CODE_WITH_SCOPE(b, "w", strcmp(what, "codewscope_bad") == 0 ? bad : "f()",
                                    scope);
        bson_destroy(scope);
    }
    return b;
}

START_TEST(test_msg_strings_must_be_utf8)
{
    struct mb m;
    struct wire_msg msg;
    struct cairn_error err = {0, 0, {0}};
    bool fatal = true;
    bson_t *body = utf8_case_doc(utf8_cases[_i].what);

    mb_start(&m, WIRE_OP_MSG, 1);
    mb_u32(&m, 0);
    mb_body(&m, body);
    mb_patch_len(&m);
    int rv = wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err);
    if (utf8_cases[_i].valid) {
        ck_assert_msg(rv == 0, "%s: %s", utf8_cases[_i].what, err.msg);
    } else {
        ck_assert_msg(rv != 0, "%s was accepted", utf8_cases[_i].what);
        ck_assert_int_eq(err.mongo_code, 22);
        ck_assert(!fatal);
    }
    /* The same document as a kind-1 sequence member. */
    const bson_t *docs[1] = {body};
    bson_t *cmd = doc_json("{\"insert\": \"c\", \"$db\": \"test\"}");
    mb_start(&m, WIRE_OP_MSG, 2);
    mb_u32(&m, 0);
    mb_body(&m, cmd);
    mb_seq(&m, "documents", docs, 1);
    mb_patch_len(&m);
    fatal = true;
    cairn_error_clear(&err);
    rv = wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err);
    ck_assert_int_eq(rv == 0, utf8_cases[_i].valid);
    bson_destroy(cmd);
    bson_destroy(body);
}
END_TEST

/* Documents nested deeper than 200 levels are refused with 15 Overflow
 * without recursing (a 100,000-deep document must not overflow the stack);
 * the connection stays usable. Shallower nesting parses. */
START_TEST(test_msg_nesting_limit)
{
    static const struct
    {
        int depth;
        int code;
    } cases[] = {{1, 0}, {150, 0}, {200, 0}, {201, 15}, {5000, 15}, {100000, 15}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wire_msg msg;
        struct cairn_error err = {0, 0, {0}};
        bool fatal = true;
        size_t len;
        uint8_t *frame = nested_msg(cases[i].depth, &len);
        int rv = wire_parse_op_msg(frame, len, &msg, &fatal, &err);
        if (cases[i].code == 0) {
            ck_assert_msg(rv == 0, "depth %d: %s", cases[i].depth, err.msg);
        } else {
            ck_assert_int_ne(rv, 0);
            ck_assert_int_eq(err.mongo_code, cases[i].code);
            ck_assert(!fatal);
        }
        free(frame);
    }
}
END_TEST

/* Sequences before, between and after the body all parse the same. */
START_TEST(test_msg_sequences_any_order)
{
    bson_t *body = doc_json("{\"insert\": \"c\", \"$db\": \"test\"}");
    bson_t *d1 = doc_json("{\"_id\": 1}");
    bson_t *d2 = doc_json("{\"_id\": 2, \"x\": \"y\"}");
    bson_t *u1 = doc_json("{\"q\": {}, \"u\": {\"$set\": {\"a\": 1}}}");
    const bson_t *docs[] = {d1, d2};
    const bson_t *ups[] = {u1};

    for (int order = 0; order < 3; order++) {
        struct mb m;
        struct wire_msg msg;
        struct cairn_error err = {0, 0, {0}};
        bool fatal = true;
        bson_t merged;
        bson_iter_t it, sub;

        mb_start(&m, WIRE_OP_MSG, 2);
        mb_u32(&m, 0);
        if (order == 0) {
            mb_body(&m, body);
            mb_seq(&m, "documents", docs, 2);
            mb_seq(&m, "updates", ups, 1);
        } else if (order == 1) {
            mb_seq(&m, "documents", docs, 2);
            mb_body(&m, body);
            mb_seq(&m, "updates", ups, 1);
        } else {
            mb_seq(&m, "documents", docs, 2);
            mb_seq(&m, "updates", ups, 1);
            mb_body(&m, body);
        }
        mb_patch_len(&m);
        ck_assert_int_eq(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), 0);
        ck_assert_uint_eq(msg.n_seqs, 2);
        ck_assert_str_eq(msg.seqs[0].id, "documents");
        ck_assert_uint_eq(msg.seqs[0].n_docs, 2);
        ck_assert_str_eq(msg.seqs[1].id, "updates");
        ck_assert_uint_eq(msg.seqs[1].n_docs, 1);

        ck_assert_int_eq(wire_merge_sequences(&msg, &merged, &err), 0);
        /* The command name stays first; arrays follow the body fields. */
        ck_assert(bson_iter_init(&it, &merged));
        ck_assert(bson_iter_next(&it));
        ck_assert_str_eq(bson_iter_key(&it), "insert");
        ck_assert(bson_iter_next(&it));
        ck_assert_str_eq(bson_iter_key(&it), "$db");
        ck_assert(bson_iter_next(&it));
        ck_assert_str_eq(bson_iter_key(&it), "documents");
        ck_assert(BSON_ITER_HOLDS_ARRAY(&it));
        ck_assert(bson_iter_recurse(&it, &sub));
        ck_assert(bson_iter_next(&sub));
        ck_assert_str_eq(bson_iter_key(&sub), "0");
        {
            const uint8_t *data;
            uint32_t len;
            bson_t got;
            bson_iter_document(&sub, &len, &data);
            ck_assert(bson_init_static(&got, data, len));
            ck_assert(bson_equal(&got, d1));
            ck_assert(bson_iter_next(&sub));
            ck_assert_str_eq(bson_iter_key(&sub), "1");
            bson_iter_document(&sub, &len, &data);
            ck_assert(bson_init_static(&got, data, len));
            ck_assert(bson_equal(&got, d2));
            ck_assert(!bson_iter_next(&sub));
        }
        ck_assert(bson_iter_next(&it));
        ck_assert_str_eq(bson_iter_key(&it), "updates");
        ck_assert(BSON_ITER_HOLDS_ARRAY(&it));
        ck_assert(!bson_iter_next(&it));
        bson_destroy(&merged);
    }
    bson_destroy(body);
    bson_destroy(d1);
    bson_destroy(d2);
    bson_destroy(u1);
}
END_TEST

START_TEST(test_msg_empty_sequence)
{
    struct mb m;
    struct wire_msg msg;
    struct cairn_error err = {0, 0, {0}};
    bool fatal;
    bson_t *body = doc_json("{\"insert\": \"c\", \"$db\": \"test\"}");
    bson_t merged;
    bson_iter_t it, sub;

    mb_start(&m, WIRE_OP_MSG, 3);
    mb_u32(&m, 0);
    mb_body(&m, body);
    mb_seq(&m, "documents", NULL, 0);
    mb_patch_len(&m);
    ck_assert_int_eq(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), 0);
    ck_assert_uint_eq(msg.seqs[0].n_docs, 0);
    ck_assert_int_eq(wire_merge_sequences(&msg, &merged, &err), 0);
    ck_assert(bson_iter_init_find(&it, &merged, "documents"));
    ck_assert(BSON_ITER_HOLDS_ARRAY(&it));
    ck_assert(bson_iter_recurse(&it, &sub));
    ck_assert(!bson_iter_next(&sub));
    bson_destroy(&merged);
    bson_destroy(body);
}
END_TEST

START_TEST(test_msg_flags)
{
    static const struct
    {
        uint32_t flags;
        int rv;
        int code;
        bool fatal;
    } cases[] = {
        {0x0, 0, 0, false},
        {WIRE_MSG_MORE_TO_COME, 0, 0, false},
        {WIRE_MSG_EXHAUST_ALLOWED, 0, 0, false},
        {WIRE_MSG_MORE_TO_COME | WIRE_MSG_EXHAUST_ALLOWED, 0, 0, false},
        {0x20000, 0, 0, false}, /* unknown optional bit: ignored */
        {0x80000000u, 0, 0, false},
        {0x4, CAIRN_EPROTO, 40429, true}, /* unknown required bit */
        {0x8000, CAIRN_EPROTO, 40429, true},
        {0x100 | WIRE_MSG_MORE_TO_COME, CAIRN_EPROTO, 40429, true},
    };
    bson_t *body = doc_json("{\"ping\": 1, \"$db\": \"admin\"}");

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mb m;
        struct wire_msg msg;
        struct cairn_error err = {0, 0, {0}};
        bool fatal = false;
        int rv;

        mb_start(&m, WIRE_OP_MSG, 4);
        mb_u32(&m, cases[i].flags);
        mb_body(&m, body);
        mb_patch_len(&m);
        rv = wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err);
        ck_assert_msg(rv == cases[i].rv, "flags 0x%x: rv %d", cases[i].flags, rv);
        if (rv == 0) {
            ck_assert_uint_eq(msg.flags, cases[i].flags);
        } else {
            ck_assert_int_eq(err.mongo_code, cases[i].code);
            ck_assert(fatal == cases[i].fatal);
        }
    }
    bson_destroy(body);
}
END_TEST

START_TEST(test_msg_checksum)
{
    bson_t *body = doc_json("{\"ping\": 1, \"$db\": \"admin\"}");
    bson_t *d1 = doc_json("{\"_id\": 1}");
    const bson_t *docs[] = {d1};
    struct mb m;
    struct wire_msg msg;
    struct cairn_error err = {0, 0, {0}};
    bool fatal;

    /* A valid checksum is verified and stripped. */
    mb_start(&m, WIRE_OP_MSG, 5);
    mb_u32(&m, WIRE_MSG_CHECKSUM);
    mb_seq(&m, "documents", docs, 1);
    mb_body(&m, body);
    mb_checksum(&m);
    ck_assert_int_eq(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), 0);
    ck_assert_uint_eq(msg.n_seqs, 1);
    ck_assert_uint_eq(msg.seqs[0].n_docs, 1);
    ck_assert(bson_equal(&msg.body, body));

    /* A flipped checksum byte: ChecksumMismatch, connection kept. */
    m.buf[m.len - 1] ^= 0x55;
    ck_assert_int_eq(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), CAIRN_EPROTO);
    ck_assert_int_eq(err.mongo_code, 288);
    ck_assert(!fatal);

    /* A corrupted payload byte with the old checksum: mismatch too. */
    m.buf[m.len - 1] ^= 0x55;
    m.buf[m.len - 6] ^= 0x01;
    ck_assert_int_eq(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), CAIRN_EPROTO);
    ck_assert_int_eq(err.mongo_code, 288);

    /* Checksum flag without room for the checksum. */
    mb_start(&m, WIRE_OP_MSG, 6);
    mb_u32(&m, WIRE_MSG_CHECKSUM);
    mb_patch_len(&m);
    ck_assert_int_ne(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), 0);
    ck_assert(fatal);

    /* Checksum flag on a message without one: the last 4 bytes of the
     * body are taken as the checksum, which breaks the framing. */
    mb_start(&m, WIRE_OP_MSG, 7);
    mb_u32(&m, WIRE_MSG_CHECKSUM);
    mb_body(&m, body);
    mb_patch_len(&m);
    ck_assert_int_ne(wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err), 0);
    bson_destroy(body);
    bson_destroy(d1);
}
END_TEST

/* Malformed frames, table-driven: each case builds a message. */
enum shape {
    S_TWO_BODIES,
    S_NO_BODY,
    S_NO_SECTIONS,
    S_DUP_SEQ,
    S_THREE_SEQS,
    S_DUP_FIELD,
    S_UNKNOWN_KIND,
    S_SECTION_OVERRUN,
    S_SEQ_DOC_OVERRUN,
    S_SEQ_SIZE_TOO_SMALL,
    S_SEQ_ID_UNTERMINATED,
    S_SEQ_EMPTY_ID,
    S_BAD_BSON_BODY,
    S_BAD_BSON_SEQ_DOC,
    S_TRUNCATED_KIND,
    S_BODY_LEN_TOO_SMALL,
    S_TOO_SHORT,
};

static const struct
{
    enum shape shape;
    const char *name;
    int code;
    bool fatal;
} malformed[] = {
    {S_TWO_BODIES, "two bodies", 40430, false},
    {S_NO_BODY, "sequence but no body", 40587, false},
    {S_NO_SECTIONS, "no sections", 40587, false},
    {S_DUP_SEQ, "duplicate sequence id", 40431, false},
    {S_THREE_SEQS, "three sequences", 233, false},
    {S_DUP_FIELD, "body field named like a sequence", 40433, false},
    {S_UNKNOWN_KIND, "unknown section kind", 40432, true},
    {S_SECTION_OVERRUN, "body overruns the message", 17, true},
    {S_SEQ_DOC_OVERRUN, "sequence document overruns its section", 17, true},
    {S_SEQ_SIZE_TOO_SMALL, "sequence size below minimum", 17, true},
    {S_SEQ_ID_UNTERMINATED, "sequence id not terminated", 17, true},
    {S_SEQ_EMPTY_ID, "empty sequence id", 40431, false},
    {S_BAD_BSON_BODY, "invalid BSON in the body", 22, false},
    {S_BAD_BSON_SEQ_DOC, "invalid BSON in a sequence", 22, false},
    {S_TRUNCATED_KIND, "kind byte with nothing after", 17, true},
    {S_BODY_LEN_TOO_SMALL, "body length below 5", 17, true},
    {S_TOO_SHORT, "no flags", 17, true},
};

static void build_malformed(struct mb *m, enum shape shape)
{
    bson_t *body = doc_json("{\"insert\": \"c\", \"$db\": \"test\"}");
    bson_t *dup = doc_json("{\"insert\": \"c\", \"documents\": [], \"$db\": \"test\"}");
    bson_t *d1 = doc_json("{\"_id\": 1}");
    const bson_t *docs[] = {d1};
    uint8_t kind;

    mb_start(m, WIRE_OP_MSG, 9);
    if (shape != S_TOO_SHORT) {
        mb_u32(m, 0);
    }
    switch (shape) {
        case S_TWO_BODIES:
            mb_body(m, body);
            mb_body(m, body);
            break;
        case S_NO_BODY:
            mb_seq(m, "documents", docs, 1);
            break;
        case S_NO_SECTIONS:
        case S_TOO_SHORT:
            break;
        case S_DUP_SEQ:
            mb_body(m, body);
            mb_seq(m, "documents", docs, 1);
            mb_seq(m, "documents", docs, 1);
            break;
        case S_THREE_SEQS:
            mb_body(m, body);
            mb_seq(m, "a", docs, 1);
            mb_seq(m, "b", docs, 1);
            mb_seq(m, "c", docs, 1);
            break;
        case S_DUP_FIELD:
            mb_body(m, dup);
            mb_seq(m, "documents", docs, 1);
            break;
        case S_UNKNOWN_KIND:
            mb_body(m, body);
            kind = 2;
            mb_bytes(m, &kind, 1);
            mb_u32(m, 5);
            kind = 0;
            mb_bytes(m, &kind, 1);
            break;
        case S_SECTION_OVERRUN:
            mb_body(m, body);
            m->len -= 3; /* cut the body short */
            break;
        case S_SEQ_DOC_OVERRUN:
            mb_body(m, body);
            mb_seq(m, "documents", docs, 1);
            /* Make the document claim more bytes than the section holds. */
            m->buf[m->len - d1->len] = (uint8_t)(d1->len + 10);
            break;
        case S_SEQ_SIZE_TOO_SMALL:
            mb_body(m, body);
            kind = 1;
            mb_bytes(m, &kind, 1);
            mb_u32(m, 3);
            mb_u32(m, 0);
            break;
        case S_SEQ_ID_UNTERMINATED:
            mb_body(m, body);
            kind = 1;
            mb_bytes(m, &kind, 1);
            mb_u32(m, 4 + 3);
            mb_bytes(m, "abc", 3);
            break;
        case S_SEQ_EMPTY_ID:
            mb_body(m, body);
            mb_seq(m, "", docs, 1);
            break;
        case S_BAD_BSON_BODY: {
            /* A document whose element type byte is invalid. */
            static const uint8_t bad[] = {12, 0, 0, 0, 0x7e, 'a', 0, 1, 0, 0, 0, 0};
            kind = 0;
            mb_bytes(m, &kind, 1);
            mb_bytes(m, bad, sizeof bad);
            break;
        }
        case S_BAD_BSON_SEQ_DOC: {
            static const uint8_t bad[] = {8, 0, 0, 0, 0x08, 'a', 0, 0}; /* missing terminator */
            mb_body(m, body);
            kind = 1;
            mb_bytes(m, &kind, 1);
            mb_u32(m, (uint32_t)(4 + 2 + sizeof bad));
            mb_bytes(m, "d", 2);
            mb_bytes(m, bad, sizeof bad);
            break;
        }
        case S_TRUNCATED_KIND:
            mb_body(m, body);
            kind = 0;
            mb_bytes(m, &kind, 1);
            break;
        case S_BODY_LEN_TOO_SMALL:
            kind = 0;
            mb_bytes(m, &kind, 1);
            mb_u32(m, 4);
            mb_u32(m, 0);
            break;
    }
    mb_patch_len(m);
    bson_destroy(body);
    bson_destroy(dup);
    bson_destroy(d1);
}

START_TEST(test_msg_malformed)
{
    struct mb m;
    struct wire_msg msg;
    struct cairn_error err = {0, 0, {0}};
    bool fatal = !malformed[_i].fatal;
    int rv;

    build_malformed(&m, malformed[_i].shape);
    rv = wire_parse_op_msg(m.buf, m.len, &msg, &fatal, &err);
    ck_assert_msg(rv != 0, "%s: parsed", malformed[_i].name);
    ck_assert_msg(err.mongo_code == malformed[_i].code, "%s: code %d (%s)", malformed[_i].name,
                  err.mongo_code, err.msg);
    ck_assert_msg(fatal == malformed[_i].fatal, "%s: fatal %d", malformed[_i].name, fatal);
    ck_assert(err.msg[0] != '\0');
}
END_TEST

START_TEST(test_msg_too_large_doc)
{
    /* A sequence document over 16 MiB is refused (non-fatal). */
    size_t n = (size_t)WIRE_MAX_BSON + 100;
    size_t total = WIRE_HEADER_LEN + 4 + 1 + 4 + 2 + n;
    uint8_t *buf = calloc(1, total);
    struct wire_msg msg;
    struct cairn_error err = {0, 0, {0}};
    bool fatal = true;
    size_t off = 0;

    ck_assert_ptr_nonnull(buf);
    buf[0] = (uint8_t)total;
    buf[1] = (uint8_t)(total >> 8);
    buf[2] = (uint8_t)(total >> 16);
    buf[3] = (uint8_t)(total >> 24);
    buf[12] = 0xdd; /* 2013 = 0x7dd */
    buf[13] = 0x07;
    off = WIRE_HEADER_LEN + 4;
    buf[off++] = 1;
    {
        uint32_t size = (uint32_t)(4 + 2 + n);
        buf[off++] = (uint8_t)size;
        buf[off++] = (uint8_t)(size >> 8);
        buf[off++] = (uint8_t)(size >> 16);
        buf[off++] = (uint8_t)(size >> 24);
    }
    buf[off++] = 'd';
    buf[off++] = 0;
    buf[off] = (uint8_t)n;
    buf[off + 1] = (uint8_t)(n >> 8);
    buf[off + 2] = (uint8_t)(n >> 16);
    buf[off + 3] = (uint8_t)(n >> 24);
    ck_assert_int_eq(wire_parse_op_msg(buf, total, &msg, &fatal, &err), CAIRN_ETOOBIG);
    ck_assert_int_eq(err.mongo_code, 10334);
    ck_assert(!fatal);
    free(buf);
}
END_TEST

/* ---- OP_QUERY ------------------------------------------------------------------ */

static void build_query(struct mb *m,
                        int32_t flags,
                        const char *ns,
                        int32_t skip,
                        int32_t nret,
                        const bson_t *q,
                        const bson_t *fields)
{
    mb_start(m, WIRE_OP_QUERY, 11);
    mb_u32(m, (uint32_t)flags);
    mb_bytes(m, ns, strlen(ns) + 1);
    mb_u32(m, (uint32_t)skip);
    mb_u32(m, (uint32_t)nret);
    mb_bytes(m, bson_get_data(q), q->len);
    if (fields != NULL) {
        mb_bytes(m, bson_get_data(fields), fields->len);
    }
    mb_patch_len(m);
}

/* 1 to 4 stray bytes after the query are refused as trailing garbage,
 * reading nothing past the message (the sanitizer build checks that; the
 * bytes are copied to an exact-size heap buffer). */
START_TEST(test_query_short_trailer)
{
    bson_t *q = doc_json("{\"isMaster\": 1}");
    for (size_t extra = 1; extra <= 4; extra++) {
        struct mb m;
        struct wire_query out;
        struct cairn_error err = {0, 0, {0}};
        bool fatal = false;
        uint8_t *exact;

        build_query(&m, 0, "admin.$cmd", 0, -1, q, NULL);
        mb_bytes(&m, "\x07\x00\x00\x00", extra);
        mb_patch_len(&m);
        exact = malloc(m.len);
        memcpy(exact, m.buf, m.len);
        ck_assert_int_ne(wire_parse_op_query(exact, m.len, &out, &fatal, &err), 0);
        ck_assert(fatal);
        free(exact);
    }
    bson_destroy(q);
}
END_TEST

START_TEST(test_query_plain)
{
    bson_t *q = doc_json("{\"isMaster\": 1, \"helloOk\": true, \"client\": {\"a\": 1}}");
    struct mb m;
    struct wire_query wq;
    struct cairn_error err = {0, 0, {0}};
    bool fatal;

    build_query(&m, 0, "admin.$cmd", 0, -1, q, NULL);
    ck_assert_int_eq(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert_str_eq(wq.db, "admin");
    ck_assert_int_eq(wq.n_return, -1);
    ck_assert(!wq.secondary_ok);
    ck_assert(bson_equal(&wq.cmd, q));

    /* secondaryOk flag (bit 2) and a different database. */
    build_query(&m, WIRE_QUERY_SECONDARY_OK, "test.$cmd", 0, 1, q, NULL);
    ck_assert_int_eq(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert_str_eq(wq.db, "test");
    ck_assert(wq.secondary_ok);

    /* A returnFieldsSelector document is allowed. */
    build_query(&m, 0, "admin.$cmd", 0, 1, q, q);
    ck_assert_int_eq(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    bson_destroy(q);
}
END_TEST

START_TEST(test_query_unwrap)
{
    static const struct
    {
        const char *json;
        const char *first_key;
        bool secondary_ok;
    } cases[] = {
        {"{\"$query\": {\"hello\": 1}, \"$readPreference\": {\"mode\": \"secondaryPreferred\"}}",
         "hello", true},
        {"{\"$query\": {\"hello\": 1}, \"$readPreference\": {\"mode\": \"primary\"}}", "hello",
         false},
        {"{\"query\": {\"isMaster\": 1}}", "isMaster", false},
        {"{\"query\": \"notadoc\"}", "query", false},
        {"{\"find\": \"c\", \"$readPreference\": {\"mode\": \"nearest\"}}", "find", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *q = doc_json(cases[i].json);
        struct mb m;
        struct wire_query wq;
        struct cairn_error err = {0, 0, {0}};
        bool fatal;
        bson_iter_t it;

        build_query(&m, 0, "admin.$cmd", 0, -1, q, NULL);
        ck_assert_int_eq(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
        ck_assert(bson_iter_init(&it, &wq.cmd) && bson_iter_next(&it));
        ck_assert_str_eq(bson_iter_key(&it), cases[i].first_key);
        ck_assert_msg(wq.secondary_ok == cases[i].secondary_ok, "case %zu", i);
        bson_destroy(q);
    }
}
END_TEST

START_TEST(test_query_errors)
{
    bson_t *q = doc_json("{\"isMaster\": 1}");
    struct mb m;
    struct wire_query wq;
    struct cairn_error err = {0, 0, {0}};
    bool fatal;

    /* Not a command namespace. */
    build_query(&m, 0, "test.coll", 0, -1, q, NULL);
    ck_assert_int_ne(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert_int_eq(err.mongo_code, 5739101);
    ck_assert(!fatal);
    build_query(&m, 0, "$cmd", 0, -1, q, NULL);
    ck_assert_int_ne(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert_int_eq(err.mongo_code, 5739101);
    build_query(&m, 0, ".$cmd", 0, -1, q, NULL);
    ck_assert_int_ne(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);

    /* numberToReturn other than -1, 0, 1. */
    build_query(&m, 0, "admin.$cmd", 0, 5, q, NULL);
    ck_assert_int_ne(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert_int_eq(err.mongo_code, 16979);

    /* Truncated query document: fatal. */
    build_query(&m, 0, "admin.$cmd", 0, -1, q, NULL);
    m.len -= 2;
    mb_patch_len(&m);
    ck_assert_int_ne(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert(fatal);

    /* Trailing garbage after the query: fatal. */
    build_query(&m, 0, "admin.$cmd", 0, -1, q, NULL);
    mb_u32(&m, 0xdeadbeef);
    mb_patch_len(&m);
    ck_assert_int_ne(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert(fatal);

    /* Unterminated namespace: fatal. */
    mb_start(&m, WIRE_OP_QUERY, 12);
    mb_u32(&m, 0);
    mb_bytes(&m, "admin.$cmdxxxxxxxxxxxxxxxxxxxx", 30);
    mb_patch_len(&m);
    ck_assert_int_ne(wire_parse_op_query(m.buf, m.len, &wq, &fatal, &err), 0);
    ck_assert(fatal);
    bson_destroy(q);
}
END_TEST

/* ---- Replies -------------------------------------------------------------------- */

START_TEST(test_reply_op_msg_round_trip)
{
    bson_t *doc = doc_json("{\"ok\": 1.0, \"n\": 3}");
    uint8_t *buf = NULL;
    size_t len = 0;
    struct wire_header h;
    struct wire_msg msg;
    struct cairn_error err = {0, 0, {0}};
    bool fatal;

    ck_assert_int_eq(wire_build_op_msg(42, 7, doc, &buf, &len), 0);
    ck_assert_uint_eq(len, WIRE_HEADER_LEN + 4 + 1 + doc->len);
    ck_assert_int_eq(wire_parse_header(buf, &h), 0);
    ck_assert_int_eq(h.length, (int32_t)len);
    ck_assert_int_eq(h.request_id, 42);
    ck_assert_int_eq(h.response_to, 7);
    ck_assert_int_eq(h.opcode, WIRE_OP_MSG);
    /* Exactly flags 0 and one kind-0 section (what pymongo requires). */
    ck_assert_int_eq(buf[16] | buf[17] | buf[18] | buf[19], 0);
    ck_assert_int_eq(buf[20], 0);
    ck_assert_int_eq(wire_parse_op_msg(buf, len, &msg, &fatal, &err), 0);
    ck_assert_uint_eq(msg.flags, 0);
    ck_assert_uint_eq(msg.n_seqs, 0);
    ck_assert(bson_equal(&msg.body, doc));
    free(buf);
    bson_destroy(doc);
}
END_TEST

START_TEST(test_reply_op_reply)
{
    bson_t *doc = doc_json("{\"ismaster\": true, \"ok\": 1.0}");
    uint8_t *buf = NULL;
    size_t len = 0;
    struct wire_header h;
    bson_t got;

    ck_assert_int_eq(wire_build_op_reply(5, 99, doc, &buf, &len), 0);
    ck_assert_uint_eq(len, WIRE_HEADER_LEN + 20 + doc->len);
    ck_assert_int_eq(wire_parse_header(buf, &h), 0);
    ck_assert_int_eq(h.length, (int32_t)len);
    ck_assert_int_eq(h.request_id, 5);
    ck_assert_int_eq(h.response_to, 99);
    ck_assert_int_eq(h.opcode, WIRE_OP_REPLY);
    for (int i = 16; i < 32; i++) {
        ck_assert_int_eq(buf[i], 0); /* responseFlags, cursorID, startingFrom */
    }
    ck_assert_int_eq(buf[32], 1); /* numberReturned */
    ck_assert_int_eq(buf[33] | buf[34] | buf[35], 0);
    ck_assert(bson_init_static(&got, buf + 36, len - 36));
    ck_assert(bson_equal(&got, doc));
    free(buf);
    bson_destroy(doc);
}
END_TEST

/* ---- util.c ------------------------------------------------------------------ */

START_TEST(test_code_names)
{
    ck_assert_str_eq(net_code_name(59), "CommandNotFound");
    ck_assert_str_eq(net_code_name(10107), "NotWritablePrimary");
    ck_assert_str_eq(net_code_name(13435), "NotPrimaryNoSecondaryOk");
    ck_assert_str_eq(net_code_name(251), "NoSuchTransaction");
    ck_assert_str_eq(net_code_name(11000), "DuplicateKey");
    ck_assert_str_eq(net_code_name(0), "OK");
    ck_assert_str_eq(net_code_name(40571), "Location40571");
    ck_assert_str_eq(net_code_name(31254), "Location31254");
}
END_TEST

START_TEST(test_mongo_code)
{
    static const struct
    {
        int code, mongo, want;
    } cases[] = {
        {CAIRN_ENOTLEADER, 0, 10107}, {CAIRN_EBADDOC, 0, 2},  {CAIRN_ETOOBIG, 0, 10334},
        {CAIRN_ENOTFOUND, 0, 26},     {CAIRN_EEXISTS, 0, 48}, {CAIRN_ETIMEOUT, 0, 50},
        {CAIRN_ESHUTDOWN, 0, 91},     {CAIRN_EINVAL, 0, 2},   {CAIRN_EIO, 0, 1},
        {CAIRN_EINVAL, 11000, 11000}, {CAIRN_ENOMEM, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cairn_error e = {cases[i].code, cases[i].mongo, {0}};
        ck_assert_int_eq(net_mongo_code(&e), cases[i].want);
    }
}
END_TEST

START_TEST(test_write_concern)
{
    static const struct
    {
        const char *json;
        int rv_code; /* expected mongo_code, 0 = ok */
        int w;
        bool j;
        int64_t wtimeout;
    } cases[] = {
        {"{}", 0, 0, false, 0},
        {"{\"writeConcern\": null}", 0, 0, false, 0},
        {"{\"writeConcern\": {}}", 0, 0, false, 0},
        {"{\"writeConcern\": {\"w\": \"majority\", \"wtimeout\": 100}}", 0, 0, false, 100},
        {"{\"writeConcern\": {\"w\": 1}}", 0, 1, false, 0},
        {"{\"writeConcern\": {\"w\": 0}}", 0, 1, false, 0},
        {"{\"writeConcern\": {\"w\": 3, \"j\": true}}", 0, 3, true, 0},
        {"{\"writeConcern\": {\"w\": 2.0, \"fsync\": 1}}", 0, 2, true, 0},
        {"{\"writeConcern\": {\"w\": {\"$numberLong\": \"2\"}, \"wtimeout\": 5.5}}", 0, 2, false,
         5},
        {"{\"writeConcern\": {\"w\": -1}}", 9, 0, false, 0},
        {"{\"writeConcern\": {\"w\": 51}}", 9, 0, false, 0},
        {"{\"writeConcern\": {\"w\": 1.5}}", 9, 0, false, 0},
        {"{\"writeConcern\": {\"w\": \"dc1\"}}", 79, 0, false, 0},
        {"{\"writeConcern\": {\"w\": true}}", 9, 0, false, 0},
        {"{\"writeConcern\": {\"j\": \"yes\"}}", 9, 0, false, 0},
        {"{\"writeConcern\": {\"wtimeout\": \"x\"}}", 9, 0, false, 0},
        {"{\"writeConcern\": {\"bogus\": 1}}", 9, 0, false, 0},
        {"{\"writeConcern\": {\"j\": true, \"fsync\": true}}", 9, 0, false, 0},
        {"{\"writeConcern\": 1}", 14, 0, false, 0},
        {"{\"writeConcern\": {\"w\": 1, \"provenance\": \"clientSupplied\"}}", 0, 1, false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *b = doc_json(cases[i].json);
        struct repl_wc wc;
        struct cairn_error err = {0, 0, {0}};
        int rv = net_parse_write_concern(b, &wc, &err);
        if (cases[i].rv_code == 0) {
            ck_assert_msg(rv == 0, "%s: %s", cases[i].json, err.msg);
            ck_assert_int_eq(wc.w, cases[i].w);
            ck_assert(wc.j == cases[i].j);
            ck_assert_int_eq(wc.wtimeout_ms, cases[i].wtimeout);
        } else {
            ck_assert_msg(rv != 0, "%s parsed", cases[i].json);
            ck_assert_msg(err.mongo_code == cases[i].rv_code, "%s: code %d", cases[i].json,
                          err.mongo_code);
        }
        bson_destroy(b);
    }
}
END_TEST

START_TEST(test_read_concern)
{
    static const struct
    {
        const char *json;
        int code;
        int level;
    } cases[] = {
        {"{}", 0, TXN_READ_LOCAL},
        {"{\"readConcern\": {}}", 0, TXN_READ_LOCAL},
        {"{\"readConcern\": {\"level\": \"local\"}}", 0, TXN_READ_LOCAL},
        {"{\"readConcern\": {\"level\": \"available\"}}", 0, TXN_READ_LOCAL},
        {"{\"readConcern\": {\"level\": \"majority\"}}", 0, TXN_READ_MAJORITY},
        {"{\"readConcern\": {\"level\": \"majority\", \"afterClusterTime\": {\"$timestamp\": "
         "{\"t\": 1, \"i\": 1}}}}",
         0, TXN_READ_MAJORITY},
        {"{\"readConcern\": {\"level\": \"snapshot\"}}", 72, 0},
        {"{\"readConcern\": {\"level\": \"snapshot\"}, \"autocommit\": false}", 0,
         TXN_READ_MAJORITY},
        {"{\"readConcern\": {\"level\": \"linearizable\"}}", 72, 0},
        {"{\"readConcern\": {\"level\": \"strong\"}}", 9, 0},
        {"{\"readConcern\": {\"level\": 1}}", 14, 0},
        {"{\"readConcern\": \"majority\"}", 14, 0},
        {"{\"readConcern\": {\"afterClusterTime\": 5}}", 14, 0},
        {"{\"readConcern\": {\"unknown\": 5}}", 9, 0},
        {"{\"readConcern\": {\"level\": \"local\", \"atClusterTime\": {\"$timestamp\": "
         "{\"t\": 1, \"i\": 1}}}}",
         72, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *b = doc_json(cases[i].json);
        struct cairn_error err = {0, 0, {0}};
        int level = -1;
        int rv = net_parse_read_concern(b, &level, &err);
        if (cases[i].code == 0) {
            ck_assert_msg(rv == 0, "%s: %s", cases[i].json, err.msg);
            ck_assert_int_eq(level, cases[i].level);
        } else {
            ck_assert_msg(rv != 0 && err.mongo_code == cases[i].code, "%s: rv %d code %d",
                          cases[i].json, rv, err.mongo_code);
        }
        bson_destroy(b);
    }
}
END_TEST

START_TEST(test_wce)
{
    static const struct
    {
        int status, code;
        bool wtimeout;
    } cases[] = {
        {CAIRN_ETIMEOUT, 64, true},
        {CAIRN_ENOTLEADER, 189, false},
        {CAIRN_ESHUTDOWN, 91, false},
        {CAIRN_EINVAL, 100, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t reply = BSON_INITIALIZER;
        bson_iter_t it;
        net_append_write_concern_error(&reply, cases[i].status);
        ck_assert(bson_iter_init(&it, &reply));
        ck_assert(bson_iter_find_descendant(&it, "writeConcernError.code", &it));
        ck_assert(BSON_ITER_HOLDS_INT32(&it));
        ck_assert_int_eq(bson_iter_int32(&it), cases[i].code);
        ck_assert(bson_iter_init(&it, &reply));
        ck_assert(bson_iter_find_descendant(&it, "writeConcernError.codeName", &it));
        ck_assert_str_eq(bson_iter_utf8(&it, NULL), net_code_name(cases[i].code));
        ck_assert(bson_iter_init(&it, &reply));
        ck_assert(bson_iter_find_descendant(&it, "writeConcernError.errmsg", &it));
        ck_assert(bson_iter_init(&it, &reply));
        ck_assert(bson_iter_find_descendant(&it, "writeConcernError.errInfo.wtimeout", &it) ==
                  cases[i].wtimeout);
        bson_destroy(&reply);
    }
}
END_TEST

static void cmd_init(struct net_cmd *c, const bson_t *body, const char *name, const char *db)
{
    memset(c, 0, sizeof *c);
    c->body = body;
    c->name = name;
    c->db = db;
}

START_TEST(test_field_readers)
{
    bson_t *b = doc_json(
        "{\"find\": \"c\", \"i\": 5, \"l\": {\"$numberLong\": \"-7\"}, \"d\": "
        "3.9, \"s\": \"x\", \"t\": true, \"z\": 0, \"o\": {\"a\": 1}, \"a\": "
        "[1, 2], \"dec\": {\"$numberDecimal\": \"12\"}, \"nan\": NaN}");
    struct net_cmd c;
    int64_t v;
    bool bv;
    bson_t view;

    cmd_init(&c, b, "find", "test");
    v = 99;
    ck_assert_int_eq(net_get_int64(&c, "missing", &v), 0);
    ck_assert_int_eq(v, 99);
    ck_assert_int_eq(net_get_int64(&c, "i", &v), 0);
    ck_assert_int_eq(v, 5);
    ck_assert_int_eq(net_get_int64(&c, "l", &v), 0);
    ck_assert_int_eq(v, -7);
    ck_assert_int_eq(net_get_int64(&c, "d", &v), 0);
    ck_assert_int_eq(v, 3);
    ck_assert_int_eq(net_get_int64(&c, "dec", &v), 0);
    ck_assert_int_eq(v, 12);
    ck_assert_int_ne(net_get_int64(&c, "nan", &v), 0);
    ck_assert_int_ne(net_get_int64(&c, "s", &v), 0);
    ck_assert_int_eq(c.err.mongo_code, 14);
    ck_assert_str_eq(c.err.msg,
                     "BSON field 'find.s' is the wrong type 'string', expected types "
                     "'[long, int, decimal, double]'");

    bv = false;
    ck_assert_int_eq(net_get_bool(&c, "t", &bv), 0);
    ck_assert(bv);
    ck_assert_int_eq(net_get_bool(&c, "z", &bv), 0);
    ck_assert(!bv);
    ck_assert_int_eq(net_get_bool(&c, "i", &bv), 0);
    ck_assert(bv);
    ck_assert_int_ne(net_get_bool(&c, "o", &bv), 0);
    ck_assert_int_eq(c.err.mongo_code, 14);

    ck_assert_int_eq(net_get_doc(&c, "o", &view), 0);
    ck_assert(bson_has_field(&view, "a"));
    ck_assert_int_ne(net_get_doc(&c, "a", &view), 0);
    ck_assert_int_eq(net_get_array(&c, "a", &view), 0);
    ck_assert_int_eq(bson_count_keys(&view), 2);
    ck_assert_int_ne(net_get_array(&c, "o", &view), 0);
    ck_assert_int_eq(c.err.mongo_code, 14);
    bson_destroy(b);
}
END_TEST

START_TEST(test_cmd_namespace)
{
    static const struct
    {
        const char *json;
        const char *db;
        int code;
        const char *ns;
    } cases[] = {
        {"{\"insert\": \"c\"}", "test", 0, "test.c"},
        {"{\"insert\": \"a.b\"}", "test", 0, "test.a.b"},
        {"{\"insert\": \"\"}", "test", 73, NULL},
        {"{\"insert\": \"a$b\"}", "test", 73, NULL},
        {"{\"insert\": \".x\"}", "test", 73, NULL},
        {"{\"insert\": 1}", "test", 73, NULL},
        {"{\"insert\": \"c\"}", "te.st", 73, NULL},
        {"{\"insert\": \"c\"}", "", 73, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *b = doc_json(cases[i].json);
        struct net_cmd c;
        char ns[300];
        int rv;

        cmd_init(&c, b, "insert", cases[i].db);
        rv = net_cmd_namespace(&c, ns, sizeof ns);
        if (cases[i].code == 0) {
            ck_assert_msg(rv == 0, "%s: %s", cases[i].json, c.err.msg);
            ck_assert_str_eq(ns, cases[i].ns);
        } else {
            ck_assert_msg(rv != 0 && c.err.mongo_code == cases[i].code, "%s in %s: code %d",
                          cases[i].json, cases[i].db, c.err.mongo_code);
        }
        bson_destroy(b);
    }
    {
        /* Namespaces longer than 255 bytes are refused. */
        char json[700], ns[600];
        struct net_cmd c;
        bson_t *b;
        memset(ns, 'x', 300);
        ns[300] = '\0';
        snprintf(json, sizeof json, "{\"insert\": \"%s\"}", ns);
        b = doc_json(json);
        cmd_init(&c, b, "insert", "test");
        ck_assert_int_ne(net_cmd_namespace(&c, ns, sizeof ns), 0);
        ck_assert_int_eq(c.err.mongo_code, 73);
        bson_destroy(b);
    }
}
END_TEST

START_TEST(test_type_names)
{
    ck_assert_str_eq(qry_type_name(BSON_TYPE_INT32), "int");
    ck_assert_str_eq(qry_type_name(BSON_TYPE_INT64), "long");
    ck_assert_str_eq(qry_type_name(BSON_TYPE_DOCUMENT), "object");
    ck_assert_str_eq(qry_type_name(BSON_TYPE_BINARY), "binData");
    ck_assert_str_eq(qry_type_name(BSON_TYPE_DECIMAL128), "decimal");
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_header);
    tcase_add_test(tc, test_crc32c);
    tcase_add_test(tc, test_msg_body_only);
    tcase_add_test(tc, test_msg_nesting_limit);
    tcase_add_loop_test(tc, test_msg_strings_must_be_utf8, 0,
                        (int)(sizeof utf8_cases / sizeof utf8_cases[0]));
    tcase_add_test(tc, test_query_short_trailer);
    tcase_add_test(tc, test_msg_sequences_any_order);
    tcase_add_test(tc, test_msg_empty_sequence);
    tcase_add_test(tc, test_msg_flags);
    tcase_add_test(tc, test_msg_checksum);
    tcase_add_loop_test(tc, test_msg_malformed, 0, (int)(sizeof malformed / sizeof malformed[0]));
    tcase_add_test(tc, test_msg_too_large_doc);
    tcase_add_test(tc, test_query_plain);
    tcase_add_test(tc, test_query_unwrap);
    tcase_add_test(tc, test_query_errors);
    tcase_add_test(tc, test_reply_op_msg_round_trip);
    tcase_add_test(tc, test_reply_op_reply);
    suite_add_tcase(s, tc);

    tc = tcase_create("util");
    tcase_add_test(tc, test_code_names);
    tcase_add_test(tc, test_mongo_code);
    tcase_add_test(tc, test_write_concern);
    tcase_add_test(tc, test_read_concern);
    tcase_add_test(tc, test_wce);
    tcase_add_test(tc, test_field_readers);
    tcase_add_test(tc, test_cmd_namespace);
    tcase_add_test(tc, test_type_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wire_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
