"""The allocator settings (:mod:`collapsebench.allocator`): applied to the process and handed to the
processes it starts, and left alone when the user chose (each case in a fresh interpreter, since the
settings are process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from collapsebench.allocator import MMAP_THRESHOLD, SETTINGS, TRIM_THRESHOLD

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

PROBE = """
import json, os, subprocess, sys
from collapsebench.allocator import tune
applied = tune()
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('MALLOC_MMAP_THRESHOLD_'))"],
                       capture_output=True, text=True).stdout.strip()
print(json.dumps({"applied": applied, "mmap": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                  "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"), "child": child}))
"""


def probe(**env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if k not in {e for _, e, _ in SETTINGS} | {"COLLAPSEBENCH_MALLOC"}}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_tune_sets_both_thresholds_here_and_for_children():
    got = probe()
    assert got == {"applied": True, "mmap": str(MMAP_THRESHOLD), "trim": str(TRIM_THRESHOLD), "child": str(MMAP_THRESHOLD)}


def test_the_users_settings_and_the_opt_out_win():
    assert probe(MALLOC_TRIM_THRESHOLD_="1000") == {"applied": False, "mmap": None, "trim": "1000", "child": "None"}
    assert probe(COLLAPSEBENCH_MALLOC="system")["applied"] is False
    assert probe(COLLAPSEBENCH_MALLOC="system")["mmap"] is None
