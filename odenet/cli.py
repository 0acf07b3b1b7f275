"""The ``odenet`` command line.

Each subcommand is a function ``_cmd_NAME(args) -> exit code``; errors that odenet raises on
purpose are printed as they are (file, line, column, caret) without a traceback, and give exit 1.
The commands import only what they use, so ``odenet list`` does not load torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import odenet
from odenet.errors import OdenetError, SchemeNotFoundError
from odenet.ir import Scheme
from odenet.language.printer import format_expr, format_number
from odenet.library import describe, library_dir, library_names, load, read_scheme_file

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    names = library_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {describe(load(name))}")
    print(f"\n{len(names)} schemes in {library_dir()}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(show_text(load(args.scheme)))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for file in args.files:
        try:
            scheme = read_scheme_file(file)
        except FileNotFoundError:
            print(f"{file}: no such file", file=sys.stderr)
            failed += 1
        except IsADirectoryError:
            print(f"{file}: is a folder, expected a .scheme file", file=sys.stderr)
            failed += 1
        except OdenetError as exc:
            for error in getattr(exc, "errors", [exc]):
                print(error, file=sys.stderr)
            failed += 1
        else:
            print(f"{file}: ok (scheme {scheme.name})")
    if failed:
        print(f"{failed} of {len(args.files)} files have problems", file=sys.stderr)
    return 1 if failed else 0


def _schemes_from(argument: str) -> list[Scheme]:
    """A library name, a .scheme file, or a folder of .scheme files (sorted by name)."""
    path = Path(argument)
    if path.is_dir():
        files = sorted(path.glob("*.scheme"))
        if not files:
            raise SchemeNotFoundError(f"no .scheme files in the folder {argument!r}")
        return [read_scheme_file(f) for f in files]
    return [load(argument)]


def _cmd_analyze(args: argparse.Namespace) -> int:
    import json

    from odenet.analysis import analyze
    from odenet.report.analysis import verdict, write_index, write_report

    params = dict(args.param or [])
    schemes = _schemes_from(args.scheme)
    analyses = [analyze(s, params=params or None) for s in schemes]
    if args.json:
        objects = [a.to_json() for a in analyses]
        print(
            json.dumps(
                objects[0] if len(objects) == 1 and not Path(args.scheme).is_dir() else objects, indent=2
            )
        )
    else:
        for a in analyses:
            print(f"{a.scheme.name}:")
            for line in verdict(a):
                print(f"  - {line}")
    if args.report is not None:
        folder = Path(args.report)
        if len(analyses) == 1 and not Path(args.scheme).is_dir():
            written = write_report(analyses[0], folder)
        else:
            for a in analyses:
                write_report(a, folder / a.scheme.name)
            written = write_index(analyses, folder)
        print(f"wrote {written}", file=sys.stderr)
    return 0


def _param_argument(text: str) -> tuple[str, float]:
    name, sep, number = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, such as h=0.05, not {text!r}") from None


# ---------------------------------------------------------------------------------------------------


def show_text(scheme: Scheme) -> str:
    """What ``odenet show`` prints: the equations and the facts a reader needs to follow them."""
    out = [f"scheme {scheme.name}"]
    if scheme.doc:
        out += ["  " + line for line in scheme.doc.splitlines()]
    kind = "explicit" if scheme.is_explicit else "implicit"
    out += ["", f"step ({kind}):"]
    out += [f"  {eq}" for eq in scheme.steps]
    if not scheme.is_explicit:
        for eq, symbol in scheme.implicit_references:
            out.append(
                f"  implicit: the equation of {eq.target.name} reads {symbol}, not known yet at that point"
            )
    out += ["", "states:"]
    width = max(map(len, scheme.states))
    for state in scheme.states:
        depth = scheme.history[state]
        reads = ", ".join(f"{state}[n{'' if j == 0 else f'-{j}'}]" for j in range(depth + 1))
        roles = [r for r, names in (("input", scheme.inputs), ("output", scheme.outputs)) if state in names]
        out.append(
            f"  {state:<{width}}  history {depth} (reads {reads})"
            + (f"  {', '.join(roles)}" if roles else "")
        )
    if scheme.params:
        out += ["", "params:"]
        for p in scheme.params:
            how = "learnable, one value per layer" if p.learnable else "fixed"
            if p.interval is not None:
                low, high = (format_number(b) for b in p.interval)
                how += f", kept in ({low}, {high})"
            out.append(f"  {p.name} = {format_number(p.default)}  ({how})")
    out += ["", "functions (one sub-network per layer each):"]
    for f in scheme.functions:
        out.append(f"  {f.name}  ({f.arity} argument{'s' if f.arity > 1 else ''})")
    if scheme.init:
        out += [
            "",
            "init (start values; the input sets " + ", ".join(f"{s}[n]" for s in scheme.inputs) + "):",
        ]
        out += [f"  {eq.target.name} = {format_expr(eq.expr)}" for eq in scheme.init]
    out += ["", "dependency graph (each value <- what it is computed from):"]
    graph = scheme.dependency_graph()
    import networkx as nx

    order = list(nx.topological_sort(graph)) if nx.is_directed_acyclic_graph(graph) else list(graph)
    computed = [node for node in order if graph.in_degree(node)]
    width = max(map(len, computed)) if computed else 0
    for node in computed:
        sources = ", ".join(sorted(graph.predecessors(node)))
        out.append(f"  {node:<{width}}  <- {sources}")
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odenet",
        description="Numerical ODE schemes as neural-network architectures: parse, analyze and compile them.",
        epilog="A SCHEME is a library name (see 'odenet list') or a path to a .scheme file.",
    )
    parser.add_argument("--version", action="version", version=f"odenet {odenet.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    p = commands.add_parser("list", help="list the library schemes with their descriptions")
    p.set_defaults(run=_cmd_list)

    p = commands.add_parser("show", help="show a scheme's equations, states, params and data flow")
    p.add_argument("scheme", metavar="SCHEME")
    p.set_defaults(run=_cmd_show)

    p = commands.add_parser(
        "analyze",
        help="order, stability, zero-stability and reversibility of a scheme (or of a folder of schemes)",
    )
    p.add_argument("scheme", metavar="SCHEME", help="a library name, a .scheme file, or a folder of them")
    p.add_argument("--json", action="store_true", help="print the facts as JSON (see docs/analysis.md)")
    p.add_argument(
        "--report", metavar="DIR", help="write report.md and stability.png (and index.md for a folder)"
    )
    p.add_argument(
        "--param",
        metavar="NAME=VALUE",
        type=_param_argument,
        action="append",
        help="use this parameter value instead of the default (repeatable)",
    )
    p.set_defaults(run=_cmd_analyze)

    p = commands.add_parser("check", help="check scheme files; exit 1 and report every problem if any")
    p.add_argument("files", metavar="FILE", nargs="+", type=Path)
    p.set_defaults(run=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except SchemeNotFoundError as exc:
        print(f"odenet: {exc}", file=sys.stderr)
        return 1
    except OdenetError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
