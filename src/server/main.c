/*
 * main.c: cairnd. Parses options (--setParameter settings are checked here
 * and applied by the network layer, which owns the parameters), opens the
 * layers bottom-up (engine, replication, transactions, network), waits for
 * SIGINT/SIGTERM and closes them top-down. Signals are blocked in every thread and taken
 * synchronously here with sigwait, so no handler runs inside library code.
 *
 * Data layout under --dbpath: db/ (RocksDB), raft/ (the raft log), _tmp/
 * (sorts spilled to disk).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/cairn.h"
#include "engine/engine.h"
#include "lib/log.h"
#include "net/net.h"
#include "query/query.h"
#include "repl/repl.h"
#include "txn/txn.h"

/* --setParameter may be given this many times. */
#define MAX_SET_PARAMETERS 64

struct options
{
    const char *set_name;
    const char *bind_ip;
    const char *dbpath;
    const char *me;
    const char *key_file;
    int port;
    int workers;
    int snapshot_threshold; /* 0 = repl's default */
    int snapshot_trailing;
    long long disk_free_floor_mb; /* -1 = repl's default */
    bool initiate;
    struct net_param_setting params[MAX_SET_PARAMETERS]; /* views into argv */
    size_t n_params;
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: cairnd --replSet NAME --dbpath DIR [options]\n"
        "  --replSet NAME     replica set name (required)\n"
        "  --dbpath DIR       data directory, created if missing (required)\n"
        "  --port P           client port (default 27017); raft uses P+%d\n"
        "  --bind_ip ADDR     address to listen on (default 127.0.0.1)\n"
        "  --me HOST:PORT     this member's address as clients reach it\n"
        "                     (default BIND_IP:PORT, 0.0.0.0 read as 127.0.0.1)\n"
        "  --initiate         initiate a one-member set if not yet initiated\n"
        "  --keyFile PATH     shared key the members authenticate each other with\n"
        "                     (mongod's key file format; no client authentication yet)\n"
        "  --workers N        command worker threads at start (default 8; grows to 512 when busy)\n"
        "  --raftSnapshotThreshold N\n"
        "                     take a raft snapshot every N applied entries (default %d)\n"
        "  --raftSnapshotTrailing N\n"
        "                     entries kept behind a snapshot for lagging members (default %d);\n"
        "                     a member further behind catches up from a checkpoint\n"
        "  --diskFreeFloorMB N\n"
        "                     refuse writes (OutOfDiskSpace) while less than N MiB are free\n"
        "                     in dbpath; start only with N/2 free (default %d; 0 = no floor)\n"
        "  --setParameter NAME=VALUE\n"
        "                     set a server parameter at startup (repeatable), e.g.\n"
        "                     enableTestCommands=1, transactionLifetimeLimitSeconds=30\n"
        "  --version          print the version and exit\n",
        CAIRN_RAFT_PORT_OFFSET, REPL_SNAPSHOT_THRESHOLD, REPL_SNAPSHOT_TRAILING,
        REPL_DISK_FREE_FLOOR_MB);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* --setParameter NAME=VALUE: checked now (exit 2 before anything opens),
 * applied by net_server_start. `arg` stays in argv, so views suffice; the
 * '=' is replaced by a NUL. */
