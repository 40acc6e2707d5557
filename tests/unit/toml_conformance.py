#!/usr/bin/python3
"""toml_conformance.py DECODER TOML_TEST_DIR: run the toml-test cases.

Runs every case listed in TOML_TEST_DIR/files-toml-1.1.0 through DECODER
(TOML on stdin, tagged JSON on stdout, exit 1 on invalid input):

- valid/X.toml must exit 0 and print JSON equal to valid/X.json, values
  compared by meaning (floats numerically, inf/nan included; date-times
  as the same instant or the same local fields; integers exactly);
- invalid/X.toml must exit 1 with "LINE:COL: msg" on stderr.

A signal, a 5 s timeout or a sanitizer report on stderr fails any case.
Prints each failure and a last line "toml-test: N passed, N failed";
exits 0 only if all pass; missing cases are a failure, not a skip.
Standard library only.
"""
import calendar
import concurrent.futures
import json
import math
import os
import re
import subprocess
import sys

LIST = 'files-toml-1.1.0'
TIMEOUT = 5
SANITIZER = re.compile(r'ERROR: (Address|Leak)Sanitizer|runtime error:|Sanitizer')
ERROR_LINE = re.compile(r'^\d+:\d+: \S')
DATE = re.compile(r'^(\d{4})-(\d{2})-(\d{2})$')
TIME = re.compile(r'^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$')
DATETIME = re.compile(r'^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})'
                      r'(?::(\d{2})(?:\.(\d+))?)?([Zz]|[+-]\d{2}:\d{2})?$')


def frac(f):
    """Fractional seconds as a canonical digit string."""
    return (f or '').rstrip('0')


def leaf_key(typ, value):
    """What a leaf means, as a comparable value; raises ValueError."""
    if typ == 'string' or typ == 'bool':
        return value
    if typ == 'integer':
        return int(value)
    if typ == 'float':
        f = float(value)
        return 'nan' if math.isnan(f) else f
    if typ == 'date-local':
        m = DATE.match(value)
        if m:
            return tuple(int(x) for x in m.groups())
    elif typ == 'time-local':
        m = TIME.match(value)
        if m:
            h, mi, s, fr = m.groups()
            return (int(h), int(mi), int(s or 0), frac(fr))
    elif typ in ('datetime', 'datetime-local'):
        m = DATETIME.match(value)
        if m and (m.group(8) is None) == (typ == 'datetime-local'):
            y, mo, d, h, mi, s, fr, off = m.groups()
            fields = (int(y), int(mo), int(d), int(h), int(mi), int(s or 0))
            if typ == 'datetime-local':
                return fields + (frac(fr),)
            shift = 0
            if off not in ('Z', 'z'):
                shift = (int(off[1:3]) * 60 + int(off[4:6])) * 60
                if off[0] == '-':
                    shift = -shift
            return (calendar.timegm(fields) - shift, frac(fr))
    raise ValueError('bad %s value %r' % (typ, value))


def is_leaf(x):
    return (isinstance(x, dict) and set(x) == {'type', 'value'}
            and isinstance(x['type'], str) and isinstance(x['value'], str))


def diff(want, got, path='$'):
    """None if equal by meaning, else where and how they differ."""
    if is_leaf(want):
        if not is_leaf(got):
            return '%s: want a %s, got %s' % (path, want['type'], json.dumps(got)[:80])
        if want['type'] != got['type']:
            return '%s: want type %s, got %s' % (path, want['type'], got['type'])
        try:
            if leaf_key(want['type'], want['value']) == leaf_key(got['type'], got['value']):
                return None
        except ValueError as e:
            return '%s: %s' % (path, e)
        return '%s: want %r, got %r' % (path, want['value'], got['value'])
    if isinstance(want, dict):
        if not isinstance(got, dict) or is_leaf(got):
            return '%s: want a table, got %s' % (path, json.dumps(got)[:80])
        if set(want) != set(got):
            return '%s: keys differ: missing %s, extra %s' % (
                path, sorted(set(want) - set(got)), sorted(set(got) - set(want)))
        for k in want:
            d = diff(want[k], got[k], '%s.%s' % (path, json.dumps(k)))
            if d:
                return d
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return '%s: want an array, got %s' % (path, json.dumps(got)[:80])
        if len(want) != len(got):
            return '%s: want %d items, got %d' % (path, len(want), len(got))
        for i, (w, g) in enumerate(zip(want, got)):
            d = diff(w, g, '%s[%d]' % (path, i))
            if d:
                return d
        return None
    return '%s: unexpected %r in the expected JSON' % (path, want)


def run_case(decoder, root, case):
    """None if the case passes, else why it fails."""
    with open(os.path.join(root, case), 'rb') as f:
        data = f.read()
    try:
        r = subprocess.run([decoder], input=data, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return 'timed out after %d s' % TIMEOUT
    err = r.stderr.decode('utf-8', 'replace')
    if r.returncode < 0:
        return 'killed by signal %d: %s' % (-r.returncode, err[-500:])
    if SANITIZER.search(err):
        return 'sanitizer report:\n' + err[-2000:]
    if case.startswith('invalid/'):
        if r.returncode == 0:
            return 'accepted invalid TOML'
        if r.returncode != 1 or not ERROR_LINE.match(err):
            return 'exit %d, stderr not "LINE:COL: msg": %r' % (r.returncode, err[:200])
        return None
    if r.returncode != 0:
        return 'rejected valid TOML: ' + err.strip()
    try:
        got = json.loads(r.stdout.decode('utf-8'))
    except ValueError as e:
        return 'output is not JSON (%s): %r' % (e, r.stdout[:200])
    with open(os.path.join(root, case[:-len('.toml')] + '.json'), encoding='utf-8') as f:
        want = json.load(f)
    return diff(want, got)


def main():
    if len(sys.argv) != 3:
        print('usage: toml_conformance.py DECODER TOML_TEST_DIR', file=sys.stderr)
        return 2
    decoder, root = sys.argv[1], sys.argv[2]
    listing = os.path.join(root, LIST)
    if not os.path.isfile(listing):
        print('toml-test: no %s: the cases belong in %s (tests/toml-test)'
              % (LIST, os.path.abspath(root)))
        return 1
    with open(listing, encoding='utf-8') as f:
        cases = [line.strip() for line in f
                 if line.strip().endswith('.toml')]
    workers = min(32, (os.cpu_count() or 1) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda c: run_case(decoder, root, c), cases))
    failed = 0
    for case, why in zip(cases, results):
        if why:
            failed += 1
            print('FAIL %s: %s' % (case, why))
    print('toml-test: %d passed, %d failed' % (len(cases) - failed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
