"""The Dagster definitions load, name the assets the UI shows, and really run."""

import json

import dagster as dg

from assets.synthetic import synthetic_city
from pipelines.definitions import defs


def test_definitions_load_with_one_asset_per_table():
    from assets.features.features import TABLES as FEATURE_TABLES
    from assets.marts.marts import MARTS
    from assets.warehouse.model import REFERENCE_TABLES, TABLE_GRAIN

    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"synthetic_city", "identity/persons", "identity/families", "identity/review_queue",
                    "warehouse/publish", "features/model_card"} | {
        f"staging/{s}" for s in ("education", "health", "social_care", "early_help", "mash", "reference")} | {
        f"model/{t}" for t in (*TABLE_GRAIN, *REFERENCE_TABLES)} | {f"marts/{m}" for m in MARTS} | {
        f"features/{t}" for t in FEATURE_TABLES}
    checks = {(c.asset_key.to_user_string(), c.name) for c in repo.asset_graph.asset_check_keys}
    assert {("identity/persons", "identity_constraints"), ("identity/persons", "identity_coverage"),
            ("features/child_month", "integrity")} <= checks
    assert {(f"model/{t}", "integrity") for t in TABLE_GRAIN} <= checks  # every model table, not 13 of 20
    for system in ("education", "health", "social_care", "early_help", "mash", "reference"):
        assert {(f"staging/{system}", name) for name in
                ("contract_expectations", "reconciliation", "identifier_validity", "freshness", "drift")} <= checks
    assert repo.get_job("synthetic_city_job")
    assert {s.name for s in repo.schedule_defs} == {f"{s}_cadence" for s in
                                                    ("education", "health", "social_care", "early_help", "mash", "reference")}
    assert sorted(s.name for s in repo.sensor_defs) == ["new_drop_sensor", "warehouse_after_staging"]
    assert {j.name for j in repo.get_all_jobs()} >= {"warehouse", "synthetic_city_job"} | {
        f"stage_{s}" for s in ("education", "health", "social_care", "early_help", "mash", "reference")}


def test_lineage_is_read_from_the_sql():
    """A table's deps are the tables its SQL reads (through working tables and macros)."""
    graph = defs.get_repository_def().asset_graph

    def parents(key: str) -> set[str]:
        return {p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(key)).parent_keys}

    assert parents("marts/closures_monthly") == {"model/fact_csc_referral", "model/fact_eh_episode"}
    assert parents("model/fact_cp_plan") == {"identity/persons", "identity/families", "staging/social_care"}
    assert parents("model/dim_school") == {"staging/reference"}
    assert parents("model/dim_worker") == {"model/dim_team", "staging/early_help", "staging/social_care"}
    assert parents("features/child_month_label") >= {"features/child_month", "model/fact_cp_plan"}
    assert parents("identity/persons") == {f"staging/{s}" for s in
                                           ("education", "health", "social_care", "early_help", "mash")}
    assert parents("warehouse/publish") >= {"features/model_card", "marts/closures_monthly"}



def test_synthetic_city_asset_writes_a_city(tmp_path):
    result = dg.materialize(
        [synthetic_city],
        run_config={"ops": {"synthetic_city": {"config": {"children": 120, "seed": 3, "out": str(tmp_path)}}}},
    )
    assert result.success
    manifests = list((tmp_path / "landing").glob("*/*/_manifest.json"))
    assert {json.loads(m.read_text())["system"] for m in manifests} == {
        "education", "health", "social_care", "early_help", "mash", "reference"}
    metadata = result.asset_materializations_for_node("synthetic_city")[0].metadata
    assert metadata["persons"].value > 120


