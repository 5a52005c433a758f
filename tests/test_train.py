"""The training command runs end to end on a tiny folder, exports a loadable model and resumes."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import hvpzip
from conftest import smooth_image, smooth_photo_folder
from hvpzip.cli import main
from hvpzip.data import split_train_val


def test_train_export_and_resume(tmp_path):
    data = smooth_photo_folder(tmp_path / "data", 6, 48, 56)
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
    resumed = json.loads((out / "model_card.json").read_text())
    assert resumed["iterations"] == 3 and resumed["last_validation"]["iteration"] == 3  # the last one, off --eval-every
    r = CliRunner().invoke(main, args + ["--iters", "5", "--minutes", "0"])  # resumed, stopped before an iteration
    assert r.exit_code == 0 and "resuming" in r.output
    kept = json.loads((out / "model_card.json").read_text())
    assert kept["iterations"] == 3 and kept["last_validation"] == resumed["last_validation"]  # kept across the resume
    assert kept["training_command"].endswith("--iters 3")  # where the run stopped, not the --iters asked for
    model = hvpzip.load_model(out / "model.pt")
    pixels = smooth_image(20, 20, 3)
    assert np.array_equal(hvpzip.decompress(hvpzip.compress(pixels, model=model), model=model), pixels)


def test_resume_refuses_other_settings_and_keeps_the_runs_provenance(tmp_path, model):
    """A resume under another schedule is refused in one line, leaving the run as it was; a resumed run keeps
    its start weights' hash and its data split even when the --init-from file and the folder change."""
    data = smooth_photo_folder(tmp_path / "data", 6, 48, 56)
    start = tmp_path / "start.pt"
    hvpzip.prior.save_model(model.prior, start)
    start_hash = hashlib.sha256(start.read_bytes()).hexdigest()
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--crop", "32", "--batch", "2", "--eval-every", "2",
            "--init-from", str(start), "--lr-final", "1e-5"]
    assert CliRunner().invoke(main, args + ["--iters", "2"]).exit_code == 0
    card = json.loads((out / "model_card.json").read_text())
    before = (out / "checkpoint.pt").read_bytes()
    r = CliRunner().invoke(main, args + ["--iters", "4"])  # --decay-iters would follow --iters: 2 -> 4
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert r.output.strip() == f"Error: {out} was started with --decay-iters 2 (asked: 4); resume it with those settings or train into a new --out"
    r = CliRunner().invoke(main, args[:-1] + ["3e-5", "--iters", "4", "--seed", "5"])
    assert r.exit_code != 0 and "--seed 0 (asked: 5), --lr-final 1e-05 (asked: 3e-05)" in r.output
    assert (out / "checkpoint.pt").read_bytes() == before
    start.write_bytes(b"not the start weights")
    shutil.copy(data / "0.png", data / "new.png")  # a photo added to the folder must not join the resumed run
    r = CliRunner().invoke(main, args + ["--iters", "3", "--decay-iters", "2"])
    assert r.exit_code == 0 and "resuming" in r.output, r.output
    resumed = json.loads((out / "model_card.json").read_text())
    assert resumed["iterations"] == 3 and resumed["init_from"]["sha256"] == start_hash
    assert (resumed["train_files"], resumed["val_files"]) == (card["train_files"], card["val_files"])
    assert resumed["training_command"].endswith("--lr-final 1e-05 --iters 3 --decay-iters 2")
    (data / card["train_files"][0]).unlink()
    r = CliRunner().invoke(main, args + ["--iters", "4", "--decay-iters", "2"])
    assert r.exit_code != 0 and f"1 images of the run being resumed are missing from {data}" in r.output


def test_validation_split_is_deterministic_and_disjoint(tmp_path):
    files = [tmp_path / f"{i}.png" for i in range(200)]
    train, val = split_train_val(files, 0.1, seed=0)
    assert split_train_val(files, 0.1, seed=0) == (train, val)
    assert not set(train) & set(val) and len(train) + len(val) == 200 and 5 < len(val) < 40


def test_context_model_starts_as_its_source_and_round_trips(tmp_path, model):
    """--init-from --context: new input channels start at zero, so before training the context model
    gives exactly the source model's direct bits, group by group; after training it still codes exactly."""
    from hvpzip import codec, data as training_data
    from hvpzip.prior import MultiscalePrior, PriorConfig
    from hvpzip.train import copy_weights, evaluate

    source = model.prior
    context_model = MultiscalePrior(PriorConfig(**{**source.config.__dict__, "context": True}))
    copy_weights(source, context_model)
    context_model.eval()
    samples = [training_data.crop_to_planes(smooth_image(32, 32, 3, seed=s).transpose(2, 0, 1), False) for s in (1, 2)]
    a = evaluate(source, samples, "haar", 0, "cpu")["direct_bpsp"]
    b = evaluate(context_model, samples, "haar", 0, "cpu")["direct_bpsp"]
    assert abs(a - b) < 1e-4
    pixels = smooth_image(40, 52, 3, seed=3)
    old_bits = codec.Codec(source, 0).encode(pixels, "RGB")[1].analytic
    assert abs(codec.Codec(context_model, 0).encode(pixels, "RGB")[1].analytic - old_bits) < 1e-6 * old_bits

    data = smooth_photo_folder(tmp_path / "data", 6, 48, 56)
    start = tmp_path / "start.pt"
    hvpzip.prior.save_model(source, start)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(out), "--crop", "32", "--batch", "2",
                                  "--iters", "2", "--eval-every", "2", "--context", "--init-from", str(start)])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["config"]["context"] and "--init-from" in card["training_command"]
    assert card["init_from"]["sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()
    trained = hvpzip.load_model(out / "model.pt")
    for steps in (0, 4):
        packed = hvpzip.compress(pixels, steps=steps, model=trained)
        assert np.array_equal(hvpzip.decompress(packed, model=trained), pixels)


def test_direct_share_and_lr_decay_are_recorded_and_shaped(tmp_path):
    """--direct-share reweights the sampled terms (probabilities sum to 1, each term weighted by 1/p),
    --lr-final decays the learning rate by cosine to that value at --iters; both go into the model card."""
    import torch

    from hvpzip.train import learning_rate, term_distribution

    probs = term_distribution(4, 0.5)
    assert torch.isclose(probs.sum(), torch.tensor(1.0)) and probs[0] == 0.5 and torch.allclose(probs[1:], torch.tensor(0.125))
    assert torch.allclose(term_distribution(4, None), torch.full((5,), 0.2))
    rates = [learning_rate(1e-3, 1e-4, i, 1000) for i in range(0, 1001, 50)]
    assert rates[0] < 2e-5 and abs(rates[2] - 1e-3) < 5e-5 and abs(rates[-1] - 1e-4) < 1e-12
    assert all(a >= b for a, b in zip(rates[2:], rates[3:]))
    assert learning_rate(1e-3, None, 5000, 1000) == 1e-3
    data = smooth_photo_folder(tmp_path / "data", 4, 40, 40)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(out), "--crop", "32", "--batch", "2",
                                  "--steps", "2", "--width", "8", "--blocks", "1", "--iters", "2",
                                  "--direct-share", "0.6", "--lr-final", "1e-4"])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["direct_share"] == 0.6 and card["lr_final"] == 1e-4
    assert "--direct-share 0.6 --lr-final 0.0001 --iters 2" in card["training_command"]
    bad = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "x"), "--direct-share", "1.5"])
    assert bad.exit_code == 2 and "direct-share" in bad.output


def test_decay_iters_reproduces_a_run_cut_short(tmp_path):
    """`--iters 3 --decay-iters 6` trains exactly the first 3 iterations of a 6-iteration decay (the
    command a card gives for a run that --minutes stopped there); a 3-iteration decay trains otherwise."""
    data = smooth_photo_folder(tmp_path / "data", 4, 40, 40)
    base = ["train", "--data", str(data), "--crop", "32", "--batch", "2", "--steps", "1", "--width", "8",
            "--blocks", "1", "--lr", "0.01", "--lr-final", "1e-4", "--eval-every", "100"]
    losses = {}
    for name, iters in [("cut", ["--iters", "3", "--decay-iters", "6"]), ("full", ["--iters", "6"]),
                        ("short", ["--iters", "3"])]:
        r = CliRunner().invoke(main, base + ["--out", str(tmp_path / name)] + iters)
        assert r.exit_code == 0, r.output
        log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        losses[name] = [record["loss_bpsp"] for record in log]
    assert losses["cut"] == losses["full"][:3] and losses["short"][2] != losses["full"][2]
    card = json.loads((tmp_path / "cut" / "model_card.json").read_text())
    assert card["training_command"].endswith("--lr-final 0.0001 --iters 3 --decay-iters 6")
    assert json.loads((tmp_path / "short" / "model_card.json").read_text())["training_command"].endswith("--iters 3")


def test_init_from_keeps_the_source_runs_validation_split(tmp_path):
    """A run started with --init-from never trains on its source run's held-out photos, even with
    another --seed (whose own split would differ)."""
    data = smooth_photo_folder(tmp_path / "data", 40, 36, 36)
    base = ["--data", str(data), "--crop", "32", "--batch", "2", "--steps", "1", "--width", "8", "--blocks", "1",
            "--iters", "1", "--eval-every", "1"]
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "a"), "--seed", "0"] + base)
    assert r.exit_code == 0, r.output
    source_val = json.loads((tmp_path / "a" / "model_card.json").read_text())["val_files"]
    own_val = [p.name for p in split_train_val(sorted(data.glob("*.png")), 0.05, 7)[1]]
    assert source_val and sorted(own_val) != sorted(source_val)
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "b"), "--seed", "7",
                                  "--init-from", str(tmp_path / "a" / "model.pt")] + base)
    assert r.exit_code == 0 and "validation split" in r.output, r.output
    card = json.loads((tmp_path / "b" / "model_card.json").read_text())
    assert sorted(card["val_files"]) == sorted(source_val)
    assert not set(card["train_files"]) & set(source_val) and len(card["train_files"]) + len(source_val) == 40


def test_context_groups_partition_each_level_by_channel_and_spatial_phase():
    """--context-groups 6 codes Y, Co, Cg in turn: every coefficient in exactly one group, each group one
    channel and one checkerboard half, and the 4-group chroma groups are unions of the 6-group ones.
    9 splits each channel's anchors by row parity, so the second phase's diagonal neighbours are all
    in the first and the third phase's direct neighbours all in the first two."""
    from hvpzip.prior import context_groups

    six, four, nine = (context_groups(n, 5, 7, 1, 2) for n in (6, 4, 9))
    for groups, phases in ((six, 2), (nine, 3)):
        assert groups.shape == (3 * phases, 9, 5, 7) and np.array_equal(groups.sum(axis=0), np.ones((9, 5, 7)))
        channel_of = np.arange(9) // 3
        for g in range(3 * phases):
            assert set(channel_of[groups[g].any(axis=(1, 2))]) == {g // phases}
    yy, xx = np.mgrid[1:6, 2:9]
    assert np.array_equal(six[0, 0], (yy + xx) % 2 == 0)  # anchors first
    assert np.array_equal(four[0], six[0]) and np.array_equal(four[1], six[1])
    assert np.array_equal(four[2], six[2] | six[4]) and np.array_equal(four[3], six[3] | six[5])
    assert np.array_equal(nine[0] | nine[1], six[0]) and np.array_equal(nine[2], six[1])
    assert np.array_equal(nine[3:6].any(axis=1), nine[0:3].any(axis=1))  # the same phases for Co (and Cg)
    first, second = nine[0, 0], nine[1, 0]
    assert first.any() and second.any() and np.all(yy[first] % 2 == 0)  # even rows of the level first
    padded = np.pad(first, 1)
    for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):  # inside, every diagonal neighbour was coded first
        shifted = padded[1 + dy : 6 + dy, 1 + dx : 8 + dx]
        assert np.all(shifted[1:-1, 1:-1][second[1:-1, 1:-1]])


@pytest.mark.parametrize("groups", ["6", "9"])
def test_grouped_model_trains_from_a_four_group_one_and_codes_exactly(tmp_path, model, groups):
    """--init-from with --context-groups 6 or 9 keeps the weights, records the grouping, and the result
    codes bit-exactly (colour and grey) at a codelength near its training objective's direct bits."""
    from hvpzip import codec, data as training_data
    from hvpzip.train import evaluate

    data = smooth_photo_folder(tmp_path / "data", 6, 48, 56)
    start = tmp_path / "start.pt"
    hvpzip.prior.save_model(model.prior, start)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--crop", "32", "--batch", "2", "--iters", "2",
            "--eval-every", "2", "--init-from", str(start), "--context-groups"]
    assert CliRunner().invoke(main, args + ["5"]).exit_code == 2  # only 4, 6 or 9
    r = CliRunner().invoke(main, args + [groups])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["config"]["context"] and card["config"]["context_groups"] == int(groups)
    assert f"--context-groups {groups}" in card["training_command"]
    trained = hvpzip.load_model(out / "model.pt")
    for channels in (3, 1):
        pixels = smooth_image(40, 52, channels, seed=4)
        assert np.array_equal(hvpzip.decompress(hvpzip.compress(pixels, steps=0, model=trained), model=trained), pixels)
    pixels = smooth_image(64, 64, 3, seed=3)
    objective = evaluate(trained.prior, [training_data.crop_to_planes(pixels.transpose(2, 0, 1), False)], "haar", 0, "cpu")
    coded = codec.Codec(trained.prior, 0, calibrated=False).encode(pixels, "RGB")[1].analytic / pixels.size
    assert abs(coded / objective["direct_bpsp"] - 1) < 0.02  # the coder tiles the finest level; training does not


def test_added_blocks_start_as_the_identity_and_train(tmp_path, model):
    """--init-from with more --blocks: the new blocks start as the identity, so the grown model gives
    the source's bits exactly; it then trains and codes bit-exactly. Fewer blocks or a foreign
    --init-from file are one-line errors."""
    from hvpzip import data as training_data
    from hvpzip.prior import MultiscalePrior, PriorConfig
    from hvpzip.train import copy_weights, evaluate

    source = model.prior
    grown = MultiscalePrior(PriorConfig(**{**source.config.__dict__, "blocks": source.config.blocks + 2}))
    copy_weights(source, grown)
    grown.eval()
    samples = [training_data.crop_to_planes(smooth_image(32, 32, 3, seed=s).transpose(2, 0, 1), False) for s in (1, 2)]
    assert evaluate(grown, samples, "haar", 2, "cpu") == evaluate(source, samples, "haar", 2, "cpu")

    data = smooth_photo_folder(tmp_path / "data", 6, 48, 56)
    start, junk = tmp_path / "start.pt", tmp_path / "junk.pt"
    hvpzip.prior.save_model(source, start)
    junk.write_bytes(b"not a model")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--crop", "32", "--batch", "2", "--iters", "2",
            "--eval-every", "2", "--init-from"]
    r = CliRunner().invoke(main, args + [str(start), "--blocks", str(source.config.blocks - 1)])
    assert r.exit_code == 1 and "can only be added" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, args + [str(junk)])
    assert r.exit_code == 1 and "not an hvpzip model file" in r.output
    r = CliRunner().invoke(main, args + [str(start), "--blocks", str(source.config.blocks + 2)])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["config"]["blocks"] == source.config.blocks + 2
    assert f"--blocks {source.config.blocks + 2}" in card["training_command"]
    trained = hvpzip.load_model(out / "model.pt")
    pixels = smooth_image(40, 52, 3, seed=6)
    assert np.array_equal(hvpzip.decompress(hvpzip.compress(pixels, steps=0, model=trained), model=trained), pixels)


