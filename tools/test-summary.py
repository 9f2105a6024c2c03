#!/usr/bin/env python3
"""What a ctest run skipped, and why, in one line; then its count.

usage: test-summary.py JUNIT.xml [--fail-on-skip] [--allow REGEX]

Reads the JUnit file of `ctest --output-junit` and prints
  - one line naming every skipped test with its reason: whole programs that
    exited 77 (their "SKIPPED: ..." line), and cmocka cases that called
    skip() inside a program that passed (listed as "[  SKIPPED ] name"),
    or "skipped: none";
  - then "tests: N passed, N failed, N skipped".
A skip is never silent: the tests' inputs all come from the set-up, so a
skip means this machine lacks something no set-up can give it (a GPU, a
build option turned off). --fail-on-skip (what CI runs) exits 1 when
anything was skipped whose "name: reason" does not match --allow. Exit 1
too when a test failed, or the file is missing or unreadable.
"""
import argparse
import re
import sys
import xml.etree.ElementTree as ET


def reason_of(out, fallback):
    for line in out.splitlines():
        m = re.match(r"\s*(?:SKIPPED|skipped):?\s*(.*)", line)
        if m and m.group(1) and not m.group(1).startswith("]"):
            return m.group(1).strip()
    return fallback


def cmocka_skips(out):
    """(name, reason) of the cmocka cases a program skipped: the reason is
    the last line the case printed before "[  SKIPPED ] name"."""
    found, said = {}, ""
    for line in out.splitlines():
        m = re.match(r"\[\s*(RUN|SKIPPED)\s*\] (.*)", line)
        if not m:
            if line.strip() and not line.startswith("["):
                said = line.strip()
            continue
        what = m.group(2).strip()
        if m.group(1) == "RUN":
            said = ""
        elif not re.match(r"\d+ test\(s\), listed below:", what) and what not in found:
            found[what] = said or "cmocka skip(), no reason printed"
    return list(found.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("junit")
    ap.add_argument("--fail-on-skip", action="store_true",
                    help="exit 1 when a test skipped that --allow does not match")
    ap.add_argument("--allow", default="",
                    help="regular expression over 'name: reason' of skips that are acceptable")
    a = ap.parse_args()
    try:
        root = ET.parse(a.junit).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"test-summary: cannot read {a.junit}: {e}")
        return 1
    passed = failed = 0
    skips = []  # (name, reason)
    for tc in root.iter("testcase"):
        name = tc.get("name", "?")
        out = tc.findtext("system-out") or ""
        status, skipped = tc.get("status", ""), tc.find("skipped")
        if status == "notrun" or skipped is not None:
            msg = skipped.get("message", "") if skipped is not None else status
            skips.append((name, reason_of(out, msg or "no reason printed")))
            continue
        if status == "fail" or tc.find("failure") is not None:
            failed += 1
        else:
            passed += 1
        for case, why in cmocka_skips(out):
            skips.append((f"{name}/{case}", why))
    if skips:
        print(f"skipped ({len(skips)}): " + "; ".join(f"{n}: {r}" for n, r in skips))
    else:
        print("skipped: none")
    bad = [s for s in skips if not (a.allow and re.search(a.allow, f"{s[0]}: {s[1]}"))]
    n_skip_prog = sum(1 for n, _ in skips if "/" not in n)
    print(f"tests: {passed} passed, {failed} failed, {n_skip_prog} skipped")
    if a.fail_on_skip and bad:
        print(f"test-summary: {len(bad)} skip(s) not allowed here (every input comes from the set-up): "
              + ", ".join(n for n, _ in bad))
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
