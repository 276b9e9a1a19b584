"""What the generated resources build on: the transport they call and the iterators of list operations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

if TYPE_CHECKING:
    from licentric_sdk._transport import AsyncTransport, SyncTransport

T = TypeVar("T")


class SyncResource:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport


class AsyncResource:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport


class _Pages:
    """A list operation's query, and the cursor that moves it on: the last object's `cursor` field."""

    def __init__(
        self,
        operation_id: str,
        *,
        path: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        cursor: str = "id",
    ) -> None:
        self._operation_id = operation_id
        self._path = path
        self._query = dict(query or {})
        self._cursor = cursor

    def _next(self, page: Any) -> dict[str, Any] | None:
        """The query of the page after this one, or None at the end."""
        if not page.has_more or not page.data:
            return None
        # Walking backwards (ending_before given) is a single page's business, not the iterator's.
        if self._query.get("ending_before") not in (None, msgspec.UNSET):
            return None
        return {**self._query, "starting_after": getattr(page.data[-1], self._cursor)}


class Pager(_Pages, Generic[T]):
    """Every object of a list, fetched page by page as the iteration reaches it
    (`limit` is the page size): `for license in client.licenses.list(status="active"): …`."""

    def __init__(self, transport: SyncTransport, operation_id: str, **options: Any) -> None:
        super().__init__(operation_id, **options)
        self._transport = transport

    def pages(self) -> Iterator[Any]:
        query: dict[str, Any] | None = self._query
        while query is not None:
            page = self._transport.request(self._operation_id, path=self._path, query=query)
            yield page
            query = self._next(page)

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.data


class AsyncPager(_Pages, Generic[T]):
    """The async Pager: `async for license in client.licenses.list(): …`."""

    def __init__(self, transport: AsyncTransport, operation_id: str, **options: Any) -> None:
        super().__init__(operation_id, **options)
        self._transport = transport

    async def pages(self) -> AsyncIterator[Any]:
        query: dict[str, Any] | None = self._query
        while query is not None:
            page = await self._transport.request(self._operation_id, path=self._path, query=query)
            yield page
            query = self._next(page)

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.data:
                yield item
