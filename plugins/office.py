"""Word and Excel renderers: ``--format docx`` (python-docx) and ``--format xlsx`` (openpyxl).

Both are binary renderers (``binary = True``: ``render`` returns bytes). ``render(table)`` turns one
table (the results table, or the side-by-side table) into a document; the xlsx renderer also has
``render_results(results)``, which the run uses for ``table.xlsx``: the table as displayed plus the
results frame with numbers as numbers, what moves, attrition, data quality and provenance.

Text comes from specs and data, so it is made safe here: characters XML cannot hold are dropped,
and every text cell of a workbook is stored as text, never as a formula (``=cmd|...`` stays text).
"""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, Any

from endpointkit import hookimpl

if TYPE_CHECKING:
    from endpointkit.render import Table
    from endpointkit.results import Results

_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean(text: Any) -> str:
    """Text a Word or Excel file can hold (control characters dropped)."""
    return _NOT_XML.sub("", "" if text is None else str(text))


def grouped_rows(table: Table) -> list[tuple[str, list[list[str]]]]:
    """Rows under their group label: a row with a first cell starts a group (the endpoint title);
    tables whose every row has a first cell are one unlabelled group."""
    if all(row and row[0] for row in table.rows):
        return [("", table.rows)]
    groups: list[tuple[str, list[list[str]]]] = []
    for row in table.rows:
        if row[0] or not groups:
            groups.append((row[0], []))
        groups[-1][1].append(row[1:])
    return groups


def is_wide(headers: list[str], rows: list[list[str]]) -> bool:
    """Landscape when the table (as laid out) has more than 4 columns or lines over ~120 characters."""
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows if i < len(r)]) for i, h in enumerate(headers)]
    return len(headers) > 4 or sum(widths) > 120


def _set_widths(grid, headers: list[str], rows: list[list[str]], section) -> None:
    """Column widths in proportion to their longest text (Word would otherwise split them evenly)."""
    usable = section.page_width - section.left_margin - section.right_margin
    lengths = [min(60, max([6, len(str(h))] + [len(str(r[i])) for r in rows if i < len(r)])) + 4 for i, h in enumerate(headers)]
    widths = [int(usable * n / sum(lengths)) for n in lengths]
    grid.autofit = False
    for column, width in zip(grid.columns, widths, strict=True):
        column.width = width  # the table grid, which LibreOffice reads
    for row in grid.rows:  # and each cell, which Word reads
        cells = row.cells
        if len({id(c._tc) for c in cells}) < len(cells):  # a merged group row spans the table
            continue
        for cell, width in zip(cells, widths, strict=False):
            cell.width = width


class DocxRenderer:
    name = "docx"
    suffix = "docx"
    binary = True
    description = "Word document (python-docx): grouped rows, footnotes, landscape when wide"

    def render(self, table: Table) -> bytes:
        import docx
        from docx.enum.section import WD_ORIENT
        from docx.shared import Pt

        document = docx.Document()
        style = document.styles["Normal"]
        style.font.name, style.font.size = "Calibri", Pt(9)
        groups = grouped_rows(table)
        labelled = any(label for label, _ in groups)
        headers = table.headers[1:] if labelled else table.headers
        section = document.sections[0]
        if is_wide(headers, [row for _, rows in groups for row in rows]):
            section.orientation = WD_ORIENT.LANDSCAPE
            section.page_width, section.page_height = section.page_height, section.page_width
        document.add_heading(clean(table.title), level=2)
        grid = document.add_table(rows=1, cols=len(headers))
        grid.style = "Table Grid"
        for cell, text in zip(grid.rows[0].cells, headers, strict=True):
            cell.text = ""
            cell.paragraphs[0].add_run(clean(text)).bold = True
        for label, rows in groups:
            if labelled:
                merged = grid.add_row().cells
                head = merged[0].merge(merged[-1]) if len(merged) > 1 else merged[0]
                head.text = ""
                head.paragraphs[0].add_run(clean(label)).bold = True
            for row in rows:
                cells = grid.add_row().cells
                for cell, text in zip(cells, row, strict=False):
                    cell.text = clean(text)
        _set_widths(grid, headers, [row for _, rows in groups for row in rows], section)
        for i, note in enumerate(table.footnotes, start=1):
            paragraph = document.add_paragraph()
            paragraph.paragraph_format.space_after = Pt(2)
            run = paragraph.add_run(f"{i}. {clean(note)}")
            run.font.size = Pt(8)
        stream = io.BytesIO()
        document.save(stream)
        return stream.getvalue()


