/*
 * util.c: helpers shared by the command files of src/net: the MongoDB
 * error-code table, the mapping of internal errors to MongoDB codes, the
 * writeConcern / readConcern parsers, writeConcernError replies, the
 * type-checked field readers, command namespaces (also as currentOp and
 * failCommand see them), mongod's integer-field extraction and currentOp's
 * time format. Pure functions; any thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "net/net_int.h"
#include "net/server_int.h"
#include "txn/txn.h"

const char *net_code_name(int code)
{
    const char *name = cairn_mongo_code_name(code);
    if (name == NULL) {
        /* mongod names its numbered assertions "Location<code>". */
        static _Thread_local char buf[24];
        snprintf(buf, sizeof buf, "Location%d", code);
        return buf;
    }
    return name;
}

int net_mongo_code(const struct cairn_error *err)
{
    if (err->mongo_code != 0) {
        return err->mongo_code;
    }
    switch (err->code) {
        case CAIRN_ENOTLEADER:
            return MONGO_NotWritablePrimary;
        case CAIRN_EBADDOC:
        case CAIRN_EINVAL:
            return MONGO_BadValue;
        case CAIRN_ETOOBIG:
            return MONGO_BSONObjectTooLarge;
        case CAIRN_ENOTFOUND:
            return MONGO_NamespaceNotFound;
        case CAIRN_EEXISTS:
            return MONGO_NamespaceExists;
        case CAIRN_ETIMEOUT:
            return MONGO_MaxTimeMSExpired;
        case CAIRN_ESHUTDOWN:
            return MONGO_ShutdownInProgress;
        case CAIRN_ECONFLICT:
            return MONGO_WriteConflict;
        case CAIRN_EUNSUPPORTED:
            return MONGO_NotImplemented;
        default:
            return MONGO_InternalError;
    }
}

/* ---- Field readers ------------------------------------------------------ */

static int wrong_type(const struct net_cmd *c,
                      const char *field,
                      bson_type_t got,
                      const char *expected)
{
    struct net_cmd *mc = (struct net_cmd *)c; /* err is the mutable part of the command */
    return cairn_error_mongo(&mc->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "BSON field '%s.%s' is the wrong type '%s', expected %s",
                             c->name != NULL ? c->name : "", field, qry_type_name(got), expected);
}

/* Reads a numeric element as a double; false for non-numbers. */
static bool iter_number(const bson_iter_t *it, double *out, bool *is_int, int64_t *ival)
{
    switch (bson_iter_type(it)) {
        case BSON_TYPE_INT32:
            *ival = bson_iter_int32(it);
            *is_int = true;
            *out = (double)*ival;
            return true;
        case BSON_TYPE_INT64:
            *ival = bson_iter_int64(it);
            *is_int = true;
            *out = (double)*ival;
            return true;
        case BSON_TYPE_DOUBLE:
            *out = bson_iter_double(it);
            *is_int = false;
            return true;
        case BSON_TYPE_DECIMAL128: {
            bson_decimal128_t d;
            char str[BSON_DECIMAL128_STRING];
            bson_iter_decimal128(it, &d);
            bson_decimal128_to_string(&d, str);
            if (strcmp(str, "NaN") == 0 || strcmp(str, "-NaN") == 0) {
                *out = NAN;
            } else if (strcmp(str, "Infinity") == 0) {
                *out = INFINITY;
            } else if (strcmp(str, "-Infinity") == 0) {
                *out = -INFINITY;
            } else {
                *out = strtod(str, NULL);
            }
            *is_int = false;
            return true;
        }
        default:
            return false;
    }
}

