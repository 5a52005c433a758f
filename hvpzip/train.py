"""Training of the multiscale prior: random crops, exact discrete-time negative ELBO, EMA, checkpoints."""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import data
from .prior import MultiscalePrior, PriorConfig, load_model, save_model

SCALAR_LR_BOOST = 10.0  # schedule endpoints and top-model scalars learn this much faster
DEFAULT_BLOCKS = 6  # residual blocks of a new run's denoiser


class TrainingSetupError(ValueError):
    """A run cannot start as asked (a foreign --init-from file, an architecture it cannot grow into,
    a resume under other settings or without the run's images)."""


class CropBatchStream(torch.utils.data.IterableDataset):
    """Endless training batches (levels, tops, chroma) of random crops; each data-loading worker
    draws its own stream, seeded by (seed, worker id), so a run is reproducible for a given --workers."""

    def __init__(self, sampler: data.CropSampler, batch: int, map_name: str, seed: int):
        self.sampler, self.batch, self.map_name, self.seed = sampler, batch, map_name, seed

    def __iter__(self) -> Iterator[tuple[list[data.LevelBatch], np.ndarray, np.ndarray]]:
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            self.sampler.reseed([self.seed, worker.id])
        while True:
            yield data.batch_levels([self.sampler.sample() for _ in range(self.batch)], self.map_name)


def training_batches(sampler: data.CropSampler, batch: int, map_name: str, seed: int,
                     workers: int) -> Iterator[tuple[list[data.LevelBatch], np.ndarray, np.ndarray]]:
    """Batches prepared in this process (workers = 0) or in `workers` processes, which keeps a GPU fed."""
    stream = CropBatchStream(sampler, batch, map_name, seed)
    if workers == 0:
        return iter(stream)
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=as_prepared,
                                            prefetch_factor=4))


def as_prepared(item: tuple) -> tuple:
    """DataLoader's collate step, left out: batches arrive as the numpy arrays the workers built."""
    return item


