"""The verifier: distinct active devices, OEE, energy and voucher policy, from rollups."""
