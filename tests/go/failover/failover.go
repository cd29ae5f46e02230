// tests/go/failover: the Go driver's failover workload. Owns the Go side of
// tests/integration/test_driver_failover.py, with Debian's Go driver
// (golang-mongodb-mongo-driver-dev 1.8.4, Go 1.19). Two goroutines share one client:
//
//   - inserts: documents {n: <id>, by: "go"} with consecutive ids into failover.go_ids at
//     w:"majority", as retryable writes (the driver retries each insert once after a
//     retryable error, e.g. on the new primary after a failover), one at a time. An insert
//     that fails even after the driver's retry is counted as an error and the loop goes on
//     with the next id (the failed id's outcome is unknown: it may be present or not).
//   - transactions: Session.WithTransaction (which retries on TransientTransactionError and
//     UnknownTransactionCommitResult) moving a seeded random amount between the documents
//     "a" and "b" of failover.go_accounts (created at start with a: 1000, b: 0 unless present)
//     and recording the move as {_id: <txn id>, amt: <amount added to b>} in
//     failover.go_ledger, at read concern snapshot and write concern majority. So at any
//     majority-committed point a + b == 1000, b == the sum of the ledger's amounts, and every
//     transaction WithTransaction reported committed is in the ledger exactly once.
//
// Usage: go_failover [-seconds S] [-count N] [-seed K] [-txn=false] URI
// Runs until S seconds have passed (default 60), N inserts were acknowledged, or SIGTERM /
// SIGINT arrives (operations in progress finish first). Exits 0 after printing the summary,
// whatever the errors (the caller judges them); 1 if it could not start; 2 on a usage error.
//
// Output on stdout, one JSON object per line (times are wall-clock Unix seconds, t0 when the
// operation was issued, t1 when the driver returned):
//
//	{"ev":"start","t":T,"pid":P,"total":1000}
//	{"ev":"ack","id":N,"t0":T0,"t1":T1}                    acknowledged insert
//	{"ev":"txn","id":K,"amt":A,"t0":T0,"t1":T1,"attempts":M}  committed transaction
//	{"ev":"err","op":"insert"|"txn","id":N,"t0":T0,"t1":T1,"code":C,"labels":[...],"msg":"..."}
//	{"ev":"summary","acked":[[lo,hi],...],"acked_count":K,"txns":[[lo,hi],...],
//	 "txn_count":K,"txn_attempts":M,"errors":E,"insert_errors":E1,"txn_errors":E2,
//	 "first_error_t":T|null,"first_success_after_error_t":T|null,
//	 "outages":[[first error, next success],...],"error_kinds":[...],"total":1000,
//	 "elapsed_s":S}
//
// "acked" and "txns" list the acknowledged ids as inclusive ranges; an outage starts at an
// error of either goroutine and ends at the next success of either.
//
// Built offline from Debian's packages in GOPATH mode, as tests/examples/go (see the top of
// tests/examples/go/with_transaction.go for why):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
//	    go build -o OUT/go_failover ./tests/go/failover
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/readconcern"
	"go.mongodb.org/mongo-driver/mongo/readpref"
	"go.mongodb.org/mongo-driver/mongo/writeconcern"
)

const (
	dbName       = "failover"
	totalValue   = 1000
	opTimeout    = 60 * time.Second // longer than server selection (30 s): the driver decides
	setupTimeout = 60 * time.Second
	maxKinds     = 32
)

func wallNow() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// ---- output ----------------------------------------------------------------------------

var outMu sync.Mutex

func emit(line string) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Println(line)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ---- acknowledged ids as inclusive ranges ----------------------------------------------

type idRanges struct {
	ranges [][2]int64
	count  int64
}

func (r *idRanges) add(id int64) {
	r.count++
	if n := len(r.ranges); n > 0 && r.ranges[n-1][1]+1 == id {
		r.ranges[n-1][1] = id
		return
	}
	r.ranges = append(r.ranges, [2]int64{id, id})
}

// ---- errors: counted by kind, and the outages they form --------------------------------

type errorKind struct {
	Op    string `json:"op"`
	Code  int32  `json:"code"`
	Msg   string `json:"msg"`
	Count int64  `json:"count"`
}

type stats struct {
	mu          sync.Mutex
	acked       idRanges
	txns        idRanges
	txnAttempts int64
	insertErrs  int64
	txnErrs     int64
	kinds       []*errorKind
	otherKinds  int64
	outages     [][2]*float64
	inOutage    bool
}

func (s *stats) success(t float64) {
	if s.inOutage {
		s.outages[len(s.outages)-1][1] = &t
		s.inOutage = false
	}
}

