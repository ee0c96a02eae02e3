"""tamisd's milter listener driven byte by byte, as Postfix's milter8 client does (spec-postfix
§3.2): negotiation, replies to every event, the X-Spam-* header changes at end-of-message (forged
ones deleted by per-name index), the 550 reply at the reject score, ABORT and several messages per
connection, and a malformed or oversized packet closing the connection. No Postfix or root needed."""
import os
import shutil
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "postfix_lib"))
from common import BIG_SPAM_BODY, HAM_BODY, SPAM_BODY, Daemon, free_port, rules_dir  # noqa: E402

SMFIF_ADDHDRS, SMFIF_CHGHDRS, SMFIF_QUARANTINE = 0x01, 0x10, 0x20
NR_ALL = 0x80 | 0xFF000  # SMFIP_NR_HDR and SMFIP_NR_CONN..NR_BODY (and NR_UNKN)
NR_WANTED = 0x80 | 0xDF000  # all of them but NR_UNKN (we ask for no UNKNOWN events at all)


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


class Milter:
    def __init__(self, port, actions=0x1FF, protocol=0x1FFFFF & ~NR_ALL):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.s.sendall(pkt(b"O", struct.pack(">III", 6, actions, protocol)))
        cmd, data = self.read()
        assert cmd == b"O", cmd
        self.version, self.actions, self.protocol = struct.unpack(">III", data[:12])

    def read(self):
        head = b""
        while len(head) < 4:
            b = self.s.recv(4 - len(head))
            if not b:
                return None, None
            head += b
        n = struct.unpack(">I", head)[0]
        body = b""
        while len(body) < n:
            b = self.s.recv(n - len(body))
            if not b:
                return None, None
            body += b
        return body[:1], body[1:]

    def event(self, cmd, data=b""):
        """Sends one event and returns the reply packets up to the final one."""
        self.s.sendall(pkt(cmd, data))
        out = []
        while True:
            c, d = self.read()
            assert c is not None, "connection closed"
            out.append((c, d))
            if c in (b"c", b"a", b"r", b"t", b"y", b"d", b"4", b"f"):
                return out

    def message(self, body, headers=(("From", "a@example.com"), ("Subject", "x")), qid="Q1"):
        self.s.sendall(pkt(b"D", b"Mi\0" + qid.encode() + b"\0"))
        assert self.event(b"M", b"<a@example.com>\0") == [(b"c", b"")]
        assert self.event(b"R", b"<b@test.invalid>\0") == [(b"c", b"")]
        assert self.event(b"T") == [(b"c", b"")]
        for name, value in headers:
            assert self.event(b"L", name.encode() + b"\0" + value.encode() + b"\0") == [(b"c", b"")]
        assert self.event(b"N") == [(b"c", b"")]
        assert self.event(b"B", body.encode() + b"\r\n") == [(b"c", b"")]
        self.s.sendall(pkt(b"D", b"Ei\0" + qid.encode() + b"\0"))
        return self.event(b"E")

    def close(self):
        self.s.close()


class MilterProtoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rules = rules_dir()
        cls.addClassCleanup(shutil.rmtree, cls.rules, True)
        cls.port = free_port()
        cls.d = Daemon(cls.rules, ["--milter", "127.0.0.1:%d" % cls.port, "--reject-score", "15"])
        cls.addClassCleanup(cls.d.__exit__)

    def connect(self, **kw):
        m = Milter(self.port, **kw)
        self.addCleanup(m.close)
        self.assertEqual(m.event(b"C", b"mx.example\0" b"4" + struct.pack(">H", 2525) +
                                 b"192.0.2.7\0"), [(b"c", b"")])
        self.assertEqual(m.event(b"H", b"client.example\0"), [(b"c", b"")])
        return m

    def test_negotiation(self):
        m = Milter(self.port)
        self.addCleanup(m.close)
        self.assertEqual(m.version, 6)
        self.assertEqual(m.actions, SMFIF_ADDHDRS | SMFIF_CHGHDRS)
        m2 = Milter(self.port, actions=SMFIF_ADDHDRS)
        self.addCleanup(m2.close)
        self.assertEqual(m2.actions, SMFIF_ADDHDRS)  # never more than offered

    def test_no_reply_events(self):
        # As Postfix offers them: every event but end-of-message goes unanswered.
        m = Milter(self.port, protocol=0x1FFFFF)
        self.addCleanup(m.close)
        self.assertEqual(m.protocol & NR_ALL, NR_WANTED)
        m.s.sendall(pkt(b"C", b"mx.example\0" b"4" + struct.pack(">H", 25) + b"192.0.2.7\0") +
                    pkt(b"H", b"client.example\0") + pkt(b"M", b"<a@example.com>\0") +
                    pkt(b"R", b"<b@test.invalid>\0") + pkt(b"T") + pkt(b"L", b"Subject\0x\0") +
                    pkt(b"N") + pkt(b"B", SPAM_BODY.encode() + b"\r\n"))
        out = m.event(b"E")
        self.assertEqual(out[-1], (b"c", b""))
        self.assertIn(b"X-Spam-Flag\0YES\0", [d for c, d in out if c == b"h"])

    def test_ham_spam_reject_and_reuse(self):
        m = self.connect()
        out = m.message(HAM_BODY)
        self.assertEqual(out[-1], (b"c", b""))
        added = {d.split(b"\0")[0]: d.split(b"\0")[1] for c, d in out if c == b"h"}
        self.assertTrue(added[b"X-Spam-Status"].startswith(b"No, score=0.0"), out)
        out = m.message(SPAM_BODY, qid="Q2")
        added = {d.split(b"\0")[0]: d.split(b"\0")[1] for c, d in out if c == b"h"}
        self.assertEqual(added[b"X-Spam-Flag"], b"YES")
        self.assertIn((b"m", struct.pack(">I", 1) + b"Subject\0[SPAM] x\0"), out)
        out = m.message(BIG_SPAM_BODY, qid="Q3")
        self.assertEqual(out, [(b"y", b"550 5.7.1 Message rejected as spam (score 20.0)\0")])
        self.assertTrue(self.d.wait_log("id=Q3"))

    def test_forged_headers_deleted_last_first(self):
        m = self.connect()
        out = m.message(HAM_BODY, headers=(("X-Spam-Flag", "YES"), ("Subject", "x"),
                                           ("X-Spam-Flag", "YES")))
        dels = [d for c, d in out if c == b"m"]
        self.assertEqual(dels, [struct.pack(">I", 2) + b"X-Spam-Flag\0\0",
                                struct.pack(">I", 1) + b"X-Spam-Flag\0\0"])

    def test_abort_then_next_message(self):
        m = self.connect()
        m.s.sendall(pkt(b"D", b"Mi\0Q4\0"))
        self.assertEqual(m.event(b"M", b"<a@example.com>\0"), [(b"c", b"")])
        self.assertEqual(m.event(b"L", b"Subject\0grobnitz\0"), [(b"c", b"")])
        m.s.sendall(pkt(b"A"))  # no reply; the half message is forgotten
        out = m.message(HAM_BODY, qid="Q5")
        self.assertEqual(out[-1], (b"c", b""))

    def test_bad_packets_close(self):
        for bad in (pkt(b"Z"), pkt(b"L", b"no terminator"), struct.pack(">I", 0),
                    struct.pack(">I", 10 * 1024 * 1024) + b"B"):
            m = self.connect()
            m.s.sendall(bad)
            self.assertEqual(m.read(), (None, None), bad[:8])


if __name__ == "__main__":
    unittest.main(verbosity=2)
