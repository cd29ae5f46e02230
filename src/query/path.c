/*
 * path.c: dotted field paths: exact lookup (qry_path_find) and the
 * array-aware walk the matcher, sort and others use (qry_path_walk).
 */
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

/* True when component p[0..len) is a canonical array index ("0", "12"). */
static bool component_index(const char *p, size_t len, uint32_t *idx)
{
    if (len == 0 || len > 9 || (len > 1 && p[0] == '0')) {
        return false;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    *idx = v;
    return true;
}

/* Positions `child` on element `idx` of the array `it` holds. */
static bool array_at(const bson_iter_t *it, uint32_t idx, bson_iter_t *child)
{
    if (!bson_iter_recurse(it, child)) {
        return false;
    }
    uint32_t i = 0;
    while (bson_iter_next(child)) {
        if (i == idx) {
            return true;
        }
        i++;
    }
    return false;
}

static void iter_doc_data(const bson_iter_t *it, const uint8_t **data, uint32_t *len)
{
    *data = NULL;
    *len = 0;
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_document(it, len, data);
    } else if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_array(it, len, data);
    }
}

bool qry_path_find_data(const uint8_t *data, uint32_t len, const char *path, bson_iter_t *out)
{
    bson_iter_t cur;
    const char *p = path;
    bool have_cur = false; /* false: looking inside the top-level document */
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t clen = dot ? (size_t)(dot - p) : strlen(p);
        bson_iter_t next;
        if (!have_cur) {
            if (!bson_iter_init_from_data(&next, data, len) ||
                !bson_iter_find_w_len(&next, p, (int)clen)) {
                return false;
            }
        } else if (BSON_ITER_HOLDS_DOCUMENT(&cur)) {
            if (!bson_iter_recurse(&cur, &next) || !bson_iter_find_w_len(&next, p, (int)clen)) {
                return false;
            }
        } else if (BSON_ITER_HOLDS_ARRAY(&cur)) {
            uint32_t idx;
            if (!component_index(p, clen, &idx) || !array_at(&cur, idx, &next)) {
                return false;
            }
        } else {
            return false;
        }
        cur = next;
        have_cur = true;
        if (!dot) {
            *out = cur;
            return true;
        }
        p = dot + 1;
    }
}

bool qry_path_find(const bson_t *doc, const char *path, bson_iter_t *out)
{
    return qry_path_find_data(bson_get_data(doc), doc->len, path, out);
}

struct walk
{
    qry_path_visit_fn fn;
    void *arg;
    bool expand;
    bool visited;
};

static bool visit(struct walk *w, const bson_iter_t *it, bool array_elem)
{
    w->visited = true;
    return w->fn(w->arg, it, array_elem);
}

static bool walk_value(struct walk *w, const bson_iter_t *it, const char *rest);

static bool walk_doc(struct walk *w,
                     const uint8_t *data,
                     uint32_t len,
                     const char *p,
                     bool report_missing)
{
    const char *dot = strchr(p, '.');
    size_t clen = dot ? (size_t)(dot - p) : strlen(p);
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len) || !bson_iter_find_w_len(&it, p, (int)clen)) {
        return report_missing ? visit(w, NULL, false) : false;
    }
    return walk_value(w, &it, dot ? dot + 1 : NULL);
}

static bool walk_value(struct walk *w, const bson_iter_t *it, const char *rest)
{
    if (rest == NULL) {
        if (visit(w, it, false)) {
            return true;
        }
        if (w->expand && BSON_ITER_HOLDS_ARRAY(it)) {
            bson_iter_t child;
            if (bson_iter_recurse(it, &child)) {
                while (bson_iter_next(&child)) {
                    if (visit(w, &child, true)) {
                        return true;
                    }
                }
            }
        }
        return false;
    }
    const uint8_t *data;
    uint32_t len;
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        iter_doc_data(it, &data, &len);
        return walk_doc(w, data, len, rest, true);
    }
    if (BSON_ITER_HOLDS_ARRAY(it)) {
        const char *dot = strchr(rest, '.');
        size_t clen = dot ? (size_t)(dot - rest) : strlen(rest);
        uint32_t idx = 0;
        bool numeric = component_index(rest, clen, &idx);
        bson_iter_t child;
        if (!bson_iter_recurse(it, &child)) {
            return false;
        }
        uint32_t i = 0;
        while (bson_iter_next(&child)) {
            if (numeric && i == idx) {
                if (walk_value(w, &child, dot ? dot + 1 : NULL)) {
                    return true;
                }
            }
            if (BSON_ITER_HOLDS_DOCUMENT(&child)) {
                iter_doc_data(&child, &data, &len);
                /* With a numeric component the index is what the path means;
                 * documents lacking a field named like it do not count as
                 * "missing" visits. */
                if (walk_doc(w, data, len, rest, !numeric)) {
                    return true;
                }
            }
            i++;
        }
        return false;
    }
    return visit(w, NULL, false);
}

bool qry_path_walk(const uint8_t *data,
                   uint32_t len,
                   const char *path,
                   bool expand_leaf,
                   qry_path_visit_fn fn,
                   void *arg)
{
    struct walk w = {fn, arg, expand_leaf, false};
    if (walk_doc(&w, data, len, path, true)) {
        return true;
    }
    if (!w.visited) {
        return fn(arg, NULL, false);
    }
    return false;
}
