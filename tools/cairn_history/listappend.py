"""The list-append analysis (after Jepsen's Elle): version orders, dependency graph, anomalies.

Owns: check_list_append(ops, final), which takes the "txn" op records and the final read of
the append collection ({key: list}, or None when there was none) and returns findings.

How it works. Every appended value is unique, so the value names the transaction that wrote
it. A read of key k returns a list; every read of k must be a prefix of every longer one, and
the longest (the final read when there is one) is k's version order. From the orders:
  ww  T1 -> T2   T2 appended the element right after T1's element of k
  wr  T1 -> T2   T2 read k ending with the element T1 appended
  rw  T1 -> T2   T1 read k up to some element (or empty), T2 appended the next element
Only committed transactions (ok) contribute reads, and only their external reads (a read of
k before the transaction itself appended to k); aborted ones (fail) are not nodes; unknown ones
(info) are nodes only through writes that someone observed.

Findings (each a dict: type, message, ops, optional cycle):
  G0          a cycle of ww edges (write cycle)
  G1a         a committed transaction read a value appended by an aborted one
  G1b         a committed transaction read a list ending in a value its writer followed with
              another append to the same key (an intermediate version)
  G1c         a cycle of ww and wr edges with at least one wr
  G-single    a cycle with exactly one rw edge (read skew, lost update): forbidden under
              snapshot isolation
  G2          a cycle with two or more rw edges: allowed under snapshot isolation (write
              skew), reported as information only
  incompatible-order  two reads of one key, neither a prefix of the other
  duplicate   a value present twice in a list (an append applied twice)
  unexpected-value    a value no operation appended to that key
  internal    a transaction's read disagreeing with its own earlier reads and appends
  lost-write  an acknowledged (ok) append missing from the final read
  failed-write-present  an aborted transaction's append in the final read
  non-atomic  an unknown (info) transaction only some of whose appends are in the final read
"""

from .graph import Graph, cycle_through, tarjan_scc

MAX_RW_TRIES = 500  # rw edges tried per component when searching for G-single


def _finding(ftype, message, ops, **extra):
    out = {"type": ftype, "message": message, "ops": sorted(set(o for o in ops
                                                                  if o is not None))}
    out.update(extra)
    return out


