/*
 * test_msgcheck.c: the shape check of received raft messages
 * (src/repl/msgcheck.c): readable oplog entries, configuration entries
 * and snapshots pass; unreadable commands, bad configurations, entry terms
 * from the future, odd descriptors and borrowed candidate ids are refused;
 * a refused message's memory is freed by repl_msg_discard (LeakSanitizer
 * in the ASan build checks that nothing is left). Also the hand-over of
 * the check's decodings to the FSM (src/repl/deccache.c).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "repl/repl_int.h"

/* One entry holding a real oplog payload: an insert of {_id: 1}. */
static void make_command(struct raft_entry *e, raft_term term)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1));
    uint8_t key[1] = {1};
    struct eng_op op = {.kind = ENG_OP_PUT,
                        .coll_id = 7,
                        .key = key,
                        .key_len = 1,
                        .doc = bson_get_data(doc),
                        .doc_len = doc->len};
    struct eng_commit c = {.ts = 42, .ops = &op, .n_ops = 1};

    ck_assert_int_eq(repl_oplog_encode_header(term, &buf), 0);
    ck_assert_int_eq(repl_oplog_encode(&c, &buf), 0);
    e->type = RAFT_COMMAND;
    e->term = term;
    e->buf.len = buf.len;
    e->buf.base = raft_malloc(buf.len);
    memcpy(e->buf.base, buf.data, buf.len);
    cairn_buf_free(&buf);
    bson_destroy(doc);
}

static void make_conf(struct raft_configuration *c, bool duplicate, int role2)
{
    raft_configuration_init(c);
    ck_assert_int_eq(raft_configuration_add(c, 1, "127.0.0.1:37017", RAFT_VOTER), 0);
    ck_assert_int_eq(raft_configuration_add(c, 2, "127.0.0.1:37018", role2), 0);
    if (duplicate) {
        /* raft_configuration_add refuses duplicates: forge one. */
        c->servers[1].id = 1;
    }
}

static void make_change(struct raft_entry *e, raft_term term, bool duplicate)
{
    struct raft_configuration c;
    make_conf(&c, duplicate, RAFT_VOTER);
    ck_assert_int_eq(raft_configuration_encode(&c, &e->buf), 0);
    raft_configuration_close(&c);
    e->type = RAFT_CHANGE;
    e->term = term;
}

/* An AppendEntries as raft_uv delivers it: the entries' payloads in one
 * batch buffer that entries[0].batch points to. */
static void make_append(struct raft_message *m, struct raft_entry *src, unsigned n, raft_term term)
{
    size_t total = 0;
    uint8_t *batch;

    memset(m, 0, sizeof *m);
    m->type = RAFT_APPEND_ENTRIES;
    m->server_id = 2;
    m->append_entries.term = term;
    m->append_entries.n_entries = n;
    m->append_entries.entries = raft_calloc(n, sizeof *src);
    for (unsigned i = 0; i < n; i++) {
        total += src[i].buf.len;
    }
    batch = raft_malloc(total);
    total = 0;
    for (unsigned i = 0; i < n; i++) {
        struct raft_entry *e = &m->append_entries.entries[i];
        *e = src[i];
        memcpy(batch + total, src[i].buf.base, src[i].buf.len);
        e->buf.base = batch + total;
        e->batch = batch;
        total += src[i].buf.len;
        raft_free(src[i].buf.base);
    }
}

static void expect(struct raft_message *m, int want)
{
    struct cairn_error err;
    int rc = repl_msg_check(m, NULL, &err);
    ck_assert_msg(rc == want, "check gave %d, want %d (%s)", rc, want, rc ? err.msg : "");
    repl_msg_discard(m);
}

START_TEST(test_msgcheck_readable_entries_pass)
{
    struct raft_entry e[2];
    struct raft_message m;

    make_command(&e[0], 3);
    make_change(&e[1], 3, false);
    make_append(&m, e, 2, 3);
    expect(&m, 0);
}
END_TEST

START_TEST(test_msgcheck_unreadable_command_is_refused)
{
    struct raft_entry e[2];
    struct raft_message m;

    make_command(&e[0], 2);
    make_command(&e[1], 2);
    memset((uint8_t *)e[1].buf.base + 4, 0xff, 8); /* garble the header document */
    make_append(&m, e, 2, 2);
    expect(&m, CAIRN_ECORRUPT);
}
END_TEST

START_TEST(test_msgcheck_entry_term_above_message_term_is_refused)
{
    struct raft_entry e;
    struct raft_message m;

    make_command(&e, 5);
    make_append(&m, &e, 1, 4);
    expect(&m, CAIRN_ECORRUPT);
}
END_TEST