int net_get_int64(const struct net_cmd *c, const char *field, int64_t *out)
{
    bson_iter_t it;
    double d;
    bool is_int;
    int64_t iv = 0;

    if (!bson_iter_init_find(&it, c->body, field)) {
        return MONGO_OK;
    }
    if (!iter_number(&it, &d, &is_int, &iv)) {
        return wrong_type(c, field, bson_iter_type(&it), "types '[long, int, decimal, double]'");
    }
    if (is_int) {
        *out = iv;
        return MONGO_OK;
    }
    if (!isfinite(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0) {
        struct net_cmd *mc = (struct net_cmd *)c;
        return cairn_error_mongo(&mc->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "BSON field '%s.%s' value must be a finite number that fits in "
                                 "a 64-bit integer",
                                 c->name != NULL ? c->name : "", field);
    }
    *out = (int64_t)d;
    return MONGO_OK;
}

int net_get_bool(const struct net_cmd *c, const char *field, bool *out)
{
    bson_iter_t it;
    double d;
    bool is_int;
    int64_t iv = 0;

    if (!bson_iter_init_find(&it, c->body, field)) {
        return MONGO_OK;
    }
    if (BSON_ITER_HOLDS_BOOL(&it)) {
        *out = bson_iter_bool(&it);
        return MONGO_OK;
    }
    if (!iter_number(&it, &d, &is_int, &iv)) {
        return wrong_type(c, field, bson_iter_type(&it),
                          "types '[bool, long, int, decimal, double]'");
    }
    *out = is_int ? iv != 0 : d != 0.0;
    return MONGO_OK;
}

/* Reads an embedded document or array field as a static view. */
static int get_embedded(const struct net_cmd *c,
                        const char *field,
                        bson_type_t type,
                        const char *expected,
                        bson_t *out)
{
    bson_iter_t it;
    const uint8_t *data;
    uint32_t len;

    if (!bson_iter_init_find(&it, c->body, field)) {
        return MONGO_OK;
    }
    if (bson_iter_type(&it) != type) {
        return wrong_type(c, field, bson_iter_type(&it), expected);
    }
    if (type == BSON_TYPE_ARRAY) {
        bson_iter_array(&it, &len, &data);
    } else {
        bson_iter_document(&it, &len, &data);
    }
    if (!bson_init_static(out, data, len)) {
        struct net_cmd *mc = (struct net_cmd *)c;
        return cairn_error_mongo(&mc->err, CAIRN_EBADDOC, MONGO_InvalidBSON,
                                 "BSON field '%s.%s' is invalid BSON",
                                 c->name != NULL ? c->name : "", field);
    }
    return MONGO_OK;
}

int net_get_doc(const struct net_cmd *c, const char *field, bson_t *out)
{
    return get_embedded(c, field, BSON_TYPE_DOCUMENT, "type 'object'", out);
}

int net_get_array(const struct net_cmd *c, const char *field, bson_t *out)
{
    return get_embedded(c, field, BSON_TYPE_ARRAY, "type 'array'", out);
}

int net_get_hint(const bson_t *doc, bson_value_t *out, struct cairn_error *err)
{
    bson_iter_t it;

    out->value_type = BSON_TYPE_EOD;
    if (!bson_iter_init_find(&it, doc, "hint")) {
        return 0;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it) && !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                 "Hint must be a string or an object");
    }
    *out = *bson_iter_value(&it);
    return 0;
}

int net_find_pipeline(struct net_cmd *c, const bson_t *cmd, bson_iter_t *it)
{
    if (!bson_iter_init_find(it, cmd, "pipeline")) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                                 "BSON field 'aggregate.pipeline' is missing but a required field");
    }
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "'pipeline' option must be specified as an array");
    }
    return 0;
}

/* ---- Namespaces --------------------------------------------------------- */

static bool valid_db_name(const char *db)
{
    size_t n = strlen(db);

    if (n == 0 || n >= 64) {
        return false;
    }
    return strpbrk(db, "/\\. \"$") == NULL;
}

int net_cmd_namespace(struct net_cmd *c, char *buf, size_t bufsize)
{
    bson_iter_t it;
    const char *coll;
    uint32_t len;
    int n;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace: empty command");
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "collection name has invalid type %s",
                                 qry_type_name(bson_iter_type(&it)));
    }
    coll = bson_iter_utf8(&it, &len);
    if (len == 0 || strlen(coll) != len || coll[0] == '.' || strchr(coll, '$') != NULL ||
        !valid_db_name(c->db)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified '%s.%.*s'", c->db,
                                 (int)(len > 200 ? 200 : len), coll);
    }
    n = snprintf(buf, bufsize, "%s.%s", c->db, coll);
    if (n < 0 || (size_t)n >= bufsize || n > TXN_NS_MAX) {
        return cairn_error_mongo(
            &c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
            "Fully qualified namespace is too long. Namespace: %s.%.*s Max: %d", c->db,
            (int)(len > 200 ? 200 : len), coll, TXN_NS_MAX);
    }
    return MONGO_OK;
}

