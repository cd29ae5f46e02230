/* tests/c/mongoc_smoke.c: the libmongoc (1.23) integration program. Connects to the URI given
 * as its only argument (a replica set URI), checks the topology, inserts documents, finds with
 * filters, counts, updates, deletes, runs an aggregation and iterates a cursor across batches.
 * Prints "ok - ..." / "not ok - ..." per check and "N passed, M failed" at the end; exits
 * non-zero if any check failed. */
#include <inttypes.h>
#include <mongoc/mongoc.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int passed;
static int failed;

static void check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void check(bool cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s - ", cond ? "ok" : "not ok");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (cond)
        passed++;
    else
        failed++;
}

/* Reports a failed libmongoc call as one failed check (with the driver's message). */
static bool call_ok(bool r, const bson_error_t *error, const char *what)
{
    if (!r)
        check(false, "%s: %s (domain %" PRIu32 ", code %" PRIu32 ")", what, error->message,
              error->domain, error->code);
    return r;
}

static int64_t doc_int(const bson_t *doc, const char *dotted)
{
    bson_iter_t it;
    bson_iter_t f;
    if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, dotted, &f) &&
        BSON_ITER_HOLDS_NUMBER(&f))
        return bson_iter_as_int64(&f);
    return INT64_MIN;
}

static const char *doc_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return "";
}

static bool doc_bool(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

static void check_topology(mongoc_client_t *client)
{
    bson_error_t error;
    bson_t reply;
    bson_t *cmd = BCON_NEW("hello", BCON_INT32(1));
    bool r = mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &error);
    if (call_ok(r, &error, "hello")) {
        check(strcmp(doc_str(&reply, "setName"), "rs0") == 0, "hello reports setName rs0");
        check(doc_bool(&reply, "isWritablePrimary"), "hello reports a writable primary");
        check(doc_int(&reply, "logicalSessionTimeoutMinutes") == 30,
              "hello reports logicalSessionTimeoutMinutes 30");
    }
    bson_destroy(&reply);
    bson_destroy(cmd);

    mongoc_server_description_t *sd = mongoc_client_select_server(client, true, NULL, &error);
    if (call_ok(sd != NULL, &error, "select a writable server")) {
        check(strcmp(mongoc_server_description_type(sd), "RSPrimary") == 0,
              "the driver sees an RSPrimary (got %s)", mongoc_server_description_type(sd));
        mongoc_server_description_destroy(sd);
    }
}

static void check_inserts(mongoc_collection_t *coll)
{
    bson_error_t error;
    bson_t reply;

    bson_t *one = BCON_NEW("name", BCON_UTF8("first"));
    bool r = mongoc_collection_insert_one(coll, one, NULL, &reply, &error);
    if (call_ok(r, &error, "insert_one"))
        check(doc_int(&reply, "insertedCount") == 1, "insert_one inserts one document");
    bson_destroy(&reply);
    bson_destroy(one);

    enum { N = 100 };
    bson_t *docs[N];
    for (int i = 0; i < N; i++)
        docs[i] = BCON_NEW("_id", BCON_INT32(i), "g", BCON_INT32(i % 5), "v", BCON_INT32(i));
    r = mongoc_collection_insert_many(coll, (const bson_t **)docs, N, NULL, &reply, &error);
    if (call_ok(r, &error, "insert_many"))
        check(doc_int(&reply, "insertedCount") == N, "insert_many inserts %d documents", N);
    bson_destroy(&reply);
    for (int i = 0; i < N; i++)
        bson_destroy(docs[i]);

    bson_t *dup = BCON_NEW("_id", BCON_INT32(7));
    r = mongoc_collection_insert_one(coll, dup, NULL, &reply, &error);
    check(!r && error.code == 11000, "duplicate _id fails with code 11000 (got %" PRIu32 ")",
          error.code);
    bson_destroy(&reply);
    bson_destroy(dup);

    bson_t *wdoc = BCON_NEW("_id", BCON_UTF8("majority"));
    bson_t *opts =
        BCON_NEW("writeConcern", "{", "w", BCON_UTF8("majority"), "j", BCON_BOOL(true), "}");
    r = mongoc_collection_insert_one(coll, wdoc, opts, &reply, &error);
    if (call_ok(r, &error, "insert_one with w:majority, j:true"))
        check(doc_int(&reply, "insertedCount") == 1, "insert with w:majority, j:true");
    bson_destroy(&reply);
    bson_destroy(opts);
    bson_destroy(wdoc);
}

