"""A small OCSF event validator written from the compiled schema's structure (``python -m ocsf.compile``).

It knows nothing of our mapping: given a compiled schema (classes, objects, types, profiles) it
checks one event for

* required attributes present (an attribute that belongs to a profile counts only when the event
  lists that profile in ``metadata.profiles``);
* no attribute the class or object does not define, and none of a profile the event does not list
  (``unmapped`` is the one place for anything else: its content is not checked);
* attribute types: JSON type of the base type, the type's ``regex``, ``max_len`` and ``range``;
  arrays where ``is_array``; objects recursively;
* enum ids valid, and a sibling caption (``status`` beside ``status_id``) equal to the enum's caption
  unless the id is 99 Other;
* ``at_least_one`` / ``just_one`` constraints of classes and objects;
* ``type_uid == class_uid * 100 + activity_id`` and ``category_uid`` the class's category (its one enum value);
* no deprecated attribute.

Errata: ocsf-lib 0.10.4 compiles an object that extends another with its parent's constraints
(``network_endpoint`` gets ``_entity``'s ``at_least_one: [name, uid]`` although
``objects/network_endpoint.json`` says ``[ip, uid, name, hostname, ...]``); :data:`CONSTRAINT_ERRATA`
restores the source file's list for the objects the mapping uses.
"""

from __future__ import annotations

import re
from typing import Any

#: Object → its own constraints as written in the schema source (objects/<name>.json), where the
#: compiler reports the parent's instead.
CONSTRAINT_ERRATA: dict[str, dict[str, dict[str, list[str]]]] = {
    "1.1.0": {"network_endpoint": {"at_least_one": ["ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name"]}},
    "1.8.0": {"network_endpoint": {"at_least_one": ["ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name", "domain"]}},
}

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string_t": (str,),
    "integer_t": (int,),
    "long_t": (int,),
    "float_t": (int, float),
    "boolean_t": (bool,),
}


class OcsfValidator:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.version = str(schema["version"])
        self.classes = {int(c["uid"]): c for c in schema["classes"].values()}
        self.errata = CONSTRAINT_ERRATA.get(self.version, {})

    def problems(self, event: dict[str, Any]) -> list[str]:
        """Every way ``event`` departs from its class in this schema (empty: valid)."""
        out: list[str] = []
        class_uid = event.get("class_uid")
        if not isinstance(class_uid, int) or class_uid not in self.classes:
            return [f"class_uid {class_uid!r} is not a class of OCSF {self.version}"]
        cls = self.classes[class_uid]
        meta = event.get("metadata")
        profiles = set(meta.get("profiles") or []) if isinstance(meta, dict) else set()
        for profile in profiles:
            if profile not in self.schema["profiles"]:
                out.append(f"metadata.profiles: {profile!r} is not a profile of OCSF {self.version}")
        self._check_object(event, cls["attributes"], cls.get("constraints"), "", profiles, out, top=True)
        category = cls["attributes"].get("category_uid", {}).get("enum") or {}
        if str(event.get("category_uid")) not in category:
            out.append(f"category_uid {event.get('category_uid')!r} is not this class's category ({sorted(category)})")
        activity = event.get("activity_id")
        if isinstance(activity, int) and event.get("type_uid") != class_uid * 100 + activity:
            out.append(f"type_uid {event.get('type_uid')} is not class_uid*100+activity_id = {class_uid * 100 + activity}")
        return out

    def _check_object(
        self, value: dict[str, Any], attributes: dict[str, Any], constraints: Any, path: str, profiles: set[str], out: list[str], *, top: bool = False
    ) -> None:
        for key, item in value.items():
            where = f"{path}{key}"
            spec = attributes.get(key)
            if spec is None:
                out.append(f"{where}: not an attribute of this {'class' if top else 'object'}")
                continue
            if spec.get("profile") and spec["profile"] not in profiles:
                out.append(f"{where}: belongs to profile {spec['profile']!r}, which metadata.profiles does not list")
            if spec.get("@deprecated"):
                out.append(f"{where}: deprecated in OCSF {self.version}")
            if top and key == "unmapped":
                if not isinstance(item, dict):
                    out.append(f"{where}: must be an object")
                continue
            self._check_value(item, spec, where, profiles, out)
        for key, spec in attributes.items():
            if spec.get("requirement") == "required" and key not in value and (not spec.get("profile") or spec["profile"] in profiles):
                out.append(f"{path}{key}: required, missing")
        for key, spec in attributes.items():
            sibling, enum = spec.get("sibling"), spec.get("enum")
            if enum and sibling and key in value and sibling in value:
                code = str(value[key])
                if code != "99" and code in enum and value[sibling] != enum[code]["caption"]:
                    out.append(f"{path}{sibling}: {value[sibling]!r} is not the caption of {key} {code} ({enum[code]['caption']!r})")
        for rule, names in (constraints or {}).items():
            present = [n for n in names if value.get(n) is not None]
            if rule == "at_least_one" and not present:
                out.append(f"{path or '(event)'}: needs at least one of {names}")
            if rule == "just_one" and len(present) != 1:
                out.append(f"{path or '(event)'}: needs exactly one of {names}, has {present}")

    def _check_value(self, item: Any, spec: dict[str, Any], where: str, profiles: set[str], out: list[str]) -> None:
        if spec.get("is_array"):
            if not isinstance(item, list):
                out.append(f"{where}: must be an array")
                return
            for n, element in enumerate(item):
                self._check_single(element, spec, f"{where}[{n}]", profiles, out)
            return
        self._check_single(item, spec, where, profiles, out)

    def _check_single(self, item: Any, spec: dict[str, Any], where: str, profiles: set[str], out: list[str]) -> None:
        kind = spec["type"]
        if item is None:
            out.append(f"{where}: null (leave the attribute out instead)")
            return
        if kind in self.schema["objects"]:
            if not isinstance(item, dict):
                out.append(f"{where}: must be a {kind} object")
                return
            obj = self.schema["objects"][kind]
            constraints = self.errata.get(kind, obj.get("constraints"))
            self._check_object(item, obj["attributes"], constraints, where + ".", profiles, out)
            return
        if kind == "object" or kind == "json_t":
            return
        self._check_scalar(item, kind, where, out)
        enum = spec.get("enum")
        if enum and str(item) not in enum:
            out.append(f"{where}: {item!r} is not one of {sorted(enum, key=int)}")

    def _check_scalar(self, item: Any, kind: str, where: str, out: list[str]) -> None:
        types = self.schema["types"]
        chain = []
        name: str | None = kind
        while name is not None and name in types and name not in chain:
            chain.append(name)
            name = types[name].get("type")
        base = chain[-1] if chain else kind
        expected = _JSON_TYPES.get(base)
        if expected is None:
            out.append(f"{where}: unknown type {kind}")
            return
        if not isinstance(item, expected) or (bool not in expected and isinstance(item, bool)):
            out.append(f"{where}: {item!r} is not a {kind} ({base})")
            return
        for name in chain:
            t = types[name]
            if t.get("regex") and isinstance(item, str) and not re.search(t["regex"], item):
                out.append(f"{where}: {item!r} does not match {name}'s pattern")
            if t.get("max_len") and isinstance(item, str) and len(item) > int(t["max_len"]):
                out.append(f"{where}: longer than {name}'s max_len {t['max_len']}")
            if t.get("range") and not (t["range"][0] <= item <= t["range"][1]):
                out.append(f"{where}: {item} outside {name}'s range {t['range']}")
