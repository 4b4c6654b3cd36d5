"""Triton Python-backend LLM: a Llama-shaped decoder with random weights on transformers' continuous batching.

Decoupled and streaming: a request carries `prompt_tokens` (INT32, the prompt's length), `max_tokens` (INT32)
and `seed` (INT32); the model makes the prompt's token ids from the seed, hands the request to
transformers' ContinuousBatchingManager and streams responses as tokens come: the first token at once,
then one response every STREAM_EVERY tokens, the last with Triton's FINAL flag. Each response carries
`tokens` (the new token ids) and `n` (the tokens generated so far). eos is off (-1), so every request
generates exactly max_tokens. An optional `stream_every` (INT32) overrides STREAM_EVERY for one request (a large
value: the first response and the final one only, as the engine profile's quiet decoders ask).

It exports the vLLM backend's metric names through Triton's custom-metrics API (labels model, version),
so a scraper reads it as it would read Triton's vLLM backend: vllm:prompt_tokens_total,
vllm:generation_tokens_total, vllm:time_to_first_token_seconds, vllm:time_per_output_token_seconds,
vllm:e2e_request_latency_seconds (vLLM's buckets), and the engine gauges vLLM itself has but the Triton
vLLM backend does not export: vllm:num_requests_running, vllm:num_requests_waiting,
vllm:gpu_cache_usage_perc (and its vLLM V1 name vllm:kv_cache_usage_perc), vllm:num_preemptions_total.

Engine settings come from config.pbtxt parameters (written by harness.py): the shape (HIDDEN, LAYERS, HEADS,
KV_HEADS, FFN, VOCAB), DTYPE, BLOCK_SIZE, NUM_BLOCKS (0: from KV_MEMORY, a fraction of free GPU memory),
MAX_BATCH_TOKENS, CUDA_GRAPHS, ATTENTION (varlen: torch's FlashAttention varlen kernel on the paged
cache, checked at start against SDPA; sdpa: transformers' paged|sdpa), QUEUE_LIMIT (refuse a request when
that many wait; 0 = no limit, as vLLM), STREAM_EVERY, STEP_LOG (a file: one line per engine step, see StepLog).
"""

import json
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass

import triton_python_backend_utils as pb_utils

# vLLM's bucket boundaries, as the Triton vLLM backend declares them (src/utils/metrics.py).
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
E2E_BUCKETS = [1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0]
VARLEN = "paged|unbusy_flash_varlen"  # "flash" in the name: continuous batching then builds no 4D mask
_REPEAT_KV = [1]  # >1 where torch's varlen kernel wants as many key heads as query heads

_preempted = [0]
torch = None


def import_engine(site_packages: str):
    """torch and transformers, imported once the parameters are read: the backend's stub embeds its own Python and
    passes no environment, so a venv's packages (a CPU run) come through the SITE_PACKAGES parameter."""
    global torch
    if site_packages:
        sys.path.insert(0, site_packages)
    import torch as imported
    from transformers.generation.continuous_batching import offloading_manager

    torch = imported
    # Preemptions: the engine evicts running requests (back to waiting, recomputed later) when the KV cache is full.
    offload = offloading_manager.OffloadingManager.offload_requests

    def counting_offload(self):
        evicted = offload(self)
        _preempted[0] += evicted
        return evicted

    offloading_manager.OffloadingManager.offload_requests = counting_offload


