"""One error type for malformed input, always naming the file and the field."""

from __future__ import annotations

from typing import Any


class DataFormatError(ValueError):
    """A dataset file is malformed.

    The message always names the file and, where known, the record (image id,
    annotation id) and the field, so a user can find the problem in a file of
    millions of records.
    """

    def __init__(self, path: Any, message: str, *, field: str | None = None,
                 record: Any = None) -> None:
        self.path = str(path)
        self.field = field
        self.record = record
        where = self.path
        if record is not None:
            where += f" [{record}]"
        if field is not None:
            where += f" field '{field}'"
        self.message = message
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        # keyword-only fields: pickle by hand so the error survives process pools and Ray tasks
        return (_rebuild, (self.path, self.message, self.field, self.record))


def _rebuild(path: Any, message: str, field: str | None, record: Any) -> DataFormatError:
    return DataFormatError(path, message, field=field, record=record)
