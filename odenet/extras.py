"""Optional dependencies: what each is for and which extra installs it.

The core (parse, analyze, compile) needs torch, sympy, numpy, networkx and lark only. Figures need
matplotlib (extra ``plot``); the bundled digits data set, the generated MNIST-1D and the Arnoldi
estimates of wide trained layers need scikit-learn, mnist1d and scipy (extra ``train``);
``pip install "odenet-schemes[all]"`` installs both.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from odenet.errors import MissingDependencyError

__all__ = ["EXTRAS", "require"]

# module -> (distribution, extra)
EXTRAS = {
    "matplotlib": ("matplotlib", "plot"),
    "sklearn": ("scikit-learn", "train"),
    "scipy": ("scipy", "train"),
    "mnist1d": ("mnist1d", "train"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a submodule such as ``scipy.sparse.linalg`` is fine), or raise
    :class:`~odenet.errors.MissingDependencyError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.partition(".")[0]
        distribution, extra = EXTRAS[top]
        raise MissingDependencyError(
            f"{purpose} needs {distribution}, which is not installed: "
            f'pip install "odenet-schemes[{extra}]" (or "odenet-schemes[all]")'
        ) from None
