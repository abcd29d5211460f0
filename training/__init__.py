"""Training pipeline: MNIST loading, generator trainers, native + ONNX export."""
