#!/usr/bin/env python3
"""Writes the hostile metainfo corpus next to this script.

Each file is named for what is wrong with it; wire/tests/hostile_metainfo.rs
maps every name to the specific error it must produce. Re-run after adding a
case: python3 wire/tests/corpus/make_bad_torrents.py
"""
import hashlib
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bad-torrents")


def enc(v):
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(enc(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(enc(k) + enc(x) for k, x in items) + b"e"
    raise TypeError(type(v))


PL = 16384


def pieces(total, pl=PL):
    n = -(-total // pl)
    return b"".join(hashlib.sha1(bytes([i % 256])).digest() for i in range(n))


def single(**over):
    info = {"name": "file.bin", "piece length": PL, "length": 40000, "pieces": pieces(40000)}
    info.update(over)
    for k, v in list(info.items()):
        if v is None:
            del info[k]
    return {"announce": "http://t.invalid/announce", "info": info}


def multi(file_list, **over):
    files = file_list
    total = sum(f["length"] for f in files if isinstance(f.get("length"), int) and f["length"] > 0)
    info = {"name": "folder", "piece length": PL, "files": files, "pieces": pieces(min(max(total, 1), 1 << 20))}
    info.update(over)
    return {"announce": "http://t.invalid/announce", "info": info}


def f(path, length=1000):
    return {"path": path, "length": length}


valid = enc(single())
cases = {
    "not-bencode": b"hello, world",
    "truncated-in-the-middle": valid[: len(valid) // 2],
    "trailing-garbage": valid + b"garbage",
    "root-is-a-list": enc([1, 2]),
    "missing-info": enc({"announce": "http://t.invalid/announce"}),
    "info-is-a-string": enc({"info": "nope"}),
    "missing-name": enc(single(name=None)),
    "name-is-dotdot": enc(single(name="..")),
    "name-with-slash": enc(single(name="../../etc/passwd")),
    "name-not-utf8": enc(single(name=b"\xff\xfe")),
    "missing-piece-length": enc(single(**{"piece length": None})),
    "piece-length-zero": enc(single(**{"piece length": 0})),
    "piece-length-negative": enc(single(**{"piece length": -16384})),
    "piece-length-absurd": enc(single(**{"piece length": 1 << 40})),
    "missing-pieces": enc(single(pieces=None)),
    "pieces-not-multiple-of-20": enc(single(pieces=pieces(40000)[:-1])),
    "pieces-too-few-for-length": enc(single(pieces=pieces(40000)[:-20])),
    "pieces-too-many-for-length": enc(single(pieces=pieces(40000) + b"x" * 20)),
    "both-length-and-files": enc(single(files=[f(["a"])])),
    "neither-length-nor-files": enc(single(length=None)),
    "negative-length": enc(single(length=-5)),
    "zero-total-length": enc(single(length=0, pieces=b"")),
    "empty-files-list": enc(multi([])),
    "files-is-a-dict": enc(multi([f(["a"])], files={"a": 1})),
    "file-lengths-overflow": enc(multi([f(["a"], 2**63 - 1), f(["b"], 2**63 - 1)])),
    "file-negative-length": enc(multi([f(["a"], -1)])),
    "path-dotdot": enc(multi([f(["..", "escape"])])),
    "path-absolute": enc(multi([f(["/etc/passwd"])])),
    "path-separator-inside": enc(multi([f(["a/../../b"])])),
    "path-backslash": enc(multi([f(["..\\..\\win.ini"])])),
    "path-empty-list": enc(multi([f([])])),
    "path-empty-component": enc(multi([f(["a", "", "b"])])),
    "path-nul-byte": enc(multi([f(["a\0b"])])),
    "path-component-too-long": enc(multi([f(["x" * 300])])),
    "path-missing": enc(multi([{"length": 10}])),
    "duplicate-paths": enc(multi([f(["a"]), f(["a"])])),
    "file-and-folder-clash": enc(multi([f(["a"]), f(["a", "b"])])),
    "nesting-too-deep": b"d4:info" + b"l" * 100 + b"e" * 100 + b"e",
    "non-canonical-integer": valid.replace(b"i16384e", b"i016384e"),
    "duplicate-keys": b"d4:infod4:name1:a4:name1:bee",
    "string-length-beyond-input": b"d8:announce99999:http://e",
    "announce-list-not-a-list": enc(dict(single(), **{"announce-list": "http://x"})),
}

os.makedirs(HERE, exist_ok=True)
for name, data in cases.items():
    with open(os.path.join(HERE, name + ".torrent"), "wb") as out:
        out.write(data)
print(f"wrote {len(cases)} files to {HERE}")
