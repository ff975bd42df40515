"""Transform layer: seeds, staging and canonical SQL models, identity resolution, canonical checks.

Every `.sql` file under `dbt_like_sql/{staging,canonical}` becomes an asset (see
`integration_hub.engine.sql_models`): its description is the file's leading comment, its
dependencies are the tables its SQL reads. A canonical model with a pandera model in
`canonical/` is validated while it is built (rows that fail are quarantined, the `row_rules`
check counts them) and gets a blocking `keys_and_types` check, both evaluated in the model's
own step (a separate check step would pay a process's set-up with the multiprocess executor).
"""

import warnings
from pathlib import Path

import dagster as dg

from assets.metadata import asset_key, built_metadata, check_result, model_schema, preview_md
from canonical import MODELS
from integration_hub import settings
from integration_hub.engine import identity, model_build, order_identity, sql_models, validation
from integration_hub.engine.audit import Movement, now, record
from integration_hub.warehouse import Warehouse
from resources.warehouse import WAREHOUSE_POOL, warehouse_from_env

OWNERS = ["team:data-platform"]
FULL_REFRESH_TAG = (
    "hub/full_refresh"  # a run tagged "true" builds every model in full (`hub run --full-refresh`)
)


def _full(context: dg.AssetExecutionContext) -> bool:
    return context.run.tags.get(FULL_REFRESH_TAG) == "true"


KEYS_AND_TYPES_DOC = "Blocking: key unique and not null, every model column present with a compatible type."


def _keys_and_types_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        validation.KEYS_AND_TYPES, asset=key, blocking=True, description=KEYS_AND_TYPES_DOC
    )


def _dialect() -> str:
    return "postgres" if settings.warehouse_url() else "duckdb"


