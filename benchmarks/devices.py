"""Do models on separate devices compute at once? A GPU-shaped simulation on the CPU.

Three teachers and a meta-prover, each on a simulated device of its own, run CoRD and Curation
through cord's real strategies and scheduler. Every engine call costs simulated device time, spent
in `time.sleep` (which releases the GIL, as GPU work does), with a GPU's shape:
- a decode iteration costs about the same for 1 or 64 rows (`--decode-ms`, plus a little per row):
  it is bound by reading the weights, not by arithmetic;
- a forward pass costs the larger of that and its tokens' arithmetic (`--prefill-us` a token, for
  prompt, scored and decoded tokens alike): on the continuous and server paths a new prompt's
  tokens join the decode iteration's pass, as vLLM's chunked prefill runs them, and ride it free
  up to `--decode-ms` / `--prefill-us` tokens (200 at the defaults; about the same for a 32B model
  on an H100: a 25 ms weight read against ~0.1 ms of arithmetic a token). `--prefill-apart` charges
  prompt and scoring passes on top of decode iterations instead (the model before 2026-12-06);
- local path (engine: transformers / offline vLLM): a call is one running batch of at most 64 rows
  that nothing from outside joins: a row leaves as it ends and the call's waiting rows join, a
  quarter of the rows at a time, each join a prompt pass of its own (the transformers engine's
  whole batches; offline vLLM's `generate` refills its batch one row at a time), so a call
  decodes for about its tokens over 64 iterations plus its longest row's tail. In the scheduler's
  whole batches a call returns once nothing waits and at most a quarter of its rows still decode
  (none of them carried before): those rows are answered CARRIED and resume in the engine's next
  call, beside its rows (the transformers engine's `Decoder.batch(carry=True)`; `--carry 0` in
  device_time.py runs every call to its end, as before 2026-12-07). `--static-passes` runs passes
  of 64 rows, each as long as its longest row (the transformers engine before 2026-12-06);
- local and continuous paths: a teacher keeps the KV of each step it wrote of at least
  `Decoder.KEEP_WRITTEN_FROM` tokens (the transformers engine's `Decoder.keep_written`), so where
  the search kept its own step it reads only the next opening, not the step again
  (`--read-written` in device_time.py: it reads it, as before 2026-12-07). A server is charged
  the whole step (vLLM's prefix caching keeps the full blocks a request generated, so this
  overcharges it a little);
- server path (a vLLM server): requests join a continuously batching loop on their device as they
  arrive (prompts prefilled in chunks of `--prefill-chunk` tokens an iteration) and leave it as
  they end.
- continuous path (engine: transformers or offline vLLM, each model alone on its device, where
  `continuous: auto` batches continuously): the same loop on the device, called as a local
  engine is (`Engine.continuous`, not `concurrent`).
What a teacher writes is drawn the same way for both methods, step by step: a step ends at a step
marker after a few tokens, or one time in seven runs one token past `max_step_tokens` (CoRD cuts
it at the cap and the step's continuation writes that token; a whole trajectory keeps it whole);
after each step the trajectory closes with the chance a drawn
number of steps gives. So CoRD's steps and Curation's trajectories come from one distribution, and
at equal budget (R = B trajectories a teacher) they generate about the same tokens. Scores are drawn
per candidate. One token is one word.

Prints each device's busy share of the wall time and the wall time over the busiest device's busy
time, for CoRD and Curation, on each path; and P3's shape: a teacher device's decoded tokens per
second of wall time over its raw batched rate at the same concurrency (every row decoding, as many
rows an iteration as the path allows). The goal (issue: engines that never wait for each
other): wall <= 1.15 x the busiest device's busy time, and that device busy >= 85 % of the wall.
Each device also counts its time by cause; benchmarks/device_time.py prints that breakdown.

    python benchmarks/devices.py                      # 256 problems, 64 in flight, CoRD and Curation
    python benchmarks/devices.py --problems 64 --paths local
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from cord.config import Config, DataConfig, ModelConfig, SearchConfig
from cord.data import Problem
from cord.engines.base import CARRIED, Completion, Engine, ScoreResult
from cord.engines.transformers.decode import Decoder
from cord.prompts import STEP_MARKER, THINK_CLOSE, THINK_OPEN
from cord.registry import STRATEGIES


class Device:
    """One simulated accelerator: it does one thing at a time and counts its busy seconds, by cause
    (`causes`: decoding live rows, decoding rows a batch holds after they ended, prompt passes,
    scoring; benchmarks/device_time.py prints them)."""

    def __init__(self, name: str, decode_ms: float, prefill_us: float, flat: bool = False, apart: bool = False):
        self.name, self.decode, self.prefill = name, decode_ms / 1000, prefill_us / 1e6
        self.flat = flat  # the other cost model: an iteration costs the same for any rows, a prompt pass a quarter of one
        self.apart = apart or flat  # prompt and scoring passes charged on top of decode iterations, not inside them
        self.lock = threading.Lock()
        self.busy = 0.0
        self.tokens = 0  # tokens decoded
        self.causes = {"live": 0.0, "held": 0.0, "prompt": 0.0, "score": 0.0}
        self.iterations = 0  # decode iterations run, and the rows they decoded (live and held)
        self.rows = 0

    def work(
        self, seconds: float, tokens: int = 0, *, prompt: float = 0.0, score: float = 0.0, iterations: int = 0, held: int = 0, rows: int = 0
    ) -> None:
        """`seconds` of device time: `prompt` and `score` of it prompt passes and scoring, the rest
        `iterations` decode iterations over `rows` rows in all, which decoded `tokens` tokens and
        held `held` token places of rows that had ended (the decode time is shared between live
        and held by those places, as a GPU computes every row)."""
        with self.lock:
            time.sleep(seconds)
            self.busy += seconds
            self.tokens += tokens
            decode = seconds - prompt - score
            places = tokens + held
            self.causes["prompt"] += prompt
            self.causes["score"] += score
            self.causes["live"] += decode * tokens / places if places else 0.0
            self.causes["held"] += decode * held / places if places else 0.0
            self.iterations += iterations
            self.rows += rows

    def iteration(self, rows: int) -> float:
        """One decode iteration: flat up to a full batch, as on a GPU."""
        return self.decode * (1 if self.flat else 1 + 0.002 * rows)

    def read(self, tokens: int) -> float:
        """One prompt or scoring pass over `tokens` tokens alone: their arithmetic, or one weight read
        if that is longer (flat: a quarter of an iteration; apart: the arithmetic alone)."""
        if not tokens:
            return 0.0
        if self.flat:
            return self.decode / 4
        return tokens * self.prefill if self.apart else max(self.decode, tokens * self.prefill)

    def mixed(self, rows: int, stride: int, read: int) -> float:
        """One pass that decodes `stride` tokens of `rows` rows and reads `read` prompt or scored
        tokens with them (a continuous loop's iteration): the weight reads the decoding needs, or the
        arithmetic of every token if that is longer; apart: the two added."""
        decode = stride * self.iteration(rows) if rows else 0.0
        if self.apart:
            return decode + self.read(read)
        return max(decode or self.decode, (stride * rows + read) * self.prefill) if rows or read else 0.0


class ServerLoop:
    """A continuously batching server on one device (vLLM's scheduler, in miniature): each iteration
    prefills up to `chunk` waiting prompt tokens, first come first served, and decodes `stride`
    tokens (one, unless a run coarsens time to stay short) of every request whose prompt is in; a
    request leaves once its last token is out. Scoring requests are prompts with nothing to decode."""

    def __init__(self, device: Device, chunk: int, max_rows: int | None = None, stride: int = 1):
        self.device, self.chunk, self.max_rows = device, chunk, max_rows  # max_rows: a local engine's max_batch_size
        self.stride = stride
        self.cond = threading.Condition()
        self.rows: list[list] = []  # [tokens left, prompt tokens left, event, scoring]
        threading.Thread(target=self._loop, daemon=True).start()

    def submit(self, rows: list[tuple[int, int]], scoring: bool = False) -> None:
        """Each (tokens to decode, prompt tokens) joins the loop; back when the last one is out."""
        rows = [[tokens, prefill, threading.Event(), scoring] for tokens, prefill in rows]
        with self.cond:
            self.rows.extend(rows)
            self.cond.notify()
        for row in rows:
            row[2].wait()

    def free_rows(self) -> int | None:
        """Rows the loop could take now without anyone waiting (None: no limit)."""
        if self.max_rows is None:
            return None
        with self.cond:
            return self.max_rows - len(self.rows)

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.rows:
                    self.cond.wait()
                rows = list(self.rows)[: self.max_rows]
            budget, taken = self.chunk, {}
            for i, r in enumerate(rows):
                if r[1] and budget:
                    taken[i] = min(r[1], budget)
                    budget -= taken[i]
            decoding = [r for i, r in enumerate(rows) if r[1] - taken.get(i, 0) == 0 and r[0] > 0]
            live = sum(min(self.stride, r[0]) for r in decoding)
            prompted = sum(n for i, n in taken.items() if not rows[i][3])
            scored = sum(n for i, n in taken.items() if rows[i][3])
            seconds = self.device.mixed(len(decoding), self.stride, prompted + scored)
            decode = self.stride * self.device.iteration(len(decoding)) if decoding else 0.0
            extra = seconds - decode  # what reading the prompts and scored tokens added to the pass
            prompt = extra * prompted / (prompted + scored) if prompted + scored else 0.0
            held = self.stride * len(decoding) - live  # the last iteration's tokens past a row's end
            self.device.work(seconds, live, prompt=prompt, score=extra - prompt, iterations=bool(decoding), held=held, rows=len(decoding))
            with self.cond:
                for i, r in enumerate(rows):
                    r[1] -= taken.get(i, 0)
                    if r[1] == 0:
                        r[0] -= self.stride
                        if r[0] <= 0:
                            self.rows.remove(r)
                            r[2].set()


def words(n: int) -> str:
    return " w" * n


@dataclass(frozen=True)
class Lengths:
    """What the simulated teachers write, in tokens: a step is `step` long (or runs to the cap, one
    time in seven), a trajectory closes after `steps` steps with a last step of `close`."""

    step: tuple[int, int] = (4, 48)
    steps: tuple[int, int] = (4, 8)
    close: tuple[int, int] = (4, 24)


DOCS = Lengths()  # docs/benchmarks.md's settings (max_step_tokens 96, reasoning budget 1,024)
PAPER_LIKE = Lengths(step=(32, 384), steps=(8, 16), close=(32, 192))  # steps of hundreds of tokens, trajectories of thousands


REFILL = 0.25  # as the transformers engine's Decoder.REFILL_WHEN_FREE: a call's waiting rows join once this share of its rows is free
CARRY = 0.25  # as Decoder.CARRY_WHEN_LIVE: a call returns once no row waits and at most this share of its rows still decodes


class SimulatedEngine(Engine):
    """A teacher or meta-prover whose calls cost simulated device time (see the module docstring)."""

    name = "simulated"
    max_batch_size = 64  # rows of one decode pass (local path), as the transformers engine's default

    def __init__(self, device: Device, path: str, cap: int, seed: int, chunk: int = 8192, lengths: Lengths = DOCS, stride: int = 1):
        self.device = device
        self.stride = stride  # tokens a simulated decode iteration stands for (a coarser clock keeps long runs short)
        rows = self.max_batch_size if path == "continuous" else None
        self.server = None if path == "local" else ServerLoop(device, chunk, rows, stride)
        self.concurrent = path == "server"
        self.continuous = "auto" if path == "continuous" else False
        self.placement = frozenset({device.name})
        self.cap, self.seed, self.lengths = cap, seed, lengths
        self.refill = True  # local path: a call refills its batch (False: passes of max_batch_size rows)
        self.carry = CARRY  # local path, refilled: a call's last rows carried to the next call (0: none)
        self.carried: dict = {}  # request -> tokens it has left, while carried
        # local and continuous paths: the engine keeps the KV of each step it wrote (the transformers
        # engine's Decoder.keep_written), so a teacher whose step the search kept reads only the next opening
        self.keeps_written = path != "server"
        self.written: dict[tuple[str, ...], set[str]] = {}  # prompt pieces but the opening -> the steps written after them

    @classmethod
    def from_config(cls, cfg, model):
        raise NotImplementedError

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return f"Q: {question}\n"

    def free_rows(self) -> int | None:
        """Rows the device's continuous loop could take now (None: no limit or no loop)."""
        return self.server.free_rows() if self.server is not None else None

    def _draw(self, request) -> tuple[str, int, str]:
        """(text, tokens, finish) of one request, drawn from its seed."""
        rng, shape = random.Random(f"{self.seed}:{request.seed}"), self.lengths
        reasoning = request.prompt.split(THINK_OPEN, 1)[1]
        if THINK_CLOSE in reasoning:  # a final answer (or its pre-filled retry)
            text = " The final answer is \\boxed{7}." if reasoning.endswith(THINK_CLOSE) else "7}."
            return text, 8, "eos"
        if STEP_MARKER not in request.stop:  # a whole trajectory (Curation): steps drawn as CoRD's are, uncut
            lengths = []
            while not self._closes(rng, len(lengths) + 1) and sum(lengths) < request.max_tokens:  # + 1: as CoRD counts its opening's marker
                lengths.append(self._step(rng))
            n = rng.randint(*shape.close)
            text = "".join(f" {k}." + words(m - 1) + f"\n{STEP_MARKER}" for k, m in enumerate(lengths, 1)) + words(n) + THINK_CLOSE
            return text, min(sum(lengths) + n + 1, request.max_tokens), "stop"
        if not reasoning.endswith(STEP_MARKER):  # the rest of a step cut at the cap: its last token, then the marker
            return " w\n", 1, "stop"
        steps = reasoning.count(STEP_MARKER)
        if self._closes(rng, steps) or reasoning.count(" ") > 20 * self.cap:  # the trajectory closes
            n = rng.randint(*shape.close)
            return words(n) + THINK_CLOSE, n + 1, "stop"
        n = self._step(rng)
        if n > request.max_tokens:
            return words(request.max_tokens), request.max_tokens, "length"
        return f" {steps + 1}." + words(n - 1) + "\n", n, "stop"

    def _step(self, rng: random.Random) -> int:
        """A step's length: a marker after a few tokens, or (one time in seven) past the cap."""
        return rng.randint(*self.lengths.step) if rng.random() < 0.85 else self.cap + 1

    def _closes(self, rng: random.Random, steps: int) -> bool:
        """Whether a trajectory of `steps` steps closes now."""
        return steps >= rng.randint(*self.lengths.steps)

    def generate(self, requests):
        drawn = [self._draw(r) for r in requests]
        # requests the engine's last call carried resume with the tokens they have left, no prompt
        # pass (only in the scheduler's whole batches); carried rows nobody asks for are dropped
        resumed = {i: left for i, r in enumerate(requests) if (left := self.carried.pop(r, None)) is not None}
        self.carried.clear()
        fresh = [i for i in range(len(requests)) if i not in resumed]
        prefill = {i: self._prefill(requests[i]) for i in fresh}
        if self.keeps_written:
            for i in fresh:
                r = requests[i]
                if len(r.pieces) > 2 and r.pieces[-2] in self.written.get(r.pieces[:-2], ()):
                    prefill[i] = 8  # its own step: only the opening to read
            for i in fresh:
                r, (text, tokens, _) = requests[i], drawn[i]
                if r.pieces and tokens >= Decoder.KEEP_WRITTEN_FROM:
                    self.written.setdefault(r.pieces[:-1], set()).add(r.pieces[-1] + text)
        out = [self._completion(d) for d in drawn]
        if self.server is not None:
            self.server.submit([(drawn[i][1], prefill[i]) for i in fresh])
        elif self.refill:
            left = self._whole_call([drawn[i][1] for i in fresh], [prefill[i] for i in fresh], list(resumed.values()))
            for i, rest in zip(fresh, left):
                if rest:  # still decoding when the call returned
                    self.carried[requests[i]] = rest
                    out[i] = Completion("", 0, CARRIED)
        else:  # passes of at most max_batch_size rows, each as long as its longest row (before 2026-12-06)
            for at in range(0, len(requests), self.max_batch_size):
                rows = drawn[at : at + self.max_batch_size]
                tokens = [prefill[i] for i in range(at, at + len(rows))]
                iterations = -(-max(t for _, t, _ in rows) // self.stride)
                live = sum(t for _, t, _ in rows)
                prompt = self.device.read(sum(tokens))
                seconds = prompt + iterations * self.stride * self.device.iteration(len(rows))
                held = iterations * self.stride * len(rows) - live
                self.device.work(seconds, live, prompt=prompt, iterations=iterations, held=held, rows=iterations * len(rows))
        return out

    def _whole_call(self, tokens: list[int], prefill: list[int], resumed: list[int] = ()) -> list[int]:
        """One whole-batch call as the transformers engine runs it (decode.Decoder.batch): at most
        max_batch_size rows decode together, a row leaves as it ends, and the call's waiting rows
        join (their prompt pass apart) once REFILL of the rows are free. Between joins the rows
        that ended count as held: the slots a GPU's flat iteration pays for and nobody uses.
        `resumed`: tokens left of the rows the last call carried, decoding from the start. In the
        scheduler's whole batches (`carry`) the call returns once nothing waits and at most `carry`
        of the rows still decode, none of them resumed. Returns each of `tokens`' rows' tokens left
        (0: it ended)."""
        waiting = deque(enumerate(zip(tokens, prefill)))
        running = [[t, None] for t in resumed]  # [tokens left, index of a fresh row (None: resumed)]
        least = max(1, int(self.max_batch_size * REFILL))
        carry = int(self.max_batch_size * self.carry) if self.whole_batches else 0
        left, ended = [0] * len(tokens), 0
        while waiting or running:
            room = self.max_batch_size - len(running)
            if waiting and room >= min(least, len(waiting)):
                take = [waiting.popleft() for _ in range(min(room, len(waiting)))]
                prompt = self.device.read(sum(p for _, (_, p) in take))
                self.device.work(prompt, prompt=prompt)
                running += [[t, i] for i, (t, _) in take]
            running.sort(key=lambda row: row[0])
            room = self.max_batch_size - len(running)
            if waiting:  # decode until enough rows ended for the next ones to join
                end = running[min(len(running), min(least, len(waiting)) - room) - 1][0]
            else:
                end = running[-1][0]
                if carry:  # until at most `carry` rows decode, none of them resumed
                    upto = max([running[-carry - 1][0] if len(running) > carry else 0] + [t for t, i in running if i is None])
                    end = upto if 0 < upto < end else end
            iterations = -(-end // self.stride)
            span = iterations * self.stride
            live = sum(min(t, span) for t, _ in running)
            seconds = iterations * self.stride * self.device.iteration(len(running))
            self.device.work(seconds, live, iterations=iterations, held=span * len(running) - live, rows=iterations * len(running))
            ended += sum(t <= span for t, _ in running)
            running = [[t - span, i] for t, i in running if t > span]
            if carry and ended and not waiting and running and all(i is not None for _, i in running) and len(running) <= carry:
                for t, i in running:
                    left[i] = t
                break
        return left

    @staticmethod
    def _prefill(request) -> int:
        """Prompt tokens a request's prompt pass computes: its new pieces (the kept KV holds the rest)."""
        return request.pieces[-2].count(" ") + 8 if len(request.pieces) > 1 else len(request.prompt.split())

    @staticmethod
    def _completion(drawn: tuple[str, int, str]) -> Completion:
        text, tokens, finish = drawn
        stop = STEP_MARKER if finish == "stop" and not text.endswith((THINK_CLOSE, "}.")) else None
        if text.endswith(THINK_CLOSE):
            text, stop = text.removesuffix(THINK_CLOSE), THINK_CLOSE
        return Completion(text, tokens, finish, stop)

    def score(self, requests):
        tokens = [len((r.candidate + r.lead_in + r.target).split()) + 2 for r in requests]
        if self.server is not None:
            self.server.submit([(0, t) for t in tokens], scoring=True)
        else:
            apart = self.device.apart and not self.device.flat  # the earlier model: the arithmetic plus an iteration
            seconds = self.device.read(sum(tokens)) + (self.device.iteration(len(requests)) if apart else 0.0)
            self.device.work(seconds, score=seconds)
        return [ScoreResult([-random.Random(f"{self.seed}:{r.candidate}:{r.steps}").random()], t, t) for r, t in zip(requests, tokens)]


def run(method: str, path: str, args) -> dict:
    """One run of `method` on `path`. Beyond this script's options `args` may carry `lengths`,
    `stride`, `budget`, `reproducible`, `rows_in_flight`, `speculative`, `flat`, `prefill_apart`,
    `static_passes`, `shared_device`, `read_written` and `carry` (benchmarks/device_time.py sets them)."""
    lengths, stride = getattr(args, "lengths", DOCS), getattr(args, "stride", 1)
    flat, apart = getattr(args, "flat", False), getattr(args, "prefill_apart", False)
    devices = {name: Device(name, args.decode_ms, args.prefill_us, flat, apart) for name in ("gpu0", "gpu1", "gpu2", "gpu3")}
    engines = {
        f"m{i}": SimulatedEngine(devices[f"gpu{i}"], path, args.cap, seed=i, chunk=args.prefill_chunk, lengths=lengths, stride=stride)
        for i in range(4)
    }  # three teachers, the meta-prover on the fourth
    for engine in engines.values():
        engine.refill = not getattr(args, "static_passes", False)
        engine.keeps_written = engine.keeps_written and not getattr(args, "read_written", False)
        engine.carry = getattr(args, "carry", CARRY)
        if getattr(args, "shared_device", False):  # one device group: the scheduler runs one batch at a time
            engine.placement = frozenset({"gpu0"})
    teachers = [ModelConfig(name=f"t{i}", model=f"m{i}", max_step_tokens=args.cap) for i in range(3)]
    search = SearchConfig(
        method=method,
        beam_size=4,
        reasoning_budget=getattr(args, "budget", 1024),
        answer_budget=16,
        problems_in_flight=args.in_flight,
        reproducible=getattr(args, "reproducible", False),
        speculative=getattr(args, "speculative", False),
        **({"rows_in_flight": args.rows_in_flight} if getattr(args, "rows_in_flight", None) else {}),
    )
    config = Config(teachers=teachers, meta_prover=ModelConfig(name="mp", model="m3"), search=search, data=DataConfig())
    cls = STRATEGIES.load(method)
    cls.prepare(config)
    strategy = cls.build(config, lambda model: engines[model.model])
    problems = [Problem(f"p{i}", f"problem {i}", "7") for i in range(args.problems)]
    start = time.perf_counter()
    records = list(strategy.run(problems))
    wall = time.perf_counter() - start
    busy = {name: d.busy for name, d in devices.items()}
    failed = sum(r.failed is not None for r in records)
    # P3's shape: a teacher device's tokens/s against its raw batched rate at the same concurrency
    # (every row decoding to the cap, the path's rows per iteration at most)
    concurrency = args.in_flight * (config.search.beam_size if method == "cord" else 1)
    rows = concurrency if path == "server" else min(concurrency, SimulatedEngine.max_batch_size)
    raw = rows / devices["gpu0"].iteration(rows)
    teacher_rate = sum(devices[f"gpu{i}"].tokens for i in range(3)) / 3 / wall
    return {"wall": wall, "busy": busy, "failed": failed, "records": records, "p3": teacher_rate / raw, "devices": devices}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=256, help="problems in all")
    parser.add_argument("--in-flight", type=int, default=64, help="problems in flight at once (search.problems_in_flight)")
    parser.add_argument("--methods", nargs="+", default=["cord", "curation"])
    parser.add_argument("--paths", nargs="+", default=["local", "continuous", "server"], choices=["local", "continuous", "server"])
    parser.add_argument("--decode-ms", type=float, default=2.0, help="one decode iteration of a batch (GPU: ~20-40 ms for 32B)")
    parser.add_argument("--prefill-us", type=float, default=10.0, help="prefill or scoring, per token read (GPU: ~100 us for 32B)")
    parser.add_argument("--cap", type=int, default=96, help="max_step_tokens")
    parser.add_argument("--prefill-chunk", type=int, default=8192, help="server path: prompt tokens a server prefills per iteration")
    parser.add_argument("--prefill-apart", action="store_true", help="prompt and scoring passes added to decode iterations")
    parser.add_argument("--static-passes", action="store_true", help="local path: passes of 64 rows, each as long as its longest row")
    parser.add_argument("--carry", type=float, default=CARRY, help="local path: a call's last rows carried to the next (0: none)")
    args = parser.parse_args()
    print(f"{args.problems} problems, {args.in_flight} in flight, 3 teachers + a meta-prover on 4 simulated devices")
    print("| method | path | wall s | busy share gpu0 / gpu1 / gpu2 / gpu3 (mp) | busiest busy / wall | wall / busiest busy | P3 shape |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        for path in args.paths:
            result = run(method, path, args)
            busiest = max(result["busy"].values())
            shares = " / ".join(f"{b / result['wall']:.0%}" for b in result["busy"].values())
            note = f" ({result['failed']} failed)" if result["failed"] else ""
            print(
                f"| {method} | {path} | {result['wall']:.1f} | {shares} | {busiest / result['wall']:.0%} | "
                f"{result['wall'] / busiest:.2f}{note} | {result['p3']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
