/*
 * clock.c: the cluster clock and namespace validation.
 *
 * Invariants:
 *  1. Commit timestamps are assigned in the commit section (commit_mu held),
 *     strictly increasing: ts = max(cluster time + 1, Timestamp(wall
 *     seconds, 1)); the cluster time is then raised to ts. Commits are added
 *     to the overlay and proposed in that order, so raft order == ts order.
 *  2. The cluster time never goes below the applied watermark (which after a
 *     leader's barrier covers its whole log) nor below gossip received.
 */
#include <string.h>

#include "lib/clock.h"
#include "txn/txn_int.h"

static void clock_raise(struct txn_mgr *m, cairn_ts ts)
{
    uint64_t cur = atomic_load(&m->cluster_ts);
    while (cur < ts && !atomic_compare_exchange_weak(&m->cluster_ts, &cur, ts)) {
    }
}

cairn_ts txn_cluster_time(struct txn_mgr *m)
{
    cairn_index idx;
    cairn_ts applied;

    eng_applied(m->eng, &idx, &applied);
    clock_raise(m, applied);
    return atomic_load(&m->cluster_ts);
}

int txn_cluster_time_advance(struct txn_mgr *m, cairn_ts ts, struct cairn_error *err)
{
    const int64_t year_secs = 365LL * 24 * 3600;
    int64_t now_secs = cairn_wall_ms() / 1000;

    if ((int64_t)CAIRN_TS_SECS(ts) > now_secs + year_secs) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ClusterTimeFailsRateLimiter,
                                 "clusterTime %u is too far ahead of the wall clock",
                                 CAIRN_TS_SECS(ts));
    }
    clock_raise(m, ts);
    return 0;
}

cairn_ts txn_clock_next(struct txn_mgr *m)
{
    cairn_ts cur = txn_cluster_time(m);
    cairn_ts wall = CAIRN_TS((uint64_t)(cairn_wall_ms() / 1000), 1);
    cairn_ts ts = cur + 1 > wall ? cur + 1 : wall;
    clock_raise(m, ts);
    return ts;
}

int txn_check_ns(const char *db, const char *coll, struct cairn_error *err)
{
    size_t dl = db ? strlen(db) : 0;
    size_t cl = coll ? strlen(coll) : 0;

    if (dl == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified: empty database name");
    }
    if (strpbrk(db, "/\\. \"$") != NULL || dl > 63) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid database name: '%s'", db);
    }
    if (cl == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified '%s.'", db);
    }
    if (dl + 1 + cl > ENG_NS_MAX) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Fully qualified namespace is too long. Namespace: %s.%s Max: %d",
                                 db, coll, ENG_NS_MAX);
    }
    if (coll[0] == '.' || strchr(coll, '$') != NULL) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid collection name: %s", coll);
    }
    if (strncmp(coll, "system.", 7) == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid system namespace: %s.%s (system collections are not "
                                 "supported)",
                                 db, coll);
    }
    return 0;
}
