"""External endpoints: SSRF rules for base URLs (a table), credential encryption and redaction."""

from __future__ import annotations

import json
import os
import pickle
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog
from cryptography.fernet import Fernet

from suanwang.adapters.crypto import FernetBox, box_for, drop_old_keys, rotate_key_file
from suanwang.domain.errors import ValidationError
from suanwang.domain.external import HealthCheck, check_base_url, check_credential
from suanwang.domain.serving import ReplicaView, Secret
from suanwang.gateway.upstream import for_external
from suanwang.services.external_health import probe_url

PUBLIC_IP = "93.184.216.34"
DNS = {
    "models.example.com": [PUBLIC_IP],
    "rebind.example.com": [PUBLIC_IP, "10.0.0.7"],
    "local.example.com": ["127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "v6local.example.com": ["::1"],
    "mapped.example.com": ["::ffff:192.168.1.1"],
}


def resolve(host: str) -> Sequence[str]:
    if host.startswith("bad-idna"):
        raise UnicodeError("label empty or too long")
    if host not in DNS:
        raise OSError("no such host")
    return DNS[host]


# (url, accepted without the exemption, accepted with it)
URLS = [
    ("https://models.example.com/v1", True, True),
    ("http://models.example.com:8000", True, True),
    (f"https://{PUBLIC_IP}/v1", True, True),
    ("http://127.0.0.1:8000/v1", False, True),
    ("http://localhost.:8000", False, True),  # does not resolve here; exempt: not resolved
    ("http://local.example.com/v1", False, True),
    ("http://rebind.example.com/v1", False, True),  # any private address refuses it
    ("http://169.254.169.254/latest/meta-data", False, True),
    ("http://metadata.example.com/", False, True),
    ("http://0.0.0.0:8000", False, True),
    ("http://[::1]:8000", False, True),
    ("http://v6local.example.com", False, True),
    ("http://[::ffff:127.0.0.1]:8000", False, True),
    ("http://mapped.example.com", False, True),
    ("http://[fe80::1]/v1", False, True),
    ("http://10.1.2.3/v1", False, True),
    ("http://172.16.0.1/v1", False, True),
    ("http://192.168.0.10/v1", False, True),
    ("http://100.64.0.1/v1", False, True),  # shared address space (carrier NAT)
    ("http://224.0.0.1/v1", False, True),
    ("http://2130706433/v1", False, False),  # 127.0.0.1 as one number
    ("http://0x7f.1/v1", False, False),
    ("http://127.1/v1", False, False),
    ("ftp://models.example.com/v1", False, False),
    ("file:///etc/passwd", False, False),
    ("gopher://models.example.com/", False, False),
    ("https://user:pw@models.example.com/v1", False, False),
    ("https://models.example.com@127.0.0.1/v1", False, False),
    ("https://models.example.com/v1?x=1", False, False),
    ("https://models.example.com/v1#frag", False, False),
    ("https://models.example.com:0/v1", False, False),
    ("https://models.example.com:99999/v1", False, False),
    ("https:///v1", False, False),
    ("https://models.example.com/v1%2f..", False, False),
    ("https://models.example.com\\@127.0.0.1/", False, False),
    ("https://nowhere.example.com/v1", False, True),
    ("https://bad-idna..example.com/v1", False, True),
    ("https://models.example.com/" + "a" * 300, False, False),
]


@pytest.mark.parametrize(("url", "public_ok", "exempt_ok"), URLS)
def test_base_url_rules(url: str, public_ok: bool, exempt_ok: bool) -> None:
    for allow, ok in ((False, public_ok), (True, exempt_ok)):
        if ok:
            assert check_base_url(url, resolve, allow_private_network=allow) == url.rstrip("/")
        else:
            with pytest.raises(ValidationError) as refused:
                check_base_url(url, resolve, allow_private_network=allow)
            assert refused.value.field == "base_url"
            assert refused.value.hint


def test_private_refusal_names_the_exemption() -> None:
    with pytest.raises(ValidationError) as refused:
        check_base_url("http://127.0.0.1:9/v1", resolve, allow_private_network=False)
    assert "--allow-private-network" in (refused.value.hint or "")


@pytest.mark.parametrize("bad", ["", "a b", "tok\n", "é", "x" * 4097])
def test_credentials_must_be_printable_ascii(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_credential(bad)


def test_secret_never_shows_its_value() -> None:
    secret = Secret("sk-very-secret")
    view = ReplicaView("r", "d", "m", "openai-compatible", "http://x", None, credential=secret)
    for text in (repr(secret), str(secret), f"{secret}", repr(view), str(view)):
        assert "sk-very-secret" not in text
    assert secret.reveal() == "sk-very-secret"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_structlog_rendering_of_a_view_hides_the_credential() -> None:
    view = ReplicaView(
        "r", "d", "m", "openai-compatible", "http://x", None, credential=Secret("sk-hidden-1")
    )
    rendered = structlog.processors.JSONRenderer(default=repr)(None, "", {"replica": view})
    assert "sk-hidden-1" not in str(rendered)


def test_upstream_request_carries_the_credential_and_upstream_model() -> None:
    view = ReplicaView(
        "r", "d", "mine", "openai-compatible", "https://x/v1", None,
        upstream_model="their/model", credential=Secret("sk-up"),
    )  # fmt: skip
    payload, headers = for_external(
        view, json.dumps({"model": "mine", "messages": []}).encode(), {"x-request-id": "1"}
    )
    assert json.loads(payload)["model"] == "their/model"
    assert headers == {"x-request-id": "1", "authorization": "Bearer sk-up"}


def test_probe_urls() -> None:
    assert probe_url("http://h:1/v1", HealthCheck.HEALTH) == "http://h:1/health"
    assert probe_url("http://h:1", HealthCheck.MODELS) == "http://h:1/v1/models"
    assert probe_url("https://h/v1/", HealthCheck.MODELS) == "https://h/v1/models"


def test_seal_open_round_trip_and_ciphertext_hides_plaintext(tmp_path: Path) -> None:
    box = FernetBox(key_file=tmp_path / "credentials.key")
    sealed = box.seal("sk-round-trip")
    assert "sk-round-trip" not in sealed
    assert box.seal("sk-round-trip") != sealed  # random IV: equal secrets look different
    assert box.open(sealed) == "sk-round-trip"
    assert stat.S_IMODE(os.stat(tmp_path / "credentials.key").st_mode) == 0o600


def test_a_foreign_key_cannot_open(tmp_path: Path) -> None:
    sealed = FernetBox([Fernet.generate_key()]).seal("sk-x")
    with pytest.raises(ValueError, match="no credential key"):
        FernetBox([Fernet.generate_key()]).open(sealed)
    with pytest.raises(ValueError, match="no credential key"):
        FernetBox(key_file=tmp_path / "k").open(sealed)


def test_rotation_keeps_old_ciphertexts_open_until_resealed(tmp_path: Path) -> None:
    key_file = tmp_path / "credentials.key"
    gateway = FernetBox(key_file=key_file)  # a running process with the old key
    old = gateway.seal("sk-rotate")
    assert rotate_key_file(key_file) == 2
    rotated = FernetBox(key_file=key_file)
    new = rotated.reseal(old)
    drop_old_keys(key_file)
    assert gateway.open(new) == "sk-rotate"  # reloads the key file on an unknown key
    with pytest.raises(ValueError, match="no credential key"):
        FernetBox(key_file=key_file).open(old)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_keys_from_the_environment_win(tmp_path: Path) -> None:
    first, second = Fernet.generate_key(), Fernet.generate_key()
    env = {"SUANWANG_CREDENTIAL_KEYS": f"{first.decode()},{second.decode()}"}
    sealed = FernetBox([second]).seal("sk-env")
    box = box_for(tmp_path, env)
    assert box.open(sealed) == "sk-env"
    assert FernetBox([first]).open(box.seal("sk-new")) == "sk-new"  # sealed with the first
    assert not (tmp_path / "credentials.key").exists()


def test_processes_racing_to_create_the_key_file_agree(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    key_file = tmp_path / "credentials.key"
    with ThreadPoolExecutor(8) as pool:
        boxes = list(pool.map(lambda _: FernetBox(key_file=key_file), range(8)))
    sealed = boxes[0].seal("sk-race")
    assert all(box.open(sealed) == "sk-race" for box in boxes)
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.key"]
