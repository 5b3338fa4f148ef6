"""Feature bags written the way CLAM and TRIDENT write them (h5py and torch, as their code does),
for tests/io/feature_bag_test.cpp and tests/cli/predict_test.cpp.

    python3 make_peer_bags.py DIR

DIR/clam.h5          CLAM extract_features_fp.py: save_hdf5(attr_dict=None) batch by batch (mode
                     'w' then 'a', chunks of 32 rows): `features` float32 [N, D], `coords` int32
                     [N, 2], no attributes at all. Tiles of 256 level-0 pixels.
DIR/clam_column.h5   the same for one column of tiles: the coordinates do not tell the tile side.
DIR/trident.h5       TRIDENT: save_coords' attributes on `coords` (patch_size 256 at 20x of a 40x
                     slide, patch_size_level0 512, ...) and name/savetodir/encoder on `features`,
                     chunks of one row.
DIR/clam_pt.pt       CLAM's pt_files: torch.save(torch.from_numpy(features)) (and a copy,
DIR/clam_pt_b.pt     for a cohort of two).
Every file holds the same features; DIR/bags.json gives N, D and the tile sides.
"""
import json
import sys

import h5py
import numpy as np
import torch


def clam_save_hdf5(output_path, asset_dict, attr_dict=None, mode="a", chunk_size=32):
    with h5py.File(output_path, mode) as file:
        for key, val in asset_dict.items():
            data_shape = val.shape
            if key not in file:
                dset = file.create_dataset(key, shape=data_shape, maxshape=(None,) + data_shape[1:],
                                           chunks=(chunk_size,) + data_shape[1:], dtype=val.dtype)
                dset[:] = val
                if attr_dict is not None and key in attr_dict:
                    for k, v in attr_dict[key].items():
                        dset.attrs[k] = v
            else:
                dset = file[key]
                dset.resize(len(dset) + data_shape[0], axis=0)
                dset[-data_shape[0]:] = val


def trident_save_h5(save_path, assets, attributes=None, mode="w"):
    with h5py.File(save_path, mode) as file:
        for key, val in assets.items():
            dset = file.create_dataset(key, shape=val.shape, maxshape=(None,) + val.shape[1:],
                                       chunks=(1,) + val.shape[1:], dtype=val.dtype)
            dset[:] = val
            for k, v in (attributes or {}).get(key, {}).items():
                dset.attrs[k] = v


def grid(n, cols, side, x0=1000, y0=2000):
    """n tiles in rows of `cols`, some skipped as tissue gaps would be."""
    xy = [(x0 + (k % cols) * side, y0 + (k // cols) * side) for k in range(2 * n) if k % 5 != 3]
    return np.asarray(xy[:n], dtype=np.int64)


def main(out):
    rng = np.random.default_rng(7)
    n, d = 40, 32
    features = rng.standard_normal((n, d)).astype(np.float32)
    for name, coords in (("clam", grid(n, 6, 256)), ("clam_column", grid(n, 1, 256))):
        mode = "w"
        for b in range(0, n, 16):
            clam_save_hdf5("%s/%s.h5" % (out, name),
                           {"features": features[b:b + 16], "coords": coords[b:b + 16].astype(np.int32)}, None, mode)
            mode = "a"
    coords_attrs = {"patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40,
                    "target_magnification": 20, "overlap": 0, "name": "trident", "savetodir": out + "/patches",
                    "level0_width": 40000, "level0_height": 30000}
    trident_save_h5(out + "/trident.h5", {"features": features, "coords": grid(n, 6, 512)},
                    {"features": {"name": "trident", "savetodir": out, "encoder": "uni_v1"}, "coords": coords_attrs})
    for name in ("clam_pt", "clam_pt_b"):
        torch.save(torch.from_numpy(features), "%s/%s.pt" % (out, name))
    with open(out + "/bags.json", "w") as f:
        json.dump({"N": n, "D": d, "clam_side": 256, "trident_side": 512}, f)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
