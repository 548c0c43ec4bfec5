"""Graph surgery for the patch step (names, shapes, canonical form) and the ONNX metadata.

Every function takes and returns an `onnx.ModelProto`; none touches weights' values, so the
patched graph computes exactly what the converter's graph computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import onnx
from onnx import TensorProto

from stages.core.digests import sha256_file
from stages.core.errors import PipelineError
from stages.core.params import TensorSpec
from stages.core.versions import package_version

DTYPES = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}
PRODUCER_PACKAGES = {
    "tf2onnx": "tf2onnx",
    "pytorch": "torch",
    "onnx": "onnx",
}  # "onnx": graphs built with onnx.helper (stages.core.graph_builder)


def rename_everywhere(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor `old` to `new` in every node, graph input, output and value_info."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def rename_io(model: onnx.ModelProto, specs: Iterable[TensorSpec], kind: str) -> None:
    """Rename each graph input or output from its `source_name` to its params `name`.

    Refuses a spec whose source name the converter did not produce, or whose dtype differs.
    """
    graph = model.graph
    values = {v.name: v for v in (graph.input if kind == "input" else graph.output)}
    for spec in specs:
        if spec.source_name not in values:
            raise PipelineError(
                f"onnx.{kind}s: the converted graph has no {kind} {spec.source_name!r} (it has {sorted(values)})"
            )
        elem_type = values[spec.source_name].type.tensor_type.elem_type
        if elem_type != DTYPES[spec.dtype]:
            raise PipelineError(
                f"onnx.{kind}s: {spec.source_name!r} is {TensorProto.DataType.Name(elem_type)}, params say {spec.dtype}"
            )
        rename_everywhere(graph, spec.source_name, spec.name)


def set_shapes(model: onnx.ModelProto, specs: Iterable[TensorSpec], kind: str) -> None:
    """Replace each named input's or output's shape by the params shape (ints fixed, strings dynamic)."""
    values = {v.name: v for v in (model.graph.input if kind == "input" else model.graph.output)}
    for spec in specs:
        shape = values[spec.name].type.tensor_type.shape
        del shape.dim[:]
        for size in spec.shape:
            dim = shape.dim.add()
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size


def canonical_names(model: onnx.ModelProto) -> None:
    """Replace generated node, tensor and initializer names by names derived from graph position.

    Exporters number things with process-wide counters (`__6`, `onnx::Conv_345`); a node keeps
    its scope (`.../conv2d/`) and becomes `<scope>/<OpType>_<index>`, its outputs `<node>:<k>`,
    an initializer `<first consumer>/<input slot>`. Graph inputs and outputs keep their names.
    """
    graph = model.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    renames: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        scope = node.name.rsplit("/", 1)[0] + "/" if "/" in node.name else ""
        node.name = f"{scope}{node.op_type}_{index}"
        for slot, output in enumerate(node.output):
            if output and output not in keep:
                renames[output] = f"{node.name}:{slot}"
    initializer_names = {init.name for init in graph.initializer}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name in initializer_names and name not in renames and name not in keep:
                renames[name] = f"{node.name}/in{slot}"
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for init in graph.initializer:
        init.name = renames.get(init.name, init.name)
    del graph.value_info[:]


def strip_documentation(model: onnx.ModelProto) -> None:
    """Doc strings carry exporter-side file paths and line numbers: drop them."""
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""


def pin_producer(model: onnx.ModelProto) -> None:
    """Set producer_version from the installed (pinned) converter, never from a build string."""
    package = PRODUCER_PACKAGES.get(model.producer_name)
    if package is None:
        raise PipelineError(
            f"unexpected ONNX producer {model.producer_name!r}; expected one of {sorted(PRODUCER_PACKAGES)}"
        )
    version = package_version(package)
    if version is None:
        raise PipelineError(f"the converter package {package!r} is not installed; pip install -r requirements.txt")
    model.producer_version = version


def set_lineage(model: onnx.ModelProto, name: str, raw: Path, files: Iterable[str]) -> None:
    """Record the model name and the sha256 of every upstream file as ONNX metadata.

    Only content-derived facts go in, so the same upstream bytes give the same ONNX bytes
    whichever source (builtin, kaggle, url) delivered them.
    """
    del model.metadata_props[:]
    entries = {"model": name}
    for relative in sorted(files):
        entries[f"upstream_sha256:{relative}"] = sha256_file(raw / relative)
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def set_metadata(model: onnx.ModelProto, entries: dict[str, str], version: int, doc: str) -> None:
    """Replace the file's metadata_props by `entries` (in key order), set model_version and doc_string.

    None of these touch the graph, so the published file computes exactly what was validated.
    """
    del model.metadata_props[:]
    for key in sorted(entries):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, entries[key]
    model.model_version = version
    model.doc_string = doc


def metadata_of(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder the nodes so that each comes after the producers of its inputs, as ONNX requires
    (the checker refuses anything else; ONNX Runtime tolerates it, other runtimes need not).
    Stable: each pass over the remaining nodes, in their order, emits every node whose inputs
    exist, so a graph already in order is left as it is. A cycle or an input nothing produces is a
    PipelineError. (Graph inputs of If/Loop subgraphs are not followed: no variant has them.)"""
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        waiting = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            missing = sorted({name for node in waiting for name in node.input if name not in available})[:5]
            raise PipelineError(f"graph {graph.name!r}: nodes wait for tensors nothing produces or a cycle: {missing}")
        pending = waiting
    if [id(n) for n in ordered] != [id(n) for n in graph.node]:
        copies = [onnx.NodeProto.FromString(node.SerializeToString()) for node in ordered]
        del graph.node[:]
        graph.node.extend(copies)
