#!/usr/bin/env bash
# Runs every data-safety case of docs/safety.md against a built memkin and
# writes the table: each case's command, exit code, stderr and what was left
# on disk, as they came out of this run.
#
#   bash scripts/safety-cases.sh [MEMKIN] > docs/safety-table.md
#
# MEMKIN defaults to target/release/memkin. Needs MEMKIN_DATA only for the
# named-dataset cases (digits is embedded). Kills are driven by progress (rows
# seen in results.csv), never by a timer. Run as root for the /dev/null case
# to mean what it says.
set -uo pipefail
cd "$(dirname "$0")/.."
M=$(realpath "${1:-target/release/memkin}")
[ -x "$M" ] || { echo "no memkin at $M (cargo build --release)" >&2; exit 1; }
W=$(mktemp -d /tmp/memkin-safety.XXXXXX)
trap 'rm -rf "$W"' EXIT
export M
n=0

# What a cell may hold: one line, pipes escaped, absolute scratch paths shown as W/.
cell() { tr '\r' '\n' | grep -v '^\s*$' | sed "s#$W#W#g" | tail -n "${2:-3}" | tr '\n' ' ' | sed 's/|/\\|/g; s/ *$//' | cut -c1-"${1:-400}"; }

# case TITLE SETUP COMMAND LEFT: SETUP runs first (not shown), then COMMAND
# (shown, stderr captured, stdout dropped), then LEFT describes the disk.
case_() {
  local title=$1 setup=$2 cmd=$3 left=$4
  n=$((n + 1))
  local d="$W/c$n"
  mkdir -p "$d"
  (cd "$d" && . "$LIB" && eval "$setup") >/dev/null 2>&1
  local err rc
  err=$(cd "$d" && . "$LIB" && eval "$cmd" 2>&1 >/dev/null)
  rc=$?
  local l
  l=$(cd "$d" && . "$LIB" && eval "$left" 2>&1 | cell 300 6)
  printf '| %d | %s | `%s` | %s | %s | %s |\n' "$n" "$title" "$(printf '%s' "$cmd" | sed 's/|/\\|/g')" "$rc" "$(printf '%s' "$err" | cell 400 2)" "$l"
}

