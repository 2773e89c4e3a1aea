"""The Packer adapter's parsing, on real `packer build -machine-readable` output (golden files)."""

from __future__ import annotations

from pathlib import Path

from fleet.adapters import packer

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "packer"


def parsed(name: str) -> packer.BuildOutput:
    return packer.parse_build((GOLDEN / name).read_text())


def test_successful_build_yields_the_image_id() -> None:
    output = parsed("build-ok.txt")
    assert output.artifacts == (packer.Artifact(
        "docker.role", "packer.post-processor.docker-import",
        "sha256:7623f50395468cdfb7201588484d0ef0ed98ccad7b50022f3bb721efc26afd4e"),)
    assert output.errors == () and output.stray == ()
    assert packer.failure_tail(output) == ""


def test_failed_provisioner_names_what_it_printed_and_why() -> None:
    output = parsed("build-provisioner-failed.txt")
    assert output.artifacts == ()
    assert packer.failure_tail(output) == (
        "about to fail | Script exited with non-zero exit status: 3.Allowed exit codes are: [0]")


def test_commas_and_newlines_are_unescaped() -> None:
    line = packer.parse_line(
        "1795545737,,ui,say,==> docker.role: Provisioning step had errors: Running the cleanup "
        "provisioner%!(PACKER_COMMA) if present...")
    assert line is not None
    assert line.data == ("say", "==> docker.role: Provisioning step had errors: Running the "
                         "cleanup provisioner, if present...")
    error = parsed("build-no-base-image.txt").errors[0]
    assert "\n" in error and error.startswith("Error running container")


def test_stray_lines_are_kept_not_dropped() -> None:
    output = packer.parse_build("panic: runtime error\n1795545733,docker.role,artifact-count,0\n")
    assert output.stray == ("panic: runtime error",)
    assert packer.failure_tail(output) == "panic: runtime error"


def test_argv_passes_lists_as_literals() -> None:
    argv = packer.build_argv(Path("t.pkr.hcl"), {"role": "web", "scripts": ["a.sh", "b.sh"]})
    assert argv == ["packer", "build", "-machine-readable", "-var", "role=web",
                    "-var", 'scripts=["a.sh", "b.sh"]', "t.pkr.hcl"]
