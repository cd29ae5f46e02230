/*
 * oplog.c: the oplog entry codec. It owns the byte format of raft entry
 * payloads, a sequence of BSON documents:
 *
 *   header   {v: Int32 format version, t: Int64 raft term it was proposed in}
 *   commit   {ts: Timestamp, ops: [{op: "p"|"d"|"c"|"x"|"s", cid: Int64,
 *             ns?: string, k?: BinData(0), o?: document}]}   (one or more)
 *   padding  up to 7 zero bytes (REPL_OPLOG_ALIGN: raft_uv needs entry
 *            lengths that are multiples of 8)
 *
 * Version 1 is the format above. Entries written before the header existed
 * start directly with a commit and decode as version 0 (same commit
 * format, no term). A version above REPL_OPLOG_VERSION decodes to
 * CAIRN_EUNSUPPORTED so that the member stops instead of skipping it.
 * Op "s" is a session record (ENG_OP_SESSION: k = session key, o = record).
 * Op "r" is a replica-set config (ENG_OP_CONFIG: o = the config document),
 * written by replSetReconfig (older version-1 readers do not know it: a set
 * is upgraded as a whole, docs/decisions.md §24).
 * Every commit document starts with its ts at byte offset 8, so a commit
 * can be encoded before its timestamp is known and patched in place
 * (repl_oplog_patch_ts). Anything else unexpected is CAIRN_ECORRUPT: a
 * replicated log must never be half-understood.
 * Pure functions, any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "repl/repl.h"

/* Largest payload we accept to decode: raft entries are kept well below
 * raft_uv's segment size; this is a sanity bound, not a policy. */
#define OPLOG_MAX_PAYLOAD ((size_t)1 << 30)

static const char *op_code(int kind)
{
    switch (kind) {
        case ENG_OP_PUT:
            return "p";
        case ENG_OP_DELETE:
            return "d";
        case ENG_OP_CREATE:
            return "c";
        case ENG_OP_DROP:
            return "x";
        case ENG_OP_SESSION:
            return "s";
        case ENG_OP_CONFIG:
            return "r";
        default:
            return NULL;
    }
}

static int encode_op(bson_t *arr, uint32_t i, const struct eng_op *op)
{
    const char *code = op_code(op->kind);
    char idx[16];
    const char *key;
    bson_t child;
    bool ok = true;

    if (code == NULL) {
        return CAIRN_EINVAL;
    }
    bson_uint32_to_string(i, &key, idx, sizeof idx);
    if (!bson_append_document_begin(arr, key, -1, &child)) {
        return CAIRN_ENOMEM;
    }
    ok = ok && BSON_APPEND_UTF8(&child, "op", code);
    ok = ok && BSON_APPEND_INT64(&child, "cid", (int64_t)op->coll_id);
    if (op->ns != NULL) {
        ok = ok && BSON_APPEND_UTF8(&child, "ns", op->ns);
    }
    if (op->kind == ENG_OP_PUT || op->kind == ENG_OP_DELETE || op->kind == ENG_OP_SESSION) {
        if (op->key == NULL || op->key_len == 0 || op->key_len > INT32_MAX) {
            ok = false;
        } else {
            ok = ok && bson_append_binary(&child, "k", 1, BSON_SUBTYPE_BINARY, op->key,
                                          (uint32_t)op->key_len);
        }
    }
    if (op->kind == ENG_OP_PUT || op->kind == ENG_OP_SESSION || op->kind == ENG_OP_CONFIG) {
        bson_t doc;
        if (op->doc == NULL || !bson_init_static(&doc, op->doc, op->doc_len)) {
            ok = false;
        } else {
            ok = ok && BSON_APPEND_DOCUMENT(&child, "o", &doc);
        }
    }
    if (op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) {
        if (op->ns == NULL) {
            ok = false;
        }
    }
    if (!bson_append_document_end(arr, &child)) {
        return CAIRN_ENOMEM;
    }
    return ok ? 0 : CAIRN_EINVAL;
}

int repl_oplog_encode_header(uint64_t term, struct cairn_buf *out)
{
    bson_t doc;
    int rc;

    if (term > INT64_MAX) {
        return CAIRN_EINVAL;
    }
    bson_init(&doc);
    if (!BSON_APPEND_INT32(&doc, "v", REPL_OPLOG_VERSION) ||
        !BSON_APPEND_INT64(&doc, "t", (int64_t)term)) {
        bson_destroy(&doc);
        return CAIRN_ENOMEM;
    }
    rc = cairn_buf_append(out, bson_get_data(&doc), doc.len);
    bson_destroy(&doc);
    return rc;
}

