"""The codec's vectorised paths against the code they replaced (tests/edge/store_v1.py): a whole
write's or compaction's blobs encoded in one pass (encode_parts), many blobs decoded in one
(decode_many), columns built and read back without a Python step per value (from_columns,
Block.values), on hostile input: every value kind, NaN payloads, non-ASCII and empty strings,
empty parts, blobs as the old encoder wrote them, damaged blobs."""
from __future__ import annotations

import enum
import struct
import zlib
from itertools import accumulate

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import StoreError
from edge.store import codec

from . import store_v1


class Code(enum.IntEnum):      # an int subclass: from_columns' general path
    A = 7


class Reading(float):          # a float subclass
    pass


def _nan(payload: int) -> float:
    return struct.unpack("<d", struct.pack("<q", 0x7FF8_0000_0000_0000 | payload))[0]


PLAIN = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    st.integers(1, 2**51 - 1).map(_nan),
    st.sampled_from([-0.0, "running", "运行", "", '"\\\n']),
)
ODD = st.one_of(st.just(Code.A), st.floats(allow_nan=False).map(Reading))
I64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def columns(draw, values=PLAIN, max_size=40):
    vals = draw(st.lists(values, max_size=max_size))
    n = len(vals)
    ts = draw(st.lists(I64, min_size=n, max_size=n))
    quality = draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n))
    sid = draw(st.lists(st.integers(1, 2**20), min_size=n, max_size=n))
    return ts, vals, quality, sid


@st.composite
def cuts(draw, n: int) -> list[int]:
    """Ascending part ends of n samples, the last n, empty parts allowed."""
    inner = draw(st.lists(st.integers(0, n), max_size=6))
    return sorted(inner) + [n]


def same_block(a: codec.Block, b: codec.Block) -> None:
    for col in ("ts", "kq", "bits"):
        assert getattr(a, col).dtype == getattr(b, col).dtype, col
        assert np.array_equal(getattr(a, col), getattr(b, col)), col
    assert (a.sid is None) == (b.sid is None)
    if a.sid is not None:
        assert np.array_equal(a.sid, b.sid)
    assert a.strs == b.strs


def same_values(a: list, b: list) -> None:
    """Equal, of the same types, NaN by its bits."""
    assert [type(x) for x in a] == [type(x) for x in b]
    key = [struct.pack("<d", x) if type(x) is float else x for x in a]
    assert key == [struct.pack("<d", x) if type(x) is float else x for x in b]


def same_content(a: codec.Block, b: codec.Block) -> None:
    """The same samples, whatever the string tables look like."""
    assert np.array_equal(a.ts, b.ts)
    assert np.array_equal(a.kq, b.kq)
    assert (a.sid is None) == (b.sid is None)
    if a.sid is not None:
        assert np.array_equal(a.sid, b.sid)
    same_values(a.values(), store_v1.values(b))


@settings(max_examples=300, deadline=None)
@given(columns(st.one_of(PLAIN, ODD)), st.booleans())
def test_from_columns_builds_what_the_per_value_loop_built(cols, with_sid):
    ts, vals, quality, sid = cols
    same_block(codec.from_columns(ts, vals, quality, sid if with_sid else None),
               store_v1.from_columns(ts, vals, quality, sid if with_sid else None))


@settings(max_examples=300, deadline=None)
@given(columns())
def test_values_read_back_as_the_per_value_loop_read_them(cols):
    block = codec.from_columns(*cols)
    same_values(block.values(), store_v1.values(block))
    same_values(block.values(), list(cols[1]))


@settings(max_examples=300, deadline=None)
@given(st.data(), columns(), st.booleans())
def test_each_part_decodes_to_what_encoding_it_alone_stored(data, cols, with_sid):
    ts, vals, quality, sid = cols
    block = codec.from_columns(ts, vals, quality, sid if with_sid else None)
    ends = data.draw(cuts(len(block)))
    blobs = codec.encode_parts(block, ends)
    parts = codec.split(block, ends)
    assert len(blobs) == len(parts)
    for blob, part in zip(blobs, parts):
        back = codec.decode(blob, "part")
        same_content(back, part)
        # The old encoder's bytes of the part hold the same: only compression and the string
        # table's layout may differ.
        same_content(back, codec.decode(store_v1.encode(part), "v1"))
    # ...and all of them decoded at once are the whole block again.
    same_content(codec.decode_many(blobs, lambda i: f"part {i}"), block)


@settings(max_examples=200, deadline=None)
@given(st.data(), columns())
def test_parts_of_a_reordered_block_keep_their_strings(data, cols):
    """A block taken out of order (compaction's latest_wins, a merge) points into its string
    table in any order: each part still stores the strings its samples use."""
    block = codec.from_columns(*cols)
    order = np.array(data.draw(st.permutations(range(len(block)))), dtype=np.int64)
    shuffled = block.take(order)
    ends = data.draw(cuts(len(block)))
    for blob, lo, hi in zip(codec.encode_parts(shuffled, ends), [0, *ends[:-1]], ends):
        same_content(codec.decode(blob, "part"), shuffled.take(np.arange(lo, hi)))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.booleans())
