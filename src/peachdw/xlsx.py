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
from datetime import datetime
from pathlib import Path
from typing import Any

import regex

from peachdw.export import replaced
from peachdw.report import Tab

log = logging.getLogger(__name__)

#: Excel's limit on the length of a cell's text, in UTF-16 code units.
EXCEL_CELL_UNITS = 32_767
#: Characters an XML 1.0 document cannot carry: control characters but tab, line feed
#: and carriage return, lone surrogates, and the two non-characters U+FFFE and U+FFFF.
XML_ILLEGAL = regex.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MAX_WIDTH = 60
_FIXED_WIDTHS = {"date": 10, "id": 8, "rate": 8, "ratio": 8, "confidence": 6}

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
    """Writes the tabs into one .xlsx file, replaced only once it is complete.

    The workbook is built by rust_xlsxwriter (through rustpy-xlsxwriter): a year of
    daily rows is 1.6 million cells, which the pure-Python XlsxWriter takes about 8 s
    to write even in its fastest mode, and this about 2 s (docs/performance.md). Text
    cells are always text: no column is declared a formula or a link.
    """

    def __init__(self, path: Path):
        self.path = path
        self.target = str(path)
        self.warnings: list[str] = []

    def write(self, tabs: list[Tab]) -> None:
        import rustpy_xlsxwriter

        with replaced(self.path) as temporary:
            book = rustpy_xlsxwriter.FastExcel(str(temporary)).format(
                bold_headers=True, datetime_format=NUMBER_FORMATS["date"]
            )
            for tab in tabs:
                book = book.freeze(row=1, col=0, sheet=tab.name).sheet(
                    tab.name,
                    self._records(tab),
                    autofilter=True,
                    column_widths=self._widths(tab),
                    column_formats=_column_formats(rustpy_xlsxwriter, tab),
                )
            try:
                book.save()
            except RuntimeError as exc:
                raise OSError(0, f"the workbook could not be written ({exc})") from exc

    def _records(self, tab: Tab) -> list[dict[str, Any]]:
        """The rows as the writer takes them, text made writable and days as dates."""
        texts = [column for column, kind in enumerate(tab.kinds) if kind == "text"]
        days = [column for column, kind in enumerate(tab.kinds) if kind == "date"]
        campaign = (
            tab.header.index("campaign_id") if "campaign_id" in tab.header else None
        )
        records = []
        # Names and tiers repeat on every day of a campaign: clean each text once,
        # and say once per campaign and column that a text was cut.
        fitted: dict[str, tuple[str, bool]] = {}
        warned: set[tuple[int, Any]] = set()
        for row in tab.rows:
            cells = list(row)
            for column in texts:
                value = cells[column]
                if value is None:
                    continue
                if value not in fitted:
                    fitted[value] = fit_text(str(value))
                text, cut = fitted[value]
                if cut:
                    who = row[campaign] if campaign is not None else value
                    if (column, who) not in warned:
                        warned.add((column, who))
                        self._warn(tab, column, row, campaign)
                cells[column] = text
            for column in days:
                day = cells[column]
                cells[column] = datetime(day.year, day.month, day.day)
            records.append(dict(zip(tab.header, cells, strict=True)))
        # An empty tab still shows its header (the writer takes it from the first row).
        return records or [dict.fromkeys(tab.header)]

    def _warn(
        self, tab: Tab, column: int, row: list[Any], campaign: int | None
    ) -> None:
        who = f"campaign {row[campaign]}" if campaign is not None else "a row"
        message = (
            f"{tab.name}: {tab.header[column]} of {who} is longer than Excel's "
            f"{EXCEL_CELL_UNITS:,} characters and was cut."
        )
        self.warnings.append(message)
        log.warning(message)

    @staticmethod
    def _widths(tab: Tab) -> list[float]:
        widths = []
        for column, (name, kind) in enumerate(zip(tab.header, tab.kinds, strict=True)):
            if kind == "text":
                content = max(
                    (len(str(row[column])) for row in tab.rows if row[column]),
                    default=0,
                )
            else:
                content = _FIXED_WIDTHS.get(kind, 12)
            widths.append(float(min(max(len(name), content) + 2, _MAX_WIDTH)))
        return widths


def _column_formats(module: Any, tab: Tab) -> dict[str, Any]:
    formats = {}
    for name, kind in zip(tab.header, tab.kinds, strict=True):
        if kind in NUMBER_FORMATS and kind != "date":
            number_format = module.Format()
            number_format.set_num_format(NUMBER_FORMATS[kind])
            formats[name] = number_format
    return formats