void repl_oplog_patch_ts(uint8_t *commit_enc, cairn_ts ts)
{
    /* BSON Timestamp: increment then seconds, each little-endian 32 bits. */
    uint32_t inc = CAIRN_TS_INC(ts), secs = CAIRN_TS_SECS(ts);
    uint8_t *p = commit_enc + REPL_OPLOG_TS_OFFSET;

    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(inc >> (8 * i));
        p[4 + i] = (uint8_t)(secs >> (8 * i));
    }
}

int repl_oplog_encode(const struct eng_commit *commit, struct cairn_buf *out)
{
    bson_t doc;
    bson_t arr;
    int rc = 0;

    if (commit == NULL || (commit->n_ops > 0 && commit->ops == NULL)) {
        return CAIRN_EINVAL;
    }
    bson_init(&doc);
    if (!bson_append_timestamp(&doc, "ts", 2, CAIRN_TS_SECS(commit->ts),
                               CAIRN_TS_INC(commit->ts)) ||
        !bson_append_array_begin(&doc, "ops", 3, &arr)) {
        bson_destroy(&doc);
        return CAIRN_ENOMEM;
    }
    for (size_t i = 0; i < commit->n_ops && rc == 0; i++) {
        if (i > UINT32_MAX) {
            rc = CAIRN_EINVAL;
            break;
        }
        rc = encode_op(&arr, (uint32_t)i, &commit->ops[i]);
    }
    if (!bson_append_array_end(&doc, &arr) && rc == 0) {
        rc = CAIRN_ENOMEM;
    }
    if (rc == 0) {
        rc = cairn_buf_append(out, bson_get_data(&doc), doc.len);
    }
    bson_destroy(&doc);
    return rc;
}

/* ---- Decoding ---------------------------------------------------------- */

struct decoder
{
    struct eng_commit *commits;
    size_t n_commits, cap_commits;
    size_t *first_op; /* per commit: index of its first op in ops[] */
    struct eng_op *ops;
    size_t n_ops, cap_ops;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *np;

    if (need <= *cap) {
        return 0;
    }
    ncap = *cap ? *cap * 2 : 8;
    while (ncap < need) {
        ncap *= 2;
    }
    np = realloc(*p, ncap * elem);
    if (np == NULL) {
        return CAIRN_ENOMEM;
    }
    *p = np;
    *cap = ncap;
    return 0;
}

static int corrupt(struct cairn_error *err, size_t commit, const char *what)
{
    return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: commit %zu: %s", commit, what);
}

static int kind_of(const char *s, uint32_t len)
{
    if (len != 1) {
        return 0;
    }
    switch (s[0]) {
        case 'p':
            return ENG_OP_PUT;
        case 'd':
            return ENG_OP_DELETE;
        case 'c':
            return ENG_OP_CREATE;
        case 'x':
            return ENG_OP_DROP;
        case 's':
            return ENG_OP_SESSION;
        case 'r':
            return ENG_OP_CONFIG;
        default:
            return 0;
    }
}

/* Field bits for duplicate/missing detection. */
enum { F_OP = 1, F_CID = 2, F_NS = 4, F_K = 8, F_O = 16 };

