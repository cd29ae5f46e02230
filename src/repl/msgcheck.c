/*
 * msgcheck.c: the shape check of every raft message a member receives,
 * before raft sees it (io.c's recv hook).
 *
 * The member transport lets only holders of the key file connect
 * (transport.c), and raft_uv bounds what it decodes, but raft trusts the
 * content of a decoded message: an entry whose payload our FSM cannot read
 * would be appended and made durable, and every later apply of it stops
 * the member (fsm.c aborts rather than diverge), at every restart. So a
 * message is refused here, dropped with a warning and freed, when:
 *
 *   - a COMMAND entry is not a readable oplog entry (oplog.c), unless it is
 *     of a newer format version (a newer leader: the FSM stops with a clear
 *     message when it reaches it, which is the upgrade rule of §23);
 *   - a CHANGE entry, or an InstallSnapshot's configuration, is not a
 *     valid configuration (at least one voter, no id 0, no id twice, known
 *     roles, printable addresses);
 *   - an entry's term is above the message's term, or an entry has an
 *     unknown type;
 *   - an InstallSnapshot's descriptor is not of the size fsm.c writes;
 *   - a RequestVote names a candidate other than the member that sent it
 *     (raft_uv tags each message with the id the peer authenticated as).
 *
 * A dropped message is as if lost on the network: raft retries or times
 * out, which it must survive anyway. Pure functions; the free runs on the
 * raft thread (raft_free).
 */
#include <ctype.h>
#include <string.h>

#include "repl/repl_int.h"

/* The configuration check shared by CHANGE entries and snapshots. */
static int check_conf(const struct raft_configuration *c, struct cairn_error *err)
{
    unsigned voters = 0;

    if (c->n == 0) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "empty configuration");
    }
    for (unsigned i = 0; i < c->n; i++) {
        const struct raft_server *s = &c->servers[i];
        if (s->id == 0) {
            return cairn_error_setf(err, CAIRN_ECORRUPT, "configuration with server id 0");
        }
        if (s->role != RAFT_VOTER && s->role != RAFT_STANDBY && s->role != RAFT_SPARE) {
            return cairn_error_setf(err, CAIRN_ECORRUPT, "configuration role %d", s->role);
        }
        if (s->address == NULL || s->address[0] == '\0') {
            return cairn_error_setf(err, CAIRN_ECORRUPT, "configuration without an address");
        }
        for (const char *p = s->address; *p != '\0'; p++) {
            if (!isprint((unsigned char)*p)) {
                return cairn_error_setf(err, CAIRN_ECORRUPT, "unprintable address");
            }
        }
        for (unsigned j = 0; j < i; j++) {
            if (c->servers[j].id == s->id) {
                return cairn_error_setf(err, CAIRN_ECORRUPT, "server id %llu twice",
                                        (unsigned long long)s->id);
            }
        }
        voters += s->role == RAFT_VOTER;
    }
    if (voters == 0) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "configuration without a voter");
    }
    return 0;
}

static int check_entry(const struct raft_entry *e, raft_term msg_term, struct cairn_error *err)
{
    struct raft_configuration conf;
    struct repl_decoded d;
    int rc;

    if (e->term == 0 || e->term > msg_term) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "entry term %llu in a message of term %llu",
                                (unsigned long long)e->term, (unsigned long long)msg_term);
    }
    switch (e->type) {
        case RAFT_COMMAND:
            rc = repl_oplog_decode(e->buf.base, e->buf.len, &d, err);
            if (rc == 0) {
                repl_decoded_free(&d);
            }
            return rc == CAIRN_EUNSUPPORTED ? 0 : rc;
        case RAFT_BARRIER:
            return 0;
        case RAFT_CHANGE:
            raft_configuration_init(&conf);
            if (raft_configuration_decode(&e->buf, &conf) != 0) {
                return cairn_error_setf(err, CAIRN_ECORRUPT, "undecodable configuration entry");
            }
            rc = check_conf(&conf, err);
            raft_configuration_close(&conf);
            return rc;
        default:
            return cairn_error_setf(err, CAIRN_ECORRUPT, "entry type %d", (int)e->type);
    }
}

int repl_msg_check(const struct raft_message *m, struct cairn_error *err)
{
    int rc;

    switch (m->type) {
        case RAFT_APPEND_ENTRIES: {
            const struct raft_append_entries *a = &m->append_entries;
            if (a->n_entries > 0 && a->entries == NULL) {
                return cairn_error_setf(err, CAIRN_ECORRUPT, "entries missing");
            }
            for (unsigned i = 0; i < a->n_entries; i++) {
                rc = check_entry(&a->entries[i], a->term, err);
                if (rc != 0) {
                    return rc;
                }
            }
            return 0;
        }
        case RAFT_INSTALL_SNAPSHOT: {
            const struct raft_install_snapshot *s = &m->install_snapshot;
            if (s->last_index == 0 || s->last_term == 0 || s->last_term > s->term) {
                return cairn_error_setf(err, CAIRN_ECORRUPT, "snapshot index/term out of range");
            }
            if (s->data.len < REPL_SNAPSHOT_DESC_MIN || s->data.len > REPL_SNAPSHOT_DESC_MAX) {
                return cairn_error_setf(err, CAIRN_ECORRUPT, "snapshot descriptor of %zu bytes",
                                        s->data.len);
            }
            return check_conf(&s->conf, err);
        }
        case RAFT_REQUEST_VOTE:
            if (m->request_vote.candidate_id != m->server_id) {
                return cairn_error_setf(err, CAIRN_ECORRUPT,
                                        "vote request for candidate %llu sent by member %llu",
                                        (unsigned long long)m->request_vote.candidate_id,
                                        (unsigned long long)m->server_id);
            }
            return 0;
        case RAFT_APPEND_ENTRIES_RESULT:
        case RAFT_REQUEST_VOTE_RESULT:
        case RAFT_TIMEOUT_NOW:
            return 0;
        default:
            return cairn_error_setf(err, CAIRN_ECORRUPT, "message type %d", (int)m->type);
    }
}

void repl_msg_discard(struct raft_message *m)
{
    switch (m->type) {
        case RAFT_APPEND_ENTRIES:
            /* raft_uv decodes every entry of a message into one batch. */
            if (m->append_entries.n_entries > 0 && m->append_entries.entries != NULL) {
                raft_free(m->append_entries.entries[0].batch);
            }
            raft_free(m->append_entries.entries);
            m->append_entries.entries = NULL;
            m->append_entries.n_entries = 0;
            break;
        case RAFT_INSTALL_SNAPSHOT:
            raft_configuration_close(&m->install_snapshot.conf);
            raft_free(m->install_snapshot.data.base);
            m->install_snapshot.data.base = NULL;
            break;
        default:
            break;
    }
}
