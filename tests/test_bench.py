"""`hvpzip bench`: tables, result files, verified round trips, dataset lookup and the checked download."""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import DATASETS, smooth_image
from hvpzip import datasets
from hvpzip.cli import main


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(smooth_image(32, 48, 3, seed=i)).save(d / f"{i}.png")
    return d


def test_bench_writes_table_and_files(folder, tmp_path):
    out = tmp_path / "res"
    r = CliRunner().invoke(main, ["bench", "--dataset", str(folder), "--codecs", "hvpzip,png,qoi", "--steps", "0,1",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "| hvpzip-T0 | 2 |" in r.stdout and "| png | 2 |" in r.stdout and "| qoi | 2 |" in r.stdout
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 2 * 4
    assert all(row["neg_elbo_bpsp"] for row in rows if row["codec"].startswith("hvpzip"))
    assert (out / "results.csv").read_text().count("\n") == 9 and (out / "plot.png").stat().st_size > 1000


def test_bench_views_and_refit_are_labelled(folder):
    r = CliRunner().invoke(main, ["bench", "--dataset", str(folder), "--codecs", "hvpzip", "--steps", "0",
                                  "--views", "1,2", "--limit", "1"])
    assert r.exit_code == 0, r.output
    assert "| hvpzip-T0-v1 | 1 |" in r.stdout and "| hvpzip-T0-v2 | 1 |" in r.stdout
    r = CliRunner().invoke(main, ["bench", "--dataset", str(folder), "--codecs", "hvpzip", "--steps", "0,1",
                                  "--refit", "off,on", "--limit", "1"])
    assert r.exit_code == 0, r.output
    assert "| hvpzip-T0-norefit | 1 |" in r.stdout and "| hvpzip-T0-refit | 1 |" in r.stdout
    assert "| hvpzip-T1 | 1 |" in r.stdout and "T1-" not in r.stdout  # T >= 1 fits nothing: one variant


@pytest.mark.parametrize("args,fragment", [
    (["--codecs", "png,zip"], "unknown codec"),
    (["--views", "1,5"], "--views takes"),
    (["--refit", "yes"], "--refit"),
    (["--dataset", "no-such-dataset"], "not found"),
])
def test_bench_bad_arguments(args, fragment):
    r = CliRunner().invoke(main, ["bench", *args])
    assert r.exit_code != 0 and fragment in r.stderr and "Traceback" not in r.stderr


def test_bench_empty_folder(tmp_path):
    r = CliRunner().invoke(main, ["bench", "--dataset", str(tmp_path)])
    assert r.exit_code != 0 and "no images" in r.stderr


@pytest.mark.skipif(not (DATASETS / "kodak" / "kodim01.png").exists(), reason="needs a local Kodak copy to serve")
def test_kodak_download_is_verified(tmp_path):
    served = tmp_path / "served"
    shutil.copytree(DATASETS / "kodak", served)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        got = datasets.download_kodak(tmp_path / "cache", url)
        assert sorted(p.name for p in got.glob("*.png")) == sorted(datasets.kodak_checksums())
        (served / "kodim05.png").write_bytes(b"tampered")
        (got / "kodim05.png").unlink()
        with pytest.raises(FileNotFoundError, match="SHA-256"):
            datasets.download_kodak(tmp_path / "cache", url)
    finally:
        server.shutdown()


def test_offline_download_says_where_to_put_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        datasets.download_kodak(tmp_path / "cache", "http://127.0.0.1:9/")


def test_bench_unreadable_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = CliRunner().invoke(main, ["bench", "--dataset", str(tmp_path), "--codecs", "png"])
    assert r.exit_code != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bench_model_option(folder, tmp_path):
    """--model benchmarks that model file (an untrained tiny model gives another codelength);
    a file that is not a model is one line and exit 1."""
    from hvpzip.prior import MultiscalePrior, PriorConfig, save_model

    untrained = tmp_path / "untrained.pt"
    save_model(MultiscalePrior(PriorConfig(width=8, blocks=1, steps=1)), untrained)
    args = ["bench", "--dataset", str(folder), "--codecs", "hvpzip", "--steps", "0", "--limit", "1"]
    mean = lambda out: float(out.split("| hvpzip-T0 | 1 | ")[1].split(" |")[0])
    shipped, other = CliRunner().invoke(main, args), CliRunner().invoke(main, args + ["--model", str(untrained)])
    assert shipped.exit_code == 0 and other.exit_code == 0, other.output
    assert mean(other.stdout) != mean(shipped.stdout)  # another model, another codelength
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    bad = CliRunner().invoke(main, args + ["--model", str(junk)])
    assert bad.exit_code == 1 and "cannot load model" in bad.stderr and "Traceback" not in bad.stderr