START_TEST(test_msgcheck_bad_configuration_entry_is_refused)
{
    struct raft_entry e;
    struct raft_message m;

    make_change(&e, 1, true);
    make_append(&m, &e, 1, 1);
    expect(&m, CAIRN_ECORRUPT);
}
END_TEST

START_TEST(test_msgcheck_unknown_entry_type_is_refused)
{
    struct raft_entry e;
    struct raft_message m;

    make_command(&e, 1);
    e.type = 77;
    make_append(&m, &e, 1, 1);
    expect(&m, CAIRN_ECORRUPT);
}
END_TEST

static void make_install(struct raft_message *m, size_t desc_len, int role2)
{
    memset(m, 0, sizeof *m);
    m->type = RAFT_INSTALL_SNAPSHOT;
    m->server_id = 1;
    m->install_snapshot.term = 4;
    m->install_snapshot.last_index = 100;
    m->install_snapshot.last_term = 3;
    make_conf(&m->install_snapshot.conf, false, role2);
    m->install_snapshot.data.len = desc_len;
    m->install_snapshot.data.base = raft_calloc(1, desc_len ? desc_len : 1);
}

START_TEST(test_msgcheck_snapshot_shapes)
{
    struct raft_message m;

    make_install(&m, 16, RAFT_VOTER);
    expect(&m, 0);
    make_install(&m, 15, RAFT_VOTER); /* shorter than any descriptor */
    expect(&m, CAIRN_ECORRUPT);
    make_install(&m, 1 << 20, RAFT_VOTER); /* a descriptor, not data */
    expect(&m, CAIRN_ECORRUPT);
    make_install(&m, 16, RAFT_VOTER);
    m.install_snapshot.conf.servers[1].role = 9; /* unknown role (add refuses it: forged) */
    expect(&m, CAIRN_ECORRUPT);
    make_install(&m, 16, RAFT_SPARE);
    m.install_snapshot.conf.servers[0].role = RAFT_SPARE; /* nobody votes */
    expect(&m, CAIRN_ECORRUPT);
    make_install(&m, 16, RAFT_VOTER);
    m.install_snapshot.last_term = 5; /* above the message's term */
    expect(&m, CAIRN_ECORRUPT);
}
END_TEST

START_TEST(test_msgcheck_vote_for_another_candidate_is_refused)
{
    struct raft_message m;

    memset(&m, 0, sizeof m);
    m.type = RAFT_REQUEST_VOTE;
    m.server_id = 2;
    m.request_vote.candidate_id = 2;
    expect(&m, 0);
    m.request_vote.candidate_id = 3;
    expect(&m, CAIRN_ECORRUPT);
}
END_TEST

/* A copy of the message's entry i, as raft appends it (raft copies the
 * payload and frees the message). */
static struct raft_entry appended_copy(const struct raft_message *m, unsigned i)
{
    struct raft_entry c = m->append_entries.entries[i];
    c.buf.base = raft_malloc(c.buf.len);
    memcpy(c.buf.base, m->append_entries.entries[i].buf.base, c.buf.len);
    c.batch = NULL;
    return c;
}

/* A received message whose entries raft appends while handling it: the FSM
 * gets msgcheck's decoding, pointing into the appended copy. */
START_TEST(test_deccache_appended_entry_is_decoded_once)
{
    struct repl_deccache *dc = repl_deccache_new();
    struct raft_entry e[2], copy[2];
    struct raft_message m;
    struct repl_decoded d;
    struct cairn_error err;

    make_command(&e[0], 3);
    make_command(&e[1], 3);
    make_append(&m, e, 2, 3);
    m.append_entries.prev_log_index = 9;
    repl_deccache_recv_begin(dc);
    ck_assert_int_eq(repl_msg_check(&m, dc, &err), 0);
    copy[0] = appended_copy(&m, 0);
    copy[1] = appended_copy(&m, 1);
    repl_deccache_confirm(dc, 10, &copy[0]);
    repl_deccache_confirm(dc, 11, &copy[1]);
    repl_msg_discard(&m); /* raft frees the received payload */
    repl_deccache_recv_end(dc);

    ck_assert(!repl_deccache_take(dc, 10, &copy[1].buf, &d)); /* another buffer */
    for (unsigned i = 0; i < 2; i++) {
        const uint8_t *lo = copy[i].buf.base, *hi = lo + copy[i].buf.len;
        ck_assert(repl_deccache_take(dc, 10 + i, &copy[i].buf, &d));
        ck_assert_uint_eq(d.n_commits, 1);
        ck_assert_uint_eq(d.commits[0].ts, 42);
        ck_assert_uint_eq(d.n_ops, 1);
        ck_assert(d.ops[0].key >= lo && d.ops[0].key + d.ops[0].key_len <= hi);
        ck_assert(d.ops[0].doc >= lo && d.ops[0].doc + d.ops[0].doc_len <= hi);
        ck_assert_uint_eq(d.ops[0].key[0], 1);
        repl_decoded_free(&d);
        ck_assert(!repl_deccache_take(dc, 10 + i, &copy[i].buf, &d)); /* taken once */
        raft_free(copy[i].buf.base);
    }
    ck_assert_uint_eq(repl_deccache_hits(dc), 2);
    repl_deccache_free(dc);
}
END_TEST

