"""What a visitor's Gradio sessions and events cost the server, bounded: fresh session hashes neither hold
the event loop nor grow memory by hundreds of megabytes, and an event costs no more after 10,000 have run.

Gradio 6.31 makes a `SessionState` the first time a session hash names an event (queue join, one-shot
run, MCP tool call), and keeps up to `state_session_capacity` (10,000) of them. Its `__init__` renders the
config of every block of the page into a snapshot (`config_values`) that only serves to rebuild a page
for a deep link: with this app's ~240 blocks, 24 ms of the event loop and 362 KiB kept per session
(tracemalloc, 2026-12-07, 2-core AMD EPYC VM). Measured against `python app.py` with no cap on waiting
events (GRADIO_QUEUE_MAX=0): 1,000 joins with fresh session hashes from 200 addresses (each under the join
rate) took 53.8 s of server CPU, ran at ~20 joins a second whatever the number of clients, and grew the
server by **575 MiB** (with the default cap, 3,000 joins: +378 MiB, 37.1 s of CPU; the README's row). The
snapshots stay until Gradio's 10,000 sessions: ~3.6 GB, reached by one visitor at the join rate in 17 minutes.

`LeanSessionState` skips the snapshot, and the per-block entries Gradio would add to it when an event updates
a block (`_update_value_in_config`, `_update_config`): nothing else reads them. It shares the page's block
and event tables until an event of the session returns a new block (a page with gr.render gets its copy at
once, as with Gradio).
The one reader is `GET /gradio_api/deep_link`, which this app does not use (no gr.DeepLinkButton), and
which wrote the snapshot (220 KB) into Gradio's cache on every call for any session, outside the cache's
size cap (api/uploads.py trims after uploads): `NoDeepLinks` answers it 404 in words.
(The same snapshot in Gradio's per-call session of an MCP tool had held the loop over a second under 120
parallel recognize_digit calls; ui/mcp_tools.py skipped it there only, from 2026-12-05.)

Gradio's traffic monitoring: after every event its queue rebuilds a summary (a pandas DataFrame, a group-by
and percentiles) from the records of the last 10,000 events, for a dashboard at /monitoring that
`mount_gradio_app` leaves on. At 10,000 records that is 15 ms of CPU per event (measured with Gradio's
`Queue.compute_analytics_summary` on this VM), paid by every event of a long-running server; and
/monitoring/summary showed any visitor every event's success rate and timings. `no_monitoring`
turns the summary off with the routes (mount_ui mounts with enable_monitoring=False).
"""
from __future__ import annotations

import copy
import datetime
import sys
from typing import Any

import gradio.state_holder as gradio_state

from api.buckets import setting
from api.errors import send_error

# Gradio's own capacity. Per session now: the values of its gr.State components, and its own copy of the page's
# block and event tables once an event replaces a block (gr.update): 0.2 KiB on a page of 200 components until
# then (9 KiB with the copies, which every session made before 2026-12-07 22:00; tests/test_gradio_costs.py).
SESSIONS_MAX = 10_000  # $GRADIO_SESSIONS_MAX overrides it
DEEP_LINK_PATH = "/gradio_api/deep_link"
NO_DEEP_LINKS = "This app keeps no deep links: a page's state stays in the page."


class LeanSessionState(gradio_state.SessionState):
    """Gradio's SessionState without the snapshot of every block's config, and without copies of the page's
    tables until an event of the session changes one (see the module's note)."""

    def __init__(self, blocks: Any):  # super().__init__ is exactly what this skips
        self._page_config = blocks.default_config
        # A page with gr.render changes its block and event tables per session as it renders: its own copy at
        # once, as Gradio does. Any other page shares them until an event returns a new block (gr.update).
        self._own_config = copy.copy(blocks.default_config) if blocks.default_config.renderables else None
        self.config_values = {}  # read by the deep-link route only, which this app answers 404 (NoDeepLinks)
        self.state_data = {}
        self._state_ttl = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 3600  # Gradio's: a closed session's gr.State is kept for an hour

    @property
    def blocks_config(self) -> Any:
        return self._own_config if self._own_config is not None else self._page_config

    @blocks_config.setter
    def blocks_config(self, config: Any) -> None:  # Gradio's reload of a page's session (utils.py)
        self._own_config = config

    def __setitem__(self, key: int, value: Any) -> None:
        from gradio.components import State

        block = self.blocks_config.blocks.get(key)
        if isinstance(block, State):
            self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
            self.state_data[key] = value
            return
        if self._own_config is None:  # the first block this session replaces: its own tables from now on
            self._own_config = copy.copy(self._page_config)
        self._own_config.blocks[key] = value

    # Gradio fills config_values with each updated block's config (a dict of its props, per session and
    # block) for deep links only: with NoDeepLinks nothing reads them, so nothing is built or kept.
    def _update_config(self, key: int) -> None:
        pass

    def _update_value_in_config(self, key: int, value: Any) -> None:
        pass


def lean_sessions(demo: Any) -> None:
    """Every Gradio session of the process (pages, queued events, one-shot runs, MCP tool calls) is a
    LeanSessionState, and `demo` keeps at most $GRADIO_SESSIONS_MAX of them. Call before mounting."""
    import gradio.mcp as gradio_mcp

    gradio_state.SessionState = LeanSessionState  # StateHolder.__getitem__ looks the name up here
    gradio_mcp.SessionState = LeanSessionState  # the MCP layer's per-call sessions
    demo.state_session_capacity = sessions_max()  # read by StateHolder.set_blocks when the app mounts


def no_monitoring(queue: Any) -> None:
    """Gradio's `queue` (blocks._queue) never rebuilds its monitoring summary (see the module's note): its
    rebuild runs when this many events have passed since the last one."""
    queue.ANAYLTICS_CACHE_FREQUENCY = sys.maxsize  # sic: Gradio 6.31's spelling


def sessions_max() -> int:
    return max(1, int(setting("GRADIO_SESSIONS_MAX", SESSIONS_MAX)))


class NoDeepLinks:
    """ASGI middleware: GET /gradio_api/deep_link is a 404 in words (see the module's note)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("path", "").rstrip("/") == DEEP_LINK_PATH:
            await send_error(send, 404, NO_DEEP_LINKS)
            return
        await self.app(scope, receive, send)
