#!/usr/bin/python3
"""Peer of tests/interop/safetensors_test.cpp: safetensors files made byte by byte with struct and
json (not the safetensors package, and not torch's own memory), each beside a torch.save file of
the same tensors for the C++ side to compare with.

  make_safetensors.py make  DIR   write python.safetensors, python.pt and metadata.json
  make_safetensors.py check DIR   decode ours.safetensors (written by the C++ side) by hand and
                                  compare it with ours.pt and ours_metadata.json; exit 0 when equal

Needs torch (Debian: python3-torch) and no network.
"""
import collections
import json
import pathlib
import struct
import sys

try:
    import torch
except ImportError as e:  # the C++ test turns this exit code into a failure with this message
    sys.stderr.write(f"{sys.executable}: cannot import torch ({e}); install python3-torch\n")
    sys.exit(3)

# dtype -> (safetensors code, struct format of one element); BF16 goes through float32's top half.
CODES = {
    torch.float64: ("F64", "d"), torch.float32: ("F32", "f"), torch.float16: ("F16", "e"),
    torch.bfloat16: ("BF16", None), torch.int64: ("I64", "q"), torch.int32: ("I32", "i"),
    torch.int16: ("I16", "h"), torch.int8: ("I8", "b"), torch.uint8: ("U8", "B"), torch.bool: ("BOOL", "?"),
}
DTYPES = {code: dtype for dtype, (code, _) in CODES.items()}


def encode(t):
    code, fmt = CODES[t.dtype]
    values = t.reshape(-1).tolist()
    if fmt is None:
        return b"".join(struct.pack("<f", v)[2:] for v in values)  # exact: the values are bfloat16
    return struct.pack(f"<{len(values)}{fmt}", *values)


def decode(code, shape, raw):
    fmt = CODES[DTYPES[code]][1]
    if fmt is None:
        values = [struct.unpack("<f", b"\0\0" + raw[k:k + 2])[0] for k in range(0, len(raw), 2)]
    else:
        values = list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))
    return torch.tensor(values, dtype=DTYPES[code]).reshape(shape)


def peer_tensors():
    """In file order: neither sorted by name nor by element size, so some ranges are unaligned."""
    torch.manual_seed(0)
    return collections.OrderedDict([
        ("encoder.weight", torch.randn(3, 4)),
        ("half", (torch.arange(-6, 6) / 8).half().reshape(3, 4)),
        ("bf16", torch.linspace(-3, 3, 7).bfloat16()),
        ("double", torch.tensor([[1e300, -2.5], [float("inf"), 0.1]], dtype=torch.float64)),
        ("long", torch.tensor([-(2 ** 62), 7, 2 ** 40])),
        ("int", torch.arange(-3, 3, dtype=torch.int32).reshape(2, 3)),
        ("short", torch.tensor([-32768, 32767], dtype=torch.int16)),
        ("char", torch.tensor([-128, 0, 127], dtype=torch.int8)),
        ("byte", torch.arange(0, 256, 51).to(torch.uint8)),
        ("mask", torch.tensor([[True, False, True]])),
        ("scalar", torch.tensor(2.5)),
        ("empty", torch.zeros(0, 5)),
        ("gr\u00f6\u00dfe", torch.ones(2, dtype=torch.float16)),  # a name that is not ASCII
    ])


def make(out):
    tensors = peer_tensors()
    metadata = {"format": "pt", "note": "gr\u00f6\u00dfe \u00fc", "empty": ""}
    header = {"__metadata__": metadata}
    data = b""
    for name, t in tensors.items():
        raw = encode(t)
        header[name] = {"dtype": CODES[t.dtype][0], "shape": list(t.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    # sort_keys: the header's order is not the data's, as with files of the safetensors package.
    text = json.dumps(header, sort_keys=True, ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    (out / "python.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data)
    torch.save(tensors, out / "python.pt")
    (out / "metadata.json").write_text(json.dumps(metadata))


def check(out):
    blob = (out / "ours.safetensors").read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    problems = []
    if n % 8:
        problems.append(f"header length {n} is not a multiple of 8")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", {})
    want_metadata = json.loads((out / "ours_metadata.json").read_text())
    if metadata != want_metadata:
        problems.append(f"metadata {metadata} != {want_metadata}")
    # As Python's safetensors insists: ranges back to back from 0 to the end of the file.
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"])
    end = 0
    got = collections.OrderedDict()
    for name, e in entries:
        b, x = e["data_offsets"]
        if b != end:
            problems.append(f"'{name}' starts at {b}, the previous tensor ends at {end}")
        end = x
        got[name] = decode(e["dtype"], e["shape"], data[b:x])
    if end != len(data):
        problems.append(f"the last tensor ends at {end}, the data section has {len(data)} bytes")
    if list(header) != [name for name, _ in entries]:
        problems.append(f"header order {list(header)} is not the data order")
    want = torch.load(out / "ours.pt")
    if list(got) != list(want):
        problems.append(f"keys {list(got)} != {list(want)}")
    for name in set(got) & set(want):
        g, w = got[name], want[name]
        if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w):
            problems.append(f"'{name}': {g.dtype} {list(g.shape)} {g.reshape(-1)[:8].tolist()} != "
                            f"{w.dtype} {list(w.shape)} {w.reshape(-1)[:8].tolist()}")
    for p in problems:
        print(p)
    print(f"checked {len(got)} tensors: {'ok' if not problems else 'MISMATCH'}")
    return 0 if not problems else 1


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.stderr.write(__doc__)
        return 2
    out = pathlib.Path(sys.argv[2])
    if sys.argv[1] == "make":
        make(out)
        return 0
    return check(out)


if __name__ == "__main__":
    sys.exit(main())
