"""Training's progress lines (a pipeline task's, `train`'s when its output is no terminal):
the time left follows the pace of the steps, not the first step's setup (which once made the
first estimate read ~16,000 s for a 3-minute run)."""

import sys

from wavefoundry import progress


def test_time_left_follows_the_steps_pace_not_the_first_steps_setup(monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    on_step = progress.progress_lines(total=100, file=sys.stdout)
    clock[0] = 60.0  # the first step: building the model, the first batch, warm-up
    on_step(1, {"loss": 1.0})
    for step in range(2, 101):
        clock[0] += 1.0  # then one second a step
        on_step(step, {"loss": 1.0 / step})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step 1/100  loss 1"
    left = {
        int(line.split()[1].split("/")[0]): float(line.split("~")[1].split()[0])
        for line in lines[1:]
    }
    assert left[11] == 89.0  # 10 s for 10 steps, 89 steps to go
    assert left[100] == 0.0
    assert len(lines) == 1 + 10  # every PROGRESS_EVERY (10 s) and the last step