def test_sensor_registers_drops_and_requests_one_run_per_delivery(small_city, tmp_path):
    from assets.resources import Warehouse
    from pipelines.sensors import new_drop_sensor

    landing = small_city[0] / "landing"
    instance = dg.DagsterInstance.ephemeral()
    warehouse = Warehouse(home=str(tmp_path), landing=str(landing))
    # the resource holds HOME's build lock while a run lasts, so it is a context manager
    with dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse}) as context:
        first = new_drop_sensor(context)
    manifests = sorted(landing.glob("*/*/_manifest.json"))
    assert len(first) == len(manifests)
    assert sorted(instance.get_dynamic_partitions("mash_drops")) == sorted(
        p.parent.name for p in manifests if p.parent.parent.name == "mash")
    # the same deliveries give the same run keys, so the daemon never runs them twice
    with dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse}) as context:
        again = new_drop_sensor(context)
    assert [r.run_key for r in again] == [r.run_key for r in first]
    assert all(r.run_key.split(":")[0] == r.tags["earlyhelp/system"] for r in first)


def test_a_corrected_redelivery_gets_a_new_run_key(small_city, tmp_path):
    import json
    import shutil

    from assets.resources import Warehouse
    from pipelines.sensors import requests_for_new_drops

    source = sorted((small_city[0] / "landing" / "mash").iterdir())[1]
    landing = tmp_path / "landing"
    shutil.copytree(source, landing / "mash" / source.name)
    instance = dg.DagsterInstance.ephemeral()
    warehouse = Warehouse(home=str(tmp_path / "home"), landing=str(landing))
    [before] = requests_for_new_drops(instance, warehouse, ("mash",))
    path = landing / "mash" / source.name / "contacts.csv"
    assert [r.run_key for r in requests_for_new_drops(instance, warehouse, ("mash",))] == [before.run_key]
    manifest = json.loads((path.parent / "_manifest.json").read_text())
    manifest["files"][0]["sha256"] = "0" * 64  # the system re-sent different content for the date
    (path.parent / "_manifest.json").write_text(json.dumps(manifest))
    [after] = requests_for_new_drops(instance, warehouse, ("mash",))
    assert after.run_key != before.run_key and after.partition_key == before.partition_key


def test_a_successful_staging_run_requests_the_warehouse_run(small_city, tmp_path):
    from pipelines.build import QUIET
    from assets.resources import Warehouse
    from pipelines.sensors import warehouse_after_staging

    landing = small_city[0] / "landing"
    instance = dg.DagsterInstance.ephemeral()
    day = sorted(p.name for p in (landing / "reference").iterdir())[0]
    instance.add_dynamic_partitions("reference_drops", [day])
    result = defs.resolve_job_def("stage_reference").execute_in_process(
        instance=instance, partition_key=day, run_config=QUIET,
        resources={"warehouse": Warehouse(home=str(tmp_path / "home"), landing=str(landing))})
    assert result.success
    [success] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context(
        sensor_name="warehouse_after_staging", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id), dagster_event=success.dagster_event)
    request = warehouse_after_staging(context)
    assert request.run_key == f"after:{result.run_id}"  # once per staging run
    assert warehouse_after_staging.job_name == "warehouse"


def test_each_staging_partition_carries_its_own_drops_figures(small_city, tmp_path):
    """A ranged run's materialization carries its totals; each partition also gets an
    observation with its own drop's counts, which differ from drop to drop."""
    import duckdb

    from pipelines.build import QUIET
    from assets.resources import Warehouse

    landing = small_city[0] / "landing"
    instance = dg.DagsterInstance.ephemeral()
    days = sorted(p.name for p in (landing / "mash").iterdir())[:3]
    instance.add_dynamic_partitions("mash_drops", days)
    home = tmp_path / "home"
    result = defs.resolve_job_def("stage_mash").execute_in_process(
        instance=instance, run_config=QUIET, resources={"warehouse": Warehouse(home=str(home), landing=str(landing))},
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]})
    assert result.success
    observed = {e.partition: e.asset_observation_data.asset_observation.metadata
                for e in (r.dagster_event for r in instance.all_logs(
                    result.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION))}
    assert sorted(observed) == days
    with duckdb.connect(str(home / "warehouse" / "build.duckdb"), read_only=True) as con:
        for day in days:
            staged = con.execute("SELECT count(*) FROM staging.mash__contacts WHERE extract_date = ?",
                                 [day]).fetchall()[0][0]
            assert observed[day]["rows_staged"].value == staged and observed[day]["status"].value == "staged"
    assert len({observed[d]["rows_delivered"].value for d in days}) > 1  # not the run's totals thrice