static int decode_op(bson_iter_t *it, size_t ci, struct eng_op *op, struct cairn_error *err)
{
    bson_iter_t f;
    unsigned seen = 0;

    memset(op, 0, sizeof *op);
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &f)) {
        return corrupt(err, ci, "op is not a document");
    }
    while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        unsigned bit;
        if (strcmp(k, "op") == 0) {
            bit = F_OP;
        } else if (strcmp(k, "cid") == 0) {
            bit = F_CID;
        } else if (strcmp(k, "ns") == 0) {
            bit = F_NS;
        } else if (strcmp(k, "k") == 0) {
            bit = F_K;
        } else if (strcmp(k, "o") == 0) {
            bit = F_O;
        } else {
            return corrupt(err, ci, "unknown op field");
        }
        if (seen & bit) {
            return corrupt(err, ci, "duplicate op field");
        }
        seen |= bit;
        switch (bit) {
            case F_OP: {
                uint32_t len;
                const char *s;
                if (!BSON_ITER_HOLDS_UTF8(&f)) {
                    return corrupt(err, ci, "op.op is not a string");
                }
                s = bson_iter_utf8(&f, &len);
                op->kind = kind_of(s, len);
                if (op->kind == 0) {
                    return corrupt(err, ci, "unknown op kind");
                }
                break;
            }
            case F_CID:
                if (!BSON_ITER_HOLDS_INT64(&f)) {
                    return corrupt(err, ci, "op.cid is not an Int64");
                }
                op->coll_id = (uint64_t)bson_iter_int64(&f);
                break;
            case F_NS: {
                uint32_t len;
                const char *s;
                if (!BSON_ITER_HOLDS_UTF8(&f)) {
                    return corrupt(err, ci, "op.ns is not a string");
                }
                s = bson_iter_utf8(&f, &len);
                if (len == 0 || len > ENG_NS_MAX || strlen(s) != len) {
                    return corrupt(err, ci, "op.ns has a bad length");
                }
                op->ns = s; /* NUL-terminated inside the payload */
                break;
            }
            case F_K: {
                bson_subtype_t st;
                uint32_t len;
                const uint8_t *p;
                if (!BSON_ITER_HOLDS_BINARY(&f)) {
                    return corrupt(err, ci, "op.k is not BinData");
                }
                bson_iter_binary(&f, &st, &len, &p);
                if (st != BSON_SUBTYPE_BINARY || len == 0 || p == NULL) {
                    return corrupt(err, ci, "op.k has a bad subtype or length");
                }
                op->key = p;
                op->key_len = len;
                break;
            }
            case F_O: {
                uint32_t len;
                const uint8_t *p;
                if (!BSON_ITER_HOLDS_DOCUMENT(&f)) {
                    return corrupt(err, ci, "op.o is not a document");
                }
                bson_iter_document(&f, &len, &p);
                if (p == NULL || len < 5) {
                    return corrupt(err, ci, "op.o is empty");
                }
                op->doc = p;
                op->doc_len = len;
                break;
            }
            default:
                break;
        }
    }
    if (!(seen & F_OP) || !(seen & F_CID)) {
        return corrupt(err, ci, "op lacks op or cid");
    }
    switch (op->kind) {
        case ENG_OP_PUT:
            if ((seen & (F_K | F_O)) != (F_K | F_O)) {
                return corrupt(err, ci, "put op lacks k or o");
            }
            break;
        case ENG_OP_DELETE:
            if (!(seen & F_K) || (seen & F_O)) {
                return corrupt(err, ci, "delete op needs k and no o");
            }
            break;
        case ENG_OP_SESSION:
            if ((seen & (F_K | F_O)) != (F_K | F_O) || (seen & F_NS)) {
                return corrupt(err, ci, "session op needs k and o and no ns");
            }
            break;
        case ENG_OP_CONFIG:
            if (!(seen & F_O) || (seen & (F_K | F_NS))) {
                return corrupt(err, ci, "config op needs o and no k or ns");
            }
            break;
        default: /* CREATE, DROP */
            if (!(seen & F_NS) || (seen & (F_K | F_O))) {
                return corrupt(err, ci, "create/drop op needs ns and no k or o");
            }
            break;
    }
    return 0;
}

static int decode_commit(struct decoder *d, const bson_t *doc, struct cairn_error *err)
{
    size_t ci = d->n_commits;
    bson_iter_t it;
    bool have_ts = false, have_ops = false;
    cairn_ts ts = 0;
    size_t first = d->n_ops;

    if (!bson_iter_init(&it, doc)) {
        return corrupt(err, ci, "bad document");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "ts") == 0) {
            uint32_t secs, inc;
            if (have_ts || !BSON_ITER_HOLDS_TIMESTAMP(&it)) {
                return corrupt(err, ci, "ts is duplicated or not a Timestamp");
            }
            bson_iter_timestamp(&it, &secs, &inc);
            ts = CAIRN_TS(secs, inc);
            if (ts == 0) {
                return corrupt(err, ci, "ts is zero");
            }
            have_ts = true;
        } else if (strcmp(k, "ops") == 0) {
            bson_iter_t a;
            if (have_ops || !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &a)) {
                return corrupt(err, ci, "ops is duplicated or not an array");
            }
            have_ops = true;
            while (bson_iter_next(&a)) {
                int rc = grow((void **)&d->ops, &d->cap_ops, d->n_ops + 1, sizeof *d->ops);
                if (rc != 0) {
                    return cairn_error_setf(err, rc, "oplog entry: out of memory");
                }
                rc = decode_op(&a, ci, &d->ops[d->n_ops], err);
                if (rc != 0) {
                    return rc;
                }
                d->n_ops++;
            }
        } else {
            return corrupt(err, ci, "unknown field");
        }
    }
    if (!have_ts || !have_ops) {
        return corrupt(err, ci, "missing ts or ops");
    }
    if (grow((void **)&d->commits, &d->cap_commits, ci + 1, sizeof *d->commits) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "oplog entry: out of memory");
    }
    {
        /* first_op grows in step with commits (same capacity). */
        size_t cap = d->cap_commits;
        size_t *np = realloc(d->first_op, cap * sizeof *np);
        if (np == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "oplog entry: out of memory");
        }
        d->first_op = np;
    }
    d->commits[ci].ts = ts;
    d->commits[ci].n_ops = d->n_ops - first;
    d->commits[ci].ops = NULL;
    d->first_op[ci] = first;
    d->n_commits++;
    return 0;
}

