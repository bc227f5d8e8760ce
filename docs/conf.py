"""Sphinx configuration: the user guide in Markdown (MyST), the API reference from docstrings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galseg import __version__  # noqa: E402

project = "galseg"
author = "the galseg developers"
copyright = "2026, the galseg developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_ivar = True

html_theme = "alabaster"
html_title = f"galseg {release}"
html_static_path = []
html_theme_options = {"description": "Spiral arms in galaxy images, pixel by pixel", "page_width": "1100px"}

# galseg's attribute docstrings are prose ("What GZ:3D volunteers outlined..."), never napoleon's
# inline "type: description"; read that way, every "GZ:3D" became a type.
from sphinx.ext.napoleon import docstring as _napoleon  # noqa: E402


def _prose_attribute(self) -> list[str]:
    return self._dedent(self._consume_to_end())


_napoleon.GoogleDocstring._parse_attribute_docstring = _prose_attribute
