"""Why a payload was rejected, precisely enough to act on it.

SchemaError
├── MalformedPayloadError    not JSON / not an object
├── UnsupportedVersionError  `schemaversion` major unknown to this build
└── SchemaFieldError         a field is missing or invalid (names the field path)
"""

from __future__ import annotations


class SchemaError(ValueError):
    """A message that can never be processed: dead-letter it, do not retry."""

    field: str | None = None


class MalformedPayloadError(SchemaError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed payload: {reason}")
        self.reason = reason


class UnsupportedVersionError(SchemaError):
    def __init__(self, version: str, supported_major: int) -> None:
        super().__init__(
            f"schemaversion {version!r} is not supported (this build reads {supported_major}.x)"
        )
        self.field = "schemaversion"
        self.version = version


class SchemaFieldError(SchemaError):
    def __init__(self, field: str, reason: str, message_type: str | None = None) -> None:
        where = f" in {message_type}" if message_type else ""
        super().__init__(f"field {field!r}{where}: {reason}")
        self.field = field
        self.reason = reason
        self.message_type = message_type
