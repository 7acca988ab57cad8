"""Shared test helpers. CLI tests run the real ``detector`` command in a subprocess."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TORCH = importlib.util.find_spec("torch") is not None
# Published weights never come from the internet in the suite: a test that needs them serves
# them on 127.0.0.1 and sets the mirror itself; anything else is refused at once (port 9).
os.environ.setdefault("FASTDSC_YOLO_MIRROR", "http://127.0.0.1:9/")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``torch`` skip on an install without PyTorch (``pip install .[test-light]``);
    modules that need torch throughout skip themselves with ``pytest.importorskip("torch")``."""
    if HAS_TORCH:
        return
    skip = pytest.mark.skip(reason="needs PyTorch (pip install -e '.[torch]')")
    for item in items:
        if item.get_closest_marker("torch") is not None:
            item.add_marker(skip)


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("XDG_CACHE_HOME", os.path.join(REPO, ".pytest_cache", "xdg"))
    env.update(extra)
    return env


def run_cli(*args, timeout=300, cwd=None, env=None, input=None) -> subprocess.CompletedProcess:
    """Run ``python -m detector ARGS`` and return the completed process (text output)."""
    return subprocess.run([sys.executable, "-m", "detector", *map(str, args)], cwd=cwd or REPO,
                          env=env or cli_env(), capture_output=True, text=True, timeout=timeout,
                          input=input)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for frag in fragments:
        assert frag.lower() in err.lower(), (frag, err)


def random_state(spec, seed=0):
    """Random weights with non-trivial BN statistics (so BN order/fold mistakes show) and
    varied outputs (unlike the identity-BN zoo initialisation)."""
    import numpy as np
    from detector.models.params import param_shapes
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in param_shapes(spec).items():
        if name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif name.endswith("running_mean"):
            state[name] = rng.normal(0, 0.2, shape).astype(np.float32)
        elif name.endswith("bn.weight"):
            state[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            fan = np.prod(shape[1:]) if len(shape) > 1 else 1
            state[name] = (rng.normal(0, 1, shape) / np.sqrt(fan)).astype(np.float32)
    return state


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))
