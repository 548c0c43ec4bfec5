"""Walking an ONNX graph with its subgraphs (If branches, Scan and Loop bodies), for tests that
check every node or name of a preprocessing graph, not only the top level."""

from __future__ import annotations

from collections.abc import Iterator

import onnx


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        yield from attribute.graphs


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of the graph and of its subgraphs, depth first."""
    for node in graph.node:
        yield node
        for subgraph in subgraphs(node):
            yield from all_nodes(subgraph)


def all_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every initializer of the graph and of its subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        for subgraph in subgraphs(node):
            yield from all_initializers(subgraph)
