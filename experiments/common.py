"""What the experiment scripts share: training one configuration quietly, and writing results."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from odenet.files import write_text
from odenet.ir import format_scheme
from odenet.library import load
from odenet.models import ModelConfig
from odenet.report.plotting import new_figure, save_figure
from odenet.training import TrainSettings, load_data, train

DOCS = Path(__file__).resolve().parent.parent / "docs" / "experiments"

# A flow of the point itself (experiments a and b): no stem, one small MLP shared by every layer.
POINT_FLOW = dict(family="mlp", hidden=32, shared=True, stem=False, lr=1e-2)
# The digits as images, two stages with downsampling between (experiments e and f).
DIGITS_CONV = dict(layout="conv", stages=2)
# --quick checks the code path, not the numbers: at most this share of the training examples
QUICK_FRACTION = 0.1
_quick = False


def arguments(description: str, keep: bool = False) -> argparse.Namespace:
    """The experiment's options; with ``keep``, also ``--keep`` (reuse the finished runs of an earlier
    results file, train only the missing or failed ones)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code path in seconds")
    if keep:
        parser.add_argument("--keep", action="store_true", help="train only runs missing or failed before")
    parser.add_argument("--out", type=Path, default=DOCS, help=f"where results go (default {DOCS})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    global _quick
    _quick = args.quick
    return args


def run(
    scheme: str,
    data: str,
    *,
    epochs: int,
    seed: int = 0,
    train_fraction: float = 1.0,
    lr: float = 1e-2,
    batch_size: int = 64,
    stability_penalty: float = 0.0,
    stability_target: str = "interval",
    **model,
) -> tuple[object, dict]:
    """Train one configuration (model fields as keywords) and return (model, final metrics)."""
    if _quick:
        train_fraction = min(train_fraction, QUICK_FRACTION)
    dataset = load_data(data, model.get("layout", "mlp"), train_fraction, seed)
    config = model_config(scheme, dataset, **model)
    settings = TrainSettings(
        epochs=epochs,
        seed=seed,
        lr=lr,
        batch_size=batch_size,
        stability_penalty=stability_penalty,
        stability_target=stability_target,
    )
    return train(config, dataset, settings, stream=None)


def model_config(scheme: str, dataset, **model) -> ModelConfig:
    """The config of library scheme ``scheme`` on ``dataset``'s examples and classes (model fields as
    keywords)."""
    return ModelConfig(format_scheme(load(scheme)), dataset.input_shape, dataset.outputs, **model)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_json(path: Path, content) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def accuracy_plot(results: dict, x: str, xlabel: str, path: Path, scale: float = 1.0) -> None:
    """Mean test accuracy (error bars: one standard deviation over seeds) of each network in
    ``results`` ({name: [row, ...]}) against the rows' field ``x`` (times ``scale``), log x axis."""
    fig, ax = new_figure(figsize=(5.5, 4), dpi=100)
    for name, rows in results.items():
        ax.errorbar(
            [scale * r[x] for r in rows],
            [100 * r["mean"] for r in rows],
            yerr=[100 * r["std"] for r in rows],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    save_figure(fig, path)


def train_command(words: list[str], threads: int = 1, out: Path | None = None) -> dict:
    """``odenet train ...`` (``words`` after ``odenet``) in its own process, so that its peak resident
    memory is its own, with ``threads`` threads: its final metrics (plus ``wall_seconds``), or
    ``{"failed": the last line of its error}``. The checkpoint goes to ``out`` (default: nowhere kept)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if _quick and "--train-fraction" not in words:
        words = [*words, "--train-fraction", str(QUICK_FRACTION)]
    with tempfile.TemporaryDirectory() as folder:
        argv = [sys.executable, "-m", "odenet", *words, "--out", str(out or folder), "--json"]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"failed": lines[-1] if lines else f"exit status {done.returncode}", "wall_seconds": wall}
    return {**json.loads(done.stdout), "wall_seconds": wall}


def splice(document: Path, text: str, begin: str, end: str) -> None:
    """Put ``text`` between the markers ``begin`` and ``end`` of ``document`` (which must hold them)."""
    content = document.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        raise SystemExit(f"{document} has no markers {begin} ... {end}")
    write_text(document, pattern.sub(lambda _: f"{begin}\n{text}{end}", content))


def summary(runs: list[dict]) -> dict | None:
    """Test accuracy in % over the runs that did not fail (each a ``train_command`` result): mean,
    sd, how many, how many failed, and their parameters, mean seconds and mean peak RSS; None when
    every run failed."""
    good = [r for r in runs if "failed" not in r]
    if not good:
        return None
    accuracy = [100 * r["test_accuracy"] for r in good]
    return {
        "mean": statistics.fmean(accuracy),
        "sd": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        "seeds": len(good),
        "failed": len(runs) - len(good),
        "parameters": good[0]["parameters"],
        "seconds": statistics.fmean(r["seconds"] for r in good),
        "peak_rss_mib": statistics.fmean(r["peak_memory_mb"] for r in good),
    }


def percent(values: list[float]) -> str:
    """``mean ± sd`` of accuracies (fractions) in percent."""
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:.1f} ± {std:.1f}"
