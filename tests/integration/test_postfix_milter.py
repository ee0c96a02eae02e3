"""tamisd as a before-queue milter of a real Postfix (smtpd_milters): ham and spam are delivered
with X-Spam-* headers and the right verdicts, high-scoring spam is rejected during SMTP with the
5xx in the client's transcript, and with tamisd down mail waits in the queue (tempfail) and is
delivered after tamisd is back and the queue is flushed."""
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "postfix_lib"))
import pftest  # noqa: E402
from common import (BIG_SPAM_BODY, HAM_BODY, REJECT_SCORE, SPAM_BODY, Daemon,  # noqa: E402
                    free_port, header, rules_dir)


@unittest.skipUnless(pftest.available(), "needs root, postfix and swaks")
class MilterTest(unittest.TestCase):
    def setUp(self):
        self.rules = rules_dir()
        self.addCleanup(shutil.rmtree, self.rules, True)
        self.mport = free_port()
        self.args = ["--milter", "127.0.0.1:%d" % self.mport, "--reject-score", REJECT_SCORE,
                     "--max-size", "100000"]
        self.d = Daemon(self.rules, self.args)
        self.addCleanup(lambda: self.d.__exit__())
        main = ("smtpd_milters = inet:127.0.0.1:%d\nnon_smtpd_milters = $smtpd_milters\n"
                "milter_default_action = tempfail\nmilter_protocol = 6\n"
                "milter_content_timeout = 60s\n" % self.mport)
        self.pf = pftest.Postfix(free_port(), main_extra=main)
        self.addCleanup(self.pf.stop)
        self.pf.start()

    def diag(self):
        try:
            dlog = self.d.log()[-3000:]
        except OSError:  # a stopped daemon's log is gone
            dlog = ""
        return "\n--- tamisd log ---\n%s\n--- maillog ---\n%s" % (dlog, self.pf.log()[-3000:])

    def test_ham_spam_reject(self):
        st, tr = self.pf.swaks("ham@test.invalid", HAM_BODY, subject="ham")
        self.assertEqual(st, 0, tr + self.diag())
        st, tr = self.pf.swaks("spam@test.invalid", SPAM_BODY, subject="spam")
        self.assertEqual(st, 0, tr + self.diag())
        st, tr = self.pf.swaks("big@test.invalid", BIG_SPAM_BODY, subject="big")
        self.assertNotEqual(st, 0)
        self.assertIn("550 5.7.1 Message rejected as spam (score 20.0)", tr, tr + self.diag())
        got = self.pf.wait_delivered(2)
        self.assertEqual(len(got), 2, self.diag())
        by_to = {header(m, "To"): m for m in got}
        ham, spam = by_to["ham@test.invalid"], by_to["spam@test.invalid"]
        self.assertTrue(header(ham, "X-Spam-Status").startswith("No, score=0.0"),
                        ham.decode(errors="replace"))
        self.assertEqual(header(ham, "X-Spam-Flag"), None)
        self.assertTrue(header(spam, "X-Spam-Status").startswith("Yes, score=6.0"),
                        spam.decode(errors="replace"))
        self.assertIn("PF_SPAMWORD", header(spam, "X-Spam-Status"))
        self.assertEqual(header(spam, "X-Spam-Flag"), "YES")
        self.assertEqual(header(spam, "Subject"), "[SPAM] spam")
        self.assertEqual(header(ham, "Subject"), "ham")
        # the queue id reached Tamis's log line
        qid = re.findall(r"(\w+): to=<[^>]*>.*status=sent", self.pf.log())
        self.assertTrue(qid and all(("id=" + q) in self.d.log() for q in qid), self.diag())

    def test_forged_headers_replaced(self):
        st, tr = self.pf.swaks("ham@test.invalid", HAM_BODY, subject="forged",
                               extra=["--add-header", "X-Spam-Flag: YES",
                                      "--add-header", "X-Spam-Status: Yes, score=99"])
        self.assertEqual(st, 0, tr + self.diag())
        got = self.pf.wait_delivered(1)
        self.assertEqual(len(got), 1, self.diag())
        self.assertEqual(got[0].count(b"X-Spam-Status:"), 1, got[0])
        self.assertNotIn(b"X-Spam-Flag", got[0])

    def test_too_big_passes_unscanned(self):
        body = "word " * 30000  # 150 kB > --max-size 100000
        st, tr = self.pf.swaks("big@test.invalid", body + " grobnitz", subject="large")
        self.assertEqual(st, 0, tr[-500:] + self.diag())
        got = self.pf.wait_delivered(1)
        self.assertEqual(len(got), 1, self.diag())
        self.assertIsNone(header(got[0], "X-Spam-Status"))

    def test_tamisd_down_defers_then_delivers(self):
        self.d.__exit__()  # stops it and checks its log for sanitizer reports
        st, tr = self.pf.swaks("ham@test.invalid", HAM_BODY, subject="while down")
        self.assertNotEqual(st, 0)
        self.assertIn("451 4.7.1", tr, tr + self.diag())
        self.assertEqual(self.pf.delivered(), [])
        # Through sendmail(1) (non_smtpd_milters) the message is queued and deferred, not bounced.
        r = pftest.run(["/usr/sbin/sendmail", "-C", self.pf.etc, "-f", "sender@example.com",
                        "queued@test.invalid"],
                       input=b"Subject: queued\nTo: queued@test.invalid\n\n" +
                       SPAM_BODY.encode() + b"\n")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertTrue(self.wait_queue_has("queued@test.invalid"), self.pf.queue() + self.diag())
        self.assertEqual(self.pf.delivered(), [])
        self.d = Daemon(self.rules, self.args)
        self.pf.flush()
        got = self.pf.wait_delivered(1, timeout=60)
        self.assertEqual(len(got), 1, self.pf.queue() + self.diag())
        self.assertTrue(header(got[0], "X-Spam-Status").startswith("Yes, score=6.0"), got[0])

    def test_quarantine(self):
        self.d.__exit__()  # stops it and checks its log for sanitizer reports
        self.d = Daemon(self.rules, self.args + ["--quarantine-score", "5"])
        st, tr = self.pf.swaks("spam@test.invalid", SPAM_BODY, subject="hold me")
        self.assertEqual(st, 0, tr + self.diag())
        end = time.time() + 20
        while time.time() < end and "!" not in self.pf.queue():
            time.sleep(0.3)
        self.assertRegex(self.pf.queue(), r"\w+!\s", self.diag())  # '!' marks the hold queue
        self.assertIn("milter-hold: END-OF-MESSAGE", self.pf.log(), self.diag())
        self.assertEqual(self.pf.delivered(), [])

    def test_unix_socket(self):
        sockdir = tempfile.mkdtemp(prefix="tamis-milter-")
        self.addCleanup(shutil.rmtree, sockdir, True)
        os.chmod(sockdir, 0o755)
        path = os.path.join(sockdir, "milter.sock")
        self.d.__exit__()  # stops it and checks its log for sanitizer reports
        self.d = Daemon(self.rules, ["--milter", path])
        r = pftest.run(["/usr/sbin/postconf", "-c", self.pf.etc, "-e",
                        "smtpd_milters = unix:" + path])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.pf.cmd("reload")
        time.sleep(1.5)  # the running smtpd processes finish; new ones read the new setting
        st, tr = self.pf.swaks("spam@test.invalid", SPAM_BODY, subject="spam")
        self.assertEqual(st, 0, tr + self.diag())
        got = self.pf.wait_delivered(1)
        self.assertEqual(len(got), 1, self.diag())
        self.assertTrue(header(got[0], "X-Spam-Status").startswith("Yes, score=6.0"), got[0])

    def wait_queue_has(self, text, timeout=30.0):
        end = time.time() + timeout
        while time.time() < end:
            if text in self.pf.queue() and "milter" in self.pf.log():
                return True
            time.sleep(0.5)
        return False


if __name__ == "__main__":
    unittest.main(verbosity=2)
