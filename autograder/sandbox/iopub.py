"""The kernel client's IOPub (output) channel, which never decodes a message larger than a few MB.

A message dropped unread becomes a small stand-in (:func:`_stand_in`, marked with :data:`~.budget.DROPPED`)
that :class:`~autograder.sandbox.execute.SandboxedExecute` counts against the cell's output budget.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import DELIM
from traitlets import Int, Type

from .budget import DROPPED, DROPPED_TYPE, MIB

_MAX_HEADER_BYTES = 64 << 10
#: Message types whose content nbclient keeps as a cell's output (an error is kept whatever the budget).
_OUTPUT_TYPES = frozenset({"stream", "display_data", "execute_result", "update_display_data"})
_ENAME = re.compile(rb'"ename"\s*:\s*"([A-Za-z_][A-Za-z0-9_.]{0,99})"')


@functools.lru_cache(maxsize=8)
def _json_key(mime: str) -> re.Pattern[bytes]:
    """Finds ``mime`` as a JSON string in a serialized message's content."""
    return re.compile(re.escape(json.dumps(mime)).encode())


def _headers(session: Any, parts: list[Any]) -> tuple[dict, dict]:
    """A message's header and parent header when both are small and decode to dicts, else empty dicts."""
    header: Any = {}
    parent: Any = {}
    if len(parts) >= 3 and len(parts[1]) <= _MAX_HEADER_BYTES and len(parts[2]) <= _MAX_HEADER_BYTES:
        try:
            header, parent = session.unpack(parts[1].bytes), session.unpack(parts[2].bytes)
        except Exception:  # noqa: BLE001 (any undecodable header: the message is dropped, parentless)
            header, parent = {}, {}
    return (header if isinstance(header, dict) else {}), (parent if isinstance(parent, dict) else {})


def _stand_in(session: Any, parts: list[Any], size: int, why: str) -> dict[str, Any]:
    """A small message in place of one dropped unread (``parts``: its frames after the delimiter).

    Its parent header is read when small, so that nbclient files it under the right cell. An error stays an
    error (its name read from the first 4 KB when it can be); anything else becomes :data:`DROPPED_TYPE`.
    """
    header, parent = _headers(session, parts)
    if header.get("msg_type") == "error":
        # ipykernel writes the traceback first: the name may be far in (searched without copying the frame)
        found = _ENAME.search(parts[4].buffer) if len(parts) > 4 else None
        ename = found.group(1).decode() if found else "Error"
        text = f"(an error message of {size / MIB:.1f} MB, {why}: dropped unread by the grader)"
        msg_type, content = "error", {"ename": ename, "evalue": text, "traceback": [f"{ename}: {text}"]}
    else:
        msg_type, content = DROPPED_TYPE, {}
    msg_id = header.get("msg_id") if isinstance(header.get("msg_id"), str) else ""
    return {
        "header": {"msg_id": msg_id[:100], "msg_type": msg_type},
        "parent_header": parent,
        "msg_id": msg_id[:100],
        "msg_type": msg_type,
        "metadata": {},
        "content": content,
        "buffers": [],
        DROPPED: size,
    }


def _malformed(msg: dict[str, Any]) -> bool:
    """Is a decoded message not shaped like one nbclient can handle?"""
    return (
        not isinstance(msg.get("msg_type"), str)
        or len(msg["msg_type"]) > 64
        or not isinstance(msg.get("content"), dict)
        or not isinstance(msg.get("parent_header"), dict)
    )


class CappedIOPubChannel(AsyncZMQSocketChannel):
    """The IOPub channel (outputs), which never decodes a message larger than ``max_bytes``.

    Such a message is read as far as its size (ZeroMQ has already received it: that memory is freed as soon as
    it is dropped) and replaced by a small stand-in (see :func:`_stand_in`), which SandboxedExecute counts
    against the cell's budget. So is a message that cannot be decoded. ``max_bytes = 0``: no cap.
    """

    max_bytes = 0
    #: Outputs holding this MIME type are read even from a cell in ``skip_parents`` (they are exempt from the
    #: cell budget); '' = none. SandboxedExecute sets it (its ``evidence_mime``).
    exempt_mime = ""
    #: Message ids of requests (cells) whose outputs are dropped anyway (over budget): their outputs are dropped
    #: here, from the header alone, so that a flood costs the grader almost nothing (SandboxedExecute adds them).
    skip_parents: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_parents = set()

    def _skipped(self, parts: list[Any]) -> bool:
        if not self.skip_parents or len(parts) < 3 or any(len(f) > _MAX_HEADER_BYTES for f in parts[1:3]):
            return False
        try:
            header, parent = self.session.unpack(parts[1].bytes), self.session.unpack(parts[2].bytes)
            if parent.get("msg_id") not in self.skip_parents or header.get("msg_type") not in _OUTPUT_TYPES:
                return False
        except Exception:  # noqa: BLE001 (deserialize decides what to do with it)
            return False
        # an exempt output is not bound by the cell budget: read a display that may hold one
        exempt = bool(self.exempt_mime) and header["msg_type"] != "stream" and len(parts) > 4
        return not (exempt and _json_key(self.exempt_mime).search(parts[4].buffer))

    async def _recv(self, **kwargs: Any) -> dict[str, Any]:
        assert self.socket is not None
        kwargs["copy"] = False  # zmq Frames: their size is known without copying them into Python
        frames = await self.socket.recv_multipart(**kwargs)
        delim = next((i for i, f in enumerate(frames) if len(f) == len(DELIM) and f.bytes == DELIM), None)
        if delim is None:
            return _stand_in(self.session, [], sum(len(f) for f in frames), "malformed")
        parts = frames[delim + 1 :]
        size = sum(len(f) for f in parts)
        if self.max_bytes and (size > self.max_bytes or any(len(f) > _MAX_HEADER_BYTES for f in parts[1:4])):
            return _stand_in(self.session, parts, size, f"more than {self.max_bytes / MIB:g} MB")
        if self._skipped(parts):
            return _stand_in(self.session, parts, size, "over the output budget")
        try:
            msg = self.session.deserialize([f.bytes for f in parts])
        except Exception:  # noqa: BLE001 (bad signature, bad JSON, nesting too deep: whatever the kernel sent)
            return _stand_in(self.session, parts, size, "not a valid message")
        if _malformed(msg):
            return _stand_in(self.session, parts, size, "not a valid message")
        return msg


class CappedKernelClient(AsyncKernelClient):
    """nbclient's kernel client with a :class:`CappedIOPubChannel` (``max_message_bytes``, 0 = no cap)."""

    iopub_channel_class = Type(CappedIOPubChannel)  # type: ignore[assignment]
    max_message_bytes = Int(0, help="IOPub messages larger than this are dropped unread; 0 = no cap.").tag(
        config=True
    )

    @property
    def iopub_channel(self) -> Any:
        channel = super().iopub_channel
        if isinstance(channel, CappedIOPubChannel):
            channel.max_bytes = self.max_message_bytes
        return channel
