/*
 * membudget.c: the server-wide budget for query results held in memory
 * (qry_mem_* in query.h): documents a blocking sort holds while it runs,
 * a pipeline's output while it is built, and the materialised results that
 * open cursors hold between getMores. Each holder charges what it keeps
 * and releases it when it lets go; a charge that would pass the budget
 * fails (146 ExceededMemoryLimit), so many clients together cannot pin
 * more than the budget however each stays within its own cap.
 */
#include <stdatomic.h>

#include "query/query.h"

static atomic_size_t held;
static atomic_size_t budget = QRY_MEM_BUDGET_DEFAULT;

int qry_mem_charge(size_t bytes, struct cairn_error *err)
{
    size_t limit = atomic_load(&budget);
    size_t now = atomic_fetch_add(&held, bytes) + bytes;
    if (now > limit) {
        atomic_fetch_sub(&held, bytes);
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_ExceededMemoryLimit,
                                 "Query results held in memory by this server would exceed its "
                                 "budget of %zu bytes (cairnQueryMemoryBudgetBytes): exhaust or "
                                 "kill open cursors, or narrow the query",
                                 limit);
    }
    return 0;
}

void qry_mem_release(size_t bytes)
{
    atomic_fetch_sub(&held, bytes);
}

size_t qry_mem_held(void)
{
    return atomic_load(&held);
}

size_t qry_mem_budget(void)
{
    return atomic_load(&budget);
}

void qry_set_mem_budget(size_t bytes)
{
    atomic_store(&budget, bytes);
}
