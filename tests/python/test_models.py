"""ips.Model: predictions and explanations equal `ips predict`'s, evaluation equals `ips eval`'s,
selection equals the independent PyTorch peer's (tests/peer/ips_peer.py), and tensors cross without
copies."""
import collections
import json
import os
import re
import resource

import pytest
import torch
import torchvision

import ips_peer
from conftest import CONFIGS, cli, fixture, json_lines

CPU = ("--device", "cpu", "--threads", "1")


@pytest.fixture(scope="module")
def slide_model(ips, tmp_path_factory):
    """slide_tiny.yaml's model with its random initial weights, saved as an ips checkpoint."""
    path = str(tmp_path_factory.mktemp("slide_model") / "w.pt")
    ips.Model(config=ips.Config(fixture("slide_tiny.yaml")), device="cpu").save(path)
    return path


def same_prediction(ours, cli_json):
    assert ours["N"] == cli_json["N"]
    assert ours["selected"].tolist() == cli_json["selected"]
    assert ours["scores"].tolist() == pytest.approx(cli_json["scores"], abs=1e-7)
    for task, p in cli_json["predictions"].items():
        assert ours["probs"][task].tolist() == pytest.approx(p, abs=1e-7), task


def test_predict_on_a_slide_equals_the_clis_json(ips, svs, slide_model):
    model = ips.Model(slide_model)  # the checkpoint holds its config
    assert model.config.tasks == ["slide"] and model.device == "cpu"
    ours = model.predict(svs)
    want = json_lines(cli("predict", fixture("slide_tiny.yaml"), svs, "--weights", slide_model, "--json", "--quiet",
                          *CPU).stdout)[-1]
    same_prediction(ours, want)
    assert ours["json"]["predictions"] == want["predictions"]
    # Every patch's score: the kept ones in the order of `selected`, ranks 1..M for them.
    n = want["N"]
    assert ours["patch_scores"].shape == (n,) and ours["patch_rank"].shape == (n,) and ours["kept"].shape == (n,)
    assert ours["kept"].sum().item() == len(want["selected"])
    assert torch.equal(torch.sort(ours["patch_rank"][ours["selected"]]).values, torch.arange(1, len(want["selected"]) + 1))
    assert ours["patch_scores"][ours["selected"]].tolist() == pytest.approx(want["scores"], abs=1e-6)


def test_predict_writes_the_clis_outputs(ips, svs, slide_model, tmp_path):
    cli("predict", fixture("slide_tiny.yaml"), svs, "--weights", slide_model, "--out", tmp_path / "cli",
        "--outputs", "heatmap,geojson,gallery", "--quiet", *CPU)
    ours = ips.Model(slide_model).predict(svs, out=str(tmp_path / "py"), outputs="heatmap,geojson,gallery")
    assert ours["record"] == str(tmp_path / "py" / "CMU-1-Small-Region.json")
    stem = "CMU-1-Small-Region"
    listing = lambda d: sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
    assert listing(tmp_path / "py" / stem) == listing(tmp_path / "cli" / stem)
    for name in ("heatmap.png", "patches.geojson"):
        assert (tmp_path / "py" / stem / name).read_bytes() == (tmp_path / "cli" / stem / name).read_bytes(), name
    drop_times = lambda j: {k: v for k, v in j.items() if "time" not in k and "seconds" not in k}
    a = json.loads((tmp_path / "py" / f"{stem}.json").read_text())
    b = json.loads((tmp_path / "cli" / f"{stem}.json").read_text())
    assert drop_times(a) == drop_times(b)
    # A complete record is kept, as a rerun of the CLI keeps it.
    again = ips.Model(slide_model).predict(svs, out=str(tmp_path / "py"), outputs="heatmap,geojson,gallery")
    assert again["already_done"] and again["selected"].tolist() == ours["selected"].tolist()


