"""ips.train, ips.features and ips.tiles: the CLI's jobs with its semantics and results, callbacks,
and the GIL released while they work."""
import json
import os
import threading
import time

import h5py
import numpy as np
import pytest
import torch

from conftest import cli, fixture

CPU = ("--device", "cpu", "--threads", "1")


def metrics(run_dir):
    """metrics.jsonl without its times."""
    out = []
    for line in open(os.path.join(run_dir, "metrics.jsonl")):
        j = json.loads(line)
        out.append({k: v for k, v in j.items() if k not in ("seconds", "comm_seconds")})
    return out


def same_checkpoints(a, b):
    ma, mb = torch.load(a)["model"], torch.load(b)["model"]
    assert list(ma) == list(mb)
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k


def test_train_equals_the_clis_run(ips, tmp_path):
    cfg_file = fixture("tiny_synthetic.yaml")
    cli("train", cfg_file, "--quiet", *CPU, "--out", tmp_path / "cli")
    seen = []
    records = ips.train(ips.Config(cfg_file), str(tmp_path / "py"), device="cpu", progress=False, on_epoch=seen.append)
    assert metrics(tmp_path / "py") == metrics(tmp_path / "cli")
    same_checkpoints(tmp_path / "py" / "last.pt", tmp_path / "cli" / "last.pt")
    assert (tmp_path / "py" / "config.yaml").read_text() == (tmp_path / "cli" / "config.yaml").read_text()
    assert [r["epoch"] for r in records] == [1, 2] and seen == records
    first = metrics(tmp_path / "cli")[0]
    assert records[0]["train_loss"] == pytest.approx(first["train_loss"], rel=1e-12)
    assert set(records[0]["test"]) >= {"loss", "n", "kind", "tags"}


def test_an_exception_in_on_epoch_ends_the_run_with_that_exception(ips, tmp_path):
    def stop(record):
        raise LookupError(f"enough after epoch {record['epoch']}")

    with pytest.raises(LookupError, match="enough after epoch 1"):
        ips.train(ips.Config(fixture("tiny_synthetic.yaml")), str(tmp_path / "run"), device="cpu", progress=False,
                  on_epoch=stop)
    assert len(metrics(tmp_path / "run")) == 1  # the epoch's line and checkpoint were written first
    assert (tmp_path / "run" / "last.pt").exists()


def test_the_gil_is_released_while_a_run_works(ips, tmp_path):
    stamps, done = [], threading.Event()

    def tick():
        while not done.is_set():
            stamps.append(time.monotonic())
            time.sleep(0.01)

    t = threading.Thread(target=tick)
    t.start()
    start = time.monotonic()
    ips.train(ips.Config(fixture("tiny_synthetic.yaml"), n_epoch=4, n_train=64), str(tmp_path / "run"), device="cpu",
              progress=False)
    end = time.monotonic()
    done.set()
    t.join()
    assert end - start > 0.5, "the run was too short to tell"
    inside = [s for s in stamps if start + 0.1 < s < end - 0.1]
    # The other thread ticked all along: at least half of the 10 ms ticks that fit.
    assert len(inside) > 0.5 * (end - start - 0.2) / 0.011, (len(inside), end - start)


def bag(path):
    with h5py.File(path, "r") as f:
        return ({k: f[k][()] for k in ("features", "coords")},
                {k: {a: f[k].attrs[a] for a in f[k].attrs} for k in ("features", "coords")})


def same_bags(a, b):
    (da, aa), (db, ab) = bag(a), bag(b)
    for k in da:
        assert da[k].dtype == db[k].dtype and np.array_equal(da[k], db[k]), k
    assert {k: {n: str(v) for n, v in x.items()} for k, x in aa.items()} == \
           {k: {n: str(v) for n, v in x.items()} for k, x in ab.items()}


def test_features_equal_the_clis_bags(ips, svs, tmp_path):
    cli("features", fixture("features_tiny.yaml"), svs, *CPU, "--out", tmp_path / "cli")
    seen = []
    results = ips.features(ips.Config(fixture("features_tiny.yaml")), svs, out=str(tmp_path / "py"), device="cpu",
                           progress=False, on_slide=seen.append)
    assert len(results) == 1 and seen == results and results[0]["tiles"] > 0 and not results[0]["already_done"]
    same_bags(tmp_path / "py" / "CMU-1-Small-Region.h5", tmp_path / "cli" / "CMU-1-Small-Region.h5")
    again = ips.features(ips.Config(fixture("features_tiny.yaml")), [svs], out=str(tmp_path / "py"), device="cpu",
                         progress=False)
    assert again[0]["already_done"]


def test_features_of_a_vit_preset_equal_the_clis(ips, svs, tmp_path):
    cli("features", fixture("features_vit.yaml"), svs, "--encoder", "kaiko-vits16", "--set", "vit_depth=1",
        "--dtype", "float32", *CPU, "--out", tmp_path / "cli")
    results = ips.features(ips.Config(fixture("features_vit.yaml"), vit_depth=1), svs, out=str(tmp_path / "py"),
                           encoder="kaiko-vits16", dtype="float32", device="cpu", progress=False)
    assert results[0]["dim"] == 384
    same_bags(tmp_path / "py" / "CMU-1-Small-Region.h5", tmp_path / "cli" / "CMU-1-Small-Region.h5")
    with pytest.raises(ValueError, match="unknown ViT encoder 'kaiko-vitz'"):
        ips.features(ips.Config(fixture("features_vit.yaml")), svs, out=str(tmp_path / "x"), encoder="kaiko-vitz")
    assert not (tmp_path / "x").exists()


def test_a_bad_slide_is_reported_and_the_others_are_made(ips, svs, tmp_path):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    with pytest.raises(RuntimeError, match="bad.svs"):
        ips.tiles([str(bad), svs], out=str(tmp_path / "tiles"), patch=224)
    assert (tmp_path / "tiles" / "CMU-1-Small-Region.csv").exists()
    assert not list((tmp_path / "tiles").glob("bad.*"))


def test_tiles_equal_the_clis(ips, svs, tmp_path):
    cli("tiles", svs, "--patch", "224", "--threads", "1", "--out", tmp_path / "cli")
    results = ips.tiles(svs, out=str(tmp_path / "py"), patch=224)
    assert results[0]["tiles"] == len(ips.Slide(svs).tissue_tiles(patch=224))
    for ext in ("csv", "png"):
        assert (tmp_path / "py" / f"CMU-1-Small-Region.{ext}").read_bytes() == \
               (tmp_path / "cli" / f"CMU-1-Small-Region.{ext}").read_bytes(), ext
    assert ips.tiles(svs, out=str(tmp_path / "py"), patch=224)[0]["already_done"]
