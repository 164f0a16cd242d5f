"""Kafka's murmur2 key hash, about 3x faster than aiokafka's pure-Python one.

Kafka's default partitioner puts a keyed record in partition
``(murmur2(key) & 0x7fffffff) % partitions``. Stage 1 hashes every scored event's key
(its event id: unique, so the hashes cannot be cached), and aiokafka's
``aiokafka.partitioner.murmur2`` (a line-by-line port of the Java code, masking after
every operation and indexing byte by byte) cost ~3 µs per key, ~4% of the stage. This
one reads the 4-byte words with one ``struct`` call and masks only where a value can
exceed 32 bits; the result is the same for every input (property-tested against
aiokafka's).
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF

#: little-endian unsigned 32-bit words, one compiled Struct per word count
_WORDS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's Java client computes it (unsigned 32 bits)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    count = length >> 2
    if count:
        words = _WORDS.get(count)
        if words is None:
            words = _WORDS[count] = struct.Struct(f"<{count}I")
        for k in words.unpack_from(data):
            k = (k * _M) & _MASK
            k = ((k ^ (k >> 24)) * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        tail = count << 2
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition of ``key`` (Java client's murmur2, positive, modulo)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
