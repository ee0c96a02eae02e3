"""The load proof (issue 8): 1,000 concurrent connections of which 900 are slow (one byte per
second) while 100 normal clients scan; the normal clients' p99 latency stays within 2x of an idle
daemon's, and memory stays bounded (RSS from /proc). Then a flood of malformed requests from one
address gets that address banned while the others are still served.

Method: the same workload (100 client threads, 4 scans each, so 400 samples per run, after a
warm-up round) runs against the idle daemon and with the 900 slow connections open, alternately,
eight times each, in the order idle-loaded, loaded-idle, ... (short alternating runs, so that
the shared machine's own load, which changes from second to second, weighs on both alike). The
median of the runs' p99s is compared, loaded against idle: a stall of the shared machine makes
one run's p99 several times the others' and must not decide; the pooled 3,200 samples' p99s are
compared as well when the machine is not overloaded (load average under twice the cores).
The slow ones come from nine loopback addresses (100 each, under --max-connections-per-ip) and
are fed by a child process, one byte each per second; they stay open for the whole run
(--min-rate-grace and --timeout-tcp above it), since this measures holding them, not cutting them
off (test_limits.py does that). The flood too runs in a child process. Both children play remote
clients, which would not share the server's CPUs: they run at the lowest CPU priority, and do not
share the client threads' interpreter lock. Bounded: about 25 s; every process is killed at the
end. The figures are printed."""
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import tamisd_harness as h  # noqa: E402
from tamisd_harness import SPAM, Daemon, filter_request, make_rules_dir  # noqa: E402

SLOW = 900
SLOW_SOURCES = ["127.0.1.%d" % i for i in range(1, 10)]
CLIENTS = 100
PER_CLIENT = 4
ROUNDS = 8
REQ = filter_request("CHECK", SPAM)
WANT = b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6.0 / 5.0\r\n\r\n"
FLOOD_SRC = "127.0.0.66"

FLOOD = r"""
import socket, sys, time
port, src, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
sent = refused = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GARBAGE\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        got = s.recv(100)
        sent += 1
        refused += got == b""
    except OSError:
        refused += 1
    finally:
        s.close()
print(sent, refused)
"""


def boost():
    """The daemon and the measuring clients run at a higher CPU priority than the rest of a shared
    machine (where allowed: root), for the whole test, idle and loaded runs alike: what is
    measured is then what the slow clients do to the daemon, not what other jobs do to both. The
    child processes that play remote clients go back to the lowest priority (remote)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
        return True
    except OSError:
        return False


def remote():
    """Runs in the children that play remote clients: lowest CPU priority."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def sanitized():
    with open(h.TAMISD, "rb") as f:
        return b"__asan_init" in f.read()


def status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return 0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def one_scan(port):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        s.sendall(REQ)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            out += b
    finally:
        s.close()
    return time.perf_counter() - t0, out


def workload(port, clients=CLIENTS, per_client=PER_CLIENT):
    """clients threads, per_client scans each, started together: (latencies, bad replies)."""
    lat, bad = [], []
    lock = threading.Lock()
    start = threading.Barrier(clients, timeout=30)

    def run():
        start.wait()
        for _ in range(per_client):
            try:
                t, out = one_scan(port)
            except OSError as e:
                t, out = None, repr(e).encode()
            with lock:
                if out == WANT:
                    lat.append(t)
                else:
                    bad.append(out)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return sorted(lat), bad


def server_ms(log):
    """The daemon's own accept-to-reply times (ms) in a piece of its log."""
    return [float(m) for m in re.findall(r" total_ms=([0-9.]+)", log)]


def pct(sorted_lat, p):
    if not sorted_lat:
        return float("inf")
    return sorted_lat[min(len(sorted_lat) - 1, int(len(sorted_lat) * p / 100.0))]


