"""What `masthead serve` sends around files: the policies every SVG and page carries, links
in an issue folder that the editor's app refuses to follow, a redirect that never names the
request's Host, probes that do not show the database's error text."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conftest import copy_tree
from editor_kit import log_in, png, set_password
from masthead.build import build
from masthead.store import dispose_engines
from masthead.web import create_app

SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@pytest.fixture
def site_root(built_demo: Path, tmp_path: Path) -> Path:
    root = copy_tree(built_demo, tmp_path / "demo")
    set_password(root)
    return root


@pytest.fixture
def client(site_root: Path):
    with TestClient(create_app(site_root), base_url="https://bulletin.example.org") as c:
        yield c


@pytest.fixture
def editor(client: TestClient) -> TestClient:
    assert log_in(client).status_code == 200
    return client


# ---- policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/2020-03/river.svg", "/static/favicon.svg", "/feed.xml"])
def test_svg_and_other_files_are_served_sandboxed(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == SVG_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/2020-03/", "/2020-03/lead/", "/search/"])
def test_pages_carry_a_policy_header(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_scripts_are_not_sandboxed(client: TestClient) -> None:
    """Pagefind runs its search in a worker, whose policy is its script's own."""
    response = client.get("/static/search.js")
    assert response.status_code == 200
    assert "sandbox" not in response.headers.get("content-security-policy", "")


def test_admin_files_are_served_sandboxed(editor: TestClient, site_root: Path) -> None:
    (site_root / "issues/2020-03/photo.png").write_bytes(png())
    response = editor.get("/admin/issues/2020-03/files/photo.png")
    assert response.status_code == 200 and response.content == png()
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-security-policy"] == SVG_POLICY


# ---- links in an issue folder -----------------------------------------------------------


def _secret(root: Path) -> bytes:
    return (root / ".masthead" / "secret.key").read_bytes()


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("key.png", "../../.masthead/secret.key"),  # relative, to the signing secret
        ("abs.png", "{root}/.masthead/secret.key"),  # absolute
        ("passwd.png", "/etc/passwd"),
        ("folder.png", "../../.masthead"),  # a folder
        ("loop.png", "loop.png"),  # a link to itself
        ("dangling.png", "../../nothing-here.png"),
    ],
)
def test_files_route_does_not_follow_links(
    editor: TestClient, site_root: Path, name: str, target: str
) -> None:
    link = site_root / "issues/2020-03" / name
    os.symlink(target.format(root=site_root), link)
    response = editor.get(f"/admin/issues/2020-03/files/{name}")
    assert response.status_code == 404
    assert _secret(site_root) not in response.content
    assert b"root:" not in response.content


def test_files_route_refuses_an_issue_folder_that_is_a_link(
    editor: TestClient, site_root: Path
) -> None:
    """A hardlink-free way out: the file is real, but its folder is a link elsewhere."""
    elsewhere = site_root.parent / "elsewhere"
    shutil.copytree(site_root / "issues/2020-03", elsewhere)
    (elsewhere / "private.png").write_bytes(png(7, 7))
    os.symlink(elsewhere, site_root / "issues/2020-09")
    response = editor.get("/admin/issues/2020-09/files/private.png")
    assert response.status_code in (400, 404)
    assert png(7, 7) not in response.content
    page = editor.get("/admin/issues/2020-09/items/lead")
    assert page.status_code in (400, 404)
    assert "not follow links" in page.text or page.status_code == 404


def test_item_that_is_a_link_is_neither_shown_nor_written(
    editor: TestClient, site_root: Path
) -> None:
    secret = _secret(site_root)
    folder = site_root / "issues/2020-03"
    os.symlink("../../.masthead/secret.key", folder / "notes.md")
    page = editor.get("/admin/issues/2020-03/items/notes")
    assert page.status_code == 400
    assert "symbolic link" in page.text
    assert secret.hex() not in page.text and secret.decode("latin-1") not in page.text
    issue = editor.get("/admin/issues/2020-03")
    assert issue.status_code == 200 and secret.decode("latin-1") not in issue.text


# ---- the folder redirect ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "bulletin.example.org", "x:1@evil.example"])
def test_folder_redirect_is_relative(client: TestClient, host: str) -> None:
    response = client.get("/2020-03", headers={"host": host}, follow_redirects=False)
    assert response.status_code in (301, 302, 307, 308)
    location = response.headers["location"]
    assert location == "2020-03/"
    assert "evil" not in location and "//" not in location


def test_folder_redirect_under_a_prefix_is_relative(site_root: Path) -> None:
    toml = site_root / "masthead.toml"
    toml.write_text(
        toml.read_text("utf-8").replace(
            'base_url = "https://bulletin.example.org/"',
            'base_url = "https://bulletin.example.org/bulletin/"',
        ),
        "utf-8",
    )
    build(site_root)
    with TestClient(create_app(site_root), base_url="https://bulletin.example.org") as c:
        response = c.get("/bulletin/2020-03?x=1", headers={"host": "evil"}, follow_redirects=False)
        assert response.headers["location"] == "2020-03/?x=1"
        followed = c.get("/bulletin/2020-03")
        assert followed.status_code == 200 and followed.url.path == "/bulletin/2020-03/"
