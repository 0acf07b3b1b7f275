"""Training a model built from a scheme, with per-epoch metrics and atomic checkpoints.

``train`` runs mini-batch training (Adam or SGD with momentum, cosine learning-rate decay by
default), evaluates the whole train and test sets after every epoch (in eval mode, so BatchNorm
uses its running statistics), and, given an output folder, rewrites ``checkpoint.pt`` and
``metrics.json`` atomically after every epoch, both for the same epoch: an interrupted run leaves
the last finished epoch. One run writes to a folder at a time (an advisory lock).

A loss or metric that is not finite stops the run: the checkpoint keeps the last finite epoch,
``metrics.json`` (valid JSON: no NaN) records the divergence, and the error names the likely cause,
from the layers' Jacobian spectra at the last finite weights against the scheme's stability region.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal, TextIO

import torch
from torch.nn import functional as F  # noqa: N812

from odenet.errors import ConfigError, TrainingDivergedError
from odenet.files import atomic_path, finite_json, output_lock
from odenet.models.classifier import TRAINING_BYTES_PER_PARAMETER, Classifier, build_model
from odenet.models.config import ModelConfig
from odenet.nn.memory import peak_rss_mib
from odenet.training.checkpoint import checkpoint_content
from odenet.training.data import Dataset
from odenet.training.distributed import processes
from odenet.training.settings import TrainSettings

__all__ = ["evaluate", "train"]


def _loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(output, target)
    return F.mse_loss(output, target)


@torch.no_grad()
def evaluate(model: Classifier, x: torch.Tensor, y: torch.Tensor, task: str, batch: int = 1024) -> dict:
    """Mean loss and accuracy (None for a regression) of ``model`` in eval mode on ``(x, y)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch].to(device), y[start : start + batch].to(device)
        out = model(xb)
        total_loss += float(_loss(task, out, yb)) * len(xb)
        if task == "classification":
            correct += int((out.argmax(dim=1) == yb).sum())
    model.train(was_training)
    accuracy = correct / len(x) if task == "classification" else None
    return {"loss": total_loss / len(x), "accuracy": accuracy}


class _Progress:
    """tqdm's bar for the batches of an epoch on a terminal (when tqdm is installed, as the train
    extra does); on anything else (a file, a pipe, a CI log), one line per epoch only."""

    def __init__(self, stream: TextIO | None, total: int):
        self.stream = stream
        self.total = total
        self.live = stream is not None and stream.isatty()
        self.bar = None

    def update(self, epoch: int, epochs: int, done: int, loss: float) -> None:
        if not self.live:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:  # without the train extra: the epoch lines only
                self.live = False
                return
            self.bar = tqdm(total=self.total, desc=f"epoch {epoch}/{epochs}", file=self.stream, leave=False)
        self.bar.n = done
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=True)

    def line(self, text: str) -> None:
        if self.stream is None:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.stream.write(text + "\n")
        self.stream.flush()


def train(
    config: ModelConfig,
    data: Dataset,
    settings: TrainSettings | None = None,
    out: str | os.PathLike | None = None,
    stream: TextIO | Literal["stderr"] | None = "stderr",
    data_info: dict | None = None,
    resume: bool = False,
) -> tuple[Classifier, dict]:
    """Train a model of ``config`` on ``data``; returns the model and the final metrics (also written
    to ``out/metrics.json``, with the model in ``out/checkpoint.pt``, when ``out`` is given).
    ``settings`` default to ``TrainSettings()``. With ``resume``, a run continues from the
    checkpoint in ``out`` (model, optimizer, schedule, epoch and random states), to the same final
    weights as a run that was never interrupted; config and settings must be the checkpoint's."""
    settings = TrainSettings() if settings is None else settings
    if stream == "stderr":  # the stream of the moment (one bound at import goes stale when replaced)
        stream = sys.stderr
    if tuple(config.input_shape) != data.input_shape or config.outputs != data.outputs:
        raise ConfigError(
            f"the model takes inputs {tuple(config.input_shape)} and gives {config.outputs} outputs; "
            f"data set {data.name} has inputs {data.input_shape} and {data.outputs} outputs"
        )
    out_dir = None if out is None else Path(out)
    if out_dir is not None and processes().main:  # with several processes, rank 0 writes
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
        if not os.access(out_dir, os.W_OK):
            raise ConfigError(f"--out {out_dir}: the folder is not writable")
    if resume and (out_dir is None or not (out_dir / "checkpoint.pt").is_file()):
        raise ConfigError(f"--resume: no checkpoint to resume in {out_dir} (train without --resume first)")
    writes = out_dir is not None and processes().main
    with output_lock(out_dir) if writes else contextlib.nullcontext(), _after_the_batch() as stop:
        return _train(config, data, settings, out_dir, stream, data_info, resume, writes, stop)


