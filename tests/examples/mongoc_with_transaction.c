/* tests/examples/mongoc_with_transaction.c: the MongoDB manual's C transaction example
 * (libmongoc 1.23, mongoc_client_session_with_transaction), run and checked.
 *
 * Usage: mongoc_with_transaction URI
 *
 * The example ("Transactions" page of the manual, C tab): create mydb1.foo and mydb2.bar by
 * inserting {abc: 0} and {xyz: 0} with write concern majority, start a session, and let
 * mongoc_client_session_with_transaction() run a callback that inserts {abc: 1} into
 * mydb1.foo and {xyz: 999} into mydb2.bar, with write concern majority for the transaction
 * (the manual's C code sets no read concern); it starts the transaction, runs the callback,
 * and commits (or aborts on error), retrying on TransientTransactionError /
 * UnknownTransactionCommitResult. get_client() connects to the URI given here.
 *
 * Two changes to the manual's code. First, its callback passes NULL opts to
 * mongoc_collection_insert_one(), so the inserts carry no session and run outside the
 * transaction (libmongoc attaches a session only through opts), and the transaction stays
 * empty: with_transaction() then commits without sending anything. Here the callback appends
 * the session to the inserts' opts with mongoc_client_session_append(), as libmongoc's own
 * with_transaction example does. Command monitoring checks that the callback's inserts went
 * out inside the transaction and that commitTransaction carried write concern majority.
 *
 * Second, the manual's callback passes *reply (NULL) as the inserts' reply, so when an
 * insert fails with_transaction() sees an empty reply, finds no TransientTransactionError
 * label in it, and gives up instead of retrying the transaction. Here a failed insert's reply
 * is handed back through *reply, as libmongoc's example does.
 *
 * Checks afterwards, with a fresh client: mydb1.foo holds {abc: 0} and {abc: 1} once each,
 * mydb2.bar holds {xyz: 0} and {xyz: 999} once each, and nothing else.
 *
 * Prints "ok - ..." / "not ok - ...: why" per check, then "N passed, N failed"; exits 1 if any
 * check failed. */
#include <inttypes.h>
#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WATCHDOG_SECONDS 180 /* with_transaction gives up retrying after 120 s */

static int passed;
static int failed;

