/*
 * wire.c: MongoDB wire-protocol framing (see wire.h): message headers,
 * OP_MSG and OP_QUERY request parsing, sequence merging and reply
 * encoding. Pure functions over caller buffers; no I/O, no global state.
 *
 * All integers on the wire are little-endian; they are read and written
 * byte by byte so the code is independent of host endianness and
 * alignment.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/wire.h"

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int32_t load_i32(const uint8_t *p)
{
    return (int32_t)load_u32(p);
}

static void store_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t wire_crc32c(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xffffffffu;

    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

int wire_parse_header(const uint8_t *buf, struct wire_header *h)
{
    h->length = load_i32(buf);
    h->request_id = load_i32(buf + 4);
    h->response_to = load_i32(buf + 8);
    h->opcode = load_i32(buf + 12);
    if (h->length < WIRE_HEADER_LEN || h->length > WIRE_MAX_MESSAGE) {
        return CAIRN_EPROTO;
    }
    return 0;
}

static int fail(struct cairn_error *err,
                bool *fatal,
                bool is_fatal,
                int code,
                int mongo_code,
                const char *fmt,
                ...) __attribute__((format(printf, 6, 7)));

static int fail(struct cairn_error *err,
                bool *fatal,
                bool is_fatal,
                int code,
                int mongo_code,
                const char *fmt,
                ...)
{
    char msg[sizeof err->msg];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *fatal = is_fatal;
    return cairn_error_mongo(err, code, mongo_code, "%s", msg);
}

/* Deepest nesting of documents and arrays accepted from clients (mongod's
 * BSONDepth limit). libbson's validator recurses once per level, so depth
 * is checked first, iteratively, to keep hostile input off the stack. */
#define WIRE_MAX_DEPTH 200

/* Size of the value of an element of type `t` at p[0..avail), or -1 when
 * it cannot be determined or overruns. Embedded documents and arrays are
 * not sized here (the caller descends into them). */
static int64_t value_size(uint8_t t, const uint8_t *p, size_t avail)
{
    int32_t n;
    const uint8_t *nul;

    switch (t) {
        case 0x01:
        case 0x09:
        case 0x11:
        case 0x12:
            return 8;
        case 0x10:
            return 4;
        case 0x13:
            return 16;
        case 0x07:
            return 12;
        case 0x08:
            return 1;
        case 0x06:
        case 0x0A:
        case 0x7F:
        case 0xFF:
            return 0;
        case 0x02:
        case 0x0D:
        case 0x0E:
            if (avail < 4) {
                return -1;
            }
            memcpy(&n, p, 4);
            return n < 1 ? -1 : 4 + (int64_t)n;
        case 0x05:
            if (avail < 4) {
                return -1;
            }
            memcpy(&n, p, 4);
            return n < 0 ? -1 : 5 + (int64_t)n;
        case 0x0F:
            if (avail < 4) {
                return -1;
            }
            memcpy(&n, p, 4);
            return n < 14 ? -1 : (int64_t)n;
        case 0x0C:
            if (avail < 4) {
                return -1;
            }
            memcpy(&n, p, 4);
            return n < 1 ? -1 : 4 + (int64_t)n + 12;
        case 0x0B:
            nul = memchr(p, 0, avail);
            if (nul == NULL) {
                return -1;
            }
            nul = memchr(nul + 1, 0, avail - (size_t)(nul + 1 - p));
            return nul == NULL ? -1 : (int64_t)(nul + 1 - p);
        default:
            return -1;
    }
}

/* True when the `len` bytes at `p` are UTF-8; embedded NULs are allowed in
 * string values (mongod stores them) but not in keys, which are C strings.
 * Almost every string a client sends is ASCII: those are checked eight
 * bytes at a time, and only strings with a byte >= 0x80 go to libbson's
 * byte-by-byte validator (every command's strings pass here). */
static bool utf8_ok(const uint8_t *p, size_t len)
{
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof w);
        if (w & 0x8080808080808080ull) {
            return bson_utf8_validate((const char *)p, len, true);
        }
    }
    for (; i < len; i++) {
        if (p[i] & 0x80) {
            return bson_utf8_validate((const char *)p, len, true);
        }
    }
    return true;
}

static int walk_doc(const uint8_t *p, size_t len, int depth_budget);

/* Checks the strings inside one value of type `t` occupying `sz` bytes at
 * `v` (its size already checked by value_size). libbson 1.23's
 * bson_validate(BSON_VALIDATE_UTF8) does not look at string values, so the
 * walk does it. Returns 0, 15 or 22. */
