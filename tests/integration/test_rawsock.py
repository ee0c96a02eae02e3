"""Raw spamc-protocol requests against tamisd: every error line, timeouts, size limits, reply forms
of each protocol version, PING/SKIP, Compress: zlib, SIGHUP reloads. Where the reference spamd is
installed, the same bytes are sent to it and the replies compared (status lines and headers
exactly; bodies where both engines must agree)."""
import os
import shutil
import signal
import socket
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from tamisd_harness import HAM, SPAM, Daemon, filter_request, make_rules_dir, request  # noqa: E402

REAL = os.path.exists("/usr/sbin/spamd") and os.environ.get("TAMIS_NO_SPAMD") is None
ARGS = ["--timeout-tcp", "2", "--timeout-child", "3"]
MAX = 100000


def split_reply(data):
    """(status line, header block, body) of a reply."""
    head, sep, body = data.partition(b"\r\n\r\n")
    return head, sep, body


class RawTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rules = make_rules_dir()
        cls.addClassCleanup(shutil.rmtree, cls.rules, True)
        cls.d = Daemon(cls.rules, ARGS + ["--max-size", str(MAX)])
        cls.addClassCleanup(cls.d.__exit__)
        cls.ref = None
        if REAL:
            cls.ref = Daemon(cls.rules, ARGS, real=True)
            cls.addClassCleanup(cls.ref.__exit__)

    def tearDown(self):
        self.assertEqual(request(self.d.port, b"PING SPAMC/1.5\r\n\r\n"), b"SPAMD/1.5 0 PONG\r\n")
        self.assertEqual(request(self.d.port, filter_request("CHECK", SPAM)),
                         b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")

    def same(self, data, want=None, shut=True):
        """Sends data to tamisd (and spamd): asserts equal replies, and equal to want if given."""
        got = request(self.d.port, data, shut=shut)
        if want is not None:
            self.assertEqual(got, want)
        if self.ref:
            self.assertEqual(got, request(self.ref.port, data, shut=shut), "differs from spamd")
        return got

    # ---- error lines ----------------------------------------------------------------------------

    def test_bad_request_line(self):
        self.same(b"HELLO\r\n\r\n", b"SPAMD/1.0 76 Bad header line: HELLO\r\n")
        self.same(b"CHECK SPAMD/1.5\r\n\r\n", b"SPAMD/1.0 76 Bad header line: CHECK SPAMD/1.5\r\n")
        self.same(b"", b"SPAMD/1.0 76 Bad header line: (closed before headers)\r\n")

    def test_unknown_verb(self):
        self.same(b"LEARN SPAMC/1.5\r\n\r\n", b"SPAMD/1.0 76 Bad header line: LEARN SPAMC/1.5\r\n")

    def test_bad_content_length(self):
        self.same(b"CHECK SPAMC/1.5\r\nContent-length: 12a\r\n\r\n" + SPAM,
                  b"SPAMD/1.0 76 Bad header line: (Content-Length contains non-numeric bytes)\r\n")

    def test_mismatched_content_length(self):
        self.same(filter_request("CHECK", SPAM, headers="Content-length: 10\r\n"),
                  # spamd reads whole lines until it has at least the announced length
                  b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 10 bytes, "
                  b"got 20 bytes)\r\n")
        self.same(filter_request("CHECK", SPAM, headers="Content-length: %d\r\n" % (len(SPAM) + 50)),
                  ("SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected %d bytes, "
                   "got %d bytes)\r\n" % (len(SPAM) + 50, len(SPAM))).encode())

    def test_bare_lf_headers(self):
        self.same(b"CHECK SPAMC/1.5\nContent-length: %d\n\n" % len(SPAM) + SPAM,
                  b"SPAMD/1.0 76 Bad header line: (header not in 'Name: value' format)\r\n")

    def test_eof_in_headers(self):
        self.same(b"CHECK SPAMC/1.5\r\nUser: x\r\n",
                  b"SPAMD/1.0 76 Bad header line: (EOF during headers)\r\n")

    def test_user_control_chars(self):
        self.same(b"CHECK SPAMC/1.5\r\nUser: a\x01b\r\n\r\n" + SPAM,
                  b"SPAMD/1.0 76 Bad header line: (User header contains control chars)\r\n")

    def test_too_many_headers(self):
        self.same(b"CHECK SPAMC/1.5\r\n" + b"X-Foo: bar\r\n" * 256 + b"\r\n" + SPAM,
                  b"SPAMD/1.0 76 Bad header line: (too many headers)\r\n")
        # 255 header lines plus the blank line are fine
        self.same(b"CHECK SPAMC/1.5\r\n" + b"X-Foo: bar\r\n" * 255 + b"\r\n" + SPAM,
                  b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")

    def test_case_sensitive_names(self):
        # "Content-Length" is not spamd's header: ignored, the body is read to EOF
        self.same(b"CHECK SPAMC/1.5\r\nContent-Length: 3\r\n\r\n" + SPAM,
                  b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")

    def test_compress(self):
        z = zlib.compress(SPAM, 3)
        hdr = b"CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: %d\r\n\r\n" % len(z)
        self.same(hdr + z, b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")
        self.same(hdr + z[:-8], b"SPAMD/1.0 69 Service Unavailable: zlib: failed to find end of "
                  b"zlib stream\n\r\n")
        self.same(hdr + b"garbage!" * 4, b"SPAMD/1.0 69 Service Unavailable: zlib: failed to find "
                  b"end of zlib stream\n\r\n")
        self.same(b"CHECK SPAMC/1.5\r\nCompress: zlib\r\n\r\n" + z,
                  b"SPAMD/1.0 69 Service Unavailable: Compress requires Content-length header\r\n")
        self.same(b"CHECK SPAMC/1.5\r\nCompress: gzip\r\n\r\n" + z,
                  b"SPAMD/1.0 76 Bad header line: (compression type not supported: gzip)\r\n")

    def test_tell_disabled(self):
        req = filter_request("TELL", SPAM, headers="Message-class: spam\r\nSet: local\r\n"
                             "Content-length: %d\r\n" % len(SPAM))
        self.same(req, b"SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled, set the "
                  b"--allow-tell switch.\r\n")

    def test_edge_cases_like_spamd(self):
        """Odd but legal requests: compared byte for byte with spamd when it is installed."""
        z = zlib.compress(b"Subject: a\n\nviagra\n\n\n")
        cases = [
            (b"CHECK SPAMC/1.5\r\n\r\n", b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\n"),
            (b"check SPAMC/1.5\r\n\r\n", b"SPAMD/1.0 76 Bad header line: check SPAMC/1.5\r\n"),
            (b"CHECK  SPAMC/1.5\r\n\r\n", b"SPAMD/1.0 76 Bad header line: CHECK  SPAMC/1.5\r\n"),
            # an empty or non-numeric version is 0: no header block
            (b"CHECK SPAMC/\r\n\r\nSubject: a\n\nviagra\n", None),
            (b"CHECK SPAMC/1.5\r\nContent-length:\t 5\r\n\r\nabcd\n", None),
            (b"CHECK SPAMC/1.5\r\n:\r\n\r\n", None),
            (b"CHECK SPAMC/1.5\r\nContent-length: 99999999999999999999999\r\n\r\nSubject: a\n\nx\n",
             b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected "
             b"99999999999999999999999 bytes, got 14 bytes)\r\n"),
            (b"SYMBOLS SPAMC/1.5\r\nContent-length: 5\r\n\r\nab\ncdefgh\nij\n",
             b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 5 bytes, got 10 "
             b"bytes)\r\n"),
            (b"SYMBOLS SPAMC/1.5\r\nCompress: zlib\r\nContent-length: %d\r\n\r\n" % len(z) + z
             + b"trailing", b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 6.0 / 5.0\r\n"
             b"\r\nTEST_WORD"),
            (b"TELL SPAMC/1.5\r\nSet: local\r\nRemove: local\r\n\r\n", None),
        ]
        for req, want in cases:
            with self.subTest(req=req[:40]):
                self.same(req, want)

    # ---- limits and timeouts ---------------------------------------------------------------------

    def test_oversized(self):
        big = SPAM + b"y" * (MAX + 10) + b"\n"
        got = request(self.d.port, filter_request("PROCESS", big))
        self.assertEqual(got, b"SPAMD/1.0 69 Service Unavailable: message too big (limit %d bytes)"
                         b"\r\n" % MAX)
        # exactly at the limit is scanned
        body = SPAM + b"y" * (MAX - len(SPAM) - 1) + b"\n"
        got = request(self.d.port, filter_request("CHECK", body))
        self.assertEqual(got, b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")

    def test_silent_client(self):
        t = time.time()
        self.same(b"", b"SPAMD/1.0 79 Timeout: (2 second socket timeout reading input from "
                  b"client)\r\n", shut=False)
        self.assertLess(time.time() - t, 12)

    def test_stalled_body(self):
        # while one client stalls, another is served at once
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        s.sendall(b"CHECK SPAMC/1.5\r\nContent-length: 1000\r\n\r\nSubject: x\r\n")
        t = time.time()
        self.assertEqual(request(self.d.port, filter_request("CHECK", HAM)),
                         b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.5 / 5.0\r\n\r\n")
        self.assertLess(time.time() - t, 2)
        out = b""
        while True:
            b = s.recv(1000)
            if not b:
                break
            out += b
        s.close()
        self.assertEqual(out, b"SPAMD/1.0 79 Timeout: (3 second timeout while trying to CHECK)\r\n")
        if self.ref:
            self.same(b"CHECK SPAMC/1.5\r\nContent-length: 1000\r\n\r\nSubject: x\r\n", out,
                      shut=False)

    # ---- reply forms -----------------------------------------------------------------------------

    def test_check_forms(self):
        for ver in ("1.0", "1.2", "1.3", "1.5"):
            if ver == "1.0":
                req = b"CHECK SPAMC/1.0\r\n" + SPAM
            else:
                req = filter_request("CHECK", SPAM, ver)
            self.same(req, b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")
        self.same(filter_request("CHECK", HAM), b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.5 / 5.0\r\n\r\n")

    def test_symbols_forms(self):
        self.same(filter_request("SYMBOLS", SPAM, "1.5"),
                  b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 6.0 / 5.0\r\n\r\nTEST_WORD")
        self.same(filter_request("SYMBOLS", SPAM, "1.2"),
                  b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\nTEST_WORD\r\n")
        self.same(b"SYMBOLS SPAMC/1.0\r\n" + HAM,
                  b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.5 / 5.0\r\n\r\nTEST_LOW\r\n")

    def test_report_forms(self):
        got = request(self.d.port, filter_request("REPORT_IFSPAM", HAM))
        self.assertEqual(got, b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: No ; 1.5 / 5.0\r\n\r\n")
        got = request(self.d.port, filter_request("REPORT_IFSPAM", SPAM))
        head, _, body = split_reply(got)
        self.assertEqual(head, b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: Yes ; 6.0 / 5.0"
                         % len(body))
        self.assertIn(b"TEST_WORD", body)
        self.assertTrue(body.endswith(b"\n\n"))
        got = request(self.d.port, filter_request("REPORT", SPAM, "1.2"))
        head, _, body = split_reply(got)
        self.assertEqual(head, b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0")
        self.assertIn(b"TEST_WORD", body)

    def test_process_forms(self):
        got = request(self.d.port, filter_request("PROCESS", SPAM, "1.5"))
        head, _, body = split_reply(got)
        self.assertEqual(head, b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: True ; 6.0 / 5.0"
                         % len(body))
        self.assertTrue(body.endswith(b"\n\nbuy viagra now\n"))
        self.assertIn(b"X-Spam-Flag: YES\n", body)
        got = request(self.d.port, filter_request("PROCESS", SPAM, "1.2"))
        head, _, body = split_reply(got)
        self.assertEqual(head, b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d" % len(body))
        got = request(self.d.port, b"PROCESS SPAMC/1.1\r\n\r\n" + SPAM)
        self.assertTrue(got.startswith(b"SPAMD/1.0 0 EX_OK\r\nX-Spam-"), got[:60])
        self.assertTrue(got.endswith(b"\n\nbuy viagra now\n"))
        got = request(self.d.port, filter_request("HEADERS", SPAM))
        head, _, body = split_reply(got)
        self.assertEqual(head, b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: True ; 6.0 / 5.0"
                         % len(body))
        self.assertTrue(body.endswith(b"\n\n"))
        self.assertNotIn(b"buy viagra", body)

    def test_ping_skip(self):
        self.same(b"PING SPAMC/1.5\r\n\r\n", b"SPAMD/1.5 0 PONG\r\n")
        self.same(b"PING SPAMC/1.2\r\n", b"SPAMD/1.5 0 PONG\r\n")
        self.same(b"SKIP SPAMC/1.5\r\n\r\n", b"")
        self.assertTrue(self.d.wait_log("skipped large message"))


class ReloadTest(unittest.TestCase):
    """SIGHUP: a broken rule file keeps the old rules (file:line logged); a good one is used."""

    def test_sighup(self):
        rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, rules, True)
        with Daemon(rules, ARGS) as d:
            check = filter_request("CHECK", SPAM)
            self.assertEqual(request(d.port, check), b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")
            extra = os.path.join(rules, "60_extra.cf")
            with open(extra, "w") as f:
                f.write("score TEST_WORD 2\nbody BROKEN_RULE /(unclosed/\n")
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log("keeping the old rules"), d.log())
            self.assertIn("60_extra.cf:2", d.log())
            self.assertEqual(request(d.port, check), b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")
            with open(extra, "w") as f:
                f.write("score TEST_WORD 7\n")
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log("reloaded rules"), d.log())
            self.assertEqual(request(d.port, check), b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\n\r\n")
            self.assertEqual(d.stop(), 0)


class AclTest(unittest.TestCase):
    def test_refused_peer_gets_nothing(self):
        rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, rules, True)
        with Daemon(rules, ["-i", "127.0.0.2", "-A", "10.0.0.0/8"], wait=False) as d:
            # the daemon listens on two addresses; PING from 127.0.0.1 is refused silently
            time.sleep(0.5)
            deadline = time.time() + 10
            got = None
            while time.time() < deadline:
                try:
                    got = request(d.port, b"PING SPAMC/1.5\r\n\r\n", timeout=3)
                    break
                except OSError:
                    time.sleep(0.1)
            self.assertEqual(got, b"")
            self.assertTrue(d.wait_log("unauthorized connection from [127.0.0.1]"), d.log())
        with Daemon(rules, ["-A", "127.0.0.0/8,::1"]) as d:
            self.assertEqual(request(d.port, b"PING SPAMC/1.5\r\n\r\n"), b"SPAMD/1.5 0 PONG\r\n")


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Ipv6Test(unittest.TestCase):
    @unittest.skipUnless(have_ipv6(), "no IPv6 loopback")
    def test_ipv6_listener(self):
        rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, rules, True)
        with Daemon(rules, ["-i", "[::1]"]) as d:
            s = socket.create_connection(("::1", d.port), timeout=10)
            s.sendall(filter_request("CHECK", SPAM))
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                b = s.recv(1000)
                if not b:
                    break
                out += b
            s.close()
            self.assertEqual(out, b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")


class ShutdownTest(unittest.TestCase):
    def test_sigterm_finishes_inflight(self):
        rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, rules, True)
        d = Daemon(rules, ARGS)
        try:
            # a request whose body is still arriving when SIGTERM comes is answered once complete
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.sendall(b"CHECK SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(SPAM))
            time.sleep(0.3)
            d.signal(signal.SIGTERM)
            time.sleep(0.3)
            s.sendall(SPAM)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                b = s.recv(1000)
                if not b:
                    break
                out += b
            s.close()
            self.assertEqual(d.proc.wait(10), 0)
        finally:
            d.__exit__()
        self.assertEqual(out, b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
