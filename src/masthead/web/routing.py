"""Path parameters of the app's routes.

``{name:id}`` is a run of digits read as an id the database can hold (SQLite and
PostgreSQL integers stop at 2**63 - 1): one of more than 18 digits is no id of ours and
reads as -1, which no row has. Starlette's ``int`` handed 20 digits to the database driver
(an overflow) and 5,000 to Python's int parser: HTTP 500s where an unknown id gets the
same 403 or 404 as any other.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class IdConvertor(Convertor[int]):
    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value) if len(value) <= 18 else -1

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())
