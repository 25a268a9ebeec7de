"""segtool.runtime: the allocator settings applied at CLI start."""

import subprocess
import sys

import pytest

# Each check runs in a fresh interpreter: mallopt changes the whole process.
PROBE = "from segtool.runtime import tune_allocator; print(tune_allocator())"


def run_probe(env_value=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "SEGTOOL_MALLOC_TUNING"}
    if env_value is not None:
        env["SEGTOOL_MALLOC_TUNING"] = env_value
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt exists on Linux only")
def test_applied_on_linux_and_switched_off_by_the_environment():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert run_probe() == "True"
    assert run_probe("0") == "False"
