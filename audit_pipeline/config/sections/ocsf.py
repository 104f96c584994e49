"""``sinks.<name>.ocsf``: which OCSF version a sink receives and how deployment-specific event types map.

The default table (event type → OCSF class and activity) lives in :mod:`audit_pipeline.schemas.ocsf_table`;
this section only adds to it or overrides it, so a deployment with its own event types maps them
without code.  Whether a class/activity pair exists in the chosen OCSF version is checked when the sink
is built (the message names the setting), because the activity lists differ between versions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The OCSF versions the mapping is validated against (tests compile both schemas).  1.1.0 is what
#: Amazon Security Lake validates custom sources with; 1.8.0 is the latest release.
OCSF_VERSIONS = ("1.1.0", "1.8.0")
OcsfVersion = Literal["1.1.0", "1.8.0"]


class OcsfEventType(BaseModel):
    """One row of the mapping table: an event type's OCSF class, activity and (optionally) severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_uid: int
    activity_id: int
    #: OCSF severity_id (1 Informational ... 6 Fatal); unset: the documented rule decides.
    severity_id: int | None = Field(default=None, ge=0, le=6)


class OcsfSettings(BaseModel):
    """``sinks.<name>.ocsf``: the OCSF version written and the event types added to the built-in table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The OCSF version written: 1.1.0 (what Amazon Security Lake validates custom sources against) or 1.8.0 (the latest release).
    version: OcsfVersion = "1.1.0"
    #: ``{event type or glob pattern: {class_uid, activity_id}}``, e.g. ``{"passkey.registered": {class_uid: 3001, activity_id: 10}}``.
    event_types: dict[str, OcsfEventType] = Field(default_factory=dict)

    @field_validator("event_types")
    @classmethod
    def _keys(cls, value: dict[str, OcsfEventType]) -> dict[str, OcsfEventType]:
        for key in value:
            if not key.strip():
                raise ValueError("an event type is empty; use the dotted name, e.g. user.login, or a pattern such as passkey.*")
        return value
