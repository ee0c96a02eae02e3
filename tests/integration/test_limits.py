"""tamisd's access and abuse limits against a live daemon (spamd/limits.c): connection caps in
total and per address, bans after failed requests or too many connections (with their log lines)
while other addresses are still served, the ban's end, slow clients cut off, the bounded scan
queue, the caps on the milter and SMTP listeners, and least privilege when run as root.

Clients come from several loopback addresses (all of 127/8 is loopback on Linux) by binding the
client socket before connecting. Every wait is bounded; every daemon is stopped at the end."""
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import tamisd_harness as h  # noqa: E402
from tamisd_harness import SPAM, Daemon, filter_request, make_rules_dir  # noqa: E402

PING = b"PING SPAMC/1.5\r\n\r\n"
PONG = b"SPAMD/1.5 0 PONG\r\n"
BUSY = b"SPAMD/1.0 75 EX_TEMPFAIL: too many connections\r\n"
ACL = ["-A", "127.0.0.0/8"]


def connect_from(src, port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        raise
    return s


def read_all(s):
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not b:
            break
        out += b
    return out


def request_from(src, port, data, timeout=10.0):
    """As spamc: send, half-close, read to EOF. Returns what the server sent."""
    s = connect_from(src, port, timeout)
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # refused: closed before we wrote
        return read_all(s)
    finally:
        s.close()


def refusal(src, port):
    """What a connection the server refuses at once receives. Read without sending: a request
    the server has not read when it closes makes the close a reset, which may destroy the
    refusal line before it is read (the server drains what has arrived; a test must not race)."""
    s = connect_from(src, port)
    try:
        return read_all(s)
    finally:
        s.close()


def wait_until(pred, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


class LimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rules = make_rules_dir()
        cls.addClassCleanup(shutil.rmtree, cls.rules, True)

    def daemon(self, args):
        d = Daemon(self.rules, ACL + list(args))
        self.addCleanup(d.__exit__)
        return d

    def open_idle(self, src, port, n):
        socks = []
        for _ in range(n):
            socks.append(connect_from(src, port))
        self.addCleanup(lambda: [s.close() for s in socks])
        return socks

    # ---- caps ----------------------------------------------------------------------------------

    def test_connection_caps(self):
        d = self.daemon(["--max-connections-per-ip", "3", "--max-connections", "6"])
        held = self.open_idle("127.0.0.2", d.port, 3)
        time.sleep(0.3)  # accepted and counted by the loop
        self.assertEqual(refusal("127.0.0.2", d.port), BUSY)
        self.assertTrue(d.wait_log("spamc: refused [127.0.0.2]: 3 connections open from it"))
        self.assertEqual(request_from("127.0.0.3", d.port, PING), PONG)  # others still served
        held += self.open_idle("127.0.0.3", d.port, 3)
        time.sleep(0.3)
        self.assertEqual(refusal("127.0.0.4", d.port), BUSY)
        self.assertTrue(d.wait_log("spamc: refused [127.0.0.4]: 6 connections open "
                                   "(--max-connections)"))
        for s in held:
            s.close()
        self.assertTrue(wait_until(lambda: request_from("127.0.0.2", d.port, PING) == PONG, 5))

    @unittest.skipUnless(socket.has_ipv6, "no IPv6")
    def test_ipv6_peers(self):
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")

        def v6(port):
            s = socket.create_connection(("::1", port), timeout=5)
            self.addCleanup(s.close)
            return s

        d = Daemon(self.rules, ["-i", "[::1]", "-A", "127.0.0.0/8,::1",
                                "--max-connections-per-ip", "2"])
        self.addCleanup(d.__exit__)
        v6(d.port), v6(d.port)
        time.sleep(0.3)
        self.assertEqual(read_all(v6(d.port)), BUSY)  # read at once: see refusal()
        self.assertTrue(d.wait_log("spamc: refused [::/64]: 2 connections open from it"))
        self.assertEqual(request_from("127.0.0.2", d.port, PING), PONG)  # IPv4 counts apart
        # an IPv6 peer outside --allowed-ips: closed without a reply, logged
        d2 = Daemon(self.rules, ["-i", "[::1]", "-A", "127.0.0.0/8"])
        self.addCleanup(d2.__exit__)
        self.assertEqual(read_all(v6(d2.port)), b"")
        self.assertTrue(d2.wait_log("unauthorized connection from [::1]"))

    # ---- bans ----------------------------------------------------------------------------------

    def test_failure_ban_and_expiry(self):
        d = self.daemon(["--max-failures", "3", "--ban-time", "2"])
        bad = b"HELLO\r\n\r\n"
        for _ in range(4):
            self.assertEqual(request_from("127.0.0.5", d.port, bad),
                             b"SPAMD/1.0 76 Bad header line: HELLO\r\n")
        self.assertTrue(d.wait_log("ban: [127.0.0.5] refused for 2 s: over 3 failed requests a "
                                   "minute (last: protocol error)"))
        self.assertEqual(request_from("127.0.0.5", d.port, PING), b"")  # closed, no reply
        self.assertEqual(request_from("127.0.0.6", d.port, PING), PONG)
        self.assertEqual(request_from("127.0.0.1", d.port, filter_request("CHECK", SPAM)),
                         b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")
        self.assertTrue(d.wait_log("unban: [127.0.0.5] after 2 s", timeout=6))
        self.assertEqual(request_from("127.0.0.5", d.port, PING), PONG)
        self.assertEqual(d.log().count(" ban: [127.0.0.5]"), 1)  # one line per ban, for fail2ban

    def test_acl_refusals_count(self):
        d = Daemon(self.rules, ["-A", "127.0.0.1", "--max-failures", "2", "--ban-time", "60"])
        self.addCleanup(d.__exit__)
        for _ in range(3):
            self.assertEqual(request_from("127.0.0.7", d.port, PING), b"")
        self.assertTrue(d.wait_log("ban: [127.0.0.7] refused for 60 s: over 2 failed requests a "
                                   "minute (last: not in --allowed-ips)"))
        for _ in range(5):  # banned: dropped without a log line each
            self.assertEqual(request_from("127.0.0.7", d.port, PING), b"")
        self.assertEqual(request_from("127.0.0.1", d.port, PING), PONG)
        self.assertEqual(d.log().count("unauthorized connection from [127.0.0.7]"), 3)

    def test_conn_rate_ban(self):
        d = self.daemon(["--max-conn-rate", "2", "--ban-time", "60"])  # a burst of 20
        replies = [request_from("127.0.0.8", d.port, PING) for _ in range(30)]
        self.assertEqual(replies[:20], [PONG] * 20)
        self.assertIn(b"", replies[20:])
        self.assertTrue(d.wait_log("ban: [127.0.0.8] refused for 60 s: over 2 new connections/s"))
        self.assertEqual(request_from("127.0.0.9", d.port, PING), PONG)

    # ---- slow clients --------------------------------------------------------------------------

    def trickle(self, d, data, src="127.0.0.10", every=1.0, limit=15.0):
        """Sends data one byte per `every` seconds; returns (seconds until cut, reply)."""
        s = connect_from(src, d.port, timeout=limit)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        reply = b""
        for b in data:
            try:
                s.sendall(bytes([b]))
            except OSError:
                break
            r, _, _ = __import__("select").select([s], [], [], every)
            if r:
                reply = read_all(s)
                break
            if time.monotonic() - t0 > limit:
                break
        return time.monotonic() - t0, reply

    def test_slowloris_min_rate(self):
        d = self.daemon(["--min-rate", "100", "--min-rate-grace", "2", "--min-rate-window", "2"])
        took, reply = self.trickle(d, filter_request("CHECK", SPAM))
        print("slowloris (1 byte/s, --min-rate 100 over 2 s windows) cut after %.1f s" % took)
        self.assertTrue(reply.startswith(b"SPAMD/1.0 79 Timeout: (client too slow: "), reply)
        self.assertLess(took, 4.0)  # grace 2 s + the sweep's 0.25 s + margin
        self.assertGreater(took, 1.5)
        self.assertTrue(d.wait_log("[127.0.0.10] cut off: (client too slow"))
        self.assertEqual(request_from("127.0.0.11", d.port, PING), PONG)

    def test_timeout_read(self):
        d = self.daemon(["--min-rate", "0", "--timeout-read", "1"])
        s = connect_from("127.0.0.12", d.port)
        self.addCleanup(s.close)
        s.sendall(b"CHECK SPAMC/1.5\r\n")  # then silence
        t0 = time.monotonic()
        reply = read_all(s)
        self.assertEqual(reply, b"SPAMD/1.0 79 Timeout: (1 second timeout reading input from "
                                b"client)\r\n")
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_timeout_write(self):
        d = self.daemon(["--timeout-write", "1"])
        s = connect_from("127.0.0.17", d.port, timeout=30)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(filter_request("PROCESS", SPAM + b"cheap words here and there " * 300000))
        s.shutdown(socket.SHUT_WR)  # and never read the 8 MB reply
        self.assertTrue(d.wait_log("[127.0.0.17] did not take its reply (--timeout-write)", 15))

    # ---- the scan queue ------------------------------------------------------------------------

    def test_queue_full(self):
        d = self.daemon(["-m", "1", "--max-queue", "1"])
        big = filter_request("CHECK", SPAM + b"cheap words here and there " * 300000)  # 8 MB
        # Six requests complete at the same moment: all but their last byte first (the daemon
        # reads them), then the last bytes together. One scan of 8 MB takes about half a second,
        # so the one worker is busy, one request waits, and the other four find the queue full,
        # however slowly the uploads themselves went.
        socks = [connect_from("127.0.0.13", d.port, timeout=60) for _ in range(6)]
        for s in socks:
            self.addCleanup(s.close)
        senders = [threading.Thread(target=s.sendall, args=(big[:-1],)) for s in socks]
        for t in senders:
            t.start()
        for t in senders:
            t.join(60)
        time.sleep(0.3)  # the daemon has the rest of what was sent
        for s in socks:
            s.sendall(big[-1:])
            s.shutdown(socket.SHUT_WR)
        replies = [read_all(s) for s in socks]
        tempfail = b"SPAMD/1.0 75 EX_TEMPFAIL: server busy, try again later\r\n"
        busy = [r for r in replies if r == tempfail]
        ok = [r for r in replies if r and r.startswith(b"SPAMD/1.1 0 EX_OK")]
        print("6 concurrent 8 MB scans, -m 1 --max-queue 1: %d scanned, %d EX_TEMPFAIL"
              % (len(ok), len(busy)))
        self.assertEqual(len(ok) + len(busy), 6, replies)
        self.assertGreaterEqual(len(ok), 2)  # the one running and the one waiting
        self.assertGreaterEqual(len(busy), 1)
        self.assertTrue(d.wait_log("scan queue full (--max-queue)"))

    # ---- the MTA front ends --------------------------------------------------------------------

    def test_mta_listeners_capped(self):
        mport, sport = h.free_port(), h.free_port()
        d = self.daemon(["--max-connections-per-ip", "2",
                         "--milter", "127.0.0.1:%d" % mport,
                         "--smtp-listen", "127.0.0.1:%d" % sport, "--smtp-relay", "127.0.0.1:9"])
        held = self.open_idle("127.0.0.14", sport, 2)
        for s in held:
            self.assertTrue(s.recv(100).startswith(b"220 "))
        s = connect_from("127.0.0.14", sport)
        self.addCleanup(s.close)
        self.assertEqual(read_all(s), b"421 4.7.0 Too many connections, try again later\r\n")
        self.assertTrue(d.wait_log("smtp: refused [127.0.0.14]"))
        self.open_idle("127.0.0.15", mport, 2)
        time.sleep(0.3)
        s = connect_from("127.0.0.15", mport)
        self.addCleanup(s.close)
        self.assertEqual(read_all(s), b"")  # closed at once: Postfix applies its default action
        self.assertTrue(d.wait_log("milter: refused [127.0.0.15]"))
        self.assertEqual(request_from("127.0.0.16", d.port, PING), PONG)

    # ---- --lint ---------------------------------------------------------------------------------

    def test_lint_dumps_settings(self):
        p = subprocess.run([h.TAMISD, "-C", self.rules, "--lint", "--max-queue", "7"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode()
        for line in ("setting allowed-ips 127.0.0.1,::1", "setting max-size 67108864",
                     "setting max-connections 1024", "setting max-connections-per-ip 128",
                     "setting max-conn-rate 500", "setting max-failures 30",
                     "setting ban-time 300", "setting timeout-tcp 30", "setting timeout-read 30",
                     "setting timeout-write 30", "setting min-rate 512", "setting max-queue 7"):
            self.assertIn(line + "\n", out)


@unittest.skipUnless(os.geteuid() == 0, "privilege drop needs root")
class PrivilegeTest(unittest.TestCase):
    def setUp(self):
        self.rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, self.rules, True)
        self.tmp = tempfile.mkdtemp(prefix="tamis-priv-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        os.chmod(self.tmp, 0o755)
        self.nobody = pwd.getpwnam("nobody")

    def ids(self, pid):
        with open("/proc/%d/status" % pid) as f:
            st = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        return ([int(x) for x in st["Uid"].split()], [int(x) for x in st["Gid"].split()],
                [int(x) for x in st["Groups"].split()])

    def test_user_and_file_modes(self):
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        os.chown(state, self.nobody.pw_uid, self.nobody.pw_gid)  # as StateDirectory= does
        pidfile = os.path.join(self.tmp, "tamisd.pid")
        d = Daemon(self.rules, ["-u", "nobody", "--state-dir", state, "--cf", "use_bayes 1",
                                "-r", pidfile])
        self.addCleanup(d.__exit__)
        uids, gids, groups = self.ids(d.proc.pid)
        self.assertEqual(uids, [self.nobody.pw_uid] * 4)
        self.assertEqual(gids, [self.nobody.pw_gid] * 4)
        self.assertNotIn(0, groups)
        self.assertTrue(d.wait_log("running as user nobody"))
        self.assertEqual(request_from("127.0.0.1", d.port, PING), PONG)
        made = []
        for root, dirs, files in os.walk(state):
            for n in dirs + files:
                made.append(os.path.join(root, n))
        self.assertTrue(any("bayes" in p for p in made), made)  # the store nobody created
        for p in made + [pidfile]:
            mode = stat.S_IMODE(os.lstat(p).st_mode)
            self.assertEqual(mode & 0o007, 0, "%s is mode %o" % (p, mode))

    @unittest.skipUnless(shutil.which("setpriv"), "setpriv is not installed")
    def test_service_capability_dropped(self):
        """As under systemd's User=tamis + AmbientCapabilities=CAP_NET_BIND_SERVICE: port < 1024
        binds, then the capability is gone."""
        port = None
        for p in range(700, 1000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                    port = p
                    break
                except OSError:
                    continue
        self.assertIsNotNone(port)
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        os.chown(state, self.nobody.pw_uid, self.nobody.pw_gid)
        argv = ["setpriv", "--reuid", str(self.nobody.pw_uid), "--regid", str(self.nobody.pw_gid),
                "--clear-groups", "--inh-caps", "+net_bind_service", "--ambient-caps",
                "+net_bind_service", h.TAMISD, "-C", self.rules, "-i", "127.0.0.1", "-p",
                str(port), "--state-dir", state]
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (p.poll() is None and (p.kill(), p.wait(5))))
        ok = wait_until(lambda: p.poll() is None and self.ping(port), 20)
        log.seek(0)
        self.assertTrue(ok, log.read().decode(errors="replace"))
        with open("/proc/%d/status" % p.pid) as f:
            caps = {k: v.strip() for k, v in (line.split(":", 1) for line in f
                                              if line.startswith("Cap"))}
        for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(caps[k], 16), 0, "%s %s" % (k, caps[k]))
        p.terminate()
        p.wait(10)

    @staticmethod
    def ping(port):
        try:
            return request_from("127.0.0.1", port, PING, timeout=2) == PONG
        except OSError:
            return False

    def test_root_falls_back(self):
        saved = h.ROOT_ARGS
        h.ROOT_ARGS = []  # started as root without -u
        self.addCleanup(setattr, h, "ROOT_ARGS", saved)
        d = Daemon(self.rules, ["--state-dir", os.path.join(self.tmp, "s")])
        self.addCleanup(d.__exit__)
        try:
            user = pwd.getpwnam("tamis")
        except KeyError:
            user = self.nobody
        self.assertTrue(d.wait_log("started as root without -u: running as %s" % user.pw_name))
        self.assertEqual(self.ids(d.proc.pid)[0], [user.pw_uid] * 4)
        self.assertEqual(request_from("127.0.0.1", d.port, filter_request("CHECK", SPAM)),
                         b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
