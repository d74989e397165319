"""Machines sharing one database: every one must sign with the same secret, and only
`masthead db upgrade` changes the schema of a shared database.

Two copies of a publication folder stand for two machines (a web machine and another one)
on one database: the PostgreSQL schema of the suite's second run, or on the first run one
SQLite file that both folders name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, text
from starlette.testclient import TestClient

from masthead.build import build
from masthead.cli import main
from masthead.content import load_publication
from masthead.errors import SchemaBehind, SecretMismatch
from masthead.store import LATEST, dispose_engines, open_store, schema, tokens
from masthead.store import subscriber_list as subs
from masthead.web import create_app


@pytest.fixture(autouse=True)
def shared_database(database: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("MASTHEAD_SECRET", raising=False)
    tokens._secrets.clear()
    url = database or f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", url)
    yield url
    tokens._secrets.clear()
    dispose_engines()


@pytest.fixture
def machines(demo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Machine A, which has used the database first, and machine B: the same publication
    folder without A's private state (.masthead/, where secret.key lives)."""
    (demo / "_site").mkdir(exist_ok=True)
    (demo / "_site" / "index.html").write_text("<h1>Riverside Bulletin</h1>", "utf-8")
    b = tmp_path / "machine-b"
    shutil.copytree(demo, b, ignore=shutil.ignore_patterns(".masthead"))
    create_app(demo)  # A serves first: the database keeps its secret's fingerprint
    return demo, b


def use_machine(monkeypatch: pytest.MonkeyPatch, secret: str | None = None) -> None:
    """What a process on another machine starts with: no secret read yet, and its own
    MASTHEAD_SECRET, if any."""
    tokens._secrets.clear()
    if secret is None:
        monkeypatch.delenv("MASTHEAD_SECRET", raising=False)
    else:
        monkeypatch.setenv("MASTHEAD_SECRET", secret)


def test_a_machine_without_the_secret_refuses_to_serve_and_makes_none(
    machines: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b = machines
    use_machine(monkeypatch)
    with pytest.raises(SecretMismatch) as refused:
        create_app(b)
    assert "this machine has no signing secret" in refused.value.message
    assert "copy .masthead/secret.key" in (refused.value.fix or "")
    assert not (b / ".masthead" / "secret.key").exists()  # no new secret to get wrong later


def test_a_machine_with_another_secret_refuses_to_serve_and_to_send(
    machines: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b = machines
    use_machine(monkeypatch, "a different secret of the right length")
    with pytest.raises(SecretMismatch) as refused:
        create_app(b)
    assert "MASTHEAD_SECRET" in refused.value.message
    assert "is not the one this database's links are signed with" in refused.value.message
    subs.add(open_store(load_publication(b)), "ada@example.org", confirmed=True)
    build(b)
    result = CliRunner().invoke(main, ["send", str(b), "--issue", "2020-03", "--yes"])
    assert result.exit_code == 1
    assert "is not the one this database's links are signed with" in result.output
    with open_store(load_publication(b)).read() as conn:  # refused before any outbox
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0


def test_a_machine_with_a_copy_of_the_secret_answers_the_other_ones_links(
    machines: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = machines
    pub_a = load_publication(a)
    ada = subs.add(open_store(pub_a), "ada@example.org", confirmed=True).subscriber
    link = tokens.unsubscribe_url(pub_a, ada.id, ada.email)  # mailed by machine A
    (b / ".masthead").mkdir()
    shutil.copy2(a / ".masthead" / "secret.key", b / ".masthead" / "secret.key")
    use_machine(monkeypatch)
    with TestClient(create_app(b), base_url="https://bulletin.example.org") as client:
        answer = client.post(
            link.removeprefix("https://bulletin.example.org"),
            content="List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200
        assert client.get("/readyz").text == "ready"
    store = open_store(load_publication(b))
    assert next(s for s in subs.iter_subscribers(store) if s.id == ada.id).status == (
        "unsubscribed"
    )


def test_a_short_masthead_secret_is_refused(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_machine(monkeypatch, "short")
    with pytest.raises(Exception, match="MASTHEAD_SECRET is too short"):
        tokens.secret_key(load_publication(demo))


def _make_behind(root: Path) -> None:
    """The database as the previous Masthead left it: schema version LATEST - 1."""
    store = open_store(load_publication(root))
    with store.begin() as conn:
        conn.execute(delete(schema.schema_version))
        conn.execute(schema.schema_version.insert().values(version=LATEST - 1))
        conn.execute(text("DROP TABLE send_editions"))  # the latest step's table
    dispose_engines()


def test_only_db_upgrade_upgrades_a_shared_database(demo: Path, shared_database: str) -> None:
    """A rolling upgrade: the machine with the newer Masthead must not upgrade PostgreSQL
    under the older ones. Its commands say to run `masthead db upgrade`; its server starts
    but is not ready until then. SQLite is one machine's file: it is upgraded on opening."""
    _make_behind(demo)
    pub = load_publication(demo)
    if shared_database.startswith("sqlite"):
        assert open_store(pub).version() == LATEST
        return
    with pytest.raises(SchemaBehind) as behind:
        open_store(pub)
    assert f"is at schema version {LATEST - 1}" in behind.value.message
    assert "masthead db upgrade" in (behind.value.fix or "")
    result = CliRunner().invoke(main, ["subscribers", "list", str(demo)])
    assert result.exit_code == 1 and "masthead db upgrade" in result.output
    (demo / "_site").mkdir(exist_ok=True)
    (demo / "_site" / "index.html").write_text("<h1>Riverside Bulletin</h1>", "utf-8")
    with TestClient(create_app(demo)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert f"version {LATEST - 1}, this Masthead needs {LATEST}" in ready.text
        assert client.get("/healthz").text == "ok"
        upgraded = CliRunner().invoke(main, ["db", "upgrade", str(demo)])
        assert upgraded.exit_code == 0, upgraded.output
        assert f"from version {LATEST - 1} to {LATEST}" in upgraded.output
        assert (client.get("/readyz").status_code, client.get("/readyz").text) == (200, "ready")
    assert open_store(pub).version() == LATEST
