/*
 * fuzz_wire.c: libFuzzer harness of the wire-protocol framing
 * (src/net/wire.c). The input is one whole message as a connection would
 * have framed it: the header's length field is overwritten with the input
 * size (the connection reads exactly that many bytes), then the message is
 * parsed as OP_MSG and as OP_QUERY; accepted messages are merged and their
 * replies encoded, as dispatch.c does. Built as a fuzzer with -Dfuzz=true;
 * otherwise tests/unit/test_fuzz_corpus.c replays tests/fuzz/corpus/wire.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes `doc` both ways, as a reply to the parsed request would be. */
static void build_replies(const bson_t *doc)
{
    uint8_t *out = NULL;
    size_t len = 0;

    if (wire_build_op_msg(1, 2, doc, &out, &len) == 0) {
        free(out);
    }
    out = NULL;
    if (wire_build_op_reply(1, 2, doc, &out, &len) == 0) {
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wire_header h;
    struct cairn_error err;
    bool fatal;
    uint8_t *msg;

    if (size < WIRE_HEADER_LEN || size > WIRE_MAX_MESSAGE) {
        return 0;
    }
    /* An exact-size copy, so that ASan sees any read past the message. */
    msg = malloc(size);
    if (msg == NULL) {
        return 0;
    }
    memcpy(msg, data, size);
    msg[0] = (uint8_t)size;
    msg[1] = (uint8_t)(size >> 8);
    msg[2] = (uint8_t)(size >> 16);
    msg[3] = (uint8_t)(size >> 24);
    if (wire_parse_header(msg, &h) != 0) {
        free(msg);
        return 0;
    }

    struct wire_msg m;
    cairn_error_clear(&err);
    if (wire_parse_op_msg(msg, size, &m, &fatal, &err) == 0) {
        bson_t merged;
        cairn_error_clear(&err);
        if (wire_merge_sequences(&m, &merged, &err) == 0) {
            build_replies(&merged);
        }
        bson_destroy(&merged);
    }

    struct wire_query q;
    cairn_error_clear(&err);
    if (wire_parse_op_query(msg, size, &q, &fatal, &err) == 0) {
        build_replies(&q.cmd);
    }

    (void)wire_crc32c(msg, size);
    free(msg);
    return 0;
}
