#!/usr/bin/env bash
# Issue #11 on a CUDA machine, real-size random weights, one table per part, < 8 minutes on an H100/H200:
#  1. memory plans (bf16 / int8 / int4) for the real config against the GPU's free memory;
#  2. decode tok/s at 1k context: eager bf16, compiled bf16, int8, int4 (bench/engine_decode.py --schemes,
#     real width, LAYERS decoder layers, extrapolated to 28) against the memory-bandwidth bound;
#  3. per scheme, in its own process: the full 28-layer model materialized tensor by tensor (quantized as it
#     lands, as the loader does), peak GPU memory, time to first token for a 10 s spoken question, and the
#     estimated end of speech -> first audio (TTFT + the tokens of the first chunk + token2wav's first chunk);
#  4. token2wav's first audio chunk on the GPU (fake real-size flow + HiFT).
# Goals: compiled bf16 >= 60% of the bandwidth bound; int4 peak <= 8 GB; end of speech -> first audio <= 300 ms.
#
#   bash bench/device.sh            # LAYERS=8 ROUNDS=5 OUT=/tmp/stepvoice_device
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LAYERS=${LAYERS:-8}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-/tmp/stepvoice_device}
CONFIG=tests/fixtures/step_audio_2_mini_config.json
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA GPU here"; exit 1; }
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.name}, {p.total_memory / 1e9:.0f} GB, torch {torch.__version__}')"

echo "== 1. memory plans (real config, bf16 weights, 4096-token KV cache, speech on)"
for q in none int8 int4; do
    timeout 60 "$PY" -m stepvoice model plan --config "$CONFIG" --device cuda --dtype bfloat16 --quantize "$q" \
        --json > "$OUT/plan_$q.json" && "$PY" - "$OUT/plan_$q.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
print(f"  {p['quantize']:>5}: weights {p['weights_bytes'] / 1e9:6.2f} GB, total {p['total_bytes'] / 1e9:6.2f} GB, "
      f"free {p['free_bytes'] / 1e9:6.1f} GB, fits {p['fits']}")
EOF
done

echo "== 2. decode at 1k context, real width, $LAYERS layers (extrapolated to 28), interleaved rounds"
timeout 300 "$PY" bench/engine_decode.py --device cuda --schemes eager-bf16 compiled-bf16 int8 int4 \
    --layers "$LAYERS" --context 1024 --tokens 32 --rounds "$ROUNDS" 2>&1 | grep -v Warning | tee "$OUT/decode.txt"

echo "== 3. full model per scheme: peak GPU memory, 10 s spoken question -> first token"
cat > "$OUT/full_model.py" <<'EOF'
"""One scheme, one process: the real 28-layer architecture with random weights placed tensor by tensor."""
import math, statistics, sys, time
import torch
from stepvoice.engine.checkpoint import build_meta
from stepvoice.engine.compile import make_decode_step
from stepvoice.engine.config import StepAudio2Config
from stepvoice.engine.generate import prefill
from stepvoice.engine.mel import placeholder_count
from stepvoice.engine.quantize import maybe_quantize_loaded
from stepvoice.engine.weights import _set_tensor

scheme, config_file = sys.argv[1], sys.argv[2]
dev = torch.device("cuda")
config = StepAudio2Config.from_file(config_file)
model = build_meta(config)
torch.cuda.reset_peak_memory_stats()
g = torch.Generator(device=dev).manual_seed(0)
for name, p in list(model.state_dict(keep_vars=True).items()):  # as weights.load_into does, without a disk
    t = torch.randn(p.shape, generator=g, device=dev, dtype=torch.bfloat16) * 0.02
    if "norm" in name or name.endswith("_ln.weight"):
        t += 1
    _set_tensor(model, name, t)
    maybe_quantize_loaded(model, name, scheme)
model.reset_rotary(dev)
model.eval()
weights_peak = torch.cuda.max_memory_allocated() / 1e9
step = make_decode_step(model, compile=True)
t = time.perf_counter(); step.warm_up(); compile_s = time.perf_counter() - t
# A 10 s spoken question: 1000 mel frames -> its audio placeholders, between a few text ids.
frames = 1000
n = placeholder_count(frames, config.audio_encoder_config.kernel_size, config.audio_encoder_config.adapter_stride)
ids = [151644, 8948, 198, 2610, 525, 151645, 151644, 14990, 198, 151688] + [151690] * n + [151689, 151645, 151644, 77091, 198]
mel = torch.randn(128, frames)
ttft = []
for _ in range(4):
    cache = step.new_cache(len(ids) + 256)
    torch.cuda.synchronize(); t = time.perf_counter()
    logits = prefill(model, cache, ids[:-1], [mel], [9])
    logits = step(cache, ids[-1], len(ids) - 1)
    token = int(logits.argmax())
    torch.cuda.synchronize(); ttft.append(time.perf_counter() - t)
