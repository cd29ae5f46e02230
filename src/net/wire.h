/*
 * wire.h: the MongoDB wire-protocol framing of Cairn, pure functions with
 * no I/O (see shared/reference/wire-protocol.md §1): the 16-byte message
 * header, OP_MSG requests (flags, checksum, one body, kind-1 document
 * sequences), OP_QUERY command requests, and the OP_MSG / OP_REPLY replies
 * the server sends. Parsed structures borrow the message buffer.
 *
 * Errors carry the MongoDB code the client sees (cairn_error.mongo_code)
 * and a `fatal` flag: fatal errors mean the framing cannot be trusted and
 * the connection must be closed (after an error reply if one is possible);
 * non-fatal errors get an error reply and the connection stays open.
 *
 * Thread: any; no global state.
 */
#ifndef CAIRN_NET_WIRE_H
#define CAIRN_NET_WIRE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"

#define WIRE_OP_REPLY 1
#define WIRE_OP_UPDATE 2001
#define WIRE_OP_INSERT 2002
#define WIRE_OP_QUERY 2004
#define WIRE_OP_GET_MORE 2005
#define WIRE_OP_DELETE 2006
#define WIRE_OP_KILL_CURSORS 2007
#define WIRE_OP_COMPRESSED 2012
#define WIRE_OP_MSG 2013

#define WIRE_HEADER_LEN 16
/* maxMessageSizeBytes: the largest whole message (header included). */
#define WIRE_MAX_MESSAGE 48000000
/* maxBsonObjectSize: each document, each element of a sequence. */
#define WIRE_MAX_BSON (16 * 1024 * 1024)
/* The largest command body (and reply) mongod accepts: 16 MiB + 16 KiB. */
#define WIRE_MAX_COMMAND (16 * 1024 * 1024 + 16 * 1024)
/* mongod 4.4+ accepts at most this many kind-1 sections. */
#define WIRE_MAX_SEQS 2

/* OP_MSG flag bits. */
#define WIRE_MSG_CHECKSUM 0x1u
#define WIRE_MSG_MORE_TO_COME 0x2u
#define WIRE_MSG_EXHAUST_ALLOWED 0x10000u

/* OP_QUERY flag bit: the client accepts a secondary (slaveOk). */
#define WIRE_QUERY_SECONDARY_OK 0x4

struct wire_header
{
    int32_t length; /* whole message, header included */
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
};

/* Decodes the 16 bytes at `buf` (at least WIRE_HEADER_LEN of them). Returns
 * 0, or CAIRN_EPROTO when length < 16 or > WIRE_MAX_MESSAGE (the
 * connection must then be closed). */
int wire_parse_header(const uint8_t *buf, struct wire_header *h);

/* One kind-1 section: `n_docs` BSON documents concatenated in docs[0..len). */
struct wire_seq
{
    const char *id;
    const uint8_t *docs;
    size_t len;
    size_t n_docs;
};

/* A parsed OP_MSG request (borrows the message buffer). */
struct wire_msg
{
    uint32_t flags;
    bson_t body; /* static view of the kind-0 section */
    struct wire_seq seqs[WIRE_MAX_SEQS];
    size_t n_seqs;
};

/* Parses a whole OP_MSG message `msg` of `len` bytes (header included)
 * with every rule of wire-protocol.md §1.2: unknown required flag bits
 * (40429, fatal), checksum (validated: 288 ChecksumMismatch), exactly one
 * body (40430 several, 40587 none), unique sequence ids (40431), at most
 * WIRE_MAX_SEQS sequences (233), no body field named like a sequence
 * (40433), unknown section kinds (40432, fatal), sizes (truncated or
 * overlong sections: fatal; documents over WIRE_MAX_BSON / a body over
 * WIRE_MAX_COMMAND: 10334) and BSON validity (22 InvalidBSON). Returns 0 or
 * a CAIRN_E* code with `err` set and *fatal telling whether to close. */
int wire_parse_op_msg(const uint8_t *msg,
                      size_t len,
                      struct wire_msg *out,
                      bool *fatal,
                      struct cairn_error *err);

/* Builds the command document of `m`: the body's fields followed by one
 * array per sequence (named by its id, elements "0", "1", ...). Initialises
 * `out` (the caller destroys it, also on error). Returns 0 or CAIRN_ENOMEM
 * / CAIRN_ETOOBIG (10334) when the result exceeds bson_t's limits. */
int wire_merge_sequences(const struct wire_msg *m, bson_t *out, struct cairn_error *err);

/* A parsed OP_QUERY command request (borrows the message buffer). */
struct wire_query
{
    int32_t flags;
    char db[128]; /* the <db> of "<db>.$cmd" */
    int32_t n_skip;
    int32_t n_return;
    bson_t query;      /* static view of the query document as sent */
    bson_t cmd;        /* the command: query, or its $query / query member */
    bool secondary_ok; /* flag bit 2, or $readPreference mode != primary */
};

/* Parses an OP_QUERY message (header included). Only "<db>.$cmd"
 * namespaces are commands (else 5739101, non-fatal); numberToReturn must
 * be -1, 0 or 1 (16979); `$query` / `query` wrappers are unwrapped. A
 * truncated message or bad BSON is fatal. Returns 0 or a CAIRN_E* code. */
int wire_parse_op_query(const uint8_t *msg,
                        size_t len,
                        struct wire_query *out,
                        bool *fatal,
                        struct cairn_error *err);

/* Builds an OP_MSG reply (flags 0, one kind-0 section holding `doc`).
 * *out is malloc'd (caller frees). Returns 0 or CAIRN_ENOMEM. */
int wire_build_op_msg(int32_t request_id,
                      int32_t response_to,
                      const bson_t *doc,
                      uint8_t **out,
                      size_t *len);

/* Builds an OP_REPLY (responseFlags 0, cursorID 0, startingFrom 0,
 * numberReturned 1, `doc`). *out is malloc'd. Returns 0 or CAIRN_ENOMEM. */
int wire_build_op_reply(int32_t request_id,
                        int32_t response_to,
                        const bson_t *doc,
                        uint8_t **out,
                        size_t *len);

/* CRC-32C (Castagnoli) of `len` bytes, as the OP_MSG checksum. */
uint32_t wire_crc32c(const uint8_t *p, size_t len);

#endif /* CAIRN_NET_WIRE_H */
