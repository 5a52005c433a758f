"""Finding benchmark datasets: local folders first, else a verified download of Kodak into a cache."""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

KODAK_URL = "https://r0k.us/graphics/kodak/kodak/"  # the usual Kodak test-suite address
KODAK_SUMS = Path(__file__).with_name("kodak.sha256")
REPO_DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def kodak_checksums() -> dict[str, str]:
    """File name -> expected SHA-256 of the 24 Kodak images (shipped with the package)."""
    sums = {}
    for line in KODAK_SUMS.read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


def cache_dir() -> Path:
    return Path(os.environ.get("HVPZIP_CACHE", Path.home() / ".cache" / "hvpzip"))


def download_kodak(target: Path, base_url: str = KODAK_URL) -> Path:
    """Fetch the Kodak images into `target`, verifying each against the shipped SHA-256 sums."""
    target.mkdir(parents=True, exist_ok=True)
    for name, digest in kodak_checksums().items():
        path = target / name
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            continue
        try:
            with urllib.request.urlopen(base_url + name, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as err:
            raise FileNotFoundError(
                f"cannot download {name} from {base_url} ({err}); put the Kodak images in a folder and pass "
                f"--data-dir DIR, or place them in {target}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise FileNotFoundError(f"downloaded {name} does not match its SHA-256 sum; refusing to use it")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return target


def find_dataset(name: str, data_dir: Path | None = None, base_url: str | None = None) -> Path:
    """--data-dir, else NAME as a folder, else $HVPZIP_DATA/NAME, ../shared/datasets/NAME, the cache;
    Kodak missing everywhere is downloaded into the cache and verified."""
    if data_dir is not None:
        if not data_dir.is_dir():
            raise FileNotFoundError(f"--data-dir {data_dir} is not a folder")
        return data_dir
    if Path(name).is_dir():
        return Path(name)
    candidates = []
    if "HVPZIP_DATA" in os.environ:
        candidates.append(Path(os.environ["HVPZIP_DATA"]) / name)
    candidates += [REPO_DATASETS / name, cache_dir() / name]
    for c in candidates:
        if c.is_dir() and any(c.iterdir()):
            return c
    if name == "kodak":
        return download_kodak(cache_dir() / "kodak", base_url or os.environ.get("HVPZIP_KODAK_URL", KODAK_URL))
    raise FileNotFoundError(f"dataset '{name}' not found; pass a folder of images as --dataset DIR or --data-dir DIR")