static void check_finds(mongoc_collection_t *coll)
{
    bson_error_t error;
    const bson_t *doc;

    bson_t *filter = BCON_NEW("g", BCON_INT32(2));
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    int n = 0;
    bool in_order = true;
    while (mongoc_cursor_next(cur, &doc)) {
        if (doc_int(doc, "_id") != 2 + 5 * n)
            in_order = false;
        n++;
    }
    if (call_ok(!mongoc_cursor_error(cur, &error), &error, "find {g: 2}"))
        check(n == 20 && in_order, "find {g: 2} sorted by _id returns 20 documents in order");
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);

    filter = BCON_NEW("v", "{", "$gte", BCON_INT32(10), "$lt", BCON_INT32(50), "}");
    opts =
        BCON_NEW("sort", "{", "v", BCON_INT32(-1), "}", "skip", BCON_INT64(5), "limit",
                 BCON_INT64(3), "projection", "{", "v", BCON_INT32(1), "_id", BCON_INT32(0), "}");
    cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    int64_t got[3] = {0, 0, 0};
    n = 0;
    bool projected = true;
    while (mongoc_cursor_next(cur, &doc)) {
        if (n < 3)
            got[n] = doc_int(doc, "v");
        if (bson_count_keys(doc) != 1)
            projected = false;
        n++;
    }
    if (call_ok(!mongoc_cursor_error(cur, &error), &error, "find with sort/skip/limit"))
        check(n == 3 && got[0] == 44 && got[1] == 43 && got[2] == 42 && projected,
              "find with range filter, sort, skip, limit and projection");
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);

    filter = BCON_NEW("g", "{", "$gte", BCON_INT32(3), "}");
    int64_t count = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    if (call_ok(count >= 0, &error, "count_documents"))
        check(count == 40, "count_documents {g: {$gte: 3}} is 40 (got %" PRId64 ")", count);
    bson_destroy(filter);

    /* a cursor across many batches */
    opts = BCON_NEW("batchSize", BCON_INT32(7), "sort", "{", "_id", BCON_INT32(1), "}");
    filter = BCON_NEW("_id", "{", "$type", BCON_UTF8("int"), "}");
    cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    n = 0;
    in_order = true;
    while (mongoc_cursor_next(cur, &doc)) {
        if (doc_int(doc, "_id") != n)
            in_order = false;
        n++;
    }
    if (call_ok(!mongoc_cursor_error(cur, &error), &error, "find with batchSize 7"))
        check(n == 100 && in_order, "a cursor with batchSize 7 returns all 100 documents once");
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
}

