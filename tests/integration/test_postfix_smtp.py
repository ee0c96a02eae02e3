"""tamisd as Postfix's after-queue SMTP content filter (content_filter = scan:[127.0.0.1]:N,
re-injection into a second smtpd): ham and spam are delivered with X-Spam-* headers, several
messages go through one connection, and with tamisd down mail stays deferred in the queue and is
delivered after tamisd is back and the queue is flushed. A raw session checks PIPELINING,
RSET, per-recipient replies from the relay and the size limit."""
import os
import re
import shutil
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "postfix_lib"))
import pftest  # noqa: E402
from common import (BIG_SPAM_BODY, HAM_BODY, REJECT_SCORE, SPAM_BODY, Daemon,  # noqa: E402
                    free_port, header, rules_dir)

MASTER = """scan      unix  -       -       n       -       10      smtp
    -o smtp_send_xforward_command=yes
    -o disable_mime_output_conversion=yes
    -o smtp_generic_maps=
127.0.0.1:{relay} inet n  -       n       -       10      smtpd
    -o content_filter=
    -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
    -o smtpd_helo_restrictions=
    -o smtpd_client_restrictions=
    -o smtpd_sender_restrictions=
    -o smtpd_relay_restrictions=
    -o smtpd_recipient_restrictions=$relay_rcpt_checks
    -o mynetworks=127.0.0.0/8
    -o smtpd_authorized_xforward_hosts=127.0.0.0/8
"""


