// tests/examples/go: the MongoDB manual's Go transaction example (Session.WithTransaction),
// run and checked, with Debian's Go driver (golang-mongodb-mongo-driver-dev 1.8.4, Go 1.19).
//
// Usage: go_with_transaction URI
//
// Building offline from Debian's packages only. Debian installs the driver and its
// dependencies as source under /usr/share/gocode/src. Module mode cannot use them offline,
// even with a replace directive for each: several have no go.mod (go-spew, pkcs8,
// pkg/errors, tidwall/pretty), and the driver's go.mod (go 1.10, so its whole requirement
// graph is loaded, test-only modules included) names them. GOPATH mode can:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
//	    go build -o BUILDDIR/examples/go_with_transaction ./tests/examples/go
//
// GO111MODULE=off turns modules off: no go.mod or go.sum, imports are found under
// $GOPATH/src, and nothing is fetched (this builds inside a network namespace with no
// network). GOFLAGS= keeps the caller's flags out (Go 1.19 ignores -mod=mod in GOPATH mode
// anyway); GOPROXY=off makes any download attempt fail at once. scripts/run-examples.sh
// builds it this way, with GOCACHE inside the build directory.
//
// The example (manual, "Transactions", Go tab): collection handles mydb1.foo and mydb1.bar
// with write concern majority; a callback inserts {abc: 1} into foo and {xyz: 999} into bar,
// passing the session context so that both run in the transaction; client.StartSession()
// and session.WithTransaction(ctx, callback), which starts the transaction, runs the callback
// and commits (or aborts on error), retrying on TransientTransactionError and
// UnknownTransactionCommitResult. The manual's code is written for the v2 driver; for 1.8.4:
// mongo.Connect takes a context, writeconcern.Majority() is writeconcern.New(
// writeconcern.WMajority()), and the callback takes a mongo.SessionContext. The client also
// gets a command monitor here, to check what was sent. Like the manual's Go code (and unlike
// its other languages), the example creates no collection first, uses mydb1 for both, and
// gives WithTransaction no transaction options: no read concern, and commitTransaction goes
// without a write concern (the server's default); the collections' majority write concern
// does not apply inside a transaction.
//
// Checks: WithTransaction succeeded; both inserts went out inside the transaction and
// commitTransaction was sent; afterwards mydb1.foo holds exactly {abc: 1} and mydb1.bar
// exactly {xyz: 999}.
//
// Prints "ok - ..." / "not ok - ...: why" per check, then "N passed, N failed"; exits 1 if
// any check failed.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/event"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/writeconcern"
)

const watchdog = 180 * time.Second // WithTransaction gives up retrying after 120 s

// ---- TAP-like output -------------------------------------------------------------------

type tap struct {
	mu     sync.Mutex
	passed int
	failed int
}

func (t *tap) check(cond bool, what string, why string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cond {
		t.passed++
		fmt.Printf("ok - %s\n", what)
	} else {
		t.failed++
		if why == "" {
			why = "check failed"
		}
		fmt.Printf("not ok - %s: %s\n", what, why)
	}
	return cond
}

func (t *tap) finish() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Printf("%d passed, %d failed\n", t.passed, t.failed)
	if t.failed > 0 {
		return 1
	}
	return 0
}

var results tap

// ---- what the example sent, seen through command monitoring ----------------------------

type wireCounts struct {
	insertsInside  int // inserts with txnNumber and autocommit: false
	insertsOutside int
	txnStarts      int // statements with startTransaction: true
	commits        int
}

var sent struct {
	mu sync.Mutex
	wireCounts
}

var monitor = &event.CommandMonitor{
	Started: func(_ context.Context, e *event.CommandStartedEvent) {
		sent.mu.Lock()
		defer sent.mu.Unlock()
		switch e.CommandName {
		case "insert":
			ac, err := e.Command.LookupErr("autocommit")
			_, errTxn := e.Command.LookupErr("txnNumber")
			if err == nil && ac.Type == bson.TypeBoolean && !ac.Boolean() && errTxn == nil {
				sent.insertsInside++
			} else {
				sent.insertsOutside++
			}
			if st, err := e.Command.LookupErr("startTransaction"); err == nil &&
				st.Type == bson.TypeBoolean && st.Boolean() {
				sent.txnStarts++
			}
		case "commitTransaction":
			sent.commits++
		}
	},
}

// ---- the manual's example --------------------------------------------------------------