void net_cmd_op_ns(const struct net_cmd *c, bool for_current_op, char *buf, size_t n)
{
    bson_iter_t it;
    const char *coll = NULL;
    uint32_t len = 0;

    if (c->body != NULL && bson_iter_init(&it, c->body) && bson_iter_next(&it)) {
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            coll = bson_iter_utf8(&it, &len);
        } else if (c->name != NULL && strcmp(c->name, "getMore") == 0 &&
                   bson_iter_init_find(&it, c->body, "collection") && BSON_ITER_HOLDS_UTF8(&it)) {
            coll = bson_iter_utf8(&it, &len);
        }
    }
    if (coll != NULL && len > 0 && strlen(coll) == len) {
        snprintf(buf, n, "%s.%s", c->db, coll);
    } else if (for_current_op) {
        snprintf(buf, n, "%s.$cmd", c->db);
    } else {
        snprintf(buf, n, "%s", c->db);
    }
}

int net_extract_integer(const bson_t *doc, const char *field, int64_t *out, struct cairn_error *err)
{
    bson_iter_t it;
    double d;
    bool is_int;
    int64_t iv = 0;

    if (!bson_iter_init_find(&it, doc, field)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NoSuchKey,
                                 "Missing expected field \"%s\"", field);
    }
    if (!iter_number(&it, &d, &is_int, &iv)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "Expected field \"%s\" to have numeric type, but found %s", field,
                                 qry_type_name(bson_iter_type(&it)));
    }
    if (is_int) {
        *out = iv;
        return 0;
    }
    if (!isfinite(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0 || floor(d) != d) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "Expected field \"%s\" to have a value exactly representable as "
                                 "a 64-bit integer, but found %s: %g",
                                 field, field, d);
    }
    *out = (int64_t)d;
    return 0;
}

void net_append_index_key(bson_t *arr, uint32_t i, const char *value)
{
    char keybuf[16];
    const char *key;
    size_t klen = bson_uint32_to_string(i, &key, keybuf, sizeof keybuf);
    bson_append_utf8(arr, key, (int)klen, value, -1);
}

void net_append_optime(bson_t *doc, const char *key, cairn_ts ts, uint64_t term)
{
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(doc, key, &sub);
    BSON_APPEND_TIMESTAMP(&sub, "ts", CAIRN_TS_SECS(ts), CAIRN_TS_INC(ts));
    BSON_APPEND_INT64(&sub, "t", (int64_t)term);
    bson_append_document_end(doc, &sub);
}

void net_append_iso_now(bson_t *doc, const char *key)
{
    int64_t now = cairn_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    char date[40];
    char buf[64];

    gmtime_r(&secs, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, sizeof buf, "%s.%03d+00:00", date, (int)(now % 1000));
    BSON_APPEND_UTF8(doc, key, buf);
}