def test_predict_on_an_image_and_its_heat_map(ips, tmp_path):
    cfg = ips.Config(fixture("tiny_grey.yaml"))
    model = ips.Model(config=cfg)
    model.save(str(tmp_path / "w.pt"))
    image = (torch.rand(1, 80, 64, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    torchvision.io.write_png(image, str(tmp_path / "x.png"))
    ours = model.predict(str(tmp_path / "x.png"), heatmap=str(tmp_path / "py.png"))
    want = json_lines(cli("predict", fixture("tiny_grey.yaml"), tmp_path / "x.png", "--weights", tmp_path / "w.pt",
                          "--json", "--quiet", "--heatmap", tmp_path / "cli.png", *CPU).stdout)[-1]
    same_prediction(ours, want)
    assert ours["heatmap"] == str(tmp_path / "py.png")
    assert (tmp_path / "py.png").read_bytes() == (tmp_path / "cli.png").read_bytes()


def test_evaluate_equals_the_clis_eval(ips, tmp_path):
    cfg = ips.Config(fixture("tiny_synthetic.yaml"))
    model = ips.Model(config=cfg)
    model.save(str(tmp_path / "w.pt"))
    line = cli("eval", fixture("tiny_synthetic.yaml"), "--checkpoint", tmp_path / "w.pt", *CPU).stdout.strip()
    ours = ips.Model(str(tmp_path / "w.pt"), config=cfg).evaluate()
    assert ours["n"] == 4
    assert f"test loss {ours['loss']:.6f}" in line, line
    assert f"kind accuracy {ours['kind']['accuracy']:.4f}" in line, line


def test_state_dict_is_the_models_own_tensors_and_loads_back(ips, tmp_path):
    cfg = ips.Config(fixture("tiny_grey.yaml"))
    model = ips.Model(config=cfg)
    sd = model.state_dict()
    assert isinstance(sd, collections.OrderedDict) and all(not t.requires_grad for t in sd.values())
    assert sd is not model.state_dict() and all(
        a.data_ptr() == b.data_ptr() for a, b in zip(sd.values(), model.state_dict().values()))  # no copies
    patches = torch.rand(1, 20, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    before = model.select(patches)[0]
    torch.save(sd, tmp_path / "sd.pth")  # the reference's layout: ips loads it as --weights does
    assert torch.equal(ips.Model(str(tmp_path / "sd.pth"), config=cfg).select(patches)[0], before)
    with torch.no_grad():
        for t in sd.values():
            if t.is_floating_point():
                t.zero_()  # writes into the model
    assert ips.Model(config=cfg).state_dict().keys() == sd.keys()
    assert all(float(t.abs().sum()) == 0 for t in model.state_dict().values() if t.is_floating_point())


def peer_selection(peer, patches, M, I):
    """SPEC §1.1 with shuffle off, in the peer: (indices best first, their scores in the last round)."""
    N = patches.shape[0]
    pe = ips_peer.pos_table(N, peer.cfg["D"])
    with torch.no_grad():
        idx = torch.arange(M)
        mem = peer.embed(patches[idx])
        s = ips_peer.score(peer, mem, idx, pe)
        for start in range(M, N, I):
            chunk = torch.arange(start, min(start + I, N))
            cand_emb, cand_idx = torch.cat([mem, peer.embed(patches[chunk])]), torch.cat([idx, chunk])
            s = ips_peer.score(peer, cand_emb, cand_idx, pe)
            keep = torch.sort(s, descending=True).indices[:M]
            mem, idx, s = cand_emb[keep], cand_idx[keep], s[keep]
    order = torch.sort(s, descending=True).indices
    return idx[order], s[order]


def test_selection_equals_the_independent_peers(ips, tmp_path):
    # Megapixel MNIST's model (SPEC §1.5) on a 500 x 500 image: N = 100 patches of 50, M = 10, I = 20.
    peer_cfg = dict(ips_peer.CONFIGS["mnist"], H_img=500, W_img=500, M=10, I=20)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(11)
    peer = ips_peer.Peer(peer_cfg)
    ips_peer.randomize_bn(peer, gen)
    peer.eval()
    torch.save(peer.state_dict(), tmp_path / "weights.pth")
    image = ips_peer.image_make(peer_cfg, gen)
    patches = ips_peer.patches_of(image.float() / 255, 50)  # [100, 1, 50, 50]
    want_idx, want_scores = peer_selection(peer, patches, 10, 20)

    cfg = ips.Config(os.path.join(CONFIGS, "megapixel_mnist.yaml"), shuffle=False, M=10, I=20)
    model = ips.Model(str(tmp_path / "weights.pth"), config=cfg)
    idx, scores, valid = model.select(patches[None])
    assert idx.shape == (1, 10) and bool(valid.all())
    assert idx[0].tolist() == want_idx.tolist()
    assert scores[0].tolist() == pytest.approx(want_scores.tolist(), abs=1e-5)
    # uint8 pixels are scaled as sources scale them: the same selection.
    assert torch.equal(model.select(image.unfold(1, 50, 50).unfold(2, 50, 50).permute(1, 2, 0, 3, 4)
                                    .reshape(1, 100, 1, 50, 50))[0], idx)
    # Shuffled as training shuffles: reproducible from the seed, the same M patches whatever the order
    # (the scores decide), and another seed's order still keeps M distinct valid indices.
    a = model.select(patches[None], train=True, seed=3)[0]
    assert torch.equal(a, model.select(patches[None], train=True, seed=3)[0])
    assert len(set(a[0].tolist())) == 10


def test_selection_reads_the_input_in_place(ips):
    """A [1, N, C, h, w] uint8 input of 400 MB is read chunk by chunk: peak memory grows by far less
    than one float32 copy of it (1.6 GB) would take."""
    cfg = ips.Config(fixture("tiny_grey.yaml"), M=4, I=64)
    model = ips.Model(config=cfg)
    patches = torch.randint(0, 255, (1, 25000, 1, 128, 128), dtype=torch.uint8)  # 410 MB
    peak_kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.select(patches[:, :100])  # warm up allocators and kernels
    before = peak_kib()
    idx, _, _ = model.select(patches)
    grown_mib = (peak_kib() - before) / 1024
    assert idx.shape == (1, 4) and int(idx.max()) < 25000
    assert grown_mib < 200, f"peak memory grew by {grown_mib:.0f} MiB"


def test_encode_and_bad_patches(ips):
    model = ips.Model(config=ips.Config(fixture("tiny_grey.yaml")))
    x = torch.rand(5, 1, 16, 16)
    emb = model.encode(x)
    assert emb.shape == (5, 16) and not emb.requires_grad
    assert torch.allclose(model.encode((x * 255).round().to(torch.uint8)), model.encode((x * 255).round() / 255), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[B, N, C, h, w\]"):
        model.select(torch.rand(20, 16))
    with pytest.raises(ValueError, match="device"):
        model.to("tpu")
