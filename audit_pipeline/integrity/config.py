"""The ``integrity:`` section of the YAML: whether manifests are written and how they are signed.

Keys are secrets: give them as files (``private_key_file``, ``hmac_key_file``) or as
``${ENV_VAR}`` references (``private_key``, ``hmac_key``), never inline in the YAML.
"""

from __future__ import annotations

from audit_pipeline.sections.integrity import IntegritySettings
from audit_pipeline.settings import Settings

__all__ = ["SECTION", "IntegritySettings", "integrity_settings"]

SECTION = "integrity"


def integrity_settings(settings: Settings) -> IntegritySettings:
    return settings.integrity
