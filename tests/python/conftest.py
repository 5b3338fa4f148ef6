"""What the tests of `import ips` share: where the module, the CLI, the fixtures and the real slide
are, running the CLI, and CTest's "skipped" for a file whose every test was skipped.

CTest sets PYTHONPATH (build/python), IPS_BINARY (build/ips), IPS_CLI_TESTS and IPS_SOURCE_DIR
(tests/CMakeLists.txt). By hand, from the checkout: PYTHONPATH=build/python python3 -m pytest tests/python
"""
import json
import os
import subprocess
import sys

import pytest

SOURCE = os.environ.get("IPS_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(SOURCE, "build")
if not any(os.path.isdir(os.path.join(p, "ips")) for p in sys.path if p):
    sys.path.insert(0, os.path.join(BUILD, "python"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "peer"))  # the independent PyTorch peers

BINARY = os.environ.get("IPS_BINARY") or os.path.join(BUILD, "ips")
FIXTURES = os.path.join(SOURCE, "tests", "fixtures")
CONFIGS = os.path.join(SOURCE, "configs")


def slide_path():
    """The real Aperio slide, as tests/test_support.h finds it (never committed)."""
    env = os.environ.get("IPS_TEST_SLIDE")
    if env:
        return env
    beside = os.path.join(SOURCE, "..", "shared", "data", "CMU-1-Small-Region.svs")
    workplace = "/work/shared/data/CMU-1-Small-Region.svs"
    return beside if os.path.exists(beside) or not os.path.exists(workplace) else workplace


def fixture(name):
    return os.path.join(FIXTURES, name)


def cli(*args, check=True, env=None):
    """Runs the ips binary; returns the CompletedProcess (text)."""
    r = subprocess.run([BINARY, *map(str, args)], capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"ips {' '.join(map(str, args))} exited {r.returncode}:\n{r.stderr}\n{r.stdout}")
    return r


def json_lines(text):
    """The lines of a command's output that are JSON objects."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="session")
def ips():
    import ips as module
    module.set_threads(1)  # as the CLI runs below, with --threads 1: the same kernels, the same numbers
    return module


@pytest.fixture(scope="session")
def svs():
    path = slide_path()
    assert os.path.exists(path), f"the test slide {path} is missing (../shared/data beside the checkout)"
    return path


_outcomes = {"passed": 0, "skipped": 0, "failed": 0}


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def pytest_sessionfinish(session, exitstatus):
    # Every test skipped (no GPU, say): exit 77, which CTest counts as a skipped test, not a pass.
    if exitstatus == 0 and _outcomes["skipped"] and not _outcomes["passed"] and not _outcomes["failed"]:
        session.exitstatus = 77
