#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ (deterministic; run from anywhere).

Each seed is a small, meaningful input in the layout its target documents at
the top of fuzz/<target>.c. Re-running rewrites the same files; inputs that
libFuzzer adds are not touched.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- phx_text: '1' + V1 object, '2' + V2 array ----
TEXT = {
    "v1_join": '1{"topic":"realtime:room1","event":"phx_join","payload":{"config":{"broadcast":{"self":true},"presence":{"key":"alice"}}},"ref":"1","join_ref":"1"}',
    "v1_heartbeat": '1{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}',
    "v1_null_refs": '1{"topic":"realtime:room1","event":"broadcast","payload":{"type":"broadcast","event":"cursor","payload":{"x":1.5e3}},"ref":null,"join_ref":null}',
    "v1_on_v2": '2{"topic":"realtime:room1","event":"phx_join","payload":{},"ref":"1"}',
    "v2_join": '2["1","1","realtime:room1","phx_join",{"config":{"postgres_changes":[],"private":false},"access_token":"eyJ"}]',
    "v2_heartbeat": '2[null,"7","phoenix","heartbeat",{}]',
    "v2_track": '2["3","8","realtime:room1","presence",{"type":"presence","event":"track","payload":{"user":"alice","online_at":"2026-08-21T12:00:00Z"}}]',
    "v2_extra_elems": '2[null,null,"t","e",[1,"two",null,true],"extra"]',
    "v2_four_elems": '2[null,null,"t","e"]',
    "v2_numeric_ref": '2[null,7,"t","e",{}]',
    "v2_escapes": '2["\\u00e9","r\\"1","realtime:caf\\u00e9\\n","\\ud83d\\ude00",{"k\\u0001":"\\\\"}]',
    "v2_nul_topic": '2[null,null,"a\\u0000b","e",{}]',
    "v2_long_topic": '2[null,null,"' + "t" * 256 + '","e",{}]',
}
for name, text in TEXT.items():
    write("phx_text", name, text)

# ---- phx_binary ----
def kind3(jr, ref, topic, event, meta, enc, payload):
    b = lambda s: s if isinstance(s, bytes) else s.encode()
    jr, ref, topic, event, meta, payload = map(b, (jr, ref, topic, event, meta, payload))
    return bytes([3, len(jr), len(ref), len(topic), len(event), len(meta), enc]) + jr + ref + topic + event + meta + payload


def kind0(jr, ref, topic, event, payload):
    b = lambda s: s if isinstance(s, bytes) else s.encode()
    jr, ref, topic, event, payload = map(b, (jr, ref, topic, event, payload))
    return bytes([0, len(jr), len(ref), len(topic), len(event)]) + jr + ref + topic + event + payload


write("phx_binary", "kind3_example", kind3("3", "7", "realtime:room1", "cursor", "", 1, '{"x":1}'))
write("phx_binary", "kind3_meta", kind3("3", "8", "realtime:room1", "cursor", '{"persist":true}', 1, '{"x":[1,2],"y":null}'))
write("phx_binary", "kind3_binary", kind3("", "", "realtime:r", "bin", "", 0, b"\x00\x01\xff\xfe"))
write("phx_binary", "kind3_bad_json", kind3("1", "2", "t", "e", "", 1, "{\"x\":"))
write("phx_binary", "kind3_meta_array", kind3("1", "2", "t", "e", "[1]", 1, "1"))
write("phx_binary", "kind3_bad_utf8", kind3("1", "2", b"t\xff", "e", "", 1, "1"))
write("phx_binary", "kind3_bad_enc", kind3("1", "2", "t", "e", "", 2, "1"))
write("phx_binary", "kind0_push", kind0("1", "2", "realtime:room1", "upload", b"\x89PNG\r\n"))
write("phx_binary", "kind4_server", bytes([4, 14, 6, 0, 1]) + b"realtime:room1cursor{\"x\":1}")
write("phx_binary", "truncated", kind3("3", "7", "realtime:room1", "cursor", "", 1, '{"x":1}')[:12])

