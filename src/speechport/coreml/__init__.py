"""speechport's interpreter of Core ML programs (MIL): runs an ``.mlpackage`` with numpy
where the Core ML framework is not available (anywhere but macOS)."""

from speechport.coreml.interpreter import Fp16Overflow, Interpreter, RunStats
from speechport.coreml.ops import KERNELS
from speechport.coreml.program import Program, load_program

__all__ = ["KERNELS", "Fp16Overflow", "Interpreter", "Program", "RunStats", "load_program"]
