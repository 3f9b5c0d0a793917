"""cdx.stage.budget: at most LIMIT failures within WINDOW seconds, then FatalError."""

import pytest

from cdx.errors import FatalError
from cdx.stage.budget import FailureBudget


def test_the_budget_stops_past_the_limit_and_forgets_old_failures() -> None:
    now = [0.0]
    budget = FailureBudget("capture", limit=2, window=10, clock=lambda: now[0])
    assert budget.spend(RuntimeError("a")) == 1
    now[0] = 5.0
    assert budget.spend(RuntimeError("b")) == 2
    now[0] = 11.0
    assert budget.spend(RuntimeError("c")) == 2  # the first one left the window
    with pytest.raises(FatalError, match="capture: 3 failures within 10 s, the last: d"):
        budget.spend(RuntimeError("d"))
