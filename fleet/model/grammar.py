"""fleet.toml's grammar: the spec tables a definition must match (fleet/model/spec.py holds the
machinery), and the JSON Schema generated from them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleet.model.spec import (
    NAME,
    Array,
    Bool,
    Duration,
    Int,
    Node,
    Problem,
    Str,
    Table,
    Union,
    show,
)


class RoleClass(StrEnum):
    """Cattle are replaced from images; pets are changed in place; snowflakes only when named."""

    CATTLE = "cattle"
    PET = "pet"
    SNOWFLAKE = "snowflake"


@dataclass(frozen=True)
class Scalar(Node):
    """A free setting: string, integer, float or boolean."""

    doc: str = ""

    def check(self, value: object, path: str) -> list[Problem]:
        if isinstance(value, str | int | float | bool):
            return []
        return [(path, f"expected a string, number or boolean, got {show(value)}")]

    def schema(self) -> dict[str, Any]:
        return self._with_doc({"type": ["string", "number", "boolean"]})


SETTING = r"[a-z][a-z0-9_]*"
# The environment of nodes fleet boots outside the fleet's own environments: `fleet verify`'s
# and the Vagrantfile's (fleet/model/verification.py). No environment of a fleet may take one.
LOCAL_ENVS = ("verify", "vagrant")
NAME_DOC = "a name of lower-case letters, digits and '-'"
URL = Str(pattern=r"https?://[A-Za-z0-9.\-]+(:\d+)?", pattern_doc="an http(s)://host:port address")
URLS = Str(pattern=r"https?://[A-Za-z0-9.\-]+(:\d+)?(,\s*https?://[A-Za-z0-9.\-]+(:\d+)?)*",
           pattern_doc="an http(s)://host:port address, or a cluster's, comma-separated")

CHECK = Table(
    fields={
        "type": Str(choices=("http", "tcp"), doc="http: GET path must answer 2xx; tcp: port accepts"),
        "path": Str(pattern=r"/\S*", pattern_doc="a path starting with /"),
        "interval": Duration(doc="how often Consul runs the check"),
        "timeout": Duration(doc="how long one run may take"),
    },
    required=("type",),
    doc="the Consul health check of the service",
)
SERVICE = Table(
    fields={"port": Int(minimum=1, maximum=65535), "check": CHECK},
    required=("port", "check"),
)
PROVISIONER = Union(
    tag="type",
    variants={
        "shell": Table(
            fields={
                "type": Str(choices=("shell",)),
                "scripts": Array(Str(), min_items=1, doc="paths relative to fleet.toml"),
            },
            required=("type", "scripts"),
        ),
        "chef-solo": Table(
            fields={
                "type": Str(choices=("chef-solo",)),
                "run_list": Array(
                    Str(pattern=r"recipe\[[a-z0-9_-]+(::[a-z0-9_-]+)?\]",
                        pattern_doc='"recipe[cookbook]" or "recipe[cookbook::recipe]"'),
                    min_items=1,
                    unique=True,
                ),
                "attributes": Table(values=Scalar(), key_pattern=SETTING,
                                    doc="node attributes (JSON) for chef-solo"),
            },
            required=("type", "run_list"),
        ),
    },
    doc="how the role's image is provisioned (cattle) or converged in place (pets)",
)
RELATIVE_DIR = Str(pattern=r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*",
                   pattern_doc="a directory relative to fleet.toml, such as db/migrate")
MIGRATIONS = Table(
    fields={
        "database": Str(pattern=NAME, pattern_doc=NAME_DOC,
                        doc="the pet role whose database the migrations change"),
        "regular": RELATIVE_DIR,
        "post_deployment": RELATIVE_DIR,
        "command": Str(pattern=r"\S.*", pattern_doc="a command line",
                       doc="run inside the image to apply them (default: fleet's own runner "
                           "of plain SQL files)"),
    },
    required=("database",),
    doc="cattle: the schema migrations the role's image carries; regular ones (default "
        "db/migrate) run before a rollout, post-deployment ones (default db/post_migrate) after",
)
MOVE = Table(
    fields={
        "method": Str(choices=("rsync", "pg_basebackup"),
                      doc="how `fleet move` copies the data: rsync over SSH (default), or "
                          "pg_basebackup for a PostgreSQL pet"),
        "cutover": Array(Int(minimum=1, maximum=100), min_items=1,
                         doc="the target's share of traffic (percent) after each cut-over "
                             "step, increasing, ending at 100 (default [10, 50, 100])"),
        "soak": Duration(doc="how long each cut-over step is held, gated on the target's "
                             "health (default 30s)"),
    },
    doc="pets: how `fleet move` moves an instance to another (copy, then weighted cut-over)",
)
ROLE = Table(
    fields={
        "class": Str(choices=tuple(c.value for c in RoleClass)),
        "base": Str(pattern=NAME, pattern_doc=NAME_DOC, doc="a key of [bases]"),
        "description": Str(),
        "provisioner": PROVISIONER,
        "services": Table(values=SERVICE, doc="service name -> port and health check"),
        "secrets": Array(
            Str(pattern=r"[A-Za-z0-9_/{}\-]+", pattern_doc="a key, or a kv path ending in a key"),
            unique=True,
            doc="keys read from Vault at boot: KEY lives at MOUNT/ROLE/ENV; or MOUNT/PATH/KEY",
        ),
        "count": Table(values=Int(minimum=0), doc="cattle: nodes per environment"),
        "instances": Table(
            values=Array(Str(pattern=NAME, pattern_doc=NAME_DOC), unique=True),
            doc="pets and snowflakes: named instances per environment",
        ),
        "depends_on": Array(Str(pattern=NAME, pattern_doc=NAME_DOC), unique=True),
        "data": Str(doc="pets: what data lives on the instance (shown before a replace)"),
        "settings": Table(values=Scalar(), key_pattern=SETTING,
                          doc="free role settings, passed to provisioners"),
        "scrub": Str(doc="pets: a script (relative to fleet.toml) run against a copy of the "
                         "data before anything connects to it, e.g. to mask personal data"),
        "migrations": MIGRATIONS,
        "move": MOVE,
        "heal": Str(doc='what `fleet reconcile` does about drift: "report" (default); cattle '
                        '"replace" (a node that is gone); pets and snowflakes "converge" '
                        "(in place, never replaced)"),
    },
    required=("class", "base", "provisioner"),
)
ENVIRONMENT = Table(
    fields={
        "name": Str(pattern=NAME, pattern_doc=NAME_DOC),
        "soak": Duration(doc="how long a version must pass here before the next environment"),
        "canary_weight": Int(minimum=0, maximum=100, doc="percent of traffic to the new version"),
        "min_healthy_percent": Int(minimum=0, maximum=100),
        "batch_size": Int(minimum=1),
        "max_surge": Int(minimum=0, doc="nodes a role may run above its count during a rollout, "
                                        "in whole batches (default: one batch_size): more lets "
                                        "the next batch boot while the one before is gated"),
        "manual_approval": Bool(),
        "require_verify": Bool(doc="a version enters only after its exact image passed "
                                   "`fleet verify` (its latest verify)"),
        "pets_from": Str(pattern=NAME, pattern_doc=NAME_DOC,
                         doc="use that environment's pets (databases, storage) instead of pets "
                             "of its own, as a canary runs new code against production's data"),
        "require_rehearsal": Bool(doc="a version with pending migrations enters only after a "
                                      "passing `fleet db rehearse` against this environment's data"),
        "rehearsal_max_age": Duration(doc="how old that rehearsal may be (default 24h)"),
    },
    required=("name",),
)
REVIEW = Table(
    fields={
        "like": Str(pattern=NAME, pattern_doc=NAME_DOC,
                    doc="the fixed environment ephemeral ones are made like (settings, secrets)"),
        "ttl": Duration(doc="how long one lives after its last deploy (default 8h)"),
        "max_ttl": Duration(doc="the longest ttl a create or extend may ask for (default 168h)"),
        "max": Int(minimum=1, doc="how many may exist at once (default 10)"),
        "count": Table(values=Int(minimum=0), doc="cattle role -> nodes (default 1 for each "
                                                  "cattle role that runs in `like`)"),
        "pets": Str(choices=("fresh", "copy"),
                    doc="fresh: empty pets of their own (default); copy: pets of their own "
                        "holding a copy of `like`'s pet data"),
    },
    required=("like",),
    doc="the template of ephemeral environments (review apps): fleet env create, fleet review up",
)
TARGET = Union(
    tag="kind",
    variants={
        "lab": Table(
            fields={
                "kind": Str(choices=("lab",)),
                "network": Str(pattern=NAME, pattern_doc=NAME_DOC),
                "subnet": Str(pattern=r"\d+\.\d+\.\d+\.0/24", pattern_doc="an IPv4 /24 such as "
                              '"172.30.7.0/24"'),
                "servers": Int(minimum=1, maximum=5,
                               doc="Consul servers and OpenBao nodes the lab runs: 1 (default), "
                                   "3 or 5 (a raft quorum; see fleet/model/servers.py)"),
            },
            required=("kind", "network", "subnet"),
        ),
        "aws": Table(
            fields={
                "kind": Str(choices=("aws",)),
                "region": Str(pattern=r"[a-z]{2}-[a-z]+-\d", pattern_doc="an AWS region"),
                "instance_type": Str(),
                "source_ami_owner": Str(),
                "source_ami_name": Str(),
                "ssh_username": Str(),
            },
            required=("kind", "region", "instance_type"),
        ),
    },
)
BASE = Table(
    fields={
        "suite": Str(choices=("bookworm",)),
        "packages": Array(Str(pattern=r"[a-z0-9][a-z0-9+.\-]*", pattern_doc="a Debian package"),
                          unique=True),
    },
    required=("suite",),
)
SPEC = Table(
    fields={
        "fleet": Table(
            fields={
                "name": Str(pattern=NAME, pattern_doc=NAME_DOC),
                "consul": URLS,
                "vault": URLS,
                "secrets_mount": Str(pattern=NAME, pattern_doc=NAME_DOC, doc="Vault kv-v2 mount"),
            },
            required=("name", "consul", "vault", "secrets_mount"),
        ),
        "environments": Array(ENVIRONMENT, min_items=1, doc="in promotion order"),
        "bases": Table(values=BASE, min_keys=1),
        "targets": Table(values=TARGET, min_keys=1),
        "roles": Table(values=ROLE, min_keys=1),
        "review": REVIEW,
    },
    required=("fleet", "environments", "bases", "targets", "roles"),
    doc="fleet.toml: the fleet definition",
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of fleet.toml, generated from the same spec that validates it."""
    schema = SPEC.schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fleet.toml"
    return schema