def varlen_attention(
    module, q, k, v, attention_mask, cache, cu_seq_lens_q, cu_seq_lens_k, max_seqlen_q, max_seqlen_k, **kwargs
):
    """Paged attention with torch's own FlashAttention varlen kernel (no flash-attn package needed): the packed
    queries of the batch against each request's keys read from the paged cache, causal (aligned bottom-right)."""
    from torch.nn.attention.varlen import varlen_attn

    if isinstance(cu_seq_lens_k, dict):
        cu_seq_lens_k, max_seqlen_k = cu_seq_lens_k["full_attention"], max_seqlen_k["full_attention"]
    k, v = cache.update(
        key_states=k,
        value_states=v,
        layer_idx=module.layer_idx,
        read_index=kwargs["read_index"],
        write_index=kwargs["write_index"],
    )
    if _REPEAT_KV[0] > 1:
        k, v = k.repeat_interleave(_REPEAT_KV[0], 1), v.repeat_interleave(_REPEAT_KV[0], 1)
    out = varlen_attn(
        q.transpose(1, 2).squeeze(0).contiguous(),
        k.contiguous(),
        v.contiguous(),
        cu_seq_lens_q.to(torch.int32),
        cu_seq_lens_k.to(torch.int32),
        max_seqlen_q,
        max_seqlen_k,
        scale=module.scaling,
        window_size=(-1, 0),
    )
    return out, None


def check_varlen_attention(heads, kv_heads, head_dim, dtype):
    """The varlen kernel against SDPA with an explicit bottom-right causal mask, on two requests whose queries are
    shorter than their keys (the continuous-batching case). Returns the largest difference."""
    from torch.nn.attention.varlen import varlen_attn

    lengths_q, lengths_k = [3, 5], [7, 5]
    q = torch.randn(sum(lengths_q), heads, head_dim, device="cuda", dtype=dtype)
    k = torch.randn(sum(lengths_k), kv_heads, head_dim, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    cu_q = torch.tensor([0, 3, 8], device="cuda", dtype=torch.int32)
    cu_k = torch.tensor([0, 7, 12], device="cuda", dtype=torch.int32)
    try:
        got = varlen_attn(q, k, v, cu_q, cu_k, 5, 7, window_size=(-1, 0))
    except RuntimeError:  # a kernel without grouped-query support: give it every head's keys
        _REPEAT_KV[0] = heads // kv_heads
        k2, v2 = k.repeat_interleave(_REPEAT_KV[0], 1), v.repeat_interleave(_REPEAT_KV[0], 1)
        got = varlen_attn(q, k2, v2, cu_q, cu_k, 5, 7, window_size=(-1, 0))
    worst = 0.0
    for i, (lq, lk) in enumerate(zip(lengths_q, lengths_k, strict=True)):
        qi = q[cu_q[i] : cu_q[i] + lq].transpose(0, 1)
        ki = k[cu_k[i] : cu_k[i] + lk].transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        vi = v[cu_k[i] : cu_k[i] + lk].transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        mask = torch.ones(lq, lk, device="cuda", dtype=torch.bool).tril(lk - lq)
        want = torch.nn.functional.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask).transpose(0, 1)
        worst = max(worst, (got[cu_q[i] : cu_q[i] + lq] - want).abs().max().item())
    return worst


