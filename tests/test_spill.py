"""The collector's spill of machine-sized rows: a chain counts once committed, a dropped
chain leaves nothing, an id is written once."""

from __future__ import annotations

import threading

import orjson
import pytest

from auditor.spill import RowSpill


def row(n: int, **extra) -> dict:
    return {"id": f"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/"
                  f"virtualMachines/vm{n}", "type": "microsoft.compute/virtualmachines", **extra}


def test_committed_chains_are_kept_dropped_ones_are_not_and_ids_are_written_once():
    spill = RowSpill()
    first, second, failed = object(), object(), object()
    spill.page(first, [row(1), row(2)])
    spill.page(failed, [row(9)])
    spill.page(second, [row(2, name="again"), row(3), row(3)])
    spill.page(first, [row(4)])
    spill.drop(failed)
    spill.commit(first)
    spill.commit(second)
    spill.finish()
    rows = list(spill.parsed())
    assert sorted(r["id"][-3:] for r in rows) == ["vm1", "vm2", "vm3", "vm4"]
    assert next(r for r in rows if r["id"].endswith("vm2")).get("name") is None  # first kept
    assert spill.rows == 4
    blocks = list(spill.blocks())
    assert [orjson.loads(line)["id"][-3:] for line in blocks[0].data.split(b"\n") if line] \
        == ["vm1", "vm2", "vm4", "vm3"]
    spill.close()


def test_pages_are_written_by_the_spill_thread_not_the_caller():
    spill = RowSpill()
    writers = []
    original = spill._write

    def write(data):
        writers.append(threading.current_thread().name)
        return original(data)

    spill._write = write
    chain = object()
    spill.page(chain, [row(1)])
    spill.commit(chain)
    spill.finish()
    assert writers == ["image-audit-spill"]
    spill.close()


def test_a_failure_in_the_spill_thread_is_raised_by_finish():
    spill = RowSpill()
    chain = object()
    spill.page(chain, [{"no": "id"}])
    spill.commit(chain)
    with pytest.raises(KeyError):
        spill.finish()
    spill.close()


def test_a_streaming_spill_hands_on_committed_rows_as_blocks_as_they_are_committed(monkeypatch):
    monkeypatch.setattr("auditor.spill.BLOCK_BYTES", 1)  # a block per committed segment
    spill = RowSpill(stream=True)
    stream = spill.streamed()
    first, failed, second = object(), object(), object()
    spill.page(first, [row(1), row(2)])
    spill.page(failed, [row(9)])
    spill.commit(first)
    block = next(stream)  # handed on before the other chains end, before finish
    assert [orjson.loads(line)["id"][-3:] for line in block.data.split(b"\n") if line] \
        == ["vm1", "vm2"]
    spill.drop(failed)
    spill.page(second, [row(2, name="again"), row(3)])
    spill.commit(second)
    assert [r["id"][-3:] for _, r in next(stream).again()] == ["vm3"]  # vm2 was written once
    spill.finish()
    assert list(stream) == []  # the end
    assert sorted(r["id"][-3:] for r in spill.parsed()) == ["vm1", "vm2", "vm3"]
    spill.close()


def test_rows_short_of_a_block_are_handed_on_at_the_end_and_close_ends_the_stream():
    spill = RowSpill(stream=True)
    chain = object()
    spill.page(chain, [row(1)])
    spill.commit(chain)
    got = []
    reader = threading.Thread(target=lambda: got.extend(spill.streamed()))
    reader.start()
    spill.finish()
    reader.join(5)
    assert not reader.is_alive() and [r["id"][-3:] for _, r in got[0].again()] == ["vm1"]
    spill.close()
    failed = RowSpill(stream=True)
    reader = threading.Thread(target=lambda: list(failed.streamed()))
    reader.start()
    failed.close()  # a collection that failed ends the stream too
    reader.join(5)
    assert not reader.is_alive()


def test_an_abandoned_stream_never_holds_back_the_pages(monkeypatch):
    monkeypatch.setattr("auditor.spill.BLOCK_BYTES", 1)
    spill = RowSpill(stream=True)
    spill.abandon()  # the builder failed before reading a block
    for n in range(20):  # more blocks than the stream's queue holds
        chain = object()
        spill.page(chain, [row(n)])
        spill.commit(chain)
    done = threading.Thread(target=spill.finish)
    done.start()
    done.join(5)
    assert not done.is_alive() and spill.rows == 20
    spill.close()
