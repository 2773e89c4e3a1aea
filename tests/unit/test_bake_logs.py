"""bake.logs.prune: each role keeps its newest bake logs; one whose bake may still run stays."""

from __future__ import annotations

from pathlib import Path

from fleet.workflows.bake import logs


def test_each_role_keeps_its_newest_logs_and_a_running_bakes(tmp_path: Path) -> None:
    folder = logs.log_dir(tmp_path)
    folder.mkdir(parents=True)
    web = [folder / f"web-202612{day:02d}T120000.000000.log" for day in range(1, 8)]
    api = [folder / "api-20261201T120000.000000.log"]
    hyphened = [folder / f"web-api-202612{day:02d}T120000.000000.log" for day in range(1, 4)]
    for log in [*web, *api, *hyphened]:
        log.write_text("packer said\n")
    logs.upload_folder(web[0]).mkdir()  # the oldest web bake: still running (or not swept)

    gone = logs.prune(tmp_path, keep=2)

    assert sorted(gone) == sorted([*web[1:5], hyphened[0]])
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted([web[0].name, logs.upload_folder(web[0]).name, web[5].name,
                           web[6].name, api[0].name, hyphened[1].name, hyphened[2].name])