@unittest.skipUnless(pftest.available(), "needs root, postfix and swaks")
class SmtpFilterTest(unittest.TestCase):
    def setUp(self):
        self.rules = rules_dir()
        self.addCleanup(shutil.rmtree, self.rules, True)
        self.fport, self.rport = free_port(), free_port()
        self.args = ["--smtp-listen", "127.0.0.1:%d" % self.fport,
                     "--smtp-relay", "127.0.0.1:%d" % self.rport, "--max-size", "100000",
                     "--reject-score", REJECT_SCORE]
        self.d = Daemon(self.rules, self.args)
        self.addCleanup(lambda: self.d.__exit__())
        main = ("content_filter = scan:[127.0.0.1]:%d\nreceive_override_options = "
                "no_address_mappings\n"
                # the re-injection smtpd refuses one address, to see per-recipient replies
                "relay_rcpt_checks = check_recipient_access inline:{ refuse@test.invalid=REJECT },"
                " permit_mynetworks, reject\n" % self.fport)
        self.pf = pftest.Postfix(free_port(), main_extra=main,
                                 master_extra=MASTER.format(relay=self.rport))
        self.addCleanup(self.pf.stop)
        self.pf.start()

    def diag(self):
        try:
            dlog = self.d.log()[-3000:]
        except OSError:  # a stopped daemon's log is gone
            dlog = ""
        return "\n--- tamisd log ---\n%s\n--- maillog ---\n%s" % (dlog, self.pf.log()[-4000:])

    def test_ham_and_spam_tagged(self):
        for to, body in (("ham@test.invalid", HAM_BODY), ("spam@test.invalid", SPAM_BODY)):
            st, tr = self.pf.swaks(to, body, subject=to.split("@")[0])
            self.assertEqual(st, 0, tr + self.diag())
        got = self.pf.wait_delivered(2)
        self.assertEqual(len(got), 2, self.diag())
        by_to = {header(m, "To"): m for m in got}
        ham, spam = by_to["ham@test.invalid"], by_to["spam@test.invalid"]
        self.assertTrue(header(ham, "X-Spam-Status").startswith("No, score=0.0"), ham)
        self.assertTrue(header(spam, "X-Spam-Status").startswith("Yes, score=6.0"), spam)
        self.assertEqual(header(spam, "X-Spam-Flag"), "YES")
        self.assertEqual(header(spam, "Subject"), "[SPAM] spam")
        self.assertEqual(header(ham, "Subject"), "ham")
        # re-injected through the second smtpd, with the original client forwarded (XFORWARD)
        self.assertIn("client=localhost[127.0.0.1]", self.pf.log())
        qids = re.findall(r"(\w+): to=<spam@test.invalid>.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d"
                          % self.fport, self.pf.log())
        self.assertTrue(qids and ("id=" + qids[0]) in self.d.log(), self.diag())

    def test_reject_bounces_not_delivered(self):
        st, tr = self.pf.swaks("big@test.invalid", BIG_SPAM_BODY, subject="big")
        self.assertEqual(st, 0, tr)
        end = time.time() + 30
        while time.time() < end and "5.7.1 Message rejected as spam" not in self.pf.log():
            time.sleep(0.3)
        self.assertIn("550 5.7.1 Message rejected as spam (score 20.0)", self.pf.log(), self.diag())
        self.assertEqual([m for m in self.pf.delivered() if b"grobnitz" in m.lower()], [])

    def test_tamisd_down_defers_then_delivers(self):
        self.d.__exit__()  # stops it and checks its log for sanitizer reports
        st, tr = self.pf.swaks("spam@test.invalid", SPAM_BODY, subject="while down")
        self.assertEqual(st, 0, tr)
        end = time.time() + 30
        while time.time() < end and "status=deferred" not in self.pf.log():
            time.sleep(0.3)
        self.assertIn("status=deferred", self.pf.log(), self.diag())
        self.assertIn("spam@test.invalid", self.pf.queue())
        self.assertEqual(self.pf.delivered(), [])
        self.d = Daemon(self.rules, self.args)
        self.pf.flush()
        got = self.pf.wait_delivered(1, timeout=60)
        self.assertEqual(len(got), 1, self.pf.queue() + self.diag())
        self.assertTrue(header(got[0], "X-Spam-Status").startswith("Yes, score=6.0"), got[0])

    def test_too_big_passes_unscanned(self):
        body = "word " * 30000  # 150 kB > --max-size 100000
        st, tr = self.pf.swaks("big@test.invalid", body + " grobnitz", subject="large")
        self.assertEqual(st, 0, tr[-500:])
        got = self.pf.wait_delivered(1)
        self.assertEqual(len(got), 1, self.diag())
        self.assertIsNone(header(got[0], "X-Spam-Status"))
        self.assertIn("passed unscanned", self.d.log())

    def test_raw_session(self):
        """PIPELINING, per-recipient relay replies, RSET, two transactions, size limit."""
        s = socket.create_connection(("127.0.0.1", self.fport), timeout=30)
        f = s.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline()
                self.assertTrue(line, "connection closed")
                lines.append(line.decode())
                if line[3:4] == b" ":
                    return "".join(lines)

        try:
            self.assertTrue(reply().startswith("220 tamisd.localdomain"))
            s.sendall(b"EHLO pftest.invalid\r\n")
            ehlo = reply()
            for cap in ("PIPELINING", "SIZE 67108864", "8BITMIME", "SMTPUTF8", "XFORWARD"):
                self.assertIn(cap, ehlo)
            msg = (b"From: a@example.com\r\nTo: x@test.invalid\r\nSubject: raw\r\n\r\n"
                   b"..dot line\r\n" + SPAM_BODY.encode() + b"\r\n.\r\n")
            s.sendall(b"MAIL FROM:<a@example.com> SIZE=200 BODY=8BITMIME\r\n"
                      b"RCPT TO:<x@test.invalid>\r\nRCPT TO:<refuse@test.invalid>\r\nDATA\r\n")
            self.assertTrue(reply().startswith("250"))
            self.assertTrue(reply().startswith("250"))
            self.assertTrue(reply().startswith("554"), "relay refused that recipient")
            self.assertTrue(reply().startswith("354"))
            s.sendall(msg)
            self.assertTrue(reply().startswith("250 2.0.0 Ok"))
            s.sendall(b"MAIL FROM:<a@example.com>\r\nRSET\r\nMAIL FROM:<a@example.com> "
                      b"SIZE=99999999\r\nNOOP\r\n")
            self.assertTrue(reply().startswith("250"))
            self.assertTrue(reply().startswith("250"))
            self.assertTrue(reply().startswith("552"))
            self.assertTrue(reply().startswith("250"))
            s.sendall(b"QUIT\r\n")
            self.assertTrue(reply().startswith("221"))
        finally:
            s.close()
        got = self.pf.wait_delivered(1)
        self.assertEqual(len(got), 1, self.diag())
        self.assertIn(b"\n.dot line\n", got[0].replace(b"\r\n", b"\n"))
        self.assertEqual(header(got[0], "X-Spam-Flag"), "YES")


if __name__ == "__main__":
    unittest.main(verbosity=2)