def test_parts_of_one_length_store_the_old_bytes(parts, size, with_sid):
    """A write's devices and a compaction's series often have as many samples each. With no
    string repeated, a part's bytes before compression are the old encoder's."""
    n = parts * size
    block = codec.from_columns([(i * 7919) % 1000 - 500 for i in range(n)],
                               [(f"s{i}", 1.5 * i, 7 - i, i % 2 == 0)[i % 4] for i in range(n)],
                               [i % 3 for i in range(n)], [i // 3 for i in range(n)] if with_sid else None)
    ends = list(range(size, n + 1, size))
    for blob, part in zip(codec.encode_parts(block, ends), codec.split(block, ends)):
        same_content(codec.decode(blob, "part"), part)
        assert zlib.decompress(blob) == zlib.decompress(store_v1.encode(part))


def test_parts_of_one_device_share_no_strings_and_repeat_none():
    block = codec.from_columns([1, 2, 3, 4, 5], ["a", "b", "a", 1.0, "b"], [0] * 5, [1] * 5)
    blobs = codec.encode_parts(block, [3, 5])
    first, second = (codec.decode(b, "p") for b in blobs)
    assert (first.strs, first.values()) == (["a", "b"], ["a", "b", "a"])
    assert (second.strs, second.values()) == (["b"], [1.0, "b"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(columns(max_size=12), st.booleans(), st.booleans()), max_size=8))
def test_decode_many_is_the_concat_of_each_decode(rows):
    """Blobs from both encoders, with and without series ids, empty ones."""
    blobs = []
    for (ts, vals, quality, sid), with_sid, old in rows:
        block = codec.from_columns(ts, vals, quality, sid if with_sid else None)
        blobs.append(store_v1.encode(block) if old else codec.encode(block))
    expected = codec.concat([codec.decode(b, "one") for b in blobs])
    same_block(codec.decode_many(blobs, lambda i: f"row {i}"), expected)


def test_decode_many_of_big_blobs_too(monkeypatch):
    blobs = [codec.encode(codec.from_columns(list(range(k, k + 300)), [f"v{k % 3}"] * 300, [0] * 300))
             for k in range(4)]
    expected = codec.concat([codec.decode(b, "one") for b in blobs])
    same_block(codec.decode_many(blobs, str), expected)           # blob by blob
    monkeypatch.setattr(codec, "_ROW_BY_ROW", 10**9)
    same_block(codec.decode_many(blobs, str), expected)           # vectorised


def test_decode_many_cuts_slabs_anywhere(monkeypatch):
    blocks = [codec.from_columns([k * 10 + j for j in range(k % 4)],
                                 [f"s{k}" if j % 2 else float(j) for j in range(k % 4)],
                                 [0] * (k % 4), [k] * (k % 4)) for k in range(40)]
    blobs = [codec.encode(b) for b in blocks]
    whole = codec.decode_many(blobs, str)
    for slab in (1, 2, 3, 7, 1000):
        monkeypatch.setattr(codec, "_SLAB", slab)
        same_block(codec.decode_many(blobs, str), whole)
    same_block(whole, codec.concat([codec.decode(b, "one") for b in blobs]))


@pytest.mark.parametrize("damage", [
    lambda blob: blob[:-3],                               # not a zlib stream any more
    lambda blob: zlib.compress(zlib.decompress(blob) + b"x"),
    lambda blob: zlib.compress(b"\x02" + zlib.decompress(blob)[1:]),
    lambda blob: zlib.compress(zlib.decompress(blob)[:-1] + b"\xff"),
])
def test_decode_many_names_the_damaged_blob(damage):
    good = [codec.encode(codec.from_columns([i], ["x"], [0], [1])) for i in range(5)]
    blobs = good[:3] + [damage(good[3])] + good[4:]
    with pytest.raises(StoreError, match="recent row 103"):
        codec.decode_many(blobs, lambda i: f"recent row {100 + i}")


def test_blobs_are_sized_zlib_streams_any_reader_takes():
    """Big and small: the window grows with the data, and zlib's own reader reads it."""
    for n in (0, 1, 10, 300, 5_000, 200_000):
        block = codec.from_columns(list(range(n)), [float(i % 97) for i in range(n)], [0] * n)
        blob = codec.encode(block)
        assert zlib.decompress(blob) == zlib.decompress(store_v1.encode(block))
        same_content(codec.decode(blob, "big"), block)


def test_encode_of_nothing():
    assert codec.encode_parts(codec.empty(), []) == []
    assert len(codec.decode(codec.encode(codec.empty()), "empty")) == 0
    same_block(codec.decode_many([], str), codec.empty())


def test_a_blob_of_the_old_encoder_reads_back_the_same_everywhere():
    ts = list(accumulate([5, 1, 1, 2**40, 1]))
    vals = ["运行", 2**63 - 1, True, _nan(0x1234), -0.0]
    old = store_v1.encode(store_v1.from_columns(ts, vals, [0, 1, 2, 0, 1], [3, 3, 4, 4, 9]))
    back = codec.decode(old, "old")
    same_values(back.values(), vals)
    same_block(codec.decode_many([old, old], str),
               codec.concat([codec.decode(old, "a"), codec.decode(old, "b")]))
