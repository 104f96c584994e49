"""What signs a manifest: the one small interface the Ed25519 and HMAC signers share."""

from __future__ import annotations

import abc
import base64

from audit_pipeline.integrity.manifest import Signature, SignedDocument


class Signer(abc.ABC):
    algorithm: str
    key_id: str

    @abc.abstractmethod
    def _sign(self, payload: bytes) -> bytes: ...

    def sign(self, document: SignedDocument) -> Signature:
        value = base64.b64encode(self._sign(document.signing_payload())).decode("ascii")
        return Signature(algorithm=self.algorithm, key_id=self.key_id, value=value)  # type: ignore[arg-type]

    def published_keys(self) -> list[tuple[str, bytes, str]]:
        """Objects to publish beside the manifests so that others can verify."""
        return []
