/*
 * op.c: the registry of operations in progress and their interruption (see
 * op.h for the reasons an operation ends early and the invariants).
 */
#include "lib/op.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cairn_op *registry_head;
static uint64_t next_id = 1;
static _Thread_local struct cairn_op *current;

void cairn_op_begin(struct cairn_op *op)
{
    op->start_mono_ns = cairn_mono_ns();
    op->start_wall_ms = cairn_wall_ms();
    atomic_init(&op->kill_code, 0);
    pthread_mutex_init(&op->lock, NULL);
    op->wait_mu = NULL;
    op->wait_cv = NULL;
    pthread_mutex_lock(&registry_mu);
    op->id = next_id++;
    op->prev = NULL;
    op->next = registry_head;
    if (registry_head != NULL) {
        registry_head->prev = op;
    }
    registry_head = op;
    pthread_mutex_unlock(&registry_mu);
}

void cairn_op_end(struct cairn_op *op)
{
    if (op == NULL) {
        return;
    }
    pthread_mutex_lock(&registry_mu);
    if (op->prev != NULL) {
        op->prev->next = op->next;
    } else {
        registry_head = op->next;
    }
    if (op->next != NULL) {
        op->next->prev = op->prev;
    }
    op->prev = op->next = NULL;
    pthread_mutex_unlock(&registry_mu);
    pthread_mutex_destroy(&op->lock);
    if (current == op) {
        current = NULL;
    }
}

struct cairn_op *cairn_op_current(void)
{
    return current;
}

void cairn_op_set_current(struct cairn_op *op)
{
    current = op;
}

void cairn_op_interrupt(struct cairn_op *op, int code)
{
    int expected = 0;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;

    if (code == 0 || !atomic_compare_exchange_strong(&op->kill_code, &expected, code)) {
        return; /* invariant 1: the first kill wins */
    }
    pthread_mutex_lock(&op->lock);
    mu = op->wait_mu;
    cv = op->wait_cv;
    pthread_mutex_unlock(&op->lock);
    if (mu != NULL) {
        /* Invariant 2: mu and cv outlive the operation. Taking mu orders
         * the broadcast after the waiter's sleep began (or its check). */
        pthread_mutex_lock(mu);
        pthread_cond_broadcast(cv);
        pthread_mutex_unlock(mu);
    }
}

bool cairn_op_kill(uint64_t id, int code)
{
    bool found = false;

    pthread_mutex_lock(&registry_mu);
    for (struct cairn_op *op = registry_head; op != NULL; op = op->next) {
        if (op->id == id) {
            cairn_op_interrupt(op, code);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return found;
}

size_t cairn_op_kill_all(bool (*match)(const struct cairn_op *op, void *arg), void *arg, int code)
{
    size_t n = 0;

    pthread_mutex_lock(&registry_mu);
    for (struct cairn_op *op = registry_head; op != NULL; op = op->next) {
        if (match == NULL || match(op, arg)) {
            cairn_op_interrupt(op, code);
            n++;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return n;
}

static int internal_code(int mongo_code)
{
    switch (mongo_code) {
        case MONGO_MaxTimeMSExpired:
            return CAIRN_ETIMEOUT;
        case MONGO_InterruptedAtShutdown:
        case MONGO_ShutdownInProgress:
            return CAIRN_ESHUTDOWN;
        case MONGO_InterruptedDueToReplStateChange:
        case MONGO_NotWritablePrimary:
        case MONGO_PrimarySteppedDown:
            return CAIRN_ENOTLEADER;
        default:
            return CAIRN_EINTERRUPTED;
    }
}

static const char *kill_message(int code)
{
    switch (code) {
        case MONGO_Interrupted:
            return "operation was interrupted";
        case MONGO_InterruptedDueToReplStateChange:
            return "operation was interrupted because of a replication state change";
        case MONGO_InterruptedAtShutdown:
            return "interrupted at shutdown";
        case MONGO_ClientDisconnect:
            return "operation was interrupted because a client disconnected";
        case MONGO_NoSuchTransaction:
            return "the transaction this operation belongs to was aborted";
        case MONGO_MaxTimeMSExpired:
            return "operation exceeded time limit";
        case MONGO_TransactionExceededLifetimeLimitSeconds:
            return "the transaction this operation belongs to exceeded "
                   "transactionLifetimeLimitSeconds and was aborted";
        default:
            return "operation was interrupted";
    }
}

int cairn_op_check(const struct cairn_op *op, struct cairn_error *err)
{
    int code;

    if (op == NULL) {
        return 0;
    }
    code = atomic_load_explicit(&op->kill_code, memory_order_acquire);
    if (code == 0 && op->deadline_ns != 0 && cairn_mono_ns() >= op->deadline_ns) {
        code = MONGO_MaxTimeMSExpired;
    }
    if (code == 0) {
        return 0;
    }
    return cairn_error_mongo(err, internal_code(code), code, "%s", kill_message(code));
}

int cairn_op_poll(const struct cairn_op *op, struct cairn_error *err)
{
    if (op == NULL) {
        return 0;
    }
    if (atomic_load_explicit(&op->kill_code, memory_order_relaxed) == 0 &&
        (op->deadline_ns == 0 || cairn_mono_coarse_ns() < op->deadline_ns)) {
        return 0;
    }
    return cairn_op_check(op, err);
}

int cairn_op_wait(struct cairn_op *op,
                  pthread_mutex_t *mu,
                  pthread_cond_t *cv,
                  uint64_t until_ns,
                  struct cairn_error *err)
{
    uint64_t limit = until_ns;
    int rv;

    if (op != NULL) {
        if (op->deadline_ns != 0 && (limit == 0 || op->deadline_ns < limit)) {
            limit = op->deadline_ns;
        }
        pthread_mutex_lock(&op->lock);
        op->wait_mu = mu;
        op->wait_cv = cv;
        pthread_mutex_unlock(&op->lock);
        /* Invariant 2: registered first, then checked. */
        rv = cairn_op_check(op, err);
        if (rv != 0) {
            goto out;
        }
    }
    if (limit == 0) {
        pthread_cond_wait(cv, mu);
    } else {
        uint64_t now = cairn_mono_ns();
        if (limit > now) {
            /* The condition variables here use CLOCK_REALTIME: convert the
             * remaining monotonic time into an absolute wall time. */
            struct timespec ts;
            uint64_t left = limit - now;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(left / 1000000000u);
            ts.tv_nsec += (long)(left % 1000000000u);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(cv, mu, &ts);
        }
    }
    rv = op != NULL ? cairn_op_check(op, err) : 0;
out:
    if (op != NULL) {
        pthread_mutex_lock(&op->lock);
        op->wait_mu = NULL;
        op->wait_cv = NULL;
        pthread_mutex_unlock(&op->lock);
    }
    return rv;
}

void cairn_op_foreach(void (*fn)(const struct cairn_op *op, void *arg), void *arg)
{
    pthread_mutex_lock(&registry_mu);
    for (struct cairn_op *op = registry_head; op != NULL; op = op->next) {
        fn(op, arg);
    }
    pthread_mutex_unlock(&registry_mu);
}