class _Analysis:
    def __init__(self, ops, final):
        self.ops = {op["id"]: op for op in ops}
        self.final = final
        self.findings = []
        self.writer = {}         # (key, value) -> op id
        self.appends = {}        # op id -> {key: [values in order]}
        self.reads = {}          # key -> [(op id, list)] external reads of ok transactions
        self.graph = Graph()

    def add(self, *args, **kw):
        self.findings.append(_finding(*args, **kw))

    def outcome(self, op_id):
        return self.ops[op_id]["outcome"] if op_id in self.ops else None

    # -- indexing -------------------------------------------------------------------------
    def index_writes(self):
        for op_id, op in self.ops.items():
            per_key = {}
            for f, k, v in op.get("mops", []):
                if f == "append":
                    key = _key(k)
                    per_key.setdefault(key, []).append(v)
                    self.writer.setdefault((key, _val(v)), op_id)
            self.appends[op_id] = per_key

    def index_reads(self):
        """External reads of ok transactions; internal consistency on the way."""
        for op_id, op in self.ops.items():
            if op["outcome"] != "ok":
                continue
            seen = {}   # key -> expected list, once known
            own = {}    # key -> own appends so far
            for f, k, v in op.get("mops", []):
                key = _key(k)
                if f == "append":
                    own.setdefault(key, []).append(v)
                    if key in seen:
                        seen[key] = seen[key] + [v]
                    continue
                lst = list(v or [])
                if key in seen:
                    if lst != seen[key]:
                        self.add("internal", "op %s read key %s = %s, but its own earlier "
                                 "reads and appends imply %s" % (op_id, k, lst, seen[key]),
                                 [op_id], key=k)
                elif key in own:
                    if lst[len(lst) - len(own[key]):] != own[key]:
                        self.add("internal", "op %s read key %s = %s, which does not end "
                                 "with its own appends %s" % (op_id, k, lst, own[key]),
                                 [op_id], key=k)
                else:
                    self.reads.setdefault(key, []).append((op_id, lst))
                seen[key] = lst

    # -- per-value checks -----------------------------------------------------------------
    def check_values(self, key, lst, reader):
        """Duplicates, unknown values, aborted reads, intermediate reads in one list."""
        who = "the final read" if reader is None else "op %s" % reader
        counts = {}
        for v in lst:
            counts[_val(v)] = counts.get(_val(v), 0) + 1
        for v, n in counts.items():
            w = self.writer.get((key, v))
            if n > 1:
                self.add("duplicate", "%s saw value %s %d times in key %s: appended by op %s, "
                         "applied more than once" % (who, v, n, key, w), [reader, w],
                         key=key, value=v)
            if w is None:
                self.add("unexpected-value", "%s saw value %s in key %s, which no operation "
                         "appended to that key" % (who, v, key), [reader], key=key, value=v)
            elif self.outcome(w) == "fail" and reader is not None:
                self.add("G1a", "op %s read value %s of key %s, appended by op %s which "
                         "aborted (aborted read)" % (reader, v, key, w), [reader, w],
                         key=key, value=v)
        if lst and reader is not None:
            last = _val(lst[-1])
            w = self.writer.get((key, last))
            if w is not None and w != reader:
                mine = [_val(x) for x in self.appends[w].get(key, [])]
                if last in mine and mine.index(last) < len(mine) - 1:
                    self.add("G1b", "op %s read key %s ending in %s, an intermediate version "
                             "of op %s, which appended %s to that key (intermediate read)"
                             % (reader, key, last, w, mine), [reader, w], key=key,
                             value=last)

    # -- version orders -------------------------------------------------------------------
    def version_order(self, key):
        """k's order: the final read, else the longest read; incompatibilities reported."""
        reads = list(self.reads.get(key, []))
        if self.final is not None:
            reads.append((None, list(self.final.get(key, []))))
        by_list = {}
        for op_id, lst in reads:
            by_list.setdefault(tuple(_val(v) for v in lst), []).append(op_id)
        lists = sorted(by_list, key=len)
        if self.final is not None:
            # every read must be a prefix of the final state (compare each with it)
            order = tuple(_val(v) for v in self.final.get(key, []))
            pairs = [(a, order) for a in lists if a != order]
        else:
            order = lists[-1] if lists else ()
            pairs = list(zip(lists, lists[1:]))
        for a, b in pairs:   # a must be a prefix of b (b: the longer read, or the final)
            if b[:len(a)] != a or len(a) > len(b):
                self.add("incompatible-order", "key %s was read as %s (by %s) and as %s (by %s):"
                         " the first is not a prefix of the second"
                         % (key, list(a), _readers(by_list[a]), list(b), _readers(by_list[b])),
                         by_list[a][:5] + by_list.get(b, [None])[:5], key=key,
                         reads=[list(a), list(b)])
        return list(order)

    def committed_writer(self, key, value):
        """The writer of a value if it may have committed (ok or info), else None."""
        w = self.writer.get((key, value))
        return w if w is not None and self.outcome(w) != "fail" else None

    def add_edges(self, key, order):
        chain = [v for v in order if self.committed_writer(key, v) is not None]
        for x, y in zip(chain, chain[1:]):
            a, b = self.committed_writer(key, x), self.committed_writer(key, y)
            if a != b:
                self.graph.add_edge(a, b, "ww", "key %s: op %s appended %s, op %s appended %s "
                                    "next" % (key, a, x, b, y))
        for reader, lst in self.reads.get(key, []):
            vals = [_val(v) for v in lst]
            if vals != order[:len(vals)]:
                continue  # not a prefix of the order: reported as incompatible-order
            self.graph.add_node(reader)
            if vals:
                w = self.committed_writer(key, vals[-1])
                if w is not None and w != reader:
                    self.graph.add_edge(w, reader, "wr", "key %s: op %s read up to %s, "
                                        "appended by op %s" % (key, reader, vals[-1], w))
            nxt = next((v for v in order[len(vals):]
                        if self.committed_writer(key, v) is not None), None)
            if nxt is not None:
                w2 = self.committed_writer(key, nxt)
                if w2 != reader:
                    self.graph.add_edge(reader, w2, "rw", "key %s: op %s read %s, op %s "
                                        "appended %s next" % (key, reader, vals or "nothing",
                                                              w2, nxt))

    # -- final state ----------------------------------------------------------------------
    def check_final(self):
        if self.final is None:
            return
        present = {(key, _val(v)) for key, lst in self.final.items() for v in lst}
        for op_id, per_key in self.appends.items():
            pairs = [(key, _val(v)) for key, vals in per_key.items() for v in vals]
            if not pairs:
                continue
            here = [p for p in pairs if p in present]
            outcome = self.outcome(op_id)
            if outcome == "ok":
                for key, v in pairs:
                    if (key, v) not in present:
                        self.add("lost-write", "op %s was acknowledged (w:majority) but its "
                                 "append of %s to key %s is not in the final state"
                                 % (op_id, v, key), [op_id], key=key, value=v)
            elif outcome == "fail" and here:
                self.add("failed-write-present", "op %s aborted but its appends %s are in the "
                         "final state" % (op_id, here), [op_id])
            elif outcome == "info" and 0 < len(here) < len(pairs):
                self.add("non-atomic", "op %s (outcome unknown) is only partly in the final "
                         "state: %s of %s" % (op_id, here, pairs), [op_id])

    # -- cycles ---------------------------------------------------------------------------
    def cycles(self):
        g = self.graph
        explained = []
        for comp in tarjan_scc(g, {"ww"}):
            cyc = _first_cycle(g, comp, "ww", {"ww"})
            if cyc:
                self._cycle("G0", "write cycle", cyc)
                explained.append(comp)
        for comp in tarjan_scc(g, {"ww", "wr"}):
            cyc = _first_cycle(g, comp, "wr", {"ww", "wr"})
            if cyc:
                self._cycle("G1c", "circular information flow", cyc)
                explained.append(comp)
        for comp in tarjan_scc(g, None):
            cyc = _first_cycle(g, comp, "rw", {"ww", "wr"})
            if cyc:
                self._cycle("G-single", "read skew / lost update: one anti-dependency", cyc)
            elif not any(c <= comp for c in explained):
                cyc = _first_cycle(g, comp, "rw", {"ww", "wr", "rw"})
                if cyc:
                    self._cycle("G2", "anti-dependency cycle (write skew), allowed under "
                                "snapshot isolation", cyc)

    def _cycle(self, ftype, what, steps):
        ids = [a for a, _, _ in steps]
        text = " ".join("%s -%s->" % (a, lb) for a, _, lb in steps) + " %s" % ids[0]
        notes = [self.graph.labels(a, b)[lb] for a, b, lb in steps]
        self.add(ftype, "%s: %s" % (what, text), ids,
                 cycle=[[a, b, lb, n] for (a, b, lb), n in zip(steps, notes)])

    def run(self):
        self.index_writes()
        self.index_reads()
        keys = set(self.reads)
        if self.final is not None:
            keys |= set(self.final)
        for key in sorted(keys, key=str):
            for reader, lst in self.reads.get(key, []):
                self.check_values(key, lst, reader)
            if self.final is not None:
                self.check_values(key, self.final.get(key, []), None)
            self.add_edges(key, self.version_order(key))
        self.check_final()
        self.cycles()
        return self.findings


def _first_cycle(g, comp, closing, rest):
    tries = 0
    for a in sorted(comp, key=str):
        for b, labels in sorted(g.succ.get(a, {}).items(), key=lambda x: str(x[0])):
            if b not in comp or closing not in labels:
                continue
            cyc = cycle_through(g, a, b, closing, rest, comp)
            if cyc:
                return cyc
            tries += 1
            if tries >= MAX_RW_TRIES:
                return None
    return None


def _readers(ids):
    names = ["final read" if i is None else "op %s" % i for i in ids[:3]]
    return ", ".join(names) + (" and %d more" % (len(ids) - 3) if len(ids) > 3 else "")


def _key(k):
    """Keys as they appear in JSON: ints stay ints, anything else is compared as a string."""
    return k if isinstance(k, int) else str(k)


def _val(v):
    return v if isinstance(v, int) else str(v)


def check_list_append(ops, final):
    """Findings for the list-append transactions `ops` ("txn" op records) given the final read
    `final` ({key: list of values}, None when the history has no final read)."""
    return _Analysis(ops, final).run()
