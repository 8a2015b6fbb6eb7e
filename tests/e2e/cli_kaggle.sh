#!/usr/bin/env bash
# whisker-cli kaggle against the Kaggle stand-in on 127.0.0.1: download (skip when current,
# resume after a cut, rules and credential errors), extraction, a checked submission whose bytes
# reach the server with its description, the score, an ERROR submission, the legacy fallback.
set -euo pipefail
cli=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
server_pid=
cleanup() { [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [[ -f "$work/state/requests.log" ]] && tail -5 "$work/state/requests.log" >&2; exit 1; }
comp=dogs-vs-cats-redux-kernels-edition

# The competition's data: the sample competition, zipped the way Kaggle serves it.
"$cli" -q sample "$work/src" --train 20 --test 10
(cd "$work/src" && python3 -c "
import zipfile
with zipfile.ZipFile('$work/$comp.zip', 'w') as z:
    for f in ('train.zip', 'test.zip', 'sample_submission.csv'): z.write(f)")
mkdir -p "$work/state"
python3 -u "$here/support/kaggle_test_server.py" --state "$work/state" --competition "$comp" \
  --archive "$work/$comp.zip" --solution "$work/src/sample_solution.csv" >"$work/port" &
server_pid=$!
for _ in $(seq 50); do grep -q PORT "$work/port" 2>/dev/null && break; sleep 0.1; done
port=$(awk '{print $2}' "$work/port")
export KAGGLE_API_ENDPOINT=http://127.0.0.1:$port KAGGLE_CONFIG_DIR=$work/kaggle
control() {
  python3 -c "import urllib.request, sys; urllib.request.urlopen(urllib.request.Request(
    'http://127.0.0.1:$port/control', data=('{\"modes\": [' + sys.argv[1] + ']}').encode(), method='POST'))" "$1"
}

# No credentials: the help says how to set them up.
if "$cli" kaggle download $comp -p "$work/dl" 2>"$work/err"; then fail "download without credentials"; fi
grep -q "no Kaggle credentials" "$work/err" && grep -q "kaggle.json" "$work/err" || fail "credentials help: $(cat "$work/err")"

# login writes kaggle.json readable only by the user; wrong key -> 401 help, key never shown.
echo "wrong-key-999" | "$cli" -q kaggle login --username tester --key -
test "$(stat -c %a "$work/kaggle/kaggle.json")" = 600 || fail "kaggle.json mode"
if "$cli" kaggle download $comp -p "$work/dl" 2>"$work/err"; then fail "download with a wrong key"; fi
grep -q "refused the credentials of user 'tester'" "$work/err" || fail "401 message: $(cat "$work/err")"
grep -q "wrong-key-999" "$work/err" && fail "the key appeared in an error message"
"$cli" -q kaggle login --username tester --key secret-key-123
chmod 644 "$work/kaggle/kaggle.json"
"$cli" kaggle files $comp 2>"$work/err" | grep -q "train.zip" || fail "files"
grep -q "readable by other users" "$work/err" || fail "loose permission warning"
chmod 600 "$work/kaggle/kaggle.json"

# An unknown competition, and a rate limit that is waited out (Retry-After).
if "$cli" -q kaggle files no-such-competition 2>"$work/err"; then fail "unknown competition"; fi
grep -q "not found" "$work/err" || fail "unknown competition message: $(cat "$work/err")"
control '"ratelimit"'
start=$(date +%s.%N)
"$cli" kaggle files $comp | grep -q "test.zip" || fail "files after 429"
python3 -c "import sys; sys.exit(0 if float('$(date +%s.%N)') - $start >= 0.9 else 1)" || fail "Retry-After not honoured"

# Rules not accepted.
control '"rules"'
if "$cli" -q kaggle download $comp -p "$work/dl" 2>"$work/err"; then fail "download without accepting the rules"; fi
grep -q "https://www.kaggle.com/c/$comp/rules" "$work/err" || fail "rules URL: $(cat "$work/err")"

# A download cut in the middle resumes; storage never sees the credentials; a rerun skips.
control '"cut", "flaky"'
"$cli" kaggle download $comp -p "$work/dl" --extract | tee "$work/out"
cmp "$work/dl/$comp.zip" "$work/$comp.zip" || fail "downloaded bytes differ"
grep '"/storage/' "$work/state/requests.log" | grep -v '"auth": ""' && fail "credentials sent to storage"
grep '"/storage/' "$work/state/requests.log" | grep -q '"range": "bytes=' || fail "no ranged resume request"
test -f "$work/dl/train/cat.0.jpg" || fail "nested train.zip not extracted"
control ''
"$cli" kaggle download $comp -p "$work/dl" | grep -q "Up to date" || fail "current copy not skipped"

