"""``masthead publish``: releases, the atomic switch of ``current``, pruning, rollback,
refusals, and the rsync + ssh path (real rsync; a stand-in for ssh that runs the remote
commands here, so no network is needed)."""

from __future__ import annotations

import fcntl
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

import pytest
from click.testing import CliRunner

from conftest import copy_tree, make_publication, remount, site_snapshot
from masthead.build import build
from masthead.cli import main
from masthead.errors import PublishError
from masthead.publish import MARKER, LocalTarget, RemoteTarget, parse_target, publish, rollback
from masthead.site_check import write_stamp

RELEASE_NAME = r"\d{8}T\d{6}Z-[0-9a-f]{12}"


def releases(target: Path) -> list[str]:
    return sorted(n for n in os.listdir(target / "releases") if not n.startswith("."))


def live(target: Path) -> str:
    link = os.readlink(target / "current")
    assert link.startswith("releases/")
    return link.removeprefix("releases/")


def small_site(root: Path, version: str, *, big: int = 0) -> Path:
    """A publication whose _site/ is written by hand (no Typst): fast versions of a site for
    the tests about releases rather than about the pages. ``version`` changes index.html;
    the other files stay the same. Like a build, it ends with the record of a whole site."""
    if not (root / "masthead.toml").exists():
        make_publication(root)
    site = root / "_site"
    (site / "2020-03").mkdir(parents=True, exist_ok=True)
    (site / "manifest.json").write_text('{"issues": []}\n', "utf-8")
    (site / "style.css").write_text("body { margin: 0 }\n", "utf-8")
    (site / "2020-03" / "issue.pdf").write_bytes(b"%PDF-1.7 unchanged " * 500)
    index = site / "index.html"
    index.unlink(missing_ok=True)  # as a build writes: a fresh file, never in place
    index.write_text(f"<!doctype html><title>{version}</title>" + version * big + "\n", "utf-8")
    write_stamp(site, "tests")  # as a build ends: the record of a whole site
    return root


@pytest.fixture
def edited_demo(tmp_path: Path, built_demo: Path) -> Path:
    """A copy of the built demo that a test may edit and rebuild (only what it edits is
    rendered again: the build state travels with the copy)."""
    return copy_tree(built_demo, tmp_path / "demo")


# ----------------------------------------------------------------------------------------
# A local folder


def test_publish_writes_a_release_identical_to_the_site(built_demo: Path, tmp_path: Path):
    target = tmp_path / "srv" / "bulletin"
    report = publish(built_demo, target)

    assert (target / MARKER).is_file()
    assert (target / "current").is_symlink()
    assert releases(target) == [report.release]
    assert live(target) == report.release
    assert re.fullmatch(RELEASE_NAME, report.release)
    published = site_snapshot(target / "current")
    assert published == site_snapshot(built_demo / "_site")
    assert "index.html" in published and any(p.endswith(".pdf") for p in published)
    assert report.copied == report.files == len(published)
    assert report.linked == 0
    assert report.previous is None


