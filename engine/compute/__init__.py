"""Where the numbers are computed: the array backend (torch tensors, or numpy without torch),
the compute device, and onnxruntime sessions.

Both model formats (an ONNX model opens its session on a device) and the inference pipeline
(windows become tensors on that device) stand on this wing; it imports neither of them.
"""
