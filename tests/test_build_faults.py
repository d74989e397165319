"""The build under faults an operator's machine meets: two builds at once (CLI processes,
threads of the editor's app), a build killed while it holds the lock, a full disk, a
read-only folder, a missing permission. Each leaves a whole ``_site/`` (the last good one,
or the new one) and, where it fails, a message naming the path and the fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import fill_disk, remount, site_snapshot
from masthead.build import build
from masthead.cli import main
from masthead.errors import MastheadError
from masthead.scaffold import copy_demo
from masthead.site_check import named_files


def site_files(site: Path) -> set[str]:
    return {str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()}


def assert_whole(site: Path, expected: set[str]) -> None:
    """The manifest parses and names only files that exist; every expected file is there."""
    manifest = json.loads((site / "manifest.json").read_text("utf-8"))
    named = named_files(manifest)
    assert named, "the manifest names no files"
    missing_named = sorted(p for p in named if not (site / p).is_file())
    assert not missing_named, f"the manifest names missing files: {missing_named[:5]}"
    missing = sorted(expected - site_files(site))
    assert not missing, f"{len(missing)} expected file(s) missing: {missing[:5]}"


def staging_leftovers(root: Path) -> list[str]:
    """Staging folders of builds (not the old sites being deleted in the background)."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name.startswith("._site.building") and ".old-" not in p.name
    )


