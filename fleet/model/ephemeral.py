"""Ephemeral environments (review apps): their names, their records, their expiry, and the
fleet they make when they join the fixed environments. Pure.

An ephemeral environment is made like a fixed one ([review] like = ENV): with that one's
settings but outside the promotion chain (nothing gates it and it gates nothing), the node
counts of [review] (one per cattle role by default), and pets of its own named ROLE-ENV
(fresh, or holding a copy of the template's data) -- or, where the template borrows its pets
(pets_from), the same lender's. Snowflakes never come along.

Its record (what `fleet env create` writes to Consul KV) keeps when it was made, by whom,
from which branch and commit, and when it expires: `expires` moves to now + ttl at every
deploy (GitLab's auto_stop_in), a pin keeps it past that, and `fleet env gc` destroys what
has expired and is not pinned.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace

from fleet.errors import ConfigError
from fleet.model.definition import Environment, Fleet, Role
from fleet.model.grammar import LOCAL_ENVS, RoleClass
from fleet.model.review import Review
from fleet.model.spec import DURATION_RE, seconds

REVIEW_PREFIX = "review-"
SLUG_MAX = 20      # node names (fleet-role-env-version-N) must stay a valid 63-character hostname
NAME_MAX = 30
NAME_RE = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")
TTL_DAYS = re.compile(r"(?:(\d+)d)?(.*)")   # Go's durations, and days before them: 2d, 1d12h


def slug(branch: str) -> str:
    """A branch name as GitLab's CI_COMMIT_REF_SLUG makes it (lower case; every character but
    a-z and 0-9 replaced by '-'; no '-' at either end), cut to SLUG_MAX characters; a cut
    name ends in 6 characters of its hash, so two long branches never share a slug."""
    text = re.sub(r"[^a-z0-9]", "-", branch.lower()).strip("-")
    text = re.sub(r"-+", "-", text)
    if not text:
        raise ConfigError(f'branch "{branch}" has no letter or digit to name an environment by',
                          fix="name the branch with letters or digits, or pass a name")
    if len(text) > SLUG_MAX:
        digest = hashlib.sha256(branch.encode()).hexdigest()[:6]
        text = f"{text[:SLUG_MAX - 7].rstrip('-')}-{digest}"
    return text


def review_name(branch: str) -> str:
    """The environment of a branch's review app: review-<slug>."""
    return f"{REVIEW_PREFIX}{slug(branch)}"


def check_name(fleet: Fleet, name: str) -> None:
    """A name an ephemeral environment may take: a slug, short enough for node names, not a
    fixed environment's, not one fleet keeps for its own nodes."""
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise ConfigError(f'"{name}" is not a valid environment name',
                          fix=f"use lower-case letters, digits and '-', starting with a letter, "
                          f"at most {NAME_MAX} characters")
    if name in (e.name for e in fleet.chain):
        raise ConfigError(f'"{name}" is a fixed environment of fleet.toml',
                          fix="choose another name: fixed environments are not made or destroyed "
                          "by fleet env")
    if name in LOCAL_ENVS:
        raise ConfigError(f'"{name}" is kept for the nodes of fleet verify and the Vagrantfile',
                          fix="choose another name")


def ttl(fleet: Fleet, text: str | None) -> int:
    """A --ttl (a duration: 30m, 8h, 2d, 1d12h) in seconds, the template's when None; one clear
    error if it does not parse or exceeds [review] max_ttl."""
    template = require_template(fleet)
    if text is None:
        return template.ttl_seconds
    days = TTL_DAYS.fullmatch(text)
    if not text or not days or not DURATION_RE.fullmatch(days.group(2)):
        raise ConfigError(f'ttl "{text}" is not a duration', fix='write it as 30m, 8h or 2d')
    wanted = int(days.group(1) or 0) * 86400 + seconds(days.group(2))
    if wanted == 0:
        raise ConfigError(f'ttl "{text}" is not a duration', fix='write it as 30m, 8h or 2d')
    if wanted > template.max_ttl_seconds:
        raise ConfigError(f"ttl {text} exceeds [review] max_ttl "
                          f"({template.max_ttl_seconds // 3600}h)",
                          fix="ask for less, or raise max_ttl in fleet.toml")
    return wanted


def require_template(fleet: Fleet) -> Review:
    if fleet.review is None:
        raise ConfigError("fleet.toml has no [review] table, so no ephemeral environment can "
                          "be made", fix='add [review] with like = "staging" (see the README)')
    return fleet.review


@dataclass(frozen=True)
class Record:
    """One ephemeral environment as Consul KV keeps it (times are Unix seconds)."""

    name: str
    like: str
    created: float
    created_by: str
    ttl: int
    expires: float
    pinned: bool = False
    branch: str = ""
    commit: str = ""
    state: str = "creating"   # creating -> ready -> destroying (then the record is deleted)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Record:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def expired(self, now: float) -> bool:
        return not self.pinned and now >= self.expires

    def deployed(self, now: float) -> Record:
        """The record after a deploy: it expires ttl after now (GitLab's auto_stop_in)."""
        return replace(self, expires=now + self.ttl)

    def extended(self, now: float, ttl: int) -> Record:
        return replace(self, ttl=ttl, expires=now + ttl)


def expires_in(record: Record, now: float) -> str:
    """'pinned', 'expired', or what is left, as 3h12m."""
    if record.pinned:
        return "pinned"
    left = int(record.expires - now)
    if left <= 0:
        return "expired"
    hours, rest = divmod(left, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def pet_instance(role: str, env: str) -> str:
    """The one instance of a pet role in an ephemeral environment."""
    return f"{role}-{env}"


def joined(fleet: Fleet, records: list[Record]) -> Fleet:
    """The fleet with these ephemeral environments beside its fixed ones (after them, outside
    the chain): each like its template environment, with [review]'s node counts and pets of
    its own (none where the template borrows its pets)."""
    if not records or fleet.review is None:
        return fleet
    template = fleet.review
    fixed = {e.name: e for e in fleet.chain}
    envs = list(fleet.chain)
    roles: dict[str, Role] = dict(fleet.roles)
    for record in sorted(records, key=lambda r: r.name):
        like = fixed.get(record.like) or fixed[template.like]
        envs.append(Environment(record.name, soak_seconds=0, canary_weight=0,
                                min_healthy_percent=0, batch_size=100, manual_approval=False,
                                require_verify=False, pets_from=like.pets_from, ephemeral=True))
        for name, role in roles.items():
            if role.cls is RoleClass.CATTLE:
                count = template.count.get(name, 0) if role.count.get(like.name, 0) else 0
                roles[name] = replace(role, count={**role.count, record.name: count})
            else:
                mine = (role.cls is RoleClass.PET and not like.pets_from
                        and bool(role.instances.get(like.name)))
                instances = (pet_instance(name, record.name),) if mine else ()
                roles[name] = replace(role, instances={**role.instances, record.name: instances})
    return replace(fleet, environments=tuple(envs), roles=roles)
