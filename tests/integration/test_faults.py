#!/usr/bin/env python3
"""Fault proofs for tamisd, through the real spamc (issue 8: fail-safe scanning and faults).

1. Limits: a message that hits the PCRE2 match limit (catastrophic backtracking), an over-deep
   MIME message and a tiny time budget (`time_limit`) each get a normal reply with the verdict of
   what finished, a TAMIS_LIMIT_* / TIME_LIMIT_EXCEEDED entry in X-Spam-Status and the report,
   and a log line naming the message and the limit.
2. kill -9 under load: concurrent `spamc -L spam|ham` and scans; tamisd is killed mid-stream;
   the store opens cleanly afterwards (tamis-learn --dump magic, then a restart on the same state
   folder: no stale-lock trouble), every acknowledged TELL is in the store (its counts cover them
   and telling it again says "already learned"), and scanning works.
3. Full disk: the state folder on a tiny tmpfs (root with mount rights) or, failing that, a
   file-size limit set on the running tamisd with prlimit (RLIMIT_FSIZE; tamisd ignores SIGXFSZ).
   Learning then fails with an error reply and a log line (no crash, no hang), scans go on, and
   learning works again once space is back. The method that ran is printed; TAMIS_FAULTS_DISK=
   rlimit forces the fallback.
4. SIGHUP under load with broken rule files (bad regex, missing include, unknown directive): every
   scan in flight and after is answered with the old rules, the error is logged with file:line,
   and a good file is picked up by the next HUP (test_rawsock.py covers the single-client case).

Every wait is bounded; every daemon is killed and every mount undone at the end, even on failure.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from tamisd_harness import (SPAM, SPAMC, TAMISD, BUILD_DIR, Daemon, make_rules_dir,
                            request)  # noqa: E402

LEARN = os.path.join(BUILD_DIR, "tamis-learn")
USER = "faults"

# \h keeps the pattern out of the Vectorscan prefilter, so PCRE2 meets the backtracking, as it
# would for a stock rule using \h: 30 words and a '!' give 2^30 paths, far over the match limit.
REDOS_CF = "body TEST_REDOS /^(\\w+\\h?)*\\d$/\nscore TEST_REDOS 1\n"
REDOS_MSG = (b"From: a@example.com\nTo: b@example.com\nSubject: offer\n"
             b"Message-ID: <redos@example.com>\n\nbuy viagra now\n\n" + b"word " * 30 + b"!\n")


def deep_message(depth):
    """Nested multiparts deeper than lib/msg's max_mime_depth (20), a text part at each level."""
    out = [b"From: a@example.com\nTo: b@example.com\nSubject: deep\n"
           b"Message-ID: <deep@example.com>\nMIME-Version: 1.0\n"]
    for i in range(depth):
        out.append(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n'
                   b"Content-Type: text/plain\n\nlevel %d viagra\n--b%d\n" % (i, i, i, i))
    out.append(b"Content-Type: text/plain\n\ninnermost\n")
    out += [b"--b%d--\n" % i for i in reversed(range(depth))]
    return b"".join(out)


