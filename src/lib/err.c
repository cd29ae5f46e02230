/*
 * err.c: the error table and the error struct helpers declared in
 * include/cairn/cairn.h. No allocation; safe on any thread.
 */
#include <stdio.h>
#include <string.h>

#include "cairn/cairn.h"
#include "cairn/mongo_codes.h"

const char *cairn_strerror(int code)
{
    switch (code) {
        case CAIRN_OK:
            return "ok";
#define CAIRN__CASE(name, text) \
    case CAIRN_E##name:         \
        return text;
            CAIRN_ERROR_MAP(CAIRN__CASE)
#undef CAIRN__CASE
        default:
            return "unknown error";
    }
}

static int set_va(struct cairn_error *err, int code, int mongo_code, const char *fmt, va_list ap)
{
    if (err != NULL) {
        err->code = code;
        err->mongo_code = mongo_code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int cairn_error_setf(struct cairn_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_va(err, code, 0, fmt, ap);
    va_end(ap);
    return code;
}

int cairn_error_mongo(struct cairn_error *err, int code, int mongo_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_va(err, code, mongo_code, fmt, ap);
    va_end(ap);
    return code;
}

int cairn_error_wrapf(struct cairn_error *err, const char *fmt, ...)
{
    char prefix[128];
    char old[sizeof err->msg];
    size_t plen;
    va_list ap;

    if (err == NULL) {
        return 0;
    }
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Compose "prefix: old", truncating old when the whole does not fit. */
    plen = strlen(prefix);
    if (plen > sizeof err->msg - 3) {
        plen = sizeof err->msg - 3;
    }
    memcpy(err->msg, prefix, plen);
    memcpy(err->msg + plen, ": ", 2);
    {
        size_t room = sizeof err->msg - plen - 3;
        size_t olen = strnlen(old, room);
        memcpy(err->msg + plen + 2, old, olen);
        err->msg[plen + 2 + olen] = '\0';
    }
    return err->code;
}

void cairn_error_clear(struct cairn_error *err)
{
    if (err != NULL) {
        err->code = 0;
        err->mongo_code = 0;
        err->msg[0] = '\0';
    }
}

const char *cairn_mongo_code_name(int code)
{
    switch (code) {
#define CAIRN__MONGO_CASE(name, num) \
    case num:                        \
        return #name;
        CAIRN_MONGO_CODE_MAP(CAIRN__MONGO_CASE)
#undef CAIRN__MONGO_CASE
        default:
            return NULL;
    }
}
