"""Outgoing mail: a local sink by default (files in the data directory), SMTP by configuration."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib
import anyio

from ultramarket.core.config import MailSettings, Settings

log = logging.getLogger("ultramarket.mail")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str | None = None


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None: ...


def _message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Message-ID"] = f"<{uuid.uuid4()}@ultramarket>"
    message.set_content(mail.text)
    if mail.html:
        message.add_alternative(mail.html, subtype="html")
    return message


class FileMailer:
    """Writes each mail as an .eml file under ``<data_dir>/mail`` (the dev sink)."""

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    async def send(self, mail: Mail) -> None:
        message = _message(mail, self.sender)
        path = anyio.Path(self.directory)
        await path.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        await (path / name).write_bytes(bytes(message))
        log.info("mail written", extra={"to": mail.to, "subject": mail.subject, "file": name})


class ConsoleMailer:
    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, mail: Mail) -> None:
        log.info("mail", extra={"to": mail.to, "subject": mail.subject, "body": mail.text})


class SmtpMailer:
    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    async def send(self, mail: Mail) -> None:
        s = self.settings
        await aiosmtplib.send(
            _message(mail, s.sender),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            timeout=15,
        )


def make_mailer(settings: Settings) -> Mailer:
    if settings.mail.backend == "smtp":
        return SmtpMailer(settings.mail)
    if settings.mail.backend == "console":
        return ConsoleMailer(settings.mail.sender)
    return FileMailer(settings.data_dir / "mail", settings.mail.sender)