# ---- ws_frame: [max sel][k][k chunk sizes][client bytes] ----
MASK_KEYS = [b"\x37\xfa\x21\x3d", b"\x01\x02\x03\x04", b"\xa5\x5a\xa5\x5a", b"\x00\x00\x00\x00"]
_mask_i = 0


def frame(op, payload, fin=True, masked=True, rsv=0):
    global _mask_i
    if isinstance(payload, str):
        payload = payload.encode()
    h = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
    m = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        h += bytes([m | n])
    elif n <= 0xFFFF:
        h += bytes([m | 126]) + struct.pack(">H", n)
    else:
        h += bytes([m | 127]) + struct.pack(">Q", n)
    if not masked:
        return h + payload
    key = MASK_KEYS[_mask_i % len(MASK_KEYS)]
    _mask_i += 1
    return h + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def close(code, reason=b""):
    return frame(8, (struct.pack(">H", code) if code else b"") + reason)


def ws(max_sel, sizes, stream):
    return bytes([max_sel, len(sizes)]) + bytes(sizes) + stream


phx = '["1","1","realtime:room1","phx_join",{"config":{}}]'
write("ws_frame", "text_whole", ws(16, [], frame(1, phx)))
write("ws_frame", "text_bytewise", ws(16, [0], frame(1, phx) + frame(2, b"\x03\x01\x01\x01\x01\x00\x01" + b"37te{}")))
write("ws_frame", "fragments_ping", ws(16, [2, 0, 6, 30], frame(1, "Hel", fin=False) + frame(9, "p") + frame(0, "lo \xc3".encode("latin-1"), fin=False) + frame(0, b"\xa9!") + frame(10, "x")))
write("ws_frame", "close_1000", ws(1, [4, 1], frame(1, "bye") + close(1000, b"done") + frame(1, "late")))
write("ws_frame", "close_no_code", ws(1, [], close(0)))
write("ws_frame", "close_bad_code", ws(1, [], close(1005)))
write("ws_frame", "unmasked", ws(16, [], frame(1, "hi", masked=False)))
write("ws_frame", "too_big", ws(0, [7], frame(1, "x" * 10)))
write("ws_frame", "too_big_fragments", ws(1, [], frame(2, b"y" * 40, fin=False) + frame(0, b"y" * 40)))
write("ws_frame", "bad_utf8", ws(16, [], frame(1, b"ok\xed\xa0\x80")))
write("ws_frame", "len16", ws(8, [200, 13], frame(2, bytes(range(256)) * 2)))
write("ws_frame", "len64_huge", ws(255, [], b"\x82\xff" + struct.pack(">Q", 1 << 40) + b"\x01\x02\x03\x04z"))
write("ws_frame", "rsv_opcode", ws(16, [], frame(1, "x", rsv=4) + frame(3, "y")))
write("ws_frame", "long_ping", ws(16, [], frame(9, "p" * 126)))

# ---- http_req: [max_body/16][k][k chunk sizes][requests] ----
def http(max_sel, sizes, text):
    if isinstance(text, str):
        text = text.encode()
    return bytes([max_sel, len(sizes)]) + bytes(sizes) + text


upgrade = ("GET /realtime/v1/websocket?apikey=anon&vsn=2.0.0 HTTP/1.1\r\nHost: localhost:4000\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\nOrigin: http://localhost\r\n\r\n").encode() + frame(1, phx)
write("http_req", "get", http(4, [], "GET /api/health HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"))
write("http_req", "upgrade", http(0, [3, 50, 0], upgrade))
write("http_req", "post_body", http(4, [9], "POST /api/broadcast HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
      "Authorization: Bearer x\r\nContent-Length: 55\r\n\r\n"
      '{"messages":[{"topic":"room1","event":"e","payload":{}}]}'[:55]))
