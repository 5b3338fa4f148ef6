"""docs/PYTHON.md's worked example (python/examples/walkthrough.py) runs as written."""
import os
import subprocess
import sys

from conftest import SOURCE


def test_the_walkthrough_runs(svs, tmp_path):
    script = os.path.join(SOURCE, "python", "examples", "walkthrough.py")
    r = subprocess.run([sys.executable, script, svs, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tissue tiles; a batch: (32, 3, 224, 224) torch.uint8" in r.stdout, r.stdout
    assert "feature bag:" in r.stdout and "x 384" in r.stdout, r.stdout
    assert (tmp_path / "features" / "CMU-1-Small-Region.h5").exists()
    assert (tmp_path / "predictions" / "CMU-1-Small-Region" / "heatmap.png").exists()
    assert (tmp_path / "predictions" / "CMU-1-Small-Region" / "patches.geojson").exists()
