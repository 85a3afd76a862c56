"""torch's constructor signature and docstring of each ``optx.optim`` class, derived once from its
functional constructor.

torch 2.13's ``torch.optim.<Class>(params, ...)`` takes, after ``params``, exactly the arguments
of the ``optx.<name>`` constructor (same names, order, defaults and kinds: ``tests/
test_public_api.py`` checks both against torch). So a class is declared as a name plus its
constructor, and :func:`torch_init` gives it an ``__init__`` with that signature (positional
``lr`` and all, as torch's ImageNet example calls ``SGD(model.parameters(), args.lr, momentum=
...)``), which ``inspect.signature``, ``help()``, IDEs and the API pages show; :func:`class_doc`
writes its docstring from the constructor's ``Args:`` section.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any, Callable

PARAMS_DOC = (
    "params: the parameters to optimize: a pytree of arrays (one param group), torch's list "
    "of param-group dicts ``[{'params': tree, 'lr': 0.1}, {'params': other}]``, or "
    "``(name, array)`` pairs as ``named_parameters()`` gives them (each group may be such "
    "pairs too; then :attr:`params` is one dict keyed by the names, whatever the groups)."
)


def torch_signature(constructor: Callable[..., Any]) -> inspect.Signature:
    """``(params, <the constructor's arguments>)``."""
    params = inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Signature([params, *inspect.signature(constructor).parameters.values()])


def torch_init(cls: type) -> Callable[..., None]:
    """An ``__init__`` for ``cls`` with torch's signature; it binds the arguments as Python
    would (so a call torch accepts is accepted, and one it refuses raises ``TypeError``) and
    hands them to ``cls._construct(params, arguments)``."""
    signature = torch_signature(cls._constructor)  # type: ignore[attr-defined]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Partial: an argument without a default may come from every param group instead
        # (torch's ``required``), which add_param_group checks.
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{type(self).__name__}(): {err}") from None
        arguments = dict(bound.arguments)
        if "params" not in arguments:
            raise TypeError(f"{type(self).__name__}(): missing a required argument: 'params'")
        self._construct(arguments.pop("params"), arguments)

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()], return_annotation=None)
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__module__ = cls.__module__
    return __init__


def _args_section(doc: str) -> str:
    """The entries of a Google-style ``Args:`` section, dedented."""
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index("Args:") + 1
    out = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        out.append(line)
    return textwrap.dedent("\n".join(out)).strip("\n")


_EXAMPLE = '''\
>>> import jax
>>> import jax.numpy as jnp
>>> import optx
>>> params = {{"w": jnp.array({init})}}
>>> def loss_fn(p):
...     return jnp.sum((p["w"] - 1.0) ** 2)
>>> opt = optx.optim.{name}(params{args})
>>> for _ in range(3):
...     {step}
>>> bool(loss_fn(opt.params) < loss_fn(params))
True'''


def class_doc(cls: type, example_args: str = ", lr=0.1", example_init: str = "[0.0, 2.0]",
              closure: bool = False) -> str:
    """The class docstring: what it is, ``params`` and the constructor's ``Args:``, and a
    doctested example (``example_args`` after ``params``; ``closure``: LBFGS's ``step``)."""
    constructor = cls._constructor  # type: ignore[attr-defined]
    name = cls.__name__
    step = "loss = opt.step(loss_fn)" if closure else "opt.step(jax.grad(loss_fn)(opt.params))"
    example = _EXAMPLE.format(name=name, args=example_args, init=example_init, step=step)
    args = _args_section(constructor.__doc__ or "Args:\n")
    return (
        f"``torch.optim.{name}``: :func:`optx.{constructor.__name__}` with torch's object model.\n"
        "\n"
        f"The update is :func:`optx.{constructor.__name__}`'s (its page writes the algorithm "
        "out); this class holds the params, their state and the param groups, and takes "
        "torch's constructor arguments, positional ones included. See :class:`Optimizer` for "
        "``step``, ``param_groups``, ``state``, ``state_dict`` and the hooks.\n"
        "\n"
        "Args:\n"
        + textwrap.indent(PARAMS_DOC, "  ") + "\n"
        + textwrap.indent(args, "  ") + "\n"
        "\n"
        "Example:\n"
        + textwrap.indent(example, "  ") + "\n"
    )
