"""Evidence bundles: a review window's devices, rollups, events and ledger in one zip that a
reviewer checks and verifies offline, without trusting the supplier (docs/bundle.md).

    export_bundle(store_path, "bundle.zip", day_from, day_to)       # edge.bundle.write
    with Bundle.open("bundle.zip") as b:                             # edge.bundle.format
        result = check_bundle(b, CheckOptions(key="ed25519:…"))      # edge.bundle.check
"""
from .check import CheckOptions, IntegrityResult, Problem, check_bundle, check_path
from .format import FORMAT, VERSION, Bundle, BundleError, RollupRef, canon, entry_hash
from .write import ExportResult, export_bundle

__all__ = ["Bundle", "BundleError", "CheckOptions", "ExportResult", "FORMAT", "IntegrityResult",
           "Problem", "RollupRef", "VERSION", "canon", "check_bundle", "check_path",
           "entry_hash", "export_bundle"]
