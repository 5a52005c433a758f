"""Out-of-distribution detection with the exact likelihood: generated OOD sets, scores and AUROC.

Three scores, higher = more unusual: raw bpsp (fails on simple images, which a likelihood model
finds *more* probable), the scale contrast (finest-scale bpsp minus the bpsp of all coarser
scales: local texture statistics against global structure, after the hierarchy idea of Schirrmeister
et al. 2020), and input complexity (bpsp minus PNG's bpsp of the same image, Serra et al. 2020).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .data import center_crop

OOD_KINDS = ("noise", "gradients", "text", "drawings", "jpeg-q10", "upside-down", "channel-swap")
SCORES = ("bpsp", "scale_contrast", "input_complexity")


def auroc(in_scores: list[float] | np.ndarray, ood_scores: list[float] | np.ndarray) -> float:
    """P(score of a random OOD sample > score of a random in-distribution sample), ties counting 1/2."""
    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(ood_scores, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("AUROC needs at least one score on each side")
    greater = (b[:, None] > a[None, :]).sum()
    ties = (b[:, None] == a[None, :]).sum()
    return float((greater + 0.5 * ties) / (a.size * b.size))


def png_bpsp(pixels: np.ndarray) -> float:
    """PNG (zlib level 9) bits per sub-pixel: the generic compressor of the input-complexity score."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=9)
    return 8 * len(buf.getvalue()) / pixels.size


def ood_scores(record: dict, pixels: np.ndarray) -> dict[str, float]:
    """The three scores of one image from its `score_pixels` record."""
    finest, coarser = record["per_scale"][-1], record["per_scale"][:-1]
    coarse_bpsp = sum(s["bits"] for s in coarser) / max(1, sum(s["dims"] for s in coarser))
    return {"bpsp": record["bpsp"], "scale_contrast": finest["bpsp"] - coarse_bpsp,
            "input_complexity": record["bpsp"] - png_bpsp(pixels)}


# --- generated OOD sets --------------------------------------------------------------------------
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def synthetic_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image of a synthetic OOD kind: noise, gradients, text or drawings."""
    if kind == "noise":
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    if kind == "gradients":
        yy, xx = np.mgrid[0:size, 0:size] / size
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            t = np.clip(xx * np.cos(rng.uniform(0, 6.3)) + yy * np.sin(rng.uniform(0, 6.3)), 0, 1)
        else:
            t = np.clip(np.hypot(xx - rng.random(), yy - rng.random()), 0, 1)
        return np.round(c0 + (c1 - c0) * t[..., None]).astype(np.uint8)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(image)
    ink = lambda: tuple(int(v) for v in rng.integers(0, 90, 3))
    if kind == "text":
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
        font_size = int(rng.integers(10, 24))
        for y in range(2, size - font_size, font_size + 4):
            line = "".join(rng.choice(letters, size // 4))
            draw.text((4, y), line, fill=ink(), font=_font(font_size))
    elif kind == "drawings":
        for _ in range(int(rng.integers(8, 30))):
            box = sorted(rng.integers(0, size, 2)), sorted(rng.integers(0, size, 2))
            xy = [box[0][0], box[1][0], box[0][1], box[1][1]]
            shape = rng.integers(0, 3)
            width = int(rng.integers(1, 4))
            if shape == 0:
                draw.line(xy, fill=ink(), width=width)
            elif shape == 1:
                draw.ellipse(xy, outline=ink(), width=width)
            else:
                draw.rectangle(xy, outline=ink(), width=width)
    else:
        raise ValueError(f"unknown synthetic kind {kind}")
    return np.asarray(image)


def transformed_photo(kind: str, photo: np.ndarray) -> np.ndarray:
    """A photo made unusual: heavy JPEG (quality 10), upside down, or with R and B swapped."""
    if kind == "jpeg-q10":
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, format="JPEG", quality=10)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    if kind == "upside-down":
        return np.ascontiguousarray(photo[::-1])
    if kind == "channel-swap":
        return np.ascontiguousarray(photo[:, :, ::-1])
    raise ValueError(f"unknown photo transform {kind}")


def generate_ood_sets(photos: list[np.ndarray], out_dir: Path, count: int, size: int, seed: int = 0,
                      kinds: tuple[str, ...] = OOD_KINDS) -> dict[str, Path]:
    """Write `count` PNGs per OOD kind under out_dir/KIND (reproducible from `seed`); transforms use `photos`."""
    folders = {}
    for k, kind in enumerate(kinds):
        rng = np.random.default_rng([seed, k])
        folder = out_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            if kind in ("noise", "gradients", "text", "drawings"):
                image = synthetic_image(kind, size, rng)
            else:
                image = transformed_photo(kind, center_crop(photos[i % len(photos)], size))
            Image.fromarray(image).save(folder / f"{kind}-{i:03d}.png")
        folders[kind] = folder
    return folders


def score_set(images: list[np.ndarray], score_fn: Callable[[np.ndarray], dict]) -> list[dict[str, float]]:
    """The three OOD scores for each image, given a function that returns its `score_pixels` record."""
    return [ood_scores(score_fn(image), image) for image in images]


def auroc_table(in_scores: list[dict[str, float]], ood_sets: dict[str, list[dict[str, float]]]) -> list[dict]:
    """One row per OOD set: mean bpsp and the AUROC of every score against the in-distribution set."""
    rows = []
    for name, scores in ood_sets.items():
        row = {"set": name, "images": len(scores), "mean_bpsp": float(np.mean([s["bpsp"] for s in scores]))}
        for key in SCORES:
            row[f"auroc_{key}"] = auroc([s[key] for s in in_scores], [s[key] for s in scores])
        rows.append(row)
    return rows


def markdown(rows: list[dict], in_name: str, in_bpsp: float) -> str:
    """The AUROC table as markdown."""
    lines = [f"In-distribution: {in_name} (mean {in_bpsp:.3f} bpsp). AUROC, 1.0 = perfectly separated, 0.5 = chance,"
             " below 0.5 = the OOD set looks *more* typical than the in-distribution set.", "",
             "| OOD set | images | mean bpsp | AUROC bpsp | AUROC scale contrast | AUROC input complexity |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['images']} | {r['mean_bpsp']:.3f} | {r['auroc_bpsp']:.3f} | "
                     f"{r['auroc_scale_contrast']:.3f} | {r['auroc_input_complexity']:.3f} |")
    return "\n".join(lines)