func (s *stats) failure(op string, code int32, msg string, t float64) {
	if op == "insert" {
		s.insertErrs++
	} else {
		s.txnErrs++
	}
	if len(msg) > 160 {
		msg = msg[:160]
	}
	found := false
	for _, k := range s.kinds {
		if k.Op == op && k.Code == code && k.Msg == msg {
			k.Count++
			found = true
			break
		}
	}
	if !found {
		if len(s.kinds) < maxKinds {
			s.kinds = append(s.kinds, &errorKind{Op: op, Code: code, Msg: msg, Count: 1})
		} else {
			s.otherKinds++
		}
	}
	if !s.inOutage {
		s.outages = append(s.outages, [2]*float64{&t, nil})
		s.inOutage = true
	}
}

// errorInfo gives an error's server code (0 if none), labels and text.
func errorInfo(err error) (int32, []string, string) {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return ce.Code, ce.Labels, err.Error()
	}
	var we mongo.WriteException
	if errors.As(err, &we) {
		code := int32(0)
		if we.WriteConcernError != nil {
			code = int32(we.WriteConcernError.Code)
		} else if len(we.WriteErrors) > 0 {
			code = int32(we.WriteErrors[0].Code)
		}
		return code, we.Labels, err.Error()
	}
	return 0, nil, err.Error()
}

func (s *stats) recordError(op string, id int64, t0, t1 float64, err error) {
	code, labels, msg := errorInfo(err)
	if labels == nil {
		labels = []string{}
	}
	lb, _ := json.Marshal(labels)
	s.mu.Lock()
	s.failure(op, code, msg, t1)
	s.mu.Unlock()
	emit(fmt.Sprintf(`{"ev":"err","op":"%s","id":%d,"t0":%.6f,"t1":%.6f,"code":%d,"labels":%s,"msg":%s}`,
		op, id, t0, t1, code, lb, jsonString(msg)))
}

func (s *stats) summary(elapsed float64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var firstErr, firstOk *float64
	if len(s.outages) > 0 {
		firstErr, firstOk = s.outages[0][0], s.outages[0][1]
	}
	kinds := make([]errorKind, 0, len(s.kinds))
	for _, k := range s.kinds {
		kinds = append(kinds, *k)
	}
	acked, txns := s.acked.ranges, s.txns.ranges
	if acked == nil {
		acked = [][2]int64{}
	}
	if txns == nil {
		txns = [][2]int64{}
	}
	outages := s.outages
	if outages == nil {
		outages = [][2]*float64{}
	}
	doc := struct {
		Ev           string        `json:"ev"`
		Acked        [][2]int64    `json:"acked"`
		AckedCount   int64         `json:"acked_count"`
		Txns         [][2]int64    `json:"txns"`
		TxnCount     int64         `json:"txn_count"`
		TxnAttempts  int64         `json:"txn_attempts"`
		Errors       int64         `json:"errors"`
		InsertErrors int64         `json:"insert_errors"`
		TxnErrors    int64         `json:"txn_errors"`
		FirstErrorT  *float64      `json:"first_error_t"`
		FirstOkT     *float64      `json:"first_success_after_error_t"`
		Outages      [][2]*float64 `json:"outages"`
		ErrorKinds   []errorKind   `json:"error_kinds"`
		OtherKinds   int64         `json:"other_error_kinds"`
		Total        int           `json:"total"`
		ElapsedS     float64       `json:"elapsed_s"`
	}{"summary", acked, s.acked.count, txns, s.txns.count, s.txnAttempts,
		s.insertErrs + s.txnErrs, s.insertErrs, s.txnErrs, firstErr, firstOk, outages, kinds,
		s.otherKinds, totalValue, elapsed}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Sprintf(`{"ev":"summary","marshal_error":%s}`, jsonString(err.Error()))
	}
	return string(b)
}

// ---- the workload ----------------------------------------------------------------------

type workload struct {
	stop     atomic.Bool
	deadline time.Time
	count    int64
	stats    stats
	ids      *mongo.Collection
	accounts *mongo.Collection
	ledger   *mongo.Collection
}

func (w *workload) done() bool {
	if w.stop.Load() || time.Now().After(w.deadline) {
		return true
	}
	if w.count > 0 {
		w.stats.mu.Lock()
		defer w.stats.mu.Unlock()
		return w.stats.acked.count >= w.count
	}
	return false
}

func (w *workload) insertLoop() {
	for id := int64(1); !w.done(); id++ {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		t0 := wallNow()
		_, err := w.ids.InsertOne(ctx, bson.D{{Key: "n", Value: id}, {Key: "by", Value: "go"}})
		t1 := wallNow()
		cancel()
		if err != nil {
			w.stats.recordError("insert", id, t0, t1, err)
			continue
		}
		w.stats.mu.Lock()
		w.stats.acked.add(id)
		w.stats.success(t1)
		w.stats.mu.Unlock()
		emit(fmt.Sprintf(`{"ev":"ack","id":%d,"t0":%.6f,"t1":%.6f}`, id, t0, t1))
	}
}