static void check_writes(mongoc_collection_t *coll)
{
    bson_error_t error;
    bson_t reply;

    bson_t *sel = BCON_NEW("g", BCON_INT32(0));
    bson_t *upd = BCON_NEW("$inc", "{", "v", BCON_INT32(1000), "}");
    bool r = mongoc_collection_update_many(coll, sel, upd, NULL, &reply, &error);
    if (call_ok(r, &error, "update_many"))
        check(doc_int(&reply, "matchedCount") == 20 && doc_int(&reply, "modifiedCount") == 20,
              "update_many {g: 0} $inc modifies 20 documents");
    bson_destroy(&reply);
    bson_destroy(upd);
    bson_destroy(sel);

    sel = BCON_NEW("_id", BCON_INT32(99));
    r = mongoc_collection_delete_one(coll, sel, NULL, &reply, &error);
    if (call_ok(r, &error, "delete_one"))
        check(doc_int(&reply, "deletedCount") == 1, "delete_one deletes one document");
    bson_destroy(&reply);
    bson_destroy(sel);

    sel = BCON_NEW("_id", BCON_UTF8("upserted"));
    upd = BCON_NEW("$set", "{", "x", BCON_INT32(1), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    r = mongoc_collection_update_one(coll, sel, upd, opts, &reply, &error);
    if (call_ok(r, &error, "update_one upsert"))
        check(doc_int(&reply, "upsertedCount") == 1, "update_one with upsert inserts");
    bson_destroy(&reply);
    bson_destroy(opts);
    bson_destroy(upd);
    bson_destroy(sel);
}

static void check_aggregate(mongoc_collection_t *coll)
{
    bson_error_t error;
    const bson_t *doc;
    bson_t *pipeline =
        BCON_NEW("pipeline", "[", "{", "$match", "{", "v", "{", "$lt", BCON_INT32(1000), "}", "}",
                 "}", "{", "$group", "{", "_id", BCON_UTF8("$g"), "n", "{", "$sum", BCON_INT32(1),
                 "}", "s", "{", "$sum", BCON_UTF8("$v"), "}", "}", "}", "{", "$sort", "{", "_id",
                 BCON_INT32(1), "}", "}", "]");
    mongoc_cursor_t *cur =
        mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    static const int64_t want[4][3] = {{1, 20, 970}, {2, 20, 990}, {3, 20, 1010}, {4, 19, 931}};
    int n = 0;
    bool right = true;
    while (mongoc_cursor_next(cur, &doc)) {
        if (n >= 4 || doc_int(doc, "_id") != want[n][0] || doc_int(doc, "n") != want[n][1] ||
            doc_int(doc, "s") != want[n][2]) {
            char *json = bson_as_relaxed_extended_json(doc, NULL);
            printf("# unexpected group %d: %s\n", n, json);
            bson_free(json);
            right = false;
        }
        n++;
    }
    if (call_ok(!mongoc_cursor_error(cur, &error), &error, "aggregate"))
        check(n == 4 && right, "aggregate $match/$group/$sort gives the expected groups");
    mongoc_cursor_destroy(cur);
    bson_destroy(pipeline);

    pipeline = BCON_NEW("pipeline", "[", "{", "$match", "{", "g", BCON_INT32(1), "}", "}", "{",
                        "$count", BCON_UTF8("total"), "}", "]");
    cur = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    int64_t total = -1;
    if (mongoc_cursor_next(cur, &doc))
        total = doc_int(doc, "total");
    if (call_ok(!mongoc_cursor_error(cur, &error), &error, "aggregate $count"))
        check(total == 20, "aggregate $count counts 20 (got %" PRId64 ")", total);
    mongoc_cursor_destroy(cur);
    bson_destroy(pipeline);
}

static void check_errors(mongoc_client_t *client)
{
    bson_error_t error;
    bson_t reply;
    bson_t *cmd = BCON_NEW("noSuchCommand", BCON_INT32(1));
    bool r = mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &error);
    check(!r && error.code == 59, "an unknown command fails with code 59 (got %" PRIu32 ")",
          error.code);
    bson_destroy(&reply);
    bson_destroy(cmd);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s mongodb://HOST:PORT/?replicaSet=rs0\n", argv[0]);
        return 2;
    }
    mongoc_init();
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &error);
    if (!uri) {
        fprintf(stderr, "bad URI %s: %s\n", argv[1], error.message);
        mongoc_cleanup();
        return 2;
    }
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 15000);
    mongoc_client_t *client = mongoc_client_new_from_uri(uri);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_appname(client, "cairn-mongoc-smoke");

    check_topology(client);

    mongoc_database_t *db = mongoc_client_get_database(client, "mongoc_smoke");
    mongoc_database_drop(db, NULL); /* a leftover from an earlier run, if any */
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "mongoc_smoke", "c");

    check_inserts(coll);
    check_finds(coll);
    check_writes(coll);
    check_aggregate(coll);
    check_errors(client);

    bool r = mongoc_database_drop(db, &error);
    if (call_ok(r, &error, "drop database"))
        check(true, "dropDatabase");

    mongoc_collection_destroy(coll);
    mongoc_database_destroy(db);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
