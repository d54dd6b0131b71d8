#!/usr/bin/env python3
"""Writes format 4 journal segments for the `journal_segment` fuzz target's seeds, from the
format's description in engine/store/src/frame.rs and segment.rs, not from the engine's code:
a unit test (recovery/tests.rs) reads them back, so the description and the reader agree.

The records' payloads are taken from the format 3 seed `sound` (the codec is not the point).

    python3 fuzz/tools/journal_segments.py     # rewrites fuzz/seeds/journal_segment/*4
"""
import struct
import zlib
from pathlib import Path

SEEDS = Path(__file__).resolve().parent.parent / "seeds" / "journal_segment"
UNKNOWN = 2**64 - 1


def header(segment, size, buffered=False, prev_len=UNKNOWN, fmt=4):
    h = b"WYVERNJ\n" + struct.pack("<IIQQQ", fmt, 1 if buffered else 0, segment, size, prev_len)
    return h + struct.pack("<I", zlib.crc32(h)) + bytes(4)


def frame(payload, batch_start, segment):
    stamped = struct.pack("<QQ", batch_start, segment)
    crc = zlib.crc32(payload + stamped)
    return b"WYF4" + struct.pack("<II", len(payload), crc) + stamped + payload


def v3_payloads():
    b = (SEEDS / "sound").read_bytes()
    at, out = 48, []
    while b[at : at + 4] == b"WYF3":
        (n,) = struct.unpack("<I", b[at + 4 : at + 8])
        out.append(b[at + 20 : at + 20 + n])
        at += 20 + n
    return out


def segment(number, writes, size, fill=b""):
    """`writes` is a list of lists of payloads, one list per group commit."""
    body = b""
    for write in writes:
        start = 48 + len(body)
        body += b"".join(frame(p, start, number) for p in write)
    out = header(number, size) + body
    return out + fill[len(out) :] + bytes(max(0, size - max(len(out), len(fill))))


def main():
    p = v3_payloads()
    size = 2048
    (SEEDS / "sound4").write_bytes(segment(5, [[p[0]], [p[1], p[2]]], size))
    # Segment 9 written over segment 5's file: one write of its own, then segment 5's frames.
    old = segment(5, [[p[0]], [p[1], p[2]]], size)
    (SEEDS / "recycled4").write_bytes(segment(9, [[p[2]]], size, fill=old))
    # Renamed for segment 9 but never written: segment 5's header and frames, nothing of 9's.
    (SEEDS / "stale4").write_bytes(old)


if __name__ == "__main__":
    main()
