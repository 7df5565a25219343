"""Page-number pagination with a client-chosen page size, capped by API_MAX_PAGE_SIZE."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class CappedPageNumberPagination(PageNumberPagination):
    """``?page=`` and ``?page_size=``; a larger page size is cut to the cap (published in capabilities)."""

    page_size = 50
    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int | None:
        self.max_page_size = int(settings.API_MAX_PAGE_SIZE)
        return super().get_page_size(request)
