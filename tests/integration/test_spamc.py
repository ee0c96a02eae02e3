"""The real Debian spamc against a running tamisd: every client mode, exit codes and outputs checked
exactly, and compared with the reference spamd running the same rules when it is installed."""
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from tamisd_harness import (HAM, SPAM, TAMISD, Daemon, free_port, make_rules_dir,  # noqa: E402
                            request, spamc)

TAMIS_VERSION = b"0.1.0"
REAL = os.path.exists("/usr/sbin/spamd") and os.environ.get("TAMIS_NO_SPAMD") is None


class SpamcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rules = make_rules_dir()
        cls.addClassCleanup(shutil.rmtree, cls.rules, True)
        cls.d = Daemon(cls.rules)
        cls.addClassCleanup(cls.d.__exit__)
        cls.ref = None
        if REAL:
            cls.ref = Daemon(cls.rules, real=True)
            cls.addClassCleanup(cls.ref.__exit__)

    def tearDown(self):
        # whatever the test did, the daemon still serves the next client
        self.assertEqual(request(self.d.port, b"PING SPAMC/1.5\r\n\r\n"), b"SPAMD/1.5 0 PONG\r\n")

    def run_both(self, args, msg):
        """spamc against tamisd, and the same against spamd when present: same status and output."""
        got = spamc(["-p", str(self.d.port)] + args, msg)
        if self.ref:
            want = spamc(["-p", str(self.ref.port)] + args, msg)
            self.assertEqual(got, want, "tamisd and spamd differ for spamc %s" % " ".join(args))
        return got

    def test_check(self):
        self.assertEqual(self.run_both(["-c"], SPAM), (1, b"6.0/5.0\n"))
        self.assertEqual(self.run_both(["-c"], HAM), (0, b"1.5/5.0\n"))

    def test_symbols(self):
        self.assertEqual(self.run_both(["-y"], SPAM), (0, b"TEST_WORD"))
        self.assertEqual(self.run_both(["-y"], HAM), (0, b"TEST_LOW"))

    def test_report(self):
        st, out = spamc(["-p", str(self.d.port), "-R"], SPAM)
        self.assertEqual(st, 0)
        self.assertTrue(out.startswith(b"6.0/5.0\n"), out[:40])
        self.assertIn(b"TEST_WORD", out)
        self.assertTrue(out.endswith(b"\n\n"))
        st, out = spamc(["-p", str(self.d.port), "-R"], HAM)
        self.assertEqual(st, 0)
        self.assertTrue(out.startswith(b"1.5/5.0\n"), out[:40])
        self.assertIn(b"TEST_LOW", out)

    def test_report_ifspam(self):
        # spamd answers "Spam: Yes/No" here, which libspamc does not take as spam: no score line
        st, out = spamc(["-p", str(self.d.port), "-r"], SPAM)
        self.assertEqual(st, 0)
        self.assertIn(b"TEST_WORD", out)
        self.assertFalse(out.startswith(b"6.0/5.0"))
        self.assertEqual(self.run_both(["-r"], HAM), (0, b""))

    def test_process(self):
        st, out = spamc(["-p", str(self.d.port)], SPAM)
        self.assertEqual(st, 0)
        self.assertIn(b"X-Spam-Flag: YES\n", out)
        self.assertTrue(out.endswith(b"\n\nbuy viagra now\n"), out[-40:])
        st, out = spamc(["-p", str(self.d.port)], HAM)
        self.assertEqual(st, 0)
        self.assertNotIn(b"X-Spam-Flag: YES", out)
        self.assertIn(b"X-Spam-Status: No, score=1.5 required=5.0 tests=TEST_LOW", out)

    def test_exitcode(self):
        st, out = spamc(["-p", str(self.d.port), "-E"], SPAM)
        self.assertEqual(st, 1)
        self.assertIn(b"X-Spam-Flag: YES", out)
        st, out = spamc(["-p", str(self.d.port), "-E"], HAM)
        self.assertEqual(st, 0)
        self.assertIn(b"Subject: hello\n", out)

    def test_ping(self):
        self.assertEqual(self.run_both(["-K"], b""), (0, b"SPAMD/1.5 0\n"))

    def test_headers(self):
        st, out = spamc(["-p", str(self.d.port), "--headers"], SPAM)
        self.assertEqual(st, 0)
        self.assertIn(b"X-Spam-Flag: YES\n", out)
        self.assertIn(b"Subject: offer\n", out)
        self.assertTrue(out.endswith(b"\n\nbuy viagra now\n"), out[-40:])

    def test_user(self):
        self.assertEqual(spamc(["-p", str(self.d.port), "-u", "alice", "-c"], SPAM),
                         (1, b"6.0/5.0\n"))
        self.assertTrue(self.d.wait_log("user=alice"), self.d.log()[-2000:])
        # a control character in User is a protocol error: fallback, or 74 with -x
        self.assertEqual(spamc(["-p", str(self.d.port), "-u", "a\tb", "-c"], SPAM), (0, b"0/0\n"))
        self.assertEqual(spamc(["-p", str(self.d.port), "-x", "-u", "a\tb", "-c"], SPAM),
                         (74, b"0/0\n"))

    def test_tell_disabled(self):
        # without --allow-tell spamd answers 69 and spamc reports an I/O error
        self.assertEqual(self.run_both(["-L", "spam"], SPAM), (74, b""))

    def test_tell_enabled(self):
        with Daemon(self.rules, ["--allow-tell"]) as d:
            for kind in ("spam", "ham", "forget"):
                self.assertEqual(spamc(["-p", str(d.port), "-L", kind], SPAM),
                                 (0, b"Message was already un/learned\n"))
            self.assertEqual(spamc(["-p", str(d.port), "-C", "report"], SPAM),
                             (0, b"Unable to report/revoke message\n"))

    def test_failover(self):
        # the first host refuses, the second serves
        self.assertEqual(spamc(["-d", "127.0.0.2,127.0.0.1", "-p", str(self.d.port), "-c"], SPAM),
                         (1, b"6.0/5.0\n"))
        # -x truncates the host list to its first entry
        st, out = spamc(["-x", "-d", "127.0.0.2,127.0.0.1", "-p", str(self.d.port), "-c"], SPAM)
        self.assertEqual((st, out), (69, b"0/0\n"))

    def test_safe_fallback(self):
        dead = free_port()
        self.assertEqual(spamc(["-p", str(dead)], SPAM), (0, SPAM))
        self.assertEqual(spamc(["-p", str(dead), "-c"], SPAM), (0, b"0/0\n"))
        self.assertEqual(spamc(["-p", str(dead), "-y"], SPAM), (0, b"\n"))
        self.assertEqual(spamc(["-x", "-p", str(dead)], SPAM), (69, b""))
        self.assertEqual(spamc(["-x", "-p", str(dead), "-c"], SPAM), (69, b"0/0\n"))

    def test_unix_socket(self):
        path = os.path.join(self.rules, "tamisd.sock")
        with Daemon(self.rules, ["--socketpath", path], wait=False) as d:
            for _ in range(100):
                if os.path.exists(path) or d.proc.poll() is not None:
                    break
                time.sleep(0.1)
            self.assertEqual(spamc(["-U", path, "-c"], SPAM), (1, b"6.0/5.0\n"))

    def test_oversized_for_daemon(self):
        # a message above --max-size is refused with 69; spamc passes it through unscanned
        with Daemon(self.rules, ["--max-size", "1000"]) as d:
            big = SPAM + b"x" * 5000 + b"\n"
            self.assertEqual(spamc(["-p", str(d.port)], big), (0, big))
            self.assertEqual(spamc(["-p", str(d.port), "-c"], big), (0, b"0/0\n"))
            self.assertEqual(spamc(["-p", str(d.port), "-c"], SPAM), (1, b"6.0/5.0\n"))