steps = []
for i in range(64):
    torch.cuda.synchronize(); t = time.perf_counter()
    step(cache, token, len(ids) + i)
    torch.cuda.synchronize(); steps.append(time.perf_counter() - t)
peak = torch.cuda.max_memory_allocated() / 1e9
print(f"{scheme:>5}: peak GPU {peak:5.2f} GB (weights in place {weights_peak:5.2f} GB), compile {compile_s:5.1f} s, "
      f"TTFT 10 s question {statistics.median(ttft[1:]) * 1e3:6.1f} ms, decode {statistics.median(steps) * 1e3:5.2f} ms/token "
      f"({1 / statistics.median(steps):5.1f} tok/s)")
print(f"RESULT {scheme} {statistics.median(ttft[1:])} {statistics.median(steps)} {peak}")
EOF
for q in none int8 int4; do
    timeout 150 "$PY" "$OUT/full_model.py" "$q" "$CONFIG" 2>&1 | grep -v Warning | tee "$OUT/full_$q.txt"
done

echo "== 4. token2wav first chunk on the GPU (fake real-size flow + HiFT, a voice used before)"
timeout 120 "$PY" - "$OUT" <<'EOF' 2>&1 | grep -v Warning | tee "$OUT/token2wav.txt"
import statistics, sys, time
from pathlib import Path
import numpy as np
import torch
from stepvoice.engine.token2wav import SAMPLE_RATE, Token2Wav
from stepvoice.engine.token2wav.fake import write_fake_token2wav

folder = Path(sys.argv[1]) / "t2w_real"
if not (folder / "flow.pt").is_file():
    write_fake_token2wav(folder, "real")
t2w = Token2Wav.from_dir(folder, device="cuda")
voice = t2w.prepare_voice(np.random.default_rng(0).standard_normal(16000 * 6).astype(np.float32) * 0.1, 16000)
codes = np.random.default_rng(1).integers(0, 6561, 200).tolist()
first = t2w.first_chunk
t2w.warm(voice)
times = []
for _ in range(5):
    torch.cuda.synchronize(); t = time.perf_counter()
    s = t2w.stream(voice)
    out = s.push(codes[: first + 3])  # the first chunk plus the look-ahead it needs
    torch.cuda.synchronize(); times.append(time.perf_counter() - t)
print(f"token2wav first chunk ({first} codes, {len(out) / SAMPLE_RATE:.2f} s of audio): {statistics.median(times[1:]) * 1e3:.1f} ms")
print(f"RESULT t2w {statistics.median(times[1:])} {first}")
EOF

echo "== end of speech -> first audio (estimate: TTFT + tokens of the first chunk at 1 text : 4 audio + token2wav)"
"$PY" - "$OUT" <<'EOF'
import sys
from pathlib import Path
out = Path(sys.argv[1])
def result(name):
    for line in (out / name).read_text().splitlines() if (out / name).is_file() else []:
        if line.startswith("RESULT"):
            return line.split()[2:]
    return None
t2w = result("token2wav.txt")
for q in ("none", "int8", "int4"):
    r = result(f"full_{q}.txt")
    if not r or not t2w:
        print(f"  {q}: missing a measurement"); continue
    ttft, step, peak = map(float, r)
    first_codes = int(t2w[1]) + 3
    tokens = 1 + first_codes + (first_codes + 3) // 4  # <tts_start>, the codes, their text tokens
    total = ttft + tokens * step + float(t2w[0])
    print(f"  {q:>5}: {total * 1e3:6.0f} ms  (TTFT {ttft * 1e3:.0f} + {tokens} tokens x {step * 1e3:.1f} ms + token2wav "
          f"{float(t2w[0]) * 1e3:.0f}); peak GPU {peak:.2f} GB{'  <= 8 GB' if q == 'int4' and peak <= 8 else ''}")
EOF
