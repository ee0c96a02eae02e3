#!/usr/bin/env python3
"""End-to-end throughput through a real Postfix with each Tamis hook (docs/postfix.md), against the
same Postfix with no filter, in the same run: messages per second from the first SMTP submission
to the last delivery into the Maildir, and the ratio to the unfiltered figure.

    sudo bench/postfix/run.py [--messages 400] [--clients 8] [--repeat 3] [--rules DIR] [--build DIR]

Needs root (postfix start), Debian's postfix and spamc. Messages: corpus/fixtures/*.eml, cycled.
Rules: Tamis's bundled rules/ by default (real scanning cost). Prints one line per method and a
JSON summary on the last line."""
import argparse
import glob
import json
import os
import smtplib
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(SRC, "tests/integration/postfix_lib"))
sys.path.insert(0, os.path.join(SRC, "tests/integration"))
import pftest  # noqa: E402
from common import Daemon, free_port  # noqa: E402
from test_postfix_pipe import MASTER as PIPE_MASTER, SYSTEM_MAIN_CF  # noqa: E402
from test_postfix_smtp import MASTER as SMTP_MASTER  # noqa: E402


def load_messages():
    msgs = []
    for p in sorted(glob.glob(os.path.join(SRC, "corpus/fixtures/*.eml"))):
        with open(p, "rb") as f:
            data = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if len(data) < 200000:
            msgs.append(data)
    return msgs


def send_all(port, msgs, n, clients):
    """n messages over `clients` parallel SMTP connections (a few messages per connection)."""
    errors = []
    counter = iter(range(n))
    lock = threading.Lock()

    def worker():
        s = None
        sent = 0
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            try:
                if s is None or sent >= 20:
                    if s:
                        s.quit()
                    s = smtplib.SMTP("127.0.0.1", port, timeout=120)
                    sent = 0
                s.sendmail("bench@example.com", ["u%d@%s" % (i, pftest.DOMAIN)], msgs[i % len(msgs)])
                sent += 1
            except (smtplib.SMTPException, OSError) as e:
                errors.append(str(e))
                s = None
        if s:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass

    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def one_run(method, args, msgs):
    rules = args.rules or os.path.join(SRC, "rules")
    d = None
    port = free_port()
    main, master, smtpd_opts = "", "", ""
    tamis_args = ["-m", str(args.workers)]
    if method == "milter":
        mport = free_port()
        tamis_args += ["--milter", "127.0.0.1:%d" % mport]
        main = ("smtpd_milters = inet:127.0.0.1:%d\nmilter_default_action = tempfail\n"
                "milter_protocol = 6\n" % mport)
    elif method == "smtp":
        fport, rport = free_port(), free_port()
        tamis_args += ["--smtp-listen", "127.0.0.1:%d" % fport,
                       "--smtp-relay", "127.0.0.1:%d" % rport]
        main = ("content_filter = scan:[127.0.0.1]:%d\nreceive_override_options = "
                "no_address_mappings\nrelay_rcpt_checks = permit_mynetworks, reject\n" % fport)
        master = SMTP_MASTER.format(relay=rport)
    elif method == "pipe":
        smtpd_opts = "    -o content_filter=spamassassin:dummy\n"
        master = PIPE_MASTER.format(spamc="/usr/bin/spamc", port=port)
    if method != "none":
        d = Daemon(rules, tamis_args, port=port)
    pf = pftest.Postfix(free_port(), main_extra=main + "default_process_limit = 50\n",
                        master_extra=master, smtpd_opts=smtpd_opts)
    old_cf = None
    try:
        if method == "pipe":
            old_cf = open(SYSTEM_MAIN_CF).read() if os.path.exists(SYSTEM_MAIN_CF) else ""
            with open(SYSTEM_MAIN_CF, "w") as f:
                f.write(old_cf + "\nalternate_config_directories = %s\n" % pf.etc)
        pf.start()
        t0 = time.time()
        errors = send_all(pf.port, msgs, args.messages, args.clients)
        got = pf.wait_delivered(args.messages, timeout=args.timeout)
        dt = time.time() - t0
        tagged = sum(1 for m in got if b"X-Spam-Status:" in m)
        return {"method": method, "delivered": len(got), "errors": len(errors),
                "seconds": round(dt, 2), "msgs_per_s": round(len(got) / dt, 1), "tagged": tagged}
    finally:
        pf.stop()
        if d:
            d.__exit__()
        if old_cf is not None:
            if old_cf:
                with open(SYSTEM_MAIN_CF, "w") as f:
                    f.write(old_cf)
            else:
                os.unlink(SYSTEM_MAIN_CF)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rules")
    ap.add_argument("--build")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--methods", default="none,milter,smtp,pipe")
    ap.add_argument("--repeat", type=int, default=3, help="runs per method, interleaved; median kept")
    args = ap.parse_args()
    if args.build:
        os.environ["TAMIS_BUILD_DIR"] = args.build
        import tamisd_harness
        tamisd_harness.TAMISD = os.path.join(args.build, "tamisd")
    if not pftest.available():
        sys.exit("needs root, postfix and swaks")
    msgs = load_messages()
    methods = args.methods.split(",")
    runs = {m: [] for m in methods}
    for _ in range(args.repeat):  # interleaved, so a noisy moment does not favour one method
        for m in methods:
            runs[m].append(one_run(m, args, msgs))
    results = []
    for m in methods:
        rs = sorted(runs[m], key=lambda r: r["msgs_per_s"])
        r = dict(rs[len(rs) // 2])
        r["all_msgs_per_s"] = [x["msgs_per_s"] for x in runs[m]]
        results.append(r)
    base = next((r["msgs_per_s"] for r in results if r["method"] == "none"), None)
    for r in results:
        r["ratio_to_none"] = round(r["msgs_per_s"] / base, 3) if base else None
        print("%-7s %4d delivered (%d tagged, %d errors) in %6.2f s: %7.1f msg/s  ratio %s" % (
            r["method"], r["delivered"], r["tagged"], r["errors"], r["seconds"], r["msgs_per_s"],
            r["ratio_to_none"]))
    print(json.dumps({"messages": args.messages, "clients": args.clients, "repeat": args.repeat,
                      "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
