"""The YAML file read strictly: duplicate keys, non-UTF-8 bytes and syntax errors named by position and key."""

from __future__ import annotations

import pytest

from audit_pipeline.config.yaml_file import key_path_at, parse_yaml
from audit_pipeline.core.errors import ConfigError


def test_a_key_given_twice_names_both_lines():
    text = b"retention:\n  legal_hold: true\nexport:\n  gzip: true\nretention:\n  database: 7d\n"
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "a.yaml")
    assert "key 'retention' is given twice, at lines 1 and 5" in str(caught.value)


def test_a_nested_duplicate_names_its_path():
    text = b"sinks:\n  webhooks:\n    - name: a\n      url: https://x\n      url: https://y\n"
    with pytest.raises(ConfigError, match=r"key 'sinks\.webhooks\[0\]\.url' is given twice, at lines 4 and 5"):
        parse_yaml(text, "a.yaml")


def test_non_utf8_names_line_and_key():
    text = "source:\n  table: audit_logs\nsinks:\n  splunk:\n    source: caf\xe9\n".encode("latin-1")
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "a.yaml")
    message = str(caught.value)
    assert "not UTF-8" in message and "line 5" in message and "sinks.splunk.source" in message
    assert "\n" not in message


def test_a_syntax_error_gives_position_and_key_but_never_the_line():
    text = b'sinks:\n  datadog:\n    api_key: "INLINE-SECRET-VALUE-0042\n    site: datadoghq.com\n'
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "a.yaml")
    message = str(caught.value)
    assert "INLINE-SECRET" not in message and "line" in message and "column" in message


def test_key_path_follows_indentation_and_list_items():
    text = "a:\n  b:\n    - x: 1\n    - y: 2\n      z: 3\nc: 4\n"
    assert key_path_at(text, 5) == "a.b[1].z"
    assert key_path_at(text, 6) == "c"


def test_audit_state_url_sets_the_state_database_over_the_file(tmp_path):
    from audit_pipeline.config.settings import load_settings

    config = tmp_path / "audit_pipeline.yaml"
    config.write_text(f"state_url: sqlite:///{tmp_path}/from-file.db\n")
    assert load_settings(config, env={}).state_url == f"sqlite:///{tmp_path}/from-file.db"
    settings = load_settings(config, env={"AUDIT_STATE_URL": f"sqlite:///{tmp_path}/from-env.db"})
    assert settings.resolved_state_url() == f"sqlite:///{tmp_path}/from-env.db"


@pytest.mark.parametrize("url", ["state.db", "http://db.internal/state", "postgresql//user:hunter2-pass@db/state"])
def test_a_state_url_that_is_not_a_database_url_names_the_variable_and_hides_the_value(workdir, url):
    from audit_pipeline.config.settings import load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(env={"AUDIT_STATE_URL": url})
    message = str(caught.value)
    assert message.startswith("AUDIT_STATE_URL (state_url): must be a SQLAlchemy database URL")
    assert "hunter2" not in message and "\n" not in message