# Prepare the project from the download, then submissions.
"$cli" -q data prepare "$work/project" --from "$work/dl/$comp.zip"
python3 - "$work" <<'PY'
import csv, sys
w = sys.argv[1]
ids = [r["id"] for r in csv.DictReader(open(f"{w}/project/sample_submission.csv"))]
sol = {r["id"]: r["label"] for r in csv.DictReader(open(f"{w}/src/sample_solution.csv"))}
with open(f"{w}/good.csv", "w") as f:
    f.write("id,label\n" + "".join(f"{i},{0.9 if sol[i] == '1' else 0.1}\n" for i in ids))
with open(f"{w}/bad.csv", "w") as f:
    f.write("id,label\n" + "".join(f"{i},{1.5 if n == 0 else 0.5}\n" for n, i in enumerate(ids[:-1])) + f"{ids[0]},0.5\n")
PY
if "$cli" kaggle submit $comp -f "$work/bad.csv" -m "bad" --project "$work/project" 2>"$work/err"; then fail "bad file accepted"; fi
grep -q "ids appear more than once" "$work/err" && grep -q "outside \[0, 1\]" "$work/err" || fail "check message: $(cat "$work/err")"
grep -q "StartSubmissionUpload" "$work/state/requests.log" && fail "a refused file was uploaded"

"$cli" kaggle submit $comp -f "$work/good.csv" -m "resnet34, TTA" --project "$work/project" --poll-interval 0.2 | tee "$work/out"
grep -q "Public score: 0.10536" "$work/out" || fail "score: $(cat "$work/out")"
upload=$(ls "$work/state/uploads" | head -1)
cmp "$work/state/uploads/$upload" "$work/good.csv" || fail "uploaded bytes differ"
grep -q '"description": "resnet34, TTA"' "$work/state/submissions.json" || fail "description did not arrive"
# With --project the submission and its score join the project's history (the workbench shows it).
python3 - "$work/project/submissions.json" <<'PY' || fail "project history: $(cat "$work/project/submissions.json")"
import json, sys
h = json.load(open(sys.argv[1]))
assert h["competition"] == "dogs-vs-cats-redux-kernels-edition", h
[s] = [s for s in h["submissions"] if s["message"] == "resnet34, TTA"]
assert s["status"] == "COMPLETE" and s["public_score"] == "0.10536" and s["ref"], s
PY
grep '"/upload/' "$work/state/requests.log" | grep -q '"auth": "", "content_type": ""' || fail "upload carried credentials or a content type"

# gzip is accepted; a submission that ends in ERROR says why; a failed PUT says nothing was submitted.
gzip -c "$work/good.csv" > "$work/good.csv.gz"
control '"scoreerror"'
if "$cli" kaggle submit $comp -f "$work/good.csv.gz" -m "second" --project "$work/project" --poll-interval 0.2 2>"$work/err"; then
  fail "ERROR submission reported success"
fi
grep -q "Submission must have 100 rows" "$work/err" || fail "error description: $(cat "$work/err")"
control '"putfail"'
if "$cli" -q kaggle submit $comp -f "$work/good.csv" -m "third" --no-check 2>"$work/err"; then fail "failed PUT reported success"; fi
grep -q "upload of good.csv failed (HTTP 500)" "$work/err" || fail "PUT failure: $(cat "$work/err")"
control '"limit"'
if "$cli" -q kaggle submit $comp -f "$work/good.csv" -m "fourth" --no-check 2>"$work/err"; then fail "limit ignored"; fi
grep -q "submission limit is reached" "$work/err" || fail "limit message: $(cat "$work/err")"

# The legacy REST API when the RPC paths are missing.
control '"rpc404"'
"$cli" kaggle submissions $comp | tee "$work/out"
grep -q "resnet34, TTA" "$work/out" && grep -q "0.10536" "$work/out" || fail "legacy submissions list"
"$cli" kaggle submit $comp -f "$work/good.csv" -m "legacy path" --no-check --poll-interval 0.2 | grep -q "Public score: 0.10536" \
  || fail "legacy submit"
grep -q '/api/v1/competitions/submissions/submit/' "$work/state/requests.log" || fail "legacy submit path not used"
echo "e2e kaggle: all checks passed"
