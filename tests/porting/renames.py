"""The line rewrites that port a torch training script to optx: the one list the porting test
checks and the README's porting notes show (:func:`markdown`).

Outside the model block (``# --- model ---`` ... ``# --- end model ---``: the network and its
loss, written in JAX) and the module docstring, a port differs from its torch script only by
these rewrites; blank lines are ignored (isort puts ``optx`` in its own import section).
Everything else stays as torch users write it: ``optimizer.zero_grad()`` (a no-op),
``loss = optimizer.step(closure)``, the schedulers, ``scheduler.step()``, ``get_last_lr()``,
``loss.item()``.
"""

from __future__ import annotations

import ast
import difflib
import re
from typing import NamedTuple

MODEL_BEGIN = "# --- model ---"
MODEL_END = "# --- end model ---"


class Rename(NamedTuple):
    torch: str  # a regex searched in the line (without its indentation)
    optx: tuple[str | None, ...]  # what the match becomes (one of these); None deletes the line
    why: str


RENAMES: tuple[Rename, ...] = (
    Rename(r"\btorch\.optim\b", ("optx.optim",), "the same classes, in JAX"),
    Rename(r"\btorch\.nn\.utils\b", ("optx.optim",),
           "gradient clipping, returning the clipped gradients"),
    Rename(
        r"^clip_grad_norm_\(model\.parameters\(\), ",
        ("grads, _ = clip_grad_norm_(grads, ",),
        "gradients are values: clipping returns them (and the total norm)",
    ),
    Rename(
        r"\bmodel\.parameters\(\)",
        ("model.params",),
        "a pytree of arrays; a dict keyed as `named_parameters()` gives torch's names",
    ),
    Rename(
        r"^def closure\(\):$",
        ("def closure(params):",),
        "the closure is a function of the parameters; `step(closure)` differentiates it",
    ),
    Rename(
        r"^loss = model\.loss\(",
        ("loss, g = jax.value_and_grad(model.loss)(optimizer.params, ",),
        "the loss and its gradient at the trained parameters",
    ),
    Rename(
        r"^loss\.backward\(\)$",
        (None, "grads = accumulate(grads, g)"),
        "no backward: `step(closure)` takes the gradients, or `optx.optim.accumulate` adds them "
        "up as torch's `.grad`",
    ),
    Rename(
        r"^optimizer\.zero_grad\(\)$",
        ("optimizer.zero_grad()", "grads = optimizer.zero_grad()"),
        "a no-op returning None: the empty gradient accumulator",
    ),
    Rename(r"^optimizer\.step\(\)$", ("optimizer.step(grads)",), "the gradients are passed"),
    Rename(
        r"\bmodel\(",
        ("model(params, ", "model(optimizer.params, "),
        "the model gets its parameters: the closure's argument, or the trained ones outside",
    ),
    Rename(r"\btorch\.from_numpy\(", ("jnp.asarray(",), "data as JAX arrays"),
    Rename(
        r"\btorch\.load\(",
        ("optim.load(",),
        "optx's checkpoint file (no pickle); a torch checkpoint's tensors convert to numpy",
    ),
    Rename(
        r"^torch\.set_default_dtype\(torch\.float64\)$",
        ('jax.config.update("jax_enable_x64", True)',),
        "float64",
    ),
)


def _rewrites(line: str) -> set[str | None]:
    """What ``line`` may become under the renames; ``None`` stands for a deleted line."""
    indent = line[: len(line) - len(line.lstrip())]
    out: set[str | None] = {line.strip()}
    for rule in RENAMES:
        nxt: set[str | None] = set()
        for text in out:
            if text is None or not re.search(rule.torch, text):
                nxt.add(text)
            else:
                nxt.update(None if r is None else re.sub(rule.torch, r, text) for r in rule.optx)
        out = nxt
    return {None if t is None else indent + t for t in out}


def outside_model(source: str) -> list[str]:
    """The script's non-blank lines after its docstring, its model block replaced by the begin
    marker."""
    body = ast.parse(source).body
    skip = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        skip = body[0].end_lineno or 0
    lines, inside = [], False
    for line in source.splitlines()[skip:]:
        if line.strip() == MODEL_BEGIN:
            inside = True
            lines.append(line)
        elif line.strip() == MODEL_END:
            inside = False
        elif not inside and line.strip():
            lines.append(line)
    if inside:
        raise ValueError(f"{MODEL_BEGIN!r} without {MODEL_END!r}")
    return lines


def unexplained(torch_source: str, port_source: str) -> list[str]:
    """The differing lines, outside the model block, that no rename explains (empty: a mechanical
    port)."""
    a, b = outside_model(torch_source), outside_model(port_source)
    problems = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        i, j = i1, j1
        while i < i2 or j < j2:
            options = _rewrites(a[i]) if i < i2 else set()
            if j < j2 and b[j] in options:
                i, j = i + 1, j + 1
            elif None in options:
                i += 1
            else:
                problems.append(
                    f"torch: {a[i].strip() if i < i2 else '(nothing)'!r} -> "
                    f"port: {b[j].strip() if j < j2 else '(deleted)'!r}"
                )
                break
    return problems


def used(torch_source: str, port_source: str) -> set[int]:
    """The indices of the renames this pair of scripts uses."""
    out = set()
    for line in outside_model(torch_source):
        for k, rule in enumerate(RENAMES):
            if re.search(rule.torch, line.strip()):
                out.add(k)
    return out


def markdown() -> str:
    """The renames as the README's porting table."""
    rows = ["| torch | optx | why |", "|---|---|---|"]
    for rule in RENAMES:
        torch = rule.torch.replace("\\b", "").replace("^", "").replace("$", "").replace("\\", "")
        port = " / ".join("(delete the line)" if p is None else f"`{p}`" for p in rule.optx)
        rows.append(f"| `{torch}` | {port} | {rule.why} |")
    return "\n".join(rows)
