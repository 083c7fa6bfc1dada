"""The record store: manifest identity, exactly-once appends, torn tails, shards."""

from __future__ import annotations

import json

import pytest

from builders.runs import ManifestMismatchError, RunStore, all_records, cut_torn_tail, request_key, shard_of


def test_request_key_is_stable_and_order_sensitive():
    assert request_key("a", {"x": 1, "y": 2}) == request_key("a", {"y": 2, "x": 1})
    assert request_key("a", ["p", "q"]) != request_key("a", ["q", "p"])


def test_resume_skips_done_keys_and_counts_rejects(tmp_path):
    with RunStore(tmp_path, {"model": "m"}) as store:
        store.add({"key": "k1", "text": "one"})
        store.reject({"key": "k2", "reason": "short"})
        store.reject({"key": "k2", "reason": "short"})
    again = RunStore(tmp_path, {"model": "m"})
    assert again.done == {"k1"} and again.rejected_attempts["k2"] == 2
    again.close()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["identity"] == {"model": "m"}


def test_other_settings_refuse_to_resume(tmp_path):
    RunStore(tmp_path, {"model": "m", "seed": 0}).close()
    with pytest.raises(ManifestMismatchError, match="seed"):
        RunStore(tmp_path, {"model": "m", "seed": 1})


@pytest.mark.parametrize("tail", [b'{"key": "k3", "te', b'{"key": "k3"', b"garbage\n"])
def test_torn_last_line_is_cut(tmp_path, tail):
    path = tmp_path / "shard.jsonl"
    path.write_bytes(b'{"key": "k1"}\n{"key": "k2"}\n' + tail)
    cut_torn_tail(path)
    assert path.read_bytes() == b'{"key": "k1"}\n{"key": "k2"}\n'


def test_store_repairs_a_torn_shard_before_appending(tmp_path):
    with RunStore(tmp_path, {}) as store:
        store.add({"key": "k1"})
    shard = next((tmp_path / "records").glob("*.jsonl"))
    shard.write_bytes(shard.read_bytes() + b'{"key": "k2", "tex')
    with RunStore(tmp_path, {}) as store:
        assert store.done == {"k1"}
        store.add({"key": "k2"})
    assert [r["key"] for r in all_records(tmp_path)] == ["k1", "k2"]


def test_shards_partition_the_keys(tmp_path):
    keys = [request_key(i) for i in range(200)]
    owners = [
        [k for k in keys if RunStore(tmp_path / f"s{i}", {}, num_shards=3, shard_index=i).mine(k)] for i in range(3)
    ]
    assert sorted(k for part in owners for k in part) == sorted(keys)
    assert all(40 < len(part) < 90 for part in owners)
    assert all(shard_of(k, 3) == i for i, part in enumerate(owners) for k in part)
    with pytest.raises(ValueError, match="outside"):
        RunStore(tmp_path / "x", {}, num_shards=2, shard_index=2)
