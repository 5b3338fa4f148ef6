"""Peers for ips predict's files: jsonschema and GDAL for the GeoJSON, OpenSlide for the overlay.

  explain_peer.py geojson FILE SCHEMA WORKDIR   validate strictly, then round-trip through GDAL
  explain_peer.py overlay FILE X Y FX FY        OpenSlide: dimensions and RGBA at two points
"""
import json
import os
import subprocess
import sys


def geojson(path, schema_path, workdir):
    import jsonschema

    with open(path) as f:
        doc = json.load(f)
    with open(schema_path) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(doc)
    feats = doc["features"]
    ranks = sorted(f["properties"]["rank"] for f in feats)
    assert ranks == list(range(1, len(feats) + 1)), "ranks are not a permutation of 1..N"
    for f in feats:
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1], "ring not closed"
    print(f"schema ok, {len(feats)} features")

    os.makedirs(workdir, exist_ok=True)
    out = os.path.join(workdir, "roundtrip.geojson")
    if os.path.exists(out):
        os.remove(out)
    subprocess.run(["ogr2ogr", "-f", "GeoJSON", out, path], check=True)
    with open(out) as f:
        back = json.load(f)["features"]
    assert len(back) == len(feats), f"GDAL read {len(back)} features, not {len(feats)}"
    for a, b in zip(feats, back):
        assert b["geometry"]["type"] == "Polygon"
        assert b["geometry"]["coordinates"] == a["geometry"]["coordinates"], (a["geometry"], b["geometry"])
        for key in ("score", "rank", "kept", "index", "objectType", "name"):
            assert b["properties"][key] == a["properties"][key], (key, a["properties"][key], b["properties"][key])
    print("round trip ok")


def overlay(path, x, y, fx, fy):
    import openslide

    s = openslide.OpenSlide(path)
    print("dimensions", *s.dimensions, "levels", s.level_count)
    at = s.read_region((int(x), int(y)), 0, (1, 1)).getpixel((0, 0))
    far = s.read_region((int(fx), int(fy)), 0, (1, 1)).getpixel((0, 0))
    print("at-point", *at, "far", *far)


if __name__ == "__main__":
    {"geojson": geojson, "overlay": overlay}[sys.argv[1]](*sys.argv[2:])
