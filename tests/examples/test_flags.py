import doctest

import numpy as np
import pytest


def test_the_docstring_examples_of_the_shared_flags_module_hold(load_example):
    # the examples folder is outside the doctest paths of the suite, so its doctests run here
    flags = load_example("_flags")
    failed, attempted = doctest.testmod(flags, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("values", [[0.1, 0.4], [3.0, -1.0, 2.5, 7.0]])
@pytest.mark.parametrize("plus_minus", ["+-", "±"])
def test_mean_sd_prints_the_mean_and_the_sample_sd(load_example, values, plus_minus):
    flags = load_example("_flags")
    sd = np.sqrt(sum((v - sum(values) / len(values)) ** 2 for v in values) / (len(values) - 1))
    assert flags.mean_sd(values, 2, plus_minus) == f"{sum(values) / len(values):.2f} {plus_minus} {sd:.2f}"
