"""ANS stack primitives: exact mirrors, honest costs, escapes for far-off symbols."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hvpzip import coder, schedule
from hvpzip.coder import AnsStack, mixture_log2prob, snap_params

LIMIT = 1 << 23


def test_push_pop_round_trip_with_escapes():
    rng = np.random.default_rng(0)
    stack, calls = AnsStack(), []
    for i in range(60):
        n = int(rng.integers(1, 200))
        mean, std = rng.normal(0, 100, n), np.exp(rng.normal(0, 2, n))
        symbols = np.round(rng.normal(mean, std * rng.choice([1, 1000], n))).astype(np.int64)
        if i == 7:
            symbols[0] = int(round(mean[0])) + 3_000_000  # far outside the window: escape code
            symbols[1] = -LIMIT  # the range's ends are reachable
            symbols[2] = LIMIT
        kind = ("gaussian", "laplace")[i % 2]
        stack.push(kind, symbols, mean, std, -LIMIT, LIMIT)
        calls.append((kind, symbols, mean, std))
    reader = AnsStack(stack.words())
    for kind, symbols, mean, std in reversed(calls):
        assert np.array_equal(reader.pop(kind, mean, std, len(symbols), -LIMIT, LIMIT), symbols)


def test_mixture_round_trip_with_escapes_and_mixed_calls():
    """The table-coded Laplace/logistic mixture mirrors exactly, interleaved with plain Laplace calls,
    across chunks of very different stds, with escapes beyond the window and both ends of the range."""
    rng = np.random.default_rng(5)
    stack, calls = AnsStack(), []
    for i in range(12):
        n = int(rng.integers(1, 3000))
        mean, std = rng.normal(0, 100, n), np.exp(rng.normal(0, 2, n))
        weight = rng.choice([0.0, 0.25, 0.5, 1.0], n)
        symbols = np.round(rng.normal(mean, std * rng.choice([1, 1000], n))).astype(np.int64).clip(-LIMIT, LIMIT)
        if i == 3:
            symbols[:3] = [int(round(mean[0])) + 3_000_000, -LIMIT, LIMIT]
        kind = "mixture" if i % 3 else "laplace"
        if kind == "mixture":
            stack.push_mixture(symbols, mean, std, weight, -LIMIT, LIMIT)
        else:
            stack.push(kind, symbols, mean, std, -LIMIT, LIMIT)
        calls.append((kind, symbols, mean, std, weight))
    reader = AnsStack(stack.words())
    for kind, symbols, mean, std, weight in reversed(calls):
        if kind == "mixture":
            assert np.array_equal(reader.pop_mixture(mean, std, weight, -LIMIT, LIMIT), symbols)
        else:
            assert np.array_equal(reader.pop(kind, mean, std, len(symbols), -LIMIT, LIMIT), symbols)
    assert reader.is_empty()


def test_mixture_tables_stay_bounded_for_wide_distributions():
    """Symbols with huge stds (up to the range) are split into smaller tables, and still mirror."""
    rng = np.random.default_rng(7)
    n, limit = 5000, 1 << 15
    std, mean = np.exp(rng.normal(3, 2, n)).clip(0.01, 2000), rng.normal(0, 100, n)
    symbols = np.clip(np.round(mean + rng.laplace(0, std)), -limit, limit).astype(np.int64)
    weights = np.full(n, 0.25)
    _, _, chunks = AnsStack._mixture_chunks(mean, std, -limit, limit)
    assert max(at.size * (2 * window + 1) for at, _, window in chunks) <= coder.MIXTURE_TABLE_ENTRIES
    assert sorted(np.concatenate([at for at, _, _ in chunks])) == list(range(n))
    stack = AnsStack()
    stack.push_mixture(symbols, mean, std, weights, -limit, limit)
    reader = AnsStack(stack.words())
    assert np.array_equal(reader.pop_mixture(mean, std, weights, -limit, limit), symbols) and reader.is_empty()


@pytest.mark.parametrize("weight", [0.0, 0.25, 1.0])
def test_mixture_cost_matches_its_information_content(weight):
    """What the coder spends on mixture-distributed symbols is the analytic cost the codec accounts
    (mixture_log2prob), and a weight of 1 is the plain Laplace's cost."""
    rng = np.random.default_rng(2)
    mean, scale = rng.normal(0, 20, 20000), np.exp(rng.normal(1, 0.5, 20000))
    symbols = np.round(mean + rng.logistic(0, 0.73 * scale)).astype(np.int64)
    weights = np.full(symbols.size, weight)
    stack = AnsStack()
    stack.push_mixture(symbols, mean, scale, weights, -LIMIT, LIMIT)
    ideal = -mixture_log2prob(symbols, mean, scale, weights).sum()
    assert abs(stack.num_bits() - ideal) / ideal < 0.002
    if weight == 1.0:
        m, s = snap_params(mean, scale)
        laplace = -schedule.laplace_bin_log2prob(symbols.astype(float), m, s, np).sum()
        assert ideal == pytest.approx(laplace, rel=1e-9)


