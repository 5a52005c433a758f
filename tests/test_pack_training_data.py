"""benchmarks/pack_training_data.py: the training photos' pixel-identical travel copies for a lent GPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import smooth_image
from hvpzip.data import list_images, load_rgb

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pack_training_data.py"


def test_pack_is_pixel_identical_split_in_parts_and_keeps_held_out_photos(tmp_path):
    src = tmp_path / "train"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for i in range(5):
        Image.fromarray(smooth_image(40 + 8 * i, 48, 3, seed=i)).save(src / "a" / f"{i}.png")
    Image.fromarray(smooth_image(40, 40, 1, seed=9)[..., 0]).save(src / "b" / "gray.png")
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"val_files": ["a/3.png"]}))
    out = tmp_path / "pack"
    r = subprocess.run([sys.executable, str(SCRIPT), str(src), str(out), "--keep", str(card), "--parts", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    parts = sorted(out.iterdir())
    assert [p.name for p in parts] == ["part1", "part2"] and all(list_images(p) for p in parts)
    packed = {str(f.relative_to(part)): f for part in parts for f in list_images(part)}
    assert sorted(packed) == ["a/0.webp", "a/1.webp", "a/2.webp", "a/3.png", "a/4.webp", "b/gray.webp"]
    assert packed["a/3.png"].read_bytes() == (src / "a" / "3.png").read_bytes()
    for name, f in packed.items():
        assert np.array_equal(load_rgb(f), load_rgb(src / Path(name).with_suffix(".png"))), name
