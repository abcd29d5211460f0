"""Digit Studio: draw a digit, see two models classify it, train them live.

`python app.py` serves the Gradio UI at / and the REST API beside it
(on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT, default 127.0.0.1:7860).

This module only assembles the parts: one predictor, one job manager and one
prediction pool shared by the UI's tabs (ui/*_tab.py) and the REST API (api/).
"""
import os

import datadir
from inference import privacy

privacy.apply()  # before Gradio is imported: no analytics, no telemetry (see inference/privacy.py)
datadir.apply_defaults()  # before Gradio is imported: its cache goes to the data location, not /tmp

import gradio as gr  # noqa: E402

from api import affinity, server
from api.app import create_api
from api.replicas import ReplicaDirectory
from drawings.store import DrawingStore
from inference.pool import PredictionPool
from inference.predictor import Predictor
from training.jobs import JobManager
from training.model_versions import ModelVersions
from ui import client_api, draw_tab, drawings_tab, mcp_tools, models_tab, train_tab
from ui.context import PREDICT_CONCURRENCY, AppContext

# Everything the app writes goes to the data location (datadir.py); exports/ is version 1, only read.
# Issue 12: every successful run is kept as a model version, and the serving one is what the predictor
# serves (training/model_versions.py); corrections go to the drawings database.
versions = ModelVersions()
# One predictor and one job manager, shared by the UI and the REST API: training
# started from either shows in both, and a finished job is served at once.
predictor = Predictor(versions)
drawing_store = DrawingStore.from_environment()


def on_trained(name: str, result) -> None:
    predictor.reload(name)  # the run is already the serving version: load it now, not at the next request


jobs = JobManager(on_success=on_trained)  # its trainers write new versions into the same data location
# REST /predict spreads overlapping requests over worker processes (PREDICT_WORKERS; see
# inference/pool.py); they start with the server, not at import, and serve the same versions.
pool = PredictionPool(versions.shipped_dir, data_dir=versions.data_dir)
ctx = AppContext(predictor, jobs, pool, train_token=os.environ.get("TRAIN_TOKEN") or None, drawings=drawing_store,
                 versions=versions)

with gr.Blocks(title="Digit Studio") as demo:
    gr.Markdown("# Digit Studio\n"
                "Draw a digit and two models read it as you draw: a logistic regression and a small CNN. "
                "Tell them when they are wrong, train them on your handwriting in **Train**, and compare "
                "them in **Models**.")
    client_api.register(ctx)
    with gr.Tabs():
        draw = draw_tab.build(ctx)
        train = train_tab.build(ctx)
        models = models_tab.build(ctx)
        drawings_page = drawings_tab.build(ctx)  # issue 12
    train.follow_while_open(ctx, other_tabs=[draw.tab, models.tab, drawings_page.tab])

demo.queue(default_concurrency_limit=PREDICT_CONCURRENCY)

# The REST routes first, then Gradio at "/" (routes registered before the mount win), with the
# checks and limits of a public server (api/server.py). Gradio 6 takes theme and css when mounting.
app = create_api(predictor, jobs, train_token=ctx.train_token, pool=pool,
                 drawings=drawing_store, versions=versions)
app = server.mount_ui(app, demo, exports_dir=predictor.exports_dir, data_dir=versions.data_dir, mcp_server=True,
                      theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="sky"))
mcp_tools.serve_only(demo, app)  # MCP at /gradio_api/mcp/: only ui/mcp_tools.TOOLS, bodies limited like REST
# Issue 20: with REPLICA_URL set, this process is one of N replicas on one database; a visitor's Gradio
# requests reach the replica that holds their session whichever one the load balancer picks.
affinity.install(app, ReplicaDirectory.from_environment())

if __name__ == "__main__":
    server.serve(app)
