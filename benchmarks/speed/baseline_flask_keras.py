"""A /predict server built the way the original app was, for side-by-side benchmarks only.

Flask's own server, Keras `model.predict` on the native model2.keras per request,
and the original naive preprocessing (grayscale -> resize to 28x28 -> /255, from
benchmarks.reading.drawing_variants). Same request and response JSON as our /predict.

    python -m benchmarks.speed.baseline_flask_keras --port 5001 [--model exports/model2.keras]

Listens on 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import io
import sys
from pathlib import Path

import numpy as np


def create_app(model_path: Path):
    import keras  # TensorFlow, imported when the server starts, as in the original app
    from flask import Flask, jsonify, request
    from PIL import Image, UnidentifiedImageError

    from benchmarks.reading.drawing_variants import naive_preprocess

    model = keras.models.load_model(model_path)
    app = Flask("baseline_flask_keras")

    @app.post("/predict")
    def predict():
        payload = request.get_json(silent=True) or {}
        image_field = payload.get("image")
        if not isinstance(image_field, str):
            return jsonify(error="send {'image': data URL}"), 400
        try:
            encoded = image_field.split(",", 1)[1] if image_field.startswith("data:") else image_field
            image = Image.open(io.BytesIO(base64.b64decode(encoded)))
            image.load()
        except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as error:
            return jsonify(error=f"not an image: {error}"), 400
        x = np.asarray(naive_preprocess(image), dtype=np.float32).reshape(1, 28, 28, 1)
        probabilities = model.predict(x, verbose=0)[0]
        return jsonify(prediction=int(np.argmax(probabilities)),
                       probabilities=[float(p) for p in probabilities])

    return app


def main(argv: list[str] | None = None) -> int:
    from training.artifacts import exports_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--model", type=Path, default=exports_dir() / "model2.keras")
    args = parser.parse_args(argv)
    app = create_app(args.model)
    # Flask's development server with a thread per request, as `app.run()` gives by default.
    app.run(host="127.0.0.1", port=args.port, threaded=True, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
