"""Progress bars: drawn only where asked (a terminal, or BIOFM_PROGRESS=always), one display for nested steps."""

import pytest

import biofm.progress as prog


def test_bars_are_drawn_when_asked_and_nested_steps_share_one_display(monkeypatch: pytest.MonkeyPatch,
                                                                       capfd: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("BIOFM_PROGRESS", "always")
    seen = []
    with prog.progress("outer step", 2) as advance:
        outer = prog._display
        for x in prog.tracked([1, 2, 3], "inner folds", unit="folds"):
            assert prog._display is outer  # not a second live display (rich forbids two)
            seen.append(x)
        advance(2)
    assert seen == [1, 2, 3] and prog._display is None
    err = capfd.readouterr().err
    assert "outer step" in err and "inner folds" in err


@pytest.mark.parametrize("env", [{"BIOFM_PROGRESS": "never"}, {"BIOFM_PROGRESS": "auto"},
                                 {"BIOFM_QUIET": "1", "BIOFM_PROGRESS": "auto"}])
def test_no_bars_into_pipes_logs_or_quiet_runs(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture,
                                              env: dict) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert list(prog.tracked(range(4), "quiet step")) == [0, 1, 2, 3]  # stderr is not a terminal under pytest
    assert prog._display is None and "quiet step" not in capfd.readouterr().err
