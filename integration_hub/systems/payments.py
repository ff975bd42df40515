"""The payment processor's settlement reports: Stripe's "Itemized payout reconciliation" report
(`payout_reconciliation.itemized.5`) as CSV files dropped in a landing folder.

One line per balance transaction paid out (`balance_transaction_id`), amounts in major units as
the report gives them (`gross`, `fee`, `net`), dated by the payout's `automatic_payout_effective_at`.
The report is run with the column `payment_metadata[payment_id]`: the accounting system's payment
id, which the business stores in the PaymentIntent's metadata and reconciliation matches on.
Stripe's bracketed metadata columns land as `<object>_metadata_<key>` (`landed_name`).

Longer than 400 lines because this docstring records every landing decision (what happens
to each kind of file), next to the code that makes it; the code itself is about 350 lines.

A load looks at every entry of the folder whose name matches `*.csv` (or only the ones named
by `files=`), each on its own: one entry's problem never stops another file's load, and never
fails (or retries) the step. Each file ends in one of these, listed in `settlement_files`
(`file_name, sha256, rows, quarantined, status, reason, seen_at`; appended, a history) and in
the load's report (`FileReport`: the asset's metadata and the audit row's details):

- `loaded`: a new file; its lines land in `settlement` (key `file_name, balance_transaction_id`).
- `replaced`: a loaded name with new content (a processor's correction, or the rest of a file
  that was loaded half). The new version replaces the old one's lines: lines of that file not
  in the new version go, new ones come. dlt's `delete-insert` merge with `merge_key=file_name`
  deletes the file's stored lines and inserts the new ones in one transaction; a new version
  without one loadable line sends a marker row flagged `_hub_deleted` (dlt's hard-delete column,
  never stored) so the old lines still go.
- skipped (not listed again): the same bytes as the version loaded, by SHA-256.
- `rejected`: the entry cannot be read as a settlement report; logged at WARNING with its name
  and the reason, counted in the report. Remembered by SHA-256 (an entry that is no file: by
  what it is), so the same bytes are not read again every run; other bytes are tried again.
  A rejected new version of a loaded file leaves the loaded version's lines in place.
- waiting (not listed): modified less than `HUB_LANDING_SETTLE_SECONDS` (default 2 s,
  `settings.landing_settle_seconds`) ago, or changed while it was read: it may still be being
  written, so a later run takes it (the landing sensor asks for that run once it settled).

Decisions, and why:
1. Rejected, with these reasons: not a regular file (a directory, a pipe, or a symbolic link:
   links are never followed, so a link to a file elsewhere lands nothing); unreadable (no
   permission: remembered by its mode too, so a `chmod` is tried again); empty; NUL bytes or
   not UTF-8 (a binary file, another encoding); a line longer than `MAX_LINE_BYTES` (1 MiB,
   the parser's limit: pyarrow's block is larger, so every line under it parses); no
   report header (the first line must name every column of `REPORT_COLUMNS`; Stripe's other
   columns land as text if their names are distinct and not the hub's own: `file_name`,
   `_dlt_*`, `_hub_deleted`); anything else pyarrow cannot parse (its message is the reason).
2. A UTF-8 byte order mark (Excel's "CSV UTF-8") is dropped before the header is read.
3. Rows keep the contract or go to `quarantine.payments__settlement` with the reason:
   `automatic_payout_effective_at` a valid date (`YYYY-MM-DD`, or with Stripe's time of day
   `YYYY-MM-DD HH:MM:SS`), no later than tomorrow in UTC (a report run in a timezone east of
   UTC dates payouts by its own day, up to a day ahead of UTC's; later is an error);
   `payment_metadata[payment_id]` present; `gross`, `fee`, `net` decimal text, none negative
   (the hub reconciles charges: refund and dispute lines, negative, are quarantined, not
   netted); `net == gross - fee` exactly (to the cent). A line with the wrong number of
   fields is quarantined too.
4. Lines of one file with the same `balance_transaction_id`: the same content is one line sent twice and
   lands once; different content contradicts itself, so every such line goes to quarantine
   with a reason naming the duplicate, and none lands.
5. The settle time judges a file by its mtime (a write moves it) when listed, and the file
   must keep its size and mtime while it is read. A writer that pauses longer than the settle
   time gets its file loaded in part; its last write changes the content, and (6) replaces the
   part with the whole. So the default is short: it spares most half loads without holding
   back files written whole by a rename (the sandbox's); slow uploaders get a longer setting.
   A file dated in the future (the writer's clock ahead) waits until its mtime is the settle
   time in the past.
6. See `replaced` above: a corrected file lands without anyone editing `settlement_files`.
7. Names come from the folder's listing, never from a path: `files=` names must be plain
   names of entries in the folder, else the source refuses to start with a one-line error
   (before any load, so the step is not retried); files are opened without following links.

A file is parsed by pyarrow and lands as one Arrow table (all text, as the CSV says it):
no per-row dicts, no dlt normalizer pass.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from integration_hub import settings
from integration_hub.systems import System, TraceKeys
from integration_hub.systems.kit.arrow import normalized, random_row_ids
from integration_hub.systems.kit.contract import (
    DECIMAL_TEXT,
    TEXT,
    Contract,
    Rejects,
    date_not_after,
    difference,
    not_negative,
)
from integration_hub.systems.kit.files import (
    Entry,
    FileReport,
    NotLoadable,
    StillChanging,
    digest,
    entries,
    open_file,
    plain_names,
    read_settled,
)

NAME = "payments"
PATTERN = "*.csv"
DESCRIPTIONS = {
    "settlement": "Balance transactions paid out, from Stripe's itemized payout reconciliation reports, "
    "one line per balance transaction, with file_name.",
}
# The columns of Stripe's report the hub needs: a file whose first line lacks one is no such report.
PAYMENT_ID = "payment_metadata[payment_id]"  # the accounting payment id, from the PaymentIntent's metadata
REPORT_COLUMNS = (
    "automatic_payout_id", "automatic_payout_effective_at", "balance_transaction_id", "currency",
    "gross", "fee", "net", "reporting_category", PAYMENT_ID,
)  # fmt: skip
_METADATA = re.compile(r"^(\w+_metadata)\[(\w+)\]$")
MAX_LINE_BYTES = 1 << 20
_BLOCK_BYTES = 4 * MAX_LINE_BYTES  # pyarrow's parse block: any line under the limit fits in one
_BOM = b"\xef\xbb\xbf"
DELETED = "_hub_deleted"  # dlt's hard-delete flag: only on the marker that empties a replaced file
# A processor east of UTC dates its report by its own day: up to one day ahead of UTC's date.
AHEAD_OF_UTC = dt.timedelta(days=1)


def landed_name(column: str) -> str:
    """A report column as it lands: Stripe's `payment_metadata[key]` as `payment_metadata_key`."""
    return _METADATA.sub(r"\1_\2", column)


