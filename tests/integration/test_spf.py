#!/usr/bin/env python3
"""SPF (RFC 7208) side by side with a real peer: pyspf (Debian python3-spf) and Tamis's
check_host() answer the same table of cases from the same real DNS server (unbound, see
lib/dns_harness.py), and must give the same result, which must also be the case's expected
one (so that both cannot be wrong together silently).

The Tamis side is tests/unit/test_auth_spf_live.c (built as test_auth_spf_live): it reads the
cases from a file, resolves through a real tamis_net resolver and writes its results. Two rounds:
the normal cases, then the temperror cases with unbound stopped (SIGSTOP).

Skipped (exit 0 with a message) when unbound, pyspf or the driver is missing.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import dns_harness  # noqa: E402

# The harness writes local-data in double quotes with the inner quotes backslash-escaped, which
# unbound does not unescape: a TXT "v=spf1 -all" would be served as the strings '"v=spf1' and
# '-all"'. Single quotes need no escaping (no record below contains one).
dns_harness._quote = lambda s: "'" + s + "'"

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TAMIS_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "../..")))
BUILD_DIR = os.environ.get("TAMIS_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
DRIVER = os.environ.get("TAMIS_SPF_DRIVER", os.path.join(BUILD_DIR, "tests", "test_auth_spf_live"))

Z = "spf.test"
HOST = f"a:host.{Z}"

RECORDS = [
    # all and the qualifiers
    f'all-pass.{Z}. TXT "v=spf1 +all"',
    f'all-fail.{Z}. TXT "v=spf1 -all"',
    f'all-soft.{Z}. TXT "v=spf1 ~all"',
    f'all-neutral.{Z}. TXT "v=spf1 ?all"',
    f'empty.{Z}. TXT "v=spf1"',
    # ip4, ip6 and CIDR
    f'ip4.{Z}. TXT "v=spf1 ip4:192.0.2.0/24 ~ip4:198.51.100.7 -all"',
    f'ip6.{Z}. TXT "v=spf1 ip6:2001:db8:1::/48 -ip6:2001:db8::/32 ?all"',
    f'upper.{Z}. TXT "V=SPF1 IP4:192.0.2.0/25 -ALL"',
    # a, with dual CIDR
    f'a.{Z}. TXT "v=spf1 a -all"',
    f'a.{Z}. A 192.0.2.10',
    f'a.{Z}. AAAA 2001:db8::10',
    f'acidr.{Z}. TXT "v=spf1 a:host.{Z}/24//64 -all"',
    f'host.{Z}. A 198.51.100.200',
    f'host.{Z}. AAAA 2001:db8:5:6::1',
    # mx
    f'mx.{Z}. TXT "v=spf1 mx -all"',
    f'mx.{Z}. MX 10 mx1.{Z}.',
    f'mx.{Z}. MX 20 mx2.{Z}.',
    f'mx1.{Z}. A 203.0.113.1',
    f'mx2.{Z}. A 203.0.113.2',
    f'mx2.{Z}. AAAA 2001:db8:2::2',
    f'mxcidr.{Z}. TXT "v=spf1 mx:mx.{Z}/30 -all"',
    f'mx11.{Z}. TXT "v=spf1 mx ip4:192.0.2.0/24 -all"',
] + [f'mx11.{Z}. MX {i} {"mx1" if i == 1 else f"m{i}"}.{Z}.' for i in range(1, 12)] + [
    # ptr (and the %{p} macro below)
    f'ptr.{Z}. TXT "v=spf1 ptr -all"',
    f'ptrdom.{Z}. TXT "v=spf1 ptr:ptr.{Z} -all"',
    '5.113.0.203.in-addr.arpa. PTR mail.ptr.spf.test.',
    f'mail.ptr.{Z}. A 203.0.113.5',
    '6.113.0.203.in-addr.arpa. PTR liar.ptr.spf.test.',
    f'liar.ptr.{Z}. A 10.0.0.1',
    # exists with every macro letter and transformer
    f'm-i.{Z}. TXT "v=spf1 exists:%{{i}}.ip.{Z} -all"',
    f'192.0.2.50.ip.{Z}. A 127.0.0.2',
    f'm-ir.{Z}. TXT "v=spf1 exists:%{{ir}}.%{{v}}.rev.{Z} -all"',
    f'50.2.0.192.in-addr.rev.{Z}. A 127.0.0.2',
    '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.rev.spf.test. A 127.0.0.2',
    f'm-l.{Z}. TXT "v=spf1 exists:%{{l2r+-}}.lp.{Z} -all"',
    f'b.a.lp.{Z}. A 127.0.0.2',
    f'm-s.{Z}. TXT "v=spf1 exists:%{{s2}}.%{{l}}.s.{Z} -all"',
    f'spf.test.jo.s.{Z}. A 127.0.0.2',
    f'm-o.{Z}. TXT "v=spf1 include:sub.m-o.{Z} -all"',
    f'sub.m-o.{Z}. TXT "v=spf1 exists:%{{o}}.%{{d2r}}.o.{Z} -all"',
    f'm-o.{Z}.m-o.sub.o.{Z}. A 127.0.0.2',
    f'm-h.{Z}. TXT "v=spf1 exists:%{{h}}.h.{Z} -all"',
    f'good.helo.h.{Z}. A 127.0.0.2',
    f'm-p.{Z}. TXT "v=spf1 exists:%{{p}}.p.{Z} -all"',
    f'mail.ptr.{Z}.p.{Z}. A 127.0.0.2',
    f'm-up.{Z}. TXT "v=spf1 exists:%{{L}}.up.{Z} -all"',
    f'a%2Bb.up.{Z}. A 127.0.0.2',
    f'm-d1.{Z}. TXT "v=spf1 exists:%{{d1}}.%{{d3}}.dd.{Z} -all"',
    f'test.m-d1.{Z}.dd.{Z}. A 127.0.0.2',
    f'm-pct.{Z}. TXT "v=spf1 exists:%{{l}}%%.pct.{Z} -all"',
    f'jo%.pct.{Z}. A 127.0.0.2',
    f'm-crt.{Z}. TXT "v=spf1 exists:%{{c}}.x.{Z} +all"',
    # include
    f'inc-pass.{Z}. TXT "v=spf1 include:ip4.{Z} -all"',
    f'inc-none.{Z}. TXT "v=spf1 include:norec.{Z} +all"',
    f'inc-perm.{Z}. TXT "v=spf1 include:syn-mech.{Z} +all"',
    f'inc-temp.{Z}. TXT "v=spf1 include:outside.example.org +all"',
    f'inc-neutral.{Z}. TXT "v=spf1 include:all-neutral.{Z} ~all"',
    # redirect and exp
    f'redir.{Z}. TXT "v=spf1 redirect=ip4.{Z}"',
    f'redir-none.{Z}. TXT "v=spf1 redirect=norec.{Z}"',
    f'redir-unused.{Z}. TXT "v=spf1 -all redirect=all-pass.{Z}"',
    f'redir-mac.{Z}. TXT "v=spf1 redirect=_spf.%{{d}}"',
    f'_spf.redir-mac.{Z}. TXT "v=spf1 ip4:198.51.100.0/24 -all"',
    f'exp.{Z}. TXT "v=spf1 ip4:192.0.2.1 -all exp=why.{Z}"',
    f'why.{Z}. TXT "%{{c}} is not a host of %{{d}} (%{{r}}, %{{t}})"',
    # limits
    f'lim10.{Z}. TXT "v=spf1 {" ".join([HOST] * 10)} ip4:192.0.2.99 -all"',
    f'lim11.{Z}. TXT "v=spf1 {" ".join([HOST] * 11)} ip4:192.0.2.99 -all"',
    f'lim10i.{Z}. TXT "v=spf1 include:inc5.{Z} include:inc5b.{Z} ip4:192.0.2.99 -all"',
    f'lim11i.{Z}. TXT "v=spf1 include:inc5.{Z} include:inc5b.{Z} {HOST} ip4:192.0.2.99 -all"',
    f'inc5.{Z}. TXT "v=spf1 {" ".join([HOST] * 4)} -all"',
    f'inc5b.{Z}. TXT "v=spf1 {" ".join([HOST] * 4)} -all"',
    f'void2.{Z}. TXT "v=spf1 a:nx1.{Z} mx:nx2.{Z} ip4:192.0.2.99 -all"',
    f'void3.{Z}. TXT "v=spf1 a:nx1.{Z} a:all-pass.{Z} exists:nx2.{Z} ip4:192.0.2.99 -all"',
    f'loop1.{Z}. TXT "v=spf1 include:loop2.{Z} -all"',
    f'loop2.{Z}. TXT "v=spf1 include:loop1.{Z} -all"',
    f'rloop.{Z}. TXT "v=spf1 redirect=rloop.{Z}"',
    f'selfinc.{Z}. TXT "v=spf1 ip4:192.0.2.0/24 include:selfinc.{Z} -all"',
    # syntax errors, record selection
    f'syn-ip.{Z}. TXT "v=spf1 ip4:192.0.2.300 +all"',
    f'syn-mech.{Z}. TXT "v=spf1 ip4:192.0.2.0/24 moo +all"',
    f'syn-cidr.{Z}. TXT "v=spf1 ip4:192.0.2.1/33 +all"',
    f'syn-all.{Z}. TXT "v=spf1 -all:foo"',
    f'syn-redir.{Z}. TXT "v=spf1 redirect=a.{Z} redirect=b.{Z}"',
    f'syn-dom.{Z}. TXT "v=spf1 a:nodot +all"',
    f'syn-late.{Z}. TXT "v=spf1 +all ip6:2001:db8::zz"',
    f'unknown-mod.{Z}. TXT "v=spf1 foo=bar.%{{d}} ip4:192.0.2.0/24 -all"',
    f'multi.{Z}. TXT "v=spf1 +all"',
    f'multi.{Z}. TXT "v=spf1 -all"',
    f'mixed.{Z}. TXT "google-site-verification=abc"',
    f'mixed.{Z}. TXT "v=spf1 ip4:192.0.2.0/24 -all"',
    f'norec.{Z}. TXT "just text"',
    f'spf10.{Z}. TXT "v=spf10 +all"',
    f'split.{Z}. TXT "v=spf1 ip4:192.0.2.0" "/24 -all"',
    # HELO identity
    f'helo.{Z}. TXT "v=spf1 a -all"',
    f'helo.{Z}. A 192.0.2.20',
]

# (id, ip, sender, helo, expected). Sender "" = the HELO identity (postmaster@helo).
H = "mx.client.example"
CASES = [
    ("all-pass", "192.0.2.1", f"u@all-pass.{Z}", H, "pass"),
    ("all-fail", "192.0.2.1", f"u@all-fail.{Z}", H, "fail"),
    ("all-soft", "192.0.2.1", f"u@all-soft.{Z}", H, "softfail"),
    ("all-neutral", "192.0.2.1", f"u@all-neutral.{Z}", H, "neutral"),
    ("empty-record", "192.0.2.1", f"u@empty.{Z}", H, "neutral"),
    ("ip4-in", "192.0.2.77", f"u@ip4.{Z}", H, "pass"),
    ("ip4-soft", "198.51.100.7", f"u@ip4.{Z}", H, "softfail"),
    ("ip4-out", "198.51.100.8", f"u@ip4.{Z}", H, "fail"),
    ("ip4-mapped", "::ffff:192.0.2.77", f"u@ip4.{Z}", H, "pass"),
    ("ip4-v6client", "2001:db8::1", f"u@ip4.{Z}", H, "fail"),
    ("ip6-in", "2001:db8:1:ffff::1", f"u@ip6.{Z}", H, "pass"),
    ("ip6-fail", "2001:db8:2::1", f"u@ip6.{Z}", H, "fail"),
    ("ip6-neutral", "2001:db9::1", f"u@ip6.{Z}", H, "neutral"),
    ("ip6-v4client", "192.0.2.1", f"u@ip6.{Z}", H, "neutral"),
    ("case-insensitive", "192.0.2.127", f"u@upper.{Z}", H, "pass"),
    ("cidr-25-out", "192.0.2.128", f"u@upper.{Z}", H, "fail"),
    ("a-v4", "192.0.2.10", f"u@a.{Z}", H, "pass"),
    ("a-v4-miss", "192.0.2.11", f"u@a.{Z}", H, "fail"),
    ("a-v6", "2001:db8::10", f"u@a.{Z}", H, "pass"),
    ("a-cidr24", "198.51.100.9", f"u@acidr.{Z}", H, "pass"),
    ("a-cidr24-out", "198.51.101.9", f"u@acidr.{Z}", H, "fail"),
    ("a-cidr64", "2001:db8:5:6:ffff::9", f"u@acidr.{Z}", H, "pass"),
    ("a-cidr64-out", "2001:db8:5:7::1", f"u@acidr.{Z}", H, "fail"),
    ("mx-first", "203.0.113.1", f"u@mx.{Z}", H, "pass"),
    ("mx-second", "203.0.113.2", f"u@mx.{Z}", H, "pass"),
    ("mx-v6", "2001:db8:2::2", f"u@mx.{Z}", H, "pass"),
    ("mx-miss", "203.0.113.3", f"u@mx.{Z}", H, "fail"),
    ("mx-cidr30", "203.0.113.3", f"u@mxcidr.{Z}", H, "pass"),
    ("mx-over-10", "192.0.2.1", f"u@mx11.{Z}", H, "permerror"),
    ("ptr-pass", "203.0.113.5", f"u@ptr.{Z}", H, "pass"),
    ("ptr-liar", "203.0.113.6", f"u@ptr.{Z}", H, "fail"),
    ("ptr-none", "203.0.113.7", f"u@ptr.{Z}", H, "fail"),
    ("ptr-domain", "203.0.113.5", f"u@ptrdom.{Z}", H, "pass"),
    ("ptr-refused", "198.18.0.1", f"u@ptr.{Z}", H, "temperror"),
    ("macro-i", "192.0.2.50", f"u@m-i.{Z}", H, "pass"),
    ("macro-i-miss", "192.0.2.51", f"u@m-i.{Z}", H, "fail"),
    ("macro-ir-v", "192.0.2.50", f"u@m-ir.{Z}", H, "pass"),
    ("macro-ir-v6", "2001:db8::1", f"u@m-ir.{Z}", H, "pass"),
    ("macro-l-digits-r-delims", "192.0.2.1", f"a-b+c@m-l.{Z}", H, "pass"),
    ("macro-s-l", "192.0.2.1", f"jo@m-s.{Z}", H, "pass"),
    ("macro-o-d2r-include", "192.0.2.1", f"u@m-o.{Z}", H, "pass"),
    ("macro-h", "192.0.2.1", f"u@m-h.{Z}", "good.helo", "pass"),
    ("macro-h-miss", "192.0.2.1", f"u@m-h.{Z}", "bad.helo", "fail"),
    ("macro-p", "203.0.113.5", f"u@m-p.{Z}", H, "pass"),
    ("macro-p-unknown", "203.0.113.7", f"u@m-p.{Z}", H, "fail"),
    ("macro-urlescape", "192.0.2.1", f"a+b@m-up.{Z}", H, "pass"),
    ("macro-d1-d3", "192.0.2.1", f"u@m-d1.{Z}", H, "pass"),
    ("macro-percent", "192.0.2.1", f"jo@m-pct.{Z}", H, "pass"),
    ("macro-c-in-domain", "192.0.2.1", f"u@m-crt.{Z}", H, "permerror"),
    ("include-pass", "192.0.2.9", f"u@inc-pass.{Z}", H, "pass"),
    ("include-fail", "198.51.100.8", f"u@inc-pass.{Z}", H, "fail"),
    ("include-softfail-nomatch", "198.51.100.7", f"u@inc-pass.{Z}", H, "fail"),
    ("include-neutral-nomatch", "192.0.2.1", f"u@inc-neutral.{Z}", H, "softfail"),
    ("include-none", "192.0.2.1", f"u@inc-none.{Z}", H, "permerror"),
    ("include-permerror", "192.0.2.1", f"u@inc-perm.{Z}", H, "permerror"),
    ("include-temperror", "192.0.2.1", f"u@inc-temp.{Z}", H, "temperror"),
    ("redirect-pass", "192.0.2.9", f"u@redir.{Z}", H, "pass"),
    ("redirect-fail", "10.1.1.1", f"u@redir.{Z}", H, "fail"),
    ("redirect-none", "192.0.2.9", f"u@redir-none.{Z}", H, "permerror"),
    ("redirect-unused", "192.0.2.9", f"u@redir-unused.{Z}", H, "fail"),
    ("redirect-macro", "198.51.100.3", f"u@redir-mac.{Z}", H, "pass"),
    ("exp-fail", "192.0.2.2", f"u@exp.{Z}", H, "fail"),
    ("lookups-10", "192.0.2.99", f"u@lim10.{Z}", H, "pass"),
    ("lookups-11", "192.0.2.99", f"u@lim11.{Z}", H, "permerror"),
    ("lookups-10-include", "192.0.2.99", f"u@lim10i.{Z}", H, "pass"),
    ("lookups-11-include", "192.0.2.99", f"u@lim11i.{Z}", H, "permerror"),
    ("void-2", "192.0.2.99", f"u@void2.{Z}", H, "pass"),
    ("void-3", "192.0.2.99", f"u@void3.{Z}", H, "permerror"),
    ("include-loop", "192.0.2.1", f"u@loop1.{Z}", H, "permerror"),
    ("redirect-loop", "192.0.2.1", f"u@rloop.{Z}", H, "permerror"),
    ("include-self-unreached", "192.0.2.1", f"u@selfinc.{Z}", H, "permerror"),
    ("syntax-ip", "192.0.2.1", f"u@syn-ip.{Z}", H, "permerror"),
    ("syntax-mech", "192.0.2.1", f"u@syn-mech.{Z}", H, "permerror"),
    ("syntax-cidr", "192.0.2.1", f"u@syn-cidr.{Z}", H, "permerror"),
    ("syntax-all", "192.0.2.1", f"u@syn-all.{Z}", H, "permerror"),
    ("syntax-redirect-twice", "192.0.2.1", f"u@syn-redir.{Z}", H, "permerror"),
    ("syntax-domain", "192.0.2.1", f"u@syn-dom.{Z}", H, "permerror"),
    ("syntax-after-match", "192.0.2.1", f"u@syn-late.{Z}", H, "permerror"),
    ("unknown-modifier", "192.0.2.1", f"u@unknown-mod.{Z}", H, "pass"),
    ("multiple-records", "192.0.2.1", f"u@multi.{Z}", H, "permerror"),
    ("non-spf-txt-ignored", "192.0.2.1", f"u@mixed.{Z}", H, "pass"),
    ("no-spf-record", "192.0.2.1", f"u@norec.{Z}", H, "none"),
    ("nxdomain", "192.0.2.1", f"u@nothing.{Z}", H, "none"),
    ("spf10-not-spf1", "192.0.2.1", f"u@spf10.{Z}", H, "none"),
    ("txt-split-strings", "192.0.2.9", f"u@split.{Z}", H, "pass"),
    ("txt-split-strings-out", "192.0.3.9", f"u@split.{Z}", H, "fail"),
    ("helo-pass", "192.0.2.20", "", f"helo.{Z}", "pass"),
    ("helo-fail", "192.0.2.21", "", f"helo.{Z}", "fail"),
    ("refused-temperror", "192.0.2.1", "u@outside.example.org", H, "temperror"),
]
# Run with unbound stopped: every lookup times out.
PAUSED_CASES = [
    ("paused-a", "192.0.2.10", f"u@a.{Z}", H, "temperror"),
    ("paused-helo", "192.0.2.20", "", f"helo.{Z}", "temperror"),
]


def pyspf_results(port, cases):
    """pyspf's result string per case, resolving through the test's unbound."""
    import dns.resolver
    import spf

    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.timeout = r.lifetime = 2.0
    dns.resolver.default_resolver = r
    out = {}
    for cid, ip, sender, helo, _ in cases:
        q = spf.query(i=ip, s=sender, h=helo, timeout=2)
        out[cid] = q.check()[0]
    return out


def tamis_results(server, cases):
    with tempfile.TemporaryDirectory(prefix="tamis-spf-") as d:
        cf, of = os.path.join(d, "cases"), os.path.join(d, "out")
        with open(cf, "w") as f:
            for c in cases:
                f.write("\t".join(c) + "\n")
        env = dict(os.environ, TAMIS_SPF_DNS=server, TAMIS_SPF_CASES=cf, TAMIS_SPF_OUT=of)
        p = subprocess.run([DRIVER], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        res = {}
        if os.path.exists(of):
            with open(of) as f:
                for line in f:
                    cid, r = line.rstrip("\n").split("\t")
                    res[cid] = r
        return res, p.returncode, p.stdout.decode(errors="replace")


def main():
    if not dns_harness.available():
        print("SKIP: unbound is not installed")
        return 0
    try:
        import spf  # noqa: F401
    except ImportError:
        print("SKIP: pyspf (python3-spf) is not installed")
        return 0
    if not os.access(DRIVER, os.X_OK):
        print(f"SKIP: {DRIVER} is not built (cmake --build … --target test_auth_spf_live)")
        return 0
    ids = [c[0] for c in CASES + PAUSED_CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"

    failures = []
    rows = []
    with dns_harness.Unbound(RECORDS, zones=[Z, "113.0.203.in-addr.arpa"]) as ub:
        for label, cases, paused in (("normal", CASES, False), ("paused", PAUSED_CASES, True)):
            if paused:
                ub.pause()
            try:
                py = pyspf_results(ub.port, cases)
                ta, rc, log = tamis_results(ub.server, cases)
            finally:
                if paused:
                    ub.resume()
            for cid, ip, sender, helo, want in cases:
                p, t = py.get(cid), ta.get(cid)
                ok = p == t == want
                rows.append((cid, want, p, t, ok))
                if not ok:
                    failures.append(cid)
            if rc != 0 and not failures:
                failures.append(f"driver exit {rc} ({label})")
            if rc != 0:
                print(log)
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'expected':<9}  {'pyspf':<9}  {'tamis':<9}")
    for cid, want, p, t, ok in rows:
        print(f"{cid:<{width}}  {want:<9}  {str(p):<9}  {str(t):<9}  {'ok' if ok else 'MISMATCH'}")
    agree = sum(1 for r in rows if r[2] == r[3])
    print(f"{len(rows)} cases: pyspf and Tamis agree on {agree}, "
          f"{len(rows) - len([f for f in failures if not f.startswith('driver')])} as expected")
    if failures:
        print("FAIL:", " ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
