"""Exporters: components to Core ML (.mlpackage) and ONNX, and the bundle writer.

Only this package knows a converter (torch.jit/torch.onnx, coremltools, onnx).
"""
