"""DKIM and DMARC against real peers: keys from opendkim-genkey (RSA 2048, 1024, 512) and dkimpy
(Ed25519), messages signed by dkimpy (relaxed and simple, l=, x=) and by OpenDKIM's library
(opendkim-testmsg, which signs without the daemon), key and DMARC records served by a real unbound
(lib/dns_harness.py), and the verification through tamis-authcheck (tests/tools/tamis_authcheck.c:
lib/net's resolver and the scan's DNS adapter, on a loop thread and a worker thread as in tamisd).

Runs on Debian's /usr/bin/python3 (python3-dkim). Skips when unbound, dkimpy or the driver are
missing."""
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import dns_harness  # noqa: E402

try:
    import dkim
except ImportError:  # pragma: no cover
    dkim = None

SOURCE_DIR = os.environ.get("TAMIS_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD_DIR = os.environ.get("TAMIS_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
AUTHCHECK = os.path.join(BUILD_DIR, "tests", "tamis-authcheck")
GENKEY = "/usr/sbin/opendkim-genkey"
TESTMSG = "/usr/sbin/opendkim-testmsg"

MSG = (b"From: Alice Example <alice@example.org>\n"
       b"To: Bob <bob@example.net>\n"
       b"Subject: quarterly  report\n"
       b"Date: Mon, 23 Nov 2026 06:00:00 +0000\n"
       b"Message-ID: <dkim-test-1@example.org>\n"
       b"MIME-Version: 1.0\n"
       b"Content-Type: text/plain; charset=us-ascii\n"
       b"\n"
       b"Hello Bob,\n"
       b"\n"
       b"the  numbers   are in.   \n"
       b"\n"
       b"-- \n"
       b"Alice\n"
       b"\n")
HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]


def txt_record(owner, text):
    """An unbound local-data TXT line, the text split into 255-byte strings."""
    parts = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return f"{owner} 300 IN TXT " + " ".join('"' + p.replace('"', '\\"') + '"' for p in parts)


def with_from(msg, addr):
    return re.sub(rb"^From: .*$", b"From: " + addr, msg, count=1, flags=re.M)


def sign(msg, selector, domain, key, canon=(b"relaxed", b"relaxed"), algo=b"rsa-sha256",
         length=False, when=None, expire=None):
    """dkimpy's signature prepended to msg (LF line ends kept, as an MTA's queue file has)."""
    orig = dkim.DKIM.gen_header

    def gen_header(self, fields, *args, **kw):
        if expire is not None:
            fields = list(fields)
            fields.insert([f[0] for f in fields].index(b"h"), (b"x", str(expire).encode()))
        return orig(self, fields, *args, **kw)

    with mock.patch.object(dkim.DKIM, "gen_header", gen_header), \
            mock.patch("time.time", return_value=when or time.time()):
        sig = dkim.sign(msg, selector, domain, key, canonicalize=canon, signature_algorithm=algo,
                        include_headers=HEADERS, length=length, linesep=b"\n")
    return sig + msg


@unittest.skipUnless(dns_harness.available() and dkim is not None and os.access(AUTHCHECK, os.X_OK),
                     "needs unbound, python3-dkim and tamis-authcheck")
class DkimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tamis-dkim-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.keys = {}   # selector -> private key bytes
        cls.pub = {}    # selector -> key record text
        for bits in (2048, 1024, 512):
            sel = f"s{bits}"
            subprocess.run([GENKEY, "-b", str(bits), "-d", "example.org", "-s", sel, "-D", cls.dir],
                           check=True, capture_output=True)
            with open(os.path.join(cls.dir, sel + ".private"), "rb") as f:
                cls.keys[sel] = f.read()
            with open(os.path.join(cls.dir, sel + ".txt")) as f:
                zone = f.read()
            cls.pub[sel] = "".join(re.findall(r'"([^"]*)"', zone))
            assert cls.pub[sel].startswith("v=DKIM1"), zone
        subprocess.run(["/usr/bin/dknewkey", "--ktype", "ed25519", os.path.join(cls.dir, "ed")],
                       check=True, capture_output=True)
        with open(os.path.join(cls.dir, "ed.key"), "rb") as f:
            cls.keys["ed"] = f.read().strip()
        with open(os.path.join(cls.dir, "ed.dns")) as f:
            cls.pub["ed"] = f.read().strip()
        assert "k=ed25519" in cls.pub["ed"], cls.pub["ed"]

        recs = []
        for dom in ("example.org", "mail.example.org", "mail.example.net", "example.com.example.org"):
            for sel, text in cls.pub.items():
                recs.append(txt_record(f"{sel}._domainkey.{dom}", text))
        recs.append(txt_record("revoked._domainkey.example.org", "v=DKIM1; k=rsa; p="))
        # opendkim-genkey's records say h=sha256, and opendkim-testmsg signs rsa-sha1: the same
        # key without h= under another selector
        recs.append(txt_record("sha1ok._domainkey.example.org",
                               re.sub(r"h=sha256; ?", "", cls.pub["s2048"])))
        recs += [
            txt_record("_dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"),
            txt_record("_dmarc.example.net", "v=DMARC1; p=reject; adkim=s"),
            txt_record("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine"),
            txt_record("_dmarc.pct0.example.edu", "v=DMARC1; p=reject; pct=0"),
            txt_record("_dmarc.pct100.example.edu", "v=DMARC1; p=reject; pct=100"),
            txt_record("_adsp._domainkey.adsp.example.com", "dkim=discardable"),
        ]
        cls.dns = dns_harness.Unbound(recs, zones=["example.info", "example.edu", "example.net",
                                                   "example.com"])
        cls.dns.start()
        cls.addClassCleanup(cls.dns.stop)

    def check(self, msg, *extra):
        path = os.path.join(self.dir, "msg.eml")
        with open(path, "wb") as f:
            f.write(msg)
        out = subprocess.run([AUTHCHECK, "--dns", self.dns.server, "--ip", "192.0.2.25",
                              "--skip-spf", "--authserv-id", "mx.test", *extra, path],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        res = {"dkim": [], "eval": {}}
        for line in out.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "dkim":
                status, *kv = rest.split(" ")
                d = dict(x.split("=", 1) for x in kv if "=" in x)
                d["status"] = status
                d["reason"] = rest.split("reason=", 1)[1]
                res["dkim"].append(d)
            elif kind == "eval":
                name, hit = rest.split()
                res["eval"][name] = hit == "1"
            elif kind == "adsp":
                res["adsp"] = rest
            elif kind == "dmarc":
                res["dmarc"] = rest
            elif kind == "header":
                res["header"] = rest
        return res

    def assertSig(self, res, status, reason=None, bits=None):
        self.assertEqual(len(res["dkim"]), 1, res)
        sig = res["dkim"][0]
        self.assertEqual(sig["status"], status, sig)
        if reason is not None:
            self.assertEqual(sig["reason"], reason, sig)
        if bits is not None:
            self.assertEqual(int(sig["bits"]), bits, sig)

    # ---- valid signatures ------------------------------------------------------------------

    def test_rsa_relaxed(self):
        r = self.check(sign(MSG, b"s2048", b"example.org", self.keys["s2048"]))
        self.assertSig(r, "pass", bits=2048)
        for e in ("check_dkim_signed", "check_dkim_valid", "check_dkim_valid_author_sig",
                  "check_dkim_dependable", "check_dmarc_pass"):
            self.assertTrue(r["eval"][e], e)
        self.assertIn("dkim=pass (2048-bit key) header.d=example.org header.s=s2048 "
                      "header.a=rsa-sha256", r["header"])
        self.assertIn("dmarc=pass (p=reject) header.from=example.org", r["header"])

    def test_rsa_simple_crlf(self):
        msg = sign(MSG, b"s2048", b"example.org", self.keys["s2048"], canon=(b"simple", b"simple"))
        self.assertSig(self.check(msg.replace(b"\n", b"\r\n")), "pass")
        self.assertSig(self.check(msg), "pass")

    def test_ed25519(self):
        r = self.check(sign(MSG, b"ed", b"example.org", self.keys["ed"], algo=b"ed25519-sha256"))
        self.assertSig(r, "pass", bits=0)
        self.assertTrue(r["eval"]["check_dkim_valid_author_sig"])

    def test_length_tag(self):
        msg = sign(MSG, b"s2048", b"example.org", self.keys["s2048"], length=True)
        self.assertSig(self.check(msg + b"-- appended by a mailing list\n"), "pass")

    def test_envelope_from(self):
        msg = sign(MSG, b"s2048", b"example.org", self.keys["s2048"])
        r = self.check(msg, "--mailfrom", "bounces@example.org")
        self.assertTrue(r["eval"]["check_dkim_valid_envelopefrom"])
        r = self.check(msg, "--mailfrom", "bounces@example.net")
        self.assertFalse(r["eval"]["check_dkim_valid_envelopefrom"])

    def test_opendkim_signer(self):
        """libopendkim's signer (rsa-sha1, relaxed/simple). Its output repeats the end of b=
        after the padding; Mail::DKIM's base64 decoder ignores that tail, and so do we."""
        if not os.access(TESTMSG, os.X_OK):
            self.skipTest("opendkim-testmsg missing")
        key = os.path.join(self.dir, "s2048.private")
        for sel, status, reason in (("sha1ok", "pass", "-"),
                                    ("s2048", "permerror", "hash not allowed by key")):
            out = subprocess.run([TESTMSG, "-d", "example.org", "-s", sel, "-k", key],
                                 input=MSG, capture_output=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(b"a=rsa-sha1", out.stdout)
            r = self.check(out.stdout)
            self.assertSig(r, status, reason)
            self.assertEqual(r["dkim"][0]["a"], "rsa-sha1")

    # ---- failures ----------------------------------------------------------------------------

    def test_body_changed(self):
        msg = sign(MSG, b"s2048", b"example.org", self.keys["s2048"])
        r = self.check(msg.replace(b"numbers", b"Numbers"))
        self.assertSig(r, "fail", "body hash mismatch")
        self.assertTrue(r["eval"]["check_dkim_signed"])
        self.assertFalse(r["eval"]["check_dkim_valid"])
        self.assertTrue(r["eval"]["check_dmarc_reject"])

    def test_header_changed(self):
        msg = sign(MSG, b"s2048", b"example.org", self.keys["s2048"])
        r = self.check(msg.replace(b"quarterly  report", b"quarterly report!"))
        self.assertSig(r, "fail", "signature verification failed")

    def test_expired(self):
        now = int(time.time())
        msg = sign(MSG, b"s2048", b"example.org", self.keys["s2048"], when=now - 7200,
                   expire=now - 3600)
        r = self.check(msg)
        self.assertSig(r, "permerror", "signature expired")
        self.assertTrue(r["eval"]["check_dkim_signed"])
        self.assertFalse(r["eval"]["check_dkim_valid"])
        # the same signature before its expiry passes
        self.assertSig(self.check(msg, "--now", str(now - 3700)), "pass")

    def test_missing_key(self):
        r = self.check(sign(MSG, b"nokey", b"example.org", self.keys["s2048"]))
        self.assertSig(r, "permerror", "no key")
        self.assertTrue(r["eval"]["check_dkim_signed"])
        self.assertFalse(r["eval"]["check_dkim_valid"])

    def test_revoked_key(self):
        r = self.check(sign(MSG, b"revoked", b"example.org", self.keys["s2048"]))
        self.assertSig(r, "permerror", "key revoked")

    def test_short_keys(self):
        r = self.check(sign(MSG, b"s1024", b"example.org", self.keys["s1024"]))
        self.assertSig(r, "pass", bits=1024)
        self.assertTrue(r["eval"]["check_dkim_valid_author_sig"])
        r = self.check(sign(MSG, b"s512", b"example.org", self.keys["s512"]))
        self.assertSig(r, "pass", "weak key (512 bits)", bits=512)
        # SpamAssassin: valid (DKIM_VALID) but not an acceptable author signature
        self.assertTrue(r["eval"]["check_dkim_valid"])
        self.assertFalse(r["eval"]["check_dkim_valid_author_sig"])

    def test_dns_down(self):
        msg = sign(MSG, b"s2048", b"example.org", self.keys["s2048"])
        self.dns.pause()
        try:
            r = self.check(msg, "--timeout-ms", "1500")
        finally:
            self.dns.resume()
        self.assertSig(r, "temperror")
        self.assertIn("dmarc=temperror", r["header"])
        self.assertFalse(r["eval"]["check_dkim_valid"])
        for e in ("check_dmarc_pass", "check_dmarc_reject", "check_dmarc_missing"):
            self.assertFalse(r["eval"][e], e)

    # ---- DMARC -------------------------------------------------------------------------------

    def dmarc(self, from_addr, domain, sel=b"s2048"):
        msg = with_from(MSG, from_addr)
        return self.check(sign(msg, sel, domain, self.keys[sel.decode()]))

    def dmarc_hits(self, r):
        return sorted(k for k, v in r["eval"].items() if k.startswith("check_dmarc") and v)

    def test_dmarc_relaxed_pass(self):
        r = self.dmarc(b"alice@example.org", b"mail.example.org")
        self.assertSig(r, "pass")
        self.assertEqual(self.dmarc_hits(r), ["check_dmarc_pass"])

    def test_dmarc_strict_fail(self):
        r = self.dmarc(b"alice@example.net", b"mail.example.net")
        self.assertSig(r, "pass")
        self.assertEqual(self.dmarc_hits(r), ["check_dmarc_reject"])
        self.assertIn("dmarc=fail (p=reject) header.from=example.net", r["header"])

    def test_dmarc_subdomain_policy(self):
        r = self.dmarc(b"news@news.example.com", b"example.org")
        self.assertEqual(self.dmarc_hits(r), ["check_dmarc_quarantine"])

    def test_dmarc_org_fallback(self):
        r = self.dmarc(b"alice@deep.example.org", b"example.org")
        self.assertIn("record=1", r["dmarc"])
        self.assertEqual(self.dmarc_hits(r), ["check_dmarc_pass"])

    def test_dmarc_pct(self):
        r = self.dmarc(b"a@pct0.example.edu", b"example.org")
        self.assertEqual(self.dmarc_hits(r), ["check_dmarc_quarantine"])
        r = self.dmarc(b"a@pct100.example.edu", b"example.org")
        self.assertEqual(self.dmarc_hits(r), ["check_dmarc_reject"])

    def test_dmarc_missing(self):
        r = self.dmarc(b"someone@example.info", b"example.org")
        self.assertEqual(self.dmarc_hits(r), ["check_dmarc_missing"])
        self.assertIn("dmarc=none header.from=example.info", r["header"])

    # ---- ADSP (historic, as SpamAssassin still applies it) -----------------------------------

    def test_adsp(self):
        good = sign(MSG, b"s2048", b"example.org", self.keys["s2048"])
        bad = good.replace(b"numbers", b"Numbers")
        self.assertEqual(self.check(good, "--adsp", "example.org:D")["adsp"], "-")
        self.assertEqual(self.check(bad, "--adsp", "example.org:D")["adsp"], "D")
        self.assertEqual(self.check(bad, "--adsp", "*.org:A")["adsp"], "A")
        # without an override: the _adsp record, else NXDOMAIN of the domain, else unknown
        self.assertEqual(self.check(with_from(bad, b"x@adsp.example.com"))["adsp"], "D")
        self.assertEqual(self.check(with_from(bad, b"x@nowhere.example.info"))["adsp"], "N")
        self.assertEqual(self.check(with_from(bad, b"x@example.info"))["adsp"], "U")


if __name__ == "__main__":
    unittest.main(verbosity=2)
