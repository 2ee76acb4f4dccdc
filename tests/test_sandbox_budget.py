"""How much output the grader keeps (autograder/sandbox/budget.py, iopub.py, execute.py), without a kernel.

The output budget's arithmetic, errors cut to size, and the IOPub channel that drops big messages unread, each
checked on its own; tests/test_sandbox_output.py checks them together on a real flood.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from autograder import sandbox

KERNEL = "lrdiff"

MIB = 1 << 20


def test_cell_budget_cuts_once_with_a_note() -> None:
    """Does a cell keep outputs up to its budget, cut the one that crosses it, note it once and keep
    nothing more, while the next cell starts afresh?"""
    b = sandbox.OutputBudget(2 * MIB, 20 * MIB)
    assert b.admit(0, MIB) == (MIB, None)
    keep, note = b.admit(0, 3 * MIB)
    assert keep == MIB and note == "[output truncated by the grader: more than 2 MB]\n"
    assert b.admit(0, 10) == (0, None)
    assert b.admit(1, MIB) == (MIB, None)


def test_notebook_budget() -> None:
    """Does the notebook stop keeping outputs past its budget, saying so, in every later cell?"""
    b = sandbox.OutputBudget(2 * MIB, 5 * MIB)
    for cell in range(2):
        assert b.admit(cell, 2 * MIB) == (2 * MIB, None)
    keep, note = b.admit(2, 2 * MIB)
    assert keep == MIB and "more than 5 MB in this notebook" in note
    assert b.admit(3, 10) == (0, b._note(False))


def test_evidence_exempt_from_cell_budget_only() -> None:
    """Is an evidence output of up to 1 MB kept in a cell over budget, counted against the notebook, and not
    pushed out by prints? Is a larger one treated as an ordinary output?"""
    b = sandbox.OutputBudget(2 * MIB, 6 * MIB)
    b.admit(0, 3 * MIB)  # the cell is over budget
    assert b.admit(0, MIB // 2, evidence=True) == (MIB // 2, None)
    assert b.admit(0, 2 * MIB, evidence=True) == (0, None)
    for cell in range(1, 4):
        b.admit(cell, 2 * MIB)  # prints fill the notebook
    assert b.admit(9, MIB, evidence=True) == (MIB, None)
    assert b.notebook_used >= 6 * MIB


def test_errors_always_kept_but_bounded() -> None:
    """Is an error kept past the budget (a failing cell must still fail), but only one per cell?"""
    b = sandbox.OutputBudget(2 * MIB, 20 * MIB)
    b.admit(0, 3 * MIB)
    assert b.admit_error(0, 60_000) and not b.admit_error(0, 60_000)
    assert b.admit_error(1, 60_000) and b.admit_error(1, 60_000)  # within budget: all kept


def test_clear_output_frees_the_budget() -> None:
    """Does clear_output give a cell (and the notebook) its budget back, so a progress display that
    redraws itself is never cut?"""
    b = sandbox.OutputBudget(2 * MIB, 3 * MIB)
    for _ in range(10):
        assert b.admit(0, MIB) == (MIB, None)
        b.cleared(0)
    assert b.notebook_used == 0


def test_truncate_error_keeps_name_and_last_frames() -> None:
    """Is a huge error cut to about the limit, keeping its name, the start of its value and the traceback's
    last entries (where the error is), while a normal one is untouched?"""
    small = {"ename": "ValueError", "evalue": "bad", "traceback": ["a", "b"]}
    sandbox.truncate_error(small, 64 << 10)
    assert small == {"ename": "ValueError", "evalue": "bad", "traceback": ["a", "b"]}
    big = {"ename": "ValueError", "evalue": "v" * 10**6, "traceback": [f"frame {i} " + "t" * 1000 for i in range(1000)]}
    sandbox.truncate_error(big, 64 << 10)
    assert big["ename"] == "ValueError" and big["evalue"].startswith("vvv")
    assert len(json.dumps(big)) < 80_000
    assert big["traceback"][-1].startswith("frame 999 ") and "cut by the grader" in big["traceback"][0]


def test_output_size_handles_deep_nesting() -> None:
    """Does measuring a deeply nested JSON output work (no recursion error)?"""
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    assert sandbox.output_size(deep) == 8 * 100_000 + 1


def test_execute_caps_messages_from_its_budgets() -> None:
    """Does the sandboxed Execute hand its kernel manager a message cap of twice its largest output, and its
    kernel client the capped IOPub channel?"""
    ex = sandbox.SandboxedExecute(kernel_name=KERNEL)
    km = ex.create_kernel_manager()
    assert km.max_message_mb == 2 * 2 + 0.25
    kc = km.client()
    assert isinstance(kc, sandbox.CappedKernelClient) and kc.max_message_bytes == int(4.25 * MIB)


async def exchange(sent: list[tuple[str, dict, dict]], exempt_mime: str = "") -> list[dict[str, Any]]:
    """Publish ``(msg_type, content, parent)`` messages; what a capped IOPub channel (1 MB, cell "cell-over"
    over budget) reads of them."""
    import zmq
    import zmq.asyncio
    from jupyter_client.session import Session

    ctx = zmq.asyncio.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    await asyncio.sleep(0.3)  # the subscription reaches the publisher
    session = Session(key=b"secret")
    channel = sandbox.CappedIOPubChannel(sub, session)
    channel.max_bytes = MIB
    channel.exempt_mime = exempt_mime
    channel.skip_parents.add("cell-over")
    for msg_type, content, par in sent:
        session.send(pub, msg_type, content, parent=par)
    got = [await channel.get_msg(timeout=10) for _ in sent]
    for s in (pub, sub):
        s.close(linger=0)
    ctx.term()
    return got


def test_capped_channel_drops_big_messages_unread() -> None:
    """Does the capped IOPub channel decode a small message, replace one over its cap by a stand-in (an error
    keeping its name and its cell), and drop the outputs of a cell over budget from the header alone?"""
    parent = {"msg_id": "cell-1"}
    sent = [
        ("stream", {"name": "stdout", "text": "hello"}, parent),
        ("stream", {"name": "stdout", "text": "x" * (3 * MIB)}, parent),
        ("error", {"traceback": ["t" * (2 * MIB)], "ename": "ValueError", "evalue": "v"}, parent),
        ("stream", {"name": "stdout", "text": "skipped"}, {"msg_id": "cell-over"}),
        ("status", {"execution_state": "idle"}, {"msg_id": "cell-over"}),
    ]
    small, big, error, skipped, status = asyncio.run(exchange(sent))
    assert small["content"]["text"] == "hello" and sandbox.DROPPED not in small
    assert big["msg_type"] == sandbox.DROPPED_TYPE and big[sandbox.DROPPED] > 3 * MIB
    assert big["parent_header"]["msg_id"] == "cell-1" and big["content"] == {}
    assert error["msg_type"] == "error" and error["content"]["ename"] == "ValueError"
    assert error["parent_header"]["msg_id"] == "cell-1"
    assert skipped["msg_type"] == sandbox.DROPPED_TYPE
    assert status["content"] == {"execution_state": "idle"}  # not an output: read whatever the budget


def test_capped_channel_reads_exempt_outputs_of_a_cell_over_budget() -> None:
    """Is a display holding the exempt MIME type read from a cell over budget, when (and only when) the channel
    is told that type, while the cell's prints are still dropped?"""
    over = {"msg_id": "cell-over"}
    sent = [
        ("display_data", {"data": {"application/x-kept": "{}"}, "metadata": {}}, over),
        ("stream", {"name": "stdout", "text": "application/x-kept"}, over),
    ]
    display, stream = asyncio.run(exchange(sent, exempt_mime="application/x-kept"))
    assert display["content"]["data"] == {"application/x-kept": "{}"} and sandbox.DROPPED not in display
    assert stream["msg_type"] == sandbox.DROPPED_TYPE
    (display,) = asyncio.run(exchange(sent[:1]))
    assert display["msg_type"] == sandbox.DROPPED_TYPE


def test_execute_privileges_no_mime_type_of_its_own() -> None:
    """Does the sandboxed Execute exempt no output from the cell budget unless configured (the course names its
    evidence), and recognise the configured type?"""
    assert sandbox.SandboxedExecute(kernel_name=KERNEL).evidence_mime == ""
    ex = sandbox.SandboxedExecute(kernel_name=KERNEL, evidence_mime="application/x-kept")
    assert ex._is_evidence({"data": {"application/x-kept": "{}"}})
    assert not ex._is_evidence({"data": {"text/plain": "x"}})
