"""Command-line interface (click): a thin layer over the hvpzip Python API.

Conventions follow gzip/zstd: outputs go beside inputs, existing files are kept unless --force,
'-' is stdin/stdout, errors are one line on stderr and a non-zero exit, and a failed input never
stops the others.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import click

from .bench import DEFAULT_CODECS
from .codec import VIEW_FLIPS
from .ood import OOD_KINDS

SUFFIX = ".hvpz"
VIEW_COUNTS = tuple(str(views) for views in sorted(VIEW_FLIPS))  # what --views takes
_CTRL_C = threading.Event()  # set once SIGINT arrived during a command, even if a library swallowed its exception


class CliError(Exception):
    """A per-input failure reported as one line."""


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    if not path.exists():
        raise CliError("no such file")
    if path.is_dir():
        raise CliError("is a directory")
    return path.read_bytes()


def _output_for(name: str, out: str | None, suffix: str) -> str:
    if out is not None:
        return out
    if name == "-":
        return "-"
    return str(Path(name).with_suffix(suffix))


def _write_output(target: str, data: bytes, force: bool) -> None:
    """Write atomically (temporary file + rename); never replace an existing file without force."""
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    if path.exists() and not force:
        raise CliError(f"{target} already exists; use -f/--force to overwrite")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if _CTRL_C.is_set():  # Ctrl-C came while coding and something swallowed it: never commit that output
            raise KeyboardInterrupt
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _progress_bar(total: int, quiet: bool, desc: str):
    """A tqdm bar on stderr that appears only after 2 s, only on a terminal, never with -q."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pos", unit_scale=True, leave=False, file=sys.stderr,
                delay=2.0, disable=True if quiet else None)


def _run_each(inputs: tuple[str, ...], out: str | None, as_json: bool, job: Callable[[str, str | None], dict]) -> None:
    """Run `job` on every input, printing JSON lines or errors; exit 1 if any failed."""
    if out is not None and len(inputs) > 1:
        raise click.UsageError("-o/--output needs exactly one input")
    failed = 0
    for name in inputs:
        try:
            record = job(name, out)
        except (CliError, ValueError, OSError, MemoryError) as err:
            failed += 1
            click.echo(f"hvpzip: {name}: {err}", err=True)
            continue
        if as_json:
            click.echo(json.dumps(record))
    if failed:
        sys.exit(1)


def _check_stdout(inputs: tuple[str, ...], out: str | None, as_json: bool) -> None:
    writes_stdout = out == "-" or (out is None and "-" in inputs)
    if writes_stdout and as_json:
        raise click.UsageError("--json cannot be combined with writing data to stdout")


def _on_ctrl_c(signum: int, frame: object) -> None:
    """SIGINT handler: remember the interrupt, then raise it as Python's default handler does."""
    _CTRL_C.set()
    raise KeyboardInterrupt


class _Commands(click.Group):
    """The command group; Ctrl-C anywhere in a command is one line and exit 130 (outputs are atomic).

    The interrupt is also remembered, because an exception raised inside a destructor or a library's
    broad `except` is lost: such a Ctrl-C still stops the next output from being written.
    """

    def invoke(self, ctx: click.Context):
        previous = signal.signal(signal.SIGINT, _on_ctrl_c)
        try:
            result = super().invoke(ctx)
            if _CTRL_C.is_set():
                raise KeyboardInterrupt
            return result
        except KeyboardInterrupt:
            click.echo("hvpzip: interrupted", err=True)
            sys.exit(130)
        finally:
            signal.signal(signal.SIGINT, previous)
            _CTRL_C.clear()


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hvpzip")
def main() -> None:
    """hvpzip: lossless image compression with a multiscale diffusion prior."""


model_option = click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                            help="Model file (default: $HVPZIP_MODEL or the shipped model).")


