"""What every jitgate test driver reads off a tool result."""

import json


def answer(r):
    """A meta-tool's answer: its structured content, or the JSON text."""
    return r.structured_content or json.loads(r.content[0].text)


def step(r):
    """One step of a report: refused or not, jitgate's reason code, the text."""
    meta = r.meta or {}
    return {
        "is_error": bool(r.is_error),
        "code": (meta.get("jitgate/error") or {}).get("code"),
        "text": "\n".join(c.text for c in r.content if getattr(c, "type", "") == "text"),
    }
