"""Text renderers of the results table, through tabulate."""

from __future__ import annotations

import html

from tabulate import tabulate

from endpointkit import hookimpl


class TabulateRenderer:
    """A tabulate format plus footnotes in the matching markup."""

    def __init__(self, name: str, tablefmt: str, suffix: str, description: str):
        self.name, self.tablefmt, self.suffix, self.description = name, tablefmt, suffix, description

    def render(self, table) -> str:
        body = tabulate(table.rows, headers=table.headers, tablefmt=self.tablefmt, disable_numparse=True)
        notes = [f"{i}. {note}" for i, note in enumerate(table.footnotes, start=1)]
        if self.name == "html":
            parts = [f"<h3>{html.escape(table.title)}</h3>", body]
            parts += [f"<p><small>{html.escape(n)}</small></p>" for n in notes]
            return "\n".join(parts) + "\n"
        if self.name == "latex":
            escaped = [n.replace("%", r"\%").replace("_", r"\_") for n in notes]
            return f"% {table.title}\n{body}\n" + "".join(f"\\par\\footnotesize {n}\n" for n in escaped)
        title = f"## {table.title}" if self.name == "github" else table.title
        return f"{title}\n\n{body}\n\n" + "".join(f"{n}\n" for n in notes)


@hookimpl
def register_renderers():
    return [
        TabulateRenderer("github", "github", "md", "GitHub-flavoured Markdown table"),
        TabulateRenderer("plain", "simple", "txt", "Plain text table"),
        TabulateRenderer("latex", "latex_booktabs", "tex", "LaTeX (booktabs) tabular"),
        TabulateRenderer("html", "html", "html", "HTML table"),
    ]