/* The header {v, t}. A version this build does not know is
 * CAIRN_EUNSUPPORTED (the caller must stop, never skip). */
static int decode_header(const bson_t *doc, struct repl_decoded *out, struct cairn_error *err)
{
    bson_iter_t it;
    bool have_v = false, have_t = false;

    if (!bson_iter_init(&it, doc)) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: bad header");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "v") == 0 && BSON_ITER_HOLDS_INT32(&it) && !have_v) {
            out->version = bson_iter_int32(&it);
            have_v = true;
        } else if (strcmp(k, "t") == 0 && BSON_ITER_HOLDS_INT64(&it) && !have_t) {
            int64_t term = bson_iter_int64(&it);
            if (term < 0) {
                return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: negative term");
            }
            out->term = (uint64_t)term;
            have_t = true;
        } else if (strcmp(k, "v") != 0 && strcmp(k, "t") != 0 && have_v &&
                   out->version > REPL_OPLOG_VERSION) {
            /* A newer format may add header fields: report the version. */
            continue;
        } else {
            return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: bad header field '%s'", k);
        }
    }
    if (!have_v || out->version < 1) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: header without a version");
    }
    if (out->version > REPL_OPLOG_VERSION) {
        return cairn_error_setf(err, CAIRN_EUNSUPPORTED,
                                "oplog entry format version %d is newer than this cairnd "
                                "understands (%d): upgrade this member",
                                out->version, REPL_OPLOG_VERSION);
    }
    if (!have_t) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: header without a term");
    }
    return 0;
}

int repl_oplog_decode(const uint8_t *buf,
                      size_t len,
                      struct repl_decoded *out,
                      struct cairn_error *err)
{
    struct decoder d;
    size_t pos = 0;
    int rc = 0;

    memset(&d, 0, sizeof d);
    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: empty payload");
    }
    if (len > OPLOG_MAX_PAYLOAD) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: payload too large (%zu)", len);
    }
    while (pos < len && rc == 0) {
        uint32_t dlen;
        bson_t doc;
        size_t off = 0;
        bool first = pos == 0;

        if (len - pos < REPL_OPLOG_ALIGN && d.n_commits > 0) {
            bool zeros = true;
            for (size_t i = pos; i < len; i++) {
                zeros = zeros && buf[i] == 0;
            }
            if (zeros) {
                break; /* alignment padding */
            }
        }
        if (len - pos < 5) {
            rc = corrupt(err, d.n_commits, "truncated document header");
            break;
        }
        dlen = (uint32_t)buf[pos] | (uint32_t)buf[pos + 1] << 8 | (uint32_t)buf[pos + 2] << 16 |
               (uint32_t)buf[pos + 3] << 24;
        if (dlen < 5 || dlen > len - pos) {
            rc = corrupt(err, d.n_commits, "document length out of range");
            break;
        }
        if (!bson_init_static(&doc, buf + pos, dlen)) {
            rc = corrupt(err, d.n_commits, "malformed BSON");
            break;
        }
        if (!bson_validate(&doc, BSON_VALIDATE_NONE, &off)) {
            rc = corrupt(err, d.n_commits, "invalid BSON");
            break;
        }
        if (first && !bson_has_field(&doc, "ts")) {
            rc = decode_header(&doc, out, err);
        } else {
            rc = decode_commit(&d, &doc, err);
        }
        pos += dlen;
    }
    if (rc != 0) {
        free(d.commits);
        free(d.first_op);
        free(d.ops);
        return rc;
    }
    for (size_t i = 0; i < d.n_commits; i++) {
        d.commits[i].ops = d.commits[i].n_ops ? &d.ops[d.first_op[i]] : NULL;
    }
    free(d.first_op);
    if (d.n_commits == 0) {
        free(d.commits);
        free(d.ops);
        return cairn_error_setf(err, CAIRN_ECORRUPT, "oplog entry: no commit");
    }
    out->commits = d.commits;
    out->n_commits = d.n_commits;
    out->ops = d.ops;
    out->n_ops = d.n_ops;
    return 0;
}

void repl_decoded_free(struct repl_decoded *d)
{
    if (d == NULL) {
        return;
    }
    free(d->commits);
    free(d->ops);
    memset(d, 0, sizeof *d);
}
