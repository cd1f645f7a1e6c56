"""Action targets as they may be shown (API, console, delivery history): no secret ever leaves.

Notification URLs carry their credentials inside them (a Discord webhook token, a Telegram bot
token, ``mailto://user:password@...``), so the URL itself is a secret. Apprise's own privacy mode
knows where each service keeps them (``discord://1234/t...n/``); a webhook keeps its scheme, host
and path, and loses any user:password and the values of its query.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rdio_core.alerts.settings import AlertAction, AppriseAction, WebhookAction

HIDDEN = "***"


def webhook_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username or parts.password:
        host = f"{HIDDEN}@{host}"
    query = urlencode([(k, HIDDEN) for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def apprise_url(url: str) -> str:
    """Apprise's privacy form of the URL, without its options; only the scheme when no plugin
    takes it."""
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return url.partition("://")[0] + f"://{HIDDEN}"
    return str(plugin.url(privacy=True)).partition("?")[0]


def action_target(action: AlertAction) -> str:
    match action:
        case WebhookAction():
            return webhook_url(action.webhook.url)
        case AppriseAction():
            return apprise_url(action.apprise)
