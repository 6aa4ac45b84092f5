"""Settings: YAML plus environment, clear errors naming the key, and a key that never shows."""

import pytest

from triage.settings import ConfigError, load_settings

SECRET = "sk-live-0123456789abcdef"


def write(tmp_path, text):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_defaults_triage_group_priority_type_in_shadow_mode(tmp_path):
    settings = load_settings(write(tmp_path, "{}"))
    assert settings.pipeline.mode == "shadow"
    assert settings.enabled_fields() == ["group", "priority", "type"]
    assert settings.fields["priority"].requires == ["group"]


def test_environment_overrides_file_key_by_key(tmp_path, monkeypatch):
    path = write(tmp_path, "pipeline:\n  mode: suggest\n  overlap_seconds: 30\n")
    monkeypatch.setenv("TRIAGE_PIPELINE__MODE", "apply")
    monkeypatch.setenv("TRIAGE_FIELDS__PRIORITY__APPLY_THRESHOLD", "0.8")
    settings = load_settings(path)
    assert settings.pipeline.mode == "apply"
    assert settings.pipeline.overlap_seconds == 30  # untouched by the env
    assert settings.fields["priority"].apply_threshold == 0.8
    assert set(settings.fields) == {"group", "priority", "type"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pipeline:\n  mode: aply\n", "pipeline.mode"),
        ("pipeline:\n  moed: apply\n", "pipeline.moed: unknown key"),
        ("fields:\n  group:\n    apply_threshold: 1.5\n", "fields.group.apply_threshold"),
        ("fields:\n  priority:\n    requires: [groop]\n", "groop"),
        ("model: [1, 2]\n", "model"),
        ("- just a list\n", "top level must be a mapping"),
        ("pipeline: {mode: [\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert expected in str(info.value)


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yml")


def test_api_key_from_environment_is_never_rendered(tmp_path, monkeypatch):
    monkeypatch.setenv("FRESHDESK_API_KEY", SECRET)
    settings = load_settings(write(tmp_path, "ticket_system:\n  freshdesk_domain: acme\n"))
    options = settings.ticket_system.adapter_options()
    assert options["freshdesk_api_key"].get_secret_value() == SECRET
    for rendering in (repr(settings), str(settings), settings.model_dump_json(), str(options)):
        assert SECRET not in rendering


@pytest.mark.parametrize("tag", ["ai,triaged", "x" * 33])
def test_a_triaged_tag_freshdesk_would_refuse_fails_at_start(tmp_path, tag):
    with pytest.raises(ConfigError, match=r"pipeline\.triaged_tag"):
        load_settings(write(tmp_path, f"pipeline:\n  triaged_tag: '{tag}'\n"))


def test_a_yaml_error_on_the_key_line_does_not_echo_the_key(tmp_path):
    path = write(tmp_path, f"ticket_system:\n  freshdesk_domain: acme\n  freshdesk_api_key: {SECRET}: x\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "not valid YAML" in message and "line 3" in message
    assert SECRET not in message and SECRET[:8] not in message


def test_a_yaml_error_naming_an_alias_does_not_echo_it(tmp_path):
    path = write(tmp_path, f"ticket_system:\n  freshdesk_api_key: *{SECRET}\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_settings(path)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", b"pipeline:\n  mode: \x00\n"])
def test_a_binary_config_file_is_a_config_error(tmp_path, content):
    path = tmp_path / "config.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"config\.yml"):
        load_settings(path)


def test_the_deployment_variables_of_prefect_yaml_are_not_taken_for_settings(tmp_path, monkeypatch):
    """A worker's environment carries TRIAGE_HOME (the pull step) and may carry TRIAGE_WORK_POOL."""
    monkeypatch.setenv("TRIAGE_HOME", str(tmp_path))
    monkeypatch.setenv("TRIAGE_WORK_POOL", "triage")
    monkeypatch.setenv("TRIAGE_PIPELINE__MODE", "suggest")
    assert load_settings(write(tmp_path, "{}")).pipeline.mode == "suggest"
    monkeypatch.setenv("TRIAGE_PIPELINE_MODE", "apply")  # a typo is still named
    with pytest.raises(ConfigError, match="pipeline_mode"):
        load_settings(write(tmp_path, "{}"))
