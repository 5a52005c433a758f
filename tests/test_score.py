"""Likelihood scoring and OOD detection: score = file size, per-scale bits add up, AUROC is right."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_image, smooth_photo_folder
from hvpzip import container, maps
from hvpzip.cli import main
from hvpzip.ood import OOD_KINDS, auroc, generate_ood_sets


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("steps", ["0", "4"])
def test_score_matches_compressed_size_and_breakdown_adds_up(tmp_path, photo_crop, steps):
    src = tmp_path / "photo.png"
    Image.fromarray(photo_crop).save(src)
    result = run("score", "--json", "--steps", steps, str(src))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert run("compress", "-q", "--steps", steps, str(src)).exit_code == 0
    file_bits = 8 * (tmp_path / "photo.hvpz").stat().st_size
    data = (tmp_path / "photo.hvpz").read_bytes()
    assert record["file_bits"] == file_bits
    _, payload = container.unpack(data)
    assert record["neg_elbo_bits"] == pytest.approx(8 * len(payload), abs=1e-6)  # the score is what the payload costs
    assert abs(record["analytic_bpsp"] / record["bpsp"] - 1) < 0.03  # bits-back pays the model's ELBO
    scales = record["per_scale"]
    assert [s["level"] for s in scales] == sorted((s["level"] for s in scales), reverse=True)  # coarsest first
    assert scales[0]["kind"] == "top" and len(scales) == maps.num_levels(*photo_crop.shape[:2]) + 1
    assert sum(s["bits"] for s in scales) == pytest.approx(record["neg_elbo_bits"], rel=1e-9)
    assert sum(s["dims"] for s in scales) == photo_crop.size  # volume-preserving: every sub-pixel once
    assert sum(record["per_term"].values()) == pytest.approx(record["neg_elbo_bits"], rel=1e-9)
    assert record["bpsp"] == pytest.approx(record["neg_elbo_bits"] / photo_crop.size)
    expected_terms = {"decoder", "top", "calibration", "residual"} | ({"kl_2", "kl_3", "kl_4", "prior"} if steps == "4" else set())
    assert set(record["per_term"]) == expected_terms


def test_score_folder_scores_every_image_and_reports_bad_ones(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for i, channels in enumerate((1, 3, 4)):
        Image.fromarray(smooth_image(20, 30, channels, seed=i)).save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(main, ["score", "--json", "-q", str(folder)])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["input"]).name for r in records] == ["img0.png", "img1.png", "img2.png"]
    assert "broken.png" in result.stderr and "Traceback" not in result.stderr


def test_auroc_on_known_cases():
    assert auroc([1, 2, 3], [4, 5]) == 1.0
    assert auroc([4, 5], [1, 2, 3]) == 0.0
    assert auroc([1, 1], [1, 1, 1]) == 0.5
    # pairs (ood > in): 2 > 1 (1), 3 > 1, 3 > 2.5 (2); ties count half: none -> 3 of 4
    assert auroc([1, 2.5], [2, 3]) == 0.75
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)
    assert auroc(a, b) == pytest.approx(0.7602, abs=0.01)  # Phi(1 / sqrt(2)) for unit shift
    with pytest.raises(ValueError):
        auroc([], [1.0])


def test_generated_ood_sets_are_reproducible(tmp_path):
    photo = smooth_image(40, 50, 3)
    first = generate_ood_sets([photo], tmp_path / "a", count=2, size=32, seed=3)
    second = generate_ood_sets([photo], tmp_path / "b", count=2, size=32, seed=3)
    assert set(first) == set(OOD_KINDS)
    for kind in OOD_KINDS:
        files = sorted(first[kind].iterdir())
        assert len(files) == 2
        for f in files:
            assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(second[kind] / f.name)))
    upside = np.asarray(Image.open(first["upside-down"] / "upside-down-000.png"))
    assert np.array_equal(upside, photo[4:36, 9:41][::-1])


def test_ood_command_separates_noise_from_photos(tmp_path):
    kodak_like = smooth_photo_folder(tmp_path / "in", 3, 48, 48)
    out = tmp_path / "ood"
    result = run("ood", "--in-dist", str(kodak_like), "--count", "2", "--crop", "32", "--out", str(out))
    assert result.exit_code == 0, result.output
    table = {row["set"]: row for row in json.loads((out / "results.json").read_text())["table"]}
    assert set(table) == set(OOD_KINDS)
    assert table["noise"]["auroc_bpsp"] == 1.0  # uniform noise costs far more bits than smooth images
    assert all(0.0 <= row[k] <= 1.0 for row in table.values() for k in row if k.startswith("auroc"))
    assert "| noise | 2 |" in (out / "summary.md").read_text()
