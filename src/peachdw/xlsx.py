"""The report as an Excel workbook, one sheet per tab.

Numbers are written as numbers and days as dates; each sheet has a bold frozen header, a
filter over its columns, widths sized to the text and number formats for counts, rates
and confidence. Text is always written as text, never as a formula.

Two rules keep any campaign name writable, both documented in docs/exports.md:
characters XML cannot hold (control characters other than tab, line feed and carriage
return) are removed, and text longer than Excel's limit of 32,767 characters, counted in
UTF-16 units as Excel counts, is cut at the last whole character that fits, with a
warning naming the campaign.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import regex
import xlsxwriter

from peachdw.export import replaced
from peachdw.report import Tab

log = logging.getLogger(__name__)

#: Excel's limit on the length of a cell's text, in UTF-16 code units.
EXCEL_CELL_UNITS = 32_767
#: Characters an XML 1.0 document cannot carry: control characters but tab, line feed
#: and carriage return, lone surrogates, and the two non-characters U+FFFE and U+FFFF.
XML_ILLEGAL = regex.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Excel counts days from 1899-12-30 (with its 1900 leap-year quirk folded in).
_EXCEL_EPOCH = date(1899, 12, 30).toordinal()
_MAX_WIDTH = 60

NUMBER_FORMATS = {
    "id": "0",
    "int": "#,##0",
    "date": "yyyy-mm-dd",
    "rate": "0.00%",
    "ratio": "0.00",
    "confidence": "0.00",
}


def utf16_units(text: str) -> int:
    """Length as Excel counts it: characters outside the BMP take two units."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def fit_text(text: str, limit: int = EXCEL_CELL_UNITS) -> tuple[str, bool]:
    """`text` without XML-illegal characters and within `limit` UTF-16 units.

    Returns the text and whether it was cut. A cut falls between whole characters
    (graphemes), so it never splits a surrogate pair or an accent from its letter.
    """
    text = XML_ILLEGAL.sub("", text)
    if len(text) * 2 <= limit or utf16_units(text) <= limit:
        return text, False
    used = 0
    end = 0
    for grapheme in regex.finditer(r"\X", text):
        units = utf16_units(grapheme.group())
        if used + units > limit:
            break
        used += units
        end = grapheme.end()
    return text[:end], True


class XlsxWriter:
    """Writes the tabs into one .xlsx file, replaced only once it is complete."""

    def __init__(self, path: Path):
        self.path = path
        self.target = str(path)
        self.warnings: list[str] = []

    def write(self, tabs: list[Tab]) -> None:
        with replaced(self.path) as temporary:
            workbook = xlsxwriter.Workbook(
                str(temporary),
                {
                    # Rows go straight to disk: memory stays flat for a year of days.
                    "constant_memory": True,
                    # Text stays text: no formulas, links or numbers read into it.
                    "strings_to_formulas": False,
                    "strings_to_urls": False,
                    "strings_to_numbers": False,
                },
            )
            try:
                for tab in tabs:
                    self._sheet(workbook, tab)
            finally:
                workbook.close()

    def _sheet(self, workbook: xlsxwriter.Workbook, tab: Tab) -> None:
        sheet = workbook.add_worksheet(tab.name)
        bold = workbook.add_format({"bold": True})
        formats = {
            kind: workbook.add_format({"num_format": pattern})
            for kind, pattern in NUMBER_FORMATS.items()
        }
        texts = self._texts(tab)
        for column, (name, kind) in enumerate(zip(tab.header, tab.kinds, strict=True)):
            width = max(len(name), _content_width(kind, texts.get(column, [])))
            sheet.set_column(
                column, column, min(width + 2, _MAX_WIDTH), formats.get(kind)
            )
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, max(len(tab.rows), 1), len(tab.header) - 1)
        sheet.write_row(0, 0, tab.header, bold)

        write_number = sheet.write_number
        write_string = sheet.write_string
        for row_number, row in enumerate(tab.rows, start=1):
            for column, value in enumerate(row):
                if value is None:
                    continue
                if column in texts:
                    write_string(row_number, column, texts[column][row_number - 1])
                elif isinstance(value, date):
                    write_number(
                        row_number,
                        column,
                        value.toordinal() - _EXCEL_EPOCH,
                        formats["date"],
                    )
                else:
                    write_number(
                        row_number, column, value, formats.get(tab.kinds[column])
                    )

    def _texts(self, tab: Tab) -> dict[int, list[str]]:
        """Each text column's cells made writable, warning for every cut one."""
        campaign = (
            tab.header.index("campaign_id") if "campaign_id" in tab.header else None
        )
        columns: dict[int, list[str]] = {}
        for column, kind in enumerate(tab.kinds):
            if kind != "text":
                continue
            cells = []
            for row in tab.rows:
                value = row[column]
                text, cut = fit_text("" if value is None else str(value))
                if cut:
                    who = (
                        f"campaign {row[campaign]}" if campaign is not None else "a row"
                    )
                    message = (
                        f"{tab.name}: {tab.header[column]} of {who} is longer than "
                        f"Excel's {EXCEL_CELL_UNITS:,} characters and was cut."
                    )
                    self.warnings.append(message)
                    log.warning(message)
                cells.append(text)
            columns[column] = cells
        return columns


def _content_width(kind: str, texts: list[str]) -> int:
    if kind == "text":
        return max((len(text) for text in texts), default=0)
    return {"date": 10, "rate": 8, "ratio": 8, "confidence": 6}.get(kind, 12)
