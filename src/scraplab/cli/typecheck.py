"""Start-up type checks of config values against the annotations of the callables they configure.

Hydra passes command-line values through as written (``optim.lr=abc`` is the string 'abc', ``trainer.max_steps=1.5``
a float), and the callables fail much later (inside the first optimizer step) or, worse, round silently. Only plain
annotations are checked (int, float, bool, str, None and unions/Optionals of them); anything richer is left alone.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Callable

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

_SIMPLE = ("int", "float", "bool", "str", "None", "NoneType")


def _kinds(annotation: Any) -> list[str] | None:
    """The simple type names an annotation allows, or None when it is not a plain (union of) simple type(s)."""
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else (
        annotation.__name__ if isinstance(annotation, type) else str(annotation))
    text = text.replace("typing.", "").replace(" ", "")
    optional = text.startswith("Optional[")
    parts = [p for p in re.split(r"[|,\[\]]", re.sub(r"(Optional|Union)\[", "[", text)) if p]
    if optional:
        parts.append("None")
    return parts if parts and all(p in _SIMPLE for p in parts) else None


def _fits(value: Any, kinds: list[str]) -> bool:
    for kind in kinds:
        if kind in ("None", "NoneType") and value is None:
            return True
        if kind == "bool" and isinstance(value, bool):
            return True
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind == "str" and isinstance(value, str):
            return True
    return False


def _signatures(target: Callable) -> list[inspect.Signature]:
    """The signature of a function, or of a class's ``__init__`` along its MRO (subclasses forward **kwargs)."""
    if not isinstance(target, type):
        return [inspect.signature(target)]
    return [inspect.signature(c.__init__) for c in target.__mro__ if "__init__" in vars(c) and c is not object]


def check_node(node: DictConfig | None, name: str) -> None:
    """Raise ``ValueError`` naming ``name.key`` for a value whose type its ``_target_`` does not accept."""
    if node is None or not isinstance(node, DictConfig) or "_target_" not in node:
        return
    try:
        target = get_object(str(node._target_))
    except Exception:  # an unknown target is reported by instantiate, with Hydra's own message
        return
    values = OmegaConf.to_container(node, resolve=True)
    partial = bool(values.get("_partial_", False))
    for sig in _signatures(target):
        for key, param in sig.parameters.items():
            if key not in values or key.startswith("_"):
                continue
            if partial and values[key] is None:  # null in a partial: filled in from the synth (cli/build._fill)
                continue
            kinds = _kinds(param.annotation)
            if kinds is not None and not _fits(values[key], kinds):
                allowed = " or ".join(k for k in kinds if k != "NoneType")
                raise ValueError(f"{name}.{key} must be {allowed}, got {values[key]!r} "
                                 f"({type(values[key]).__name__})")


def check_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
