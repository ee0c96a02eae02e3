"""tamisd's SMTP content filter against a scripted relay (no Postfix, no root): the upstream 250
comes only after the relay's 250 to its own dot, the relay's refusals and failures (4xx/5xx at the
dot, a dropped connection, silence past --timeout-mta) become the right upstream replies, XFORWARD
is forwarded, MAIL parameters the relay does not offer are dropped, and the greeting and EHLO use
tamisd's own name."""
import os
import shutil
import socket
import socketserver
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "postfix_lib"))
from common import SPAM_BODY, Daemon, free_port, rules_dir  # noqa: E402


class Relay(socketserver.ThreadingTCPServer):
    """A minimal SMTP server; `behaviour` decides the reply to the final dot."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port):
        super().__init__(("127.0.0.1", port), RelayHandler)
        self.behaviour = "ok"
        self.log = []  # command lines received, and b"<message>" bytes
        self.delivered = []


class RelayHandler(socketserver.StreamRequestHandler):
    def say(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        srv = self.server
        self.say("220 relay.test ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.rstrip(b"\r\n")
            srv.log.append(cmd)
            verb = cmd[:4].upper()
            if verb == b"EHLO":
                self.say("250-relay.test\r\n250-PIPELINING\r\n250-XFORWARD NAME ADDR IDENT\r\n"
                         "250 8BITMIME")
            elif verb == b"RCPT" and b"refuse" in cmd:
                self.say("550 5.1.1 <refuse@test.invalid>: Recipient address rejected")
            elif verb == b"DATA":
                self.say("354 go")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = self.rfile.readline()
                    if not chunk:
                        return
                    data += chunk
                if srv.behaviour == "drop":
                    return
                if srv.behaviour == "silent":
                    time.sleep(4)
                    return
                srv.delivered.append(data)
                self.say({"ok": "250 2.0.0 Ok: queued as RELAY1",
                          "tempfail": "451 4.3.0 relay busy",
                          "reject": "554 5.7.1 relay says no"}[srv.behaviour])
            elif verb == b"QUIT":
                self.say("221 bye")
                return
            else:
                self.say("250 2.0.0 Ok")


class SmtpProtoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rules = rules_dir()
        cls.addClassCleanup(shutil.rmtree, cls.rules, True)
        cls.rport, cls.fport = free_port(), free_port()
        cls.relay = Relay(cls.rport)
        threading.Thread(target=cls.relay.serve_forever, daemon=True).start()
        cls.addClassCleanup(cls.relay.server_close)
        cls.addClassCleanup(cls.relay.shutdown)
        cls.d = Daemon(cls.rules, ["--smtp-listen", "127.0.0.1:%d" % cls.fport, "--smtp-relay",
                                   "127.0.0.1:%d" % cls.rport, "--smtp-helo", "filter.test",
                                   "--timeout-mta", "2"])
        cls.addClassCleanup(cls.d.__exit__)

    def setUp(self):
        self.relay.behaviour = "ok"
        self.relay.log.clear()
        self.relay.delivered.clear()
        self.s = socket.create_connection(("127.0.0.1", self.fport), timeout=20)
        self.addCleanup(self.s.close)
        self.f = self.s.makefile("rb")
        self.assertEqual(self.reply(), "220 filter.test ESMTP Tamis\r\n")
        self.s.sendall(b"EHLO pftest.invalid\r\n")
        self.assertTrue(self.reply().startswith("250-filter.test\r\n"))

    def reply(self):
        out = ""
        while True:
            line = self.f.readline().decode()
            if not line:
                return out + "<closed>"
            out += line
            if line[3:4] != "-":
                return out

    def send_message(self, rcpts=("x@test.invalid",)):
        self.s.sendall(b"XFORWARD NAME=mx.example ADDR=192.0.2.9 IDENT=QID42\r\n")
        self.assertTrue(self.reply().startswith("250"))
        self.s.sendall(b"MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8\r\n")
        self.assertTrue(self.reply().startswith("250"))
        replies = []
        for r in rcpts:
            self.s.sendall(b"RCPT TO:<%s>\r\n" % r.encode())
            replies.append(self.reply())
        self.s.sendall(b"DATA\r\n")
        data_reply = self.reply()
        if not data_reply.startswith("354"):
            return replies, data_reply
        self.s.sendall(b"Subject: t\r\n\r\n" + SPAM_BODY.encode() + b"\r\n.\r\n")
        return replies, self.reply()

    def test_delivered_after_relay_ok(self):
        replies, final = self.send_message(("x@test.invalid", "refuse@test.invalid"))
        self.assertTrue(replies[0].startswith("250"))
        self.assertTrue(replies[1].startswith("550 5.1.1"), replies)  # relayed per recipient
        self.assertEqual(final, "250 2.0.0 Ok: queued as RELAY1\r\n")
        self.assertEqual(len(self.relay.delivered), 1)
        self.assertIn(b"X-Spam-Flag: YES\r\n", self.relay.delivered[0])
        log = b"\n".join(self.relay.log)
        self.assertIn(b"EHLO filter.test", log)
        self.assertIn(b"XFORWARD NAME=mx.example ADDR=192.0.2.9 IDENT=QID42", log)
        self.assertIn(b"MAIL FROM:<a@example.com> BODY=8BITMIME\n", log + b"\n")  # no SMTPUTF8
        self.assertTrue(self.d.wait_log("id=QID42"))

    def test_relay_tempfail_and_reject_passed_on(self):
        self.relay.behaviour = "tempfail"
        self.assertEqual(self.send_message()[1], "451 4.3.0 relay busy\r\n")
        self.relay.behaviour = "reject"
        self.assertEqual(self.send_message()[1], "554 5.7.1 relay says no\r\n")

    def test_relay_drops_connection(self):
        self.relay.behaviour = "drop"
        self.assertTrue(self.send_message()[1].startswith("451 4.3.0"))
        self.relay.behaviour = "ok"  # the next transaction opens a new relay connection
        self.assertTrue(self.send_message()[1].startswith("250 2.0.0 Ok: queued as RELAY1"))

    def test_relay_silent_times_out(self):
        self.relay.behaviour = "silent"
        t = time.time()
        self.assertTrue(self.send_message()[1].startswith("451 4.3.0"))
        self.assertLess(time.time() - t, 10)

    def test_no_recipient_and_order_errors(self):
        self.s.sendall(b"RCPT TO:<x@test.invalid>\r\nDATA\r\nFROB\r\nMAIL FROM:<bad\r\n")
        self.assertTrue(self.reply().startswith("503"))
        self.assertTrue(self.reply().startswith("503"))
        self.assertTrue(self.reply().startswith("502"))
        self.assertTrue(self.reply().startswith("501"))
        replies, final = self.send_message(("refuse@test.invalid",))
        self.assertTrue(final.startswith("554 5.5.1"), final)
        self.assertEqual(self.relay.delivered, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
