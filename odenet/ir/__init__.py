"""The symbolic intermediate representation: what a scheme is, independent of any text or framework.

* :mod:`~odenet.ir.symbols`: names, values of states at time steps (``x[n-1]``), function calls;
* :mod:`~odenet.ir.scheme`: the immutable :class:`Scheme` and its parts;
* :mod:`~odenet.ir.graph`: one step's data flow;
* :mod:`~odenet.ir.printing`: a scheme back to the scheme language (``format_scheme``);
* :mod:`~odenet.ir.reversal`: the reversed-time convention of inverse steps.

Nothing here imports the parser or torch.
"""

from __future__ import annotations

from odenet.ir.printing import format_expr, format_number, format_scheme
from odenet.ir.scheme import Equation, FunctionSymbol, Param, Scheme
from odenet.ir.symbols import (
    MAX_LAG,
    RESERVED_NAMES,
    SCALAR_FUNCTIONS,
    function_calls,
    history_depths,
    parse_value,
    value,
)

__all__ = [
    "MAX_LAG",
    "RESERVED_NAMES",
    "SCALAR_FUNCTIONS",
    "Equation",
    "FunctionSymbol",
    "Param",
    "Scheme",
    "format_expr",
    "format_number",
    "format_scheme",
    "function_calls",
    "history_depths",
    "parse_value",
    "value",
]
