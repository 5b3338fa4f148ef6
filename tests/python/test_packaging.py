"""`pip install .` (pyproject.toml, python/build_backend/ips_build.py): the backend builds the module
with CMake in the build folder under test and packs a wheel whose module imports on its own."""
import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile

from conftest import BUILD, SOURCE


def test_the_wheel_holds_the_module_and_imports_without_the_build(tmp_path, monkeypatch, svs):
    monkeypatch.setenv("IPS_BUILD_DIR", os.environ.get("IPS_BUILD_DIR") or BUILD)
    sys.path.insert(0, os.path.join(SOURCE, "python", "build_backend"))
    try:
        import ips_build
    finally:
        sys.path.pop(0)
    name = ips_build.build_wheel(str(tmp_path))
    assert name.startswith(f"ips-{ips_build._version()}-cp{sys.version_info.major}{sys.version_info.minor}-")
    with zipfile.ZipFile(tmp_path / name) as wheel:
        names = wheel.namelist()
        assert {"ips/__init__.py", "ips/__init__.pyi", "ips/py.typed"} <= set(names)
        assert any(n.startswith("ips/_ips") and n.endswith(".so") for n in names)
        record = wheel.read(next(n for n in names if n.endswith("/RECORD"))).decode().splitlines()
        for line in record:
            path, digest, size = line.split(",")
            if digest:  # every file but RECORD itself, by its hash and size
                data = wheel.read(path)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={want}" and int(size) == len(data), path
        wheel.extractall(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    r = subprocess.run([sys.executable, "-c", f"import ips; print(ips.__file__); print(len(ips.Slide({svs!r}).tissue_tiles()))"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(tmp_path / "site")), r.stdout
    if importlib.util.find_spec("pip"):  # and pip takes it, offline
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target",
                            str(tmp_path / "pip"), str(tmp_path / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / "pip" / "ips" / "__init__.py").exists()
