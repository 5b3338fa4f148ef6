"""Ctrl-C from Python: ips.train stops after the current step with a checkpoint and raises
KeyboardInterrupt, resume=True then continues to exactly the uninterrupted run; ips.features stops
after the current batch with every bag it wrote complete. Python's own SIGINT handler is back once
the call returns. The jobs run in a child interpreter that the test sends SIGINT to."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import fixture
from test_jobs import metrics, same_bags, same_checkpoints

CHILD_PRELUDE = """
import signal, sys, time
import ips
ips.set_threads(1)
def report(what):
    print(what, flush=True)
"""


def child_run(body, until, timeout=300):
    """Runs `body` in a child Python; once a line of its output starts with `until`, sends it SIGINT.
    Returns (exit code, every line printed)."""
    code = CHILD_PRELUDE + textwrap.dedent(body)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ))
    lines, sent = [], False
    for line in p.stdout:
        lines.append(line.rstrip("\n"))
        if not sent and line.startswith(until):
            p.send_signal(signal.SIGINT)
            sent = True
    p.wait(timeout=timeout)
    assert sent, "\n".join(lines)
    return p.returncode, lines


def test_keyboard_interrupt_in_train_leaves_a_checkpoint_that_resumes_exactly(ips, tmp_path):
    cfg = dict(n_epoch=4, n_train=48)
    ips.train(ips.Config(fixture("tiny_synthetic.yaml"), **cfg), str(tmp_path / "straight"), device="cpu",
              progress=False)
    code, lines = child_run(f"""
        cfg = ips.Config({fixture("tiny_synthetic.yaml")!r}, **{cfg!r})
        try:
            ips.train(cfg, {str(tmp_path / "stopped")!r}, device="cpu", progress=False,
                      on_epoch=lambda r: report(f"epoch {{r['epoch']}}"))
            report("finished")
        except KeyboardInterrupt as e:
            report(f"KeyboardInterrupt: {{e}}")
            report(f"handler restored: {{signal.getsignal(signal.SIGINT) is signal.default_int_handler}}")
            sys.exit(130)
    """, until="epoch 1")
    text = "\n".join(lines)
    assert code == 130, text
    assert "KeyboardInterrupt: " in text and "resume" in text, text
    assert "handler restored: True" in text, text
    assert "finished" not in text and "epoch 4" not in text, text
    assert (tmp_path / "stopped" / "last.pt").exists()

    ips.train(ips.Config(fixture("tiny_synthetic.yaml"), **cfg), str(tmp_path / "stopped"), device="cpu",
              progress=False, resume=True)
    assert metrics(tmp_path / "stopped") == metrics(tmp_path / "straight")
    same_checkpoints(tmp_path / "stopped" / "last.pt", tmp_path / "straight" / "last.pt")


def test_keyboard_interrupt_in_features_keeps_only_complete_bags(ips, svs, tmp_path):
    slides = []
    for k in range(3):  # three stems of the one slide
        link = tmp_path / f"slide{k}.svs"
        os.symlink(svs, link)
        slides.append(str(link))
    cfg = dict(patch_size=[128, 128], patch_stride=[128, 128])
    code, lines = child_run(f"""
        cfg = ips.Config({fixture("features_tiny.yaml")!r}, **{cfg!r})
        try:
            ips.features(cfg, {slides!r}, out={str(tmp_path / "bags")!r}, batch=8, device="cpu", progress=False,
                         on_slide=lambda r: report(f"made {{r['slide']}}"))
            report("finished")
        except KeyboardInterrupt as e:
            report(f"KeyboardInterrupt: {{e}}")
            sys.exit(130)
    """, until="made")
    text = "\n".join(lines)
    assert code == 130 and "KeyboardInterrupt: stopped" in text and "finished" not in text, text
    made = sorted(p.name for p in (tmp_path / "bags").iterdir())
    assert "slide0.h5" in made and "slide2.h5" not in made, (made, text)
    assert all(not name.startswith(".") and name.endswith(".h5") for name in made), made  # no temporaries

    again = ips.features(ips.Config(fixture("features_tiny.yaml"), **cfg), slides, out=str(tmp_path / "bags"),
                         batch=8, device="cpu", progress=False)
    assert [r["already_done"] for r in again][:len(made)] == [True] * len(made)
    assert not any(r["already_done"] for r in again[len(made):])
    for k in (1, 2):
        same_bags(tmp_path / "bags" / f"slide{k}.h5", tmp_path / "bags" / "slide0.h5")
