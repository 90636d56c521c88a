"""Framework weights -> invtool's ONNX contract (one input `image`, RGB [0, 1], every layer a named output)."""