def level_tensors(lv: data.LevelBatch, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Level arrays as channels_last float32 tensors on `device`."""
    return tuple(torch.from_numpy(a).to(device).contiguous(memory_format=torch.channels_last)
                 for a in (lv.details, lv.coarse, lv.coef_mask))


def batch_terms(model: MultiscalePrior, levels: list[data.LevelBatch], tops: np.ndarray, chroma: np.ndarray,
                steps: int, t_of: Callable[[int], torch.Tensor], device: torch.device,
                group: int | None = None,
                term_weight: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per-element bits summed over levels: 'top', 'term' (term t_of(level) of each element, times
    term_weight(t) if given) and 'prior'.

    `group` fixes the direct model's context group (None: a random group per element).
    """
    ch = torch.from_numpy(chroma).to(device)
    out = {"top": model.top_bits(torch.from_numpy(tops).to(device), torch.stack([torch.ones_like(ch), ch, ch], 1))}
    out["term"] = out["prior"] = torch.zeros_like(out["top"])
    for j, lv in enumerate(levels):
        details, coarse, mask = level_tensors(lv, device)
        n = details.shape[0]
        groups = None if group is None else torch.full((n,), group, dtype=torch.long, device=device)
        t = t_of(j)
        terms = model.level_loss_terms(details, coarse, mask, ch, j + 1, t, steps, groups)
        weight = 1.0 if term_weight is None else term_weight(t).to(device)
        out["term"], out["prior"] = out["term"] + weight * terms["term"], out["prior"] + terms["prior"]
    return out


def evaluate(model: MultiscalePrior, samples: list[tuple[np.ndarray, float]], map_name: str, steps: int,
             device: torch.device, seed: int = 0) -> dict[str, float]:
    """Exact-sum validation bpsp (every term, fixed noise): T-step negative ELBO and the direct model.
    Its fixed noise comes from a forked RNG, so validating leaves training's random stream as it was."""
    levels, tops, chroma = data.batch_levels(samples, map_name)
    subpixels = float(sum(p.shape[1] * p.shape[2] * (1 + 2 * ch) for p, ch in samples))
    n = len(samples)
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        groups = range(model.config.context_groups) if model.config.context else [None]
        direct = 0.0
        for g in groups:  # each context group's bits come weighted by the number of groups
            d = batch_terms(model, levels, tops, chroma, 0, lambda j: torch.zeros(n, dtype=torch.long), device, g)
            direct += d["term"].sum().item() / len(groups)
        direct += d["top"].sum().item()
        elbo = 0.0
        for t in range(1, steps + 1):
            e = batch_terms(model, levels, tops, chroma, steps, lambda j: torch.full((n,), t, dtype=torch.long), device)
            elbo += e["term"].sum().item() + (e["top"] + e["prior"]).sum().item() * (t == 1)
    return {"direct_bpsp": float(direct / subpixels), "elbo_bpsp": float(elbo / subpixels)}


def term_distribution(steps: int, direct_share: float | None) -> torch.Tensor:
    """Sampling probabilities of the terms t = 0..T: the direct model gets `direct_share`, the T diffusion
    terms split the rest evenly (None: all T + 1 terms equally likely)."""
    if direct_share is None or steps == 0:
        return torch.full((steps + 1,), 1.0 / (steps + 1))
    return torch.tensor([direct_share] + [(1.0 - direct_share) / steps] * steps)


def learning_rate(lr: float, lr_final: float | None, iteration: int, max_iters: int) -> float:
    """100-iteration linear warm-up, then constant, or cosine decay to `lr_final` at `max_iters`."""
    warm = min(1.0, (iteration + 1) / 100)
    if lr_final is None:
        return lr * warm
    progress = min(1.0, iteration / max(1, max_iters))
    return warm * (lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def bf16_is_emulated(device: torch.device) -> bool:
    """Whether bfloat16 autocast on `device` lacks native CPU support (AVX512-BF16 or AMX), which makes it slow.

    The probes are torch's private CPU-feature checks; where a torch lacks them this says False (no evidence)."""
    if device.type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [probe for probe in probes if probe is not None]
    return bool(probes) and not any(probe() for probe in probes)


def train(data_dir: Path, out_dir: Path, crop: int = 128, batch: int = 16, steps: int = 4, width: int = 48,
          blocks: int | None = None, lr: float = 2e-3, seed: int = 0, max_iters: int = 100000, max_minutes: float = 1e9,
          map_name: str = "haar", val_fraction: float = 0.05, eval_every: int = 200, device_name: str = "cpu",
          context: bool = False, context_groups: int | None = None, init_from: Path | None = None,
          direct_share: float | None = None, lr_final: float | None = None, decay_iters: int | None = None,
          workers: int = 0, bf16: bool = False, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) a prior; writes checkpoint.pt, model.pt (EMA weights) and log.jsonl to out_dir.

    `init_from` starts a new run from a model file's weights and architecture (plus `context` and
    `context_groups`, which default to the source model's; a given `context_groups` turns context on);
    `blocks` above the source's appends residual blocks that start as the identity (None: 6 for a new
    run, the source's with `init_from`).
    `direct_share` is how often the direct (T = 0) term is sampled; every term is weighted by one over
    its probability, so the loss stays an unbiased estimate of direct NLL + T-step negative ELBO.
    `lr_final` turns on cosine decay of the learning rate to that value at `decay_iters` (None:
    `max_iters`). The model card's command gives the iteration the run stopped at as --iters (with
    --decay-iters where that differs), so a run cut short by `max_minutes` is described as it ran.
    `workers` data-loading processes prepare the crops (0: this process, as on a 2-core CPU).
    `bf16` runs the training network under bfloat16 autocast (the loss and validation stay float32).
    """
    device = torch.device(device_name)
    if bf16 and bf16_is_emulated(device):
        log("warning: this CPU has neither AVX512-BF16 nor AMX, so --bf16 is emulated and far slower than float32 "
            "(measured 55 s against 5.2 s per iteration on a 2-core AVX2 EPYC); leave --bf16 off here")
    torch.backends.cudnn.benchmark = device.type == "cuda"  # each level's shapes repeat every iteration
    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    decay_iters = decay_iters or max_iters
    recipe = {"seed": seed, "crop": crop, "batch": batch, "lr": lr, "lr_final": lr_final,
              "decay_iters": decay_iters if lr_final is not None else None, "direct_share": direct_share,
              "bf16": bf16, "init_from": str(init_from) if init_from else None}
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.exists() else None
    if ckpt is not None and "recipe" in ckpt:
        check_resume_recipe(ckpt["recipe"], recipe, out_dir)
        train_files, val_files = stored_split(ckpt["settings"], data_dir)
        init_record = ckpt["settings"]["init_from"]  # the start weights as they were, not the file's content now
    else:
        source_run = source_card(init_from) if init_from else None
        train_files, val_files = new_split(data_dir, val_fraction, seed, init_from, source_run, log)
        init_record = init_provenance(init_from, source_run)
    if ckpt is not None:
        config = PriorConfig(**ckpt["config"])
        log(f"resuming from {ckpt_path} at iteration {ckpt['iteration']}")
    elif init_from is not None:
        try:
            ckpt, (start_model, _) = None, load_model(init_from)
        except ValueError as err:
            raise TrainingSetupError(str(err)) from None
        source = start_model.config
        if (blocks or source.blocks) < source.blocks:
            raise TrainingSetupError(f"--blocks {blocks} is below the {source.blocks} blocks of {init_from} (blocks can only be added)")
        config = PriorConfig(**{**asdict(source), "context": context or bool(context_groups) or source.context,
                                "context_groups": context_groups or source.context_groups, "default_steps": None,
                                "blocks": blocks or source.blocks})
        log(f"starting from the weights of {init_from}")
    else:
        ckpt = None
        config = PriorConfig(map_name=map_name, steps=steps, width=width, blocks=blocks or DEFAULT_BLOCKS,
                             context=context or bool(context_groups),
                             context_groups=context_groups or PriorConfig.context_groups,
                             detail_scales=data.detail_rms(train_files[::4], map_name))
    model = MultiscalePrior(config)
    if ckpt is None and init_from is not None:
        copy_weights(start_model, model)
    model = model.to(device).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model)
    schedule_params = [model.gamma_min, model.gamma_span, model.top_mean, model.top_log_scale]
    opt = torch.optim.Adam([{"params": list(model.denoiser.parameters()), "scale": 1.0},
                            {"params": schedule_params, "scale": SCALAR_LR_BOOST}], lr=lr)
    iteration = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        iteration = ckpt["iteration"]
    sampler = data.CropSampler(train_files, crop, seed + iteration)
    batches = training_batches(sampler, batch, config.map_name, seed + iteration, workers)
    val_samples = [data.crop_to_planes(data.center_crop(data.load_rgb(p), 256, axes=(1, 2)), False) for p in val_files]
    last_val = last_validation(out_dir / "log.jsonl") if ckpt is not None else None
    command = lambda iters: (
        f"hvpzip train --data {data_dir} --out {out_dir} --crop {crop} --batch {batch} --steps {config.steps} "
        f"--width {config.width} --blocks {config.blocks} --map {config.map_name} --lr {lr} --seed {seed}"
        + f" --context-groups {config.context_groups}" * config.context
        + (f" --init-from {init_from}" if init_from else "")
        + (f" --direct-share {direct_share}" if direct_share is not None else "")
        + (f" --lr-final {lr_final}" if lr_final is not None else "") + f" --iters {iters}"
        + (f" --decay-iters {decay_iters}" if lr_final is not None and decay_iters != iters else "")
        + (f" --workers {workers}" if workers else "") + (" --bf16" if bf16 else ""))
    settings = {"device": device_name, "config": asdict(config), "seed": seed, "crop": crop,
                "batch": batch, "lr": lr, "lr_final": lr_final, "direct_share": direct_share, "bf16": bf16,
                "train_files": [str(p.relative_to(data_dir)) for p in train_files],
                "val_files": [str(p.relative_to(data_dir)) for p in val_files],
                "init_from": init_record}
    (out_dir / "manifest.json").write_text(json.dumps({"command": command(max_iters), **settings}, indent=1))
    T = config.steps
    term_probs = term_distribution(T, direct_share)
    subpixels = crop * crop * 3
    start, last_save = time.time(), time.time()
    elapsed_before = ckpt["train_seconds"] if ckpt else 0.0
    save = lambda: export(out_dir, model, ema, opt, iteration, elapsed_before + time.time() - start,
                          command(iteration), settings, recipe, last_val)  # the card describes the stop
    finished = lambda: iteration >= max_iters or (time.time() - start) / 60 >= max_minutes
    done = finished()
    with (out_dir / "log.jsonl").open("a") as logf:
        while not done:
            levels, tops, chroma = next(batches)
            gen = lambda j: torch.multinomial(term_probs, batch, replacement=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                terms = batch_terms(model, levels, tops, chroma, T, gen, device, term_weight=lambda t: 1.0 / term_probs[t])
            bits = terms["top"] + terms["term"] + terms["prior"]  # unbiased: direct NLL + T-step NELBO
            loss = bits.mean() / subpixels
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for g in opt.param_groups:
                g["lr"] = learning_rate(lr, lr_final, iteration, decay_iters) * g["scale"]
            opt.step()
            iteration += 1
            decay = min(0.999, (1 + iteration) / (10 + iteration))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            record = {"iteration": iteration, "loss_bpsp": loss.item(), "seconds": elapsed_before + time.time() - start}
            done = finished()
            if val_samples and (iteration % eval_every == 0 or done):  # a run's last weights are always validated
                record.update({f"val_{k}": v for k, v in evaluate(ema, val_samples, config.map_name, T, device).items()})
                log(json.dumps(record))
            elif iteration % 20 == 0:
                log(json.dumps(record))
            logf.write(json.dumps(record) + "\n")
            logf.flush()
            if "val_elbo_bpsp" in record:
                last_val = record
            if time.time() - last_save > 300 or iteration % eval_every == 0:
                save()
                last_save = time.time()
    save()
    return out_dir / "model.pt"


def export(out_dir: Path, model: MultiscalePrior, ema: MultiscalePrior, opt: torch.optim.Optimizer, iteration: int,
           seconds: float, command: str, settings: dict, recipe: dict, last_val: dict | None) -> None:
    """Checkpoint, EMA model file and its model card: the command that retraces the run up to `iteration`,
    the run's settings and data lists, training amount and last validation."""
    save_checkpoint(out_dir / "checkpoint.pt", model, ema, opt, iteration, seconds, settings, recipe)
    save_model(ema, out_dir / "model.pt")
    card = {"model_file": "model.pt", "training_command": command, "iterations": iteration,
            "train_seconds": round(seconds), "last_validation": last_val, **settings}
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=1))


