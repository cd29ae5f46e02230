"""A labelled dependency graph and the cycle search the anomaly checker needs (no networkx).

Owns: Graph (nodes are operation ids; an edge a -> b carries a set of labels such as "ww",
"wr", "rw", each with a note saying why), strongly connected components (Tarjan's algorithm,
iterative so that long histories do not hit Python's recursion limit) and cycle extraction by
breadth-first search inside one component, restricted to edges with chosen labels.
"""

from collections import deque


class Graph:
    def __init__(self):
        self.succ = {}      # node -> {node: {label: note}}

    def add_node(self, a):
        self.succ.setdefault(a, {})

    def add_edge(self, a, b, label, note=""):
        self.add_node(b)
        labels = self.succ.setdefault(a, {}).setdefault(b, {})
        labels.setdefault(label, note)

    def nodes(self):
        return list(self.succ)

    def labels(self, a, b):
        return self.succ.get(a, {}).get(b, {})

    def edges(self, allowed=None):
        """(a, b, labels) for every edge having a label in `allowed` (all when None)."""
        for a, outs in self.succ.items():
            for b, labels in outs.items():
                if allowed is None or any(lb in allowed for lb in labels):
                    yield a, b, labels

    def neighbours(self, a, allowed=None, within=None):
        for b, labels in self.succ.get(a, {}).items():
            if within is not None and b not in within:
                continue
            if allowed is None or any(lb in allowed for lb in labels):
                yield b


def tarjan_scc(graph, allowed=None):
    """Strongly connected components of the subgraph of edges labelled in `allowed`, as a
    list of sets, only those with more than one node or with a self-loop."""
    index = {}
    low = {}
    on_stack = set()
    stack = []
    comps = []
    counter = 0
    for root in graph.nodes():
        if root in index:
            continue
        # iterative DFS: frames of (node, iterator over its successors)
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(list(graph.neighbours(root, allowed))))]
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(list(graph.neighbours(w, allowed)))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in set(graph.neighbours(v, allowed)):
                    comps.append(comp)
    return comps


def find_path(graph, src, dst, allowed, within):
    """Shortest path src -> ... -> dst (list of nodes, both ends included) using only edges
    labelled in `allowed` and nodes in `within`; None if there is none. src == dst gives
    [src] (the empty path)."""
    if src == dst:
        return [src]
    prev = {src: None}
    queue = deque([src])
    while queue:
        a = queue.popleft()
        for b in graph.neighbours(a, allowed, within):
            if b in prev:
                continue
            prev[b] = a
            if b == dst:
                path = [b]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1]
            queue.append(b)
    return None


def cycle_through(graph, a, b, closing, rest, within):
    """A cycle a -(closing)-> b -(rest)*-> a, or None. Returned as a list of steps
    (from, to, label) in order."""
    if closing not in graph.labels(a, b):
        return None
    path = find_path(graph, b, a, rest, within)
    if path is None:
        return None
    steps = [(a, b, closing)]
    for x, y in zip(path, path[1:]):
        labels = graph.labels(x, y)
        steps.append((x, y, next(lb for lb in sorted(labels) if lb in rest)))
    return steps
