"""lab.proc.wait_for, the polling every lab test waits with."""

import itertools

import pytest
from lab.proc import wait_for


def test_returns_the_first_truthy_value_of_the_condition():
    answers = iter([None, [], {"found": 1}, "later"])
    assert wait_for(lambda: next(answers), timeout=5, interval=0) == {"found": 1}


def test_fails_the_test_when_nothing_truthy_came_in_time():
    calls = itertools.count()
    with pytest.raises(AssertionError, match=r"condition not met within 0\.05s"):
        wait_for(lambda: next(calls) < 0, timeout=0.05, interval=0.01)
    assert next(calls) >= 2
