"""Kafka's murmur2 key hash, in C (the ``murmurhash2`` package).

Kafka's default partitioner puts a keyed record in partition
``(murmur2(key) & 0x7fffffff) % partitions``. Stage 1 hashes every scored event's key
(its event id: unique, so the hashes cannot be cached). aiokafka's
``aiokafka.partitioner.murmur2`` (a line-by-line port of the Java code) cost ~3 µs per
key; a leaner pure-Python version ~1.2 µs, still ~2% of the worker's event loop (py-spy
at b60fdf0); this one ~0.15 µs. It is MurmurHash2 with Kafka's seed, the same for every
input (property-tested against aiokafka's).
"""

from __future__ import annotations

from murmurhash2 import murmurhash2

#: the seed of Kafka's Java client (org.apache.kafka.common.utils.Utils.murmur2)
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's Java client computes it (unsigned 32 bits)."""
    return murmurhash2(data, _SEED)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition of ``key`` (Java client's murmur2, positive, modulo)."""
    return (murmurhash2(key, _SEED) & 0x7FFFFFFF) % partitions
