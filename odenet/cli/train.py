"""Subcommands about networks: ``train``, ``evaluate``, ``stability``.

Their defaults are read from :class:`~odenet.models.ModelConfig`, :class:`~odenet.training.TrainSettings`
and the per-data-set :data:`~odenet.training.DATA_DEFAULTS`; their choices from :mod:`odenet.options`.
torch is imported when a command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from odenet.cli.arguments import (
    add_choice,
    add_field,
    add_step,
    data_argument,
    default_of,
    finite,
    param_argument,
    params_with_step,
    positive,
)
from odenet.errors import CheckpointError, ConvergenceError
from odenet.ir import format_scheme
from odenet.library import load
from odenet.models.config import ModelConfig
from odenet.options import (
    Activation,
    DataName,
    Family,
    Layout,
    Memory,
    Optimizer,
    Schedule,
    SolverMethod,
    StabilityTarget,
    choices,
)
from odenet.training.settings import DATA_DEFAULTS, FILE_DEFAULTS, TrainSettings, default_stages

__all__ = ["add_commands"]


def _convergence_flags(error: ConvergenceError, solver: str | None, step: float | None) -> str | None:
    """The flags of ``odenet train`` that act on a solve that did not converge (its message's advice
    names Solver options, max_iter and tol, which a command line does not set); None for a solve no
    flag acts on."""
    if error.solve not in ("step", "adjoint", "rebuild"):
        return None
    first = "--memory checkpoint" if error.solve == "rebuild" else "--solver newton"
    if first == "--solver newton" and solver == "newton":
        first = "--solver anderson"
    if step is None:  # a scheme without a step parameter
        return first
    return f"{first}, or a smaller --step than {step:g}"


def _cmd_train(args: argparse.Namespace) -> int:
    from odenet.training import load_data, train
    from odenet.training.data import file_layout, is_data_file
    from odenet.training.defaults import scheme_defaults

    scheme = load(args.scheme)
    data = None
    if is_data_file(args.data):  # the user's arrays: the layout is theirs
        data = load_data(args.data, args.layout, args.train_fraction, args.seed, args.validation)
        layout = file_layout(data)
        defaults = FILE_DEFAULTS[layout]
        chosen = scheme_defaults(scheme, None, layout)
    else:
        defaults = DATA_DEFAULTS[args.data]
        layout = args.layout or defaults.layout
        chosen = scheme_defaults(scheme, args.data, layout)
    if args.explain_defaults:
        print(_explain(scheme, chosen, args.data))
        return 0
    params = params_with_step(scheme, dict(args.param or []), args.step)
    if chosen.step is not None and scheme.step not in params:
        params[scheme.step] = chosen.step
    if data is None:
        data = load_data(args.data, layout, args.train_fraction, args.seed, args.validation)
    config = ModelConfig(
        scheme=format_scheme(scheme),
        input_shape=data.input_shape,
        outputs=data.outputs,
        layout=layout,
        family=args.family or chosen.family,
        activation=args.activation,
        width=args.width or defaults.width,
        hidden=args.hidden,
        depth=args.depth,
        stages=args.stages or default_stages(layout),
        memory=args.memory,
        shared=args.shared,
        smooth_init=args.smooth_init,
        params=params,
        stem=defaults.stem if args.stem is None else args.stem,
        head=defaults.head if args.head is None else args.head,
        contraction=args.contraction,
        solver=args.solver,
    )
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=chosen.lr if args.lr is None else args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        schedule=args.schedule,
        smoothness=args.smoothness,
        stability_penalty=args.stability_penalty,
        stability_target=args.stability_target,
        seed=args.seed,
        device=args.device,
    )
    out = Path(args.out or f"runs/{scheme.name}-{Path(args.data).stem}")
    info = {"name": data.name, "layout": layout, "train_fraction": args.train_fraction, "seed": args.seed}
    if args.validation:
        info["validation"] = args.validation
    from odenet.training.distributed import process_group

    try:
        with process_group(settings.device) as group:  # under torchrun: DistributedDataParallel
            _, metrics = train(config, data, settings, out=out, data_info=info, resume=args.resume)
    except ConvergenceError as exc:  # its advice names Solver options: add the flags that act on it
        flags = _convergence_flags(exc, args.solver, params.get(scheme.step, chosen.step_value(scheme)))
        if flags is None:
            raise
        raise ConvergenceError(
            f"{str(exc).rstrip('.')}. Flags of odenet train that may help: {flags}",
            exc.layer,
            exc.residual,
            exc.iterations,
            exc.solve,
        ) from exc
    if not group.main:
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    else:
        print(_metrics_line(metrics))
        if not metrics.get("complete"):  # a finished run resumed writes nothing
            print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'}")
    return 0


def _explain(scheme, chosen, data: str) -> str:
    """What ``odenet train SCHEME --data DATA`` chooses when not told, and why."""
    step = chosen.step_value(scheme)
    origin = f"from {chosen.like}, the library scheme it resembles" if chosen.like else chosen.origin(data)
    lines = [
        f"training defaults for {scheme.name} on {data} ({origin})",
        f"  --family {chosen.family}",
        f"  --lr {chosen.lr:g}",
        f"  memory-saving mode: --memory {chosen.memory_saving}",
    ]
    if step is not None:
        lines.append(f"  --step {step:g}  ({scheme.step})")
    lines += [f"  why: {reason}" for reason in chosen.reasons]
    return "\n".join(lines)


def _metrics_line(metrics: dict) -> str:
    held_out = metrics.get("held_out", "test")
    parts = [f"{held_out} loss {metrics['test_loss']:.4f}"]
    if metrics.get("test_accuracy") is not None:
        parts.insert(0, f"{held_out} accuracy {100 * metrics['test_accuracy']:.1f}%")
    if "seconds" in metrics:
        parts.append(f"{metrics['seconds']:.1f} s")
    if "peak_memory_mb" in metrics:
        parts.append(f"peak memory {metrics['peak_memory_mb']:.0f} MiB")
    return ", ".join(parts)


def _checkpoint_data(content: dict, model):
    from odenet.training import load_data
    from odenet.training.data import is_data_file

    info = content.get("data") or {}
    name = info.get("name")
    if not isinstance(name, str) or not (name in choices(DataName) or is_data_file(name)):
        raise CheckpointError(f"the checkpoint names no data set odenet knows (data = {info!r})")
    if is_data_file(name):  # the user's file, at the path it was trained from
        return load_data(name, None, 1.0, int(info.get("seed", 0)))
    return load_data(name, model.config.layout)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from odenet.training import evaluate, load_checkpoint

    model, content = load_checkpoint(args.checkpoint)
    data = _checkpoint_data(content, model)
    result = evaluate(model, data.x_test, data.y_test, data.task)
    metrics = {
        "scheme": model.scheme.name,
        "data": data.name,
        "test_examples": len(data.x_test),
        "test_loss": result["loss"],
        "test_accuracy": result["accuracy"],
    }
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(
            f"{args.checkpoint}: scheme {model.scheme.name}, {data.name} ({len(data.x_test)} test examples)"
        )
        print(_metrics_line(metrics))
    return 0


def _cmd_stability(args: argparse.Namespace) -> int:
    from odenet.models.spectra import default_samples, trained_stability
    from odenet.report.trained import verdict
    from odenet.training import load_checkpoint

    if args.input is not None:
        result = _user_stability(args)
    else:
        model, content = load_checkpoint(args.checkpoint)
        data = _checkpoint_data(content, model)
        samples = args.samples or default_samples(model, data.x_test[:1])
        result = trained_stability(model, data.x_test[:samples])
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"{args.checkpoint}: scheme {result.scheme.name}, {len(result.layers)} layers")
        print(verdict(result))
    if args.report is not None:
        from odenet.report.trained import write_trained_report

        print(f"wrote {write_trained_report(result, args.report)}", file=sys.stderr)
    return 0


def _user_stability(args: argparse.Namespace):
    """``odenet stability MODEL.pt --input X.pt --trust-pickle``: a block the user saved with
    ``torch.save`` (or a model holding one), at the inputs in X.pt (the block's input, or the
    model's; a tensor, or a dict with ``x`` and the block's keyword ``context``)."""
    import torch

    from odenet.models.spectra import EXACT_LIMIT, trained_stability
    from odenet.nn import SchemeBlock
    from odenet.training.checkpoint import weights_only

    if not args.trust_pickle:
        raise CheckpointError(
            f"{args.checkpoint}: reading a module saved with torch.save unpickles it, which runs code from "
            "the file; add --trust-pickle if you trust it"
        )
    module = _torch_load(args.checkpoint, weights_only=False)
    refusal = weights_only(args.checkpoint, module)
    if refusal is not None:
        raise CheckpointError(f"{refusal}; save the block or the model itself (torch.save(block))")
    inputs = _torch_load(args.input, weights_only=True)
    x, context = inputs, {}
    if isinstance(inputs, dict):
        x, context = inputs.get("x"), inputs.get("context", {})
    if not isinstance(x, torch.Tensor) or not isinstance(context, dict):
        raise CheckpointError(
            f"{args.input}: expected a tensor, or a dict with a tensor 'x' and a dict 'context'"
        )
    if isinstance(module, SchemeBlock):
        block, inside = module, None
    else:
        blocks = [(n, m) for n, m in getattr(module, "named_modules", list)() if isinstance(m, SchemeBlock)]
        found = [(n, m) for n, m in blocks if args.block in (None, n)]
        kind, names = type(module).__name__, ", ".join(n for n, _ in blocks)
        if not blocks:
            raise CheckpointError(f"{args.checkpoint}: a {kind}, with no odenet block (odenet.compile) in it")
        if args.block is not None and not found:
            raise CheckpointError(
                f"{args.checkpoint}: no block named {args.block!r}; the {kind}'s blocks: {names}"
            )
        if len(found) > 1:
            raise CheckpointError(
                f"{args.checkpoint}: a {kind} holding compiled blocks: {names}; name the one to judge with "
                "--block NAME"
            )
        if context:
            raise CheckpointError(
                f"{args.input}: a context is for a block saved alone; with a model, its forward pass "
                "computes the block's context from the model's input"
            )
        block, inside = found[0][1], module
    samples = args.samples or (16 if x[0].numel() <= EXACT_LIMIT else 4)
    if inside is None:
        return trained_stability(block, x, context=context, samples=samples)
    return trained_stability(inside, x, block=block, samples=samples)


def _torch_load(path: str, weights_only: bool):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:
        from odenet.errors import plain_message

        first = plain_message(str(exc)).splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "Can't get attribute" in first:
            hint = (
                ": the classes of a pickled module must be importable where it is read; define them in a "
                "module of your own (not in a script's __main__) and run from where it imports"
            )
        raise CheckpointError(f"{path}: torch.load could not read it ({first}){hint}") from None


def add_commands(commands) -> None:
    """Register the subcommands on ``commands`` (argparse's subparsers)."""
    _add_train(commands)
    p = commands.add_parser("evaluate", help="the test metrics of a checkpoint written by 'odenet train'")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_evaluate)

    p = commands.add_parser(
        "stability", help="a trained network's layer Jacobian spectra against the scheme's stability region"
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument(
        "--samples", type=positive, help="test inputs to linearize at (default 16, or 4 above 256 dims)"
    )
    p.add_argument("--json", action="store_true", help="print the per-layer facts as JSON")
    p.add_argument("--report", metavar="DIR", help="write report.md and spectra.png")
    p.add_argument(
        "--input",
        metavar="X.pt",
        help="for a block saved with torch.save (or a model holding one): its input, a tensor or a dict "
        "with 'x' and the block's keyword 'context' (for a model: the model's input)",
    )
    p.add_argument("--block", metavar="NAME", help="which block of the model to judge (its module name)")
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow unpickling the module (runs code from the file)"
    )
    p.set_defaults(run=_cmd_stability)


