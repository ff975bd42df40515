"""Scale-out: the nightly flow on two real Celery workers (RabbitMQ), with the Dagster instance
and the warehouse on Postgres, ends with the same data as the embedded default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from hub_sandbox import runner

from tests.test_drills_world import fingerprint, start_sandbox

BIN = Path(sys.executable).parent
FLOW = ("nightly",)  # every source and every layer below, on a fresh warehouse
KEYS = {
    "canonical.sales_order": "order_id",
    "canonical.invoice": "invoice_id",
    "canonical.customer": "customer_id",
}


def _hub_run(job: str, env: dict) -> dict:
    done = subprocess.run(
        [str(BIN / "hub"), "run", job, "--json"], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.stdout, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    failed = {k: v["error"] for k, v in summary["steps"].items() if v["status"] != "success"}
    assert summary["success"], failed
    return summary


def _counts(fp: dict) -> dict:
    return {k: (v[0] if isinstance(v, tuple | list) else v) for k, v in fp.items()}


def _keys(env: dict) -> dict:
    import subprocess as sp

    code = (
        "import json; from integration_hub import settings; from integration_hub.warehouse import Warehouse\n"
        "w = lambda: Warehouse(url=settings.warehouse_url())\n"
        f"keys = {KEYS!r}\n"
        "with w().connect() as con:\n"
        "    print(json.dumps({t: sorted(str(r[0]) for r in con.rows(f'SELECT {c} FROM {t}'))\n"
        "        for t, c in keys.items() if w().table_exists(*t.split('.'))}))"
    )
    out = sp.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def pg_databases(postgres_url):
    """Two fresh databases (instance, warehouse), dropped afterwards."""
    import psycopg

    names = [f"hub_scale_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("dagster", "warehouse")]
    with psycopg.connect(postgres_url, autocommit=True) as con:
        for name in names:
            con.execute(f"CREATE DATABASE {name}")
    base = postgres_url.rsplit("/", 1)[0]
    yield (
        base.replace("postgresql://", "postgresql+psycopg2://", 1) + f"/{names[0]}",
        base.replace("postgres@", "postgres:trust@", 1) + f"/{names[1]}",  # dlt insists on a password
    )
    with psycopg.connect(postgres_url, autocommit=True) as con:
        for name in names:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _start_workers(env: dict, home: Path, queue: str) -> list[subprocess.Popen]:
    config = home / "celery.yaml"
    config.write_text(
        "execution:\n  config:\n    broker: pyamqp://guest@127.0.0.1:5672//\n    backend: rpc://\n"
    )
    workers = []
    for n in (1, 2):
        log = (home / f"worker{n}.log").open("w")
        workers.append(
            subprocess.Popen(
                [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(config),
                 "-q", queue, "-n", f"hubw{n}-{queue}@%h", "--", "--concurrency", "1"],
                env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if all("ready." in (home / f"worker{n}.log").read_text() for n in (1, 2)):
            return workers
        time.sleep(1)
    raise AssertionError("celery workers did not start:\n" + (home / "worker1.log").read_text()[-2000:])


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_nightly_on_two_celery_workers_equals_the_embedded_run(
    sandbox_template, tmp_path, pg_databases, monkeypatch
):
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUB_WAREHOUSE", "HUB_DAGSTER", "HUB_CELERY"))
    }

    embedded = start_sandbox(sandbox_template, tmp_path / "embedded")
    boxes = [embedded]
    try:
        env_a = {**clean, **embedded.env(), "DAGSTER_HOME": str(embedded.home / "dagster")}
        for job in FLOW:
            _hub_run(job, env_a)
        for key, value in env_a.items():
            monkeypatch.setenv(key, value)
        expected = _counts(fingerprint(embedded))
        expected_keys = _keys(env_a)

        scaled = start_sandbox(sandbox_template, tmp_path / "scaled")
        boxes.append(scaled)
        storage_url, warehouse_url = pg_databases
        queue = f"hub_test_{uuid.uuid4().hex[:8]}"
        env_b = {
            **clean, **scaled.env(), "DAGSTER_HOME": str(scaled.home / "dagster"), "HUB_DAGSTER_STORAGE_URL": storage_url,
            "HUB_WAREHOUSE_URL": warehouse_url, "HUB_CELERY_QUEUE": queue, "PATH": f"{BIN}:{os.environ['PATH']}",
        }  # fmt: skip
        subprocess.run([str(BIN / "hub"), "dagster-home"], env=env_b, check=True, capture_output=True)
        workers = _start_workers(env_b, scaled.home, queue)
        try:
            runs = []
            for job in FLOW:
                runs.append(_hub_run(f"{job}_celery", env_b))
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait(30)

        # Every step of the celery runs ran on one of the two workers, and both took work.
        for key, value in env_b.items():
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.get() as instance:
            hosts = set()
            for summary in runs:
                for entry in instance.all_logs(summary["run_id"], of_type=dg.DagsterEventType.ENGINE_EVENT):
                    worker = entry.dagster_event.event_specific_data.metadata.get("Celery worker")
                    if worker is not None:
                        hosts.add(worker.value.split("@")[0])
        assert hosts == {f"hubw1-{queue}", f"hubw2-{queue}"}

        assert _counts(fingerprint(scaled)) == expected
        assert _keys(env_b) == expected_keys
    finally:
        for box in boxes:
            runner.stop(box.home)