class StepLog:
    """Times every engine step (one batch through the model) from inside the engine thread, appending a line per step
    to a file: `end_unix_s duration_s prefill_tokens prefill_requests decode_requests decode_kv_tokens running waiting
    kv_used_tokens responses gap_s captures`: responses = the responses the collector thread sent to Triton while the
    step ran (they cross the stub under the same GIL as the engine loop), gap_s = the time the engine thread spent
    between the previous loop body's end and this one's start (outside the body: the manager's own loop, GIL waits),
    captures = the CUDA graphs captured while it ran (transformers captures one for each new padded shape into an LRU
    of 32, 16 a buffer with async batching: the suspected cause of the slow steps of an engine under its budget).

    The timed unit is the manager's loop body that ran a batch: schedule and prepare it, launch it, then update the
    requests from a batch's tokens. That update waits on the batch's device-to-host copy (its CUDA event), so the wall
    time (perf_counter, no synchronisation added) covers the GPU work too. With asynchronous batching the body updates
    the batch launched by the previous body while the new one runs: its duration is the time between two batches'
    tokens reaching the host, and is attributed to the previous body's batch; the first body after an idle wait
    updates a batch left over from before it and is not logged. Decode requests are those with one query token;
    their KV tokens are the contexts the step attends to; the rest is prefill (whole or split prompts)."""

    def __init__(self, manager, path: str, responses) -> None:
        self.manager, self.path = manager, path
        self.responses = responses  # a one-item list: the responses sent so far (the collector thread counts)
        self.lines: list[str] = []  # appended by the engine thread, written by flush() (another thread)
        self.scheduled = self.previous = None
        self.body_ended = None  # perf_counter at the last loop body's end
        self.captures = 0  # CUDA graphs captured so far (any thread: only the engine's captures)
        graph = getattr(torch.cuda, "CUDAGraph", None)
        if graph is not None:
            begin = graph.capture_begin

            def counted(cuda_graph, *args, **kwargs):
                self.captures += 1
                return begin(cuda_graph, *args, **kwargs)

            graph.capture_begin = counted
        body = manager._generation_loop_body
        # An instance attribute shadows the method the engine thread calls: nothing else of the engine changes.
        manager._generation_loop_body = lambda processor, bootstrapping: self._timed(body, processor, bootstrapping)

    def _watch(self, scheduler) -> None:
        schedule = scheduler.schedule_batch

        def schedule_and_note(*args, **kwargs):
            result = schedule(*args, **kwargs)
            if result[0]:
                prefill = prefill_requests = decode = decode_kv = 0
                for future in result[0]:
                    if future.query_length == 1:
                        decode += 1
                        decode_kv += future.state.current_len()
                    else:
                        prefill += future.query_length
                        prefill_requests += 1
                self.scheduled = (prefill, prefill_requests, decode, decode_kv)
            return result

        scheduler.schedule_batch = schedule_and_note
        scheduler.unbusy_step_log = True

    def _timed(self, body, processor, bootstrapping):
        if not getattr(processor.scheduler, "unbusy_step_log", False):
            self._watch(processor.scheduler)
        batches, started = self.manager.current_batch, time.perf_counter()
        sent, captured = self.responses[0], self.captures
        gap, self.body_ended = started - (self.body_ended or started), None
        more = body(processor, bootstrapping)
        ended = time.perf_counter()
        if self.manager.current_batch == batches:  # no batch: an idle wait
            self.previous = None
            return more
        took, self.body_ended = ended - started, ended
        if processor.use_async_batching:
            done, self.previous = self.previous, self.scheduled
        else:
            done = self.scheduled
        if done is not None and not bootstrapping:
            scheduler, cache = processor.scheduler, processor.cache
            used = (cache.num_blocks - cache.get_num_free_blocks()) * cache.block_size
            waiting = len(scheduler.waiting_requests)
            figures = (*done, len(scheduler.active_requests), waiting, used, self.responses[0] - sent)
            tail = f" {gap:.6f} {self.captures - captured}\n"
            self.lines.append(f"{time.time():.4f} {took:.6f} " + " ".join(map(str, figures)) + tail)
        return more

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        if lines:
            with open(self.path, "a") as out:
                out.writelines(lines)


