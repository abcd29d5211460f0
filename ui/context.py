"""What every tab of the UI works over: the one predictor, job manager and prediction pool of the process."""
from __future__ import annotations

from dataclasses import dataclass, field

from drawings.limits import RateLimiter
from drawings.store import DrawingStore
from inference.explain.lane import ExplainLane
from inference.lanes import PredictionLanes
from inference.pool import PredictionPool
from inference.predictor import Predictor
from training.jobs import JobManager
from training.model_versions import ModelVersions
from ui.model_insights import ModelInsights


@dataclass
class AppContext:
    predictor: Predictor
    jobs: JobManager
    pool: PredictionPool | None = None
    train_token: str | None = None  # when set, training (UI and REST) needs it
    drawings: DrawingStore | None = None  # issue 12: the corrections database (drawings/store.py)
    versions: ModelVersions | None = None  # issue 12: kept model versions (training/model_versions.py)
    explain_lane: ExplainLane | None = None  # issue 19: where explanations are computed (inference/explain/lane.py)
    # Issue 18 item 5: where predictions run (inference/lanes.py), the same object REST uses, so a large
    # image through gradio_client or MCP waits in the same one-at-a-time lane as one through /predict.
    lanes: PredictionLanes | None = None
    insights: ModelInsights = field(init=False)  # the Models tab's weights and test-set figures
    # Issue 12: with TRAIN_TOKEN set (a public server), anonymous corrections from the page are rate-limited:
    # save_correction(ctx.drawings, ctx.predictor, image, label, client_id, limiter=ctx.correction_limiter)
    correction_limiter: RateLimiter | None = field(init=False)

    def __post_init__(self):
        self.lanes = self.lanes or PredictionLanes(self.predictor, self.pool)
        self.insights = ModelInsights(self.predictor)
        self.correction_limiter = RateLimiter.shared() if self.train_token else None  # the one REST uses too


# Gradio event options shared by the tabs.
PREDICT_CONCURRENCY = 4  # predictions take milliseconds: several at once keep many users fast
PRIVATE = {"api_visibility": "private"}  # page plumbing: kept out of the documented client API
PREDICT_QUEUE = {"concurrency_limit": PREDICT_CONCURRENCY, "concurrency_id": "predict"}
