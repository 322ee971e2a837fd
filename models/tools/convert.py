"""Model conversions used by `likeguard models fetch` (see models/README.md).

Each function takes the path of the file extracted from the registry package and writes an
ONNX file. Conversions are deterministic: the same pinned tools give the same bytes, which the
manifest pins by sha256.
"""

import onnx
from onnx import numpy_helper
import tflite2onnx


def tflite_to_onnx(src: str, dst: str, dynamic_batch: bool) -> None:
    """tflite → ONNX with tflite2onnx (NCHW input), optionally with a dynamic batch dimension."""
    tflite2onnx.convert(src, dst)
    model = onnx.load(dst)
    if dynamic_batch:
        make_batch_dynamic(model)
    canonicalise(model)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def canonicalise(model: onnx.ModelProto) -> None:
    """tflite2onnx emits initializers and value infos in set order (varies run to run): sort them
    so the bytes, and so the pinned sha256, are reproducible."""
    graph = model.graph
    for field in (graph.initializer, graph.value_info):
        ordered = sorted(field, key=lambda v: v.name)
        copies = [type(v)() for v in ordered]
        for copy, v in zip(copies, ordered):
            copy.CopyFrom(v)
        del field[:]
        field.extend(copies)


def make_batch_dynamic(model: onnx.ModelProto) -> None:
    """Rename the fixed batch dimension of inputs/outputs to `N` and let every Reshape whose
    target starts with that batch size infer it (-1): the tflite graphs bake the batch size in."""
    graph = model.graph
    batch = graph.input[0].type.tensor_type.shape.dim[0].dim_value
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "N"
    del graph.value_info[:]  # stale static shapes; onnxruntime re-infers them
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]]).copy()
        # Per-channel parameter reshapes ([1, C, 1, 1]) broadcast over the batch: leave them.
        if len(shape) >= 2 and shape[0] == batch and not (len(shape) == 4 and shape[2] == 1 and shape[3] == 1):
            shape[0] = -1
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))


CONVERTERS = {
    "tflite2onnx": lambda src, dst: tflite_to_onnx(src, dst, dynamic_batch=False),
    "tflite2onnx-dynamic-batch": lambda src, dst: tflite_to_onnx(src, dst, dynamic_batch=True),
}
