"""Public names of the sweep feature live in one place, sorted and complete."""

from __future__ import annotations

import prefect_mltrain.flows as flows
import prefect_mltrain.sweep as sweep


def test_all_is_sorted_and_complete():
    for module in (sweep, flows):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name
    assert "sweep" in flows.__all__ and "SweepResult" in flows.__all__
    assert flows.sweep.name == "sweep"
