"""Moving a pet, the pure model: the move's state machine and record (fleet/model/move.py),
[roles.ROLE.move], the cut-over schedule and weights, and the verification diff
(fleet/model/cutover.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleet.errors import ConfigError
from fleet.model import move as mv
from fleet.model.cutover import (
    DEFAULT_CUTOVER,
    NO_NEW_WORK,
    CutoverError,
    Difference,
    Mismatch,
    MoveSettings,
    Weights,
    cutover_weights,
    differences,
    parse_schedule,
    schedule_problem,
    summary,
    weights_for,
)
from fleet.model.definition import parse
from fleet.model.grammar import json_schema
from fleet.model.move import Move, MoveError, Outcome, Step
from tests.conftest import EXAMPLE

TEXT = EXAMPLE.read_text()
FLEET = parse(TEXT)
GITALY = 'settings = { storage_name = "default" }\n'
POSTGRES = 'settings = { max_connections = 100 }\n'
WEB = 'provisioner = { type = "shell", scripts = ["packer/scripts/web.sh"] }\n'
BY, AT = "ops@laptop", "2026-12-02T10:00:00+00:00"


# ---- fleet.toml --------------------------------------------------------------------------

def test_move_settings_parse_with_their_defaults() -> None:
    assert all(r.move is None for r in FLEET.roles.values()), "the example declares no [move]"
    role = json_schema()["properties"]["roles"]["additionalProperties"]["properties"]
    assert set(role["move"]["properties"]) == {"method", "cutover", "soak"}, "the schema shows it"
    bare = parse(TEXT.replace(GITALY, GITALY + "move = {}\n"))
    assert bare.role("gitaly").move == MoveSettings("rsync", (10, 50, 100), 30), "defaults"
    full = parse(TEXT.replace(POSTGRES, POSTGRES + 'move = { method = "pg_basebackup", '
                                                   'cutover = [25, 100], soak = "2m" }\n'))
    assert full.role("postgres").move == MoveSettings("pg_basebackup", (25, 100), 120), "all read"


BAD = [
    ("not-a-pet", WEB, WEB + "move = {}\n", "roles.web.move",
     "only a pet role moves, not a cattle role"),
    ("decreasing", GITALY, GITALY + "move = { cutover = [50, 10, 100] }\n",
     "roles.gitaly.move.cutover", "must increase step by step (50 then 10)"),
    ("short-of-100", GITALY, GITALY + "move = { cutover = [10, 50] }\n",
     "roles.gitaly.move.cutover", "must end at 100 (all traffic on the target), not 50"),
    ("zero", GITALY, GITALY + "move = { cutover = [0, 100] }\n",
     "roles.gitaly.move.cutover[0]", "expected an integer >= 1 and <= 100, got 0"),
    ("empty", GITALY, GITALY + "move = { cutover = [] }\n",
     "roles.gitaly.move.cutover", "expected at least 1 item(s), got 0"),
    ("method", GITALY, GITALY + 'move = { method = "scp" }\n',
     "roles.gitaly.move.method", "expected one of rsync, pg_basebackup"),
    ("basebackup-no-server", GITALY, GITALY + 'move = { method = "pg_basebackup" }\n',
     "roles.gitaly.move.method", 'base "bookworm" installs no postgresql-NN server'),
    ("zero-soak", GITALY, GITALY + 'move = { soak = "0s" }\n',
     "roles.gitaly.move.soak", "0s holds no step"),
    ("unknown-key", GITALY, GITALY + 'move = { cutovr = [100] }\n',
     "roles.gitaly.move.cutovr", 'unknown key (did you mean "cutover"?)'),
]


@pytest.mark.parametrize(("case", "old", "new", "path", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_move_settings_are_named_with_their_line(case: str, old: str, new: str, path: str,
                                                     message: str) -> None:
    assert TEXT.count(old) == 1, f"{case}: the snippet to replace is unique"
    text = TEXT.replace(old, new)
    with pytest.raises(ConfigError) as caught:
        parse(text)
    hits = [line for line in caught.value.problems if f": {path}: " in line and message in line]
    assert hits, f"{case}: expected {path}: {message!r} among {caught.value.problems}"
    number = int(hits[0].split(":")[1])
    assert text.splitlines()[number - 1] == new[len(old):].splitlines()[-1], \
        f"{case}: the line named ({number}) is the added one: {hits[0]}"


# ---- cut-over weights ----------------------------------------------------------------------

def test_a_cutover_schedule_is_parsed_strictly() -> None:
    assert parse_schedule("") == DEFAULT_CUTOVER == (10, 50, 100), "empty: the default"
    assert parse_schedule("10, 50%,100") == (10, 50, 100), "spaces and % are fine"
    assert parse_schedule("100") == (100,), "all at once is a schedule"
    for text, message in [("10,50", "must end at 100"), ("50,50,100", "must increase"),
                          ("0,100", "0 is not a percentage from 1 to 100"),
                          ("10,150", "150 is not a percentage"), ("ten,100", "not a list"),
                          ("10,,100", "not a list")]:
        with pytest.raises(CutoverError, match=message):
            parse_schedule(text)
    assert schedule_problem([True, 100]) == "True is not a percentage from 1 to 100", "no bools"
    assert schedule_problem([]) == "needs at least one step (100)"


def test_cutover_weights_split_the_source_weight() -> None:
    steps = cutover_weights((10, 50, 100))
    assert [(s.passing, t.passing) for s, t in steps] == [(90, 10), (50, 50), (1, 100)], \
        "shares of the pet's weight 100"
    source_last = steps[-1][0]
    assert source_last == Weights(1, 0, (NO_NEW_WORK,)), \
        "0 %: Consul refuses Passing 0, so Passing 1, Warning 0 and the no-new-work tag"
    assert steps[0][1].consul() == {"Passing": 10, "Warning": 1}, "Consul's spelling"
    assert weights_for(1, full=10).passing == 1 and weights_for(50, full=10).passing == 5, \
        "a pet of another weight keeps it across the cut-over, never below 1"


# ---- verification diff -------------------------------------------------------------------

def test_the_verification_diff_lists_what_differs_in_order() -> None:
    src_repos = {"b/two.git": "aa" * 20, "a/one.git": "bb" * 20, "c/three.git": "cc" * 20}
    dst_repos = {"a/one.git": "bb" * 20, "b/two.git": "ff" * 20, "d/four.git": "dd" * 20}
    src_files = {"config/gitaly.toml": "11" * 32, "hooks/pre": "22" * 32}
    dst_files = {"config/gitaly.toml": "11" * 32, "hooks/pre": "22" * 32}
    assert differences(src_repos, src_repos, src_files, dst_files) == [], "an exact copy"
    assert summary([]) == "verify found no difference"
    found = differences(src_repos, dst_repos, src_files, {"config/gitaly.toml": "11" * 32},
                        fsck_errors={"a/one.git": "missing blob 1234"})
    assert [(d.kind, d.name, d.problem) for d in found] == [
        ("repository", "a/one.git", Mismatch.BROKEN),
        ("repository", "b/two.git", Mismatch.DIFFERENT),
        ("repository", "c/three.git", Mismatch.MISSING),
        ("repository", "d/four.git", Mismatch.EXTRA),
        ("file", "hooks/pre", Mismatch.MISSING)], "repositories then files, each by name"
    assert found[1] == Difference("repository", "b/two.git", Mismatch.DIFFERENT, "aa" * 20,
                                  "ff" * 20), "both checksums kept"
    line = summary(found)
    assert line.startswith("verify found 5 difference(s): repository a/one.git fails git fsck "
                           "on target: missing blob 1234; repository b/two.git differs "
                           "(aaaaaaaaaaaa on source, ffffffffffff on target); repository "
                           "c/three.git missing on target"), line
    assert line.endswith("; and 2 more") and "\n" not in line, "one line naming the first three"


# ---- the state machine -------------------------------------------------------------------

def new_move(declared: bool = False) -> Move:
    return mv.begin("gitaly", "gitaly-01", "gitaly-02", "production", "v2", "rsync",
                    (10, 50, 100), 30, declared, BY, AT)


def walk(upto: Step) -> Move:
    """A move carried, step by step, until `upto` starts."""
    move = new_move()
    for step in mv.ORDER[1:mv.ORDER.index(upto) + 1]:
        while move.step is Step.CUT_OVER and not move.held:
            move = mv.weight_held(move, BY, AT)
        move = move.go(step, BY, AT)
    return move


def roundtrip(move: Move) -> Move:
    back = Move.from_json(move.to_json())
    assert back == move, f"the record round-trips at {move.step}"
    return back


def test_a_move_walks_every_step_and_its_history_tells_it() -> None:
    move = roundtrip(new_move())
    assert move.key == "moves/gitaly-01" and move.in_flight and move.step is Step.PLAN
    seen = []
    while (step := mv.next_step(move)) is not None:
        seen.append(step)
        assert mv.next_step(roundtrip(move)) is step, f"{step}: a rerun redoes the step recorded"
        if step is Step.CUT_OVER and not move.held:
            share = mv.target_share(move)
            move = mv.weight_held(move, BY, AT)
            assert move.history[-1].detail == f"{share}% held 30s", "each weight held is told"
            continue
        move = move.go(mv.ORDER[mv.ORDER.index(step) + 1], BY, AT)
    assert seen == [Step.PLAN, Step.CREATE_TARGET, Step.READ_ONLY, Step.COPY, Step.VERIFY,
                    Step.CUT_OVER, Step.CUT_OVER, Step.CUT_OVER], "every step, a weight each"
    assert move.held and mv.target_share(move) == 100, "held at 100 %: nothing until --finish"
    move = roundtrip(mv.finish(move, BY, AT))
    assert move.step is Step.FINISHING and mv.writable(move) == "gitaly-02", "target writable"
    assert mv.finish(move, BY, AT) is move, "a rerun of --finish carries the finishing on"
    move = roundtrip(move.go(Step.FINISHED, BY, AT))
    assert not move.in_flight and mv.next_step(move) is None
    told = [(e.step, e.outcome) for e in move.history]
    assert told[:3] == [(Step.PLAN, Outcome.STARTED), (Step.PLAN, Outcome.DONE),
                        (Step.CREATE_TARGET, Outcome.STARTED)], told
    assert told[-2:] == [(Step.FINISHING, Outcome.STARTED), (Step.FINISHING, Outcome.DONE)], told
    assert sum(1 for s, o in told if (s, o) == (Step.CUT_OVER, Outcome.DONE)) == 4, \
        "three weights held, then the cut-over itself done"


def test_every_step_resumes_after_a_kill() -> None:
    for step in mv.ORDER[:-1]:
        assert step in mv.RESUME, f"{step} says how a rerun redoes it"
        move = walk(step)
        resumed = mv.resume(roundtrip(move), "other@host", "2026-12-02T11:00:00+00:00")
        assert resumed.step is step and mv.next_step(resumed) is step, f"{step} is redone"
        assert resumed.history[-1].outcome is Outcome.RESUMED and resumed.updated_by == \
            "other@host", f"{step}: the rerun is in the history"
    assert Step.ABORTING in mv.RESUME, "an abort cut short is carried on too"
    cut = mv.weight_held(walk(Step.CUT_OVER), BY, AT)
    again = mv.resume(cut, BY, AT)
    assert again.weights_done == 1 and mv.target_share(again) == 50, \
        "a kill mid-soak credits nothing: the weight not yet held is set and soaked again"


def test_a_failed_step_is_retried_or_aborted() -> None:
    failed = roundtrip(mv.fail(walk(Step.VERIFY), "verify found 1 difference(s): ...", BY, AT))
    assert failed.step is Step.FAILED and failed.reached is Step.VERIFY and failed.in_flight
    assert failed.history[-1] == mv.Entry(Step.VERIFY, Outcome.FAILED, AT, BY,
                                          "verify found 1 difference(s): ..."), "the error told"
    assert mv.writable(failed) == "", "the source stays read-only (and intact) after a mismatch"
    assert mv.next_step(failed) is Step.COPY, "a mismatch is copied again before verifying"
    retried = mv.resume(failed, BY, AT)
    assert retried.step is Step.COPY and retried.error == "" and retried.halted_at is None
    assert retried.history[-1] == mv.Entry(Step.COPY, Outcome.STARTED, AT, BY, "retry after: "
                                           "verify found 1 difference(s): ..."), "told why"
    cut = mv.weight_held(mv.weight_held(walk(Step.CUT_OVER), BY, AT), BY, AT)
    down = mv.fail(cut, "gitaly-02 failed its health check at 100%", BY, AT)
    assert down.weights_done == 0 and mv.target_share(down) == 0, \
        "a target failing during the cut-over: all traffic back on the source"
    assert mv.resume(down, BY, AT).step is Step.CUT_OVER, "a rerun cuts over from the start"
    with pytest.raises(MoveError, match="cannot go from failed to failed"):
        mv.fail(down, "again", BY, AT)


def test_abort_undoes_what_each_step_did() -> None:
    expected = {
        Step.PLAN: (False, False, False),
        Step.CREATE_TARGET: (False, False, True),
        Step.READ_ONLY: (False, True, True),
        Step.COPY: (False, True, True),
        Step.VERIFY: (False, True, True),
        Step.CUT_OVER: (True, True, True),
    }
    for step, (traffic, writes, destroy) in expected.items():
        undo = mv.abort_plan(walk(step))
        assert (undo.traffic_to_source, undo.source_writable, undo.destroy_target) == \
            (traffic, writes, destroy), f"abort at {step}: {undo}"
        aborting = roundtrip(mv.abort(walk(step), BY, AT))
        assert aborting.step is Step.ABORTING and aborting.halted_at is step
        assert aborting.history[-2:] == (mv.Entry(step, Outcome.STOPPED, AT, BY, "abort asked"),
                                         mv.Entry(Step.ABORTING, Outcome.STARTED, AT, BY)), \
            f"{step}: the history says it was stopped, not done"
        assert mv.abort_plan(aborting) == undo, f"{step}: a rerun of --abort undoes the same"
        assert mv.abort(aborting, BY, AT) is aborting, "and does not record it twice"
        done = aborting.go(Step.ABORTED, BY, AT)
        assert mv.writable(done) == "gitaly-01" and mv.target_share(done) == 0, "all back"
    failed = mv.fail(walk(Step.COPY), "rsync: connection reset", BY, AT)
    assert mv.abort_plan(failed).source_writable, "a failed move aborts from where it failed"
    kept = mv.abort_plan(walk(Step.COPY), keep_target=True)
    assert not kept.destroy_target and kept.lines() == ["source writable again",
                                                        "target kept: --keep-target"]
    mine = walk(Step.COPY)
    declared = mv.abort_plan(replace(mine, target_declared=True))
    assert not declared.destroy_target and "fleet.toml declares it" in declared.keep_target_why


def test_refusals_are_one_line_each() -> None:
    held = walk(Step.CUT_OVER)
    with pytest.raises(MoveError, match=r"cutting over \(0 of 3 weights held, 10% on gitaly-02 "
                                        r"now\): --finish needs 100 % held"):
        mv.finish(held, BY, AT)
    with pytest.raises(MoveError, match="is at copy: --finish needs the cut-over at 100 %"):
        mv.finish(walk(Step.COPY), BY, AT)
    with pytest.raises(MoveError, match="is at failed at verify"):
        mv.finish(mv.fail(walk(Step.VERIFY), "x", BY, AT), BY, AT)
    finished = walk(Step.FINISHED)
    with pytest.raises(MoveError, match="is finished: there is nothing to abort"):
        mv.abort(finished, BY, AT)
    with pytest.raises(MoveError, match="is finishing: the target may already hold writes"):
        mv.abort(walk(Step.FINISHING), BY, AT)
    with pytest.raises(MoveError, match="is finishing"):
        mv.abort(mv.fail(walk(Step.FINISHING), "terraform destroy failed", BY, AT), BY, AT)
    with pytest.raises(MoveError, match="was aborted: there is nothing to finish"):
        mv.finish(mv.abort(walk(Step.COPY), BY, AT), BY, AT)
    with pytest.raises(MoveError, match="cannot go from plan to copy"):
        new_move().go(Step.COPY, BY, AT)
    busy = walk(Step.COPY)
    with pytest.raises(MoveError) as caught:
        mv.start_or_resume(busy, "gitaly-01", "gitaly-03")
    assert caught.value.line() == ("gitaly-01 is already moving to gitaly-02 (at copy, since "
                                   f"{AT}, by {BY}): carry it on (fleet move gitaly-01) or "
                                   "abort it (fleet move gitaly-01 --abort) first")
    assert mv.start_or_resume(busy, "gitaly-01", "gitaly-02") is True, "the same move resumes"
    assert mv.start_or_resume(busy, "gitaly-01", "") is True, "no --to: whatever is in flight"
    assert mv.start_or_resume(finished, "gitaly-01", "gitaly-03") is False, "a new move may start"
    assert mv.start_or_resume(None, "gitaly-01", "gitaly-02") is False
    with pytest.raises(MoveError, match="no move of gitaly-01 is in flight: name the target"):
        mv.start_or_resume(None, "gitaly-01", "")


def test_the_target_must_be_another_instance_of_the_role() -> None:
    assert mv.check_target(FLEET, "gitaly-01", "gitaly-02") == ("gitaly", "production", False)
    two = parse(TEXT.replace('production = ["gitaly-01"]', 'production = ["gitaly-01", '
                                                           '"gitaly-02"]'))
    assert mv.check_target(two, "gitaly-01", "gitaly-02") == ("gitaly", "production", True)
    for source, target, message in [
        ("gitaly-01", "redis-01", "redis-01 is an instance of redis, not of gitaly"),
        ("gitaly-01", "gitaly-stg-01", "gitaly-stg-01 serves staging, gitaly-01 serves production"),
        ("gitaly-01", "gitaly-01", "gitaly-01 cannot move to itself"),
        ("gitaly-01", "Gitaly_02", '"Gitaly_02" is not an instance name'),
        ("bastion-01", "bastion-02", '"bastion-01" is not a pet instance of fleet.toml'),
        ("gitaly-1", "gitaly-02", '"gitaly-1" is not a pet instance'),
    ]:
        with pytest.raises(MoveError, match=message):
            mv.check_target(FLEET, source, target)


def test_an_unreadable_record_is_one_clear_error() -> None:
    good = json.loads(walk(Step.COPY).to_json())
    broken = [b"not json", b"[1, 2]", json.dumps({**good, "step": "teleport"}),
              json.dumps({k: v for k, v in good.items() if k != "target"}),
              json.dumps({**good, "history": [{"step": "copy"}]}),
              json.dumps({**good, "halted_at": "sideways"})]
    for text in broken:
        with pytest.raises(MoveError, match="move record is unreadable") as caught:
            Move.from_json(text)
        assert "consul kv get" in caught.value.line(), "the fix says where to look"
    with pytest.raises(MoveError, match=r"bad cut-over \[10, 50\]: it must end at 100"):
        Move.from_json(json.dumps({**good, "cutover": [10, 50]}))


def test_terraform_keeps_a_target_from_its_creation_and_drops_a_finished_source() -> None:
    """fleet/model/moved.py: what every plan and apply of the environment holds while moves
    are on record, whatever fleet.toml says meanwhile."""
    from fleet.model.moved import held_back, placement

    def placed(move: Move) -> tuple[set[str], set[str]]:
        found = placement([move], "production")
        return set(found.targets), set(found.decommissioned)

    assert placed(new_move()) == (set(), set()), "a plan creates nothing"
    for step in (Step.CREATE_TARGET, Step.COPY, Step.CUT_OVER):
        assert placed(walk(step)) == ({"gitaly-02"}, set()), f"the target is kept at {step}"
    failed = mv.fail(walk(Step.COPY), "network", BY, AT)
    assert placed(failed) == ({"gitaly-02"}, set()), "a failed copy keeps its target"
    assert placed(mv.fail(new_move(), "down", BY, AT)) == (set(), set())
    aborting = mv.abort(walk(Step.VERIFY), BY, AT)
    assert placed(aborting) == (set(), set()), "an abort's own apply destroys the target"
    finishing = walk(Step.FINISHING)
    assert placed(finishing) == ({"gitaly-02"}, {"gitaly-01"})
    finished = finishing.go(Step.FINISHED, BY, AT)
    assert placed(finished) == ({"gitaly-02"}, {"gitaly-01"})
    assert held_back(walk(Step.CUT_OVER)) and not held_back(finishing), "declared from finishing"
    assert placement([finished], "staging").targets == {}, "other environments are untouched"