class CommandLineTest(unittest.TestCase):
    """tamisd's one-shot modes and its exit statuses."""

    def run_tamisd(self, args, stdin=b""):
        # -L: no network tests (no DNS query to /etc/resolv.conf's servers)
        p = subprocess.run([TAMISD, "-L"] + args, input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def test_modes(self):
        rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, rules, True)
        st, out, err = self.run_tamisd(["-C", rules, "--test"], SPAM)
        self.assertEqual(st, 0, err)
        self.assertIn(b"X-Spam-Flag: YES\n", out)
        self.assertTrue(out.endswith(b"\n\nbuy viagra now\n"))
        st, out, err = self.run_tamisd(["-C", rules, "--lint"])
        self.assertEqual(st, 0, err)
        self.assertIn(b"0 errors", err)
        st, out, err = self.run_tamisd(["-C", os.path.join(rules, "missing"), "--lint"])
        self.assertEqual(st, 1, err)
        self.assertEqual(self.run_tamisd(["-V"])[:2], (0, b"tamisd version %s\n" % TAMIS_VERSION))
        self.assertEqual(self.run_tamisd(["--no-such-option"])[0], 64)
        self.assertEqual(self.run_tamisd(["-p", "0"])[0], 64)
        self.assertEqual(self.run_tamisd(["-A", "not-an-ip", "-C", rules])[0], 64)
        # a port already taken: cannot listen
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            st = self.run_tamisd(["-C", rules, "-i", "127.0.0.1:%d" % s.getsockname()[1]])[0]
        self.assertEqual(st, 69)


if __name__ == "__main__":
    unittest.main(verbosity=2)
