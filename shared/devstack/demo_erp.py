"""The demo ERP that `examples/stock-at-hand.yaml` queries: a `demo_erp` schema with stock.

`hookline up` creates it in the hookline database when DEMO_ERP_DSN is not set (then the
examples' `erp` connection points there); a real ERP would be a database of its own. Kept
out of the migrations: production databases have no use for demo tables.
"""

from __future__ import annotations

from shared.db.pool import Connection

_SCHEMA = """
create schema if not exists demo_erp;
create table if not exists demo_erp.stock (
    item        text not null,
    warehouse   text not null,
    description text not null,
    on_hand     integer not null check (on_hand >= 0),
    primary key (item, warehouse)
);
insert into demo_erp.stock (item, warehouse, description, on_hand) values
    ('A-100', 'Gothenburg', 'Hex bolt M8x40', 120),
    ('A-100', 'Malmo', 'Hex bolt M8x40', 35),
    ('B-200', 'Gothenburg', 'Washer M8', 0)
on conflict do nothing;
"""


async def prepare_demo_erp(connection: Connection) -> None:
    """Create the demo schema and its rows (idempotent)."""
    await connection.execute(_SCHEMA)