def latest_settlement_date() -> dt.date:
    """The latest settlement date a report can carry now."""
    return (dt.datetime.now(dt.UTC) + AHEAD_OF_UTC).date()


CONTRACTS = {
    "settlement": Contract(
        "balance_transaction_id",
        {
            "automatic_payout_effective_at": TEXT,
            "balance_transaction_id": TEXT,
            landed_name(PAYMENT_ID): TEXT,
            "gross": DECIMAL_TEXT,
            "fee": DECIMAL_TEXT,
            "net": DECIMAL_TEXT,
        },
        rules=(
            date_not_after("automatic_payout_effective_at", latest_settlement_date, with_time=True),
            not_negative("gross", "fee", "net"),
            difference("net", "gross", "fee"),
        ),
    )
}
log = logging.getLogger("integration_hub.systems")


def pending(folder: Path) -> list[Entry]:
    """The entries of the landing folder named like a report, by name (links and directories too)."""
    return entries(folder, PATTERN)


@dlt.source(name=NAME)
def source(
    folder: str,
    files: Iterable[str] | None = None,
    rejects: Rejects | None = None,
    report: FileReport | None = None,
):
    """Settlement lines of the files in `folder` (or only `files`, plain names in it) not loaded before."""
    rejects = rejects if rejects is not None else Rejects()
    report = report if report is not None else FileReport()
    landing = Path(folder)
    wanted = plain_names(landing, PATTERN, list(files)) if files else None

    @dlt.resource(
        name="settlement",
        primary_key=["file_name", "balance_transaction_id"],
        merge_key="file_name",  # a file's new version replaces all of its stored lines
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    )
    def settlement() -> Iterator[pa.Table | list[dict]]:
        state = dlt.current.source_state()
        loaded: dict[str, str] = state.setdefault("files", {})  # name -> sha256 of the version loaded
        refused: dict[str, str] = state.setdefault("rejected", {})  # name -> sha256 (or marker) rejected
        settle, now = settings.landing_settle_seconds(), time.time()
        for entry in pending(landing):
            if wanted is None or entry.name in wanted:
                yield from _take(
                    entry, loaded, refused, rejects.by_resource["settlement"], report, settle, now
                )

    # The history table's hints first: a table variant starts as a copy of the resource's hints,
    # and the hard-delete column below belongs to `settlement` only.
    settlement.apply_hints(
        table_name=FILES_TABLE, write_disposition="append", primary_key=[], merge_key=[],
        columns=FILES_COLUMNS, create_table_variant=True,
    )  # fmt: skip
    settlement.apply_hints(columns={DELETED: {"data_type": "bool", "nullable": True, "hard_delete": True}})
    return settlement


