import itertools
import math

import pytest

from biofm.train.schedule import lr_factor


def test_warmup_then_inverse_sqrt():
    f = [lr_factor(s, schedule="inverse_sqrt", warmup=10, total=100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[39] == pytest.approx(math.sqrt(10 / 40))
    assert all(a >= b for a, b in itertools.pairwise(f[9:]))


def test_cosine_reaches_min_ratio():
    assert lr_factor(99, schedule="cosine", warmup=10, total=100, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(10, schedule="cosine", warmup=10, total=100, min_ratio=0.1) < 1.0
