"""The live display of ``graphtune tune``: candidates, examples done and early stops, on a terminal only;
decide tables rendered as tables."""

from __future__ import annotations

import io

from langchain_core.messages import AIMessage
from rich.console import Console

from graphtune.cli.progress import TuneProgress
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)

DECIDE = "**Round 1** — maximize mean contains\n\n| candidate | mean contains | status |\n|---|---|---|\n| c1 | 0.9 | best |\n"


def events(candidate: str, total: int, stop_after: int | None = None):
    yield {"kind": "eval_progress", "candidate": candidate, "total": total, "done": 0, "errors": 0}
    last = stop_after or total
    for done in range(1, last + 1):
        yield {"kind": "eval_progress", "candidate": candidate, "total": total, "done": done, "errors": int(done > 3)}
    yield {"kind": "eval_progress", "candidate": candidate, "total": total, "done": last, "errors": int(last > 3),
           "finished": True, "stopped": "clearly worse" if stop_after else ""}


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def test_a_round_of_evaluations_is_shown_live_then_summed_up():
    console, out = terminal()
    display = TuneProgress(console, live=True)
    for event in [*events("c1", 10), *events("c2", 10, stop_after=4)]:
        display.on_event(event)
    display.on_message("decide", AIMessage(DECIDE))
    text = out.getvalue()
    assert "evaluated: 2/2 candidates done, 1 stopped early; 14 examples, 2 errors" in text
    assert "| c1 |" not in text and "c1 " in text.split("evaluated:")[-1]  # a rendered table, not markdown pipes
    display.close()


def test_no_live_display_off_a_terminal():
    out = io.StringIO()
    display = TuneProgress(Console(file=out, width=120), live=False)
    for event in events("c1", 5):
        display.on_event(event)
    display.on_message("evaluate", AIMessage("c1: contains 0.9 on 5 examples"))
    display.close()
    assert out.getvalue() == "evaluate  c1: contains 0.9 on 5 examples\n"


def test_the_local_controller_streams_each_candidates_progress(tmp_path, weak_toy_spec):  # noqa: F811
    import asyncio

    from graphtune.graphs.context import ControllerContext
    from graphtune.graphs.local_controller import LocalController

    seen: list[dict] = []
    db = f"sqlite:///{tmp_path}/g.db"
    controller = LocalController(context=ControllerContext(database_url=db, traces_url=db, batch_size=2, seed=3),
                                 on_event=seen.append, record=False)
    asyncio.run(controller.start("improve toy accuracy; try 2 candidates, at most 1 round", spec=str(weak_toy_spec.path)))
    finished = {e["candidate"]: e for e in seen if e.get("finished")}
    assert set(finished) >= {"baseline", "c1"}
    assert finished["baseline"]["total"] == 60 and finished["baseline"]["done"] == 60
    dones = [e["done"] for e in seen if e["candidate"] == "baseline"]
    assert dones == sorted(dones) and dones[0] == 0  # the total first, then one event per example
