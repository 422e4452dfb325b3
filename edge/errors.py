"""Every error shangyun raises on purpose derives from `ShangyunError`.

    ShangyunError
    ├── ConfigError            bad configuration: names the file, the line and what would be valid
    ├── StoreError             the embedded store cannot be opened, migrated or written
    │   └── StoreVersionError  the file was written by a newer shangyun
    ├── SourceError            a device cannot be reached or stopped answering (the supervisor retries)
    │   └── IdentityMismatch   the device answered with another identity than the one onboarded
    ├── PayloadError           one message or register could not be decoded (counted, never fatal)
    ├── SinkError              a sink could not take a batch
    │   ├── RetryableSinkError     try again later (network down, store busy)
    │   ├── ThrottledSinkError     try again after `retry_after_s`
    │   └── RejectedSinkError      the data itself is refused; retrying will not help
    └── VerificationInputError bad input to the verifier (exit status 2)
"""
from __future__ import annotations


class ShangyunError(Exception):
    """Root of shangyun's own errors."""


class ConfigError(ShangyunError):
    def __init__(self, message: str, *, path: str = "", line: int | None = None):
        where = path + (f":{line}" if line is not None else "") if path else ""
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line
        self.detail = message


class StoreError(ShangyunError):
    pass


class StoreVersionError(StoreError):
    pass


class SourceError(ShangyunError):
    pass


class IdentityMismatch(SourceError):
    def __init__(self, device_id: str, expected: str, seen: str):
        super().__init__(f"device {device_id}: identity changed from {expected!r} to {seen!r}")
        self.device_id = device_id
        self.expected = expected
        self.seen = seen


class PayloadError(ShangyunError):
    pass


class SinkError(ShangyunError):
    pass


class RetryableSinkError(SinkError):
    pass


class ThrottledSinkError(SinkError):
    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RejectedSinkError(SinkError):
    pass


class VerificationInputError(ShangyunError):
    pass