def _take(
    entry: Entry,
    loaded: dict[str, str],
    refused: dict[str, str],
    rejects: list,
    report: FileReport,
    settle: float,
    now: float,
) -> Iterator[pa.Table | list[dict]]:
    """What one landing entry adds to the load: its lines and its `settlement_files` row, or nothing."""
    name = entry.name
    if entry.problem is not None:
        yield from _reject(entry.name, entry.marker, None, entry.problem, loaded, refused, report)
        return
    if not entry.settled(settle, now):
        _wait(name, settle, report)
        return
    try:
        data = read_settled(entry)
    except StillChanging:
        _wait(name, settle, report)
        return
    except NotLoadable as exc:
        yield from _reject(entry.name, entry.marker, None, str(exc), loaded, refused, report)
        return
    except OSError as exc:
        st = entry.stat
        marker = f"unreadable:{st.st_mode:o}:{st.st_size}:{st.st_mtime_ns}"
        yield from _reject(
            entry, marker, None, f"cannot be read: {exc.strerror or exc}", loaded, refused, report
        )
        return
    yield from _land(name, digest(data), data, loaded, refused, rejects, report)


def _land(
    name: str,
    sha: str,
    data: bytes,
    loaded: dict[str, str],
    refused: dict[str, str],
    rejects: list,
    report: FileReport,
) -> Iterator[pa.Table | list[dict]]:
    """A readable, settled file: skipped when unchanged, else its lines (new, or replacing a
    previous version's) and its `settlement_files` row."""
    if loaded.get(name) == sha:
        refused.pop(name, None)
        report.skipped.append(name)
        return
    if refused.get(name) == sha:
        report.still_rejected.append(name)
        return
    try:
        table, refused_rows = _read(name, data)
    except NotLoadable as exc:
        yield from _reject(name, sha, sha, str(exc), loaded, refused, report)
        return
    previous = loaded.get(name)
    loaded[name] = sha
    refused.pop(name, None)
    rejects.extend(refused_rows)
    if previous is None:
        report.loaded[name] = table.num_rows
    else:
        log.warning(
            "settlement file %s changed since it was loaded (sha256 %s… → %s…): its %d lines replace "
            "the previous version's (%d lines quarantined)",
            name, previous[:12], sha[:12], table.num_rows, len(refused_rows),
        )  # fmt: skip
        report.replaced[name] = table.num_rows
    if table.num_rows:
        yield _with_row_columns(table)
    elif previous is not None:  # nothing to insert, so only a marker can delete the old lines
        yield _with_row_columns(
            pa.table({"file_name": [name], "balance_transaction_id": [""], DELETED: [True]})
        )
    reason = None if previous is None else f"replaces the version with sha256 {previous[:12]}…"
    status = "loaded" if previous is None else "replaced"
    yield _files_table(_file_row(name, sha, table.num_rows, len(refused_rows), status, reason))


