"""Operator commands for a data directory's journal: verify it, and inspect its records.

Both only read: `verify` reports the torn tail that recovery would cut, without cutting it.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from pyexchange import _core


def verify(data_dir: str, out: TextIO | None = None) -> int:
    """Prints what the journal holds; exit status 0 if recovery would succeed, 1 if not."""
    out = out or sys.stdout
    if not os.path.isdir(data_dir):
        print(f"error: {data_dir} is not a directory", file=sys.stderr)
        return 1
    try:
        found = _core.journal_verify(data_dir)
    except RuntimeError as error:
        print(f"journal damaged, recovery would stop: {error}", file=sys.stderr)
        return 1
    if found["records"] == 0:
        print(f"{data_dir}: journal empty", file=out)
    else:
        print(f"{data_dir}: {found['records']} records, seq {found['first_seq']} to {found['last_seq']}", file=out)
    if found["tail_damaged"] is not None:
        file, offset, dropped, reason = found["tail_damaged"]
        print(f"torn tail: {dropped} bytes at {file} offset {offset} ({reason}); recovery will cut them", file=out)
    else:
        print("tail intact", file=out)
    return 0


def inspect(data_dir: str, from_seq: int, limit: int, out: TextIO | None = None) -> int:
    """Prints up to `limit` records from `from_seq`: seq, file:offset, timestamp, command."""
    out = out or sys.stdout
    try:
        records = _core.journal_records(data_dir, from_seq, limit)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for seq, file, offset, ts_ns, command, _payload in records:
        print(f"{seq}\t{os.path.basename(file)}:{offset}\tts_ns={ts_ns}\t{command}", file=out)
    if not records:
        print(f"no records from seq {from_seq}", file=out)
    return 0
