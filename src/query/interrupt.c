/*
 * interrupt.c: how long-running query work (pipeline stages, expression
 * loops, deduplication) notices that its operation must stop: maxTimeMS
 * passed, killOp, client gone, shutdown. The operation is the one the
 * calling thread published (lib/op.h); every call looks at it, cheaply
 * (cairn_op_poll), so the latency does not grow with the work per call.
 */
#include "lib/op.h"
#include "query/query_int.h"

int qry_check_interrupt(struct cairn_error *err)
{
    return cairn_op_poll(cairn_op_current(), err);
}