RECIPE_FLAGS = {"seed": "--seed", "crop": "--crop", "batch": "--batch", "lr": "--lr", "lr_final": "--lr-final",
                "decay_iters": "--decay-iters", "direct_share": "--direct-share", "bf16": "--bf16",
                "init_from": "--init-from"}


def check_resume_recipe(stored: dict, asked: dict, out_dir: Path) -> None:
    """Refuse to resume a run under other training settings: its card could then not retrace it.
    Only --iters, --minutes, --eval-every, --workers and --device may change across a resume."""
    changed = [f"{RECIPE_FLAGS[k]} {stored.get(k)} (asked: {asked[k]})" for k in RECIPE_FLAGS if stored.get(k) != asked[k]]
    if changed:
        raise TrainingSetupError(f"{out_dir} was started with " + ", ".join(changed)
                                 + "; resume it with those settings or train into a new --out")


def new_split(data_dir: Path, val_fraction: float, seed: int, init_from: Path | None, source_run: dict | None,
              log: Callable[[str], None]) -> tuple[list[Path], list[Path]]:
    """A new run's train/validation split; a run continued from a model keeps the held-out photos of
    `source_run`, that model's card."""
    files = data.list_images(data_dir)
    train_files, val_files = data.split_train_val(files, val_fraction, seed)
    names = [str(p.relative_to(data_dir)) for p in files]
    inherited = set((source_run or {}).get("val_files") or [])
    if inherited & set(names):
        # a continued run keeps its source's held-out photos out of training, whatever its --seed
        val_files = [p for p, name in zip(files, names) if name in inherited]
        train_files = [p for p, name in zip(files, names) if name not in inherited]
        log(f"validation split: the {len(val_files)} held-out images of {init_from}'s run")
    return train_files, val_files


