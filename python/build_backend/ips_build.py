"""PEP 517 build backend for `pip install .` (pyproject.toml): configures and builds the module with
CMake, as scripts/build.sh does, then packs build/python/ips into a wheel. The standard library
only. The build folder is IPS_BUILD_DIR or build/ in the checkout, so a tree that scripts/build.sh
already built only relinks; CMake's own options pass through IPS_CMAKE_ARGS.
"""
import base64
import hashlib
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(ips VERSION ([0-9.]+)", f.read()).group(1)


def _tag():
    """cpXY-cpXY-<platform>: the module is built for this interpreter and machine."""
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return f"{py}-{py}-{sysconfig.get_platform().replace('-', '_').replace('.', '_')}"


def _cached_python(build):
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            m = re.search(r"^Python3_EXECUTABLE:[A-Z]+=(.*)$", f.read(), re.M)
        return m.group(1) if m else ""
    except OSError:
        return None


def _build():
    """Builds the module for this interpreter; returns the folder holding the package. build/ is
    used when it is for this interpreter (a venv's python is its base's) or not configured yet;
    otherwise a folder of this interpreter's own, so the checkout's build keeps its Python."""
    build = os.environ.get("IPS_BUILD_DIR") or os.path.join(ROOT, "build")
    cached = _cached_python(build)
    if cached and os.path.realpath(cached) != os.path.realpath(sys.executable) and not os.environ.get("IPS_BUILD_DIR"):
        build = os.path.join(ROOT, f"build-python-{_tag()}")
        cached = _cached_python(build)
    args = ["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DIPS_PYTHON=ON"]
    if not cached:
        args.append(f"-DPython3_EXECUTABLE={sys.executable}")
    if cached is None:
        if subprocess.run(["ninja", "--version"], capture_output=True).returncode == 0:
            args += ["-G", "Ninja"]
        try:  # a PyTorch wheel's libtorch, when this interpreter's torch is one (Debian's is found without)
            import torch.utils
            args.append(f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}")
        except ImportError:
            sys.exit("ips: this Python cannot import torch; install PyTorch (or Debian's python3-torch) first")
    args += shlex.split(os.environ.get("IPS_CMAKE_ARGS", ""))
    subprocess.run(args, check=True)
    subprocess.run(["cmake", "--build", build, "--target", "ips_python", "--parallel", str(os.cpu_count() or 1)],
                   check=True)
    package = os.path.join(build, "python", "ips")
    if not any(name.startswith("_ips") for name in os.listdir(package)):
        sys.exit(f"ips: the build made no module in {package}")
    return package


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _metadata():
    return (f"Metadata-Version: 2.1\nName: ips\nVersion: {_version()}\n"
            "Summary: Iterative Patch Selection on images of any size: the ips C++ library from Python\n"
            "Requires-Python: >=3.9\nRequires-Dist: torch\n")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    package = _build()
    name = f"ips-{_version()}-{_tag()}.whl"
    info = f"ips-{_version()}.dist-info"
    files = [(f"ips/{f}", open(os.path.join(package, f), "rb").read()) for f in sorted(os.listdir(package))
             if os.path.isfile(os.path.join(package, f)) and not f.endswith(".pyc")]
    files.append((f"{info}/METADATA", _metadata().encode()))
    files.append((f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: ips_build\nRoot-Is-Purelib: false\nTag: {_tag()}\n"
                  .encode()))
    record = [_record_line(n, d) for n, d in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as wheel:
        for n, d in files:
            z = zipfile.ZipInfo(n, date_time=(2026, 1, 1, 0, 0, 0))
            z.external_attr = (0o755 if n.endswith(".so") else 0o644) << 16
            wheel.writestr(z, d, zipfile.ZIP_DEFLATED)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = os.path.join(metadata_directory, f"ips-{_version()}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(_metadata())
    return os.path.basename(info)
