"""Malformed fleet files: each gives its clear `fleet.toml:LINE: path: message`, and through the
CLI one more line and exit 1, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.model.definition import parse
from tests.conftest import EXAMPLE

TEXT = EXAMPLE.read_text()

# (case id, old snippet, new snippet, path, message fragment, marker of the expected line)
# The expected line is the line of `marker` in the edited text ("" = the line of `new`).
CASES = [
    ("count-string", "production = 2 }\n\n[roles.web.services", 'production = "three" }\n\n[roles.web.services',
     "roles.web.count.production", 'expected an integer >= 0, got "three"', 'production = "three"'),
    ("count-negative", "canary = 1, staging = 1, production = 2 }\n\n[roles.web.", "canary = -1, staging = 1, production = 2 }\n\n[roles.web.",
     "roles.web.count.canary", "expected an integer >= 0, got -1", "canary = -1"),
    ("count-float", "canary = 1, staging = 1, production = 2 }\n\n[roles.api.", "canary = 1.5, staging = 1, production = 2 }\n\n[roles.api.",
     "roles.api.count.canary", "expected an integer >= 0, got 1.5", "canary = 1.5"),
    ("unknown-env-key", "batch_size = 2", "batch_sise = 2",
     "environments[2].batch_sise", 'unknown key (did you mean "batch_size"?)', ""),
    ("unknown-role-key", 'description = "Rails front end (Puma)"', 'descripton = "Rails front end (Puma)"',
     "roles.web.descripton", 'unknown key (did you mean "description"?)', ""),
    ("unknown-top-key", "[bases.bookworm]", "[base.bookworm]",
     "base", 'unknown key (did you mean "bases"?)', ""),
    ("unknown-fleet-key", 'secrets_mount = "fleet"', 'secrets_mount = "fleet"\nowner = "ops"',
     "fleet.owner", "unknown key", 'owner = "ops"'),
    ("bad-class", 'class = "cattle"\nbase = "bookworm"\ndescription = "Rails', 'class = "cow"\nbase = "bookworm"\ndescription = "Rails',
     "roles.web.class", 'expected one of cattle, pet, snowflake, got "cow"', 'class = "cow"'),
    ("class-typo", 'class = "pet"\nbase = "bookworm"\ndescription = "git storage"', 'class = "pets"\nbase = "bookworm"\ndescription = "git storage"',
     "roles.gitaly.class", '(did you mean "pet"?)', 'class = "pets"'),
    ("soak-bad", 'soak = "30s"', 'soak = "thirty seconds"',
     "environments[0].soak", 'expected a duration such as "30s"', ""),
    ("soak-int", 'soak = "1m"', "soak = 60",
     "environments[1].soak", "expected a duration", ""),
    ("weight-range", "canary_weight = 10", "canary_weight = 150",
     "environments[0].canary_weight", "expected an integer >= 0 and <= 100, got 150", ""),
    ("min-healthy-range", "min_healthy_percent = 0", "min_healthy_percent = 101",
     "environments[0].min_healthy_percent", "<= 100, got 101", ""),
    ("batch-zero", "batch_size = 1\n\n[[environments]]\nname = \"staging\"", "batch_size = 0\n\n[[environments]]\nname = \"staging\"",
     "environments[0].batch_size", "expected an integer >= 1, got 0", "batch_size = 0"),
    ("surge-negative", "batch_size = 1\n\n[[environments]]\nname = \"staging\"",
     "batch_size = 1\nmax_surge = -2\n\n[[environments]]\nname = \"staging\"",
     "environments[0].max_surge", "expected an integer >= 0, got -2", "max_surge = -2"),
    ("approval-string", "manual_approval = true", 'manual_approval = "yes"',
     "environments[2].manual_approval", 'expected true or false, got "yes"', ""),
    ("env-name-upper", 'name = "staging"', 'name = "Staging"',
     "environments[1].name", "expected a name of lower-case letters", ""),
    ("env-missing-name", 'name = "staging"\n', "",
     "environments[1].name", "missing required key", '[[environments]]\nsoak = "1m"'),
    ("env-duplicate", 'name = "staging"', 'name = "canary"',
     "environments[1].name", 'duplicate environment "canary" (also environments[0])', 'name = "canary"\nsoak = "1m"'),
    ("no-environments", None, None,
     "environments", "expected at least 1 item(s), got 0", ""),
    ("env-missing-in-count", "count = { canary = 1, staging = 1, production = 1 }", "count = { canary = 1, staging = 1 }",
     "roles.git.count.production", 'environment "production" is missing', ""),
    ("unknown-env-in-count", "count = { canary = 0, staging = 1, production = 1 }", "count = { canary = 0, stagin = 1, staging = 1, production = 1 }",
     "roles.sidekiq.count.stagin", 'unknown environment (did you mean "staging"?)', ""),
    ("env-missing-in-instances", 'instances = { canary = [], staging = ["redis-stg-01"], production = ["redis-01"] }', 'instances = { staging = ["redis-stg-01"], production = ["redis-01"] }',
     "roles.redis.instances.canary", 'environment "canary" is missing', ""),
    ("cattle-with-instances", "count = { canary = 1, staging = 1, production = 1 }", 'count = { canary = 1, staging = 1, production = 1 }\ninstances = { canary = ["git-1"] }',
     "roles.git.instances", "a cattle role takes count, not instances", 'instances = { canary = ["git-1"] }'),
    ("pet-with-count", 'settings = { maxmemory = "64mb" }', 'settings = { maxmemory = "64mb" }\ncount = { canary = 1 }',
     "roles.redis.count", "a pet role takes instances, not count", "count = { canary = 1 }"),
    ("pet-missing-instances", 'instances = { canary = [], staging = ["redis-stg-01"], production = ["redis-01"] }\n', "",
     "roles.redis.instances", "missing required key", "[roles.redis]"),
    ("duplicate-instance", 'production = ["redis-01"]', 'production = ["postgres-01"]',
     "roles.redis.instances.production[0]", 'duplicate instance "postgres-01" (also in roles.postgres)', 'production = ["postgres-01"] }\nsettings = { maxmemory'),
    ("instance-repeated", 'production = ["gitaly-01"]', 'production = ["gitaly-01", "gitaly-01"]',
     "roles.gitaly.instances.production[1]", 'duplicate "gitaly-01" (also item 0)', ""),
    ("instance-name-bad", 'production = ["bastion-01"]', 'production = ["Bastion_01"]',
     "roles.bastion.instances.production[0]", "expected a name of lower-case letters", ""),
    ("depends-unknown", 'depends_on = ["gitaly"]', 'depends_on = ["gitaley"]',
     "roles.git.depends_on[0]", 'unknown role "gitaley" (did you mean "gitaly"?)', ""),
    ("depends-self", 'depends_on = ["gitaly"]', 'depends_on = ["git"]',
     "roles.git.depends_on[0]", "a role cannot depend on itself", ""),
    ("depends-cycle-2", 'description = "git storage"', 'description = "git storage"\ndepends_on = ["web"]',
     "roles.gitaly.depends_on", "depends_on cycle: web -> gitaly -> web", 'depends_on = ["web"]'),
    ("depends-cycle-3", 'description = "cache and job queue"', 'description = "cache and job queue"\ndepends_on = ["sidekiq"]',
     "roles.sidekiq.depends_on", "depends_on cycle: redis -> sidekiq -> redis", 'depends_on = ["postgres", "redis"]'),
    ("depends-not-array", 'depends_on = ["gitaly"]', 'depends_on = "gitaly"',
     "roles.git.depends_on", 'expected an array, got "gitaly"', ""),
    ("secret-outside-mount", 'secrets = ["db_password", "secret_key_base"]', 'secrets = ["db_password", "kv/shared/smtp_password"]',
     "roles.web.secrets[1]", "secret path \"kv/shared/smtp_password\" is outside the fleet's mount \"fleet/\"", ""),
    ("secret-duplicate", 'secrets = ["db_password"]\nprovisioner = { type = "shell", scripts = ["packer/scripts/api.sh"] }', 'secrets = ["db_password", "db_password"]\nprovisioner = { type = "shell", scripts = ["packer/scripts/api.sh"] }',
     "roles.api.secrets[1]", 'duplicate "db_password" (also item 0)', 'secrets = ["db_password", "db_password"]'),
    ("secret-bad-chars", 'secrets = ["db_password"]\nprovisioner = { type = "shell", scripts = ["packer/scripts/sidekiq.sh"] }', 'secrets = ["db password"]\nprovisioner = { type = "shell", scripts = ["packer/scripts/sidekiq.sh"] }',
     "roles.sidekiq.secrets[0]", "expected a key, or a kv path ending in a key", 'secrets = ["db password"]'),
    ("port-duplicate", "[roles.web.services.web]\nport = 8080", "[roles.web.services.admin]\nport = 8080\ncheck = { type = \"tcp\" }\n\n[roles.web.services.web]\nport = 8080",
     "roles.web.services.web.port", "port 8080 is already used by service admin", "port = 8080\ncheck = { type = \"http\""),
    ("port-range", "port = 6379", "port = 70000",
     "roles.redis.services.redis.port", "expected an integer >= 1 and <= 65535, got 70000", ""),
    ("http-check-no-path", 'check = { type = "http", path = "/-/health", interval = "2s", timeout = "1s" }\n\n[roles.api]', 'check = { type = "http", interval = "2s", timeout = "1s" }\n\n[roles.api]',
     "roles.web.services.web.check.path", "an http check needs a path", 'check = { type = "http", interval'),
    ("check-type-bad", 'check = { type = "tcp", interval = "2s", timeout = "1s" }\n\n# ---- snowflakes', 'check = { type = "grpc", interval = "2s", timeout = "1s" }\n\n# ---- snowflakes',
     "roles.redis.services.redis.check.type", 'expected one of http, tcp, got "grpc"', 'type = "grpc"'),
    ("service-missing-port", "[roles.git.services.git-ssh]\nport = 2222\n", "[roles.git.services.git-ssh]\n",
     "roles.git.services.git-ssh.port", "missing required key", "[roles.git.services.git-ssh]"),
    ("unknown-base", 'base = "bookworm"\ndescription = "SSH jump host"', 'base = "bullseye"\ndescription = "SSH jump host"',
     "roles.bastion.base", 'unknown base "bullseye"', 'base = "bullseye"'),
    ("base-suite", 'suite = "bookworm"', 'suite = "trixie"',
     "bases.bookworm.suite", 'expected one of bookworm, got "trixie"', ""),
    ("provisioner-type", 'provisioner = { type = "shell", scripts = ["packer/scripts/git.sh"] }', 'provisioner = { type = "ansible", scripts = ["packer/scripts/git.sh"] }',
     "roles.git.provisioner.type", 'expected one of shell, chef-solo, got "ansible"', 'type = "ansible"'),
    ("provisioner-no-scripts", 'provisioner = { type = "shell", scripts = ["packer/scripts/git.sh"] }', 'provisioner = { type = "shell", scripts = [] }',
     "roles.git.provisioner.scripts", "expected at least 1 item(s), got 0", 'scripts = []'),
    ("run-list-form", 'run_list = ["recipe[monitoring]"]', 'run_list = ["monitoring"]',
     "roles.monitoring.provisioner.run_list[0]", 'expected "recipe[cookbook]" or "recipe[cookbook::recipe]", got "monitoring"', 'run_list = ["monitoring"]'),
    ("provisioner-missing", 'provisioner = { type = "shell", scripts = ["packer/scripts/bastion.sh"] }\n', "",
     "roles.bastion.provisioner", "missing required key", "[roles.bastion]"),
    ("settings-table", 'settings = { maxmemory = "64mb" }', 'settings = { maxmemory = { value = "64mb" } }',
     "roles.redis.settings.maxmemory", "expected a string, number or boolean, got a table", "settings = { maxmemory"),
    ("role-name-upper", "[roles.bastion]", "[roles.Bastion]",
     "roles.Bastion", "expected a key matching", ""),
    ("consul-url", 'consul = "http://127.0.0.1:8500"', 'consul = "127.0.0.1:8500"',
     "fleet.consul", "expected an http(s)://host:port address", ""),
    ("vault-missing", 'vault = "http://127.0.0.1:8200"    # VAULT_ADDR overrides, as for the vault/bao CLI\n', "",
     "fleet.vault", "missing required key", "[fleet]"),
    ("subnet", 'subnet = "172.30.7.0/24"', 'subnet = "172.30.7.0/16"',
     "targets.lab.subnet", 'expected an IPv4 /24 such as "172.30.7.0/24"', ""),
    ("target-kind", 'kind = "aws"', 'kind = "gcp"',
     "targets.aws.kind", 'expected one of lab, aws, got "gcp"', ""),
    ("aws-region", 'region = "eu-west-1"', 'region = "Ireland"',
     "targets.aws.region", "expected an AWS region", ""),
    ("roles-not-table", None, None, "roles", "expected a table, got an array", ""),
]


def mutate(case_id: str, old: str | None, new: str | None) -> str:
    if case_id == "no-environments":  # top-level keys must come before the first table
        head, _, rest = TEXT.partition("[[environments]]")
        return "environments = []\n" + head + rest[rest.index("[bases.bookworm]"):]
    if case_id == "roles-not-table":
        return "roles = []\n" + TEXT[:TEXT.index("# ---- cattle")]
    assert old is not None and new is not None
    assert TEXT.count(old) >= 1, f"{case_id}: snippet not in the example"
    return TEXT.replace(old, new, 1)


def line_of(text: str, marker: str) -> int:
    index = text.index(marker)
    return text.count("\n", 0, index) + 1 + marker[: len(marker) - len(marker.lstrip("\n"))].count("\n")


@pytest.mark.parametrize(("case_id", "old", "new", "path", "message", "marker"), CASES,
                         ids=[c[0] for c in CASES])
def test_malformed_file_names_line_path_and_problem(case_id: str, old: str | None,
                                                    new: str | None, path: str, message: str,
                                                    marker: str) -> None:
    text = mutate(case_id, old, new)
    with pytest.raises(ConfigError) as info:
        parse(text)
    expected_line = line_of(text, marker or new or path.split(".")[0])
    prefix = f"fleet.toml:{expected_line}: {path}: "
    matching = [p for p in info.value.problems if p.startswith(prefix) and message in p]
    assert matching, f"want {prefix}...{message}\ngot:\n" + "\n".join(info.value.problems)


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_every_problem_is_reported_at_once() -> None:
    text = (TEXT.replace("batch_size = 2", "batch_sise = 2")
            .replace('production = 2 }\n\n[roles.web.services', 'production = "three" }\n\n[roles.web.services')
            .replace("port = 6379", "port = 0")
            .replace('suite = "bookworm"', 'suite = "sid"', 1))  # the first base's
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert len(info.value.problems) == 4, info.value.problems


def test_toml_syntax_error_names_the_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse(TEXT.replace('name = "gitlab"', 'name = "gitlab'), "fleet.toml")
    assert info.value.problems[0].startswith("fleet.toml: ")
    assert "line 7" in info.value.problems[0]


def test_duplicate_toml_key_is_a_syntax_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse(TEXT.replace("[roles.bastion]", "[roles.bastion]\nclass = \"pet\"", 1))
    assert "not valid TOML" in info.value.what


@pytest.mark.parametrize(("case_id", "old", "new", "path", "message", "marker"), CASES,
                         ids=[c[0] for c in CASES])
def test_cli_prints_the_problem_and_exits_1(case_id: str, old: str | None, new: str | None,
                                            path: str, message: str, marker: str,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.cli.main import main

    file = tmp_path / "fleet.toml"
    file.write_text(mutate(case_id, old, new))
    monkeypatch.setattr(sys, "argv", ["fleet", "-f", str(file), "validate"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1
    assert out == ""
    assert f": {path}: " in err and message in err
    assert err.strip().splitlines()[-1].startswith("fleet: error: fleet.toml has ")
    assert "Traceback" not in err
