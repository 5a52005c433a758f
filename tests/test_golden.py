"""Files made earlier, maybe on another CPU, decode to their exact pixels (tests/golden/make.py wrote them).

The network's float32 roundings depend on the kernels torch, oneDNN and numpy pick for a CPU; a file
is only worth keeping if another machine decodes it. The golden files record the machine that made
them, and on a machine with AVX-512 they are also decoded with every library held to AVX2.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import hvpzip

from conftest import REPO

GOLDEN = REPO / "tests" / "golden"
MANIFEST = json.loads((GOLDEN / "golden.json").read_text())
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
DECODE_ALL = r"""
import hashlib, json, sys, numpy as np, torch, hvpzip
model = hvpzip.load_model()
out = {"capability": torch.backends.cpu.get_cpu_capability(), "numpy": np.__config__.CONFIG["SIMD Extensions"]}
for path in sys.argv[1:]:
    out[path] = hashlib.sha256(hvpzip.decompress(open(path, "rb").read(), model=model).tobytes()).hexdigest()
print(json.dumps(out))
"""
ONE_CONV = ("import torch; torch.nn.Conv2d(48, 48, 3, padding=1)"
            "(torch.zeros(1, 48, 32, 32).contiguous(memory_format=torch.channels_last))")  # large enough for oneDNN


def test_the_golden_files_were_made_with_the_shipped_model(model):
    assert MANIFEST["made_on"]["model_sha256"] == model.sha256, (
        "the shipped model changed: rerun python tests/golden/make.py (and commit the files)")


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
def test_a_golden_file_decodes_to_its_pixels(model, name):
    entry = MANIFEST["files"][name]
    data = (GOLDEN / f"{name}.hvpz").read_bytes()
    header = hvpzip.container.unpack(data)[0]
    assert (header.version, header.steps, header.views) == (entry["version"], entry["steps"], entry["views"])
    pixels = hvpzip.decompress(data, model=model)
    assert list(pixels.shape) == entry["shape"] and pixels.dtype == np.uint8
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == entry["pixels_sha256"]


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512",
                    reason="no AVX-512 here: decoding files made on an AVX-512 machine is this machine's check")
def test_golden_files_decode_with_every_library_held_to_avx2():
    paths = [str(GOLDEN / f"{name}.hvpz") for name in sorted(MANIFEST["files"])]
    proc = subprocess.run([sys.executable, "-c", DECODE_ALL, *paths], capture_output=True, text=True,
                          env={**os.environ, **AVX2_ONLY}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["capability"] == "AVX2" and "X86_V4" not in out["numpy"]["found"], out
    verbose = subprocess.run([sys.executable, "-c", ONE_CONV], capture_output=True, text=True,
                             env={**os.environ, **AVX2_ONLY, "ONEDNN_VERBOSE": "1"}).stdout
    kernels = [line for line in verbose.splitlines() if ",exec,cpu,convolution," in line]
    assert kernels and all(":avx2," in line for line in kernels), verbose  # oneDNN's own report of its kernel
    for name, path in zip(sorted(MANIFEST["files"]), paths):
        assert out[path] == MANIFEST["files"][name]["pixels_sha256"], name
