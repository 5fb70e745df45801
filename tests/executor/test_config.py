"""Executor configuration from code and from the environment; keys never shown."""

from __future__ import annotations

import pytest

from relaybus.exceptions import ConfigError
from relaybus.executor import ExecutorConfig, ProviderConfig, TaskExecutor
from relaybus.secrets import Secret

KEY = "sk-test-0123456789abcdef"


def test_defaults_are_offline_echo() -> None:
    config = ExecutorConfig.from_env({})
    assert config.provider.kind == "echo"
    assert config.provider.model_name == "echo"
    assert config.max_concurrency == 100
    assert config.default_mode == "llm"
    assert config.fallback is None


def test_openai_compatible_server_from_env() -> None:
    config = ExecutorConfig.from_env(
        {
            "RELAYBUS_LLM_PROVIDER": "OpenAI",
            "RELAYBUS_LLM_MODEL": "llama3.1",
            "OPENAI_BASE_URL": "http://localhost:11434/v1/",
            "RELAYBUS_MAX_CONCURRENCY": "32",
            "RELAYBUS_LLM_RPM": "120",
            "RELAYBUS_API_ALLOWED_HOSTS": "API.example.com, localhost:8080",
        }
    )
    assert config.provider.kind == "openai"
    assert config.provider.model_name == "llama3.1"
    assert config.provider.url == "http://localhost:11434/v1"
    assert config.provider.secret is None  # a local server needs no key
    assert config.provider.requests_per_minute == 120
    assert config.max_concurrency == 32
    assert config.api_allowed_hosts == frozenset({"api.example.com", "localhost:8080"})


def test_fallback_provider_from_env() -> None:
    config = ExecutorConfig.from_env(
        {"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_API_KEY": KEY, "RELAYBUS_LLM_FALLBACK_PROVIDER": "echo"}
    )
    assert config.fallback is not None
    assert config.fallback.kind == "echo"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RELAYBUS_LLM_PROVIDER": "gpt5"}, "unknown LLM provider 'gpt5'"),
        ({"RELAYBUS_MAX_CONCURRENCY": "many"}, "RELAYBUS_MAX_CONCURRENCY must be a positive integer"),
        ({"RELAYBUS_MAX_CONCURRENCY": "0"}, "RELAYBUS_MAX_CONCURRENCY"),
        ({"RELAYBUS_ECHO_LATENCY_S": "-1"}, "RELAYBUS_ECHO_LATENCY_S"),
        ({"RELAYBUS_LLM_PROVIDER": "openai"}, "set OPENAI_API_KEY"),
        ({"RELAYBUS_LLM_PROVIDER": "anthropic"}, "set ANTHROPIC_API_KEY"),
        ({"RELAYBUS_API_ALLOWED_HOSTS": "https://x.com/"}, "not URLs"),
        ({"RELAYBUS_HTTP_TRANSPORT": "curl"}, "RELAYBUS_HTTP_TRANSPORT"),
    ],
)
def test_bad_environment_names_the_variable_and_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExecutorConfig.from_env(env)


def test_keys_never_appear_in_reprs() -> None:
    config = ExecutorConfig.from_env(
        {
            "RELAYBUS_LLM_PROVIDER": "anthropic",
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": "http://u:pw@h/",
        }
    )
    assert config.provider.secret == Secret(KEY)
    executor = TaskExecutor(config)
    for text in (repr(config), str(config), repr(executor), repr(executor.llm), repr(executor.llm.primary)):
        assert KEY not in text
        assert ":pw@" not in text
    assert config.provider.describe() == "anthropic/claude-3-5-haiku-latest@http://u:***@h"


def test_api_key_given_as_str_is_wrapped() -> None:
    provider = ProviderConfig(kind="openai", api_key=KEY)
    assert isinstance(provider.api_key, Secret)
    assert KEY not in repr(provider)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrency": 0}, {"default_timeout_s": 0}, {"max_tokens": 0}, {"http_transport": "curl"}],
)
def test_bad_config_values_raise_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ExecutorConfig(**kwargs)  # type: ignore[arg-type]
