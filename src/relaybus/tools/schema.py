"""A function's arguments as a pydantic model: the JSON schema the model is shown, and a call's validation."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    ValidationError,
    create_model,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from pydantic_core import CoreSchema

from relaybus.exceptions import ConfigError

__all__ = ["ArgumentsModel", "describe_function", "format_validation_error", "json_schema_of"]

_MAX_REPORTED_ERRORS = 5
_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters|Params):\s*$")
_GOOGLE_ARG = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_ARG = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


class _WithoutGeneratedTitles(GenerateJsonSchema):
    """pydantic's JSON schema without the titles it makes up ("A" for ``a``): tokens the model needs not."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> dict[str, Any]:
        generated = super().generate(schema, mode)
        generated.pop("title", None)
        return generated


def json_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as a tool's parameters (no generated titles; nested models under ``$defs``)."""
    return model.model_json_schema(schema_generator=_WithoutGeneratedTitles)


def format_validation_error(exc: ValidationError) -> str:
    """pydantic's reasons, short: ``b: Input should be a valid integer (got 'x'); c: Field required``."""
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:_MAX_REPORTED_ERRORS]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        part = f"{where}: {error['msg']}"
        if error["type"] not in ("missing", "extra_forbidden") and "input" in error:
            shown = repr(error["input"])
            part += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
        parts.append(part)
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def describe_function(func: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The first paragraph of ``func``'s docstring (lines joined), and the arguments it documents in an
    ``Args:`` section (Google style) or as ``:param name:`` lines (Sphinx style)."""
    doc = inspect.getdoc(func) or ""
    paragraphs = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)
    summary = " ".join(line.strip() for line in paragraphs[0].splitlines()) if doc.strip() else ""
    if _ARGS_HEADER.match(summary) or summary.startswith(":param"):
        summary = ""  # no summary at all, the docstring starts with its arguments
    return summary, _documented_arguments(doc)


def _documented_arguments(doc: str) -> dict[str, str]:
    found: dict[str, str] = {}
    section_indent: int | None = None  # indent of the "Args:" header while inside that section
    arg_indent: int | None = None
    current: str | None = None
    for raw in doc.splitlines():
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        sphinx = _SPHINX_ARG.match(line)
        if sphinx:
            found[sphinx.group(1)] = sphinx.group(2).strip()
            section_indent = current = None
            continue
        if _ARGS_HEADER.match(line):
            section_indent, arg_indent, current = indent, None, None
            continue
        if not line:
            continue
        if section_indent is not None and indent <= section_indent:
            section_indent = current = None  # the next section (Returns:, Raises:, ...) started
        if section_indent is None:
            continue
        google = _GOOGLE_ARG.match(line)
        if google and (arg_indent is None or indent == arg_indent):
            arg_indent, current = indent, google.group(1).lstrip("*")
            found[current] = google.group(3).strip()
        elif current is not None:
            found[current] = f"{found[current]} {line}"
    return found


class ArgumentsModel:
    """The arguments of ``func`` as a pydantic model built from its signature (``create_model``).

    ``parameters`` is its JSON schema (``{"type": "object", "properties": ..., "required": ...,
    "additionalProperties": false}``); :meth:`validate` turns the model's arguments into the positional and
    keyword arguments of a call, with nested pydantic models as instances. Raises :class:`ConfigError` for a
    parameter without a type annotation, for ``*args`` / ``**kwargs`` and for a type pydantic has no schema
    for. Fields are named ``p0, p1, ...`` with the parameter names as aliases, so a parameter may be called
    ``json``, ``schema`` or ``model_config`` without clashing with pydantic's own attributes.
    """

    def __init__(self, func: Callable[..., Any], owner: str, descriptions: Mapping[str, str]) -> None:
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except (NameError, TypeError) as exc:
            raise ConfigError(
                f"{owner}: cannot resolve the type annotations ({exc}); define the types they use at module "
                "level"
            ) from None
        self._params = list(inspect.signature(func).parameters.values())
        fields: dict[str, Any] = {}
        for index, param in enumerate(self._params):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigError(
                    f"{owner}: *{param.name} / **{param.name} cannot be described to a model; "
                    "list the arguments the tool takes one by one"
                )
            if param.name not in hints:
                raise ConfigError(
                    f"{owner}: parameter {param.name!r} has no type annotation; annotate it "
                    f"(e.g. {param.name}: str) so the model is told what to send"
                )
            annotation = hints[param.name]
            default = ... if param.default is param.empty else param.default
            extra: dict[str, Any] = {}
            if param.name in descriptions and not _has_description(annotation):
                extra["description"] = descriptions[param.name]  # an explicit None would hide Annotated's
            fields[f"p{index}"] = (annotation, Field(default, alias=param.name, **extra))
        try:
            self.model: type[BaseModel] = create_model(
                f"{owner}_arguments",
                __config__=ConfigDict(extra="forbid"),
                **fields,
            )
            self.parameters = json_schema_of(self.model)
        except (PydanticSchemaGenerationError, TypeError) as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"{owner}: an argument's type has no JSON schema ({reason})") from None

    def validate(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]] | str:
        """The call's ``(args, kwargs)``, or pydantic's reasons why ``arguments`` do not fit the schema."""
        try:
            instance = self.model.model_validate(arguments)
        except ValidationError as exc:
            return format_validation_error(exc)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for index, param in enumerate(self._params):
            value = getattr(instance, f"p{index}")
            if param.kind is param.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[param.name] = value
        return args, kwargs


def _has_description(annotation: Any) -> bool:
    if typing.get_origin(annotation) is not typing.Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in typing.get_args(annotation)[1:])