def _model(model_path: Path | None):
    from .api import load_model

    try:
        return load_model(model_path)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"cannot load model: {err}") from None


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", default=None, help="Output file ('-' for stdout); one input only.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--steps", type=click.IntRange(0, 255), default=None, help="Diffusion steps T (default: the model's).")
@click.option("--views", type=click.Choice(VIEW_COUNTS), default=None,
              help="Flipped views of each tile whose predictions the direct model averages: more views, "
                   "smaller files, proportionally more time to compress and decompress [default: 3].")
@click.option("--refit/--no-refit", default=None,
              help="Fit a correction of the model's readout to each image and send it where it pays: "
                   "files up to ~1% smaller, compression slower, decompression as fast [default: --refit].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per input on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print a summary line per input on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@model_option
def compress(inputs: tuple[str, ...], out: str | None, force: bool, steps: int | None, views: str | None,
             refit: bool | None, as_json: bool, verbose: bool, quiet: bool, model_path: Path | None) -> None:
    """Compress images (PNG or anything Pillow reads) to .hvpz files, losslessly."""
    from .api import DEFAULT_REFIT, DEFAULT_VIEWS, encode_image, mode_of, work_units
    from .images import read_image

    _check_stdout(inputs, out, as_json)
    model = _model(model_path)

    def job(name: str, out: str | None) -> dict:
        target = _output_for(name, out, SUFFIX)
        if target != "-" and Path(target).exists() and not force:
            raise CliError(f"{target} already exists; use -f/--force to overwrite")
        source = read_image(_read_input(name))
        pixels = source.pixels
        start = time.perf_counter()
        h, w = pixels.shape[:2]
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        with _progress_bar(work_units(h, w, mode_of(pixels)), quiet, name) as bar:
            result = encode_image(pixels, steps, model, bar.update, source.meta, int(views or DEFAULT_VIEWS),
                                  DEFAULT_REFIT if refit is None else refit)
        seconds = time.perf_counter() - start
        _write_output(target, result.data, force)
        record = {"input": name, "output": target, "width": w, "height": h, "channels": channels,
                  "bytes": len(result.data), "bpsp": 8 * len(result.data) / (w * h * channels),
                  "seconds": round(seconds, 3), "neg_elbo_bits": round(result.neg_elbo_bits, 1),
                  "steps": result.header.steps, "views": result.header.views}
        if verbose:
            click.echo(f"{name} -> {target}: {record['bytes']} bytes, {record['bpsp']:.3f} bpsp, "
                       f"neg-ELBO {record['neg_elbo_bits'] / (w * h * channels):.3f} bpsp, {seconds:.1f} s", err=True)
        return record

    _run_each(inputs, out, as_json, job)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", default=None, help="Output PNG ('-' for stdout); one input only.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per input on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print a summary line per input on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@model_option
def decompress(inputs: tuple[str, ...], out: str | None, force: bool, as_json: bool, verbose: bool, quiet: bool,
               model_path: Path | None) -> None:
    """Decompress .hvpz files to PNG, bit-exact."""
    from . import container
    from .api import decompress_image, work_units
    from .images import png_bytes

    _check_stdout(inputs, out, as_json)
    model = _model(model_path)

    def job(name: str, out: str | None) -> dict:
        target = _output_for(name, out, ".png")
        if target != "-" and Path(target).exists() and not force:
            raise CliError(f"{target} already exists; use -f/--force to overwrite")
        data = _read_input(name)
        header, _ = container.unpack_header(data)
        start = time.perf_counter()
        with _progress_bar(work_units(header.height, header.width, header.mode), quiet, name) as bar:
            pixels, meta = decompress_image(data, model, bar.update)
        seconds = time.perf_counter() - start
        _write_output(target, png_bytes(pixels, meta), force)
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        record = {"input": name, "output": target, "width": header.width, "height": header.height,
                  "channels": channels, "bytes": len(data),
                  "bpsp": 8 * len(data) / (header.width * header.height * channels), "seconds": round(seconds, 3)}
        if verbose:
            click.echo(f"{name} -> {target}: {header.width}x{header.height} {header.mode}, {seconds:.1f} s", err=True)
        return record

    _run_each(inputs, out, as_json, job)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")
def info(inputs: tuple[str, ...], as_json: bool) -> None:
    """Print the header of .hvpz files."""
    from . import container
    from .plan import MODES

    def job(name: str, out: str | None) -> dict:
        data = _read_input(name)
        header, offset = container.unpack_header(data)
        channels = MODES[header.mode]
        fields = header.to_dict()
        record = {"input": name, "format_version": fields.pop("version"), **fields, "channels": channels,
                  "bytes": len(data), "payload_bytes": max(0, len(data) - offset - 4),
                  "bpsp": 8 * len(data) / (header.width * header.height * channels)}
        if not as_json:
            click.echo(f"{name}:")
            for key, value in record.items():
                if key != "input":
                    click.echo(f"  {key:15s} {value:.4f}" if isinstance(value, float) else f"  {key:15s} {value}")
        return record

    _run_each(inputs, None, as_json, job)


def _expand_images(inputs: tuple[str, ...]) -> list[str]:
    """Files as given; folders replaced by the images below them (sorted)."""
    from .data import list_images

    names: list[str] = []
    for name in inputs:
        if name != "-" and Path(name).is_dir():
            try:
                names += [str(p) for p in list_images(Path(name))]
            except FileNotFoundError as err:
                raise click.ClickException(str(err)) from None
        else:
            names.append(name)
    return names


def _model_on(model_path: Path | None, device: str):
    """The model, moved to a torch device (checked to exist)."""
    import torch

    model = _model(model_path)
    try:
        model.prior.to(torch.device(device))
    except (RuntimeError, AssertionError) as err:
        raise click.ClickException(f"cannot use device {device}: {err}") from None
    return model


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--steps", type=click.IntRange(0, 255), default=None, help="Diffusion steps T (default: the model's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--device", default="cpu", show_default=True, help="torch device for the network, e.g. cuda.")
@model_option
def score(inputs: tuple[str, ...], steps: int | None, as_json: bool, quiet: bool, device: str,
          model_path: Path | None) -> None:
    """Exact negative log-likelihood bound (bpsp) of images or folders of images, by scale and term; writes no file."""
    from tqdm import tqdm

    from .api import mode_of, work_units
    from .images import read_image
    from .score import describe, score_pixels

    names = _expand_images(inputs)
    model = _model_on(model_path, device)
    images_bar = tqdm(total=len(names), desc="images", unit="img", file=sys.stderr, delay=2.0,
                      disable=True if quiet or len(names) == 1 else None)

    def job(name: str, out: str | None) -> dict:
        pixels = read_image(_read_input(name)).pixels
        h, w = pixels.shape[:2]
        start = time.perf_counter()
        with _progress_bar(work_units(h, w, mode_of(pixels)), quiet or len(names) > 1, name) as bar:
            record = {"input": name, "width": w, "height": h, **score_pixels(pixels, steps, model, bar.update)}
        record["seconds"] = round(time.perf_counter() - start, 3)
        images_bar.update()
        if not as_json:
            click.echo(describe(record))
        return record

    with images_bar:
        _run_each(tuple(names), None, as_json, job)


@main.command()
@click.option("--in-dist", "in_dist", default="kodak", show_default=True,
              help="In-distribution dataset name or folder (its images also seed the transformed OOD sets).")
@click.option("--ood", "ood_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Extra OOD folder (repeatable).")
@click.option("--generated/--no-generated", default=True, show_default=True,
              help="Also build the reproducible OOD sets: " + ", ".join(OOD_KINDS) + ".")
@click.option("--count", type=click.IntRange(1), default=24, show_default=True, help="Images per generated set.")
@click.option("--crop", type=click.IntRange(0), default=256, show_default=True,
              help="Score central crops of this side (0: whole images).")
@click.option("--steps", type=click.IntRange(0, 255), default=None, help="Diffusion steps T (default: the model's).")
@click.option("--seed", default=0, show_default=True, help="Seed of the generated sets.")
@click.option("--sets", "sets_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the generated sets here (default: a temporary folder).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write results.json and summary.md here.")
@click.option("--device", default="cpu", show_default=True, help="torch device for the network, e.g. cuda.")
@model_option
def ood(in_dist: str, ood_dirs: tuple[Path, ...], generated: bool, count: int, crop: int, steps: int | None,
        seed: int, sets_dir: Path | None, out_dir: Path | None, device: str, model_path: Path | None) -> None:
    """Out-of-distribution detection: AUROC of likelihood-based scores, in-distribution vs OOD sets."""
    import tempfile

    import numpy as np
    from tqdm import tqdm

    from . import ood as detector
    from .data import center_crop, list_images, load_rgb
    from .datasets import find_dataset
    from .images import read_image
    from .score import score_pixels

    if not generated and not ood_dirs:
        raise click.UsageError("nothing to compare: give --ood folders or keep --generated")
    model = _model_on(model_path, device)

    def load(folder: Path) -> list:
        try:
            return [center_crop(read_image(p.read_bytes()).pixels, crop) for p in list_images(folder)]
        except (FileNotFoundError, ValueError, OSError) as err:
            raise click.ClickException(f"{folder}: {err}") from None

    try:
        in_folder = find_dataset(in_dist, None)
    except (FileNotFoundError, RuntimeError, OSError) as err:
        raise click.ClickException(str(err)) from None
    in_images = load(in_folder)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {d.name: d for d in ood_dirs}
        if generated:
            photos = [load_rgb(p).transpose(1, 2, 0) for p in list_images(in_folder)]
            folders.update(detector.generate_ood_sets(photos, sets_dir or Path(tmp), count, crop or 256, seed))
        sets = {name: load(folder) for name, folder in folders.items()}
        total = len(in_images) + sum(len(v) for v in sets.values())
        with tqdm(total=total, desc="scoring", unit="img", file=sys.stderr, delay=2.0, disable=None) as bar:
            def score_one(pixels):
                bar.update()
                return score_pixels(pixels, steps, model)
            in_scores = detector.score_set(in_images, score_one)
            ood_scores = {name: detector.score_set(images, score_one) for name, images in sets.items()}
    rows = detector.auroc_table(in_scores, ood_scores)
    table = detector.markdown(rows, in_folder.name, float(np.mean([s["bpsp"] for s in in_scores])))
    click.echo(table)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.md").write_text(table + "\n")
        (out_dir / "results.json").write_text(json.dumps(
            {"in_dist": str(in_folder), "crop": crop, "steps": steps, "seed": seed, "count": count,
             "in_scores": in_scores, "ood_scores": ood_scores, "table": rows}, indent=1))


@main.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of training images (searched recursively).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: checkpoint.pt, model.pt (EMA weights), log.jsonl, manifest.json. Resumes if present.")
@click.option("--crop", default=128, show_default=True, help="Training crop size in pixels.")
@click.option("--batch", default=16, show_default=True)
@click.option("--steps", "T", default=4, show_default=True, help="Diffusion steps T to train at.")
@click.option("--width", default=48, show_default=True, help="Denoiser channels.")
@click.option("--blocks", type=click.IntRange(1), default=None,
              help="Residual blocks in the denoiser [default: 6; with --init-from the source's, and more add "
                   "blocks that start as the identity].")
@click.option("--map", "map_name", default="haar", show_default=True, type=click.Choice(["haar", "legall53", "pyramid"]))
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--iters", default=100000, show_default=True, help="Stop after this many iterations in total.")
@click.option("--minutes", default=1e9, show_default=False, help="Stop after this many minutes in this run.")
@click.option("--eval-every", default=200, show_default=True,
              help="Validation and checkpoint interval (the last iteration is always validated).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option("--context", is_flag=True, help="Direct model codes each level in context groups (checkerboard halves).")
@click.option("--context-groups", type=click.Choice(["4", "6", "9"]), default=None,
              help="Context groups per level: 4 (luma, then chroma) or 6 (Y, Co, Cg in turn), each in "
                   "checkerboard halves, or 9 (Y, Co, Cg, each in 3 spatial phases); implies --context "
                   "[default: 4, or the --init-from model's].")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start a new run from this model file (its architecture; --width/--map are ignored).")
@click.option("--direct-share", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="How often the direct (T=0) term is trained [default: 1/(T+1), like every other term].")
@click.option("--lr-final", type=click.FloatRange(0.0), default=None,
              help="Cosine-decay the learning rate to this value at --decay-iters [default: constant].")
@click.option("--decay-iters", type=click.IntRange(1), default=None,
              help="Iteration at which the --lr-final decay ends [default: --iters].")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Processes preparing training crops (0: the training process; more keeps a GPU fed).")
@click.option("--bf16", is_flag=True,
              help="Run the network in bfloat16 while training (torch.autocast; 1.9x faster per iteration on an AMD EPYC "
                   "with AVX512-BF16, about 10x slower on a CPU without it or AMX, where train warns); the loss, "
                   "validation and coding stay float32.")
def train(data_dir: Path, out_dir: Path, crop: int, batch: int, T: int, width: int, blocks: int | None, map_name: str,
          lr: float, seed: int, iters: int, minutes: float, eval_every: int, device: str, context: bool,
          context_groups: str | None, init_from: Path | None, direct_share: float | None, lr_final: float | None,
          decay_iters: int | None, workers: int, bf16: bool) -> None:
    """Train (or resume) the multiscale diffusion prior on a folder of images."""
    from .train import TrainingSetupError, train as run_training

    try:
        path = run_training(data_dir, out_dir, crop=crop, batch=batch, steps=T, width=width, blocks=blocks, lr=lr,
                            seed=seed, max_iters=iters, max_minutes=minutes, map_name=map_name,
                            eval_every=eval_every, device_name=device, context=context,
                            context_groups=int(context_groups) if context_groups else None, init_from=init_from,
                            direct_share=direct_share, lr_final=lr_final, decay_iters=decay_iters, workers=workers,
                            bf16=bf16, log=lambda s: click.echo(s, err=True))
    except TrainingSetupError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"model written to {path}")


@main.command()
@click.option("--dataset", default="kodak", show_default=True, help="Dataset name or a folder of images.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder holding the dataset.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N images.")
@click.option("--codecs", default=",".join(DEFAULT_CODECS),
              show_default=True, help="Comma-separated: hvpzip, png, webp, webp-max, jxl-e7, jxl-e9, jpeg2000, jpegls, qoi.")
@click.option("--steps", "steps_text", default="default", show_default=True,
              help="hvpzip step counts to run, comma-separated (e.g. 0,4); 'default' is the model's.")
@click.option("--views", "views_text", default=None,
              help="hvpzip view counts to run, comma-separated (e.g. 1,4) [default: compress's default, unlabelled].")
@click.option("--refit", "refit_text", type=click.Choice(["default", "off", "on", "off,on"]), default="default",
              show_default=True, help="hvpzip as compress --no-refit and/or --refit (labelled -norefit, -refit) "
                                      "or, unlabelled, its default.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Images in parallel (timings then share the CPU).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write results.json, results.csv, summary.md and plot.png here.")
@model_option
def bench(dataset: str, data_dir: Path | None, limit: int | None, codecs: str, steps_text: str,
          views_text: str | None, refit_text: str, workers: int, out_dir: Path | None, model_path: Path | None) -> None:
    """Compare hvpzip with reference lossless codecs (every round trip verified bit-exact)."""
    from . import bench as harness
    from .datasets import find_dataset

    names = [c.strip() for c in codecs.split(",") if c.strip()]
    known = set(harness.reference_codecs()) | {"hvpzip"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.UsageError(f"unknown codec(s): {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    try:
        steps_list = [None if s.strip() == "default" else int(s) for s in steps_text.split(",")]
    except ValueError:
        raise click.UsageError("--steps takes integers or 'default', comma-separated") from None
    views_list: tuple[int | None, ...] = (None,)
    if views_text is not None:
        views = [v.strip() for v in views_text.split(",")]
        if not all(v in VIEW_COUNTS for v in views):
            raise click.UsageError(f"--views takes {', '.join(VIEW_COUNTS)}, comma-separated")
        views_list = tuple(int(v) for v in views)
    if model_path is not None and "hvpzip" in names:
        _model(model_path)  # a bad model file is a one-line error before any work
    try:
        folder = find_dataset(dataset, data_dir)
        rows = harness.run_benchmark(folder, names, steps_list, limit, workers, lambda r: click.echo(
            f"{r.image} {r.codec}: {r.bpsp:.4f} bpsp, {r.encode_s:.1f} + {r.decode_s:.1f} s", err=True),
            model_path, views_list, tuple({"default": None, "off": False, "on": True}[r] for r in refit_text.split(",")))
    except (FileNotFoundError, RuntimeError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(harness.summarize(rows))
    if out_dir is not None:
        harness.write_results(rows, out_dir)


@main.command("export")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Training run folder (model.pt and model_card.json).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Model file to write, e.g. models/hvpzip-small.pt; its card goes beside it as MODEL_CARD.json.")
@click.option("--default-steps", type=click.IntRange(0, 255), default=None, help="T that compress uses by default.")
@click.option("--bench", "bench_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="results.json of a benchmark run to record in the model card.")
def export_model(run_dir: Path, out_path: Path, default_steps: int | None, bench_json: Path | None) -> None:
    """Ship a trained model: copy its EMA weights with the default T, and write its model card."""
    import hashlib

    from .prior import load_model, save_model

    prior, _ = load_model(run_dir / "model.pt")
    prior.config.default_steps = default_steps
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_model(prior, out_path)
    card = json.loads((run_dir / "model_card.json").read_text())
    card.update({"model_file": out_path.name, "default_steps": default_steps,
                 "sha256": hashlib.sha256(out_path.read_bytes()).hexdigest()})
    if bench_json is not None:
        from .bench import Row, summarize

        rows = [Row(**r) for r in json.loads(bench_json.read_text())]
        card["benchmark"] = {"source": str(bench_json), "summary_markdown": summarize(rows).splitlines()}
    (out_path.parent / "MODEL_CARD.json").write_text(json.dumps(card, indent=1))
    click.echo(f"wrote {out_path} and {out_path.parent / 'MODEL_CARD.json'}")
