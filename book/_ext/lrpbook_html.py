"""Small fixes of the book's HTML pages (a local Sphinx extension, see ``book/_config.yml``).

1. Each chapter's ``.ipynb`` in the page's download menu.

The Makefile's ``book`` target writes every chapter as a notebook into
``book/_build/extra/notebooks/`` and ``html_extra_path`` copies them next to the chapter pages,
so ``notebooks/04_lrp_error.html`` has ``notebooks/04_lrp_error.ipynb`` beside it. The book theme
only lists an ``.ipynb`` in its download menu when the *source* is a notebook (ours are MyST
Markdown), so this extension adds the entry for every page under ``notebooks/``.

2. No JavaScript errors on load (``tests/test_book_browser.py`` checks it): sphinx-thebe's inline
configuration script is registered twice, so its second copy fails with "Identifier
'THEBE_JS_URL' has already been declared"; the duplicate is dropped. The theme's colour mode
defaults to ``auto`` (without it the theme logs "Got invalid theme mode" as an error).
"""

from __future__ import annotations

from pathlib import Path

NOTEBOOK_DIR = "notebooks/"


def _add_ipynb_button(app, pagename, templatename, context, doctree):
    if not pagename.startswith(NOTEBOOK_DIR):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") != "download-buttons":
            continue
        buttons = group["buttons"]
        if any(b.get("label") == "download-notebook-button" for b in buttons):
            return
        buttons.insert(
            0,
            {
                "type": "link",
                "url": context["pathto"](f"{pagename}.ipynb", 1),
                "text": ".ipynb",
                "icon": "fas fa-code",
                "tooltip": "Download this chapter as a Jupyter notebook",
                "label": "download-notebook-button",
            },
        )
        return


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attrs = getattr(script, "attributes", {}) or {}
        body = attrs.get("body")
        # the two copies of an inline script differ only in filename (None and "")
        key = ("inline", body) if body else ("file", str(script))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    if "script_files" in context:
        context["script_files"] = kept


def _default_theme_mode(app, config):
    # the pydata theme's layout reads ``default_mode`` from the page context
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")
    config.html_context = context


def _check_notebooks_exist(app, exception):
    """Warn when a chapter page has no notebook beside it (the Makefile writes them)."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    missing = [
        doc for doc in app.env.found_docs
        if doc.startswith(NOTEBOOK_DIR) and not (out / f"{doc}.ipynb").exists()
    ]
    if missing:
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            "no .ipynb beside %d chapter page(s) (%s): build with `make book`, which writes "
            "them into book/_build/extra/notebooks/", len(missing), ", ".join(sorted(missing)[:3]),
        )


def setup(app):
    app.connect("config-inited", _default_theme_mode)
    # after sphinx-book-theme's handlers (priority 501) and before any handler that returns a
    # template name, which ends the event (Sphinx emits html-page-context with firstresult)
    app.connect("html-page-context", _add_ipynb_button, priority=502)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=502)
    app.connect("build-finished", _check_notebooks_exist)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
