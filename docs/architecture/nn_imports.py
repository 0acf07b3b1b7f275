"""Draw the import graph of ``odenet.nn`` (docs/architecture.md): one box per module, an arrow from
each module to the modules it imports, importers above what they import.

Run: python docs/architecture/nn_imports.py OUT.png [TITLE]
(with PYTHONPATH pointing at another checkout it draws that one: the picture of an older house).
"""

from __future__ import annotations

import sys

import grimp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402


def nn_graph() -> nx.DiGraph:
    imports = grimp.build_graph("odenet", include_external_packages=False)
    modules = sorted(m for m in imports.modules if m.startswith("odenet.nn.") or m == "odenet.nn")
    modules = [m for m in modules if m != "odenet.nn"]  # the package's re-exports
    graph = nx.DiGraph()
    for module in modules:
        graph.add_node(module.removeprefix("odenet.nn."))
        for target in imports.find_modules_directly_imported_by(module):
            if target in modules and target != module:
                graph.add_edge(module.removeprefix("odenet.nn."), target.removeprefix("odenet.nn."))
    return graph


def draw(graph: nx.DiGraph, path: str, title: str) -> None:
    depth = {}
    for node in reversed(list(nx.topological_sort(graph))):  # imported modules first
        depth[node] = 1 + max((depth[t] for t in graph.successors(node)), default=-1)
    for node, level in depth.items():
        graph.nodes[node]["level"] = level
    position = nx.multipartite_layout(graph, subset_key="level", align="horizontal")
    position = {n: (x * 3.0, y) for n, (x, y) in position.items()}
    figure, axes = plt.subplots(figsize=(11, 1.2 + 0.9 * (max(depth.values()) + 1)))
    nx.draw_networkx_edges(
        graph, position, ax=axes, arrows=True, arrowsize=10, edge_color="#888888", node_size=2600, width=0.8
    )
    nx.draw_networkx_labels(
        graph,
        position,
        ax=axes,
        font_size=8,
        bbox={"boxstyle": "round", "facecolor": "#eef3fb", "edgecolor": "#4a6fa5"},
    )
    axes.set_title(
        f"{title}: {graph.number_of_nodes()} modules, {graph.number_of_edges()} imports "
        "(arrows point at what a module imports)",
        fontsize=10,
    )
    axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    draw(nn_graph(), sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "odenet.nn")
