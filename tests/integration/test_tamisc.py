#!/usr/bin/env python3
"""tamisc against Debian's spamc: same stdout bytes and exit codes, against the same servers.

1. A table of modes x messages runs four ways (spamc->spamd, tamisc->spamd, spamc->tamisd,
   tamisc->tamisd); spamc and tamisc must agree byte for byte against each server (after
   normalising what is legitimately variable: dates, MIME boundaries, report line order), and the
   two servers must give the same verdicts.
2. A canned fake server replays odd replies (errors, bad framing, long lines, ...) to both clients,
   and records their requests, which must be identical.
3. Fail-over, all hosts down (safe, -x, -x -X), -z, -s pass-through, -e, -F, -U, and -t against
   a server that never answers.

Every daemon is stopped in a finally block; every subprocess and socket wait is bounded.
"""
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import tamisd_harness as h  # noqa: E402

TAMISC = os.path.join(h.BUILD_DIR, "tamisc")
SPAMC = h.SPAMC
CORPUS = os.path.join(h.SOURCE_DIR, "corpus")
FAILURES = []
CHECKS = [0]


def check(name, cond, detail=""):
    CHECKS[0] += 1
    if not cond:
        FAILURES.append(name)
        print("FAIL %s %s" % (name, detail[:2000]), flush=True)


def run(prog, args, stdin=b"", timeout=60):
    p = subprocess.run([prog] + list(args), input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout


# ---- normalisation ---------------------------------------------------------------------------

REPORT_LINE = re.compile(r"^(\s*-?\d+(\.\d+)? [A-Z0-9_]+ |\t\*\s+-?\d)")


def _sort_report_runs(lines):
    out, run_ = [], []
    for ln in lines + [None]:
        if ln is not None and REPORT_LINE.match(ln):
            run_.append(ln)
            continue
        out.extend(sorted(run_))
        run_ = []
        if ln is not None:
            out.append(ln)
    return out


def norm(data):
    """Dates, MIME boundaries and the (Perl hash) order of report lines vary per scan."""
    s = data.decode("latin-1")
    s = re.sub(r"-{12}=_[0-9A-F]{8}\.[0-9A-F]{8}(/[0-9A-F]{8})*", "BOUNDARY", s)
    s = re.sub(r"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", "DATE", s)
    return "\n".join(_sort_report_runs(s.split("\n")))


# ---- messages --------------------------------------------------------------------------------

def corpus_first(sub):
    d = os.path.join(CORPUS, "data", sub)
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".txt"))
    except OSError:
        return None
    return os.path.join(d, names[0]) if names else None


def messages():
    msgs = [("spam", h.SPAM), ("ham", h.HAM), ("spam-crlf", h.SPAM.replace(b"\n", b"\r\n")),
            ("mbox", b"From a@example.com  Mon Jan  1 00:00:00 2024\n" + h.SPAM)]
    for name in ("ham-personal.eml", "rule-pharmacy.eml"):
        p = os.path.join(CORPUS, "fixtures", name)
        if os.path.exists(p):
            msgs.append((name, open(p, "rb").read()))
    for sub in ("spam-2", "easy-ham-1"):
        p = corpus_first(sub)
        if p:
            msgs.append((sub, open(p, "rb").read()))
    return msgs


def bsmtp(msg):
    body = msg.replace(b"\n.", b"\n..")
    return (b"MAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\nDATA\n" + body +
            (b"" if body.endswith(b"\n") else b"\n") + b".\nQUIT\n")


# ---- 1. the four-way table -------------------------------------------------------------------

MODES = [
    ("process", []), ("check", ["-c"]), ("exitcode", ["-E"]), ("symbols", ["-y"]),
    ("report", ["-R"]), ("report-ifspam", ["-r"]), ("headers", ["--headers"]), ("ping", ["-K"]),
    ("user", ["-u", "tamisc-test"]), ("oversize", ["-s", "100"]), ("nofallback", ["-x", "-E"]),
    ("learn", ["-L", "spam"]), ("forget", ["-L", "forget"]), ("tell-report", ["-C", "report"]),
    ("bsmtp", ["-B"]), ("long-opts", ["--check", "--max-size=600000", "--timeout", "30"]),
]