static void check(bool cond, const char *what, const char *why_fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check(bool cond, const char *what, const char *why_fmt, ...)
{
    va_list ap;

    if (cond) {
        printf("ok - %s\n", what);
        passed++;
    } else {
        printf("not ok - %s: ", what);
        va_start(ap, why_fmt);
        vprintf(why_fmt, ap);
        va_end(ap);
        printf("\n");
        failed++;
    }
    fflush(stdout);
}

static int finish(void)
{
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}

static void on_watchdog(int sig)
{
    char buf[200];
    int n;

    (void)sig;
    n = snprintf(buf, sizeof buf,
                 "not ok - the example finished: still running after %d s\n%d passed, %d failed\n",
                 WATCHDOG_SECONDS, passed, failed + 1);
    if (n > 0 && write(STDOUT_FILENO, buf, (size_t)n) < 0) {
        _exit(1);
    }
    _exit(1);
}

/* ---- what the example sent, seen through command monitoring ---------------------------- */

struct wire
{
    int inserts_outside;  /* inserts without autocommit (the prerequisite inserts) */
    int inserts_inside;   /* inserts with txnNumber and autocommit: false */
    int txn_starts;       /* statements with startTransaction: true */
    int commits;          /* commitTransaction commands */
    int commits_majority; /* ... whose writeConcern is {w: "majority"} */
};

static struct wire wire;

static bool has_true(const bson_t *cmd, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, cmd, key) && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

static void command_started(const mongoc_apm_command_started_t *event)
{
    const char *name = mongoc_apm_command_started_get_command_name(event);
    const bson_t *cmd = mongoc_apm_command_started_get_command(event);
    bson_iter_t it;
    bson_iter_t w;

    if (strcmp(name, "insert") == 0) {
        if (bson_iter_init_find(&it, cmd, "autocommit") && !bson_iter_as_bool(&it) &&
            bson_has_field(cmd, "txnNumber")) {
            wire.inserts_inside++;
        } else {
            wire.inserts_outside++;
        }
        if (has_true(cmd, "startTransaction")) {
            wire.txn_starts++;
        }
    } else if (strcmp(name, "commitTransaction") == 0) {
        wire.commits++;
        if (bson_iter_init(&it, cmd) && bson_iter_find_descendant(&it, "writeConcern.w", &w) &&
            BSON_ITER_HOLDS_UTF8(&w) && strcmp(bson_iter_utf8(&w, NULL), "majority") == 0) {
            wire.commits_majority++;
        }
    }
}

static const char *example_uri;

/* The manual's get_client(): here, a client for the URI given on the command line, with
 * command monitoring. */
static mongoc_client_t *get_client(void)
{
    mongoc_client_t *client = mongoc_client_new(example_uri);
    mongoc_apm_callbacks_t *cbs;

    if (!client) {
        return NULL;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, command_started);
    mongoc_client_set_apm_callbacks(client, cbs, NULL);
    mongoc_apm_callbacks_destroy(cbs);
    return client;
}

/* ---- the manual's example ----------------------------------------------------------------- */

/* Gives a failed operation's reply (with its error labels) to with_transaction(), which
 * retries the transaction only on a TransientTransactionError label it finds there (see the
 * top of this file); frees local_reply. */
static void hand_back(bool ok, bson_t *local_reply, bson_t **reply)
{
    if (!ok && *reply == NULL) {
        *reply = bson_copy(local_reply);
    }
    bson_destroy(local_reply);
}

/* Define the callback that specifies the sequence of operations to perform
 * inside the transactions. */
static bool callback(mongoc_client_session_t *session,
                     void *ctx,
                     bson_t **reply,
                     bson_error_t *error)
{
    mongoc_client_t *client = NULL;
    mongoc_collection_t *coll = NULL;
    bson_t *doc = NULL;
    bson_t opts = BSON_INITIALIZER;
    bson_t local_reply;
    bool success = false;
    bool ret = false;

    BSON_UNUSED(ctx);

    client = mongoc_client_session_get_client(session);
    /* Important: the operations must carry the session (see the top of this file). */
    if (!mongoc_client_session_append(session, &opts, error)) {
        goto fail;
    }
    coll = mongoc_client_get_collection(client, "mydb1", "foo");
    doc = BCON_NEW("abc", BCON_INT32(1));
    ret = mongoc_collection_insert_one(coll, doc, &opts, &local_reply, error);
    hand_back(ret, &local_reply, reply);
    if (!ret) {
        goto fail;
    }
    bson_destroy(doc);
    mongoc_collection_destroy(coll);
    coll = mongoc_client_get_collection(client, "mydb2", "bar");
    doc = BCON_NEW("xyz", BCON_INT32(999));
    ret = mongoc_collection_insert_one(coll, doc, &opts, &local_reply, error);
    hand_back(ret, &local_reply, reply);
    if (!ret) {
        goto fail;
    }

    success = true;
fail:
    mongoc_collection_destroy(coll);
    bson_destroy(doc);
    bson_destroy(&opts);
    return success;
}

static bool with_transaction_example(bson_error_t *error)
{
    mongoc_client_t *client = NULL;
    mongoc_write_concern_t *wc = NULL;
    mongoc_collection_t *coll = NULL;
    bool success = false;
    bool ret = false;
    bson_t *doc = NULL;
    bson_t *insert_opts = NULL;
    mongoc_client_session_t *session = NULL;
    mongoc_transaction_opt_t *txn_opts = NULL;

    /* For a replica set, include the replica set name and a seedlist of the
     * members in the URI string; e.g.
     * uri_repl = "mongodb://mongodb0.example.com:27017,mongodb1.example.com:" \
     *    "27017/?replicaSet=myRepl";
     * client = mongoc_client_new (uri_repl);
     * For a sharded cluster, connect to the mongos instances; e.g.
     * uri_sharded =
     * "mongodb://mongos0.example.com:27017,mongos1.example.com:27017/";
     * client = mongoc_client_new (uri_sharded);
     */

    client = get_client();
    if (!client) {
        bson_set_error(error, MONGOC_ERROR_CLIENT, MONGOC_ERROR_COMMAND_INVALID_ARG,
                       "invalid URI %s", example_uri);
        return false;
    }

    /* Prereq: Create collections. Note Atlas connection strings include a majority write
     * concern by default.
     */
    wc = mongoc_write_concern_new();
    mongoc_write_concern_set_wmajority(wc, 0);
    insert_opts = bson_new();
    mongoc_write_concern_append(wc, insert_opts);
    coll = mongoc_client_get_collection(client, "mydb1", "foo");
    doc = BCON_NEW("abc", BCON_INT32(0));
    ret = mongoc_collection_insert_one(coll, doc, insert_opts, NULL /* reply */, error);
    if (!ret) {
        goto fail;
    }
    bson_destroy(doc);
    mongoc_collection_destroy(coll);
    coll = mongoc_client_get_collection(client, "mydb2", "bar");
    doc = BCON_NEW("xyz", BCON_INT32(0));
    ret = mongoc_collection_insert_one(coll, doc, insert_opts, NULL /* reply */, error);
    if (!ret) {
        goto fail;
    }

    /* Step 1: Start a client session. */
    session = mongoc_client_start_session(client, NULL /* opts */, error);
    if (!session) {
        goto fail;
    }

    /* Step 2: Optional. Define options to use for the transaction. */
    txn_opts = mongoc_transaction_opts_new();
    mongoc_transaction_opts_set_write_concern(txn_opts, wc);

    /* Step 3: Use mongoc_client_session_with_transaction to start a transaction,
     * execute the callback, and commit (or abort on error). */
    ret = mongoc_client_session_with_transaction(session, callback, txn_opts, NULL /* ctx */,
                                                 NULL /* reply */, error);
    if (!ret) {
        goto fail;
    }

    success = true;
fail:
    bson_destroy(doc);
    mongoc_collection_destroy(coll);
    bson_destroy(insert_opts);
    mongoc_write_concern_destroy(wc);
    mongoc_transaction_opts_destroy(txn_opts);
    mongoc_client_session_destroy(session);
    mongoc_client_destroy(client);
    return success;
}

/* ---- harness ------------------------------------------------------------------------------ */

/* Drops db.coll with write concern majority (before a transaction, as the manual advises);
 * a missing collection is fine. */
static bool drop_collection(mongoc_client_t *client, const char *db, const char *name)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, name);
    bson_t *opts = BCON_NEW("writeConcern", "{", "w", BCON_UTF8("majority"), "}");
    bson_error_t error;
    bool ok = mongoc_collection_drop_with_opts(coll, opts, &error);

    if (!ok && error.code == 26 /* NamespaceNotFound */) {
        ok = true;
    }
    if (!ok) {
        check(false, "drop the example's collections", "%s.%s: %s (code %" PRIu32 ")", db, name,
              error.message, error.code);
    }
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return ok;
}

