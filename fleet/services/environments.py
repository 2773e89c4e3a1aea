"""Where ephemeral environments are recorded (Consul KV, check-and-set), and the context that
sees them:

  <prefix>/environments/<name>   one record each (fleet.model.ephemeral.Record)

`live(ctx)` is the context every command that works on environments uses: fleet.toml's fixed
environments and, beside them, the ephemeral ones Consul records. Reading them costs one
request; a command that never names an environment (validate, bake, lab) does without.
"""

from __future__ import annotations

from dataclasses import replace

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model import ephemeral
from fleet.model.ephemeral import Record
from fleet.services.context import Context
from fleet.services.state import StateConflict


class Registry:
    def __init__(self, consul: Consul, prefix: str) -> None:
        self.consul, self.root = consul, f"{prefix}/environments/"

    def all(self) -> list[Record]:
        return sorted((Record.from_json(e.value) for e in self.consul.list(self.root) if e.value),
                      key=lambda r: r.name)

    def get(self, name: str) -> tuple[Record | None, int]:
        """The record and its ModifyIndex (0 when there is none)."""
        entry = self.consul.get(self.root + name)
        if entry is None or not entry.value:
            return None, 0
        return Record.from_json(entry.value), entry.modify_index

    def put(self, record: Record, index: int) -> None:
        """Write the record if nobody changed it since index (0: only if there is none)."""
        if not self.consul.put(self.root + record.name, record.to_json(), cas=index):
            raise StateConflict(f"environment {record.name} changed while fleet was writing it",
                                "another operator is at work on it: rerun the command")

    def delete(self, name: str, index: int) -> None:
        if not self.consul.delete_cas(self.root + name, index):
            raise StateConflict(f"environment {name} changed while fleet was deleting it",
                                "rerun the command")


def registry(ctx: Context) -> Registry:
    return Registry(ctx.consul(), ctx.fleet.kv_prefix)


def live(ctx: Context, records: list[Record] | None = None) -> Context:
    """The context with the ephemeral environments Consul records beside the fixed ones
    (records: those already read, so as not to read them again)."""
    if ctx.fleet.review is None:
        return ctx
    if records is None:
        try:
            records = registry(ctx).all()
        except FleetError as exc:
            raise FleetError(f"cannot read the ephemeral environments: {exc.what}",
                             exc.fix or "start Consul (fleet lab up) and rerun") from exc
    return replace(ctx, fleet=ephemeral.joined(ctx.fleet, records)) if records else ctx