def _code(path: Path) -> dict:
    """Link the asset to its file in the UI (a beta API: its warning says nothing to act on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return {
            "dagster/code_references": dg.CodeReferencesMetadataValue(
                code_references=[dg.LocalFileCodeReference(file_path=str(path), line_number=1)]
            )
        }


def _audit(warehouse: Warehouse, run_id: str, key: dg.AssetKey, system: str, started, built) -> None:
    record(
        warehouse,
        Movement(
            run_id=run_id, asset=key.to_user_string(), system=system, direction="transform",
            resource=key.path[-1], rows_in=built.rows_built, rows_out=built.row_count,
            rows_rejected=built.rows_rejected, started_at=started,
        ),
    )  # fmt: skip


def sql_asset(model: sql_models.SqlModel) -> dg.AssetsDefinition:
    """The asset of one SQL model; canonical entities are row-validated while they are built."""
    validated = model.layer == "canonical" and model.entity in MODELS
    checks = (
        [
            dg.AssetCheckSpec(
                "row_rules",
                asset=asset_key(model.key),
                description="Rows failing the model's rules (warning).",
            ),
            _keys_and_types_spec(asset_key(model.key)),
        ]
        if validated
        else []
    )

    @dg.asset(
        key=asset_key(model.key),
        deps=[asset_key(k) for k in model.upstream],
        group_name=model.layer,
        kinds={"sql", _dialect(), *(["pandera"] if validated else [])},
        owners=OWNERS,
        description=model.description,
        metadata={
            **_code(model.path),
            "sql_file": str(model.path.relative_to(model.root.parent)),
            **({"dagster/column_schema": model_schema(model.entity)} if validated else {}),
        },
        check_specs=checks,
        pool=WAREHOUSE_POOL,
    )
    def _sql_model(context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]):
        started = now()
        with warehouse.session():
            vet = validation.RowValidator(warehouse, model.entity, context.run_id) if validated else None
            built = model_build.build(warehouse, model, vet=vet, full=_full(context))
            _audit(warehouse, context.run_id, asset_key(model.key), model.system or "hub", started, built)
            documented = model.entity if model.layer in ("staging", "canonical") else None
            metadata = {
                **built_metadata(built, documented),
                "preview": preview_md(warehouse, model.layer, model.name),
            }
            checks = []
            if vet:
                metadata["validation_seconds"] = round(vet.report.seconds, 3)
                checks = [
                    check_result(vet.report.check_result()),
                    check_result(validation.keys_and_types(warehouse, model.entity)),
                ]
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return _sql_model


def seed_asset(path: Path) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([sql_models.SEEDS_SCHEMA, path.stem]),
        group_name=sql_models.SEEDS_SCHEMA,
        kinds={"csv", _dialect()},
        owners=OWNERS,
        description=f"Reference data kept as a file in the repository ({path.name}).",
        metadata=_code(path),
        pool=WAREHOUSE_POOL,
    )
    def _seed(warehouse: dg.ResourceParam[Warehouse]) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"dagster/row_count": sql_models.load_seed(warehouse, path)})

    return _seed


XREF_KEY = dg.AssetKey(["canonical", "customer_xref"])


@dg.asset(
    key=XREF_KEY,
    deps=[dg.AssetKey(["staging", name]) for name in sql_models.union_members("customer")],
    group_name="canonical",
    kinds={"python", "pandas", _dialect()},
    owners=OWNERS,
    description=(identity.__doc__ or "").strip().splitlines()[0],
    metadata={**_code(Path(identity.__file__)), "dagster/column_schema": model_schema("customer_xref")},
    check_specs=[_keys_and_types_spec(XREF_KEY)],
    pool=WAREHOUSE_POOL,
)
def customer_xref(
    context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
) -> dg.MaterializeResult:
    started = now()
    update = order_identity.update_customers(warehouse, full=_full(context))
    with warehouse.connect() as con:
        xref = con.arrow("SELECT customer_id, match_rule, source_id FROM canonical.customer_xref")
    rules = xref.group_by("match_rule").aggregate([("source_id", "count")]).to_pylist()
    record(
        warehouse,
        Movement(run_id=context.run_id, asset=XREF_KEY.to_user_string(), system="hub", direction="transform",
                 resource="customer_xref", rows_in=update.resolved_records, rows_out=update.rows, started_at=started),
    )  # fmt: skip
    return dg.MaterializeResult(
        check_results=[check_result(validation.keys_and_types(warehouse, "customer_xref"))],
        metadata={
            "dagster/row_count": xref.num_rows,
            "customers": len(set(xref.column("customer_id").to_pylist())),
            "matches_by_rule": dg.MetadataValue.json({r["match_rule"]: r["source_id_count"] for r in rules}),
            "records_resolved": update.resolved_records,
            "customers_changed": len(update.affected_customers),
            "build": "full" if update.full else "incremental",
        },
    )


ORDER_XREF_KEY = dg.AssetKey(["canonical", "order_xref"])


@dg.asset(
    key=ORDER_XREF_KEY,
    deps=[dg.AssetKey(["staging", name]) for name in sql_models.union_members("sales_order")],
    group_name="canonical",
    kinds={"python", "sql", _dialect()},
    owners=OWNERS,
    description=(order_identity.__doc__ or "").strip().splitlines()[0],
    metadata=_code(Path(order_identity.__file__)),
    pool=WAREHOUSE_POOL,
)
def order_xref(
    context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
) -> dg.MaterializeResult:
    started = now()
    result = order_identity.update(warehouse, full=_full(context))
    record(
        warehouse,
        Movement(run_id=context.run_id, asset=ORDER_XREF_KEY.to_user_string(), system="hub", direction="transform",
                 resource="order_xref", rows_in=result.records, rows_out=result.rows, started_at=started),
    )  # fmt: skip
    columns = warehouse.columns("canonical", "order_xref")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": warehouse.row_count("canonical", "order_xref"),
            "preview": preview_md(warehouse, "canonical", "order_xref"),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name=n, type=t) for n, t in columns]
            ),
            "records_resolved": result.records,
            "orders_changed": result.orders_changed,
            "build": "incremental" if result.incremental else "full",
            "build_reason": result.reason,
        }
    )


@dg.asset_check(
    asset=dg.AssetKey(["canonical", "sales_order"]),
    additional_deps=[dg.AssetKey(["canonical", "order_line"])],
    description="Warning: each order's total equals the sum of its lines, within a cent.",
)
def total_matches_lines(warehouse: dg.ResourceParam[Warehouse]) -> dg.AssetCheckResult:
    return check_result(validation.order_totals(warehouse))


MODELS_SQL = sql_models.discover()
ASSETS: list = [
    *(seed_asset(p) for p in sql_models.seed_files()),
    *(sql_asset(m) for m in MODELS_SQL),
    customer_xref,
    order_xref,
]
CHECKS: list = [total_matches_lines]
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
RESOURCES: dict = {"warehouse": warehouse_from_env()}
