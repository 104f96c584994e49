"""Signing settings and their errors, Ed25519 and HMAC manifests, pinned keys and key rotation."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from audit_pipeline.cli.app import main
from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.layout import PUBLIC_KEY_KEY, manifest_key, public_key_key
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.integrity.signing import Ed25519Signer, HmacSigner, Keyring, load_signer
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, insert_days, messages, new_signer, seal, verify, write_private_key, write_public_key

D1, D2, D3 = DAYS
SMALL = {D1: 60, D2: 50, D3: 40}
HMAC_SECRET = "hmac-secret-0123456789abcdef-0123456789"


def test_key_settings_errors_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"integrity.private_key_file: cannot read .*missing.pem"):
        load_signer(IntegritySettings(private_key_file=tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match=r"integrity\.private_key_file: not a PEM private key.*openssl genpkey -algorithm ed25519"):
        load_signer(IntegritySettings(private_key_file=tmp_path / "junk.pem"))
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ConfigError, match=r"integrity\.private_key: the key is not an Ed25519 key"):
        load_signer(IntegritySettings(private_key=other.decode()))
    signer = new_signer()
    encrypted = (
        serialization.load_pem_private_key(signer.private_pem(), None)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"passphrase-1"))
        .decode()
    )
    with pytest.raises(ConfigError, match=r"the key is encrypted; set integrity\.private_key_passphrase"):
        load_signer(IntegritySettings(private_key=encrypted))
    loaded = load_signer(IntegritySettings(private_key=encrypted, private_key_passphrase="passphrase-1"))
    assert isinstance(loaded, Ed25519Signer) and loaded.key_id == signer.key_id
    with pytest.raises(ConfigError, match=r"integrity\.hmac_key: the HMAC key has 5 bytes; use at least 32") as short:
        load_signer(IntegritySettings(hmac_key="short"))
    assert "short" not in str(short.value).replace("has 5 bytes", "")
    with pytest.raises(ConfigError, match="both an Ed25519 key and an HMAC key"):
        load_signer(IntegritySettings(private_key=encrypted, private_key_passphrase="passphrase-1", hmac_key=HMAC_SECRET))
    with pytest.raises(ConfigError, match=r"integrity\.signing is ed25519, but no key is configured"):
        load_signer(IntegritySettings(signing="ed25519"))
    assert load_signer(IntegritySettings()) is None
    assert load_signer(IntegritySettings(hmac_key=HMAC_SECRET, signing="none")) is None


def test_integrity_section_from_yaml_keeps_secrets_secret(tmp_path):
    config = tmp_path / "audit.yaml"
    config.write_text(yaml.safe_dump({"integrity": {"hmac_key": "${MANIFEST_HMAC}", "checkpoint_rows": 500}}))
    settings = load_settings(config, env={"MANIFEST_HMAC": HMAC_SECRET})
    section = settings.integrity
    assert section.checkpoint_rows == 500 and section.hmac_key is not None
    assert HMAC_SECRET not in repr(section) and HMAC_SECRET not in str(section.model_dump())
    signer = load_signer(section)
    assert isinstance(signer, HmacSigner) and HMAC_SECRET not in repr(signer) and signer.key_id not in HMAC_SECRET
    config.write_text(yaml.safe_dump({"integrity": {"hmac_keys": "x"}}))
    with pytest.raises(ConfigError, match=r"integrity\.hmac_keys: unknown key"):
        (load_settings(config, env={})).integrity


def _configure(workdir, pg, root, integrity) -> None:
    (workdir / "audit_pipeline.yaml").write_text(
        yaml.safe_dump({"source": {"database_url": pg.readonly_url}, "export": {"url": str(root)}, "integrity": integrity})
    )


def _export_with_settings(days) -> None:
    settings = load_settings()
    store = ObjectStore.from_settings(settings.export)
    with PostgresSource(settings.source.database_url.get_secret_value()) as source:
        for day in days:
            sealer = DaySealer.from_settings(settings, store, day)
            export_day(source, store, day, settings.export, **sealer.export_hooks())
            sealer.after_publish()


def test_hmac_manifests(pg, workdir, monkeypatch):
    insert_days(pg, SMALL)
    root = workdir / "exports"
    monkeypatch.setenv("MANIFEST_HMAC", HMAC_SECRET)
    _configure(workdir, pg, root, {"hmac_key": "${MANIFEST_HMAC}", "checkpoint_rows": 100})
    _export_with_settings(DAYS)
    manifest = Manifest.from_bytes((root / manifest_key(D2)).read_bytes())
    assert manifest.signature is not None and manifest.signature.algorithm == "hmac-sha256"
    ok = CliRunner().invoke(main, ["verify"])
    assert ok.exit_code == 0, ok.output
    assert "HMAC-SHA256, key" in ok.output and HMAC_SECRET not in ok.output
    # Another secret cannot check them, and says so.
    monkeypatch.setenv("MANIFEST_HMAC", "another-secret-0123456789abcdef-012345")
    wrong = CliRunner().invoke(main, ["verify"])
    assert wrong.exit_code == 1 and "which is not the configured integrity.hmac_key; cannot check it" in wrong.output
    # A changed manifest fails its HMAC.
    monkeypatch.setenv("MANIFEST_HMAC", HMAC_SECRET)
    document = json.loads((root / manifest_key(D3)).read_text())
    document["last"]["id"] = "alog_forged"
    (root / manifest_key(D3)).write_text(json.dumps(document))
    forged = CliRunner().invoke(main, ["verify", "--from", str(D3)])
    assert forged.exit_code == 1 and f"manifests/date={D3}.json: signature invalid (HMAC key {manifest.signature.key_id})" in forged.output


def test_ed25519_key_from_the_environment_and_published_public_key(pg, workdir, monkeypatch):
    insert_days(pg, SMALL)
    root = workdir / "exports"
    signer = new_signer()
    pem = write_private_key(signer, workdir / "k.pem").read_text()
    monkeypatch.setenv("MANIFEST_KEY", pem)
    _configure(workdir, pg, root, {"private_key": "${MANIFEST_KEY}"})
    _export_with_settings(DAYS[:2])
    published = (root / PUBLIC_KEY_KEY).read_bytes()
    assert published == (root / public_key_key(signer.key_id)).read_bytes() == signer.published_keys()[0][1]
    assert b"PRIVATE" not in published
    # The configured private key pins its own public key.
    keyring = Keyring.build(load_settings().integrity)
    assert set(keyring.pinned) == {signer.key_id}
    reports = verify(ObjectStore(str(root)), keyring)
    assert all(r.ok for r in reports.values()) and "not pinned" not in " ".join(reports[D1].notes)


def test_public_key_requires_signatures(pg, tmp_path):
    insert_days(pg, SMALL)
    store = ObjectStore(str(tmp_path / "x"))
    with PostgresSource(pg.readonly_url) as source:
        seal(source, store, D1)
    keyring = Keyring.build(None, [write_public_key(new_signer(), tmp_path / "p.pem")])
    assert (
        messages(verify(store, keyring)[D1])
        == f"manifest altered or signature invalid: manifests/date={D1}.json: unsigned, but a signature is required (--public-key was given)"
    )
    assert verify(store)[D1].notes[0] == "unsigned"


def test_key_rotation(pg, tmp_path):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    store = ObjectStore(str(root))
    old, new = new_signer(), new_signer()
    with PostgresSource(pg.readonly_url) as source:
        seal(source, store, D1, signer=old)
        seal(source, store, D2, signer=old)
        seal(source, store, D3, signer=new)  # continues from a day signed with the old key
    only_new = verify(store, Keyring.build(None, [write_public_key(new, tmp_path / "new.pem")]))
    assert "which is not a trusted key" in messages(only_new[D1]) and only_new[D3].ok
    both = verify(store, Keyring.build(IntegritySettings(public_key_files=(write_public_key(old, tmp_path / "old.pem"),)), [tmp_path / "new.pem"]))
    assert all(r.ok for r in both.values()), [messages(r) for r in both.values()]


def test_cryptography_is_loaded_only_where_an_ed25519_key_is(tmp_path):
    # An unsigned deployment's code location and export path never load it; an Ed25519 key does.
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import audit_pipeline.definitions, audit_pipeline.integrity.sealing, audit_pipeline.checks.day, audit_pipeline.cli.app\n"
        "from audit_pipeline.config.sections.integrity import IntegritySettings\n"
        "from audit_pipeline.integrity.signing import Keyring, load_signer\n"
        "Keyring.build(IntegritySettings(), ())\n"
        "print('cryptography' in sys.modules)\n"
        "load_signer(IntegritySettings(private_key=sys.argv[1]))\n"
        "print('cryptography' in sys.modules)\n"
    )
    pem = Ed25519Signer.generate().private_pem().decode()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AUDIT_")}
    done = subprocess.run([sys.executable, "-c", probe, pem], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"]
