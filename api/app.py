"""The REST API: the original app's routes and JSON, over the shared predictor and job manager.

    GET  /env                        Python, machine, TensorFlow available?, library versions, workers
    GET  /model_status               per model: trained, available (or why not), accuracy, when trained
    POST /train/{model}              start training (optional JSON options) -> 202; 409 if already running
    POST /train/{model}/cancel       cancel (also DELETE /train/{model})
    GET  /train_status/{model}       {"progress", "status", "accuracy", "running", "error", ...}
    POST /predict                    {"image": data URL or base64, "model": "model1"|"model2"|"all",
                                      "include_input": false, "explain": false}
                                     -> {"prediction", "probabilities", "model", "latency_ms"}
                                     (+ "model_input": the 28x28 input as a PNG data URL, when asked)
                                     (+ "explanation" per model, when asked: inference/explain/)

Every error is a 4xx/503 JSON body {"error": "<what is wrong and how to fix it>"}
(never a stack trace). With `train_token` set, starting or cancelling training needs
`Authorization: Bearer <token>`. Request input is only ever decoded as image bytes,
never used as a file path.

/predict answers with the JSON bytes of inference/answer.py, computed on the event
loop, in a thread or in a prediction worker process (inference/pool.py), skipping
FastAPI's response-model validation and encoding (the model still documents it in /docs).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import token_dependency
from api.drawings import drawings_router
from api.errors import ErrorResponse, BodyLimitRoute, error_response, install_error_handlers, refuse_other_methods
from api.versions import versions_router
from inference.answer import ALL_MODELS, DEFAULT_MODEL, encode, predict_answer
from inference.explain.lane import ExplainLane, ExplainRefused
from inference.lanes import PredictionLanes
from inference.pool import PredictionPool
from inference.predictor import Predictor
from inference.status import environment, model_status_report
from training.artifacts import exports_dir, remove_staged_files
from training.jobs import JobAlreadyRunningError, JobManager, TrainingUnavailableError

log = logging.getLogger(__name__)

STATUS_HISTORY = 100  # events in /train_status (the UI streams the rest from the job manager)

EXPLANATION_DOC = (
    'With "explain": true: "method" (how the maps were made: "exact" for a linear model, '
    '"integrated_gradients" for the CNN, "occlusion" for any other), "space" and "input" (the 28x28 image the '
    'maps lie over, a PNG data URL), "top" and "runner_up", and "maps": the top digit\'s map first, then the '
    'runner-up\'s, then top rather than runner-up; each has "digit", "against", "values" (28x28 numbers, '
    'positive = evidence for the digit), "sum", "score" (the calibrated logit it explains; with "bias" for an '
    'exact map, score = sum + bias) and "image" (a PNG: blue for, orange against). Model 1 adds "templates" '
    '(its ten weight images with the drawing\'s score against each), Model 2 "layers" (each conv and pooling '
    'layer\'s activations, strongest first, as one PNG mosaic). {"error": ...} when a model cannot be explained')


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients of the original app may send more fields

    image: str = Field(description="The drawing as a data URL (data:image/png;base64,...) or bare base64 "
                                   "of a PNG, JPEG or WebP file", examples=["data:image/png;base64,iVBORw0KGgo..."])
    model: str = Field(DEFAULT_MODEL, description='"model1", "model2" or "all"', examples=[DEFAULT_MODEL])
    # Strict: JSON true or false only ("yes", 1 or "true" are a 422, not a guess at what the client meant).
    invert: StrictBool = Field(False, description="Flip the automatically detected polarity (ink vs background)")
    include_input: StrictBool = Field(False, description='Also answer "model_input": the 28x28 image the models '
                                                         'read, as a PNG data URL (the Draw tab shows it)')
    explain: StrictBool = Field(False, description='Also answer each model\'s "explanation": why it reads the digit '
                                                   'it reads (maps over its 28x28 input, as numbers and PNGs). Costs '
                                                   'more than a prediction: limited per client and server-wide '
                                                   '(429 / 503 with Retry-After beyond)')


class PredictResponse(BaseModel):
    prediction: int = Field(description="The predicted digit (0-9)")
    probabilities: list[float] = Field(description="Probability of each digit 0-9, summing to 1")
    model: str
    latency_ms: float = Field(description="Server-side time: decoding, preprocessing and inference")
    model_input: str | None = Field(None, description='With "include_input": true, the 28x28 model input as a '
                                                      'PNG data URL')
    explanation: dict[str, Any] | None = Field(None, description=EXPLANATION_DOC)


class AllPredictResponse(BaseModel):
    model: str = ALL_MODELS
    predictions: dict[str, PredictResponse]
    unavailable: dict[str, str] = Field(description="Models that could not predict, and why")
    latency_ms: float
    model_input: str | None = Field(None, description='With "include_input": true, the 28x28 model input as a '
                                                      'PNG data URL')


def create_api(predictor: Predictor, jobs: JobManager, *, train_token: str | None = None,
               pool: PredictionPool | None = None, drawings: Any = None, versions: Any = None,
               explain_lane: ExplainLane | None = None, lanes: PredictionLanes | None = None) -> FastAPI:
    """The REST routes over one predictor and one job manager (shared with the UI).

    With a `pool`, the server starts its worker processes when it starts (and stops them
    when it stops), and /predict uses them whenever requests overlap. `explain_lane`
    computes "explain": true requests (inference/explain/lane.py; started and stopped with
    the server too); without one such a request is answered 503. `lanes` decides where each prediction
    runs (inference/lanes.py; pass the one the UI uses, so both share its large-image lane).
    """
    lanes = lanes or PredictionLanes(predictor, pool)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # A run killed with kill -9 leaves its staged files behind; no run of this process stages yet.
        # Runs write new versions into the data location; a job manager given a folder writes there.
        removed = versions.remove_abandoned_runs() if versions is not None else []
        if jobs.exports_dir is not None:
            removed += remove_staged_files(exports_dir(jobs.exports_dir))
        if removed:
            log.warning("removed the staged files of %d interrupted training run(s): %s", len(removed),
                        ", ".join(path.name for path in removed))
        if pool is not None:
            await pool.start()
        if explain_lane is not None:
            await explain_lane.start(after=pool)  # once the prediction workers are up: see ExplainLane.start
        try:
            yield
        finally:
            if explain_lane is not None:
                await explain_lane.close()
            if pool is not None:
                await pool.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Digit Studio API",
        description="Handwritten digit recognition with two models (ONNX), and live training.",
        version="1.0",
    )
    app.router.route_class = BodyLimitRoute  # every API route; Gradio's mount keeps its own limits
    install_error_handlers(app)
    error_responses = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)}

    require_train_token = token_dependency(train_token)

    def model_or_404(name: str) -> str:
        if name not in jobs.models:
            raise StarletteHTTPException(404, f"Unknown model {name!r}; choose one of: {', '.join(jobs.models)}")
        return name

    # -- routes -----------------------------------------------------------

    @app.get("/env", summary="Runtime environment", tags=["status"])
    def get_env() -> dict[str, Any]:
        return environment(pool, explain_lane, drawings)

    @app.get("/model_status", summary="Each model: trained, serving, accuracy", tags=["status"])
    def model_status() -> dict[str, Any]:
        return model_status_report(predictor, jobs)

    @app.post("/train/{model}", status_code=202, summary="Start training a model in the background",
              tags=["training"], responses=error_responses, dependencies=[Depends(require_train_token)])
    def start_training(model: str, options: dict[str, Any] | None = Body(
            None, examples=[{"epochs": 2}, {"preset": "quick"}],
            description="Optional: epochs, batch_size, learning_rate, limit, seed, preset ('default' or 'quick')")):
        name = model_or_404(model)
        try:
            status = jobs.start(name, options)
        except JobAlreadyRunningError as exc:
            return error_response(409, str(exc), status=_without_history(jobs.status(name)))
        except TrainingUnavailableError as exc:
            return error_response(503, str(exc))
        except ValueError as exc:
            return error_response(422, str(exc))
        return JSONResponse({"started": True, "model": name, "status_url": f"/train_status/{name}",
                             **_without_history(status)}, status_code=202)

    @app.post("/train/{model}/cancel", summary="Cancel a running training job", tags=["training"],
              responses=error_responses, dependencies=[Depends(require_train_token)])
    def cancel_training(model: str) -> dict[str, Any]:
        name = model_or_404(model)
        cancelled = jobs.cancel(name)
        status = _without_history(jobs.status(name))
        if cancelled:
            message = "Cancelling: the previous model stays in place"
        elif status["running"]:  # the run had already saved its files: they are in place
            message = f"Too late to cancel: {name}'s new model is already saved and in use; the job is finishing"
        else:
            message = f"{name} is not training (its last job: {status['status']})"
        return {"cancelled": cancelled, "model": name, "message": message, **status}

    app.add_api_route("/train/{model}", cancel_training, methods=["DELETE"], summary="Cancel a running training job",
                      tags=["training"], responses=error_responses, dependencies=[Depends(require_train_token)])

    @app.get("/train_status/{model}", summary="Progress of the current or last training job", tags=["training"],
             responses=error_responses)
    def train_status(model: str) -> dict[str, Any]:
        return jobs.status(model_or_404(model), history=STATUS_HISTORY)

    @app.post("/predict", summary="Classify a drawn digit", tags=["predict"], response_model=PredictResponse,
              responses={**error_responses, 200: {"model": PredictResponse | AllPredictResponse}})
    async def predict(request: PredictRequest, http: Request) -> Response:
        # Where the work runs is inference/lanes.py's choice (worker processes, the event loop, a few
        # threads, and one large image at a time), shared with gradio_client and MCP. "explain": true
        # goes to the explanation lane (its own workers, bounded per client and server-wide:
        # inference/explain/lane.py), after the same checks and the same large lane.
        if not request.explain:
            return _json_response(*await lanes.answer(request.image, request.model, request.invert,
                                                      include_input=request.include_input))
        if request.model != ALL_MODELS and request.model not in predictor.models:
            return _json_response(*_predict(predictor, request))  # a 422 at once, nothing to decode
        async with lanes.admitted(request.image):
            return await explained(request, http)

    async def explained(request: PredictRequest, http: Request) -> Response:
        if explain_lane is None:
            return error_response(503, "This server does not compute explanations; ask without \"explain\"")
        try:
            status, body = await explain_lane.answer(request.image, request.model, request.invert,
                                                     include_input=request.include_input, client=_client(http))
        except ExplainRefused as refused:
            return error_response(refused.status, refused.message, headers=refused.headers)
        return _json_response(status, body)

    # The drawings database and model versions (api/drawings.py, api/versions.py).
    if drawings is not None:
        app.include_router(drawings_router(drawings, predictor, require_train_token))
    if versions is not None:
        app.include_router(versions_router(versions, predictor, require_train_token))
    refuse_other_methods(app)
    return app


def _client(request: Request) -> str:
    """Who is asking: the client's address (uvicorn puts the visitor's there behind a trusted proxy)."""
    return request.client.host if request.client else "unknown client"


def _predict(predictor: Predictor, request: PredictRequest) -> tuple[int, bytes]:
    status, payload = predict_answer(predictor, request.image, request.model, request.invert,
                                     include_input=request.include_input)
    return status, encode(payload)


def _json_response(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _without_history(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "history"}