def scalar(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else int(tensor.as_numpy().reshape(-1)[0])


def refuse(sender, message):
    error = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
    sender.send(error, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


@dataclass
class Live:
    sender: object
    arrived: float
    prompt: int
    received: float = 0.0  # Unix time execute() took it (engine_times, beside the client's own clock)
    sent: int = 0  # tokens already streamed
    last: float = 0.0  # when the last response went
    stream_every: int = 1  # tokens a response (the request's `stream_every`, else STREAM_EVERY)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        p = lambda key, default: type(default)(self.params.get(key, default))  # noqa: E731
        import_engine(self.params.pop("SITE_PACKAGES", ""))
        step_log = self.params.pop("STEP_LOG", "")
        from transformers import AttentionInterface, GenerationConfig, LlamaConfig, LlamaForCausalLM
        from transformers.generation import ContinuousBatchingConfig

        cuda = torch.cuda.is_available()
        self.vocab = p("VOCAB", 32000)
        shape = LlamaConfig(
            hidden_size=p("HIDDEN", 2048),
            intermediate_size=p("FFN", 8192),
            num_hidden_layers=p("LAYERS", 16),
            num_attention_heads=p("HEADS", 32),
            num_key_value_heads=p("KV_HEADS", 8),
            vocab_size=self.vocab,
            max_position_embeddings=p("MAX_POSITIONS", 8192),
            eos_token_id=-1,
        )
        dtype = getattr(torch, p("DTYPE", "bfloat16"))
        torch.manual_seed(0)
        with torch.device("cuda" if cuda else "cpu"):
            model = LlamaForCausalLM(shape).to(dtype).eval()
        self.params["PARAMS"] = f"{sum(t.numel() for t in model.parameters()):.4g}"
        attention = p("ATTENTION", "varlen" if cuda else "sdpa")
        if attention == "varlen":
            try:
                worst = check_varlen_attention(
                    shape.num_attention_heads,
                    shape.num_key_value_heads,
                    shape.hidden_size // shape.num_attention_heads,
                    dtype,
                )
                if worst > 0.05:
                    raise ValueError(f"varlen attention differs from SDPA by {worst:.3g}")
                AttentionInterface.register(VARLEN, varlen_attention)
                # Set directly: set_attn_implementation would take a "flash" name for a hub kernel and fetch it.
                model.config._attn_implementation_internal = VARLEN
            except Exception as error:
                self.params["ATTENTION_FALLBACK"] = f"varlen unavailable ({error!r}); paged|sdpa"
                attention = "sdpa"
        if attention == "sdpa":
            model.set_attn_implementation("paged|sdpa")
        self.params["ATTENTION"] = attention
        self.stream_every = p("STREAM_EVERY", 1)
        self.queue_limit = p("QUEUE_LIMIT", 0)
        num_blocks = p("NUM_BLOCKS", 0)
        graphs = p("CUDA_GRAPHS", "1") == "1" and cuda
        cb = ContinuousBatchingConfig(
            block_size=p("BLOCK_SIZE", 256),
            num_blocks=num_blocks or None,
            max_batch_tokens=p("MAX_BATCH_TOKENS", 0) or None,
            max_memory_percent=p("KV_MEMORY", 0.5),
            use_cuda_graph=graphs,
            allow_block_sharing=False,
            max_requests_per_batch=p("MAX_REQUESTS", 0) or None,
        )
        generation = GenerationConfig(max_new_tokens=16, do_sample=False, eos_token_id=-1)
        self.manager = model.init_continuous_batching(generation_config=generation, continuous_batching_config=cb)
        self.manager.warmup()  # captures CUDA graphs (where on) before ready, as a serving replica would
        self.responses_sent = [0]
        self.step_log = StepLog(self.manager, step_log, self.responses_sent) if step_log else None
        self.manager.start()
        resolved = self.manager.continuous_batching_config
        self.params.update(
            NUM_BLOCKS=str(resolved.num_blocks),
            MAX_BATCH_TOKENS=str(resolved.max_batch_tokens),
            KV_TOKENS=str(resolved.num_blocks * resolved.block_size),
            CUDA_GRAPHS=str(resolved.use_cuda_graph),
            ASYNC_BATCHING=str(resolved.use_async_batching),
            MAX_REQUESTS=str(resolved.max_requests_per_batch),
        )
        self._metrics(args)
        self.live: dict[str, Live] = {}
        self.lock = threading.Lock()
        self.counter = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._collect, self._watch, self._report)]
        for thread in self.threads:
            thread.start()
        pb_utils.Logger.log_info(f"unbusy-llm engine: {json.dumps(self.params)}")

    # --- metrics: the vLLM backend's names --------------------------------------------------------------------

    def _metrics(self, args):
        labels = {"model": args["model_name"], "version": args["model_version"]}
        family = lambda name, kind, text: pb_utils.MetricFamily(name=name, description=text, kind=kind)  # noqa: E731
        counter, gauge, histogram = (
            pb_utils.MetricFamily.COUNTER,
            pb_utils.MetricFamily.GAUGE,
            pb_utils.MetricFamily.HISTOGRAM,
        )
        self.families = {
            "prompt": family("vllm:prompt_tokens_total", counter, "Number of prefill tokens processed."),
            "generation": family("vllm:generation_tokens_total", counter, "Number of generation tokens processed."),
            "preemptions": family("vllm:num_preemptions_total", counter, "Cumulative number of preemption."),
            "running": family("vllm:num_requests_running", gauge, "Number of requests in model execution batches."),
            "waiting": family("vllm:num_requests_waiting", gauge, "Number of requests waiting to be processed."),
            "kv": family("vllm:gpu_cache_usage_perc", gauge, "GPU KV-cache usage. 1 means 100 percent usage."),
            # vLLM >= 0.10 (V1) calls it so; older scrapers and dashboards read the name above
            "kv_v1": family("vllm:kv_cache_usage_perc", gauge, "KV-cache usage. 1 means 100 percent usage."),
            "ttft": family("vllm:time_to_first_token_seconds", histogram, "Histogram of time to first token."),
            "tpot": family("vllm:time_per_output_token_seconds", histogram, "Histogram of time per output token."),
            "e2e": family("vllm:e2e_request_latency_seconds", histogram, "Histogram of end to end request latency."),
        }
        buckets = {"ttft": TTFT_BUCKETS, "tpot": TPOT_BUCKETS, "e2e": E2E_BUCKETS}
        self.metric = {
            key: f.Metric(labels=labels, buckets=buckets[key]) if key in buckets else f.Metric(labels=labels)
            for key, f in self.families.items()
        }
        # Metric updates cross to the Triton process: a thread of their own keeps them off the token path.
        self.updates: queue.Queue = queue.Queue()

    def _report(self):
        """Applies metric updates, and sets the engine gauges every 0.25 s."""
        reported_preemptions, next_gauges = 0, 0.0
        while not self.stopping.is_set():
            try:
                key, how, value = self.updates.get(timeout=0.05)
                getattr(self.metric[key], how)(value)
            except queue.Empty:
                pass
            if time.monotonic() >= next_gauges:
                next_gauges = time.monotonic() + 0.25
                running, waiting, kv = self.engine_state()
                self.metric["running"].set(running)
                self.metric["waiting"].set(waiting)
                self.metric["kv"].set(kv)
                self.metric["kv_v1"].set(kv)
                if _preempted[0] > reported_preemptions:
                    self.metric["preemptions"].increment(_preempted[0] - reported_preemptions)
                    reported_preemptions = _preempted[0]
                if self.step_log:
                    self.step_log.flush()

    def engine_state(self):
        """(running requests, waiting requests, KV-cache fraction in use), read from the engine's scheduler."""
        processor = self.manager.batch_processor
        if processor is None:
            return 0, self.manager.input_queue.qsize(), 0.0
        scheduler, cache = processor.scheduler, processor.cache
        waiting = len(scheduler.waiting_requests) + self.manager.input_queue.qsize()
        return len(scheduler.active_requests), waiting, 1.0 - cache.get_num_free_blocks() / cache.num_blocks

    # --- requests -------------------------------------------------------------------------------------------

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            prompt, max_tokens, seed = (scalar(request, name) for name in ("prompt_tokens", "max_tokens", "seed"))
            stream_every = scalar(request, "stream_every") or self.stream_every
            seed = self.counter if seed is None else seed
            if self.queue_limit and self.engine_state()[1] >= self.queue_limit:
                error = pb_utils.TritonError(f"queue full: {self.queue_limit} requests waiting (QUEUE_LIMIT)")
                sender.send(
                    pb_utils.InferenceResponse(error=error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                )
                continue
            if prompt < 1 or max_tokens < 1:
                error = pb_utils.TritonError("prompt_tokens and max_tokens must be at least 1")
                sender.send(
                    pb_utils.InferenceResponse(error=error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                )
                continue
            ids = random.Random(seed).choices(range(self.vocab), k=prompt)
            with self.lock:
                self.counter += 1
                request_id = f"r{self.counter}"
                self.live[request_id] = Live(sender, time.perf_counter(), prompt, time.time(), 0, 0.0, stream_every)
            self.manager.add_request(ids, request_id=request_id, max_new_tokens=max_tokens, streaming=True)
        return None

    def _respond(self, live, tokens, n, final, collected):
        """One response; engine_times = (Unix time execute() took the request, Unix time the engine's output reached
        the collector): with the client's send and receive times they split a TTFT into the way in, the engine, and
        the way out (the stub, Triton, HTTP)."""
        dlpack = torch.utils.dlpack.to_dlpack
        outputs = [
            pb_utils.Tensor.from_dlpack("tokens", dlpack(torch.tensor(tokens, dtype=torch.int32))),
            pb_utils.Tensor.from_dlpack("n", dlpack(torch.tensor([n], dtype=torch.int32))),
            pb_utils.Tensor.from_dlpack(
                "engine_times", dlpack(torch.tensor([live.received, collected], dtype=torch.float64))
            ),
        ]
        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        live.sender.send(pb_utils.InferenceResponse(output_tensors=outputs), flags=flags)
        self.responses_sent[0] += 1

    def _collect(self):
        """Streams the engine's outputs to their requests and records the vLLM latency metrics."""
        while not self.stopping.is_set():
            out = self.manager.get_result(timeout=0.1)
            if out is None:
                continue
            with self.lock:
                live = self.live.get(out.request_id)
            if live is None:  # cancelled meanwhile
                continue
            now, collected = time.perf_counter(), time.time()
            if out.error is not None:
                with self.lock:
                    self.live.pop(out.request_id, None)
                error = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(out.error)))
                try:
                    live.sender.send(error, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                except Exception as failure:
                    pb_utils.Logger.log_warn(f"error for {out.request_id} not sent: {failure}")
                continue
            n, final = len(out.generated_tokens), out.is_finished()
            if not (final or live.sent == 0 or n - live.sent >= live.stream_every):
                continue
            new = n - live.sent
            if live.sent == 0:
                self.updates.put(("ttft", "observe", now - live.arrived))
                self.updates.put(("prompt", "increment", live.prompt))
            elif new:  # one observation per streamed chunk: its mean time per token
                self.updates.put(("tpot", "observe", (now - live.last) / new))
            if new:
                self.updates.put(("generation", "increment", new))
            if final:
                self.updates.put(("e2e", "observe", now - live.arrived))
                with self.lock:
                    self.live.pop(out.request_id, None)
            try:
                self._respond(live, out.generated_tokens[live.sent : n], n, final, collected)
            except Exception as error:
                pb_utils.Logger.log_warn(f"response to {out.request_id} not sent: {error}")
            live.sent, live.last = n, now

    def _watch(self):
        """Cancels in the engine what Triton cancelled (the client went away), so no request outlives its client."""
        while not self.stopping.wait(0.2):
            with self.lock:
                gone = [(rid, live) for rid, live in self.live.items() if live.sender.is_cancelled()]
                for rid, _ in gone:
                    self.live.pop(rid)
            for rid, live in gone:
                self.manager.cancel_request(rid)
                try:
                    live.sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                except Exception as error:
                    pb_utils.Logger.log_warn(f"final flag for cancelled {rid} not sent: {error}")

    def finalize(self):
        self.stopping.set()
        self.manager.stop(block=True, timeout=10, hard_stop=True)
        for thread in self.threads:
            thread.join(timeout=5)
