"""A notebook as a script: the Aperio slide from Python with ips (docs/PYTHON.md walks through it).

    PYTHONPATH=build/python /usr/bin/python3 python/examples/walkthrough.py [SLIDE] [OUT]

Each block is a notebook cell. The models here have random weights (the repository ships none);
with yours, pass weights= to ips.features and a checkpoint to ips.Model.
"""
import os
import sys

import torch
import torchvision

import ips

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
slide_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "data", "CMU-1-Small-Region.svs")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "runs", "walkthrough")
ips.set_threads(2)

# %% 1. Open the slide: its size, levels and resolution.
slide = ips.Slide(slide_path)
print(slide, f"{slide.mpp} µm/px", slide.levels)

# %% 2. Its tissue tiles are a Dataset: a DataLoader with workers reads them (each worker reopens
# the slide); iterating the Tiles itself gives batches read ahead on ips's reader thread.
tiles = slide.tissue_tiles(patch=224, batch=32)
loader = torch.utils.data.DataLoader(tiles, batch_size=32, num_workers=2)
coords, first = next(iter(loader))
print(f"{len(tiles)} tissue tiles; a batch: {tuple(first.shape)} {first.dtype}, top-left corners {coords[:2].tolist()}")

# %% 3. Any PyTorch encoder on them, here a torchvision ResNet-18 (load your weights into it).
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
resnet = torchvision.models.resnet18().eval()
with torch.no_grad():
    embeddings = torch.cat([resnet((batch.float() / 255 - mean) / std) for _, batch in tiles])
print("ResNet-18 embeddings:", tuple(embeddings.shape))

# %% 4. Or ips's feature job with a foundation-model preset: the preset's tile size, resolution and
# normalisation, one HDF5 bag per slide as CLAM and TRIDENT write them (weights="UNI/pytorch_model.bin"...).
cfg = ips.Config(os.path.join(REPO, "tests", "fixtures", "features_vit.yaml"), vit_depth=1)
bags = ips.features(cfg, slide_path, out=os.path.join(out, "features"), encoder="kaiko-vits16", progress=False)
print("feature bag:", bags[0]["out"], f"{bags[0]['tiles']} x {bags[0]['dim']}")

# %% 5. Predict with an IPS model (a checkpoint of `ips train`: ips.Model("runs/x/best.pt")). The
# result holds each task's probabilities, the selected tiles and every tile's score, and out= writes
# what `ips predict --out` writes.
model = ips.Model(config=ips.Config(os.path.join(REPO, "tests", "fixtures", "slide_tiny.yaml")))
p = model.predict(slide_path, out=os.path.join(out, "predictions"), outputs="heatmap,geojson")
print("probabilities:", {task: probs.tolist() for task, probs in p["probs"].items()})
print("selected tiles:", p["selected"].tolist(), "of", p["N"])
print("best-scored tile's score:", float(p["patch_scores"].max()))

# %% 6. The heat map: every tile coloured by its score, the selected ones outlined. In a notebook:
# from IPython.display import Image; Image(heatmap)
stem = os.path.splitext(os.path.basename(slide_path))[0]
heatmap = os.path.join(out, "predictions", stem, "heatmap.png")
picture = torchvision.io.read_image(heatmap)
print("heat map:", heatmap, tuple(picture.shape))
