"""The alert sink: Slack-compatible JSON posted to a webhook (`HUB_ALERT_WEBHOOK_URL`).

Every text is scrubbed of known secrets before it leaves the process: the connected
systems' credentials, the password of the warehouse and instance URLs, any password
written into a URL, and the webhook URL itself (a Slack webhook URL is a secret).
"""

from __future__ import annotations

import re

import dagster as dg
import httpx
from pydantic import Field

from integration_hub import settings, systems

# Environment variables holding URLs whose password must never be shown (and every system's URL).
_URL_VARS = ("HUB_WAREHOUSE_URL", "HUB_DAGSTER_STORAGE_URL")
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?=@)", re.I)
MASK = "***"


def secret_values() -> list[str]:
    """The secret values currently in effect (environment or sandbox default), longest first."""
    values = systems.secret_values()
    for var in (*_URL_VARS, *(s.url_var for s in systems.registry().values())):
        match = _URL_PASSWORD.search(settings.env(var, ""))
        if match:
            values.add(match.group("password"))
    if settings.env("HUB_ALERT_WEBHOOK_URL"):
        values.add(settings.env("HUB_ALERT_WEBHOOK_URL"))
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every known secret and every password written in a URL masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for value in secret_values():
        text = text.replace(value, MASK)
    return text


class AlertSink(dg.ConfigurableResource):
    """Posts alerts to a Slack-compatible incoming webhook; without a URL it only logs them."""

    webhook_url: str | None = Field(
        default=None, description="Incoming webhook (from HUB_ALERT_WEBHOOK_URL)."
    )
    ui_url: str = Field(default=settings.UI_URL_DEFAULT, description="Base URL of the Dagster UI, for links.")
    timeout_seconds: float = 10.0

    def link(self, path: str) -> str:
        return f"{self.ui_url.rstrip('/')}/{path.lstrip('/')}"

    def send(self, title: str, fields: dict[str, str], link: str) -> dict:
        """Post one alert; returns the (scrubbed) payload that was sent.

        A webhook that cannot be reached raises: the check and dead-letter sensors keep
        their cursor and send on a later tick; for a failed run, Dagster records the
        sensor error on that run's page.
        """
        lines = [f"*{title}*", *(f"*{k}:* {v}" for k, v in fields.items()), f"<{link}|Open in Dagster>"]
        text = scrub("\n".join(lines))
        payload = {
            "text": text,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": scrub(title)[:150]}},
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": scrub(f"*{k}*\n{v}")[:2000]} for k, v in fields.items()
                    ],
                },
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open in Dagster"},
                            "url": link,
                        }
                    ],
                },
            ],
        }
        if self.webhook_url:
            try:
                response = httpx.post(self.webhook_url, json=payload, timeout=self.timeout_seconds)
            except httpx.HTTPError as exc:
                # The exception text may carry the webhook URL: name only its kind.
                raise RuntimeError(
                    f"The alert webhook could not be reached ({type(exc).__name__}); check HUB_ALERT_WEBHOOK_URL."
                ) from None
            if response.status_code >= 300:
                raise RuntimeError(
                    f"The alert webhook answered HTTP {response.status_code}; check HUB_ALERT_WEBHOOK_URL."
                )
        else:
            dg.get_dagster_logger().warning(f"HUB_ALERT_WEBHOOK_URL is not set; alert not sent:\n{text}")
        return payload


def alert_sink_from_env() -> AlertSink:
    """The sink as the code location configures it: the webhook URL stays an EnvVar (never shown)."""
    ui_url = settings.ui_url()
    if settings.alert_webhook_url():
        return AlertSink(webhook_url=dg.EnvVar("HUB_ALERT_WEBHOOK_URL"), ui_url=ui_url)
    return AlertSink(ui_url=ui_url)
