"""ips.Slide and ips.Tiles on the real Aperio slide, against openslide-python (an independent reader
of the same file) and against the CLI's `ips tiles`."""
import csv
import pickle

import numpy as np
import openslide
import pytest
import torch

from conftest import cli


def openslide_rgb(osr, x, y, w, h, level=0):
    """RGB uint8 [3, h, w] as openslide-python reads it (RGBA, premultiplied onto white)."""
    rgba = np.asarray(osr.read_region((x, y), level, (w, h)), dtype=np.float64)
    a = rgba[..., 3:4] / 255
    rgb = np.rint(rgba[..., :3] * a + 255 * (1 - a)).astype(np.uint8)
    return torch.from_numpy(rgb).permute(2, 0, 1)


def test_slide_geometry_equals_openslides(ips, svs):
    s = ips.Slide(svs)
    osr = openslide.OpenSlide(svs)
    assert s.dimensions == osr.dimensions
    assert len(s.levels) == osr.level_count
    for level, ds in zip(s.levels, osr.level_downsamples):
        assert level["downsample"] == pytest.approx(ds)
    assert s.mpp == pytest.approx(float(osr.properties[openslide.PROPERTY_NAME_MPP_X]), rel=1e-6)
    assert s.loader == "openslideload"  # the libvips loader that read it
    assert s.level_for_mpp(0.5) == 0
    assert "CMU-1-Small-Region" in repr(s)


def test_regions_equal_openslides_pixels(ips, svs):
    s = ips.Slide(svs)
    osr = openslide.OpenSlide(svs)
    for x, y, w, h in [(0, 0, 256, 256), (1000, 1500, 300, 200), (2100, 2900, 256, 256)]:  # the last crosses the border
        ours = s.read_region(x, y, w, h)
        assert ours.dtype == torch.uint8 and ours.shape == (3, h, w)
        assert torch.equal(ours, openslide_rgb(osr, x, y, w, h)), (x, y, w, h)
    thumb, downsample = s.thumbnail(512)
    assert max(thumb.shape[1:]) == 512 and downsample == pytest.approx(2967 / 512, rel=0.01)


