#!/usr/bin/env bash
# The client commands (rtsync listen, send, presence, write, query, notify, inbox, lock) against a real server:
#   tests/client/cli.sh /abs/path/to/rtsync
# Prints "ok"/"FAIL" per check and "cli: N passed, M failed".
set -uo pipefail
bin=${1:?usage: cli.sh /path/to/rtsync}
secret=cli-test-secret-0123456789abcdef0123456789abcdef
dir=$(mktemp -d /tmp/rtsync-cli-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$dir"
}
trap cleanup EXIT

passed=0
failed=0
check() { # name, then a command that must succeed
	local name=$1
	shift
	if "$@"; then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		failed=$((failed + 1))
	fi
}

server_pid=
start_server() { # [port]
	local port=${1:-0}
	: >"$dir/server.out"
	"$bin" serve --listen "127.0.0.1:$port" --jwt-secret "$secret" --data-dir "$dir/data" \
		--schema "$dir/schema.sql" --log-level error --workers 1 >"$dir/server.out" 2>&1 &
	server_pid=$!
	pids+=("$server_pid")
	for _ in $(seq 200); do
		PORT=$(sed -n 's/^rtsync listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/server.out")
		[ -n "$PORT" ] && break
		sleep 0.05
	done
	URL=http://127.0.0.1:$PORT
}
wait_for() { # file, pattern, seconds
	for _ in $(seq $(($3 * 20))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

cat >"$dir/schema.sql" <<'EOF'
CREATE TABLE IF NOT EXISTS todos (id bigint PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false);
EOF
start_server
export RTSYNC_URL=$URL
export RTSYNC_APIKEY=$("$bin" token --secret "$secret" --role anon)
sql() { sqlite3 -cmd '.timeout 5000' "$dir/data/rtsync.db" "$1"; }

# rtsync notify and rtsync inbox (docs/notifications.md, REST /notify/v1)
svc=$("$bin" token --secret "$secret" --role service_role)
alice=$("$bin" token --secret "$secret" --role authenticated --claims '{"sub":"cli-alice"}')
bob=$("$bin" token --secret "$secret" --role authenticated --claims '{"sub":"cli-bob"}')
timeout 10 "$bin" notify --apikey "$svc" --user cli-alice --title 'hello' --message 'from the CLI' \
	>"$dir/n1.out" 2>&1
check "notify as the service role exits 0 and counts the recipient" bash -c "[ $? -eq 0 ] &&
	grep -q '^notified 1 of 1 recipients$' '$dir/n1.out'"
timeout 10 "$bin" notify --token "$alice" --user cli-bob --title 'spoof' >/dev/null 2>"$dir/n2.err"
check "notify as a user exits 1 with the server's RTS403" bash -c "[ $? -eq 1 ] && grep -q '403 RTS403' '$dir/n2.err'"
check "notify without a title exits 2" bash -c "'$bin' notify --apikey x --user a 2>/dev/null; [ \$? -eq 2 ]"
timeout 10 "$bin" inbox --token "$alice" >"$dir/n3.out" 2>&1
check "inbox lists alice's notification, unread" bash -c "[ $? -eq 0 ] &&
	grep -q '^#[0-9]* unread info    hello - from the CLI$' '$dir/n3.out'"
timeout 10 "$bin" inbox --token "$bob" --count >"$dir/n4.out" 2>&1
check "bob's inbox is empty" grep -q '^0 unread, 0 in the inbox, 0 held$' "$dir/n4.out"
nid=$(sed -n 's/^#\([0-9]*\) .*/\1/p' "$dir/n3.out" | head -1)
timeout 10 "$bin" inbox --token "$alice" --read "$nid" >/dev/null 2>&1 &&
	timeout 10 "$bin" inbox --token "$alice" --count >"$dir/n5.out" 2>&1
check "inbox --read marks it read" grep -q '^0 unread, 1 in the inbox, 0 held$' "$dir/n5.out"
timeout 10 "$bin" inbox --token "$alice" --json >"$dir/n6.out" 2>&1
check "inbox --json is the server's answer" node -e '
	const a = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	if (a.items.length !== 1 || a.items[0].title !== "hello" || a.items[0].read !== true) process.exit(1);' "$dir/n6.out"
timeout 10 "$bin" inbox --url http://127.0.0.1:9 --token "$alice" >/dev/null 2>"$dir/n7.err"
check "inbox against no server exits 1 and says so" bash -c "[ $? -eq 1 ] && grep -q 'cannot reach http://127.0.0.1:9' '$dir/n7.err'"

# rtsync flags (docs/flags.md, REST /flags/v1)
fl() { timeout 10 "$bin" flags --apikey "$svc" "$@"; }
fl set beta --rollout 10 --when role=authenticated --when app_metadata.team=red,blue \
	--variant a=1 --variant b=3 --channels 'room:*' --description 'the beta' >"$dir/f1.out" 2>&1
check "flags set builds the definition from options" node -e '
const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const want = {rollout: 10, when: {role: ["authenticated"], "app_metadata.team": ["red", "blue"]},
  variants: {a: 1, b: 3}, channels: ["room:*"], description: "the beta"};
process.exit(JSON.stringify(d, Object.keys(want).concat(Object.keys(want.when), "a", "b").sort()) ===
  JSON.stringify(want, Object.keys(want).concat(Object.keys(want.when), "a", "b").sort()) ? 0 : 1);' "$dir/f1.out"
fl set broadcast.rooms '{"enabled":false,"channels":["room:*"]}' >/dev/null 2>&1
check "flags set with a JSON definition exits 0" test $? -eq 0
fl list >"$dir/f2.out" 2>&1
check "flags list prints a line per flag" bash -c "[ \$(wc -l <'$dir/f2.out') -eq 2 ] &&
	grep -q '^beta	{' '$dir/f2.out' && grep -q '^broadcast.rooms	{\"enabled\":false' '$dir/f2.out'"
fl get broadcast.rooms >"$dir/f3.out" 2>&1
check "flags get prints the definition" grep -q '"channels":\["room:\*"\]' "$dir/f3.out"
check "the edit is in the server's flags file" grep -q '"broadcast.rooms"' "$dir/data/flags.json"
fl set bad --rollout 150 >/dev/null 2>"$dir/f4.err"
check "flags set --rollout 150 is a usage error (2)" bash -c "[ $? -eq 2 ] && grep -q 'percentage' '$dir/f4.err'"
fl set bad '{"rollout":"x"}' >/dev/null 2>"$dir/f5.err"
check "a definition the server refuses exits 1 with its reason" bash -c "[ $? -eq 1 ] && grep -q '400 RTS400: flag bad: rollout' '$dir/f5.err'"
timeout 10 "$bin" flags --apikey "$alice" list >/dev/null 2>"$dir/f6.err"
check "flags as a user exits 1 with the server's RTS403" bash -c "[ $? -eq 1 ] && grep -q '403 RTS403' '$dir/f6.err'"
fl delete beta >/dev/null 2>&1 && fl list >"$dir/f7.out" 2>&1
check "flags delete removes it" bash -c "! grep -q '^beta' '$dir/f7.out' && grep -q '^broadcast.rooms' '$dir/f7.out'"
fl delete beta >/dev/null 2>"$dir/f8.err"
check "deleting a missing flag exits 1 with 404" bash -c "[ $? -eq 1 ] && grep -q '404 RTS404' '$dir/f8.err'"
printf '{"flags":{"only":true}}' >"$dir/f.json"
fl import "$dir/f.json" >/dev/null 2>&1 && fl list --json >"$dir/f9.out" 2>&1
check "flags import replaces every flag" grep -qx '{"flags":{"only":true}}' "$dir/f9.out"
check "flags without a command exits 2" bash -c "'$bin' flags --apikey x 2>/dev/null; [ \$? -eq 2 ]"
check "flags --help" bash -c "'$bin' flags --help | grep -q '^Usage: rtsync flags'"


# rtsync lock (docs/locks.md, REST /locks/v1): a command under a lock, its
# fencing token, waiting, a SIGKILLed holder whose lease ends
timeout 10 "$bin" lock --token "$alice" cli-job -- sh -c 'echo "token=$RTSYNC_LOCK_TOKEN name=$RTSYNC_LOCK_NAME"; exit 7' \
	>"$dir/k1.out" 2>"$dir/k1.err"
check "lock runs the command with the token and exits with its status" bash -c "[ $? -eq 7 ] &&
	grep -q '^token=[1-9][0-9]* name=cli-job$' '$dir/k1.out'"
t1=$(sed -n 's/^token=\([0-9]*\).*/\1/p' "$dir/k1.out")
timeout 10 "$bin" lock --status --token "$alice" cli-job >"$dir/k2.out" 2>&1
check "the lock is free once the command exited" grep -q '^cli-job: free, 0 waiting$' "$dir/k2.out"
# a holder that renews past its lease, then is SIGKILLed: the next holder waits for the lease
"$bin" lock --token "$alice" --lease-ms 1500 cli-job -- sleep 30 >/dev/null 2>&1 &
holder=$!
pids+=("$holder")
wait_for_held() {
	for _ in $(seq 100); do
		"$bin" lock --status --token "$alice" cli-job 2>/dev/null | grep -q 'held by cli-alice' && return 0
		sleep 0.05
	done
	return 1
}
check "a second rtsync lock holds it" wait_for_held
sleep 2 # past the first lease: renewed
timeout 10 "$bin" lock --status --token "$alice" cli-job >"$dir/k3.out" 2>&1
check "the holder renewed its lease" grep -q '^cli-job: held by cli-alice, token [0-9]*, lease ends in' "$dir/k3.out"
timeout 10 "$bin" lock --token "$bob" cli-job -- true >/dev/null 2>"$dir/k4.err"
check "lock of a held lock without --wait-ms exits 5" bash -c "[ $? -eq 5 ] && grep -q 'held by another owner' '$dir/k4.err'"
held_cmd=$(pgrep -P "$holder") # the command it runs, stopped after the test
kill -9 "$holder"
killed_at=$(date +%s%N)
timeout 20 "$bin" lock --token "$bob" --wait-ms 10000 cli-job -- sh -c 'echo "token=$RTSYNC_LOCK_TOKEN"' \
	>"$dir/k5.out" 2>"$dir/k5.err"
k5=$?
waited_ms=$((($(date +%s%N) - killed_at) / 1000000))
t2=$(sed -n 's/^token=\([0-9]*\).*/\1/p' "$dir/k5.out")
check "after a SIGKILLed holder, the waiter gets the lock when the lease ends (${waited_ms} ms)" bash -c "
	[ $k5 -eq 0 ] && [ $waited_ms -ge 700 ] && [ $waited_ms -lt 5000 ]"
check "and its fencing token is higher ($t2 > $t1)" bash -c "[ -n '$t2' ] && [ '$t2' -gt '$t1' ]"
kill $held_cmd 2>/dev/null
wait "$holder" 2>/dev/null
timeout 10 "$bin" lock --token "$alice" --wait-ms 300 --lease-ms 5000 cli-job2 -- sleep 2 >/dev/null 2>&1 &
holder2=$!
sleep 0.5
timeout 10 "$bin" lock --token "$bob" --wait-ms 300 cli-job2 -- true >/dev/null 2>"$dir/k6.err"
check "a wait that ends exits 5" bash -c "[ $? -eq 5 ] && grep -q 'the wait ended' '$dir/k6.err'"
timeout 10 "$bin" lock --status --json --token "$alice" cli-job2 >"$dir/k7.out" 2>&1
check "lock --status --json is the server's state" node -e '
	const a = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	if (a.held !== true || a.holder !== "cli-alice" || !(a.token > 0)) process.exit(1);' "$dir/k7.out"
timeout 10 "$bin" lock --token "$("$bin" token --secret "$secret" --role anon)" cli-job -- true >/dev/null 2>"$dir/k8.err"
check "lock refused by the channel policies exits 1 with 403" bash -c "[ $? -eq 1 ] && grep -q '403 RTS403' '$dir/k8.err'"
check "lock --help" bash -c "'$bin' lock --help | grep -q '^Usage: rtsync lock NAME' && '$bin' lock --help | grep -q 'Exit status'"
check "lock without a command exits 2" bash -c "'$bin' lock --apikey x job 2>/dev/null; [ \$? -eq 2 ]"
check "lock without a name exits 2" bash -c "'$bin' lock --apikey x 2>/dev/null; [ \$? -eq 2 ]"
check "lock with a bad --lease-ms exits 2" bash -c "'$bin' lock --apikey x --lease-ms -5 job -- true 2>/dev/null; [ \$? -eq 2 ]"
wait "$holder2"
check "the holder whose command ended exits 0" test $? -eq 0


# --help and usage errors
for cmd in listen send presence; do
	check "$cmd --help" bash -c "'$bin' $cmd --help | grep -q '^Usage: rtsync $cmd' && '$bin' $cmd --help | grep -q 'Exit codes'"
done
check "listen without a topic exits 2" bash -c "'$bin' listen 2>/dev/null; [ \$? -eq 2 ]"
check "send without an event exits 2" bash -c "'$bin' send room 2>/dev/null; [ \$? -eq 2 ]"
check "an ftp URL exits 2" bash -c "'$bin' listen --url ftp://x room 2>/dev/null; [ \$? -eq 2 ]"
check "send with a payload that is not an object exits 2" \
	bash -c "'$bin' send room ev '[1]' 2>/dev/null; [ \$? -eq 2 ]"
check "no apikey exits 2" bash -c "RTSYNC_APIKEY= '$bin' listen room 2>/dev/null; [ \$? -eq 2 ]"

# listen --json: a change and a broadcast, one JSON object per line
"$bin" listen --json --table todos --count 2 room1 >"$dir/l1.out" 2>"$dir/l1.err" &
lp=$!
pids+=("$lp")
wait_for "$dir/l1.out" '"type":"joined"' 10
sleep 0.2
sql "INSERT INTO todos(id,title) VALUES (1,'one')"
"$bin" send room1 greet '{"n":42}' >"$dir/s1.out" 2>&1
check "send exits 0 once acknowledged" test $? -eq 0
wait "$lp"
check "listen --count exits 0" test $? -eq 0
check "listen --json prints the change" grep -q '"type":"change","event":"INSERT","schema":"public","table":"todos","position":"[0-9]*".*"record":{"id":1,"title":"one","done":false}' "$dir/l1.out"
check "listen --json prints the broadcast" grep -q '"type":"broadcast","event":"greet","payload":{"n":42}' "$dir/l1.out"
check "every stdout line is a JSON object" node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
  for (const l of lines) { const o = JSON.parse(l); if (typeof o.type !== "string") process.exit(1); }' "$dir/l1.out"

# readable output, a filter, replay with --resume-after 0
sql "INSERT INTO todos(id,title) VALUES (2,'two')"
sql "UPDATE todos SET done = true WHERE id = 2"
timeout 10 "$bin" listen --table todos --filter 'id=eq.2' --resume-after 0 --count 2 --quiet room2 >"$dir/l2.out" 2>&1
check "listen --resume-after replays, filtered, readable" bash -c "
  sed -n 1p '$dir/l2.out' | grep -q '^INSERT public.todos @[0-9]* {\"id\":2,\"title\":\"two\",\"done\":false}$' &&
  sed -n 2p '$dir/l2.out' | grep -q '^UPDATE public.todos @[0-9]* {\"id\":2,\"title\":\"two\",\"done\":true} (was {\"id\":2,\"title\":\"two\",\"done\":false})$' &&
  [ \$(wc -l <'$dir/l2.out') -eq 2 ]"

# presence: two clients see each other
"$bin" presence --json --key alice --meta '{"mood":"ok"}' room3 >"$dir/p1.out" 2>&1 &
pp=$!
pids+=("$pp")
wait_for "$dir/p1.out" '"event":"join","key":"alice"' 10
timeout 10 "$bin" presence --json --key bob --count 3 room3 >"$dir/p2.out" 2>&1
check "presence sees the other key and itself" bash -c "
  grep -q '\"event\":\"join\",\"key\":\"alice\"' '$dir/p2.out' && grep -q '\"mood\":\"ok\"' '$dir/p2.out' &&
  grep -q '\"event\":\"join\",\"key\":\"bob\"' '$dir/p2.out'"
check "presence: the first client saw bob come and go" wait_for "$dir/p1.out" '"event":"leave","key":"bob"' 10
kill -INT "$pp"
wait "$pp"
check "presence exits 0 on SIGINT" test $? -eq 0

# a refused join: expired access token -> exit 3
expired=$("$bin" token --secret "$secret" --role anon --expires-in -10)
timeout 10 "$bin" send --token "$expired" room1 ev '{}' >/dev/null 2>"$dir/s2.err"
check "send with an expired token exits 3" test $? -eq 3
check "and says why" grep -q 'expired' "$dir/s2.err"

# reconnect: kill -9 the server, write meanwhile, restart on the same port.
# The listener resumes after the last change it saw (id 3), so id 4 arrives.
timeout 30 "$bin" listen --table todos --count 2 room4 >"$dir/l4.out" 2>"$dir/l4.err" &
lp=$!
pids+=("$lp")
wait_for "$dir/l4.err" 'joined' 10
sleep 0.2
sql "INSERT INTO todos(id,title) VALUES (3,'before')"
wait_for "$dir/l4.out" '"id":3' 10
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null
sql "INSERT INTO todos(id,title) VALUES (4,'while down')"
wait_for "$dir/l4.err" 'reconnecting in' 10
check "listen shows the reconnect status" grep -q 'connection lost (.*); reconnecting in [0-9]* ms (attempt 1)' "$dir/l4.err"
start_server "$PORT"
wait "$lp"
check "listen resumes after the restart and exits 0 by --count" test $? -eq 0
check "the change written while down arrives after the one before" bash -c "
  sed -n 1p '$dir/l4.out' | grep -q '^INSERT public.todos @[0-9]* {\"id\":3,' &&
  sed -n 2p '$dir/l4.out' | grep -q '^INSERT public.todos @[0-9]* {\"id\":4,\"title\":\"while down\",\"done\":false}$'"
check "rejoined is reported" grep -q 'rejoined' "$dir/l4.err"

# rtsync write: compare-and-set, conflict, merge, idempotent replay (docs/writes.md)
"$bin" write todos insert --record '{"id":50,"title":"w0"}' >"$dir/w1.out" 2>&1
check "write insert exits 0 and prints the row" bash -c "[ $? -eq 0 ] && grep -q '^applied public.todos {\"id\":50,\"title\":\"w0\",\"done\":false}$' '$dir/w1.out'"
"$bin" write todos update --key '{"id":50}' --record '{"title":"w1"}' --base '{"title":"w0"}' >"$dir/w2.out" 2>&1
check "write with a base that holds is applied" bash -c "[ $? -eq 0 ] && grep -q '^applied public.todos {\"id\":50,\"title\":\"w1\"' '$dir/w2.out'"
"$bin" write todos update --key '{"id":50}' --record '{"title":"w2"}' --base '{"title":"w0"}' >"$dir/w3.out" 2>&1
check "write with a stale base exits 4 and shows the row" bash -c "[ $? -eq 4 ] && grep -q '^conflict public.todos on title: now {\"id\":50,\"title\":\"w1\"' '$dir/w3.out'"
check "nothing was applied" test "$(sql 'SELECT title FROM todos WHERE id = 50')" = w1
"$bin" write todos update --key '{"id":50}' --record '{"title":"w2","done":true}' \
	--base '{"title":"w0","done":false}' --strategy merge --json >"$dir/w4.out" 2>&1
check "merge applies the other column and names the conflict" bash -c "[ $? -eq 0 ] &&
  grep -q '\"outcome\":\"merged\",\"record\":{\"id\":50,\"title\":\"w1\",\"done\":true},\"conflicts\":\[\"title\"\]' '$dir/w4.out'"
"$bin" write todos insert --record '{"id":51,"title":"once"}' --idempotency-key cli-k1 --json >"$dir/w5.out" 2>&1
"$bin" write todos insert --record '{"id":51,"title":"once"}' --idempotency-key cli-k1 --json >"$dir/w6.out" 2>&1
check "a replayed key answers the first result" bash -c "[ $? -eq 0 ] && grep -q '\"replayed\":true' '$dir/w6.out' && grep -q '\"replayed\":false' '$dir/w5.out'"
check "and the row exists once" test "$(sql 'SELECT count(*) FROM todos WHERE id = 51')" = 1
check "write with a bad TYPE exits 2" bash -c "'$bin' write todos merge 2>/dev/null; [ \$? -eq 2 ]"
check "write with a record that is not JSON exits 2" bash -c "'$bin' write todos insert --record '{x' 2>/dev/null; [ \$? -eq 2 ]"
"$bin" write nope insert --record '{"id":1}' 2>"$dir/w7.err"
check "write to an unknown table exits 1 and says why" bash -c "[ $? -eq 1 ] && grep -q 'unknown table (PGRST205)' '$dir/w7.err'"

# rtsync query: a live query's result, then each change of it (docs/live.md)
check "query --help" bash -c "'$bin' query --help | grep -q '^Usage: rtsync query' && '$bin' query --help | grep -q 'Exit codes'"
check "query without a table exits 2" bash -c "'$bin' query 2>/dev/null; [ \$? -eq 2 ]"
check "query with three arguments exits 2" bash -c "'$bin' query a b c 2>/dev/null; [ \$? -eq 2 ]"
check "query --throttle-ms out of range exits 2 and names the option" bash -c "
  '$bin' query --throttle-ms 60001 todos 2>'$dir/qe1.err'; [ \$? -eq 2 ] && grep -q -- '--throttle-ms' '$dir/qe1.err'"
check "query --throttle-ms with --debounce-ms exits 2" bash -c "'$bin' query --throttle-ms 5 --debounce-ms 5 todos 2>/dev/null; [ \$? -eq 2 ]"
check "query --count 0 exits 2" bash -c "'$bin' query --count 0 todos 2>/dev/null; [ \$? -eq 2 ]"
check "query without apikey or token exits 2" bash -c "RTSYNC_APIKEY= RTSYNC_TOKEN= '$bin' query todos 2>/dev/null; [ \$? -eq 2 ]"
timeout 10 "$bin" query todos 'select=nope' >/dev/null 2>"$dir/qe2.err"
check "a query the server refuses exits 1 with its code and message" bash -c "[ $? -eq 1 ] &&
  grep -q 'refused the query: 42703: column todos.nope does not exist' '$dir/qe2.err'"
timeout 10 "$bin" query --json nosuch >"$dir/qe3.out" 2>"$dir/qe3.err"
check "an unknown table exits 1 with PGRST205, the entry on stdout" bash -c "[ $? -eq 1 ] &&
  grep -q 'PGRST205' '$dir/qe3.err' && grep -q '^{\"position\":\"[0-9]*\",\"id\":\"q\",\"kind\":\"error\",\"code\":\"PGRST205\"' '$dir/qe3.out'"

sql "INSERT INTO todos(id,title) VALUES (60,'q-a'),(61,'q-b')"
qwin='select=id,title&id=gte.60&order=id.desc&limit=2'
timeout 20 "$bin" query --json --count 3 todos "$qwin" >"$dir/q1.out" 2>"$dir/q1.err" &
qp=$!
pids+=("$qp")
wait_for "$dir/q1.out" '"kind":"result"' 10
sql "INSERT INTO todos(id,title) VALUES (62,'q-c')"
wait_for "$dir/q1.out" '"kind":"diff"' 10
sql "BEGIN; UPDATE todos SET title = 'q-B' WHERE id = 61; DELETE FROM todos WHERE id = 62; COMMIT"
wait "$qp"
check "query --json exits 0 after --count updates" test $? -eq 0
rest=$(curl -sf -H "apikey: $RTSYNC_APIKEY" "$URL/rest/v1/todos?select=id,title&id=gte.60&order=id.desc&limit=2")
check "query --json: a result, then diffs at increasing positions that, applied, equal REST" node -e '
  const assert = require("assert");
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  assert.deepEqual(lines[0], {position: lines[0].position, id: "q", kind: "result", keys: ["[61]", "[60]"],
    rows: [{id: 61, title: "q-b"}, {id: 60, title: "q-a"}]});
  let keys = lines[0].keys, rows = lines[0].rows, pos = -1n;
  for (const m of lines) {
    assert.match(m.position, /^[0-9]+$/);
    assert.ok(BigInt(m.position) > pos); pos = BigInt(m.position);
    assert.equal(m.id, "q");
    if (m.kind !== "diff") continue;
    for (const op of m.ops) if (op.op === "leave" || op.op === "move") {
      const i = keys.indexOf(op.key); assert.ok(i >= 0); keys.splice(i, 1); rows.splice(i, 1); }
    for (const op of m.ops.filter((o) => o.op === "enter" || o.op === "move").sort((a, b) => a.index - b.index)) {
      keys.splice(op.index, 0, op.key); rows.splice(op.index, 0, op.row); }
    for (const op of m.ops.filter((o) => o.op === "change")) rows[keys.indexOf(op.key)] = op.row;
  }
  assert.deepEqual(lines.slice(1).map((m) => m.kind), ["diff", "diff"]);
  assert.deepEqual(rows, JSON.parse(process.argv[2]));
  assert.deepEqual(rows, [{id: 61, title: "q-B"}, {id: 60, title: "q-a"}]);' "$dir/q1.out" "$rest"

timeout 20 "$bin" query --quiet --count 2 todos 'select=id,title&id=gte.60&order=id' >"$dir/q2.out" 2>"$dir/q2.err" &
qp=$!
pids+=("$qp")
wait_for "$dir/q2.out" '^result' 10
sql "INSERT INTO todos(id,title) VALUES (63,'q-d')"
wait "$qp"
check "query prints the result and each diff as readable lines" bash -c "[ $? -eq 0 ] &&
  diff <(sed 's/@[0-9]*/@P/' '$dir/q2.out') - <<'OUT'
result @P: 2 rows
  id | title
  60 | q-a
  61 | q-B
diff @P: 1 entered; 3 rows
  + [63] at 2: 63 | q-d
OUT"
check "query --quiet writes nothing to stderr" test ! -s "$dir/q2.err"

timeout 10 "$bin" query --json --count 1 --token "$RTSYNC_APIKEY" todos 'select=done,n:count()&id=gte.60' \
	>"$dir/q3.out" 2>/dev/null </dev/null
rc=$?
rest=$(curl -sf -H "apikey: $RTSYNC_APIKEY" "$URL/rest/v1/todos?select=done,n:count()&id=gte.60&order=done")
check "an aggregate through --token alone equals the REST read" bash -c "[ $rc -eq 0 ] && node -e '
  const m = JSON.parse(require(\"fs\").readFileSync(process.argv[1], \"utf8\"));
  require(\"assert\").deepEqual(m.rows, JSON.parse(process.argv[2]));
  require(\"assert\").deepEqual(m.rows, [{done: false, n: 3}]);' '$dir/q3.out' '$rest'" </dev/null

"$bin" query --throttle-ms 100 todos >"$dir/q4.out" 2>"$dir/q4.err" &
qp=$!
pids+=("$qp")
wait_for "$dir/q4.out" '^result' 10
kill -TERM "$qp"
wait "$qp"
check "query exits 0 on SIGTERM" test $? -eq 0

kill -TERM "$server_pid"
wait "$server_pid"
check "server exits cleanly" test $? -eq 0

# wss:// and https:// against `serve --tls-cert --tls-key` (certificates made now)
"$(dirname "$0")/../tls/make-certs.sh" "$dir/certs"
"$bin" serve --listen 127.0.0.1:0 --jwt-secret "$secret" --data-dir "$dir/tlsdata" \
	--schema "$dir/schema.sql" --log-level error --workers 1 \
	--tls-cert "$dir/certs/server.pem" --tls-key "$dir/certs/server.key" >"$dir/tls.out" 2>&1 &
tls_pid=$!
pids+=("$tls_pid")
wait_for "$dir/tls.out" '^rtsync listening on https://' 10
TPORT=$(sed -n 's/^rtsync listening on https:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/tls.out")
check "serve --tls-cert prints https:// and wss:// URLs" bash -c "[ -n '$TPORT' ] &&
	grep -q '^  websocket   wss://127.0.0.1:$TPORT/realtime/v1/websocket$' '$dir/tls.out'"
WSS=wss://localhost:$TPORT
"$bin" listen --url "$WSS" --cacert "$dir/certs/ca.pem" --count 1 tlsroom >"$dir/t1.out" 2>"$dir/t1.err" &
lp=$!
pids+=("$lp")
wait_for "$dir/t1.err" 'joined' 10
timeout 10 "$bin" send --url "https://127.0.0.1:$TPORT" --cacert "$dir/certs/ca.pem" tlsroom ev '{"over":"tls"}' \
	>/dev/null 2>&1
check "send over https:// with --cacert exits 0" test $? -eq 0
for _ in $(seq 100); do kill -0 "$lp" 2>/dev/null || break; sleep 0.1; done
kill "$lp" 2>/dev/null
wait "$lp"
check "listen over wss:// with --cacert receives the broadcast" bash -c "grep -q '^broadcast ev {\"over\":\"tls\"}$' '$dir/t1.out'"
timeout 10 "$bin" listen --url "$WSS" --count 1 tlsroom >/dev/null 2>"$dir/t2.err"
check "without the CA: exit 1 and 'certificate verify failed'" bash -c "[ $? -eq 1 ] &&
	grep -q 'certificate verify failed: unable to get local issuer certificate' '$dir/t2.err'"
timeout 10 "$bin" send --url "$WSS" --cacert "$dir/certs/ca2.pem" tlsroom ev '{}' >/dev/null 2>"$dir/t3.err"
check "send trusting another CA exits 1 with the reason" bash -c "[ $? -eq 1 ] && grep -q 'certificate verify failed' '$dir/t3.err'"
timeout 10 "$bin" notify --url "https://localhost:$TPORT" --cacert "$dir/certs/ca.pem" --apikey "$svc" \
	--user cli-alice --title 'over tls' >"$dir/n8.out" 2>&1
check "notify over https:// with --cacert exits 0" bash -c "[ $? -eq 0 ] && grep -q '^notified 1 of 1' '$dir/n8.out'"
timeout 10 "$bin" inbox --url "https://localhost:$TPORT" --token "$alice" --count >/dev/null 2>"$dir/n9.err"
check "inbox over https:// without the CA exits 1 with the reason" bash -c "[ $? -eq 1 ] &&
	grep -q 'SSL certificate problem' '$dir/n9.err'"
timeout 10 "$bin" inbox --url "https://localhost:$TPORT" --insecure --token "$alice" --count >"$dir/n10.out" 2>&1
check "inbox over https:// --insecure exits 0" bash -c "[ $? -eq 0 ] && grep -q '^1 unread' '$dir/n10.out'"
timeout 10 "$bin" send --url "$WSS" --insecure tlsroom ev '{}' >/dev/null 2>&1
check "send --insecure exits 0" test $? -eq 0
RTSYNC_CACERT="$dir/certs/ca.pem" timeout 10 "$bin" write --url "$WSS" todos insert --record '{"id":90,"title":"tls"}' \
	>"$dir/t4.out" 2>&1
check "write over wss:// with RTSYNC_CACERT is applied" bash -c "[ $? -eq 0 ] && grep -q '^applied public.todos {\"id\":90' '$dir/t4.out'"
timeout 10 "$bin" write --url "$WSS" todos insert --record '{"id":91,"title":"tls"}' >/dev/null 2>"$dir/t5.err"
check "write without the CA exits 1 with the reason" bash -c "[ $? -eq 1 ] && grep -q 'certificate verify failed' '$dir/t5.err'"
timeout 10 "$bin" query --url "$WSS" --capath "$dir/certs/cadir" --json --count 1 todos 'id=eq.90' \
	>"$dir/t6.out" 2>/dev/null </dev/null
check "query over wss:// with --capath exits 0 with the row" bash -c "[ $? -eq 0 ] && grep -q '\"title\":\"tls\"' '$dir/t6.out'"
timeout 10 "$bin" query --url "$WSS" --count 1 todos >/dev/null 2>"$dir/t7.err" </dev/null
check "query without the CA exits 1 with the reason" bash -c "[ $? -eq 1 ] && grep -q 'certificate verify failed' '$dir/t7.err'"
timeout 10 "$bin" send --url "$WSS" --cacert /nonexistent tlsroom ev '{}' >/dev/null 2>"$dir/t8.err"
check "an unreadable --cacert exits 1 and says so" bash -c "[ $? -eq 1 ] && grep -q 'cannot load the CA certificates' '$dir/t8.err'"
kill -TERM "$tls_pid"
wait "$tls_pid"
check "TLS server exits cleanly" test $? -eq 0

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
