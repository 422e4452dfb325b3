"""Time constants shared by the edge tests."""
S_NS = 10**9
MIN_NS = 60 * S_NS
DAY_NS = 86_400 * S_NS
# A fixed UTC midnight (2024-03-10) so day boundaries in tests are known.
DAY0_NS = 1_710_028_800 * S_NS
