"""Write each flow's ``get_state()`` as one JSON line, at ``response`` and at ``websocket_end``
(mitmproxy addon style: the calls mitmproxy's contrib ``jsondump.py`` makes).

* request: ``set_state`` on an edited ``get_state()`` moves ``/old/...`` paths to ``/new/...``
  and adds a header (the change must reach the upstream), after a ``get_state`` round trip that
  must change nothing.
* response, websocket_end, error: the state, with bytes turned into text and timestamps into
  milliseconds as jsondump does, appended to ``state_dump_file``.

No ``websocket_message`` hook: the messages must be in the state at the end all the same.
"""

import base64
import json

from mitmproxy import ctx, http


class StateDump:
    def load(self, loader):
        loader.add_option("state_dump_file", str, "state.jsonl", "where the JSON lines go")

    def request(self, flow: http.HTTPFlow) -> None:
        before = flow.get_state()
        flow.set_state(flow.get_state())
        assert flow.get_state() == before, "a get_state/set_state round trip changed the flow"
        if flow.request.path.startswith("/old/"):
            state = flow.get_state()
            state["request"]["path"] = b"/new/" + state["request"]["path"][5:]
            state["request"]["headers"] += ((b"X-State", b"set"),)
            state["metadata"]["moved"] = True
            flow.set_state(state)

    def response(self, flow: http.HTTPFlow) -> None:
        self._dump("response", flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._dump("websocket_end", flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._dump("error", flow)

    def _dump(self, event: str, flow: http.HTTPFlow) -> None:
        state = flow.get_state()
        state["event"] = event
        for part in ("request", "response"):
            if state[part]:
                state[part]["headers"] = dict(state[part]["headers"])
                state[part]["timestamp_start"] = int(state[part]["timestamp_start"] * 1000)
        if state["websocket"]:
            state["websocket"]["messages"] = [
                {
                    "type": m[0],
                    "from_client": m[1],
                    "content": base64.b64encode(m[2]).decode(),
                    "timestamp": int(m[3] * 1000),
                    "dropped": m[4],
                    "injected": m[5],
                }
                for m in state["websocket"]["messages"]
            ]
        with open(ctx.options.state_dump_file, "a") as out:
            out.write(json.dumps(_strings(state)) + "\n")


def _strings(obj):
    if isinstance(obj, dict):
        return {_strings(k): _strings(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strings(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    return obj


addons = [StateDump()]
