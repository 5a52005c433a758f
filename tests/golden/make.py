"""Write the golden files that tests/test_golden.py decodes: a few small synthetic images compressed
with the shipped model, and golden.json with their pixels' SHA-256 and the machine that made them.

Rerun after exporting a new shipped model (the files name the model they were made with):
    python tests/golden/make.py
Files made on one CPU and decoded by the tests on another are the check that .hvpz files travel.
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import hvpzip  # noqa: E402
from hvpzip import container, readout  # noqa: E402
from conftest import smooth_image  # noqa: E402

# name: (height, width, channels, seed, steps, readout weights forced on its levels of at least
# readout.MIN_POSITIONS positions (as if the fit had paid, so that the decoder's correction is covered))
CASES = {"rgb-t0": (192, 192, 3, 0, 0, True), "gray-t0": (96, 128, 1, 1, 0, False), "rgb-t4": (64, 64, 3, 2, 4, False)}


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    model = hvpzip.load_model()
    entries = {}
    fit = readout.choose
    for name, (height, width, channels, seed, steps, forced) in CASES.items():
        pixels = smooth_image(height, width, channels, seed)
        if forced:
            weights = np.random.default_rng(seed).integers(-40, 40, (readout.ROWS, model.prior.config.width + 1))
            readout.choose = lambda *args: weights
        try:
            compressed = hvpzip.encode_image(pixels, steps, model)
        finally:
            readout.choose = fit
        (HERE / f"{name}.hvpz").write_bytes(compressed.data)
        terms = compressed.codelength.per_term()
        entries[name] = dict(shape=list(pixels.shape), steps=steps, views=compressed.header.views,
                             version=container.VERSION, bytes=len(compressed.data),
                             readout_bits=terms.get("readout", 0.0),
                             pixels_sha256=hashlib.sha256(pixels.tobytes()).hexdigest())
        print(name, entries[name])
    made_on = dict(cpu=cpu_name(), torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                   torch=torch.__version__, numpy=np.__version__, model=model.name, model_sha256=model.sha256)
    (HERE / "golden.json").write_text(json.dumps(dict(made_on=made_on, files=entries), indent=1) + "\n")


if __name__ == "__main__":
    main()