# The slow clients, in a child process (so they do not take the interpreter lock from the client
# threads): opens them, prints "ready", then sends each one byte a second, spread over the second
# in tenths, until its stdin closes; prints how many the server closed.
SLOW_CLIENTS = r"""
import select, socket, sys, threading, time
port, n, sources = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
data = b"CHECK SPAMC/1.5\r\nContent-length: 100000\r\n\r\n"
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((sources[i % len(sources)], 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    socks.append(s)
print("ready", flush=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
closed = set()
tick = 0
while not stop.wait(0.1):
    part = tick % 10
    for i in range(part, n, 10):
        if i in closed:
            continue
        try:
            socks[i].send(data[(tick // 10) % len(data):][:1])
            if select.select([socks[i]], [], [], 0)[0] and socks[i].recv(100) == b"":
                closed.add(i)
        except OSError:
            closed.add(i)
    tick += 1
print(len(closed), flush=True)
"""


class SlowClients:
    def __init__(self, port):
        self.p = subprocess.Popen([sys.executable, "-c", SLOW_CLIENTS, str(port), str(SLOW),
                                   ",".join(SLOW_SOURCES)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, preexec_fn=remote)
        line = self.p.stdout.readline()  # bounded: connect() times out after 10 s
        if line != b"ready\n":
            self.close()
            raise RuntimeError("slow clients did not start: %r" % line)

    def close(self):
        """Stops them; returns how many the server closed (None if unknown)."""
        if self.p.poll() is not None:
            return None
        try:
            out, _ = self.p.communicate(b"", timeout=10)
            return int(out.split()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            self.p.kill()
            self.p.wait(5)
            return None


class LoadTest(unittest.TestCase):
    def test_load(self):
        nofile = raise_nofile()
        if nofile < SLOW + CLIENTS + 200:
            self.skipTest("RLIMIT_NOFILE hard limit %d is too low" % nofile)
        rules = make_rules_dir()
        self.addCleanup(shutil.rmtree, rules, True)
        boosted = boost()
        d = Daemon(rules, ["-A", "127.0.0.0/8", "-m", "2", "--max-connections", "2000",
                           "--min-rate-grace", "120", "--timeout-tcp", "120"])
        self.addCleanup(d.__exit__)
        pid = d.proc.pid
        t_start = time.monotonic()
        load_start = os.getloadavg()[0]

        workload(d.port, CLIENTS, 3)  # warm-up: thread pool, page cache, allocator
        rss_idle = status(pid, "VmRSS")
        idle, loaded, s_idle, s_loaded = [], [], [], []
        fds_loaded = rss_loaded = 0
        p99_idle, p99_loaded = [], []
        for rnd in range(ROUNDS):
            # idle and loaded runs alternate, in the order idle-loaded, loaded-idle, ... so that
            # the shared machine's own load, which changes from second to second, and any drift
            # weigh on both alike
            for kind in ("idle", "loaded") if rnd % 2 == 0 else ("loaded", "idle"):
                slow = None
                if kind == "loaded":
                    slow = SlowClients(d.port)
                    self.addCleanup(slow.close)
                    self.assertTrue(self.wait(lambda: open_fds(pid) >= SLOW, 10),
                                    "daemon holds %d descriptors" % open_fds(pid))
                    time.sleep(0.5)  # the slow ones are trickling
                off = len(d.log())
                lat, bad = workload(d.port)
                self.assertEqual(bad, [])
                if kind == "loaded":
                    fds_loaded = max(fds_loaded, open_fds(pid))
                    rss_loaded = max(rss_loaded, status(pid, "VmRSS"))
                    loaded += lat
                    p99_loaded.append(pct(sorted(lat), 99))
                    s_loaded += server_ms(d.log()[off:])
                    self.assertEqual(slow.close(), 0, "the server closed slow clients")
                    self.assertTrue(self.wait(lambda: open_fds(pid) < 100, 10))
                else:
                    idle += lat
                    p99_idle.append(pct(sorted(lat), 99))
                    s_idle += server_ms(d.log()[off:])
        idle.sort()
        loaded.sort()

        # the flood, with slow clients open and normal clients scanning
        slow = SlowClients(d.port)
        self.addCleanup(slow.close)
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(d.port), FLOOD_SRC, "4"],
                                 stdout=subprocess.PIPE, preexec_fn=remote)
        try:
            during, bad_during = workload(d.port, CLIENTS, 5)
            fout, _ = flood.communicate(timeout=20)
        finally:
            if flood.poll() is None:
                flood.kill()
                flood.wait(5)
        sent, refused = (int(x) for x in fout.split())
        rss_peak = status(pid, "VmHWM")
        self.assertEqual(slow.close(), 0, "the server closed slow clients")

        elapsed = time.monotonic() - t_start
        p50i, p99i, p50l, p99l = pct(idle, 50), pct(idle, 99), pct(loaded, 50), pct(loaded, 99)
        s_idle.sort()
        s_loaded.sort()
        print("load: %d slow + %d normal clients; %d rounds of idle and loaded runs, %d scans "
              "each; the daemon held up to %d descriptors"
              % (SLOW, CLIENTS, ROUNDS, CLIENTS * PER_CLIENT, fds_loaded))
        print("load: idle   p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d samples)"
              % (p50i * 1e3, p99i * 1e3, idle[-1] * 1e3, len(idle)))
        print("load: loaded p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d samples)"
              % (p50l * 1e3, p99l * 1e3, loaded[-1] * 1e3, len(loaded)))
        print("load: p99 of each run, ms: idle %s; loaded %s"
              % (" ".join("%.0f" % (x * 1e3) for x in p99_idle),
                 " ".join("%.0f" % (x * 1e3) for x in p99_loaded)))
        print("load: inside the daemon (accept to reply, its log): idle p99 %.1f ms, loaded p99 "
              "%.1f ms" % (pct(s_idle, 99), pct(s_loaded, 99)))
        print("load: RSS idle %d kB, with %d slow connections %d kB (+%.1f kB per connection), "
              "peak %d kB" % (rss_idle, SLOW, rss_loaded, (rss_loaded - rss_idle) / SLOW,
                              rss_peak))
        print("load: flood from %s: %d answered, %d refused; %d normal scans meanwhile, p99 "
              "%.1f ms, %d failed" % (FLOOD_SRC, sent, refused, len(during), pct(during, 99) * 1e3,
                                      len(bad_during)))
        print("load: run time %.1f s; daemon and clients at nice -10: %s" % (elapsed, boosted))

        # Judged: the median p99 of the loaded runs against the median p99 of the idle runs. A
        # stall of the shared machine (other builds, other tests) lands on one run and makes its
        # p99 several times the others', in either kind of run; the medians ignore such runs.
        # The pooled p99 is judged too when the machine was not overloaded.
        med = statistics.median(p99_loaded) / statistics.median(p99_idle)
        loadavg = max(load_start, os.getloadavg()[0])
        busy = loadavg > 2 * (os.cpu_count() or 1)
        print("load: median-of-runs p99 ratio %.2f (limit 2); pooled p99 ratio %.2f %s"
              % (med, p99l / p99i, "not judged: machine overloaded (load average %.1f on %d cores)"
                 % (loadavg, os.cpu_count() or 1) if busy else "(limit 2)"))
        self.assertLessEqual(med, 2.0, "p99 under load more than twice the idle p99")
        if not busy:
            self.assertLessEqual(p99l, 2 * p99i, "p99 under load more than twice the idle p99")
        # bounded memory: a connection costs a few kB (its state and the request parser), never
        # anything proportional to what a slow client might send. Under AddressSanitizer (red
        # zones, a quarantine of freed memory) the figures are printed, not judged.
        if not sanitized():
            self.assertLess(rss_loaded - rss_idle, 32 * SLOW, "more than 32 kB per slow connection")
            self.assertLess(rss_peak, 256 * 1024)
        self.assertIn(" ban: [%s]" % FLOOD_SRC, d.log())
        self.assertGreater(refused, 0)
        self.assertEqual(bad_during, [])
        self.assertEqual(len(during), CLIENTS * 5)
        self.assertNotIn("refused [127.0.1.", d.log())  # the slow ones were all admitted
        self.assertLess(elapsed, 60)

    @staticmethod
    def wait(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.1)
        return pred()


if __name__ == "__main__":
    unittest.main(verbosity=2)