def _wait(name: str, settle: float, report: FileReport) -> None:
    log.info(
        "settlement file %s changed within the last %g s (HUB_LANDING_SETTLE_SECONDS): it may still be "
        "being written and waits for a later run",
        name, settle,
    )  # fmt: skip
    report.waiting.append(name)


def _reject(
    name: str,
    marker: str,
    sha: str | None,
    reason: str,
    loaded: dict[str, str],
    refused: dict[str, str],
    report: FileReport,
) -> Iterator[list[dict]]:
    """Record a file that cannot be loaded, once per content (or, for a non-file, per what it is)."""
    if refused.get(name) == marker:
        report.still_rejected.append(name)
        return
    refused[name] = marker
    if name in loaded:
        reason += "; the version loaded before stays"
    log.warning(
        "settlement file %s rejected: %s. Nothing of it is loaded; it is tried again when it changes.",
        name,
        reason,
    )
    report.rejected[name] = reason
    yield _files_table(_file_row(name, sha, 0, 0, "rejected", reason))


def _read(name: str, data: bytes) -> tuple[pa.Table, list[tuple[str, str, dict]]]:
    """The file's rows as text (staging casts them), each with its file name, and the refused ones
    as `(balance_transaction_id, reason, row)`; NotLoadable when the file is no such report at all.

    pyarrow parses the file and the contract is checked column-wise; only doubted rows, lines
    with the wrong number of fields and duplicates take the row path to the quarantine.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data.strip():
        raise NotLoadable("an empty file: no header line")
    if b"\0" in data:
        raise NotLoadable("binary content (NUL bytes), not CSV text")
    try:
        first_line = data[: data.find(b"\n") + 1 or len(data)].decode("utf-8")
        data.decode("utf-8")  # the whole file: refused before any row is taken from it
    except UnicodeDecodeError as exc:
        raise NotLoadable(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): "
            "a binary file or another encoding"
        ) from None
    _check_lines(data)
    header = _header(first_line)
    landed = [landed_name(c) for c in header]
    refused: list[tuple[str, str, dict]] = []

    def invalid_row(row) -> str:
        try:
            fields = next(csv.reader([row.text]), [])
        except csv.Error:
            fields = row.text.split(",")
        record = dict(zip(landed, fields, strict=False)) | {"file_name": name}
        reason = f"expected {row.expected_columns} fields, got {row.actual_columns}"
        refused.append((str(record.get("balance_transaction_id")), reason, record))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise NotLoadable(f"cannot be parsed as CSV: {str(exc).splitlines()[0][:200]}") from None
    table = table.rename_columns(landed).append_column(
        "file_name", pa.array([name] * table.num_rows, pa.string())
    )
    contract = CONTRACTS["settlement"]
    table, duplicates = contract.deduplicate(table)
    good, broken = contract.split(table)
    return good, refused + duplicates + broken


def _check_lines(data: bytes) -> None:
    """NotLoadable when a line is longer than the parser takes."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    lengths = np.diff(np.concatenate(([-1], ends, [len(data)]))) - 1
    longest = int(lengths.argmax())
    if lengths[longest] > MAX_LINE_BYTES:
        raise NotLoadable(
            f"line {longest + 1} is {int(lengths[longest])} bytes long, over the parser's limit of "
            f"{MAX_LINE_BYTES} bytes"
        )


