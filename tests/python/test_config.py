"""ips.Config: a YAML config with overrides as keyword arguments takes the same keys, resolves to the
same config and fails with the same messages as the CLI's --set."""
import os

import pytest

from conftest import CONFIGS, cli, fixture


def cli_error(*args):
    """The message `ips` prints for a failing command, without its 'ips: error: ' prefix."""
    r = cli(*args, check=False)
    assert r.returncode == 1, r.stderr
    line = [x for x in r.stderr.splitlines() if x.startswith("ips: error: ")][-1]
    return line[len("ips: error: "):]


def test_overrides_resolve_as_the_clis_set(ips, tmp_path):
    cfg_file = fixture("tiny_synthetic.yaml")
    cli("train", cfg_file, "--set", "n_epoch=1", "--set", "M=3", "--set", "patch_size=[8, 8]", "--set", "patch_stride=[8, 8]",
        "--set", "N=64", "--set", "tasks.task0.name=shape", "--quiet", "--device", "cpu", "--threads", "1",
        "--out", tmp_path / "run")
    saved = (tmp_path / "run" / "config.yaml").read_text()
    cfg = ips.Config(cfg_file, n_epoch=1, M=3, patch_size=[8, 8], patch_stride=[8, 8], N=64,
                     **{"tasks.task0.name": "shape"})
    assert cfg.yaml == saved
    assert cfg["M"] == 3 and cfg["patch_size"] == [8, 8] and cfg["lr"] == pytest.approx(0.001)
    assert cfg.tasks == ["shape", "tags"]
    assert "M=3" in cfg.overrides
    # replace() adds overrides; later ones win, the original is unchanged.
    assert cfg.replace(M=5)["M"] == 5 and cfg["M"] == 3
    assert ips.Config.from_yaml(open(cfg_file).read(), M=2)["M"] == 2
    assert cfg.to_dict()["N"] == 64


@pytest.mark.parametrize("key,value,cli_value", [
    ("B", "eight", "eight"),
    ("colour", "blue", "blue"),
    ("M", 17, "17"),
    ("patch_size", 0, "0"),
    ("img_size", [-64, 64], "[-64, 64]"),
    ("precision", "fp64", "fp64"),
])
def test_bad_keys_and_values_are_value_errors_with_the_clis_message(ips, tmp_path, key, value, cli_value):
    cfg_file = fixture("tiny_synthetic.yaml")
    want = cli_error("train", cfg_file, "--set", f"{key}={cli_value}", "--device", "cpu", "--out", tmp_path / "run")
    with pytest.raises(ValueError) as e:
        ips.Config(cfg_file, **{key: value})
    assert str(e.value) == want
    assert f"'{key}'" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_a_missing_config_is_file_not_found(ips, tmp_path):
    missing = str(tmp_path / "absent.yaml")
    want = cli_error("train", missing, "--device", "cpu", "--out", tmp_path / "run")
    with pytest.raises(FileNotFoundError) as e:
        ips.Config(missing)
    assert str(e.value) == want and missing in str(e.value)


def test_a_value_python_cannot_say_in_yaml_is_a_value_error(ips):
    with pytest.raises(ValueError, match="config value"):
        ips.Config(fixture("tiny_synthetic.yaml"), M=object())


def test_reference_keys_ignored_here_are_warned_once(ips):
    with pytest.warns(UserWarning, match="ignored here"):
        ips.Config(os.path.join(CONFIGS, "megapixel_mnist.yaml"), n_worker=4)
