"""POST /predict: the original app's route, with "model": "all", "include_input" and "explain".

    POST /predict    {"image": data URL or base64, "model": "model1"|"model2"|"all",
                      "include_input": false, "explain": false}
                     -> {"prediction", "probabilities", "model", "latency_ms"}
                     (+ "model_input": the 28x28 input as a PNG data URL, when asked)
                     (+ "explanation" per model, when asked: inference/explain/)

Answers with the JSON bytes of inference/answer.py, computed where inference/lanes.py decides (the
event loop, a thread or a prediction worker process), skipping FastAPI's response-model validation
and encoding (the models below still document it in /docs).
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.buckets import client_of
from api.errors import BodyLimitRoute, ErrorResponse, error_response
from inference.answer import ALL_MODELS, DEFAULT_MODEL, encode, predict_answer
from inference.explain.lane import ExplainLane, ExplainRefused
from inference.lanes import PredictionLanes
from inference.predictor import Predictor
from training import lineup
from training.registry import MODELS

EXPLANATION_DOC = (
    'With "explain": true: "method" (how the maps were made: "exact" for a linear model, '
    '"integrated_gradients" for a CNN, "occlusion" for any other), "space" and "input" (the 28x28 image the '
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
    model: str = Field(DEFAULT_MODEL, description=lineup.model_choices(MODELS), examples=[DEFAULT_MODEL])
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


def predict_router(predictor: Predictor, lanes: PredictionLanes, explain_lane: ExplainLane | None) -> APIRouter:
    """/predict over `lanes` (shared with the UI's paths into the predictor) and `explain_lane`."""
    router = APIRouter(route_class=BodyLimitRoute, tags=["predict"])
    error_responses = {code: {"model": ErrorResponse} for code in (400, 413, 422, 429, 503)}

    @router.post("/predict", summary="Classify a drawn digit", response_model=PredictResponse,
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
                                                     include_input=request.include_input, client=client_of(http.scope))
        except ExplainRefused as refused:
            return error_response(refused.status, refused.message, headers=refused.headers)
        return _json_response(status, body)

    return router


def _predict(predictor: Predictor, request: PredictRequest) -> tuple[int, bytes]:
    status, payload = predict_answer(predictor, request.image, request.model, request.invert,
                                     include_input=request.include_input)
    return status, encode(payload)


def _json_response(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")