bool net_is_generic_arg(const char *key)
{
    static const char *const generic[] = {
        "$db",
        "$readPreference",
        "lsid",
        "$clusterTime",
        "comment",
        "txnNumber",
        "autocommit",
        "readConcern",
        "writeConcern",
        "maxTimeMS",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "startTransaction",
        "stmtId",
        "txnRetryCounter",
        "clientOperationKey",
        "help",
        "$client",
        "$audit",
        NULL,
    };
    for (int i = 0; generic[i] != NULL; i++) {
        if (strcmp(key, generic[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- Write concern ------------------------------------------------------ */

int net_parse_write_concern(const bson_t *body, struct repl_wc *wc, struct cairn_error *err)
{
    bson_iter_t it, sub;
    bool j = false, fsync = false;

    wc->w = 0; /* majority */
    wc->j = false;
    wc->wtimeout_ms = 0;

    if (!bson_iter_init_find(&it, body, "writeConcern") || BSON_ITER_HOLDS_NULL(&it)) {
        return MONGO_OK;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_mongo(
            err, CAIRN_EINVAL, MONGO_TypeMismatch,
            "BSON field 'writeConcern' is the wrong type '%s', expected type 'object'",
            qry_type_name(bson_iter_type(&it)));
    }
    if (!bson_iter_recurse(&it, &sub)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_FailedToParse,
                                 "writeConcern is not a valid document");
    }
    while (bson_iter_next(&sub)) {
        const char *key = bson_iter_key(&sub);
        double d;
        bool is_int;
        int64_t iv = 0;

        if (strcmp(key, "w") == 0) {
            if (BSON_ITER_HOLDS_UTF8(&sub)) {
                const char *mode = bson_iter_utf8(&sub, NULL);
                if (strcmp(mode, "majority") != 0) {
                    return cairn_error_mongo(
                        err, CAIRN_EINVAL, MONGO_UnknownReplWriteConcern,
                        "No write concern mode named '%s' found in replica set configuration",
                        mode);
                }
                wc->w = 0;
            } else if (iter_number(&sub, &d, &is_int, &iv)) {
                if (!is_int) {
                    if (!isfinite(d) || d < -1e9 || d > 1e9 || d != (double)(int64_t)d) {
                        return cairn_error_mongo(
                            err, CAIRN_EINVAL, MONGO_FailedToParse,
                            "w has to be a non-negative number and not greater than 50; found: %g",
                            d);
                    }
                    iv = (int64_t)d;
                    if (d > 1e9 || d < -1e9) {
                        iv = d > 0 ? 1000 : -1;
                    }
                }
                if (iv < 0 || iv > 50) {
                    return cairn_error_mongo(
                        err, CAIRN_EINVAL, MONGO_FailedToParse,
                        "w has to be a non-negative number and not greater than 50; found: %lld",
                        (long long)iv);
                }
                wc->w = iv == 0 ? 1 : (int)iv;
            } else {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "w has to be a number or a string; found: %s",
                                         qry_type_name(bson_iter_type(&sub)));
            }
        } else if (strcmp(key, "j") == 0 || strcmp(key, "fsync") == 0) {
            bool v;
            if (BSON_ITER_HOLDS_BOOL(&sub)) {
                v = bson_iter_bool(&sub);
            } else if (iter_number(&sub, &d, &is_int, &iv)) {
                v = is_int ? iv != 0 : d != 0.0;
            } else if (BSON_ITER_HOLDS_NULL(&sub) || BSON_ITER_HOLDS_UNDEFINED(&sub)) {
                v = false;
            } else {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "%s must be numeric or a boolean value", key);
            }
            if (key[0] == 'j') {
                j = v;
            } else {
                fsync = v;
            }
        } else if (strcmp(key, "wtimeout") == 0) {
            if (!iter_number(&sub, &d, &is_int, &iv)) {
                if (BSON_ITER_HOLDS_NULL(&sub) || BSON_ITER_HOLDS_UNDEFINED(&sub)) {
                    continue;
                }
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "wtimeout must be a number, not %s",
                                         qry_type_name(bson_iter_type(&sub)));
            }
            if (!is_int) {
                iv = !isfinite(d) || d <= 0 ? 0 : d > 1e15 ? 0 : (int64_t)d;
            }
            wc->wtimeout_ms = iv < 0 ? 0 : iv;
        } else if (strcmp(key, "provenance") == 0 || strcmp(key, "getLastError") == 0 ||
                   strcmp(key, "getlasterror") == 0 || strcmp(key, "wElectionId") == 0 ||
                   strcmp(key, "wOpTime") == 0) {
            continue;
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                     "unrecognized write concern field: %s", key);
        }
    }
    if (j && fsync) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                 "fsync and j options cannot be used together");
    }
    wc->j = j || fsync;
    return MONGO_OK;
}

