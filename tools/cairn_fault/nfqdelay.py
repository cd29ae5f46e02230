"""A packet delayer on an iptables NFQUEUE: the fallback for `slow` when the kernel has no
netem qdisc (sch_netem), as on this project's CI machine.

Owns: NfQueue (the nfnetlink_queue protocol over a raw AF_NETLINK socket: bind a queue, receive
packet ids, batch verdicts) and serve(queue, delay), the daemon loop: every packet the queue
receives is accepted `delay` seconds after it arrived, in arrival order (one constant delay keeps
the order, so one batch verdict releases every packet due). Run as
    python -m tools.cairn_fault.nfqdelay QUEUE DELAY_MS
inside the network namespace whose iptables rules send packets to QUEUE
(`-j NFQUEUE --queue-num QUEUE --queue-bypass`: if this process dies the packets pass
undelayed instead of being dropped). SIGTERM/SIGINT release every held packet and exit.

Only packet metadata is copied to user space (NFQNL_COPY_META): the payload never leaves the
kernel. Layouts are those of <linux/netfilter/nfnetlink_queue.h>; numbers in network order are
packed with "!".
"""

import collections
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_META = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR, NLMSG_DONE = 2, 3
NF_ACCEPT = 1
QUEUE_MAXLEN = 20000


class NfQueueError(OSError):
    pass


def _attr(atype, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, atype) + payload + b"\0" * ((4 - n % 4) % 4)


def _attrs(buf):
    """{type: payload} of a run of netlink attributes."""
    out, i = {}, 0
    while i + 4 <= len(buf):
        n, atype = struct.unpack_from("=HH", buf, i)
        if n < 4:
            break
        out[atype & 0x3FFF] = buf[i + 4:i + n]
        i += (n + 3) & ~3
    return out


class NfQueue:
    """One bound nfnetlink queue. Not thread-safe; one owner."""

    def __init__(self, queue):
        self.queue = queue
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
        self._config(_attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)))

    def _send(self, msg_type, payload, flags=NLM_F_REQUEST):
        self.seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.queue) + payload
        hdr = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                          flags, self.seq, 0)
        self.sock.send(hdr + body)
        return self.seq

    def _config(self, payload):
        seq = self._send(NFQNL_MSG_CONFIG, payload, NLM_F_REQUEST | NLM_F_ACK)
        while True:
            data = self.sock.recv(65536)
            for mtype, mseq, body in self._messages(data):
                if mtype == NLMSG_ERROR and mseq == seq:
                    (err,) = struct.unpack_from("=i", body, 0)
                    if err:
                        raise NfQueueError(-err, "nfqueue %d config: %s"
                                           % (self.queue, os.strerror(-err)))
                    return

    @staticmethod
    def _messages(data):
        i = 0
        while i + 16 <= len(data):
            n, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, i)
            if n < 16:
                break
            yield mtype, seq, data[i + 16:i + n]
            i += (n + 3) & ~3

    def packet_ids(self, data):
        """The packet ids in one datagram read from the socket."""
        ids = []
        for mtype, _seq, body in self._messages(data):
            if mtype == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                hdr = _attrs(body[4:]).get(NFQA_PACKET_HDR)
                if hdr is not None:
                    ids.append(struct.unpack_from("!I", hdr, 0)[0])
        return ids

    def accept_upto(self, packet_id):
        """Accepts every queued packet whose id is <= packet_id (a batch verdict)."""
        self._send(NFQNL_MSG_VERDICT_BATCH,
                   _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)))

    def close(self):
        try:
            self._send(NFQNL_MSG_CONFIG,
                       _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)))
        except OSError:
            pass
        self.sock.close()


def serve(queue, delay, ready=None):
    """Holds each packet of `queue` for `delay` seconds; returns on SIGTERM/SIGINT after
    accepting everything still held. `ready` (a callable) is called once bound."""
    q = NfQueue(queue)
    held = collections.deque()          # (due, packet id), in arrival order
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    if ready:
        ready()
    try:
        while not stopping:
            now = time.monotonic()
            last = None
            while held and held[0][0] <= now:
                last = held.popleft()[1]
            if last is not None:
                q.accept_upto(last)
            timeout = max(0.0, held[0][0] - now) if held else 0.5
            try:
                r, _, _ = select.select([q.sock], [], [], timeout)
            except InterruptedError:
                continue
            if not r:
                continue
            try:
                data = q.sock.recv(1 << 16)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:      # the kernel dropped some messages: the
                    continue                        # packets stay queued until a later batch
                raise
            due = time.monotonic() + delay
            for pid in q.packet_ids(data):
                held.append((due, pid))
    finally:
        if held:
            q.accept_upto(held[-1][1])
        q.close()


def main(argv):
    if len(argv) != 2:
        print("usage: python -m tools.cairn_fault.nfqdelay QUEUE DELAY_MS", file=sys.stderr)
        return 2
    queue, delay_ms = int(argv[0]), float(argv[1])
    try:
        serve(queue, delay_ms / 1000.0,
              ready=lambda: print("nfqdelay: queue %d, delay %gms" % (queue, delay_ms),
                                  flush=True))
    except NfQueueError as exc:
        print("nfqdelay: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