def test_mixture_table_rows_are_the_row_by_row_values_bit_for_bit():
    """Tables computed once per distinct snapped row are the values every row would have had alone
    (the format is the table: a changed rounding would change the bytes and break old files)."""
    rng = np.random.default_rng(3)
    mean, std = snap_params(rng.uniform(-0.5, 0.5, 3000), np.exp(rng.normal(1, 0.1, 3000)))
    weight = rng.choice([0.0, 0.25, 1.0], 3000)
    assert np.unique(np.stack([mean, std, weight]), axis=1).shape[1] < 1500  # repeats, as in real chunks
    table = coder._mixture_table(mean, std, weight, 20)
    for i in rng.choice(3000, 50, replace=False):
        cdf = coder.mixture_cdf(np.arange(-20, 22) - 0.5 - mean[i], std[i], weight[i])
        cdf[0], cdf[-1] = 0.0, 1.0
        assert np.array_equal(table[i], np.diff(cdf))


def test_fast_mixture_estimate_is_close_to_the_exact_cost():
    """The float32 estimate the encoder's searches use is within 1e-6 of float64, per symbol set."""
    rng = np.random.default_rng(4)
    mean, scale = rng.normal(0, 5, 5000), np.exp(rng.normal(1, 1.5, 5000))
    symbols = np.round(mean + rng.laplace(0, scale)).astype(np.int64)
    for weight in (0.0, 0.5, 1.0):
        exact = mixture_log2prob(symbols, mean, scale, weight)
        fast = mixture_log2prob(symbols, mean, scale, weight, np.float32)
        assert fast.dtype == np.float32 and np.abs(fast - exact).max() < 1e-3
        assert fast.sum(dtype=np.float64) == pytest.approx(exact.sum(), rel=1e-6)


def test_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="outside"):
        AnsStack().push("gaussian", np.array([11]), 0.0, 1.0, -10, 10)
    with pytest.raises(ValueError, match="outside"):
        AnsStack().push_mixture(np.array([-11]), np.zeros(1), np.ones(1), np.ones(1), -10, 10)


def test_pops_stay_in_range_even_from_improbable_states():
    """An improbable push makes the next pop improbable too; values must still stay in range and mirror."""
    stack = AnsStack(np.random.default_rng(4).integers(1, 2**32, 100, dtype=np.uint64).astype(np.uint32))
    stack.push("gaussian", np.array([900] * 5), 0.0, 1.0, -1000, 1000)  # ~24 bits each, far tail
    k = stack.pop("gaussian", np.zeros(5), 1.0, 5, -1000, 1000)
    assert np.abs(k).max() <= 1000
    stack.push("gaussian", k, np.zeros(5), 1.0, -1000, 1000)
    assert np.array_equal(stack.pop("gaussian", np.zeros(5), 1.0, 5, -1000, 1000), [900] * 5)


def test_cost_matches_laplace_information_content():
    rng = np.random.default_rng(1)
    mean, scale = rng.normal(0, 20, 20000), np.exp(rng.normal(1, 0.5, 20000))
    symbols = np.round(mean + rng.laplace(0, scale)).astype(np.int64)
    stack = AnsStack()
    stack.push("laplace", symbols, mean, scale, -LIMIT, LIMIT)
    m, s = snap_params(mean, scale)
    ideal = -schedule.laplace_bin_log2prob(symbols.astype(float), m, s, np).sum()
    assert abs(stack.num_bits() - ideal) / ideal < 0.002


def test_pops_sample_the_distribution():
    """Popping from random bits samples the quantized Gaussian (bits-back relies on it)."""
    words = np.random.default_rng(2).integers(1, 2**32, 40000, dtype=np.uint64).astype(np.uint32)
    mean = np.random.default_rng(3).normal(0, 1000, 50000)
    k = AnsStack(words).pop("gaussian", mean, 5.4, 50000, -LIMIT, LIMIT)
    assert abs(np.std(k - mean) - math.sqrt(5.4**2 + 1 / 12)) < 0.1
    assert np.abs(k - mean).max() < 16 * 5.4 + 1
