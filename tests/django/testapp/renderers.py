from __future__ import annotations

from typing import Any

from rest_framework.renderers import BaseRenderer


class TextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> bytes:
        return f"{data['id']}: {data['title']}".encode()
