"""Records (the one results schema), the JSON card, and Markdown/HTML reports built from records."""

from ..records import FIELDS, RecordWriter, read_records, read_warnings
from .card import build_card
from .render import build_report

__all__ = ["FIELDS", "RecordWriter", "read_records", "read_warnings", "build_card", "build_report"]
