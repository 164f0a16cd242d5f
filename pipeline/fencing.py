"""Fence tokens: which of two writers of a partition is the legitimate one.

A worker that takes over a partition writes a *fence* record carrying a token, and
every record it writes afterwards carries the same token; readers ignore records whose
token is below a fence already read (:func:`pipeline.aggregate.complete_publishes`).
A worker that lost the partition without knowing it yet (frozen past its session
timeout, say) may still write, but under a lower token.

The order has to come from something the broker orders, not from what a writer read:
with "the highest token in the log, plus one", a worker frozen in the middle of a
takeover of an older generation, thawed, reads the new owner's fence and outbids it,
and the new owner's writes are the ones ignored. So a token is
``epoch << EPOCH_SHIFT | consumer group generation``: the generation orders the writers
of one group's life, and the epoch grows only when Kafka forgot the group (every member
gone for longer than its retention: generations start again from 1, below the fences of
its previous life). A generation below one already fenced is either that or a writer
whose generation is over; only the broker can tell them apart, so such a token is
written only after the broker accepted an offset commit in that generation
(:attr:`Fence.needs_confirmation`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

#: Fence tokens: ``epoch << EPOCH_SHIFT | consumer group generation``.
EPOCH_SHIFT = 32


@dataclass(frozen=True)
class Fence:
    """The token of a worker taking partitions over (see :func:`next_fence`)."""

    #: the token to fence with and write under
    token: int
    #: the token outbids a fence of a later generation: right only if the group's
    #: generations started again (Kafka forgot the group), so it may be written only
    #: once the broker confirmed the generation is current (an offset commit accepted
    #: in it); otherwise :attr:`stale` is the worker's token
    needs_confirmation: bool
    #: the token of a writer whose generation is over: below the fences read, so
    #: whatever it writes is ignored
    stale: int


def next_fence(tokens: Iterable[int], generation: int) -> Fence:
    """The fence of a worker in consumer group ``generation`` taking over partitions
    whose fence records carry ``tokens``."""
    generation = max(generation, 0)
    highest = max(tokens, default=None)
    if highest is None:
        token = 1 << EPOCH_SHIFT | generation
        return Fence(token, False, token)
    epoch, fenced_generation = highest >> EPOCH_SHIFT, highest & ((1 << EPOCH_SHIFT) - 1)
    same_epoch = epoch << EPOCH_SHIFT | generation
    if generation >= fenced_generation:
        return Fence(same_epoch, False, same_epoch)
    return Fence((epoch + 1) << EPOCH_SHIFT | generation, True, same_epoch)


async def confirm_generation(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], generation: int
) -> bool:
    """Whether ``consumer``'s group ``generation`` is still current, as the broker says:
    an offset commit of ``partitions`` (assigned to it), at the offsets the group
    already committed, is accepted in it. False for a member whose generation is over
    (it has not learnt it yet); other broker errors raise."""
    tps = list(partitions)
    offsets = {tp: await consumer.committed(tp) for tp in tps}
    missing = [tp for tp, offset in offsets.items() if offset is None]
    if missing:  # nothing committed: where the consumer would start (earliest)
        offsets.update(await consumer.beginning_offsets(missing))
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError):
        return False
    # the commit went out in the coordinator's generation: a rejoin since the caller's
    # takeover began would have made it the next one's (aiokafka has no public accessor)
    return bool(consumer._coordinator.generation == generation)
