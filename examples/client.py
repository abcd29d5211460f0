"""Classify a picture of a digit with a running Digit Studio server.

    python app.py                                             # in another terminal: the server
    python examples/client.py examples/digit.png              # gradio_client, model2, http://127.0.0.1:7860/
    python examples/client.py examples/digit.png --model model1 --url http://127.0.0.1:7860/
    python examples/client.py examples/digit.png --rest       # the same through the REST API, standard library only

examples/digit.png is a 3 drawn on the app's canvas (examples/make_digit.py draws it); it prints
    digit.png: 3 (model2, 100.0% sure)
    top 3: 3 100.0%, 5 0.0%, 2 0.0%

With gradio_client, `api_name="/predict"` takes (image, model, invert) and returns
(digit, probabilities of 0-9, verdict: "digit", "unsure" or "not_a_digit"). The Train tab is scriptable the same way, streaming
(progress, status, accuracy curve, loss curve, summary) updates:

    job = Client(url).submit(2, 200, 0.1, 2000, api_name="/train_model1")  # epochs, batch, lr, images
    for progress, status, *_ in job:
        print(f"{progress:5.1f}%  {status}")

The REST API (see /docs on the server) takes the image as a data URL:
POST /predict {"image": "data:image/png;base64,...", "model": "model2"} -> {"prediction", "probabilities", ...}
"""
from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = os.environ.get("DIGIT_STUDIO_URL", "http://127.0.0.1:7860/")


def predict_with_gradio_client(url: str, image: Path, model: str, invert: bool) -> tuple[int, list[float]]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    digit, probabilities, _verdict = client.predict(handle_file(str(image)), model, invert, api_name="/predict")
    return int(digit), [float(p) for p in probabilities]


def predict_with_rest(url: str, image: Path, model: str, invert: bool) -> tuple[int, list[float]]:
    mime = mimetypes.guess_type(image.name)[0] or "image/png"
    data_url = f"data:{mime};base64," + base64.b64encode(image.read_bytes()).decode("ascii")
    request = urllib.request.Request(
        url.rstrip("/") + "/predict",
        data=json.dumps({"image": data_url, "model": model, "invert": invert}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # the API answers errors as {"error": "..."}
        raise RuntimeError(json.load(error).get("error", str(error))) from None
    return int(body["prediction"]), [float(p) for p in body["probabilities"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify a picture of one digit with a Digit Studio server.")
    parser.add_argument("image", type=Path, help="a PNG/JPEG/WebP picture of one digit")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server address (default {DEFAULT_URL})")
    parser.add_argument("--model", default="model2", help="a model the server has (GET /model_status lists them; default model2, the CNN) "
                             "or all (REST only: one answer per model)")
    parser.add_argument("--invert", action="store_true", help="flip the detected ink/background polarity")
    parser.add_argument("--rest", action="store_true", help="use the REST API instead of gradio_client")
    args = parser.parse_args(argv)

    if not args.image.is_file():
        print(f"error: no such file: {args.image}", file=sys.stderr)
        return 2
    predict = predict_with_rest if args.rest else predict_with_gradio_client
    try:
        digit, probabilities = predict(args.url, args.image, args.model, args.invert)
    except Exception as error:  # connection refused, an error answer from the server, ...
        print(f"error: {error}", file=sys.stderr)
        return 1
    ranked = sorted(range(10), key=lambda d: probabilities[d], reverse=True)[:3]
    print(f"{args.image.name}: {digit} ({args.model}, {probabilities[digit]:.1%} sure)")
    print("top 3: " + ", ".join(f"{d} {probabilities[d]:.1%}" for d in ranked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