@contextlib.contextmanager
def _after_the_batch():
    """Ctrl-C during training stops after the batch in progress (a second Ctrl-C stops at once):
    the handler only raises a flag, which the loop reads after each optimizer step. Installed in the
    main thread only (signals go nowhere else)."""
    import signal
    import threading

    stop = {"asked": False}
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _resume_state(
    out_dir: Path, config: ModelConfig, settings: TrainSettings, data_info: dict | None
) -> dict:
    """The checkpoint's resume fields, after checking that it was written by this very run (its model,
    its settings, and the data it describes: the set, its share, its validation split)."""
    content = torch.load(out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    state = content.get("resume") if isinstance(content, dict) else None
    if state is None:
        raise ConfigError(
            f"--resume: {out_dir / 'checkpoint.pt'} has no resume state (written by an older odenet)"
        )
    if content.get("config") != config.to_json():
        raise ConfigError(f"--resume: the checkpoint in {out_dir} is of another model; give the same options")
    saved_data, wanted_data = content.get("data") or {}, data_info or {}
    other_data = []
    for key in sorted((set(saved_data) | set(wanted_data)) - {"seed"}):  # the seed is a setting
        if key == "validation":  # absent: none
            before, now = saved_data.get(key, 0.0), wanted_data.get(key, 0.0)
        elif key in saved_data and key in wanted_data:  # absent from an older checkpoint: not compared
            before, now = saved_data[key], wanted_data[key]
        else:
            continue
        if before != now:
            other_data.append(f"{key} {before} (now {now})")
    if other_data:
        raise ConfigError(
            f"--resume: the checkpoint in {out_dir} was trained on other data: {', '.join(other_data)}; "
            "give the same options"
        )
    # a field added since the checkpoint was written had its default then
    saved, wanted = {**asdict(TrainSettings()), **content.get("training", {})}, asdict(settings)
    differing = [k for k in wanted if saved.get(k) != wanted[k]]
    if differing == ["epochs"]:
        _check_more_epochs(out_dir, saved, wanted, content["epoch"])
    elif differing:
        options = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)} (now {wanted[k]})" for k in differing)
        raise ConfigError(
            f"--resume: the checkpoint in {out_dir} was trained with other settings: {options}; "
            "give the same options"
        )
    metrics = content.get("metrics") or {}
    return {**state, "state_dict": content["state_dict"], "epoch": content["epoch"], "metrics": metrics}


def _check_more_epochs(out_dir: Path, saved: dict, wanted: dict, done: int) -> None:
    """A run resumed with another ``--epochs``: continued where that is the run ``--epochs N``
    trains from the start (a constant learning rate), refused with the reason otherwise."""
    if wanted["epochs"] < done:
        raise ConfigError(
            f"--resume: the run in {out_dir} has {done} epochs already; --epochs {wanted['epochs']} "
            f"cannot take them back (give --epochs {done} or more, or another --out)"
        )
    if saved["schedule"] == "cosine":
        raise ConfigError(
            f"--resume: the run in {out_dir} was trained for {saved['epochs']} epochs with the cosine "
            f"schedule, which brought the learning rate down to 0 at epoch {saved['epochs']}; continued to "
            f"{wanted['epochs']} it would not be the run --epochs {wanted['epochs']} trains (its schedule "
            "spans all of them from the first). Train afresh with another --out, or train with "
            "--schedule constant, whose runs can be extended"
        )


def _train(config, data, settings, out_dir, stream, data_info, resume=False, writes=True, stop=None):
    """The loop, in phases: the run's parts (:class:`_Run`), a resumed state, then per epoch its
    batches, its evaluation, its record and its files."""
    torch.manual_seed(settings.seed)
    run = _Run(config, data, settings, stream)
    history: list[dict] = []
    start = time.perf_counter()
    metrics: dict = {}
    first = 1
    if resume:
        history, first, seconds = run.resume(out_dir, config, data_info)
        start -= seconds
        if first > settings.epochs:  # a finished run: its metrics as they were written
            run.model.eval()
            return run.model, {**run.finished, "complete": True}
    target = out_dir if writes else None
    last_finite = (first - 1, copy.deepcopy(run.model.state_dict()))
    for epoch in range(first, settings.epochs + 1):

        def diverged(where, value, epoch=epoch, good=last_finite):
            _diverged(config, data, target, history, good, epoch, where, value)

        run.epoch(epoch, stop, diverged)
        train_m = evaluate(run.model, data.x_train, data.y_train, data.task)
        test_m = evaluate(run.model, data.x_test, data.y_test, data.task)
        if not all(math.isfinite(m["loss"]) for m in (train_m, test_m)):
            _diverged(config, data, target, history, last_finite, epoch, "its evaluation", test_m["loss"])
        seconds = time.perf_counter() - start
        row = {"epoch": epoch, **_scores(train_m, test_m), "seconds": seconds}
        history.append(row)
        run.progress.line(_epoch_line(epoch, settings.epochs, train_m, test_m, seconds, data.held_out))
        metrics = run.metrics(epoch, row, history)
        if target is not None:
            info = data_info or {"name": data.name, "held_out": data.held_out}
            run.save(target, info, epoch, metrics, history, seconds)
        last_finite = (epoch, copy.deepcopy(run.model.state_dict()))
    run.model.eval()
    return run.model, metrics


