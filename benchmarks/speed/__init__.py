"""How fast: onnxruntime inference, REST under load, cold start, training time (sections 4, 5, 7, 8),
and the servers they start."""
