"""The past days a live-edge load covered, reported as materializations of their partitions.

Incremental sources are daily-partitioned, and their scheduled loads run at the live edge:
from the stored cursor up to now. A first load (no cursor) reads the system's whole history,
a load after days without one (the daemon off) reads those days; without these events the
UI would show those partitions as missing though their data is in raw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg


def covered_days(
    context: dg.AssetExecutionContext, results: list[dg.MaterializeResult], before: dict[str, str]
) -> Iterator[dg.AssetMaterialization]:
    """The past days a live-edge load covered, each reported as a materialization of its partition.

    A live-edge load reads everything since the resource's stored cursor: the first load (no
    cursor) the system's whole history, a load after days without one (the daemon off) those
    days. So the partitions from the cursor's day (from the first partition, without a cursor)
    up to the live edge hold their data as much as the live edge does, and the UI should read
    them as filled, not missing. Each event says which load covered it; a day already
    materialized is not reported again. A cursor that is no timestamp reports nothing past the
    live edge.
    """
    live = context.partition_key
    keys = context.assets_def.partitions_def.get_partition_keys()
    for result in results:
        resource = result.asset_key.path[-1]
        first = _cursor_day(before.get(resource)) if resource in before else keys[0]
        if first is None:
            continue
        done = context.instance.get_materialized_partitions(result.asset_key)
        covered = [k for k in keys if first <= k < live and k not in done]
        for key in covered:
            yield dg.AssetMaterialization(
                asset_key=result.asset_key,
                partition=key,
                description=f"Covered by the live-edge load of partition {live} (run {context.run_id[:8]}).",
                metadata={
                    "covered_by_partition": live,
                    "covered_from": before.get(resource) or "the beginning",
                },
            )
        if covered:
            context.log.info(f"{'/'.join(result.asset_key.path)}: the load covered {len(covered)} past day(s) "
                             f"{covered[0]}..{covered[-1]}; reported as materialized")  # fmt: skip


def _cursor_day(cursor: str | None) -> str | None:
    """The UTC day (`YYYY-MM-DD`) of a stored cursor value, or None when it is no timestamp."""
    if cursor is None or cursor == "None":
        return None
    try:
        value = dt.datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (value.astimezone(dt.UTC) if value.tzinfo else value).strftime("%Y-%m-%d")
