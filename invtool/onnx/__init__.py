"""ONNX -> PyTorch rebuilder: only the nodes the requested tensors need, as a torch.fx GraphModule."""