def stored_split(settings: dict, data_dir: Path) -> tuple[list[Path], list[Path]]:
    """A resumed run's train/validation split, as its checkpoint recorded it."""
    train_files = [data_dir / name for name in settings["train_files"]]
    val_files = [data_dir / name for name in settings["val_files"]]
    missing = [p for p in train_files + val_files if not p.exists()]
    if missing:
        raise TrainingSetupError(f"{len(missing)} images of the run being resumed are missing from {data_dir} "
                                 f"(first: {missing[0].relative_to(data_dir)})")
    return train_files, val_files


def last_validation(log_path: Path) -> dict | None:
    """The last logged record with validation numbers (so a resumed run's card keeps them)."""
    last = None
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            record = json.loads(line)
            if "val_elbo_bpsp" in record:
                last = record
    return last


def init_provenance(init_from: Path | None, source: dict | None) -> dict | None:
    """Where a run's starting weights came from: file hash, and `source`, the card of the run that made them."""
    if init_from is None:
        return None
    import hashlib

    record = {"path": str(init_from), "sha256": hashlib.sha256(Path(init_from).read_bytes()).hexdigest()}
    if source is not None:
        record.update({k: source.get(k) for k in ("training_command", "iterations", "train_seconds",
                                                  "last_validation", "init_from")})
    return record


