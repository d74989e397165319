"""Signed tokens: unsubscribe/confirm links, the mailto, and VERP return paths."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from masthead.content import load_publication
from masthead.store import tokens


@pytest.fixture
def pub(demo: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MASTHEAD_SECRET", raising=False)
    tokens._secrets.clear()
    return load_publication(demo)


def test_secret_is_created_once_private_and_kept(pub) -> None:
    token = tokens.make_token(pub, "unsubscribe", 7, "Ada@Example.org")
    key = pub.state_dir / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    tokens._secrets.clear()  # a new process reads the same file
    assert tokens.make_token(pub, "unsubscribe", 7, "ada@example.org") == token


def test_unsubscribe_token_checks_id_address_and_purpose(pub) -> None:
    token = tokens.make_token(pub, "unsubscribe", 7, "Ada@Example.org")
    assert tokens.check_token(pub, "unsubscribe", 7, "ada@example.org", token)
    assert not tokens.check_token(pub, "unsubscribe", 8, "ada@example.org", token)  # swapped
    assert not tokens.check_token(pub, "unsubscribe", 7, "bob@example.org", token)
    assert not tokens.check_token(pub, "confirm", 7, "ada@example.org", token)
    tampered = ("A" if token[0] != "A" else "B") + token[1:]
    assert not tokens.check_token(pub, "unsubscribe", 7, "ada@example.org", tampered)
    assert not tokens.check_token(pub, "unsubscribe", 7, "ada@example.org", "")
    assert not tokens.check_token(pub, "unsubscribe", 7, "ada@example.org", "é" * 30)


def test_confirm_tokens_expire(pub) -> None:
    issued = int(time.time()) - tokens.CONFIRM_MAX_AGE - 10
    old = tokens.make_token(pub, "confirm", 3, "a@example.org", issued=issued)
    fresh = tokens.make_token(pub, "confirm", 3, "a@example.org")
    assert tokens.check_token(pub, "confirm", 3, "a@example.org", fresh)
    assert not tokens.check_token(pub, "confirm", 3, "a@example.org", old)
    stamp, _, mac = fresh.partition(".")
    assert not tokens.check_token(pub, "confirm", 3, "a@example.org", f"{stamp}1.{mac}")


def test_secret_from_the_environment(pub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTHEAD_SECRET", "shared between the sender and the web server")
    a = tokens.make_token(pub, "unsubscribe", 1, "a@example.org")
    monkeypatch.setenv("MASTHEAD_SECRET", "another secret altogether")
    assert tokens.make_token(pub, "unsubscribe", 1, "a@example.org") != a
    assert not (pub.state_dir / "secret.key").exists()


def test_links_are_built_from_base_url(pub) -> None:
    url = tokens.unsubscribe_url(pub, 12, "a@example.org")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "bulletin.example.org")
    assert parts.path.startswith("/unsubscribe/12/")
    assert urlsplit(tokens.confirm_url(pub, 12, "a@example.org")).path.startswith("/confirm/12/")
    mailto = tokens.unsubscribe_mailto(pub, 12, "a@example.org")
    assert mailto is not None and mailto.startswith("mailto:bulletin@example.org?subject=")
    subject = unquote(mailto.split("subject=", 1)[1])
    word, sid, token = subject.split(" ")
    assert (word, sid) == ("unsubscribe", "12")
    assert tokens.check_token(pub, "unsubscribe", 12, "a@example.org", token)


def test_verp_address_names_the_subscriber_and_cannot_be_forged(pub) -> None:
    address = tokens.verp_address(pub, 42, "a@example.org")
    assert address is not None
    local, _, domain = address.partition("@")
    assert domain == "example.org" and local.startswith("bulletin+bounce-42-")
    assert tokens.parse_verp(pub, address, "a@example.org") == 42
    upper = f"<{address.upper()}>"  # some MTAs change case
    assert tokens.parse_verp(pub, upper, "A@Example.ORG") == 42
    assert tokens.parse_verp(pub, address.replace("-42-", "-43-"), "a@example.org") is None
    assert tokens.parse_verp(pub, "bulletin@example.org", "a@example.org") is None


@pytest.mark.parametrize("now_holding", ["b@example.org", "a@example.org.evil", "", "a@example"])
def test_a_verp_address_is_bound_to_the_address_it_was_sent_to(pub, now_holding: str) -> None:
    """Ids are reused (SQLite after a removal, a restored database): the old Return-Path of
    #42 must not verify for whoever holds #42 now."""
    address = tokens.verp_address(pub, 42, "a@example.org")
    assert tokens.parse_verp(pub, address, now_holding) is None
    claim = tokens.verp_claim(pub, address)
    assert claim is not None and claim[0] == 42
    assert not tokens.check_verp(pub, 42, now_holding, claim[1])
    assert tokens.check_verp(pub, 42, "a@example.org", claim[1])


def test_the_older_verp_form_over_the_id_alone_no_longer_verifies(pub) -> None:
    old_mac = tokens._mac(pub, "verp|42").hex()[:8]  # the form before the email binding
    address = f"bulletin+bounce-42-{old_mac}@example.org"
    assert tokens.verp_claim(pub, address) == (42, old_mac)  # recognised, so it is held
    assert tokens.parse_verp(pub, address, "a@example.org") is None
    for length in (7, 9, 11, 13, 16):  # no other length is ours
        assert tokens.verp_claim(pub, f"bulletin+bounce-42-{'0' * length}@example.org") is None


def test_the_verp_mac_is_short_enough_for_a_mail_local_part(pub) -> None:
    address = tokens.verp_address(pub, 10**10 - 1, "a@example.org")
    local = address.partition("@")[0]
    mac = local.rpartition("-")[2]
    assert len(mac) == tokens.VERP_MAC_HEX == 12
    assert len(local) == tokens.verp_local_part_length(pub) <= tokens.VERP_LOCAL_MAX


def test_no_from_address_means_no_mailto_and_no_verp(demo: Path) -> None:
    toml = demo / "masthead.toml"
    text = toml.read_text("utf-8").replace(
        'from = "Riverside Bulletin <bulletin@example.org>"\n', ""
    )
    toml.write_text(text, "utf-8")
    pub = load_publication(demo)
    assert tokens.unsubscribe_mailto(pub, 1, "a@example.org") is None
    assert tokens.verp_address(pub, 1, "a@example.org") is None


def test_a_verp_address_on_another_from_address_is_not_ours(pub) -> None:
    address = tokens.verp_address(pub, 42, "a@example.org")
    assert address is not None
    for other in (
        address.replace("bulletin+", "newsletter+"),
        address.replace("@example.org", "@example.net"),
    ):
        assert tokens.verp_claim(pub, other) is None
        assert tokens.parse_verp(pub, other, "a@example.org") is None
