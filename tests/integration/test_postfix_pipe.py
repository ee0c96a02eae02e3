"""The spamc pipe recipe (docs/postfix.md, method 1) with a real Postfix and the stock spamc:
ham and spam are delivered with X-Spam-* headers; with `spamc -x -X` and tamisd down, mail is
deferred (exit 75), not bounced, and is delivered after tamisd is back and the queue is flushed.

sendmail(1), run by the pipe as user nobody, may use this test's config directory only if the
default /etc/postfix/main.cf lists it in alternate_config_directories: the test adds that line
and restores the file afterwards (spec-postfix §5.2)."""
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "postfix_lib"))
import pftest  # noqa: E402
from common import HAM_BODY, SPAM_BODY, Daemon, free_port, header, rules_dir  # noqa: E402

SPAMC = "/usr/bin/spamc"
SYSTEM_MAIN_CF = "/etc/postfix/main.cf"
MASTER = """spamassassin unix -     n       n       -       10      pipe
    user=nobody null_sender=
    argv={spamc} -p {port} -x -X -e /usr/sbin/sendmail -G -i -f ${{sender}} -- ${{recipient}}
"""


@unittest.skipUnless(pftest.available() and os.path.exists(SPAMC), "needs root, postfix, swaks, spamc")
class PipeTest(unittest.TestCase):
    def setUp(self):
        self.rules = rules_dir()
        self.addCleanup(shutil.rmtree, self.rules, True)
        self.port = free_port()
        self.d = Daemon(self.rules, port=self.port)
        self.addCleanup(lambda: self.d.__exit__())
        self.pf = pftest.Postfix(free_port(), smtpd_opts="    -o content_filter=spamassassin:dummy\n",
                                 master_extra=MASTER.format(spamc=SPAMC, port=self.port))
        self.addCleanup(self.pf.stop)
        self.allow_config_dir(self.pf.etc)
        self.pf.start()

    def allow_config_dir(self, etc):
        old = None
        if os.path.exists(SYSTEM_MAIN_CF):
            with open(SYSTEM_MAIN_CF) as f:
                old = f.read()

        def restore():
            if old is None:
                os.unlink(SYSTEM_MAIN_CF)
            else:
                with open(SYSTEM_MAIN_CF, "w") as f:
                    f.write(old)

        self.addCleanup(restore)
        with open(SYSTEM_MAIN_CF, "w") as f:
            f.write((old or "compatibility_level = 3.6\n") +
                    "\nalternate_config_directories = %s\n" % etc)

    def diag(self):
        try:
            dlog = self.d.log()[-3000:]
        except OSError:  # a stopped daemon's log is gone
            dlog = ""
        return "\n--- tamisd log ---\n%s\n--- maillog ---\n%s" % (dlog, self.pf.log()[-4000:])

    def test_ham_and_spam_tagged(self):
        for to, body in (("ham@test.invalid", HAM_BODY), ("spam@test.invalid", SPAM_BODY)):
            st, tr = self.pf.swaks(to, body, subject=to)
            self.assertEqual(st, 0, tr + self.diag())
        got = self.pf.wait_delivered(2)
        self.assertEqual(len(got), 2, self.diag())
        by_to = {header(m, "To"): m for m in got}
        ham, spam = by_to["ham@test.invalid"], by_to["spam@test.invalid"]
        self.assertTrue(header(ham, "X-Spam-Status").startswith("No, score=0.0"), ham)
        self.assertTrue(header(spam, "X-Spam-Status").startswith("Yes, score=6.0"), spam)
        self.assertEqual(header(spam, "X-Spam-Flag"), "YES")

    def test_too_big_passes_unscanned(self):
        # over spamc's own limit (-s, 500 KB by default): spamc passes it on without asking tamisd
        body = "word " * 120000 + " zorbulon"
        st, tr = self.pf.swaks("big@test.invalid", body, subject="large")
        self.assertEqual(st, 0, tr[-500:])
        got = self.pf.wait_delivered(1)
        self.assertEqual(len(got), 1, self.diag())
        self.assertIsNone(header(got[0], "X-Spam-Status"))

    def test_tamisd_down_defers_then_delivers(self):
        self.d.__exit__()  # stops it and checks its log for sanitizer reports
        st, tr = self.pf.swaks("spam@test.invalid", SPAM_BODY, subject="while down")
        self.assertEqual(st, 0, tr)
        end = time.time() + 30
        while time.time() < end and "status=deferred" not in self.pf.log():
            time.sleep(0.3)
        self.assertIn("status=deferred", self.pf.log(), self.diag())
        self.assertNotIn("status=bounced", self.pf.log())
        self.assertEqual(self.pf.delivered(), [])
        self.d = Daemon(self.rules, port=self.port)
        self.pf.flush()
        got = self.pf.wait_delivered(1, timeout=60)
        self.assertEqual(len(got), 1, self.pf.queue() + self.diag())
        self.assertTrue(header(got[0], "X-Spam-Status").startswith("Yes, score=6.0"), got[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
