"""Digit Studio: draw a digit, see every registered model classify it, train them live.

`python app.py` serves the Gradio UI at / and the REST API beside it
(on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT, default 127.0.0.1:7860).

This module only assembles the parts: one predictor, one job manager and one
prediction pool shared by the UI's tabs (ui/*_tab.py) and the REST API (api/).
"""
import logging
import os

import datadir
from inference import privacy

privacy.apply()  # before Gradio is imported: no analytics, no telemetry (see inference/privacy.py)
datadir.apply_defaults()  # before Gradio is imported: its cache goes to the data location, not /tmp

from drawings.store import DrawingStore  # noqa: E402
from store import DatabaseConfigError, StoreUnavailableError  # noqa: E402

# The database first (before Gradio's seconds of imports): a bad DATABASE_URL, or a PostgreSQL that
# does not answer, stops the app at once with one line. A SQLite file that cannot be used does not:
# predictions go on, and the drawings routes answer 503 with the reason until it is fixed.
try:
    drawing_store = DrawingStore.from_environment()
    drawing_store.database.ensure_ready()  # migrations at start
except DatabaseConfigError as error:
    raise SystemExit(f"Digit Studio cannot start: {error}") from None
except StoreUnavailableError as error:
    logging.getLogger("app").warning("the drawings database is unavailable: %s", error)

import gradio as gr  # noqa: E402

from api import affinity, gradio_joins, server  # noqa: E402
from api.app import create_api  # noqa: E402
from api.replicas import ReplicaDirectory  # noqa: E402
from inference.explain.lane import ExplainLane  # noqa: E402
from inference.pool import PredictionPool  # noqa: E402
from inference.predictor import Predictor  # noqa: E402
from training import lineup  # noqa: E402
from training.job_board import JobBoard  # noqa: E402
from training.jobs import JobManager  # noqa: E402
from training.model_versions import ModelVersions  # noqa: E402
from training.registry import MODELS  # noqa: E402
from training.version_store import follow_database  # noqa: E402
from ui import client_api, draw_tab, drawings_tab, mcp_tools, models_tab, train_tab  # noqa: E402
from ui.context import PREDICT_CONCURRENCY, AppContext  # noqa: E402

# Everything the app writes goes to the data location (datadir.py); exports/ is version 1, only read.
# Issue 12: every successful run is kept as a model version, and the serving one is what the predictor
# serves (training/model_versions.py); corrections go to the drawings database (opened above).
versions = ModelVersions()
# With PostgreSQL the versions and the serving pointer live in the database: this replica serves what
# it says, fetching a version's files into DATA_DIR first, and follows it (training/version_store.py).
mirror = follow_database(versions)
# One predictor and one job manager, shared by the UI and the REST API: training
# started from either shows in both, and a finished job is served at once.
predictor = Predictor(versions)
if mirror is not None:
    mirror.on_served = predictor.reload  # load a version another replica served now, not at the next request


def on_trained(name: str, result) -> None:
    predictor.reload(name)  # the run is already the serving version: load it now, not at the next request


# Its trainers write new versions into the same data location. Issue 20: its runs are on the database's
# jobs board (training/job_board.py), so every replica on that database shows them live and refuses a
# second run of the same model (409) while one runs anywhere.
jobs = JobManager(on_success=on_trained, board=JobBoard(drawing_store.database))
# REST /predict spreads overlapping requests over worker processes (PREDICT_WORKERS; see
# inference/pool.py); they start with the server, not at import, and serve the same versions.
pool = PredictionPool(versions.shipped_dir, data_dir=versions.data_dir)
# Issue 19: explanations ("Why this digit?") run in workers of their own, bounded per client and in all.
explain_lane = ExplainLane(predictor, versions.shipped_dir, data_dir=versions.data_dir)
ctx = AppContext(predictor, jobs, pool, train_token=os.environ.get("TRAIN_TOKEN") or None, drawings=drawing_store,
                 versions=versions, explain_lane=explain_lane)

with gr.Blocks(title="Digit Studio") as demo:
    gr.Markdown("# Digit Studio\n"
                f"{lineup.headline(MODELS)} "  # issue 21: from the registry, not "two models"
                "Tell them when they are wrong, train them on your handwriting in **Train**, and compare "
                "them in **Models**.")
    client_api.register(ctx)
    with gr.Tabs():
        draw = draw_tab.build(ctx)
        train = train_tab.build(ctx)
        models = models_tab.build(ctx)
        drawings_page = drawings_tab.build(ctx)  # issue 12
    train.follow_while_open(ctx, other_tabs=[draw.tab, models.tab, drawings_page.tab])

demo.queue(default_concurrency_limit=PREDICT_CONCURRENCY, max_size=gradio_joins.queue_max_size())

# The REST routes first, then Gradio at "/" (routes registered before the mount win), with the
# checks and limits of a public server (api/server.py). Gradio 6 takes theme and css when mounting.
app = create_api(predictor, jobs, train_token=ctx.train_token, pool=pool,
                 drawings=drawing_store, versions=versions, explain_lane=explain_lane, lanes=ctx.lanes)
app = server.mount_ui(app, demo, exports_dir=predictor.exports_dir, data_dir=versions.data_dir, mcp_server=True,
                      theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="sky"))
mcp_tools.serve_only(demo, app)  # MCP at /gradio_api/mcp/: only ui/mcp_tools.TOOLS, bodies limited like REST
# Issue 20: with REPLICA_URL set, this process is one of N replicas on one database; a visitor's Gradio
# requests reach the replica that holds their session whichever one the load balancer picks.
affinity.install(app, ReplicaDirectory.from_environment())

if __name__ == "__main__":
    server.serve(app)