def _text_cell(sheet, row: int, column: int, value: Any):
    """A cell holding ``value``: numbers as numbers, everything else as text (never a formula)."""
    cell = sheet.cell(row=row, column=column)
    if value is None or (isinstance(value, float) and value != value):
        return cell
    if isinstance(value, bool):
        cell.value = str(value)
        cell.data_type = "s"
    elif isinstance(value, int | float):
        cell.value = value
    else:
        cell.value = clean(value)
        cell.data_type = "s"  # "=1+1" or "@SUM(...)" from a spec or a file stays text
    return cell


def _frame_sheet(workbook, title: str, frame) -> None:
    import pandas as pd
    from openpyxl.styles import Font

    sheet = workbook.create_sheet(title)
    for j, column in enumerate(frame.columns, start=1):
        _text_cell(sheet, 1, j, str(column)).font = Font(bold=True)
    for i, record in enumerate(frame.itertuples(index=False), start=2):
        for j, value in enumerate(record, start=1):
            if value is pd.NA or value is pd.NaT:
                continue
            if hasattr(value, "item") and not isinstance(value, str):
                value = value.item()
            if isinstance(value, pd.Timestamp):
                value = value.date().isoformat()
            _text_cell(sheet, i, j, value)
    sheet.freeze_panes = "A2"
    _fit_columns(sheet)


def _table_sheet(workbook, title: str, table: Table) -> None:
    from openpyxl.styles import Alignment, Font

    sheet = workbook.create_sheet(title)
    _text_cell(sheet, 1, 1, table.title).font = Font(bold=True, size=12)
    for j, header in enumerate(table.headers, start=1):
        _text_cell(sheet, 3, j, header).font = Font(bold=True)
    row_number = 4
    for row in table.rows:
        for j, text in enumerate(row, start=1):
            cell = _text_cell(sheet, row_number, j, text)
            if j == 1 and text:
                cell.font = Font(bold=True)
        row_number += 1
    row_number += 1
    for i, note in enumerate(table.footnotes, start=1):
        cell = _text_cell(sheet, row_number, 1, f"{i}. {note}")
        cell.alignment = Alignment(wrap_text=False)
        row_number += 1
    sheet.freeze_panes = "A4"
    _fit_columns(sheet, skip_rows={1} | set(range(4 + len(table.rows), row_number + 1)))


def _fit_columns(sheet, skip_rows: set[int] = frozenset()) -> None:
    from openpyxl.utils import get_column_letter

    widths: dict[int, int] = {}
    for row in sheet.iter_rows():
        for cell in row:
            if cell.row in skip_rows or cell.value is None:
                continue
            widths[cell.column] = max(widths.get(cell.column, 0), len(str(cell.value)))
    for column, width in widths.items():
        sheet.column_dimensions[get_column_letter(column)].width = min(60, width + 2)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in _flatten(inner, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, json.dumps(value, default=str))]
        return [item for i, inner in enumerate(value) for item in _flatten(inner, f"{prefix}[{i}]")]
    return [(prefix, value if isinstance(value, int | float | str) or value is None else str(value))]


class XlsxRenderer:
    name = "xlsx"
    suffix = "xlsx"
    binary = True
    description = "Excel workbook (openpyxl): the table as displayed, the results with numbers as numbers, attrition, data quality, provenance"

    def _save(self, workbook) -> bytes:
        stream = io.BytesIO()
        workbook.save(stream)
        return stream.getvalue()

    def render(self, table: Table) -> bytes:
        from openpyxl import Workbook

        workbook = Workbook()
        workbook.remove(workbook.active)
        _table_sheet(workbook, "Table", table)
        return self._save(workbook)

    def render_results(self, results: Results) -> bytes:
        import pandas as pd
        from openpyxl import Workbook

        from endpointkit.render import build_table
        from endpointkit.sensitivity import side_by_side_table

        workbook = Workbook()
        workbook.remove(workbook.active)
        _table_sheet(workbook, "Table", build_table(results.primary))
        if len(results.variants) > 1:
            _table_sheet(workbook, "Side by side", side_by_side_table(results))
            _frame_sheet(workbook, "What moves", results.what_moves())
        _frame_sheet(workbook, "Results", results.frame)
        _frame_sheet(workbook, "Attrition", results.attrition)
        _frame_sheet(workbook, "Data quality", results.data_quality)
        provenance = pd.DataFrame(_flatten(results.provenance), columns=["key", "value"])
        _frame_sheet(workbook, "Provenance", provenance)
        return self._save(workbook)


@hookimpl
def register_renderers():
    return [DocxRenderer(), XlsxRenderer()]
