"""Helpers for tamisd integration tests: temporary rule folders, starting and stopping tamisd (and,
for byte comparisons, the reference Perl spamd) on free loopback ports, raw protocol requests.

Every wait is bounded; every daemon started here is killed when the test ends, even on failure.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TAMIS_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "../../..")))
BUILD_DIR = os.environ.get("TAMIS_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
TAMISD = os.path.join(BUILD_DIR, "tamisd")
SPAMC = "/usr/bin/spamc"
# Started as root without -u, tamisd runs as "tamis" or "nobody" (as spamd does), which cannot
# write the tests' root-owned temporary folders: tests that are not about privileges keep root.
ROOT_ARGS = ["-u", "root"] if os.geteuid() == 0 else []
SPAMD = "/usr/sbin/spamd"

# A tiny rule set: one word scores 6 (spam at required_score 5), another 1.5.
TEST_CF = """required_score 5
use_bayes 0
report_safe 0
body TEST_WORD /\\bviagra\\b/i
describe TEST_WORD Mentions the test word
score TEST_WORD 6
body TEST_LOW /\\bcheap\\b/i
describe TEST_LOW Mentions a cheap word
score TEST_LOW 1.5
"""

SPAM = b"From: a@example.com\nTo: b@example.com\nSubject: offer\nMessage-ID: <1@example.com>\n\nbuy viagra now\n"
HAM = b"From: a@example.com\nTo: b@example.com\nSubject: hello\nMessage-ID: <2@example.com>\n\ncheap lunch today?\n"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_rules_dir(extra_cf=""):
    """A temporary rules folder: Tamis's default preferences plus TEST_CF."""
    d = tempfile.mkdtemp(prefix="tamis-it-")
    prefs = os.path.join(SOURCE_DIR, "rules", "10_tamis_prefs.cf")
    if os.path.exists(prefs):
        shutil.copy(prefs, d)
    with open(os.path.join(d, "50_test.cf"), "w") as f:
        f.write(TEST_CF + extra_cf)
    # the reference spamd reads its rules as "nobody"
    os.chmod(d, 0o755)
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)
    return d


def request(port, data, shut=True, timeout=15.0, host="127.0.0.1", path=None):
    """Sends data, half-closes (as spamc does), returns everything the server sent."""
    if path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
    else:
        s = socket.create_connection((host, port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def filter_request(verb, body, version="1.5", headers=None):
    """A request as libspamc builds it."""
    hdrs = "" if headers is None else headers
    if headers is None:
        hdrs = "User: tester\r\nContent-length: %d\r\n" % len(body)
    return ("%s SPAMC/%s\r\n%s\r\n" % (verb, version, hdrs)).encode() + body


class Daemon:
    """A tamisd (or reference spamd) process on a free loopback port."""

    def __init__(self, rules_dir, args=(), real=False, port=None, wait=True, local=True):
        """local: -L, no network tests (the default: without it the daemon would send DNS queries
        to /etc/resolv.conf's servers; a network test passes local=False and a loopback
        `dns_server`, see test_dnsbl.py)."""
        self.rules_dir = rules_dir
        self.port = port or free_port()
        self.real = real
        fd, self.logpath = tempfile.mkstemp(prefix="tamisd-log-")
        os.close(fd)
        if real:
            argv = [SPAMD, "-C", rules_dir, "--siteconfigpath", "/etc/spamassassin", "-x",
                    "-i", "127.0.0.1", "-p", str(self.port), "-s", "stderr"]
        else:
            argv = [TAMISD, "-C", rules_dir, "-i", "127.0.0.1", "-p", str(self.port), "-m", "2"]
            if "-u" not in args:
                argv += ROOT_ARGS
        if local:
            argv.append("-L")
        argv += list(args)
        self.log_file = open(self.logpath, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        if wait:
            try:
                self.wait_ready()
            except Exception:
                self.__exit__()
                raise

    def wait_ready(self, timeout=30.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                if request(self.port, b"PING SPAMC/1.5\r\n\r\n", timeout=2) == b"SPAMD/1.5 0 PONG\r\n":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("daemon did not start:\n" + self.log())

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, text, timeout=10.0):
        end = time.time() + timeout
        while time.time() < end:
            if text in self.log():
                return True
            time.sleep(0.1)
        return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.log_file.closed:
            self.log_file.close()
        return self.proc.returncode

    def check_clean(self):
        """A sanitizer report in tamisd's log fails the test that ran it."""
        if self.real:
            return
        log = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                raise AssertionError("tamisd reported a sanitizer error:\n" + log[-4000:])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        try:
            self.check_clean()
        finally:
            try:
                os.unlink(self.logpath)
            except OSError:
                pass


def spamc(args, stdin, timeout=30.0):
    """Runs the real spamc; returns (exit status, stdout bytes)."""
    p = subprocess.run([SPAMC] + list(args), input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout
