"""Fuzzing the decoder: every mutated file is refused with a FormatError or decodes to the exact original."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hvpzip import fuzz
from test_cli import assert_clean_failure, run


@pytest.fixture(scope="module")
def sample_files(model):
    return fuzz.sample_files(model)


@settings(max_examples=400, deadline=30000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.integers(0, 3), kind=st.sampled_from(fuzz.MUTATIONS), seed=st.integers(0, 2**32 - 1))
def test_mutated_files_fail_cleanly_or_decode_exactly(model, sample_files, case, kind, seed):
    data, pixels, payload_start = sample_files[case]
    bad = fuzz.mutate(data, kind, np.random.default_rng(seed), payload_start)
    outcome = fuzz.check_one(bad, pixels, model)  # raises on a wrong image or any other exception
    assert outcome == "identical" or outcome.startswith("rejected: ")


def test_decoder_meets_garbage_payloads(model, sample_files):
    """Payload corruption behind valid checksums reaches the decoder itself, which must still refuse it."""
    data, pixels, payload_start = sample_files[1]  # bits-back coded
    rng = np.random.default_rng(0)
    outcomes = [fuzz.check_one(fuzz.mutate(data, "payload+crc", rng, payload_start), pixels, model) for _ in range(30)]
    assert sum(o.startswith("rejected: ") for o in outcomes) >= 25


@pytest.mark.parametrize("kind", fuzz.MUTATIONS)
def test_cli_refuses_mutated_files_without_writing(tmp_path, sample_files, kind):
    data, pixels, payload_start = sample_files[0]
    rng = np.random.default_rng(7)
    bad = next(b for b in (fuzz.mutate(data, kind, rng, payload_start) for _ in range(50)) if b != data)
    src = tmp_path / "bad.hvpz"
    src.write_bytes(bad)
    result = run("decompress", str(src))
    if result.exit_code == 0:  # the mutation hit an informational byte: the image must then be exact
        from PIL import Image

        assert np.array_equal(np.array(Image.open(tmp_path / "bad.png")), pixels)
        return
    assert_clean_failure(result, "bad.hvpz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.hvpz"]  # no output, no temporary file