static int check_value_strings(uint8_t t, const uint8_t *v, size_t sz, int depth_budget)
{
    int32_t n;
    switch (t) {
        case 0x02: /* string, JavaScript code, symbol: int32 len, bytes, NUL */
        case 0x0D:
        case 0x0E:
        case 0x0C: /* DBPointer: a string, then 12 bytes of ObjectId */
            memcpy(&n, v, 4);
            if (v[4 + (size_t)n - 1] != 0) {
                return 22;
            }
            return utf8_ok(v + 4, (size_t)n - 1) ? 0 : 22;
        case 0x0B: { /* regex: pattern and options, two C strings */
            const uint8_t *nul = memchr(v, 0, sz);
            size_t plen = (size_t)(nul - v);
            return utf8_ok(v, plen) && utf8_ok(nul + 1, sz - plen - 2) ? 0 : 22;
        }
        case 0x0F: { /* code with scope: int32 total, string, scope document */
            memcpy(&n, v + 4, 4);
            if (n < 1 || (size_t)n > sz - 8 - 5 || v[8 + (size_t)n - 1] != 0 ||
                !utf8_ok(v + 8, (size_t)n - 1)) {
                return 22;
            }
            if (depth_budget == 0) {
                return 15;
            }
            return walk_doc(v + 8 + (size_t)n, sz - 8 - (size_t)n, depth_budget - 1);
        }
        default:
            return 0;
    }
}

/* Walks the document structure without recursion (except into the scope of
 * a code-with-scope value, which spends the same depth budget), checking
 * sizes, nesting and that every key and string is UTF-8. Returns 0, 15
 * (nested deeper than the budget) or 22 (malformed framing or strings). */
static int walk_doc(const uint8_t *p, size_t len, int depth_budget)
{
    size_t ends[WIRE_MAX_DEPTH + 1];
    int depth = 0;
    size_t off = 4;
    int32_t n;

    if (len < 5) {
        return 22;
    }
    memcpy(&n, p, 4);
    if (n < 5 || (size_t)n != len) {
        return 22;
    }
    ends[0] = len - 1; /* offset of the document's terminating NUL */
    for (;;) {
        if (off == ends[depth]) {
            if (p[off] != 0) {
                return 22;
            }
            off++;
            if (depth == 0) {
                return off == len ? 0 : 22;
            }
            depth--;
            continue;
        }
        if (off > ends[depth]) {
            return 22;
        }
        uint8_t t = p[off++];
        const uint8_t *nul = memchr(p + off, 0, ends[depth] - off);
        if (nul == NULL || !utf8_ok(p + off, (size_t)(nul - (p + off)))) {
            return 22;
        }
        off = (size_t)(nul - p) + 1;
        if (t == 0x03 || t == 0x04) {
            if (ends[depth] - off < 5) {
                return 22;
            }
            memcpy(&n, p + off, 4);
            if (n < 5 || (size_t)n > ends[depth] - off) {
                return 22;
            }
            if (depth == depth_budget) {
                return 15;
            }
            ends[++depth] = off + (size_t)n - 1;
            off += 4;
            continue;
        }
        int64_t sz = value_size(t, p + off, ends[depth] - off);
        if (sz < 0 || (uint64_t)sz > ends[depth] - off) {
            return 22;
        }
        int rc = check_value_strings(t, p + off, (size_t)sz, depth_budget - depth);
        if (rc != 0) {
            return rc;
        }
        off += (size_t)sz;
    }
}

/* Checks that `len` bytes at `p` hold exactly one valid BSON document with
 * UTF-8 strings and keys. Returns 0, 15 Overflow (nested too deep) or 22
 * InvalidBSON. */
static int check_doc(const uint8_t *p, size_t len)
{
    bson_t b;
    size_t off;
    /* Strings and keys must be UTF-8: replies echo them (error messages,
     * stored documents) and drivers refuse to decode invalid UTF-8. */
    int rc = walk_doc(p, len, WIRE_MAX_DEPTH);

    if (rc != 0) {
        return rc;
    }
    if (!bson_init_static(&b, p, len)) {
        return 22;
    }
    /* libbson's own structural checks (boolean bytes, code-with-scope
     * lengths); the walk above has bounded the depth its recursion sees. */
    return bson_validate(&b, BSON_VALIDATE_NONE, &off) ? 0 : 22;
}

/* The message for a check_doc failure. */
static const char *doc_problem(int code)
{
    return code == MONGO_Overflow ? "nested deeper than 200 levels" : "not valid BSON";
}

/* Parses a kind-1 section body (after the kind byte) of `size` bytes. */
static int parse_seq(const uint8_t *p,
                     size_t size,
                     struct wire_seq *seq,
                     bool *fatal,
                     struct cairn_error *err)
{
    const uint8_t *nul;
    size_t off;

