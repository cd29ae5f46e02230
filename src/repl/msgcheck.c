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
 * out, which it must survive anyway. The decodings of an accepted
 * message's COMMAND entries are handed to deccache.c (when the caller
 * passes one), so that the FSM does not decode them again. The free runs
 * on the raft thread (raft_free).
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

/* Checks one entry. A readable COMMAND entry's decoding is left in *d
 * (*decoded true; the caller frees it). */
static int check_entry(const struct raft_entry *e,
                       raft_term msg_term,
                       struct repl_decoded *d,
                       bool *decoded,
                       struct cairn_error *err)
{
    struct raft_configuration conf;
    int rc;

    *decoded = false;
    if (e->term == 0 || e->term > msg_term) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "entry term %llu in a message of term %llu",
                                (unsigned long long)e->term, (unsigned long long)msg_term);
    }
    switch (e->type) {
        case RAFT_COMMAND:
            rc = repl_oplog_decode(e->buf.base, e->buf.len, d, err);
            *decoded = rc == 0;
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

/* The AppendEntries check. With `keep`, the decodings go there once every
 * entry passed (the first KEEP_MAX of the message; later ones are decoded
 * again when applied). */
#define KEEP_MAX 64
static int check_append(const struct raft_append_entries *a,
                        struct repl_deccache *keep,
                        struct cairn_error *err)
{
    struct repl_decoded d[KEEP_MAX];
    bool have[KEEP_MAX];
    unsigned n_kept = 0;
    int rc = 0;

    if (a->n_entries > 0 && a->entries == NULL) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "entries missing");
    }
    for (unsigned i = 0; i < a->n_entries && rc == 0; i++) {
        struct repl_decoded tmp;
        bool decoded;
        bool kept = keep != NULL && i < KEEP_MAX;

        rc = check_entry(&a->entries[i], a->term, kept ? &d[i] : &tmp, kept ? &have[i] : &decoded,
                         err);
        if (kept) {
            n_kept = i + 1;
        } else if (decoded) {
            repl_decoded_free(&tmp);
        }
    }
    for (unsigned i = 0; i < n_kept; i++) {
        if (!have[i]) {
            continue;
        }
        if (rc == 0) {
            /* Entry i of the message is log index prev_log_index + 1 + i. */
            repl_deccache_put(keep, a->prev_log_index + 1 + i, &a->entries[i], &d[i]);
        } else {
            repl_decoded_free(&d[i]);
        }
    }
    return rc;
}

int repl_msg_check(const struct raft_message *m,
                   struct repl_deccache *keep,
                   struct cairn_error *err)
{
    switch (m->type) {
        case RAFT_APPEND_ENTRIES:
            return check_append(&m->append_entries, keep, err);
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
