"""Reading the verifier's own YAML inputs (vouchers, calendars, tariffs) with one kind of error:
VerificationInputError naming the file, which the CLI turns into exit status 2."""
from __future__ import annotations

from typing import Any

import yaml

from edge.errors import VerificationInputError


def read_yaml(path: str, what: str) -> Any:
    """Parsed YAML of `path`; `what` names the file's role in the error ("voucher file", ...)."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise VerificationInputError(f"cannot read {what} {path!r}: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise VerificationInputError(f"{path}: not valid YAML: {e}") from None
