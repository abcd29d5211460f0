"""What every tab of the UI works over: the one predictor, job manager and prediction pool of the process."""
from __future__ import annotations

from dataclasses import dataclass, field

from inference.pool import PredictionPool
from inference.predictor import Predictor
from training.jobs import JobManager
from ui.confusion import ConfusionMatrices


@dataclass
class AppContext:
    predictor: Predictor
    jobs: JobManager
    pool: PredictionPool | None = None
    train_token: str | None = None  # when set, training (UI and REST) needs it
    confusions: ConfusionMatrices = field(init=False)

    def __post_init__(self):
        self.confusions = ConfusionMatrices(self.predictor)


# Gradio event options shared by the tabs.
PREDICT_CONCURRENCY = 4  # predictions take milliseconds: several at once keep many users fast
PRIVATE = {"api_visibility": "private"}  # page plumbing: kept out of the documented client API
PREDICT_QUEUE = {"concurrency_limit": PREDICT_CONCURRENCY, "concurrency_id": "predict"}
