"""Sphinx configuration for optx's documentation site (``make docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # this checkout's optx, not an installed copy
sys.path.insert(0, str(HERE / "_ext"))
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import optx  # noqa: E402

project = "optx"
author = "optx developers"
copyright = "optx developers, Apache-2.0"
release = version = optx.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static: equations render without network
    "sphinx.ext.viewcode",
    "myst_nb",
    "optx_api",
    "optx_figures",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "generated/fragments", "Thumbs.db", ".DS_Store"]

# Warnings are errors (-W on the command line) and every cross-reference must resolve.
nitpicky = True
# Third-party types in signatures: there is no network to fetch their inventories.
nitpick_ignore_regex = [
    ("py:.*", r"(jax|jaxlib|numpy|np|optax|chex|flax|torch|os|collections\.abc)(\..*)?"),
    ("py:.*", r"(PyTree|ArrayTree|Array|ArrayLike|Params|Updates|OptState|Numeric)"),
    # optx's own alias for "a float or a schedule", as the optx.optim classes' signatures
    # (copied from the functional constructors) write it: it has no page.
    ("py:.*", r"Hyperparam"),
    # The call signatures of GradientTransformation's fields (typing Protocols), as written
    # unqualified in its docstring.
    ("py:.*", r"Transform(Init|Update)Fn"),
    # Private names (a leading underscore) have no page by design.
    ("py:.*", r"(.*\.)?_[A-Za-z]\w*"),
]

# autodoc / napoleon; the pages come from optx_api (one per name in __all__)
autodoc_member_order = "bysource"
autodoc_typehints = "description"  # readable signatures; types listed under Parameters
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = True
autodoc_default_options = {"exclude-members": "__init__, __new__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields, not second descriptions of NamedTuple fields

# MyST / myst-nb: notebooks are rendered from their committed outputs, never executed here.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_merge_streams = True
# The notebooks use ### under a # title; they are rendered as they are committed.
suppress_warnings = ["myst.header"]

html_theme = "sphinx_book_theme"
html_title = f"optx {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    # One search box: the sidebar's. (pydata-sphinx-theme would add a second to the header.)
    "navbar_persistent": [],
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_js_files = ["fit-math.js"]
html_show_sourcelink = False
