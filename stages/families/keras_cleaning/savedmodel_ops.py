"""Untrusted SavedModels: every op checked against an allow-list before TensorFlow sees the files.

TensorFlow runs a SavedModel's own graph ops when it loads one (resource initializers, restore
functions of custom saveables) and when it calls a signature, and tf2onnx loads it the same way:
a file-writing op in any of them runs with the pipeline's rights. So before `tf.saved_model.load`
or tf2onnx touches a model folder, `check_savedmodel` reads `saved_model.pb` as a protobuf (a
minimal schema of its own, no TensorFlow import: field numbers of tensorflow/core/protobuf
saved_model.proto, meta_graph.proto, graph.proto, function.proto, saved_object_graph.proto) and
refuses, naming the op and the function:

- any op outside `INFERENCE_OPS` (what a Keras inference network needs: convolutions,
  activations, pooling, arithmetic, shapes, variable reads, calls of library functions) in the
  top-level graph or in any function of its library: file, network, py_func, print or
  string-format ops, summaries, datasets, queues, lookup tables, control flow...;
- a call (`f` attribute, or an op named after a function) of a function the library lacks;
- a constant of more than `MAX_CONSTANT_ELEMENTS` elements (a memory bomb once materialised);
- anything but one MetaGraph with an object graph (a TF1-style model is loaded by running
  its saver's restore op and init ops from the graph itself).

Exempt are the standard save/restore functions tf.keras writes (`__inference__traced_save_N`,
`__inference__traced_restore_N`): the loaders here never call them (TensorFlow 2 restores
variables with its own ops), and this is enforced: they may hold only checkpoint ops
(`SAVE_RESTORE_OPS`) and may be referenced only by top-level graph nodes, never by another
function or by the object graph (whose functions are the ones TensorFlow calls).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from stages.core.errors import PipelineError
from stages.core.untrusted import read_bounded, shown

MAX_SAVED_MODEL_BYTES = 64 * 1024 * 1024  # the upstream saved_model.pb is 336 KB
MAX_CONSTANT_ELEMENTS = 1 << 24

# What a Keras inference network needs. Nothing here reads or writes files, talks to the network,
# runs Python, prints, formats strings or loops.
INFERENCE_OPS = frozenset(
    {
        # graph plumbing and function calls
        "Placeholder",
        "PlaceholderWithDefault",
        "Const",
        "Identity",
        "IdentityN",
        "NoOp",
        "StopGradient",
        "PartitionedCall",
        "StatefulPartitionedCall",
        # variables (resource handles created from the object graph)
        "VarHandleOp",
        "ReadVariableOp",
        "AssignVariableOp",
        "VarIsInitializedOp",
        # convolution, pooling, dense
        "Conv2D",
        "Conv2DBackpropInput",
        "Conv3D",
        "DepthwiseConv2dNative",
        "MatMul",
        "BatchMatMulV2",
        "BiasAdd",
        "MaxPool",
        "AvgPool",
        "MaxPoolV2",
        "FusedBatchNorm",
        "FusedBatchNormV2",
        "FusedBatchNormV3",
        "ResizeBilinear",
        "ResizeNearestNeighbor",
        # activations
        "Relu",
        "Relu6",
        "Elu",
        "Selu",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "LogSoftmax",
        "Softplus",
        "Softsign",
        # element-wise arithmetic and comparisons
        "Add",
        "AddV2",
        "AddN",
        "Sub",
        "Mul",
        "RealDiv",
        "Div",
        "DivNoNan",
        "FloorDiv",
        "FloorMod",
        "Maximum",
        "Minimum",
        "Neg",
        "Abs",
        "Square",
        "Sqrt",
        "Rsqrt",
        "Exp",
        "Log",
        "Log1p",
        "Pow",
        "Erf",
        "Reciprocal",
        "Sign",
        "Floor",
        "Ceil",
        "Round",
        "ClipByValue",
        "SquaredDifference",
        "Cast",
        "Greater",
        "GreaterEqual",
        "Less",
        "LessEqual",
        "Equal",
        "NotEqual",
        "LogicalAnd",
        "LogicalOr",
        "LogicalNot",
        "Select",
        "SelectV2",
        # reductions
        "Mean",
        "Sum",
        "Max",
        "Min",
        "Prod",
        "ArgMax",
        "ArgMin",
        # shapes and layout
        "Shape",
        "ShapeN",
        "Size",
        "Rank",
        "Reshape",
        "Squeeze",
        "ExpandDims",
        "Transpose",
        "ConcatV2",
        "Pack",
        "Unpack",
        "StridedSlice",
        "Slice",
        "Split",
        "SplitV",
        "Pad",
        "PadV2",
        "MirrorPad",
        "Tile",
        "BroadcastTo",
        "BroadcastArgs",
        "Fill",
        "ZerosLike",
        "OnesLike",
        "Range",
        "GatherV2",
        # Keras dropout's training branch (traced, never called at inference)
        "RandomUniform",
        "RandomStandardNormal",
        "StatelessRandomUniformV2",
        "StatelessRandomGetKeyCounter",
    }
)
# What tf.keras' traced save/restore functions hold (checkpoint file ops; never called here).
SAVE_RESTORE_OPS = frozenset(
    {
        "SaveV2",
        "RestoreV2",
        "MergeV2Checkpoints",
        "ShardedFilename",
        "StringJoin",
        "StaticRegexFullMatch",
        "Select",
        "SelectV2",
        "Const",
        "Identity",
        "IdentityN",
        "NoOp",
        "Pack",
        "ReadVariableOp",
        "AssignVariableOp",
        "DisableCopyOnRead",
    }
)
_SAVE_RESTORE = re.compile(r"^__inference__traced_(save|restore)_\d+$")


# --------------------------------------------------------------------------------------------
# A minimal schema: only the fields the check reads; everything else is skipped as unknown.
# --------------------------------------------------------------------------------------------

_PROTO = "stages_savedmodel_check.proto"
_OPT, _REP = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_T = descriptor_pb2.FieldDescriptorProto
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    # name: [(field, number, label, type, message type)]
    "SavedModel": [("meta_graphs", 2, _REP, _T.TYPE_MESSAGE, "MetaGraphDef")],
    "MetaGraphDef": [
        ("graph_def", 2, _OPT, _T.TYPE_MESSAGE, "GraphDef"),
        ("object_graph_def", 7, _OPT, _T.TYPE_MESSAGE, "SavedObjectGraph"),
    ],
    "GraphDef": [
        ("node", 1, _REP, _T.TYPE_MESSAGE, "NodeDef"),
        ("library", 2, _OPT, _T.TYPE_MESSAGE, "FunctionDefLibrary"),
    ],
    "NodeDef": [
        ("name", 1, _OPT, _T.TYPE_STRING, ""),
        ("op", 2, _OPT, _T.TYPE_STRING, ""),
        ("attr", 5, _REP, _T.TYPE_MESSAGE, "NodeDef.AttrEntry"),
    ],
    "NodeDef.AttrEntry": [("key", 1, _OPT, _T.TYPE_STRING, ""), ("value", 2, _OPT, _T.TYPE_MESSAGE, "AttrValue")],
    "AttrValue": [
        ("list", 1, _OPT, _T.TYPE_MESSAGE, "AttrValue.ListValue"),
        ("tensor", 8, _OPT, _T.TYPE_MESSAGE, "TensorProto"),
        ("func", 10, _OPT, _T.TYPE_MESSAGE, "NameAttrList"),
    ],
    "AttrValue.ListValue": [
        ("tensor", 8, _REP, _T.TYPE_MESSAGE, "TensorProto"),
        ("func", 9, _REP, _T.TYPE_MESSAGE, "NameAttrList"),
    ],
    "NameAttrList": [
        ("name", 1, _OPT, _T.TYPE_STRING, ""),
        ("attr", 2, _REP, _T.TYPE_MESSAGE, "NameAttrList.AttrEntry"),
    ],
    "NameAttrList.AttrEntry": [("key", 1, _OPT, _T.TYPE_STRING, ""), ("value", 2, _OPT, _T.TYPE_MESSAGE, "AttrValue")],
    "TensorProto": [("tensor_shape", 2, _OPT, _T.TYPE_MESSAGE, "TensorShapeProto")],
    "TensorShapeProto": [
        ("dim", 2, _REP, _T.TYPE_MESSAGE, "TensorShapeProto.Dim"),
        ("unknown_rank", 3, _OPT, _T.TYPE_BOOL, ""),
    ],
    "TensorShapeProto.Dim": [("size", 1, _OPT, _T.TYPE_INT64, "")],
    "FunctionDefLibrary": [("function", 1, _REP, _T.TYPE_MESSAGE, "FunctionDef")],
    "FunctionDef": [
        ("signature", 1, _OPT, _T.TYPE_MESSAGE, "OpDef"),
        ("node_def", 3, _REP, _T.TYPE_MESSAGE, "NodeDef"),
    ],
    "OpDef": [("name", 1, _OPT, _T.TYPE_STRING, "")],
    "SavedObjectGraph": [
        ("nodes", 1, _REP, _T.TYPE_MESSAGE, "SavedObject"),
        ("concrete_functions", 2, _REP, _T.TYPE_MESSAGE, "SavedObjectGraph.ConcreteFunctionsEntry"),
    ],
    "SavedObjectGraph.ConcreteFunctionsEntry": [
        ("key", 1, _OPT, _T.TYPE_STRING, ""),
        ("value", 2, _OPT, _T.TYPE_BYTES, ""),
    ],
    "SavedObject": [
        ("function", 6, _OPT, _T.TYPE_MESSAGE, "SavedFunction"),
        ("bare_concrete_function", 8, _OPT, _T.TYPE_MESSAGE, "SavedBareConcreteFunction"),
        ("captured_tensor", 12, _OPT, _T.TYPE_MESSAGE, "CapturedTensor"),
    ],
    "SavedFunction": [("concrete_functions", 1, _REP, _T.TYPE_STRING, "")],
    "SavedBareConcreteFunction": [("concrete_function_name", 1, _OPT, _T.TYPE_STRING, "")],
    "CapturedTensor": [("concrete_function", 2, _OPT, _T.TYPE_STRING, "")],
}
_MAP_ENTRIES = {"NodeDef.AttrEntry", "NameAttrList.AttrEntry", "SavedObjectGraph.ConcreteFunctionsEntry"}


def _message_classes() -> dict[str, type]:
    """Message classes for the schema above, in a private descriptor pool."""
    file = descriptor_pb2.FileDescriptorProto(name=_PROTO, package="stages_check", syntax="proto3")
    nested: dict[str, descriptor_pb2.DescriptorProto] = {}
    for full_name, fields in _MESSAGES.items():
        outer, _, inner = full_name.partition(".")
        if inner:
            message = nested[outer].nested_type.add(name=inner)
            if full_name in _MAP_ENTRIES:
                message.options.map_entry = True
        else:
            message = file.message_type.add(name=outer)
            nested[outer] = message
        for name, number, label, kind, type_name in fields:
            field = message.field.add(name=name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = f".stages_check.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"stages_check.{name}"))
        for name in ("SavedModel",)
    }


_CLASSES = _message_classes()


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def _attr_values(attrs) -> Iterator:
    """Every AttrValue in a node's attribute map, nested function attributes included."""
    stack = list(attrs.values())
    while stack:
        value = stack.pop()
        yield value
        if value.HasField("func"):
            stack.extend(value.func.attr.values())
        if value.HasField("list"):
            for func in value.list.func:
                stack.extend(func.attr.values())