def _scores(train_m: dict, test_m: dict) -> dict:
    return {
        "train_loss": train_m["loss"],
        "train_accuracy": train_m["accuracy"],
        "test_loss": test_m["loss"],
        "test_accuracy": test_m["accuracy"],
    }


class _Run:
    """What one training run holds: the device, the model (wrapped for several processes), its
    optimizer, schedule, sampler and penalty, and the progress printer."""

    def __init__(self, config, data, settings, stream):
        self.config, self.data, self.settings = config, data, settings
        self.finished: dict = {}  # a resumed run's metrics as written (see resume)
        device = torch.device(settings.device)
        if device.type == "cuda" and processes().world > 1:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.model = model = build_model(config, TRAINING_BYTES_PER_PARAMETER).to(device)
        parameters = [p for p in model.parameters() if p.requires_grad]
        group = processes()
        if group.world > 1 and settings.batch_size % group.world:
            raise ConfigError(
                f"--batch-size {settings.batch_size} does not split over {group.world} processes; "
                f"expected a multiple of {group.world}"
            )
        # several processes: gradients averaged over them, each with its share of the batch
        self.network = torch.nn.parallel.DistributedDataParallel(model) if group.world > 1 else model
        self.local_batch = settings.batch_size // group.world
        self.sampler = torch.utils.data.DistributedSampler(
            range(len(data.x_train)),
            num_replicas=group.world,
            rank=group.rank,
            shuffle=True,
            seed=settings.seed,
        )
        if settings.optimizer == "adam":
            self.optimizer = torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                parameters, lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay
            )
        self.batches = math.ceil(len(self.sampler) / self.local_batch)
        self.schedule = None
        if settings.schedule == "cosine":
            self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=settings.epochs * self.batches
            )
        self.progress = _Progress(stream if group.main else None, self.batches)
        self.n_params = sum(p.numel() for p in parameters)
        self.progress.line(
            f"training {config.family} {data.task} network from scheme {model.scheme.name}: "
            f"{config.stages} stage(s) x {config.depth} layers, memory={config.memory}, {self.n_params} "
            f"parameters, {len(data.x_train)} train / {len(data.x_test)} {data.held_out} examples of "
            f"{data.name}"
        )
        self.penalty = None
        if settings.stability_penalty:
            from odenet.models.penalty import GrowthPenalty, StabilityPenalty

            self.penalty = (GrowthPenalty if settings.stability_target == "growth" else StabilityPenalty)(
                model
            )

    def resume(self, out_dir, config, data_info: dict | None) -> tuple[list[dict], int, float]:
        """Load a stopped run's state: (its history, the first epoch to run, its seconds so far)."""
        state = _resume_state(out_dir, config, self.settings, data_info)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        self.finished = {**state["metrics"], "history": list(state["history"])}
        if state["epoch"] >= self.settings.epochs:
            self.progress.line(
                f"the run in {out_dir} is complete: {state['epoch']} of {self.settings.epochs} epochs"
            )
        else:
            self.progress.line(f"resuming from epoch {state['epoch']} of {self.settings.epochs}")
        return list(state["history"]), state["epoch"] + 1, float(state["seconds"])

    def epoch(self, epoch: int, stop, diverged) -> None:
        """One epoch's batches; ``diverged(where, value)`` stops a run whose loss is not finite."""
        model, data, settings = self.model, self.data, self.settings
        model.train()
        self.sampler.set_epoch(epoch)  # the epoch's permutation, the same on every rank
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        running = 0.0
        for b in range(self.batches):
            index = order[b * self.local_batch : (b + 1) * self.local_batch]
            xb, yb = data.x_train[index].to(self.device), data.y_train[index].to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = _loss(data.task, self.network(xb), yb)
            total = loss + settings.smoothness * model.smoothness().to(loss) if settings.smoothness else loss
            if self.penalty is not None:
                total = total + settings.stability_penalty * self.penalty(xb).to(loss)
            total.backward()
            self.optimizer.step()
            if stop is not None and stop["asked"]:
                raise KeyboardInterrupt  # after this batch: the files on disk stay the last finished epoch
            if self.schedule is not None:
                self.schedule.step()
            value = float(loss.detach())
            running = value if b == 0 else 0.9 * running + 0.1 * value
            if not math.isfinite(running):
                diverged(f"batch {b + 1}", running)
            self.progress.update(epoch, settings.epochs, b + 1, running)

    def metrics(self, epoch: int, row: dict, history: list[dict]) -> dict:
        """The run's metrics after ``epoch``: its description, the epoch's row, memory, history."""
        config, data = self.config, self.data
        metrics = {
            "scheme": self.model.scheme.name,
            "data": data.name,
            "task": data.task,
            "memory": config.memory,
            "depth": config.depth,
            "stages": config.stages,
            "parameters": self.n_params,
            "train_examples": len(data.x_train),
            "test_examples": len(data.x_test),
            **({"held_out": data.held_out} if data.held_out != "test" else {}),  # test_* are its scores
            "epochs": epoch,
            **{k: v for k, v in row.items() if k != "epoch"},
            "peak_memory_mb": peak_rss_mib(),
            "history": history,
        }
        if self.device.type == "cuda":
            metrics["cuda_peak_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return metrics

    def save(
        self, out_dir, data_info: dict, epoch: int, metrics: dict, history: list, seconds: float
    ) -> None:
        """The epoch's checkpoint and metrics, renamed into place together."""
        content = checkpoint_content(
            self.model,
            data=data_info,
            training=asdict(self.settings),
            epoch=epoch,
            metrics={k: v for k, v in metrics.items() if k != "history"},
            resume={  # what --resume needs to continue as if never stopped
                "optimizer": self.optimizer.state_dict(),
                "schedule": None if self.schedule is None else self.schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "seconds": seconds,
            },
        )
        with (
            atomic_path(out_dir / "checkpoint.pt") as weights,
            atomic_path(out_dir / "metrics.json") as text,
        ):
            torch.save(content, weights)
            text.write_text(finite_json(metrics, indent=2) + "\n", encoding="utf-8")


def _diverged(config, data, out_dir, history, last_finite, epoch, where, value) -> None:
    """Stop a run whose loss is no longer finite: keep the last finite checkpoint, record the
    divergence in metrics.json, and raise with the likely cause."""
    good_epoch, state = last_finite
    cause = _likely_cause(config, data, state, good_epoch)
    message = f"the loss became {value} at epoch {epoch}, {where}; {cause}"
    if out_dir is not None:
        record = {
            "scheme": config.scheme.split(None, 2)[1] if config.scheme.startswith("scheme ") else None,
            "data": data.name,
            "epochs": good_epoch,
            "diverged": {"epoch": epoch, "where": where, "cause": cause},
            "history": history,
        }
        with atomic_path(out_dir / "metrics.json") as text:
            text.write_text(finite_json(record, indent=2) + "\n", encoding="utf-8")
        if good_epoch:
            message += f"; {out_dir / 'checkpoint.pt'} keeps epoch {good_epoch}"
    raise TrainingDivergedError(message)


def _likely_cause(config, data, state, good_epoch: int) -> str:
    """The layers' h*lambda at the last finite weights against the scheme's stability region: a
    step outside it, or else the learning rate."""
    from odenet.models.spectra import trained_stability

    try:
        model = build_model(config)
        model.load_state_dict(state)
        result = trained_stability(model, data.x_test[:2].to(next(model.parameters()).device))
    except Exception as exc:  # the diagnosis must never hide the divergence itself
        return f"lower the learning rate (--lr) (the stability diagnosis failed: {exc})"
    largest = max((layer.max_abs_eigenvalue * layer.scale for layer in result.layers), default=0.0)
    when = f"at the weights of epoch {good_epoch}" if good_epoch else "at the initial weights"
    unstable = result.unstable_layers
    if unstable:
        return (
            f"{when}, {len(unstable)} of {len(result.layers)} layers have {result.variable} outside the "
            f"scheme's stability region (largest |{result.variable}| = {largest:.3g}): lower the step "
            "(--step) or the learning rate (--lr), or use a family with normalisation (--family)"
        )
    return (
        f"{when}, every layer's {result.variable} lies inside the scheme's stability region "
        f"(largest |{result.variable}| = {largest:.3g}): lower the learning rate (--lr)"
    )


def _epoch_line(epoch: int, epochs: int, train_m: dict, test_m: dict, seconds: float, held_out: str) -> str:
    def part(name: str, m: dict) -> str:
        text = f"{name} loss {m['loss']:.4f}"
        if m["accuracy"] is not None:
            text += f" acc {100 * m['accuracy']:.1f}%"
        return text

    return f"epoch {epoch}/{epochs}: {part('train', train_m)} | {part(held_out, test_m)} | {seconds:.1f} s"
