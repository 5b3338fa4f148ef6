"""The bad-input table (tests/cli/bad_input_test.cpp) called from Python: each case's inputs are made
by the C++ table itself (BadInputTable.EveryCaseMakesItsScene), its `ips` command becomes the
module's call, and the call must raise the documented exception type with the message naming the
file or key and saying the problem as the CLI does, and leave the case's folder as it was.

Documented types: FileNotFoundError when a file the call names is not there; ValueError for a
config's keys and values; RuntimeError for the rest (a damaged or wrong file, a data set whose
rows all fail). The CLI's `data` and `plot` have no counterpart in the
module; their cases are listed as such."""
import hashlib
import json
import os
import re
import shlex
import subprocess

import pytest
import yaml

def scenes(tmp_dir):
    """Makes every case's scene with the C++ table; returns the cases (byte strings decoded)."""
    binary = os.environ.get("IPS_CLI_TESTS") or os.path.join(os.path.dirname(__file__), "..", "..", "build",
                                                              "ips_cli_tests")
    env = dict(os.environ, IPS_BAD_INPUT_SCENES=str(tmp_dir))
    r = subprocess.run([binary, "--gtest_filter=BadInputTable.EveryCaseMakesItsScene"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cases = json.load(open(tmp_dir / "cases.json"))
    as_bytes = lambda s: s.encode("latin-1")  # the C++ side wrote each byte as one code point
    return [{k: (os.fsdecode(as_bytes(v)) if isinstance(v, str) else v) for k, v in c.items()} for c in cases]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return {c["name"]: c for c in scenes(tmp_path_factory.mktemp("bad_input"))}


def snapshot(root):
    """Every entry under root: folders, files by size and hash, other kinds by name."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(d, name), root)] = "folder"
        for name in files:
            p = os.path.join(d, name)
            try:
                with open(p, "rb") as f:
                    out[os.path.relpath(p, root)] = hashlib.sha1(f.read()).hexdigest()
            except OSError:
                out[os.path.relpath(p, root)] = "special"
    return out


def call(ips, command):
    """The module's call for an `ips` command line of the table; None for commands it has no call for."""
    argv = shlex.split(command)
    sub, rest = argv[0], argv[1:]
    sets, opts, positional = {}, {}, []
    k = 0
    while k < len(rest):
        a = rest[k]
        if a == "--set":
            key, _, value = rest[k + 1].partition("=")
            sets[key] = yaml.safe_load(value) if value else ""
            k += 2
        elif a in ("--quiet", "--resume"):
            opts[a] = True
            k += 1
        elif a.startswith("--"):
            opts[a] = rest[k + 1]
            k += 2
        else:
            positional.append(a)
            k += 1
    if sub in ("data", "plot"):
        return None
    if sub == "tiles":
        return lambda: ips.tiles(positional, out=opts["--out"], patch=int(opts.get("--patch", 256)))
    config = lambda: ips.Config(positional[0], **sets)
    if sub == "train":
        return lambda: ips.train(config(), opts["--out"], device="cpu", resume="--resume" in opts,
                                 weights=opts.get("--weights"), progress=False)
    if sub == "eval":
        return lambda: ips.Model(opts["--checkpoint"], config=config(), device="cpu").evaluate()
    if sub == "predict":
        return lambda: ips.Model(opts["--weights"], config=config(), device="cpu").predict(positional[1],
                                                                                           out=opts["--out"])
    if sub == "features":
        return lambda: ips.features(config(), positional[1:], out=opts["--out"], encoder=opts.get("--encoder", ""),
                                    weights=opts.get("--weights"), device="cpu", progress=False)
    raise AssertionError(f"no translation for 'ips {sub}'")


# A row of a data set's CSV naming a missing file is left out with a warning; a data set left
# without rows is a RuntimeError that names the row and the file.
ROW_FILE_MISSING = {"CsvNamesMissingFile"}


def expected_type(case):
    """FileNotFoundError when the named file is not there; ValueError for configs; else RuntimeError."""
    named = case["names"]
    if case["name"] in ROW_FILE_MISSING:
        return RuntimeError
    if not named.startswith("'") and not os.path.lexists(re.sub(r":\d+$", "", named)):  # file.csv:LINE
        return FileNotFoundError
    if named.startswith("'") or case["name"].startswith("Config"):
        return ValueError
    return RuntimeError


def test_every_case_of_the_table_from_python(ips, cases):
    ran, not_in_module, failures = [], [], []
    for name, case in cases.items():
        work = call(ips, case["command"])
        if work is None:
            not_in_module.append(name)
            continue
        before = snapshot(case["dir"])
        want = expected_type(case)
        try:
            work()
            failures.append(f"{name}: no exception")
            continue
        except Exception as e:  # noqa: BLE001 (which one is what is tested)
            got, message = type(e), str(e)
        ran.append(name)
        problems = []
        if got is not want:
            problems.append(f"{got.__name__}, documented {want.__name__}")
        if case["names"] not in message:
            problems.append(f"does not name {case['names']!r}")
        if case["also"] and case["also"] not in message:
            problems.append(f"does not say {case['also']!r}")
        after = snapshot(case["dir"])
        if after != before:
            changed = sorted(set(after.items()) ^ set(before.items()))
            problems.append(f"left output behind: {changed}")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}\n    message: {message}")
    print(f"\n[bad input] {len(ran)} cases raised as documented from Python; not in the module "
          f"(CLI-only commands): {', '.join(sorted(not_in_module))}")
    assert not failures, "\n".join(failures)
    assert len(ran) >= 40
