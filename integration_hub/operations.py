"""The operations layer: alerting sensors, the retention asset and its schedule, the alert sink."""

from integration_hub import alerts, retention
from resources.alerts import alert_sink_from_env
from resources.warehouse import warehouse_from_env

ASSETS: list = [retention.retention]
CHECKS: list = []
JOBS: list = [retention.retention_job]
SCHEDULES: list = [retention.retention_schedule]
SENSORS: list = alerts.SENSORS
RESOURCES: dict = {"alerts": alert_sink_from_env(), "warehouse": warehouse_from_env()}
