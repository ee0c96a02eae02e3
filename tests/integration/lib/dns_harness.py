"""A real authoritative DNS server for tests: Debian's unbound on 127.0.0.1 and a free port,
serving only the records a test gives it. Every other name is REFUSED (local-zone "." refuse), so
unbound never recurses and no query leaves loopback.

    with Unbound(["example.multi.uribl.com. 300 IN A 127.0.0.2"]) as dns:
        cf = f"dns_server 127.0.0.1:{dns.port}"
        dns.pause()    # SIGSTOP: queries go unanswered (timeouts)
        dns.resume()

Records are unbound `local-data` strings (any type unbound knows: A, AAAA, TXT, MX, NS, PTR, SOA).
Each owner name's zone is declared `static` (unbound answers NXDOMAIN for names it does not hold
under a declared zone, with an SOA so negative answers carry a TTL). Every wait is bounded.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

UNBOUND = "/usr/sbin/unbound"

# Every DNS list the stock SpamAssassin 4.0.1 rules query. Declared as zones (Unbound(zones=...)),
# their unlisted names answer NXDOMAIN, as a real list does, rather than REFUSED.
STOCK_LIST_ZONES = (
    "multi.uribl.com", "dbl.spamhaus.org", "multi.surbl.org", "zen.spamhaus.org", "bl.spamcop.net",
    "dob.sibl.support-intelligence.net", "list.dnswl.org", "bl.mailspike.net", "wl.mailspike.net",
    "psbl.surriel.com", "bl.score.senderscore.com", "iadb.isipp.com", "sa-trusted.bondedsender.org",
    "sa-accredit.habeas.com", "activationcode.r.mail-abuse.com", "nonconfirm.mail-abuse.com",
)


def available():
    return os.access(UNBOUND, os.X_OK)


def _free_udp_tcp_port():
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def _quote(s):
    # unbound's configuration lexer has no escapes inside quotes: a record holding double quotes
    # (TXT "text with spaces") is wrapped in single quotes instead
    if '"' in s:
        if "'" in s:
            raise ValueError("a local-data record cannot hold both quote characters: " + s)
        return "'" + s + "'"
    return '"' + s + '"'


class Unbound:
    def __init__(self, records, zones=(), timeout=10.0, log_queries=False):
        """records: local-data strings; zones: extra zone names to declare static (their
        unlisted names answer NXDOMAIN instead of REFUSED); log_queries: unbound logs every query
        it receives (see queries())."""
        self.records = list(records)
        self.log_queries = log_queries
        self.zones = set(z.rstrip(".").lower() for z in zones)
        for r in self.records:
            self.zones.add(self._zone_of(r.split()[0]))
        self.timeout = timeout
        self.dir = None
        self.proc = None
        self.port = None

    @staticmethod
    def _zone_of(owner):
        labels = owner.rstrip(".").lower().split(".")
        # the list zones of the tests are 2-3 labels (multi.uribl.com, zen.spamhaus.org): declare
        # the parent of the owner's first label, which holds every sibling entry
        return ".".join(labels[1:]) if len(labels) > 2 else ".".join(labels)

    def _write_conf(self):
        lines = [
            "server:",
            "  interface: 127.0.0.1",
            f"  port: {self.port}",
            "  do-ip6: no",
            "  do-daemonize: no",
            '  chroot: ""',
            '  username: ""',
            f'  directory: "{self.dir}"',
            '  pidfile: ""',
            "  use-syslog: no",
            f'  logfile: "{self.dir}/unbound.log"',
            "  verbosity: 0",
            "  log-queries: %s" % ("yes" if self.log_queries else "no"),
            "  access-control: 127.0.0.0/8 allow",
            "  so-rcvbuf: 4m",  # bursts of queries from the benches: no drops
            '  local-zone: "." refuse',
        ]
        for z in sorted(self.zones):
            lines.append(f'  local-zone: "{z}." static')
            lines.append(f'  local-data: "{z}. 3600 IN SOA ns.{z}. hostmaster.{z}. 1 3600 600 86400 60"')
        for r in self.records:
            lines.append(f"  local-data: {_quote(r)}")
        lines += ["remote-control:", "  control-enable: no", ""]
        with open(os.path.join(self.dir, "unbound.conf"), "w") as f:
            f.write("\n".join(lines))

    def _ready(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self):
        if not available():
            raise RuntimeError("unbound is not installed (Debian package unbound)")
        self.dir = tempfile.mkdtemp(prefix="tamis-dns-")
        for _ in range(5):
            self.port = _free_udp_tcp_port()
            self._write_conf()
            self.proc = subprocess.Popen([UNBOUND, "-d", "-c", os.path.join(self.dir, "unbound.conf")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            until = time.monotonic() + self.timeout
            while time.monotonic() < until and self.proc.poll() is None and not self._ready():
                time.sleep(0.02)
            if self.proc.poll() is None and self._ready():
                return self
            self.stop()
            self.dir = tempfile.mkdtemp(prefix="tamis-dns-")
        raise RuntimeError("unbound did not start: " + self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "unbound.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def queries(self):
        """[(client ip, name lower case without the final dot, type)] of every query unbound logged
        so far (log_queries=True), in order. unbound writes its log line by line as it goes."""
        out = []
        try:
            with open(os.path.join(self.dir, "unbound.log"), errors="replace") as f:
                for line in f:
                    # "[1700000000] unbound[12:0] info: 127.0.0.1 name.zone. A IN"
                    parts = line.split()
                    if len(parts) >= 7 and parts[2] == "info:" and parts[-1] == "IN":
                        out.append((parts[3], parts[4].rstrip(".").lower(), parts[5]))
        except OSError:
            pass
        return out

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
