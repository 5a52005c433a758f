"""The training command runs end to end on a tiny folder, exports a loadable model and resumes."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

import hvpzip
from conftest import smooth_image
from hvpzip.cli import main
from hvpzip.data import split_train_val


def test_train_export_and_resume(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        Image.fromarray(smooth_image(48, 56, 3, seed=i)).save(data / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--crop", "32", "--batch", "2", "--steps", "2",
            "--width", "8", "--blocks", "1", "--eval-every", "2"]
    r = CliRunner().invoke(main, args + ["--iters", "2"])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["iterations"] == 2 and card["config"]["steps"] == 2 and card["train_files"]
    assert card["last_validation"]["val_elbo_bpsp"] > 0
    r = CliRunner().invoke(main, args + ["--iters", "3"])
    assert r.exit_code == 0 and "resuming" in r.output
    assert json.loads((out / "model_card.json").read_text())["iterations"] == 3
    model = hvpzip.load_model(out / "model.pt")
    pixels = smooth_image(20, 20, 3)
    assert np.array_equal(hvpzip.decompress(hvpzip.compress(pixels, model=model), model=model), pixels)


def test_validation_split_is_deterministic_and_disjoint(tmp_path):
    files = [tmp_path / f"{i}.png" for i in range(200)]
    train, val = split_train_val(files, 0.1, seed=0)
    assert split_train_val(files, 0.1, seed=0) == (train, val)
    assert not set(train) & set(val) and len(train) + len(val) == 200 and 5 < len(val) < 40
