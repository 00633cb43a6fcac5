"""The significance tests behind `mmr costs --by variant`, against textbook values."""

from __future__ import annotations

import math

import pytest

from router_cli.reports.stats import regularized_beta, student_t_sf2, two_proportions, welch


@pytest.mark.parametrize("t, df, p", [(2.0, 10, 0.073388), (1.0, 1, 0.5), (2.5, 100, 0.014046), (0.0, 5, 1.0), (4.0, 3, 0.028)])
def test_student_t_two_sided(t, df, p):
    assert student_t_sf2(t, df) == pytest.approx(p, abs=5e-4 if df == 3 else 1e-5)


def test_regularized_beta_known_value_and_symmetry():
    assert regularized_beta(0.3, 2, 3) == pytest.approx(0.3483, abs=1e-4)
    assert regularized_beta(0.3, 2, 3) == pytest.approx(1 - regularized_beta(0.7, 3, 2), abs=1e-12)
    assert regularized_beta(0.0, 2, 3) == 0.0 and regularized_beta(1.0, 2, 3) == 1.0


def test_two_proportions():
    # 10/100 vs 20/100: pooled 0.15, z = -1.980, p = 0.0477
    assert two_proportions(10, 100, 20, 100) == pytest.approx(0.0477, abs=1e-4)
    assert two_proportions(0, 50, 0, 60) == 1.0
    assert two_proportions(5, 0, 1, 10) is None


def test_welch_matches_the_formula():
    # means 10 and 12, variances 4 and 9, n 30 and 25
    a, b = 4 / 30, 9 / 25
    t = -2 / math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / 29 + b * b / 24)
    assert welch(10, 4, 30, 12, 9, 25) == pytest.approx(student_t_sf2(t, df))
    assert 0.005 < welch(10, 4, 30, 12, 9, 25) < 0.01
    assert welch(1, 0, 5, 1, 0, 5) == 1.0 and welch(1, 0, 5, 2, 0, 5) == 0.0
    assert welch(1, 1, 1, 2, 1, 5) is None
