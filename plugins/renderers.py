"""Text renderers of the results table, through tabulate.

Every text in the table can come from a spec or from data (titles, labels, notes, criterion names,
terms, stop reasons), so each format escapes all of it: the table arrives on one line per text
(line breaks are spaces), tabulate escapes the LaTeX and HTML cells, and the title and footnotes are
escaped here. Markdown cells escape ``|`` (which would end the cell), backslashes, backticks and a
``<`` that could start raw HTML (``<script``, ``</``, ``<!``; ``<0.001`` stays as it is).
"""

from __future__ import annotations

import html
import re

from tabulate import tabulate

from endpointkit import hookimpl

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "^": r"\^{}",
    "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))
_MARKDOWN_PATTERN = re.compile(r"([\\|`]|<(?=[A-Za-z/!?]))")  # raw HTML starts only as <tag, </, <!, <?


def latex_escape(text: str) -> str:
    """Text that LaTeX typesets as written (no command, group, comment or math can start in it)."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL[m.group()], text)


def markdown_escape(text: str) -> str:
    """Text that stays inside its Markdown table cell and never becomes code or raw HTML."""
    return _MARKDOWN_PATTERN.sub(r"\\\1", text)


class TabulateRenderer:
    """A tabulate format plus footnotes in the matching markup."""

    def __init__(self, name: str, tablefmt: str, suffix: str, description: str):
        self.name, self.tablefmt, self.suffix, self.description = name, tablefmt, suffix, description

    def render(self, table) -> str:
        rows, headers = table.rows, table.headers
        if self.name == "github":
            rows = [[markdown_escape(cell) for cell in row] for row in rows]
            headers = [markdown_escape(h) for h in headers]
        body = tabulate(rows, headers=headers, tablefmt=self.tablefmt, disable_numparse=True)
        notes = [f"{i}. {note}" for i, note in enumerate(table.footnotes, start=1)]
        if self.name == "html":
            parts = [f"<h3>{html.escape(table.title)}</h3>", body]
            parts += [f"<p><small>{html.escape(n)}</small></p>" for n in notes]
            return "\n".join(parts) + "\n"
        if self.name == "latex":
            return (f"% {latex_escape(table.title)}\n{body}\n"
                    + "".join(f"\\par\\footnotesize {latex_escape(n)}\n" for n in notes))
        if self.name == "github":
            return f"## {markdown_escape(table.title)}\n\n{body}\n\n" + "".join(f"{markdown_escape(n)}\n" for n in notes)
        return f"{table.title}\n\n{body}\n\n" + "".join(f"{n}\n" for n in notes)


@hookimpl
def register_renderers():
    return [
        TabulateRenderer("github", "github", "md", "GitHub-flavoured Markdown table"),
        TabulateRenderer("plain", "simple", "txt", "Plain text table"),
        TabulateRenderer("latex", "latex_booktabs", "tex", "LaTeX (booktabs) tabular"),
        TabulateRenderer("html", "html", "html", "HTML table"),
    ]
