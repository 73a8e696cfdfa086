import math

import pytest

from evoreg.analysis.cap import cap_probability, cap_probability_monte_carlo, cap_table
from evoreg.errors import EvoregError


@pytest.mark.parametrize("n,alpha", [(2, 30), (3, 60), (10, 45), (20, 70), (50, 80), (7, 120)])
def test_cap_formula_matches_monte_carlo(n, alpha):
    exact = cap_probability(n, alpha)
    estimate = cap_probability_monte_carlo(n, alpha, samples=100_000, seed=1)
    standard_error = math.sqrt(max(exact * (1 - exact), 1e-6) / 100_000)
    assert abs(exact - estimate) < 5 * standard_error + 1e-4


def test_cap_closed_forms():
    assert cap_probability(2, 45) == pytest.approx(0.25)  # a circle: 2 * 45 / 360
    assert cap_probability(3, 60) == pytest.approx((1 - math.cos(math.radians(60))) / 2)
    assert cap_probability(50, 90) == pytest.approx(0.5)
    assert cap_probability(9, 0) == 0.0
    assert cap_probability(9, 180) == pytest.approx(1.0)


def test_cap_falls_below_1e3_by_n100_at_45_degrees():
    table = cap_table([10, 30, 100], [45.0])
    probabilities = [row[0] for row in table["probability"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert probabilities[-1] < 1e-3


def test_cap_rejects_bad_input():
    with pytest.raises(EvoregError):
        cap_probability(1, 30)
    with pytest.raises(EvoregError):
        cap_probability(5, 200)
