"""Names for what discovery suggests: unique device ids and signal names within one output."""
from __future__ import annotations


def unique_name(name: str, used: set[str], *, sep: str = "-") -> str:
    """`name`, or `name<sep>2`, `name<sep>3`… if taken; the result is added to `used`."""
    out, n = name, 2
    while out in used:
        out = f"{name}{sep}{n}"
        n += 1
    used.add(out)
    return out
