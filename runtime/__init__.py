"""Running models: device and precision, the hub or offline weights, compiled
ONNX Runtime and OpenVINO graphs, the sentence embedder."""
