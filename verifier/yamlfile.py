"""Reading the verifier's own YAML inputs (vouchers, calendars, tariffs) with one kind of error:
VerificationInputError naming the file, which the CLI turns into exit status 2."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

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


def refuse_unknown_keys(raw: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """VerificationInputError naming keys outside `allowed`: a misspelt key (`shift:` for
    `shifts:`) would otherwise be ignored and silently change every figure (an empty calendar
    is 24/7 production)."""
    allowed = tuple(allowed)
    unknown = [str(k) for k in raw if k not in allowed]
    if unknown:
        raise VerificationInputError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(allowed)}")
