/*
 * dupinfo.c: the details of the last DuplicateKey error on this thread
 * (keyPattern, keyValue), from the write that found the duplicate
 * (txn_write_set_dup) to the reply that reports it (txn_dup_info_take).
 * Thread-specific data freed at thread exit.
 */
#include <pthread.h>
#include <stdlib.h>

#include "txn/txn_int.h"

/* The last DuplicateKey error's details on this thread (commands run on
 * one thread from the failing write to the reply). Kept in thread-specific
 * data whose destructor frees it when the thread exits, so details a reply
 * never took do not outlive their thread. */
struct dup_info
{
    bson_t *pattern;
    bson_t *value;
};

static pthread_key_t dup_key;
static pthread_once_t dup_once = PTHREAD_ONCE_INIT;
static bool dup_key_ok;

static void dup_free(void *p)
{
    struct dup_info *d = p;

    if (d == NULL) {
        return;
    }
    if (d->pattern != NULL) {
        bson_destroy(d->pattern);
    }
    if (d->value != NULL) {
        bson_destroy(d->value);
    }
    free(d);
}

static void dup_key_init(void)
{
    dup_key_ok = pthread_key_create(&dup_key, dup_free) == 0;
}

/* This thread's record, created when `create` (NULL when there is none or
 * out of memory). */
static struct dup_info *dup_get(bool create)
{
    struct dup_info *d;

    pthread_once(&dup_once, dup_key_init);
    if (!dup_key_ok) {
        return NULL;
    }
    d = pthread_getspecific(dup_key);
    if (d == NULL && create) {
        d = calloc(1, sizeof *d);
        if (d != NULL && pthread_setspecific(dup_key, d) != 0) {
            free(d);
            d = NULL;
        }
    }
    return d;
}

static void dup_clear(struct dup_info *d)
{
    if (d == NULL) {
        return;
    }
    if (d->pattern != NULL) {
        bson_destroy(d->pattern);
        d->pattern = NULL;
    }
    if (d->value != NULL) {
        bson_destroy(d->value);
        d->value = NULL;
    }
}

void txn_write_set_dup(struct txn_write *w, const bson_t *pattern, const bson_t *value)
{
    struct dup_info *d = dup_get(true);

    (void)w;
    if (d == NULL) {
        return; /* the error goes out without keyPattern/keyValue */
    }
    dup_clear(d);
    d->pattern = bson_copy(pattern);
    d->value = bson_copy(value);
}

bool txn_dup_info_take(bson_t *pattern, bson_t *value)
{
    struct dup_info *d = dup_get(false);
    bool have = d != NULL && d->pattern != NULL && d->value != NULL;

    if (have) {
        bson_copy_to(d->pattern, pattern);
        bson_copy_to(d->value, value);
    }
    dup_clear(d);
    return have;
}