void net_append_write_concern_error(bson_t *reply, int status)
{
    bson_t wce, info;
    int code;
    const char *msg;

    switch (status) {
        case CAIRN_ETIMEOUT:
            code = MONGO_WriteConcernFailed;
            msg = "waiting for replication timed out";
            break;
        case CAIRN_ENOTLEADER:
            code = MONGO_PrimarySteppedDown;
            msg = "primary stepped down while waiting for replication";
            break;
        case CAIRN_ESHUTDOWN:
            code = MONGO_ShutdownInProgress;
            msg = "replication is being shut down";
            break;
        case CAIRN_EINVAL:
            code = MONGO_UnsatisfiableWriteConcern;
            msg = "Not enough data-bearing nodes";
            break;
        default:
            code = MONGO_WriteConcernFailed;
            msg = cairn_strerror(status);
            break;
    }
    BSON_APPEND_DOCUMENT_BEGIN(reply, "writeConcernError", &wce);
    BSON_APPEND_INT32(&wce, "code", code);
    BSON_APPEND_UTF8(&wce, "codeName", net_code_name(code));
    BSON_APPEND_UTF8(&wce, "errmsg", msg);
    BSON_APPEND_DOCUMENT_BEGIN(&wce, "errInfo", &info);
    if (status == CAIRN_ETIMEOUT) {
        BSON_APPEND_BOOL(&info, "wtimeout", true);
    }
    bson_append_document_end(&wce, &info);
    bson_append_document_end(reply, &wce);
}

/* ---- Read concern ------------------------------------------------------- */

int net_parse_read_concern(const bson_t *body, int *level, struct cairn_error *err)
{
    bson_iter_t it, sub;
    bool in_txn = bson_has_field(body, "autocommit");
    bool snapshot = false, has_at = false, has_after = false;

    *level = TXN_READ_LOCAL;
    if (!bson_iter_init_find(&it, body, "readConcern") || BSON_ITER_HOLDS_NULL(&it)) {
        return MONGO_OK;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_mongo(
            err, CAIRN_EINVAL, MONGO_TypeMismatch,
            "BSON field 'readConcern' is the wrong type '%s', expected type 'object'",
            qry_type_name(bson_iter_type(&it)));
    }
    if (!bson_iter_recurse(&it, &sub)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_FailedToParse,
                                 "readConcern is not a valid document");
    }
    while (bson_iter_next(&sub)) {
        const char *key = bson_iter_key(&sub);

        if (strcmp(key, "level") == 0) {
            const char *lv;
            if (!BSON_ITER_HOLDS_UTF8(&sub)) {
                return cairn_error_mongo(
                    err, CAIRN_EINVAL, MONGO_TypeMismatch,
                    "BSON field 'readConcern.level' is the wrong type '%s', expected type 'string'",
                    qry_type_name(bson_iter_type(&sub)));
            }
            lv = bson_iter_utf8(&sub, NULL);
            if (strcmp(lv, "local") == 0 || strcmp(lv, "available") == 0) {
                *level = TXN_READ_LOCAL;
            } else if (strcmp(lv, "majority") == 0) {
                *level = TXN_READ_MAJORITY;
            } else if (strcmp(lv, "snapshot") == 0) {
                if (!in_txn) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                             "readConcern level 'snapshot' is only supported in "
                                             "multi-document transactions");
                }
                /* A transaction's snapshot is the majority point at its start. */
                *level = TXN_READ_MAJORITY;
                snapshot = true;
            } else if (strcmp(lv, "linearizable") == 0) {
                /* The catalog listings: mongod supports no linearizable
                 * read there (find, aggregate, count, distinct do:
                 * txnctx.c). */
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                         "read concern not supported");
            } else {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "readConcern level must be either 'local', 'majority', "
                                         "'linearizable', 'available', or 'snapshot'; found '%s'",
                                         lv);
            }
        } else if (strcmp(key, "afterClusterTime") == 0 || strcmp(key, "atClusterTime") == 0) {
            if (!BSON_ITER_HOLDS_TIMESTAMP(&sub)) {
                return cairn_error_mongo(
                    err, CAIRN_EINVAL, MONGO_TypeMismatch,
                    "BSON field 'readConcern.%s' is the wrong type '%s', expected type "
                    "'timestamp'",
                    key, qry_type_name(bson_iter_type(&sub)));
            }
            if (key[1] == 'f') {
                has_after = true;
            } else {
                has_at = true;
            }
        } else if (strcmp(key, "afterOpTime") == 0 || strcmp(key, "provenance") == 0) {
            continue;
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                     "unrecognized readConcern field: %s", key);
        }
    }
    if (has_at && has_after) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "Can not specify both afterClusterTime and atClusterTime");
    }
    if (has_at && !snapshot) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "readConcern atClusterTime is only supported with level "
                                 "'snapshot' in a transaction");
    }
    if (has_at) {
        return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                 "readConcern atClusterTime is not supported yet");
    }
    return MONGO_OK;
}
