/*
 * cairn.h: the public vocabulary shared by every layer, cairnd, tools and
 * tests: the version, the error codes and the error struct that carries a
 * message and, where one is known, the MongoDB error code a client sees.
 */
#ifndef CAIRN_CAIRN_H
#define CAIRN_CAIRN_H

#include <stdarg.h>
#include <stdint.h>

#include "cairn/mongo_codes.h"

/* The MongoDB version whose behaviour Cairn implements and advertises
 * (buildInfo, serverStatus, featureCompatibilityVersion); hello's
 * maxWireVersion (21) is that version's. docs/decisions.md says why. */
#define CAIRN_VERSION "7.0.0"
#define CAIRN_VERSION_MAJOR 7
#define CAIRN_VERSION_MINOR 0
#define CAIRN_VERSION_PATCH 0
#define CAIRN_FCV "7.0"
#define CAIRN_MAX_WIRE_VERSION 21

/* Internal error classes. 0 is success; errors are positive.
 * Retryable: BUSY, NOTLEADER, CONFLICT, INTERRUPTED. Caller bug: INVAL, STATE.
 * Environment: NOMEM, IO, NOSPC. Data: CORRUPT, BADDOC, TOOBIG. */
#define CAIRN_ERROR_MAP(X)          \
    X(NOMEM, "out of memory")       \
    X(INVAL, "invalid argument")    \
    X(IO, "I/O error")              \
    X(NOSPC, "no space left")       \
    X(CORRUPT, "data corrupt")      \
    X(NOTFOUND, "not found")        \
    X(EXISTS, "already exists")     \
    X(NOTLEADER, "not the leader")  \
    X(SHUTDOWN, "shutting down")    \
    X(BADDOC, "bad document")       \
    X(TOOBIG, "too large")          \
    X(CONFLICT, "write conflict")   \
    X(BUSY, "busy")                 \
    X(STATE, "invalid state")       \
    X(TIMEOUT, "timed out")         \
    X(UNSUPPORTED, "not supported") \
    X(PROTO, "protocol error")      \
    X(INTERRUPTED, "interrupted")

enum {
    CAIRN_OK = 0,
#define CAIRN__ENUM(name, text) CAIRN_E##name,
    CAIRN_ERROR_MAP(CAIRN__ENUM)
#undef CAIRN__ENUM
        CAIRN_E__COUNT
};

/* An error with context. `code` is a CAIRN_E* value; `mongo_code` is the
 * MongoDB error code the client should see (0 = derive from `code`);
 * `msg` is a human-readable message, wrapped with context as it travels up
 * ("insert: apply batch: rocksdb: IO error: ..."). */
struct cairn_error
{
    int code;
    int mongo_code;
    char msg[256];
};

/* Returns a static string naming `code`. Never NULL. Any thread. */
const char *cairn_strerror(int code);

/* Sets `err` (may be NULL) to `code` with a formatted message and returns
 * `code`, so callers can `return cairn_error_setf(err, ...)`. */
int cairn_error_setf(struct cairn_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like cairn_error_setf but also records the MongoDB code `mongo_code`
 * (e.g. 2 BadValue, 11000 DuplicateKey) the client must receive. */
int cairn_error_mongo(struct cairn_error *err, int code, int mongo_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes the message of `err` (may be NULL) with formatted context and
 * ": ". Returns err->code (or 0 when err is NULL). */
int cairn_error_wrapf(struct cairn_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resets `err` (may be NULL) to success. */
void cairn_error_clear(struct cairn_error *err);

#endif /* CAIRN_CAIRN_H */