static int add_set_parameter(struct options *o, char *arg)
{
    struct cairn_error err = {0, 0, {0}};
    char *eq = strchr(arg, '=');

    if (eq == NULL || eq == arg) {
        fprintf(stderr, "cairnd: --setParameter expects NAME=VALUE, got '%s'\n", arg);
        return 2;
    }
    if (o->n_params == MAX_SET_PARAMETERS) {
        fprintf(stderr, "cairnd: more than %d --setParameter options\n", MAX_SET_PARAMETERS);
        return 2;
    }
    *eq = '\0';
    if (net_param_check_startup(arg, eq + 1, &err) != 0) {
        fprintf(stderr, "cairnd: %s\n", err.msg);
        return 2;
    }
    o->params[o->n_params].name = arg;
    o->params[o->n_params].value = eq + 1;
    o->n_params++;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_REPLSET = 1,
        OPT_DBPATH,
        OPT_PORT,
        OPT_BIND,
        OPT_ME,
        OPT_INITIATE,
        OPT_KEYFILE,
        OPT_WORKERS,
        OPT_SNAP_THRESHOLD,
        OPT_SNAP_TRAILING,
        OPT_DISK_FLOOR,
        OPT_SET_PARAMETER,
        OPT_VERSION,
        OPT_HELP
    };
    static const struct option longopts[] = {
        {"replSet", required_argument, NULL, OPT_REPLSET},
        {"dbpath", required_argument, NULL, OPT_DBPATH},
        {"port", required_argument, NULL, OPT_PORT},
        {"bind_ip", required_argument, NULL, OPT_BIND},
        {"me", required_argument, NULL, OPT_ME},
        {"initiate", no_argument, NULL, OPT_INITIATE},
        {"keyFile", required_argument, NULL, OPT_KEYFILE},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"raftSnapshotThreshold", required_argument, NULL, OPT_SNAP_THRESHOLD},
        {"raftSnapshotTrailing", required_argument, NULL, OPT_SNAP_TRAILING},
        {"diskFreeFloorMB", required_argument, NULL, OPT_DISK_FLOOR},
        {"setParameter", required_argument, NULL, OPT_SET_PARAMETER},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;

    o->port = 27017;
    o->bind_ip = "127.0.0.1";
    o->disk_free_floor_mb = -1;
    while ((c = getopt_long_only(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
            case OPT_REPLSET:
                o->set_name = optarg;
                break;
            case OPT_DBPATH:
                o->dbpath = optarg;
                break;
            case OPT_PORT:
                if (parse_int(optarg, 1, 65535 - CAIRN_RAFT_PORT_OFFSET, &o->port) != 0) {
                    fprintf(stderr, "cairnd: --port must be 1..%d\n",
                            65535 - CAIRN_RAFT_PORT_OFFSET);
                    return 2;
                }
                break;
            case OPT_BIND:
                o->bind_ip = optarg;
                break;
            case OPT_ME:
                o->me = optarg;
                break;
            case OPT_INITIATE:
                o->initiate = true;
                break;
            case OPT_KEYFILE:
                o->key_file = optarg;
                break;
            case OPT_WORKERS:
                if (parse_int(optarg, 1, 1024, &o->workers) != 0) {
                    fprintf(stderr, "cairnd: --workers must be 1..1024\n");
                    return 2;
                }
                break;
            case OPT_SNAP_THRESHOLD:
                if (parse_int(optarg, 2, 1 << 24, &o->snapshot_threshold) != 0) {
                    fprintf(stderr, "cairnd: --raftSnapshotThreshold must be 2..16777216\n");
                    return 2;
                }
                break;
            case OPT_SNAP_TRAILING:
                if (parse_int(optarg, 1, 1 << 24, &o->snapshot_trailing) != 0) {
                    fprintf(stderr, "cairnd: --raftSnapshotTrailing must be 1..16777216\n");
                    return 2;
                }
                break;
            case OPT_DISK_FLOOR: {
                int mb;
                if (parse_int(optarg, 0, 1 << 24, &mb) != 0) {
                    fprintf(stderr, "cairnd: --diskFreeFloorMB must be 0..16777216\n");
                    return 2;
                }
                o->disk_free_floor_mb = mb;
                break;
            }
            case OPT_SET_PARAMETER:
                if (add_set_parameter(o, optarg) != 0) {
                    return 2;
                }
                break;
            case OPT_VERSION:
                printf("cairnd %s (MongoDB wire protocol %s)\n", "0.1.0", CAIRN_VERSION);
                exit(0);
            case OPT_HELP:
                usage(stdout);
                exit(0);
            default:
                usage(stderr);
                return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cairnd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->set_name == NULL || o->set_name[0] == '\0' || o->dbpath == NULL) {
        fprintf(stderr, "cairnd: --replSet and --dbpath are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        cairn_log(CAIRN_LOG_ERROR, "main", "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Removes the files left in the spill directory `dir`. */
static void clear_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];

    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "sort-", 5) == 0 &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path) {
            unlink(path);
        }
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    struct options opts = {0};
    struct cairn_error err = {0};
    char me[REPL_HOST_MAX + 1];
    char dbdir[PATH_MAX];
    struct eng *eng = NULL;
    struct repl *repl = NULL;
    struct txn_mgr *txn = NULL;
    struct net_server *net = NULL;
    sigset_t sigs;
    int sig = 0;
    int rv;

    rv = parse_options(argc, argv, &opts);
    if (rv != 0) {
        return rv;
    }
    cairn_log_init();

    /* Block the shutdown signals before any thread starts; all threads
     * inherit the mask and main takes them with sigwait. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (opts.me != NULL) {
        snprintf(me, sizeof me, "%s", opts.me);
    } else {
        const char *host = strcmp(opts.bind_ip, "0.0.0.0") == 0 ? "127.0.0.1" : opts.bind_ip;
        snprintf(me, sizeof me, "%s:%d", host, opts.port);
    }
    if (opts.key_file != NULL) {
        /* Checked before anything opens, as mongod does; repl_open reads
         * it again for use. */
        struct repl_key key;
        rv = repl_keyfile_load(opts.key_file, &key, &err);
        repl_key_clear(&key);
        if (rv != 0) {
            fprintf(stderr, "cairnd: %s\n", err.msg);
            return 1;
        }
    }
    if (make_dir(opts.dbpath) != 0) {
        return 1;
    }
    /* Sorts with allowDiskUse spill here (anonymous files: none outlive
     * the process; leftovers of older versions are removed). */
    snprintf(dbdir, sizeof dbdir, "%s/_tmp", opts.dbpath);
    if (make_dir(dbdir) != 0) {
        return 1;
    }
    clear_tmp(dbdir);
    qry_set_spill_dir(dbdir);
    qry_set_spill_floor((opts.disk_free_floor_mb < 0 ? (uint64_t)REPL_DISK_FREE_FLOOR_MB
                                                     : (uint64_t)opts.disk_free_floor_mb)
                        << 20);
    snprintf(dbdir, sizeof dbdir, "%s/db", opts.dbpath);
    /* Before RocksDB opens: out of space, it asserts in its WAL writer
     * instead of failing (docs/decisions.md §36). */
    rv = repl_disk_startup_check(opts.dbpath, opts.disk_free_floor_mb, &err);
    if (rv != 0) {
        cairn_log(CAIRN_LOG_ERROR, "main", "%s", err.msg);
        return 1;
    }

    rv = eng_open(dbdir, &eng, &err);
    if (rv != 0) {
        cairn_log(CAIRN_LOG_ERROR, "main", "open storage in %s: %s", dbdir, err.msg);
        return 1;
    }
    struct repl_options ro = {
        .dbpath = opts.dbpath,
        .set_name = opts.set_name,
        .me = me,
        .bind_ip = opts.bind_ip,
        .port = opts.port,
        .initiate = opts.initiate,
        .eng = eng,
        .key_file = opts.key_file,
        .snapshot_threshold = (unsigned)opts.snapshot_threshold,
        .snapshot_trailing = (unsigned)opts.snapshot_trailing,
        .disk_free_floor_mb = opts.disk_free_floor_mb,
    };
    rv = repl_open(&ro, &repl, &err);
    if (rv != 0) {
        cairn_log(CAIRN_LOG_ERROR, "main", "start replication: %s", err.msg);
        eng_close(eng);
        return 1;
    }
    rv = txn_mgr_open(eng, repl, &txn, &err);
    if (rv != 0) {
        cairn_log(CAIRN_LOG_ERROR, "main", "start transactions: %s", err.msg);
        repl_close(repl);
        eng_close(eng);
        return 1;
    }
    struct net_options no = {
        .bind_ip = opts.bind_ip,
        .port = opts.port,
        .n_workers = opts.workers,
        .dbpath = opts.dbpath,
        .params = opts.params,
        .n_params = opts.n_params,
    };
    struct net_deps deps = {.txn = txn, .repl = repl};
    rv = net_server_start(&no, &deps, &net, &err);
    if (rv != 0) {
        if (rv == CAIRN_EINVAL) {
            /* A --setParameter value the layer it configures refused. */
            fprintf(stderr, "cairnd: %s\n", err.msg);
        } else {
            cairn_log(CAIRN_LOG_ERROR, "main", "listen on %s:%d: %s", opts.bind_ip, opts.port,
                      err.msg);
        }
        txn_mgr_close(txn);
        repl_close(repl);
        eng_close(eng);
        return rv == CAIRN_EINVAL ? 2 : 1;
    }
    cairn_log(CAIRN_LOG_INFO, "main",
              "cairnd %s replSet %s me %s dbpath %s: waiting for connections on %s:%d",
              CAIRN_VERSION, opts.set_name, me, opts.dbpath, opts.bind_ip, opts.port);

    while (sigwait(&sigs, &sig) != 0) {
    }
    cairn_log(CAIRN_LOG_INFO, "main", "signal %d: shutting down", sig);
    /* Each layer closes before the one beneath it: the transaction manager
     * unregisters its leadership callback before replication stops (which
     * makes the member unwritable and would call it). */
    net_server_stop(net);
    txn_mgr_close(txn);
    repl_close(repl);
    eng_close(eng);
    cairn_log(CAIRN_LOG_INFO, "main", "shutdown complete");
    return 0;
}