def four_way(spamd, tamisd):
    verdicts = {}
    for mname, margs in MODES:
        for name, msg in messages():
            stdin = bsmtp(msg) if mname == "bsmtp" else msg
            res = {}
            for sname, port in (("spamd", spamd.port), ("tamisd", tamisd.port)):
                base = ["-d", "127.0.0.1", "-p", str(port), "-t", "60"]
                for cname, prog in (("spamc", SPAMC), ("tamisc", TAMISC)):
                    res[(cname, sname)] = run(prog, base + margs, stdin)
                a, b = res[("spamc", sname)], res[("tamisc", sname)]
                check("4way %s %s %s exit" % (mname, name, sname), a[0] == b[0],
                      "spamc %d tamisc %d" % (a[0], b[0]))
                check("4way %s %s %s stdout" % (mname, name, sname), norm(a[1]) == norm(b[1]),
                      "\n--- spamc\n%r\n--- tamisc\n%r" % (a[1][:1500], b[1][:1500]))
            if mname in ("check", "symbols"):
                verdicts[(mname, name)] = (res[("tamisc", "spamd")], res[("tamisc", "tamisd")])
    for (mname, name), (sd, td) in verdicts.items():
        check("verdict %s %s" % (mname, name), sd == td, "spamd %r tamisd %r" % (sd, td))
    # the table must have exercised real verdicts, not just fallbacks
    check("table saw spam", verdicts[("check", "spam")][0] == (1, b"6.0/5.0\n"),
          repr(verdicts[("check", "spam")]))
    check("table saw ham", verdicts[("check", "ham")][0] == (0, b"1.5/5.0\n"),
          repr(verdicts[("check", "ham")]))


# ---- 2. canned fake server -------------------------------------------------------------------

class Canned:
    """Accepts connections, reads each request to EOF (the client half-closes), records it, then
    sends `reply` and closes; with reply None it never answers (a stalled spamd)."""

    def __init__(self, reply=b"", unix_path=None, host="127.0.0.1", port=0):
        self.reply = reply
        self.requests = []
        self.conns = []
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind((host, port))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            if self.reply is None:
                continue
            c.settimeout(10)
            data = b""
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    data += b
                self.requests.append(data)
                c.sendall(self.reply)
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def reply(body, spam="True ; 7.0 / 5.0", extra=b""):
    return (b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: %s\r\n" % (len(body), spam.encode())
            + extra + b"\r\n" + body)


