"""docs/identity.md's promises: its Node.js snippet mints tokens gatekeeper accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from gatekeeper.enqueue import EnqueueClaim, verify_enqueue_token

DOC = Path(__file__).resolve().parent.parent / "docs" / "identity.md"
KEY = "site-secret-0123456789"


def snippet() -> str:
    blocks = re.findall(r"```js\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_documented_node_snippet_mints_tokens_that_verify():
    node = shutil.which("node")
    assert node is not None, "Node.js is a test dependency (scripts/system-deps.sh)"
    calls = [("presale", "u-1842", 0), ("presale", "zoë ✓", 10)]
    script = snippet() + "".join(
        f"console.log(enqueueToken({json.dumps(KEY)}, {json.dumps(room)}, "
        f"{json.dumps(user)}, 600, {priority}));\n"
        for room, user, priority in calls
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    tokens = out.stdout.split()
    now = int(time.time())
    for token, (room, user, priority) in zip(tokens, calls, strict=True):
        claim = verify_enqueue_token([KEY], token, room=room, now_s=now)
        assert isinstance(claim, EnqueueClaim)
        assert (claim.user_id, claim.priority) == (user, priority)
        assert now + 590 <= claim.expires_s <= now + 610
        assert verify_enqueue_token([KEY], token, room="other", now_s=now) is None