    /* size includes its own 4 bytes; then a cstring identifier. */
    nul = memchr(p + 4, '\0', size - 4);
    if (nul == NULL) {
        return fail(err, fatal, true, CAIRN_EPROTO, 17,
                    "OP_MSG document sequence identifier is not terminated");
    }
    seq->id = (const char *)(p + 4);
    if (seq->id[0] == '\0') {
        return fail(err, fatal, false, CAIRN_EPROTO, 40431,
                    "OP_MSG document sequence has an empty identifier");
    }
    if (!bson_utf8_validate(seq->id, (size_t)(nul - (p + 4)), false)) {
        return fail(err, fatal, false, CAIRN_EBADDOC, 22,
                    "OP_MSG document sequence identifier is not valid UTF-8");
    }
    off = (size_t)(nul - p) + 1;
    seq->docs = p + off;
    seq->len = size - off;
    seq->n_docs = 0;
    while (off < size) {
        int32_t dlen;
        if (size - off < 5) {
            return fail(err, fatal, true, CAIRN_EPROTO, 17,
                        "OP_MSG document sequence '%s' ends inside a document", seq->id);
        }
        dlen = load_i32(p + off);
        if (dlen < 5 || (size_t)dlen > size - off) {
            return fail(err, fatal, true, CAIRN_EPROTO, 17,
                        "OP_MSG document sequence '%s' has a document overrunning the section",
                        seq->id);
        }
        if (dlen > WIRE_MAX_BSON) {
            return fail(err, fatal, false, CAIRN_ETOOBIG, 10334,
                        "a document in sequence '%s' is larger than 16777216 bytes", seq->id);
        }
        int bad = check_doc(p + off, (size_t)dlen);
        if (bad != 0) {
            return fail(err, fatal, false, CAIRN_EBADDOC, bad, "a document in sequence '%s' is %s",
                        seq->id, doc_problem(bad));
        }
        off += (size_t)dlen;
        seq->n_docs++;
    }
    return 0;
}

int wire_parse_op_msg(const uint8_t *msg,
                      size_t len,
                      struct wire_msg *out,
                      bool *fatal,
                      struct cairn_error *err)
{
    size_t off = WIRE_HEADER_LEN + 4, end = len;
    bool have_body = false;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    uint32_t flags;

    *fatal = false;
    memset(out, 0, sizeof *out);
    if (len < WIRE_HEADER_LEN + 4) {
        return fail(err, fatal, true, CAIRN_EPROTO, 17, "OP_MSG message too short");
    }
    flags = load_u32(msg + WIRE_HEADER_LEN);
    out->flags = flags;
    if ((flags & 0xffffu & ~(WIRE_MSG_CHECKSUM | WIRE_MSG_MORE_TO_COME)) != 0) {
        return fail(err, fatal, true, CAIRN_EPROTO, 40429, "Message contains illegal flags value");
    }
    if (flags & WIRE_MSG_CHECKSUM) {
        if (len < WIRE_HEADER_LEN + 4 + 4) {
            return fail(err, fatal, true, CAIRN_EPROTO, 17,
                        "OP_MSG message too short for its checksum");
        }
        end = len - 4;
        if (wire_crc32c(msg, end) != load_u32(msg + end)) {
            return fail(err, fatal, false, CAIRN_EPROTO, 288,
                        "OP_MSG checksum does not match contents");
        }
    }
    while (off < end) {
        uint8_t kind = msg[off++];
        size_t left = end - off;
        int32_t size;

        if (kind != 0 && kind != 1) {
            char k[8];
            snprintf(k, sizeof k, "%u", (unsigned)kind);
            return fail(err, fatal, true, CAIRN_EPROTO, 40432, "Unknown section kind %s", k);
        }
        if (left < 5) {
            return fail(err, fatal, true, CAIRN_EPROTO, 17, "OP_MSG section is truncated");
        }
        size = load_i32(msg + off);
        if (size < 5 || (size_t)size > left) {
            return fail(err, fatal, true, CAIRN_EPROTO, 17, "OP_MSG section size is invalid");
        }
        if (kind == 0) {
            if (have_body) {
                return fail(err, fatal, false, CAIRN_EPROTO, 40430,
                            "Multiple body sections in message");
            }
            if (size > WIRE_MAX_COMMAND) {
                return fail(err, fatal, false, CAIRN_ETOOBIG, 10334,
                            "command document is larger than 16793600 bytes");
            }
            int bad = check_doc(msg + off, (size_t)size);
            if (bad != 0) {
                return fail(err, fatal, false, CAIRN_EBADDOC, bad, "OP_MSG body is %s",
                            doc_problem(bad));
            }
            have_body = true;
            body = msg + off;
            body_len = (size_t)size;
        } else {
            struct wire_seq seq;
            int rv = parse_seq(msg + off, (size_t)size, &seq, fatal, err);
            if (rv != 0) {
                return rv;
            }
            for (size_t i = 0; i < out->n_seqs; i++) {
                if (strcmp(out->seqs[i].id, seq.id) == 0) {
                    return fail(err, fatal, false, CAIRN_EPROTO, 40431,
                                "Duplicate document sequence: %s", seq.id);
                }
            }
            if (out->n_seqs == WIRE_MAX_SEQS) {
                return fail(err, fatal, false, CAIRN_EPROTO, 233,
                            "Too many document sequences in OP_MSG");
            }
            out->seqs[out->n_seqs++] = seq;
        }
        off += (size_t)size;
    }
    if (!have_body) {
        return fail(err, fatal, false, CAIRN_EPROTO, 40587, "OP_MSG messages must have a body");
    }
    bson_init_static(&out->body, body, body_len);
    for (size_t i = 0; i < out->n_seqs; i++) {
        if (bson_has_field(&out->body, out->seqs[i].id)) {
            return fail(err, fatal, false, CAIRN_EPROTO, 40433,
                        "Duplicate field between body and document sequence %s", out->seqs[i].id);
        }
    }
    return 0;
}