/* Count of documents matching filter in db.coll, or -1 (reported) on error. */
static int64_t count(mongoc_client_t *client, const char *db, const char *name, bson_t *filter)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, name);
    bson_error_t error;
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);

    if (n < 0) {
        check(false, "count documents", "%s.%s: %s (code %" PRIu32 ")", db, name, error.message,
              error.code);
    }
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return n;
}

static void check_contents(mongoc_client_t *client)
{
    int64_t n;

    n = count(client, "mydb1", "foo", BCON_NEW("abc", BCON_INT32(0)));
    check(n == 1, "mydb1.foo holds the prerequisite {abc: 0} once", "found %" PRId64, n);
    n = count(client, "mydb1", "foo", BCON_NEW("abc", BCON_INT32(1)));
    check(n == 1, "mydb1.foo holds the transaction's {abc: 1} once", "found %" PRId64, n);
    n = count(client, "mydb2", "bar", BCON_NEW("xyz", BCON_INT32(0)));
    check(n == 1, "mydb2.bar holds the prerequisite {xyz: 0} once", "found %" PRId64, n);
    n = count(client, "mydb2", "bar", BCON_NEW("xyz", BCON_INT32(999)));
    check(n == 1, "mydb2.bar holds the transaction's {xyz: 999} once", "found %" PRId64, n);
    n = count(client, "mydb1", "foo", bson_new()) + count(client, "mydb2", "bar", bson_new());
    check(n == 4, "the two collections hold exactly those four documents",
          "found %" PRId64 " documents", n);
}

int main(int argc, char **argv)
{
    mongoc_client_t *verify;
    bson_error_t error;
    bool ok;

    if (argc != 2) {
        fprintf(stderr, "usage: %s URI\n", argv[0]);
        return 2;
    }
    example_uri = argv[1];
    signal(SIGALRM, on_watchdog);
    alarm(WATCHDOG_SECONDS);
    mongoc_init();

    verify = mongoc_client_new(example_uri);
    if (!verify) {
        check(false, "parse the connection string", "%s", example_uri);
        mongoc_cleanup();
        return finish();
    }
    mongoc_client_set_error_api(verify, MONGOC_ERROR_API_VERSION_2);
    if (drop_collection(verify, "mydb1", "foo") && drop_collection(verify, "mydb2", "bar")) {
        memset(&error, 0, sizeof error);
        ok = with_transaction_example(&error);
        check(ok, "the manual's with_transaction example succeeded",
              "%s (domain %" PRIu32 ", code %" PRIu32 ")", error.message, error.domain, error.code);

        check(wire.inserts_outside == 2,
              "only the two prerequisite inserts ran outside a transaction",
              "%d inserts without autocommit: false", wire.inserts_outside);
        check(wire.inserts_inside >= 2 && wire.txn_starts >= 1,
              "the callback's inserts were sent inside the transaction",
              "%d inserts with txnNumber and autocommit false, %d with startTransaction",
              wire.inserts_inside, wire.txn_starts);
        check(wire.commits >= 1 && wire.commits_majority == wire.commits,
              "commitTransaction was sent with write concern majority",
              "%d commitTransaction sent, %d with w: \"majority\"", wire.commits,
              wire.commits_majority);
        check_contents(verify);
    }
    mongoc_client_destroy(verify);
    mongoc_cleanup();
    return finish();
}