def _model(name: str):
    return default_of(ModelConfig, name)


def _training(name: str):
    return default_of(TrainSettings, name)


def _add_train(commands) -> None:
    """``odenet train``: what to train on, then the network's, the training's and the output's options."""
    model = _model
    p = commands.add_parser(
        "train", help="train a network built from a scheme on a data set; write a checkpoint and metrics"
    )
    p.add_argument("scheme", metavar="SCHEME")
    p.add_argument(
        "--data",
        type=data_argument,
        default=choices(DataName)[0],
        metavar="DATA",
        help=f"a bundled data set ({', '.join(choices(DataName))}; default %(default)s) or a file of "
        "your own: PATH.npz or PATH.pt with arrays x, y (and optionally x_test, y_test)",
    )
    add_field(p, "--depth", ModelConfig, "depth", "layers per stage", positive)
    add_field(p, "--epochs", TrainSettings, "epochs", "passes over the training set", positive)
    add_choice(p, "--memory", Memory, "memory mode", default=model("memory"))
    add_field(p, "--seed", TrainSettings, "seed", "seed of the weights, batches and subset", int)
    p.add_argument(
        "--out", metavar="DIR", help="where checkpoint.pt and metrics.json go (default runs/SCHEME-DATA)"
    )
    _network_options(p)
    _training_options(p)
    _output_options(p)
    p.set_defaults(run=_cmd_train)


