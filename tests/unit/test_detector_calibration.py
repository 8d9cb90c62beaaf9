"""Shared robust statistics (:mod:`agentwatch.models.robust`): the empirical recalibration of
tail probabilities, the exact Student-t tail and count tails."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from agentwatch.models.robust import (
    TailCalibrator,
    betainc,
    count_tails,
    student_sf,
)


def test_a_calibrated_model_is_left_alone() -> None:
    rng = np.random.default_rng(1)
    cal = TailCalibrator()
    state = cal.new()
    for p in rng.uniform(size=20_000):
        cal.count(state, float(p))
    for p in (0.5, 0.1, 0.01, 1e-3, 1e-6):
        assert cal.p(state, p) == pytest.approx(p, rel=0.05)


def test_too_light_tails_are_corrected_to_the_observed_rate() -> None:
    """A model whose p is the square of the truth (tails far too light)."""
    rng = np.random.default_rng(2)
    cal = TailCalibrator()
    state = cal.new()
    for u in rng.uniform(size=20_000):
        cal.count(state, float(u) ** 2)
    calibrated = np.array([cal.p(state, float(u) ** 2) for u in rng.uniform(size=20_000)])
    # after correction a reported p <= 0.01 happens about 1 % of the time, not 10 %
    assert np.mean(calibrated <= 0.01) <= 0.015
    assert np.mean(calibrated <= 0.1) == pytest.approx(0.1, abs=0.03)


def test_one_early_extreme_window_does_not_blunt_the_next() -> None:
    cal = TailCalibrator()
    state = cal.new()
    cal.count(state, 1e-9)
    for _ in range(50):
        cal.count(state, 0.5)
    assert cal.p(state, 1e-9) < 1e-6


def test_calibrated_p_is_monotone_and_never_below_the_raw_p() -> None:
    cal = TailCalibrator()
    state = cal.new()
    for i in range(3000):
        cal.count(state, 10.0 ** -(i % 9))
    raw = [10.0 ** (-k / 4) for k in range(0, 48)]
    calibrated = [cal.p(state, p) for p in raw]
    assert all(c >= p for c, p in zip(calibrated, raw, strict=True))
    assert all(a >= b for a, b in itertools_pairwise(calibrated))
    assert cal.load(cal.state(state)) == pytest.approx(state, rel=1e-3)


def itertools_pairwise(xs: list[float]) -> list[tuple[float, float]]:
    return list(itertools.pairwise(xs))


@pytest.mark.parametrize(
    ("t", "df", "expected"),
    [
        (3.0, 66.0, 0.0019031237798),
        (10.0, 5.0, 8.547378787148e-05),
        (15.0, 5.0, 1.19221936606e-05),
        (2.0, 1.0, 0.14758361765043),
        (-2.0, 7.0, 0.95719033571851),
        (40.0, 30.0, 6.863022597203e-28),
    ],
)
def test_student_tail_is_exact(t: float, df: float, expected: float) -> None:
    assert student_sf(t, df) == pytest.approx(expected, rel=1e-9)


def test_incomplete_beta_matches_closed_forms() -> None:
    # I_x(1, b) = 1 - (1 - x)^b and I_x(a, 1) = x^a
    for x in (0.01, 0.3, 0.9):
        assert betainc(1.0, 3.5, x) == pytest.approx(1 - (1 - x) ** 3.5, rel=1e-10)
        assert betainc(2.5, 1.0, x) == pytest.approx(x**2.5, rel=1e-10)


def test_count_tails_never_fail_on_rounding() -> None:
    for m in (0.02, 0.1, 1.0, 7.3, 250.0):
        for x in (0.0, 1.0, m, math.floor(m), 1000.0):
            for phi in (1.0, 1.0 + 1e-12, 3.0):
                high, low, z = count_tails(x, m, phi)
                assert 0.0 <= high <= 1.0
                assert 0.0 <= low <= 1.0
                assert math.isfinite(z)
