"""Helpers that chapters use to show the package inside the book.

The package is the single source of truth: a chapter does not copy code from ``lrpbook``, it shows it.
:func:`show_source` displays the current source of any function, class or module, highlighted, both in
Jupyter and in the built HTML book (where it becomes part of the executed cell's output).

Taught in: chapter "Detection basics and notation".
"""

from __future__ import annotations

import html
import inspect
import textwrap
from typing import Any

__all__ = ["source_of", "show_source", "SourceListing"]


def source_of(obj: Any) -> str:
    """Return the source code of a package object as a string.

    Args:
        obj: a function, class, method or module (anything :func:`inspect.getsource` accepts), or a
            dotted name such as ``"lrpbook.boxes.box_iou"``.

    Returns:
        The dedented source text.

    Raises:
        TypeError: if the source of ``obj`` cannot be found (e.g. a built-in).
    """
    if isinstance(obj, str):
        obj = _resolve(obj)
    try:
        src = inspect.getsource(obj)
    except (TypeError, OSError) as exc:
        raise TypeError(f"cannot show the source of {obj!r}: {exc}") from exc
    return textwrap.dedent(src)


def _resolve(dotted: str) -> Any:
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise TypeError(f"cannot import {dotted!r}")


class SourceListing:
    """A highlighted source listing with rich representations for Jupyter and the book.

    Args:
        code: the source text.
        title: a caption shown above the listing (e.g. the qualified name and file).
    """

    def __init__(self, code: str, title: str = "") -> None:
        self.code = code
        self.title = title

    def __repr__(self) -> str:  # plain text fallback (terminals, text/plain output)
        head = f"# {self.title}\n" if self.title else ""
        return head + self.code

    def _repr_html_(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer

            body = highlight(self.code, PythonLexer(), HtmlFormatter(nowrap=True))
        except ImportError:  # pragma: no cover - pygments ships with IPython
            body = html.escape(self.code)
        title = (
            f'<div class="lrpbook-source-title"><code>{html.escape(self.title)}</code></div>'
            if self.title
            else ""
        )
        return (
            f'<div class="lrpbook-source">{title}'
            f'<div class="highlight-python notranslate"><div class="highlight"><pre>{body}</pre>'
            "</div></div></div>"
        )

    def _repr_markdown_(self) -> str:
        head = f"`{self.title}`\n\n" if self.title else ""
        return f"{head}```python\n{self.code}```\n"


def show_source(obj: Any) -> SourceListing:
    """Show the source of a package object in a chapter.

    Returns a :class:`SourceListing`; as the last expression of a cell it renders as highlighted code
    in Jupyter and in the HTML book, and as plain text elsewhere.

    Args:
        obj: a function, class, method or module of ``lrpbook`` (or any Python object with source), or a
            dotted name.

    Returns:
        The listing object (display it, or ``print`` it for plain text).

    Raises:
        TypeError: if the source cannot be found.

    Example:
        >>> from lrpbook.book import show_source
        >>> listing = show_source("lrpbook.config.quick")
        >>> listing.code.splitlines()[0]
        'def quick() -> bool:'
    """
    if isinstance(obj, str):
        obj = _resolve(obj)
    code = source_of(obj)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "")
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    try:
        path = inspect.getsourcefile(obj) or ""
        marker = "lrpbook"
        rel = path[path.rfind(marker) :] if marker in path else path
    except TypeError:
        rel = ""
    if inspect.ismodule(obj):
        title = f"{module}  ({rel})" if rel else module
    else:
        title = f"{module}.{name}" + (f"  ({rel})" if rel else "")
    return SourceListing(code, title)