def _network_options(p) -> None:
    """How the network is built (ModelConfig's fields)."""
    model = _model
    per_data = ", ".join(f"{name} {d.layout}" for name, d in DATA_DEFAULTS.items())
    add_choice(p, "--layout", Layout, f"vectors or images (default per data set: {per_data})")
    add_choice(
        p,
        "--family",
        Family,
        "residual functions: mlp, bn (conv-BN-ReLU-conv), chang K^T s(K y + b), antisymmetric "
        "(default per scheme: see --explain-defaults)",
    )
    add_choice(p, "--activation", Activation, "activation of the residual functions", model("activation"))
    p.add_argument(
        "--width",
        type=positive,
        help="features or channels per state in stage 1 (default per data set: "
        + ", ".join(f"{name} {d.width}" for name, d in DATA_DEFAULTS.items())
        + ")",
    )
    p.add_argument("--hidden", type=positive, help="hidden size of the residual functions (default width)")
    p.add_argument(
        "--contraction",
        type=float,
        metavar="C",
        help="spectrally normalized residual functions with Lipschitz constant <= C in (0, 1) (mlp and "
        "chang families): an explicit scheme whose inverse is a fixed point (euler, heun) can then train "
        "with --memory reversible",
    )
    add_choice(p, "--solver", SolverMethod, "how implicit layers solve their steps", model("solver"))
    p.add_argument(
        "--stages",
        type=positive,
        help=f"stages, with downsampling between (default {default_stages('conv')} conv, "
        f"{default_stages('mlp')} mlp)",
    )
    p.add_argument("--shared", action="store_true", help="one set of residual functions for all layers")
    p.add_argument(
        "--smooth-init",
        action="store_true",
        help="each layer its own residual functions, started as copies of one set (weights constant in "
        "depth), then trained freely",
    )
    p.add_argument(
        "--param", metavar="NAME=VALUE", type=param_argument, action="append", help="scheme parameter"
    )
    add_step(p)
    for flag, what in (("stem", "input layer"), ("head", "output layer")):
        without = [name for name, d in DATA_DEFAULTS.items() if not getattr(d, flag)]
        p.add_argument(
            f"--{flag}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{what} (default on, except for {', '.join(without)})",
        )
    p.add_argument(
        "--train-fraction", type=float, default=1.0, help="share of the training set used (default 1)"
    )
    p.add_argument(
        "--validation",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="hold this share of each class of the training set out and score on it instead of the test "
        "set, which is then never read (for tuning; the split is the same for every --seed)",
    )


