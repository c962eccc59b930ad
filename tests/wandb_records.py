"""Read the records of an offline W&B run (`run-<id>.wandb`) without a W&B server.

The file is a 7-byte header then LevelDB-style log blocks of 32 KiB; each chunk has a 7-byte header
(crc32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last) and carries a protobuf Record.
"""
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024


def read_records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B data file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        else:
            pending += chunk


def summary_and_history_keys(path: Path):
    """The run's final summary (key -> JSON text) and every key logged to its history."""
    summary, history = {}, set()
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = item.value_json
        elif kind == "history":
            history.update(item.key or "/".join(item.nested_key) for item in record.history.item)
    return summary, history