def test_data_loading_workers_give_a_reproducible_run(tmp_path):
    """With --workers the crops come from worker processes, each seeded by (seed, worker id): two runs
    with the same seed log the same losses, other than the in-process stream's (so the workers drew
    them), and the recorded command names the workers."""
    data = smooth_photo_folder(tmp_path / "data", 6, 48, 56)
    losses = []
    for run, workers in (("a", "2"), ("b", "2"), ("in-process", "0")):
        args = ["train", "--data", str(data), "--out", str(tmp_path / run), "--crop", "32", "--batch", "2",
                "--steps", "1", "--width", "8", "--blocks", "1", "--iters", "3", "--workers", workers]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        log = [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        losses.append([rec["loss_bpsp"] for rec in log])
    assert losses[0] == losses[1] != losses[2] and len(losses[0]) == 3
    assert "--workers 2" in json.loads((tmp_path / "a" / "manifest.json").read_text())["command"]


def test_validation_leaves_the_training_random_stream_alone(model):
    """evaluate() draws its fixed noise from a forked RNG: the training noise that follows a validation
    is what it would have been without one (a reset stream would repeat every --eval-every iterations)."""
    import torch

    from hvpzip import data as training_data
    from hvpzip.train import evaluate

    samples = [training_data.crop_to_planes(smooth_image(32, 32, 3, seed=1).transpose(2, 0, 1), False)]
    torch.manual_seed(123)
    expected = torch.rand(8)
    torch.manual_seed(123)
    first = evaluate(model.prior, samples, "haar", 2, "cpu")
    assert torch.equal(torch.rand(8), expected)
    assert evaluate(model.prior, samples, "haar", 2, "cpu") == first


def test_bf16_runs_the_network_in_bfloat16_and_is_recorded(tmp_path, model, monkeypatch):
    """--bf16 trains under bfloat16 autocast: the network's outputs come back float32 but rounded
    otherwise than without it; the run's training calls run autocast and its validation calls do not,
    and its card and command say so."""
    import torch

    from hvpzip.prior import Denoiser

    prior = model.prior
    z, coarse = torch.randn(1, 9, 16, 16), torch.randn(1, 3, 16, 16) * 20
    band, chroma, gamma = torch.ones(1, 3, 16, 16), torch.zeros(1), torch.zeros(1)
    with torch.no_grad():
        plain = prior.network(z, coarse, band, chroma, 1, gamma)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = prior.network(z, coarse, band, chroma, 1, gamma)
    assert plain.dtype == low.dtype == torch.float32 and not torch.equal(plain, low)
    assert torch.allclose(plain, low, atol=0.1 * float(plain.abs().max()))
    autocast_per_call = []
    forward = Denoiser.forward

    def spy(self, *args, **kwargs):
        autocast_per_call.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu")))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(Denoiser, "forward", spy)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # no emulation warning here
    data = smooth_photo_folder(tmp_path / "data", 6, 40, 40)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(out), "--crop", "32", "--batch", "2",
                                  "--steps", "2", "--width", "8", "--blocks", "1", "--iters", "2", "--bf16"])
    assert r.exit_code == 0 and "emulated" not in r.output, r.output
    training = [cast for grad, cast in autocast_per_call if grad]
    validation = [cast for grad, cast in autocast_per_call if not grad]
    assert training and all(training) and validation and not any(validation)
    card = json.loads((out / "model_card.json").read_text())
    assert card["bf16"] is True and card["training_command"].endswith("--iters 2 --bf16")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(rec["loss_bpsp"]) for rec in log)


@pytest.mark.parametrize("avx512_bf16, amx, emulated", [(False, False, True), (True, False, False), (False, True, False)])
def test_bf16_without_native_cpu_support_is_reported_as_emulated(tmp_path, monkeypatch, avx512_bf16, amx, emulated):
    """A CPU with neither AVX512-BF16 nor AMX emulates bfloat16 (about 10x slower), so train warns
    there; a GPU never counts as emulated."""
    import torch

    from hvpzip.train import bf16_is_emulated

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert bf16_is_emulated(torch.device("cpu")) is emulated
    assert bf16_is_emulated(torch.device("cuda")) is False
    data = smooth_photo_folder(tmp_path / "data", 6, 40, 40)
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--crop", "32",
                                  "--batch", "2", "--steps", "2", "--width", "8", "--blocks", "1", "--iters", "1",
                                  "--bf16"])
    assert r.exit_code == 0, r.output
    assert ("warning: this CPU has neither AVX512-BF16 nor AMX, so --bf16 is emulated" in r.output) is emulated


def test_bf16_emulation_is_not_claimed_without_torchs_cpu_probes(monkeypatch):
    """Where torch lacks its CPU-feature probes, nothing says bfloat16 is emulated, so no warning."""
    import torch

    from hvpzip.train import bf16_is_emulated

    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert bf16_is_emulated(torch.device("cpu")) is False
