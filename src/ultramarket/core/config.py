"""Settings, read from the environment (prefix ``ULTRAMARKET_``, nested with ``__``).

Every value has a development default so ``make run`` works on a fresh machine;
``environment=production`` refuses to start while any secret is still a default, or
while mail would go to a local sink or links would point at a local address.
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-secret-change-me"


class ServiceOverride(BaseModel):
    """Per-service overrides (``ULTRAMARKET_SERVICES__PRODUCT__DATABASE_URL=...``)."""

    database_url: str | None = None
    cache_url: str | None = None
    broker_url: str | None = None
    url: str | None = None  # where other services reach it in split mode


class RateLimits(BaseModel):
    """Rate limits in the ``limits`` notation ("30/minute"); several joined by ';'."""

    enabled: bool = True
    default_per_ip: str = "600/minute"
    default_per_user: str = "1200/minute"
    login_per_ip: str = "30/minute"
    login_failures_per_account: str = "5/15minutes"
    register_per_ip: str = "20/minute"
    forgot_password_per_ip: str = "10/minute"
    refresh_per_ip: str = "60/minute"


class AuthSettings(BaseModel):
    issuer: str = "ultramarket"
    audience: str = "ultramarket"
    access_ttl_seconds: int = 15 * 60
    refresh_ttl_seconds: int = 7 * 24 * 3600
    verify_ttl_seconds: int = 48 * 3600
    reset_ttl_seconds: int = 3600
    algorithm: Literal["EdDSA", "RS256"] = "EdDSA"
    # PEM private key; in development it is generated into the data directory.
    private_key: SecretStr | None = None
    # PEM public keys of retired keys that must still verify (rotation).
    previous_public_keys: list[str] = Field(default_factory=list)
    # Where services in split mode fetch the JWKS when they hold no key file.
    jwks_url: str | None = None
    service_token_ttl_seconds: int = 300


class MailSettings(BaseModel):
    backend: Literal["file", "smtp", "console"] = "file"
    sender: str = "UltraMarket <no-reply@ultramarket.local>"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True


class EventSettings(BaseModel):
    relay_interval_seconds: float = 0.5
    # After a wake, wait this long for more events to deliver them in one batch: fewer
    # round trips under load, for at most this much more delivery latency.
    relay_gather_seconds: float = 0.02
    batch_size: int = 100
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    # Published outbox rows and processed inbox rows older than this are deleted, every
    # ``prune_interval_seconds`` (0 keeps them forever). Unpublished events and dead
    # letters are never deleted. A week is far beyond any redelivery.
    retention_days: float = Field(default=7.0, ge=0)
    prune_interval_seconds: float = Field(default=3600.0, gt=0)
    prune_batch_size: int = Field(default=5000, gt=0)


class FileSettings(BaseModel):
    """The file service (``ULTRAMARKET_FILES__BACKEND=s3``, ``..._MAX_BYTES=5242880``)."""

    backend: Literal["local", "s3"] = "local"
    # Local disk root; empty means ``<data_dir>/files``.
    local_root: Path | None = None
    # Per upload; the platform's ``max_body_bytes`` still caps the whole request.
    max_bytes: int = 10 * 1024 * 1024
    # Detected from the bytes. text/plain and text/csv have no magic number: they are
    # accepted only for .txt/.csv names whose bytes are UTF-8 without control characters.
    allowed_types: list[str] = Field(
        default_factory=lambda: [
            "image/jpeg",
            "image/png",
            "image/webp",
            "image/gif",
            "application/pdf",
            "text/plain",
            "text/csv",
        ]
    )
    # Thumbnails: bounding boxes in pixels, and their format.
    thumbnail_sizes: list[int] = Field(default_factory=lambda: [150, 400, 800])
    thumbnail_format: Literal["webp", "jpeg"] = "webp"
    # Images above this many pixels are refused (decompression bombs).
    max_image_pixels: int = 40_000_000
    # When set, public files' ``url`` points here: a CDN in front of the bucket, whose
    # origin must be scoped to ``<s3_prefix>public/`` (private objects sit under
    # ``private/`` and must stay out of its reach).
    public_base_url: str | None = None
    # S3: redirect downloads to a presigned URL instead of streaming through the app.
    signed_downloads: bool = True
    signed_url_ttl_seconds: int = 300
    s3_bucket: str = "ultramarket-files"
    s3_endpoint_url: str | None = None  # MinIO, moto, R2...; empty means AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_path_style: bool = False  # MinIO needs path-style addressing
    s3_prefix: str = ""  # key prefix inside the bucket


# The new-account threshold per currency: about what 1,000 USD was worth (rounded), so a
# 1,000 JPY (~7 USD) first payment is not suspect and a 1,000 KWD (~3,300 USD) one is.
NEW_ACCOUNT_AMOUNTS: dict[str, Decimal] = {
    code: Decimal(value)
    for code, value in {
        "USD": "1000", "EUR": "900", "GBP": "800", "CHF": "900", "CAD": "1400",
        "AUD": "1500", "NZD": "1700", "JPY": "150000", "CNY": "7000", "HKD": "8000",
        "SGD": "1300", "INR": "85000", "KRW": "1400000", "SEK": "10000", "NOK": "10000",
        "DKK": "7000", "PLN": "4000", "CZK": "23000", "HUF": "360000", "RON": "4500",
        "BRL": "5500", "MXN": "18000", "ZAR": "18000", "TRY": "35000", "ILS": "3700",
        "AED": "3700", "SAR": "3750", "KWD": "300", "BHD": "380", "OMR": "380",
        "JOD": "700", "IDR": "16000000", "VND": "25000000", "THB": "35000", "PHP": "57000",
        "MYR": "4500", "TWD": "32000", "CLP": "950000", "COP": "4000000", "ARS": "1000000",
    }.items()
}  # fmt: skip


class PaymentSettings(BaseModel):
    """The payment service (``ULTRAMARKET_PAYMENTS__CARD_PROVIDER=stripe``, ...).

    Fraud amounts are in major units of a currency (the new-account threshold has one per
    currency: ``fraud_new_account_amounts``); scores add up per rule
    and a payment at or over ``fraud_block_score`` is refused, at or over
    ``fraud_review_score`` it is only authorised and held for review.
    """

    card_provider: Literal["test", "stripe"] = "test"
    default_currency: str = "USD"
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None  # empty: Stripe itself; set for localstripe
    stripe_webhook_secret: SecretStr | None = None
    stripe_webhook_tolerance_seconds: int = 300
    paypal_base_url: str = "https://api-m.sandbox.paypal.com"
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_webhook_id: str | None = None
    provider_timeout_seconds: float = 10.0
    # A charge is committed ``processing`` before its provider is asked, and the request
    # asking holds it this long (longer than a provider call with its retries can take):
    # a retry with the same Idempotency-Key waits for that request's answer (at most
    # ``charge_wait_seconds``, then 503 PAYMENT_PROCESSING) and the sweeper leaves it.
    # Past it (the request died), a retry or the sweeper asks the provider again.
    charge_lease_seconds: float = 60.0
    charge_wait_seconds: float = 10.0
    # A payment whose provider has not answered (``processing``) for this long is failed
    # (decline code ``provider_unreachable``) so its order ends; a charge the provider
    # reports later is refunded at once.
    processing_give_up_hours: float = 24.0
    fraud_enabled: bool = True
    fraud_window_minutes: int = 10
    fraud_velocity_max: int = 5  # payments per user per window
    fraud_velocity_score: int = 40
    fraud_fingerprint_max_users: int = 3  # distinct users of one card
    fraud_fingerprint_score: int = 50
    fraud_ip_max: int = 30  # payment attempts per IP per window
    fraud_ip_score: int = 30
    fraud_new_account_hours: int = 24  # since the user's first payment attempt
    # A new account's payment over this is suspect: in ``default_currency``; in another
    # currency its own entry in ``fraud_new_account_amounts`` (major units of it; the
    # entries given are laid over ``NEW_ACCOUNT_AMOUNTS``:
    # ``ULTRAMARKET_PAYMENTS__FRAUD_NEW_ACCOUNT_AMOUNTS='{"JPY": "150000"}'``). A currency
    # with neither has no such threshold (the rule does not apply to it).
    fraud_new_account_amount: Decimal = Decimal("1000")
    fraud_new_account_amounts: dict[str, Decimal] = Field(
        default_factory=lambda: dict(NEW_ACCOUNT_AMOUNTS)
    )
    fraud_new_account_score: int = 40
    fraud_declines_max: int = 3  # declines per user per window
    fraud_declines_score: int = 50
    fraud_review_score: int = 50
    fraud_block_score: int = 90

    @field_validator("fraud_new_account_amounts")
    @classmethod
    def _over_the_defaults(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        return {**NEW_ACCOUNT_AMOUNTS, **{code.upper(): amount for code, amount in value.items()}}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ULTRAMARKET_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = "development"
    public_url: str = "http://127.0.0.1:3000"
    host: str = "127.0.0.1"
    port: int = 3000
    data_dir: Path = Path("data")
    secret_key: SecretStr = SecretStr(DEV_SECRET)

    # Empty means the embedded SQLite file in the data directory.
    database_url: str = ""
    # "memory://" (embedded) or "redis://host:6379/0".
    cache_url: str = "memory://"
    # "memory://" (in-process bus) or a broker URL (added by a later issue).
    broker_url: str = "memory://"
    # Storage for rate limits: "memory://" or "redis://...".
    rate_limit_url: str = ""
    # Prefix of every Redis key (cache and rate limits), so shops can share a Redis.
    redis_namespace: str = "um"
    # Run the outbox relay inside the web process (all-in-one). ``worker`` runs it alone.
    embedded_worker: bool = True
    # All-in-one: a service's hot calls to another run its service layer directly (the
    # client's in-process twin) instead of going through that service's app. False
    # sends every call through the app, as over the network minus the socket.
    direct_calls: bool = True
    # Split mode: the API key a service exchanges for its service token.
    service_api_key: SecretStr | None = None

    services: dict[str, ServiceOverride] = Field(default_factory=dict)
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"]
    )
    max_body_bytes: int = 10 * 1024 * 1024
    # Proxies whose X-Forwarded-For is believed (the gateway's address), comma-separated.
    forwarded_allow_ips: str = "127.0.0.1"
    # Per process. Size them to the concurrent requests a worker serves: overflow
    # connections are opened and closed on demand, which is slow. On PostgreSQL the hot
    # single statements (checkout, variant lookups, product detail) run on the driver's
    # own pool, the rest on SQLAlchemy's: a process opens at most the three together
    # (45), so two workers fit PostgreSQL's default max_connections of 100.
    db_pool_size: int = 20
    db_max_overflow: int = 5
    db_driver_pool_size: int = 20
    log_level: str = "INFO"
    access_log: bool = True
    otlp_endpoint: str | None = None
    # Freeze start-up objects and collect garbage less often (see core.http.tune_gc).
    gc_tuning: bool = True

    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    mail: MailSettings = Field(default_factory=MailSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    files: FileSettings = Field(default_factory=FileSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        problems = []
        if (
            self.secret_key.get_secret_value() == DEV_SECRET
            or len(self.secret_key.get_secret_value()) < 32
        ):
            problems.append("ULTRAMARKET_SECRET_KEY must be set to 32+ random characters")
        if self.auth.private_key is None and self.auth.jwks_url is None:
            problems.append(
                "ULTRAMARKET_AUTH__PRIVATE_KEY (auth service) or ULTRAMARKET_AUTH__JWKS_URL "
                "(other services) must be set; dev keys are not used in production"
            )
        if not self.database_url.startswith("postgresql"):
            problems.append("ULTRAMARKET_DATABASE_URL must point at PostgreSQL in production")
        if self.mail.backend != "smtp":
            problems.append(
                "ULTRAMARKET_MAIL__BACKEND must be smtp in production: the file and console "
                "sinks would keep password-reset and verification links on disk or in the logs"
            )
        if not _public(self.public_url):
            problems.append(
                "ULTRAMARKET_PUBLIC_URL must be the shop's public http(s) address in production "
                "(mailed links point there), not a local one"
            )
        if (self.rate_limit_url or self.cache_url).startswith("memory"):
            problems.append(
                "ULTRAMARKET_CACHE_URL (or ULTRAMARKET_RATE_LIMIT_URL) must point at Redis in "
                "production: rate limits and cache invalidation must be shared by every worker"
            )
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    # -- derived values --------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def sqlite_path(self) -> Path:
        return self.data_dir / "ultramarket.db"

    def database_url_for(self, service: str | None = None) -> str:
        override = self.services.get(service or "")
        if override and override.database_url:
            return override.database_url
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.sqlite_path()}"

    def cache_url_for(self, service: str | None = None) -> str:
        override = self.services.get(service or "")
        return (override.cache_url if override and override.cache_url else None) or self.cache_url

    def broker_url_for(self, service: str | None = None) -> str:
        override = self.services.get(service or "")
        return (
            override.broker_url if override and override.broker_url else None
        ) or self.broker_url

    def service_url(self, service: str, default_port: int) -> str:
        override = self.services.get(service)
        if override and override.url:
            return override.url.rstrip("/")
        return f"http://127.0.0.1:{default_port}"


def _public(url: str) -> bool:
    """An http(s) URL whose host is not this machine (localhost, loopback, 0.0.0.0)."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name
    return not (address.is_loopback or address.is_unspecified or address.is_link_local)


@lru_cache
def get_settings() -> Settings:
    return Settings()
