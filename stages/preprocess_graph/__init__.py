"""Preprocessing as ONNX graphs: decoded pixels -> exactly the network input the package makes.

One builder per preprocessing style (the `style` of a model's `preprocessing` params), each a
function

    image_graph(g: GraphBuilder, rgb: str, pre: Preprocessing) -> tuple[str, str]

that adds to `g` the nodes turning the tensor named `rgb` (uint8 [H, W, 3], RGB, H and W
dynamic) into
  - the preprocessed image, uint8: [rows, cols] ink bright (signature styles; SPP at the
    image's own size) or [rows, cols, 3] (style "rgb"), equal to
    `pre.image(pre.load(file))` of `signature_onnx.preprocessing` for a file that decodes to
    those pixels;
  - a bool scalar, false where the package refuses the image (uniform page, no ink, ink a
    single row or column, smaller than an SPP model's minimum); the image output is then
    all zeros (blank paper) so that a runtime never fails on it.

Standard ONNX operators of the default domain only, opset `OPSET`; every constant is computed
at build time from the params by the documented rule of the step it belongs to.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, compose, helper

from signature_onnx.folder import PIXELS_SUFFIX, VALID_SUFFIX
from signature_onnx.preprocessing import Preprocessing
from stages.core.graph_builder import GraphBuilder
from stages.core.onnx_graph import rename_everywhere
from stages.core.params import TensorSpec

# Style name -> the module whose `image_graph` builds it (imported when used).
STYLE_MODULES = {
    "wiwd": "stages.preprocess_graph.wiwd",
    "sigver": "stages.preprocess_graph.sigver",
    "rgb": "stages.preprocess_graph.rgb",
}
ONNX_DTYPES = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}


def pixels_name(spec: TensorSpec) -> str:
    return spec.name + PIXELS_SUFFIX


def valid_name(spec: TensorSpec) -> str:
    return spec.name + VALID_SUFFIX


def image_graph(pre: Preprocessing, opset: int) -> GraphBuilder:
    """One image's nodes: "pixels" -> "image" (uint8) and "valid" (bool), names unscoped."""
    g = GraphBuilder(opset)
    module = importlib.import_module(STYLE_MODULES[pre.style])
    image, valid = module.image_graph(g, "pixels", pre)
    g.op("Identity", [image], "image/Identity", output="image")
    g.op("Identity", [valid], "valid/Identity", output="valid")
    return g


def network_input(g: GraphBuilder, image: str, pre: Preprocessing, spec: TensorSpec, output: str) -> str:
    """`Preprocessing.network_input`: uint8 as it is; float32 divided by `input_divisor` (a float32
    division, as numpy does it) with the batch (and channel) axes added."""
    if spec.dtype == "uint8":
        return g.op("Identity", [image], "network_input/Identity", output=output)
    scaled = g.op("Cast", [image], "network_input/Cast", to=TensorProto.FLOAT)
    if pre.input_divisor != 1:
        scaled = g.op(
            "Div", [scaled, g.scalar("network_input/divisor", pre.input_divisor, np.float32)], "network_input/Div"
        )
    axes = [0] if pre.style == "rgb" else [0, 1]
    return g.op("Unsqueeze", [scaled, g.ints("network_input/axes", axes)], "network_input/Unsqueeze", output=output)


def _scoped(g: GraphBuilder, scope: str) -> tuple[list, list]:
    """Copies of the builder's nodes and initializers with every name prefixed by `scope`,
    subgraphs (If branches, Scan bodies) included: `onnx.compose.add_prefix_graph`."""
    inputs = [helper.make_tensor_value_info("pixels", TensorProto.UINT8, None)]
    graph = compose.add_prefix_graph(helper.make_graph(g.nodes, "image", inputs, [], g.initializers), scope)
    return list(graph.node), list(graph.initializer)


def output_shape(pre: Preprocessing, spec: TensorSpec) -> list[int | str]:
    """The network input's shape for one image: batch 1, SPP's sides dynamic."""
    rows, cols = ("height", "width") if pre.spp else pre.input_size
    if spec.dtype == "uint8":
        return [rows, cols]
    return [1, rows, cols, 3] if pre.style == "rgb" else [1, 1, rows, cols]


def preprocess_model(pre: Preprocessing, inputs: Sequence[TensorSpec], opset: int, ir_version: int) -> onnx.ModelProto:
    """preprocess.onnx: for each network input X, "X_pixels" (uint8 [height, width, 3]) -> "X"
    (exactly the network input) and "X_valid" (bool: false where the package refuses the image)."""
    nodes, initializers, graph_inputs, graph_outputs = [], [], [], []
    for spec in inputs:
        g = image_graph(pre, opset)
        network_input(g, "image", pre, spec, "network_input")
        scope = f"{spec.name}/"
        scoped_nodes, scoped_inits = _scoped(g, scope)
        pixels, valid = pixels_name(spec), valid_name(spec)
        nodes.append(helper.make_node("Identity", [pixels], [scope + "pixels"], name=scope + "pixels/Identity"))
        nodes.extend(scoped_nodes)
        nodes.append(
            helper.make_node("Identity", [scope + "network_input"], [spec.name], name=scope + "output/Identity")
        )
        nodes.append(helper.make_node("Identity", [scope + "valid"], [valid], name=scope + "valid/output/Identity"))
        initializers.extend(scoped_inits)
        # Each image its own symbolic sides: ONNX Runtime takes equal dim_params for equal sizes.
        sides = ["height", "width"] if len(inputs) == 1 else [f"{spec.name}_height", f"{spec.name}_width"]
        graph_inputs.append(helper.make_tensor_value_info(pixels, TensorProto.UINT8, [*sides, 3]))
        graph_outputs.append(helper.make_tensor_value_info(spec.name, ONNX_DTYPES[spec.dtype], output_shape(pre, spec)))
        graph_outputs.append(helper.make_tensor_value_info(valid, TensorProto.BOOL, []))
    graph = helper.make_graph(nodes, "preprocess", graph_inputs, graph_outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx", ir_version=ir_version
    )
    return model


def pipeline_model(
    preprocess: onnx.ModelProto, network: onnx.ModelProto, inputs: Sequence[TensorSpec]
) -> onnx.ModelProto:
    """pipeline.onnx: preprocess.onnx feeding the network (ONNX's own `onnx.compose.merge_models`).

    Inputs "X_pixels"; outputs the network's outputs and "X_valid". The preprocessing's tensors
    are prefixed "preprocess/" so that no name can meet one of the network's."""
    prefixed = compose.add_prefix(preprocess, "preprocess/", rename_inputs=False, rename_outputs=True)
    io_map = [(f"preprocess/{spec.name}", spec.name) for spec in inputs]
    outputs = [o.name for o in network.graph.output] + [f"preprocess/{valid_name(spec)}" for spec in inputs]
    merged = compose.merge_models(prefixed, network, io_map=io_map, outputs=outputs)
    for spec in inputs:  # the flags keep their preprocess.onnx names
        rename_everywhere(merged.graph, f"preprocess/{valid_name(spec)}", valid_name(spec))
    order = [o.name for o in network.graph.output] + [valid_name(spec) for spec in inputs]
    ranked = sorted(merged.graph.output, key=lambda value: order.index(value.name))
    copies = [onnx.ValueInfoProto.FromString(value.SerializeToString()) for value in ranked]
    del merged.graph.output[:]
    merged.graph.output.extend(copies)  # the network's outputs first, as in model.onnx
    return merged