# Helpers the cases use.
cat > "$W/lib.sh" <<'LIB'
mkspec() { # a small digits sweep, one row per point
  cat > s.toml <<EOF
dataset = "digits"
readout = "mlp"
epochs = ${EPOCHS:-5}
batch = 1
seed = 3
train_subset = 400
test_subset = 100
[grid]
alpha = { linspace = [0.2, 1.0, ${NA:-3}] }
beta = { values = [0.5, 1.0] }
EOF
}
mknpy() { # x.npy [S, T] float32 and params.npy [P, 2]
  python3 - <<'PY'
import struct, sys
def npy(path, shape, vals):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    hdr = hdr + " " * (63 - (len(hdr) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        f.write(struct.pack("<%df" % len(vals), *vals))
npy("x.npy", (2, 3), [0.1, 0.5, 0.9, 0.3, 0.2, 0.7])
npy("params.npy", (2, 2), [0.7, 1.0, 0.5, 0.8])
PY
}
rows() { [ -f "$1" ] && echo $(( $(wc -l < "$1") - 1 )) || echo 0; }
kill_after_rows() { # CMD... : start, SIGKILL once >= K rows are in $CSV
  "$@" 2>/dev/null & local pid=$!
  for _ in $(seq 1 4000); do [ "$(rows "$CSV")" -ge "$K" ] && break; sleep 0.02; done
  kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
  echo "killed at $(rows "$CSV") rows" >&2
}
partials() { find . -name '.memkin-partial-*' -o -name '*.partial-*' | wc -l | sed 's/^/partials: /'; }
LIB
export LIB="$W/lib.sh"
S=". \$LIB"

cat <<'HEAD'
| # | case | command | exit | stderr | left on disk |
|---|---|---|---|---|---|
HEAD

# --- the cases of issue 11 -------------------------------------------------
case_ "simulate --out names the --input" "$S; mknpy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out x.npy' \
  'sha256sum x.npy | cut -c1-16; ls -A'
case_ "--out and --status name one file" "$S; mknpy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out o.npy --status ./o.npy' \
  'ls -A'
case_ "--out names --params" "$S; mknpy" \
  '$M simulate --input x.npy --params params.npy --out params.npy' \
  'sha256sum params.npy | cut -c1-16; ls -A'
case_ "sweep without --resume, one bad row in the middle" \
  "$S; mkspec; \$M sweep s.toml --out o --backend cpu; sed -i '3s/,0\\.[0-9]*,/,9.9,/' o/results.csv; sha256sum o/results.csv > before" \
  '$M sweep s.toml --out o --backend cpu' \
  'sha256sum -c before; echo rows: $(rows o/results.csv); grep -o "\"status\": \"[a-z]*\"" o/manifest.json'
case_ "... the same with --resume: only that row recomputed" \
  "$S; mkspec; \$M sweep s.toml --out o --backend cpu; cp o/results.csv ref.csv; sed -i '3s/,0\\.[0-9]*,/,9.9,/' o/results.csv" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'echo rows: $(rows o/results.csv); diff <(cut -d, -f1-4 ref.csv | sort) <(cut -d, -f1-4 o/results.csv | sort) && echo "rows equal the first run (but seconds)"'
case_ "mc: model file retrained between a kill and --resume" \
  "$S; \$M run --dataset digits --backend cpu --save-model m.json; printf 'dataset = \"digits\"\\ndraws = 400\\nbatch = 1\\nmodel = \"m.json\"\\n[variability]\\nsigma_alpha = 0.05\\n' > mc.toml; CSV=o/draws.csv K=3 kill_after_rows \$M mc mc.toml --out o --backend cpu; \$M run --dataset digits --backend cpu --seed 9 --save-model m.json; sha256sum o/draws.csv > before" \
  '$M mc mc.toml --out o --backend cpu --resume' \
  'sha256sum -c before; grep -o "\"status\": \"[a-z]*\"" o/manifest.json; partials'
case_ "sweep: dataset file named by the spec changed" \
  "$S; python3 -c \"import random; random.seed(1); print('\\n'.join(','.join([str(i%2)]+[str(round(random.random()+i%2,3)) for _ in range(8)]) for i in range(80)))\" > d.csv; printf 'dataset = \"d.csv\"\\n[grid]\\nalpha = { values = [0.5, 1.0] }\\nbeta = { values = [1.0] }\\n' > s.toml; \$M sweep s.toml --out o --backend cpu; echo '1,0,0,0,0,0,0,0,0' >> d.csv" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'ls -A o; grep -A1 "\"inputs\"" o/manifest.json | tail -1 | cut -c1-70'
case_ "a later output fails: run --out where feature_maps.png is a directory" "mkdir -p d/feature_maps.png" \
  '$M run --dataset digits --backend cpu --out d' \
  'ls -A d; partials'
case_ "kill -9 mid-sweep, then rerun --resume: no temporary left" \
  "$S; EPOCHS=40 NA=6 mkspec; CSV=o/results.csv K=2 kill_after_rows \$M sweep s.toml --out o --backend cpu" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'echo rows: $(rows o/results.csv); partials'
case_ "stale temporaries of dead processes (both name forms) removed by the next run" \
  "$S; mkdir o; h=\$(printf %s \"\$(cat /proc/sys/kernel/hostname)\" | sha256sum | cut -c1-8); head -c 1000000 /dev/zero > \"o/.memkin-partial-4194999.\$h-report.json\"; head -c 1000 /dev/zero > o/.report.json.partial-4194998" \
  '$M run --dataset digits --backend cpu --out o' \
  'ls -A o'
case_ "--out /dev/null (as root)" "$S; mknpy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out /dev/null' \
  'stat -c "%n: %F" /dev/null'
case_ "outputs that cannot fit in memory: simulate, 1e6 parameter sets" \
  "python3 -c \"import struct; h=\\\"{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 28), }\\\"; h=h+' '*(63-(len(h)+10)%64)+'\\\\n'; open('x.npy','wb').write(b'\\\\x93NUMPY\\\\x01\\\\x00'+struct.pack('<H',len(h))+h.encode()+b'\\\\0'*112000); h=\\\"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 2), }\\\"; h=h+' '*(63-(len(h)+10)%64)+'\\\\n'; open('p.npy','wb').write(b'\\\\x93NUMPY\\\\x01\\\\x00'+struct.pack('<H',len(h))+h.encode()+struct.pack('<2f',0.7,1.0)*1000000)\"" \
  '$M simulate --input x.npy --params p.npy --out o.npy' \
  'ls -A'
case_ "bench --sizes 1e9" "" \
  '$M bench --backend cpu --sizes 1e9 --out b' \
  'ls -A'
case_ "decreasing grid axis" "printf 'dataset = \"digits\"\\n[grid]\\nalpha = { values = [1.0, 0.5] }\\nbeta = { values = [1.0] }\\n' > s.toml" \
  '$M sweep s.toml --out o --backend cpu' \
  'ls -A'
case_ "repeated grid value (linspace)" "printf 'dataset = \"digits\"\\n[grid]\\nalpha = { linspace = [0.5, 0.5, 3] }\\nbeta = { values = [1.0] }\\n' > s.toml" \
  '$M sweep s.toml --out o --backend cpu' \
  'ls -A'
case_ "merge: a row edited to another parameter value" \
  "$S; mkspec; for i in 0 1; do \$M sweep s.toml --out sh\$i --shard \$i/2 --backend cpu; done; sed -i '2s/^\\([0-9]*\\),\\([0-9]*\\),[^,]*,/\\1,\\2,0.77,/' sh1/results.csv" \
  '$M merge sh0 sh1 --out m' \
  'ls -A; ls m 2>&1 | head -1'
case_ "mc sigma that overflows" "printf 'dataset = \"digits\"\\ndraws = 10\\n[variability]\\nsigma_alpha = 1e308\\n' > mc.toml" \
  '$M mc mc.toml --out o --backend cpu' \
  'ls -A'
case_ "output is a directory" "$S; mknpy; mkdir o.npy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out o.npy' \
  'ls -A o.npy | wc -l | sed "s/^/entries in o.npy: /"'
case_ "output directory not writable (immutable, even for root)" "$S; mknpy; mkdir ro; chattr +i ro 2>/dev/null || chmod 555 ro" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out ro/o.npy' \
  'ls -A ro; chattr -i ro 2>/dev/null; true'
case_ "input is a directory" "mkdir x.npy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out o.npy' \
  'ls -A'
case_ "a gpu run on lavapipe, XDG_RUNTIME_DIR unset" "$S; mknpy" \
  'env -u XDG_RUNTIME_DIR $M simulate --input x.npy --alpha 0.7 --beta 1 --out o.npy --backend gpu' \
  'ls -A'

# --- more: aliases, odd file types, sizes, kills, concurrency, tampering ---
case_ "--out a symbolic link to the --input" "$S; mknpy; ln -s x.npy link.npy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out link.npy' \
  'sha256sum x.npy | cut -c1-16; ls -l link.npy | cut -c1 '
case_ "--out a hard link to the --input" "$S; mknpy; ln x.npy hard.npy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out hard.npy' \
  'sha256sum x.npy hard.npy | cut -c1-16'
case_ "--out the --input through ../ and a symlinked directory" "$S; mkdir a; cd a; mknpy; cd ..; ln -s a b" \
  '$M simulate --input a/x.npy --alpha 0.7 --beta 1 --out b/../a/./x.npy' \
  'ls -A a'
case_ "--out a FIFO (no hang)" "$S; mknpy; mkfifo f.npy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out f.npy' \
  'stat -c "%n: %F" f.npy'
case_ "--out a dangling symbolic link" "$S; mknpy; ln -s nowhere/o.npy d.npy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out d.npy' \
  'ls -A'
case_ "--out a symbolic link to another regular file: written through" "$S; mknpy; echo old > real.npy; ln -s real.npy l.npy" \
  '$M simulate --input x.npy --alpha 0.7 --beta 1 --out l.npy' \
  'ls -l l.npy | cut -c1; head -c 6 real.npy | od -c | head -1 | cut -c9-40'
case_ "run --save-model a hard link to its CSV dataset" "printf '0,0.1,0.2\\n1,0.9,0.8\\n0,0.2,0.1\\n1,0.8,0.9\\n0,0.1,0.3\\n1,0.7,0.9\\n0,0.3,0.2\\n1,0.9,0.7\\n0,0.2,0.2\\n1,0.8,0.8\\n' > d.csv; ln d.csv m.json" \
  '$M run --dataset d.csv --backend cpu --save-model m.json' \
  'head -1 d.csv; ls -A'
case_ "fit --out holds a hard link of the trace as fit.json" "cp $PWD/examples/traces/synthetic_diffusive.csv t.csv; mkdir o; ln t.csv o/fit.json" \
  '$M fit --trace t.csv --model diffusive --out o' \
  'head -1 t.csv; ls -A o'
case_ "fit --trace a directory" "mkdir t.csv" \
  '$M fit --trace t.csv --model diffusive --out o' \
  'ls -A'
case_ "fit --trace /dev/null (empty)" "" \
  '$M fit --trace /dev/null --model diffusive --out o' \
  'ls -A'
case_ "bench --out where bench.csv is a directory (before any timing)" "mkdir -p b/bench.csv" \
  '$M bench --backend cpu --sizes 1000 --steps 10 --out b' \
  'ls -A b b/bench.csv'
case_ "cost --out a regular file" "echo keep > c" \
  '$M cost --dataset digits --backend cpu --out c' \
  'cat c'
case_ "sweep --out a regular file" "$S; mkspec; echo keep > o" \
  '$M sweep s.toml --out o --backend cpu' \
  'cat o'
case_ "sweep --out a non-empty directory without a manifest" "$S; mkspec; mkdir o; echo mine > o/notes.txt" \
  '$M sweep s.toml --out o --backend cpu' \
  'ls -A o'
case_ "sweep --out a study of another spec" "$S; mkspec; \$M sweep s.toml --out o --backend cpu; sed -i 's/seed = 3/seed = 4/' s.toml; sha256sum o/results.csv > before" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'sha256sum -c before'
case_ "sweep --shard 3/3" "$S; mkspec" \
  '$M sweep s.toml --out o --backend cpu --shard 3/3' \
  'ls -A'
case_ "sweep with 1e8 planned points" "printf 'dataset = \"digits\"\\n[grid]\\nalpha = { linspace = [0.1, 1.0, 10000] }\\nbeta = { linspace = [0.1, 1.0, 10000] }\\n' > s.toml" \
  '$M sweep s.toml --out o --backend cpu' \
  'ls -A'
case_ "mc draws = 0" "printf 'dataset = \"digits\"\\ndraws = 0\\n' > mc.toml" \
  '$M mc mc.toml --out o --backend cpu' \
  'ls -A'
case_ "mc relative sigma times a large nominal overflows" "printf 'dataset = \"digits\"\\ndraws = 4\\nalpha = 1e20\\n[variability]\\nrelative = true\\nsigma_alpha = 1e15\\n' > mc.toml" \
  '$M mc mc.toml --out o --backend cpu' \
  'ls -A'
case_ "kill -9 at a random row (1-8), --resume: the uninterrupted rows" \
  "$S; EPOCHS=30 NA=6 mkspec; \$M sweep s.toml --out ref --backend cpu; CSV=o/results.csv K=\$(( RANDOM % 8 + 1 )) kill_after_rows \$M sweep s.toml --out o --backend cpu" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'diff <(cut -d, -f1-7 ref/results.csv) <(cut -d, -f1-7 o/results.csv) && echo "equal to the uninterrupted run (val/test/diverged columns)"; partials'
case_ "a torn last line (cut mid-row)" "$S; mkspec; \$M sweep s.toml --out o --backend cpu; cp o/results.csv ref.csv; head -c -7 ref.csv > o/results.csv; sed -i 's/\"complete\"/\"running\"/' o/manifest.json" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'diff <(cut -d, -f1-7 ref.csv) <(cut -d, -f1-7 o/results.csv) && echo "rows equal"'
case_ "two sweeps on one study directory at once (second started once rows appear)" \
  "$S; EPOCHS=60 NA=6 mkspec; (\$M sweep s.toml --out o --backend cpu 2>/dev/null &); for i in \$(seq 1 3000); do [ \"\$(rows o/results.csv)\" -ge 1 ] && break; sleep 0.02; done" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'while [ "$(grep -c complete o/manifest.json)" = 0 ]; do sleep 0.2; done; echo rows: $(rows o/results.csv); grep -o "\"status\": \"[a-z]*\"" o/manifest.json'
case_ "tampered manifest (plan digest edited), --resume" "$S; mkspec; \$M sweep s.toml --out o --backend cpu; sed -i 's/\"plan_sha256\": \"./\"plan_sha256\": \"0/' o/manifest.json" \
  '$M sweep s.toml --out o --backend cpu --resume' \
  'ls -A o'
case_ "tampered results.csv (a metric made text), merged" "$S; mkspec; for i in 0 1; do \$M sweep s.toml --out sh\$i --shard \$i/2 --backend cpu; done; sed -i '2s/,[^,]*\$/,oops/' sh0/results.csv" \
  '$M merge sh0 sh1 --out m' \
  'ls -A'
case_ "merge with one shard missing" "$S; mkspec; for i in 0 1 2; do \$M sweep s.toml --out sh\$i --shard \$i/3 --backend cpu; done" \
  '$M merge sh0 sh2 --out m' \
  'ls -A'
case_ "merge with one shard given twice" "$S; mkspec; for i in 0 1; do \$M sweep s.toml --out sh\$i --shard \$i/2 --backend cpu; done" \
  '$M merge sh0 sh1 ./sh1 --out m' \
  'ls -A'
case_ "merge --out one of the shards" "$S; mkspec; for i in 0 1; do \$M sweep s.toml --out sh\$i --shard \$i/2 --backend cpu; done; sha256sum sh1/results.csv > before" \
  '$M merge sh0 sh1 --out sh1' \
  'sha256sum -c before'
case_ "merge: shards that read different versions of the dataset" "printf '0,0.1,0.2\\n1,0.9,0.8\\n0,0.2,0.1\\n1,0.8,0.9\\n0,0.1,0.3\\n1,0.7,0.9\\n0,0.3,0.2\\n1,0.9,0.7\\n0,0.2,0.2\\n1,0.8,0.8\\n' > d.csv; printf 'dataset = \"d.csv\"\\n[grid]\\nalpha = { values = [0.5, 1.0] }\\nbeta = { values = [1.0] }\\n' > s.toml; \$M sweep s.toml --out sh0 --shard 0/2 --backend cpu; echo '1,0.6,0.6' >> d.csv; \$M sweep s.toml --out sh1 --shard 1/2 --backend cpu" \
  '$M merge sh0 sh1 --out m' \
  'ls -A'
case_ "mc complete, then its model file deleted: rerun" "$S; \$M run --dataset digits --backend cpu --save-model m.json; printf 'dataset = \"digits\"\\ndraws = 3\\nmodel = \"m.json\"\\n' > mc.toml; \$M mc mc.toml --out o --backend cpu; rm m.json" \
  '$M mc mc.toml --out o --backend cpu' \
  'ls -A o'
case_ "run --save-model into directories that do not exist yet" "" \
  '$M run --dataset digits --backend cpu --save-model new/deeper/m.json' \
  'find new -type f; partials'

echo
echo "$n cases; memkin $("$M" --version | cut -d' ' -f2), $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), run as $(id -un)."
