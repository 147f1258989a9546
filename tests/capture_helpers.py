"""Comparisons shared by the capture tests."""

import pytest

from nclab.core.metrics import METRIC_NAMES


def assert_same_metrics(got, want, rel=1e-6):
    """Every metric of ``got`` equals that of ``want``; None (a metric that needs what
    the measurement lacks, such as OOD data) on both sides."""
    for name in METRIC_NAMES:
        value = getattr(want, name)
        if value is None:
            assert getattr(got, name) is None, name
        else:
            assert getattr(got, name) == pytest.approx(value, rel=rel), name