def spamc(port, args, data, timeout=60):
    """The real spamc; returns (exit status, stdout text). -t bounds spamc's own wait."""
    r = subprocess.run([SPAMC, "-p", str(port), "-t", "30"] + list(args), input=data,
                       capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def status_line(out):
    """X-Spam-Status unfolded."""
    m = re.search(r"^X-Spam-Status: (.*?)\n(?=\S)", out, re.S | re.M)
    return " ".join(m.group(1).split()) if m else ""


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"]


def make_message(i, kind, tokens=60):
    """A distinct message (own Message-ID, own tokens) for learning."""
    rnd = random.Random(i * 7919 + (1 if kind == "spam" else 2))
    body = " ".join("%s%d" % (rnd.choice(WORDS), rnd.randrange(10 ** 6)) for _ in range(tokens))
    return ("From: sender%d@example.com\nTo: user@example.com\nSubject: %s number %d\n"
            "Message-ID: <%s-%d@faults.example>\nDate: Mon, 23 Nov 2026 06:00:00 +0000\n\n%s\n"
            % (i, kind, i, kind, i, body)).encode()


def dump_magic(state, user=USER):
    r = subprocess.run([LEARN, "--dbpath", state, "-u", user, "--dump", "magic"],
                       capture_output=True, text=True, timeout=60)
    counts = {}
    for line in r.stdout.splitlines():
        f = line.split()  # "0.000  0  3  0  non-token data: nspam"
        if len(f) >= 6 and "non-token data:" in line:
            counts[line.split("non-token data:", 1)[1].strip()] = int(f[2])
    return r.returncode, counts, r.stdout + r.stderr


class LimitsTest(unittest.TestCase):
    """Fail-safe scanning: a verdict from what finished, and the report says which limit hit."""

    def test_regex_and_mime_limits(self):
        rules = make_rules_dir(REDOS_CF)
        self.addCleanup(shutil.rmtree, rules, True)
        with Daemon(rules, ["-L"]) as d:
            rc, out = spamc(d.port, [], REDOS_MSG)
            st = status_line(out)
            self.assertEqual(rc, 0, out)
            self.assertTrue(st.startswith("Yes, score=6.0 required=5.0 "), st)
            self.assertIn("tests=TAMIS_LIMIT_REGEX,TEST_WORD ", st)
            self.assertIn("0.0 TAMIS_LIMIT_REGEX Some rules stopped at the regex match limit", out)
            rc, out = spamc(d.port, ["-R"], REDOS_MSG)
            self.assertTrue(out.startswith("6.0/5.0\n"), out)
            self.assertRegex(out, r"\n 0\.0 TAMIS_LIMIT_REGEX +Some rules stopped")
            self.assertTrue(d.wait_log("limits: mid=<redos@example.com>,id="), d.log())
            self.assertRegex(d.log(), r"limits: mid=<redos@example\.com>,id=\d+: scanned in "
                                      r"part, stopped by regex match/depth limit")

            deep = deep_message(30)
            rc, out = spamc(d.port, ["-c"], deep)
            self.assertEqual((rc, out), (1, "6.0/5.0\n"))
            rc, out = spamc(d.port, [], deep)
            st = status_line(out)
            self.assertIn("TAMIS_LIMIT_MIME", st)
            self.assertIn("TEST_WORD", st)
            self.assertTrue(out.rstrip().endswith("--b0--"), out[-200:])  # the message, whole
            self.assertTrue(d.wait_log("limits: mid=<deep@example.com>"), d.log())
            self.assertIn("MIME depth/part count", d.log())
            # the daemon is fine afterwards: an ordinary message, no limit entry
            rc, out = spamc(d.port, [], SPAM)
            self.assertNotIn("LIMIT", status_line(out))
            self.assertIn("TEST_WORD", status_line(out))

    def test_time_budget(self):
        # time_limit (SpamAssassin's setting, seconds) of 5 ms; 400 rules that PCRE2 must run on
        # every body line take far longer; TEST_WORD runs first (priority) and still counts.
        slow = ["time_limit 0.005", "priority TEST_WORD -10"]
        for i in range(400):
            slow += ["body TEST_SLOW_%d /\\bzz%dq\\h+\\w+\\b/" % (i, i), "score TEST_SLOW_%d 0.5" % i]
        rules = make_rules_dir("\n".join(slow) + "\n")
        self.addCleanup(shutil.rmtree, rules, True)
        body = b"".join(b"line %d with some text to match against and more words\n\n" % i
                        for i in range(2000))
        msg = (b"From: a@example.com\nTo: b@example.com\nSubject: big\n"
               b"Message-ID: <budget@example.com>\n\nbuy viagra now\n\n" + body)
        with Daemon(rules, ["-L"]) as d:
            t0 = time.time()
            rc, out = spamc(d.port, [], msg)
            st = status_line(out)
            self.assertEqual(rc, 0)
            self.assertTrue(st.startswith("Yes, score=6.0 "), st)
            self.assertIn("TIME_LIMIT_EXCEEDED", st)
            self.assertIn("TEST_WORD", st)
            self.assertIn("Exceeded time limit / deadline", out)
            self.assertLess(time.time() - t0, 20)
            self.assertTrue(d.wait_log("limits: mid=<budget@example.com>"), d.log())
            self.assertIn("stopped by time budget", d.log())


class KillTest(unittest.TestCase):
    """kill -9 in the middle of concurrent TELLs and scans loses nothing acknowledged."""

    def test_kill9_under_load(self):
        tmp = tempfile.mkdtemp(prefix="tamis-faults-kill-")
        self.addCleanup(shutil.rmtree, tmp, True)
        state = os.path.join(tmp, "state")
        rules = make_rules_dir("use_bayes 1\nbayes_auto_learn 0\n")
        self.addCleanup(shutil.rmtree, rules, True)
        args = ["-L", "-l", "--state-dir", state, "-m", "4"]
        msgs = [("spam", make_message(i, "spam")) for i in range(150)]
        msgs += [("ham", make_message(i, "ham")) for i in range(150)]
        random.Random(8).shuffle(msgs)
        acked, lock = [], threading.Lock()
        queue = list(msgs)
        stop = threading.Event()
        scans = {"ok": 0}

        def learner():
            while not stop.is_set():
                with lock:
                    if not queue:
                        return
                    cls, m = queue.pop()
                try:
                    rc, out = spamc(d.port, ["-u", USER, "-L", cls], m, timeout=40)
                except subprocess.TimeoutExpired:
                    continue
                if rc == 0 and out == "Message successfully un/learned\n":
                    with lock:
                        acked.append((cls, m))

        def scanner():
            while not stop.is_set():
                try:
                    rc, out = spamc(d.port, ["-u", USER, "-c"], SPAM, timeout=40)
                except subprocess.TimeoutExpired:
                    continue
                if out.endswith("/5.0\n"):
                    with lock:
                        scans["ok"] += 1

        d = Daemon(rules, args)
        try:
            threads = [threading.Thread(target=learner) for _ in range(6)]
            threads += [threading.Thread(target=scanner) for _ in range(2)]
            for t in threads:
                t.start()
            end = time.time() + 90
            while time.time() < end and len(acked) < 60 and any(t.is_alive() for t in threads[:6]):
                time.sleep(0.02)
            with lock:
                before = len(acked)
            d.proc.kill()  # SIGKILL, mid-stream: other TELLs are in flight
            d.proc.wait(10)
            with lock:
                at_kill = list(acked)
            stop.set()
            for t in threads:
                t.join(60)
            self.assertFalse(any(t.is_alive() for t in threads), "client threads hang")
        finally:
            stop.set()
            d.__exit__()
        print("\n     kill -9 after %d acknowledged TELLs (%d at the kill), %d scans answered, "
              "%d TELLs not sent" % (before, len(at_kill), scans["ok"], len(queue)))
        self.assertGreaterEqual(len(at_kill), 30)
        self.assertGreater(len(queue), 0, "the kill came after the last TELL: not mid-stream")
        self.assertGreater(scans["ok"], 0)
        # The store opens after the kill (no stale lock or reader trouble) and counts them all.
        rc, counts, text = dump_magic(os.path.join(state, "bayes"))
        self.assertEqual(rc, 0, text)
        nspam = sum(1 for c, _ in at_kill if c == "spam")
        nham = len(at_kill) - nspam
        print("     store after the kill: nspam=%s nham=%s; acknowledged spam=%d ham=%d"
              % (counts.get("nspam"), counts.get("nham"), nspam, nham))
        self.assertGreaterEqual(counts.get("nspam", -1), nspam, text)
        self.assertGreaterEqual(counts.get("nham", -1), nham, text)
        # Restart on the same state folder: clean start, each acknowledged message known.
        with Daemon(rules, args) as d2:
            log = d2.log()
            self.assertNotRegex(log, r"(?i)cannot open the bayes|error", log)
            for cls, m in at_kill:
                rc, out = spamc(d2.port, ["-u", USER, "-L", cls], m)
                self.assertEqual((rc, out), (0, "Message was already un/learned\n"),
                                 m.split(b"\n")[3])
            rc, out = spamc(d2.port, ["-u", USER, "-c"], SPAM)
            self.assertEqual((rc, out), (1, "6.0/5.0\n"))
            rc, out = spamc(d2.port, ["-u", USER, "-L", "spam"], make_message(999, "spam"))
            self.assertEqual((rc, out), (0, "Message successfully un/learned\n"))


class DiskFullTest(unittest.TestCase):
    """A full state folder: learning fails clearly, scanning goes on, learning comes back."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tamis-faults-disk-")
        self.mounted = False

    def tearDown(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.state], timeout=30)
        shutil.rmtree(self.tmp, True)

    def try_mount(self):
        if os.environ.get("TAMIS_FAULTS_DISK") == "rlimit":
            return "TAMIS_FAULTS_DISK=rlimit"
        if os.geteuid() != 0 or not shutil.which("mount"):
            return "not root"
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                            self.state], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return "mount refused: " + r.stderr.strip()
        self.mounted = True
        return None

    def fill(self):
        """Fills the tmpfs; returns the filler's path."""
        path = os.path.join(self.state, "filler")
        with open(path, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        return path

    def test_disk_full(self):
        self.state = os.path.join(self.tmp, "state")
        os.mkdir(self.state)
        why = self.try_mount()
        method = "tmpfs of 2 MiB" if self.mounted else "RLIMIT_FSIZE via prlimit (%s)" % why
        if not self.mounted and not shutil.which("prlimit"):
            self.fail("no way to make the disk full: %s, and no prlimit" % why)
        print("\n     full-disk method: " + method)
        rules = make_rules_dir("use_bayes 1\nbayes_auto_learn 0\n")
        self.addCleanup(shutil.rmtree, rules, True)
        with Daemon(rules, ["-L", "-l", "--state-dir", self.state]) as d:
            rc, out = spamc(d.port, ["-u", USER, "-L", "spam"], make_message(1, "spam"))
            self.assertEqual((rc, out), (0, "Message successfully un/learned\n"))
            data = os.path.join(self.state, "bayes", "data.mdb")
            self.assertTrue(os.path.exists(data))
            if self.mounted:
                filler = self.fill()
            else:
                limit = os.path.getsize(data)  # soft limit only: lifting it needs no rights
                subprocess.run(["prlimit", "--pid", str(d.proc.pid), "--fsize=%d:" % limit],
                               check=True, timeout=30)
            # LMDB reuses pages it freed, so a small learn may still fit: learn big messages
            # until the store needs room it cannot get.
            failed = None
            for i in range(2, 40):
                t0 = time.time()
                rc, out = spamc(d.port, ["-u", USER, "-L", "spam"],
                                make_message(i, "spam", tokens=3000))
                self.assertLess(time.time() - t0, 30, "TELL hangs on a full disk")
                self.assertIsNone(d.proc.poll(), "tamisd died on a full disk:\n" + d.log())
                if out != "Message successfully un/learned\n":
                    failed = (i, rc, out)
                    break
            self.assertIsNotNone(failed, "learning never failed on the full disk")
            i, rc, out = failed
            r = subprocess.run([SPAMC, "-p", str(d.port), "-u", USER, "-L", "spam"],
                               input=make_message(i, "spam", tokens=3000), capture_output=True,
                               timeout=60)
            print("     full disk: TELL %d -> spamc exit %d, stdout %r, stderr %r"
                  % (i, r.returncode, r.stdout.decode(), r.stderr.decode().strip()))
            body = make_message(i, "spam", tokens=3000)
            raw = request(d.port, b"TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\n"
                          b"User: %s\r\nContent-length: %d\r\n\r\n" % (USER.encode(), len(body))
                          + body, timeout=30)
            print("     raw reply: %r" % raw)
            self.assertRegex(raw, rb"^SPAMD/1\.\d 75 TELL failed: bayes: .+\r\n$")
            self.assertNotEqual(rc, 0)  # an error, never "already learned"
            self.assertNotIn("already", out)
            self.assertTrue(d.wait_log("tell: learning failed"), d.log())
            self.assertRegex(d.log(), r"learning failed: .*(No space left|too large)")
            # scans go on
            rc, out = spamc(d.port, ["-u", USER, "-c"], SPAM)
            self.assertEqual((rc, out), (1, "6.0/5.0\n"))
            rc, out = spamc(d.port, ["-u", USER], REDOS_MSG)
            self.assertIn("X-Spam-Status: Yes", out)
            # space back: the same message learns
            if self.mounted:
                os.unlink(filler)
            else:
                subprocess.run(["prlimit", "--pid", str(d.proc.pid), "--fsize=unlimited:"],
                               check=True, timeout=30)
            rc, out = spamc(d.port, ["-u", USER, "-L", "spam"],
                            make_message(i, "spam", tokens=3000))
            self.assertEqual((rc, out), (0, "Message successfully un/learned\n"), d.log()[-2000:])
            self.assertEqual(d.stop(), 0)
        rc, counts, text = dump_magic(os.path.join(self.state, "bayes"))
        self.assertEqual(rc, 0, text)
        self.assertGreaterEqual(counts.get("nspam", 0), 2, text)


class HupUnderLoadTest(unittest.TestCase):
    """SIGHUP with broken rule files while spamc clients keep scanning."""

    def test_hup_broken_then_good(self):
        rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, rules, True)
        extra = os.path.join(rules, "60_extra.cf")
        results, lock, stop = [], threading.Lock(), threading.Event()

        def client():
            while not stop.is_set():
                try:
                    rc, out = spamc(d.port, ["-c"], SPAM, timeout=40)
                except subprocess.TimeoutExpired:
                    rc, out = -1, "timeout"
                with lock:
                    results.append((rc, out))

        with Daemon(rules, ["-L", "-m", "2"]) as d:
            pid = d.proc.pid
            threads = [threading.Thread(target=client) for _ in range(3)]
            for t in threads:
                t.start()
            try:
                broken = [
                    ("score TEST_WORD 2\nbody BROKEN_RE /(unclosed/\n", "60_extra.cf:2"),
                    ("score TEST_WORD 2\ninclude /nonexistent/tamis-missing.cf\n", "60_extra.cf:2"),
                    ("score TEST_WORD 2\n\nnot_a_directive at all\n", "60_extra.cf:3"),
                ]
                for n, (text, where) in enumerate(broken, 1):
                    with open(extra, "w") as f:
                        f.write(text)
                    d.signal(signal.SIGHUP)
                    self.assertTrue(wait_count(d, "keeping the old rules", n), d.log())
                    self.assertIn(where, d.log())
                    time.sleep(0.3)  # scans keep going on the old set
                    rc, out = spamc(d.port, ["-c"], SPAM)
                    self.assertEqual((rc, out), (1, "6.0/5.0\n"), "old rules after %s" % where)
                with open(extra, "w") as f:
                    f.write("score TEST_WORD 7\n")
                d.signal(signal.SIGHUP)
                self.assertTrue(d.wait_log("reloaded rules"), d.log())
                rc, out = spamc(d.port, ["-c"], SPAM)
                self.assertEqual((rc, out), (1, "7.0/5.0\n"))
            finally:
                stop.set()
                for t in threads:
                    t.join(60)
            self.assertEqual(d.proc.pid, pid)
            self.assertIsNone(d.proc.poll())
        bad = [r for r in results if r[1] not in ("6.0/5.0\n", "7.0/5.0\n")]
        print("\n     %d scans during the reloads, %d not answered with a verdict"
              % (len(results), len(bad)))
        self.assertGreater(len(results), 10)
        self.assertEqual(bad, [])


def wait_count(d, text, n, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        if d.log().count(text) >= n:
            return True
        time.sleep(0.1)
    return False


if __name__ == "__main__":
    if not os.path.exists(SPAMC) or not os.path.exists(TAMISD) or not os.path.exists(LEARN):
        print("FAIL: spamc, tamisd or tamis-learn missing (%s, %s, %s)" % (SPAMC, TAMISD, LEARN))
        sys.exit(1)
    unittest.main(verbosity=2)
