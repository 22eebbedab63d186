#!/usr/bin/env python3
"""Converts the IRC parser test vectors of the PyPI package irc-parser-tests
(ircdocs/parser-tests, CC0) from YAML to the JSON that
tests/irc_parser_vectors.rs reads, so the Rust tests need no YAML parser.

Usage, from this directory (needs PyYAML):

    pip download --no-deps irc-parser-tests==0.0.4
    python3 convert.py irc_parser_tests-0.0.4-py3-none-any.whl

Only the files whose subject src/proto/irc.rs implements are converted:
msg-split.yaml (parsing, checked against `parse`) and msg-join.yaml
(writing, checked against `write_line`). userhost-split, mask-match and
validate-hostname test functions charla does not have.

Tags become lists of [key, value] pairs in the YAML's order, because JSON
objects are unordered for most readers and the order matters for the exact
forms of msg-join; a tag without a value is "", as the vectors' own
comments say.
"""

import hashlib
import json
import sys
import zipfile

import yaml

FILES = ("msg-split", "msg-join")


def tag_pairs(tags):
    return [[key, "" if value is None else value] for key, value in (tags or {}).items()]


def atoms(raw):
    return {
        "tags": tag_pairs(raw.get("tags")),
        "source": raw.get("source"),
        "verb": raw["verb"],
        "params": raw.get("params") or [],
    }


def convert(name, data):
    tests = []
    for test in data["tests"]:
        entry = {}
        if "input" in test:
            entry["input"] = test["input"]
        if "desc" in test:
            entry["desc"] = test["desc"]
        entry["atoms"] = atoms(test["atoms"])
        if "matches" in test:
            entry["matches"] = test["matches"]
        tests.append(entry)
    return {"converted_from": name + ".yaml", "tests": tests}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    wheel = sys.argv[1]
    with open(wheel, "rb") as f:
        print("sha256", hashlib.sha256(f.read()).hexdigest(), wheel)
    with zipfile.ZipFile(wheel) as archive:
        for name in FILES:
            data = yaml.safe_load(archive.read("parser_tests/data/" + name + ".yaml"))
            with open(name + ".json", "w", encoding="ascii") as out:
                json.dump(convert(name, data), out, indent=2, ensure_ascii=True)
                out.write("\n")
            print("wrote", name + ".json")


if __name__ == "__main__":
    main()
