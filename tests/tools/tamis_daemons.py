"""Helpers shared by tests/integration/test_parity.py and bench/throughput: start tamisd or
SpamAssassin's spamd on a free loopback port, wait until it answers, drive it with the real spamc,
sample memory, and stop it for sure.

Everything here talks to 127.0.0.1 only and every wait is bounded.
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

STOCK_RULES = "/usr/share/spamassassin"
STOCK_SITE = "/etc/spamassassin"
SPAMC = "/usr/bin/spamc"
SPAMD = "/usr/sbin/spamd"


def source_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("TAMIS_SOURCE_DIR") or os.path.dirname(os.path.dirname(here))


def find_tamisd(build_dir=None):
    """Path of the tamisd binary: $TAMISD, else <build>/tamisd (build = TAMIS_BUILD_DIR or build/)."""
    if os.environ.get("TAMISD"):
        return os.environ["TAMISD"]
    build_dir = build_dir or os.environ.get("TAMIS_BUILD_DIR") or os.path.join(source_dir(), "build")
    for cand in (os.path.join(build_dir, "tamisd"), os.path.join(build_dir, "spamd", "tamisd")):
        if os.access(cand, os.X_OK):
            return cand
    return os.path.join(build_dir, "tamisd")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port, timeout=2.0):
    """True if the daemon answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PING SPAMC/1.5\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return b"PONG" in data
    except OSError:
        return False


class Daemon:
    """One running daemon (tamisd or spamd). Use as a context manager, or call stop() in finally."""

    def __init__(self, name, argv, port, log_path):
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")
        # Own process group, so that spamd's children go with it.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with status %s during start-up:\n%s"
                                   % (self.name, self.proc.returncode, self.log_tail()))
            if ping(self.port, timeout=2.0):
                return
            time.sleep(0.2)
        raise RuntimeError("%s did not answer PING on port %d within %d s:\n%s"
                           % (self.name, self.port, timeout, self.log_tail()))

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=40):
        try:
            if not self._log.closed:
                self._log.flush()
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def pids(self):
        """The daemon and its children (spamd pre-forks), from /proc."""
        root = self.proc.pid
        result = [root]
        try:
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    with open("/proc/%s/stat" % d) as f:
                        st = f.read()
                    ppid = int(st.rsplit(")", 1)[1].split()[1])
                    if ppid == root:
                        result.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        except OSError:
            pass
        return result

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL of the whole process group. Returns the exit status."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        # spamd children may outlive the parent for a moment; make sure the group is gone.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_tamisd(port, log_path, workers=2, extra=(), tamisd=None):
    argv = [tamisd or find_tamisd(), "-i", "127.0.0.1", "-p", str(port), "-m", str(workers),
            "-C", STOCK_RULES, "--siteconfigpath", STOCK_SITE, "-L", "--cf", "use_bayes 0"]
    argv += list(extra)
    return Daemon("tamisd", argv, port, log_path)


def start_spamd(port, log_path, children=2, extra=()):
    argv = [SPAMD, "-i", "127.0.0.1", "-p", str(port), "-A", "127.0.0.1",
            "--max-children", str(children), "--min-children", str(children),
            "--max-spare", str(children), "--min-spare", str(children),
            "-L", "--cf", "use_bayes 0", "-C", STOCK_RULES, "--siteconfigpath", STOCK_SITE, "-x",
            "-s", "stderr"]
    argv += list(extra)
    return Daemon("spamd", argv, port, log_path)


def spamc(port, mode, data, timeout=120):
    """Runs the real spamc in one mode ('-c', '-y', '-R', …) with data on stdin.
    Returns (exit status, stdout bytes, seconds). -x: no safe fallback, so errors are visible."""
    t0 = time.monotonic()
    p = subprocess.run([SPAMC, "-x", "-d", "127.0.0.1", "-p", str(port), "-t", str(timeout),
                        "-s", "50000000", mode], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout + 10)
    return p.returncode, p.stdout, time.monotonic() - t0


_CHECK_RE = re.compile(rb"^\s*(-?[0-9.]+)/(-?[0-9.]+)\s*$")


def parse_check(out):
    """spamc -c output 'score/threshold' -> (score, threshold) or None."""
    m = _CHECK_RE.match(out.strip())
    if not m:
        return None
    return float(m.group(1)), float(m.group(2))


def display_score(score, required, is_spam):
    """The score spamd prints (spec-protocol §4.1): %2.1f, but r - 0.1 for a ham at or above r."""
    s = float("%2.1f" % score)
    r = float("%2.1f" % required)
    if is_spam or s < r:
        return s
    return round(r - 0.1, 1)


def vmhwm_kb(pid):
    """Peak resident set size (VmHWM) of a process in kB, or 0 if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def vmrss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def read_list(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)
