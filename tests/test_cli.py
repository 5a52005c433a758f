"""The command line as a user runs it: round trips, JSON output, and one clear line for every bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_image
from hvpzip import api
from hvpzip.cli import main

MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=True)


def assert_clean_failure(result, fragment: str) -> None:
    """Non-zero exit, one line on stderr naming the problem, no traceback, no stray exception."""
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def rgb_png(tmp_path: Path) -> Path:
    return write_png(tmp_path / "img.png", smooth_image(24, 40, 3))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("height,width", [(1, 1), (1, 9), (7, 13), (64, 64), (301, 203)])
def test_cli_round_trip_is_bit_exact(tmp_path, mode, height, width):
    pixels = smooth_image(height, width, MODES[mode], seed=7)
    src = write_png(tmp_path / "in.png", pixels)
    steps = "1" if height * width > 5000 else "2"
    r = run("compress", str(src), "--steps", steps, "--json")
    assert r.exit_code == 0, r.stderr
    record = json.loads(r.stdout)
    for key in ("input", "output", "width", "height", "channels", "bytes", "bpsp", "seconds", "neg_elbo_bits"):
        assert key in record
    assert (record["width"], record["height"], record["channels"]) == (width, height, MODES[mode])
    assert record["bytes"] == (tmp_path / "in.hvpz").stat().st_size
    r = run("decompress", str(tmp_path / "in.hvpz"), "-o", str(tmp_path / "out.png"))
    assert r.exit_code == 0, r.stderr
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == mode
        assert np.array_equal(np.array(im), pixels)


def test_stdin_to_stdout(rgb_png):
    r = run("compress", "-", "--steps", "1", input=rgb_png.read_bytes())
    assert r.exit_code == 0 and r.stdout_bytes[:4] == b"HVPZ"
    r2 = run("decompress", "-", input=r.stdout_bytes)
    assert r2.exit_code == 0
    with Image.open(rgb_png) as a:
        import io

        assert np.array_equal(np.array(Image.open(io.BytesIO(r2.stdout_bytes))), np.array(a))


def test_info_prints_header(rgb_png):
    assert run("compress", str(rgb_png), "--steps", "1").exit_code == 0
    r = run("info", str(rgb_png.with_suffix(".hvpz")), "--json")
    info = json.loads(r.stdout)
    assert info["width"] == 40 and info["height"] == 24 and info["mode"] == "RGB" and info["steps"] == 1
    assert info["model_hash"] == api.load_model().sha256[:32]
    assert "width" in run("info", str(rgb_png.with_suffix(".hvpz"))).stdout
    help_text = run("compress", "--help").stdout
    assert info["views"] == api.DEFAULT_VIEWS and f"[default: {api.DEFAULT_VIEWS}]" in help_text
    assert f"[default: {'--refit' if api.DEFAULT_REFIT else '--no-refit'}]" in " ".join(help_text.split())


def test_views_option(rgb_png):
    """--views picks how many flipped views the direct model averages; the header and --json say which."""
    r = run("compress", str(rgb_png), "--steps", "0", "--views", "2", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["views"] == 2
    assert json.loads(run("info", str(rgb_png.with_suffix(".hvpz")), "--json").stdout)["views"] == 2
    back = run("decompress", str(rgb_png.with_suffix(".hvpz")), "-o", "-")
    with Image.open(rgb_png) as a:
        import io

        assert np.array_equal(np.array(Image.open(io.BytesIO(back.stdout_bytes))), np.array(a))
    r = run("compress", str(rgb_png), "-f", "--views", "5")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert "--views [1|2|3|4]" in run("compress", "--help").stdout  # every count the codec has


def test_refit_option(tmp_path):
    """--refit (the default) fits the readout correction (format 8) where a level is large enough; the
    file decodes to the exact pixels and, for this image, costs no more than the one compressed with
    --no-refit, give or take a word (the fit's decision is an estimate: on one held-out photo it lost 0.03%)."""
    src = write_png(tmp_path / "big.png", smooth_image(192, 192, 3, seed=4))
    plain = json.loads(run("compress", str(src), "--steps", "0", "--no-refit", "--json", "-o",
                           str(tmp_path / "a.hvpz")).stdout)
    r = run("compress", str(src), "--steps", "0", "--json", "-o", str(tmp_path / "b.hvpz"))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["bytes"] <= plain["bytes"] + 4
    r = run("decompress", str(tmp_path / "b.hvpz"), "-o", str(tmp_path / "b.png"))
    assert r.exit_code == 0, r.stderr
    with Image.open(tmp_path / "b.png") as back, Image.open(src) as original:
        assert np.array_equal(np.array(back), np.array(original))


def test_existing_output_needs_force(rgb_png):
    out = rgb_png.with_suffix(".hvpz")
    out.write_bytes(b"keep me")
    r = run("compress", str(rgb_png), "--steps", "1")
    assert_clean_failure(r, "already exists")
    assert out.read_bytes() == b"keep me"
    assert run("compress", str(rgb_png), "--steps", "1", "-f").exit_code == 0
    assert out.read_bytes()[:4] == b"HVPZ"
    r = run("decompress", str(out))
    assert_clean_failure(r, "already exists")  # img.png is the original input


@pytest.fixture
def good_file(rgb_png) -> Path:
    assert run("compress", str(rgb_png), "--steps", "1").exit_code == 0
    return rgb_png.with_suffix(".hvpz")


def corrupt_cases(data: bytes) -> dict[str, tuple[bytes, str]]:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    header_flip = bytearray(data)
    header_flip[8] ^= 0x01
    return {
        "truncated": (data[: len(data) // 2], "checksum"),
        "truncated-header": (data[:10], "truncated"),
        "flipped-byte": (bytes(flipped), "checksum"),
        "flipped-header": (bytes(header_flip), "corrupt header"),
        "wrong-magic": (b"PNGX" + data[4:], "not an hvpzip file"),
        "empty": (b"", "not an hvpzip file"),
    }


@pytest.mark.parametrize("case", list(corrupt_cases(b"HVPZ" + bytes(100))))
def test_bad_hvpz_files_fail_cleanly(good_file, tmp_path, case):
    data, fragment = corrupt_cases(good_file.read_bytes())[case]
    bad = tmp_path / f"{case}.hvpz"
    bad.write_bytes(data)
    r = run("decompress", str(bad))
    assert_clean_failure(r, fragment)
    assert not bad.with_suffix(".png").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_file_from_other_model_is_refused(photo_crop, tmp_path):
    import torch

    from hvpzip.prior import load_model, save_model

    src = write_png(tmp_path / "photo.png", photo_crop)
    assert run("compress", str(src), "--steps", "1").exit_code == 0
    good_file = src.with_suffix(".hvpz")
    assert json.loads(run("info", str(good_file), "--json").stdout)["method"] == 0

    prior, _ = load_model(api.default_model_path())
    with torch.no_grad():
        prior.top_mean += 1.0
    other = tmp_path / "other-model.pt"
    save_model(prior, other)
    r = run("decompress", str(good_file), "--model", str(other), "-o", str(tmp_path / "x.png"))
    assert_clean_failure(r, "was made with model")
    assert not (tmp_path / "x.png").exists()


def test_text_file_and_missing_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not an image\n")
    assert_clean_failure(run("compress", str(text)), "not an image")
    assert not text.with_suffix(".hvpz").exists()
    assert_clean_failure(run("compress", str(tmp_path / "missing.png")), "no such file")
    assert_clean_failure(run("decompress", str(tmp_path / "missing.hvpz")), "no such file")


def test_one_bad_input_does_not_stop_the_others(rgb_png, tmp_path):
    text = tmp_path / "bad.png"
    text.write_text("nope")
    r = run("compress", str(text), str(rgb_png), "--steps", "1")
    assert r.exit_code == 1
    assert rgb_png.with_suffix(".hvpz").exists()


def test_unsupported_mode_is_refused(tmp_path):
    src = tmp_path / "cmyk.tif"
    Image.new("CMYK", (4, 4)).save(src)
    assert_clean_failure(run("compress", str(src)), "mode CMYK is not supported")


def test_noise_falls_back_to_stored(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    src = write_png(tmp_path / "noise.png", pixels)
    r = run("compress", str(src), "--steps", "1", "--json")
    assert json.loads(r.stdout)["bytes"] <= pixels.nbytes + 100
    assert run("decompress", str(tmp_path / "noise.hvpz"), "-o", str(tmp_path / "n.png")).exit_code == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "n.png")), pixels)


def test_real_process_reports_one_line(tmp_path):
    """Outside click's test runner too: a corrupt file gives one line and exit 1."""
    bad = tmp_path / "bad.hvpz"
    bad.write_bytes(b"HVPZ\x01\x05garbage")
    proc = subprocess.run([sys.executable, "-m", "hvpzip", "decompress", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_ctrl_c_swallowed_by_a_library_still_stops_the_output(tmp_path, monkeypatch):
    """A Ctrl-C whose KeyboardInterrupt something inside the coder catches (a destructor, a broad
    except) must still end in exit 130 with the old output kept, and the SIGINT handler restored."""
    import os
    import signal
    import time

    real_encode = api.encode_image

    def encode_swallowing_ctrl_c(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(api, "encode_image", encode_swallowing_ctrl_c)
    src = write_png(tmp_path / "a.png", smooth_image(16, 16, 3))
    target = tmp_path / "a.hvpz"
    target.write_bytes(b"old contents")
    before = signal.getsignal(signal.SIGINT)
    result = run("compress", "-f", str(src))
    assert result.exit_code == 130
    assert result.stderr.strip() == "hvpzip: interrupted"
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.hvpz", "a.png"]
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    """SIGINT mid-compression: exit 130, one line, the existing output untouched, no temporary file."""
    import signal
    import time

    src = write_png(tmp_path / "big.png", smooth_image(1024, 1024, 3))
    target = tmp_path / "big.hvpz"
    target.write_bytes(b"old contents")
    proc = subprocess.Popen([sys.executable, "-m", "hvpzip", "compress", "-f", "--steps", "4", str(src)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(8.0)  # past start-up (slow on a busy machine), inside the coder (the job takes far longer)
    assert proc.poll() is None, "compression finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130
    assert err.strip() == "hvpzip: interrupted"
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.hvpz", "big.png"]
