"""Shared pieces of the Postfix tests: a deterministic rule set and tamisd on free ports."""
import os
import shutil
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from tamisd_harness import Daemon  # noqa: E402,F401

# One word makes spam (6 points, tagged), another makes rejectable spam (20 points).
RULES_CF = """required_score 5
use_bayes 0
report_safe 0
rewrite_header Subject [SPAM]
body PF_SPAMWORD /\\bzorbulon\\b/i
describe PF_SPAMWORD Mentions the spam test word
score PF_SPAMWORD 6
body PF_BIGWORD /\\bgrobnitz\\b/i
describe PF_BIGWORD Mentions the reject test word
score PF_BIGWORD 20
"""
REJECT_SCORE = "15"
HAM_BODY = "Lunch at noon tomorrow? The usual place."
SPAM_BODY = "Buy zorbulon today, best prices."
BIG_SPAM_BODY = "Grobnitz grobnitz: act now."


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rules_dir():
    d = tempfile.mkdtemp(prefix="tamis-pf-rules-")
    src = os.environ.get("TAMIS_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "../../..")))
    prefs = os.path.join(src, "rules", "10_tamis_prefs.cf")
    if os.path.exists(prefs):
        shutil.copy(prefs, d)
    with open(os.path.join(d, "50_pf.cf"), "w") as f:
        f.write(RULES_CF)
    os.chmod(d, 0o755)
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)
    return d


def header(msg, name):
    """The value of the first header name in a delivered message (bytes), or None."""
    head = msg.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n").replace(b"\n\t", b" ")
    head = head.replace(b"\n ", b" ")
    for line in head.split(b"\n"):
        if line.lower().startswith(name.lower().encode() + b":"):
            return line.split(b":", 1)[1].strip().decode(errors="replace")
    return None
