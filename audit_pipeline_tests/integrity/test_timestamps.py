"""RFC 3161 timestamps of the log's checkpoints against a local TSA made with ``openssl ts`` on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.proofs import CHECKPOINT_KEY, day_checkpoint_key
from audit_pipeline_tests.conftest import free_port
from audit_pipeline_tests.integrity.support import DAYS, ROWS, configure_signed_log, export_as_configured, insert_days, new_signer, write_public_key

D1, D2, D3 = DAYS

TSA_CONFIG = """
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tsa(folder: Path, name: str) -> Path:
    """A root CA and a time-stamping certificate it issued (EKU timeStamping, critical); returns the folder.

    The replies carry the signer's certificate only (no ``certs =`` chain): ``openssl ts`` writes a chain's
    SET OF certificates unsorted, which is not DER, and ``rfc3161-client`` rightly refuses it."""
    folder.mkdir()
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-subj", f"/CN={name} Root", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
             "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
    (folder / "ext.cnf").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n")
    _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tsa.crt", "-days", "30",
             "-extfile", "ext.cnf", cwd=folder)  # fmt: skip
    (folder / "tsaserial").write_text("01\n")
    (folder / "tsa.cnf").write_text(TSA_CONFIG.format(dir=folder))
    return folder


class _Tsa(BaseHTTPRequestHandler):
    """RFC 3161 over HTTP (RFC 3161 §3.4): POST application/timestamp-query, answer application/timestamp-reply."""

    folder: Path
    requests: list[int]

    def do_POST(self) -> None:
        query = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Type") != "application/timestamp-query":
            self.send_error(415)
            return
        name = uuid.uuid4().hex
        (self.folder / f"{name}.tsq").write_bytes(query)
        subprocess.run(
            ["openssl", "ts", "-reply", "-config", "tsa.cnf", "-queryfile", f"{name}.tsq", "-out", f"{name}.tsr"],
            cwd=self.folder,
            check=True,
            capture_output=True,
            timeout=60,
        )
        reply = (self.folder / f"{name}.tsr").read_bytes()
        self.requests.append(len(query))
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def tsa(tmp_path):
    folder = make_tsa(tmp_path / "tsa", "Test TSA")
    handler = type("Handler", (_Tsa,), {"folder": folder, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/tsr", "ca": folder / "ca.crt", "requests": handler.requests}
    server.shutdown()
    server.server_close()


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_checkpoints_are_timestamped_and_verify_and_verify_proof_check_the_tokens(pg, workdir, tsa, tmp_path):
    insert_days(pg, ROWS)
    signer = new_signer()
    root = configure_signed_log(workdir, pg, signer, timestamp_url=tsa["url"], timestamp_ca_file=str(tsa["ca"]))
    export_as_configured(DAYS)
    assert len(tsa["requests"]) == 3
    for key in (CHECKPOINT_KEY, *(day_checkpoint_key(d) for d in DAYS)):
        assert (root / f"{key}.tsr").stat().st_size > 500
    assert (root / f"{CHECKPOINT_KEY}.tsr").read_bytes() == (root / f"{day_checkpoint_key(D3)}.tsr").read_bytes()

    ok = _run("verify")
    assert ok.exit_code == 0, ok.output
    assert "log: 4 RFC 3161 timestamps verify; the newest at 20" in ok.output

    event = json.loads((root / f"ndjson/date={D2}/audit_logs.ndjson").read_text().splitlines()[7])
    made = _run("prove", event["id"], "-o", str(workdir / "bundle.json"))
    assert made.exit_code == 0, made.output
    bundle = json.loads((workdir / "bundle.json").read_text())
    assert "checkpoint_timestamp" in bundle and "latest_checkpoint_timestamp" in bundle
    public = write_public_key(signer, workdir / "public.pem")
    checked = _run("verify-proof", str(workdir / "bundle.json"), "--public-key", str(public), "--tsa-ca", str(tsa["ca"]))
    assert checked.exit_code == 0, checked.output
    assert ", timestamped 20" in checked.output
    unchecked = _run("verify-proof", str(workdir / "bundle.json"), "--public-key", str(public))
    assert unchecked.exit_code == 0 and "timestamp not checked (give --tsa-ca)" in unchecked.output

    def fails(changed: dict, ca: Path) -> str:
        path = workdir / "tampered.json"
        path.write_text(json.dumps(changed))
        result = _run("verify-proof", str(path), "--public-key", str(public), "--tsa-ca", str(ca))
        assert result.exit_code == 1 and result.output.count("\n") == 1 and result.output.startswith("FAILED: "), result.output
        return result.output

    # Another day's token (a genuine token, over another checkpoint); a token of another TSA; none at all.
    other_day = base64.b64encode((root / f"{day_checkpoint_key(D1)}.tsr").read_bytes()).decode()
    assert "checkpoint timestamp does not verify: Mismatch between messages" in fails({**bundle, "checkpoint_timestamp": other_day}, tsa["ca"])
    stranger = make_tsa(tmp_path / "other-tsa", "Other TSA")
    assert "checkpoint timestamp does not verify" in fails(bundle, stranger / "ca.crt")
    assert "carries no timestamp of its checkpoint" in fails({k: v for k, v in bundle.items() if k != "checkpoint_timestamp"}, tsa["ca"])

    # In the store: a day's token replaced by another day's.
    (root / f"{day_checkpoint_key(D2)}.tsr").write_bytes((root / f"{day_checkpoint_key(D1)}.tsr").read_bytes())
    bad = _run("verify")
    assert bad.exit_code == 1
    assert (
        "LOG FAILED: the checkpoint of 2024-03-02: tlog/checkpoints/date=2024-03-02.tsr: the timestamp does not verify: Mismatch between messages" in bad.output
    )


def test_the_newest_checkpoint_without_a_timestamp_fails_verify_when_timestamps_are_on(pg, workdir, tsa):
    insert_days(pg, {D1: 50})
    root = configure_signed_log(workdir, pg, new_signer(), timestamp_url=tsa["url"], timestamp_ca_file=str(tsa["ca"]))
    export_as_configured([D1])
    (root / f"{CHECKPOINT_KEY}.tsr").unlink()
    bad = _run("verify")
    assert bad.exit_code == 1
    assert (
        "LOG FAILED: the newest checkpoint (tlog/checkpoint) has no RFC 3161 timestamp (tlog/checkpoint.tsr), but integrity.timestamp_url is set" in bad.output
    )


def test_an_unreachable_tsa_extends_nothing_and_says_so_in_one_line(pg, workdir):
    insert_days(pg, {D1: 50})
    root = configure_signed_log(workdir, pg, new_signer(), timestamp_url=f"http://127.0.0.1:{free_port()}/tsr")
    with pytest.raises(IntegrityError) as failure:
        export_as_configured([D1])
    message = str(failure.value)
    assert message.startswith("the TSA at integrity.timestamp_url cannot be reached (") and "\n" not in message
    assert "the log was not extended with 2024-03-01 (its export is published; export it again to append it)" in message
    assert not (root / CHECKPOINT_KEY).exists() and (root / f"manifests/date={D1}.json").exists()


def test_a_timestamp_url_that_is_not_http_is_refused_at_load(workdir, pg):
    configure_signed_log(workdir, pg, new_signer(), timestamp_url="ftp://tsa.example/")
    result = _run("config", "check")
    assert result.exit_code == 2, result.output
    assert "integrity.timestamp_url" in result.output and "must be the http:// or https:// URL of an RFC 3161 time-stamping authority" in result.output