// WithTransactionExample is an example of using the Session.WithTransaction function.
func WithTransactionExample(ctx context.Context, uri string) error {
	// For a replica set, include the replica set name and a seedlist of the members in the URI string; e.g.
	// uri := "mongodb://mongodb0.example.com:27017,mongodb1.example.com:27017/?replicaSet=myRepl"
	// For a sharded cluster, connect to the mongos instances; e.g.
	// uri := "mongodb://mongos0.example.com:27017,mongos1.example.com:27017/"

	clientOpts := options.Client().ApplyURI(uri).SetMonitor(monitor)
	client, err := mongo.Connect(ctx, clientOpts)
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(ctx) }()

	// Prereq: Create collections.
	wcMajority := writeconcern.New(writeconcern.WMajority())
	wcMajorityCollectionOpts := options.Collection().SetWriteConcern(wcMajority)
	fooColl := client.Database("mydb1").Collection("foo", wcMajorityCollectionOpts)
	barColl := client.Database("mydb1").Collection("bar", wcMajorityCollectionOpts)

	// Step 1: Define the callback that specifies the sequence of operations to perform inside the transaction.
	callback := func(sesctx mongo.SessionContext) (interface{}, error) {
		// Important: You must pass sesctx as the Context parameter to the operations for them to be executed in the
		// transaction.
		if _, err := fooColl.InsertOne(sesctx, bson.D{{"abc", 1}}); err != nil {
			return nil, err
		}
		if _, err := barColl.InsertOne(sesctx, bson.D{{"xyz", 999}}); err != nil {
			return nil, err
		}

		return nil, nil
	}

	// Step 2: Start a session and run the callback using WithTransaction.
	session, err := client.StartSession()
	if err != nil {
		return err
	}
	defer session.EndSession(ctx)

	result, err := session.WithTransaction(ctx, callback)
	if err != nil {
		return err
	}
	log.Printf("result: %v\n", result)
	return nil
}

// ---- harness ---------------------------------------------------------------------------

func describe(err error) string {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return fmt.Sprintf("%s (code %d %s, labels %v)", ce.Message, ce.Code, ce.Name, ce.Labels)
	}
	var we mongo.WriteException
	if errors.As(err, &we) {
		return fmt.Sprintf("%v (labels %v)", we, we.Labels)
	}
	return err.Error()
}

func count(ctx context.Context, coll *mongo.Collection, filter bson.D) int64 {
	n, err := coll.CountDocuments(ctx, filter)
	if err != nil {
		results.check(false, "count documents in "+coll.Database().Name()+"."+coll.Name(), describe(err))
		return -1
	}
	return n
}

func run(uri string) {
	ctx := context.Background()
	verify, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(10*time.Second))
	if !results.check(err == nil, "connect", fmt.Sprint(err)) {
		return
	}
	defer func() { _ = verify.Disconnect(ctx) }()

	// A fresh start: drop the example's collections (write concern majority before a
	// transaction, as the manual advises; a missing collection is fine).
	wc := options.Collection().SetWriteConcern(writeconcern.New(writeconcern.WMajority()))
	foo := verify.Database("mydb1").Collection("foo", wc)
	bar := verify.Database("mydb1").Collection("bar", wc)
	for _, c := range []*mongo.Collection{foo, bar} {
		if err := c.Drop(ctx); err != nil {
			results.check(false, "drop mydb1."+c.Name(), describe(err))
			return
		}
	}

	err = WithTransactionExample(ctx, uri)
	why := ""
	if err != nil {
		why = describe(err)
	}
	results.check(err == nil, "the manual's Go WithTransaction example succeeded", why)

	sent.mu.Lock()
	w := sent.wireCounts
	sent.mu.Unlock()
	results.check(w.insertsInside >= 2 && w.txnStarts >= 1 && w.insertsOutside == 0,
		"both inserts were sent inside the transaction",
		fmt.Sprintf("%d inserts with txnNumber and autocommit false (%d starting it), %d outside",
			w.insertsInside, w.txnStarts, w.insertsOutside))
	results.check(w.commits >= 1, "commitTransaction was sent",
		fmt.Sprintf("%d commitTransaction sent", w.commits))

	n := count(ctx, foo, bson.D{{Key: "abc", Value: 1}})
	results.check(n == 1, "mydb1.foo holds the transaction's {abc: 1} once", fmt.Sprintf("found %d", n))
	n = count(ctx, bar, bson.D{{Key: "xyz", Value: 999}})
	results.check(n == 1, "mydb1.bar holds the transaction's {xyz: 999} once", fmt.Sprintf("found %d", n))
	n = count(ctx, foo, bson.D{}) + count(ctx, bar, bson.D{})
	results.check(n == 2, "the two collections hold exactly those two documents",
		fmt.Sprintf("found %d documents", n))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s URI\n", os.Args[0])
		os.Exit(2)
	}
	log.SetFlags(0)
	log.SetPrefix("# ")
	log.SetOutput(os.Stdout)
	time.AfterFunc(watchdog, func() {
		results.check(false, "the example finished", fmt.Sprintf("still running after %v", watchdog))
		results.finish()
		os.Exit(1)
	})
	run(os.Args[1])
	os.Exit(results.finish())
}
