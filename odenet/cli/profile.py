"""``odenet profile``: one training step of a library network in every memory mode, side by side.

Each mode's network is built with the same seed (the same weights) on a batch of the data set, and
measured by :func:`odenet.nn.profiling.profile`: activations saved for backward, what the mode keeps
besides, parameters, gradients, the step's peak of live tensor memory, and its time.
"""

from __future__ import annotations

import argparse
import json
from typing import get_args

from odenet.cli.arguments import data_argument, default_of, positive
from odenet.ir import format_scheme
from odenet.library import load
from odenet.models.config import ModelConfig
from odenet.options import DataName, Memory, choices

__all__ = ["add_commands"]

MIB = 2**20


def _cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from odenet.errors import ConvergenceError, UnsupportedSchemeError
    from odenet.models import build_model
    from odenet.nn.profiling import profile
    from odenet.training import load_data
    from odenet.training.defaults import scheme_defaults
    from odenet.training.settings import DATA_DEFAULTS, default_stages

    scheme = load(args.scheme)
    modes = list(get_args(Memory)) if "all" in args.memory else args.memory
    defaults = DATA_DEFAULTS[args.data]
    data = load_data(args.data, defaults.layout)
    chosen = scheme_defaults(scheme, args.data, defaults.layout)
    params = {} if chosen.step is None else {scheme.step: chosen.step}
    x = data.x_train[: args.batch].clone()  # its own storage: not a view of the whole data set
    rows = []
    for depth, memory in ((d, m) for d in args.depth for m in modes):
        config = ModelConfig(
            scheme=format_scheme(scheme),
            input_shape=data.input_shape,
            outputs=data.outputs,
            layout=defaults.layout,
            family=chosen.family,
            width=args.width or defaults.width,
            depth=depth,
            stages=default_stages(defaults.layout),
            memory=memory,
            params=params,
            stem=defaults.stem,
            head=defaults.head,
        )
        torch.manual_seed(0)
        try:
            model = build_model(config)
        except UnsupportedSchemeError as error:
            rows.append({"depth": depth, "memory": memory, "refused": str(error).split(";")[0]})
            continue
        try:
            measured = profile(model, x).to_json()
        except ConvergenceError as error:  # a mode that fails at these weights: its row says so
            rows.append({"depth": depth, "memory": memory, "failed": str(error).split(". ")[0]})
            continue
        rows.append({"depth": depth, "memory": memory, **measured})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{scheme.name}: {args.data}, batch {len(x)}, one training step "
        f"(MiB; peak: live tensor memory beyond the step's start)"
    )
    print("| depth | memory | activations | kept | parameters | gradients | peak | step (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "refused" in row or "failed" in row:
            why = f"not offered: {row['refused']}" if "refused" in row else f"failed: {row['failed']}"
            print(f"| {row['depth']} | {row['memory']} | {why} | | | | | |")
            continue
        keys = ("activation_bytes", "kept_bytes", "parameter_bytes", "gradient_bytes", "peak_bytes")
        cells = " | ".join(f"{row[k] / MIB:.2f}" for k in keys)
        print(f"| {row['depth']} | {row['memory']} | {cells} | {1e3 * row['seconds']:.1f} |")
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser(
        "profile",
        help="memory and time of one training step of a library network in each memory mode",
        description="memory and time of one training step of a library network in each memory mode",
    )
    p.add_argument("scheme", metavar="SCHEME")
    p.add_argument(
        "--memory",
        nargs="+",
        default=["all"],
        choices=["all", *choices(Memory)],
        help="the modes to measure (default: all)",
    )
    p.add_argument(
        "--data",
        type=data_argument,
        default=choices(DataName)[0],
        metavar="DATA",
        help=f"the bundled data set whose shapes the network takes ({', '.join(choices(DataName))})",
    )
    p.add_argument(
        "--depth",
        type=positive,
        nargs="+",
        default=[default_of(ModelConfig, "depth")],
        help="layers per stage; several give one row per depth and mode (default %(default)s)",
    )
    p.add_argument("--width", type=positive, help="features or channels per state (default per data set)")
    p.add_argument("--batch", type=positive, default=256, help="examples in the step (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(run=_cmd_profile)
