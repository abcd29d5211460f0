"""Inference: image preprocessing and the ONNX predictor. Never imports TensorFlow."""
