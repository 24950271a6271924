"""Dataset formats (readers, the synthetic world) and mask helpers."""

from vloss.data.errors import DataFormatError

__all__ = ["DataFormatError"]
