"""Resolve a block given as an object, a saved document name, or nothing (the default)."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.blocks.core import Block

from prefect_mltrain.errors import ConfigurationError

B = TypeVar("B", bound=Block)


def saved_names(block_cls: type[Block]) -> list[str]:
    """Names of the saved documents of `block_cls`'s type, sorted."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            docs = client.read_block_documents_by_type(block_type_slug=block_cls.get_block_type_slug())
        except Exception:  # the type was never registered: no documents
            return []
    return sorted(doc.name for doc in docs if doc.name and not doc.is_anonymous)


def resolve_block(value: B | str | None, block_cls: type[B], parameter: str) -> B:
    """Return `value` as a `block_cls` instance.

    Args:
        value: An instance, the name of a saved document, or None for `block_cls()`.
        block_cls: The expected block class.
        parameter: The argument name, used in the error message.

    Raises:
        ConfigurationError: No document of that name exists; the message lists the saved ones.
    """
    if value is None:
        return block_cls()
    if isinstance(value, block_cls):
        return value
    if isinstance(value, str):
        try:
            return cast(B, block_cls.load(value))
        except ValueError:
            names = saved_names(block_cls)
            listed = ", ".join(repr(n) for n in names) if names else "none"
            raise ConfigurationError(
                f"`{parameter}`={value!r} names no saved {block_cls.__name__} block "
                f"(saved ones: {listed}). Fix: save one with "
                f"`{block_cls.__name__}(...).save({value!r})`, or pass one of the saved names."
            ) from None
    raise ConfigurationError(
        f"`{parameter}` must be a {block_cls.__name__}, the name of a saved one, or None, "
        f"but got {type(value).__name__}: {value!r}."
    )
