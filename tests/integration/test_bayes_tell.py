#!/usr/bin/env python3
"""tamisd's Bayes through the real spamc: TELL (spamc -L) round trips, per-user stores, and BAYES_
rules in scans once the store is trained.

1. tamisd with a temporary --bayes-path and --allow-tell: `spamc -L spam|ham|forget` give spamc's
   exact outputs ("Message successfully un/learned" / "Message was already un/learned") and exit 0,
   with DidSet/DidRemove only when the store changed (spec-protocol §3);
2. per-user isolation: what user alice learned is unknown to bob (spamc -u);
3. after tamis-learn trains 250 spam and 250 ham of the train split into the same store for one
   user, `spamc -y -u` on test-split messages shows BAYES_99-ish hits on spam and BAYES_00-ish on
   ham, and X-Spam-Status carries autolearn=… autolearn_force=….
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import tamisd_harness as h  # noqa: E402

LEARN = os.path.join(h.BUILD_DIR, "tamis-learn")
DATA = os.path.join(h.SOURCE_DIR, "corpus", "data")
SPLIT = os.path.join(h.SOURCE_DIR, "corpus", "split")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def split_list(name, n, start=0):
    with open(os.path.join(SPLIT, name)) as f:
        rel = [l.strip() for l in f if l.strip()]
    return [os.path.join(DATA, p) for p in rel[start:start + n]]


def spamc(port, args, data, timeout=60):
    r = subprocess.run([h.SPAMC, "-p", str(port)] + args, input=data, capture_output=True,
                       timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def wait_port(port, proc):
    for _ in range(1200):  # 60 s: compiling the rules takes long under ThreadSanitizer
        if proc.poll() is not None:
            return False
        try:
            h.request(port, b"PING SPAMC/1.5\r\n\r\n", timeout=1)
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main():
    if not os.path.exists(h.SPAMC) or not os.path.exists(h.TAMISD):
        print("SKIP: spamc or tamisd missing")
        return 0
    tmp = tempfile.mkdtemp(prefix="tamis-bayes-")
    state = os.path.join(tmp, "bayes")
    port = h.free_port()
    log = os.path.join(tmp, "tamisd.log")
    proc = subprocess.Popen([h.TAMISD, "-i", "127.0.0.1", "-p", str(port), "-L", "--allow-tell",
                             "--bayes-path", state, "-s", log] + h.ROOT_ARGS)
    try:
        check(wait_port(port, proc), "tamisd starts with --bayes-path and --allow-tell")
        msg = h.SPAM
        other = h.HAM
        # 1. round trips (default user of spamc: the caller, sent in the User header)
        rc, out = spamc(port, ["-L", "spam"], msg)
        check((rc, out) == (0, "Message successfully un/learned\n"), f"learn spam: {rc} {out!r}")
        rc, out = spamc(port, ["-L", "spam"], msg)
        check((rc, out) == (0, "Message was already un/learned\n"), f"learn again: {rc} {out!r}")
        rc, out = spamc(port, ["-L", "ham"], msg)
        check((rc, out) == (0, "Message successfully un/learned\n"), f"relearn as ham: {rc} {out!r}")
        rc, out = spamc(port, ["-L", "forget"], msg)
        check((rc, out) == (0, "Message successfully un/learned\n"), f"forget: {rc} {out!r}")
        rc, out = spamc(port, ["-L", "forget"], msg)
        check((rc, out) == (0, "Message was already un/learned\n"), f"forget again: {rc} {out!r}")
        # raw protocol: DidSet only when something changed
        req = (b"TELL SPAMC/1.5\r\nMessage-class: ham\r\nSet: local\r\nUser: raw\r\n"
               b"Content-length: %d\r\n\r\n" % len(other)) + other
        r1 = h.request(port, req)
        r2 = h.request(port, req)
        check(b"DidSet: local" in r1 and r1.startswith(b"SPAMD/1.1 0 EX_OK"), f"raw TELL: {r1!r}")
        check(b"DidSet" not in r2, f"raw TELL again, no DidSet: {r2!r}")
        # markup stripped first: a PROCESSed copy is the same message
        marked = subprocess.run([h.SPAMC, "-p", str(port), "-u", "raw"], input=other,
                                capture_output=True).stdout
        check(b"X-Spam-Checker-Version" in marked, "PROCESS adds markup")
        rc, out = spamc(port, ["-u", "raw", "-L", "ham"], marked)
        check(out == "Message was already un/learned\n",
              f"the marked-up copy is the message already learned: {out!r}")
        # 2. per-user isolation
        rc, out = spamc(port, ["-u", "alice", "-L", "spam"], other)
        check(out == "Message successfully un/learned\n", f"alice learns: {out!r}")
        rc, out = spamc(port, ["-u", "bob", "-L", "forget"], other)
        check(out == "Message was already un/learned\n", f"bob does not know it: {out!r}")
        rc, out = spamc(port, ["-u", "bob", "-L", "spam"], other)
        check(out == "Message successfully un/learned\n", f"bob learns it himself: {out!r}")
        rc, out = spamc(port, ["-u", "alice", "-L", "spam"], other)
        check(out == "Message was already un/learned\n", f"alice still has it: {out!r}")
        # untrained store: scores as without Bayes, autolearn reported as SpamAssassin does
        rc, out = spamc(port, ["-u", "carol"], msg)
        check("autolearn=" in out and "BAYES_" not in out, "untrained store: no BAYES_ rules")
        # 3. train with tamis-learn into the same store, scan through spamc -y
        user = "trainee"
        for cls, name in (("--spam", "train-spam.txt"), ("--ham", "train-ham.txt")):
            r = subprocess.run([LEARN, "--dbpath", state, "-u", user, cls] +
                               split_list(name, 250), capture_output=True, text=True)
            check(r.returncode == 0 and "Learned tokens from" in r.stdout,
                  f"tamis-learn {cls}: {r.stdout.strip()} {r.stderr.strip()[-200:]}")
        spam_hits = ham_hits = 0
        ham_rules = []
        n = 20
        for p in split_list("test-spam.txt", n):
            rc, out = spamc(port, ["-y", "-u", user], open(p, "rb").read())
            spam_hits += any(t in out for t in ("BAYES_99", "BAYES_95", "BAYES_80"))
        for p in split_list("test-ham.txt", n):
            rc, out = spamc(port, ["-y", "-u", user], open(p, "rb").read())
            ham_hits += any(t in out for t in ("BAYES_00", "BAYES_05", "BAYES_20"))
            ham_rules.append(next((t for t in out.strip().split(",") if t.startswith("BAYES_")),
                                  "-"))
        print(f"     BAYES_80+ on {spam_hits}/{n} test spam, BAYES_00/05/20 on {ham_hits}/{n} test "
              f"ham ({' '.join(ham_rules)})")
        check(spam_hits >= 0.8 * n, "trained store: test spam hits BAYES_99-ish")
        check(ham_hits >= 0.7 * n, "trained store: test ham hits BAYES_00-ish")
        p = split_list("test-spam.txt", 1, 50)[0]
        out = subprocess.run([h.SPAMC, "-p", str(port), "-u", user], input=open(p, "rb").read(),
                             capture_output=True).stdout.decode("utf-8", "replace")
        status = out.split("X-Spam-Status:", 1)[-1].split("\nX-", 1)[0]
        check("autolearn=" in status and "autolearn_force=" in status,
              "X-Spam-Status has autolearn= and autolearn_force=: " + " ".join(status.split()))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print("FAILED: " + "; ".join(failures) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
