/*
 * plan_cover.c: whether an index covers a query: every field the filter,
 * the projection and the sort use is a field of the index (or _id, which
 * every index entry carries exactly), so documents built from the index
 * entries (query/keydec.c) answer it as the stored documents would. Pure
 * logic; the multikey marker (no document met an array on an indexed path)
 * is the caller's to check.
 *
 * Rules (conservative): the projection is inclusion only ({f: 1 or true},
 * _id may be excluded), without operators, $-paths or dotted paths; every
 * field of the index is a top-level name (no dots: the built document is
 * flat); the filter uses only top-level field names and $and / $or / $nor;
 * the sort only ±1 on such fields.
 */
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

static bool is_index_field(const struct qry_index *ix, const char *name)
{
    if (strcmp(name, "_id") == 0) {
        return true;
    }
    for (size_t f = 0; f < qry_index_n_fields(ix); f++) {
        if (strcmp(qry_index_field(ix, f, NULL), name) == 0) {
            return true;
        }
    }
    return false;
}

static bool filter_covered(const struct qry_index *ix, const bson_t *filter, int depth)
{
    bson_iter_t it;

    if (depth > 20 || !bson_iter_init(&it, filter)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0) {
            bson_iter_t ai;
            if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &ai)) {
                return false;
            }
            while (bson_iter_next(&ai)) {
                uint32_t len;
                const uint8_t *data;
                bson_t sub;
                if (!BSON_ITER_HOLDS_DOCUMENT(&ai)) {
                    return false;
                }
                bson_iter_document(&ai, &len, &data);
                if (!bson_init_static(&sub, data, len) || !filter_covered(ix, &sub, depth + 1)) {
                    return false;
                }
            }
            continue;
        }
        if (k[0] == '$' || strchr(k, '.') != NULL || !is_index_field(ix, k)) {
            return false;
        }
    }
    return true;
}

static bool projection_covered(const struct qry_index *ix, const bson_t *proj)
{
    bson_iter_t it;
    size_t included = 0;

    if (!bson_iter_init(&it, proj)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool num_or_bool = BSON_ITER_HOLDS_NUMBER(&it) || BSON_ITER_HOLDS_BOOL(&it);
        if (!num_or_bool) {
            return false;
        }
        bool on = bson_iter_as_bool(&it);
        if (strcmp(k, "_id") == 0) {
            continue;
        }
        if (!on || k[0] == '$' || strchr(k, '.') != NULL || !is_index_field(ix, k)) {
            return false;
        }
        included++;
    }
    return included > 0;
}

static bool sort_covered(const struct qry_index *ix, const bson_t *sort)
{
    bson_iter_t it;

    if (!bson_iter_init(&it, sort)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!BSON_ITER_HOLDS_NUMBER(&it) || strchr(k, '.') != NULL || !is_index_field(ix, k)) {
            return false;
        }
    }
    return true;
}

static bool flat_index(const struct qry_index *ix)
{
    for (size_t f = 0; f < qry_index_n_fields(ix); f++) {
        if (strchr(qry_index_field(ix, f, NULL), '.') != NULL) {
            return false;
        }
    }
    return true;
}

bool qry_plan_covers_filter(const struct qry_index *ix, const bson_t *filter)
{
    return flat_index(ix) && (filter == NULL || filter_covered(ix, filter, 0));
}

bool qry_plan_covers(const struct qry_index *ix,
                     const bson_t *filter,
                     const bson_t *projection,
                     const bson_t *sort)
{
    if (projection == NULL || bson_empty(projection) || !flat_index(ix)) {
        return false;
    }
    return projection_covered(ix, projection) &&
           (filter == NULL || filter_covered(ix, filter, 0)) &&
           (sort == NULL || sort_covered(ix, sort));
}
