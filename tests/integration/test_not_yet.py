"""Features of later milestones answer with a clear error and do nothing, never a silent
success: multi-document transactions (statements with autocommit/startTransaction are
refused before running, so no part of a transaction is ever applied), commit/abort."""

import pytest
from pymongo.errors import OperationFailure


def test_transaction_statements_are_refused_and_write_nothing(client):
    coll = client.notyet.tx
    coll.drop()
    coll.insert_one({"_id": 0})

    def callback(session):
        coll.insert_one({"_id": 1}, session=session)
        coll.insert_one({"_id": 2}, session=session)

    with client.start_session() as s:
        with pytest.raises(OperationFailure) as e:
            s.with_transaction(callback)
    assert e.value.code == 238  # NotImplemented
    assert "transactions are not supported yet" in str(e.value)
    assert not e.value.has_error_label("TransientTransactionError")
    assert sorted(d["_id"] for d in coll.find()) == [0]


def test_transaction_reads_are_refused_too(client):
    with client.start_session() as s:
        s.start_transaction()
        with pytest.raises(OperationFailure) as e:
            client.notyet.tx.find_one({}, session=s)
        assert e.value.code == 238
        s.abort_transaction()  # drivers ignore abort errors


@pytest.mark.parametrize("cmd", ["commitTransaction", "abortTransaction"])
def test_commit_and_abort_are_unknown_commands(client, cmd):
    with pytest.raises(OperationFailure) as e:
        client.admin.command(cmd)
    assert e.value.code == 59