int wire_merge_sequences(const struct wire_msg *m, bson_t *out, struct cairn_error *err)
{
    bson_init(out);
    if (!bson_concat(out, &m->body)) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                 "command document is too large");
    }
    for (size_t i = 0; i < m->n_seqs; i++) {
        const struct wire_seq *s = &m->seqs[i];
        bson_t arr;
        size_t off = 0;
        uint32_t idx = 0;

        if (!bson_append_array_begin(out, s->id, -1, &arr)) {
            return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                     "command document is too large");
        }
        while (off < s->len) {
            int32_t dlen = load_i32(s->docs + off);
            bson_t doc;
            char keybuf[16];
            const char *key;
            size_t klen = bson_uint32_to_string(idx++, &key, keybuf, sizeof keybuf);

            if (!bson_init_static(&doc, s->docs + off, (size_t)dlen) ||
                !bson_append_document(&arr, key, (int)klen, &doc)) {
                bson_append_array_end(out, &arr);
                return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                         "command document is too large");
            }
            off += (size_t)dlen;
        }
        if (!bson_append_array_end(out, &arr)) {
            return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                     "command document is too large");
        }
    }
    return 0;
}

/* secondaryOk from a $readPreference document: mode present and not
 * "primary". */
static bool read_pref_secondary_ok(const bson_t *doc)
{
    bson_iter_t it, sub;

    if (!bson_iter_init_find(&it, doc, "$readPreference") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &sub) || !bson_iter_find(&sub, "mode") ||
        !BSON_ITER_HOLDS_UTF8(&sub)) {
        return false;
    }
    return strcmp(bson_iter_utf8(&sub, NULL), "primary") != 0;
}

int wire_parse_op_query(const uint8_t *msg,
                        size_t len,
                        struct wire_query *out,
                        bool *fatal,
                        struct cairn_error *err)
{
    size_t off = WIRE_HEADER_LEN;
    const uint8_t *nul;
    const char *ns, *dot;
    int32_t qlen;
    bson_iter_t it;

    *fatal = false;
    memset(out, 0, sizeof *out);
    if (len < WIRE_HEADER_LEN + 4 + 1 + 8 + 5) {
        return fail(err, fatal, true, CAIRN_EPROTO, 17, "OP_QUERY message too short");
    }
    out->flags = load_i32(msg + off);
    off += 4;
    nul = memchr(msg + off, '\0', len - off);
    if (nul == NULL) {
        return fail(err, fatal, true, CAIRN_EPROTO, 17,
                    "OP_QUERY collection name is not terminated");
    }
    ns = (const char *)(msg + off);
    if (!bson_utf8_validate(ns, (size_t)(nul - (msg + off)), false)) {
        return fail(err, fatal, true, CAIRN_EBADDOC, 22,
                    "OP_QUERY collection name is not valid UTF-8");
    }
    off = (size_t)(nul - msg) + 1;
    if (len - off < 8 + 5) {
        return fail(err, fatal, true, CAIRN_EPROTO, 17, "OP_QUERY message too short");
    }
    out->n_skip = load_i32(msg + off);
    out->n_return = load_i32(msg + off + 4);
    off += 8;
    qlen = load_i32(msg + off);
    if (qlen < 5 || (size_t)qlen > len - off) {
        return fail(err, fatal, true, CAIRN_EPROTO, 17, "OP_QUERY query document size is invalid");
    }
    if (qlen > WIRE_MAX_COMMAND) {
        return fail(err, fatal, false, CAIRN_ETOOBIG, 10334,
                    "command document is larger than 16793600 bytes");
    }
    int bad = check_doc(msg + off, (size_t)qlen);
    if (bad != 0) {
        return fail(err, fatal, true, CAIRN_EBADDOC, bad, "OP_QUERY query is %s", doc_problem(bad));
    }
    bson_init_static(&out->query, msg + off, (size_t)qlen);
    off += (size_t)qlen;
    if (off < len) {
        /* Optional returnFieldsSelector: must be exactly one document. */
        int32_t flen = len - off >= 5 ? load_i32(msg + off) : 0;
        if (flen < 5 || (size_t)flen != len - off || check_doc(msg + off, (size_t)flen) != 0) {
            return fail(err, fatal, true, CAIRN_EPROTO, 17,
                        "OP_QUERY has trailing bytes after the query");
        }
    }

