"""GridFS through pymongo against one cairnd: the legacy `gridfs.GridFS` put/get and
`GridFSBucket` upload/download of a 5 MB file come back byte for byte; find by filename and
revisions; delete removes the file document and every chunk; the indexes the driver creates on
first use (files {filename:1, uploadDate:1}, chunks {files_id:1, n:1} unique) are real: listed,
and the chunks index refuses a duplicate (files_id, n)."""

import hashlib
import io
import random

import gridfs
import pytest
from pymongo.errors import DuplicateKeyError

SEED = 20261205
SIZE = 5 * 1024 * 1024


def payload(seed, size=SIZE):
    return random.Random(seed).randbytes(size)


def index_keys(coll):
    return {ix["name"]: (dict(ix["key"]), ix.get("unique", False))
            for ix in coll.list_indexes()}


def assert_gridfs_indexes(db, bucket="fs"):
    files = index_keys(db[bucket + ".files"])
    chunks = index_keys(db[bucket + ".chunks"])
    assert ({"filename": 1, "uploadDate": 1}, False) in files.values(), files
    assert ({"files_id": 1, "n": 1}, True) in chunks.values(), chunks


def test_put_get_5mb_and_indexes_created_on_first_use(db):
    data = payload(1)
    fs = gridfs.GridFS(db)
    fid = fs.put(data, filename="big.bin", metadata={"k": "v"})
    assert_gridfs_indexes(db)
    out = fs.get(fid)
    assert out.length == SIZE
    assert out.filename == "big.bin"
    assert out.metadata == {"k": "v"}
    got = out.read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert got == data
    # 255 KiB chunks, numbered 0..n-1, each exactly the chunk size but the last.
    n = -(-SIZE // out.chunk_size)
    chunks = list(db["fs.chunks"].find({"files_id": fid}, {"n": 1, "data": 1}).sort("n", 1))
    assert [c["n"] for c in chunks] == list(range(n))
    assert all(len(c["data"]) == out.chunk_size for c in chunks[:-1])
    assert sum(len(c["data"]) for c in chunks) == SIZE
    # Random access reads the right chunk.
    out = fs.get(fid)
    out.seek(3 * out.chunk_size + 17)
    assert out.read(1000) == data[3 * out.chunk_size + 17:3 * out.chunk_size + 1017]


def test_chunks_index_refuses_a_duplicate_chunk(db):
    fs = gridfs.GridFS(db)
    fid = fs.put(b"x" * 1000, filename="small")
    with pytest.raises(DuplicateKeyError) as exc:
        db["fs.chunks"].insert_one({"files_id": fid, "n": 0, "data": b"y"})
    assert exc.value.details["keyPattern"] == {"files_id": 1, "n": 1}
    assert fs.get(fid).read() == b"x" * 1000


def test_bucket_upload_download_find_delete(db):
    bucket = gridfs.GridFSBucket(db, bucket_name="media")
    data = payload(2)
    fid = bucket.upload_from_stream("clip.bin", io.BytesIO(data), metadata={"kind": "clip"})
    assert_gridfs_indexes(db, "media")
    sink = io.BytesIO()
    bucket.download_to_stream(fid, sink)
    assert sink.getvalue() == data
    # Revisions by filename: -1 is the newest, 0 the oldest.
    fid2 = bucket.upload_from_stream("clip.bin", io.BytesIO(b"second revision"))
    assert bucket.open_download_stream_by_name("clip.bin").read() == b"second revision"
    assert bucket.open_download_stream_by_name("clip.bin", revision=0).read() == data
    found = list(bucket.find({"filename": "clip.bin"}).sort("uploadDate", 1))
    assert [f._id for f in found] == [fid, fid2]
    assert found[0].length == SIZE and found[0].metadata == {"kind": "clip"}
    # The files index serves the driver's query by filename.
    plan = db["media.files"].find({"filename": "clip.bin"}).sort("uploadDate", -1).explain()
    assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"]), plan["queryPlanner"]
    bucket.delete(fid)
    assert db["media.chunks"].count_documents({"files_id": fid}) == 0
    assert db["media.files"].count_documents({"_id": fid}) == 0
    with pytest.raises(gridfs.errors.NoFile):
        bucket.open_download_stream(fid)
    with pytest.raises(gridfs.errors.NoFile):
        bucket.delete(fid)
    assert bucket.open_download_stream_by_name("clip.bin").read() == b"second revision"
    assert db.command("validate", "media.chunks")["valid"] is True


def test_upload_stream_in_pieces_and_rename(db):
    bucket = gridfs.GridFSBucket(db, chunk_size_bytes=64 * 1024)
    data = payload(3, 1024 * 1024 + 5)
    rng = random.Random(SEED)
    with bucket.open_upload_stream("pieces.bin") as up:
        pos = 0
        while pos < len(data):
            step = rng.randrange(1, 200000)
            up.write(data[pos:pos + step])
            pos += step
    fid = up._id
    assert db["fs.chunks"].count_documents({"files_id": fid}) == -(-len(data) // (64 * 1024))
    bucket.rename(fid, "renamed.bin")
    assert bucket.open_download_stream_by_name("renamed.bin").read() == data
    with pytest.raises(gridfs.errors.NoFile):
        bucket.open_download_stream_by_name("pieces.bin")