def test_an_unchanged_site_is_not_published_again(built_demo: Path, tmp_path: Path):
    target = tmp_path / "out"
    first = publish(built_demo, target)
    again = publish(built_demo, target)
    assert again.noop
    assert again.release == first.release
    assert releases(target) == [first.release]

    result = CliRunner().invoke(main, ["publish", str(built_demo), "--to", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Nothing to publish:")
    assert first.release in result.output


def test_a_new_build_is_a_new_release_sharing_unchanged_files(edited_demo: Path, tmp_path: Path):
    target = tmp_path / "out"
    old = publish(edited_demo, target).release
    old_files = site_snapshot(target / "releases" / old)
    # A reader holding a page of the live release, as a web server does mid-response:
    held = open(target / "current" / "index.html", "rb")  # noqa: SIM115

    lead = edited_demo / "issues" / "2020-03" / "lead.md"
    lead.write_text(lead.read_text("utf-8") + "\nA late paragraph about the footbridge.\n", "utf-8")
    build(edited_demo)
    report = publish(edited_demo, target)

    new = report.release
    assert new != old and report.previous == old
    assert live(target) == new
    assert releases(target) == [old, new]
    assert site_snapshot(target / "current") == site_snapshot(edited_demo / "_site")
    # The old release is complete and unchanged, by path and through the open file.
    assert site_snapshot(target / "releases" / old) == old_files
    with held:
        assert held.read() == old_files["index.html"]
    # Unchanged files are the same inodes as in the old release; changed ones are new files.
    new_files = site_snapshot(target / "releases" / new)
    same = [rel for rel, data in new_files.items() if old_files.get(rel) == data]
    changed = [rel for rel in new_files if rel not in same]
    assert same and changed
    assert "2020-03/lead/index.html" in changed
    for rel in same:
        assert _inode(target / "releases" / new / rel) == _inode(target / "releases" / old / rel)
    for rel in changed:
        if rel in old_files:
            assert _inode(target / "releases" / new / rel) != _inode(
                target / "releases" / old / rel
            )
    assert report.linked == len(same) and report.copied == len(changed)


def _inode(path: Path) -> int:
    return os.stat(path).st_ino


def test_a_failed_publish_leaves_the_live_release(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    target = tmp_path / "out"
    first = publish(pub, target).release
    small_site(pub, "two")

    def fail_midway(done: int, total: int) -> None:
        if done == 2:
            raise OSError(28, "No space left on device")

    with pytest.raises(PublishError, match="No space left on device") as info:
        publish(pub, target, progress=fail_midway)
    assert info.value.fix and "the live release of" in info.value.fix
    assert live(target) == first
    assert os.listdir(target / "releases") == [first]  # the half-written release is gone
    assert "one" in (target / "current" / "index.html").read_text("utf-8")
    second = publish(pub, target).release
    assert live(target) == second
    assert not [n for n in os.listdir(target / "releases") if n.startswith(".partial-")]


def test_a_publish_killed_midway_leaves_the_live_release(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    target = tmp_path / "out"
    first = publish(pub, target).release
    small_site(pub, "two")
    script = textwrap.dedent(
        f"""
        import os, signal
        from masthead.publish import publish

        def die(done, total):
            if done == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        publish({str(pub)!r}, {str(target)!r}, progress=die)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert [n for n in os.listdir(target / "releases") if n.startswith(".partial-")]
    assert live(target) == first
    assert site_snapshot(target / "current")["index.html"].startswith(b"<!doctype html><title>one")
    second = publish(pub, target).release
    assert live(target) == second
    assert releases(target) == [first, second]


def test_keep_prunes_old_releases_but_never_the_live_one(tmp_path: Path):
    pub = tmp_path / "pub"
    target = tmp_path / "out"
    made = []
    for version in ("v1", "v2", "v3", "v4"):
        small_site(pub, version)
        made.append(publish(pub, target, keep=2).release)
    assert releases(target) == made[-2:]
    assert sorted(os.listdir(target / "filelists")) == [f"{r}.json" for r in made[-2:]]

    # Rolled back to v3, then a publish with --keep 1: only the new live release stays.
    rollback(target)
    assert live(target) == made[2]
    small_site(pub, "v5")
    report = publish(pub, target, keep=1)
    assert releases(target) == [report.release]
    assert report.pruned == made[-2:]


def test_rollback_switches_to_the_previous_release(tmp_path: Path):
    pub = tmp_path / "pub"
    target = tmp_path / "out"
    made = []
    for version in ("v1", "v2", "v3"):
        small_site(pub, version)
        made.append(publish(pub, target).release)

    result = CliRunner().invoke(main, ["publish", "--to", str(target), "--rollback"])
    assert result.exit_code == 0, result.output
    assert live(target) == made[1]
    assert f"Rolled back {target} from {made[2]} to {made[1]}" in result.output
    assert "<title>v2" in (target / "current" / "index.html").read_text("utf-8")
    rollback(target)
    assert live(target) == made[0]
    with pytest.raises(PublishError, match="no earlier release to roll back to"):
        rollback(target)
    assert releases(target) == made  # a rollback deletes nothing
    # Publishing again after a rollback makes a new, latest release.
    small_site(pub, "v4")
    latest = publish(pub, target).release
    assert live(target) == latest == releases(target)[-1]


@pytest.fixture(params=["folder", "ssh"])
def publish_to(request: pytest.FixtureRequest, tmp_path: Path):
    """``(to, disk, rsh)``: a target as a local folder, and as the same folder over ssh."""
    disk = tmp_path / "srv" / "bulletin"
    if request.param == "folder":
        return str(disk), disk, None
    return f"deploy@web1:{disk}", disk, str(request.getfixturevalue("fake_ssh"))


def test_rollback_goes_back_along_the_history_never_to_a_release_rolled_back_from(
    tmp_path: Path, publish_to: tuple[str, Path, str | None]
):
    """Review: publish v3 (bad), roll back to v2, publish v4: a second rollback went to v3
    (the newest release older than the live one), not to v2, which was live before v4."""
    to, disk, rsh = publish_to
    pub = tmp_path / "pub"
    made = {}
    for version in ("v1", "v2", "v3"):
        small_site(pub, version)
        made[version] = publish(pub, to, rsh=rsh).release
    assert rollback(to, rsh=rsh).release == made["v2"]
    small_site(pub, "v4")
    made["v4"] = publish(pub, to, rsh=rsh).release

    again = rollback(to, rsh=rsh)
    assert (again.previous, again.release) == (made["v4"], made["v2"])
    assert live(disk) == made["v2"]
    assert rollback(to, rsh=rsh).release == made["v1"]
    with pytest.raises(PublishError, match="no earlier release to roll back to"):
        rollback(to, rsh=rsh)
    assert releases(disk) == sorted(made.values())  # a rollback deletes nothing
    history = (disk / ".masthead-history").read_text("utf-8").splitlines()
    assert [line.split()[1:] for line in history] == [
        ["publish", made["v1"]],
        ["publish", made["v2"]],
        ["publish", made["v3"]],
        ["rollback", made["v2"]],
        ["publish", made["v4"]],
        ["rollback", made["v2"]],
        ["rollback", made["v1"]],
    ]


def test_keep_keeps_the_release_rollback_would_go_to_not_the_one_rolled_back_from(
    tmp_path: Path, publish_to: tuple[str, Path, str | None]
):
    """Review: with --keep 2, v1 v2 v3 (bad), rollback to v2, then publishing v4 pruned
    v2 (the last good one) and kept the bad v3."""
    to, disk, rsh = publish_to
    pub = tmp_path / "pub"
    made = {}
    for version in ("v1", "v2", "v3"):
        small_site(pub, version)
        made[version] = publish(pub, to, rsh=rsh, keep=2).release
    rollback(to, rsh=rsh)
    small_site(pub, "v4")
    dry = publish(pub, to, rsh=rsh, keep=2, dry_run=True)
    assert dry.pruned == [made["v3"]]
    made["v4"] = publish(pub, to, rsh=rsh, keep=2).release

    assert releases(disk) == [made["v2"], made["v4"]]
    assert rollback(to, rsh=rsh).release == made["v2"]
    assert "<title>v2" in (disk / "current" / "index.html").read_text("utf-8")


def test_a_target_published_before_the_history_rolls_back_as_before(
    tmp_path: Path, publish_to: tuple[str, Path, str | None]
):
    to, disk, rsh = publish_to
    pub = tmp_path / "pub"
    made = []
    for version in ("v1", "v2", "v3"):
        small_site(pub, version)
        made.append(publish(pub, to, rsh=rsh).release)
    (disk / ".masthead-history").unlink()  # as an earlier masthead left its targets

    assert rollback(to, rsh=rsh).release == made[1]  # the newest release older than v3
    (disk / ".masthead-history").unlink()
    small_site(pub, "v4")
    made.append(publish(pub, to, rsh=rsh).release)  # records v2, found live, then v4
    history = (disk / ".masthead-history").read_text("utf-8").splitlines()
    assert [line.split()[1:] for line in history] == [["found", made[1]], ["publish", made[3]]]
    assert rollback(to, rsh=rsh).release == made[1]
    assert rollback(to, rsh=rsh).release == made[0]  # from before the history: by id


def test_dry_run_changes_nothing(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    target = tmp_path / "out"
    result = CliRunner().invoke(main, ["publish", str(pub), "--to", str(target), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would copy 5 file(s)" in result.output
    assert "Dry run: would publish release" in result.output
    assert not target.exists()

    first = publish(pub, target).release
    small_site(pub, "two")
    report = publish(pub, target, dry_run=True)
    assert report.dry_run and (report.copied, report.linked) == (1, 4)
    assert releases(target) == [first] and live(target) == first


def test_the_command_reports_what_it_did(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    target = tmp_path / "out"
    result = CliRunner().invoke(main, ["publish", str(pub), "--to", str(target)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("  copied 5 file(s) (")
    assert "hard-linked 0 unchanged; 5 file(s)" in lines[0]
    release = live(target)
    assert lines[-1].startswith(f"Published release {release} in ")
    assert lines[-1].endswith(f"Live: {target}/current -> releases/{release}")

    small_site(pub, "two")
    quiet = CliRunner().invoke(
        main, ["publish", str(pub), "--to", str(target), "-q", "--keep", "1"]
    )
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.count("\n") == 1 and quiet.output.startswith("Published release")


def test_readers_of_current_never_see_a_missing_or_partial_page(tmp_path: Path):
    pub = tmp_path / "pub"
    target = tmp_path / "out"
    small_site(pub, "v0", big=20_000)
    publish(pub, target)
    versions = [f"v{n}" for n in range(1, 9)]
    page_version = {
        ("<!doctype html><title>" + v + "</title>" + v * 20_000 + "\n").encode(): n
        for n, v in enumerate(["v0", *versions])
    }
    seen: list[int] = []
    problems: list[str] = []
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            try:
                data = (target / "current" / "index.html").read_bytes()
            except OSError as exc:
                problems.append(repr(exc))
                continue
            if data not in page_version:
                problems.append(f"partial or mixed page of {len(data)} bytes")
                continue
            seen.append(page_version[data])

    def wait_for_a_read() -> None:
        reads = len(seen) + len(problems)
        while reader.is_alive() and len(seen) + len(problems) == reads:
            time.sleep(0.001)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        wait_for_a_read()  # the reader reads before the first switch and after the last
        for version in versions:
            small_site(pub, version, big=20_000)
            publish(pub, target, keep=2)
        wait_for_a_read()
    finally:
        stop.set()
        reader.join()
    assert problems == []
    # It watched the switches: the first page it read, then newer ones, never an older one
    # after a newer one (each read is one whole version, from one release).
    assert seen[0] == 0 and seen[-1] == len(versions)
    assert len(set(seen)) > 1
    assert seen == sorted(seen)


def test_masthead_serve_on_a_web_machine_serves_the_published_release(
    edited_demo: Path, tmp_path: Path
):
    """docs/deploy.md: a web machine never builds; its publication folder's _site is a
    symlink to TARGET/current, so `masthead serve` (and /readyz) follow each switch."""
    from starlette.testclient import TestClient

    from masthead.web.app import create_app

    target = tmp_path / "srv" / "bulletin"
    publish(edited_demo, target)
    web = tmp_path / "web1"
    web.mkdir()
    shutil.copy(edited_demo / "masthead.toml", web / "masthead.toml")
    (web / "_site").symlink_to(target / "current")
    with TestClient(create_app(web, public_only=True)) as client:
        assert client.get("/readyz").text == "ready"
        page = client.get("/2020-03/lead/index.html")
        assert page.status_code == 200
        assert (
            page.content == (edited_demo / "_site" / "2020-03" / "lead" / "index.html").read_bytes()
        )
        small_site(edited_demo, "switched")
        publish(edited_demo, target)
        assert "<title>switched" in client.get("/index.html").text


# ----------------------------------------------------------------------------------------
# Refusals


def test_refuses_a_site_that_was_never_built(demo: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["publish", str(demo), "--to", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "there is no built site to publish (no _site/)" in result.output
    assert f"fix: run `masthead build {demo}` first" in result.output
    (demo / "_site").mkdir()
    (demo / "_site" / "index.html").write_text("half a build", "utf-8")
    with pytest.raises(PublishError, match="no built site") as info:
        publish(demo, tmp_path / "out")
    assert "masthead build" in (info.value.fix or "")
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_that_is_not_a_publish_target(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine", "utf-8")
    with pytest.raises(PublishError, match="not a masthead publish target") as info:
        publish(pub, home)
    assert info.value.fix and "new or empty folder" in info.value.fix
    assert sorted(os.listdir(home)) == ["notes.txt"]

    a_file = tmp_path / "file"
    a_file.write_text("x", "utf-8")
    with pytest.raises(PublishError, match="not a folder"):
        publish(pub, a_file)
    # An empty folder is adopted.
    empty = tmp_path / "empty"
    empty.mkdir()
    publish(pub, empty)
    assert (empty / MARKER).is_file()


def test_refuses_a_target_inside_the_site(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    for inside in (pub / "_site", pub / "_site" / "mirror", Path(os.path.relpath(pub / "_site"))):
        with pytest.raises(PublishError, match="inside the built site"):
            publish(pub, inside)
    assert not (pub / "_site" / "mirror").exists()


def test_refuses_a_real_current_folder_and_a_busy_target(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    target = tmp_path / "out"
    publish(pub, target)
    small_site(pub, "two")
    with open(target / MARKER, "rb") as held:  # another publish holds the target's lock
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(PublishError, match="another masthead publish"):
            publish(pub, target)

    handmade = tmp_path / "handmade"
    publish(pub, handmade)
    os.unlink(handmade / "current")
    (handmade / "current").mkdir()
    with pytest.raises(PublishError, match="real folder"):
        publish(pub, handmade)


def test_refuses_bad_options(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    with pytest.raises(PublishError, match="--keep 0"):
        publish(pub, tmp_path / "out", keep=0)
    with pytest.raises(PublishError, match="not a masthead publish target"):
        rollback(tmp_path / "never")
    (tmp_path / "marked").mkdir()
    (tmp_path / "marked" / MARKER).write_text("{}", "utf-8")
    with pytest.raises(PublishError, match="no live release"):
        rollback(tmp_path / "marked")
    with pytest.raises(PublishError, match="rsync daemon"):
        publish(pub, "rsync://host/module")
    with pytest.raises(PublishError, match="rsync daemon"):
        parse_target("host::module/path")
    with pytest.raises(PublishError, match="give the folder on the host"):
        parse_target("web1:")
    result = CliRunner().invoke(main, ["publish", str(pub), "--to", "x", "--keep", "0"])
    assert result.exit_code == 2


def test_targets_are_read_as_rsync_reads_them():
    assert parse_target("/srv/bulletin") == LocalTarget(Path("/srv/bulletin"))
    assert parse_target("./a:b") == LocalTarget(Path("a:b"))  # a colon after a slash
    assert parse_target("deploy@web1.example.org:/srv/bulletin") == RemoteTarget(
        host="deploy@web1.example.org",
        path="/srv/bulletin",
        rsync_host="deploy@web1.example.org",
    )
    assert parse_target("deploy@[2001:db8::1]:/srv/b") == RemoteTarget(
        host="deploy@2001:db8::1", path="/srv/b", rsync_host="deploy@[2001:db8::1]"
    )
    assert parse_target("web1:-odd") == RemoteTarget(
        host="web1", path="./-odd", rsync_host="web1"
    )  # never read as an option


def test_refuses_a_host_that_ssh_would_read_as_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Review: `--to "-oProxyCommand=touch x:/srv"` passed the host to ssh as an option,
    which ran `touch x` here."""
    pub = small_site(tmp_path / "pub", "one")
    monkeypatch.chdir(tmp_path)
    for to in (
        "-oProxyCommand=touch x:/srv",
        "-oProxyCommand=touch x@web1:/srv",
        "[-oProxyCommand=touch x]:/srv",
    ):
        with pytest.raises(PublishError, match="starts with '-': ssh and rsync would read it"):
            parse_target(to)
        with pytest.raises(PublishError, match="starts with '-'"):
            rollback(to)
    result = CliRunner().invoke(main, ["publish", str(pub), "--to", "-oProxyCommand=touch x:/srv"])
    assert result.exit_code == 1
    assert "the host '-oProxyCommand=touch x' starts with '-'" in result.output
    assert "fix: give the host's name or address" in result.output
    assert not (tmp_path / "x").exists()


def test_publishing_never_imports_the_store(tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    script = (
        "import sys\nfrom masthead.publish import publish\n"
        f"publish({str(pub)!r}, {str(tmp_path / 'out')!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'masthead.store'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------
# rsync over ssh (the "remote" commands run here, through a stand-in for ssh)


FAKE_SSH = """#!/bin/sh
# A stand-in for ssh: drop its options and the host name, run the command on this machine.
printf '%s %s\\n' "$1" "$2" >> "$(dirname "$0")/argv.log"
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -l|-p|-o|-i) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
shift
printf '%s\\n' "$*" >> "$(dirname "$0")/commands.log"
exec sh -c "$*"
"""


@pytest.fixture
def fake_ssh(tmp_path: Path) -> Path:
    if shutil.which("rsync") is None:
        from browser import missing_tool

        missing_tool("rsync is not installed (Debian: apt-get install rsync)")
    script = tmp_path / "bin" / "fake-ssh"
    script.parent.mkdir()
    script.write_text(FAKE_SSH, "utf-8")
    script.chmod(0o755)
    return script


def test_rsync_target_publishes_switches_and_prunes(
    edited_demo: Path, tmp_path: Path, fake_ssh: Path
):
    remote = tmp_path / "remote host's disk" / "srv"  # a space and a quote: quoting matters
    to = f"deploy@web1.example.org:{remote}"
    first = publish(edited_demo, to, rsh=str(fake_ssh))
    assert first.target == to
    assert live(remote) == first.release
    assert (remote / MARKER).is_file()
    assert site_snapshot(remote / "current") == site_snapshot(edited_demo / "_site")
    old_files = site_snapshot(remote / "releases" / first.release)

    assert publish(edited_demo, to, rsh=str(fake_ssh)).noop

    lead = edited_demo / "issues" / "2020-03" / "lead.md"
    lead.write_text(lead.read_text("utf-8") + "\nOne more line.\n", "utf-8")
    build(edited_demo)
    second = publish(edited_demo, to, rsh=str(fake_ssh), keep=2)
    assert live(remote) == second.release
    assert releases(remote) == [first.release, second.release]
    assert site_snapshot(remote / "current") == site_snapshot(edited_demo / "_site")
    assert site_snapshot(remote / "releases" / first.release) == old_files
    new_dir, old_dir = remote / "releases" / second.release, remote / "releases" / first.release
    same = [rel for rel, data in site_snapshot(new_dir).items() if old_files.get(rel) == data]
    assert same
    for rel in same:  # rebuilt with new times, unchanged in content: still hard links
        assert _inode(new_dir / rel) == _inode(old_dir / rel)
    assert second.copied == len(site_snapshot(new_dir)) - len(same)

    # The switch ran as the remote commands the guide describes.
    log = (fake_ssh.parent / "commands.log").read_text("utf-8")
    assert f"ln -sfn releases/{second.release} current.tmp; mv -T current.tmp current" in log
    assert "'" in log  # the folder's name was quoted
    # Review: the host goes after `--` (never read as an option); rsync passes it its way.
    calls = (fake_ssh.parent / "argv.log").read_text("utf-8").splitlines()
    ours = [c for c in calls if c != "-l deploy"]
    assert ours and set(ours) == {"-- deploy@web1.example.org"}

    small_site(edited_demo, "third")  # (a hand-written site: the same code path)
    third = publish(edited_demo, to, rsh=str(fake_ssh), keep=2)
    assert third.pruned == [first.release]
    assert releases(remote) == [second.release, third.release]

    rolled = rollback(to, rsh=str(fake_ssh))
    assert rolled.release == second.release and live(remote) == second.release


def test_rsync_target_through_the_command_and_masthead_rsh(
    tmp_path: Path, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MASTHEAD_RSH", str(fake_ssh))
    pub = small_site(tmp_path / "pub", "one")
    remote = tmp_path / "srv"
    to = f"web1:{remote}"
    runner = CliRunner()
    dry = runner.invoke(main, ["publish", str(pub), "--to", to, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would copy 5 file(s)" in dry.output
    assert not remote.exists()

    result = runner.invoke(main, ["publish", str(pub), "--to", to])
    assert result.exit_code == 0, result.output
    release = live(remote)
    assert result.output.splitlines()[-1].endswith(f"Live: {to}/current -> releases/{release}")

    small_site(pub, "two")
    dry = runner.invoke(main, ["publish", str(pub), "--to", to, "--dry-run"])
    assert "would copy 1 file(s)" in dry.output and "would hard-link 4 unchanged" in dry.output
    assert releases(remote) == [release]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep-me").write_text("x", "utf-8")
    refused = runner.invoke(main, ["publish", str(pub), "--to", f"web1:{foreign}"])
    assert refused.exit_code == 1
    assert "not a masthead publish target" in refused.output
    assert sorted(os.listdir(foreign)) == ["keep-me"]

    unreachable = runner.invoke(main, ["publish", str(pub), "--to", to, "--rsh", "false"])
    assert unreachable.exit_code == 1
    assert "reading the target failed" in unreachable.output
    assert live(remote) == release


def test_a_second_publish_over_ssh_is_refused_while_the_first_holds_the_target(
    tmp_path: Path, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
):
    """Review: ssh targets had no lock, and a second publish's `rm -rf releases/.partial-*`
    deleted the release the first one was writing."""
    import masthead.publish.remote as remote_target  # where the ssh target calls rsync

    pub, other = small_site(tmp_path / "pub", "one"), small_site(tmp_path / "other", "other")
    remote = tmp_path / "srv"
    to, rsh = f"web1:{remote}", str(fake_ssh)
    publish(pub, to, rsh=rsh)
    small_site(pub, "two")
    real_rsync = remote_target._rsync
    refusals: list[PublishError] = []

    def rsync_then_a_second_publish(*args, **kwargs):
        stats = real_rsync(*args, **kwargs)  # the new release is written, not yet live
        if not refusals:
            with pytest.raises(PublishError) as info:
                publish(other, to, rsh=rsh)
            refusals.append(info.value)
        return stats

    monkeypatch.setattr(remote_target, "_rsync", rsync_then_a_second_publish)
    first = publish(pub, to, rsh=rsh)
    monkeypatch.undo()

    assert live(remote) == first.release  # its release survived the second publish
    assert "<title>two" in (remote / "current" / "index.html").read_text("utf-8")
    refused = refusals[0]
    lock = remote / ".masthead-publish.lock"
    assert refused.message.startswith(
        f"another masthead publish is writing to {to}: its lock {lock} is held by "
    )
    assert f" pid {os.getpid()} since " in refused.message
    assert refused.fix and f"remove the lock: {rsh} web1 rm -r {lock}" in refused.fix
    assert not lock.exists()  # removed at the end
    assert not [n for n in os.listdir(remote / "releases") if n.startswith(".partial-")]


def test_a_stale_ssh_lock_is_named_with_how_to_remove_it(tmp_path: Path, fake_ssh: Path):
    pub = small_site(tmp_path / "pub", "one")
    remote = tmp_path / "srv"
    to, rsh = f"web1:{remote}", str(fake_ssh)
    first = publish(pub, to, rsh=rsh).release
    small_site(pub, "two")
    # A publish killed midway: its lock and its half-written release stay behind.
    (remote / ".masthead-publish.lock").mkdir()
    (remote / ".masthead-publish.lock" / "owner").write_text("ed@editorial pid 4242\n", "utf-8")
    (remote / "releases" / ".partial-x").mkdir()
    for attempt in (lambda: publish(pub, to, rsh=rsh), lambda: rollback(to, rsh=rsh)):
        with pytest.raises(PublishError, match="is held by ed@editorial pid 4242") as info:
            attempt()
    assert (remote / "releases" / ".partial-x").is_dir()  # not removed without the lock
    assert live(remote) == first

    fix = info.value.fix or ""
    remove = fix.split("remove the lock: ", 1)[1]
    subprocess.run(remove, shell=True, check=True)  # the command the message gives
    assert publish(pub, to, rsh=rsh).release == live(remote) != first
    assert not (remote / "releases" / ".partial-x").exists()
    assert not (remote / ".masthead-publish.lock").exists()


def test_a_failed_publish_over_ssh_removes_its_lock(tmp_path: Path, fake_ssh: Path):
    pub = small_site(tmp_path / "pub", "one")
    remote = tmp_path / "srv"
    to = f"web1:{remote}"
    first = publish(pub, to, rsh=str(fake_ssh)).release
    small_site(pub, "two")
    failing = fake_ssh.parent / "ssh-without-rsync"
    failing.write_text(
        '#!/bin/sh\ncase "$*" in *"rsync --server"*) echo "no rsync here" >&2; exit 127 ;; esac\n'
        f'exec {fake_ssh} "$@"\n',
        "utf-8",
    )
    failing.chmod(0o755)
    with pytest.raises(PublishError, match=f"rsync to {re.escape(to)} failed"):
        publish(pub, to, rsh=str(failing))
    assert not (remote / ".masthead-publish.lock").exists()
    assert live(remote) == first
    assert publish(pub, to, rsh=str(fake_ssh)).release == live(remote) != first


# ----------------------------------------------------------------------------------------
# A damaged site is never published; a full or read-only target is a message


def _remove_issue_folder(site: Path) -> None:
    shutil.rmtree(site / "2020-03")


def _first_pdf(site: Path) -> Path:
    manifest = json.loads((site / "manifest.json").read_text("utf-8"))
    return site / manifest["issues"][0]["pdf"]


DAMAGE = {
    "index.html deleted": (lambda site: (site / "index.html").unlink(), "index.html"),
    "issue folder deleted": (_remove_issue_folder, "2020-03/"),
    "manifest.json emptied": (
        lambda site: (site / "manifest.json").write_bytes(b""),
        "manifest.json is empty",
    ),
    "manifest.json cut short": (
        lambda site: os.truncate(site / "manifest.json", 300),
        "manifest.json is cut short",
    ),
    "PDF deleted": (lambda site: _first_pdf(site).unlink(), "riverside-bulletin-2020-03.pdf"),
    "PDF cut short": (
        lambda site: os.truncate(_first_pdf(site), 1000),
        "riverside-bulletin-2020-03.pdf is 1000 bytes",
    ),
    "item page deleted": (
        lambda site: (site / "2020-03" / "lead" / "index.html").unlink(),
        "2020-03/lead/index.html",
    ),
    "a stylesheet deleted": (
        lambda site: shutil.rmtree(site / "static"),
        "static/",
    ),
    "search index deleted": (
        lambda site: shutil.rmtree(site / "pagefind"),
        "pagefind/",
    ),
    "publisher page deleted": (
        lambda site: (site / "publisher" / "index.html").unlink(),
        "publisher/index.html",
    ),
    "build record deleted": (
        lambda site: (site / ".masthead-build.json").unlink(),
        "no build finished this site",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_site_is_refused_and_the_live_release_stays(
    damage: str, edited_demo: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    first = publish(edited_demo, target).release
    before = site_snapshot(target / "current")
    spoil, named = DAMAGE[damage]
    spoil(edited_demo / "_site")
    result = CliRunner().invoke(main, ["publish", str(edited_demo), "--to", str(target)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "the built site is not whole, so nothing was published" in result.output
    assert named in result.output
    assert f"fix: run `masthead build {edited_demo}`" in result.output
    assert live(target) == first and releases(target) == [first]
    assert site_snapshot(target / "current") == before
    assert not [n for n in os.listdir(target / "releases") if n.startswith(".partial-")]
    # The fix named works: the build sees the damage and builds the site again in full.
    rebuilt = CliRunner().invoke(main, ["build", str(edited_demo)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "was not whole" in rebuilt.output and "built in full" in rebuilt.output
    again = CliRunner().invoke(main, ["publish", str(edited_demo), "--to", str(target)])
    assert again.exit_code == 0, again.output


def test_a_full_target_is_a_message_and_the_live_release_stays(small_disk, tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    disk = small_disk("1m")
    target = disk / "bulletin"
    first = publish(pub, target).release
    before = site_snapshot(target / "current")
    small_site(pub, "two", big=600_000)  # a 1.8 MB page: more than the disk holds
    result = CliRunner().invoke(main, ["publish", str(pub), "--to", str(target)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "No space left on device" in result.output and str(target) in result.output
    assert "free space" in result.output and "as it was" in result.output
    assert live(target) == first and releases(target) == [first]
    assert site_snapshot(target / "current") == before
    assert not [n for n in os.listdir(target / "releases") if n.startswith(".partial-")]


def test_a_read_only_target_is_a_message(small_disk, tmp_path: Path):
    pub = small_site(tmp_path / "pub", "one")
    disk = small_disk("4m")
    target = disk / "bulletin"
    publish(pub, target)
    small_site(pub, "two")
    first = publish(pub, target).release  # two releases: one to roll back to
    small_site(pub, "three")
    remount(disk, "ro")
    try:
        for command in (
            ["publish", str(pub), "--to", str(target)],
            ["publish", "--to", str(target), "--rollback"],
        ):
            result = CliRunner().invoke(main, command)
            assert result.exit_code == 1, result.output
            assert "Traceback" not in result.output
            assert "read-only file system" in result.output and str(target) in result.output
            assert "remount" in result.output
        new = CliRunner().invoke(main, ["publish", str(pub), "--to", str(disk / "new")])
        assert new.exit_code == 1 and "read-only file system" in new.output
        assert "Traceback" not in new.output
    finally:
        remount(disk, "rw")
    assert live(target) == first and len(releases(target)) == 2
