"""Small ONNX models built in code for device and runner tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def matmul_model(path: Path, size: int = 256, layers: int = 10) -> list[int]:
    """An ONNX chain of MatMul + Tanh, a few ms per inference on one core."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "input"
    for i in range(layers):
        w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        out = "output" if i == layers - 1 else f"t{i}"
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [out]))
        prev = out
    shape = [1, size, size]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return shape


def big_model(path: Path, megabytes: int = 200) -> list[int]:
    """An ONNX model whose one initializer is ``megabytes`` large: it cannot load in less."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cols = megabytes * 2**20 // 4 // 4
    w = np.full((4, cols), 1e-3, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cols])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return [1, 4]


def matmul_onnx(path: Path, rows: int, cols: int, batch: int | str = 1) -> Path:
    """An ONNX model ``y = x @ W`` whose one initializer is ``rows x cols`` float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "matmul",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, rows])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, cols])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime 1.31 reads
    onnx.save(model, str(path))
    return path
