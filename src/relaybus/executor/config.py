"""Configuration of a :class:`~relaybus.executor.TaskExecutor`: plain frozen dataclasses, or the environment.

The environment is read only by :meth:`ExecutorConfig.from_env` (which ``TaskExecutor()`` without arguments
calls). Variables, all optional:

=============================  ===============================================================================
``RELAYBUS_LLM_PROVIDER``      ``echo`` (default, offline), ``openai`` (any OpenAI-compatible server) or
                               ``anthropic``
``RELAYBUS_LLM_MODEL``         model name (defaults: ``echo``, ``gpt-4o-mini``, ``claude-3-5-haiku-latest``)
``OPENAI_BASE_URL``            e.g. ``http://localhost:11434/v1`` (Ollama) or ``http://localhost:8000/v1``
``OPENAI_API_KEY``             needed for api.openai.com; optional for local servers
``ANTHROPIC_API_KEY``          needed for api.anthropic.com
``ANTHROPIC_BASE_URL``         default ``https://api.anthropic.com``
``RELAYBUS_LLM_FALLBACK_PROVIDER``  a provider used when the first keeps failing (same variables for it)
``RELAYBUS_LLM_FALLBACK_MODEL``     the fallback's model
``RELAYBUS_LLM_RPM`` / ``RELAYBUS_LLM_TPM``  requests / tokens per minute allowed to the provider
``RELAYBUS_MAX_CONCURRENCY``   tasks running at once in this executor (default 100)
``RELAYBUS_TASK_TIMEOUT_S``    timeout of a task without ``timeout_s`` (default 300)
``RELAYBUS_ECHO_LATENCY_S``    simulated latency of the echo provider (default 0)
``RELAYBUS_API_ALLOWED_HOSTS`` comma-separated hosts the ``api`` mode may call (default: none)
``RELAYBUS_HTTP_TRANSPORT``    ``aiohttp`` (default) or ``httpx``: the transport under the shared httpx client
``RELAYBUS_LLM_MAX_TOKENS_FIELD``  ``auto`` (default), ``max_tokens`` or ``max_completion_tokens``: the field
                               that carries the token budget to an OpenAI-compatible server
=============================  ===============================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from relaybus.exceptions import ConfigError
from relaybus.secrets import Secret, mask_url

from .retry import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URLS",
    "DEFAULT_MODELS",
    "MAX_TOKENS_FIELDS",
    "PROVIDER_KINDS",
    "ExecutorConfig",
    "ProviderConfig",
    "normalize_hosts",
]

PROVIDER_KINDS = ("echo", "openai", "anthropic")
DEFAULT_MODELS = {"echo": "echo", "openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
_KEY_VARS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
MiB = 1024 * 1024

Transport = Literal["aiohttp", "httpx"]
MaxTokensField = Literal["auto", "max_tokens", "max_completion_tokens"]
MAX_TOKENS_FIELDS: tuple[MaxTokensField, ...] = ("auto", "max_tokens", "max_completion_tokens")


@dataclass(frozen=True, repr=False)
class ProviderConfig:
    """One LLM provider. ``api_key`` may be given as a ``str``; it is kept as a :class:`Secret`.

    A key is required for the providers' own public endpoints and optional for any other ``base_url`` (a local
    vLLM, Ollama, llama.cpp or LM Studio server, or :class:`relaybus.testing.FakeLLMServer`).
    ``max_tokens_field`` (OpenAI-compatible only): ``auto`` sends ``max_completion_tokens`` to api.openai.com
    (its newer models refuse ``max_tokens``) and ``max_tokens`` elsewhere (what local servers read).
    """

    kind: str = "echo"
    model: str | None = None
    base_url: str | None = None
    api_key: Secret | str | None = field(default=None)
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    echo_latency_s: float = 0.0
    max_tokens_field: MaxTokensField = "auto"

    def __post_init__(self) -> None:
        if self.kind not in PROVIDER_KINDS:
            raise ConfigError(
                f"unknown LLM provider {self.kind!r}: use one of {', '.join(PROVIDER_KINDS)} "
                "(RELAYBUS_LLM_PROVIDER or ProviderConfig(kind=...))"
            )
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", Secret(self.api_key) if self.api_key else None)
        if self.max_tokens_field not in MAX_TOKENS_FIELDS:
            raise ConfigError(
                f"max_tokens_field must be one of {', '.join(MAX_TOKENS_FIELDS)} "
                f"(RELAYBUS_LLM_MAX_TOKENS_FIELD), got {self.max_tokens_field!r}"
            )
        if self.echo_latency_s < 0:
            raise ConfigError(f"echo_latency_s must not be negative, got {self.echo_latency_s}")
        for label, value in (
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
        ):
            if value is not None and value <= 0:
                raise ConfigError(f"{label} must be positive (or None for no limit), got {value}")
        default_url = DEFAULT_BASE_URLS.get(self.kind)
        if default_url and not self.api_key and self.url.rstrip("/") == default_url:
            raise ConfigError(
                f"the {self.kind} provider at {default_url} needs an API key: set {_KEY_VARS[self.kind]} "
                f"(or ProviderConfig(api_key=...)), or point base_url at a local server"
            )

    def __repr__(self) -> str:
        return (
            f"ProviderConfig(kind={self.kind!r}, model={self.model_name!r}, base_url={mask_url(self.url)!r}, "
            f"api_key={self.api_key!r}, requests_per_minute={self.requests_per_minute}, "
            f"tokens_per_minute={self.tokens_per_minute}, echo_latency_s={self.echo_latency_s}, "
            f"max_tokens_field={self.max_tokens_field!r})"
        )

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODELS[self.kind]

    @property
    def url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS.get(self.kind, "")).rstrip("/")

    @property
    def secret(self) -> Secret | None:
        return self.api_key if isinstance(self.api_key, Secret) else None

    def describe(self) -> str:
        """``kind/model@url`` for logs (the URL with any password masked; never the key)."""
        where = f"@{mask_url(self.url)}" if self.url else ""
        return f"{self.kind}/{self.model_name}{where}"


def normalize_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """Lower-cased ``host`` or ``host:port`` entries; refuses URLs and empty names with a clear error."""
    result: set[str] = set()
    for raw in hosts:
        host = raw.strip().lower()
        if not host:
            continue
        if "/" in host or "@" in host or " " in host:
            raise ConfigError(
                f"api_allowed_hosts entries are host names like 'api.example.com' or 'localhost:8080', "
                f"not URLs: got {raw!r}"
            )
        result.add(host)
    return frozenset(result)


@dataclass(frozen=True)
class ExecutorConfig:
    """Everything a :class:`~relaybus.executor.TaskExecutor` needs; every field has a usable default.

    ``default_timeout_s`` applies to tasks without ``timeout_s``; the timeout counts from the moment a task
    gets one of the ``max_concurrency`` slots and excludes waiting for a rate limiter. ``max_connections``
    (default: ``max_concurrency``) caps the shared HTTP client's connection pool.
    """

    provider: ProviderConfig = field(default_factory=ProviderConfig)
    fallback: ProviderConfig | None = None
    default_mode: str = "llm"
    max_concurrency: int = 100
    default_timeout_s: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_tokens: int = 1024
    temperature: float | None = None
    http_transport: Transport = "aiohttp"
    max_connections: int | None = None
    connect_timeout_s: float = 10.0
    api_allowed_hosts: frozenset[str] = frozenset()
    api_max_response_bytes: int = MiB
    script_max_output_bytes: int = MiB
    fallback_after_failures: int = 3
    primary_cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_allowed_hosts", normalize_hosts(self.api_allowed_hosts))
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1 (or None), got {self.max_connections}")
        if self.default_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ConfigError("default_timeout_s and connect_timeout_s must be positive")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.http_transport not in ("aiohttp", "httpx"):
            raise ConfigError(f"http_transport must be 'aiohttp' or 'httpx', got {self.http_transport!r}")
        if self.api_max_response_bytes < 1 or self.script_max_output_bytes < 1:
            raise ConfigError("api_max_response_bytes and script_max_output_bytes must be positive")

    @property
    def pool_size(self) -> int:
        return self.max_connections or self.max_concurrency

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ExecutorConfig:
        """A config from environment variables (see the module docstring); bad values raise ConfigError."""
        kind = env.get("RELAYBUS_LLM_PROVIDER", "echo").strip().lower() or "echo"
        provider = _provider_from_env(
            kind,
            env.get("RELAYBUS_LLM_MODEL"),
            env,
            rpm=_float(env, "RELAYBUS_LLM_RPM", None),
            tpm=_float(env, "RELAYBUS_LLM_TPM", None),
        )
        fallback_kind = env.get("RELAYBUS_LLM_FALLBACK_PROVIDER", "").strip().lower()
        fallback = (
            _provider_from_env(fallback_kind, env.get("RELAYBUS_LLM_FALLBACK_MODEL"), env, rpm=None, tpm=None)
            if fallback_kind
            else None
        )
        transport = env.get("RELAYBUS_HTTP_TRANSPORT", "aiohttp").strip().lower()
        if transport not in ("aiohttp", "httpx"):
            raise ConfigError(f"RELAYBUS_HTTP_TRANSPORT must be 'aiohttp' or 'httpx', got {transport!r}")
        return cls(
            provider=provider,
            fallback=fallback,
            max_concurrency=_int(env, "RELAYBUS_MAX_CONCURRENCY", 100),
            default_timeout_s=_float(env, "RELAYBUS_TASK_TIMEOUT_S", 300.0) or 300.0,
            api_allowed_hosts=normalize_hosts(env.get("RELAYBUS_API_ALLOWED_HOSTS", "").split(",")),
            http_transport="httpx" if transport == "httpx" else "aiohttp",
        )


def _provider_from_env(
    kind: str, model: str | None, env: Mapping[str, str], *, rpm: float | None, tpm: float | None
) -> ProviderConfig:
    key_var = _KEY_VARS.get(kind)
    url_var = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}.get(kind)
    max_tokens_field = env.get("RELAYBUS_LLM_MAX_TOKENS_FIELD", "").strip().lower() or "auto"
    return ProviderConfig(
        kind=kind,
        model=(model or "").strip() or None,
        base_url=(env.get(url_var) or None) if url_var else None,
        api_key=Secret(env[key_var]) if key_var and env.get(key_var) else None,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        echo_latency_s=(_float(env, "RELAYBUS_ECHO_LATENCY_S", 0.0, allow_zero=True) or 0.0)
        if kind == "echo"
        else 0.0,
        max_tokens_field=cast(MaxTokensField, max_tokens_field),  # ProviderConfig checks the value
    )


def _float(
    env: Mapping[str, str], name: str, default: float | None, *, allow_zero: bool = False
) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 or (allow_zero and value == 0)) or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds or units, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)