def _called(node) -> set[str]:
    """Names of the functions a node calls through its attributes."""
    names = set()
    for value in _attr_values(node.attr):
        if value.HasField("func"):
            names.add(value.func.name)
        if value.HasField("list"):
            names.update(func.name for func in value.list.func)
    return names


def _constants(node) -> Iterator:
    for value in _attr_values(node.attr):
        if value.HasField("tensor"):
            yield value.tensor
        if value.HasField("list"):
            yield from value.list.tensor


def _elements(tensor) -> int:
    count = 1
    for dim in tensor.tensor_shape.dim:
        if dim.size < 0:
            return -1
        count *= dim.size
        if count > MAX_CONSTANT_ELEMENTS:
            return count
    return count


def _problem(node, where: str, allowed: frozenset[str], functions: set[str]) -> str | None:
    op = node.op
    if op not in allowed and op not in functions:
        return f"op '{shown(op, 80)}' (node '{shown(node.name, 80)}') in {where} is not one an inference network needs"
    unknown = sorted(name for name in _called(node) if name not in functions)
    if unknown:
        return f"node '{shown(node.name, 80)}' in {where} calls '{shown(unknown[0], 80)}', which the function library lacks"
    for tensor in _constants(node):
        elements = _elements(tensor)
        if elements < 0 or elements > MAX_CONSTANT_ELEMENTS:
            return (
                f"node '{shown(node.name, 80)}' in {where} holds a constant of "
                f"{'negative' if elements < 0 else elements} elements (at most {MAX_CONSTANT_ELEMENTS})"
            )
    return None


