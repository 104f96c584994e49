"""Tamper evidence for the exports: an entry hash chain, signed day manifests, verification.

- :mod:`.chain`: ``h_i = SHA-256(h_{i-1} || NDJSON line i)``, continued across days;
- :mod:`.canonical`: the canonical lines re-derived from CSV, NDJSON or Parquet objects;
- :mod:`.manifest`: the per-day manifest and its deterministic serialization;
- :mod:`.signing`: Ed25519 / HMAC-SHA256 signatures and the verifier's keyring;
- :mod:`.sealing`: hooks that chain and seal a day during ``export_day``;
- :mod:`.linking`: seeds from the previous day, re-linking after out-of-order exports;
- :mod:`.retirement`: records retention leaves so that verify still passes;
- :mod:`.verify`: per-day verification reading only the object store.
"""