def test_tissue_tiles_are_the_clis_and_their_pixels_openslides(ips, svs, tmp_path):
    tiles = ips.Slide(svs).tissue_tiles(patch=224, batch=16)
    r = cli("tiles", svs, "--patch", "224", "--threads", "1", "--out", tmp_path)
    with open(tmp_path / "CMU-1-Small-Region.csv") as f:
        want = [(int(row["x"]), int(row["y"])) for row in csv.DictReader(f)]
    assert [tuple(c) for c in tiles.coords.tolist()] == want, r.stdout
    assert len(tiles) == len(want) and tiles.patch == 224 and tiles.level == 0
    assert tiles.grid == (2220 // 224, 2967 // 224)

    osr = openslide.OpenSlide(svs)
    for i in (0, len(tiles) // 2, -1):
        coords, tile = tiles[i]
        x, y = coords.tolist()
        assert torch.equal(tile, openslide_rgb(osr, x, y, 224, 224)), i


def test_batches_are_read_ahead_and_share_the_coordinates(ips, svs):
    tiles = ips.Slide(svs).tissue_tiles(patch=224, batch=16)
    coords_storage = tiles.coords.data_ptr()
    assert tiles.coords.data_ptr() == coords_storage  # the same tensor each time, not a copy
    seen, start = [], 0
    for coords, batch in tiles:
        assert batch.dtype == torch.uint8 and batch.shape[1:] == (3, 224, 224)
        assert coords.shape == (batch.shape[0], 2)
        # A view of tiles.coords: same storage, at this batch's offset.
        assert coords.data_ptr() == coords_storage + start * 2 * 8
        seen.append(batch)
        start += batch.shape[0]
    assert start == len(tiles)
    every = torch.cat(seen)
    assert torch.equal(every[5], tiles[5][1])
    assert torch.equal(tiles.read(torch.tensor([5, 0, 5])), every[[5, 0, 5]])
    with pytest.raises(IndexError):
        tiles[len(tiles)]
    with pytest.raises(IndexError):
        tiles.read(torch.tensor([len(tiles)]))


def test_tiles_at_given_coordinates_and_the_whole_grid(ips, svs):
    s = ips.Slide(svs)
    tissue = s.tissue_tiles(patch=224)
    order = torch.randperm(len(tissue), generator=torch.Generator().manual_seed(0))[:10]
    sample = s.tiles(tissue.coords[order], patch=224)
    assert len(sample) == 10 and sample.grid == (0, 0)
    assert torch.equal(torch.cat([b for _, b in sample]), tissue.read(order))
    grid = s.grid_tiles(patch=224)
    assert len(grid) == (2220 // 224) * (2967 // 224) >= len(tissue)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        s.tiles(torch.zeros(3, 3, dtype=torch.long))


def test_tiles_are_a_dataset_for_dataloader_workers(ips, svs):
    tiles = ips.Slide(svs).tissue_tiles(patch=128, batch=32)
    again = pickle.loads(pickle.dumps(tiles))  # what a DataLoader worker receives
    assert len(again) == len(tiles) and torch.equal(again.coords, tiles.coords)
    assert torch.equal(again[3][1], tiles[3][1])

    loader = torch.utils.data.DataLoader(tiles, batch_size=32, num_workers=2)
    got = [(c, b) for c, b in loader]
    assert torch.equal(torch.cat([c for c, _ in got]), tiles.coords)
    assert torch.equal(torch.cat([b for _, b in got]), torch.cat([b for _, b in tiles]))


def test_missing_and_unreadable_slides_name_the_file(ips, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.svs"):
        ips.Slide(str(tmp_path / "absent.svs"))
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"II*\x00 this is no slide")
    with pytest.raises(RuntimeError, match="bad.svs"):
        ips.Slide(str(bad))


def test_normalised_tiles_are_the_bytes_scaled_as_ips_scales_them(ips, svs):
    s = ips.Slide(svs)
    raw = s.tissue_tiles(patch=224, batch=16)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    net = s.tissue_tiles(patch=224, batch=16, normalize="imagenet")
    assert net.normalize == (pytest.approx(mean), pytest.approx(std))
    want = (raw.read(torch.arange(20)).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    got = torch.cat([b for _, b in net])[:20]
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6)
    assert torch.equal(net.read(torch.arange(20)), got)  # read on the calling thread or the reader thread alike
    assert torch.equal(net[3][1], got[3])
    unit = s.tiles(raw.coords[:4], patch=224, normalize="unit")
    assert torch.equal(unit.read(torch.arange(4)), raw.read(torch.arange(4)).float() / 255)
    mine = s.tiles(raw.coords[:4], patch=224, normalize=([0.5] * 3, [0.25] * 3))
    assert torch.allclose(mine.read(torch.arange(4)), (unit.read(torch.arange(4)) - 0.5) / 0.25, atol=1e-6)
    assert pickle.loads(pickle.dumps(net)).normalize == net.normalize
    with pytest.raises(ValueError, match="normalize"):
        s.tiles(raw.coords[:4], patch=224, normalize="zscore")


def test_tiles_at_another_resolution_cover_the_same_tissue_and_are_resized(ips, svs):
    """At mpp=1.0 the slide's 0.499 µm level is read at twice the side and halved, as ips features
    reads a 40x slide for a 20x encoder."""
    tiles = ips.Slide(svs).tissue_tiles(patch=224, mpp=1.0, batch=8)
    assert tiles.patch == 224 and tiles.patch_level == 448 and tiles.level == 0
    assert tiles.grid == (2220 // 448, 2967 // 448)
    osr = openslide.OpenSlide(svs)
    coords, tile = tiles[1]
    x, y = coords.tolist()
    want = torch.nn.functional.avg_pool2d(openslide_rgb(osr, x, y, 448, 448).float().unsqueeze(0), 2)[0]
    assert tile.dtype == torch.uint8 and tile.shape == (3, 224, 224)
    assert (tile.float() - want).abs().max() <= 1  # the mean of each 2 x 2 block, rounded
    again = pickle.loads(pickle.dumps(tiles))
    assert again.patch == 224 and torch.equal(again[1][1], tile)
    assert torch.equal(next(iter(tiles))[1][1], tile)