func (w *workload) txnLoop(client *mongo.Client, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	sess, err := client.StartSession()
	if err != nil {
		w.stats.recordError("txn", 0, wallNow(), wallNow(), err)
		return
	}
	defer sess.EndSession(context.Background())
	txnOpts := options.Transaction().
		SetReadConcern(readconcern.Snapshot()).
		SetWriteConcern(writeconcern.New(writeconcern.WMajority())).
		SetReadPreference(readpref.Primary())
	for id := int64(1); !w.done(); id++ {
		amt := int64(rng.Intn(10) + 1)
		if rng.Intn(2) == 0 {
			amt = -amt
		}
		var attempts int64
		move := func(sc mongo.SessionContext) (interface{}, error) {
			attempts++
			if _, err := w.accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "a"}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: -amt}}}}); err != nil {
				return nil, err
			}
			if _, err := w.accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "b"}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: amt}}}}); err != nil {
				return nil, err
			}
			_, err := w.ledger.InsertOne(sc, bson.D{{Key: "_id", Value: id}, {Key: "amt", Value: amt}})
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		t0 := wallNow()
		_, err := sess.WithTransaction(ctx, move, txnOpts)
		t1 := wallNow()
		cancel()
		w.stats.mu.Lock()
		w.stats.txnAttempts += attempts
		w.stats.mu.Unlock()
		if err != nil {
			w.stats.recordError("txn", id, t0, t1, err)
			continue
		}
		w.stats.mu.Lock()
		w.stats.txns.add(id)
		w.stats.success(t1)
		w.stats.mu.Unlock()
		emit(fmt.Sprintf(`{"ev":"txn","id":%d,"amt":%d,"t0":%.6f,"t1":%.6f,"attempts":%d}`,
			id, amt, t0, t1, attempts))
	}
}

// setupAccounts creates a: 1000 and b: 0 unless they exist (an upsert that changes nothing
// when they do), retrying until it succeeds or setupTimeout passes.
func (w *workload) setupAccounts() error {
	deadline := time.Now().Add(setupTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		var err error
		for _, acct := range []struct {
			id string
			v  int
		}{{"a", totalValue}, {"b", 0}} {
			_, err = w.accounts.UpdateOne(ctx, bson.D{{Key: "_id", Value: acct.id}},
				bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "v", Value: acct.v}}}},
				options.Update().SetUpsert(true))
			if err != nil {
				break
			}
		}
		cancel()
		if err == nil || w.stop.Load() || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func main() {
	seconds := flag.Float64("seconds", 60, "run for this many seconds")
	count := flag.Int64("count", 0, "stop after this many acknowledged inserts (0: no limit)")
	seed := flag.Int64("seed", 1, "seed of the transactions' amounts")
	withTxn := flag.Bool("txn", true, "run the transaction goroutine")
	flag.Parse()
	if flag.NArg() != 1 || *seconds <= 0 || *count < 0 {
		fmt.Fprintf(os.Stderr, "usage: %s [-seconds S] [-count N] [-seed K] [-txn=false] URI\n",
			os.Args[0])
		os.Exit(2)
	}
	uri := flag.Arg(0)

	w := &workload{count: *count}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		w.stop.Store(true)
	}()

	ctx := context.Background()
	// retryWrites is the driver's default, spelled out: the test relies on it.
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).SetRetryWrites(true).
		SetAppName("go_failover"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "go_failover: connect %s: %v\n", uri, err)
		os.Exit(1)
	}
	defer func() { _ = client.Disconnect(ctx) }()
	majority := options.Collection().SetWriteConcern(writeconcern.New(writeconcern.WMajority()))
	db := client.Database(dbName)
	w.ids = db.Collection("go_ids", majority)
	w.accounts = db.Collection("go_accounts", majority)
	w.ledger = db.Collection("go_ledger", majority)

	start := wallNow()
	if *withTxn {
		if err := w.setupAccounts(); err != nil {
			fmt.Fprintf(os.Stderr, "go_failover: creating the accounts: %v\n", err)
			os.Exit(1)
		}
	}
	w.deadline = time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	emit(fmt.Sprintf(`{"ev":"start","t":%.6f,"pid":%d,"total":%d}`, wallNow(), os.Getpid(),
		totalValue))

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.insertLoop() }()
	if *withTxn {
		wg.Add(1)
		go func() { defer wg.Done(); w.txnLoop(client, *seed) }()
	}
	wg.Wait()
	emit(w.stats.summary(wallNow() - start))
}
