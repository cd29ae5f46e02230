// tests/go/gridfs: GridFS with Debian's Go driver (golang-mongodb-mongo-driver-dev 1.8.4,
// Go 1.19) against cairnd, run and checked. The driver creates the GridFS indexes on its
// first write to an empty bucket (files {filename: 1, uploadDate: 1}, chunks {files_id: 1,
// n: 1} unique); before secondary indexes that call failed and so did every upload.
//
// Usage: go_gridfs URI
//
// Checks, in database go_gridfs (dropped first), bucket "fs", write concern majority:
//   - UploadFromStream of 5 MB of seeded random bytes succeeds; both indexes are listed with
//     their key patterns, the chunks one unique;
//   - the chunks collection holds ceil(5 MB / 255 KiB) chunks numbered 0..n-1;
//   - DownloadToStream returns the same bytes (length and SHA-256, then byte for byte);
//   - a second revision under the same name: OpenDownloadStreamByName gives the newest,
//     Find({filename}) gives both;
//   - inserting a chunk with an existing (files_id, n) is refused with DuplicateKey 11000;
//   - Delete removes the file document and all its chunks, a download after it is
//     ErrFileNotFound.
//
// Built offline from Debian's packages in GOPATH mode, as tests/examples/go (see the top of
// tests/examples/go/with_transaction.go for why):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
//	    go build -o OUT/go_gridfs ./tests/go/gridfs
//
// Prints "ok - ..." / "not ok - ...: why" per check, then "N passed, N failed"; exits 1 if
// any check failed (scripts/run-examples.sh counts the lines).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"math/rand"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/gridfs"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/writeconcern"
)

const (
	size      = 5 * 1024 * 1024
	chunkSize = 255 * 1024 // the driver's default
	seed      = 20261205
	watchdog  = 180 * time.Second
)

var passed, failed int

func check(cond bool, what string, why string, args ...interface{}) bool {
	if cond {
		passed++
		fmt.Printf("ok - %s\n", what)
	} else {
		failed++
		fmt.Printf("not ok - %s: %s\n", what, fmt.Sprintf(why, args...))
	}
	return cond
}

func finish() {
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
	os.Exit(0)
}

// indexes lists a collection's indexes as name -> (key pattern as extended JSON, unique).
func indexes(ctx context.Context, coll *mongo.Collection) (map[string]string, error) {
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		return nil, err
	}
	defer cur.Close(ctx)
	out := map[string]string{}
	for cur.Next(ctx) {
		var ix struct {
			Name   string   `bson:"name"`
			Key    bson.Raw `bson:"key"`
			Unique bool     `bson:"unique"`
		}
		if err := cur.Decode(&ix); err != nil {
			return nil, err
		}
		out[ix.Name] = fmt.Sprintf("%s unique=%v", ix.Key.String(), ix.Unique)
	}
	return out, cur.Err()
}

func hasIndex(ixs map[string]string, want string) bool {
	for _, v := range ixs {
		if v == want {
			return true
		}
	}
	return false
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go_gridfs URI")
		os.Exit(2)
	}
	time.AfterFunc(watchdog, func() {
		fmt.Printf("not ok - watchdog: still running after %v\n", watchdog)
		os.Exit(1)
	})
	ctx := context.Background()
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(os.Args[1]))
	if err != nil {
		log.Fatalf("connect: %v", err)
	}
	defer client.Disconnect(ctx)
	db := client.Database("go_gridfs", options.Database().SetWriteConcern(
		writeconcern.New(writeconcern.WMajority())))
	if !check(db.Drop(ctx) == nil, "drop go_gridfs", "drop failed") {
		finish()
	}

	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	want := sha256.Sum256(data)

	bucket, err := gridfs.NewBucket(db)
	if !check(err == nil, "NewBucket", "%v", err) {
		finish()
	}
	id, err := bucket.UploadFromStream("big.bin", bytes.NewReader(data),
		options.GridFSUpload().SetMetadata(bson.D{{Key: "k", Value: "v"}}))
	if !check(err == nil, "UploadFromStream 5 MB", "%v", err) {
		finish()
	}

	files, err := indexes(ctx, bucket.GetFilesCollection())
	check(err == nil && hasIndex(files, `{"filename": {"$numberInt":"1"},"uploadDate": {"$numberInt":"1"}} unique=false`),
		"files index {filename: 1, uploadDate: 1}", "err %v, listed %v", err, files)
	chunks, err := indexes(ctx, bucket.GetChunksCollection())
	check(err == nil && hasIndex(chunks, `{"files_id": {"$numberInt":"1"},"n": {"$numberInt":"1"}} unique=true`),
		"chunks index {files_id: 1, n: 1} unique", "err %v, listed %v", err, chunks)

	nChunks, err := bucket.GetChunksCollection().CountDocuments(ctx, bson.D{{Key: "files_id", Value: id}})
	wantChunks := int64((size + chunkSize - 1) / chunkSize)
	check(err == nil && nChunks == wantChunks, "chunk count", "err %v, %d chunks, want %d",
		err, nChunks, wantChunks)

	var buf bytes.Buffer
	n, err := bucket.DownloadToStream(id, &buf)
	got := sha256.Sum256(buf.Bytes())
	check(err == nil && n == size && got == want, "DownloadToStream: length and SHA-256",
		"err %v, %d bytes", err, n)
	check(bytes.Equal(buf.Bytes(), data), "DownloadToStream: byte for byte", "bytes differ")

	id2, err := bucket.UploadFromStream("big.bin", bytes.NewReader([]byte("second revision")))
	check(err == nil, "upload a second revision", "%v", err)
	buf.Reset()
	ds, err := bucket.OpenDownloadStreamByName("big.bin")
	if err == nil {
		_, err = buf.ReadFrom(ds)
		ds.Close()
	}
	check(err == nil && buf.String() == "second revision", "OpenDownloadStreamByName: newest revision",
		"err %v, got %d bytes", err, buf.Len())
	cur, err := bucket.Find(bson.D{{Key: "filename", Value: "big.bin"}})
	var found []bson.M
	if err == nil {
		err = cur.All(ctx, &found)
	}
	check(err == nil && len(found) == 2, "Find by filename: both revisions", "err %v, %d found",
		err, len(found))

	_, err = bucket.GetChunksCollection().InsertOne(ctx, bson.D{{Key: "files_id", Value: id},
		{Key: "n", Value: 0}, {Key: "data", Value: []byte("dup")}})
	check(mongo.IsDuplicateKeyError(err), "a duplicate (files_id, n) chunk is refused",
		"got %v", err)

	err = bucket.Delete(id)
	check(err == nil, "Delete", "%v", err)
	left, err := bucket.GetChunksCollection().CountDocuments(ctx, bson.D{{Key: "files_id", Value: id}})
	check(err == nil && left == 0, "Delete removed every chunk", "err %v, %d left", err, left)
	_, err = bucket.OpenDownloadStream(id)
	check(errors.Is(err, gridfs.ErrFileNotFound), "download after Delete: ErrFileNotFound",
		"got %v", err)
	buf.Reset()
	_, err = bucket.DownloadToStream(id2, &buf)
	check(err == nil && buf.String() == "second revision", "the other revision is still there",
		"err %v", err)
	finish()
}