/* A decoding is never used for an entry raft appends outside the handling
 * of the message it came from (a rejected message, then our own proposal
 * at that index), nor for another term or length. */
START_TEST(test_deccache_only_the_messages_own_append_confirms)
{
    struct repl_deccache *dc = repl_deccache_new();
    struct raft_entry e, copy, other;
    struct raft_message m;
    struct repl_decoded d;
    struct cairn_error err;

    make_command(&e, 3);
    make_append(&m, &e, 1, 3);
    m.append_entries.prev_log_index = 4;
    repl_deccache_recv_begin(dc);
    ck_assert_int_eq(repl_msg_check(&m, dc, &err), 0);
    copy = appended_copy(&m, 0);
    repl_deccache_recv_end(dc);          /* raft rejected it: nothing appended */
    repl_deccache_confirm(dc, 5, &copy); /* a later append at index 5 */
    ck_assert(!repl_deccache_take(dc, 5, &copy.buf, &d));

    repl_deccache_recv_begin(dc);
    ck_assert_int_eq(repl_msg_check(&m, dc, &err), 0);
    other = copy;
    other.term = 2;
    repl_deccache_confirm(dc, 5, &other); /* another term at index 5 */
    repl_deccache_recv_end(dc);
    ck_assert(!repl_deccache_take(dc, 5, &copy.buf, &d));

    repl_deccache_recv_begin(dc);
    ck_assert_int_eq(repl_msg_check(&m, dc, &err), 0);
    repl_deccache_confirm(dc, 6, &copy); /* another index */
    repl_deccache_recv_end(dc);
    ck_assert(!repl_deccache_take(dc, 5, &copy.buf, &d));
    ck_assert(!repl_deccache_take(dc, 6, &copy.buf, &d));

    ck_assert_uint_eq(repl_deccache_hits(dc), 0);
    repl_msg_discard(&m);
    raft_free(copy.buf.base);
    repl_deccache_free(dc); /* frees the decodings it still holds */
}
END_TEST

/* A refused message leaves nothing for the FSM. */
START_TEST(test_deccache_refused_message_keeps_nothing)
{
    struct repl_deccache *dc = repl_deccache_new();
    struct raft_entry e[2], copy;
    struct raft_message m;
    struct repl_decoded d;
    struct cairn_error err;

    make_command(&e[0], 2);
    make_command(&e[1], 2);
    memset((uint8_t *)e[1].buf.base + 4, 0xff, 8);
    make_append(&m, e, 2, 2);
    repl_deccache_recv_begin(dc);
    ck_assert_int_eq(repl_msg_check(&m, dc, &err), CAIRN_ECORRUPT);
    copy = appended_copy(&m, 0);
    repl_deccache_confirm(dc, 1, &copy);
    repl_deccache_recv_end(dc);
    ck_assert(!repl_deccache_take(dc, 1, &copy.buf, &d));
    repl_msg_discard(&m);
    raft_free(copy.buf.base);
    repl_deccache_free(dc);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("msgcheck");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_msgcheck_readable_entries_pass);
    tcase_add_test(tc, test_msgcheck_unreadable_command_is_refused);
    tcase_add_test(tc, test_msgcheck_entry_term_above_message_term_is_refused);
    tcase_add_test(tc, test_msgcheck_bad_configuration_entry_is_refused);
    tcase_add_test(tc, test_msgcheck_unknown_entry_type_is_refused);
    tcase_add_test(tc, test_msgcheck_snapshot_shapes);
    tcase_add_test(tc, test_msgcheck_vote_for_another_candidate_is_refused);
    tcase_add_test(tc, test_deccache_appended_entry_is_decoded_once);
    tcase_add_test(tc, test_deccache_only_the_messages_own_append_confirms);
    tcase_add_test(tc, test_deccache_refused_message_keeps_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
