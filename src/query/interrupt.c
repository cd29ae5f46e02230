/*
 * interrupt.c: how long-running query work (pipeline stages, expression
 * loops, deduplication) notices that its operation must stop: maxTimeMS
 * passed, killOp, client gone, shutdown. The operation is the one the
 * calling thread published (lib/op.h); every 64th call looks at it.
 */
#include "lib/op.h"
#include "query/query_int.h"

static _Thread_local unsigned tick;

int qry_check_interrupt(struct cairn_error *err)
{
    if ((++tick & 63u) != 0) {
        return 0;
    }
    return cairn_op_check(cairn_op_current(), err);
}