PROCESSED = b"X-Spam-Flag: YES\n" + h.SPAM
CANNED = [
    ("good", reply(PROCESSED)),
    ("lf-only", reply(PROCESSED).replace(b"\r\n", b"\n")),
    ("no-length", b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\n\r\n" + PROCESSED),
    ("length-mismatch", reply(PROCESSED)[:-3]),
    ("error-line", b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch)\r\n"),
    ("bad-status", b"HELLO WORLD\r\n\r\n"),
    ("old-version", b"SPAMD/0.9 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\n\r\n"),
    ("empty", b""),
    ("long-header", b"SPAMD/1.1 0 EX_OK\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"),
    ("yes-flag", reply(b"report text\n\n", spam="Yes ; 7.0 / 5.0")),
    ("garbage-spam", reply(PROCESSED, spam="maybe")),
    ("negative-score", reply(b"", spam="False ; -2.5 / 5.0")),
    ("odd-version", b"SPAMD/1.50 0 PONG\r\n"),
    ("tell", b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n\r\n"),
    ("tell-remove", b"SPAMD/1.1 0 EX_OK\r\nDidRemove: local,remote\r\n\r\n\r\n"),
    ("huge-body", reply(b"x" * 20000)),
]
CANNED_FLAGS = [[], ["-x"], ["-c"], ["-c", "-x"], ["-r"], ["-R", "-x"], ["-y", "-x"], ["-K"],
                ["-E", "-x"], ["--headers"], ["-L", "spam"], ["-C", "revoke"], ["-s", "200", "-x"]]


def canned_parity():
    for name, rep in CANNED:
        srv = Canned(rep)
        try:
            for flags in CANNED_FLAGS:
                args = ["-d", "127.0.0.1", "-p", str(srv.port), "-t", "10"] + flags
                srv.requests.clear()
                a = run(SPAMC, args, h.SPAM, timeout=30)
                b = run(TAMISC, args, h.SPAM, timeout=30)
                tag = "canned %s %s" % (name, " ".join(flags))
                check(tag, a == b, "spamc %r\ntamisc %r" % (a, b))
                check(tag + " request", len(srv.requests) == 2 and
                      srv.requests[0] == srv.requests[1], repr(srv.requests)[:600])
        finally:
            srv.close()


def canned_bsmtp():
    """BSMTP: dot-unstuffing on the way in, restuffing and the envelope on the way out."""
    msg = bsmtp(h.SPAM + b".leading dot\n..two dots\nlast\n")
    for name, rep in (("good", reply(b"X-A: b\n\n.dot\nbody\n")), ("empty", b"")):
        srv = Canned(rep)
        try:
            for flags in (["-B"], ["-B", "-x"], ["-B", "-c"], ["-B", "-s", "50"]):
                srv.requests.clear()
                args = ["-d", "127.0.0.1", "-p", str(srv.port)] + flags
                a, b = run(SPAMC, args, msg), run(TAMISC, args, msg)
                tag = "bsmtp %s %s" % (name, " ".join(flags))
                check(tag, a == b, "spamc %r\ntamisc %r" % (a, b))
                check(tag + " request", len(srv.requests) in (0, 2) and
                      srv.requests[:1] == srv.requests[1:], repr(srv.requests)[:600])
        finally:
            srv.close()


# ---- 3. transport and fallbacks ---------------------------------------------------------------

def both(args, stdin, tag, expect_rc=None, expect_out=None, timeout=60):
    a = run(SPAMC, args, stdin, timeout)
    b = run(TAMISC, args, stdin, timeout)
    check(tag + " parity", a == b, "spamc %r\ntamisc %r" % (a[0], b[0]))
    if expect_rc is not None:
        check(tag + " exit", b[0] == expect_rc, "got %d" % b[0])
    if expect_out is not None:
        check(tag + " stdout", b[1] == expect_out, repr(b[1][:300]))
    return b


def failover(daemon, label):
    down = h.free_port()
    # 127.0.0.2 is loopback too, but nothing listens there: the first host refuses.
    b = both(["-d", "127.0.0.2,127.0.0.1", "-p", str(daemon.port), "-c"], h.SPAM,
             "failover %s" % label, 1, b"6.0/5.0\n")
    both(["-H", "-d", "127.0.0.2,127.0.0.1", "-p", str(daemon.port), "-c"], h.SPAM,
         "failover -H %s" % label, 1, b"6.0/5.0\n")
    # no -d: the loopback addresses of getaddrinfo(NULL), ::1 (refused) then 127.0.0.1
    both(["-p", str(daemon.port), "-c"], h.SPAM, "default host %s" % label, 1, b"6.0/5.0\n")
    both(["-4", "-p", str(daemon.port), "-c"], h.SPAM, "-4 %s" % label, 1, b"6.0/5.0\n")
    hosts = ["-d", "127.0.0.2,127.0.0.3", "-p", str(down), "--retry-sleep", "0"]
    both(hosts, h.SPAM, "all-down safe %s" % label, 0, h.SPAM)
    both(hosts + ["-x"], h.SPAM, "all-down -x %s" % label, 69, b"")
    both(hosts + ["-x", "-X"], h.SPAM, "all-down -x -X %s" % label, 75, b"")
    both(hosts + ["-c", "-x"], h.SPAM, "all-down -c -x %s" % label, 69, b"0/0\n")
    # -x disables fail-over: only the first (refusing) host is tried
    both(["-d", "127.0.0.2,127.0.0.1", "-p", str(daemon.port), "-x", "--retry-sleep", "0"],
         h.SPAM, "no failover with -x %s" % label, 69, b"")
    return b


def compression(daemon, label):
    base = ["-d", "127.0.0.1", "-p", str(daemon.port)]
    for flags in ([], ["-c"], ["-y"]):
        plain = run(TAMISC, base + flags, h.SPAM)
        z = run(TAMISC, base + flags + ["-z"], h.SPAM)
        check("-z %s %s" % (label, flags), norm(plain[1]) == norm(z[1]) and plain[0] == z[0],
              "plain %r\n-z %r" % (plain, z))
    check("-z %s scanned" % label, b"X-Spam-Flag: YES" in run(TAMISC, base + ["-z"], h.SPAM)[1])
    srv = Canned(reply(PROCESSED))
    try:
        run(TAMISC, ["-d", "127.0.0.1", "-p", str(srv.port), "-z"], h.SPAM)
        req = srv.requests[0] if srv.requests else b""
        head, _, body = req.partition(b"\r\n\r\n")
        check("-z request headers", b"\r\nCompress: zlib\r\nContent-length: %d" % len(body) in head,
              repr(head))
        check("-z request body", zlib.decompress(body) == h.SPAM if body else False)
    finally:
        srv.close()


def oversize():
    srv = Canned(reply(PROCESSED))
    try:
        big = h.SPAM + b"x" * 5000 + b"\n"
        base = ["-d", "127.0.0.1", "-p", str(srv.port), "-s", "1000"]
        both(base, big, "oversize pass-through", 0, big)
        both(base + ["-x", "-E"], big, "oversize -x -E", 0, big)
        both(base + ["-c"], big, "oversize -c", 0, b"0/0\n")
        both(base + ["-L", "spam"], big, "oversize -L", 98, b"")
        check("oversize never connects", not srv.requests, repr(srv.requests)[:200])
        huge = b"y" * 600000
        both(["-d", "127.0.0.1", "-p", str(srv.port)], huge, "default -s 512000", 0, huge)
        check("default -s never connects", not srv.requests)
    finally:
        srv.close()


def pipe_to(daemon, label, tmp):
    out = os.path.join(tmp, "tee-%s.out" % label)
    base = ["-d", "127.0.0.1", "-p", str(daemon.port)]
    direct = run(SPAMC, base, h.SPAM)
    rc, stdout = run(TAMISC, base + ["-e", "/usr/bin/tee", out], h.SPAM)
    got = open(out, "rb").read() if os.path.exists(out) else b""
    check("-e %s exit" % label, rc == 0, str(rc))
    check("-e %s command got the processed message" % label,
          norm(got) == norm(direct[1]) and b"X-Spam-Flag: YES" in got, repr(got[:300]))
    check("-e %s tee's stdout" % label, stdout == got)
    # a failure with -e still hands the original message to the command
    down = ["-d", "127.0.0.1", "-p", str(h.free_port()), "--connect-retries", "1"]
    both(down + ["-e", "/bin/cat"], h.SPAM, "-e fallback %s" % label, 0, h.SPAM)
    both(down + ["-e", "cat"], h.SPAM, "-e relative path %s" % label, 71, b"")


def stall():
    srv = Canned(None)
    try:
        base = ["-d", "127.0.0.1", "-p", str(srv.port), "-t", "2"]
        for flags, rc, out in (([], 0, h.SPAM), (["-x"], 74, b""), (["-c"], 0, b"0/0\n")):
            t0 = time.time()
            b = both(base + flags, h.SPAM, "stall -t %s" % flags, rc, out, timeout=30)
            took = time.time() - t0
            check("stall -t bounded %s" % flags, took < 15, "%.1fs" % took)
    finally:
        srv.close()


def filter_retries():
    """The first host stalls: --filter-retries moves on to the next host after -t."""
    good = Canned(reply(b"", spam="True ; 9.0 / 5.0"))
    stalled = Canned(None, host="127.0.0.2", port=good.port)
    try:
        base = ["-d", "127.0.0.2,127.0.0.1", "-p", str(good.port), "-t", "1", "-c"]
        both(base + ["--filter-retries", "2", "--filter-retry-sleep", "0"], h.SPAM,
             "filter-retries", 1, b"9.0/5.0\n", timeout=30)
        both(base, h.SPAM, "no filter-retries", 0, b"0/0\n", timeout=30)
        both(base + ["-H", "--filter-retries", "3", "--filter-retry-sleep", "0"], h.SPAM,
             "-H filter-retries", 1, b"9.0/5.0\n", timeout=30)
    finally:
        good.close()
        stalled.close()


def config_and_unix(tmp):
    cfg = os.path.join(tmp, "spamc.conf")
    srv = Canned(reply(b"", spam="True ; 7.0 / 5.0"))
    path = os.path.join(tmp, "canned.sock")
    usrv = Canned(reply(b"", spam="False ; 1.0 / 5.0"), unix_path=path)
    try:
        with open(cfg, "w") as f:
            f.write("# test config\n-d 127.0.0.1\n\n-p %d -c\n" % srv.port)
        both(["-F", cfg], h.SPAM, "-F config", 1, b"7.0/5.0\n")
        both(["-F", cfg, "-p", "1", "-x", "--connect-retries", "1"], h.SPAM,
             "command line overrides -F", 69, b"0/0\n")
        both(["-F", os.path.join(tmp, "missing.conf")], h.SPAM, "-F missing", 78, b"")
        both(["-U", path, "-c"], h.SPAM, "-U socket", 0, b"1.0/5.0\n")
        both(["-U", os.path.join(tmp, "nope.sock"), "-x"], h.SPAM, "-U missing -x", 70, b"")
        for flag in ("-h", "-V", "--help", "--version"):  # texts differ: the names do
            a, b = run(SPAMC, [flag]), run(TAMISC, [flag])
            check("%s exit" % flag, a[0] == b[0] == 0 and b"version" in b[1], repr(b))
        a, b = run(SPAMC, ["-q"]), run(TAMISC, ["-q"])
        check("unknown option", a[0] == b[0] == 64 and b"Usage" in b[1], repr(b))
        both(["-L", "spam", "-c"], h.SPAM, "usage -L -c", 64, b"")
        both(["-s", "300000000"], h.SPAM, "usage -s too big", 64, b"")
    finally:
        srv.close()
        usrv.close()


def main():
    if not (os.access(TAMISC, os.X_OK) and os.access(SPAMC, os.X_OK)):
        print("SKIP: tamisc or spamc missing")
        return 0
    tmp = tempfile.mkdtemp(prefix="tamisc-it-")
    rules = h.make_rules_dir()
    try:
        return run_all(tmp, rules)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(rules, ignore_errors=True)


def run_all(tmp, rules):
    t0 = time.time()
    canned_parity()
    canned_bsmtp()
    oversize()
    stall()
    filter_retries()
    config_and_unix(tmp)
    print("canned/transport parts: %.1fs" % (time.time() - t0), flush=True)
    with contextlib.ExitStack() as stack:
        spamd = h.Daemon(rules, real=True, wait=False,
                         args=["--allow-tell", "--max-children", "2"])
        stack.push(spamd.__exit__)
        have_tamisd = os.access(h.TAMISD, os.X_OK)
        if have_tamisd:
            tamisd = h.Daemon(rules, args=["--allow-tell"])
            stack.push(tamisd.__exit__)
        spamd.wait_ready(60)
        if not have_tamisd:
            print("SKIP four-way: tamisd not built")
        else:
            four_way(spamd, tamisd)
            for d, label in ((spamd, "spamd"), (tamisd, "tamisd")):
                failover(d, label)
                compression(d, label)
                pipe_to(d, label, tmp)
    print("total %.1fs, %d checks, %d failure(s)" % (time.time() - t0, CHECKS[0], len(FAILURES)),
          flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