write("http_req", "chunked", http(1, [5, 1], "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
write("http_req", "pipelined", http(1, [17, 2], "GET /a?x=1 HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
write("http_req", "query_escapes", http(0, [], "GET /p%20ath?apikey=a%3Db&name=J%C3%BCrgen+M&bad=%zz&nul=%00&flag HTTP/1.1\r\n\r\n"))
write("http_req", "too_many_headers", http(0, [100], "GET / HTTP/1.1\r\n" + "".join("X-H%d: %d\r\n" % (i, i) for i in range(65)) + "\r\n"))
write("http_req", "body_too_big", http(0, [], "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"))
write("http_req", "garbage", http(0, [0], "\x01\x02 hello\r\n\r\n"))
write("http_req", "empty_header_value", http(0, [], "GET / HTTP/1.1\r\nX-Empty:\r\nX-Next: 1\r\n\r\n"))

# Regression input found by fuzz_phx_binary: a UTF-8 character split across
# two header fields (ref "\xce", topic "\x95"). It must be rejected; it
# aborts replay_phx_binary while src/proto/phx.c checks the header strings
# only as one run of bytes.
write("phx_binary", "utf8_split_fields", bytes([3, 1, 1, 1, 1, 0, 0]) + b"1\xce\x95:")

# ---- policy: statements separated by ';' (the last also a catalog USING) ----
POLICY = {
    "own_rows": "alter table t enable row level security;"
                "create policy \"own rows\" on t for select to authenticated using (owner = auth.uid());"
                "owner = auth.uid()",
    "combos": "alter table public.t enable row level security;"
              "create policy a on t using (is_public or owner = (select auth.uid()));"
              "create policy b on t as restrictive for all to authenticated using (not deleted) "
              "with check (org = auth.jwt() ->> 'org');"
              "create policy c on t for insert with check (n between 1 and (auth.jwt() ->> 'n')::int);"
              "drop policy if exists a on t;"
              "create policy a on t for update using (team = any (auth.jwt() -> 'teams'))",
    "deparsed": "alter table u enable row level security;"
                "(( SELECT auth.uid() AS uid) = owner) AND ((team)::text = ANY "
                "((ARRAY['t1'::character varying, 't2'::character varying])::text[]))",
    "legacy": "alter table d force row level security;"
              "((owner)::text = current_setting('request.jwt.claim.sub'::text, true)) OR "
              "(org = ((current_setting('request.jwt.claims'::text, true))::json ->> 'org'::text))",
    "topic": "alter table realtime.messages enable row level security;"
             "create policy r on realtime.messages for select to authenticated using "
             "(realtime.topic() = 'room:' || auth.uid() and realtime.messages.extension in ('broadcast', 'presence'));"
             "create policy w on realtime.messages for insert with check (realtime.topic() like 'room:%')",
    "nulls": "alter table t enable row level security;"
             "create policy x on t using (owner is distinct from auth.jwt() ->> 'none' and "
             "team not in ('a', null) or n is not null and done is not false);"
             "name ilike 'A%' OR NOT (id <> ALL (ARRAY[1, 2, 3]))",
    "quoting": "/* c */ CREATE POLICY \"we\"\"ird\" ON \"T\" -- x\n AS PERMISSIVE FOR DELETE TO \"Role\", public "
               "USING ( \"Col\" = 'it''s' ) ;"
               "ALTER TABLE IF EXISTS ONLY \"T\" ENABLE ROW LEVEL SECURITY",
    "refused": "create policy bad on t using (created_at < now());"
               "create policy bad2 on t using (a = b);"
               "EXISTS (SELECT 1 FROM m WHERE m.uid = auth.uid())",
    "claim_arrays": "alter table t enable row level security;"
                    "create policy a on t using (team_id = ANY (ARRAY(SELECT jsonb_array_elements_text(auth.jwt() -> 'teams'))));"
                    "create policy b on t using (team_id NOT IN (SELECT json_array_elements_text((auth.jwt() -> 'teams')::json) AS e));"
                    "create policy c on t using (not ((auth.jwt() -> 'teams') ? team_id::text));"
                    "((team_id)::text = ANY (ARRAY( SELECT jsonb_array_elements_text((auth.jwt() -> 'teams'::text)) "
                    "AS jsonb_array_elements_text))) OR ((auth.jwt() -> 'teams'::text) ? team_id)",
    "nested": "alter table d enable row level security;" + "(" * 40 + "n = 1" + ")" * 40,
    "alter_policy": "alter table t enable row level security;"
                    "create policy a on t for select to anon using (owner = auth.uid());"
                    "alter policy a on t to authenticated, anon using (n > 1 and team = any (auth.jwt() -> 'teams'));"
                    "alter policy a on t rename to b;"
                    "alter policy b on t with check (true);"
                    "coalesce(nullif(auth.jwt() ->> 'org', ''), 'none') = org",
    "other": "create table t (id int8 primary key, owner text);"
             "alter table t add column n int;"
             "alter table t enable row level security, add column x int;"
             "true",
}
for name, text in POLICY.items():
    write("policy", name, text)

# ---- jwt: even first byte + token (fixed keys), odd + JWKS document ----
import base64
import hashlib
import hmac
import json as _json


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _token(header, claims, key=None):
    h = _b64(_json.dumps(header, separators=(",", ":")).encode())
    c = _b64(_json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{h}.{c}".encode(), hashlib.sha256).digest() if key else b""
    return f"{h}.{c}.{_b64(sig)}"


_SECRET = b"fuzz-secret-of-at-least-32-bytes-long"
_OCT = b"secret-of-at-least-32-bytes-long---"
_OK = {"role": "authenticated", "sub": "u", "exp": 1900000000, "aud": "authenticated", "iss": "fuzz"}
JWT = {
    "hs_secret": "\0" + _token({"alg": "HS256", "typ": "JWT"}, _OK, _SECRET),
    "hs_oct_kid": "\0" + _token({"alg": "HS256", "kid": "hs"}, _OK, _OCT),
    "hs_kid_fallback": "\0" + _token({"alg": "HS256", "kid": "gotrue"}, _OK, _SECRET),
    "wrong_aud": "\0" + _token({"alg": "HS256"}, dict(_OK, aud=["x", "y"]), _SECRET),
    "nbf": "\0" + _token({"alg": "HS256"}, dict(_OK, nbf=1800000000), _SECRET),
    "expired": "\0" + _token({"alg": "HS256"}, dict(_OK, exp=1600000000.4), _SECRET),
    "es_kid": "\0" + _token({"alg": "ES256", "kid": "ec"}, _OK) + "AAAA",
    "none": "\0" + _token({"alg": "none"}, _OK),
    "jwks_ec": "\1" + '{"keys":[{"kty":"EC","kid":"ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",'
                      '"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","alg":"ES256","use":"sig"}]}',
    "jwks_mixed": "\1" + '{"keys":[{"kty":"oct","kid":"a","k":"AQID"},{"kty":"OKP","crv":"Ed25519","x":"AA"},'
                         '{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"RSA","alg":"PS256","n":"AQAB","e":"AQAB"}]}',
    "jwks_bad_rsa": "\1" + '{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}',
    "jwks_empty": "\1" + '{"keys":[]}',
}
for name, text in JWT.items():
    write("jwt", name, text)


# ---- bus: byte 0 % 3 picks message (0), frame (1) or URL (2) ----
def bus_str(s):
    if s is None:
        return struct.pack(">I", 0xFFFFFFFF)
    if isinstance(s, str):
        s = s.encode()
    return struct.pack(">I", len(s)) + s


def bus_msg(kind, node, seq, body=b""):
    return b"RTB1" + bytes([kind]) + bus_str(node) + struct.pack(">Q", seq) + body


BUS = {
    "broadcast": bus_msg(1, "node1", 1, bus_str("pub:room") + b"\x01" + bus_str('[null,null,"realtime:room","broadcast",{}]') + b"\x00" + bus_str(None)),
    "broadcast_v2_binary": bus_msg(1, "n-2", 9, bus_str("pub:room") + b"\x00" + bus_str(None) + b"\x02" + bus_str(b"\x04\x00\x04\x05roomping{}")),
    "presence_join": bus_msg(2, "node1", 2, bus_str("pub:room") + bus_str("realtime:room") + struct.pack(">Q", 7) + bus_str("alice") + bus_str('{"phx_ref":"abc"}') + bus_str(None)),
    "presence_update": bus_msg(2, "node1", 3, bus_str("pub:room") + bus_str("realtime:room") + struct.pack(">Q", 7) + bus_str("alice") + bus_str('{"phx_ref":"d","phx_ref_prev":"abc"}') + bus_str('{"phx_ref":"abc"}')),
    "heartbeat": bus_msg(3, "node_3", 12),
    "state": bus_msg(4, "node_3", 13),
    "zero_seq": bus_msg(3, "n", 0),
    "bad_node": bus_msg(3, "a:b", 1),
    "trailing": bus_msg(3, "n", 1) + b"x",
    "huge_len": b"RTB1\x01" + bus_str("n") + struct.pack(">Q", 1) + struct.pack(">I", 0x7FFFFFFF),
}
for name, data in BUS.items():
    write("bus", name, b"\x00" + data)
write("bus", "frame_small", b"\x01\x81\x02hi")
write("bus", "frame_126", b"\x01\x82\x7e\x00\x7e" + b"x" * 126)
write("bus", "frame_masked", b"\x01\x81\x81abcdx")
write("bus", "url_plain", b"\x02redis://127.0.0.1:6379")
write("bus", "url_auth_db", b"\x02redis://user:pw@[::1]:7000/3")
write("bus", "url_bad_port", b"\x02redis://h:99999")
# ---- collab_proto: one y-websocket message (lib0 var-uints) ----
def _vu(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _vb(b):
    return _vu(len(b)) + b


def _ydoc_updates():
    """The updates of the ydoc corpus's history-* records (2-byte LE length each)."""
    d = os.path.join(HERE, "corpus", "ydoc")
    ups = []
    for f in sorted(os.listdir(d)):
        if not f.startswith("history-"):
            continue
        x = open(os.path.join(d, f), "rb").read()
        p = 0
        while p + 2 <= len(x):
            n = x[p] | x[p + 1] << 8
            ups.append(x[p + 2 : p + 2 + n])
            p += 2 + n
    return ups


def _aw(entries):
    b = _vu(len(entries))
    for client, clock, state in entries:
        b += _vu(client) + _vu(clock) + _vb(state.encode())
    return _vu(1) + _vb(b)


COLLAB = {}
for i, u in enumerate(_ydoc_updates()[:6]):
    COLLAB["sync-step2-%d" % i] = _vu(0) + _vu(1) + _vb(u)
    COLLAB["sync-update-%d" % i] = _vu(0) + _vu(2) + _vb(u)
COLLAB.update({
    "sync-step1-empty": _vu(0) + _vu(0) + _vb(_vu(0)),
    "sync-step1-sv": _vu(0) + _vu(0) + _vb(_vu(2) + _vu(12345) + _vu(7) + _vu(99) + _vu(3)),
    "aw-one": _aw([(1234567, 1, json.dumps({"user": {"name": "ann", "color": "#f00"}, "cursor": {"anchor": 3}}))]),
    "aw-null": _aw([(42, 2, "null")]),
    "aw-many": _aw([(i, i + 1, '{"i":%d}' % i) for i in range(20)]),
    "aw-bad-json": _aw([(1, 1, '{"a":')]),
    "aw-big-clock": _aw([((1 << 53) - 1, (1 << 53) - 1, "1")]),
    "query-awareness": _vu(3),
    "auth": _vu(2) + _vu(0) + _vb(b"permission denied"),
    "sync-trailing": _vu(0) + _vu(1) + _vb(_vu(0) + _vu(0)) + b"x",
    "varint-overlong": bytes([0x80] * 10) + b"\x00",
    "unknown-type": _vu(7) + b"\x00",
})
for name, data in COLLAB.items():
    write("collab_proto", name, data)


# ---- join_config: a join payload (JSON) ----
def _join(pg=None, live=None):
    c = {"broadcast": {"ack": False, "self": False}, "presence": {"key": ""}, "private": False}
    if pg is not None:
        c["postgres_changes"] = pg
    if live is not None:
        c["rtsync"] = {"live": live}
    return {"config": c, "access_token": "x"}


_B = {"event": "*", "schema": "public", "table": "bookings"}
JOIN = {
    "pg-all": _join([_B]),
    "pg-filter-eq": _join([dict(_B, event="INSERT", filter="status=eq.open")]),
    "pg-filter-in": _join([dict(_B, event="UPDATE", filter="property=in.(p1,p2)", id=7)]),
    "pg-filter-bad": _join([dict(_B, filter="nope=eq.1")]),
    "pg-delivery": _join([dict(_B, throttle_ms=100, batch=True),
                          {"event": "DELETE", "schema": "public", "table": "open_t", "throttle_ms": 100, "batch": True}]),
    "pg-debounce": _join([dict(_B, debounce_ms=50, max_wait_ms=500)]),
    "pg-bad-delivery": _join([dict(_B, throttle_ms=10, debounce_ms=5)]),
    "pg-schema-star": _join([{"event": "*", "schema": "public"}, {"event": "*", "schema": "*"}, None,
                             {"event": "*", "table": "open_t", "filter": "v=is.null"}]),
    "pg-many": _join([dict(_B, filter="amount=gt.%d" % i) for i in range(6)]),
    "live-basic": _join(live={"queries": [{"id": "q1", "table": "bookings",
                                           "query": "select=id,status&status=eq.open&order=id.desc&limit=10"}]}),
    "live-agg": _join(live={"throttle_ms": 100, "queries": [{"id": "q2", "table": "bookings",
                                                             "query": "select=property,amount.sum(),count()&order=property"}]}),
    "live-or": _join(live={"debounce_ms": 20, "max_wait_ms": 100, "queries": [
        {"id": "q3", "schema": "public", "table": "bookings",
         "query": "or=(status.eq.open,and(amount.gte.0,nights.lt.3))&meta->>a=eq.1"}]}),
    "live-bad": _join(live={"queries": [{"id": "", "table": "bookings"}, {"id": "x", "table": "nope"},
                                        {"id": "y", "table": "bookings", "query": "select=nope"}]}),
    "live-sub": {"queries": [{"id": "a", "table": "open_t", "query": "v=not.is.null&offset=1"}],
                 "throttle_ms": 250, "resume_after": "12"},
    "live-window": _join(live={"queries": [{"id": "w", "table": "bookings",
                                            "query": "order=at.desc.nullslast,id&limit=2&offset=1&day=gte.2024-01-01"}]}),
}
for name, v in JOIN.items():
    write("join_config", name, json.dumps(v))


# ---- notify_rule: byte 0 % 4 picks rule / preferences / template / filter ----
_RULE = {"name": "request-approved", "table": "requests", "schema": "public", "events": ["UPDATE"],
         "filter": "status=changed.from.pending.to.approved&priority=gte.2",
         "recipients": [{"column": "traveler_id"}, {"column": "watchers"}],
         "title": "{{new.title}} is {{new.status}}", "message": "It was {{old.status}}.",
         "type": "success", "category": "requests", "priority": "high",
         "link": "/requests/{{new.id}}?h={{new.hotel}}",
         "group": {"window_ms": 60000, "key": "{{new.hotel}}", "title": "{{count}} new bookings at {{new.hotel}}"}}
NOTIFY = {
    "r-doc": "\0" + json.dumps(_RULE),
    "r-query": "\0" + json.dumps({"name": "q", "table": "requests", "event": "*", "recipients": {"query": {
        "table": "members", "select": "user_id", "filter": "org_id=eq.{{new.org_id}}"}}, "title": "{{table}} {{event}}"}),
    "r-users": "\0" + json.dumps({"name": "u", "table": "requests", "events": ["INSERT", "DELETE"],
                                  "recipients": [{"users": ["a", "b", "a"]}, {"user": "c"}], "title": "x",
                                  "priority": "urgent", "type": "error"}),
    "r-bad": "\0" + json.dumps({"name": "bad name!", "table": "nope", "recipients": [], "title": "{{new.nope}}"}),
    "r-or": "\0" + json.dumps({"name": "o", "table": "requests",
                               "filter": "or=(status.eq.approved,amount.gt.2)&done=is.true&hotel=like.H*",
                               "recipients": {"column": "traveler_id"}, "title": "{{ new.amount }}"}),
    "p-full": "\1" + json.dumps({"muted_categories": ["requests", "x"], "min_priority": "normal",
                                 "quiet_hours": {"start": "22:00", "end": "07:00", "utc_offset": "-05:00"},
                                 "channels": {"info": ["inbox"], "error": ["live", "inbox"], "warning": []}}),
    "p-quiet-null": "\1" + json.dumps({"quiet_hours": None, "min_priority": "urgent"}),
    "p-empty": "\1{}",
    "p-bad": "\1" + json.dumps({"quiet_hours": {"start": "25:00"}}),
    "t-all": "\2{{new.title}} {{old.status}} {{table}} {{event}} {{count}} {{ new.hotel }}",
    "t-unclosed": "\2abc {{new.id",
    "t-unknown": "\2{{x}}",
    "f-changed": "\3status=changed.from.pending.to.approved",
    "f-rest": "\3amount=gte.1&title=ilike.*trip*&id=in.(1,2,3)&priority=not.is.null",
    "f-changed-to": "\3status=changed.to.approved&org_id=changed",
}
for name, text in NOTIFY.items():
    write("notify_rule", name, text)


# ---- store_log: change-log rows (0x1e between rows, 0x1f between fields) ----
def _logrow(tbl, op, new=None, old=None):
    f = [tbl, op]
    if new is not None or old is not None:
        f.append(new if isinstance(new, str) else json.dumps(new))
    if old is not None:
        f.append(old if isinstance(old, str) else json.dumps(old))
    return "\x1f".join(f)


LOG = {
    "insert": _logrow("t", "INSERT", {"id": 1, "title": "a", "done": 1, "score": 2.5, "meta": "{\"x\":[1,2]}",
                                      "n": "3", "at": "2024-01-01T00:00:00Z"}),
    "update": _logrow("t", "UPDATE", {"id": 1, "title": "b", "done": "true"}, {"id": 1, "title": "a", "done": 0}),
    "delete": _logrow("t", "DELETE", "null", {"id": 1}),
    "mixed": "\x1e".join([_logrow("u", "INSERT", {"id": 1, "v": "x"}), _logrow("nope", "INSERT", {"a": 1}),
                          _logrow("t", "UPSERT", {"id": "9"}), _logrow("t", "INSERT", "[1,2]"),
                          _logrow("t", "INSERT", "not json")]),
    "dropped-col": _logrow("t", "INSERT", {"id": 2, "gone": "secret"}),
    "types": _logrow("t", "INSERT", {"id": "12345678901234567890", "n": "1e400", "score": "nan", "done": "t",
                                     "meta": "{bad", "title": None}),
    "null-fields": "\x1e".join(["t", "t\x1fINSERT"]),
}
for name, text in LOG.items():
    write("store_log", name, text)


# ---- client_livecopy: a JSON array of live_query payloads ----
def _lq(*qs):
    return {"position": "42", "queries": list(qs)}


_RES = {"id": "q", "kind": "result", "keys": ["[1]", "[2]", "[3]"], "rows": [{"id": 1}, {"id": 2}, {"id": 3}]}
_DIFF = {"id": "q", "kind": "diff", "ops": [
    {"op": "leave", "key": "[2]"}, {"op": "enter", "key": "[4]", "index": 0, "row": {"id": 4}},
    {"op": "move", "key": "[3]", "index": 1, "row": {"id": 3, "x": 1}},
    {"op": "change", "key": "[1]", "row": {"id": 1, "v": "b"}}]}
LIVECOPY = {
    "result-diff": [_lq(_RES), _lq(_DIFF)],
    "diff-first": [_lq(_DIFF)],
    "resync": [_lq(_RES), _lq(dict(_RES, resync=True, keys=["[9]"], rows=[{"id": 9}]))],
    "bad-index": [_lq(_RES), _lq({"id": "q", "kind": "diff", "ops": [{"op": "enter", "key": "[5]", "index": 7, "row": {}}]})],
    "dup-key": [_lq({"id": "q", "kind": "result", "keys": ["a", "a"], "rows": [{}, {}]})],
    "two-ids": [_lq(_RES, dict(_RES, id="r")),
                _lq(_DIFF, {"id": "r", "kind": "diff", "ops": [{"op": "leave", "key": "[1]"}, {"op": "leave", "key": "[1]"}]})],
    "bad-envelope": [{"position": "x", "queries": []}, {"position": "1", "queries": [{"id": "", "kind": "result"}]},
                     {"queries": [_RES]}],
    "window": [_lq({"id": "w", "kind": "result", "keys": ["[\"a\",1]"], "rows": [{"g": "a", "count": 1}]}),
               _lq({"id": "w", "kind": "diff", "ops": [{"op": "change", "key": "[\"a\",1]", "row": {"g": "a", "count": 2}},
                                                      {"op": "enter", "key": "[\"b\",1]", "index": 1, "row": {"g": "b"}}]})],
}
for name, v in LIVECOPY.items():
    write("client_livecopy", name, json.dumps(v))


# ---- store_write: a JSON array of writes and reads against the embedded store ----
WRITES = {
    "insert-read": [{"kind": 0, "rows": [{"id": 1, "title": "a", "owner": "u1", "meta": {"x": [1]}, "done": True,
                                          "score": 1.5, "at": "2024-01-01T00:00:00Z"}]},
                    {"read": "select=id,title&order=id.desc&limit=5", "count": True}],
    "upsert-merge": [{"kind": 1, "rows": [{"id": 1, "title": "b", "owner": "u1"}], "ignore": False},
                     {"kind": 1, "rows": [{"id": 1, "title": "c"}], "base": {"title": "a"}, "strategy": 1}],
    "update-base": [{"kind": 0, "rows": {"id": 2, "title": "x", "owner": "u2"}},
                    {"kind": 2, "rows": {"title": "y"}, "where": "id=eq.2", "base": {"title": "x"}, "strategy": 0},
                    {"kind": 2, "rows": {"title": "z"}, "where": "id=eq.2", "base": {"title": "q"}, "strategy": 2}],
    "delete-who": [{"kind": 0, "rows": {"id": 3, "owner": "u1"}, "who": 2}, {"kind": 3, "where": "id=eq.3", "who": 1},
                   {"kind": 3, "where": "id=eq.3", "who": 2, "single": True}],
    "idempotent": [{"kind": 0, "rows": {"id": 4, "owner": "u1"}, "key": 1, "fp": "a"},
                   {"kind": 0, "rows": {"id": 4, "owner": "u1"}, "key": 1, "fp": "a"},
                   {"kind": 0, "rows": {"id": 5}, "key": 1, "fp": "b"}],
    "composite": [{"table": "u", "kind": 0, "rows": [{"a": 1, "b": "x"}, {"a": 1, "b": "y", "v": None}]},
                  {"table": "u", "kind": 1, "rows": [{"a": 1, "b": "x", "v": "w"}], "missing_default": True},
                  {"table": "u", "read": "a=eq.1&b=in.(x,y)&order=b"}],
    "rls-insert": [{"kind": 0, "rows": {"id": 6, "owner": "u9"}, "who": 2}, {"kind": 0, "rows": {"id": 7, "owner": "u1"}, "who": 1}],
    "bad": [{"kind": 0, "rows": [{"nope": 1}]}, {"kind": 0, "rows": [{"id": "x"}]},
            {"kind": 2, "rows": {"id": 1}, "where": "nope=eq.1"}, {"read": "select=nope"},
            {"table": "zz", "kind": 0, "rows": []}],
    "select-embed": [{"read": "select=id,meta->x,title::text&or=(done.is.true,score.gt.1)&offset=1"},
                     {"kind": 2, "rows": {"done": False}, "where": "title=like.*a*&select=id"}],
}
for name, v in WRITES.items():
    write("store_write", name, json.dumps(v))