def source_card(model_file: Path) -> dict | None:
    """The card beside a model file: a run's model_card.json, or MODEL_CARD.json of a shipped model."""
    for name in ("model_card.json", "MODEL_CARD.json"):
        card = Path(model_file).with_name(name)
        if card.exists():
            return json.loads(card.read_text())
    return None


def copy_weights(source: MultiscalePrior, target: MultiscalePrior) -> None:
    """Copy every weight of `source` into `target`; input channels `target` adds start at zero and
    residual blocks it adds start as the identity (their last convolution at zero), so the copy
    computes what `source` did until training teaches it the new inputs and blocks."""
    state, source_state = target.state_dict(), source.state_dict()
    for name, value in source_state.items():
        if state[name].shape == value.shape:
            state[name] = value.clone()
        else:  # the first convolution with more input channels
            state[name] = torch.zeros_like(state[name])
            state[name][:, : value.shape[1]] = value
    for name in set(state) - set(source_state):
        if ".conv2." in name:  # a new block: x + conv2(...) = x
            state[name] = torch.zeros_like(state[name])
    target.load_state_dict(state)


def save_checkpoint(path: Path, model: MultiscalePrior, ema: MultiscalePrior, opt: torch.optim.Optimizer,
                    iteration: int, seconds: float, settings: dict, recipe: dict) -> None:
    """Atomically write everything needed to resume: weights, optimiser, the run's data split and recipe."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": asdict(model.config), "model": model.state_dict(), "ema": ema.state_dict(),
                "opt": opt.state_dict(), "iteration": iteration, "train_seconds": seconds,
                "settings": settings, "recipe": recipe}, tmp)
    tmp.replace(path)