def _training_options(p) -> None:
    """How it is trained (TrainSettings' fields)."""
    training = _training
    add_field(p, "--batch-size", TrainSettings, "batch_size", "examples per batch", positive)
    p.add_argument("--lr", type=finite, help="learning rate (default per scheme: see --explain-defaults)")
    add_field(p, "--weight-decay", TrainSettings, "weight_decay", "weight decay", float)
    add_choice(p, "--optimizer", Optimizer, "adam, or sgd with momentum 0.9", training("optimizer"))
    add_choice(p, "--schedule", Schedule, "learning-rate schedule", training("schedule"))
    add_field(
        p, "--smoothness", TrainSettings, "smoothness", "weight of the time-smoothness regularizer", float
    )
    p.add_argument(
        "--stability-penalty",
        type=finite,
        default=default_of(TrainSettings, "stability_penalty"),
        metavar="WEIGHT",
        help="weight of a regularizer keeping each layer's h*lambda (power-iteration estimates on its "
        "Jacobian) inside the scheme's stability region (default 0: off; see --stability-target)",
    )
    add_choice(
        p,
        "--stability-target",
        StabilityTarget,
        "what --stability-penalty bounds: each function's Jacobian against the real stability interval, "
        "or the growth per step of each layer's linearized step",
        training("stability_target"),
    )
    add_field(p, "--device", TrainSettings, "device", "torch device")


def _output_options(p) -> None:
    """What the run prints and writes."""
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument(
        "--explain-defaults",
        action="store_true",
        help="print the defaults this scheme gets (family, learning rate, step, memory-saving mode) and why",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint is in --out (same options), to the same final weights",
    )