    dot = strchr(ns, '.');
    if (dot == NULL || strcmp(dot + 1, "$cmd") != 0 || dot == ns ||
        (size_t)(dot - ns) >= sizeof out->db) {
        return fail(err, fatal, false, CAIRN_EPROTO, 5739101,
                    "OP_QUERY is only supported for commands on '<db>.$cmd', not '%s'", ns);
    }
    memcpy(out->db, ns, (size_t)(dot - ns));
    out->db[dot - ns] = '\0';
    if (out->n_return < -1 || out->n_return > 1) {
        char n[16];
        snprintf(n, sizeof n, "%d", out->n_return);
        return fail(err, fatal, false, CAIRN_EINVAL, 16979,
                    "bad numberToReturn (%s) for $cmd type ns - can only be 1 or -1", n);
    }

    bson_init_static(&out->cmd, bson_get_data(&out->query), out->query.len);
    out->secondary_ok = (out->flags & WIRE_QUERY_SECONDARY_OK) != 0;
    if (bson_iter_init(&it, &out->query) && bson_iter_next(&it) &&
        (strcmp(bson_iter_key(&it), "$query") == 0 || strcmp(bson_iter_key(&it), "query") == 0) &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t dlen;
        bson_iter_document(&it, &dlen, &data);
        bson_init_static(&out->cmd, data, dlen);
        if (read_pref_secondary_ok(&out->query)) {
            out->secondary_ok = true;
        }
    }
    if (read_pref_secondary_ok(&out->cmd)) {
        out->secondary_ok = true;
    }
    return 0;
}

static void store_header(uint8_t *p,
                         uint32_t len,
                         int32_t request_id,
                         int32_t response_to,
                         int32_t opcode)
{
    store_u32(p, len);
    store_u32(p + 4, (uint32_t)request_id);
    store_u32(p + 8, (uint32_t)response_to);
    store_u32(p + 12, (uint32_t)opcode);
}

int wire_build_op_msg(int32_t request_id,
                      int32_t response_to,
                      const bson_t *doc,
                      uint8_t **out,
                      size_t *len)
{
    size_t n = WIRE_HEADER_LEN + 4 + 1 + doc->len;
    uint8_t *p = malloc(n);

    if (p == NULL) {
        return CAIRN_ENOMEM;
    }
    store_header(p, (uint32_t)n, request_id, response_to, WIRE_OP_MSG);
    store_u32(p + WIRE_HEADER_LEN, 0);
    p[WIRE_HEADER_LEN + 4] = 0;
    memcpy(p + WIRE_HEADER_LEN + 5, bson_get_data(doc), doc->len);
    *out = p;
    *len = n;
    return 0;
}

int wire_build_op_reply(int32_t request_id,
                        int32_t response_to,
                        const bson_t *doc,
                        uint8_t **out,
                        size_t *len)
{
    size_t n = WIRE_HEADER_LEN + 4 + 8 + 4 + 4 + doc->len;
    uint8_t *p = malloc(n);

    if (p == NULL) {
        return CAIRN_ENOMEM;
    }
    store_header(p, (uint32_t)n, request_id, response_to, WIRE_OP_REPLY);
    memset(p + WIRE_HEADER_LEN, 0, 4 + 8 + 4);
    store_u32(p + WIRE_HEADER_LEN + 16, 1);
    memcpy(p + WIRE_HEADER_LEN + 20, bson_get_data(doc), doc->len);
    *out = p;
    *len = n;
    return 0;
}