def _header(line: str) -> list[str]:
    """The column names of a settlement report's first line; NotLoadable when it is none."""
    try:
        header = next(csv.reader([line.rstrip("\r\n")]), [])
    except csv.Error as exc:
        raise NotLoadable(f"the first line is no CSV header ({exc})") from None
    shown = ",".join(header)
    missing = [c for c in REPORT_COLUMNS if c not in header]
    if missing:
        raise NotLoadable(
            f"no itemized payout reconciliation report header: the first line lacks {', '.join(missing)} "
            f"(expected {','.join(REPORT_COLUMNS)}, got {shown!r:.120})"
        )
    seen: dict[str, str] = {}
    for i, column in enumerate(header, start=1):
        if not column.strip():
            raise NotLoadable(f"the header's column {i} has no name (got {shown!r:.120})")
        as_stored = normalized(landed_name(column))
        if as_stored in seen:
            raise NotLoadable(f"the header names one column twice: {seen[as_stored]!r} and {column!r}")
        if as_stored in ("file_name", DELETED) or as_stored.startswith("_dlt"):
            raise NotLoadable(f"the header's column {column!r} is one the hub adds itself")
        seen[as_stored] = column
    return header


def _with_row_columns(table: pa.Table) -> pa.Table:
    """dlt's load id and row ids, which rows loaded as dicts carry: retention and lineage read them."""
    load_id = dlt.current.load_package_state()["load_id"]
    table = table.append_column("_dlt_load_id", pa.array([load_id] * table.num_rows, pa.string()))
    table = table.append_column("_dlt_id", pa.array(random_row_ids(table.num_rows), pa.string()))
    # Not null where dlt's schema says so (keys and row ids), so the two schemas agree.
    required = {"file_name", "balance_transaction_id", "_dlt_load_id", "_dlt_id"}
    fields = [f.with_nullable(f.name not in required) for f in table.schema]
    return table.cast(pa.schema(fields))


FILES_TABLE = "settlement_files"
FILES_COLUMNS = {
    "file_name": {"data_type": "text", "nullable": False},
    "sha256": {"data_type": "text", "nullable": True},
    "rows": {"data_type": "bigint", "nullable": False},
    "quarantined": {"data_type": "bigint", "nullable": True},
    "status": {"data_type": "text", "nullable": False},
    "reason": {"data_type": "text", "nullable": True},
    "seen_at": {"data_type": "timestamp", "nullable": False},
}


def _files_table(row: dict):
    """A row for `settlement_files`: appended, a history of every file the load looked at."""
    return dlt.mark.with_table_name([row], FILES_TABLE)


def _file_row(
    name: str, sha: str | None, rows: int, quarantined: int, status: str, reason: str | None = None
) -> dict:
    return {
        "file_name": name,
        "sha256": sha,
        "rows": rows,
        "quarantined": quarantined,
        "status": status,
        "reason": reason,
        "seen_at": dt.datetime.now(dt.UTC),
    }


def count(folder: str) -> dict[str, int]:
    """Settlement lines in the landing folder now: every regular file's lines but its header
    (links, directories and other non-files hold none)."""
    lines = 0
    for entry in pending(Path(folder)):
        if entry.problem is not None:
            continue
        breaks, last = 0, b""
        try:
            with open_file(entry.path) as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    breaks, last = breaks + chunk.count(b"\n"), chunk[-1:]
        except (OSError, NotLoadable):  # unreadable now: the load reports it as rejected
            continue
        lines += max(0, breaks + (1 if last not in (b"", b"\n") else 0) - 1)
    return {"settlement": lines}


SYSTEM = System(
    name=NAME,
    description="The payment processor's payout reports (Stripe's itemized payout reconciliation), dropped as CSV files.",
    location="folder",
    default_location=lambda: str(settings.landing_dir(NAME)),
    resources=DESCRIPTIONS,
    source=source,
    incremental=False,
    file_pattern=PATTERN,
    files_table=FILES_TABLE,
    raw_keys={"settlement": "file_name || ':' || balance_transaction_id"},
    count=count,
    trace=TraceKeys(raw=(("payment_id", "settlement", landed_name(PAYMENT_ID)),)),
)
