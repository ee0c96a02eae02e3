"""A hermetic Postfix instance for integration tests (spec-postfix.md §5).

Postfix runs from a scratch config_directory and queue_directory under a temporary folder, listens
on free loopback ports only, and delivers every recipient of the domain test.invalid into one
Maildir (virtual(8), as user nobody). `postfix start` needs root; tests skip without it.
Every command is bounded in time; stop() kills the instance even when a test failed.
"""
import glob
import os
import shutil
import subprocess
import tempfile
import time

POSTFIX = "/usr/sbin/postfix"
SWAKS = "/usr/bin/swaks"
DOMAIN = "test.invalid"

MASTER_BASE = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available():
    return os.geteuid() == 0 and os.path.exists(POSTFIX) and os.path.exists(SWAKS)


def run(argv, timeout=60, env=None, input=None):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          env=env, input=input)


class Postfix:
    """main_extra / master_extra: the lines of the integration under test."""

    def __init__(self, smtpd_port, main_extra="", master_extra="", smtpd_opts=""):
        self.dir = tempfile.mkdtemp(prefix="tamis-pf-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.maildir = os.path.join(self.dir, "mail", "box")
        self.port = smtpd_port
        for d in (self.etc, self.spool, os.path.join(self.dir, "data"),
                  os.path.join(self.dir, "mail")):
            os.makedirs(d)
        os.chmod(os.path.join(self.dir, "mail"), 0o777)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self.main_cf() + main_extra)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n%s" % (smtpd_port, smtpd_opts))
            f.write(MASTER_BASE + master_extra)
        self.started = False

    def main_cf(self):
        d = self.dir
        return f"""compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = pftest
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = pftest.invalid
mydomain = invalid
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
default_process_limit = 20
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 1
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
"""

    def cmd(self, *args, timeout=60):
        return run([POSTFIX, "-c", self.etc] + list(args), timeout=timeout)

    def start(self):
        r = self.cmd("check")
        if r.returncode != 0:
            raise RuntimeError("postfix check failed:\n" + r.stdout.decode(errors="replace"))
        r = self.cmd("start")
        if r.returncode != 0:
            raise RuntimeError("postfix start failed:\n" + r.stdout.decode(errors="replace"))
        self.started = True

    def stop(self):
        if self.started:
            try:
                self.cmd("stop", timeout=30)
            except subprocess.TimeoutExpired:
                pass
            pidf = os.path.join(self.spool, "pid", "master.pid")
            try:
                with open(pidf) as f:
                    os.kill(int(f.read().strip()), 9)
            except (OSError, ValueError):
                pass
            self.started = False
        shutil.rmtree(self.dir, True)

    def swaks(self, to, body, subject="test", extra=(), timeout=60):
        """Sends one message; returns (exit status, transcript)."""
        argv = [SWAKS, "--server", "127.0.0.1", "--port", str(self.port), "--from",
                "sender@example.com", "--to", to, "--helo", "client.example.com",
                "--header", "Subject: " + subject, "--body", body, "--timeout", "60"]
        stdin = None
        if len(body) > 10000:  # too long for argv: through stdin
            stdin = body.encode()
            argv[argv.index(body)] = "-"
        r = run(argv + list(extra), timeout=timeout, input=stdin)
        return r.returncode, r.stdout.decode(errors="replace")

    def delivered(self):
        """Delivered messages (bytes), oldest first."""
        files = glob.glob(os.path.join(self.maildir, "new", "*"))
        files.sort(key=os.path.getmtime)
        out = []
        for p in files:
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def wait_delivered(self, n, timeout=30.0):
        end = time.time() + timeout
        while time.time() < end:
            got = self.delivered()
            if len(got) >= n:
                return got
            time.sleep(0.2)
        return self.delivered()

    def queue(self):
        r = run(["/usr/sbin/postqueue", "-c", self.etc, "-p"], timeout=30)
        return r.stdout.decode(errors="replace")

    def flush(self):
        run(["/usr/sbin/postqueue", "-c", self.etc, "-f"], timeout=30)

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""