def masthead(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "masthead", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ----------------------------------------------------------------------------------------
# Two builds at once


def test_overlapping_cli_builds_all_end_with_a_whole_site(demo: Path) -> None:
    build(demo)
    expected = site_files(demo / "_site")
    command = [sys.executable, "-m", "masthead", "build", str(demo), "--force", "-q"]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    results = [(*run.communicate(timeout=180), run.returncode) for run in runs]
    for _out, err, status in results:
        assert status == 0, err
        assert "Traceback" not in err
    waited = [
        err for _, err, _ in results if "Waiting for another build of this publication" in err
    ]
    assert waited, "no build waited for another: they overlapped without the lock"
    assert re.search(r"\(pid \d+, started at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", waited[0])
    assert_whole(demo / "_site", expected)
    assert staging_leftovers(demo) == []


def test_two_builds_in_one_process_are_serialised(demo: Path) -> None:
    """As the editor's app makes them: its Build button runs build() in a worker thread."""
    build(demo)
    expected = site_files(demo / "_site")
    for _ in range(2):
        start = threading.Barrier(2)
        failures: list[BaseException] = []

        def run(start: threading.Barrier = start, failures: list = failures) -> None:
            start.wait()
            try:
                build(demo, force=True)
            except BaseException as exc:  # collected for the assertion below
                failures.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        assert_whole(demo / "_site", expected)
    assert staging_leftovers(demo) == []


_HOLD_THE_LOCK = """
import os, signal, sys, time
from pathlib import Path
from masthead.build import build

root, mode = Path(sys.argv[1]), sys.argv[2]

def progress(slug, done, total):
    if slug and done == 0:  # inside the build: the lock held, the staging folder made
        (root / "holding").write_text(str(os.getpid()))
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(mode))

build(root, force=True, progress=progress)
"""


def hold_the_lock(root: Path, mode: str) -> subprocess.Popen[str]:
    """A build in another process that stops inside the build: killed (``kill``) or
    sleeping for ``mode`` seconds. Returns once it is there."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLD_THE_LOCK), str(root), mode], text=True
    )
    deadline = time.monotonic() + 60
    while not (root / "holding").exists():
        assert holder.poll() is None or mode == "kill", "the holder ended early"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return holder


def test_a_build_killed_while_holding_the_lock_does_not_block_the_next(demo: Path) -> None:
    build(demo)
    expected = site_files(demo / "_site")
    before = site_snapshot(demo / "_site")
    holder = hold_the_lock(demo, "kill")
    assert holder.wait(timeout=60) == -signal.SIGKILL
    assert site_snapshot(demo / "_site") == before  # killed mid-build: the live site as it was
    assert staging_leftovers(demo), "the killed build left its staging folder"
    lock = (demo / ".masthead" / "build.lock").read_text("utf-8")
    assert f"pid {holder.pid}" in lock, "the lock file names its holder"
    started = time.monotonic()
    done = masthead("build", str(demo), "--no-wait", "-q")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    assert "Waiting" not in done.stderr
    assert_whole(demo / "_site", expected)
    assert staging_leftovers(demo) == [], "the stale staging folder was removed"


def test_a_second_build_waits_saying_for_whom_or_with_no_wait_fails_at_once(demo: Path) -> None:
    build(demo)
    expected = site_files(demo / "_site")
    holder = hold_the_lock(demo, "6")
    try:
        refused = masthead("build", str(demo), "--no-wait")
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert f"another build of this publication (pid {holder.pid}, started at" in (
            refused.stderr
        )
        assert "fix:" in refused.stderr and str(demo / ".masthead" / "build.lock") in refused.stderr
        waited = masthead("build", str(demo))
        assert waited.returncode == 0, waited.stderr
        assert (
            f"Waiting for another build of this publication (pid {holder.pid}, started at"
            in waited.stderr
        )
        assert holder.wait(timeout=60) == 0  # it finished first; the waiting build after it
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=60)
    assert_whole(demo / "_site", expected)


def test_the_editor_app_build_gives_up_waiting_with_a_message(demo: Path) -> None:
    """A request does not wait for ever behind a long build: it says who holds the lock."""
    build(demo)
    holder = hold_the_lock(demo, "6")
    try:
        with pytest.raises(MastheadError, match=f"pid {holder.pid}") as info:
            build(demo, issue="2020-03", wait=0.5)
        assert info.value.fix and "again" in info.value.fix
    finally:
        holder.wait(timeout=60)


_PUBLISH_SLOWLY = """
import sys, time
from pathlib import Path
from masthead.publish import publish

root, target = Path(sys.argv[1]), sys.argv[2]

def progress(done, total):
    if done == 3:  # half-way through copying the site: let a build try to swap it
        (root / "publishing").touch()
        time.sleep(4)

publish(root, target, progress=progress)
"""


def test_a_build_during_a_publish_waits_and_the_release_is_the_site_it_started_with(
    demo: Path, tmp_path: Path
) -> None:
    build(demo)
    published = site_snapshot(demo / "_site")
    target = tmp_path / "out"
    publisher = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_PUBLISH_SLOWLY), str(demo), str(target)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (demo / "publishing").exists():
        assert publisher.poll() is None, publisher.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    lead = demo / "issues/2020-03/lead.md"
    lead.write_bytes(lead.read_bytes().replace(b"flood plan", b"EDITED plan", 1))
    built = masthead("build", str(demo))
    assert built.returncode == 0, built.stderr
    assert "Waiting for a publish of this publication (pid" in built.stderr
    _, err = publisher.communicate(timeout=60)
    assert publisher.returncode == 0, err
    assert site_snapshot(target / "current") == published  # whole, and not a mixture
    assert b"EDITED plan" in (demo / "_site/2020-03/lead/index.html").read_bytes()


def test_a_publish_during_a_build_waits_and_publishes_the_new_site(
    demo: Path, tmp_path: Path
) -> None:
    build(demo)
    lead = demo / "issues/2020-03/lead.md"
    lead.write_bytes(lead.read_bytes().replace(b"flood plan", b"EDITED plan", 1))
    holder = hold_the_lock(demo, "4")
    target = tmp_path / "out"
    done = masthead("publish", str(demo), "--to", str(target))
    assert holder.wait(timeout=60) == 0
    assert done.returncode == 0, done.stderr
    assert f"Waiting for a build of this publication (pid {holder.pid}" in done.stderr
    (demo / "holding").unlink()
    assert site_snapshot(target / "current") == site_snapshot(demo / "_site")
    assert b"EDITED plan" in (target / "current/2020-03/lead/index.html").read_bytes()


def test_a_build_stopped_between_its_swap_and_its_state_is_not_built_on(demo: Path) -> None:
    """Killed after its site went live, before it recorded its state: the state then tells
    of the site before. Undo the edit, and that state's fingerprints match again: the next
    build must not take the site for the one the state describes."""
    build(demo)
    state = demo / ".masthead" / "build-state.json"
    old_state = state.read_bytes()
    lead = demo / "issues/2020-03/lead.md"
    original, stat = lead.read_bytes(), lead.stat()
    lead.write_bytes(original.replace(b"flood plan", b"EDITED plan", 1))
    build(demo)
    assert b"EDITED plan" in (demo / "_site/2020-03/lead/index.html").read_bytes()
    state.write_bytes(old_state)  # as if killed between the swap and the state
    lead.write_bytes(original)
    os.utime(lead, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = build(demo)
    assert [b.slug for b in report.built] == ["2020-03"]
    assert b"EDITED plan" not in (demo / "_site/2020-03/lead/index.html").read_bytes()


def test_the_build_button_takes_its_turn_or_says_who_holds_the_lock(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    from editor_kit import csrf_of, log_in, set_password
    from masthead.store import dispose_engines
    from masthead.web import admin, create_app

    set_password(demo)
    build(demo)
    expected = site_files(demo / "_site")
    issue = "/admin/issues/2020-03"
    try:
        with TestClient(create_app(demo), base_url="https://bulletin.example.org") as client:
            assert log_in(client).status_code == 200
            token = csrf_of(client.get(issue).text)
            # Two clicks at once (two tabs, or a double click): the builds take turns.
            (demo / "issues/2020-03/lead.md").touch()
            clicks = [
                threading.Thread(target=lambda: client.post(f"{issue}/build", data={"csrf": token}))
                for _ in range(2)
            ]
            for click in clicks:
                click.start()
            for click in clicks:
                click.join(timeout=120)
            assert_whole(demo / "_site", expected)
            # Behind a long command-line build, the button gives up and names it.
            monkeypatch.setattr(admin, "BUILD_WAIT_SECONDS", 0.5)
            holder = hold_the_lock(demo, "6")
            try:
                page = client.post(f"{issue}/build", data={"csrf": token})
            finally:
                holder.wait(timeout=60)
            assert page.status_code == 400
            assert f"another build of this publication (pid {holder.pid}" in page.text
    finally:
        dispose_engines()
    assert_whole(demo / "_site", expected)


# ----------------------------------------------------------------------------------------
# A full disk, a read-only folder, a missing permission


def assert_refused(result: Any, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "fix:" in result.output
    for word in words:
        assert word in result.output, (word, result.output)


@pytest.mark.parametrize("leave", [0, 64 * 1024, 1024 * 1024], ids=["full", "64kB", "1MB"])
def test_a_full_disk_is_a_message_and_the_last_site_stays(small_disk, leave: int) -> None:
    disk = small_disk("16m")
    demo = copy_demo(disk / "demo")
    build(demo)
    before = site_snapshot(demo / "_site")
    filler = fill_disk(disk, leave=leave)
    result = CliRunner().invoke(main, ["build", str(demo), "--force", "-q"])
    assert_refused(result, "No space left on device", str(demo), "free space", "df -h")
    assert site_snapshot(demo / "_site") == before
    assert staging_leftovers(demo) == []
    filler.unlink()  # the fix works: with room, the same command builds
    assert CliRunner().invoke(main, ["build", str(demo), "--force", "-q"]).exit_code == 0


def test_a_full_disk_before_the_first_build(small_disk) -> None:
    disk = small_disk("16m")
    demo = copy_demo(disk / "demo")
    fill_disk(disk, leave=256 * 1024)
    result = CliRunner().invoke(main, ["build", str(demo), "-q"])
    assert_refused(result, "No space left on device", str(demo))
    assert not (demo / "_site").exists()


def test_a_read_only_file_system_is_a_message(small_disk) -> None:
    disk = small_disk("16m")
    demo = copy_demo(disk / "demo")
    build(demo)
    before = site_snapshot(demo / "_site")
    remount(disk, "ro")
    try:
        result = CliRunner().invoke(main, ["build", str(demo), "--force", "-q"])
        assert_refused(result, "read-only file system", str(demo), "remount")
        assert site_snapshot(demo / "_site") == before
    finally:
        remount(disk, "rw")


def test_an_immutable_folder_is_a_message(demo: Path) -> None:
    """EPERM, which root meets too: ``chattr +i`` on the publication folder."""
    build(demo)
    before = site_snapshot(demo / "_site")
    if subprocess.run(["chattr", "+i", str(demo)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        result = CliRunner().invoke(main, ["build", str(demo), "--force", "-q"])
        assert_refused(result, "Operation not permitted", str(demo), "lsattr")
    finally:
        subprocess.run(["chattr", "-i", str(demo)], check=True)
    assert site_snapshot(demo / "_site") == before


def _without_root_powers(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run as root without the capabilities that let root write where modes forbid it:
    folders' permissions then apply (tests run as root in CI, where chmod alone does not)."""
    if os.geteuid() != 0:
        return subprocess.run(argv, capture_output=True, text=True, check=False)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's capabilities")
    caps = "-dac_override,-dac_read_search,-fowner"
    return subprocess.run(
        ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all", *argv],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("locked", [".masthead", "."], ids=["state-folder", "publication-folder"])
def test_a_folder_without_write_permission_is_a_message(demo: Path, locked: str) -> None:
    build(demo)
    before = site_snapshot(demo / "_site")
    folder = (demo / locked).resolve()
    folder.chmod(0o555)
    try:
        done = _without_root_powers(
            sys.executable, "-m", "masthead", "build", str(demo), "--force", "-q"
        )
    finally:
        folder.chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "Permission denied" in done.stderr and str(folder) in done.stderr
    assert "fix:" in done.stderr and "chown" in done.stderr
    assert site_snapshot(demo / "_site") == before


def test_a_build_lock_planted_as_a_symlink_is_refused_and_its_target_untouched(
    demo: Path, tmp_path: Path
) -> None:
    """Writing the holder's line truncates the lock file: never through a symlink."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me", "utf-8")
    (demo / ".masthead").mkdir(exist_ok=True)
    (demo / ".masthead" / "build.lock").symlink_to(precious)
    for command in (["build", str(demo)], ["publish", str(demo), "--to", str(tmp_path / "o")]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1 and "Traceback" not in result.output
        if command[0] == "build":
            assert "symbolic link" in result.output and "fix: remove it" in result.output
    assert precious.read_text("utf-8") == "keep me"
