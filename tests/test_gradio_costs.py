"""api/gradio_costs.py on its own (the live attacks are in tests/test_hostile_gradio.py): a Gradio session
without the config snapshot of every block and sharing the page's tables until an event replaces a block;
the session cap from the environment; the queue's monitoring summary never rebuilt."""
from __future__ import annotations

import time
import tracemalloc

import gradio as gr
import gradio.state_holder as gradio_state
import pytest

from api import gradio_costs
from api.gradio_costs import LeanSessionState, no_monitoring, sessions_max

GRADIOS_SESSION_STATE = gradio_state.SessionState  # before any test rebinds the name


def page_of(blocks_count: int) -> gr.Blocks:
    """A page with many components and one gr.State, like the app's ~240 blocks."""
    with gr.Blocks() as demo:
        for i in range(blocks_count // 2):
            gr.Textbox(label=f"text {i}")
            gr.Slider(0, 10, label=f"slider {i}")
        gr.State([1, 2, 3])
    return demo


def bytes_per_session(session_class, demo: gr.Blocks, count: int = 20) -> float:
    tracemalloc.start()
    try:
        sessions = [session_class(demo) for _ in range(count)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(sessions) == count
    return held / count


def test_a_lean_session_keeps_no_copy_of_the_page_until_an_event_replaces_a_block():
    demo = page_of(200)
    gradios, lean = bytes_per_session(GRADIOS_SESSION_STATE, demo), bytes_per_session(LeanSessionState, demo)
    print(f"\nper session, a page of 200 components: Gradio's {gradios / 1024:.0f} KiB, lean {lean / 1024:.1f} KiB")
    assert lean < 2048 < 50 * lean < gradios, (lean, gradios)  # before: 9 KiB (copies of the page's tables)

    session, other = LeanSessionState(demo), LeanSessionState(demo)
    textbox = next(block for block in demo.blocks.values() if isinstance(block, gr.Textbox))
    assert session.blocks_config is demo.default_config  # shared while nothing of the session changed
    # What Gradio does when an event's output updates a component's value: nothing is kept (deep links only).
    session._update_value_in_config(textbox._id, "hello")
    session._update_config(textbox._id)
    assert session.config_values == {}
    # An event that returns a new block (gr.update(visible=False)): this session's own tables from then on.
    hidden = gr.Textbox(visible=False, render=False)
    session[textbox._id] = hidden
    assert session[textbox._id] is hidden and session.blocks_config is not demo.default_config
    assert other[textbox._id] is textbox and demo.default_config.blocks[textbox._id] is textbox
    assert session.blocks_config.fns == demo.default_config.fns
    # gr.State values are per session, as with Gradio's own SessionState.
    state = next(block for block in demo.blocks.values() if isinstance(block, gr.State))
    other[state._id] = ["mine"]
    assert other[state._id] == ["mine"] and LeanSessionState(demo)[state._id] == [1, 2, 3]
    assert other.blocks_config is demo.default_config  # a gr.State value needs no copy of the tables


def test_a_page_that_renders_per_session_gets_its_own_tables_at_once():
    with gr.Blocks() as demo:
        count = gr.Number(1)

        @gr.render(inputs=count)
        def boxes(n):
            for i in range(int(n)):
                gr.Textbox(label=f"box {i}")
    session = LeanSessionState(demo)
    assert session.blocks_config is not demo.default_config  # gr.render changes the tables per session
    assert session.blocks_config.blocks == demo.default_config.blocks


def test_lean_sessions_rebinds_gradios_session_class_and_sets_the_cap(monkeypatch):
    import gradio.mcp as gradio_mcp

    monkeypatch.setattr(gradio_state, "SessionState", GRADIOS_SESSION_STATE)
    monkeypatch.setattr(gradio_mcp, "SessionState", GRADIOS_SESSION_STATE)
    monkeypatch.setenv("GRADIO_SESSIONS_MAX", "500")
    demo = page_of(4)
    gradio_costs.lean_sessions(demo)
    assert gradio_state.SessionState is LeanSessionState and gradio_mcp.SessionState is LeanSessionState
    assert demo.state_session_capacity == 500
    holder = gradio_state.StateHolder()
    holder.set_blocks(demo)
    assert holder.capacity == 500 and isinstance(holder["a-session"], LeanSessionState)


@pytest.mark.parametrize("value, expected", [("", 10_000), ("2000", 2000), ("0", 1), ("many", 10_000)])
def test_the_session_cap_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("GRADIO_SESSIONS_MAX", value)
    assert sessions_max() == expected


def records(count: int) -> list[dict]:
    return [{"time": time.time(), "status": "success", "process_time": 0.01, "function": f"f{i % 5}",
             "session_hash": "s"} for i in range(count)]


def test_the_queue_never_rebuilds_its_monitoring_summary():
    demo = page_of(2).queue()
    queue = demo._queue
    queue.events_recorded = 1
    summary = queue.compute_analytics_summary(records(100))  # Gradio's: rebuilt after every event
    assert set(summary["functions"]) == {f"f{i}" for i in range(5)}

    no_monitoring(queue)
    queue.cached_event_analytics_summary = {"functions": {}}
    for _ in range(3):
        queue.events_recorded += 10_000
        assert queue.compute_analytics_summary(records(10_000)) == {"functions": {}}
