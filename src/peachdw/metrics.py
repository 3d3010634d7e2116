"""The hourly metrics, declared once.

Every layer that names metrics (the schema, the API client, the loader, the sandbox and the
exports) reads this tuple, so adding a metric is a migration plus one line here.
"""

from __future__ import annotations

# Order matters: it is the column order of `hourly_data` and of every export.
METRICS: tuple[str, ...] = (
    "sessions",
    "registrations",
    "email_accounts",
    "google_accounts",
    "total_accounts",
    "credit_cards",
    "payment_methods",
    "converted_users",
    "terms_acceptances",
    "messages",
    "companion_chats",
    "chat_room_user_chats",
    "total_user_chats",
    "media",
)

# The daily totals that GET /admin/reports returns (contract: "GET /admin/reports").
REPORT_METRICS: tuple[str, ...] = (
    "sessions",
    "registrations",
    "converted_users",
    "messages",
)

# SQLite stores INTEGER as a signed 64-bit value.
MAX_COUNT = 2**63 - 1
