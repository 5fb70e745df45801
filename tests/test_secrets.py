"""Passwords and keys stay out of text meant for people."""

from __future__ import annotations

import pytest

from relaybus.secrets import Secret, mask_secrets, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:hunter2@host:5672/vh", "amqp://guest:***@host:5672/vh"),
        ("amqps://u:p%40ss@[::1]:5671/", "amqps://u:***@[::1]:5671/"),
        ("amqp://host/", "amqp://host/"),
        ("memory://", "memory://"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_secrets_hides_urls_keys_and_named_values() -> None:
    text = "connect amqp://bob:s3cret@h/ with sk-abcdefghijklmnop and token tok-123456"
    out = mask_secrets(text, "tok-123456")
    assert "s3cret" not in out
    assert "sk-abcdefghijklmnop" not in out
    assert "tok-123456" not in out
    assert "bob" in out


def test_secret_never_shows_itself() -> None:
    secret = Secret("sk-live-123456789")
    assert "123456789" not in repr(secret)
    assert "123456789" not in str(secret)
    assert "123456789" not in f"{secret}"
    assert secret.reveal() == "sk-live-123456789"
    assert secret == Secret("sk-live-123456789")
    assert not Secret("")
