"""The email notifier: one plain-text message per alert over SMTP (STARTTLS, TLS or plain)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal

from pydantic import Field, model_validator

from canary.errors import NotifierError
from canary.http_out import Redactor, secret_from_env
from canary.notifiers.base import Alert
from canary.notifiers.links import Links, links_for
from canary.plugins import Options, parse_options


class EmailOptions(Options):
    """A ``notifiers:`` entry of ``type: email``."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    sender: str = Field(alias="from", description="The From address.")
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[canary]"
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _login(self) -> EmailOptions:
        if self.password_env and not self.username:
            raise ValueError("password_env needs username")
        return self


class EmailNotifier:
    """Sends the summary, versions, weight, every reason and the links. The password comes from
    ``password_env`` and is never in an error or log line; ``security: none`` is for a relay on
    localhost only, as it sends the password in clear."""

    name = "email"
    Options = EmailOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(EmailOptions, options, "notifier email")
        self.o = o
        self.password = secret_from_env(o.password_env, "notifier email")
        self.redact = Redactor([self.password])

    def message(self, alert: Alert, links: Links | None = None) -> EmailMessage:
        links = links_for(alert) if links is None else links
        state = "resolved: " if alert.resolved else ""
        msg = EmailMessage()
        msg["Subject"] = (
            f"{self.o.subject_prefix} {state}{alert.kind}: {alert.service}: {alert.summary}".strip()
        )
        msg["From"] = self.o.sender
        msg["To"] = ", ".join(self.o.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="canary.local")
        lines = [
            f"{state}{alert.summary}",
            "",
            f"Service:        {alert.service}",
            f"Rollout:        {alert.rollout_id}",
            f"Versions:       {alert.stable_version or '?'} (stable) -> {alert.canary_version or '?'} (canary)",
            f"Canary weight:  {alert.weight}%",
            f"Kind:           {alert.kind} ({alert.severity})",
        ]
        if alert.reasons:
            lines += ["", "Reasons:", *(f"  - {r}" for r in alert.reasons)]
        if links.all():
            lines += ["", *(f"{link.text}: {link.url}" for link in links.all())]
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def send(self, alert: Alert) -> None:
        o = self.o
        where = f"{o.host}:{o.port}"
        try:
            context = ssl.create_default_context()
            smtp: smtplib.SMTP = (
                smtplib.SMTP_SSL(o.host, o.port, timeout=o.timeout, context=context)
                if o.security == "tls"
                else smtplib.SMTP(o.host, o.port, timeout=o.timeout)
            )
            with smtp:
                if o.security == "starttls":
                    smtp.starttls(context=context)
                if o.username and self.password:
                    smtp.login(o.username, self.password)
                refused = smtp.send_message(self.message(alert))
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise NotifierError(
                self.redact(
                    f"notifier email: sending through {where} failed: {type(exc).__name__}: {exc}"
                )
            ) from None
        if refused:
            raise NotifierError(f"notifier email: {where} refused {', '.join(sorted(refused))}")
