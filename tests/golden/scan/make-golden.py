#!/usr/bin/env python3
"""Regenerates the scan goldens with the real SpamAssassin 4.0.1 (spamassassin -L).

For each line of cases.txt: loads 10_prefs.cf, 20_rules.cf and the case's extra settings, runs
SpamAssassin on the fixture and writes <case>.out. SpamAssassin prints the rule lines of a report
in Perl hash order (random per run); Tamis orders them by score descending, then name, so the rule
entries of the report body and of X-Spam-Report are re-sorted that way and nothing else changes.
Usage: make-golden.py [case...]
"""
import os, re, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..', '..'))


def rule_scores():
    scores = {}
    for line in open(os.path.join(HERE, '20_rules.cf'), encoding='utf-8'):
        f = line.split()
        if len(f) >= 3 and f[0] == 'score':
            scores[f[1]] = float(f[2])
    return scores


def resort(lines, start_re, name_re, scores):
    """Sorts consecutive entries (a start line and its continuations) found in lines."""
    out, i = [], 0
    while i < len(lines):
        if not start_re.match(lines[i]):
            out.append(lines[i]); i += 1; continue
        entries = []
        while i < len(lines) and start_re.match(lines[i]):
            e = [lines[i]]; i += 1
            while i < len(lines) and not start_re.match(lines[i]) and lines[i].startswith((b' ', b'\t*      ')) and lines[i].strip():
                e.append(lines[i]); i += 1
            entries.append(e)
        def key(e):
            name = name_re.match(e[0]).group(1).decode()
            return (-scores.get(name, 0.0), name)
        for e in sorted(entries, key=key):
            out.extend(e)
    return out


def make(case, fixture, extra, scores):
    tmp = tempfile.mkdtemp()
    try:
        cfg, site = os.path.join(tmp, 'cfg'), os.path.join(tmp, 'site')
        os.makedirs(cfg); os.makedirs(site)
        for f in os.listdir('/etc/spamassassin'):
            if f.endswith('.pre'):
                shutil.copy(os.path.join('/etc/spamassassin', f), site)
        shutil.copy(os.path.join(HERE, '10_prefs.cf'), cfg)
        shutil.copy(os.path.join(HERE, '20_rules.cf'), cfg)
        with open(os.path.join(cfg, '30_case.cf'), 'w') as f:
            f.write('\n'.join(s.strip() for s in extra.split(';') if s.strip()) + '\n')
        data = open(os.path.join(SRC, 'corpus', 'fixtures', fixture), 'rb').read()
        r = subprocess.run(['spamassassin', '-L', '-C', cfg, '--siteconfigpath', site,
                            '-p', os.path.join(tmp, 'prefs')], input=data,
                           capture_output=True, timeout=120)
        out = r.stdout
    finally:
        shutil.rmtree(tmp)
    lines = out.splitlines(keepends=True)
    lines = resort(lines, re.compile(rb'^[ \d.-]{4} [A-Z0-9_]'), re.compile(rb'^[ \d.-]{4} ([A-Z0-9_]+)'), scores)
    lines = resort(lines, re.compile(rb'^\t\* [ \d.-]{4} [A-Z0-9_]'), re.compile(rb'^\t\* [ \d.-]{4} ([A-Z0-9_]+)'), scores)
    open(os.path.join(HERE, case + '.out'), 'wb').write(b''.join(lines))


def main():
    scores = rule_scores()
    want = set(sys.argv[1:])
    for line in open(os.path.join(HERE, 'cases.txt')):
        if line.startswith('#') or not line.strip():
            continue
        case, fixture, extra = (x.strip() for x in line.split('|', 2))
        if not want or case in want:
            make(case, fixture, extra, scores)
            print('wrote', case + '.out')


main()
