"""`interpret_batch`: a batch through the interpreter's `interpret_many`, each outcome its own
(daemon.intake.inbound)."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.core.events import Interpretation, RawDelivery, Unprocessable
from daemon.intake.inbound import interpret_batch


def raw(n: int, channel: str = "imap") -> RawDelivery:
    return RawDelivery(n, channel, None, "message/rfc822", b"", {})


class Batched:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, delivery: RawDelivery) -> Interpretation:
        raise AssertionError("the batch path must be used")

    def interpret_many(self, raws: Sequence[RawDelivery]) -> list[Interpretation | Exception]:
        self.batches.append([r.id for r in raws])
        return [Interpretation(ignored_reason="fine"), Unprocessable("no subject"),
                RuntimeError("worker died")]


def one(delivery: RawDelivery) -> Interpretation | str | Exception:
    return f"alone {delivery.id}"


def test_each_outcome_of_a_batch_is_its_own() -> None:
    interpreter = Batched()
    meanings = interpret_batch(interpreter, [raw(1), raw(2), raw(3)], one)
    assert interpreter.batches == [[1, 2, 3]]
    assert meanings[0] == Interpretation(ignored_reason="fine")
    assert meanings[1] == "no subject"  # the reason, as for one delivery
    assert isinstance(meanings[2], RuntimeError)  # retried with backoff by the pipeline


def test_without_interpret_many_or_across_channels_each_goes_alone() -> None:
    assert interpret_batch(lambda d: Interpretation(), [raw(1), raw(2)], one) == [
        "alone 1", "alone 2"]
    assert interpret_batch(Batched(), [raw(1), raw(2, "smtp")], one) == ["alone 1", "alone 2"]