def _object_graph_functions(graph) -> set[str]:
    """Every function name the object graph refers to: the functions TensorFlow may call."""
    names = set(graph.concrete_functions.keys())
    for node in graph.nodes:
        names.update(node.function.concrete_functions)
        if node.HasField("bare_concrete_function"):
            names.add(node.bare_concrete_function.concrete_function_name)
        if node.HasField("captured_tensor"):
            names.add(node.captured_tensor.concrete_function)
    names.discard("")
    return names


def check_graph(data: bytes, source: str) -> None:
    """Refuse (PipelineError naming op, node and function) a saved_model.pb outside the allow-list."""
    model = _CLASSES["SavedModel"]()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise PipelineError(
            f"{source}: not a readable SavedModel graph ({shown(str(exc), 120)}); fetch it again"
        ) from None
    if len(model.meta_graphs) != 1 or not model.meta_graphs[0].HasField("object_graph_def"):
        raise PipelineError(
            f"{source}: refused: expected one MetaGraph with an object graph, as tf.keras writes (found "
            f"{len(model.meta_graphs)} MetaGraph(s)); a TF1-style SavedModel runs graph ops of its own when it loads"
        )
    meta = model.meta_graphs[0]
    library = meta.graph_def.library.function
    functions = {function.signature.name for function in library}
    if len(functions) != len(library):
        raise PipelineError(f"{source}: refused: the function library defines a function name twice")
    exempt = {name for name in functions if _SAVE_RESTORE.match(name)}
    called_by_objects = _object_graph_functions(meta.object_graph_def)
    unknown = sorted(called_by_objects - functions)
    if unknown:
        raise PipelineError(
            f"{source}: refused: the object graph refers to '{shown(unknown[0], 80)}', which the function library lacks"
        )
    reached = sorted(called_by_objects & exempt)
    if reached:
        raise PipelineError(
            f"{source}: refused: the object graph calls the checkpoint function '{shown(reached[0], 80)}'"
        )
    for node in meta.graph_def.node:
        problem = _problem(node, "the top-level graph", INFERENCE_OPS, functions)
        if problem:
            raise PipelineError(f"{source}: refused: {problem}; nothing was loaded")
    for function in library:
        name = function.signature.name
        is_exempt = name in exempt
        where = f"function '{shown(name, 80)}'"
        for node in function.node_def:
            problem = _problem(node, where, SAVE_RESTORE_OPS if is_exempt else INFERENCE_OPS, functions)
            if problem:
                raise PipelineError(f"{source}: refused: {problem}; nothing was loaded")
            calls = (_called(node) | ({node.op} if node.op in functions else set())) & exempt
            if calls:
                raise PipelineError(
                    f"{source}: refused: {where} calls the checkpoint function '{shown(sorted(calls)[0], 80)}'; nothing was loaded"
                )


def check_savedmodel(folder: Path) -> None:
    """Check `folder/saved_model.pb` before any TensorFlow or tf2onnx call on `folder`."""
    path = Path(folder) / "saved_model.pb"
    data = read_bounded(
        path,
        MAX_SAVED_MODEL_BYTES,
        "SavedModel graph of this pipeline",
        "; the SavedModel is incomplete, fetch it again",
    )
    check_graph(data, str(path))
