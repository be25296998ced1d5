"""Split-mode ports of every service (from the platform's spec)."""

SERVICE_PORTS: dict[str, int] = {
    "gateway": 3000,
    "user": 3001,
    "auth": 3002,
    "product": 3003,
    "order": 3004,
    "payment": 3005,
    "cart": 3006,
    "search": 3007,
    "notification": 3008,
    "analytics": 3009,
    "inventory": 3010,
    "review": 3011,
    "shipping": 3012,
    "recommendation": 3013,
    "admin": 3014,
    "file": 3015,
}

# Every service schema, known up front so the embedded SQLite engine can map all of
# them to its single namespace.
ALL_SCHEMAS: tuple[str, ...] = tuple(name for name in SERVICE_PORTS if name != "gateway")
