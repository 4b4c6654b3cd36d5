"""Checks model.py's varlen attention plumbing on the CPU: greedy tokens through continuous batching with it equal
transformers' own generate() (plain SDPA), for prompts longer than the batch-token budget (split prefills).

torch's varlen kernel runs on CUDA only, so here it is replaced by a per-sequence SDPA reference with the causal
mask aligned bottom-right; on the GPU model.py checks the real kernel against the same reference before use.
Needs torch and transformers (the CPU venv of README.md):  ~/.cache/unbusy-llm-venv/bin/python check_attention.py
"""

import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.attention.varlen

sys.modules["triton_python_backend_utils"] = types.SimpleNamespace()  # model.py imports it; unused here
sys.path.insert(0, str(Path(__file__).resolve().parent))
import model  # noqa: E402

model.import_engine("")
from transformers import AttentionInterface, GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.generation import ContinuousBatchingConfig  # noqa: E402


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale=None, window_size=(-1, -1)):
    out = torch.zeros_like(q)
    repeat = q.shape[1] // k.shape[1]
    for i in range(len(cu_q) - 1):
        (a, b), (c, d) = (int(cu_q[i]), int(cu_q[i + 1])), (int(cu_k[i]), int(cu_k[i + 1]))
        if b == a:
            continue
        qi = q[a:b].transpose(0, 1)
        ki, vi = (t[c:d].transpose(0, 1).repeat_interleave(repeat, 0) for t in (k, v))
        mask = torch.ones(b - a, d - c, dtype=torch.bool).tril((d - c) - (b - a))
        out[a:b] = torch.nn.functional.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scale).transpose(
            0, 1
        )
    return out


def main() -> None:
    torch.nn.attention.varlen.varlen_attn = reference_varlen
    shape = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=1000, max_position_embeddings=4096, eos_token_id=-1,
    )  # fmt: skip
    torch.manual_seed(0)
    llm = LlamaForCausalLM(shape).float().eval()
    prompts = [torch.randint(0, 1000, (n,)).tolist() for n in (5, 17, 40, 90)]
    want = [
        llm.generate(torch.tensor([p]), max_new_tokens=6, do_sample=False, eos_token_id=-1)[0, len(p) :].tolist()
        for p in prompts
    ]
    AttentionInterface.register(model.VARLEN, model.varlen_attention)
    llm.config._attn_implementation_internal = model.VARLEN
    generation = GenerationConfig(max_new_tokens=6, do_sample=False, eos_token_id=-1)
    batching = ContinuousBatchingConfig(block_size=16, num_blocks=64, max_batch_tokens=32, allow_block_sharing=False)
    manager = llm.init_continuous_batching(generation_config=generation, continuous_batching_config=batching)
    manager.start()
    for i, prompt in enumerate(prompts):
        manager.add_request(prompt, request_id=f"r{i}", max_new_tokens=6)
    got, started = {}, time.time()
    while len(got) < len(prompts) and time.time() - started < 60:
        out = manager.get_result(timeout=0.5)
        if out is not None and out.is_finished():
            got[out.request_id] = out.generated_tokens
    manager.stop(block=True, timeout=10)
    got = [got.get(f"r{i}") for i in range(len(prompts))]
    print(f"generate():           {want}\ncontinuous + varlen:  {got}")
    if got != want:
        raise SystemExit("varlen attention through continuous batching differs from generate()")
    print("same tokens")


if __name__ == "__main__":
    main()
