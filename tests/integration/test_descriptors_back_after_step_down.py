"""Writes refused with 264 TooManyFilesOpen resume once descriptors are free again, even when
the commits that were waiting for descriptors were dropped by a step-down meanwhile (the
probe that clears the condition used to run only while commits were queued, so with the queue
dropped every later write was refused forever; docs/decisions.md §31f)."""

import threading

from pymongo.errors import OperationFailure, PyMongoError

from workers import wait_until

TOO_MANY_FILES_OPEN = 264


def code_of(fn):
    try:
        fn()
    except OperationFailure as exc:
        return exc.code
    return 0


def test_writes_resume_after_descriptors_return_across_a_step_down(server_factory):
    srv = server_factory(start=False)
    srv.fd_limit = 200
    srv.start()
    c = srv.client(retryWrites=False, maxPoolSize=2)
    waiter = srv.client(retryWrites=False, maxPoolSize=1)
    try:
        waiter.admin.command("ping")
        c.admin.command({"setParameter": 1, "internalQueryMaxBlockingSortMemoryUsageBytes": 2048})
        coll = c.fds.t
        coll.insert_many([{"_id": i, "r": -i, "pad": "p" * 1500} for i in range(8)])
        # Each spilled cursor keeps its spill file open: open them until the process is out of
        # descriptors (the sort that finds none fails).
        cursors = []
        while len(cursors) < 400:
            cur = coll.find({}).sort("r", 1).allow_disk_use(True).batch_size(1)
            try:
                next(cur)
            except OperationFailure:
                break
            cursors.append(cur)
        # A write now waits in the queue for descriptors (nothing is dropped)...
        outcome = {}

        def queued_write():
            try:
                waiter.fds.t.insert_one({"queued": 1})
                outcome["ok"] = True
            except PyMongoError as exc:
                outcome["exc"] = exc

        t = threading.Thread(target=queued_write)
        t.start()
        wait_until(lambda: "out of file descriptors" in srv.log_text(), 10,
                   "the raft thread finds no descriptors for the queued write")
        # ...and the next ones are refused with 264.
        wait_until(lambda: code_of(lambda: coll.insert_one({"w": 1})) == TOO_MANY_FILES_OPEN,
                   10, "writes are refused with TooManyFilesOpen")
        # Leadership ends: the commits that waited for descriptors are dropped.
        c.admin.command({"replSetStepDown": 1, "secondaryCatchUpPeriodSecs": 0, "force": True})
        t.join(30)
        assert not t.is_alive() and "exc" in outcome, outcome
        for cur in cursors:
            cur.close()
        cursors = []
        wait_until(lambda: c.admin.command("hello").get("isWritablePrimary"), 30,
                   "the member is primary again")
        wait_until(lambda: code_of(lambda: coll.insert_one({"after": 1})) == 0, 10,
                   "writes resume once descriptors are free")
        assert srv.alive()
    finally:
        c.close()
        waiter.close()
