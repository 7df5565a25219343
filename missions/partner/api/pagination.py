"""Page-number pagination with a client-chosen page size, capped by API_MAX_PAGE_SIZE."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from missions.partner.api.query import IntegerQuery

PAGE = IntegerQuery("page", 1, None, "The page to return, from 1; a page past the last is 404.")
PAGE_SIZE = IntegerQuery(
    "page_size",
    1,
    None,
    "Results per page (default 50); a value above `limits.max_page_size` in capabilities is cut to it.",
)


class CappedPageNumberPagination(PageNumberPagination):
    """``?page=`` and ``?page_size=``; a larger page size is cut to the cap (published in capabilities).

    Both are parsed strictly (``missions.partner.api.query``): DRF's own parsing
    would serve the default page size for ``page_size=abc`` or ``page_size=0``.
    """

    page_size = 50
    page_size_query_param = PAGE_SIZE.name
    page_query_param = PAGE.name
    last_page_strings = ()  # "?page=last" is not in the schema: the page is a number

    def get_page_size(self, request: Request) -> int | None:
        self.max_page_size = int(settings.API_MAX_PAGE_SIZE)
        return min(PAGE_SIZE.parse(request, default=self.page_size), self.max_page_size)

    def get_page_number(self, request: Request, paginator: Paginator[Any]) -> int:
        return PAGE.parse(request, default=1)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": query.name,
                "required": False,
                "in": "query",
                "description": query.description,
                "schema": query.schema(),
            }
            for query in (PAGE, PAGE_SIZE)
        ]
