/*
 * test_msgcheck.c: the shape check of received raft messages
 * (src/repl/msgcheck.c): readable oplog entries, configuration entries
 * and snapshots pass; unreadable commands, bad configurations, entry terms
 * from the future, odd descriptors and borrowed candidate ids are refused;
 * a refused message's memory is freed by repl_msg_discard (LeakSanitizer
 * in the ASan build checks that nothing is left).
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
    int rc = repl_msg_check(m, &err);
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
